//! Export and import of a whole store as one file: the format of backups, of
//! `taskforge storage backup` / `restore`, and the carrier of `compact`.
//!
//! Exporting goes through the [`Storage`] trait, so it reads a consistent, engine-neutral
//! copy of every record rather than copying sled's files (which are only consistent while
//! sled is closed). Importing writes into a fresh, empty store in bounded batches.
//!
//! # File format (version 1)
//!
//! Every integer is big-endian.
//!
//! | bytes        | field                                                              |
//! |--------------|--------------------------------------------------------------------|
//! | 8            | magic `TFDUMP`, then `0x00`, then the format version `0x01`        |
//! | 8            | the store's schema version at export (u64; 0 if never stamped)     |
//! | per pair     | key length (u32, 1..=[`DUMP_KEY_BYTES_MAX`]), key, value length (u32, ≤ [`RECORD_BYTES_MAX`]), value |
//! | 4            | end marker `0xFFFF_FFFF`                                           |
//! | 8            | number of pairs (u64)                                              |
//! | 32           | BLAKE3 of every byte before the end marker                         |
//!
//! Pairs appear in key order. A file that is truncated, has trailing bytes, a wrong count or
//! a wrong hash is rejected before the imported store replaces anything.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};

use super::keys;
use super::migrations;
use super::records::RECORD_BYTES_MAX;
use super::{Storage, StorageError, Write};

/// First eight bytes of a dump file: a name and the format version.
pub const DUMP_MAGIC: [u8; 8] = *b"TFDUMP\x00\x01";

/// Longest key a dump may hold. Real keys are under 200 bytes (a prefix, a project id and
/// a queue name of at most 128 bytes); anything longer is corruption.
pub const DUMP_KEY_BYTES_MAX: u32 = 4 * 1024;

/// The key-length value that marks the end of the pairs.
const END_MARKER: u32 = u32::MAX;

/// Most pairs one import batch applies; bounds the memory an import holds at once.
pub const IMPORT_BATCH_PAIRS_MAX: usize = 10_000;

/// Most key and value bytes one import batch holds before it is applied.
pub const IMPORT_BATCH_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Directory under the data directory where backups go.
pub const BACKUPS_DIR_NAME: &str = "backups";

/// Name of the dump file inside one backup directory.
pub const BACKUP_FILE_NAME: &str = "store.tfdump";

/// Backups started within the same millisecond get a numbered suffix; this many at most.
const BACKUP_NAME_ATTEMPTS_MAX: u32 = 100;

const _: () = assert!(DUMP_KEY_BYTES_MAX < END_MARKER);
const _: () = assert!(RECORD_BYTES_MAX < END_MARKER as usize);

/// Why an export or import failed.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS reported.
        source: io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The file is not a dump, or is damaged.
    #[error("{path} is not a valid dump: {problem}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
}

/// What an export or import covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpSummary {
    /// The schema version recorded in the dump (0: the store was never stamped).
    pub schema_version: u64,
    /// Key/value pairs.
    pub pairs: u64,
    /// Bytes of the dump file.
    pub file_bytes: u64,
}

/// A writer that hashes and counts what passes through it.
struct HashingWriter<W> {
    /// Where the bytes go.
    inner: W,
    /// BLAKE3 of every byte written so far.
    hasher: blake3::Hasher,
    /// Bytes written so far.
    written: u64,
}

impl<W: io::Write> HashingWriter<W> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        self.inner.write_all(bytes)
    }
}

/// Writes every pair of `storage` to `out` in the dump format; returns what it wrote.
pub fn export(storage: &dyn Storage, out: impl io::Write) -> Result<DumpSummary, ExportError> {
    let schema_version = migrations::stored_version(storage)?.unwrap_or(0);
    let mut writer = HashingWriter {
        inner: out,
        hasher: blake3::Hasher::new(),
        written: 0,
    };
    writer.put(&DUMP_MAGIC)?;
    writer.put(&schema_version.to_be_bytes())?;
    let mut pairs: u64 = 0;
    let mut write_failure: Option<ExportError> = None;
    let (start, end) = keys::all_range();
    storage.scan(&start, &end, &mut |key, value| {
        let written = pair_lengths(key, value).and_then(|(key_length, value_length)| {
            writer.put(&key_length.to_be_bytes())?;
            writer.put(key)?;
            writer.put(&value_length.to_be_bytes())?;
            writer.put(value)?;
            Ok(())
        });
        match written {
            Ok(()) => {
                pairs += 1;
                true
            }
            Err(error) => {
                write_failure = Some(error);
                false
            }
        }
    })?;
    if let Some(error) = write_failure {
        return Err(error);
    }
    let digest = writer.hasher.finalize();
    let mut trailer = Vec::with_capacity(44);
    trailer.extend_from_slice(&END_MARKER.to_be_bytes());
    trailer.extend_from_slice(&pairs.to_be_bytes());
    trailer.extend_from_slice(digest.as_bytes());
    writer.inner.write_all(&trailer)?;
    writer.inner.flush()?;
    Ok(DumpSummary {
        schema_version,
        pairs,
        file_bytes: writer.written + trailer.len() as u64,
    })
}

