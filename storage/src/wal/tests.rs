//! Tests that need the inside of [`FileStorage`]: injected write and sync failures, records
//! smaller than [`MAX_RECORD_BYTES`] to split updates over, and the records as written; and
//! power cuts on a simulated file system (`power`).

mod power;

use std::io::ErrorKind;

use bytes::Bytes;

use super::format::{self, Frame, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use super::fs::RealFs;
use super::*;
use crate::{MemStorage, Snapshot};

const ID: Identity = Identity {
    cluster: 1,
    node: 0,
};

/// The default options, without a ballast file.
fn no_ballast() -> WalOptions {
    WalOptions {
        ballast_bytes: 0,
        ..WalOptions::default()
    }
}

fn open(dir: &Path, segment_size: u64) -> FileStorage {
    FileStorage::open(
        dir,
        ID,
        WalOptions {
            segment_size,
            create: true,
            ballast_bytes: 0,
            ..WalOptions::default()
        },
    )
    .unwrap()
}

fn entries(term: u64, first: u64, n: u64, size: usize) -> Vec<Entry> {
    (first..first + n)
        .map(|i| {
            let mut command = vec![b'-'; size.max(8)];
            command[..8].copy_from_slice(&i.to_le_bytes());
            Entry::new(term, Bytes::from(command))
        })
        .collect()
}

fn append(first_index: u64, entries: &[Entry]) -> Update<'_> {
    Update {
        hard_state: None,
        snapshot: None,
        truncate_from: None,
        first_index,
        entries,
    }
}

fn vote(term: u64) -> Update<'static> {
    Update {
        hard_state: Some(HardState {
            term,
            voted_for: Some(0),
        }),
        snapshot: None,
        truncate_from: None,
        first_index: 0,
        entries: &[],
    }
}

/// Persists `update` to both.
fn both(storage: &mut FileStorage, model: &mut MemStorage, update: &Update<'_>) {
    model.persist(update).unwrap();
    storage.persist(update).unwrap();
}

/// The sequence number of the segment at `path`.
fn seq_of(path: &Path) -> u64 {
    let name = path.file_name().unwrap().to_str().unwrap();
    name.strip_suffix(".wal").unwrap().parse().unwrap()
}

/// The start record and the batches of the segment at `path`, parsed.
fn records(path: &Path) -> (Option<format::Start>, Vec<format::Batch>) {
    let buf = std::fs::read(path).unwrap();
    let framing = format::Framing::Positioned { seq: seq_of(path) };
    let mut pos = SEGMENT_HEADER_BYTES;
    let mut start = None;
    let mut out = Vec::new();
    while pos < buf.len() {
        let Frame::Intact { len } = format::frame_at(&buf, pos, framing) else {
            // Zeros to the end: the end of a segment prepared at its full size.
            if buf[pos..].iter().all(|&b| b == 0) {
                break;
            }
            panic!("damaged record at {pos} of {}", path.display());
        };
        let at = pos + RECORD_HEADER_BYTES;
        match format::check_kind(&buf, pos).unwrap() {
            format::Kind::Start => {
                assert_eq!(pos, SEGMENT_HEADER_BYTES, "{}", path.display());
                start = Some(format::parse_start(&buf[at..at + len]).unwrap());
            }
            format::Kind::Batch => out.push(format::parse_batch(&buf[at..at + len]).unwrap()),
        }
        pos = at + len;
    }
    (start, out)
}

/// The batches of the segment at `path`, parsed.
fn batches(path: &Path) -> Vec<format::Batch> {
    records(path).1
}

/// The segment files of `dir`, in order.
fn segment_paths(dir: &Path) -> Vec<PathBuf> {
    recovery::list(&RealFs, dir)
        .unwrap()
        .segments
        .into_iter()
        .map(|(_, path)| path)
        .collect()
}

/// The snapshot files of `dir`, and the temporary ones, in order.
fn snapshot_paths(dir: &Path) -> Vec<PathBuf> {
    let listing = recovery::list(&RealFs, dir).unwrap();
    let mut paths: Vec<PathBuf> = listing.snapshots.into_iter().map(|(_, p)| p).collect();
    paths.extend(listing.temporary);
    paths
}

#[test]
fn configuration_entries_are_recovered_as_configuration_entries() {
    let dir = tempfile::tempdir().unwrap();
    let mut written = entries(1, 1, 3, 8);
    written[1].kind = crate::EntryKind::Config;
    let mut storage = open(dir.path(), 1 << 20);
    storage.persist(&append(1, &written)).unwrap();
    drop(storage);
    let recovered = open(dir.path(), 1 << 20).recover().unwrap();
    assert_eq!(recovered.entries, written);
}

