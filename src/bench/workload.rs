//! Producers and consumers, and the three workloads built from them.
//!
//! A run is one or two phases. A phase starts `producers × in_flight` producer tasks and
//! `consumers × in_flight` consumer tasks (the tasks of one connection share it, so each
//! connection has up to `in_flight` requests outstanding) and ends when the producers are
//! done and, if there are consumers, every confirmed job has been acknowledged.
//! `enqueue` and `lifecycle` are one phase; `drain` is a producers-only preload followed
//! by a consumers-only phase.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use super::driver::{Connection, Endpoint, FetchedJob, Role};
use super::metronome::{Metronome, Schedule};
use super::report::{
    BenchReport, ExactlyOnce, LatencyKind, LatencySummary, PhaseSamples, PreloadReport,
    ServerCounters, ServerCpu, ServerMemory,
};
use super::target::{ProcessSample, Target};
use super::{BenchArgs, BenchError, Peer, Workload, FETCH_WAIT_MS_DEFAULT, PAYLOAD_BYTES_MIN};

/// Significant figures the latency histograms keep (0.1% resolution).
const HISTOGRAM_SIGNIFICANT_FIGURES: u8 = 3;

/// How often the progress bar is redrawn.
const PROGRESS_TICK_MS: u64 = 200;

/// Fetch and ack batch of the untimed drain after a lifecycle on a backlog: large enough
/// to be quick, below the sizes the protocol's decode limits refuse (see
/// `benches/README.md`).
const CLEANUP_BATCH_JOBS: usize = 32;

/// Enqueue batch of the `--backlog` preload: quick, and small enough for the protocol's
/// decode limits with any payload size (see `benches/README.md`).
const BACKLOG_BATCH_JOBS: usize = 100;

/// Least requests in flight per producer during the `--backlog` preload.
const BACKLOG_IN_FLIGHT: usize = 4;

/// After a preload or the measured phase, the server counts as settled once it used less
/// than this share of one core over [`SETTLE_WINDOW_MS`]: its journal checkpoints of what
/// came before are done.
const SETTLE_BUSY_CORE_SHARE_MAX: f64 = 0.05;

/// The window the server's CPU use is measured over while waiting for it to settle.
const SETTLE_WINDOW_MS: u64 = 500;

/// Longest wait for the server to settle after a preload.
const SETTLE_S_MAX: u64 = 600;

/// Waits until the server is idle (see [`SETTLE_BUSY_CORE_SHARE_MAX`]): after a preload, so
/// the work a preload leaves behind (checkpointing its journal into sled) is not counted in
/// the phase measured next; after the measured phase, to count that phase's own. Returns
/// the time it took, or `None` when the server's process cannot be sampled (a server this
/// bench did not start).
async fn settle(target: &Target) -> Option<f64> {
    let started = Instant::now();
    let mut previous = target.sample()?;
    while started.elapsed() < Duration::from_secs(SETTLE_S_MAX) {
        tokio::time::sleep(Duration::from_millis(SETTLE_WINDOW_MS)).await;
        let current = target.sample()?;
        let busy_us = current.cpu_us.saturating_sub(previous.cpu_us);
        if (busy_us as f64) < SETTLE_BUSY_CORE_SHARE_MAX * SETTLE_WINDOW_MS as f64 * 1e3 {
            break;
        }
        previous = current;
    }
    Some(started.elapsed().as_secs_f64())
}

/// With `--spawn`, lets the server idle `--rest-ms` and samples it: its memory at rest,
/// once its allocator returned what it freed to the OS.
async fn rest_then_sample(args: &BenchArgs, target: &Target) -> Option<ProcessSample> {
    if !args.spawn {
        return None;
    }
    tokio::time::sleep(Duration::from_millis(args.rest_ms)).await;
    target.sample()
}

/// Nanoseconds per second, for rate arithmetic.
const NANOS_PER_S: f64 = 1e9;

