//! The HTTP admin port of a real server: health, readiness, Prometheus metrics parsed with
//! a Prometheus text parser, and the token-protected JSON API.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_parse::{Scrape, Value};
use taskforge::clock::SystemClock;
use taskforge::config::{Config, Environment, Secret};
use taskforge::storage::{FaultyStorage, MemoryStorage, Storage};
use taskforge_protocol::{FetchRequest, QueueSettings};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::{eventually, job, TestServer, PROMPT, ROOT_TOKEN};

/// Largest response the helper reads; admin answers here are a few KiB.
const RESPONSE_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// An HTTP answer: status code and body.
pub struct HttpAnswer {
    /// The status code.
    pub status: u16,
    /// The body, de-chunked.
    pub body: String,
}

/// Sends `GET path` over a fresh connection (`Connection: close`), with a bearer token if
/// given. A tiny HTTP/1.1 client, so the tests need no HTTP client crate.
pub async fn http_get(addr: SocketAddr, path: &str, token: Option<&str>) -> HttpAnswer {
    let mut stream = tokio::time::timeout(PROMPT, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect to the admin port");
    let authorization = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{authorization}Connection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    let mut raw = Vec::new();
    tokio::time::timeout(
        PROMPT,
        (&mut stream).take(RESPONSE_BYTES_MAX).read_to_end(&mut raw),
    )
    .await
    .expect("answer in time")
    .expect("read the answer");
    let text = String::from_utf8(raw).expect("a text answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("headers end");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status code");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    HttpAnswer { status, body }
}

/// Decodes a chunked body.
fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if size == 0 {
            break;
        }
        body.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    body
}

/// Scrapes `/metrics` and parses it.
pub async fn scrape(addr: SocketAddr) -> Scrape {
    let answer = http_get(addr, "/metrics", None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    Scrape::parse(answer.body.lines().map(|line| Ok(line.to_string()))).expect("valid metrics")
}

/// The value of the counter or gauge `name` whose labels include `labels`; 0 if absent.
pub fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == name)
        .filter(|sample| {
            labels
                .iter()
                .all(|(key, value)| sample.labels.get(key) == Some(*value))
        })
        .map(|sample| match &sample.value {
            Value::Counter(value) | Value::Gauge(value) | Value::Untyped(value) => *value,
            other => panic!("{name} is not a counter or gauge: {other:?}"),
        })
        .sum()
}

/// Observations in the histogram `name` (its `+Inf` bucket).
fn histogram_count(scrape: &Scrape, name: &str) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == name)
        .filter_map(|sample| match &sample.value {
            Value::Histogram(buckets) => buckets.iter().map(|bucket| bucket.count).reduce(f64::max),
            _ => None,
        })
        .sum()
}

fn queue_jobs(scrape: &Scrape, queue: &str, state: &str) -> f64 {
    value(
        scrape,
        "taskforge_queue_jobs",
        &[("queue", queue), ("state", state)],
    )
}

