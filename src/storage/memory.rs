//! An in-memory [`Storage`]: a sorted map behind a lock. Nothing survives the process, so it
//! serves benchmarks of the broker core and deterministic simulations, and is the reference
//! model the other stores are checked against (see `contract_tests`).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{Storage, StorageError, Write};

/// Most pairs [`MemoryStorage::scan`] copies out per lock acquisition. The lock is released
/// before `visit` runs, so a visitor may call back into the store (even `apply`) without
/// deadlocking, and a long scan never blocks the writer for more than one chunk.
const SCAN_CHUNK_PAIRS_MAX: usize = 256;

/// A [`Storage`] that keeps every pair in a `BTreeMap`. `sync` does nothing.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    /// Every stored pair in key order. A write lock around a whole batch is what makes
    /// [`Storage::apply`] atomic for readers.
    pairs: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> MemoryStorage {
        MemoryStorage::default()
    }

    /// Read access to the map. A poisoned lock is recovered rather than reported: no code
    /// in this file can panic while holding the write lock with the map half-updated (the
    /// only panics possible there are allocation failures, which abort), so the map behind
    /// a poisoned lock is still a consistent state.
    fn read_pairs(&self) -> RwLockReadGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        self.pairs.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Write access to the map; see [`MemoryStorage::read_pairs`] about poisoning.
    fn write_pairs(&self) -> RwLockWriteGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        self.pairs.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Storage for MemoryStorage {
    fn apply(&self, batch: &[Write]) -> Result<(), StorageError> {
        let mut pairs = self.write_pairs();
        for write in batch {
            match write {
                Write::Put(key, value) => {
                    pairs.insert(key.clone(), value.clone());
                }
                Write::Delete(key) => {
                    pairs.remove(key);
                }
                Write::DeleteRange(start, end) => {
                    let doomed: Vec<Vec<u8>> = pairs
                        .range(start.clone()..end.clone())
                        .map(|(key, _)| key.clone())
                        .collect();
                    for key in doomed {
                        pairs.remove(&key);
                    }
                }
            }
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), StorageError> {
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.read_pairs().get(key).cloned())
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        // `BTreeMap::range` panics on an inverted range; an empty or inverted range simply
        // holds nothing.
        if start >= end {
            return Ok(());
        }
        let mut lower: Bound<Vec<u8>> = Bound::Included(start.to_vec());
        loop {
            let chunk: Vec<(Vec<u8>, Vec<u8>)> = {
                let pairs = self.read_pairs();
                pairs
                    .range::<[u8], _>((lower.as_ref().map(Vec::as_slice), Bound::Excluded(end)))
                    .take(SCAN_CHUNK_PAIRS_MAX)
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect()
            };
            let chunk_was_full = chunk.len() == SCAN_CHUNK_PAIRS_MAX;
            for (key, value) in &chunk {
                if !visit(key, value) {
                    return Ok(());
                }
            }
            match chunk.into_iter().next_back() {
                Some((last_key, _)) if chunk_was_full => lower = Bound::Excluded(last_key),
                _ => return Ok(()),
            }
        }
    }

    fn size_on_disk_bytes(&self) -> Result<u64, StorageError> {
        Ok(0)
    }
}