/// Runs the workload of `args` against the target it names, then stops the target.
pub(crate) async fn run(args: BenchArgs) -> Result<BenchReport, BenchError> {
    let mut target = Target::start(&args).await?;
    let outcome = run_on(&args, &mut target).await;
    let stopped = target.stop().await;
    let report = outcome?;
    stopped?;
    Ok(report)
}

/// What one phase does.
#[derive(Debug, Clone, Copy)]
struct PhasePlan {
    /// Producer connections (0: none).
    producers: usize,
    /// Consumer connections (0: none).
    consumers: usize,
    /// Jobs to produce, when the phase produces a fixed number.
    jobs: Option<u64>,
    /// How long to produce, when the phase produces for a time.
    duration: Option<Duration>,
    /// Jobs already confirmed in the queue that this phase's consumers must also take.
    backlog_jobs: u64,
    /// First sequence number this phase hands out.
    sequence_first: u64,
}

/// What one phase measured.
struct PhaseOutcome {
    /// From the phase's start to its last completion (confirmed enqueue for producer-only
    /// phases, acknowledgement otherwise).
    elapsed: Duration,
    /// Enqueue reply latency, µs.
    enqueue_latency: Histogram<u64>,
    /// Enqueue → fetch latency, µs.
    fetch_latency: Histogram<u64>,
    /// Sequence numbers whose enqueue was confirmed.
    produced: Vec<u64>,
    /// Sequence numbers whose acknowledgement was confirmed.
    acked: Vec<u64>,
}

impl PhaseOutcome {
    /// Jobs the phase completed: acknowledged, or enqueued when nobody consumed.
    fn completed_jobs(&self, consumed: bool) -> u64 {
        if consumed {
            self.acked.len() as u64
        } else {
            self.produced.len() as u64
        }
    }
}

/// A phase's state, shared by its tasks.
struct Shared {
    /// The time origin every payload timestamp counts from.
    origin: Instant,
    /// When the phase started, ns since `origin`.
    phase_start_ns: u64,
    /// The plan.
    plan: PhasePlan,
    /// Fixed arrival rate, jobs/s.
    rate: Option<f64>,
    /// Paces the producers when the rate is fixed.
    metronome: Option<Metronome>,
    /// Next sequence number to hand out.
    sequence_next: AtomicU64,
    /// Jobs per enqueue request.
    enqueue_batch: usize,
    /// Most jobs per fetch.
    fetch_batch: u32,
    /// Jobs per ack request.
    ack_batch: usize,
    /// Payload size.
    payload_bytes: usize,
    /// Whether peers fetch blocking (one request in flight per connection).
    peer_fetch_blocks: bool,
    /// Jobs confirmed enqueued (including the backlog).
    confirmed: AtomicU64,
    /// Jobs acknowledged.
    acked: AtomicU64,
    /// Producer tasks still running.
    producers_live: AtomicUsize,
    /// Set when the last producer task ended.
    producers_done: AtomicBool,
    /// Latest completion, ns since `origin`.
    last_completion_ns: AtomicU64,
    /// Cancelled when the phase is over or failed: no task starts new work, but a consumer
    /// finishes the fetch it has in flight and acknowledges what it got, so no job is left
    /// leased (with a backlog, others are still queued when the phase ends).
    stop: CancellationToken,
    /// Cancelled when the phase failed: tasks drop what they are doing.
    abort: CancellationToken,
    /// The first error, which fails the run.
    error: Mutex<Option<BenchError>>,
}

