//! Group commit: a round takes every change the core produced since the last round,
//! applies them as one atomic storage batch, syncs according to the fsync policy, and only
//! then releases the replies waiting on it. Many connections' changes share one flush — the
//! reason `fsync=always` is fast.
//!
//! One round runs at a time (`State::committing`). Under `fsync=never` and `interval`, a
//! request whose change finds no round running and nobody waiting commits that round
//! itself, on its own thread ([`Durability::Lead`]): under light load its reply then costs
//! no hand-off to the committer thread and back (benches/README.md, table 16). Rounds that
//! sync, and rounds for requests that arrive while another runs, are the committer
//! thread's; it also keeps the interval policy's syncs and rebuilds memory after a failed
//! round.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Notify};

use super::core::{Core, Delivery, WaiterId};
use super::recovery;
use super::FsyncPolicy;
use crate::clock::Clock;
use crate::storage::{Storage, StorageError};
use taskforge_protocol::JobId;

/// How long the committer waits before retrying a rebuild after storage failed.
pub const STORAGE_RETRY_INTERVAL_MS: u64 = 1_000;

/// A reply waiting for its changes to be durable.
pub type CommitWaiter = oneshot::Sender<Result<(), StorageError>>;

/// Everything guarded by the broker's one lock.
pub struct State {
    /// The job state machine.
    pub core: Core,
    /// Replies waiting for the next commit round.
    pub commit_waiters: Vec<CommitWaiter>,
    /// True while a round is being applied and synced outside the lock, by the committer
    /// or by a request leading it (see [`Shared::commit_wait`]).
    pub committing: bool,
    /// Set when a round failed: the committer reopens storage and rebuilds memory.
    pub rebuild_pending: bool,
    /// True when writes were applied since the last sync (the interval policy's due sync).
    pub unsynced: bool,
    /// When storage was last synced.
    pub last_sync: Instant,
    /// Where to send jobs handed to long-polling FETCHes.
    pub waiter_senders: HashMap<WaiterId, oneshot::Sender<Vec<Delivery>>>,
    /// Set once shutdown starts: the committer finishes what is pending and stops.
    pub stopping: bool,
    /// Why the broker cannot serve, while storage is failing.
    pub unavailable: Option<String>,
    /// LOG_TAIL followers waiting for a job's log or execution to change.
    pub log_followers: HashMap<JobId, Arc<Notify>>,
}

/// What a request does, after its operation, before it may answer (see
/// [`Shared::commit_wait`]).
pub enum Durability {
    /// Nothing it could depend on is pending: it answers at once.
    Durable,
    /// A round is running or queued: it waits for the committer's next round.
    Wait(oneshot::Receiver<Result<(), StorageError>>),
    /// No round runs, nobody waits and the round need not sync: it commits the round
    /// itself ([`Shared::lead`]), sparing the hand-off to the committer thread and back.
    Lead(Round),
}

/// Writes taken from the core for a round that does not sync.
pub struct Round {
    writes: Vec<crate::storage::Write>,
}

/// What a round did to storage.
#[derive(Clone, Copy)]
enum RoundOutcome {
    /// Nothing to write.
    Empty,
    /// Written, not synced.
    Applied,
    /// Written and synced.
    Synced,
}

/// Counters the committer keeps, for stats and benchmarks.
#[derive(Debug, Default)]
pub struct CommitStats {
    /// Rounds that applied at least one write.
    pub rounds: AtomicU64,
    /// Storage syncs (flush + fdatasync).
    pub syncs: AtomicU64,
    /// Writes applied.
    pub writes: AtomicU64,
    /// Replies released.
    pub replies: AtomicU64,
    /// Rounds that failed.
    pub failures: AtomicU64,
    /// Batch size and duration of every round, for the metrics.
    pub histograms: crate::metrics::CommitHistograms,
}

/// State shared by request handlers, the committer thread and the timer task.
pub struct Shared {
    /// The lock.
    pub state: Mutex<State>,
    /// Signalled when there is something to commit or shutdown starts.
    pub work: Condvar,
    /// Wakes the timer task when an earlier timer appears.
    pub timer_wake: Notify,
    /// The store of record.
    pub storage: Arc<dyn Storage>,
    /// The clock (for rebuilds after a failure).
    pub clock: Arc<dyn Clock>,
    /// When replies count as durable.
    pub fsync: FsyncPolicy,
    /// Seed of the first core; each rebuilt core gets a new seed (see
    /// `Shared::next_seed`) because a core restarted with the same seed at the same
    /// millisecond would generate the same job ids again.
    pub seed: u64,
    /// Rebuilds so far, mixed into the next core's seed.
    pub rebuilds: AtomicU64,
    /// True when the seed came from configuration (deterministic runs): rebuilt cores then
    /// derive their seeds from it instead of drawing fresh ones.
    pub seed_fixed: bool,
    /// Settings every rebuilt core gets.
    pub core_settings: super::core::Settings,
    /// Counters.
    pub stats: CommitStats,
}

