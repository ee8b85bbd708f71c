//! The client against a scripted fake broker: handshake, pipelining, timeouts, reconnects
//! and error mapping.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use taskforge_protocol::limits::{FRAME_BYTES_MAX_DEFAULT, PROTOCOL_VERSION};
use taskforge_protocol::{
    encode_body, Credentials, ErrorBody, ErrorCode, FetchRequest, FetchResponse, Frame, FrameKind,
    JobId, NewJob, Opcode, QueueSettings, Request, Response,
};
use tokio::task::JoinSet;

use super::fake_server::{fake_hello, fake_job_info, FakeServer, FAKE_PROJECT_ID};
use super::*;

const TEST_TOKEN: &str = "root-token-for-tests";

/// Short timeouts and a fast reconnect, so failing tests fail quickly.
fn test_options() -> ClientOptions {
    let mut options = ClientOptions::new(Credentials::RootToken(TEST_TOKEN.to_string()));
    options.client_name = "client-tests".to_string();
    options.request_timeout = Duration::from_secs(2);
    options.connect_timeout = Duration::from_secs(2);
    options.reconnect = ReconnectOptions {
        attempts_max: 3,
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
    };
    options
}

/// A fake that answers HELLO, PING and BYE on every connection and nothing else.
async fn session_only_server() -> FakeServer {
    FakeServer::start(|mut connection| async move {
        while let Some((request_id, request)) = connection.recv().await {
            assert!(
                connection.answer_session_request(request_id, &request),
                "{request:?}"
            );
        }
    })
    .await
}

fn job_id(index: u32) -> JobId {
    let mut bytes = [0u8; 16];
    bytes[12..].copy_from_slice(&index.to_be_bytes());
    JobId(bytes)
}

#[tokio::test]
async fn handshake_sends_hello_and_exposes_the_session() {
    let hellos = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&hellos);
    let server = FakeServer::start(move |mut connection| {
        let seen = Arc::clone(&seen);
        async move {
            let hello = connection.accept_hello().await.expect("hello");
            seen.lock().expect("lock").push(hello);
            while let Some((request_id, request)) = connection.recv().await {
                assert!(connection.answer_session_request(request_id, &request));
            }
        }
    })
    .await;

    let client = Client::connect(server.address(), test_options())
        .await
        .expect("connect");
    assert_eq!(client.hello(), fake_hello());
    assert_eq!(client.project_id(), FAKE_PROJECT_ID);
    assert_eq!(client.session_limits(), fake_hello().limits);
    client.ping().await.expect("ping after the handshake");

    let hellos = hellos.lock().expect("lock").clone();
    assert_eq!(hellos.len(), 1);
    assert_eq!(hellos[0].protocol_version, PROTOCOL_VERSION);
    assert_eq!(hellos[0].client_name, "client-tests");
    assert_eq!(hellos[0].client_version, CLIENT_VERSION_DEFAULT);
    assert_eq!(
        hellos[0].credentials,
        Credentials::RootToken(TEST_TOKEN.to_string())
    );
}

#[tokio::test]
async fn handshake_refusal_is_a_handshake_error() {
    let server = FakeServer::start(|mut connection| async move {
        let (request_id, request) = connection.recv().await.expect("hello");
        connection.error(
            request_id,
            request.opcode().number(),
            ErrorBody::new(ErrorCode::Unauthenticated, "unknown token"),
        );
        // The broker closes after refusing; give the answer time to leave first.
        tokio::time::sleep(Duration::from_millis(50)).await;
    })
    .await;

    let error = Client::connect(server.address(), test_options())
        .await
        .expect_err("refused");
    assert!(matches!(error, ClientError::Handshake(_)), "{error:?}");
    assert_eq!(error.code(), Some(ErrorCode::Unauthenticated));
}

