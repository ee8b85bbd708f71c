//! Registered workers: registration, heartbeats, admin orders, queue assignments, and
//! the release of a lost worker's leases.
//!
//! A worker's heartbeat time lives only in memory (no write per heartbeat); its record is
//! rewritten when its state or assignments change. After a restart every live worker gets
//! a fresh heartbeat timeout, so a broker restart never makes workers lost.

use std::cmp::Reverse;
use std::collections::BTreeSet;

use taskforge_protocol::{
    Assignment, ExecutionOutcome, Heartbeat, HeartbeatResponse, JobId, ProjectId, QueueAssignment,
    WorkerCommand, WorkerId, WorkerInfo, WorkerRegister, WorkerState,
};

use super::{Core, CoreError};
use crate::storage::records::{self, StateTag};
use crate::storage::{keys, Write};

/// The error recorded on executions released because their worker was lost or left.
pub const WORKER_LOST_ERROR: &str = "the worker holding the lease was lost or left";

/// A worker in memory.
#[derive(Debug, Clone)]
pub(super) struct Worker {
    /// Its project.
    pub(super) project_id: ProjectId,
    /// Its stored form; `last_heartbeat_at_ms`, `in_flight` and `leased_jobs` are kept
    /// current in memory only.
    pub(super) info: WorkerInfo,
    /// Jobs leased to it now.
    pub(super) leased: BTreeSet<JobId>,
}

impl Worker {
    fn view(&self) -> WorkerInfo {
        let mut info = self.info.clone();
        info.leased_jobs = u32::try_from(self.leased.len()).unwrap_or(u32::MAX);
        info
    }
}

/// Builds stored assignments from requested ones.
fn assignments(
    worker_id: WorkerId,
    worker_name: &str,
    queues: &[QueueAssignment],
    previous: &[Assignment],
    now_ms: u64,
) -> Vec<Assignment> {
    queues
        .iter()
        .enumerate()
        .map(|(position, queue)| {
            let unchanged = previous.iter().find(|old| {
                old.queue == queue.queue && old.weight == queue.weight && old.active == queue.active
            });
            Assignment {
                worker_id,
                worker_name: worker_name.to_owned(),
                queue: queue.queue.clone(),
                weight: queue.weight,
                position: position as u32,
                active: queue.active,
                since_ms: unchanged.map_or(now_ms, |old| old.since_ms),
            }
        })
        .collect()
}

impl Core {
    /// Restores one stored worker. Live workers get a fresh heartbeat timeout from `now_ms`.
    pub fn restore_worker(&mut self, project_id: ProjectId, mut info: WorkerInfo, now_ms: u64) {
        self.worker_id_next = self.worker_id_next.max(info.worker_id + 1);
        if info.state.is_live() {
            info.last_heartbeat_at_ms = now_ms;
        }
        info.leased_jobs = 0;
        let worker_id = info.worker_id;
        self.workers.insert(
            worker_id,
            Worker {
                project_id,
                info,
                leased: BTreeSet::new(),
            },
        );
        self.arm_worker_timer(worker_id);
    }

    /// Restores the worker id counter.
    pub fn restore_worker_id_next(&mut self, worker_id_next: Option<u64>) {
        if let Some(next) = worker_id_next {
            self.worker_id_next = self.worker_id_next.max(next);
        }
    }

    /// Registers a worker (queues and request already validated, except that the queues
    /// must exist).
    pub fn register_worker(
        &mut self,
        project_id: ProjectId,
        request: WorkerRegister,
        now_ms: u64,
    ) -> Result<WorkerInfo, CoreError> {
        self.check_assigned_queues(project_id, &request.queues)?;
        self.check_worker_quota(project_id)?;
        let worker_id = self.worker_id_next;
        self.worker_id_next += 1;
        self.writes.push(Write::Put(
            keys::META_WORKER_ID_NEXT.to_vec(),
            self.worker_id_next.to_be_bytes().to_vec(),
        ));
        let assignments = assignments(worker_id, &request.name, &request.queues, &[], now_ms);
        let info = WorkerInfo {
            worker_id,
            name: request.name,
            hostname: request.hostname,
            pid: request.pid,
            version: request.version,
            labels: request.labels,
            concurrency: request.concurrency,
            state: WorkerState::Active,
            registered_at_ms: now_ms,
            last_heartbeat_at_ms: now_ms,
            in_flight: 0,
            leased_jobs: 0,
            terminate_deadline_ms: None,
            assignments_version: 1,
            assignments,
        };
        self.workers.insert(
            worker_id,
            Worker {
                project_id,
                info: info.clone(),
                leased: BTreeSet::new(),
            },
        );
        self.persist_worker(worker_id);
        self.arm_worker_timer(worker_id);
        Ok(info)
    }

