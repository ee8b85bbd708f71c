"""Dependencies, unique keys, expiry and queue flow limits through the Python client, without
a broker: the golden vectors decode to the values a client works with, and each client
method sends exactly a golden request's bytes to a scripted broker (the one of
``test_client_workers.py``) and returns the decoded golden reply.

The live counterparts are in ``test_live_dependencies.py``.
"""

import pathlib
import socket
import sys
import unittest
import uuid

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from taskforge import (  # noqa: E402  (path set up above)
    Client,
    Conflict,
    Connection,
    InvalidArgument,
    JobState,
    NewJob,
    NotFound,
    ParentFailure,
    ParentInBatch,
    ParentJob,
    UniqueKey,
    UniqueUntil,
    codec,
    messages,
    parent_ref,
)
from test_client_workers import ScriptedBroker, body_hex  # noqa: E402
from test_vectors import body_type, load_index, vector  # noqa: E402

#: The vectors' "now": 2025-11-28T14:00:00Z.
NOW_MS = 1_764_338_400_000
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def job_id(last):
    """The fixtures' job id whose last byte is ``last``."""
    return uuid.UUID("019acaf6-6c00-7c3e-9d12-3456789abc%02x" % last)


EXTRACT, RENDER_PDF, RENDER_CSV, PUBLISH = (job_id(n) for n in (0x10, 0x11, 0x12, 0x13))
INVOICE, DIGEST, NOTIFY = job_id(0x14), job_id(0x15), job_id(0x16)


def diamond():
    """The nightly report of the vectors: extract, two renders, and publish after both."""
    return [
        NewJob(
            "reports.daily",
            b'{"step":"extract"}',
            unique=UniqueKey("report:2025-11-28", UniqueUntil.FINISHED),
        ),
        NewJob("reports.daily", b'{"step":"render","format":"pdf"}', depends_on=[parent_ref(0)]),
        NewJob("reports.daily", b'{"step":"render","format":"csv"}', depends_on=[parent_ref(0)]),
        NewJob(
            "reports.daily",
            b'{"step":"publish"}',
            depends_on=[ParentInBatch(1), ParentInBatch(2)],
            on_parent_failure=ParentFailure.RUN,
            expires_at_ms=NOW_MS + 6 * HOUR_MS,
        ),
    ]


def digest():
    """Ana's digest: unique for a day whatever its state."""
    return NewJob(
        "emails", b'{"digest":"ana"}', unique=UniqueKey("digest:ana", window_ms=DAY_MS)
    )


def sync():
    """``sync:acme``: unique until its job finishes."""
    return NewJob(
        "emails", b'{"sync":"acme"}', unique=UniqueKey("sync:acme", UniqueUntil.FINISHED)
    )


