//! Request and response bodies, and the opcode table that binds each operation to them.
//!
//! One table, `operations!` below, declares every operation: its stable number, its name,
//! its request body and its response body. Everything else (the [`Opcode`] enum, the
//! [`Request`] and [`Response`] enums, their encoders and decoders) is generated from it,
//! so an operation cannot be half-added.

use bincode::{Decode, Encode};
use bytes::BytesMut;
use serde::{Deserialize, Serialize};

use crate::error::ErrorBody;
use crate::executions::*;
use crate::limits::FRAME_BYTES_CEILING;
use crate::schedules::*;
use crate::tenancy::*;
use crate::types::*;
use crate::workers::*;

/// The bincode configuration for every body: `standard()` (little-endian varints) with a
/// byte limit, so no length field can make the decoder allocate beyond the frame ceiling.
pub const BODY_CONFIG: bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<{ FRAME_BYTES_CEILING as usize }>,
> = bincode::config::standard().with_limit::<{ FRAME_BYTES_CEILING as usize }>();

/// Why a body could not be turned into a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageError {
    /// The opcode is not in this version's table.
    UnknownOpcode(u16),
    /// The body does not decode as the opcode's type.
    Malformed {
        /// The operation whose body failed.
        opcode: u16,
        /// What bincode reported.
        reason: String,
    },
}

impl std::fmt::Display for MessageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MessageError::UnknownOpcode(opcode) => write!(f, "unknown opcode 0x{opcode:04x}"),
            MessageError::Malformed { opcode, reason } => {
                write!(f, "malformed body for opcode 0x{opcode:04x}: {reason}")
            }
        }
    }
}

impl std::error::Error for MessageError {}

/// Appends the `standard()` encoding of `value` to `out`.
pub fn encode_body<T: Encode>(value: &T, out: &mut BytesMut) {
    let mut writer = BytesWriter(out);
    // Encoding into memory fails only if a type's own Encode impl fails, which none of
    // ours do; the limit applies to decoding.
    bincode::encode_into_writer(value, &mut writer, BODY_CONFIG)
        .expect("encoding a protocol body into memory cannot fail");
}

/// The most bytes bincode counts against the decode limit for one byte of body.
///
/// bincode counts in-memory sizes, not wire sizes, and a list claims
/// `count × size_of::<T>()` before its first item is read. The densest list is ACK_BATCH's
/// reply: a success is one byte on the wire and a 72-byte `Option<ErrorBody>` in memory, so
/// a valid body can claim 72 bytes per byte. The `size_classes` tests check every list item
/// type against this factor.
pub const DECODE_CLAIM_BYTES_PER_BODY_BYTE_MAX: usize = 128;

/// Decodes `T` from `body`, ignoring trailing bytes (so that fields appended in a later
/// protocol revision do not break this decoder).
///
/// The byte limit handed to bincode is the smallest size class (powers of four from 4 KiB
/// to the frame ceiling) that holds [`DECODE_CLAIM_BYTES_PER_BODY_BYTE_MAX`] times the
/// body's length. Every valid body fits, and a length field can never make the decoder
/// allocate more than 512 times the body's own size (plus 4 KiB), so a 12-byte hostile
/// body costs kilobytes, not the 64 MiB ceiling.
pub fn decode_body<T: Decode<()>>(opcode: u16, body: &[u8]) -> Result<T, MessageError> {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * KIB;
    let claim_bytes_max = body
        .len()
        .saturating_mul(DECODE_CLAIM_BYTES_PER_BODY_BYTE_MAX);
    let decoded = match claim_bytes_max {
        0..=4096 => decode_limited::<T, { 4 * KIB }>(body),
        4097..=16_384 => decode_limited::<T, { 16 * KIB }>(body),
        16_385..=65_536 => decode_limited::<T, { 64 * KIB }>(body),
        65_537..=262_144 => decode_limited::<T, { 256 * KIB }>(body),
        262_145..=1_048_576 => decode_limited::<T, { MIB }>(body),
        1_048_577..=4_194_304 => decode_limited::<T, { 4 * MIB }>(body),
        4_194_305..=16_777_216 => decode_limited::<T, { 16 * MIB }>(body),
        _ => decode_limited::<T, { FRAME_BYTES_CEILING as usize }>(body),
    };
    decoded.map_err(|error| MessageError::Malformed {
        opcode,
        reason: error.to_string(),
    })
}