    /// Records a heartbeat and answers with the worker's orders.
    pub fn heartbeat(
        &mut self,
        project_id: ProjectId,
        request: &Heartbeat,
        now_ms: u64,
    ) -> Result<HeartbeatResponse, CoreError> {
        let timeout_ms = self.settings.heartbeat_timeout_ms;
        let worker = self.worker_mut(project_id, request.worker_id)?;
        let revived = match worker.info.state {
            WorkerState::Stopped => return Err(worker_not_found(request.worker_id)),
            WorkerState::Lost => {
                tracing::info!(worker_id = request.worker_id, "lost worker is back");
                worker.info.state = WorkerState::Active;
                true
            }
            _ => false,
        };
        worker.info.last_heartbeat_at_ms = now_ms;
        worker.info.in_flight = request.in_flight;
        let command = match (worker.info.state, worker.info.terminate_deadline_ms) {
            (WorkerState::Quiet, _) => WorkerCommand::Quiet,
            (WorkerState::Terminating, Some(deadline_ms)) => {
                WorkerCommand::Terminate { deadline_ms }
            }
            _ => WorkerCommand::Run,
        };
        let assignments_version = worker.info.assignments_version;
        let assignments = (request.assignments_version != assignments_version).then(|| {
            worker
                .info
                .assignments
                .iter()
                .map(|assignment| QueueAssignment {
                    queue: assignment.queue.clone(),
                    weight: assignment.weight,
                    active: assignment.active,
                })
                .collect()
        });
        let leased: Vec<JobId> = worker.leased.iter().copied().collect();
        let cancelled_jobs = leased
            .into_iter()
            .filter(|job_id| {
                self.jobs
                    .get(job_id)
                    .is_some_and(|record| record.cancel_requested)
            })
            .collect();
        if request.leaving {
            self.retire_worker(request.worker_id, WorkerState::Stopped, now_ms);
        } else {
            if revived {
                self.persist_worker(request.worker_id);
            }
            self.arm_worker_timer(request.worker_id);
        }
        Ok(HeartbeatResponse {
            command,
            heartbeat_interval_ms: u32::try_from(timeout_ms / 3).unwrap_or(u32::MAX),
            assignments_version,
            assignments,
            cancelled_jobs,
        })
    }

    /// One worker of the project.
    pub fn worker_info(
        &self,
        project_id: ProjectId,
        worker_id: WorkerId,
    ) -> Result<WorkerInfo, CoreError> {
        match self.workers.get(&worker_id) {
            Some(worker) if worker.project_id == project_id => Ok(worker.view()),
            _ => Err(worker_not_found(worker_id)),
        }
    }

    /// A page of the project's workers in id order, and the cursor for the next.
    pub fn worker_list(
        &self,
        project_id: ProjectId,
        state: Option<WorkerState>,
        after: Option<WorkerId>,
        limit: usize,
    ) -> (Vec<WorkerInfo>, Option<WorkerId>) {
        let start = after.map_or(0, |after| after.saturating_add(1));
        let mut matching = self
            .workers
            .range(start..)
            .map(|(_, worker)| worker)
            .filter(|worker| worker.project_id == project_id)
            .filter(|worker| state.is_none_or(|state| worker.info.state == state));
        let page: Vec<WorkerInfo> = matching.by_ref().take(limit).map(Worker::view).collect();
        let next_after = match matching.next() {
            Some(_) => page.last().map(|info| info.worker_id),
            None => None,
        };
        (page, next_after)
    }

    /// Assignments of the project's live workers, filtered by queue and worker, a page of
    /// workers at a time, grouped by worker.
    pub fn assignment_list(
        &self,
        project_id: ProjectId,
        queue: Option<&str>,
        worker_id: Option<WorkerId>,
        after: Option<WorkerId>,
        limit: usize,
    ) -> (Vec<(WorkerId, Vec<Assignment>)>, Option<WorkerId>) {
        let start = after.map_or(0, |after| after.saturating_add(1));
        let mut matching = self
            .workers
            .range(start..)
            .filter(|(_, worker)| worker.project_id == project_id && worker.info.state.is_live())
            .filter(|(id, _)| worker_id.is_none_or(|wanted| **id == wanted))
            .map(|(id, worker)| {
                let assignments: Vec<Assignment> = worker
                    .info
                    .assignments
                    .iter()
                    .filter(|assignment| queue.is_none_or(|queue| assignment.queue == queue))
                    .cloned()
                    .collect();
                (*id, assignments)
            })
            .filter(|(_, assignments)| !assignments.is_empty());
        let page: Vec<(WorkerId, Vec<Assignment>)> = matching.by_ref().take(limit).collect();
        let next_after = match matching.next() {
            Some(_) => page.last().map(|(id, _)| *id),
            None => None,
        };
        (page, next_after)
    }

