//! A store that behaves like a disk with a volatile write cache: everything applied is
//! visible at once, but only what a [`Storage::sync`] made durable survives a simulated
//! power cut. Tests take [`PowerLossStorage::durable_copy`] at the moment of the "cut" and
//! open a new broker on it, to check what each fsync policy really keeps.

use std::sync::{Mutex, PoisonError};

use super::{MemoryStorage, Storage, StorageError, Write};

/// See the module docs.
#[derive(Debug, Default)]
pub struct PowerLossStorage {
    /// What reads see: every applied batch.
    visible: MemoryStorage,
    /// What survives a power cut: batches up to the last sync.
    durable: MemoryStorage,
    /// Batches applied since the last sync, in order; lost at a power cut.
    unsynced: Mutex<Vec<Vec<Write>>>,
}

impl PowerLossStorage {
    /// An empty disk.
    pub fn new() -> PowerLossStorage {
        PowerLossStorage::default()
    }

    /// What a power cut now would leave: a fresh store holding only durable data.
    pub fn durable_copy(&self) -> Result<MemoryStorage, StorageError> {
        let mut batch = Vec::new();
        let (start, end) = super::keys::all_range();
        self.durable.scan(&start, &end, &mut |key, value| {
            batch.push(Write::Put(key.to_vec(), value.to_vec()));
            true
        })?;
        let copy = MemoryStorage::new();
        copy.apply(&batch)?;
        Ok(copy)
    }
}

impl Storage for PowerLossStorage {
    fn apply(&self, batch: &[Write]) -> Result<(), StorageError> {
        self.visible.apply(batch)?;
        self.unsynced
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(batch.to_vec());
        Ok(())
    }

    fn sync(&self) -> Result<(), StorageError> {
        let unsynced =
            std::mem::take(&mut *self.unsynced.lock().unwrap_or_else(PoisonError::into_inner));
        for batch in &unsynced {
            self.durable.apply(batch)?;
        }
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.visible.get(key)
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        self.visible.scan(start, end, visit)
    }

    fn size_on_disk_bytes(&self) -> Result<u64, StorageError> {
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_synced_batches_survive_a_power_cut() {
        let disk = PowerLossStorage::new();
        disk.apply(&[Write::Put(b"a".to_vec(), b"1".to_vec())])
            .expect("apply");
        disk.sync().expect("sync");
        disk.apply(&[
            Write::Put(b"b".to_vec(), b"2".to_vec()),
            Write::Delete(b"a".to_vec()),
        ])
        .expect("apply");
        assert_eq!(
            disk.get(b"b").expect("get"),
            Some(b"2".to_vec()),
            "applied is visible"
        );
        let after_cut = disk.durable_copy().expect("copy");
        assert_eq!(after_cut.get(b"a").expect("get"), Some(b"1".to_vec()));
        assert_eq!(
            after_cut.get(b"b").expect("get"),
            None,
            "the unsynced batch is lost whole"
        );
    }
}
