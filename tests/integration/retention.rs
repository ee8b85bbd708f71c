//! Retention: finished jobs and everything stored for them are purged after their
//! queue's retention, and under steady churn the store on disk levels off.

use std::path::Path;

use taskforge::storage::{check, SledOptions, SledStorage};
use taskforge_protocol::{
    AckRequest, ErrorCode, FetchRequest, LogLevel, NewLogLine, QueueSettings,
};

use crate::support::{code, eventually, job, TestServer};

/// Retention of the queues in these tests.
const RETENTION_MS: u64 = 10_000;

fn fetch_all(queue: &str) -> FetchRequest {
    FetchRequest {
        queues: vec![queue.into()],
        max_jobs: 1_000,
        wait_ms: 0,
        lease_ms: None,
        worker_id: None,
        weights: Vec::new(),
    }
}

fn kept_briefly() -> QueueSettings {
    QueueSettings {
        retention_ms: Some(RETENTION_MS),
        ..QueueSettings::default()
    }
}

/// Bytes of every file under `dir`.
fn size_on_disk(dir: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir").flatten() {
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            if metadata.is_dir() {
                pending.push(entry.path());
            } else {
                total += metadata.len();
            }
        }
    }
    total
}

#[tokio::test]
async fn finished_jobs_and_their_records_are_purged_after_the_retention() {
    let mut server = TestServer::start_with_manual_clock().await;
    let client = server.client().await;
    client
        .queue_create("r", kept_briefly())
        .await
        .expect("queue");
    let job_id = client
        .enqueue(job("r", b"x"))
        .await
        .expect("enqueue")
        .job_id;
    let leased = client
        .fetch(fetch_all("r"))
        .await
        .expect("fetch")
        .jobs
        .remove(0);
    client
        .log(
            job_id,
            leased.lease_id,
            vec![NewLogLine {
                level: LogLevel::Info,
                message: "kept until purged".into(),
                fields: Vec::new(),
            }],
        )
        .await
        .expect("log");
    client
        .progress(job_id, leased.lease_id, 50, "half")
        .await
        .expect("progress");
    client
        .ack(job_id, leased.lease_id, Some(b"result".to_vec()))
        .await
        .expect("ack");
    let cancelled = client
        .enqueue(job("r", b"y"))
        .await
        .expect("enqueue")
        .job_id;
    client.cancel(cancelled).await.expect("cancel");

    server.advance(RETENTION_MS - 1);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        client.job_get(job_id).await.is_ok(),
        "kept within the retention"
    );
    server.advance(1_001);
    eventually("the finished jobs purged", || async {
        let gone =
            client.job_get(job_id).await.is_err() && client.job_get(cancelled).await.is_err();
        gone.then_some(())
    })
    .await;
    assert_eq!(code(client.job_get(job_id).await), ErrorCode::NotFound);
    assert_eq!(
        code(client.execution_list(job_id, None, 10).await),
        ErrorCode::NotFound
    );
    let counts = client.queue_stats("r").await.expect("stats").counts;
    assert_eq!((counts.succeeded, counts.cancelled), (0, 0));

    drop(client);
    server.stop().await;
    let storage =
        SledStorage::open(&server.config.broker.data_dir, SledOptions::default()).expect("open");
    let report = check::check(&storage).expect("check");
    assert!(report.is_consistent(), "{report:?}");
    assert_eq!(
        (
            report.jobs,
            report.bodies,
            report.results,
            report.history_records,
            report.index_entries
        ),
        (0, 0, 0, 0, 0),
        "nothing of the purged jobs is left: {report:?}"
    );
}

#[tokio::test]
async fn under_steady_churn_the_store_levels_off() {
    const ROUNDS: usize = 100;
    const JOBS_PER_ROUND: usize = 500;
    let server = TestServer::start_with_manual_clock().await;
    let client = server.client().await;
    client
        .queue_create("churn", kept_briefly())
        .await
        .expect("queue");
    let mut sizes = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let jobs = (0..JOBS_PER_ROUND)
            .map(|index| {
                job(
                    "churn",
                    format!("round {round} job {index} {}", "x".repeat(200)).as_bytes(),
                )
            })
            .collect();
        client.enqueue_batch(jobs).await.expect("enqueue");
        let leased = client.fetch(fetch_all("churn")).await.expect("fetch").jobs;
        assert_eq!(leased.len(), JOBS_PER_ROUND);
        let acks = leased
            .iter()
            .map(|job| AckRequest {
                job_id: job.job_id,
                lease_id: job.lease_id,
                result: Some(vec![7; 100]),
            })
            .collect();
        client.ack_batch(acks).await.expect("ack");
        server.advance(RETENTION_MS + 1_000);
        eventually("the round's jobs purged", || async {
            let counts = client.queue_stats("churn").await.expect("stats").counts;
            (counts.succeeded == 0).then_some(())
        })
        .await;
        sizes.push(size_on_disk(&server.config.broker.data_dir));
    }
    let half = sizes[ROUNDS / 2 - 1];
    let end = sizes[ROUNDS - 1];
    println!(
        "churn: {} jobs through enqueue, lease, ack and purge; store {} KiB after {} rounds, {} KiB after {}",
        ROUNDS * JOBS_PER_ROUND,
        half / 1024,
        ROUNDS / 2,
        end / 1024,
        ROUNDS
    );
    assert!(
        end <= half + half / 2,
        "the store kept growing: {half} bytes at half time, {end} at the end ({sizes:?})"
    );
}
