//! A job's history: progress and log lines reported under its lease, its executions, and
//! results. Writes go through the core (they need the current lease); reads come from
//! storage after a commit barrier.

use std::collections::VecDeque;
use std::sync::Arc;

use taskforge_protocol::{
    ErrorBody, ExecutionInfo, ExecutionList, ExecutionListRequest, JobId, JobResult, JobResults,
    LogLine, LogTail, LogTailRequest, ProgressInfo, ProjectId, Request, Response,
};
use tokio::sync::Notify;

use super::budget::{encoded_bytes, keep_within};
use super::core::{open_execution, CoreError};
use super::service::storage_error;
use super::{validate, Broker};
use crate::storage::keys;
use crate::storage::records::{self, JobRecord, StateTag};

type Reply<T> = Result<T, ErrorBody>;

/// Removes a follower registration when the last follower of a job leaves.
struct FollowGuard<'a> {
    broker: &'a Broker,
    job_id: JobId,
    notify: Arc<Notify>,
}

impl Drop for FollowGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.broker.shared.lock();
        // The map holds one reference and this guard another.
        if Arc::strong_count(&self.notify) <= 2 {
            state.log_followers.remove(&self.job_id);
        }
    }
}

impl Broker {
    /// Runs a history operation in the session's project.
    pub(super) async fn handle_history(
        &self,
        project_id: ProjectId,
        request: Request,
    ) -> Reply<Response> {
        match request {
            Request::Progress(body) => {
                validate::progress(&body)?;
                let job_id = body.job_id;
                let outcome = self
                    .mutate_raw(|core, now_ms| {
                        core.report_progress(
                            project_id,
                            job_id,
                            body.lease_id,
                            body.percent,
                            body.message,
                            now_ms,
                        )
                    })
                    .await?;
                match outcome {
                    Ok(()) => Ok(Response::Progress(Default::default())),
                    Err(error) => Err(self.refusal(project_id, job_id, error).await),
                }
            }
            Request::Log(body) => {
                validate::log(&body)?;
                let job_id = body.job_id;
                let outcome = self
                    .mutate_raw(|core, now_ms| {
                        core.append_log(project_id, job_id, body.lease_id, body.lines, now_ms)
                    })
                    .await?;
                match outcome {
                    Ok(reply) => Ok(Response::Log(reply)),
                    Err(error) => Err(self.refusal(project_id, job_id, error).await),
                }
            }
            Request::LogTail(body) => {
                validate::log_tail(&body)?;
                Ok(Response::LogTail(self.log_tail(project_id, body).await?))
            }
            Request::ExecutionList(body) => Ok(Response::ExecutionList(
                self.execution_list(project_id, body).await?,
            )),
            Request::JobResults(body) => Ok(Response::JobResults(
                self.job_results(project_id, body.job_id).await?,
            )),
            other => unreachable!("{:?} is not a history operation", other.opcode()),
        }
    }

    /// The latest execution of a stored job: the running one, or the last stored.
    pub(super) fn latest_execution(
        &self,
        project_id: ProjectId,
        job_id: JobId,
        record: &JobRecord,
    ) -> Reply<Option<Box<ExecutionInfo>>> {
        if let Some(open) = open_execution(record) {
            return Ok(Some(Box::new(open)));
        }
        if record.executions == 0 {
            return Ok(None);
        }
        if let Some(last) = self.final_execution(job_id, record)? {
            return Ok(Some(Box::new(last)));
        }
        let key = keys::execution(project_id, job_id, record.executions);
        Ok(self.read_record(&key, "execution")?.map(Box::new))
    }

    /// The execution a finished job's index entry holds: the one whose end finished the
    /// job, if one did (`Core::finish`). Every other ended execution has its own key.
    pub(super) fn final_execution(
        &self,
        job_id: JobId,
        record: &JobRecord,
    ) -> Reply<Option<ExecutionInfo>> {
        if !record.state.is_finished() {
            return Ok(None);
        }
        let key = keys::queue_index(record.queue_id, record.state, job_id);
        match self.shared.storage.get(&key).map_err(storage_error)? {
            Some(value) if !value.is_empty() => records::decode("execution", &value)
                .map(Some)
                .map_err(storage_error),
            _ => Ok(None),
        }
    }

    /// A job's last progress report.
    pub(super) fn progress(
        &self,
        project_id: ProjectId,
        job_id: JobId,
    ) -> Reply<Option<ProgressInfo>> {
        self.read_record(&keys::progress(project_id, job_id), "progress")
    }

    fn read_record<T: bincode::Decode<()>>(
        &self,
        key: &[u8],
        what: &'static str,
    ) -> Reply<Option<T>> {
        match self.shared.storage.get(key).map_err(storage_error)? {
            None => Ok(None),
            Some(bytes) => records::decode(what, &bytes)
                .map(Some)
                .map_err(storage_error),
        }
    }

    async fn stored_job(&self, project_id: ProjectId, job_id: JobId) -> Reply<JobRecord> {
        self.read_job(project_id, job_id)
            .await?
            .ok_or_else(|| CoreError::NotLive.to_error_body())
    }

