//! zeroraft-storage: where a zeroraft node's raft state lives, so that it survives a crash.
//!
//! A node's durable state is its [`HardState`] (current term and vote) and its log of
//! [`Entry`]s. The node hands each change to a [`Storage`] as one [`Update`] (group commit: the
//! entries a node appended in one round, the truncation that made room for them and the new hard
//! state, written together and made durable together) and sends nothing that reports the change
//! until [`Storage::persist`] has returned. When a node starts, [`Storage::recover`] gives back
//! what was made durable.
//!
//! Two implementations:
//!
//! - [`MemStorage`]: in memory, shared with whoever created it. This is the 6.824 tester's
//!   `Persister`: it outlives its node, so a harness can crash a node and start a new one from
//!   what the old one persisted.
//! - [`FileStorage`]: a write-ahead log of checksummed records in segment files, snapshots in
//!   files of their own (the segments a snapshot covers are then removed), a directory lock and
//!   an identity file; see [`wal`] for the formats and the recovery rules.
//!
//! This crate knows nothing of Raft's rules: it stores what it is given, in order.

#![forbid(unsafe_code)]

mod error;
mod mem;
pub mod wal;

use bytes::Bytes;

pub use error::StorageError;
pub use mem::MemStorage;
pub use wal::{FileStorage, Identity, WalOptions};

/// One log entry: the term in which a leader created it, what kind of entry it is, and its
/// bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The term of the leader that appended this entry.
    pub term: u64,
    /// Whether `command` is a client's command or a configuration.
    pub kind: EntryKind,
    /// The command (or, for [`EntryKind::Config`], the encoded configuration), opaque to
    /// storage.
    pub command: Bytes,
}

/// The bit of a tagged length ([`Entry::tagged_len`]) that marks a configuration entry.
const CONFIG_BIT: u32 = 1 << 31;

impl Entry {
    /// A client's command of `term`: an entry of kind [`EntryKind::Command`].
    pub fn new(term: u64, command: Bytes) -> Self {
        Self {
            term,
            kind: EntryKind::Command,
            command,
        }
    }

    /// The length of `command` with the kind in its top bit (set for [`EntryKind::Config`]):
    /// how the write-ahead log and the wire store both in one `u32`. A command's tagged length
    /// is its length, so it encodes as it did before entries had kinds.
    ///
    /// # Panics
    ///
    /// If `command` is 2 GiB or larger (the write-ahead log refuses entries that large before
    /// encoding them; the wire codec documents the limit).
    pub fn tagged_len(&self) -> u32 {
        let len = self.command.len();
        assert!(
            len < CONFIG_BIT as usize,
            "an entry of {len} bytes does not fit the 31-bit length field"
        );
        match self.kind {
            EntryKind::Command => len as u32,
            EntryKind::Config => len as u32 | CONFIG_BIT,
        }
    }
}

impl EntryKind {
    /// The kind and the length a tagged length ([`Entry::tagged_len`]) holds.
    pub fn split_tagged_len(tagged: u32) -> (Self, u32) {
        let kind = if tagged & CONFIG_BIT == 0 {
            Self::Command
        } else {
            Self::Config
        };
        (kind, tagged & !CONFIG_BIT)
    }
}

/// What a log entry holds. Stored in a spare bit of the entry's length (in the write-ahead log
/// and on the wire), so a command costs nothing more than before.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A client's command (possibly empty: a leader's no-op), for the service to apply.
    #[default]
    Command,
    /// A cluster configuration (the members, see the engine's membership change), which the
    /// service never sees as a command.
    Config,
}

/// The part of a node's state that is not its log and must survive a crash (Figure 2 of the
/// extended Raft paper: "persistent state on all servers").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HardState {
    /// The latest term the node has seen.
    pub term: u64,
    /// The candidate the node voted for in `term`, if any.
    pub voted_for: Option<usize>,
}

/// A snapshot of a node's state machine: everything the log held up to and including `index`,
/// as the service serialized it. It replaces those entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The last log index the snapshot covers.
    pub index: u64,
    /// The term of the entry at `index`.
    pub term: u64,
    /// The service's state, opaque to Raft and to storage.
    pub data: Bytes,
    /// The cluster configuration in force at `index` (the last configuration entry at or below
    /// it), encoded by the engine and opaque to storage, because the entries the snapshot
    /// replaces are gone. `None` for a snapshot that records none: one written before snapshots
    /// carried a configuration, whose cluster still ran the configuration it was built with.
    pub config: Option<Bytes>,
}

/// One group-commit write: what a node changed in one round. Applied in this order: the hard
/// state is replaced; if there is a snapshot, it replaces the stored one and every stored entry
/// at or below its index is dropped (entries after it are kept); stored entries from
/// `truncate_from` on are dropped; then `entries` are stored at `first_index`,
/// `first_index + 1`, ...
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Update<'a> {
    /// The new hard state, if it changed.
    pub hard_state: Option<HardState>,
    /// A newer snapshot, if the node took or installed one. Its index is above the stored
    /// snapshot's.
    pub snapshot: Option<&'a Snapshot>,
    /// Drop every stored entry at this index and after (a follower's log conflicted with its
    /// leader's).
    pub truncate_from: Option<u64>,
    /// Index of `entries[0]`: at most one past the last stored entry (after the snapshot and the
    /// truncation), and above the snapshot's index.
    pub first_index: u64,
    /// Entries to append.
    pub entries: &'a [Entry],
}

