"""A synchronous TaskForge client over one TCP connection.

:class:`Connection` moves whole frames over a socket; :class:`Client` opens the session
(HELLO) and offers one method per operation. The client sends one request at a time and
waits for its reply, which keeps it small and thread-free; the protocol allows pipelining,
but a client without it is still correct. Use one :class:`Client` per thread.

Every failed request raises: an error reply raises the :class:`taskforge.errors.TaskForgeError`
subclass of its code; a broken or timed-out connection raises
:class:`taskforge.errors.ConnectionClosed` (and a state-changing request then has an
unknown outcome, PROTOCOL.md §7); bytes the client cannot read raise
:class:`taskforge.errors.ProtocolViolation`. After a ``ConnectionClosed``,
``ProtocolViolation``, or an error after which the broker closes, the client is closed;
make a new one to go on.
"""

import os
import socket
import time

from . import messages
from .codec import (
    HANDSHAKE_FRAME_BYTES_MAX,
    HEADER_AFTER_LENGTH_BYTES,
    HEADER_BYTES,
    DecodeError,
    FrameKind,
    decode_header,
    encode_frame,
)
from .errors import (
    Conflict,
    ConnectionClosed,
    ProtocolViolation,
    TaskForgeError,
    error_from_body,
)
from .messages import (
    ALL_SCOPES,
    AckBatchRequest,
    AckRequest,
    ApiKeyCreate,
    ApiKeyRef,
    ApiKeyRotate,
    AssignmentListRequest,
    DeadBulkRequest,
    DeadListRequest,
    Empty,
    EnqueueBatchRequest,
    EnqueueRequest,
    ErrorBody,
    ExecutionListRequest,
    ExtendRequest,
    FailRequest,
    FetchRequest,
    Heartbeat,
    HelloRequest,
    IdPage,
    JobListRequest,
    JobRef,
    LogLevel,
    LogRequest,
    LogTailRequest,
    NewJob,
    NewLogLine,
    Opcode,
    OrgCreate,
    ParentFailure,
    OrgPage,
    OrgRef,
    OrgUpdate,
    Plan,
    ProjectCreate,
    ProjectPage,
    ProjectRef,
    ProjectUpdate,
    ProgressRequest,
    QueueAssignment,
    QueueListRequest,
    QueueName,
    QueueSettings,
    QueueWrite,
    MissedRunPolicy,
    OverlapPolicy,
    RetryBackoff,
    ScheduleCreate,
    ScheduleListRequest,
    ScheduleRef,
    ScheduleUpdate,
    SubscriptionSet,
    UserCreate,
    UserDisable,
    UserRef,
    UserSetPassword,
    UserUpdate,
    WorkerAssign,
    WorkerListRequest,
    WorkerRef,
    WorkerRegister,
    WorkerTerminate,
    parent_ref,
)

#: This library's name and version, sent in HELLO for the broker's logs.
CLIENT_NAME = "taskforge-py"
CLIENT_VERSION = "0.1.0"

#: How long a request may wait for its reply, FETCH's own wait not included.
REQUEST_TIMEOUT_S_DEFAULT = 10.0

#: Request ids are u32 and wrap around.
_REQUEST_ID_MODULUS = 1 << 32

#: Page size of the list operations when the caller names none.
LIST_LIMIT_DEFAULT = 100

#: Lines LOG_TAIL returns when the caller names no number.
LOG_TAIL_LINES_DEFAULT = 100

#: Most lines one LOG_TAIL returns (PROTOCOL.md §11).
LOG_TAIL_LINES_MAX = 1000

#: How long each LOG_TAIL of :meth:`Client.log_follow` waits for a line (the broker allows
#: up to 60 s).
LOG_FOLLOW_WAIT_MS_DEFAULT = 30_000

#: Connection-level errors (PROTOCOL.md §2.3) carry opcode 0 and request id 0.
_CONNECTION_OPCODE = 0


