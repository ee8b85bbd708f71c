//! `taskforge worker list|get|quiet|terminate|assign|assignments`: the project's worker
//! processes and the queues they serve.

use clap::Subcommand;
use taskforge::client::{Client, ClientError};
use taskforge_protocol::limits::{ASSIGNMENT_WEIGHT_MAX, FETCH_QUEUES_MAX, LIST_LIMIT_MAX};
use taskforge_protocol::{
    Assignment, AssignmentList, AssignmentListRequest, ErrorCode, QueueAssignment, WorkerId,
    WorkerInfo, WorkerList, WorkerState,
};

use super::output::{self, Output};
use super::CliError;

/// Workers (or, for `assignments`, workers' assignments) per page unless `--limit` says
/// otherwise.
pub const WORKER_LIST_LIMIT_DEFAULT: u32 = 100;

/// Every worker state, in life order.
pub const WORKER_STATES: [WorkerState; 5] = [
    WorkerState::Active,
    WorkerState::Quiet,
    WorkerState::Terminating,
    WorkerState::Lost,
    WorkerState::Stopped,
];

/// The verbs of `taskforge worker`.
#[derive(Debug, Subcommand)]
pub enum WorkerCommand {
    /// Lists the project's workers in id order, one page at a time
    List {
        /// Only workers in this state (active, quiet, terminating, lost, stopped)
        #[arg(long, value_parser = parse_worker_state)]
        state: Option<WorkerState>,
        /// Start after this worker id (the previous page's last)
        #[arg(long, value_name = "ID")]
        after: Option<WorkerId>,
        /// Workers per page (1 to 1000)
        #[arg(long, default_value_t = WORKER_LIST_LIMIT_DEFAULT)]
        limit: u32,
    },
    /// Shows a worker: identity, state, jobs, heartbeats and assigned queues
    Get {
        /// Worker id
        id: WorkerId,
    },
    /// Tells a worker to stop fetching; it finishes the jobs it holds and keeps running
    Quiet {
        /// Worker id
        id: WorkerId,
    },
    /// Tells a worker to stop fetching, finish or fail its jobs within a grace period, and
    /// exit
    Terminate {
        /// Worker id
        id: WorkerId,
        /// How long it has, with a unit: 500ms, 30s, 5m, 1h [default: the broker's, 30s]
        #[arg(long, value_name = "DURATION", value_parser = parse_grace)]
        grace: Option<u32>,
    },
    /// Replaces a worker's queues; it switches at its next heartbeat
    #[command(
        after_help = "Order matters: with equal weights the worker takes from the \
                            first queue that has a job. Different weights make each fetch \
                            try the queues in a random order where a queue comes first with \
                            probability proportional to its weight. A queue name that ends \
                            in :DIGITS needs an explicit weight (jobs:2:1)."
    )]
    Assign {
        /// Worker id
        id: WorkerId,
        /// A queue to serve, in preference order, with an optional weight (1 to 1000,
        /// default 1); repeat the flag
        #[arg(
            long = "queue",
            value_name = "NAME[:WEIGHT]",
            value_parser = parse_queue_weight,
            required_unless_present = "inactive"
        )]
        queues: Vec<(String, Option<u32>)>,
        /// A queue to keep assigned without serving it (one of the --queue ones, or another
        /// one appended); repeat the flag
        #[arg(long = "inactive", value_name = "NAME[:WEIGHT]", value_parser = parse_queue_weight)]
        inactive: Vec<(String, Option<u32>)>,
    },
    /// Lists queue-worker assignments: of one queue, of one worker, or all
    Assignments {
        /// Only assignments to this queue
        #[arg(long, value_name = "NAME")]
        queue: Option<String>,
        /// Only this worker's assignments
        #[arg(long, value_name = "ID")]
        worker: Option<WorkerId>,
        /// Start after this worker id (the previous page's last)
        #[arg(long, value_name = "ID")]
        after: Option<WorkerId>,
        /// Workers per page (1 to 1000)
        #[arg(long, default_value_t = WORKER_LIST_LIMIT_DEFAULT)]
        limit: u32,
    },
}

