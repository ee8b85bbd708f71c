//! The worker and execution vectors must follow the validation rules and invariants
//! PROTOCOL.md states (§6.7–§6.10 and the 0x020A..=0x020E and 0x04xx sections), so that a
//! client author reading a vector never sees a value the broker would refuse or could not
//! produce.

use std::collections::BTreeSet;

use taskforge_protocol::limits::*;
use taskforge_protocol::*;

use crate::fixtures::{all_vectors, Message};

fn pairs_bytes(pairs: &[(String, String)]) -> usize {
    pairs
        .iter()
        .map(|(key, value)| key.len() + value.len())
        .sum()
}

fn keys_unique(pairs: &[(String, String)]) -> bool {
    let keys: BTreeSet<&str> = pairs.iter().map(|(key, _)| key.as_str()).collect();
    keys.len() == pairs.len()
}

fn weight_ok(weight: u32) -> bool {
    (1..=ASSIGNMENT_WEIGHT_MAX).contains(&weight)
}

fn queues_ok(queues: &[QueueAssignment]) -> bool {
    let names: BTreeSet<&str> = queues.iter().map(|queue| queue.queue.as_str()).collect();
    (1..=FETCH_QUEUES_MAX).contains(&queues.len())
        && names.len() == queues.len()
        && queues.iter().all(|queue| weight_ok(queue.weight))
}

fn labels_ok(labels: &[(String, String)]) -> bool {
    labels.len() <= WORKER_LABELS_MAX
        && keys_unique(labels)
        && pairs_bytes(labels) <= METADATA_BYTES_MAX
}

fn limit_ok(limit: u32) -> bool {
    (1..=LIST_LIMIT_MAX).contains(&limit)
}

fn check_execution(execution: &ExecutionInfo, problems: &mut Vec<String>) {
    let what = format!("execution {}", execution.execution);
    let running = execution.finished_at_ms.is_none();
    if execution.execution == 0 || execution.attempt == 0 {
        problems.push(format!("{what}: executions and attempts count from 1"));
    }
    if running != execution.outcome.is_none() || running != execution.duration_ms.is_none() {
        problems.push(format!(
            "{what}: finished_at_ms, outcome and duration_ms are set together"
        ));
    }
    if let (Some(finished), Some(duration)) = (execution.finished_at_ms, execution.duration_ms) {
        if finished.checked_sub(execution.leased_at_ms) != Some(duration) {
            problems.push(format!("{what}: duration_ms is not finished - leased"));
        }
    }
    let failed = execution.outcome == Some(ExecutionOutcome::Failed);
    if !failed && (execution.error.is_some() || execution.error_details.is_some()) {
        problems.push(format!("{what}: only a failed execution carries an error"));
    }
    if failed && execution.error.is_none() {
        problems.push(format!("{what}: a failed execution carries FAIL's error"));
    }
    if execution
        .error_details
        .as_ref()
        .is_some_and(|details| details.len() > ERROR_DETAILS_BYTES_MAX)
    {
        problems.push(format!(
            "{what}: error_details over ERROR_DETAILS_BYTES_MAX"
        ));
    }
}

fn check_progress(progress: &ProgressInfo, problems: &mut Vec<String>) {
    if progress.percent > 100 || progress.message.len() > PROGRESS_MESSAGE_BYTES_MAX {
        problems.push(format!("progress {progress:?}"));
    }
}