impl Shared {
    /// Now, in ns since the origin.
    fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Hands out up to `batch` sequence numbers, or `None` when the phase has produced
    /// enough (job count reached or produce time over).
    fn claim(&self, batch: usize) -> Option<(u64, u64)> {
        let end = self.plan.jobs.map(|jobs| self.plan.sequence_first + jobs);
        let deadline_ns = self.plan.duration.map(|duration| {
            self.phase_start_ns + u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
        });
        let mut claimed = None;
        let result = self
            .sequence_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |first| {
                let mut count = batch as u64;
                if let Some(end) = end {
                    if first >= end {
                        return None;
                    }
                    count = count.min(end - first);
                }
                if let Some(deadline_ns) = deadline_ns {
                    let send_ns = match self.rate {
                        Some(_) => self.intended_ns(first),
                        None => self.now_ns(),
                    };
                    if send_ns >= deadline_ns {
                        return None;
                    }
                }
                claimed = Some((first, count));
                Some(first + count)
            });
        result.ok().and(claimed)
    }

    /// Intended send time of sequence `sequence` at the fixed rate, ns since the origin.
    fn intended_ns(&self, sequence: u64) -> u64 {
        let rate = self.rate.unwrap_or(f64::INFINITY);
        let offset = (sequence - self.plan.sequence_first) as f64 * NANOS_PER_S / rate;
        self.phase_start_ns + offset as u64
    }

    /// Records the first error and stops the phase.
    fn fail(&self, error: BenchError) {
        let mut slot = self.error.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(error);
        }
        self.abort.cancel();
        self.stop.cancel();
    }

    /// Notes a completion at `now_ns`.
    fn completed_at(&self, now_ns: u64) {
        self.last_completion_ns.fetch_max(now_ns, Ordering::SeqCst);
    }

    /// Stops the phase when the producers are done and every confirmed job was acked.
    fn stop_if_finished(&self) {
        if !self.producers_done.load(Ordering::SeqCst) {
            return;
        }
        if self.plan.consumers == 0
            || self.acked.load(Ordering::SeqCst) >= self.confirmed.load(Ordering::SeqCst)
        {
            self.stop.cancel();
        }
    }

    /// What the progress bar shows.
    fn progress_jobs(&self) -> u64 {
        if self.plan.consumers == 0 {
            self.confirmed.load(Ordering::Relaxed) - self.plan.backlog_jobs
        } else {
            self.acked.load(Ordering::Relaxed)
        }
    }
}

/// A new latency histogram (µs, auto-resizing so no sample is ever dropped).
fn histogram() -> Histogram<u64> {
    let mut histogram = Histogram::new(HISTOGRAM_SIGNIFICANT_FIGURES)
        .expect("HdrHistogram accepts up to 5 significant figures");
    histogram.auto(true);
    histogram
}

/// Records `micros`, growing the histogram as needed (`saturating_record` would clamp to
/// its current range instead of growing it).
fn record(histogram: &mut Histogram<u64>, micros: u64) {
    if histogram.record(micros).is_err() {
        histogram.saturating_record(micros);
    }
}

/// A bench payload: send time (ns since the origin, LE), sequence number (LE), zeros.
fn payload(send_ns: u64, sequence: u64, payload_bytes: usize) -> Vec<u8> {
    let mut payload = vec![0; payload_bytes.max(PAYLOAD_BYTES_MIN)];
    payload[..8].copy_from_slice(&send_ns.to_le_bytes());
    payload[8..16].copy_from_slice(&sequence.to_le_bytes());
    payload
}

/// The send time and sequence number of a bench payload.
fn read_payload(payload: &[u8]) -> Result<(u64, u64), BenchError> {
    let (Some(send), Some(sequence)) = (payload.get(..8), payload.get(8..16)) else {
        return Err(BenchError::ForeignPayload(payload.len()));
    };
    let word = |bytes: &[u8]| -> Result<u64, BenchError> {
        let array: [u8; 8] = bytes
            .try_into()
            .map_err(|_| BenchError::ForeignPayload(payload.len()))?;
        Ok(u64::from_le_bytes(array))
    };
    Ok((word(send)?, word(sequence)?))
}

/// Microseconds between two ns timestamps, at least 0.
fn micros_between(earlier_ns: u64, later_ns: u64) -> u64 {
    later_ns.saturating_sub(earlier_ns) / 1_000
}

/// What a producer task hands back.
struct ProducerResult {
    /// Enqueue reply latency, µs.
    latency: Histogram<u64>,
    /// Confirmed sequence numbers.
    produced: Vec<u64>,
}

