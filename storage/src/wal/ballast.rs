//! The ballast file, `BALLAST`: room held in reserve on the data directory's disk.
//!
//! A node whose disk fills up stops (its storage fails a write and refuses every later one).
//! Started again on the same full disk, it could write nothing, not even the snapshot that
//! would let it remove the segments the snapshot covers and free room. So the directory keeps
//! a file of [`super::WalOptions::ballast_bytes`] that the storage removes when a write fails
//! for lack of room: the node started again has that much room for its next snapshot.
//!
//! The ballast is made when the directory is initialized, and when it is opened without one.
//! In the second case it is made only if the disk has room for it twice over (it is written at
//! twice its size, then cut): a ballast removed because the disk filled up must not take back
//! the room it freed before anything else has freed some. A storage that has no ballast for
//! lack of room reports the disk full ([`crate::Storage::disk_full`]) and tries again after
//! each snapshot that removed files.
//!
//! Its bytes are a fixed pseudo-random pattern rather than zeros, which a file system that
//! compresses would store in no room at all. It is not synced: it holds nothing, and a file
//! system reserves the room for written data when it is written; one cut short by a crash is
//! made again on the next open. (On a copy-on-write file system with snapshots of its own,
//! removing a file may free no room; the ballast does not help there.)

use std::io;
use std::path::Path;

use super::fs::{Fs, Open};

/// The ballast file's name.
pub(super) const BALLAST: &str = "BALLAST";
/// Bytes written at a time.
const CHUNK: usize = 64 << 10;
/// What the ballast is made of.
static PATTERN: [u8; CHUNK] = pattern();

/// `CHUNK` bytes of a xorshift sequence.
const fn pattern() -> [u8; CHUNK] {
    let mut bytes = [0; CHUNK];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut i = 0;
    while i < CHUNK {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes[i] = (x >> 32) as u8;
        i += 1;
    }
    bytes
}

/// What [`ensure`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The ballast is there (or none is wanted, or it could not be made for another reason than
    /// a full disk, which was logged).
    Ready,
    /// The disk has no room for it.
    NoRoom,
}

/// Makes sure `dir` holds a ballast file of `bytes` (none if 0). `probe`: make it only if there
/// is room for it twice over.
pub(super) fn ensure(fs: &dyn Fs, dir: &Path, bytes: u64, probe: bool) -> Outcome {
    let path = dir.join(BALLAST);
    if bytes == 0 {
        match fs.remove_file(&path) {
            Ok(()) => tracing::info!(
                file = %path.display(),
                "removed the ballast file: no ballast is wanted"
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(error) => tracing::warn!(
                file = %path.display(),
                %error,
                "cannot remove the ballast file"
            ),
        }
        return Outcome::Ready;
    }
    if fs
        .metadata(&path)
        .is_ok_and(|meta| !meta.is_dir && meta.len == bytes)
    {
        return Outcome::Ready;
    }
    let room = if probe {
        bytes.saturating_mul(2)
    } else {
        bytes
    };
    match fill(fs, &path, bytes, room) {
        Ok(()) => Outcome::Ready,
        Err(error) => {
            let _ = fs.remove_file(&path);
            if error.kind() == io::ErrorKind::StorageFull {
                tracing::warn!(
                    file = %path.display(),
                    bytes,
                    "the disk has no room for the ballast file: it is full, or was, and the \
                     ballast was used; trying again after the next snapshot"
                );
                Outcome::NoRoom
            } else {
                tracing::warn!(
                    file = %path.display(),
                    %error,
                    "cannot make the ballast file; going on without it"
                );
                Outcome::Ready
            }
        }
    }
}

/// Writes `room` bytes of the pattern to a new file at `path`, then cuts it to `bytes`.
fn fill(fs: &dyn Fs, path: &Path, bytes: u64, room: u64) -> io::Result<()> {
    let file = fs.open(path, Open::Truncate)?;
    let mut at = 0;
    while at < room {
        let n = (room - at).min(CHUNK as u64);
        file.write_all_at(&PATTERN[..n as usize], at)?;
        at += n;
    }
    if room > bytes {
        file.set_len(bytes)?;
    }
    Ok(())
}

/// Removes the ballast file of `dir`, if there is one: a write failed for lack of room.
pub(super) fn release(fs: &dyn Fs, dir: &Path) {
    let path = dir.join(BALLAST);
    match fs.remove_file(&path) {
        Ok(()) => tracing::warn!(
            file = %path.display(),
            "the disk is full: removed the ballast file, so that the node, started again, has \
             room for a snapshot"
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(error) => tracing::error!(
            file = %path.display(),
            %error,
            "the disk is full, and the ballast file cannot be removed"
        ),
    }
}
