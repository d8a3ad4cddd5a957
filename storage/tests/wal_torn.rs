//! Damage to the files: a torn last record is cut off with a warning, whatever byte it ends at
//! or whichever byte of it is wrong; damage to any record before it is corruption, reported
//! with the file and the offset of the record.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use common::{
    ID, Op, Pair, assert_recovers, capture_warnings, copy_dir, entries, last_segment, len, open,
    segments,
};
use zeroraft_storage::{FileStorage, HardState, Recovered, Storage, StorageError, WalOptions};

const BIG: u64 = 1 << 20;
/// Where a segment's first batch starts: after the segment header (16 bytes) and the start
/// record (a 16-byte record header and 40 bytes of payload), written with that batch.
const FIRST_BATCH: u64 = 16 + 16 + 40;

/// The offsets of the records written by writes at `writes`: the first write to a segment
/// starts with the start record, the others hold one record each.
fn split_start_records(writes: &[u64]) -> Vec<u64> {
    let mut records = Vec::new();
    for &at in writes {
        records.push(at);
        if at == 16 {
            records.push(FIRST_BATCH);
        }
    }
    records
}

/// A log in `dir` and what it held before and after its last record.
struct Log {
    dir: tempfile::TempDir,
    /// The state before the last record.
    before: Recovered,
    /// The state after it.
    after: Recovered,
    /// Offsets of the records of the last segment, in order; the last one is the last record.
    records: Vec<u64>,
    /// The end of the last record.
    end: u64,
}

impl Log {
    /// A few records in one segment of size `segment_size` or more; the last record changes the
    /// hard state and appends three entries.
    fn new(segment_size: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut pair = Pair::new(dir.path(), segment_size);
        let ops = [
            Op::vote(1, Some(0)),
            Op::append(0, entries(1, 1, 2, 20)),
            Op::append(2, entries(1, 3, 3, 20)),
            Op::append(5, entries(1, 6, 1, 20)),
        ];
        let mut records = Vec::new();
        for op in &ops {
            records.push(len(&last_segment(dir.path())));
            pair.persist(op);
        }
        let before = pair.model.recover().unwrap();
        records.push(len(&last_segment(dir.path())));
        pair.persist(&Op {
            hard_state: Some(HardState {
                term: 2,
                voted_for: Some(1),
            }),
            ..Op::append(6, entries(2, 7, 3, 20))
        });
        let after = pair.model.recover().unwrap();
        let end = len(&last_segment(dir.path()));
        // Only the last segment's records.
        let last_start = records
            .iter()
            .rposition(|&r| r == 16)
            .expect("a record at the start of a segment");
        records.drain(..last_start);
        let records = split_start_records(&records);
        Self {
            dir,
            before,
            after,
            records,
            end,
        }
    }

    fn last_record(&self) -> u64 {
        *self.records.last().unwrap()
    }
}

/// Overwrites `f(bytes)` into the file at `path`.
fn edit(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = fs::read(path).unwrap();
    f(&mut bytes);
    fs::write(path, bytes).unwrap();
}

fn open_copy(dir: &Path) -> Result<FileStorage, StorageError> {
    open(dir, BIG)
}

/// Checks that exactly one warning was given, about a torn tail of `dropped` bytes at `offset`
/// of `file`.
fn assert_torn_warning(warnings: &[String], file: &Path, offset: u64, dropped: u64, case: &str) {
    assert_eq!(warnings.len(), 1, "{case}: {warnings:?}");
    let w = &warnings[0];
    assert!(w.starts_with("WARN"), "{case}: {w}");
    assert!(
        w.contains(&format!("file={}", file.display())),
        "{case}: {w}"
    );
    assert!(w.contains(&format!("offset={offset}")), "{case}: {w}");
    assert!(w.contains(&format!("dropped={dropped}")), "{case}: {w}");
    assert!(w.contains("torn tail"), "{case}: {w}");
}

#[test]
fn a_last_record_cut_at_any_byte_is_dropped_with_a_warning() {
    let log = Log::new(BIG);
    let start = log.last_record();
    for keep in 0..log.end - start {
        let case = format!("{keep} bytes of the last record kept");
        let copy = copy_dir(log.dir.path());
        let segment = last_segment(copy.path());
        OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap()
            .set_len(start + keep)
            .unwrap();
        let (storage, warnings) = capture_warnings(|| open_copy(copy.path()));
        let mut storage = storage.unwrap();
        assert_recovers(&mut storage, &log.before, &case);
        if keep == 0 {
            assert!(warnings.is_empty(), "{case}: {warnings:?}");
        } else {
            assert_torn_warning(&warnings, &segment, start, keep, &case);
        }
        assert_eq!(len(&segment), start, "{case}: the file is truncated");
        // A few of them go on: the log grows from where it was cut.
        if keep % 37 == 1 {
            let op = Op::append(6, entries(5, 7, 2, 30));
            storage.persist(&op.update()).unwrap();
            drop(storage);
            let mut storage = open_copy(copy.path()).unwrap();
            let mut expected = log.before.clone();
            expected.entries.extend(op.entries.iter().cloned());
            assert_recovers(&mut storage, &expected, &format!("{case}, then appended"));
        }
    }
}

