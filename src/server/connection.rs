//! One connection: handshake, then the session loop, then an orderly close.
//!
//! The session loop reads request frames and starts each as a future it polls alongside
//! its reads (see `in_flight.rs`); answers go to the writer task as they complete, in any
//! order. It stops
//! reading at the in-flight cap until a request finishes (backpressure), closes an idle
//! session, and on BYE, end of stream or shutdown stops reading and answers what is in
//! flight before closing (except FETCHes when the client closed: nobody would receive
//! the jobs they lease).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use taskforge_protocol::limits::HANDSHAKE_FRAME_BYTES_MAX;
use taskforge_protocol::{
    Empty, ErrorBody, ErrorCode, Frame, FrameCodec, FrameError, FrameKind, MessageError, Opcode,
    Request, Response,
};
use tokio::io::AsyncReadExt as _;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::broker::Session;

use super::in_flight::{Completed, InFlight};
use super::reply::{connection_error_frame, error_frame, opcode_name, response_frame};
use super::writer::{self, Outbox};
use super::{handshake, ConnectionContext};

/// The read side of a connection, decoded into frames.
pub(crate) type Frames = FramedRead<OwnedReadHalf, FrameCodec>;

/// Initial read buffer: one handshake frame. It grows only with bytes that arrive.
const READ_BUFFER_BYTES_INITIAL: usize = HANDSHAKE_FRAME_BYTES_MAX as usize;

/// After the last frame is sent, how long the server keeps reading (and discarding) so
/// that closing with unread client bytes does not reset the connection before the client
/// has read the last answer.
const CLOSE_LINGER: Duration = Duration::from_millis(500);

/// Most bytes discarded while lingering.
const CLOSE_LINGER_BYTES_MAX: usize = 256 * 1024;

/// Size of the buffer lingering reads into.
const CLOSE_LINGER_CHUNK_BYTES: usize = 4 * 1024;

/// Why a connection closed, for the close log line.
#[derive(Debug)]
pub(crate) enum CloseReason {
    /// The client closed its side and nothing was left in flight.
    PeerClosed,
    /// The client said BYE.
    Bye,
    /// The session's API key was revoked (or its project deleted).
    CredentialRevoked,
    /// Nothing was in flight and nothing arrived for the idle timeout.
    IdleTimeout,
    /// HELLO did not complete within the handshake deadline.
    HandshakeTimeout,
    /// The handshake was refused with this code.
    HandshakeRefused(ErrorCode),
    /// The client broke the framing or sent a frame that is not a request.
    ProtocolError(String),
    /// Reading the socket failed.
    ReadFailed(String),
    /// The writer stopped: the socket failed or the client stopped reading.
    WriterStopped,
    /// The writer stopped for this reason.
    WriteFailed(String),
    /// The server is shutting down; everything in flight was answered.
    Shutdown,
    /// The server is shutting down and these requests did not finish within the grace
    /// period; they were dropped unanswered.
    ShutdownGraceExpired(usize),
}

impl CloseReason {
    /// True when the client may still have bytes on the way that the server will not read.
    fn wants_linger(&self) -> bool {
        !matches!(
            self,
            CloseReason::PeerClosed
                | CloseReason::IdleTimeout
                | CloseReason::HandshakeTimeout
                | CloseReason::ReadFailed(_)
                | CloseReason::WriterStopped
                | CloseReason::WriteFailed(_)
        )
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::PeerClosed => f.write_str("client closed the connection"),
            CloseReason::Bye => f.write_str("client said BYE"),
            CloseReason::CredentialRevoked => f.write_str("the session's API key was revoked"),
            CloseReason::IdleTimeout => f.write_str("idle timeout"),
            CloseReason::HandshakeTimeout => f.write_str("handshake timeout"),
            CloseReason::HandshakeRefused(code) => write!(f, "handshake refused ({code})"),
            CloseReason::ProtocolError(message) => write!(f, "protocol error: {message}"),
            CloseReason::ReadFailed(message) => write!(f, "read failed: {message}"),
            CloseReason::WriterStopped => f.write_str("writer stopped"),
            CloseReason::WriteFailed(message) => f.write_str(message),
            CloseReason::Shutdown => f.write_str("server shutting down"),
            CloseReason::ShutdownGraceExpired(dropped) => {
                write!(
                    f,
                    "server shutting down; {dropped} request(s) dropped after the grace period"
                )
            }
        }
    }
}

