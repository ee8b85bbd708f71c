//! The store of record on sled 0.34.7: every record in sled's default tree, one `Batch` per
//! commit group, and our own `fdatasync` so that [`Storage::sync`] survives power loss.
//!
//! # What sled 0.34.7 does on disk (read from its source, checked by the tests below)
//!
//! - `<dir>/db` holds the whole log: every segment lives in this one file
//!   (`Config::db_path`). sled opens it once, grows it by writing past its end, shrinks it
//!   with `set_len`, and never renames or replaces it, so a handle we open next to sled's
//!   stays valid for the life of the database.
//! - `flush()` writes the IO buffers with `pwrite` and then `sync_file_range`
//!   (`pagecache/iobuf.rs`), which neither flushes the drive's write cache nor persists
//!   metadata (sled issues 1452, 1351). [`SledStorage::sync`] therefore follows every flush
//!   with `fdatasync` (`File::sync_data`) on our handle to `<dir>/db`; `fdatasync` also
//!   persists the file's new length when the log grows.
//! - `<dir>/conf` is written once at creation without fsync; `<dir>/snap.<lsn>` snapshots
//!   are written only while opening (fsynced, then renamed without an fsync of the
//!   directory). [`SledStorage::open`] fsyncs `conf` and the directory once, so no other
//!   top-level file appears while the store runs and `sync` need not fsync the directory.
//! - A log item goes to its own file `<dir>/blobs/<lsn>` instead of the log when
//!   `32 + serialized_len > segment_size / 4 - 20` (`Log::reserve_inner`: a message header
//!   of at most 32 bytes, at least 4 items per segment, a 20-byte segment header). Blob files
//!   are written with `write_all` and never fsynced. A log item is either one key/value
//!   change or, every 10 changes to a leaf and whenever segment cleaning moves it, a whole
//!   leaf; leaves split once they hold more than 16 entries. With the default 512 KiB
//!   segment an item over 131,020 bytes is a blob, which eight 16 KiB values in one leaf
//!   already reach: that is the "values of ~16 KiB" in TECH-NOTES.
//! - On drop of the last handle sled flushes until nothing is dirty (`TreeInner::drop`)
//!   and then fsyncs `<dir>/db` (`Log::drop`, skipped if sled already hit an I/O error).
//! - Corruption is mostly *not* reported: a garbage, empty or missing `db` file opens as a
//!   new empty database, and a damaged stretch in the middle of the log makes sled keep the
//!   prefix before it, drop everything after it, and overwrite the rest with zeroes. sled
//!   returns `Corruption` only for a damaged `conf` or snapshot file. The checkpoint below
//!   is how [`SledStorage::open`] tells a damaged database from a fresh one.
//!
//! # Segment size
//!
//! [`SEGMENT_SIZE_BYTES`] is 16 MiB, the largest sled accepts (a power of two, at most
//! 2^24). It raises the inline limit for one log item to [`LOG_ITEM_INLINE_BYTES_MAX`]
//! (4,194,252 bytes): a record of a maximal job payload plus 4 KiB stays in the log with
//! room to spare, and a whole leaf stays in the log as long as its entries total under
//! 4 MiB: up to 15 such records, or any mix of smaller ones. Only a leaf holding 16 or 17
//! near-maximal records (adjacent keys, all with maximal payloads) can still spill, and
//! [`SledStorage::sync`] fsyncs blob files too, so durability does not depend on that.
//! Costs: sled allocates a 16 MiB IO buffer per segment (touched only as far as it is
//! filled), the data file grows in steps of up to 16 MiB, without a flush up to 16 MiB of
//! writes wait in memory (instead of 512 KiB), and recovery zeroes a torn segment with a
//! 16 MiB write. The size is fixed when a database is created; sled refuses to open it with
//! another.
//!
//! # Checkpoint
//!
//! Each open and each [`SledStorage::flush_and_close`] writes an increasing number both
//! into sled (tree [`META_TREE_NAME`], made durable first) and into the file
//! `<dir>/TASKFORGE_CHECKPOINT` (written to a temporary file, fsynced, renamed, directory
//! fsynced). sled's copy is therefore never behind the file's. On open, if the file exists
//! but sled recovered no database, or a smaller number, sled lost part of its log and
//! `open` fails instead of serving a silently shorter history. Damage to the part of the
//! log written after the last checkpoint looks exactly like a crash and cannot be told
//! apart without an extra fsync per commit.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write as _};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use taskforge_protocol::limits::PAYLOAD_BYTES_MAX_DEFAULT;

use super::{Storage, StorageError, Write};

/// Default sled page-cache budget. sled's own default is 1 GiB and its RSS can exceed the
/// budget several times (TECH-NOTES), so we set a smaller one explicitly.
pub const CACHE_CAPACITY_BYTES_DEFAULT: u64 = 256 * 1024 * 1024;

/// Default period of sled's background flusher. It bounds how much `never` and
/// `interval` policies can lose on a crash; each background flush also fsyncs `db`.
pub const FLUSH_EVERY_MS_DEFAULT: u64 = 500;

/// sled's log segment size, fixed when a database is created. The largest sled accepts;
/// see the module docs for why and what it costs.
pub const SEGMENT_SIZE_BYTES: usize = 16 * 1024 * 1024;

/// The largest log item (one key/value change, or one whole leaf) that sled keeps in its log
/// rather than in an unsynced blob file, given [`SEGMENT_SIZE_BYTES`].
pub const LOG_ITEM_INLINE_BYTES_MAX: usize = SEGMENT_SIZE_BYTES / SLED_LOG_ITEMS_PER_SEGMENT_MIN
    - SLED_SEGMENT_HEADER_BYTES
    - SLED_MESSAGE_HEADER_BYTES_MAX;