#[test]
fn a_full_disk_poisons_and_reopening_recovers_what_was_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = open(dir.path(), 1 << 20);
    let mut model = MemStorage::new();
    let first = entries(1, 1, 5, 16);
    both(&mut storage, &mut model, &vote(1));
    both(&mut storage, &mut model, &append(1, &first));
    let acknowledged = model.recover().unwrap();
    let end = storage.end;

    storage.faults.fail_write(1, ErrorKind::StorageFull);
    let second = entries(1, 6, 5, 16);
    let err = storage.persist(&append(6, &second)).unwrap_err();
    assert!(err.is_storage_full(), "{err}");
    match &err {
        StorageError::Io { op, path, .. } => {
            assert_eq!(*op, "write to");
            assert_eq!(*path, dir.path().join(segment_name(1)));
        }
        other => panic!("{other}"),
    }
    // Half the record reached the file.
    assert!(std::fs::metadata(&storage.segment_path).unwrap().len() > end);
    for update in [vote(2), append(6, &second), append(1, &first)] {
        match storage.persist(&update).unwrap_err() {
            StorageError::Poisoned { reason } => assert!(reason.contains("write to"), "{reason}"),
            other => panic!("{other}"),
        }
    }
    assert!(matches!(
        storage.recover(),
        Err(StorageError::Poisoned { .. })
    ));
    drop(storage);

    let mut storage = open(dir.path(), 1 << 20);
    assert_eq!(storage.recover().unwrap(), acknowledged);
    assert_eq!(storage.end, end, "the torn half record was cut off");
    // It goes on from there.
    both(&mut storage, &mut model, &append(6, &second));
    drop(storage);
    assert_eq!(
        open(dir.path(), 1 << 20).recover().unwrap(),
        model.recover().unwrap()
    );
}

/// Checks that opening `dir` is refused after a failed sync of `file`, and then makes its
/// marker say it was written in an earlier boot: what a reboot amounts to, as far as the log can
/// tell.
fn refused_until_reboot(dir: &Path, file: &str, case: &str) {
    let marker = dir.join(sync_failed::MARKER);
    let err = FileStorage::open(dir, ID, no_ballast()).unwrap_err();
    match &err {
        StorageError::SyncFailed { path, failure } => {
            assert_eq!(*path, marker, "{case}");
            assert!(failure.contains(file), "{case}: {failure}");
        }
        other => panic!("{case}: {other}"),
    }
    let message = err.to_string();
    assert!(message.contains("restart"), "{case}: {message}");
    let text = std::fs::read_to_string(&marker).unwrap();
    let boot = RealFs.boot_id().unwrap();
    assert!(text.contains(&format!("\nboot {boot}\n")), "{case}: {text}");
    std::fs::write(&marker, text.replace(&boot, "an-earlier-boot")).unwrap();
}

#[test]
fn a_failed_sync_poisons() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = open(dir.path(), 1 << 20);
    let mut model = MemStorage::new();
    let first = entries(1, 1, 3, 16);
    both(&mut storage, &mut model, &append(1, &first));
    let acknowledged = model.recover().unwrap();

    storage.faults.fail_sync(1, ErrorKind::Other);
    let second = entries(1, 4, 2, 16);
    match storage.persist(&append(4, &second)).unwrap_err() {
        StorageError::Io { op, source, .. } => {
            assert_eq!(op, "sync");
            assert_eq!(source.kind(), ErrorKind::Other);
        }
        other => panic!("{other}"),
    }
    assert!(matches!(
        storage.persist(&vote(3)),
        Err(StorageError::Poisoned { .. })
    ));
    drop(storage);
    // The page cache holds the record whole, the disk maybe not: not opened before a reboot.
    refused_until_reboot(dir.path(), "00000000000000000001.wal", "a failed sync");
    // After it, the record may be on the disk or not. Either is a valid state: it was never
    // acknowledged. (Here the "disk" is the page cache, which kept it.)
    let recovered = open(dir.path(), 1 << 20).recover().unwrap();
    assert!(
        !dir.path().join(sync_failed::MARKER).exists(),
        "the marker is gone"
    );
    model.persist(&append(4, &second)).unwrap();
    assert!(
        recovered == model.recover().unwrap() || recovered == acknowledged,
        "{recovered:?}"
    );
    assert_eq!(recovered.entries.len(), 5);
}

