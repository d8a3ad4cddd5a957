//! Reading a data directory back into a [`Recovered`] (see the parent module's docs for the
//! rules).
//!
//! Four passes, so that a directory that cannot be opened is left exactly as it was:
//!
//! 1. the directory is listed: segments, snapshot files, temporary files; the segments read are
//!    those after the last gap in their numbering;
//! 2. each of them is read whole into one buffer and its records' framing is checked, which
//!    finds the torn tail, if any, and every damaged record;
//! 3. the intact records are decoded and applied, commands becoming slices of the buffers, and
//!    the snapshot the log ends with is read from its file;
//! 4. only then is the torn tail cut off (or a last segment without an intact header removed),
//!    and the last segment and the directory synced. What the log no longer needs (segments
//!    the snapshot covers, other snapshot files) is left to [`super::FileStorage`] to remove.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::format::{
    self, Frame, Framing, Kind, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES, SegmentHeader,
    SnapshotRef, Start, TailDamage,
};
use super::fs::{Fs, FsFile, Open};
use super::prepare;
use super::snapshot::{self, Name};
use super::{io_error, op, read_whole, sync_dir};
use crate::{Entry, HardState, Recovered, StorageError};

/// How damage at the end of the last segment is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// When opening: damage at the end of the last segment is a torn tail, cut off.
    Repair,
    /// While the log is open and healthy: there can be no torn tail, so all damage is
    /// corruption, and nothing is changed.
    Strict,
}

/// The files of a data directory that the log is made of.
#[derive(Debug, Default)]
pub(super) struct Listing {
    /// The segments, `(seq, path)`, in order.
    pub(super) segments: Vec<(u64, PathBuf)>,
    /// The snapshot files, `(index, path)`, in order.
    pub(super) snapshots: Vec<(u64, PathBuf)>,
    /// Snapshot files that were being written.
    pub(super) temporary: Vec<PathBuf>,
    /// Segments prepared ahead and never used ([`prepare`]).
    pub(super) prepared: Vec<PathBuf>,
}

/// Lists the files of `dir` that the log is made of.
pub(super) fn list(fs: &dyn Fs, dir: &Path) -> Result<Listing, StorageError> {
    let mut listing = Listing::default();
    for name in fs.read_dir(dir).map_err(io_error("list", dir))? {
        let Some(name) = name.to_str() else {
            continue;
        };
        let path = || dir.join(name);
        if let Some(stem) = name.strip_suffix(".wal")
            && stem.len() == 20
            && stem.bytes().all(|b| b.is_ascii_digit())
            && let Ok(seq) = stem.parse::<u64>()
        {
            if seq == 0 {
                return Err(StorageError::Unreadable {
                    path: path(),
                    reason: "segment 0: segments count from 1".to_owned(),
                });
            }
            listing.segments.push((seq, path()));
            continue;
        }
        if prepare::is_prepared(name) {
            listing.prepared.push(path());
            continue;
        }
        match snapshot::parse_name(name) {
            Name::Snapshot(index) => listing.snapshots.push((index, path())),
            Name::Temporary => listing.temporary.push(path()),
            Name::Other => {}
        }
    }
    listing.segments.sort_unstable();
    listing.snapshots.sort_unstable();
    Ok(listing)
}

/// The last segment, after recovery, where the log goes on.
#[derive(Debug)]
pub(super) struct Tail {
    /// Its sequence number.
    pub(super) seq: u64,
    /// Its path.
    pub(super) path: PathBuf,
    /// Open for reading and writing.
    pub(super) file: Box<dyn FsFile>,
    /// Where the next record goes: after its last record (zeros may follow, to the end of a
    /// prepared segment).
    pub(super) len: u64,
    /// The file's length.
    pub(super) file_len: u64,
    /// How its records are framed: a legacy segment is never written to.
    pub(super) framing: Framing,
    /// How many records it holds (the first is its start record).
    pub(super) records: usize,
}

/// What a data directory holds.
#[derive(Debug)]
pub(super) struct Log {
    /// The state it holds.
    pub(super) recovered: Recovered,
    /// The last segment (none if there is no segment, or in [`Mode::Strict`]).
    pub(super) tail: Option<Tail>,
    /// The sequence number of the first segment read.
    pub(super) first_seq: u64,
    /// For each segment read, from `first_seq` on, the highest index of an entry written in it
    /// (0 if none).
    pub(super) highs: Vec<u64>,
    /// Segments before a gap in the numbering, which the log does not need (see the module
    /// docs of the parent); empty in [`Mode::Strict`].
    pub(super) stale_segments: Vec<PathBuf>,
    /// Snapshot files the log does not refer to, and temporary ones; empty in
    /// [`Mode::Strict`].
    pub(super) stale_snapshots: Vec<PathBuf>,
}

