//! [`JobContext`]: what a handler gets — the leased job, its cancellation token, a logger
//! and a progress reporter.

use std::sync::Arc;

use taskforge_protocol::{LeasedJob, LogLevel};
use tokio_util::sync::CancellationToken;

use super::telemetry::Telemetry;

/// What a handler gets: the leased job, a token that fires when the job should stop, and
/// a logger and progress reporter whose lines and percentages the broker keeps with the
/// job's execution (`taskforge job logs`, `taskforge job get`).
///
/// Logging and progress never wait and never fail the job: lines are buffered and sent in
/// batches in the background, and whatever is still buffered is sent before the job's ACK
/// or FAIL.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The job as FETCH returned it.
    pub(super) job: LeasedJob,
    /// Fired when the job should stop early (see [`JobContext::cancellation`]).
    pub(super) cancellation: CancellationToken,
    /// Where log lines and progress wait to be sent.
    pub(super) telemetry: Arc<Telemetry>,
}

impl JobContext {
    /// A context for `job` that sends nothing anywhere: for testing handlers.
    pub fn detached(job: LeasedJob) -> JobContext {
        JobContext {
            job,
            cancellation: CancellationToken::new(),
            telemetry: Arc::default(),
        }
    }

    /// The leased job.
    pub fn job(&self) -> &LeasedJob {
        &self.job
    }

    /// The job's payload.
    pub fn payload(&self) -> &[u8] {
        &self.job.payload
    }

    /// Fires when the job was cancelled (an EXTEND or heartbeat reply said so), its lease
    /// was lost, or the worker was terminated and the job's time is up. Await
    /// `cancelled()` on it in a `select!` to stop long work early; the job's outcome is
    /// then refused or replaced, so there is no point finishing it.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancellation
    }

    /// True once [`JobContext::cancellation`] fired.
    pub fn is_cancel_requested(&self) -> bool {
        self.cancellation.is_cancelled()
    }

    /// Appends a log line to the job's execution (cut to `LOG_LINE_BYTES_MAX`).
    pub fn log(&self, level: LogLevel, message: impl Into<String>) {
        self.telemetry.log(level, message.into(), Vec::new());
    }

    /// Appends a log line with structured fields; message and fields together are cut to
    /// `LOG_LINE_BYTES_MAX`.
    pub fn log_with_fields(
        &self,
        level: LogLevel,
        message: impl Into<String>,
        fields: Vec<(String, String)>,
    ) {
        self.telemetry.log(level, message.into(), fields);
    }

    /// [`JobContext::log`] at debug level.
    pub fn debug(&self, message: impl Into<String>) {
        self.log(LogLevel::Debug, message);
    }

    /// [`JobContext::log`] at info level.
    pub fn info(&self, message: impl Into<String>) {
        self.log(LogLevel::Info, message);
    }

    /// [`JobContext::log`] at warn level.
    pub fn warn(&self, message: impl Into<String>) {
        self.log(LogLevel::Warn, message);
    }

    /// [`JobContext::log`] at error level.
    pub fn error(&self, message: impl Into<String>) {
        self.log(LogLevel::Error, message);
    }

    /// Reports how far the job is: `percent` (capped at 100) and what it is doing (cut to
    /// `PROGRESS_MESSAGE_BYTES_MAX`). Sent promptly; only the latest unsent report is kept.
    pub fn progress(&self, percent: u8, message: impl Into<String>) {
        self.telemetry.progress(percent, message.into());
    }
}