#[test]
fn failures_while_starting_a_segment_leave_a_log_that_opens() {
    // (what fails, which one, entries recovered after reopening)
    let cases = [
        // The new segment's header and start record, half written: it is made again.
        ("write", 1, 2),
        ("write", 2, 2), // the first batch of the new segment, half written: a torn tail
        ("sync", 1, 2),  // the new segment's header and start record
        ("sync", 2, 2),  // the directory
        ("sync", 3, 3),  // the first batch of the new segment
    ];
    for (case, &(what, nth, expected)) in cases.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        // Every record fills a segment.
        let mut storage = open(dir.path(), 32);
        storage.persist(&append(1, &entries(1, 1, 2, 16))).unwrap();
        let kind = ErrorKind::StorageFull;
        match what {
            "write" => storage.faults.fail_write(nth, kind),
            _ => storage.faults.fail_sync(nth, kind),
        }
        let err = storage
            .persist(&append(3, &entries(1, 3, 1, 16)))
            .unwrap_err();
        assert!(err.is_storage_full(), "case {case}: {err}");
        assert!(
            matches!(
                storage.persist(&vote(2)),
                Err(StorageError::Poisoned { .. })
            ),
            "case {case}"
        );
        drop(storage);
        if what == "sync" {
            refused_until_reboot(dir.path(), "cannot sync", &format!("case {case}"));
        }
        let mut storage = open(dir.path(), 32);
        let recovered = storage.recover().unwrap();
        assert_eq!(recovered.entries.len(), expected, "case {case}");
        // And it goes on.
        storage
            .persist(&append(expected as u64 + 1, &entries(2, 9, 1, 16)))
            .unwrap();
        drop(storage);
        let recovered = open(dir.path(), 32).recover().unwrap();
        assert_eq!(recovered.entries.len(), expected + 1, "case {case}");
        assert_eq!(recovered.entries[expected].term, 2, "case {case}");
    }
}

#[test]
fn large_updates_are_split_and_every_segment_starts_with_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = open(dir.path(), 600);
    storage.max_record_bytes = 300;
    let mut model = MemStorage::new();
    both(&mut storage, &mut model, &vote(4));
    let first = entries(4, 1, 30, 30);
    both(&mut storage, &mut model, &append(1, &first));
    let second = entries(5, 10, 20, 20);
    let conflict = Update {
        hard_state: Some(HardState {
            term: 5,
            voted_for: None,
        }),
        snapshot: None,
        truncate_from: Some(10),
        first_index: 10,
        entries: &second,
    };
    both(&mut storage, &mut model, &conflict);
    drop(storage);
    assert_eq!(
        open(dir.path(), 600).recover().unwrap(),
        model.recover().unwrap()
    );

    let paths = segment_paths(dir.path());
    assert!(paths.len() >= 3, "{paths:?}");
    let mut records = 0;
    let mut model = MemStorage::new();
    for path in &paths {
        let (start, batches) = self::records(path);
        let start = start.unwrap_or_else(|| panic!("{} has no start record", path.display()));
        // The state it starts from is the one the segments before it end with.
        assert_eq!(start.hard_state, model.hard_state(), "{}", path.display());
        assert_eq!(start.last_index, model.last_index(), "{}", path.display());
        for batch in &batches {
            let head = batch.head;
            // Stand-ins of the right count: only the indices matter here.
            let entries = entries(0, head.first_index, batch.count as u64, 0);
            let update = Update {
                hard_state: head.hard_state,
                snapshot: None,
                truncate_from: head.truncate_from,
                first_index: head.first_index,
                entries: &entries,
            };
            model.persist(&update).unwrap();
        }
        records += batches.len();
    }
    // 30 entries of 42 bytes need 5 records of at most 300 bytes, 20 of 32 bytes 3 more.
    assert!(records >= 1 + 5 + 3, "{records} records");
}

