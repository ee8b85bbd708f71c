//! Connection behaviour over real sockets. Pre-handshake paths run against the real
//! broker through [`start_with`]; session paths run against a scripted broker behind the
//! same [`Dispatcher`] seam, whose requests can sleep, hang, panic or answer huge.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::future::BoxFuture;
use futures::{SinkExt as _, StreamExt as _};
use taskforge_protocol::limits::{
    FRAME_BYTES_CEILING, HANDSHAKE_FRAME_BYTES_MAX, PROTOCOL_VERSION,
};
use taskforge_protocol::{
    decode_body, Credentials, Empty, ErrorBody, ErrorCode, FetchRequest, Frame, FrameCodec,
    FrameKind, HelloRequest, HelloResponse, Opcode, Pong, PrincipalKind, QueueName, Request,
    Response,
};
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use super::dispatch::Dispatcher;
use super::{start_with, RunningServer, Server};
use crate::broker::Session;
use crate::clock::ManualClock;
use crate::config::{Config, Environment, Secret};
use crate::storage::MemoryStorage;

/// Longest any single step of a test may take before it counts as hung.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// The token the scripted broker accepts.
const GOOD_TOKEN: &str = "tfr_good_test_token";

/// The token that makes the scripted broker's authentication panic.
const PANIC_TOKEN: &str = "tfr_panicking_token";

/// Root token of servers started through `start_with`.
const ROOT_TOKEN: &str = "tfr_root_token_for_server_tests";

// ---------------------------------------------------------------------------------------
// Stand-ins

/// A broker whose behaviour each test scripts through QUEUE_DELETE queue names:
/// `sleep:<ms>`, `hang`, `panic`, `big:<bytes>` (an error with a message that long),
/// `wrong` (another operation's response); any other name succeeds at once. FETCH waits
/// forever.
#[derive(Default)]
struct ScriptedBroker {
    /// Set by `shutdown`.
    shut_down: AtomicBool,
}

impl Dispatcher for ScriptedBroker {
    fn authenticate(&self, hello: &HelloRequest) -> Result<Session, ErrorBody> {
        match &hello.credentials {
            Credentials::RootToken(token) if token == GOOD_TOKEN => Ok(Session::root(1)),
            Credentials::RootToken(token) if token == PANIC_TOKEN => panic!("scripted panic"),
            _ => Err(ErrorBody::new(
                ErrorCode::Unauthenticated,
                "invalid credentials",
            )),
        }
    }

    fn handle(
        self: Arc<Self>,
        _session: Arc<Session>,
        request: Request,
    ) -> BoxFuture<'static, Result<Response, ErrorBody>> {
        Box::pin(async move {
            let name = match request {
                Request::Ping(_) => return Ok(Response::Ping(Pong { server_time_ms: 42 })),
                Request::Fetch(_) => std::future::pending().await,
                Request::QueueDelete(QueueName { name }) => name,
                other => return Err(ErrorBody::new(ErrorCode::Forbidden, format!("{other:?}"))),
            };
            if let Some(sleep_ms) = name.strip_prefix("sleep:").and_then(|ms| ms.parse().ok()) {
                tokio::time::sleep(Duration::from_millis(sleep_ms)).await;
            } else if let Some(bytes) = name.strip_prefix("big:").and_then(|n| n.parse().ok()) {
                return Err(ErrorBody::new(ErrorCode::NotFound, "x".repeat(bytes)));
            } else if name == "hang" {
                std::future::pending::<()>().await;
            } else if name == "panic" {
                panic!("scripted request panic");
            } else if name == "wrong" {
                return Ok(Response::Ping(Pong { server_time_ms: 0 }));
            }
            Ok(Response::QueueDelete(Empty {}))
        })
    }

    fn now_ms(&self) -> u64 {
        42
    }

    fn release_long_polls(&self) {}

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        self.shut_down.store(true, Ordering::SeqCst);
        Box::pin(async {})
    }
}

