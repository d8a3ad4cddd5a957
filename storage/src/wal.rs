//! [`FileStorage`]: a node's raft state in a directory, as a write-ahead log and snapshot files.
//!
//! # The directory
//!
//! - `LOCK`: held with an exclusive file lock ([`std::fs::File::try_lock`]) for as long as a
//!   [`FileStorage`] is open, so a second process (or a second storage in this one) cannot open
//!   the same directory.
//! - `IDENTITY`: which cluster and which node the directory belongs to ([`Identity`]), written
//!   once when the directory is first used (to a temporary file, synced, renamed, and the
//!   directory synced). Opening it for another cluster or node is an error. It is text, the
//!   last line a checksum of the others:
//!
//!   ```text
//!   zeroraft data directory
//!   format 1
//!   cluster 7
//!   node 2
//!   crc32c 1a2b3c4d
//!   ```
//!
//!   A directory that holds segments or snapshot files but no `IDENTITY` is refused rather than
//!   adopted.
//! - `<seq>.wal`: segment files, `seq` counting up from 1 in 20 decimal digits, so that names
//!   sort in order. Only the last segment is ever written to; once it holds
//!   [`WalOptions::segment_size`] bytes (and at least one batch), the next record goes to a new
//!   one, so a segment's records exceed the size by at most one write. A segment is made at
//!   its full size ahead of need (see [Prepared segments](#prepared-segments)): its records
//!   overwrite zeros, and zeros follow the last one to the end of the file. Segments that a
//!   snapshot made useless are removed from the oldest on (see [Snapshots](#snapshots)), so the
//!   first segment may be any number; from it on the numbers have no gap.
//! - `<seq>.wal.tmp`: the next segment, being prepared or ready; not part of the log until it
//!   is renamed to `<seq>.wal`, and removed by the next open if it never was.
//! - `snapshot-<index>.snap`: the snapshot the log refers to, `index` (20 decimal digits) being
//!   the last log index it covers. A file is written whole before any record refers to it, as
//!   `snapshot-<index>.snap.tmp` first. Other snapshot files may exist for a while: the one
//!   before the log's snapshot, until it is removed; one whose record a crash prevented.
//! - `SYNC-FAILED`: left when a sync failed; the directory is not opened again in the same boot
//!   of the machine (see [Failures while running](#failures-while-running)).
//! - `BALLAST`: room held in reserve for when the disk fills up (see [Headroom](#headroom)).
//!
//! # Segment format (all integers little-endian)
//!
//! A 16-byte header: the magic `ZRAFTWAL`, the format version (`u32`, 3), and the CRC32C of
//! those 12 bytes. Then records, each a 16-byte record header and a payload:
//!
//! ```text
//! offset  size  field
//!  0      4     len         payload length in bytes
//!  4      1     kind        1 = batch, 2 = start
//!  5      3     reserved    zero
//!  8      4     header_crc  CRC32C of seq u64, offset u64, then bytes 0..8
//! 12      4     crc         CRC32C of seq u64, offset u64, bytes 0..8, then the payload
//! 16      len   payload
//! ```
//!
//! where `seq` is the segment's sequence number and `offset` the record's offset in the file.
//! The header's own checksum lets recovery tell a damaged record apart from the end of the log
//! without trusting a damaged length (see below). Starting both checksums from the record's
//! place makes a record valid there only: a byte-exact copy of a record (in a client's command,
//! say: CRC32C is no MAC) fails its checksums anywhere else, in this segment or another, so
//! recovery never mistakes one for a record, even when it searches for one after a damaged
//! header.
//!
//! The first record of every segment, and only that one, is a **start** record: the state of
//! the log just before the segment's first batch, so that a segment can be read without the
//! ones before it. It is written with the segment's header when the segment is created, in one
//! write that fits in the first sector, and synced before anything else is written to it: every
//! later write to a segment holds one record.
//!
//! ```text
//! term u64, voted_for u64        the hard state (voted_for u64::MAX = none)
//! snapshot_index u64             the snapshot's index, 0 = no snapshot
//! snapshot_term u64              its term (0 without a snapshot)
//! last_index u64                 the index of the last entry (the snapshot's, or 0, if none
//!                                follows it); at least snapshot_index
//! ```
//!
//! A **batch** record holds one [`Update`] (one group commit: one write, one `fdatasync`), its
//! parts in the order they apply:
//!
//! ```text
//! flags u8                       bit 0: hard state; bit 1: truncation; bit 2: snapshot
//! term u64, voted_for u64        if bit 0 (voted_for u64::MAX = none)
//! snapshot_index u64, term u64   if bit 2: the snapshot is now the one in
//!                                snapshot-<snapshot_index>.snap (index above 0)
//! truncate_from u64              if bit 1
//! first_index u64, count u32
//! count times: term u64, len u32, command (len bytes)
//! ```
//!
//! The top bit of an entry's `len` marks a configuration entry ([`crate::EntryKind::Config`]);
//! the length is the other 31 bits. No record is large enough to set it otherwise, so segments
//! written before entry kinds existed (same format version) read as they always did: every
//! entry a command. A build that predates entry kinds refuses a segment holding a
//! configuration entry (the length runs past the record) rather than misreading it.
//!
//! An update larger than [`MAX_RECORD_BYTES`] is split into several batch records, each written
//! and synced before the next, the hard state, snapshot and truncation in the first: a crash
//! between them leaves a prefix of the update, which is a valid raft state (the node had
//! acknowledged none of it).
//!
//! Format version 2 differs in two ways: its checksums start from nothing (CRC32C of bytes
//! 0..8, then of those and the payload), and a segment's start record was written with its
//! first batch. Its segments are still read; a log whose last segment is of version 2 goes on
//! in a new segment of version 3 (the old one is never written to again, and one that holds no
//! record is made again as version 3). Format version 1 (no snapshots, no start record, the
//! first batch of a segment carrying the hard state) is not read: no such log was deployed.
//!
//! # Prepared segments
//!
//! An `fdatasync` after a write that grows a file must also make its new length and block map
//! durable (a journal commit); after a write over blocks that were written before, it writes
//! the data alone: on this machine's disk about 211 µs against 98 µs after a 4 KiB write.
//! (`fallocate` alone does not help: it leaves unwritten extents, whose conversion on the first
//! write is a change of metadata again.) So segments are prepared ahead of need, every byte of
//! them written:
//!
//! 1. `<seq>.wal.tmp` is created and [`WalOptions::segment_size`] bytes of zeros written to it
//!    and synced (`fsync`), on a thread of the log's own, once the last segment is half full,
//!    or at once if the last segment was not prepared (a new log's first, one a torn tail was
//!    cut from, one of an earlier version: such a segment is left for the prepared one once it
//!    holds 64 KiB and the prepared one is ready);
//! 2. when the next record needs it, the segment's header and start record are written at its
//!    beginning (one write, in the first sector) and synced, the file renamed to `<seq>.wal`,
//!    and the directory synced; only then is a record written to it.
//!
//! A crash before the rename is durable leaves the temporary file, which the next open removes
//! (nothing in it was acknowledged); after it, a segment whose start record is followed by
//! zeros: a segment holding no batch. If the preparation is not finished when the segment is
//! needed, the write waits for it. One that fails for lack of room fails that write as a full
//! disk does (the storage stops and frees its ballast, see [Headroom](#headroom)); one that
//! fails otherwise is logged and tried again, and after three failures the log makes its
//! segments as it needs them, each with its header and start record in one write, synced, and
//! the directory synced. Segments freed by a snapshot are removed, not reused: a reused file
//! would hold old records after the new ones, where the torn tail rules below expect zeros.
//!
//! # Snapshot file format (all integers little-endian)
//!
//! ```text
//! offset  size  field
//!  0      8     magic       ZRAFTSNP
//!  8      4     version     1, or 2 with a configuration
//! 12      4     config_len  version 2: configuration length in bytes; version 1: zero
//! 16      8     index       the last log index the snapshot covers
//! 24      8     term        the term of the entry at index
//! 32      8     len         data length in bytes
//! 40      4     data_crc    CRC32C of the configuration (version 2) then the data
//! 44      4     header_crc  CRC32C of bytes 0..44
//! 48      c     config      version 2 only: the configuration in force at index
//! 48 + c  len   data
//! ```
//!
//! A snapshot without a configuration ([`crate::Snapshot::config`] `None`) is written as
//! version 1, byte for byte as before snapshots carried one; files of either version read.
//!
//! # Updates
//!
//! An update is checked before anything is written. Refused, as [`crate::MemStorage`] refuses
//! them: a snapshot not newer than the stored one; entries at or below the snapshot's index
//! (the new one's, if the update has one), or that would leave a gap after the last entry (once
//! the snapshot and the truncation are applied). Refused because the log cannot store them: an
//! entry too large for a record, a vote for node `u64::MAX` (which reads as no vote), an index
//! above 2^63 - 1. A refused update leaves the storage stopped, as after any failure (below).
//!
//! # Snapshots
//!
//! An update with a snapshot is written in this order, each step only once the one before is
//! durable:
//!
//! 1. the snapshot file: `snapshot-<index>.snap.tmp` is created, the header and the data
//!    written from the caller's buffer (no copy), the file `fsync`ed (once), renamed to
//!    `snapshot-<index>.snap` (replacing any file of that name, which no record refers to), and
//!    the directory synced;
//! 2. the batch record naming it, with the rest of the update, synced: from then on the
//!    snapshot is the log's and the update is acknowledged;
//! 3. the segments the snapshot covers are removed, oldest first, and the directory synced;
//!    then the other snapshot files (the previous snapshot's, and leftovers). On the real file
//!    system the covered segments are handed to a thread of their own (`wal/removal.rs`), which
//!    removes them and syncs the directory after the update returns: freeing a segment and
//!    syncing the directory can take tens of milliseconds on a busy disk, which the write would
//!    otherwise wait for. The handing over happens only here, after step 2. On the simulated
//!    file system, which allows no threads, the log removes them itself, at once or at the
//!    start of its next write as the seed decides, so that the power-loss tests cut the power
//!    before, during and after removals done late, as a thread does them.
//!
//! A segment is covered when the highest index of an entry written in it (0 if none) is at most
//! the snapshot's index, and removed when it and every segment before it are covered, and a
//! later segment holds a record (its start record restates the hard state and the snapshot, so
//! an older segment is needed only for its entries). The last segment is never removed.
//! Removing is best effort: a failure is logged through `tracing` and tried again after the
//! next snapshot or on the next open, which removes the same files (and segments before a gap,
//! see below). Until it succeeds the files only take room.
//!
//! A crash at any point of this leaves the state before the update (before step 2: the new
//! file is not referred to, and is removed on the next open with a warning) or after it (from
//! step 2 on; the next open finishes step 3).
//!
//! # Recovery
//!
//! Opening a directory lists it and reads the segments from the last gap in their numbering on
//! (all of them, if there is no gap). Segments before a gap are what a crash leaves when the
//! removal of covered segments was cut short and the file system persisted a later removal but
//! not an earlier one; they are not read, and are removed, provided the segments after the gap
//! do not need them (see below).
//!
//! The state starts as the empty one if the first segment read is segment 1, or from that
//! segment's start record otherwise; the start record of every other segment must restate the
//! state the segments before it end with. Then the batches apply in order, as
//! [`crate::MemStorage`] applies an update: the hard state is replaced; a snapshot (which must
//! be newer than the current one) replaces the current one and drops the entries at or below
//! its index; entries from `truncate_from` on are dropped; entries are stored from
//! `first_index` on (a batch whose entries would overwrite the snapshot or leave a gap is
//! corrupt; one at or below the last index replaces the entries from there on). Command
//! payloads are slices of the segment read into memory, not copies.
//!
//! When the first segment read is not segment 1, the entries between its snapshot and its
//! start record's `last_index` were in segments no longer there: they must all be covered by a
//! later snapshot (or dropped by a truncation) by the end of the log, or the log is
//! [`StorageError::Unreadable`] (a missing segment). This is what makes removing covered
//! segments safe in any order the file system persists it: every entry of a removed segment is
//! at or below the snapshot whose record was durable before the removal.
//!
//! The snapshot the log ends with is read from its file, in one read into one buffer whose
//! tail becomes [`crate::Snapshot::data`] (no copy). A missing file, a damaged one (failing a
//! checksum, cut short) or one whose header names another index or term is
//! [`StorageError::Corrupt`], naming the file: the node must not start without the snapshot
//! it acknowledged. A file of another format version is [`StorageError::Unreadable`].
//!
//! An intact record of an unknown kind, with reserved bytes or unknown flags set, or a segment
//! of another format version, is [`StorageError::Unreadable`]. A segment whose first record is
//! not a start record (or that holds a start record elsewhere), a start record that disagrees
//! with the segments before it, an older segment holding no record, or a snapshot not newer
//! than the current one is corrupt.
//!
//! Zeros from a record boundary to the end of the file are the end of the segment's records,
//! in any segment: the rest of a prepared segment (or a length that persisted without the
//! data). No record starts with zeros (its kind is never 0). In a segment before the last,
//! records lost to zeros at its end would show in the next segment's start record, which must
//! restate the state the segments before it end with.
//!
//! Only the last write can have been cut short by a crash, and it was never acknowledged (its
//! `fdatasync` had not returned): every write is synced before the next one starts. A write
//! cut short leaves fewer bytes than were written (if the file's new length persisted at all,
//! it ends inside the write), or, where one of its sectors never reached the disk though the
//! length did, a sector of zeros (512 bytes, aligned in the file; a sector is written whole or
//! not at all); in a prepared segment, every sector of the write that did not reach the disk
//! holds the zeros it held before. So the rules below look at the file up to its last byte
//! that is not zero, as if the zeros after it were past its end, and the first damaged record
//! of the **last** segment is the torn tail, cut off with a warning through `tracing`, only if
//!
//! - the file ends inside its header, and the bytes there could start a record header (a
//!   length a record can have, a known kind, zero reserved bytes, as far as they go), or are
//!   zeros;
//! - its header is intact and the file ends inside its payload;
//! - its header is intact, it ends where the file does, and its part of some sector is all
//!   zeros;
//! - or its header is damaged, its part of a sector (to the sector's end, or the file's) is all
//!   zeros, and no intact record, nor more than one write's bytes, follow it.
//!
//! Any other damage is corruption of acknowledged data, and opening fails with
//! [`StorageError::Corrupt`], naming the file and the offset of the damaged record: a record
//! whose bytes are all there but fail the checksum (bit rot, a misdirected write, a sector that
//! a power cut garbled while the next append was rewriting it), bytes after the last record
//! that are neither a record nor zeros, a damaged record that anything follows (but the rest of
//! its own write), any damaged record of an older segment. A record of the last segment is
//! often the last vote the node cast: dropping it could let the node vote twice in a term.
//! (etcd's log draws the same line. One ambiguity remains, there as here: a record that holds a
//! whole sector of zeros of its own, and is damaged elsewhere, reads as torn.)
//!
//! Looking for an intact record after a damaged header tries every byte offset, checking the
//! 8-byte header against its checksum before anything else, so it costs about one pass over the
//! rest of the segment; a record is intact at its own offset only, so the search cannot stop
//! on a copy of one inside a command.
//!
//! A last segment whose own header is cut short (a prefix of a header) or zeros, and that holds
//! nothing else, is what a crash while creating it leaves: it is removed, with a warning. A last
//! segment whose start record is torn holds nothing either: the torn tail is cut off, and the
//! segment made again, whole. Any other damage to a segment header is corruption.
//!
//! The directory is only changed (a tail cut, a segment removed) once every segment and the
//! snapshot have been read and found sound, so an open that fails leaves it as it was. An open
//! then syncs the last segment and the directory: a record that a crashed process had written
//! but not yet synced would otherwise be recovered, acted on, and lost in a later power
//! failure. Then it removes what the log no longer needs, as after a snapshot (step 3 above):
//! covered segments, segments before a gap, snapshot files other than the log's (one newer than
//! the log's is an orphan of a crash before its record, noted with a warning), and temporary
//! snapshot files (with a warning).
//!
//! For the same reason an open syncs the directory before it reads it (a crashed process may
//! have renamed the identity file into place, or created a segment, without syncing the
//! directory: a new segment made durable before that rename would leave segments and no
//! identity), and an open that may initialize the directory syncs its parent even when the
//! directory exists (a crashed open may have created it).
//!
//! # Failures while running
//!
//! A failed write or sync (a full disk, an I/O error) leaves the storage *poisoned*: it refuses
//! every later update ([`StorageError::Poisoned`]), because what reached the disk is unknown and
//! `fsync` must not be retried after a failure. Failing to remove a file the log no longer
//! needs is not a failure of the storage (see [Snapshots](#snapshots)).
//!
//! After a failed write, opening the directory again recovers what is there: the next sync
//! writes whatever the page cache still holds. After a failed **sync** it does not: Linux
//! reports a write-back error once and marks the pages it could not write clean, so the page
//! cache may hold a record that never reached the disk, which an open in the same boot would
//! read back, sync "successfully" and act on, and which the next power failure would take away
//! (a vote, cast again). So a failed sync (of a segment, a snapshot file, the identity file or
//! the directory, while running or while opening) leaves a `SYNC-FAILED` marker in the
//! directory, recording the failure and the boot (`/proc/sys/kernel/random/boot_id`), and
//! opening the directory in the same boot fails with [`StorageError::SyncFailed`]. After a
//! reboot the page cache is gone and the log is what the disk holds, which recovery checks as
//! after any power failure: the open goes ahead and removes the marker. An operator who cannot
//! reboot can unmount and mount the file system again (which empties its page cache) and remove
//! the marker; removing it otherwise accepts that writes the node took as durable may be lost.
//! The marker is synced (a marker cut short by a power cut could not be told from one a crash
//! of the process left in this boot, and would be refused); if it cannot be written, the
//! failure is reported all the same, and its text says so.
//!
//! # Headroom
//!
//! A node whose disk is full stops, and could not even write the snapshot that would free room
//! once started again. So the directory keeps a ballast file, `BALLAST`, of
//! [`WalOptions::ballast_bytes`] (4 MiB by default), made when the directory is initialized.
//! When a write fails for lack of room, the storage removes it (and is poisoned, as after any
//! failed write): the node started again has that room for its next snapshot and the removal of
//! the segments it covers. An open that finds no ballast makes it only if the disk has room for
//! it twice over; until then [`Storage::disk_full`] is true, and making it is tried again after
//! every snapshot that removed files.
//!
//! # The file system
//!
//! Every file operation goes through a small interface (`fs.rs`: a trait with the system calls
//! as its implementation, called once per system call), so that the tests can run the log on a
//! simulated file system that keeps, for every file and directory, what was synced and what was
//! not, and at a simulated power cut drops, tears or reorders what was not, in every way POSIX
//! allows (`fs/sim.rs`; the power-loss tests are in `tests/power.rs`). The `sim-fs` feature
//! makes that file system public (`sim`) with `FileStorage::open_on`, for the deterministic
//! simulator, which power-cuts the logs of the nodes it crashes; nothing that ships enables it.