#[tokio::test]
async fn metrics_follow_jobs_through_the_broker() {
    let server = TestServer::start().await;
    let admin = server.admin_addr();
    let client = server.client().await;
    client
        .queue_create("metered", QueueSettings::default())
        .await
        .expect("create");
    let before = scrape(admin).await;
    assert_eq!(queue_jobs(&before, "metered", "ready"), 0.0);
    assert_eq!(value(&before, "taskforge_ready", &[]), 1.0);
    assert_eq!(value(&before, "taskforge_schema_version", &[]), 4.0);
    let acked_before = value(&before, "taskforge_jobs_acked_total", &[]);

    for index in 0..10 {
        client
            .enqueue(job("metered", format!("job {index}").as_bytes()))
            .await
            .expect("enqueue");
    }
    let enqueued = scrape(admin).await;
    assert_eq!(queue_jobs(&enqueued, "metered", "ready"), 10.0);
    assert_eq!(value(&enqueued, "taskforge_jobs_enqueued_total", &[]), 10.0);
    assert_eq!(
        value(
            &enqueued,
            "taskforge_requests_total",
            &[("operation", "ENQUEUE"), ("outcome", "ok")]
        ),
        10.0
    );
    assert!(value(&enqueued, "taskforge_connections_open", &[]) >= 1.0);
    assert!(value(&enqueued, "taskforge_storage_size_bytes", &[]) > 0.0);
    // The enqueues are in the current journal file, or a checkpoint took them into sled.
    assert!(
        value(&enqueued, "taskforge_journal_file_bytes", &[]) > 0.0
            || value(&enqueued, "taskforge_journal_checkpoints_total", &[]) > 0.0
    );
    for name in [
        "taskforge_journal_checkpointed_keys_total",
        "taskforge_journal_checkpoint_seconds_total",
        "taskforge_journal_writer_waits_total",
        "taskforge_journal_writer_wait_seconds_total",
    ] {
        assert!(
            enqueued.samples.iter().any(|sample| sample.metric == name),
            "{name} is exported"
        );
    }
    assert!(histogram_count(&enqueued, "taskforge_commit_batch_writes") >= 1.0);
    assert!(histogram_count(&enqueued, "taskforge_commit_round_duration_seconds") >= 1.0);

    let leased = client
        .fetch(FetchRequest {
            queues: vec!["metered".into()],
            max_jobs: 10,
            wait_ms: 0,
            lease_ms: None,
            worker_id: None,
            weights: Vec::new(),
        })
        .await
        .expect("fetch")
        .jobs;
    assert_eq!(leased.len(), 10);
    let fetched = scrape(admin).await;
    assert_eq!(queue_jobs(&fetched, "metered", "ready"), 0.0);
    assert_eq!(queue_jobs(&fetched, "metered", "leased"), 10.0);
    assert_eq!(value(&fetched, "taskforge_jobs_leased_total", &[]), 10.0);
    assert_eq!(
        histogram_count(&fetched, "taskforge_job_wait_seconds"),
        10.0
    );

    for leased_job in &leased {
        client
            .ack(leased_job.job_id, leased_job.lease_id, None)
            .await
            .expect("ack");
    }
    let acked = scrape(admin).await;
    assert_eq!(queue_jobs(&acked, "metered", "ready"), 0.0);
    assert_eq!(queue_jobs(&acked, "metered", "leased"), 0.0);
    assert_eq!(queue_jobs(&acked, "metered", "succeeded"), 10.0);
    assert_eq!(
        value(&acked, "taskforge_jobs_acked_total", &[]),
        acked_before + 10.0
    );
    assert_eq!(value(&acked, "taskforge_live_jobs", &[]), 0.0);
    assert!(
        value(&acked, "taskforge_commit_rounds_total", &[])
            > value(&before, "taskforge_commit_rounds_total", &[])
    );
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let server = TestServer::start().await;
    let admin = server.admin_addr();
    let health = http_get(admin, "/healthz", None).await;
    assert_eq!((health.status, health.body.trim()), (200, "ok"));
    let ready = http_get(admin, "/readyz", None).await;
    assert_eq!((ready.status, ready.body.trim()), (200, "ready"));
    assert_eq!(http_get(admin, "/nothing-here", None).await.status, 404);
}

