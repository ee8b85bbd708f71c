//! A pipelined connection for the peers' in-order text protocols (beanstalkd, RESP).
//!
//! Any number of tasks may send commands at once; a writer task writes them in the order
//! they arrive and a reader task hands each parsed reply to the oldest waiting command.
//! Both protocols answer strictly in order on one connection, so matching by position is
//! exact. This is the same sliding window the TaskForge client gives, so "N in flight per
//! connection" means the same thing for every target.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Commands queued for the writer before senders wait; bounds memory when the peer is slow.
const COMMANDS_QUEUED_MAX: usize = 1_024;

/// Read buffer growth step: large enough for many small replies per `read`.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Largest reply accepted; a longer one means a confused stream (bench payloads are small).
pub(crate) const REPLY_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Turns bytes from the peer into replies.
pub(crate) trait ReplyParser: Send + 'static {
    /// One parsed reply.
    type Reply: Send + 'static;

    /// Takes one whole reply off the front of `buffer`, `Ok(None)` when more bytes are
    /// needed, `Err` when the bytes cannot be a reply of this protocol.
    fn parse(&mut self, buffer: &mut BytesMut) -> Result<Option<Self::Reply>, String>;
}

/// Answers waiting for their replies, oldest first.
type Waiting<Reply> = Arc<Mutex<VecDeque<oneshot::Sender<Reply>>>>;

/// One pipelined connection. Cheap to share behind an `Arc`; dropping it stops its tasks.
pub(crate) struct PipelinedConnection<Parser: ReplyParser> {
    /// Commands for the writer task, each with where its reply goes.
    commands: mpsc::Sender<(Bytes, oneshot::Sender<Parser::Reply>)>,
    /// The writer and reader tasks, aborted on drop.
    tasks: [JoinHandle<()>; 2],
}

impl<Parser: ReplyParser> PipelinedConnection<Parser> {
    /// Connects to `address` and starts the writer and reader tasks.
    pub(crate) async fn connect(
        address: &str,
        parser: Parser,
    ) -> std::io::Result<PipelinedConnection<Parser>> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        let (read_half, write_half) = stream.into_split();
        let waiting: Waiting<Parser::Reply> = Arc::new(Mutex::new(VecDeque::new()));
        let (commands, receiver) = mpsc::channel(COMMANDS_QUEUED_MAX);
        let writer = tokio::spawn(write_commands(
            BufWriter::new(write_half),
            receiver,
            Arc::clone(&waiting),
        ));
        let reader = tokio::spawn(read_replies(read_half, parser, waiting));
        Ok(PipelinedConnection {
            commands,
            tasks: [writer, reader],
        })
    }

    /// Sends one encoded command and waits for its reply.
    pub(crate) async fn call(&self, command: Bytes) -> Result<Parser::Reply, String> {
        let (answer, reply) = oneshot::channel();
        self.commands
            .send((command, answer))
            .await
            .map_err(|_| "the connection is closed".to_string())?;
        reply
            .await
            .map_err(|_| "the connection closed before the reply".to_string())
    }
}

impl<Parser: ReplyParser> Drop for PipelinedConnection<Parser> {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Writes commands in arrival order, registering each reply slot before its bytes leave,
/// and flushes once the queue is empty (one syscall per burst).
async fn write_commands<Reply>(
    mut writer: BufWriter<tokio::net::tcp::OwnedWriteHalf>,
    mut receiver: mpsc::Receiver<(Bytes, oneshot::Sender<Reply>)>,
    waiting: Waiting<Reply>,
) {
    while let Some((command, answer)) = receiver.recv().await {
        let mut next = Some((command, answer));
        while let Some((command, answer)) = next.take() {
            waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push_back(answer);
            if writer.write_all(&command).await.is_err() {
                return;
            }
            next = receiver.try_recv().ok();
        }
        if writer.flush().await.is_err() {
            return;
        }
    }
}

/// Parses replies and hands each to the oldest waiting command. Ends (dropping every
/// waiting slot, so their callers see an error) on end of stream or a malformed reply.
async fn read_replies<Parser: ReplyParser>(
    mut reader: tokio::net::tcp::OwnedReadHalf,
    mut parser: Parser,
    waiting: Waiting<Parser::Reply>,
) {
    let mut buffer = BytesMut::with_capacity(READ_CHUNK_BYTES);
    loop {
        loop {
            match parser.parse(&mut buffer) {
                Ok(Some(reply)) => {
                    let answer = waiting
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .pop_front();
                    match answer {
                        // A caller that gave up no longer wants its reply.
                        Some(answer) => drop(answer.send(reply)),
                        None => {
                            tracing::warn!("a peer sent a reply nobody asked for");
                            return;
                        }
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(%error, "a peer sent an unreadable reply");
                    return;
                }
            }
        }
        if buffer.len() > REPLY_BYTES_MAX {
            tracing::warn!("a peer reply is over {REPLY_BYTES_MAX} bytes");
            return;
        }
        buffer.reserve(READ_CHUNK_BYTES);
        match reader.read_buf(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