mod ballast;
mod fault;
mod format;
mod fs;
mod identity;
mod prepare;
mod recovery;
mod removal;
mod snapshot;
mod sync_failed;
#[cfg(test)]
mod tests;

/// The simulated file system, for the deterministic simulator (the `sim-fs` feature): see
/// [`SimFs`](sim::SimFs) for what a power cut does, and [`FileStorage::open_on`].
#[cfg(feature = "sim-fs")]
pub mod sim {
    pub use super::fault::Bugs;
    pub use super::fs::sim::{Cuts, Rng, SECTOR, SimFs};
}

use std::collections::VecDeque;
use std::fmt;
use std::fs::TryLockError;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::{Entry, HardState, Recovered, Storage, StorageError, Update, entries_size};
use fault::Faults;
use format::{BatchHead, Framing, Place, SnapshotRef, Start};
use fs::{Fs, FsFile, Open, RealFs};
use prepare::Next;
use recovery::Mode;

/// Bytes a hard state takes in a batch record (`term`, `voted_for`).
pub const HARD_STATE_BYTES: u64 = 16;
/// Bytes of framing per entry in a batch record (`term`, `len`), besides its command.
pub const ENTRY_HEADER_BYTES: u64 = 12;
/// Largest batch record payload; larger updates are split (see the module docs).
pub const MAX_RECORD_BYTES: u64 = 64 << 20;

