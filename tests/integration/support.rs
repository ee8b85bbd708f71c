//! Test helpers: a server on a temp dir and an ephemeral port, clients for it, a raw frame
//! connection for byte-level tests, and polling for conditions that a timer task brings
//! about asynchronously.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use taskforge::client::{Client, ClientError, ClientOptions};
use taskforge::clock::ManualClock;
use taskforge::config::{Config, Environment, Secret};
use taskforge::server::RunningServer;
use taskforge::storage::{SledOptions, SledStorage};
use taskforge_protocol::{
    limits, Credentials, ErrorBody, ErrorCode, Frame, FrameCodec, FrameKind, HelloRequest, NewJob,
    Opcode, Request,
};
use tempfile::TempDir;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// The root token every test server accepts.
pub const ROOT_TOKEN: &str = "tfr_integration_test_token";

/// How long a test waits for something that should happen promptly.
pub const PROMPT: Duration = Duration::from_secs(5);

/// A live server on a temporary data directory.
pub struct TestServer {
    /// The running server (None only while restarting).
    running: Option<RunningServer>,
    /// Its configuration (data dir, limits).
    pub config: Config,
    /// The manual clock, when the test controls time.
    pub clock: Option<ManualClock>,
    /// The data directory, removed when the test ends.
    _data_dir: TempDir,
}

/// A start time for manual clocks: a fixed, realistic instant.
pub const CLOCK_START_MS: u64 = 1_800_000_000_000;

impl TestServer {
    /// A server on the system clock.
    pub async fn start() -> TestServer {
        TestServer::launch(None, |_| {}).await
    }

    /// A server whose time moves only when the test advances its clock.
    pub async fn start_with_manual_clock() -> TestServer {
        TestServer::launch(Some(ManualClock::new(CLOCK_START_MS)), |_| {}).await
    }

    /// A server on a manual clock with a configuration tweak.
    pub async fn start_with_manual_clock_configured(tweak: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::launch(Some(ManualClock::new(CLOCK_START_MS)), tweak).await
    }

    /// A server on the system clock with a configuration tweak.
    pub async fn start_configured(tweak: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::launch(None, tweak).await
    }

    async fn launch(clock: Option<ManualClock>, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::defaults(Environment::Development);
        config.server.listen_addr = "127.0.0.1:0".parse().expect("addr");
        config.server.admin_listen_addr = "127.0.0.1:0".parse().expect("addr");
        config.broker.data_dir = data_dir.path().to_path_buf();
        config.broker.root_token = Some(Secret::new(ROOT_TOKEN));
        tweak(&mut config);
        let mut server = TestServer {
            running: None,
            config,
            clock,
            _data_dir: data_dir,
        };
        server.running = Some(server.boot().await);
        server
    }

    async fn boot(&self) -> RunningServer {
        match &self.clock {
            None => taskforge::server::start(self.config.clone())
                .await
                .expect("server starts"),
            Some(clock) => {
                // The previous server's sled threads may hold the lock a moment longer.
                let storage = SledStorage::open_waiting_for_lock(
                    &self.config.broker.data_dir,
                    SledOptions::default(),
                    PROMPT.as_millis() as u64,
                )
                .expect("open sled");
                taskforge::server::start_with(
                    self.config.clone(),
                    Arc::new(storage),
                    Arc::new(clock.clone()),
                )
                .await
                .expect("server starts")
            }
        }
    }

    /// Where clients connect (changes on restart).
    pub fn addr(&self) -> SocketAddr {
        self.running.as_ref().expect("server running").local_addr()
    }

    /// Where the HTTP admin port listens (changes on restart).
    pub fn admin_addr(&self) -> SocketAddr {
        self.running.as_ref().expect("server running").admin_addr()
    }

    /// A client authenticated with the root token.
    pub async fn client(&self) -> Client {
        Client::connect(
            self.addr(),
            ClientOptions::new(Credentials::RootToken(ROOT_TOKEN.into())),
        )
        .await
        .expect("client connects")
    }

    /// A raw frame connection, not yet authenticated.
    pub async fn raw(&self) -> RawConnection {
        RawConnection::connect(self.addr()).await
    }

    /// Shuts down gracefully and starts again on the same data directory.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.running = Some(self.boot().await);
    }

    /// Shuts down gracefully.
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await.expect("graceful shutdown");
        }
    }

    /// Advances the manual clock.
    pub fn advance(&self, delta_ms: u64) {
        self.clock
            .as_ref()
            .expect("a manual clock")
            .advance(delta_ms);
    }
}

