//! Every stored key, built in one place.
//!
//! All records live in one sled tree so that one batch makes a whole group of changes
//! atomic. The first byte says what a key is; integers are big-endian and fixed-width so
//! that byte order is numeric order (bincode varints are not order-preserving and are never
//! used in keys). Every project-owned key carries the project id right after the prefix:
//! tenancy is in the key layout from day one.
//!
//! | prefix | layout                                   | value                         |
//! |--------|------------------------------------------|-------------------------------|
//! | `0x00` | name bytes                               | meta counters (u64 BE)        |
//! | `0x01` | project u64, queue name bytes            | [`super::records::QueueRecord`] |
//! | `0x02` | project u64, job id (16)                 | [`super::records::JobRecord`] (mutable state) |
//! | `0x03` | project u64, job id (16)                 | [`super::records::JobBody`] (immutable payload) |
//! | `0x04` | project u64, job id (16)                 | result bytes                  |
//! | `0x05` | queue id u64, state tag u8, job id (16)  | finished jobs of a queue by state ([`StateTag::INDEXED`]): the [`taskforge_protocol::ExecutionInfo`] whose end finished the job, or empty if none did |
//! | `0x06` | project u64, job id (16), `0x00`         | [`taskforge_protocol::ProgressInfo`] |
//! | `0x06` | project u64, job id (16), `0x01`, execution u32 | [`taskforge_protocol::ExecutionInfo`] (ended, and not held by the job's `0x05` entry) |
//! | `0x06` | project u64, job id (16), `0x02`, execution u32, seq u32 | [`taskforge_protocol::LogLine`] |
//! | `0x07` | project u64, worker id u64               | [`taskforge_protocol::WorkerInfo`] |
//! | `0x08` | project u64, parent job id (16), child job id (16) | empty: dependency edges |
//! | `0x09` | project u64, schedule id u64             | [`taskforge_protocol::ScheduleInfo`] |
//! | `0x10` | org id u64                               | organization with subscription |
//! | `0x11` | user id u64                              | [`super::records::UserRecord`] |
//! | `0x12` | project id u64                           | [`taskforge_protocol::Project`] |
//! | `0x13` | key id bytes                             | [`super::records::ApiKeyRecord`] |

use taskforge_protocol::{JobId, ProjectId};

use super::records::StateTag;

/// Prefix of meta counters.
pub const META: u8 = 0x00;
/// Prefix of queue records.
pub const QUEUE: u8 = 0x01;
/// Prefix of job state records.
pub const JOB: u8 = 0x02;
/// Prefix of job bodies.
pub const BODY: u8 = 0x03;
/// Prefix of job results.
pub const RESULT: u8 = 0x04;
/// Prefix of the per-queue, per-state job index.
pub const QUEUE_INDEX: u8 = 0x05;

/// Prefix of a job's history: progress, ended executions and log lines, all under the
/// job so that one range delete removes them.
pub const JOB_HISTORY: u8 = 0x06;
/// Prefix of worker records.
pub const WORKER: u8 = 0x07;
/// Prefix of dependency edges, by parent.
pub const CHILD: u8 = 0x08;
/// Prefix of schedule records.
pub const SCHEDULE: u8 = 0x09;

/// Kinds of [`JOB_HISTORY`] records, after the job id.
const HISTORY_PROGRESS: u8 = 0x00;
const HISTORY_EXECUTION: u8 = 0x01;
const HISTORY_LOG: u8 = 0x02;

/// Prefix of organizations.
pub const ORG: u8 = 0x10;
/// Prefix of users.
pub const USER: u8 = 0x11;
/// Prefix of projects.
pub const PROJECT: u8 = 0x12;
/// Prefix of API keys.
pub const API_KEY: u8 = 0x13;

/// The key of a directory record with a numeric id.
fn numbered(prefix: u8, id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(9);
    key.push(prefix);
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// The key of an organization.
pub fn org(org_id: u64) -> Vec<u8> {
    numbered(ORG, org_id)
}

/// The key of a user.
pub fn user(user_id: u64) -> Vec<u8> {
    numbered(USER, user_id)
}

/// The key of a project.
pub fn project(project_id: u64) -> Vec<u8> {
    numbered(PROJECT, project_id)
}

/// The key of an API key.
pub fn api_key(key_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + key_id.len());
    key.push(API_KEY);
    key.extend_from_slice(key_id.as_bytes());
    key
}

/// First and one-past-last key of one record type.
pub fn prefix_range(prefix: u8) -> (Vec<u8>, Vec<u8>) {
    (vec![prefix], vec![prefix + 1])
}

/// First byte no key ever starts with, so `[]..[KEY_PREFIX_END]` covers every stored key
/// (exports, backups and checks scan that range). New prefixes stay below it.
pub const KEY_PREFIX_END: u8 = 0xFF;

const _: () = assert!(CHILD < SCHEDULE && SCHEDULE < ORG && API_KEY < KEY_PREFIX_END);

/// First and one-past-last key of the whole store.
pub fn all_range() -> (Vec<u8>, Vec<u8>) {
    (Vec::new(), vec![KEY_PREFIX_END])
}

