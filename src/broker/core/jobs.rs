//! Job transitions of the core.

use std::collections::HashMap;

use taskforge_protocol::{
    CancelResponse, ExecutionInfo, ExecutionOutcome, ExtendResponse, FailResponse, JobId, JobState,
    LeaseId, NewJob, ParentRef, ProjectId, Retry,
};

use super::dependencies::{self, ParentStatus};
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

/// The refusal when a parent finished between the caller's storage read and the enqueue.
pub const PARENT_MOVED_ERROR: &str =
    "a parent job finished while the request was being checked; retry";

/// The error recorded when a job expires before it starts.
pub const EXPIRED_ERROR: &str = "not started before it expired";

/// What storage shows of parents a request names that are not live, read by the caller
/// after a commit barrier (memory knows only live jobs).
pub type StoredParents = HashMap<JobId, StateTag>;

/// One job of an enqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    /// The new job, or the existing one for a duplicate.
    pub job_id: JobId,
    /// Its state now; `None` for a duplicate whose job is no longer live (the caller
    /// reads it from storage).
    pub state: Option<JobState>,
    /// True when a unique key matched and nothing was created.
    pub duplicate: bool,
}

/// What a job of a batch duplicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Duplicate {
    /// An existing job holding the key.
    Existing(JobId),
    /// An earlier job of the same batch with the key.
    Batch(usize),
}

impl Core {
    /// Enqueues validated jobs atomically: either every job is created or none is. On
    /// refusal, the index of the first bad job comes with the error. Jobs whose unique
    /// key is held come back as duplicates of the holder and cost nothing.
    pub fn enqueue(
        &mut self,
        project_id: ProjectId,
        jobs: Vec<NewJob>,
        stored_parents: &StoredParents,
        now_ms: u64,
    ) -> Result<Vec<Enqueued>, (usize, CoreError)> {
        let mut queue_ids = Vec::with_capacity(jobs.len());
        let mut external = Vec::with_capacity(jobs.len());
        for (index, job) in jobs.iter().enumerate() {
            queue_ids.push(
                self.queue_id(project_id, &job.queue)
                    .map_err(|error| (index, error))?,
            );
            let mut statuses = Vec::new();
            for parent in &job.depends_on {
                if let ParentRef::Job(parent_id) = parent {
                    statuses.push(
                        self.parent_status(project_id, *parent_id, stored_parents)
                            .map_err(|error| (index, error))?,
                    );
                }
            }
            external.push(statuses);
        }
        let duplicates = self.find_duplicates(&jobs, &queue_ids, now_ms);
        for (index, job) in jobs.iter().enumerate() {
            for parent in &job.depends_on {
                let ParentRef::Batch(parent_index) = parent else {
                    continue;
                };
                if let Some(Duplicate::Existing(holder)) = duplicates[*parent_index as usize] {
                    if !self.jobs.contains_key(&holder) {
                        return Err((
                            index,
                            CoreError::Conflict(format!(
                                "jobs[{parent_index}] is a duplicate of finished job {holder}; \
                                 name that job in depends_on instead"
                            )),
                        ));
                    }
                }
            }
        }
        let fresh: Vec<usize> = (0..jobs.len())
            .filter(|index| duplicates[*index].is_none())
            .collect();
        let fresh_jobs: Vec<&NewJob> = fresh.iter().map(|index| &jobs[*index]).collect();
        self.admit_enqueue(project_id, &fresh_jobs, now_ms)
            .map_err(|(index, error)| (fresh.get(index).copied().unwrap_or(0), error))?;
        let mut ids: Vec<JobId> = Vec::with_capacity(jobs.len());
        for duplicate in &duplicates {
            let job_id = match duplicate {
                None => self.new_job_id(now_ms),
                Some(Duplicate::Existing(holder)) => *holder,
                Some(Duplicate::Batch(first)) => ids[*first],
            };
            ids.push(job_id);
        }
        let mut doomed = Vec::new();
        for (index, (job, statuses)) in jobs.into_iter().zip(external).enumerate() {
            if duplicates[index].is_some() {
                continue;
            }
            let mut statuses = statuses.into_iter();
            let parents: Vec<(JobId, ParentStatus)> = job
                .depends_on
                .iter()
                .map(|parent| match parent {
                    ParentRef::Job(parent_id) => {
                        (*parent_id, statuses.next().unwrap_or(ParentStatus::Live))
                    }
                    ParentRef::Batch(parent_index) => {
                        (ids[*parent_index as usize], ParentStatus::Live)
                    }
                })
                .collect();
            let job_id = ids[index];
            let dooming = parents.iter().find_map(|(parent, status)| match status {
                ParentStatus::Finished(tag) if status.dooms(job.on_parent_failure) => {
                    Some((*parent, *tag))
                }
                _ => None,
            });
            if let Some((parent, tag)) = dooming {
                doomed.push((job_id, parent, tag));
            }
            self.create_job(project_id, queue_ids[index], job_id, job, &parents, now_ms);
        }
        for (child, parent, tag) in doomed {
            if self.jobs.contains_key(&child) {
                self.finish(
                    child,
                    StateTag::Cancelled,
                    Some(dependencies::parent_failed_error(parent, tag)),
                    None,
                    now_ms,
                );
            }
        }
        let enqueued = ids
            .into_iter()
            .zip(&duplicates)
            .map(|(job_id, duplicate)| Enqueued {
                job_id,
                state: match self.jobs.get(&job_id) {
                    Some(record) => Some(record.visible_state(now_ms)),
                    None if duplicate.is_none() => Some(JobState::Cancelled),
                    None => None,
                },
                duplicate: duplicate.is_some(),
            })
            .collect();
        self.dispatch_waiters(now_ms);
        Ok(enqueued)
    }

