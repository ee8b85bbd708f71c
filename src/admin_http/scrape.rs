//! `/metrics`: brings the values mirrored from the broker up to date, then encodes the
//! whole registry in the Prometheus text format.

use std::sync::{Arc, PoisonError};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus::{Encoder as _, TextEncoder};
use taskforge_protocol::JobCounts;

use super::{plain, AdminState};
use crate::broker::Broker;
use crate::metrics::{mirror_counter, mirror_seconds, Metrics};

/// The states exported for every queue, in this order, with their counts.
fn state_counts(counts: &JobCounts) -> [(&'static str, u64); 8] {
    [
        ("scheduled", counts.scheduled),
        ("blocked", counts.blocked),
        ("ready", counts.ready),
        ("leased", counts.leased),
        ("succeeded", counts.succeeded),
        ("dead", counts.dead),
        ("cancelled", counts.cancelled),
        ("expired", counts.expired),
    ]
}

/// The `/metrics` handler. The refresh locks the broker briefly and reads file sizes, so
/// it runs on a blocking thread.
pub(super) async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    let rendered = tokio::task::spawn_blocking(move || render(&state)).await;
    match rendered {
        Ok(Ok(text)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
            text,
        )
            .into_response(),
        Ok(Err(error)) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot encode metrics: {error}"),
        ),
        Err(error) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the metrics task failed: {error}"),
        ),
    }
}

/// Refreshes and encodes; one scrape at a time.
fn render(state: &AdminState) -> Result<String, prometheus::Error> {
    let metrics = &state.metrics;
    let _scraping = metrics
        .scrape_lock
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let ready = state.readiness().is_ok();
    metrics.broker.ready.set(i64::from(ready));
    if let Some(broker) = state.broker() {
        refresh(metrics, broker);
    }
    let mut text = Vec::new();
    TextEncoder::new().encode(&metrics.registry().gather(), &mut text)?;
    String::from_utf8(text).map_err(|error| prometheus::Error::Msg(error.to_string()))
}

/// Copies the broker's counts into the mirrored metrics.
fn refresh(metrics: &Metrics, broker: &Broker) {
    let mirror = &metrics.broker;
    let queues = broker.queue_snapshots();
    // Reset first, so a deleted queue's series disappear.
    mirror.queue_jobs.reset();
    mirror.queue_paused.reset();
    for queue in &queues {
        let project = queue.project_id.to_string();
        for (state_name, count) in state_counts(&queue.counts) {
            mirror
                .queue_jobs
                .with_label_values(&[project.as_str(), queue.name.as_str(), state_name])
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        mirror
            .queue_paused
            .with_label_values(&[project.as_str(), queue.name.as_str()])
            .set(i64::from(queue.paused));
    }
    mirror
        .queues
        .set(i64::try_from(queues.len()).unwrap_or(i64::MAX));
    mirror.workers.reset();
    for (project_id, state, count) in broker.worker_counts() {
        mirror
            .workers
            .with_label_values(&[project_id.to_string().as_str(), state.name()])
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
    let stats = broker.stats();
    mirror
        .live_jobs
        .set(i64::try_from(stats.live_jobs).unwrap_or(i64::MAX));
    mirror
        .waiting_fetches
        .set(i64::try_from(stats.waiting_fetches).unwrap_or(i64::MAX));
    mirror_counter(&mirror.commit_rounds, stats.commit_rounds);
    mirror_counter(&mirror.storage_syncs, stats.syncs);
    mirror_counter(&mirror.storage_writes, stats.writes);
    mirror_counter(&mirror.commit_replies, stats.commit_replies);
    mirror_counter(&mirror.commit_failures, stats.commit_failures);
    mirror_counter(&mirror.lease_expiries, stats.lease_expiries);
    mirror_counter(&mirror.jobs_expired, stats.jobs_expired);
    mirror_counter(&mirror.workers_lost, stats.workers_lost);
    if let Some(journal) = broker.journal_stats() {
        mirror_counter(&mirror.journal_checkpoints, journal.checkpoints);
        mirror_counter(&mirror.journal_checkpointed_keys, journal.checkpointed_keys);
        mirror_seconds(
            &mirror.journal_checkpoint_seconds,
            journal.checkpoint_seconds,
        );
        mirror_counter(&mirror.journal_writer_waits, journal.writer_waits);
        mirror_seconds(
            &mirror.journal_writer_wait_seconds,
            journal.writer_wait_seconds,
        );
        mirror
            .journal_file_bytes
            .set(i64::try_from(journal.file_bytes).unwrap_or(i64::MAX));
    }
    match broker.storage_size_on_disk_bytes() {
        Ok(bytes) => mirror
            .storage_size_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX)),
        Err(error) => tracing::warn!(%error, "cannot read the storage size for the metrics"),
    }
}
