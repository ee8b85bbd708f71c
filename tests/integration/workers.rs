//! Workers, executions, logs, progress and results through a real server: lost workers'
//! leases released at the heartbeat timeout, orders and assignments delivered by
//! heartbeats, one execution record per delivery, logs with follow mode and their caps.

use std::time::{Duration, Instant};

use taskforge::client::{Client, ClientError};
use taskforge_protocol::{
    AssignmentListRequest, ErrorCode, ErrorDetails, ExecutionList, ExecutionListRequest,
    ExecutionOutcome, FetchRequest, Heartbeat, HeartbeatResponse, JobId, JobRef, LeasedJob,
    LogLevel, LogRequest, LogResponse, LogTail, LogTailRequest, NewJob, NewLogLine,
    ProgressRequest, QueueAssignment, QueueSettings, Request, Response, Retry, WorkerAssign,
    WorkerCommand, WorkerId, WorkerInfo, WorkerListRequest, WorkerRef, WorkerRegister, WorkerState,
    WorkerTerminate,
};

use crate::support::{code, eventually, job, TestServer};

/// Heartbeat timeout of the servers in these tests.
const HEARTBEAT_TIMEOUT_MS: u64 = 1_000;

/// Sends one request and unwraps the matching response.
macro_rules! call {
    ($client:expr, $variant:ident, $body:expr) => {
        match $client.call(Request::$variant($body)).await {
            Ok(Response::$variant(reply)) => Ok(reply),
            Ok(other) => panic!("unexpected reply {other:?}"),
            Err(error) => Err::<_, ClientError>(error),
        }
    };
}

fn serves(queues: &[&str]) -> Vec<QueueAssignment> {
    queues
        .iter()
        .map(|queue| QueueAssignment {
            queue: (*queue).into(),
            weight: 1,
            active: true,
        })
        .collect()
}

async fn register(client: &Client, name: &str, queues: &[&str]) -> WorkerInfo {
    let request = WorkerRegister {
        name: name.into(),
        hostname: "test-host".into(),
        pid: 4242,
        version: "1.0.0".into(),
        labels: vec![("zone".into(), "a".into())],
        concurrency: 4,
        queues: serves(queues),
    };
    call!(client, WorkerRegister, request).expect("register")
}

async fn heartbeat(client: &Client, worker: &WorkerInfo, version: u64) -> HeartbeatResponse {
    let request = Heartbeat {
        worker_id: worker.worker_id,
        in_flight: 0,
        assignments_version: version,
        leaving: false,
    };
    call!(client, Heartbeat, request).expect("heartbeat")
}

fn fetch_as(worker_id: Option<WorkerId>, queue: &str, wait_ms: u32) -> FetchRequest {
    FetchRequest {
        queues: vec![queue.into()],
        max_jobs: 1,
        wait_ms,
        lease_ms: None,
        worker_id,
        weights: Vec::new(),
    }
}

async fn fetch_one(client: &Client, worker_id: Option<WorkerId>, queue: &str) -> LeasedJob {
    let mut jobs = client
        .fetch(fetch_as(worker_id, queue, 0))
        .await
        .expect("fetch")
        .jobs;
    assert_eq!(jobs.len(), 1, "one job ready");
    jobs.remove(0)
}

async fn executions(client: &Client, job_id: JobId) -> ExecutionList {
    let request = ExecutionListRequest {
        job_id,
        after: None,
        limit: 100,
    };
    call!(client, ExecutionList, request).expect("execution list")
}

fn line(level: LogLevel, message: &str) -> NewLogLine {
    NewLogLine {
        level,
        message: message.into(),
        fields: vec![("step".into(), message.into())],
    }
}

async fn log(
    client: &Client,
    leased: &LeasedJob,
    lines: Vec<NewLogLine>,
) -> Result<LogResponse, ClientError> {
    let request = LogRequest {
        job_id: leased.job_id,
        lease_id: leased.lease_id,
        lines,
    };
    call!(client, Log, request)
}