#[tokio::test]
async fn connection_error_before_hello_answer_is_a_handshake_error() {
    let server = FakeServer::start(|mut connection| async move {
        let _hello = connection.recv().await.expect("hello");
        let mut body = BytesMut::new();
        encode_body(
            &ErrorBody::new(ErrorCode::UnsupportedVersion, "speak v1"),
            &mut body,
        );
        connection.replier().raw(Frame {
            kind: FrameKind::Error,
            opcode: 0,
            request_id: 0,
            body: body.freeze(),
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
    })
    .await;

    let error = Client::connect(server.address(), test_options())
        .await
        .expect_err("refused");
    assert_eq!(
        error.code(),
        Some(ErrorCode::UnsupportedVersion),
        "{error:?}"
    );
}

#[tokio::test]
async fn pipelined_calls_match_answers_sent_in_reverse_order() {
    const CALLS: u32 = 1_000;
    let server = FakeServer::start(|mut connection| async move {
        connection.accept_hello().await.expect("hello");
        let mut held = Vec::new();
        while held.len() < CALLS as usize {
            held.push(connection.recv().await.expect("a pipelined request"));
        }
        let distinct: HashSet<u32> = held.iter().map(|(request_id, _)| *request_id).collect();
        assert_eq!(
            distinct.len(),
            held.len(),
            "request ids in flight must be distinct"
        );
        for (request_id, request) in held.into_iter().rev() {
            let Request::JobGet(job) = request else {
                panic!("expected JOB_GET")
            };
            connection.respond(request_id, Response::JobGet(fake_job_info(job.job_id)));
        }
        while connection.recv().await.is_some() {}
    })
    .await;

    let client = Client::connect(server.address(), test_options())
        .await
        .expect("connect");
    let mut calls = JoinSet::new();
    for index in 0..CALLS {
        let client = client.clone();
        calls.spawn(async move {
            let info = client.job_get(job_id(index)).await.expect("job_get");
            assert_eq!(
                info.job_id,
                job_id(index),
                "answer matched to the wrong call"
            );
        });
    }
    while let Some(joined) = calls.join_next().await {
        joined.expect("call task");
    }
    assert_eq!(
        server.connections_accepted(),
        1,
        "all calls share one connection"
    );
    assert_eq!(client.waiting_requests(), 0);
}

#[tokio::test]
async fn request_timeout_forgets_the_waiter_and_ignores_the_late_answer() {
    let server = FakeServer::start(|mut connection| async move {
        connection.accept_hello().await.expect("hello");
        let (stale_request_id, _ignored) = connection.recv().await.expect("first ping");
        let (request_id, request) = connection.recv().await.expect("second ping");
        // Answer the timed-out request late, then the current one.
        connection.answer_session_request(stale_request_id, &request);
        connection.answer_session_request(request_id, &request);
        while connection.recv().await.is_some() {}
    })
    .await;
    let mut options = test_options();
    options.request_timeout = Duration::from_millis(100);
    let client = Client::connect(server.address(), options)
        .await
        .expect("connect");

    let error = client
        .ping()
        .await
        .expect_err("the fake never answers the first ping");
    assert!(matches!(error, ClientError::Timeout), "{error:?}");
    assert_eq!(
        client.waiting_requests(),
        0,
        "a timed-out request leaves no waiter behind"
    );
    client
        .ping()
        .await
        .expect("the connection still works after a timeout");
    assert_eq!(server.connections_accepted(), 1);
}

#[tokio::test]
async fn fetch_timeout_includes_its_long_poll_wait() {
    let server = FakeServer::start(|mut connection| async move {
        while let Some((request_id, request)) = connection.recv().await {
            if connection.answer_session_request(request_id, &request) {
                continue;
            }
            let replier = connection.replier();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(250)).await;
                replier.respond(
                    request_id,
                    Response::Fetch(FetchResponse { jobs: Vec::new() }),
                );
            });
        }
    })
    .await;
    let mut options = test_options();
    options.request_timeout = Duration::from_millis(100);
    let client = Client::connect(server.address(), options)
        .await
        .expect("connect");

    let fetched = client
        .fetch(FetchRequest {
            queues: vec!["emails".to_string()],
            max_jobs: 1,
            wait_ms: 400,
            lease_ms: None,
            worker_id: None,
            weights: Vec::new(),
        })
        .await
        .expect("a long poll answered within its wait is not a timeout");
    assert!(fetched.jobs.is_empty());
}

