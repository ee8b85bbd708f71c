//! The writer task of a connection: it owns the socket's write half, drains a bounded
//! queue of frames, and flushes once per burst (see [`crate::burst`]). A write or flush
//! that does not finish within the write deadline ends the connection, so a client that
//! stops reading cannot make the server hold its responses.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::SinkExt as _;
use taskforge_protocol::limits::FRAME_BYTES_CEILING;
use taskforge_protocol::{Frame, FrameCodec};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::codec::FramedWrite;
use tracing::Instrument as _;

/// Frames waiting for the writer. When full, the connection stops producing (it awaits a
/// slot), which also stops it reading requests: backpressure up to the client.
pub(crate) const OUTBOX_FRAMES_MAX: usize = 256;

/// Most frames written between two flushes, so one flush never waits on an unbounded
/// burst.
pub(crate) const WRITE_BURST_FRAMES_MAX: usize = 64;

/// The sending side of a connection's writer.
pub(crate) struct Outbox {
    /// Frames to write; the writer holds the receiver.
    sender: mpsc::Sender<Frame>,
    /// Requests still running on the connection when the last answer was queued: while
    /// some are, the writer lets them add their answers to its burst.
    running: Arc<AtomicUsize>,
}

/// The writer has stopped (its socket failed or timed out); nothing more can be sent.
#[derive(Debug)]
pub(crate) struct WriterGone;

impl Outbox {
    /// Queues `frame`, waiting for room. Fails once the writer has stopped.
    pub(crate) async fn send(&self, frame: Frame) -> Result<(), WriterGone> {
        self.sender.send(frame).await.map_err(|_| WriterGone)
    }

    /// Queues the answer to a request, noting how many other requests are `still_running`.
    pub(crate) async fn answer(
        &self,
        frame: Frame,
        still_running: usize,
    ) -> Result<(), WriterGone> {
        self.running.store(still_running, Ordering::Relaxed);
        self.send(frame).await
    }

    /// Resolves once the writer has stopped. Cancel-safe.
    pub(crate) async fn closed(&self) {
        self.sender.closed().await
    }
}

/// Why a writer stopped before it was told to.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteFailure {
    /// A write or flush took longer than the write deadline.
    #[error("write timed out after {0:?} (the client is not reading)")]
    TimedOut(Duration),
    /// The socket failed.
    #[error("write failed: {0}")]
    Failed(String),
}

/// Starts the writer task on `write_half`.
pub(crate) fn spawn(
    write_half: OwnedWriteHalf,
    write_timeout: Duration,
) -> (Outbox, JoinHandle<Result<(), WriteFailure>>) {
    let (sender, receiver) = mpsc::channel(OUTBOX_FRAMES_MAX);
    let running = Arc::new(AtomicUsize::new(0));
    // The encoder does not check sizes; reply.rs keeps responses under the ceiling.
    let sink = FramedWrite::new(write_half, FrameCodec::new(FRAME_BYTES_CEILING));
    let task = tokio::spawn(
        write_frames(sink, receiver, Arc::clone(&running), write_timeout).in_current_span(),
    );
    (Outbox { sender, running }, task)
}

async fn write_frames(
    mut sink: FramedWrite<OwnedWriteHalf, FrameCodec>,
    mut receiver: mpsc::Receiver<Frame>,
    running: Arc<AtomicUsize>,
    write_timeout: Duration,
) -> Result<(), WriteFailure> {
    let mut burst = Vec::with_capacity(WRITE_BURST_FRAMES_MAX);
    while let Some(frame) = receiver.recv().await {
        burst.push(frame);
        let more_coming = || running.load(Ordering::Relaxed) > 0;
        crate::burst::fill(
            &mut receiver,
            &mut burst,
            WRITE_BURST_FRAMES_MAX,
            more_coming,
        )
        .await;
        for frame in burst.drain(..) {
            within(write_timeout, sink.feed(frame)).await?;
        }
        within(write_timeout, sink.flush()).await?;
    }
    // Every sender is gone: the connection is closing. Flush and send FIN.
    within(write_timeout, sink.close()).await
}

async fn within<F, E>(write_timeout: Duration, operation: F) -> Result<(), WriteFailure>
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    match tokio::time::timeout(write_timeout, operation).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(WriteFailure::Failed(error.to_string())),
        Err(_) => Err(WriteFailure::TimedOut(write_timeout)),
    }
}