/// Serves one accepted connection until it closes. Runs inside the connection's span.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    context: Arc<ConnectionContext>,
    shutdown: CancellationToken,
) {
    let (read_half, write_half) = stream.into_split();
    let mut frames = FramedRead::with_capacity(
        read_half,
        FrameCodec::new(HANDSHAKE_FRAME_BYTES_MAX),
        READ_BUFFER_BYTES_INITIAL,
    );
    let (outbox, writer) = writer::spawn(write_half, context.write_timeout);

    let mut reason =
        match handshake::perform(&mut frames, &outbox, &context, &shutdown, peer.ip()).await {
            Ok(session) => {
                frames
                    .decoder_mut()
                    .set_frame_bytes_max(context.frame_bytes_max);
                SessionLoop::new(&context, Arc::new(session), &outbox)
                    .run(&mut frames, &shutdown)
                    .await
            }
            Err(reason) => reason,
        };

    // Dropping the outbox lets the writer send what is queued, flush and send FIN.
    drop(outbox);
    match writer.await {
        Ok(Ok(())) => {}
        Ok(Err(failure)) => {
            tracing::debug!(%failure, "writer stopped");
            if matches!(reason, CloseReason::WriterStopped) {
                reason = CloseReason::WriteFailed(failure.to_string());
            }
        }
        Err(join_error) => tracing::error!(%join_error, "writer task failed"),
    }
    if reason.wants_linger() {
        linger(frames.into_inner()).await;
    }
    match reason {
        CloseReason::ProtocolError(_) | CloseReason::ShutdownGraceExpired(_) => {
            tracing::warn!(reason = %reason, "connection closed")
        }
        _ => tracing::info!(reason = %reason, "connection closed"),
    }
}

/// Reads and discards what the client still sends, for a short while, so that the close
/// is a FIN the client sees after our last frame rather than a reset.
async fn linger(mut read_half: OwnedReadHalf) {
    let deadline = Instant::now() + CLOSE_LINGER;
    let mut discard = vec![0u8; CLOSE_LINGER_CHUNK_BYTES];
    let mut discarded_bytes = 0;
    while discarded_bytes < CLOSE_LINGER_BYTES_MAX {
        match tokio::time::timeout_at(deadline, read_half.read(&mut discard)).await {
            Ok(Ok(read_bytes)) if read_bytes > 0 => discarded_bytes += read_bytes,
            _ => break,
        }
    }
}

/// Answers a frame-level error with an error frame about the connection (request id 0,
/// opcode 0) and reports the close that must follow: the stream cannot be trusted.
pub(crate) async fn frame_error_reply(outbox: &Outbox, error: FrameError) -> CloseReason {
    let code = match &error {
        FrameError::Io(io_error) => return CloseReason::ReadFailed(io_error.to_string()),
        FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
        FrameError::TooShort { .. } | FrameError::UnknownKind(_) | FrameError::Truncated { .. } => {
            ErrorCode::MalformedFrame
        }
    };
    let message = error.to_string();
    tracing::warn!(code = %code, %message, "unreadable frame; closing");
    // If the writer is gone the client is too; the close reason says what happened first.
    let _ = outbox
        .send(connection_error_frame(code, message.clone()))
        .await;
    CloseReason::ProtocolError(message)
}

/// What the session loop does after handling one frame.
enum Flow {
    /// Keep going.
    Continue,
    /// Close now, for this reason.
    Close(CloseReason),
}

