//! [`StorageError`]: why a storage could not be opened, read back or written.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::wal::Identity;

/// Why a storage could not be opened, recovered or written.
#[derive(Debug)]
#[non_exhaustive]
pub enum StorageError {
    /// An operation on a file or directory failed. A full disk is an `Io` error whose `source`
    /// has kind [`io::ErrorKind::StorageFull`].
    Io {
        /// What was being done, e.g. "write to", "sync".
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// A record or a snapshot that was acknowledged as durable is damaged or missing: the node
    /// must not start on it, or it might forget a vote, an entry or a snapshot it promised to
    /// keep.
    Corrupt {
        /// The segment file, or the snapshot file.
        path: PathBuf,
        /// Byte offset of the damaged record in it (in a snapshot file: 0 for its header or the
        /// whole file, the data's offset for its data).
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The data directory does not exist (and was not to be created).
    Missing {
        /// The directory.
        path: PathBuf,
    },
    /// The data directory belongs to another cluster or another node.
    WrongIdentity {
        /// The directory.
        path: PathBuf,
        /// The identity the caller expected.
        expected: Identity,
        /// The identity the directory holds.
        found: Identity,
    },
    /// The data directory holds no identity file: it was never initialized
    /// ([`crate::WalOptions::create`]), or it lost what it held (a wiped disk, a volume that
    /// failed to mount and left an empty mount point). A node must not start on it as if it were
    /// new: it may have voted or acknowledged entries before, and would forget them.
    Uninitialized {
        /// The directory.
        path: PathBuf,
    },
    /// Another process (or another storage in this one) has the data directory open.
    Locked {
        /// The directory's lock file.
        path: PathBuf,
    },
    /// The directory holds something this version cannot read: an unknown format version, a
    /// malformed identity file, a gap in the segment sequence that leaves entries in no segment
    /// and no snapshot.
    Unreadable {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A sync of the data directory failed since the machine last started (the directory holds
    /// a `SYNC-FAILED` marker of this boot): the page cache may hold writes the disk does not,
    /// which the log would read back as durable. Restart the machine (the marker is then
    /// removed on the next open), or unmount and mount the file system again (which empties its
    /// page cache) and remove the marker. Removing it otherwise accepts that the node may act
    /// on writes that never reached the disk, and forget them in the next power failure (a
    /// vote, which it could then cast twice).
    SyncFailed {
        /// The marker file.
        path: PathBuf,
        /// What failed, as the marker records it.
        failure: String,
    },
    /// An earlier write failed, so whether it reached the disk is unknown: nothing more is written
    /// until the storage is opened again (which recovers what is there).
    Poisoned {
        /// The first failure.
        reason: String,
    },
}

impl StorageError {
    /// Whether this is a full disk.
    pub fn is_storage_full(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == io::ErrorKind::StorageFull)
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { op, path, source } => {
                write!(f, "cannot {op} {}: {source}", path.display())
            }
            Self::Corrupt {
                path,
                offset,
                reason,
            } => write!(
                f,
                "corrupt data in {} at offset {offset}: {reason}; refusing to start on a damaged log",
                path.display()
            ),
            Self::Missing { path } => {
                write!(f, "data directory {} does not exist", path.display())
            }
            Self::WrongIdentity {
                path,
                expected,
                found,
            } => write!(
                f,
                "data directory {} belongs to {found}, not to {expected}",
                path.display()
            ),
            Self::Uninitialized { path } => write!(
                f,
                "{} is not an initialized data directory (it holds no IDENTITY file)",
                path.display()
            ),
            Self::Locked { path } => write!(
                f,
                "data directory is in use by another process (lock {} is held)",
                path.display()
            ),
            Self::Unreadable { path, reason } => {
                write!(f, "cannot read {}: {reason}", path.display())
            }
            Self::SyncFailed { path, failure } => write!(
                f,
                "a sync of the data directory failed since the machine last started ({failure}): \
                 the page cache may hold writes that never reached the disk, so the log is not \
                 opened before the machine restarts; restart it, or unmount and mount the file \
                 system again and remove {} (removing it otherwise accepts that writes the node \
                 took as durable may be lost in the next power failure)",
                path.display()
            ),
            Self::Poisoned { reason } => write!(
                f,
                "storage stopped after an earlier failure ({reason}); reopen it to recover"
            ),
        }
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
