//! The values behind the worker and execution vectors: opcodes 0x020A..=0x020E (progress,
//! logs, executions, results) and 0x04xx (workers and assignments).
//!
//! One small world again, so the vectors read as a story. Worker 7, `billing-worker-1`,
//! serves `emails` (weight 3) and `reports.daily` (weight 1); it holds job 6 under lease 300
//! (the job of the FETCH vectors) and logs and reports progress on it. Worker 300,
//! `indexer-2` (a three-byte varint id), was told to quiet down. Worker 70 000 (a
//! five-byte varint id) stopped heartbeating and is lost. Job 7 has a history of
//! executions that ended in every way but success. Every enum variant of
//! `WorkerState`, `WorkerCommand`, `ExecutionOutcome` and `LogLevel` appears in some vector.

use taskforge_protocol::limits::*;
use taskforge_protocol::*;

use crate::fixtures::{job_id, request, response, Message, Vector, NOW_MS};

/// `billing-worker-1`: active, serving `emails` and `reports.daily`.
pub const WORKER_BILLING: WorkerId = 7;
/// `indexer-2`: quiet (a three-byte varint id).
pub const WORKER_INDEXER: WorkerId = 300;
/// `spot-worker-9`: lost (a five-byte varint id).
pub const WORKER_SPOT: WorkerId = 70_000;

/// The heartbeat interval a broker with the default timeout announces (timeout / 3).
pub const HEARTBEAT_INTERVAL_MS: u32 = HEARTBEAT_TIMEOUT_MS_DEFAULT / 3;

fn text(value: &str) -> String {
    value.to_owned()
}

fn pairs(entries: &[(&str, &str)]) -> Vec<(String, String)> {
    entries
        .iter()
        .map(|(key, value)| (text(key), text(value)))
        .collect()
}

fn serves(queue: &str, weight: u32, active: bool) -> QueueAssignment {
    QueueAssignment {
        queue: text(queue),
        weight,
        active,
    }
}

/// Worker 7's queues as it registers them: `emails` three times as often as
/// `reports.daily`.
fn billing_queues() -> Vec<QueueAssignment> {
    vec![serves("emails", 3, true), serves("reports.daily", 1, true)]
}

/// Worker 7's queues after WORKER_ASSIGN: reports first, `emails` kept on record but not
/// served.
fn billing_queues_reassigned() -> Vec<QueueAssignment> {
    vec![serves("reports.daily", 5, true), serves("emails", 1, false)]
}

/// The stored assignments of `queues` for a worker, positions from 0.
fn assignments(
    worker_id: WorkerId,
    worker_name: &str,
    queues: &[QueueAssignment],
    since_ms: u64,
) -> Vec<Assignment> {
    queues
        .iter()
        .enumerate()
        .map(|(position, queue)| Assignment {
            worker_id,
            worker_name: text(worker_name),
            queue: queue.queue.clone(),
            weight: queue.weight,
            position: u32::try_from(position).expect("few queues"),
            active: queue.active,
            since_ms,
        })
        .collect()
}

fn billing_register() -> WorkerRegister {
    WorkerRegister {
        name: text("billing-worker-1"),
        hostname: text("worker-a.internal"),
        pid: 4_242,
        version: text("taskforge-py 0.1.0"),
        labels: pairs(&[("region", "eu-west-1"), ("gpu", "false")]),
        concurrency: 8,
        queues: billing_queues(),
    }
}

/// Worker 7 as WORKER_REGISTER answers: active, nothing leased yet, assignments version 1.
fn billing_worker() -> WorkerInfo {
    WorkerInfo {
        worker_id: WORKER_BILLING,
        name: text("billing-worker-1"),
        hostname: text("worker-a.internal"),
        pid: 4_242,
        version: text("taskforge-py 0.1.0"),
        labels: pairs(&[("region", "eu-west-1"), ("gpu", "false")]),
        concurrency: 8,
        state: WorkerState::Active,
        registered_at_ms: NOW_MS - 600_000,
        last_heartbeat_at_ms: NOW_MS - 600_000,
        in_flight: 0,
        leased_jobs: 0,
        terminate_deadline_ms: None,
        assignments_version: 1,
        assignments: assignments(
            WORKER_BILLING,
            "billing-worker-1",
            &billing_queues(),
            NOW_MS - 600_000,
        ),
    }
}

