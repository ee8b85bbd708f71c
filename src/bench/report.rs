//! What a bench run reports, as text or JSON, and the exactly-once tally.

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::scrape::CommitCounters;
use super::target::{CpuScope, ProcessSample};
use super::{Peer, Workload};

/// The result of one run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// The workload.
    pub workload: Workload,
    /// The system driven.
    pub peer: Peer,
    /// `embedded`, `spawned` or `external <address>`.
    pub target: String,
    /// fsync policy of a server the bench started.
    pub fsync: Option<String>,
    /// Producer connections in the measured phase.
    pub producers: usize,
    /// Consumer connections in the measured phase.
    pub consumers: usize,
    /// Requests in flight per connection.
    pub in_flight: usize,
    /// Jobs per enqueue request.
    pub enqueue_batch: usize,
    /// Most jobs per fetch request.
    pub fetch_batch: usize,
    /// Jobs per ack request.
    pub ack_batch: usize,
    /// Payload size.
    pub payload_bytes: usize,
    /// Fixed arrival rate (open loop), if any.
    pub rate_jobs_per_s: Option<f64>,
    /// Jobs completed in the measured phase (acknowledged; enqueued for `enqueue`).
    pub jobs: u64,
    /// Length of the measured phase, to its last completion.
    pub elapsed_s: f64,
    /// Throughput of the measured phase.
    pub jobs_per_s: f64,
    /// What `latency` measures.
    pub latency_kind: LatencyKind,
    /// Latency of the measured phase.
    pub latency: LatencySummary,
    /// Enqueue reply latency, when the measured phase also consumed.
    pub enqueue_latency: Option<LatencySummary>,
    /// The drain workload's preload.
    pub preload: Option<PreloadReport>,
    /// Server CPU time, when the bench can read it.
    pub server_cpu: Option<ServerCpu>,
    /// Server memory before and after the drain preload.
    pub server_memory: Option<ServerMemory>,
    /// Embedded broker counters.
    pub server_counters: Option<ServerCounters>,
    /// Whether every job completed exactly once.
    pub exactly_once: ExactlyOnce,
}

/// What a latency figure measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LatencyKind {
    /// From the (intended) enqueue send time to the fetch answer carrying the job.
    EnqueueToFetch,
    /// From the (intended) enqueue send time to its confirmation.
    EnqueueReply,
}

/// Percentiles of a latency histogram, in µs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Samples.
    pub samples: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest sample.
    pub max_us: u64,
}

impl LatencySummary {
    /// Summarises a histogram of µs samples.
    pub(crate) fn from_histogram(histogram: &Histogram<u64>) -> LatencySummary {
        LatencySummary {
            samples: histogram.len(),
            mean_us: histogram.mean(),
            p50_us: histogram.value_at_quantile(0.5),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
        }
    }
}

/// The preload phase: drain's backlog, or lifecycle's `--backlog`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PreloadReport {
    /// Jobs enqueued.
    pub jobs: u64,
    /// How long it took.
    pub elapsed_s: f64,
    /// Enqueue throughput.
    pub jobs_per_s: f64,
    /// How long the server stayed busy after the preload (checkpointing its journal into
    /// sled) before the next phase started; `None` for a server this bench did not start.
    pub settle_s: Option<f64>,
    /// With `--restart-after-preload`: from starting the server process again to the first
    /// job served.
    pub restart_to_first_job_ms: Option<f64>,
}

/// Server CPU time over the measured phase.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ServerCpu {
    /// Whose CPU time this is.
    pub scope: CpuScope,
    /// CPU time (user + system) per completed job, µs.
    pub cpu_us_per_job: f64,
    /// CPU time over wall time: 1.0 is one core busy.
    pub cores_busy: f64,
    /// The load generator's CPU per job, when the server is another process.
    pub load_generator_cpu_us_per_job: Option<f64>,
    /// Server CPU per completed job including the work it did after the phase until it was
    /// idle (checkpointing into sled what the phase journaled): the sustained cost, which a
    /// short run would otherwise flatter by up to one checkpoint period of that work.
    pub cpu_us_per_job_settled: Option<f64>,
    /// How long the server took to go idle after the phase, s.
    pub settle_s: Option<f64>,
}

