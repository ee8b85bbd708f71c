//! One job from fetch to report: run the handler in a task of its own (so a panic is a
//! value), keep the lease alive, ship its logs and progress, and finally ACK or FAIL —
//! retrying those on transient errors so a broker restart does not lose a finished job's
//! outcome.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use taskforge_protocol::limits::{ERROR_DETAILS_BYTES_MAX, ERROR_MESSAGE_BYTES_MAX};
use taskforge_protocol::{ErrorCode, JobId, LeaseId, LeasedJob};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::options::Settings;
use super::panic::{CatchPanic, HandlerPanic};
use super::report::Outcome;
use super::telemetry::{Shipper, Telemetry};
use super::{truncate_to_char_boundary, JobContext, JobError};
use crate::client::{Client, ClientError};

/// Tries of one ACK, FAIL, LOG or PROGRESS that fails transiently (each try may
/// reconnect). Past this an outcome is dropped and the lease expiry (or the worker's last
/// heartbeat) hands the job out again.
pub const REPORT_ATTEMPTS_MAX: u32 = 5;

/// Pause between tries of one ACK or FAIL; the client's reconnect adds its own backoff.
pub const REPORT_RETRY_PAUSE_MS: u64 = 100;

/// The error a job still running at the terminate deadline is FAILed with (retried with
/// backoff).
pub const TERMINATED_ERROR: &str =
    "the worker was terminated (WORKER_TERMINATE) before the job finished";

/// An EXTEND that failed transiently is retried after this fraction of the lease, so
/// several tries fit before the lease runs out.
const EXTEND_RETRY_LEASE_DIVISOR: u32 = 8;

/// The jobs running now, with their cancellation tokens: the heartbeat counts them and
/// fires the tokens of the jobs the broker says were cancelled.
#[derive(Debug, Default)]
pub(super) struct Registry {
    /// By job and lease (a job may come back to this worker while an old run of it ends).
    jobs: Mutex<HashMap<(JobId, LeaseId), CancellationToken>>,
}

impl Registry {
    fn jobs(&self) -> MutexGuard<'_, HashMap<(JobId, LeaseId), CancellationToken>> {
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a running job until the returned entry is dropped.
    pub(super) fn enter(
        self: &Arc<Registry>,
        job: &LeasedJob,
        cancellation: CancellationToken,
    ) -> RegistryEntry {
        let key = (job.job_id, job.lease_id);
        self.jobs().insert(key, cancellation);
        RegistryEntry {
            registry: Arc::clone(self),
            key,
        }
    }

    /// Jobs running now.
    pub(super) fn len(&self) -> usize {
        self.jobs().len()
    }

    /// Fires the cancellation token of every run of `job_id`; false when none runs here.
    pub(super) fn cancel(&self, job_id: JobId) -> bool {
        let mut found = false;
        for ((running, _), token) in self.jobs().iter() {
            if *running == job_id {
                found = true;
                token.cancel();
            }
        }
        found
    }
}

/// A job's place in the [`Registry`], removed on drop (also when its task is aborted).
#[derive(Debug)]
pub(super) struct RegistryEntry {
    registry: Arc<Registry>,
    key: (JobId, LeaseId),
}

impl Drop for RegistryEntry {
    fn drop(&mut self) {
        self.registry.jobs().remove(&self.key);
    }
}

/// What every job task of one run shares.
pub(super) struct JobShared<Handler> {
    /// The connection to extend, log and report on.
    pub(super) client: Client,
    /// The user's handler.
    pub(super) handler: Handler,
    /// The clamped options.
    pub(super) settings: Arc<Settings>,
    /// The jobs running now.
    pub(super) registry: Arc<Registry>,
    /// Fired at a terminate deadline: jobs whose handler still runs are cancelled and
    /// FAILed.
    pub(super) terminate: CancellationToken,
}

/// How a handler's task ended.
enum HandlerEnd {
    /// It returned.
    Returned(Result<Option<Vec<u8>>, JobError>),
    /// It panicked.
    Panicked(HandlerPanic),
    /// The terminate deadline came first.
    Terminated,
}

