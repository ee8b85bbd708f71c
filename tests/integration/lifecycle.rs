//! The job lifecycle through a real server and the Rust client.

use std::time::Duration;

use taskforge::client::ClientError;
use taskforge_protocol::{
    Backoff, DeadListRequest, ErrorCode, ErrorDetails, ExecutionList, ExecutionOutcome,
    FetchRequest, JobListRequest, JobState, LeasedJob, NewJob, QueueSettings, Retry,
};

use crate::support::{code, eventually, job, TestServer};

fn fetch_request(queue: &str, max_jobs: u32) -> FetchRequest {
    FetchRequest {
        queues: vec![queue.into()],
        max_jobs,
        wait_ms: 0,
        lease_ms: None,
        worker_id: None,
        weights: Vec::new(),
    }
}

async fn fetch_now(
    client: &taskforge::client::Client,
    queue: &str,
    max_jobs: u32,
) -> Vec<LeasedJob> {
    client
        .fetch(fetch_request(queue, max_jobs))
        .await
        .expect("fetch")
        .jobs
}

#[tokio::test]
async fn enqueue_fetch_ack_round_trip() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .queue_create("emails", QueueSettings::default())
        .await
        .expect("create");
    let new_job = NewJob {
        metadata: vec![("tenant".into(), "acme".into())],
        ..job("emails", b"hello")
    };
    let enqueued = client.enqueue(new_job).await.expect("enqueue");
    assert_eq!(enqueued.state, JobState::Ready);
    let leased = fetch_now(&client, "emails", 10).await;
    assert_eq!(leased.len(), 1);
    let leased = &leased[0];
    assert_eq!((leased.job_id, leased.attempt), (enqueued.job_id, 1));
    assert_eq!(leased.payload, b"hello");
    assert_eq!(
        leased.metadata,
        vec![("tenant".to_string(), "acme".to_string())]
    );
    client
        .ack(leased.job_id, leased.lease_id, Some(b"done".to_vec()))
        .await
        .expect("ack");
    let info = client.job_get(enqueued.job_id).await.expect("job get");
    assert_eq!(info.state, JobState::Succeeded);
    assert_eq!(info.result.as_deref(), Some(&b"done"[..]));
    assert!(info.finished_at_ms.is_some());
    let stats = client.queue_stats("emails").await.expect("stats");
    assert_eq!((stats.counts.ready, stats.counts.succeeded), (0, 1));
}

#[tokio::test]
async fn batch_enqueue_is_all_or_nothing() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .queue_create("q", QueueSettings::default())
        .await
        .expect("create");
    let too_big = vec![0u8; client.session_limits().payload_bytes_max as usize + 1];
    let batch = vec![job("q", b"a"), job("q", &too_big), job("q", b"c")];
    let error = client.enqueue_batch(batch).await.expect_err("refused");
    assert_eq!(error.code(), Some(ErrorCode::InvalidArgument));
    match error {
        ClientError::Server(body) => assert_eq!(body.details, ErrorDetails::BatchItem { index: 1 }),
        other => panic!("unexpected {other:?}"),
    }
    let unknown_queue = vec![job("q", b"a"), job("q", b"b"), job("missing", b"c")];
    let error = client
        .enqueue_batch(unknown_queue)
        .await
        .expect_err("refused");
    assert_eq!(error.code(), Some(ErrorCode::NotFound));
    let stats = client.queue_stats("q").await.expect("stats");
    assert_eq!(
        stats.counts,
        Default::default(),
        "nothing of a refused batch is stored"
    );
    let listed = client
        .job_list(JobListRequest {
            queue: "q".into(),
            state: None,
            after: None,
            limit: 100,
        })
        .await
        .expect("list");
    assert!(listed.jobs.is_empty());
    let ids = client
        .enqueue_batch(vec![job("q", b"1"), job("q", b"2")])
        .await
        .expect("batch");
    assert_eq!(ids.job_ids.len(), 2);
}

#[tokio::test]
async fn higher_priority_first_then_fifo() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .queue_create("q", QueueSettings::default())
        .await
        .expect("create");
    let mut expected = Vec::new();
    let mut low = Vec::new();
    for index in 0..5u8 {
        let low_id = client
            .enqueue(job("q", &[index]))
            .await
            .expect("enqueue")
            .job_id;
        low.push(low_id);
        let high = NewJob {
            priority: Some(10),
            ..job("q", &[100 + index])
        };
        expected.push(client.enqueue(high).await.expect("enqueue").job_id);
    }
    expected.extend(low);
    let order: Vec<_> = fetch_now(&client, "q", 100)
        .await
        .iter()
        .map(|job| job.job_id)
        .collect();
    assert_eq!(order, expected);
}

