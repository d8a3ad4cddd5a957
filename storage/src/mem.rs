//! [`MemStorage`]: raft state in memory, outliving the node that writes it (the tester's
//! `Persister`).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::{
    Entry, HardState, Recovered, Snapshot, Storage, StorageError, Update, entries_size, wal,
};

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
    snapshot: Option<Snapshot>,
    /// `entries[i]` is the entry at index `snapshot index + i + 1`.
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
                snapshot: state.snapshot.clone(),
                entries: state.entries.clone(),
                entry_bytes: state.entry_bytes,
            })),
        }
    }

    /// The size of the raft state in bytes, in the write-ahead log's encoding, without the
    /// snapshot (the tester's `RaftStateSize`).
    pub fn size_bytes(&self) -> u64 {
        wal::HARD_STATE_BYTES + self.lock().entry_bytes
    }

    /// The hard state persisted last.
    pub fn hard_state(&self) -> HardState {
        self.lock().hard_state
    }

    /// The index of the last persisted entry (the snapshot's, or 0, if none follows it).
    pub fn last_index(&self) -> u64 {
        let state = self.lock();
        state.first_index() - 1 + state.entries.len() as u64
    }

    /// The snapshot persisted last, if any (the tester's `ReadSnapshot`).
    pub fn snapshot(&self) -> Option<Snapshot> {
        self.lock().snapshot.clone()
    }
}

impl MemState {
    /// The index of `entries[0]`.
    fn first_index(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.index) + 1
    }

    /// Keeps the entries before `index` (and at least none).
    fn truncate_from(&mut self, index: u64) {
        let keep = index.saturating_sub(self.first_index()) as usize;
        if keep < self.entries.len() {
            self.entry_bytes -= entries_size(&self.entries[keep..]);
            self.entries.truncate(keep);
        }
    }
}

impl Storage for MemStorage {
    fn recover(&mut self) -> Result<Recovered, StorageError> {
        let state = self.lock();
        Ok(Recovered {
            hard_state: state.hard_state,
            snapshot: state.snapshot.clone(),
            entries: state.entries.clone(),
        })
    }

    fn persist(&mut self, update: &Update<'_>) -> Result<(), StorageError> {
        let mut state = self.lock();
        let refuse = |reason: String| Err(StorageError::Poisoned { reason });
        if let Some(snapshot) = update.snapshot {
            let stored = state.first_index() - 1;
            if snapshot.index <= stored {
                return refuse(format!(
                    "a snapshot at index {} is not newer than the stored one at {stored}",
                    snapshot.index
                ));
            }
        }
        let snapshot_index = update.snapshot.map_or(state.first_index() - 1, |s| s.index);
        let mut last = (state.first_index() - 1 + state.entries.len() as u64).max(snapshot_index);
        if let Some(from) = update.truncate_from {
            last = last.min(from.saturating_sub(1)).max(snapshot_index);
        }
        if !update.entries.is_empty()
            && (update.first_index <= snapshot_index || update.first_index > last + 1)
        {
            return refuse(format!(
                "entries at index {} would leave a gap after index {last} or overwrite the \
                 snapshot at {snapshot_index}",
                update.first_index
            ));
        }
        if let Some(hard_state) = update.hard_state {
            state.hard_state = hard_state;
        }
        if let Some(snapshot) = update.snapshot {
            // Entries the snapshot covers go; the ones after it stay.
            let covered = ((snapshot.index + 1).saturating_sub(state.first_index()) as usize)
                .min(state.entries.len());
            state.entry_bytes -= entries_size(&state.entries[..covered]);
            state.entries.drain(..covered);
            state.snapshot = Some(snapshot.clone());
        }
        if let Some(from) = update.truncate_from {
            state.truncate_from(from);
        }
        if !update.entries.is_empty() {
            state.truncate_from(update.first_index);
            state.entry_bytes += entries_size(update.entries);
            state.entries.extend_from_slice(update.entries);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::encoded_size;

    fn entry(term: u64, command: &'static str) -> Entry {
        Entry::new(term, Bytes::from_static(command.as_bytes()))
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
                snapshot: None,
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
                snapshot: None,
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
                snapshot: None,
                truncate_from: None,
                first_index: 3,
                entries: &[entry(1, "a")],
            })
            .unwrap_err();
        assert!(err.to_string().contains("gap"), "{err}");
        assert_eq!(storage.last_index(), 0);
    }

    #[test]
    fn a_snapshot_replaces_the_entries_it_covers() {
        let mut storage = MemStorage::new();
        let log: Vec<Entry> = (1..=6).map(|i| entry(1 + i / 4, "e")).collect();
        storage
            .persist(&Update {
                hard_state: None,
                snapshot: None,
                truncate_from: None,
                first_index: 1,
                entries: &log,
            })
            .unwrap();
        let snapshot = Snapshot {
            index: 4,
            term: 2,
            data: Bytes::from_static(b"state at 4"),
            config: None,
        };
        storage
            .persist(&Update {
                hard_state: None,
                snapshot: Some(&snapshot),
                truncate_from: None,
                first_index: 7,
                entries: &[entry(2, "g")],
            })
            .unwrap();
        let recovered = storage.recover().unwrap();
        assert_eq!(recovered.snapshot.as_ref(), Some(&snapshot));
        assert_eq!(recovered.first_index(), 5);
        assert_eq!(
            recovered.entries,
            [log[4].clone(), log[5].clone(), entry(2, "g")]
        );
        assert_eq!(storage.last_index(), 7);
        assert_eq!(
            storage.size_bytes(),
            encoded_size(&recovered.entries),
            "without the snapshot"
        );

        // An installed snapshot past the log's end, with the log discarded.
        let far = Snapshot {
            index: 20,
            term: 3,
            data: Bytes::from_static(b"state at 20"),
            config: None,
        };
        storage
            .persist(&Update {
                hard_state: None,
                snapshot: Some(&far),
                truncate_from: Some(21),
                first_index: 21,
                entries: &[],
            })
            .unwrap();
        let recovered = storage.recover().unwrap();
        assert_eq!((recovered.first_index(), recovered.entries.len()), (21, 0));
        assert_eq!(storage.last_index(), 20);

        // Older snapshots and entries over the snapshot are refused.
        for (case, update) in [
            Update {
                hard_state: None,
                snapshot: Some(&snapshot),
                truncate_from: None,
                first_index: 21,
                entries: &[],
            },
            Update {
                hard_state: None,
                snapshot: None,
                truncate_from: None,
                first_index: 20,
                entries: &[entry(3, "x")],
            },
        ]
        .iter()
        .enumerate()
        {
            assert!(storage.copy().persist(update).is_err(), "case {case}");
        }
    }
}