#[tokio::test]
async fn lost_connection_fails_in_flight_requests_then_next_call_reconnects() {
    const IN_FLIGHT: usize = 10;
    let hellos = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&hellos);
    let server = FakeServer::start(move |mut connection| {
        let counted = Arc::clone(&counted);
        async move {
            connection.accept_hello().await.expect("hello");
            counted.fetch_add(1, Ordering::SeqCst);
            if connection.index == 0 {
                for _ in 0..IN_FLIGHT {
                    connection
                        .recv()
                        .await
                        .expect("a request to leave unanswered");
                }
                // Dropping the connection here is the broker crashing mid-request.
                return;
            }
            while let Some((request_id, request)) = connection.recv().await {
                assert!(connection.answer_session_request(request_id, &request));
            }
        }
    })
    .await;
    let client = Client::connect(server.address(), test_options())
        .await
        .expect("connect");

    let mut calls = JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let client = client.clone();
        calls.spawn(async move { client.ping().await });
    }
    while let Some(joined) = calls.join_next().await {
        let error = joined.expect("call task").expect_err("the connection died");
        assert!(matches!(error, ClientError::Disconnected), "{error:?}");
    }

    client.ping().await.expect("the next call reconnects");
    assert_eq!(server.connections_accepted(), 2);
    assert_eq!(
        hellos.load(Ordering::SeqCst),
        2,
        "the reconnect repeats the handshake"
    );
}

#[tokio::test]
async fn reconnect_gives_up_after_attempts_max() {
    let server = FakeServer::start(|mut connection| async move {
        connection.accept_hello().await.expect("hello");
        let _unanswered = connection.recv().await;
    })
    .await;
    let client = Client::connect(server.address(), test_options())
        .await
        .expect("connect");
    // Stop listening: from now on every connection attempt is refused.
    drop(server);

    let error = client.ping().await.expect_err("the broker died");
    assert!(matches!(error, ClientError::Disconnected), "{error:?}");
    let error = client.ping().await.expect_err("nobody listens any more");
    assert!(
        matches!(error, ClientError::Io(_) | ClientError::Timeout),
        "{error:?}"
    );
}

#[tokio::test]
async fn server_error_carries_its_code_and_message() {
    let server = FakeServer::start(|mut connection| async move {
        while let Some((request_id, request)) = connection.recv().await {
            if connection.answer_session_request(request_id, &request) {
                continue;
            }
            let error = match &request {
                Request::QueueGet(queue) => {
                    ErrorBody::new(ErrorCode::NotFound, format!("no queue {:?}", queue.name))
                }
                _ => ErrorBody::new(ErrorCode::Conflict, "queue exists"),
            };
            connection.error(request_id, request.opcode().number(), error);
        }
    })
    .await;
    let client = Client::connect(server.address(), test_options())
        .await
        .expect("connect");

    let error = client.queue_get("missing").await.expect_err("not found");
    assert_eq!(error.code(), Some(ErrorCode::NotFound));
    let ClientError::Server(body) = &error else {
        panic!("expected Server, got {error:?}")
    };
    assert_eq!(body.message, "no queue \"missing\"");
    let error = client
        .queue_create("emails", QueueSettings::default())
        .await
        .expect_err("exists");
    assert_eq!(error.code(), Some(ErrorCode::Conflict));
    client
        .ping()
        .await
        .expect("errors leave the connection usable");
}

