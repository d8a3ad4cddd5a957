//! The bytes of a segment: its header, record framing, and the batch payload (see the parent
//! module's docs for the layout). Nothing here touches a file.
//!
//! Everything that reads takes untrusted bytes and never panics on them: a bad length, count or
//! flag is reported, and every slice is bounds-checked first.

use bytes::Bytes;

use super::{ENTRY_HEADER_BYTES, HARD_STATE_BYTES, MAX_RECORD_BYTES};
use crate::{Entry, HardState};

/// The magic that opens every segment.
const SEGMENT_MAGIC: &[u8; 8] = b"ZRAFTWAL";
/// The segment format this version writes and reads.
pub(super) const FORMAT_VERSION: u32 = 2;
/// Bytes of the segment header.
pub(super) const SEGMENT_HEADER_BYTES: usize = 16;
/// Bytes of a record header.
pub(super) const RECORD_HEADER_BYTES: usize = 16;
/// Record kind: one [`crate::Update`] or part of one.
const KIND_BATCH: u8 = 1;
/// Record kind: the state a segment starts from (its first record, and only that).
const KIND_START: u8 = 2;
/// Batch flag: a hard state follows.
const FLAG_HARD_STATE: u8 = 1;
/// Batch flag: a truncation follows.
const FLAG_TRUNCATE: u8 = 2;
/// Batch flag: a snapshot reference follows.
const FLAG_SNAPSHOT: u8 = 4;
/// `voted_for` of a hard state without a vote.
const NO_VOTE: u64 = u64::MAX;
/// Bytes of a batch payload before its entries, without hard state, snapshot or truncation:
/// flags, `first_index`, `count`.
pub(super) const BATCH_FIXED_BYTES: u64 = 1 + 8 + 4;
/// Bytes of a truncation in a batch payload.
pub(super) const TRUNCATE_BYTES: u64 = 8;
/// Bytes of a snapshot reference in a batch payload: `index`, `term`.
pub(super) const SNAPSHOT_REF_BYTES: u64 = 16;
/// Bytes of a start record's payload: hard state, snapshot reference, `last_index`.
const START_BYTES: usize = 40;
/// The largest log index the log stores (2^63 - 1), so that no index arithmetic overflows.
pub(super) const MAX_INDEX: u64 = u64::MAX >> 1;

/// The 16-byte header of a new segment.
pub(super) fn segment_header() -> [u8; SEGMENT_HEADER_BYTES] {
    let mut header = [0; SEGMENT_HEADER_BYTES];
    header[..8].copy_from_slice(SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    let crc = crc32c::crc32c(&header[..12]);
    header[12..].copy_from_slice(&crc.to_le_bytes());
    header
}

/// What a segment's first bytes say.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SegmentHeader {
    /// A header of this format version.
    Valid,
    /// An intact header of another format version.
    Version(u32),
    /// Too short, or not a header (wrong magic or checksum).
    Damaged(&'static str),
}

/// Checks the segment header at the start of `buf`.
pub(super) fn check_segment_header(buf: &[u8]) -> SegmentHeader {
    let Some(header) = buf.get(..SEGMENT_HEADER_BYTES) else {
        return SegmentHeader::Damaged("the segment header is cut short");
    };
    if crc32c::crc32c(&header[..12]) != read_u32(header, 12) || &header[..8] != SEGMENT_MAGIC {
        return SegmentHeader::Damaged("the segment header is damaged");
    }
    match read_u32(header, 8) {
        FORMAT_VERSION => SegmentHeader::Valid,
        version => SegmentHeader::Version(version),
    }
}

/// What is at a record boundary.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Frame {
    /// A record whose header and payload pass their checksums; its payload is
    /// `buf[pos + 16..pos + 16 + len]`.
    Intact {
        /// Payload length.
        len: usize,
    },
    /// Anything else.
    Damaged {
        /// What is wrong.
        reason: &'static str,
        /// Where an intact record could start after this one: the end of this record if its
        /// header is intact (its length can be trusted), one past `pos` otherwise.
        resume: usize,
    },
}

