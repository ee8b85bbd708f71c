//! The Rust client: an async, pipelining connection to the broker, and a worker runtime on
//! top of it.
//!
//! # Layout
//! - `mod.rs`: [`Client`] — connect, reconnect with backoff, the generic [`Client::call`].
//! - `operations.rs`: one typed method per queue and job operation of the opcode table.
//! - `tenancy.rs`: one typed method per tenancy operation (organizations, users,
//!   subscriptions, projects, API keys).
//! - `workers.rs`: one typed method per worker operation (register, heartbeat, list, get,
//!   quiet, terminate, assign, assignments).
//! - `executions.rs`: one typed method per execution operation (log, log tail, progress,
//!   execution list, job results).
//! - `call.rs`: the `call_expecting!` macro every typed method goes through.
//! - `schedules.rs`: one typed method per cron schedule operation.
//! - `connection.rs`: one socket — reader and writer tasks, the map of requests waiting for
//!   answers, request ids, the handshake.
//! - `options.rs`: [`ClientOptions`] and [`ReconnectOptions`], with their defaults.
//! - `error.rs`: [`ClientError`].
//! - `worker/`: [`Worker`] — registration and heartbeats, fetch with bounded concurrency
//!   from the assigned queues, auto-extend, per-job logs and progress, ack/fail.
//!
//! # Invariants
//! - One connection at a time per [`Client`]; every clone shares it, and every call on it is
//!   pipelined: answers are matched by request id, never by order.
//! - A request in flight when the connection dies fails with [`ClientError::Disconnected`];
//!   it is never re-sent behind the caller's back, because its outcome is unknown.
//! - Nothing read from the network is unwrapped: every malformed answer is a
//!   [`ClientError::Protocol`] for its caller, and an unreadable stream closes only its
//!   own connection.

// First: the typed-method files below use its macro.
#[macro_use]
mod call;

mod connection;
mod error;
mod executions;
mod operations;
mod options;
mod schedules;
mod tenancy;
mod worker;
mod workers;

#[cfg(test)]
mod fake_server;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use taskforge_protocol::{HelloResponse, ProjectId, Request, Response, SessionLimits};

use connection::Connection;

pub use error::ClientError;
pub use options::{
    ClientOptions, ReconnectOptions, CLIENT_NAME_DEFAULT, CLIENT_VERSION_DEFAULT,
    CONNECT_TIMEOUT_MS_DEFAULT, RECONNECT_ATTEMPTS_CEILING, RECONNECT_ATTEMPTS_MAX_DEFAULT,
    RECONNECT_BACKOFF_INITIAL_MS_DEFAULT, RECONNECT_BACKOFF_MAX_MS_DEFAULT,
    REQUEST_TIMEOUT_MS_DEFAULT,
};
pub use worker::{
    JobContext, JobError, Worker, WorkerOptions, WorkerReport, FETCH_BATCH_DEFAULT,
    FETCH_ERROR_PAUSE_MS_DEFAULT, FETCH_WAIT_MS_DEFAULT, HEARTBEAT_INTERVAL_MS_DEFAULT,
    HEARTBEAT_INTERVAL_MS_MIN, LEAVING_HEARTBEAT_TIMEOUT_MS, LOG_BUFFER_LINES_MAX, LOG_LINGER_MS,
    REPORT_ATTEMPTS_MAX, REPORT_RETRY_PAUSE_MS, SHUTDOWN_TIMEOUT_MS_DEFAULT, TERMINATED_ERROR,
    TERMINATE_REPORT_TIMEOUT_MS, WORKER_CONCURRENCY_DEFAULT, WORKER_CONCURRENCY_MAX,
    WORKER_NAME_DEFAULT,
};

/// An async connection to a TaskForge broker. Cheap to clone: clones share one connection,
/// and any number of tasks may call it at once (their requests are pipelined).
///
/// When the connection is lost, requests in flight fail with
/// [`ClientError::Disconnected`], and the next call reconnects (with backoff, up to
/// [`ReconnectOptions::attempts_max`] attempts) and repeats the handshake.
#[derive(Debug, Clone)]
pub struct Client {
    /// Shared by every clone.
    inner: Arc<ClientInner>,
}

/// What every clone of a [`Client`] shares.
#[derive(Debug)]
struct ClientInner {
    /// Where to (re)connect, as given to [`Client::connect`]; resolved on every attempt so
    /// a broker that moved behind a DNS name is found again.
    address: String,
    /// Identity, timeouts and the reconnect policy.
    options: ClientOptions,
    /// The connection calls use; `None` after [`Client::close`].
    connection: Mutex<Option<Arc<Connection>>>,
    /// Held while reconnecting, so concurrent callers wait for one reconnect instead of
    /// each opening their own socket.
    reconnecting: tokio::sync::Mutex<()>,
    /// The server hello of the latest handshake.
    hello: Mutex<HelloResponse>,
}