#[test]
fn a_crash_inside_a_split_update_leaves_a_prefix_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = open(dir.path(), 1 << 20);
    storage.max_record_bytes = 200;
    storage.persist(&append(1, &entries(1, 1, 10, 8))).unwrap();
    let replacement = entries(2, 5, 20, 8);
    let update = Update {
        hard_state: Some(HardState {
            term: 2,
            voted_for: Some(1),
        }),
        snapshot: None,
        truncate_from: Some(5),
        first_index: 5,
        entries: &replacement,
    };
    storage.faults.fail_write(3, ErrorKind::StorageFull);
    assert!(storage.persist(&update).unwrap_err().is_storage_full());
    drop(storage);
    let recovered = open(dir.path(), 1 << 20).recover().unwrap();
    assert_eq!(recovered.hard_state, update.hard_state.unwrap());
    // Two records of up to 200 bytes (20 bytes an entry) made it: entries 1..=4, then 5.. from
    // the update.
    let n = recovered.entries.len();
    assert!((5 + 8..5 + 20).contains(&n), "{n} entries");
    assert_eq!(&recovered.entries[4..], &replacement[..n - 4]);
}

#[test]
fn an_entry_too_large_for_a_record_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = open(dir.path(), 1 << 20);
    storage.max_record_bytes = 100;
    let end = storage.end;
    let big = entries(1, 1, 1, 100);
    let err = storage.persist(&append(1, &big)).unwrap_err();
    assert!(
        err.to_string().contains("more than a record holds"),
        "{err}"
    );
    assert_eq!(std::fs::metadata(&storage.segment_path).unwrap().len(), end);
}

#[test]
fn an_update_above_the_largest_record_is_split() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = open(dir.path(), 1 << 30);
    let size = (MAX_RECORD_BYTES / 4) as usize;
    let update_entries = entries(1, 1, 5, size);
    storage.persist(&append(1, &update_entries)).unwrap();
    drop(storage);
    let path = dir.path().join(segment_name(1));
    let counts: Vec<u32> = batches(&path).iter().map(|b| b.count).collect();
    assert_eq!(counts, [3, 2]);
    let mut storage = open(dir.path(), 1 << 30);
    assert_eq!(storage.recover().unwrap().entries, update_entries);
}

fn snapshot(index: u64, term: u64, size: usize) -> Snapshot {
    Snapshot {
        index,
        term,
        data: Bytes::from(vec![index as u8; size]),
        config: None,
    }
}

/// Copies the files of `dir` (but its lock, and a prepared segment, which a thread of an open
/// log may be writing or removing) into a new temporary directory.
fn copy_dir(dir: &Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if name != LOCK && !prepare::is_prepared(name.to_str().unwrap()) {
            std::fs::copy(&path, copy.path().join(name)).unwrap();
        }
    }
    copy
}

/// The highest index of an entry written in the segment at `path` (0 if none).
fn high(path: &Path) -> u64 {
    batches(path)
        .iter()
        .filter(|b| b.count > 0)
        .map(|b| b.head.first_index + u64::from(b.count) - 1)
        .max()
        .unwrap_or(0)
}

/// Checks that `dir`, just opened or written to, holds nothing the log does not need: one
/// snapshot file, the log's (if any), no temporary one, and no segment whose entries the
/// snapshot covers before the last one.
fn assert_compact(dir: &Path, snapshot_index: u64, case: &str) {
    let snapshots = snapshot_paths(dir);
    if snapshot_index == 0 {
        assert_eq!(snapshots, Vec::<PathBuf>::new(), "{case}");
    } else {
        assert_eq!(
            snapshots,
            [dir.join(snapshot::file_name(snapshot_index))],
            "{case}"
        );
    }
    let segments = segment_paths(dir);
    if let [first, _, ..] = &segments[..] {
        assert!(
            high(first) > snapshot_index,
            "{case}: {} holds entries up to {}, all covered by the snapshot at {snapshot_index}",
            first.display(),
            high(first)
        );
    }
}

/// A log of small segments (`segment_size` bytes) with a first snapshot, and the model.
fn log_with_a_snapshot(dir: &Path, segment_size: u64) -> MemStorage {
    let mut storage = open(dir, segment_size);
    let mut model = MemStorage::new();
    both(&mut storage, &mut model, &vote(1));
    for i in 0..10 {
        both(
            &mut storage,
            &mut model,
            &append(1 + i * 3, &entries(1, 1 + i * 3, 3, 20)),
        );
    }
    let first = snapshot(8, 1, 100);
    let update = Update {
        snapshot: Some(&first),
        ..append(0, &[])
    };
    both(&mut storage, &mut model, &update);
    for i in 0..5 {
        both(
            &mut storage,
            &mut model,
            &append(31 + i * 3, &entries(2, 31 + i * 3, 3, 20)),
        );
    }
    assert!(segment_paths(dir).len() >= 4);
    model
}

