//! The segment format: a log written in the previous format version is read, and goes on in the
//! current one; a record is valid only where it was written, so a byte-exact copy of one inside
//! a command is never taken for a record, not even by the search for records after a damaged
//! header.

use std::fs;
use std::path::Path;

use crate::common::{
    Op, Ops, Pair, assert_recovers, capture_warnings, copy_dir, entries, last_segment, len, open,
    segments,
};
use zeroraft_storage::{Entry, HardState, MemStorage, Storage, StorageError};

const BIG: u64 = 1 << 20;
/// Bytes of a sector.
const SECTOR: u64 = 512;

/// A record of the previous format (version 2): checksums of its bytes alone.
fn legacy_record(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut record = Vec::new();
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    record.extend_from_slice(&[kind, 0, 0, 0]);
    let header_crc = crc32c::crc32c(&record[..8]);
    record.extend_from_slice(&header_crc.to_le_bytes());
    let crc = crc32c::crc32c_append(header_crc, payload);
    record.extend_from_slice(&crc.to_le_bytes());
    record.extend_from_slice(payload);
    record
}

/// A start record of the previous format: the hard state, no snapshot, the last index.
fn legacy_start(hard_state: HardState, last_index: u64) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&hard_state.term.to_le_bytes());
    let vote = hard_state.voted_for.map_or(u64::MAX, |v| v as u64);
    payload.extend_from_slice(&vote.to_le_bytes());
    payload.extend_from_slice(&[0; 16]);
    payload.extend_from_slice(&last_index.to_le_bytes());
    legacy_record(2, &payload)
}

/// A batch record of the previous format: a hard state, if any, and `entries` from `first` on.
fn legacy_batch(hard_state: Option<HardState>, first: u64, entries: &[Entry]) -> Vec<u8> {
    let mut payload = vec![u8::from(hard_state.is_some())];
    if let Some(hard_state) = hard_state {
        payload.extend_from_slice(&hard_state.term.to_le_bytes());
        let vote = hard_state.voted_for.map_or(u64::MAX, |v| v as u64);
        payload.extend_from_slice(&vote.to_le_bytes());
    }
    payload.extend_from_slice(&first.to_le_bytes());
    payload.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for entry in entries {
        payload.extend_from_slice(&entry.term.to_le_bytes());
        payload.extend_from_slice(&(entry.command.len() as u32).to_le_bytes());
        payload.extend_from_slice(&entry.command);
    }
    legacy_record(1, &payload)
}

/// A segment of the previous format holding `records`.
fn legacy_segment(records: &[Vec<u8>]) -> Vec<u8> {
    let mut segment = b"ZRAFTWAL".to_vec();
    segment.extend_from_slice(&2u32.to_le_bytes());
    let crc = crc32c::crc32c(&segment);
    segment.extend_from_slice(&crc.to_le_bytes());
    for record in records {
        segment.extend_from_slice(record);
    }
    segment
}

/// The format version of the segment at `path`.
fn version(path: &Path) -> u32 {
    let bytes = fs::read(path).unwrap();
    u32::from_le_bytes(bytes[8..12].try_into().unwrap())
}

/// An initialized directory whose log is `files` (name, contents) of the previous format.
fn legacy_log(files: &[(&str, Vec<u8>)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path(), BIG).unwrap());
    for path in segments(dir.path()) {
        fs::remove_file(path).unwrap();
    }
    for (name, bytes) in files {
        fs::write(dir.path().join(name), bytes).unwrap();
    }
    dir
}

