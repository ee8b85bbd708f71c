//! `taskforge dead list|retry|discard`: the dead-letter jobs of a queue.

use clap::{ArgGroup, Subcommand};
use taskforge::client::Client;
use taskforge_protocol::limits::{BULK_JOBS_MAX, LIST_LIMIT_MAX};
use taskforge_protocol::{BulkResponse, DeadListRequest, JobId};

use super::job::print_job_page;
use super::output::Output;
use super::CliError;

/// Dead jobs per page of `dead list` unless `--limit` says otherwise.
pub const DEAD_LIST_LIMIT_DEFAULT: u32 = 100;

/// Most requests one `--all` run sends (each changes up to `BULK_JOBS_MAX` jobs: a billion
/// jobs in all), so a queue that keeps producing dead jobs cannot keep it running forever.
pub const BULK_ROUNDS_MAX: u64 = 100_000;

/// The verbs of `taskforge dead`.
#[derive(Debug, Subcommand)]
pub enum DeadCommand {
    /// Lists a queue's dead jobs, one page at a time
    List {
        /// Queue name
        queue: String,
        /// Start after this job id (the previous page's last)
        #[arg(long, value_name = "ID")]
        after: Option<JobId>,
        /// Jobs per page (1 to 1000)
        #[arg(long, default_value_t = DEAD_LIST_LIMIT_DEFAULT)]
        limit: u32,
    },
    /// Makes dead jobs ready again with fresh attempts: the ids given, or --all
    #[command(group(ArgGroup::new("which").required(true).args(["ids", "all"])))]
    Retry {
        /// Queue name
        queue: String,
        /// Dead job ids
        ids: Vec<JobId>,
        /// Every dead job of the queue
        #[arg(long)]
        all: bool,
    },
    /// Deletes dead jobs for good: the ids given, or --all
    #[command(group(ArgGroup::new("which").required(true).args(["ids", "all"])))]
    Discard {
        /// Queue name
        queue: String,
        /// Dead job ids
        ids: Vec<JobId>,
        /// Every dead job of the queue
        #[arg(long)]
        all: bool,
        /// Confirm: discarded jobs are gone for good
        #[arg(long)]
        yes: bool,
    },
}

/// Retry or discard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bulk {
    /// DEAD_RETRY.
    Retry,
    /// DEAD_DISCARD.
    Discard,
}

impl Bulk {
    fn past_tense(self) -> &'static str {
        match self {
            Bulk::Retry => "retried",
            Bulk::Discard => "discarded",
        }
    }

    async fn send(
        self,
        client: &Client,
        queue: &str,
        ids: Vec<JobId>,
    ) -> Result<BulkResponse, CliError> {
        let step = match self {
            Bulk::Retry => client.dead_retry(queue, ids).await?,
            Bulk::Discard => client.dead_discard(queue, ids).await?,
        };
        Ok(step)
    }
}

/// Runs one `taskforge dead` verb.
pub async fn run(client: Client, command: DeadCommand, out: Output) -> Result<(), CliError> {
    match command {
        DeadCommand::List {
            queue,
            after,
            limit,
        } => {
            if limit == 0 || limit > LIST_LIMIT_MAX {
                return Err(CliError::usage(format!(
                    "--limit must be between 1 and {LIST_LIMIT_MAX}"
                )));
            }
            let page = client
                .dead_list(DeadListRequest {
                    queue,
                    after,
                    limit,
                })
                .await?;
            out.print(&page, print_job_page)
        }
        DeadCommand::Retry { queue, ids, all } => {
            let total = bulk(&client, Bulk::Retry, &queue, ids, all, out).await?;
            out.print(&total, |total| {
                println!("queue {queue}: {} dead jobs retried", total.affected)
            })
        }
        DeadCommand::Discard {
            queue,
            ids,
            all,
            yes,
        } => {
            if !yes {
                return Err(CliError::usage(
                    "discarding deletes dead jobs for good; add --yes to confirm",
                ));
            }
            let total = bulk(&client, Bulk::Discard, &queue, ids, all, out).await?;
            out.print(&total, |total| {
                println!("queue {queue}: {} dead jobs discarded", total.affected)
            })
        }
    }
}

/// Sends `ids` in chunks of `BULK_JOBS_MAX`, or with `all` repeats the request while the
/// broker reports dead jobs remaining, with a progress bar.
async fn bulk(
    client: &Client,
    kind: Bulk,
    queue: &str,
    ids: Vec<JobId>,
    all: bool,
    out: Output,
) -> Result<BulkResponse, CliError> {
    let mut total = BulkResponse {
        affected: 0,
        remaining: 0,
    };
    if !all {
        for chunk in ids.chunks(BULK_JOBS_MAX as usize) {
            let step = kind.send(client, queue, chunk.to_vec()).await?;
            total.affected += step.affected;
        }
        return Ok(total);
    }
    let bar = out.progress(0, &format!("{} {queue}", kind.past_tense()));
    for _ in 0..BULK_ROUNDS_MAX {
        let step = kind.send(client, queue, Vec::new()).await?;
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
                "{} dead jobs of queue {queue} remain but the last step {} none; run it again",
                step.remaining,
                kind.past_tense()
            )));
        }
    }
    bar.abandon();
    Err(CliError::failed(format!(
        "stopped after {BULK_ROUNDS_MAX} steps with {} dead jobs remaining in {queue}; are jobs \
         dying as fast as they are {}? run it again",
        total.remaining,
        kind.past_tense()
    )))
}
