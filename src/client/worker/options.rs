//! What a [`super::Worker`] is told ([`WorkerOptions`]) and what it makes of it after
//! clamping to the protocol's and the session's bounds (`Settings`).

use std::time::Duration;

use taskforge_protocol::limits::{
    ASSIGNMENT_WEIGHT_MAX, FETCH_JOBS_MAX, HEARTBEAT_TIMEOUT_MS_DEFAULT, LEASE_MS_DEFAULT,
    LEASE_MS_MAX, LEASE_MS_MIN, NAME_BYTES_MAX,
};
use taskforge_protocol::{QueueAssignment, WorkerRegister};

use super::truncate_to_char_boundary;
use crate::client::{Client, CLIENT_VERSION_DEFAULT};

/// Handlers running at once unless configured otherwise.
pub const WORKER_CONCURRENCY_DEFAULT: usize = 10;

/// Most handlers one worker runs at once; bounds its tasks and its FETCH sizes. The same
/// as the protocol's cap on a registered worker's concurrency.
pub const WORKER_CONCURRENCY_MAX: usize =
    taskforge_protocol::limits::WORKER_CONCURRENCY_MAX as usize;

/// Long-poll of each FETCH unless configured otherwise: long enough that an idle worker
/// costs the broker one request every two seconds, short enough that a shutdown (which
/// waits for the outstanding FETCH, since the jobs it leases are this worker's) is quick.
/// Sidekiq and Faktory workers poll at the same pace.
pub const FETCH_WAIT_MS_DEFAULT: u32 = 2_000;

/// Jobs one FETCH asks for at most unless configured otherwise (never more than free slots).
pub const FETCH_BATCH_DEFAULT: u32 = 10;

/// How long a shutdown waits for running handlers unless configured otherwise.
pub const SHUTDOWN_TIMEOUT_MS_DEFAULT: u64 = 30_000;

/// Pause after a FETCH (or the registration) failed transiently, before the next try.
pub const FETCH_ERROR_PAUSE_MS_DEFAULT: u64 = 1_000;

/// Heartbeat interval until the broker's first heartbeat reply names one: a third of the
/// broker's default heartbeat timeout, as the broker itself asks by default.
pub const HEARTBEAT_INTERVAL_MS_DEFAULT: u64 = HEARTBEAT_TIMEOUT_MS_DEFAULT as u64 / 3;

/// Worker name when the executable's name cannot be read.
pub const WORKER_NAME_DEFAULT: &str = "taskforge-worker";

/// What the worker fetches, how it runs handlers, and how it introduces itself to the
/// broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerOptions {
    /// Queues it registers for, in order of preference (1..=`FETCH_QUEUES_MAX`, each must
    /// exist). An operator may replace them later (`taskforge worker assign`); the worker
    /// then fetches from the assigned ones.
    pub queues: Vec<String>,
    /// One weight per queue (1..=`ASSIGNMENT_WEIGHT_MAX`): each FETCH tries the queues in a
    /// random order where a queue comes first with probability proportional to its weight.
    /// Empty, or all equal, for strict preference order. A missing weight is 1.
    pub weights: Vec<u32>,
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
    /// How long a shutdown waits for running handlers before aborting them (the last
    /// heartbeat then releases their leases, and the broker hands their jobs out again).
    pub shutdown_timeout: Duration,
    /// Pause after a FETCH or the registration failed transiently.
    pub fetch_error_pause: Duration,
    /// Display name in `taskforge worker list` (1..=`NAME_BYTES_MAX` bytes); defaults to
    /// the executable's name.
    pub name: String,
    /// Free-form labels (unique keys, at most `WORKER_LABELS_MAX`).
    pub labels: Vec<(String, String)>,
    /// Software version shown in `taskforge worker list`; defaults to this client's
    /// version, so set it to the application's.
    pub version: String,
    /// The host it runs on; defaults to `$HOSTNAME`, else the system's host name.
    pub hostname: String,
    /// Its process id; defaults to this process's.
    pub pid: u32,
    /// Heartbeat interval until the broker's first heartbeat reply names one.
    pub heartbeat_interval: Duration,
}