    async fn execution_list(
        &self,
        project_id: ProjectId,
        request: ExecutionListRequest,
    ) -> Reply<ExecutionList> {
        let limit = validate::list_limit(request.limit)?;
        let record = self.stored_job(project_id, request.job_id).await?;
        let after = request.after.unwrap_or(0);
        let (start, end) = keys::execution_range(project_id, request.job_id, after);
        let mut executions: Vec<ExecutionInfo> = Vec::new();
        let mut decode_error = None;
        self.shared
            .storage
            .scan(&start, &end, &mut |_, value| {
                match records::decode("execution", value) {
                    Ok(info) => executions.push(info),
                    Err(error) => decode_error = Some(error),
                }
                decode_error.is_none() && executions.len() <= limit
            })
            .map_err(storage_error)?;
        if let Some(error) = decode_error {
            return Err(storage_error(error));
        }
        let last = match open_execution(&record) {
            Some(open) => Some(open),
            None => self.final_execution(request.job_id, &record)?,
        };
        if let Some(last) = last.filter(|last| last.execution > after) {
            executions.push(last);
        }
        let mut next_after = None;
        if executions.len() > limit {
            executions.truncate(limit);
            next_after = executions.last().map(|info| info.execution);
        }
        if keep_within(
            &mut executions,
            self.limits.response_bytes_max as usize,
            encoded_bytes,
        ) {
            next_after = executions.last().map(|info| info.execution);
        }
        Ok(ExecutionList {
            executions,
            next_after,
        })
    }

    async fn job_results(&self, project_id: ProjectId, job_id: JobId) -> Reply<JobResults> {
        let record = self.stored_job(project_id, job_id).await?;
        let now_ms = self.clock.now_ms();
        let job = self.job_result(project_id, job_id, &record, now_ms)?;
        let mut parents = Vec::new();
        for parent_id in self.read_body(project_id, job_id)?.parents {
            // A parent purged by retention is left out.
            if let Some(parent) = self.read_job_now(project_id, parent_id)? {
                parents.push(self.job_result(project_id, parent_id, &parent, now_ms)?);
            }
        }
        let budget_bytes = self.limits.response_bytes_max as usize;
        keep_within(
            &mut parents,
            budget_bytes.saturating_sub(encoded_bytes(&job)),
            encoded_bytes,
        );
        Ok(JobResults { job, parents })
    }

    fn job_result(
        &self,
        project_id: ProjectId,
        job_id: JobId,
        record: &JobRecord,
        now_ms: u64,
    ) -> Reply<JobResult> {
        let result = self
            .shared
            .storage
            .get(&keys::result(project_id, job_id))
            .map_err(storage_error)?;
        Ok(JobResult {
            job_id,
            state: record.visible_state(now_ms),
            result,
        })
    }

    /// LOG_TAIL: the last lines of an execution, or (with `after_seq`) the lines after a
    /// number, waiting for one when there is none yet and the execution runs.
    async fn log_tail(&self, project_id: ProjectId, request: LogTailRequest) -> Reply<LogTail> {
        let deadline_ms = self
            .clock
            .now_ms()
            .saturating_add(u64::from(request.wait_ms));
        if request.after_seq.is_none() || request.wait_ms == 0 {
            // Nothing to wait for: no follower registration.
            return self.read_log_tail(project_id, &request).await;
        }
        let notify = {
            let mut state = self.shared.lock();
            Arc::clone(state.log_followers.entry(request.job_id).or_default())
        };
        let _guard = FollowGuard {
            broker: self,
            job_id: request.job_id,
            notify: Arc::clone(&notify),
        };
        loop {
            let changed = notify.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let tail = self.read_log_tail(project_id, &request).await?;
            let waiting = tail.lines.is_empty() && tail.open;
            if !waiting || self.clock.now_ms() >= deadline_ms {
                return Ok(tail);
            }
            tokio::select! {
                _ = &mut changed => {}
                _ = self.clock.sleep_until(deadline_ms) => return Ok(tail),
                _ = self.long_polls_released.cancelled() => return Ok(tail),
            }
        }
    }

    async fn read_log_tail(
        &self,
        project_id: ProjectId,
        request: &LogTailRequest,
    ) -> Reply<LogTail> {
        let job_id = request.job_id;
        let record = self.stored_job(project_id, job_id).await?;
        let execution = request.execution.unwrap_or(record.executions);
        if execution > record.executions {
            return Err(
                CoreError::NotFound(format!("job {job_id} has no execution {execution}"))
                    .to_error_body(),
            );
        }
        // More lines may come while the execution runs. A job never delivered has no
        // execution to follow yet (execution 0, closed).
        let open =
            execution > 0 && record.state == StateTag::Leased && execution == record.executions;
        let after = request.after_seq.unwrap_or(0);
        let (start, end) = keys::log_range(project_id, job_id, execution, after);
        let wanted = request.lines as usize;
        let mut lines: VecDeque<LogLine> = VecDeque::new();
        let mut decode_error = None;
        let tail_mode = request.after_seq.is_none();
        if execution > 0 {
            self.shared
                .storage
                .scan(&start, &end, &mut |_, value| {
                    match records::decode::<LogLine>("log line", value) {
                        Ok(line) => {
                            lines.push_back(line);
                            if tail_mode && lines.len() > wanted {
                                lines.pop_front();
                            }
                        }
                        Err(error) => decode_error = Some(error),
                    }
                    decode_error.is_none() && (tail_mode || lines.len() < wanted)
                })
                .map_err(storage_error)?;
        }
        if let Some(error) = decode_error {
            return Err(storage_error(error));
        }
        let mut lines: Vec<LogLine> = lines.into();
        let budget_bytes = self.limits.response_bytes_max as usize;
        if tail_mode {
            // Keep the newest lines that fit.
            lines.reverse();
            keep_within(&mut lines, budget_bytes, encoded_bytes);
            lines.reverse();
        } else {
            keep_within(&mut lines, budget_bytes, encoded_bytes);
        }
        let next_after = lines.last().map_or(after, |line| line.seq);
        Ok(LogTail {
            execution,
            lines,
            next_after,
            open,
        })
    }
}
