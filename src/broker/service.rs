//! Request handling: one function per operation. Each validates, runs one core operation
//! under the lock, waits for the commit round that makes it durable, and answers. Storage
//! reads happen only after a commit barrier, so they reflect every change already answered.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use taskforge_protocol::{
    limits, AckBatchRequest, AckBatchResponse, AckRequest, BulkResponse, DeadBulkRequest,
    EnqueueBatchResponse, EnqueueResponse, ErrorBody, ErrorCode, ErrorDetails, FailRequest,
    FetchRequest, FetchResponse, JobId, JobInfo, JobListRequest, JobListResponse, JobState,
    JobSummary, LeasedJob, NewJob, ParentRef, Pong, ProjectId, QueueListResponse, Request,
    Response,
};

use super::budget::RESPONSE_OVERHEAD_BYTES;
use super::commit::{Durability, State};
use super::core::{
    Core, CoreError, Delivery, Failure, FetchPlan, StoredParents, PARENT_MOVED_ERROR,
};
use super::{principal, validate, Broker, Session};
use crate::storage::records::{self, JobBody, JobRecord, StateTag};
use crate::storage::{keys, StorageError};

/// Times an enqueue naming finished parents reads them from storage before giving up
/// (each retry follows a parent that finished while the request was being checked).
const ENQUEUE_PARENT_READS_MAX: usize = 3;

/// Bound on one leased job's encoding besides payload, queue name and metadata.
const LEASED_JOB_OVERHEAD_BYTES: usize = 96;

/// Bound on one job summary's encoding besides queue name and last error.
const JOB_SUMMARY_OVERHEAD_BYTES: usize = 96;

/// Most index entries one listing scans before it returns a partial page, so a filter
/// that matches little cannot make one request scan a whole queue.
const LIST_SCAN_ENTRIES_MAX: usize = 10 * limits::LIST_LIMIT_MAX as usize;

type Reply<T> = Result<T, ErrorBody>;

fn unavailable(reason: impl std::fmt::Display) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::Unavailable,
        format!("storage unavailable ({reason}); the outcome of a change is unknown, retry later"),
    )
}

pub(super) fn storage_error(error: StorageError) -> ErrorBody {
    tracing::error!(%error, "storage read failed");
    unavailable(error)
}