/// Largest segment size sled 0.34.7 accepts (`Config::validate`).
const SLED_SEGMENT_SIZE_BYTES_CEILING: usize = 1 << 24;

/// sled's bound on a log message header (`MAX_MSG_HEADER_LEN`).
const SLED_MESSAGE_HEADER_BYTES_MAX: usize = 32;

/// sled's segment header length (`SEG_HEADER_LEN`).
const SLED_SEGMENT_HEADER_BYTES: usize = 20;

/// sled sends a log item to a blob file if fewer than this many would fit in a segment
/// (`MINIMUM_ITEMS_PER_SEGMENT`).
const SLED_LOG_ITEMS_PER_SEGMENT_MIN: usize = 4;

/// The largest single record we promise stays inline: a maximal job payload plus 4 KiB
/// for the rest of the job record and its key.
const RECORD_BYTES_INLINE_TARGET: usize = PAYLOAD_BYTES_MAX_DEFAULT as usize + 4 * 1024;

/// Maximal records one leaf can hold and still be rewritten inline (15 with these sizes).
const LEAF_RECORDS_INLINE_AT_TARGET: usize = LOG_ITEM_INLINE_BYTES_MAX / RECORD_BYTES_INLINE_TARGET;

const _: () = assert!(
    SEGMENT_SIZE_BYTES.is_power_of_two(),
    "sled requires a power of two"
);
const _: () = assert!(SEGMENT_SIZE_BYTES <= SLED_SEGMENT_SIZE_BYTES_CEILING);
const _: () = assert!(LEAF_RECORDS_INLINE_AT_TARGET >= 15);
// Our copies of sled's internals must match the sled we build against (it re-exports them,
// undocumented, for its own tests).
const _: () = assert!(SLED_MESSAGE_HEADER_BYTES_MAX == sled::MAX_MSG_HEADER_LEN);
const _: () = assert!(SLED_SEGMENT_HEADER_BYTES == sled::SEG_HEADER_LEN);
const _: () = assert!(SLED_LOG_ITEMS_PER_SEGMENT_MIN == sled::MINIMUM_ITEMS_PER_SEGMENT);

/// sled's data file inside the database directory, the target of our `fdatasync`.
const SLED_DATA_FILE_NAME: &str = "db";

/// sled's settings file, written once at creation without fsync.
const SLED_CONFIG_FILE_NAME: &str = "conf";

/// sled's directory of blob files.
const SLED_BLOB_DIRECTORY_NAME: &str = "blobs";

/// Our checkpoint file in the database directory (see the module docs).
const CHECKPOINT_FILE_NAME: &str = "TASKFORGE_CHECKPOINT";

/// Where the next checkpoint file is written before it is renamed into place.
const CHECKPOINT_TEMPORARY_FILE_NAME: &str = "TASKFORGE_CHECKPOINT.tmp";

/// First line of the checkpoint file, naming its format.
const CHECKPOINT_FILE_HEADER: &str = "taskforge storage checkpoint v1";

/// Bytes read from a checkpoint file at most; a real one is under 60 bytes.
const CHECKPOINT_FILE_BYTES_MAX: u64 = 256;

/// The sled tree holding storage-internal state, apart from the records in the default tree.
pub const META_TREE_NAME: &[u8] = b"taskforge.storage";

/// Key of the checkpoint number (u64, big-endian) in [`META_TREE_NAME`].
const CHECKPOINT_KEY: &[u8] = b"checkpoint";

/// Key of the last journal generation checkpointed into sled (u64, big-endian) in
/// [`META_TREE_NAME`]; see [`crate::storage::journal`].
const JOURNAL_CHECKPOINTED_KEY: &[u8] = b"journal-checkpointed";

/// How sled is configured when [`SledStorage::open`] opens it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SledOptions {
    /// sled's page-cache budget in bytes. Bounds memory, not disk; actual RSS can be
    /// several times larger.
    pub cache_capacity_bytes: u64,
    /// Period of sled's background flush (which also fsyncs `db`), or `None` to flush only
    /// when [`SledStorage::sync`] runs or an IO buffer fills. Must not be `Some(0)`.
    pub flush_every_ms: Option<u64>,
}

impl Default for SledOptions {
    fn default() -> SledOptions {
        SledOptions {
            cache_capacity_bytes: CACHE_CAPACITY_BYTES_DEFAULT,
            flush_every_ms: Some(FLUSH_EVERY_MS_DEFAULT),
        }
    }
}

/// The sled-backed store of record. See the module docs for the durability design.
///
/// Dropping it flushes and fsyncs (sled does so when its last handle goes), but it cannot
/// report an error from there: prefer [`SledStorage::flush_and_close`].
pub struct SledStorage {
    /// The database. Its default tree holds every record, so one `apply_batch` is atomic
    /// across record types.
    db: sled::Db,
    /// Storage-internal tree holding the checkpoint number.
    meta: sled::Tree,
    /// The checkpoint number written when this handle was opened; closing writes the next.
    checkpoint_at_open: u64,
    /// Our own read-only handle to `<dir>/db`, kept open for `fdatasync`.
    data_file: File,
    /// The database directory, for messages and to find blob files.
    dir: PathBuf,
    /// Blob files already fsynced, so each sync fsyncs only new ones. Holding the lock also
    /// keeps two syncs from interleaving.
    synced_blob_names: Mutex<HashSet<OsString>>,
    /// Set once a sync fails. After a failed fsync the kernel may have dropped the dirty
    /// pages and cleared the error, so a later fsync could succeed without the earlier
    /// writes on disk; from then on we refuse writes and syncs until the store is reopened
    /// and recovers from what is really on disk.
    sync_failed: AtomicBool,
}

