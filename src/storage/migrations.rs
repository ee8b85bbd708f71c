//! Storage schema migrations.
//!
//! The store records its schema version under [`keys::META_SCHEMA_VERSION`] (u64,
//! big-endian). A [`Migration`] moves the store from `version - 1` to `version` (`up`) and
//! back (`down`); each direction reads the store through the [`Storage`] trait and returns
//! the writes to make, which are applied together with the new version stamp as one atomic
//! batch and then synced. So after a crash the store is at one version or the next, never
//! between.
//!
//! Version 1 is the baseline layout; version 2 ([`SHARED_LIVE_INDEX`]) gave leased and
//! pending jobs one shared index entry; version 3 ([`LIVE_JOBS_IN_MEMORY`]) dropped those
//! live entries; version 4 ([`FINAL_EXECUTION_IN_INDEX`]), the layout described in
//! [`keys`], keeps the execution that finished a job in its index entry. A fresh, empty
//! store is stamped with the newest version; one holding data but no version (written
//! before versions were stamped) is stamped 1. The list in
//! force is passed in, never global: [`production`] holds the real migrations, and tests
//! pass a longer list with test-only migrations.
//!
//! The server migrates to the newest version at start-up, before the broker opens, with a
//! backup (see [`super::dump`]) taken first; `taskforge storage migrate` and `rollback` do
//! the same offline. A build refuses a store whose version is newer than it knows.
//!
//! Limit: one migration's writes are held in memory and applied as one batch, so a
//! migration that rewrites every record needs memory in proportion to the store.

use std::path::{Path, PathBuf};

use std::collections::HashMap;

use taskforge_protocol::{ExecutionInfo, JobId, ProjectId};

use super::dump::{self, DumpError};
use super::keys;
use super::records::{self, JobRecord, QueueRecord, StateTag};
use super::{try_scan, Storage, StorageError, Write};

/// One direction of a migration: reads the store, returns the writes that change it.
pub type MigrationStep = fn(&dyn Storage) -> Result<Vec<Write>, StorageError>;

/// One version step of the storage schema.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The version this migration produces; the list holds versions 1, 2, 3, ... in order.
    pub version: u64,
    /// What it changes, for logs and `taskforge storage migrate`.
    pub description: &'static str,
    /// From `version - 1` to `version`.
    pub up: MigrationStep,
    /// From `version` back to `version - 1`.
    pub down: MigrationStep,
}

/// The schema version of the layout in [`keys`], stamped on every fresh store.
pub const SCHEMA_VERSION_BASELINE: u64 = 1;

/// A step with nothing to write.
fn no_writes(_: &dyn Storage) -> Result<Vec<Write>, StorageError> {
    Ok(Vec::new())
}

/// The baseline: version 1 is the layout the store was created with; nothing to change.
pub const BASELINE: Migration = Migration {
    version: SCHEMA_VERSION_BASELINE,
    description: "baseline layout: queues, jobs, bodies, results, per-queue state index",
    up: no_writes,
    down: no_writes,
};

/// The index tag byte leased jobs had in version 1.
const LEASED_INDEX_TAG_V1: u8 = StateTag::Leased as u8;
/// The index tag byte of live (pending or leased) jobs from version 2.
const LIVE_INDEX_TAG_V2: u8 = StateTag::Pending as u8;

/// Version 2: leased jobs share the pending jobs' index entry (tag 0, the live entry), so a
/// fetch rewrites only the job record.
pub const SHARED_LIVE_INDEX: Migration = Migration {
    version: 2,
    description: "leased jobs share the pending jobs' index entries",
    up: merge_leased_index_entries,
    down: split_leased_index_entries,
};