// ---------------------------------------------------------------------------------------
// Servers

fn test_config() -> Config {
    let mut config = Config::defaults(Environment::Development);
    config.server.listen_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.server.admin_listen_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.broker.root_token = Some(Secret::new(ROOT_TOKEN));
    config
}

/// A server on the real broker (placeholder or not) with a manual clock.
async fn start_real(adjust: impl FnOnce(&mut Config)) -> (RunningServer, tempfile::TempDir) {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config();
    config.broker.data_dir = data_dir.path().to_path_buf();
    adjust(&mut config);
    let clock = Arc::new(ManualClock::new(1_234));
    let running = start_with(config, Arc::new(MemoryStorage::new()), clock)
        .await
        .expect("server starts");
    (running, data_dir)
}

/// A server on the scripted broker.
struct ScriptedServer {
    /// Where to connect.
    addr: SocketAddr,
    /// The broker, to check it was shut down.
    broker: Arc<ScriptedBroker>,
    /// Cancels the server.
    shutdown: CancellationToken,
    /// The server task.
    task: JoinHandle<()>,
}

impl ScriptedServer {
    async fn start(adjust: impl FnOnce(&mut Config)) -> ScriptedServer {
        let mut config = test_config();
        adjust(&mut config);
        config.validate().expect("test config is valid");
        let listener = TcpListener::bind(config.server.listen_addr)
            .await
            .expect("bind");
        let broker = Arc::new(ScriptedBroker::default());
        let server = Server::with_dispatcher(listener, &config, broker.clone()).expect("server");
        let addr = server.local_addr();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.run(shutdown.clone()));
        ScriptedServer {
            addr,
            broker,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(STEP_TIMEOUT, self.task)
            .await
            .expect("server stops in time")
            .expect("server task ends cleanly");
        assert!(
            self.broker.shut_down.load(Ordering::SeqCst),
            "broker shut down last"
        );
    }
}

// ---------------------------------------------------------------------------------------
// A raw client

type Client = Framed<TcpStream, FrameCodec>;

async fn connect(addr: SocketAddr) -> Client {
    let stream = TcpStream::connect(addr).await.expect("connect");
    Framed::new(stream, FrameCodec::new(FRAME_BYTES_CEILING))
}

async fn send(client: &mut Client, request_id: u32, request: &Request) {
    let mut body = BytesMut::new();
    request.encode_body(&mut body);
    let opcode = request.opcode().number();
    send_frame(client, FrameKind::Request, opcode, request_id, body).await;
}

async fn send_frame(
    client: &mut Client,
    kind: FrameKind,
    opcode: u16,
    request_id: u32,
    body: BytesMut,
) {
    let frame = Frame {
        kind,
        opcode,
        request_id,
        body: body.freeze(),
    };
    client.send(frame).await.expect("send frame");
}

async fn send_raw(client: &mut Client, bytes: &[u8]) {
    client.get_mut().write_all(bytes).await.expect("send bytes");
}

async fn receive(client: &mut Client) -> Frame {
    match tokio::time::timeout(STEP_TIMEOUT, client.next()).await {
        Ok(Some(Ok(frame))) => frame,
        Ok(other) => panic!("expected a frame, got {other:?}"),
        Err(_) => panic!("no frame within {STEP_TIMEOUT:?}"),
    }
}

fn error_of(frame: &Frame) -> ErrorBody {
    assert_eq!(
        frame.kind,
        FrameKind::Error,
        "expected an error frame: {frame:?}"
    );
    decode_body(frame.opcode, &frame.body).expect("error body decodes")
}

fn response_of(frame: &Frame) -> Response {
    assert_eq!(
        frame.kind,
        FrameKind::Response,
        "expected a response: {frame:?}"
    );
    Response::decode(frame.opcode, &frame.body).expect("response decodes")
}