impl SledStorage {
    /// Opens the database in `dir`, creating the directory and an empty database if they do
    /// not exist, and checks it against its checkpoint (see the module docs). Fails with a
    /// message naming the problem and the way out (restore from backup, stop the other
    /// process, ...) if the database is damaged, in use, or was created with another
    /// segment size.
    pub fn open(dir: &Path, options: SledOptions) -> Result<SledStorage, StorageError> {
        if options.flush_every_ms == Some(0) {
            return Err(StorageError::new(
                "open",
                "flush_every_ms must be at least 1 (or None to disable background flushes)",
            ));
        }
        create_directory_durably(dir).map_err(|error| {
            StorageError::new("open", format!("cannot create {}: {error}", dir.display()))
        })?;

        let checkpoint_expected = read_checkpoint_file(dir)?;
        let data_path = dir.join(SLED_DATA_FILE_NAME);
        if let Some(expected) = checkpoint_expected {
            // Check before sled runs: it would silently create a fresh `db` in its place.
            match fs::metadata(&data_path) {
                Ok(metadata) if metadata.len() > 0 => {}
                Ok(_) => {
                    return Err(damaged(
                        dir,
                        format!(
                            "the data file `db` is empty but checkpoint {expected} was written"
                        ),
                    ))
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    return Err(damaged(
                        dir,
                        format!(
                            "the data file `db` is missing but checkpoint {expected} was written"
                        ),
                    ))
                }
                Err(error) => {
                    return Err(StorageError::new(
                        "open",
                        format!("cannot read {}: {error}", data_path.display()),
                    ))
                }
            }
        }

        let db = open_sled(dir, options)?;
        let meta = db
            .open_tree(META_TREE_NAME)
            .map_err(|error| open_error(dir, error))?;
        let checkpoint_stored = read_stored_checkpoint(&meta, dir)?;
        if let Some(expected) = checkpoint_expected {
            if !db.was_recovered() {
                return Err(damaged(
                    dir,
                    format!(
                        "sled found no database in `db` although checkpoint {expected} was \
                         written: the data file was overwritten or is unreadable"
                    ),
                ));
            }
            match checkpoint_stored {
                Some(stored) if stored >= expected => {}
                Some(stored) => {
                    return Err(damaged(
                        dir,
                        format!(
                            "sled recovered its log only up to checkpoint {stored} of \
                             {expected}: part of the log is unreadable and sled dropped \
                             everything written after it"
                        ),
                    ))
                }
                None => {
                    return Err(damaged(
                        dir,
                        format!(
                            "sled recovered only the start of its log (checkpoint {expected} \
                             is missing): part of the log is unreadable and sled dropped \
                             everything written after it"
                        ),
                    ))
                }
            }
        }

        let data_file = File::open(&data_path).map_err(|error| {
            StorageError::new(
                "open",
                format!("cannot open {}: {error}", data_path.display()),
            )
        })?;
        let storage = SledStorage {
            db,
            meta,
            checkpoint_at_open: next_checkpoint(checkpoint_stored, checkpoint_expected)?,
            data_file,
            dir: dir.to_path_buf(),
            synced_blob_names: Mutex::new(HashSet::new()),
            sync_failed: AtomicBool::new(false),
        };
        // sled wrote `conf` (at creation) without fsync; the directory fsync in
        // `write_checkpoint` then persists the names of `conf`, `db`, `blobs` and any
        // snapshot sled renamed into place while recovering.
        let config_path = dir.join(SLED_CONFIG_FILE_NAME);
        File::open(&config_path)
            .and_then(|file| file.sync_all())
            .map_err(|error| {
                StorageError::new(
                    "open",
                    format!("cannot fsync {}: {error}", config_path.display()),
                )
            })?;
        storage.write_checkpoint("open", storage.checkpoint_at_open)?;
        Ok(storage)
    }

    /// Writes a final checkpoint, makes everything durable and closes the database,
    /// reporting any error that a plain drop would only log.
    pub fn flush_and_close(self) -> Result<(), StorageError> {
        let checkpoint_next = next_checkpoint(Some(self.checkpoint_at_open), None)?;
        self.write_checkpoint("close", checkpoint_next)?;
        // Dropping the last handles makes sled flush once more and fsync `db`.
        drop(self);
        Ok(())
    }

    /// The database directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last journal generation whose changes sled holds (0 if none).
    pub fn journal_checkpointed(&self) -> Result<u64, StorageError> {
        let stored = self
            .meta
            .get(JOURNAL_CHECKPOINTED_KEY)
            .map_err(|error| runtime_error("open", &self.dir, error))?;
        match stored {
            None => Ok(0),
            Some(bytes) => <[u8; 8]>::try_from(bytes.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| {
                    damaged(
                        &self.dir,
                        format!(
                            "the journal generation is stored in {} bytes, not 8",
                            bytes.len()
                        ),
                    )
                }),
        }
    }

    /// Records that sled holds journal generation `generation`'s changes. Durable with the
    /// next sync, and in order with the writes applied before it.
    pub fn set_journal_checkpointed(
        &self,
        generation: u64,
        operation: &'static str,
    ) -> Result<(), StorageError> {
        self.refuse_after_failed_sync(operation)?;
        self.meta
            .insert(JOURNAL_CHECKPOINTED_KEY, &generation.to_be_bytes())
            .map(drop)
            .map_err(|error| runtime_error(operation, &self.dir, error))
    }

    /// Fails if an earlier sync failed (see [`SledStorage::sync_failed`]).
    fn refuse_after_failed_sync(&self, operation: &'static str) -> Result<(), StorageError> {
        if self.sync_failed.load(Ordering::SeqCst) {
            return Err(StorageError::new(
                operation,
                format!(
                    "an earlier sync of {} failed, so writes since the last successful sync \
                     may not be on disk; reopen the store (restart the broker) to continue \
                     from what is durable",
                    self.dir.display()
                ),
            ));
        }
        Ok(())
    }

