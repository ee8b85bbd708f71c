//! The broker: the job state machine ([`core`]) wrapped by the service layer that reads the
//! clock, commits to storage in groups and answers requests only after their durability
//! point.

pub mod backoff;
pub mod core;

use std::sync::Arc;

use taskforge_protocol::{ErrorBody, HelloRequest, PrincipalKind, ProjectId, Request, Response};

use crate::clock::Clock;
use crate::storage::{Storage, StorageError};

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
                Some(Ok(interval_ms)) if interval_ms > 0 => Ok(FsyncPolicy::IntervalMs(interval_ms)),
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
    /// Seed for retry jitter and id randomness; `None` seeds from the OS.
    pub rng_seed: Option<u64>,
}

/// Who a session is, decided once by the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// What kind of principal authenticated.
    pub principal_kind: PrincipalKind,
    /// The project every request of this session works in. It never comes from a body.
    pub project_id: ProjectId,
}

/// The broker service. Cheap to share behind an `Arc`.
pub struct Broker {
    _storage: Arc<dyn Storage>,
    _clock: Arc<dyn Clock>,
}

impl Broker {
    /// Opens the broker on `storage`: rebuilds memory from it, releases leases that expired
    /// while it was down, and starts the committer and timer tasks.
    pub async fn open(
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
        config: BrokerConfig,
    ) -> Result<Arc<Broker>, StorageError> {
        let _ = config;
        Ok(Arc::new(Broker { _storage: storage, _clock: clock }))
    }

    /// Checks a HELLO's credentials. The same error for every kind of wrong credential.
    pub fn authenticate(&self, hello: &HelloRequest) -> Result<Session, ErrorBody> {
        let _ = hello;
        unimplemented!("broker in progress")
    }

    /// Runs one request for `session` and answers it after its durability point.
    pub async fn handle(&self, session: &Session, request: Request) -> Result<Response, ErrorBody> {
        let _ = (session, request);
        unimplemented!("broker in progress")
    }

    /// Stops long-polls, commits and syncs what is pending, and stops background tasks.
    pub async fn shutdown(&self) {}

    /// The clock the broker runs on.
    pub fn now_ms(&self) -> u64 {
        self._clock.now_ms()
    }
}
