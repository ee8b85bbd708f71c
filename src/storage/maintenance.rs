//! Offline maintenance of a data directory: the work behind `taskforge storage ...`.
//!
//! Every function here opens the sled store itself, so the broker must not be running:
//! sled's file lock makes opening fail with a message saying so. Each function closes the
//! store (flushing it) before it returns.
//!
//! Restore and compact build a new store in `<data_dir>/.staging` from a dump and then swap
//! the store files (see [`super::sled_store::is_store_file_name`]): the old ones move to
//! `<data_dir>/.retired`, the new ones into the data directory, and the directory is
//! fsynced. Other files (the root token, backups) stay where they are. A backup is written
//! before anything is replaced, so an interrupted swap is repaired with `restore`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::check::{self, CheckReport};
use super::dump::{self, Backup, DumpError, DumpSummary};
use super::migrations::{self, Migration, MigrationError, MigrationReport};
use super::sled_store::{self, SledOptions, SledStorage};
use super::{journal, Storage, StorageError};

/// Where a new store is built before it replaces the current one.
pub const STAGING_DIR_NAME: &str = ".staging";

/// Where the replaced store files go during the swap.
pub const RETIRED_DIR_NAME: &str = ".retired";

/// How long opening waits for sled's lock before reporting the store in use: long enough
/// for a handle closed a moment ago to let go (see
/// [`SledStorage::open_waiting_for_lock`]), short enough to report a running broker
/// promptly.
pub const LOCK_WAIT_MS: u64 = 2_000;

/// Why an offline operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    /// There is no store in the directory.
    #[error(
        "there is no store in {0} (no `db` file); pass the broker's data directory with \
         --data-dir or TASKFORGE_DATA_DIR"
    )]
    NoStore(PathBuf),
    /// The store failed (including: in use by a running broker).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A dump or backup failed.
    #[error(transparent)]
    Dump(#[from] DumpError),
    /// A migration failed.
    #[error(transparent)]
    Migration(#[from] MigrationError),
    /// Moving files failed.
    #[error("{what} ({path}): {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What the OS reported.
        source: io::Error,
    },
    /// An earlier restore or compact stopped while swapping files.
    #[error(
        "an earlier restore or compact stopped while swapping store files ({0} exists); \
         restore the backup it wrote with `taskforge storage restore \
         <data dir>/backups/<newest>/store.tfdump`"
    )]
    InterruptedSwap(PathBuf),
}

