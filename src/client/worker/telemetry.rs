//! What a running job reports besides its outcome: log lines (LOG) and progress
//! (PROGRESS).
//!
//! A handler's [`super::JobContext`] appends to a [`Telemetry`] buffer without waiting. One
//! [`Shipper`] task per job sends the buffer: log lines in order, in batches of up to
//! `LOG_LINES_PER_REQUEST_MAX` (one request at a time, so lines keep their order), and only
//! the latest progress. It sends shortly after a line arrives ([`LOG_LINGER_MS`], so a burst
//! goes in one request) or at once when a batch is full, and [`Shipper::close`] sends the
//! rest before the job's ACK or FAIL.
//!
//! Logging never fails the job. A LOG refused with QUOTA_EXCEEDED (the execution's line
//! cap) is reported once through `tracing` and the job's further lines are dropped; a
//! LEASE_LOST drops them silently (the outcome will be refused as well); other failures
//! drop the batch with a warning.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use taskforge_protocol::limits::{
    LOG_LINES_PER_REQUEST_MAX, LOG_LINE_BYTES_MAX, PROGRESS_MESSAGE_BYTES_MAX,
};
use taskforge_protocol::{ErrorCode, LeasedJob, LogLevel, NewLogLine};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::job::deliver;
use super::truncate_to_char_boundary;
use crate::client::{Client, ClientError};

/// How long the shipper waits after a line arrives for more to join it in one LOG.
pub const LOG_LINGER_MS: u64 = 200;

/// Lines a job may have waiting to be sent; more are dropped (with one warning) until the
/// buffer drains. The broker's default per-execution cap, so it only bites when the
/// broker is unreachable.
pub const LOG_BUFFER_LINES_MAX: usize =
    taskforge_protocol::limits::LOG_LINES_PER_EXECUTION_MAX_DEFAULT as usize;

/// What is waiting to be sent, and whether more may come.
#[derive(Debug, Default)]
struct Pending {
    /// Lines not sent yet, oldest first.
    lines: VecDeque<NewLogLine>,
    /// The latest progress not sent yet.
    progress: Option<(u8, String)>,
    /// The job's outcome was reported: nothing more is accepted.
    closed: bool,
    /// Further lines are dropped (the quota was reached or the lease is gone).
    dropping_lines: bool,
    /// The buffer overflowed once already (warned).
    overflowed: bool,
}

/// A job's buffer of unsent lines and progress, shared by its context and its shipper.
#[derive(Debug, Default)]
pub(super) struct Telemetry {
    /// What waits.
    pending: Mutex<Pending>,
    /// Something was added.
    added: Notify,
    /// A whole batch of lines waits.
    batch_full: Notify,
}

impl Telemetry {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a line (cut to `LOG_LINE_BYTES_MAX`) unless the job's lines are being
    /// dropped or its outcome was reported.
    pub(super) fn log(&self, level: LogLevel, message: String, fields: Vec<(String, String)>) {
        let line = fit_line(NewLogLine {
            level,
            message,
            fields,
        });
        let full = {
            let mut pending = self.pending();
            if pending.closed || pending.dropping_lines {
                return;
            }
            if pending.lines.len() >= LOG_BUFFER_LINES_MAX {
                if !pending.overflowed {
                    pending.overflowed = true;
                    tracing::warn!(
                        "{LOG_BUFFER_LINES_MAX} log lines wait to be sent; dropping new ones \
                         until the broker takes them"
                    );
                }
                return;
            }
            pending.lines.push_back(line);
            pending.lines.len() >= LOG_LINES_PER_REQUEST_MAX
        };
        self.added.notify_one();
        if full {
            self.batch_full.notify_one();
        }
    }