/// Checks the record that should start at `pos` (`pos < buf.len()`).
pub(super) fn frame_at(buf: &[u8], pos: usize) -> Frame {
    let Some(header) = buf.get(pos..pos.saturating_add(RECORD_HEADER_BYTES)) else {
        return Frame::Damaged {
            reason: "the record header is cut short",
            resume: buf.len(),
        };
    };
    if crc32c::crc32c(&header[..8]) != read_u32(header, 8) {
        return Frame::Damaged {
            reason: "the record header fails its checksum",
            resume: pos + 1,
        };
    }
    let len = read_u32(header, 0) as usize;
    if len as u64 > MAX_RECORD_BYTES {
        return Frame::Damaged {
            reason: "the record header gives a length above the largest record",
            resume: pos + 1,
        };
    }
    let start = pos + RECORD_HEADER_BYTES;
    let Some(payload) = buf.get(start..start + len) else {
        // The header is intact, so the record really extends past the end of the file: nothing
        // after `pos` can be another record.
        return Frame::Damaged {
            reason: "the record is cut short by the end of the file",
            resume: buf.len(),
        };
    };
    if crc32c::crc32c_append(crc32c::crc32c(&header[..8]), payload) != read_u32(header, 12) {
        return Frame::Damaged {
            reason: "the record fails its checksum",
            resume: start + len,
        };
    }
    Frame::Intact { len }
}

/// The first offset at or after `from` where an intact record starts, trying every byte.
///
/// The length is checked first (cheap, and it rules out most garbage), then the header
/// checksum, and only then the payload checksum, so the scan costs about one pass over
/// `buf[from..]`.
pub(super) fn find_intact(buf: &[u8], from: usize) -> Option<usize> {
    let last = buf.len().checked_sub(RECORD_HEADER_BYTES)?;
    (from..=last).find(|&pos| {
        let len = read_u32(buf, pos) as usize;
        len as u64 <= MAX_RECORD_BYTES
            && len <= last - pos
            && matches!(frame_at(buf, pos), Frame::Intact { .. })
    })
}

/// The kinds of record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// One update or part of one: [`parse_batch`].
    Batch,
    /// The state a segment starts from: [`parse_start`].
    Start,
}

/// The kind of the intact record at `pos`: `Err` if this version cannot read it (an unknown
/// kind, reserved bytes set).
pub(super) fn check_kind(buf: &[u8], pos: usize) -> Result<Kind, String> {
    let kind = match buf[pos + 4] {
        KIND_BATCH => Kind::Batch,
        KIND_START => Kind::Start,
        kind => return Err(format!("record of unknown kind {kind}")),
    };
    if buf[pos + 5..pos + 8] != [0; 3] {
        return Err("record with reserved bytes set".to_owned());
    }
    Ok(kind)
}

/// A reference from the log to a snapshot file: the snapshot is now the one at `index`, whose
/// entry had `term`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SnapshotRef {
    /// The last index the snapshot covers; above 0.
    pub(super) index: u64,
    /// The term of the entry at `index`.
    pub(super) term: u64,
}

/// What a start record says: the state of the log just before the segment's first batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Start {
    /// The hard state.
    pub(super) hard_state: HardState,
    /// The snapshot, if any.
    pub(super) snapshot: Option<SnapshotRef>,
    /// The index of the last entry (the snapshot's, or 0, if none follows it).
    pub(super) last_index: u64,
}

/// The parts of a batch before its entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct BatchHead {
    /// A new hard state.
    pub(super) hard_state: Option<HardState>,
    /// A newer snapshot.
    pub(super) snapshot: Option<SnapshotRef>,
    /// Drop stored entries from this index on.
    pub(super) truncate_from: Option<u64>,
    /// Index of the first entry.
    pub(super) first_index: u64,
}

/// Appends a record of `kind` to `buf`, its payload written by `payload`.
fn encode_record(buf: &mut Vec<u8>, kind: u8, payload: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0; RECORD_HEADER_BYTES]);
    payload(buf);
    let len = buf.len() - start - RECORD_HEADER_BYTES;
    debug_assert!(len as u64 <= MAX_RECORD_BYTES, "record of {len} bytes");
    let header = &mut buf[start..start + RECORD_HEADER_BYTES];
    header[..4].copy_from_slice(&(len as u32).to_le_bytes());
    header[4] = kind;
    let header_crc = crc32c::crc32c(&header[..8]);
    header[8..12].copy_from_slice(&header_crc.to_le_bytes());
    let crc = crc32c::crc32c_append(header_crc, &buf[start + RECORD_HEADER_BYTES..]);
    buf[start + 12..start + 16].copy_from_slice(&crc.to_le_bytes());
}