impl WorkerOptions {
    /// Options for these queues, in strict preference order, with every other setting at
    /// its default (name, host name and pid from the environment).
    pub fn new<Name: Into<String>>(queues: impl IntoIterator<Item = Name>) -> WorkerOptions {
        WorkerOptions {
            queues: queues.into_iter().map(Into::into).collect(),
            weights: Vec::new(),
            concurrency: WORKER_CONCURRENCY_DEFAULT,
            fetch_batch: FETCH_BATCH_DEFAULT,
            fetch_wait_ms: FETCH_WAIT_MS_DEFAULT,
            lease_ms: LEASE_MS_DEFAULT,
            shutdown_timeout: Duration::from_millis(SHUTDOWN_TIMEOUT_MS_DEFAULT),
            fetch_error_pause: Duration::from_millis(FETCH_ERROR_PAUSE_MS_DEFAULT),
            name: executable_name(),
            labels: Vec::new(),
            version: CLIENT_VERSION_DEFAULT.to_string(),
            hostname: hostname_from_environment(),
            pid: std::process::id(),
            heartbeat_interval: Duration::from_millis(HEARTBEAT_INTERVAL_MS_DEFAULT),
        }
    }

    /// Options for these `(queue, weight)` pairs; see [`WorkerOptions::weights`].
    pub fn weighted<Name: Into<String>>(
        queues: impl IntoIterator<Item = (Name, u32)>,
    ) -> WorkerOptions {
        let (names, weights): (Vec<String>, Vec<u32>) = queues
            .into_iter()
            .map(|(name, weight)| (name.into(), weight))
            .unzip();
        let mut options = WorkerOptions::new(names);
        options.weights = weights;
        options
    }

    /// The same options with this display name.
    pub fn with_name(mut self, name: impl Into<String>) -> WorkerOptions {
        self.name = name.into();
        self
    }

    /// The same options with this software version.
    pub fn with_version(mut self, version: impl Into<String>) -> WorkerOptions {
        self.version = version.into();
        self
    }

    /// The same options with one more label.
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> WorkerOptions {
        self.labels.push((key.into(), value.into()));
        self
    }

    /// The queues as registered: in order, each with its weight (clamped to
    /// 1..=`ASSIGNMENT_WEIGHT_MAX`, 1 when missing), all active.
    pub fn assignments(&self) -> Vec<QueueAssignment> {
        self.queues
            .iter()
            .enumerate()
            .map(|(index, queue)| QueueAssignment {
                queue: queue.clone(),
                weight: self
                    .weights
                    .get(index)
                    .copied()
                    .unwrap_or(1)
                    .clamp(1, ASSIGNMENT_WEIGHT_MAX),
                active: true,
            })
            .collect()
    }
}

/// The executable's file name, cut to `NAME_BYTES_MAX`, or [`WORKER_NAME_DEFAULT`].
fn executable_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|path| {
            path.file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
        })
        .filter(|name| !name.is_empty())
        .map_or_else(
            || WORKER_NAME_DEFAULT.to_string(),
            |name| truncate_to_char_boundary(name, NAME_BYTES_MAX),
        )
}

/// `$HOSTNAME` if set, else the system's host name, else `unknown`; cut to
/// `NAME_BYTES_MAX`.
fn hostname_from_environment() -> String {
    let name = std::env::var("HOSTNAME")
        .ok()
        .filter(|name| !name.trim().is_empty())
        .or_else(system_hostname)
        .unwrap_or_else(|| "unknown".to_string());
    truncate_to_char_boundary(name, NAME_BYTES_MAX)
}

#[cfg(unix)]
fn system_hostname() -> Option<String> {
    let mut buffer = [0u8; 256];
    // SAFETY: the pointer and length describe `buffer`, which outlives the call;
    // gethostname writes at most `len` bytes into it.
    let status = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if status != 0 {
        return None;
    }
    let end = buffer
        .iter()
        .position(|&byte| byte == 0)
        .unwrap_or(buffer.len());
    let name = String::from_utf8_lossy(&buffer[..end]).into_owned();
    (!name.is_empty()).then_some(name)
}

#[cfg(not(unix))]
fn system_hostname() -> Option<String> {
    std::env::var("COMPUTERNAME").ok()
}

/// Where and how to fetch: the active assignments in order, with the weights FETCH takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct FetchPlan {
    /// Active queues in preference order; empty: nothing to fetch from.
    pub(super) queues: Vec<String>,
    /// One weight per queue, or empty for strict order (every weight equal).
    pub(super) weights: Vec<u32>,
}

impl FetchPlan {
    /// The plan for these assignments. Equal weights mean strict preference order (the
    /// assignment's meaning), which FETCH spells as no weights at all.
    pub(super) fn new(assignments: &[QueueAssignment]) -> FetchPlan {
        let active: Vec<&QueueAssignment> = assignments
            .iter()
            .filter(|assignment| assignment.active)
            .collect();
        let queues = active
            .iter()
            .map(|assignment| assignment.queue.clone())
            .collect();
        let weights: Vec<u32> = active.iter().map(|assignment| assignment.weight).collect();
        let all_equal = weights.windows(2).all(|pair| pair[0] == pair[1]);
        FetchPlan {
            queues,
            weights: if all_equal { Vec::new() } else { weights },
        }
    }
}

