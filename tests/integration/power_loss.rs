//! Power-loss simulation: producers enqueue while the "power" is cut; a new broker opens on
//! only what was durable at that instant. Under `fsync=always` every acknowledged enqueue
//! survives; under `interval:<ms>` only those acknowledged within the last window may be
//! lost. Reports the losses of each policy.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use taskforge::client::{Client, ClientOptions};
use taskforge::clock::SystemClock;
use taskforge::config::{Config, Environment, Secret};
use taskforge::server::RunningServer;
use taskforge::storage::{FaultyStorage, MemoryStorage, PowerLossStorage, Storage};
use taskforge_protocol::{Credentials, JobId, QueueSettings};
use tempfile::TempDir;

use crate::support::{job, ROOT_TOKEN};

const PRODUCERS: usize = 2;
const RUN_BEFORE_CUT: Duration = Duration::from_millis(400);
/// The window of the `interval` tests.
const INTERVAL_MS: u64 = 50;
/// Scheduling delays on a loaded machine stretch the window a little.
const SLACK_MS: u64 = 500;

fn config(fsync: &str, data_dir: &std::path::Path) -> Config {
    let mut config = Config::defaults(Environment::Development);
    config.server.listen_addr = "127.0.0.1:0".parse().expect("addr");
    config.server.admin_listen_addr = "127.0.0.1:0".parse().expect("addr");
    config.broker.data_dir = data_dir.to_path_buf();
    config.broker.root_token = Some(Secret::new(ROOT_TOKEN));
    config.broker.fsync = fsync.into();
    config
}

async fn client(addr: std::net::SocketAddr) -> Client {
    Client::connect(
        addr,
        ClientOptions::new(Credentials::RootToken(ROOT_TOKEN.into())),
    )
    .await
    .expect("connects")
}

/// A server on `storage`, with queue `q` created.
async fn start_on(storage: Arc<dyn Storage>, fsync: &str) -> (TempDir, RunningServer) {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = taskforge::server::start_with(
        config(fsync, data_dir.path()),
        storage,
        Arc::new(SystemClock),
    )
    .await
    .expect("server starts");
    client(server.local_addr())
        .await
        .queue_create("q", QueueSettings::default())
        .await
        .expect("queue");
    (data_dir, server)
}

/// Cuts the power under `server` (what `disk` synced survives), stops it and opens a new
/// server on the survivor.
async fn cut_power_and_reopen(
    disk: &PowerLossStorage,
    server: RunningServer,
    fsync: &str,
) -> (TempDir, RunningServer, Client) {
    let survivor = disk.durable_copy().expect("durable copy");
    server.shutdown().await.expect("shutdown");
    reopen_on(survivor, fsync).await
}

/// A server opened on what was durable at the cut, and a client of it.
async fn reopen_on(survivor: MemoryStorage, fsync: &str) -> (TempDir, RunningServer, Client) {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = taskforge::server::start_with(
        config(fsync, data_dir.path()),
        Arc::new(survivor),
        Arc::new(SystemClock),
    )
    .await
    .expect("reopens on the durable part");
    let after = client(server.local_addr()).await;
    (data_dir, server, after)
}

