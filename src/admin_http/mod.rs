//! The HTTP admin port: health, readiness, Prometheus metrics and a read-only JSON API.
//!
//! # Layout
//! - `mod.rs`: [`AdminPort`] (bind, serve, stop), the shared [`AdminState`], the router,
//!   `/healthz` and `/readyz`, and the request limits.
//! - `scrape.rs`: `/metrics` — refreshes the values mirrored from the broker, then encodes
//!   the registry with the `prometheus` crate's text encoder.
//! - `api.rs`: `/api/v1/...` — bearer-token authentication and the JSON views.
//! - `listener.rs`: the accept loop with its connection cap.
//!
//! # Invariants
//! - The port starts before storage is opened, so `/healthz` answers while a long recovery
//!   or migration runs and `/readyz` says why it is not ready yet.
//! - Only `/healthz`, `/readyz` and `/metrics` answer without a token. The JSON API asks
//!   the broker to authenticate the bearer token exactly as a HELLO would (BLAKE3 hashes
//!   compared in constant time) and runs the same broker operations as the protocol.
//! - No response carries a secret: no token, no key hash, no job payload or result.
//! - Bounded: at most [`ADMIN_CONNECTIONS_MAX`] connections open (more wait in the
//!   kernel's backlog) and [`ADMIN_REQUESTS_IN_FLIGHT_MAX`] requests at once (more get 503),
//!   each answered within [`ADMIN_REQUEST_TIMEOUT_MS`]. Idle keep-alive connections are
//!   not timed out: the port is meant for localhost and trusted scrapers.

mod api;
mod listener;
mod scrape;

pub use listener::ADMIN_CONNECTIONS_MAX;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::metrics::Metrics;

/// Requests the admin port serves at once; more get 503 at once rather than queueing, so
/// a flood of scrapes cannot pile up work (the port is on localhost by default).
pub const ADMIN_REQUESTS_IN_FLIGHT_MAX: usize = 64;

/// Longest time one admin request may take before it is answered 503. A scrape locks the
/// broker only briefly; this bounds a slow storage-size read or a stuck job lookup.
pub const ADMIN_REQUEST_TIMEOUT_MS: u64 = 10_000;

/// How long stopping the admin port waits for its open requests.
pub const ADMIN_SHUTDOWN_TIMEOUT_MS: u64 = 2_000;

/// What every admin handler can see.
pub struct AdminState {
    /// The server's metrics.
    metrics: Arc<Metrics>,
    /// The broker, once storage is open and recovered.
    broker: OnceLock<Arc<Broker>>,
    /// Cancelled when the server starts shutting down: `/readyz` turns 503 at once,
    /// before connections have drained.
    shutting_down: CancellationToken,
    /// Bounds the requests in flight.
    requests: Arc<Semaphore>,
}

impl AdminState {
    /// The broker, once it is open.
    fn broker(&self) -> Option<&Arc<Broker>> {
        self.broker.get()
    }

    /// `Ok` when the broker is open and serving, otherwise why not.
    fn readiness(&self) -> Result<&Arc<Broker>, String> {
        if self.shutting_down.is_cancelled() {
            return Err("the server is shutting down".into());
        }
        let broker = self
            .broker()
            .ok_or_else(|| "starting: storage is being opened and recovered".to_string())?;
        broker.readiness()?;
        Ok(broker)
    }
}

/// The admin port of one server.
pub struct AdminPort {
    /// Shared with the handlers.
    state: Arc<AdminState>,
    /// The address it listens on (with the real port when the configured one was 0).
    local_addr: SocketAddr,
    /// Cancelling it stops the HTTP server; dropping the port cancels it too, so a port
    /// forgotten on an error path never keeps serving.
    stop: CancellationToken,
    /// The HTTP server task, taken by [`AdminPort::stop`].
    task: Option<JoinHandle<()>>,
}

impl Drop for AdminPort {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl AdminPort {
    /// Binds `addr` and starts serving at once (`/healthz` answers, `/readyz` is 503 until
    /// [`AdminPort::broker_opened`]). `shutting_down` is the server's shutdown signal.
    pub async fn start(
        addr: SocketAddr,
        metrics: Arc<Metrics>,
        shutting_down: CancellationToken,
    ) -> std::io::Result<AdminPort> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let state = Arc::new(AdminState {
            metrics,
            broker: OnceLock::new(),
            shutting_down,
            requests: Arc::new(Semaphore::new(ADMIN_REQUESTS_IN_FLIGHT_MAX)),
        });
        let stop = CancellationToken::new();
        let app = router(Arc::clone(&state));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let serving = axum::serve(listener::CappedListener::new(listener), app)
                .with_graceful_shutdown(async move { stopped.cancelled().await });
            if let Err(error) = serving.await {
                tracing::error!(%error, "the admin port failed");
            }
        });
        tracing::info!(%local_addr, "admin port listening");
        Ok(AdminPort {
            state,
            local_addr,
            stop,
            task: Some(task),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Storage is open and recovered: readiness and metrics now come from `broker`.
    pub fn broker_opened(&self, broker: Arc<Broker>) {
        self.state
            .metrics
            .register_commit_histograms(broker.commit_histograms());
        let recovery_seconds = broker.recovery_report().duration_ms as f64 / 1_000.0;
        self.state
            .metrics
            .broker
            .recovery_duration_seconds
            .set(recovery_seconds);
        if self.state.broker.set(broker).is_err() {
            tracing::warn!("the admin port was told twice that the broker opened");
        }
    }

    /// Stops serving: in-flight requests get [`ADMIN_SHUTDOWN_TIMEOUT_MS`] to finish.
    pub async fn stop(mut self) {
        self.stop.cancel();
        let Some(mut task) = self.task.take() else {
            return;
        };
        let limit = Duration::from_millis(ADMIN_SHUTDOWN_TIMEOUT_MS);
        if tokio::time::timeout(limit, &mut task).await.is_err() {
            tracing::warn!("admin requests still open at shutdown; dropping them");
            task.abort();
        }
    }
}

/// Every route.
fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(scrape::metrics))
        .nest("/api/v1", api::routes())
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            limit_requests,
        ))
        .with_state(state)
}

/// Refuses requests beyond [`ADMIN_REQUESTS_IN_FLIGHT_MAX`] and answers 503 after
/// [`ADMIN_REQUEST_TIMEOUT_MS`].
async fn limit_requests(
    State(state): State<Arc<AdminState>>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(_permit) = Arc::clone(&state.requests).try_acquire_owned() else {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many admin requests in flight; retry later",
        );
    };
    let limit = Duration::from_millis(ADMIN_REQUEST_TIMEOUT_MS);
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "the admin request timed out",
        ),
    }
}

/// A plain-text response ending in a newline.
fn plain(status: StatusCode, text: &str) -> Response {
    (status, format!("{text}\n")).into_response()
}

/// `/healthz`: the process is up and its admin port answers.
async fn healthz() -> Response {
    plain(StatusCode::OK, "ok")
}

/// `/readyz`: 200 once storage is open and recovered and while the broker serves; 503
/// with the reason while starting, while storage is failing, and once shutdown begins.
async fn readyz(State(state): State<Arc<AdminState>>) -> Response {
    match state.readiness() {
        Ok(_) => plain(StatusCode::OK, "ready"),
        Err(reason) => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("not ready: {reason}"),
        ),
    }
}
