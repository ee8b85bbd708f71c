"""The worker, execution, log and progress methods of :class:`taskforge.Client`, against a
scripted broker on a socket pair.

The scripted broker reads each request frame, checks that its body is byte for byte the body
of a golden request vector, and answers with the body of a golden response vector. So each
client method is checked to send exactly the bytes PROTOCOL.md shows, and to return the
decoded reply, without a running broker (the live tests of these operations are in
``test_live_workers.py``).
"""

import pathlib
import socket
import sys
import threading
import unittest
import uuid

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from taskforge import (  # noqa: E402  (path set up above)
    Client,
    Connection,
    LeaseLost,
    LogLevel,
    NewLogLine,
    QueueAssignment,
    RetryBackoff,
    TerminateCommand,
    WorkerState,
    codec,
    messages,
)
from test_vectors import load_index  # noqa: E402

#: The job ids of the fixtures: a UUID v7 whose last byte varies.
JOB_6 = uuid.UUID("019acaf6-6c00-7c3e-9d12-3456789abc06")
JOB_7 = uuid.UUID("019acaf6-6c00-7c3e-9d12-3456789abc07")

#: The stack trace of ``0x0205_FAIL.request.details``.
STACK_TRACE = (
    "Traceback (most recent call last):\n"
    '  File "worker.py", line 42, in send\n'
    "    smtp.connect(host)\n"
    "ConnectionRefusedError: [Errno 111] Connection refused"
)


def body_hex(file_name):
    """The body of a vector, in hex."""
    return next(e for e in load_index() if e["file"] == file_name)["body_hex"]


class ScriptedBroker(threading.Thread):
    """Answers each expected request with a response body, over one socket."""

    def __init__(self, sock, script):
        super().__init__(daemon=True)
        self.sock = sock
        self.script = script
        #: (opcode, request body hex) of every request received.
        self.received = []
        self.failure = None

    def run(self):
        try:
            for opcode, kind, reply_hex in self.script:
                header = self._read(codec.HEADER_BYTES)
                parsed = codec.decode_header(header, 1 << 26)
                body = self._read(parsed.body_bytes)
                self.received.append((parsed.opcode, body.hex()))
                if parsed.opcode != opcode:
                    raise AssertionError("opcode %#06x, expected %#06x" % (parsed.opcode, opcode))
                reply = bytes.fromhex(reply_hex)
                self.sock.sendall(codec.encode_frame(kind, opcode, parsed.request_id, reply))
        except Exception as error:  # noqa: BLE001  (reported by the test)
            self.failure = error
        finally:
            self.sock.close()

    def _read(self, count):
        data = bytearray()
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise EOFError("the client closed")
            data += chunk
        return bytes(data)


