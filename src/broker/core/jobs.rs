//! Job transitions of the core.

use taskforge_protocol::{
    CancelResponse, ExecutionOutcome, ExtendResponse, FailResponse, JobId, JobState, LeaseId,
    NewJob, ProjectId, Retry,
};

use super::{Core, CoreError, TimerKind};
use crate::broker::backoff::retry_delay_ms;
use crate::storage::keys;
use crate::storage::records::{self, JobBody, JobRecord, StateTag};
use crate::storage::Write;

/// What a FAIL reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong.
    pub error: String,
    /// Details kept in the execution record.
    pub error_details: Option<String>,
    /// Whether and when to retry.
    pub retry: Retry,
}

impl Failure {
    /// A failure without details.
    pub fn new(error: impl Into<String>, retry: Retry) -> Failure {
        Failure {
            error: error.into(),
            error_details: None,
            retry,
        }
    }
}

/// The error recorded when a lease runs out.
pub const LEASE_EXPIRED_ERROR: &str = "lease expired before the job was acknowledged";

impl Core {
    /// Enqueues validated jobs atomically: either every job is created or none is. On
    /// refusal, the index of the first bad job comes with the error.
    pub fn enqueue(
        &mut self,
        project_id: ProjectId,
        jobs: Vec<NewJob>,
        now_ms: u64,
    ) -> Result<Vec<(JobId, JobState)>, (usize, CoreError)> {
        let mut queue_ids = Vec::with_capacity(jobs.len());
        for (index, job) in jobs.iter().enumerate() {
            queue_ids.push(
                self.queue_id(project_id, &job.queue)
                    .map_err(|error| (index, error))?,
            );
        }
        self.admit_enqueue(project_id, &jobs, now_ms)?;
        let mut created = Vec::with_capacity(jobs.len());
        for (job, queue_id) in jobs.into_iter().zip(queue_ids) {
            let defaults = match self.queues.get(&queue_id) {
                Some(queue) => queue.record.defaults.clone(),
                None => unreachable!("queue ids were resolved above under the same lock"),
            };
            let job_id = self.new_job_id(now_ms);
            assert!(
                !self.jobs.contains_key(&job_id),
                "job id {job_id} generated twice"
            );
            let run_at_ms = job
                .run_at_ms
                .or(job.delay_ms.map(|delay_ms| now_ms.saturating_add(delay_ms)))
                .unwrap_or(now_ms)
                .max(now_ms);
            let record = JobRecord {
                queue_id,
                state: StateTag::Pending,
                priority: job.priority.unwrap_or(defaults.priority),
                run_at_ms,
                seq: self.next_seq(),
                attempts: 0,
                executions: 0,
                max_attempts: job.max_attempts.unwrap_or(defaults.max_attempts),
                backoff: job.backoff.unwrap_or(defaults.backoff),
                lease_ms: job.lease_ms.unwrap_or(defaults.lease_ms),
                created_at_ms: now_ms,
                updated_at_ms: now_ms,
                finished_at_ms: None,
                lease: None,
                cancel_requested: false,
                last_error: None,
            };
            let project_of_queue = self.project_of(queue_id);
            let body = JobBody {
                payload: job.payload,
                metadata: job.metadata,
            };
            self.writes.push(Write::Put(
                keys::body(project_of_queue, job_id),
                records::encode(&body),
            ));
            self.persist(job_id, None, &record);
            self.jobs.insert(job_id, record);
            self.schedule_pending(job_id, now_ms);
            let state = if run_at_ms <= now_ms {
                JobState::Ready
            } else {
                JobState::Scheduled
            };
            created.push((job_id, state));
        }
        self.dispatch_waiters(now_ms);
        Ok(created)
    }

    /// Acknowledges a job under its current lease, storing `result` if given.
    pub fn ack(
        &mut self,
        project_id: ProjectId,
        job_id: JobId,
        lease_id: LeaseId,
        result: Option<Vec<u8>>,
        now_ms: u64,
    ) -> Result<(), CoreError> {
        let record = self.leased_job(project_id, job_id, lease_id)?;
        if record.cancel_requested {
            self.close_execution(job_id, ExecutionOutcome::Cancelled, None, None, now_ms);
            self.finish(job_id, StateTag::Cancelled, None, now_ms);
            return Err(CoreError::LeaseLost);
        }
        if let Some(result) = result {
            self.writes
                .push(Write::Put(keys::result(project_id, job_id), result));
        }
        self.close_execution(job_id, ExecutionOutcome::Succeeded, None, None, now_ms);
        self.finish(job_id, StateTag::Succeeded, None, now_ms);
        Ok(())
    }

