//! The server's Prometheus metrics: one [`Metrics`] per running server, each with its own
//! registry, so several servers in one process (the tests) never share a counter.
//!
//! Three kinds of values live here:
//! - **Counted as they happen** by the server: requests and their outcomes by operation
//!   (in the dispatch layer, from each request and its answer), the job flow those answers
//!   show (enqueued, leased, acked, failed, ...), connections, and the enqueue-to-first-lease
//!   wait.
//! - **Observed by the group committer**: [`CommitHistograms`], created by the broker and
//!   registered here.
//! - **Read from the broker at scrape time**: queue depths by state, the broker's own
//!   counters, storage size, readiness (see `admin_http::scrape`). Nothing is counted twice:
//!   what the broker already counts is mirrored, not recounted.
//!
//! Every name starts with [`METRIC_PREFIX`]; the README lists them all.

use std::sync::Mutex;
use std::time::Duration;

use prometheus::{
    Counter, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};
use taskforge_protocol::{ErrorBody, JobState, Opcode, Response};

/// Prefix of every metric name.
pub const METRIC_PREFIX: &str = "taskforge";

/// Buckets of request and commit durations, in seconds: most operations take well under a
/// millisecond in memory and a few ms with an fsync; FETCH includes its long-poll wait (up
/// to `FETCH_WAIT_MS_MAX`, 60 s).
const DURATION_BUCKETS_SECONDS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// Buckets of the enqueue-to-first-lease wait, in seconds: from a hot queue (ms) to a
/// backlog or a delayed job (hours).
const JOB_WAIT_BUCKETS_SECONDS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3_600.0,
    21_600.0, 86_400.0,
];

/// Number of power-of-two buckets of the commit batch size: 1, 2, 4, ... 65,536 writes.
const COMMIT_BATCH_BUCKETS: usize = 17;

/// The group committer's histograms. The broker creates them (its committer observes
/// them once per round) and the server registers them in its [`Metrics`].
#[derive(Debug, Clone)]
pub struct CommitHistograms {
    /// Writes applied per commit round.
    pub batch_writes: Histogram,
    /// Time one commit round took: apply plus, when the policy syncs, flush and fdatasync.
    pub round_seconds: Histogram,
}

impl CommitHistograms {
    /// Records one commit round of `writes` writes that took `elapsed`. Empty rounds
    /// (a barrier with nothing to write) are not observed.
    pub fn observe_round(&self, writes: usize, elapsed: Duration) {
        if writes == 0 {
            return;
        }
        self.batch_writes.observe(writes as f64);
        self.round_seconds.observe(elapsed.as_secs_f64());
    }
}

impl Default for CommitHistograms {
    fn default() -> CommitHistograms {
        CommitHistograms {
            batch_writes: histogram(
                HistogramOpts::new(
                    "commit_batch_writes",
                    "Storage writes applied per group-commit round",
                )
                .buckets(
                    prometheus::exponential_buckets(1.0, 2.0, COMMIT_BATCH_BUCKETS)
                        .expect("constant exponential buckets are valid"),
                ),
            ),
            round_seconds: histogram(
                HistogramOpts::new(
                    "commit_round_duration_seconds",
                    "Duration of one group-commit round: apply, then flush and fdatasync when \
                     the fsync policy syncs",
                )
                .buckets(DURATION_BUCKETS_SECONDS.to_vec()),
            ),
        }
    }
}

/// A histogram from constant options; invalid options are a programming error.
fn histogram(opts: HistogramOpts) -> Histogram {
    Histogram::with_opts(opts.namespace(METRIC_PREFIX)).expect("constant histogram options")
}

/// Counters of the job flow, read off successful answers.
#[derive(Debug, Clone)]
pub struct JobFlowCounters {
    /// Jobs stored by ENQUEUE and ENQUEUE_BATCH.
    pub enqueued: IntCounter,
    /// Jobs handed out by FETCH (each lease counts once).
    pub leased: IntCounter,
    /// Jobs acknowledged by ACK and ACK_BATCH.
    pub acked: IntCounter,
    /// Failed attempts reported by FAIL.
    pub failed: IntCounter,
    /// Failed attempts that will be retried.
    pub retried: IntCounter,
    /// Failed attempts that made the job dead.
    pub dead: IntCounter,
    /// Jobs cancelled by CANCEL (or marked for cancel while leased).
    pub cancelled: IntCounter,
    /// Dead jobs made ready again by DEAD_RETRY.
    pub dead_retried: IntCounter,
    /// Dead jobs deleted by DEAD_DISCARD.
    pub dead_discarded: IntCounter,
    /// Jobs removed by QUEUE_PURGE.
    pub purged: IntCounter,
}