    /// fsyncs blob files written since the last sync, then flushes sled and fdatasyncs
    /// `db`. Blobs go first because the log items pointing at them must not become durable
    /// before them: sled silently skips a log item whose blob is missing.
    fn sync_as(&self, operation: &'static str) -> Result<(), StorageError> {
        self.refuse_after_failed_sync(operation)?;
        // A panic while holding this lock can only leave the set smaller than the truth,
        // which costs extra fsyncs, never missing ones.
        let mut synced_blob_names = self
            .synced_blob_names
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let result = self
            .sync_blob_files(operation, &mut synced_blob_names)
            .and_then(|()| {
                self.db
                    .flush()
                    .map_err(|error| runtime_error(operation, &self.dir, error))?;
                self.data_file.sync_data().map_err(|error| {
                    StorageError::new(
                        operation,
                        format!(
                            "fdatasync of {}: {error}",
                            self.dir.join(SLED_DATA_FILE_NAME).display()
                        ),
                    )
                })
            });
        if result.is_err() {
            self.sync_failed.store(true, Ordering::SeqCst);
        }
        result
    }

    /// fsyncs every blob file not in `synced` and then the blob directory (if any was new),
    /// and leaves `synced` naming exactly the blob files present now.
    fn sync_blob_files(
        &self,
        operation: &'static str,
        synced: &mut HashSet<OsString>,
    ) -> Result<(), StorageError> {
        let blob_directory = self.dir.join(SLED_BLOB_DIRECTORY_NAME);
        let io_error = |what: &str, path: &Path, error: io::Error| {
            StorageError::new(operation, format!("{what} {}: {error}", path.display()))
        };
        let entries = fs::read_dir(&blob_directory)
            .map_err(|error| io_error("cannot list", &blob_directory, error))?;
        let mut present = HashSet::new();
        let mut found_new = false;
        for entry in entries {
            let entry = entry.map_err(|error| io_error("cannot list", &blob_directory, error))?;
            let name = entry.file_name();
            if !synced.contains(&name) {
                let path = entry.path();
                match File::open(&path) {
                    Ok(file) => file
                        .sync_data()
                        .map_err(|error| io_error("cannot fsync", &path, error))?,
                    // sled deletes blobs it no longer needs, possibly after we listed one.
                    Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                    Err(error) => return Err(io_error("cannot open", &path, error)),
                }
                found_new = true;
            }
            present.insert(name);
        }
        if found_new {
            File::open(&blob_directory)
                .and_then(|directory| directory.sync_all())
                .map_err(|error| io_error("cannot fsync", &blob_directory, error))?;
        }
        *synced = present;
        Ok(())
    }

    /// Records checkpoint `number` in sled, makes it durable, then in the checkpoint file.
    fn write_checkpoint(&self, operation: &'static str, number: u64) -> Result<(), StorageError> {
        self.meta
            .insert(CHECKPOINT_KEY, &number.to_be_bytes())
            .map_err(|error| runtime_error(operation, &self.dir, error))?;
        self.sync_as(operation)?;
        write_checkpoint_file(&self.dir, number).map_err(|error| {
            StorageError::new(
                operation,
                format!(
                    "cannot write {}: {error}",
                    self.dir.join(CHECKPOINT_FILE_NAME).display()
                ),
            )
        })
    }
}

impl SledStorage {
    /// A sled batch for writes that include range deletes. sled batches cannot delete a
    /// range, so the keys in it are listed from the tree (and from the batch's own earlier
    /// puts) and removed one by one; later writes in the batch still win.
    /// The sled batch for `batch` and how many keys it changes.
    fn batch_with_ranges(&self, batch: &[Write]) -> Result<(sled::Batch, usize), StorageError> {
        let mut changes: std::collections::BTreeMap<&[u8], Option<&[u8]>> = Default::default();
        let mut stored_doomed: Vec<sled::IVec> = Vec::new();
        for write in batch {
            match write {
                Write::Put(key, value) => {
                    changes.insert(key.as_slice(), Some(value.as_slice()));
                }
                Write::Delete(key) => {
                    changes.insert(key.as_slice(), None);
                }
                Write::DeleteRange(start, end) => {
                    for change in changes.range_mut(start.as_slice()..end.as_slice()) {
                        *change.1 = None;
                    }
                    for entry in self.db.range(start.as_slice()..end.as_slice()) {
                        let (key, _) =
                            entry.map_err(|error| runtime_error("read", &self.dir, error))?;
                        stored_doomed.push(key);
                    }
                }
            }
        }
        let mut sled_batch = sled::Batch::default();
        let mut changed_keys = changes.len();
        // Stored keys in a deleted range go first, so a later put of the same key wins.
        for key in &stored_doomed {
            if !changes.contains_key(key.as_ref()) {
                sled_batch.remove(key.as_ref());
                changed_keys += 1;
            }
        }
        for (key, value) in changes {
            match value {
                Some(value) => sled_batch.insert(key, value),
                None => sled_batch.remove(key),
            }
        }
        Ok((sled_batch, changed_keys))
    }
}

impl SledStorage {
    /// Sets (`Some`) or removes (`None`) each key in order, as one atomic batch: what
    /// [`Storage::apply`] does for a batch without range deletions, without copying it.
    pub fn apply_changes<'a>(
        &self,
        changes: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    ) -> Result<(), StorageError> {
        self.refuse_after_failed_sync("apply")?;
        let mut sled_batch = sled::Batch::default();
        let mut changed_keys = 0;
        for (key, value) in changes {
            match value {
                Some(value) => sled_batch.insert(key, value),
                None => sled_batch.remove(key),
            }
            changed_keys += 1;
        }
        self.apply_sled_batch(sled_batch, changed_keys)
    }

    fn apply_sled_batch(
        &self,
        sled_batch: sled::Batch,
        changed_keys: usize,
    ) -> Result<(), StorageError> {
        self.db
            .apply_batch(sled_batch)
            .map_err(|error| runtime_error("apply", &self.dir, error))?;
        reclaim_replaced_nodes(changed_keys);
        Ok(())
    }
}

