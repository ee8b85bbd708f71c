"""Every message body of protocol version 1, and the opcode table.

Each body is a dataclass whose fields are declared in wire order with their wire type
(:func:`taskforge.codec.wire`), so each class reads like its table in
``protocol/PROTOCOL.md`` §4 and §9. :func:`encode_body` and :func:`decode_body` turn any of
them into bytes and back; :data:`OPERATIONS` says which request and response type each
opcode carries.

Python representations: ``JobId`` is :class:`uuid.UUID`; ``bytes`` fields are ``bytes``;
``Option`` is ``None`` or the value; metadata is a list of ``(key, value)`` string tuples;
field-less enums are :class:`enum.IntEnum` members; enums with fields (``Credentials``,
``Retry``, ``ErrorDetails``, ``WorkerCommand``, ``ParentRef``, ``ScheduleKey``) are one
dataclass per variant. Times are ``int`` milliseconds since the Unix epoch.
"""

import dataclasses
import enum
from typing import List, Optional, Tuple
from uuid import UUID

from .codec import (
    BOOL,
    BYTES,
    I32,
    JOB_ID,
    STRING,
    U16,
    U32,
    U64,
    U8,
    Enum,
    Option,
    Pair,
    Reader,
    Seq,
    Struct,
    Union,
    Variant,
    Writer,
    wire,
)

#: The protocol version this client speaks.
PROTOCOL_VERSION = 1

#: Metadata on the wire: ``Vec<(string, string)>``.
METADATA = Seq(Pair(STRING, STRING))


class Opcode(enum.IntEnum):
    """Every operation, by its stable number (PROTOCOL.md §9)."""

    HELLO = 0x0001
    PING = 0x0002
    BYE = 0x0003
    QUEUE_CREATE = 0x0100
    QUEUE_GET = 0x0101
    QUEUE_LIST = 0x0102
    QUEUE_UPDATE = 0x0103
    QUEUE_DELETE = 0x0104
    QUEUE_PAUSE = 0x0105
    QUEUE_RESUME = 0x0106
    QUEUE_PURGE = 0x0107
    QUEUE_STATS = 0x0108
    ENQUEUE = 0x0200
    ENQUEUE_BATCH = 0x0201
    FETCH = 0x0202
    ACK = 0x0203
    ACK_BATCH = 0x0204
    FAIL = 0x0205
    EXTEND = 0x0206
    CANCEL = 0x0207
    JOB_GET = 0x0208
    JOB_LIST = 0x0209
    PROGRESS = 0x020A
    LOG = 0x020B
    LOG_TAIL = 0x020C
    EXECUTION_LIST = 0x020D
    JOB_RESULTS = 0x020E
    DEAD_LIST = 0x0300
    DEAD_RETRY = 0x0301
    DEAD_DISCARD = 0x0302
    WORKER_REGISTER = 0x0400
    HEARTBEAT = 0x0401
    WORKER_LIST = 0x0402
    WORKER_GET = 0x0403
    WORKER_QUIET = 0x0404
    WORKER_TERMINATE = 0x0405
    WORKER_ASSIGN = 0x0406
    ASSIGNMENT_LIST = 0x0407
    SCHEDULE_CREATE = 0x0500
    SCHEDULE_GET = 0x0501
    SCHEDULE_LIST = 0x0502
    SCHEDULE_UPDATE = 0x0503
    SCHEDULE_DELETE = 0x0504
    SCHEDULE_PAUSE = 0x0505
    SCHEDULE_RESUME = 0x0506
    ORG_CREATE = 0x0600
    ORG_GET = 0x0601
    ORG_LIST = 0x0602
    ORG_UPDATE = 0x0603
    ORG_DELETE = 0x0604
    USER_CREATE = 0x0610
    USER_GET = 0x0611
    USER_LIST = 0x0612
    USER_UPDATE = 0x0613
    USER_DISABLE = 0x0614
    USER_SET_PASSWORD = 0x0615
    SUBSCRIPTION_GET = 0x0620
    SUBSCRIPTION_SET = 0x0621
    PROJECT_CREATE = 0x0630
    PROJECT_GET = 0x0631
    PROJECT_LIST = 0x0632
    PROJECT_UPDATE = 0x0633
    PROJECT_DELETE = 0x0634
    APIKEY_CREATE = 0x0640
    APIKEY_LIST = 0x0641
    APIKEY_REVOKE = 0x0642
    APIKEY_ROTATE = 0x0643


class JobState(enum.IntEnum):
    """A job's state (PROTOCOL.md §6.1); the value is the wire index."""

    SCHEDULED = 0
    BLOCKED = 1
    READY = 2
    LEASED = 3
    SUCCEEDED = 4
    DEAD = 5
    CANCELLED = 6
    EXPIRED = 7


class PrincipalKind(enum.IntEnum):
    """Who a session belongs to; the value is the wire index."""

    ROOT = 0
    API_KEY = 1
    USER = 2


class OrgStatus(enum.IntEnum):
    """Whether an organization may be used (PROTOCOL.md §4.2)."""

    ACTIVE = 0
    SUSPENDED = 1


class Role(enum.IntEnum):
    """A user's role in its organization (PROTOCOL.md §8.5)."""

    OWNER = 0
    ADMIN = 1
    MEMBER = 2
    VIEWER = 3


class Plan(enum.IntEnum):
    """A subscription plan (PROTOCOL.md §8.9)."""

    FREE = 0
    PRO = 1
    ENTERPRISE = 2
    CUSTOM = 3


class SubscriptionStatus(enum.IntEnum):
    """Whether a subscription is paid up; ``PAST_DUE`` and ``CANCELLED`` refuse enqueues."""

    ACTIVE = 0
    PAST_DUE = 1
    CANCELLED = 2


class Scope(enum.IntEnum):
    """What an API key may do (PROTOCOL.md §8.5)."""

    PRODUCE = 0
    CONSUME = 1
    MANAGE = 2
    READ = 3


#: Every scope, for a key that may do everything in its project.
ALL_SCOPES = (Scope.PRODUCE, Scope.CONSUME, Scope.MANAGE, Scope.READ)


class WorkerState(enum.IntEnum):
    """Where a registered worker is in its life (PROTOCOL.md §6.9)."""

    ACTIVE = 0
    QUIET = 1
    TERMINATING = 2
    LOST = 3
    STOPPED = 4

    @property
    def is_live(self):
        """True while the worker is expected to heartbeat (active, quiet, terminating)."""
        return self in (WorkerState.ACTIVE, WorkerState.QUIET, WorkerState.TERMINATING)


class ExecutionOutcome(enum.IntEnum):
    """How an execution (one delivery of a job) ended (PROTOCOL.md §6.7)."""

    SUCCEEDED = 0
    FAILED = 1
    LEASE_EXPIRED = 2
    WORKER_LOST = 3
    CANCELLED = 4


class LogLevel(enum.IntEnum):
    """A log line's severity."""

    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4

class ParentFailure(enum.IntEnum):
    """What a child does when a parent ends dead, cancelled or expired (PROTOCOL.md §6.12)."""

    CANCEL = 0
    RUN = 1


class UniqueUntil(enum.IntEnum):
    """How long a unique key holds by its holder's state (PROTOCOL.md §6.13)."""

    STARTED = 0
    FINISHED = 1


class OverlapPolicy(enum.IntEnum):
    """What a schedule's fire time does while its previous run's job is live (§6.16)."""

    SKIP = 0
    ALLOW = 1