/// The state of a session after the handshake.
struct SessionLoop<'a> {
    /// Shared settings and the broker.
    context: &'a ConnectionContext,
    /// Who the session is; every request runs as this.
    session: Arc<Session>,
    /// Where answers go.
    outbox: &'a Outbox,
    /// Requests running.
    in_flight: InFlight,
    /// False once BYE, end of stream or shutdown stopped reading.
    reading: bool,
    /// Why reading stopped, which becomes the close reason once in flight drains.
    stop_reason: Option<CloseReason>,
    /// The request id of a BYE, answered after everything else.
    bye_request_id: Option<u32>,
    /// When a shutdown began, the moment in-flight requests are dropped.
    grace_deadline: Option<Instant>,
    /// The last frame received or answer sent, for the idle timeout.
    last_activity: Instant,
}

impl<'a> SessionLoop<'a> {
    fn new(context: &'a ConnectionContext, session: Arc<Session>, outbox: &'a Outbox) -> Self {
        SessionLoop {
            context,
            session,
            outbox,
            in_flight: InFlight::default(),
            reading: true,
            stop_reason: None,
            bye_request_id: None,
            grace_deadline: None,
            last_activity: Instant::now(),
        }
    }

    async fn run(mut self, frames: &mut Frames, shutdown: &CancellationToken) -> CloseReason {
        let idle_timeout = self.context.idle_timeout;
        // One timer, moved only when it fires early (activity since it was set), rather
        // than reset on every frame.
        let idle = tokio::time::sleep(idle_timeout);
        tokio::pin!(idle);
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        let outbox = self.outbox;
        let writer_stopped = outbox.closed();
        tokio::pin!(writer_stopped);
        let revoked_session = Arc::clone(&self.session);
        let revoked = revoked_session.revoked.cancelled();
        tokio::pin!(revoked);

        while self.reading || !self.in_flight.is_empty() {
            let can_read =
                self.reading && self.in_flight.len() < self.context.requests_in_flight_max;
            tokio::select! {
                biased;
                _ = &mut writer_stopped => {
                    self.in_flight.abort_all();
                    return CloseReason::WriterStopped;
                }
                Some(completed) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    self.last_activity = Instant::now();
                    if self.answer(completed).await.is_err() {
                        return CloseReason::WriterStopped;
                    }
                }
                _ = &mut revoked => {
                    // Within a second of the revocation: drop what is in flight too, so a
                    // long poll cannot keep a revoked credential's session alive.
                    self.in_flight.abort_all();
                    return CloseReason::CredentialRevoked;
                }
                _ = &mut cancelled, if self.grace_deadline.is_none() => {
                    self.grace_deadline = Some(Instant::now() + self.context.shutdown_grace);
                    self.stop_reading(CloseReason::Shutdown);
                }
                _ = sleep_until_some(self.grace_deadline), if self.grace_deadline.is_some() => {
                    let dropped = self.in_flight.len();
                    self.in_flight.abort_all();
                    return CloseReason::ShutdownGraceExpired(dropped);
                }
                _ = &mut idle, if self.reading && self.in_flight.is_empty() => {
                    let idle_until = self.last_activity + idle_timeout;
                    if Instant::now() >= idle_until {
                        return CloseReason::IdleTimeout;
                    }
                    idle.as_mut().reset(idle_until);
                }
                next = frames.next(), if can_read => {
                    self.last_activity = Instant::now();
                    let flow = match next {
                        None => {
                            // A worker that died mid long-poll must not be leased jobs it
                            // will never see; other requests finish (their effects stand).
                            let aborted = self.in_flight.abort_opcode(Opcode::Fetch);
                            if aborted > 0 {
                                tracing::debug!(aborted, "client closed; FETCHes abandoned");
                            }
                            self.stop_reading(CloseReason::PeerClosed);
                            Flow::Continue
                        }
                        Some(Err(error)) => Flow::Close(frame_error_reply(outbox, error).await),
                        Some(Ok(frame)) => self.on_frame(frame).await,
                    };
                    if let Flow::Close(reason) = flow {
                        self.in_flight.abort_all();
                        return reason;
                    }
                }
            }
        }

