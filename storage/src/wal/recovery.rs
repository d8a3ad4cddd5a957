//! Reading a data directory's segments back into a [`Recovered`] (see the parent module's docs
//! for the rules).
//!
//! Three passes, so that a directory that cannot be opened is left exactly as it was:
//!
//! 1. each segment is read whole into one buffer and its records' framing is checked, which
//!    finds the torn tail, if any, and every damaged record;
//! 2. the intact records are decoded and applied, commands becoming slices of the buffers;
//! 3. only then is the torn tail cut off (or a last segment without an intact header removed),
//!    and the last segment and the directory synced.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::format::{self, Frame, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES, SegmentHeader};
use super::{io_error, segment_name, sync_dir};
use crate::{Recovered, StorageError};

/// How damage at the end of the last segment is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// When opening: damage at the end of the last segment is a torn tail, cut off.
    Repair,
    /// While the log is open and healthy: there can be no torn tail, so all damage is
    /// corruption, and nothing is changed.
    Strict,
}

/// The segments of `dir` in order: `(seq, path)`, `seq` counting up from 1.
pub(super) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StorageError> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error("list", dir))? {
        let entry = entry.map_err(io_error("list", dir))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".wal")) else {
            continue;
        };
        if stem.len() == 20
            && stem.bytes().all(|b| b.is_ascii_digit())
            && let Ok(seq) = stem.parse::<u64>()
        {
            segments.push((seq, entry.path()));
        }
    }
    segments.sort_unstable();
    for (expected, (seq, path)) in (1u64..).zip(&segments) {
        if *seq != expected {
            return Err(StorageError::Unreadable {
                path: path.clone(),
                reason: format!(
                    "segment {seq} where segment {expected} ({}) should be: segments count up \
                     from 1 without a gap",
                    segment_name(expected)
                ),
            });
        }
    }
    Ok(segments)
}

/// The last segment, after recovery, where the log goes on.
#[derive(Debug)]
pub(super) struct Tail {
    /// Its sequence number.
    pub(super) seq: u64,
    /// Its path.
    pub(super) path: PathBuf,
    /// Open for reading and writing.
    pub(super) file: File,
    /// Its length: where the next record goes.
    pub(super) len: u64,
    /// Whether it holds a record yet.
    pub(super) has_records: bool,
}

/// What a data directory's segments hold.
#[derive(Debug)]
pub(super) struct Log {
    /// The state they hold.
    pub(super) recovered: Recovered,
    /// The last segment (none if there is no segment, or in [`Mode::Strict`]).
    pub(super) tail: Option<Tail>,
}