/// Runs one job from fetch to report. `slot` is its concurrency slot (waited for when a
/// broker sent more jobs than asked).
pub(super) async fn run_job<Handler, HandlerFuture>(
    shared: Arc<JobShared<Handler>>,
    job: LeasedJob,
    cancellation: CancellationToken,
    entry: RegistryEntry,
    slot: Option<OwnedSemaphorePermit>,
    slots: Arc<Semaphore>,
) -> Outcome
where
    Handler: Fn(JobContext) -> HandlerFuture + Send + Sync + 'static,
    HandlerFuture: Future<Output = Result<Option<Vec<u8>>, JobError>> + Send + 'static,
{
    let _entry = entry;
    let _slot = match slot {
        Some(slot) => Ok(slot),
        None => slots.acquire_owned().await,
    };
    let client = &shared.client;
    let telemetry = Arc::new(Telemetry::default());
    let shipper = Shipper::spawn(client.clone(), &job, Arc::clone(&telemetry));
    let context = JobContext {
        job: job.clone(),
        cancellation: cancellation.clone(),
        telemetry,
    };
    // A task of its own keeps the handler running while this one extends; aborting this
    // job task (shutdown timeout) aborts the handler with it.
    let handler_shared = Arc::clone(&shared);
    let mut handler_task = AbortOnDropHandle::new(tokio::spawn(CatchPanic::new(async move {
        (handler_shared.handler)(context).await
    })));
    let keeper = keep_lease(client, &job, shared.settings.lease_ms, &cancellation);
    tokio::pin!(keeper);
    let ended = tokio::select! {
        biased;
        joined = &mut handler_task => match joined {
            Ok(Ok(returned)) => HandlerEnd::Returned(returned),
            Ok(Err(panic)) => HandlerEnd::Panicked(panic),
            // Only this task aborts the handler, and it is still here.
            Err(error) => HandlerEnd::Panicked(HandlerPanic {
                message: error.to_string(),
                details: None,
            }),
        },
        () = &mut keeper => {
            // The lease is gone and the handler was told; its outcome would be refused.
            drop(handler_task.await);
            shipper.close().await;
            return Outcome::LeaseLost;
        }
        () = shared.terminate.cancelled() => {
            cancellation.cancel();
            handler_task.abort();
            HandlerEnd::Terminated
        }
    };
    // Logs and progress go first, so the execution holds them when it ends.
    shipper.close().await;

    let job_id = job.job_id;
    let lease_id = job.lease_id;
    match ended {
        HandlerEnd::Returned(Ok(result)) => {
            let result_bytes = result.as_ref().map_or(0, Vec::len);
            let result_bytes_max = shared.settings.result_bytes_max;
            if result_bytes > result_bytes_max as usize {
                let message = format!(
                    "the handler's result of {result_bytes} bytes is over the session's \
                     {result_bytes_max}-byte limit"
                );
                tracing::warn!(%job_id, "{message}");
                let failure = JobError::permanent(message);
                return report_failure(client, &job, failure, Outcome::Failed).await;
            }
            let acked = deliver(|| client.ack(job_id, lease_id, result.clone())).await;
            match acked {
                Ok(()) => Outcome::Succeeded,
                Err(error) => undelivered(&job, "ACK", &error),
            }
        }
        HandlerEnd::Returned(Err(job_error)) => {
            tracing::debug!(%job_id, error = %job_error, "handler failed");
            report_failure(client, &job, job_error, Outcome::Failed).await
        }
        HandlerEnd::Panicked(panic) => {
            tracing::warn!(%job_id, message = %panic.message, "handler panicked");
            let mut failure = JobError::new(format!("handler panicked: {}", panic.message));
            failure.details = panic.details;
            report_failure(client, &job, failure, Outcome::Panicked).await
        }
        HandlerEnd::Terminated => {
            tracing::warn!(%job_id, "terminate deadline passed; failing the job");
            let failure = JobError::new(TERMINATED_ERROR);
            report_failure(client, &job, failure, Outcome::Interrupted).await
        }
    }
}

/// Sends FAIL for `job` (message and details cut to their limits), returning `outcome` if
/// the broker took it.
async fn report_failure(
    client: &Client,
    job: &LeasedJob,
    failure: JobError,
    outcome: Outcome,
) -> Outcome {
    let message = truncate_to_char_boundary(failure.message, ERROR_MESSAGE_BYTES_MAX);
    let details = failure
        .details
        .map(|details| truncate_to_char_boundary(details, ERROR_DETAILS_BYTES_MAX));
    let failed = deliver(|| {
        client.fail_with_details(
            job.job_id,
            job.lease_id,
            message.clone(),
            failure.retry,
            details.clone(),
        )
    })
    .await;
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
pub(super) async fn deliver<Value, Attempt, Attempted>(
    mut attempt_once: Attempt,
) -> Result<Value, ClientError>
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
