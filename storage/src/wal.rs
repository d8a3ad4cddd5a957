//! [`FileStorage`]: a node's raft state in a directory, as a write-ahead log.
//!
//! # The directory
//!
//! - `LOCK`: held with an exclusive file lock ([`File::try_lock`]) for as long as a
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
//!   A directory that holds segments but no `IDENTITY` is refused rather than adopted.
//! - `<seq>.wal`: segment files, `seq` counting up from 1 in 20 decimal digits, so that names
//!   sort in order; a missing number is an error. Only the last segment is ever written to; once
//!   it holds [`WalOptions::segment_size`] bytes (and at least one record), the next record goes
//!   to a new one (created, its header synced, the directory synced), so a segment exceeds the
//!   size by at most one record.
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
//! An update is checked before anything is written: entries that would leave a gap in the log,
//! an entry too large for a record, or a vote for node `u64::MAX` (which reads as no vote) are
//! refused, and the storage stops as after any failure (below).
//!
//! # Recovery
//!
//! Opening a directory reads every segment in order and applies its batches: the hard state is
//! replaced, entries from `truncate_from` on are dropped, entries are appended (a batch whose
//! `first_index` would leave a gap is corrupt; one at or below the last index replaces the
//! entries from there on). Command payloads are slices of the segment read into memory, not
//! copies. An intact record of an unknown kind, with reserved bytes or unknown flags set, or a
//! segment of another format version, is [`StorageError::Unreadable`]; a segment whose first
//! record carries no hard state is corrupt.
//!
//! Only the last write can have been cut short by a crash, and it was never acknowledged (its
//! `fdatasync` had not returned). So when a record of the **last** segment is damaged (cut short
//! by the end of the file, or failing a checksum) and no intact record follows it, it is the torn
//! tail: the file is truncated there, with a warning through `tracing`. A damaged record that an
//! intact one follows, or any damaged record in an older segment, is corruption of acknowledged
//! data: opening fails with [`StorageError::Corrupt`], naming the file and offset. (Looking for an
//! intact record after a damaged one tries every byte offset, checking the 8-byte header against
//! its checksum before anything else, so it costs about one pass over the rest of the segment.
//! When the damaged record's header is intact, its length is trusted and the search starts where
//! the record ends: commands are opaque bytes and may well contain something that looks like a
//! record, which must not turn a torn tail into a refusal to start.)
//!
//! A last segment whose own header is cut short or damaged, with no intact record after it, is
//! what a crash right after creating it leaves: it is removed, with a warning. Damage to the
//! header of an older segment is corruption.
//!
//! The directory is only changed (a tail cut, a segment removed) once every segment has been
//! read and found sound, so an open that fails leaves it as it was. An open then syncs the last
//! segment and the directory: a record that a crashed process had written but not yet synced
//! would otherwise be recovered, acted on, and lost in a later power failure.
//!
//! # Failures while running
//!
//! A failed write or sync (a full disk, an I/O error) leaves the storage *poisoned*: it refuses
//! every later update ([`StorageError::Poisoned`]), because what reached the disk is unknown and
//! `fsync` must not be retried after a failure. Opening the directory again recovers what is
//! there. (A record whose sync failed may still be in the page cache, whole, and be recovered
//! by an open before the machine restarts, though it may never reach the disk; the kernel
//! reports a write-back error once, so that open cannot know. If it is then lost, the records
//! after it make the log corrupt on the next start: the node stops rather than forget.)

mod fault;
mod format;
mod identity;
mod recovery;
#[cfg(test)]
mod tests;

use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::{Entry, HardState, Recovered, Storage, StorageError, Update, entries_size};
use fault::Faults;
use recovery::Mode;

/// Bytes a hard state takes in a batch record (`term`, `voted_for`).
pub const HARD_STATE_BYTES: u64 = 16;
/// Bytes of framing per entry in a batch record (`term`, `len`), besides its command.
pub const ENTRY_HEADER_BYTES: u64 = 12;
/// Largest batch record payload; larger updates are split (see the module docs).
pub const MAX_RECORD_BYTES: u64 = 64 << 20;

