//! Allocation budgets of the write-ahead log: persisting allocates nothing once its buffer has
//! grown, and recovery allocates per segment and per record, never per entry.
//!
//! Alone in its binary: the counting allocator sees every thread of the process.

mod common;

use std::alloc::System;
use std::sync::Mutex;

use bytes::Bytes;
use common::open;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use zeroraft_storage::{Entry, Storage, Update};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The counters are process-wide: tests in this binary measure one at a time.
static MEASURING: Mutex<()> = Mutex::new(());

fn batch(n: usize) -> Vec<Entry> {
    (0..n)
        .map(|_| Entry {
            term: 1,
            command: Bytes::from_static(&[5; 16]),
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

#[test]
fn persisting_allocates_nothing_once_warm() {
    let _alone = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut storage = open(dir.path(), 1 << 30).unwrap();
    let entries = batch(64);
    storage.persist(&append(1, &entries)).unwrap();
    let region = Region::new(GLOBAL);
    for i in 1..50 {
        storage.persist(&append(1 + i * 64, &entries)).unwrap();
    }
    let stats = region.change();
    assert_eq!(
        (stats.allocations, stats.reallocations),
        (0, 0),
        "49 persists of 64 entries"
    );
}

#[test]
fn recovery_allocates_per_record_not_per_entry() {
    let _alone = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
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
