//! The TCP server: it moves frames between sockets and the broker, and nothing else.
//!
//! # Layout
//! - `listener.rs`: the accept loop, with the connection cap and accept backoff.
//! - `connection.rs`: one task per connection: the session loop after the handshake, with
//!   pipelined requests, backpressure, idle timeout and orderly close.
//! - `handshake.rs`: what a connection may do before HELLO succeeds (HELLO and PING only).
//! - `in_flight.rs`: a connection's running requests, polled together inside the
//!   connection's task; a panic in one becomes an INTERNAL reply instead of a dead server.
//! - `writer.rs`: the per-connection writer task (bounded queue, burst flush, write
//!   deadline).
//! - `reply.rs`: turning responses and errors into frames.
//! - `dispatch.rs`: the one seam between server and broker, and the metered dispatcher
//!   that counts requests by operation and outcome.
//! - `shutdown.rs`: graceful shutdown once the listener stops.
//!
//! [`start`] also runs the storage migrations before the broker opens and starts the HTTP
//! admin port (`crate::admin_http`) beside the protocol listener; both stop together.
//!
//! # Invariants
//! - Dispatch has no business logic: a request is decoded, handed to the broker, and its
//!   answer encoded. The tenant comes only from the session the handshake produced.
//! - A connection's problems end that connection only: a bad frame, a slow reader or a
//!   panicking request never affects another connection.
//! - Every buffer is bounded: the frame size (small until the handshake), requests in
//!   flight per connection, the writer queue, and the number of connections.

mod connection;
mod dispatch;
mod failed_handshakes;
mod handshake;
mod in_flight;
mod listener;
mod reply;
mod shutdown;
mod writer;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use taskforge_protocol::limits::{FETCH_JOBS_MAX, FETCH_WAIT_MS_MAX};
use taskforge_protocol::SessionLimits;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin_http::AdminPort;
use crate::auth::{resolve_key_pepper, resolve_root_token, RootToken, RootTokenError};
use crate::broker::{Broker, BrokerStats};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;
use crate::storage::migrations::{self, Migration, MigrationError};
use crate::storage::{JournalOptions, ReopeningStorage, SledOptions, Storage, StorageError};

use dispatch::{Dispatcher, Metered};

/// Everything a connection task needs, shared by all connections of a server.
pub(crate) struct ConnectionContext {
    /// The broker (or, in tests, a scripted stand-in).
    pub(crate) dispatcher: Arc<dyn Dispatcher>,
    /// Deadline for the whole pre-handshake phase.
    pub(crate) handshake_timeout: Duration,
    /// A session with nothing in flight and nothing received this long is closed.
    pub(crate) idle_timeout: Duration,
    /// Deadline for one socket write or flush.
    pub(crate) write_timeout: Duration,
    /// Time in-flight requests get after a shutdown signal.
    pub(crate) shutdown_grace: Duration,
    /// Requests one session may have in flight before the server stops reading.
    pub(crate) requests_in_flight_max: usize,
    /// Frame limit after the handshake.
    pub(crate) frame_bytes_max: u32,
    /// What the server hello announces.
    pub(crate) session_limits: SessionLimits,
    /// Refused handshakes per peer address.
    pub(crate) failed_handshakes: failed_handshakes::FailedHandshakes,
    /// Connection counts and everything the metered dispatcher counts.
    pub(crate) metrics: Arc<Metrics>,
}

impl ConnectionContext {
    fn new(
        config: &Config,
        dispatcher: Arc<dyn Dispatcher>,
        metrics: Arc<Metrics>,
    ) -> ConnectionContext {
        let server = &config.server;
        ConnectionContext {
            metrics,
            dispatcher,
            handshake_timeout: Duration::from_millis(server.handshake_timeout_ms),
            idle_timeout: Duration::from_millis(u64::from(server.idle_timeout_ms)),
            write_timeout: Duration::from_millis(server.write_timeout_ms),
            shutdown_grace: Duration::from_millis(server.shutdown_grace_ms),
            requests_in_flight_max: server.requests_in_flight_max as usize,
            frame_bytes_max: server.frame_bytes_max,
            failed_handshakes: failed_handshakes::FailedHandshakes::default(),
            session_limits: SessionLimits {
                frame_bytes_max: server.frame_bytes_max,
                requests_in_flight_max: server.requests_in_flight_max,
                payload_bytes_max: config.broker.payload_bytes_max,
                result_bytes_max: config.broker.result_bytes_max,
                batch_jobs_max: config.broker.batch_jobs_max,
                fetch_jobs_max: FETCH_JOBS_MAX,
                fetch_wait_ms_max: FETCH_WAIT_MS_MAX,
                idle_timeout_ms: server.idle_timeout_ms,
            },
        }
    }
}

