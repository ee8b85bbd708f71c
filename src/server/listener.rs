//! The accept loop. A semaphore caps the connections: over the cap a new connection gets
//! one UNAVAILABLE error frame and is closed. Accept errors (out of file descriptors,
//! memory) back off exponentially instead of spinning.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use taskforge_protocol::ErrorCode;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use super::connection;
use super::reply::{connection_error_frame, frame_bytes};
use super::ConnectionContext;

/// First pause after a failed accept.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);

/// Longest pause between accept attempts; the listener never gives up.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Refusals being written at once; beyond this an over-the-cap connection is closed
/// without an explanation, so a connection flood cannot make refusing cost memory.
const REFUSALS_IN_FLIGHT_MAX: usize = 64;

/// Time a refusal gets to be written and the client to close.
const REFUSAL_DEADLINE: Duration = Duration::from_millis(500);

/// Accepts connections and starts a task for each.
pub(crate) struct Listener {
    /// The listening socket; dropped (closed) when the loop ends.
    listener: TcpListener,
    /// One permit per open connection.
    connection_permits: Arc<Semaphore>,
    /// The cap, for logs.
    connections_max: usize,
    /// One permit per refusal being written.
    refusal_permits: Arc<Semaphore>,
    /// True while at the cap, so the cap is logged once per episode, not per refusal.
    at_capacity: bool,
    /// Shared with the connection tasks.
    context: Arc<ConnectionContext>,
    /// Tracks connection and refusal tasks, for graceful shutdown.
    tracker: TaskTracker,
    /// Cancelled to stop accepting; connections watch it too.
    shutdown: CancellationToken,
    /// The id of the next connection, for logs.
    next_connection_id: u64,
}

impl Listener {
    pub(crate) fn new(
        listener: TcpListener,
        connections_max: usize,
        context: Arc<ConnectionContext>,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Listener {
        Listener {
            listener,
            connection_permits: Arc::new(Semaphore::new(connections_max)),
            connections_max,
            refusal_permits: Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT_MAX)),
            at_capacity: false,
            context,
            tracker,
            shutdown,
            next_connection_id: 1,
        }
    }

    /// Accepts until shutdown. Consumes the listener so the socket closes on return.
    pub(crate) async fn run(mut self) {
        let mut backoff = ACCEPT_BACKOFF_MIN;
        loop {
            let accepted = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    self.admit(stream, peer);
                }
                Err(error) if is_connection_error(&error) => {
                    tracing::debug!(%error, "a connection failed while being accepted");
                }
                Err(error) => {
                    tracing::warn!(%error, backoff_ms = backoff.as_millis() as u64, "accept failed; backing off");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                }
            }
        }
        tracing::info!("stopped accepting connections");
    }

    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        let permit = match Arc::clone(&self.connection_permits).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => return self.refuse(stream, peer),
        };
        self.at_capacity = false;
        // Answers are flushed in bursts already; Nagle would only add latency.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, %peer, "cannot disable Nagle's algorithm");
        }
        let connection_id = self.next_connection_id;
        self.next_connection_id += 1;
        let span = tracing::info_span!("connection", id = connection_id, %peer);
        let context = Arc::clone(&self.context);
        let shutdown = self.shutdown.clone();
        let counted = self.context.metrics.connection_opened();
        self.tracker.spawn(
            async move {
                tracing::debug!("connection accepted");
                connection::serve(stream, peer, context, shutdown).await;
                drop(counted);
                drop(permit);
            }
            .instrument(span),
        );
    }

    fn refuse(&mut self, stream: TcpStream, peer: SocketAddr) {
        if !self.at_capacity {
            self.at_capacity = true;
            tracing::warn!(
                connections_max = self.connections_max,
                "connection cap reached; refusing new connections"
            );
        }
        self.context.metrics.connection_refused();
        tracing::debug!(%peer, "connection refused: too many connections");
        if let Ok(permit) = Arc::clone(&self.refusal_permits).try_acquire_owned() {
            self.tracker.spawn(send_refusal(stream, permit));
        }
    }
}

/// Writes one UNAVAILABLE error frame, sends FIN, and waits briefly for the client to
/// close, so it reads the frame instead of a reset.
async fn send_refusal(mut stream: TcpStream, _permit: OwnedSemaphorePermit) {
    let refusal = frame_bytes(connection_error_frame(
        ErrorCode::Unavailable,
        "too many connections; retry later",
    ));
    let _ = tokio::time::timeout(REFUSAL_DEADLINE, async {
        stream.write_all(&refusal).await?;
        stream.shutdown().await?;
        let mut discard = [0u8; 512];
        while tokio::io::AsyncReadExt::read(&mut stream, &mut discard).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// Errors that concern one connection, not the listener: retry at once.
fn is_connection_error(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}
