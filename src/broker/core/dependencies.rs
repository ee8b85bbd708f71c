//! Job dependencies: a child stays blocked until every parent succeeded. When a parent
//! ends dead, cancelled or expired, a child with policy `cancel` is cancelled (and so on
//! down the graph) and one with policy `run` counts that parent as done.
//!
//! Edges are stored by parent (`keys::child`) and, for live parents, kept in memory; each
//! child's count of parents still to finish lives in its record. Settling works through a
//! queue rather than recursion, so a long chain of cancellations cannot exhaust the stack.

use taskforge_protocol::{JobId, ParentFailure};

use super::Core;
use crate::storage::records::StateTag;

/// What a parent named by a new job is, at enqueue time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ParentStatus {
    /// Live (in memory or created by the same batch): the child waits for it.
    Live,
    /// Finished: succeeded, or ended in the given failed state.
    Finished(StateTag),
}

impl ParentStatus {
    /// True when the parent will never release a child of this policy.
    pub(super) fn dooms(self, policy: ParentFailure) -> bool {
        matches!(self, ParentStatus::Finished(tag) if tag != StateTag::Succeeded)
            && policy == ParentFailure::Cancel
    }
}

/// The error a child cancelled by its parent records.
pub(super) fn parent_failed_error(parent: JobId, tag: StateTag) -> String {
    format!("parent job {parent} ended {tag:?} and this job's policy is to cancel")
        .replace("Dead", "dead")
        .replace("Cancelled", "cancelled")
        .replace("Expired", "expired")
}

impl Core {
    /// Restores one stored edge; only edges between live jobs matter in memory.
    pub fn restore_edge(&mut self, parent: JobId, child: JobId) {
        let child_waits = self
            .jobs
            .get(&child)
            .is_some_and(|record| record.parents_remaining > 0);
        if child_waits && self.jobs.contains_key(&parent) {
            self.children.entry(parent).or_default().push(child);
        }
    }

    /// Notes an edge from a live parent to a new child.
    pub(super) fn add_edge(&mut self, parent: JobId, child: JobId) {
        self.children.entry(parent).or_default().push(child);
    }

    /// Queues the children of a job that just finished as `tag`, and settles everything
    /// queued unless an outer call is already doing it.
    pub(super) fn settle_children_of(&mut self, parent: JobId, tag: StateTag, now_ms: u64) {
        if self.children.contains_key(&parent) {
            self.settle_queue.push((parent, tag));
        }
        if self.settling {
            return;
        }
        self.settling = true;
        while let Some((parent, tag)) = self.settle_queue.pop() {
            let children = self.children.remove(&parent).unwrap_or_default();
            for child in children {
                self.settle_child(parent, tag, child, now_ms);
            }
        }
        self.settling = false;
    }

    /// One child of a finished parent: released a step, or cancelled.
    fn settle_child(&mut self, parent: JobId, tag: StateTag, child: JobId, now_ms: u64) {
        let Some(record) = self.jobs.get(&child) else {
            return;
        };
        if record.state != StateTag::Pending || record.parents_remaining == 0 {
            return;
        }
        let releases = tag == StateTag::Succeeded || record.on_parent_failure == ParentFailure::Run;
        if !releases {
            self.finish(
                child,
                StateTag::Cancelled,
                Some(parent_failed_error(parent, tag)),
                None,
                now_ms,
            );
            return;
        }
        let mut record = record.clone();
        record.parents_remaining -= 1;
        record.updated_at_ms = now_ms;
        let unblocked = record.parents_remaining == 0;
        if unblocked {
            if let Some(queue) = self.queues.get_mut(&record.queue_id) {
                queue.blocked = queue.blocked.saturating_sub(1);
            }
        }
        self.persist(child, Some(StateTag::Pending), &record);
        self.jobs.insert(child, record);
        if unblocked {
            self.schedule_pending(child, now_ms);
        }
    }
}