/// One producer task: claims sequence numbers and enqueues them until the phase has
/// produced enough.
async fn produce(shared: Arc<Shared>, connection: Connection) -> ProducerResult {
    let mut result = ProducerResult {
        latency: histogram(),
        produced: Vec::new(),
    };
    loop {
        if let Some(metronome) = &shared.metronome {
            tokio::select! {
                _ = shared.abort.cancelled() => break,
                _ = metronome.tick() => {}
            }
        }
        let Some((first, count)) = shared.claim(shared.enqueue_batch) else {
            break;
        };
        let send_ns = match shared.rate {
            Some(_) => shared.intended_ns(first),
            None => shared.now_ns(),
        };
        let payloads = (first..first + count)
            .map(|sequence| payload(send_ns, sequence, shared.payload_bytes))
            .collect();
        let enqueued = tokio::select! {
            _ = shared.abort.cancelled() => break,
            enqueued = connection.enqueue(payloads) => enqueued,
        };
        if let Err(error) = enqueued {
            shared.fail(error);
            break;
        }
        let now_ns = shared.now_ns();
        record(&mut result.latency, micros_between(send_ns, now_ns));
        result.produced.extend(first..first + count);
        shared.confirmed.fetch_add(count, Ordering::SeqCst);
        if shared.plan.consumers == 0 {
            shared.completed_at(now_ns);
        }
    }
    if shared.producers_live.fetch_sub(1, Ordering::SeqCst) == 1 {
        shared.producers_done.store(true, Ordering::SeqCst);
        shared.stop_if_finished();
    }
    result
}

/// What a consumer task hands back.
struct ConsumerResult {
    /// Enqueue → fetch latency, µs.
    latency: Histogram<u64>,
    /// Acknowledged sequence numbers.
    acked: Vec<u64>,
}

/// One consumer task: fetches, records latency, acknowledges, until the phase is over.
async fn consume(shared: Arc<Shared>, connection: Connection) -> ConsumerResult {
    let mut result = ConsumerResult {
        latency: histogram(),
        acked: Vec::new(),
    };
    let wait = Duration::from_millis(FETCH_WAIT_MS_DEFAULT);
    while !shared.stop.is_cancelled() {
        let fetched = tokio::select! {
            _ = shared.abort.cancelled() => break,
            fetched = connection.fetch(shared.fetch_batch, wait, shared.peer_fetch_blocks) => fetched,
        };
        let jobs = match fetched {
            Ok(jobs) => jobs,
            Err(error) => {
                shared.fail(error);
                break;
            }
        };
        let now_ns = shared.now_ns();
        if let Err(error) = acknowledge(&shared, &connection, jobs, now_ns, &mut result).await {
            shared.fail(error);
            break;
        }
    }
    result
}

/// Records the latency of `jobs` fetched at `fetched_ns` and acknowledges them in chunks
/// of the ack batch size.
async fn acknowledge(
    shared: &Shared,
    connection: &Connection,
    jobs: Vec<FetchedJob>,
    fetched_ns: u64,
    result: &mut ConsumerResult,
) -> Result<(), BenchError> {
    let mut pending = Vec::with_capacity(jobs.len());
    for job in jobs {
        let (send_ns, sequence) = read_payload(&job.payload)?;
        record(&mut result.latency, micros_between(send_ns, fetched_ns));
        pending.push((sequence, job.handle));
    }
    for chunk in pending.chunks(shared.ack_batch) {
        let handles = chunk.iter().map(|(_, handle)| handle.clone()).collect();
        tokio::select! {
            _ = shared.abort.cancelled() => return Ok(()),
            acked = connection.ack(handles) => acked?,
        }
        result
            .acked
            .extend(chunk.iter().map(|(sequence, _)| *sequence));
        shared.acked.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        shared.completed_at(shared.now_ns());
        shared.stop_if_finished();
    }
    Ok(())
}

