//! Value types shared by many messages: ids, job settings, job views, queue views.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

/// A job id: a UUID v7 (time-ordered) as 16 raw bytes on the wire, written
/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
pub struct JobId(pub [u8; 16]);

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (index, byte) in self.0.iter().enumerate() {
            if matches!(index, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JobId({self})")
    }
}

impl std::str::FromStr for JobId {
    type Err = String;

    fn from_str(text: &str) -> Result<JobId, String> {
        let hex: Vec<u8> = text.bytes().filter(|byte| *byte != b'-').collect();
        // Checked here because `u8::from_str_radix` alone would also accept a leading `+`.
        if hex.len() != 32 || !hex.iter().all(u8::is_ascii_hexdigit) {
            return Err(format!("job id {text:?} is not 32 hex digits"));
        }
        let mut bytes = [0u8; 16];
        for (index, pair) in hex.chunks(2).enumerate() {
            let pair = std::str::from_utf8(pair).map_err(|_| format!("job id {text:?}"))?;
            bytes[index] =
                u8::from_str_radix(pair, 16).map_err(|_| format!("job id {text:?} is not hex"))?;
        }
        Ok(JobId(bytes))
    }
}

impl Serialize for JobId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for JobId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<JobId, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A project id. Project 1 is the built-in default project the root token works in.
pub type ProjectId = u64;

/// A lease id: unique across the broker's whole life, restarts included.
pub type LeaseId = u64;

/// The states a job can be in. A failed attempt that will be retried is `Scheduled` (with
/// `last_error` set); there is no resting `failed` state.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its `run_at` time (delayed, or a retry waiting out its backoff).
    Scheduled,
    /// Waiting for its dependencies.
    Blocked,
    /// Deliverable now.
    Ready,
    /// Delivered to a worker under a lease.
    Leased,
    /// Acknowledged. Final.
    Succeeded,
    /// Attempts exhausted or failed with retry = never. Final until redriven.
    Dead,
    /// Cancelled. Final.
    Cancelled,
    /// Not started before its expiry. Final.
    Expired,
}

impl JobState {
    /// Every state, in wire order.
    pub const ALL: [JobState; 8] = [
        JobState::Scheduled,
        JobState::Blocked,
        JobState::Ready,
        JobState::Leased,
        JobState::Succeeded,
        JobState::Dead,
        JobState::Cancelled,
        JobState::Expired,
    ];

    /// The lower-case name used in text output.
    pub fn name(self) -> &'static str {
        match self {
            JobState::Scheduled => "scheduled",
            JobState::Blocked => "blocked",
            JobState::Ready => "ready",
            JobState::Leased => "leased",
            JobState::Succeeded => "succeeded",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
            JobState::Expired => "expired",
        }
    }

    /// True for states a job never leaves on its own.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Dead | JobState::Cancelled | JobState::Expired
        )
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How retry delays grow: attempt `n` (1-based) waits
/// `min(max_ms, initial_ms × (factor_percent / 100)^(n-1))`, then a random spread of
/// ± `jitter_percent` of that delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Backoff {
    /// Delay before the first retry.
    pub initial_ms: u32,
    /// Growth per attempt in percent; 100 keeps the delay constant, 200 doubles it.
    pub factor_percent: u32,
    /// Cap on any one delay.
    pub max_ms: u32,
    /// Random spread in percent of the delay (0..=100).
    pub jitter_percent: u8,
}

/// Queue settings on create and update. `None` means "the default" on create and "leave
/// unchanged" on update.
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct QueueSettings {
    /// Priority for jobs that do not set one.
    pub priority: Option<i32>,
    /// Attempts for jobs that do not set them.
    pub max_attempts: Option<u32>,
    /// Retry delays for jobs that do not set them.
    pub backoff: Option<Backoff>,
    /// Lease for FETCHes and jobs that do not set one.
    pub lease_ms: Option<u32>,
    /// How long finished jobs are kept; 0 goes back to the plan's retention.
    pub retention_ms: Option<u64>,
    /// Most jobs leased at once; 0 removes the limit.
    pub in_flight_max: Option<u32>,
    /// Most deliveries per second; 0 removes the limit.
    pub deliveries_per_second: Option<u32>,
}

