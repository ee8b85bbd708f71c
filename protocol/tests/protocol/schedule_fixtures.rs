//! The values behind the schedule vectors: opcodes 0x0500..=0x0506 (cron schedules).
//!
//! The story: schedule 3, `nightly-report`, builds the daily report at 02:30 Berlin time
//! (`0 30 2 * * *`, Europe/Berlin) into `reports.daily`, skipping a night while the previous
//! night's job is still running and running once after downtime. Schedule 300 (a
//! three-byte varint id), `digest`, sends an email digest every 15 minutes in UTC into
//! `emails`; it was paused after a fire time was skipped because the plan's pending-job
//! quota was full. Every variant of `OverlapPolicy`, `MissedRunPolicy` and `ScheduleKey`
//! appears in some vector.

use taskforge_protocol::limits::*;
use taskforge_protocol::*;

use crate::fixtures::{job_id, request, response, Message, Vector, NOW_MS};

/// `nightly-report`.
pub const SCHEDULE_NIGHTLY: ScheduleId = 3;
/// `digest` (a three-byte varint id).
pub const SCHEDULE_DIGEST: ScheduleId = 300;

/// 2025-11-29T01:30:00Z: 02:30 in Berlin (CET) the night after [`NOW_MS`].
const NEXT_NIGHT_MS: u64 = 1_764_379_800_000;
/// 2025-11-28T01:30:00Z: 02:30 in Berlin the night before [`NOW_MS`].
const LAST_NIGHT_MS: u64 = 1_764_293_400_000;

fn text(value: &str) -> String {
    value.to_owned()
}

fn report_template() -> NewJob {
    NewJob {
        queue: text("reports.daily"),
        payload: br#"{"report":"daily-sales"}"#.to_vec(),
        priority: Some(5),
        run_at_ms: None,
        delay_ms: None,
        max_attempts: Some(3),
        backoff: None,
        lease_ms: Some(600_000),
        metadata: vec![(text("team"), text("finance"))],
        depends_on: Vec::new(),
        on_parent_failure: ParentFailure::Cancel,
        unique: Some(UniqueKey {
            key: text("daily-sales"),
            until: Some(UniqueUntil::Finished),
            window_ms: None,
        }),
        expires_at_ms: None,
        ttl_ms: Some(3_600_000),
    }
}

fn digest_template() -> NewJob {
    NewJob {
        queue: text("emails"),
        payload: b"digest".to_vec(),
        ..NewJob::default()
    }
}

fn nightly_create() -> ScheduleCreate {
    ScheduleCreate {
        name: text("nightly-report"),
        cron: text("0 30 2 * * *"),
        time_zone: text("Europe/Berlin"),
        queue: text("reports.daily"),
        template: report_template(),
        overlap: OverlapPolicy::Skip,
        missed_runs: MissedRunPolicy::RunOnce,
        paused: false,
    }
}

fn digest_create() -> ScheduleCreate {
    ScheduleCreate {
        name: text("digest"),
        cron: text("0 */15 * * * *"),
        time_zone: text("UTC"),
        queue: text("emails"),
        template: digest_template(),
        overlap: OverlapPolicy::Allow,
        missed_runs: MissedRunPolicy::Skip,
        paused: true,
    }
}

/// `nightly-report` as SCHEDULE_CREATE answers: nothing fired yet.
fn nightly_new() -> ScheduleInfo {
    ScheduleInfo {
        schedule_id: SCHEDULE_NIGHTLY,
        name: text("nightly-report"),
        cron: text("0 30 2 * * *"),
        time_zone: text("Europe/Berlin"),
        queue: text("reports.daily"),
        template: report_template(),
        overlap: OverlapPolicy::Skip,
        missed_runs: MissedRunPolicy::RunOnce,
        paused: false,
        created_at_ms: NOW_MS,
        updated_at_ms: NOW_MS,
        next_fire_at_ms: Some(NEXT_NIGHT_MS),
        last_fired_at_ms: None,
        last_job_id: None,
        fired_count: 0,
        skipped_count: 0,
        last_skipped_at_ms: None,
        last_skip_reason: None,
    }
}

