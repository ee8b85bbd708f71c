//! The durability proof: the real `taskforge` binary with `fsync=always` is killed with
//! SIGKILL at random moments while producers and consumers run, restarted each time, and
//! drained at the end. A ledger of every enqueue outcome, delivery and ack must show no
//! acknowledged enqueue lost, no job delivered after its ack succeeded, and no lease id
//! issued twice; the store left behind must pass `storage check`. Under `interval` and
//! `never` the same must hold (a SIGKILL leaves the journal in the OS's hands; only a power
//! cut may lose their unsynced changes), with rounds the requests commit themselves. Set
//! `TASKFORGE_CRASH_CYCLES` for a longer run of the `always` loop (default 4) and
//! `TASKFORGE_CRASH_SEED` to replay one.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use taskforge::client::{Client, ClientOptions, ReconnectOptions};
use taskforge_protocol::{Credentials, FetchRequest, JobId, JobState, LeaseId, QueueSettings};
use tokio_util::sync::CancellationToken;

use crate::support::{job, ROOT_TOKEN};

const PRODUCERS: usize = 2;
const CONSUMERS: usize = 2;
const LEASE_MS: u32 = 2_000;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
const SERVE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Ledger {
    /// Enqueues the broker acknowledged: payload → job id.
    enqueued: HashMap<String, JobId>,
    /// Every delivery: job id, lease id, when the FETCH answer arrived.
    deliveries: Vec<(JobId, LeaseId, Instant)>,
    /// When each job's ACK succeeded.
    acked: HashMap<JobId, Instant>,
    /// Jobs whose ACK failed in transit (the broker died mid-ACK): the outcome is unknown.
    ack_unknown: HashSet<JobId>,
    /// Of those, the ones the broker later reported as succeeded: acked at an unknown moment.
    acked_unseen: HashSet<JobId>,
}

