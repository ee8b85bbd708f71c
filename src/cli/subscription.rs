//! `taskforge subscription get|set`: an organization's plan, status, period and limits.

use clap::{Args, Subcommand};
use taskforge::broker::core::tenants::plan_limits;
use taskforge::client::Client;
use taskforge_protocol::{OrgId, Plan, PlanLimits, Subscription, SubscriptionSet};

use super::output::{self, Output};
use super::tenancy::{self, PlanArg, SubscriptionStatusArg};
use super::CliError;

/// The command that lists organizations, named in not-found hints.
const LISTING: &str = "taskforge org list";

/// The verbs of `taskforge subscription`.
#[derive(Debug, Subcommand)]
pub enum SubscriptionCommand {
    /// Shows an organization's plan, status, period and the limits in force
    Get {
        /// Organization id
        #[arg(long, value_name = "ID")]
        org: OrgId,
    },
    /// Sets an organization's plan and status (root token only). Unset flags keep the
    /// current status and period; limits are the plan's presets unless limit flags are
    /// given, which change those limits and keep the others
    Set {
        /// Organization id
        #[arg(long, value_name = "ID")]
        org: OrgId,
        /// The plan (custom: the current limits changed by the limit flags)
        #[arg(long, value_enum)]
        plan: PlanArg,
        /// Paid up or not (past_due and cancelled refuse enqueues; workers may drain)
        #[arg(long, value_enum)]
        status: Option<SubscriptionStatusArg>,
        /// Start of the current period, ms since the Unix epoch
        #[arg(long, value_name = "MS")]
        period_start_ms: Option<u64>,
        /// End of the current period, ms since the Unix epoch
        #[arg(long, value_name = "MS")]
        period_end_ms: Option<u64>,
        /// Limits replacing the plan's presets.
        #[command(flatten)]
        limits: LimitArgs,
    },
}

/// Custom limits; each flag replaces one limit.
#[derive(Debug, Clone, Default, Args)]
pub struct LimitArgs {
    /// Projects in the organization
    #[arg(long, value_name = "N")]
    pub projects_max: Option<u32>,
    /// Queues in one project
    #[arg(long, value_name = "N")]
    pub queues_per_project_max: Option<u32>,
    /// Unfinished jobs per project
    #[arg(long, value_name = "N")]
    pub pending_jobs_max: Option<u64>,
    /// Largest payload, in bytes
    #[arg(long, value_name = "BYTES")]
    pub payload_bytes_max: Option<u32>,
    /// Sustained enqueue rate per project, jobs per second
    #[arg(long, value_name = "N")]
    pub enqueue_rate_per_second: Option<u32>,
    /// Enqueues allowed in a burst above the rate
    #[arg(long, value_name = "N")]
    pub enqueue_burst: Option<u32>,
    /// Connections open at once, per organization
    #[arg(long, value_name = "N")]
    pub connections_max: Option<u32>,
    /// Registered workers per project
    #[arg(long, value_name = "N")]
    pub workers_max: Option<u32>,
    /// How long finished jobs are kept, in ms
    #[arg(long, value_name = "MS")]
    pub retention_ms: Option<u64>,
}

impl LimitArgs {
    /// True when any limit flag is set.
    fn any(&self) -> bool {
        self.projects_max.is_some()
            || self.queues_per_project_max.is_some()
            || self.pending_jobs_max.is_some()
            || self.payload_bytes_max.is_some()
            || self.enqueue_rate_per_second.is_some()
            || self.enqueue_burst.is_some()
            || self.connections_max.is_some()
            || self.workers_max.is_some()
            || self.retention_ms.is_some()
    }

    /// `base` with the flags given applied.
    fn apply(&self, base: PlanLimits) -> PlanLimits {
        PlanLimits {
            projects_max: self.projects_max.unwrap_or(base.projects_max),
            queues_per_project_max: self
                .queues_per_project_max
                .unwrap_or(base.queues_per_project_max),
            pending_jobs_max: self.pending_jobs_max.unwrap_or(base.pending_jobs_max),
            payload_bytes_max: self.payload_bytes_max.unwrap_or(base.payload_bytes_max),
            enqueue_rate_per_second: self
                .enqueue_rate_per_second
                .unwrap_or(base.enqueue_rate_per_second),
            enqueue_burst: self.enqueue_burst.unwrap_or(base.enqueue_burst),
            connections_max: self.connections_max.unwrap_or(base.connections_max),
            workers_max: self.workers_max.unwrap_or(base.workers_max),
            retention_ms: self.retention_ms.unwrap_or(base.retention_ms),
        }
    }
}

