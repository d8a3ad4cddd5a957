//! The bytes of a segment: its header, record framing, the batch payload (see the parent
//! module's docs for the layout), and the rule that tells a write cut short by a crash from
//! damage ([`tail_damage`]). Nothing here touches a file.
//!
//! Everything that reads takes untrusted bytes and never panics on them: a bad length, count or
//! flag is reported, and every slice is bounds-checked first.
//!
//! Every checksum of a record in a segment of the current version starts from the segment's
//! sequence number and the record's offset ([`Framing::Positioned`]), so a record is valid at
//! its own place only: a byte-exact copy of one anywhere else (in a command, say) fails its
//! checksums, and a search for an intact record after a damaged one cannot stop on such a copy.

use bytes::Bytes;

use super::{ENTRY_HEADER_BYTES, HARD_STATE_BYTES, MAX_RECORD_BYTES};
use crate::{Entry, EntryKind, HardState};

/// The magic that opens every segment.
const SEGMENT_MAGIC: &[u8; 8] = b"ZRAFTWAL";
/// The segment format this version writes (and reads).
pub(super) const FORMAT_VERSION: u32 = 3;
/// The earlier segment format this version still reads, but never writes: checksums that do not
/// depend on where the record is, a segment's start record written with its first batch.
pub(super) const LEGACY_VERSION: u32 = 2;
/// Bytes of a disk sector: the unit that a power cut leaves either as it was or as it was being
/// written, never in part (see [`tail_damage`]).
pub(super) const SECTOR_BYTES: usize = 512;
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
pub(super) const START_BYTES: usize = 40;
/// The most bytes one write appends to a segment: a record of the largest size, after a start
/// record (a legacy segment's first write).
const MAX_WRITE_BYTES: usize = 2 * RECORD_HEADER_BYTES + START_BYTES + MAX_RECORD_BYTES as usize;
/// The largest log index the log stores (2^63 - 1), so that no index arithmetic overflows.
pub(super) const MAX_INDEX: u64 = u64::MAX >> 1;

/// The 16-byte header of a segment of format `version`.
pub(super) fn segment_header(version: u32) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut header = [0; SEGMENT_HEADER_BYTES];
    header[..8].copy_from_slice(SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&version.to_le_bytes());
    let crc = crc32c::crc32c(&header[..12]);
    header[12..].copy_from_slice(&crc.to_le_bytes());
    header
}

/// How the records of a segment are checksummed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Framing {
    /// The current format: every checksum of a record starts from the segment's sequence number
    /// and the record's offset in it.
    Positioned {
        /// The segment's sequence number.
        seq: u64,
    },
    /// [`LEGACY_VERSION`]: checksums of the record's bytes alone.
    Legacy,
}

impl Framing {
    /// The CRC32C state the checksums of the record at `pos` start from: that of `seq` and `pos`
    /// (both `u64`, little-endian), or nothing for a legacy segment.
    fn seed(self, pos: u64) -> u32 {
        match self {
            Self::Legacy => 0,
            Self::Positioned { seq } => {
                let mut bytes = [0; 16];
                bytes[..8].copy_from_slice(&seq.to_le_bytes());
                bytes[8..].copy_from_slice(&pos.to_le_bytes());
                crc32c::crc32c(&bytes)
            }
        }
    }
}

/// What a segment's first bytes say.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SegmentHeader {
    /// A header of a format version this version reads, its records framed so.
    Valid(Framing),
    /// An intact header of another format version.
    Version(u32),
    /// Too short, or not a header (wrong magic or checksum).
    Damaged(&'static str),
}

/// Checks the segment header at the start of `buf`, the segment with sequence number `seq`.
pub(super) fn check_segment_header(buf: &[u8], seq: u64) -> SegmentHeader {
    let Some(header) = buf.get(..SEGMENT_HEADER_BYTES) else {
        return SegmentHeader::Damaged("the segment header is cut short");
    };
    if crc32c::crc32c(&header[..12]) != read_u32(header, 12) || &header[..8] != SEGMENT_MAGIC {
        return SegmentHeader::Damaged("the segment header is damaged");
    }
    match read_u32(header, 8) {
        FORMAT_VERSION => SegmentHeader::Valid(Framing::Positioned { seq }),
        LEGACY_VERSION => SegmentHeader::Valid(Framing::Legacy),
        version => SegmentHeader::Version(version),
    }
}

