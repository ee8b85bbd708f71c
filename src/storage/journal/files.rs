//! The journal's files in `<data dir>/journal/`, and recovery: replaying what the last
//! run journaled but did not checkpoint into sled.
//!
//! Files are named by a generation number that only grows (`00000000000000000007.log`).
//! sled's meta tree records the last generation checkpointed
//! ([`SledStorage::journal_checkpointed`]); files up to it are stale (their deletion
//! was not yet durable) and are skipped, the rest are replayed in order.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::overlay::Overlay;
use super::record::{self, Decoded};
use crate::storage::{SledStorage, StorageError};

/// The journal's directory inside the data directory.
pub const JOURNAL_DIRECTORY_NAME: &str = "journal";

/// Extension of a journal file.
const FILE_EXTENSION: &str = "log";

/// Changes handed to sled per batch when a checkpoint copies an overlay into it. Any split
/// is safe (a crash in the middle replays the whole generation again); this bounds the
/// batch sled builds and the time it holds its database-wide lock.
pub const CHECKPOINT_CHUNK_WRITES: usize = 8_192;

/// The journal directory of the store in `data_dir`.
pub fn directory(data_dir: &Path) -> PathBuf {
    data_dir.join(JOURNAL_DIRECTORY_NAME)
}

/// The path of generation `generation`'s file.
pub fn path(journal_dir: &Path, generation: u64) -> PathBuf {
    journal_dir.join(format!("{generation:020}.{FILE_EXTENSION}"))
}

/// The generation a journal file's name gives, `None` for any other name.
pub fn generation_of(path: &Path) -> Option<u64> {
    path.extension()
        .filter(|extension| *extension == FILE_EXTENSION)
        .and_then(|_| path.file_stem())
        .and_then(|stem| stem.to_str())
        .and_then(|stem| stem.parse::<u64>().ok())
}

/// Bytes of zeroes written per call while preallocating a journal file.
const PREALLOCATE_CHUNK_BYTES: usize = 1024 * 1024;

/// Creates generation `generation`'s file holding `preallocate_bytes` of zeroes (rounded
/// up to whole chunks), synced, and makes its name durable. Records then overwrite the
/// zeroes, so that syncing them changes no file metadata: an `fdatasync` of a write within
/// the file's size skips the filesystem's journal commit that an append needs, and so does
/// not queue behind other files' metadata (sled's checkpoint) either.
pub fn create(
    journal_dir: &Path,
    generation: u64,
    preallocate_bytes: u64,
    operation: &'static str,
) -> Result<File, StorageError> {
    let path = path(journal_dir, generation);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|error| io_error(operation, "cannot create", &path, error))?;
    if preallocate_bytes > 0 {
        let zeroes = vec![0u8; PREALLOCATE_CHUNK_BYTES];
        let mut at = 0u64;
        while at < preallocate_bytes {
            file.write_all_at(&zeroes, at)
                .map_err(|error| io_error(operation, "cannot preallocate", &path, error))?;
            at += PREALLOCATE_CHUNK_BYTES as u64;
        }
        file.sync_data()
            .map_err(|error| io_error(operation, "cannot fdatasync", &path, error))?;
    }
    sync_directory(journal_dir, operation)?;
    Ok(file)
}

/// fsyncs the journal directory, so created and removed names are durable.
pub fn sync_directory(journal_dir: &Path, operation: &'static str) -> Result<(), StorageError> {
    File::open(journal_dir)
        .and_then(|directory| directory.sync_all())
        .map_err(|error| io_error(operation, "cannot fsync", journal_dir, error))
}

/// An error about `path`.
pub fn io_error(
    operation: &'static str,
    what: &str,
    path: &Path,
    error: io::Error,
) -> StorageError {
    StorageError::new(operation, format!("{what} {}: {error}", path.display()))
}