/// Parses a worker state name.
pub fn parse_worker_state(text: &str) -> Result<WorkerState, String> {
    WORKER_STATES
        .iter()
        .copied()
        .find(|state| state.name() == text)
        .ok_or_else(|| {
            let names: Vec<&str> = WORKER_STATES.iter().map(|state| state.name()).collect();
            format!("unknown worker state {text:?}; one of {}", names.join(", "))
        })
}

/// Parses `NAME[:WEIGHT]`. Queue names may contain `:`, so only a last part that is all
/// digits is a weight.
pub fn parse_queue_weight(text: &str) -> Result<(String, Option<u32>), String> {
    let (name, weight) = match text.rsplit_once(':') {
        Some((name, digits))
            if !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit()) =>
        {
            let weight = digits
                .parse::<u32>()
                .ok()
                .filter(|weight| (1..=ASSIGNMENT_WEIGHT_MAX).contains(weight))
                .ok_or_else(|| {
                    format!("the weight in {text:?} must be between 1 and {ASSIGNMENT_WEIGHT_MAX}")
                })?;
            (name, Some(weight))
        }
        _ => (text, None),
    };
    if name.is_empty() {
        return Err(format!("{text:?} has no queue name"));
    }
    Ok((name.to_string(), weight))
}

/// Parses a duration with a unit (`ms`, `s`, `m`, `h`) into ms that fit a `u32`.
pub fn parse_grace(text: &str) -> Result<u32, String> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 30s, 5m or 1h"))?;
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "" => return Err(format!("{text:?} needs a unit: {text}s or {text}ms")),
        _ => {
            return Err(format!(
                "{text:?} is not a duration like 500ms, 30s, 5m or 1h"
            ))
        }
    };
    number
        .checked_mul(unit_ms)
        .and_then(|ms| u32::try_from(ms).ok())
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// The assignments `worker assign` sends: the `--queue` ones in order (weight 1 unless
/// given), each `--inactive` one that names one of them marked inactive (its weight kept
/// unless given), and the other `--inactive` ones appended.
pub fn build_assignments(
    queues: Vec<(String, Option<u32>)>,
    inactive: Vec<(String, Option<u32>)>,
) -> Result<Vec<QueueAssignment>, CliError> {
    let mut assignments: Vec<QueueAssignment> = Vec::new();
    for (queue, weight) in queues {
        if assignments
            .iter()
            .any(|assignment| assignment.queue == queue)
        {
            return Err(CliError::usage(format!("--queue {queue} is given twice")));
        }
        assignments.push(QueueAssignment {
            queue,
            weight: weight.unwrap_or(1),
            active: true,
        });
    }
    for (queue, weight) in inactive {
        match assignments
            .iter_mut()
            .find(|assignment| assignment.queue == queue)
        {
            Some(assignment) if !assignment.active => {
                return Err(CliError::usage(format!(
                    "--inactive {queue} is given twice"
                )));
            }
            Some(assignment) => {
                assignment.active = false;
                if let Some(weight) = weight {
                    assignment.weight = weight;
                }
            }
            None => assignments.push(QueueAssignment {
                queue,
                weight: weight.unwrap_or(1),
                active: false,
            }),
        }
    }
    if assignments.is_empty() || assignments.len() > FETCH_QUEUES_MAX {
        return Err(CliError::usage(format!(
            "a worker serves 1 to {FETCH_QUEUES_MAX} queues"
        )));
    }
    Ok(assignments)
}

