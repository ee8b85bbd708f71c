//! `taskforge schedule create|get|list|update|delete|pause|resume`: cron schedules.
//!
//! A schedule is named on the command line by its id (all digits) or its name (never all
//! digits, the broker makes sure).

use std::io::Read as _;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use taskforge::client::Client;
use taskforge_protocol::limits::{LIST_LIMIT_MAX, SCHEDULE_PAYLOAD_BYTES_MAX};
use taskforge_protocol::{
    MissedRunPolicy, NewJob, OverlapPolicy, ScheduleCreate, ScheduleInfo, ScheduleKey,
    ScheduleList, ScheduleUpdate,
};

use super::output::{self, Output};
use super::CliError;

/// Schedules per page of `schedule list` unless `--limit` says otherwise.
pub const SCHEDULE_LIST_LIMIT_DEFAULT: u32 = 100;

/// The verbs of `taskforge schedule`.
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Creates a cron schedule that enqueues a job into a queue at each fire time
    Create {
        /// Schedule name, unique in the project ([A-Za-z0-9._:-], not all digits)
        name: String,
        /// Cron expression with a seconds field, e.g. "0 30 2 * * *" (02:30:00 daily)
        #[arg(long)]
        cron: String,
        /// IANA time zone the expression is evaluated in, e.g. Europe/Berlin
        #[arg(long = "tz", value_name = "ZONE", default_value = "UTC")]
        time_zone: String,
        /// Queue the jobs go to (must exist)
        #[arg(long)]
        queue: String,
        /// What a fire time does while the previous run's job is still live
        #[arg(long, value_enum, default_value_t = Overlap::Allow)]
        overlap: Overlap,
        /// What start-up does about fire times missed while the broker was down
        #[arg(long, value_enum, default_value_t = MissedRuns::RunOnce)]
        missed_runs: MissedRuns,
        /// Create it paused
        #[arg(long)]
        paused: bool,
        /// The job it enqueues.
        #[command(flatten)]
        template: TemplateArgs,
    },
    /// Shows a schedule
    Get {
        /// Schedule id or name
        schedule: String,
    },
    /// Lists schedules in id order, one page at a time
    List {
        /// Only schedules that enqueue into this queue
        #[arg(long)]
        queue: Option<String>,
        /// Start after this schedule id (the previous page's last)
        #[arg(long, value_name = "ID")]
        after: Option<u64>,
        /// Schedules per page (1 to 1000)
        #[arg(long, default_value_t = SCHEDULE_LIST_LIMIT_DEFAULT)]
        limit: u32,
    },
    /// Changes a schedule; unset flags keep their values. A new --cron or --tz computes
    /// the next fire time again from now
    Update {
        /// Schedule id or name
        schedule: String,
        /// New name
        #[arg(long)]
        name: Option<String>,
        /// New cron expression (with a seconds field)
        #[arg(long)]
        cron: Option<String>,
        /// New IANA time zone
        #[arg(long = "tz", value_name = "ZONE")]
        time_zone: Option<String>,
        /// New queue (the template moves with it)
        #[arg(long)]
        queue: Option<String>,
        /// New overlap policy
        #[arg(long, value_enum)]
        overlap: Option<Overlap>,
        /// New missed-run policy
        #[arg(long, value_enum)]
        missed_runs: Option<MissedRuns>,
        /// Template fields to change; the others stay.
        #[command(flatten)]
        template: TemplateArgs,
    },
    /// Deletes a schedule; jobs it already enqueued stay
    Delete {
        /// Schedule id or name
        schedule: String,
    },
    /// Stops a schedule from firing
    Pause {
        /// Schedule id or name
        schedule: String,
    },
    /// Lets a paused schedule fire again, from its next fire time after now
    Resume {
        /// Schedule id or name
        schedule: String,
    },
}

/// `--overlap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Overlap {
    /// Skip a fire time while the previous run's job is not finished
    Skip,
    /// Enqueue at every fire time
    Allow,
}

impl From<Overlap> for OverlapPolicy {
    fn from(overlap: Overlap) -> OverlapPolicy {
        match overlap {
            Overlap::Skip => OverlapPolicy::Skip,
            Overlap::Allow => OverlapPolicy::Allow,
        }
    }
}

/// `--missed-runs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MissedRuns {
    /// Enqueue one job at start-up for fire times missed while down
    RunOnce,
    /// Skip missed fire times and wait for the next one
    Skip,
}

impl From<MissedRuns> for MissedRunPolicy {
    fn from(missed: MissedRuns) -> MissedRunPolicy {
        match missed {
            MissedRuns::RunOnce => MissedRunPolicy::RunOnce,
            MissedRuns::Skip => MissedRunPolicy::Skip,
        }
    }
}