/// Whether `buf`, the last segment, whose header is damaged ([`SegmentHeader::Damaged`]), is
/// what a crash while the segment was being created leaves: a prefix of a header, or zeros (a
/// sector that was never written, the file's length persisted), and nothing else. The header
/// and the start record are synced before anything else is written to a segment, so nothing
/// can follow them.
pub(super) fn torn_segment_header(buf: &[u8]) -> bool {
    let prefix_of =
        |version| buf.len() < SEGMENT_HEADER_BYTES && segment_header(version).starts_with(buf);
    buf.iter().all(|&b| b == 0) || prefix_of(FORMAT_VERSION) || prefix_of(LEGACY_VERSION)
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
    },
}

/// The payload length the record header at `pos` gives, if the header is whole and intact
/// (passes its checksum, and gives a length a record can have).
fn check_header(buf: &[u8], pos: usize, framing: Framing) -> Result<usize, &'static str> {
    let Some(header) = buf.get(pos..pos.saturating_add(RECORD_HEADER_BYTES)) else {
        return Err("the record header is cut short by the end of the file");
    };
    let seed = framing.seed(pos as u64);
    if crc32c::crc32c_append(seed, &header[..8]) != read_u32(header, 8) {
        return Err("the record header fails its checksum");
    }
    let len = read_u32(header, 0) as usize;
    if len as u64 > MAX_RECORD_BYTES {
        return Err("the record header gives a length above the largest record");
    }
    Ok(len)
}

/// Checks the record that should start at `pos` (`pos < buf.len()`) of a segment framed so.
pub(super) fn frame_at(buf: &[u8], pos: usize, framing: Framing) -> Frame {
    let len = match check_header(buf, pos, framing) {
        Ok(len) => len,
        Err(reason) => return Frame::Damaged { reason },
    };
    let start = pos + RECORD_HEADER_BYTES;
    let Some(payload) = buf.get(start..start + len) else {
        return Frame::Damaged {
            reason: "the record is cut short by the end of the file",
        };
    };
    // The header checksum is the CRC32C state after the seed and the header's first 8 bytes.
    let header_crc = read_u32(buf, pos + 8);
    if crc32c::crc32c_append(header_crc, payload) != read_u32(buf, pos + 12) {
        return Frame::Damaged {
            reason: "the record fails its checksum",
        };
    }
    Frame::Intact { len }
}

/// The first offset at or after `from` where an intact record starts, trying every byte.
///
/// The length is checked first (cheap, and it rules out most garbage), then the header
/// checksum, and only then the payload checksum, so the scan costs about one pass over
/// `buf[from..]`. In a segment of the current format, a record is intact only at the offset it
/// was written at, so a copy of a record inside another's payload is never found.
pub(super) fn find_intact(buf: &[u8], from: usize, framing: Framing) -> Option<usize> {
    let last = buf.len().checked_sub(RECORD_HEADER_BYTES)?;
    (from..=last).find(|&pos| {
        let len = read_u32(buf, pos) as usize;
        len as u64 <= MAX_RECORD_BYTES
            && len <= last - pos
            && matches!(frame_at(buf, pos, framing), Frame::Intact { .. })
    })
}

/// What damage at the end of the last segment is.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum TailDamage {
    /// The write under way when the machine or the process stopped, cut short: never
    /// acknowledged, to be cut off.
    Torn(&'static str),
    /// Anything else: data that was acknowledged may be lost.
    Corrupt(String),
}

