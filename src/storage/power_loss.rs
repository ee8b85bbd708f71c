//! A store that behaves like a disk with a volatile write cache: everything applied is
//! visible at once, but only what a [`Storage::sync`] made durable survives a simulated
//! power cut. Tests take [`PowerLossStorage::durable_copy`] at the moment of the "cut" and
//! open a new broker on it, to check what each fsync policy really keeps.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{MemoryStorage, Storage, StorageError, Write};

/// The two views of the simulated disk.
#[derive(Debug, Default)]
struct Disk {
    /// What reads see: every applied batch.
    visible: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Batches applied since the last sync, in order; lost at a power cut.
    unsynced: Vec<Vec<Write>>,
    /// What survives a power cut.
    durable: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Syncs so far.
    syncs: u64,
}

fn apply_to(map: &mut BTreeMap<Vec<u8>, Vec<u8>>, batch: &[Write]) {
    for write in batch {
        match write {
            Write::Put(key, value) => {
                map.insert(key.clone(), value.clone());
            }
            Write::Delete(key) => {
                map.remove(key);
            }
        }
    }
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct PowerLossStorage {
    /// The simulated disk.
    disk: Mutex<Disk>,
}

impl PowerLossStorage {
    /// An empty disk.
    pub fn new() -> PowerLossStorage {
        PowerLossStorage::default()
    }

    fn disk(&self) -> MutexGuard<'_, Disk> {
        self.disk.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What a power cut now would leave: a fresh store holding only durable data.
    pub fn durable_copy(&self) -> Result<MemoryStorage, StorageError> {
        let durable = self.disk().durable.clone();
        let copy = MemoryStorage::new();
        let batch: Vec<Write> = durable
            .into_iter()
            .map(|(key, value)| Write::Put(key, value))
            .collect();
        copy.apply(&batch)?;
        Ok(copy)
    }

    /// Syncs so far.
    pub fn syncs(&self) -> u64 {
        self.disk().syncs
    }
}

impl Storage for PowerLossStorage {
    fn apply(&self, batch: &[Write]) -> Result<(), StorageError> {
        let mut disk = self.disk();
        apply_to(&mut disk.visible, batch);
        disk.unsynced.push(batch.to_vec());
        Ok(())
    }

    fn sync(&self) -> Result<(), StorageError> {
        let mut disk = self.disk();
        let unsynced = std::mem::take(&mut disk.unsynced);
        for batch in &unsynced {
            apply_to(&mut disk.durable, batch);
        }
        disk.syncs += 1;
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.disk().visible.get(key).cloned())
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
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = self
            .disk()
            .visible
            .range(start.to_vec()..end.to_vec())
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        for (key, value) in pairs {
            if !visit(&key, &value) {
                break;
            }
        }
        Ok(())
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