/// Moves every leased index entry to the live tag.
fn merge_leased_index_entries(storage: &dyn Storage) -> Result<Vec<Write>, StorageError> {
    let mut writes = Vec::new();
    let (start, end) = keys::prefix_range(keys::QUEUE_INDEX);
    storage.scan(&start, &end, &mut |key, _| {
        if let (Some(job_id), Some(queue_id)) = (keys::parse_queue_index(key), index_queue(key)) {
            if key[9] == LEASED_INDEX_TAG_V1 {
                writes.push(Write::Delete(key.to_vec()));
                writes.push(Write::Put(
                    keys::queue_index_tagged(queue_id, LIVE_INDEX_TAG_V2, job_id),
                    Vec::new(),
                ));
            }
        }
        true
    })?;
    Ok(writes)
}

/// Gives every leased job its own index entry again, found through its record.
fn split_leased_index_entries(storage: &dyn Storage) -> Result<Vec<Write>, StorageError> {
    let mut writes = Vec::new();
    for (queue_id, job_id, state) in live_jobs(storage)? {
        if state == StateTag::Leased {
            writes.push(Write::Delete(keys::queue_index_tagged(
                queue_id,
                LIVE_INDEX_TAG_V2,
                job_id,
            )));
            writes.push(Write::Put(
                keys::queue_index_tagged(queue_id, LEASED_INDEX_TAG_V1, job_id),
                Vec::new(),
            ));
        }
    }
    Ok(writes)
}

/// Version 3: live (pending and leased) jobs have no index entries; the broker lists them
/// from memory, so enqueue and ACK write one key fewer each.
pub const LIVE_JOBS_IN_MEMORY: Migration = Migration {
    version: 3,
    description: "live jobs have no index entries (they are listed from memory)",
    up: drop_live_index_entries,
    down: restore_live_index_entries,
};

/// Deletes every live index entry.
fn drop_live_index_entries(storage: &dyn Storage) -> Result<Vec<Write>, StorageError> {
    let mut writes = Vec::new();
    let (start, end) = keys::prefix_range(keys::QUEUE_INDEX);
    storage.scan(&start, &end, &mut |key, _| {
        if key.get(9) == Some(&LIVE_INDEX_TAG_V2) {
            writes.push(Write::Delete(key.to_vec()));
        }
        true
    })?;
    Ok(writes)
}

/// Gives every live job its version-2 index entry again, found through its record.
fn restore_live_index_entries(storage: &dyn Storage) -> Result<Vec<Write>, StorageError> {
    Ok(live_jobs(storage)?
        .into_iter()
        .map(|(queue_id, job_id, _)| {
            Write::Put(
                keys::queue_index_tagged(queue_id, LIVE_INDEX_TAG_V2, job_id),
                Vec::new(),
            )
        })
        .collect())
}

/// Version 4: the execution whose end finished a job is stored as the value of the job's
/// finished index entry instead of under its own key, which saves every finished job a
/// stored key. Version-3 stores already satisfy the rule (every entry is empty and every
/// execution has its own key: readers look in both places), so going up writes nothing.
pub const FINAL_EXECUTION_IN_INDEX: Migration = Migration {
    version: 4,
    description: "a finished job's index entry holds the execution that finished it",
    up: no_writes,
    down: move_final_executions_to_own_keys,
};

/// Moves every execution held by an index entry back under its own key.
fn move_final_executions_to_own_keys(storage: &dyn Storage) -> Result<Vec<Write>, StorageError> {
    let projects = queue_projects(storage)?;
    let mut writes = Vec::new();
    let (start, end) = keys::prefix_range(keys::QUEUE_INDEX);
    try_scan(storage, &start, &end, &mut |key, value| {
        if value.is_empty() {
            return Ok(true);
        }
        let owner = keys::parse_queue_index(key)
            .zip(index_queue(key).and_then(|queue_id| projects.get(&queue_id)));
        let Some((job_id, project_id)) = owner else {
            return Err(StorageError::new(
                "read",
                format!(
                    "index entry {} holds an execution but names no known queue",
                    hex::encode(key)
                ),
            ));
        };
        let info: ExecutionInfo = records::decode("execution", value)?;
        writes.push(Write::Put(
            keys::execution(*project_id, job_id, info.execution),
            value.to_vec(),
        ));
        writes.push(Write::Put(key.to_vec(), Vec::new()));
        Ok(true)
    })?;
    Ok(writes)
}