async fn expect_closed(client: &mut Client) {
    match tokio::time::timeout(STEP_TIMEOUT, client.next()).await {
        Ok(None | Some(Err(_))) => {}
        Ok(Some(Ok(frame))) => panic!("expected the connection to close, got {frame:?}"),
        Err(_) => panic!("the connection was not closed within {STEP_TIMEOUT:?}"),
    }
}

fn hello_request(token: &str) -> Request {
    Request::Hello(HelloRequest {
        protocol_version: PROTOCOL_VERSION,
        client_name: "server-tests".into(),
        client_version: "0".into(),
        credentials: Credentials::RootToken(token.into()),
        project_id: None,
    })
}

async fn open_session(addr: SocketAddr) -> (Client, HelloResponse) {
    let mut client = connect(addr).await;
    send(&mut client, 1, &hello_request(GOOD_TOKEN)).await;
    let frame = receive(&mut client).await;
    match response_of(&frame) {
        Response::Hello(hello) => (client, hello),
        other => panic!("expected a hello response, got {other:?}"),
    }
}

fn queue_delete(name: &str) -> Request {
    Request::QueueDelete(QueueName { name: name.into() })
}

fn ping() -> Request {
    Request::Ping(Empty {})
}

// ---------------------------------------------------------------------------------------
// Before the handshake (real broker)