/// The length fields of one pair, refusing pairs the format cannot hold.
fn pair_lengths(key: &[u8], value: &[u8]) -> Result<(u32, u32), ExportError> {
    let key_length = u32::try_from(key.len())
        .ok()
        .filter(|length| (1..=DUMP_KEY_BYTES_MAX).contains(length));
    let value_length = u32::try_from(value.len())
        .ok()
        .filter(|length| *length as usize <= RECORD_BYTES_MAX);
    match (key_length, value_length) {
        (Some(key_length), Some(value_length)) => Ok((key_length, value_length)),
        _ => Err(ExportError::Oversized {
            key_bytes: key.len(),
            value_bytes: value.len(),
        }),
    }
}

/// Why [`export`] failed (before a file name is known).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Writing failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A stored pair is larger than the dump format allows: the store is corrupt.
    #[error(
        "a stored key of {key_bytes} bytes with a value of {value_bytes} bytes exceeds the \
         dump limits ({DUMP_KEY_BYTES_MAX}-byte keys, {RECORD_BYTES_MAX}-byte values)"
    )]
    Oversized {
        /// The key's length.
        key_bytes: usize,
        /// The value's length.
        value_bytes: usize,
    },
}

impl ExportError {
    fn at(self, path: &Path) -> DumpError {
        match self {
            ExportError::Io(source) => DumpError::Io {
                path: path.to_path_buf(),
                source,
            },
            ExportError::Storage(error) => DumpError::Storage(error),
            oversized @ ExportError::Oversized { .. } => DumpError::Format {
                path: path.to_path_buf(),
                problem: oversized.to_string(),
            },
        }
    }
}

/// Exports `storage` into the file `path` durably: written to `<path>.tmp`, fsynced,
/// renamed into place, and the directory fsynced. An existing file is replaced.
pub fn export_to_file(storage: &dyn Storage, path: &Path) -> Result<DumpSummary, DumpError> {
    let io_error = |source| DumpError::Io {
        path: path.to_path_buf(),
        source,
    };
    let temporary = temporary_path(path);
    let file = File::create(&temporary).map_err(io_error)?;
    let mut buffered = BufWriter::new(file);
    let summary = export(storage, &mut buffered).map_err(|error| error.at(path))?;
    let file = buffered
        .into_inner()
        .map_err(|error| io_error(error.into_error()))?;
    file.sync_all().map_err(io_error)?;
    drop(file);
    fs::rename(&temporary, path).map_err(io_error)?;
    sync_parent_directory(path).map_err(io_error)?;
    Ok(summary)
}

/// `<path>.tmp`, where a file is written before it is renamed into place.
fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".tmp");
    PathBuf::from(name)
}

/// fsyncs the directory holding `path`, so a rename or creation in it survives a crash.
pub fn sync_parent_directory(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

/// A reader that hashes what passes through it.
struct HashingReader<R> {
    /// Where the bytes come from.
    inner: R,
    /// BLAKE3 of every byte read so far.
    hasher: blake3::Hasher,
}

impl<R: Read> HashingReader<R> {
    fn exact<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        let mut bytes = [0u8; N];
        self.inner.read_exact(&mut bytes)?;
        self.hasher.update(&bytes);
        Ok(bytes)
    }

    fn vector(&mut self, length: usize) -> io::Result<Vec<u8>> {
        let mut bytes = vec![0u8; length];
        self.inner.read_exact(&mut bytes)?;
        self.hasher.update(&bytes);
        Ok(bytes)
    }
}

