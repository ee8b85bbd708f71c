//! The broker: the job state machine ([`core`]) wrapped by the service layer that reads the
//! clock, commits to storage in groups and answers requests only after their durability
//! point.

pub mod backoff;
mod budget;
pub mod commit;
pub mod core;
pub mod cron;
mod history;
pub mod principal;
pub mod recovery;
mod retention;
mod schedules;
mod service;
mod tenancy;
pub mod validate;
mod workers;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use taskforge_protocol::{
    Credentials, ErrorBody, ErrorCode, ErrorDetails, HelloRequest, OrgStatus,
};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::storage::{Storage, StorageError};
use commit::{CommitStats, Shared, State};
use core::CoreError;
pub use principal::{ConnectionPermit, Principal, Session};

/// How often the timer task looks again while storage is unavailable.
const TIMER_RETRY_WHILE_UNAVAILABLE_MS: u64 = 100;

pub use core::tenants::{DEFAULT_ORG_ID, DEFAULT_PROJECT_ID};

/// Password checks that may run at once; more get RATE_LIMITED.
pub const PASSWORD_CHECKS_CONCURRENT_MAX: usize = 4;

/// Retry-after announced when all password-check slots are busy.
const PASSWORD_RETRY_AFTER_MS: u64 = 100;

/// When a state change counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Every reply waits for a group flush plus fdatasync. Loses nothing acknowledged.
    Always,
    /// Replies after the change is applied; a background sync runs every this many ms.
    IntervalMs(u64),
    /// Replies after the change is applied; never syncs (sled flushes in the background).
    Never,
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<FsyncPolicy, String> {
        match text {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            other => match other.strip_prefix("interval:").map(str::parse::<u64>) {
                Some(Ok(interval_ms)) if interval_ms > 0 => {
                    Ok(FsyncPolicy::IntervalMs(interval_ms))
                }
                _ => Err(format!(
                    "fsync policy {other:?} is not one of always, never, interval:<ms> (ms > 0)"
                )),
            },
        }
    }
}

impl std::fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FsyncPolicy::Always => f.write_str("always"),
            FsyncPolicy::IntervalMs(interval_ms) => write!(f, "interval:{interval_ms}"),
            FsyncPolicy::Never => f.write_str("never"),
        }
    }
}

/// Limits the broker enforces on request contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerLimits {
    /// Largest job payload.
    pub payload_bytes_max: u32,
    /// Largest ACK result.
    pub result_bytes_max: u32,
    /// Most jobs in one ENQUEUE_BATCH.
    pub batch_jobs_max: u32,
    /// Largest response body the broker builds: the session's frame limit less the
    /// header. FETCH and listings return fewer items rather than exceed it.
    pub response_bytes_max: u32,
}

/// Everything the broker needs besides storage and a clock.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Durability policy for replies.
    pub fsync: FsyncPolicy,
    /// Request-content limits.
    pub limits: BrokerLimits,
    /// The root token, in clear; only its keyed hash is kept in memory after start.
    pub root_token: String,
    /// The key of the BLAKE3 hashes of API key secrets, derived from the configured or
    /// generated pepper. Never stored in the database.
    pub key_pepper: [u8; 32],
    /// Seed for retry jitter and id randomness; `None` seeds from the OS.
    pub rng_seed: Option<u64>,
    /// Worker timeouts and log caps.
    pub core: core::Settings,
}

/// A snapshot of the broker's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerStats {
    /// Commit rounds that applied writes.
    pub commit_rounds: u64,
    /// Storage syncs.
    pub syncs: u64,
    /// Writes applied.
    pub writes: u64,
    /// Replies released by commits.
    pub commit_replies: u64,
    /// Failed commit rounds.
    pub commit_failures: u64,
    /// Live jobs in memory.
    pub live_jobs: u64,
    /// Long-polling FETCHes waiting.
    pub waiting_fetches: u64,
    /// Leases that ran out since the broker started.
    pub lease_expiries: u64,
    /// Jobs that expired before they started since the broker started.
    pub jobs_expired: u64,
    /// Workers found lost since the broker started.
    pub workers_lost: u64,
}