impl Storage for SledStorage {
    fn apply(&self, batch: &[Write]) -> Result<(), StorageError> {
        self.refuse_after_failed_sync("apply")?;
        // Every sled batch rolls the IO buffer and takes a database-wide lock (TECH-NOTES):
        // not worth paying for nothing.
        if batch.is_empty() {
            return Ok(());
        }
        if !batch
            .iter()
            .any(|write| matches!(write, Write::DeleteRange(..)))
        {
            return self.apply_changes(batch.iter().map(|write| match write {
                Write::Put(key, value) => (key.as_slice(), Some(value.as_slice())),
                Write::Delete(key) => (key.as_slice(), None),
                Write::DeleteRange(..) => unreachable!("ranges take the other path"),
            }));
        }
        let (sled_batch, changed_keys) = self.batch_with_ranges(batch)?;
        self.apply_sled_batch(sled_batch, changed_keys)
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.sync_as("sync")
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.db
            .get(key)
            .map(|value| value.map(|value| value.to_vec()))
            .map_err(|error| runtime_error("read", &self.dir, error))
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        if start >= end {
            return Ok(());
        }
        for pair in self.db.range(start..end) {
            let (key, value) = pair.map_err(|error| runtime_error("read", &self.dir, error))?;
            if !visit(&key, &value) {
                break;
            }
        }
        Ok(())
    }

    fn size_on_disk_bytes(&self) -> Result<u64, StorageError> {
        self.db
            .size_on_disk()
            .map_err(|error| runtime_error("read", &self.dir, error))
    }
}

/// Part of the message of the error [`SledStorage::open`] returns while another handle
/// (another process, or one just dropped in this one) holds the database's lock.
pub const IN_USE_MESSAGE: &str = "is in use by another process";

/// Pause between attempts of [`SledStorage::open_waiting_for_lock`].
const LOCK_RETRY_PAUSE_MS: u64 = 20;

impl SledStorage {
    /// [`SledStorage::open`], retrying for up to `lock_wait_ms` while the database is
    /// locked. sled finishes writing its buffers on background threads that keep the data
    /// file (and its lock) open for a moment after the last handle is dropped, so reopening
    /// right after closing can find it still locked.
    pub fn open_waiting_for_lock(
        dir: &Path,
        options: SledOptions,
        lock_wait_ms: u64,
    ) -> Result<SledStorage, StorageError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(lock_wait_ms);
        loop {
            match SledStorage::open(dir, options) {
                Err(error)
                    if error.message.contains(IN_USE_MESSAGE)
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(LOCK_RETRY_PAUSE_MS));
                }
                opened => return opened,
            }
        }
    }
}

/// Prefix of sled's snapshot files (`snap.<lsn>`) in the database directory.
const SLED_SNAPSHOT_FILE_PREFIX: &str = "snap.";

/// True when `dir` holds a database (its data file exists), so offline tools can refuse a
/// wrong `--data-dir` instead of creating an empty database there.
pub fn store_exists(dir: &Path) -> bool {
    dir.join(SLED_DATA_FILE_NAME).is_file()
}

/// True for the names of the files and directories that make up a database in its
/// directory (sled's, our checkpoint and the journal), as opposed to other files kept beside it (the
/// root token, backups). Offline compaction and restore replace exactly these.
pub fn is_store_file_name(name: &str) -> bool {
    matches!(
        name,
        SLED_DATA_FILE_NAME
            | SLED_CONFIG_FILE_NAME
            | SLED_BLOB_DIRECTORY_NAME
            | CHECKPOINT_FILE_NAME
            | CHECKPOINT_TEMPORARY_FILE_NAME
            | crate::storage::journal::files::JOURNAL_DIRECTORY_NAME
    ) || name.starts_with(SLED_SNAPSHOT_FILE_PREFIX)
}

/// Replaced tree nodes each change leaves for epoch-based reclamation, an upper estimate
/// (sled 0.34 defers the old page and its node, and a split defers the parent's copy).
const RECLAIMED_NODES_PER_CHANGE: usize = 3;
/// Deferred frees one `crossbeam_epoch` collection can run: 8 bags of 64 (crossbeam-epoch
/// 0.9's `COLLECT_STEPS` × `MAX_OBJECTS`).
const RECLAIMED_NODES_PER_COLLECT: usize = 8 * 64;

/// Frees the tree nodes that `changed_keys` changes replaced.
///
/// sled replaces a node by copy-on-write and hands the old copy to `crossbeam_epoch`'s
/// global collector, which frees at most [`RECLAIMED_NODES_PER_COLLECT`] objects every
/// 128 pins, and `apply_batch` pins once for the whole batch. A commit round of thousands
/// of changes therefore leaves garbage faster than it is collected: loading 200,000 jobs
/// grew the server by 12 KB per job, nearly all of it copies of sled index and leaf nodes
/// awaiting a collection that never caught up (they stayed allocated while idle, as
/// nothing pinned). Collecting in proportion to the changes keeps it at about 1.8 KB
/// per job (`benches/README.md`, table 10) and is cheaper than the cache misses it saves.
fn reclaim_replaced_nodes(changed_keys: usize) {
    // One more than the estimate, so a small round also collects what other threads left.
    let collections =
        (changed_keys * RECLAIMED_NODES_PER_CHANGE).div_ceil(RECLAIMED_NODES_PER_COLLECT) + 1;
    for _ in 0..collections {
        crossbeam_epoch::pin().flush();
    }
}