/// The pacing thread of a phase with a fixed arrival rate: one request every
/// `enqueue_batch / rate` seconds from the phase's start, as many as the phase's job count
/// or duration allows. `None` without a rate or producers.
fn pace(
    args: &BenchArgs,
    plan: &PhasePlan,
    origin: Instant,
    phase_start_ns: u64,
    producer_tasks: usize,
    stop: &CancellationToken,
) -> Result<Option<Metronome>, BenchError> {
    let Some(rate) = args.rate.filter(|_| producer_tasks > 0) else {
        return Ok(None);
    };
    let interval_ns = args.enqueue_batch as f64 * NANOS_PER_S / rate;
    let by_jobs = plan
        .jobs
        .map(|jobs| jobs.div_ceil(args.enqueue_batch as u64));
    let by_time = plan
        .duration
        .map(|duration| (duration.as_nanos() as f64 / interval_ns).ceil() as u64);
    let requests = match (by_jobs, by_time) {
        (Some(jobs), Some(time)) => Some(jobs.min(time)),
        (jobs, time) => jobs.or(time),
    };
    let schedule = Schedule {
        origin,
        start_ns: phase_start_ns,
        interval_ns,
        requests,
        producer_tasks,
    };
    Metronome::start(schedule, stop.clone())
        .map(Some)
        .map_err(BenchError::Metronome)
}

/// Runs one phase to its end.
async fn run_phase(
    args: &BenchArgs,
    endpoint: &Endpoint,
    origin: Instant,
    plan: PhasePlan,
    label: &str,
) -> Result<PhaseOutcome, BenchError> {
    let mut producer_connections = Vec::with_capacity(plan.producers);
    for _ in 0..plan.producers {
        producer_connections.push(Connection::open(endpoint, Role::Producer).await?);
    }
    let mut consumer_connections = Vec::with_capacity(plan.consumers);
    for index in 0..plan.consumers {
        consumer_connections.push(Connection::open(endpoint, Role::Consumer { index }).await?);
    }
    let producer_tasks = plan.producers * args.in_flight;
    let phase_start_ns = u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let stop = CancellationToken::new();
    let metronome = pace(args, &plan, origin, phase_start_ns, producer_tasks, &stop)?;
    let shared = Arc::new(Shared {
        origin,
        phase_start_ns,
        plan,
        rate: args.rate,
        metronome,
        sequence_next: AtomicU64::new(plan.sequence_first),
        enqueue_batch: args.enqueue_batch,
        fetch_batch: u32::try_from(args.fetch_batch).unwrap_or(u32::MAX),
        ack_batch: args.ack_batch,
        payload_bytes: args.payload_bytes,
        peer_fetch_blocks: args.in_flight == 1,
        confirmed: AtomicU64::new(plan.backlog_jobs),
        acked: AtomicU64::new(0),
        producers_live: AtomicUsize::new(producer_tasks),
        producers_done: AtomicBool::new(producer_tasks == 0),
        last_completion_ns: AtomicU64::new(phase_start_ns),
        stop,
        abort: CancellationToken::new(),
        error: Mutex::new(None),
    });
    let progress = start_progress(args, &shared, label);
    let mut producers = Vec::with_capacity(producer_tasks);
    for connection in &producer_connections {
        for _ in 0..args.in_flight {
            producers.push(tokio::spawn(produce(
                Arc::clone(&shared),
                connection.clone(),
            )));
        }
    }
    let mut consumers = Vec::with_capacity(plan.consumers * args.in_flight);
    for connection in &consumer_connections {
        for _ in 0..args.in_flight {
            consumers.push(tokio::spawn(consume(
                Arc::clone(&shared),
                connection.clone(),
            )));
        }
    }
    // A phase with nothing to produce and nothing to consume is over at once.
    shared.stop_if_finished();
    let mut outcome = PhaseOutcome {
        elapsed: Duration::ZERO,
        enqueue_latency: histogram(),
        fetch_latency: histogram(),
        produced: Vec::new(),
        acked: Vec::new(),
    };
    for task in producers {
        let result = task
            .await
            .map_err(|_| BenchError::Internal("a producer task panicked"))?;
        merge(&mut outcome.enqueue_latency, &result.latency)?;
        outcome.produced.extend(result.produced);
    }
    for task in consumers {
        let result = task
            .await
            .map_err(|_| BenchError::Internal("a consumer task panicked"))?;
        merge(&mut outcome.fetch_latency, &result.latency)?;
        outcome.acked.extend(result.acked);
    }
    progress.finish_and_clear();
    let error = shared
        .error
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(error) = error {
        return Err(error);
    }
    let last_ns = shared.last_completion_ns.load(Ordering::SeqCst);
    outcome.elapsed = Duration::from_nanos(last_ns.saturating_sub(phase_start_ns));
    Ok(outcome)
}

