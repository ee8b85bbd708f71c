//! A scriptable stand-in for the broker, used by the client's unit tests until the real one
//! exists: a TCP listener on an ephemeral port that hands each accepted connection to a
//! test-supplied async function speaking frames through [`FakeConnection`].

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use taskforge_protocol::limits::{
    BATCH_JOBS_MAX_DEFAULT, FETCH_JOBS_MAX, FETCH_WAIT_MS_MAX, FRAME_BYTES_CEILING,
    FRAME_BYTES_MAX_DEFAULT, PAYLOAD_BYTES_MAX_DEFAULT, PROTOCOL_VERSION,
    REQUESTS_IN_FLIGHT_MAX_DEFAULT, RESULT_BYTES_MAX_DEFAULT,
};
use taskforge_protocol::{
    ErrorBody, Frame, FrameCodec, FrameKind, HelloRequest, HelloResponse, PrincipalKind, ProjectId,
    Request, Response, SessionLimits,
};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::task::AbortOnDropHandle;

/// The project every fake session works in.
pub(crate) const FAKE_PROJECT_ID: ProjectId = 7;

/// Idle timeout the fake announces; nothing in the fake enforces it.
const FAKE_IDLE_TIMEOUT_MS: u32 = 60_000;

/// The server hello the fake sends: the protocol's default limits.
pub(crate) fn fake_hello() -> HelloResponse {
    HelloResponse {
        protocol_version: PROTOCOL_VERSION,
        server_version: "fake".to_string(),
        principal_kind: PrincipalKind::Root,
        project_id: FAKE_PROJECT_ID,
        org_id: None,
        user_id: None,
        limits: SessionLimits {
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            requests_in_flight_max: REQUESTS_IN_FLIGHT_MAX_DEFAULT,
            payload_bytes_max: PAYLOAD_BYTES_MAX_DEFAULT,
            result_bytes_max: RESULT_BYTES_MAX_DEFAULT,
            batch_jobs_max: BATCH_JOBS_MAX_DEFAULT,
            fetch_jobs_max: FETCH_JOBS_MAX,
            fetch_wait_ms_max: FETCH_WAIT_MS_MAX,
            idle_timeout_ms: FAKE_IDLE_TIMEOUT_MS,
        },
    }
}

/// A listening fake broker. Dropping it stops accepting (connections already accepted
/// keep running until their script ends).
pub(crate) struct FakeServer {
    /// Where it listens, for `Client::connect`.
    address: String,
    /// Connections accepted so far (reconnect tests count them).
    accepted: Arc<AtomicUsize>,
    /// The accept loop; dropping it closes the listener.
    _accept_task: AbortOnDropHandle<()>,
}

impl FakeServer {
    /// Listens on 127.0.0.1 and runs `serve` on every accepted connection.
    pub(crate) async fn start<Serve, Served>(serve: Serve) -> FakeServer
    where
        Serve: Fn(FakeConnection) -> Served + Send + Sync + 'static,
        Served: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake broker");
        let address = listener
            .local_addr()
            .expect("fake broker address")
            .to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        let accept_task = tokio::spawn(async move {
            while let Ok((stream, _peer)) = listener.accept().await {
                let index = counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(FakeConnection::new(stream, index)));
            }
        });
        FakeServer {
            address,
            accepted,
            _accept_task: AbortOnDropHandle::new(accept_task),
        }
    }

    /// `127.0.0.1:<port>`.
    pub(crate) fn address(&self) -> String {
        self.address.clone()
    }

    /// Connections accepted so far.
    pub(crate) fn connections_accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Sends frames on a fake connection; clone it into tasks that answer later.
#[derive(Clone)]
pub(crate) struct Replier {
    /// Frames for the connection's writer task.
    outgoing: mpsc::UnboundedSender<Frame>,
}

impl Replier {
    /// Sends a success response to `request_id`.
    pub(crate) fn respond(&self, request_id: u32, response: Response) {
        let mut body = bytes::BytesMut::new();
        response.encode_body(&mut body);
        self.raw(Frame {
            kind: FrameKind::Response,
            opcode: response.opcode().number(),
            request_id,
            body: body.freeze(),
        });
    }

    /// Sends an error response to `request_id`.
    pub(crate) fn error(&self, request_id: u32, opcode: u16, error: ErrorBody) {
        let mut body = bytes::BytesMut::new();
        taskforge_protocol::encode_body(&error, &mut body);
        self.raw(Frame {
            kind: FrameKind::Error,
            opcode,
            request_id,
            body: body.freeze(),
        });
    }

    /// Sends any frame.
    pub(crate) fn raw(&self, frame: Frame) {
        // The writer is gone only once the connection is dropped; then nobody listens.
        drop(self.outgoing.send(frame));
    }
}