/// Worker 7 ten minutes later, running three jobs.
fn billing_worker_busy() -> WorkerInfo {
    WorkerInfo {
        last_heartbeat_at_ms: NOW_MS - 2_000,
        in_flight: 3,
        leased_jobs: 3,
        ..billing_worker()
    }
}

/// Worker 300: told to quiet down, still finishing one job.
fn indexer_worker(state: WorkerState, terminate_deadline_ms: Option<u64>) -> WorkerInfo {
    WorkerInfo {
        worker_id: WORKER_INDEXER,
        name: text("indexer-2"),
        hostname: text("indexer-2.internal"),
        pid: 70_001,
        version: text("taskforge 0.1.0"),
        labels: Vec::new(),
        concurrency: 1,
        state,
        registered_at_ms: NOW_MS - 86_400_000,
        last_heartbeat_at_ms: NOW_MS - 4_000,
        in_flight: 1,
        leased_jobs: 1,
        terminate_deadline_ms,
        assignments_version: 3,
        assignments: assignments(
            WORKER_INDEXER,
            "indexer-2",
            &[serves("emails", 1, true)],
            NOW_MS - 3_600_000,
        ),
    }
}

/// Worker 70 000: missed its heartbeats; its leases were released.
fn spot_worker() -> WorkerInfo {
    WorkerInfo {
        worker_id: WORKER_SPOT,
        name: text("spot-worker-9"),
        hostname: String::new(),
        pid: 1,
        version: String::new(),
        labels: pairs(&[("pool", "spot")]),
        concurrency: WORKER_CONCURRENCY_MAX,
        state: WorkerState::Lost,
        registered_at_ms: NOW_MS - 7_200_000,
        last_heartbeat_at_ms: NOW_MS - 1_800_000,
        in_flight: 251,
        leased_jobs: 0,
        terminate_deadline_ms: None,
        assignments_version: 1,
        assignments: assignments(
            WORKER_SPOT,
            "spot-worker-9",
            &[serves("reports.daily", ASSIGNMENT_WEIGHT_MAX, true)],
            NOW_MS - 7_200_000,
        ),
    }
}

/// The second execution of job 6 (leased by worker 7 under lease 300), running.
pub fn running_execution() -> ExecutionInfo {
    ExecutionInfo {
        execution: 2,
        attempt: 2,
        worker_id: Some(WORKER_BILLING),
        lease_id: 300,
        leased_at_ms: NOW_MS - 4_000,
        lease_deadline_ms: NOW_MS + 56_000,
        finished_at_ms: None,
        outcome: None,
        error: None,
        error_details: None,
        duration_ms: None,
    }
}

/// The same execution once ACKed.
pub fn succeeded_execution() -> ExecutionInfo {
    ExecutionInfo {
        finished_at_ms: Some(NOW_MS),
        outcome: Some(ExecutionOutcome::Succeeded),
        duration_ms: Some(4_000),
        ..running_execution()
    }
}

/// Job 6's last progress report.
pub fn progress(percent: u8, message: &str) -> ProgressInfo {
    ProgressInfo {
        execution: 2,
        percent,
        message: text(message),
        updated_at_ms: NOW_MS - 1_000,
    }
}

/// Job 7's first execution: failed by an anonymous consumer, with a stack trace.
fn failed_execution() -> ExecutionInfo {
    ExecutionInfo {
        execution: 1,
        attempt: 1,
        worker_id: None,
        lease_id: 250,
        leased_at_ms: NOW_MS - 300_000,
        lease_deadline_ms: NOW_MS - 270_000,
        finished_at_ms: Some(NOW_MS - 299_000),
        outcome: Some(ExecutionOutcome::Failed),
        error: Some(text("smtp: connection refused")),
        error_details: Some(text(STACK_TRACE)),
        duration_ms: Some(1_000),
    }
}

/// Job 7's second execution: its lease ran out.
fn expired_execution() -> ExecutionInfo {
    ExecutionInfo {
        execution: 2,
        attempt: 2,
        worker_id: Some(WORKER_INDEXER),
        lease_id: 70_000,
        leased_at_ms: NOW_MS - 200_000,
        lease_deadline_ms: NOW_MS - 170_000,
        finished_at_ms: Some(NOW_MS - 169_950),
        outcome: Some(ExecutionOutcome::LeaseExpired),
        error: None,
        error_details: None,
        duration_ms: Some(30_050),
    }
}

