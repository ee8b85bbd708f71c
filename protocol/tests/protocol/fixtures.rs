//! The values behind the golden vectors: at least one request and one response per opcode
//! and one error frame per error code.
//!
//! The values are chosen to exercise the encoding rules a client author must get right:
//! options both `None` and `Some`, empty and non-empty vectors, negative priorities (zigzag),
//! varints of one, three, five and nine bytes (values below 251, at least 251, at least
//! 65 536, at least 2^32) and every enum the messages carry.
//!
//! Both matches below are exhaustive, so adding an opcode or an error code without adding its
//! vectors does not compile.

use bytes::BytesMut;
use taskforge_protocol::frame::write_frame_header;
use taskforge_protocol::limits::*;
use taskforge_protocol::*;

use crate::dependency_fixtures::{dependency_error_vectors, dependency_vectors};
use crate::schedule_fixtures::{schedule_error_vectors, schedule_vectors};
use crate::tenancy_fixtures::{
    api_key_secret, tenancy_error_vectors, tenancy_vectors, KEY_ID_PRODUCER, ORG_ACME, ORG_GLOBEX,
    PROJECT_BILLING, PROJECT_DEFAULT, PROJECT_INDEXER,
};
use crate::worker_fixtures::{
    progress, running_execution, succeeded_execution, worker_error_vectors, worker_vectors,
    STACK_TRACE, WORKER_BILLING,
};

/// One golden frame and the value it encodes.
pub struct Vector {
    /// File stem inside `protocol/vectors/`, e.g. `0x0200_ENQUEUE.request.minimal`.
    pub name: String,
    /// The frame header's request id.
    pub request_id: u32,
    /// The decoded body.
    pub message: Message,
}

/// A decoded frame body, by frame kind.
pub enum Message {
    /// Kind 0.
    Request(Request),
    /// Kind 1.
    Response(Response),
    /// Kind 2, with the opcode the error frame carries (0 for connection-level errors).
    Error {
        /// The header's opcode.
        opcode: u16,
        /// The body.
        body: ErrorBody,
    },
}

impl Vector {
    /// The vector's file name.
    pub fn file_name(&self) -> String {
        format!("{}.hex", self.name)
    }

    /// The frame kind.
    pub fn kind(&self) -> FrameKind {
        match self.message {
            Message::Request(_) => FrameKind::Request,
            Message::Response(_) => FrameKind::Response,
            Message::Error { .. } => FrameKind::Error,
        }
    }

    /// The header's opcode.
    pub fn opcode(&self) -> u16 {
        match &self.message {
            Message::Request(request) => request.opcode().number(),
            Message::Response(response) => response.opcode().number(),
            Message::Error { opcode, .. } => *opcode,
        }
    }

    /// The encoded body.
    pub fn body_bytes(&self) -> Vec<u8> {
        let mut body = BytesMut::new();
        match &self.message {
            Message::Request(request) => request.encode_body(&mut body),
            Message::Response(response) => response.encode_body(&mut body),
            Message::Error { body: error, .. } => encode_body(error, &mut body),
        }
        body.to_vec()
    }

    /// The complete frame: header and body.
    pub fn frame_bytes(&self) -> Vec<u8> {
        let body = self.body_bytes();
        let mut frame = BytesMut::new();
        write_frame_header(
            self.kind(),
            self.opcode(),
            self.request_id,
            body.len(),
            &mut frame,
        )
        .expect("vector frames are small");
        frame.extend_from_slice(&body);
        frame.to_vec()
    }
}

/// Every vector: per opcode in table order (with the dependency, unique-key, expiry and
/// flow-limit variants after each operation's own), then per error code in numeric order,
/// then the further error frames of tenancy (auth, quotas, rate limits), of workers and
/// executions, and of dependencies.
pub fn all_vectors() -> Vec<Vector> {
    let mut vectors = Vec::new();
    for opcode in Opcode::ALL {
        vectors.extend(opcode_vectors(*opcode));
        vectors.extend(dependency_vectors(*opcode));
    }
    for code in ErrorCode::ALL {
        vectors.push(error_vector(code));
    }
    vectors.extend(tenancy_error_vectors());
    vectors.extend(worker_error_vectors());
    vectors.extend(dependency_error_vectors());
    vectors.extend(schedule_error_vectors());
    vectors
}

/// 2025-11-28T14:00:00Z in ms since the Unix epoch: a nine-byte varint (`fd` + u64 LE).
pub const NOW_MS: u64 = 1_764_338_400_000;

/// A UUID v7-shaped job id whose last byte is `last`.
pub fn job_id(last: u8) -> JobId {
    JobId([
        0x01, 0x9a, 0xca, 0xf6, 0x6c, 0x00, 0x7c, 0x3e, 0x9d, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc,
        last,
    ])
}

