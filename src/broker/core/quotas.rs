//! Quotas from the organization's subscription, checked where they bite: queue creation,
//! and every enqueue (subscription status, payload size, pending jobs, enqueue rate).
//! Project creation checks its own quota in the directory.

use std::collections::HashMap;

use taskforge_protocol::{NewJob, PlanLimits, ProjectId, SubscriptionStatus};

use super::{Core, CoreError};
use crate::storage::records::StateTag;

/// A token bucket: `rate` tokens a second, holding at most `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    /// Tokens available at `updated_ms`.
    tokens: f64,
    /// When `tokens` was computed.
    updated_ms: u64,
}

/// Per-project enqueue buckets, in memory only (a restart refills them: harmless).
pub type Buckets = HashMap<ProjectId, TokenBucket>;

impl Core {
    /// The limits and status of the plan governing `project_id`, if it has one.
    pub(super) fn plan_of(
        &self,
        project_id: ProjectId,
    ) -> Option<(PlanLimits, SubscriptionStatus)> {
        let project = self.project(project_id)?;
        let entry = self.org(project.org_id)?;
        Some((entry.subscription.limits.clone(), entry.subscription.status))
    }

    /// Jobs of a project that are not finished.
    pub fn project_live_jobs(&self, project_id: ProjectId) -> u64 {
        self.queue_names.get(&project_id).map_or(0, |names| {
            names
                .values()
                .filter_map(|queue_id| self.queues.get(queue_id))
                .map(|queue| {
                    queue.counts[StateTag::Pending as usize]
                        + queue.counts[StateTag::Leased as usize]
                })
                .sum()
        })
    }

    /// Checks the queues-per-project quota before creating one more queue.
    pub(super) fn check_queue_quota(&self, project_id: ProjectId) -> Result<(), CoreError> {
        let Some((limits, _)) = self.plan_of(project_id) else {
            return Ok(());
        };
        let queues = self
            .queue_names
            .get(&project_id)
            .map_or(0, |names| names.len()) as u64;
        let max = u64::from(limits.queues_per_project_max);
        if queues >= max {
            return Err(CoreError::Quota {
                limit: "queues_per_project",
                current: queues,
                max,
            });
        }
        Ok(())
    }

    /// Checks everything an enqueue of `jobs` must pass, and takes their tokens from the
    /// project's bucket — all or none, so a refused batch costs nothing.
    pub(super) fn admit_enqueue(
        &mut self,
        project_id: ProjectId,
        jobs: &[&NewJob],
        now_ms: u64,
    ) -> Result<(), (usize, CoreError)> {
        let Some((limits, status)) = self.plan_of(project_id) else {
            return Ok(());
        };
        if status != SubscriptionStatus::Active {
            let status = match status {
                SubscriptionStatus::PastDue => "past_due",
                _ => "cancelled",
            };
            return Err((
                0,
                CoreError::Forbidden(format!(
                    "the organization's subscription is {status}; enqueues are refused, workers may drain"
                )),
            ));
        }
        let payload_max = u64::from(limits.payload_bytes_max);
        if let Some((index, job)) = jobs
            .iter()
            .enumerate()
            .find(|(_, job)| job.payload.len() as u64 > payload_max)
        {
            let current = job.payload.len() as u64;
            return Err((
                index,
                CoreError::Quota {
                    limit: "payload_bytes",
                    current,
                    max: payload_max,
                },
            ));
        }
        let live = self.project_live_jobs(project_id);
        let wanted = jobs.len() as u64;
        if live.saturating_add(wanted) > limits.pending_jobs_max {
            return Err((
                0,
                CoreError::Quota {
                    limit: "pending_jobs",
                    current: live,
                    max: limits.pending_jobs_max,
                },
            ));
        }
        self.take_tokens(project_id, wanted, &limits, now_ms)
            .map_err(|error| (0, error))
    }

    fn take_tokens(
        &mut self,
        project_id: ProjectId,
        wanted: u64,
        limits: &PlanLimits,
        now_ms: u64,
    ) -> Result<(), CoreError> {
        let rate_per_ms = f64::from(limits.enqueue_rate_per_second) / 1000.0;
        let burst = f64::from(limits.enqueue_burst.max(1));
        let wanted_tokens = wanted as f64;
        if wanted_tokens > burst {
            return Err(CoreError::InvalidArgument(format!(
                "a batch of {wanted} jobs is over the plan's enqueue burst of {}",
                limits.enqueue_burst
            )));
        }
        let bucket = self.buckets.entry(project_id).or_insert(TokenBucket {
            tokens: burst,
            updated_ms: now_ms,
        });
        let elapsed_ms = now_ms.saturating_sub(bucket.updated_ms) as f64;
        bucket.tokens = (bucket.tokens + elapsed_ms * rate_per_ms).min(burst);
        bucket.updated_ms = bucket.updated_ms.max(now_ms);
        if bucket.tokens + f64::EPSILON < wanted_tokens {
            let missing = wanted_tokens - bucket.tokens;
            let retry_after_ms = if rate_per_ms > 0.0 {
                (missing / rate_per_ms).ceil() as u64
            } else {
                u64::MAX
            };
            return Err(CoreError::RateLimited {
                retry_after_ms: retry_after_ms.max(1),
            });
        }
        bucket.tokens -= wanted_tokens;
        Ok(())
    }
}