#[test]
fn a_last_record_with_any_byte_wrong_is_dropped_with_a_warning() {
    let log = Log::new(BIG);
    let start = log.last_record();
    for at in start..log.end {
        for flip in [0x01u8, 0x80, 0xff] {
            let case = format!("byte {at} ^ {flip:#04x}");
            let copy = copy_dir(log.dir.path());
            let segment = last_segment(copy.path());
            edit(&segment, |b| b[at as usize] ^= flip);
            let (storage, warnings) = capture_warnings(|| open_copy(copy.path()));
            let mut storage = storage.unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_recovers(&mut storage, &log.before, &case);
            assert_torn_warning(&warnings, &segment, start, log.end - start, &case);
        }
    }
}

#[test]
fn a_damaged_older_record_of_the_last_segment_is_corruption() {
    let log = Log::new(BIG);
    assert!(log.records.len() >= 4, "{:?}", log.records);
    for pair in log.records.windows(2) {
        let (start, end) = (pair[0], pair[1]);
        for at in start..end {
            let case = format!("byte {at} of the record at {start}");
            let copy = copy_dir(log.dir.path());
            let segment = last_segment(copy.path());
            edit(&segment, |b| b[at as usize] ^= 0x20);
            let err = open_copy(copy.path()).unwrap_err();
            match err {
                StorageError::Corrupt { path, offset, .. } => {
                    assert_eq!(path, segment, "{case}");
                    assert_eq!(offset, start, "{case}");
                }
                other => panic!("{case}: {other}"),
            }
            // Nothing was changed by the failed open.
            assert_eq!(len(&segment), log.end, "{case}");
        }
    }
}

/// A log of several segments (of 256 bytes or more), and the offsets of the records of its
/// first segment.
fn segmented() -> (tempfile::TempDir, Vec<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let mut pair = Pair::new(dir.path(), 256);
    let mut first = Vec::new();
    for i in 0..20 {
        let path = last_segment(dir.path());
        if segments(dir.path()).len() == 1 {
            first.push(len(&path));
        }
        pair.persist(&Op::append(i * 2, entries(1, i * 2 + 1, 2, 40)));
    }
    first.push(len(&segments(dir.path())[0]));
    first.dedup();
    let first = split_start_records(&first);
    assert!(segments(dir.path()).len() >= 4);
    assert!(first.len() >= 3, "{first:?}");
    (dir, first)
}

#[test]
fn a_damaged_record_of_an_older_segment_is_corruption() {
    let (dir, records) = segmented();
    for pair in records.windows(2) {
        let (start, end) = (pair[0], pair[1]);
        // Its first byte, one in its payload and its last: the last record of the segment too.
        for at in [start, (start + end) / 2, end - 1] {
            let case = format!("byte {at} of the record at {start}");
            let copy = copy_dir(dir.path());
            let segment = segments(copy.path())[0].clone();
            edit(&segment, |b| b[at as usize] ^= 0x04);
            match open_copy(copy.path()).unwrap_err() {
                StorageError::Corrupt { path, offset, .. } => {
                    assert_eq!((path, offset), (segment, start), "{case}");
                }
                other => panic!("{case}: {other}"),
            }
        }
    }
    // Cut short, it is corrupt too: only the last segment can have a torn tail.
    let copy = copy_dir(dir.path());
    let segment = segments(copy.path())[0].clone();
    let last = records[records.len() - 2];
    edit(&segment, |b| b.truncate(last as usize + 5));
    match open_copy(copy.path()).unwrap_err() {
        StorageError::Corrupt { path, offset, .. } => assert_eq!((path, offset), (segment, last)),
        other => panic!("{other}"),
    }
    // And so is its header.
    let copy = copy_dir(dir.path());
    let segment = segments(copy.path())[1].clone();
    edit(&segment, |b| b[3] = b'X');
    match open_copy(copy.path()).unwrap_err() {
        StorageError::Corrupt { path, offset, .. } => assert_eq!((path, offset), (segment, 0)),
        other => panic!("{other}"),
    }
}