fn io_error(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> MaintenanceError {
    let path = path.to_path_buf();
    move |source| MaintenanceError::Io { what, path, source }
}

/// Options for stores opened offline: the defaults, without the background flusher
/// (every operation here syncs explicitly).
fn offline_options() -> SledOptions {
    SledOptions {
        flush_every_ms: None,
        ..SledOptions::default()
    }
}

/// Opens the existing store in `data_dir`, refusing a directory without one, and replays
/// into it what the last run journaled.
pub fn open_existing(data_dir: &Path) -> Result<SledStorage, MaintenanceError> {
    if !sled_store::store_exists(data_dir) {
        return Err(MaintenanceError::NoStore(data_dir.to_path_buf()));
    }
    if data_dir.join(RETIRED_DIR_NAME).exists() {
        return Err(MaintenanceError::InterruptedSwap(
            data_dir.join(RETIRED_DIR_NAME),
        ));
    }
    let storage = SledStorage::open_waiting_for_lock(data_dir, offline_options(), LOCK_WAIT_MS)?;
    // What the last run journaled but did not checkpoint belongs to the store too.
    journal::files::recover(&storage, data_dir)?;
    Ok(storage)
}

/// Runs `work` on the store in `data_dir` and closes it, reporting the first error.
fn with_store<T>(
    data_dir: &Path,
    work: impl FnOnce(&SledStorage) -> Result<T, MaintenanceError>,
) -> Result<T, MaintenanceError> {
    let storage = open_existing(data_dir)?;
    let outcome = work(&storage);
    let closed = storage.flush_and_close();
    let value = outcome?;
    closed?;
    Ok(value)
}

/// The stored schema version and the newest this build knows.
pub fn schema_status(
    data_dir: &Path,
    migrations: &[Migration],
) -> Result<(Option<u64>, u64), MaintenanceError> {
    with_store(data_dir, |storage| {
        Ok((
            migrations::stored_version(storage)?,
            migrations::latest_version(migrations),
        ))
    })
}

/// `taskforge storage migrate --to N`.
pub fn migrate(
    data_dir: &Path,
    migrations: &[Migration],
    target: u64,
) -> Result<MigrationReport, MaintenanceError> {
    with_store(data_dir, |storage| {
        Ok(migrations::migrate_to(
            storage,
            migrations,
            target,
            Some(data_dir),
        )?)
    })
}

/// `taskforge storage rollback`: one version down, with a backup first.
pub fn rollback(
    data_dir: &Path,
    migrations: &[Migration],
) -> Result<MigrationReport, MaintenanceError> {
    with_store(data_dir, |storage| {
        Ok(migrations::rollback(storage, migrations, Some(data_dir))?)
    })
}

/// `taskforge storage backup`: a dump to `out`, or to a new backup directory.
pub fn backup(data_dir: &Path, out: Option<&Path>) -> Result<Backup, MaintenanceError> {
    with_store(data_dir, |storage| match out {
        Some(path) => Ok(Backup {
            path: path.to_path_buf(),
            summary: dump::export_to_file(storage, path)?,
        }),
        None => Ok(dump::write_backup(storage, data_dir)?),
    })
}

/// `taskforge storage check`.
pub fn check(data_dir: &Path) -> Result<CheckReport, MaintenanceError> {
    with_store(data_dir, |storage| Ok(check::check(storage)?))
}

/// What [`restore`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    /// What was restored.
    pub restored: DumpSummary,
    /// The backup of the store that was replaced, when it could be read.
    pub backup_of_replaced: Option<Backup>,
    /// Where the replaced store's files were kept, when no backup of it could be taken
    /// (a damaged store: the usual reason to restore).
    pub replaced_files_kept_in: Option<PathBuf>,
}

/// `taskforge storage restore FILE`: replaces the store in `data_dir` with the dump in
/// `file`. The current store is backed up first; if it cannot be opened (damaged), its
/// files are kept in the backups directory instead. Leftovers of an interrupted swap are
/// cleared. The dump is fully verified before anything is replaced.
pub fn restore(data_dir: &Path, file: &Path) -> Result<RestoreReport, MaintenanceError> {
    fs::create_dir_all(data_dir).map_err(io_error("cannot create", data_dir))?;
    let retired = data_dir.join(RETIRED_DIR_NAME);
    let interrupted = retired.exists();
    let staging = data_dir.join(STAGING_DIR_NAME);
    let restored = build_staging(&staging, |storage| Ok(dump::import_file(file, storage)?))?;
    let mut backup_of_replaced = None;
    if sled_store::store_exists(data_dir) && !interrupted {
        match with_store(data_dir, |storage| {
            Ok(dump::write_backup(storage, data_dir)?)
        }) {
            Ok(backup) => backup_of_replaced = Some(backup),
            // In use by a running broker: refuse rather than swap files under it.
            Err(MaintenanceError::Storage(error))
                if error.message.contains(sled_store::IN_USE_MESSAGE) =>
            {
                remove_dir_if_present(&staging)?;
                return Err(MaintenanceError::Storage(error));
            }
            Err(error) => {
                tracing::warn!(%error, "cannot back up the store being replaced; keeping its files");
            }
        }
    }
    let keep_replaced = backup_of_replaced.is_none();
    let kept = swap_in(data_dir, &staging, keep_replaced)?;
    Ok(RestoreReport {
        restored,
        backup_of_replaced,
        replaced_files_kept_in: kept,
    })
}

