//! What `job logs`, `job executions`, `job results` and `job get` print about a job's
//! executions: one-line summaries, table rows, log lines, and the follow loop of
//! `job logs --follow`.

use std::future::Future;
use std::time::Duration;

use taskforge_protocol::limits::LOG_TAIL_LINES_MAX;
use taskforge_protocol::{
    ExecutionInfo, ExecutionList, JobId, JobResults, LogLine, LogTail, LogTailRequest, ProgressInfo,
};
use tokio::time::Instant;

use super::output;
use super::CliError;

/// How long one LOG_TAIL of `job logs --follow` waits for a new line (the broker allows
/// up to `FETCH_WAIT_MS_MAX`); the request timeout starts after it.
pub const FOLLOW_WAIT_MS: u32 = 10_000;

/// An empty follow answer that came back sooner than this (a broker that does not wait)
/// is followed by a pause of [`FOLLOW_IDLE_PAUSE_MS`], so the CLI never spins.
pub const FOLLOW_FAST_ANSWER_MS: u64 = 100;

/// See [`FOLLOW_FAST_ANSWER_MS`].
pub const FOLLOW_IDLE_PAUSE_MS: u64 = 500;

/// Characters of an error shown in a table cell before it is cut.
pub const ERROR_CELL_CHARS_MAX: usize = 60;

