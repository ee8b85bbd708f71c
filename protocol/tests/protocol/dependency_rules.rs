//! The vectors must follow the rules PROTOCOL.md states for job dependencies, unique keys,
//! expiry and per-queue flow limits (§4.3, §6.12–§6.15 and the ENQUEUE, ENQUEUE_BATCH,
//! QUEUE_CREATE, QUEUE_UPDATE and JOB_GET sections), so that a client author reading a
//! vector never sees a request the broker would refuse or a reply it could not produce.

use std::collections::{BTreeMap, BTreeSet};

use taskforge_protocol::limits::*;
use taskforge_protocol::*;

use crate::fixtures::{all_vectors, Message, NOW_MS};

/// The text a job that expired records as its last error.
const EXPIRED_ERROR: &str = "not started before it expired";

/// Where a job sits: alone in an ENQUEUE, or at `index` of an ENQUEUE_BATCH of `len` jobs.
#[derive(Clone, Copy)]
enum Place {
    Single,
    Batch { index: usize, len: usize },
}

fn check_unique_key(unique: &UniqueKey, problems: &mut Vec<String>) {
    if unique.key.is_empty() || unique.key.len() > UNIQUE_KEY_BYTES_MAX {
        problems.push(format!(
            "unique.key {:?} is not 1..=UNIQUE_KEY_BYTES_MAX bytes",
            unique.key
        ));
    }
    if unique.until.is_none() && unique.window_ms.is_none() {
        problems.push("unique: neither until nor window_ms is set".to_owned());
    }
    if unique.window_ms == Some(0) {
        problems.push("unique.window_ms is 0".to_owned());
    }
}

fn check_new_job(job: &NewJob, place: Place, problems: &mut Vec<String>) {
    let what = match place {
        Place::Single => "job".to_owned(),
        Place::Batch { index, .. } => format!("jobs[{index}]"),
    };
    if job.depends_on.len() > PARENTS_PER_JOB_MAX {
        problems.push(format!("{what}: more than PARENTS_PER_JOB_MAX parents"));
    }
    let distinct: BTreeSet<String> = job
        .depends_on
        .iter()
        .map(|parent| format!("{parent:?}"))
        .collect();
    if distinct.len() != job.depends_on.len() {
        problems.push(format!("{what}: a parent is named twice"));
    }
    for parent in &job.depends_on {
        let ParentRef::Batch(parent_index) = parent else {
            continue;
        };
        let parent_index = *parent_index as usize;
        match place {
            Place::Single => {
                problems.push(format!("{what}: a Batch parent outside ENQUEUE_BATCH"));
            }
            Place::Batch { index, len } => {
                if parent_index >= len || parent_index == index {
                    problems.push(format!(
                        "{what}: Batch({parent_index}) out of range or itself"
                    ));
                }
            }
        }
    }
    if let Some(unique) = &job.unique {
        check_unique_key(unique, &mut *problems);
    }
    if job.ttl_ms == Some(0) {
        problems.push(format!("{what}: ttl_ms is 0"));
    }
    if job.expires_at_ms.is_some_and(|at_ms| at_ms <= NOW_MS) {
        problems.push(format!("{what}: expires_at_ms is not after now"));
    }
}

/// True when the Batch references of `jobs` form a cycle (depth-first search).
fn has_cycle(jobs: &[NewJob]) -> bool {
    fn visit(jobs: &[NewJob], job: usize, marks: &mut [u8]) -> bool {
        // 0 unvisited, 1 on the current path, 2 done.
        match marks[job] {
            1 => return true,
            2 => return false,
            _ => {}
        }
        marks[job] = 1;
        for parent in &jobs[job].depends_on {
            if let ParentRef::Batch(parent) = parent {
                let parent = *parent as usize;
                if parent < jobs.len() && visit(jobs, parent, marks) {
                    return true;
                }
            }
        }
        marks[job] = 2;
        false
    }
    let mut marks = vec![0u8; jobs.len()];
    (0..jobs.len()).any(|job| visit(jobs, job, &mut marks))
}

