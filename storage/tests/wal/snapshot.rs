//! Snapshot files: one the log refers to must be there and intact, or the node does not start
//! (the error names the file); any other is ignored and removed, with a note.

use std::fs;
use std::path::Path;

use crate::common::{
    Op, Ops, Pair, capture_warnings, copy_dir, entries, open, segments, snapshot_files,
    snapshot_path,
};
use zeroraft_storage::{Recovered, Storage, StorageError};

const SEGMENT: u64 = 512;
/// Bytes of a snapshot file's header.
const HEADER: usize = 48;

/// A log whose snapshot is at 30 (the one at 10 before it), with entries up to 40 after it.
fn log() -> (tempfile::TempDir, Recovered) {
    let dir = tempfile::tempdir().unwrap();
    let mut pair = Pair::new(dir.path(), SEGMENT);
    pair.persist(&Op::vote(2, Some(1)));
    pair.persist(&Op::append(0, entries(1, 1, 20, 40)));
    pair.persist(&Op::snapshot(10, 1, 1000));
    pair.persist(&Op::append(20, entries(2, 21, 20, 40)));
    pair.persist(&Op::snapshot(30, 2, 1000));
    let expected = pair.model.recover().unwrap();
    assert_eq!(snapshot_files(dir.path()), [snapshot_path(dir.path(), 30)]);
    (dir, expected)
}

/// A damaged snapshot file: the case, the file's contents (none: removed), the offset of the
/// error (none: unreadable rather than corrupt), words of its reason.
type Damage = (&'static str, Option<Vec<u8>>, Option<u64>, &'static str);

