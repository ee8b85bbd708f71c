//! The offline consistency check behind `taskforge storage check`: reads every record
//! through the [`Storage`] trait and verifies the invariants the broker relies on.
//!
//! Checked: every record decodes; every queue key matches its record and queue ids are
//! unique; every job's queue exists in the job's project; every job has a body and exactly
//! the index entry of its state; an execution an index entry holds is the job's last and is
//! not also stored under its own key; leases agree with states; every body, result and
//! index entry belongs to an existing job; every schedule record decodes, has a valid cron
//! expression and time zone and names an existing queue of its project; no key has an
//! unknown prefix; the meta counters are 8 bytes. Memory grows with the number of queues only: jobs are checked one at a time
//! with point reads.

use std::collections::HashMap;

use serde::Serialize;
use taskforge_protocol::{ExecutionInfo, JobId, ProjectId, ScheduleInfo, WorkerInfo};

use super::keys;
use super::migrations;
use super::records::{self, JobBody, JobRecord, QueueRecord, StateTag};
use super::{try_scan, Storage, StorageError};

/// Problems listed in a report; the rest are only counted, so a badly damaged store does
/// not produce an unbounded report.
pub const PROBLEMS_LISTED_MAX: usize = 100;

/// What [`check`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// The stored schema version (`None`: never stamped).
    pub schema_version: Option<u64>,
    /// Meta keys (counters, schema version).
    pub meta_keys: u64,
    /// Queue records.
    pub queues: u64,
    /// Job records.
    pub jobs: u64,
    /// Job records by stored state (`pending` counts scheduled and ready together).
    pub jobs_by_state: Vec<(String, u64)>,
    /// Job bodies.
    pub bodies: u64,
    /// Stored results.
    pub results: u64,
    /// Entries of the per-queue state index.
    pub index_entries: u64,
    /// Progress, execution and log records of jobs.
    pub history_records: u64,
    /// Worker records.
    pub workers: u64,
    /// Dependency edges.
    pub dependency_edges: u64,
    /// Schedule records.
    pub schedules: u64,
    /// Organizations, users, projects and API keys.
    pub directory_records: u64,
    /// The first [`PROBLEMS_LISTED_MAX`] problems found.
    pub problems: Vec<String>,
    /// Every problem found, listed or not.
    pub problems_total: u64,
}

impl CheckReport {
    /// True when no invariant is broken.
    pub fn is_consistent(&self) -> bool {
        self.problems_total == 0
    }

    fn problem(&mut self, text: String) {
        self.problems_total += 1;
        if self.problems.len() < PROBLEMS_LISTED_MAX {
            self.problems.push(text);
        }
    }
}

/// The lower-case name of a stored state.
fn state_name(tag: StateTag) -> &'static str {
    match tag {
        StateTag::Pending => "pending",
        StateTag::Leased => "leased",
        StateTag::Succeeded => "succeeded",
        StateTag::Dead => "dead",
        StateTag::Cancelled => "cancelled",
        StateTag::Expired => "expired",
    }
}

/// Splits a job-owned key (`JOB`, `BODY`, `RESULT`) into project and job id.
fn parse_job_owned(key: &[u8]) -> Option<(ProjectId, JobId)> {
    if key.len() != 25 {
        return None;
    }
    let project_id = u64::from_be_bytes(key[1..9].try_into().ok()?);
    Some((project_id, JobId(key[9..25].try_into().ok()?)))
}

/// A queue as the check remembers it.
struct KnownQueue {
    /// Its project.
    project_id: ProjectId,
    /// Its name.
    name: String,
}

/// Decodes every record of one directory type, reporting the ones that do not decode.
fn decode_all<T: bincode::Decode<()>>(
    storage: &dyn Storage,
    prefix: u8,
    what: &'static str,
    report: &mut CheckReport,
) -> Result<Vec<T>, StorageError> {
    let mut decoded = Vec::new();
    for outcome in records::scan_decoded::<T>(storage, prefix, what)? {
        report.directory_records += 1;
        match outcome {
            Ok(record) => decoded.push(record),
            Err(error) => report.problem(error.message),
        }
    }
    Ok(decoded)
}