#[tokio::test]
async fn connection_error_frame_fails_in_flight_requests() {
    let server = FakeServer::start(|mut connection| async move {
        connection.accept_hello().await.expect("hello");
        let _ping = connection.recv().await.expect("ping");
        let mut body = BytesMut::new();
        encode_body(
            &ErrorBody::new(ErrorCode::MalformedFrame, "garbled"),
            &mut body,
        );
        connection.replier().raw(Frame {
            kind: FrameKind::Error,
            opcode: 0,
            request_id: 0,
            body: body.freeze(),
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
    })
    .await;
    let client = Client::connect(server.address(), test_options())
        .await
        .expect("connect");

    let error = client
        .ping()
        .await
        .expect_err("the broker gave up on the connection");
    assert!(matches!(error, ClientError::Disconnected), "{error:?}");
}

#[tokio::test]
async fn wrong_response_type_is_a_protocol_error() {
    let server = FakeServer::start(|mut connection| async move {
        connection.accept_hello().await.expect("hello");
        while let Some((request_id, _request)) = connection.recv().await {
            connection.respond(request_id, Response::QueueDelete(Default::default()));
        }
    })
    .await;
    let client = Client::connect(server.address(), test_options())
        .await
        .expect("connect");

    let error = client
        .ping()
        .await
        .expect_err("a PING answered as QUEUE_DELETE");
    assert!(matches!(error, ClientError::Protocol(_)), "{error:?}");
    let answer = client.call(Request::Ping(Default::default())).await;
    assert!(
        matches!(answer, Err(ClientError::Protocol(_))),
        "{answer:?}"
    );
}

#[tokio::test]
async fn oversized_request_is_refused_before_sending() {
    let server = session_only_server().await;
    let client = Client::connect(server.address(), test_options())
        .await
        .expect("connect");

    let job = NewJob {
        queue: "emails".to_string(),
        payload: vec![0u8; FRAME_BYTES_MAX_DEFAULT as usize],
        ..NewJob::default()
    };
    let error = client
        .enqueue(job)
        .await
        .expect_err("over the session's frame limit");
    let ClientError::RequestTooLarge {
        frame_bytes,
        frame_bytes_max,
    } = error
    else {
        panic!("expected RequestTooLarge, got {error:?}")
    };
    assert!(frame_bytes > FRAME_BYTES_MAX_DEFAULT as usize);
    assert_eq!(frame_bytes_max, FRAME_BYTES_MAX_DEFAULT);
    assert_eq!(client.waiting_requests(), 0);
    client
        .ping()
        .await
        .expect("nothing was sent, so the session is intact");
}

#[tokio::test]
async fn close_says_bye_and_a_later_call_reconnects() {
    let byes = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&byes);
    let server = FakeServer::start(move |mut connection| {
        let counted = Arc::clone(&counted);
        async move {
            while let Some((request_id, request)) = connection.recv().await {
                if request.opcode() == Opcode::Bye {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
                assert!(connection.answer_session_request(request_id, &request));
            }
        }
    })
    .await;
    let client = Client::connect(server.address(), test_options())
        .await
        .expect("connect");

    client.close().await.expect("bye");
    assert_eq!(byes.load(Ordering::SeqCst), 1);
    client.close().await.expect("closing twice is harmless");
    client
        .ping()
        .await
        .expect("a call after close connects again");
    assert_eq!(server.connections_accepted(), 2);
}

#[tokio::test]
async fn log_tail_timeout_includes_its_wait() {
    let server = FakeServer::start(|mut connection| async move {
        while let Some((request_id, request)) = connection.recv().await {
            if connection.answer_session_request(request_id, &request) {
                continue;
            }
            let replier = connection.replier();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let tail = taskforge_protocol::LogTail {
                    execution: 1,
                    lines: Vec::new(),
                    next_after: 3,
                    open: true,
                };
                replier.respond(request_id, Response::LogTail(tail));
            });
        }
    })
    .await;
    let mut options = test_options();
    options.request_timeout = Duration::from_millis(100);
    let client = Client::connect(server.address(), options)
        .await
        .expect("connect");

    let tail = client
        .log_tail(taskforge_protocol::LogTailRequest {
            job_id: job_id(1),
            execution: None,
            lines: 10,
            after_seq: Some(3),
            wait_ms: 400,
        })
        .await
        .expect("a follow answered within its wait is not a timeout");
    assert_eq!(tail.next_after, 3);
}

