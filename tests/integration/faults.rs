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
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::defaults(Environment::Development);
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

    for (fail_apply, fail_sync) in [(true, false), (false, true)] {
        faulty.fail_apply(fail_apply);
        faulty.fail_sync(fail_sync);
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
async fn a_real_failed_sync_answers_unavailable_and_the_broker_heals_without_a_restart() {
    let server = crate::support::TestServer::start().await;
    let client = server.client().await;
    client
        .queue_create("disk", QueueSettings::default())
        .await
        .expect("queue");
    let kept = client
        .enqueue(job("disk", b"before"))
        .await
        .expect("enqueue")
        .job_id;
    // sled's blob directory vanishing makes the next sync fail, as an I/O error would; a
    // sled handle whose sync failed refuses writes until it is reopened.
    let blobs = server.config.broker.data_dir.join("blobs");
    std::fs::remove_dir_all(&blobs).expect("remove blobs");
    let refused = client.enqueue(job("disk", b"during")).await;
    assert!(unavailable(refused), "a failed sync answers UNAVAILABLE");
    std::fs::create_dir(&blobs).expect("the fault clears");
    let healed = eventually("the broker serving again", || async {
        client.enqueue(job("disk", b"after")).await.ok()
    })
    .await;
    assert_eq!(
        client.job_get(kept).await.expect("kept").payload,
        b"before".to_vec(),
        "nothing acknowledged was lost"
    );
    assert_eq!(
        client.job_get(healed.job_id).await.expect("new").payload,
        b"after".to_vec()
    );
}