/// One segment, read and framed.
struct Segment {
    seq: u64,
    path: PathBuf,
    buf: Vec<u8>,
    /// How its records are framed (legacy for a segment whose header is damaged).
    framing: Framing,
    /// The intact records: offset of the record header, payload length.
    records: Vec<(usize, usize)>,
    /// The end of the last intact record (where the next one goes).
    end: usize,
    /// The file's length.
    file_len: usize,
    /// What to do to the file once everything has been read.
    repair: Option<Repair>,
}

/// Damage at the end of the last segment, to be undone.
enum Repair {
    /// Cut the file at this offset, dropping a torn record (and anything after it).
    Truncate { offset: usize, reason: &'static str },
    /// Remove the file: its header is incomplete or damaged and nothing intact follows it.
    Remove { reason: &'static str },
}

/// Bytes of zeros after the last record of a segment that its buffer may keep; more are
/// dropped (one copy of the records).
const ZEROS_KEPT: usize = 1 << 20;

/// Reads the log of `dir`, whose files are `listing` (see the module docs).
pub(super) fn recover(
    fs: &dyn Fs,
    dir: &Path,
    listing: Listing,
    mode: Mode,
) -> Result<Log, StorageError> {
    let Listing {
        mut segments,
        snapshots,
        temporary,
        prepared,
    } = listing;
    // The segments after the last gap in the numbering; those before it are left over from a
    // removal cut short (checked below: the ones after the gap must not need them).
    let run = segments
        .windows(2)
        .rposition(|w| w[1].0 != w[0].0 + 1)
        .map_or(0, |i| i + 1);
    let run_segments = segments.split_off(run);
    let stale_segments = segments;

    let count = run_segments.len();
    let mut framed = Vec::with_capacity(count);
    let mut capacity = 0;
    for (i, (seq, path)) in run_segments.into_iter().enumerate() {
        let lenient = mode == Mode::Repair && i + 1 == count;
        let segment = frame(fs, seq, path, lenient)?;
        capacity += segment
            .records
            .iter()
            .map(|&(pos, len)| count_bound(&segment.buf, pos, len))
            .sum::<usize>();
        framed.push(segment);
    }
    let first_seq = framed.first().map_or(1, |s| s.seq);
    let mut segments: Vec<(Segment, Bytes)> = framed
        .into_iter()
        .map(|mut s| {
            let mut buf = std::mem::take(&mut s.buf);
            // A prepared segment holds zeros after its last record: not kept in memory.
            if buf.len() - s.end > ZEROS_KEPT {
                buf.truncate(s.end);
                buf.shrink_to_fit();
            }
            (s, Bytes::from(buf))
        })
        .collect();

    let mut state = State::new(first_seq == 1, capacity);
    let mut highs = Vec::with_capacity(segments.len());
    for (i, (segment, bytes)) in segments.iter().enumerate() {
        highs.push(apply(i, segment, bytes, i + 1 == count, &mut state)?);
    }
    let Some(known) = state.known else {
        // Only a run of segments after the first can start without a known state.
        let (segment, _) = &segments[0];
        return Err(StorageError::Unreadable {
            path: segment.path.clone(),
            reason: format!(
                "segment {} is the first and holds no start record, so the state before it is \
                 in no segment: segments count up from 1 without a gap, or from one that \
                 starts after a snapshot",
                segment.seq
            ),
        });
    };
    let snapshot_index = known.snapshot.map_or(0, |s| s.index);
    if known.start > snapshot_index + 1 {
        let (segment, _) = &segments[0];
        let before = stale_segments
            .last()
            .map_or(String::new(), |(seq, _)| format!(" after segment {seq}"));
        return Err(StorageError::Unreadable {
            path: segment.path.clone(),
            reason: format!(
                "the entries from index {} to {} are in no segment and no snapshot: segment {} \
                 is the first{before}, and segments count up without a gap from 1 or from one \
                 that starts after a snapshot covering the entries before it",
                snapshot_index + 1,
                known.start - 1,
                segment.seq,
            ),
        });
    }
    let snapshot = match known.snapshot {
        Some(reference) => {
            let (i, pos) = known.snapshot_at;
            let segment = &segments[i].0.path;
            let referrer = || format!("in {} at offset {pos}", segment.display());
            Some(snapshot::read(fs, dir, reference, &referrer)?)
        }
        None => None,
    };
    let mut entries = known.entries;
    entries.drain(..known.skip);
    let recovered = Recovered {
        hard_state: known.hard_state,
        snapshot,
        entries,
    };

    let mut log = Log {
        recovered,
        tail: None,
        first_seq,
        highs,
        stale_segments: Vec::new(),
        stale_snapshots: Vec::new(),
    };
    if mode == Mode::Strict {
        return Ok(log);
    }
    while let Some((segment, _)) = segments.pop() {
        match segment.repair {
            Some(Repair::Remove { reason }) => {
                fs.remove_file(&segment.path)
                    .map_err(io_error("remove", &segment.path))?;
                sync_dir(fs, dir)?;
                log.highs.pop();
                tracing::warn!(
                    file = %segment.path.display(),
                    bytes = segment.file_len,
                    "removed the last segment of the write-ahead log: {reason}, and the file \
                     is a header cut short or zeros (a crash while it was created)"
                );
            }
            repair => {
                let file = fs
                    .open(&segment.path, Open::Existing)
                    .map_err(io_error("open", &segment.path))?;
                let mut file_len = segment.file_len;
                if let Some(Repair::Truncate { offset, reason }) = repair {
                    file.set_len(offset as u64)
                        .map_err(io_error("truncate", &segment.path))?;
                    tracing::warn!(
                        file = %segment.path.display(),
                        offset,
                        dropped = file_len - offset,
                        "truncated the torn tail of the write-ahead log: {reason}, and nothing \
                         follows it (a write cut short by a crash, never acknowledged)"
                    );
                    file_len = offset;
                }
                // Whatever a crashed process wrote but did not sync is about to be
                // acted on: make it durable first (and the cut, if any).
                file.sync_all().map_err(io_error(op::SYNC, &segment.path))?;
                sync_dir(fs, dir)?;
                log.tail = Some(Tail {
                    seq: segment.seq,
                    path: segment.path,
                    file,
                    len: segment.end as u64,
                    file_len: file_len as u64,
                    framing: segment.framing,
                    records: segment.records.len(),
                });
                break;
            }
        }
    }

    for (_, path) in &stale_segments {
        tracing::info!(
            file = %path.display(),
            "a segment before a gap in the numbering, left over from removing the segments a \
             snapshot covers: it will be removed"
        );
    }
    log.stale_segments = stale_segments.into_iter().map(|(_, p)| p).collect();
    for path in prepared {
        tracing::info!(
            file = %path.display(),
            "a segment prepared ahead and never used: it will be removed"
        );
        log.stale_segments.push(path);
    }
    let referenced = log.recovered.snapshot.as_ref().map(|s| s.index);
    for (index, path) in snapshots {
        if Some(index) == referenced {
            continue;
        }
        if referenced.is_none_or(|r| index > r) {
            tracing::warn!(
                file = %path.display(),
                "a snapshot file no record of the log refers to (a crash before its record was \
                 written, never acknowledged): it is ignored and will be removed"
            );
        } else {
            tracing::info!(
                file = %path.display(),
                "a snapshot file older than the log's snapshot: it will be removed"
            );
        }
        log.stale_snapshots.push(path);
    }
    for path in temporary {
        tracing::warn!(
            file = %path.display(),
            "a snapshot file cut short by a crash while it was written (never acknowledged): \
             it is ignored and will be removed"
        );
        log.stale_snapshots.push(path);
    }
    Ok(log)
}

/// Reads the segment `seq` at `path` and checks its framing. `lenient`: it is the last segment
/// and damage at its end may be a torn write ([`format::tail_damage`]).
fn frame(fs: &dyn Fs, seq: u64, path: PathBuf, lenient: bool) -> Result<Segment, StorageError> {
    let buf = read_whole(fs, &path)?;
    let corrupt = |offset: usize, reason: String| StorageError::Corrupt {
        path: path.clone(),
        offset: offset as u64,
        reason,
    };
    let framing = match format::check_segment_header(&buf, seq) {
        SegmentHeader::Valid(framing) => framing,
        SegmentHeader::Version(version) => {
            return Err(StorageError::Unreadable {
                reason: format!(
                    "segment format version {version} (this version reads {} and {})",
                    format::LEGACY_VERSION,
                    format::FORMAT_VERSION
                ),
                path,
            });
        }
        SegmentHeader::Damaged(reason) => {
            if !lenient {
                return Err(corrupt(0, reason.to_owned()));
            }
            if !format::torn_segment_header(&buf) {
                return Err(corrupt(
                    0,
                    format!(
                        "{reason}, and the file is neither a header cut short nor zeros (what a \
                         crash while the segment was created leaves)"
                    ),
                ));
            }
            let file_len = buf.len();
            return Ok(Segment {
                seq,
                path,
                buf,
                framing: Framing::Legacy,
                records: Vec::new(),
                end: 0,
                file_len,
                repair: Some(Repair::Remove { reason }),
            });
        }
    };
    let mut records = Vec::new();
    let mut repair = None;
    let mut pos = SEGMENT_HEADER_BYTES;
    while pos < buf.len() {
        match format::frame_at(&buf, pos, framing) {
            Frame::Intact { len } => {
                records.push((pos, len));
                pos += RECORD_HEADER_BYTES + len;
            }
            Frame::Damaged { reason } => {
                // Zeros to the end of the file: the end of the log, in a segment prepared at
                // its full size (or one whose length a crash made durable without the data).
                let Some(last) = buf.iter().rposition(|&b| b != 0).filter(|&l| l >= pos) else {
                    break;
                };
                if !lenient {
                    return Err(corrupt(pos, reason.to_owned()));
                }
                // What the torn tail rules see: the file up to its last byte that is not zero,
                // as if the zeros after it were past its end.
                match format::tail_damage(&buf[..=last], pos, framing) {
                    TailDamage::Torn(reason) => {
                        repair = Some(Repair::Truncate {
                            offset: pos,
                            reason,
                        });
                    }
                    TailDamage::Corrupt(reason) => return Err(corrupt(pos, reason)),
                }
                break;
            }
        }
    }
    let file_len = buf.len();
    Ok(Segment {
        seq,
        path,
        buf,
        framing,
        records,
        end: pos,
        file_len,
        repair,
    })
}

/// An upper bound of the entries in the intact record at `pos`.
fn count_bound(buf: &[u8], pos: usize, len: usize) -> usize {
    if !matches!(format::check_kind(buf, pos), Ok(Kind::Batch)) {
        return 0;
    }
    let payload = &buf[pos + RECORD_HEADER_BYTES..pos + RECORD_HEADER_BYTES + len];
    format::parse_batch(payload).map_or(0, |batch| batch.count_bound(len))
}

/// The state of the log as its records are applied.
struct State {
    /// Known once the first segment read starts from a known state: from the beginning, or
    /// from its start record.
    known: Option<Known>,
    /// Room for the entries, reserved up front.
    capacity: usize,
}

/// The state of the log as its records are applied, once known.
///
/// `entries[skip..]` are the entries from index `start` on; `entries[..skip]` are entries a
/// snapshot covered, dropped at the end in one go. The indices after the snapshot's and before
/// `start`, if any, are entries that were in segments no longer read: a later snapshot must
/// cover them (or a truncation drop them) by the end.
///
/// Invariant: `start > snapshot index`, `skip <= entries.len()`.
struct Known {
    hard_state: HardState,
    snapshot: Option<SnapshotRef>,
    /// Where the record that made `snapshot` the log's snapshot (or that restated it) is: the
    /// segment (its place among those read) and the offset in it.
    snapshot_at: (usize, usize),
    start: u64,
    skip: usize,
    entries: Vec<Entry>,
}

impl State {
    /// `from_the_start`: the first segment read is the log's first, so the state before it is
    /// the empty one.
    fn new(from_the_start: bool, capacity: usize) -> Self {
        let mut state = Self {
            known: None,
            capacity,
        };
        if from_the_start {
            let empty = Start {
                hard_state: HardState::default(),
                snapshot: None,
                last_index: 0,
            };
            state.set(empty, (0, 0));
        }
        state
    }

    /// Starts from `start`, the start record at `at` (segment, offset).
    fn set(&mut self, start: Start, at: (usize, usize)) {
        self.known = Some(Known {
            hard_state: start.hard_state,
            snapshot: start.snapshot,
            snapshot_at: at,
            start: start.last_index + 1,
            skip: 0,
            entries: Vec::with_capacity(self.capacity),
        });
    }
}

impl Known {
    fn snapshot_index(&self) -> u64 {
        self.snapshot.map_or(0, |s| s.index)
    }

    fn last_index(&self) -> u64 {
        self.start - 1 + (self.entries.len() - self.skip) as u64
    }

    /// What a start record restating this state says.
    fn restated(&self) -> Start {
        Start {
            hard_state: self.hard_state,
            snapshot: self.snapshot,
            last_index: self.last_index(),
        }
    }

    /// Drops the entries from `index` on.
    fn truncate_from(&mut self, index: u64) {
        if index < self.start {
            self.entries.truncate(self.skip);
            self.start = index.max(self.snapshot_index() + 1);
        } else {
            // Fewer than `entries.len()` if it truncates anything, so it fits a usize.
            let keep = index - self.start;
            if keep < (self.entries.len() - self.skip) as u64 {
                self.entries.truncate(self.skip + keep as usize);
            }
        }
        if self.skip == self.entries.len() {
            self.entries.clear();
            self.skip = 0;
        }
    }

    /// Makes `snapshot` the snapshot, dropping the entries it covers.
    fn set_snapshot(&mut self, snapshot: SnapshotRef, at: (usize, usize)) {
        let next = snapshot.index + 1;
        if next > self.start {
            let live = (self.entries.len() - self.skip) as u64;
            // At most `live`, so it fits a usize.
            self.skip += (next - self.start).min(live) as usize;
            self.start = next;
            if self.skip == self.entries.len() {
                self.entries.clear();
                self.skip = 0;
            }
        }
        self.snapshot = Some(snapshot);
        self.snapshot_at = at;
    }
}

/// Applies the intact records of `segment` (the `i`th read, whose bytes are `bytes`; `last`:
/// the last one) to `state`, and returns the highest index of an entry written in it.
fn apply(
    i: usize,
    segment: &Segment,
    bytes: &Bytes,
    last: bool,
    state: &mut State,
) -> Result<u64, StorageError> {
    let corrupt = |offset: usize, reason: String| StorageError::Corrupt {
        path: segment.path.clone(),
        offset: offset as u64,
        reason,
    };
    if segment.records.is_empty() && !last {
        return Err(corrupt(
            SEGMENT_HEADER_BYTES,
            "a segment that holds no record, yet another follows it".to_owned(),
        ));
    }
    let mut high = 0;
    for (r, &(pos, len)) in segment.records.iter().enumerate() {
        let kind = format::check_kind(bytes, pos).map_err(|reason| StorageError::Unreadable {
            path: segment.path.clone(),
            reason: format!("{reason} at offset {pos}"),
        })?;
        let at = pos + RECORD_HEADER_BYTES;
        let payload = &bytes[at..at + len];
        match (kind, r) {
            (Kind::Start, 0) => {
                let start = format::parse_start(payload).map_err(|r| corrupt(pos, r))?;
                match &state.known {
                    None => state.set(start, (i, pos)),
                    Some(known) if known.restated() == start => {}
                    Some(known) => {
                        return Err(corrupt(
                            pos,
                            format!(
                                "the segment starts from {start:?}, but the segments before it \
                                 end with {:?}",
                                known.restated()
                            ),
                        ));
                    }
                }
                continue;
            }
            (Kind::Start, _) => {
                return Err(corrupt(
                    pos,
                    "a start record that is not the first of its segment".to_owned(),
                ));
            }
            (Kind::Batch, 0) => {
                return Err(corrupt(
                    pos,
                    "the first record of the segment is not a start record".to_owned(),
                ));
            }
            (Kind::Batch, _) => {}
        }
        // A start record came first, so the state is known.
        let Some(state) = state.known.as_mut() else {
            return Err(corrupt(pos, "no start record before this one".to_owned()));
        };
        let batch = format::parse_batch(payload).map_err(|r| corrupt(pos, r))?;
        let head = batch.head;
        if let Some(hard_state) = head.hard_state {
            state.hard_state = hard_state;
        }
        if let Some(snapshot) = head.snapshot {
            if snapshot.index <= state.snapshot_index() {
                return Err(corrupt(
                    pos,
                    format!(
                        "a snapshot at index {} is not newer than the one at {}",
                        snapshot.index,
                        state.snapshot_index()
                    ),
                ));
            }
            state.set_snapshot(snapshot, (i, pos));
        }
        if let Some(from) = head.truncate_from {
            state.truncate_from(from);
        }
        if batch.count > 0 {
            let last = state.last_index();
            if head.first_index <= state.snapshot_index() || head.first_index > last + 1 {
                return Err(corrupt(
                    pos,
                    format!(
                        "entries at index {} would leave a gap after index {last} or overwrite \
                         the snapshot at {}",
                        head.first_index,
                        state.snapshot_index()
                    ),
                ));
            }
            let end = head.first_index + u64::from(batch.count) - 1;
            if end > format::MAX_INDEX {
                return Err(corrupt(
                    pos,
                    format!("entries up to index {end}, above {}", format::MAX_INDEX),
                ));
            }
            state.truncate_from(head.first_index);
            batch
                .decode_entries(bytes, at, len, &mut state.entries)
                .map_err(|r| corrupt(pos, r))?;
            high = high.max(end);
        }
    }
    Ok(high)
}