/// Checks the tenancy directory: every record decodes, and every user and project
/// belongs to an existing organization, every API key to an existing project.
fn check_directory(storage: &dyn Storage, report: &mut CheckReport) -> Result<(), StorageError> {
    use crate::broker::core::tenants::OrgEntry;
    use records::{ApiKeyRecord, UserRecord};
    use taskforge_protocol::Project;
    let orgs: std::collections::BTreeSet<u64> =
        decode_all::<OrgEntry>(storage, keys::ORG, "organization", report)?
            .into_iter()
            .map(|entry| entry.org.org_id)
            .collect();
    for user in decode_all::<UserRecord>(storage, keys::USER, "user", report)? {
        if !orgs.contains(&user.user.org_id) {
            report.problem(format!(
                "user {} belongs to missing organization {}",
                user.user.user_id, user.user.org_id
            ));
        }
    }
    let mut projects = std::collections::BTreeSet::new();
    for project in decode_all::<Project>(storage, keys::PROJECT, "project", report)? {
        if !orgs.contains(&project.org_id) {
            report.problem(format!(
                "project {} belongs to missing organization {}",
                project.project_id, project.org_id
            ));
        }
        projects.insert(project.project_id);
    }
    for key in decode_all::<ApiKeyRecord>(storage, keys::API_KEY, "API key", report)? {
        if !projects.contains(&key.info.project_id) {
            report.problem(format!(
                "API key {} belongs to missing project {}",
                key.info.key_id, key.info.project_id
            ));
        }
    }
    Ok(())
}

/// Checks every record of `storage`. Storage errors abort the check; broken invariants
/// are reported.
pub fn check(storage: &dyn Storage) -> Result<CheckReport, StorageError> {
    let mut report = CheckReport::default();
    match migrations::stored_version(storage) {
        Ok(version) => report.schema_version = version,
        Err(error) => report.problem(error.message),
    }
    check_meta(storage, &mut report)?;
    let queues = check_queues(storage, &mut report)?;
    check_jobs(storage, &queues, &mut report)?;
    check_job_owned(storage, keys::BODY, &mut report)?;
    check_job_owned(storage, keys::RESULT, &mut report)?;
    check_index(storage, &queues, &mut report)?;
    check_history(storage, &mut report)?;
    check_edges(storage, &mut report)?;
    report.workers =
        decode_all::<WorkerInfo>(storage, keys::WORKER, "worker", &mut report)?.len() as u64;
    check_directory(storage, &mut report)?;
    check_schedules(storage, &queues, &mut report)?;
    let mut unknown = 0u64;
    for (start, end) in [
        (keys::SCHEDULE + 1, keys::ORG),
        (keys::API_KEY + 1, keys::KEY_PREFIX_END),
    ] {
        storage.scan(&[start], &[end], &mut |_, _| {
            unknown += 1;
            true
        })?;
    }
    if unknown > 0 {
        report.problem(format!("{unknown} keys have an unknown prefix"));
    }
    Ok(report)
}

/// Checks schedule records: each decodes, its expression and zone parse, its template's
/// queue is its queue, and that queue exists in its project.
fn check_schedules(
    storage: &dyn Storage,
    queues: &HashMap<u64, KnownQueue>,
    report: &mut CheckReport,
) -> Result<(), StorageError> {
    let (start, end) = keys::prefix_range(keys::SCHEDULE);
    let mut problems = Vec::new();
    storage.scan(&start, &end, &mut |key, value| {
        report.schedules += 1;
        let Some(project_id) = key
            .get(1..9)
            .and_then(|bytes| bytes.try_into().ok())
            .map(u64::from_be_bytes)
            .filter(|_| key.len() == 17)
        else {
            problems.push(format!("malformed schedule key {key:?}"));
            return true;
        };
        let info = match records::decode::<ScheduleInfo>("schedule", value) {
            Ok(info) => info,
            Err(error) => {
                problems.push(error.message);
                return true;
            }
        };
        let name = &info.name;
        if let Err(error) = crate::broker::cron::CronSpec::parse(&info.cron, &info.time_zone) {
            problems.push(format!(
                "schedule {name:?} of project {project_id}: {error}"
            ));
        }
        if info.template.queue != info.queue {
            problems.push(format!(
                "schedule {name:?} of project {project_id} enqueues into {:?} but its template \
                 names {:?}",
                info.queue, info.template.queue
            ));
        }
        let queue_exists = queues
            .values()
            .any(|queue| queue.project_id == project_id && queue.name == info.queue);
        if !queue_exists {
            problems.push(format!(
                "schedule {name:?} of project {project_id} names missing queue {:?}",
                info.queue
            ));
        }
        true
    })?;
    for problem in problems {
        report.problem(problem);
    }
    Ok(())
}