/// Adds `part` into `total`.
fn merge(total: &mut Histogram<u64>, part: &Histogram<u64>) -> Result<(), BenchError> {
    total
        .add(part)
        .map_err(|_| BenchError::Internal("latency histograms do not merge"))
}

/// A progress bar on stderr, updated by a ticker task until the phase stops. Hidden with
/// `--quiet` or `--json`, and by indicatif itself when stderr is not a terminal.
fn start_progress(args: &BenchArgs, shared: &Arc<Shared>, label: &str) -> ProgressBar {
    if args.quiet || args.json {
        return ProgressBar::hidden();
    }
    let total_jobs = shared
        .plan
        .jobs
        .map(|jobs| jobs.max(shared.plan.backlog_jobs))
        .unwrap_or(0);
    let (bar, template) = if total_jobs > 0 {
        (
            ProgressBar::new(total_jobs),
            "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} jobs ({per_sec})",
        )
    } else {
        (
            ProgressBar::no_length(),
            "{prefix} [{elapsed_precise}] {spinner} {pos} jobs ({per_sec})",
        )
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.set_prefix(label.to_string());
    let ticker_bar = bar.clone();
    let ticker_shared = Arc::clone(shared);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_millis(PROGRESS_TICK_MS));
        loop {
            tokio::select! {
                _ = ticker_shared.stop.cancelled() => break,
                _ = ticks.tick() => ticker_bar.set_position(ticker_shared.progress_jobs()),
            }
        }
    });
    bar
}

/// The default queue name: fresh per run, so a reused server's leftovers never mix in.
fn fresh_queue_name() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_millis())
        .unwrap_or(0);
    format!("bench-{}-{millis}", std::process::id())
}

/// Process and broker counters around the measured phase.
struct Counters {
    /// Server process sample.
    process: Option<ProcessSample>,
    /// This process's sample (the load generator), when the server is another process.
    load_generator: Option<ProcessSample>,
    /// The broker's commit counters.
    commits: Option<super::scrape::CommitCounters>,
}

impl Counters {
    async fn take(target: &Target) -> Counters {
        let separate = !matches!(target, Target::Embedded { .. });
        Counters {
            process: target.sample(),
            load_generator: separate
                .then(|| super::target::sample_process(None))
                .flatten(),
            commits: target.commit_counters().await,
        }
    }
}