class Connection:
    """A socket that reads and writes whole frames, refusing frames over the limit."""

    def __init__(self, sock):
        #: The connected socket.
        self.socket = sock
        #: Largest frame ``length`` accepted or sent: the handshake limit until HELLO
        #: succeeds, then the session's ``frame_bytes_max``.
        self.frame_bytes_max = HANDSHAKE_FRAME_BYTES_MAX

    @classmethod
    def open(cls, host, port, timeout_s=REQUEST_TIMEOUT_S_DEFAULT):
        """Connects to ``host:port``."""
        sock = socket.create_connection((host, port), timeout=timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(sock)

    def send_frame(self, kind, opcode, request_id, body):
        """Sends one frame."""
        self.socket.sendall(encode_frame(kind, opcode, request_id, body))

    def read_frame(self, deadline):
        """Reads one frame: ``(FrameHeader, body bytes)``, or ``None`` if the peer closed
        the connection between frames.

        ``deadline`` is a :func:`time.monotonic` time; past it, ``socket.timeout`` is
        raised. Raises :class:`ConnectionClosed` if the connection ends inside a frame and
        :class:`taskforge.codec.DecodeError` for a header out of range.
        """
        header_bytes = self._read_exactly(HEADER_BYTES, deadline, eof_ok=True)
        if header_bytes is None:
            return None
        header = decode_header(header_bytes, self.frame_bytes_max)
        body = self._read_exactly(header.body_bytes, deadline, eof_ok=False)
        return header, body

    def _read_exactly(self, count, deadline, eof_ok):
        chunks = bytearray()
        while len(chunks) < count:
            self.socket.settimeout(max(deadline - time.monotonic(), 0.001))
            chunk = self.socket.recv(min(count - len(chunks), 1 << 16))
            if not chunk:
                if eof_ok and not chunks:
                    return None
                raise ConnectionClosed("the connection closed inside a frame")
            chunks += chunk
        return bytes(chunks)

    def close(self):
        """Closes the socket."""
        self.socket.close()

    def __repr__(self):
        try:
            peer = self.socket.getpeername()
        except OSError:
            peer = None
        return "Connection(peer=%r, frame_bytes_max=%d)" % (peer, self.frame_bytes_max)


class Client:
    """A TaskForge session. Open one with :meth:`connect`; close it with :meth:`close`
    or a ``with`` block."""

    def __init__(self, connection, request_timeout_s=REQUEST_TIMEOUT_S_DEFAULT):
        #: The framed socket.
        self.connection = connection
        #: How long a request waits for its reply (FETCH adds its own wait).
        self.request_timeout_s = request_timeout_s
        #: The broker's HELLO response once the session is open, else ``None``.
        self.session = None
        self._next_request_id = 1
        self._closed = False

    @classmethod
    def connect(
        cls,
        host,
        port,
        credentials,
        project_id=None,
        client_name=CLIENT_NAME,
        client_version=CLIENT_VERSION,
        request_timeout_s=REQUEST_TIMEOUT_S_DEFAULT,
    ):
        """Connects and opens a session.

        ``credentials`` is :class:`taskforge.messages.RootToken`,
        :class:`taskforge.messages.ApiKey` or :class:`taskforge.messages.Password`.
        ``project_id`` is the project to work in (PROTOCOL.md §5.2): ``None`` means
        project 1 for root, the key's own project for an API key, and no project for a
        user (tenancy operations only). Raises :class:`taskforge.errors.Unauthenticated`
        for credentials the broker refuses and :class:`taskforge.errors.Forbidden` for a
        project the principal may not use.
        """
        client = cls(Connection.open(host, port, request_timeout_s), request_timeout_s)
        try:
            client.hello(credentials, client_name, client_version, project_id=project_id)
        except BaseException:
            client.close()
            raise
        return client

    def __repr__(self):
        # Never the credentials: the client does not keep them.
        return "Client(connection=%r, principal_kind=%s, project_id=%s, org_id=%s, closed=%s)" % (
            self.connection,
            None if self.session is None else self.session.principal_kind.name,
            self.project_id,
            self.org_id,
            self._closed,
        )

    @property
    def project_id(self):
        """The project the session works in (0: none), or ``None`` before HELLO."""
        return None if self.session is None else self.session.project_id

    @property
    def org_id(self):
        """The session's organization (``None`` for root, or before HELLO)."""
        return None if self.session is None else self.session.org_id

    @property
    def principal_kind(self):
        """The session's ``PrincipalKind``, or ``None`` before HELLO."""
        return None if self.session is None else self.session.principal_kind

    @property
    def closed(self):
        """True once the connection is closed or unusable."""
        return self._closed

    def close(self):
        """Closes the connection without waiting for anything."""
        if not self._closed:
            self._closed = True
            self.connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def call(self, opcode, body, timeout_s=None):
        """Sends one request and returns its decoded response body.

        ``body`` is the opcode's request type from :mod:`taskforge.messages`. ``timeout_s``
        defaults to ``request_timeout_s``. Raises as described in the module docstring.
        """
        if self._closed:
            raise ConnectionClosed("the client is closed")
        opcode = Opcode(opcode)
        request_type, response_type = messages.OPERATIONS[opcode]
        if not isinstance(body, request_type):
            raise TypeError("%s takes a %s body" % (opcode.name, request_type.__name__))
        encoded = messages.encode_body(body)
        if HEADER_AFTER_LENGTH_BYTES + len(encoded) > self.connection.frame_bytes_max:
            # The broker would close the connection; refuse here and keep it.
            raise ValueError(
                "a %s request of %d body bytes is over the %d-byte frame limit; split it"
                % (opcode.name, len(encoded), self.connection.frame_bytes_max)
            )
        request_id = self._next_request_id
        self._next_request_id = (request_id + 1) % _REQUEST_ID_MODULUS
        deadline = time.monotonic() + (
            self.request_timeout_s if timeout_s is None else timeout_s
        )
        try:
            self.connection.send_frame(FrameKind.REQUEST, opcode, request_id, encoded)
            return self._read_reply(opcode, request_id, response_type, deadline)
        except ConnectionClosed:
            self.close()
            raise
        except socket.timeout:
            self.close()
            raise ConnectionClosed(
                "no reply to %s within the timeout; its outcome is unknown" % opcode.name
            ) from None
        except OSError as error:
            self.close()
            raise ConnectionClosed("the connection failed: %s" % error) from error
        except DecodeError as error:
            self.close()
            raise ProtocolViolation("unreadable reply to %s: %s" % (opcode.name, error)) from None

    def _read_reply(self, opcode, request_id, response_type, deadline):
        while True:
            frame = self.connection.read_frame(deadline)
            if frame is None:
                self.close()
                raise ConnectionClosed(
                    "the broker closed the connection before answering %s" % opcode.name
                )
            header, body = frame
            if header.kind == FrameKind.EVENT:
                continue  # no events in protocol version 1; a client may ignore them
            connection_error = (
                header.kind == FrameKind.ERROR
                and header.opcode == _CONNECTION_OPCODE
                and header.request_id == 0
            )
            if not connection_error and (
                header.request_id != request_id or header.opcode != opcode
            ):
                raise DecodeError(
                    "reply for request %d opcode %#06x while waiting for request %d"
                    % (header.request_id, header.opcode, request_id)
                )
            if header.kind == FrameKind.RESPONSE:
                return messages.decode_body(response_type, body)
            if header.kind == FrameKind.ERROR:
                error = error_from_body(messages.decode_body(ErrorBody, body))
                if connection_error or error.CLOSES_CONNECTION:
                    self.close()
                raise error
            raise DecodeError("the broker sent a frame of kind %d" % header.kind)

    # --- Session ---------------------------------------------------------------------

    def hello(
        self, credentials, client_name=CLIENT_NAME, client_version=CLIENT_VERSION, project_id=None
    ):
        """Opens the session (the first request) in ``project_id`` (see :meth:`connect`).
        Returns the ``HelloResponse`` and raises the frame limit to the session's.

        A refused HELLO closes the client, as the broker closes the connection for every
        handshake error but CONFLICT, which only an already open session gets (PROTOCOL.md
        §5.2).
        """
        request = HelloRequest(
            messages.PROTOCOL_VERSION, client_name, client_version, credentials, project_id
        )
        try:
            response = self.call(Opcode.HELLO, request)
        except TaskForgeError as error:
            if not isinstance(error, Conflict):
                self.close()
            raise
        self.session = response
        self.connection.frame_bytes_max = response.limits.frame_bytes_max
        return response

    def ping(self):
        """Checks the broker is alive; returns its clock in ms since the Unix epoch."""
        return self.call(Opcode.PING, Empty()).server_time_ms

    def bye(self):
        """Ends the session gracefully: the broker answers what is in flight, then closes."""
        self.call(Opcode.BYE, Empty())
        self.close()

    # --- Queues ----------------------------------------------------------------------

    def queue_create(
        self,
        name,
        priority=None,
        max_attempts=None,
        backoff=None,
        lease_ms=None,
        retention_ms=None,
        in_flight_max=None,
        deliveries_per_second=None,
    ):
        """Creates a queue; unset settings take the broker defaults. Returns ``QueueInfo``.

        The flow limits (PROTOCOL.md §6.15): ``in_flight_max`` jobs leased at once,
        ``deliveries_per_second`` deliveries a second; ``retention_ms`` is how long its
        finished jobs are kept (``None``: the plan's retention)."""
        settings = QueueSettings(
            priority, max_attempts, backoff, lease_ms,
            retention_ms, in_flight_max, deliveries_per_second,
        )
        return self.call(Opcode.QUEUE_CREATE, QueueWrite(name, settings))

    def queue_update(
        self,
        name,
        priority=None,
        max_attempts=None,
        backoff=None,
        lease_ms=None,
        retention_ms=None,
        in_flight_max=None,
        deliveries_per_second=None,
    ):
        """Changes a queue's defaults; unset settings stay. A 0 for ``retention_ms``,
        ``in_flight_max`` or ``deliveries_per_second`` removes that limit (retention: back
        to the plan's). Returns ``QueueInfo``."""
        settings = QueueSettings(
            priority, max_attempts, backoff, lease_ms,
            retention_ms, in_flight_max, deliveries_per_second,
        )
        return self.call(Opcode.QUEUE_UPDATE, QueueWrite(name, settings))

    def queue_get(self, name):
        """Reads a queue: ``QueueInfo``."""
        return self.call(Opcode.QUEUE_GET, QueueName(name))

    def queue_list(self, after=None, limit=LIST_LIMIT_DEFAULT):
        """One page of queues in name order: ``QueueListResponse``."""
        return self.call(Opcode.QUEUE_LIST, QueueListRequest(after, limit))

    def queue_delete(self, name):
        """Deletes an empty queue."""
        self.call(Opcode.QUEUE_DELETE, QueueName(name))

    def queue_pause(self, name):
        """Stops deliveries from a queue. Returns ``QueueInfo``."""
        return self.call(Opcode.QUEUE_PAUSE, QueueName(name))

    def queue_resume(self, name):
        """Resumes deliveries from a queue. Returns ``QueueInfo``."""
        return self.call(Opcode.QUEUE_RESUME, QueueName(name))

    def queue_purge(self, name):
        """Deletes up to 10000 jobs that are not leased: ``BulkResponse``; repeat while
        ``remaining``."""
        return self.call(Opcode.QUEUE_PURGE, QueueName(name))

    def queue_stats(self, name):
        """Counts a queue's jobs by state: ``QueueStats``."""
        return self.call(Opcode.QUEUE_STATS, QueueName(name))

    # --- Jobs ------------------------------------------------------------------------

    def enqueue(
        self,
        queue,
        payload,
        priority=None,
        delay_ms=None,
        run_at_ms=None,
        max_attempts=None,
        backoff=None,
        lease_ms=None,
        metadata=(),
        depends_on=(),
        on_parent_failure=ParentFailure.CANCEL,
        unique=None,
        expires_at_ms=None,
        ttl_ms=None,
    ):
        """Enqueues one job. ``payload`` is bytes; ``metadata`` is ``(key, value)`` pairs or a
        ``dict``. Options left ``None`` take the queue's defaults. Returns
        ``EnqueueResponse`` (``job_id``, ``state``, ``duplicate``).

        ``depends_on`` names existing jobs (ids) that must succeed first; the job is
        ``blocked`` until then, and ``on_parent_failure`` (``ParentFailure.CANCEL`` or
        ``RUN``) says what happens if one ends dead, cancelled or expired (PROTOCOL.md
        §6.12). ``unique`` is a ``UniqueKey``: while a job of this queue holds the key, the
        reply is that job with ``duplicate`` true and nothing is created (§6.13). The job
        expires unless a worker takes it by ``expires_at_ms`` (ms since the Unix epoch) or
        within ``ttl_ms`` of now, whichever comes first (§6.14)."""
        job = NewJob(
            queue=queue,
            payload=bytes(payload),
            priority=priority,
            run_at_ms=run_at_ms,
            delay_ms=delay_ms,
            max_attempts=max_attempts,
            backoff=backoff,
            lease_ms=lease_ms,
            metadata=_pairs(metadata),
            depends_on=[parent_ref(parent) for parent in depends_on],
            on_parent_failure=ParentFailure(on_parent_failure),
            unique=unique,
            expires_at_ms=expires_at_ms,
            ttl_ms=ttl_ms,
        )
        return self.call(Opcode.ENQUEUE, EnqueueRequest(job))

    def enqueue_batch(self, jobs):
        """Enqueues ``NewJob`` values atomically (all or none). Returns
        ``EnqueueBatchResponse``: ``job_ids`` in request order and ``duplicates``, true for
        each job whose unique key matched (its id is then the holder's).

        A job of the batch may depend on an earlier or later one by position:
        ``depends_on=[ParentInBatch(0)]`` (or ``parent_ref(0)``). A batch whose positions
        form a cycle is refused whole with ``InvalidArgument``."""
        return self.call(Opcode.ENQUEUE_BATCH, EnqueueBatchRequest(list(jobs)))

    def fetch(self, queues, max_jobs=1, wait_ms=0, lease_ms=None, worker_id=None, weights=()):
        """Leases up to ``max_jobs`` ready jobs from ``queues`` (a name or a list, in order
        of preference), waiting up to ``wait_ms`` for one. Returns a list of ``LeasedJob``,
        empty when the wait ran out.

        ``worker_id`` names the registered worker fetching (:meth:`register_worker`): its
        leases are then released as soon as it is lost or leaves. ``weights`` (one per
        queue, 1..=1000) makes each FETCH try the queues in a weighted random order instead
        of the strict one (PROTOCOL.md §6.11)."""
        names = [queues] if isinstance(queues, str) else list(queues)
        request = FetchRequest(names, max_jobs, wait_ms, lease_ms, worker_id, list(weights))
        # The reply may take the whole wait, so the timeout runs on top of it.
        timeout_s = self.request_timeout_s + wait_ms / 1000.0
        return self.call(Opcode.FETCH, request, timeout_s=timeout_s).jobs

    def ack(self, job_id, lease_id, result=None):
        """Reports a job done, storing ``result`` (bytes) with it. Raises ``LeaseLost`` if
        the lease is no longer the job's."""
        result = None if result is None else bytes(result)
        self.call(Opcode.ACK, AckRequest(job_id, lease_id, result))

    def ack_batch(self, acks):
        """Acknowledges many jobs: ``acks`` are ``AckRequest`` values. Returns one entry per
        ack, in order: ``None`` if it succeeded, else its ``TaskForgeError`` (not raised)."""
        response = self.call(Opcode.ACK_BATCH, AckBatchRequest(list(acks)))
        return [None if body is None else error_from_body(body) for body in response.results]

    def fail(self, job_id, lease_id, error, retry=None, error_details=None):
        """Reports a failed attempt. ``retry`` is ``RetryBackoff()`` (the default),
        ``RetryAt(run_at_ms)`` or ``RetryNever()``; ``error_details`` (a stack trace, say,
        up to 16 KiB) is kept in the execution record. Returns ``FailResponse``."""
        retry = RetryBackoff() if retry is None else retry
        request = FailRequest(job_id, lease_id, error, retry, error_details)
        return self.call(Opcode.FAIL, request)

    def extend(self, job_id, lease_id, lease_ms):
        """Moves the lease deadline to now + ``lease_ms``. Returns ``ExtendResponse``; its
        ``cancel_requested`` says the job was cancelled and work should stop."""
        return self.call(Opcode.EXTEND, ExtendRequest(job_id, lease_id, lease_ms))

    def cancel(self, job_id):
        """Cancels a job: ``CancelResponse``."""
        return self.call(Opcode.CANCEL, JobRef(job_id))

    def job_get(self, job_id):
        """Reads a job: ``JobInfo``."""
        return self.call(Opcode.JOB_GET, JobRef(job_id))

    def job_list(self, queue, state=None, after=None, limit=LIST_LIMIT_DEFAULT):
        """One page of a queue's jobs in id order, optionally in one ``JobState`` only:
        ``JobListResponse``."""
        return self.call(Opcode.JOB_LIST, JobListRequest(queue, state, after, limit))

    # --- Executions, logs, progress and results (PROTOCOL.md §6.7, §6.8) -------------

    def progress(self, job_id, lease_id, percent, message=""):
        """Reports a held job's progress, 0..=100 percent with a short message; JOB_GET
        shows the last report. Raises ``LeaseLost`` if the lease is no longer the job's."""
        self.call(Opcode.PROGRESS, ProgressRequest(job_id, lease_id, percent, message))

    def log(self, job_id, lease_id, lines):
        """Appends 1..=100 log lines to the execution running under ``lease_id``.

        Each line is a ``NewLogLine``, a ``str`` (an info line), or a ``(level, message)``
        or ``(level, message, fields)`` tuple with a ``LogLevel`` (or its name, ``"warn"``)
        and ``(key, value)`` pairs or a dict. Returns ``LogResponse`` (``execution``,
        ``first_seq``). Raises ``LeaseLost`` for a stale lease and ``QuotaExceeded`` once the
        execution holds the broker's cap of lines (nothing of the request is stored then)."""
        request = LogRequest(job_id, lease_id, [_log_line(line) for line in lines])
        return self.call(Opcode.LOG, request)

    def log_tail(self, job_id, execution=None, lines=LOG_TAIL_LINES_DEFAULT, after_seq=None,
                 wait_ms=0):
        """Reads a job's log: ``LogTail``.

        Without ``after_seq``: the last ``lines`` lines of ``execution`` (``None``: the
        latest). With it: up to ``lines`` lines numbered above it, waiting up to ``wait_ms``
        for one while the execution still runs. Follow a log by calling again with the
        reply's ``execution`` and ``next_after`` while its ``open`` is true, or use
        :meth:`log_follow`."""
        request = LogTailRequest(job_id, execution, lines, after_seq, wait_ms)
        timeout_s = self.request_timeout_s + wait_ms / 1000.0
        return self.call(Opcode.LOG_TAIL, request, timeout_s=timeout_s)

    def log_follow(self, job_id, execution=None, lines=LOG_TAIL_LINES_DEFAULT,
                   wait_ms=LOG_FOLLOW_WAIT_MS_DEFAULT):
        """Yields the ``LogLine`` values of one execution as they arrive, like ``tail -f``:
        first its last ``lines`` lines, then every new one, until the execution ends. The
        loop of PROTOCOL.md §6.8: each request long-polls up to ``wait_ms``."""
        tail = self.log_tail(job_id, execution=execution, lines=lines)
        yield from tail.lines
        execution, after = tail.execution, tail.next_after
        while tail.open:
            tail = self.log_tail(
                job_id, execution=execution, lines=LOG_TAIL_LINES_MAX,
                after_seq=after, wait_ms=wait_ms,
            )
            yield from tail.lines
            after = tail.next_after

    def execution_list(self, job_id, after=None, limit=LIST_LIMIT_DEFAULT):
        """One page of a job's executions, ended ones in order and the running one last:
        ``ExecutionList``."""
        return self.call(Opcode.EXECUTION_LIST, ExecutionListRequest(job_id, after, limit))

    def job_results(self, job_id):
        """A job's state and result with its parents' (``JobResults``)."""
        return self.call(Opcode.JOB_RESULTS, JobRef(job_id))

    # --- Workers (PROTOCOL.md §6.9-§6.11) -------------------------------------------

    def register_worker(self, name, queues, concurrency=1, hostname=None, pid=None,
                        version=None, labels=()):
        """Registers this process as a worker serving ``queues``: ``WorkerInfo``.

        ``queues`` are queue names, ``(name, weight)`` pairs or ``QueueAssignment`` values,
        in preference order. ``hostname``, ``pid`` and ``version`` default to this host,
        this process and this client. Send :meth:`heartbeat` right after: its reply says how
        often to send the next."""
        request = WorkerRegister(
            name=name,
            hostname=socket.gethostname() if hostname is None else hostname,
            pid=os.getpid() if pid is None else pid,
            version="%s %s" % (CLIENT_NAME, CLIENT_VERSION) if version is None else version,
            labels=_pairs(labels),
            concurrency=concurrency,
            queues=_assignments(queues),
        )
        return self.call(Opcode.WORKER_REGISTER, request)

    def heartbeat(self, worker_id, in_flight=0, assignments_version=1, leaving=False):
        """Tells the broker the worker is alive: ``HeartbeatResponse`` with its
        ``command``, the interval for the next heartbeat, new assignments if
        ``assignments_version`` is stale, and the jobs to stop. ``leaving=True`` on the last
        one before a clean exit. Raises ``NotFound`` when the worker must register again."""
        request = Heartbeat(worker_id, in_flight, assignments_version, leaving)
        return self.call(Opcode.HEARTBEAT, request)

    def worker_list(self, state=None, after=None, limit=LIST_LIMIT_DEFAULT):
        """One page of the project's workers in id order, optionally in one
        ``WorkerState`` only: ``WorkerList``."""
        return self.call(Opcode.WORKER_LIST, WorkerListRequest(state, after, limit))

    def worker_get(self, worker_id):
        """Reads a worker: ``WorkerInfo``."""
        return self.call(Opcode.WORKER_GET, WorkerRef(worker_id))

    def worker_quiet(self, worker_id):
        """Orders a worker to stop fetching and finish what it holds: ``WorkerInfo``."""
        return self.call(Opcode.WORKER_QUIET, WorkerRef(worker_id))

    def worker_terminate(self, worker_id, grace_ms=None):
        """Orders a worker to finish by now + ``grace_ms`` (``None``: the broker's
        default, 30 s) and exit: ``WorkerInfo``."""
        return self.call(Opcode.WORKER_TERMINATE, WorkerTerminate(worker_id, grace_ms))

    def worker_assign(self, worker_id, queues):
        """Replaces a worker's queues (as for :meth:`register_worker`); the worker learns
        them at its next heartbeat. Returns ``WorkerInfo``."""
        return self.call(Opcode.WORKER_ASSIGN, WorkerAssign(worker_id, _assignments(queues)))

    def assignment_list(self, queue=None, worker_id=None, after=None, limit=LIST_LIMIT_DEFAULT):
        """One page of queue-worker assignments, of one queue and/or one worker:
        ``AssignmentList`` (paged by worker id)."""
        request = AssignmentListRequest(queue, worker_id, after, limit)
        return self.call(Opcode.ASSIGNMENT_LIST, request)

    # --- Dead letters ----------------------------------------------------------------

    def dead_list(self, queue, after=None, limit=LIST_LIMIT_DEFAULT):
        """One page of a queue's dead jobs: ``JobListResponse``."""
        return self.call(Opcode.DEAD_LIST, DeadListRequest(queue, after, limit))

    def dead_retry(self, queue, job_ids=()):
        """Makes dead jobs ready again (named ones, or all of the queue's when none are
        named): ``BulkResponse``."""
        return self.call(Opcode.DEAD_RETRY, DeadBulkRequest(queue, list(job_ids)))

    def dead_discard(self, queue, job_ids=()):
        """Deletes dead jobs (named ones, or all of the queue's): ``BulkResponse``."""
        return self.call(Opcode.DEAD_DISCARD, DeadBulkRequest(queue, list(job_ids)))

    # --- Cron schedules (PROTOCOL.md §6.12) ----------------------------------------------
    # A schedule is named by its id (an ``int``) or its name (a ``str``).

    def schedule_create(
        self,
        name,
        cron,
        queue,
        payload=b"",
        time_zone="UTC",
        overlap=OverlapPolicy.ALLOW,
        missed_runs=MissedRunPolicy.RUN_ONCE,
        paused=False,
        template=None,
    ):
        """Creates a cron schedule (``cron`` has a seconds field, e.g. ``"0 30 2 * * *"``)
        that enqueues ``payload`` (or the whole ``template``, a ``NewJob`` for ``queue``)
        into ``queue`` at each fire time in ``time_zone``: ``ScheduleInfo``."""
        if template is None:
            template = NewJob(queue, payload)
        request = ScheduleCreate(
            name, cron, time_zone, queue, template, overlap, missed_runs, paused
        )
        return self.call(Opcode.SCHEDULE_CREATE, request)

    def schedule_get(self, schedule):
        """Reads a schedule: ``ScheduleInfo``."""
        return self.call(Opcode.SCHEDULE_GET, ScheduleRef(messages.schedule_key(schedule)))

    def schedule_list(self, queue=None, after=None, limit=LIST_LIMIT_DEFAULT):
        """One page of the project's schedules in id order, optionally one queue's only:
        ``ScheduleList``."""
        return self.call(Opcode.SCHEDULE_LIST, ScheduleListRequest(queue, after, limit))

    def schedule_update(self, schedule, **changes):
        """Changes a schedule: keyword arguments are the ``ScheduleUpdate`` fields to set
        (``name``, ``cron``, ``time_zone``, ``queue``, ``template``, ``overlap``,
        ``missed_runs``); the others stay. Returns ``ScheduleInfo``."""
        request = ScheduleUpdate(messages.schedule_key(schedule), **changes)
        return self.call(Opcode.SCHEDULE_UPDATE, request)

    def schedule_delete(self, schedule):
        """Deletes a schedule; the jobs it enqueued stay."""
        self.call(Opcode.SCHEDULE_DELETE, ScheduleRef(messages.schedule_key(schedule)))

    def schedule_pause(self, schedule):
        """Stops a schedule from firing: ``ScheduleInfo``."""
        return self.call(Opcode.SCHEDULE_PAUSE, ScheduleRef(messages.schedule_key(schedule)))

    def schedule_resume(self, schedule):
        """Lets a paused schedule fire again from its next fire time after now:
        ``ScheduleInfo``."""
        return self.call(Opcode.SCHEDULE_RESUME, ScheduleRef(messages.schedule_key(schedule)))


    # --- Organizations (tenancy operations, PROTOCOL.md §8) -----------------------------

    def org_create(self, name, slug, plan=Plan.FREE):
        """Creates an organization and its subscription on a preset ``Plan`` (root only).
        Returns ``Organization``."""
        return self.call(Opcode.ORG_CREATE, OrgCreate(name, slug, Plan(plan)))

    def org_get(self, org_id):
        """Reads an organization: ``Organization``."""
        return self.call(Opcode.ORG_GET, OrgRef(org_id))

    def org_list(self, after=None, limit=LIST_LIMIT_DEFAULT):
        """One page of the organizations the principal may see, in id order: ``OrgList``."""
        return self.call(Opcode.ORG_LIST, IdPage(after, limit))

    def org_update(self, org_id, name=None, status=None):
        """Renames an organization and/or sets its ``OrgStatus`` (root only); ``None``
        leaves a field unchanged. Returns ``Organization``."""
        return self.call(Opcode.ORG_UPDATE, OrgUpdate(org_id, name, status))

    def org_delete(self, org_id):
        """Deletes an organization that owns no project (root only)."""
        self.call(Opcode.ORG_DELETE, OrgRef(org_id))

    # --- Users -----------------------------------------------------------------------

    def user_create(self, org_id, email, password, role):
        """Creates a user with a ``Role``; only the password's hash is stored. Returns
        ``User``."""
        return self.call(Opcode.USER_CREATE, UserCreate(org_id, email, password, role))

    def user_get(self, user_id):
        """Reads a user: ``User``."""
        return self.call(Opcode.USER_GET, UserRef(user_id))

    def user_list(self, org_id, after=None, limit=LIST_LIMIT_DEFAULT):
        """One page of an organization's users in id order: ``UserList``."""
        return self.call(Opcode.USER_LIST, OrgPage(org_id, after, limit))

    def user_update(self, user_id, email=None, role=None):
        """Changes a user's email and/or role; ``None`` leaves it. Returns ``User``."""
        return self.call(Opcode.USER_UPDATE, UserUpdate(user_id, email, role))

    def user_disable(self, user_id, disabled=True):
        """Disables a user (``disabled=False`` enables it again). Returns ``User``."""
        return self.call(Opcode.USER_DISABLE, UserDisable(user_id, disabled))

    def user_set_password(self, user_id, password):
        """Sets a user's password."""
        self.call(Opcode.USER_SET_PASSWORD, UserSetPassword(user_id, password))

    # --- Subscriptions ---------------------------------------------------------------

    def subscription_get(self, org_id):
        """Reads an organization's plan, status, period and limits: ``Subscription``."""
        return self.call(Opcode.SUBSCRIPTION_GET, OrgRef(org_id))

    def subscription_set(
        self, org_id, plan, status, period_start_ms, period_end_ms, limits=None
    ):
        """Sets an organization's plan, ``SubscriptionStatus``, period and (optionally)
        ``PlanLimits`` replacing the plan's presets; required for ``Plan.CUSTOM``. Root
        only. Returns ``Subscription``."""
        request = SubscriptionSet(org_id, plan, status, period_start_ms, period_end_ms, limits)
        return self.call(Opcode.SUBSCRIPTION_SET, request)

    # --- Projects --------------------------------------------------------------------

    def project_create(self, org_id, name, slug):
        """Creates a project in an organization: ``Project``."""
        return self.call(Opcode.PROJECT_CREATE, ProjectCreate(org_id, name, slug))

    def project_get(self, project_id):
        """Reads a project: ``Project``."""
        return self.call(Opcode.PROJECT_GET, ProjectRef(project_id))

    def project_list(self, org_id, after=None, limit=LIST_LIMIT_DEFAULT):
        """One page of an organization's projects in id order: ``ProjectList``."""
        return self.call(Opcode.PROJECT_LIST, OrgPage(org_id, after, limit))

    def project_update(self, project_id, name):
        """Renames a project (the slug stays): ``Project``."""
        return self.call(Opcode.PROJECT_UPDATE, ProjectUpdate(project_id, name))

    def project_delete(self, project_id):
        """Deletes a project that owns no queue, with its API keys."""
        self.call(Opcode.PROJECT_DELETE, ProjectRef(project_id))

    # --- API keys --------------------------------------------------------------------

    def api_key_create(self, project_id, name, scopes=ALL_SCOPES, expires_at_ms=None):
        """Creates an API key for a project with the given ``Scope`` values. Returns
        ``ApiKeySecret``: ``.secret`` (or ``.credentials()``) is the whole key, shown only
        this once."""
        request = ApiKeyCreate(project_id, name, list(scopes), expires_at_ms)
        return self.call(Opcode.APIKEY_CREATE, request)

    def api_key_list(self, project_id, after=None, limit=LIST_LIMIT_DEFAULT):
        """One page of a project's keys in key id order, never their secrets:
        ``ApiKeyList``."""
        return self.call(Opcode.APIKEY_LIST, ProjectPage(project_id, after, limit))

    def api_key_revoke(self, key_id):
        """Revokes a key by its public id for good: ``ApiKeyInfo``."""
        return self.call(Opcode.APIKEY_REVOKE, ApiKeyRef(key_id))

    def api_key_rotate(self, key_id, grace_ms=None):
        """Gives a key a new secret; the old one works for ``grace_ms`` more (``None``: the
        broker's default, 1 hour). Returns ``ApiKeySecret``."""
        return self.call(Opcode.APIKEY_ROTATE, ApiKeyRotate(key_id, grace_ms))


def _pairs(metadata):
    """Metadata as a list of ``(key, value)`` tuples, from a dict or an iterable of pairs."""
    items = metadata.items() if isinstance(metadata, dict) else metadata
    return [(key, value) for key, value in items]


def _assignments(queues):
    """``QueueAssignment`` values from queue names, ``(name, weight)`` pairs or
    ``QueueAssignment`` values (a single name is one queue)."""
    if isinstance(queues, str):
        queues = [queues]
    assignments = []
    for queue in queues:
        if isinstance(queue, QueueAssignment):
            assignments.append(queue)
        elif isinstance(queue, str):
            assignments.append(QueueAssignment(queue))
        else:
            name, weight = queue
            assignments.append(QueueAssignment(name, weight))
    return assignments


def _log_line(line):
    """A ``NewLogLine`` from a ``NewLogLine``, a ``str`` or a ``(level, message[, fields])``
    tuple."""
    if isinstance(line, NewLogLine):
        return line
    if isinstance(line, str):
        return NewLogLine(LogLevel.INFO, line)
    level, message, *rest = line
    level = LogLevel[level.upper()] if isinstance(level, str) else LogLevel(level)
    fields = _pairs(rest[0]) if rest else []
    return NewLogLine(level, message, fields)