class MissedRunPolicy(enum.IntEnum):
    """What start-up does about a schedule's fire times missed while the broker was down."""

    RUN_ONCE = 0
    SKIP = 1


JOB_STATE = Enum(JobState)
PARENT_FAILURE = Enum(ParentFailure)
UNIQUE_UNTIL = Enum(UniqueUntil)
PRINCIPAL_KIND = Enum(PrincipalKind)
ORG_STATUS = Enum(OrgStatus)
ROLE = Enum(Role)
PLAN = Enum(Plan)
SUBSCRIPTION_STATUS = Enum(SubscriptionStatus)
SCOPE = Enum(Scope)
WORKER_STATE = Enum(WorkerState)
EXECUTION_OUTCOME = Enum(ExecutionOutcome)
LOG_LEVEL = Enum(LogLevel)
OVERLAP_POLICY = Enum(OverlapPolicy)
MISSED_RUN_POLICY = Enum(MissedRunPolicy)

#: ``WorkerId`` is ``u64`` on the wire.
WORKER_ID = U64
SCHEDULE_ID = U64

#: ``OrgId``, ``UserId`` and ``ProjectId`` are ``u64`` on the wire.
ORG_ID = U64
USER_ID = U64
PROJECT_ID = U64

#: The text that replaces a secret in a ``repr``.
REDACTED = "<redacted>"

#: An API key is ``tf_<16 lowercase hex digits>_<64 lowercase hex digits>`` (PROTOCOL.md §8.3).
API_KEY_PREFIX = "tf_"
API_KEY_ID_HEX_DIGITS = 16
API_KEY_SECRET_HEX_DIGITS = 64


def api_key_id(key):
    """The public key id of a whole API key ``tf_<key id>_<secret>``, or ``None`` when
    ``key`` does not have that shape."""
    if not isinstance(key, str) or not key.startswith(API_KEY_PREFIX):
        return None
    key_id, separator, secret = key[len(API_KEY_PREFIX) :].partition("_")
    if (
        not separator
        or len(key_id) != API_KEY_ID_HEX_DIGITS
        or len(secret) != API_KEY_SECRET_HEX_DIGITS
        or not _is_lower_hex(key_id)
        or not _is_lower_hex(secret)
    ):
        return None
    return key_id


def _is_lower_hex(text):
    return all(character in "0123456789abcdef" for character in text)


# --- Enums with fields -------------------------------------------------------------------


@dataclasses.dataclass
class RootToken:
    """Credentials variant 0: the broker's root token. Its ``repr`` hides the token."""

    token: str = wire(STRING, repr=False)

    def __repr__(self):
        return "RootToken(token=%r)" % REDACTED


@dataclasses.dataclass
class ApiKey:
    """Credentials variant 1: a project API key, ``tf_<key id>_<secret>`` (PROTOCOL.md §8.3).

    Its ``repr`` shows only the public key id. The key is sent as given; :meth:`parse`
    checks its shape first.
    """

    key: str = wire(STRING, repr=False)

    @classmethod
    def parse(cls, key):
        """An ``ApiKey`` for ``key``; ``ValueError`` (not naming the key) unless it is
        ``tf_`` + 16 lowercase hex digits + ``_`` + 64 lowercase hex digits."""
        if api_key_id(key) is None:
            raise ValueError(
                "an API key is tf_<%d lowercase hex digits>_<%d lowercase hex digits>"
                % (API_KEY_ID_HEX_DIGITS, API_KEY_SECRET_HEX_DIGITS)
            )
        return cls(key)

    @property
    def key_id(self):
        """The public key id, or ``None`` if the key is not well formed."""
        return api_key_id(self.key)

    def __repr__(self):
        key_id = self.key_id
        shown = REDACTED if key_id is None else "%s%s_%s" % (API_KEY_PREFIX, key_id, REDACTED)
        return "ApiKey(key=%r)" % shown


@dataclasses.dataclass
class Password:
    """Credentials variant 2: a user's email and password. Its ``repr`` hides the password."""

    email: str = wire(STRING)
    password: str = wire(STRING, repr=False)

    def __repr__(self):
        return "Password(email=%r, password=%r)" % (self.email, REDACTED)


CREDENTIALS = Union(
    "Credentials",
    [
        Variant("RootToken", RootToken, newtype=True),
        Variant("ApiKey", ApiKey, newtype=True),
        Variant("Password", Password),
    ],
)


@dataclasses.dataclass
class RetryBackoff:
    """Retry variant 0: retry after the job's backoff delay, if attempts remain."""


@dataclasses.dataclass
class RetryAt:
    """Retry variant 1: retry at ``run_at_ms``, if attempts remain (a past time means now)."""

    run_at_ms: int = wire(U64)


@dataclasses.dataclass
class RetryNever:
    """Retry variant 2: do not retry; the job is dead now."""


RETRY = Union(
    "Retry",
    [
        Variant("Backoff", RetryBackoff),
        Variant("At", RetryAt, newtype=True),
        Variant("Never", RetryNever),
    ],
)


@dataclasses.dataclass
class NoDetails:
    """ErrorDetails variant 0: nothing beyond the message."""


@dataclasses.dataclass
class QuotaDetails:
    """ErrorDetails variant 1: which quota was hit (QUOTA_EXCEEDED)."""

    limit: str = wire(STRING)
    current: int = wire(U64)
    max: int = wire(U64)


@dataclasses.dataclass
class RetryAfterDetails:
    """ErrorDetails variant 2: wait this long before retrying (RATE_LIMITED)."""

    retry_after_ms: int = wire(U64)


@dataclasses.dataclass
class BatchItemDetails:
    """ErrorDetails variant 3: the 0-based position of the offending item of a list."""

    index: int = wire(U32)


ERROR_DETAILS = Union(
    "ErrorDetails",
    [
        Variant("None", NoDetails),
        Variant("Quota", QuotaDetails),
        Variant("RetryAfter", RetryAfterDetails),
        Variant("BatchItem", BatchItemDetails),
    ],
)


@dataclasses.dataclass
class RunCommand:
    """WorkerCommand variant 0: carry on."""


@dataclasses.dataclass
class QuietCommand:
    """WorkerCommand variant 1: stop fetching; finish the jobs in hand."""


@dataclasses.dataclass
class TerminateCommand:
    """WorkerCommand variant 2: stop fetching; finish or FAIL the jobs in hand by
    ``deadline_ms`` (ms since the Unix epoch), then leave."""

    deadline_ms: int = wire(U64)


#: What a HEARTBEAT reply orders. The variant names are the index's (snake case) JSON names.
WORKER_COMMAND = Union(
    "WorkerCommand",
    [
        Variant("run", RunCommand),
        Variant("quiet", QuietCommand),
        Variant("terminate", TerminateCommand),
    ],
)


@dataclasses.dataclass
class ParentJob:
    """ParentRef variant 0: an existing job of the session's project (any queue)."""

    job_id: UUID = wire(JOB_ID)


@dataclasses.dataclass
class ParentInBatch:
    """ParentRef variant 1: the job at ``index`` (0-based) of the same ENQUEUE_BATCH."""

    index: int = wire(U32)


#: A parent a new job names in ``depends_on``. The variant names are the index's (snake
#: case) JSON names.
PARENT_REF = Union(
    "ParentRef",
    [
        Variant("job", ParentJob, newtype=True),
        Variant("batch", ParentInBatch, newtype=True),
    ],
)


@dataclasses.dataclass
class ScheduleById:
    """ScheduleKey variant 0: a schedule by its id."""

    schedule_id: int = wire(SCHEDULE_ID)


