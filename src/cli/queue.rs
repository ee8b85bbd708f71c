//! `taskforge queue create|get|list|update|delete|pause|resume|purge|stats`.

use clap::{Args, Subcommand};
use taskforge::client::Client;
use taskforge_protocol::limits::{
    BACKOFF_FACTOR_PERCENT_DEFAULT, BACKOFF_INITIAL_MS_DEFAULT, BACKOFF_JITTER_PERCENT_DEFAULT,
    BACKOFF_MAX_MS_DEFAULT, LIST_LIMIT_MAX,
};
use taskforge_protocol::{Backoff, BulkResponse, QueueInfo, QueueSettings, QueueStats};

use super::output::{self, Output};
use super::CliError;

/// Queues per page of `queue list` unless `--limit` says otherwise.
pub const QUEUE_LIST_LIMIT_DEFAULT: u32 = 100;

/// Most PURGE requests one `queue purge` sends (each removes up to `BULK_JOBS_MAX` jobs),
/// so a queue refilled as fast as it is purged cannot keep the command running forever.
pub const PURGE_ROUNDS_MAX: u64 = 100_000;

/// The verbs of `taskforge queue`.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Creates a queue; unset settings take the broker's defaults
    Create {
        /// Queue name ([A-Za-z0-9._:-], at most 128 bytes)
        name: String,
        /// Defaults for the queue's jobs.
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Shows a queue's settings and job counts
    Get {
        /// Queue name
        name: String,
    },
    /// Lists queues in name order, one page at a time
    List {
        /// Start after this queue name (the previous page's last)
        #[arg(long, value_name = "NAME")]
        after: Option<String>,
        /// Queues per page (1 to 1000)
        #[arg(long, default_value_t = QUEUE_LIST_LIMIT_DEFAULT)]
        limit: u32,
    },
    /// Changes a queue's defaults; jobs already enqueued keep theirs
    Update {
        /// Queue name
        name: String,
        /// The settings to change; the others stay.
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Deletes an empty queue (purge it first)
    Delete {
        /// Queue name
        name: String,
    },
    /// Stops deliveries from a queue; enqueues still succeed
    Pause {
        /// Queue name
        name: String,
    },
    /// Resumes deliveries from a queue
    Resume {
        /// Queue name
        name: String,
    },
    /// Removes every job of a queue that is not leased
    Purge {
        /// Queue name
        name: String,
        /// Confirm: purged jobs are gone for good
        #[arg(long)]
        yes: bool,
    },
    /// Shows a queue's job counts by state and the age of its oldest ready job
    Stats {
        /// Queue name
        name: String,
    },
}

/// Queue defaults on create and update.
#[derive(Debug, Clone, Args)]
pub struct SettingsArgs {
    /// Priority of jobs that set none (higher runs first)
    #[arg(long, allow_negative_numbers = true)]
    pub priority: Option<i32>,
    /// Attempts before a job is dead
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Lease of a fetched job, in ms
    #[arg(long, value_name = "MS")]
    pub lease_ms: Option<u32>,
    /// First retry delay, in ms
    #[arg(long, value_name = "MS")]
    pub backoff_initial_ms: Option<u32>,
    /// Growth of the retry delay per attempt, in percent (200 doubles it)
    #[arg(long, value_name = "PERCENT")]
    pub backoff_factor_percent: Option<u32>,
    /// Cap on one retry delay, in ms
    #[arg(long, value_name = "MS")]
    pub backoff_max_ms: Option<u32>,
    /// Random spread of a retry delay, in percent of it
    #[arg(long, value_name = "PERCENT")]
    pub backoff_jitter_percent: Option<u8>,
    /// How long finished jobs are kept, in ms (0: the plan's retention)
    #[arg(long, value_name = "MS")]
    pub retention_ms: Option<u64>,
    /// Most jobs leased at once (0: no limit)
    #[arg(long, value_name = "JOBS")]
    pub in_flight_max: Option<u32>,
    /// Most deliveries per second (0: no limit)
    #[arg(long, value_name = "JOBS")]
    pub deliveries_per_second: Option<u32>,
}

impl SettingsArgs {
    /// True when any backoff flag is set.
    fn touches_backoff(&self) -> bool {
        self.backoff_initial_ms.is_some()
            || self.backoff_factor_percent.is_some()
            || self.backoff_max_ms.is_some()
            || self.backoff_jitter_percent.is_some()
    }

    /// The protocol settings; backoff flags not given keep `base`'s values.
    fn to_settings(&self, base: Backoff) -> QueueSettings {
        let backoff = self.touches_backoff().then(|| Backoff {
            initial_ms: self.backoff_initial_ms.unwrap_or(base.initial_ms),
            factor_percent: self.backoff_factor_percent.unwrap_or(base.factor_percent),
            max_ms: self.backoff_max_ms.unwrap_or(base.max_ms),
            jitter_percent: self.backoff_jitter_percent.unwrap_or(base.jitter_percent),
        });
        QueueSettings {
            priority: self.priority,
            max_attempts: self.max_attempts,
            backoff,
            lease_ms: self.lease_ms,
            retention_ms: self.retention_ms,
            in_flight_max: self.in_flight_max,
            deliveries_per_second: self.deliveries_per_second,
        }
    }
}

/// The broker's default backoff, the base for `create --backoff-...`.
fn default_backoff() -> Backoff {
    Backoff {
        initial_ms: BACKOFF_INITIAL_MS_DEFAULT,
        factor_percent: BACKOFF_FACTOR_PERCENT_DEFAULT,
        max_ms: BACKOFF_MAX_MS_DEFAULT,
        jitter_percent: BACKOFF_JITTER_PERCENT_DEFAULT,
    }
}

/// Runs one `taskforge queue` verb.
pub async fn run(client: Client, command: QueueCommand, out: Output) -> Result<(), CliError> {
    match command {
        QueueCommand::Create { name, settings } => {
            let info = client
                .queue_create(&name, settings.to_settings(default_backoff()))
                .await?;
            out.print(&info, |info| {
                println!("queue {} created", info.name);
                print_queue(info);
            })
        }
        QueueCommand::Get { name } => {
            let info = client.queue_get(&name).await?;
            out.print(&info, print_queue)
        }
        QueueCommand::List { after, limit } => {
            if limit == 0 || limit > LIST_LIMIT_MAX {
                return Err(CliError::usage(format!(
                    "--limit must be between 1 and {LIST_LIMIT_MAX}"
                )));
            }
            let page = client.queue_list(after, limit).await?;
            out.print(&page, |page| {
                let mut header = vec!["NAME", "PAUSED"];
                header.extend(output::COUNT_COLUMNS);
                let mut table = output::table(&header);
                for queue in &page.queues {
                    let mut row = vec![queue.name.clone(), queue.paused.to_string()];
                    row.extend(output::count_cells(&queue.counts));
                    table.add_row(row);
                }
                if page.queues.is_empty() {
                    println!("no queues");
                } else {
                    println!("{table}");
                }
                if let Some(next) = &page.next_after {
                    eprintln!("more queues: add --after {next}");
                }
            })
        }
        QueueCommand::Update { name, settings } => {
            let base = if settings.touches_backoff() {
                client.queue_get(&name).await?.defaults.backoff
            } else {
                default_backoff()
            };
            let info = client
                .queue_update(&name, settings.to_settings(base))
                .await?;
            out.print(&info, |info| {
                println!("queue {} updated", info.name);
                print_queue(info);
            })
        }
        QueueCommand::Delete { name } => {
            client.queue_delete(&name).await?;
            out.print(&serde_json::json!({ "deleted": name }), |_| {
                println!("queue {name} deleted")
            })
        }
        QueueCommand::Pause { name } => {
            let info = client.queue_pause(&name).await?;
            out.print(&info, |info| println!("queue {} paused", info.name))
        }
        QueueCommand::Resume { name } => {
            let info = client.queue_resume(&name).await?;
            out.print(&info, |info| println!("queue {} resumed", info.name))
        }
        QueueCommand::Purge { name, yes } => {
            if !yes {
                return Err(CliError::usage(format!(
                    "purging deletes every job of queue {name} that is not leased, for good; \
                     add --yes to confirm"
                )));
            }
            let total = purge(&client, &name, out).await?;
            out.print(&total, |total| {
                println!("queue {name}: {} jobs purged", total.affected)
            })
        }
        QueueCommand::Stats { name } => {
            let stats = client.queue_stats(&name).await?;
            out.print(&stats, print_stats)
        }
    }
}

/// Repeats QUEUE_PURGE until nothing remains, with a progress bar.
async fn purge(client: &Client, name: &str, out: Output) -> Result<BulkResponse, CliError> {
    let mut total = BulkResponse {
        affected: 0,
        remaining: 0,
    };
    let bar = out.progress(0, &format!("purging {name}"));
    for _ in 0..PURGE_ROUNDS_MAX {
        let step = client.queue_purge(name).await?;
        total.affected += step.affected;
        total.remaining = step.remaining;
        bar.set_length(total.affected + step.remaining);
        bar.set_position(total.affected);
        if step.remaining == 0 {
            bar.finish_and_clear();
            return Ok(total);
        }
        if step.affected == 0 {
            bar.abandon();
            return Err(CliError::failed(format!(
                "{} jobs of queue {name} remain but the last step removed none (they may be \
                 leased); wait for their leases to end and run it again",
                step.remaining
            )));
        }
    }
    bar.abandon();
    Err(CliError::failed(format!(
        "stopped after {PURGE_ROUNDS_MAX} purge steps with {} jobs remaining; is something \
         enqueueing into {name}? pause the producers and run it again",
        total.remaining
    )))
}

fn print_queue(info: &QueueInfo) {
    let defaults = &info.defaults;
    let backoff = &defaults.backoff;
    output::print_fields(&[
        ("name", info.name.clone()),
        ("paused", info.paused.to_string()),
        ("created", output::time(info.created_at_ms)),
        ("priority", defaults.priority.to_string()),
        ("max attempts", defaults.max_attempts.to_string()),
        ("lease", format!("{} ms", defaults.lease_ms)),
        (
            "backoff",
            format!(
                "{} ms × {}% up to {} ms, ±{}% jitter",
                backoff.initial_ms, backoff.factor_percent, backoff.max_ms, backoff.jitter_percent
            ),
        ),
    ]);
    let mut table = output::table(&output::COUNT_COLUMNS);
    table.add_row(output::count_cells(&info.counts));
    println!("{table}");
}

fn print_stats(stats: &QueueStats) {
    output::print_fields(&[
        ("queue", stats.name.clone()),
        ("paused", stats.paused.to_string()),
        (
            "oldest ready",
            output::optional(stats.oldest_ready_age_ms.map(|age| format!("{age} ms ago"))),
        ),
    ]);
    let mut table = output::table(&output::COUNT_COLUMNS);
    table.add_row(output::count_cells(&stats.counts));
    println!("{table}");
}
