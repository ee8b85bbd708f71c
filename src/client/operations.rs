//! One typed method per operation of the opcode table. Each builds the request body, goes
//! through [`Client::call`] and unpacks the matching response; operations whose response
//! is `Empty` return `()`.

use taskforge_protocol::{
    AckBatchRequest, AckBatchResponse, AckRequest, BulkResponse, CancelResponse, DeadBulkRequest,
    DeadListRequest, EnqueueBatchRequest, EnqueueBatchResponse, EnqueueRequest, EnqueueResponse,
    ExtendRequest, ExtendResponse, FailRequest, FailResponse, FetchRequest, FetchResponse, JobId,
    JobInfo, JobListRequest, JobListResponse, JobRef, LeaseId, NewJob, Pong, QueueInfo,
    QueueListRequest, QueueListResponse, QueueName, QueueSettings, QueueStats, QueueWrite, Retry,
};

use super::{Client, ClientError};

fn queue_name(name: &str) -> QueueName {
    QueueName {
        name: name.to_string(),
    }
}

impl Client {
    /// PING: checks the broker answers; returns its clock.
    pub async fn ping(&self) -> Result<Pong, ClientError> {
        call_expecting!(self, Ping, Default::default())
    }

    /// QUEUE_CREATE: creates queue `name`; `None` settings take the broker's defaults.
    /// An existing queue is [`taskforge_protocol::ErrorCode::Conflict`].
    pub async fn queue_create(
        &self,
        name: &str,
        settings: QueueSettings,
    ) -> Result<QueueInfo, ClientError> {
        call_expecting!(
            self,
            QueueCreate,
            QueueWrite {
                name: name.to_string(),
                settings
            }
        )
    }

    /// QUEUE_GET: reads queue `name`.
    pub async fn queue_get(&self, name: &str) -> Result<QueueInfo, ClientError> {
        call_expecting!(self, QueueGet, queue_name(name))
    }

    /// QUEUE_LIST: one page of queues in name order, starting after `after`.
    pub async fn queue_list(
        &self,
        after: Option<String>,
        limit: u32,
    ) -> Result<QueueListResponse, ClientError> {
        call_expecting!(self, QueueList, QueueListRequest { after, limit })
    }

    /// QUEUE_UPDATE: changes the settings that are `Some`; the others stay.
    pub async fn queue_update(
        &self,
        name: &str,
        settings: QueueSettings,
    ) -> Result<QueueInfo, ClientError> {
        call_expecting!(
            self,
            QueueUpdate,
            QueueWrite {
                name: name.to_string(),
                settings
            }
        )
    }

    /// QUEUE_DELETE: deletes an empty queue.
    pub async fn queue_delete(&self, name: &str) -> Result<(), ClientError> {
        call_expecting!(self, QueueDelete, queue_name(name)).map(drop)
    }

    /// QUEUE_PAUSE: stops deliveries from queue `name`.
    pub async fn queue_pause(&self, name: &str) -> Result<QueueInfo, ClientError> {
        call_expecting!(self, QueuePause, queue_name(name))
    }

    /// QUEUE_RESUME: resumes deliveries from queue `name`.
    pub async fn queue_resume(&self, name: &str) -> Result<QueueInfo, ClientError> {
        call_expecting!(self, QueueResume, queue_name(name))
    }

    /// QUEUE_PURGE: removes up to a bounded number of the queue's unleased jobs; repeat
    /// while `remaining` is not zero.
    pub async fn queue_purge(&self, name: &str) -> Result<BulkResponse, ClientError> {
        call_expecting!(self, QueuePurge, queue_name(name))
    }

    /// QUEUE_STATS: the queue's job counts by state.
    pub async fn queue_stats(&self, name: &str) -> Result<QueueStats, ClientError> {
        call_expecting!(self, QueueStats, queue_name(name))
    }

    /// ENQUEUE: stores one job.
    pub async fn enqueue(&self, job: NewJob) -> Result<EnqueueResponse, ClientError> {
        call_expecting!(self, Enqueue, EnqueueRequest { job })
    }

    /// ENQUEUE_BATCH: stores all of `jobs` or none of them.
    pub async fn enqueue_batch(
        &self,
        jobs: Vec<NewJob>,
    ) -> Result<EnqueueBatchResponse, ClientError> {
        call_expecting!(self, EnqueueBatch, EnqueueBatchRequest { jobs })
    }

