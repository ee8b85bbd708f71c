//! The worker runtime: fetches jobs with bounded concurrency, runs a handler on each, keeps
//! their leases alive, and reports every outcome with ACK or FAIL.
//!
//! One loop owns the fetching: it waits for a free slot, asks for as many jobs as there
//! are free slots (long-polling), and spawns one task per job. A job task runs the handler
//! in a task of its own (so a panic is a value, not a crash), extends the lease at half its
//! duration while the handler runs, and finally ACKs or FAILs, retrying those on transient
//! errors so a broker restart does not lose a finished job's outcome.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use taskforge_protocol::limits::{
    ERROR_MESSAGE_BYTES_MAX, FETCH_JOBS_MAX, LEASE_MS_DEFAULT, LEASE_MS_MAX, LEASE_MS_MIN,
};
use taskforge_protocol::{ErrorCode, FetchRequest, LeasedJob, Retry};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::{Client, ClientError};

/// Handlers running at once unless configured otherwise.
pub const WORKER_CONCURRENCY_DEFAULT: usize = 10;

/// Most handlers one worker runs at once; bounds its tasks and its FETCH sizes.
pub const WORKER_CONCURRENCY_MAX: usize = 10_000;

/// Long-poll of each FETCH unless configured otherwise: long enough that an idle worker
/// costs the broker one request every two seconds, short enough that a shutdown (which
/// waits for the outstanding FETCH, since the jobs it leases are this worker's) is quick.
/// Sidekiq and Faktory workers poll at the same pace.
pub const FETCH_WAIT_MS_DEFAULT: u32 = 2_000;

/// Jobs one FETCH asks for at most unless configured otherwise (never more than free slots).
pub const FETCH_BATCH_DEFAULT: u32 = 10;

/// How long a shutdown waits for running handlers unless configured otherwise.
pub const SHUTDOWN_TIMEOUT_MS_DEFAULT: u64 = 30_000;

/// Pause after a FETCH failed transiently (broker down), before the next one.
pub const FETCH_ERROR_PAUSE_MS_DEFAULT: u64 = 1_000;

/// Tries of one ACK or FAIL that fails transiently (each try may reconnect). Past this the
/// outcome is dropped and the lease expiry hands the job out again.
pub const REPORT_ATTEMPTS_MAX: u32 = 5;

/// Pause between tries of one ACK or FAIL; the client's reconnect adds its own backoff.
pub const REPORT_RETRY_PAUSE_MS: u64 = 100;

/// An EXTEND that failed transiently is retried after this fraction of the lease, so
/// several tries fit before the lease runs out.
const EXTEND_RETRY_LEASE_DIVISOR: u32 = 8;

/// What the worker fetches and how it runs handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerOptions {
    /// Queues to fetch from, in order of preference.
    pub queues: Vec<String>,
    /// Handlers running at once (1..=[`WORKER_CONCURRENCY_MAX`]).
    pub concurrency: usize,
    /// Most jobs one FETCH asks for; it never asks for more than there are free slots, and
    /// the session's `fetch_jobs_max` caps it too.
    pub fetch_batch: u32,
    /// Long-poll of each FETCH; capped by the session's `fetch_wait_ms_max`.
    pub fetch_wait_ms: u32,
    /// Lease asked for on FETCH and on every EXTEND, clamped to the protocol's bounds. The
    /// runtime extends at half of it, so a handler may run for any length of time.
    pub lease_ms: u32,
    /// How long a shutdown waits for running handlers before aborting them (their leases
    /// then expire and the broker hands their jobs out again).
    pub shutdown_timeout: Duration,
    /// Pause after a FETCH failed transiently.
    pub fetch_error_pause: Duration,
}

impl WorkerOptions {
    /// Options for these queues with every other setting at its default.
    pub fn new<Name: Into<String>>(queues: impl IntoIterator<Item = Name>) -> WorkerOptions {
        WorkerOptions {
            queues: queues.into_iter().map(Into::into).collect(),
            concurrency: WORKER_CONCURRENCY_DEFAULT,
            fetch_batch: FETCH_BATCH_DEFAULT,
            fetch_wait_ms: FETCH_WAIT_MS_DEFAULT,
            lease_ms: LEASE_MS_DEFAULT,
            shutdown_timeout: Duration::from_millis(SHUTDOWN_TIMEOUT_MS_DEFAULT),
            fetch_error_pause: Duration::from_millis(FETCH_ERROR_PAUSE_MS_DEFAULT),
        }
    }
}

/// What a handler gets: the leased job and a token that fires when the job is cancelled.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The job as FETCH returned it.
    job: LeasedJob,
    /// Fired when an EXTEND reply says the job was cancelled or its lease is lost; the
    /// handler should stop early, since its outcome will not be recorded.
    cancellation: CancellationToken,
}

impl JobContext {
    /// The leased job.
    pub fn job(&self) -> &LeasedJob {
        &self.job
    }

