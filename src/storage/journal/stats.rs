//! Counters of the journal for `/metrics`, shared by every handle a reopened store gets so
//! they keep counting across reopenings.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The journal's counters, updated by its writer and checkpointer.
#[derive(Debug, Default)]
pub struct JournalStats {
    checkpoints: AtomicU64,
    checkpointed_keys: AtomicU64,
    checkpoint_us: AtomicU64,
    writer_waits: AtomicU64,
    writer_wait_us: AtomicU64,
    file_bytes: AtomicU64,
}

/// The journal's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JournalSnapshot {
    /// Journal files checkpointed into sled.
    pub checkpoints: u64,
    /// Keys those checkpoints copied into sled (each changed key once per file).
    pub checkpointed_keys: u64,
    /// Time spent checkpointing, s.
    pub checkpoint_seconds: f64,
    /// Commit rounds that waited for a checkpoint before they could be journaled (the
    /// back-pressure of [`super::JournalOptions::checkpoint_bytes`]).
    pub writer_waits: u64,
    /// Time those rounds waited, s.
    pub writer_wait_seconds: f64,
    /// Bytes in the current journal file: what the next checkpoint takes.
    pub file_bytes: u64,
}

fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
}

impl JournalStats {
    /// Notes a checkpoint of `keys` keys that took `elapsed`.
    pub(super) fn checkpointed(&self, keys: usize, elapsed: Duration) {
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.checkpointed_keys
            .fetch_add(keys as u64, Ordering::Relaxed);
        self.checkpoint_us
            .fetch_add(micros(elapsed), Ordering::Relaxed);
    }

    /// Notes a commit round that waited `elapsed` for a checkpoint.
    pub(super) fn writer_waited(&self, elapsed: Duration) {
        self.writer_waits.fetch_add(1, Ordering::Relaxed);
        self.writer_wait_us
            .fetch_add(micros(elapsed), Ordering::Relaxed);
    }

    /// The size of the current journal file.
    pub(super) fn file_bytes(&self) -> u64 {
        self.file_bytes.load(Ordering::Relaxed)
    }

    /// Notes the size of the current journal file.
    pub(super) fn set_file_bytes(&self, bytes: u64) {
        self.file_bytes.store(bytes, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> JournalSnapshot {
        let seconds = |us: &AtomicU64| us.load(Ordering::Relaxed) as f64 / 1e6;
        JournalSnapshot {
            checkpoints: self.checkpoints.load(Ordering::Relaxed),
            checkpointed_keys: self.checkpointed_keys.load(Ordering::Relaxed),
            checkpoint_seconds: seconds(&self.checkpoint_us),
            writer_waits: self.writer_waits.load(Ordering::Relaxed),
            writer_wait_seconds: seconds(&self.writer_wait_us),
            file_bytes: self.file_bytes.load(Ordering::Relaxed),
        }
    }
}