impl Shared {
    /// Takes the lock. A poisoned lock means a panic while the core was mid-change; the
    /// core's own invariants are then unknown, so continuing would risk corrupting data.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(_) => panic!("broker state lock poisoned by an earlier panic"),
        }
    }

    /// Delivers handoffs to long-polling FETCHes (returning jobs whose FETCH has gone) and
    /// wakes the timer task if needed. Call after every core operation, under the lock.
    pub fn after_op(&self, state: &mut State, now_ms: u64) {
        loop {
            let handoffs = state.core.take_handoffs();
            if handoffs.is_empty() {
                break;
            }
            for handoff in handoffs {
                let undelivered = match state.waiter_senders.remove(&handoff.waiter_id) {
                    Some(sender) => sender.send(handoff.deliveries).err(),
                    None => Some(handoff.deliveries),
                };
                if let Some(deliveries) = undelivered {
                    state.core.release(&deliveries, now_ms);
                }
            }
        }
        if state.core.take_timers_lowered() {
            self.timer_wake.notify_one();
        }
        for job_id in state.core.take_log_events() {
            if let Some(followers) = state.log_followers.get(&job_id) {
                followers.notify_waiters();
            }
        }
    }

    /// What a request does, after its operation, before it may answer.
    pub fn commit_wait(&self, state: &mut State) -> Durability {
        let idle = !state.committing && state.commit_waiters.is_empty();
        if idle && !state.core.has_writes() {
            return Durability::Durable;
        }
        // A round that syncs blocks for a disk flush, and a full journal may block an
        // apply: those stay on the committer thread, off the threads that serve connections
        // (a blocked worker can stall the runtime's timers and sockets; leading rounds that
        // sync also cost 15-25% of the throughput at 1 in flight with `fsync=always`,
        // benches/README.md table 16).
        if idle
            && self.fsync != FsyncPolicy::Always
            && !state.core.sync_forced()
            && !self.storage.apply_may_block()
        {
            state.committing = true;
            let (writes, _) = state.core.take_writes();
            return Durability::Lead(Round { writes });
        }
        let (sender, receiver) = oneshot::channel();
        state.commit_waiters.push(sender);
        if !state.committing {
            self.work.notify_one();
        }
        Durability::Wait(receiver)
    }

    /// Commits a round the caller took with [`Shared::commit_wait`], on the caller's
    /// thread, then hands whatever queued up meanwhile to the committer. Blocks for the
    /// round's write, into the page cache: such a round does not sync, and is not led while
    /// the store says an apply may block ([`Storage::apply_may_block`]).
    pub fn lead(&self, round: Round) -> Result<(), StorageError> {
        let started = Instant::now();
        let result = self.commit_round(&round.writes, false);
        self.stats
            .histograms
            .observe_round(round.writes.len(), started.elapsed());
        self.finish_round(&mut self.lock(), result.clone(), Vec::new());
        if result.is_ok() {
            self.stats.replies.fetch_add(1, Ordering::Relaxed);
        }
        result.map(|_| ())
    }

    /// The committer thread's loop: commits rounds nobody leads, syncs for the interval
    /// policy, rebuilds memory after a failed round. Returns after shutdown once everything
    /// is synced.
    pub fn run_committer(&self) {
        let mut state = self.lock();
        loop {
            if state.rebuild_pending {
                state = self.rebuild(state);
                continue;
            }
            if !state.committing && (state.core.has_writes() || !state.commit_waiters.is_empty()) {
                state.committing = true;
                let (writes, force_sync) = state.core.take_writes();
                let waiters = std::mem::take(&mut state.commit_waiters);
                drop(state);
                let started = Instant::now();
                let result = self.commit_round(&writes, force_sync);
                self.stats
                    .histograms
                    .observe_round(writes.len(), started.elapsed());
                state = self.lock();
                self.finish_round(&mut state, result, waiters);
                continue;
            }
            if !state.committing && state.stopping {
                drop(state);
                if let Err(error) = self.storage.sync() {
                    tracing::error!(%error, "final sync at shutdown failed");
                }
                return;
            }
            let sync_due_in = self.sync_due_in(&state);
            if !state.committing && sync_due_in.is_some_and(|due_in| due_in.is_zero()) {
                // A round of its own, so no leader applies writes this sync would wrongly
                // count as synced.
                state.committing = true;
                drop(state);
                let synced = self.sync_logged();
                state = self.lock();
                state.committing = false;
                state.unsynced = !synced;
                state.last_sync = Instant::now();
                continue;
            }
            // While a request leads a round, its end wakes the committer if there is work
            // or a sync has come due (`finish_round`).
            let timeout = sync_due_in.filter(|due_in| !due_in.is_zero());
            state = self.wait(state, timeout);
        }
    }

    /// How long until the interval policy's next sync is due; zero when it is, `None` when
    /// no sync is pending.
    fn sync_due_in(&self, state: &State) -> Option<Duration> {
        match self.fsync {
            FsyncPolicy::IntervalMs(interval_ms) if state.unsynced => {
                let due = state.last_sync + Duration::from_millis(interval_ms);
                Some(due.saturating_duration_since(Instant::now()))
            }
            _ => None,
        }
    }

    /// Waits on the committer's condition variable, for at most `timeout`.
    fn wait<'a>(
        &self,
        state: MutexGuard<'a, State>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'a, State> {
        let waited = match timeout {
            Some(timeout) => self
                .work
                .wait_timeout(state, timeout)
                .ok()
                .map(|(guard, _)| guard),
            None => self.work.wait(state).ok(),
        };
        match waited {
            Some(guard) => guard,
            None => panic!("broker state lock poisoned by an earlier panic"),
        }
    }

    /// Applies `writes` and syncs them as the policy (or `force_sync`) asks. Runs without
    /// the lock, while `committing` keeps every other round out.
    fn commit_round(
        &self,
        writes: &[crate::storage::Write],
        force_sync: bool,
    ) -> Result<RoundOutcome, StorageError> {
        if writes.is_empty() {
            return Ok(RoundOutcome::Empty);
        }
        self.storage.apply(writes)?;
        self.stats.rounds.fetch_add(1, Ordering::Relaxed);
        self.stats
            .writes
            .fetch_add(writes.len() as u64, Ordering::Relaxed);
        if self.fsync == FsyncPolicy::Always || force_sync {
            self.storage.sync()?;
            self.stats.syncs.fetch_add(1, Ordering::Relaxed);
            return Ok(RoundOutcome::Synced);
        }
        Ok(RoundOutcome::Applied)
    }

    /// Ends a round under the lock: answers its waiters, or fails everything computed on
    /// top of it, and wakes the committer if there is work for it.
    fn finish_round(
        &self,
        state: &mut State,
        result: Result<RoundOutcome, StorageError>,
        waiters: Vec<CommitWaiter>,
    ) {
        state.committing = false;
        let mut committer_needed = false;
        match result {
            Ok(outcome) => {
                match outcome {
                    RoundOutcome::Empty => {}
                    RoundOutcome::Applied => {
                        // The committer's sleep was computed without this sync due.
                        committer_needed = !state.unsynced;
                        state.unsynced = true;
                    }
                    RoundOutcome::Synced => {
                        state.unsynced = false;
                        state.last_sync = Instant::now();
                    }
                }
                self.stats
                    .replies
                    .fetch_add(waiters.len() as u64, Ordering::Relaxed);
                for waiter in waiters {
                    let _ = waiter.send(Ok(()));
                }
            }
            Err(error) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%error, "commit failed; rebuilding memory from storage");
                for waiter in waiters {
                    let _ = waiter.send(Err(error.clone()));
                }
                // Memory may claim changes storage does not hold: fail every reply
                // computed on top of them and drop long-polls until memory is rebuilt.
                let _ = state.core.take_writes();
                for waiter in std::mem::take(&mut state.commit_waiters) {
                    let _ = waiter.send(Err(error.clone()));
                }
                state.waiter_senders.clear();
                state.unavailable = Some(error.to_string());
                state.rebuild_pending = true;
            }
        }
        committer_needed |= state.rebuild_pending
            || state.stopping
            || state.core.has_writes()
            || !state.commit_waiters.is_empty()
            || self
                .sync_due_in(state)
                .is_some_and(|due_in| due_in.is_zero());
        if committer_needed {
            self.work.notify_one();
        }
    }

    /// Syncs for the interval policy; returns true on success.
    fn sync_logged(&self) -> bool {
        match self.storage.sync() {
            Ok(()) => {
                self.stats.syncs.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(error) => {
                tracing::error!(%error, "interval sync failed");
                false
            }
        }
    }

    /// A seed for a rebuilt core, distinct from every earlier core's.
    fn next_seed(&self) -> u64 {
        let rebuilds = self.rebuilds.fetch_add(1, Ordering::Relaxed) + 1;
        if self.seed_fixed {
            self.seed
                .wrapping_add(rebuilds.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        } else {
            fastrand::u64(..)
        }
    }

    /// Reopens the store and rebuilds memory from it after a failed round, retrying while
    /// storage keeps failing. Requests get UNAVAILABLE meanwhile.
    fn rebuild<'a>(&self, mut state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        state.rebuild_pending = false;
        loop {
            let now_ms = self.clock.now_ms();
            // A store whose sync failed refuses writes until it is reopened.
            let rebuilt = self.storage.reopen().and_then(|()| {
                recovery::rebuild(
                    self.storage.as_ref(),
                    self.next_seed(),
                    self.core_settings,
                    now_ms,
                )
            });
            match rebuilt {
                Ok((core, report)) => {
                    state.core = core;
                    state.unavailable = None;
                    tracing::warn!(?report, "memory rebuilt from storage after a failure");
                    self.timer_wake.notify_one();
                    return state;
                }
                Err(error) => {
                    state.unavailable = Some(error.to_string());
                    if state.stopping {
                        return state;
                    }
                    tracing::error!(%error, "storage still failing; retrying");
                    let timeout = Duration::from_millis(STORAGE_RETRY_INTERVAL_MS);
                    state = self.wait(state, Some(timeout));
                }
            }
        }
    }
}