/// Process samples around the measured phase.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PhaseSamples {
    /// The server process when the phase started.
    pub(crate) before: Option<ProcessSample>,
    /// The server process when it ended.
    pub(crate) after: Option<ProcessSample>,
    /// The load generator (this process) when the phase started, if the server is another.
    pub(crate) generator_before: Option<ProcessSample>,
    /// The load generator when the phase ended.
    pub(crate) generator_after: Option<ProcessSample>,
    /// The server once it went idle after the phase, and how long that took (s).
    pub(crate) settled: Option<(ProcessSample, f64)>,
}

impl ServerCpu {
    /// From process samples around the phase; `None` when a server sample is missing.
    pub(crate) fn from_samples(
        scope: Option<CpuScope>,
        samples: PhaseSamples,
        jobs: u64,
        elapsed: Duration,
    ) -> Option<ServerCpu> {
        let PhaseSamples {
            before,
            after,
            generator_before,
            generator_after,
            settled,
        } = samples;
        let (scope, before, after) = (scope?, before?, after?);
        let per_job = |before: ProcessSample, after: ProcessSample| {
            after.cpu_us.saturating_sub(before.cpu_us) as f64 / jobs.max(1) as f64
        };
        let cpu_us = after.cpu_us.saturating_sub(before.cpu_us) as f64;
        Some(ServerCpu {
            scope,
            cpu_us_per_job: per_job(before, after),
            cores_busy: cpu_us / (elapsed.as_secs_f64() * 1e6).max(1.0),
            load_generator_cpu_us_per_job: generator_before
                .zip(generator_after)
                .map(|(before, after)| per_job(before, after)),
            cpu_us_per_job_settled: settled.map(|(settled, _)| per_job(before, settled)),
            settle_s: settled.map(|(_, settle_s)| settle_s),
        })
    }
}

/// Server memory around the drain preload.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ServerMemory {
    /// RSS before the preload.
    pub rss_before_bytes: u64,
    /// RSS after the preload.
    pub rss_after_bytes: u64,
    /// Growth per pending job.
    pub bytes_per_pending_job: f64,
    /// Growth per pending job beyond its payload.
    pub bytes_per_pending_job_beyond_payload: f64,
    /// With `--spawn`: RSS after the preload's checkpoints settled and the server idled
    /// `--rest-ms` more: what a running server holds for the backlog.
    pub rss_at_rest_after_preload_bytes: Option<u64>,
    /// The same per pending job, beyond its payload, counted from `rss_before_bytes`.
    pub bytes_per_pending_job_at_rest_after_preload_beyond_payload: Option<f64>,
    /// With `--restart-after-preload`: RSS of the restarted server once it served its first
    /// job, with the whole backlog pending (no write-path garbage).
    pub rss_after_restart_bytes: Option<u64>,
    /// The same per pending job, beyond its payload, counted from `rss_before_bytes`.
    pub bytes_per_pending_job_after_restart_beyond_payload: Option<f64>,
    /// RSS of the restarted server after it idled `--rest-ms` more: what the backlog
    /// holds once start-up's freed memory went back to the OS.
    pub rss_at_rest_after_restart_bytes: Option<u64>,
    /// The same per pending job, beyond its payload, counted from `rss_before_bytes`.
    pub bytes_per_pending_job_at_rest_beyond_payload: Option<f64>,
}