/// The lock file's name.
const LOCK: &str = "LOCK";

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
pub struct FileStorage {
    dir: PathBuf,
    options: WalOptions,
    /// Holds the directory's lock for as long as the storage lives.
    _lock: File,
    /// The last segment, the only one written to.
    segment: File,
    /// Its path.
    segment_path: PathBuf,
    /// Its sequence number.
    seq: u64,
    /// Its length: where the next record goes.
    end: u64,
    /// Whether it holds a record (if not, the next record carries the hard state).
    segment_has_records: bool,
    /// The hard state last persisted.
    hard_state: HardState,
    /// The index of the last entry persisted.
    last_index: u64,
    /// The records of one update, encoded; reused so that persisting allocates nothing.
    buf: Vec<u8>,
    /// Largest record payload written ([`MAX_RECORD_BYTES`], smaller in tests).
    max_record_bytes: u64,
    /// What `open` recovered, until [`Storage::recover`] takes it.
    recovered: Option<Recovered>,
    /// The first failure, after which nothing more is written.
    poisoned: Option<String>,
    faults: Faults,
}

impl fmt::Debug for FileStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStorage")
            .field("dir", &self.dir)
            .field("options", &self.options)
            .field("segment", &self.segment_path)
            .field("end", &self.end)
            .field("hard_state", &self.hard_state)
            .field("last_index", &self.last_index)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
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
        let dir = dir.as_ref().to_path_buf();
        match fs::metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(io_error("open data directory", &dir)(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    "not a directory",
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && options.create => create_dir(&dir)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StorageError::Missing { path: dir });
            }
            Err(e) => return Err(io_error("open data directory", &dir)(e)),
        }
        let lock = lock(&dir)?;
        let segments = recovery::list_segments(&dir)?;
        identity::check_or_create(&dir, identity, !segments.is_empty())?;
        let log = recovery::recover(&dir, segments, Mode::Repair)?;
        let tail = match log.tail {
            Some(tail) => tail,
            None => {
                let (path, file) = create_segment(&dir, 1, &mut Faults::default())?;
                recovery::Tail {
                    seq: 1,
                    path,
                    file,
                    len: format::SEGMENT_HEADER_BYTES as u64,
                    has_records: false,
                }
            }
        };
        Ok(Self {
            dir,
            options,
            _lock: lock,
            segment: tail.file,
            segment_path: tail.path,
            seq: tail.seq,
            end: tail.len,
            segment_has_records: tail.has_records,
            hard_state: log.recovered.hard_state,
            last_index: log.recovered.entries.len() as u64,
            buf: Vec::new(),
            max_record_bytes: MAX_RECORD_BYTES,
            recovered: Some(log.recovered),
            poisoned: None,
            faults: Faults::default(),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The hard state persisted last.
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// The index of the last entry persisted (0 if none).
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    /// Checks `update` against the stored log; returns the last index once it is applied, and
    /// the size of its entries in the log's encoding.
    fn check(&self, update: &Update<'_>) -> Result<(u64, u64), String> {
        if let Some(HardState {
            voted_for: Some(v), ..
        }) = update.hard_state
            && v as u64 == u64::MAX
        {
            return Err(format!("a vote for node {v} cannot be stored"));
        }
        let mut keep = self.last_index;
        if let Some(from) = update.truncate_from {
            keep = keep.min(from.saturating_sub(1));
        }
        if !update.entries.is_empty() {
            if update.first_index == 0 || update.first_index > keep + 1 {
                return Err(format!(
                    "entries at index {} would leave a gap after index {keep}",
                    update.first_index
                ));
            }
            keep = keep.min(update.first_index - 1);
        }
        // The room for entries in the smallest record: one carrying a hard state and a truncation.
        let room = self.max_record_bytes - format::batch_payload_bytes(true, true, 0);
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
        Ok((keep + update.entries.len() as u64, bytes))
    }

    /// Records `err` as the failure that stops this storage, and returns it.
    fn poison(&mut self, err: StorageError) -> StorageError {
        if self.poisoned.is_none() {
            self.poisoned = Some(err.to_string());
        }
        err
    }

    /// Writes `self.buf` at the end of the last segment and syncs it.
    fn write_and_sync(&mut self) -> Result<(), StorageError> {
        write_at(
            &mut self.faults,
            &self.segment,
            &self.buf,
            self.end,
            &self.segment_path,
        )?;
        sync_data(&mut self.faults, &self.segment, &self.segment_path)?;
        self.end += self.buf.len() as u64;
        Ok(())
    }

    /// Starts the next segment.
    fn rotate(&mut self) -> Result<(), StorageError> {
        let seq = self.seq + 1;
        let (path, file) = create_segment(&self.dir, seq, &mut self.faults)?;
        self.segment = file;
        self.segment_path = path;
        self.seq = seq;
        self.end = format::SEGMENT_HEADER_BYTES as u64;
        self.segment_has_records = false;
        Ok(())
    }

    /// Writes `update` as one or more records (see [`Storage::persist`]).
    fn write_update(
        &mut self,
        update: &Update<'_>,
        mut rest_bytes: u64,
    ) -> Result<(), StorageError> {
        let mut hard_state = update.hard_state;
        let mut truncate_from = update.truncate_from;
        let mut first_index = update.first_index;
        let mut rest = update.entries;
        loop {
            if self.segment_has_records && self.end >= self.options.segment_size {
                self.rotate()?;
            }
            // The first record of a segment carries the hard state.
            let hard_state_here =
                hard_state.or((!self.segment_has_records).then_some(self.hard_state));
            let room = self.max_record_bytes
                - format::batch_payload_bytes(
                    hard_state_here.is_some(),
                    truncate_from.is_some(),
                    0,
                );
            let (count, bytes) = if rest_bytes <= room {
                (rest.len(), rest_bytes)
            } else {
                fill(rest, room)
            };
            let (chunk, tail) = rest.split_at(count);
            self.buf.clear();
            format::encode_batch(
                &mut self.buf,
                hard_state_here,
                truncate_from,
                first_index,
                chunk,
            );
            self.write_and_sync()?;
            if let Some(hard_state) = hard_state_here {
                self.hard_state = hard_state;
            }
            self.segment_has_records = true;
            rest = tail;
            rest_bytes -= bytes;
            first_index += count as u64;
            hard_state = None;
            truncate_from = None;
            if rest.is_empty() {
                return Ok(());
            }
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
        let segments = recovery::list_segments(&self.dir)?;
        Ok(recovery::recover(&self.dir, segments, Mode::Strict)?.recovered)
    }

    /// One batch record, one positioned write, one `fdatasync`; more for an update above
    /// [`MAX_RECORD_BYTES`] or one that starts a new segment (see the module docs).
    fn persist(&mut self, update: &Update<'_>) -> Result<(), StorageError> {
        if let Some(reason) = &self.poisoned {
            return Err(StorageError::Poisoned {
                reason: reason.clone(),
            });
        }
        if update.is_empty() {
            return Ok(());
        }
        let (last_index, bytes) = match self.check(update) {
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
        if let Err(err) = self.write_update(update, bytes) {
            return Err(self.poison(err));
        }
        self.last_index = last_index;
        Ok(())
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
fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("sync directory", dir))
}

/// Creates the data directory `dir` (not its parents) and syncs its parent.
fn create_dir(dir: &Path) -> Result<(), StorageError> {
    match fs::create_dir(dir) {
        Ok(()) => {}
        // Created by someone else meanwhile: the lock decides who uses it.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(io_error("create directory", dir)(e)),
    }
    let parent = match dir.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => return Ok(()),
    };
    sync_dir(parent)
}

/// Takes the lock of `dir`.
fn lock(dir: &Path) -> Result<File, StorageError> {
    let path = dir.join(LOCK);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_error("open", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(StorageError::Locked { path }),
        Err(TryLockError::Error(e)) => Err(io_error("lock", &path)(e)),
    }
}

/// Creates segment `seq` in `dir` with its header, syncs it and the directory.
fn create_segment(
    dir: &Path,
    seq: u64,
    faults: &mut Faults,
) -> Result<(PathBuf, File), StorageError> {
    let path = dir.join(segment_name(seq));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io_error("create", &path))?;
    write_at(faults, &file, &format::segment_header(), 0, &path)?;
    sync_data(faults, &file, &path)?;
    faults.sync().map_err(io_error("sync directory", dir))?;
    sync_dir(dir)?;
    Ok((path, file))
}

/// One positioned write of all of `buf` at `offset`.
fn write_at(
    faults: &mut Faults,
    file: &File,
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
fn sync_data(faults: &mut Faults, file: &File, path: &Path) -> Result<(), StorageError> {
    faults
        .sync()
        .and_then(|()| file.sync_data())
        .map_err(io_error("sync", path))
}