    /// Orders a worker to stop fetching.
    pub fn quiet_worker(
        &mut self,
        project_id: ProjectId,
        worker_id: WorkerId,
    ) -> Result<WorkerInfo, CoreError> {
        let worker = self.worker_mut(project_id, worker_id)?;
        match worker.info.state {
            WorkerState::Active => worker.info.state = WorkerState::Quiet,
            WorkerState::Quiet => {}
            state => {
                return Err(CoreError::Conflict(format!(
                    "worker {worker_id} is {}",
                    state.name()
                )))
            }
        }
        self.persist_worker(worker_id);
        self.worker_info(project_id, worker_id)
    }

    /// Orders a worker to finish by `now_ms + grace_ms` and exit.
    pub fn terminate_worker(
        &mut self,
        project_id: ProjectId,
        worker_id: WorkerId,
        grace_ms: u32,
        now_ms: u64,
    ) -> Result<WorkerInfo, CoreError> {
        let worker = self.worker_mut(project_id, worker_id)?;
        match worker.info.state {
            // Terminating again sets a new deadline, counted from now.
            WorkerState::Active | WorkerState::Quiet | WorkerState::Terminating => {
                worker.info.state = WorkerState::Terminating;
                worker.info.terminate_deadline_ms = Some(now_ms + u64::from(grace_ms));
            }
            state => {
                return Err(CoreError::Conflict(format!(
                    "worker {worker_id} is {}",
                    state.name()
                )))
            }
        }
        self.persist_worker(worker_id);
        self.worker_info(project_id, worker_id)
    }

    /// Replaces a worker's assignments; it learns them on its next heartbeat.
    pub fn assign_worker(
        &mut self,
        project_id: ProjectId,
        worker_id: WorkerId,
        queues: &[QueueAssignment],
        now_ms: u64,
    ) -> Result<WorkerInfo, CoreError> {
        self.check_assigned_queues(project_id, queues)?;
        let worker = self.worker_mut(project_id, worker_id)?;
        if !worker.info.state.is_live() {
            return Err(CoreError::Conflict(format!(
                "worker {worker_id} is {}",
                worker.info.state.name()
            )));
        }
        worker.info.assignments = assignments(
            worker_id,
            &worker.info.name,
            queues,
            &worker.info.assignments,
            now_ms,
        );
        worker.info.assignments_version += 1;
        self.persist_worker(worker_id);
        self.worker_info(project_id, worker_id)
    }

    /// Checks that a FETCH may lease jobs to `worker_id`.
    pub(super) fn check_fetching_worker(
        &self,
        project_id: ProjectId,
        worker_id: WorkerId,
    ) -> Result<(), CoreError> {
        match self.workers.get(&worker_id) {
            Some(worker) if worker.project_id == project_id => match worker.info.state {
                WorkerState::Active => Ok(()),
                WorkerState::Quiet | WorkerState::Terminating => Err(CoreError::Conflict(format!(
                    "worker {worker_id} is {}: stop fetching",
                    worker.info.state.name()
                ))),
                WorkerState::Lost | WorkerState::Stopped => Err(CoreError::Conflict(format!(
                    "worker {worker_id} is {}: heartbeat or register again",
                    worker.info.state.name()
                ))),
            },
            _ => Err(worker_not_found(worker_id)),
        }
    }

    /// Notes that `job_id` is leased to `worker_id`.
    pub(super) fn attach_lease(&mut self, worker_id: Option<WorkerId>, job_id: JobId) {
        if let Some(worker) = worker_id.and_then(|id| self.workers.get_mut(&id)) {
            worker.leased.insert(job_id);
        }
    }

    /// Notes that `job_id`'s lease held by `worker_id` ended.
    pub(super) fn detach_lease(&mut self, worker_id: Option<WorkerId>, job_id: JobId) {
        if let Some(worker) = worker_id.and_then(|id| self.workers.get_mut(&id)) {
            worker.leased.remove(&job_id);
        }
    }

