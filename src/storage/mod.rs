//! Storage: the store of record behind a small trait, so the broker can run on sled, in
//! memory (benchmarks, simulation) or on a fault-injecting wrapper (tests).
//!
//! The trait is deliberately raw (byte keys, byte values): key layout and record encoding
//! live in [`keys`] and [`records`], one place for every stored byte.
//!
//! # Contract
//! - [`Storage::apply`] makes a whole batch visible atomically, and after a crash either
//!   the whole batch or none of it is present.
//! - [`Storage::sync`] returns only once everything applied before it survives power loss.
//! - Batches are applied by one writer (the group committer), in order.

pub mod check;
pub mod dump;
pub mod faulty;
pub mod journal;
pub mod keys;
pub mod maintenance;
pub mod memory;
pub mod migrations;
pub mod power_loss;
pub mod records;
pub mod reopening;
pub mod sled_store;

pub use faulty::FaultyStorage;
pub use journal::{JournalOptions, JournaledStorage};
pub use memory::MemoryStorage;
pub use power_loss::PowerLossStorage;
pub use reopening::ReopeningStorage;
pub use sled_store::{SledOptions, SledStorage};

/// One change in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Set `key` to `value`.
    Put(Vec<u8>, Vec<u8>),
    /// Remove `key` (no error if absent).
    Delete(Vec<u8>),
    /// Remove every key in `start..end`, including keys put earlier in the same batch.
    DeleteRange(Vec<u8>, Vec<u8>),
}

/// A storage failure. The broker answers UNAVAILABLE and rebuilds its memory from storage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("storage {operation} failed: {message}")]
pub struct StorageError {
    /// What was being done: "apply", "sync", "read", "open".
    pub operation: &'static str,
    /// What the store reported.
    pub message: String,
}

impl StorageError {
    /// An error for `operation` with the store's message.
    pub fn new(operation: &'static str, message: impl std::fmt::Display) -> StorageError {
        StorageError {
            operation,
            message: message.to_string(),
        }
    }
}

/// The store of record.
pub trait Storage: Send + Sync + 'static {
    /// Applies every write in `batch` atomically, in order.
    fn apply(&self, batch: &[Write]) -> Result<(), StorageError>;

    /// Makes everything applied so far durable, including against power loss.
    fn sync(&self) -> Result<(), StorageError>;

    /// Reads one key.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;

    /// Visits pairs with `start <= key < end` in key order until `visit` returns false.
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError>;

    /// Bytes the store occupies on disk (0 for memory).
    fn size_on_disk_bytes(&self) -> Result<u64, StorageError>;

    /// Closes and opens the store again after a failure, so that it continues from what
    /// is really on disk. Stores that need nothing of the kind do nothing.
    fn reopen(&self) -> Result<(), StorageError> {
        Ok(())
    }

    /// The commit journal's counters, for stores with one.
    fn journal_stats(&self) -> Option<journal::stats::JournalSnapshot> {
        None
    }

    /// True when an [`Storage::apply`] now could block for longer than writing its batch:
    /// the journal's current file is full and the next apply closes it or, while a
    /// checkpoint is behind, waits for it. The broker then leaves the round to its
    /// committer thread instead of a thread that serves connections. Stores whose apply is
    /// always a plain write answer false.
    fn apply_may_block(&self) -> bool {
        false
    }
}

/// A scan visitor that can fail: `Ok(true)` to go on, `Ok(false)` to stop, `Err` to abort.
pub type FallibleVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool, StorageError> + 'a;

/// Scans like [`Storage::scan`] with a visitor that can fail: the first error stops the
/// scan and is returned, so callers need no error slot of their own.
pub fn try_scan(
    storage: &dyn Storage,
    start: &[u8],
    end: &[u8],
    visit: &mut FallibleVisitor<'_>,
) -> Result<(), StorageError> {
    let mut failure = None;
    storage.scan(start, end, &mut |key, value| match visit(key, value) {
        Ok(more) => more,
        Err(error) => {
            failure = Some(error);
            false
        }
    })?;
    failure.map_or(Ok(()), Err)
}