@dataclasses.dataclass
class ScheduleByName:
    """ScheduleKey variant 1: a schedule by its name in the project."""

    name: str = wire(STRING)


#: How a request names a schedule. The variant names are the index's JSON names.
SCHEDULE_KEY = Union(
    "ScheduleKey",
    [
        Variant("id", ScheduleById, newtype=True),
        Variant("name", ScheduleByName, newtype=True),
    ],
)


def parent_ref(parent):
    """A ``depends_on`` entry from a convenient value: a :class:`uuid.UUID` (or its text) is
    an existing job, an ``int`` a position in the same batch; ``ParentJob`` and
    ``ParentInBatch`` values are kept."""
    if isinstance(parent, (ParentJob, ParentInBatch)):
        return parent
    if isinstance(parent, bool):
        raise TypeError("a parent is a job id or a batch index, not %r" % (parent,))
    if isinstance(parent, int):
        return ParentInBatch(parent)
    if isinstance(parent, str):
        return ParentJob(UUID(parent))
    if isinstance(parent, UUID):
        return ParentJob(parent)
    raise TypeError("a parent is a job id or a batch index, not %r" % (parent,))
def schedule_key(schedule):
    """A ``ScheduleKey`` from an id (``int``), a name (``str``) or a key itself."""
    if isinstance(schedule, (ScheduleById, ScheduleByName)):
        return schedule
    if isinstance(schedule, int):
        return ScheduleById(schedule)
    return ScheduleByName(schedule)


# --- Shared structs (PROTOCOL.md §4.3) ---------------------------------------------------


@dataclasses.dataclass
class Empty:
    """A body with no fields (zero bytes)."""


@dataclasses.dataclass
class Backoff:
    """How retry delays grow (PROTOCOL.md §6.4)."""

    initial_ms: int = wire(U32)
    factor_percent: int = wire(U32)
    max_ms: int = wire(U32)
    jitter_percent: int = wire(U8)


BACKOFF = Struct(Backoff)


@dataclasses.dataclass
class QueueSettings:
    """Queue settings: ``None`` is the broker default on create, "unchanged" on update.

    For ``retention_ms``, ``in_flight_max`` and ``deliveries_per_second``, 0 removes the
    limit (retention: back to the plan's)."""

    priority: Optional[int] = wire(Option(I32), default=None)
    max_attempts: Optional[int] = wire(Option(U32), default=None)
    backoff: Optional[Backoff] = wire(Option(BACKOFF), default=None)
    lease_ms: Optional[int] = wire(Option(U32), default=None)
    retention_ms: Optional[int] = wire(Option(U64), default=None)
    in_flight_max: Optional[int] = wire(Option(U32), default=None)
    deliveries_per_second: Optional[int] = wire(Option(U32), default=None)


@dataclasses.dataclass
class QueueDefaults:
    """A queue's effective defaults; a flow limit of ``None`` is no limit, a
    ``retention_ms`` of ``None`` the plan's retention."""

    priority: int = wire(I32)
    max_attempts: int = wire(U32)
    backoff: Backoff = wire(BACKOFF)
    lease_ms: int = wire(U32)
    retention_ms: Optional[int] = wire(Option(U64), default=None)
    in_flight_max: Optional[int] = wire(Option(U32), default=None)
    deliveries_per_second: Optional[int] = wire(Option(U32), default=None)


@dataclasses.dataclass
class UniqueKey:
    """A unique key (PROTOCOL.md §6.13): while it holds, enqueueing the same ``key`` in the
    same queue returns the holder instead of a new job. It holds while ``until`` holds or
    while the holder is younger than ``window_ms``; set at least one."""

    key: str = wire(STRING)
    until: Optional[UniqueUntil] = wire(Option(UNIQUE_UNTIL), default=None)
    window_ms: Optional[int] = wire(Option(U64), default=None)


@dataclasses.dataclass
class JobCounts:
    """How many jobs of a queue are in each state."""

    scheduled: int = wire(U64)
    blocked: int = wire(U64)
    ready: int = wire(U64)
    leased: int = wire(U64)
    succeeded: int = wire(U64)
    dead: int = wire(U64)
    cancelled: int = wire(U64)
    expired: int = wire(U64)


@dataclasses.dataclass
class QueueInfo:
    """A queue as the broker reports it."""

    name: str = wire(STRING)
    defaults: QueueDefaults = wire(Struct(QueueDefaults))
    paused: bool = wire(BOOL)
    created_at_ms: int = wire(U64)
    counts: JobCounts = wire(Struct(JobCounts))


@dataclasses.dataclass
class NewJob:
    """A job to enqueue. Only ``queue`` and ``payload`` are required.

    ``depends_on`` holds ``ParentJob`` and ``ParentInBatch`` values (see :func:`parent_ref`);
    the job stays ``blocked`` until they have succeeded (PROTOCOL.md §6.12)."""

    queue: str = wire(STRING)
    payload: bytes = wire(BYTES)
    priority: Optional[int] = wire(Option(I32), default=None)
    run_at_ms: Optional[int] = wire(Option(U64), default=None)
    delay_ms: Optional[int] = wire(Option(U64), default=None)
    max_attempts: Optional[int] = wire(Option(U32), default=None)
    backoff: Optional[Backoff] = wire(Option(BACKOFF), default=None)
    lease_ms: Optional[int] = wire(Option(U32), default=None)
    metadata: List[Tuple[str, str]] = wire(METADATA, default_factory=list)
    depends_on: list = wire(Seq(PARENT_REF), default_factory=list)
    on_parent_failure: ParentFailure = wire(PARENT_FAILURE, default=ParentFailure.CANCEL)
    unique: Optional[UniqueKey] = wire(Option(Struct(UniqueKey)), default=None)
    expires_at_ms: Optional[int] = wire(Option(U64), default=None)
    ttl_ms: Optional[int] = wire(Option(U64), default=None)


@dataclasses.dataclass
class LeasedJob:
    """A job handed to a worker by FETCH; present ``lease_id`` on ACK, FAIL and EXTEND."""

    job_id: UUID = wire(JOB_ID)
    lease_id: int = wire(U64)
    queue: str = wire(STRING)
    payload: bytes = wire(BYTES)
    attempt: int = wire(U32)
    max_attempts: int = wire(U32)
    priority: int = wire(I32)
    lease_deadline_ms: int = wire(U64)
    created_at_ms: int = wire(U64)
    metadata: List[Tuple[str, str]] = wire(METADATA)


# --- Worker and execution types (PROTOCOL.md §4.6) -------------------------------------


@dataclasses.dataclass
class QueueAssignment:
    """One queue a worker serves: its relative ``weight`` (1..=1000) and whether it is
    ``active`` (an inactive one stays on record but is not fetched from)."""

    queue: str = wire(STRING)
    weight: int = wire(U32, default=1)
    active: bool = wire(BOOL, default=True)


QUEUE_ASSIGNMENT = Struct(QueueAssignment)


@dataclasses.dataclass
class Assignment:
    """A stored queue-worker assignment; ``position`` is the worker's preference order."""

    worker_id: int = wire(WORKER_ID)
    worker_name: str = wire(STRING)
    queue: str = wire(STRING)
    weight: int = wire(U32)
    position: int = wire(U32)
    active: bool = wire(BOOL)
    since_ms: int = wire(U64)


