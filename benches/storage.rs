//! The store of record on the real sled store (`SledStorage` in a temporary directory on
//! the machine's disk). Run: `cargo bench --bench storage` (add `-- --quick` for a quick
//! look; `-- group_commit` or `-- recovery` for one group).
//!
//! - `group_commit/<store>_fsync_never/<n>` and `group_commit/<store>_fsync_always/<n>`:
//!   one commit round of `n` job-like writes (25-byte job keys in time order, 150-byte
//!   values) — `apply` alone, what a round costs with `fsync = "never"`, and `apply` then
//!   `sync`, what it costs with `fsync = "always"`. `<store>` is `sled` (`SledStorage`
//!   directly, sled's background flush on) or `journal` (`JournaledStorage`, the server's
//!   store: the commit journal in front of sled, its checkpointer running in the
//!   background as in the server). Throughput is in writes, so criterion prints writes/s.
//!   Building the batch is not timed. Each case writes to a fresh store.
//! - `recovery/rebuild/<n>`: start-up recovery of `n` pending jobs:
//!   [`recovery::rebuild`], the function `Broker::open` runs, on a store built once per size
//!   through the real core and closed; each iteration opens it again (not timed), so sled's
//!   own cache is cold, though the operating system's page cache may still hold the files.
//!   Throughput is in jobs restored.
//! - `recovery_open_sled/<n>`: `SledStorage::open` of that store, the step before the
//!   rebuild at start-up (sled reads its log; the checkpoint is written and fsynced).

use std::cell::OnceCell;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use taskforge::broker::core::{Core, Settings};
use taskforge::broker::recovery;
use taskforge::storage::{
    keys, JournalOptions, JournaledStorage, SledOptions, SledStorage, Storage, Write,
};
use taskforge_protocol::{JobId, NewJob, QueueSettings};
use tempfile::TempDir;

const PROJECT: u64 = 1;
const NOW_MS: u64 = 1_700_000_000_000;
const RNG_SEED: u64 = 1;
/// Writes per commit round in the group-commit cases.
const GROUP_COMMIT_BATCH_WRITES: [usize; 4] = [1, 10, 100, 1_000];
/// Size of each value in the group-commit cases, about a stored job record.
const GROUP_COMMIT_VALUE_BYTES: usize = 150;
/// Pending jobs in the store that recovery rebuilds from.
const RECOVERY_BACKLOG_JOBS: [usize; 3] = [1_000, 10_000, 100_000];
/// Jobs per enqueue (and per applied batch) while building a recovery store.
const ENQUEUE_BATCH_JOBS: usize = 1_000;
/// Payload of each job in a recovery store.
const PAYLOAD_BYTES: usize = 128;
/// Criterion samples per case, few: a sync can cost milliseconds and a rebuild of the
/// largest backlog takes a large fraction of a second.
const SAMPLE_SIZE: usize = 10;
const WARM_UP_MS: u64 = 500;
/// How long opening the journaled store waits for a lock left by the previous case.
const LOCK_WAIT_MS: u64 = 5_000;
const MEASUREMENT_MS: u64 = 2_000;

fn open_store(dir: &Path) -> SledStorage {
    SledStorage::open(dir, SledOptions::default()).expect("open the sled store")
}

/// `batch_writes` puts of job-like records, with keys after every earlier one (as job ids
/// are UUIDs v7, which lead with their creation time).
fn job_like_writes(sequence: &mut u64, batch_writes: usize) -> Vec<Write> {
    (0..batch_writes)
        .map(|_| {
            *sequence += 1;
            let mut job_id = [0u8; 16];
            job_id[..8].copy_from_slice(&sequence.to_be_bytes());
            let mut value = vec![0xA5; GROUP_COMMIT_VALUE_BYTES];
            value[..8].copy_from_slice(&sequence.to_be_bytes());
            Write::Put(keys::job(PROJECT, JobId(job_id)), value)
        })
        .collect()
}

/// Where a commit round goes: sled directly, or the commit journal in front of it (what
/// the server runs).
enum Store {
    Sled(SledStorage),
    Journal(JournaledStorage),
}

impl Store {
    fn open(kind: &str, dir: &Path) -> Store {
        match kind {
            "sled" => Store::Sled(open_store(dir)),
            _ => Store::Journal(
                JournaledStorage::open(
                    dir,
                    SledOptions::default(),
                    JournalOptions::default(),
                    LOCK_WAIT_MS,
                )
                .expect("open the journaled store"),
            ),
        }
    }

    fn storage(&self) -> &dyn Storage {
        match self {
            Store::Sled(store) => store,
            Store::Journal(store) => store,
        }
    }

    fn close(self) {
        match self {
            Store::Sled(store) => store.flush_and_close().expect("close the sled store"),
            // Dropping it checkpoints the journal into sled.
            Store::Journal(store) => drop(store),
        }
    }
}