fn tail(job_id: JobId, after_seq: Option<u32>, wait_ms: u32) -> LogTailRequest {
    LogTailRequest {
        job_id,
        execution: None,
        lines: 100,
        after_seq,
        wait_ms,
    }
}

async fn manual_server() -> TestServer {
    TestServer::start_with_manual_clock_configured(|config| {
        config.broker.heartbeat_timeout_ms = HEARTBEAT_TIMEOUT_MS;
    })
    .await
}

async fn with_queue(server: &TestServer, queue: &str) -> Client {
    let client = server.client().await;
    client
        .queue_create(queue, QueueSettings::default())
        .await
        .expect("queue");
    client
}

#[tokio::test]
async fn a_dropped_worker_s_job_is_redelivered_at_the_heartbeat_timeout_as_worker_lost() {
    let server = manual_server().await;
    let admin = with_queue(&server, "work").await;
    let job_id = admin
        .enqueue(job("work", b"x"))
        .await
        .expect("enqueue")
        .job_id;
    let doomed = server.client().await;
    let worker = register(&doomed, "doomed", &["work"]).await;
    let leased = fetch_one(&doomed, Some(worker.worker_id), "work").await;
    // The worker's connection drops without BYE; its lease (30 s) would outlive the test.
    drop(doomed);

    server.advance(HEARTBEAT_TIMEOUT_MS - 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        admin
            .fetch(fetch_as(None, "work", 0))
            .await
            .expect("fetch")
            .jobs
            .is_empty(),
        "nothing is released before the timeout"
    );
    server.advance(1);
    let redelivered = eventually("the lost worker's job back", || async {
        admin
            .fetch(fetch_as(None, "work", 0))
            .await
            .expect("fetch")
            .jobs
            .pop()
    })
    .await;
    assert_eq!(redelivered.job_id, job_id);
    assert_eq!(redelivered.attempt, 2);

    let list = executions(&admin, job_id).await;
    assert_eq!(list.executions.len(), 2, "{list:?}");
    let lost = &list.executions[0];
    assert_eq!(lost.outcome, Some(ExecutionOutcome::WorkerLost));
    assert_eq!(lost.worker_id, Some(worker.worker_id));
    assert_eq!(lost.lease_id, leased.lease_id);
    assert_eq!(lost.duration_ms, Some(HEARTBEAT_TIMEOUT_MS));
    assert_eq!(list.executions[1].outcome, None, "the new delivery runs");
    let info = call!(
        admin,
        WorkerGet,
        WorkerRef {
            worker_id: worker.worker_id
        }
    )
    .expect("get");
    assert_eq!(info.state, WorkerState::Lost);
    assert_eq!(info.leased_jobs, 0);
    assert_eq!(
        code(doomed_ack(&admin, &leased).await),
        ErrorCode::LeaseLost,
        "the lost worker's lease is fenced"
    );
}

async fn doomed_ack(client: &Client, leased: &LeasedJob) -> Result<(), ClientError> {
    client.ack(leased.job_id, leased.lease_id, None).await
}

#[tokio::test]
async fn a_killed_worker_s_job_comes_back_within_the_timeout_plus_a_second_of_wall_time() {
    let server = TestServer::start_configured(|config| {
        config.broker.heartbeat_timeout_ms = HEARTBEAT_TIMEOUT_MS;
    })
    .await;
    let admin = with_queue(&server, "work").await;
    admin.enqueue(job("work", b"x")).await.expect("enqueue");
    let doomed = server.client().await;
    let worker = register(&doomed, "doomed", &["work"]).await;
    fetch_one(&doomed, Some(worker.worker_id), "work").await;
    let killed_at = Instant::now();
    drop(doomed);
    let redelivered = admin
        .fetch(fetch_as(None, "work", 5_000))
        .await
        .expect("long poll");
    let waited = killed_at.elapsed();
    assert_eq!(redelivered.jobs.len(), 1);
    assert!(
        waited < Duration::from_millis(HEARTBEAT_TIMEOUT_MS + 1_000),
        "redelivered after {waited:?}"
    );
    println!("lost worker's job redelivered {} ms after its connection dropped (timeout {HEARTBEAT_TIMEOUT_MS} ms)", waited.as_millis());
}