/// Job 7's third execution: its worker was lost.
fn lost_execution() -> ExecutionInfo {
    ExecutionInfo {
        execution: 3,
        attempt: 3,
        worker_id: Some(WORKER_SPOT),
        lease_id: 70_001,
        leased_at_ms: NOW_MS - 1_810_000,
        lease_deadline_ms: NOW_MS + 1_000_000,
        finished_at_ms: Some(NOW_MS - 1_785_000),
        outcome: Some(ExecutionOutcome::WorkerLost),
        error: None,
        error_details: None,
        duration_ms: Some(25_000),
    }
}

/// Job 7's fourth execution, after a DEAD_RETRY gave it fresh attempts: attempt 1 again,
/// execution 4. Cancelled while it ran.
fn cancelled_execution() -> ExecutionInfo {
    ExecutionInfo {
        execution: 4,
        attempt: 1,
        worker_id: Some(WORKER_BILLING),
        lease_id: 4_294_967_296,
        leased_at_ms: NOW_MS - 60_000,
        lease_deadline_ms: NOW_MS - 30_000,
        finished_at_ms: Some(NOW_MS - 30_000),
        outcome: Some(ExecutionOutcome::Cancelled),
        error: None,
        error_details: None,
        duration_ms: Some(30_000),
    }
}

/// A short Python stack trace, as FAIL `error_details` carries it.
pub const STACK_TRACE: &str = "Traceback (most recent call last):\n  \
File \"worker.py\", line 42, in send\n    smtp.connect(host)\n\
ConnectionRefusedError: [Errno 111] Connection refused";

fn new_line(level: LogLevel, message: &str, fields: &[(&str, &str)]) -> NewLogLine {
    NewLogLine {
        level,
        message: text(message),
        fields: pairs(fields),
    }
}

fn stored_line(seq: u32, at_ms: u64, line: NewLogLine) -> LogLine {
    LogLine {
        seq,
        at_ms,
        level: line.level,
        message: line.message,
        fields: line.fields,
    }
}

/// The three lines worker 7 logs for job 6's second execution.
fn job_six_lines() -> Vec<NewLogLine> {
    vec![
        new_line(
            LogLevel::Info,
            "connecting to smtp.example.com",
            &[("attempt", "2")],
        ),
        new_line(LogLevel::Warn, "slow handshake", &[("ms", "1250")]),
        new_line(LogLevel::Debug, "sent 1 message", &[]),
    ]
}

/// The same lines as LOG_TAIL returns them, numbered from 1.
fn job_six_stored_lines() -> Vec<LogLine> {
    job_six_lines()
        .into_iter()
        .enumerate()
        .map(|(index, line)| {
            let seq = u32::try_from(index + 1).expect("three lines");
            stored_line(seq, NOW_MS - 3_000 + u64::from(seq) * 100, line)
        })
        .collect()
}

