//! The write-ahead log through its public API, one module per concern: the segment format,
//! opening a data directory, round trips against the in-memory model, snapshot files, and
//! damaged files. One test binary (the allocation budgets have one of their own:
//! `wal_alloc.rs`, whose counting allocator must see no other test).

#[path = "../common/mod.rs"]
mod common;

mod format;
mod open;
mod roundtrip;
mod snapshot;
mod torn;
