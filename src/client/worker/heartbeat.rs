//! Registration and heartbeats.
//!
//! [`register`] sends WORKER_REGISTER before the first FETCH. [`Heartbeats`] then runs a
//! task that sends HEARTBEAT every `heartbeat_interval_ms` (as the broker's last reply said;
//! [`super::WorkerOptions::heartbeat_interval`] until then) with the jobs running and the
//! assignments version the worker knows, and turns each reply into a [`Directive`] for the
//! fetch loop: the command (Run, Quiet, Terminate), and the queues and weights to fetch
//! with when the broker sent new assignments. It fires the cancellation tokens of the jobs
//! the reply lists as cancelled. A heartbeat answered NOT_FOUND (the broker forgot the
//! worker, or declared it stopped) registers again with the current assignments.
//! [`Heartbeats::stop`] sends the last heartbeat, with `leaving = true`.

use std::sync::Arc;
use std::time::Duration;

use taskforge_protocol::{
    ErrorCode, Heartbeat, HeartbeatResponse, QueueAssignment, WorkerCommand, WorkerId, WorkerInfo,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::job::Registry;
use super::options::{FetchPlan, Settings};
use crate::client::{Client, ClientError};

/// Shortest heartbeat interval the worker accepts from a reply, so a broken reply cannot
/// make it spin.
pub const HEARTBEAT_INTERVAL_MS_MIN: u32 = 10;

/// How long the last (`leaving`) heartbeat may take before the worker exits without it.
pub const LEAVING_HEARTBEAT_TIMEOUT_MS: u64 = 5_000;

/// What the fetch loop should do, as the registration or the latest heartbeat reply says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Directive {
    /// The worker id to FETCH with.
    pub(super) worker_id: WorkerId,
    /// Run, Quiet or Terminate.
    pub(super) command: WorkerCommand,
    /// The queues and weights to FETCH with.
    pub(super) plan: FetchPlan,
}

/// What an immediate heartbeat found (the fetch loop asks after FETCH answered NOT_FOUND
/// or CONFLICT, to tell a forgotten worker from an unknown queue, or to learn an order).
#[derive(Debug)]
pub(super) enum Check {
    /// The broker knows the worker; the directive is up to date.
    Known,
    /// The broker had forgotten the worker; it is registered again under a new id.
    Reregistered,
    /// The heartbeat failed transiently.
    Unreachable,
    /// The broker had forgotten the worker and refused to register it again.
    RegisterFailed(ClientError),
}

/// Sends WORKER_REGISTER with `queues`, retrying transient failures until `shutdown`
/// fires (then `Ok(None)`); any other failure is returned.
pub(super) async fn register(
    client: &Client,
    settings: &Settings,
    queues: Vec<QueueAssignment>,
    shutdown: &CancellationToken,
) -> Result<Option<WorkerInfo>, ClientError> {
    let mut request = settings.registration.clone();
    request.queues = queues;
    loop {
        match client.register_worker(request.clone()).await {
            Ok(info) => {
                tracing::info!(
                    worker_id = info.worker_id,
                    name = %info.name,
                    "registered with the broker"
                );
                return Ok(Some(info));
            }
            Err(error) if error.is_transient() => {
                tracing::warn!(%error, "WORKER_REGISTER failed; trying again");
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(None),
                    () = tokio::time::sleep(settings.fetch_error_pause) => {}
                }
            }
            Err(error) => {
                tracing::error!(%error, "WORKER_REGISTER refused; the worker does not start");
                return Err(error);
            }
        }
    }
}

/// The queues a registered worker serves, as assignments.
fn assignments_of(info: &WorkerInfo) -> Vec<QueueAssignment> {
    info.assignments
        .iter()
        .map(|assignment| QueueAssignment {
            queue: assignment.queue.clone(),
            weight: assignment.weight,
            active: assignment.active,
        })
        .collect()
}