fn check_meta(storage: &dyn Storage, report: &mut CheckReport) -> Result<(), StorageError> {
    let (start, end) = keys::prefix_range(keys::META);
    let mut problems = Vec::new();
    storage.scan(&start, &end, &mut |key, value| {
        report.meta_keys += 1;
        let known = [
            keys::META_LEASE_RESERVED,
            keys::META_QUEUE_ID_NEXT,
            keys::META_SCHEMA_VERSION,
            keys::META_WORKER_ID_NEXT,
            keys::META_SCHEDULE_ID_NEXT,
        ];
        if known.contains(&key) && value.len() != 8 {
            problems.push(format!(
                "meta key {} holds {} bytes, not 8",
                String::from_utf8_lossy(&key[1..]),
                value.len()
            ));
        }
        true
    })?;
    for problem in problems {
        report.problem(problem);
    }
    Ok(())
}

fn check_queues(
    storage: &dyn Storage,
    report: &mut CheckReport,
) -> Result<HashMap<u64, KnownQueue>, StorageError> {
    let mut queues: HashMap<u64, KnownQueue> = HashMap::new();
    let mut problems = Vec::new();
    let (start, end) = keys::queue_range();
    storage.scan(&start, &end, &mut |key, value| {
        report.queues += 1;
        let Some(project_bytes) = key.get(1..9) else {
            problems.push(format!("queue key {} is too short", hex::encode(key)));
            return true;
        };
        let project_id = u64::from_be_bytes(project_bytes.try_into().unwrap_or([0; 8]));
        let name = String::from_utf8_lossy(&key[9..]).into_owned();
        match records::decode::<QueueRecord>("queue", value) {
            Ok(record) => {
                if record.name != name {
                    problems.push(format!(
                        "queue key names {name:?} but its record names {:?}",
                        record.name
                    ));
                }
                if let Some(other) = queues.get(&record.queue_id) {
                    problems.push(format!(
                        "queues {:?} and {name:?} share the id {}",
                        other.name, record.queue_id
                    ));
                }
                queues.insert(record.queue_id, KnownQueue { project_id, name });
            }
            Err(error) => problems.push(format!("queue {name:?}: {}", error.message)),
        }
        true
    })?;
    for problem in problems {
        report.problem(problem);
    }
    if let Ok(Some(bytes)) = storage.get(keys::META_QUEUE_ID_NEXT) {
        if let Ok(bytes) = <[u8; 8]>::try_from(bytes.as_slice()) {
            let queue_id_next = u64::from_be_bytes(bytes);
            if let Some(highest) = queues.keys().max().filter(|id| **id >= queue_id_next) {
                report.problem(format!(
                    "queue id {highest} is not below the stored next queue id {queue_id_next}"
                ));
            }
        }
    }
    Ok(queues)
}