/// A small deterministic generator of garbage.
fn garbage(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

#[test]
fn garbage_after_the_log_is_a_torn_tail() {
    let log = Log::new(BIG);
    let cases: Vec<(String, Vec<u8>)> = [1usize, 15, 16, 17, 100, 4096, 70_000]
        .iter()
        .flat_map(|&n| {
            [
                (format!("{n} zeros"), vec![0; n]),
                (format!("{n} random bytes"), garbage(n, n as u64 + 1)),
                (format!("{n} bytes 0xff"), vec![0xff; n]),
            ]
        })
        .collect();
    for (case, tail) in cases {
        let copy = copy_dir(log.dir.path());
        let segment = last_segment(copy.path());
        edit(&segment, |b| b.extend_from_slice(&tail));
        let (storage, warnings) = capture_warnings(|| open_copy(copy.path()));
        let mut storage = storage.unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_recovers(&mut storage, &log.after, &case);
        assert_torn_warning(&warnings, &segment, log.end, tail.len() as u64, &case);
        assert_eq!(len(&segment), log.end, "{case}");
    }
}

#[test]
fn a_last_segment_without_a_whole_header_is_removed() {
    let log = Log::new(BIG);
    let header_of = |bytes: &[u8]| bytes[..16].to_vec();
    let header = header_of(&fs::read(last_segment(log.dir.path())).unwrap());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("half a header", header[..7].to_vec()),
        ("a header of zeros", vec![0; 16]),
        ("a header of zeros and more", vec![0; 300]),
        ("a header one byte short", header[..15].to_vec()),
    ];
    for (case, bytes) in cases {
        let copy = copy_dir(log.dir.path());
        let next = copy.path().join("00000000000000000002.wal");
        fs::write(&next, &bytes).unwrap();
        let (storage, warnings) = capture_warnings(|| open_copy(copy.path()));
        let mut storage = storage.unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_recovers(&mut storage, &log.after, case);
        assert_eq!(warnings.len(), 1, "{case}: {warnings:?}");
        assert!(warnings[0].contains("removed the last segment"), "{case}");
        assert!(
            warnings[0].contains(&next.display().to_string()),
            "{case}: {warnings:?}"
        );
        assert!(!next.exists(), "{case}");
        // The log goes on.
        let op = Op::append(9, entries(3, 10, 1, 8));
        storage.persist(&op.update()).unwrap();
        drop(storage);
        let mut expected = log.after.clone();
        expected.entries.extend(op.entries.iter().cloned());
        let mut storage = open(copy.path(), 16).unwrap();
        assert_recovers(&mut storage, &expected, case);
    }

    // A damaged header followed by an intact record is not a crash after creating a segment.
    let copy = copy_dir(log.dir.path());
    let segment = last_segment(copy.path());
    edit(&segment, |b| b[..16].fill(0));
    match open_copy(copy.path()).unwrap_err() {
        StorageError::Corrupt { path, offset, .. } => assert_eq!((path, offset), (segment, 0)),
        other => panic!("{other}"),
    }
}

#[test]
fn a_segment_of_another_format_version_or_a_gap_is_unreadable() {
    let (dir, _) = segmented();
    // Version 1 (before snapshots) and 3, with a valid header checksum.
    for version in [1u32, 3] {
        let copy = copy_dir(dir.path());
        let segment = segments(copy.path())[1].clone();
        edit(&segment, |b| {
            b[8..12].copy_from_slice(&version.to_le_bytes());
            let crc = crc32c::crc32c(&b[..12]);
            b[12..16].copy_from_slice(&crc.to_le_bytes());
        });
        match open_copy(copy.path()).unwrap_err() {
            StorageError::Unreadable { path, reason } => {
                assert_eq!(path, segment);
                assert!(
                    reason.contains(&format!("version {version} (this version reads 2)")),
                    "{reason}"
                );
            }
            other => panic!("{other}"),
        }
    }
    // A missing segment in the middle, or at the start.
    for missing in [2usize, 0] {
        let copy = copy_dir(dir.path());
        fs::remove_file(&segments(copy.path())[missing]).unwrap();
        match open_copy(copy.path()).unwrap_err() {
            StorageError::Unreadable { path, reason } => {
                assert_eq!(path, segments(copy.path())[missing], "segment {missing}");
                assert!(reason.contains("without a gap"), "{reason}");
            }
            other => panic!("segment {missing}: {other}"),
        }
    }
}

#[test]
fn a_torn_tail_in_a_later_segment_keeps_the_earlier_ones() {
    let (dir, _) = segmented();
    let mut storage = open_copy(dir.path()).unwrap();
    let full = storage.recover().unwrap();
    drop(storage);
    let last = last_segment(dir.path());
    let mut file = OpenOptions::new().append(true).open(&last).unwrap();
    file.write_all(&garbage(50, 9)).unwrap();
    drop(file);
    let (storage, warnings) = capture_warnings(|| {
        FileStorage::open(
            dir.path(),
            ID,
            WalOptions {
                segment_size: 256,
                create: false,
                members: None,
            },
        )
    });
    assert_recovers(
        &mut storage.unwrap(),
        &full,
        "garbage after the last segment",
    );
    assert_torn_warning(
        &warnings,
        &last,
        len(&last),
        50,
        "garbage after the last segment",
    );
}