/// The broker service. Share it behind the `Arc` that [`Broker::open`] returns.
pub struct Broker {
    /// State, committer and timer plumbing shared with background work.
    shared: Arc<Shared>,
    /// The clock every operation reads once.
    clock: Arc<dyn Clock>,
    /// Content limits.
    limits: BrokerLimits,
    /// BLAKE3 of the root token; compared as `blake3::Hash`, which is constant-time.
    root_token_hash: blake3::Hash,
    /// Ids for long-poll waiters.
    waiter_next: AtomicU64,
    /// Serialises bulk operations that scan storage (purge, dead retry and discard), so
    /// two of them never act on the same scanned jobs.
    bulk_lock: tokio::sync::Mutex<()>,
    /// Cancelled at shutdown: stops the timer task.
    shutdown: CancellationToken,
    /// Cancelled when shutdown begins (before the grace period): waiting FETCHes answer at
    /// once and new ones do not wait.
    long_polls_released: CancellationToken,
    /// The key of API key secret hashes.
    key_pepper: [u8; 32],
    /// Open connections per organization, for the connections quota.
    connections: principal::ConnectionCounts,
    /// Per API key, the token its live sessions watch; cancelled on revocation.
    key_sessions: Mutex<HashMap<String, CancellationToken>>,
    /// Bounds password checks running at once (each takes tens of ms and 19 MiB).
    password_checks: tokio::sync::Semaphore,
    /// A real Argon2id hash of a random password, verified against for unknown emails;
    /// made on the first password check.
    dummy_password_hash: std::sync::OnceLock<String>,
    /// The committer thread, joined at shutdown.
    committer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The timer and retention tasks, awaited at shutdown so nothing holds storage
    /// afterwards.
    timers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Where the retention sweep goes on from, per queue and finished state.
    retention_cursors: Mutex<retention::Cursors>,
    /// What the start-up recovery found and how long it took, for the metrics.
    recovery: recovery::RecoveryReport,
}