/// An update with a snapshot, to write with records of at most `max_record` bytes.
struct SnapshotCase {
    name: &'static str,
    snapshot: Snapshot,
    hard_state: Option<HardState>,
    truncate_from: Option<u64>,
    first_index: u64,
    entries: Vec<Entry>,
    max_record: u64,
}

impl SnapshotCase {
    fn update(&self) -> Update<'_> {
        Update {
            hard_state: self.hard_state,
            snapshot: Some(&self.snapshot),
            truncate_from: self.truncate_from,
            first_index: self.first_index,
            entries: &self.entries,
        }
    }
}

/// Updates with a snapshot, after [`log_with_a_snapshot`] (entries up to 45, a snapshot at 8).
fn snapshot_cases() -> Vec<SnapshotCase> {
    vec![
        SnapshotCase {
            name: "within the log",
            snapshot: snapshot(25, 1, 300),
            hard_state: None,
            truncate_from: None,
            first_index: 0,
            entries: vec![],
            max_record: MAX_RECORD_BYTES,
        },
        SnapshotCase {
            name: "empty data, with entries after it",
            snapshot: snapshot(44, 2, 0),
            hard_state: None,
            truncate_from: None,
            first_index: 46,
            entries: entries(2, 46, 2, 20),
            max_record: MAX_RECORD_BYTES,
        },
        SnapshotCase {
            name: "within the log, with a truncation and entries, split over segments",
            snapshot: snapshot(40, 2, 50),
            hard_state: Some(HardState {
                term: 3,
                voted_for: Some(1),
            }),
            truncate_from: Some(35),
            first_index: 41,
            entries: entries(3, 41, 12, 40),
            max_record: 200,
        },
        SnapshotCase {
            name: "beyond the end, the log discarded",
            snapshot: snapshot(60, 3, 1000),
            hard_state: Some(HardState {
                term: 3,
                voted_for: None,
            }),
            truncate_from: Some(61),
            first_index: 61,
            entries: vec![],
            max_record: MAX_RECORD_BYTES,
        },
    ]
}

/// What `model` holds now.
fn state(model: &MemStorage) -> Recovered {
    model.copy().recover().unwrap()
}

#[test]
fn a_crash_at_any_step_of_a_snapshot_leaves_the_state_before_or_after_it() {
    let segment_size = 200;
    for snapshot_case in snapshot_cases() {
        let name = snapshot_case.name;
        let dir = tempfile::tempdir().unwrap();
        let model = log_with_a_snapshot(dir.path(), segment_size);
        let update = snapshot_case.update();
        let before = state(&model);
        let mut after_model = model.copy();
        after_model.persist(&update).unwrap();
        let after = state(&after_model);
        let split = snapshot_case.max_record < MAX_RECORD_BYTES;

        // (before, after (or a prefix of it) but not acknowledged, after and acknowledged)
        let mut outcomes = [0; 3];
        for nth in 1.. {
            let case = format!("{name}: crash at operation {nth}");
            let copy = copy_dir(dir.path());
            let mut storage = open(copy.path(), segment_size);
            storage.max_record_bytes = snapshot_case.max_record;
            storage.faults.crash_at(nth);
            let result = storage.persist(&update);
            // Fewer operations than `nth`: no crash, the update went through.
            let done = storage.faults.ops() < nth;
            if done {
                assert!(result.is_ok(), "{case}: {result:?}");
                assert_compact(copy.path(), snapshot_case.snapshot.index, &case);
            }
            drop(storage);
            let mut storage = open(copy.path(), segment_size);
            let recovered = storage.recover().unwrap();
            if recovered == before {
                assert!(result.is_err(), "{case}: acknowledged, then lost");
                outcomes[0] += 1;
            } else if recovered != after && split {
                // A crash between the records of a split update leaves a prefix of it, with
                // its hard state and snapshot (see the module docs).
                assert!(result.is_err(), "{case}: acknowledged, then lost");
                assert_eq!(recovered.hard_state, after.hard_state, "{case}");
                assert_eq!(recovered.snapshot, after.snapshot, "{case}");
                assert!(after.entries.starts_with(&recovered.entries), "{case}");
                outcomes[1] += 1;
            } else {
                assert_eq!(recovered, after, "{case}");
                outcomes[1 + usize::from(result.is_ok())] += 1;
            }
            // Opening finished the removals, and the log goes on.
            assert_compact(copy.path(), recovered.first_index() - 1, &case);
            let last = storage.last_index();
            let more = entries(4, last + 1, 2, 20);
            storage.persist(&append(last + 1, &more)).unwrap();
            drop(storage);
            let mut expected = recovered;
            expected.entries.extend(more);
            assert_eq!(
                open(copy.path(), segment_size).recover().unwrap(),
                expected,
                "{case}"
            );
            if done {
                break;
            }
        }
        // Every kind of crash point was met, among them crashes while removing files
        // (acknowledged, then a crash).
        assert!(outcomes[0] >= 6, "{name}: {outcomes:?}");
        assert!(outcomes[2] >= 3, "{name}: {outcomes:?}");
    }
}