fn decode_limited<T: Decode<()>, const LIMIT_BYTES: usize>(
    body: &[u8],
) -> Result<T, bincode::error::DecodeError> {
    let config = bincode::config::standard().with_limit::<LIMIT_BYTES>();
    bincode::decode_from_slice(body, config).map(|(value, _consumed)| value)
}

struct BytesWriter<'a>(&'a mut BytesMut);

impl bincode::enc::write::Writer for BytesWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// A body with no fields (encodes to zero bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Empty {}

/// How the client proves who it is. Its `Debug` never shows a secret, so a credential that
/// ends up in a log line or a panic message leaks nothing.
#[derive(Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub enum Credentials {
    /// The broker's root token (super-admin, default project).
    RootToken(String),
    /// A project API key, `tf_<key id>_<secret>`.
    ApiKey(String),
    /// A user's email and password.
    Password {
        /// The user's email.
        email: String,
        /// The user's password.
        password: String,
    },
}

/// What stands in a `Debug` rendering for a secret.
pub const REDACTED: &str = "<redacted>";

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::RootToken(_) => f.debug_tuple("RootToken").field(&REDACTED).finish(),
            // The key id (between `tf_` and the next `_`) is public; the secret is not.
            Credentials::ApiKey(key) => {
                let key_id = key
                    .strip_prefix("tf_")
                    .and_then(|rest| rest.split('_').next());
                f.debug_tuple("ApiKey")
                    .field(&key_id.unwrap_or(REDACTED))
                    .finish()
            }
            Credentials::Password { email, .. } => f
                .debug_struct("Password")
                .field("email", email)
                .field("password", &REDACTED)
                .finish(),
        }
    }
}

/// HELLO request: must be the first request on a connection.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct HelloRequest {
    /// The protocol version the client speaks.
    pub protocol_version: u16,
    /// The client library's name, for logs.
    pub client_name: String,
    /// The client library's version, for logs.
    pub client_version: String,
    /// Who the client is.
    pub credentials: Credentials,
    /// The project to work in. API keys always work in their own project (a different
    /// id here is refused); the root token defaults to project 1; users must name one to
    /// use queues and jobs.
    pub project_id: Option<ProjectId>,
}

/// What kind of principal a session has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub enum PrincipalKind {
    /// The root token.
    Root,
    /// A project API key.
    ApiKey,
    /// A user of an organization.
    User,
}

/// Limits in force for this session.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct SessionLimits {
    /// Largest frame (`length` field value) the server accepts.
    pub frame_bytes_max: u32,
    /// Requests the client may have in flight; the server stops reading beyond it.
    pub requests_in_flight_max: u32,
    /// Largest job payload.
    pub payload_bytes_max: u32,
    /// Largest ACK result.
    pub result_bytes_max: u32,
    /// Most jobs in one ENQUEUE_BATCH.
    pub batch_jobs_max: u32,
    /// Most jobs one FETCH returns.
    pub fetch_jobs_max: u32,
    /// Longest FETCH long-poll.
    pub fetch_wait_ms_max: u32,
    /// The server closes a session idle (no request in flight, none received) this long.
    pub idle_timeout_ms: u32,
}

/// HELLO response.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct HelloResponse {
    /// The protocol version the session will use.
    pub protocol_version: u16,
    /// The server's version string.
    pub server_version: String,
    /// What kind of principal the session has.
    pub principal_kind: PrincipalKind,
    /// The project the session works in; 0 when none (a user that named none).
    pub project_id: ProjectId,
    /// Limits for this session.
    pub limits: SessionLimits,
    /// The organization of a user or API key; `None` for root.
    pub org_id: Option<OrgId>,
    /// The user, for a password session (so it can read or change itself); `None`
    /// otherwise.
    pub user_id: Option<UserId>,
}