    /// Records a failed attempt and schedules a retry or makes the job dead.
    pub fn fail(
        &mut self,
        project_id: ProjectId,
        job_id: JobId,
        lease_id: LeaseId,
        failure: Failure,
        now_ms: u64,
    ) -> Result<FailResponse, CoreError> {
        let Failure {
            error,
            error_details,
            retry,
        } = failure;
        let record = self.leased_job(project_id, job_id, lease_id)?;
        if record.cancel_requested {
            self.close_execution(
                job_id,
                ExecutionOutcome::Cancelled,
                Some(error.clone()),
                error_details,
                now_ms,
            );
            self.finish(job_id, StateTag::Cancelled, Some(error), now_ms);
            return Err(CoreError::LeaseLost);
        }
        let (attempts, backoff) = (record.attempts, record.backoff);
        let exhausted = attempts >= record.max_attempts;
        let run_at_ms = match retry {
            Retry::Never => None,
            _ if exhausted => None,
            Retry::Backoff => {
                let spread = self.rng.f64() * 2.0 - 1.0;
                Some(now_ms + retry_delay_ms(&backoff, attempts, spread))
            }
            Retry::At(at_ms) => Some(at_ms.max(now_ms)),
        };
        self.close_execution(
            job_id,
            ExecutionOutcome::Failed,
            Some(error.clone()),
            error_details,
            now_ms,
        );
        match run_at_ms {
            None => {
                self.finish(job_id, StateTag::Dead, Some(error), now_ms);
                Ok(FailResponse {
                    state: JobState::Dead,
                    run_at_ms: None,
                    attempts,
                })
            }
            Some(run_at_ms) => {
                self.requeue(job_id, run_at_ms, Some(error), now_ms);
                let state = if run_at_ms <= now_ms {
                    JobState::Ready
                } else {
                    JobState::Scheduled
                };
                self.dispatch_waiters(now_ms);
                Ok(FailResponse {
                    state,
                    run_at_ms: Some(run_at_ms),
                    attempts,
                })
            }
        }
    }

    /// Extends a lease to `now + lease_ms`.
    pub fn extend(
        &mut self,
        project_id: ProjectId,
        job_id: JobId,
        lease_id: LeaseId,
        lease_ms: u32,
        now_ms: u64,
    ) -> Result<ExtendResponse, CoreError> {
        let mut record = self.leased_job(project_id, job_id, lease_id)?.clone();
        let deadline_ms = now_ms + u64::from(lease_ms);
        if let Some(lease) = record.lease.as_mut() {
            lease.deadline_ms = deadline_ms;
        }
        record.updated_at_ms = now_ms;
        let cancel_requested = record.cancel_requested;
        self.persist(job_id, Some(StateTag::Leased), &record);
        self.jobs.insert(job_id, record);
        self.push_timer(deadline_ms, TimerKind::LeaseExpiry, job_id);
        Ok(ExtendResponse {
            lease_deadline_ms: deadline_ms,
            cancel_requested,
        })
    }

    /// Cancels a live job: at once if pending, through its lease holder if leased.
    /// Finished or unknown jobs give [`CoreError::NotLive`].
    pub fn cancel(
        &mut self,
        project_id: ProjectId,
        job_id: JobId,
        now_ms: u64,
    ) -> Result<CancelResponse, CoreError> {
        let record = self.live_job(project_id, job_id)?;
        if record.state == StateTag::Leased {
            let mut record = record.clone();
            record.cancel_requested = true;
            record.updated_at_ms = now_ms;
            self.persist(job_id, Some(StateTag::Leased), &record);
            self.jobs.insert(job_id, record);
            return Ok(CancelResponse {
                state: JobState::Leased,
                cancel_requested: true,
            });
        }
        self.unready(job_id);
        self.finish(job_id, StateTag::Cancelled, None, now_ms);
        Ok(CancelResponse {
            state: JobState::Cancelled,
            cancel_requested: false,
        })
    }

    /// Makes a dead job (read from storage by the caller) ready again with fresh attempts.
    pub fn revive_dead(
        &mut self,
        project_id: ProjectId,
        job_id: JobId,
        mut record: JobRecord,
        now_ms: u64,
    ) -> Result<(), CoreError> {
        if self.jobs.contains_key(&job_id) || record.state != StateTag::Dead {
            return Err(CoreError::Conflict(format!("job {job_id} is not dead")));
        }
        if self.project_of(record.queue_id) != project_id {
            return Err(CoreError::NotFound(format!("job {job_id} not found")));
        }
        record.state = StateTag::Pending;
        record.attempts = 0;
        record.run_at_ms = now_ms;
        record.seq = self.next_seq();
        record.finished_at_ms = None;
        record.updated_at_ms = now_ms;
        record.cancel_requested = false;
        self.persist(job_id, Some(StateTag::Dead), &record);
        self.jobs.insert(job_id, record);
        self.schedule_pending(job_id, now_ms);
        self.dispatch_waiters(now_ms);
        Ok(())
    }

