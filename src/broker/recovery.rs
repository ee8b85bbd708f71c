//! Start-up recovery: rebuilds the core's memory from storage. Also used after a storage
//! failure, so that memory never claims more than storage holds.

use std::time::Instant;

use crate::storage::keys;
use crate::storage::records::{self, ApiKeyRecord, JobRecord, QueueRecord, UserRecord};
use crate::storage::{try_scan, Storage, StorageError};
use taskforge_protocol::{Project, ScheduleInfo, WorkerInfo};

use super::core::tenants::OrgEntry;
use super::core::{Core, Settings};

/// What recovery found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Queues restored.
    pub queues: u64,
    /// Live jobs restored into memory.
    pub live_jobs: u64,
    /// Finished jobs counted.
    pub finished_jobs: u64,
    /// Wall time the rebuild took.
    pub duration_ms: u64,
}

fn read_counter(storage: &dyn Storage, key: &[u8]) -> Result<Option<u64>, StorageError> {
    match storage.get(key)? {
        None => Ok(None),
        Some(bytes) => {
            let bytes: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
                StorageError::new("read", format!("meta counter {key:?} is not 8 bytes"))
            })?;
            Ok(Some(u64::from_be_bytes(bytes)))
        }
    }
}

/// Decodes every record of one type, failing at the first that does not decode.
fn scan_records<T: bincode::Decode<()>>(
    storage: &dyn Storage,
    prefix: u8,
    what: &'static str,
) -> Result<Vec<T>, StorageError> {
    records::scan_decoded(storage, prefix, what)?
        .into_iter()
        .collect()
}

/// Restores organizations, users, projects and API keys.
fn restore_directory(storage: &dyn Storage, core: &mut Core) -> Result<(), StorageError> {
    for entry in scan_records::<OrgEntry>(storage, keys::ORG, "organization")? {
        core.restore_org(entry);
    }
    for record in scan_records::<UserRecord>(storage, keys::USER, "user")? {
        core.restore_user(record);
    }
    for project in scan_records::<Project>(storage, keys::PROJECT, "project")? {
        core.restore_project(project);
    }
    for record in scan_records::<ApiKeyRecord>(storage, keys::API_KEY, "API key")? {
        core.restore_key(record);
    }
    Ok(())
}

/// Restores workers (before jobs, whose leases name them) and the worker id counter.
fn restore_workers(
    storage: &dyn Storage,
    core: &mut Core,
    now_ms: u64,
) -> Result<(), StorageError> {
    core.restore_worker_id_next(read_counter(storage, keys::META_WORKER_ID_NEXT)?);
    let (start, end) = keys::prefix_range(keys::WORKER);
    try_scan(storage, &start, &end, &mut |key, value| {
        let project_id = key
            .get(1..9)
            .and_then(|bytes| bytes.try_into().ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| StorageError::new("read", "worker key too short"))?;
        core.restore_worker(
            project_id,
            records::decode::<WorkerInfo>("worker", value)?,
            now_ms,
        );
        Ok(true)
    })
}

/// Restores the dependency edges between live jobs (after the jobs).
fn restore_edges(storage: &dyn Storage, core: &mut Core) -> Result<(), StorageError> {
    let (start, end) = keys::prefix_range(keys::CHILD);
    try_scan(storage, &start, &end, &mut |key, _| {
        let (_, parent, child) = keys::parse_child(key)
            .ok_or_else(|| StorageError::new("read", "malformed dependency edge key"))?;
        core.restore_edge(parent, child);
        Ok(true)
    })
}

/// Restores cron schedules and the schedule id counter. Each schedule's missed-run policy
/// is applied here, comparing its stored next fire time with `now_ms`
/// ([`Core::restore_schedule`]).
fn restore_schedules(
    storage: &dyn Storage,
    core: &mut Core,
    now_ms: u64,
) -> Result<(), StorageError> {
    core.restore_schedule_id_next(read_counter(storage, keys::META_SCHEDULE_ID_NEXT)?);
    let (start, end) = keys::prefix_range(keys::SCHEDULE);
    try_scan(storage, &start, &end, &mut |key, value| {
        let project_id = key
            .get(1..9)
            .and_then(|bytes| bytes.try_into().ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| StorageError::new("read", "schedule key too short"))?;
        core.restore_schedule(
            project_id,
            records::decode::<ScheduleInfo>("schedule", value)?,
            now_ms,
        );
        Ok(true)
    })
}

/// Counts the log lines of every running execution, so the per-execution cap holds
/// across restarts. Bounded by the cap times the leased jobs.
fn restore_log_lines(storage: &dyn Storage, core: &mut Core) -> Result<(), StorageError> {
    for (project_id, job_id, execution) in core.open_executions() {
        let (start, end) = keys::log_range(project_id, job_id, execution, 0);
        let mut lines = 0u32;
        storage.scan(&start, &end, &mut |_, _| {
            lines += 1;
            true
        })?;
        core.restore_log_lines(job_id, lines);
    }
    Ok(())
}

/// Builds a core from everything in `storage`.
pub fn rebuild(
    storage: &dyn Storage,
    seed: u64,
    settings: Settings,
    now_ms: u64,
) -> Result<(Core, RecoveryReport), StorageError> {
    let started = Instant::now();
    let mut core = Core::new(seed, settings);
    let mut report = RecoveryReport::default();
    core.restore_counters(
        read_counter(storage, keys::META_LEASE_RESERVED)?,
        read_counter(storage, keys::META_QUEUE_ID_NEXT)?,
    );
    let (start, end) = keys::queue_range();
    try_scan(storage, &start, &end, &mut |key, value| {
        let project_id = key
            .get(1..9)
            .and_then(|bytes| bytes.try_into().ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| StorageError::new("read", "queue key too short"))?;
        core.restore_queue(project_id, records::decode::<QueueRecord>("queue", value)?);
        report.queues += 1;
        Ok(true)
    })?;
    restore_directory(storage, &mut core)?;
    core.ensure_defaults(now_ms);
    restore_workers(storage, &mut core, now_ms)?;
    let (start, end) = keys::job_range();
    try_scan(storage, &start, &end, &mut |key, value| {
        let (_, job_id) =
            keys::parse_job(key).ok_or_else(|| StorageError::new("read", "malformed job key"))?;
        let record = records::decode::<JobRecord>("job", value)?;
        let finished = record.state.is_finished();
        if !core.restore_job(job_id, record, now_ms) {
            return Err(StorageError::new(
                "read",
                format!("job {job_id} refers to a queue that does not exist"),
            ));
        }
        if finished {
            report.finished_jobs += 1;
        } else {
            report.live_jobs += 1;
        }
        Ok(true)
    })?;
    core.finish_restore();
    restore_edges(storage, &mut core)?;
    restore_schedules(storage, &mut core, now_ms)?;
    restore_log_lines(storage, &mut core)?;
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok((core, report))
}