    /// The job's payload.
    pub fn payload(&self) -> &[u8] {
        &self.job.payload
    }

    /// Fires when the job was cancelled or its lease lost; await `cancelled()` on it in a
    /// `select!` to stop long work early.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancellation
    }

    /// True once the job was cancelled or its lease lost.
    pub fn is_cancel_requested(&self) -> bool {
        self.cancellation.is_cancelled()
    }
}

/// A handler's failure: the message stored with the job, and whether to retry it.
///
/// Any `std::error::Error` converts into one (retried with backoff), so `?` works in
/// handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    /// What went wrong; truncated to `ERROR_MESSAGE_BYTES_MAX` bytes when sent.
    message: String,
    /// Whether and when the broker retries the job.
    retry: Retry,
}

impl JobError {
    /// A failure retried after the job's backoff, if attempts remain.
    pub fn new(message: impl Into<String>) -> JobError {
        JobError {
            message: message.into(),
            retry: Retry::Backoff,
        }
    }

    /// A failure that makes the job dead at once (bad input that no retry fixes).
    pub fn permanent(message: impl Into<String>) -> JobError {
        JobError {
            message: message.into(),
            retry: Retry::Never,
        }
    }

    /// A failure retried at `run_at_ms` (ms since the Unix epoch), if attempts remain.
    pub fn retry_at(message: impl Into<String>, run_at_ms: u64) -> JobError {
        JobError {
            message: message.into(),
            retry: Retry::At(run_at_ms),
        }
    }

    /// The same failure with another retry wish.
    pub fn with_retry(mut self, retry: Retry) -> JobError {
        self.retry = retry;
        self
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether and when the broker retries the job.
    pub fn retry(&self) -> Retry {
        self.retry
    }
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for JobError {
    fn from(error: E) -> JobError {
        JobError::new(error.to_string())
    }
}

/// What a worker did, counted per job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Jobs whose handler succeeded and whose ACK the broker accepted.
    pub succeeded: u64,
    /// Jobs whose handler failed (error or panic) and whose FAIL the broker accepted.
    pub failed: u64,
    /// Of `failed`, the handler panics.
    pub panicked: u64,
    /// Jobs whose lease was gone when the worker reported or extended (expired, taken over
    /// or cancelled); the broker decides what happens to them.
    pub lease_lost: u64,
    /// Jobs whose outcome could not be delivered (the broker stayed unreachable or refused
    /// it); their leases expire and the broker hands them out again.
    pub unreported: u64,
    /// Jobs still running at the end of the shutdown timeout, whose handlers were aborted.
    pub abandoned: u64,
}

/// How one job task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Handler succeeded, ACK accepted.
    Succeeded,
    /// Handler returned an error (or its result was too large), FAIL accepted.
    Failed,
    /// Handler panicked, FAIL accepted.
    Panicked,
    /// ACK, FAIL or EXTEND got LEASE_LOST.
    LeaseLost,
    /// ACK or FAIL could not be delivered.
    Unreported,
}

impl WorkerReport {
    fn record(&mut self, joined: Result<Outcome, JoinError>) {
        match joined {
            Ok(Outcome::Succeeded) => self.succeeded += 1,
            Ok(Outcome::Failed) => self.failed += 1,
            Ok(Outcome::Panicked) => {
                self.failed += 1;
                self.panicked += 1;
            }
            Ok(Outcome::LeaseLost) => self.lease_lost += 1,
            Ok(Outcome::Unreported) => self.unreported += 1,
            Err(error) if error.is_cancelled() => self.abandoned += 1,
            // Job tasks catch handler panics, so this is a bug in the runtime itself.
            Err(error) => {
                tracing::error!(%error, "a job task panicked");
                self.unreported += 1;
            }
        }
    }
}

/// Settings after clamping to the protocol's and the session's bounds.
#[derive(Debug, Clone)]
struct Settings {
    /// Queues to fetch from, in order of preference.
    queues: Vec<String>,
    /// Handlers running at once, at least 1.
    concurrency: usize,
    /// Most jobs per FETCH: at least 1, at most `concurrency` and the session's cap.
    fetch_batch: usize,
    /// Long-poll of each FETCH, within the session's cap.
    fetch_wait_ms: u32,
    /// Lease asked for on FETCH and EXTEND, within the protocol's bounds.
    lease_ms: u32,
    /// Largest result an ACK may carry in this session; larger ones are reported as FAIL.
    result_bytes_max: u32,
    /// How long a shutdown waits for running handlers.
    shutdown_timeout: Duration,
    /// Pause after a FETCH failed transiently.
    fetch_error_pause: Duration,
}