#[tokio::test]
async fn delayed_jobs_are_delivered_at_their_time() {
    let server = TestServer::start_with_manual_clock().await;
    let client = server.client().await;
    client
        .queue_create("q", QueueSettings::default())
        .await
        .expect("create");
    let delayed = NewJob {
        delay_ms: Some(5_000),
        ..job("q", b"later")
    };
    let enqueued = client.enqueue(delayed).await.expect("enqueue");
    assert_eq!(enqueued.state, JobState::Scheduled);
    assert!(fetch_now(&client, "q", 1).await.is_empty());
    server.advance(4_999);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        fetch_now(&client, "q", 1).await.is_empty(),
        "not before its time"
    );
    assert_eq!(
        client.job_get(enqueued.job_id).await.expect("get").state,
        JobState::Scheduled
    );
    server.advance(1);
    let delivered = eventually("the delayed job", || async {
        fetch_now(&client, "q", 1).await.pop()
    })
    .await;
    assert_eq!(delivered.job_id, enqueued.job_id);
}

#[tokio::test]
async fn retries_follow_the_backoff_then_the_job_is_dead() {
    let server = TestServer::start_with_manual_clock().await;
    let client = server.client().await;
    let backoff = Backoff {
        initial_ms: 1_000,
        factor_percent: 300,
        max_ms: 60_000,
        jitter_percent: 0,
    };
    let settings = QueueSettings {
        max_attempts: Some(3),
        backoff: Some(backoff),
        ..QueueSettings::default()
    };
    client.queue_create("q", settings).await.expect("create");
    let job_id = client
        .enqueue(job("q", b"x"))
        .await
        .expect("enqueue")
        .job_id;
    for (attempt, delay_ms) in [(1u32, 1_000u64), (2, 3_000)] {
        let leased = eventually("a retry", || async {
            fetch_now(&client, "q", 1).await.pop()
        })
        .await;
        assert_eq!(leased.attempt, attempt);
        let now_ms = client.ping().await.expect("ping").server_time_ms;
        let failed = client
            .fail(
                job_id,
                leased.lease_id,
                format!("boom {attempt}"),
                Retry::Backoff,
            )
            .await
            .expect("fail");
        assert_eq!(failed.state, JobState::Scheduled);
        assert_eq!(failed.run_at_ms, Some(now_ms + delay_ms));
        server.advance(delay_ms - 1);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(
            fetch_now(&client, "q", 1).await.is_empty(),
            "no retry before the backoff"
        );
        server.advance(1);
    }
    let leased = eventually("the last attempt", || async {
        fetch_now(&client, "q", 1).await.pop()
    })
    .await;
    assert_eq!(leased.attempt, 3);
    let failed = client
        .fail(job_id, leased.lease_id, "boom 3", Retry::Backoff)
        .await
        .expect("fail");
    assert_eq!((failed.state, failed.attempts), (JobState::Dead, 3));
    let info = client.job_get(job_id).await.expect("get");
    assert_eq!(info.last_error.as_deref(), Some("boom 3"));
    let dead = client
        .dead_list(DeadListRequest {
            queue: "q".into(),
            after: None,
            limit: 10,
        })
        .await
        .expect("dead list");
    assert_eq!(
        dead.jobs.iter().map(|job| job.job_id).collect::<Vec<_>>(),
        vec![job_id]
    );
}

