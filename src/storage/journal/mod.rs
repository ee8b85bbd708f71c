//! The commit journal in front of sled: every batch is one `write` to an append-only file
//! (plus one `fdatasync` when the broker syncs), and sled receives the journaled changes
//! later, coalesced and in large batches, from a background checkpointer.
//!
//! Why: sled 0.34 seals and writes its IO buffer on every batch and costs 8–17 µs per
//! changed key whatever the batch size (`benches/README.md`, table 11), so a commit round
//! per request paid sled's whole per-batch path. The journal makes a round one sequential
//! write, and a key changed several times between checkpoints (a job enqueued, fetched and
//! acknowledged) reaches sled once.
//!
//! # Layers
//! Reads see, newest first: the *active* overlay (changes journaled in the current file),
//! the *frozen* overlay (the previous file's changes, being checkpointed) and sled.
//!
//! # Checkpoints
//! When the current file reaches [`JournalOptions::checkpoint_bytes`], or has held changes
//! for [`JournalOptions::checkpoint_interval_ms`], it is fsynced and the writer moves on to
//! the next file, which the checkpointer created and preallocated ahead of time; the
//! current overlay freezes. The checkpointer copies the frozen overlay
//! into sled, records the file's generation as checkpointed in sled's meta tree, syncs sled
//! and removes the file. Writers wait only if the current file reaches twice the checkpoint
//! size while the previous one is still being checkpointed.
//!
//! # Crash contract
//! - A batch is in the journal before `apply` returns, and durable once `sync` returns
//!   (`fdatasync` of the current file; earlier files were fsynced when they were closed).
//! - A crash leaves at most a torn record at the end of the newest file, which replay
//!   ignores: it was never acknowledged as durable. See [`files::recover`].
//! - sled holds changes of a generation only once that generation's file is complete and
//!   fsynced, and only one generation at a time is checkpointed. A crash in the middle of a
//!   checkpoint leaves sled with part of the generation; replaying the whole generation over
//!   it gives the same result, as every journaled change sets a key's final value.
//! - After a failed write or sync the store refuses writes until it is reopened, for the
//!   reasons [`SledStorage`] gives; reopening replays what is really on disk.

pub mod files;
pub mod overlay;
pub mod record;
pub mod stats;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use self::overlay::{Lookup, Overlay};
use self::stats::{JournalSnapshot, JournalStats};
use super::{SledOptions, SledStorage, Storage, StorageError, Write};

/// Default size of a journal file at which it is checkpointed into sled.
pub const CHECKPOINT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

/// Default period of checkpoints while the journal holds anything. Each checkpoint's sled
/// flush and fsyncs delay the commit rounds' `fdatasync`s that meet them: at 1 830 jobs/s
/// and 1 in flight, enqueue→fetch p99 was 15 ms with checkpoints every 100 ms, 13 ms
/// every 500 ms and 5.4 ms every 2 s (`benches/README.md`, table 12).
pub const CHECKPOINT_INTERVAL_MS_DEFAULT: u64 = 2_000;

/// Writers wait while the current file holds this many times
/// [`JournalOptions::checkpoint_bytes`] and the previous file is still being checkpointed:
/// the bound on journal memory (two overlays) and on replay work after a crash.
const JOURNAL_CHECKPOINTS_AHEAD_MAX: u64 = 2;

/// Zeroes a new journal file is preallocated with at least; a spare file gets 5/4 of
/// what the last file held, up to [`JournalOptions::checkpoint_bytes`] (see
/// [`files::create`] for why).
pub const PREALLOCATE_BYTES_MIN: u64 = 1024 * 1024;

/// How the journal is checkpointed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalOptions {
    /// A journal file of this many bytes is checkpointed into sled.
    pub checkpoint_bytes: u64,
    /// A journal file holding anything is checkpointed at least this often, which also
    /// bounds what the `never` and `interval` fsync policies can lose to a power cut;
    /// `None` checkpoints by size only.
    pub checkpoint_interval_ms: Option<u64>,
}

impl Default for JournalOptions {
    fn default() -> JournalOptions {
        JournalOptions {
            checkpoint_bytes: CHECKPOINT_BYTES_DEFAULT,
            checkpoint_interval_ms: Some(CHECKPOINT_INTERVAL_MS_DEFAULT),
        }
    }
}

/// sled behind the journal. See the module docs.
pub struct JournaledStorage {
    inner: Arc<Inner>,
    checkpointer: Option<JoinHandle<()>>,
}