#[tokio::test]
async fn ping_before_hello_is_answered_with_the_broker_clock() {
    let (running, _data_dir) = start_real(|_| {}).await;
    assert_eq!(running.root_token(), ROOT_TOKEN);
    let mut client = connect(running.local_addr()).await;
    send(&mut client, 7, &ping()).await;
    let frame = receive(&mut client).await;
    assert_eq!((frame.request_id, frame.opcode), (7, Opcode::Ping.number()));
    assert_eq!(
        response_of(&frame),
        Response::Ping(Pong {
            server_time_ms: 1_234
        })
    );
    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn oversized_length_prefix_gets_frame_too_large_and_close() {
    let (running, _data_dir) = start_real(|_| {}).await;
    let mut client = connect(running.local_addr()).await;
    // Announces 4 GiB and sends nothing more: refused on the length alone.
    send_raw(&mut client, &[0xff, 0xff, 0xff, 0xff]).await;
    let frame = receive(&mut client).await;
    assert_eq!((frame.request_id, frame.opcode), (0, 0));
    assert_eq!(error_of(&frame).error_code(), ErrorCode::FrameTooLarge);
    expect_closed(&mut client).await;

    // A well-formed frame just over the pre-handshake limit is refused the same way.
    let mut client = connect(running.local_addr()).await;
    let oversized = HANDSHAKE_FRAME_BYTES_MAX + 1;
    send_raw(&mut client, &oversized.to_be_bytes()).await;
    assert_eq!(
        error_of(&receive(&mut client).await).error_code(),
        ErrorCode::FrameTooLarge
    );
    expect_closed(&mut client).await;
    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn malformed_header_gets_malformed_frame_and_close() {
    let (running, _data_dir) = start_real(|_| {}).await;
    for header in [
        // Unknown kind 9.
        [0u8, 0, 0, 7, 9, 0, 2, 0, 0, 0, 1],
        // Length shorter than the header.
        [0u8, 0, 0, 3, 0, 0, 2, 0, 0, 0, 1],
    ] {
        let mut client = connect(running.local_addr()).await;
        send_raw(&mut client, &header).await;
        let frame = receive(&mut client).await;
        assert_eq!(error_of(&frame).error_code(), ErrorCode::MalformedFrame);
        expect_closed(&mut client).await;
    }
    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn random_garbage_closes_the_connection() {
    let (running, _data_dir) = start_real(|config| config.server.handshake_timeout_ms = 300).await;
    let seed = fastrand::u64(..);
    println!("random_garbage_closes_the_connection seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    for _ in 0..8 {
        let garbage: Vec<u8> = (0..rng.usize(1..200)).map(|_| rng.u8(..)).collect();
        let mut client = connect(running.local_addr()).await;
        send_raw(&mut client, &garbage).await;
        // Whatever the garbage says, the connection ends: at once for a broken header,
        // at the handshake deadline for a frame that never completes.
        let ended = tokio::time::timeout(STEP_TIMEOUT, async {
            while let Some(Ok(frame)) = client.next().await {
                assert_ne!(
                    frame.kind,
                    FrameKind::Response,
                    "garbage got a response (seed {seed})"
                );
            }
        })
        .await;
        assert!(
            ended.is_ok(),
            "connection left open (seed {seed}, garbage {garbage:02x?})"
        );
    }
    // The server is unaffected.
    let mut client = connect(running.local_addr()).await;
    send(&mut client, 1, &ping()).await;
    assert!(matches!(
        response_of(&receive(&mut client).await),
        Response::Ping(_)
    ));
    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn request_before_hello_gets_handshake_required_and_close() {
    let (running, _data_dir) = start_real(|_| {}).await;
    let mut client = connect(running.local_addr()).await;
    send(&mut client, 5, &queue_delete("default")).await;
    let frame = receive(&mut client).await;
    assert_eq!(
        (frame.request_id, frame.opcode),
        (5, Opcode::QueueDelete.number())
    );
    assert_eq!(error_of(&frame).error_code(), ErrorCode::HandshakeRequired);
    expect_closed(&mut client).await;

    // An opcode the server does not know at all is refused the same way.
    let mut client = connect(running.local_addr()).await;
    send_frame(&mut client, FrameKind::Request, 0x7777, 6, BytesMut::new()).await;
    assert_eq!(
        error_of(&receive(&mut client).await).error_code(),
        ErrorCode::HandshakeRequired
    );
    expect_closed(&mut client).await;
    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn silent_connection_is_closed_at_the_handshake_deadline() {
    let (running, _data_dir) = start_real(|config| config.server.handshake_timeout_ms = 200).await;
    let started = Instant::now();
    let mut client = connect(running.local_addr()).await;
    // A PING does not extend the deadline: the whole pre-handshake phase has one.
    send(&mut client, 1, &ping()).await;
    assert!(matches!(
        response_of(&receive(&mut client).await),
        Response::Ping(_)
    ));
    expect_closed(&mut client).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(200),
        "closed early: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(2), "closed late: {elapsed:?}");
    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn hello_with_another_protocol_version_is_refused() {
    let (running, _data_dir) = start_real(|_| {}).await;
    let mut client = connect(running.local_addr()).await;
    let hello = Request::Hello(HelloRequest {
        protocol_version: PROTOCOL_VERSION + 1,
        client_name: "future".into(),
        client_version: "9".into(),
        credentials: Credentials::RootToken(ROOT_TOKEN.into()),
        project_id: None,
    });
    send(&mut client, 1, &hello).await;
    let frame = receive(&mut client).await;
    assert_eq!(
        (frame.request_id, frame.opcode),
        (1, Opcode::Hello.number())
    );
    assert_eq!(error_of(&frame).error_code(), ErrorCode::UnsupportedVersion);
    expect_closed(&mut client).await;
    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn failed_hello_closes_only_that_connection() {
    let (running, _data_dir) = start_real(|_| {}).await;
    let mut bystander = connect(running.local_addr()).await;
    let mut client = connect(running.local_addr()).await;
    send(&mut client, 1, &hello_request("tfr_wrong_token_value")).await;
    let code = error_of(&receive(&mut client).await).error_code();
    // UNAUTHENTICATED from a working broker; INTERNAL while authentication panics.
    assert!(
        matches!(code, ErrorCode::Unauthenticated | ErrorCode::Internal),
        "unexpected code {code}"
    );
    expect_closed(&mut client).await;
    send(&mut bystander, 2, &ping()).await;
    assert!(matches!(
        response_of(&receive(&mut bystander).await),
        Response::Ping(_)
    ));
    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_with_unavailable() {
    let (running, _data_dir) = start_real(|config| config.server.connections_max = 1).await;
    let mut first = connect(running.local_addr()).await;
    send(&mut first, 1, &ping()).await;
    assert!(matches!(
        response_of(&receive(&mut first).await),
        Response::Ping(_)
    ));

    let mut second = connect(running.local_addr()).await;
    let frame = receive(&mut second).await;
    assert_eq!((frame.request_id, frame.opcode), (0, 0));
    assert_eq!(error_of(&frame).error_code(), ErrorCode::Unavailable);
    expect_closed(&mut second).await;

    // Closing the first frees its slot.
    drop(first);
    let admitted = tokio::time::timeout(STEP_TIMEOUT, async {
        loop {
            let mut third = connect(running.local_addr()).await;
            send(&mut third, 1, &ping()).await;
            if receive(&mut third).await.kind == FrameKind::Response {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(admitted.is_ok(), "a slot never freed up");
    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn shutdown_closes_connections_still_in_the_handshake() {
    let (running, _data_dir) = start_real(|_| {}).await;
    let mut client = connect(running.local_addr()).await;
    send(&mut client, 1, &ping()).await;
    receive(&mut client).await;
    tokio::time::timeout(STEP_TIMEOUT, running.shutdown())
        .await
        .expect("shutdown in time")
        .expect("clean shutdown");
    expect_closed(&mut client).await;
}

// ---------------------------------------------------------------------------------------
// The handshake and the session (scripted broker)

#[tokio::test]
async fn authentication_panic_answers_internal_and_the_server_survives() {
    let server = ScriptedServer::start(|_| {}).await;
    let mut client = connect(server.addr).await;
    send(&mut client, 1, &hello_request(PANIC_TOKEN)).await;
    assert_eq!(
        error_of(&receive(&mut client).await).error_code(),
        ErrorCode::Internal
    );
    expect_closed(&mut client).await;
    let (mut client, _) = open_session(server.addr).await;
    send(&mut client, 2, &ping()).await;
    assert!(matches!(
        response_of(&receive(&mut client).await),
        Response::Ping(_)
    ));
    server.stop().await;
}

#[tokio::test]
async fn hello_opens_a_session_with_configured_limits_and_raises_the_frame_limit() {
    let server = ScriptedServer::start(|config| {
        config.server.idle_timeout_ms = 12_345;
        config.server.requests_in_flight_max = 17;
        config.broker.batch_jobs_max = 99;
    })
    .await;
    let (mut client, hello) = open_session(server.addr).await;
    assert_eq!(hello.protocol_version, PROTOCOL_VERSION);
    assert_eq!(hello.server_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(
        (hello.principal_kind, hello.project_id),
        (PrincipalKind::Root, 1)
    );
    assert_eq!(hello.limits.idle_timeout_ms, 12_345);
    assert_eq!(hello.limits.requests_in_flight_max, 17);
    assert_eq!(hello.limits.batch_jobs_max, 99);
    assert_eq!(
        hello.limits.frame_bytes_max,
        test_config().server.frame_bytes_max
    );

    // A frame far over the handshake limit is now accepted.
    let long_name = "q".repeat(3 * HANDSHAKE_FRAME_BYTES_MAX as usize);
    send(&mut client, 2, &queue_delete(&long_name)).await;
    let frame = receive(&mut client).await;
    assert_eq!(response_of(&frame), Response::QueueDelete(Empty {}));
    server.stop().await;
}

#[tokio::test]
async fn wrong_credentials_get_the_broker_error_and_close() {
    let server = ScriptedServer::start(|_| {}).await;
    let mut client = connect(server.addr).await;
    send(&mut client, 3, &hello_request("tfr_not_the_token")).await;
    let frame = receive(&mut client).await;
    assert_eq!(
        (frame.request_id, frame.opcode),
        (3, Opcode::Hello.number())
    );
    assert_eq!(error_of(&frame).error_code(), ErrorCode::Unauthenticated);
    expect_closed(&mut client).await;
    server.stop().await;
}

#[tokio::test]
async fn slow_request_does_not_delay_ping_on_the_same_connection() {
    let server = ScriptedServer::start(|_| {}).await;
    let (mut client, _) = open_session(server.addr).await;
    send(&mut client, 10, &queue_delete("sleep:400")).await;
    send(&mut client, 11, &ping()).await;
    let first = receive(&mut client).await;
    assert_eq!(
        first.request_id, 11,
        "PING answered while the slow request runs"
    );
    assert_eq!(
        response_of(&first),
        Response::Ping(Pong { server_time_ms: 42 })
    );
    let second = receive(&mut client).await;
    assert_eq!(second.request_id, 10);
    assert_eq!(response_of(&second), Response::QueueDelete(Empty {}));
    server.stop().await;
}

#[tokio::test]
async fn panicking_request_is_answered_internal_and_the_connection_lives() {
    let server = ScriptedServer::start(|_| {}).await;
    let (mut client, _) = open_session(server.addr).await;
    let (mut bystander, _) = open_session(server.addr).await;
    send(&mut client, 20, &queue_delete("panic")).await;
    let frame = receive(&mut client).await;
    assert_eq!(
        (frame.request_id, frame.opcode),
        (20, Opcode::QueueDelete.number())
    );
    assert_eq!(error_of(&frame).error_code(), ErrorCode::Internal);
    send(&mut client, 21, &ping()).await;
    assert_eq!(receive(&mut client).await.request_id, 21);
    send(&mut bystander, 22, &ping()).await;
    assert_eq!(receive(&mut bystander).await.request_id, 22);
    server.stop().await;
}

#[tokio::test]
async fn mismatched_broker_response_becomes_internal() {
    let server = ScriptedServer::start(|_| {}).await;
    let (mut client, _) = open_session(server.addr).await;
    send(&mut client, 4, &queue_delete("wrong")).await;
    let frame = receive(&mut client).await;
    assert_eq!(
        (frame.request_id, frame.opcode),
        (4, Opcode::QueueDelete.number())
    );
    assert_eq!(error_of(&frame).error_code(), ErrorCode::Internal);
    server.stop().await;
}

#[tokio::test]
async fn duplicate_request_id_in_flight_is_refused() {
    let server = ScriptedServer::start(|_| {}).await;
    let (mut client, _) = open_session(server.addr).await;
    send(&mut client, 30, &queue_delete("sleep:300")).await;
    send(&mut client, 30, &ping()).await;
    let first = receive(&mut client).await;
    assert_eq!(first.request_id, 30);
    assert_eq!(error_of(&first).error_code(), ErrorCode::DuplicateRequestId);
    let second = receive(&mut client).await;
    assert_eq!(response_of(&second), Response::QueueDelete(Empty {}));
    // Once answered, the id is free again.
    send(&mut client, 30, &ping()).await;
    assert!(matches!(
        response_of(&receive(&mut client).await),
        Response::Ping(_)
    ));
    server.stop().await;
}

#[tokio::test]
async fn unknown_opcode_and_malformed_body_keep_the_connection_open() {
    let server = ScriptedServer::start(|_| {}).await;
    let (mut client, _) = open_session(server.addr).await;
    send_frame(&mut client, FrameKind::Request, 0x7777, 40, BytesMut::new()).await;
    let frame = receive(&mut client).await;
    assert_eq!((frame.request_id, frame.opcode), (40, 0x7777));
    assert_eq!(error_of(&frame).error_code(), ErrorCode::UnknownOpcode);

    // QUEUE_DELETE needs a name; an empty body does not decode.
    let opcode = Opcode::QueueDelete.number();
    send_frame(&mut client, FrameKind::Request, opcode, 41, BytesMut::new()).await;
    let frame = receive(&mut client).await;
    assert_eq!((frame.request_id, frame.opcode), (41, opcode));
    assert_eq!(error_of(&frame).error_code(), ErrorCode::MalformedFrame);

    send(&mut client, 42, &ping()).await;
    assert_eq!(receive(&mut client).await.request_id, 42);
    server.stop().await;
}

#[tokio::test]
async fn hello_after_the_handshake_is_a_conflict() {
    let server = ScriptedServer::start(|_| {}).await;
    let (mut client, _) = open_session(server.addr).await;
    send(&mut client, 50, &hello_request(GOOD_TOKEN)).await;
    let frame = receive(&mut client).await;
    assert_eq!(frame.request_id, 50);
    assert_eq!(error_of(&frame).error_code(), ErrorCode::Conflict);
    send(&mut client, 51, &ping()).await;
    assert_eq!(receive(&mut client).await.request_id, 51);
    server.stop().await;
}

#[tokio::test]
async fn bye_answers_in_flight_requests_then_closes() {
    let server = ScriptedServer::start(|_| {}).await;
    let (mut client, _) = open_session(server.addr).await;
    send(&mut client, 60, &queue_delete("sleep:200")).await;
    send(&mut client, 61, &Request::Bye(Empty {})).await;
    // Sent after BYE: never read.
    send(&mut client, 62, &ping()).await;
    let first = receive(&mut client).await;
    assert_eq!(
        (first.request_id, response_of(&first)),
        (60, Response::QueueDelete(Empty {}))
    );
    let second = receive(&mut client).await;
    assert_eq!(
        (second.request_id, response_of(&second)),
        (61, Response::Bye(Empty {}))
    );
    expect_closed(&mut client).await;
    server.stop().await;
}

#[tokio::test]
async fn half_closed_client_gets_its_answers_but_its_fetches_are_abandoned() {
    let server = ScriptedServer::start(|_| {}).await;
    let (mut client, _) = open_session(server.addr).await;
    let fetch = Request::Fetch(FetchRequest {
        queues: vec!["emails".into()],
        max_jobs: 1,
        wait_ms: 60_000,
        lease_ms: None,
        worker_id: None,
        weights: Vec::new(),
    });
    send(&mut client, 130, &fetch).await;
    send(&mut client, 131, &queue_delete("sleep:200")).await;
    client.get_mut().shutdown().await.expect("half-close");
    let started = Instant::now();
    let frame = receive(&mut client).await;
    assert_eq!(
        (frame.request_id, response_of(&frame)),
        (131, Response::QueueDelete(Empty {}))
    );
    expect_closed(&mut client).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited for the FETCH"
    );
    server.stop().await;
}

#[tokio::test]
async fn in_flight_cap_stops_reading_until_a_request_finishes() {
    let server = ScriptedServer::start(|config| {
        config.server.requests_in_flight_max = 2;
        config.server.shutdown_grace_ms = 100;
    })
    .await;
    let (mut client, _) = open_session(server.addr).await;
    send(&mut client, 70, &queue_delete("sleep:300")).await;
    send(&mut client, 71, &queue_delete("hang")).await;
    // Not read until request 70 finishes, so it cannot be answered before it.
    send(&mut client, 72, &ping()).await;
    let first = receive(&mut client).await;
    assert_eq!(first.request_id, 70, "the PING waited for a free slot");
    let second = receive(&mut client).await;
    assert_eq!(second.request_id, 72);
    server.stop().await;
}

#[tokio::test]
async fn idle_session_is_closed() {
    let server = ScriptedServer::start(|config| config.server.idle_timeout_ms = 200).await;
    let (mut client, hello) = open_session(server.addr).await;
    assert_eq!(hello.limits.idle_timeout_ms, 200);
    // Activity keeps it open past one timeout.
    for request_id in 2..6 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        send(&mut client, request_id, &ping()).await;
        assert_eq!(receive(&mut client).await.request_id, request_id);
    }
    // A request in flight is not idleness.
    send(&mut client, 9, &queue_delete("sleep:400")).await;
    assert_eq!(receive(&mut client).await.request_id, 9);
    let started = Instant::now();
    expect_closed(&mut client).await;
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
    server.stop().await;
}

#[tokio::test]
async fn oversized_frame_after_handshake_closes_with_frame_too_large() {
    let server = ScriptedServer::start(|config| {
        config.server.frame_bytes_max = 64 * 1024;
        config.broker.payload_bytes_max = 1024;
        config.broker.result_bytes_max = 1024;
    })
    .await;
    let (mut client, _) = open_session(server.addr).await;
    send(&mut client, 80, &queue_delete(&"q".repeat(64 * 1024))).await;
    let frame = receive(&mut client).await;
    assert_eq!((frame.request_id, frame.opcode), (0, 0));
    assert_eq!(error_of(&frame).error_code(), ErrorCode::FrameTooLarge);
    expect_closed(&mut client).await;
    server.stop().await;
}

#[tokio::test]
async fn non_request_frame_after_handshake_closes_with_malformed_frame() {
    let server = ScriptedServer::start(|_| {}).await;
    let (mut client, _) = open_session(server.addr).await;
    send_frame(
        &mut client,
        FrameKind::Response,
        Opcode::Ping.number(),
        90,
        BytesMut::new(),
    )
    .await;
    let frame = receive(&mut client).await;
    assert_eq!(frame.request_id, 90);
    assert_eq!(error_of(&frame).error_code(), ErrorCode::MalformedFrame);
    expect_closed(&mut client).await;
    server.stop().await;
}

#[tokio::test]
async fn client_that_stops_reading_is_disconnected_by_the_write_deadline() {
    let server = ScriptedServer::start(|config| config.server.write_timeout_ms = 300).await;
    let (mut client, _) = open_session(server.addr).await;
    const ANSWERS: u32 = 32;
    const ANSWER_BYTES: usize = 1024 * 1024;
    for request_id in 100..100 + ANSWERS {
        send(
            &mut client,
            request_id,
            &queue_delete(&format!("big:{ANSWER_BYTES}")),
        )
        .await;
    }
    // Far more than the socket buffers hold; the writer blocks, then gives up.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut answers = 0;
    let drained = tokio::time::timeout(STEP_TIMEOUT, async {
        while let Some(Ok(_)) = client.next().await {
            answers += 1;
        }
    })
    .await;
    assert!(drained.is_ok(), "the server kept the connection open");
    assert!(
        answers < ANSWERS,
        "all {answers} answers arrived: the writer never blocked"
    );
    // Other connections are unaffected.
    let (mut other, _) = open_session(server.addr).await;
    send(&mut other, 2, &ping()).await;
    assert_eq!(receive(&mut other).await.request_id, 2);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_answers_in_flight_requests_then_shuts_the_broker_down() {
    let server = ScriptedServer::start(|_| {}).await;
    let (mut client, _) = open_session(server.addr).await;
    send(&mut client, 110, &queue_delete("sleep:300")).await;
    // Let the server read it before the shutdown starts.
    send(&mut client, 111, &ping()).await;
    assert_eq!(receive(&mut client).await.request_id, 111);
    let broker = Arc::clone(&server.broker);
    let stopping = tokio::spawn(server.stop());
    let frame = receive(&mut client).await;
    assert_eq!(
        (frame.request_id, response_of(&frame)),
        (110, Response::QueueDelete(Empty {}))
    );
    expect_closed(&mut client).await;
    stopping.await.expect("server stopped");
    assert!(broker.shut_down.load(Ordering::SeqCst));
}

#[tokio::test]
async fn shutdown_drops_requests_still_running_after_the_grace_period() {
    let server = ScriptedServer::start(|config| config.server.shutdown_grace_ms = 200).await;
    let (mut client, _) = open_session(server.addr).await;
    send(&mut client, 120, &queue_delete("hang")).await;
    send(&mut client, 121, &ping()).await;
    assert_eq!(receive(&mut client).await.request_id, 121);
    let started = Instant::now();
    server.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    expect_closed(&mut client).await;
}
