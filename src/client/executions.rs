//! One typed method per execution operation: the log lines and progress a running job
//! reports (LOG, PROGRESS), reading them back (LOG_TAIL), the record of every delivery
//! (EXECUTION_LIST) and results (JOB_RESULTS). Each builds the request body, goes through
//! [`Client::call`] and unpacks the matching response; PROGRESS, whose response is `Empty`,
//! returns `()`.
//!
//! [`crate::client::JobContext`] sends LOG and PROGRESS for a handler by itself.

use taskforge_protocol::{
    ExecutionList, ExecutionListRequest, JobId, JobRef, JobResults, LeaseId, LogRequest,
    LogResponse, LogTail, LogTailRequest, NewLogLine, ProgressRequest,
};

use super::{Client, ClientError};

impl Client {
    /// LOG: appends `lines` (1..=[`taskforge_protocol::limits::LOG_LINES_PER_REQUEST_MAX`])
    /// to the execution running under `lease_id`. A stale lease is
    /// [`taskforge_protocol::ErrorCode::LeaseLost`]; lines past the execution's cap are
    /// [`taskforge_protocol::ErrorCode::QuotaExceeded`], and then none of `lines` is stored.
    pub async fn log(
        &self,
        job_id: JobId,
        lease_id: LeaseId,
        lines: Vec<NewLogLine>,
    ) -> Result<LogResponse, ClientError> {
        call_expecting!(
            self,
            Log,
            LogRequest {
                job_id,
                lease_id,
                lines
            }
        )
    }

    /// LOG_TAIL: the last `request.lines` lines of an execution, or, with `after_seq`, the
    /// lines after it, waiting up to `wait_ms` for one while the execution runs. Follow a
    /// running job by calling again with the reply's `next_after` while `open` is true. The
    /// request timeout starts after the wait.
    pub async fn log_tail(&self, request: LogTailRequest) -> Result<LogTail, ClientError> {
        call_expecting!(self, LogTail, request)
    }

    /// PROGRESS: records how far the job running under `lease_id` is (`percent` 0..=100)
    /// and what it is doing; JOB_GET shows the last one. A stale lease is
    /// [`taskforge_protocol::ErrorCode::LeaseLost`].
    pub async fn progress(
        &self,
        job_id: JobId,
        lease_id: LeaseId,
        percent: u8,
        message: impl Into<String>,
    ) -> Result<(), ClientError> {
        call_expecting!(
            self,
            Progress,
            ProgressRequest {
                job_id,
                lease_id,
                percent,
                message: message.into()
            }
        )
        .map(drop)
    }

    /// EXECUTION_LIST: one page of a job's executions in order (the running one last),
    /// starting after execution number `after`.
    pub async fn execution_list(
        &self,
        job_id: JobId,
        after: Option<u32>,
        limit: u32,
    ) -> Result<ExecutionList, ClientError> {
        call_expecting!(
            self,
            ExecutionList,
            ExecutionListRequest {
                job_id,
                after,
                limit
            }
        )
    }

    /// JOB_RESULTS: the job's state and result, and its parents' (for a fan-in job).
    pub async fn job_results(&self, job_id: JobId) -> Result<JobResults, ClientError> {
        call_expecting!(self, JobResults, JobRef { job_id })
    }
}
