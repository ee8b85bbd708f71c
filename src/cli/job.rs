//! `taskforge job enqueue|get|list|cancel`.

use std::io::Read as _;
use std::path::PathBuf;

use clap::Subcommand;
use taskforge::client::Client;
use taskforge_protocol::limits::LIST_LIMIT_MAX;
use taskforge_protocol::{JobId, JobInfo, JobListRequest, JobListResponse, JobState, NewJob};

use super::output::{self, Output};
use super::CliError;

/// Jobs per page of `job list` unless `--limit` says otherwise.
pub const JOB_LIST_LIMIT_DEFAULT: u32 = 100;

/// The verbs of `taskforge job`.
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Enqueues one job
    Enqueue {
        /// Queue to enqueue into (must exist)
        queue: String,
        /// Payload, as text
        #[arg(long, conflicts_with = "payload_file")]
        payload: Option<String>,
        /// Read the payload from this file (`-` for stdin)
        #[arg(long, value_name = "FILE")]
        payload_file: Option<PathBuf>,
        /// Priority (higher runs first); default: the queue's
        #[arg(long, allow_negative_numbers = true)]
        priority: Option<i32>,
        /// Run no earlier than this many ms from now
        #[arg(long, value_name = "MS", conflicts_with = "run_at_ms")]
        delay_ms: Option<u64>,
        /// Run no earlier than this time, in ms since the Unix epoch
        #[arg(long, value_name = "MS")]
        run_at_ms: Option<u64>,
        /// Attempts before the job is dead; default: the queue's
        #[arg(long)]
        max_attempts: Option<u32>,
        /// Lease when fetched, in ms; default: the queue's
        #[arg(long, value_name = "MS")]
        lease_ms: Option<u32>,
        /// Metadata entry (repeatable)
        #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_metadata)]
        metadata: Vec<(String, String)>,
    },
    /// Shows everything about one job
    Get {
        /// Job id (32 hex digits, dashes optional)
        id: JobId,
    },
    /// Lists a queue's jobs in enqueue order, one page at a time
    List {
        /// Queue name
        queue: String,
        /// Only jobs in this state (scheduled, ready, leased, succeeded, dead, cancelled,
        /// expired)
        #[arg(long, value_parser = output::parse_state)]
        state: Option<JobState>,
        /// Start after this job id (the previous page's last)
        #[arg(long, value_name = "ID")]
        after: Option<JobId>,
        /// Jobs per page (1 to 1000)
        #[arg(long, default_value_t = JOB_LIST_LIMIT_DEFAULT)]
        limit: u32,
    },
    /// Cancels a job; a leased one is cancelled when its worker next reports
    Cancel {
        /// Job id
        id: JobId,
    },
}

