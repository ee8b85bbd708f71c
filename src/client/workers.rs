//! One typed method per worker operation (opcodes 0x04xx): registration, heartbeats, the
//! admin orders (quiet, terminate) and queue assignments. Each builds the request body, goes
//! through [`Client::call`] and unpacks the matching response.
//!
//! Workers belong to the session's project: a worker id of another project is
//! [`taskforge_protocol::ErrorCode::NotFound`], exactly like one that does not exist.
//! [`crate::client::Worker`] registers and heartbeats by itself; these are for other
//! runtimes and for administration.

use taskforge_protocol::{
    AssignmentList, AssignmentListRequest, Heartbeat, HeartbeatResponse, QueueAssignment,
    WorkerAssign, WorkerId, WorkerInfo, WorkerList, WorkerListRequest, WorkerRef, WorkerRegister,
    WorkerState, WorkerTerminate,
};

use super::{Client, ClientError};

impl Client {
    /// WORKER_REGISTER: registers a worker process serving `request.queues` (each must
    /// exist). The answer carries its id, state `active` and `assignments_version` 1. One
    /// worker over the plan's limit is [`taskforge_protocol::ErrorCode::QuotaExceeded`].
    pub async fn register_worker(
        &self,
        request: WorkerRegister,
    ) -> Result<WorkerInfo, ClientError> {
        call_expecting!(self, WorkerRegister, request)
    }

    /// HEARTBEAT: tells the broker the worker is alive and how many jobs it runs. The reply
    /// orders Run, Quiet or Terminate, says when to heartbeat next, carries the assignments
    /// when `heartbeat.assignments_version` is stale, and lists the worker's jobs whose
    /// cancel was requested. `leaving = true` ends the worker (state `stopped`, its leases
    /// released). A stopped or unknown worker is [`taskforge_protocol::ErrorCode::NotFound`]:
    /// register again.
    pub async fn heartbeat(&self, heartbeat: Heartbeat) -> Result<HeartbeatResponse, ClientError> {
        call_expecting!(self, Heartbeat, heartbeat)
    }

    /// WORKER_LIST: one page of the project's workers in id order, optionally in one state,
    /// starting after `after`.
    pub async fn worker_list(
        &self,
        state: Option<WorkerState>,
        after: Option<WorkerId>,
        limit: u32,
    ) -> Result<WorkerList, ClientError> {
        call_expecting!(
            self,
            WorkerList,
            WorkerListRequest {
                state,
                after,
                limit
            }
        )
    }

    /// WORKER_GET: reads one worker, with its assignments.
    pub async fn worker_get(&self, worker_id: WorkerId) -> Result<WorkerInfo, ClientError> {
        call_expecting!(self, WorkerGet, WorkerRef { worker_id })
    }

    /// WORKER_QUIET: orders a worker to stop fetching and finish what it holds (it learns
    /// of it at its next heartbeat). A lost, stopped or terminating worker is
    /// [`taskforge_protocol::ErrorCode::Conflict`].
    pub async fn worker_quiet(&self, worker_id: WorkerId) -> Result<WorkerInfo, ClientError> {
        call_expecting!(self, WorkerQuiet, WorkerRef { worker_id })
    }

    /// WORKER_TERMINATE: orders a worker to stop fetching, finish or fail what it holds
    /// within `grace_ms` (`None`: the broker's default,
    /// [`taskforge_protocol::limits::WORKER_TERMINATE_GRACE_MS_DEFAULT`]) and exit. A lost
    /// or stopped worker is [`taskforge_protocol::ErrorCode::Conflict`].
    pub async fn worker_terminate(
        &self,
        worker_id: WorkerId,
        grace_ms: Option<u32>,
    ) -> Result<WorkerInfo, ClientError> {
        call_expecting!(
            self,
            WorkerTerminate,
            WorkerTerminate {
                worker_id,
                grace_ms
            }
        )
    }

    /// WORKER_ASSIGN: replaces a worker's queues (in preference order, each with a weight
    /// and an active flag) and bumps its assignments version; the worker learns the new
    /// list at its next heartbeat.
    pub async fn worker_assign(
        &self,
        worker_id: WorkerId,
        queues: Vec<QueueAssignment>,
    ) -> Result<WorkerInfo, ClientError> {
        call_expecting!(self, WorkerAssign, WorkerAssign { worker_id, queues })
    }

    /// ASSIGNMENT_LIST: one page of queue-worker assignments, filtered by queue and/or
    /// worker, paged by worker id.
    pub async fn assignment_list(
        &self,
        request: AssignmentListRequest,
    ) -> Result<AssignmentList, ClientError> {
        call_expecting!(self, AssignmentList, request)
    }
}
