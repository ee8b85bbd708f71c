//! The values behind the vectors of job dependencies, unique keys, expiry and per-queue flow
//! limits: further variants of QUEUE_CREATE, QUEUE_GET, QUEUE_UPDATE, ENQUEUE,
//! ENQUEUE_BATCH, JOB_GET and JOB_RESULTS, and their error frames.
//!
//! The same small world as the other fixtures, one evening later:
//!
//! - The nightly report is a diamond, enqueued as one batch into `reports.daily`:
//!   `extract` (job 0x10) feeds `render-pdf` (0x11) and `render-csv` (0x12), and `publish`
//!   (0x13) waits for both renders. `publish` runs even if a render fails (policy `run`)
//!   and must start within six hours; `notify` (0x16), enqueued later, waits for `publish`.
//! - Invoice INV-2025-0042 (job 0x14) waits for jobs 7 and 9 with a unique key that holds
//!   until it starts and for ten minutes in any case, and a one-hour time to live.
//! - `sync:acme` is held by job 7 (leased) until it finishes: enqueueing it again answers
//!   job 7 with `duplicate` set. Ana's digest (job 0x15) has a one-day window.
//! - `webhooks` is a queue with flow limits: 8 jobs in flight, 300 deliveries a second,
//!   finished jobs kept three days. Job 0x17 there expired before any worker took it; job
//!   0x18 was cancelled because its parent, job 8, ended dead.

use taskforge_protocol::limits::*;
use taskforge_protocol::*;

use crate::fixtures::{job_id, request, response, Message, Vector, NOW_MS};

/// `extract`, the root of the nightly report's diamond.
pub const EXTRACT: u8 = 0x10;
/// `render-pdf`, a child of `extract`.
pub const RENDER_PDF: u8 = 0x11;
/// `render-csv`, a child of `extract`.
pub const RENDER_CSV: u8 = 0x12;
/// `publish`, the fan-in job waiting for both renders.
pub const PUBLISH: u8 = 0x13;
/// Invoice INV-2025-0042, waiting for jobs 7 and 9.
pub const INVOICE: u8 = 0x14;
/// Ana's daily digest, unique for a day.
pub const DIGEST: u8 = 0x15;
/// `notify`, enqueued after the diamond, waiting for `publish`.
pub const NOTIFY: u8 = 0x16;
/// A webhook that expired before it started.
pub const EXPIRED_HOOK: u8 = 0x17;
/// A webhook cancelled because its parent, job 8, ended dead.
pub const ORPHAN_HOOK: u8 = 0x18;

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;

fn text(value: &str) -> String {
    value.to_owned()
}

fn default_backoff() -> Backoff {
    Backoff {
        initial_ms: BACKOFF_INITIAL_MS_DEFAULT,
        factor_percent: BACKOFF_FACTOR_PERCENT_DEFAULT,
        max_ms: BACKOFF_MAX_MS_DEFAULT,
        jitter_percent: BACKOFF_JITTER_PERCENT_DEFAULT,
    }
}

fn report_job(payload: &str, depends_on: Vec<ParentRef>) -> NewJob {
    NewJob {
        queue: text("reports.daily"),
        payload: payload.as_bytes().to_vec(),
        depends_on,
        ..NewJob::default()
    }
}

