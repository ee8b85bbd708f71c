//! The worker runtime against a fake broker (`broker.rs`): outcomes, leases, shutdown,
//! registration and heartbeats, the broker's orders, assignments, logs, progress and
//! failure details.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use taskforge_protocol::limits::{LOG_LINES_PER_REQUEST_MAX, PROTOCOL_VERSION};
use taskforge_protocol::{
    Credentials, ErrorBody, ErrorCode, LogLevel, QueueAssignment, Retry, WorkerCommand,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::client::fake_server::FakeServer;
use crate::client::{ClientOptions, ReconnectOptions};

mod broker;
mod orders;
mod reporting;

use broker::{fake_broker, job_in, lock, state_with_jobs, FAKE_HEARTBEAT_INTERVAL_MS};

async fn connect(server: &FakeServer) -> Client {
    let mut options = ClientOptions::new(Credentials::RootToken("token".to_string()));
    options.request_timeout = Duration::from_secs(2);
    options.reconnect = ReconnectOptions {
        attempts_max: 5,
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
    };
    let client = Client::connect(server.address(), options)
        .await
        .expect("connect");
    assert_eq!(client.hello().protocol_version, PROTOCOL_VERSION);
    client
}

/// Short leases and polls, so the tests run in well under a second each.
fn test_options(concurrency: usize) -> WorkerOptions {
    let mut options = WorkerOptions::new(["emails"]);
    options.concurrency = concurrency;
    options.fetch_batch = 4;
    options.fetch_wait_ms = 50;
    options.lease_ms = 200;
    options.shutdown_timeout = Duration::from_secs(2);
    options.fetch_error_pause = Duration::from_millis(20);
    options.heartbeat_interval = Duration::from_millis(u64::from(FAKE_HEARTBEAT_INTERVAL_MS));
    options
}

/// Polls `condition` until it holds; fails the test after a few seconds.
async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

type RunHandle = tokio::task::JoinHandle<Result<WorkerReport, ClientError>>;

fn spawn_worker<Handler, HandlerFuture>(
    client: Client,
    options: WorkerOptions,
    handler: Handler,
    shutdown: &CancellationToken,
) -> RunHandle
where
    Handler: Fn(JobContext) -> HandlerFuture + Send + Sync + 'static,
    HandlerFuture: Future<Output = Result<Option<Vec<u8>>, JobError>> + Send + 'static,
{
    let shutdown = shutdown.clone();
    tokio::spawn(async move { Worker::new(client, options).run(handler, shutdown).await })
}

#[tokio::test]
async fn worker_acks_successes_fails_errors_and_panics_within_its_concurrency() {
    let payloads = ["ok 0", "error 1", "panic 2", "ok 3", "error 4", "panic 5"];
    let state = state_with_jobs(&payloads);
    let server = fake_broker(Arc::clone(&state)).await;
    let client = connect(&server).await;
    let running = Arc::new(AtomicUsize::new(0));
    let running_max = Arc::new(AtomicUsize::new(0));
    let (counter, peak) = (Arc::clone(&running), Arc::clone(&running_max));
    let handler = move |context: JobContext| {
        let (counter, peak) = (Arc::clone(&counter), Arc::clone(&peak));
        async move {
            let now_running = counter.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now_running, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            counter.fetch_sub(1, Ordering::SeqCst);
            let payload = String::from_utf8_lossy(context.payload()).to_string();
            match payload.split_once(' ') {
                Some(("ok", _)) => Ok(Some(payload.to_uppercase().into_bytes())),
                Some(("error", number)) => Err(JobError::permanent(format!("bad {number}"))),
                _ => panic!("boom"),
            }
        }
    };
    let shutdown = CancellationToken::new();
    let run = spawn_worker(client, test_options(2), handler, &shutdown);

    wait_until("every job is reported", || {
        let state = lock(&state);
        state.acked.len() + state.failed.len() == payloads.len()
    })
    .await;
    shutdown.cancel();
    let report = run.await.expect("worker task").expect("worker run");

    assert_eq!(
        report,
        WorkerReport {
            succeeded: 2,
            failed: 4,
            panicked: 2,
            ..WorkerReport::default()
        }
    );
    let state = lock(&state);
    let mut acked: Vec<String> = state
        .acked
        .iter()
        .map(|(_, result)| String::from_utf8(result.clone().expect("a result")).expect("utf8"))
        .collect();
    acked.sort();
    assert_eq!(acked, ["OK 0", "OK 3"]);
    let mut failed: Vec<(String, Retry)> = state
        .failed
        .iter()
        .map(|fail| (fail.error.clone(), fail.retry))
        .collect();
    failed.sort_by(|left, right| left.0.cmp(&right.0));
    assert_eq!(
        failed,
        [
            ("bad 1".to_string(), Retry::Never),
            ("bad 4".to_string(), Retry::Never),
            ("handler panicked: boom".to_string(), Retry::Backoff),
            ("handler panicked: boom".to_string(), Retry::Backoff),
        ]
    );
    assert!(
        running_max.load(Ordering::SeqCst) <= 2,
        "concurrency exceeded"
    );
    assert!(
        state
            .fetches
            .iter()
            .all(|fetch| (1..=2).contains(&fetch.max_jobs)),
        "{:?}",
        state.fetches
    );
}

#[tokio::test]
async fn worker_extends_the_lease_of_a_long_job() {
    let state = state_with_jobs(&["slow"]);
    let server = fake_broker(Arc::clone(&state)).await;
    let client = connect(&server).await;
    let handler = |_context: JobContext| async move {
        // Nearly three leases of 200 ms: only extending keeps the job.
        tokio::time::sleep(Duration::from_millis(550)).await;
        Ok(None)
    };
    let shutdown = CancellationToken::new();
    let run = spawn_worker(client, test_options(1), handler, &shutdown);

    wait_until("the job is acked", || lock(&state).acked.len() == 1).await;
    shutdown.cancel();
    let report = run.await.expect("worker task").expect("worker run");

    assert_eq!(report.succeeded, 1);
    let extends = lock(&state).extends;
    assert!(
        (3..=6).contains(&extends),
        "expected an EXTEND every ~100 ms, got {extends}"
    );
}

#[tokio::test]
async fn worker_cancel_request_fires_the_job_token() {
    let state = state_with_jobs(&["cancel me"]);
    let job_id = lock(&state).ready[0].job_id;
    lock(&state).cancel_requested.insert(job_id);
    let server = fake_broker(Arc::clone(&state)).await;
    let client = connect(&server).await;
    let saw_cancel = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&saw_cancel);
    let handler = move |context: JobContext| {
        let seen = Arc::clone(&seen);
        async move {
            tokio::select! {
                _ = context.cancellation().cancelled() => {
                    seen.store(true, Ordering::SeqCst);
                    Err(JobError::new("cancelled"))
                }
                _ = tokio::time::sleep(Duration::from_secs(10)) => Ok(None),
            }
        }
    };
    let shutdown = CancellationToken::new();
    let run = spawn_worker(client, test_options(1), handler, &shutdown);

    wait_until("the handler sees the cancel", || {
        saw_cancel.load(Ordering::SeqCst)
    })
    .await;
    shutdown.cancel();
    let report = run.await.expect("worker task").expect("worker run");

    assert_eq!(
        report,
        WorkerReport {
            lease_lost: 1,
            ..WorkerReport::default()
        }
    );
    assert!(
        lock(&state).failed.is_empty(),
        "a cancelled job's FAIL is refused"
    );
}

