//! Damage to the files: a last record cut short by the end of the file, at whatever byte, or
//! holding a sector of zeros, is torn and cut off with a warning; zeros after the last record
//! are the end of the log (a segment prepared at its full size); any other damage (a byte of
//! the last record wrong, bytes after it that are neither a record nor zeros, damage to any
//! record before it) is corruption, reported with the file and the offset of the record.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::common::{
    ID, Op, Ops, Pair, assert_recovers, capture_warnings, copy_dir, entries, last_segment, len,
    open, segments,
};
use zeroraft_storage::{FileStorage, HardState, Recovered, Storage, StorageError, WalOptions};

const BIG: u64 = 1 << 20;
/// Where a segment's start record is: after the segment header.
const START_RECORD: u64 = 16;
/// Where a segment's first batch starts: after the segment header (16 bytes) and the start
/// record (a 16-byte record header and 40 bytes of payload), written when the segment was
/// created.
const FIRST_BATCH: u64 = 16 + 16 + 40;
/// Bytes of a sector.
const SECTOR: u64 = 512;

/// The offsets of the records of a segment whose batches were written at `writes`: its start
/// record, then one record each.
fn with_start_record(writes: &[u64]) -> Vec<u64> {
    let mut records = vec![START_RECORD];
    records.extend_from_slice(writes);
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
            .rposition(|&r| r == FIRST_BATCH)
            .expect("a batch at the start of a segment");
        records.drain(..last_start);
        let records = with_start_record(&records);
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
fn a_last_record_with_any_byte_wrong_is_corruption() {
    // All its bytes are there: bit rot, a misdirected write, or a sector garbled while the
    // next append rewrote it. It was acknowledged (a vote, say), so it must not be dropped.
    let log = Log::new(BIG);
    let start = log.last_record();
    for at in start..log.end {
        for flip in [0x01u8, 0x80, 0xff] {
            let case = format!("byte {at} ^ {flip:#04x}");
            let copy = copy_dir(log.dir.path());
            let segment = last_segment(copy.path());
            edit(&segment, |b| b[at as usize] ^= flip);
            let (result, warnings) = capture_warnings(|| open_copy(copy.path()));
            match result.map(drop).unwrap_err() {
                StorageError::Corrupt { path, offset, .. } => {
                    assert_eq!((path, offset), (segment.clone(), start), "{case}");
                }
                other => panic!("{case}: {other}"),
            }
            assert!(warnings.is_empty(), "{case}: {warnings:?}");
            assert_eq!(len(&segment), log.end, "{case}: nothing was changed");
        }
    }
}

#[test]
fn a_last_record_holding_a_sector_of_zeros_is_dropped_with_a_warning() {
    // A write of several sectors of which one never reached the disk, the file's length did.
    let dir = tempfile::tempdir().unwrap();
    let mut pair = Pair::new(dir.path(), BIG);
    pair.persist(&Op::vote(1, Some(0)));
    let before = pair.model.recover().unwrap();
    let start = len(&last_segment(dir.path()));
    pair.persist(&Op::append(0, entries(1, 1, 4, 400)));
    let end = len(&last_segment(dir.path()));
    assert!(end - start > 3 * SECTOR, "{start}..{end}");
    let first_sector = start.div_ceil(SECTOR) * SECTOR;
    // (case, the bytes to zero)
    let cases = [
        ("the sector holding its header", start, first_sector),
        (
            "a sector in the middle",
            first_sector + SECTOR,
            first_sector + 2 * SECTOR,
        ),
        ("its last sector", end / SECTOR * SECTOR, end),
    ];
    for (case, (name, from, to)) in cases.into_iter().enumerate() {
        let case = format!("case {case}: {name}");
        let copy = copy_dir(dir.path());
        let segment = last_segment(copy.path());
        edit(&segment, |b| b[from as usize..to as usize].fill(0));
        let (storage, warnings) = capture_warnings(|| open_copy(copy.path()));
        let mut storage = storage.unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_recovers(&mut storage, &before, &case);
        assert_torn_warning(&warnings, &segment, start, end - start, &case);
    }
    // Half a sector of zeros is not what a power cut leaves.
    let copy = copy_dir(dir.path());
    let segment = last_segment(copy.path());
    let from = first_sector + SECTOR;
    edit(&segment, |b| {
        b[from as usize..(from + SECTOR / 2) as usize].fill(0)
    });
    match open_copy(copy.path()).unwrap_err() {
        StorageError::Corrupt { path, offset, .. } => assert_eq!((path, offset), (segment, start)),
        other => panic!("{other}"),
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
    let first = with_start_record(&first);
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
fn zeros_after_the_log_are_its_end_and_other_bytes_corruption() {
    let log = Log::new(BIG);
    // (case, the bytes, read): zeros are the rest of a segment prepared at its full size, or a
    // sector never written (the file's length persisted): the end of the log, kept as they
    // are; one byte could be the start of any record header, a torn tail; anything else is
    // not a write cut short.
    let cases: Vec<(String, Vec<u8>, bool)> = [1usize, 15, 16, 17, 100, 4096, 70_000]
        .iter()
        .flat_map(|&n| {
            [
                (format!("{n} zeros"), vec![0; n], true),
                (
                    format!("{n} random bytes"),
                    garbage(n, n as u64 + 1),
                    n == 1,
                ),
                (format!("{n} bytes 0xff"), vec![0xff; n], n == 1),
            ]
        })
        .collect();
    for (case, (name, tail, torn)) in cases.into_iter().enumerate() {
        let case = format!("case {case}: {name}");
        let copy = copy_dir(log.dir.path());
        let segment = last_segment(copy.path());
        edit(&segment, |b| b.extend_from_slice(&tail));
        let (storage, warnings) = capture_warnings(|| open_copy(copy.path()));
        if torn && tail.iter().all(|&b| b == 0) {
            let mut storage = storage.unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_recovers(&mut storage, &log.after, &case);
            assert!(warnings.is_empty(), "{case}: {warnings:?}");
            assert_eq!(len(&segment), log.end + tail.len() as u64, "{case}");
            // The next record goes where the zeros start, and reads back.
            let op = Op::append(9, entries(3, 10, 1, 8));
            let mut storage = storage;
            storage.persist(&op.update()).unwrap();
            drop(storage);
            let mut expected = log.after.clone();
            expected.entries.extend(op.entries.iter().cloned());
            let mut storage = open_copy(copy.path()).unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_recovers(&mut storage, &expected, &case);
        } else if torn {
            let mut storage = storage.unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_recovers(&mut storage, &log.after, &case);
            assert_torn_warning(&warnings, &segment, log.end, tail.len() as u64, &case);
            assert_eq!(len(&segment), log.end, "{case}");
        } else {
            match storage.map(drop).unwrap_err() {
                StorageError::Corrupt { path, offset, .. } => {
                    assert_eq!((path, offset), (segment.clone(), log.end), "{case}");
                }
                other => panic!("{case}: {other}"),
            }
            assert_eq!(len(&segment), log.end + tail.len() as u64, "{case}");
        }
    }
}

#[test]
fn a_last_segment_cut_short_while_created_is_removed_or_made_again() {
    let log = Log::new(BIG);
    // A segment is created with its header and its start record, in one write: segment 2's, as
    // the log would create it next.
    let created = {
        let copy = copy_dir(log.dir.path());
        let mut storage = open(copy.path(), 16).unwrap();
        storage
            .persist(&Op::append(9, entries(3, 10, 1, 8)).update())
            .unwrap();
        drop(storage);
        let second = fs::read(copy.path().join("00000000000000000002.wal")).unwrap();
        second[..FIRST_BATCH as usize].to_vec()
    };
    // (case, the bytes, a word of the warning, whether the file is still there)
    let cases: Vec<(&str, Vec<u8>, &str, bool)> = vec![
        ("empty", vec![], "removed the last segment", false),
        (
            "half a header",
            created[..7].to_vec(),
            "removed the last segment",
            false,
        ),
        (
            "a header of zeros",
            vec![0; 16],
            "removed the last segment",
            false,
        ),
        ("zeros", vec![0; 300], "removed the last segment", false),
        (
            "a header one byte short",
            created[..15].to_vec(),
            "removed the last segment",
            false,
        ),
        ("a header alone", created[..16].to_vec(), "", true),
        (
            "half a start record",
            created[..40].to_vec(),
            "truncated the torn tail",
            true,
        ),
        // Zeros after the header: the segment holds no record, and is made again.
        (
            "a start record's sector of zeros",
            [&created[..16], &[0; 56]].concat(),
            "",
            true,
        ),
    ];
    for (case, (name, bytes, warned, kept)) in cases.into_iter().enumerate() {
        let case = format!("case {case}: {name}");
        let copy = copy_dir(log.dir.path());
        let next = copy.path().join("00000000000000000002.wal");
        fs::write(&next, &bytes).unwrap();
        let (storage, warnings) = capture_warnings(|| open_copy(copy.path()));
        let mut storage = storage.unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_recovers(&mut storage, &log.after, &case);
        if warned.is_empty() {
            assert!(warnings.is_empty(), "{case}: {warnings:?}");
        } else {
            assert_eq!(warnings.len(), 1, "{case}: {warnings:?}");
            assert!(warnings[0].contains(warned), "{case}: {warnings:?}");
            assert!(
                warnings[0].contains(&next.display().to_string()),
                "{case}: {warnings:?}"
            );
        }
        // A segment without a start record is made again, whole, with its start record.
        assert_eq!(next.exists(), kept, "{case}");
        if kept {
            assert_eq!(len(&next), FIRST_BATCH, "{case}");
        }
        // The log goes on.
        let op = Op::append(9, entries(3, 10, 1, 8));
        storage.persist(&op.update()).unwrap();
        drop(storage);
        let mut expected = log.after.clone();
        expected.entries.extend(op.entries.iter().cloned());
        let mut storage = open(copy.path(), 16).unwrap();
        assert_recovers(&mut storage, &expected, &case);
    }

    // A damaged header followed by records, or a short file that is not a header's start, is
    // not a crash while creating a segment.
    type Damage = fn(&mut Vec<u8>);
    let cases: [(&str, Damage); 2] = [
        ("records after a header of zeros", |b| b[..16].fill(0)),
        ("ten bytes of garbage", |b| *b = vec![0x5a; 10]),
    ];
    for (case, (name, damage)) in cases.into_iter().enumerate() {
        let copy = copy_dir(log.dir.path());
        let segment = last_segment(copy.path());
        edit(&segment, damage);
        match open_copy(copy.path()).unwrap_err() {
            StorageError::Corrupt { path, offset, .. } => {
                assert_eq!((path, offset), (segment, 0), "case {case}: {name}");
            }
            other => panic!("case {case}: {name}: {other}"),
        }
    }
}

#[test]
fn a_segment_of_another_format_version_or_a_gap_is_unreadable() {
    let (dir, _) = segmented();
    // Version 1 (before snapshots) and 4, with a valid header checksum.
    for version in [1u32, 4] {
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
                    reason.contains(&format!("version {version} (this version reads 2 and 3)")),
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
    // The start of a record header, as a write cut short by a crash leaves it.
    let mut file = OpenOptions::new().append(true).open(&last).unwrap();
    file.write_all(&[40, 0, 0, 0, 1, 0, 0, 0, 0x1d]).unwrap();
    drop(file);
    let (storage, warnings) = capture_warnings(|| {
        FileStorage::open(
            dir.path(),
            ID,
            WalOptions {
                segment_size: 256,
                create: false,
                members: None,
                ballast_bytes: 0,
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
        9,
        "garbage after the last segment",
    );
}