/// Settings after clamping to the protocol's and the session's bounds.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    /// Handlers running at once, at least 1.
    pub(super) concurrency: usize,
    /// Most jobs per FETCH: at least 1, at most `concurrency` and the session's cap.
    pub(super) fetch_batch: usize,
    /// Long-poll of each FETCH, within the session's cap.
    pub(super) fetch_wait_ms: u32,
    /// Lease asked for on FETCH and EXTEND, within the protocol's bounds.
    pub(super) lease_ms: u32,
    /// Largest result an ACK may carry in this session; larger ones are reported as FAIL.
    pub(super) result_bytes_max: u32,
    /// How long a shutdown waits for running handlers.
    pub(super) shutdown_timeout: Duration,
    /// Pause after a FETCH or registration failed transiently.
    pub(super) fetch_error_pause: Duration,
    /// Heartbeat interval until the broker names one.
    pub(super) heartbeat_interval: Duration,
    /// WORKER_REGISTER as first sent; re-registrations send the current assignments.
    pub(super) registration: WorkerRegister,
}

impl Settings {
    pub(super) fn new(options: &WorkerOptions, client: &Client) -> Settings {
        let limits = client.session_limits();
        let concurrency = options.concurrency.clamp(1, WORKER_CONCURRENCY_MAX);
        let fetch_jobs_max = limits.fetch_jobs_max.clamp(1, FETCH_JOBS_MAX);
        let fetch_batch = options.fetch_batch.clamp(1, fetch_jobs_max) as usize;
        Settings {
            concurrency,
            fetch_batch: fetch_batch.min(concurrency),
            fetch_wait_ms: options.fetch_wait_ms.min(limits.fetch_wait_ms_max),
            lease_ms: options.lease_ms.clamp(LEASE_MS_MIN, LEASE_MS_MAX),
            result_bytes_max: limits.result_bytes_max,
            shutdown_timeout: options.shutdown_timeout,
            fetch_error_pause: options.fetch_error_pause,
            heartbeat_interval: options.heartbeat_interval,
            registration: WorkerRegister {
                name: options.name.clone(),
                hostname: options.hostname.clone(),
                pid: options.pid,
                version: options.version.clone(),
                labels: options.labels.clone(),
                concurrency: u32::try_from(concurrency).unwrap_or(u32::MAX),
                queues: options.assignments(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(queue: &str, weight: u32, active: bool) -> QueueAssignment {
        QueueAssignment {
            queue: queue.to_string(),
            weight,
            active,
        }
    }

    #[test]
    fn weights_default_to_one_and_are_clamped() {
        let mut options = WorkerOptions::weighted([("a", 0), ("b", 5_000)]);
        options.queues.push("c".to_string());
        assert_eq!(
            options.assignments(),
            [
                assignment("a", 1, true),
                assignment("b", ASSIGNMENT_WEIGHT_MAX, true),
                assignment("c", 1, true)
            ]
        );
    }

    #[test]
    fn equal_weights_fetch_in_strict_order_and_inactive_queues_are_skipped() {
        let strict = FetchPlan::new(&[assignment("a", 2, true), assignment("b", 2, true)]);
        assert_eq!(strict.queues, ["a", "b"]);
        assert!(strict.weights.is_empty());
        let weighted = FetchPlan::new(&[
            assignment("a", 3, true),
            assignment("off", 9, false),
            assignment("b", 1, true),
        ]);
        assert_eq!(weighted.queues, ["a", "b"]);
        assert_eq!(weighted.weights, [3, 1]);
        assert!(FetchPlan::new(&[assignment("off", 1, false)])
            .queues
            .is_empty());
    }

    #[test]
    fn identity_comes_from_the_environment() {
        let options = WorkerOptions::new(["q"]).with_label("zone", "a");
        assert!(!options.name.is_empty());
        assert!(!options.hostname.is_empty());
        assert_eq!(options.pid, std::process::id());
        assert_eq!(options.labels, [("zone".to_string(), "a".to_string())]);
        assert_eq!(
            options.heartbeat_interval,
            Duration::from_millis(u64::from(HEARTBEAT_TIMEOUT_MS_DEFAULT) / 3)
        );
    }
}
