//! [`MemStorage`]: raft state in memory, outliving the node that writes it (the tester's
//! `Persister`).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::{Entry, HardState, Recovered, Storage, StorageError, Update, entries_size, wal};

/// Raft state kept in memory. Clones share one state: a harness keeps a clone of the storage it
/// gave a node, crashes the node, and starts the next incarnation on [`MemStorage::copy`], which
/// holds exactly what the old one persisted and nothing it does afterwards.
///
/// The state sits behind a mutex that the node takes once per round in which its state changed;
/// anyone else takes it only to copy the state or read its size, so the node's lock is
/// uncontended.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    state: Arc<Mutex<MemState>>,
}

#[derive(Debug, Default)]
struct MemState {
    hard_state: HardState,
    /// `entries[i]` is the entry at index `i + 1`.
    entries: Vec<Entry>,
    /// Invariant: `entry_bytes == entries_size(&entries)`.
    entry_bytes: u64,
}

impl MemStorage {
    /// An empty storage: term 0, no vote, no entries.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, MemState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new, independent storage holding what this one holds now.
    pub fn copy(&self) -> Self {
        let state = self.lock();
        Self {
            state: Arc::new(Mutex::new(MemState {
                hard_state: state.hard_state,
                entries: state.entries.clone(),
                entry_bytes: state.entry_bytes,
            })),
        }
    }

    /// The size of the raft state in bytes, in the write-ahead log's encoding (the tester's
    /// `RaftStateSize`).
    pub fn size_bytes(&self) -> u64 {
        wal::HARD_STATE_BYTES + self.lock().entry_bytes
    }

    /// The hard state persisted last.
    pub fn hard_state(&self) -> HardState {
        self.lock().hard_state
    }

    /// The index of the last persisted entry (0 if none).
    pub fn last_index(&self) -> u64 {
        self.lock().entries.len() as u64
    }
}

impl Storage for MemStorage {
    fn recover(&mut self) -> Result<Recovered, StorageError> {
        let state = self.lock();
        Ok(Recovered {
            hard_state: state.hard_state,
            entries: state.entries.clone(),
        })
    }

    fn persist(&mut self, update: &Update<'_>) -> Result<(), StorageError> {
        let mut state = self.lock();
        if let Some(hard_state) = update.hard_state {
            state.hard_state = hard_state;
        }
        let mut keep = state.entries.len() as u64;
        if let Some(from) = update.truncate_from {
            keep = keep.min(from.saturating_sub(1));
        }
        if !update.entries.is_empty() {
            if update.first_index == 0 || update.first_index > keep + 1 {
                return Err(StorageError::Poisoned {
                    reason: format!(
                        "entries at index {} would leave a gap after index {keep}",
                        update.first_index
                    ),
                });
            }
            keep = keep.min(update.first_index - 1);
        }
        if keep < state.entries.len() as u64 {
            let dropped = entries_size(&state.entries[keep as usize..]);
            state.entry_bytes -= dropped;
            state.entries.truncate(keep as usize);
        }
        state.entry_bytes += entries_size(update.entries);
        state.entries.extend_from_slice(update.entries);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::encoded_size;

    fn entry(term: u64, command: &'static str) -> Entry {
        Entry {
            term,
            command: Bytes::from_static(command.as_bytes()),
        }
    }

    #[test]
    fn persists_truncates_and_copies() {
        let mut storage = MemStorage::new();
        let hard_state = HardState {
            term: 2,
            voted_for: Some(1),
        };
        let first = [entry(1, "a"), entry(1, "b"), entry(2, "c")];
        storage
            .persist(&Update {
                hard_state: Some(hard_state),
                truncate_from: None,
                first_index: 1,
                entries: &first,
            })
            .unwrap();
        assert_eq!(storage.size_bytes(), encoded_size(&first));
        let copy = storage.copy();
        // A conflicting suffix replaces entries 2 and 3.
        let second = [entry(3, "x")];
        storage
            .persist(&Update {
                hard_state: None,
                truncate_from: Some(2),
                first_index: 2,
                entries: &second,
            })
            .unwrap();
        let recovered = storage.recover().unwrap();
        assert_eq!(recovered.hard_state, hard_state);
        assert_eq!(recovered.entries, [entry(1, "a"), entry(3, "x")]);
        assert_eq!(storage.size_bytes(), encoded_size(&recovered.entries));
        // The copy kept what was persisted when it was made.
        let mut copy = copy;
        assert_eq!(copy.recover().unwrap().entries, first);
        assert_eq!(copy.last_index(), 3);
    }

    #[test]
    fn refuses_a_gap() {
        let mut storage = MemStorage::new();
        let err = storage
            .persist(&Update {
                hard_state: None,
                truncate_from: None,
                first_index: 3,
                entries: &[entry(1, "a")],
            })
            .unwrap_err();
        assert!(err.to_string().contains("gap"), "{err}");
        assert_eq!(storage.last_index(), 0);
    }
}