/// Meta key holding the first lease id not yet reserved.
pub const META_LEASE_RESERVED: &[u8] = b"\x00lease_reserved";
/// Meta key holding the next queue id.
pub const META_QUEUE_ID_NEXT: &[u8] = b"\x00queue_id_next";
/// Meta key holding the next worker id.
pub const META_WORKER_ID_NEXT: &[u8] = b"\x00worker_id_next";
/// Meta key holding the next schedule id.
pub const META_SCHEDULE_ID_NEXT: &[u8] = b"\x00schedule_id_next";
/// Meta key holding the storage schema version.
pub const META_SCHEMA_VERSION: &[u8] = b"\x00schema_version";

/// The key of a queue record.
pub fn queue(project_id: ProjectId, name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(9 + name.len());
    key.push(QUEUE);
    key.extend_from_slice(&project_id.to_be_bytes());
    key.extend_from_slice(name.as_bytes());
    key
}

/// First and one-past-last key of all queue records.
pub fn queue_range() -> (Vec<u8>, Vec<u8>) {
    (vec![QUEUE], vec![QUEUE + 1])
}

/// The key of a job-owned record (`JOB`, `BODY` or `RESULT`).
pub fn job_owned(prefix: u8, project_id: ProjectId, job_id: JobId) -> Vec<u8> {
    let mut key = Vec::with_capacity(25);
    key.push(prefix);
    key.extend_from_slice(&project_id.to_be_bytes());
    key.extend_from_slice(&job_id.0);
    key
}

/// The key of a job's state record.
pub fn job(project_id: ProjectId, job_id: JobId) -> Vec<u8> {
    job_owned(JOB, project_id, job_id)
}

/// The key of a job's body.
pub fn body(project_id: ProjectId, job_id: JobId) -> Vec<u8> {
    job_owned(BODY, project_id, job_id)
}

/// The key of a job's result.
pub fn result(project_id: ProjectId, job_id: JobId) -> Vec<u8> {
    job_owned(RESULT, project_id, job_id)
}

/// First and one-past-last key of all job state records.
pub fn job_range() -> (Vec<u8>, Vec<u8>) {
    (vec![JOB], vec![JOB + 1])
}

/// Splits a job state key into project and job id.
pub fn parse_job(key: &[u8]) -> Option<(ProjectId, JobId)> {
    if key.len() != 25 || key[0] != JOB {
        return None;
    }
    let project_id = u64::from_be_bytes(key[1..9].try_into().ok()?);
    let job_id = JobId(key[9..25].try_into().ok()?);
    Some((project_id, job_id))
}

/// First and one-past-last key of everything in a job's history.
pub fn history_range(project_id: ProjectId, job_id: JobId) -> (Vec<u8>, Vec<u8>) {
    let start = job_owned(JOB_HISTORY, project_id, job_id);
    let mut end = start.clone();
    end.push(0xFF);
    (start, end)
}

/// The key of a job's last progress report.
pub fn progress(project_id: ProjectId, job_id: JobId) -> Vec<u8> {
    let mut key = job_owned(JOB_HISTORY, project_id, job_id);
    key.push(HISTORY_PROGRESS);
    key
}

/// The key of one ended execution of a job.
pub fn execution(project_id: ProjectId, job_id: JobId, execution: u32) -> Vec<u8> {
    let mut key = job_owned(JOB_HISTORY, project_id, job_id);
    key.push(HISTORY_EXECUTION);
    key.extend_from_slice(&execution.to_be_bytes());
    key
}

/// The range of a job's ended executions numbered above `after`.
pub fn execution_range(project_id: ProjectId, job_id: JobId, after: u32) -> (Vec<u8>, Vec<u8>) {
    let mut end = job_owned(JOB_HISTORY, project_id, job_id);
    end.push(HISTORY_EXECUTION + 1);
    (execution(project_id, job_id, after.saturating_add(1)), end)
}