/// A queue's effective defaults.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct QueueDefaults {
    /// Priority for jobs that do not set one.
    pub priority: i32,
    /// Attempts for jobs that do not set them.
    pub max_attempts: u32,
    /// Retry delays for jobs that do not set them.
    pub backoff: Backoff,
    /// Lease for FETCHes and jobs that do not set one.
    pub lease_ms: u32,
    /// How long finished jobs are kept; `None` takes the plan's retention.
    pub retention_ms: Option<u64>,
    /// Most jobs leased at once; `None` for no limit. FETCH skips a queue at its limit.
    pub in_flight_max: Option<u32>,
    /// Most deliveries per second (burst of one second's worth); `None` for no limit.
    pub deliveries_per_second: Option<u32>,
}

/// A parent named by a new job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParentRef {
    /// An existing job of the same project (any queue).
    Job(JobId),
    /// The job at this index of the same ENQUEUE_BATCH.
    Batch(u32),
}

/// What a child does when a parent ends dead, cancelled or expired.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Encode, Decode, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ParentFailure {
    /// The child is cancelled, and so are its own children that would cancel.
    #[default]
    Cancel,
    /// The parent counts as done: the child runs once its other parents are done.
    Run,
}

/// How long a unique key holds after its job was enqueued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UniqueUntil {
    /// Until the job is first leased.
    Started,
    /// Until the job reaches a final state.
    Finished,
}

/// A unique key: while it holds, an ENQUEUE with the same key in the same queue returns
/// the existing job instead of creating one. It holds while `until` holds, or while the
/// existing job is younger than `window_ms`, whichever is longer; at least one is set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode, Serialize, Deserialize)]
pub struct UniqueKey {
    /// The key, 1..=`UNIQUE_KEY_BYTES_MAX` bytes.
    pub key: String,
    /// Holds until the existing job starts or finishes.
    pub until: Option<UniqueUntil>,
    /// Holds for this long after the existing job was enqueued.
    pub window_ms: Option<u64>,
}

/// How many jobs of a queue are in each state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct JobCounts {
    /// Waiting for their time.
    pub scheduled: u64,
    /// Waiting for dependencies.
    pub blocked: u64,
    /// Deliverable now.
    pub ready: u64,
    /// Held by workers.
    pub leased: u64,
    /// Acknowledged and still retained.
    pub succeeded: u64,
    /// Dead letters.
    pub dead: u64,
    /// Cancelled and still retained.
    pub cancelled: u64,
    /// Expired and still retained.
    pub expired: u64,
}

/// A queue as the broker reports it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct QueueInfo {
    /// The queue's name, unique in its project.
    pub name: String,
    /// Effective defaults for its jobs.
    pub defaults: QueueDefaults,
    /// True while deliveries are stopped.
    pub paused: bool,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Jobs per state.
    pub counts: JobCounts,
}

/// A job to enqueue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct NewJob {
    /// The queue it goes to; must exist.
    pub queue: String,
    /// Opaque bytes handed to the worker.
    pub payload: Vec<u8>,
    /// Higher runs first; `None` takes the queue's default.
    pub priority: Option<i32>,
    /// Earliest run time, ms since the Unix epoch. Wins over `delay_ms` when both are set.
    pub run_at_ms: Option<u64>,
    /// Earliest run time relative to now.
    pub delay_ms: Option<u64>,
    /// Attempts before the job is dead; `None` takes the queue's default.
    pub max_attempts: Option<u32>,
    /// Retry delays; `None` takes the queue's default.
    pub backoff: Option<Backoff>,
    /// Lease when a FETCH names none; `None` takes the queue's default.
    pub lease_ms: Option<u32>,
    /// Free-form string pairs, returned with the job. Keys are unique.
    pub metadata: Vec<(String, String)>,
    /// Jobs that must succeed before this one runs (at most `PARENTS_PER_JOB_MAX`); the
    /// job stays `blocked` until then.
    pub depends_on: Vec<ParentRef>,
    /// What to do when a parent ends dead, cancelled or expired.
    pub on_parent_failure: ParentFailure,
    /// Deduplication: see [`UniqueKey`].
    pub unique: Option<UniqueKey>,
    /// The job expires if it has not started by this time (ms since the Unix epoch).
    pub expires_at_ms: Option<u64>,
    /// The job expires if it has not started this long after enqueue. The earlier of
    /// `expires_at_ms` and this wins.
    pub ttl_ms: Option<u64>,
}