/// PING response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Pong {
    /// The server's clock, ms since the Unix epoch.
    pub server_time_ms: u64,
}

/// A request naming one queue (GET, DELETE, PAUSE, RESUME, PURGE, STATS).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct QueueName {
    /// The queue.
    pub name: String,
}

/// QUEUE_CREATE and QUEUE_UPDATE request.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct QueueWrite {
    /// The queue.
    pub name: String,
    /// Settings to set; `None` fields take defaults (create) or stay (update).
    pub settings: QueueSettings,
}

/// QUEUE_LIST request.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct QueueListRequest {
    /// Start after this name (the previous page's `next_after`).
    pub after: Option<String>,
    /// Page size, at most `LIST_LIMIT_MAX`.
    pub limit: u32,
}

/// QUEUE_LIST response.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct QueueListResponse {
    /// Queues in name order.
    pub queues: Vec<QueueInfo>,
    /// Pass as `after` for the next page; `None` on the last page.
    pub next_after: Option<String>,
}

/// Response of bulk operations that work in bounded steps (PURGE, DEAD_RETRY, DEAD_DISCARD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct BulkResponse {
    /// Jobs changed by this request.
    pub affected: u64,
    /// Jobs still matching; repeat the request while this is not zero.
    pub remaining: u64,
}

/// QUEUE_STATS response.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct QueueStats {
    /// The queue.
    pub name: String,
    /// Jobs per state.
    pub counts: JobCounts,
    /// True while deliveries are stopped.
    pub paused: bool,
    /// How long the oldest ready job has waited, in ms.
    pub oldest_ready_age_ms: Option<u64>,
}

/// ENQUEUE request.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct EnqueueRequest {
    /// The job.
    pub job: NewJob,
}

/// ENQUEUE response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct EnqueueResponse {
    /// The new job's id.
    pub job_id: JobId,
    /// Its state (`ready`, `scheduled` or `blocked`; the existing job's when `duplicate`).
    pub state: JobState,
    /// True when a unique key matched: `job_id` is the existing job and nothing was created.
    pub duplicate: bool,
}

/// ENQUEUE_BATCH request: all jobs are stored, or none.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct EnqueueBatchRequest {
    /// The jobs, at most the session's `batch_jobs_max`.
    pub jobs: Vec<NewJob>,
}

/// ENQUEUE_BATCH response.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct EnqueueBatchResponse {
    /// The new jobs' ids, in request order.
    pub job_ids: Vec<JobId>,
    /// One flag per job: true when a unique key matched and the id is the existing job's.
    pub duplicates: Vec<bool>,
}

/// FETCH request.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct FetchRequest {
    /// Queues to take from, in order of preference.
    pub queues: Vec<String>,
    /// Most jobs to return (at least 1).
    pub max_jobs: u32,
    /// How long to wait for a first job when none is ready; 0 answers at once.
    pub wait_ms: u32,
    /// Lease duration; `None` takes the job's or queue's default.
    pub lease_ms: Option<u32>,
    /// The registered worker fetching (its executions name it, and it is released when
    /// the worker is lost); `None` for an anonymous consumer.
    pub worker_id: Option<WorkerId>,
    /// Empty to take from `queues` in strict order; otherwise one weight per queue
    /// (1..=`ASSIGNMENT_WEIGHT_MAX`), and each FETCH tries the queues in a random order
    /// where a queue comes first with probability proportional to its weight.
    pub weights: Vec<u32>,
}

/// FETCH response.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct FetchResponse {
    /// Leased jobs; empty when the wait ran out.
    pub jobs: Vec<LeasedJob>,
}

/// ACK request; also one item of ACK_BATCH.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct AckRequest {
    /// The job.
    pub job_id: JobId,
    /// The lease FETCH returned.
    pub lease_id: LeaseId,
    /// Result bytes to store with the job, at most the session's `result_bytes_max`.
    pub result: Option<Vec<u8>>,
}