impl ServerMemory {
    /// From process samples around the preload (`resting`: after it settled and the server
    /// idled); `None` when the samples before or after it are missing.
    pub(crate) fn from_samples(
        before: Option<ProcessSample>,
        after: Option<ProcessSample>,
        resting: Option<ProcessSample>,
        jobs: u64,
        payload_bytes: usize,
    ) -> Option<ServerMemory> {
        let (before, after) = (before?, after?);
        let per_job = |sample: ProcessSample| {
            (sample.rss_bytes as f64 - before.rss_bytes as f64) / jobs.max(1) as f64
        };
        Some(ServerMemory {
            rss_before_bytes: before.rss_bytes,
            rss_after_bytes: after.rss_bytes,
            bytes_per_pending_job: per_job(after),
            bytes_per_pending_job_beyond_payload: per_job(after) - payload_bytes as f64,
            rss_at_rest_after_preload_bytes: resting.map(|sample| sample.rss_bytes),
            bytes_per_pending_job_at_rest_after_preload_beyond_payload: resting
                .map(|sample| per_job(sample) - payload_bytes as f64),
            rss_after_restart_bytes: None,
            bytes_per_pending_job_after_restart_beyond_payload: None,
            rss_at_rest_after_restart_bytes: None,
            bytes_per_pending_job_at_rest_beyond_payload: None,
        })
    }

    /// Adds the restarted server's RSS with `jobs` pending, once it served its first job
    /// (`serving`) and once it rested (`resting`).
    pub(crate) fn with_restart(
        mut self,
        serving: Option<ProcessSample>,
        resting: Option<ProcessSample>,
        jobs: u64,
        payload_bytes: usize,
    ) -> ServerMemory {
        let beyond_payload = |sample: ProcessSample| {
            (sample.rss_bytes as f64 - self.rss_before_bytes as f64) / jobs.max(1) as f64
                - payload_bytes as f64
        };
        if let Some(serving) = serving {
            self.rss_after_restart_bytes = Some(serving.rss_bytes);
            self.bytes_per_pending_job_after_restart_beyond_payload = Some(beyond_payload(serving));
        }
        if let Some(resting) = resting {
            self.rss_at_rest_after_restart_bytes = Some(resting.rss_bytes);
            self.bytes_per_pending_job_at_rest_beyond_payload = Some(beyond_payload(resting));
        }
        self
    }
}

/// The server's commit counters over the measured phase (a server the bench started).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ServerCounters {
    /// Storage syncs (fsyncs under `always`).
    pub syncs: u64,
    /// Commit rounds that applied writes.
    pub commit_rounds: u64,
    /// Writes applied.
    pub writes: u64,
    /// Replies released by commits.
    pub commit_replies: u64,
    /// Writes per commit round: the mean group-commit size in writes.
    pub writes_per_round: f64,
    /// Replies per commit round: the mean group-commit size in requests.
    pub replies_per_round: f64,
    /// Syncs per completed job.
    pub syncs_per_job: f64,
}

impl ServerCounters {
    /// The difference of two snapshots.
    pub(crate) fn between(before: &CommitCounters, after: &CommitCounters, jobs: u64) -> Self {
        let rounds = after.commit_rounds.saturating_sub(before.commit_rounds);
        let writes = after.writes.saturating_sub(before.writes);
        let replies = after.commit_replies.saturating_sub(before.commit_replies);
        let syncs = after.syncs.saturating_sub(before.syncs);
        let per_round = |count: u64| count as f64 / rounds.max(1) as f64;
        ServerCounters {
            syncs,
            commit_rounds: rounds,
            writes,
            commit_replies: replies,
            writes_per_round: per_round(writes),
            replies_per_round: per_round(replies),
            syncs_per_job: syncs as f64 / jobs.max(1) as f64,
        }
    }
}

/// The exactly-once check: every job whose enqueue was confirmed was acknowledged once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ExactlyOnce {
    /// False when nothing consumed (the `enqueue` workload): only `confirmed` is meaningful.
    pub checked: bool,
    /// Jobs whose enqueue was confirmed.
    pub confirmed: u64,
    /// Distinct jobs acknowledged.
    pub acked_distinct: u64,
    /// Confirmed jobs never acknowledged.
    pub missing: u64,
    /// Acknowledgements beyond the first for the same job.
    pub duplicates: u64,
    /// Jobs acknowledged whose enqueue was never confirmed.
    pub unexpected: u64,
}