class DependencyVectorsTest(unittest.TestCase):
    """The new vectors decode to the values PROTOCOL.md describes."""

    def test_requests_build_from_the_python_types(self):
        for file_name, body in (
            ("0x0201_ENQUEUE_BATCH.request.diamond.hex", messages.EnqueueBatchRequest(diamond())),
            (
                "0x0201_ENQUEUE_BATCH.request.unique.hex",
                messages.EnqueueBatchRequest([digest(), digest(), sync()]),
            ),
            ("0x0200_ENQUEUE.request.unique.hex", messages.EnqueueRequest(sync())),
            (
                "0x0103_QUEUE_UPDATE.request.flow_limits.hex",
                messages.QueueWrite(
                    "webhooks",
                    messages.QueueSettings(
                        retention_ms=0, in_flight_max=16, deliveries_per_second=0
                    ),
                ),
            ),
        ):
            with self.subTest(vector=file_name):
                self.assertEqual(messages.encode_body(body).hex(), body_hex(file_name))

    def test_replies(self):
        blocked = vector("0x0200_ENQUEUE.response.blocked.hex")
        self.assertEqual((blocked.job_id, blocked.state, blocked.duplicate),
                         (INVOICE, JobState.BLOCKED, False))
        duplicate = vector("0x0200_ENQUEUE.response.duplicate.hex")
        self.assertEqual((duplicate.job_id, duplicate.state, duplicate.duplicate),
                         (job_id(7), JobState.LEASED, True))
        batch = vector("0x0201_ENQUEUE_BATCH.response.duplicates.hex")
        self.assertEqual(batch.job_ids, [DIGEST, DIGEST, job_id(7)])
        self.assertEqual(batch.duplicates, [False, True, True])
        self.assertEqual(vector("0x0201_ENQUEUE_BATCH.response.hex").duplicates, [False] * 3)

    def test_job_views(self):
        publish = vector("0x0208_JOB_GET.response.blocked.hex")
        self.assertEqual(publish.state, JobState.BLOCKED)
        self.assertEqual(publish.parents, [RENDER_PDF, RENDER_CSV])
        self.assertEqual((publish.parents_remaining, publish.children), (1, [NOTIFY]))
        self.assertEqual(publish.on_parent_failure, ParentFailure.RUN)
        invoice = vector("0x0208_JOB_GET.response.unique_key.hex")
        self.assertEqual(invoice.unique_key, "invoice:INV-2025-0042")
        self.assertEqual(invoice.expires_at_ms, NOW_MS + HOUR_MS)
        expired = vector("0x0208_JOB_GET.response.expired.hex")
        self.assertEqual((expired.state, expired.last_error, expired.executions),
                         (JobState.EXPIRED, "not started before it expired", 0))
        orphan = vector("0x0208_JOB_GET.response.parent_failed.hex")
        self.assertEqual(orphan.state, JobState.CANCELLED)
        self.assertIn("ended dead", orphan.last_error)
        plain = vector("0x0208_JOB_GET.response.hex")
        self.assertEqual(
            (plain.parents, plain.parents_remaining, plain.children, plain.unique_key),
            ([], 0, [], None),
        )
        results = vector("0x020e_JOB_RESULTS.response.fan_in.hex")
        self.assertEqual(
            [(parent.job_id, parent.state, parent.result) for parent in results.parents],
            [(RENDER_PDF, JobState.SUCCEEDED, b'{"pages":12}'), (RENDER_CSV, JobState.DEAD, None)],
        )

    def test_queue_flow_limits(self):
        created = vector("0x0100_QUEUE_CREATE.response.flow_limits.hex").defaults
        self.assertEqual(
            (created.retention_ms, created.in_flight_max, created.deliveries_per_second),
            (3 * DAY_MS, 8, 300),
        )
        updated = vector("0x0103_QUEUE_UPDATE.response.flow_limits.hex").defaults
        self.assertEqual(
            (updated.retention_ms, updated.in_flight_max, updated.deliveries_per_second),
            (None, 16, None),
        )
        plain = vector("0x0101_QUEUE_GET.response.hex").defaults
        self.assertEqual((plain.retention_ms, plain.in_flight_max), (None, None))

    def test_new_fields_are_required_as_in_rust(self):
        # PROTOCOL.md §12: the fields are part of every version 1 body. NewJob is nested,
        # so a body that stops before its last fields does not decode (nor do the replies
        # that stop before their appended fields).
        for file_name, cut in (
            ("0x0200_ENQUEUE.request.minimal.hex", 5),
            ("0x0200_ENQUEUE.response.minimal.hex", 1),
            ("0x0201_ENQUEUE_BATCH.response.hex", 4),
            ("0x0208_JOB_GET.response.never_delivered.hex", 6),
        ):
            with self.subTest(vector=file_name):
                entry = next(e for e in load_index() if e["file"] == file_name)
                body = bytes.fromhex(entry["body_hex"])
                with self.assertRaises(codec.DecodeError):
                    messages.decode_body(body_type(entry), body[:-cut])

    def test_parent_ref_accepts_ids_and_positions(self):
        self.assertEqual(parent_ref(3), ParentInBatch(3))
        self.assertEqual(parent_ref(EXTRACT), ParentJob(EXTRACT))
        self.assertEqual(parent_ref(str(EXTRACT)), ParentJob(EXTRACT))
        self.assertEqual(parent_ref(ParentJob(EXTRACT)), ParentJob(EXTRACT))
        with self.assertRaises(TypeError):
            parent_ref(True)
        with self.assertRaises(TypeError):
            parent_ref(1.5)