/// Tells what the damaged record at `pos` of the last segment `buf` (the first damaged one) is.
///
/// Only the last write to a log can have been cut short by a crash: every write is synced
/// before the next one starts, and none after the last segment's. A write cut short leaves
/// either fewer bytes than were written (the file's length, if it persisted, ends inside the
/// write) or, where a sector of it never reached the disk but the length did, a sector of zeros
/// ([`SECTOR_BYTES`], aligned in the file). So the damaged record is torn only if
///
/// - the file ends inside its header, and the bytes there could start a header (or are zeros);
/// - its header is intact and the file ends inside its payload;
/// - its header is intact, the record ends where the file does, and the part of some sector
///   within it is all zeros;
/// - or its header is damaged, the part of a sector within the header (to the sector's end or
///   the file's) is all zeros, no intact record follows, and no more follows than one write.
///
/// Anything else is corruption: a record whose bytes are all there but fail the checksum (bit
/// rot, a misdirected write, a sector garbled while the next append rewrote it), bytes after a
/// complete record that are not a record, a damaged record that others follow.
///
/// A record that holds a sector of zeros of its own and is damaged elsewhere reads as torn: the
/// two cannot be told apart (etcd's write-ahead log draws the same line).
pub(super) fn tail_damage(buf: &[u8], pos: usize, framing: Framing) -> TailDamage {
    let rest = &buf[pos..];
    if rest.len() < RECORD_HEADER_BYTES {
        if plausible_header_prefix(rest) {
            return TailDamage::Torn("the record header is cut short by the end of the file");
        }
        return TailDamage::Corrupt(format!(
            "{} bytes after the last record, which no record header starts with",
            rest.len()
        ));
    }
    match check_header(buf, pos, framing) {
        Ok(len) => {
            let end = pos + RECORD_HEADER_BYTES + len;
            if end > buf.len() {
                TailDamage::Torn("the record is cut short by the end of the file")
            } else if end < buf.len() {
                TailDamage::Corrupt(format!(
                    "the record fails its checksum, and {} bytes follow it",
                    buf.len() - end
                ))
            } else if zeroed_sector(buf, pos, end) {
                TailDamage::Torn("the record holds a sector of zeros")
            } else {
                TailDamage::Corrupt(
                    "the record fails its checksum though all its bytes are there and none of \
                     its sectors is zeros (not a write cut short)"
                        .to_owned(),
                )
            }
        }
        Err(reason) => {
            if !zeroed_sector(buf, pos, pos + RECORD_HEADER_BYTES) {
                TailDamage::Corrupt(format!(
                    "{reason}, and it is not zeros (not a write cut short)"
                ))
            } else if rest.len() > MAX_WRITE_BYTES {
                TailDamage::Corrupt(format!(
                    "{reason}, and {} bytes follow, more than one write",
                    rest.len()
                ))
            } else if let Some(next) = find_intact(buf, pos + 1, framing) {
                TailDamage::Corrupt(format!(
                    "{reason}, and an intact record follows at offset {next}"
                ))
            } else {
                TailDamage::Torn("the record header is in a sector of zeros")
            }
        }
    }
}

/// Whether the part within `buf[from..to]` of some aligned sector, extended to the sector's end
/// or the end of `buf`, is all zeros (and not empty).
fn zeroed_sector(buf: &[u8], from: usize, to: usize) -> bool {
    let to = to.min(buf.len());
    if from >= to {
        return false;
    }
    (from / SECTOR_BYTES..=(to - 1) / SECTOR_BYTES).any(|sector| {
        let lo = from.max(sector * SECTOR_BYTES);
        let hi = buf.len().min((sector + 1) * SECTOR_BYTES);
        buf[lo..hi].iter().all(|&b| b == 0)
    })
}