/// The project of every stored queue, by queue id.
fn queue_projects(storage: &dyn Storage) -> Result<HashMap<u64, ProjectId>, StorageError> {
    let mut projects = HashMap::new();
    let (start, end) = keys::queue_range();
    try_scan(storage, &start, &end, &mut |key, value| {
        let Some(project_id) = key
            .get(1..9)
            .and_then(|bytes| bytes.try_into().ok())
            .map(u64::from_be_bytes)
        else {
            return Ok(true);
        };
        let record: QueueRecord = records::decode("queue", value)?;
        projects.insert(record.queue_id, project_id);
        Ok(true)
    })?;
    Ok(projects)
}

/// Queue, id and state of every stored job that is pending or leased.
fn live_jobs(storage: &dyn Storage) -> Result<Vec<(u64, JobId, StateTag)>, StorageError> {
    let mut live = Vec::new();
    let (start, end) = keys::prefix_range(keys::JOB);
    try_scan(storage, &start, &end, &mut |key, value| {
        let Some((_, job_id)) = keys::parse_job(key) else {
            return Ok(true);
        };
        let record: JobRecord = records::decode("job", value)?;
        if !record.state.is_finished() {
            live.push((record.queue_id, job_id, record.state));
        }
        Ok(true)
    })?;
    Ok(live)
}

/// The queue id of an index key.
fn index_queue(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(1..9)?.try_into().ok()?))
}

/// The migrations of this build, oldest first.
pub fn production() -> Vec<Migration> {
    vec![
        BASELINE,
        SHARED_LIVE_INDEX,
        LIVE_JOBS_IN_MEMORY,
        FINAL_EXECUTION_IN_INDEX,
    ]
}

/// Why migrating failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// The store failed; nothing past the last completed step was changed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The backup before migrating could not be written; nothing was changed.
    #[error("cannot write the backup taken before migrating: {0}")]
    Backup(#[from] DumpError),
    /// The store was migrated by a newer build.
    #[error(
        "the store is at schema version {stored}, newer than this build knows (up to \
         {latest}); run the build that migrated it, or restore the backup taken before that \
         migration with `taskforge storage restore FILE`"
    )]
    NewerThanBuild {
        /// The stored version.
        stored: u64,
        /// The newest version this build knows.
        latest: u64,
    },
    /// The requested version does not exist in this build.
    #[error("there is no schema version {target}: this build knows versions 1 to {latest}")]
    UnknownTarget {
        /// What was asked for.
        target: u64,
        /// The newest version this build knows.
        latest: u64,
    },
    /// Rollback was asked for at the baseline.
    #[error("the store is at the baseline schema version 1; there is nothing to roll back")]
    AtBaseline,
    /// The migration list itself is wrong (a programming error in the list passed in).
    #[error("invalid migration list: {0}")]
    InvalidList(String),
}

/// One step that ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReport {
    /// Version before the step.
    pub from: u64,
    /// Version after it.
    pub to: u64,
    /// The migration's description.
    pub description: &'static str,
    /// Writes it applied, besides the version stamp.
    pub writes: usize,
}

/// What [`migrate_to`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// The stored version before, `None` if the store had none (it was then stamped 1).
    pub stored_before: Option<u64>,
    /// The version now.
    pub version: u64,
    /// Steps run, in order.
    pub steps: Vec<StepReport>,
    /// The backup taken before the first step, if any step ran and a backup was asked for.
    pub backup: Option<PathBuf>,
}