@dataclasses.dataclass
class WorkerInfo:
    """A registered worker as the broker reports it."""

    worker_id: int = wire(WORKER_ID)
    name: str = wire(STRING)
    hostname: str = wire(STRING)
    pid: int = wire(U32)
    version: str = wire(STRING)
    labels: List[Tuple[str, str]] = wire(METADATA)
    concurrency: int = wire(U32)
    state: WorkerState = wire(WORKER_STATE)
    registered_at_ms: int = wire(U64)
    last_heartbeat_at_ms: int = wire(U64)
    in_flight: int = wire(U32)
    leased_jobs: int = wire(U32)
    terminate_deadline_ms: Optional[int] = wire(Option(U64))
    assignments_version: int = wire(U64)
    assignments: List[Assignment] = wire(Seq(Struct(Assignment)))


@dataclasses.dataclass
class ExecutionInfo:
    """One delivery of a job. ``finished_at_ms``, ``outcome`` and ``duration_ms`` are
    ``None`` while it runs."""

    execution: int = wire(U32)
    attempt: int = wire(U32)
    worker_id: Optional[int] = wire(Option(WORKER_ID))
    lease_id: int = wire(U64)
    leased_at_ms: int = wire(U64)
    lease_deadline_ms: int = wire(U64)
    finished_at_ms: Optional[int] = wire(Option(U64))
    outcome: Optional[ExecutionOutcome] = wire(Option(EXECUTION_OUTCOME))
    error: Optional[str] = wire(Option(STRING))
    error_details: Optional[str] = wire(Option(STRING))
    duration_ms: Optional[int] = wire(Option(U64))


@dataclasses.dataclass
class ProgressInfo:
    """A job's last reported progress."""

    execution: int = wire(U32)
    percent: int = wire(U8)
    message: str = wire(STRING)
    updated_at_ms: int = wire(U64)


@dataclasses.dataclass
class NewLogLine:
    """A log line to send with LOG; ``fields`` are ``(key, value)`` string pairs."""

    level: LogLevel = wire(LOG_LEVEL)
    message: str = wire(STRING)
    fields: List[Tuple[str, str]] = wire(METADATA, default_factory=list)


@dataclasses.dataclass
class LogLine:
    """A stored log line, numbered from 1 per execution (``seq``)."""

    seq: int = wire(U32)
    at_ms: int = wire(U64)
    level: LogLevel = wire(LOG_LEVEL)
    message: str = wire(STRING)
    fields: List[Tuple[str, str]] = wire(METADATA)


@dataclasses.dataclass
class JobResult:
    """One job's state and stored result, in JOB_RESULTS."""

    job_id: UUID = wire(JOB_ID)
    state: JobState = wire(JOB_STATE)
    result: Optional[bytes] = wire(Option(BYTES))


@dataclasses.dataclass
class JobInfo:
    """Everything about one job (JOB_GET)."""

    job_id: UUID = wire(JOB_ID)
    queue: str = wire(STRING)
    state: JobState = wire(JOB_STATE)
    priority: int = wire(I32)
    payload: bytes = wire(BYTES)
    metadata: List[Tuple[str, str]] = wire(METADATA)
    attempts: int = wire(U32)
    max_attempts: int = wire(U32)
    backoff: Backoff = wire(BACKOFF)
    lease_ms: int = wire(U32)
    created_at_ms: int = wire(U64)
    run_at_ms: int = wire(U64)
    updated_at_ms: int = wire(U64)
    finished_at_ms: Optional[int] = wire(Option(U64))
    lease_deadline_ms: Optional[int] = wire(Option(U64))
    cancel_requested: bool = wire(BOOL)
    last_error: Optional[str] = wire(Option(STRING))
    result: Optional[bytes] = wire(Option(BYTES))
    executions: int = wire(U32)
    latest_execution: Optional[ExecutionInfo] = wire(Option(Struct(ExecutionInfo)))
    progress: Optional[ProgressInfo] = wire(Option(Struct(ProgressInfo)))
    parents: List[UUID] = wire(Seq(JOB_ID), default_factory=list)
    parents_remaining: int = wire(U32, default=0)
    on_parent_failure: ParentFailure = wire(PARENT_FAILURE, default=ParentFailure.CANCEL)
    children: List[UUID] = wire(Seq(JOB_ID), default_factory=list)
    unique_key: Optional[str] = wire(Option(STRING), default=None)
    expires_at_ms: Optional[int] = wire(Option(U64), default=None)


@dataclasses.dataclass
class JobSummary:
    """A job in a listing: :class:`JobInfo` without payload, metadata and result."""

    job_id: UUID = wire(JOB_ID)
    queue: str = wire(STRING)
    state: JobState = wire(JOB_STATE)
    priority: int = wire(I32)
    attempts: int = wire(U32)
    max_attempts: int = wire(U32)
    created_at_ms: int = wire(U64)
    run_at_ms: int = wire(U64)
    updated_at_ms: int = wire(U64)
    last_error: Optional[str] = wire(Option(STRING))


@dataclasses.dataclass
class SessionLimits:
    """The limits of one session, announced by the HELLO response."""

    frame_bytes_max: int = wire(U32)
    requests_in_flight_max: int = wire(U32)
    payload_bytes_max: int = wire(U32)
    result_bytes_max: int = wire(U32)
    batch_jobs_max: int = wire(U32)
    fetch_jobs_max: int = wire(U32)
    fetch_wait_ms_max: int = wire(U32)
    idle_timeout_ms: int = wire(U32)


@dataclasses.dataclass
class ErrorBody:
    """The body of every error frame, and of each failed item of an ACK_BATCH reply."""

    code: int = wire(U16)
    message: str = wire(STRING)
    details: object = wire(ERROR_DETAILS, default_factory=NoDetails)


# --- Tenancy types (PROTOCOL.md §4.5) ----------------------------------------------------


@dataclasses.dataclass
class Organization:
    """An organization: a tenant."""

    org_id: int = wire(ORG_ID)
    name: str = wire(STRING)
    slug: str = wire(STRING)
    created_at_ms: int = wire(U64)
    status: OrgStatus = wire(ORG_STATUS)


@dataclasses.dataclass
class User:
    """A person in an organization. The password hash never leaves the broker."""

    user_id: int = wire(USER_ID)
    org_id: int = wire(ORG_ID)
    email: str = wire(STRING)
    role: Role = wire(ROLE)
    created_at_ms: int = wire(U64)
    last_login_at_ms: Optional[int] = wire(Option(U64))
    disabled: bool = wire(BOOL)


@dataclasses.dataclass
class PlanLimits:
    """The limits a subscription grants; a type's largest value means unlimited."""

    projects_max: int = wire(U32)
    queues_per_project_max: int = wire(U32)
    pending_jobs_max: int = wire(U64)
    payload_bytes_max: int = wire(U32)
    enqueue_rate_per_second: int = wire(U32)
    enqueue_burst: int = wire(U32)
    connections_max: int = wire(U32)
    workers_max: int = wire(U32)
    retention_ms: int = wire(U64)


PLAN_LIMITS = Struct(PlanLimits)


@dataclasses.dataclass
class Subscription:
    """An organization's plan, status, period and the limits in force."""

    org_id: int = wire(ORG_ID)
    plan: Plan = wire(PLAN)
    status: SubscriptionStatus = wire(SUBSCRIPTION_STATUS)
    period_start_ms: int = wire(U64)
    period_end_ms: int = wire(U64)
    limits: PlanLimits = wire(PLAN_LIMITS)


@dataclasses.dataclass
class Project:
    """A project: an isolated namespace of queues and jobs in an organization."""

    project_id: int = wire(PROJECT_ID)
    org_id: int = wire(ORG_ID)
    name: str = wire(STRING)
    slug: str = wire(STRING)
    created_at_ms: int = wire(U64)