/// `nightly-report` after a month of nights: it fired last night (job 10).
fn nightly_running() -> ScheduleInfo {
    ScheduleInfo {
        created_at_ms: NOW_MS - 30 * 86_400_000,
        updated_at_ms: NOW_MS - 30 * 86_400_000,
        last_fired_at_ms: Some(LAST_NIGHT_MS),
        last_job_id: Some(job_id(10)),
        fired_count: 30,
        ..nightly_new()
    }
}

/// `digest`, paused after a skipped fire time.
fn digest_paused() -> ScheduleInfo {
    ScheduleInfo {
        schedule_id: SCHEDULE_DIGEST,
        name: text("digest"),
        cron: text("0 */15 * * * *"),
        time_zone: text("UTC"),
        queue: text("emails"),
        template: digest_template(),
        overlap: OverlapPolicy::Allow,
        missed_runs: MissedRunPolicy::Skip,
        paused: true,
        created_at_ms: NOW_MS - 86_400_000,
        updated_at_ms: NOW_MS - 60_000,
        next_fire_at_ms: None,
        last_fired_at_ms: Some(NOW_MS - 1_800_000),
        last_job_id: Some(job_id(11)),
        fired_count: 94,
        skipped_count: 1,
        last_skipped_at_ms: Some(NOW_MS - 900_000),
        last_skip_reason: Some(text(
            "the enqueue was refused: the plan allows 100000 pending_jobs; there are 100000",
        )),
    }
}

/// The vectors of one schedule operation.
pub fn schedule_vectors(opcode: Opcode) -> Vec<Vector> {
    match opcode {
        Opcode::ScheduleCreate => vec![
            request(0x500, None, Request::ScheduleCreate(nightly_create())),
            request(
                0x501,
                Some("paused"),
                Request::ScheduleCreate(digest_create()),
            ),
            response(0x500, None, Response::ScheduleCreate(nightly_new())),
        ],
        Opcode::ScheduleGet => vec![
            request(
                0x510,
                None,
                Request::ScheduleGet(ScheduleRef::from(ScheduleKey::Id(SCHEDULE_NIGHTLY))),
            ),
            request(
                0x511,
                Some("name"),
                Request::ScheduleGet(ScheduleRef::from(ScheduleKey::Name(text("digest")))),
            ),
            response(0x510, None, Response::ScheduleGet(nightly_running())),
            response(
                0x511,
                Some("paused"),
                Response::ScheduleGet(digest_paused()),
            ),
        ],
        Opcode::ScheduleList => vec![
            request(
                0x520,
                None,
                Request::ScheduleList(ScheduleListRequest {
                    queue: None,
                    after: None,
                    limit: 100,
                }),
            ),
            request(
                0x521,
                Some("queue"),
                Request::ScheduleList(ScheduleListRequest {
                    queue: Some(text("emails")),
                    after: Some(SCHEDULE_NIGHTLY),
                    limit: LIST_LIMIT_MAX,
                }),
            ),
            response(
                0x520,
                None,
                Response::ScheduleList(ScheduleList {
                    schedules: vec![nightly_running(), digest_paused()],
                    next_after: None,
                }),
            ),
            response(
                0x521,
                Some("more"),
                Response::ScheduleList(ScheduleList {
                    schedules: vec![digest_paused()],
                    next_after: Some(SCHEDULE_DIGEST),
                }),
            ),
        ],
        Opcode::ScheduleUpdate => vec![
            request(
                0x530,
                None,
                Request::ScheduleUpdate(ScheduleUpdate {
                    schedule: ScheduleKey::Name(text("nightly-report")),
                    name: None,
                    cron: Some(text("0 0 3 * * MON-FRI")),
                    time_zone: Some(text("America/New_York")),
                    queue: None,
                    template: None,
                    overlap: Some(OverlapPolicy::Allow),
                    missed_runs: Some(MissedRunPolicy::Skip),
                }),
            ),
            request(
                0x531,
                Some("template"),
                Request::ScheduleUpdate(ScheduleUpdate {
                    schedule: ScheduleKey::Id(SCHEDULE_DIGEST),
                    name: Some(text("digest-v2")),
                    cron: None,
                    time_zone: None,
                    queue: None,
                    template: Some(NewJob {
                        payload: b"digest-v2".to_vec(),
                        ..digest_template()
                    }),
                    overlap: None,
                    missed_runs: None,
                }),
            ),
            response(
                0x530,
                None,
                Response::ScheduleUpdate(ScheduleInfo {
                    cron: text("0 0 3 * * MON-FRI"),
                    time_zone: text("America/New_York"),
                    overlap: OverlapPolicy::Allow,
                    missed_runs: MissedRunPolicy::Skip,
                    updated_at_ms: NOW_MS,
                    // Monday 2025-12-01, 03:00 EST.
                    next_fire_at_ms: Some(1_764_576_000_000),
                    ..nightly_running()
                }),
            ),
        ],
        Opcode::ScheduleDelete => vec![
            request(
                0x540,
                None,
                Request::ScheduleDelete(ScheduleRef::from(ScheduleKey::Name(text("digest")))),
            ),
            response(0x540, None, Response::ScheduleDelete(Empty {})),
        ],
        Opcode::SchedulePause => vec![
            request(
                0x550,
                None,
                Request::SchedulePause(ScheduleRef::from(ScheduleKey::Id(SCHEDULE_DIGEST))),
            ),
            response(0x550, None, Response::SchedulePause(digest_paused())),
        ],
        Opcode::ScheduleResume => vec![
            request(
                0x560,
                None,
                Request::ScheduleResume(ScheduleRef::from(ScheduleKey::Id(SCHEDULE_DIGEST))),
            ),
            response(
                0x560,
                None,
                Response::ScheduleResume(ScheduleInfo {
                    paused: false,
                    updated_at_ms: NOW_MS,
                    // 14:15 UTC, the next quarter hour after now.
                    next_fire_at_ms: Some(NOW_MS + 900_000),
                    ..digest_paused()
                }),
            ),
        ],
        other => unreachable!("{} is not a schedule operation", other.name()),
    }
}

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

