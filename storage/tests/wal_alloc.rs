//! Allocation budgets of the write-ahead log: persisting allocates nothing once its buffer has
//! grown, recovery allocates per segment and per record, never per entry, and a snapshot is
//! written and read back without a second copy of its data.
//!
//! Alone in its binary, and one test: the counting allocator sees every thread of the process,
//! the test harness's too (which allocates to report a test that ends while another measures).

mod common;

use std::alloc::System;

use bytes::Bytes;
use common::open;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use zeroraft_storage::{Entry, Snapshot, Storage, Update};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn allocation_budgets() {
    persisting_allocates_nothing_once_warm();
    recovery_allocates_per_record_not_per_entry();
    a_snapshot_is_written_and_read_without_a_copy();
}

fn batch(n: usize) -> Vec<Entry> {
    (0..n)
        .map(|_| Entry::new(1, Bytes::from_static(&[5; 16])))
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

fn persisting_allocates_nothing_once_warm() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = open(dir.path(), 4 << 20).unwrap();
    let entries = batch(64);
    // Warm: the first segment, made at its first write, holds enough to be left for one
    // prepared at its full size, which is ready, and the next persist moves to it.
    let mut next = 1;
    while common::segments(dir.path()).len() < 2 {
        if next > 64 * 64 {
            storage.prepare_next_segment();
        }
        storage.persist(&append(next, &entries)).unwrap();
        next += 64;
    }
    let region = Region::new(GLOBAL);
    for _ in 0..50 {
        storage.persist(&append(next, &entries)).unwrap();
        next += 64;
    }
    let stats = region.change();
    assert_eq!(
        (stats.allocations, stats.reallocations),
        (0, 0),
        "50 persists of 64 entries"
    );
}

fn recovery_allocates_per_record_not_per_entry() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = open(dir.path(), 256 << 10).unwrap();
    let entries = batch(1000);
    let records = 100u64;
    for i in 0..records {
        storage.persist(&append(1 + i * 1000, &entries)).unwrap();
    }
    drop(storage);
    let region = Region::new(GLOBAL);
    let mut storage = open(dir.path(), 256 << 10).unwrap();
    let recovered = storage.recover().unwrap();
    let stats = region.change();
    assert_eq!(recovered.entries.len(), 100_000);
    let segments = common::segments(dir.path()).len() as u64;
    assert!(segments >= 10, "{segments} segments");
    // A fixed number for opening, a few per segment (its path, its buffer, the shared count of
    // its `Bytes`, the list of its records) and per record at most one (that list growing);
    // none per entry.
    let budget = 40 + 8 * segments as usize + records as usize;
    assert!(
        stats.allocations + stats.reallocations <= budget,
        "{} allocations and {} reallocations recovering {} entries in {segments} segments",
        stats.allocations,
        stats.reallocations,
        recovered.entries.len()
    );
}

fn a_snapshot_is_written_and_read_without_a_copy() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = open(dir.path(), 1 << 20).unwrap();
    let entries = batch(1000);
    storage.persist(&append(1, &entries)).unwrap();
    let size = 32 << 20;
    let snapshot = Snapshot {
        index: 600,
        term: 1,
        data: Bytes::from(vec![7u8; size]),
        config: None,
    };
    let update = Update {
        snapshot: Some(&snapshot),
        ..append(0, &[])
    };
    let region = Region::new(GLOBAL);
    storage.persist(&update).unwrap();
    let stats = region.change();
    // Paths and the list of files to remove, nothing in proportion to the data.
    assert!(
        stats.bytes_allocated < 64 << 10,
        "{} bytes allocated writing a snapshot of {size} bytes",
        stats.bytes_allocated
    );
    drop(storage);

    let region = Region::new(GLOBAL);
    let mut storage = open(dir.path(), 1 << 20).unwrap();
    let recovered = storage.recover().unwrap();
    let stats = region.change();
    assert_eq!(recovered.snapshot.as_ref(), Some(&snapshot));
    assert_eq!(recovered.entries.len(), 400);
    // One buffer for the snapshot file (its data a slice of it), one for the segment.
    let segment = common::len(&common::last_segment(dir.path())) as usize;
    let budget = size + 48 + segment + (256 << 10);
    assert!(
        stats.bytes_allocated + stats.bytes_reallocated.max(0) as usize <= budget,
        "{} bytes allocated and {} reallocated reading a snapshot of {size} bytes",
        stats.bytes_allocated,
        stats.bytes_reallocated
    );
}