impl Broker {
    /// Opens the broker on `storage`: rebuilds memory from it, starts the committer thread
    /// and the timer task (whose first pass releases leases that expired while the broker
    /// was down and promotes delayed jobs whose time passed). Must run inside a Tokio
    /// runtime.
    pub async fn open(
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
        config: BrokerConfig,
    ) -> Result<Arc<Broker>, StorageError> {
        let seed = config.rng_seed.unwrap_or_else(|| fastrand::u64(..));
        let now_ms = clock.now_ms();
        let rebuild_storage = Arc::clone(&storage);
        let (core, report) = tokio::task::spawn_blocking(move || {
            recovery::rebuild(rebuild_storage.as_ref(), seed, config.core, now_ms)
        })
        .await
        .map_err(|error| StorageError::new("open", format!("recovery task failed: {error}")))??;
        tracing::info!(
            queues = report.queues,
            live_jobs = report.live_jobs,
            finished_jobs = report.finished_jobs,
            duration_ms = report.duration_ms,
            fsync = %config.fsync,
            "storage recovered"
        );
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                core,
                commit_waiters: Vec::new(),
                committing: false,
                rebuild_pending: false,
                unsynced: false,
                last_sync: std::time::Instant::now(),
                waiter_senders: HashMap::new(),
                stopping: false,
                unavailable: None,
                log_followers: HashMap::new(),
            }),
            work: Condvar::new(),
            timer_wake: tokio::sync::Notify::new(),
            storage,
            clock: Arc::clone(&clock),
            fsync: config.fsync,
            seed,
            rebuilds: AtomicU64::new(0),
            seed_fixed: config.rng_seed.is_some(),
            core_settings: config.core,
            stats: CommitStats::default(),
        });
        let committer_shared = Arc::clone(&shared);
        let committer = std::thread::Builder::new()
            .name("taskforge-commit".into())
            .spawn(move || committer_shared.run_committer())
            .map_err(|error| StorageError::new("open", format!("committer thread: {error}")))?;
        let broker = Arc::new(Broker {
            shared,
            clock,
            limits: config.limits,
            root_token_hash: blake3::hash(config.root_token.as_bytes()),
            waiter_next: AtomicU64::new(1),
            bulk_lock: tokio::sync::Mutex::new(()),
            shutdown: CancellationToken::new(),
            long_polls_released: CancellationToken::new(),
            key_pepper: config.key_pepper,
            key_sessions: Mutex::new(HashMap::new()),
            connections: principal::ConnectionCounts::default(),
            password_checks: tokio::sync::Semaphore::new(PASSWORD_CHECKS_CONCURRENT_MAX),
            dummy_password_hash: std::sync::OnceLock::new(),
            committer: Mutex::new(Some(committer)),
            timers: Mutex::new(Vec::new()),
            retention_cursors: Mutex::new(HashMap::new()),
            recovery: report,
        });
        let timers = tokio::spawn(Arc::clone(&broker).run_timers());
        let retention = tokio::spawn(Arc::clone(&broker).run_retention());
        if let Ok(mut slot) = broker.timers.lock() {
            *slot = vec![timers, retention];
        }
        Ok(broker)
    }

    /// Checks a HELLO's credentials and picks the session's project. Every kind of wrong
    /// credential gets the same UNAUTHENTICATED answer, so a caller learns nothing about
    /// which part was wrong. Runs on a blocking thread: a password check takes tens of ms.
    pub fn authenticate(&self, hello: &HelloRequest) -> Result<Session, ErrorBody> {
        let invalid = || ErrorBody::new(ErrorCode::Unauthenticated, "invalid credentials");
        let now_ms = self.clock.now_ms();
        let (principal, default_project, revoked) = match &hello.credentials {
            Credentials::RootToken(token) => {
                if blake3::hash(token.as_bytes()) != self.root_token_hash {
                    return Err(invalid());
                }
                (
                    Principal::Root,
                    DEFAULT_PROJECT_ID,
                    CancellationToken::new(),
                )
            }
            Credentials::ApiKey(credential) => {
                let (key_id, secret) =
                    crate::auth::api_key::parse(credential).ok_or_else(invalid)?;
                let secret_hash = crate::auth::api_key::hash_secret(&self.key_pepper, secret);
                let verified = {
                    let mut state = self.shared.lock();
                    let verified = state.core.key_verify(key_id, secret_hash, now_ms);
                    let org_active = verified.as_ref().is_some_and(|verified| {
                        state
                            .core
                            .org(verified.org_id)
                            .is_some_and(|entry| entry.org.status == OrgStatus::Active)
                    });
                    if state.core.has_writes() {
                        self.shared.work.notify_one();
                    }
                    verified.filter(|_| org_active).ok_or_else(invalid)?
                };
                let principal = Principal::ApiKey {
                    key_id: verified.info.key_id.clone(),
                    org_id: verified.org_id,
                    scopes: verified.info.scopes.clone(),
                };
                let revoked = self.key_sessions_token(&verified.info.key_id);
                (principal, verified.info.project_id, revoked)
            }
            Credentials::Password { email, password } => {
                let _slot = self.password_checks.try_acquire().map_err(|_| {
                    ErrorBody::new(ErrorCode::RateLimited, "too many password checks at once")
                        .with_details(ErrorDetails::RetryAfter {
                            retry_after_ms: PASSWORD_RETRY_AFTER_MS,
                        })
                })?;
                let found = self.shared.lock().core.user_by_email(email).cloned();
                // Hash even for an unknown email, so timing does not tell which emails exist.
                let dummy = || {
                    let random = format!("{:032x}", fastrand::u128(..));
                    crate::auth::password::hash(&random).unwrap_or_default()
                };
                let stored = match &found {
                    Some(record) => record.password_hash.as_str(),
                    None => self.dummy_password_hash.get_or_init(dummy).as_str(),
                };
                let matches = crate::auth::password::verify(password, stored);
                let record = found.filter(|_| matches).ok_or_else(invalid)?;
                let mut state = self.shared.lock();
                let org_active = state
                    .core
                    .org(record.user.org_id)
                    .is_some_and(|entry| entry.org.status == OrgStatus::Active);
                let current = state
                    .core
                    .user(record.user.user_id)
                    .cloned()
                    .ok_or_else(invalid)?;
                if current.user.disabled || !org_active {
                    return Err(invalid());
                }
                state.core.note_login(current.user.user_id, now_ms);
                if state.core.has_writes() {
                    self.shared.work.notify_one();
                }
                let principal = Principal::User {
                    user_id: current.user.user_id,
                    org_id: current.user.org_id,
                    role: current.user.role,
                };
                (principal, 0, CancellationToken::new())
            }
        };
        let project_id = match (hello.project_id, &principal) {
            (None, _) => default_project,
            (Some(asked), Principal::ApiKey { .. }) if asked != default_project => {
                return Err(ErrorBody::new(
                    ErrorCode::Forbidden,
                    "an API key works only in its own project",
                ));
            }
            (Some(asked), _) => {
                let state = self.shared.lock();
                let accessible =
                    state
                        .core
                        .project(asked)
                        .is_some_and(|project| match &principal {
                            Principal::Root => true,
                            Principal::User { org_id, .. } | Principal::ApiKey { org_id, .. } => {
                                project.org_id == *org_id
                            }
                        });
                if !accessible {
                    return Err(ErrorBody::new(
                        ErrorCode::Forbidden,
                        format!("project {asked} is not accessible"),
                    ));
                }
                asked
            }
        };
        let connection = match &principal {
            Principal::Root => None,
            Principal::User { org_id, .. } | Principal::ApiKey { org_id, .. } => {
                let max = self
                    .shared
                    .lock()
                    .core
                    .org(*org_id)
                    .map_or(0, |entry| entry.subscription.limits.connections_max);
                let permit = ConnectionPermit::acquire(&self.connections, *org_id, max).map_err(
                    |current| {
                        CoreError::Quota {
                            limit: "connections",
                            current: u64::from(current),
                            max: u64::from(max),
                        }
                        .to_error_body()
                    },
                )?;
                Some(Arc::new(permit))
            }
        };
        Ok(Session {
            principal,
            project_id,
            revoked,
            connection,
        })
    }

    /// The token every session of an API key shares; cancelled when the key is revoked.
    fn key_sessions_token(&self, key_id: &str) -> CancellationToken {
        match self.key_sessions.lock() {
            Ok(mut sessions) => sessions.entry(key_id.to_owned()).or_default().clone(),
            Err(_) => panic!("key session map poisoned by an earlier panic"),
        }
    }

    /// Closes every live session of these keys.
    fn close_key_sessions(&self, key_ids: &[String]) {
        if let Ok(mut sessions) = self.key_sessions.lock() {
            for key_id in key_ids {
                if let Some(token) = sessions.remove(key_id) {
                    token.cancel();
                }
            }
        }
    }

    /// Answers every waiting FETCH now (with what it has: nothing) and makes later FETCHes
    /// answer without waiting. Called when shutdown begins, so long-polls do not hold up
    /// the grace period; every other request keeps working.
    pub fn release_long_polls(&self) {
        self.long_polls_released.cancel();
    }

    /// Stops long-polls and the timer task, lets the committer commit and sync everything
    /// pending, and waits for it. Requests after this get UNAVAILABLE.
    pub async fn shutdown(&self) {
        self.long_polls_released.cancel();
        self.shutdown.cancel();
        {
            let mut state = self.shared.lock();
            state.stopping = true;
            let _ = state.core.clear_waiters();
            state.waiter_senders.clear();
            self.shared.work.notify_all();
        }
        let tasks = match self.timers.lock() {
            Ok(mut guard) => std::mem::take(&mut *guard),
            Err(_) => Vec::new(),
        };
        for task in tasks {
            let _ = task.await;
        }
        let handle = match self.committer.lock() {
            Ok(mut guard) => guard.take(),
            Err(_) => None,
        };
        if let Some(handle) = handle {
            let joined = tokio::task::spawn_blocking(move || handle.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::error!("committer thread ended abnormally at shutdown");
            }
        }
    }

    /// The clock the broker runs on.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// The broker's counters.
    pub fn stats(&self) -> BrokerStats {
        let counters = &self.shared.stats;
        let state = self.shared.lock();
        BrokerStats {
            commit_rounds: counters.rounds.load(Ordering::Relaxed),
            syncs: counters.syncs.load(Ordering::Relaxed),
            writes: counters.writes.load(Ordering::Relaxed),
            commit_replies: counters.replies.load(Ordering::Relaxed),
            commit_failures: counters.failures.load(Ordering::Relaxed),
            live_jobs: state.core.live_jobs() as u64,
            waiting_fetches: state.core.waiter_count() as u64,
            lease_expiries: state.core.lease_expiries(),
            jobs_expired: state.core.jobs_expired(),
            workers_lost: state.core.workers_lost(),
        }
    }

    /// Every queue's depth by state, for the metrics. Holds the broker lock for one pass
    /// over the queues (not the jobs).
    pub fn queue_snapshots(&self) -> Vec<core::metrics::QueueSnapshot> {
        self.shared.lock().core.queue_snapshots()
    }

    /// Workers per project and state, for the metrics.
    pub fn worker_counts(
        &self,
    ) -> Vec<(
        taskforge_protocol::ProjectId,
        taskforge_protocol::WorkerState,
        u64,
    )> {
        self.shared.lock().core.worker_counts()
    }

    /// `Ok` while the broker serves requests; otherwise why not: storage is failing (the
    /// committer is rebuilding memory from it) or shutdown has begun.
    pub fn readiness(&self) -> Result<(), String> {
        let state = self.shared.lock();
        if state.stopping {
            return Err("the broker is shutting down".to_string());
        }
        match &state.unavailable {
            Some(reason) => Err(format!("storage unavailable: {reason}")),
            None => Ok(()),
        }
    }

    /// What the start-up recovery found and how long it took.
    pub fn recovery_report(&self) -> &recovery::RecoveryReport {
        &self.recovery
    }

    /// Bytes the store occupies on disk. Reads file sizes: call it off the async workers.
    pub fn storage_size_on_disk_bytes(&self) -> Result<u64, StorageError> {
        self.shared.storage.size_on_disk_bytes()
    }

    /// The commit journal's counters, when the store has a journal.
    pub fn journal_stats(&self) -> Option<crate::storage::journal::stats::JournalSnapshot> {
        self.shared.storage.journal_stats()
    }

    /// The group committer's batch-size and round-duration histograms.
    pub fn commit_histograms(&self) -> &crate::metrics::CommitHistograms {
        &self.shared.stats.histograms
    }

    /// Fires timers when they are due; woken early when an earlier timer appears.
    async fn run_timers(self: Arc<Broker>) {
        loop {
            let next_at_ms = self.shared.lock().core.next_timer_at();
            let sleep = async {
                match next_at_ms {
                    Some(at_ms) => self.clock.sleep_until(at_ms).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => {}
                _ = self.shared.timer_wake.notified() => continue,
                _ = self.shutdown.cancelled() => return,
            }
            let now_ms = self.clock.now_ms();
            let unavailable = {
                let mut state = self.shared.lock();
                if state.unavailable.is_none() {
                    state.core.advance(now_ms);
                    self.shared.after_op(&mut state, now_ms);
                    if state.core.has_writes() {
                        self.shared.work.notify_one();
                    }
                }
                state.unavailable.is_some()
            };
            if unavailable {
                let pause = std::time::Duration::from_millis(TIMER_RETRY_WHILE_UNAVAILABLE_MS);
                tokio::time::sleep(pause).await;
            }
        }
    }
}
