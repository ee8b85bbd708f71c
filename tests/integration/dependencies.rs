//! Dependencies, unique keys, expiry and per-queue flow limits through a real server.

use std::collections::BTreeSet;

use taskforge::client::Client;
use taskforge_protocol::{
    ErrorCode, ErrorDetails, FetchRequest, JobId, JobState, LeasedJob, NewJob, ParentFailure,
    ParentRef, QueueSettings, Retry, UniqueKey, UniqueUntil,
};

use crate::support::{code, eventually, job, TestServer};
use crate::tenancy::{key, org, project, with_key, ALL_SCOPES};

fn fetch_from(queue: &str, max_jobs: u32) -> FetchRequest {
    FetchRequest {
        queues: vec![queue.into()],
        max_jobs,
        wait_ms: 0,
        lease_ms: None,
        worker_id: None,
        weights: Vec::new(),
    }
}

fn child(queue: &str, parents: Vec<ParentRef>, policy: ParentFailure) -> NewJob {
    NewJob {
        depends_on: parents,
        on_parent_failure: policy,
        ..job(queue, b"child")
    }
}

async fn with_queue(server: &TestServer, queue: &str) -> Client {
    let client = server.client().await;
    client
        .queue_create(queue, QueueSettings::default())
        .await
        .expect("queue");
    client
}

async fn take(client: &Client, queue: &str) -> Vec<LeasedJob> {
    client
        .fetch(fetch_from(queue, 100))
        .await
        .expect("fetch")
        .jobs
}

async fn state(client: &Client, job_id: JobId) -> JobState {
    client.job_get(job_id).await.expect("job").state
}

