"""The Python client against a real broker.

Each test starts the ``taskforge`` binary on a free loopback port with a fresh data
directory and ``--fsync never`` (durability is not under test here), and kills it when the
test ends, whatever happened: the kill is registered as a cleanup the moment the process
exists, so it runs even when ``setUp`` itself fails (``tearDown`` would not). The binary
is ``$TASKFORGE_BIN``, or ``target/debug/taskforge`` under the repository root; build it
first with ``cargo build --bin taskforge``.
"""

import os
import pathlib
import re
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from taskforge import (  # noqa: E402  (path set up above)
    ALL_SCOPES,
    AckRequest,
    ApiKey,
    Client,
    Conflict,
    Connection,
    Forbidden,
    JobState,
    LeaseLost,
    NewJob,
    NotFound,
    OrgStatus,
    Password,
    Plan,
    PrincipalKind,
    RetryBackoff,
    RetryNever,
    Role,
    RootToken,
    Scope,
    SubscriptionStatus,
    Unauthenticated,
    codec,
    errors,
    messages,
)

REPOSITORY_ROOT = pathlib.Path(__file__).resolve().parents[3]
ROOT_TOKEN = "python-client-test-root-token"

#: How long the broker may take to start listening.
STARTUP_TIMEOUT_S = 15.0
#: How long the broker gets to stop after SIGKILL.
STOP_TIMEOUT_S = 5.0


def broker_binary():
    """The broker binary to test: ``$TASKFORGE_BIN`` or the debug build."""
    configured = os.environ.get("TASKFORGE_BIN")
    if configured:
        return pathlib.Path(configured)
    return REPOSITORY_ROOT / "target" / "debug" / "taskforge"


def free_port():
    """A loopback port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LiveServerTest(unittest.TestCase):
    """Starts a broker per test; ``self.port`` is where it listens."""

    def setUp(self):
        binary = broker_binary()
        if not binary.is_file():
            self.fail("no broker binary at %s: run `cargo build --bin taskforge`" % binary)
        self.data_dir = tempfile.TemporaryDirectory(prefix="taskforge-py-")
        self.addCleanup(self.data_dir.cleanup)
        self.port = free_port()
        self.log_path = pathlib.Path(self.data_dir.name) / "broker.log"
        self.log_file = open(self.log_path, "wb")
        self.addCleanup(self.log_file.close)
        environment = dict(os.environ, TASKFORGE_ROOT_TOKEN=ROOT_TOKEN)
        self.server = subprocess.Popen(
            [
                str(binary),
                "server",
                "--listen",
                "127.0.0.1:%d" % self.port,
                "--admin-listen",
                "127.0.0.1:%d" % free_port(),
                "--data-dir",
                str(pathlib.Path(self.data_dir.name) / "data"),
                "--fsync",
                "never",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            env=environment,
        )
        self.addCleanup(self.stop_server)
        self.wait_until_listening()

    def stop_server(self):
        """Kills the broker and reaps it."""
        self.server.kill()
        self.server.wait(timeout=STOP_TIMEOUT_S)

    def wait_until_listening(self):
        """Polls the port until the broker accepts connections."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                self.fail("the broker exited with %s:\n%s" % (self.server.returncode, self.log()))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.fail(
            "the broker did not listen within %.0f s:\n%s" % (STARTUP_TIMEOUT_S, self.log())
        )

    def log(self):
        """What the broker printed so far."""
        self.log_file.flush()
        return self.log_path.read_text(errors="replace")

    def connect(self, credentials=RootToken(ROOT_TOKEN), project_id=None):
        """A client with an open session, closed when the test ends."""
        client = Client.connect("127.0.0.1", self.port, credentials, project_id=project_id)
        self.addCleanup(client.close)
        return client

    def new_project(self, root, slug):
        """An organization on the pro plan and a project in it, made by ``root``."""
        org = root.org_create("Org %s" % slug, slug, Plan.PRO)
        project = root.project_create(org.org_id, "Project %s" % slug, slug)
        return org, project


