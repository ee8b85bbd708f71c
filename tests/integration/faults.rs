//! Disk trouble through the storage trait: writes or syncs that fail give UNAVAILABLE,
//! nothing acknowledged is lost, reads never show a change that was refused, and the
//! broker serves again once the fault clears.

use std::sync::Arc;
use std::time::Duration;

use taskforge::client::ClientError;
use taskforge::clock::SystemClock;
use taskforge::config::{Config, Environment, Secret};
use taskforge::storage::{FaultyStorage, MemoryStorage, Storage};
use taskforge_protocol::{ErrorCode, FetchRequest, JobListRequest, QueueSettings};

use crate::support::{eventually, job, ROOT_TOKEN};

fn unavailable<T: std::fmt::Debug>(result: Result<T, ClientError>) -> bool {
    matches!(result, Err(ClientError::Server(body)) if body.error_code() == ErrorCode::Unavailable)
}

#[tokio::test]
async fn storage_faults_answer_unavailable_lose_nothing_and_heal() {
    faults_answer_unavailable_lose_nothing_and_heal("always", &[Fault::Apply, Fault::Sync]).await;
}

/// Under `never` a request commits its round itself when no other round runs, so the
/// failure reaches that request first and the committer rebuilds after it. (Nothing syncs
/// a round under `never`, so only a failed write can fail one.)
#[tokio::test]
async fn storage_faults_in_a_round_a_request_leads_answer_unavailable_and_heal() {
    faults_answer_unavailable_lose_nothing_and_heal("never", &[Fault::Apply]).await;
}

/// What the storage refuses.
#[derive(Clone, Copy)]
enum Fault {
    Apply,
    Sync,
}

async fn faults_answer_unavailable_lose_nothing_and_heal(fsync: &str, faults: &[Fault]) {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::defaults(Environment::Development);
    config.broker.fsync = fsync.into();
    config.server.listen_addr = "127.0.0.1:0".parse().expect("addr");
    config.server.admin_listen_addr = "127.0.0.1:0".parse().expect("addr");
    config.broker.data_dir = data_dir.path().to_path_buf();
    config.broker.root_token = Some(Secret::new(ROOT_TOKEN));
    let faulty = Arc::new(FaultyStorage::new(Arc::new(MemoryStorage::new())));
    let storage: Arc<dyn Storage> = faulty.clone();
    let server = taskforge::server::start_with(config, storage, Arc::new(SystemClock))
        .await
        .expect("server starts");
    let options = taskforge::client::ClientOptions::new(
        taskforge_protocol::Credentials::RootToken(ROOT_TOKEN.into()),
    );
    let client = taskforge::client::Client::connect(server.local_addr(), options)
        .await
        .expect("connects");
    client
        .queue_create("q", QueueSettings::default())
        .await
        .expect("queue");
    let mut acknowledged = Vec::new();
    for index in 0..5u8 {
        acknowledged.push(
            client
                .enqueue(job("q", &[index]))
                .await
                .expect("enqueue")
                .job_id,
        );
    }

    for fault in faults {
        faulty.fail_apply(matches!(fault, Fault::Apply));
        faulty.fail_sync(matches!(fault, Fault::Sync));
        assert!(
            unavailable(client.enqueue(job("q", b"refused")).await),
            "a write during the fault"
        );
        faulty.fail_apply(false);
        faulty.fail_sync(false);
        let healed = eventually("the broker to serve again", || async {
            client.enqueue(job("q", b"after")).await.ok()
        })
        .await;
        acknowledged.push(healed.job_id);
    }

    let listed = client
        .job_list(JobListRequest {
            queue: "q".into(),
            state: None,
            after: None,
            limit: 1_000,
        })
        .await
        .expect("list");
    let stored: Vec<_> = listed.jobs.iter().map(|job| job.job_id).collect();
    for job_id in &acknowledged {
        assert!(
            stored.contains(job_id),
            "acknowledged job {job_id} survived the faults"
        );
    }
    let leased = client
        .fetch(FetchRequest {
            queues: vec!["q".into()],
            max_jobs: 100,
            wait_ms: 0,
            lease_ms: None,
            worker_id: None,
            weights: Vec::new(),
        })
        .await
        .expect("fetch after healing")
        .jobs;
    for leased_job in &leased {
        client
            .ack(leased_job.job_id, leased_job.lease_id, None)
            .await
            .expect("ack after healing");
    }
    assert!(
        leased.len() >= acknowledged.len(),
        "every acknowledged job is delivered"
    );
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("stops")
        .expect("clean");
}