@dataclasses.dataclass
class ApiKeyInfo:
    """An API key as listed: never its secret."""

    key_id: str = wire(STRING)
    project_id: int = wire(PROJECT_ID)
    name: str = wire(STRING)
    scopes: List[Scope] = wire(Seq(SCOPE))
    created_at_ms: int = wire(U64)
    last_used_at_ms: Optional[int] = wire(Option(U64))
    expires_at_ms: Optional[int] = wire(Option(U64))
    revoked_at_ms: Optional[int] = wire(Option(U64))


@dataclasses.dataclass
class ApiKeySecret:
    """APIKEY_CREATE and APIKEY_ROTATE response: the only time a secret is shown.

    ``secret`` is the whole credential ``tf_<key id>_<secret>``; :meth:`credentials` wraps
    it for :meth:`taskforge.Client.connect`. The ``repr`` hides it.
    """

    key: ApiKeyInfo = wire(Struct(ApiKeyInfo))
    secret: str = wire(STRING, repr=False)

    def credentials(self):
        """The secret as :class:`ApiKey` credentials."""
        return ApiKey(self.secret)

    def __repr__(self):
        return "ApiKeySecret(key=%r, secret=%r)" % (self.key, REDACTED)


# --- Request and response bodies (PROTOCOL.md §9) ----------------------------------------


@dataclasses.dataclass
class HelloRequest:
    """HELLO request: the first request of a session."""

    protocol_version: int = wire(U16)
    client_name: str = wire(STRING)
    client_version: str = wire(STRING)
    credentials: object = wire(CREDENTIALS)
    project_id: Optional[int] = wire(Option(PROJECT_ID), default=None)


@dataclasses.dataclass
class HelloResponse:
    """HELLO response: the session is open. ``project_id`` is 0 for a session without a
    project (a user that named none); ``org_id`` is ``None`` for root; ``user_id`` is set
    for a password session only."""

    protocol_version: int = wire(U16)
    server_version: str = wire(STRING)
    principal_kind: PrincipalKind = wire(PRINCIPAL_KIND)
    project_id: int = wire(PROJECT_ID)
    limits: SessionLimits = wire(Struct(SessionLimits))
    org_id: Optional[int] = wire(Option(ORG_ID), default=None)
    user_id: Optional[int] = wire(Option(USER_ID), default=None)


@dataclasses.dataclass
class Pong:
    """PING response."""

    server_time_ms: int = wire(U64)


@dataclasses.dataclass
class QueueName:
    """A request naming one queue."""

    name: str = wire(STRING)


@dataclasses.dataclass
class QueueWrite:
    """QUEUE_CREATE and QUEUE_UPDATE request."""

    name: str = wire(STRING)
    settings: QueueSettings = wire(Struct(QueueSettings))


@dataclasses.dataclass
class QueueListRequest:
    """QUEUE_LIST request."""

    after: Optional[str] = wire(Option(STRING))
    limit: int = wire(U32)


@dataclasses.dataclass
class QueueListResponse:
    """QUEUE_LIST response; ``next_after`` is ``None`` on the last page."""

    queues: List[QueueInfo] = wire(Seq(Struct(QueueInfo)))
    next_after: Optional[str] = wire(Option(STRING))


@dataclasses.dataclass
class BulkResponse:
    """Response of QUEUE_PURGE, DEAD_RETRY and DEAD_DISCARD; repeat while ``remaining``."""

    affected: int = wire(U64)
    remaining: int = wire(U64)


@dataclasses.dataclass
class QueueStats:
    """QUEUE_STATS response."""

    name: str = wire(STRING)
    counts: JobCounts = wire(Struct(JobCounts))
    paused: bool = wire(BOOL)
    oldest_ready_age_ms: Optional[int] = wire(Option(U64))


@dataclasses.dataclass
class EnqueueRequest:
    """ENQUEUE request."""

    job: NewJob = wire(Struct(NewJob))


@dataclasses.dataclass
class EnqueueResponse:
    """ENQUEUE response. ``duplicate`` is true when a unique key matched: ``job_id`` and
    ``state`` are then the existing job's, and nothing was created."""

    job_id: UUID = wire(JOB_ID)
    state: JobState = wire(JOB_STATE)
    duplicate: bool = wire(BOOL, default=False)


@dataclasses.dataclass
class EnqueueBatchRequest:
    """ENQUEUE_BATCH request: all jobs are stored, or none."""

    jobs: List[NewJob] = wire(Seq(Struct(NewJob)))


@dataclasses.dataclass
class EnqueueBatchResponse:
    """ENQUEUE_BATCH response: the ids in request order, and per job whether a unique key
    matched (the id is then the existing job's, or an earlier job's of the batch)."""

    job_ids: List[UUID] = wire(Seq(JOB_ID))
    duplicates: List[bool] = wire(Seq(BOOL), default_factory=list)


@dataclasses.dataclass
class FetchRequest:
    """FETCH request. ``worker_id`` names a registered worker (``None``: anonymous);
    ``weights`` is empty for strict queue order, else one weight per queue."""

    queues: List[str] = wire(Seq(STRING))
    max_jobs: int = wire(U32)
    wait_ms: int = wire(U32)
    lease_ms: Optional[int] = wire(Option(U32))
    worker_id: Optional[int] = wire(Option(WORKER_ID), default=None)
    weights: List[int] = wire(Seq(U32), default_factory=list)


@dataclasses.dataclass
class FetchResponse:
    """FETCH response; empty when the wait ran out."""

    jobs: List[LeasedJob] = wire(Seq(Struct(LeasedJob)))


@dataclasses.dataclass
class AckRequest:
    """ACK request, and one item of ACK_BATCH."""

    job_id: UUID = wire(JOB_ID)
    lease_id: int = wire(U64)
    result: Optional[bytes] = wire(Option(BYTES), default=None)


@dataclasses.dataclass
class AckBatchRequest:
    """ACK_BATCH request."""

    acks: List[AckRequest] = wire(Seq(Struct(AckRequest)))


@dataclasses.dataclass
class AckBatchResponse:
    """ACK_BATCH response: per ack, ``None`` when it succeeded or its :class:`ErrorBody`."""

    results: List[Optional[ErrorBody]] = wire(Seq(Option(Struct(ErrorBody))))


@dataclasses.dataclass
class FailRequest:
    """FAIL request; ``error_details`` (a stack trace, say) goes to the execution record."""

    job_id: UUID = wire(JOB_ID)
    lease_id: int = wire(U64)
    error: str = wire(STRING)
    retry: object = wire(RETRY)
    error_details: Optional[str] = wire(Option(STRING), default=None)


@dataclasses.dataclass
class FailResponse:
    """FAIL response."""

    state: JobState = wire(JOB_STATE)
    run_at_ms: Optional[int] = wire(Option(U64))
    attempts: int = wire(U32)


@dataclasses.dataclass
class ExtendRequest:
    """EXTEND request."""

    job_id: UUID = wire(JOB_ID)
    lease_id: int = wire(U64)
    lease_ms: int = wire(U32)


@dataclasses.dataclass
class ExtendResponse:
    """EXTEND response; ``cancel_requested`` means stop work."""

    lease_deadline_ms: int = wire(U64)
    cancel_requested: bool = wire(BOOL)


@dataclasses.dataclass
class JobRef:
    """A request naming one job (CANCEL, JOB_GET)."""

    job_id: UUID = wire(JOB_ID)


@dataclasses.dataclass
class CancelResponse:
    """CANCEL response."""

    state: JobState = wire(JOB_STATE)
    cancel_requested: bool = wire(BOOL)