/// The stored schema version, or `None` for a store that has none.
pub fn stored_version(storage: &dyn Storage) -> Result<Option<u64>, StorageError> {
    match storage.get(keys::META_SCHEMA_VERSION)? {
        None => Ok(None),
        Some(bytes) => match <[u8; 8]>::try_from(bytes.as_slice()) {
            Ok(bytes) => Ok(Some(u64::from_be_bytes(bytes))),
            Err(_) => Err(StorageError::new(
                "read",
                format!(
                    "the stored schema version is {} bytes, not 8: the store is damaged",
                    bytes.len()
                ),
            )),
        },
    }
}

/// The write that records `version`.
fn stamp(version: u64) -> Write {
    Write::Put(
        keys::META_SCHEMA_VERSION.to_vec(),
        version.to_be_bytes().to_vec(),
    )
}

/// The newest version in `migrations`.
pub fn latest_version(migrations: &[Migration]) -> u64 {
    migrations
        .last()
        .map_or(SCHEMA_VERSION_BASELINE, |migration| migration.version)
}

/// Checks that the list is 1, 2, 3, ... with no gap.
fn check_list(migrations: &[Migration]) -> Result<(), MigrationError> {
    if migrations.is_empty() {
        return Err(MigrationError::InvalidList("it is empty".into()));
    }
    for (index, migration) in migrations.iter().enumerate() {
        let expected = index as u64 + 1;
        if migration.version != expected {
            return Err(MigrationError::InvalidList(format!(
                "entry {index} has version {}, expected {expected}",
                migration.version
            )));
        }
    }
    Ok(())
}

/// Stamps an unversioned store: an empty one with `latest` (it is born in the newest
/// layout), one holding data with the baseline. Returns the stored version before and now.
fn stamp_if_unversioned(
    storage: &dyn Storage,
    latest: u64,
) -> Result<(Option<u64>, u64), StorageError> {
    let stored = stored_version(storage)?;
    match stored {
        Some(version) => Ok((stored, version)),
        None => {
            let (start, end) = keys::all_range();
            let mut empty = true;
            storage.scan(&start, &end, &mut |_, _| {
                empty = false;
                false
            })?;
            let version = if empty {
                latest
            } else {
                SCHEMA_VERSION_BASELINE
            };
            storage.apply(&[stamp(version)])?;
            storage.sync()?;
            Ok((None, version))
        }
    }
}

/// Moves the store to `target`, step by step, up or down. When a step is needed and
/// `backup_data_dir` is given, a backup goes to `<backup_data_dir>/backups/` first. Each
/// step's writes and its version stamp are one atomic batch, synced before the next step.
pub fn migrate_to(
    storage: &dyn Storage,
    migrations: &[Migration],
    target: u64,
    backup_data_dir: Option<&Path>,
) -> Result<MigrationReport, MigrationError> {
    check_list(migrations)?;
    let latest = latest_version(migrations);
    let (stored_before, mut version) = stamp_if_unversioned(storage, latest)?;
    if version > latest {
        return Err(MigrationError::NewerThanBuild {
            stored: version,
            latest,
        });
    }
    if target == 0 || target > latest {
        return Err(MigrationError::UnknownTarget { target, latest });
    }
    let mut report = MigrationReport {
        stored_before,
        version,
        steps: Vec::new(),
        backup: None,
    };
    if version == target {
        return Ok(report);
    }
    if let Some(data_dir) = backup_data_dir {
        let backup = dump::write_backup(storage, data_dir)?;
        tracing::info!(
            path = %backup.path.display(),
            pairs = backup.summary.pairs,
            "backup taken before migrating"
        );
        report.backup = Some(backup.path);
    }
    while version != target {
        let (migration, to, step) = if target > version {
            let migration = &migrations[version as usize];
            (migration, version + 1, migration.up)
        } else {
            let migration = &migrations[version as usize - 1];
            (migration, version - 1, migration.down)
        };
        let mut writes = step(storage)?;
        let changed = writes.len();
        writes.push(stamp(to));
        storage.apply(&writes)?;
        storage.sync()?;
        tracing::info!(
            from = version,
            to,
            writes = changed,
            description = migration.description,
            "storage migration step applied"
        );
        report.steps.push(StepReport {
            from: version,
            to,
            description: migration.description,
            writes: changed,
        });
        version = to;
        report.version = version;
    }
    Ok(report)
}