/// A job handed to a worker by FETCH.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct LeasedJob {
    /// The job.
    pub job_id: JobId,
    /// The lease to present on ACK, FAIL and EXTEND.
    pub lease_id: LeaseId,
    /// The queue it came from.
    pub queue: String,
    /// The payload as enqueued.
    pub payload: Vec<u8>,
    /// This attempt's number, starting at 1.
    pub attempt: u32,
    /// Attempts the job has in all.
    pub max_attempts: u32,
    /// The job's priority.
    pub priority: i32,
    /// When the lease ends unless extended, ms since the Unix epoch.
    pub lease_deadline_ms: u64,
    /// When the job was enqueued.
    pub created_at_ms: u64,
    /// The job's metadata.
    pub metadata: Vec<(String, String)>,
}

/// Everything about one job.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct JobInfo {
    /// The job.
    pub job_id: JobId,
    /// Its queue.
    pub queue: String,
    /// Its state now.
    pub state: JobState,
    /// Its priority.
    pub priority: i32,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Its metadata.
    pub metadata: Vec<(String, String)>,
    /// Attempts started so far.
    pub attempts: u32,
    /// Attempts it has in all.
    pub max_attempts: u32,
    /// Its retry delays.
    pub backoff: Backoff,
    /// Its default lease.
    pub lease_ms: u32,
    /// When it was enqueued.
    pub created_at_ms: u64,
    /// When it becomes (or became) deliverable.
    pub run_at_ms: u64,
    /// When its state last changed.
    pub updated_at_ms: u64,
    /// When it reached a final state.
    pub finished_at_ms: Option<u64>,
    /// The current lease's deadline while leased.
    pub lease_deadline_ms: Option<u64>,
    /// True when a cancel is waiting for the lease holder.
    pub cancel_requested: bool,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// The result its ACK stored.
    pub result: Option<Vec<u8>>,
    /// How many times it was delivered.
    pub executions: u32,
    /// The latest delivery (running or ended). Boxed only to keep the in-memory size of
    /// responses small; the encoding is that of a plain option.
    pub latest_execution: Option<Box<crate::executions::ExecutionInfo>>,
    /// The last progress a worker reported.
    pub progress: Option<crate::executions::ProgressInfo>,
    /// The jobs it depends on, as enqueued.
    pub parents: Vec<JobId>,
    /// Parents that have not finished yet (or not in a way that releases it).
    pub parents_remaining: u32,
    /// What it does when a parent ends dead, cancelled or expired.
    pub on_parent_failure: ParentFailure,
    /// Jobs that depend on it, oldest first, at most `CHILDREN_SHOWN_MAX`.
    pub children: Vec<JobId>,
    /// Its unique key, if it was enqueued with one.
    pub unique_key: Option<String>,
    /// When it expires unless started.
    pub expires_at_ms: Option<u64>,
}

/// A job in a listing: [`JobInfo`] without payload and result.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct JobSummary {
    /// The job.
    pub job_id: JobId,
    /// Its queue.
    pub queue: String,
    /// Its state now.
    pub state: JobState,
    /// Its priority.
    pub priority: i32,
    /// Attempts started so far.
    pub attempts: u32,
    /// Attempts it has in all.
    pub max_attempts: u32,
    /// When it was enqueued.
    pub created_at_ms: u64,
    /// When it becomes (or became) deliverable.
    pub run_at_ms: u64,
    /// When its state last changed.
    pub updated_at_ms: u64,
    /// The last failure's message.
    pub last_error: Option<String>,
}