/// Runs producers, cuts the power, reopens on the durable part. Returns every enqueue
/// acknowledged before the cut with how long before the cut it was acknowledged, and
/// whether it survived.
async fn cut_power_under(fsync: &str) -> Vec<(Duration, bool)> {
    let disk = Arc::new(PowerLossStorage::new());
    let (_data_dir, server) = start_on(disk.clone(), fsync).await;
    let acknowledged: Arc<Mutex<Vec<(JobId, Instant)>>> = Arc::default();
    let stop = tokio_util::sync::CancellationToken::new();
    let mut producers = Vec::new();
    for producer in 0..PRODUCERS {
        let producer_client = client(server.local_addr()).await;
        let acknowledged = Arc::clone(&acknowledged);
        let stop = stop.clone();
        producers.push(tokio::spawn(async move {
            let mut sequence = 0u32;
            while !stop.is_cancelled() {
                let payload = [producer as u8, (sequence >> 8) as u8, sequence as u8];
                sequence += 1;
                if let Ok(response) = producer_client.enqueue(job("q", &payload)).await {
                    acknowledged
                        .lock()
                        .expect("ledger")
                        .push((response.job_id, Instant::now()));
                }
            }
        }));
    }
    tokio::time::sleep(RUN_BEFORE_CUT).await;
    let cut_at = Instant::now();
    let survivor = disk.durable_copy().expect("durable copy");
    stop.cancel();
    for producer in producers {
        producer.await.expect("producer");
    }
    server.shutdown().await.expect("shutdown");

    let (_reopened_dir, reopened, after) = reopen_on(survivor, fsync).await;
    let before_cut: Vec<(JobId, Instant)> = acknowledged
        .lock()
        .expect("ledger")
        .iter()
        .filter(|(_, acked_at)| *acked_at < cut_at)
        .copied()
        .collect();
    let mut outcomes = Vec::with_capacity(before_cut.len());
    for (job_id, acked_at) in before_cut {
        let survived = after.job_get(job_id).await.is_ok();
        outcomes.push((cut_at - acked_at, survived));
    }
    reopened.shutdown().await.expect("shutdown");
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_always_keeps_every_acknowledged_enqueue_through_a_power_cut() {
    let outcomes = cut_power_under("always").await;
    let lost = outcomes.iter().filter(|(_, survived)| !survived).count();
    eprintln!(
        "power cut under fsync=always: {} acknowledged enqueues, {lost} lost",
        outcomes.len()
    );
    assert!(outcomes.len() > 20, "the run did real work");
    assert_eq!(lost, 0, "fsync=always lost acknowledged enqueues");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_interval_loses_at_most_its_window() {
    let outcomes = cut_power_under(&format!("interval:{INTERVAL_MS}")).await;
    let lost: Vec<Duration> = outcomes
        .iter()
        .filter(|(_, survived)| !survived)
        .map(|(age, _)| *age)
        .collect();
    let oldest_lost = lost.iter().max().copied().unwrap_or_default();
    eprintln!(
        "power cut under fsync=interval:{INTERVAL_MS}: {} acknowledged enqueues, {} lost, the oldest acknowledged {oldest_lost:?} before the cut",
        outcomes.len(),
        lost.len()
    );
    assert!(
        oldest_lost <= Duration::from_millis(INTERVAL_MS + SLACK_MS),
        "lost an enqueue acknowledged {oldest_lost:?} before the cut"
    );
}

/// Under `interval` a request whose write finds no other round commits it itself, without
/// a sync; the committer must still sync that write within the window, with nothing else
/// happening to wake it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_interval_syncs_a_lone_write_within_its_window() {
    let fsync = format!("interval:{INTERVAL_MS}");
    let disk = Arc::new(PowerLossStorage::new());
    let (_data_dir, server) = start_on(disk.clone(), &fsync).await;
    let admin = client(server.local_addr()).await;
    tokio::time::sleep(Duration::from_millis(INTERVAL_MS + SLACK_MS)).await;
    let lone = admin
        .enqueue(job("q", b"lone"))
        .await
        .expect("enqueue")
        .job_id;
    tokio::time::sleep(Duration::from_millis(INTERVAL_MS + SLACK_MS)).await;
    let (_reopened_dir, reopened, after) = cut_power_and_reopen(&disk, server, &fsync).await;
    assert!(
        after.job_get(lone).await.is_ok(),
        "an enqueue acknowledged {INTERVAL_MS} + {SLACK_MS} ms before the cut was lost"
    );
    reopened.shutdown().await.expect("shutdown");
}

/// Under `interval`, a sync that comes due while a request's round is still being written
/// must run once that round ends, with nothing else happening to wake the committer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_interval_syncs_a_round_that_was_in_progress_when_its_sync_came_due() {
    let fsync = format!("interval:{INTERVAL_MS}");
    let disk = Arc::new(PowerLossStorage::new());
    let slow_disk = Arc::new(FaultyStorage::new(disk.clone()));
    let (_data_dir, server) = start_on(slow_disk.clone(), &fsync).await;
    let admin = client(server.local_addr()).await;
    // A first round leaves a sync pending, due INTERVAL_MS later.
    let first = admin
        .enqueue(job("q", b"first"))
        .await
        .expect("enqueue")
        .job_id;
    // The second round is still being written when that sync comes due.
    slow_disk.hold_applies(true);
    let second_client = client(server.local_addr()).await;
    let second = tokio::spawn(async move { second_client.enqueue(job("q", b"second")).await });
    // A thread sleep, not the runtime's: while a request's round blocks a worker the
    // runtime's timers may not advance.
    std::thread::sleep(Duration::from_millis(INTERVAL_MS * 4));
    slow_disk.hold_applies(false);
    let second = second
        .await
        .expect("second enqueue task")
        .expect("enqueue")
        .job_id;
    tokio::time::sleep(Duration::from_millis(INTERVAL_MS + SLACK_MS)).await;
    let (_reopened_dir, reopened, after) = cut_power_and_reopen(&disk, server, &fsync).await;
    for (name, job_id) in [("first", first), ("second", second)] {
        assert!(
            after.job_get(job_id).await.is_ok(),
            "the {name} enqueue, acknowledged {SLACK_MS} ms before the cut, was lost"
        );
    }
    reopened.shutdown().await.expect("shutdown");
}