/// Opens sled with our settings. sled 0.34 has `unwrap`s and assertions on its recovery
/// path; the damaged files we tried made it return an error or start empty rather than
/// panic, but we cannot rule a panic out for every byte pattern, so a panic while opening is
/// caught and reported as a damaged database. (The panic message is still printed by the
/// panic hook.)
fn open_sled(dir: &Path, options: SledOptions) -> Result<sled::Db, StorageError> {
    let config = sled::Config::new()
        .path(dir)
        .cache_capacity(options.cache_capacity_bytes)
        .flush_every_ms(options.flush_every_ms)
        .segment_size(SEGMENT_SIZE_BYTES);
    match std::panic::catch_unwind(AssertUnwindSafe(|| config.open())) {
        Ok(opened) => opened.map_err(|error| open_error(dir, error)),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|text| text.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_string());
            Err(damaged(
                dir,
                format!("sled panicked while recovering it ({message})"),
            ))
        }
    }
}

/// The error for a database whose files are damaged, pointing at backup and restore.
fn damaged(dir: &Path, what: impl std::fmt::Display) -> StorageError {
    StorageError::new(
        "open",
        format!(
            "the database in {} is damaged: {what}. Refusing to start on it. Stop the broker, \
             keep a copy of the directory for inspection, and restore the data directory from \
             your latest backup (or move it aside to start with an empty database)",
            dir.display()
        ),
    )
}

/// Maps an error from opening sled to a message that says what to do.
fn open_error(dir: &Path, error: sled::Error) -> StorageError {
    match error {
        sled::Error::Corruption { at, .. } => damaged(
            dir,
            format!("sled found corrupt data{}", corruption_location(at)),
        ),
        sled::Error::Io(error) if error.to_string().contains("could not acquire lock") => {
            StorageError::new(
                "open",
                format!(
                    "the database in {} {IN_USE_MESSAGE} ({error}); stop it first",
                    dir.display()
                ),
            )
        }
        sled::Error::Io(error) => StorageError::new(
            "open",
            format!("I/O error opening {}: {error}", dir.display()),
        ),
        sled::Error::Unsupported(message) => StorageError::new(
            "open",
            format!(
                "sled refuses to open {}: {message}. This build uses a {SEGMENT_SIZE_BYTES}-byte \
                 segment size and sled 0.34.7; a database created with other settings must be \
                 exported and imported",
                dir.display()
            ),
        ),
        sled::Error::ReportableBug(message) => damaged(
            dir,
            format!("sled hit an internal error while recovering it ({message})"),
        ),
        other => StorageError::new("open", format!("cannot open {}: {other}", dir.display())),
    }
}

/// Maps an error from a running sled database.
fn runtime_error(operation: &'static str, dir: &Path, error: sled::Error) -> StorageError {
    match error {
        sled::Error::Corruption { at, .. } => StorageError::new(
            operation,
            format!(
                "sled read corrupt data{} in {}: the database is damaged; stop the broker and \
                 restore the data directory from your latest backup",
                corruption_location(at),
                dir.display()
            ),
        ),
        sled::Error::Io(error) => StorageError::new(operation, format!("I/O error: {error}")),
        other => StorageError::new(operation, other),
    }
}

/// Where sled says it found corrupt data, as a phrase to append ("" when it does not say).
fn corruption_location(at: Option<sled::DiskPtr>) -> String {
    at.map(|location| format!(" at {location:?}"))
        .unwrap_or_default()
}

/// Creates `dir` and any missing ancestors, fsyncing the parent of each one created so the
/// new directories survive a power loss.
fn create_directory_durably(dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut cursor = Some(dir);
    while let Some(path) = cursor {
        if path.as_os_str().is_empty() || path.exists() {
            break;
        }
        missing.push(path);
        cursor = path.parent();
    }
    fs::create_dir_all(dir)?;
    for created in missing {
        let parent = match created.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// The number in `<dir>/TASKFORGE_CHECKPOINT`, or `None` if there is no such file.
fn read_checkpoint_file(dir: &Path) -> Result<Option<u64>, StorageError> {
    let path = dir.join(CHECKPOINT_FILE_NAME);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(StorageError::new(
                "open",
                format!("cannot open {}: {error}", path.display()),
            ))
        }
    };
    let mut bytes = Vec::new();
    file.take(CHECKPOINT_FILE_BYTES_MAX)
        .read_to_end(&mut bytes)
        .map_err(|error| {
            StorageError::new("open", format!("cannot read {}: {error}", path.display()))
        })?;
    let number = std::str::from_utf8(&bytes).ok().and_then(|text| {
        let mut lines = text.lines();
        let header = lines.next()?;
        let number = lines.next()?.parse::<u64>().ok()?;
        (header == CHECKPOINT_FILE_HEADER && lines.next().is_none()).then_some(number)
    });
    number.map(Some).ok_or_else(|| {
        damaged(
            dir,
            format!(
                "its checkpoint file {CHECKPOINT_FILE_NAME} is unreadable (it is replaced \
                 atomically, so the disk or a person changed it)"
            ),
        )
    })
}

/// Writes `<dir>/TASKFORGE_CHECKPOINT` atomically and durably.
fn write_checkpoint_file(dir: &Path, number: u64) -> io::Result<()> {
    let temporary = dir.join(CHECKPOINT_TEMPORARY_FILE_NAME);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temporary)?;
    file.write_all(format!("{CHECKPOINT_FILE_HEADER}\n{number}\n").as_bytes())?;
    file.sync_all()?;
    fs::rename(&temporary, dir.join(CHECKPOINT_FILE_NAME))?;
    File::open(dir)?.sync_all()
}

