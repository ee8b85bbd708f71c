//! `taskforge job enqueue|get|list|cancel|logs|executions|results`.

use std::io::Read as _;
use std::path::PathBuf;

use clap::Subcommand;
use taskforge::client::Client;
use taskforge_protocol::limits::{LIST_LIMIT_MAX, LOG_TAIL_LINES_MAX};
use taskforge_protocol::{
    JobId, JobInfo, JobListRequest, JobListResponse, JobState, LogTailRequest, NewJob,
    ParentFailure, ParentRef, UniqueKey, UniqueUntil,
};

use super::execution;
use super::output::{self, Output};
use super::CliError;

/// Jobs per page of `job list` unless `--limit` says otherwise.
pub const JOB_LIST_LIMIT_DEFAULT: u32 = 100;

/// Lines `job logs` shows unless `--lines` says otherwise.
pub const JOB_LOG_LINES_DEFAULT: u32 = 100;

/// Executions per page of `job executions` unless `--limit` says otherwise.
pub const EXECUTION_LIST_LIMIT_DEFAULT: u32 = 100;

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
        /// A job that must succeed first (repeatable)
        #[arg(long = "depends-on", value_name = "ID")]
        depends_on: Vec<JobId>,
        /// Run even when a parent ends dead, cancelled or expired (default: cancel)
        #[arg(long)]
        run_if_parent_fails: bool,
        /// Unique key: an equal key in the queue returns the existing job
        #[arg(long, value_name = "KEY")]
        unique_key: Option<String>,
        /// How long the unique key holds: until the job `started` or `finished`
        #[arg(long, value_name = "STATE", requires = "unique_key", value_parser = parse_unique_until)]
        unique_until: Option<UniqueUntil>,
        /// The unique key also holds this long after enqueue, in ms
        #[arg(long, value_name = "MS", requires = "unique_key")]
        unique_window_ms: Option<u64>,
        /// Expire unless started within this many ms
        #[arg(long, value_name = "MS")]
        ttl_ms: Option<u64>,
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
    /// Shows the log lines a job's handler wrote (its latest execution unless
    /// --execution); with --follow, keeps printing new ones until the execution ends
    /// (with --json: one JSON line per log line)
    Logs {
        /// Job id
        id: JobId,
        /// Execution number (1 for the first delivery; `job executions` lists them)
        #[arg(long, value_name = "N")]
        execution: Option<u32>,
        /// Show the last N lines (1 to 1000)
        #[arg(
            long,
            value_name = "N",
            default_value_t = JOB_LOG_LINES_DEFAULT,
            value_parser = clap::value_parser!(u32).range(1..=i64::from(LOG_TAIL_LINES_MAX))
        )]
        lines: u32,
        /// Keep printing lines as they arrive until the execution ends
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Lists a job's executions (every delivery: worker, outcome, duration, error)
    Executions {
        /// Job id
        id: JobId,
        /// Start after this execution number (the previous page's last)
        #[arg(long, value_name = "N")]
        after: Option<u32>,
        /// Executions per page (1 to 1000)
        #[arg(long, default_value_t = EXECUTION_LIST_LIMIT_DEFAULT)]
        limit: u32,
    },
    /// Shows a job's result and its parents' results
    Results {
        /// Job id
        id: JobId,
    },
}