fn put_hard_state(buf: &mut Vec<u8>, hard_state: HardState) {
    buf.extend_from_slice(&hard_state.term.to_le_bytes());
    let vote = hard_state.voted_for.map_or(NO_VOTE, |v| v as u64);
    buf.extend_from_slice(&vote.to_le_bytes());
}

/// Appends a start record to `buf`.
pub(super) fn encode_start(buf: &mut Vec<u8>, start: &Start) {
    encode_record(buf, KIND_START, |buf| {
        put_hard_state(buf, start.hard_state);
        let snapshot = start.snapshot.map_or((0, 0), |s| (s.index, s.term));
        buf.extend_from_slice(&snapshot.0.to_le_bytes());
        buf.extend_from_slice(&snapshot.1.to_le_bytes());
        buf.extend_from_slice(&start.last_index.to_le_bytes());
    });
}

/// Appends one batch record to `buf`.
///
/// The caller keeps the payload within [`MAX_RECORD_BYTES`] (see [`batch_payload_bytes`]).
pub(super) fn encode_batch(buf: &mut Vec<u8>, head: &BatchHead, entries: &[Entry]) {
    encode_record(buf, KIND_BATCH, |buf| {
        let mut flags = 0;
        if head.hard_state.is_some() {
            flags |= FLAG_HARD_STATE;
        }
        if head.truncate_from.is_some() {
            flags |= FLAG_TRUNCATE;
        }
        if head.snapshot.is_some() {
            flags |= FLAG_SNAPSHOT;
        }
        buf.push(flags);
        if let Some(hard_state) = head.hard_state {
            put_hard_state(buf, hard_state);
        }
        if let Some(snapshot) = head.snapshot {
            buf.extend_from_slice(&snapshot.index.to_le_bytes());
            buf.extend_from_slice(&snapshot.term.to_le_bytes());
        }
        if let Some(from) = head.truncate_from {
            buf.extend_from_slice(&from.to_le_bytes());
        }
        buf.extend_from_slice(&head.first_index.to_le_bytes());
        buf.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for entry in entries {
            buf.extend_from_slice(&entry.term.to_le_bytes());
            buf.extend_from_slice(&(entry.command.len() as u32).to_le_bytes());
            buf.extend_from_slice(&entry.command);
        }
    });
}

/// The payload size of a batch record with these parts and entries of `entry_bytes` bytes
/// (framing included).
pub(super) fn batch_payload_bytes(
    hard_state: bool,
    snapshot: bool,
    truncate: bool,
    entry_bytes: u64,
) -> u64 {
    BATCH_FIXED_BYTES
        + if hard_state { HARD_STATE_BYTES } else { 0 }
        + if snapshot { SNAPSHOT_REF_BYTES } else { 0 }
        + if truncate { TRUNCATE_BYTES } else { 0 }
        + entry_bytes
}

/// Parses a hard state at `at` of `payload`, if it holds one.
fn get_hard_state(payload: &[u8], at: usize) -> Result<Option<HardState>, String> {
    let (Some(term), Some(vote)) = (get_u64(payload, at), get_u64(payload, at + 8)) else {
        return Ok(None);
    };
    let voted_for = match vote {
        NO_VOTE => None,
        v => Some(usize::try_from(v).map_err(|_| format!("vote for node {v}"))?),
    };
    Ok(Some(HardState { term, voted_for }))
}

/// Parses a start record's payload.
pub(super) fn parse_start(payload: &[u8]) -> Result<Start, String> {
    if payload.len() != START_BYTES {
        return Err(format!(
            "start record of {} bytes, not {START_BYTES}",
            payload.len()
        ));
    }
    let hard_state = get_hard_state(payload, 0)?.ok_or("start record cut short")?;
    let index = read_u64(payload, 16);
    let term = read_u64(payload, 24);
    let last_index = read_u64(payload, 32);
    let snapshot = match (index, term) {
        (0, 0) => None,
        (0, term) => {
            return Err(format!(
                "start record with a snapshot of term {term} at index 0"
            ));
        }
        (index, term) => Some(SnapshotRef { index, term }),
    };
    if last_index < index || last_index > MAX_INDEX {
        return Err(format!(
            "start record with its last index {last_index} below its snapshot's {index} or \
             above {MAX_INDEX}"
        ));
    }
    Ok(Start {
        hard_state,
        snapshot,
        last_index,
    })
}

