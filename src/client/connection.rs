//! One socket to the broker: the reader and writer tasks, the map of requests waiting for
//! their answers, and the handshake that opens it.
//!
//! A caller encodes its request, takes an in-flight permit, registers a waiter under a fresh
//! request id and hands the frame to the writer task. The reader task routes every response
//! to the waiter with the same id, in whatever order the broker answers. When either task
//! sees the socket fail, the connection is closed for good: every waiter gets an error and
//! the [`crate::client::Client`] opens a new connection on its next call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use taskforge_protocol::frame::HEADER_AFTER_LENGTH_BYTES;
use taskforge_protocol::limits::{
    FRAME_BYTES_CEILING, HANDSHAKE_FRAME_BYTES_MAX, PROTOCOL_VERSION,
};
use taskforge_protocol::{
    decode_body, ErrorBody, Frame, FrameCodec, FrameKind, HelloRequest, HelloResponse, Request,
    Response, SessionLimits,
};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use super::error::ClientError;
use super::options::ClientOptions;

/// Largest response frame the reader accepts. The broker is trusted more than a client, but
/// not blindly: this is the protocol's ceiling, and the codec buffers only bytes that
/// actually arrive, never the announced size.
pub const RESPONSE_FRAME_BYTES_MAX: u32 = FRAME_BYTES_CEILING;

/// Frames queued for the writer task. Callers wait when it is full, which pushes back on
/// producers when the socket is slower than they are.
pub const WRITE_QUEUE_FRAMES_MAX: usize = 1_024;

/// Most frames the writer feeds before it flushes, so one flush covers a burst of pipelined
/// requests but a steady stream still reaches the socket regularly.
pub const WRITE_BURST_FRAMES_MAX: usize = 256;

/// Cap on the in-flight window whatever the broker announces: it bounds the waiter map.
pub const REQUESTS_IN_FLIGHT_CEILING: u32 = 65_536;

/// Why a connection closed, as the waiters learn it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Closed {
    /// The frame-level error the broker sent (request id 0) before it closed, if any.
    server_error: Option<ErrorBody>,
}

/// What a waiter receives: the answer frame, or the news that the connection closed.
type Answer = Result<Frame, Closed>;

/// The requests waiting for answers on one connection.
#[derive(Debug)]
struct PendingRequests {
    /// Waiters by request id.
    waiters: HashMap<u32, oneshot::Sender<Answer>>,
    /// The next id to try. Ids wrap around; 0 is never used because the broker sends
    /// frame-level errors with request id 0.
    next_request_id: u32,
    /// Set once the connection is down; no waiter is registered after that.
    closed: Option<Closed>,
}

impl PendingRequests {
    fn new() -> PendingRequests {
        PendingRequests {
            waiters: HashMap::new(),
            next_request_id: 1,
            closed: None,
        }
    }

    /// Registers a waiter under a fresh id that is neither 0 nor still in flight.
    fn register(&mut self, waiter: oneshot::Sender<Answer>) -> Result<u32, Closed> {
        if let Some(closed) = &self.closed {
            return Err(closed.clone());
        }
        // Among any `waiters.len() + 2` consecutive ids at least one is free and non-zero,
        // so this loop always ends within its bound.
        for _ in 0..self.waiters.len() + 2 {
            let request_id = self.next_request_id;
            self.next_request_id = request_id.wrapping_add(1);
            if request_id != 0 && !self.waiters.contains_key(&request_id) {
                self.waiters.insert(request_id, waiter);
                return Ok(request_id);
            }
        }
        unreachable!(
            "{} waiters cannot occupy every request id",
            self.waiters.len()
        )
    }

    /// Hands `frame` to its waiter. Answers nobody waits for (the caller timed out or gave
    /// up) are dropped.
    fn complete(&mut self, frame: Frame) {
        match self.waiters.remove(&frame.request_id) {
            // The caller may have stopped waiting just now; that is not an error.
            Some(waiter) => drop(waiter.send(Ok(frame))),
            None => tracing::debug!(
                request_id = frame.request_id,
                opcode = frame.opcode,
                "dropping an answer nobody waits for"
            ),
        }
    }

    /// Marks the connection closed and fails every waiter. Only the first reason counts.
    fn close(&mut self, closed: Closed) {
        if self.closed.is_some() {
            return;
        }
        for (_, waiter) in self.waiters.drain() {
            drop(waiter.send(Err(closed.clone())));
        }
        self.closed = Some(closed);
    }
}