#[tokio::test]
async fn readiness_follows_storage_availability() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::defaults(Environment::Development);
    config.server.listen_addr = "127.0.0.1:0".parse().expect("address");
    config.server.admin_listen_addr = "127.0.0.1:0".parse().expect("address");
    config.broker.data_dir = data_dir.path().to_path_buf();
    config.broker.root_token = Some(Secret::new(ROOT_TOKEN));
    let faulty = Arc::new(FaultyStorage::new(Arc::new(MemoryStorage::new())));
    let storage: Arc<dyn Storage> = faulty.clone();
    let running = taskforge::server::start_with(config, storage, Arc::new(SystemClock))
        .await
        .expect("server starts");
    let admin = running.admin_addr();
    assert_eq!(http_get(admin, "/readyz", None).await.status, 200);

    let client = taskforge::client::Client::connect(
        running.local_addr(),
        taskforge::client::ClientOptions::new(taskforge_protocol::Credentials::RootToken(
            ROOT_TOKEN.into(),
        )),
    )
    .await
    .expect("connect");
    faulty.fail_apply(true);
    faulty.fail_reads(true);
    assert!(client
        .queue_create("doomed", QueueSettings::default())
        .await
        .is_err());
    // The failed commit's reply can arrive just before the committer marks storage
    // unavailable, so poll.
    let unready = eventually("readiness to drop while storage fails", || async {
        let answer = http_get(admin, "/readyz", None).await;
        (answer.status == 503).then_some(answer)
    })
    .await;
    assert!(
        unready.body.contains("storage unavailable"),
        "{}",
        unready.body
    );
    assert_eq!(value(&scrape(admin).await, "taskforge_ready", &[]), 0.0);

    faulty.fail_apply(false);
    faulty.fail_reads(false);
    eventually("readiness after storage recovers", || async {
        (http_get(admin, "/readyz", None).await.status == 200).then_some(())
    })
    .await;
    running.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn the_json_api_needs_the_token_and_shows_no_secrets() {
    let server = TestServer::start().await;
    let admin = server.admin_addr();
    let client = server.client().await;
    client
        .queue_create("private", QueueSettings::default())
        .await
        .expect("create");
    let secret_payload = "card-number-4111111111111111";
    let enqueued = client
        .enqueue(job("private", secret_payload.as_bytes()))
        .await
        .expect("enqueue");
    let job_path = format!("/api/v1/jobs/{}", enqueued.job_id);
    let worker = match client
        .call(taskforge_protocol::Request::WorkerRegister(
            taskforge_protocol::WorkerRegister {
                name: "api-worker".into(),
                hostname: "host".into(),
                pid: 7,
                version: "1".into(),
                labels: Vec::new(),
                concurrency: 1,
                queues: vec![taskforge_protocol::QueueAssignment {
                    queue: "private".into(),
                    weight: 1,
                    active: true,
                }],
            },
        ))
        .await
        .expect("register")
    {
        taskforge_protocol::Response::WorkerRegister(info) => info,
        other => panic!("unexpected {other:?}"),
    };
    let worker_path = format!("/api/v1/workers/{}", worker.worker_id);

    for path in [
        "/api/v1/queues",
        "/api/v1/queues/private",
        job_path.as_str(),
        "/api/v1/workers",
        worker_path.as_str(),
    ] {
        let anonymous = http_get(admin, path, None).await;
        assert_eq!(anonymous.status, 401, "{path} without a token");
        let wrong = http_get(admin, path, Some("tfr_not_the_root_token_at_all")).await;
        assert_eq!(wrong.status, 401, "{path} with a wrong token");
        assert!(!wrong.body.contains("private"), "{}", wrong.body);
    }

    let queues = http_get(admin, "/api/v1/queues", Some(ROOT_TOKEN)).await;
    assert_eq!(queues.status, 200, "{}", queues.body);
    let page: serde_json::Value = serde_json::from_str(&queues.body).expect("json");
    assert_eq!(page["queues"][0]["name"], "private");
    assert_eq!(page["queues"][0]["counts"]["ready"], 1);
    assert!(page["queues"][0]["oldest_ready_age_ms"].is_u64());

    let job_answer = http_get(admin, &job_path, Some(ROOT_TOKEN)).await;
    assert_eq!(job_answer.status, 200, "{}", job_answer.body);
    let view: serde_json::Value = serde_json::from_str(&job_answer.body).expect("json");
    assert_eq!(view["job_id"], enqueued.job_id.to_string());
    assert_eq!(view["state"], "ready");
    assert_eq!(view["payload_bytes"], secret_payload.len());
    assert!(view.get("payload").is_none());

    let workers = http_get(admin, "/api/v1/workers?state=active", Some(ROOT_TOKEN)).await;
    assert_eq!(workers.status, 200, "{}", workers.body);
    let page: serde_json::Value = serde_json::from_str(&workers.body).expect("json");
    assert_eq!(page["workers"][0]["name"], "api-worker");
    let one = http_get(admin, &worker_path, Some(ROOT_TOKEN)).await;
    assert_eq!(one.status, 200, "{}", one.body);
    let view: serde_json::Value = serde_json::from_str(&one.body).expect("json");
    assert_eq!(view["assignments"][0]["queue"], "private");
    assert_eq!(
        http_get(admin, "/api/v1/workers/999", Some(ROOT_TOKEN))
            .await
            .status,
        404
    );

    for answer in [&queues, &job_answer, &workers, &one] {
        assert!(!answer.body.contains(ROOT_TOKEN));
        assert!(!answer.body.contains(secret_payload));
        assert!(!answer.body.contains("card-number"));
    }
    let missing = http_get(admin, "/api/v1/queues/absent", Some(ROOT_TOKEN)).await;
    assert_eq!(missing.status, 404);
    let malformed = http_get(admin, "/api/v1/jobs/not-an-id", Some(ROOT_TOKEN)).await;
    assert_eq!(malformed.status, 400);
    let too_big = http_get(admin, "/api/v1/queues?limit=5000", Some(ROOT_TOKEN)).await;
    assert_eq!(too_big.status, 400);
}