/// A batch payload, parsed up to its entries.
#[derive(Debug)]
pub(super) struct Batch {
    /// Its parts before the entries.
    pub(super) head: BatchHead,
    /// Number of entries.
    pub(super) count: u32,
    /// Offset of the first entry in the payload.
    entries_at: usize,
}

/// Parses the fixed part of a batch payload.
pub(super) fn parse_batch(payload: &[u8]) -> Result<Batch, String> {
    let mut at = 0;
    let flags = *payload.first().ok_or("empty batch")?;
    at += 1;
    if flags & !(FLAG_HARD_STATE | FLAG_TRUNCATE | FLAG_SNAPSHOT) != 0 {
        return Err(format!("batch with unknown flags {flags:#04x}"));
    }
    let short = || "batch cut short before its entries".to_owned();
    let hard_state = if flags & FLAG_HARD_STATE != 0 {
        at += 16;
        Some(get_hard_state(payload, at - 16)?.ok_or_else(short)?)
    } else {
        None
    };
    let snapshot = if flags & FLAG_SNAPSHOT != 0 {
        let index = get_u64(payload, at).ok_or_else(short)?;
        let term = get_u64(payload, at + 8).ok_or_else(short)?;
        at += 16;
        if index == 0 || index > MAX_INDEX {
            return Err(format!("batch with a snapshot at index {index}"));
        }
        Some(SnapshotRef { index, term })
    } else {
        None
    };
    let truncate_from = if flags & FLAG_TRUNCATE != 0 {
        at += 8;
        Some(get_u64(payload, at - 8).ok_or_else(short)?)
    } else {
        None
    };
    let first_index = get_u64(payload, at).ok_or_else(short)?;
    let count = get_u32(payload, at + 8).ok_or_else(short)?;
    Ok(Batch {
        head: BatchHead {
            hard_state,
            snapshot,
            truncate_from,
            first_index,
        },
        count,
        entries_at: at + 12,
    })
}

impl Batch {
    /// An upper bound of the entries in a payload of `len` bytes, whatever its count says.
    pub(super) fn count_bound(&self, len: usize) -> usize {
        (self.count as usize).min(len / ENTRY_HEADER_BYTES as usize)
    }

    /// Appends the batch's entries to `out`; their commands are slices of `segment`, whose
    /// bytes `payload_at..payload_at + payload_len` are the payload this batch was parsed from.
    pub(super) fn decode_entries(
        &self,
        segment: &Bytes,
        payload_at: usize,
        payload_len: usize,
        out: &mut Vec<Entry>,
    ) -> Result<(), String> {
        let payload = &segment[payload_at..payload_at + payload_len];
        let mut at = self.entries_at;
        for i in 0..self.count {
            let (Some(term), Some(len)) = (get_u64(payload, at), get_u32(payload, at + 8)) else {
                return Err(format!("batch cut short in entry {i} of {}", self.count));
            };
            let start = at + ENTRY_HEADER_BYTES as usize;
            let end = start.saturating_add(len as usize);
            if end > payload.len() {
                return Err(format!("batch cut short in entry {i} of {}", self.count));
            }
            out.push(Entry {
                term,
                command: segment.slice(payload_at + start..payload_at + end),
            });
            at = end;
        }
        if at != payload.len() {
            return Err(format!(
                "{} bytes after the last of {} entries",
                payload.len() - at,
                self.count
            ));
        }
        Ok(())
    }
}

/// The little-endian `u32` at `at` of a slice known to hold it.
pub(super) fn read_u32(buf: &[u8], at: usize) -> u32 {
    get_u32(buf, at).unwrap_or(0)
}

/// The little-endian `u64` at `at` of a slice known to hold it.
pub(super) fn read_u64(buf: &[u8], at: usize) -> u64 {
    get_u64(buf, at).unwrap_or(0)
}

fn get_u32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