/// An [`Update`] that owns what it carries, for a write kept until later: a simulated disk's
/// queue of writes in progress, a test's script of updates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnedUpdate {
    /// See [`Update::hard_state`].
    pub hard_state: Option<HardState>,
    /// See [`Update::snapshot`].
    pub snapshot: Option<Snapshot>,
    /// See [`Update::truncate_from`].
    pub truncate_from: Option<u64>,
    /// See [`Update::first_index`].
    pub first_index: u64,
    /// See [`Update::entries`].
    pub entries: Vec<Entry>,
}

impl OwnedUpdate {
    /// The update it holds, borrowed.
    pub fn update(&self) -> Update<'_> {
        Update {
            hard_state: self.hard_state,
            snapshot: self.snapshot.as_ref(),
            truncate_from: self.truncate_from,
            first_index: self.first_index,
            entries: &self.entries,
        }
    }
}

impl From<&Update<'_>> for OwnedUpdate {
    /// Copies `update` (cheaply: entries and snapshots hold their bytes by reference count).
    fn from(update: &Update<'_>) -> Self {
        Self {
            hard_state: update.hard_state,
            snapshot: update.snapshot.cloned(),
            truncate_from: update.truncate_from,
            first_index: update.first_index,
            entries: update.entries.to_vec(),
        }
    }
}

impl Update<'_> {
    /// Whether this update changes nothing.
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none()
            && self.snapshot.is_none()
            && self.truncate_from.is_none()
            && self.entries.is_empty()
    }
}

/// What a storage held when it was opened: the state a restarting node resumes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The last hard state persisted (term 0, no vote, for a new node).
    pub hard_state: HardState,
    /// The last snapshot persisted, if any.
    pub snapshot: Option<Snapshot>,
    /// The log after the snapshot: `entries[i]` is the entry at index `s + i + 1`, where `s` is
    /// the snapshot's index (0 without one).
    pub entries: Vec<Entry>,
}

impl Recovered {
    /// The index of the first entry in `entries`: one past the snapshot's.
    pub fn first_index(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.index) + 1
    }
}

/// Where a node's raft state lives. The node calls [`Storage::recover`] once when it starts, then
/// [`Storage::persist`] once per round in which its state changed, from its own thread.
pub trait Storage: Send + 'static {
    /// The state persisted so far.
    ///
    /// # Errors
    ///
    /// A [`StorageError`] if it cannot be read back intact.
    fn recover(&mut self) -> Result<Recovered, StorageError>;

    /// Makes `update` durable: when this returns `Ok`, a crash at any later moment (of the
    /// process or, for [`FileStorage`], of the machine) loses none of it.
    ///
    /// # Errors
    ///
    /// A [`StorageError`] if it could not be made durable. Whether any part of it was is then
    /// unknown; the storage refuses every later update, and the node must stop (recovery on the
    /// next start sorts out what was written).
    fn persist(&mut self, update: &Update<'_>) -> Result<(), StorageError>;

    /// Whether [`Storage::persist`] waits for a disk (an `fdatasync`), and so may take
    /// milliseconds, or on a busy machine far longer. A node then writes from a thread of its
    /// own, so that it keeps answering messages meanwhile. False by default.
    fn blocks_on_disk(&self) -> bool {
        false
    }

    /// Whether the storage found its disk full: a write failed for lack of room, and the room
    /// it keeps in reserve for that case is in use (for [`FileStorage`], its ballast file; see
    /// [`WalOptions::ballast_bytes`]). A node that sees it should take a snapshot soon, so that
    /// the log it covers can be removed. False by default.
    fn disk_full(&self) -> bool {
        false
    }

    /// Time spent so far waiting for the disk to make writes durable (for [`FileStorage`], in
    /// the `fdatasync` of its log records), for monitoring. Zero by default.
    fn sync_time(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// A storage that keeps nothing: a node built on it forgets everything when it stops and must
/// never be restarted as the same member of its cluster. For measuring the engine alone.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoStorage;

impl Storage for NoStorage {
    fn recover(&mut self) -> Result<Recovered, StorageError> {
        Ok(Recovered::default())
    }

    fn persist(&mut self, _update: &Update<'_>) -> Result<(), StorageError> {
        Ok(())
    }
}

/// The size in bytes of a raft state holding a hard state and `entries`, in the write-ahead
/// log's encoding: what the 6.824 tester calls the raft state size (snapshots are not part of
/// it), reported by [`MemStorage::size_bytes`].
pub fn encoded_size(entries: &[Entry]) -> u64 {
    wal::HARD_STATE_BYTES + entries_size(entries)
}

/// The size in bytes of `entries` in the write-ahead log's encoding.
fn entries_size(entries: &[Entry]) -> u64 {
    entries
        .iter()
        .map(|e| wal::ENTRY_HEADER_BYTES + e.command.len() as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tagged_length_holds_the_kind_and_the_length() {
        // (kind, command length, tagged length)
        let cases = [
            (EntryKind::Command, 0, 0),
            (EntryKind::Command, 5, 5),
            (EntryKind::Config, 0, 1 << 31),
            (EntryKind::Config, 25, (1 << 31) | 25),
        ];
        for (case, (kind, len, tagged)) in cases.into_iter().enumerate() {
            let entry = Entry {
                term: 1,
                kind,
                command: Bytes::from(vec![0; len]),
            };
            assert_eq!(entry.tagged_len(), tagged, "case {case}");
            assert_eq!(
                EntryKind::split_tagged_len(tagged),
                (kind, len as u32),
                "case {case}"
            );
        }
        assert_eq!(
            EntryKind::split_tagged_len(u32::MAX),
            (EntryKind::Config, u32::MAX >> 1)
        );
    }
}