/// Locks a mutex whose data stays consistent even if a holder panicked (every update is a
/// single assignment).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Client {
    /// Connects to `address` (`host:port`) and performs the handshake. Makes one attempt
    /// within `options.connect_timeout`, so a wrong address or credentials show at once;
    /// the reconnect policy applies to connections lost later.
    pub async fn connect(
        address: impl ToString,
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        let address = address.to_string();
        let (connection, hello) = Connection::open(&address, &options).await?;
        tracing::debug!(%address, project_id = hello.project_id, "connected to the broker");
        Ok(Client {
            inner: Arc::new(ClientInner {
                address,
                options,
                connection: Mutex::new(Some(Arc::new(connection))),
                reconnecting: tokio::sync::Mutex::new(()),
                hello: Mutex::new(hello),
            }),
        })
    }

    /// The server hello of the latest handshake.
    pub fn hello(&self) -> HelloResponse {
        lock(&self.inner.hello).clone()
    }

    /// The limits of the latest session.
    pub fn session_limits(&self) -> SessionLimits {
        lock(&self.inner.hello).limits.clone()
    }

    /// The project this client's credentials work in.
    pub fn project_id(&self) -> ProjectId {
        lock(&self.inner.hello).project_id
    }

    /// The options the client was created with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// Sends any request and waits for its response: the request timeout, or for FETCH and
    /// LOG_TAIL their wait plus the request timeout. Every typed method goes through here.
    ///
    /// An error answer is [`ClientError::Server`]; a response of the wrong type is
    /// [`ClientError::Protocol`].
    pub async fn call(&self, request: Request) -> Result<Response, ClientError> {
        let timeout = self.timeout_for(&request);
        let connection = self.live_connection().await?;
        connection.call(&request, timeout).await
    }

    /// Says goodbye (BYE) and closes the connection. The broker answers requests already in
    /// flight before it answers the BYE; any still waiting after that fail with
    /// [`ClientError::Disconnected`]. A later call on this client connects again.
    pub async fn close(&self) -> Result<(), ClientError> {
        let connection = lock(&self.inner.connection).take();
        let Some(connection) = connection else {
            return Ok(());
        };
        if connection.is_closed() {
            return Ok(());
        }
        let result = connection
            .call(&Request::Bye(Default::default()), self.request_timeout())
            .await;
        connection.close();
        match result {
            Ok(Response::Bye(_)) => Ok(()),
            Ok(other) => Err(unexpected_response("BYE", &other)),
            // The broker closing right after its answer races with the answer itself.
            Err(ClientError::Disconnected) => Ok(()),
            Err(error) => Err(error),
        }
    }

    fn request_timeout(&self) -> Duration {
        self.inner.options.request_timeout
    }

    fn timeout_for(&self, request: &Request) -> Duration {
        match request {
            Request::Fetch(fetch) => {
                self.request_timeout() + Duration::from_millis(u64::from(fetch.wait_ms))
            }
            Request::LogTail(tail) => {
                self.request_timeout() + Duration::from_millis(u64::from(tail.wait_ms))
            }
            _ => self.request_timeout(),
        }
    }

    /// The current connection if it is still open.
    fn open_connection(&self) -> Option<Arc<Connection>> {
        lock(&self.inner.connection)
            .as_ref()
            .filter(|connection| !connection.is_closed())
            .cloned()
    }

    /// The current connection, or a new one if it was lost.
    async fn live_connection(&self) -> Result<Arc<Connection>, ClientError> {
        if let Some(connection) = self.open_connection() {
            return Ok(connection);
        }
        let _reconnecting = self.inner.reconnecting.lock().await;
        // Another caller may have reconnected while this one waited for the lock.
        if let Some(connection) = self.open_connection() {
            return Ok(connection);
        }
        let (connection, hello) = self.reconnect().await?;
        let connection = Arc::new(connection);
        *lock(&self.inner.hello) = hello;
        *lock(&self.inner.connection) = Some(Arc::clone(&connection));
        Ok(connection)
    }

    /// Opens a new connection, pausing with exponential backoff and jitter between failed
    /// attempts. Stops early on errors that retrying cannot fix (refused credentials).
    async fn reconnect(&self) -> Result<(Connection, HelloResponse), ClientError> {
        let policy = &self.inner.options.reconnect;
        let attempts_max = policy.attempts_max.clamp(1, RECONNECT_ATTEMPTS_CEILING);
        let mut attempt = 1;
        loop {
            match Connection::open(&self.inner.address, &self.inner.options).await {
                Ok(opened) => {
                    tracing::info!(address = %self.inner.address, attempt, "reconnected");
                    return Ok(opened);
                }
                Err(error) if !error.is_transient() || attempt >= attempts_max => {
                    tracing::warn!(address = %self.inner.address, attempt, %error, "reconnect failed");
                    return Err(error);
                }
                Err(error) => {
                    let pause = jittered(policy.backoff_for_attempt(attempt));
                    tracing::debug!(attempt, %error, ?pause, "reconnect attempt failed");
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Requests waiting for answers on the current connection.
    #[cfg(test)]
    fn waiting_requests(&self) -> usize {
        lock(&self.inner.connection)
            .as_ref()
            .map_or(0, |connection| connection.waiting_requests())
    }
}

/// A pause between half and all of `pause`, so clients that lost the same broker do not
/// all come back in the same millisecond.
fn jittered(pause: Duration) -> Duration {
    let pause_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(pause_ms / 2 + fastrand::u64(0..=pause_ms / 2))
}

/// The error for a response of the wrong type (a bug in the broker or a confused stream).
fn unexpected_response(expected: &str, response: &Response) -> ClientError {
    ClientError::Protocol(format!(
        "expected a {expected} response, got {}",
        response.opcode().name()
    ))
}

#[cfg(test)]
mod tests;