/// The error code of a failed call; panics on success.
pub fn code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> ErrorCode {
    match result {
        Err(error) => error
            .code()
            .unwrap_or_else(|| panic!("no error code in {error:?}")),
        Ok(value) => panic!("expected an error, got {value:?}"),
    }
}

/// A job for queue `queue` with `payload`.
pub fn job(queue: &str, payload: &[u8]) -> NewJob {
    NewJob {
        queue: queue.into(),
        payload: payload.to_vec(),
        ..NewJob::default()
    }
}

/// Polls `probe` until it yields a value, failing the test after [`PROMPT`].
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PROMPT;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A socket speaking raw frames, for byte-level tests.
pub struct RawConnection {
    /// The framed socket.
    pub framed: Framed<TcpStream, FrameCodec>,
}

impl RawConnection {
    /// Connects without a handshake.
    pub async fn connect(addr: SocketAddr) -> RawConnection {
        let stream = TcpStream::connect(addr).await.expect("connect");
        RawConnection {
            framed: Framed::new(stream, FrameCodec::new(limits::FRAME_BYTES_CEILING)),
        }
    }

    /// Sends a request frame with an already encoded body.
    pub async fn send_raw(&mut self, opcode: u16, request_id: u32, body: Bytes) {
        let frame = Frame {
            kind: FrameKind::Request,
            opcode,
            request_id,
            body,
        };
        self.framed.send(frame).await.expect("send");
    }

    /// Sends a typed request.
    pub async fn send(&mut self, request_id: u32, request: &Request) {
        let mut body = BytesMut::new();
        request.encode_body(&mut body);
        self.send_raw(request.opcode().number(), request_id, body.freeze())
            .await;
    }

    /// Queues a typed request without flushing (for pipelining bursts).
    pub async fn feed(&mut self, request_id: u32, request: &Request) {
        let mut body = BytesMut::new();
        request.encode_body(&mut body);
        let frame = Frame {
            kind: FrameKind::Request,
            opcode: request.opcode().number(),
            request_id,
            body: body.freeze(),
        };
        self.framed.feed(frame).await.expect("feed");
    }

    /// Flushes fed frames.
    pub async fn flush(&mut self) {
        self.framed.flush().await.expect("flush");
    }

    /// The next frame, or None when the server closed the connection (or an error).
    pub async fn recv(&mut self) -> Option<Frame> {
        match tokio::time::timeout(PROMPT, self.framed.next()).await {
            Ok(Some(Ok(frame))) => Some(frame),
            Ok(_) => None,
            Err(_) => panic!("no frame and no close within {PROMPT:?}"),
        }
    }

    /// Completes the handshake with `token`, returning the response frame.
    pub async fn hello(&mut self, token: &str) -> Frame {
        let hello = Request::Hello(HelloRequest {
            protocol_version: limits::PROTOCOL_VERSION,
            client_name: "raw-test".into(),
            client_version: "0".into(),
            credentials: Credentials::RootToken(token.into()),
            project_id: None,
        });
        self.send(1, &hello).await;
        self.recv().await.expect("hello answered")
    }

    /// Reads until the server closes; true if it closed within [`PROMPT`].
    pub async fn closed(&mut self) -> bool {
        loop {
            match tokio::time::timeout(PROMPT, self.framed.next()).await {
                Ok(None) | Ok(Some(Err(_))) => return true,
                Ok(Some(Ok(_))) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// Reads whatever the server sends on `stream` until it closes it; `None` if no byte and
/// no close arrive within `wait` (each read gets that long).
pub async fn read_until_closed(stream: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout(wait, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(received),
            Ok(Ok(read)) => received.extend_from_slice(&buffer[..read]),
            Err(_) => return None,
        }
    }
}

/// Decodes an error frame's body.
pub fn error_of(frame: &Frame) -> ErrorBody {
    assert_eq!(
        frame.kind,
        FrameKind::Error,
        "expected an error frame, got {frame:?}"
    );
    taskforge_protocol::decode_body(frame.opcode, &frame.body).expect("error body decodes")
}

/// The opcode of a frame, typed.
pub fn opcode_of(frame: &Frame) -> Option<Opcode> {
    Opcode::from_number(frame.opcode)
}