fn get_u64(buf: &[u8], at: usize) -> Option<u64> {
    let bytes = buf.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(term: u64, command: &'static [u8]) -> Entry {
        Entry {
            term,
            command: Bytes::from_static(command),
        }
    }

    #[test]
    fn a_batch_round_trips_and_every_damage_is_seen() {
        let hard_state = HardState {
            term: 7,
            voted_for: Some(2),
        };
        let entries = [entry(6, b"abc"), entry(7, b""), entry(7, b"xyz!")];
        let head = BatchHead {
            hard_state: Some(hard_state),
            snapshot: Some(SnapshotRef { index: 2, term: 5 }),
            truncate_from: Some(3),
            first_index: 3,
        };
        let mut buf = segment_header().to_vec();
        assert_eq!(check_segment_header(&buf), SegmentHeader::Valid);
        encode_batch(&mut buf, &head, &entries);
        let len = buf.len() - SEGMENT_HEADER_BYTES - RECORD_HEADER_BYTES;
        assert_eq!(
            len as u64,
            batch_payload_bytes(true, true, true, crate::entries_size(&entries))
        );
        assert_eq!(
            frame_at(&buf, SEGMENT_HEADER_BYTES),
            Frame::Intact { len },
            "the record is intact"
        );
        assert_eq!(check_kind(&buf, SEGMENT_HEADER_BYTES), Ok(Kind::Batch));
        let segment = Bytes::from(buf.clone());
        let at = SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES;
        let batch = parse_batch(&segment[at..]).unwrap();
        assert_eq!(batch.head, head);
        let mut out = Vec::new();
        batch.decode_entries(&segment, at, len, &mut out).unwrap();
        assert_eq!(out, entries);

        for i in SEGMENT_HEADER_BYTES..buf.len() {
            let mut damaged = buf.clone();
            damaged[i] ^= 0x10;
            assert!(
                matches!(
                    frame_at(&damaged, SEGMENT_HEADER_BYTES),
                    Frame::Damaged { .. }
                ),
                "flipped byte {i}"
            );
            assert_eq!(
                find_intact(&damaged, SEGMENT_HEADER_BYTES),
                None,
                "byte {i}"
            );
        }
        for cut in SEGMENT_HEADER_BYTES + 1..buf.len() {
            assert!(
                matches!(
                    frame_at(&buf[..cut], SEGMENT_HEADER_BYTES),
                    Frame::Damaged { .. }
                ),
                "cut at {cut}"
            );
        }
        for i in 0..SEGMENT_HEADER_BYTES {
            let mut damaged = buf.clone();
            damaged[i] ^= 1;
            assert_ne!(check_segment_header(&damaged), SegmentHeader::Valid, "{i}");
        }
    }

    #[test]
    fn malformed_payloads_are_errors() {
        let cases: [&[u8]; 7] = [
            &[],
            &[8],
            // A snapshot flag, then too little.
            &[4, 1, 0, 0, 0, 0, 0, 0, 0],
            // A snapshot at index 0.
            &[
                4, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                0,
            ],
            &[0, 1, 0, 0, 0, 0, 0, 0, 0],
            // first_index 1, count 1, then nothing.
            &[0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],
            // One entry whose length runs past the payload.
            &[
                0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0,
            ],
        ];
        for (case, payload) in cases.iter().enumerate() {
            let segment = Bytes::copy_from_slice(payload);
            let parsed = parse_batch(payload).and_then(|batch| {
                batch.decode_entries(&segment, 0, payload.len(), &mut Vec::new())
            });
            assert!(parsed.is_err(), "case {case}");
        }
    }

    #[test]
    fn a_start_record_round_trips() {
        let starts = [
            Start {
                hard_state: HardState::default(),
                snapshot: None,
                last_index: 0,
            },
            Start {
                hard_state: HardState {
                    term: 9,
                    voted_for: Some(4),
                },
                snapshot: Some(SnapshotRef { index: 40, term: 8 }),
                last_index: 52,
            },
        ];
        for (case, start) in starts.iter().enumerate() {
            let mut buf = Vec::new();
            encode_start(&mut buf, start);
            assert_eq!(check_kind(&buf, 0), Ok(Kind::Start), "case {case}");
            assert_eq!(
                frame_at(&buf, 0),
                Frame::Intact { len: START_BYTES },
                "case {case}"
            );
            assert_eq!(
                parse_start(&buf[RECORD_HEADER_BYTES..]),
                Ok(*start),
                "case {case}"
            );
        }
        // Malformed: cut short, a snapshot at index 0, a last index below the snapshot's.
        let mut payload = [0u8; START_BYTES];
        assert!(parse_start(&payload[..39]).is_err());
        payload[24] = 1;
        assert!(parse_start(&payload).is_err());
        payload[16] = 5;
        payload[32] = 4;
        assert!(parse_start(&payload).is_err());
        payload[32] = 5;
        assert!(parse_start(&payload).is_ok());
    }
}