    /// Where each job's unique key is already held: by an existing job, or by an earlier
    /// job of the batch.
    fn find_duplicates(
        &mut self,
        jobs: &[NewJob],
        queue_ids: &[u64],
        now_ms: u64,
    ) -> Vec<Option<Duplicate>> {
        let mut first_with_key: HashMap<(u64, &str), usize> = HashMap::new();
        let mut duplicates = Vec::with_capacity(jobs.len());
        for (index, job) in jobs.iter().enumerate() {
            let Some(unique) = &job.unique else {
                duplicates.push(None);
                continue;
            };
            let key = (queue_ids[index], unique.key.as_str());
            let duplicate = match first_with_key.get(&key) {
                Some(first) => Some(Duplicate::Batch(*first)),
                None => self
                    .unique_holder(queue_ids[index], &unique.key, now_ms)
                    .map(Duplicate::Existing),
            };
            if duplicate.is_none() {
                first_with_key.insert(key, index);
            }
            duplicates.push(duplicate);
        }
        duplicates
    }

    /// Whether a named parent is live or finished; unknown or another project's jobs are
    /// not found. A parent that storage showed live but memory no longer holds finished
    /// after the caller read storage: the caller retries.
    fn parent_status(
        &self,
        project_id: ProjectId,
        parent_id: JobId,
        stored_parents: &StoredParents,
    ) -> Result<ParentStatus, CoreError> {
        if let Some(record) = self.jobs.get(&parent_id) {
            if self.project_of(record.queue_id) == project_id {
                return Ok(ParentStatus::Live);
            }
        }
        match stored_parents.get(&parent_id) {
            Some(tag) if tag.is_finished() => Ok(ParentStatus::Finished(*tag)),
            Some(_) => Err(CoreError::Conflict(PARENT_MOVED_ERROR.to_owned())),
            None => Err(CoreError::NotFound(format!(
                "parent job {parent_id} not found"
            ))),
        }
    }

