//! The admin port's accept loop with a connection cap: at [`ADMIN_CONNECTIONS_MAX`] open
//! connections it stops accepting until one closes (new ones wait in the kernel's backlog),
//! so connections cannot pile up without bound. Accept errors back off instead of spinning.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Most admin connections open at once. Scrapers and probes hold one or two each.
pub const ADMIN_CONNECTIONS_MAX: usize = 128;

/// Pause after a failed accept (out of file descriptors, ...), before trying again.
const ACCEPT_ERROR_PAUSE_MS: u64 = 100;

/// A TCP listener that holds one permit per open connection.
pub(super) struct CappedListener {
    /// The socket.
    listener: TcpListener,
    /// One permit per open connection.
    permits: Arc<Semaphore>,
}

impl CappedListener {
    /// Caps `listener` at [`ADMIN_CONNECTIONS_MAX`] connections.
    pub(super) fn new(listener: TcpListener) -> CappedListener {
        CappedListener {
            listener,
            permits: Arc::new(Semaphore::new(ADMIN_CONNECTIONS_MAX)),
        }
    }
}

impl axum::serve::Listener for CappedListener {
    type Io = CappedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (CappedStream, SocketAddr) {
        // The semaphore is never closed, so acquiring fails only if it were; wait for a
        // permit, then for a connection.
        let permit = loop {
            if let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await {
                break permit;
            }
        };
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    return (
                        CappedStream {
                            stream,
                            _permit: permit,
                        },
                        peer,
                    )
                }
                Err(error) => {
                    tracing::debug!(%error, "admin port accept failed");
                    tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_PAUSE_MS)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// An admin connection; closing it returns its permit.
pub(super) struct CappedStream {
    /// The socket.
    stream: TcpStream,
    /// Returned to the listener when the connection is dropped.
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for CappedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(context, buffer)
    }
}

impl AsyncWrite for CappedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(context, bytes)
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(context)
    }
}