/// Bytes after which a segment that was not prepared at its full size (a new log's first, one
/// a torn tail was cut from, one of an earlier version) is left for a prepared one, once that
/// is ready: a few hundred small writes grow the file, the rest overwrite zeros.
const LEAVE_UNPREPARED_BYTES: u64 = 64 << 10;

/// The lock file's name.
const LOCK: &str = "LOCK";

/// The names [`StorageError::Io`] gives the operations that sync: a failure of one of them
/// leaves the page cache untrustworthy (see [`sync_failed`]).
mod op {
    /// `fdatasync` or `fsync` of a file.
    pub(super) const SYNC: &str = "sync";
    /// `fsync` of a directory.
    pub(super) const SYNC_DIR: &str = "sync directory";
}

/// Whether `err` is the failure of a sync.
fn is_sync_failure(err: &StorageError) -> bool {
    matches!(err, StorageError::Io { op, .. } if *op == op::SYNC || *op == op::SYNC_DIR)
}

/// Which cluster and which node a data directory belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The cluster's id, the same for all its nodes.
    pub cluster: u64,
    /// The node's id in the cluster.
    pub node: u64,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {} of cluster {}", self.node, self.cluster)
    }
}

/// How to open a [`FileStorage`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalOptions {
    /// Start a new segment file once the current one holds this many bytes. Default 64 MiB.
    pub segment_size: u64,
    /// Initialize the data directory if it is not yet: create it (not its parents) if it does
    /// not exist, and write its identity file (with [`WalOptions::members`]) if it holds none.
    /// Default false: a missing directory is [`StorageError::Missing`] (as a mistyped path
    /// should be), and one without an identity file [`StorageError::Uninitialized`] (an empty
    /// mount point or a wiped disk must not pass for a new node).
    pub create: bool,
    /// The addresses of the cluster's members, recorded in the identity file when `create`
    /// initializes the directory (at most 64, each printable, without spaces, at most 255
    /// bytes); read back with [`FileStorage::members`]. Default none.
    pub members: Option<Vec<String>>,
    /// Bytes of the ballast file kept in the data directory and removed when a write fails on
    /// a full disk, so that the node, started again, has room for a snapshot and for removing
    /// the segments it covers (see [Headroom](self#headroom)). Default 4 MiB; 0 keeps none
    /// (and removes one left by an earlier run).
    pub ballast_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            segment_size: 64 << 20,
            create: false,
            members: None,
            ballast_bytes: 4 << 20,
        }
    }
}