/// ACK_BATCH request.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct AckBatchRequest {
    /// The acknowledgements, at most `ACK_BATCH_MAX`.
    pub acks: Vec<AckRequest>,
}

/// ACK_BATCH response: one outcome per ack, in request order.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct AckBatchResponse {
    /// `None` for an ack that succeeded, the error otherwise.
    pub results: Vec<Option<ErrorBody>>,
}

/// What a FAIL asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub enum Retry {
    /// Retry after the job's backoff, if attempts remain; otherwise dead.
    Backoff,
    /// Retry at this time (ms since the Unix epoch), if attempts remain.
    At(u64),
    /// Do not retry: the job is dead now.
    Never,
}

/// FAIL request.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct FailRequest {
    /// The job.
    pub job_id: JobId,
    /// The lease FETCH returned.
    pub lease_id: LeaseId,
    /// What went wrong, at most `ERROR_MESSAGE_BYTES_MAX` bytes.
    pub error: String,
    /// Whether and when to retry.
    pub retry: Retry,
    /// Details such as a stack trace, kept in the execution record, at most
    /// `ERROR_DETAILS_BYTES_MAX` bytes.
    pub error_details: Option<String>,
}

/// FAIL response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct FailResponse {
    /// `scheduled` for a retry, `dead` otherwise.
    pub state: JobState,
    /// When the retry runs.
    pub run_at_ms: Option<u64>,
    /// Attempts used so far.
    pub attempts: u32,
}

/// EXTEND request.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct ExtendRequest {
    /// The job.
    pub job_id: JobId,
    /// The lease FETCH returned.
    pub lease_id: LeaseId,
    /// The new lease runs this long from now.
    pub lease_ms: u32,
}

/// EXTEND response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct ExtendResponse {
    /// The new deadline, ms since the Unix epoch.
    pub lease_deadline_ms: u64,
    /// True when the job was cancelled: stop work and FAIL or ACK it.
    pub cancel_requested: bool,
}

/// A request naming one job (CANCEL, JOB_GET).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct JobRef {
    /// The job.
    pub job_id: JobId,
}

/// CANCEL response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct CancelResponse {
    /// `cancelled`, or `leased` with the cancel waiting for the lease holder.
    pub state: JobState,
    /// True when the job is leased and its holder will learn of the cancel.
    pub cancel_requested: bool,
}

/// JOB_LIST request.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct JobListRequest {
    /// The queue.
    pub queue: String,
    /// Only jobs in this state; `None` for all.
    pub state: Option<JobState>,
    /// Start after this job id (the previous page's `next_after`).
    pub after: Option<JobId>,
    /// Page size, at most `LIST_LIMIT_MAX`.
    pub limit: u32,
}

/// JOB_LIST and DEAD_LIST response.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct JobListResponse {
    /// Jobs in id (enqueue time) order.
    pub jobs: Vec<JobSummary>,
    /// Pass as `after` for the next page; `None` on the last page.
    pub next_after: Option<JobId>,
}

/// DEAD_LIST request.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct DeadListRequest {
    /// The queue.
    pub queue: String,
    /// Start after this job id.
    pub after: Option<JobId>,
    /// Page size, at most `LIST_LIMIT_MAX`.
    pub limit: u32,
}

/// DEAD_RETRY and DEAD_DISCARD request.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct DeadBulkRequest {
    /// The queue.
    pub queue: String,
    /// These dead jobs; empty for every dead job of the queue (up to `BULK_JOBS_MAX` per
    /// request — repeat while `remaining` is not zero).
    pub job_ids: Vec<JobId>,
}