/// Reads the dump file `path` into `storage`, which should be empty (pairs are added, not
/// merged). Batches are applied as they fill and synced at the end; the caller discards
/// the store if this fails, because a damaged file is only detected at its end.
pub fn import_file(path: &Path, storage: &dyn Storage) -> Result<DumpSummary, DumpError> {
    let file = File::open(path).map_err(|source| DumpError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let file_bytes = file.metadata().map(|metadata| metadata.len()).unwrap_or(0);
    let mut summary = import(BufReader::new(file), storage).map_err(|error| match error {
        ImportError::Io(source) if source.kind() == io::ErrorKind::UnexpectedEof => {
            DumpError::Format {
                path: path.to_path_buf(),
                problem: "the file ends early (truncated copy?)".to_string(),
            }
        }
        ImportError::Io(source) => DumpError::Io {
            path: path.to_path_buf(),
            source,
        },
        ImportError::Storage(error) => DumpError::Storage(error),
        ImportError::Format(problem) => DumpError::Format {
            path: path.to_path_buf(),
            problem,
        },
    })?;
    summary.file_bytes = file_bytes;
    Ok(summary)
}

/// Why [`import`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Reading failed (an early end is `UnexpectedEof`).
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The bytes are not a valid dump.
    #[error("{0}")]
    Format(String),
}

/// Reads a dump from `input` into `storage`; see [`import_file`].
pub fn import(input: impl Read, storage: &dyn Storage) -> Result<DumpSummary, ImportError> {
    let mut reader = HashingReader {
        inner: input,
        hasher: blake3::Hasher::new(),
    };
    if reader.exact::<8>()? != DUMP_MAGIC {
        return Err(ImportError::Format(
            "it does not start with the TaskForge dump magic (or is a newer format)".into(),
        ));
    }
    let schema_version = u64::from_be_bytes(reader.exact::<8>()?);
    let mut batch: Vec<Write> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut pairs: u64 = 0;
    let mut previous_key: Option<Vec<u8>> = None;
    loop {
        // The end marker is not part of the hashed bytes, so hash the length only after
        // knowing it is not the marker.
        let mut length_bytes = [0u8; 4];
        reader.inner.read_exact(&mut length_bytes)?;
        let key_length = u32::from_be_bytes(length_bytes);
        if key_length == END_MARKER {
            break;
        }
        reader.hasher.update(&length_bytes);
        if key_length == 0 || key_length > DUMP_KEY_BYTES_MAX {
            return Err(ImportError::Format(format!(
                "pair {pairs} has a key length of {key_length} bytes (1 to {DUMP_KEY_BYTES_MAX} \
                 allowed)"
            )));
        }
        let key = reader.vector(key_length as usize)?;
        let value_length = u32::from_be_bytes(reader.exact::<4>()?) as usize;
        if value_length > RECORD_BYTES_MAX {
            return Err(ImportError::Format(format!(
                "pair {pairs} has a value length of {value_length} bytes (at most \
                 {RECORD_BYTES_MAX} allowed)"
            )));
        }
        let value = reader.vector(value_length)?;
        if previous_key
            .as_ref()
            .is_some_and(|previous| *previous >= key)
        {
            return Err(ImportError::Format(format!(
                "pair {pairs} is out of key order"
            )));
        }
        previous_key = Some(key.clone());
        batch_bytes += key.len() + value.len();
        batch.push(Write::Put(key, value));
        pairs += 1;
        if batch.len() >= IMPORT_BATCH_PAIRS_MAX || batch_bytes >= IMPORT_BATCH_BYTES_MAX {
            storage.apply(&batch)?;
            batch.clear();
            batch_bytes = 0;
        }
    }
    let expected_digest = reader.hasher.finalize();
    let mut count = [0u8; 8];
    reader.inner.read_exact(&mut count)?;
    let mut digest = [0u8; 32];
    reader.inner.read_exact(&mut digest)?;
    let mut trailing = [0u8; 1];
    if reader.inner.read(&mut trailing)? != 0 {
        return Err(ImportError::Format(
            "there are bytes after the end of the dump".into(),
        ));
    }
    if u64::from_be_bytes(count) != pairs {
        return Err(ImportError::Format(format!(
            "it says it holds {} pairs but holds {pairs}",
            u64::from_be_bytes(count)
        )));
    }
    if blake3::Hash::from_bytes(digest) != expected_digest {
        return Err(ImportError::Format(
            "its checksum does not match its contents (the file is damaged)".into(),
        ));
    }
    storage.apply(&batch)?;
    storage.sync()?;
    Ok(DumpSummary {
        schema_version,
        pairs,
        file_bytes: 0,
    })
}

