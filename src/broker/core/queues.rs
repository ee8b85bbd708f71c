//! Queue operations of the core.

use std::collections::BTreeMap;
use std::ops::Bound;

use taskforge_protocol::{
    limits, Backoff, JobId, ProjectId, QueueDefaults, QueueInfo, QueueSettings, QueueStats,
};

use super::{Core, CoreError, QueueState, ReadyKey};
use crate::storage::keys;
use crate::storage::records::{self, QueueRecord};
use crate::storage::Write;

/// The earliest run time among ready jobs. Within one priority the ready set is ordered by
/// run time, so the first entry of each priority group is that group's oldest: this visits
/// one entry per distinct priority, not every ready job.
fn oldest_ready_at(ready: &BTreeMap<ReadyKey, JobId>) -> Option<u64> {
    let mut oldest: Option<u64> = None;
    let mut next = ready.keys().next().copied();
    while let Some((priority, run_at_ms, _)) = next {
        oldest = Some(oldest.map_or(run_at_ms, |oldest| oldest.min(run_at_ms)));
        let past_group = (priority, u64::MAX, u64::MAX);
        next = ready
            .range((Bound::Excluded(past_group), Bound::Unbounded))
            .next()
            .map(|(key, _)| *key);
    }
    oldest
}

/// The broker-wide defaults a queue starts from.
pub fn broker_defaults() -> QueueDefaults {
    QueueDefaults {
        priority: 0,
        max_attempts: limits::MAX_ATTEMPTS_DEFAULT,
        backoff: Backoff {
            initial_ms: limits::BACKOFF_INITIAL_MS_DEFAULT,
            factor_percent: limits::BACKOFF_FACTOR_PERCENT_DEFAULT,
            max_ms: limits::BACKOFF_MAX_MS_DEFAULT,
            jitter_percent: limits::BACKOFF_JITTER_PERCENT_DEFAULT,
        },
        lease_ms: limits::LEASE_MS_DEFAULT,
        retention_ms: None,
        in_flight_max: None,
        deliveries_per_second: None,
    }
}

/// A setting where 0 means "none".
fn nonzero<T: PartialEq + Default>(value: T) -> Option<T> {
    (value != T::default()).then_some(value)
}

fn apply_settings(defaults: &mut QueueDefaults, settings: &QueueSettings) {
    if let Some(priority) = settings.priority {
        defaults.priority = priority;
    }
    if let Some(max_attempts) = settings.max_attempts {
        defaults.max_attempts = max_attempts;
    }
    if let Some(backoff) = settings.backoff {
        defaults.backoff = backoff;
    }
    if let Some(lease_ms) = settings.lease_ms {
        defaults.lease_ms = lease_ms;
    }
    if let Some(retention_ms) = settings.retention_ms {
        defaults.retention_ms = nonzero(retention_ms);
    }
    if let Some(in_flight_max) = settings.in_flight_max {
        defaults.in_flight_max = nonzero(in_flight_max);
    }
    if let Some(rate) = settings.deliveries_per_second {
        defaults.deliveries_per_second = nonzero(rate);
    }
}

impl Core {
    /// The id of a project's queue.
    pub fn queue_id(&self, project_id: ProjectId, name: &str) -> Result<u64, CoreError> {
        self.queue_names
            .get(&project_id)
            .and_then(|names| names.get(name))
            .copied()
            .ok_or_else(|| CoreError::NotFound(format!("queue {name:?} not found")))
    }

    /// A queue's name by id.
    pub fn queue_name(&self, queue_id: u64) -> Option<&str> {
        self.queues
            .get(&queue_id)
            .map(|queue| queue.record.name.as_str())
    }

    /// Creates a queue.
    pub fn queue_create(
        &mut self,
        project_id: ProjectId,
        name: &str,
        settings: &QueueSettings,
        now_ms: u64,
    ) -> Result<QueueInfo, CoreError> {
        if self.queue_id(project_id, name).is_ok() {
            return Err(CoreError::Conflict(format!(
                "queue {name:?} already exists"
            )));
        }
        self.check_queue_quota(project_id)?;
        let mut defaults = broker_defaults();
        apply_settings(&mut defaults, settings);
        let queue_id = self.queue_id_next;
        self.queue_id_next += 1;
        let record = QueueRecord {
            queue_id,
            name: name.to_owned(),
            defaults,
            paused: false,
            created_at_ms: now_ms,
        };
        self.writes.push(Write::Put(
            keys::META_QUEUE_ID_NEXT.to_vec(),
            self.queue_id_next.to_be_bytes().to_vec(),
        ));
        self.writes.push(Write::Put(
            keys::queue(project_id, name),
            records::encode(&record),
        ));
        self.queue_names
            .entry(project_id)
            .or_default()
            .insert(name.to_owned(), queue_id);
        self.queues
            .insert(queue_id, QueueState::new(project_id, record));
        self.queue_get(project_id, name)
    }