/// The nightly report: `extract`, two renders that depend on it, and `publish`, which
/// depends on both renders (by their positions in the batch).
pub fn diamond_batch() -> Vec<NewJob> {
    vec![
        NewJob {
            unique: Some(UniqueKey {
                key: text("report:2025-11-28"),
                until: Some(UniqueUntil::Finished),
                window_ms: None,
            }),
            ..report_job(r#"{"step":"extract"}"#, Vec::new())
        },
        report_job(
            r#"{"step":"render","format":"pdf"}"#,
            vec![ParentRef::Batch(0)],
        ),
        report_job(
            r#"{"step":"render","format":"csv"}"#,
            vec![ParentRef::Batch(0)],
        ),
        NewJob {
            on_parent_failure: ParentFailure::Run,
            expires_at_ms: Some(NOW_MS + 6 * HOUR_MS),
            ..report_job(
                r#"{"step":"publish"}"#,
                vec![ParentRef::Batch(1), ParentRef::Batch(2)],
            )
        },
    ]
}

/// Invoice INV-2025-0042: waits for jobs 7 and 9, runs even if one fails, is unique until it
/// starts (and for ten minutes in any case), and expires if not started within the hour (its
/// `ttl_ms` ends before its `expires_at_ms`).
pub fn invoice_job() -> NewJob {
    NewJob {
        queue: text("emails"),
        payload: br#"{"invoice":"INV-2025-0042"}"#.to_vec(),
        depends_on: vec![ParentRef::Job(job_id(7)), ParentRef::Job(job_id(9))],
        on_parent_failure: ParentFailure::Run,
        unique: Some(UniqueKey {
            key: text("invoice:INV-2025-0042"),
            until: Some(UniqueUntil::Started),
            window_ms: Some(600_000),
        }),
        expires_at_ms: Some(NOW_MS + DAY_MS),
        ttl_ms: Some(HOUR_MS),
        ..NewJob::default()
    }
}

fn unique_job(queue: &str, payload: &str, key: &str, until: Option<UniqueUntil>) -> NewJob {
    NewJob {
        queue: text(queue),
        payload: payload.as_bytes().to_vec(),
        unique: Some(UniqueKey {
            key: text(key),
            until,
            window_ms: until.is_none().then_some(DAY_MS),
        }),
        ..NewJob::default()
    }
}

/// `sync:acme`, unique until finished: job 7 holds it.
fn sync_job() -> NewJob {
    unique_job(
        "emails",
        r#"{"sync":"acme"}"#,
        "sync:acme",
        Some(UniqueUntil::Finished),
    )
}

/// Ana's digest, unique for a day whatever its state.
fn digest_job() -> NewJob {
    unique_job("emails", r#"{"digest":"ana"}"#, "digest:ana", None)
}

/// `webhooks` as QUEUE_CREATE sets it up: short leases and flow limits.
fn webhooks_queue() -> QueueInfo {
    QueueInfo {
        name: text("webhooks"),
        defaults: QueueDefaults {
            priority: 0,
            max_attempts: MAX_ATTEMPTS_DEFAULT,
            backoff: default_backoff(),
            lease_ms: 10_000,
            retention_ms: Some(3 * DAY_MS),
            in_flight_max: Some(8),
            deliveries_per_second: Some(300),
        },
        paused: false,
        created_at_ms: NOW_MS - 7 * DAY_MS,
        counts: JobCounts::default(),
    }
}

/// A job view with no delivery and no dependencies; callers set what differs.
fn pending_job(last: u8, queue: &str, payload: &str, created_at_ms: u64) -> JobInfo {
    JobInfo {
        job_id: job_id(last),
        queue: text(queue),
        state: JobState::Ready,
        priority: 0,
        payload: payload.as_bytes().to_vec(),
        metadata: Vec::new(),
        attempts: 0,
        max_attempts: MAX_ATTEMPTS_DEFAULT,
        backoff: default_backoff(),
        lease_ms: LEASE_MS_DEFAULT,
        created_at_ms,
        run_at_ms: created_at_ms,
        updated_at_ms: created_at_ms,
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
    }
}

/// The further vectors of `opcode` (none for most operations).
pub fn dependency_vectors(opcode: Opcode) -> Vec<Vector> {
    match opcode {
        Opcode::QueueCreate => vec![
            request(
                0x10c,
                Some("flow_limits"),
                Request::QueueCreate(QueueWrite {
                    name: text("webhooks"),
                    settings: QueueSettings {
                        lease_ms: Some(10_000),
                        retention_ms: Some(3 * DAY_MS),
                        in_flight_max: Some(8),
                        deliveries_per_second: Some(300),
                        ..QueueSettings::default()
                    },
                }),
            ),
            response(
                0x10c,
                Some("flow_limits"),
                Response::QueueCreate(QueueInfo {
                    created_at_ms: NOW_MS,
                    ..webhooks_queue()
                }),
            ),
        ],
        Opcode::QueueGet => vec![response(
            0x10e,
            Some("flow_limits"),
            // At its in-flight limit: FETCH skips it until a lease ends.
            Response::QueueGet(QueueInfo {
                counts: JobCounts {
                    ready: 1_200,
                    leased: 8,
                    succeeded: 70_000,
                    expired: 1,
                    cancelled: 1,
                    ..JobCounts::default()
                },
                ..webhooks_queue()
            }),
        )],
        Opcode::QueueUpdate => vec![
            request(
                0x10d,
                Some("flow_limits"),
                // 0 removes a limit (retention: back to the plan's); `None` leaves it.
                Request::QueueUpdate(QueueWrite {
                    name: text("webhooks"),
                    settings: QueueSettings {
                        retention_ms: Some(0),
                        in_flight_max: Some(16),
                        deliveries_per_second: Some(0),
                        ..QueueSettings::default()
                    },
                }),
            ),
            response(
                0x10d,
                Some("flow_limits"),
                Response::QueueUpdate(QueueInfo {
                    defaults: QueueDefaults {
                        retention_ms: None,
                        in_flight_max: Some(16),
                        deliveries_per_second: None,
                        ..webhooks_queue().defaults
                    },
                    ..webhooks_queue()
                }),
            ),
        ],
        Opcode::Enqueue => vec![
            request(
                0x203,
                Some("depends_on"),
                Request::Enqueue(EnqueueRequest { job: invoice_job() }),
            ),
            request(
                0x204,
                Some("unique"),
                Request::Enqueue(EnqueueRequest { job: sync_job() }),
            ),
            response(
                0x203,
                Some("blocked"),
                Response::Enqueue(EnqueueResponse {
                    job_id: job_id(INVOICE),
                    state: JobState::Blocked,
                    duplicate: false,
                }),
            ),
            response(
                0x204,
                Some("duplicate"),
                // Job 7 holds `sync:acme` until it finishes; nothing was created.
                Response::Enqueue(EnqueueResponse {
                    job_id: job_id(7),
                    state: JobState::Leased,
                    duplicate: true,
                }),
            ),
        ],
        Opcode::EnqueueBatch => vec![
            request(
                0x211,
                Some("diamond"),
                Request::EnqueueBatch(EnqueueBatchRequest {
                    jobs: diamond_batch(),
                }),
            ),
            request(
                0x212,
                Some("unique"),
                Request::EnqueueBatch(EnqueueBatchRequest {
                    jobs: vec![digest_job(), digest_job(), sync_job()],
                }),
            ),
            response(
                0x211,
                Some("diamond"),
                Response::EnqueueBatch(EnqueueBatchResponse {
                    job_ids: vec![
                        job_id(EXTRACT),
                        job_id(RENDER_PDF),
                        job_id(RENDER_CSV),
                        job_id(PUBLISH),
                    ],
                    duplicates: vec![false; 4],
                }),
            ),
            response(
                0x212,
                Some("duplicates"),
                // jobs[1] repeats jobs[0]'s key: it gets jobs[0]'s id. jobs[2]'s key is
                // held by job 7.
                Response::EnqueueBatch(EnqueueBatchResponse {
                    job_ids: vec![job_id(DIGEST), job_id(DIGEST), job_id(7)],
                    duplicates: vec![false, true, true],
                }),
            ),
        ],
        Opcode::JobGet => vec![
            response(
                0x283,
                Some("blocked"),
                // `publish`: `render-pdf` succeeded, `render-csv` still runs.
                Response::JobGet(JobInfo {
                    state: JobState::Blocked,
                    updated_at_ms: NOW_MS + 20_000,
                    parents: vec![job_id(RENDER_PDF), job_id(RENDER_CSV)],
                    parents_remaining: 1,
                    on_parent_failure: ParentFailure::Run,
                    children: vec![job_id(NOTIFY)],
                    expires_at_ms: Some(NOW_MS + 6 * HOUR_MS),
                    ..pending_job(PUBLISH, "reports.daily", r#"{"step":"publish"}"#, NOW_MS)
                }),
            ),
            response(
                0x284,
                Some("unique_key"),
                // The invoice once jobs 7 and 9 have finished: ready, its key still held,
                // expiring an hour after enqueue unless a worker takes it.
                Response::JobGet(JobInfo {
                    updated_at_ms: NOW_MS + 90_000,
                    parents: vec![job_id(7), job_id(9)],
                    parents_remaining: 0,
                    on_parent_failure: ParentFailure::Run,
                    unique_key: Some(text("invoice:INV-2025-0042")),
                    expires_at_ms: Some(NOW_MS + HOUR_MS),
                    ..pending_job(INVOICE, "emails", r#"{"invoice":"INV-2025-0042"}"#, NOW_MS)
                }),
            ),
            response(
                0x285,
                Some("expired"),
                Response::JobGet(JobInfo {
                    state: JobState::Expired,
                    lease_ms: 10_000,
                    updated_at_ms: NOW_MS - 60_000,
                    finished_at_ms: Some(NOW_MS - 60_000),
                    last_error: Some(text("not started before it expired")),
                    unique_key: Some(text("hook:order-1337")),
                    expires_at_ms: Some(NOW_MS - 60_000),
                    ..pending_job(
                        EXPIRED_HOOK,
                        "webhooks",
                        r#"{"order":1337}"#,
                        NOW_MS - 120_000,
                    )
                }),
            ),
            response(
                0x286,
                Some("parent_failed"),
                Response::JobGet(JobInfo {
                    state: JobState::Cancelled,
                    lease_ms: 10_000,
                    updated_at_ms: NOW_MS - 1_000,
                    finished_at_ms: Some(NOW_MS - 1_000),
                    last_error: Some(format!(
                        "parent job {} ended dead and this job's policy is to cancel",
                        job_id(8)
                    )),
                    parents: vec![job_id(8)],
                    parents_remaining: 1,
                    ..pending_job(
                        ORPHAN_HOOK,
                        "webhooks",
                        r#"{"after":"mailbox full"}"#,
                        NOW_MS - 300_000,
                    )
                }),
            ),
        ],
        Opcode::JobResults => vec![response(
            0x2e2,
            Some("fan_in"),
            // `publish`, running: the PDF render succeeded, the CSV render ended dead
            // (`publish` runs anyway: its policy is `run`).
            Response::JobResults(JobResults {
                job: JobResult {
                    job_id: job_id(PUBLISH),
                    state: JobState::Leased,
                    result: None,
                },
                parents: vec![
                    JobResult {
                        job_id: job_id(RENDER_PDF),
                        state: JobState::Succeeded,
                        result: Some(br#"{"pages":12}"#.to_vec()),
                    },
                    JobResult {
                        job_id: job_id(RENDER_CSV),
                        state: JobState::Dead,
                        result: None,
                    },
                ],
            }),
        )],
        _ => Vec::new(),
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

/// The refusals of dependencies: a cycle in a batch, an unknown parent, and a batch parent
/// that is a duplicate of a finished job.
pub fn dependency_error_vectors() -> Vec<Vector> {
    vec![
        error(
            "dependency_cycle",
            Opcode::EnqueueBatch,
            0x213,
            ErrorBody::new(
                ErrorCode::InvalidArgument,
                "jobs[3] is on a dependency cycle",
            )
            .with_details(ErrorDetails::BatchItem { index: 3 }),
        ),
        error(
            "parent",
            Opcode::Enqueue,
            0x203,
            ErrorBody::new(
                ErrorCode::NotFound,
                format!("parent job {} not found", job_id(9)),
            ),
        ),
        error(
            "duplicate_parent",
            Opcode::EnqueueBatch,
            0x214,
            ErrorBody::new(
                ErrorCode::Conflict,
                format!(
                    "jobs[0] is a duplicate of finished job {}; name that job in depends_on \
                     instead",
                    job_id(EXTRACT)
                ),
            )
            .with_details(ErrorDetails::BatchItem { index: 1 }),
        ),
    ]
}
