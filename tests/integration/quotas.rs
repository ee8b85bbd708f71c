//! Quotas from the subscription, each hit through a real server, the enqueue rate
//! measured on the injected clock, and a noisy neighbour beside a well-behaved tenant.

use std::time::{Duration, Instant};

use taskforge::client::{Client, ClientError};
use taskforge_protocol::{
    Credentials, ErrorCode, ErrorDetails, Heartbeat, OrgId, Plan, PlanLimits, QueueAssignment,
    QueueSettings, Request, Response, SubscriptionSet, SubscriptionStatus, WorkerInfo,
    WorkerRegister,
};

use crate::support::{job, TestServer};
use crate::tenancy::{call, code, connect, fetch, key, org, project, with_key, ALL_SCOPES};

fn limits() -> PlanLimits {
    PlanLimits {
        projects_max: 1,
        queues_per_project_max: 2,
        pending_jobs_max: 3,
        payload_bytes_max: 16,
        enqueue_rate_per_second: 1_000,
        enqueue_burst: 1_000,
        connections_max: 2,
        workers_max: 1,
        retention_ms: 60_000,
    }
}

async fn set_plan(root: &Client, org_id: OrgId, limits: PlanLimits, status: SubscriptionStatus) {
    call(
        root,
        Request::SubscriptionSet(SubscriptionSet {
            org_id,
            plan: Plan::Custom,
            status,
            period_start_ms: 0,
            period_end_ms: u64::MAX,
            limits: Some(limits),
        }),
    )
    .await;
}

async fn register(client: &Client, queue: &str) -> Result<WorkerInfo, ClientError> {
    let request = Request::WorkerRegister(WorkerRegister {
        name: "quota-worker".into(),
        hostname: "host".into(),
        pid: 1,
        version: "1".into(),
        labels: Vec::new(),
        concurrency: 1,
        queues: vec![QueueAssignment {
            queue: queue.into(),
            weight: 1,
            active: true,
        }],
    });
    match client.call(request).await? {
        Response::WorkerRegister(info) => Ok(info),
        other => panic!("unexpected {other:?}"),
    }
}

