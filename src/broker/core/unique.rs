//! Unique keys: an enqueue whose key (in its queue) is held by an existing job returns
//! that job instead of creating another.
//!
//! A hold lasts while its `until` condition holds (the job has not started, or has not
//! finished) or while the job is younger than its window, whichever is longer. Holds are
//! checked when looked up, dropped when their job finishes (unless a window keeps them),
//! and pruned in bulk when the map has doubled since the last pruning, so memory follows
//! the keys that can still hold.

use taskforge_protocol::{JobId, UniqueKey, UniqueUntil};

use super::Core;
use crate::storage::records::{JobRecord, StateTag};

/// Least number of holds before a pruning pass is worth it.
const UNIQUE_PRUNE_MIN: usize = 1_024;

/// A unique key's current holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Hold {
    /// The job holding the key.
    job_id: JobId,
    /// When that job was enqueued.
    created_at_ms: u64,
    /// The state condition, if any.
    until: Option<UniqueUntil>,
    /// The time window, if any.
    window_ms: Option<u64>,
}

impl Hold {
    fn new(job_id: JobId, created_at_ms: u64, key: &UniqueKey) -> Hold {
        Hold {
            job_id,
            created_at_ms,
            until: key.until,
            window_ms: key.window_ms,
        }
    }

    fn in_window(&self, now_ms: u64) -> bool {
        self.window_ms
            .is_some_and(|window_ms| now_ms < self.created_at_ms.saturating_add(window_ms))
    }
}

/// True when a hold's state condition still holds for its job's live record.
fn until_holds(until: Option<UniqueUntil>, record: Option<&JobRecord>) -> bool {
    match (until, record) {
        (Some(UniqueUntil::Started), Some(record)) => {
            record.state == StateTag::Pending && record.executions == 0
        }
        (Some(UniqueUntil::Finished), Some(_)) => true,
        _ => false,
    }
}

impl Core {
    /// The job holding `key` in `queue_id`, if the key still holds; a hold that lapsed is
    /// dropped.
    pub(super) fn unique_holder(&mut self, queue_id: u64, key: &str, now_ms: u64) -> Option<JobId> {
        let map_key = (queue_id, key.to_owned());
        let hold = self.unique.get(&map_key)?;
        if until_holds(
            hold.until,
            self.jobs.get(&hold.job_id).map(|record| &**record),
        ) || hold.in_window(now_ms)
        {
            return Some(hold.job_id);
        }
        self.unique.remove(&map_key);
        None
    }

    /// Makes `job_id` the holder of its unique key.
    pub(super) fn hold_unique(
        &mut self,
        queue_id: u64,
        job_id: JobId,
        key: &UniqueKey,
        now_ms: u64,
    ) {
        self.unique
            .insert((queue_id, key.key.clone()), Hold::new(job_id, now_ms, key));
        if self.unique.len() >= UNIQUE_PRUNE_MIN.max(2 * self.unique_pruned_len) {
            self.prune_unique(now_ms);
        }
    }

    /// Drops the hold of a job that just finished, unless its window still runs.
    pub(super) fn release_unique(
        &mut self,
        queue_id: u64,
        job_id: JobId,
        key: &UniqueKey,
        now_ms: u64,
    ) {
        let map_key = (queue_id, key.key.clone());
        let lapsed = self
            .unique
            .get(&map_key)
            .is_some_and(|hold| hold.job_id == job_id && !hold.in_window(now_ms));
        if lapsed {
            self.unique.remove(&map_key);
        }
    }

    /// Restores the hold of a stored job that may still hold its key.
    pub(super) fn restore_unique(
        &mut self,
        queue_id: u64,
        job_id: JobId,
        record: &JobRecord,
        now_ms: u64,
    ) {
        let Some(key) = record.unique() else {
            return;
        };
        let hold = Hold::new(job_id, record.created_at_ms, key);
        let live = !record.state.is_finished();
        if until_holds(hold.until, live.then_some(record)) || hold.in_window(now_ms) {
            let map_key = (queue_id, key.key.clone());
            // Two stored jobs with one key: the newer one is the holder.
            let newer = self
                .unique
                .get(&map_key)
                .is_none_or(|existing| existing.created_at_ms <= hold.created_at_ms);
            if newer {
                self.unique.insert(map_key, hold);
            }
        }
    }

    fn prune_unique(&mut self, now_ms: u64) {
        let jobs = &self.jobs;
        self.unique.retain(|_, hold| {
            until_holds(hold.until, jobs.get(&hold.job_id).map(|record| &**record))
                || hold.in_window(now_ms)
        });
        self.unique_pruned_len = self.unique.len();
    }
}