fn check_jobs(
    storage: &dyn Storage,
    queues: &HashMap<u64, KnownQueue>,
    report: &mut CheckReport,
) -> Result<(), StorageError> {
    let mut by_state = [0u64; 6];
    let mut problems = Vec::new();
    let (start, end) = keys::job_range();
    try_scan(storage, &start, &end, &mut |key, value| {
        report.jobs += 1;
        let Some((project_id, job_id)) = keys::parse_job(key) else {
            problems.push(format!("job key {} is malformed", hex::encode(key)));
            return Ok(true);
        };
        let record = match records::decode::<JobRecord>("job", value) {
            Ok(record) => record,
            Err(error) => {
                problems.push(format!("job {job_id}: {}", error.message));
                return Ok(true);
            }
        };
        by_state[record.state as usize] += 1;
        match queues.get(&record.queue_id) {
            None => problems.push(format!(
                "job {job_id} is in queue id {}, which does not exist",
                record.queue_id
            )),
            Some(queue) if queue.project_id != project_id => problems.push(format!(
                "job {job_id} of project {project_id} is in queue {:?} of project {}",
                queue.name, queue.project_id
            )),
            Some(_) => {}
        }
        match (record.state, record.lease().is_some()) {
            (StateTag::Leased, false) => {
                problems.push(format!("job {job_id} is leased without a lease"))
            }
            (StateTag::Pending, true) => {
                problems.push(format!("job {job_id} is pending but holds a lease"))
            }
            _ => {}
        }
        if storage.get(&keys::body(project_id, job_id))?.is_none() {
            problems.push(format!("job {job_id} has no body"));
        }
        for tag in StateTag::INDEXED {
            let entry = storage.get(&keys::queue_index(record.queue_id, tag, job_id))?;
            let present = entry.is_some();
            if present != (tag == record.state) {
                let what = if present { "an extra" } else { "no" };
                problems.push(format!(
                    "job {job_id} is {} but has {what} index entry for {}",
                    state_name(record.state),
                    state_name(tag)
                ));
            }
            if let Some(value) = entry.filter(|value| !value.is_empty()) {
                if let Some(problem) =
                    check_final_execution(storage, project_id, job_id, &record, &value)?
                {
                    problems.push(problem);
                }
            }
        }
        Ok(true)
    })?;
    for problem in problems {
        report.problem(problem);
    }
    report.jobs_by_state = StateTag::ALL
        .iter()
        .map(|tag| (state_name(*tag).to_string(), by_state[*tag as usize]))
        .collect();
    Ok(())
}

/// Checks bodies or results: each decodes (bodies) and belongs to an existing job.
fn check_job_owned(
    storage: &dyn Storage,
    prefix: u8,
    report: &mut CheckReport,
) -> Result<(), StorageError> {
    let what = if prefix == keys::BODY {
        "body"
    } else {
        "result"
    };
    let mut count = 0u64;
    let mut problems = Vec::new();
    let (start, end) = keys::prefix_range(prefix);
    try_scan(storage, &start, &end, &mut |key, value| {
        count += 1;
        let Some((project_id, job_id)) = parse_job_owned(key) else {
            problems.push(format!("{what} key {} is malformed", hex::encode(key)));
            return Ok(true);
        };
        if prefix == keys::BODY {
            if let Err(error) = records::decode::<JobBody>("body", value) {
                problems.push(format!("job {job_id}: {}", error.message));
            }
        }
        if storage.get(&keys::job(project_id, job_id))?.is_none() {
            problems.push(format!(
                "a {what} is stored for job {job_id}, which does not exist"
            ));
        }
        Ok(true)
    })?;
    if prefix == keys::BODY {
        report.bodies = count;
    } else {
        report.results = count;
    }
    for problem in problems {
        report.problem(problem);
    }
    Ok(())
}

/// Checks that every progress, execution and log record belongs to an existing job.
fn check_history(storage: &dyn Storage, report: &mut CheckReport) -> Result<(), StorageError> {
    let mut problems = Vec::new();
    let mut count = 0u64;
    let mut last_job: Option<(ProjectId, JobId)> = None;
    let (start, end) = keys::prefix_range(keys::JOB_HISTORY);
    try_scan(storage, &start, &end, &mut |key, _| {
        count += 1;
        let Some(owner) = key.get(..25).and_then(parse_job_owned) else {
            problems.push(format!("history key {} is malformed", hex::encode(key)));
            return Ok(true);
        };
        // Records of one job are adjacent: look each job up once.
        if last_job != Some(owner) {
            last_job = Some(owner);
            let (project_id, job_id) = owner;
            if storage.get(&keys::job(project_id, job_id))?.is_none() {
                problems.push(format!(
                    "history is stored for job {job_id}, which does not exist"
                ));
            }
        }
        Ok(true)
    })?;
    report.history_records = count;
    for problem in problems {
        report.problem(problem);
    }
    Ok(())
}