/// Error frames of the schedule operations: a bad expression, an unknown zone, the schedule
/// cap, an unknown schedule and a queue that a schedule still targets.
pub fn schedule_error_vectors() -> Vec<Vector> {
    vec![
        error(
            "cron",
            Opcode::ScheduleCreate,
            0x500,
            ErrorBody::new(
                ErrorCode::InvalidArgument,
                "cron: \"0 30 2 * *\" is not a cron expression with seconds: Invalid pattern: \
                 Pattern must have 6 or 7 fields when seconds are required and years are \
                 optional.",
            ),
        ),
        error(
            "time_zone",
            Opcode::ScheduleCreate,
            0x500,
            ErrorBody::new(
                ErrorCode::InvalidArgument,
                "time_zone: \"Europe/Berlln\" is not an IANA time zone name (such as \
                 Europe/Berlin or UTC)",
            ),
        ),
        error(
            "schedules_per_project",
            Opcode::ScheduleCreate,
            0x500,
            ErrorBody::new(
                ErrorCode::QuotaExceeded,
                "the plan allows 1000 schedules_per_project; there are 1000",
            )
            .with_details(ErrorDetails::Quota {
                limit: text("schedules_per_project"),
                current: SCHEDULES_PER_PROJECT_MAX as u64,
                max: SCHEDULES_PER_PROJECT_MAX as u64,
            }),
        ),
        error(
            "schedule",
            Opcode::ScheduleGet,
            0x510,
            ErrorBody::new(ErrorCode::NotFound, "schedule 3 not found"),
        ),
        error(
            "schedule_target",
            Opcode::QueueDelete,
            0x106,
            ErrorBody::new(
                ErrorCode::Conflict,
                "queue \"reports.daily\" is the target of schedule \"nightly-report\"; delete \
                 the schedule or move it to another queue first",
            ),
        ),
    ]
}