/// Runs the workload against an already started target.
async fn run_on(args: &BenchArgs, target: &mut Target) -> Result<BenchReport, BenchError> {
    let root_token = args
        .root_token
        .clone()
        .or_else(|| target.root_token().map(str::to_string))
        .unwrap_or_default();
    let endpoint = Endpoint {
        peer: args.peer,
        address: target.address(),
        root_token,
        queue: args.queue.clone().unwrap_or_else(fresh_queue_name),
    };
    Connection::open(&endpoint, Role::Producer)
        .await?
        .create_queue()
        .await?;
    let origin = Instant::now();
    let duration = args.duration_s.map(Duration::from_secs_f64);
    let jobs = if duration.is_some() {
        None
    } else {
        Some(args.jobs)
    };
    let mut produced = Vec::new();
    let mut acked = Vec::new();
    let mut preload = None;
    let mut memory = None;
    let (plan, label) = match args.workload {
        Workload::Enqueue => (
            PhasePlan {
                producers: args.producers,
                consumers: 0,
                jobs,
                duration,
                backlog_jobs: 0,
                sequence_first: 0,
            },
            "enqueue",
        ),
        Workload::Lifecycle => {
            if args.backlog > 0 {
                let mut quick = args.clone();
                quick.enqueue_batch = BACKLOG_BATCH_JOBS;
                quick.in_flight = quick.in_flight.max(BACKLOG_IN_FLIGHT);
                quick.rate = None;
                let loaded = run_phase(
                    &quick,
                    &endpoint,
                    origin,
                    PhasePlan {
                        producers: args.producers,
                        consumers: 0,
                        jobs: Some(args.backlog),
                        duration: None,
                        backlog_jobs: 0,
                        sequence_first: 0,
                    },
                    "backlog",
                )
                .await?;
                let loaded_jobs = loaded.produced.len() as u64;
                preload = Some(PreloadReport {
                    jobs: loaded_jobs,
                    elapsed_s: loaded.elapsed.as_secs_f64(),
                    jobs_per_s: rate(loaded_jobs, loaded.elapsed),
                    settle_s: settle(target).await,
                    restart_to_first_job_ms: None,
                });
                produced.extend(loaded.produced);
            }
            // With a backlog the phase ends once it acked as many jobs as it produced, so
            // the backlog keeps its size; the rest is drained, untimed, further down.
            (
                PhasePlan {
                    producers: args.producers,
                    consumers: args.consumers,
                    jobs,
                    duration,
                    backlog_jobs: 0,
                    sequence_first: args.backlog,
                },
                "lifecycle",
            )
        }
        Workload::Drain => {
            let before = target.sample();
            let loaded = run_phase(
                args,
                &endpoint,
                origin,
                PhasePlan {
                    producers: args.producers,
                    consumers: 0,
                    jobs: Some(args.jobs),
                    duration: None,
                    backlog_jobs: 0,
                    sequence_first: 0,
                },
                "preload",
            )
            .await?;
            let after = target.sample();
            let loaded_jobs = loaded.produced.len() as u64;
            let settle_s = settle(target).await;
            let resting = rest_then_sample(args, target).await;
            memory =
                ServerMemory::from_samples(before, after, resting, loaded_jobs, args.payload_bytes);
            let mut backlog_jobs = loaded_jobs;
            let mut restart_to_first_job_ms = None;
            if args.restart_after_preload {
                let (serving, first_payload) =
                    target.restart_until_serving(&endpoint.queue).await?;
                let (_, sequence) = read_payload(&first_payload)?;
                acked.push(sequence);
                backlog_jobs -= 1;
                let serving_sample = target.sample();
                let resting_sample = rest_then_sample(args, target).await;
                memory = memory.map(|memory| {
                    memory.with_restart(
                        serving_sample,
                        resting_sample,
                        backlog_jobs,
                        args.payload_bytes,
                    )
                });
                restart_to_first_job_ms = Some(serving.as_secs_f64() * 1e3);
            }
            preload = Some(PreloadReport {
                jobs: loaded_jobs,
                elapsed_s: loaded.elapsed.as_secs_f64(),
                jobs_per_s: rate(loaded_jobs, loaded.elapsed),
                settle_s,
                restart_to_first_job_ms,
            });
            produced.extend(loaded.produced);
            (
                PhasePlan {
                    producers: 0,
                    consumers: args.consumers,
                    jobs: Some(backlog_jobs),
                    duration: None,
                    backlog_jobs,
                    sequence_first: args.jobs,
                },
                "drain",
            )
        }
    };
    let consumed = plan.consumers > 0;
    let before = Counters::take(target).await;
    let outcome = run_phase(args, &endpoint, origin, plan, label).await?;
    let after = Counters::take(target).await;
    let settled = match settle(target).await {
        Some(settle_s) => target.sample().map(|sample| (sample, settle_s)),
        None => None,
    };
    let completed_jobs = outcome.completed_jobs(consumed);
    let latency_kind = if consumed {
        LatencyKind::EnqueueToFetch
    } else {
        LatencyKind::EnqueueReply
    };
    let latency = if consumed {
        LatencySummary::from_histogram(&outcome.fetch_latency)
    } else {
        LatencySummary::from_histogram(&outcome.enqueue_latency)
    };
    let enqueue_latency = (consumed && plan.producers > 0)
        .then(|| LatencySummary::from_histogram(&outcome.enqueue_latency));
    produced.extend(outcome.produced);
    acked.extend(outcome.acked);
    if args.workload == Workload::Lifecycle && args.backlog > 0 {
        let left_jobs = (produced.len() as u64).saturating_sub(acked.len() as u64);
        let rest = drain_untimed(args, &endpoint, origin, left_jobs).await?;
        acked.extend(rest.acked);
    }
    let exactly_once = if consumed {
        ExactlyOnce::tally(produced, acked)
    } else {
        ExactlyOnce::unchecked(produced.len() as u64)
    };
    let samples = PhaseSamples {
        before: before.process,
        after: after.process,
        generator_before: before.load_generator,
        generator_after: after.load_generator,
        settled,
    };
    let server_cpu =
        ServerCpu::from_samples(target.cpu_scope(), samples, completed_jobs, outcome.elapsed);
    let server_counters = match (before.commits, after.commits) {
        (Some(before), Some(after)) => {
            Some(ServerCounters::between(&before, &after, completed_jobs))
        }
        _ => None,
    };
    Ok(BenchReport {
        workload: args.workload,
        peer: args.peer,
        target: match target {
            Target::Embedded { .. } => "embedded".into(),
            Target::Spawned { .. } => "spawned".into(),
            Target::External { address, .. } => format!("external {address}"),
        },
        fsync: (args.peer == Peer::Taskforge && args.addr.is_none()).then(|| args.fsync.clone()),
        producers: if args.workload == Workload::Drain && !consumed {
            0
        } else {
            args.producers
        },
        consumers: if consumed { args.consumers } else { 0 },
        in_flight: args.in_flight,
        enqueue_batch: args.enqueue_batch,
        fetch_batch: args.fetch_batch,
        ack_batch: args.ack_batch,
        payload_bytes: args.payload_bytes,
        rate_jobs_per_s: args.rate,
        jobs: completed_jobs,
        elapsed_s: outcome.elapsed.as_secs_f64(),
        jobs_per_s: rate(completed_jobs, outcome.elapsed),
        latency_kind,
        latency,
        enqueue_latency,
        preload,
        server_cpu,
        server_memory: memory,
        server_counters,
        exactly_once,
    })
}