impl Settings {
    fn new(options: &WorkerOptions, client: &Client) -> Settings {
        let limits = client.session_limits();
        let concurrency = options.concurrency.clamp(1, WORKER_CONCURRENCY_MAX);
        let fetch_jobs_max = limits.fetch_jobs_max.clamp(1, FETCH_JOBS_MAX);
        let fetch_batch = options.fetch_batch.clamp(1, fetch_jobs_max) as usize;
        Settings {
            queues: options.queues.clone(),
            concurrency,
            fetch_batch: fetch_batch.min(concurrency),
            fetch_wait_ms: options.fetch_wait_ms.min(limits.fetch_wait_ms_max),
            lease_ms: options.lease_ms.clamp(LEASE_MS_MIN, LEASE_MS_MAX),
            result_bytes_max: limits.result_bytes_max,
            shutdown_timeout: options.shutdown_timeout,
            fetch_error_pause: options.fetch_error_pause,
        }
    }
}

/// Runs a handler over jobs fetched from some queues. See the module documentation.
#[derive(Debug, Clone)]
pub struct Worker {
    /// The connection to fetch, extend and report on; shared with the job tasks.
    client: Client,
    /// What to fetch and how.
    options: WorkerOptions,
}

impl Worker {
    /// A worker that will use `client` with these options.
    pub fn new(client: Client, options: WorkerOptions) -> Worker {
        Worker { client, options }
    }

    /// Fetches and runs jobs until `shutdown` fires, then stops fetching, waits up to the
    /// shutdown timeout for running handlers, aborts any left, and returns what happened.
    ///
    /// Transient errors (broker restarting, timeouts) pause fetching and are retried; any
    /// other FETCH error (unknown queue, bad credentials after a reconnect) stops the worker
    /// the same way a shutdown does and is returned once running handlers are done.
    pub async fn run<Handler, HandlerFuture>(
        &self,
        handler: Handler,
        shutdown: CancellationToken,
    ) -> Result<WorkerReport, ClientError>
    where
        Handler: Fn(JobContext) -> HandlerFuture + Send + Sync + 'static,
        HandlerFuture: Future<Output = Result<Option<Vec<u8>>, JobError>> + Send + 'static,
    {
        let settings = Arc::new(Settings::new(&self.options, &self.client));
        let handler = Arc::new(handler);
        let slots = Arc::new(Semaphore::new(settings.concurrency));
        let mut running: JoinSet<Outcome> = JoinSet::new();
        let mut report = WorkerReport::default();
        let mut fatal_error = None;
        // Set when the shutdown is noticed; the whole shutdown gets one timeout.
        let mut shutdown_started = None;

        while shutdown_started.is_none() {
            while let Some(joined) = running.try_join_next() {
                report.record(joined);
            }
            let first_slot = tokio::select! {
                // Checked first, so a pending shutdown always wins over a free slot.
                biased;
                _ = shutdown.cancelled() => {
                    shutdown_started = Some(Instant::now());
                    break;
                }
                Some(joined) = running.join_next(), if !running.is_empty() => {
                    report.record(joined);
                    continue;
                }
                slot = Arc::clone(&slots).acquire_owned() => slot,
            };
            // The semaphore is never closed.
            let Ok(first_slot) = first_slot else { break };
            let mut free_slots = vec![first_slot];
            while free_slots.len() < settings.fetch_batch {
                let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                    break;
                };
                free_slots.push(slot);
            }

            let request = FetchRequest {
                queues: settings.queues.clone(),
                max_jobs: u32::try_from(free_slots.len()).unwrap_or(u32::MAX),
                wait_ms: settings.fetch_wait_ms,
                lease_ms: Some(settings.lease_ms),
                worker_id: None,
                weights: Vec::new(),
            };
            let fetch = self.client.fetch(request);
            tokio::pin!(fetch);
            let fetched = tokio::select! {
                fetched = &mut fetch => Some(fetched),
                _ = shutdown.cancelled() => {
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
                    for job in response.jobs {
                        // A broker that sends more jobs than asked for still gets each run,
                        // but only once a slot frees up.
                        let slot = free_slots.pop();
                        running.spawn(run_job(
                            self.client.clone(),
                            job,
                            Arc::clone(&handler),
                            Arc::clone(&settings),
                            slot,
                            Arc::clone(&slots),
                        ));
                    }
                }
                Some(Err(error)) if error.is_transient() => {
                    tracing::warn!(%error, "FETCH failed; pausing before the next one");
                    drop(free_slots);
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(settings.fetch_error_pause) => {}
                    }
                }
                Some(Err(error)) => {
                    tracing::error!(%error, "FETCH failed for good; stopping the worker");
                    fatal_error = Some(error);
                    break;
                }
            }
        }

        let deadline = shutdown_started.unwrap_or_else(Instant::now) + settings.shutdown_timeout;
        loop {
            match tokio::time::timeout_at(deadline, running.join_next()).await {
                Ok(Some(joined)) => report.record(joined),
                Ok(None) => break,
                Err(_elapsed) => {
                    tracing::warn!(
                        running = running.len(),
                        "shutdown timeout passed; aborting the handlers still running"
                    );
                    running.abort_all();
                    while let Some(joined) = running.join_next().await {
                        report.record(joined);
                    }
                    break;
                }
            }
        }
        match fatal_error {
            Some(error) => Err(error),
            None => Ok(report),
        }
    }
}