    /// Stores one new job with its body and edges, and files it as blocked, ready or
    /// scheduled.
    fn create_job(
        &mut self,
        project_id: ProjectId,
        queue_id: u64,
        job_id: JobId,
        job: NewJob,
        parents: &[(JobId, ParentStatus)],
        now_ms: u64,
    ) {
        let defaults = match self.queues.get(&queue_id) {
            Some(queue) => queue.record.defaults.clone(),
            None => unreachable!("queue ids were resolved under the same lock"),
        };
        assert!(
            !self.jobs.contains_key(&job_id),
            "job id {job_id} generated twice"
        );
        let run_at_ms = job
            .run_at_ms
            .or(job.delay_ms.map(|delay_ms| now_ms.saturating_add(delay_ms)))
            .unwrap_or(now_ms)
            .max(now_ms);
        let ttl_expiry = job.ttl_ms.map(|ttl_ms| now_ms.saturating_add(ttl_ms));
        let expires_at_ms = match (job.expires_at_ms, ttl_expiry) {
            (Some(at_ms), Some(ttl_ms)) => Some(at_ms.min(ttl_ms)),
            (at_ms, ttl_ms) => at_ms.or(ttl_ms),
        };
        let parents_remaining = parents
            .iter()
            .filter(|(_, status)| *status == ParentStatus::Live)
            .count() as u32;
        let mut record = JobRecord::pending(
            queue_id,
            job.priority.unwrap_or(defaults.priority),
            run_at_ms,
            self.next_seq(),
            job.max_attempts.unwrap_or(defaults.max_attempts),
            job.backoff.unwrap_or(defaults.backoff),
            job.lease_ms.unwrap_or(defaults.lease_ms),
            now_ms,
            parents_remaining,
            job.on_parent_failure,
        );
        record.set_rare(|rare| {
            rare.expires_at_ms = expires_at_ms;
            rare.unique = job.unique;
        });
        for (parent, status) in parents {
            self.writes.push(Write::Put(
                keys::child(project_id, *parent, job_id),
                Vec::new(),
            ));
            if *status == ParentStatus::Live {
                self.add_edge(*parent, job_id);
            }
        }
        let body = JobBody {
            payload: job.payload,
            metadata: job.metadata,
            parents: parents.iter().map(|(parent, _)| *parent).collect(),
        };
        self.writes.push(Write::Put(
            keys::body(project_id, job_id),
            records::encode(&body),
        ));
        self.persist(job_id, None, &record);
        if let Some(unique) = record.unique() {
            self.hold_unique(queue_id, job_id, unique, now_ms);
        }
        if parents_remaining > 0 {
            if let Some(queue) = self.queues.get_mut(&queue_id) {
                queue.blocked += 1;
            }
        }
        self.jobs.insert(job_id, Box::new(record));
        self.schedule_pending(job_id, now_ms);
        if let Some(expires_at_ms) = expires_at_ms {
            self.push_timer(expires_at_ms, TimerKind::Expire, job_id);
        }
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
            let ended =
                self.close_execution(job_id, ExecutionOutcome::Cancelled, None, None, now_ms);
            self.finish(job_id, StateTag::Cancelled, None, ended, now_ms);
            return Err(CoreError::LeaseLost);
        }
        if let Some(result) = result {
            self.writes
                .push(Write::Put(keys::result(project_id, job_id), result));
        }
        let ended = self.close_execution(job_id, ExecutionOutcome::Succeeded, None, None, now_ms);
        self.finish(job_id, StateTag::Succeeded, None, ended, now_ms);
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
            let ended = self.close_execution(
                job_id,
                ExecutionOutcome::Cancelled,
                Some(error.clone()),
                error_details,
                now_ms,
            );
            self.finish(job_id, StateTag::Cancelled, Some(error), ended, now_ms);
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
        let ended = self.close_execution(
            job_id,
            ExecutionOutcome::Failed,
            Some(error.clone()),
            error_details,
            now_ms,
        );
        match run_at_ms {
            None => {
                self.finish(job_id, StateTag::Dead, Some(error), ended, now_ms);
                Ok(FailResponse {
                    state: JobState::Dead,
                    run_at_ms: None,
                    attempts,
                })
            }
            Some(run_at_ms) => {
                self.requeue(job_id, run_at_ms, Some(error), ended, now_ms);
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
        if let Some(lease) = record.lease_mut() {
            lease.deadline_ms = deadline_ms;
        }
        record.updated_at_ms = now_ms;
        let cancel_requested = record.cancel_requested;
        self.persist(job_id, Some(StateTag::Leased), &record);
        self.jobs.insert(job_id, Box::new(record));
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
            self.jobs.insert(job_id, Box::new(record));
            return Ok(CancelResponse {
                state: JobState::Leased,
                cancel_requested: true,
            });
        }
        self.unready(job_id);
        self.finish(job_id, StateTag::Cancelled, None, None, now_ms);
        Ok(CancelResponse {
            state: JobState::Cancelled,
            cancel_requested: false,
        })
    }

    /// Makes a dead job (read from storage by the caller, with the execution its index
    /// entry holds) ready again with fresh attempts. That execution moves to its own key.
    pub fn revive_dead(
        &mut self,
        project_id: ProjectId,
        job_id: JobId,
        mut record: JobRecord,
        ended: Option<ExecutionInfo>,
        now_ms: u64,
    ) -> Result<(), CoreError> {
        if self.jobs.contains_key(&job_id) || record.state != StateTag::Dead {
            return Err(CoreError::Conflict(format!("job {job_id} is not dead")));
        }
        if self.project_of(record.queue_id) != project_id {
            return Err(CoreError::NotFound(format!("job {job_id} not found")));
        }
        if let Some(ended) = &ended {
            self.store_execution(project_id, job_id, ended);
        }
        record.state = StateTag::Pending;
        record.attempts = 0;
        record.run_at_ms = now_ms;
        record.seq = self.next_seq();
        record.set_rare(|rare| rare.finished_at_ms = None);
        record.updated_at_ms = now_ms;
        record.cancel_requested = false;
        self.persist(job_id, Some(StateTag::Dead), &record);
        self.jobs.insert(job_id, Box::new(record));
        self.schedule_pending(job_id, now_ms);
        self.dispatch_waiters(now_ms);
        Ok(())
    }