fn request_name(opcode: Opcode, variant: Option<&str>, direction: &str) -> String {
    let mut name = format!("{:#06x}_{}.{direction}", opcode.number(), opcode.name());
    if let Some(variant) = variant {
        name.push('.');
        name.push_str(variant);
    }
    name
}

pub fn request(request_id: u32, variant: Option<&str>, request: Request) -> Vector {
    Vector {
        name: request_name(request.opcode(), variant, "request"),
        request_id,
        message: Message::Request(request),
    }
}

pub fn response(request_id: u32, variant: Option<&str>, response: Response) -> Vector {
    Vector {
        name: request_name(response.opcode(), variant, "response"),
        request_id,
        message: Message::Response(response),
    }
}

fn text(value: &str) -> String {
    value.to_owned()
}

fn pairs(entries: &[(&str, &str)]) -> Vec<(String, String)> {
    entries
        .iter()
        .map(|(key, value)| (text(key), text(value)))
        .collect()
}

/// A payload of `length` bytes counting up from 0 (wrapping), so a reader can spot an
/// off-by-one at a glance.
pub fn counting_payload(length: usize) -> Vec<u8> {
    (0..length).map(|index| index as u8).collect()
}

fn default_backoff() -> Backoff {
    Backoff {
        initial_ms: BACKOFF_INITIAL_MS_DEFAULT,
        factor_percent: BACKOFF_FACTOR_PERCENT_DEFAULT,
        max_ms: BACKOFF_MAX_MS_DEFAULT,
        jitter_percent: BACKOFF_JITTER_PERCENT_DEFAULT,
    }
}

fn custom_backoff() -> Backoff {
    Backoff {
        initial_ms: 500,
        factor_percent: 150,
        max_ms: 600_000,
        jitter_percent: 10,
    }
}

fn counts() -> JobCounts {
    JobCounts {
        scheduled: 3,
        blocked: 0,
        ready: 70_000,
        leased: 32,
        succeeded: 5_000_000_000,
        dead: 251,
        cancelled: 1,
        expired: 0,
    }
}

fn emails_queue(paused: bool) -> QueueInfo {
    QueueInfo {
        name: text("emails"),
        defaults: QueueDefaults {
            priority: -3,
            max_attempts: 25,
            backoff: custom_backoff(),
            lease_ms: 60_000,
            retention_ms: None,
            in_flight_max: None,
            deliveries_per_second: None,
        },
        paused,
        created_at_ms: NOW_MS - 86_400_000,
        counts: counts(),
    }
}

fn reports_queue() -> QueueInfo {
    QueueInfo {
        name: text("reports.daily"),
        defaults: QueueDefaults {
            priority: 0,
            max_attempts: MAX_ATTEMPTS_DEFAULT,
            backoff: default_backoff(),
            lease_ms: LEASE_MS_DEFAULT,
            retention_ms: None,
            in_flight_max: None,
            deliveries_per_second: None,
        },
        paused: false,
        created_at_ms: NOW_MS - 3_600_000,
        counts: JobCounts::default(),
    }
}

fn full_new_job() -> NewJob {
    NewJob {
        queue: text("emails"),
        payload: br#"{"to":"ana@example.com","template":"welcome"}"#.to_vec(),
        priority: Some(-5),
        run_at_ms: None,
        delay_ms: Some(90_000),
        max_attempts: Some(3),
        backoff: Some(custom_backoff()),
        lease_ms: Some(120_000),
        metadata: pairs(&[("tenant", "acme"), ("trace_id", "4bf92f3577b34da6")]),
        ..NewJob::default()
    }
}

fn minimal_new_job() -> NewJob {
    NewJob {
        queue: text("emails"),
        payload: b"hi".to_vec(),
        ..NewJob::default()
    }
}

fn leased_job(last: u8, lease_id: u64, attempt: u32) -> LeasedJob {
    LeasedJob {
        job_id: job_id(last),
        lease_id,
        queue: text("emails"),
        payload: counting_payload(300),
        attempt,
        max_attempts: 25,
        priority: -200,
        lease_deadline_ms: NOW_MS + 60_000,
        created_at_ms: NOW_MS - 5_000,
        metadata: pairs(&[("tenant", "acme")]),
    }
}

fn summary(last: u8, state: JobState, last_error: Option<&str>) -> JobSummary {
    JobSummary {
        job_id: job_id(last),
        queue: text("emails"),
        state,
        priority: -5,
        attempts: 3,
        max_attempts: 3,
        created_at_ms: NOW_MS - 600_000,
        run_at_ms: NOW_MS - 590_000,
        updated_at_ms: NOW_MS - 1_000,
        last_error: last_error.map(text),
    }
}

