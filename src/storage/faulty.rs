//! A fault-injecting [`Storage`] wrapper. Tests switch failures on and off to check that the
//! broker answers UNAVAILABLE, acknowledges nothing it did not make durable, and recovers
//! once storage works again. Its counters also let tests see how many groups were committed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use super::{Storage, StorageError, Write};

/// Wraps another store and fails chosen operations on demand; otherwise passes through.
///
/// Switches and counters are atomics so a test can flip them from any thread while the
/// broker runs. While a failure is switched on, the failing call does not reach the inner
/// store at all: a failed `apply` leaves nothing of its batch behind.
pub struct FaultyStorage {
    /// The store that does the real work when no failure is switched on.
    inner: Arc<dyn Storage>,
    /// While true, [`Storage::apply`] fails without touching `inner`.
    apply_failing: AtomicBool,
    /// While true, [`Storage::sync`] fails without touching `inner`.
    sync_failing: AtomicBool,
    /// While true, `get`, `scan` and `size_on_disk_bytes` fail without touching `inner`.
    reads_failing: AtomicBool,
    /// While true, [`Storage::apply`] waits (on `applies_released`) before going on.
    applies_held: Mutex<bool>,
    /// Signalled when `applies_held` turns false.
    applies_released: Condvar,
    /// Batches handed to `inner` (whatever `inner` answered).
    applies: AtomicU64,
    /// Syncs handed to `inner` (whatever `inner` answered).
    syncs: AtomicU64,
    /// Calls that failed because a switch was on.
    injected_failures: AtomicU64,
}

impl FaultyStorage {
    /// A wrapper around `inner` with every failure switched off and counters at zero.
    pub fn new(inner: Arc<dyn Storage>) -> FaultyStorage {
        FaultyStorage {
            inner,
            apply_failing: AtomicBool::new(false),
            sync_failing: AtomicBool::new(false),
            reads_failing: AtomicBool::new(false),
            applies_held: Mutex::new(false),
            applies_released: Condvar::new(),
            applies: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            injected_failures: AtomicU64::new(0),
        }
    }

    /// Makes every later `apply` fail (`true`) or pass through again (`false`).
    pub fn fail_apply(&self, failing: bool) {
        self.apply_failing.store(failing, Ordering::SeqCst);
    }

    /// Makes every later `sync` fail (`true`) or pass through again (`false`).
    pub fn fail_sync(&self, failing: bool) {
        self.sync_failing.store(failing, Ordering::SeqCst);
    }

    /// Makes every later `get`, `scan` and `size_on_disk_bytes` fail (`true`) or pass
    /// through again (`false`).
    pub fn fail_reads(&self, failing: bool) {
        self.reads_failing.store(failing, Ordering::SeqCst);
    }

    /// Makes every later `apply` wait until released (`true`), or releases the waiting ones
    /// (`false`): a slow disk, for tests of what happens while a round is in progress.
    pub fn hold_applies(&self, held: bool) {
        let mut holding = self
            .applies_held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *holding = held;
        if !held {
            self.applies_released.notify_all();
        }
    }

    /// Batches passed through to the inner store so far (including ones it rejected).
    pub fn apply_count(&self) -> u64 {
        self.applies.load(Ordering::SeqCst)
    }

    /// Syncs passed through to the inner store so far (including ones it rejected).
    pub fn sync_count(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }

    /// Calls failed on purpose so far, across all operations.
    pub fn injected_failure_count(&self) -> u64 {
        self.injected_failures.load(Ordering::SeqCst)
    }

    /// The inner store, for tests that inspect it directly.
    pub fn inner(&self) -> &Arc<dyn Storage> {
        &self.inner
    }

    /// The error for `operation` when `switch` is on, counting it; `Ok` otherwise.
    fn check(
        &self,
        switch: &AtomicBool,
        operation: &'static str,
        switch_name: &str,
    ) -> Result<(), StorageError> {
        if switch.load(Ordering::SeqCst) {
            self.injected_failures.fetch_add(1, Ordering::SeqCst);
            return Err(StorageError::new(
                operation,
                format!("injected failure (FaultyStorage::{switch_name} is on)"),
            ));
        }
        Ok(())
    }
}

