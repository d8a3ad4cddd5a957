//! [`FileStorage`]: a node's raft state in a directory, as a write-ahead log.
//!
//! # The directory
//!
//! - `LOCK`: held with an exclusive file lock for as long as a [`FileStorage`] is open, so a
//!   second process (or a second storage in this one) cannot open the same directory.
//! - `IDENTITY`: which cluster and which node the directory belongs to ([`Identity`]), written
//!   once when the directory is first used (to a temporary file, synced, renamed, and the
//!   directory synced). Opening it for another cluster or node is an error.
//! - `<seq>.wal`: segment files, `seq` counting up from 1 in 20 decimal digits, so that names
//!   sort in order. Only the last segment is ever written to; when it reaches
//!   [`WalOptions::segment_size`] a new one is started (created, its header synced, the
//!   directory synced).
//!
//! # Segment format (all integers little-endian)
//!
//! A 16-byte header: the magic `ZRAFTWAL`, the format version (`u32`, 1), and the CRC32C of
//! those 12 bytes. Then records, each a 16-byte record header and a payload:
//!
//! ```text
//! offset  size  field
//!  0      4     len         payload length in bytes
//!  4      1     kind        1 = batch
//!  5      3     reserved    zero
//!  8      4     header_crc  CRC32C of bytes 0..8
//! 12      4     crc         CRC32C of bytes 0..8 followed by the payload
//! 16      len   payload
//! ```
//!
//! The header's own checksum lets recovery tell a damaged record apart from the end of the log
//! without trusting a damaged length (see below).
//!
//! A batch record holds one [`Update`] (one group commit: one write, one `fdatasync`):
//!
//! ```text
//! flags u8                       bit 0: hard state present; bit 1: truncation present
//! term u64, voted_for u64        if bit 0 (voted_for u64::MAX = none)
//! truncate_from u64              if bit 1
//! first_index u64, count u32
//! count times: term u64, len u32, command (len bytes)
//! ```
//!
//! An update larger than [`MAX_RECORD_BYTES`] is split into several batch records, each written
//! and synced before the next: a crash between them leaves a prefix of the update, which is a
//! valid raft state (the node had acknowledged none of it). The first record of every segment
//! carries the full hard state, so no segment needs an older one for it.
//!
//! # Recovery
//!
//! Opening a directory reads every segment in order and applies its batches: the hard state is
//! replaced, entries from `truncate_from` on are dropped, entries are appended (a batch whose
//! `first_index` would leave a gap is corrupt). Command payloads are slices of the segment read
//! into memory, not copies.
//!
//! Only the last write can have been cut short by a crash, and it was never acknowledged (its
//! `fdatasync` had not returned). So when a record of the **last** segment is damaged (cut short
//! by the end of the file, or failing a checksum) and no intact record follows it, it is the torn
//! tail: the file is truncated there, with a warning through `tracing`. A damaged record that an
//! intact one follows, or any damaged record in an older segment, is corruption of acknowledged
//! data: opening fails with [`StorageError::Corrupt`], naming the file and offset. (Looking for an
//! intact record after a damaged one tries every byte offset, checking the 8-byte header against
//! its checksum before anything else, so it costs about one pass over the rest of the segment.)
//!
//! # Failures while running
//!
//! A failed write or sync (a full disk, an I/O error) leaves the storage *poisoned*: it refuses
//! every later update ([`StorageError::Poisoned`]), because what reached the disk is unknown and
//! `fsync` must not be retried after a failure. Opening the directory again recovers what is
//! there.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::{Recovered, Storage, StorageError, Update};

/// Bytes a hard state takes in a batch record (`term`, `voted_for`).
pub const HARD_STATE_BYTES: u64 = 16;
/// Bytes of framing per entry in a batch record (`term`, `len`), besides its command.
pub const ENTRY_HEADER_BYTES: u64 = 12;
/// Largest batch record payload; larger updates are split (see the module docs).
pub const MAX_RECORD_BYTES: u64 = 64 << 20;

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
    /// Create the data directory (not its parents) if it does not exist. Default false: a
    /// missing directory is an error, as a mistyped path should be.
    pub create: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            segment_size: 64 << 20,
            create: false,
        }
    }
}

/// A node's raft state as a write-ahead log in a directory. See the module docs.
#[derive(Debug)]
pub struct FileStorage {
    dir: PathBuf,
}

impl FileStorage {
    /// Opens (or, the first time, initializes) the data directory `dir` for `identity`, and
    /// recovers what it holds.
    ///
    /// # Errors
    ///
    /// [`StorageError::Missing`], [`StorageError::Locked`], [`StorageError::WrongIdentity`],
    /// [`StorageError::Corrupt`], [`StorageError::Unreadable`] or [`StorageError::Io`]; see
    /// their docs.
    pub fn open(
        dir: impl AsRef<Path>,
        identity: Identity,
        options: WalOptions,
    ) -> Result<Self, StorageError> {
        let _ = (identity, options);
        Err(StorageError::Missing {
            path: dir.as_ref().to_path_buf(),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Storage for FileStorage {
    fn recover(&mut self) -> Result<Recovered, StorageError> {
        Ok(Recovered::default())
    }

    fn persist(&mut self, _update: &Update<'_>) -> Result<(), StorageError> {
        Ok(())
    }
}