#[tokio::test]
async fn worker_stops_fetching_on_shutdown_and_waits_for_running_handlers() {
    let state = state_with_jobs(&["job"]);
    let server = fake_broker(Arc::clone(&state)).await;
    let client = connect(&server).await;
    let started = Arc::new(AtomicBool::new(false));
    let handler = slow_handler(&started);
    let shutdown = CancellationToken::new();
    let run = spawn_worker(client, test_options(1), handler, &shutdown);

    wait_until("the handler runs", || started.load(Ordering::SeqCst)).await;
    let fetches_at_shutdown = lock(&state).fetches.len();
    shutdown.cancel();
    let report = run.await.expect("worker task").expect("worker run");

    assert_eq!(
        report,
        WorkerReport {
            succeeded: 1,
            ..WorkerReport::default()
        }
    );
    let state = lock(&state);
    assert_eq!(
        state.acked.len(),
        1,
        "the running handler finished and was acked"
    );
    assert_eq!(
        state.fetches.len(),
        fetches_at_shutdown,
        "no FETCH after the shutdown"
    );
}

#[tokio::test]
async fn worker_abandons_handlers_still_running_at_the_shutdown_timeout() {
    struct DropFlag(Arc<AtomicBool>);
    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let state = state_with_jobs(&["stuck"]);
    let server = fake_broker(Arc::clone(&state)).await;
    let client = connect(&server).await;
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&dropped);
    let handler = move |_context: JobContext| {
        let guard = DropFlag(Arc::clone(&flag));
        async move {
            let _guard = guard;
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(None)
        }
    };
    let mut options = test_options(1);
    options.shutdown_timeout = Duration::from_millis(100);
    let shutdown = CancellationToken::new();
    let run = spawn_worker(client, options, handler, &shutdown);

    wait_until("the job is leased", || !lock(&state).leased.is_empty()).await;
    shutdown.cancel();
    let report = run.await.expect("worker task").expect("worker run");

    assert_eq!(
        report,
        WorkerReport {
            abandoned: 1,
            ..WorkerReport::default()
        }
    );
    wait_until("the aborted handler is dropped", || {
        dropped.load(Ordering::SeqCst)
    })
    .await;
}

