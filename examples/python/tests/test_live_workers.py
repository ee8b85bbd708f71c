"""Workers, executions, logs and progress through the Python client, against a real broker.

The broker is started per test exactly as in ``test_live_server.py`` (a free loopback port,
a fresh data directory, ``--fsync never``, killed whatever happens).

The broker is started with ``TASKFORGE_HEARTBEAT_TIMEOUT_MS`` (the variable of the server
setting ``broker.heartbeat_timeout_ms``) set low so the lost-worker test is quick; the test
reads the timeout back from the heartbeat interval.
"""

import os
import pathlib
import sys
import threading
import time
import unittest
from unittest import mock

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from taskforge import (  # noqa: E402  (path set up above)
    Conflict,
    ExecutionOutcome,
    JobState,
    LeaseLost,
    LogLevel,
    NotFound,
    QueueAssignment,
    QuietCommand,
    QuotaExceeded,
    RetryBackoff,
    RunCommand,
    TerminateCommand,
    WorkerState,
)
from test_live_server import LiveServerTest  # noqa: E402

#: The heartbeat timeout asked of the broker, in ms.
HEARTBEAT_TIMEOUT_MS = 1500

class LiveWorkersTest(LiveServerTest):
    """Register, heartbeat, fetch as a worker, log, report progress and read it all back."""

    def setUp(self):
        environment = {"TASKFORGE_HEARTBEAT_TIMEOUT_MS": str(HEARTBEAT_TIMEOUT_MS)}
        with mock.patch.dict(os.environ, environment):
            super().setUp()

    def register(self, client, queues=("emails",), name="py-worker"):
        """A registered worker and its first heartbeat's reply."""
        worker = client.register_worker(name, list(queues), concurrency=2)
        beat = client.heartbeat(worker.worker_id)
        return worker, beat

    def test_a_job_through_a_registered_worker(self):
        client = self.connect()
        client.queue_create("emails")
        client.queue_create("reports")
        worker, beat = self.register(client, [("emails", 3), ("reports", 1)])
        self.assertEqual(worker.state, WorkerState.ACTIVE)
        self.assertEqual(worker.assignments_version, 1)
        self.assertEqual(
            [(a.queue, a.weight, a.position) for a in worker.assignments],
            [("emails", 3, 0), ("reports", 1, 1)],
        )
        self.assertEqual(beat.command, RunCommand())
        self.assertGreater(beat.heartbeat_interval_ms, 0)
        self.assertIsNone(beat.assignments)

        enqueued = client.enqueue("emails", b"hello", max_attempts=3)
        jobs = client.fetch(
            ["emails", "reports"], wait_ms=1000, worker_id=worker.worker_id, weights=[3, 1]
        )
        self.assertEqual([job.job_id for job in jobs], [enqueued.job_id])
        job = jobs[0]
        self.assertEqual(client.worker_get(worker.worker_id).leased_jobs, 1)

        logged = client.log(
            job.job_id,
            job.lease_id,
            ["connecting", (LogLevel.WARN, "slow handshake", {"ms": "1250"})],
        )
        self.assertEqual((logged.execution, logged.first_seq), (1, 1))
        self.assertEqual(client.log(job.job_id, job.lease_id, ["sent"]).first_seq, 3)
        client.progress(job.job_id, job.lease_id, 50, "half way")

        running = client.job_get(job.job_id)
        self.assertEqual(running.executions, 1)
        self.assertEqual(running.latest_execution.worker_id, worker.worker_id)
        self.assertIsNone(running.latest_execution.outcome)
        self.assertEqual((running.progress.percent, running.progress.message), (50, "half way"))

        client.heartbeat(worker.worker_id, in_flight=1)
        client.ack(job.job_id, job.lease_id, result=b"sent")

        executions = client.execution_list(job.job_id).executions
        self.assertEqual(len(executions), 1)
        self.assertEqual(executions[0].outcome, ExecutionOutcome.SUCCEEDED)
        self.assertEqual(executions[0].lease_id, job.lease_id)
        self.assertIsNotNone(executions[0].duration_ms)

        tail = client.log_tail(job.job_id)
        self.assertEqual([line.seq for line in tail.lines], [1, 2, 3])
        self.assertEqual(tail.lines[1].fields, [("ms", "1250")])
        self.assertEqual((tail.execution, tail.next_after, tail.open), (1, 3, False))

        results = client.job_results(job.job_id)
        self.assertEqual((results.job.state, results.job.result), (JobState.SUCCEEDED, b"sent"))
        self.assertEqual(results.parents, [])

        done = client.job_get(job.job_id)
        self.assertEqual(done.latest_execution.outcome, ExecutionOutcome.SUCCEEDED)
        self.assertEqual(done.progress.percent, 50)

        self.assertEqual(client.heartbeat(worker.worker_id, leaving=True).command, RunCommand())
        self.assertEqual(client.worker_get(worker.worker_id).state, WorkerState.STOPPED)
        with self.assertRaises(NotFound):
            client.heartbeat(worker.worker_id)

    def test_fail_details_and_execution_history(self):
        client = self.connect()
        client.queue_create("reports")
        client.enqueue("reports", b"q3", max_attempts=5)
        job = client.fetch("reports", wait_ms=1000)[0]
        client.fail(job.job_id, job.lease_id, "boom", RetryBackoff(), error_details="trace\nline 2")
        history = client.execution_list(job.job_id).executions
        self.assertEqual(len(history), 1)
        self.assertEqual(history[0].outcome, ExecutionOutcome.FAILED)
        self.assertEqual((history[0].error, history[0].error_details), ("boom", "trace\nline 2"))
        self.assertIsNone(history[0].worker_id)
        with self.assertRaises(LeaseLost):
            client.log(job.job_id, job.lease_id, ["too late"])
        with self.assertRaises(LeaseLost):
            client.progress(job.job_id, job.lease_id, 10)

    def test_log_tail_follows_new_lines(self):
        client = self.connect()
        client.queue_create("emails")
        client.enqueue("emails", b"x")
        job = client.fetch("emails", wait_ms=1000, lease_ms=30_000)[0]
        client.log(job.job_id, job.lease_id, ["first"])
        first = client.log_tail(job.job_id)
        self.assertEqual((first.execution, first.next_after, first.open), (1, 1, True))

        writer = self.connect()
        timer = threading.Timer(0.3, writer.log, (job.job_id, job.lease_id, ["second"]))
        timer.start()
        self.addCleanup(timer.cancel)
        started = time.monotonic()
        followed = client.log_tail(
            job.job_id, execution=1, lines=100, after_seq=first.next_after, wait_ms=10_000
        )
        self.assertLess(time.monotonic() - started, 5, "the long-poll did not wake")
        self.assertEqual([line.message for line in followed.lines], ["second"])
        self.assertEqual((followed.next_after, followed.open), (2, True))

        waited = client.log_tail(
            job.job_id, execution=1, lines=100, after_seq=2, wait_ms=200
        )
        self.assertEqual((waited.lines, waited.next_after, waited.open), ([], 2, True))

        client.ack(job.job_id, job.lease_id)
        ended = client.log_tail(job.job_id, execution=1, lines=100, after_seq=2, wait_ms=10_000)
        self.assertEqual((ended.lines, ended.open), ([], False))
        self.assertEqual(
            [line.message for line in client.log_follow(job.job_id)], ["first", "second"]
        )

    def test_log_lines_per_execution_quota(self):
        client = self.connect()
        client.queue_create("chatty")
        client.enqueue("chatty", b"x")
        job = client.fetch("chatty", wait_ms=1000, lease_ms=60_000)[0]
        stored = 0
        with self.assertRaises(QuotaExceeded) as raised:
            for _ in range(100):
                client.log(job.job_id, job.lease_id, ["line %d" % i for i in range(100)])
                stored += 100
        details = raised.exception.details
        self.assertEqual(details.limit, "log_lines_per_execution")
        self.assertEqual((details.current, details.max), (stored, stored))
        self.assertEqual(client.log_tail(job.job_id, lines=1).next_after, stored)

    def test_quiet_terminate_and_assign(self):
        client = self.connect()
        client.queue_create("emails")
        client.queue_create("reports")
        worker, _ = self.register(client)
        worker_id = worker.worker_id

        assigned = client.worker_assign(
            worker_id, [("reports", 5), QueueAssignment("emails", 1, active=False)]
        )
        self.assertEqual(assigned.assignments_version, 2)
        beat = client.heartbeat(worker_id, assignments_version=1)
        self.assertEqual(beat.assignments_version, 2)
        self.assertEqual(
            beat.assignments,
            [QueueAssignment("reports", 5, True), QueueAssignment("emails", 1, False)],
        )
        self.assertIsNone(client.heartbeat(worker_id, assignments_version=2).assignments)
        by_queue = client.assignment_list(queue="reports")
        self.assertEqual([(a.worker_id, a.weight) for a in by_queue.assignments], [(worker_id, 5)])
        self.assertEqual(len(client.assignment_list(worker_id=worker_id).assignments), 2)

        self.assertEqual(client.worker_quiet(worker_id).state, WorkerState.QUIET)
        self.assertEqual(client.heartbeat(worker_id, assignments_version=2).command, QuietCommand())
        with self.assertRaises(Conflict):
            client.fetch("reports", worker_id=worker_id)

        terminating = client.worker_terminate(worker_id, grace_ms=60_000)
        self.assertEqual(terminating.state, WorkerState.TERMINATING)
        beat = client.heartbeat(worker_id, assignments_version=2)
        self.assertEqual(beat.command, TerminateCommand(terminating.terminate_deadline_ms))
        with self.assertRaises(Conflict):
            client.worker_quiet(worker_id)

        client.heartbeat(worker_id, assignments_version=2, leaving=True)
        with self.assertRaises(Conflict):
            client.worker_terminate(worker_id)
        stopped = client.worker_list(state=WorkerState.STOPPED).workers
        self.assertEqual([w.worker_id for w in stopped], [worker_id])
        with self.assertRaises(NotFound):
            client.worker_get(worker_id + 1_000_000)

    def test_a_silent_worker_is_lost_and_its_job_released(self):
        client = self.connect()
        client.queue_create("emails")
        worker, beat = self.register(client)
        timeout_s = 3 * beat.heartbeat_interval_ms / 1000.0
        enqueued = client.enqueue("emails", b"x", max_attempts=3)
        job = client.fetch("emails", wait_ms=1000, lease_ms=600_000, worker_id=worker.worker_id)[0]

        # No heartbeat from now on: the worker is lost after the timeout and its lease is
        # released at once, long before the ten-minute lease would expire.
        again = client.fetch("emails", wait_ms=int((timeout_s + 5) * 1000))
        self.assertEqual([j.job_id for j in again], [enqueued.job_id])
        self.assertEqual(again[0].attempt, 2)
        self.assertEqual(client.worker_get(worker.worker_id).state, WorkerState.LOST)
        with self.assertRaises(LeaseLost):
            client.ack(job.job_id, job.lease_id)
        first = client.execution_list(enqueued.job_id).executions[0]
        self.assertEqual(first.outcome, ExecutionOutcome.WORKER_LOST)

        back = client.heartbeat(worker.worker_id)
        self.assertEqual(back.command, RunCommand())
        self.assertEqual(client.worker_get(worker.worker_id).state, WorkerState.ACTIVE)


if __name__ == "__main__":
    unittest.main()
