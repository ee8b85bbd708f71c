//! Executions of the core: closing the record of each delivery, and the log lines and
//! progress a lease holder reports.
//!
//! A running execution is not stored on its own: the job record's lease and execution
//! number describe it ([`open_execution`]). Its record is written once, when it ends: under
//! its own key if the job goes on (a retry), or as the value of the finished job's index
//! entry if the job finished with it, which saves the job a stored key (see
//! [`crate::storage::keys`]).

use taskforge_protocol::{
    ExecutionInfo, ExecutionOutcome, JobId, LeaseId, LogLine, LogResponse, NewLogLine,
    ProgressInfo, ProjectId,
};

use super::{Core, CoreError};
use crate::storage::records::{self, JobRecord, StateTag};
use crate::storage::{keys, Write};

/// The running execution of a stored or live job record, if it is leased.
pub fn open_execution(record: &JobRecord) -> Option<ExecutionInfo> {
    let lease = record
        .lease()
        .copied()
        .filter(|_| record.state == StateTag::Leased)?;
    Some(ExecutionInfo {
        execution: record.executions,
        attempt: record.attempts,
        worker_id: lease.worker_id,
        lease_id: lease.lease_id,
        leased_at_ms: lease.leased_at_ms,
        lease_deadline_ms: lease.deadline_ms,
        finished_at_ms: None,
        outcome: None,
        error: None,
        error_details: None,
        duration_ms: None,
    })
}

impl Core {
    /// Restores the number of lines a running execution has logged.
    pub fn restore_log_lines(&mut self, job_id: JobId, lines: u32) {
        if lines > 0 {
            self.log_lines.insert(job_id, lines);
        }
    }

    /// Leased jobs with their project and current execution, for recovery to count their
    /// log lines.
    pub fn open_executions(&self) -> Vec<(ProjectId, JobId, u32)> {
        self.jobs
            .iter()
            .filter(|(_, record)| record.state == StateTag::Leased)
            .map(|(job_id, record)| (self.project_of(record.queue_id), *job_id, record.executions))
            .collect()
    }

    /// Jobs whose log gained lines or whose execution ended since the last call (log
    /// followers wait on them).
    pub fn take_log_events(&mut self) -> Vec<JobId> {
        std::mem::take(&mut self.log_events)
    }

    /// Appends log lines to the execution running under `lease_id`: all of them, or none
    /// when they would pass the per-execution cap.
    pub fn append_log(
        &mut self,
        project_id: ProjectId,
        job_id: JobId,
        lease_id: LeaseId,
        lines: Vec<NewLogLine>,
        now_ms: u64,
    ) -> Result<LogResponse, CoreError> {
        let execution = self.leased_job(project_id, job_id, lease_id)?.executions;
        let logged = self.log_lines.get(&job_id).copied().unwrap_or(0);
        let max = self.settings.log_lines_per_execution_max;
        let wanted = u32::try_from(lines.len()).unwrap_or(u32::MAX);
        if logged.saturating_add(wanted) > max {
            return Err(CoreError::Quota {
                limit: "log_lines_per_execution",
                current: u64::from(logged),
                max: u64::from(max),
            });
        }
        for (seq, line) in (logged + 1..).zip(lines) {
            let stored = LogLine {
                seq,
                at_ms: now_ms,
                level: line.level,
                message: line.message,
                fields: line.fields,
            };
            self.writes.push(Write::Put(
                keys::log_line(project_id, job_id, execution, seq),
                records::encode(&stored),
            ));
        }
        self.log_lines.insert(job_id, logged + wanted);
        self.log_events.push(job_id);
        Ok(LogResponse {
            execution,
            first_seq: logged + 1,
        })
    }

    /// Stores the progress reported under `lease_id`.
    pub fn report_progress(
        &mut self,
        project_id: ProjectId,
        job_id: JobId,
        lease_id: LeaseId,
        percent: u8,
        message: String,
        now_ms: u64,
    ) -> Result<(), CoreError> {
        let execution = self.leased_job(project_id, job_id, lease_id)?.executions;
        let progress = ProgressInfo {
            execution,
            percent,
            message,
            updated_at_ms: now_ms,
        };
        self.writes.push(Write::Put(
            keys::progress(project_id, job_id),
            records::encode(&progress),
        ));
        Ok(())
    }

    /// Ends the execution a leased job is running, as of now with `outcome`, forgets its
    /// lease's worker and log count, and returns its record. The caller moves the job on and
    /// stores the record with it: [`Core::finish`] in the finished job's index entry,
    /// [`Core::requeue`] under the execution's own key.
    pub(super) fn close_execution(
        &mut self,
        job_id: JobId,
        outcome: ExecutionOutcome,
        error: Option<String>,
        error_details: Option<String>,
        now_ms: u64,
    ) -> Option<ExecutionInfo> {
        let mut info = open_execution(self.jobs.get(&job_id)?)?;
        info.finished_at_ms = Some(now_ms);
        info.outcome = Some(outcome);
        info.error = error;
        info.error_details = error_details;
        info.duration_ms = Some(now_ms.saturating_sub(info.leased_at_ms));
        self.detach_lease(info.worker_id, job_id);
        self.log_lines.remove(&job_id);
        self.log_events.push(job_id);
        Some(info)
    }

    /// Stores under its own key an ended execution of a job that goes on (a retry, or a dead
    /// job retried).
    pub(super) fn store_execution(
        &mut self,
        project_id: ProjectId,
        job_id: JobId,
        info: &ExecutionInfo,
    ) {
        self.writes.push(Write::Put(
            keys::execution(project_id, job_id, info.execution),
            records::encode(info),
        ));
    }
}