/// Checks every [`Storage`] implementation must pass. They live beside the reference model
/// so the sled and fault-injecting stores run exactly the same assertions.
#[cfg(test)]
pub(crate) mod contract_tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::super::{Storage, Write};

    /// Keys written by one batch in [`batch_is_atomic_for_readers`]; enough that a
    /// non-atomic store would be caught between its first and last write.
    const ATOMIC_BATCH_KEYS: u8 = 100;

    /// Batches written by [`batch_is_atomic_for_readers`] while the reader checks.
    const ATOMIC_BATCHES: u64 = 100;

    /// Every check that runs on one fresh store by itself (all but
    /// [`batch_is_atomic_for_readers`], which needs a store it can share with a thread).
    pub(crate) const ON_A_FRESH_STORE: [fn(&dyn Storage); 5] = [
        round_trip,
        batch_applies_in_order,
        range_delete_applies_in_order,
        scan_bounds_and_early_stop,
        long_scan_visits_everything_once,
    ];

    fn put(key: &[u8], value: &[u8]) -> Write {
        Write::Put(key.to_vec(), value.to_vec())
    }

    fn collect(storage: &dyn Storage, start: &[u8], end: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut seen = Vec::new();
        storage
            .scan(start, end, &mut |key, value| {
                seen.push((key.to_vec(), value.to_vec()));
                true
            })
            .expect("scan");
        seen
    }

    /// Put, overwrite, delete and read back, including an absent key and an empty value.
    pub(crate) fn round_trip(storage: &dyn Storage) {
        assert_eq!(storage.get(b"absent").expect("get"), None);
        storage
            .apply(&[put(b"a", b"1"), put(b"empty", b"")])
            .expect("apply");
        assert_eq!(storage.get(b"a").expect("get"), Some(b"1".to_vec()));
        assert_eq!(storage.get(b"empty").expect("get"), Some(Vec::new()));
        storage.apply(&[put(b"a", b"2")]).expect("apply");
        assert_eq!(storage.get(b"a").expect("get"), Some(b"2".to_vec()));
        storage
            .apply(&[
                Write::Delete(b"a".to_vec()),
                Write::Delete(b"never".to_vec()),
            ])
            .expect("apply");
        assert_eq!(storage.get(b"a").expect("get"), None);
        storage.sync().expect("sync");
    }

    /// A range delete removes stored keys and keys put earlier in its batch, and a put
    /// after it in the same batch survives.
    pub(crate) fn range_delete_applies_in_order(storage: &dyn Storage) {
        storage
            .apply(&[put(b"r1", b"1"), put(b"r2", b"2"), put(b"s", b"kept")])
            .expect("apply");
        storage
            .apply(&[
                put(b"r3", b"3"),
                Write::DeleteRange(b"r".to_vec(), b"s".to_vec()),
                put(b"r2", b"again"),
            ])
            .expect("apply");
        assert_eq!(
            collect(storage, b"", b"\xff"),
            vec![
                (b"r2".to_vec(), b"again".to_vec()),
                (b"s".to_vec(), b"kept".to_vec())
            ]
        );
    }

    /// Writes in one batch take effect in order: the last write to a key wins.
    pub(crate) fn batch_applies_in_order(storage: &dyn Storage) {
        storage
            .apply(&[
                put(b"k1", b"first"),
                Write::Delete(b"k1".to_vec()),
                put(b"k2", b"first"),
                put(b"k2", b"second"),
                put(b"k3", b"kept"),
                put(b"k4", b"gone"),
                Write::Delete(b"k4".to_vec()),
            ])
            .expect("apply");
        assert_eq!(
            collect(storage, b"k", b"l"),
            vec![
                (b"k2".to_vec(), b"second".to_vec()),
                (b"k3".to_vec(), b"kept".to_vec())
            ]
        );
    }

    /// `start` is inclusive, `end` exclusive, order is byte order, `false` stops the scan,
    /// and an empty or inverted range visits nothing.
    pub(crate) fn scan_bounds_and_early_stop(storage: &dyn Storage) {
        let keys: Vec<Vec<u8>> = vec![
            vec![0x01],
            vec![0x02, 0x00],
            vec![0x02, 0x01],
            vec![0x02, 0xFF],
            vec![0x03],
            vec![0xFF, 0xFF],
        ];
        // Applied in reverse to show that scan order comes from the keys, not from writes.
        let batch: Vec<Write> = keys
            .iter()
            .rev()
            .map(|key| Write::Put(key.clone(), key.clone()))
            .collect();
        storage.apply(&batch).expect("apply");

        let prefix_two: Vec<Vec<u8>> = collect(storage, &[0x02], &[0x03])
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        assert_eq!(prefix_two, keys[1..4].to_vec());

        let from_exact_start: Vec<Vec<u8>> = collect(storage, &[0x02, 0x01], &[0xFF, 0xFF])
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(from_exact_start, keys[2..5].to_vec(), "end is exclusive");

        let everything = collect(storage, &[], &[0xFF, 0xFF, 0xFF]);
        assert_eq!(everything.len(), keys.len());
        assert!(everything.iter().all(|(key, value)| key == value));

        let mut visited = 0;
        storage
            .scan(&[], &[0xFF, 0xFF, 0xFF], &mut |_, _| {
                visited += 1;
                visited < 2
            })
            .expect("scan");
        assert_eq!(visited, 2, "the scan stops on the first false");

        assert!(collect(storage, &[0x02], &[0x02]).is_empty(), "empty range");
        assert!(
            collect(storage, &[0x03], &[0x02]).is_empty(),
            "inverted range"
        );
    }

    /// A scan longer than any internal chunk still visits every pair exactly once, in order.
    pub(crate) fn long_scan_visits_everything_once(storage: &dyn Storage) {
        let batch: Vec<Write> = (0u32..1000)
            .map(|index| put(&[b"L", &index.to_be_bytes()[..]].concat(), b"v"))
            .collect();
        storage.apply(&batch).expect("apply");
        let keys: Vec<Vec<u8>> = collect(storage, b"L", b"M")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let expected: Vec<Vec<u8>> = (0u32..1000)
            .map(|index| [b"L", &index.to_be_bytes()[..]].concat())
            .collect();
        assert_eq!(keys, expected);
    }

    /// A reader never sees half a batch. Each batch sets all of its keys to the batch
    /// number; the reader reads the first key and then the last, so in an atomic store the
    /// last key is never behind the first (batches are applied in increasing order).
    pub(crate) fn batch_is_atomic_for_readers(storage: Arc<dyn Storage>) {
        let key = |index: u8| vec![b'A', index];
        let done = Arc::new(AtomicBool::new(false));
        let reading = Arc::new(AtomicBool::new(false));
        let reader = {
            let storage = Arc::clone(&storage);
            let done = Arc::clone(&done);
            let reading = Arc::clone(&reading);
            std::thread::spawn(move || {
                let decode = |value: Option<Vec<u8>>| {
                    value.map_or(0, |bytes| {
                        u64::from_be_bytes(bytes.try_into().expect("an 8-byte batch number"))
                    })
                };
                let mut checks = 0u64;
                while !done.load(Ordering::SeqCst) {
                    let first = decode(storage.get(&key(0)).expect("get"));
                    let last = decode(storage.get(&key(ATOMIC_BATCH_KEYS - 1)).expect("get"));
                    assert!(
                        last >= first,
                        "saw half a batch: first key {first}, last {last}"
                    );
                    checks += 1;
                    reading.store(true, Ordering::SeqCst);
                }
                checks
            })
        };
        // On a busy machine the reader may start late: the batches must overlap its reads.
        while !reading.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        for batch_number in 1..=ATOMIC_BATCHES {
            let batch: Vec<Write> = (0..ATOMIC_BATCH_KEYS)
                .map(|index| Write::Put(key(index), batch_number.to_be_bytes().to_vec()))
                .collect();
            storage.apply(&batch).expect("apply");
        }
        done.store(true, Ordering::SeqCst);
        let checks = reader.join().expect("reader thread");
        assert!(checks > 0);
        let mut seen = 0;
        storage
            .scan(b"A", b"B", &mut |_, value| {
                assert_eq!(value, ATOMIC_BATCHES.to_be_bytes());
                seen += 1;
                true
            })
            .expect("scan");
        assert_eq!(seen, usize::from(ATOMIC_BATCH_KEYS));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::contract_tests;
    use super::*;

    #[test]
    fn round_trip() {
        contract_tests::round_trip(&MemoryStorage::new());
    }

    #[test]
    fn batch_applies_in_order() {
        contract_tests::batch_applies_in_order(&MemoryStorage::new());
        contract_tests::range_delete_applies_in_order(&MemoryStorage::new());
    }

    #[test]
    fn scan_bounds_and_early_stop() {
        contract_tests::scan_bounds_and_early_stop(&MemoryStorage::new());
    }

    #[test]
    fn long_scan_visits_everything_once() {
        contract_tests::long_scan_visits_everything_once(&MemoryStorage::new());
    }

    #[test]
    fn batch_is_atomic_for_readers() {
        contract_tests::batch_is_atomic_for_readers(Arc::new(MemoryStorage::new()));
    }

    #[test]
    fn a_visitor_may_write_to_the_store_it_scans() {
        let storage = MemoryStorage::new();
        storage
            .apply(&[Write::Put(b"a".to_vec(), b"1".to_vec())])
            .expect("apply");
        storage
            .scan(b"a", b"b", &mut |key, _| {
                storage
                    .apply(&[Write::Delete(key.to_vec())])
                    .expect("apply inside scan");
                true
            })
            .expect("scan");
        assert_eq!(storage.get(b"a").expect("get"), None);
    }

    #[test]
    fn takes_no_disk_space() {
        let storage = MemoryStorage::new();
        storage
            .apply(&[Write::Put(b"a".to_vec(), vec![0; 1024])])
            .expect("apply");
        assert_eq!(storage.size_on_disk_bytes().expect("size"), 0);
    }
}
