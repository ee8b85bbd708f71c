//! Schedule bodies: cron schedules that enqueue a job template at the fire times of a cron
//! expression (with a seconds field) evaluated in an IANA time zone.
//!
//! `ScheduleInfo` is nested in `ScheduleList`, so (like every nested type) it can never grow
//! in protocol version 1: its fields are chosen to cover what an operator needs to see.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::types::{JobId, NewJob};

/// A schedule id, unique in the broker for its whole life.
pub type ScheduleId = u64;

/// Metadata key the broker adds to every job a schedule enqueues: the schedule's id, in
/// decimal.
pub const SCHEDULE_ID_METADATA_KEY: &str = "taskforge.schedule_id";

/// Metadata key the broker adds to every job a schedule enqueues: the fire time the job
/// stands for, in ms since the Unix epoch, in decimal (for a catch-up run after downtime,
/// the first fire time that was missed).
pub const FIRE_AT_METADATA_KEY: &str = "taskforge.fire_at_ms";

/// What a fire time does while the job of the schedule's previous run is still live.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum OverlapPolicy {
    /// Enqueue nothing while the previous run's job is pending or leased (not finished);
    /// the fire time is skipped.
    Skip,
    /// Enqueue at every fire time, whatever the previous run's job is doing.
    Allow,
}

impl OverlapPolicy {
    /// The lower-case name used in text output.
    pub fn name(self) -> &'static str {
        match self {
            OverlapPolicy::Skip => "skip",
            OverlapPolicy::Allow => "allow",
        }
    }
}

/// What the broker does at start-up about fire times that passed while it was down.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum MissedRunPolicy {
    /// One or more fire times were missed: enqueue exactly one job at once, then go on
    /// with the next fire time after now.
    RunOnce,
    /// Skip the missed fire times and wait for the next one after now.
    Skip,
}

impl MissedRunPolicy {
    /// The lower-case name used in text output.
    pub fn name(self) -> &'static str {
        match self {
            MissedRunPolicy::RunOnce => "run_once",
            MissedRunPolicy::Skip => "skip",
        }
    }
}

/// How a request names a schedule: by id or by its name in the project.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKey {
    /// By id.
    Id(ScheduleId),
    /// By name.
    Name(String),
}

impl std::fmt::Display for ScheduleKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScheduleKey::Id(id) => write!(f, "{id}"),
            ScheduleKey::Name(name) => write!(f, "{name:?}"),
        }
    }
}

/// A request naming one schedule (SCHEDULE_GET, DELETE, PAUSE, RESUME).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct ScheduleRef {
    /// The schedule.
    pub schedule: ScheduleKey,
}

impl From<ScheduleKey> for ScheduleRef {
    fn from(schedule: ScheduleKey) -> ScheduleRef {
        ScheduleRef { schedule }
    }
}

/// SCHEDULE_CREATE request.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct ScheduleCreate {
    /// Unique in the project: 1..=`SCHEDULE_NAME_BYTES_MAX` bytes of `[A-Za-z0-9._:-]`,
    /// not all digits.
    pub name: String,
    /// Six fields (seconds first) or seven (a year last), at most
    /// `CRON_EXPRESSION_BYTES_MAX` bytes.
    pub cron: String,
    /// An IANA time zone name such as `Europe/Berlin` or `UTC`.
    pub time_zone: String,
    /// The queue the jobs go to; must exist.
    pub queue: String,
    /// The job to enqueue at each fire time. Its `queue` must equal `queue`; `run_at_ms` and
    /// `delay_ms` must be `None`.
    pub template: NewJob,
    /// What a fire time does while the previous run's job is live.
    pub overlap: OverlapPolicy,
    /// What start-up does about fire times missed while the broker was down.
    pub missed_runs: MissedRunPolicy,
    /// Create it paused.
    pub paused: bool,
}

/// SCHEDULE_UPDATE request: `None` fields stay as they are.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct ScheduleUpdate {
    /// The schedule.
    pub schedule: ScheduleKey,
    /// A new name.
    pub name: Option<String>,
    /// A new cron expression; the next fire time is computed again from now.
    pub cron: Option<String>,
    /// A new time zone; the next fire time is computed again from now.
    pub time_zone: Option<String>,
    /// A new queue; the stored template's queue changes with it.
    pub queue: Option<String>,
    /// A new template; its `queue` must equal the schedule's queue (the new one when
    /// `queue` is set too).
    pub template: Option<NewJob>,
    /// A new overlap policy.
    pub overlap: Option<OverlapPolicy>,
    /// A new missed-run policy.
    pub missed_runs: Option<MissedRunPolicy>,
}

/// A schedule as the broker reports it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct ScheduleInfo {
    /// Its id.
    pub schedule_id: ScheduleId,
    /// Its name, unique in the project.
    pub name: String,
    /// The cron expression, as given.
    pub cron: String,
    /// The IANA time zone the expression is evaluated in.
    pub time_zone: String,
    /// The queue its jobs go to.
    pub queue: String,
    /// The job it enqueues (its `queue` is `queue`).
    pub template: NewJob,
    /// What a fire time does while the previous run's job is live.
    pub overlap: OverlapPolicy,
    /// What start-up does about missed fire times.
    pub missed_runs: MissedRunPolicy,
    /// True while it does not fire.
    pub paused: bool,
    /// When it was created, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// When SCHEDULE_UPDATE, PAUSE or RESUME last changed it.
    pub updated_at_ms: u64,
    /// Its next fire time; `None` while paused or when the expression has no later time.
    pub next_fire_at_ms: Option<u64>,
    /// When it last enqueued a job.
    pub last_fired_at_ms: Option<u64>,
    /// The job it last enqueued.
    pub last_job_id: Option<JobId>,
    /// Jobs it has enqueued.
    pub fired_count: u64,
    /// Fire times (or runs of missed fire times) that enqueued nothing.
    pub skipped_count: u64,
    /// When a fire time last enqueued nothing.
    pub last_skipped_at_ms: Option<u64>,
    /// Why, in words.
    pub last_skip_reason: Option<String>,
}

/// SCHEDULE_LIST request.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct ScheduleListRequest {
    /// Only schedules that enqueue into this queue; `None` for all.
    pub queue: Option<String>,
    /// Start after this schedule id (the previous page's `next_after`).
    pub after: Option<ScheduleId>,
    /// Page size, at most `LIST_LIMIT_MAX`.
    pub limit: u32,
}

/// SCHEDULE_LIST response.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct ScheduleList {
    /// Schedules in id order.
    pub schedules: Vec<ScheduleInfo>,
    /// Pass as `after` for the next page; `None` on the last page.
    pub next_after: Option<ScheduleId>,
}