#[tokio::test]
async fn a_live_worker_extending_long_jobs_never_sees_them_redelivered() {
    let server = manual_server().await;
    let admin = with_queue(&server, "work").await;
    let job_id = admin
        .enqueue(NewJob {
            lease_ms: Some(500),
            ..job("work", b"long")
        })
        .await
        .expect("enqueue")
        .job_id;
    let worker_client = server.client().await;
    let worker = register(&worker_client, "steady", &["work"]).await;
    let leased = fetch_one(&worker_client, Some(worker.worker_id), "work").await;
    // Ten heartbeat timeouts pass; the worker heartbeats and extends all along.
    for _ in 0..50 {
        server.advance(200);
        heartbeat(&worker_client, &worker, worker.assignments_version).await;
        worker_client
            .extend(leased.job_id, leased.lease_id, 500)
            .await
            .expect("extend");
        assert!(admin
            .fetch(fetch_as(None, "work", 0))
            .await
            .expect("fetch")
            .jobs
            .is_empty());
    }
    worker_client
        .ack(leased.job_id, leased.lease_id, None)
        .await
        .expect("the long job finishes under its first lease");
    let list = executions(&admin, job_id).await;
    assert_eq!(list.executions.len(), 1);
    assert_eq!(
        list.executions[0].outcome,
        Some(ExecutionOutcome::Succeeded)
    );
}

#[tokio::test]
async fn two_failures_and_a_success_leave_three_execution_records() {
    let server = manual_server().await;
    let admin = with_queue(&server, "work").await;
    let job_id = admin
        .enqueue(NewJob {
            max_attempts: Some(5),
            ..job("work", b"flaky")
        })
        .await
        .expect("enqueue")
        .job_id;
    let (first, second) = (server.client().await, server.client().await);
    let one = register(&first, "one", &["work"]).await;
    let two = register(&second, "two", &["work"]).await;
    let now_ms = crate::support::CLOCK_START_MS;
    for (client, worker, error) in [
        (&first, &one, "first failure"),
        (&second, &two, "second failure"),
    ] {
        let leased = fetch_one(client, Some(worker.worker_id), "work").await;
        server.advance(7);
        let reply = client
            .call(Request::Fail(taskforge_protocol::FailRequest {
                job_id,
                lease_id: leased.lease_id,
                error: error.into(),
                retry: Retry::At(now_ms),
                error_details: Some(format!("trace of {error}")),
            }))
            .await
            .expect("fail");
        assert!(matches!(reply, Response::Fail(_)));
    }
    let leased = fetch_one(&first, Some(one.worker_id), "work").await;
    server.advance(3);
    first
        .ack(job_id, leased.lease_id, Some(b"done".to_vec()))
        .await
        .expect("ack");

    let list = executions(&admin, job_id).await;
    let summary: Vec<_> = list
        .executions
        .iter()
        .map(|execution| {
            (
                execution.execution,
                execution.attempt,
                execution.worker_id,
                execution.outcome,
                execution.error.as_deref(),
                execution.error_details.as_deref(),
                execution.duration_ms,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                1,
                1,
                Some(one.worker_id),
                Some(ExecutionOutcome::Failed),
                Some("first failure"),
                Some("trace of first failure"),
                Some(7)
            ),
            (
                2,
                2,
                Some(two.worker_id),
                Some(ExecutionOutcome::Failed),
                Some("second failure"),
                Some("trace of second failure"),
                Some(7)
            ),
            (
                3,
                3,
                Some(one.worker_id),
                Some(ExecutionOutcome::Succeeded),
                None,
                None,
                Some(3)
            ),
        ]
    );
    let info = admin.job_get(job_id).await.expect("job");
    assert_eq!(info.executions, 3);
    assert_eq!(info.latest_execution.as_deref(), list.executions.last());
    let results = call!(admin, JobResults, JobRef { job_id }).expect("results");
    assert_eq!(results.job.result, Some(b"done".to_vec()));
    assert!(results.parents.is_empty());

    let page = call!(
        admin,
        ExecutionList,
        ExecutionListRequest {
            job_id,
            after: Some(1),
            limit: 1
        }
    )
    .expect("page");
    assert_eq!(page.executions[0].execution, 2);
    assert_eq!(page.next_after, Some(2));
}