impl Broker {
    /// Runs one request for `session` and answers it after its durability point.
    pub async fn handle(&self, session: &Session, request: Request) -> Result<Response, ErrorBody> {
        if session.revoked.is_cancelled() {
            return Err(ErrorBody::new(
                ErrorCode::Unauthenticated,
                "the session's API key was revoked",
            ));
        }
        principal::authorize_project_operation(session, &request)?;
        let project_id = session.project_id;
        validate::named_queue(&request)?;
        match request {
            request @ (Request::OrgCreate(_)
            | Request::OrgGet(_)
            | Request::OrgList(_)
            | Request::OrgUpdate(_)
            | Request::OrgDelete(_)
            | Request::UserCreate(_)
            | Request::UserGet(_)
            | Request::UserList(_)
            | Request::UserUpdate(_)
            | Request::UserDisable(_)
            | Request::UserSetPassword(_)
            | Request::SubscriptionGet(_)
            | Request::SubscriptionSet(_)
            | Request::ProjectCreate(_)
            | Request::ProjectGet(_)
            | Request::ProjectList(_)
            | Request::ProjectUpdate(_)
            | Request::ProjectDelete(_)
            | Request::ApiKeyCreate(_)
            | Request::ApiKeyList(_)
            | Request::ApiKeyRevoke(_)
            | Request::ApiKeyRotate(_)) => self.handle_tenancy(session, request).await,
            Request::Hello(_) => Err(ErrorBody::new(
                ErrorCode::Conflict,
                "the session is already authenticated",
            )),
            Request::Ping(_) => Ok(Response::Ping(Pong {
                server_time_ms: self.now_ms(),
            })),
            Request::Bye(_) => Ok(Response::Bye(Default::default())),
            Request::QueueCreate(body) => {
                validate::queue_settings(&body.settings)?;
                let info = self
                    .mutate(|core, now_ms| {
                        core.queue_create(project_id, &body.name, &body.settings, now_ms)
                    })
                    .await?;
                Ok(Response::QueueCreate(info))
            }
            Request::QueueGet(body) => {
                let info = self
                    .mutate(|core, _| core.queue_get(project_id, &body.name))
                    .await?;
                Ok(Response::QueueGet(info))
            }
            Request::QueueList(body) => {
                let limit = validate::list_limit(body.limit)?;
                let (queues, next_after) = self
                    .mutate(|core, _| Ok(core.queue_list(project_id, body.after.as_deref(), limit)))
                    .await?;
                Ok(Response::QueueList(QueueListResponse {
                    queues,
                    next_after,
                }))
            }
            Request::QueueUpdate(body) => {
                validate::queue_settings(&body.settings)?;
                let info = self
                    .mutate(|core, _| core.queue_update(project_id, &body.name, &body.settings))
                    .await?;
                Ok(Response::QueueUpdate(info))
            }
            Request::QueueDelete(body) => {
                self.mutate(|core, _| core.queue_delete(project_id, &body.name))
                    .await?;
                Ok(Response::QueueDelete(Default::default()))
            }
            Request::QueuePause(body) => {
                let info = self
                    .mutate(|core, now_ms| {
                        core.queue_set_paused(project_id, &body.name, true, now_ms)
                    })
                    .await?;
                Ok(Response::QueuePause(info))
            }
            Request::QueueResume(body) => {
                let info = self
                    .mutate(|core, now_ms| {
                        core.queue_set_paused(project_id, &body.name, false, now_ms)
                    })
                    .await?;
                Ok(Response::QueueResume(info))
            }
            Request::QueuePurge(body) => Ok(Response::QueuePurge(
                self.purge(project_id, &body.name).await?,
            )),
            Request::QueueStats(body) => {
                let stats = self
                    .mutate(|core, now_ms| core.queue_stats(project_id, &body.name, now_ms))
                    .await?;
                Ok(Response::QueueStats(stats))
            }
            Request::Enqueue(body) => {
                validate::single_job(&body.job, &self.limits, self.now_ms())?;
                let created = self.enqueue(project_id, vec![body.job]).await?;
                let (job_id, state, duplicate) = created[0];
                Ok(Response::Enqueue(EnqueueResponse {
                    job_id,
                    state,
                    duplicate,
                }))
            }
            Request::EnqueueBatch(body) => {
                validate::batch(&body.jobs, &self.limits, self.now_ms())?;
                let created = self.enqueue(project_id, body.jobs).await?;
                let (job_ids, duplicates) = created
                    .into_iter()
                    .map(|(job_id, _, duplicate)| (job_id, duplicate))
                    .unzip();
                Ok(Response::EnqueueBatch(EnqueueBatchResponse {
                    job_ids,
                    duplicates,
                }))
            }
            Request::Fetch(body) => Ok(Response::Fetch(self.fetch(project_id, body).await?)),
            Request::Ack(body) => {
                validate::result(body.result.as_ref(), &self.limits)?;
                let AckRequest {
                    job_id,
                    lease_id,
                    result,
                } = body;
                let outcome = self
                    .mutate_raw(|core, now_ms| {
                        core.ack(project_id, job_id, lease_id, result, now_ms)
                    })
                    .await?;
                match outcome {
                    Ok(()) => Ok(Response::Ack(Default::default())),
                    Err(error) => Err(self.refusal(project_id, job_id, error).await),
                }
            }
            Request::AckBatch(body) => {
                Ok(Response::AckBatch(self.ack_batch(project_id, body).await?))
            }
            Request::Fail(body) => {
                validate::failure(&body, self.now_ms())?;
                let FailRequest {
                    job_id,
                    lease_id,
                    error,
                    retry,
                    error_details,
                } = body;
                let failure = Failure {
                    error,
                    error_details,
                    retry,
                };
                let outcome = self
                    .mutate_raw(|core, now_ms| {
                        core.fail(project_id, job_id, lease_id, failure, now_ms)
                    })
                    .await?;
                match outcome {
                    Ok(response) => Ok(Response::Fail(response)),
                    Err(error) => Err(self.refusal(project_id, job_id, error).await),
                }
            }
            Request::Extend(body) => {
                validate::lease_ms("lease_ms", body.lease_ms)?;
                let outcome = self
                    .mutate_raw(|core, now_ms| {
                        core.extend(
                            project_id,
                            body.job_id,
                            body.lease_id,
                            body.lease_ms,
                            now_ms,
                        )
                    })
                    .await?;
                match outcome {
                    Ok(response) => Ok(Response::Extend(response)),
                    Err(error) => Err(self.refusal(project_id, body.job_id, error).await),
                }
            }
            Request::Cancel(body) => {
                let outcome = self
                    .mutate_raw(|core, now_ms| core.cancel(project_id, body.job_id, now_ms))
                    .await?;
                match outcome {
                    Ok(response) => Ok(Response::Cancel(response)),
                    Err(CoreError::NotLive) => {
                        let record = self.read_job(project_id, body.job_id).await?;
                        match record.map(|record| record.state) {
                            Some(StateTag::Cancelled) => {
                                Ok(Response::Cancel(taskforge_protocol::CancelResponse {
                                    state: JobState::Cancelled,
                                    cancel_requested: false,
                                }))
                            }
                            Some(state) => Err(ErrorBody::new(
                                ErrorCode::Conflict,
                                format!("job {} already finished as {state:?}", body.job_id),
                            )),
                            None => Err(CoreError::NotLive.to_error_body()),
                        }
                    }
                    Err(error) => Err(error.to_error_body()),
                }
            }
            Request::JobGet(body) => Ok(Response::JobGet(
                self.job_get(project_id, body.job_id).await?,
            )),
            Request::JobList(body) => Ok(Response::JobList(self.job_list(project_id, body).await?)),
            Request::DeadList(body) => {
                let request = JobListRequest {
                    queue: body.queue,
                    state: Some(JobState::Dead),
                    after: body.after,
                    limit: body.limit,
                };
                Ok(Response::DeadList(
                    self.job_list(project_id, request).await?,
                ))
            }
            Request::DeadRetry(body) => Ok(Response::DeadRetry(
                self.dead_bulk(project_id, body, true).await?,
            )),
            Request::DeadDiscard(body) => Ok(Response::DeadDiscard(
                self.dead_bulk(project_id, body, false).await?,
            )),
            request @ (Request::Progress(_)
            | Request::Log(_)
            | Request::LogTail(_)
            | Request::ExecutionList(_)
            | Request::JobResults(_)) => self.handle_history(project_id, request).await,
            request @ (Request::WorkerRegister(_)
            | Request::Heartbeat(_)
            | Request::WorkerList(_)
            | Request::WorkerGet(_)
            | Request::WorkerQuiet(_)
            | Request::WorkerTerminate(_)
            | Request::WorkerAssign(_)
            | Request::AssignmentList(_)) => self.handle_workers(project_id, request).await,
            request @ (Request::ScheduleCreate(_)
            | Request::ScheduleGet(_)
            | Request::ScheduleList(_)
            | Request::ScheduleUpdate(_)
            | Request::ScheduleDelete(_)
            | Request::SchedulePause(_)
            | Request::ScheduleResume(_)) => self.handle_schedules(project_id, request).await,
        }
    }