#[tokio::test]
async fn worker_retries_the_ack_after_the_broker_restarts() {
    let state = state_with_jobs(&["survivor"]);
    lock(&state).crash_on_next_ack = true;
    let server = fake_broker(Arc::clone(&state)).await;
    let client = connect(&server).await;
    let handler = |_context: JobContext| async move { Ok(Some(b"result".to_vec())) };
    let shutdown = CancellationToken::new();
    let run = spawn_worker(client, test_options(1), handler, &shutdown);

    wait_until("the job is acked", || lock(&state).acked.len() == 1).await;
    shutdown.cancel();
    let report = run.await.expect("worker task").expect("worker run");

    assert_eq!(
        report,
        WorkerReport {
            succeeded: 1,
            ..WorkerReport::default()
        }
    );
    assert!(
        server.connections_accepted() >= 2,
        "the ACK went out on a new connection"
    );
    assert_eq!(lock(&state).acked[0].1.as_deref(), Some(&b"result"[..]));
}

#[tokio::test]
async fn worker_stops_on_a_fetch_error_that_retrying_cannot_fix() {
    let state = state_with_jobs(&[]);
    lock(&state).fetch_error = Some(ErrorBody::new(ErrorCode::NotFound, "no queue emails"));
    let server = fake_broker(Arc::clone(&state)).await;
    let client = connect(&server).await;
    let handler = |_context: JobContext| async move { Ok(None) };
    let shutdown = CancellationToken::new();
    let run = spawn_worker(client, test_options(1), handler, &shutdown);

    let error = run
        .await
        .expect("worker task")
        .expect_err("an unknown queue is fatal");
    assert_eq!(error.code(), Some(ErrorCode::NotFound));
}

#[test]
fn long_messages_are_cut_on_a_character_boundary() {
    let message = "é".repeat(10);
    assert_eq!(truncate_to_char_boundary(message.clone(), 5), "éé");
    assert_eq!(truncate_to_char_boundary(message.clone(), 100), message);
}

/// ms since the Unix epoch now.
fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("fits")
}

/// What the test handlers that are not plain `async fn`s return.
type HandlerFuture =
    std::pin::Pin<Box<dyn Future<Output = Result<Option<Vec<u8>>, JobError>> + Send>>;

/// A handler that sets `started`, works for 300 ms and succeeds.
fn slow_handler(
    started: &Arc<AtomicBool>,
) -> impl Fn(JobContext) -> HandlerFuture + Send + Sync + 'static {
    let started = Arc::clone(started);
    move |_context: JobContext| {
        let started = Arc::clone(&started);
        Box::pin(async move {
            started.store(true, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(Some(b"done".to_vec()))
        })
    }
}

/// A handler that finishes at once.
async fn ok_handler(_context: JobContext) -> Result<Option<Vec<u8>>, JobError> {
    Ok(None)
}