/// Consumes the `left_jobs` still queued after a lifecycle on a backlog, so the
/// exactly-once check covers every job. Not timed; uses batches of at least
/// [`CLEANUP_BATCH_JOBS`] to be quick.
async fn drain_untimed(
    args: &BenchArgs,
    endpoint: &Endpoint,
    origin: Instant,
    left_jobs: u64,
) -> Result<PhaseOutcome, BenchError> {
    let mut quick = args.clone();
    quick.fetch_batch = quick.fetch_batch.max(CLEANUP_BATCH_JOBS);
    quick.ack_batch = quick.ack_batch.max(CLEANUP_BATCH_JOBS);
    let plan = PhasePlan {
        producers: 0,
        consumers: args.consumers,
        jobs: Some(left_jobs),
        duration: None,
        backlog_jobs: left_jobs,
        sequence_first: 0,
    };
    run_phase(&quick, endpoint, origin, plan, "cleanup").await
}

/// Jobs per second, 0 for an empty interval.
fn rate(jobs: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        jobs as f64 / seconds
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_carry_time_and_sequence() {
        let bytes = payload(123_456_789, 42, 128);
        assert_eq!(bytes.len(), 128);
        assert_eq!(read_payload(&bytes).ok(), Some((123_456_789, 42)));
        assert!(read_payload(&bytes[..15]).is_err());
    }

    #[test]
    fn histograms_grow_to_fit_samples() {
        let mut latency = histogram();
        for micros in [5_000, 5_000, 70_000_000] {
            record(&mut latency, micros);
        }
        let mut total = histogram();
        merge(&mut total, &latency).expect("merge");
        let summary = LatencySummary::from_histogram(&total);
        assert_eq!(summary.samples, 3);
        assert!((4_990..=5_010).contains(&summary.p50_us), "{summary:?}");
        assert!(summary.max_us >= 69_900_000, "{summary:?}");
    }
}