#[tokio::test]
async fn cycles_unknown_parents_and_other_projects_parents_are_refused_storing_nothing() {
    let server = TestServer::start().await;
    let root = server.client().await;
    let org_id = org(&root, "graphs").await;
    let (a, b) = (
        project(&root, org_id, "graph-a").await.project_id,
        project(&root, org_id, "graph-b").await.project_id,
    );
    let client_a = with_key(&server, &key(&root, a, &ALL_SCOPES, None).await).await;
    let client_b = with_key(&server, &key(&root, b, &ALL_SCOPES, None).await).await;
    for client in [&client_a, &client_b] {
        client
            .queue_create("g", QueueSettings::default())
            .await
            .expect("queue");
    }
    let foreign = client_b
        .enqueue(job("g", b"b"))
        .await
        .expect("enqueue")
        .job_id;

    let cycle = vec![
        job("g", b"root"),
        child("g", vec![ParentRef::Batch(2)], ParentFailure::Cancel),
        child("g", vec![ParentRef::Batch(1)], ParentFailure::Cancel),
    ];
    let refused = client_a.enqueue_batch(cycle).await.expect_err("a cycle");
    match &refused {
        taskforge::client::ClientError::Server(body) => {
            assert_eq!(body.error_code(), ErrorCode::InvalidArgument);
            assert!(body.message.contains("cycle"), "{}", body.message);
            assert!(matches!(
                body.details,
                ErrorDetails::BatchItem { index: 1 | 2 }
            ));
        }
        other => panic!("unexpected {other:?}"),
    }
    let unknown = client_a
        .enqueue(child(
            "g",
            vec![ParentRef::Job(JobId([7; 16]))],
            ParentFailure::Cancel,
        ))
        .await
        .expect_err("an unknown parent");
    let other_project = client_a
        .enqueue_batch(vec![
            job("g", b"fine"),
            child("g", vec![ParentRef::Job(foreign)], ParentFailure::Cancel),
        ])
        .await
        .expect_err("another project's parent");
    assert_eq!(unknown.code(), Some(ErrorCode::NotFound));
    assert_eq!(other_project.code(), Some(ErrorCode::NotFound));
    let message = |error: &taskforge::client::ClientError| match error {
        taskforge::client::ClientError::Server(body) => body
            .message
            .replace(&foreign.to_string(), "ID")
            .replace(&JobId([7; 16]).to_string(), "ID"),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(
        message(&unknown),
        message(&other_project),
        "indistinguishable"
    );

    let counts = client_a.queue_stats("g").await.expect("stats").counts;
    assert_eq!(counts, Default::default(), "nothing was stored");
}

#[tokio::test]
async fn a_diamond_releases_its_fan_in_job_once_both_parents_succeed() {
    let server = TestServer::start().await;
    let client = with_queue(&server, "d").await;
    let created = client
        .enqueue_batch(vec![
            job("d", b"root"),
            child("d", vec![ParentRef::Batch(0)], ParentFailure::Cancel),
            child("d", vec![ParentRef::Batch(0)], ParentFailure::Cancel),
            child(
                "d",
                vec![ParentRef::Batch(1), ParentRef::Batch(2)],
                ParentFailure::Cancel,
            ),
        ])
        .await
        .expect("batch");
    let ids = created.job_ids.clone();
    assert_eq!(created.duplicates, vec![false; 4]);
    assert_eq!(state(&client, ids[3]).await, JobState::Blocked);
    assert_eq!(
        client.queue_stats("d").await.expect("stats").counts.blocked,
        3
    );
    let blocked = client
        .job_list(taskforge_protocol::JobListRequest {
            queue: "d".into(),
            state: Some(JobState::Blocked),
            after: None,
            limit: 10,
        })
        .await
        .expect("list blocked");
    assert_eq!(
        blocked
            .jobs
            .iter()
            .map(|job| job.job_id)
            .collect::<Vec<_>>(),
        ids[1..].to_vec(),
        "blocked jobs are listed"
    );

    let roots = take(&client, "d").await;
    assert_eq!(roots.len(), 1, "only the root is ready");
    client
        .ack(ids[0], roots[0].lease_id, Some(b"r".to_vec()))
        .await
        .expect("ack");
    let middles = take(&client, "d").await;
    assert_eq!(
        middles.len(),
        2,
        "both middles ready once the root succeeded"
    );
    client
        .ack(middles[0].job_id, middles[0].lease_id, Some(b"m1".to_vec()))
        .await
        .expect("ack");
    let fan_in = client.job_get(ids[3]).await.expect("job");
    assert_eq!(
        (fan_in.state, fan_in.parents_remaining),
        (JobState::Blocked, 1)
    );
    assert_eq!(fan_in.parents, vec![ids[1], ids[2]]);
    client
        .ack(middles[1].job_id, middles[1].lease_id, Some(b"m2".to_vec()))
        .await
        .expect("ack");
    let last = take(&client, "d").await;
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].job_id, ids[3]);
    let results = client.job_results(ids[3]).await.expect("results");
    let parent_results: Vec<_> = results
        .parents
        .iter()
        .map(|parent| (parent.job_id, parent.result.clone()))
        .collect();
    let result_of = |job_id: JobId| {
        if job_id == middles[0].job_id {
            Some(b"m1".to_vec())
        } else {
            Some(b"m2".to_vec())
        }
    };
    let expected = vec![(ids[1], result_of(ids[1])), (ids[2], result_of(ids[2]))];
    assert_eq!(parent_results, expected, "in the order named");
    let root = client.job_get(ids[0]).await.expect("root");
    assert_eq!(root.children, vec![ids[1], ids[2]]);
}

#[tokio::test]
async fn failed_parents_cancel_or_release_children_by_their_policy() {
    let server = TestServer::start().await;
    let client = with_queue(&server, "p").await;
    let parent = client
        .enqueue(job("p", b"parent"))
        .await
        .expect("enqueue")
        .job_id;
    let created = client
        .enqueue_batch(vec![
            child("p", vec![ParentRef::Job(parent)], ParentFailure::Cancel),
            child("p", vec![ParentRef::Job(parent)], ParentFailure::Run),
            child("p", vec![ParentRef::Batch(0)], ParentFailure::Run),
        ])
        .await
        .expect("batch");
    let ids = created.job_ids;
    let leased = take(&client, "p").await;
    client
        .fail(parent, leased[0].lease_id, "fatal", Retry::Never)
        .await
        .expect("fail");
    assert_eq!(state(&client, ids[0]).await, JobState::Cancelled);
    let cancelled = client.job_get(ids[0]).await.expect("job");
    assert!(
        cancelled
            .last_error
            .as_deref()
            .is_some_and(|error| error.contains("dead")),
        "{:?}",
        cancelled.last_error
    );
    assert_eq!(state(&client, ids[1]).await, JobState::Ready, "policy run");
    assert_eq!(
        state(&client, ids[2]).await,
        JobState::Ready,
        "a cancelled parent releases a child with policy run"
    );
    // A parent already dead when the child arrives counts the same way.
    let late = client
        .enqueue_batch(vec![
            child("p", vec![ParentRef::Job(parent)], ParentFailure::Cancel),
            child("p", vec![ParentRef::Batch(0)], ParentFailure::Cancel),
        ])
        .await
        .expect("late children");
    for job_id in late.job_ids {
        assert_eq!(state(&client, job_id).await, JobState::Cancelled, "cascade");
    }
}