struct Inner {
    sled: SledStorage,
    journal_dir: PathBuf,
    options: JournalOptions,
    /// The current file and the checkpoint state. Lock order: `writer`, then `layers`.
    writer: Mutex<Writer>,
    /// Wakes the checkpointer: a file was closed, or shutdown started.
    checkpoint_wanted: Condvar,
    /// Wakes writers waiting for a checkpoint to finish (or fail).
    checkpoint_done: Condvar,
    /// What reads see above sled.
    layers: RwLock<Layers>,
    /// Counters for the metrics.
    stats: Arc<JournalStats>,
}

struct Writer {
    file: File,
    generation: u64,
    /// Bytes written to `file`.
    bytes: u64,
    /// When `file` received its first record since it was created.
    first_write_at: Option<Instant>,
    /// The generation being checkpointed, if any.
    checkpointing: Option<u64>,
    /// The next generation's file, created and preallocated ahead by the checkpointer so
    /// that closing a file costs the writer no file creation.
    spare: Option<(u64, File)>,
    /// Bytes the last closed file held, to size the next spare.
    last_file_bytes: u64,
    /// Why the store refuses writes, after a failed write, sync or checkpoint.
    failure: Option<String>,
    stopping: bool,
    /// Reused for encoding records.
    buffer: Vec<u8>,
}

#[derive(Default)]
struct Layers {
    active: Overlay,
    frozen: Option<Arc<Overlay>>,
}

impl JournaledStorage {
    /// Opens sled in `dir` (waiting up to `lock_wait_ms` for its lock), replays the journal
    /// the last run left, and starts a new journal file and the checkpointer.
    pub fn open(
        dir: &Path,
        sled_options: SledOptions,
        options: JournalOptions,
        lock_wait_ms: u64,
    ) -> Result<JournaledStorage, StorageError> {
        let stats = Arc::new(JournalStats::default());
        JournaledStorage::open_counting(dir, sled_options, options, lock_wait_ms, stats)
    }

    /// Opens like [`JournaledStorage::open`], counting into `stats`.
    pub fn open_counting(
        dir: &Path,
        sled_options: SledOptions,
        options: JournalOptions,
        lock_wait_ms: u64,
        stats: Arc<JournalStats>,
    ) -> Result<JournaledStorage, StorageError> {
        if options.checkpoint_bytes == 0 || options.checkpoint_interval_ms == Some(0) {
            return Err(StorageError::new(
                "open",
                "the journal's checkpoint size and period must be at least 1",
            ));
        }
        // The checkpointer flushes sled; a background flush of its own would only add work.
        let sled_options = SledOptions {
            flush_every_ms: None,
            ..sled_options
        };
        let sled = SledStorage::open_waiting_for_lock(dir, sled_options, lock_wait_ms)?;
        let generation = files::recover(&sled, dir)?;
        let journal_dir = files::directory(dir);
        let file = files::create(&journal_dir, generation, PREALLOCATE_BYTES_MIN, "open")?;
        let inner = Arc::new(Inner {
            sled,
            journal_dir,
            options,
            writer: Mutex::new(Writer {
                file,
                generation,
                bytes: 0,
                first_write_at: None,
                checkpointing: None,
                spare: None,
                last_file_bytes: 0,
                failure: None,
                stopping: false,
                buffer: Vec::new(),
            }),
            checkpoint_wanted: Condvar::new(),
            checkpoint_done: Condvar::new(),
            layers: RwLock::new(Layers::default()),
            stats,
        });
        inner.stats.set_file_bytes(0);
        let checkpointer = {
            let inner = Arc::clone(&inner);
            std::thread::Builder::new()
                .name("taskforge-checkpoint".to_string())
                .spawn(move || {
                    let run = std::panic::AssertUnwindSafe(|| inner.run_checkpointer());
                    if std::panic::catch_unwind(run).is_err() {
                        // Writers must not wait forever for checkpoints that will not come.
                        let mut writer = inner.lock_writer();
                        let error = StorageError::new("checkpoint", "the checkpointer panicked");
                        inner.fail(&mut writer, error);
                    }
                })
                .map_err(|error| {
                    StorageError::new("open", format!("cannot start the checkpointer: {error}"))
                })?
        };
        Ok(JournaledStorage {
            inner,
            checkpointer: Some(checkpointer),
        })
    }

    /// Closes the current file and waits until everything journaled so far is in sled.
    pub fn checkpoint_now(&self) -> Result<(), StorageError> {
        let inner = &self.inner;
        let mut writer = inner.lock_writer();
        loop {
            refuse_after_failure(&writer, "sync")?;
            if writer.checkpointing.is_some() || (writer.bytes > 0 && writer.spare.is_none()) {
                writer = wait(&inner.checkpoint_done, writer);
            } else if writer.bytes > 0 {
                inner.close_file(&mut writer)?;
            } else {
                return Ok(());
            }
        }
    }

