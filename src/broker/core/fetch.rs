//! FETCH: leasing ready jobs, long-poll waiters, and handing newly ready jobs straight to
//! the oldest waiter of their queue.

use taskforge_protocol::{JobId, LeaseId, ProjectId, WorkerId};

use std::cmp::Reverse;

use super::{Core, CoreError, TimerKind};
use crate::storage::records::{LeaseRecord, StateTag};

/// Identifies one long-polling FETCH.
pub type WaiterId = u64;

/// A long-polling FETCH waiting for jobs.
#[derive(Debug, Clone)]
pub struct Waiter {
    /// Whose queues.
    project_id: ProjectId,
    /// Queues in preference order.
    queue_ids: Vec<u64>,
    /// Most jobs to lease when served.
    max_jobs: usize,
    /// Lease duration asked for, if any.
    lease_ms: Option<u32>,
    /// The registered worker fetching, if any.
    worker_id: Option<WorkerId>,
}

/// One job leased by a FETCH. The service layer reads the payload after the lease is
/// durable and builds the wire [`taskforge_protocol::LeasedJob`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The job.
    pub job_id: JobId,
    /// Its project (for the payload key).
    pub project_id: ProjectId,
    /// The new lease.
    pub lease_id: LeaseId,
    /// The queue's name.
    pub queue: String,
    /// This attempt's number.
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Priority.
    pub priority: i32,
    /// Lease deadline.
    pub lease_deadline_ms: u64,
    /// Enqueue time.
    pub created_at_ms: u64,
}

/// What one FETCH asks for, with queue names resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPlan {
    /// Queues in the order to try.
    pub queue_ids: Vec<u64>,
    /// Most jobs to lease.
    pub max_jobs: usize,
    /// Lease duration asked for, if any.
    pub lease_ms: Option<u32>,
    /// The registered worker fetching, if any.
    pub worker_id: Option<WorkerId>,
}

impl FetchPlan {
    /// A plan for an anonymous consumer taking from `queue_ids` in order.
    pub fn queues(queue_ids: Vec<u64>, max_jobs: usize, lease_ms: Option<u32>) -> FetchPlan {
        FetchPlan {
            queue_ids,
            max_jobs,
            lease_ms,
            worker_id: None,
        }
    }
}

/// Jobs leased for a waiter that was waiting when they became ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handoff {
    /// The waiter served.
    pub waiter_id: WaiterId,
    /// What it gets.
    pub deliveries: Vec<Delivery>,
}

impl Core {
    /// Leases up to `max_jobs` ready jobs from `queue_ids`, first queue first; paused
    /// queues are skipped. A named worker must be active; its leases are noted so that
    /// they are released if it is lost.
    pub fn fetch(
        &mut self,
        project_id: ProjectId,
        request: &FetchPlan,
        now_ms: u64,
    ) -> Result<Vec<Delivery>, CoreError> {
        for queue_id in &request.queue_ids {
            match self.queues.get(queue_id) {
                Some(queue) if queue.project_id == project_id => {}
                _ => return Err(CoreError::NotFound("queue not found".into())),
            }
        }
        if let Some(worker_id) = request.worker_id {
            self.check_fetching_worker(project_id, worker_id)?;
        }
        Ok(self.take_ready(
            &request.queue_ids,
            request.max_jobs,
            request.lease_ms,
            request.worker_id,
            now_ms,
        ))
    }

    /// Orders `queue_ids` for one FETCH by weighted random sampling without replacement:
    /// a queue comes first with probability proportional to its weight. Equal weights
    /// still shuffle; callers wanting strict order pass no weights.
    pub fn weighted_order(&mut self, queue_ids: &mut [u64], weights: &[u32]) {
        let mut weighted: Vec<(u64, u64)> = queue_ids
            .iter()
            .zip(weights)
            .map(|(queue_id, weight)| (*queue_id, u64::from((*weight).max(1))))
            .collect();
        for slot in queue_ids.iter_mut() {
            let total: u64 = weighted.iter().map(|(_, weight)| weight).sum();
            let mut pick = self.rng.u64(0..total.max(1));
            let index = weighted
                .iter()
                .position(|(_, weight)| {
                    if pick < *weight {
                        true
                    } else {
                        pick -= weight;
                        false
                    }
                })
                .unwrap_or(0);
            *slot = weighted.remove(index).0;
        }
    }

    /// Registers a long-poll that [`Core::fetch`] could not serve. It is served by
    /// [`Core::take_handoffs`] when a job becomes ready in one of its queues.
    pub fn add_waiter(&mut self, waiter_id: WaiterId, project_id: ProjectId, plan: FetchPlan) {
        let FetchPlan {
            queue_ids,
            max_jobs,
            lease_ms,
            worker_id,
        } = plan;
        for queue_id in &queue_ids {
            if let Some(queue) = self.queues.get_mut(queue_id) {
                queue.waiters.push_back(waiter_id);
            }
        }
        self.waiters.insert(
            waiter_id,
            Waiter {
                project_id,
                queue_ids,
                max_jobs,
                lease_ms,
                worker_id,
            },
        );
    }

    /// Withdraws a waiter. Returns false when it was already served (its handoff is on its
    /// way) or never registered.
    pub fn remove_waiter(&mut self, waiter_id: WaiterId) -> bool {
        self.cancel_waiter_everywhere(waiter_id)
    }

    /// Number of registered waiters.
    pub fn waiter_count(&self) -> usize {
        self.waiters.len()
    }