/// State shared by the connection handle and its two tasks.
#[derive(Debug)]
struct Shared {
    /// Requests waiting for answers.
    pending: Mutex<PendingRequests>,
    /// One permit per request the broker lets us have in flight; it stops reading beyond
    /// that, so waiting here instead keeps timeouts honest.
    in_flight: Semaphore,
    /// Cancelled when the connection closes, to stop both tasks.
    shutdown: CancellationToken,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, PendingRequests> {
        // A panic while holding this lock leaves the map consistent (every operation on it
        // is a single insert, remove or drain), so a poisoned lock is still usable.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn close(&self, closed: Closed) {
        self.pending().close(closed);
        self.in_flight.close();
        self.shutdown.cancel();
    }
}

/// Removes a waiter whose caller stopped waiting (timeout or a dropped future), so the map
/// only holds requests someone still cares about.
struct WaiterGuard<'a> {
    /// Where the waiter is registered.
    shared: &'a Shared,
    /// The waiter's id.
    request_id: u32,
    /// Set once the answer (or the closing) arrived; the waiter is then already removed,
    /// and its id may belong to a newer request.
    answered: bool,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.shared.pending().waiters.remove(&self.request_id);
        }
    }
}

/// Why one exchange did not produce an answer frame.
enum ExchangeError {
    /// A local failure (request too large, writer gone).
    Client(ClientError),
    /// The connection closed while the request waited.
    Closed(Closed),
}

/// An open, handshaken connection. Dropping it closes the socket.
#[derive(Debug)]
pub(crate) struct Connection {
    /// Waiters, permits and the shutdown token, shared with the tasks.
    shared: Arc<Shared>,
    /// Frames for the writer task.
    outgoing: mpsc::Sender<Frame>,
    /// Largest request frame the broker accepts: the handshake limit, then the session's.
    frame_bytes_max: AtomicU32,
}

impl Connection {
    /// Connects to `address`, starts the reader and writer tasks and performs the
    /// handshake, all within `options.connect_timeout`.
    pub(crate) async fn open(
        address: &str,
        options: &ClientOptions,
    ) -> Result<(Connection, HelloResponse), ClientError> {
        let deadline = Instant::now() + options.connect_timeout;
        let stream = tokio::time::timeout_at(deadline, TcpStream::connect(address))
            .await
            .map_err(|_| ClientError::Timeout)??;
        // Requests are small and latency-bound; the writer already batches bursts.
        stream.set_nodelay(true)?;
        let connection = Connection::start(stream);
        let hello = Request::Hello(HelloRequest {
            protocol_version: PROTOCOL_VERSION,
            client_name: options.client_name.clone(),
            client_version: options.client_version.clone(),
            credentials: options.credentials.clone(),
            project_id: options.project_id,
        });
        let answer = tokio::time::timeout_at(deadline, connection.exchange(&hello))
            .await
            .map_err(|_| ClientError::Timeout)?;
        let response = match answer {
            Ok(frame) => match interpret(&hello, frame) {
                Ok(response) => response,
                Err(ClientError::Server(body)) => return Err(ClientError::Handshake(body)),
                Err(error) => return Err(error),
            },
            Err(ExchangeError::Client(error)) => return Err(error),
            Err(ExchangeError::Closed(Closed {
                server_error: Some(body),
            })) => return Err(ClientError::Handshake(body)),
            Err(ExchangeError::Closed(Closed { server_error: None })) => {
                return Err(ClientError::Disconnected)
            }
        };
        let Response::Hello(hello) = response else {
            return Err(ClientError::Protocol(
                "the handshake got a non-HELLO response".into(),
            ));
        };
        if hello.protocol_version != PROTOCOL_VERSION {
            return Err(ClientError::Protocol(format!(
                "the broker chose protocol version {}, this client speaks {PROTOCOL_VERSION}",
                hello.protocol_version
            )));
        }
        connection.apply_limits(&hello.limits);
        Ok((connection, hello))
    }