    /// FETCH: leases up to `max_jobs` jobs, long-polling up to `wait_ms` for the first. The
    /// request timeout starts after the wait. A registered worker names itself in
    /// `worker_id` (its leases are then released when it is lost) and may weigh its queues.
    pub async fn fetch(&self, request: FetchRequest) -> Result<FetchResponse, ClientError> {
        call_expecting!(self, Fetch, request)
    }

    /// ACK: marks a leased job done, storing `result`. A stale lease gets
    /// [`taskforge_protocol::ErrorCode::LeaseLost`].
    pub async fn ack(
        &self,
        job_id: JobId,
        lease_id: LeaseId,
        result: Option<Vec<u8>>,
    ) -> Result<(), ClientError> {
        call_expecting!(
            self,
            Ack,
            AckRequest {
                job_id,
                lease_id,
                result
            }
        )
        .map(drop)
    }

    /// ACK_BATCH: acknowledges many jobs; the response has one outcome per ack.
    pub async fn ack_batch(&self, acks: Vec<AckRequest>) -> Result<AckBatchResponse, ClientError> {
        call_expecting!(self, AckBatch, AckBatchRequest { acks })
    }

    /// FAIL: reports a failed attempt with its error message and retry wish.
    /// [`Client::fail_with_details`] also stores details such as a stack trace.
    pub async fn fail(
        &self,
        job_id: JobId,
        lease_id: LeaseId,
        error: impl Into<String>,
        retry: Retry,
    ) -> Result<FailResponse, ClientError> {
        self.fail_with_details(job_id, lease_id, error, retry, None)
            .await
    }

    /// FAIL with `error_details` (a stack trace, say; at most
    /// [`taskforge_protocol::limits::ERROR_DETAILS_BYTES_MAX`] bytes), kept in the
    /// execution record beside the error message.
    pub async fn fail_with_details(
        &self,
        job_id: JobId,
        lease_id: LeaseId,
        error: impl Into<String>,
        retry: Retry,
        error_details: Option<String>,
    ) -> Result<FailResponse, ClientError> {
        call_expecting!(
            self,
            Fail,
            FailRequest {
                job_id,
                lease_id,
                error: error.into(),
                retry,
                error_details
            }
        )
    }

    /// EXTEND: renews a lease for `lease_ms` from now. The response says whether the job
    /// was cancelled meanwhile.
    pub async fn extend(
        &self,
        job_id: JobId,
        lease_id: LeaseId,
        lease_ms: u32,
    ) -> Result<ExtendResponse, ClientError> {
        call_expecting!(
            self,
            Extend,
            ExtendRequest {
                job_id,
                lease_id,
                lease_ms
            }
        )
    }

    /// CANCEL: cancels a job; a leased one is cancelled when its holder next hears from
    /// the broker.
    pub async fn cancel(&self, job_id: JobId) -> Result<CancelResponse, ClientError> {
        call_expecting!(self, Cancel, JobRef { job_id })
    }

    /// JOB_GET: everything about one job.
    pub async fn job_get(&self, job_id: JobId) -> Result<JobInfo, ClientError> {
        call_expecting!(self, JobGet, JobRef { job_id })
    }

    /// JOB_LIST: one page of a queue's jobs, optionally in one state.
    pub async fn job_list(&self, request: JobListRequest) -> Result<JobListResponse, ClientError> {
        call_expecting!(self, JobList, request)
    }

    /// DEAD_LIST: one page of a queue's dead jobs.
    pub async fn dead_list(
        &self,
        request: DeadListRequest,
    ) -> Result<JobListResponse, ClientError> {
        call_expecting!(self, DeadList, request)
    }

    /// DEAD_RETRY: makes these dead jobs (or, with no ids, a bounded step of all the
    /// queue's dead jobs) ready again; repeat while `remaining` is not zero.
    pub async fn dead_retry(
        &self,
        queue: &str,
        job_ids: Vec<JobId>,
    ) -> Result<BulkResponse, ClientError> {
        call_expecting!(
            self,
            DeadRetry,
            DeadBulkRequest {
                queue: queue.to_string(),
                job_ids
            }
        )
    }

    /// DEAD_DISCARD: deletes these dead jobs (or, with no ids, a bounded step of all the
    /// queue's dead jobs); repeat while `remaining` is not zero.
    pub async fn dead_discard(
        &self,
        queue: &str,
        job_ids: Vec<JobId>,
    ) -> Result<BulkResponse, ClientError> {
        call_expecting!(
            self,
            DeadDiscard,
            DeadBulkRequest {
                queue: queue.to_string(),
                job_ids
            }
        )
    }
}