/// The journal files in `journal_dir`, by generation.
fn list(journal_dir: &Path) -> Result<Vec<(u64, PathBuf)>, StorageError> {
    let entries = fs::read_dir(journal_dir)
        .map_err(|error| io_error("open", "cannot list", journal_dir, error))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| io_error("open", "cannot list", journal_dir, error))?;
        let path = entry.path();
        match generation_of(&path) {
            Some(generation) => files.push((generation, path)),
            None => {
                return Err(StorageError::new(
                    "open",
                    format!(
                        "{} is not a journal file; only the broker writes in {}",
                        path.display(),
                        journal_dir.display()
                    ),
                ))
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Replays into `sled` every journal record the last run wrote after its last checkpoint,
/// makes the result durable, removes the journal files and returns the next generation.
///
/// The file written last (the newest holding any record; files after it are spares, still
/// all zeroes) may end in a torn record, as a crash in the middle of a write leaves it:
/// replay stops there. Anywhere else a damaged record means lost acknowledged data, and the
/// open fails with a message saying so.
pub fn recover(sled: &SledStorage, data_dir: &Path) -> Result<u64, StorageError> {
    let journal_dir = directory(data_dir);
    if !journal_dir.is_dir() {
        fs::create_dir(&journal_dir)
            .map_err(|error| io_error("open", "cannot create", &journal_dir, error))?;
        sync_directory(data_dir, "open")?;
    }
    let checkpointed = sled.journal_checkpointed()?;
    let files = list(&journal_dir)?;
    let newest = files
        .last()
        .map_or(checkpointed, |(generation, _)| *generation);
    let pending: Vec<&(u64, PathBuf)> = files
        .iter()
        .filter(|(generation, _)| *generation > checkpointed)
        .collect();
    let mut contents = Vec::with_capacity(pending.len());
    for (index, (generation, path)) in pending.iter().enumerate() {
        let expected = checkpointed + 1 + index as u64;
        if *generation != expected {
            return Err(damaged(
                &journal_dir,
                format!("journal file {expected} is missing but {generation} is present"),
            ));
        }
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|mut file| file.read_to_end(&mut bytes))
            .map_err(|error| io_error("open", "cannot read", path, error))?;
        contents.push(bytes);
    }
    // The file being written when the last run stopped is the newest one holding any
    // record: the files after it are spares, created ahead and still all zeroes.
    let written_last = contents
        .iter()
        .rposition(|bytes| bytes.iter().any(|byte| *byte != 0));
    let mut overlay = Overlay::default();
    for (index, ((_, path), bytes)) in pending.iter().zip(&contents).enumerate() {
        let last = written_last.is_none_or(|written_last| index >= written_last);
        replay_file(sled, path, bytes, last, &mut overlay)?;
    }
    if !pending.is_empty() {
        let replayed_keys = overlay.len();
        checkpoint(sled, &overlay, newest, "open")?;
        tracing::info!(
            files = pending.len(),
            keys = replayed_keys,
            "journal replayed into the store"
        );
    }
    for (_, path) in &files {
        fs::remove_file(path).map_err(|error| io_error("open", "cannot remove", path, error))?;
    }
    if !files.is_empty() {
        sync_directory(&journal_dir, "open")?;
    }
    Ok(newest.max(checkpointed) + 1)
}

/// Applies the records of one file (`bytes`, read from `path`) to `overlay`, reading
/// through to `sled`. Only the file written last may end in a torn record.
fn replay_file(
    sled: &SledStorage,
    path: &Path,
    bytes: &[u8],
    last: bool,
    overlay: &mut Overlay,
) -> Result<(), StorageError> {
    let mut at = 0;
    loop {
        let decoded = record::decode(&bytes[at..])
            .map_err(|message| damaged(path, format!("{message} (at byte {at})")))?;
        match decoded {
            Decoded::Record(writes, used) => {
                overlay.apply(&writes, &mut |start, end| {
                    super::keys_under(None, sled, start, end)
                })?;
                at += used;
            }
            Decoded::End => return Ok(()),
            Decoded::Torn(reason) if last => {
                tracing::warn!(
                    file = %path.display(),
                    at_byte = at,
                    discarded_bytes = bytes.len() - at,
                    reason,
                    "the journal ends in a torn record, as a crash in the middle of a write \
                     leaves; replay stops there (nothing after it was acknowledged as durable)"
                );
                return Ok(());
            }
            Decoded::Torn(reason) => {
                return Err(damaged(
                    path,
                    format!(
                        "{reason} at byte {at} of a journal file that was complete and \
                         synced when the next one started"
                    ),
                ))
            }
        }
    }
}

/// Removes a journal file that is no longer needed (`what` says which, for the log); a
/// failure is only logged, as a file left behind is skipped or replayed harmlessly at the
/// next open.
pub fn remove_or_warn(path: &Path, what: &str) {
    if let Err(error) = fs::remove_file(path) {
        tracing::warn!(file = %path.display(), %error, "cannot remove the {what} journal file");
    }
}

/// Copies `overlay` into `sled`, records `generation` as checkpointed and makes both
/// durable. The journal files up to `generation` are then no longer needed.
pub fn checkpoint(
    sled: &SledStorage,
    overlay: &Overlay,
    generation: u64,
    operation: &'static str,
) -> Result<(), StorageError> {
    let changes: Vec<(&[u8], Option<&[u8]>)> = overlay.changes().collect();
    for chunk in changes.chunks(CHECKPOINT_CHUNK_WRITES) {
        sled.apply_changes(chunk.iter().copied())?;
    }
    sled.set_journal_checkpointed(generation, operation)?;
    crate::storage::Storage::sync(sled)
}

fn damaged(path: &Path, what: String) -> StorageError {
    StorageError::new(
        "open",
        format!(
            "the journal at {} is damaged: {what}. Refusing to start on it. Stop the broker, \
             keep a copy of the data directory for inspection, and restore it from your \
             latest backup",
            path.display()
        ),
    )
}