#[tokio::test]
async fn concurrent_duplicate_enqueues_create_exactly_one_job() {
    let server = TestServer::start().await;
    with_queue(&server, "u").await;
    let mut clients = Vec::new();
    for _ in 0..16 {
        clients.push(server.client().await);
    }
    let unique = NewJob {
        unique: Some(UniqueKey {
            key: "invoice-42".into(),
            until: Some(UniqueUntil::Finished),
            window_ms: None,
        }),
        ..job("u", b"once")
    };
    let mut tasks = Vec::new();
    for client in clients {
        let unique = unique.clone();
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for _ in 0..5 {
                answers.push(client.enqueue(unique.clone()).await.expect("enqueue"));
            }
            answers
        }));
    }
    let mut ids = BTreeSet::new();
    let mut created = 0;
    for task in tasks {
        for answer in task.await.expect("task") {
            ids.insert(answer.job_id);
            created += usize::from(!answer.duplicate);
        }
    }
    assert_eq!(ids.len(), 1, "80 enqueues from 16 connections, one job");
    assert_eq!(created, 1);
    let admin = server.client().await;
    assert_eq!(admin.queue_stats("u").await.expect("stats").counts.ready, 1);
}

#[tokio::test]
async fn unique_keys_hold_by_state_and_by_window_and_across_a_restart() {
    let mut server = TestServer::start_with_manual_clock().await;
    let client = with_queue(&server, "u").await;
    let keyed = |key: &str, until: Option<UniqueUntil>, window_ms: Option<u64>| NewJob {
        unique: Some(UniqueKey {
            key: key.into(),
            until,
            window_ms,
        }),
        ..job("u", key.as_bytes())
    };
    // Until started: a duplicate while ready, a new job once the first is leased.
    let first = client
        .enqueue(keyed("s", Some(UniqueUntil::Started), None))
        .await
        .expect("enqueue");
    let again = client
        .enqueue(keyed("s", Some(UniqueUntil::Started), None))
        .await
        .expect("enqueue");
    assert!(again.duplicate && again.job_id == first.job_id);
    let leased = take(&client, "u").await;
    let after_start = client
        .enqueue(keyed("s", Some(UniqueUntil::Started), None))
        .await
        .expect("enqueue");
    assert!(!after_start.duplicate);
    // Until finished: a duplicate while leased, a new job once it is acknowledged.
    for job in &leased {
        client
            .ack(job.job_id, job.lease_id, None)
            .await
            .expect("ack");
    }
    take(&client, "u").await;
    let finished = client
        .enqueue(keyed("f", Some(UniqueUntil::Finished), None))
        .await
        .expect("enqueue");
    let leased = take(&client, "u").await;
    let while_leased = client
        .enqueue(keyed("f", Some(UniqueUntil::Finished), None))
        .await
        .expect("enqueue");
    assert!(while_leased.duplicate && while_leased.job_id == finished.job_id);
    assert_eq!(while_leased.state, JobState::Leased);
    client
        .ack(leased[0].job_id, leased[0].lease_id, None)
        .await
        .expect("ack");
    assert!(
        !client
            .enqueue(keyed("f", Some(UniqueUntil::Finished), None))
            .await
            .expect("enqueue")
            .duplicate
    );
    // A window holds even after the job finished, and survives a restart.
    let windowed = client
        .enqueue(keyed("w", None, Some(10_000)))
        .await
        .expect("enqueue");
    let leased = take(&client, "u").await;
    for job in leased {
        client
            .ack(job.job_id, job.lease_id, None)
            .await
            .expect("ack");
    }
    drop(client);
    server.restart().await;
    let client = server.client().await;
    server.advance(9_999);
    let inside = client
        .enqueue(keyed("w", None, Some(10_000)))
        .await
        .expect("enqueue");
    assert!(inside.duplicate && inside.job_id == windowed.job_id);
    assert_eq!(inside.state, JobState::Succeeded);
    server.advance(1);
    assert!(
        !client
            .enqueue(keyed("w", None, Some(10_000)))
            .await
            .expect("enqueue")
            .duplicate,
        "the window ended"
    );
}

