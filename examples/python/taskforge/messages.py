"""Every message body of protocol version 1, and the opcode table.

Each body is a dataclass whose fields are declared in wire order with their wire type
(:func:`taskforge.codec.wire`), so each class reads like its table in
``protocol/PROTOCOL.md`` §4 and §8. :func:`encode_body` and :func:`decode_body` turn any of
them into bytes and back; :data:`OPERATIONS` says which request and response type each
opcode carries.

Python representations: ``JobId`` is :class:`uuid.UUID`; ``bytes`` fields are ``bytes``;
``Option`` is ``None`` or the value; metadata is a list of ``(key, value)`` string tuples;
field-less enums are :class:`enum.IntEnum` members; enums with fields (``Credentials``,
``Retry``, ``ErrorDetails``) are one dataclass per variant. Times are ``int`` milliseconds
since the Unix epoch.
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
    """Every operation, by its stable number (PROTOCOL.md §8)."""

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
    DEAD_LIST = 0x0300
    DEAD_RETRY = 0x0301
    DEAD_DISCARD = 0x0302


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


JOB_STATE = Enum(JobState)
PRINCIPAL_KIND = Enum(PrincipalKind)


# --- Enums with fields -------------------------------------------------------------------


@dataclasses.dataclass
class RootToken:
    """Credentials variant 0: the broker's root token."""

    token: str = wire(STRING)


@dataclasses.dataclass
class ApiKey:
    """Credentials variant 1: a project API key, ``tf_<key id>_<secret>``."""

    key: str = wire(STRING)


@dataclasses.dataclass
class Password:
    """Credentials variant 2: a user's email and password."""

    email: str = wire(STRING)
    password: str = wire(STRING)


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
    """Queue settings: ``None`` is the broker default on create, "unchanged" on update."""

    priority: Optional[int] = wire(Option(I32), default=None)
    max_attempts: Optional[int] = wire(Option(U32), default=None)
    backoff: Optional[Backoff] = wire(Option(BACKOFF), default=None)
    lease_ms: Optional[int] = wire(Option(U32), default=None)


@dataclasses.dataclass
class QueueDefaults:
    """A queue's effective defaults."""

    priority: int = wire(I32)
    max_attempts: int = wire(U32)
    backoff: Backoff = wire(BACKOFF)
    lease_ms: int = wire(U32)


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
    """A job to enqueue. Only ``queue`` and ``payload`` are required."""

    queue: str = wire(STRING)
    payload: bytes = wire(BYTES)
    priority: Optional[int] = wire(Option(I32), default=None)
    run_at_ms: Optional[int] = wire(Option(U64), default=None)
    delay_ms: Optional[int] = wire(Option(U64), default=None)
    max_attempts: Optional[int] = wire(Option(U32), default=None)
    backoff: Optional[Backoff] = wire(Option(BACKOFF), default=None)
    lease_ms: Optional[int] = wire(Option(U32), default=None)
    metadata: List[Tuple[str, str]] = wire(METADATA, default_factory=list)


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


# --- Request and response bodies (PROTOCOL.md §8) ----------------------------------------


@dataclasses.dataclass
class HelloRequest:
    """HELLO request: the first request of a session."""

    protocol_version: int = wire(U16)
    client_name: str = wire(STRING)
    client_version: str = wire(STRING)
    credentials: object = wire(CREDENTIALS)


@dataclasses.dataclass
class HelloResponse:
    """HELLO response: the session is open."""

    protocol_version: int = wire(U16)
    server_version: str = wire(STRING)
    principal_kind: PrincipalKind = wire(PRINCIPAL_KIND)
    project_id: int = wire(U64)
    limits: SessionLimits = wire(Struct(SessionLimits))


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
    """ENQUEUE response."""

    job_id: UUID = wire(JOB_ID)
    state: JobState = wire(JOB_STATE)


@dataclasses.dataclass
class EnqueueBatchRequest:
    """ENQUEUE_BATCH request: all jobs are stored, or none."""

    jobs: List[NewJob] = wire(Seq(Struct(NewJob)))


@dataclasses.dataclass
class EnqueueBatchResponse:
    """ENQUEUE_BATCH response: the new ids in request order."""

    job_ids: List[UUID] = wire(Seq(JOB_ID))


@dataclasses.dataclass
class FetchRequest:
    """FETCH request."""

    queues: List[str] = wire(Seq(STRING))
    max_jobs: int = wire(U32)
    wait_ms: int = wire(U32)
    lease_ms: Optional[int] = wire(Option(U32))


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
    """FAIL request."""

    job_id: UUID = wire(JOB_ID)
    lease_id: int = wire(U64)
    error: str = wire(STRING)
    retry: object = wire(RETRY)


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


#: Opcode → (request body type, response body type), as in PROTOCOL.md §8.
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
    Opcode.DEAD_LIST: (DeadListRequest, JobListResponse),
    Opcode.DEAD_RETRY: (DeadBulkRequest, BulkResponse),
    Opcode.DEAD_DISCARD: (DeadBulkRequest, BulkResponse),
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