    /// Splits the socket and spawns its reader and writer tasks. Only the HELLO may be sent
    /// until [`Connection::apply_limits`] opens the in-flight window.
    fn start(stream: TcpStream) -> Connection {
        let (read_half, write_half) = stream.into_split();
        let shared = Arc::new(Shared {
            pending: Mutex::new(PendingRequests::new()),
            in_flight: Semaphore::new(1),
            shutdown: CancellationToken::new(),
        });
        let (outgoing, outgoing_receiver) = mpsc::channel(WRITE_QUEUE_FRAMES_MAX);
        let frames_in = FramedRead::new(read_half, FrameCodec::new(RESPONSE_FRAME_BYTES_MAX));
        // The write codec never checks sizes (the caller does, against the session limit).
        let frames_out = FramedWrite::new(write_half, FrameCodec::new(FRAME_BYTES_CEILING));
        tokio::spawn(read_frames(frames_in, Arc::clone(&shared)));
        tokio::spawn(write_frames(
            frames_out,
            outgoing_receiver,
            Arc::clone(&shared),
        ));
        Connection {
            shared,
            outgoing,
            frame_bytes_max: AtomicU32::new(HANDSHAKE_FRAME_BYTES_MAX),
        }
    }

    /// Adopts the session limits from the server hello.
    fn apply_limits(&self, limits: &SessionLimits) {
        self.frame_bytes_max
            .store(limits.frame_bytes_max, Ordering::Relaxed);
        let window = limits
            .requests_in_flight_max
            .clamp(1, REQUESTS_IN_FLIGHT_CEILING);
        // The handshake used the one permit the connection started with.
        self.shared.in_flight.add_permits(window as usize - 1);
    }