/// Values copied from the broker at scrape time (see `admin_http::scrape`).
#[derive(Debug, Clone)]
pub struct BrokerMirror {
    /// Jobs per queue and state.
    pub queue_jobs: IntGaugeVec,
    /// 1 while a queue is paused.
    pub queue_paused: IntGaugeVec,
    /// Registered workers per project and state.
    pub workers: IntGaugeVec,
    /// Workers found lost (silent past the heartbeat timeout).
    pub workers_lost: IntCounter,
    /// Queues in the broker.
    pub queues: IntGauge,
    /// Live (pending or leased) jobs held in memory.
    pub live_jobs: IntGauge,
    /// FETCHes waiting in a long-poll.
    pub waiting_fetches: IntGauge,
    /// Commit rounds that applied writes.
    pub commit_rounds: IntCounter,
    /// Storage syncs (flush plus fdatasync).
    pub storage_syncs: IntCounter,
    /// Storage writes applied.
    pub storage_writes: IntCounter,
    /// Replies released by commit rounds.
    pub commit_replies: IntCounter,
    /// Commit rounds that failed.
    pub commit_failures: IntCounter,
    /// Leases that ran out before their job was acknowledged.
    pub lease_expiries: IntCounter,
    /// Jobs that expired before they started.
    pub jobs_expired: IntCounter,
    /// Bytes the store occupies on disk.
    pub storage_size_bytes: IntGauge,
    /// 1 while storage is open, recovered and serving; 0 while starting, failing or
    /// shutting down.
    pub ready: IntGauge,
    /// How long the start-up recovery took.
    pub recovery_duration_seconds: Gauge,
    /// The storage schema version the store is at.
    pub schema_version: IntGauge,
    /// Journal files checkpointed into sled.
    pub journal_checkpoints: IntCounter,
    /// Keys the checkpoints copied into sled.
    pub journal_checkpointed_keys: IntCounter,
    /// Time spent checkpointing.
    pub journal_checkpoint_seconds: Counter,
    /// Commit rounds that waited for a checkpoint (journal back-pressure).
    pub journal_writer_waits: IntCounter,
    /// Time those rounds waited.
    pub journal_writer_wait_seconds: Counter,
    /// Bytes in the current journal file.
    pub journal_file_bytes: IntGauge,
}