/// What [`compact`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactReport {
    /// Bytes on disk before.
    pub size_before_bytes: u64,
    /// Bytes on disk after.
    pub size_after_bytes: u64,
    /// The dump the new store was built from, kept as a backup.
    pub backup: Backup,
}

/// `taskforge storage compact`: exports the store, builds a fresh one from the export and
/// swaps it in, reclaiming the space sled does not reclaim after scattered deletes.
pub fn compact(data_dir: &Path) -> Result<CompactReport, MaintenanceError> {
    let (size_before_bytes, backup) = with_store(data_dir, |storage| {
        let size = storage.size_on_disk_bytes()?;
        Ok((size, dump::write_backup(storage, data_dir)?))
    })?;
    let staging = data_dir.join(STAGING_DIR_NAME);
    build_staging(&staging, |storage| {
        Ok(dump::import_file(&backup.path, storage)?)
    })?;
    swap_in(data_dir, &staging, false)?;
    // Measured on the store as it now lies in the data directory, closed and reopened: sled
    // sizes its files when it closes.
    let size_after_bytes = with_store(data_dir, |storage| Ok(storage.size_on_disk_bytes()?))?;
    Ok(CompactReport {
        size_before_bytes,
        size_after_bytes,
        backup,
    })
}

/// Builds a new store in `staging` (cleared first) with `fill`, and closes it. On failure
/// the staging directory is removed.
fn build_staging(
    staging: &Path,
    fill: impl FnOnce(&SledStorage) -> Result<DumpSummary, MaintenanceError>,
) -> Result<DumpSummary, MaintenanceError> {
    remove_dir_if_present(staging)?;
    let built = (|| {
        let storage = SledStorage::open(staging, offline_options())?;
        let outcome = fill(&storage);
        let closed = storage.flush_and_close();
        let summary = outcome?;
        closed?;
        Ok(summary)
    })();
    if built.is_err() {
        remove_dir_if_present(staging)?;
    }
    built
}

fn remove_dir_if_present(path: &Path) -> Result<(), MaintenanceError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(MaintenanceError::Io {
            what: "cannot remove",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Moves the store files of `data_dir` into `.retired` and those of `staging` into
/// `data_dir`, then fsyncs. The retired files are deleted, or with `keep_retired` moved
/// to `backups/<time>-replaced-store/`, whose path is returned.
fn swap_in(
    data_dir: &Path,
    staging: &Path,
    keep_retired: bool,
) -> Result<Option<PathBuf>, MaintenanceError> {
    let retired = data_dir.join(RETIRED_DIR_NAME);
    if !retired.exists() {
        fs::create_dir(&retired).map_err(io_error("cannot create", &retired))?;
    }
    for name in store_file_names(data_dir)? {
        let from = data_dir.join(&name);
        let to = retired.join(&name);
        remove_dir_or_file_if_present(&to)?;
        fs::rename(&from, &to).map_err(io_error("cannot move aside", &from))?;
    }
    for name in store_file_names(staging)? {
        let from = staging.join(&name);
        fs::rename(&from, data_dir.join(&name))
            .map_err(io_error("cannot move into place", &from))?;
    }
    sync_directory(data_dir)?;
    remove_dir_if_present(staging)?;
    let kept = if keep_retired {
        let backups = data_dir.join(dump::BACKUPS_DIR_NAME);
        fs::create_dir_all(&backups).map_err(io_error("cannot create", &backups))?;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let kept = backups.join(format!("{stamp}-replaced-store"));
        fs::rename(&retired, &kept).map_err(io_error("cannot keep", &retired))?;
        Some(kept)
    } else {
        remove_dir_if_present(&retired)?;
        None
    };
    sync_directory(data_dir)?;
    Ok(kept)
}

fn remove_dir_or_file_if_present(path: &Path) -> Result<(), MaintenanceError> {
    match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_dir() => remove_dir_if_present(path),
        Ok(_) => fs::remove_file(path).map_err(io_error("cannot remove", path)),
        Err(_) => Ok(()),
    }
}

/// Names of the store files in `dir`.
fn store_file_names(dir: &Path) -> Result<Vec<String>, MaintenanceError> {
    let entries = fs::read_dir(dir).map_err(io_error("cannot list", dir))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error("cannot list", dir))?;
        if let Some(name) = entry.file_name().to_str() {
            if sled_store::is_store_file_name(name) {
                names.push(name.to_string());
            }
        }
    }
    Ok(names)
}

