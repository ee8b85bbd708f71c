//! The worker runtime: registers with the broker and heartbeats, fetches jobs from its
//! assigned queues with bounded concurrency, runs a handler on each, keeps their leases
//! alive, ships their logs and progress, and reports every outcome with ACK or FAIL.
//!
//! # Layout
//! - `mod.rs`: [`Worker::run`] — the fetch loop and the drain at the end.
//! - `options.rs`: [`WorkerOptions`], their defaults, and the clamped settings.
//! - `heartbeat.rs`: registration, the heartbeat task, the broker's orders.
//! - `job.rs`: one job from fetch to ACK/FAIL (handler task, lease keeper, reporting).
//! - `job_context.rs`: [`JobContext`], what a handler gets (job, cancellation, logger,
//!   progress).
//! - `telemetry.rs`: the per-job buffer and task that send LOG and PROGRESS.
//! - `job_error.rs`: [`JobError`]. `panic.rs`: handler panics as values, with location.
//! - `report.rs`: [`WorkerReport`].
//!
//! # Life of a run
//! 1. WORKER_REGISTER with the options' identity and queues (transient failures are
//!    retried; any other failure, such as an unknown queue, is returned).
//! 2. The heartbeat task starts; its replies may order Quiet (stop fetching, keep running
//!    the jobs held, keep heartbeating until the shutdown token fires), Terminate (stop
//!    fetching, let handlers run until the deadline, then cancel them, FAIL their jobs and
//!    return), or carry new assignments (fetch from those queues with those weights).
//! 3. The fetch loop waits for a free slot, asks for as many jobs as there are free slots
//!    (long-polling, naming the worker and its weights), and spawns one task per job.
//! 4. On shutdown (or terminate, or a fatal FETCH error) it stops fetching and drains; the
//!    last heartbeat says `leaving`, so the broker releases whatever is still leased.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use taskforge_protocol::{ErrorCode, FetchRequest, WorkerCommand, WorkerId};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Client, ClientError};

mod heartbeat;
mod job;
mod job_context;
mod job_error;
mod options;
mod panic;
mod report;
mod telemetry;

#[cfg(test)]
mod tests;

use heartbeat::{Check, Directive, Heartbeats};
use job::{JobShared, Registry};
use report::Outcome;

pub use heartbeat::{HEARTBEAT_INTERVAL_MS_MIN, LEAVING_HEARTBEAT_TIMEOUT_MS};
pub use job::{REPORT_ATTEMPTS_MAX, REPORT_RETRY_PAUSE_MS, TERMINATED_ERROR};
pub use job_context::JobContext;
pub use job_error::JobError;
pub use options::{
    WorkerOptions, FETCH_BATCH_DEFAULT, FETCH_ERROR_PAUSE_MS_DEFAULT, FETCH_WAIT_MS_DEFAULT,
    HEARTBEAT_INTERVAL_MS_DEFAULT, SHUTDOWN_TIMEOUT_MS_DEFAULT, WORKER_CONCURRENCY_DEFAULT,
    WORKER_CONCURRENCY_MAX, WORKER_NAME_DEFAULT,
};
pub use report::WorkerReport;
pub use telemetry::{LOG_BUFFER_LINES_MAX, LOG_LINGER_MS};

/// After a terminate deadline, how long the FAILs of the interrupted jobs may take before
/// their tasks are aborted (the leaving heartbeat then releases their leases).
pub const TERMINATE_REPORT_TIMEOUT_MS: u64 = 5_000;

/// Runs a handler over jobs fetched from some queues. See the module documentation.
#[derive(Debug, Clone)]
pub struct Worker {
    /// The connection to register, fetch, extend and report on; shared with the job tasks.
    client: Client,
    /// What to fetch and how.
    options: WorkerOptions,
}

/// Why the fetch loop stopped.
enum Stop {
    /// The shutdown token fired at this instant.
    Shutdown(Instant),
    /// The broker ordered Terminate with this deadline (ms since the Unix epoch).
    Terminate(u64),
    /// FETCH failed in a way retrying cannot fix.
    Fatal(ClientError),
}