/// The heartbeat task and the fetch loop's handles on it.
#[derive(Debug)]
pub(super) struct Heartbeats {
    /// The latest directive.
    directive: watch::Receiver<Directive>,
    /// Asks for an immediate heartbeat.
    checks: mpsc::Sender<oneshot::Sender<Check>>,
    /// Ends the task (after its leaving heartbeat).
    stop: CancellationToken,
    /// The task.
    task: JoinHandle<()>,
}

impl Heartbeats {
    /// Starts heartbeating for the worker `info` describes.
    pub(super) fn start(
        client: Client,
        settings: Arc<Settings>,
        info: &WorkerInfo,
        registry: Arc<Registry>,
    ) -> Heartbeats {
        let mut assignments = assignments_of(info);
        if assignments.is_empty() {
            // A broker that did not echo them serves what was registered.
            assignments = settings.registration.queues.clone();
        }
        let directive = Directive {
            worker_id: info.worker_id,
            command: WorkerCommand::Run,
            plan: FetchPlan::new(&assignments),
        };
        let (publish, directive_receiver) = watch::channel(directive);
        let (checks, check_requests) = mpsc::channel(1);
        let stop = CancellationToken::new();
        let state = HeartbeatState {
            client,
            interval: settings.heartbeat_interval,
            settings,
            registry,
            worker_id: info.worker_id,
            assignments_version: info.assignments_version,
            assignments,
            command: WorkerCommand::Run,
            publish,
        };
        let task = tokio::spawn(state.run(check_requests, stop.clone()));
        Heartbeats {
            directive: directive_receiver,
            checks,
            stop,
            task,
        }
    }

    /// A receiver of the directives, marked as seen up to now.
    pub(super) fn directive(&self) -> watch::Receiver<Directive> {
        self.directive.clone()
    }

    /// Sends a heartbeat now and says what it found.
    pub(super) async fn check(&self) -> Check {
        let (answer, answered) = oneshot::channel();
        if self.checks.send(answer).await.is_err() {
            return Check::Unreachable;
        }
        answered.await.unwrap_or(Check::Unreachable)
    }

    /// Sends the last heartbeat (`leaving = true`: the broker marks the worker stopped and
    /// releases any lease it still holds) and ends the task.
    pub(super) async fn stop(self) {
        self.stop.cancel();
        if let Err(error) = self.task.await {
            tracing::error!(%error, "the heartbeat task failed");
        }
    }
}

/// What the heartbeat task knows.
struct HeartbeatState {
    client: Client,
    settings: Arc<Settings>,
    /// Jobs running now (counted in `in_flight`, cancelled on the broker's word).
    registry: Arc<Registry>,
    /// The current id (a new one after a re-registration).
    worker_id: WorkerId,
    /// The assignments version the worker knows.
    assignments_version: u64,
    /// The assignments it serves (inactive ones included, for a re-registration).
    assignments: Vec<QueueAssignment>,
    /// The broker's last order.
    command: WorkerCommand,
    /// Pause between heartbeats.
    interval: Duration,
    /// Where directives go.
    publish: watch::Sender<Directive>,
}