fn check_request(request: &Request, problems: &mut Vec<String>) {
    match request {
        Request::Enqueue(enqueue) => check_new_job(&enqueue.job, Place::Single, problems),
        Request::EnqueueBatch(batch) => {
            let len = batch.jobs.len();
            for (index, job) in batch.jobs.iter().enumerate() {
                check_new_job(job, Place::Batch { index, len }, problems);
            }
            if has_cycle(&batch.jobs) {
                problems.push("the batch's Batch parents form a cycle".to_owned());
            }
        }
        Request::QueueCreate(write) | Request::QueueUpdate(write)
            if write
                .settings
                .retention_ms
                .is_some_and(|retention_ms| retention_ms > RETENTION_MS_MAX) =>
        {
            problems.push("settings.retention_ms over RETENTION_MS_MAX".to_owned());
        }
        _ => {}
    }
}

fn check_queue(queue: &QueueInfo, problems: &mut Vec<String>) {
    let defaults = &queue.defaults;
    if defaults
        .retention_ms
        .is_some_and(|retention_ms| retention_ms == 0 || retention_ms > RETENTION_MS_MAX)
    {
        problems.push(format!(
            "queue {}: retention_ms is 1..=RETENTION_MS_MAX",
            queue.name
        ));
    }
    if defaults.in_flight_max == Some(0) || defaults.deliveries_per_second == Some(0) {
        problems.push(format!(
            "queue {}: a limit that is set is at least 1 (0 on update removes it)",
            queue.name
        ));
    }
}

fn check_parents_listed(job_id: JobId, parents: &[JobId], what: &str, problems: &mut Vec<String>) {
    let distinct: BTreeSet<&JobId> = parents.iter().collect();
    if parents.len() > PARENTS_PER_JOB_MAX || distinct.len() != parents.len() {
        problems.push(format!(
            "{what}: at most PARENTS_PER_JOB_MAX distinct parents"
        ));
    }
    if distinct.contains(&job_id) {
        problems.push(format!("{what}: the job is its own parent"));
    }
}