/// A backup written by [`write_backup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    /// The dump file.
    pub path: PathBuf,
    /// What it holds.
    pub summary: DumpSummary,
}

/// Exports `storage` into a new backup directory
/// `<data_dir>/backups/<UTC time>-v<schema version>/store.tfdump`.
pub fn write_backup(storage: &dyn Storage, data_dir: &Path) -> Result<Backup, DumpError> {
    let version = migrations::stored_version(storage)?.unwrap_or(0);
    let backups = data_dir.join(BACKUPS_DIR_NAME);
    fs::create_dir_all(&backups).map_err(|source| DumpError::Io {
        path: backups.clone(),
        source,
    })?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string();
    let mut attempt = 1;
    let directory = loop {
        let name = if attempt == 1 {
            format!("{stamp}-v{version}")
        } else {
            format!("{stamp}-v{version}-{attempt}")
        };
        let candidate = backups.join(name);
        match fs::create_dir(&candidate) {
            Ok(()) => break candidate,
            Err(error)
                if error.kind() == io::ErrorKind::AlreadyExists
                    && attempt < BACKUP_NAME_ATTEMPTS_MAX =>
            {
                attempt += 1;
            }
            Err(source) => {
                return Err(DumpError::Io {
                    path: candidate,
                    source,
                })
            }
        }
    };
    let path = directory.join(BACKUP_FILE_NAME);
    let summary = export_to_file(storage, &path)?;
    sync_parent_directory(&directory).map_err(|source| DumpError::Io {
        path: directory.clone(),
        source,
    })?;
    Ok(Backup { path, summary })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;

    fn filled() -> MemoryStorage {
        let storage = MemoryStorage::new();
        storage
            .apply(&[
                Write::Put(
                    keys::META_SCHEMA_VERSION.to_vec(),
                    1u64.to_be_bytes().to_vec(),
                ),
                Write::Put(vec![keys::QUEUE, 1], b"queue".to_vec()),
                Write::Put(vec![keys::JOB, 2], Vec::new()),
            ])
            .expect("apply");
        storage
    }

    fn dump_of(storage: &dyn Storage) -> Vec<u8> {
        let mut bytes = Vec::new();
        export(storage, &mut bytes).expect("export");
        bytes
    }

    #[test]
    fn a_dump_round_trips_every_pair() {
        let source = filled();
        let bytes = dump_of(&source);
        let copy = MemoryStorage::new();
        let summary = import(bytes.as_slice(), &copy).expect("import");
        assert_eq!(summary.pairs, 3);
        assert_eq!(summary.schema_version, 1);
        assert_eq!(dump_of(&copy), bytes);
    }

    #[test]
    fn damaged_dumps_are_refused() {
        let bytes = dump_of(&filled());
        let truncated = &bytes[..bytes.len() - 5];
        assert!(matches!(
            import(truncated, &MemoryStorage::new()),
            Err(ImportError::Io(_))
        ));
        let mut flipped = bytes.clone();
        flipped[20] ^= 0x40;
        assert!(import(flipped.as_slice(), &MemoryStorage::new()).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            import(longer.as_slice(), &MemoryStorage::new()),
            Err(ImportError::Format(_))
        ));
        assert!(matches!(
            import(&b"not a dump at all"[..], &MemoryStorage::new()),
            Err(ImportError::Format(_))
        ));
    }

    #[test]
    fn a_hostile_length_is_an_error_not_an_allocation() {
        let mut bytes = DUMP_MAGIC.to_vec();
        bytes.extend_from_slice(&1u64.to_be_bytes());
        bytes.extend_from_slice(&(DUMP_KEY_BYTES_MAX + 1).to_be_bytes());
        assert!(matches!(
            import(bytes.as_slice(), &MemoryStorage::new()),
            Err(ImportError::Format(_))
        ));
    }

    #[test]
    fn backups_get_their_own_directory() {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let storage = filled();
        let first = write_backup(&storage, data_dir.path()).expect("backup");
        let second = write_backup(&storage, data_dir.path()).expect("backup");
        assert_ne!(first.path, second.path);
        assert!(first.path.exists() && second.path.exists());
        let name = first
            .path
            .parent()
            .and_then(Path::file_name)
            .and_then(|name| name.to_str())
            .expect("directory name");
        assert!(name.contains("-v1"), "{name}");
        let copy = MemoryStorage::new();
        assert_eq!(import_file(&first.path, &copy).expect("import").pairs, 3);
    }
}