    /// The sled store underneath, for inspection in tests.
    #[cfg(test)]
    fn sled(&self) -> &SledStorage {
        &self.inner.sled
    }
}

impl Drop for JournaledStorage {
    /// Stops the checkpointer and, unless the store failed, checkpoints what is left, so
    /// that the next open has nothing to replay.
    fn drop(&mut self) {
        let Some(checkpointer) = self.checkpointer.take() else {
            return;
        };
        let healthy = self.checkpoint_now().is_ok();
        self.inner.lock_writer().stopping = true;
        self.inner.checkpoint_wanted.notify_all();
        if checkpointer.join().is_err() {
            tracing::error!("the journal checkpointer panicked");
            return;
        }
        if !healthy {
            return;
        }
        let mut writer = self.inner.lock_writer();
        if let Some((spare, file)) = writer.spare.take() {
            drop(file);
            files::remove_or_warn(&files::path(&self.inner.journal_dir, spare), "spare");
        }
        let path = files::path(&self.inner.journal_dir, writer.generation);
        if let Err(error) = self
            .inner
            .sled
            .set_journal_checkpointed(writer.generation, "close")
            .and_then(|()| self.inner.sled.sync())
            .and_then(|()| {
                std::fs::remove_file(&path)
                    .map_err(|error| files::io_error("close", "cannot remove", &path, error))
            })
        {
            tracing::warn!(%error, "closing the journal failed; the next open replays it");
        }
    }
}

fn refuse_after_failure(writer: &Writer, operation: &'static str) -> Result<(), StorageError> {
    match &writer.failure {
        None => Ok(()),
        Some(failure) => Err(StorageError::new(
            operation,
            format!(
                "{failure}; writes since the last successful sync may not be on disk, so the \
                 store refuses more until it is reopened (restart the broker) and continues \
                 from what is durable"
            ),
        )),
    }
}