class ClientWorkerMethodsTest(unittest.TestCase):
    """Each new method sends its vector's request and returns its vector's response."""

    def client_with(self, exchanges):
        """A client whose broker expects ``exchanges``: (opcode, request vector, response
        vector or ``("error", vector)``) in order."""
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
        broker = ScriptedBroker(broker_socket, script)
        broker.start()
        connection = Connection(client_socket)
        connection.frame_bytes_max = 1 << 22
        client = Client(connection, request_timeout_s=5)
        self.addCleanup(client.close)
        self.broker = broker
        return client

    def check_broker(self):
        self.broker.join(timeout=5)
        self.assertIsNone(self.broker.failure)
        self.assertEqual(self.broker.received, self.expected)

    def test_register_heartbeat_and_admin_orders(self):
        op = messages.Opcode
        client = self.client_with(
            [
                (op.WORKER_REGISTER, "0x0400_WORKER_REGISTER.request.hex",
                 "0x0400_WORKER_REGISTER.response.hex"),
                (op.WORKER_REGISTER, "0x0400_WORKER_REGISTER.request.minimal.hex",
                 "0x0400_WORKER_REGISTER.response.hex"),
                (op.HEARTBEAT, "0x0401_HEARTBEAT.request.hex",
                 "0x0401_HEARTBEAT.response.terminate.hex"),
                (op.HEARTBEAT, "0x0401_HEARTBEAT.request.leaving.hex",
                 "0x0401_HEARTBEAT.response.hex"),
                (op.WORKER_LIST, "0x0402_WORKER_LIST.request.lost.hex",
                 "0x0402_WORKER_LIST.response.lost.hex"),
                (op.WORKER_GET, "0x0403_WORKER_GET.request.hex", "0x0403_WORKER_GET.response.hex"),
                (op.WORKER_QUIET, "0x0404_WORKER_QUIET.request.hex",
                 "0x0404_WORKER_QUIET.response.hex"),
                (op.WORKER_TERMINATE, "0x0405_WORKER_TERMINATE.request.hex",
                 "0x0405_WORKER_TERMINATE.response.hex"),
                (op.WORKER_TERMINATE, "0x0405_WORKER_TERMINATE.request.grace.hex",
                 "0x0405_WORKER_TERMINATE.response.grace.hex"),
                (op.WORKER_ASSIGN, "0x0406_WORKER_ASSIGN.request.hex",
                 "0x0406_WORKER_ASSIGN.response.hex"),
                (op.ASSIGNMENT_LIST, "0x0407_ASSIGNMENT_LIST.request.hex",
                 "0x0407_ASSIGNMENT_LIST.response.hex"),
                (op.ASSIGNMENT_LIST, "0x0407_ASSIGNMENT_LIST.request.worker.hex",
                 "0x0407_ASSIGNMENT_LIST.response.worker.hex"),
            ]
        )
        worker = client.register_worker(
            "billing-worker-1",
            [("emails", 3), ("reports.daily", 1)],
            concurrency=8,
            hostname="worker-a.internal",
            pid=4242,
            labels=[("region", "eu-west-1"), ("gpu", "false")],
        )
        self.assertEqual((worker.worker_id, worker.state), (7, WorkerState.ACTIVE))
        client.register_worker("w", "emails", hostname="", pid=0, version="")
        beat = client.heartbeat(7, in_flight=3)
        self.assertEqual(beat.command, TerminateCommand(1764338430000))
        client.heartbeat(300, in_flight=0, assignments_version=3, leaving=True)
        lost = client.worker_list(state=WorkerState.LOST, after=300, limit=1000)
        self.assertEqual([w.worker_id for w in lost.workers], [70000])
        self.assertEqual(client.worker_get(7).leased_jobs, 3)
        self.assertEqual(client.worker_quiet(300).state, WorkerState.QUIET)
        self.assertEqual(client.worker_terminate(300).state, WorkerState.TERMINATING)
        client.worker_terminate(7, grace_ms=120_000)
        assigned = client.worker_assign(
            7, [("reports.daily", 5), QueueAssignment("emails", 1, active=False)]
        )
        self.assertEqual(assigned.assignments_version, 2)
        self.assertEqual(client.assignment_list(queue="emails", limit=1).next_after, 7)
        client.assignment_list(worker_id=7, limit=1000)
        self.check_broker()

    def test_fetch_fail_log_progress_and_reads(self):
        op = messages.Opcode
        client = self.client_with(
            [
                (op.FETCH, "0x0202_FETCH.request.worker.hex", "0x0202_FETCH.response.hex"),
                (op.FAIL, "0x0205_FAIL.request.details.hex", "0x0205_FAIL.response.hex"),
                (op.PROGRESS, "0x020a_PROGRESS.request.hex", "0x020a_PROGRESS.response.hex"),
                (op.PROGRESS, "0x020a_PROGRESS.request.done.hex", "0x020a_PROGRESS.response.hex"),
                (op.LOG, "0x020b_LOG.request.hex", "0x020b_LOG.response.hex"),
                (op.LOG, "0x020b_LOG.request.one_line.hex", ("error", "error_LEASE_LOST.log.hex")),
                (op.LOG_TAIL, "0x020c_LOG_TAIL.request.hex", "0x020c_LOG_TAIL.response.hex"),
                (op.EXECUTION_LIST, "0x020d_EXECUTION_LIST.request.next_page.hex",
                 "0x020d_EXECUTION_LIST.response.next_page.hex"),
                (op.JOB_RESULTS, "0x020e_JOB_RESULTS.request.hex",
                 "0x020e_JOB_RESULTS.response.hex"),
            ]
        )
        jobs = client.fetch(
            ["emails", "reports.daily"], max_jobs=8, wait_ms=30_000, worker_id=7, weights=[3, 1]
        )
        self.assertEqual(len(jobs), 2)
        failed = client.fail(
            JOB_7, 250, "smtp: connection refused", RetryBackoff(), error_details=STACK_TRACE
        )
        self.assertEqual(failed.attempts, 1)
        client.progress(JOB_6, 300, 40, "rendered 4 of 10 pages")
        client.progress(JOB_6, 300, 100)
        logged = client.log(
            JOB_6,
            300,
            [
                (LogLevel.INFO, "connecting to smtp.example.com", {"attempt": "2"}),
                ("warn", "slow handshake", [("ms", "1250")]),
                NewLogLine(LogLevel.DEBUG, "sent 1 message"),
            ],
        )
        self.assertEqual((logged.execution, logged.first_seq), (2, 1))
        with self.assertRaises(LeaseLost):
            client.log(JOB_6, 300, [("error", "mailbox full", {"rcpt": "bo@acme.example"})])
        self.assertFalse(client.closed)
        tail = client.log_tail(JOB_6)
        self.assertEqual([line.seq for line in tail.lines], [1, 2, 3])
        history = client.execution_list(JOB_7, after=2, limit=2)
        self.assertEqual([e.execution for e in history.executions], [3, 4])
        results = client.job_results(JOB_6)
        self.assertEqual(results.job.result, b'{"sent":true}')
        self.assertEqual(results.parents, [])
        self.check_broker()

    def test_log_follow_reads_until_the_execution_ends(self):
        op = messages.Opcode
        client = self.client_with(
            [
                (op.LOG_TAIL, "0x020c_LOG_TAIL.request.hex", "0x020c_LOG_TAIL.response.hex"),
                (op.LOG_TAIL, "0x020c_LOG_TAIL.request.follow.hex",
                 "0x020c_LOG_TAIL.response.waited.hex"),
                (op.LOG_TAIL, "0x020c_LOG_TAIL.request.follow.hex",
                 "0x020c_LOG_TAIL.response.follow.hex"),
            ]
        )
        lines = list(client.log_follow(JOB_6, wait_ms=30_000))
        self.assertEqual([line.seq for line in lines], [1, 2, 3, 4])
        self.assertEqual(lines[-1].message, "mailbox full")
        self.check_broker()


if __name__ == "__main__":
    unittest.main()