/// The job template's fields.
#[derive(Debug, Clone, Args)]
pub struct TemplateArgs {
    /// Payload of each job, as text
    #[arg(long, conflicts_with = "payload_file")]
    pub payload: Option<String>,
    /// Read the payload from this file (`-` for stdin)
    #[arg(long, value_name = "FILE")]
    pub payload_file: Option<PathBuf>,
    /// Priority of each job (higher runs first); default: the queue's
    #[arg(long, allow_negative_numbers = true)]
    pub priority: Option<i32>,
    /// Attempts before a job is dead; default: the queue's
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Lease when fetched, in ms; default: the queue's
    #[arg(long, value_name = "MS")]
    pub lease_ms: Option<u32>,
    /// Metadata entry of each job (repeatable; on update, replaces all entries)
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_metadata)]
    pub metadata: Vec<(String, String)>,
}

impl TemplateArgs {
    /// True when any template flag is set.
    fn is_set(&self) -> bool {
        self.payload.is_some()
            || self.payload_file.is_some()
            || self.priority.is_some()
            || self.max_attempts.is_some()
            || self.lease_ms.is_some()
            || !self.metadata.is_empty()
    }

    /// `base` with the flags that are set applied.
    fn apply(self, mut base: NewJob) -> Result<NewJob, CliError> {
        if let Some(payload) = read_payload(self.payload, self.payload_file)? {
            base.payload = payload;
        }
        if self.priority.is_some() {
            base.priority = self.priority;
        }
        if self.max_attempts.is_some() {
            base.max_attempts = self.max_attempts;
        }
        if self.lease_ms.is_some() {
            base.lease_ms = self.lease_ms;
        }
        if !self.metadata.is_empty() {
            base.metadata = self.metadata;
        }
        Ok(base)
    }
}