/// Parses `KEY=VALUE`.
fn parse_metadata(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// Reads the payload from `--payload`, `--payload-file` or nothing, refusing more than
/// `bytes_max` (the session's limit) before sending anything.
fn read_payload(
    payload: Option<String>,
    payload_file: Option<PathBuf>,
    bytes_max: u32,
) -> Result<Vec<u8>, CliError> {
    let bytes = match (payload, payload_file) {
        (Some(text), _) => text.into_bytes(),
        (None, Some(path)) => {
            let limit = u64::from(bytes_max) + 1;
            let mut bytes = Vec::new();
            let read = if path.as_os_str() == "-" {
                std::io::stdin().take(limit).read_to_end(&mut bytes)
            } else {
                std::fs::File::open(&path).and_then(|file| file.take(limit).read_to_end(&mut bytes))
            };
            read.map_err(|error| {
                CliError::usage(format!("cannot read {}: {error}", path.display()))
            })?;
            bytes
        }
        (None, None) => Vec::new(),
    };
    if bytes.len() > bytes_max as usize {
        return Err(CliError::usage(format!(
            "the payload is larger than the broker's limit of {bytes_max} bytes"
        )));
    }
    Ok(bytes)
}

/// Runs one `taskforge job` verb.
pub async fn run(client: Client, command: JobCommand, out: Output) -> Result<(), CliError> {
    match command {
        JobCommand::Enqueue {
            queue,
            payload,
            payload_file,
            priority,
            delay_ms,
            run_at_ms,
            max_attempts,
            lease_ms,
            metadata,
        } => {
            let payload = read_payload(
                payload,
                payload_file,
                client.session_limits().payload_bytes_max,
            )?;
            let job = NewJob {
                queue,
                payload,
                priority,
                run_at_ms,
                delay_ms,
                max_attempts,
                backoff: None,
                lease_ms,
                metadata,
                ..NewJob::default()
            };
            let created = client.enqueue(job).await?;
            out.print(&created, |created| {
                println!("{} {}", created.job_id, created.state)
            })
        }
        JobCommand::Get { id } => {
            let job = client.job_get(id).await?;
            out.print(&job, print_job)
        }
        JobCommand::List {
            queue,
            state,
            after,
            limit,
        } => {
            if limit == 0 || limit > LIST_LIMIT_MAX {
                return Err(CliError::usage(format!(
                    "--limit must be between 1 and {LIST_LIMIT_MAX}"
                )));
            }
            let page = client
                .job_list(JobListRequest {
                    queue,
                    state,
                    after,
                    limit,
                })
                .await?;
            out.print(&page, print_job_page)
        }
        JobCommand::Cancel { id } => {
            let cancelled = client.cancel(id).await?;
            out.print(&cancelled, |cancelled| {
                if cancelled.cancel_requested {
                    println!("job {id} is leased: cancel requested, its worker will be told")
                } else {
                    println!("job {id} {}", cancelled.state)
                }
            })
        }
    }
}

/// Prints a page of job summaries (also used by `dead list`).
pub fn print_job_page(page: &JobListResponse) {
    if page.jobs.is_empty() {
        println!("no jobs");
    } else {
        let mut table = output::table(&[
            "ID",
            "STATE",
            "PRIORITY",
            "ATTEMPTS",
            "CREATED",
            "RUN AT",
            "LAST ERROR",
        ]);
        for job in &page.jobs {
            table.add_row(vec![
                job.job_id.to_string(),
                job.state.to_string(),
                job.priority.to_string(),
                format!("{}/{}", job.attempts, job.max_attempts),
                output::time(job.created_at_ms),
                output::time(job.run_at_ms),
                output::optional(job.last_error.as_deref()),
            ]);
        }
        println!("{table}");
    }
    if let Some(next) = &page.next_after {
        eprintln!("more jobs: add --after {next}");
    }
}

fn print_job(job: &JobInfo) {
    let backoff = &job.backoff;
    let metadata = if job.metadata.is_empty() {
        "-".to_string()
    } else {
        job.metadata
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    output::print_fields(&[
        ("id", job.job_id.to_string()),
        ("queue", job.queue.clone()),
        ("state", job.state.to_string()),
        ("priority", job.priority.to_string()),
        ("attempts", format!("{}/{}", job.attempts, job.max_attempts)),
        ("created", output::time(job.created_at_ms)),
        ("run at", output::time(job.run_at_ms)),
        ("updated", output::time(job.updated_at_ms)),
        ("finished", output::optional_time(job.finished_at_ms)),
        (
            "lease deadline",
            output::optional_time(job.lease_deadline_ms),
        ),
        ("lease", format!("{} ms", job.lease_ms)),
        (
            "backoff",
            format!(
                "{} ms × {}% up to {} ms, ±{}% jitter",
                backoff.initial_ms, backoff.factor_percent, backoff.max_ms, backoff.jitter_percent
            ),
        ),
        ("cancel requested", job.cancel_requested.to_string()),
        ("metadata", metadata),
        ("last error", output::optional(job.last_error.as_deref())),
        ("payload", output::bytes(&job.payload)),
        (
            "result",
            job.result
                .as_deref()
                .map_or_else(|| "-".to_string(), output::bytes),
        ),
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_needs_a_key_and_an_equals_sign() {
        assert_eq!(
            parse_metadata("tenant=a=b"),
            Ok(("tenant".to_string(), "a=b".to_string()))
        );
        assert!(parse_metadata("=x").is_err());
        assert!(parse_metadata("novalue").is_err());
    }

    #[test]
    fn payloads_over_the_limit_are_refused_before_sending() {
        assert_eq!(
            read_payload(Some("abc".into()), None, 3).expect("fits"),
            b"abc"
        );
        assert!(read_payload(Some("abcd".into()), None, 3).is_err());
        assert!(read_payload(None, None, 3).expect("empty").is_empty());
    }
}