/// Parses `KEY=VALUE`.
fn parse_unique_until(text: &str) -> Result<UniqueUntil, String> {
    match text {
        "started" => Ok(UniqueUntil::Started),
        "finished" => Ok(UniqueUntil::Finished),
        _ => Err(format!("{text:?} is not `started` or `finished`")),
    }
}

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
            depends_on,
            run_if_parent_fails,
            unique_key,
            unique_until,
            unique_window_ms,
            ttl_ms,
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
                depends_on: depends_on.into_iter().map(ParentRef::Job).collect(),
                on_parent_failure: if run_if_parent_fails {
                    ParentFailure::Run
                } else {
                    ParentFailure::Cancel
                },
                unique: unique_key.map(|key| UniqueKey {
                    key,
                    // A key alone holds until the job finishes.
                    until: unique_until
                        .or(unique_window_ms.is_none().then_some(UniqueUntil::Finished)),
                    window_ms: unique_window_ms,
                }),
                ttl_ms,
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
            let page = client
                .job_list(JobListRequest {
                    queue,
                    state,
                    after,
                    limit: list_limit(limit)?,
                })
                .await?;
            out.print(&page, print_job_page)
        }
        JobCommand::Logs {
            id,
            execution,
            lines,
            follow,
        } => logs(&client, id, execution, lines, follow, out).await,
        JobCommand::Executions { id, after, limit } => {
            let page = client.execution_list(id, after, list_limit(limit)?).await?;
            out.print(&page, |page| execution::print_executions(id, page))
        }
        JobCommand::Results { id } => {
            let results = client.job_results(id).await?;
            out.print(&results, execution::print_results)
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

/// Checks a `--limit`.
fn list_limit(limit: u32) -> Result<u32, CliError> {
    if limit == 0 || limit > LIST_LIMIT_MAX {
        return Err(CliError::usage(format!(
            "--limit must be between 1 and {LIST_LIMIT_MAX}"
        )));
    }
    Ok(limit)
}

/// `job logs`: the last lines, then with `follow` every new one until the execution ends.
async fn logs(
    client: &Client,
    job_id: JobId,
    execution: Option<u32>,
    lines: u32,
    follow: bool,
    out: Output,
) -> Result<(), CliError> {
    let first = client
        .log_tail(LogTailRequest {
            job_id,
            execution,
            lines,
            after_seq: None,
            wait_ms: 0,
        })
        .await?;
    if !follow {
        return out.print(&first, |tail| {
            if tail.execution == 0 {
                eprintln!("job {job_id} has not been delivered yet");
                return;
            }
            for line in &tail.lines {
                println!("{}", execution::log_line_text(line));
            }
            if tail.lines.is_empty() {
                eprintln!("execution {} has no log lines", tail.execution);
            }
        });
    }
    let print = |line: &taskforge_protocol::LogLine| -> Result<(), CliError> {
        if out.json {
            let text = serde_json::to_string(line)
                .map_err(|error| CliError::failed(format!("cannot encode JSON: {error}")))?;
            println!("{text}");
        } else {
            println!("{}", execution::log_line_text(line));
        }
        Ok(())
    };
    if first.execution == 0 {
        eprintln!("job {job_id} has not been delivered yet; nothing to follow");
        return Ok(());
    }
    for line in &first.lines {
        print(line)?;
    }
    let number = first.execution;
    if first.open {
        eprintln!("following execution {number} (Ctrl-C to stop)");
    }
    let tail = |request: LogTailRequest| async move {
        client.log_tail(request).await.map_err(CliError::from)
    };
    execution::follow(job_id, first, tail, print).await?;
    eprintln!("execution {number} has ended");
    Ok(())
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
    output::print_fields(&job_fields(job));
}

/// What `job get` shows, field by field.
/// Job ids on one line, or `-`.
fn ids(job_ids: &[JobId]) -> String {
    if job_ids.is_empty() {
        return "-".to_string();
    }
    job_ids
        .iter()
        .map(JobId::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn job_fields(job: &JobInfo) -> Vec<(&'static str, String)> {
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
    let mut fields = vec![
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
        ("executions", job.executions.to_string()),
        (
            "latest execution",
            job.latest_execution
                .as_deref()
                .map_or_else(|| "-".to_string(), execution::execution_summary),
        ),
        (
            "progress",
            job.progress
                .as_ref()
                .map_or_else(|| "-".to_string(), execution::progress_summary),
        ),
        ("parents", ids(&job.parents)),
        (
            "waiting on",
            format!(
                "{} parents (if one fails: {})",
                job.parents_remaining,
                match job.on_parent_failure {
                    ParentFailure::Cancel => "cancel",
                    ParentFailure::Run => "run",
                }
            ),
        ),
        ("children", ids(&job.children)),
        ("unique key", output::optional(job.unique_key.as_deref())),
        ("expires", output::optional_time(job.expires_at_ms)),
        ("payload", output::bytes(&job.payload)),
        (
            "result",
            job.result
                .as_deref()
                .map_or_else(|| "-".to_string(), output::bytes),
        ),
    ];
    let details = job
        .latest_execution
        .as_ref()
        .and_then(|latest| latest.error_details.as_deref());
    if let Some(details) = details {
        let width = fields.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
        fields.push(("error details", execution::indented(details, width)));
    }
    fields
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use taskforge_protocol::{ExecutionInfo, ExecutionOutcome, ProgressInfo};

    use super::*;

    /// `taskforge job` alone, to parse its verbs.
    #[derive(Debug, Parser)]
    struct JobCli {
        #[command(subcommand)]
        command: JobCommand,
    }

    fn parse(args: &[&str]) -> Result<JobCommand, clap::Error> {
        JobCli::try_parse_from(std::iter::once("job").chain(args.iter().copied()))
            .map(|cli| cli.command)
    }

    const ID: &str = "0123456789abcdef0123456789abcdef";

    /// A job that never ran.
    fn sample_job() -> JobInfo {
        JobInfo {
            job_id: ID.parse().expect("an id"),
            queue: "emails".to_string(),
            state: JobState::Ready,
            priority: 0,
            payload: b"hi".to_vec(),
            metadata: Vec::new(),
            attempts: 0,
            max_attempts: 3,
            backoff: taskforge_protocol::Backoff {
                initial_ms: 1,
                factor_percent: 200,
                max_ms: 10,
                jitter_percent: 0,
            },
            lease_ms: 30_000,
            created_at_ms: 0,
            run_at_ms: 0,
            updated_at_ms: 0,
            finished_at_ms: None,
            lease_deadline_ms: None,
            cancel_requested: false,
            last_error: None,
            result: None,
            executions: 0,
            latest_execution: None,
            progress: None,
            parents: Vec::new(),
            parents_remaining: 0,
            on_parent_failure: taskforge_protocol::ParentFailure::Cancel,
            children: Vec::new(),
            unique_key: None,
            expires_at_ms: None,
        }
    }

    #[test]
    fn logs_executions_and_results_parse_their_flags() {
        let JobCommand::Logs {
            id,
            execution,
            lines,
            follow,
        } = parse(&["logs", ID, "--execution", "2", "--lines", "5", "-f"]).expect("parses")
        else {
            panic!("not logs")
        };
        assert_eq!(id.to_string().replace('-', ""), ID);
        assert_eq!((execution, lines, follow), (Some(2), 5, true));
        let JobCommand::Logs {
            execution,
            lines,
            follow,
            ..
        } = parse(&["logs", ID]).expect("parses")
        else {
            panic!("not logs")
        };
        assert_eq!(
            (execution, lines, follow),
            (None, JOB_LOG_LINES_DEFAULT, false)
        );
        assert!(parse(&["logs", ID, "--lines", "0"]).is_err());
        assert!(parse(&["logs", ID, "--lines", "1001"]).is_err());
        let JobCommand::Executions { after, limit, .. } =
            parse(&["executions", ID, "--after", "3"]).expect("parses")
        else {
            panic!("not executions")
        };
        assert_eq!((after, limit), (Some(3), EXECUTION_LIST_LIMIT_DEFAULT));
        assert!(matches!(
            parse(&["results", ID]).expect("parses"),
            JobCommand::Results { .. }
        ));
    }

    #[test]
    fn job_get_shows_executions_progress_and_error_details() {
        let mut job = sample_job();
        let fields = job_fields(&job);
        let field = |fields: &[(&str, String)], name: &str| {
            fields
                .iter()
                .find(|(field, _)| *field == name)
                .map(|(_, value)| value.clone())
        };
        assert_eq!(field(&fields, "executions").as_deref(), Some("0"));
        assert_eq!(field(&fields, "latest execution").as_deref(), Some("-"));
        assert_eq!(field(&fields, "progress").as_deref(), Some("-"));
        assert_eq!(field(&fields, "error details"), None);

        job.executions = 2;
        job.latest_execution = Some(Box::new(ExecutionInfo {
            execution: 2,
            attempt: 2,
            worker_id: Some(8),
            lease_id: 4,
            leased_at_ms: 0,
            lease_deadline_ms: 0,
            finished_at_ms: Some(50),
            outcome: Some(ExecutionOutcome::Failed),
            error: Some("boom".to_string()),
            error_details: Some("line 1\nline 2".to_string()),
            duration_ms: Some(50),
        }));
        job.progress = Some(ProgressInfo {
            execution: 2,
            percent: 80,
            message: "almost".to_string(),
            updated_at_ms: 0,
        });
        let fields = job_fields(&job);
        assert_eq!(field(&fields, "executions").as_deref(), Some("2"));
        assert_eq!(
            field(&fields, "latest execution").as_deref(),
            Some("#2 (attempt 2) on worker 8: failed after 50 ms: boom")
        );
        assert_eq!(
            field(&fields, "progress").as_deref(),
            Some("80% almost (execution 2, 1970-01-01 00:00:00.000Z)")
        );
        let details = field(&fields, "error details").expect("details");
        assert!(details.starts_with("line 1\n "), "{details:?}");
        assert!(details.ends_with("line 2"));
    }

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