#[tokio::test]
async fn dead_jobs_can_be_retried_and_discarded() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let settings = QueueSettings {
        max_attempts: Some(1),
        ..QueueSettings::default()
    };
    client.queue_create("q", settings).await.expect("create");
    let mut ids = Vec::new();
    for index in 0..3u8 {
        ids.push(
            client
                .enqueue(job("q", &[index]))
                .await
                .expect("enqueue")
                .job_id,
        );
    }
    for leased in fetch_now(&client, "q", 10).await {
        client
            .fail(leased.job_id, leased.lease_id, "bad", Retry::Backoff)
            .await
            .expect("fail");
    }
    assert_eq!(client.queue_stats("q").await.expect("stats").counts.dead, 3);
    let retried = client.dead_retry("q", vec![ids[0]]).await.expect("retry");
    assert_eq!(
        (retried.affected, retried.remaining),
        (1, 0),
        "named ids leave nothing pending"
    );
    let info = client.job_get(ids[0]).await.expect("get");
    assert_eq!((info.state, info.attempts), (JobState::Ready, 0));
    assert_eq!(
        code(client.dead_retry("q", vec![ids[0]]).await),
        ErrorCode::Conflict
    );
    let discarded = client.dead_discard("q", Vec::new()).await.expect("discard");
    assert_eq!((discarded.affected, discarded.remaining), (2, 0));
    assert_eq!(code(client.job_get(ids[1]).await), ErrorCode::NotFound);
    let leased = fetch_now(&client, "q", 10).await;
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].job_id, ids[0]);

    // The failure that made it dead was stored with its finished state; the retry moved it
    // to its own key, and the ACK stores the second execution with the new finished state.
    client
        .ack(leased[0].job_id, leased[0].lease_id, None)
        .await
        .expect("ack");
    let outcomes = |list: ExecutionList| {
        list.executions
            .iter()
            .map(|info| (info.execution, info.attempt, info.outcome))
            .collect::<Vec<_>>()
    };
    let all = client
        .execution_list(ids[0], None, 10)
        .await
        .expect("executions");
    assert_eq!(
        outcomes(all),
        vec![
            (1, 1, Some(ExecutionOutcome::Failed)),
            (2, 1, Some(ExecutionOutcome::Succeeded))
        ]
    );
    let after_first = client
        .execution_list(ids[0], Some(1), 10)
        .await
        .expect("executions");
    assert_eq!(
        outcomes(after_first),
        vec![(2, 1, Some(ExecutionOutcome::Succeeded))]
    );
    let latest = client.job_get(ids[0]).await.expect("get").latest_execution;
    assert_eq!(latest.map(|info| info.execution), Some(2));
}

#[tokio::test]
async fn expired_leases_redeliver_and_stale_leases_are_fenced() {
    let server = TestServer::start_with_manual_clock().await;
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
    let mut request = FetchRequest {
        lease_ms: Some(1_000),
        ..fetch_request("q", 1)
    };
    let first = client
        .fetch(request.clone())
        .await
        .expect("fetch")
        .jobs
        .remove(0);
    server.advance(1_000);
    request.lease_ms = Some(60_000);
    let second = eventually("the redelivery", || {
        let request = request.clone();
        let client = client.clone();
        async move { client.fetch(request).await.expect("fetch").jobs.pop() }
    })
    .await;
    assert_eq!((second.job_id, second.attempt), (job_id, 2));
    assert_ne!(second.lease_id, first.lease_id);
    let before = client.job_get(job_id).await.expect("get");
    assert!(before
        .last_error
        .as_deref()
        .is_some_and(|error| error.contains("lease expired")));
    assert_eq!(
        code(client.ack(job_id, first.lease_id, None).await),
        ErrorCode::LeaseLost
    );
    assert_eq!(
        code(client.fail(job_id, first.lease_id, "x", Retry::Never).await),
        ErrorCode::LeaseLost
    );
    assert_eq!(
        code(client.extend(job_id, first.lease_id, 5_000).await),
        ErrorCode::LeaseLost
    );
    assert_eq!(
        client.job_get(job_id).await.expect("get"),
        before,
        "stale operations change nothing"
    );
    client
        .ack(job_id, second.lease_id, None)
        .await
        .expect("the current lease acks");
    assert_eq!(
        code(client.ack(job_id, second.lease_id, None).await),
        ErrorCode::LeaseLost
    );
}