#[test]
fn a_failed_removal_is_logged_and_tried_again_at_the_next_snapshot() {
    let segment_size = 200;
    let dir = tempfile::tempdir().unwrap();
    let mut model = log_with_a_snapshot(dir.path(), segment_size);
    let snap = snapshot(25, 1, 300);
    let update = Update {
        snapshot: Some(&snap),
        ..append(0, &[])
    };
    // The first operation that is not needed for the update to be acknowledged: the first
    // removal.
    let first_removal = (1..)
        .find(|&nth| {
            let copy = copy_dir(dir.path());
            let mut storage = open(copy.path(), segment_size);
            storage.faults.crash_at(nth);
            storage.persist(&update).is_ok()
        })
        .unwrap();
    let mut storage = open(dir.path(), segment_size);
    let segments = segment_paths(dir.path()).len();
    // It and every operation after it fail.
    storage.faults.crash_at(first_removal);
    both(&mut storage, &mut model, &update);
    assert_eq!(segment_paths(dir.path()).len(), segments, "nothing removed");
    assert_eq!(snapshot_paths(dir.path()).len(), 2);
    // Not poisoned: it goes on, and the next snapshot removes what the first one covered too.
    storage.faults = Faults::default();
    let last = storage.last_index();
    both(
        &mut storage,
        &mut model,
        &append(last + 1, &entries(2, last + 1, 2, 20)),
    );
    assert_eq!(snapshot_paths(dir.path()).len(), 2);
    let snap = snapshot(30, 1, 10);
    let update = Update {
        snapshot: Some(&snap),
        ..append(0, &[])
    };
    both(&mut storage, &mut model, &update);
    storage.wait_for_removals();
    assert_compact(dir.path(), 30, "after the next snapshot");
    assert!(segment_paths(dir.path()).len() < segments);
    drop(storage);
    assert_eq!(
        open(dir.path(), segment_size).recover().unwrap(),
        model.recover().unwrap()
    );
}

#[test]
fn removals_persisted_in_any_order_leave_the_state_after_the_snapshot() {
    let segment_size = 200;
    let dir = tempfile::tempdir().unwrap();
    let model = log_with_a_snapshot(dir.path(), segment_size);
    let before_dir = copy_dir(dir.path());
    let mut storage = open(dir.path(), segment_size);
    let snap = snapshot(28, 1, 64);
    let update = Update {
        snapshot: Some(&snap),
        ..append(0, &[])
    };
    let mut model = model;
    both(&mut storage, &mut model, &update);
    drop(storage);
    let after = model.recover().unwrap();
    let names = |dir: &Path| -> Vec<std::ffi::OsString> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            // A prepared segment is not part of the log: an open may start preparing one.
            .filter(|n| n != LOCK && !prepare::is_prepared(n.to_str().unwrap()))
            .collect();
        names.sort();
        names
    };
    let now = names(dir.path());
    let removed: Vec<_> = names(before_dir.path())
        .into_iter()
        .filter(|n| !now.contains(n))
        .collect();
    // Segments 1.. and the first snapshot's file.
    assert!(removed.len() >= 4, "{removed:?}");
    assert!(removed.len() <= 10, "{removed:?}");
    for subset in 1..1u32 << removed.len() {
        let case = format!("files brought back: {subset:#b} of {removed:?}");
        let copy = copy_dir(dir.path());
        for (i, name) in removed.iter().enumerate() {
            if subset & (1 << i) != 0 {
                std::fs::copy(before_dir.path().join(name), copy.path().join(name)).unwrap();
            }
        }
        let mut storage = open(copy.path(), segment_size);
        assert_eq!(storage.recover().unwrap(), after, "{case}");
        assert_compact(copy.path(), 28, &case);
        assert_eq!(names(copy.path()), now, "{case}");
    }
}