/// The limits to send: `None` (the plan's presets) without limit flags, except for the
/// custom plan, which keeps the limits in force; with flags, they change the limits of
/// `current` if the plan stays the same, else the new plan's presets.
fn limits_to_send(plan: Plan, limits: &LimitArgs, current: &Subscription) -> Option<PlanLimits> {
    if !limits.any() {
        return (plan == Plan::Custom).then(|| current.limits.clone());
    }
    let base = if plan == current.plan || plan == Plan::Custom {
        current.limits.clone()
    } else {
        plan_limits(plan)
    };
    Some(limits.apply(base))
}

/// Runs one `taskforge subscription` verb.
pub async fn run(
    client: Client,
    command: SubscriptionCommand,
    out: Output,
) -> Result<(), CliError> {
    let error = tenancy::error(LISTING);
    match command {
        SubscriptionCommand::Get { org } => {
            let subscription = client.subscription_get(org).await.map_err(error)?;
            out.print(&subscription, print_subscription)
        }
        SubscriptionCommand::Set {
            org,
            plan,
            status,
            period_start_ms,
            period_end_ms,
            limits,
        } => {
            let current = client
                .subscription_get(org)
                .await
                .map_err(tenancy::error(LISTING))?;
            let plan = Plan::from(plan);
            let request = SubscriptionSet {
                org_id: org,
                plan,
                status: status.map_or(current.status, Into::into),
                period_start_ms: period_start_ms.unwrap_or(current.period_start_ms),
                period_end_ms: period_end_ms.unwrap_or(current.period_end_ms),
                limits: limits_to_send(plan, &limits, &current),
            };
            if request.period_end_ms < request.period_start_ms {
                return Err(CliError::usage(format!(
                    "the period would end ({}) before it starts ({}); check --period-start-ms \
                     and --period-end-ms",
                    output::time(request.period_end_ms),
                    output::time(request.period_start_ms)
                )));
            }
            let subscription = client.subscription_set(request).await.map_err(error)?;
            out.print(&subscription, |subscription| {
                println!("subscription of organization {} set", subscription.org_id);
                print_subscription(subscription);
            })
        }
    }
}

fn print_subscription(subscription: &Subscription) {
    let limits = &subscription.limits;
    output::print_fields(&[
        ("organization", subscription.org_id.to_string()),
        ("plan", tenancy::name(&subscription.plan)),
        ("status", tenancy::name(&subscription.status)),
        ("period start", output::time(subscription.period_start_ms)),
        ("period end", output::time(subscription.period_end_ms)),
        ("projects max", limits.projects_max.to_string()),
        (
            "queues per project max",
            limits.queues_per_project_max.to_string(),
        ),
        ("pending jobs max", limits.pending_jobs_max.to_string()),
        ("payload bytes max", limits.payload_bytes_max.to_string()),
        (
            "enqueue rate",
            format!(
                "{}/s, burst {}",
                limits.enqueue_rate_per_second, limits.enqueue_burst
            ),
        ),
        ("connections max", limits.connections_max.to_string()),
        ("workers max", limits.workers_max.to_string()),
        ("retention", format!("{} ms", limits.retention_ms)),
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use taskforge_protocol::SubscriptionStatus;

    fn on(plan: Plan) -> Subscription {
        Subscription {
            org_id: 2,
            plan,
            status: SubscriptionStatus::Active,
            period_start_ms: 0,
            period_end_ms: 1,
            limits: plan_limits(plan),
        }
    }

    #[test]
    fn limit_flags_change_the_right_base() {
        let none = LimitArgs::default();
        assert_eq!(limits_to_send(Plan::Pro, &none, &on(Plan::Free)), None);
        assert_eq!(
            limits_to_send(Plan::Custom, &none, &on(Plan::Free)),
            Some(plan_limits(Plan::Free))
        );
        let more_projects = LimitArgs {
            projects_max: Some(7),
            ..LimitArgs::default()
        };
        let switched = limits_to_send(Plan::Pro, &more_projects, &on(Plan::Free)).expect("set");
        assert_eq!(switched.projects_max, 7);
        assert_eq!(
            switched.workers_max,
            plan_limits(Plan::Pro).workers_max,
            "a new plan's presets are the base"
        );
        let kept = limits_to_send(Plan::Free, &more_projects, &on(Plan::Free)).expect("set");
        assert_eq!(kept.workers_max, plan_limits(Plan::Free).workers_max);
    }
}
