//! Worker operations: registration, heartbeats, listings, admin orders and assignments.
//! Validation happens here; the rules live in the core ([`super::core`]'s workers module).

use taskforge_protocol::{
    limits, Assignment, AssignmentList, ErrorBody, ProjectId, Request, Response, WorkerId,
    WorkerInfo, WorkerList,
};

use super::budget::{encoded_bytes, keep_within};
use super::{validate, Broker};

type Reply<T> = Result<T, ErrorBody>;

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
