//! Execution bodies: the record of every delivery, the log lines and progress a worker
//! reports while it runs a job, and results.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::types::{JobId, JobState, LeaseId};
use crate::workers::WorkerId;

/// How an execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionOutcome {
    /// ACK.
    Succeeded,
    /// FAIL (retried or dead).
    Failed,
    /// The lease ran out.
    LeaseExpired,
    /// Its worker missed heartbeats or left while holding it.
    WorkerLost,
    /// Cancelled while it ran.
    Cancelled,
}

impl ExecutionOutcome {
    /// The lower-case name used in text output.
    pub fn name(self) -> &'static str {
        match self {
            ExecutionOutcome::Succeeded => "succeeded",
            ExecutionOutcome::Failed => "failed",
            ExecutionOutcome::LeaseExpired => "lease_expired",
            ExecutionOutcome::WorkerLost => "worker_lost",
            ExecutionOutcome::Cancelled => "cancelled",
        }
    }
}

/// One delivery of a job.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct ExecutionInfo {
    /// Its number among the job's executions, from 1. Unlike `attempt`, it never repeats
    /// (a dead job retried by an operator starts its attempts again).
    pub execution: u32,
    /// The attempt it was.
    pub attempt: u32,
    /// The worker that fetched it, when the FETCH named one.
    pub worker_id: Option<WorkerId>,
    /// Its lease.
    pub lease_id: LeaseId,
    /// When it was leased, ms since the Unix epoch.
    pub leased_at_ms: u64,
    /// Its lease deadline (the last one, after extensions).
    pub lease_deadline_ms: u64,
    /// When it ended; `None` while it runs.
    pub finished_at_ms: Option<u64>,
    /// How it ended; `None` while it runs.
    pub outcome: Option<ExecutionOutcome>,
    /// The failure's message.
    pub error: Option<String>,
    /// The failure's details (e.g. a stack trace).
    pub error_details: Option<String>,
    /// `finished_at_ms - leased_at_ms`.
    pub duration_ms: Option<u64>,
}

/// EXECUTION_LIST request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct ExecutionListRequest {
    /// The job.
    pub job_id: JobId,
    /// Start after this execution number (the previous page's `next_after`).
    pub after: Option<u32>,
    /// Page size, at most `LIST_LIMIT_MAX`.
    pub limit: u32,
}

/// EXECUTION_LIST response.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct ExecutionList {
    /// Executions in order, the running one (if any) last.
    pub executions: Vec<ExecutionInfo>,
    /// Pass as `after` for the next page; `None` on the last page.
    pub next_after: Option<u32>,
}

/// A log line's severity.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Encode, Decode, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// Finest detail.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal progress.
    Info,
    /// Something odd.
    Warn,
    /// Something failed.
    Error,
}

impl LogLevel {
    /// The lower-case name used in text output.
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// A line to append.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct NewLogLine {
    /// Severity.
    pub level: LogLevel,
    /// The text.
    pub message: String,
    /// Structured fields; message and fields together at most `LOG_LINE_BYTES_MAX`.
    pub fields: Vec<(String, String)>,
}

/// LOG request: lines for the execution running under `lease_id`.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct LogRequest {
    /// The job.
    pub job_id: JobId,
    /// Its current lease.
    pub lease_id: LeaseId,
    /// The lines, 1..=`LOG_LINES_PER_REQUEST_MAX`.
    pub lines: Vec<NewLogLine>,
}

/// LOG response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct LogResponse {
    /// The execution the lines went to.
    pub execution: u32,
    /// The first line's sequence number (lines are numbered from 1 per execution).
    pub first_seq: u32,
}

/// A stored log line.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct LogLine {
    /// Its number in the execution, from 1.
    pub seq: u32,
    /// When the broker received it, ms since the Unix epoch.
    pub at_ms: u64,
    /// Severity.
    pub level: LogLevel,
    /// The text.
    pub message: String,
    /// Structured fields.
    pub fields: Vec<(String, String)>,
}

/// LOG_TAIL request. Without `after_seq` it returns the last `lines` lines; with it, the
/// lines after that number, waiting up to `wait_ms` for one to arrive (follow mode: call
/// again with the reply's `next_after` while `open` is true).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct LogTailRequest {
    /// The job.
    pub job_id: JobId,
    /// The execution; `None` for the latest.
    pub execution: Option<u32>,
    /// Most lines to return, at most `LOG_TAIL_LINES_MAX`.
    pub lines: u32,
    /// Follow mode: only lines after this number.
    pub after_seq: Option<u32>,
    /// Follow mode: how long to wait when there is no such line yet (at most
    /// `FETCH_WAIT_MS_MAX`); 0 answers at once.
    pub wait_ms: u32,
}

/// LOG_TAIL response.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct LogTail {
    /// The execution read; 0 when the job has not been delivered yet.
    pub execution: u32,
    /// Lines in order.
    pub lines: Vec<LogLine>,
    /// Pass as `after_seq` to follow: the last line's number (or the one sent).
    pub next_after: u32,
    /// True while the execution runs (more lines may come).
    pub open: bool,
}

/// PROGRESS request.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct ProgressRequest {
    /// The job.
    pub job_id: JobId,
    /// Its current lease.
    pub lease_id: LeaseId,
    /// 0..=100.
    pub percent: u8,
    /// What it is doing, at most `PROGRESS_MESSAGE_BYTES_MAX` bytes.
    pub message: String,
}

/// A job's last reported progress.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct ProgressInfo {
    /// The execution that reported it.
    pub execution: u32,
    /// 0..=100.
    pub percent: u8,
    /// What it was doing.
    pub message: String,
    /// When it was reported, ms since the Unix epoch.
    pub updated_at_ms: u64,
}

/// The result of one job, in JOB_RESULTS.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct JobResult {
    /// The job.
    pub job_id: JobId,
    /// Its state.
    pub state: JobState,
    /// The bytes its ACK stored, if any.
    pub result: Option<Vec<u8>>,
}

/// JOB_RESULTS response: the job's own result and its parents' (for a fan-in job).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct JobResults {
    /// The job itself.
    pub job: JobResult,
    /// Its parents, in the order they were named.
    pub parents: Vec<JobResult>,
}