impl Storage for FaultyStorage {
    fn apply(&self, batch: &[Write]) -> Result<(), StorageError> {
        let mut held = self
            .applies_held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while *held {
            held = self
                .applies_released
                .wait(held)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        drop(held);
        self.check(&self.apply_failing, "apply", "fail_apply")?;
        self.applies.fetch_add(1, Ordering::SeqCst);
        self.inner.apply(batch)
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.check(&self.sync_failing, "sync", "fail_sync")?;
        self.syncs.fetch_add(1, Ordering::SeqCst);
        self.inner.sync()
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.check(&self.reads_failing, "read", "fail_reads")?;
        self.inner.get(key)
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        self.check(&self.reads_failing, "read", "fail_reads")?;
        self.inner.scan(start, end, visit)
    }

    fn size_on_disk_bytes(&self) -> Result<u64, StorageError> {
        self.check(&self.reads_failing, "read", "fail_reads")?;
        self.inner.size_on_disk_bytes()
    }

    fn apply_may_block(&self) -> bool {
        self.inner.apply_may_block()
    }
}

#[cfg(test)]
mod tests {
    use super::super::memory::contract_tests;
    use super::super::MemoryStorage;
    use super::*;

    fn faulty() -> FaultyStorage {
        FaultyStorage::new(Arc::new(MemoryStorage::new()))
    }

    fn put(key: &[u8], value: &[u8]) -> Write {
        Write::Put(key.to_vec(), value.to_vec())
    }

    #[test]
    fn passes_the_storage_contract_when_no_failure_is_on() {
        for check in contract_tests::ON_A_FRESH_STORE {
            check(&faulty());
        }
        contract_tests::batch_is_atomic_for_readers(Arc::new(faulty()));
    }

    #[test]
    fn a_failing_apply_leaves_nothing_of_its_batch() {
        let storage = faulty();
        storage.apply(&[put(b"kept", b"1")]).expect("apply");
        storage.fail_apply(true);
        let error = storage
            .apply(&[put(b"lost", b"1"), Write::Delete(b"kept".to_vec())])
            .expect_err("apply must fail");
        assert_eq!(error.operation, "apply");
        assert!(error.message.contains("fail_apply"), "{error}");
        assert_eq!(storage.inner().get(b"lost").expect("get"), None);
        assert_eq!(
            storage.inner().get(b"kept").expect("get"),
            Some(b"1".to_vec())
        );
        assert_eq!(storage.apply_count(), 1);
        assert_eq!(storage.injected_failure_count(), 1);

        storage.fail_apply(false);
        storage
            .apply(&[put(b"lost", b"now stored")])
            .expect("apply");
        assert_eq!(
            storage.get(b"lost").expect("get"),
            Some(b"now stored".to_vec())
        );
        assert_eq!(storage.apply_count(), 2);
    }

    #[test]
    fn a_failing_sync_is_reported_and_counted_apart() {
        let storage = faulty();
        storage.sync().expect("sync");
        storage.fail_sync(true);
        let error = storage.sync().expect_err("sync must fail");
        assert_eq!(error.operation, "sync");
        assert!(error.message.contains("fail_sync"), "{error}");
        storage
            .apply(&[put(b"a", b"1")])
            .expect("apply still works");
        storage.fail_sync(false);
        storage.sync().expect("sync");
        assert_eq!(storage.sync_count(), 2);
        assert_eq!(storage.apply_count(), 1);
        assert_eq!(storage.injected_failure_count(), 1);
    }

    #[test]
    fn failing_reads_cover_get_scan_and_size() {
        let storage = faulty();
        storage.apply(&[put(b"a", b"1")]).expect("apply");
        storage.fail_reads(true);
        assert_eq!(storage.get(b"a").expect_err("get fails").operation, "read");
        let mut visited = false;
        let error = storage
            .scan(b"a", b"b", &mut |_, _| {
                visited = true;
                true
            })
            .expect_err("scan fails");
        assert!(error.message.contains("fail_reads"), "{error}");
        assert!(!visited);
        assert!(storage.size_on_disk_bytes().is_err());
        storage
            .apply(&[put(b"b", b"2")])
            .expect("writes are not affected");
        assert_eq!(storage.injected_failure_count(), 3);

        storage.fail_reads(false);
        assert_eq!(storage.get(b"a").expect("get"), Some(b"1".to_vec()));
        assert_eq!(storage.get(b"b").expect("get"), Some(b"2".to_vec()));
    }
}