/// One accepted connection. Dropping it closes the socket.
pub(crate) struct FakeConnection {
    /// 0 for the first connection the server accepted, 1 for the next, ...
    pub(crate) index: usize,
    /// Requests from the client.
    frames: FramedRead<OwnedReadHalf, FrameCodec>,
    /// Answers to the client, through the writer task.
    replier: Replier,
    /// Owns the write half; dropping it (with `frames`) closes the socket.
    _writer_task: AbortOnDropHandle<()>,
}

impl FakeConnection {
    fn new(stream: tokio::net::TcpStream, index: usize) -> FakeConnection {
        let (read_half, write_half) = stream.into_split();
        let (outgoing, mut outgoing_receiver) = mpsc::unbounded_channel::<Frame>();
        let writer_task = tokio::spawn(async move {
            let mut frames = FramedWrite::new(write_half, FrameCodec::new(FRAME_BYTES_CEILING));
            while let Some(frame) = outgoing_receiver.recv().await {
                if frames.send(frame).await.is_err() {
                    break;
                }
            }
        });
        FakeConnection {
            index,
            frames: FramedRead::new(read_half, FrameCodec::new(FRAME_BYTES_CEILING)),
            replier: Replier { outgoing },
            _writer_task: AbortOnDropHandle::new(writer_task),
        }
    }

    /// The next request, or `None` once the client closed the connection.
    pub(crate) async fn recv(&mut self) -> Option<(u32, Request)> {
        let frame = self.frames.next().await?.ok()?;
        assert_eq!(
            frame.kind,
            FrameKind::Request,
            "the client sent a non-request frame"
        );
        let request = Request::decode(frame.opcode, &frame.body).expect("decodable request");
        Some((frame.request_id, request))
    }

    /// A handle to answer on this connection, also from other tasks.
    pub(crate) fn replier(&self) -> Replier {
        self.replier.clone()
    }

    /// Sends a success response to `request_id`.
    pub(crate) fn respond(&self, request_id: u32, response: Response) {
        self.replier.respond(request_id, response);
    }

    /// Sends an error response to `request_id`.
    pub(crate) fn error(&self, request_id: u32, opcode: u16, error: ErrorBody) {
        self.replier.error(request_id, opcode, error);
    }

    /// Waits for the HELLO, answers it with [`fake_hello`] and returns it.
    pub(crate) async fn accept_hello(&mut self) -> Option<HelloRequest> {
        let (request_id, request) = self.recv().await?;
        let Request::Hello(hello) = request else {
            panic!("expected HELLO, got {request:?}")
        };
        self.respond(request_id, Response::Hello(fake_hello()));
        Some(hello)
    }

    /// Answers HELLO, PING and BYE the way the broker would; returns false for any other
    /// request, leaving it to the caller.
    pub(crate) fn answer_session_request(&self, request_id: u32, request: &Request) -> bool {
        let response = match request {
            Request::Hello(_) => Response::Hello(fake_hello()),
            Request::Ping(_) => Response::Ping(taskforge_protocol::Pong {
                server_time_ms: 1_700_000_000_000,
            }),
            Request::Bye(_) => Response::Bye(Default::default()),
            _ => return false,
        };
        self.respond(request_id, response);
        true
    }
}

/// A plausible JOB_GET answer for `job_id`.
pub(crate) fn fake_job_info(job_id: taskforge_protocol::JobId) -> taskforge_protocol::JobInfo {
    use taskforge_protocol::limits::{
        BACKOFF_FACTOR_PERCENT_DEFAULT, BACKOFF_INITIAL_MS_DEFAULT, BACKOFF_JITTER_PERCENT_DEFAULT,
        BACKOFF_MAX_MS_DEFAULT, LEASE_MS_DEFAULT, MAX_ATTEMPTS_DEFAULT,
    };
    taskforge_protocol::JobInfo {
        job_id,
        queue: "emails".to_string(),
        state: taskforge_protocol::JobState::Ready,
        priority: 0,
        payload: job_id.0.to_vec(),
        metadata: Vec::new(),
        attempts: 0,
        max_attempts: MAX_ATTEMPTS_DEFAULT,
        backoff: taskforge_protocol::Backoff {
            initial_ms: BACKOFF_INITIAL_MS_DEFAULT,
            factor_percent: BACKOFF_FACTOR_PERCENT_DEFAULT,
            max_ms: BACKOFF_MAX_MS_DEFAULT,
            jitter_percent: BACKOFF_JITTER_PERCENT_DEFAULT,
        },
        lease_ms: LEASE_MS_DEFAULT,
        created_at_ms: 1_700_000_000_000,
        run_at_ms: 1_700_000_000_000,
        updated_at_ms: 1_700_000_000_000,
        finished_at_ms: None,
        lease_deadline_ms: None,
        cancel_requested: false,
        last_error: None,
        result: None,
        executions: 0,
        latest_execution: None,
        progress: None,
        parents: Vec::new(),
        parents_remaining: 0,
        on_parent_failure: taskforge_protocol::ParentFailure::Cancel,
        children: Vec::new(),
        unique_key: None,
        expires_at_ms: None,
    }
}