/// A bound, not yet running, protocol server.
pub struct Server {
    /// The listening socket.
    listener: TcpListener,
    /// Its address (with the real port when the configured one was 0).
    local_addr: SocketAddr,
    /// Most connections at once.
    connections_max: usize,
    /// Shared with every connection task.
    context: Arc<ConnectionContext>,
}

impl Server {
    /// Binds `config.server.listen_addr` and prepares to serve `broker`.
    pub async fn bind(config: &Config, broker: Arc<Broker>) -> std::io::Result<Server> {
        let listener = TcpListener::bind(config.server.listen_addr).await?;
        Server::from_listener(listener, config, broker)
    }

    /// Serves `broker` on an already bound `listener`.
    pub fn from_listener(
        listener: TcpListener,
        config: &Config,
        broker: Arc<Broker>,
    ) -> std::io::Result<Server> {
        Server::with_dispatcher(listener, config, broker)
    }

    pub(crate) fn with_dispatcher(
        listener: TcpListener,
        config: &Config,
        dispatcher: Arc<dyn Dispatcher>,
    ) -> std::io::Result<Server> {
        Server::with_metrics(listener, config, dispatcher, Arc::new(Metrics::new()))
    }

    /// Serves `dispatcher`, counting connections and requests in `metrics`.
    pub(crate) fn with_metrics(
        listener: TcpListener,
        config: &Config,
        dispatcher: Arc<dyn Dispatcher>,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Server> {
        let local_addr = listener.local_addr()?;
        let metered: Arc<dyn Dispatcher> = Arc::new(Metered::new(dispatcher, Arc::clone(&metrics)));
        Ok(Server {
            listener,
            local_addr,
            connections_max: config.server.connections_max as usize,
            context: Arc::new(ConnectionContext::new(config, metered, metrics)),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Accepts and serves connections until `shutdown` is cancelled; then stops accepting,
    /// lets in-flight requests finish within the shutdown grace period, and shuts the
    /// broker down (its final flush) before returning.
    pub async fn run(self, shutdown: CancellationToken) {
        let tracker = tokio_util::task::TaskTracker::new();
        let listener = listener::Listener::new(
            self.listener,
            self.connections_max,
            Arc::clone(&self.context),
            tracker.clone(),
            shutdown,
        );
        listener.run().await;
        shutdown::drain(tracker, &self.context).await;
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// What the OS reported.
        source: std::io::Error,
    },
    /// The root token could not be read or generated.
    #[error(transparent)]
    RootToken(#[from] RootTokenError),
    /// The store could not be opened or recovered.
    #[error("cannot open the store: {0}")]
    Storage(#[from] StorageError),
    /// The store could not be migrated to this build's schema version.
    #[error("storage migration failed: {0}")]
    Migration(#[from] MigrationError),
    /// The admin port's address could not be bound.
    #[error("cannot listen on the admin port {addr}: {source}")]
    AdminBind {
        /// The configured address.
        addr: SocketAddr,
        /// What the OS reported.
        source: std::io::Error,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// What the OS reported.
        source: std::io::Error,
    },
}

/// A server running in the background, returned by [`start`] and [`start_with`].
/// Dropping it asks the server to shut down without waiting; call
/// [`RunningServer::shutdown`] to wait for a graceful stop.
pub struct RunningServer {
    /// Where clients connect.
    local_addr: SocketAddr,
    /// Where the HTTP admin port listens.
    admin_addr: SocketAddr,
    /// The root token the broker accepts.
    root_token: RootToken,
    /// Cancelling it starts the graceful shutdown.
    shutdown: CancellationToken,
    /// The server task; it ends once the shutdown is complete.
    task: JoinHandle<()>,
    /// The broker it serves, kept for [`RunningServer::broker_stats`].
    broker: Arc<Broker>,
}

impl RunningServer {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the HTTP admin port (health, readiness, metrics, JSON API).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The root token, in clear (for tests and the operator's first login).
    pub fn root_token(&self) -> &str {
        self.root_token.expose()
    }

    /// A snapshot of the broker's counters (commit rounds, syncs, writes), for
    /// `taskforge bench` with an embedded server.
    pub fn broker_stats(&self) -> BrokerStats {
        self.broker.stats()
    }

    /// A token that starts the graceful shutdown when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting, lets in-flight requests finish within the grace period, shuts the
    /// broker down, stops the admin port, and returns once all of that is done. An error
    /// means the server task panicked.
    pub async fn shutdown(mut self) -> Result<(), tokio::task::JoinError> {
        self.shutdown.cancel();
        (&mut self.task).await
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts the server of `config`: binds the protocol listener and the admin port, opens
/// the store in the data directory, migrates it to this build's schema (with a backup
/// first, see [`migrations::run_at_startup`]), resolves the root token, opens the broker on
/// the system clock, and serves in the background.
pub async fn start(config: Config) -> Result<RunningServer, StartError> {
    start_with_migrations(config, migrations::production()).await
}

/// [`start`] with another list of storage migrations: tests pass the production list plus
/// test-only migrations to exercise the start-up migration.
pub async fn start_with_migrations(
    config: Config,
    migrations: Vec<Migration>,
) -> Result<RunningServer, StartError> {
    config.validate()?;
    let listener = bind(&config).await?;
    let admin = Admin::start(&config).await?;
    let storage = match open_data_dir(&config).await {
        Ok(storage) => storage,
        Err(error) => {
            admin.port.stop().await;
            return Err(error);
        }
    };
    launch(
        config,
        listener,
        admin,
        storage,
        Arc::new(SystemClock),
        migrations,
    )
    .await
}

/// Creates the data directory and opens the store in it.
async fn open_data_dir(config: &Config) -> Result<Arc<dyn Storage>, StartError> {
    let data_dir = config.broker.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|source| StartError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    let storage_config = config.clone();
    // Opening replays the store; keep that off the async workers.
    let storage = tokio::task::spawn_blocking(move || open_storage(&storage_config))
        .await
        .map_err(|error| {
            StorageError::new("open", format!("the opening task failed: {error}"))
        })??;
    Ok(storage)
}

/// Starts the server of `config` on a caller-provided store and clock (tests use a
/// temporary store and a manual clock). Migrations, the root token and the admin port are
/// handled as in [`start`].
pub async fn start_with(
    config: Config,
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
) -> Result<RunningServer, StartError> {
    config.validate()?;
    let listener = bind(&config).await?;
    let admin = Admin::start(&config).await?;
    launch(
        config,
        listener,
        admin,
        storage,
        clock,
        migrations::production(),
    )
    .await
}

/// Binds first, so a taken port fails before the store is replayed.
async fn bind(config: &Config) -> Result<TcpListener, StartError> {
    let addr = config.server.listen_addr;
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

/// The admin port while the server starts: it serves `/healthz` from the beginning, and is
/// stopped again if the start fails.
struct Admin {
    /// The port.
    port: AdminPort,
    /// The metrics it exports, shared with the protocol server.
    metrics: Arc<Metrics>,
    /// The server's shutdown signal: cancelling it stops the protocol listener, and the
    /// admin port reports not ready from then on.
    shutdown: CancellationToken,
}

impl Admin {
    async fn start(config: &Config) -> Result<Admin, StartError> {
        let addr = config.server.admin_listen_addr;
        let metrics = Arc::new(Metrics::new());
        let shutdown = CancellationToken::new();
        let port = AdminPort::start(addr, Arc::clone(&metrics), shutdown.clone())
            .await
            .map_err(|source| StartError::AdminBind { addr, source })?;
        Ok(Admin {
            port,
            metrics,
            shutdown,
        })
    }
}

async fn launch(
    config: Config,
    listener: TcpListener,
    admin: Admin,
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    migrations: Vec<Migration>,
) -> Result<RunningServer, StartError> {
    match open_broker(&config, storage, clock, migrations, &admin.metrics).await {
        Ok((broker, root_token)) => serve(config, listener, admin, broker, root_token).await,
        Err(error) => {
            admin.port.stop().await;
            Err(error)
        }
    }
}

/// Migrates the store, resolves the root token and opens the broker.
async fn open_broker(
    config: &Config,
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    migrations: Vec<Migration>,
    metrics: &Metrics,
) -> Result<(Arc<Broker>, RootToken), StartError> {
    let migrating = Arc::clone(&storage);
    let data_dir = config.broker.data_dir.clone();
    let report = tokio::task::spawn_blocking(move || {
        migrations::run_at_startup(migrating.as_ref(), &migrations, &data_dir)
    })
    .await
    .map_err(|error| StorageError::new("open", format!("the migration task failed: {error}")))??;
    metrics
        .broker
        .schema_version
        .set(i64::try_from(report.version).unwrap_or(i64::MAX));
    if let Some(backup) = &report.backup {
        tracing::info!(
            from = report.stored_before,
            to = report.version,
            backup = %backup.display(),
            "storage migrated"
        );
    }
    let root_token =
        resolve_root_token(config.broker.root_token.as_ref(), &config.broker.data_dir)?;
    let key_pepper =
        resolve_key_pepper(config.broker.key_pepper.as_ref(), &config.broker.data_dir)?;
    let broker_config = config.broker_config(root_token.expose(), key_pepper.expose())?;
    let broker = Broker::open(storage, clock, broker_config).await?;
    Ok((broker, root_token))
}

/// Serves `broker` on `listener` and the admin port in the background.
async fn serve(
    config: Config,
    listener: TcpListener,
    admin: Admin,
    broker: Arc<Broker>,
    root_token: RootToken,
) -> Result<RunningServer, StartError> {
    let server = match Server::with_metrics(
        listener,
        &config,
        Arc::clone(&broker) as Arc<dyn Dispatcher>,
        Arc::clone(&admin.metrics),
    ) {
        Ok(server) => server,
        Err(source) => {
            broker.shutdown().await;
            admin.port.stop().await;
            return Err(StartError::Bind {
                addr: config.server.listen_addr,
                source,
            });
        }
    };
    admin.port.broker_opened(Arc::clone(&broker));
    let local_addr = server.local_addr();
    let admin_addr = admin.port.local_addr();
    // One token for both: the admin port reports not ready as soon as shutdown begins,
    // and keeps answering until the protocol server has drained.
    let shutdown = admin.shutdown.clone();
    let server_shutdown = shutdown.clone();
    let task = tokio::spawn(async move {
        server.run(server_shutdown).await;
        admin.port.stop().await;
    });
    tracing::info!(
        %local_addr,
        %admin_addr,
        environment = ?config.environment,
        fsync = %config.broker.fsync,
        data_dir = %config.broker.data_dir.display(),
        version = env!("CARGO_PKG_VERSION"),
        "taskforge listening"
    );
    Ok(RunningServer {
        local_addr,
        admin_addr,
        root_token,
        shutdown,
        task,
        broker,
    })
}

/// How long start-up waits for sled's lock on the data directory: covers a store closed a
/// moment ago in this process (tests, offline tools), while another running broker is
/// still reported within seconds.
const STORAGE_LOCK_WAIT_MS: u64 = 2_000;

/// Opens the store of record for `config` in its data directory. This is the one place
/// the server names a storage engine.
/// Waits up to [`STORAGE_LOCK_WAIT_MS`] for sled's lock.
fn open_storage(config: &Config) -> Result<Arc<dyn Storage>, StorageError> {
    let options = SledOptions {
        cache_capacity_bytes: config.broker.cache_capacity_bytes,
        flush_every_ms: None,
    };
    let journal = JournalOptions {
        checkpoint_bytes: config.broker.journal_checkpoint_bytes,
        checkpoint_interval_ms: checkpoint_interval_ms(config),
    };
    ReopeningStorage::open(
        &config.broker.data_dir,
        options,
        journal,
        STORAGE_LOCK_WAIT_MS,
    )
    .map(|storage| Arc::new(storage) as Arc<dyn Storage>)
}

/// The journal's checkpoint period, `None` when configured as 0 (by size only).
fn checkpoint_interval_ms(config: &Config) -> Option<u64> {
    Some(config.broker.checkpoint_every_ms).filter(|period_ms| *period_ms > 0)
}