#[test]
fn snapshots_leave_only_the_segments_after_them() {
    let segment_size = 512;
    let dir = tempfile::tempdir().unwrap();
    let mut storage = open(dir.path(), segment_size);
    let mut model = MemStorage::new();
    let mut max_segments = 0;
    for round in 0..200u64 {
        let last = storage.last_index();
        both(
            &mut storage,
            &mut model,
            &append(last + 1, &entries(1, last + 1, 3, 30)),
        );
        if round % 25 == 24 {
            // A snapshot lagging 10 entries behind the log.
            let snap = snapshot(last + 3 - 10, 1, 2000);
            let update = Update {
                snapshot: Some(&snap),
                ..append(0, &[])
            };
            both(&mut storage, &mut model, &update);
            storage.wait_for_removals();
            let case = format!("after the snapshot at {}", snap.index);
            assert_compact(dir.path(), snap.index, &case);
            let segments = segment_paths(dir.path());
            // Every segment but the last holds an entry after the snapshot; 10 entries of 42
            // bytes fill at most 2 segments of 512.
            for path in &segments[..segments.len() - 1] {
                assert!(high(path) > snap.index, "{case}: {}", path.display());
            }
            assert!(segments.len() <= 3, "{case}: {segments:?}");
            max_segments = max_segments.max(segments.len());
        }
    }
    assert!(max_segments >= 2, "{max_segments}");
    assert!(
        storage.first_seq > 20,
        "first segment {}",
        storage.first_seq
    );
    drop(storage);
    assert_eq!(
        open(dir.path(), segment_size).recover().unwrap(),
        model.recover().unwrap()
    );
}

#[test]
fn an_unreadable_marker_is_refused_and_one_of_an_earlier_boot_removed() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path(), 1 << 20));
    let marker = dir.path().join(sync_failed::MARKER);
    // (case, the marker's text, opened)
    let cases = [
        (
            "empty, as a crash while writing it leaves it",
            String::new(),
            false,
        ),
        ("not a marker", "hello\n".to_owned(), false),
        (
            "this boot",
            format!(
                "zeroraft sync failed\nboot {}\nfailure cannot sync x: EIO\n",
                RealFs.boot_id().unwrap()
            ),
            false,
        ),
        (
            "an unknown boot",
            "zeroraft sync failed\nboot unknown\nfailure cannot sync x: EIO\n".to_owned(),
            false,
        ),
        (
            "an earlier boot",
            "zeroraft sync failed\nboot 0-1-2\nfailure cannot sync x: EIO\n".to_owned(),
            true,
        ),
    ];
    for (case, (name, text, opened)) in cases.into_iter().enumerate() {
        std::fs::write(&marker, &text).unwrap();
        let result = FileStorage::open(dir.path(), ID, no_ballast());
        if opened {
            result.unwrap_or_else(|e| panic!("case {case}: {name}: {e}"));
            assert!(!marker.exists(), "case {case}: {name}: removed");
        } else {
            match result.unwrap_err() {
                StorageError::SyncFailed { path, .. } => {
                    assert_eq!(path, marker, "case {case}: {name}");
                }
                other => panic!("case {case}: {name}: {other}"),
            }
            assert_eq!(
                std::fs::read_to_string(&marker).unwrap(),
                text,
                "case {case}: {name}: kept"
            );
        }
    }
}

#[test]
fn a_failed_sync_is_reported_even_if_its_marker_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = open(dir.path(), 1 << 20);
    // A directory where the marker goes: it cannot be written.
    let marker = dir.path().join(sync_failed::MARKER);
    std::fs::create_dir(&marker).unwrap();
    storage.faults.fail_sync(1, ErrorKind::Other);
    let err = storage.persist(&vote(1)).unwrap_err();
    assert!(
        matches!(&err, StorageError::Io { op, .. } if *op == "sync"),
        "{err}"
    );
    match storage.persist(&vote(2)).unwrap_err() {
        StorageError::Poisoned { reason } => {
            assert!(reason.contains("cannot sync"), "{reason}");
            assert!(
                reason.contains("SYNC-FAILED marker cannot be written"),
                "{reason}"
            );
        }
        other => panic!("{other}"),
    }
    drop(storage);
    // Whatever is at the marker's place, the directory does not open as if nothing happened.
    assert!(FileStorage::open(dir.path(), ID, no_ballast()).is_err());
}