    /// Deletes jobs of a queue with everything stored for them. Each entry carries the
    /// state storage showed when the caller scanned; memory wins for live jobs. Leased jobs
    /// are skipped, as are jobs whose scanned state is live but which finished since (the
    /// caller's next round sees them). Returns how many were deleted.
    pub fn delete_jobs(&mut self, queue_id: u64, entries: &[(JobId, StateTag)]) -> u64 {
        let project_id = self.project_of(queue_id);
        let mut deleted = 0;
        for &(job_id, scanned) in entries {
            let tag = match self.jobs.get(&job_id) {
                Some(record) if record.queue_id != queue_id => continue,
                Some(record) if record.state == StateTag::Leased => continue,
                Some(_) => {
                    self.unready(job_id);
                    self.jobs.remove(&job_id);
                    StateTag::Pending
                }
                None if scanned.is_finished() => scanned,
                None => continue,
            };
            if let Some(queue) = self.queues.get_mut(&queue_id) {
                queue.counts[tag as usize] = queue.counts[tag as usize].saturating_sub(1);
            }
            self.writes
                .push(Write::Delete(keys::queue_index(queue_id, tag, job_id)));
            self.writes
                .push(Write::Delete(keys::job(project_id, job_id)));
            self.writes
                .push(Write::Delete(keys::body(project_id, job_id)));
            self.writes
                .push(Write::Delete(keys::result(project_id, job_id)));
            let (start, end) = keys::history_range(project_id, job_id);
            self.writes.push(Write::DeleteRange(start, end));
            self.log_lines.remove(&job_id);
            deleted += 1;
        }
        deleted
    }

    /// A lease ran out.
    pub(super) fn expire_lease(&mut self, job_id: JobId, now_ms: u64) {
        self.lease_expiries += 1;
        self.end_attempt(
            job_id,
            ExecutionOutcome::LeaseExpired,
            LEASE_EXPIRED_ERROR.to_owned(),
            now_ms,
        );
    }

    /// Ends a leased job's attempt without word from its holder (lease expiry, lost
    /// worker): retry at once, or dead when attempts are spent, or cancelled when a cancel
    /// was waiting.
    pub(super) fn end_attempt(
        &mut self,
        job_id: JobId,
        outcome: ExecutionOutcome,
        error: String,
        now_ms: u64,
    ) {
        let Some(record) = self.jobs.get(&job_id) else {
            return;
        };
        let (cancelled, exhausted) = (
            record.cancel_requested,
            record.attempts >= record.max_attempts,
        );
        let outcome = if cancelled {
            ExecutionOutcome::Cancelled
        } else {
            outcome
        };
        self.close_execution(job_id, outcome, Some(error.clone()), None, now_ms);
        if cancelled {
            self.finish(job_id, StateTag::Cancelled, Some(error), now_ms);
        } else if exhausted {
            self.finish(job_id, StateTag::Dead, Some(error), now_ms);
        } else {
            self.requeue(job_id, now_ms, Some(error), now_ms);
        }
    }

    /// The live job under `lease_id`, or why not.
    pub(super) fn leased_job(
        &self,
        project_id: ProjectId,
        job_id: JobId,
        lease_id: LeaseId,
    ) -> Result<&JobRecord, CoreError> {
        let record = self.live_job(project_id, job_id)?;
        match record.lease {
            Some(lease) if record.state == StateTag::Leased && lease.lease_id == lease_id => {
                Ok(record)
            }
            _ => Err(CoreError::LeaseLost),
        }
    }

    /// Returns a leased job to pending at `run_at_ms`.
    fn requeue(&mut self, job_id: JobId, run_at_ms: u64, error: Option<String>, now_ms: u64) {
        let Some(mut record) = self.jobs.remove(&job_id) else {
            return;
        };
        let previous = record.state;
        record.state = StateTag::Pending;
        record.lease = None;
        record.run_at_ms = run_at_ms;
        record.seq = self.next_seq();
        record.updated_at_ms = now_ms;
        if error.is_some() {
            record.last_error = error;
        }
        self.persist(job_id, Some(previous), &record);
        self.jobs.insert(job_id, record);
        self.schedule_pending(job_id, now_ms);
    }

    /// Moves a live job to a final state and drops it from memory.
    fn finish(&mut self, job_id: JobId, tag: StateTag, error: Option<String>, now_ms: u64) {
        let Some(mut record) = self.jobs.remove(&job_id) else {
            return;
        };
        let previous = record.state;
        record.state = tag;
        record.lease = None;
        record.finished_at_ms = Some(now_ms);
        record.updated_at_ms = now_ms;
        if error.is_some() {
            record.last_error = error;
        }
        self.persist(job_id, Some(previous), &record);
    }
}