fn check_job(job: &JobInfo, problems: &mut Vec<String>) {
    let what = format!("JOB_GET {}", job.job_id);
    check_parents_listed(job.job_id, &job.parents, &what, problems);
    if job.children.len() > CHILDREN_SHOWN_MAX || job.children.contains(&job.job_id) {
        problems.push(format!("{what}: children"));
    }
    if job.parents_remaining as usize > job.parents.len() {
        problems.push(format!("{what}: more parents remaining than parents"));
    }
    if job.state == JobState::Blocked && (job.parents_remaining == 0 || job.executions > 0) {
        problems.push(format!(
            "{what}: a blocked job has parents remaining and never ran"
        ));
    }
    let waiting_ended = matches!(job.state, JobState::Cancelled | JobState::Expired);
    if job.parents_remaining > 0 && job.state != JobState::Blocked && !waiting_ended {
        problems.push(format!(
            "{what}: a job with parents remaining is blocked, or cancelled or expired while \
             it waited"
        ));
    }
    if job.state == JobState::Expired
        && (job.executions != 0
            || job.expires_at_ms.is_none()
            || job.finished_at_ms.is_none()
            || job.last_error.as_deref() != Some(EXPIRED_ERROR))
    {
        problems.push(format!(
            "{what}: an expired job never ran, had an expiry and says why"
        ));
    }
    if let Some(key) = &job.unique_key {
        if key.is_empty() || key.len() > UNIQUE_KEY_BYTES_MAX {
            problems.push(format!("{what}: unique_key length"));
        }
    }
    let cancelled_by = job
        .last_error
        .as_deref()
        .and_then(|error| error.strip_prefix("parent job "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|id| id.parse::<JobId>().ok());
    if let Some(parent) = cancelled_by {
        if job.state != JobState::Cancelled
            || job.on_parent_failure != ParentFailure::Cancel
            || !job.parents.contains(&parent)
        {
            problems.push(format!(
                "{what}: only a child with policy cancel is cancelled by one of its parents"
            ));
        }
    }
}

fn check_response(response: &Response, problems: &mut Vec<String>) {
    match response {
        Response::QueueCreate(queue)
        | Response::QueueGet(queue)
        | Response::QueueUpdate(queue)
        | Response::QueuePause(queue)
        | Response::QueueResume(queue) => check_queue(queue, problems),
        Response::QueueList(list) => list
            .queues
            .iter()
            .for_each(|queue| check_queue(queue, problems)),
        Response::Enqueue(enqueued) => {
            let created = [
                JobState::Ready,
                JobState::Scheduled,
                JobState::Blocked,
                JobState::Cancelled,
            ];
            if !enqueued.duplicate && !created.contains(&enqueued.state) {
                problems.push(format!(
                    "ENQUEUE: a new job is ready, scheduled, blocked or (a failed parent) \
                     cancelled, not {}",
                    enqueued.state
                ));
            }
        }
        Response::EnqueueBatch(batch) => {
            if batch.duplicates.len() != batch.job_ids.len() {
                problems.push("ENQUEUE_BATCH: one duplicate flag per job".to_owned());
            }
            for (index, (job_id, duplicate)) in
                batch.job_ids.iter().zip(&batch.duplicates).enumerate()
            {
                if !duplicate && batch.job_ids[..index].contains(job_id) {
                    problems.push(format!(
                        "ENQUEUE_BATCH: new job {index} has the id of an earlier one"
                    ));
                }
            }
        }
        Response::JobGet(job) => check_job(job, problems),
        Response::JobResults(results) => check_parents_listed(
            results.job.job_id,
            &results
                .parents
                .iter()
                .map(|parent| parent.job_id)
                .collect::<Vec<_>>(),
            "JOB_RESULTS",
            problems,
        ),
        _ => {}
    }
}

/// A setting where 0 means "none", as QueueDefaults shows it.
fn nonzero<T: PartialEq + Default>(value: T) -> Option<T> {
    (value != T::default()).then_some(value)
}

/// Checks a request and the response with the same opcode and request id against each
/// other.
fn check_pair(request: &Request, response: &Response, problems: &mut Vec<String>) {
    match (request, response) {
        (Request::Enqueue(enqueue), Response::Enqueue(enqueued)) => {
            if enqueued.duplicate && enqueue.job.unique.is_none() {
                problems.push("ENQUEUE: a duplicate needs a unique key".to_owned());
            }
            if !enqueued.duplicate
                && enqueue.job.depends_on.is_empty()
                && enqueued.state == JobState::Blocked
            {
                problems.push("ENQUEUE: a job without parents is not blocked".to_owned());
            }
        }
        (Request::EnqueueBatch(batch), Response::EnqueueBatch(enqueued)) => {
            if enqueued.job_ids.len() != batch.jobs.len() {
                problems.push("ENQUEUE_BATCH: one id per job".to_owned());
            }
            for (index, duplicate) in enqueued.duplicates.iter().enumerate() {
                let Some(job) = batch.jobs.get(index) else {
                    continue;
                };
                if *duplicate && job.unique.is_none() {
                    problems.push(format!("ENQUEUE_BATCH: jobs[{index}] has no unique key"));
                }
                // A duplicate of an earlier job of the batch has its queue and key.
                let earlier = enqueued.job_ids[..index]
                    .iter()
                    .position(|job_id| *job_id == enqueued.job_ids[index]);
                if let Some(first) = earlier {
                    let same_key = |job: &NewJob| {
                        job.unique
                            .as_ref()
                            .map(|unique| (job.queue.clone(), unique.key.clone()))
                    };
                    if !duplicate || same_key(&batch.jobs[first]) != same_key(job) {
                        problems.push(format!(
                            "ENQUEUE_BATCH: jobs[{index}] repeats jobs[{first}]'s id without \
                             its queue and key"
                        ));
                    }
                }
            }
        }
        (Request::QueueCreate(write), Response::QueueCreate(queue))
        | (Request::QueueUpdate(write), Response::QueueUpdate(queue)) => {
            let creating = matches!(request, Request::QueueCreate(_));
            let settings = &write.settings;
            let defaults = &queue.defaults;
            let shown = [
                (
                    settings.retention_ms.map(nonzero),
                    defaults.retention_ms,
                    "retention_ms",
                ),
                (
                    settings.in_flight_max.map(|v| nonzero(v).map(u64::from)),
                    defaults.in_flight_max.map(u64::from),
                    "in_flight_max",
                ),
                (
                    settings
                        .deliveries_per_second
                        .map(|v| nonzero(v).map(u64::from)),
                    defaults.deliveries_per_second.map(u64::from),
                    "deliveries_per_second",
                ),
            ];
            for (asked, effective, field) in shown {
                let expected = match asked {
                    Some(value) => value,
                    None if creating => None,
                    None => continue,
                };
                if effective != expected {
                    problems.push(format!(
                        "{}: defaults.{field} does not follow the settings",
                        request.opcode().name()
                    ));
                }
            }
        }
        _ => {}
    }
}

#[test]
fn dependency_unique_expiry_and_flow_vectors_follow_the_rules() {
    let vectors = all_vectors();
    let mut problems = Vec::new();
    let mut requests = BTreeMap::new();
    for vector in &vectors {
        let mut found = Vec::new();
        match &vector.message {
            Message::Request(request) => {
                check_request(request, &mut found);
                requests.insert((vector.opcode(), vector.request_id), request);
            }
            Message::Response(response) => check_response(response, &mut found),
            Message::Error { .. } => {}
        }
        problems.extend(
            found
                .into_iter()
                .map(|problem| format!("{}: {problem}", vector.name)),
        );
    }
    for vector in &vectors {
        let Message::Response(response) = &vector.message else {
            continue;
        };
        if let Some(request) = requests.get(&(vector.opcode(), vector.request_id)) {
            let mut found = Vec::new();
            check_pair(request, response, &mut found);
            problems.extend(
                found
                    .into_iter()
                    .map(|problem| format!("{}: {problem}", vector.name)),
            );
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checker_refuses_what_the_broker_refuses() {
    // The rules above would miss nothing if they accepted everything: feed them the
    // refusals PROTOCOL.md lists and check each is caught.
    let job = |depends_on: Vec<ParentRef>| NewJob {
        queue: "q".to_owned(),
        depends_on,
        ..NewJob::default()
    };
    let refused_alone = [
        job(vec![ParentRef::Batch(0)]),
        job(vec![ParentRef::Job(JobId([1; 16])); 2]),
        job(vec![
            ParentRef::Job(JobId([1; 16]));
            PARENTS_PER_JOB_MAX + 1
        ]),
        NewJob {
            ttl_ms: Some(0),
            ..job(Vec::new())
        },
        NewJob {
            expires_at_ms: Some(NOW_MS - 1),
            ..job(Vec::new())
        },
        NewJob {
            unique: Some(UniqueKey {
                key: "k".to_owned(),
                until: None,
                window_ms: None,
            }),
            ..job(Vec::new())
        },
        NewJob {
            unique: Some(UniqueKey {
                key: "k".repeat(UNIQUE_KEY_BYTES_MAX + 1),
                until: Some(UniqueUntil::Started),
                window_ms: None,
            }),
            ..job(Vec::new())
        },
        NewJob {
            unique: Some(UniqueKey {
                key: "k".to_owned(),
                until: None,
                window_ms: Some(0),
            }),
            ..job(Vec::new())
        },
    ];
    for refused in refused_alone {
        let mut problems = Vec::new();
        check_request(
            &Request::Enqueue(EnqueueRequest {
                job: refused.clone(),
            }),
            &mut problems,
        );
        assert!(!problems.is_empty(), "accepted {refused:?}");
    }
    let refused_batches = [
        vec![job(vec![ParentRef::Batch(0)])],
        vec![job(Vec::new()), job(vec![ParentRef::Batch(2)])],
        vec![
            job(vec![ParentRef::Batch(2)]),
            job(vec![ParentRef::Batch(0)]),
            job(vec![ParentRef::Batch(1)]),
        ],
    ];
    for jobs in refused_batches {
        let mut problems = Vec::new();
        check_request(
            &Request::EnqueueBatch(EnqueueBatchRequest { jobs: jobs.clone() }),
            &mut problems,
        );
        assert!(!problems.is_empty(), "accepted the batch {jobs:?}");
    }
}

#[test]
fn every_dependency_enum_variant_and_case_has_a_vector() {
    fn note_job(job: &NewJob, seen: &mut BTreeSet<&'static str>) {
        for parent in &job.depends_on {
            seen.insert(match parent {
                ParentRef::Job(_) => "ParentRef::Job",
                ParentRef::Batch(_) => "ParentRef::Batch",
            });
        }
        if !job.depends_on.is_empty() {
            seen.insert(match job.on_parent_failure {
                ParentFailure::Cancel => "ParentFailure::Cancel",
                ParentFailure::Run => "ParentFailure::Run",
            });
        }
        if let Some(unique) = &job.unique {
            seen.insert(match unique.until {
                Some(UniqueUntil::Started) => "UniqueUntil::Started",
                Some(UniqueUntil::Finished) => "UniqueUntil::Finished",
                None => "a window alone",
            });
        }
        if job.expires_at_ms.is_some() && job.ttl_ms.is_some() {
            seen.insert("expires_at_ms and ttl_ms");
        }
    }
    let mut seen = BTreeSet::new();
    for vector in all_vectors() {
        match &vector.message {
            Message::Request(Request::Enqueue(enqueue)) => note_job(&enqueue.job, &mut seen),
            Message::Request(Request::EnqueueBatch(batch)) => {
                batch.jobs.iter().for_each(|job| note_job(job, &mut seen))
            }
            Message::Response(Response::Enqueue(enqueued)) if enqueued.duplicate => {
                seen.insert("ENQUEUE duplicate");
            }
            Message::Response(Response::EnqueueBatch(batch))
                if batch.duplicates.contains(&true) =>
            {
                seen.insert("ENQUEUE_BATCH duplicates");
            }
            Message::Response(Response::JobGet(job)) => {
                if job.state == JobState::Blocked && !job.children.is_empty() {
                    seen.insert("JOB_GET blocked with children");
                }
                if job.state == JobState::Expired {
                    seen.insert("JOB_GET expired");
                }
                if job.unique_key.is_some() && job.expires_at_ms.is_some() {
                    seen.insert("JOB_GET unique key and expiry");
                }
            }
            Message::Response(Response::QueueCreate(queue)) => {
                let defaults = &queue.defaults;
                if defaults.retention_ms.is_some()
                    && defaults.in_flight_max.is_some()
                    && defaults.deliveries_per_second.is_some()
                {
                    seen.insert("a queue with every flow limit");
                }
            }
            Message::Error { body, .. }
                if body.error_code() == ErrorCode::InvalidArgument
                    && body.message.contains("dependency cycle") =>
            {
                assert_eq!(
                    body.details,
                    ErrorDetails::BatchItem {
                        index: body.message[5..]
                            .split(']')
                            .next()
                            .and_then(|index| index.parse().ok())
                            .expect("the message names jobs[index]")
                    },
                    "the cycle's details point at the job the message names"
                );
                seen.insert("a dependency cycle");
            }
            Message::Error { body, .. }
                if body.error_code() == ErrorCode::NotFound
                    && body.message.starts_with("parent job ") =>
            {
                seen.insert("an unknown parent");
            }
            _ => {}
        }
    }
    let expected: BTreeSet<&str> = [
        "ParentRef::Job",
        "ParentRef::Batch",
        "ParentFailure::Cancel",
        "ParentFailure::Run",
        "UniqueUntil::Started",
        "UniqueUntil::Finished",
        "a window alone",
        "expires_at_ms and ttl_ms",
        "ENQUEUE duplicate",
        "ENQUEUE_BATCH duplicates",
        "JOB_GET blocked with children",
        "JOB_GET expired",
        "JOB_GET unique key and expiry",
        "a queue with every flow limit",
        "a dependency cycle",
        "an unknown parent",
    ]
    .into_iter()
    .collect();
    assert_eq!(seen, expected);
}