@dataclasses.dataclass
class JobListRequest:
    """JOB_LIST request."""

    queue: str = wire(STRING)
    state: Optional[JobState] = wire(Option(JOB_STATE))
    after: Optional[UUID] = wire(Option(JOB_ID))
    limit: int = wire(U32)


@dataclasses.dataclass
class JobListResponse:
    """JOB_LIST and DEAD_LIST response; ``next_after`` is ``None`` on the last page."""

    jobs: List[JobSummary] = wire(Seq(Struct(JobSummary)))
    next_after: Optional[UUID] = wire(Option(JOB_ID))


@dataclasses.dataclass
class ProgressRequest:
    """PROGRESS request: ``percent`` 0..=100 and a short message."""

    job_id: UUID = wire(JOB_ID)
    lease_id: int = wire(U64)
    percent: int = wire(U8)
    message: str = wire(STRING, default="")


@dataclasses.dataclass
class LogRequest:
    """LOG request: 1..=100 lines for the execution running under ``lease_id``."""

    job_id: UUID = wire(JOB_ID)
    lease_id: int = wire(U64)
    lines: List[NewLogLine] = wire(Seq(Struct(NewLogLine)))


@dataclasses.dataclass
class LogResponse:
    """LOG response: the execution the lines went to and the first line's number."""

    execution: int = wire(U32)
    first_seq: int = wire(U32)


@dataclasses.dataclass
class LogTailRequest:
    """LOG_TAIL request. Without ``after_seq``: the last ``lines`` lines. With it: the
    lines after it, waiting up to ``wait_ms`` for one while the execution runs."""

    job_id: UUID = wire(JOB_ID)
    execution: Optional[int] = wire(Option(U32))
    lines: int = wire(U32)
    after_seq: Optional[int] = wire(Option(U32))
    wait_ms: int = wire(U32)


@dataclasses.dataclass
class LogTail:
    """LOG_TAIL response: pass ``next_after`` as ``after_seq`` while ``open``."""

    execution: int = wire(U32)
    lines: List[LogLine] = wire(Seq(Struct(LogLine)))
    next_after: int = wire(U32)
    open: bool = wire(BOOL)


@dataclasses.dataclass
class ExecutionListRequest:
    """EXECUTION_LIST request, paged by execution number."""

    job_id: UUID = wire(JOB_ID)
    after: Optional[int] = wire(Option(U32))
    limit: int = wire(U32)


@dataclasses.dataclass
class ExecutionList:
    """EXECUTION_LIST response: ended executions in order, the running one last."""

    executions: List[ExecutionInfo] = wire(Seq(Struct(ExecutionInfo)))
    next_after: Optional[int] = wire(Option(U32))


@dataclasses.dataclass
class JobResults:
    """JOB_RESULTS response: the job's result and its parents' (empty until job
    dependencies exist)."""

    job: JobResult = wire(Struct(JobResult))
    parents: List[JobResult] = wire(Seq(Struct(JobResult)))


@dataclasses.dataclass
class DeadListRequest:
    """DEAD_LIST request."""

    queue: str = wire(STRING)
    after: Optional[UUID] = wire(Option(JOB_ID))
    limit: int = wire(U32)


@dataclasses.dataclass
class DeadBulkRequest:
    """DEAD_RETRY and DEAD_DISCARD request; no ids means every dead job of the queue."""

    queue: str = wire(STRING)
    job_ids: List[UUID] = wire(Seq(JOB_ID))


@dataclasses.dataclass
class WorkerRegister:
    """WORKER_REGISTER request."""

    name: str = wire(STRING)
    hostname: str = wire(STRING)
    pid: int = wire(U32)
    version: str = wire(STRING)
    labels: List[Tuple[str, str]] = wire(METADATA)
    concurrency: int = wire(U32)
    queues: List[QueueAssignment] = wire(Seq(QUEUE_ASSIGNMENT))


@dataclasses.dataclass
class Heartbeat:
    """HEARTBEAT request; ``leaving`` on the last one before a clean exit."""

    worker_id: int = wire(WORKER_ID)
    in_flight: int = wire(U32)
    assignments_version: int = wire(U64)
    leaving: bool = wire(BOOL, default=False)


@dataclasses.dataclass
class HeartbeatResponse:
    """HEARTBEAT response. ``command`` is :class:`RunCommand`, :class:`QuietCommand` or
    :class:`TerminateCommand`; ``assignments`` is the new queue list when the version sent
    was not the current one."""

    command: object = wire(WORKER_COMMAND)
    heartbeat_interval_ms: int = wire(U32)
    assignments_version: int = wire(U64)
    assignments: Optional[List[QueueAssignment]] = wire(Option(Seq(QUEUE_ASSIGNMENT)))
    cancelled_jobs: List[UUID] = wire(Seq(JOB_ID))


@dataclasses.dataclass
class WorkerRef:
    """A request naming one worker (WORKER_GET, WORKER_QUIET)."""

    worker_id: int = wire(WORKER_ID)


@dataclasses.dataclass
class WorkerListRequest:
    """WORKER_LIST request."""

    state: Optional[WorkerState] = wire(Option(WORKER_STATE))
    after: Optional[int] = wire(Option(WORKER_ID))
    limit: int = wire(U32)


@dataclasses.dataclass
class WorkerList:
    """WORKER_LIST response; ``next_after`` is ``None`` on the last page."""

    workers: List[WorkerInfo] = wire(Seq(Struct(WorkerInfo)))
    next_after: Optional[int] = wire(Option(WORKER_ID))


@dataclasses.dataclass
class WorkerTerminate:
    """WORKER_TERMINATE request; ``grace_ms`` ``None`` is the broker's default (30 s)."""

    worker_id: int = wire(WORKER_ID)
    grace_ms: Optional[int] = wire(Option(U32), default=None)


@dataclasses.dataclass
class WorkerAssign:
    """WORKER_ASSIGN request: the worker's new queues, in preference order."""

    worker_id: int = wire(WORKER_ID)
    queues: List[QueueAssignment] = wire(Seq(QUEUE_ASSIGNMENT))


@dataclasses.dataclass
class AssignmentListRequest:
    """ASSIGNMENT_LIST request: by queue, by worker, both or neither; paged by worker id."""

    queue: Optional[str] = wire(Option(STRING))
    worker_id: Optional[int] = wire(Option(WORKER_ID))
    after: Optional[int] = wire(Option(WORKER_ID))
    limit: int = wire(U32)


@dataclasses.dataclass
class AssignmentList:
    """ASSIGNMENT_LIST response; ``next_after`` is ``None`` on the last page."""

    assignments: List[Assignment] = wire(Seq(Struct(Assignment)))
    next_after: Optional[int] = wire(Option(WORKER_ID))


@dataclasses.dataclass
class OrgRef:
    """A request naming one organization (ORG_GET, ORG_DELETE, SUBSCRIPTION_GET)."""

    org_id: int = wire(ORG_ID)


@dataclasses.dataclass
class OrgCreate:
    """ORG_CREATE request; ``plan`` is not ``CUSTOM``."""

    name: str = wire(STRING)
    slug: str = wire(STRING)
    plan: Plan = wire(PLAN)


@dataclasses.dataclass
class IdPage:
    """A page request by numeric id (ORG_LIST)."""

    after: Optional[int] = wire(Option(U64))
    limit: int = wire(U32)