/// Moves the store one version down, with a backup first when `backup_data_dir` is given.
pub fn rollback(
    storage: &dyn Storage,
    migrations: &[Migration],
    backup_data_dir: Option<&Path>,
) -> Result<MigrationReport, MigrationError> {
    check_list(migrations)?;
    let (_, version) = stamp_if_unversioned(storage, latest_version(migrations))?;
    if version <= SCHEMA_VERSION_BASELINE {
        return Err(MigrationError::AtBaseline);
    }
    migrate_to(storage, migrations, version - 1, backup_data_dir)
}

/// What the server runs before opening the broker: stamps a fresh store and migrates to
/// the newest version in `migrations`, with a backup in `data_dir` first if anything is to
/// change.
pub fn run_at_startup(
    storage: &dyn Storage,
    migrations: &[Migration],
    data_dir: &Path,
) -> Result<MigrationReport, MigrationError> {
    migrate_to(
        storage,
        migrations,
        latest_version(migrations),
        Some(data_dir),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;

    const MARKER: &[u8] = b"\x00test_marker";

    fn add_marker(_: &dyn Storage) -> Result<Vec<Write>, StorageError> {
        Ok(vec![Write::Put(MARKER.to_vec(), b"v2".to_vec())])
    }

    fn remove_marker(_: &dyn Storage) -> Result<Vec<Write>, StorageError> {
        Ok(vec![Write::Delete(MARKER.to_vec())])
    }

    fn with_test_migration() -> Vec<Migration> {
        vec![
            BASELINE,
            Migration {
                version: 2,
                description: "test: add a marker",
                up: add_marker,
                down: remove_marker,
            },
        ]
    }

    /// A store at the baseline version.
    fn at_baseline() -> MemoryStorage {
        let storage = MemoryStorage::new();
        storage
            .apply(&[stamp(SCHEMA_VERSION_BASELINE)])
            .expect("stamp");
        storage
    }

    #[test]
    fn a_fresh_store_is_born_at_the_newest_version_and_an_unversioned_one_at_the_baseline() {
        let latest = latest_version(&production());
        let storage = MemoryStorage::new();
        let report = migrate_to(&storage, &production(), latest, None).expect("migrate");
        assert_eq!(report.stored_before, None);
        assert!(report.steps.is_empty());
        assert_eq!(stored_version(&storage), Ok(Some(latest)));

        let storage = MemoryStorage::new();
        storage
            .apply(&[Write::Put(keys::queue(1, "old"), Vec::new())])
            .expect("data without a version");
        let report = migrate_to(&storage, &production(), latest, None).expect("migrate");
        assert_eq!(report.stored_before, None);
        assert_eq!(report.steps.len() as u64, latest - SCHEMA_VERSION_BASELINE);
    }

    #[test]
    fn up_and_down_move_data_and_version_together() {
        let storage = at_baseline();
        let data_dir = tempfile::tempdir().expect("temp dir");
        let migrations = with_test_migration();
        let report = run_at_startup(&storage, &migrations, data_dir.path()).expect("up");
        assert_eq!(report.version, 2);
        assert_eq!(report.steps.len(), 1);
        assert!(report.backup.as_ref().is_some_and(|path| path.exists()));
        assert_eq!(storage.get(MARKER), Ok(Some(b"v2".to_vec())));
        let report = rollback(&storage, &migrations, None).expect("down");
        assert_eq!(report.version, 1);
        assert_eq!(storage.get(MARKER), Ok(None));
        assert!(matches!(
            rollback(&storage, &migrations, None),
            Err(MigrationError::AtBaseline)
        ));
    }

    #[test]
    fn a_newer_store_or_unknown_target_is_refused() {
        let storage = at_baseline();
        migrate_to(&storage, &with_test_migration(), 2, None).expect("up");
        assert!(matches!(
            run_at_startup(&storage, &[BASELINE], Path::new("/nonexistent")),
            Err(MigrationError::NewerThanBuild {
                stored: 2,
                latest: 1
            })
        ));
        assert!(matches!(
            migrate_to(&storage, &with_test_migration(), 3, None),
            Err(MigrationError::UnknownTarget { target: 3, .. })
        ));
    }

    /// A store written by the real core in the current layout, stamped with the newest
    /// version: one leased job and one pending job in queue 1 of project 1; returns their
    /// ids (leased, pending).
    fn store_with_a_leased_job() -> (MemoryStorage, JobId, JobId) {
        use crate::broker::core::{Core, FetchPlan};
        let mut core = Core::new(3, Default::default());
        let now_ms = 1_000;
        core.queue_create(1, "mail", &Default::default(), now_ms)
            .expect("queue");
        let job = taskforge_protocol::NewJob {
            queue: "mail".into(),
            payload: b"hello".to_vec(),
            ..Default::default()
        };
        let created = core
            .enqueue(1, vec![job.clone(), job], &Default::default(), now_ms)
            .expect("enqueue");
        let leased = core
            .fetch(1, &FetchPlan::queues(vec![1], 1, None), now_ms)
            .expect("fetch");
        let storage = MemoryStorage::new();
        let (mut writes, _) = core.take_writes();
        writes.push(stamp(latest_version(&production())));
        storage.apply(&writes).expect("apply");
        let leased = leased[0].job_id;
        let pending = created
            .iter()
            .map(|enqueued| enqueued.job_id)
            .find(|job_id| *job_id != leased)
            .expect("the other job");
        (storage, leased, pending)
    }

    /// The index entries of job `job_id` of queue 1, as raw tag bytes.
    fn index_tags(storage: &MemoryStorage, job_id: JobId) -> Vec<u8> {
        [0u8, 1]
            .into_iter()
            .filter(|tag| {
                storage
                    .get(&keys::queue_index_tagged(1, *tag, job_id))
                    .expect("read")
                    .is_some()
            })
            .collect()
    }

    #[test]
    fn live_index_entries_move_through_versions_3_2_1_and_back() {
        let (storage, leased, pending) = store_with_a_leased_job();
        let consistent = |storage: &MemoryStorage| {
            let report = crate::storage::check::check(storage).expect("check");
            assert!(report.is_consistent(), "{:?}", report.problems);
        };
        consistent(&storage);
        assert_eq!(
            (index_tags(&storage, leased), index_tags(&storage, pending)),
            (vec![], vec![])
        );

        let report = rollback(&storage, &production(), None).expect("4 → 3");
        assert_eq!((report.version, report.steps[0].writes), (3, 0));
        let report = rollback(&storage, &production(), None).expect("3 → 2");
        assert_eq!((report.version, report.steps[0].writes), (2, 2));
        assert_eq!(
            (index_tags(&storage, leased), index_tags(&storage, pending)),
            (vec![0], vec![0])
        );
        let report = rollback(&storage, &production(), None).expect("2 → 1");
        assert_eq!((report.version, report.steps[0].writes), (1, 2));
        assert_eq!(
            (index_tags(&storage, leased), index_tags(&storage, pending)),
            (vec![1], vec![0])
        );

        let report = migrate_to(&storage, &production(), 4, None).expect("1 → 4");
        assert_eq!(
            report
                .steps
                .iter()
                .map(|step| step.writes)
                .collect::<Vec<_>>(),
            vec![2, 2, 0]
        );
        assert_eq!(
            (index_tags(&storage, leased), index_tags(&storage, pending)),
            (vec![], vec![])
        );
        consistent(&storage);
    }

    /// The execution numbers stored for job `job_id` of project 1: those under their own
    /// keys, and the one its index entry in queue 1 holds.
    fn stored_executions(storage: &MemoryStorage, job_id: JobId) -> (Vec<u32>, Option<u32>) {
        let (start, end) = keys::execution_range(1, job_id, 0);
        let mut own = Vec::new();
        storage
            .scan(&start, &end, &mut |_, value| {
                let info: ExecutionInfo = records::decode("execution", value).expect("decode");
                own.push(info.execution);
                true
            })
            .expect("scan");
        let held = StateTag::INDEXED.iter().find_map(|tag| {
            let value = storage
                .get(&keys::queue_index(1, *tag, job_id))
                .expect("read")?;
            let info: Option<ExecutionInfo> =
                (!value.is_empty()).then(|| records::decode("execution", &value).expect("decode"));
            info.map(|info| info.execution)
        });
        (own, held)
    }

    #[test]
    fn final_executions_move_to_their_own_keys_on_rollback_to_3_and_stay_valid_at_4() {
        use crate::broker::core::{Core, Failure, FetchPlan};
        use taskforge_protocol::Retry;
        let mut core = Core::new(3, Default::default());
        let now_ms = 1_000;
        core.queue_create(1, "mail", &Default::default(), now_ms)
            .expect("queue");
        let job = taskforge_protocol::NewJob {
            queue: "mail".into(),
            payload: b"hello".to_vec(),
            ..Default::default()
        };
        core.enqueue(1, vec![job.clone(), job], &Default::default(), now_ms)
            .expect("enqueue");
        let plan = FetchPlan::queues(vec![1], 1, None);
        let once = core.fetch(1, &plan, now_ms).expect("fetch")[0].clone();
        core.ack(1, once.job_id, once.lease_id, None, now_ms)
            .expect("ack");
        let twice = core.fetch(1, &plan, now_ms).expect("fetch")[0].clone();
        core.fail(
            1,
            twice.job_id,
            twice.lease_id,
            Failure::new("flaky", Retry::At(now_ms)),
            now_ms,
        )
        .expect("fail");
        let again = core.fetch(1, &plan, now_ms).expect("fetch")[0].clone();
        assert_eq!(again.job_id, twice.job_id);
        core.ack(1, again.job_id, again.lease_id, None, now_ms)
            .expect("ack");
        let storage = MemoryStorage::new();
        let (mut writes, _) = core.take_writes();
        writes.push(stamp(latest_version(&production())));
        storage.apply(&writes).expect("apply");
        let consistent = |storage: &MemoryStorage| {
            let report = crate::storage::check::check(storage).expect("check");
            assert!(report.is_consistent(), "{:?}", report.problems);
        };
        consistent(&storage);
        assert_eq!(stored_executions(&storage, once.job_id), (vec![], Some(1)));
        assert_eq!(
            stored_executions(&storage, twice.job_id),
            (vec![1], Some(2))
        );

        let report = rollback(&storage, &production(), None).expect("4 → 3");
        assert_eq!((report.version, report.steps[0].writes), (3, 4));
        assert_eq!(stored_executions(&storage, once.job_id), (vec![1], None));
        assert_eq!(
            stored_executions(&storage, twice.job_id),
            (vec![1, 2], None)
        );
        consistent(&storage);

        let report = migrate_to(&storage, &production(), 4, None).expect("3 → 4");
        assert_eq!(report.steps[0].writes, 0);
        consistent(&storage);
    }

    #[test]
    fn a_list_with_gaps_is_refused() {
        let mut migrations = with_test_migration();
        migrations[1].version = 3;
        assert!(matches!(
            migrate_to(&MemoryStorage::new(), &migrations, 1, None),
            Err(MigrationError::InvalidList(_))
        ));
    }
}
