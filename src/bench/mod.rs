//! `taskforge bench`: the end-to-end load generator.
//!
//! It drives TaskForge (an external server, one it spawns as a child process, or one
//! embedded in this process) or a peer (beanstalkd, Redis) with the same workload shape and
//! the same latency measurement, and checks that every job completed exactly once.
//!
//! # Layout
//! - `mod.rs`: [`BenchArgs`] (the flags), [`BenchError`], [`run`] and [`main`].
//! - `workload.rs`: producers and consumers, the `enqueue`, `lifecycle` and `drain` runs.
//! - `target.rs`: the server under test (embedded, spawned or external) and its process
//!   counters (CPU time, RSS).
//! - `metronome.rs`: the pacing thread of a fixed arrival rate (`--rate`).
//! - `driver.rs`: one connection to TaskForge, beanstalkd or Redis with enqueue / fetch /
//!   ack.
//! - `pipeline.rs`, `beanstalk.rs`, `resp.rs`: minimal pipelined clients for the peers.
//! - `report.rs`: [`BenchReport`], its text and JSON forms, the exactly-once tally.
//!
//! # How latency is measured
//! Every payload starts with 16 bytes: the send time in ns since the run's origin (the
//! intended send time when `--rate` is fixed, so a stalled server cannot hide its queueing
//! delay: open loop) and a sequence number unique within the run. The consumer subtracts
//! the first from its clock when the fetch answer arrives (enqueue→fetch latency); the
//! second is what the exactly-once check counts.

mod beanstalk;
mod driver;
mod metronome;
mod pipeline;
mod report;
mod resp;
mod scrape;
mod target;
mod workload;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::process::ExitCode;

pub use driver::Peer;
pub use report::{
    BenchReport, ExactlyOnce, LatencySummary, ServerCounters, ServerCpu, ServerMemory,
};

/// Jobs a run moves unless `--jobs` or `--duration-s` says otherwise.
pub const JOBS_DEFAULT: u64 = 100_000;

/// Payload size unless `--payload-bytes` says otherwise: the peers' reference figures use
/// 128-byte payloads.
pub const PAYLOAD_BYTES_DEFAULT: usize = 128;

/// Smallest payload: the send time (8 bytes) and the sequence number (8 bytes).
pub const PAYLOAD_BYTES_MIN: usize = 16;

/// Largest payload the bench builds; TaskForge's default limit is 256 KiB.
pub const PAYLOAD_BYTES_MAX: usize = 256 * 1024;

/// Most requests in flight per connection; TaskForge's default session limit is 1 024.
pub const IN_FLIGHT_MAX: usize = 1_024;

/// Most producer or consumer connections.
pub const CONNECTIONS_MAX: usize = 256;

/// Largest enqueue, fetch or ack batch: TaskForge's `batch_jobs_max`, `FETCH_JOBS_MAX`
/// and `ACK_BATCH_MAX` defaults are all 1 000.
pub const BATCH_JOBS_MAX: usize = 1_000;

/// Long-poll wait of a consumer's fetch; consumers re-check whether the run is over at
/// least this often.
pub const FETCH_WAIT_MS_DEFAULT: u64 = 1_000;

/// Default idle time of a spawned server before its memory is read at rest: the server's
/// allocator purge delay (10 s) plus a margin.
pub const REST_MS_DEFAULT: u64 = 12_000;

/// The workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Producers only: enqueue throughput and enqueue reply latency.
    Enqueue,
    /// Producers and consumers at the same time: enqueue → fetch → ack.
    Lifecycle,
    /// Preload a backlog of `--jobs` with the producers, then consume it.
    Drain,
}

impl Workload {
    /// The name, as the flag spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Workload::Enqueue => "enqueue",
            Workload::Lifecycle => "lifecycle",
            Workload::Drain => "drain",
        }
    }
}