@dataclasses.dataclass
class OrgList:
    """ORG_LIST response; ``next_after`` is ``None`` on the last page."""

    orgs: List[Organization] = wire(Seq(Struct(Organization)))
    next_after: Optional[int] = wire(Option(ORG_ID))


@dataclasses.dataclass
class OrgUpdate:
    """ORG_UPDATE request; ``None`` fields stay unchanged (``status``: root only)."""

    org_id: int = wire(ORG_ID)
    name: Optional[str] = wire(Option(STRING), default=None)
    status: Optional[OrgStatus] = wire(Option(ORG_STATUS), default=None)


@dataclasses.dataclass
class OrgPage:
    """A page of an organization's users or projects (USER_LIST, PROJECT_LIST)."""

    org_id: int = wire(ORG_ID)
    after: Optional[int] = wire(Option(U64))
    limit: int = wire(U32)


@dataclasses.dataclass
class UserCreate:
    """USER_CREATE request. The ``repr`` hides the password."""

    org_id: int = wire(ORG_ID)
    email: str = wire(STRING)
    password: str = wire(STRING, repr=False)
    role: Role = wire(ROLE)

    def __repr__(self):
        return "UserCreate(org_id=%r, email=%r, password=%r, role=%r)" % (
            self.org_id,
            self.email,
            REDACTED,
            self.role,
        )


@dataclasses.dataclass
class UserRef:
    """A request naming one user (USER_GET)."""

    user_id: int = wire(USER_ID)


@dataclasses.dataclass
class UserList:
    """USER_LIST response; ``next_after`` is ``None`` on the last page."""

    users: List[User] = wire(Seq(Struct(User)))
    next_after: Optional[int] = wire(Option(USER_ID))


@dataclasses.dataclass
class UserUpdate:
    """USER_UPDATE request; ``None`` fields stay unchanged."""

    user_id: int = wire(USER_ID)
    email: Optional[str] = wire(Option(STRING), default=None)
    role: Optional[Role] = wire(Option(ROLE), default=None)


@dataclasses.dataclass
class UserDisable:
    """USER_DISABLE request: ``disabled`` true to disable, false to enable again."""

    user_id: int = wire(USER_ID)
    disabled: bool = wire(BOOL)


@dataclasses.dataclass
class UserSetPassword:
    """USER_SET_PASSWORD request. The ``repr`` hides the password."""

    user_id: int = wire(USER_ID)
    password: str = wire(STRING, repr=False)

    def __repr__(self):
        return "UserSetPassword(user_id=%r, password=%r)" % (self.user_id, REDACTED)


@dataclasses.dataclass
class SubscriptionSet:
    """SUBSCRIPTION_SET request; ``limits`` replace the plan's presets (required for
    ``CUSTOM``)."""

    org_id: int = wire(ORG_ID)
    plan: Plan = wire(PLAN)
    status: SubscriptionStatus = wire(SUBSCRIPTION_STATUS)
    period_start_ms: int = wire(U64)
    period_end_ms: int = wire(U64)
    limits: Optional[PlanLimits] = wire(Option(PLAN_LIMITS), default=None)


@dataclasses.dataclass
class ProjectCreate:
    """PROJECT_CREATE request."""

    org_id: int = wire(ORG_ID)
    name: str = wire(STRING)
    slug: str = wire(STRING)


@dataclasses.dataclass
class ProjectRef:
    """A request naming one project (PROJECT_GET, PROJECT_DELETE)."""

    project_id: int = wire(PROJECT_ID)


@dataclasses.dataclass
class ProjectList:
    """PROJECT_LIST response; ``next_after`` is ``None`` on the last page."""

    projects: List[Project] = wire(Seq(Struct(Project)))
    next_after: Optional[int] = wire(Option(PROJECT_ID))


@dataclasses.dataclass
class ProjectUpdate:
    """PROJECT_UPDATE request: a new display name (the slug never changes)."""

    project_id: int = wire(PROJECT_ID)
    name: str = wire(STRING)


@dataclasses.dataclass
class ApiKeyCreate:
    """APIKEY_CREATE request: at least one scope, no repeats."""

    project_id: int = wire(PROJECT_ID)
    name: str = wire(STRING)
    scopes: List[Scope] = wire(Seq(SCOPE))
    expires_at_ms: Optional[int] = wire(Option(U64), default=None)


@dataclasses.dataclass
class ProjectPage:
    """A page of a project's API keys (APIKEY_LIST); ``after`` is a key id."""

    project_id: int = wire(PROJECT_ID)
    after: Optional[str] = wire(Option(STRING))
    limit: int = wire(U32)


@dataclasses.dataclass
class ApiKeyList:
    """APIKEY_LIST response; ``next_after`` is ``None`` on the last page."""

    keys: List[ApiKeyInfo] = wire(Seq(Struct(ApiKeyInfo)))
    next_after: Optional[str] = wire(Option(STRING))


@dataclasses.dataclass
class ApiKeyRef:
    """APIKEY_REVOKE request: the key's public id."""

    key_id: str = wire(STRING)


@dataclasses.dataclass
class ApiKeyRotate:
    """APIKEY_ROTATE request; ``grace_ms`` ``None`` is the broker's default grace (1 hour)."""

    key_id: str = wire(STRING)
    grace_ms: Optional[int] = wire(Option(U64), default=None)


# --- Cron schedules (PROTOCOL.md §4.7, §6.12, 0x05xx) --------------------------------------


@dataclasses.dataclass
class ScheduleInfo:
    """A cron schedule as the broker reports it."""

    schedule_id: int = wire(SCHEDULE_ID)
    name: str = wire(STRING)
    cron: str = wire(STRING)
    time_zone: str = wire(STRING)
    queue: str = wire(STRING)
    template: NewJob = wire(Struct(NewJob))
    overlap: OverlapPolicy = wire(OVERLAP_POLICY)
    missed_runs: MissedRunPolicy = wire(MISSED_RUN_POLICY)
    paused: bool = wire(BOOL)
    created_at_ms: int = wire(U64)
    updated_at_ms: int = wire(U64)
    next_fire_at_ms: Optional[int] = wire(Option(U64))
    last_fired_at_ms: Optional[int] = wire(Option(U64))
    last_job_id: Optional[UUID] = wire(Option(JOB_ID))
    fired_count: int = wire(U64)
    skipped_count: int = wire(U64)
    last_skipped_at_ms: Optional[int] = wire(Option(U64))
    last_skip_reason: Optional[str] = wire(Option(STRING))


@dataclasses.dataclass
class ScheduleCreate:
    """SCHEDULE_CREATE request; ``template.queue`` must equal ``queue``."""

    name: str = wire(STRING)
    cron: str = wire(STRING)
    time_zone: str = wire(STRING)
    queue: str = wire(STRING)
    template: NewJob = wire(Struct(NewJob))
    overlap: OverlapPolicy = wire(OVERLAP_POLICY, default=OverlapPolicy.ALLOW)
    missed_runs: MissedRunPolicy = wire(MISSED_RUN_POLICY, default=MissedRunPolicy.RUN_ONCE)
    paused: bool = wire(BOOL, default=False)


@dataclasses.dataclass
class ScheduleRef:
    """A request naming one schedule (SCHEDULE_GET, DELETE, PAUSE, RESUME)."""

    schedule: object = wire(SCHEDULE_KEY)


@dataclasses.dataclass
class ScheduleListRequest:
    """SCHEDULE_LIST request: optionally one queue's schedules; paged by schedule id."""

    queue: Optional[str] = wire(Option(STRING))
    after: Optional[int] = wire(Option(SCHEDULE_ID))
    limit: int = wire(U32)