    /// Runs `op` on the core under the lock, then waits until every change made so far is
    /// durable. `op`'s own refusal is returned as the outer error.
    pub(super) async fn mutate<T>(
        &self,
        op: impl FnOnce(&mut Core, u64) -> Result<T, CoreError>,
    ) -> Reply<T> {
        self.mutate_raw(op)
            .await?
            .map_err(|error| error.to_error_body())
    }

    /// Like [`Broker::mutate`] but hands `op`'s result back untouched (a refused ACK can
    /// still have changed state, e.g. finishing a cancelled job, and must be committed).
    pub(super) async fn mutate_raw<T>(&self, op: impl FnOnce(&mut Core, u64) -> T) -> Reply<T> {
        self.mutate_state(|state, now_ms| op(&mut state.core, now_ms))
            .await
    }

    /// Runs `op` on the whole locked state (core plus long-poll senders), then waits for
    /// durability of everything changed so far.
    async fn mutate_state<T>(&self, op: impl FnOnce(&mut State, u64) -> T) -> Reply<T> {
        let now_ms = self.clock.now_ms();
        let (value, durability) = {
            let mut state = self.shared.lock();
            if let Some(reason) = &state.unavailable {
                return Err(unavailable(reason));
            }
            if state.stopping {
                return Err(ErrorBody::new(
                    ErrorCode::Unavailable,
                    "the broker is shutting down",
                ));
            }
            let value = op(&mut state, now_ms);
            self.shared.after_op(&mut state, now_ms);
            (value, self.shared.commit_wait(&mut state))
        };
        match durability {
            Durability::Durable => {}
            Durability::Wait(wait) => match wait.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return Err(unavailable(error)),
                Err(_) => return Err(unavailable("commit abandoned")),
            },
            Durability::Lead(round) => self.shared.lead(round).map_err(unavailable)?,
        }
        Ok(value)
    }

    /// Waits until every change answered so far is durable, so storage reads see them.
    async fn barrier(&self) -> Reply<()> {
        self.mutate_raw(|_, _| ()).await
    }

    /// Turns a refusal for a job that is not in memory into NOT_FOUND or LEASE_LOST by
    /// looking at storage: a finished job of this project has no live lease.
    pub(super) async fn refusal(
        &self,
        project_id: ProjectId,
        job_id: JobId,
        error: CoreError,
    ) -> ErrorBody {
        if error != CoreError::NotLive {
            return error.to_error_body();
        }
        match self.read_job(project_id, job_id).await {
            Ok(Some(_)) => CoreError::LeaseLost.to_error_body(),
            Ok(None) => CoreError::NotLive.to_error_body(),
            Err(error) => error,
        }
    }

    /// Reads a job's stored state after a barrier.
    pub(super) async fn read_job(
        &self,
        project_id: ProjectId,
        job_id: JobId,
    ) -> Reply<Option<JobRecord>> {
        self.barrier().await?;
        self.read_job_now(project_id, job_id)
    }

    pub(super) fn read_job_now(
        &self,
        project_id: ProjectId,
        job_id: JobId,
    ) -> Reply<Option<JobRecord>> {
        match self
            .shared
            .storage
            .get(&keys::job(project_id, job_id))
            .map_err(storage_error)?
        {
            None => Ok(None),
            Some(bytes) => records::decode("job", &bytes)
                .map(Some)
                .map_err(storage_error),
        }
    }

    pub(super) fn read_body(&self, project_id: ProjectId, job_id: JobId) -> Reply<JobBody> {
        match self
            .shared
            .storage
            .get(&keys::body(project_id, job_id))
            .map_err(storage_error)?
        {
            Some(bytes) => records::decode("body", &bytes).map_err(storage_error),
            None => {
                tracing::error!(%job_id, "job has no stored body");
                Err(ErrorBody::new(
                    ErrorCode::Internal,
                    format!("job {job_id} has no body"),
                ))
            }
        }
    }

    async fn enqueue(
        &self,
        project_id: ProjectId,
        jobs: Vec<NewJob>,
    ) -> Reply<Vec<(JobId, JobState, bool)>> {
        let batch = jobs.len() > 1;
        let named: BTreeSet<JobId> = jobs
            .iter()
            .flat_map(|job| &job.depends_on)
            .filter_map(|parent| match parent {
                ParentRef::Job(parent_id) => Some(*parent_id),
                ParentRef::Batch(_) => None,
            })
            .collect();
        let outcome = if named.is_empty() {
            let stored = StoredParents::new();
            self.mutate_raw(|core, now_ms| core.enqueue(project_id, jobs, &stored, now_ms))
                .await?
        } else {
            // Memory knows only live jobs: finished parents are read from storage. A parent
            // that finishes between that read and the enqueue makes the core refuse; the
            // read is then simply repeated.
            let mut attempts_left = ENQUEUE_PARENT_READS_MAX;
            loop {
                let stored = self.stored_parents(project_id, &named).await?;
                let jobs = jobs.clone();
                let outcome = self
                    .mutate_raw(|core, now_ms| core.enqueue(project_id, jobs, &stored, now_ms))
                    .await?;
                attempts_left -= 1;
                match &outcome {
                    Err((_, CoreError::Conflict(message)))
                        if message == PARENT_MOVED_ERROR && attempts_left > 0 => {}
                    _ => break outcome,
                }
            }
        };
        let created = outcome.map_err(|(index, error)| {
            let body = error.to_error_body();
            if batch {
                body.with_details(ErrorDetails::BatchItem {
                    index: index as u32,
                })
            } else {
                body
            }
        })?;
        let mut answered = Vec::with_capacity(created.len());
        for enqueued in created {
            let state = match enqueued.state {
                Some(state) => state,
                // A duplicate of a job that finished: storage has its state, unless
                // retention purged the job since (its window outlived it): it finished.
                None => match self.read_job(project_id, enqueued.job_id).await? {
                    Some(record) => record.visible_state(self.clock.now_ms()),
                    None => JobState::Succeeded,
                },
            };
            answered.push((enqueued.job_id, state, enqueued.duplicate));
        }
        Ok(answered)
    }

    /// The stored states of named parents, after a barrier.
    async fn stored_parents(
        &self,
        project_id: ProjectId,
        named: &BTreeSet<JobId>,
    ) -> Reply<StoredParents> {
        self.barrier().await?;
        let mut stored = StoredParents::new();
        for parent_id in named {
            if let Some(record) = self.read_job_now(project_id, *parent_id)? {
                stored.insert(*parent_id, record.state);
            }
        }
        Ok(stored)
    }

    async fn fetch(&self, project_id: ProjectId, request: FetchRequest) -> Reply<FetchResponse> {
        validate::fetch(&request)?;
        let max_jobs = request.max_jobs as usize;
        let waiter_id = self.waiter_next.fetch_add(1, Ordering::Relaxed);
        let (sender, mut receiver) = tokio::sync::oneshot::channel();
        let started_ms = self.clock.now_ms();
        let (deliveries, waiting) = self
            .mutate_state(|state, now_ms| {
                let mut queue_ids = request
                    .queues
                    .iter()
                    .map(|name| state.core.queue_id(project_id, name))
                    .collect::<Result<Vec<u64>, CoreError>>()?;
                if !request.weights.is_empty() {
                    state.core.weighted_order(&mut queue_ids, &request.weights);
                }
                let plan = FetchPlan {
                    queue_ids,
                    max_jobs,
                    lease_ms: request.lease_ms,
                    worker_id: request.worker_id,
                };
                let deliveries = state.core.fetch(project_id, &plan, now_ms)?;
                let waiting = deliveries.is_empty() && request.wait_ms > 0;
                if waiting {
                    state.core.add_waiter(waiter_id, project_id, plan);
                    state.waiter_senders.insert(waiter_id, sender);
                }
                Ok((deliveries, waiting))
            })
            .await?
            .map_err(|error: CoreError| error.to_error_body())?;
        let deliveries = if waiting {
            let guard = WaiterGuard {
                broker: self,
                waiter_id,
                armed: true,
            };
            let deadline_ms = started_ms.saturating_add(u64::from(request.wait_ms));
            let received = tokio::select! {
                delivered = &mut receiver => delivered.ok(),
                _ = self.clock.sleep_until(deadline_ms) => None,
                _ = self.long_polls_released.cancelled() => None,
            };
            let received = match received {
                Some(deliveries) => Some(deliveries),
                // Not withdrawn means it was served meanwhile: the jobs are in the receiver.
                None if !guard.withdraw() => receiver.try_recv().ok(),
                None => None,
            };
            match received {
                Some(deliveries) => {
                    // The leases were written by whichever operation served this FETCH;
                    // wait for them to be durable before telling the worker.
                    self.barrier().await?;
                    deliveries
                }
                None => Vec::new(),
            }
        } else {
            deliveries
        };
        self.fitting_jobs(deliveries)
    }

    /// Reads the payloads of leased jobs and builds the answer, stopping before it would
    /// exceed the response limit; jobs that do not fit go back to the queue unharmed
    /// (their attempt is not counted). The first job always fits: configuration
    /// guarantees a maximal job fits in a frame.
    fn fitting_jobs(&self, mut deliveries: Vec<Delivery>) -> Reply<FetchResponse> {
        let budget_bytes = self.limits.response_bytes_max as usize;
        let mut jobs = Vec::with_capacity(deliveries.len());
        let mut used_bytes = RESPONSE_OVERHEAD_BYTES;
        for (index, delivery) in deliveries.iter().enumerate() {
            let job = self.leased_job(delivery.clone())?;
            let metadata_bytes: usize = job
                .metadata
                .iter()
                .map(|(key, value)| key.len() + value.len() + 2)
                .sum();
            let job_bytes =
                LEASED_JOB_OVERHEAD_BYTES + job.payload.len() + job.queue.len() + metadata_bytes;
            if !jobs.is_empty() && used_bytes + job_bytes > budget_bytes {
                self.return_unsent(deliveries.split_off(index));
                break;
            }
            used_bytes += job_bytes;
            jobs.push(job);
        }
        Ok(FetchResponse { jobs })
    }

    /// Puts leased jobs that could not be sent back to the ready set.
    fn return_unsent(&self, unsent: Vec<Delivery>) {
        let now_ms = self.clock.now_ms();
        let mut state = self.shared.lock();
        state.core.release(&unsent, now_ms);
        self.shared.after_op(&mut state, now_ms);
        if state.core.has_writes() {
            self.shared.work.notify_one();
        }
    }

    fn leased_job(&self, delivery: Delivery) -> Reply<LeasedJob> {
        let body = self.read_body(delivery.project_id, delivery.job_id)?;
        Ok(LeasedJob {
            job_id: delivery.job_id,
            lease_id: delivery.lease_id,
            queue: delivery.queue,
            payload: body.payload,
            attempt: delivery.attempt,
            max_attempts: delivery.max_attempts,
            priority: delivery.priority,
            lease_deadline_ms: delivery.lease_deadline_ms,
            created_at_ms: delivery.created_at_ms,
            metadata: body.metadata,
        })
    }

    async fn ack_batch(
        &self,
        project_id: ProjectId,
        request: AckBatchRequest,
    ) -> Reply<AckBatchResponse> {
        if request.acks.is_empty() || request.acks.len() > limits::ACK_BATCH_MAX {
            return Err(ErrorBody::new(
                ErrorCode::InvalidArgument,
                format!("ACK_BATCH holds 1 to {} acks", limits::ACK_BATCH_MAX),
            ));
        }
        let checks: Vec<Option<ErrorBody>> = request
            .acks
            .iter()
            .map(|ack| validate::result(ack.result.as_ref(), &self.limits).err())
            .collect();
        let outcomes = self
            .mutate_raw(|core, now_ms| {
                request
                    .acks
                    .into_iter()
                    .zip(checks)
                    .map(|(ack, check)| match check {
                        Some(error) => (ack.job_id, Err(Err(error))),
                        None => (
                            ack.job_id,
                            core.ack(project_id, ack.job_id, ack.lease_id, ack.result, now_ms)
                                .map_err(Ok),
                        ),
                    })
                    .collect::<Vec<_>>()
            })
            .await?;
        let mut results = Vec::with_capacity(outcomes.len());
        for (job_id, outcome) in outcomes {
            results.push(match outcome {
                Ok(()) => None,
                Err(Ok(error)) => Some(self.refusal(project_id, job_id, error).await),
                Err(Err(error)) => Some(error),
            });
        }
        Ok(AckBatchResponse { results })
    }

    async fn job_get(&self, project_id: ProjectId, job_id: JobId) -> Reply<JobInfo> {
        let Some(mut record) = self.read_job(project_id, job_id).await? else {
            return Err(CoreError::NotLive.to_error_body());
        };
        let body = self.read_body(project_id, job_id)?;
        let result = self
            .shared
            .storage
            .get(&keys::result(project_id, job_id))
            .map_err(storage_error)?;
        let queue = self.queue_name(record.queue_id);
        let now_ms = self.clock.now_ms();
        let latest_execution = self.latest_execution(project_id, job_id, &record)?;
        let children = self.children(project_id, job_id)?;
        let rare = record.take_rare();
        Ok(JobInfo {
            job_id,
            queue,
            state: record.visible_state(now_ms),
            priority: record.priority,
            payload: body.payload,
            metadata: body.metadata,
            attempts: record.attempts,
            max_attempts: record.max_attempts,
            backoff: record.backoff,
            lease_ms: record.lease_ms,
            created_at_ms: record.created_at_ms,
            run_at_ms: record.run_at_ms,
            updated_at_ms: record.updated_at_ms,
            finished_at_ms: rare.finished_at_ms,
            lease_deadline_ms: rare.lease.map(|lease| lease.deadline_ms),
            cancel_requested: record.cancel_requested,
            last_error: rare.last_error,
            result,
            executions: record.executions,
            latest_execution,
            progress: self.progress(project_id, job_id)?,
            parents: body.parents,
            parents_remaining: record.parents_remaining,
            on_parent_failure: record.on_parent_failure,
            children,
            unique_key: rare.unique.map(|unique| unique.key),
            expires_at_ms: rare.expires_at_ms,
        })
    }

    /// A job's children, oldest first, at most `CHILDREN_SHOWN_MAX`.
    fn children(&self, project_id: ProjectId, job_id: JobId) -> Reply<Vec<JobId>> {
        let (start, end) = keys::children_range(project_id, job_id);
        let mut children = Vec::new();
        self.shared
            .storage
            .scan(&start, &end, &mut |key, _| {
                if let Some((_, _, child)) = keys::parse_child(key) {
                    children.push(child);
                }
                children.len() < limits::CHILDREN_SHOWN_MAX
            })
            .map_err(storage_error)?;
        Ok(children)
    }

    fn queue_name(&self, queue_id: u64) -> String {
        self.shared
            .lock()
            .core
            .queue_name(queue_id)
            .unwrap_or_default()
            .to_owned()
    }

    /// Resolves a queue name to its id, after a barrier.
    async fn resolve_queue(&self, project_id: ProjectId, name: &str) -> Reply<u64> {
        self.mutate(|core, _| core.queue_id(project_id, name)).await
    }

    /// Job ids of a queue in one stored state, after `after`, at most `limit`.
    pub(super) fn scan_index(
        &self,
        queue_id: u64,
        tag: StateTag,
        after: Option<JobId>,
        limit: usize,
    ) -> Reply<Vec<JobId>> {
        let (start, end) = keys::queue_index_range(queue_id, tag, after);
        let mut ids = Vec::new();
        self.shared
            .storage
            .scan(&start, &end, &mut |key, _| {
                if let Some(job_id) = keys::parse_queue_index(key) {
                    ids.push(job_id);
                }
                ids.len() < limit
            })
            .map_err(storage_error)?;
        Ok(ids)
    }

    async fn job_list(
        &self,
        project_id: ProjectId,
        request: JobListRequest,
    ) -> Reply<JobListResponse> {
        let limit = validate::list_limit(request.limit)?;
        let queue_id = self.resolve_queue(project_id, &request.queue).await?;
        let now_ms = self.clock.now_ms();
        // Live jobs are listed from memory, finished ones from the stored index.
        let (live, tags, wanted): (bool, Vec<StateTag>, Option<JobState>) = match request.state {
            None => (true, StateTag::INDEXED.to_vec(), None),
            Some(JobState::Scheduled | JobState::Ready | JobState::Blocked | JobState::Leased) => {
                (true, Vec::new(), request.state)
            }
            Some(JobState::Succeeded) => (false, vec![StateTag::Succeeded], None),
            Some(JobState::Dead) => (false, vec![StateTag::Dead], None),
            Some(JobState::Cancelled) => (false, vec![StateTag::Cancelled], None),
            Some(JobState::Expired) => (false, vec![StateTag::Expired], None),
        };
        // Each state's index is in id order; merge them and keep one more than a page to
        // know whether another page follows.
        let scan_limit = if wanted.is_some() {
            LIST_SCAN_ENTRIES_MAX
        } else {
            limit + 1
        };
        let mut candidates = BTreeSet::new();
        if live {
            let state = self.shared.lock();
            candidates.extend(state.core.live_job_ids(
                queue_id,
                request.after,
                scan_limit,
                |record| wanted.is_none_or(|wanted| record.visible_state(now_ms) == wanted),
            ));
        }
        for tag in tags {
            candidates.extend(self.scan_index(queue_id, tag, request.after, scan_limit)?);
        }
        let scanned_all = candidates.len() < scan_limit;
        let mut jobs = Vec::new();
        let mut last_seen = None;
        let budget_bytes = self.limits.response_bytes_max as usize;
        let mut used_bytes = RESPONSE_OVERHEAD_BYTES;
        let mut full = false;
        for job_id in candidates {
            let Some(mut record) = self.read_job_now(project_id, job_id)? else {
                last_seen = Some(job_id);
                continue;
            };
            let state = record.visible_state(now_ms);
            if wanted.is_some_and(|wanted| wanted != state) {
                last_seen = Some(job_id);
                continue;
            }
            let summary_bytes = JOB_SUMMARY_OVERHEAD_BYTES
                + request.queue.len()
                + record.last_error().map_or(0, str::len);
            if jobs.len() == limit
                || (!jobs.is_empty() && used_bytes + summary_bytes > budget_bytes)
            {
                full = true;
                break;
            }
            used_bytes += summary_bytes;
            last_seen = Some(job_id);
            jobs.push(JobSummary {
                job_id,
                queue: request.queue.clone(),
                state,
                priority: record.priority,
                attempts: record.attempts,
                max_attempts: record.max_attempts,
                created_at_ms: record.created_at_ms,
                run_at_ms: record.run_at_ms,
                updated_at_ms: record.updated_at_ms,
                last_error: record.take_rare().last_error,
            });
        }
        let next_after = if full || !scanned_all {
            last_seen
        } else {
            None
        };
        Ok(JobListResponse { jobs, next_after })
    }

    async fn purge(&self, project_id: ProjectId, name: &str) -> Reply<BulkResponse> {
        let _bulk = self.bulk_lock.lock().await;
        let queue_id = self.resolve_queue(project_id, name).await?;
        let budget = limits::BULK_JOBS_MAX as usize;
        // Live jobs come from memory; leased ones are left to their workers.
        let mut entries: Vec<(JobId, StateTag)> = {
            let state = self.shared.lock();
            let ids = state.core.live_job_ids(queue_id, None, budget, |record| {
                record.state != StateTag::Leased
            });
            ids.into_iter()
                .map(|job_id| (job_id, StateTag::Pending))
                .collect()
        };
        for tag in StateTag::INDEXED {
            if !tag.is_finished() || entries.len() >= budget {
                continue;
            }
            let ids = self.scan_index(queue_id, tag, None, budget - entries.len())?;
            entries.extend(ids.into_iter().map(|job_id| (job_id, tag)));
        }
        let (affected, remaining) = self
            .mutate(|core, now_ms| {
                let affected = core.delete_jobs(queue_id, &entries, now_ms);
                let counts = core.queue_get(project_id, name)?.counts;
                let remaining = counts.scheduled
                    + counts.blocked
                    + counts.ready
                    + counts.succeeded
                    + counts.dead
                    + counts.cancelled
                    + counts.expired;
                Ok((affected, remaining))
            })
            .await?;
        Ok(BulkResponse {
            affected,
            remaining,
        })
    }

    async fn dead_bulk(
        &self,
        project_id: ProjectId,
        request: DeadBulkRequest,
        retry: bool,
    ) -> Reply<BulkResponse> {
        if request.job_ids.len() > limits::BULK_JOBS_MAX as usize {
            return Err(ErrorBody::new(
                ErrorCode::InvalidArgument,
                format!("at most {} job ids per request", limits::BULK_JOBS_MAX),
            ));
        }
        let _bulk = self.bulk_lock.lock().await;
        let queue_id = self.resolve_queue(project_id, &request.queue).await?;
        let named = !request.job_ids.is_empty();
        let job_ids = if named {
            request.job_ids
        } else {
            self.scan_index(
                queue_id,
                StateTag::Dead,
                None,
                limits::BULK_JOBS_MAX as usize,
            )?
        };
        let mut dead = Vec::with_capacity(job_ids.len());
        for (index, job_id) in job_ids.into_iter().enumerate() {
            let refusal = match self.read_job_now(project_id, job_id)? {
                Some(record) if record.queue_id == queue_id && record.state == StateTag::Dead => {
                    // Only a retry needs the execution the dead index entry holds.
                    let ended = if retry {
                        self.final_execution(job_id, &record)?
                    } else {
                        None
                    };
                    dead.push((job_id, record, ended));
                    continue;
                }
                Some(record) if record.queue_id == queue_id => ErrorBody::new(
                    ErrorCode::Conflict,
                    format!(
                        "job {job_id} is {}, not dead",
                        record.visible_state(self.now_ms())
                    ),
                ),
                _ => ErrorBody::new(
                    ErrorCode::NotFound,
                    format!("job {job_id} not found in queue {:?}", request.queue),
                ),
            };
            return Err(refusal.with_details(ErrorDetails::BatchItem {
                index: index as u32,
            }));
        }
        let (affected, remaining) = self
            .mutate(|core, now_ms| {
                let affected = if retry {
                    let mut revived = 0;
                    for (job_id, record, ended) in dead {
                        if core
                            .revive_dead(project_id, job_id, record, ended, now_ms)
                            .is_ok()
                        {
                            revived += 1;
                        }
                    }
                    revived
                } else {
                    let entries: Vec<(JobId, StateTag)> = dead
                        .iter()
                        .map(|(job_id, _, _)| (*job_id, StateTag::Dead))
                        .collect();
                    core.delete_jobs(queue_id, &entries, now_ms)
                };
                let remaining = if named {
                    0
                } else {
                    core.queue_get(project_id, &request.queue)?.counts.dead
                };
                Ok((affected, remaining))
            })
            .await?;
        Ok(BulkResponse {
            affected,
            remaining,
        })
    }
}

/// Withdraws a long-poll registration if the FETCH ends (or is dropped) before it is
/// served, so a vanished client leaves nothing behind.
struct WaiterGuard<'a> {
    broker: &'a Broker,
    waiter_id: u64,
    armed: bool,
}

impl WaiterGuard<'_> {
    /// Withdraws the waiter; false when it had already been served.
    fn withdraw(mut self) -> bool {
        self.armed = false;
        self.remove()
    }

    fn remove(&self) -> bool {
        let mut state = self.broker.shared.lock();
        let waiting = state.core.remove_waiter(self.waiter_id);
        if waiting {
            state.waiter_senders.remove(&self.waiter_id);
        }
        waiting
    }
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.remove();
        }
    }
}
