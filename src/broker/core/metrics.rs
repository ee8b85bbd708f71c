//! Read-only views of the core for metrics and the admin port. Nothing here changes state.

use std::collections::BTreeMap;

use taskforge_protocol::{JobCounts, ProjectId, WorkerState};

use super::Core;

/// A queue the retention sweep visits, with its effective retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionTarget {
    /// The queue.
    pub queue_id: u64,
    /// Its project.
    pub project_id: ProjectId,
    /// How long its finished jobs are kept.
    pub retention_ms: u64,
}

/// One queue's depth by state, as the metrics export it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSnapshot {
    /// The project that owns the queue.
    pub project_id: ProjectId,
    /// The queue's internal id.
    pub queue_id: u64,
    /// The queue's name, unique in its project.
    pub name: String,
    /// True while deliveries are stopped.
    pub paused: bool,
    /// Jobs per state; scheduled and ready split the stored pending count by the ready set.
    pub counts: JobCounts,
}

impl Core {
    /// Every queue's counts, ordered by project and name so scrapes are stable. Costs one
    /// pass over the queues (not the jobs): the counts are kept up to date by every
    /// transition.
    pub fn queue_snapshots(&self) -> Vec<QueueSnapshot> {
        let mut snapshots: Vec<QueueSnapshot> = self
            .queues
            .iter()
            .map(|(queue_id, queue)| QueueSnapshot {
                project_id: queue.project_id,
                queue_id: *queue_id,
                name: queue.record.name.clone(),
                paused: queue.record.paused,
                counts: queue.job_counts(),
            })
            .collect();
        snapshots.sort_by(|left, right| {
            (left.project_id, &left.name).cmp(&(right.project_id, &right.name))
        });
        snapshots
    }

    /// Queues holding finished jobs, with their retention: the queue's own, else the
    /// plan's, else the broker's default.
    pub fn retention_targets(&self) -> Vec<RetentionTarget> {
        self.queues
            .iter()
            .filter(|(_, queue)| queue.counts[2..].iter().any(|count| *count > 0))
            .map(|(queue_id, queue)| RetentionTarget {
                queue_id: *queue_id,
                project_id: queue.project_id,
                retention_ms: queue
                    .record
                    .defaults
                    .retention_ms
                    .or_else(|| {
                        self.plan_of(queue.project_id)
                            .map(|(limits, _)| limits.retention_ms)
                    })
                    .unwrap_or(self.settings.retention_ms_default),
            })
            .collect()
    }

    /// Registered workers per project and state (states with none are left out).
    pub fn worker_counts(&self) -> Vec<(ProjectId, WorkerState, u64)> {
        let mut counts = BTreeMap::<(ProjectId, WorkerState), u64>::new();
        for worker in self.workers.values() {
            *counts
                .entry((worker.project_id, worker.info.state))
                .or_default() += 1;
        }
        counts
            .into_iter()
            .map(|((project_id, state), count)| (project_id, state, count))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use taskforge_protocol::{NewJob, QueueSettings};

    use super::*;

    #[test]
    fn snapshots_split_pending_into_ready_and_scheduled() {
        let mut core = Core::new(7, Default::default());
        let now_ms = 1_000;
        core.queue_create(1, "b", &QueueSettings::default(), now_ms)
            .expect("create b");
        core.queue_create(1, "a", &QueueSettings::default(), now_ms)
            .expect("create a");
        let ready = NewJob {
            queue: "a".into(),
            ..NewJob::default()
        };
        let delayed = NewJob {
            queue: "a".into(),
            delay_ms: Some(60_000),
            ..NewJob::default()
        };
        core.enqueue(1, vec![ready, delayed], &Default::default(), now_ms)
            .expect("enqueue");
        let snapshots = core.queue_snapshots();
        let names: Vec<&str> = snapshots.iter().map(|queue| queue.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(snapshots[0].counts.ready, 1);
        assert_eq!(snapshots[0].counts.scheduled, 1);
        assert_eq!(snapshots[1].counts, JobCounts::default());
    }
}
