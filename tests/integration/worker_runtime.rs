//! The Rust worker runtime against a real server: it registers and heartbeats, its
//! handlers' logs and progress reach the job, and it obeys quiet and terminate orders
//! that reach it through its heartbeat.

use std::sync::Arc;
use std::time::{Duration, Instant};

use taskforge::client::{
    Client, ClientError, JobContext, JobError, Worker, WorkerOptions, WorkerReport,
};
use taskforge_protocol::{
    ExecutionOutcome, JobId, JobState, LogTailRequest, QueueSettings, WorkerInfo, WorkerState,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::{eventually, job, TestServer};

/// Heartbeat timeout of these servers; workers heartbeat every third of it.
const HEARTBEAT_TIMEOUT_MS: u64 = 600;

/// A handler: "long" jobs run until cancelled; others log, report progress and succeed.
async fn handle(ctx: JobContext) -> Result<Option<Vec<u8>>, JobError> {
    if ctx.payload() == b"long" {
        ctx.info("long job started");
        ctx.cancellation().cancelled().await;
        return Err(JobError::new("stopped"));
    }
    ctx.info("working");
    ctx.warn("almost there");
    ctx.progress(100, "done");
    Ok(Some(b"ok".to_vec()))
}

fn options(name: &str) -> WorkerOptions {
    let mut options = WorkerOptions::new(["rt"]).with_name(name);
    options.fetch_wait_ms = 100;
    options.heartbeat_interval = Duration::from_millis(HEARTBEAT_TIMEOUT_MS / 3);
    options.concurrency = 2;
    options
}

async fn server() -> (TestServer, Client) {
    let server = TestServer::start_configured(|config| {
        config.broker.heartbeat_timeout_ms = HEARTBEAT_TIMEOUT_MS;
    })
    .await;
    let admin = server.client().await;
    admin
        .queue_create("rt", QueueSettings::default())
        .await
        .expect("queue");
    (server, admin)
}

fn spawn_worker(
    client: Client,
    name: &str,
    shutdown: CancellationToken,
) -> JoinHandle<Result<WorkerReport, ClientError>> {
    let worker = Arc::new(Worker::new(client, options(name)));
    tokio::spawn(async move { worker.run(handle, shutdown).await })
}

async fn registered(admin: &Client, name: &str) -> WorkerInfo {
    let name = name.to_owned();
    eventually("the worker registered", || async {
        let page = admin
            .worker_list(Some(WorkerState::Active), None, 100)
            .await
            .expect("list");
        page.workers.into_iter().find(|worker| worker.name == name)
    })
    .await
}

async fn state_of(admin: &Client, job_id: JobId) -> JobState {
    admin.job_get(job_id).await.expect("job").state
}

#[tokio::test]
async fn the_runtime_registers_reports_logs_and_progress_and_stops_fetching_when_quiet() {
    let (server, admin) = server().await;
    let shutdown = CancellationToken::new();
    let running = spawn_worker(server.client().await, "rt-quiet", shutdown.clone());
    let worker = registered(&admin, "rt-quiet").await;

    let first = admin
        .enqueue(job("rt", b"short"))
        .await
        .expect("enqueue")
        .job_id;
    eventually("the first job done", || async {
        (state_of(&admin, first).await == JobState::Succeeded).then_some(())
    })
    .await;
    let info = admin.job_get(first).await.expect("job");
    let execution = info.latest_execution.expect("an execution");
    assert_eq!(execution.worker_id, Some(worker.worker_id));
    assert_eq!(execution.outcome, Some(ExecutionOutcome::Succeeded));
    assert_eq!(info.progress.map(|progress| progress.percent), Some(100));
    assert_eq!(info.result, Some(b"ok".to_vec()));
    let tail = admin
        .log_tail(LogTailRequest {
            job_id: first,
            execution: None,
            lines: 10,
            after_seq: None,
            wait_ms: 0,
        })
        .await
        .expect("tail");
    let messages: Vec<&str> = tail
        .lines
        .iter()
        .map(|line| line.message.as_str())
        .collect();
    assert_eq!(
        messages,
        vec!["working", "almost there"],
        "flushed before the ACK"
    );

    admin.worker_quiet(worker.worker_id).await.expect("quiet");
    // Several heartbeats and long-polls later, a new job is still untouched.
    tokio::time::sleep(Duration::from_millis(3 * HEARTBEAT_TIMEOUT_MS)).await;
    let second = admin
        .enqueue(job("rt", b"short"))
        .await
        .expect("enqueue")
        .job_id;
    tokio::time::sleep(Duration::from_millis(3 * HEARTBEAT_TIMEOUT_MS)).await;
    assert_eq!(
        state_of(&admin, second).await,
        JobState::Ready,
        "a quiet worker fetches nothing"
    );
    let quiet = admin.worker_get(worker.worker_id).await.expect("get");
    assert_eq!(quiet.state, WorkerState::Quiet);

    shutdown.cancel();
    let report = running.await.expect("task").expect("run");
    assert_eq!(report.succeeded, 1);
    let gone = admin.worker_get(worker.worker_id).await.expect("get");
    assert_eq!(
        gone.state,
        WorkerState::Stopped,
        "its last heartbeat says goodbye"
    );
}

#[tokio::test]
async fn a_terminated_runtime_fails_what_it_holds_and_exits_by_the_deadline() {
    let (server, admin) = server().await;
    let shutdown = CancellationToken::new();
    let running = spawn_worker(server.client().await, "rt-terminate", shutdown);
    let worker = registered(&admin, "rt-terminate").await;
    let long = admin
        .enqueue(job("rt", b"long"))
        .await
        .expect("enqueue")
        .job_id;
    eventually("the long job running", || async {
        (state_of(&admin, long).await == JobState::Leased).then_some(())
    })
    .await;

    let grace = Duration::from_millis(1_000);
    let ordered = Instant::now();
    admin
        .worker_terminate(worker.worker_id, Some(grace.as_millis() as u32))
        .await
        .expect("terminate");
    let report = tokio::time::timeout(grace + Duration::from_secs(10), running)
        .await
        .expect("the worker exits")
        .expect("task")
        .expect("run");
    let took = ordered.elapsed();
    // The order travels on the next heartbeat (a third of the timeout), then the grace
    // period runs, then the FAILs and the goodbye are sent.
    let allowed = grace + Duration::from_millis(HEARTBEAT_TIMEOUT_MS) + Duration::from_secs(2);
    assert!(took < allowed, "exited {took:?} after the order");
    println!(
        "terminated worker exited {} ms after the order (grace {} ms)",
        took.as_millis(),
        grace.as_millis()
    );
    assert!(report.terminated);
    assert_eq!(report.interrupted, 1);
    let info = admin.job_get(long).await.expect("job");
    assert!(
        matches!(info.state, JobState::Ready | JobState::Scheduled),
        "the interrupted job goes back for a retry: {:?}",
        info.state
    );
    assert_eq!(
        info.latest_execution
            .and_then(|execution| execution.outcome),
        Some(ExecutionOutcome::Failed)
    );
    let gone = admin.worker_get(worker.worker_id).await.expect("get");
    assert_eq!(gone.state, WorkerState::Stopped);
}