#[tokio::test]
async fn cancel_in_every_state() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let settings = QueueSettings {
        max_attempts: Some(1),
        ..QueueSettings::default()
    };
    client.queue_create("q", settings).await.expect("create");
    let scheduled = client
        .enqueue(NewJob {
            delay_ms: Some(3_600_000),
            ..job("q", b"s")
        })
        .await
        .expect("enqueue")
        .job_id;
    let cancelled = client.cancel(scheduled).await.expect("cancel scheduled");
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert_eq!(
        client.cancel(scheduled).await.expect("again").state,
        JobState::Cancelled
    );

    let leased_id = client
        .enqueue(job("q", b"l"))
        .await
        .expect("enqueue")
        .job_id;
    let leased = fetch_now(&client, "q", 1).await.remove(0);
    let ready = client
        .enqueue(job("q", b"r"))
        .await
        .expect("enqueue")
        .job_id;
    assert_eq!(
        client.cancel(ready).await.expect("cancel ready").state,
        JobState::Cancelled
    );

    let response = client.cancel(leased_id).await.expect("cancel leased");
    assert_eq!(
        (response.state, response.cancel_requested),
        (JobState::Leased, true)
    );
    let extended = client
        .extend(leased_id, leased.lease_id, 10_000)
        .await
        .expect("extend");
    assert!(
        extended.cancel_requested,
        "the holder learns of the cancel on EXTEND"
    );
    assert_eq!(
        code(client.ack(leased_id, leased.lease_id, None).await),
        ErrorCode::LeaseLost
    );
    assert_eq!(
        client.job_get(leased_id).await.expect("get").state,
        JobState::Cancelled
    );

    let succeeded = client
        .enqueue(job("q", b"ok"))
        .await
        .expect("enqueue")
        .job_id;
    let dead = client
        .enqueue(job("q", b"dead"))
        .await
        .expect("enqueue")
        .job_id;
    for leased in fetch_now(&client, "q", 10).await {
        if leased.job_id == succeeded {
            client
                .ack(leased.job_id, leased.lease_id, None)
                .await
                .expect("ack");
        } else {
            client
                .fail(leased.job_id, leased.lease_id, "x", Retry::Never)
                .await
                .expect("fail");
        }
    }
    assert_eq!(code(client.cancel(succeeded).await), ErrorCode::Conflict);
    assert_eq!(code(client.cancel(dead).await), ErrorCode::Conflict);
    let unknown = taskforge_protocol::JobId([7; 16]);
    assert_eq!(code(client.cancel(unknown).await), ErrorCode::NotFound);
    assert!(
        fetch_now(&client, "q", 10).await.is_empty(),
        "cancelled jobs are never delivered"
    );
}

#[tokio::test]
async fn paused_queues_keep_their_jobs_until_resumed() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .queue_create("q", QueueSettings::default())
        .await
        .expect("create");
    assert!(client.queue_pause("q").await.expect("pause").paused);
    let job_id = client
        .enqueue(job("q", b"x"))
        .await
        .expect("enqueue")
        .job_id;
    assert!(fetch_now(&client, "q", 1).await.is_empty());
    assert_eq!(
        client.queue_stats("q").await.expect("stats").counts.ready,
        1
    );
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move {
            let request = FetchRequest {
                wait_ms: 10_000,
                ..fetch_request("q", 1)
            };
            client.fetch(request).await.expect("long poll").jobs
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !waiting.is_finished(),
        "a paused queue delivers nothing to a long poll"
    );
    assert!(!client.queue_resume("q").await.expect("resume").paused);
    let delivered = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served")
        .expect("task");
    assert_eq!(delivered[0].job_id, job_id);
}

#[tokio::test]
async fn long_poll_receives_a_job_enqueued_later() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .queue_create("a", QueueSettings::default())
        .await
        .expect("create");
    client
        .queue_create("b", QueueSettings::default())
        .await
        .expect("create");
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move {
            let request = FetchRequest {
                queues: vec!["a".into(), "b".into()],
                max_jobs: 5,
                wait_ms: 10_000,
                lease_ms: None,
                worker_id: None,
                weights: Vec::new(),
            };
            client.fetch(request).await.expect("long poll").jobs
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let job_id = client
        .enqueue(job("b", b"x"))
        .await
        .expect("enqueue")
        .job_id;
    let delivered = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served")
        .expect("task");
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].job_id, job_id);
    let empty = client
        .fetch(FetchRequest {
            wait_ms: 50,
            ..fetch_request("a", 1)
        })
        .await
        .expect("fetch");
    assert!(
        empty.jobs.is_empty(),
        "a long poll that runs out answers with no jobs"
    );
}