/// The vectors of one worker or execution operation.
pub fn worker_vectors(opcode: Opcode) -> Vec<Vector> {
    match opcode {
        Opcode::Progress => vec![
            request(
                0x2a0,
                None,
                Request::Progress(ProgressRequest {
                    job_id: job_id(6),
                    lease_id: 300,
                    percent: 40,
                    message: text("rendered 4 of 10 pages"),
                }),
            ),
            request(
                0x2a1,
                Some("done"),
                Request::Progress(ProgressRequest {
                    job_id: job_id(6),
                    lease_id: 300,
                    percent: 100,
                    message: String::new(),
                }),
            ),
            response(0x2a0, None, Response::Progress(Empty {})),
        ],
        Opcode::Log => vec![
            request(
                0x2b0,
                None,
                Request::Log(LogRequest {
                    job_id: job_id(6),
                    lease_id: 300,
                    lines: job_six_lines(),
                }),
            ),
            request(
                0x2b1,
                Some("one_line"),
                Request::Log(LogRequest {
                    job_id: job_id(6),
                    lease_id: 300,
                    lines: vec![new_line(
                        LogLevel::Error,
                        "mailbox full",
                        &[("rcpt", "bo@acme.example")],
                    )],
                }),
            ),
            request(
                0x2b2,
                Some("trace"),
                Request::Log(LogRequest {
                    job_id: job_id(7),
                    lease_id: 4_294_967_296,
                    lines: vec![new_line(LogLevel::Trace, "é", &[])],
                }),
            ),
            response(
                0x2b0,
                None,
                Response::Log(LogResponse {
                    execution: 2,
                    first_seq: 1,
                }),
            ),
            response(
                0x2b1,
                Some("one_line"),
                Response::Log(LogResponse {
                    execution: 2,
                    first_seq: 4,
                }),
            ),
            response(
                0x2b2,
                Some("trace"),
                Response::Log(LogResponse {
                    execution: 4,
                    first_seq: 251,
                }),
            ),
        ],
        Opcode::LogTail => vec![
            request(
                0x2c0,
                None,
                Request::LogTail(LogTailRequest {
                    job_id: job_id(6),
                    execution: None,
                    lines: 100,
                    after_seq: None,
                    wait_ms: 0,
                }),
            ),
            request(
                0x2c1,
                Some("follow"),
                Request::LogTail(LogTailRequest {
                    job_id: job_id(6),
                    execution: Some(2),
                    lines: LOG_TAIL_LINES_MAX,
                    after_seq: Some(3),
                    wait_ms: 30_000,
                }),
            ),
            request(
                0x2c2,
                Some("never_delivered"),
                Request::LogTail(LogTailRequest {
                    job_id: job_id(9),
                    execution: None,
                    lines: 1,
                    after_seq: Some(0),
                    wait_ms: FETCH_WAIT_MS_MAX,
                }),
            ),
            response(
                0x2c0,
                None,
                Response::LogTail(LogTail {
                    execution: 2,
                    lines: job_six_stored_lines(),
                    next_after: 3,
                    open: true,
                }),
            ),
            response(
                0x2c1,
                Some("follow"),
                Response::LogTail(LogTail {
                    execution: 2,
                    lines: vec![stored_line(
                        4,
                        NOW_MS,
                        new_line(
                            LogLevel::Error,
                            "mailbox full",
                            &[("rcpt", "bo@acme.example")],
                        ),
                    )],
                    next_after: 4,
                    open: false,
                }),
            ),
            response(
                0x2c3,
                Some("waited"),
                Response::LogTail(LogTail {
                    execution: 2,
                    lines: Vec::new(),
                    next_after: 3,
                    open: true,
                }),
            ),
            response(
                0x2c2,
                Some("never_delivered"),
                Response::LogTail(LogTail {
                    execution: 0,
                    lines: Vec::new(),
                    next_after: 0,
                    open: false,
                }),
            ),
        ],
        Opcode::ExecutionList => vec![
            request(
                0x2d0,
                None,
                Request::ExecutionList(ExecutionListRequest {
                    job_id: job_id(7),
                    after: None,
                    limit: 100,
                }),
            ),
            request(
                0x2d1,
                Some("next_page"),
                Request::ExecutionList(ExecutionListRequest {
                    job_id: job_id(7),
                    after: Some(2),
                    limit: 2,
                }),
            ),
            response(
                0x2d0,
                None,
                Response::ExecutionList(ExecutionList {
                    executions: vec![failed_execution(), expired_execution()],
                    next_after: Some(2),
                }),
            ),
            response(
                0x2d1,
                Some("next_page"),
                Response::ExecutionList(ExecutionList {
                    executions: vec![lost_execution(), cancelled_execution()],
                    next_after: None,
                }),
            ),
            response(
                0x2d2,
                Some("running"),
                Response::ExecutionList(ExecutionList {
                    executions: vec![running_execution()],
                    next_after: None,
                }),
            ),
        ],
        Opcode::JobResults => vec![
            request(
                0x2e0,
                None,
                Request::JobResults(JobRef { job_id: job_id(6) }),
            ),
            response(
                0x2e0,
                None,
                Response::JobResults(JobResults {
                    job: JobResult {
                        job_id: job_id(6),
                        state: JobState::Succeeded,
                        result: Some(br#"{"sent":true}"#.to_vec()),
                    },
                    parents: Vec::new(),
                }),
            ),
            response(
                0x2e1,
                Some("parents"),
                Response::JobResults(JobResults {
                    job: JobResult {
                        job_id: job_id(9),
                        state: JobState::Leased,
                        result: None,
                    },
                    parents: vec![
                        JobResult {
                            job_id: job_id(6),
                            state: JobState::Succeeded,
                            result: Some(br#"{"sent":true}"#.to_vec()),
                        },
                        JobResult {
                            job_id: job_id(8),
                            state: JobState::Succeeded,
                            result: Some(Vec::new()),
                        },
                    ],
                }),
            ),
        ],
        Opcode::WorkerRegister => vec![
            request(0x400, None, Request::WorkerRegister(billing_register())),
            request(
                0x401,
                Some("minimal"),
                Request::WorkerRegister(WorkerRegister {
                    name: text("w"),
                    hostname: String::new(),
                    pid: 0,
                    version: String::new(),
                    labels: Vec::new(),
                    concurrency: 1,
                    queues: vec![serves("emails", 1, true)],
                }),
            ),
            response(0x400, None, Response::WorkerRegister(billing_worker())),
        ],
        Opcode::Heartbeat => vec![
            request(
                0x410,
                None,
                Request::Heartbeat(Heartbeat {
                    worker_id: WORKER_BILLING,
                    in_flight: 3,
                    assignments_version: 1,
                    leaving: false,
                }),
            ),
            request(
                0x411,
                Some("leaving"),
                Request::Heartbeat(Heartbeat {
                    worker_id: WORKER_INDEXER,
                    in_flight: 0,
                    assignments_version: 3,
                    leaving: true,
                }),
            ),
            response(
                0x410,
                None,
                Response::Heartbeat(HeartbeatResponse {
                    command: WorkerCommand::Run,
                    heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
                    assignments_version: 1,
                    assignments: None,
                    cancelled_jobs: Vec::new(),
                }),
            ),
            response(
                0x412,
                Some("assignments"),
                Response::Heartbeat(HeartbeatResponse {
                    command: WorkerCommand::Run,
                    heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
                    assignments_version: 2,
                    assignments: Some(billing_queues_reassigned()),
                    cancelled_jobs: vec![job_id(7)],
                }),
            ),
            response(
                0x413,
                Some("quiet"),
                Response::Heartbeat(HeartbeatResponse {
                    command: WorkerCommand::Quiet,
                    heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
                    assignments_version: 3,
                    assignments: None,
                    cancelled_jobs: Vec::new(),
                }),
            ),
            response(
                0x414,
                Some("terminate"),
                Response::Heartbeat(HeartbeatResponse {
                    command: WorkerCommand::Terminate {
                        deadline_ms: NOW_MS + u64::from(WORKER_TERMINATE_GRACE_MS_DEFAULT),
                    },
                    heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
                    assignments_version: 3,
                    assignments: None,
                    cancelled_jobs: vec![job_id(8), job_id(9)],
                }),
            ),
        ],
        Opcode::WorkerList => vec![
            request(
                0x420,
                None,
                Request::WorkerList(WorkerListRequest {
                    state: None,
                    after: None,
                    limit: 2,
                }),
            ),
            request(
                0x421,
                Some("lost"),
                Request::WorkerList(WorkerListRequest {
                    state: Some(WorkerState::Lost),
                    after: Some(WORKER_INDEXER),
                    limit: LIST_LIMIT_MAX,
                }),
            ),
            response(
                0x420,
                None,
                Response::WorkerList(WorkerList {
                    workers: vec![
                        billing_worker_busy(),
                        indexer_worker(WorkerState::Quiet, None),
                    ],
                    next_after: Some(WORKER_INDEXER),
                }),
            ),
            response(
                0x421,
                Some("lost"),
                Response::WorkerList(WorkerList {
                    workers: vec![spot_worker()],
                    next_after: None,
                }),
            ),
        ],
        Opcode::WorkerGet => vec![
            request(
                0x430,
                None,
                Request::WorkerGet(WorkerRef {
                    worker_id: WORKER_BILLING,
                }),
            ),
            response(0x430, None, Response::WorkerGet(billing_worker_busy())),
            response(
                0x431,
                Some("stopped"),
                Response::WorkerGet(WorkerInfo {
                    state: WorkerState::Stopped,
                    in_flight: 0,
                    leased_jobs: 0,
                    ..indexer_worker(WorkerState::Stopped, None)
                }),
            ),
        ],
        Opcode::WorkerQuiet => vec![
            request(
                0x440,
                None,
                Request::WorkerQuiet(WorkerRef {
                    worker_id: WORKER_INDEXER,
                }),
            ),
            response(
                0x440,
                None,
                Response::WorkerQuiet(indexer_worker(WorkerState::Quiet, None)),
            ),
        ],
        Opcode::WorkerTerminate => vec![
            request(
                0x450,
                None,
                Request::WorkerTerminate(WorkerTerminate {
                    worker_id: WORKER_INDEXER,
                    grace_ms: None,
                }),
            ),
            request(
                0x451,
                Some("grace"),
                Request::WorkerTerminate(WorkerTerminate {
                    worker_id: WORKER_BILLING,
                    grace_ms: Some(120_000),
                }),
            ),
            response(
                0x450,
                None,
                Response::WorkerTerminate(indexer_worker(
                    WorkerState::Terminating,
                    Some(NOW_MS + u64::from(WORKER_TERMINATE_GRACE_MS_DEFAULT)),
                )),
            ),
            response(
                0x451,
                Some("grace"),
                Response::WorkerTerminate(WorkerInfo {
                    state: WorkerState::Terminating,
                    terminate_deadline_ms: Some(NOW_MS + 120_000),
                    ..billing_worker_busy()
                }),
            ),
        ],
        Opcode::WorkerAssign => vec![
            request(
                0x460,
                None,
                Request::WorkerAssign(WorkerAssign {
                    worker_id: WORKER_BILLING,
                    queues: billing_queues_reassigned(),
                }),
            ),
            response(
                0x460,
                None,
                Response::WorkerAssign(WorkerInfo {
                    assignments_version: 2,
                    assignments: assignments(
                        WORKER_BILLING,
                        "billing-worker-1",
                        &billing_queues_reassigned(),
                        NOW_MS,
                    ),
                    ..billing_worker_busy()
                }),
            ),
        ],
        Opcode::AssignmentList => vec![
            request(
                0x470,
                None,
                Request::AssignmentList(AssignmentListRequest {
                    queue: Some(text("emails")),
                    worker_id: None,
                    after: None,
                    limit: 1,
                }),
            ),
            request(
                0x471,
                Some("worker"),
                Request::AssignmentList(AssignmentListRequest {
                    queue: None,
                    worker_id: Some(WORKER_BILLING),
                    after: None,
                    limit: LIST_LIMIT_MAX,
                }),
            ),
            response(
                0x470,
                None,
                Response::AssignmentList(AssignmentList {
                    assignments: billing_worker()
                        .assignments
                        .into_iter()
                        .filter(|assignment| assignment.queue == "emails")
                        .collect(),
                    next_after: Some(WORKER_BILLING),
                }),
            ),
            response(
                0x471,
                Some("worker"),
                Response::AssignmentList(AssignmentList {
                    assignments: billing_worker().assignments,
                    next_after: None,
                }),
            ),
        ],
        other => unreachable!("{} is not a worker or execution operation", other.name()),
    }
}

/// An error frame named `error_<CODE>.<variant>`.
fn error(variant: &str, opcode: Opcode, request_id: u32, body: ErrorBody) -> Vector {
    Vector {
        name: format!("error_{}.{variant}", body.error_code().name()),
        request_id,
        message: Message::Error {
            opcode: opcode.number(),
            body,
        },
    }
}

/// Error frames of the worker and execution operations: the two quotas they enforce, an
/// unknown worker, a quiet worker's FETCH and a stale lease's LOG.
pub fn worker_error_vectors() -> Vec<Vector> {
    vec![
        error(
            "workers",
            Opcode::WorkerRegister,
            0x400,
            ErrorBody::new(ErrorCode::QuotaExceeded, "the plan allows 10 workers").with_details(
                ErrorDetails::Quota {
                    limit: text("workers"),
                    current: 10,
                    max: 10,
                },
            ),
        ),
        error(
            "log_lines_per_execution",
            Opcode::Log,
            0x2b0,
            ErrorBody::new(
                ErrorCode::QuotaExceeded,
                "execution 2 of this job already holds 1000 log lines",
            )
            .with_details(ErrorDetails::Quota {
                limit: text("log_lines_per_execution"),
                current: u64::from(LOG_LINES_PER_EXECUTION_MAX_DEFAULT),
                max: u64::from(LOG_LINES_PER_EXECUTION_MAX_DEFAULT),
            }),
        ),
        error(
            "worker",
            Opcode::Heartbeat,
            0x410,
            ErrorBody::new(ErrorCode::NotFound, "no such worker; register again"),
        ),
        error(
            "worker_quiet",
            Opcode::Fetch,
            0x222,
            ErrorBody::new(ErrorCode::Conflict, "worker is quiet: stop fetching"),
        ),
        error(
            "log",
            Opcode::Log,
            0x2b0,
            ErrorBody::new(
                ErrorCode::LeaseLost,
                format!("lease is not the current lease of job {}", job_id(6)),
            ),
        ),
    ]
}
