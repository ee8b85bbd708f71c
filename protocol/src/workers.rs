//! Worker bodies: registration, heartbeats, admin orders and queue assignments.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::types::JobId;

/// A worker id, unique in the broker for its whole life.
pub type WorkerId = u64;

/// Where a worker is in its life.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Heartbeating and fetching.
    Active,
    /// Told to stop fetching and finish what it holds.
    Quiet,
    /// Told to finish or fail what it holds by a deadline, then exit.
    Terminating,
    /// Missed heartbeats for the heartbeat timeout; its leases were released.
    Lost,
    /// Left cleanly (its last heartbeat said so).
    Stopped,
}

impl WorkerState {
    /// The lower-case name used in text output.
    pub fn name(self) -> &'static str {
        match self {
            WorkerState::Active => "active",
            WorkerState::Quiet => "quiet",
            WorkerState::Terminating => "terminating",
            WorkerState::Lost => "lost",
            WorkerState::Stopped => "stopped",
        }
    }

    /// True while the worker is expected to heartbeat (active, quiet or terminating).
    pub fn is_live(self) -> bool {
        matches!(
            self,
            WorkerState::Active | WorkerState::Quiet | WorkerState::Terminating
        )
    }
}

/// One queue a worker serves, as registered or assigned.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct QueueAssignment {
    /// The queue; must exist in the worker's project.
    pub queue: String,
    /// Relative share of fetches (1..=`ASSIGNMENT_WEIGHT_MAX`); the list's order is the
    /// strict preference order when every weight is equal.
    pub weight: u32,
    /// False to keep the assignment on record while the worker stops serving the queue.
    pub active: bool,
}

/// A stored queue-worker assignment.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Assignment {
    /// The worker.
    pub worker_id: WorkerId,
    /// The worker's name.
    pub worker_name: String,
    /// The queue.
    pub queue: String,
    /// Relative share of fetches.
    pub weight: u32,
    /// Position in the worker's preference order, from 0.
    pub position: u32,
    /// Whether the worker serves the queue now.
    pub active: bool,
    /// When this assignment was made or last changed, ms since the Unix epoch.
    pub since_ms: u64,
}

/// WORKER_REGISTER request.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct WorkerRegister {
    /// Display name (1..=`NAME_BYTES_MAX` bytes).
    pub name: String,
    /// The host it runs on.
    pub hostname: String,
    /// Its process id.
    pub pid: u32,
    /// Its software version.
    pub version: String,
    /// Free-form labels; keys are unique.
    pub labels: Vec<(String, String)>,
    /// Jobs it runs at once (1..=`WORKER_CONCURRENCY_MAX`).
    pub concurrency: u32,
    /// Queues it serves, in preference order (1..=`FETCH_QUEUES_MAX`).
    pub queues: Vec<QueueAssignment>,
}

/// A worker as the broker reports it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Its id.
    pub worker_id: WorkerId,
    /// Display name.
    pub name: String,
    /// The host it runs on.
    pub hostname: String,
    /// Its process id.
    pub pid: u32,
    /// Its software version.
    pub version: String,
    /// Free-form labels.
    pub labels: Vec<(String, String)>,
    /// Jobs it runs at once.
    pub concurrency: u32,
    /// Its state.
    pub state: WorkerState,
    /// When it registered, ms since the Unix epoch.
    pub registered_at_ms: u64,
    /// Its last heartbeat (or registration).
    pub last_heartbeat_at_ms: u64,
    /// Jobs it said it was running at its last heartbeat.
    pub in_flight: u32,
    /// Jobs leased to it now, as the broker counts them.
    pub leased_jobs: u32,
    /// While terminating: when it must be gone.
    pub terminate_deadline_ms: Option<u64>,
    /// Bumped at every assignment change; the worker sends back the one it knows.
    pub assignments_version: u64,
    /// The queues it serves, in preference order.
    pub assignments: Vec<Assignment>,
}

/// HEARTBEAT request.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The worker.
    pub worker_id: WorkerId,
    /// Jobs it is running now.
    pub in_flight: u32,
    /// The assignments version it knows; a newer one comes back in the reply.
    pub assignments_version: u64,
    /// True on its last heartbeat before a clean exit: it becomes `stopped` and any lease
    /// it still holds is released at once.
    pub leaving: bool,
}

/// What a heartbeat's reply orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerCommand {
    /// Carry on.
    Run,
    /// Stop fetching; finish what you hold.
    Quiet,
    /// Stop fetching; finish or fail what you hold by this time (ms since the Unix
    /// epoch), then exit.
    Terminate {
        /// The deadline.
        deadline_ms: u64,
    },
}

/// HEARTBEAT response.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// What to do.
    pub command: WorkerCommand,
    /// Send the next heartbeat within this long.
    pub heartbeat_interval_ms: u32,
    /// The current assignments version.
    pub assignments_version: u64,
    /// The queues to serve, when the version the worker sent is not the current one.
    pub assignments: Option<Vec<QueueAssignment>>,
    /// Jobs leased to this worker whose cancel was requested: stop them and FAIL or ACK.
    pub cancelled_jobs: Vec<JobId>,
}

/// A request naming one worker (WORKER_GET, WORKER_QUIET).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct WorkerRef {
    /// The worker.
    pub worker_id: WorkerId,
}

/// WORKER_LIST request.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct WorkerListRequest {
    /// Only workers in this state; `None` for all.
    pub state: Option<WorkerState>,
    /// Start after this worker id (the previous page's `next_after`).
    pub after: Option<WorkerId>,
    /// Page size, at most `LIST_LIMIT_MAX`.
    pub limit: u32,
}

/// WORKER_LIST response.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct WorkerList {
    /// Workers in id order.
    pub workers: Vec<WorkerInfo>,
    /// Pass as `after` for the next page; `None` on the last page.
    pub next_after: Option<WorkerId>,
}

/// WORKER_TERMINATE request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct WorkerTerminate {
    /// The worker.
    pub worker_id: WorkerId,
    /// How long it has to finish, from now; `None` for `WORKER_TERMINATE_GRACE_MS_DEFAULT`.
    pub grace_ms: Option<u32>,
}

/// WORKER_ASSIGN request: replaces the worker's assignments.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct WorkerAssign {
    /// The worker.
    pub worker_id: WorkerId,
    /// Its new queues, in preference order (1..=`FETCH_QUEUES_MAX`).
    pub queues: Vec<QueueAssignment>,
}

/// ASSIGNMENT_LIST request: the assignments of one queue, of one worker, or of every
/// worker of the project.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct AssignmentListRequest {
    /// Only assignments to this queue.
    pub queue: Option<String>,
    /// Only this worker's assignments.
    pub worker_id: Option<WorkerId>,
    /// Start after this worker id (the previous page's `next_after`).
    pub after: Option<WorkerId>,
    /// Most workers whose assignments one page covers, at most `LIST_LIMIT_MAX`.
    pub limit: u32,
}

/// ASSIGNMENT_LIST response.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct AssignmentList {
    /// Assignments by worker id, then position.
    pub assignments: Vec<Assignment>,
    /// Pass as `after` for the next page; `None` on the last page.
    pub next_after: Option<WorkerId>,
}