/// Flags of `taskforge bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Workload to run
    #[arg(long, value_enum, default_value = "lifecycle")]
    pub workload: Workload,
    /// System to drive: TaskForge, or a peer at --addr
    #[arg(long, value_enum, default_value = "taskforge")]
    pub peer: Peer,
    /// Producer connections
    #[arg(long, default_value_t = 4)]
    pub producers: usize,
    /// Consumer connections
    #[arg(long, default_value_t = 4)]
    pub consumers: usize,
    /// Requests in flight per connection (pipelining depth)
    #[arg(long, default_value_t = 1)]
    pub in_flight: usize,
    /// Jobs per enqueue request (ENQUEUE_BATCH when > 1)
    #[arg(long, default_value_t = 1)]
    pub enqueue_batch: usize,
    /// Most jobs per fetch request
    #[arg(long, default_value_t = 1)]
    pub fetch_batch: usize,
    /// Jobs per ack request (ACK_BATCH when > 1)
    #[arg(long, default_value_t = 1)]
    pub ack_batch: usize,
    /// Payload size in bytes (at least 16)
    #[arg(long, default_value_t = PAYLOAD_BYTES_DEFAULT)]
    pub payload_bytes: usize,
    /// Jobs to move (ignored when --duration-s is set, except by drain's preload)
    #[arg(long, default_value_t = JOBS_DEFAULT)]
    pub jobs: u64,
    /// Produce for this many seconds instead of a fixed number of jobs
    #[arg(long)]
    pub duration_s: Option<f64>,
    /// Lifecycle only: preload this many jobs first (ENQUEUE_BATCH of 100), so the
    /// lifecycle runs on a backlog of that size; the rest is drained afterwards, untimed
    #[arg(long, default_value_t = 0)]
    pub backlog: u64,
    /// Fixed arrival rate in jobs/s over all producers (open loop: latency counts from the
    /// intended send time)
    #[arg(long)]
    pub rate: Option<f64>,
    /// Address of a running server (host:port); required for the peers
    #[arg(long, env = "TASKFORGE_ADDR", conflicts_with_all = ["embedded", "spawn"])]
    pub addr: Option<String>,
    /// Root token of the server at --addr
    #[arg(long, env = "TASKFORGE_ROOT_TOKEN", hide_env_values = true)]
    pub root_token: Option<String>,
    /// Pid of the server at --addr, to report its CPU time and memory
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Start a TaskForge server inside this process (its CPU time includes the load
    /// generator's)
    #[arg(long, conflicts_with = "spawn")]
    pub embedded: bool,
    /// Start `taskforge server` as a child process (CPU time and RSS are the server's alone)
    #[arg(long)]
    pub spawn: bool,
    /// Binary to spawn with --spawn (default: this executable)
    #[arg(long, value_name = "FILE")]
    pub server_binary: Option<PathBuf>,
    /// CPUs for the spawned server, as for `taskset -c` (e.g. 0)
    #[arg(long, value_name = "LIST")]
    pub server_cpus: Option<String>,
    /// fsync policy of an embedded or spawned server: always, never or `interval:<ms>`
    #[arg(long, default_value = "always")]
    pub fsync: String,
    /// Data directory of an embedded or spawned server (default: a temporary directory,
    /// removed afterwards)
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// With --workload drain and --spawn: restart the server after the preload and report
    /// the time until it serves the first job
    #[arg(long)]
    pub restart_after_preload: bool,
    /// With --spawn: how long the server gets to accept connections after it starts or
    /// restarts (recovering its data dir), in ms
    #[arg(long, default_value_t = target::SPAWN_READY_TIMEOUT_MS_DEFAULT)]
    pub spawn_ready_timeout_ms: u64,
    /// With --workload drain and --spawn: how long the server idles, after the preload
    /// settled and after a restart, before its memory is read again "at rest", in ms. The
    /// server's allocator returns freed memory to the OS 10 s after it was freed
    /// (`ALLOCATOR_PURGE_DELAY_MS`)
    #[arg(long, default_value_t = REST_MS_DEFAULT)]
    pub rest_ms: u64,
    /// Queue (tube, list) name; default: a fresh name per run
    #[arg(long)]
    pub queue: Option<String>,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
    /// No progress bar
    #[arg(long)]
    pub quiet: bool,
}

/// Why a bench run failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The flags do not describe a possible run.
    #[error("invalid arguments: {0}")]
    Arguments(String),
    /// The server under test could not be started or stopped.
    #[error("server: {0}")]
    Server(String),
    /// A connection could not be opened.
    #[error("cannot connect to {address}: {message}")]
    Connect {
        /// Where.
        address: String,
        /// What went wrong.
        message: String,
    },
    /// A TaskForge request failed.
    #[error("{operation} failed: {source}")]
    Operation {
        /// Which request.
        operation: &'static str,
        /// The client's error.
        source: crate::client::ClientError,
    },
    /// A peer answered something unexpected, or its connection failed.
    #[error("peer: {0}")]
    Peer(String),
    /// The thread pacing a fixed arrival rate could not be started.
    #[error("cannot start the pacing thread: {0}")]
    Metronome(std::io::Error),
    /// A job came back with a payload the bench did not write.
    #[error("a fetched payload of {0} bytes is not a bench payload")]
    ForeignPayload(usize),
    /// A bug in the bench itself.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl BenchError {
    /// The error for a failed TaskForge request.
    pub(crate) fn operation(operation: &'static str, source: crate::client::ClientError) -> Self {
        BenchError::Operation { operation, source }
    }
}