#[tokio::test]
async fn a_real_failed_checkpoint_answers_unavailable_and_the_broker_heals_without_a_restart() {
    let server = crate::support::TestServer::start().await;
    let client = server.client().await;
    client
        .queue_create("disk", QueueSettings::default())
        .await
        .expect("queue");
    let mut kept = vec![
        client
            .enqueue(job("disk", b"before"))
            .await
            .expect("enqueue")
            .job_id,
    ];
    // sled's blob directory vanishing makes the next sled sync fail, as an I/O error
    // would. The journal acknowledges writes until the next checkpoint into sled (within
    // `broker.checkpoint_every_ms`) meets the failure; from then on the store refuses
    // writes until it is reopened.
    let blobs = server.config.broker.data_dir.join("blobs");
    std::fs::remove_dir_all(&blobs).expect("remove blobs");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match client.enqueue(job("disk", b"during")).await {
            Ok(receipt) => kept.push(receipt.job_id),
            refused => {
                let description = format!("{refused:?}");
                assert!(unavailable(refused), "{description}");
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the failed checkpoint never answered UNAVAILABLE"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    std::fs::create_dir(&blobs).expect("the fault clears");
    let healed = eventually("the broker serving again", || async {
        client.enqueue(job("disk", b"after")).await.ok()
    })
    .await;
    for (index, job_id) in kept.iter().enumerate() {
        let expected: &[u8] = if index == 0 { b"before" } else { b"during" };
        assert_eq!(
            client.job_get(*job_id).await.expect("kept").payload,
            expected.to_vec(),
            "nothing acknowledged was lost"
        );
    }
    assert_eq!(
        client.job_get(healed.job_id).await.expect("new").payload,
        b"after".to_vec()
    );
}

/// A small tmpfs mounted for one test and unmounted when dropped. Mounting needs root (or
/// `CAP_SYS_ADMIN`); [`Tmpfs::mount`] returns `None` where the machine does not allow it.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size_bytes: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("mount point");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_bytes}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then_some(Tmpfs { dir })
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Remounts with `options` (e.g. `size=…` or `ro`).
    fn remount(&self, options: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(self.dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "remount with {options}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Bytes of payload per job while filling the disk.
const FILL_PAYLOAD_BYTES: usize = 64 * 1024;
/// The filesystem the broker starts on: room for the store and a few dozen such jobs.
const SMALL_FILESYSTEM_BYTES: u64 = 6 * 1024 * 1024;
/// The filesystem after the operator makes room.
const LARGER_FILESYSTEM_BYTES: u64 = 256 * 1024 * 1024;
/// Enqueues tried before the test gives up on filling the disk.
const FILL_ATTEMPTS_MAX: usize = 2_000;

#[tokio::test]
async fn a_full_filesystem_answers_unavailable_loses_nothing_and_heals_when_space_returns() {
    let Some(disk) = Tmpfs::mount(SMALL_FILESYSTEM_BYTES) else {
        eprintln!("skipped: this machine does not allow mounting a tmpfs (needs root)");
        return;
    };
    let data_dir = disk.path().join("data");
    let mut server = crate::support::TestServer::start_configured(|config| {
        config.broker.data_dir = data_dir.clone();
    })
    .await;
    let client = server.client().await;
    client
        .queue_create("fill", QueueSettings::default())
        .await
        .expect("queue");

    let mut acknowledged = Vec::new();
    let mut refused = 0usize;
    for index in 0..FILL_ATTEMPTS_MAX {
        let mut payload = vec![0u8; FILL_PAYLOAD_BYTES];
        payload[..8].copy_from_slice(&(index as u64).to_be_bytes());
        match client.enqueue(job("fill", &payload)).await {
            Ok(accepted) => acknowledged.push((accepted.job_id, payload)),
            Err(error) => {
                assert_eq!(
                    error.code(),
                    Some(ErrorCode::Unavailable),
                    "a full disk answers UNAVAILABLE: {error:?}"
                );
                refused += 1;
                if refused == 3 {
                    break;
                }
            }
        }
    }
    assert_eq!(refused, 3, "the disk filled up and writes were refused");
    eprintln!(
        "full filesystem: {} jobs acknowledged before the disk filled, then UNAVAILABLE",
        acknowledged.len()
    );

    disk.remount(&format!("size={LARGER_FILESYSTEM_BYTES}"));
    let healed = eventually("the broker to serve again once there is room", || async {
        client.enqueue(job("fill", b"after")).await.ok()
    })
    .await;
    for (job_id, payload) in &acknowledged {
        let stored = client.job_get(*job_id).await.expect("acknowledged job");
        assert_eq!(&stored.payload, payload, "job {job_id} kept its payload");
    }

    server.restart().await;
    let client = server.client().await;
    for (job_id, payload) in &acknowledged {
        let stored = client
            .job_get(*job_id)
            .await
            .expect("acknowledged job after a restart");
        assert_eq!(
            &stored.payload, payload,
            "job {job_id} survived the restart"
        );
    }
    assert_eq!(
        client.job_get(healed.job_id).await.expect("new").payload,
        b"after".to_vec()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_store_on_a_filesystem_gone_read_only_refuses_to_start_with_a_clear_error() {
    let Some(disk) = Tmpfs::mount(SMALL_FILESYSTEM_BYTES) else {
        eprintln!("skipped: this machine does not allow mounting a tmpfs (needs root)");
        return;
    };
    let data_dir = disk.path().join("data");
    let mut server = crate::support::TestServer::start_configured(|config| {
        config.broker.data_dir = data_dir.clone();
    })
    .await;
    let client = server.client().await;
    client
        .queue_create("q", QueueSettings::default())
        .await
        .expect("queue");
    client.enqueue(job("q", b"kept")).await.expect("enqueue");
    drop(client);
    server.stop().await;
    // What the kernel does to a filesystem after an I/O error it cannot recover from.
    disk.remount("ro");
    let error = match taskforge::server::start(server.config.clone()).await {
        Ok(_) => panic!("a broker started on a read-only filesystem"),
        Err(error) => error.to_string(),
    };
    eprintln!("read-only filesystem: {error}");
    assert!(
        error.contains("Read-only file system"),
        "the error names the cause: {error}"
    );
}