class RoundTripTest(LiveServerTest):
    """The acceptance checks of issue 7, and the rest of the client's operations."""

    def test_enqueue_fetch_ack_round_trip(self):
        client = self.connect()
        self.assertEqual(client.session.principal_kind, messages.PrincipalKind.ROOT)
        client.queue_create("emails")
        enqueued = client.enqueue(
            "emails",
            b"hello",
            priority=5,
            max_attempts=3,
            lease_ms=5000,
            metadata={"tenant": "acme"},
        )
        self.assertEqual(enqueued.state, JobState.READY)

        jobs = client.fetch("emails", wait_ms=1000)
        self.assertEqual(len(jobs), 1)
        job = jobs[0]
        self.assertEqual(
            (job.job_id, job.payload, job.attempt, job.max_attempts, job.priority),
            (enqueued.job_id, b"hello", 1, 3, 5),
        )
        self.assertEqual(job.metadata, [("tenant", "acme")])

        client.ack(job.job_id, job.lease_id, result=b"sent")
        info = client.job_get(job.job_id)
        self.assertEqual(info.state, JobState.SUCCEEDED)
        self.assertEqual(info.result, b"sent")
        self.assertEqual(info.attempts, 1)
        self.assertIsNotNone(info.finished_at_ms)

    def test_fail_schedules_a_retry(self):
        client = self.connect()
        client.queue_create("reports")
        client.enqueue("reports", b"q3", max_attempts=5)
        job = client.fetch("reports", wait_ms=1000)[0]
        now_ms = client.ping()

        failed = client.fail(job.job_id, job.lease_id, "upstream timed out", RetryBackoff())
        self.assertEqual(failed.state, JobState.SCHEDULED)
        self.assertEqual(failed.attempts, 1)
        self.assertGreater(failed.run_at_ms, now_ms)

        info = client.job_get(job.job_id)
        self.assertEqual(info.state, JobState.SCHEDULED)
        self.assertEqual(info.last_error, "upstream timed out")
        self.assertEqual(info.run_at_ms, failed.run_at_ms)

    def test_stale_lease_ack_raises_lease_lost(self):
        client = self.connect()
        client.queue_create("thumbnails")
        client.enqueue("thumbnails", b"img-1")
        first = client.fetch("thumbnails", lease_ms=100)[0]
        time.sleep(0.15)
        # The broker notices the expiry within about 100 ms; the long-poll waits for it.
        second = client.fetch("thumbnails", wait_ms=5000, lease_ms=10000)[0]
        self.assertEqual(second.job_id, first.job_id)
        self.assertNotEqual(second.lease_id, first.lease_id)
        self.assertEqual(second.attempt, 2)

        with self.assertRaises(LeaseLost) as raised:
            client.ack(first.job_id, first.lease_id, result=b"stale")
        self.assertEqual((raised.exception.code, raised.exception.name), (10, "LEASE_LOST"))
        self.assertFalse(client.closed)

        client.ack(second.job_id, second.lease_id, result=b"fresh")
        self.assertEqual(client.job_get(first.job_id).result, b"fresh")

    def test_wrong_root_token_is_unauthenticated_and_closes(self):
        with self.assertRaises(Unauthenticated) as raised:
            Client.connect("127.0.0.1", self.port, RootToken("not-the-root-token"))
        self.assertEqual((raised.exception.code, raised.exception.name), (1, "UNAUTHENTICATED"))

        # The same at the frame level, to see the broker close the connection after it.
        connection = Connection.open("127.0.0.1", self.port)
        self.addCleanup(connection.close)
        hello = messages.HelloRequest(1, "taskforge-py", "0.1.0", RootToken("wrong-token"))
        connection.send_frame(
            codec.FrameKind.REQUEST, messages.Opcode.HELLO, 1, messages.encode_body(hello)
        )
        deadline = time.monotonic() + 5
        header, body = connection.read_frame(deadline)
        self.assertEqual((header.kind, header.request_id), (codec.FrameKind.ERROR, 1))
        error = errors.error_from_body(messages.decode_body(messages.ErrorBody, body))
        self.assertIsInstance(error, Unauthenticated)
        self.assertIsNone(connection.read_frame(deadline), "the broker left the connection open")

    def test_batches_extend_cancel_and_job_lists(self):
        client = self.connect()
        client.queue_create("batch", lease_ms=5000)
        enqueued = client.enqueue_batch(
            [NewJob("batch", b"a"), NewJob("batch", b"b", delay_ms=60000)]
        )
        ids = enqueued.job_ids
        self.assertEqual(len(ids), 2)
        self.assertEqual(enqueued.duplicates, [False, False])
        jobs = client.fetch(["batch"], max_jobs=10)
        self.assertEqual([job.job_id for job in jobs], ids[:1])

        extended = client.extend(jobs[0].job_id, jobs[0].lease_id, 20000)
        self.assertFalse(extended.cancel_requested)
        outcomes = client.ack_batch(
            [AckRequest(jobs[0].job_id, jobs[0].lease_id), AckRequest(jobs[0].job_id, 1)]
        )
        self.assertIsNone(outcomes[0])
        self.assertIsInstance(outcomes[1], LeaseLost)

        self.assertEqual(client.cancel(ids[1]).state, JobState.CANCELLED)
        with self.assertRaises(Conflict):
            client.cancel(ids[0])
        listed = client.job_list("batch", state=JobState.SUCCEEDED, limit=10)
        self.assertEqual([job.job_id for job in listed.jobs], ids[:1])
        self.assertIsNone(listed.next_after)
        stats = client.queue_stats("batch")
        self.assertEqual((stats.counts.succeeded, stats.counts.cancelled), (1, 1))

    def test_a_hundred_and_fifty_jobs_in_one_batch_each_way(self):
        # Before the decode limit followed memory claimed, the broker refused ACK_BATCH
        # bodies of about 100 acks or more as malformed.
        client = self.connect()
        client.queue_create("bulk")
        jobs = [NewJob("bulk", b"%d" % index) for index in range(150)]
        ids = client.enqueue_batch(jobs).job_ids
        leased = client.fetch("bulk", max_jobs=150)
        self.assertEqual([job.job_id for job in leased], ids)
        outcomes = client.ack_batch([AckRequest(job.job_id, job.lease_id) for job in leased])
        self.assertEqual(outcomes, [None] * 150)
        self.assertEqual(client.queue_stats("bulk").counts.succeeded, 150)

    def test_queues_and_dead_letters(self):
        client = self.connect()
        created = client.queue_create("dead", max_attempts=1)
        self.assertEqual(created.defaults.max_attempts, 1)
        client.enqueue("dead", b"x")
        job = client.fetch("dead")[0]
        failed = client.fail(job.job_id, job.lease_id, "bad", RetryNever())
        self.assertEqual(failed.state, JobState.DEAD)
        self.assertEqual([j.job_id for j in client.dead_list("dead").jobs], [job.job_id])
        self.assertEqual(client.dead_retry("dead", [job.job_id]).affected, 1)
        job = client.fetch("dead")[0]
        client.fail(job.job_id, job.lease_id, "bad again", RetryNever())
        self.assertEqual(client.dead_discard("dead").affected, 1)

        self.assertTrue(client.queue_pause("dead").paused)
        self.assertFalse(client.queue_resume("dead").paused)
        self.assertEqual(client.queue_update("dead", priority=3).defaults.priority, 3)
        self.assertEqual([queue.name for queue in client.queue_list().queues], ["dead"])
        self.assertEqual(client.queue_purge("dead").remaining, 0)
        client.queue_delete("dead")
        with self.assertRaises(NotFound):
            client.queue_get("dead")
        client.bye()
        self.assertTrue(client.closed)