/// The checkpoint number stored in sled, if any.
fn read_stored_checkpoint(meta: &sled::Tree, dir: &Path) -> Result<Option<u64>, StorageError> {
    let Some(value) = meta
        .get(CHECKPOINT_KEY)
        .map_err(|error| open_error(dir, error))?
    else {
        return Ok(None);
    };
    let bytes: [u8; 8] = value.as_ref().try_into().map_err(|_| {
        damaged(
            dir,
            format!(
                "its stored checkpoint has {} bytes instead of 8",
                value.len()
            ),
        )
    })?;
    Ok(Some(u64::from_be_bytes(bytes)))
}

/// One past the larger of the checkpoints in sled and in the file.
fn next_checkpoint(stored: Option<u64>, expected: Option<u64>) -> Result<u64, StorageError> {
    stored
        .unwrap_or(0)
        .max(expected.unwrap_or(0))
        .checked_add(1)
        .ok_or_else(|| StorageError::new("open", "the checkpoint counter is exhausted"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::memory::contract_tests;
    use super::*;

    fn open(dir: &Path) -> SledStorage {
        SledStorage::open(dir, SledOptions::default()).expect("open")
    }

    fn put(key: &[u8], value: &[u8]) -> Write {
        Write::Put(key.to_vec(), value.to_vec())
    }

    fn blob_file_count(dir: &Path) -> usize {
        fs::read_dir(dir.join(SLED_BLOB_DIRECTORY_NAME))
            .expect("blob directory")
            .count()
    }

    /// A database with some records, closed cleanly.
    fn populated(dir: &Path) {
        let storage = open(dir);
        let batch: Vec<Write> = (0u32..2000)
            .map(|index| put(&index.to_be_bytes(), &[7; 100]))
            .collect();
        storage.apply(&batch).expect("apply");
        storage.sync().expect("sync");
        storage.flush_and_close().expect("close");
    }

    /// Opens a store that this process closed a moment ago: sled's background threads can
    /// hold the file lock briefly after a close, which would read as "in use".
    fn open_after_close(dir: &Path) -> Result<SledStorage, StorageError> {
        SledStorage::open_waiting_for_lock(dir, SledOptions::default(), 2_000)
    }

    fn assert_damaged(result: Result<SledStorage, StorageError>) -> StorageError {
        let error = result.err().expect("opening a damaged database must fail");
        assert_eq!(error.operation, "open");
        assert!(error.message.contains("damaged"), "{error}");
        assert!(error.message.contains("backup"), "{error}");
        error
    }

    /// Runs one contract check on a fresh database (the checks assume an empty store).
    fn check_contract(check: impl FnOnce(Arc<dyn Storage>)) {
        let directory = tempfile::tempdir().expect("tempdir");
        check(Arc::new(open(directory.path())));
    }

    #[test]
    fn round_trip() {
        check_contract(|storage| contract_tests::round_trip(&*storage));
    }

    #[test]
    fn batch_applies_in_order() {
        check_contract(|storage| contract_tests::batch_applies_in_order(&*storage));
        check_contract(|storage| contract_tests::range_delete_applies_in_order(&*storage));
    }

    #[test]
    fn scan_bounds_and_early_stop() {
        check_contract(|storage| contract_tests::scan_bounds_and_early_stop(&*storage));
    }

    #[test]
    fn long_scan_visits_everything_once() {
        check_contract(|storage| contract_tests::long_scan_visits_everything_once(&*storage));
    }

    #[test]
    fn batch_is_atomic_for_readers() {
        check_contract(contract_tests::batch_is_atomic_for_readers);
    }

    #[test]
    fn creates_missing_directories_and_reports_its_size() {
        let directory = tempfile::tempdir().expect("tempdir");
        let dir = directory.path().join("nested").join("data");
        let storage = open(&dir);
        storage.apply(&[put(b"a", &[1; 1000])]).expect("apply");
        storage.sync().expect("sync");
        assert!(storage.size_on_disk_bytes().expect("size") > 0);
        assert_eq!(storage.dir(), dir);
    }

    #[test]
    fn reopening_keeps_synced_data_and_data_flushed_on_drop() {
        let directory = tempfile::tempdir().expect("tempdir");
        {
            let storage = open(directory.path());
            storage.apply(&[put(b"synced", b"1")]).expect("apply");
            storage.sync().expect("sync");
            // Not synced: sled's drop of the last handle flushes and fsyncs it.
            storage
                .apply(&[put(b"dropped", b"2"), Write::Delete(b"synced".to_vec())])
                .expect("apply");
        }
        {
            let storage = open(directory.path());
            assert_eq!(storage.get(b"synced").expect("get"), None);
            assert_eq!(storage.get(b"dropped").expect("get"), Some(b"2".to_vec()));
            storage.apply(&[put(b"closed", b"3")]).expect("apply");
            storage.flush_and_close().expect("close");
        }
        let storage = open(directory.path());
        assert_eq!(storage.get(b"closed").expect("get"), Some(b"3".to_vec()));
        assert_eq!(storage.get(b"dropped").expect("get"), Some(b"2".to_vec()));
    }

    #[test]
    fn records_of_a_maximal_payload_stay_inline() {
        let directory = tempfile::tempdir().expect("tempdir");
        let storage = open(directory.path());
        // As many maximal records as one leaf can hold inline, with adjacent keys so that
        // they share leaves and the leaves get rewritten whole.
        for index in 0..LEAF_RECORDS_INLINE_AT_TARGET {
            let key = [b"job-".as_slice(), &index.to_be_bytes()].concat();
            storage
                .apply(&[put(&key, &vec![2; RECORD_BYTES_INLINE_TARGET])])
                .expect("apply");
            storage.sync().expect("sync");
            assert_eq!(blob_file_count(directory.path()), 0, "after record {index}");
        }
        storage.flush_and_close().expect("close");
        assert_eq!(blob_file_count(directory.path()), 0);
    }

    #[test]
    fn the_inline_limit_is_where_sled_starts_writing_blobs_and_sync_covers_blobs() {
        let directory = tempfile::tempdir().expect("tempdir");
        let storage = open(directory.path());
        // A little room for the key and the encoding of the change around the value.
        storage
            .apply(&[put(b"below", &vec![3; LOG_ITEM_INLINE_BYTES_MAX - 256])])
            .expect("apply");
        storage.sync().expect("sync");
        assert_eq!(blob_file_count(directory.path()), 0);
        storage
            .apply(&[put(b"above", &vec![4; LOG_ITEM_INLINE_BYTES_MAX + 1])])
            .expect("apply");
        storage.sync().expect("sync");
        assert_eq!(blob_file_count(directory.path()), 1);
        let synced = storage.synced_blob_names.lock().expect("lock").len();
        assert_eq!(synced, 1, "sync fsynced the blob file");
        storage.flush_and_close().expect("close");
        let storage = open(directory.path());
        let value = storage.get(b"above").expect("get").expect("present");
        assert_eq!(value.len(), LOG_ITEM_INLINE_BYTES_MAX + 1);
    }

    #[test]
    fn a_garbage_data_file_is_reported_not_opened_empty() {
        let directory = tempfile::tempdir().expect("tempdir");
        populated(directory.path());
        let data_path = directory.path().join(SLED_DATA_FILE_NAME);
        let length = fs::metadata(&data_path).expect("metadata").len();
        let garbage: Vec<u8> = (0..length)
            .map(|index| (index.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        fs::write(&data_path, garbage).expect("write garbage");
        assert_damaged(open_after_close(directory.path()));
        // The failed open must not have turned the damage into a valid empty database.
        assert_damaged(open_after_close(directory.path()));
    }

    #[test]
    fn an_empty_or_missing_data_file_is_reported() {
        let directory = tempfile::tempdir().expect("tempdir");
        populated(directory.path());
        let data_path = directory.path().join(SLED_DATA_FILE_NAME);
        fs::write(&data_path, b"").expect("truncate");
        let error = assert_damaged(open_after_close(directory.path()));
        assert!(error.message.contains("empty"), "{error}");
        fs::remove_file(&data_path).expect("remove");
        let error = assert_damaged(open_after_close(directory.path()));
        assert!(error.message.contains("missing"), "{error}");
        assert!(
            !data_path.exists(),
            "sled must not have created a fresh data file"
        );
    }

    #[test]
    fn a_damaged_stretch_of_log_is_reported_not_silently_truncated() {
        let directory = tempfile::tempdir().expect("tempdir");
        populated(directory.path());
        let data_path = directory.path().join(SLED_DATA_FILE_NAME);
        let mut bytes = fs::read(&data_path).expect("read");
        let middle = bytes.len() / 2;
        for byte in &mut bytes[middle..middle + 4096] {
            *byte ^= 0x5A;
        }
        fs::write(&data_path, bytes).expect("write");
        let error = assert_damaged(open_after_close(directory.path()));
        assert!(error.message.contains("checkpoint"), "{error}");
    }

    #[test]
    fn a_damaged_sled_config_file_is_reported() {
        let directory = tempfile::tempdir().expect("tempdir");
        populated(directory.path());
        fs::write(
            directory.path().join(SLED_CONFIG_FILE_NAME),
            b"not a sled config file\n",
        )
        .expect("write");
        assert_damaged(open_after_close(directory.path()));
    }

    #[test]
    fn a_damaged_checkpoint_file_is_reported() {
        let directory = tempfile::tempdir().expect("tempdir");
        populated(directory.path());
        fs::write(directory.path().join(CHECKPOINT_FILE_NAME), b"garbage").expect("write");
        let error = assert_damaged(open_after_close(directory.path()));
        assert!(error.message.contains(CHECKPOINT_FILE_NAME), "{error}");
    }

    #[test]
    fn a_database_in_use_is_reported() {
        let directory = tempfile::tempdir().expect("tempdir");
        let _first = open(directory.path());
        let error = SledStorage::open(directory.path(), SledOptions::default())
            .err()
            .expect("a second open must fail");
        assert!(error.message.contains("in use"), "{error}");
    }

    #[test]
    fn a_database_with_another_segment_size_is_reported() {
        let directory = tempfile::tempdir().expect("tempdir");
        drop(
            sled::Config::new()
                .path(directory.path())
                .open()
                .expect("plain sled"),
        );
        let error = SledStorage::open(directory.path(), SledOptions::default())
            .err()
            .expect("segment sizes differ");
        assert!(error.message.contains("segment size"), "{error}");
    }

    #[test]
    fn a_zero_flush_period_is_rejected() {
        let directory = tempfile::tempdir().expect("tempdir");
        let options = SledOptions {
            flush_every_ms: Some(0),
            ..SledOptions::default()
        };
        let error = SledStorage::open(directory.path(), options)
            .err()
            .expect("rejected");
        assert!(error.message.contains("flush_every_ms"), "{error}");
    }

    #[test]
    fn after_a_failed_sync_writes_are_refused_until_reopened() {
        let directory = tempfile::tempdir().expect("tempdir");
        let storage = open(directory.path());
        storage.apply(&[put(b"a", b"1")]).expect("apply");
        // Make the blob listing fail, as an I/O error would.
        fs::remove_dir(directory.path().join(SLED_BLOB_DIRECTORY_NAME)).expect("remove blobs");
        assert!(storage.sync().is_err());
        fs::create_dir(directory.path().join(SLED_BLOB_DIRECTORY_NAME)).expect("recreate");
        let error = storage.sync().expect_err("still refused");
        assert!(error.message.contains("reopen"), "{error}");
        assert!(storage.apply(&[put(b"b", b"2")]).is_err());
        assert_eq!(
            storage.get(b"a").expect("reads still work"),
            Some(b"1".to_vec())
        );
    }
}