    /// Deletes jobs of a queue with everything stored for them. Each entry carries the
    /// state storage showed when the caller scanned; memory wins for live jobs. Leased jobs
    /// are skipped, as are jobs whose scanned state is live but which finished since (the
    /// caller's next round sees them). Returns how many were deleted.
    pub fn delete_jobs(
        &mut self,
        queue_id: u64,
        entries: &[(JobId, StateTag)],
        now_ms: u64,
    ) -> u64 {
        let project_id = self.project_of(queue_id);
        let mut deleted = 0;
        let mut removed_live = Vec::new();
        for &(job_id, scanned) in entries {
            let tag = match self.jobs.get(&job_id) {
                Some(record) if record.queue_id != queue_id => continue,
                Some(record) if record.state == StateTag::Leased => continue,
                Some(record) => {
                    if record.parents_remaining > 0 {
                        if let Some(queue) = self.queues.get_mut(&queue_id) {
                            queue.blocked = queue.blocked.saturating_sub(1);
                        }
                    }
                    self.unready(job_id);
                    self.jobs.remove(&job_id);
                    removed_live.push(job_id);
                    StateTag::Pending
                }
                None if scanned.is_finished() => scanned,
                None => continue,
            };
            if let Some(queue) = self.queues.get_mut(&queue_id) {
                queue.counts[tag as usize] = queue.counts[tag as usize].saturating_sub(1);
                queue.live.remove(&job_id);
            }
            if tag.is_finished() {
                self.writes
                    .push(Write::Delete(keys::queue_index(queue_id, tag, job_id)));
            }
            self.writes
                .push(Write::Delete(keys::job(project_id, job_id)));
            self.writes
                .push(Write::Delete(keys::body(project_id, job_id)));
            self.writes
                .push(Write::Delete(keys::result(project_id, job_id)));
            let (start, end) = keys::history_range(project_id, job_id);
            self.writes.push(Write::DeleteRange(start, end));
            let (start, end) = keys::children_range(project_id, job_id);
            self.writes.push(Write::DeleteRange(start, end));
            self.log_lines.remove(&job_id);
            deleted += 1;
        }
        // Children of deleted jobs follow their policy as if the parent was cancelled.
        for job_id in removed_live {
            self.settle_children_of(job_id, StateTag::Cancelled, now_ms);
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
        let ended = self.close_execution(job_id, outcome, Some(error.clone()), None, now_ms);
        if cancelled {
            self.finish(job_id, StateTag::Cancelled, Some(error), ended, now_ms);
        } else if exhausted {
            self.finish(job_id, StateTag::Dead, Some(error), ended, now_ms);
        } else {
            self.requeue(job_id, now_ms, Some(error), ended, now_ms);
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
        match record.lease() {
            Some(lease) if record.state == StateTag::Leased && lease.lease_id == lease_id => {
                Ok(record)
            }
            _ => Err(CoreError::LeaseLost),
        }
    }

    /// Returns a leased job to pending at `run_at_ms`, storing the execution that `ended`.
    pub(super) fn requeue(
        &mut self,
        job_id: JobId,
        run_at_ms: u64,
        error: Option<String>,
        ended: Option<ExecutionInfo>,
        now_ms: u64,
    ) {
        let Some(mut record) = self.jobs.remove(&job_id) else {
            return;
        };
        if let Some(ended) = &ended {
            self.store_execution(self.project_of(record.queue_id), job_id, ended);
        }
        let previous = record.state;
        record.state = StateTag::Pending;
        record.set_lease(None);
        record.run_at_ms = run_at_ms;
        record.seq = self.next_seq();
        record.updated_at_ms = now_ms;
        if error.is_some() {
            record.set_rare(|rare| rare.last_error = error);
        }
        self.persist(job_id, Some(previous), &record);
        self.jobs.insert(job_id, record);
        self.schedule_pending(job_id, now_ms);
    }

    /// Moves a live job to a final state, drops it from memory, and settles its children.
    /// `ended` is the execution whose end finished the job, if one did; it is stored in the
    /// job's finished index entry.
    pub(super) fn finish(
        &mut self,
        job_id: JobId,
        tag: StateTag,
        error: Option<String>,
        ended: Option<ExecutionInfo>,
        now_ms: u64,
    ) {
        let Some(mut record) = self.jobs.remove(&job_id) else {
            return;
        };
        let previous = record.state;
        if previous == StateTag::Pending && record.parents_remaining > 0 {
            if let Some(queue) = self.queues.get_mut(&record.queue_id) {
                queue.blocked = queue.blocked.saturating_sub(1);
            }
        }
        record.state = tag;
        record.set_lease(None);
        record.updated_at_ms = now_ms;
        record.set_rare(|rare| {
            rare.finished_at_ms = Some(now_ms);
            if error.is_some() {
                rare.last_error = error;
            }
        });
        self.persist_ending(job_id, Some(previous), &record, ended.as_ref());
        if let Some(unique) = record.unique() {
            self.release_unique(record.queue_id, job_id, unique, now_ms);
        }
        self.settle_children_of(job_id, tag, now_ms);
        self.dispatch_waiters(now_ms);
    }
}