impl ExactlyOnce {
    /// Compares confirmed enqueues with acknowledgements, by sequence number.
    pub(crate) fn tally(mut confirmed: Vec<u64>, mut acked: Vec<u64>) -> ExactlyOnce {
        confirmed.sort_unstable();
        confirmed.dedup();
        acked.sort_unstable();
        let acked_total = acked.len() as u64;
        acked.dedup();
        let duplicates = acked_total - acked.len() as u64;
        let (mut missing, mut unexpected) = (0, 0);
        let (mut left, mut right) = (confirmed.iter().peekable(), acked.iter().peekable());
        loop {
            match (left.peek(), right.peek()) {
                (Some(a), Some(b)) if a == b => {
                    left.next();
                    right.next();
                }
                (Some(a), Some(b)) if a < b => {
                    missing += 1;
                    left.next();
                }
                (Some(_), Some(_)) | (None, Some(_)) => {
                    unexpected += 1;
                    right.next();
                }
                (Some(_), None) => {
                    missing += 1;
                    left.next();
                }
                (None, None) => break,
            }
        }
        ExactlyOnce {
            checked: true,
            confirmed: confirmed.len() as u64,
            acked_distinct: acked.len() as u64,
            missing,
            duplicates,
            unexpected,
        }
    }

    /// Nothing was consumed, so nothing to check.
    pub(crate) fn unchecked(confirmed: u64) -> ExactlyOnce {
        ExactlyOnce {
            checked: false,
            confirmed,
            acked_distinct: 0,
            missing: 0,
            duplicates: 0,
            unexpected: 0,
        }
    }

    /// True unless a job was missed, repeated or unexpected.
    pub fn holds(&self) -> bool {
        self.missing == 0 && self.duplicates == 0 && self.unexpected == 0
    }
}

impl fmt::Display for LatencySummary {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "p50 {} / p99 {} / p99.9 {} / max {} (mean {:.0} µs, {} samples)",
            format_micros(self.p50_us),
            format_micros(self.p99_us),
            format_micros(self.p999_us),
            format_micros(self.max_us),
            self.mean_us,
            self.samples
        )
    }
}

