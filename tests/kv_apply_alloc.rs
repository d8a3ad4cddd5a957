//! Allocations per applied entry of the key-value state machine (`KvMachine::apply`), with client
//! sessions: a `Put` of a session that acknowledges its answers records its own answer and
//! forgets the acknowledged ones without allocating, with one session or many interleaved, and
//! so does the format-1 apply path that replays logs written before sessions. (A `Get` through
//! the log records the value it read: one allocation each, expected.) Alone in its binary, so
//! that the counting allocator sees only this test.
//!
//! The commands are encoded here by hand, byte for byte as the log holds them (format 2:
//! `2, kind, stamp`, then `session, seq, ack, key, value`; format 1: `1, kind, client, seq, key,
//! value`), which pins that format too.
use std::alloc::System;
use std::sync::Arc;

use bytes::Bytes;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use zeroraft::engine::StateMachine;
use zeroraft::kv::KvState;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn register(stamp: u64) -> Bytes {
    let mut v = vec![2u8, 4];
    for x in [stamp, 3_600_000, 10_000] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    Bytes::from(v)
}

fn legacy(kind: u8, client: u64, seq: u64, key: &[u8], value: &[u8]) -> Bytes {
    let mut v = vec![1u8, kind];
    for x in [client, seq] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.extend_from_slice(&(key.len() as u32).to_le_bytes());
    v.extend_from_slice(key);
    v.extend_from_slice(&(value.len() as u32).to_le_bytes());
    v.extend_from_slice(value);
    Bytes::from(v)
}

fn request(
    kind: u8,
    stamp: u64,
    session: u64,
    seq: u64,
    ack: u64,
    key: &[u8],
    value: &[u8],
) -> Bytes {
    let mut v = vec![2u8, kind];
    for x in [stamp, session, seq, ack] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.extend_from_slice(&(key.len() as u32).to_le_bytes());
    v.extend_from_slice(key);
    if kind != 3 {
        v.extend_from_slice(&(value.len() as u32).to_le_bytes());
        v.extend_from_slice(value);
    }
    Bytes::from(v)
}

/// `sessions` sessions interleaved, each request acknowledging all but the last `window - 1`.
fn measure(name: &str, kind: u8, sessions: u64, window: u64, keys: usize, count: u64) -> f64 {
    let state = Arc::new(KvState::new());
    let mut m = state.machine();
    let mut index = 0;
    let mut ids = Vec::new();
    index += 1;
    m.apply(index, 1, &register(999));
    for k in 0..keys {
        index += 1;
        m.apply(
            index,
            1,
            &request(
                1,
                999,
                1,
                k as u64 + 1,
                k as u64 + 1,
                format!("k{k}").as_bytes(),
                &[b'w'; 16],
            ),
        );
    }
    for s in 0..sessions {
        index += 1;
        m.apply(index, 1, &register(1000 + s));
        ids.push(index);
    }
    let keys: Vec<Vec<u8>> = (0..keys).map(|k| format!("k{k}").into_bytes()).collect();
    let value = [b'v'; 16];
    let entries: Vec<Bytes> = (0..2 * count)
        .map(|i| {
            let s = i % sessions;
            let seq = i / sessions + 1;
            let ack = seq.saturating_sub(window - 1).max(1);
            if kind == 0 {
                legacy(
                    1,
                    s + 1_000_000,
                    seq,
                    &keys[i as usize % keys.len()],
                    &value,
                )
            } else {
                request(
                    kind,
                    2000 + i,
                    ids[s as usize],
                    seq,
                    ack,
                    &keys[i as usize % keys.len()],
                    &value,
                )
            }
        })
        .collect();
    for e in &entries[..count as usize] {
        index += 1;
        m.apply(index, 1, e);
    }
    m.flush(index);
    let region = Region::new(GLOBAL);
    let t0 = std::time::Instant::now();
    for e in &entries[count as usize..] {
        index += 1;
        m.apply(index, 1, e);
    }
    m.flush(index);
    let took = t0.elapsed();
    let stats = region.change();
    let per_entry = stats.allocations as f64 / count as f64;
    println!(
        "{name}: {per_entry:.4} allocations per applied entry ({} over {count}), {:.0} ns per entry",
        stats.allocations,
        took.as_nanos() as f64 / count as f64
    );
    per_entry
}

/// At most this many allocations per applied `Put` (the log's budget per committed entry).
const BUDGET: f64 = 0.01;

#[test]
fn a_put_allocates_nothing_per_applied_entry() {
    let cases: [(&str, u8, u64, u64, usize); 4] = [
        ("put, 1 session, ack = seq, 1 key", 1, 1, 1, 1),
        (
            "put, 64 sessions interleaved, window 64, 1000 keys",
            1,
            64,
            64,
            1000,
        ),
        (
            "format-1 put (the old apply path), 1 client, 1 key",
            0,
            1,
            1,
            1,
        ),
        (
            "format-1 put (the old apply path), 64 clients, 1000 keys",
            0,
            64,
            64,
            1000,
        ),
    ];
    for (case, (name, kind, sessions, window, keys)) in cases.into_iter().enumerate() {
        let per_entry = measure(name, kind, sessions, window, keys, 100_000);
        assert!(
            per_entry <= BUDGET,
            "case {case}: {name}: {per_entry:.4} allocations per entry, above {BUDGET}"
        );
    }
    // A Get through the log records the value it read for a retry: one allocation each.
    let per_entry = measure("get through the log, 1 session", 3, 1, 1, 1, 100_000);
    assert!(per_entry <= 1.01, "{per_entry:.4} allocations per Get");
}
