//! Graceful shutdown, after the listener has stopped accepting.
//!
//! Every connection watches the same cancellation token: it stops reading requests,
//! gives those in flight up to the grace period, answers them and closes. This waits for
//! all of that, then shuts the broker down (its final commit and sync), so no request is
//! answered after the broker stopped and nothing acknowledged is left unsynced.

use std::time::Duration;

use tokio_util::task::TaskTracker;

use super::ConnectionContext;

/// Slack beyond the per-connection deadlines before the server stops waiting for
/// connection tasks: covers the close linger and scheduling delays.
const DRAIN_SLACK: Duration = Duration::from_secs(2);

/// Waits for every connection task (bounded), then shuts the broker down.
pub(crate) async fn drain(tracker: TaskTracker, context: &ConnectionContext) {
    tracker.close();
    context.dispatcher.release_long_polls();
    let open_connections = tracker.len();
    if open_connections > 0 {
        tracing::info!(
            open_connections,
            grace_ms = context.shutdown_grace.as_millis() as u64,
            "waiting for connections to finish their requests"
        );
    }
    // A connection needs at most the grace period for its requests, then one write
    // deadline for the last answers.
    let wait_limit = context.shutdown_grace + context.write_timeout + DRAIN_SLACK;
    if tokio::time::timeout(wait_limit, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open_connections = tracker.len(),
            "connections still open after the shutdown deadline; shutting the broker down anyway"
        );
    }
    context.dispatcher.shutdown().await;
    tracing::info!("shutdown complete");
}