fn wait<'a>(condvar: &Condvar, guard: MutexGuard<'a, Writer>) -> MutexGuard<'a, Writer> {
    condvar.wait(guard).unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    /// The writer state. A panic while holding it can only come from an allocation failure
    /// (which aborts) or a bug; the fields stay individually consistent, so it is recovered.
    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn read_layers(&self) -> std::sync::RwLockReadGuard<'_, Layers> {
        self.layers.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_layers(&self) -> std::sync::RwLockWriteGuard<'_, Layers> {
        self.layers.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a failure and wakes everyone waiting on a checkpoint.
    fn fail(&self, writer: &mut Writer, error: StorageError) -> StorageError {
        writer.failure = Some(error.to_string());
        self.checkpoint_done.notify_all();
        error
    }

    /// True when the current file can be closed now: no checkpoint is running and the
    /// next file is ready.
    fn can_close_file(writer: &Writer) -> bool {
        writer.checkpointing.is_none()
            && writer.failure.is_none()
            && writer
                .spare
                .as_ref()
                .is_some_and(|(generation, _)| *generation == writer.generation + 1)
    }

    /// fsyncs the current file, switches to the spare one and freezes the current overlay
    /// for the checkpointer. Call only when [`Inner::can_close_file`].
    fn close_file(&self, writer: &mut Writer) -> Result<(), StorageError> {
        assert!(
            Inner::can_close_file(writer),
            "closing needs the spare file, and no checkpoint"
        );
        let closing = writer.generation;
        if let Err(error) = writer.file.sync_data() {
            let path = files::path(&self.journal_dir, closing);
            return Err(self.fail(
                writer,
                files::io_error("sync", "cannot fdatasync", &path, error),
            ));
        }
        let Some((next, file)) = writer.spare.take() else {
            unreachable!("checked by can_close_file")
        };
        writer.file = file;
        writer.generation = next;
        writer.last_file_bytes = writer.bytes;
        writer.bytes = 0;
        self.stats.set_file_bytes(0);
        writer.first_write_at = None;
        writer.checkpointing = Some(closing);
        {
            let mut layers = self.write_layers();
            let closed = std::mem::take(&mut layers.active);
            layers.frozen = Some(Arc::new(closed));
        }
        self.checkpoint_wanted.notify_all();
        Ok(())
    }

    /// Creates and preallocates the file for `generation` (outside the writer's lock) and
    /// offers it as the spare.
    fn prepare_spare(&self, generation: u64, last_file_bytes: u64) {
        let bytes = (last_file_bytes + last_file_bytes / 4).clamp(
            PREALLOCATE_BYTES_MIN,
            self.options.checkpoint_bytes.max(PREALLOCATE_BYTES_MIN),
        );
        let created = files::create(&self.journal_dir, generation, bytes, "checkpoint");
        let mut writer = self.lock_writer();
        match created {
            Ok(file) => writer.spare = Some((generation, file)),
            Err(error) => {
                tracing::error!(%error, generation, "cannot prepare the next journal file");
                self.fail(&mut writer, error);
            }
        }
        // Writers waiting for room, and a close that waited for the file, can go on.
        self.checkpoint_done.notify_all();
        self.checkpoint_wanted.notify_all();
    }

    fn run_checkpointer(&self) {
        loop {
            let generation = {
                let mut writer = self.lock_writer();
                loop {
                    if writer.stopping {
                        return;
                    }
                    let mut timeout = Duration::from_secs(3600);
                    if writer.failure.is_none() {
                        if let Some(generation) = writer.checkpointing {
                            break generation;
                        }
                        if writer.spare.is_none() {
                            let (next, last_file_bytes) =
                                (writer.generation + 1, writer.last_file_bytes);
                            drop(writer);
                            self.prepare_spare(next, last_file_bytes);
                            writer = self.lock_writer();
                            continue;
                        }
                        let due = writer.first_write_at.and_then(|first_write_at| {
                            let interval_ms = self.options.checkpoint_interval_ms?;
                            Some(first_write_at + Duration::from_millis(interval_ms))
                        });
                        let full = writer.bytes >= self.options.checkpoint_bytes;
                        let now = Instant::now();
                        if full || due.is_some_and(|due| now >= due) {
                            // A failure is recorded in `writer` and refuses the next write.
                            let _ = self.close_file(&mut writer);
                            continue;
                        }
                        if let Some(due) = due {
                            timeout = due - now;
                        }
                    }
                    writer = self
                        .checkpoint_wanted
                        .wait_timeout(writer, timeout)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            };
            let Some(frozen) = self.read_layers().frozen.clone() else {
                unreachable!("a generation being checkpointed has a frozen overlay")
            };
            let started = Instant::now();
            let result = files::checkpoint(&self.sled, &frozen, generation, "checkpoint");
            if result.is_ok() {
                self.stats.checkpointed(frozen.len(), started.elapsed());
                tracing::debug!(
                    generation,
                    keys = frozen.len(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "journal file checkpointed into sled"
                );
                // Unlinking takes a while; no lock is held meanwhile. A file that stays is
                // skipped at the next open: its generation is recorded as checkpointed.
                files::remove_or_warn(&files::path(&self.journal_dir, generation), "checkpointed");
            }
            let mut writer = self.lock_writer();
            match result {
                Ok(()) => {
                    let released = self.write_layers().frozen.take();
                    writer.checkpointing = None;
                    self.checkpoint_done.notify_all();
                    drop(writer);
                    // Freeing the overlay takes a while too.
                    drop(released);
                    drop(frozen);
                }
                Err(error) => {
                    tracing::error!(%error, generation, "checkpoint of the journal into sled failed");
                    self.fail(&mut writer, error);
                }
            }
        }
    }
}

/// Every key `frozen` (if any) and `sled` hold in `start..end`: what a range deletion in the
/// layer above them removes.
fn keys_under(
    frozen: Option<&Overlay>,
    sled: &SledStorage,
    start: &[u8],
    end: &[u8],
) -> Result<Vec<Vec<u8>>, StorageError> {
    let mut changes = BTreeMap::new();
    if let Some(frozen) = frozen {
        frozen.copy_range(start, end, &mut changes);
    }
    let mut keys = Vec::new();
    scan_layers(changes, sled, start, end, &mut |key, _| {
        keys.push(key.to_vec());
        true
    })?;
    Ok(keys)
}

/// Changes laid over sled: `Some(value)` for a put, `None` for a deletion.
type Changes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Visits `base` in `start..end` with `changes` (all within that range) laid over it, in
/// key order.
fn scan_layers(
    changes: Changes,
    base: &SledStorage,
    start: &[u8],
    end: &[u8],
    visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
) -> Result<(), StorageError> {
    let mut changes = changes.into_iter().peekable();
    let mut going = true;
    base.scan(start, end, &mut |key, value| {
        while let Some((changed, _)) = changes.peek() {
            if changed.as_slice() >= key {
                break;
            }
            if let Some((changed, Some(new))) = changes.next() {
                if !visit(&changed, &new) {
                    going = false;
                    return false;
                }
            }
        }
        let result = match changes.peek() {
            Some((changed, _)) if changed.as_slice() == key => match changes.next() {
                Some((changed, Some(new))) => visit(&changed, &new),
                _ => true,
            },
            _ => visit(key, value),
        };
        going = result;
        result
    })?;
    if going {
        for (changed, value) in changes {
            if let Some(value) = value {
                if !visit(&changed, &value) {
                    break;
                }
            }
        }
    }
    Ok(())
}

impl Storage for JournaledStorage {
    fn apply(&self, batch: &[Write]) -> Result<(), StorageError> {
        if batch.is_empty() {
            return Ok(());
        }
        let inner = &self.inner;
        let ahead_max = inner.options.checkpoint_bytes * JOURNAL_CHECKPOINTS_AHEAD_MAX;
        let mut writer = inner.lock_writer();
        let mut waiting_since = None;
        while !Inner::can_close_file(&writer)
            && writer.bytes >= ahead_max
            && writer.failure.is_none()
        {
            waiting_since.get_or_insert_with(Instant::now);
            writer = wait(&inner.checkpoint_done, writer);
        }
        if let Some(since) = waiting_since {
            inner.stats.writer_waited(since.elapsed());
        }
        refuse_after_failure(&writer, "apply")?;
        let mut buffer = std::mem::take(&mut writer.buffer);
        buffer.clear();
        record::encode(batch, &mut buffer)
            .map_err(|message| StorageError::new("apply", message))?;
        let written = writer.file.write_all(&buffer);
        let record_bytes = buffer.len() as u64;
        writer.buffer = buffer;
        if let Err(error) = written {
            let path = files::path(&inner.journal_dir, writer.generation);
            return Err(inner.fail(
                &mut writer,
                files::io_error("apply", "cannot write", &path, error),
            ));
        }
        writer.bytes += record_bytes;
        inner.stats.set_file_bytes(writer.bytes);
        if writer.first_write_at.is_none() {
            writer.first_write_at = Some(Instant::now());
            // The checkpointer sleeps without a deadline while the file is empty.
            inner.checkpoint_wanted.notify_all();
        }
        let applied = {
            let mut layers = inner.write_layers();
            let layers = &mut *layers;
            let frozen = layers.frozen.clone();
            layers.active.apply(batch, &mut |start, end| {
                keys_under(frozen.as_deref(), &inner.sled, start, end)
            })
        };
        if let Err(error) = applied {
            // The record is journaled but not visible: only a reopen (replay) can make
            // memory and journal agree again.
            return Err(inner.fail(&mut writer, error));
        }
        if writer.bytes >= inner.options.checkpoint_bytes {
            if Inner::can_close_file(&writer) {
                inner.close_file(&mut writer)?;
            } else {
                // The checkpointer closes it once the spare file is ready.
                inner.checkpoint_wanted.notify_all();
            }
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), StorageError> {
        let inner = &self.inner;
        let mut writer = inner.lock_writer();
        refuse_after_failure(&writer, "sync")?;
        if let Err(error) = writer.file.sync_data() {
            let path = files::path(&inner.journal_dir, writer.generation);
            return Err(inner.fail(
                &mut writer,
                files::io_error("sync", "cannot fdatasync", &path, error),
            ));
        }
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let frozen = {
            let layers = self.inner.read_layers();
            match layers.active.lookup(key) {
                Lookup::Put(value) => return Ok(Some(value.to_vec())),
                Lookup::Deleted => return Ok(None),
                Lookup::Unknown => layers.frozen.clone(),
            }
        };
        if let Some(frozen) = frozen {
            match frozen.lookup(key) {
                Lookup::Put(value) => return Ok(Some(value.to_vec())),
                Lookup::Deleted => return Ok(None),
                Lookup::Unknown => {}
            }
        }
        self.inner.sled.get(key)
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
        // Copy the active overlay's part under the lock; the frozen one cannot change.
        let (frozen, active_changes) = {
            let layers = self.inner.read_layers();
            let mut copied = BTreeMap::new();
            layers.active.copy_range(start, end, &mut copied);
            (layers.frozen.clone(), copied)
        };
        let mut changes = BTreeMap::new();
        if let Some(frozen) = frozen {
            frozen.copy_range(start, end, &mut changes);
        }
        changes.extend(active_changes);
        scan_layers(changes, &self.inner.sled, start, end, visit)
    }

    fn size_on_disk_bytes(&self) -> Result<u64, StorageError> {
        let journal_bytes: u64 = std::fs::read_dir(&self.inner.journal_dir)
            .map_err(|error| {
                files::io_error("read", "cannot list", &self.inner.journal_dir, error)
            })?
            .filter_map(|entry| entry.ok()?.metadata().ok())
            .map(|metadata| metadata.len())
            .sum();
        Ok(self.inner.sled.size_on_disk_bytes()? + journal_bytes)
    }

    fn journal_stats(&self) -> Option<JournalSnapshot> {
        Some(self.inner.stats.snapshot())
    }

    fn apply_may_block(&self) -> bool {
        self.inner.stats.file_bytes() >= self.inner.options.checkpoint_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::contract_tests;
    use crate::storage::MemoryStorage;

    /// Enough for sled's background threads to let go of a dropped handle's lock.
    const LOCK_WAIT_MS: u64 = 5_000;

    fn open_with(dir: &Path, options: JournalOptions) -> Result<JournaledStorage, StorageError> {
        JournaledStorage::open(dir, SledOptions::default(), options, LOCK_WAIT_MS)
    }

    fn open(dir: &Path) -> JournaledStorage {
        open_with(dir, JournalOptions::default()).expect("open")
    }

    /// Checkpoints after every few hundred bytes, so tests cross many files.
    fn tiny_files() -> JournalOptions {
        JournalOptions {
            checkpoint_bytes: 300,
            checkpoint_interval_ms: None,
        }
    }

    fn put(key: &[u8], value: &[u8]) -> Write {
        Write::Put(key.to_vec(), value.to_vec())
    }

    fn everything(storage: &dyn Storage) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut pairs = Vec::new();
        storage
            .scan(&[], &[0xff; 8], &mut |key, value| {
                pairs.push((key.to_vec(), value.to_vec()));
                true
            })
            .expect("scan");
        pairs
    }

    impl JournaledStorage {
        /// Stops the checkpointer and drops the store without checkpointing the journal,
        /// as a crash would leave it (sled itself closes normally).
        /// Returns the path of the file being written; the spare file is removed, so that
        /// it is the newest.
        fn abandon(mut self) -> PathBuf {
            if let Some(checkpointer) = self.checkpointer.take() {
                self.inner.lock_writer().stopping = true;
                self.inner.checkpoint_wanted.notify_all();
                checkpointer.join().expect("checkpointer");
            }
            let mut writer = self.inner.lock_writer();
            if let Some((spare, _)) = writer.spare.take() {
                std::fs::remove_file(files::path(&self.inner.journal_dir, spare))
                    .expect("remove the spare file");
            }
            files::path(&self.inner.journal_dir, writer.generation)
        }

        /// The path of the file being written.
        fn active_path(&self) -> PathBuf {
            files::path(&self.inner.journal_dir, self.inner.lock_writer().generation)
        }
    }

    /// Where the records in a journal file end and its preallocated zeroes begin.
    fn records_end(path: &Path) -> usize {
        let bytes = std::fs::read(path).expect("read");
        let mut at = 0;
        while let Ok(record::Decoded::Record(_, used)) = record::decode(&bytes[at..]) {
            at += used;
        }
        at
    }

    fn journal_files(dir: &Path) -> Vec<PathBuf> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(files::directory(dir))
            .expect("journal directory")
            .map(|entry| entry.expect("entry").path())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn passes_the_storage_contract_with_default_and_tiny_files() {
        for options in [JournalOptions::default(), tiny_files()] {
            for check in contract_tests::ON_A_FRESH_STORE {
                let directory = tempfile::tempdir().expect("tempdir");
                check(&open_with(directory.path(), options).expect("open"));
            }
            let directory = tempfile::tempdir().expect("tempdir");
            contract_tests::batch_is_atomic_for_readers(Arc::new(
                open_with(directory.path(), options).expect("open"),
            ));
        }
    }

    /// Random batches against the in-memory reference, through checkpoints, clean closes
    /// and abandoned (crashed) journals.
    #[test]
    fn matches_the_reference_store_through_checkpoints_closes_and_crashes() {
        let directory = tempfile::tempdir().expect("tempdir");
        let reference = MemoryStorage::new();
        let mut random = fastrand::Rng::with_seed(7);
        let key = |random: &mut fastrand::Rng| vec![b'k', random.u8(0..40)];
        for life in 0..6 {
            let storage = open_with(directory.path(), tiny_files()).expect("open");
            assert_eq!(
                everything(&storage),
                everything(&reference),
                "after open {life}"
            );
            for _ in 0..150 {
                let batch: Vec<Write> = (0..random.usize(1..6))
                    .map(|_| match random.u8(0..10) {
                        0..=5 => {
                            let value = vec![random.u8(..); random.usize(0..40)];
                            Write::Put(key(&mut random), value)
                        }
                        6..=8 => Write::Delete(key(&mut random)),
                        _ => {
                            let (a, b) = (key(&mut random), key(&mut random));
                            Write::DeleteRange(a.clone().min(b.clone()), a.max(b))
                        }
                    })
                    .collect();
                storage.apply(&batch).expect("apply");
                reference.apply(&batch).expect("reference");
                let probe = key(&mut random);
                assert_eq!(
                    storage.get(&probe).expect("get"),
                    reference.get(&probe).expect("get")
                );
            }
            storage.sync().expect("sync");
            assert_eq!(everything(&storage), everything(&reference), "life {life}");
            if life % 2 == 0 {
                storage.abandon();
            } else {
                drop(storage);
                assert!(
                    journal_files(directory.path()).is_empty(),
                    "a clean close checkpoints"
                );
            }
        }
    }

    #[test]
    fn an_idle_journal_is_checkpointed_within_its_period() {
        let directory = tempfile::tempdir().expect("tempdir");
        let options = JournalOptions {
            checkpoint_bytes: CHECKPOINT_BYTES_DEFAULT,
            checkpoint_interval_ms: Some(20),
        };
        let storage = open_with(directory.path(), options).expect("open");
        // Let the checkpointer go to sleep on the empty file first: the write must wake it.
        std::thread::sleep(Duration::from_millis(100));
        storage.apply(&[put(b"a", b"1")]).expect("apply");
        let deadline = Instant::now() + Duration::from_secs(10);
        while storage.sled().get(b"a").expect("read").is_none() {
            assert!(Instant::now() < deadline, "never checkpointed");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(storage.inner.read_layers().active.is_empty());
    }

    #[test]
    fn a_torn_record_at_the_end_is_dropped_and_everything_before_it_replayed() {
        let directory = tempfile::tempdir().expect("tempdir");
        let storage = open(directory.path());
        storage.apply(&[put(b"a", b"1")]).expect("apply");
        storage
            .apply(&[put(b"b", b"2"), put(b"a", b"3")])
            .expect("apply");
        storage.sync().expect("sync");
        let newest = storage.abandon();
        let mut torn = Vec::new();
        record::encode(&[put(b"c", b"never acknowledged")], &mut torn).expect("encode");
        torn.truncate(torn.len() - 3);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&newest)
            .and_then(|file| {
                use std::os::unix::fs::FileExt;
                file.write_all_at(&torn, records_end(&newest) as u64)
            })
            .expect("write a torn record after the last one");
        // The spare the checkpointer had prepared follows it, still all zeroes.
        let generation = files::generation_of(&newest).expect("a journal file name");
        let spare = files::path(&files::directory(directory.path()), generation + 1);
        std::fs::write(&spare, vec![0; 4096]).expect("a spare file");

        let storage = open(directory.path());
        assert_eq!(
            everything(&storage),
            vec![
                (b"a".to_vec(), b"3".to_vec()),
                (b"b".to_vec(), b"2".to_vec())
            ]
        );
        assert_eq!(
            journal_files(directory.path()).len(),
            1,
            "only the new file"
        );
    }

    #[test]
    fn a_file_already_checkpointed_is_skipped_not_replayed_again() {
        let directory = tempfile::tempdir().expect("tempdir");
        let dir = directory.path();
        let storage = open(dir);
        storage.apply(&[put(b"a", b"1")]).expect("apply");
        let older = storage.active_path();
        let older_bytes = std::fs::read(&older).expect("keep a copy");
        storage.checkpoint_now().expect("checkpoint");
        storage.apply(&[put(b"a", b"9")]).expect("apply");
        storage.checkpoint_now().expect("checkpoint");
        storage.apply(&[put(b"b", b"2")]).expect("apply");
        storage.sync().expect("sync");
        storage.abandon();
        // The checkpointed file reappears, as an undurable removal would leave it; replayed
        // again it would turn `a` back to 1.
        std::fs::write(&older, &older_bytes).expect("put the old file back");
        let storage = open(dir);
        assert_eq!(storage.get(b"a").expect("read"), Some(b"9".to_vec()));
        assert_eq!(storage.get(b"b").expect("read"), Some(b"2".to_vec()));
    }

    #[test]
    fn damage_before_the_newest_file_refuses_to_open() {
        let directory = tempfile::tempdir().expect("tempdir");
        let storage = open(directory.path());
        storage.apply(&[put(b"a", b"1")]).expect("apply");
        let older = storage.abandon();
        // Damage the record, then start a newer file by hand, so that the damaged one is no
        // longer the newest.
        let mut bytes = std::fs::read(&older).expect("read");
        bytes[record::RECORD_HEADER_BYTES + 2] ^= 0xff;
        std::fs::write(&older, &bytes).expect("damage");
        let generation = files::generation_of(&older).expect("a journal file name");
        let newer = files::path(&files::directory(directory.path()), generation + 1);
        let mut written = Vec::new();
        record::encode(&[put(b"z", b"9")], &mut written).expect("encode");
        std::fs::write(&newer, &written).expect("a newer file with a record");
        let error = open_with(directory.path(), JournalOptions::default())
            .err()
            .expect("a damaged journal must not open");
        assert!(error.message.contains("damaged"), "{error}");
        // A gap in the generations is damage too.
        std::fs::remove_file(&older).expect("remove");
        std::fs::write(
            files::path(&files::directory(directory.path()), generation + 2),
            b"",
        )
        .expect("file");
        let error = open_with(directory.path(), JournalOptions::default())
            .err()
            .expect("a gap must not open");
        assert!(error.message.contains("missing"), "{error}");
    }

    #[test]
    fn records_overwrite_preallocated_zeroes_and_the_next_file_is_ready_before_it_is_needed() {
        let directory = tempfile::tempdir().expect("tempdir");
        let storage = open(directory.path());
        let length = |path: &Path| std::fs::metadata(path).expect("metadata").len();
        let first = storage.active_path();
        assert!(length(&first) >= PREALLOCATE_BYTES_MIN);
        storage.apply(&[put(b"a", b"1")]).expect("apply");
        storage.sync().expect("sync");
        assert!(records_end(&first) > 0);
        assert_eq!(length(&first), PREALLOCATE_BYTES_MIN, "written in place");
        storage.checkpoint_now().expect("checkpoint");
        let second = storage.active_path();
        assert_ne!(first, second);
        assert!(
            length(&second) >= PREALLOCATE_BYTES_MIN,
            "the spare was preallocated"
        );
        assert!(!first.exists(), "the checkpointed file is removed");
        drop(storage);
        assert!(
            journal_files(directory.path()).is_empty(),
            "a close leaves no file"
        );
        assert_eq!(
            open(directory.path()).get(b"a").expect("read"),
            Some(b"1".to_vec())
        );
    }

    #[test]
    fn a_file_of_another_name_in_the_journal_directory_refuses_to_open() {
        let directory = tempfile::tempdir().expect("tempdir");
        drop(open(directory.path()));
        std::fs::write(files::directory(directory.path()).join("notes.txt"), b"x").expect("file");
        let error = open_with(directory.path(), JournalOptions::default())
            .err()
            .expect("refused");
        assert!(error.message.contains("not a journal file"), "{error}");
    }

    #[test]
    fn the_journal_counts_its_checkpoints_their_keys_and_the_current_file() {
        let directory = tempfile::tempdir().expect("tempdir");
        let options = JournalOptions {
            checkpoint_bytes: CHECKPOINT_BYTES_DEFAULT,
            checkpoint_interval_ms: None,
        };
        let storage = open_with(directory.path(), options).expect("open");
        assert_eq!(storage.journal_stats(), Some(JournalSnapshot::default()));
        storage
            .apply(&[put(b"a", b"1"), put(b"b", b"2")])
            .expect("apply");
        storage.apply(&[put(b"a", b"3")]).expect("apply");
        let written = storage.journal_stats().expect("a journal");
        assert_eq!(written.checkpoints, 0);
        assert!(written.file_bytes > 0, "{written:?}");
        storage.checkpoint_now().expect("checkpoint");
        let checkpointed = storage.journal_stats().expect("a journal");
        assert_eq!(checkpointed.checkpoints, 1);
        assert_eq!(checkpointed.checkpointed_keys, 2, "each changed key once");
        assert_eq!(checkpointed.file_bytes, 0);
        assert_eq!(checkpointed.writer_waits, 0);
    }

    #[test]
    fn an_apply_may_block_once_the_current_file_is_full() {
        let directory = tempfile::tempdir().expect("tempdir");
        let storage = open_with(directory.path(), tiny_files()).expect("open");
        assert!(!storage.apply_may_block(), "an empty file");
        let full = storage.inner.options.checkpoint_bytes;
        storage.inner.stats.set_file_bytes(full - 1);
        assert!(!storage.apply_may_block(), "a file with room left");
        storage.inner.stats.set_file_bytes(full);
        assert!(storage.apply_may_block(), "a full file");
    }

    #[test]
    fn writers_wait_for_a_slow_checkpoint_instead_of_growing_without_bound() {
        let directory = tempfile::tempdir().expect("tempdir");
        let storage = Arc::new(open_with(directory.path(), tiny_files()).expect("open"));
        let big = vec![1u8; 200];
        for index in 0u32..200 {
            storage
                .apply(&[put(&index.to_be_bytes(), &big)])
                .expect("apply");
            let layers = storage.inner.read_layers();
            let held = layers.active.bytes() + layers.frozen.as_ref().map_or(0, |f| f.bytes());
            // Two files' worth of records, each at most one batch past the bound.
            assert!(held < 8 * 300 + 4 * 400, "{held} bytes held in memory");
        }
        assert_eq!(
            storage.get(&199u32.to_be_bytes()).expect("read"),
            Some(big.clone())
        );
    }
}