    /// Fires due worker timers: live workers past their heartbeat timeout are lost; lost
    /// and stopped workers past the retention are forgotten.
    pub(super) fn advance_workers(&mut self, now_ms: u64) {
        while let Some(Reverse((at_ms, worker_id))) = self.worker_timers.peek().copied() {
            if at_ms > now_ms {
                break;
            }
            self.worker_timers.pop();
            let Some(worker) = self.workers.get(&worker_id) else {
                continue;
            };
            if self.worker_deadline(worker) != at_ms {
                continue;
            }
            if worker.info.state.is_live() {
                tracing::warn!(
                    worker_id,
                    name = %worker.info.name,
                    leased = worker.leased.len(),
                    "worker missed its heartbeats: lost, releasing its leases"
                );
                self.workers_lost += 1;
                self.retire_worker(worker_id, WorkerState::Lost, now_ms);
            } else {
                let project_id = worker.project_id;
                self.workers.remove(&worker_id);
                self.writes
                    .push(Write::Delete(keys::worker(project_id, worker_id)));
            }
        }
    }

    /// Makes a worker lost or stopped and releases every lease it holds.
    fn retire_worker(&mut self, worker_id: WorkerId, state: WorkerState, now_ms: u64) {
        let Some(worker) = self.workers.get_mut(&worker_id) else {
            return;
        };
        worker.info.state = state;
        if state == WorkerState::Stopped {
            // Retention counts from the goodbye; a lost worker's from its last heartbeat.
            worker.info.last_heartbeat_at_ms = now_ms;
        }
        let leased = std::mem::take(&mut worker.leased);
        for job_id in leased {
            let held = self.jobs.get(&job_id).is_some_and(|record| {
                record.state == StateTag::Leased
                    && record.lease().and_then(|lease| lease.worker_id) == Some(worker_id)
            });
            if held {
                self.end_attempt(
                    job_id,
                    ExecutionOutcome::WorkerLost,
                    WORKER_LOST_ERROR.to_owned(),
                    now_ms,
                );
            }
        }
        self.persist_worker(worker_id);
        self.arm_worker_timer(worker_id);
        self.dispatch_waiters(now_ms);
    }

    /// When a worker's next timer is due: its heartbeat timeout while live, the end of its
    /// retention otherwise.
    fn worker_deadline(&self, worker: &Worker) -> u64 {
        let wait_ms = if worker.info.state.is_live() {
            self.settings.heartbeat_timeout_ms
        } else {
            self.settings.worker_retention_ms
        };
        worker.info.last_heartbeat_at_ms.saturating_add(wait_ms)
    }

    fn arm_worker_timer(&mut self, worker_id: WorkerId) {
        let Some(worker) = self.workers.get(&worker_id) else {
            return;
        };
        let at_ms = self.worker_deadline(worker);
        if self
            .next_timer_at()
            .is_none_or(|earliest_ms| at_ms < earliest_ms)
        {
            self.timers_lowered = true;
        }
        self.worker_timers.push(Reverse((at_ms, worker_id)));
    }

    fn persist_worker(&mut self, worker_id: WorkerId) {
        if let Some(worker) = self.workers.get(&worker_id) {
            self.writes.push(Write::Put(
                keys::worker(worker.project_id, worker_id),
                records::encode(&worker.view()),
            ));
        }
    }

    fn worker_mut(
        &mut self,
        project_id: ProjectId,
        worker_id: WorkerId,
    ) -> Result<&mut Worker, CoreError> {
        match self.workers.get_mut(&worker_id) {
            Some(worker) if worker.project_id == project_id => Ok(worker),
            _ => Err(worker_not_found(worker_id)),
        }
    }

    fn check_assigned_queues(
        &self,
        project_id: ProjectId,
        queues: &[QueueAssignment],
    ) -> Result<(), CoreError> {
        for assignment in queues {
            self.queue_id(project_id, &assignment.queue)?;
        }
        Ok(())
    }

    fn check_worker_quota(&self, project_id: ProjectId) -> Result<(), CoreError> {
        let Some((limits, _)) = self.plan_of(project_id) else {
            return Ok(());
        };
        let live = self
            .workers
            .values()
            .filter(|worker| worker.project_id == project_id && worker.info.state.is_live())
            .count() as u64;
        let max = u64::from(limits.workers_max);
        if live >= max {
            return Err(CoreError::Quota {
                limit: "workers",
                current: live,
                max,
            });
        }
        Ok(())
    }
}

fn worker_not_found(worker_id: WorkerId) -> CoreError {
    CoreError::NotFound(format!("worker {worker_id} not found"))
}