/// Whether `bytes`, fewer than a record header, could be the start of one: zeros, or a length
/// a record can have, a known kind and zero reserved bytes, as far as they go.
fn plausible_header_prefix(bytes: &[u8]) -> bool {
    if bytes.iter().all(|&b| b == 0) {
        return true;
    }
    let len_ok = bytes.len() < 4 || u64::from(read_u32(bytes, 0)) <= MAX_RECORD_BYTES;
    let kind_ok = bytes
        .get(4)
        .is_none_or(|&kind| kind == KIND_BATCH || kind == KIND_START);
    let reserved_ok = bytes.iter().take(8).skip(5).all(|&b| b == 0);
    len_ok && kind_ok && reserved_ok
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

/// Where an encoded record goes: how its segment is framed, and the file offset of the buffer's
/// first byte.
#[derive(Clone, Copy, Debug)]
pub(super) struct Place {
    /// The segment's framing.
    pub(super) framing: Framing,
    /// The offset in the segment at which the buffer will be written.
    pub(super) base: u64,
}

/// Appends a record of `kind` to `buf`, which is to be written at `place`, its payload written
/// by `payload`.
fn encode_record(buf: &mut Vec<u8>, place: Place, kind: u8, payload: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0; RECORD_HEADER_BYTES]);
    payload(buf);
    let len = buf.len() - start - RECORD_HEADER_BYTES;
    debug_assert!(len as u64 <= MAX_RECORD_BYTES, "record of {len} bytes");
    let header = &mut buf[start..start + RECORD_HEADER_BYTES];
    header[..4].copy_from_slice(&(len as u32).to_le_bytes());
    header[4] = kind;
    let seed = place.framing.seed(place.base + start as u64);
    let header_crc = crc32c::crc32c_append(seed, &header[..8]);
    header[8..12].copy_from_slice(&header_crc.to_le_bytes());
    let crc = crc32c::crc32c_append(header_crc, &buf[start + RECORD_HEADER_BYTES..]);
    buf[start + 12..start + 16].copy_from_slice(&crc.to_le_bytes());
}

fn put_hard_state(buf: &mut Vec<u8>, hard_state: HardState) {
    buf.extend_from_slice(&hard_state.term.to_le_bytes());
    let vote = hard_state.voted_for.map_or(NO_VOTE, |v| v as u64);
    buf.extend_from_slice(&vote.to_le_bytes());
}

/// Appends a start record to `buf`, which is to be written at `place`.
pub(super) fn encode_start(buf: &mut Vec<u8>, place: Place, start: &Start) {
    encode_record(buf, place, KIND_START, |buf| {
        put_hard_state(buf, start.hard_state);
        let snapshot = start.snapshot.map_or((0, 0), |s| (s.index, s.term));
        buf.extend_from_slice(&snapshot.0.to_le_bytes());
        buf.extend_from_slice(&snapshot.1.to_le_bytes());
        buf.extend_from_slice(&start.last_index.to_le_bytes());
    });
}

