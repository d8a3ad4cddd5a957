//! Segments prepared ahead of need: a file of the segment's full size, every byte of it written
//! (zeros) and synced, before the log writes a record to it.
//!
//! An `fdatasync` after a write that grows a file (or fills a hole in it, or converts an
//! unwritten extent that `fallocate` left) must also make the file's new length and block
//! map durable: a journal commit, about twice the time of one that only writes data blocks
//! already allocated and written (on this machine's disk, 211 µs against 98 µs after a 4 KiB
//! write). So the log appends to a segment whose blocks were all written before: its
//! records overwrite zeros, and each record's `fdatasync` writes data only.
//!
//! The next segment is prepared as `<seq>.wal.tmp` (the number it will take), on a thread of
//! its own on a real file system (inline, at the same point, on the simulated one, so that its
//! runs stay deterministic), once the current segment is half full, or at once if the current
//! one was not prepared this way (a new log's first segment, a segment of an earlier version).
//! Rotating to it writes the header and the start record at its beginning, syncs it, renames
//! it to `<seq>.wal` and syncs the directory: one atomic step, after which it is the log's
//! last segment, zeros after its start record. A log that is left before its prepared file is
//! used leaves the file behind, which the next open removes.
//!
//! A preparation that fails for lack of room (`ENOSPC`) fails the rotation that needs it, as a
//! write that finds the disk full would: the storage stops and frees its ballast. One that
//! fails otherwise is logged and tried again (thrice at most, after which this storage makes
//! its segments as before, at their first write).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use super::fault::Faults;
use super::fs::{Fs, FsFile, Open};
use super::{io_error, op, write_at};
use crate::StorageError;

/// The suffix of a prepared segment's file name.
pub(super) const SUFFIX: &str = ".wal.tmp";

/// Bytes of zeros per write while preparing.
const CHUNK: u64 = 1 << 20;

/// Failed preparations (other than for lack of room) after which a storage stops trying.
pub(super) const MAX_FAILURES: u32 = 3;

/// The file name of the prepared segment that will be segment `seq`.
pub(super) fn file_name(seq: u64) -> String {
    format!("{seq:020}{SUFFIX}")
}

/// Whether `name` is a prepared segment's.
pub(super) fn is_prepared(name: &str) -> bool {
    name.strip_suffix(SUFFIX)
        .is_some_and(|stem| stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
}

/// A prepared segment: `size` bytes of zeros, synced.
#[derive(Debug)]
pub(super) struct Prepared {
    /// The segment it is to become.
    pub(super) seq: u64,
    /// Its temporary path.
    pub(super) path: PathBuf,
    /// Open for writing.
    pub(super) file: Box<dyn FsFile>,
}

/// Makes `<seq>.wal.tmp` in `dir`: `size` bytes of zeros, written and synced a megabyte at a
/// time (any file of that name is replaced). A failure removes the file. `cancel` stops it between two writes.
pub(super) fn prepare(
    fs: &dyn Fs,
    dir: &Path,
    seq: u64,
    size: u64,
    faults: &mut Faults,
    cancel: &AtomicBool,
) -> Result<Prepared, StorageError> {
    let path = dir.join(file_name(seq));
    let made = zeros(fs, &path, size, faults, cancel);
    match made {
        Ok(file) => Ok(Prepared { seq, path, file }),
        Err(err) => {
            // Best effort: what is left is removed by the next open.
            let _ = fs.remove_file(&path);
            Err(err)
        }
    }
}

/// Writes `size` bytes of zeros to a new file at `path`, and syncs it.
fn zeros(
    fs: &dyn Fs,
    path: &Path,
    size: u64,
    faults: &mut Faults,
    cancel: &AtomicBool,
) -> Result<Box<dyn FsFile>, StorageError> {
    faults.change().map_err(io_error("create", path))?;
    let file = fs
        .open(path, Open::Truncate)
        .map_err(io_error("create", path))?;
    let zeros = vec![0u8; CHUNK.min(size) as usize];
    let mut at = 0;
    while at < size {
        if cancel.load(Ordering::Relaxed) {
            return Err(io_error("prepare", path)(io::Error::new(
                io::ErrorKind::Interrupted,
                "the log was closed",
            )));
        }
        let n = CHUNK.min(size - at);
        write_at(faults, &*file, &zeros[..n as usize], at, path)?;
        at += n;
        // A chunk at a time to the disk: one flush of the whole segment would hold the disk's
        // queue, and the log's own syncs behind it, for as long as it takes.
        if at < size {
            faults
                .sync()
                .and_then(|()| file.sync_data())
                .map_err(io_error(op::SYNC, path))?;
        }
    }
    faults
        .sync()
        .and_then(|()| file.sync_all())
        .map_err(io_error(op::SYNC, path))?;
    Ok(file)
}

/// The next segment, as far as it is prepared.
#[derive(Debug, Default)]
pub(super) enum Next {
    /// None is prepared, nor being prepared.
    #[default]
    None,
    /// Being prepared on a thread of its own.
    Running {
        /// The thread.
        handle: JoinHandle<Result<Prepared, StorageError>>,
        /// Tells it to stop.
        cancel: Arc<AtomicBool>,
    },
    /// Ready to be used.
    Ready(Prepared),
    /// Its preparation found the disk full: the rotation that needs it fails so.
    Full(StorageError),
    /// Preparing failed [`MAX_FAILURES`] times, or a thread could not be started: segments are
    /// made as before.
    Off,
}

impl Next {
    /// Whether a prepared segment can be had now without waiting: ready, or a thread that has
    /// finished (whose outcome it takes; `failures` counts a failure).
    pub(super) fn ready(&mut self, failures: &mut u32) -> bool {
        if let Next::Running { handle, .. } = self
            && handle.is_finished()
        {
            self.wait(failures);
        }
        matches!(self, Next::Ready(_))
    }

    /// Waits for a preparation under way, if any, and takes its outcome.
    pub(super) fn wait(&mut self, failures: &mut u32) {
        if let Next::Running { .. } = self {
            let Next::Running { handle, .. } = std::mem::take(self) else {
                unreachable!("matched above");
            };
            let outcome = handle.join().unwrap_or_else(|_| {
                Err(StorageError::Poisoned {
                    reason: "the thread preparing the next segment panicked".to_owned(),
                })
            });
            *self = Self::outcome(outcome, failures);
        }
    }

    /// What a preparation's `outcome` leaves.
    pub(super) fn outcome(outcome: Result<Prepared, StorageError>, failures: &mut u32) -> Self {
        match outcome {
            Ok(prepared) => Next::Ready(prepared),
            Err(err) if err.is_storage_full() => Next::Full(err),
            Err(error) => {
                *failures += 1;
                tracing::warn!(
                    %error,
                    failures = *failures,
                    "cannot prepare the next segment of the write-ahead log"
                );
                if *failures >= MAX_FAILURES {
                    Next::Off
                } else {
                    Next::None
                }
            }
        }
    }

    /// Stops a preparation under way and waits for its thread (which removes its file).
    pub(super) fn cancel(&mut self) {
        if let Next::Running { cancel, .. } = self {
            cancel.store(true, Ordering::Relaxed);
            if let Next::Running { handle, .. } = std::mem::take(self) {
                // Its outcome no longer matters: the file is removed on failure, or by the next
                // open.
                let _ = handle.join();
            }
        }
    }
}