/// The state of one run.
struct Run<Handler> {
    /// What job tasks share.
    shared: Arc<JobShared<Handler>>,
    /// The heartbeat task.
    heartbeats: Heartbeats,
    /// The broker's latest orders.
    directive: watch::Receiver<Directive>,
    /// False once the heartbeat task dropped its sender.
    directive_open: bool,
    /// Free concurrency slots.
    slots: Arc<Semaphore>,
    /// The job tasks.
    running: JoinSet<Outcome>,
    /// What happened so far.
    report: WorkerReport,
    /// FETCHes in a row answered NOT_FOUND although a heartbeat found the worker known.
    unknown_queue_fetches: u32,
    /// The user's stop signal.
    shutdown: CancellationToken,
}

impl Worker {
    /// A worker that will use `client` with these options.
    pub fn new(client: Client, options: WorkerOptions) -> Worker {
        Worker { client, options }
    }

    /// Registers, then fetches and runs jobs until `shutdown` fires or an operator
    /// terminates the worker; then stops fetching, waits for running handlers (up to the
    /// shutdown timeout, or the terminate deadline), sends its last heartbeat and returns
    /// what happened.
    ///
    /// Transient errors (broker restarting, timeouts) pause fetching and are retried; any
    /// other registration or FETCH error (unknown queue, bad credentials after a
    /// reconnect) stops the worker the same way a shutdown does and is returned once
    /// running handlers are done.
    pub async fn run<Handler, HandlerFuture>(
        &self,
        handler: Handler,
        shutdown: CancellationToken,
    ) -> Result<WorkerReport, ClientError>
    where
        Handler: Fn(JobContext) -> HandlerFuture + Send + Sync + 'static,
        HandlerFuture: Future<Output = Result<Option<Vec<u8>>, JobError>> + Send + 'static,
    {
        panic::install_hook();
        let settings = Arc::new(options::Settings::new(&self.options, &self.client));
        let queues = settings.registration.queues.clone();
        let Some(info) = heartbeat::register(&self.client, &settings, queues, &shutdown).await?
        else {
            return Ok(WorkerReport::default());
        };
        let registry = Arc::new(Registry::default());
        let heartbeats = Heartbeats::start(
            self.client.clone(),
            Arc::clone(&settings),
            &info,
            Arc::clone(&registry),
        );
        let mut run = Run {
            directive: heartbeats.directive(),
            directive_open: true,
            heartbeats,
            slots: Arc::new(Semaphore::new(settings.concurrency)),
            shared: Arc::new(JobShared {
                client: self.client.clone(),
                handler,
                settings,
                registry,
                terminate: CancellationToken::new(),
            }),
            running: JoinSet::new(),
            report: WorkerReport::default(),
            unknown_queue_fetches: 0,
            shutdown,
        };
        let stop = run.fetch_until_stopped().await;
        let fatal = run.drain(stop).await;
        run.heartbeats.stop().await;
        match fatal {
            Some(error) => Err(error),
            None => Ok(run.report),
        }
    }
}

/// The instant of `deadline_ms` (ms since the Unix epoch) by this machine's clock.
fn instant_of(deadline_ms: u64) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

