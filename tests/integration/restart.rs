//! Restarts: a clean shutdown keeps every job in its state; leases that ran out while the
//! broker was down are released at start.

use taskforge_protocol::{ErrorCode, FetchRequest, JobState, NewJob, QueueSettings, Retry};

use crate::support::{eventually, job, TestServer};

fn fetch(queue: &str, lease_ms: u32) -> FetchRequest {
    FetchRequest {
        queues: vec![queue.into()],
        max_jobs: 1,
        wait_ms: 0,
        lease_ms: Some(lease_ms),
        worker_id: None,
        weights: Vec::new(),
    }
}

#[tokio::test]
async fn a_clean_restart_keeps_every_job_in_its_state() {
    let mut server = TestServer::start().await;
    let client = server.client().await;
    client
        .queue_create(
            "q",
            QueueSettings {
                max_attempts: Some(1),
                ..Default::default()
            },
        )
        .await
        .expect("create");
    client
        .queue_create("paused", QueueSettings::default())
        .await
        .expect("create");
    client.queue_pause("paused").await.expect("pause");
    let in_paused = client
        .enqueue(job("paused", b"p"))
        .await
        .expect("enqueue")
        .job_id;

    let leased_id = client
        .enqueue(job("q", b"leased"))
        .await
        .expect("enqueue")
        .job_id;
    let leased = client
        .fetch(fetch("q", 600_000))
        .await
        .expect("fetch")
        .jobs
        .remove(0);
    let succeeded = client
        .enqueue(job("q", b"succeeded"))
        .await
        .expect("enqueue")
        .job_id;
    let done = client
        .fetch(fetch("q", 60_000))
        .await
        .expect("fetch")
        .jobs
        .remove(0);
    client
        .ack(done.job_id, done.lease_id, Some(b"result".to_vec()))
        .await
        .expect("ack");
    let dead = client
        .enqueue(job("q", b"dead"))
        .await
        .expect("enqueue")
        .job_id;
    let failing = client
        .fetch(fetch("q", 60_000))
        .await
        .expect("fetch")
        .jobs
        .remove(0);
    client
        .fail(failing.job_id, failing.lease_id, "broken", Retry::Backoff)
        .await
        .expect("fail");
    let cancelled = client
        .enqueue(job("q", b"cancelled"))
        .await
        .expect("enqueue")
        .job_id;
    client.cancel(cancelled).await.expect("cancel");
    let scheduled = client
        .enqueue(NewJob {
            delay_ms: Some(3_600_000),
            ..job("q", b"scheduled")
        })
        .await
        .expect("enqueue")
        .job_id;
    let ready = client
        .enqueue(job("q", b"ready"))
        .await
        .expect("enqueue")
        .job_id;

    let ids = [
        leased_id, succeeded, dead, cancelled, scheduled, ready, in_paused,
    ];
    let mut before = Vec::new();
    for job_id in ids {
        before.push(client.job_get(job_id).await.expect("get"));
    }
    let states: Vec<JobState> = before.iter().map(|info| info.state).collect();
    assert_eq!(
        states,
        vec![
            JobState::Leased,
            JobState::Succeeded,
            JobState::Dead,
            JobState::Cancelled,
            JobState::Scheduled,
            JobState::Ready,
            JobState::Ready
        ]
    );
    let counts_before = client.queue_stats("q").await.expect("stats").counts;

    server.restart().await;
    let client = server.client().await;
    for (job_id, info) in ids.iter().zip(&before) {
        assert_eq!(
            &client.job_get(*job_id).await.expect("get after restart"),
            info
        );
    }
    assert_eq!(
        client.queue_stats("q").await.expect("stats").counts,
        counts_before
    );
    assert!(client.queue_get("paused").await.expect("queue").paused);
    client
        .ack(leased_id, leased.lease_id, None)
        .await
        .expect("a lease survives a clean restart");
    let next = client
        .fetch(fetch("q", 60_000))
        .await
        .expect("fetch")
        .jobs
        .remove(0);
    assert_eq!(next.job_id, ready);
    assert!(
        next.lease_id > done.lease_id && next.lease_id > failing.lease_id,
        "lease ids issued after a restart are new"
    );
    assert!(client
        .fetch(fetch("paused", 60_000))
        .await
        .expect("fetch")
        .jobs
        .is_empty());
}

#[tokio::test]
async fn leases_that_ran_out_while_the_broker_was_down_are_released_at_start() {
    let mut server = TestServer::start_with_manual_clock().await;
    let client = server.client().await;
    client
        .queue_create("q", QueueSettings::default())
        .await
        .expect("create");
    let job_id = client
        .enqueue(job("q", b"x"))
        .await
        .expect("enqueue")
        .job_id;
    let delayed = client
        .enqueue(NewJob {
            delay_ms: Some(2_000),
            ..job("q", b"delayed")
        })
        .await
        .expect("enqueue")
        .job_id;
    let first = client
        .fetch(fetch("q", 1_000))
        .await
        .expect("fetch")
        .jobs
        .remove(0);
    assert_eq!(first.job_id, job_id);
    server.stop().await;
    server.advance(5_000);
    server.restart().await;
    let client = server.client().await;
    let mut delivered = Vec::new();
    while delivered.len() < 2 {
        let next = eventually("redelivery after restart", || async {
            client
                .fetch(fetch("q", 60_000))
                .await
                .expect("fetch")
                .jobs
                .pop()
        })
        .await;
        delivered.push(next);
    }
    let mut ids: Vec<_> = delivered.iter().map(|leased| leased.job_id).collect();
    ids.sort();
    let mut expected = vec![job_id, delayed];
    expected.sort();
    assert_eq!(
        ids, expected,
        "the expired lease and the due delayed job are both delivered"
    );
    let redelivered = delivered
        .iter()
        .find(|leased| leased.job_id == job_id)
        .expect("redelivered");
    assert_eq!(redelivered.attempt, 2);
    let stale = client
        .ack(job_id, first.lease_id, None)
        .await
        .expect_err("stale");
    assert_eq!(stale.code(), Some(ErrorCode::LeaseLost));
}

#[tokio::test]
async fn shutdown_answers_a_waiting_long_poll_at_once() {
    let mut server = TestServer::start().await;
    let client = server.client().await;
    client
        .queue_create("q", QueueSettings::default())
        .await
        .expect("create");
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move {
            let request = FetchRequest {
                wait_ms: 60_000,
                ..fetch("q", 60_000)
            };
            client.fetch(request).await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    server.stop().await;
    let answer = waiting
        .await
        .expect("task")
        .expect("answered before the connection closed");
    assert!(answer.jobs.is_empty());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "the long poll must not hold the shutdown for its grace period"
    );
}