#[test]
fn a_log_of_the_previous_format_is_read_and_goes_on_in_the_current_one() {
    let vote = HardState {
        term: 3,
        voted_for: Some(1),
    };
    let first = entries(2, 1, 4, 30);
    let second = entries(3, 5, 3, 30);
    let mut model = MemStorage::new();
    let ops = [
        Op {
            hard_state: Some(vote),
            ..Op::append(0, first.clone())
        },
        Op::append(4, second.clone()),
    ];
    for op in &ops {
        model.persist(&op.update()).unwrap();
    }
    let one = legacy_segment(&[
        legacy_start(HardState::default(), 0),
        legacy_batch(Some(vote), 1, &first),
    ]);
    let two = legacy_segment(&[legacy_start(vote, 4), legacy_batch(None, 5, &second)]);
    let dir = legacy_log(&[
        ("00000000000000000001.wal", one.clone()),
        ("00000000000000000002.wal", two.clone()),
    ]);
    let mut storage = open(dir.path(), BIG).unwrap();
    assert_recovers(
        &mut storage,
        &model.recover().unwrap(),
        "the previous format",
    );
    // The last segment of the previous format is never written to again.
    let third = segments(dir.path())[2].clone();
    assert_eq!(version(&third), 3);
    let more = Op::append(7, entries(3, 8, 2, 30));
    model.persist(&more.update()).unwrap();
    storage.persist(&more.update()).unwrap();
    drop(storage);
    assert_eq!(
        fs::read(dir.path().join("00000000000000000002.wal")).unwrap(),
        two
    );
    assert_eq!(version(&third), 3);
    let mut storage = open(dir.path(), BIG).unwrap();
    assert_recovers(
        &mut storage,
        &model.recover().unwrap(),
        "then the current format",
    );
    drop(storage);

    // A last segment of the previous format cut short in its last record: a torn tail.
    let cut = legacy_log(&[
        ("00000000000000000001.wal", one.clone()),
        ("00000000000000000002.wal", two[..two.len() - 7].to_vec()),
    ]);
    let (storage, warnings) = capture_warnings(|| open(cut.path(), BIG));
    let mut expected = MemStorage::new();
    expected.persist(&ops[0].update()).unwrap();
    assert_recovers(&mut storage.unwrap(), &expected.recover().unwrap(), "torn");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("torn tail"), "{warnings:?}");

    // One that holds a header alone (created just before a crash) is made again as version 3.
    let empty = legacy_log(&[
        ("00000000000000000001.wal", one),
        ("00000000000000000002.wal", legacy_segment(&[])),
    ]);
    let mut storage = open(empty.path(), BIG).unwrap();
    assert_recovers(&mut storage, &expected.recover().unwrap(), "header alone");
    assert_eq!(segments(empty.path()).len(), 2);
    assert_eq!(version(&last_segment(empty.path())), 3);
    storage.persist(&ops[1].update()).unwrap();
    expected.persist(&ops[1].update()).unwrap();
    drop(storage);
    let mut storage = open(empty.path(), BIG).unwrap();
    assert_recovers(
        &mut storage,
        &expected.recover().unwrap(),
        "header alone, then written to",
    );
}

#[test]
fn a_command_holding_a_copy_of_a_record_is_never_taken_for_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut pair = Pair::new(dir.path(), BIG);
    let at = len(&last_segment(dir.path()));
    pair.persist(&Op::vote(4, Some(2)));
    let vote = fs::read(last_segment(dir.path())).unwrap()[at as usize..].to_vec();
    let before = pair.model.recover().unwrap();
    // A client's command that holds the vote's record, byte for byte, checksums included, in
    // the sector after the one its own record starts in.
    let start = len(&last_segment(dir.path()));
    let mut command = vec![b'x'; SECTOR as usize];
    command.extend_from_slice(&vote);
    pair.persist(&Op::append(0, vec![Entry::new(4, command.into())]));
    let end = len(&last_segment(dir.path()));
    pair.reopen(BIG, "the copy is a command");

    // A power cut lost the sector holding the command's record header: the copy after it is
    // not a record, so this is a torn tail (in the previous format, where the copy is valid
    // anywhere, the search for a record after the damaged header found it, and the node
    // refused to start).
    drop(pair);
    let copy = copy_dir(dir.path());
    let segment = last_segment(copy.path());
    let sector_end = start.div_ceil(SECTOR) * SECTOR;
    let bytes = fs::read(&segment).unwrap();
    assert!(
        bytes[sector_end as usize..]
            .windows(vote.len())
            .any(|w| w == vote),
        "the copy survives"
    );
    let mut damaged = bytes;
    damaged[start as usize..sector_end as usize].fill(0);
    fs::write(&segment, damaged).unwrap();
    let (storage, warnings) = capture_warnings(|| open(copy.path(), BIG));
    let mut storage = storage.unwrap();
    assert_recovers(&mut storage, &before, "the command's header zeroed");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("torn tail"), "{warnings:?}");
    assert!(
        warnings[0].contains(&format!("offset={start}")),
        "{warnings:?}"
    );
    assert!(
        warnings[0].contains(&format!("dropped={}", end - start)),
        "{warnings:?}"
    );

    // Its header damaged otherwise (not zeros): corruption at the command's record, not at the
    // copy.
    let copy = copy_dir(dir.path());
    let segment = last_segment(copy.path());
    let mut damaged = fs::read(&segment).unwrap();
    damaged[start as usize + 1] ^= 0x40;
    fs::write(&segment, damaged).unwrap();
    match open(copy.path(), BIG).unwrap_err() {
        StorageError::Corrupt {
            path,
            offset,
            reason,
        } => {
            assert_eq!((path, offset), (segment, start), "{reason}");
            assert!(!reason.contains("follows"), "{reason}");
        }
        other => panic!("{other}"),
    }
}