fn group_commit(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("group_commit");
    group.sampling_mode(SamplingMode::Flat);
    for kind in ["sled", "journal"] {
        for (policy, syncs) in [("fsync_never", false), ("fsync_always", true)] {
            for batch_writes in GROUP_COMMIT_BATCH_WRITES {
                let dir = tempfile::tempdir().expect("create a temporary directory");
                // Opened on first use, so that cases filtered out open no store.
                let store = OnceCell::new();
                let mut sequence = 0u64;
                group.throughput(Throughput::Elements(batch_writes as u64));
                let id = BenchmarkId::new(format!("{kind}_{policy}"), batch_writes);
                group.bench_function(id, |bencher| {
                    let storage = store
                        .get_or_init(|| Store::open(kind, dir.path()))
                        .storage();
                    bencher.iter_batched(
                        || job_like_writes(&mut sequence, batch_writes),
                        |writes| {
                            storage.apply(&writes).expect("apply");
                            if syncs {
                                storage.sync().expect("sync");
                            }
                        },
                        BatchSize::SmallInput,
                    )
                });
                if let Some(store) = store.into_inner() {
                    store.close();
                }
            }
        }
    }
    group.finish();
}

/// Creates a store in `dir` holding `jobs` pending jobs, written by the real core.
fn build_backlog(dir: &Path, jobs: usize) {
    let storage = open_store(dir);
    let mut core = Core::new(RNG_SEED, Settings::default());
    core.queue_create(PROJECT, "q", &QueueSettings::default(), NOW_MS)
        .expect("create the queue");
    let job = NewJob {
        queue: "q".into(),
        payload: vec![0u8; PAYLOAD_BYTES],
        ..NewJob::default()
    };
    let mut left = jobs;
    while left > 0 {
        let batch = left.min(ENQUEUE_BATCH_JOBS);
        core.enqueue(
            PROJECT,
            vec![job.clone(); batch],
            &Default::default(),
            NOW_MS,
        )
        .expect("enqueue");
        let (writes, _) = core.take_writes();
        storage.apply(&writes).expect("apply the enqueue");
        left -= batch;
    }
    storage.sync().expect("sync the backlog");
    storage.flush_and_close().expect("close the sled store");
}

/// A store per backlog size, built on first use so that cases filtered out cost nothing.
struct Backlog {
    jobs: usize,
    dir: OnceCell<TempDir>,
}

impl Backlog {
    fn dir(&self) -> &Path {
        self.dir
            .get_or_init(|| {
                let dir = tempfile::tempdir().expect("create a temporary directory");
                build_backlog(dir.path(), self.jobs);
                dir
            })
            .path()
    }
}

fn recovery(criterion: &mut Criterion) {
    let backlogs: Vec<Backlog> = RECOVERY_BACKLOG_JOBS
        .into_iter()
        .map(|jobs| Backlog {
            jobs,
            dir: OnceCell::new(),
        })
        .collect();

    let mut group = criterion.benchmark_group("recovery");
    group.sampling_mode(SamplingMode::Flat);
    for backlog in &backlogs {
        group.throughput(Throughput::Elements(backlog.jobs as u64));
        group.bench_function(BenchmarkId::new("rebuild", backlog.jobs), |bencher| {
            let dir = backlog.dir();
            bencher.iter_custom(|iterations| {
                let mut measured = Duration::ZERO;
                for _ in 0..iterations {
                    let storage = open_store(dir);
                    let started = Instant::now();
                    let (core, report) =
                        recovery::rebuild(&storage, RNG_SEED, Settings::default(), NOW_MS)
                            .expect("rebuild");
                    measured += started.elapsed();
                    assert_eq!(report.live_jobs, backlog.jobs as u64, "every job restored");
                    drop(core);
                    storage.flush_and_close().expect("close the sled store");
                }
                measured
            })
        });
    }
    group.finish();

    // Its own group: opening costs mostly fixed work, so a throughput in jobs would mislead.
    let mut group = criterion.benchmark_group("recovery_open_sled");
    group.sampling_mode(SamplingMode::Flat);
    for backlog in &backlogs {
        group.bench_function(BenchmarkId::from_parameter(backlog.jobs), |bencher| {
            let dir = backlog.dir();
            bencher.iter_custom(|iterations| {
                let mut measured = Duration::ZERO;
                for _ in 0..iterations {
                    let started = Instant::now();
                    let storage = open_store(dir);
                    measured += started.elapsed();
                    storage.flush_and_close().expect("close the sled store");
                }
                measured
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(SAMPLE_SIZE)
        .warm_up_time(Duration::from_millis(WARM_UP_MS))
        .measurement_time(Duration::from_millis(MEASUREMENT_MS));
    targets = group_commit, recovery
}
criterion_main!(benches);