fn quota_of(error: ClientError) -> (String, u64, u64) {
    match error {
        ClientError::Server(body) | ClientError::Handshake(body) => {
            assert_eq!(body.error_code(), ErrorCode::QuotaExceeded, "{body}");
            match body.details {
                ErrorDetails::Quota {
                    limit,
                    current,
                    max,
                } => (limit, current, max),
                other => panic!("quota details expected, got {other:?}"),
            }
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn every_quota_refuses_with_its_name_current_value_and_maximum() {
    let server = TestServer::start().await;
    let root = server.client().await;
    let org_id = org(&root, "small").await;
    set_plan(&root, org_id, limits(), SubscriptionStatus::Active).await;
    let project_id = project(&root, org_id, "only").await.project_id;
    let second = root
        .call(Request::ProjectCreate(taskforge_protocol::ProjectCreate {
            org_id,
            name: "two".into(),
            slug: "two".into(),
        }))
        .await
        .expect_err("one project only");
    assert_eq!(quota_of(second), ("projects".into(), 1, 1));

    let secret = key(&root, project_id, &ALL_SCOPES, None).await;
    let client = with_key(&server, &secret).await;
    client
        .queue_create("a", QueueSettings::default())
        .await
        .expect("first queue");
    client
        .queue_create("b", QueueSettings::default())
        .await
        .expect("second queue");
    let third = client
        .queue_create("c", QueueSettings::default())
        .await
        .expect_err("third queue");
    assert_eq!(quota_of(third), ("queues_per_project".into(), 2, 2));

    let first_worker = register(&client, "a").await.expect("first worker");
    let second_worker = register(&client, "a").await.expect_err("one worker only");
    assert_eq!(quota_of(second_worker), ("workers".into(), 1, 1));
    client
        .call(Request::Heartbeat(Heartbeat {
            worker_id: first_worker.worker_id,
            in_flight: 0,
            assignments_version: first_worker.assignments_version,
            leaving: true,
        }))
        .await
        .expect("the worker leaves");
    register(&client, "a")
        .await
        .expect("a stopped worker gives its place back");

    let big = client
        .enqueue(job("a", &[0u8; 17]))
        .await
        .expect_err("payload over the plan");
    assert_eq!(quota_of(big), ("payload_bytes".into(), 17, 16));
    for index in 0..3u8 {
        client
            .enqueue(job("a", &[index]))
            .await
            .expect("within pending_jobs");
    }
    let over = client
        .enqueue(job("b", b"4"))
        .await
        .expect_err("pending_jobs");
    assert_eq!(quota_of(over), ("pending_jobs".into(), 3, 3));
    let leased = client.fetch(fetch("a")).await.expect("fetch").jobs;
    client
        .ack(leased[0].job_id, leased[0].lease_id, None)
        .await
        .expect("ack");
    client
        .enqueue(job("b", b"4"))
        .await
        .expect("a finished job frees its place");

    let second_connection = with_key(&server, &secret).await;
    second_connection.ping().await.expect("second connection");
    let third_connection = connect(&server, Credentials::ApiKey(secret.secret.clone()), None).await;
    let (limit, current, max) = quota_of(third_connection.expect_err("two connections only"));
    assert_eq!((limit.as_str(), current, max), ("connections", 2, 2));
    drop(client);
    let freed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if connect(&server, Credentials::ApiKey(secret.secret.clone()), None)
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(freed.is_ok(), "a closed connection gives its place back");
}

#[tokio::test]
async fn the_enqueue_rate_admits_its_configured_rate_on_the_injected_clock() {
    const RATE_PER_SECOND: u32 = 100;
    const BURST: u32 = 10;
    const SECONDS: u64 = 5;
    const STEP_MS: u64 = 5;
    let server = TestServer::start_with_manual_clock().await;
    let root = server.client().await;
    let org_id = org(&root, "rated").await;
    let limits = PlanLimits {
        enqueue_rate_per_second: RATE_PER_SECOND,
        enqueue_burst: BURST,
        ..PlanLimits {
            pending_jobs_max: 1_000_000,
            payload_bytes_max: 1024,
            ..limits()
        }
    };
    set_plan(&root, org_id, limits, SubscriptionStatus::Active).await;
    let project_id = project(&root, org_id, "p").await.project_id;
    let client = with_key(&server, &key(&root, project_id, &ALL_SCOPES, None).await).await;
    client
        .queue_create("q", QueueSettings::default())
        .await
        .expect("queue");
    let mut admitted = 0u64;
    let mut limited = 0u64;
    for _ in 0..SECONDS * 1_000 / STEP_MS {
        for _ in 0..2 {
            match client.enqueue(job("q", b"x")).await {
                Ok(_) => admitted += 1,
                Err(ClientError::Server(body)) => {
                    assert_eq!(body.error_code(), ErrorCode::RateLimited);
                    assert!(
                        matches!(body.details, ErrorDetails::RetryAfter { retry_after_ms } if retry_after_ms > 0)
                    );
                    limited += 1;
                }
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        server.advance(STEP_MS);
    }
    let expected = u64::from(RATE_PER_SECOND) * SECONDS;
    let sustained = admitted - u64::from(BURST);
    eprintln!("rate limit: {admitted} admitted ({sustained} beyond the burst; configured {expected}), {limited} refused");
    assert!(
        sustained * 10 >= expected * 9 && sustained * 10 <= expected * 11,
        "admitted {sustained} beyond the burst over {SECONDS} s; the rate allows {expected} (±10%)"
    );
}

#[tokio::test]
async fn a_lapsed_subscription_refuses_enqueues_but_lets_workers_drain() {
    let server = TestServer::start().await;
    let root = server.client().await;
    let org_id = org(&root, "lapsing").await;
    let project_id = project(&root, org_id, "p").await.project_id;
    let client = with_key(&server, &key(&root, project_id, &ALL_SCOPES, None).await).await;
    client
        .queue_create("q", QueueSettings::default())
        .await
        .expect("queue");
    client
        .enqueue(job("q", b"before"))
        .await
        .expect("enqueue while active");
    set_plan(
        &root,
        org_id,
        taskforge::broker::core::tenants::plan_limits(Plan::Pro),
        SubscriptionStatus::PastDue,
    )
    .await;
    assert_eq!(
        code(client.enqueue(job("q", b"after")).await),
        ErrorCode::Forbidden
    );
    let leased = client
        .fetch(fetch("q"))
        .await
        .expect("workers still fetch")
        .jobs;
    client
        .ack(leased[0].job_id, leased[0].lease_id, None)
        .await
        .expect("and ack");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noisy_neighbour_does_not_starve_a_quiet_tenant() {
    const QUIET_ROUND_TRIPS: usize = 200;
    let server = TestServer::start().await;
    let root = server.client().await;
    let noisy_org = org(&root, "noisy").await;
    let quiet_org = org(&root, "quiet").await;
    let noisy_limits = PlanLimits {
        enqueue_rate_per_second: 50,
        enqueue_burst: 50,
        pending_jobs_max: 1_000_000,
        payload_bytes_max: 1024,
        connections_max: 10,
        ..limits()
    };
    set_plan(&root, noisy_org, noisy_limits, SubscriptionStatus::Active).await;
    let noisy_project = project(&root, noisy_org, "n").await.project_id;
    let quiet_project = project(&root, quiet_org, "q").await.project_id;
    let noisy_key = key(&root, noisy_project, &ALL_SCOPES, None).await;
    let quiet = with_key(&server, &key(&root, quiet_project, &ALL_SCOPES, None).await).await;
    quiet
        .queue_create("q", QueueSettings::default())
        .await
        .expect("queue");
    let stop = tokio_util::sync::CancellationToken::new();
    let mut flooders = Vec::new();
    for _ in 0..4 {
        let noisy = with_key(&server, &noisy_key).await;
        let stop = stop.clone();
        flooders.push(tokio::spawn(async move {
            let _ = noisy.queue_create("flood", QueueSettings::default()).await;
            let (mut admitted, mut limited) = (0u64, 0u64);
            while !stop.is_cancelled() {
                match noisy.enqueue(job("flood", b"spam")).await {
                    Ok(_) => admitted += 1,
                    Err(_) => limited += 1,
                }
            }
            (admitted, limited)
        }));
    }
    let mut latencies = Vec::with_capacity(QUIET_ROUND_TRIPS);
    for index in 0..QUIET_ROUND_TRIPS {
        let started = Instant::now();
        quiet
            .enqueue(job("q", &index.to_be_bytes()))
            .await
            .expect("quiet enqueue");
        let leased = quiet.fetch(fetch("q")).await.expect("quiet fetch").jobs;
        quiet
            .ack(leased[0].job_id, leased[0].lease_id, None)
            .await
            .expect("quiet ack");
        latencies.push(started.elapsed());
    }
    stop.cancel();
    let (mut admitted, mut limited) = (0, 0);
    for flooder in flooders {
        let (a, l) = flooder.await.expect("flooder");
        admitted += a;
        limited += l;
    }
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[latencies.len() * 99 / 100];
    eprintln!(
        "noisy neighbour: {admitted} noisy enqueues admitted, {limited} rate-limited; quiet round trip \
         (enqueue+fetch+ack, fsync=always) p50 {p50:?}, p99 {p99:?}"
    );
    assert!(limited > admitted, "the noisy tenant is held to its rate");
    assert!(
        p99 < Duration::from_secs(1),
        "the quiet tenant's p99 {p99:?} stays bounded"
    );
}