/// Checks that every dependency edge is well formed and its child exists (a purged parent
/// takes its edges with it; a purged child may leave its parent's edge behind).
fn check_edges(storage: &dyn Storage, report: &mut CheckReport) -> Result<(), StorageError> {
    let mut problems = Vec::new();
    let mut count = 0u64;
    let (start, end) = keys::prefix_range(keys::CHILD);
    storage.scan(&start, &end, &mut |key, _| {
        count += 1;
        if keys::parse_child(key).is_none() {
            problems.push(format!(
                "dependency edge key {} is malformed",
                hex::encode(key)
            ));
        }
        true
    })?;
    report.dependency_edges = count;
    for problem in problems {
        report.problem(problem);
    }
    Ok(())
}

/// What is wrong with the execution a finished job's index entry holds, if anything: it
/// must be the job's last execution, stored nowhere else.
fn check_final_execution(
    storage: &dyn Storage,
    project_id: ProjectId,
    job_id: JobId,
    record: &JobRecord,
    value: &[u8],
) -> Result<Option<String>, StorageError> {
    let info = match records::decode::<ExecutionInfo>("execution", value) {
        Ok(info) => info,
        Err(error) => {
            return Ok(Some(format!(
                "index entry of job {job_id}: {}",
                error.message
            )))
        }
    };
    if info.execution != record.executions {
        return Ok(Some(format!(
            "index entry of job {job_id} holds execution {}, but its last is {}",
            info.execution, record.executions
        )));
    }
    if storage
        .get(&keys::execution(project_id, job_id, info.execution))?
        .is_some()
    {
        return Ok(Some(format!(
            "execution {} of job {job_id} is stored twice",
            info.execution
        )));
    }
    Ok(None)
}