/// Parses `KEY=VALUE`.
fn parse_metadata(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// Reads the payload from `--payload` or `--payload-file`, refusing more than a template
/// may hold before sending anything; `None` when neither is given.
fn read_payload(
    payload: Option<String>,
    payload_file: Option<PathBuf>,
) -> Result<Option<Vec<u8>>, CliError> {
    let bytes = match (payload, payload_file) {
        (Some(text), _) => text.into_bytes(),
        (None, Some(path)) => {
            let limit = u64::from(SCHEDULE_PAYLOAD_BYTES_MAX) + 1;
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
        (None, None) => return Ok(None),
    };
    if bytes.len() > SCHEDULE_PAYLOAD_BYTES_MAX as usize {
        return Err(CliError::usage(format!(
            "the payload is larger than a schedule's limit of {SCHEDULE_PAYLOAD_BYTES_MAX} bytes"
        )));
    }
    Ok(Some(bytes))
}

/// A schedule named on the command line: all digits is an id, anything else a name.
pub fn schedule_key(text: &str) -> ScheduleKey {
    match text.parse::<u64>() {
        Ok(id) if text.bytes().all(|byte| byte.is_ascii_digit()) => ScheduleKey::Id(id),
        _ => ScheduleKey::Name(text.to_string()),
    }
}

/// Runs one `taskforge schedule` verb.
pub async fn run(client: Client, command: ScheduleCommand, out: Output) -> Result<(), CliError> {
    match command {
        ScheduleCommand::Create {
            name,
            cron,
            time_zone,
            queue,
            overlap,
            missed_runs,
            paused,
            template,
        } => {
            let template = template.apply(NewJob {
                queue: queue.clone(),
                ..NewJob::default()
            })?;
            let info = client
                .schedule_create(ScheduleCreate {
                    name,
                    cron,
                    time_zone,
                    queue,
                    template,
                    overlap: overlap.into(),
                    missed_runs: missed_runs.into(),
                    paused,
                })
                .await?;
            out.print(&info, |info| {
                println!("schedule {} created (id {})", info.name, info.schedule_id);
                print_schedule(info);
            })
        }
        ScheduleCommand::Get { schedule } => {
            let info = client.schedule_get(schedule_key(&schedule)).await?;
            out.print(&info, print_schedule)
        }
        ScheduleCommand::List {
            queue,
            after,
            limit,
        } => {
            if limit == 0 || limit > LIST_LIMIT_MAX {
                return Err(CliError::usage(format!(
                    "--limit must be between 1 and {LIST_LIMIT_MAX}"
                )));
            }
            let page = client.schedule_list(queue, after, limit).await?;
            out.print(&page, print_page)
        }
        ScheduleCommand::Update {
            schedule,
            name,
            cron,
            time_zone,
            queue,
            overlap,
            missed_runs,
            template,
        } => {
            let schedule = schedule_key(&schedule);
            let template = if template.is_set() {
                let current = client.schedule_get(schedule.clone()).await?;
                let mut base = current.template;
                if let Some(queue) = &queue {
                    base.queue.clone_from(queue);
                }
                Some(template.apply(base)?)
            } else {
                None
            };
            let info = client
                .schedule_update(ScheduleUpdate {
                    schedule,
                    name,
                    cron,
                    time_zone,
                    queue,
                    template,
                    overlap: overlap.map(Into::into),
                    missed_runs: missed_runs.map(Into::into),
                })
                .await?;
            out.print(&info, |info| {
                println!("schedule {} updated", info.name);
                print_schedule(info);
            })
        }
        ScheduleCommand::Delete { schedule } => {
            client.schedule_delete(schedule_key(&schedule)).await?;
            out.print(&serde_json::json!({ "deleted": schedule }), |_| {
                println!("schedule {schedule} deleted")
            })
        }
        ScheduleCommand::Pause { schedule } => {
            let info = client.schedule_pause(schedule_key(&schedule)).await?;
            out.print(&info, |info| println!("schedule {} paused", info.name))
        }
        ScheduleCommand::Resume { schedule } => {
            let info = client.schedule_resume(schedule_key(&schedule)).await?;
            out.print(&info, |info| {
                println!(
                    "schedule {} resumed; next fire {}",
                    info.name,
                    output::optional_time(info.next_fire_at_ms)
                )
            })
        }
    }
}

fn print_page(page: &ScheduleList) {
    let mut table = output::table(&[
        "ID",
        "NAME",
        "CRON",
        "ZONE",
        "QUEUE",
        "PAUSED",
        "NEXT FIRE",
        "FIRED",
        "SKIPPED",
    ]);
    for info in &page.schedules {
        table.add_row(vec![
            info.schedule_id.to_string(),
            info.name.clone(),
            info.cron.clone(),
            info.time_zone.clone(),
            info.queue.clone(),
            info.paused.to_string(),
            output::optional_time(info.next_fire_at_ms),
            info.fired_count.to_string(),
            info.skipped_count.to_string(),
        ]);
    }
    if page.schedules.is_empty() {
        println!("no schedules");
    } else {
        println!("{table}");
    }
    if let Some(next) = page.next_after {
        eprintln!("more schedules: add --after {next}");
    }
}

fn print_schedule(info: &ScheduleInfo) {
    let template = &info.template;
    let metadata: Vec<String> = template
        .metadata
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    output::print_fields(&[
        ("id", info.schedule_id.to_string()),
        ("name", info.name.clone()),
        ("cron", info.cron.clone()),
        ("time zone", info.time_zone.clone()),
        ("queue", info.queue.clone()),
        ("overlap", info.overlap.name().to_string()),
        ("missed runs", info.missed_runs.name().to_string()),
        ("paused", info.paused.to_string()),
        ("next fire", output::optional_time(info.next_fire_at_ms)),
        ("last fired", output::optional_time(info.last_fired_at_ms)),
        ("last job", output::optional(info.last_job_id)),
        ("fired", info.fired_count.to_string()),
        ("skipped", info.skipped_count.to_string()),
        (
            "last skipped",
            output::optional_time(info.last_skipped_at_ms),
        ),
        (
            "last skip reason",
            output::optional(info.last_skip_reason.as_deref()),
        ),
        ("created", output::time(info.created_at_ms)),
        ("updated", output::time(info.updated_at_ms)),
        ("payload", output::bytes(&template.payload)),
        ("priority", output::optional(template.priority)),
        ("max attempts", output::optional(template.max_attempts)),
        (
            "lease",
            output::optional(template.lease_ms.map(|ms| format!("{ms} ms"))),
        ),
        (
            "metadata",
            if metadata.is_empty() {
                "-".to_string()
            } else {
                metadata.join(", ")
            },
        ),
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_name_an_id_and_anything_else_a_name() {
        assert_eq!(schedule_key("42"), ScheduleKey::Id(42));
        assert_eq!(
            schedule_key("nightly"),
            ScheduleKey::Name("nightly".to_string())
        );
        assert_eq!(schedule_key("+42"), ScheduleKey::Name("+42".to_string()));
        assert_eq!(
            schedule_key("2024-cleanup"),
            ScheduleKey::Name("2024-cleanup".to_string())
        );
    }

    #[test]
    fn template_flags_change_only_what_they_set() {
        let base = NewJob {
            queue: "reports".into(),
            payload: b"old".to_vec(),
            priority: Some(3),
            ..NewJob::default()
        };
        let args = TemplateArgs {
            payload: Some("new".into()),
            payload_file: None,
            priority: None,
            max_attempts: Some(2),
            lease_ms: None,
            metadata: Vec::new(),
        };
        assert!(args.is_set());
        let applied = args.apply(base).expect("apply");
        assert_eq!(applied.payload, b"new");
        assert_eq!(applied.priority, Some(3));
        assert_eq!(applied.max_attempts, Some(2));
    }
}