    /// True once the socket failed or was closed; the client then opens a new connection.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.pending().closed.is_some()
    }

    /// Closes the socket; requests still waiting fail with [`ClientError::Disconnected`].
    pub(crate) fn close(&self) {
        self.shared.close(Closed::default());
    }

    /// Requests waiting for an answer now.
    #[cfg(test)]
    pub(crate) fn waiting_requests(&self) -> usize {
        self.shared.pending().waiters.len()
    }

    /// Sends `request` and waits up to `timeout` for its answer.
    pub(crate) async fn call(
        &self,
        request: &Request,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        match tokio::time::timeout(timeout, self.exchange(request)).await {
            Err(_elapsed) => Err(ClientError::Timeout),
            Ok(Ok(frame)) => interpret(request, frame),
            Ok(Err(ExchangeError::Client(error))) => Err(error),
            Ok(Err(ExchangeError::Closed(closed))) => {
                if let Some(body) = closed.server_error {
                    tracing::debug!(error = %body, "request failed by the broker closing");
                }
                Err(ClientError::Disconnected)
            }
        }
    }

    /// Sends one request and waits, without a time limit, for the frame that answers it.
    async fn exchange(&self, request: &Request) -> Result<Frame, ExchangeError> {
        let mut body = BytesMut::new();
        request.encode_body(&mut body);
        let frame_bytes = HEADER_AFTER_LENGTH_BYTES + body.len();
        let frame_bytes_max = self.frame_bytes_max.load(Ordering::Relaxed);
        if frame_bytes > frame_bytes_max as usize {
            return Err(ExchangeError::Client(ClientError::RequestTooLarge {
                frame_bytes,
                frame_bytes_max,
            }));
        }
        let closed = || ExchangeError::Closed(Closed::default());
        let _permit = self
            .shared
            .in_flight
            .acquire()
            .await
            .map_err(|_| closed())?;
        let (waiter, answer) = oneshot::channel();
        let request_id = self
            .shared
            .pending()
            .register(waiter)
            .map_err(ExchangeError::Closed)?;
        let mut guard = WaiterGuard {
            shared: &self.shared,
            request_id,
            answered: false,
        };
        let frame = Frame {
            kind: FrameKind::Request,
            opcode: request.opcode().number(),
            request_id,
            body: body.freeze(),
        };
        self.outgoing.send(frame).await.map_err(|_| closed())?;
        let answer = answer.await;
        // Whatever arrived, the reader or the closing task already removed the waiter.
        guard.answered = true;
        match answer {
            Ok(Ok(frame)) => Ok(frame),
            Ok(Err(closed)) => Err(ExchangeError::Closed(closed)),
            Err(_sender_dropped) => Err(closed()),
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

/// Turns the answer frame to `request` into its typed response or error.
fn interpret(request: &Request, frame: Frame) -> Result<Response, ClientError> {
    let opcode = request.opcode();
    match frame.kind {
        FrameKind::Error => match decode_body::<ErrorBody>(frame.opcode, &frame.body) {
            Ok(body) => Err(ClientError::Server(body)),
            Err(error) => Err(ClientError::Protocol(error.to_string())),
        },
        FrameKind::Response if frame.opcode == opcode.number() => {
            Response::decode(frame.opcode, &frame.body)
                .map_err(|error| ClientError::Protocol(error.to_string()))
        }
        FrameKind::Response => Err(ClientError::Protocol(format!(
            "a {} request was answered with opcode 0x{:04x}",
            opcode.name(),
            frame.opcode
        ))),
        FrameKind::Request | FrameKind::Event => Err(ClientError::Protocol(format!(
            "a {} request was answered with a {:?} frame",
            opcode.name(),
            frame.kind
        ))),
    }
}

/// The reader task: routes answers to their waiters until the socket ends or fails.
async fn read_frames(mut frames: FramedRead<OwnedReadHalf, FrameCodec>, shared: Arc<Shared>) {
    let closed = loop {
        let next = tokio::select! {
            _ = shared.shutdown.cancelled() => break Closed::default(),
            next = frames.next() => next,
        };
        let frame = match next {
            None => {
                tracing::debug!("the broker closed the connection");
                break Closed::default();
            }
            Some(Err(error)) => {
                tracing::warn!(%error, "unreadable frame from the broker; closing the connection");
                break Closed::default();
            }
            Some(Ok(frame)) => frame,
        };
        match frame.kind {
            FrameKind::Error if frame.request_id == 0 => {
                let server_error = match decode_body::<ErrorBody>(frame.opcode, &frame.body) {
                    Ok(body) => {
                        tracing::warn!(error = %body, "the broker reported a connection error");
                        Some(body)
                    }
                    Err(error) => {
                        tracing::warn!(%error, "undecodable connection error from the broker");
                        None
                    }
                };
                break Closed { server_error };
            }
            FrameKind::Response | FrameKind::Error => shared.pending().complete(frame),
            FrameKind::Event => {
                tracing::debug!(
                    opcode = frame.opcode,
                    "ignoring an event this client does not know"
                )
            }
            FrameKind::Request => {
                tracing::warn!(opcode = frame.opcode, "the broker sent a request; closing");
                break Closed::default();
            }
        }
    };
    shared.close(closed);
}

/// The writer task: feeds queued frames to the socket and flushes once per burst (see
/// [`crate::burst`]).
async fn write_frames(
    mut frames: FramedWrite<OwnedWriteHalf, FrameCodec>,
    mut outgoing: mpsc::Receiver<Frame>,
    shared: Arc<Shared>,
) {
    let mut burst = Vec::with_capacity(WRITE_BURST_FRAMES_MAX);
    loop {
        let first = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            first = outgoing.recv() => first,
        };
        // `None`: the connection handle is gone, so nobody can send any more.
        let Some(first) = first else { break };
        burst.push(first);
        // Callers woken by the answers just read are about to send again, and the client
        // cannot tell how many (they register only when they send): always give them a turn.
        let more_coming = || true;
        crate::burst::fill(
            &mut outgoing,
            &mut burst,
            WRITE_BURST_FRAMES_MAX,
            more_coming,
        )
        .await;
        let mut result = Ok(());
        for frame in burst.drain(..) {
            if result.is_ok() {
                result = frames.feed(frame).await;
            }
        }
        if let Err(error) = result.and(frames.flush().await) {
            tracing::warn!(%error, "writing to the broker failed; closing the connection");
            break;
        }
    }
    shared.close(Closed::default());
    // Best effort: tell the broker we are done writing. The socket may already be gone.
    drop(frames.close().await);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_skip_zero_and_ids_in_flight() {
        let mut pending = PendingRequests::new();
        pending.next_request_id = u32::MAX;
        let (first, _first_answer) = oneshot::channel();
        assert_eq!(pending.register(first).ok(), Some(u32::MAX));
        // Occupy 1 and 2 as if they were still in flight from before the wrap.
        let (one, _one_answer) = oneshot::channel();
        pending.waiters.insert(1, one);
        let (two, _two_answer) = oneshot::channel();
        pending.waiters.insert(2, two);
        let (next, _next_answer) = oneshot::channel();
        assert_eq!(pending.register(next).ok(), Some(3));
    }

    #[test]
    fn closing_fails_every_waiter_and_refuses_new_ones() {
        let mut pending = PendingRequests::new();
        let (waiter, mut answer) = oneshot::channel();
        assert_eq!(pending.register(waiter).ok(), Some(1));
        pending.close(Closed::default());
        assert!(matches!(
            answer.try_recv(),
            Ok(Err(Closed { server_error: None }))
        ));
        let (late, _late_answer) = oneshot::channel();
        assert!(pending.register(late).is_err());
    }
}