/// One segment, read and framed.
struct Segment {
    seq: u64,
    path: PathBuf,
    buf: Vec<u8>,
    /// The intact records: offset of the record header, payload length.
    records: Vec<(usize, usize)>,
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

/// Reads the segments `paths` of `dir`, as [`list_segments`] gives them (see the module docs).
pub(super) fn recover(
    dir: &Path,
    paths: Vec<(u64, PathBuf)>,
    mode: Mode,
) -> Result<Log, StorageError> {
    let count = paths.len();
    let mut segments = Vec::with_capacity(count);
    let mut capacity = 0;
    for (i, (seq, path)) in paths.into_iter().enumerate() {
        let lenient = mode == Mode::Repair && i + 1 == count;
        let segment = frame(seq, path, lenient)?;
        capacity += segment
            .records
            .iter()
            .map(|&(pos, len)| count_bound(&segment.buf, pos, len))
            .sum::<usize>();
        segments.push(segment);
    }

    let mut recovered = Recovered {
        hard_state: Default::default(),
        snapshot: None,
        entries: Vec::with_capacity(capacity),
    };
    let mut segments: Vec<(Segment, Bytes)> = segments
        .into_iter()
        .map(|mut s| {
            let buf = Bytes::from(std::mem::take(&mut s.buf));
            (s, buf)
        })
        .collect();
    for (segment, bytes) in &segments {
        apply(segment, bytes, &mut recovered)?;
    }

    let mut tail = None;
    if mode == Mode::Repair {
        while let Some((segment, bytes)) = segments.pop() {
            match segment.repair {
                Some(Repair::Remove { reason }) => {
                    fs::remove_file(&segment.path).map_err(io_error("remove", &segment.path))?;
                    sync_dir(dir)?;
                    tracing::warn!(
                        file = %segment.path.display(),
                        bytes = bytes.len(),
                        "removed the last segment of the write-ahead log: {reason} and no \
                         intact record follows (a crash right after it was created)"
                    );
                }
                repair => {
                    let file = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(&segment.path)
                        .map_err(io_error("open", &segment.path))?;
                    let mut len = bytes.len();
                    if let Some(Repair::Truncate { offset, reason }) = repair {
                        file.set_len(offset as u64)
                            .map_err(io_error("truncate", &segment.path))?;
                        tracing::warn!(
                            file = %segment.path.display(),
                            offset,
                            dropped = len - offset,
                            "truncated the torn tail of the write-ahead log: {reason} and no \
                             intact record follows (a write cut short by a crash, never \
                             acknowledged)"
                        );
                        len = offset;
                    }
                    // Whatever a crashed process wrote but did not sync is about to be
                    // acted on: make it durable first (and the cut, if any).
                    file.sync_all().map_err(io_error("sync", &segment.path))?;
                    sync_dir(dir)?;
                    tail = Some(Tail {
                        seq: segment.seq,
                        path: segment.path,
                        file,
                        len: len as u64,
                        has_records: !segment.records.is_empty(),
                    });
                    break;
                }
            }
        }
    }
    Ok(Log { recovered, tail })
}

/// Reads the segment `seq` at `path` and checks its framing. `lenient`: it is the last segment
/// and damage at its end is a torn tail.
fn frame(seq: u64, path: PathBuf, lenient: bool) -> Result<Segment, StorageError> {
    let buf = read_whole(&path)?;
    let corrupt = |offset: usize, reason: String| StorageError::Corrupt {
        path: path.clone(),
        offset: offset as u64,
        reason,
    };
    match format::check_segment_header(&buf) {
        SegmentHeader::Valid => {}
        SegmentHeader::Version(version) => {
            return Err(StorageError::Unreadable {
                reason: format!(
                    "segment format version {version} (this version reads {})",
                    format::FORMAT_VERSION
                ),
                path,
            });
        }
        SegmentHeader::Damaged(reason) => {
            if !lenient {
                return Err(corrupt(0, reason.to_owned()));
            }
            if let Some(next) = format::find_intact(&buf, 0) {
                return Err(corrupt(
                    0,
                    format!("{reason}, and an intact record follows at offset {next}"),
                ));
            }
            return Ok(Segment {
                seq,
                path,
                buf,
                records: Vec::new(),
                repair: Some(Repair::Remove { reason }),
            });
        }
    }
    let mut records = Vec::new();
    let mut repair = None;
    let mut pos = SEGMENT_HEADER_BYTES;
    while pos < buf.len() {
        match format::frame_at(&buf, pos) {
            Frame::Intact { len } => {
                records.push((pos, len));
                pos += RECORD_HEADER_BYTES + len;
            }
            Frame::Damaged { reason, resume } => {
                if let Some(next) = format::find_intact(&buf, resume) {
                    return Err(corrupt(
                        pos,
                        format!("{reason}, and an intact record follows at offset {next}"),
                    ));
                }
                if !lenient {
                    return Err(corrupt(pos, reason.to_owned()));
                }
                repair = Some(Repair::Truncate {
                    offset: pos,
                    reason,
                });
                break;
            }
        }
    }
    Ok(Segment {
        seq,
        path,
        buf,
        records,
        repair,
    })
}

/// The whole file at `path`, in a buffer of exactly its size.
fn read_whole(path: &Path) -> Result<Vec<u8>, StorageError> {
    let mut file = File::open(path).map_err(io_error("open", path))?;
    let len = file.metadata().map_err(io_error("read", path))?.len();
    let len = usize::try_from(len).map_err(|_| {
        io_error("read", path)(io::Error::new(
            io::ErrorKind::FileTooLarge,
            "segment larger than memory",
        ))
    })?;
    let mut buf = Vec::new();
    buf.try_reserve_exact(len)
        .map_err(|e| io_error("read", path)(io::Error::new(io::ErrorKind::OutOfMemory, e)))?;
    file.read_to_end(&mut buf).map_err(io_error("read", path))?;
    Ok(buf)
}

/// An upper bound of the entries in the intact record at `pos`.
fn count_bound(buf: &[u8], pos: usize, len: usize) -> usize {
    let payload = &buf[pos + RECORD_HEADER_BYTES..pos + RECORD_HEADER_BYTES + len];
    format::parse_batch(payload).map_or(0, |batch| batch.count_bound(len))
}

/// Applies the intact records of `segment` (whose bytes are `bytes`) to `state`.
fn apply(segment: &Segment, bytes: &Bytes, state: &mut Recovered) -> Result<(), StorageError> {
    let corrupt = |offset: usize, reason: String| StorageError::Corrupt {
        path: segment.path.clone(),
        offset: offset as u64,
        reason,
    };
    for (i, &(pos, len)) in segment.records.iter().enumerate() {
        format::check_kind(bytes, pos).map_err(|reason| StorageError::Unreadable {
            path: segment.path.clone(),
            reason: format!("{reason} at offset {pos}"),
        })?;
        let at = pos + RECORD_HEADER_BYTES;
        let batch = format::parse_batch(&bytes[at..at + len]).map_err(|r| corrupt(pos, r))?;
        match batch.hard_state {
            Some(hard_state) => state.hard_state = hard_state,
            None if i == 0 => {
                return Err(corrupt(
                    pos,
                    "the first record of a segment carries no hard state".to_owned(),
                ));
            }
            None => {}
        }
        let mut keep = state.entries.len() as u64;
        if let Some(from) = batch.truncate_from {
            keep = keep.min(from.saturating_sub(1));
        }
        if batch.count > 0 {
            if batch.first_index == 0 || batch.first_index > keep + 1 {
                return Err(corrupt(
                    pos,
                    format!(
                        "entries at index {} would leave a gap after index {keep}",
                        batch.first_index
                    ),
                ));
            }
            keep = keep.min(batch.first_index - 1);
        }
        // `keep` is at most the number of entries, so it fits a usize.
        state.entries.truncate(keep as usize);
        batch
            .decode_entries(bytes, at, len, &mut state.entries)
            .map_err(|r| corrupt(pos, r))?;
    }
    Ok(())
}
