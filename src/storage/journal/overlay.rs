//! The writes journaled since the last checkpoint, in memory: what reads see on top of
//! the store they will be checkpointed into.

use std::collections::BTreeMap;

use crate::storage::{StorageError, Write};

/// Changed keys in key order: `Some(value)` for a put, `None` for a deletion that must also
/// hide the key in the layers below.
#[derive(Debug, Default)]
pub struct Overlay {
    entries: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Bytes held: keys, values and [`ENTRY_OVERHEAD_BYTES`] per key.
    bytes: usize,
}

/// Memory an entry costs beyond its key and value: the map's share of a node and the two
/// vectors' headers, an estimate.
const ENTRY_OVERHEAD_BYTES: usize = 80;

/// Lists the keys the layers under an overlay hold in `start..end`.
pub type KeysBelow<'a> = dyn FnMut(&[u8], &[u8]) -> Result<Vec<Vec<u8>>, StorageError> + 'a;

/// What an overlay says about one key.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// The key was put with this value.
    Put(&'a [u8]),
    /// The key was deleted.
    Deleted,
    /// The overlay does not know: ask the layer below.
    Unknown,
}

impl Overlay {
    /// True when no key changed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keys changed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes held (keys, values and an estimate of the map's own overhead).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// What the overlay says about `key`.
    pub fn lookup(&self, key: &[u8]) -> Lookup<'_> {
        match self.entries.get(key) {
            Some(Some(value)) => Lookup::Put(value),
            Some(None) => Lookup::Deleted,
            None => Lookup::Unknown,
        }
    }

    /// Applies `batch` in order. A range deletion turns into a deletion of every key in the
    /// range that this overlay or the layers under it hold now; `keys_below(start, end)`
    /// lists the latter.
    pub fn apply(
        &mut self,
        batch: &[Write],
        keys_below: &mut KeysBelow<'_>,
    ) -> Result<(), StorageError> {
        for write in batch {
            match write {
                Write::Put(key, value) => self.set(key.clone(), Some(value.clone())),
                Write::Delete(key) => self.set(key.clone(), None),
                Write::DeleteRange(start, end) => {
                    if start >= end {
                        continue;
                    }
                    let mut doomed: Vec<Vec<u8>> = self
                        .entries
                        .range(start.clone()..end.clone())
                        .map(|(key, _)| key.clone())
                        .collect();
                    doomed.extend(keys_below(start, end)?);
                    for key in doomed {
                        self.set(key, None);
                    }
                }
            }
        }
        Ok(())
    }

    fn set(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        let key_bytes = key.len() + ENTRY_OVERHEAD_BYTES;
        let value_bytes = value.as_ref().map_or(0, Vec::len);
        match self.entries.insert(key, value) {
            Some(old) => self.bytes = self.bytes - old.map_or(0, |old| old.len()) + value_bytes,
            None => self.bytes += key_bytes + value_bytes,
        }
    }

    /// Copies the changes with `start <= key < end` into `into`, over what it holds.
    pub fn copy_range(
        &self,
        start: &[u8],
        end: &[u8],
        into: &mut BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    ) {
        if start >= end {
            return;
        }
        for (key, value) in self.entries.range::<[u8], _>((
            std::ops::Bound::Included(start),
            std::ops::Bound::Excluded(end),
        )) {
            into.insert(key.clone(), value.clone());
        }
    }

    /// The changes in key order, for checkpointing: `Some(value)` to set, `None` to remove.
    pub fn changes(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> + '_ {
        self.entries
            .iter()
            .map(|(key, value)| (key.as_slice(), value.as_deref()))
    }
}