/// `850 µs` or `12.3 ms`.
fn format_micros(micros: u64) -> String {
    if micros < 1_000 {
        format!("{micros} µs")
    } else {
        format!("{:.2} ms", micros as f64 / 1e3)
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            formatter,
            "workload   {} on {} ({}{})",
            self.workload.name(),
            self.peer.name(),
            self.target,
            self.fsync
                .as_ref()
                .map(|fsync| format!(", fsync={fsync}"))
                .unwrap_or_default()
        )?;
        writeln!(
            formatter,
            "shape      {} producers, {} consumers, {} in flight per connection, batches \
             enqueue {} / fetch {} / ack {}, {}-byte payloads{}",
            self.producers,
            self.consumers,
            self.in_flight,
            self.enqueue_batch,
            self.fetch_batch,
            self.ack_batch,
            self.payload_bytes,
            self.rate_jobs_per_s
                .map(|rate| format!(", open loop at {rate:.0} jobs/s"))
                .unwrap_or_default()
        )?;
        if let Some(preload) = &self.preload {
            writeln!(
                formatter,
                "preload    {} jobs in {:.2} s = {:.0} jobs/s",
                preload.jobs, preload.elapsed_s, preload.jobs_per_s
            )?;
            if let Some(restart_ms) = preload.restart_to_first_job_ms {
                writeln!(
                    formatter,
                    "restart    {restart_ms:.0} ms from process start to the first job served"
                )?;
            }
        }
        writeln!(
            formatter,
            "throughput {:.0} jobs/s ({} jobs in {:.2} s)",
            self.jobs_per_s, self.jobs, self.elapsed_s
        )?;
        let kind = match self.latency_kind {
            LatencyKind::EnqueueToFetch => "enqueue→fetch",
            LatencyKind::EnqueueReply => "enqueue reply",
        };
        writeln!(formatter, "latency    {kind}: {}", self.latency)?;
        if let Some(enqueue) = &self.enqueue_latency {
            writeln!(formatter, "           enqueue reply: {enqueue}")?;
        }
        if let Some(cpu) = &self.server_cpu {
            let scope = match cpu.scope {
                CpuScope::ServerProcess => "server process",
                CpuScope::ServerAndLoadGenerator => {
                    "this process: embedded server plus load generator"
                }
            };
            write!(
                formatter,
                "cpu        {:.1} µs/job, {:.2} cores busy ({scope})",
                cpu.cpu_us_per_job, cpu.cores_busy
            )?;
            if let Some(generator) = cpu.load_generator_cpu_us_per_job {
                write!(formatter, "; load generator {generator:.1} µs/job")?;
            }
            writeln!(formatter)?;
            if let (Some(settled), Some(settle_s)) = (cpu.cpu_us_per_job_settled, cpu.settle_s) {
                writeln!(
                    formatter,
                    "           {settled:.1} µs/job with the {settle_s:.1} s it worked on \
                     after the phase (checkpoints)"
                )?;
            }
        }
        if let Some(memory) = &self.server_memory {
            writeln!(
                formatter,
                "memory     RSS {:.1} → {:.1} MiB: {:.0} bytes per pending job, {:.0} beyond \
                 the payload",
                memory.rss_before_bytes as f64 / 1048576.0,
                memory.rss_after_bytes as f64 / 1048576.0,
                memory.bytes_per_pending_job,
                memory.bytes_per_pending_job_beyond_payload
            )?;
            if let (Some(rss), Some(per_job)) = (
                memory.rss_at_rest_after_preload_bytes,
                memory.bytes_per_pending_job_at_rest_after_preload_beyond_payload,
            ) {
                writeln!(
                    formatter,
                    "           at rest after the preload: RSS {:.1} MiB, {per_job:.0} bytes per \
                     pending job beyond the payload",
                    rss as f64 / 1048576.0
                )?;
            }
            if let (Some(rss), Some(per_job)) = (
                memory.rss_after_restart_bytes,
                memory.bytes_per_pending_job_after_restart_beyond_payload,
            ) {
                writeln!(
                    formatter,
                    "           after the restart: RSS {:.1} MiB, {per_job:.0} bytes per pending \
                     job beyond the payload",
                    rss as f64 / 1048576.0
                )?;
            }
            if let (Some(rss), Some(per_job)) = (
                memory.rss_at_rest_after_restart_bytes,
                memory.bytes_per_pending_job_at_rest_beyond_payload,
            ) {
                writeln!(
                    formatter,
                    "           at rest after it: RSS {:.1} MiB, {per_job:.0} bytes per pending \
                     job beyond the payload",
                    rss as f64 / 1048576.0
                )?;
            }
        }
        if let Some(counters) = &self.server_counters {
            writeln!(
                formatter,
                "commits    {} syncs ({:.3} per job), {} rounds, {:.1} writes and {:.1} replies \
                 per round",
                counters.syncs,
                counters.syncs_per_job,
                counters.commit_rounds,
                counters.writes_per_round,
                counters.replies_per_round
            )?;
        }
        let check = &self.exactly_once;
        if check.checked {
            writeln!(
                formatter,
                "exactly    {}: {} confirmed, {} acked, {} missing, {} duplicates, {} unexpected",
                if check.holds() { "OK" } else { "FAILED" },
                check.confirmed,
                check.acked_distinct,
                check.missing,
                check.duplicates,
                check.unexpected
            )
        } else {
            writeln!(
                formatter,
                "exactly    not checked (nothing consumed): {} enqueues confirmed",
                check.confirmed
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts_missing_duplicate_and_unexpected_jobs() {
        let check = ExactlyOnce::tally(vec![1, 2, 3, 4], vec![4, 2, 2, 1, 9]);
        assert_eq!(
            (check.missing, check.duplicates, check.unexpected),
            (1, 1, 1)
        );
        assert!(!check.holds());
        assert!(ExactlyOnce::tally(vec![3, 1, 2], vec![2, 3, 1]).holds());
    }
}
