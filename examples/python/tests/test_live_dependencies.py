"""Dependencies, unique keys, expiry and queue flow limits through the Python client,
against a real broker (PROTOCOL.md §6.12-§6.15).

The broker is started per test exactly as in ``test_live_server.py`` (a free loopback port,
a fresh data directory, ``--fsync never``, killed whatever happens); build it first with
``cargo build --bin taskforge``.
"""

import pathlib
import sys
import time
import unittest
import uuid

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from taskforge import (  # noqa: E402  (path set up above)
    InvalidArgument,
    JobState,
    NewJob,
    NotFound,
    ParentFailure,
    ParentInBatch,
    RetryNever,
    UniqueKey,
    UniqueUntil,
    messages,
)
from test_live_server import LiveServerTest  # noqa: E402

#: What a job that expired records as its last error.
EXPIRED_ERROR = "not started before it expired"


class LiveDependencyTest(LiveServerTest):
    """Each test has its own broker."""

    def fetch_all(self, client, queue):
        """Every job a FETCH hands out now, by payload."""
        return {job.payload: job for job in client.fetch(queue, max_jobs=100)}

    def test_a_diamond_batch_runs_its_fan_in_job_after_both_parents(self):
        client = self.connect()
        client.queue_create("reports")
        enqueued = client.enqueue_batch(
            [
                NewJob("reports", b"extract"),
                NewJob("reports", b"render-pdf", depends_on=[ParentInBatch(0)]),
                NewJob("reports", b"render-csv", depends_on=[ParentInBatch(0)]),
                NewJob(
                    "reports",
                    b"publish",
                    depends_on=[ParentInBatch(1), ParentInBatch(2)],
                ),
            ]
        )
        extract, pdf, csv, publish = enqueued.job_ids
        self.assertEqual(enqueued.duplicates, [False] * 4)
        self.assertEqual(
            [client.job_get(job).state for job in enqueued.job_ids],
            [JobState.READY, JobState.BLOCKED, JobState.BLOCKED, JobState.BLOCKED],
        )
        self.assertEqual(client.queue_stats("reports").counts.blocked, 3)
        fan_in = client.job_get(publish)
        self.assertEqual((fan_in.parents, fan_in.parents_remaining), ([pdf, csv], 2))
        self.assertEqual(client.job_get(extract).children, [pdf, csv])

        leased = self.fetch_all(client, "reports")
        self.assertEqual(list(leased), [b"extract"])
        client.ack(extract, leased[b"extract"].lease_id, result=b"rows=12")

        leased = self.fetch_all(client, "reports")
        self.assertEqual(sorted(leased), [b"render-csv", b"render-pdf"])
        client.ack(pdf, leased[b"render-pdf"].lease_id, result=b"report.pdf")
        fan_in = client.job_get(publish)
        self.assertEqual((fan_in.state, fan_in.parents_remaining), (JobState.BLOCKED, 1))
        self.assertEqual(client.fetch("reports", max_jobs=10), [])

        client.ack(csv, leased[b"render-csv"].lease_id, result=b"report.csv")
        self.assertEqual(client.job_get(publish).state, JobState.READY)
        leased = self.fetch_all(client, "reports")
        self.assertEqual(list(leased), [b"publish"])

        # The fan-in job reads what its parents produced, in the order it named them.
        results = client.job_results(publish)
        self.assertEqual(results.job.state, JobState.LEASED)
        self.assertEqual(
            [(parent.job_id, parent.state, parent.result) for parent in results.parents],
            [
                (pdf, JobState.SUCCEEDED, b"report.pdf"),
                (csv, JobState.SUCCEEDED, b"report.csv"),
            ],
        )
        client.ack(publish, leased[b"publish"].lease_id)
        self.assertEqual(client.queue_stats("reports").counts.succeeded, 4)

    def test_a_held_unique_key_answers_the_existing_job(self):
        client = self.connect()
        client.queue_create("sync")
        client.queue_create("other")
        key = UniqueKey("sync:acme", UniqueUntil.FINISHED)
        first = client.enqueue("sync", b"first", unique=key)
        self.assertFalse(first.duplicate)
        again = client.enqueue("sync", b"second", unique=key)
        self.assertEqual(
            (again.job_id, again.state, again.duplicate), (first.job_id, JobState.READY, True)
        )
        self.assertEqual(client.queue_stats("sync").counts.ready, 1, "nothing was created")
        self.assertEqual(client.job_get(first.job_id).unique_key, "sync:acme")
        # The key's scope is its queue.
        self.assertFalse(client.enqueue("other", b"elsewhere", unique=key).duplicate)

        # Within one batch, a later job with the key gets the earlier one's id.
        batch = client.enqueue_batch(
            [
                NewJob("other", b"a", unique=UniqueKey("digest", window_ms=60_000)),
                NewJob("other", b"b", unique=UniqueKey("digest", window_ms=60_000)),
                NewJob("sync", b"c", unique=key),
            ]
        )
        self.assertEqual(batch.duplicates, [False, True, True])
        self.assertEqual(batch.job_ids[1], batch.job_ids[0])
        self.assertEqual(batch.job_ids[2], first.job_id)

        # Once the holder finished, an `until finished` key no longer holds.
        job = client.fetch("sync")[0]
        client.ack(job.job_id, job.lease_id)
        self.assertFalse(client.enqueue("sync", b"third", unique=key).duplicate)

    def test_a_job_not_started_before_its_ttl_expires_and_is_never_delivered(self):
        client = self.connect()
        client.queue_create("hooks")
        client.queue_pause("hooks")  # no worker takes it in time
        enqueued = client.enqueue("hooks", b"late", ttl_ms=200)
        self.assertEqual(enqueued.state, JobState.READY)
        created = client.job_get(enqueued.job_id)
        self.assertEqual(created.expires_at_ms, created.created_at_ms + 200)
        time.sleep(0.8)
        expired = client.job_get(enqueued.job_id)
        self.assertEqual(
            (expired.state, expired.last_error, expired.executions),
            (JobState.EXPIRED, EXPIRED_ERROR, 0),
        )
        client.queue_resume("hooks")
        self.assertEqual(client.fetch("hooks", max_jobs=10, wait_ms=200), [])
        counts = client.queue_stats("hooks").counts
        self.assertEqual((counts.ready, counts.expired), (0, 1))

    def test_a_batch_whose_parents_form_a_cycle_is_refused_whole(self):
        # PROTOCOL.md §6.12: INVALID_ARGUMENT naming a job on the cycle, with its BatchItem
        # index, and nothing stored.
        client = self.connect()
        client.queue_create("loop")
        with self.assertRaises(InvalidArgument) as caught:
            client.enqueue_batch(
                [
                    NewJob("loop", b"a"),
                    NewJob("loop", b"b", depends_on=[ParentInBatch(0), ParentInBatch(3)]),
                    NewJob("loop", b"c", depends_on=[ParentInBatch(1)]),
                    NewJob("loop", b"d", depends_on=[ParentInBatch(2)]),
                ]
            )
        self.assertIn("dependency cycle", caught.exception.message)
        self.assertIsInstance(caught.exception.details, messages.BatchItemDetails)
        self.assertIn(caught.exception.details.index, (1, 2, 3))
        counts = client.queue_stats("loop").counts
        self.assertEqual((counts.ready, counts.blocked), (0, 0), "nothing was stored")

    def test_unknown_parents_and_failed_parents(self):
        client = self.connect()
        client.queue_create("jobs")
        with self.assertRaises(NotFound) as caught:
            client.enqueue("jobs", b"orphan", depends_on=[uuid.UUID(int=5)])
        self.assertIn("parent job", caught.exception.message)

        parent = client.enqueue("jobs", b"parent", max_attempts=1).job_id
        cancels = client.enqueue("jobs", b"cancels", depends_on=[parent]).job_id
        runs = client.enqueue(
            "jobs", b"runs", depends_on=[parent], on_parent_failure=ParentFailure.RUN
        ).job_id
        grandchild = client.enqueue("jobs", b"grandchild", depends_on=[cancels]).job_id
        leased = client.fetch("jobs")[0]
        self.assertEqual(leased.job_id, parent)
        client.fail(parent, leased.lease_id, "boom", RetryNever())

        cancelled = client.job_get(cancels)
        self.assertEqual(cancelled.state, JobState.CANCELLED)
        self.assertIn("ended dead", cancelled.last_error)
        self.assertEqual(client.job_get(grandchild).state, JobState.CANCELLED)
        self.assertEqual(client.job_get(runs).state, JobState.READY)
        # A parent that already failed: the child is created and cancelled at once.
        late = client.enqueue("jobs", b"late", depends_on=[parent])
        self.assertEqual(late.state, JobState.CANCELLED)

    def test_an_in_flight_limit_caps_leases(self):
        client = self.connect()
        created = client.queue_create("limited", in_flight_max=2, retention_ms=3_600_000)
        self.assertEqual(
            (created.defaults.in_flight_max, created.defaults.retention_ms), (2, 3_600_000)
        )
        client.enqueue_batch([NewJob("limited", b"%d" % index) for index in range(5)])
        first = client.fetch("limited", max_jobs=10)
        self.assertEqual(len(first), 2)
        self.assertEqual(client.fetch("limited", max_jobs=10), [])
        client.ack(first[0].job_id, first[0].lease_id)
        self.assertEqual(len(client.fetch("limited", max_jobs=10)), 1)
        updated = client.queue_update("limited", in_flight_max=0, retention_ms=0)
        self.assertEqual((updated.defaults.in_flight_max, updated.defaults.retention_ms),
                         (None, None))
        self.assertEqual(len(client.fetch("limited", max_jobs=10)), 2)


if __name__ == "__main__":
    unittest.main()