macro_rules! operations {
    ($( $(#[$doc:meta])* $number:literal $variant:ident $name:literal ($request:ty) -> $response:ty ;)*) => {
        /// Every operation, by stable number.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u16)]
        pub enum Opcode {
            $( $(#[$doc])* $variant = $number, )*
        }

        impl Opcode {
            /// Every opcode in table order.
            pub const ALL: &'static [Opcode] = &[$(Opcode::$variant),*];

            /// The opcode for a number, if this version knows it.
            pub fn from_number(number: u16) -> Option<Opcode> {
                match number {
                    $( $number => Some(Opcode::$variant), )*
                    _ => None,
                }
            }

            /// The stable number on the wire.
            pub fn number(self) -> u16 {
                self as u16
            }

            /// The SCREAMING_CASE name used in `PROTOCOL.md`, logs and vector files.
            pub fn name(self) -> &'static str {
                match self {
                    $( Opcode::$variant => $name, )*
                }
            }
        }

        /// A decoded request body.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Request {
            $( $(#[$doc])* $variant($request), )*
        }

        impl Request {
            /// The request's opcode.
            pub fn opcode(&self) -> Opcode {
                match self {
                    $( Request::$variant(_) => Opcode::$variant, )*
                }
            }

            /// Appends the body's encoding to `out`.
            pub fn encode_body(&self, out: &mut BytesMut) {
                match self {
                    $( Request::$variant(body) => encode_body(body, out), )*
                }
            }

            /// Decodes the body of a request frame with opcode `opcode`.
            pub fn decode(opcode: u16, body: &[u8]) -> Result<Request, MessageError> {
                match Opcode::from_number(opcode) {
                    $( Some(Opcode::$variant) => decode_body(opcode, body).map(Request::$variant), )*
                    None => Err(MessageError::UnknownOpcode(opcode)),
                }
            }
        }

        /// A decoded successful response body.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Response {
            $( $(#[$doc])* $variant($response), )*
        }

        impl Response {
            /// The response's opcode.
            pub fn opcode(&self) -> Opcode {
                match self {
                    $( Response::$variant(_) => Opcode::$variant, )*
                }
            }

            /// Appends the body's encoding to `out`.
            pub fn encode_body(&self, out: &mut BytesMut) {
                match self {
                    $( Response::$variant(body) => encode_body(body, out), )*
                }
            }

            /// Decodes the body of a response frame with opcode `opcode`.
            pub fn decode(opcode: u16, body: &[u8]) -> Result<Response, MessageError> {
                match Opcode::from_number(opcode) {
                    $( Some(Opcode::$variant) => decode_body(opcode, body).map(Response::$variant), )*
                    None => Err(MessageError::UnknownOpcode(opcode)),
                }
            }
        }
    };
}

operations! {
    /// Opens a session; the only request (besides PING) accepted before the handshake.
    0x0001 Hello "HELLO" (HelloRequest) -> HelloResponse;
    /// Liveness check; allowed before the handshake.
    0x0002 Ping "PING" (Empty) -> Pong;
    /// Ends the session after in-flight requests are answered.
    0x0003 Bye "BYE" (Empty) -> Empty;
    /// Creates a queue.
    0x0100 QueueCreate "QUEUE_CREATE" (QueueWrite) -> QueueInfo;
    /// Reads a queue.
    0x0101 QueueGet "QUEUE_GET" (QueueName) -> QueueInfo;
    /// Lists queues by name.
    0x0102 QueueList "QUEUE_LIST" (QueueListRequest) -> QueueListResponse;
    /// Changes a queue's defaults.
    0x0103 QueueUpdate "QUEUE_UPDATE" (QueueWrite) -> QueueInfo;
    /// Deletes an empty queue.
    0x0104 QueueDelete "QUEUE_DELETE" (QueueName) -> Empty;
    /// Stops deliveries from a queue.
    0x0105 QueuePause "QUEUE_PAUSE" (QueueName) -> QueueInfo;
    /// Resumes deliveries from a queue.
    0x0106 QueueResume "QUEUE_RESUME" (QueueName) -> QueueInfo;
    /// Removes a queue's jobs that are not leased, in bounded steps.
    0x0107 QueuePurge "QUEUE_PURGE" (QueueName) -> BulkResponse;
    /// Counts a queue's jobs by state.
    0x0108 QueueStats "QUEUE_STATS" (QueueName) -> QueueStats;
    /// Enqueues one job.
    0x0200 Enqueue "ENQUEUE" (EnqueueRequest) -> EnqueueResponse;
    /// Enqueues many jobs atomically.
    0x0201 EnqueueBatch "ENQUEUE_BATCH" (EnqueueBatchRequest) -> EnqueueBatchResponse;
    /// Leases jobs from queues, waiting for them if asked.
    0x0202 Fetch "FETCH" (FetchRequest) -> FetchResponse;
    /// Acknowledges a job as done.
    0x0203 Ack "ACK" (AckRequest) -> Empty;
    /// Acknowledges many jobs.
    0x0204 AckBatch "ACK_BATCH" (AckBatchRequest) -> AckBatchResponse;
    /// Reports a failed attempt.
    0x0205 Fail "FAIL" (FailRequest) -> FailResponse;
    /// Extends a lease.
    0x0206 Extend "EXTEND" (ExtendRequest) -> ExtendResponse;
    /// Cancels a job.
    0x0207 Cancel "CANCEL" (JobRef) -> CancelResponse;
    /// Reads a job.
    0x0208 JobGet "JOB_GET" (JobRef) -> JobInfo;
    /// Lists a queue's jobs.
    0x0209 JobList "JOB_LIST" (JobListRequest) -> JobListResponse;
    /// Reports a running job's progress.
    0x020A Progress "PROGRESS" (ProgressRequest) -> Empty;
    /// Appends log lines to a running job's execution.
    0x020B Log "LOG" (LogRequest) -> LogResponse;
    /// Reads the last log lines of an execution, or follows new ones.
    0x020C LogTail "LOG_TAIL" (LogTailRequest) -> LogTail;
    /// Lists a job's executions.
    0x020D ExecutionList "EXECUTION_LIST" (ExecutionListRequest) -> ExecutionList;
    /// Reads a job's result and its parents' results.
    0x020E JobResults "JOB_RESULTS" (JobRef) -> JobResults;
    /// Lists a queue's dead jobs.
    0x0300 DeadList "DEAD_LIST" (DeadListRequest) -> JobListResponse;
    /// Makes dead jobs ready again with fresh attempts.
    0x0301 DeadRetry "DEAD_RETRY" (DeadBulkRequest) -> BulkResponse;
    /// Deletes dead jobs.
    0x0302 DeadDiscard "DEAD_DISCARD" (DeadBulkRequest) -> BulkResponse;
    /// Registers a worker process.
    0x0400 WorkerRegister "WORKER_REGISTER" (WorkerRegister) -> WorkerInfo;
    /// Tells the broker a worker is alive; the reply carries orders and assignments.
    0x0401 Heartbeat "HEARTBEAT" (Heartbeat) -> HeartbeatResponse;
    /// Lists a project's workers.
    0x0402 WorkerList "WORKER_LIST" (WorkerListRequest) -> WorkerList;
    /// Reads a worker.
    0x0403 WorkerGet "WORKER_GET" (WorkerRef) -> WorkerInfo;
    /// Orders a worker to stop fetching.
    0x0404 WorkerQuiet "WORKER_QUIET" (WorkerRef) -> WorkerInfo;
    /// Orders a worker to finish by a deadline and exit.
    0x0405 WorkerTerminate "WORKER_TERMINATE" (WorkerTerminate) -> WorkerInfo;
    /// Replaces a worker's queue assignments.
    0x0406 WorkerAssign "WORKER_ASSIGN" (WorkerAssign) -> WorkerInfo;
    /// Lists queue-worker assignments.
    0x0407 AssignmentList "ASSIGNMENT_LIST" (AssignmentListRequest) -> AssignmentList;
    /// Creates a cron schedule.
    0x0500 ScheduleCreate "SCHEDULE_CREATE" (ScheduleCreate) -> ScheduleInfo;
    /// Reads a schedule.
    0x0501 ScheduleGet "SCHEDULE_GET" (ScheduleRef) -> ScheduleInfo;
    /// Lists a project's schedules.
    0x0502 ScheduleList "SCHEDULE_LIST" (ScheduleListRequest) -> ScheduleList;
    /// Changes a schedule.
    0x0503 ScheduleUpdate "SCHEDULE_UPDATE" (ScheduleUpdate) -> ScheduleInfo;
    /// Deletes a schedule.
    0x0504 ScheduleDelete "SCHEDULE_DELETE" (ScheduleRef) -> Empty;
    /// Stops a schedule from firing.
    0x0505 SchedulePause "SCHEDULE_PAUSE" (ScheduleRef) -> ScheduleInfo;
    /// Lets a paused schedule fire again, from its next fire time after now.
    0x0506 ScheduleResume "SCHEDULE_RESUME" (ScheduleRef) -> ScheduleInfo;
    /// Creates an organization with its subscription (root only).
    0x0600 OrgCreate "ORG_CREATE" (OrgCreate) -> Organization;
    /// Reads an organization.
    0x0601 OrgGet "ORG_GET" (OrgRef) -> Organization;
    /// Lists organizations the principal may see.
    0x0602 OrgList "ORG_LIST" (IdPage) -> OrgList;
    /// Renames an organization or changes its status.
    0x0603 OrgUpdate "ORG_UPDATE" (OrgUpdate) -> Organization;
    /// Deletes an organization that owns no project (root only).
    0x0604 OrgDelete "ORG_DELETE" (OrgRef) -> Empty;
    /// Creates a user.
    0x0610 UserCreate "USER_CREATE" (UserCreate) -> User;
    /// Reads a user.
    0x0611 UserGet "USER_GET" (UserRef) -> User;
    /// Lists an organization's users.
    0x0612 UserList "USER_LIST" (OrgPage) -> UserList;
    /// Changes a user's email or role.
    0x0613 UserUpdate "USER_UPDATE" (UserUpdate) -> User;
    /// Disables or enables a user.
    0x0614 UserDisable "USER_DISABLE" (UserDisable) -> User;
    /// Sets a user's password.
    0x0615 UserSetPassword "USER_SET_PASSWORD" (UserSetPassword) -> Empty;
    /// Reads an organization's subscription.
    0x0620 SubscriptionGet "SUBSCRIPTION_GET" (OrgRef) -> Subscription;
    /// Sets an organization's plan, status and limits.
    0x0621 SubscriptionSet "SUBSCRIPTION_SET" (SubscriptionSet) -> Subscription;
    /// Creates a project.
    0x0630 ProjectCreate "PROJECT_CREATE" (ProjectCreate) -> Project;
    /// Reads a project.
    0x0631 ProjectGet "PROJECT_GET" (ProjectRef) -> Project;
    /// Lists an organization's projects.
    0x0632 ProjectList "PROJECT_LIST" (OrgPage) -> ProjectList;
    /// Renames a project.
    0x0633 ProjectUpdate "PROJECT_UPDATE" (ProjectUpdate) -> Project;
    /// Deletes a project that owns no queue.
    0x0634 ProjectDelete "PROJECT_DELETE" (ProjectRef) -> Empty;
    /// Creates an API key; the only answer that carries its secret.
    0x0640 ApiKeyCreate "APIKEY_CREATE" (ApiKeyCreate) -> ApiKeySecret;
    /// Lists a project's API keys (never their secrets).
    0x0641 ApiKeyList "APIKEY_LIST" (ProjectPage) -> ApiKeyList;
    /// Revokes an API key and closes its live sessions.
    0x0642 ApiKeyRevoke "APIKEY_REVOKE" (ApiKeyRef) -> ApiKeyInfo;
    /// Gives an API key a new secret; the old one works for a grace period.
    0x0643 ApiKeyRotate "APIKEY_ROTATE" (ApiKeyRotate) -> ApiKeySecret;
}