@dataclasses.dataclass
class ScheduleList:
    """SCHEDULE_LIST response; ``next_after`` is ``None`` on the last page."""

    schedules: List[ScheduleInfo] = wire(Seq(Struct(ScheduleInfo)))
    next_after: Optional[int] = wire(Option(SCHEDULE_ID))


@dataclasses.dataclass
class ScheduleUpdate:
    """SCHEDULE_UPDATE request: ``None`` fields stay as they are."""

    schedule: object = wire(SCHEDULE_KEY)
    name: Optional[str] = wire(Option(STRING), default=None)
    cron: Optional[str] = wire(Option(STRING), default=None)
    time_zone: Optional[str] = wire(Option(STRING), default=None)
    queue: Optional[str] = wire(Option(STRING), default=None)
    template: Optional[NewJob] = wire(Option(Struct(NewJob)), default=None)
    overlap: Optional[OverlapPolicy] = wire(Option(OVERLAP_POLICY), default=None)
    missed_runs: Optional[MissedRunPolicy] = wire(Option(MISSED_RUN_POLICY), default=None)


#: Opcode → (request body type, response body type), as in PROTOCOL.md §9.
OPERATIONS = {
    Opcode.HELLO: (HelloRequest, HelloResponse),
    Opcode.PING: (Empty, Pong),
    Opcode.BYE: (Empty, Empty),
    Opcode.QUEUE_CREATE: (QueueWrite, QueueInfo),
    Opcode.QUEUE_GET: (QueueName, QueueInfo),
    Opcode.QUEUE_LIST: (QueueListRequest, QueueListResponse),
    Opcode.QUEUE_UPDATE: (QueueWrite, QueueInfo),
    Opcode.QUEUE_DELETE: (QueueName, Empty),
    Opcode.QUEUE_PAUSE: (QueueName, QueueInfo),
    Opcode.QUEUE_RESUME: (QueueName, QueueInfo),
    Opcode.QUEUE_PURGE: (QueueName, BulkResponse),
    Opcode.QUEUE_STATS: (QueueName, QueueStats),
    Opcode.ENQUEUE: (EnqueueRequest, EnqueueResponse),
    Opcode.ENQUEUE_BATCH: (EnqueueBatchRequest, EnqueueBatchResponse),
    Opcode.FETCH: (FetchRequest, FetchResponse),
    Opcode.ACK: (AckRequest, Empty),
    Opcode.ACK_BATCH: (AckBatchRequest, AckBatchResponse),
    Opcode.FAIL: (FailRequest, FailResponse),
    Opcode.EXTEND: (ExtendRequest, ExtendResponse),
    Opcode.CANCEL: (JobRef, CancelResponse),
    Opcode.JOB_GET: (JobRef, JobInfo),
    Opcode.JOB_LIST: (JobListRequest, JobListResponse),
    Opcode.PROGRESS: (ProgressRequest, Empty),
    Opcode.LOG: (LogRequest, LogResponse),
    Opcode.LOG_TAIL: (LogTailRequest, LogTail),
    Opcode.EXECUTION_LIST: (ExecutionListRequest, ExecutionList),
    Opcode.JOB_RESULTS: (JobRef, JobResults),
    Opcode.DEAD_LIST: (DeadListRequest, JobListResponse),
    Opcode.DEAD_RETRY: (DeadBulkRequest, BulkResponse),
    Opcode.DEAD_DISCARD: (DeadBulkRequest, BulkResponse),
    Opcode.WORKER_REGISTER: (WorkerRegister, WorkerInfo),
    Opcode.HEARTBEAT: (Heartbeat, HeartbeatResponse),
    Opcode.WORKER_LIST: (WorkerListRequest, WorkerList),
    Opcode.WORKER_GET: (WorkerRef, WorkerInfo),
    Opcode.WORKER_QUIET: (WorkerRef, WorkerInfo),
    Opcode.WORKER_TERMINATE: (WorkerTerminate, WorkerInfo),
    Opcode.WORKER_ASSIGN: (WorkerAssign, WorkerInfo),
    Opcode.ASSIGNMENT_LIST: (AssignmentListRequest, AssignmentList),
    Opcode.SCHEDULE_CREATE: (ScheduleCreate, ScheduleInfo),
    Opcode.SCHEDULE_GET: (ScheduleRef, ScheduleInfo),
    Opcode.SCHEDULE_LIST: (ScheduleListRequest, ScheduleList),
    Opcode.SCHEDULE_UPDATE: (ScheduleUpdate, ScheduleInfo),
    Opcode.SCHEDULE_DELETE: (ScheduleRef, Empty),
    Opcode.SCHEDULE_PAUSE: (ScheduleRef, ScheduleInfo),
    Opcode.SCHEDULE_RESUME: (ScheduleRef, ScheduleInfo),
    Opcode.ORG_CREATE: (OrgCreate, Organization),
    Opcode.ORG_GET: (OrgRef, Organization),
    Opcode.ORG_LIST: (IdPage, OrgList),
    Opcode.ORG_UPDATE: (OrgUpdate, Organization),
    Opcode.ORG_DELETE: (OrgRef, Empty),
    Opcode.USER_CREATE: (UserCreate, User),
    Opcode.USER_GET: (UserRef, User),
    Opcode.USER_LIST: (OrgPage, UserList),
    Opcode.USER_UPDATE: (UserUpdate, User),
    Opcode.USER_DISABLE: (UserDisable, User),
    Opcode.USER_SET_PASSWORD: (UserSetPassword, Empty),
    Opcode.SUBSCRIPTION_GET: (OrgRef, Subscription),
    Opcode.SUBSCRIPTION_SET: (SubscriptionSet, Subscription),
    Opcode.PROJECT_CREATE: (ProjectCreate, Project),
    Opcode.PROJECT_GET: (ProjectRef, Project),
    Opcode.PROJECT_LIST: (OrgPage, ProjectList),
    Opcode.PROJECT_UPDATE: (ProjectUpdate, Project),
    Opcode.PROJECT_DELETE: (ProjectRef, Empty),
    Opcode.APIKEY_CREATE: (ApiKeyCreate, ApiKeySecret),
    Opcode.APIKEY_LIST: (ProjectPage, ApiKeyList),
    Opcode.APIKEY_REVOKE: (ApiKeyRef, ApiKeyInfo),
    Opcode.APIKEY_ROTATE: (ApiKeyRotate, ApiKeySecret),
}

_STRUCTS = {}


def struct_type(cls):
    """The :class:`taskforge.codec.Struct` field type of a body class (built once)."""
    field_type = _STRUCTS.get(cls)
    if field_type is None:
        field_type = _STRUCTS[cls] = Struct(cls)
    return field_type


def encode_body(value):
    """The encoding of a body (any dataclass of this module) as ``bytes``."""
    writer = Writer()
    struct_type(type(value)).encode(writer, value)
    return bytes(writer.out)


def decode_body(cls, body):
    """Decodes ``body`` as ``cls``.

    Bytes after the end of the body are ignored (PROTOCOL.md §3.6: later revisions may
    append fields). Raises :class:`taskforge.codec.DecodeError` for bytes that break the
    encoding rules.
    """
    return struct_type(cls).decode(Reader(body))


def request_type(opcode):
    """The request body type of ``opcode``; ``ValueError`` for an unknown opcode."""
    return OPERATIONS[Opcode(opcode)][0]


def response_type(opcode):
    """The response body type of ``opcode``; ``ValueError`` for an unknown opcode."""
    return OPERATIONS[Opcode(opcode)][1]