impl BenchArgs {
    /// Checks the flags against each other and the limits.
    fn validate(&self) -> Result<(), BenchError> {
        let fail = |message: String| Err(BenchError::Arguments(message));
        if self.peer != Peer::Taskforge && self.addr.is_none() {
            return fail(format!("--peer {} needs --addr", self.peer.name()));
        }
        if self.peer == Peer::Taskforge && self.addr.is_none() && !self.embedded && !self.spawn {
            return fail("say where the server is: --addr, --embedded or --spawn".into());
        }
        if self.peer == Peer::Taskforge && self.addr.is_some() && self.root_token.is_none() {
            return fail("--addr needs --root-token (or TASKFORGE_ROOT_TOKEN)".into());
        }
        if self.restart_after_preload && !(self.spawn && self.workload == Workload::Drain) {
            return fail("--restart-after-preload needs --spawn and --workload drain".into());
        }
        if self.backlog > 0 && self.workload != Workload::Lifecycle {
            return fail("--backlog applies to --workload lifecycle only".into());
        }
        if self.server_cpus.is_some() && !self.spawn {
            return fail("--server-cpus needs --spawn".into());
        }
        let producers_needed = self.workload != Workload::Drain || self.jobs > 0;
        if producers_needed && !(1..=CONNECTIONS_MAX).contains(&self.producers) {
            return fail(format!("--producers must be 1..={CONNECTIONS_MAX}"));
        }
        if self.workload != Workload::Enqueue && !(1..=CONNECTIONS_MAX).contains(&self.consumers) {
            return fail(format!("--consumers must be 1..={CONNECTIONS_MAX}"));
        }
        if !(1..=IN_FLIGHT_MAX).contains(&self.in_flight) {
            return fail(format!("--in-flight must be 1..={IN_FLIGHT_MAX}"));
        }
        for (name, value) in [
            ("--enqueue-batch", self.enqueue_batch),
            ("--fetch-batch", self.fetch_batch),
            ("--ack-batch", self.ack_batch),
        ] {
            if !(1..=BATCH_JOBS_MAX).contains(&value) {
                return fail(format!("{name} must be 1..={BATCH_JOBS_MAX}"));
            }
        }
        if !(PAYLOAD_BYTES_MIN..=PAYLOAD_BYTES_MAX).contains(&self.payload_bytes) {
            return fail(format!(
                "--payload-bytes must be {PAYLOAD_BYTES_MIN}..={PAYLOAD_BYTES_MAX}"
            ));
        }
        if let Some(duration_s) = self.duration_s {
            if !(duration_s > 0.0 && duration_s.is_finite()) {
                return fail("--duration-s must be a positive number".into());
            }
            if self.workload == Workload::Drain {
                return fail("drain consumes a fixed backlog: use --jobs, not --duration-s".into());
            }
        } else if self.jobs == 0 {
            return fail("--jobs must be at least 1".into());
        }
        if let Some(rate) = self.rate {
            if !(rate > 0.0 && rate.is_finite()) {
                return fail("--rate must be a positive number of jobs/s".into());
            }
        }
        Ok(())
    }
}

/// Runs one bench as `args` describe and returns its report. The report says whether
/// every job completed exactly once; it is not an error when that check fails, so the
/// caller still sees the numbers.
pub async fn run(args: BenchArgs) -> Result<BenchReport, BenchError> {
    args.validate()?;
    workload::run(args).await
}

/// `taskforge bench`: runs, prints the report (text, or JSON with `--json`) and exits
/// non-zero when the run failed or a job did not complete exactly once.
pub fn main(args: BenchArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("taskforge bench: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let json = args.json;
    match runtime.block_on(run(args)) {
        Ok(report) => {
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(error) => {
                        eprintln!("taskforge bench: cannot write JSON: {error}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{report}");
            }
            if report.exactly_once.holds() {
                ExitCode::SUCCESS
            } else {
                eprintln!("taskforge bench: some jobs did not complete exactly once");
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("taskforge bench: {error}");
            ExitCode::FAILURE
        }
    }
}