/// Kills the server process when the test ends, even by a panic.
struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_server(addr: SocketAddr, data_dir: &std::path::Path, fsync: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_taskforge"))
        .args([
            "server",
            "--listen",
            &addr.to_string(),
            "--admin-listen",
            "127.0.0.1:0",
            "--fsync",
            fsync,
            "--log-level",
            "warn",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .env("TASKFORGE_ROOT_TOKEN", ROOT_TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the taskforge binary")
}

fn options() -> ClientOptions {
    let mut options = ClientOptions::new(Credentials::RootToken(ROOT_TOKEN.into()));
    options.request_timeout = Duration::from_secs(10);
    options.reconnect = ReconnectOptions {
        attempts_max: 3,
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
    };
    options
}

async fn wait_until_serving(addr: SocketAddr) -> (Client, Duration) {
    let started = Instant::now();
    loop {
        if let Ok(client) = Client::connect(addr, options()).await {
            if client.ping().await.is_ok() {
                return (client, started.elapsed());
            }
        }
        assert!(
            started.elapsed() < SERVE_TIMEOUT,
            "the broker did not come back"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn connect_retrying(addr: SocketAddr, stop: &CancellationToken) -> Option<Client> {
    while !stop.is_cancelled() {
        if let Ok(client) = Client::connect(addr, options()).await {
            return Some(client);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

async fn produce(
    addr: SocketAddr,
    producer: usize,
    ledger: Arc<Mutex<Ledger>>,
    stop: CancellationToken,
) {
    let Some(client) = connect_retrying(addr, &stop).await else {
        return;
    };
    let mut sequence = 0u64;
    while !stop.is_cancelled() {
        let payload = format!("{producer}-{sequence}");
        sequence += 1;
        match client.enqueue(job("crash", payload.as_bytes())).await {
            Ok(response) => {
                ledger
                    .lock()
                    .expect("ledger")
                    .enqueued
                    .insert(payload, response.job_id);
            }
            // Unknown outcome (the broker died mid-request): a retry would be a new job.
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

async fn consume(addr: SocketAddr, ledger: Arc<Mutex<Ledger>>, stop: CancellationToken) {
    let Some(client) = connect_retrying(addr, &stop).await else {
        return;
    };
    let request = FetchRequest {
        queues: vec!["crash".into()],
        max_jobs: 8,
        wait_ms: 200,
        lease_ms: Some(LEASE_MS),
        worker_id: None,
        weights: Vec::new(),
    };
    while !stop.is_cancelled() {
        let jobs = match client.fetch(request.clone()).await {
            Ok(response) => response.jobs,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let fetched_at = Instant::now();
        for leased in jobs {
            let delivery = (leased.job_id, leased.lease_id, fetched_at);
            ledger.lock().expect("ledger").deliveries.push(delivery);
            let outcome = client.ack(leased.job_id, leased.lease_id, None).await;
            let mut ledger = ledger.lock().expect("ledger");
            match outcome {
                Ok(()) => {
                    ledger.acked.insert(leased.job_id, Instant::now());
                }
                // Lost in transit (the broker died mid-ACK): the outcome is unknown.
                Err(error) if error.code().is_none() => {
                    ledger.ack_unknown.insert(leased.job_id);
                }
                // LEASE_LOST: the lease ran out meanwhile and the job comes back.
                Err(_) => {}
            }
        }
    }
}

/// How the server is stopped in each cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGKILL: a crash.
    Kill,
    /// SIGTERM: a graceful shutdown, which must end with exit status 0.
    Terminate,
}

/// How long a graceful shutdown may take: the grace period plus the final sync.
const GRACEFUL_EXIT_TIMEOUT: Duration = Duration::from_secs(15);

fn stop_server(server: &mut ServerProcess, stop: Stop) {
    match stop {
        Stop::Kill => {
            server.0.kill().expect("SIGKILL");
            server.0.wait().expect("reaped");
        }
        Stop::Terminate => {
            let pid = libc::pid_t::try_from(server.0.id()).expect("pid fits");
            // SAFETY: sending a signal to our own child process, whose pid we hold.
            let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
            assert_eq!(sent, 0, "SIGTERM delivered");
            let started = Instant::now();
            loop {
                if let Some(status) = server.0.try_wait().expect("wait") {
                    assert!(
                        status.success(),
                        "a graceful shutdown exits 0, got {status}"
                    );
                    return;
                }
                assert!(
                    started.elapsed() < GRACEFUL_EXIT_TIMEOUT,
                    "SIGTERM did not stop the broker"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_and_resurrects_nothing() {
    let cycles: usize = std::env::var("TASKFORGE_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    stop_start_loop(Stop::Kill, cycles, "always").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_interval_and_never_loses_nothing_acknowledged() {
    // An interval far longer than a cycle: what survives is what the journal had written.
    stop_start_loop(Stop::Kill, 2, "interval:60000").await;
    stop_start_loop(Stop::Kill, 2, "never").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_shuts_down_cleanly_and_loses_nothing() {
    stop_start_loop(Stop::Terminate, 2, "always").await;
}

/// Runs producers and consumers against the real binary, stops and restarts it `cycles`
/// times the `stop` way, drains, and checks the ledger and the store.
async fn stop_start_loop(stop: Stop, cycles: usize, fsync: &str) {
    let seed: u64 = std::env::var("TASKFORGE_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!(
        "{stop:?} loop, fsync={fsync}: {cycles} cycles, seed {seed} (TASKFORGE_CRASH_SEED={seed} replays the timing)"
    );
    let mut rng = fastrand::Rng::with_seed(seed);
    let data_dir = tempfile::tempdir().expect("temp dir");
    let addr: SocketAddr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe port");
        probe.local_addr().expect("addr")
    };
    let mut server = ServerProcess(spawn_server(addr, data_dir.path(), fsync));
    let (admin, _) = wait_until_serving(addr).await;
    admin
        .queue_create(
            "crash",
            QueueSettings {
                max_attempts: Some(1_000),
                ..Default::default()
            },
        )
        .await
        .expect("queue");

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let producing = CancellationToken::new();
    let consuming = CancellationToken::new();
    let mut tasks = Vec::new();
    for producer in 0..PRODUCERS {
        tasks.push(tokio::spawn(produce(
            addr,
            producer,
            Arc::clone(&ledger),
            producing.clone(),
        )));
    }
    for _ in 0..CONSUMERS {
        tasks.push(tokio::spawn(consume(
            addr,
            Arc::clone(&ledger),
            consuming.clone(),
        )));
    }

    let mut restart_times = Vec::new();
    for _ in 0..cycles {
        tokio::time::sleep(Duration::from_millis(rng.u64(200..900))).await;
        stop_server(&mut server, stop);
        server = ServerProcess(spawn_server(addr, data_dir.path(), fsync));
        let (_, serving_after) = wait_until_serving(addr).await;
        restart_times.push(serving_after);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    producing.cancel();

    let drain_started = Instant::now();
    let (admin, _) = wait_until_serving(addr).await;
    loop {
        let pending: Vec<JobId> = {
            let ledger = ledger.lock().expect("ledger");
            ledger
                .enqueued
                .values()
                .filter(|job_id| {
                    !ledger.acked.contains_key(job_id) && !ledger.acked_unseen.contains(job_id)
                })
                .copied()
                .collect()
        };
        if pending.is_empty() {
            break;
        }
        let unknown: Vec<JobId> = {
            let ledger = ledger.lock().expect("ledger");
            pending
                .iter()
                .filter(|job_id| ledger.ack_unknown.contains(job_id))
                .copied()
                .collect()
        };
        for job_id in &unknown {
            if let Ok(info) = admin.job_get(*job_id).await {
                if info.state == JobState::Succeeded {
                    ledger.lock().expect("ledger").acked_unseen.insert(*job_id);
                }
            }
        }
        if drain_started.elapsed() >= DRAIN_TIMEOUT {
            let mut report = Vec::new();
            for job_id in pending.iter().take(5) {
                let info = admin.job_get(*job_id).await;
                let ledger = ledger.lock().expect("ledger");
                let deliveries = ledger
                    .deliveries
                    .iter()
                    .filter(|(id, _, _)| id == job_id)
                    .count();
                report.push(format!(
                    "{job_id}: broker says {:?}; {deliveries} deliveries; ack outcome unknown: {}",
                    info.map(|info| (info.state, info.attempts, info.last_error)),
                    ledger.ack_unknown.contains(job_id)
                ));
            }
            panic!(
                "{} acknowledged jobs never drained:\n{}",
                pending.len(),
                report.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    consuming.cancel();
    for task in tasks {
        task.await.expect("task");
    }
    drop(server);
    // The store the last stop left behind, opened offline, holds every record in one place
    // and state: index entries, executions and bodies agree with the job records.
    let checked = taskforge::storage::maintenance::check(data_dir.path()).expect("check");
    assert!(checked.is_consistent(), "{:?}", checked.problems);

    let ledger = ledger.lock().expect("ledger");
    let delivered: HashSet<JobId> = ledger
        .deliveries
        .iter()
        .map(|(job_id, _, _)| *job_id)
        .collect();
    let lost = ledger
        .enqueued
        .values()
        .filter(|job_id| !delivered.contains(job_id))
        .count();
    let resurrected = ledger
        .deliveries
        .iter()
        .filter(|(job_id, _, fetched_at)| {
            ledger
                .acked
                .get(job_id)
                .is_some_and(|acked_at| acked_at < fetched_at)
        })
        .count();
    let duplicates = ledger.deliveries.len() - delivered.len();
    let leases: HashSet<LeaseId> = ledger
        .deliveries
        .iter()
        .map(|(_, lease_id, _)| *lease_id)
        .collect();
    let slowest = restart_times.iter().max().copied().unwrap_or_default();
    eprintln!(
        "{stop:?} loop: {} acknowledged enqueues, {} deliveries, lost {lost}, resurrected {resurrected}, \
         duplicates {duplicates}, acks with unknown outcome that had succeeded {}, \
         slowest restart-to-serving {slowest:?}",
        ledger.enqueued.len(),
        ledger.deliveries.len(),
        ledger.acked_unseen.len(),
    );
    assert!(ledger.enqueued.len() > 50, "the run did real work");
    assert_eq!(lost, 0, "acknowledged enqueues lost");
    assert_eq!(
        resurrected, 0,
        "jobs delivered again after a successful ack"
    );
    assert_eq!(
        leases.len(),
        ledger.deliveries.len(),
        "a lease id was issued twice"
    );
}