fn check_worker(worker: &WorkerInfo, problems: &mut Vec<String>) {
    let what = format!("worker {}", worker.worker_id);
    if worker.name.is_empty()
        || worker.name.len() > NAME_BYTES_MAX
        || worker.hostname.len() > NAME_BYTES_MAX
        || worker.version.len() > NAME_BYTES_MAX
        || !labels_ok(&worker.labels)
        || !(1..=WORKER_CONCURRENCY_MAX).contains(&worker.concurrency)
    {
        problems.push(format!("{what}: registration fields out of range"));
    }
    if worker.terminate_deadline_ms.is_some() != (worker.state == WorkerState::Terminating) {
        problems.push(format!(
            "{what}: terminate_deadline_ms is set exactly while terminating"
        ));
    }
    if !worker.state.is_live() && worker.leased_jobs != 0 {
        problems.push(format!("{what}: a lost or stopped worker holds no lease"));
    }
    if worker.assignments_version == 0 {
        problems.push(format!("{what}: assignments_version starts at 1"));
    }
    check_assignments(&worker.assignments, problems);
    let positions: Vec<u32> = worker.assignments.iter().map(|a| a.position).collect();
    let expected: Vec<u32> = (0..).take(positions.len()).collect();
    if positions != expected
        || worker
            .assignments
            .iter()
            .any(|a| a.worker_id != worker.worker_id || a.worker_name != worker.name)
    {
        problems.push(format!("{what}: assignments are its own, positions from 0"));
    }
}

fn check_assignments(assignments: &[Assignment], problems: &mut Vec<String>) {
    for assignment in assignments {
        if !weight_ok(assignment.weight) {
            problems.push(format!("assignment {assignment:?}: weight"));
        }
    }
    let order: Vec<(WorkerId, u32)> = assignments
        .iter()
        .map(|a| (a.worker_id, a.position))
        .collect();
    if order.windows(2).any(|pair| pair[0] >= pair[1]) {
        problems.push("assignments are not in (worker id, position) order".to_owned());
    }
}

fn check_request(request: &Request, problems: &mut Vec<String>) {
    // (the rule holds, what it says)
    let rule: Option<(bool, &str)> = match request {
        Request::Fetch(fetch) => Some((
            fetch.weights.is_empty()
                || (fetch.weights.len() == fetch.queues.len()
                    && fetch.weights.iter().copied().all(weight_ok)),
            "FETCH weights: none, or one in range per queue",
        )),
        Request::Fail(fail) => Some((
            fail.error_details
                .as_ref()
                .is_none_or(|details| details.len() <= ERROR_DETAILS_BYTES_MAX),
            "FAIL error_details at most ERROR_DETAILS_BYTES_MAX",
        )),
        Request::Progress(progress) => Some((
            progress.percent <= 100 && progress.message.len() <= PROGRESS_MESSAGE_BYTES_MAX,
            "PROGRESS percent and message in range",
        )),
        Request::Log(log) => Some((
            (1..=LOG_LINES_PER_REQUEST_MAX).contains(&log.lines.len())
                && log.lines.iter().all(|line| {
                    line.message.len() + pairs_bytes(&line.fields) <= LOG_LINE_BYTES_MAX
                }),
            "LOG lines in range",
        )),
        Request::LogTail(tail) => Some((
            (1..=LOG_TAIL_LINES_MAX).contains(&tail.lines) && tail.wait_ms <= FETCH_WAIT_MS_MAX,
            "LOG_TAIL lines and wait_ms in range",
        )),
        Request::ExecutionList(list) => Some((limit_ok(list.limit), "EXECUTION_LIST limit")),
        Request::WorkerRegister(register) => Some((
            !register.name.is_empty()
                && register.name.len() <= NAME_BYTES_MAX
                && register.hostname.len() <= NAME_BYTES_MAX
                && register.version.len() <= NAME_BYTES_MAX
                && labels_ok(&register.labels)
                && (1..=WORKER_CONCURRENCY_MAX).contains(&register.concurrency)
                && queues_ok(&register.queues),
            "WORKER_REGISTER fields in range",
        )),
        Request::WorkerAssign(assign) => Some((queues_ok(&assign.queues), "WORKER_ASSIGN queues")),
        Request::WorkerList(list) => Some((limit_ok(list.limit), "WORKER_LIST limit")),
        Request::AssignmentList(list) => Some((limit_ok(list.limit), "ASSIGNMENT_LIST limit")),
        _ => None,
    };
    if let Some((false, what)) = rule {
        problems.push(what.to_owned());
    }
}