/// One job from fetch to report.
async fn run_job<Handler, HandlerFuture>(
    client: Client,
    job: LeasedJob,
    handler: Arc<Handler>,
    settings: Arc<Settings>,
    slot: Option<OwnedSemaphorePermit>,
    slots: Arc<Semaphore>,
) -> Outcome
where
    Handler: Fn(JobContext) -> HandlerFuture + Send + Sync + 'static,
    HandlerFuture: Future<Output = Result<Option<Vec<u8>>, JobError>> + Send + 'static,
{
    let _slot = match slot {
        Some(slot) => Ok(slot),
        None => slots.acquire_owned().await,
    };
    let cancellation = CancellationToken::new();
    let context = JobContext {
        job: job.clone(),
        cancellation: cancellation.clone(),
    };
    // A task of its own turns a panic into a JoinError; aborting this job task (shutdown
    // timeout) aborts the handler with it.
    let mut handler_task =
        AbortOnDropHandle::new(tokio::spawn(async move { handler(context).await }));
    let keeper = keep_lease(&client, &job, settings.lease_ms, &cancellation);
    tokio::pin!(keeper);
    let joined = tokio::select! {
        joined = &mut handler_task => joined,
        () = &mut keeper => {
            // The lease is gone and the handler was told; its outcome would be refused.
            drop(handler_task.await);
            return Outcome::LeaseLost;
        }
    };

    let job_id = job.job_id;
    let lease_id = job.lease_id;
    match joined {
        Ok(Ok(result)) => {
            let result_bytes = result.as_ref().map_or(0, Vec::len);
            if result_bytes > settings.result_bytes_max as usize {
                let message = format!(
                    "the handler's result of {result_bytes} bytes is over the session's \
                     {}-byte limit",
                    settings.result_bytes_max
                );
                tracing::warn!(%job_id, "{message}");
                return report_failure(&client, &job, message, Retry::Never, Outcome::Failed).await;
            }
            let acked = deliver(|| client.ack(job_id, lease_id, result.clone())).await;
            match acked {
                Ok(()) => Outcome::Succeeded,
                Err(error) => undelivered(&job, "ACK", &error),
            }
        }
        Ok(Err(job_error)) => {
            tracing::debug!(%job_id, error = %job_error, "handler failed");
            report_failure(
                &client,
                &job,
                job_error.message,
                job_error.retry,
                Outcome::Failed,
            )
            .await
        }
        Err(join_error) => {
            let message = match join_error.try_into_panic() {
                Ok(panic) => panic_message(panic.as_ref()),
                Err(join_error) => join_error.to_string(),
            };
            tracing::warn!(%job_id, %message, "handler panicked");
            let message = format!("handler panicked: {message}");
            report_failure(&client, &job, message, Retry::Backoff, Outcome::Panicked).await
        }
    }
}

/// Sends FAIL for `job`, returning `outcome` if the broker took it.
async fn report_failure(
    client: &Client,
    job: &LeasedJob,
    message: String,
    retry: Retry,
    outcome: Outcome,
) -> Outcome {
    let message = truncate_to_char_boundary(message, ERROR_MESSAGE_BYTES_MAX);
    let failed = deliver(|| client.fail(job.job_id, job.lease_id, message.clone(), retry)).await;
    match failed {
        Ok(_) => outcome,
        Err(error) => undelivered(job, "FAIL", &error),
    }
}

/// The outcome when an ACK or FAIL did not get through.
fn undelivered(job: &LeasedJob, operation: &str, error: &ClientError) -> Outcome {
    if error.code() == Some(ErrorCode::LeaseLost) {
        tracing::info!(
            job_id = %job.job_id,
            "{operation} refused: the lease is gone (expired, re-leased or cancelled)"
        );
        Outcome::LeaseLost
    } else {
        tracing::warn!(job_id = %job.job_id, %error, "{operation} could not be delivered");
        Outcome::Unreported
    }
}