#[tokio::test]
async fn logs_come_back_in_order_follow_sees_new_lines_and_stale_leases_are_refused() {
    let server = TestServer::start_configured(|config| {
        config.broker.log_lines_per_execution_max = 5;
    })
    .await;
    let admin = with_queue(&server, "work").await;
    let job_id = admin
        .enqueue(NewJob {
            lease_ms: Some(1_500),
            ..job("work", b"x")
        })
        .await
        .expect("enqueue")
        .job_id;
    let worker = server.client().await;
    let leased = fetch_one(&worker, None, "work").await;
    let reply = log(
        &worker,
        &leased,
        vec![
            line(LogLevel::Info, "start"),
            line(LogLevel::Warn, "slow"),
            line(LogLevel::Debug, "detail"),
        ],
    )
    .await
    .expect("log");
    assert_eq!((reply.execution, reply.first_seq), (1, 1));
    let tail_now: LogTail = call!(admin, LogTail, tail(job_id, None, 0)).expect("tail");
    let seen: Vec<_> = tail_now
        .lines
        .iter()
        .map(|line| (line.seq, line.level, line.message.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (1, LogLevel::Info, "start"),
            (2, LogLevel::Warn, "slow"),
            (3, LogLevel::Debug, "detail")
        ]
    );
    assert!(tail_now.open);
    let last_two = call!(
        admin,
        LogTail,
        LogTailRequest {
            lines: 2,
            ..tail(job_id, None, 0)
        }
    )
    .expect("tail");
    assert_eq!(
        last_two
            .lines
            .iter()
            .map(|line| line.seq)
            .collect::<Vec<_>>(),
        vec![2, 3]
    );

    let follower = server.client().await;
    let follow = tokio::spawn(async move {
        call!(follower, LogTail, tail(job_id, Some(3), 5_000)).expect("follow")
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    log(
        &worker,
        &leased,
        vec![line(LogLevel::Error, "written after follow began")],
    )
    .await
    .expect("log");
    let followed = tokio::time::timeout(Duration::from_secs(5), follow)
        .await
        .expect("follow answers when a line arrives")
        .expect("follow task");
    assert_eq!(followed.lines.len(), 1);
    assert_eq!(followed.lines[0].message, "written after follow began");
    assert_eq!((followed.next_after, followed.open), (4, true));

    let over = log(
        &worker,
        &leased,
        vec![line(LogLevel::Info, "five"), line(LogLevel::Info, "six")],
    )
    .await
    .expect_err("over the per-execution cap");
    match over {
        ClientError::Server(body) => {
            assert_eq!(body.error_code(), ErrorCode::QuotaExceeded);
            assert_eq!(
                body.details,
                ErrorDetails::Quota {
                    limit: "log_lines_per_execution".into(),
                    current: 4,
                    max: 5
                }
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    let after_refusal: LogTail = call!(admin, LogTail, tail(job_id, None, 0)).expect("tail");
    assert_eq!(after_refusal.lines.len(), 4, "a refused LOG stores nothing");

    // The lease runs out and the job is delivered again: the old lease may not log.
    let relet = eventually("the job delivered again", || async {
        worker
            .fetch(fetch_as(None, "work", 0))
            .await
            .expect("fetch")
            .jobs
            .pop()
    })
    .await;
    assert_eq!(
        code(log(&worker, &leased, vec![line(LogLevel::Info, "stale")]).await),
        ErrorCode::LeaseLost
    );
    let fresh = log(&worker, &relet, vec![line(LogLevel::Info, "second run")])
        .await
        .expect("the new execution logs from 1");
    assert_eq!((fresh.execution, fresh.first_seq), (2, 1));
    let first_run = call!(
        admin,
        LogTail,
        LogTailRequest {
            execution: Some(1),
            ..tail(job_id, None, 0)
        }
    )
    .expect("first execution's log");
    assert_eq!((first_run.lines.len(), first_run.open), (4, false));
    assert_eq!(
        code(call!(
            admin,
            LogTail,
            LogTailRequest {
                execution: Some(3),
                ..tail(job_id, None, 0)
            }
        )),
        ErrorCode::NotFound
    );
}

#[tokio::test]
async fn a_follow_ends_when_the_execution_does() {
    let server = TestServer::start().await;
    let admin = with_queue(&server, "work").await;
    let job_id = admin
        .enqueue(job("work", b"x"))
        .await
        .expect("enqueue")
        .job_id;
    let worker = server.client().await;
    let leased = fetch_one(&worker, None, "work").await;
    let follower = server.client().await;
    let follow = tokio::spawn(async move {
        call!(follower, LogTail, tail(job_id, Some(0), 10_000)).expect("follow")
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    worker
        .ack(job_id, leased.lease_id, None)
        .await
        .expect("ack");
    let ended = tokio::time::timeout(Duration::from_secs(5), follow)
        .await
        .expect("the follow answers when the execution ends")
        .expect("task");
    assert!(ended.lines.is_empty());
    assert!(!ended.open);
}

#[tokio::test]
async fn progress_is_shown_by_job_get_and_needs_the_current_lease() {
    let server = TestServer::start().await;
    let admin = with_queue(&server, "work").await;
    let job_id = admin
        .enqueue(job("work", b"x"))
        .await
        .expect("enqueue")
        .job_id;
    let leased = fetch_one(&admin, None, "work").await;
    let progress = |percent, lease_id| ProgressRequest {
        job_id,
        lease_id,
        percent,
        message: "halfway".into(),
    };
    call!(admin, Progress, progress(50, leased.lease_id)).expect("progress");
    let shown = admin
        .job_get(job_id)
        .await
        .expect("job")
        .progress
        .expect("progress");
    assert_eq!(
        (shown.execution, shown.percent, shown.message.as_str()),
        (1, 50, "halfway")
    );
    assert_eq!(
        code(call!(admin, Progress, progress(101, leased.lease_id))),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(call!(admin, Progress, progress(60, leased.lease_id + 1))),
        ErrorCode::LeaseLost
    );
    admin.ack(job_id, leased.lease_id, None).await.expect("ack");
    assert_eq!(
        code(call!(admin, Progress, progress(100, leased.lease_id))),
        ErrorCode::LeaseLost
    );
    assert_eq!(
        admin
            .job_get(job_id)
            .await
            .expect("job")
            .progress
            .map(|shown| shown.percent),
        Some(50),
        "the last progress stays after the job ends"
    );
}

#[tokio::test]
async fn quiet_and_terminate_reach_the_worker_through_its_heartbeat() {
    let server = manual_server().await;
    let admin = with_queue(&server, "work").await;
    let worker_client = server.client().await;
    let worker = register(&worker_client, "ordered", &["work"]).await;
    assert_eq!(
        heartbeat(&worker_client, &worker, 1).await.command,
        WorkerCommand::Run
    );

    let quiet = call!(
        admin,
        WorkerQuiet,
        WorkerRef {
            worker_id: worker.worker_id
        }
    )
    .expect("quiet");
    assert_eq!(quiet.state, WorkerState::Quiet);
    assert_eq!(
        heartbeat(&worker_client, &worker, 1).await.command,
        WorkerCommand::Quiet
    );
    assert_eq!(
        code(
            worker_client
                .fetch(fetch_as(Some(worker.worker_id), "work", 0))
                .await
        ),
        ErrorCode::Conflict,
        "a quiet worker may not fetch"
    );

    let terminate = WorkerTerminate {
        worker_id: worker.worker_id,
        grace_ms: Some(5_000),
    };
    let terminating = call!(admin, WorkerTerminate, terminate).expect("terminate");
    let deadline_ms = crate::support::CLOCK_START_MS + 5_000;
    assert_eq!(terminating.terminate_deadline_ms, Some(deadline_ms));
    assert_eq!(
        heartbeat(&worker_client, &worker, 1).await.command,
        WorkerCommand::Terminate { deadline_ms }
    );
    assert_eq!(
        code(call!(
            admin,
            WorkerQuiet,
            WorkerRef {
                worker_id: worker.worker_id
            }
        )),
        ErrorCode::Conflict,
        "a terminating worker cannot be made quiet"
    );

    let leaving = Heartbeat {
        worker_id: worker.worker_id,
        in_flight: 0,
        assignments_version: 1,
        leaving: true,
    };
    call!(worker_client, Heartbeat, leaving.clone()).expect("goodbye");
    let gone = call!(
        admin,
        WorkerGet,
        WorkerRef {
            worker_id: worker.worker_id
        }
    )
    .expect("get");
    assert_eq!(gone.state, WorkerState::Stopped);
    assert_eq!(
        code(call!(
            worker_client,
            Heartbeat,
            Heartbeat {
                leaving: false,
                ..leaving
            }
        )),
        ErrorCode::NotFound,
        "a stopped worker must register again"
    );
    let listed = call!(
        admin,
        WorkerList,
        WorkerListRequest {
            state: Some(WorkerState::Stopped),
            after: None,
            limit: 10
        }
    )
    .expect("list");
    assert_eq!(listed.workers.len(), 1);
    server.advance(taskforge::broker::core::WORKER_RETENTION_MS_DEFAULT);
    eventually("the stopped worker forgotten", || async {
        let list = call!(
            admin,
            WorkerList,
            WorkerListRequest {
                state: None,
                after: None,
                limit: 10
            }
        )
        .expect("list");
        list.workers.is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn assignment_changes_reach_the_worker_on_its_next_heartbeat() {
    let server = manual_server().await;
    let admin = with_queue(&server, "a").await;
    admin
        .queue_create("b", QueueSettings::default())
        .await
        .expect("queue b");
    let worker_client = server.client().await;
    let worker = register(&worker_client, "assigned", &["a"]).await;
    assert_eq!(worker.assignments_version, 1);
    assert!(heartbeat(&worker_client, &worker, 1)
        .await
        .assignments
        .is_none());

    let queues = vec![
        QueueAssignment {
            queue: "b".into(),
            weight: 3,
            active: true,
        },
        QueueAssignment {
            queue: "a".into(),
            weight: 1,
            active: false,
        },
    ];
    let assign = WorkerAssign {
        worker_id: worker.worker_id,
        queues: queues.clone(),
    };
    let changed = call!(admin, WorkerAssign, assign).expect("assign");
    assert_eq!(changed.assignments_version, 2);
    let reply = heartbeat(&worker_client, &worker, 1).await;
    assert_eq!(reply.assignments_version, 2);
    assert_eq!(reply.assignments, Some(queues));
    assert!(heartbeat(&worker_client, &worker, 2)
        .await
        .assignments
        .is_none());

    let by_queue = call!(
        admin,
        AssignmentList,
        AssignmentListRequest {
            queue: Some("b".into()),
            worker_id: None,
            after: None,
            limit: 10
        }
    )
    .expect("by queue");
    assert_eq!(by_queue.assignments.len(), 1);
    assert_eq!(
        (
            by_queue.assignments[0].worker_id,
            by_queue.assignments[0].weight
        ),
        (worker.worker_id, 3)
    );
    let by_worker = call!(
        admin,
        AssignmentList,
        AssignmentListRequest {
            queue: None,
            worker_id: Some(worker.worker_id),
            after: None,
            limit: 10
        }
    )
    .expect("by worker");
    let positions: Vec<_> = by_worker
        .assignments
        .iter()
        .map(|assignment| {
            (
                assignment.queue.as_str(),
                assignment.position,
                assignment.active,
            )
        })
        .collect();
    assert_eq!(positions, vec![("b", 0, true), ("a", 1, false)]);

    let unknown_queue = WorkerAssign {
        worker_id: worker.worker_id,
        queues: serves(&["missing"]),
    };
    assert_eq!(
        code(call!(admin, WorkerAssign, unknown_queue)),
        ErrorCode::NotFound
    );
}

#[tokio::test]
async fn workers_survive_a_restart_and_are_still_released_when_silent() {
    let mut server = TestServer::start_configured(|config| {
        config.broker.heartbeat_timeout_ms = HEARTBEAT_TIMEOUT_MS;
    })
    .await;
    let admin = with_queue(&server, "work").await;
    let job_id = admin
        .enqueue(job("work", b"x"))
        .await
        .expect("enqueue")
        .job_id;
    let worker = register(&admin, "survivor", &["work"]).await;
    fetch_one(&admin, Some(worker.worker_id), "work").await;
    drop(admin);
    server.restart().await;
    let admin = server.client().await;
    let info = call!(
        admin,
        WorkerGet,
        WorkerRef {
            worker_id: worker.worker_id
        }
    )
    .expect("kept");
    assert_eq!((info.name.as_str(), info.leased_jobs), ("survivor", 1));
    let redelivered = admin
        .fetch(fetch_as(None, "work", 5_000))
        .await
        .expect("long poll");
    assert_eq!(
        redelivered.jobs[0].job_id, job_id,
        "released once the worker stays silent"
    );
    let again = register(&admin, "newcomer", &["work"]).await;
    assert!(again.worker_id > worker.worker_id, "ids are never reused");
}

#[tokio::test]
async fn bad_worker_requests_get_clear_errors() {
    let server = TestServer::start().await;
    let admin = with_queue(&server, "work").await;
    let bad = |edit: fn(&mut WorkerRegister)| {
        let mut request = WorkerRegister {
            name: "w".into(),
            hostname: "h".into(),
            pid: 1,
            version: "1".into(),
            labels: Vec::new(),
            concurrency: 1,
            queues: serves(&["work"]),
        };
        edit(&mut request);
        request
    };
    for request in [
        bad(|request| request.name.clear()),
        bad(|request| request.concurrency = 0),
        bad(|request| request.queues.clear()),
        bad(|request| request.queues = serves(&["work", "work"])),
        bad(|request| request.queues[0].weight = 0),
        bad(|request| request.labels = vec![("k".into(), "1".into()), ("k".into(), "2".into())]),
    ] {
        assert_eq!(
            code(call!(admin, WorkerRegister, request)),
            ErrorCode::InvalidArgument
        );
    }
    assert_eq!(
        code(call!(
            admin,
            WorkerRegister,
            bad(|request| request.queues = serves(&["nope"]))
        )),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(call!(admin, WorkerGet, WorkerRef { worker_id: 999 })),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(admin.fetch(fetch_as(Some(999), "work", 0)).await),
        ErrorCode::NotFound
    );
    let weighted = FetchRequest {
        weights: vec![1, 2],
        ..fetch_as(None, "work", 0)
    };
    assert_eq!(
        code(admin.fetch(weighted).await),
        ErrorCode::InvalidArgument
    );
}