fn check_response(response: &Response, problems: &mut Vec<String>) {
    match response {
        Response::JobGet(job) => {
            if (job.executions == 0) != job.latest_execution.is_none()
                || job
                    .latest_execution
                    .as_ref()
                    .is_some_and(|latest| latest.execution != job.executions)
            {
                problems.push("JOB_GET: latest_execution is execution `executions`".to_owned());
            }
            if job
                .progress
                .as_ref()
                .is_some_and(|progress| progress.execution > job.executions)
            {
                problems.push("JOB_GET: progress of an execution that never was".to_owned());
            }
            if let Some(latest) = &job.latest_execution {
                check_execution(latest, problems);
                let leased = job.state == JobState::Leased;
                if leased != latest.finished_at_ms.is_none() {
                    problems
                        .push("JOB_GET: the latest execution runs exactly while leased".to_owned());
                }
            }
            if let Some(progress) = &job.progress {
                check_progress(progress, problems);
            }
        }
        Response::ExecutionList(list) => {
            list.executions
                .iter()
                .for_each(|execution| check_execution(execution, problems));
            let numbers: Vec<u32> = list.executions.iter().map(|e| e.execution).collect();
            if numbers.windows(2).any(|pair| pair[0] >= pair[1]) {
                problems.push("EXECUTION_LIST: executions out of order".to_owned());
            }
            let running = list
                .executions
                .iter()
                .position(|execution| execution.finished_at_ms.is_none());
            if running.is_some_and(|index| index + 1 != list.executions.len()) {
                problems.push("EXECUTION_LIST: the running execution comes last".to_owned());
            }
            if list.next_after.is_some() && list.next_after != numbers.last().copied() {
                problems.push("EXECUTION_LIST: next_after is the last execution".to_owned());
            }
        }
        Response::LogTail(tail) => {
            let seqs: Vec<u32> = tail.lines.iter().map(|line| line.seq).collect();
            if seqs.windows(2).any(|pair| pair[0] >= pair[1]) || seqs.first() == Some(&0) {
                problems.push("LOG_TAIL: lines are numbered from 1, in order".to_owned());
            }
            if let Some(last) = seqs.last() {
                if *last != tail.next_after {
                    problems.push("LOG_TAIL: next_after is the last line's seq".to_owned());
                }
            }
            if tail.execution == 0 && (tail.open || !tail.lines.is_empty() || tail.next_after != 0)
            {
                problems.push("LOG_TAIL: a job never delivered has no lines".to_owned());
            }
            if tail.lines.len() > LOG_TAIL_LINES_MAX as usize {
                problems.push("LOG_TAIL: too many lines".to_owned());
            }
        }
        Response::Log(log) if log.execution == 0 || log.first_seq == 0 => {
            problems.push("LOG: executions and lines count from 1".to_owned());
        }
        Response::Heartbeat(heartbeat) => {
            if heartbeat.heartbeat_interval_ms == 0
                || heartbeat.heartbeat_interval_ms >= HEARTBEAT_TIMEOUT_MS_DEFAULT
            {
                problems.push("HEARTBEAT: interval below the timeout".to_owned());
            }
            if heartbeat
                .assignments
                .as_ref()
                .is_some_and(|queues| !queues_ok(queues))
            {
                problems.push("HEARTBEAT: assignments".to_owned());
            }
        }
        Response::WorkerRegister(worker) => {
            check_worker(worker, problems);
            if worker.state != WorkerState::Active || worker.assignments_version != 1 {
                problems.push("WORKER_REGISTER: a new worker is active, version 1".to_owned());
            }
        }
        Response::WorkerGet(worker) | Response::WorkerAssign(worker) => {
            check_worker(worker, problems)
        }
        Response::WorkerQuiet(worker) => {
            check_worker(worker, problems);
            if worker.state != WorkerState::Quiet {
                problems.push("WORKER_QUIET: the worker is quiet".to_owned());
            }
        }
        Response::WorkerTerminate(worker) => {
            check_worker(worker, problems);
            if worker.state != WorkerState::Terminating {
                problems.push("WORKER_TERMINATE: the worker is terminating".to_owned());
            }
        }
        Response::WorkerList(list) => {
            list.workers
                .iter()
                .for_each(|worker| check_worker(worker, problems));
            let ids: Vec<WorkerId> = list.workers.iter().map(|w| w.worker_id).collect();
            if ids.windows(2).any(|pair| pair[0] >= pair[1])
                || (list.next_after.is_some() && list.next_after != ids.last().copied())
            {
                problems.push("WORKER_LIST: id order; next_after is the last id".to_owned());
            }
        }
        Response::AssignmentList(list) => {
            check_assignments(&list.assignments, problems);
            if list.next_after.is_some()
                && list.next_after != list.assignments.last().map(|a| a.worker_id)
            {
                problems.push("ASSIGNMENT_LIST: next_after is the last worker id".to_owned());
            }
        }
        Response::JobResults(results) => {
            for result in std::iter::once(&results.job).chain(&results.parents) {
                if result.result.is_some() && result.state != JobState::Succeeded {
                    problems.push("JOB_RESULTS: only a succeeded job has a result".to_owned());
                }
            }
        }
        _ => {}
    }
}

