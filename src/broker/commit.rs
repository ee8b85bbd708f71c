//! Group commit: one thread takes every change the core produced since its last round,
//! applies them as one atomic storage batch, syncs according to the fsync policy, and only
//! then releases the replies waiting on that round. Many connections' changes share one
//! flush — the reason `fsync=always` is fast.

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
    /// True while a round is being applied and synced outside the lock.
    pub committing: bool,
    /// Where to send jobs handed to long-polling FETCHes.
    pub waiter_senders: HashMap<WaiterId, oneshot::Sender<Vec<Delivery>>>,
    /// Set once shutdown starts: the committer finishes what is pending and stops.
    pub stopping: bool,
    /// Why the broker cannot serve, while storage is failing.
    pub unavailable: Option<String>,
    /// LOG_TAIL followers waiting for a job's log or execution to change.
    pub log_followers: HashMap<JobId, Arc<Notify>>,
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

    /// Registers a reply that must wait for the next commit round, if anything is pending
    /// or being committed; `None` means the caller may answer at once.
    pub fn commit_wait(
        &self,
        state: &mut State,
    ) -> Option<oneshot::Receiver<Result<(), StorageError>>> {
        if !state.core.has_writes() && !state.committing && state.commit_waiters.is_empty() {
            return None;
        }
        let (sender, receiver) = oneshot::channel();
        state.commit_waiters.push(sender);
        self.work.notify_one();
        Some(receiver)
    }

    /// The committer thread's loop. Returns after shutdown once everything is synced.
    pub fn run_committer(&self) {
        let mut unsynced = false;
        let mut last_sync = Instant::now();
        loop {
            let (writes, force_sync, waiters) = {
                let mut state = self.lock();
                state.committing = false;
                loop {
                    if state.core.has_writes() || !state.commit_waiters.is_empty() {
                        break;
                    }
                    if state.stopping {
                        drop(state);
                        if let Err(error) = self.storage.sync() {
                            tracing::error!(%error, "final sync at shutdown failed");
                        }
                        return;
                    }
                    let timeout = match self.fsync {
                        FsyncPolicy::IntervalMs(interval_ms) if unsynced => {
                            let due = last_sync + Duration::from_millis(interval_ms);
                            let now = Instant::now();
                            if now >= due {
                                drop(state);
                                unsynced = !self.sync_logged();
                                last_sync = Instant::now();
                                state = self.lock();
                                continue;
                            }
                            due - now
                        }
                        _ => Duration::from_secs(3600),
                    };
                    state = match self.work.wait_timeout(state, timeout) {
                        Ok((guard, _)) => guard,
                        Err(_) => panic!("broker state lock poisoned by an earlier panic"),
                    };
                }
                state.committing = true;
                let (writes, force_sync) = state.core.take_writes();
                (
                    writes,
                    force_sync,
                    std::mem::take(&mut state.commit_waiters),
                )
            };
            let round_started = Instant::now();
            let result = self.commit_round(&writes, force_sync, &mut unsynced, &mut last_sync);
            self.stats
                .histograms
                .observe_round(writes.len(), round_started.elapsed());
            match result {
                Ok(()) => {
                    self.stats
                        .replies
                        .fetch_add(waiters.len() as u64, Ordering::Relaxed);
                    for waiter in waiters {
                        let _ = waiter.send(Ok(()));
                    }
                }
                Err(error) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(%error, writes = writes.len(), "commit failed; rebuilding memory from storage");
                    for waiter in waiters {
                        let _ = waiter.send(Err(error.clone()));
                    }
                    self.recover_from_failure(error);
                }
            }
        }
    }

    fn commit_round(
        &self,
        writes: &[crate::storage::Write],
        force_sync: bool,
        unsynced: &mut bool,
        last_sync: &mut Instant,
    ) -> Result<(), StorageError> {
        if writes.is_empty() {
            return Ok(());
        }
        self.storage.apply(writes)?;
        self.stats.rounds.fetch_add(1, Ordering::Relaxed);
        self.stats
            .writes
            .fetch_add(writes.len() as u64, Ordering::Relaxed);
        if self.fsync == FsyncPolicy::Always || force_sync {
            self.storage.sync()?;
            self.stats.syncs.fetch_add(1, Ordering::Relaxed);
            *unsynced = false;
            *last_sync = Instant::now();
        } else {
            *unsynced = true;
        }
        Ok(())
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

    /// After a failed round, memory may claim changes storage does not hold. Fail every
    /// reply computed on top of them, drop long-polls, reopen the store and rebuild memory
    /// from it, retrying while storage keeps failing. Requests get UNAVAILABLE meanwhile.
    fn recover_from_failure(&self, first_error: StorageError) {
        let mut state = self.lock();
        let _ = state.core.take_writes();
        for waiter in std::mem::take(&mut state.commit_waiters) {
            let _ = waiter.send(Err(first_error.clone()));
        }
        state.waiter_senders.clear();
        state.unavailable = Some(first_error.to_string());
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
                    return;
                }
                Err(error) => {
                    state.unavailable = Some(error.to_string());
                    if state.stopping {
                        return;
                    }
                    tracing::error!(%error, "storage still failing; retrying");
                    let timeout = Duration::from_millis(STORAGE_RETRY_INTERVAL_MS);
                    state = match self.work.wait_timeout(state, timeout) {
                        Ok((guard, _)) => guard,
                        Err(_) => panic!("broker state lock poisoned by an earlier panic"),
                    };
                }
            }
        }
    }
}