/// Appends one batch record to `buf`, which is to be written at `place`.
///
/// The caller keeps the payload within [`MAX_RECORD_BYTES`] (see [`batch_payload_bytes`]).
pub(super) fn encode_batch(buf: &mut Vec<u8>, place: Place, head: &BatchHead, entries: &[Entry]) {
    encode_record(buf, place, KIND_BATCH, |buf| {
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
            // A record holds at most `MAX_RECORD_BYTES` (below 2^31), so segments written
            // before entries had kinds never set the kind's bit: their entries read as commands.
            buf.extend_from_slice(&entry.tagged_len().to_le_bytes());
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
            let (kind, len) = EntryKind::split_tagged_len(len);
            let start = at + ENTRY_HEADER_BYTES as usize;
            let end = start.saturating_add(len as usize);
            if end > payload.len() {
                return Err(format!("batch cut short in entry {i} of {}", self.count));
            }
            out.push(Entry {
                term,
                kind,
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
        Entry::new(term, Bytes::from_static(command))
    }

    /// The framings of segment 5 of either format.
    const FRAMINGS: [Framing; 2] = [Framing::Positioned { seq: 5 }, Framing::Legacy];

    /// A segment header of the format `framing` is of.
    fn header_for(framing: Framing) -> Vec<u8> {
        let version = match framing {
            Framing::Positioned { .. } => FORMAT_VERSION,
            Framing::Legacy => LEGACY_VERSION,
        };
        segment_header(version).to_vec()
    }

    /// Appends a batch of `entries` from `first_index` on to the segment `buf`.
    fn push_batch(buf: &mut Vec<u8>, framing: Framing, first_index: u64, entries: &[Entry]) {
        let head = BatchHead {
            hard_state: None,
            snapshot: None,
            truncate_from: None,
            first_index,
        };
        let place = Place { framing, base: 0 };
        encode_batch(buf, place, &head, entries);
    }

    #[test]
    fn entry_kinds_take_a_spare_bit_and_commands_encode_as_before() {
        let config = Entry {
            term: 4,
            kind: EntryKind::Config,
            command: Bytes::from_static(b"cfg"),
        };
        let entries = [entry(4, b"ab"), config, entry(4, b"")];
        let mut buf = header_for(FRAMINGS[0]);
        push_batch(&mut buf, FRAMINGS[0], 9, &entries);
        let at = SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES;
        // A command's bytes are what every build of format 3 wrote: term, length, command.
        let first = at + BATCH_FIXED_BYTES as usize;
        assert_eq!(&buf[first..first + 8], &4u64.to_le_bytes());
        assert_eq!(&buf[first + 8..first + 12], &2u32.to_le_bytes());
        assert_eq!(&buf[first + 12..first + 14], b"ab");
        // The configuration entry's length has its top bit set.
        let second = first + 14;
        assert_eq!(
            &buf[second + 8..second + 12],
            &(3u32 | 1 << 31).to_le_bytes()
        );
        let segment = Bytes::from(buf);
        let batch = parse_batch(&segment[at..]).unwrap();
        let mut out = Vec::new();
        batch
            .decode_entries(&segment, at, segment.len() - at, &mut out)
            .unwrap();
        assert_eq!(out, entries);
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
        for (case, framing) in FRAMINGS.into_iter().enumerate() {
            let mut buf = header_for(framing);
            assert_eq!(
                check_segment_header(&buf, 5),
                SegmentHeader::Valid(framing),
                "case {case}"
            );
            encode_batch(&mut buf, Place { framing, base: 0 }, &head, &entries);
            let len = buf.len() - SEGMENT_HEADER_BYTES - RECORD_HEADER_BYTES;
            assert_eq!(
                len as u64,
                batch_payload_bytes(true, true, true, crate::entries_size(&entries)),
                "case {case}"
            );
            assert_eq!(
                frame_at(&buf, SEGMENT_HEADER_BYTES, framing),
                Frame::Intact { len },
                "case {case}: the record is intact"
            );
            assert_eq!(check_kind(&buf, SEGMENT_HEADER_BYTES), Ok(Kind::Batch));
            let segment = Bytes::from(buf.clone());
            let at = SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES;
            let batch = parse_batch(&segment[at..]).unwrap();
            assert_eq!(batch.head, head, "case {case}");
            let mut out = Vec::new();
            batch.decode_entries(&segment, at, len, &mut out).unwrap();
            assert_eq!(out, entries, "case {case}");

            for i in SEGMENT_HEADER_BYTES..buf.len() {
                let mut damaged = buf.clone();
                damaged[i] ^= 0x10;
                assert!(
                    matches!(
                        frame_at(&damaged, SEGMENT_HEADER_BYTES, framing),
                        Frame::Damaged { .. }
                    ),
                    "case {case}: flipped byte {i}"
                );
                assert_eq!(
                    find_intact(&damaged, SEGMENT_HEADER_BYTES, framing),
                    None,
                    "case {case}: byte {i}"
                );
            }
            for cut in SEGMENT_HEADER_BYTES + 1..buf.len() {
                assert!(
                    matches!(
                        frame_at(&buf[..cut], SEGMENT_HEADER_BYTES, framing),
                        Frame::Damaged { .. }
                    ),
                    "case {case}: cut at {cut}"
                );
            }
            for i in 0..SEGMENT_HEADER_BYTES {
                let mut damaged = buf.clone();
                damaged[i] ^= 1;
                assert!(
                    !matches!(check_segment_header(&damaged, 5), SegmentHeader::Valid(_)),
                    "case {case}: header byte {i}"
                );
            }
        }
    }

    #[test]
    fn a_record_is_intact_only_where_it_was_written() {
        let framing = Framing::Positioned { seq: 5 };
        let mut buf = header_for(framing);
        push_batch(
            &mut buf,
            framing,
            1,
            &[entry(1, b"a vote's worth of bytes")],
        );
        let record = buf[SEGMENT_HEADER_BYTES..].to_vec();
        // A command holding a byte-exact copy of the record, with its checksums.
        let mut command = b"put k ".to_vec();
        command.extend_from_slice(&record);
        let second = buf.len();
        push_batch(&mut buf, framing, 2, &[Entry::new(1, Bytes::from(command))]);
        assert_eq!(
            find_intact(&buf, SEGMENT_HEADER_BYTES + 1, framing),
            Some(second),
            "only the second record itself"
        );
        assert_eq!(find_intact(&buf, second + 1, framing), None, "not the copy");
        // The copy is not intact at any offset, nor in another segment at the original one.
        for pos in SEGMENT_HEADER_BYTES + 1..buf.len() {
            assert!(
                !matches!(frame_at(&buf, pos, framing), Frame::Intact { .. }) || pos == second,
                "offset {pos}"
            );
        }
        let mut elsewhere = header_for(framing);
        elsewhere.extend_from_slice(&record);
        let other = Framing::Positioned { seq: 6 };
        assert!(matches!(
            frame_at(&elsewhere, SEGMENT_HEADER_BYTES, other),
            Frame::Damaged { .. }
        ));
        assert!(matches!(
            frame_at(&elsewhere, SEGMENT_HEADER_BYTES, framing),
            Frame::Intact { .. }
        ));

        // In a legacy segment the copy is intact where it lies: the reason for the new format.
        let mut legacy = header_for(Framing::Legacy);
        push_batch(&mut legacy, Framing::Legacy, 1, &[entry(1, b"x")]);
        let copy = legacy[SEGMENT_HEADER_BYTES..].to_vec();
        let mut command = b"put k ".to_vec();
        command.extend_from_slice(&copy);
        let second = legacy.len();
        push_batch(
            &mut legacy,
            Framing::Legacy,
            2,
            &[Entry::new(1, Bytes::from(command))],
        );
        assert!(
            find_intact(&legacy, second + 1, Framing::Legacy).is_some(),
            "a legacy segment cannot tell the copy from a record"
        );
    }

    /// A segment of the current format whose last record spans three sectors, and the offset of
    /// that record.
    fn segment_with_a_long_last_record() -> (Vec<u8>, usize) {
        let framing = Framing::Positioned { seq: 5 };
        let mut buf = header_for(framing);
        let place = Place { framing, base: 0 };
        encode_start(
            &mut buf,
            place,
            &Start {
                hard_state: HardState::default(),
                snapshot: None,
                last_index: 0,
            },
        );
        push_batch(&mut buf, framing, 1, &[entry(1, b"first")]);
        let last = buf.len();
        let command: Vec<u8> = (0..1200u32).map(|i| (i % 251) as u8 + 1).collect();
        push_batch(&mut buf, framing, 2, &[Entry::new(1, Bytes::from(command))]);
        assert!(buf.len() > 2 * SECTOR_BYTES && last < SECTOR_BYTES);
        (buf, last)
    }

    #[test]
    fn only_a_write_cut_short_is_a_torn_tail() {
        let framing = Framing::Positioned { seq: 5 };
        let (good, last) = segment_with_a_long_last_record();
        let len = good.len();
        let zero = |from: usize, to: usize| {
            let mut bytes = good.clone();
            bytes[from..to].fill(0);
            bytes
        };
        let flip = |at: usize| {
            let mut bytes = good.clone();
            bytes[at] ^= 0x08;
            bytes
        };
        let appended = |tail: &[u8]| [&good[..], tail].concat();
        // (case, the segment, torn)
        let cases: Vec<(&str, Vec<u8>, bool)> = vec![
            ("cut inside the header", good[..last + 7].to_vec(), true),
            ("cut inside the payload", good[..len - 100].to_vec(), true),
            ("cut one byte short", good[..len - 1].to_vec(), true),
            (
                "its second sector zeros",
                zero(SECTOR_BYTES, 2 * SECTOR_BYTES),
                true,
            ),
            (
                "its last sector's part zeros",
                zero(2 * SECTOR_BYTES, len),
                true,
            ),
            ("its header's sector zeros", zero(last, SECTOR_BYTES), true),
            ("a byte of its payload wrong", flip(last + 700), false),
            ("a byte of its header wrong", flip(last + 2), false),
            ("its last byte wrong", flip(len - 1), false),
            (
                "half its second sector zeros",
                zero(SECTOR_BYTES, SECTOR_BYTES + 256),
                false,
            ),
            ("zeros after it", appended(&[0; 600]), true),
            ("a zero byte after it", appended(&[0]), true),
            (
                "a header's first bytes after it",
                appended(&[5, 0, 0, 0, 1, 0]),
                true,
            ),
            ("0xff after it", appended(&[0xff; 40]), false),
            (
                "five bytes no header starts with",
                appended(&[9, 9, 9, 9, 9]),
                false,
            ),
            (
                "sixteen random bytes after it",
                appended(&[0x5a; 16]),
                false,
            ),
        ];
        for (case, (name, bytes, torn)) in cases.iter().enumerate() {
            let pos = if bytes.len() > len && bytes.starts_with(&good) {
                len
            } else {
                last
            };
            assert!(
                !matches!(frame_at(bytes, pos, framing), Frame::Intact { .. }),
                "case {case} ({name}): damaged"
            );
            let found = tail_damage(bytes, pos, framing);
            assert_eq!(
                matches!(found, TailDamage::Torn(_)),
                *torn,
                "case {case} ({name}): {found:?}"
            );
        }

        // A torn record with bytes after it, or an intact record after a zeroed header, is
        // acknowledged data after damage.
        let mut more = good.clone();
        more[SECTOR_BYTES..2 * SECTOR_BYTES].fill(0);
        let end = more.len();
        let mut record = Vec::new();
        let head = BatchHead {
            hard_state: None,
            snapshot: None,
            truncate_from: None,
            first_index: 3,
        };
        let place = Place {
            framing,
            base: end as u64,
        };
        encode_batch(&mut record, place, &head, &[entry(1, b"after")]);
        more.extend_from_slice(&record);
        assert!(matches!(
            frame_at(&more, end, framing),
            Frame::Intact { .. }
        ));
        assert!(matches!(
            tail_damage(&more, last, framing),
            TailDamage::Corrupt(_)
        ));
        let mut more = good.clone();
        more[last..SECTOR_BYTES].fill(0);
        more.truncate(end);
        more.extend_from_slice(&record);
        match tail_damage(&more, last, framing) {
            TailDamage::Corrupt(reason) => {
                assert!(
                    reason.contains(&format!("follows at offset {end}")),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_last_segment_header_is_torn_only_if_cut_short_or_zeros() {
        let header = segment_header(FORMAT_VERSION);
        let legacy = segment_header(LEGACY_VERSION);
        let cases: [(&[u8], bool); 7] = [
            (&[], true),
            (&header[..9], true),
            (&legacy[..15], true),
            (&[0; 700], true),
            (&[0x5a; 9], false),
            (&[&[0u8; 16][..], &[1]].concat(), false),
            (&[&header[..10], &[0; 6]].concat(), false),
        ];
        for (case, (bytes, torn)) in cases.iter().enumerate() {
            assert!(
                !matches!(check_segment_header(bytes, 1), SegmentHeader::Valid(_)),
                "case {case}"
            );
            assert_eq!(torn_segment_header(bytes), *torn, "case {case}");
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
            let framing = Framing::Positioned { seq: 1 };
            encode_start(&mut buf, Place { framing, base: 0 }, start);
            assert_eq!(check_kind(&buf, 0), Ok(Kind::Start), "case {case}");
            assert_eq!(
                frame_at(&buf, 0, framing),
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