/// Every metric of one server, and the registry that exports them.
pub struct Metrics {
    /// The registry `/metrics` gathers.
    registry: Registry,
    /// Requests by operation and outcome (`ok` or the error code's name).
    requests: IntCounterVec,
    /// Request handling time by operation (FETCH includes its long-poll wait).
    request_seconds: HistogramVec,
    /// The job flow.
    pub jobs: JobFlowCounters,
    /// Time from enqueue to the first lease of a job.
    job_wait_seconds: Histogram,
    /// Protocol connections open now.
    connections_open: IntGauge,
    /// Protocol connections accepted.
    connections_accepted: IntCounter,
    /// Protocol connections refused at the connection cap.
    connections_refused: IntCounter,
    /// Values mirrored from the broker at scrape time.
    pub broker: BrokerMirror,
    /// Held during a scrape's refresh-and-gather, so two scrapes never interleave their
    /// updates of the mirrored values.
    pub scrape_lock: Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Builds and registers one metric; names and help texts are constants, so a failure is a
/// programming error (a duplicate or invalid name).
macro_rules! registered {
    ($registry:expr, $metric:expr) => {{
        let metric = $metric.expect("constant metric options");
        $registry
            .register(Box::new(metric.clone()))
            .expect("metric names are unique");
        metric
    }};
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace(METRIC_PREFIX)
}

impl Metrics {
    /// A registry with every metric at zero.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| -> IntCounter {
            registered!(registry, IntCounter::with_opts(opts(name, help)))
        };
        let gauge = |name: &str, help: &str| -> IntGauge {
            registered!(registry, IntGauge::with_opts(opts(name, help)))
        };
        let seconds = |name: &str, help: &str| -> Counter {
            registered!(registry, Counter::with_opts(opts(name, help)))
        };
        let build_info = registered!(
            registry,
            IntGaugeVec::new(
                opts("build_info", "Always 1; the labels name the running build"),
                &["version"]
            )
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let requests = registered!(
            registry,
            IntCounterVec::new(
                opts(
                    "requests_total",
                    "Protocol requests answered, by operation and outcome (ok or the error code)"
                ),
                &["operation", "outcome"]
            )
        );
        let request_seconds = registered!(
            registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "request_duration_seconds",
                    "Time from a request reaching the broker to its answer (FETCH includes its \
                     long-poll wait)"
                )
                .namespace(METRIC_PREFIX)
                .buckets(DURATION_BUCKETS_SECONDS.to_vec()),
                &["operation"]
            )
        );
        let jobs = JobFlowCounters {
            enqueued: counter(
                "jobs_enqueued_total",
                "Jobs stored by ENQUEUE and ENQUEUE_BATCH",
            ),
            leased: counter("jobs_leased_total", "Jobs handed to workers by FETCH"),
            acked: counter("jobs_acked_total", "Jobs acknowledged by ACK and ACK_BATCH"),
            failed: counter("jobs_failed_total", "Failed attempts reported by FAIL"),
            retried: counter(
                "jobs_retried_total",
                "Failed attempts that were scheduled for a retry",
            ),
            dead: counter(
                "jobs_dead_total",
                "Failed attempts that made their job dead",
            ),
            cancelled: counter("jobs_cancelled_total", "Jobs cancelled by CANCEL"),
            dead_retried: counter(
                "dead_jobs_retried_total",
                "Dead jobs made ready again by DEAD_RETRY",
            ),
            dead_discarded: counter(
                "dead_jobs_discarded_total",
                "Dead jobs deleted by DEAD_DISCARD",
            ),
            purged: counter("jobs_purged_total", "Jobs removed by QUEUE_PURGE"),
        };
        let job_wait_seconds = registered!(
            registry,
            Histogram::with_opts(
                HistogramOpts::new(
                    "job_wait_seconds",
                    "Time from a job's enqueue to its first lease (broker clock)"
                )
                .namespace(METRIC_PREFIX)
                .buckets(JOB_WAIT_BUCKETS_SECONDS.to_vec())
            )
        );
        let connections_open = gauge("connections_open", "Protocol connections open now");
        let connections_accepted = counter(
            "connections_accepted_total",
            "Protocol connections accepted",
        );
        let connections_refused = counter(
            "connections_refused_total",
            "Protocol connections refused because the connection cap was reached",
        );
        let queue_labels = ["project", "queue"];
        let broker = BrokerMirror {
            queue_jobs: registered!(
                registry,
                IntGaugeVec::new(
                    opts("queue_jobs", "Jobs in a queue by state"),
                    &["project", "queue", "state"]
                )
            ),
            queue_paused: registered!(
                registry,
                IntGaugeVec::new(
                    opts("queue_paused", "1 while a queue is paused"),
                    &queue_labels
                )
            ),
            workers: registered!(
                registry,
                IntGaugeVec::new(
                    opts("workers", "Registered workers by project and state"),
                    &["project", "state"]
                )
            ),
            workers_lost: counter(
                "workers_lost_total",
                "Workers that missed heartbeats for the heartbeat timeout (their leases were released)",
            ),
            queues: gauge("queues", "Queues in the broker"),
            live_jobs: gauge("live_jobs", "Pending and leased jobs held in memory"),
            waiting_fetches: gauge("waiting_fetches", "FETCH requests waiting in a long-poll"),
            commit_rounds: counter(
                "commit_rounds_total",
                "Group-commit rounds that applied writes",
            ),
            storage_syncs: counter(
                "storage_syncs_total",
                "Storage syncs (flush plus fdatasync)",
            ),
            storage_writes: counter("storage_writes_total", "Storage writes applied"),
            commit_replies: counter(
                "commit_replies_total",
                "Replies released by group-commit rounds",
            ),
            commit_failures: counter("commit_failures_total", "Group-commit rounds that failed"),
            jobs_expired: counter(
                "jobs_expired_total",
                "Jobs that reached their expiry before they started",
            ),
            lease_expiries: counter(
                "lease_expiries_total",
                "Leases that ran out before their job was acknowledged",
            ),
            storage_size_bytes: gauge("storage_size_bytes", "Bytes the store occupies on disk"),
            ready: gauge(
                "ready",
                "1 while storage is open and recovered and the broker serves; 0 otherwise",
            ),
            recovery_duration_seconds: registered!(
                registry,
                Gauge::with_opts(opts(
                    "recovery_duration_seconds",
                    "Time the start-up recovery (rebuilding memory from storage) took"
                ))
            ),
            schema_version: gauge("schema_version", "Storage schema version of the store"),
            journal_checkpoints: counter(
                "journal_checkpoints_total",
                "Commit journal files checkpointed into sled",
            ),
            journal_checkpointed_keys: counter(
                "journal_checkpointed_keys_total",
                "Keys checkpoints copied from the commit journal into sled",
            ),
            journal_checkpoint_seconds: seconds(
                "journal_checkpoint_seconds_total",
                "Time spent checkpointing the commit journal into sled",
            ),
            journal_writer_waits: counter(
                "journal_writer_waits_total",
                "Commit rounds that waited for a checkpoint because the journal held two \
                 checkpoints' worth",
            ),
            journal_writer_wait_seconds: seconds(
                "journal_writer_wait_seconds_total",
                "Time commit rounds waited for checkpoints",
            ),
            journal_file_bytes: gauge(
                "journal_file_bytes",
                "Bytes in the current commit journal file, not yet checkpointed",
            ),
        };
        Metrics {
            registry,
            requests,
            request_seconds,
            jobs,
            job_wait_seconds,
            connections_open,
            connections_accepted,
            connections_refused,
            broker,
            scrape_lock: Mutex::new(()),
        }
    }

    /// The registry to gather from.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Registers the committer's histograms (once, when the broker is open).
    pub fn register_commit_histograms(&self, histograms: &CommitHistograms) {
        for histogram in [&histograms.batch_writes, &histograms.round_seconds] {
            if let Err(error) = self.registry.register(Box::new(histogram.clone())) {
                tracing::warn!(%error, "commit histograms already registered");
            }
        }
    }

    /// Records one answered request: its outcome, its duration and the job flow the answer
    /// shows. `now_ms` is the broker's clock, for the enqueue-to-lease wait.
    pub fn observe_request(
        &self,
        opcode: Opcode,
        outcome: &Result<Response, ErrorBody>,
        elapsed: Duration,
        now_ms: u64,
    ) {
        let operation = opcode.name();
        let outcome_label = match outcome {
            Ok(_) => "ok",
            Err(error) => error.error_code().name(),
        };
        self.requests
            .with_label_values(&[operation, outcome_label])
            .inc();
        self.request_seconds
            .with_label_values(&[operation])
            .observe(elapsed.as_secs_f64());
        if let Ok(response) = outcome {
            self.observe_job_flow(response, now_ms);
        }
    }

    fn observe_job_flow(&self, response: &Response, now_ms: u64) {
        let jobs = &self.jobs;
        match response {
            Response::Enqueue(created) if !created.duplicate => jobs.enqueued.inc(),
            Response::EnqueueBatch(batch) => {
                let duplicates = batch
                    .duplicates
                    .iter()
                    .filter(|duplicate| **duplicate)
                    .count();
                jobs.enqueued
                    .inc_by(batch.job_ids.len().saturating_sub(duplicates) as u64)
            }
            Response::Fetch(fetch) => {
                jobs.leased.inc_by(fetch.jobs.len() as u64);
                for job in fetch.jobs.iter().filter(|job| job.attempt == 1) {
                    let wait_ms = now_ms.saturating_sub(job.created_at_ms);
                    self.job_wait_seconds.observe(wait_ms as f64 / 1_000.0);
                }
            }
            Response::Ack(_) => jobs.acked.inc(),
            Response::AckBatch(batch) => {
                let acked = batch
                    .results
                    .iter()
                    .filter(|result| result.is_none())
                    .count();
                jobs.acked.inc_by(acked as u64);
            }
            Response::Fail(fail) => {
                jobs.failed.inc();
                if fail.state == JobState::Dead {
                    jobs.dead.inc();
                } else {
                    jobs.retried.inc();
                }
            }
            Response::Cancel(_) => jobs.cancelled.inc(),
            Response::DeadRetry(bulk) => jobs.dead_retried.inc_by(bulk.affected),
            Response::DeadDiscard(bulk) => jobs.dead_discarded.inc_by(bulk.affected),
            Response::QueuePurge(bulk) => jobs.purged.inc_by(bulk.affected),
            _ => {}
        }
    }

    /// Counts an accepted connection; the returned guard counts it closed when dropped.
    pub fn connection_opened(self: &std::sync::Arc<Self>) -> OpenConnection {
        self.connections_accepted.inc();
        self.connections_open.inc();
        OpenConnection {
            metrics: std::sync::Arc::clone(self),
        }
    }

    /// Counts a connection refused at the cap.
    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