impl<Handler, HandlerFuture> Run<Handler>
where
    Handler: Fn(JobContext) -> HandlerFuture + Send + Sync + 'static,
    HandlerFuture: Future<Output = Result<Option<Vec<u8>>, JobError>> + Send + 'static,
{
    /// Waits until the directive changes (or the heartbeat task is gone).
    async fn directive_changed(directive: &mut watch::Receiver<Directive>, open: &mut bool) {
        if !*open {
            return std::future::pending().await;
        }
        if directive.changed().await.is_err() {
            *open = false;
        }
    }

    /// Fetches and spawns jobs until something stops it.
    async fn fetch_until_stopped(&mut self) -> Stop {
        let settings = Arc::clone(&self.shared.settings);
        loop {
            while let Some(joined) = self.running.try_join_next() {
                self.report.record(joined);
            }
            if self.shutdown.is_cancelled() {
                return Stop::Shutdown(Instant::now());
            }
            let directive = self.directive.borrow_and_update().clone();
            let fetching = match directive.command {
                WorkerCommand::Terminate { deadline_ms } => return Stop::Terminate(deadline_ms),
                WorkerCommand::Quiet => false,
                WorkerCommand::Run => !directive.plan.queues.is_empty(),
            };
            let first_slot = tokio::select! {
                // Checked first, so a pending shutdown always wins over a free slot.
                biased;
                () = self.shutdown.cancelled() => return Stop::Shutdown(Instant::now()),
                () = Self::directive_changed(&mut self.directive, &mut self.directive_open) => {
                    continue;
                }
                Some(joined) = self.running.join_next(), if !self.running.is_empty() => {
                    self.report.record(joined);
                    continue;
                }
                slot = Arc::clone(&self.slots).acquire_owned(), if fetching => slot,
            };
            // The semaphore is never closed.
            let Ok(first_slot) = first_slot else {
                return Stop::Shutdown(Instant::now());
            };
            let mut free_slots = vec![first_slot];
            while free_slots.len() < settings.fetch_batch {
                let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
                    break;
                };
                free_slots.push(slot);
            }

            let request = FetchRequest {
                queues: directive.plan.queues.clone(),
                max_jobs: u32::try_from(free_slots.len()).unwrap_or(u32::MAX),
                wait_ms: settings.fetch_wait_ms,
                lease_ms: Some(settings.lease_ms),
                worker_id: Some(directive.worker_id),
                weights: directive.plan.weights.clone(),
            };
            let client = self.shared.client.clone();
            let fetch = client.fetch(request);
            tokio::pin!(fetch);
            let mut shutdown_started = None;
            let fetched = tokio::select! {
                fetched = &mut fetch => Some(fetched),
                () = self.shutdown.cancelled() => {
                    // Jobs this FETCH leases are ours: running them beats leaving them to
                    // wait out a whole lease. The wait counts against the shutdown timeout.
                    let started = Instant::now();
                    shutdown_started = Some(started);
                    tokio::time::timeout_at(started + settings.shutdown_timeout, &mut fetch)
                        .await
                        .ok()
                }
            };
            match fetched {
                None => tracing::warn!("shutdown timeout passed while a FETCH was outstanding"),
                Some(Ok(response)) => {
                    self.unknown_queue_fetches = 0;
                    for job in response.jobs {
                        // A broker that sends more jobs than asked for still gets each run,
                        // but only once a slot frees up.
                        let slot = free_slots.pop();
                        let cancellation = CancellationToken::new();
                        let entry = self.shared.registry.enter(&job, cancellation.clone());
                        self.running.spawn(job::run_job(
                            Arc::clone(&self.shared),
                            job,
                            cancellation,
                            entry,
                            slot,
                            Arc::clone(&self.slots),
                        ));
                    }
                }
                Some(Err(error)) => {
                    drop(free_slots);
                    if let Some(stop) = self.after_fetch_error(error, directive.worker_id).await {
                        return stop;
                    }
                }
            }
            if let Some(started) = shutdown_started {
                return Stop::Shutdown(started);
            }
        }
    }

    /// Handles a failed FETCH sent as worker `fetched_as`: `Some` when it stops the worker.
    async fn after_fetch_error(
        &mut self,
        error: ClientError,
        fetched_as: WorkerId,
    ) -> Option<Stop> {
        let pause = match error.code() {
            _ if error.is_transient() => {
                tracing::warn!(%error, "FETCH failed; pausing before the next one");
                true
            }
            // The broker has the worker quiet or terminating: learn the order now.
            Some(ErrorCode::Conflict) => {
                tracing::info!(%error, "FETCH refused; asking the broker for its orders");
                let check = self.heartbeats.check().await;
                let still_running = self.directive.borrow().command == WorkerCommand::Run;
                !matches!(check, Check::Known) || still_running
            }
            // An unknown worker (forgotten by the broker) or an unknown queue. A heartbeat
            // tells them apart: it registers a forgotten worker again. The FETCH is tried
            // once more after a heartbeat found the worker known (it may have been lost and
            // revived by that heartbeat); NOT_FOUND again means an unknown queue.
            Some(ErrorCode::NotFound) => {
                let check = if self.directive.borrow().worker_id == fetched_as {
                    self.heartbeats.check().await
                } else {
                    // Registered again while this FETCH was out.
                    Check::Reregistered
                };
                match check {
                    Check::Reregistered => false,
                    Check::Unreachable => true,
                    Check::Known if self.unknown_queue_fetches == 0 => {
                        self.unknown_queue_fetches += 1;
                        false
                    }
                    Check::Known => return Some(self.fatal(error)),
                    Check::RegisterFailed(error) => return Some(self.fatal(error)),
                }
            }
            _ => return Some(self.fatal(error)),
        };
        if pause {
            tokio::select! {
                () = self.shutdown.cancelled() => {}
                () = tokio::time::sleep(self.shared.settings.fetch_error_pause) => {}
            }
        }
        None
    }

    fn fatal(&self, error: ClientError) -> Stop {
        tracing::error!(%error, "FETCH failed for good; stopping the worker");
        Stop::Fatal(error)
    }

    /// Waits for the running jobs after the fetch loop stopped; returns the fatal error,
    /// if that is what stopped it.
    ///
    /// A shutdown gives them the shutdown timeout, then aborts them. A terminate deadline
    /// cancels the handlers still running and FAILs their jobs, allowing
    /// [`TERMINATE_REPORT_TIMEOUT_MS`] for the FAILs. Either can arrive while the other
    /// drains; the earlier deadline wins.
    async fn drain(&mut self, stop: Stop) -> Option<ClientError> {
        let shutdown_timeout = self.shared.settings.shutdown_timeout;
        let mut abort_at = None;
        let mut terminate_at = None;
        let mut fatal = None;
        match stop {
            Stop::Shutdown(started) => abort_at = Some(started + shutdown_timeout),
            Stop::Terminate(deadline_ms) => {
                tracing::warn!(
                    deadline_ms,
                    "terminated by an operator; finishing running jobs"
                );
                self.report.terminated = true;
                terminate_at = Some(instant_of(deadline_ms));
            }
            Stop::Fatal(error) => {
                abort_at = Some(Instant::now() + shutdown_timeout);
                fatal = Some(error);
            }
        }
        let far = Instant::now() + Duration::from_secs(365 * 24 * 60 * 60);
        loop {
            tokio::select! {
                biased;
                joined = self.running.join_next() => match joined {
                    Some(joined) => self.report.record(joined),
                    None => break,
                },
                () = self.shutdown.cancelled(), if abort_at.is_none() => {
                    abort_at = Some(Instant::now() + shutdown_timeout);
                }
                () = Self::directive_changed(&mut self.directive, &mut self.directive_open),
                    if !self.shared.terminate.is_cancelled() =>
                {
                    if let WorkerCommand::Terminate { deadline_ms } = self.directive.borrow().command {
                        self.report.terminated = true;
                        terminate_at = Some(instant_of(deadline_ms));
                    }
                }
                () = tokio::time::sleep_until(terminate_at.unwrap_or(far)),
                    if terminate_at.is_some() && !self.shared.terminate.is_cancelled() =>
                {
                    tracing::warn!(
                        running = self.running.len(),
                        "terminate deadline passed; cancelling and failing the jobs still running"
                    );
                    self.shared.terminate.cancel();
                    let report_by = Instant::now() + Duration::from_millis(TERMINATE_REPORT_TIMEOUT_MS);
                    abort_at = Some(abort_at.map_or(report_by, |at| at.min(report_by)));
                }
                () = tokio::time::sleep_until(abort_at.unwrap_or(far)), if abort_at.is_some() => {
                    tracing::warn!(
                        running = self.running.len(),
                        "shutdown timeout passed; aborting the handlers still running"
                    );
                    self.running.abort_all();
                    while let Some(joined) = self.running.join_next().await {
                        self.report.record(joined);
                    }
                    break;
                }
            }
        }
        fatal
    }
}

/// `text` cut to at most `bytes_max` bytes without splitting a character.
fn truncate_to_char_boundary(mut text: String, bytes_max: usize) -> String {
    if text.len() > bytes_max {
        let mut end = bytes_max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}