impl HeartbeatState {
    async fn run(
        mut self,
        mut check_requests: mpsc::Receiver<oneshot::Sender<Check>>,
        stop: CancellationToken,
    ) {
        let mut next_at = Instant::now() + self.interval;
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                Some(answer) = check_requests.recv() => {
                    let check = self.beat().await;
                    // The asker may have given up; nothing to do then.
                    let _ = answer.send(check);
                }
                () = tokio::time::sleep_until(next_at) => {
                    self.beat().await;
                }
            }
            next_at = Instant::now() + self.interval;
        }
        self.leave().await;
    }

    /// The heartbeat body as of now.
    fn heartbeat(&self, leaving: bool) -> Heartbeat {
        Heartbeat {
            worker_id: self.worker_id,
            in_flight: u32::try_from(self.registry.len()).unwrap_or(u32::MAX),
            assignments_version: self.assignments_version,
            leaving,
        }
    }

    /// Sends one heartbeat and acts on the reply.
    async fn beat(&mut self) -> Check {
        match self.client.heartbeat(self.heartbeat(false)).await {
            Ok(reply) => {
                self.apply(reply);
                Check::Known
            }
            Err(error) if error.code() == Some(ErrorCode::NotFound) => self.register_again().await,
            Err(error) => {
                tracing::warn!(worker_id = self.worker_id, %error, "HEARTBEAT failed");
                Check::Unreachable
            }
        }
    }

    /// Takes the reply's interval, command and assignments, and fires the tokens of the
    /// cancelled jobs.
    fn apply(&mut self, reply: HeartbeatResponse) {
        self.interval = Duration::from_millis(u64::from(
            reply.heartbeat_interval_ms.max(HEARTBEAT_INTERVAL_MS_MIN),
        ));
        if let Some(assignments) = reply.assignments {
            tracing::info!(
                worker_id = self.worker_id,
                version = reply.assignments_version,
                queues = ?assignments.iter().map(|a| a.queue.as_str()).collect::<Vec<_>>(),
                "new queue assignments"
            );
            self.assignments = assignments;
            self.assignments_version = reply.assignments_version;
        }
        if reply.command != self.command {
            tracing::info!(worker_id = self.worker_id, command = ?reply.command, "broker order");
            self.command = reply.command;
        }
        for job_id in reply.cancelled_jobs {
            if self.registry.cancel(job_id) {
                tracing::info!(%job_id, "job cancelled; telling the handler");
            }
        }
        self.publish();
    }

    /// Tells the fetch loop, if anything changed.
    fn publish(&self) {
        let directive = Directive {
            worker_id: self.worker_id,
            command: self.command,
            plan: FetchPlan::new(&self.assignments),
        };
        self.publish.send_if_modified(|current| {
            let changed = *current != directive;
            if changed {
                *current = directive;
            }
            changed
        });
    }

    /// Registers again after a heartbeat answered NOT_FOUND, with the current assignments.
    /// A terminating worker does not: it is on its way out.
    async fn register_again(&mut self) -> Check {
        if matches!(self.command, WorkerCommand::Terminate { .. }) {
            return Check::Unreachable;
        }
        tracing::warn!(
            worker_id = self.worker_id,
            "the broker does not know this worker any more; registering again"
        );
        let mut request = self.settings.registration.clone();
        request.queues = self.assignments.clone();
        // One try per heartbeat; a transient failure is retried at the next one.
        match self.client.register_worker(request).await {
            Ok(info) => {
                tracing::info!(worker_id = info.worker_id, "registered again");
                self.worker_id = info.worker_id;
                self.assignments_version = info.assignments_version;
                let assignments = assignments_of(&info);
                if !assignments.is_empty() {
                    self.assignments = assignments;
                }
                self.command = WorkerCommand::Run;
                self.publish();
                Check::Reregistered
            }
            Err(error) if error.is_transient() => {
                tracing::warn!(%error, "WORKER_REGISTER failed; trying again at the next heartbeat");
                Check::Unreachable
            }
            Err(error) => {
                tracing::error!(%error, "WORKER_REGISTER refused");
                Check::RegisterFailed(error)
            }
        }
    }

    /// The last heartbeat, bounded by [`LEAVING_HEARTBEAT_TIMEOUT_MS`].
    async fn leave(&self) {
        let leaving = self.client.heartbeat(self.heartbeat(true));
        let timeout = Duration::from_millis(LEAVING_HEARTBEAT_TIMEOUT_MS);
        match tokio::time::timeout(timeout, leaving).await {
            Ok(Ok(_)) => tracing::info!(worker_id = self.worker_id, "left the broker"),
            Ok(Err(error)) => {
                tracing::warn!(worker_id = self.worker_id, %error, "the leaving HEARTBEAT failed")
            }
            Err(_elapsed) => {
                tracing::warn!(
                    worker_id = self.worker_id,
                    "the leaving HEARTBEAT timed out"
                )
            }
        }
    }
}