/// A node's raft state as a write-ahead log in a directory. See the module docs.
pub struct FileStorage {
    /// The file system the directory is on.
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    options: WalOptions,
    /// The members the identity file records, if any.
    members: Option<Vec<String>>,
    /// Holds the directory's lock for as long as the storage lives.
    _lock: Box<dyn FsFile>,
    /// The thread that removes the segments a durable snapshot covers, once started (only on
    /// a file system that allows threads; see [`removal`]).
    remover: Option<removal::Remover>,
    /// On a file system that allows no threads, the covered segments the remover thread would
    /// remove, waiting for the log to remove them itself (see [`FileStorage::hand_over`]).
    put_off: Vec<PathBuf>,
    /// The last segment, the only one written to.
    segment: Box<dyn FsFile>,
    /// Its path.
    segment_path: PathBuf,
    /// Its sequence number.
    seq: u64,
    /// Its length: where the next record goes.
    end: u64,
    /// Whether it holds a batch record. A segment is created with its start record, and takes
    /// at least one batch before the next one is started.
    segment_has_batches: bool,
    /// Whether it was prepared at its full size ([`prepare`]): its records overwrite zeros.
    preallocated: bool,
    /// The next segment, as far as it is prepared.
    next: Next,
    /// Preparations that failed (other than for lack of room).
    prepare_failures: u32,
    /// Time spent in the `fdatasync` of log records so far ([`Storage::sync_time`]).
    sync_time: std::time::Duration,
    /// The hard state last persisted.
    hard_state: HardState,
    /// The snapshot last persisted, if any.
    snapshot: Option<SnapshotRef>,
    /// The index of the last entry persisted (the snapshot's, or 0, if none follows it).
    last_index: u64,
    /// The sequence number of the first segment kept.
    first_seq: u64,
    /// For each segment from `first_seq` to `seq`, the highest index of an entry written in it
    /// (0 if none).
    highs: VecDeque<u64>,
    /// Segments before a gap in the numbering, found when opening, to remove.
    stale_segments: Vec<PathBuf>,
    /// Snapshot files that are no longer the log's snapshot (or never were), to remove.
    stale_snapshots: Vec<PathBuf>,
    /// The records of one update, encoded; reused so that persisting allocates nothing.
    buf: Vec<u8>,
    /// Largest record payload written ([`MAX_RECORD_BYTES`], smaller in tests).
    max_record_bytes: u64,
    /// What `open` recovered, until [`Storage::recover`] takes it.
    recovered: Option<Recovered>,
    /// The first failure, after which nothing more is written.
    poisoned: Option<String>,
    /// Whether the disk is full: a write failed for lack of room (and the ballast file was
    /// removed), or the ballast file could not be made; until it is made again (or, without
    /// one, until a snapshot removed files).
    disk_full: bool,
    faults: Faults,
}

impl Drop for FileStorage {
    /// Stops a preparation of the next segment under way, and waits for its thread: nothing
    /// of the storage works on the directory once it is dropped.
    fn drop(&mut self) {
        self.next.cancel();
        drop(self.remover.take());
    }
}

impl fmt::Debug for FileStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStorage")
            .field("dir", &self.dir)
            .field("options", &self.options)
            .field("segment", &self.segment_path)
            .field("end", &self.end)
            .field("hard_state", &self.hard_state)
            .field("snapshot", &self.snapshot)
            .field("first_seq", &self.first_seq)
            .field("last_index", &self.last_index)
            .field("poisoned", &self.poisoned)
            .field("disk_full", &self.disk_full)
            .finish_non_exhaustive()
    }
}

impl FileStorage {
    /// What the open read back, until the node takes it ([`Storage::recover`]): a service
    /// may look at its log before the node starts (to learn its peers' addresses, say).
    pub fn recovered(&self) -> Option<&Recovered> {
        self.recovered.as_ref()
    }

    /// Opens (or, the first time, initializes) the data directory `dir` for `identity`, and
    /// recovers what it holds.
    ///
    /// # Errors
    ///
    /// [`StorageError::Missing`], [`StorageError::Uninitialized`], [`StorageError::SyncFailed`],
    /// [`StorageError::Locked`], [`StorageError::WrongIdentity`], [`StorageError::Corrupt`],
    /// [`StorageError::Unreadable`] or [`StorageError::Io`]; see their docs.
    pub fn open(
        dir: impl AsRef<Path>,
        identity: Identity,
        options: WalOptions,
    ) -> Result<Self, StorageError> {
        Self::open_with(Arc::new(RealFs), dir.as_ref(), identity, options)
    }

    /// [`FileStorage::open`] on the simulated file system `fs` (see [`sim`]): the directory
    /// `dir` is a path in it. The log runs with the bugs switched on in `fs`
    /// ([`SimFs::switch_on`](sim::SimFs::switch_on)), none by default.
    ///
    /// # Errors
    ///
    /// As [`FileStorage::open`]; an operation refused because `fs` was told to stop the
    /// process ([`SimFs::crash_at`](sim::SimFs::crash_at)) fails it as
    /// [`StorageError::Io`].
    #[cfg(feature = "sim-fs")]
    pub fn open_on(
        fs: &sim::SimFs,
        dir: impl AsRef<Path>,
        identity: Identity,
        options: WalOptions,
    ) -> Result<Self, StorageError> {
        let mut storage = Self::open_with(Arc::new(fs.clone()), dir.as_ref(), identity, options)?;
        storage.faults.bugs = fs.bugs();
        Ok(storage)
    }