/// Files added next to a log: the case, the files' names and contents, whether opening warns.
type Extra = (&'static str, Vec<(String, Vec<u8>)>, bool);

/// Every file of `dir` and its contents.
fn contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "LOCK" && !crate::common::is_prepared(p))
        .map(|p| {
            let name = p.file_name().unwrap().to_str().unwrap().to_owned();
            (name, fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn the_snapshot_the_log_refers_to_must_be_there_and_intact() {
    let (dir, expected) = log();
    let good = fs::read(snapshot_path(dir.path(), 30)).unwrap();
    let with_crc = |mut bytes: Vec<u8>| {
        let crc = crc32c::crc32c(&bytes[..44]);
        bytes[44..48].copy_from_slice(&crc.to_le_bytes());
        bytes
    };
    let edit = |at: usize, value: u8| {
        let mut bytes = good.clone();
        bytes[at] = value;
        bytes
    };
    let cases: Vec<Damage> = vec![
        ("missing", None, Some(0), "missing"),
        ("empty", Some(vec![]), Some(0), "cut short"),
        (
            "header cut short",
            Some(good[..HEADER - 1].to_vec()),
            Some(0),
            "cut short",
        ),
        (
            "data cut short",
            Some(good[..good.len() - 1].to_vec()),
            Some(HEADER as u64),
            "1000 bytes of data",
        ),
        (
            "a byte more",
            Some([&good[..], &[0]].concat()),
            Some(HEADER as u64),
            "1000 bytes of data",
        ),
        (
            "a data byte wrong",
            Some(edit(HEADER + 500, good[HEADER + 500] ^ 1)),
            Some(HEADER as u64),
            "checksum",
        ),
        (
            "a header byte wrong",
            Some(edit(20, 0x55)),
            Some(0),
            "damaged",
        ),
        (
            "another snapshot's term",
            Some(with_crc(edit(24, 9))),
            Some(0),
            "term 9",
        ),
        (
            "another magic",
            Some(with_crc(edit(0, b'X'))),
            Some(0),
            "not a snapshot",
        ),
        (
            "a future format version",
            Some(with_crc(edit(8, 3))),
            None,
            "snapshot format version 3",
        ),
    ];
    for (case, bytes, offset, words) in cases {
        let copy = copy_dir(dir.path());
        let path = snapshot_path(copy.path(), 30);
        match &bytes {
            Some(bytes) => fs::write(&path, bytes).unwrap(),
            None => fs::remove_file(&path).unwrap(),
        }
        let before = contents(copy.path());
        let err = open(copy.path(), SEGMENT).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(&path.display().to_string()),
            "{case}: {message}"
        );
        match (err, offset) {
            (
                StorageError::Corrupt {
                    path: p,
                    offset: o,
                    reason,
                },
                Some(offset),
            ) => {
                assert_eq!((p, o), (path.clone(), offset), "{case}: {reason}");
                assert!(reason.contains(words), "{case}: {reason}");
            }
            (StorageError::Unreadable { path: p, reason }, None) => {
                assert_eq!(p, path, "{case}: {reason}");
                assert!(reason.contains(words), "{case}: {reason}");
            }
            (other, _) => panic!("{case}: {other}"),
        }
        // A failed open changes nothing.
        assert_eq!(contents(copy.path()), before, "{case}");
    }
    // The original opens.
    let mut storage = open(dir.path(), SEGMENT).unwrap();
    assert_eq!(storage.recover().unwrap(), expected);
}

#[test]
fn other_snapshot_files_are_ignored_and_removed_with_a_note() {
    let (dir, expected) = log();
    let garbage = vec![0x5a; 100];
    let cases: Vec<Extra> = vec![
        (
            "a damaged orphan: a crash before its record",
            vec![(
                "snapshot-00000000000000000035.snap".to_owned(),
                garbage.clone(),
            )],
            true,
        ),
        (
            "an intact orphan",
            vec![(
                "snapshot-00000000000000000040.snap".to_owned(),
                fs::read(snapshot_path(dir.path(), 30)).unwrap(),
            )],
            true,
        ),
        (
            "a temporary file: a crash while writing it",
            vec![(
                "snapshot-00000000000000000036.snap.tmp".to_owned(),
                garbage.clone(),
            )],
            true,
        ),
        (
            "an older snapshot: a crash before it was removed",
            vec![(
                "snapshot-00000000000000000010.snap".to_owned(),
                garbage.clone(),
            )],
            false,
        ),
    ];
    for (case, files, warned) in cases {
        let copy = copy_dir(dir.path());
        for (name, bytes) in &files {
            fs::write(copy.path().join(name), bytes).unwrap();
        }
        let (storage, warnings) = capture_warnings(|| open(copy.path(), SEGMENT));
        let mut storage = storage.unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(storage.recover().unwrap(), expected, "{case}");
        if warned {
            assert_eq!(warnings.len(), 1, "{case}: {warnings:?}");
            assert!(warnings[0].contains(&files[0].0), "{case}: {warnings:?}");
        } else {
            assert!(warnings.is_empty(), "{case}: {warnings:?}");
        }
        assert_eq!(
            snapshot_files(copy.path()),
            [snapshot_path(copy.path(), 30)],
            "{case}"
        );
    }
}

#[test]
fn an_orphan_in_a_log_without_a_snapshot_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut pair = Pair::new(dir.path(), SEGMENT);
    pair.persist(&Op::append(0, entries(1, 1, 5, 8)));
    drop(pair);
    let orphan = snapshot_path(dir.path(), 3);
    fs::write(&orphan, b"not even a header").unwrap();
    let (storage, warnings) = capture_warnings(|| open(dir.path(), SEGMENT));
    let mut storage = storage.unwrap();
    let recovered = storage.recover().unwrap();
    assert_eq!((recovered.snapshot, recovered.entries.len()), (None, 5));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(!orphan.exists());
}

#[test]
fn snapshot_files_without_segments_are_refused() {
    let (dir, _) = log();
    for segment in segments(dir.path()) {
        fs::remove_file(segment).unwrap();
    }
    match open(dir.path(), SEGMENT).unwrap_err() {
        StorageError::Unreadable { path, reason } => {
            assert_eq!(path, snapshot_path(dir.path(), 30), "{reason}");
        }
        other => panic!("{other}"),
    }
    assert_eq!(snapshot_files(dir.path()).len(), 1, "nothing removed");
}

#[test]
fn a_missing_segment_that_no_snapshot_covers_is_unreadable() {
    let (dir, _) = log();
    let files = segments(dir.path());
    assert!(files.len() >= 2, "{files:?}");
    // The first segment left holds entries after the snapshot: removing it leaves them in no
    // file, whether segments follow it or not.
    fs::remove_file(&files[0]).unwrap();
    match open(dir.path(), SEGMENT).unwrap_err() {
        StorageError::Unreadable { path, reason } => {
            assert_eq!(path, files[1], "{reason}");
            assert!(reason.contains("in no segment and no snapshot"), "{reason}");
        }
        other => panic!("{other}"),
    }
}
