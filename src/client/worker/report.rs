//! [`WorkerReport`]: what a run of the worker did, counted per job.

use tokio::task::JoinError;

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
    /// Jobs still running at the end of the shutdown timeout, whose handlers were aborted
    /// (the worker's last heartbeat releases their leases).
    pub abandoned: u64,
    /// Jobs still running at a terminate deadline: their handlers were cancelled and the
    /// jobs FAILed (retried with backoff).
    pub interrupted: u64,
    /// True when the run ended because an operator terminated the worker
    /// (`taskforge worker terminate`), not because of the shutdown token.
    pub terminated: bool,
}

/// How one job task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Handler succeeded, ACK accepted.
    Succeeded,
    /// Handler returned an error (or its result was too large), FAIL accepted.
    Failed,
    /// Handler panicked, FAIL accepted.
    Panicked,
    /// Handler stopped at the terminate deadline, FAIL accepted.
    Interrupted,
    /// ACK, FAIL or EXTEND got LEASE_LOST.
    LeaseLost,
    /// ACK or FAIL could not be delivered.
    Unreported,
}

impl WorkerReport {
    pub(super) fn record(&mut self, joined: Result<Outcome, JoinError>) {
        match joined {
            Ok(Outcome::Succeeded) => self.succeeded += 1,
            Ok(Outcome::Failed) => self.failed += 1,
            Ok(Outcome::Panicked) => {
                self.failed += 1;
                self.panicked += 1;
            }
            Ok(Outcome::Interrupted) => self.interrupted += 1,
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