    /// [`FileStorage::open`] on the file system `fs`.
    fn open_with(
        fs: Arc<dyn Fs>,
        dir: &Path,
        identity: Identity,
        options: WalOptions,
    ) -> Result<Self, StorageError> {
        if let Some(members) = &options.members {
            let bad = members.iter().find(|m| !identity::valid_member(m));
            if members.len() > identity::MAX_MEMBERS || bad.is_some() {
                return Err(StorageError::Unreadable {
                    path: dir.join(identity::IDENTITY),
                    reason: match bad {
                        Some(m) => format!("member {m:?} cannot be recorded"),
                        None => format!("more than {} members", identity::MAX_MEMBERS),
                    },
                });
            }
        }
        match fs.metadata(dir) {
            // An open that may initialize the directory makes sure it is in its parent on the
            // disk: one that created it may have crashed before syncing the parent.
            Ok(meta) if meta.is_dir && options.create => {
                sync_parent(&*fs, dir).map_err(|err| failed(&*fs, dir, err))?;
            }
            Ok(meta) if meta.is_dir => {}
            Ok(_) => {
                return Err(io_error("open data directory", dir)(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    "not a directory",
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && options.create => {
                create_dir(&*fs, dir).map_err(|err| failed(&*fs, dir, err))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StorageError::Missing {
                    path: dir.to_path_buf(),
                });
            }
            Err(e) => return Err(io_error("open data directory", dir)(e)),
        }
        if !options.create && identity::read(&*fs, dir)?.is_none() {
            // Refused before anything is written into it, not even the lock file: an empty
            // mount point stays empty.
            return Err(StorageError::Uninitialized {
                path: dir.to_path_buf(),
            });
        }
        // Refused before anything is written, too: what the log holds is not to be trusted.
        let stale_marker = sync_failed::check(&*fs, dir)?;
        let lock = lock(&*fs, dir)?;
        let mut storage = Self::recover_dir(Arc::clone(&fs), dir, identity, options, lock)
            .map_err(|err| failed(&*fs, dir, err))?;
        if let Some(path) = stale_marker
            && let Err(error) = fs.remove_file(&path)
        {
            tracing::warn!(
                file = %path.display(),
                %error,
                "cannot remove the sync failure marker of an earlier boot"
            );
        }
        storage.compact(false);
        // A last segment prepared at its full size and half full already: its successor is
        // prepared now rather than after the first write, which may need it.
        if storage.preallocated {
            storage.maybe_prepare();
        }
        Ok(storage)
    }

    /// The part of [`FileStorage::open_with`] from the lock on: identity, recovery, the last
    /// segment to write to, the ballast.
    fn recover_dir(
        fs: Arc<dyn Fs>,
        dir: &Path,
        identity: Identity,
        options: WalOptions,
        lock: Box<dyn FsFile>,
    ) -> Result<Self, StorageError> {
        // What a crashed process created, renamed or removed in the directory (its identity
        // file, say) may be in the page cache only: it is what this open acts on, so it must be
        // on the disk before anything new is.
        sync_dir(&*fs, dir)?;
        let listing = recovery::list(&*fs, dir)?;
        let has_log = !listing.segments.is_empty() || !listing.snapshots.is_empty();
        let recorded = identity::check_or_create(
            &*fs,
            dir,
            identity,
            has_log,
            options.create,
            options.members.as_deref(),
        )?;
        if let (None, Some((_, path))) = (listing.segments.first(), listing.snapshots.first()) {
            return Err(StorageError::Unreadable {
                path: path.clone(),
                reason: "a snapshot file in a directory that holds no segment".to_owned(),
            });
        }
        let log = recovery::recover(&*fs, dir, listing, Mode::Repair)?;
        let recovered = log.recovered;
        let snapshot = recovered.snapshot.as_ref().map(|s| SnapshotRef {
            index: s.index,
            term: s.term,
        });
        let state = Start {
            hard_state: recovered.hard_state,
            snapshot,
            last_index: recovered.first_index() - 1 + recovered.entries.len() as u64,
        };
        let mut highs: VecDeque<u64> = log.highs.into();
        let mut first_seq = log.first_seq;
        let no_faults = &mut Faults::default();
        let mut preallocated = false;
        let (seq, path, file, end, has_batches) = match log.tail {
            Some(tail) if tail.framing != Framing::Legacy && tail.records > 0 => {
                preallocated = tail.file_len >= options.segment_size;
                (tail.seq, tail.path, tail.file, tail.len, tail.records > 1)
            }
            Some(tail) if tail.records > 0 => {
                // A segment of the legacy format is never written to: the log goes on in a new
                // one.
                let seq = tail.seq + 1;
                let (path, file, end) = create_segment(&*fs, dir, seq, &state, no_faults)?;
                highs.push_back(0);
                (seq, path, file, end, false)
            }
            Some(tail) => {
                // A segment without its start record (its creation was cut short, or a legacy
                // segment before its first batch) holds nothing: it is made again, whole.
                drop(tail.file);
                fs.remove_file(&tail.path)
                    .map_err(io_error("remove", &tail.path))?;
                let (path, file, end) = create_segment(&*fs, dir, tail.seq, &state, no_faults)?;
                (tail.seq, path, file, end, false)
            }
            None => {
                let (path, file, end) = create_segment(&*fs, dir, 1, &state, no_faults)?;
                first_seq = 1;
                highs = VecDeque::from([0]);
                (1, path, file, end, false)
            }
        };
        let disk_full = match ballast::ensure(&*fs, dir, options.ballast_bytes, !recorded.created) {
            ballast::Outcome::Ready => false,
            ballast::Outcome::NoRoom => true,
        };
        Ok(Self {
            fs,
            dir: dir.to_path_buf(),
            options,
            members: recorded.members,
            _lock: lock,
            remover: None,
            put_off: Vec::new(),
            segment: file,
            segment_path: path,
            seq,
            end,
            segment_has_batches: has_batches,
            preallocated,
            next: Next::None,
            prepare_failures: 0,
            sync_time: std::time::Duration::ZERO,
            hard_state: state.hard_state,
            snapshot,
            last_index: state.last_index,
            first_seq,
            highs,
            stale_segments: log.stale_segments,
            stale_snapshots: log.stale_snapshots,
            buf: Vec::new(),
            max_record_bytes: MAX_RECORD_BYTES,
            recovered: Some(recovered),
            poisoned: None,
            disk_full,
            faults: Faults::default(),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cluster's members its identity file records, if it records them (see
    /// [`WalOptions::members`]).
    pub fn members(&self) -> Option<&[String]> {
        self.members.as_deref()
    }

    /// The identity `dir`'s identity file records and the members it lists, without opening
    /// the directory as a log: for a program that learns which node it is from its data
    /// directory.
    ///
    /// # Errors
    ///
    /// [`StorageError::Missing`] if `dir` does not exist, [`StorageError::Uninitialized`] if it
    /// holds no identity file, [`StorageError::Unreadable`] if the file is not one, or
    /// [`StorageError::Io`].
    pub fn read_identity(
        dir: impl AsRef<Path>,
    ) -> Result<(Identity, Option<Vec<String>>), StorageError> {
        let dir = dir.as_ref();
        let fs = RealFs;
        match fs.metadata(dir) {
            Ok(meta) if meta.is_dir => {}
            Ok(_) => {
                return Err(io_error("open data directory", dir)(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    "not a directory",
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StorageError::Missing {
                    path: dir.to_path_buf(),
                });
            }
            Err(e) => return Err(io_error("open data directory", dir)(e)),
        }
        match identity::read(&fs, dir)? {
            Some(recorded) => Ok((recorded.identity, recorded.members)),
            None => Err(StorageError::Uninitialized {
                path: dir.to_path_buf(),
            }),
        }
    }

    /// The hard state persisted last.
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// The index of the last entry persisted (the snapshot's, or 0, if none follows it).
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    /// The index of the snapshot persisted last (0 if none).
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot.map_or(0, |s| s.index)
    }

    /// Checks `update` against the stored state, refusing what [`crate::MemStorage`] refuses
    /// (and what the log cannot encode); returns the size of its entries in the log's encoding.
    fn check(&self, update: &Update<'_>) -> Result<u64, String> {
        if let Some(HardState {
            voted_for: Some(v), ..
        }) = update.hard_state
            && v as u64 == u64::MAX
        {
            return Err(format!("a vote for node {v} cannot be stored"));
        }
        let stored = self.snapshot_index();
        if let Some(snapshot) = update.snapshot {
            if snapshot.index <= stored {
                return Err(format!(
                    "a snapshot at index {} is not newer than the stored one at {stored}",
                    snapshot.index
                ));
            }
            if snapshot.index > format::MAX_INDEX {
                return Err(format!(
                    "a snapshot at index {}, above {}, cannot be stored",
                    snapshot.index,
                    format::MAX_INDEX
                ));
            }
        }
        let snapshot_index = update.snapshot.map_or(stored, |s| s.index);
        let mut last = self.last_index.max(snapshot_index);
        if let Some(from) = update.truncate_from {
            last = last.min(from.saturating_sub(1)).max(snapshot_index);
        }
        if !update.entries.is_empty()
            && (update.first_index <= snapshot_index || update.first_index > last + 1)
        {
            return Err(format!(
                "entries at index {} would leave a gap after index {last} or overwrite the \
                 snapshot at {snapshot_index}",
                update.first_index
            ));
        }
        // Entries start above the snapshot's index and at most at `last + 1`, itself at most
        // `MAX_INDEX + 1`: no overflow.
        if !update.entries.is_empty() {
            let end = update.first_index - 1 + update.entries.len() as u64;
            if end > format::MAX_INDEX {
                return Err(format!(
                    "entries up to index {end}, above {}, cannot be stored",
                    format::MAX_INDEX
                ));
            }
        }
        // The room for entries in the smallest record: one carrying a hard state, a snapshot
        // and a truncation.
        let room = self.max_record_bytes - format::batch_payload_bytes(true, true, true, 0);
        let mut bytes = 0;
        for (i, entry) in update.entries.iter().enumerate() {
            let size = ENTRY_HEADER_BYTES + entry.command.len() as u64;
            if size > room {
                return Err(format!(
                    "the entry at index {} has a command of {} bytes, more than a record holds",
                    update.first_index + i as u64,
                    entry.command.len()
                ));
            }
            bytes += size;
        }
        Ok(bytes)
    }

    /// Records `err` as the failure that stops this storage, and returns it. A failed sync
    /// leaves the sync failure marker ([`sync_failed`]); a full disk frees the ballast.
    fn poison(&mut self, err: StorageError) -> StorageError {
        if self.poisoned.is_none() {
            let mut reason = err.to_string();
            if is_sync_failure(&err)
                && !self.faults.no_sync_failed_marker()
                && let Err(marker) =
                    sync_failed::record(&*self.fs, &self.dir, &reason, &mut self.faults)
            {
                reason = format!("{reason} ({marker})");
            }
            self.poisoned = Some(reason);
        }
        if err.is_storage_full() {
            self.disk_full = true;
            ballast::release(&*self.fs, &self.dir);
        }
        err
    }

    /// Writes `self.buf` at the end of the last segment and syncs it.
    fn write_and_sync(&mut self) -> Result<(), StorageError> {
        write_at(
            &mut self.faults,
            &*self.segment,
            &self.buf,
            self.end,
            &self.segment_path,
        )?;
        if !self.faults.skip_sync() {
            let started = std::time::Instant::now();
            sync_data(&mut self.faults, &*self.segment, &self.segment_path)?;
            self.sync_time += started.elapsed();
        }
        self.end += self.buf.len() as u64;
        Ok(())
    }

    /// Starts the next segment, with a start record restating the state so far: the prepared
    /// one (waiting for it if it is being prepared), or a new file if none is.
    fn rotate(&mut self) -> Result<(), StorageError> {
        let seq = self.seq + 1;
        let start = Start {
            hard_state: self.hard_state,
            snapshot: self.snapshot,
            last_index: self.last_index,
        };
        self.next.wait(&mut self.prepare_failures);
        let (path, file, end, preallocated) = match std::mem::take(&mut self.next) {
            Next::Ready(prepared) if prepared.seq == seq => {
                let (path, file, end) =
                    install_prepared(&*self.fs, &self.dir, prepared, &start, &mut self.faults)?;
                (path, file, end, true)
            }
            Next::Full(err) => return Err(err),
            next => {
                if let Next::Off = next {
                    self.next = Next::Off;
                }
                let (path, file, end) =
                    create_segment(&*self.fs, &self.dir, seq, &start, &mut self.faults)?;
                (path, file, end, false)
            }
        };
        self.segment = file;
        self.segment_path = path;
        self.seq = seq;
        self.end = end;
        self.segment_has_batches = false;
        self.preallocated = preallocated;
        self.highs.push_back(0);
        Ok(())
    }

    /// Whether the next record goes to a new segment: the last one is full, or it was not
    /// prepared at its full size, holds [`LEAVE_UNPREPARED_BYTES`], and a prepared one is
    /// ready. Either way it holds a batch.
    fn rotation_due(&mut self) -> bool {
        self.segment_has_batches
            && (self.end >= self.options.segment_size
                || (!self.preallocated
                    && self.end >= LEAVE_UNPREPARED_BYTES
                    && self.next.ready(&mut self.prepare_failures)))
    }

    /// Waits until the segments the snapshots so far cover are removed and the directory
    /// synced, which [`Storage::persist`] leaves to a thread of its own (see the module docs):
    /// for a program that copies or inspects the directory. Removals that failed are logged,
    /// and tried again after the next snapshot.
    pub fn wait_for_removals(&mut self) {
        self.run_put_off();
        if let Some(remover) = &mut self.remover {
            let failed = remover.wait();
            self.stale_segments.extend(failed);
        }
    }

    /// Prepares the next segment now (a file of [`WalOptions::segment_size`] zeros, synced),
    /// or waits for the preparation under way, which the log otherwise does on a thread of its
    /// own once the last segment is half full (see the module docs): for a program or a
    /// benchmark that wants the writes that follow to find it ready. A failure is logged (or,
    /// for lack of room, fails the write that needs the segment).
    pub fn prepare_next_segment(&mut self) {
        if self.poisoned.is_none() {
            self.start_preparing();
        }
        self.next.wait(&mut self.prepare_failures);
    }

    /// Starts preparing the next segment if it is time (see [`prepare`]): the last segment is
    /// half full, or was not prepared at its full size.
    fn maybe_prepare(&mut self) {
        if self.preallocated && self.end < self.options.segment_size / 2 {
            return;
        }
        self.start_preparing();
    }

    /// Starts preparing the next segment, unless it is ready or under way (or preparing is
    /// off).
    fn start_preparing(&mut self) {
        if !matches!(self.next, Next::None) {
            return;
        }
        let seq = self.seq + 1;
        let size = self.options.segment_size;
        // A file of that name left by an earlier run, not yet removed, is replaced now: it must
        // not be removed once it is this one.
        let path = self.dir.join(prepare::file_name(seq));
        self.stale_segments.retain(|stale| *stale != path);
        if !self.fs.threads() {
            let outcome = prepare::prepare(
                &*self.fs,
                &self.dir,
                seq,
                size,
                &mut self.faults,
                &AtomicBool::new(false),
            );
            self.next = Next::outcome(outcome, &mut self.prepare_failures);
            return;
        }
        let fs = Arc::clone(&self.fs);
        let dir = self.dir.clone();
        let cancel = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&cancel);
        let spawned = std::thread::Builder::new()
            .name("zeroraft-wal-prepare".to_owned())
            .spawn(move || prepare::prepare(&*fs, &dir, seq, size, &mut Faults::default(), &stop));
        self.next = match spawned {
            Ok(handle) => Next::Running { handle, cancel },
            Err(error) => {
                tracing::warn!(
                    %error,
                    "cannot start a thread to prepare the next segment of the write-ahead \
                     log: segments are made as they are needed"
                );
                Next::Off
            }
        };
    }

    /// Writes `update` as one or more batch records (see [`Storage::persist`]).
    fn write_update(
        &mut self,
        update: &Update<'_>,
        mut rest_bytes: u64,
    ) -> Result<(), StorageError> {
        let mut head = BatchHead {
            hard_state: update.hard_state,
            snapshot: update.snapshot.map(|s| SnapshotRef {
                index: s.index,
                term: s.term,
            }),
            truncate_from: update.truncate_from,
            first_index: update.first_index,
        };
        let mut rest = update.entries;
        loop {
            if self.rotation_due() {
                self.rotate()?;
            }
            self.buf.clear();
            let room = self.max_record_bytes
                - format::batch_payload_bytes(
                    head.hard_state.is_some(),
                    head.snapshot.is_some(),
                    head.truncate_from.is_some(),
                    0,
                );
            let (count, bytes) = if rest_bytes <= room {
                (rest.len(), rest_bytes)
            } else {
                fill(rest, room)
            };
            let (chunk, tail) = rest.split_at(count);
            let place = Place {
                framing: Framing::Positioned { seq: self.seq },
                base: self.end,
            };
            format::encode_batch(&mut self.buf, place, &head, chunk);
            self.write_and_sync()?;
            self.segment_has_batches = true;
            self.applied(&head, count);
            rest = tail;
            rest_bytes -= bytes;
            if rest.is_empty() {
                return Ok(());
            }
            head = BatchHead {
                hard_state: None,
                snapshot: None,
                truncate_from: None,
                first_index: head.first_index + count as u64,
            };
        }
    }

    /// Brings the state up to date with a batch that was just written: `head` and `count`
    /// entries (as [`crate::MemStorage`] applies an update).
    fn applied(&mut self, head: &BatchHead, count: usize) {
        if let Some(hard_state) = head.hard_state {
            self.hard_state = hard_state;
        }
        if let Some(snapshot) = head.snapshot {
            self.snapshot = Some(snapshot);
            self.last_index = self.last_index.max(snapshot.index);
        }
        if let Some(from) = head.truncate_from {
            self.last_index = self
                .last_index
                .min(from.saturating_sub(1))
                .max(self.snapshot_index());
        }
        if count > 0 {
            self.last_index = head.first_index + count as u64 - 1;
            if let Some(high) = self.highs.back_mut() {
                *high = (*high).max(self.last_index);
            }
        }
    }

    /// Removes what the log no longer needs, oldest first: segments before a gap in the
    /// numbering (found when opening); the segments whose entries the snapshot covers, up to
    /// (not including) the last segment; syncs the directory; then the snapshot files other
    /// than the log's. A failure is logged, not returned: the file stays, and removing it is
    /// tried again after the next snapshot or on the next open (see the module docs). Returns
    /// how many files it removed.
    ///
    /// With `background`, the covered segments may go to the remover thread (see
    /// [`removal`]); without, as when opening, they are removed before it returns.
    fn compact(&mut self, background: bool) -> usize {
        if let Some(remover) = &mut self.remover {
            self.stale_segments.extend(remover.failed());
        }
        let mut removed = 0;
        let mut kept = Vec::new();
        for path in std::mem::take(&mut self.stale_segments) {
            match remove(&mut self.faults, &*self.fs, &path) {
                Ok(()) => removed += 1,
                Err(error) => {
                    tracing::warn!(
                        file = %path.display(),
                        %error,
                        "cannot remove a segment left over from an earlier removal; trying \
                         again after the next snapshot"
                    );
                    kept.push(path);
                }
            }
        }
        self.stale_segments = kept;
        let covered = self.snapshot_index();
        // Handed over: removed and synced after this returns (see [`removal`]).
        let mut handed = 0;
        if background && !self.disk_full && !self.faults.planned() {
            let paths = self.take_covered(covered);
            handed = paths.len();
            self.hand_over(paths);
        } else {
            removed += self.remove_covered(covered);
        }
        if removed > 0 {
            match sync_dir_with(&mut self.faults, &*self.fs, &self.dir) {
                Ok(()) => tracing::debug!(
                    removed,
                    first = self.first_seq,
                    "removed the segments the snapshot covers"
                ),
                Err(error) => tracing::warn!(
                    %error,
                    "removed the segments the snapshot covers, but cannot sync the directory; \
                     they may come back after a crash and be removed then"
                ),
            }
        }
        // A stale file may have the current snapshot's name: an orphan that could not be
        // removed, since replaced by the current snapshot's file.
        let current = self
            .snapshot
            .map(|s| self.dir.join(snapshot::file_name(s.index)));
        let mut kept = Vec::new();
        for path in std::mem::take(&mut self.stale_snapshots) {
            if Some(&path) == current.as_ref() {
                continue;
            }
            match remove(&mut self.faults, &*self.fs, &path) {
                Ok(()) => removed += 1,
                Err(error) => {
                    tracing::warn!(
                        file = %path.display(),
                        %error,
                        "cannot remove a snapshot file the log no longer refers to; trying \
                         again after the next snapshot"
                    );
                    kept.push(path);
                }
            }
        }
        self.stale_snapshots = kept;
        removed + handed
    }

    /// Hands the covered segments `paths` (oldest first) over to be removed and the directory
    /// synced after the write returns: to the remover thread, started here the first time; on
    /// a file system that allows no threads (the simulated one), to the log's own queue, which
    /// it runs now or at the start of its next write, as its seed decides
    /// ([`Fs::run_now`]). Removed here if the thread cannot run.
    fn hand_over(&mut self, paths: Vec<PathBuf>) {
        if paths.is_empty() {
            return;
        }
        if !self.fs.threads() {
            self.put_off.extend(paths);
            if self.fs.run_now() {
                self.run_put_off();
            }
            return;
        }
        if self.remover.is_none() {
            self.remover = removal::Remover::start(Arc::clone(&self.fs), self.dir.clone());
        }
        let paths = match &mut self.remover {
            Some(remover) => match remover.hand_over(paths) {
                Ok(()) => return,
                Err(paths) => paths,
            },
            None => paths,
        };
        let failed = removal::remove_and_sync(&*self.fs, &self.dir, paths, &mut self.faults);
        self.stale_segments.extend(failed);
    }

    /// Removes the segments waiting in the log's own queue (see [`FileStorage::hand_over`])
    /// and syncs the directory.
    fn run_put_off(&mut self) {
        if self.put_off.is_empty() {
            return;
        }
        let paths = std::mem::take(&mut self.put_off);
        let failed = removal::remove_and_sync(&*self.fs, &self.dir, paths, &mut self.faults);
        self.stale_segments.extend(failed);
    }

    /// How many segments, from the first on, a snapshot at `covered` covers: each holds no entry
    /// above it, and is not the last.
    fn covered_segments(&self, covered: u64) -> usize {
        let before_last = usize::try_from(self.seq - self.first_seq).unwrap_or(usize::MAX);
        self.highs
            .iter()
            .take(before_last)
            .take_while(|&&high| high <= covered)
            .count()
    }

    /// Takes the segments [`FileStorage::remove_covered`] would remove out of the log's
    /// accounts, without removing them, and returns their paths, oldest first.
    fn take_covered(&mut self, covered: u64) -> Vec<PathBuf> {
        (0..self.covered_segments(covered))
            .map(|_| {
                let path = self.dir.join(segment_name(self.first_seq));
                self.highs.pop_front();
                self.first_seq += 1;
                path
            })
            .collect()
    }

    /// Removes the segments, from the first on, whose entries are all at or below `covered`,
    /// up to (not including) the last segment, which restates the state in its start record;
    /// the ones before it are needed only for their entries. Returns how many it removed.
    fn remove_covered(&mut self, covered: u64) -> usize {
        let mut removed = 0;
        for _ in 0..self.covered_segments(covered) {
            let path = self.dir.join(segment_name(self.first_seq));
            if let Err(error) = remove(&mut self.faults, &*self.fs, &path) {
                tracing::warn!(
                    file = %path.display(),
                    %error,
                    "cannot remove a segment the snapshot at index {covered} covers; trying \
                     again after the next snapshot"
                );
                break;
            }
            self.highs.pop_front();
            self.first_seq += 1;
            removed += 1;
        }
        removed
    }

    /// After a snapshot removed `removed` files, makes the ballast again if the disk was full
    /// and now has room for it.
    fn maybe_restore_ballast(&mut self, removed: usize) {
        if !self.disk_full || removed == 0 {
            return;
        }
        if self.options.ballast_bytes == 0 {
            self.disk_full = false;
            return;
        }
        match ballast::ensure(&*self.fs, &self.dir, self.options.ballast_bytes, true) {
            ballast::Outcome::Ready => {
                self.disk_full = false;
                tracing::info!(
                    bytes = self.options.ballast_bytes,
                    "the disk has room again: the ballast file is back"
                );
            }
            ballast::Outcome::NoRoom => {}
        }
    }
}

/// How many of `entries`, from the first, fit in `room` bytes (at least one), and their size.
fn fill(entries: &[Entry], room: u64) -> (usize, u64) {
    let mut bytes = 0;
    for (i, entry) in entries.iter().enumerate() {
        let size = ENTRY_HEADER_BYTES + entry.command.len() as u64;
        if i > 0 && bytes + size > room {
            return (i, bytes);
        }
        bytes += size;
    }
    (entries.len(), bytes)
}

impl Storage for FileStorage {
    /// True: every write ends in an `fdatasync`.
    fn blocks_on_disk(&self) -> bool {
        true
    }

    /// The state persisted so far: what [`FileStorage::open`] recovered the first time, the log
    /// read again from the directory after that.
    fn recover(&mut self) -> Result<Recovered, StorageError> {
        if let Some(reason) = &self.poisoned {
            return Err(StorageError::Poisoned {
                reason: reason.clone(),
            });
        }
        if let Some(recovered) = self.recovered.take() {
            return Ok(recovered);
        }
        // The directory as the removals handed over leave it, not halfway through one.
        self.wait_for_removals();
        let listing = recovery::list(&*self.fs, &self.dir)?;
        Ok(recovery::recover(&*self.fs, &self.dir, listing, Mode::Strict)?.recovered)
    }

    /// One batch record, one positioned write, one `fdatasync`; more for an update above
    /// [`MAX_RECORD_BYTES`] or one that starts a new segment, and for an update with a
    /// snapshot, its file first (one write of its data, one `fsync`, a rename and a directory
    /// sync), then removing what it covers, on a thread of its own (see the module docs).
    fn persist(&mut self, update: &Update<'_>) -> Result<(), StorageError> {
        if let Some(reason) = &self.poisoned {
            return Err(StorageError::Poisoned {
                reason: reason.clone(),
            });
        }
        if update.is_empty() {
            return Ok(());
        }
        self.run_put_off();
        let bytes = match self.check(update) {
            Ok(checked) => checked,
            Err(reason) => {
                let err = StorageError::Poisoned {
                    reason: format!("refused an update: {reason}"),
                };
                return Err(self.poison(err));
            }
        };
        debug_assert_eq!(bytes, entries_size(update.entries));
        // What `open` recovered is no longer the state persisted so far.
        self.recovered = None;
        let previous = self.snapshot;
        let mut snapshot_file = None;
        if let Some(snapshot) = update.snapshot {
            match snapshot::write(&*self.fs, &self.dir, snapshot, &mut self.faults) {
                Ok(file) => snapshot_file = Some(file),
                Err(err) => return Err(self.poison(err)),
            }
            if self.faults.remove_before_snapshot_durable() {
                let paths = self.take_covered(snapshot.index);
                self.hand_over(paths);
            }
        }
        if let Err(err) = self.write_update(update, bytes) {
            return Err(self.poison(err));
        }
        if let Some(file) = snapshot_file {
            // Only when the data sync was put off (a re-injected bug, in tests).
            if let Err(err) = file.finish(&mut self.faults) {
                return Err(self.poison(err));
            }
            if let Some(previous) = previous {
                let path = self.dir.join(snapshot::file_name(previous.index));
                self.stale_snapshots.push(path);
            }
            let removed = self.compact(true);
            self.maybe_restore_ballast(removed);
        }
        self.maybe_prepare();
        Ok(())
    }

    /// Whether the disk is full (see [Headroom](self#headroom)): a write failed for lack of
    /// room, or the ballast file could not be made when the log was opened; until a snapshot
    /// has freed enough room for the ballast file again.
    fn disk_full(&self) -> bool {
        self.disk_full
    }

    fn sync_time(&self) -> std::time::Duration {
        self.sync_time
    }
}

/// The file name of segment `seq`.
fn segment_name(seq: u64) -> String {
    format!("{seq:020}.wal")
}

/// Maps an I/O error of `op` on `path` to a [`StorageError::Io`].
fn io_error(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StorageError {
    move |source| StorageError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Syncs the directory `dir`, so that files created, renamed or removed in it stay so.
fn sync_dir(fs: &dyn Fs, dir: &Path) -> Result<(), StorageError> {
    fs.sync_dir(dir).map_err(io_error(op::SYNC_DIR, dir))
}

/// [`sync_dir`], which `faults` may fail.
fn sync_dir_with(faults: &mut Faults, fs: &dyn Fs, dir: &Path) -> Result<(), StorageError> {
    faults.sync().map_err(io_error(op::SYNC_DIR, dir))?;
    sync_dir(fs, dir)
}

/// Removes the file at `path`; one that is already gone counts as removed.
fn remove(faults: &mut Faults, fs: &dyn Fs, path: &Path) -> io::Result<()> {
    faults.change()?;
    match fs.remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The whole of the file at `path`, in a buffer of exactly its size.
fn read_whole(fs: &dyn Fs, path: &Path) -> Result<Vec<u8>, StorageError> {
    fs.read(path, u64::MAX).map_err(io_error("read", path))
}

/// Creates the data directory `dir` (not its parents) and syncs its parent.
fn create_dir(fs: &dyn Fs, dir: &Path) -> Result<(), StorageError> {
    match fs.create_dir(dir) {
        // Created by someone else meanwhile: the lock decides who uses it.
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            Err(io_error("create directory", dir)(e))
        }
        _ => sync_parent(fs, dir),
    }
}

/// Syncs the directory that holds `dir`.
fn sync_parent(fs: &dyn Fs, dir: &Path) -> Result<(), StorageError> {
    let parent = match dir.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => return Ok(()),
    };
    sync_dir(fs, parent)
}

/// Takes the lock of `dir`.
fn lock(fs: &dyn Fs, dir: &Path) -> Result<Box<dyn FsFile>, StorageError> {
    let path = dir.join(LOCK);
    let file = fs
        .open(&path, Open::Create)
        .map_err(io_error("open", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(StorageError::Locked { path }),
        Err(TryLockError::Error(e)) => Err(io_error("lock", &path)(e)),
    }
}

/// What an open that failed with `err` leaves behind: the sync failure marker after a failed
/// sync, the ballast freed after a full disk. Returns `err`.
fn failed(fs: &dyn Fs, dir: &Path, err: StorageError) -> StorageError {
    if is_sync_failure(&err)
        && let Err(marker) = sync_failed::record(fs, dir, &err.to_string(), &mut Faults::default())
    {
        tracing::error!(%marker, "opening the data directory failed: {err}");
    }
    if err.is_storage_full() {
        ballast::release(fs, dir);
    }
    err
}

/// Creates segment `seq` in `dir` with its header and a start record saying `start`, in one
/// write; syncs it and the directory. Returns its path, the file, and its length.
fn create_segment(
    fs: &dyn Fs,
    dir: &Path,
    seq: u64,
    start: &Start,
    faults: &mut Faults,
) -> Result<(PathBuf, Box<dyn FsFile>, u64), StorageError> {
    let path = dir.join(segment_name(seq));
    faults.change().map_err(io_error("create", &path))?;
    let file = fs
        .open(&path, Open::CreateNew)
        .map_err(io_error("create", &path))?;
    let buf = segment_opening(seq, start);
    write_at(faults, &*file, &buf, 0, &path)?;
    sync_data(faults, &*file, &path)?;
    sync_dir_with(faults, fs, dir)?;
    Ok((path, file, buf.len() as u64))
}

/// The first bytes of segment `seq`: its header, then a start record saying `start`.
fn segment_opening(seq: u64, start: &Start) -> Vec<u8> {
    let mut buf = Vec::with_capacity(
        format::SEGMENT_HEADER_BYTES + format::RECORD_HEADER_BYTES + format::START_BYTES,
    );
    buf.extend_from_slice(&format::segment_header(format::FORMAT_VERSION));
    let place = Place {
        framing: Framing::Positioned { seq },
        base: 0,
    };
    format::encode_start(&mut buf, place, start);
    buf
}

/// Makes `prepared` segment `prepared.seq`: its header and a start record saying `start`
/// written at its beginning, in one write, synced; renamed into place; the directory synced.
/// Returns its path, the file, and where its next record goes.
fn install_prepared(
    fs: &dyn Fs,
    dir: &Path,
    prepared: prepare::Prepared,
    start: &Start,
    faults: &mut Faults,
) -> Result<(PathBuf, Box<dyn FsFile>, u64), StorageError> {
    let prepare::Prepared {
        seq,
        path: tmp,
        file,
    } = prepared;
    let buf = segment_opening(seq, start);
    write_at(faults, &*file, &buf, 0, &tmp)?;
    sync_data(faults, &*file, &tmp)?;
    let path = dir.join(segment_name(seq));
    faults.change().map_err(io_error("rename", &tmp))?;
    fs.rename(&tmp, &path).map_err(io_error("rename", &tmp))?;
    if !faults.rotate_without_dir_sync() {
        sync_dir_with(faults, fs, dir)?;
    }
    Ok((path, file, buf.len() as u64))
}

/// One positioned write of all of `buf` at `offset`.
fn write_at(
    faults: &mut Faults,
    file: &dyn FsFile,
    buf: &[u8],
    offset: u64,
    path: &Path,
) -> Result<(), StorageError> {
    if let Err((prefix, err)) = faults.write(buf.len()) {
        file.write_all_at(&buf[..prefix], offset)
            .map_err(io_error("write to", path))?;
        return Err(io_error("write to", path)(err));
    }
    file.write_all_at(buf, offset)
        .map_err(io_error("write to", path))
}

/// `fdatasync` of `file`.
fn sync_data(faults: &mut Faults, file: &dyn FsFile, path: &Path) -> Result<(), StorageError> {
    faults
        .sync()
        .and_then(|()| file.sync_data())
        .map_err(io_error(op::SYNC, path))
}