/// Checks that every index entry points at a job of that queue in that state.
fn check_index(
    storage: &dyn Storage,
    queues: &HashMap<u64, KnownQueue>,
    report: &mut CheckReport,
) -> Result<(), StorageError> {
    let mut problems = Vec::new();
    let (start, end) = keys::prefix_range(keys::QUEUE_INDEX);
    try_scan(storage, &start, &end, &mut |key, _| {
        report.index_entries += 1;
        let Some(job_id) = keys::parse_queue_index(key) else {
            problems.push(format!("index key {} is malformed", hex::encode(key)));
            return Ok(true);
        };
        let queue_id = u64::from_be_bytes(key[1..9].try_into().unwrap_or([0; 8]));
        let Some(tag) = StateTag::INDEXED
            .iter()
            .copied()
            .find(|tag| *tag as u8 == key[9])
        else {
            problems.push(format!(
                "index entry of job {job_id} has state tag {}",
                key[9]
            ));
            return Ok(true);
        };
        let Some(queue) = queues.get(&queue_id) else {
            problems.push(format!(
                "index entry of job {job_id} names queue id {queue_id}, which does not exist"
            ));
            return Ok(true);
        };
        match storage.get(&keys::job(queue.project_id, job_id))? {
            Some(value) => match records::decode::<JobRecord>("job", &value) {
                Ok(record) if record.queue_id != queue_id || record.state != tag => {
                    problems.push(format!(
                        "index entry says job {job_id} is {} in queue {:?}, but it is {}",
                        state_name(tag),
                        queue.name,
                        state_name(record.state)
                    ))
                }
                // A record that does not decode is reported by the job pass.
                _ => {}
            },
            None => problems.push(format!(
                "index entry for job {job_id} in queue {:?}, which does not exist",
                queue.name
            )),
        }
        Ok(true)
    })?;
    for problem in problems {
        report.problem(problem);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use taskforge_protocol::NewJob;

    use super::*;
    use crate::broker::core::Core;
    use crate::storage::{MemoryStorage, Write};

    /// A store written by the real core: two queues, jobs in several states.
    fn consistent_store() -> (MemoryStorage, JobId) {
        let mut core = Core::new(3, Default::default());
        let now_ms = 1_000;
        core.queue_create(1, "mail", &Default::default(), now_ms)
            .expect("queue");
        core.queue_create(2, "mail", &Default::default(), now_ms)
            .expect("queue in another project");
        let job = NewJob {
            queue: "mail".into(),
            payload: b"hello".to_vec(),
            ..NewJob::default()
        };
        let created = core
            .enqueue(
                1,
                vec![job.clone(), job.clone()],
                &Default::default(),
                now_ms,
            )
            .expect("enqueue");
        core.enqueue(2, vec![job], &Default::default(), now_ms)
            .expect("enqueue");
        let storage = MemoryStorage::new();
        let (writes, _) = core.take_writes();
        storage.apply(&writes).expect("apply");
        (storage, created[0].job_id)
    }

    #[test]
    fn a_store_written_by_the_core_is_consistent() {
        let (storage, _) = consistent_store();
        let report = check(&storage).expect("check");
        assert!(report.is_consistent(), "{:?}", report.problems);
        assert_eq!(report.queues, 2);
        assert_eq!(report.jobs, 3);
        assert_eq!(report.bodies, 3);
        assert_eq!(report.index_entries, 0, "live jobs are listed from memory");
        assert_eq!(report.jobs_by_state[0], ("pending".to_string(), 3));
    }

    #[test]
    fn missing_bodies_and_stray_index_entries_are_reported() {
        let (storage, job_id) = consistent_store();
        let queue_id = 1;
        storage
            .apply(&[
                Write::Delete(keys::body(1, job_id)),
                Write::Put(
                    keys::queue_index(queue_id, StateTag::Dead, JobId([7; 16])),
                    Vec::new(),
                ),
                Write::Put(vec![0x42, 1, 2], Vec::new()),
            ])
            .expect("damage");
        let report = check(&storage).expect("check");
        assert_eq!(report.problems_total, 3, "{:?}", report.problems);
        assert!(report
            .problems
            .iter()
            .any(|problem| problem.contains("no body")));
        assert!(report
            .problems
            .iter()
            .any(|problem| problem.contains("unknown prefix")));
    }

    #[test]
    fn an_execution_held_by_an_index_entry_must_be_the_last_and_stored_once() {
        use crate::broker::core::FetchPlan;
        let mut core = Core::new(4, Default::default());
        let now_ms = 1_000;
        core.queue_create(1, "acked", &Default::default(), now_ms)
            .expect("queue");
        let job = NewJob {
            queue: "acked".into(),
            payload: b"hello".to_vec(),
            ..NewJob::default()
        };
        core.enqueue(1, vec![job.clone(), job], &Default::default(), now_ms)
            .expect("enqueue");
        let plan = FetchPlan::queues(vec![1], 2, None);
        let leased = core.fetch(1, &plan, now_ms).expect("fetch");
        for delivery in &leased {
            core.ack(1, delivery.job_id, delivery.lease_id, None, now_ms)
                .expect("ack");
        }
        let storage = MemoryStorage::new();
        let (writes, _) = core.take_writes();
        storage.apply(&writes).expect("apply");
        let report = check(&storage).expect("check");
        assert!(report.is_consistent(), "{:?}", report.problems);
        assert_eq!(report.index_entries, 2);
        assert_eq!(
            report.history_records, 0,
            "each execution is in its index entry"
        );

        let (twice, garbled) = (leased[0].job_id, leased[1].job_id);
        let held = storage
            .get(&keys::queue_index(1, StateTag::Succeeded, twice))
            .expect("read")
            .expect("entry");
        storage
            .apply(&[
                Write::Put(keys::execution(1, twice, 1), held),
                Write::Put(
                    keys::queue_index(1, StateTag::Succeeded, garbled),
                    vec![0xFF; 3],
                ),
            ])
            .expect("damage");
        let report = check(&storage).expect("check");
        assert_eq!(report.problems_total, 2, "{:?}", report.problems);
        assert!(report
            .problems
            .iter()
            .any(|problem| problem.contains("execution 1 of job")
                && problem.contains("stored twice")));
        assert!(report
            .problems
            .iter()
            .any(|problem| problem.contains(&format!("index entry of job {garbled}"))));
    }
}