/// The canned answer a fake broker gives each worker and execution operation.
fn canned_answer(request: &Request) -> Response {
    use taskforge_protocol::*;
    let worker = WorkerInfo {
        worker_id: 9,
        name: "w".to_string(),
        hostname: "h".to_string(),
        pid: 1,
        version: "v".to_string(),
        labels: Vec::new(),
        concurrency: 1,
        state: WorkerState::Active,
        registered_at_ms: 0,
        last_heartbeat_at_ms: 0,
        in_flight: 0,
        leased_jobs: 0,
        terminate_deadline_ms: None,
        assignments_version: 1,
        assignments: Vec::new(),
    };
    match request {
        Request::WorkerRegister(_) => Response::WorkerRegister(worker),
        Request::WorkerGet(_) => Response::WorkerGet(worker),
        Request::WorkerQuiet(_) => Response::WorkerQuiet(worker),
        Request::WorkerTerminate(_) => Response::WorkerTerminate(worker),
        Request::WorkerAssign(_) => Response::WorkerAssign(worker),
        Request::Heartbeat(_) => Response::Heartbeat(HeartbeatResponse {
            command: WorkerCommand::Quiet,
            heartbeat_interval_ms: 5_000,
            assignments_version: 2,
            assignments: None,
            cancelled_jobs: Vec::new(),
        }),
        Request::WorkerList(_) => Response::WorkerList(WorkerList {
            workers: vec![worker],
            next_after: None,
        }),
        Request::AssignmentList(_) => Response::AssignmentList(AssignmentList {
            assignments: Vec::new(),
            next_after: Some(4),
        }),
        Request::Log(_) => Response::Log(LogResponse {
            execution: 2,
            first_seq: 11,
        }),
        Request::Progress(_) => Response::Progress(Empty {}),
        Request::LogTail(_) => Response::LogTail(LogTail {
            execution: 2,
            lines: Vec::new(),
            next_after: 0,
            open: false,
        }),
        Request::ExecutionList(_) => Response::ExecutionList(ExecutionList {
            executions: Vec::new(),
            next_after: None,
        }),
        Request::JobResults(body) => Response::JobResults(JobResults {
            job: JobResult {
                job_id: body.job_id,
                state: JobState::Succeeded,
                result: Some(b"ok".to_vec()),
            },
            parents: Vec::new(),
        }),
        Request::Fail(_) => Response::Fail(FailResponse {
            state: JobState::Dead,
            run_at_ms: None,
            attempts: 1,
        }),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn worker_and_execution_methods_send_their_bodies_and_unpack_their_answers() {
    use taskforge_protocol::*;
    let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&requests);
    let server = FakeServer::start(move |mut connection| {
        let seen = Arc::clone(&seen);
        async move {
            while let Some((request_id, request)) = connection.recv().await {
                if connection.answer_session_request(request_id, &request) {
                    continue;
                }
                connection.respond(request_id, canned_answer(&request));
                seen.lock().expect("lock").push(request);
            }
        }
    })
    .await;
    let client = Client::connect(server.address(), test_options())
        .await
        .expect("connect");
    let queues = vec![QueueAssignment {
        queue: "emails".to_string(),
        weight: 3,
        active: true,
    }];
    let register = WorkerRegister {
        name: "w".to_string(),
        hostname: "h".to_string(),
        pid: 1,
        version: "v".to_string(),
        labels: vec![("zone".to_string(), "a".to_string())],
        concurrency: 4,
        queues: queues.clone(),
    };
    let heartbeat = Heartbeat {
        worker_id: 9,
        in_flight: 2,
        assignments_version: 1,
        leaving: false,
    };
    let assignments = AssignmentListRequest {
        queue: Some("emails".to_string()),
        worker_id: None,
        after: None,
        limit: 10,
    };
    let line = NewLogLine {
        level: LogLevel::Info,
        message: "hello".to_string(),
        fields: Vec::new(),
    };
    let tail = LogTailRequest {
        job_id: job_id(1),
        execution: Some(2),
        lines: 5,
        after_seq: None,
        wait_ms: 0,
    };

    let registered = client
        .register_worker(register.clone())
        .await
        .expect("register");
    assert_eq!(registered.worker_id, 9);
    let reply = client
        .heartbeat(heartbeat.clone())
        .await
        .expect("heartbeat");
    assert_eq!(reply.command, WorkerCommand::Quiet);
    let page = client
        .worker_list(Some(WorkerState::Active), None, 50)
        .await
        .expect("list");
    assert_eq!(page.workers.len(), 1);
    client.worker_get(9).await.expect("get");
    client.worker_quiet(9).await.expect("quiet");
    client
        .worker_terminate(9, Some(1_000))
        .await
        .expect("terminate");
    client
        .worker_assign(9, queues.clone())
        .await
        .expect("assign");
    let listed = client
        .assignment_list(assignments.clone())
        .await
        .expect("assignments");
    assert_eq!(listed.next_after, Some(4));
    let logged = client
        .log(job_id(1), 5, vec![line.clone()])
        .await
        .expect("log");
    assert_eq!((logged.execution, logged.first_seq), (2, 11));
    client
        .progress(job_id(1), 5, 40, "resizing")
        .await
        .expect("progress");
    let read = client.log_tail(tail).await.expect("tail");
    assert!(!read.open);
    client
        .execution_list(job_id(1), Some(1), 20)
        .await
        .expect("executions");
    let results = client.job_results(job_id(1)).await.expect("results");
    assert_eq!(results.job.result.as_deref(), Some(&b"ok"[..]));
    client
        .fail_with_details(
            job_id(1),
            5,
            "boom",
            Retry::Never,
            Some("at line 3".to_string()),
        )
        .await
        .expect("fail with details");
    client
        .fail(job_id(1), 5, "plain", Retry::Backoff)
        .await
        .expect("plain fail");

    let requests = requests.lock().expect("lock").clone();
    assert_eq!(
        requests,
        vec![
            Request::WorkerRegister(register),
            Request::Heartbeat(heartbeat),
            Request::WorkerList(WorkerListRequest {
                state: Some(WorkerState::Active),
                after: None,
                limit: 50
            }),
            Request::WorkerGet(WorkerRef { worker_id: 9 }),
            Request::WorkerQuiet(WorkerRef { worker_id: 9 }),
            Request::WorkerTerminate(WorkerTerminate {
                worker_id: 9,
                grace_ms: Some(1_000)
            }),
            Request::WorkerAssign(WorkerAssign {
                worker_id: 9,
                queues
            }),
            Request::AssignmentList(assignments),
            Request::Log(LogRequest {
                job_id: job_id(1),
                lease_id: 5,
                lines: vec![line]
            }),
            Request::Progress(ProgressRequest {
                job_id: job_id(1),
                lease_id: 5,
                percent: 40,
                message: "resizing".to_string()
            }),
            Request::LogTail(tail),
            Request::ExecutionList(ExecutionListRequest {
                job_id: job_id(1),
                after: Some(1),
                limit: 20
            }),
            Request::JobResults(JobRef { job_id: job_id(1) }),
            Request::Fail(FailRequest {
                job_id: job_id(1),
                lease_id: 5,
                error: "boom".to_string(),
                retry: Retry::Never,
                error_details: Some("at line 3".to_string())
            }),
            Request::Fail(FailRequest {
                job_id: job_id(1),
                lease_id: 5,
                error: "plain".to_string(),
                retry: Retry::Backoff,
                error_details: None
            }),
        ]
    );
}
