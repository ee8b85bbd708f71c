//! Worker operations: registration, heartbeats, listings, admin orders and assignments.
//! Validation happens here; the rules live in the core ([`super::core`]'s workers module).

use taskforge_protocol::{
    limits, Assignment, AssignmentList, ErrorBody, ProjectId, Request, Response, WorkerId,
    WorkerInfo, WorkerList,
};

use super::{validate, Broker};

type Reply<T> = Result<T, ErrorBody>;

/// Bound on a response's bytes besides its items (lengths, options, cursor).
const RESPONSE_OVERHEAD_BYTES: usize = 64;

/// The encoded size of one item of a listing.
pub(super) fn encoded_bytes<T: bincode::Encode>(item: &T) -> usize {
    let mut out = bytes::BytesMut::new();
    taskforge_protocol::encode_body(item, &mut out);
    out.len()
}

/// Keeps the leading items that fit in `budget_bytes` (at least one, which configuration
/// guarantees fits). Returns whether items were dropped.
pub(super) fn keep_within<T>(
    items: &mut Vec<T>,
    budget_bytes: usize,
    size: impl Fn(&T) -> usize,
) -> bool {
    let mut used_bytes = RESPONSE_OVERHEAD_BYTES;
    let fitting = items
        .iter()
        .position(|item| {
            used_bytes += size(item);
            used_bytes > budget_bytes
        })
        .map_or(items.len(), |first_over| first_over.max(1));
    let dropped = fitting < items.len();
    items.truncate(fitting);
    dropped
}

impl Broker {
    /// Runs a worker operation in the session's project.
    pub(super) async fn handle_workers(
        &self,
        project_id: ProjectId,
        request: Request,
    ) -> Reply<Response> {
        match request {
            Request::WorkerRegister(body) => {
                validate::worker_register(&body)?;
                let info = self
                    .mutate(|core, now_ms| core.register_worker(project_id, body, now_ms))
                    .await?;
                tracing::info!(
                    project_id,
                    worker_id = info.worker_id,
                    name = %info.name,
                    hostname = %info.hostname,
                    pid = info.pid,
                    "worker registered"
                );
                Ok(Response::WorkerRegister(info))
            }
            Request::Heartbeat(body) => {
                let reply = self
                    .mutate(|core, now_ms| core.heartbeat(project_id, &body, now_ms))
                    .await?;
                if body.leaving {
                    tracing::info!(project_id, worker_id = body.worker_id, "worker left");
                }
                Ok(Response::Heartbeat(reply))
            }
            Request::WorkerList(body) => {
                let limit = validate::list_limit(body.limit)?;
                let (mut workers, mut next_after) = self
                    .mutate(|core, _| {
                        Ok(core.worker_list(project_id, body.state, body.after, limit))
                    })
                    .await?;
                if keep_within(
                    &mut workers,
                    self.limits.response_bytes_max as usize,
                    encoded_bytes,
                ) {
                    next_after = workers.last().map(|worker| worker.worker_id);
                }
                Ok(Response::WorkerList(WorkerList {
                    workers,
                    next_after,
                }))
            }
            Request::WorkerGet(body) => Ok(Response::WorkerGet(
                self.mutate(|core, _| core.worker_info(project_id, body.worker_id))
                    .await?,
            )),
            Request::WorkerQuiet(body) => {
                let info = self
                    .mutate(|core, _| core.quiet_worker(project_id, body.worker_id))
                    .await?;
                tracing::info!(
                    project_id,
                    worker_id = body.worker_id,
                    "worker told to quiet"
                );
                Ok(Response::WorkerQuiet(info))
            }
            Request::WorkerTerminate(body) => {
                let grace_ms = body
                    .grace_ms
                    .unwrap_or(limits::WORKER_TERMINATE_GRACE_MS_DEFAULT);
                validate::lease_ms("grace_ms", grace_ms)?;
                let info = self
                    .mutate(|core, now_ms| {
                        core.terminate_worker(project_id, body.worker_id, grace_ms, now_ms)
                    })
                    .await?;
                tracing::info!(
                    project_id,
                    worker_id = body.worker_id,
                    grace_ms,
                    "worker told to terminate"
                );
                Ok(Response::WorkerTerminate(info))
            }
            Request::WorkerAssign(body) => {
                validate::queue_assignments(&body.queues)?;
                let info: WorkerInfo = self
                    .mutate(|core, now_ms| {
                        core.assign_worker(project_id, body.worker_id, &body.queues, now_ms)
                    })
                    .await?;
                tracing::info!(
                    project_id,
                    worker_id = body.worker_id,
                    assignments_version = info.assignments_version,
                    "worker assignments changed"
                );
                Ok(Response::WorkerAssign(info))
            }
            Request::AssignmentList(body) => {
                if let Some(queue) = &body.queue {
                    validate::queue_name(queue)?;
                }
                let limit = validate::list_limit(body.limit)?;
                let (mut by_worker, mut next_after) = self
                    .mutate(|core, _| {
                        Ok(core.assignment_list(
                            project_id,
                            body.queue.as_deref(),
                            body.worker_id,
                            body.after,
                            limit,
                        ))
                    })
                    .await?;
                let size = |(_, assignments): &(WorkerId, Vec<Assignment>)| {
                    assignments.iter().map(encoded_bytes).sum::<usize>()
                };
                if keep_within(
                    &mut by_worker,
                    self.limits.response_bytes_max as usize,
                    size,
                ) {
                    next_after = by_worker.last().map(|(worker_id, _)| *worker_id);
                }
                Ok(Response::AssignmentList(AssignmentList {
                    assignments: by_worker
                        .into_iter()
                        .flat_map(|(_, assignments)| assignments)
                        .collect(),
                    next_after,
                }))
            }
            other => unreachable!("{:?} is not a worker operation", other.opcode()),
        }
    }
}
