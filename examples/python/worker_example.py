#!/usr/bin/env python3
"""A small TaskForge worker: fetch, handle, acknowledge, repeat.

Each job's payload is UTF-8 text; the worker stores the text reversed as the job's result.
A payload that is not UTF-8 fails the job without a retry (retrying cannot fix it); any
other exception fails the attempt with a retry after the job's backoff. Ctrl-C (SIGINT) or
SIGTERM stops the worker once the job in hand is reported, or within one FETCH wait when it
is idle; no job is left leased to a worker that is gone.

    python3 examples/python/worker_example.py --port 7700 --queue emails

The root token comes from ``$TASKFORGE_ROOT_TOKEN`` (or ``--root-token``); an API key
(``tf_<key id>_<secret>``, from APIKEY_CREATE) from ``$TASKFORGE_API_KEY`` (or
``--api-key``), and the worker then works in the key's project. ``--project-id`` names the
project for the root token (default: project 1). With ``--enqueue N`` the worker first
enqueues N sample jobs, so the example runs on an empty broker (an API key then needs the
``manage`` and ``produce`` scopes besides ``consume``).
"""

import argparse
import os
import pathlib
import signal
import sys
import threading

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from taskforge import (  # noqa: E402  (path set up above)
    ApiKey,
    Client,
    Conflict,
    LeaseLost,
    RetryNever,
    RootToken,
)

#: How long one FETCH waits for a job before asking again (the broker allows up to 60 s).
FETCH_WAIT_MS = 5_000
#: How long a job may run before its lease expires and another worker may take it.
LEASE_MS = 30_000


class PermanentError(Exception):
    """A failure that retrying cannot fix: the job goes straight to the dead letters."""


def handle(payload):
    """The work itself: the payload's text, reversed, as the result."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as error:
        raise PermanentError("payload is not UTF-8: %s" % error) from None
    return text[::-1].encode("utf-8")


def run_one(client, job):
    """Handles one leased job and reports the outcome to the broker."""
    try:
        result = handle(job.payload)
    except PermanentError as error:
        client.fail(job.job_id, job.lease_id, str(error), RetryNever())
        print("job %s failed for good: %s" % (job.job_id, error))
        return
    except Exception as error:  # noqa: BLE001  (any bug in handle() is one failed attempt)
        outcome = client.fail(job.job_id, job.lease_id, repr(error))
        print("job %s attempt %d failed; now %s" % (job.job_id, job.attempt, outcome.state.name))
        return
    try:
        client.ack(job.job_id, job.lease_id, result)
        print("job %s done: %r" % (job.job_id, result))
    except LeaseLost:
        # The lease expired (or the job was cancelled) while we worked: another worker may
        # hold it now, and our result was not stored. Nothing to undo here.
        print("job %s: lease lost, result dropped" % job.job_id)


def credentials_from(arguments):
    """The credentials named on the command line or in the environment."""
    if arguments.api_key:
        try:
            return ApiKey.parse(arguments.api_key)
        except ValueError as error:
            sys.exit(str(error))
    if arguments.root_token:
        return RootToken(arguments.root_token)
    sys.exit("set TASKFORGE_ROOT_TOKEN or TASKFORGE_API_KEY (or pass --root-token/--api-key)")


def main():
    """Parses the command line and runs the worker until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7700)
    parser.add_argument("--queue", default="emails")
    parser.add_argument("--root-token", default=os.environ.get("TASKFORGE_ROOT_TOKEN"))
    parser.add_argument("--api-key", default=os.environ.get("TASKFORGE_API_KEY"))
    parser.add_argument("--project-id", type=int, default=None, help="the project to work in")
    parser.add_argument("--enqueue", type=int, default=0, metavar="N", help="sample jobs first")
    arguments = parser.parse_args()

    credentials = credentials_from(arguments)
    with Client.connect(
        arguments.host, arguments.port, credentials, project_id=arguments.project_id
    ) as client:
        print(
            "connected to TaskForge %s, project %d"
            % (client.session.server_version, client.project_id)
        )
        if arguments.enqueue:
            try:
                client.queue_create(arguments.queue)
            except Conflict:
                pass  # the queue exists already
            for index in range(arguments.enqueue):
                client.enqueue(arguments.queue, ("sample job %d" % index).encode("utf-8"))
        stopping = threading.Event()
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signal_number, lambda number, frame: stopping.set())
        while not stopping.is_set():
            # One job per FETCH, so a stop never strands a second leased job.
            for job in client.fetch(arguments.queue, wait_ms=FETCH_WAIT_MS, lease_ms=LEASE_MS):
                run_one(client, job)
        print("stopping")
        client.bye()


if __name__ == "__main__":
    main()