    /// Drops every waiter (shutdown); returns their ids.
    pub fn clear_waiters(&mut self) -> Vec<WaiterId> {
        for queue in self.queues.values_mut() {
            queue.waiters.clear();
        }
        self.waiters
            .drain()
            .map(|(waiter_id, _)| waiter_id)
            .collect()
    }

    /// Returns leased jobs that never reached their worker (the waiter vanished) to the
    /// ready set, without counting the attempt.
    pub fn release(&mut self, deliveries: &[Delivery], now_ms: u64) {
        for delivery in deliveries {
            let Some(record) = self.jobs.get(&delivery.job_id) else {
                continue;
            };
            if record.lease().map(|lease| lease.lease_id) != Some(delivery.lease_id) {
                continue;
            }
            let mut record = record.clone();
            self.detach_lease(
                record.lease().and_then(|lease| lease.worker_id),
                delivery.job_id,
            );
            record.state = StateTag::Pending;
            record.set_lease(None);
            record.attempts = record.attempts.saturating_sub(1);
            record.executions = record.executions.saturating_sub(1);
            record.updated_at_ms = now_ms;
            record.seq = self.next_seq();
            self.persist(delivery.job_id, Some(StateTag::Leased), &record);
            self.jobs.insert(delivery.job_id, record);
            self.schedule_pending(delivery.job_id, now_ms);
        }
        self.dispatch_waiters(now_ms);
    }

    pub(super) fn cancel_waiter_everywhere(&mut self, waiter_id: WaiterId) -> bool {
        let Some(waiter) = self.waiters.remove(&waiter_id) else {
            return false;
        };
        for queue_id in &waiter.queue_ids {
            if let Some(queue) = self.queues.get_mut(queue_id) {
                queue.waiters.retain(|id| *id != waiter_id);
            }
        }
        true
    }

    /// Serves waiters of queues that gained ready jobs during this operation.
    pub(super) fn dispatch_waiters(&mut self, now_ms: u64) {
        while let Some(queue_id) = self.dirty_queues.pop() {
            while let Some(waiter_id) = self.next_waiter(queue_id, now_ms) {
                let Some(waiter) = self.waiters.get(&waiter_id).cloned() else {
                    continue;
                };
                self.cancel_waiter_everywhere(waiter_id);
                let deliveries = self.take_ready(
                    &waiter.queue_ids,
                    waiter.max_jobs,
                    waiter.lease_ms,
                    waiter.worker_id,
                    now_ms,
                );
                debug_assert_eq!(self.project_of(queue_id), waiter.project_id);
                self.handoffs.push(super::Handoff {
                    waiter_id,
                    deliveries,
                });
            }
        }
    }

    /// The oldest waiter of a queue that can deliver now (may be a stale id).
    fn next_waiter(&mut self, queue_id: u64, now_ms: u64) -> Option<WaiterId> {
        let queue = self.queues.get_mut(&queue_id)?;
        if queue.record.paused || queue.ready.is_empty() {
            return None;
        }
        if !queue.may_deliver(now_ms) {
            if let Some(due_ms) = queue.next_token_at(now_ms) {
                self.queue_timers.push(Reverse((due_ms, queue_id)));
                self.timers_lowered = true;
            }
            return None;
        }
        queue.waiters.pop_front()
    }

    fn take_ready(
        &mut self,
        queue_ids: &[u64],
        max_jobs: usize,
        lease_ms: Option<u32>,
        worker_id: Option<WorkerId>,
        now_ms: u64,
    ) -> Vec<Delivery> {
        let mut deliveries = Vec::new();
        for queue_id in queue_ids {
            while deliveries.len() < max_jobs {
                let Some(queue) = self.queues.get_mut(queue_id) else {
                    break;
                };
                if queue.record.paused || queue.ready.is_empty() {
                    break;
                }
                if !queue.take_delivery(now_ms) {
                    // At its in-flight limit (a lease ending wakes its waiters) or out of
                    // delivery tokens (a timer wakes them when the next one is due).
                    if let Some(due_ms) = queue.next_token_at(now_ms) {
                        self.queue_timers.push(Reverse((due_ms, *queue_id)));
                        self.timers_lowered = true;
                    }
                    break;
                }
                let Some((_, job_id)) = queue.ready.pop_first() else {
                    break;
                };
                let (project_id, queue_name) = (queue.project_id, queue.record.name.clone());
                let Some(mut record) = self.jobs.get(&job_id).cloned() else {
                    continue;
                };
                let lease_id = self.next_lease_id();
                let lease_ms = lease_ms.unwrap_or(record.lease_ms);
                let deadline_ms = now_ms + u64::from(lease_ms);
                record.state = StateTag::Leased;
                record.attempts += 1;
                record.executions += 1;
                record.updated_at_ms = now_ms;
                record.set_lease(Some(LeaseRecord {
                    lease_id,
                    leased_at_ms: now_ms,
                    deadline_ms,
                    worker_id,
                }));
                self.attach_lease(worker_id, job_id);
                self.persist(job_id, Some(StateTag::Pending), &record);
                self.push_timer(deadline_ms, TimerKind::LeaseExpiry, job_id);
                deliveries.push(Delivery {
                    job_id,
                    project_id,
                    lease_id,
                    queue: queue_name,
                    attempt: record.attempts,
                    max_attempts: record.max_attempts,
                    priority: record.priority,
                    lease_deadline_ms: deadline_ms,
                    created_at_ms: record.created_at_ms,
                });
                self.jobs.insert(job_id, record);
            }
        }
        deliveries
    }
}
