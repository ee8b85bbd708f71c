//! Retention: finished jobs (succeeded, dead, cancelled, expired) with everything stored
//! for them are purged once they have been finished for their queue's retention (or the
//! plan's, or the broker's default). A background sweep reads each queue's finished-state
//! indexes in key order (job ids are time-ordered), a bounded batch per queue and state
//! per sweep, continuing where the last sweep stopped, so deletes stay in key order and
//! storage on disk stays bounded under steady churn (see TECH-NOTES on sled space).

use std::collections::HashMap;
use std::sync::Arc;

use taskforge_protocol::{ErrorBody, JobId};

use super::Broker;
use crate::storage::records::StateTag;

/// How often the retention sweep runs.
pub const RETENTION_SWEEP_INTERVAL_MS: u64 = 1_000;

/// Most index entries one sweep reads per queue and finished state.
pub const RETENTION_SCAN_ENTRIES_MAX: usize = 1_000;

/// The states retention purges.
const FINISHED_STATES: [StateTag; 4] = [
    StateTag::Succeeded,
    StateTag::Dead,
    StateTag::Cancelled,
    StateTag::Expired,
];

/// Where each queue's sweep of each finished state goes on from.
pub(super) type Cursors = HashMap<(u64, StateTag), JobId>;

impl Broker {
    /// Sweeps every [`RETENTION_SWEEP_INTERVAL_MS`] until shutdown.
    pub(super) async fn run_retention(self: Arc<Broker>) {
        loop {
            let next_ms = self
                .clock
                .now_ms()
                .saturating_add(RETENTION_SWEEP_INTERVAL_MS);
            tokio::select! {
                _ = self.clock.sleep_until(next_ms) => {}
                _ = self.shutdown.cancelled() => return,
            }
            if let Err(error) = self.sweep_retention().await {
                tracing::warn!(%error, "retention sweep failed; the next one retries");
            }
        }
    }

    /// One sweep over every queue with finished jobs; returns how many jobs it purged.
    pub async fn sweep_retention(&self) -> Result<u64, ErrorBody> {
        let _bulk = self.bulk_lock.lock().await;
        let targets = self.mutate_raw(|core, _| core.retention_targets()).await?;
        let now_ms = self.clock.now_ms();
        let mut purged = 0;
        for target in targets {
            let cutoff_ms = now_ms.saturating_sub(target.retention_ms);
            for tag in FINISHED_STATES {
                let cursor = self.retention_cursor(target.queue_id, tag);
                let ids =
                    self.scan_index(target.queue_id, tag, cursor, RETENTION_SCAN_ENTRIES_MAX)?;
                let mut doomed = Vec::new();
                for job_id in &ids {
                    let Some(record) = self.read_job_now(target.project_id, *job_id)? else {
                        continue;
                    };
                    let expired = record.state == tag
                        && record
                            .finished_at_ms()
                            .is_some_and(|finished_ms| finished_ms <= cutoff_ms);
                    if expired {
                        doomed.push((*job_id, tag));
                    }
                }
                // At the end of the index the next sweep starts again from its beginning.
                let next = (ids.len() == RETENTION_SCAN_ENTRIES_MAX)
                    .then(|| ids.last().copied())
                    .flatten();
                self.set_retention_cursor(target.queue_id, tag, next);
                if !doomed.is_empty() {
                    purged += self
                        .mutate_raw(|core, now_ms| {
                            core.delete_jobs(target.queue_id, &doomed, now_ms)
                        })
                        .await?;
                }
            }
        }
        if purged > 0 {
            tracing::info!(purged, "retention purged finished jobs");
        }
        Ok(purged)
    }

    fn retention_cursor(&self, queue_id: u64, tag: StateTag) -> Option<JobId> {
        self.retention_cursors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(queue_id, tag))
            .copied()
    }

    fn set_retention_cursor(&self, queue_id: u64, tag: StateTag, cursor: Option<JobId>) {
        let mut cursors = self
            .retention_cursors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match cursor {
            Some(job_id) => cursors.insert((queue_id, tag), job_id),
            None => cursors.remove(&(queue_id, tag)),
        };
    }
}