fn lease_lost(job: u8) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::LeaseLost,
        format!("lease is not the current lease of job {}", job_id(job)),
    )
}

/// The session limits a server with default settings announces.
fn default_session_limits() -> SessionLimits {
    SessionLimits {
        frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
        requests_in_flight_max: REQUESTS_IN_FLIGHT_MAX_DEFAULT,
        payload_bytes_max: PAYLOAD_BYTES_MAX_DEFAULT,
        result_bytes_max: RESULT_BYTES_MAX_DEFAULT,
        batch_jobs_max: BATCH_JOBS_MAX_DEFAULT,
        fetch_jobs_max: FETCH_JOBS_MAX,
        fetch_wait_ms_max: FETCH_WAIT_MS_MAX,
        idle_timeout_ms: 300_000,
    }
}

/// The vectors of one operation. Request ids are fixed per vector so that adding a vector
/// never changes another file; a response carries the id of the request it answers.
fn opcode_vectors(opcode: Opcode) -> Vec<Vector> {
    match opcode {
        Opcode::Hello => vec![
            request(
                1,
                None,
                Request::Hello(HelloRequest {
                    protocol_version: PROTOCOL_VERSION,
                    client_name: text("taskforge-py"),
                    client_version: text("0.1.0"),
                    credentials: Credentials::RootToken(text("root-7f3a9c")),
                    project_id: None,
                }),
            ),
            request(
                1,
                Some("api_key"),
                Request::Hello(HelloRequest {
                    protocol_version: PROTOCOL_VERSION,
                    client_name: text("taskforge-go"),
                    client_version: text("1.4.2"),
                    credentials: Credentials::ApiKey(api_key_secret(KEY_ID_PRODUCER, 0x5c)),
                    project_id: None,
                }),
            ),
            request(
                1,
                Some("password"),
                Request::Hello(HelloRequest {
                    protocol_version: PROTOCOL_VERSION,
                    client_name: text("taskforge-cli"),
                    client_version: text("0.1.0"),
                    credentials: Credentials::Password {
                        email: text("ops@example.com"),
                        password: text("correct horse battery"),
                    },
                    project_id: Some(PROJECT_BILLING),
                }),
            ),
            response(
                1,
                None,
                Response::Hello(HelloResponse {
                    protocol_version: PROTOCOL_VERSION,
                    server_version: text("0.1.0"),
                    principal_kind: PrincipalKind::Root,
                    project_id: PROJECT_DEFAULT,
                    limits: default_session_limits(),
                    org_id: None,
                    user_id: None,
                }),
            ),
            response(
                1,
                Some("api_key"),
                Response::Hello(HelloResponse {
                    protocol_version: PROTOCOL_VERSION,
                    server_version: text("0.1.0"),
                    principal_kind: PrincipalKind::ApiKey,
                    project_id: PROJECT_INDEXER,
                    limits: SessionLimits {
                        frame_bytes_max: 1_048_576,
                        requests_in_flight_max: 64,
                        payload_bytes_max: 65_536,
                        result_bytes_max: 16_384,
                        batch_jobs_max: 100,
                        fetch_jobs_max: 100,
                        fetch_wait_ms_max: 30_000,
                        idle_timeout_ms: 60_000,
                    },
                    org_id: Some(ORG_ACME),
                    user_id: None,
                }),
            ),
            response(
                1,
                Some("password"),
                Response::Hello(HelloResponse {
                    protocol_version: PROTOCOL_VERSION,
                    server_version: text("0.1.0"),
                    principal_kind: PrincipalKind::User,
                    project_id: PROJECT_BILLING,
                    limits: default_session_limits(),
                    org_id: Some(ORG_ACME),
                    user_id: Some(42),
                }),
            ),
            response(
                1,
                Some("user_no_project"),
                Response::Hello(HelloResponse {
                    protocol_version: PROTOCOL_VERSION,
                    server_version: text("0.1.0"),
                    principal_kind: PrincipalKind::User,
                    project_id: 0,
                    // Globex is on the free plan: its payload limit is the plan's.
                    limits: SessionLimits {
                        payload_bytes_max: 65_536,
                        ..default_session_limits()
                    },
                    org_id: Some(ORG_GLOBEX),
                    user_id: Some(300),
                }),
            ),
        ],
        Opcode::Ping => vec![
            request(2, None, Request::Ping(Empty {})),
            response(
                2,
                None,
                Response::Ping(Pong {
                    server_time_ms: NOW_MS,
                }),
            ),
        ],
        Opcode::Bye => vec![
            request(0xffff_fffe, None, Request::Bye(Empty {})),
            response(0xffff_fffe, None, Response::Bye(Empty {})),
        ],
        Opcode::QueueCreate => vec![
            request(
                0x100,
                None,
                Request::QueueCreate(QueueWrite {
                    name: text("emails"),
                    settings: QueueSettings {
                        priority: Some(-3),
                        max_attempts: Some(25),
                        backoff: Some(custom_backoff()),
                        lease_ms: Some(60_000),
                        ..QueueSettings::default()
                    },
                }),
            ),
            request(
                0x101,
                Some("defaults"),
                Request::QueueCreate(QueueWrite {
                    name: text("reports.daily"),
                    settings: QueueSettings::default(),
                }),
            ),
            response(0x100, None, Response::QueueCreate(emails_queue(false))),
            response(
                0x101,
                Some("defaults"),
                Response::QueueCreate(reports_queue()),
            ),
        ],
        Opcode::QueueGet => vec![
            request(
                0x102,
                None,
                Request::QueueGet(QueueName {
                    name: text("emails"),
                }),
            ),
            response(0x102, None, Response::QueueGet(emails_queue(false))),
        ],
        Opcode::QueueList => vec![
            request(
                0x103,
                None,
                Request::QueueList(QueueListRequest {
                    after: None,
                    limit: 2,
                }),
            ),
            request(
                0x104,
                Some("next_page"),
                Request::QueueList(QueueListRequest {
                    after: Some(text("reports.daily")),
                    limit: LIST_LIMIT_MAX,
                }),
            ),
            response(
                0x103,
                None,
                Response::QueueList(QueueListResponse {
                    queues: vec![emails_queue(false), reports_queue()],
                    next_after: Some(text("reports.daily")),
                }),
            ),
            response(
                0x104,
                Some("last_page"),
                Response::QueueList(QueueListResponse {
                    queues: Vec::new(),
                    next_after: None,
                }),
            ),
        ],
        Opcode::QueueUpdate => vec![
            request(
                0x105,
                None,
                Request::QueueUpdate(QueueWrite {
                    name: text("emails"),
                    settings: QueueSettings {
                        priority: Some(10),
                        max_attempts: None,
                        backoff: None,
                        lease_ms: Some(300_000),
                        ..QueueSettings::default()
                    },
                }),
            ),
            response(
                0x105,
                None,
                Response::QueueUpdate(QueueInfo {
                    defaults: QueueDefaults {
                        priority: 10,
                        lease_ms: 300_000,
                        ..emails_queue(false).defaults
                    },
                    ..emails_queue(false)
                }),
            ),
        ],
        Opcode::QueueDelete => vec![
            request(
                0x106,
                None,
                Request::QueueDelete(QueueName {
                    name: text("old-queue"),
                }),
            ),
            response(0x106, None, Response::QueueDelete(Empty {})),
        ],
        Opcode::QueuePause => vec![
            request(
                0x107,
                None,
                Request::QueuePause(QueueName {
                    name: text("emails"),
                }),
            ),
            response(0x107, None, Response::QueuePause(emails_queue(true))),
        ],
        Opcode::QueueResume => vec![
            request(
                0x108,
                None,
                Request::QueueResume(QueueName {
                    name: text("emails"),
                }),
            ),
            response(0x108, None, Response::QueueResume(emails_queue(false))),
        ],
        Opcode::QueuePurge => vec![
            request(
                0x109,
                None,
                Request::QueuePurge(QueueName {
                    name: text("emails"),
                }),
            ),
            response(
                0x109,
                None,
                Response::QueuePurge(BulkResponse {
                    affected: u64::from(BULK_JOBS_MAX),
                    remaining: 70_000,
                }),
            ),
        ],
        Opcode::QueueStats => vec![
            request(
                0x10a,
                None,
                Request::QueueStats(QueueName {
                    name: text("emails"),
                }),
            ),
            response(
                0x10a,
                None,
                Response::QueueStats(QueueStats {
                    name: text("emails"),
                    counts: counts(),
                    paused: false,
                    oldest_ready_age_ms: Some(1_500),
                }),
            ),
            response(
                0x10b,
                Some("idle"),
                Response::QueueStats(QueueStats {
                    name: text("reports.daily"),
                    counts: JobCounts::default(),
                    paused: true,
                    oldest_ready_age_ms: None,
                }),
            ),
        ],
        Opcode::Enqueue => vec![
            request(
                0x200,
                None,
                Request::Enqueue(EnqueueRequest {
                    job: full_new_job(),
                }),
            ),
            request(
                0x201,
                Some("minimal"),
                Request::Enqueue(EnqueueRequest {
                    job: minimal_new_job(),
                }),
            ),
            request(
                0x202,
                Some("run_at"),
                Request::Enqueue(EnqueueRequest {
                    job: NewJob {
                        queue: text("reports.daily"),
                        payload: counting_payload(300),
                        priority: Some(i32::MIN),
                        run_at_ms: Some(NOW_MS + 3_600_000),
                        delay_ms: Some(5),
                        max_attempts: Some(MAX_ATTEMPTS_CEILING),
                        backoff: Some(default_backoff()),
                        lease_ms: Some(LEASE_MS_MAX),
                        metadata: Vec::new(),
                        ..NewJob::default()
                    },
                }),
            ),
            response(
                0x200,
                None,
                Response::Enqueue(EnqueueResponse {
                    job_id: job_id(1),
                    state: JobState::Scheduled,
                    duplicate: false,
                }),
            ),
            response(
                0x201,
                Some("minimal"),
                Response::Enqueue(EnqueueResponse {
                    job_id: job_id(2),
                    state: JobState::Ready,
                    duplicate: false,
                }),
            ),
        ],
        Opcode::EnqueueBatch => vec![
            request(
                0x210,
                None,
                Request::EnqueueBatch(EnqueueBatchRequest {
                    jobs: vec![
                        minimal_new_job(),
                        full_new_job(),
                        NewJob {
                            queue: text("reports.daily"),
                            payload: counting_payload(300),
                            priority: Some(i32::MAX),
                            ..NewJob::default()
                        },
                    ],
                }),
            ),
            response(
                0x210,
                None,
                Response::EnqueueBatch(EnqueueBatchResponse {
                    job_ids: vec![job_id(3), job_id(4), job_id(5)],
                    duplicates: vec![false; 3],
                }),
            ),
        ],
        Opcode::Fetch => vec![
            request(
                0x220,
                None,
                Request::Fetch(FetchRequest {
                    queues: vec![text("emails"), text("reports.daily")],
                    max_jobs: 32,
                    wait_ms: 30_000,
                    lease_ms: Some(60_000),
                    worker_id: None,
                    weights: Vec::new(),
                }),
            ),
            request(
                0x221,
                Some("no_wait"),
                Request::Fetch(FetchRequest {
                    queues: vec![text("emails")],
                    max_jobs: 1,
                    wait_ms: 0,
                    lease_ms: None,
                    worker_id: None,
                    weights: Vec::new(),
                }),
            ),
            request(
                0x222,
                Some("worker"),
                Request::Fetch(FetchRequest {
                    queues: vec![text("emails"), text("reports.daily")],
                    max_jobs: 8,
                    wait_ms: 30_000,
                    lease_ms: None,
                    worker_id: Some(WORKER_BILLING),
                    weights: vec![3, 1],
                }),
            ),
            request(
                0x223,
                Some("weights"),
                Request::Fetch(FetchRequest {
                    queues: vec![text("emails"), text("reports.daily"), text("bulk")],
                    max_jobs: 1,
                    wait_ms: 0,
                    lease_ms: Some(LEASE_MS_MIN),
                    worker_id: Some(70_000),
                    weights: vec![ASSIGNMENT_WEIGHT_MAX, 251, 1],
                }),
            ),
            response(
                0x220,
                None,
                Response::Fetch(FetchResponse {
                    jobs: vec![leased_job(6, 300, 1), leased_job(7, 4_294_967_296, 2)],
                }),
            ),
            response(
                0x221,
                Some("empty"),
                Response::Fetch(FetchResponse { jobs: Vec::new() }),
            ),
        ],
        Opcode::Ack => vec![
            request(
                0x230,
                None,
                Request::Ack(AckRequest {
                    job_id: job_id(6),
                    lease_id: 300,
                    result: Some(br#"{"sent":true}"#.to_vec()),
                }),
            ),
            request(
                0x231,
                Some("no_result"),
                Request::Ack(AckRequest {
                    job_id: job_id(7),
                    lease_id: 4_294_967_296,
                    result: None,
                }),
            ),
            response(0x230, None, Response::Ack(Empty {})),
        ],
        Opcode::AckBatch => vec![
            request(
                0x240,
                None,
                Request::AckBatch(AckBatchRequest {
                    acks: vec![
                        AckRequest {
                            job_id: job_id(6),
                            lease_id: 300,
                            result: None,
                        },
                        AckRequest {
                            job_id: job_id(7),
                            lease_id: 70_000,
                            result: Some(vec![1]),
                        },
                        AckRequest {
                            job_id: job_id(8),
                            lease_id: 250,
                            result: Some(Vec::new()),
                        },
                    ],
                }),
            ),
            response(
                0x240,
                None,
                Response::AckBatch(AckBatchResponse {
                    results: vec![None, Some(lease_lost(7)), None],
                }),
            ),
        ],
        Opcode::Fail => vec![
            request(
                0x250,
                None,
                Request::Fail(FailRequest {
                    job_id: job_id(6),
                    lease_id: 300,
                    error: text("smtp: connection refused"),
                    retry: Retry::Backoff,
                    error_details: None,
                }),
            ),
            request(
                0x251,
                Some("retry_at"),
                Request::Fail(FailRequest {
                    job_id: job_id(7),
                    lease_id: 70_000,
                    error: text("rate limited upstream"),
                    retry: Retry::At(NOW_MS + 120_000),
                    error_details: None,
                }),
            ),
            request(
                0x252,
                Some("never"),
                Request::Fail(FailRequest {
                    job_id: job_id(8),
                    lease_id: 251,
                    error: String::new(),
                    retry: Retry::Never,
                    error_details: None,
                }),
            ),
            request(
                0x253,
                Some("details"),
                Request::Fail(FailRequest {
                    job_id: job_id(7),
                    lease_id: 250,
                    error: text("smtp: connection refused"),
                    retry: Retry::Backoff,
                    error_details: Some(text(STACK_TRACE)),
                }),
            ),
            response(
                0x250,
                None,
                Response::Fail(FailResponse {
                    state: JobState::Scheduled,
                    run_at_ms: Some(NOW_MS + 1_000),
                    attempts: 1,
                }),
            ),
            response(
                0x252,
                Some("dead"),
                Response::Fail(FailResponse {
                    state: JobState::Dead,
                    run_at_ms: None,
                    attempts: 3,
                }),
            ),
        ],
        Opcode::Extend => vec![
            request(
                0x260,
                None,
                Request::Extend(ExtendRequest {
                    job_id: job_id(6),
                    lease_id: 300,
                    lease_ms: 60_000,
                }),
            ),
            response(
                0x260,
                None,
                Response::Extend(ExtendResponse {
                    lease_deadline_ms: NOW_MS + 60_000,
                    cancel_requested: false,
                }),
            ),
            response(
                0x261,
                Some("cancel_requested"),
                Response::Extend(ExtendResponse {
                    lease_deadline_ms: NOW_MS + 90_000,
                    cancel_requested: true,
                }),
            ),
        ],
        Opcode::Cancel => vec![
            request(0x270, None, Request::Cancel(JobRef { job_id: job_id(1) })),
            response(
                0x270,
                None,
                Response::Cancel(CancelResponse {
                    state: JobState::Cancelled,
                    cancel_requested: false,
                }),
            ),
            response(
                0x271,
                Some("leased"),
                Response::Cancel(CancelResponse {
                    state: JobState::Leased,
                    cancel_requested: true,
                }),
            ),
        ],
        Opcode::JobGet => vec![
            request(0x280, None, Request::JobGet(JobRef { job_id: job_id(6) })),
            response(
                0x280,
                None,
                Response::JobGet(JobInfo {
                    job_id: job_id(6),
                    queue: text("emails"),
                    state: JobState::Succeeded,
                    priority: -200,
                    payload: counting_payload(300),
                    metadata: pairs(&[("tenant", "acme")]),
                    attempts: 2,
                    max_attempts: 25,
                    backoff: custom_backoff(),
                    lease_ms: 60_000,
                    created_at_ms: NOW_MS - 5_000,
                    run_at_ms: NOW_MS - 4_000,
                    updated_at_ms: NOW_MS,
                    finished_at_ms: Some(NOW_MS),
                    lease_deadline_ms: None,
                    cancel_requested: false,
                    last_error: Some(text("smtp: connection refused")),
                    result: Some(br#"{"sent":true}"#.to_vec()),
                    executions: 2,
                    latest_execution: Some(Box::new(succeeded_execution())),
                    progress: Some(progress(100, "done")),
                    parents: Vec::new(),
                    parents_remaining: 0,
                    on_parent_failure: ParentFailure::Cancel,
                    children: Vec::new(),
                    unique_key: None,
                    expires_at_ms: None,
                }),
            ),
            response(
                0x281,
                Some("leased"),
                Response::JobGet(JobInfo {
                    job_id: job_id(7),
                    queue: text("emails"),
                    state: JobState::Leased,
                    priority: 0,
                    payload: Vec::new(),
                    metadata: Vec::new(),
                    attempts: 1,
                    max_attempts: MAX_ATTEMPTS_DEFAULT,
                    backoff: default_backoff(),
                    lease_ms: LEASE_MS_DEFAULT,
                    created_at_ms: NOW_MS - 1_000,
                    run_at_ms: NOW_MS - 1_000,
                    updated_at_ms: NOW_MS - 10,
                    finished_at_ms: None,
                    lease_deadline_ms: Some(NOW_MS + 29_990),
                    cancel_requested: true,
                    last_error: None,
                    result: None,
                    executions: 1,
                    latest_execution: Some(Box::new(ExecutionInfo {
                        execution: 1,
                        attempt: 1,
                        lease_id: 4_294_967_296,
                        leased_at_ms: NOW_MS - 10,
                        lease_deadline_ms: NOW_MS + 29_990,
                        ..running_execution()
                    })),
                    progress: Some(ProgressInfo {
                        execution: 1,
                        ..progress(40, "rendered 4 of 10 pages")
                    }),
                    parents: Vec::new(),
                    parents_remaining: 0,
                    on_parent_failure: ParentFailure::Cancel,
                    children: Vec::new(),
                    unique_key: None,
                    expires_at_ms: None,
                }),
            ),
            response(
                0x282,
                Some("never_delivered"),
                Response::JobGet(JobInfo {
                    job_id: job_id(9),
                    queue: text("reports.daily"),
                    state: JobState::Ready,
                    priority: 0,
                    payload: b"{}".to_vec(),
                    metadata: Vec::new(),
                    attempts: 0,
                    max_attempts: MAX_ATTEMPTS_DEFAULT,
                    backoff: default_backoff(),
                    lease_ms: LEASE_MS_DEFAULT,
                    created_at_ms: NOW_MS - 100,
                    run_at_ms: NOW_MS - 100,
                    updated_at_ms: NOW_MS - 100,
                    finished_at_ms: None,
                    lease_deadline_ms: None,
                    cancel_requested: false,
                    last_error: None,
                    result: None,
                    executions: 0,
                    latest_execution: None,
                    progress: None,
                    parents: Vec::new(),
                    parents_remaining: 0,
                    on_parent_failure: ParentFailure::Cancel,
                    children: Vec::new(),
                    unique_key: None,
                    expires_at_ms: None,
                }),
            ),
        ],
        Opcode::JobList => vec![
            request(
                0x290,
                None,
                Request::JobList(JobListRequest {
                    queue: text("emails"),
                    state: None,
                    after: None,
                    limit: 2,
                }),
            ),
            request(
                0x291,
                Some("filtered"),
                Request::JobList(JobListRequest {
                    queue: text("emails"),
                    state: Some(JobState::Expired),
                    after: Some(job_id(2)),
                    limit: 500,
                }),
            ),
            response(
                0x290,
                None,
                Response::JobList(JobListResponse {
                    jobs: vec![
                        summary(1, JobState::Scheduled, Some("timeout")),
                        summary(2, JobState::Blocked, None),
                    ],
                    next_after: Some(job_id(2)),
                }),
            ),
            response(
                0x291,
                Some("last_page"),
                Response::JobList(JobListResponse {
                    jobs: Vec::new(),
                    next_after: None,
                }),
            ),
        ],
        Opcode::DeadList => vec![
            request(
                0x300,
                None,
                Request::DeadList(DeadListRequest {
                    queue: text("emails"),
                    after: Some(job_id(1)),
                    limit: 1_000,
                }),
            ),
            response(
                0x300,
                None,
                Response::DeadList(JobListResponse {
                    jobs: vec![summary(8, JobState::Dead, Some("smtp: mailbox full"))],
                    next_after: None,
                }),
            ),
        ],
        Opcode::DeadRetry => vec![
            request(
                0x301,
                None,
                Request::DeadRetry(DeadBulkRequest {
                    queue: text("emails"),
                    job_ids: vec![job_id(8), job_id(9)],
                }),
            ),
            request(
                0x302,
                Some("all"),
                Request::DeadRetry(DeadBulkRequest {
                    queue: text("emails"),
                    job_ids: Vec::new(),
                }),
            ),
            response(
                0x301,
                None,
                Response::DeadRetry(BulkResponse {
                    affected: 2,
                    remaining: 0,
                }),
            ),
            response(
                0x302,
                Some("all"),
                Response::DeadRetry(BulkResponse {
                    affected: 10_000,
                    remaining: 251,
                }),
            ),
        ],
        Opcode::OrgCreate
        | Opcode::OrgGet
        | Opcode::OrgList
        | Opcode::OrgUpdate
        | Opcode::OrgDelete
        | Opcode::UserCreate
        | Opcode::UserGet
        | Opcode::UserList
        | Opcode::UserUpdate
        | Opcode::UserDisable
        | Opcode::UserSetPassword
        | Opcode::SubscriptionGet
        | Opcode::SubscriptionSet
        | Opcode::ProjectCreate
        | Opcode::ProjectGet
        | Opcode::ProjectList
        | Opcode::ProjectUpdate
        | Opcode::ProjectDelete
        | Opcode::ApiKeyCreate
        | Opcode::ApiKeyList
        | Opcode::ApiKeyRevoke
        | Opcode::ApiKeyRotate => tenancy_vectors(opcode),
        Opcode::Progress
        | Opcode::Log
        | Opcode::LogTail
        | Opcode::ExecutionList
        | Opcode::JobResults
        | Opcode::WorkerRegister
        | Opcode::Heartbeat
        | Opcode::WorkerList
        | Opcode::WorkerGet
        | Opcode::WorkerQuiet
        | Opcode::WorkerTerminate
        | Opcode::WorkerAssign
        | Opcode::AssignmentList => worker_vectors(opcode),
        Opcode::ScheduleCreate
        | Opcode::ScheduleGet
        | Opcode::ScheduleList
        | Opcode::ScheduleUpdate
        | Opcode::ScheduleDelete
        | Opcode::SchedulePause
        | Opcode::ScheduleResume => schedule_vectors(opcode),
        Opcode::DeadDiscard => vec![
            request(
                0x303,
                None,
                Request::DeadDiscard(DeadBulkRequest {
                    queue: text("emails"),
                    job_ids: vec![job_id(8)],
                }),
            ),
            response(
                0x303,
                None,
                Response::DeadDiscard(BulkResponse {
                    affected: 1,
                    remaining: 0,
                }),
            ),
        ],
    }
}

/// The error frame vector for `code`: a typical situation that produces it, with the opcode
/// and request id of the request it answers (0 and 0 for connection-level errors).
fn error_vector(code: ErrorCode) -> Vector {
    let enqueue = Opcode::Enqueue.number();
    let (opcode, request_id, body) = match code {
        ErrorCode::Unauthenticated => (
            Opcode::Hello.number(),
            1,
            ErrorBody::new(code, "invalid credentials"),
        ),
        ErrorCode::Forbidden => (
            Opcode::QueueCreate.number(),
            0x100,
            ErrorBody::new(code, "this API key lacks the manage scope"),
        ),
        ErrorCode::NotFound => (
            Opcode::JobGet.number(),
            0x280,
            ErrorBody::new(code, "no such job"),
        ),
        ErrorCode::InvalidArgument => (
            Opcode::EnqueueBatch.number(),
            0x210,
            ErrorBody::new(code, "jobs[300].metadata: key \"tenant\" is repeated")
                .with_details(ErrorDetails::BatchItem { index: 300 }),
        ),
        ErrorCode::FrameTooLarge => (
            0,
            0,
            ErrorBody::new(
                code,
                "frame of 4294967295 bytes is over the 4096-byte limit",
            ),
        ),
        ErrorCode::MalformedFrame => (
            enqueue,
            0x200,
            ErrorBody::new(code, "malformed body for opcode 0x0200: unexpected end"),
        ),
        ErrorCode::UnknownOpcode => (
            0x7777,
            0x7777,
            ErrorBody::new(code, "unknown opcode 0x7777"),
        ),
        ErrorCode::QuotaExceeded => (
            enqueue,
            0x200,
            ErrorBody::new(code, "the plan allows 100000 pending jobs").with_details(
                ErrorDetails::Quota {
                    limit: text("pending_jobs"),
                    current: 100_000,
                    max: 100_000,
                },
            ),
        ),
        ErrorCode::RateLimited => (
            enqueue,
            0x200,
            ErrorBody::new(code, "enqueue rate over 500 jobs/s").with_details(
                ErrorDetails::RetryAfter {
                    retry_after_ms: 250,
                },
            ),
        ),
        ErrorCode::LeaseLost => (Opcode::Ack.number(), 0x230, lease_lost(6)),
        ErrorCode::Conflict => (
            Opcode::QueueDelete.number(),
            0x106,
            ErrorBody::new(code, "queue old-queue still holds 3 jobs"),
        ),
        ErrorCode::Unavailable => (
            enqueue,
            0x200,
            ErrorBody::new(code, "the broker is shutting down"),
        ),
        ErrorCode::Internal => (
            Opcode::Fetch.number(),
            0x220,
            ErrorBody::new(code, "internal error; logged with request id 544"),
        ),
        ErrorCode::HandshakeRequired => (
            enqueue,
            0x200,
            ErrorBody::new(code, "send HELLO before any other request"),
        ),
        ErrorCode::UnsupportedVersion => (
            Opcode::Hello.number(),
            1,
            ErrorBody::new(
                code,
                "protocol version 2 is not supported; this server speaks 1..=1",
            ),
        ),
        ErrorCode::DuplicateRequestId => (
            Opcode::Ping.number(),
            0x220,
            ErrorBody::new(code, "request id 544 is already in flight"),
        ),
    };
    Vector {
        name: format!("error_{}", code.name()),
        request_id,
        message: Message::Error { opcode, body },
    }
}