/// `text` cut to `chars_max` characters (with `…`), on one line.
pub fn one_line(text: &str, chars_max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= chars_max {
        flat
    } else {
        let cut: String = flat.chars().take(chars_max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// What an execution is now: its outcome, or `running`.
pub fn outcome_name(execution: &ExecutionInfo) -> &'static str {
    execution
        .outcome
        .map_or("running", |outcome| outcome.name())
}

/// One line about an execution, for `job get`.
pub fn execution_summary(execution: &ExecutionInfo) -> String {
    let worker = execution
        .worker_id
        .map_or_else(String::new, |worker| format!(" on worker {worker}"));
    let mut summary = format!(
        "#{} (attempt {}){worker}: {}",
        execution.execution,
        execution.attempt,
        outcome_name(execution)
    );
    match (execution.outcome, execution.duration_ms) {
        (None, _) => summary.push_str(&format!(
            " since {}, lease until {}",
            output::time(execution.leased_at_ms),
            output::time(execution.lease_deadline_ms)
        )),
        (Some(_), Some(duration)) => summary.push_str(&format!(" after {duration} ms")),
        (Some(_), None) => {}
    }
    if let Some(error) = &execution.error {
        summary.push_str(": ");
        summary.push_str(&one_line(error, ERROR_CELL_CHARS_MAX * 2));
    }
    summary
}

/// One line about a job's progress, for `job get`.
pub fn progress_summary(progress: &ProgressInfo) -> String {
    let message = if progress.message.is_empty() {
        String::new()
    } else {
        format!(" {}", one_line(&progress.message, ERROR_CELL_CHARS_MAX * 2))
    };
    format!(
        "{}%{message} (execution {}, {})",
        progress.percent,
        progress.execution,
        output::time(progress.updated_at_ms)
    )
}

/// Multi-line text indented to follow a field name of `width` in `print_fields`.
pub fn indented(text: &str, width: usize) -> String {
    let padding = " ".repeat(width + 2);
    text.lines()
        .enumerate()
        .map(|(index, line)| {
            if index == 0 {
                line.to_string()
            } else {
                format!("{padding}{line}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The header of [`execution_row`].
pub const EXECUTION_COLUMNS: [&str; 8] = [
    "EXEC", "ATTEMPT", "WORKER", "LEASED", "FINISHED", "DURATION", "OUTCOME", "ERROR",
];

/// An execution as a table row.
pub fn execution_row(execution: &ExecutionInfo) -> Vec<String> {
    vec![
        execution.execution.to_string(),
        execution.attempt.to_string(),
        output::optional(execution.worker_id),
        output::time(execution.leased_at_ms),
        output::optional_time(execution.finished_at_ms),
        output::optional(execution.duration_ms.map(|ms| format!("{ms} ms"))),
        outcome_name(execution).to_string(),
        execution.error.as_deref().map_or_else(
            || "-".to_string(),
            |error| one_line(error, ERROR_CELL_CHARS_MAX),
        ),
    ]
}

/// Prints a page of executions, then the details of those that have some.
pub fn print_executions(job_id: JobId, page: &ExecutionList) {
    if page.executions.is_empty() {
        println!("job {job_id} has not been delivered yet");
    } else {
        let mut table = output::table(&EXECUTION_COLUMNS);
        for execution in &page.executions {
            table.add_row(execution_row(execution));
        }
        println!("{table}");
        for execution in &page.executions {
            if let Some(details) = &execution.error_details {
                println!(
                    "\nexecution {} error details:\n{details}",
                    execution.execution
                );
            }
        }
    }
    if let Some(next) = page.next_after {
        eprintln!("more executions: add --after {next}");
    }
}

/// A log line as `job logs` prints it: `SEQ TIME LEVEL MESSAGE key=value...`.
pub fn log_line_text(line: &LogLine) -> String {
    let mut text = format!(
        "{:>5} {} {:<5} {}",
        line.seq,
        output::time(line.at_ms),
        line.level.name(),
        line.message
    );
    for (key, value) in &line.fields {
        text.push_str(&format!(" {key}={value}"));
    }
    text
}

/// Prints `job results`.
pub fn print_results(results: &JobResults) {
    let result = |bytes: &Option<Vec<u8>>| {
        bytes
            .as_deref()
            .map_or_else(|| "-".to_string(), output::bytes)
    };
    output::print_fields(&[
        ("job", results.job.job_id.to_string()),
        ("state", results.job.state.to_string()),
        ("result", result(&results.job.result)),
    ]);
    if !results.parents.is_empty() {
        let mut table = output::table(&["PARENT", "STATE", "RESULT"]);
        for parent in &results.parents {
            table.add_row(vec![
                parent.job_id.to_string(),
                parent.state.to_string(),
                result(&parent.result),
            ]);
        }
        println!("{table}");
    }
}

/// Follows an execution's log: after `first` (the answer without `after_seq`), asks for
/// the lines after the last one seen, waiting up to [`FOLLOW_WAIT_MS`] each time, until
/// the execution is no longer open. Every line goes to `print`, in order. `tail` sends one
/// LOG_TAIL. Returns the last answer.
pub async fn follow<Tail, Tailed>(
    job_id: JobId,
    first: LogTail,
    mut tail: Tail,
    mut print: impl FnMut(&LogLine) -> Result<(), CliError>,
) -> Result<LogTail, CliError>
where
    Tail: FnMut(LogTailRequest) -> Tailed,
    Tailed: Future<Output = Result<LogTail, CliError>>,
{
    let execution = first.execution;
    let mut last = first;
    while last.open {
        let asked_at = Instant::now();
        let next = tail(LogTailRequest {
            job_id,
            // Pinned: a retry's new execution is not this one.
            execution: Some(execution),
            lines: LOG_TAIL_LINES_MAX,
            after_seq: Some(last.next_after),
            wait_ms: FOLLOW_WAIT_MS,
        })
        .await?;
        for line in &next.lines {
            print(line)?;
        }
        let idle = next.lines.is_empty()
            && asked_at.elapsed() < Duration::from_millis(FOLLOW_FAST_ANSWER_MS);
        if next.open && idle {
            tokio::time::sleep(Duration::from_millis(FOLLOW_IDLE_PAUSE_MS)).await;
        }
        last = next;
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use taskforge_protocol::{ExecutionOutcome, LogLevel};

    use super::*;

    fn execution(outcome: Option<ExecutionOutcome>) -> ExecutionInfo {
        ExecutionInfo {
            execution: 3,
            attempt: 2,
            worker_id: Some(5),
            lease_id: 9,
            leased_at_ms: 0,
            lease_deadline_ms: 30_000,
            finished_at_ms: outcome.map(|_| 120),
            outcome,
            error: outcome.map(|_| "boom\nat line 3".to_string()),
            error_details: None,
            duration_ms: outcome.map(|_| 120),
        }
    }

    fn line(seq: u32, message: &str) -> LogLine {
        LogLine {
            seq,
            at_ms: 0,
            level: LogLevel::Warn,
            message: message.to_string(),
            fields: vec![("k".to_string(), "v".to_string())],
        }
    }

    #[test]
    fn executions_read_as_one_line() {
        assert_eq!(
            execution_summary(&execution(Some(ExecutionOutcome::Failed))),
            "#3 (attempt 2) on worker 5: failed after 120 ms: boom at line 3"
        );
        assert_eq!(
            execution_summary(&execution(None)),
            "#3 (attempt 2) on worker 5: running since 1970-01-01 00:00:00.000Z, lease until \
             1970-01-01 00:00:30.000Z"
        );
        let row = execution_row(&execution(Some(ExecutionOutcome::WorkerLost)));
        assert_eq!(row.len(), EXECUTION_COLUMNS.len());
        assert_eq!(row[6], "worker_lost");
        assert_eq!(row[7], "boom at line 3");
        assert_eq!(execution_row(&execution(None))[6], "running");
    }

    #[test]
    fn progress_and_log_lines_read_as_one_line() {
        let progress = ProgressInfo {
            execution: 2,
            percent: 45,
            message: "resizing".to_string(),
            updated_at_ms: 0,
        };
        assert_eq!(
            progress_summary(&progress),
            "45% resizing (execution 2, 1970-01-01 00:00:00.000Z)"
        );
        assert_eq!(
            log_line_text(&line(7, "disk low")),
            "    7 1970-01-01 00:00:00.000Z warn  disk low k=v"
        );
    }

    #[test]
    fn long_errors_are_cut_and_details_indented() {
        assert_eq!(one_line("abcdef", 4), "abc…");
        assert_eq!(one_line("a\tb", 10), "a b");
        assert_eq!(indented("one\ntwo", 3), "one\n     two");
    }

    #[tokio::test]
    async fn follow_asks_after_the_last_line_until_the_execution_closes() {
        let answers = Arc::new(Mutex::new(VecDeque::from([
            LogTail {
                execution: 4,
                lines: vec![line(3, "c"), line(4, "d")],
                next_after: 4,
                open: true,
            },
            LogTail {
                execution: 4,
                lines: Vec::new(),
                next_after: 4,
                open: true,
            },
            LogTail {
                execution: 4,
                lines: vec![line(5, "e")],
                next_after: 5,
                open: false,
            },
        ])));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (queued, seen) = (Arc::clone(&answers), Arc::clone(&requests));
        let tail = move |request: LogTailRequest| {
            let (queued, seen) = (Arc::clone(&queued), Arc::clone(&seen));
            async move {
                seen.lock().expect("lock").push(request);
                Ok(queued.lock().expect("lock").pop_front().expect("an answer"))
            }
        };
        let first = LogTail {
            execution: 4,
            lines: vec![line(1, "a"), line(2, "b")],
            next_after: 2,
            open: true,
        };
        let mut printed = Vec::new();
        let last = follow(JobId([1; 16]), first, tail, |line| {
            printed.push(line.seq);
            Ok(())
        })
        .await
        .expect("follow");

        assert!(!last.open);
        assert_eq!(printed, [3, 4, 5]);
        let requests = requests.lock().expect("lock").clone();
        let after: Vec<Option<u32>> = requests.iter().map(|request| request.after_seq).collect();
        assert_eq!(after, [Some(2), Some(4), Some(4)]);
        assert!(requests
            .iter()
            .all(|request| request.execution == Some(4) && request.wait_ms == FOLLOW_WAIT_MS));
    }
}
