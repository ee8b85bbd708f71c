//! The server's store: a [`JournaledStorage`] (sled behind the commit journal) that can be
//! reopened in place.
//!
//! After a failed write, sync or checkpoint the store refuses every later write, because
//! the kernel may have dropped the unsynced pages and a later sync could succeed without
//! them (see [`crate::storage::SledStorage`]). The way out is to close the handle and open the directory again, which
//! continues from what is really on disk. The broker's recovery calls [`Storage::reopen`]
//! before it rebuilds its memory, so once the fault clears (the disk has room again, the
//! device is back) the broker serves again without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use super::journal::stats::{JournalSnapshot, JournalStats};
use super::{JournalOptions, JournaledStorage, SledOptions, Storage, StorageError, Write};

/// A [`JournaledStorage`] behind a lock, so [`Storage::reopen`] can replace it.
pub struct ReopeningStorage {
    /// The database directory.
    dir: PathBuf,
    /// How sled is opened.
    options: SledOptions,
    /// How the journal is checkpointed.
    journal: JournalOptions,
    /// How long an open waits for the previous handle's lock to go.
    lock_wait_ms: u64,
    /// The open handle; `None` after a reopen failed (the next reopen tries again).
    current: RwLock<Option<JournaledStorage>>,
    /// The journal's counters, kept across reopenings.
    stats: Arc<JournalStats>,
}

impl ReopeningStorage {
    /// Opens the database in `dir` (see [`JournaledStorage::open`]).
    pub fn open(
        dir: &Path,
        options: SledOptions,
        journal: JournalOptions,
        lock_wait_ms: u64,
    ) -> Result<ReopeningStorage, StorageError> {
        let stats = Arc::new(JournalStats::default());
        let store = JournaledStorage::open_counting(
            dir,
            options,
            journal,
            lock_wait_ms,
            Arc::clone(&stats),
        )?;
        Ok(ReopeningStorage {
            dir: dir.to_path_buf(),
            options,
            journal,
            lock_wait_ms,
            current: RwLock::new(Some(store)),
            stats,
        })
    }

    fn with<T>(
        &self,
        operation: &'static str,
        run: impl FnOnce(&JournaledStorage) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        match current.as_ref() {
            Some(store) => run(store),
            None => Err(StorageError::new(
                operation,
                format!(
                    "{} is closed: reopening it after a failure did not succeed yet",
                    self.dir.display()
                ),
            )),
        }
    }
}

impl Storage for ReopeningStorage {
    fn apply(&self, batch: &[Write]) -> Result<(), StorageError> {
        self.with("apply", |store| store.apply(batch))
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.with("sync", JournaledStorage::sync)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.with("read", |store| store.get(key))
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        self.with("read", |store| store.scan(start, end, visit))
    }

    fn size_on_disk_bytes(&self) -> Result<u64, StorageError> {
        self.with("read", JournaledStorage::size_on_disk_bytes)
    }

    fn reopen(&self) -> Result<(), StorageError> {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        // The old handle must be gone (and its lock released) before the directory opens
        // again; dropping it flushes what it still can.
        drop(current.take());
        let store = JournaledStorage::open_counting(
            &self.dir,
            self.options,
            self.journal,
            self.lock_wait_ms,
            Arc::clone(&self.stats),
        )?;
        *current = Some(store);
        tracing::warn!(dir = %self.dir.display(), "storage reopened after a failure");
        Ok(())
    }

    fn journal_stats(&self) -> Option<JournalSnapshot> {
        Some(self.stats.snapshot())
    }

    fn apply_may_block(&self) -> bool {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        current.as_ref().is_some_and(Storage::apply_may_block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::contract_tests;

    /// Enough for sled's background threads to let go of a dropped handle's lock.
    const LOCK_WAIT_MS: u64 = 5_000;

    fn put(key: &[u8], value: &[u8]) -> Write {
        Write::Put(key.to_vec(), value.to_vec())
    }

    #[test]
    fn passes_the_storage_contract() {
        for check in contract_tests::ON_A_FRESH_STORE {
            let directory = tempfile::tempdir().expect("tempdir");
            check(&open(directory.path(), JournalOptions::default()));
        }
    }

    fn open(dir: &Path, journal: JournalOptions) -> ReopeningStorage {
        ReopeningStorage::open(dir, SledOptions::default(), journal, LOCK_WAIT_MS).expect("open")
    }

    #[test]
    fn the_journal_counters_go_on_across_a_reopen() {
        let directory = tempfile::tempdir().expect("tempdir");
        let storage = open(directory.path(), JournalOptions::default());
        storage.apply(&[put(b"a", b"1")]).expect("apply");
        storage
            .with("sync", JournaledStorage::checkpoint_now)
            .expect("checkpointed into sled");
        let first = storage.journal_stats().expect("a journal");
        assert_eq!(first.checkpoints, 1);
        storage.reopen().expect("reopen");
        storage.apply(&[put(b"b", b"2")]).expect("apply");
        storage
            .with("sync", JournaledStorage::checkpoint_now)
            .expect("checkpointed into sled");
        let second = storage.journal_stats().expect("a journal");
        assert_eq!(second.checkpoints, 2, "{second:?}");
        assert_eq!(second.checkpointed_keys, 2);
    }

    #[test]
    fn a_reopen_after_a_failed_checkpoint_accepts_writes_again_from_what_is_on_disk() {
        let directory = tempfile::tempdir().expect("tempdir");
        // Every write closes its journal file, so each one is checkpointed into sled.
        let journal = JournalOptions {
            checkpoint_bytes: 1,
            checkpoint_interval_ms: None,
        };
        let storage = open(directory.path(), journal);
        storage.apply(&[put(b"durable", b"1")]).expect("apply");
        storage
            .with("sync", JournaledStorage::checkpoint_now)
            .expect("checkpointed into sled");
        // Make sled's sync fail, as an I/O error would (see the sled store's tests).
        let blobs = directory.path().join("blobs");
        std::fs::remove_dir(&blobs).expect("remove blobs");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut index = 0u32;
        while storage.apply(&[put(&index.to_be_bytes(), b"2")]).is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "the checkpoint never failed"
            );
            index += 1;
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        std::fs::create_dir(&blobs).expect("the fault clears");
        assert!(
            storage.apply(&[put(b"b", b"2")]).is_err(),
            "refused until reopened"
        );
        storage.reopen().expect("reopen");
        storage
            .apply(&[put(b"after", b"3")])
            .expect("writes work again");
        storage.sync().expect("and syncs");
        assert_eq!(storage.get(b"durable").expect("read"), Some(b"1".to_vec()));
        assert_eq!(storage.get(b"after").expect("read"), Some(b"3".to_vec()));
        assert_eq!(
            storage.get(&0u32.to_be_bytes()).expect("read"),
            Some(b"2".to_vec()),
            "what the journal holds is replayed"
        );
    }
}
