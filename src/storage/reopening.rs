//! The server's store: a [`SledStorage`] that can be reopened in place.
//!
//! After a failed sync a sled handle refuses every later write, because the kernel may have
//! dropped the unsynced pages and a later sync could succeed without them (see
//! [`SledStorage`]). The way out is to close the handle and open the directory again, which
//! continues from what is really on disk. The broker's recovery calls [`Storage::reopen`]
//! before it rebuilds its memory, so once the fault clears (the disk has room again, the
//! device is back) the broker serves again without a restart.

use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};

use super::{SledOptions, SledStorage, Storage, StorageError, Write};

/// A [`SledStorage`] behind a lock, so [`Storage::reopen`] can replace it.
pub struct ReopeningStorage {
    /// The database directory.
    dir: PathBuf,
    /// How it is opened.
    options: SledOptions,
    /// How long an open waits for the previous handle's lock to go.
    lock_wait_ms: u64,
    /// The open handle; `None` after a reopen failed (the next reopen tries again).
    current: RwLock<Option<SledStorage>>,
}

impl ReopeningStorage {
    /// Opens the database in `dir` (see [`SledStorage::open_waiting_for_lock`]).
    pub fn open(
        dir: &Path,
        options: SledOptions,
        lock_wait_ms: u64,
    ) -> Result<ReopeningStorage, StorageError> {
        let store = SledStorage::open_waiting_for_lock(dir, options, lock_wait_ms)?;
        Ok(ReopeningStorage {
            dir: dir.to_path_buf(),
            options,
            lock_wait_ms,
            current: RwLock::new(Some(store)),
        })
    }

    fn with<T>(
        &self,
        operation: &'static str,
        run: impl FnOnce(&SledStorage) -> Result<T, StorageError>,
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
        self.with("sync", SledStorage::sync)
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
        self.with("read", SledStorage::size_on_disk_bytes)
    }

    fn reopen(&self) -> Result<(), StorageError> {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        // The old handle must be gone (and its lock released) before the directory opens
        // again; dropping it flushes what it still can.
        drop(current.take());
        let store = SledStorage::open_waiting_for_lock(&self.dir, self.options, self.lock_wait_ms)?;
        *current = Some(store);
        tracing::warn!(dir = %self.dir.display(), "storage reopened after a failure");
        Ok(())
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
        let contract: [fn(&dyn Storage); 4] = [
            contract_tests::round_trip,
            contract_tests::batch_applies_in_order,
            contract_tests::range_delete_applies_in_order,
            contract_tests::scan_bounds_and_early_stop,
        ];
        for check in contract {
            let directory = tempfile::tempdir().expect("tempdir");
            let storage =
                ReopeningStorage::open(directory.path(), SledOptions::default(), LOCK_WAIT_MS)
                    .expect("open");
            check(&storage);
        }
    }

    #[test]
    fn a_reopen_after_a_failed_sync_accepts_writes_again_from_what_is_on_disk() {
        let directory = tempfile::tempdir().expect("tempdir");
        let storage =
            ReopeningStorage::open(directory.path(), SledOptions::default(), LOCK_WAIT_MS)
                .expect("open");
        storage.apply(&[put(b"durable", b"1")]).expect("apply");
        storage.sync().expect("sync");
        // Make the blob listing fail, as an I/O error would (see the sled store's tests).
        let blobs = directory.path().join("blobs");
        std::fs::remove_dir(&blobs).expect("remove blobs");
        assert!(storage.sync().is_err());
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
    }
}