#[tokio::test]
async fn the_admin_port_stops_with_the_server() {
    let mut server = TestServer::start().await;
    let admin = server.admin_addr();
    assert_eq!(http_get(admin, "/healthz", None).await.status, 200);
    server.stop().await;
    let refused = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(admin))
        .await
        .expect("connect attempt ends");
    assert!(
        refused.is_err(),
        "the admin port still accepts after shutdown"
    );
}

#[tokio::test]
async fn a_taken_admin_port_fails_the_start_with_its_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_addr = taken.local_addr().expect("address");
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::defaults(Environment::Development);
    config.server.listen_addr = "127.0.0.1:0".parse().expect("address");
    config.server.admin_listen_addr = taken_addr;
    config.broker.data_dir = data_dir.path().to_path_buf();
    config.broker.root_token = Some(Secret::new(ROOT_TOKEN));
    match taskforge::server::start(config).await {
        Err(error @ taskforge::server::StartError::AdminBind { .. }) => {
            assert!(
                error.to_string().contains(&taken_addr.to_string()),
                "{error}"
            );
        }
        Err(other) => panic!("expected an admin bind error, got {other}"),
        Ok(_) => panic!("started on a taken admin port"),
    }
}

#[tokio::test]
async fn worker_gauges_and_the_lost_and_expired_counters_move() {
    let server = TestServer::start_with_manual_clock_configured(|config| {
        config.broker.heartbeat_timeout_ms = 1_000;
    })
    .await;
    let admin = server.admin_addr();
    let client = server.client().await;
    client
        .queue_create("metered", QueueSettings::default())
        .await
        .expect("create");
    let register = taskforge_protocol::WorkerRegister {
        name: "metered-worker".into(),
        hostname: "host".into(),
        pid: 1,
        version: "1".into(),
        labels: Vec::new(),
        concurrency: 1,
        queues: vec![taskforge_protocol::QueueAssignment {
            queue: "metered".into(),
            weight: 1,
            active: true,
        }],
    };
    client
        .call(taskforge_protocol::Request::WorkerRegister(register))
        .await
        .expect("register");
    let registered = scrape(admin).await;
    assert_eq!(
        value(&registered, "taskforge_workers", &[("state", "active")]),
        1.0
    );
    assert_eq!(value(&registered, "taskforge_workers_lost_total", &[]), 0.0);

    client
        .enqueue(taskforge_protocol::NewJob {
            ttl_ms: Some(500),
            delay_ms: Some(60_000),
            ..job("metered", b"late")
        })
        .await
        .expect("enqueue");

    server.advance(1_000);
    eventually(
        "the silent worker lost and the late job expired",
        || async {
            let after = scrape(admin).await;
            let counted = value(&after, "taskforge_workers", &[("state", "lost")]) == 1.0
                && value(&after, "taskforge_workers", &[("state", "active")]) == 0.0
                && value(&after, "taskforge_workers_lost_total", &[]) == 1.0
                && value(&after, "taskforge_jobs_expired_total", &[]) == 1.0
                && queue_jobs(&after, "metered", "expired") == 1.0;
            counted.then_some(())
        },
    )
    .await;
}