#[tokio::test]
async fn queues_are_created_listed_updated_purged_and_deleted() {
    let server = TestServer::start().await;
    let client = server.client().await;
    for name in ["c", "a", "b"] {
        client
            .queue_create(name, QueueSettings::default())
            .await
            .expect("create");
    }
    assert_eq!(
        code(client.queue_create("a", QueueSettings::default()).await),
        ErrorCode::Conflict
    );
    assert_eq!(
        code(
            client
                .queue_create("bad name", QueueSettings::default())
                .await
        ),
        ErrorCode::InvalidArgument
    );
    let bad_settings = QueueSettings {
        max_attempts: Some(0),
        ..QueueSettings::default()
    };
    assert_eq!(
        code(client.queue_create("d", bad_settings).await),
        ErrorCode::InvalidArgument
    );
    assert_eq!(code(client.queue_get("missing").await), ErrorCode::NotFound);
    let page = client.queue_list(None, 2).await.expect("list");
    let names: Vec<_> = page
        .queues
        .iter()
        .map(|queue| queue.name.as_str())
        .collect();
    assert_eq!(names, vec!["a", "b"]);
    let rest = client.queue_list(page.next_after, 2).await.expect("list");
    assert_eq!(rest.queues.len(), 1);
    assert_eq!(rest.next_after, None);
    let update = QueueSettings {
        priority: Some(3),
        lease_ms: Some(5_000),
        ..QueueSettings::default()
    };
    let updated = client.queue_update("a", update).await.expect("update");
    assert_eq!(
        (updated.defaults.priority, updated.defaults.lease_ms),
        (3, 5_000)
    );
    client
        .enqueue_batch(vec![job("a", b"1"), job("a", b"2"), job("a", b"3")])
        .await
        .expect("batch");
    let leased = fetch_now(&client, "a", 1).await.remove(0);
    assert_eq!(leased.priority, 3, "new jobs take the updated default");
    assert_eq!(code(client.queue_delete("a").await), ErrorCode::Conflict);
    let purged = client.queue_purge("a").await.expect("purge");
    assert_eq!((purged.affected, purged.remaining), (2, 0));
    assert_eq!(
        code(client.queue_delete("a").await),
        ErrorCode::Conflict,
        "a leased job remains"
    );
    client
        .ack(leased.job_id, leased.lease_id, None)
        .await
        .expect("ack");
    client.queue_purge("a").await.expect("purge");
    client.queue_delete("a").await.expect("delete");
    assert_eq!(code(client.queue_get("a").await), ErrorCode::NotFound);
}

#[tokio::test]
async fn job_list_pages_by_enqueue_order_and_filters_by_state() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .queue_create("q", QueueSettings::default())
        .await
        .expect("create");
    let ids = client
        .enqueue_batch((0..7u8).map(|index| job("q", &[index])).collect())
        .await
        .expect("batch")
        .job_ids;
    let leased = fetch_now(&client, "q", 2).await;
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = client
            .job_list(JobListRequest {
                queue: "q".into(),
                state: None,
                after,
                limit: 3,
            })
            .await
            .expect("list");
        seen.extend(page.jobs.iter().map(|job| job.job_id));
        after = page.next_after;
        if after.is_none() {
            break;
        }
    }
    assert_eq!(seen, ids);
    let leased_list = client
        .job_list(JobListRequest {
            queue: "q".into(),
            state: Some(JobState::Leased),
            after: None,
            limit: 10,
        })
        .await
        .expect("list");
    let mut leased_ids: Vec<_> = leased.iter().map(|job| job.job_id).collect();
    leased_ids.sort();
    assert_eq!(
        leased_list
            .jobs
            .iter()
            .map(|job| job.job_id)
            .collect::<Vec<_>>(),
        leased_ids
    );
    let ready = client
        .job_list(JobListRequest {
            queue: "q".into(),
            state: Some(JobState::Ready),
            after: None,
            limit: 10,
        })
        .await
        .expect("list");
    assert_eq!(ready.jobs.len(), 5);
}

#[tokio::test]
async fn maximal_batches_of_small_jobs_round_trip() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .queue_create("q", QueueSettings::default())
        .await
        .expect("create");
    let batch_jobs_max = client.session_limits().batch_jobs_max as usize;
    let jobs: Vec<NewJob> = (0..batch_jobs_max)
        .map(|index| job("q", &(index as u32).to_be_bytes()))
        .collect();
    let ids = client
        .enqueue_batch(jobs)
        .await
        .expect("a maximal batch")
        .job_ids;
    assert_eq!(ids.len(), batch_jobs_max);
    let request = FetchRequest {
        max_jobs: taskforge_protocol::limits::FETCH_JOBS_MAX,
        ..fetch_request("q", 1)
    };
    let leased = client.fetch(request).await.expect("a maximal fetch").jobs;
    assert_eq!(
        leased.len(),
        batch_jobs_max.min(taskforge_protocol::limits::FETCH_JOBS_MAX as usize)
    );
    let acks: Vec<taskforge_protocol::AckRequest> = leased
        .iter()
        .map(|job| taskforge_protocol::AckRequest {
            job_id: job.job_id,
            lease_id: job.lease_id,
            result: None,
        })
        .collect();
    let results = client
        .ack_batch(acks)
        .await
        .expect("a maximal ack batch")
        .results;
    assert!(results.iter().all(Option::is_none), "every ack succeeded");
    assert_eq!(
        client
            .queue_stats("q")
            .await
            .expect("stats")
            .counts
            .succeeded,
        leased.len() as u64
    );
}