#[test]
fn a_full_disk_frees_the_ballast_which_comes_back_when_there_is_room() {
    let dir = tempfile::tempdir().unwrap();
    let ballast = dir.path().join(ballast::BALLAST);
    let options = || WalOptions {
        create: true,
        ballast_bytes: 100 << 10,
        ..WalOptions::default()
    };
    let mut storage = FileStorage::open(dir.path(), ID, options()).unwrap();
    assert_eq!(std::fs::metadata(&ballast).unwrap().len(), 100 << 10);
    assert!(!storage.disk_full());
    storage.persist(&vote(1)).unwrap();

    storage.faults.fail_write(1, ErrorKind::StorageFull);
    assert!(storage.persist(&vote(2)).unwrap_err().is_storage_full());
    assert!(storage.disk_full());
    assert!(!ballast.exists(), "the ballast makes room");
    drop(storage);

    // Here the disk has room for it twice over: it is made again.
    let storage = FileStorage::open(dir.path(), ID, options()).unwrap();
    assert!(!storage.disk_full());
    assert_eq!(std::fs::metadata(&ballast).unwrap().len(), 100 << 10);
    drop(storage);
    // Without one wanted, it goes.
    let storage = FileStorage::open(dir.path(), ID, no_ballast()).unwrap();
    assert!(!ballast.exists());
    assert!(!storage.disk_full());
}

/// The prepared segments (`.wal.tmp`) in `dir`.
fn prepared_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| prepare::is_prepared(name))
        .collect()
}

#[test]
fn records_overwrite_the_zeros_of_a_prepared_segment_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let segment_size = 256 << 10;
    let mut storage = open(dir.path(), segment_size);
    let mut model = MemStorage::new();
    // The first segment is made at its first write; the log leaves it for a prepared one once
    // it holds `LEAVE_UNPREPARED_BYTES` and one is ready.
    let mut next = 1;
    while storage.end < LEAVE_UNPREPARED_BYTES {
        both(
            &mut storage,
            &mut model,
            &append(next, &entries(1, next, 4, 1000)),
        );
        next += 4;
    }
    assert_eq!(storage.seq, 1);
    storage.prepare_next_segment();
    assert_eq!(prepared_files(dir.path()), [prepare::file_name(2)]);
    both(
        &mut storage,
        &mut model,
        &append(next, &entries(1, next, 1, 100)),
    );
    next += 1;
    assert_eq!(storage.seq, 2, "moved to the prepared segment");
    assert!(storage.preallocated);
    assert!(prepared_files(dir.path()).is_empty(), "renamed into place");
    let second = dir.path().join(segment_name(2));
    assert_eq!(std::fs::metadata(&second).unwrap().len(), segment_size);
    // Its records are read back, and zeros follow them to the end of the file.
    let (start, written) = records(&second);
    assert_eq!(start.unwrap().last_index, next - 2);
    assert_eq!(written.len(), 1);
    let end = storage.end as usize;
    let bytes = std::fs::read(&second).unwrap();
    assert!(bytes[end..].iter().all(|&b| b == 0));
    assert!(bytes[end - 1] != 0);

    // Opened again, the log goes on after its last record, not at the end of the file, and
    // the file does not grow.
    drop(storage);
    let mut storage = open(dir.path(), segment_size);
    assert_eq!(storage.recover().unwrap(), model.recover().unwrap());
    assert_eq!(storage.end as usize, end);
    assert!(storage.preallocated);
    for _ in 0..20 {
        both(
            &mut storage,
            &mut model,
            &append(next, &entries(2, next, 2, 300)),
        );
        next += 2;
    }
    assert_eq!(std::fs::metadata(&second).unwrap().len(), segment_size);
    assert_eq!(records(&second).1.len(), 21);
    assert_eq!(storage.recover().unwrap(), model.recover().unwrap());
    drop(storage);
    let mut storage = open(dir.path(), segment_size);
    assert_eq!(storage.recover().unwrap(), model.recover().unwrap());
}

#[test]
fn a_prepared_segment_left_unused_is_removed_by_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = open(dir.path(), 64 << 10);
    let mut model = MemStorage::new();
    both(&mut storage, &mut model, &append(1, &entries(1, 1, 3, 10)));
    storage.prepare_next_segment();
    assert_eq!(prepared_files(dir.path()), [prepare::file_name(2)]);
    drop(storage);
    let mut storage = open(dir.path(), 64 << 10);
    assert!(prepared_files(dir.path()).is_empty());
    assert_eq!(storage.recover().unwrap(), model.recover().unwrap());
}
