//! Tests that need the inside of [`FileStorage`]: injected write and sync failures, records
//! smaller than [`MAX_RECORD_BYTES`] to split updates over, and the records as written.

use std::io::ErrorKind;

use bytes::Bytes;

use super::format::{self, Frame, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use super::*;
use crate::MemStorage;

const ID: Identity = Identity {
    cluster: 1,
    node: 0,
};

fn open(dir: &Path, segment_size: u64) -> FileStorage {
    FileStorage::open(
        dir,
        ID,
        WalOptions {
            segment_size,
            create: true,
        },
    )
    .unwrap()
}

fn entries(term: u64, first: u64, n: u64, size: usize) -> Vec<Entry> {
    (first..first + n)
        .map(|i| {
            let mut command = vec![b'-'; size.max(8)];
            command[..8].copy_from_slice(&i.to_le_bytes());
            Entry {
                term,
                command: Bytes::from(command),
            }
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

/// The start record and the batches of the segment at `path`, parsed.
fn records(path: &Path) -> (Option<format::Start>, Vec<format::Batch>) {
    let buf = fs::read(path).unwrap();
    let mut pos = SEGMENT_HEADER_BYTES;
    let mut start = None;
    let mut out = Vec::new();
    while pos < buf.len() {
        let Frame::Intact { len } = format::frame_at(&buf, pos) else {
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
    recovery::list(dir)
        .unwrap()
        .segments
        .into_iter()
        .map(|(_, path)| path)
        .collect()
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
    assert!(fs::metadata(&storage.segment_path).unwrap().len() > end);
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
    // The record was written whole (to the page cache) before its sync failed, so reopening
    // finds it; after a machine crash it might as well be gone. Either is a valid state: it was
    // never acknowledged.
    let recovered = open(dir.path(), 1 << 20).recover().unwrap();
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
        ("write", 1, 2), // the new segment's header, half written: the segment is removed
        ("write", 2, 2), // the first record of the new segment, half written: a torn tail
        ("sync", 1, 2),  // the new segment's header
        ("sync", 2, 2),  // the directory
        ("sync", 3, 3),  // the first record of the new segment
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
    assert_eq!(fs::metadata(&storage.segment_path).unwrap().len(), end);
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