fn sync_directory(dir: &Path) -> Result<(), MaintenanceError> {
    fs::File::open(dir)
        .and_then(|directory| directory.sync_all())
        .map_err(io_error("cannot fsync", dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{keys, Write};

    fn store_with(data_dir: &Path, pairs: &[(&[u8], &[u8])]) {
        let storage = SledStorage::open(data_dir, offline_options()).expect("open");
        let writes: Vec<Write> = pairs
            .iter()
            .map(|(key, value)| Write::Put(key.to_vec(), value.to_vec()))
            .collect();
        storage.apply(&writes).expect("apply");
        storage.flush_and_close().expect("close");
    }

    fn value_of(data_dir: &Path, key: &[u8]) -> Option<Vec<u8>> {
        with_store(data_dir, |storage| Ok(storage.get(key)?)).expect("read")
    }

    #[test]
    fn compact_keeps_every_pair_and_the_files_beside_the_store() {
        let data_dir = tempfile::tempdir().expect("temp dir");
        store_with(
            data_dir.path(),
            &[(b"\x01queue", b"one"), (b"\x02job", b"two")],
        );
        fs::write(data_dir.path().join("root_token"), "secret").expect("token");
        let report = compact(data_dir.path()).expect("compact");
        assert!(report.backup.path.exists());
        assert_eq!(report.backup.summary.pairs, 2);
        assert_eq!(value_of(data_dir.path(), b"\x02job"), Some(b"two".to_vec()));
        assert!(data_dir.path().join("root_token").exists());
        assert!(!data_dir.path().join(STAGING_DIR_NAME).exists());
        assert!(!data_dir.path().join(RETIRED_DIR_NAME).exists());
    }

    #[test]
    fn restore_replaces_the_store_and_backs_up_the_old_one() {
        let data_dir = tempfile::tempdir().expect("temp dir");
        store_with(data_dir.path(), &[(b"\x01old", b"1")]);
        let saved = backup(data_dir.path(), None).expect("backup");
        with_store(data_dir.path(), |storage| {
            storage.apply(&[Write::Put(b"\x01new".to_vec(), b"2".to_vec())])?;
            Ok(())
        })
        .expect("write");
        let report = restore(data_dir.path(), &saved.path).expect("restore");
        assert_eq!(report.restored.pairs, 1);
        assert!(report.backup_of_replaced.is_some());
        assert_eq!(value_of(data_dir.path(), b"\x01new"), None);
        assert_eq!(value_of(data_dir.path(), b"\x01old"), Some(b"1".to_vec()));
    }

    #[test]
    fn a_missing_store_is_named_not_created() {
        let data_dir = tempfile::tempdir().expect("temp dir");
        assert!(matches!(
            check(data_dir.path()),
            Err(MaintenanceError::NoStore(_))
        ));
        assert!(!sled_store::store_exists(data_dir.path()));
    }

    #[test]
    fn migrate_and_rollback_work_offline() {
        let data_dir = tempfile::tempdir().expect("temp dir");
        store_with(data_dir.path(), &[(b"\x01queue", b"one")]);
        let report = migrate(data_dir.path(), &migrations::production(), 1).expect("migrate");
        assert_eq!(report.version, 1);
        assert!(matches!(
            rollback(data_dir.path(), &migrations::production()),
            Err(MaintenanceError::Migration(MigrationError::AtBaseline))
        ));
        assert_eq!(
            value_of(data_dir.path(), keys::META_SCHEMA_VERSION),
            Some(1u64.to_be_bytes().to_vec())
        );
    }
}