/// A broker error with a hint for workers.
fn worker_error(error: ClientError) -> CliError {
    match error {
        ClientError::Server(body) if body.error_code() == ErrorCode::NotFound => {
            CliError::failed(format!(
                "NOT_FOUND: {} (check the worker id, or the queue name; `taskforge worker list` \
                 and `taskforge queue list` show what exists)",
                body.message
            ))
        }
        ClientError::Server(body) if body.error_code() == ErrorCode::Conflict => {
            CliError::failed(format!(
                "CONFLICT: {} (a lost or stopped worker takes no orders, and a terminating one \
                 cannot be quieted; `taskforge worker get ID` shows its state)",
                body.message
            ))
        }
        other => CliError::from(other),
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

/// Runs one `taskforge worker` verb.
pub async fn run(client: Client, command: WorkerCommand, out: Output) -> Result<(), CliError> {
    match command {
        WorkerCommand::List {
            state,
            after,
            limit,
        } => {
            let page = client
                .worker_list(state, after, list_limit(limit)?)
                .await
                .map_err(worker_error)?;
            out.print(&page, print_worker_page)
        }
        WorkerCommand::Get { id } => {
            let worker = client.worker_get(id).await.map_err(worker_error)?;
            out.print(&worker, print_worker)
        }
        WorkerCommand::Quiet { id } => {
            let worker = client.worker_quiet(id).await.map_err(worker_error)?;
            out.print(&worker, |worker| {
                println!(
                    "worker {} ({}) is {}: it stops fetching at its next heartbeat and \
                     finishes the {} jobs it holds",
                    worker.worker_id,
                    worker.name,
                    worker.state.name(),
                    worker.leased_jobs
                )
            })
        }
        WorkerCommand::Terminate { id, grace } => {
            let worker = client
                .worker_terminate(id, grace)
                .await
                .map_err(worker_error)?;
            out.print(&worker, |worker| {
                println!(
                    "worker {} ({}) is {}: it must be done by {}; jobs still running then are \
                     failed and retried",
                    worker.worker_id,
                    worker.name,
                    worker.state.name(),
                    output::optional_time(worker.terminate_deadline_ms)
                )
            })
        }
        WorkerCommand::Assign {
            id,
            queues,
            inactive,
        } => {
            let assignments = build_assignments(queues, inactive)?;
            let worker = client
                .worker_assign(id, assignments)
                .await
                .map_err(worker_error)?;
            out.print(&worker, |worker| {
                println!(
                    "worker {} ({}) assigned (version {}); it switches at its next heartbeat",
                    worker.worker_id, worker.name, worker.assignments_version
                );
                print_assignments(&worker.assignments, false);
            })
        }
        WorkerCommand::Assignments {
            queue,
            worker,
            after,
            limit,
        } => {
            let page = client
                .assignment_list(AssignmentListRequest {
                    queue,
                    worker_id: worker,
                    after,
                    limit: list_limit(limit)?,
                })
                .await
                .map_err(worker_error)?;
            out.print(&page, print_assignment_page)
        }
    }
}

/// A worker's queues in one cell: `emails:3 sms:1 (reports:1 inactive)`.
pub fn queues_cell(assignments: &[Assignment]) -> String {
    if assignments.is_empty() {
        return "-".to_string();
    }
    assignments
        .iter()
        .map(|assignment| {
            let queue = format!("{}:{}", assignment.queue, assignment.weight);
            if assignment.active {
                queue
            } else {
                format!("({queue} inactive)")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The header of [`worker_row`].
pub const WORKER_COLUMNS: [&str; 9] = [
    "ID",
    "NAME",
    "STATE",
    "HOST",
    "PID",
    "VERSION",
    "JOBS",
    "LAST HEARTBEAT",
    "QUEUES",
];

/// A worker as a table row; JOBS is the jobs it runs (as it last said) over its
/// concurrency.
pub fn worker_row(worker: &WorkerInfo) -> Vec<String> {
    vec![
        worker.worker_id.to_string(),
        worker.name.clone(),
        worker.state.name().to_string(),
        worker.hostname.clone(),
        worker.pid.to_string(),
        worker.version.clone(),
        format!("{}/{}", worker.in_flight, worker.concurrency),
        output::time(worker.last_heartbeat_at_ms),
        queues_cell(&worker.assignments),
    ]
}

fn print_worker_page(page: &WorkerList) {
    if page.workers.is_empty() {
        println!("no workers");
    } else {
        let mut table = output::table(&WORKER_COLUMNS);
        for worker in &page.workers {
            table.add_row(worker_row(worker));
        }
        println!("{table}");
    }
    if let Some(next) = page.next_after {
        eprintln!("more workers: add --after {next}");
    }
}

/// A worker's fields for `worker get`.
pub fn worker_fields(worker: &WorkerInfo) -> Vec<(&'static str, String)> {
    let labels = if worker.labels.is_empty() {
        "-".to_string()
    } else {
        worker
            .labels
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut fields = vec![
        ("id", worker.worker_id.to_string()),
        ("name", worker.name.clone()),
        ("state", worker.state.name().to_string()),
        ("host", worker.hostname.clone()),
        ("pid", worker.pid.to_string()),
        ("version", worker.version.clone()),
        ("labels", labels),
        ("concurrency", worker.concurrency.to_string()),
        ("in flight", worker.in_flight.to_string()),
        ("leased jobs", worker.leased_jobs.to_string()),
        ("registered", output::time(worker.registered_at_ms)),
        ("last heartbeat", output::time(worker.last_heartbeat_at_ms)),
        (
            "assignments version",
            worker.assignments_version.to_string(),
        ),
    ];
    if let Some(deadline) = worker.terminate_deadline_ms {
        fields.push(("terminate by", output::time(deadline)));
    }
    fields
}

fn print_worker(worker: &WorkerInfo) {
    output::print_fields(&worker_fields(worker));
    print_assignments(&worker.assignments, false);
}

/// Prints assignments as a table; `with_worker` adds the worker's id and name.
fn print_assignments(assignments: &[Assignment], with_worker: bool) {
    if assignments.is_empty() {
        println!("no assignments");
        return;
    }
    let mut header = Vec::new();
    if with_worker {
        header.extend(["WORKER", "NAME"]);
    }
    header.extend(["POSITION", "QUEUE", "WEIGHT", "ACTIVE", "SINCE"]);
    let mut table = output::table(&header);
    for assignment in assignments {
        table.add_row(assignment_row(assignment, with_worker));
    }
    println!("{table}");
}

/// An assignment as a table row.
pub fn assignment_row(assignment: &Assignment, with_worker: bool) -> Vec<String> {
    let mut row = Vec::new();
    if with_worker {
        row.push(assignment.worker_id.to_string());
        row.push(assignment.worker_name.clone());
    }
    row.extend([
        assignment.position.to_string(),
        assignment.queue.clone(),
        assignment.weight.to_string(),
        assignment.active.to_string(),
        output::time(assignment.since_ms),
    ]);
    row
}

fn print_assignment_page(page: &AssignmentList) {
    print_assignments(&page.assignments, true);
    if let Some(next) = page.next_after {
        eprintln!("more assignments: add --after {next}");
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// `taskforge worker` alone, to parse its verbs.
    #[derive(Debug, Parser)]
    struct WorkerCli {
        #[command(subcommand)]
        command: WorkerCommand,
    }

    fn parse(args: &[&str]) -> Result<WorkerCommand, clap::Error> {
        WorkerCli::try_parse_from(std::iter::once("worker").chain(args.iter().copied()))
            .map(|cli| cli.command)
    }

    fn assignment(queue: &str, weight: u32, active: bool) -> QueueAssignment {
        QueueAssignment {
            queue: queue.to_string(),
            weight,
            active,
        }
    }

    #[test]
    fn queue_flags_take_an_optional_weight_after_the_last_colon() {
        assert_eq!(parse_queue_weight("emails"), Ok(("emails".into(), None)));
        assert_eq!(
            parse_queue_weight("emails:3"),
            Ok(("emails".into(), Some(3)))
        );
        assert_eq!(parse_queue_weight("a:b"), Ok(("a:b".into(), None)));
        assert_eq!(
            parse_queue_weight("jobs:2:1"),
            Ok(("jobs:2".into(), Some(1)))
        );
        assert!(parse_queue_weight("emails:0").is_err());
        assert!(parse_queue_weight("emails:1001").is_err());
        assert!(parse_queue_weight(":3").is_err());
    }

    #[test]
    fn grace_needs_a_unit() {
        assert_eq!(parse_grace("500ms"), Ok(500));
        assert_eq!(parse_grace("30s"), Ok(30_000));
        assert_eq!(parse_grace("5m"), Ok(300_000));
        assert_eq!(parse_grace("1h"), Ok(3_600_000));
        assert!(parse_grace("30").is_err());
        assert!(parse_grace("s").is_err());
        assert!(parse_grace("2d").is_err());
        assert!(parse_grace("2000h").is_err(), "over u32 ms");
    }

    #[test]
    fn assign_parses_queues_in_order_and_marks_inactive_ones() {
        let WorkerCommand::Assign {
            id,
            queues,
            inactive,
        } = parse(&[
            "assign",
            "7",
            "--queue",
            "emails:3",
            "--queue",
            "sms",
            "--inactive",
            "sms",
            "--inactive",
            "reports:2",
        ])
        .expect("parses")
        else {
            panic!("not assign")
        };
        assert_eq!(id, 7);
        assert_eq!(
            build_assignments(queues, inactive).expect("valid"),
            [
                assignment("emails", 3, true),
                assignment("sms", 1, false),
                assignment("reports", 2, false)
            ]
        );
        assert!(parse(&["assign", "7"]).is_err(), "needs a queue");
        assert!(parse(&["assign", "7", "--queue", "q:0"]).is_err());
        assert!(
            build_assignments(vec![("a".into(), None), ("a".into(), Some(2))], Vec::new()).is_err()
        );
        assert!(build_assignments(Vec::new(), vec![("a".into(), None)]).is_ok());
    }

    #[test]
    fn list_terminate_and_assignments_parse_their_flags() {
        let WorkerCommand::List { state, limit, .. } =
            parse(&["list", "--state", "lost"]).expect("parses")
        else {
            panic!("not list")
        };
        assert_eq!(
            (state, limit),
            (Some(WorkerState::Lost), WORKER_LIST_LIMIT_DEFAULT)
        );
        assert!(parse(&["list", "--state", "dead"]).is_err());
        let WorkerCommand::Terminate { id, grace } =
            parse(&["terminate", "3", "--grace", "10s"]).expect("parses")
        else {
            panic!("not terminate")
        };
        assert_eq!((id, grace), (3, Some(10_000)));
        let WorkerCommand::Terminate { grace, .. } = parse(&["terminate", "3"]).expect("parses")
        else {
            panic!("not terminate")
        };
        assert_eq!(grace, None);
        let WorkerCommand::Assignments { queue, worker, .. } =
            parse(&["assignments", "--queue", "emails", "--worker", "4"]).expect("parses")
        else {
            panic!("not assignments")
        };
        assert_eq!((queue.as_deref(), worker), (Some("emails"), Some(4)));
    }

    fn worker() -> WorkerInfo {
        WorkerInfo {
            worker_id: 4,
            name: "mailer".to_string(),
            hostname: "box-1".to_string(),
            pid: 321,
            version: "1.2.3".to_string(),
            labels: vec![("zone".to_string(), "eu".to_string())],
            concurrency: 8,
            state: WorkerState::Terminating,
            registered_at_ms: 0,
            last_heartbeat_at_ms: 1_000,
            in_flight: 2,
            leased_jobs: 2,
            terminate_deadline_ms: Some(30_000),
            assignments_version: 3,
            assignments: vec![
                Assignment {
                    worker_id: 4,
                    worker_name: "mailer".to_string(),
                    queue: "emails".to_string(),
                    weight: 3,
                    position: 0,
                    active: true,
                    since_ms: 0,
                },
                Assignment {
                    worker_id: 4,
                    worker_name: "mailer".to_string(),
                    queue: "reports".to_string(),
                    weight: 1,
                    position: 1,
                    active: false,
                    since_ms: 0,
                },
            ],
        }
    }

    #[test]
    fn workers_format_as_rows_and_fields() {
        let worker = worker();
        let row = worker_row(&worker);
        assert_eq!(row.len(), WORKER_COLUMNS.len());
        assert_eq!(
            row,
            [
                "4",
                "mailer",
                "terminating",
                "box-1",
                "321",
                "1.2.3",
                "2/8",
                "1970-01-01 00:00:01.000Z",
                "emails:3 (reports:1 inactive)"
            ]
        );
        let fields = worker_fields(&worker);
        assert!(fields.contains(&("labels", "zone=eu".to_string())));
        assert!(fields.contains(&("terminate by", "1970-01-01 00:00:30.000Z".to_string())));
        assert_eq!(
            assignment_row(&worker.assignments[1], true),
            [
                "4",
                "mailer",
                "1",
                "reports",
                "1",
                "false",
                "1970-01-01 00:00:00.000Z"
            ]
        );
        assert_eq!(queues_cell(&[]), "-");
    }
}