/// Runs `attempt_once` until it succeeds, fails for good, or used [`REPORT_ATTEMPTS_MAX`] tries.
/// A try that was cut off (disconnect, timeout) may still have taken effect; the next one
/// then gets LEASE_LOST, which the caller logs.
async fn deliver<Value, Attempt, Attempted>(mut attempt_once: Attempt) -> Result<Value, ClientError>
where
    Attempt: FnMut() -> Attempted,
    Attempted: Future<Output = Result<Value, ClientError>>,
{
    let mut attempt = 1;
    loop {
        match attempt_once().await {
            Err(error) if error.is_transient() && attempt < REPORT_ATTEMPTS_MAX => {
                tracing::debug!(attempt, %error, "report failed transiently; trying again");
                tokio::time::sleep(Duration::from_millis(REPORT_RETRY_PAUSE_MS)).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Extends the job's lease at half its duration, forever; returns only when the lease is
/// lost. Fires `cancellation` when the broker says the job was cancelled or the lease is
/// gone.
async fn keep_lease(
    client: &Client,
    job: &LeasedJob,
    lease_ms: u32,
    cancellation: &CancellationToken,
) {
    let lease = Duration::from_millis(u64::from(lease_ms));
    let mut next_extend_at = Instant::now() + lease / 2;
    loop {
        tokio::time::sleep_until(next_extend_at).await;
        // An EXTEND answered after the lease ran out is worthless, so it gets half a lease.
        let extended =
            tokio::time::timeout(lease / 2, client.extend(job.job_id, job.lease_id, lease_ms))
                .await
                .unwrap_or(Err(ClientError::Timeout));
        match extended {
            Ok(extended) => {
                if extended.cancel_requested && !cancellation.is_cancelled() {
                    tracing::info!(job_id = %job.job_id, "job cancelled; telling the handler");
                    cancellation.cancel();
                }
                next_extend_at = Instant::now() + lease / 2;
            }
            Err(error) if error.code() == Some(ErrorCode::LeaseLost) => {
                tracing::warn!(job_id = %job.job_id, "lease lost while the handler ran");
                cancellation.cancel();
                return;
            }
            Err(error) => {
                tracing::warn!(job_id = %job.job_id, %error, "EXTEND failed; trying again soon");
                next_extend_at = Instant::now() + lease / EXTEND_RETRY_LEASE_DIVISOR;
            }
        }
    }
}

/// The text of a panic payload (`panic!` with a literal or a formatted message).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a non-string panic payload".to_string()
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

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet, VecDeque};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;

    use taskforge_protocol::limits::PROTOCOL_VERSION;
    use taskforge_protocol::{
        Credentials, Empty, ErrorBody, ExtendResponse, FailResponse, FetchResponse, JobId,
        JobState, LeaseId, Request, Response,
    };

    use super::*;
    use crate::client::fake_server::FakeServer;
    use crate::client::{ClientOptions, ReconnectOptions};

    /// What the fake broker knows about jobs, and what the worker told it.
    #[derive(Default)]
    struct BrokerState {
        ready: VecDeque<LeasedJob>,
        leased: HashMap<JobId, LeaseId>,
        cancel_requested: HashSet<JobId>,
        acked: Vec<(JobId, Option<Vec<u8>>)>,
        failed: Vec<(JobId, String, Retry)>,
        extends: usize,
        fetches: Vec<u32>,
        next_lease_id: LeaseId,
        /// Drop the connection instead of answering the next ACK (a broker crash).
        crash_on_next_ack: bool,
        /// Answer FETCH with this error.
        fetch_error: Option<ErrorBody>,
    }

    type SharedState = Arc<Mutex<BrokerState>>;

    fn state_with_jobs(payloads: &[&str]) -> SharedState {
        let mut state = BrokerState::default();
        for (index, payload) in payloads.iter().enumerate() {
            let mut id = [0u8; 16];
            id[15] = u8::try_from(index).expect("few jobs");
            state.ready.push_back(LeasedJob {
                job_id: JobId(id),
                lease_id: 0,
                queue: "emails".to_string(),
                payload: payload.as_bytes().to_vec(),
                attempt: 1,
                max_attempts: 3,
                priority: 0,
                lease_deadline_ms: 0,
                created_at_ms: 1_700_000_000_000,
                metadata: Vec::new(),
            });
        }
        Arc::new(Mutex::new(state))
    }

    fn lock(state: &SharedState) -> std::sync::MutexGuard<'_, BrokerState> {
        state.lock().expect("broker state lock")
    }

    /// Leases up to `max_jobs` ready jobs.
    fn lease_jobs(state: &SharedState, max_jobs: u32) -> Vec<LeasedJob> {
        let mut state = lock(state);
        let mut jobs = Vec::new();
        while jobs.len() < max_jobs as usize {
            let Some(mut job) = state.ready.pop_front() else {
                break;
            };
            state.next_lease_id += 1;
            job.lease_id = state.next_lease_id;
            state.leased.insert(job.job_id, job.lease_id);
            jobs.push(job);
        }
        jobs
    }

    /// True when `lease_id` is the job's live lease (leased and not cancelled).
    fn holds_lease(state: &BrokerState, job_id: JobId, lease_id: LeaseId) -> bool {
        state.leased.get(&job_id) == Some(&lease_id) && !state.cancel_requested.contains(&job_id)
    }

    fn lease_lost() -> ErrorBody {
        ErrorBody::new(ErrorCode::LeaseLost, "not the current lease")
    }

    /// A broker that serves FETCH (long-polling), ACK, FAIL and EXTEND from `state`.
    async fn fake_broker(state: SharedState) -> FakeServer {
        FakeServer::start(move |mut connection| {
            let state = Arc::clone(&state);
            async move {
                while let Some((request_id, request)) = connection.recv().await {
                    if connection.answer_session_request(request_id, &request) {
                        continue;
                    }
                    let opcode = request.opcode().number();
                    match request {
                        Request::Fetch(fetch) => {
                            let error = {
                                let mut state = lock(&state);
                                state.fetches.push(fetch.max_jobs);
                                state.fetch_error.clone()
                            };
                            if let Some(error) = error {
                                connection.error(request_id, opcode, error);
                                continue;
                            }
                            let replier = connection.replier();
                            let state = Arc::clone(&state);
                            tokio::spawn(async move {
                                let wait = Duration::from_millis(u64::from(fetch.wait_ms));
                                let deadline = Instant::now() + wait;
                                loop {
                                    let jobs = lease_jobs(&state, fetch.max_jobs);
                                    if !jobs.is_empty() || Instant::now() >= deadline {
                                        let response = FetchResponse { jobs };
                                        replier.respond(request_id, Response::Fetch(response));
                                        break;
                                    }
                                    tokio::time::sleep(Duration::from_millis(5)).await;
                                }
                            });
                        }
                        Request::Ack(ack) => {
                            let mut state = lock(&state);
                            if state.crash_on_next_ack {
                                state.crash_on_next_ack = false;
                                // Dropping the connection mid-request is the broker dying.
                                return;
                            }
                            if holds_lease(&state, ack.job_id, ack.lease_id) {
                                state.leased.remove(&ack.job_id);
                                state.acked.push((ack.job_id, ack.result));
                                connection.respond(request_id, Response::Ack(Empty {}));
                            } else {
                                connection.error(request_id, opcode, lease_lost());
                            }
                        }
                        Request::Fail(fail) => {
                            let mut state = lock(&state);
                            if holds_lease(&state, fail.job_id, fail.lease_id) {
                                state.leased.remove(&fail.job_id);
                                state.failed.push((fail.job_id, fail.error, fail.retry));
                                let response = FailResponse {
                                    state: JobState::Dead,
                                    run_at_ms: None,
                                    attempts: 1,
                                };
                                connection.respond(request_id, Response::Fail(response));
                            } else {
                                connection.error(request_id, opcode, lease_lost());
                            }
                        }
                        Request::Extend(extend) => {
                            let mut state = lock(&state);
                            if state.leased.get(&extend.job_id) == Some(&extend.lease_id) {
                                state.extends += 1;
                                let response = ExtendResponse {
                                    lease_deadline_ms: 0,
                                    cancel_requested: state
                                        .cancel_requested
                                        .contains(&extend.job_id),
                                };
                                connection.respond(request_id, Response::Extend(response));
                            } else {
                                connection.error(request_id, opcode, lease_lost());
                            }
                        }
                        other => panic!("the worker sent an unexpected {other:?}"),
                    }
                }
            }
        })
        .await
    }

    async fn connect(server: &FakeServer) -> Client {
        let mut options = ClientOptions::new(Credentials::RootToken("token".to_string()));
        options.request_timeout = Duration::from_secs(2);
        options.reconnect = ReconnectOptions {
            attempts_max: 5,
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_millis(50),
        };
        let client = Client::connect(server.address(), options)
            .await
            .expect("connect");
        assert_eq!(client.hello().protocol_version, PROTOCOL_VERSION);
        client
    }

    /// Short leases and polls, so the tests run in well under a second each.
    fn test_options(concurrency: usize) -> WorkerOptions {
        let mut options = WorkerOptions::new(["emails"]);
        options.concurrency = concurrency;
        options.fetch_batch = 4;
        options.fetch_wait_ms = 50;
        options.lease_ms = 200;
        options.shutdown_timeout = Duration::from_secs(2);
        options.fetch_error_pause = Duration::from_millis(20);
        options
    }

    /// Polls `condition` until it holds; fails the test after a few seconds.
    async fn wait_until(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    type RunHandle = tokio::task::JoinHandle<Result<WorkerReport, ClientError>>;

    fn spawn_worker<Handler, HandlerFuture>(
        client: Client,
        options: WorkerOptions,
        handler: Handler,
        shutdown: &CancellationToken,
    ) -> RunHandle
    where
        Handler: Fn(JobContext) -> HandlerFuture + Send + Sync + 'static,
        HandlerFuture: Future<Output = Result<Option<Vec<u8>>, JobError>> + Send + 'static,
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move { Worker::new(client, options).run(handler, shutdown).await })
    }

    #[tokio::test]
    async fn worker_acks_successes_fails_errors_and_panics_within_its_concurrency() {
        let payloads = ["ok 0", "error 1", "panic 2", "ok 3", "error 4", "panic 5"];
        let state = state_with_jobs(&payloads);
        let server = fake_broker(Arc::clone(&state)).await;
        let client = connect(&server).await;
        let running = Arc::new(AtomicUsize::new(0));
        let running_max = Arc::new(AtomicUsize::new(0));
        let (counter, peak) = (Arc::clone(&running), Arc::clone(&running_max));
        let handler = move |context: JobContext| {
            let (counter, peak) = (Arc::clone(&counter), Arc::clone(&peak));
            async move {
                let now_running = counter.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now_running, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                counter.fetch_sub(1, Ordering::SeqCst);
                let payload = String::from_utf8_lossy(context.payload()).to_string();
                match payload.split_once(' ') {
                    Some(("ok", _)) => Ok(Some(payload.to_uppercase().into_bytes())),
                    Some(("error", number)) => Err(JobError::permanent(format!("bad {number}"))),
                    _ => panic!("boom"),
                }
            }
        };
        let shutdown = CancellationToken::new();
        let run = spawn_worker(client, test_options(2), handler, &shutdown);

        wait_until("every job is reported", || {
            let state = lock(&state);
            state.acked.len() + state.failed.len() == payloads.len()
        })
        .await;
        shutdown.cancel();
        let report = run.await.expect("worker task").expect("worker run");

        assert_eq!(
            report,
            WorkerReport {
                succeeded: 2,
                failed: 4,
                panicked: 2,
                ..WorkerReport::default()
            }
        );
        let state = lock(&state);
        let mut acked: Vec<String> = state
            .acked
            .iter()
            .map(|(_, result)| String::from_utf8(result.clone().expect("a result")).expect("utf8"))
            .collect();
        acked.sort();
        assert_eq!(acked, ["OK 0", "OK 3"]);
        let mut failed: Vec<(String, Retry)> = state
            .failed
            .iter()
            .map(|(_, message, retry)| (message.clone(), *retry))
            .collect();
        failed.sort_by(|left, right| left.0.cmp(&right.0));
        assert_eq!(
            failed,
            [
                ("bad 1".to_string(), Retry::Never),
                ("bad 4".to_string(), Retry::Never),
                ("handler panicked: boom".to_string(), Retry::Backoff),
                ("handler panicked: boom".to_string(), Retry::Backoff),
            ]
        );
        assert!(
            running_max.load(Ordering::SeqCst) <= 2,
            "concurrency exceeded"
        );
        assert!(
            state
                .fetches
                .iter()
                .all(|max_jobs| (1..=2).contains(max_jobs)),
            "{:?}",
            state.fetches
        );
    }

    #[tokio::test]
    async fn worker_extends_the_lease_of_a_long_job() {
        let state = state_with_jobs(&["slow"]);
        let server = fake_broker(Arc::clone(&state)).await;
        let client = connect(&server).await;
        let handler = |_context: JobContext| async move {
            // Nearly three leases of 200 ms: only extending keeps the job.
            tokio::time::sleep(Duration::from_millis(550)).await;
            Ok(None)
        };
        let shutdown = CancellationToken::new();
        let run = spawn_worker(client, test_options(1), handler, &shutdown);

        wait_until("the job is acked", || lock(&state).acked.len() == 1).await;
        shutdown.cancel();
        let report = run.await.expect("worker task").expect("worker run");

        assert_eq!(report.succeeded, 1);
        let extends = lock(&state).extends;
        assert!(
            (3..=6).contains(&extends),
            "expected an EXTEND every ~100 ms, got {extends}"
        );
    }

    #[tokio::test]
    async fn worker_cancel_request_fires_the_job_token() {
        let state = state_with_jobs(&["cancel me"]);
        let job_id = lock(&state).ready[0].job_id;
        lock(&state).cancel_requested.insert(job_id);
        let server = fake_broker(Arc::clone(&state)).await;
        let client = connect(&server).await;
        let saw_cancel = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&saw_cancel);
        let handler = move |context: JobContext| {
            let seen = Arc::clone(&seen);
            async move {
                tokio::select! {
                    _ = context.cancellation().cancelled() => {
                        seen.store(true, Ordering::SeqCst);
                        Err(JobError::new("cancelled"))
                    }
                    _ = tokio::time::sleep(Duration::from_secs(10)) => Ok(None),
                }
            }
        };
        let shutdown = CancellationToken::new();
        let run = spawn_worker(client, test_options(1), handler, &shutdown);

        wait_until("the handler sees the cancel", || {
            saw_cancel.load(Ordering::SeqCst)
        })
        .await;
        shutdown.cancel();
        let report = run.await.expect("worker task").expect("worker run");

        assert_eq!(
            report,
            WorkerReport {
                lease_lost: 1,
                ..WorkerReport::default()
            }
        );
        assert!(
            lock(&state).failed.is_empty(),
            "a cancelled job's FAIL is refused"
        );
    }

    #[tokio::test]
    async fn worker_stops_fetching_on_shutdown_and_waits_for_running_handlers() {
        let state = state_with_jobs(&["job"]);
        let server = fake_broker(Arc::clone(&state)).await;
        let client = connect(&server).await;
        let started = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&started);
        let handler = move |_context: JobContext| {
            let flag = Arc::clone(&flag);
            async move {
                flag.store(true, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(Some(b"done".to_vec()))
            }
        };
        let shutdown = CancellationToken::new();
        let run = spawn_worker(client, test_options(1), handler, &shutdown);

        wait_until("the handler runs", || started.load(Ordering::SeqCst)).await;
        let fetches_at_shutdown = lock(&state).fetches.len();
        shutdown.cancel();
        let report = run.await.expect("worker task").expect("worker run");

        assert_eq!(
            report,
            WorkerReport {
                succeeded: 1,
                ..WorkerReport::default()
            }
        );
        let state = lock(&state);
        assert_eq!(
            state.acked.len(),
            1,
            "the running handler finished and was acked"
        );
        assert_eq!(
            state.fetches.len(),
            fetches_at_shutdown,
            "no FETCH after the shutdown"
        );
    }

    #[tokio::test]
    async fn worker_abandons_handlers_still_running_at_the_shutdown_timeout() {
        struct DropFlag(Arc<AtomicBool>);
        impl Drop for DropFlag {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let state = state_with_jobs(&["stuck"]);
        let server = fake_broker(Arc::clone(&state)).await;
        let client = connect(&server).await;
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&dropped);
        let handler = move |_context: JobContext| {
            let guard = DropFlag(Arc::clone(&flag));
            async move {
                let _guard = guard;
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(None)
            }
        };
        let mut options = test_options(1);
        options.shutdown_timeout = Duration::from_millis(100);
        let shutdown = CancellationToken::new();
        let run = spawn_worker(client, options, handler, &shutdown);

        wait_until("the job is leased", || !lock(&state).leased.is_empty()).await;
        shutdown.cancel();
        let report = run.await.expect("worker task").expect("worker run");

        assert_eq!(
            report,
            WorkerReport {
                abandoned: 1,
                ..WorkerReport::default()
            }
        );
        wait_until("the aborted handler is dropped", || {
            dropped.load(Ordering::SeqCst)
        })
        .await;
    }

    #[tokio::test]
    async fn worker_retries_the_ack_after_the_broker_restarts() {
        let state = state_with_jobs(&["survivor"]);
        lock(&state).crash_on_next_ack = true;
        let server = fake_broker(Arc::clone(&state)).await;
        let client = connect(&server).await;
        let handler = |_context: JobContext| async move { Ok(Some(b"result".to_vec())) };
        let shutdown = CancellationToken::new();
        let run = spawn_worker(client, test_options(1), handler, &shutdown);

        wait_until("the job is acked", || lock(&state).acked.len() == 1).await;
        shutdown.cancel();
        let report = run.await.expect("worker task").expect("worker run");

        assert_eq!(
            report,
            WorkerReport {
                succeeded: 1,
                ..WorkerReport::default()
            }
        );
        assert!(
            server.connections_accepted() >= 2,
            "the ACK went out on a new connection"
        );
        assert_eq!(lock(&state).acked[0].1.as_deref(), Some(&b"result"[..]));
    }

    #[tokio::test]
    async fn worker_stops_on_a_fetch_error_that_retrying_cannot_fix() {
        let state = state_with_jobs(&[]);
        lock(&state).fetch_error = Some(ErrorBody::new(ErrorCode::NotFound, "no queue emails"));
        let server = fake_broker(Arc::clone(&state)).await;
        let client = connect(&server).await;
        let handler = |_context: JobContext| async move { Ok(None) };
        let shutdown = CancellationToken::new();
        let run = spawn_worker(client, test_options(1), handler, &shutdown);

        let error = run
            .await
            .expect("worker task")
            .expect_err("an unknown queue is fatal");
        assert_eq!(error.code(), Some(ErrorCode::NotFound));
    }

    #[test]
    fn job_errors_convert_from_std_errors_and_keep_their_retry() {
        let parse_error = "x".parse::<u32>().expect_err("not a number");
        let error = JobError::from(parse_error);
        assert_eq!(error.retry(), Retry::Backoff);
        assert_eq!(error.message(), "invalid digit found in string");
        assert_eq!(JobError::retry_at("later", 42).retry(), Retry::At(42));
        assert_eq!(
            JobError::new("x").with_retry(Retry::Never),
            JobError::permanent("x")
        );
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let message = "é".repeat(10);
        assert_eq!(truncate_to_char_boundary(message.clone(), 5), "éé");
        assert_eq!(truncate_to_char_boundary(message.clone(), 100), message);
    }
}