/// An open connection, as far as the metrics know; dropping it counts the close.
#[derive(Debug)]
pub struct OpenConnection {
    /// Where the open-connections gauge lives.
    metrics: std::sync::Arc<Metrics>,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.metrics.connections_open.dec();
    }
}

/// Brings a mirrored counter up to `value` (the broker's own count, which only grows).
pub fn mirror_counter(counter: &IntCounter, value: u64) {
    let current = counter.get();
    if value > current {
        counter.inc_by(value - current);
    }
}

/// Brings a mirrored seconds counter up to `value` (a total that only grows).
pub fn mirror_seconds(counter: &Counter, value: f64) {
    let current = counter.get();
    if value > current {
        counter.inc_by(value - current);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use taskforge_protocol::{EnqueueBatchResponse, ErrorCode, FailResponse, JobId};

    fn value_of(metrics: &Metrics, name: &str) -> f64 {
        metrics
            .registry()
            .gather()
            .iter()
            .filter(|family| family.name() == name)
            .flat_map(|family| family.get_metric().iter())
            .map(|metric| metric.get_counter().get_value())
            .sum()
    }

    #[test]
    fn answers_move_the_job_flow_counters() {
        let metrics = Metrics::new();
        let batch = Ok(Response::EnqueueBatch(EnqueueBatchResponse {
            job_ids: vec![JobId([1; 16]), JobId([2; 16])],
            duplicates: vec![false, false],
        }));
        metrics.observe_request(Opcode::EnqueueBatch, &batch, Duration::ZERO, 0);
        let dead = Ok(Response::Fail(FailResponse {
            state: JobState::Dead,
            run_at_ms: None,
            attempts: 3,
        }));
        metrics.observe_request(Opcode::Fail, &dead, Duration::ZERO, 0);
        let refused = Err(ErrorBody::new(ErrorCode::NotFound, "no queue"));
        metrics.observe_request(Opcode::Enqueue, &refused, Duration::ZERO, 0);
        assert_eq!(value_of(&metrics, "taskforge_jobs_enqueued_total"), 2.0);
        assert_eq!(value_of(&metrics, "taskforge_jobs_dead_total"), 1.0);
        assert_eq!(value_of(&metrics, "taskforge_jobs_retried_total"), 0.0);
        assert_eq!(value_of(&metrics, "taskforge_requests_total"), 3.0);
    }

    #[test]
    fn mirrored_counters_follow_the_source_and_never_go_back() {
        let metrics = Metrics::new();
        mirror_counter(&metrics.broker.commit_rounds, 5);
        mirror_counter(&metrics.broker.commit_rounds, 3);
        assert_eq!(metrics.broker.commit_rounds.get(), 5);
    }

    #[test]
    fn connection_guards_keep_the_gauge_exact() {
        let metrics = std::sync::Arc::new(Metrics::new());
        let first = metrics.connection_opened();
        let second = metrics.connection_opened();
        drop(first);
        assert_eq!(metrics.connections_open.get(), 1);
        drop(second);
        assert_eq!(metrics.connections_open.get(), 0);
        assert_eq!(metrics.connections_accepted.get(), 2);
    }
}