    /// Records the latest progress (percent capped at 100, message cut to
    /// `PROGRESS_MESSAGE_BYTES_MAX`); an unsent earlier one is replaced.
    pub(super) fn progress(&self, percent: u8, message: String) {
        {
            let mut pending = self.pending();
            if pending.closed {
                return;
            }
            pending.progress = Some((
                percent.min(100),
                truncate_to_char_boundary(message, PROGRESS_MESSAGE_BYTES_MAX),
            ));
        }
        self.added.notify_one();
        // Progress is worth sending without lingering.
        self.batch_full.notify_one();
    }

    /// The next batch to send: up to `LOG_LINES_PER_REQUEST_MAX` lines and the latest
    /// progress. With `close`, marks the buffer closed when nothing is left.
    fn take_batch(&self, close: bool) -> (Vec<NewLogLine>, Option<(u8, String)>) {
        let mut pending = self.pending();
        let count = pending.lines.len().min(LOG_LINES_PER_REQUEST_MAX);
        let lines: Vec<NewLogLine> = pending.lines.drain(..count).collect();
        let progress = pending.progress.take();
        if close && lines.is_empty() && progress.is_none() {
            pending.closed = true;
        }
        (lines, progress)
    }

    /// True when a whole batch waits.
    fn has_full_batch(&self) -> bool {
        self.pending().lines.len() >= LOG_LINES_PER_REQUEST_MAX
    }

    /// Drops the waiting lines and every later one.
    fn drop_lines(&self) {
        let mut pending = self.pending();
        pending.dropping_lines = true;
        pending.lines.clear();
    }

    /// Drops everything waiting and accepts nothing more.
    fn drop_everything(&self) {
        let mut pending = self.pending();
        pending.dropping_lines = true;
        pending.closed = true;
        pending.lines.clear();
        pending.progress = None;
    }
}

/// `line` with its message cut so that message plus fields fit `LOG_LINE_BYTES_MAX`
/// (fields that alone are over it are dropped).
fn fit_line(mut line: NewLogLine) -> NewLogLine {
    let field_bytes = |fields: &[(String, String)]| -> usize {
        fields
            .iter()
            .map(|(key, value)| key.len() + value.len())
            .sum()
    };
    if field_bytes(&line.fields) > LOG_LINE_BYTES_MAX {
        line.fields.clear();
    }
    let room = LOG_LINE_BYTES_MAX - field_bytes(&line.fields);
    line.message = truncate_to_char_boundary(line.message, room);
    line
}

/// The task that sends one job's telemetry.
#[derive(Debug)]
pub(super) struct Shipper {
    /// Asks the task to send what is left and stop.
    closing: CancellationToken,
    /// The task.
    task: JoinHandle<()>,
}

impl Shipper {
    /// Starts sending `telemetry` for `job`.
    pub(super) fn spawn(client: Client, job: &LeasedJob, telemetry: Arc<Telemetry>) -> Shipper {
        let closing = CancellationToken::new();
        let task = tokio::spawn(ship(client, job.clone(), telemetry, closing.clone()));
        Shipper { closing, task }
    }

    /// Sends whatever is still waiting, then stops; later lines are dropped.
    pub(super) async fn close(self) {
        self.closing.cancel();
        if let Err(error) = self.task.await {
            tracing::error!(%error, "the log shipper task failed");
        }
    }
}

/// The shipper's loop.
async fn ship(
    client: Client,
    job: LeasedJob,
    telemetry: Arc<Telemetry>,
    closing: CancellationToken,
) {
    loop {
        tokio::select! {
            biased;
            () = closing.cancelled() => {}
            () = telemetry.added.notified() => {}
        }
        if !closing.is_cancelled() && !telemetry.has_full_batch() {
            tokio::select! {
                biased;
                () = closing.cancelled() => {}
                () = telemetry.batch_full.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(LOG_LINGER_MS)) => {}
            }
        }
        let closing_now = closing.is_cancelled();
        send_waiting(&client, &job, &telemetry, closing_now).await;
        if closing_now {
            return;
        }
    }
}