#[tokio::test]
async fn expired_jobs_are_never_delivered_and_their_children_follow_policy() {
    let server = TestServer::start_with_manual_clock().await;
    let client = with_queue(&server, "e").await;
    let created = client
        .enqueue_batch(vec![
            NewJob {
                ttl_ms: Some(1_000),
                delay_ms: Some(5_000),
                ..job("e", b"late")
            },
            child("e", vec![ParentRef::Batch(0)], ParentFailure::Cancel),
        ])
        .await
        .expect("batch");
    let ids = created.job_ids;
    server.advance(999);
    assert_eq!(state(&client, ids[0]).await, JobState::Scheduled);
    server.advance(1);
    eventually("the job expired", || async {
        (state(&client, ids[0]).await == JobState::Expired).then_some(())
    })
    .await;
    assert_eq!(state(&client, ids[1]).await, JobState::Cancelled);
    server.advance(10_000);
    assert!(take(&client, "e").await.is_empty(), "never delivered");
    let counts = client.queue_stats("e").await.expect("stats").counts;
    assert_eq!((counts.expired, counts.cancelled), (1, 1));
    let refused = client
        .enqueue(NewJob {
            ttl_ms: Some(0),
            ..job("e", b"x")
        })
        .await;
    assert_eq!(code(refused), ErrorCode::InvalidArgument);
}

#[tokio::test]
async fn in_flight_and_rate_limits_hold_under_concurrent_workers() {
    let server = TestServer::start_with_manual_clock().await;
    let admin = server.client().await;
    admin
        .queue_create(
            "limited",
            QueueSettings {
                in_flight_max: Some(3),
                ..QueueSettings::default()
            },
        )
        .await
        .expect("queue");
    admin
        .queue_create(
            "paced",
            QueueSettings {
                deliveries_per_second: Some(10),
                ..QueueSettings::default()
            },
        )
        .await
        .expect("queue");
    for index in 0..30u8 {
        admin
            .enqueue(job("limited", &[index]))
            .await
            .expect("enqueue");
        admin
            .enqueue(job("paced", &[index]))
            .await
            .expect("enqueue");
    }
    let mut workers = Vec::new();
    for _ in 0..6 {
        workers.push(server.client().await);
    }
    // Six workers at once: never more than three leases on the limited queue.
    let mut held = Vec::new();
    let fetches = workers
        .iter()
        .map(|worker| worker.fetch(fetch_from("limited", 2)));
    for answer in futures::future::join_all(fetches).await {
        held.extend(answer.expect("fetch").jobs);
    }
    assert_eq!(held.len(), 3);
    let done = held.pop().expect("a lease");
    admin
        .ack(done.job_id, done.lease_id, None)
        .await
        .expect("ack");
    let fetches = workers
        .iter()
        .map(|worker| worker.fetch(fetch_from("limited", 2)));
    let refilled: usize = futures::future::join_all(fetches)
        .await
        .into_iter()
        .map(|answer| answer.expect("fetch").jobs.len())
        .sum();
    assert_eq!(refilled, 1, "one place freed, one more lease");

    // A second's worth (10) at once, then 10 a second.
    let fetches = workers
        .iter()
        .map(|worker| worker.fetch(fetch_from("paced", 5)));
    let burst: usize = futures::future::join_all(fetches)
        .await
        .into_iter()
        .map(|answer| answer.expect("fetch").jobs.len())
        .sum();
    assert_eq!(burst, 10);
    server.advance(500);
    let fetches = workers
        .iter()
        .map(|worker| worker.fetch(fetch_from("paced", 5)));
    let paced: usize = futures::future::join_all(fetches)
        .await
        .into_iter()
        .map(|answer| answer.expect("fetch").jobs.len())
        .sum();
    assert_eq!(paced, 5, "half a second brings five tokens");
    let stats = admin.queue_get("paced").await.expect("queue");
    assert_eq!(stats.defaults.deliveries_per_second, Some(10));
}