#[test]
fn worker_and_execution_vectors_follow_the_rules() {
    let mut problems = Vec::new();
    for vector in all_vectors() {
        let mut found = Vec::new();
        match &vector.message {
            Message::Request(request) => check_request(request, &mut found),
            Message::Response(response) => check_response(response, &mut found),
            Message::Error { .. } => {}
        }
        problems.extend(
            found
                .into_iter()
                .map(|problem| format!("{}: {problem}", vector.name)),
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_worker_and_execution_enum_variant_has_a_vector() {
    let mut states = BTreeSet::new();
    let mut commands = BTreeSet::new();
    let mut outcomes = BTreeSet::new();
    let mut levels = BTreeSet::new();
    let mut note_execution = |execution: &ExecutionInfo| {
        if let Some(outcome) = execution.outcome {
            outcomes.insert(outcome.name());
        }
    };
    for vector in all_vectors() {
        match &vector.message {
            Message::Request(Request::Log(log)) => {
                levels.extend(log.lines.iter().map(|line| line.level.name()))
            }
            Message::Response(Response::LogTail(tail)) => {
                levels.extend(tail.lines.iter().map(|line| line.level.name()))
            }
            Message::Response(
                Response::WorkerRegister(worker)
                | Response::WorkerGet(worker)
                | Response::WorkerQuiet(worker)
                | Response::WorkerTerminate(worker)
                | Response::WorkerAssign(worker),
            ) => {
                states.insert(worker.state.name());
            }
            Message::Response(Response::WorkerList(list)) => {
                states.extend(list.workers.iter().map(|worker| worker.state.name()))
            }
            Message::Response(Response::Heartbeat(heartbeat)) => {
                commands.insert(match heartbeat.command {
                    WorkerCommand::Run => "run",
                    WorkerCommand::Quiet => "quiet",
                    WorkerCommand::Terminate { .. } => "terminate",
                });
            }
            Message::Response(Response::ExecutionList(list)) => {
                list.executions.iter().for_each(&mut note_execution)
            }
            Message::Response(Response::JobGet(job)) => job
                .latest_execution
                .as_deref()
                .into_iter()
                .for_each(&mut note_execution),
            _ => {}
        }
    }
    let all_states = [
        WorkerState::Active,
        WorkerState::Quiet,
        WorkerState::Terminating,
        WorkerState::Lost,
        WorkerState::Stopped,
    ];
    let all_outcomes = [
        ExecutionOutcome::Succeeded,
        ExecutionOutcome::Failed,
        ExecutionOutcome::LeaseExpired,
        ExecutionOutcome::WorkerLost,
        ExecutionOutcome::Cancelled,
    ];
    let all_levels = [
        LogLevel::Trace,
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Warn,
        LogLevel::Error,
    ];
    assert_eq!(
        states,
        all_states.iter().map(|state| state.name()).collect(),
        "WorkerState"
    );
    assert_eq!(
        commands,
        ["run", "quiet", "terminate"].into_iter().collect(),
        "WorkerCommand"
    );
    assert_eq!(
        outcomes,
        all_outcomes.iter().map(|outcome| outcome.name()).collect(),
        "ExecutionOutcome"
    );
    assert_eq!(
        levels,
        all_levels.iter().map(|level| level.name()).collect(),
        "LogLevel"
    );
}