        if let Some(request_id) = self.bye_request_id {
            let bye = response_frame(request_id, &Response::Bye(Empty {}));
            if outbox.send(bye).await.is_err() {
                return CloseReason::WriterStopped;
            }
        }
        self.stop_reason.unwrap_or(CloseReason::PeerClosed)
    }

    fn stop_reading(&mut self, reason: CloseReason) {
        if self.reading {
            self.reading = false;
            self.stop_reason = Some(reason);
        }
    }

    /// Handles one received frame: starts a request, or answers a bad one at once.
    async fn on_frame(&mut self, frame: Frame) -> Flow {
        if frame.kind != FrameKind::Request {
            let message = format!("expected a request frame, got {:?}", frame.kind);
            tracing::warn!(
                request_id = frame.request_id,
                opcode = opcode_name(frame.opcode),
                "{message}; closing"
            );
            let error = ErrorBody::new(ErrorCode::MalformedFrame, message.clone());
            // Closing either way; a stopped writer changes nothing.
            let _ = self
                .outbox
                .send(error_frame(frame.request_id, frame.opcode, &error))
                .await;
            return Flow::Close(CloseReason::ProtocolError(message));
        }
        let request_id = frame.request_id;
        if self.in_flight.contains(request_id) {
            return self
                .refuse(
                    &frame,
                    ErrorCode::DuplicateRequestId,
                    "this request id is already in flight",
                )
                .await;
        }
        let request = match Request::decode(frame.opcode, &frame.body) {
            Ok(request) => request,
            Err(MessageError::UnknownOpcode(_)) => {
                let message = format!("opcode 0x{:04x} is not known to this server", frame.opcode);
                return self.refuse(&frame, ErrorCode::UnknownOpcode, message).await;
            }
            Err(error @ MessageError::Malformed { .. }) => {
                return self
                    .refuse(&frame, ErrorCode::MalformedFrame, error.to_string())
                    .await;
            }
        };
        match request {
            Request::Hello(_) => {
                self.refuse(&frame, ErrorCode::Conflict, "the session is already open")
                    .await
            }
            Request::Bye(_) => {
                tracing::debug!(request_id, "BYE: answering what is in flight, then closing");
                self.bye_request_id = Some(request_id);
                self.stop_reading(CloseReason::Bye);
                Flow::Continue
            }
            request => {
                let opcode = request.opcode();
                let dispatcher = Arc::clone(&self.context.dispatcher);
                let handling = dispatcher.handle(Arc::clone(&self.session), request);
                self.in_flight.spawn(request_id, opcode, handling);
                Flow::Continue
            }
        }
    }

    /// Answers `frame` with an error; the connection stays open.
    async fn refuse(&mut self, frame: &Frame, code: ErrorCode, message: impl Into<String>) -> Flow {
        let message = message.into();
        tracing::debug!(
            request_id = frame.request_id,
            opcode = opcode_name(frame.opcode),
            code = %code,
            %message,
            "request refused"
        );
        let error = ErrorBody::new(code, message);
        match self
            .outbox
            .send(error_frame(frame.request_id, frame.opcode, &error))
            .await
        {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Close(CloseReason::WriterStopped),
        }
    }

    /// Sends the answer of a finished request.
    async fn answer(&mut self, completed: Completed) -> Result<(), writer::WriterGone> {
        let Completed {
            request_id,
            opcode,
            outcome,
        } = completed;
        let frame = match outcome {
            Ok(response) if response.opcode() == opcode => response_frame(request_id, &response),
            Ok(response) => {
                tracing::error!(
                    request_id,
                    opcode = opcode.name(),
                    response_opcode = response.opcode().name(),
                    "the broker answered with another operation's response"
                );
                let error =
                    ErrorBody::new(ErrorCode::Internal, "internal error: mismatched response");
                error_frame(request_id, opcode.number(), &error)
            }
            Err(error) => {
                tracing::debug!(request_id, opcode = opcode.name(), code = %error.error_code(), "request failed");
                error_frame(request_id, opcode.number(), &error)
            }
        };
        self.outbox.answer(frame, self.in_flight.len()).await
    }
}

/// Sleeps until `deadline`, or forever when there is none.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