    /// Reads a queue.
    pub fn queue_get(&self, project_id: ProjectId, name: &str) -> Result<QueueInfo, CoreError> {
        let queue_id = self.queue_id(project_id, name)?;
        Ok(self.queue_info(queue_id))
    }

    /// Lists a project's queues in name order, after `after`.
    pub fn queue_list(
        &self,
        project_id: ProjectId,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<QueueInfo>, Option<String>) {
        let Some(names) = self.queue_names.get(&project_id) else {
            return (Vec::new(), None);
        };
        let range = match after {
            Some(after) => names
                .range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded)),
            None => names.range::<str, _>(..),
        };
        let mut page: Vec<QueueInfo> = Vec::new();
        let mut more = false;
        for (_, queue_id) in range {
            if page.len() == limit {
                more = true;
                break;
            }
            page.push(self.queue_info(*queue_id));
        }
        let next_after = if more {
            page.last().map(|queue| queue.name.clone())
        } else {
            None
        };
        (page, next_after)
    }

    /// Changes a queue's defaults (jobs already enqueued keep theirs).
    pub fn queue_update(
        &mut self,
        project_id: ProjectId,
        name: &str,
        settings: &QueueSettings,
    ) -> Result<QueueInfo, CoreError> {
        let queue_id = self.queue_id(project_id, name)?;
        self.modify_queue(queue_id, |record| {
            apply_settings(&mut record.defaults, settings)
        });
        Ok(self.queue_info(queue_id))
    }

    /// Pauses or resumes deliveries from a queue.
    pub fn queue_set_paused(
        &mut self,
        project_id: ProjectId,
        name: &str,
        paused: bool,
        now_ms: u64,
    ) -> Result<QueueInfo, CoreError> {
        let queue_id = self.queue_id(project_id, name)?;
        self.modify_queue(queue_id, |record| record.paused = paused);
        if !paused {
            self.dirty_queues.push(queue_id);
            self.dispatch_waiters(now_ms);
        }
        Ok(self.queue_info(queue_id))
    }

    /// Deletes a queue that holds no job in any state.
    pub fn queue_delete(&mut self, project_id: ProjectId, name: &str) -> Result<(), CoreError> {
        let queue_id = self.queue_id(project_id, name)?;
        // Schedules hook: a queue a schedule enqueues into cannot go.
        self.check_no_schedule_targets(project_id, name)?;
        let Some(queue) = self.queues.get(&queue_id) else {
            return Err(CoreError::NotFound(format!("queue {name:?} not found")));
        };
        let jobs: u64 = queue.counts.iter().sum();
        if jobs > 0 {
            return Err(CoreError::Conflict(format!(
                "queue {name:?} still holds {jobs} jobs; purge it first"
            )));
        }
        for waiter_id in queue.waiters.clone() {
            self.cancel_waiter_everywhere(waiter_id);
        }
        self.queues.remove(&queue_id);
        if let Some(names) = self.queue_names.get_mut(&project_id) {
            names.remove(name);
        }
        self.writes
            .push(Write::Delete(keys::queue(project_id, name)));
        Ok(())
    }

    /// Counts a queue's jobs.
    pub fn queue_stats(
        &self,
        project_id: ProjectId,
        name: &str,
        now_ms: u64,
    ) -> Result<QueueStats, CoreError> {
        let queue_id = self.queue_id(project_id, name)?;
        let info = self.queue_info(queue_id);
        let oldest_ready_age_ms = self
            .queues
            .get(&queue_id)
            .and_then(|queue| oldest_ready_at(&queue.ready))
            .map(|run_at_ms| now_ms.saturating_sub(run_at_ms));
        Ok(QueueStats {
            name: info.name,
            counts: info.counts,
            paused: info.paused,
            oldest_ready_age_ms,
        })
    }

    fn modify_queue(&mut self, queue_id: u64, change: impl FnOnce(&mut QueueRecord)) {
        if let Some(queue) = self.queues.get_mut(&queue_id) {
            change(&mut queue.record);
            let key = keys::queue(queue.project_id, &queue.record.name);
            self.writes
                .push(Write::Put(key, records::encode(&queue.record)));
        }
    }

    fn queue_info(&self, queue_id: u64) -> QueueInfo {
        let Some(queue) = self.queues.get(&queue_id) else {
            panic!("queue id {queue_id} resolved from the name map must exist");
        };
        QueueInfo {
            name: queue.record.name.clone(),
            defaults: queue.record.defaults.clone(),
            paused: queue.record.paused,
            created_at_ms: queue.record.created_at_ms,
            counts: queue.job_counts(),
        }
    }
}