/// The key of one log line.
pub fn log_line(project_id: ProjectId, job_id: JobId, execution: u32, seq: u32) -> Vec<u8> {
    let mut key = job_owned(JOB_HISTORY, project_id, job_id);
    key.push(HISTORY_LOG);
    key.extend_from_slice(&execution.to_be_bytes());
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The range of an execution's log lines numbered above `after`.
pub fn log_range(
    project_id: ProjectId,
    job_id: JobId,
    execution: u32,
    after: u32,
) -> (Vec<u8>, Vec<u8>) {
    let start = log_line(project_id, job_id, execution, after.saturating_add(1));
    let mut end = job_owned(JOB_HISTORY, project_id, job_id);
    match execution.checked_add(1) {
        Some(next) => {
            end.push(HISTORY_LOG);
            end.extend_from_slice(&next.to_be_bytes());
        }
        None => end.push(HISTORY_LOG + 1),
    }
    (start, end)
}

/// The key of a dependency edge.
pub fn child(project_id: ProjectId, parent: JobId, child: JobId) -> Vec<u8> {
    let mut key = job_owned(CHILD, project_id, parent);
    key.extend_from_slice(&child.0);
    key
}

/// The range of a job's child edges.
pub fn children_range(project_id: ProjectId, parent: JobId) -> (Vec<u8>, Vec<u8>) {
    let start = job_owned(CHILD, project_id, parent);
    let mut end = start.clone();
    end.push(0xFF);
    (start, end)
}

/// Splits a dependency edge key into project, parent and child.
pub fn parse_child(key: &[u8]) -> Option<(ProjectId, JobId, JobId)> {
    if key.len() != 41 || key[0] != CHILD {
        return None;
    }
    let project_id = u64::from_be_bytes(key[1..9].try_into().ok()?);
    Some((
        project_id,
        JobId(key[9..25].try_into().ok()?),
        JobId(key[25..41].try_into().ok()?),
    ))
}

/// The key of a worker record.
pub fn worker(project_id: ProjectId, worker_id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(17);
    key.push(WORKER);
    key.extend_from_slice(&project_id.to_be_bytes());
    key.extend_from_slice(&worker_id.to_be_bytes());
    key
}

/// The key of a schedule record.
pub fn schedule(project_id: ProjectId, schedule_id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(17);
    key.push(SCHEDULE);
    key.extend_from_slice(&project_id.to_be_bytes());
    key.extend_from_slice(&schedule_id.to_be_bytes());
    key
}

/// The index key of a finished job in a queue and state ([`StateTag::INDEXED`]).
pub fn queue_index(queue_id: u64, state: StateTag, job_id: JobId) -> Vec<u8> {
    queue_index_tagged(queue_id, state as u8, job_id)
}

/// The index key with a raw tag byte, for migrations between index layouts.
pub fn queue_index_tagged(queue_id: u64, tag: u8, job_id: JobId) -> Vec<u8> {
    let mut key = Vec::with_capacity(26);
    key.push(QUEUE_INDEX);
    key.extend_from_slice(&queue_id.to_be_bytes());
    key.push(tag);
    key.extend_from_slice(&job_id.0);
    key
}

/// The index range of a queue's jobs in one state, starting after `after` if given.
pub fn queue_index_range(
    queue_id: u64,
    state: StateTag,
    after: Option<JobId>,
) -> (Vec<u8>, Vec<u8>) {
    let mut start = Vec::with_capacity(27);
    start.push(QUEUE_INDEX);
    start.extend_from_slice(&queue_id.to_be_bytes());
    start.push(state as u8);
    let mut end = start.clone();
    if let Some(after) = after {
        start.extend_from_slice(&after.0);
        // The smallest key strictly greater than `after`'s key.
        start.push(0);
    }
    let last = end.len() - 1;
    end[last] += 1;
    (start, end)
}

/// The job id at the end of an index key.
pub fn parse_queue_index(key: &[u8]) -> Option<JobId> {
    if key.len() != 26 || key[0] != QUEUE_INDEX {
        return None;
    }
    Some(JobId(key[10..26].try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_keys_sort_by_project_then_time_ordered_id() {
        let early = JobId([1; 16]);
        let late = JobId([2; 16]);
        assert!(job(1, early) < job(1, late));
        assert!(job(1, late) < job(2, early));
        assert_eq!(parse_job(&job(7, late)), Some((7, late)));
    }

    #[test]
    fn index_range_excludes_the_cursor_and_other_states() {
        let id = JobId([9; 16]);
        let key = queue_index(3, StateTag::Dead, id);
        let (start, end) = queue_index_range(3, StateTag::Dead, None);
        assert!(start <= key && key < end);
        let (start, _) = queue_index_range(3, StateTag::Dead, Some(id));
        assert!(key < start);
        let (_, end) = queue_index_range(3, StateTag::Succeeded, None);
        assert!(end <= queue_index(3, StateTag::Dead, JobId([0; 16])));
        assert_eq!(parse_queue_index(&key), Some(id));
    }

    #[test]
    fn history_ranges_hold_exactly_their_records() {
        let job_id = JobId([5; 16]);
        let (all_start, all_end) = history_range(2, job_id);
        let keys = [
            progress(2, job_id),
            execution(2, job_id, 1),
            execution(2, job_id, u32::MAX),
            log_line(2, job_id, 1, 1),
            log_line(2, job_id, u32::MAX, u32::MAX),
        ];
        for key in &keys {
            assert!(all_start <= *key && *key < all_end, "{key:?}");
        }
        assert!(job_owned(JOB_HISTORY, 2, JobId([6; 16])) >= all_end);
        let (start, end) = execution_range(2, job_id, 1);
        assert!(execution(2, job_id, 1) < start && execution(2, job_id, 2) >= start);
        assert!(execution(2, job_id, u32::MAX) < end && log_line(2, job_id, 0, 0) >= end);
        let (start, end) = log_range(2, job_id, 3, 4);
        assert!(log_line(2, job_id, 3, 4) < start && log_line(2, job_id, 3, 5) >= start);
        assert!(log_line(2, job_id, 3, u32::MAX) < end && log_line(2, job_id, 4, 0) >= end);
        let (_, end) = log_range(2, job_id, u32::MAX, 0);
        assert!(log_line(2, job_id, u32::MAX, u32::MAX) < end && end <= all_end);
    }
}