class ClientDependencyMethodsTest(unittest.TestCase):
    """Each method sends its vector's request and returns its vector's response."""

    def client_with(self, exchanges):
        client_socket, broker_socket = socket.socketpair()
        script = []
        self.expected = []
        for opcode, request_file, reply in exchanges:
            if isinstance(reply, tuple):
                kind, reply_file = codec.FrameKind.ERROR, reply[1]
            else:
                kind, reply_file = codec.FrameKind.RESPONSE, reply
            script.append((opcode, kind, body_hex(reply_file)))
            self.expected.append((opcode, body_hex(request_file)))
        self.broker = ScriptedBroker(broker_socket, script)
        self.broker.start()
        connection = Connection(client_socket)
        connection.frame_bytes_max = 1 << 22
        client = Client(connection, request_timeout_s=5)
        self.addCleanup(client.close)
        return client

    def check_broker(self):
        self.broker.join(timeout=5)
        self.assertIsNone(self.broker.failure)
        self.assertEqual(self.broker.received, self.expected)

    def test_enqueue_with_parents_unique_keys_and_expiry(self):
        op = messages.Opcode
        client = self.client_with(
            [
                (op.ENQUEUE, "0x0200_ENQUEUE.request.depends_on.hex",
                 "0x0200_ENQUEUE.response.blocked.hex"),
                (op.ENQUEUE, "0x0200_ENQUEUE.request.unique.hex",
                 "0x0200_ENQUEUE.response.duplicate.hex"),
                (op.ENQUEUE, "0x0200_ENQUEUE.request.depends_on.hex",
                 ("error", "error_NOT_FOUND.parent.hex")),
                (op.ENQUEUE_BATCH, "0x0201_ENQUEUE_BATCH.request.diamond.hex",
                 "0x0201_ENQUEUE_BATCH.response.diamond.hex"),
                (op.ENQUEUE_BATCH, "0x0201_ENQUEUE_BATCH.request.unique.hex",
                 "0x0201_ENQUEUE_BATCH.response.duplicates.hex"),
                (op.ENQUEUE_BATCH, "0x0201_ENQUEUE_BATCH.request.diamond.hex",
                 ("error", "error_INVALID_ARGUMENT.dependency_cycle.hex")),
                (op.ENQUEUE_BATCH, "0x0201_ENQUEUE_BATCH.request.diamond.hex",
                 ("error", "error_CONFLICT.duplicate_parent.hex")),
            ]
        )

        def invoice():
            return client.enqueue(
                "emails",
                b'{"invoice":"INV-2025-0042"}',
                depends_on=[job_id(7), str(job_id(9))],
                on_parent_failure=ParentFailure.RUN,
                unique=UniqueKey("invoice:INV-2025-0042", UniqueUntil.STARTED, 600_000),
                expires_at_ms=NOW_MS + DAY_MS,
                ttl_ms=HOUR_MS,
            )

        blocked = invoice()
        self.assertEqual((blocked.job_id, blocked.state, blocked.duplicate),
                         (INVOICE, JobState.BLOCKED, False))
        held = client.enqueue(
            "emails", b'{"sync":"acme"}', unique=UniqueKey("sync:acme", UniqueUntil.FINISHED)
        )
        self.assertEqual((held.job_id, held.duplicate), (job_id(7), True))
        with self.assertRaises(NotFound) as caught:
            invoice()
        self.assertIn("parent job", caught.exception.message)

        enqueued = client.enqueue_batch(diamond())
        self.assertEqual(enqueued.job_ids, [EXTRACT, RENDER_PDF, RENDER_CSV, PUBLISH])
        self.assertEqual(enqueued.duplicates, [False] * 4)
        enqueued = client.enqueue_batch([digest(), digest(), sync()])
        self.assertEqual(enqueued.duplicates, [False, True, True])
        with self.assertRaises(InvalidArgument) as caught:
            client.enqueue_batch(diamond())
        self.assertEqual(caught.exception.details, messages.BatchItemDetails(3))
        with self.assertRaises(Conflict):
            client.enqueue_batch(diamond())
        self.assertFalse(client.closed)
        self.check_broker()

    def test_queue_flow_limits_job_views_and_results(self):
        op = messages.Opcode
        client = self.client_with(
            [
                (op.QUEUE_CREATE, "0x0100_QUEUE_CREATE.request.flow_limits.hex",
                 "0x0100_QUEUE_CREATE.response.flow_limits.hex"),
                (op.QUEUE_UPDATE, "0x0103_QUEUE_UPDATE.request.flow_limits.hex",
                 "0x0103_QUEUE_UPDATE.response.flow_limits.hex"),
                (op.JOB_GET, "0x0208_JOB_GET.request.hex", "0x0208_JOB_GET.response.blocked.hex"),
                (op.JOB_RESULTS, "0x020e_JOB_RESULTS.request.hex",
                 "0x020e_JOB_RESULTS.response.fan_in.hex"),
            ]
        )
        created = client.queue_create(
            "webhooks", lease_ms=10_000, retention_ms=3 * DAY_MS, in_flight_max=8,
            deliveries_per_second=300,
        )
        self.assertEqual(created.defaults.in_flight_max, 8)
        updated = client.queue_update(
            "webhooks", retention_ms=0, in_flight_max=16, deliveries_per_second=0
        )
        self.assertEqual(
            (updated.defaults.retention_ms, updated.defaults.deliveries_per_second), (None, None)
        )
        # The scripted broker answers any JOB_GET of job 6 with the blocked view.
        self.assertEqual(client.job_get(job_id(6)).parents_remaining, 1)
        results = client.job_results(job_id(6))
        self.assertEqual([parent.job_id for parent in results.parents], [RENDER_PDF, RENDER_CSV])
        self.check_broker()


if __name__ == "__main__":
    unittest.main()