#: An API key: ``tf_`` + 16 lowercase hex digits + ``_`` + 64 lowercase hex digits.
API_KEY_SHAPE = re.compile(r"tf_([0-9a-f]{16})_[0-9a-f]{64}")


class TenancyTest(LiveServerTest):
    """Organizations, projects, API keys and users through the Python client."""

    def test_api_key_of_a_new_project_round_trip(self):
        root = self.connect()
        self.assertIsNone(root.org_id)
        self.assertEqual(root.project_id, 1)
        org, project = self.new_project(root, "acme")
        created = root.api_key_create(project.project_id, "worker", ALL_SCOPES)
        match = API_KEY_SHAPE.fullmatch(created.secret)
        self.assertIsNotNone(match, "not an API key")
        self.assertEqual(match.group(1), created.key.key_id)
        self.assertEqual(created.key.scopes, list(ALL_SCOPES))
        self.assertEqual(created.key.project_id, project.project_id)
        self.assertNotIn(created.secret, repr(created))

        credentials = ApiKey.parse(created.secret)
        self.assertNotIn(created.secret, repr(credentials))
        worker = self.connect(credentials)  # no project_id: the key's own project
        self.assertNotIn(created.secret, repr(worker))
        self.assertEqual(worker.principal_kind, PrincipalKind.API_KEY)
        self.assertEqual((worker.project_id, worker.org_id), (project.project_id, org.org_id))

        worker.queue_create("emails")
        enqueued = worker.enqueue("emails", b"hello", max_attempts=3)
        jobs = worker.fetch("emails", wait_ms=1000)
        self.assertEqual([(job.job_id, job.payload) for job in jobs], [(enqueued.job_id, b"hello")])
        worker.ack(jobs[0].job_id, jobs[0].lease_id, result=b"sent")
        self.assertEqual(worker.job_get(enqueued.job_id).state, JobState.SUCCEEDED)

        # The project is isolated: root's session works in project 1.
        with self.assertRaises(NotFound):
            root.job_get(enqueued.job_id)
        with self.assertRaises(NotFound):
            root.queue_get("emails")

        # The same key id with another secret is refused, and the client is closed.
        wrong = "tf_%s_%s" % (created.key.key_id, "0" * 64)
        self.assertNotEqual(wrong, created.secret)
        with self.assertRaises(Unauthenticated) as raised:
            Client.connect("127.0.0.1", self.port, ApiKey(wrong))
        self.assertEqual(raised.exception.message, "invalid credentials")

    def test_produce_only_key_is_forbidden_to_fetch(self):
        root = self.connect()
        _, project = self.new_project(root, "globex")
        admin = self.connect(project_id=project.project_id)
        self.assertEqual(admin.project_id, project.project_id)
        admin.queue_create("events")
        created = root.api_key_create(project.project_id, "producer", [Scope.PRODUCE])

        producer = self.connect(ApiKey(created.secret))
        producer.enqueue("events", b"e1")
        with self.assertRaises(Forbidden) as raised:
            producer.fetch("events")
        self.assertEqual((raised.exception.code, raised.exception.name), (2, "FORBIDDEN"))
        self.assertIn("consume", raised.exception.message)
        self.assertFalse(producer.closed)
        self.assertEqual(admin.queue_stats("events").counts.ready, 1)

    def test_api_key_may_not_name_another_project(self):
        root = self.connect()
        _, project = self.new_project(root, "initech")
        created = root.api_key_create(project.project_id, "worker", [Scope.READ])
        with self.assertRaises(Forbidden):
            Client.connect("127.0.0.1", self.port, ApiKey(created.secret), project_id=1)
        same = self.connect(ApiKey(created.secret), project_id=project.project_id)
        self.assertEqual(same.project_id, project.project_id)

    def test_tenancy_operations(self):
        root = self.connect()
        org, project = self.new_project(root, "umbrella")
        self.assertEqual(root.org_get(org.org_id), org)
        self.assertEqual(
            [o.org_id for o in root.org_list(limit=1000).orgs], [1, org.org_id]
        )
        renamed = root.org_update(org.org_id, name="Umbrella Corp")
        self.assertEqual((renamed.name, renamed.status), ("Umbrella Corp", OrgStatus.ACTIVE))

        subscription = root.subscription_get(org.org_id)
        self.assertEqual((subscription.plan, subscription.status), (Plan.PRO, SubscriptionStatus.ACTIVE))
        lapsed = root.subscription_set(
            org.org_id,
            Plan.PRO,
            SubscriptionStatus.PAST_DUE,
            subscription.period_start_ms,
            subscription.period_end_ms,
        )
        self.assertEqual(lapsed.status, SubscriptionStatus.PAST_DUE)
        self.assertEqual(lapsed.limits, subscription.limits)

        self.assertEqual(root.project_get(project.project_id), project)
        self.assertEqual(root.project_update(project.project_id, "Renamed").name, "Renamed")
        self.assertEqual(
            [p.project_id for p in root.project_list(org.org_id).projects], [project.project_id]
        )

        user = root.user_create(org.org_id, "Ana@Umbrella.example", "a long enough password", Role.ADMIN)
        self.assertEqual((user.email, user.role), ("ana@umbrella.example", Role.ADMIN))
        self.assertEqual(root.user_get(user.user_id), user)
        self.assertEqual([u.user_id for u in root.user_list(org.org_id).users], [user.user_id])
        self.assertEqual(root.user_update(user.user_id, role=Role.OWNER).role, Role.OWNER)
        root.user_set_password(user.user_id, "another long password")
        self.assertTrue(root.user_disable(user.user_id).disabled)
        self.assertFalse(root.user_disable(user.user_id, disabled=False).disabled)

        created = root.api_key_create(project.project_id, "ci", [Scope.READ])
        listed = root.api_key_list(project.project_id)
        self.assertEqual(listed.keys, [created.key])
        self.assertIsNone(listed.next_after)
        rotated = root.api_key_rotate(created.key.key_id, grace_ms=0)
        self.assertEqual(rotated.key.key_id, created.key.key_id)
        self.assertNotEqual(rotated.secret, created.secret)
        with self.assertRaises(Unauthenticated):
            Client.connect("127.0.0.1", self.port, ApiKey(created.secret))
        self.connect(rotated.credentials()).close()
        self.assertIsNotNone(root.api_key_revoke(created.key.key_id).revoked_at_ms)
        with self.assertRaises(Unauthenticated):
            Client.connect("127.0.0.1", self.port, rotated.credentials())

        with self.assertRaises(Conflict):
            root.org_delete(org.org_id)
        root.project_delete(project.project_id)
        root.org_delete(org.org_id)
        with self.assertRaises(NotFound):
            root.org_get(org.org_id)

    def test_user_password_session(self):
        root = self.connect()
        org, project = self.new_project(root, "hooli")
        password = "correct horse battery"
        root.user_create(org.org_id, "ops@hooli.example", password, Role.MEMBER)

        credentials = Password("ops@hooli.example", password)
        self.assertNotIn(password, repr(credentials))
        user = self.connect(credentials, project_id=project.project_id)
        self.assertEqual(user.principal_kind, PrincipalKind.USER)
        self.assertEqual((user.project_id, user.org_id), (project.project_id, org.org_id))
        user.queue_create("jobs")
        user.enqueue("jobs", b"x")
        self.assertEqual(user.queue_stats("jobs").counts.ready, 1)
        with self.assertRaises(Forbidden):
            user.project_create(org.org_id, "Other", "other")

        no_project = self.connect(credentials)
        self.assertEqual(no_project.project_id, 0)
        self.assertEqual(no_project.org_get(org.org_id).org_id, org.org_id)
        with self.assertRaises(Forbidden):
            no_project.queue_get("jobs")

        with self.assertRaises(Unauthenticated):
            Client.connect("127.0.0.1", self.port, Password("ops@hooli.example", "wrong password!"))


if __name__ == "__main__":
    unittest.main()