/// Sends batches until nothing waits (and, with `close`, closes the buffer).
async fn send_waiting(client: &Client, job: &LeasedJob, telemetry: &Telemetry, close: bool) {
    loop {
        let (lines, progress) = telemetry.take_batch(close);
        if lines.is_empty() && progress.is_none() {
            return;
        }
        if let Some((percent, message)) = progress {
            let sent =
                deliver(|| client.progress(job.job_id, job.lease_id, percent, message.clone()))
                    .await;
            if let Err(error) = sent {
                if lease_gone(job, "PROGRESS", &error) {
                    telemetry.drop_everything();
                    return;
                }
                tracing::warn!(job_id = %job.job_id, %error, "PROGRESS failed; progress dropped");
            }
        }
        if lines.is_empty() {
            continue;
        }
        let count = lines.len();
        let sent = deliver(|| client.log(job.job_id, job.lease_id, lines.clone())).await;
        match sent {
            Ok(_) => {}
            Err(error) if error.code() == Some(ErrorCode::QuotaExceeded) => {
                tracing::warn!(
                    job_id = %job.job_id,
                    %error,
                    "the execution's log line cap is reached; this job's further log lines \
                     are dropped"
                );
                telemetry.drop_lines();
            }
            Err(error) if lease_gone(job, "LOG", &error) => {
                telemetry.drop_everything();
                return;
            }
            Err(error) => {
                tracing::warn!(job_id = %job.job_id, %error, "LOG failed; {count} lines dropped");
            }
        }
    }
}

/// True (after a debug line) when `error` says the job's lease is gone.
fn lease_gone(job: &LeasedJob, operation: &str, error: &ClientError) -> bool {
    let gone = error.code() == Some(ErrorCode::LeaseLost);
    if gone {
        tracing::debug!(job_id = %job.job_id, "{operation} refused: the lease is gone");
    }
    gone
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cut_to_fit_and_progress_is_capped() {
        let long = "é".repeat(LOG_LINE_BYTES_MAX);
        let fields = vec![("k".to_string(), "v".repeat(10))];
        let line = fit_line(NewLogLine {
            level: LogLevel::Info,
            message: long,
            fields: fields.clone(),
        });
        assert_eq!(line.fields, fields);
        assert!(line.message.len() + 11 <= LOG_LINE_BYTES_MAX);
        assert!(line.message.len() + 11 > LOG_LINE_BYTES_MAX - 2);

        let telemetry = Telemetry::default();
        telemetry.progress(250, "x".repeat(PROGRESS_MESSAGE_BYTES_MAX + 5));
        let (lines, progress) = telemetry.take_batch(false);
        assert!(lines.is_empty());
        let (percent, message) = progress.expect("progress");
        assert_eq!(percent, 100);
        assert_eq!(message.len(), PROGRESS_MESSAGE_BYTES_MAX);
    }

    #[test]
    fn batches_hold_at_most_a_request_and_close_refuses_more() {
        let telemetry = Telemetry::default();
        for index in 0..LOG_LINES_PER_REQUEST_MAX + 5 {
            telemetry.log(LogLevel::Info, format!("line {index}"), Vec::new());
        }
        assert!(telemetry.has_full_batch());
        let (first, _) = telemetry.take_batch(true);
        assert_eq!(first.len(), LOG_LINES_PER_REQUEST_MAX);
        assert_eq!(first[0].message, "line 0");
        let (rest, _) = telemetry.take_batch(true);
        assert_eq!(rest.len(), 5);
        let (nothing, _) = telemetry.take_batch(true);
        assert!(nothing.is_empty());
        telemetry.log(LogLevel::Info, "too late".to_string(), Vec::new());
        assert!(telemetry.take_batch(true).0.is_empty());
    }

    #[test]
    fn the_buffer_is_bounded() {
        let telemetry = Telemetry::default();
        for _ in 0..LOG_BUFFER_LINES_MAX + 10 {
            telemetry.log(LogLevel::Debug, "x".to_string(), Vec::new());
        }
        assert_eq!(telemetry.pending().lines.len(), LOG_BUFFER_LINES_MAX);
    }
}
