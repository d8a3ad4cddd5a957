//! The key-value state machine alone: `Put`s of 16-byte values applied through `KvMachine` on
//! one thread, as a node's thread applies them, with client sessions that acknowledge their
//! answers as `bench --connect` does (`--sessions` of them interleaved, `--keys` distinct keys
//! `k<i>`). Every command is encoded before the clock starts.
//!
//! ```text
//! cargo run --release --example kv_apply -- [--puts 2000000] [--keys 1000] [--sessions 4]
//! ```
//!
//! Prints the time and CPU time per applied `Put`. For instructions per `Put`, run it under
//! `perf stat -e instructions` with two counts and divide the difference by the difference in
//! `--puts`, which takes out the set-up.

#[path = "support/args.rs"]
#[allow(dead_code)] // only `number` is used here
mod args;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use zeroraft::engine::StateMachine;
use zeroraft::kv::KvState;

/// A format-2 command as the log holds it: `2, kind, stamp`, then the kind's fields.
fn entry(kind: u8, fields: &[u64], key: &[u8], value: &[u8]) -> Bytes {
    let mut v = vec![2u8, kind];
    for x in fields {
        v.extend_from_slice(&x.to_le_bytes());
    }
    if kind != 4 {
        v.extend_from_slice(&(key.len() as u32).to_le_bytes());
        v.extend_from_slice(key);
        v.extend_from_slice(&(value.len() as u32).to_le_bytes());
        v.extend_from_slice(value);
    }
    Bytes::from(v)
}

fn main() {
    let puts = args::number("--puts", 2_000_000);
    let keys = args::number("--keys", 1000).max(1);
    let sessions = args::number("--sessions", 4).max(1);
    let window = 1024;
    let state = Arc::new(KvState::new());
    let mut machine = state.machine();
    let mut index = 0;
    let mut ids = Vec::new();
    for s in 0..sessions {
        index += 1;
        // Register: stamp, timeout (ms), most sessions.
        machine.apply(index, 1, &entry(4, &[1 + s, 3_600_000, 10_000], b"", b""));
        ids.push(index);
    }
    let keys: Vec<Vec<u8>> = (0..keys).map(|k| format!("k{k}").into_bytes()).collect();
    let value = [b'v'; 16];
    let entries: Vec<Bytes> = (0..puts)
        .map(|i| {
            let s = i % sessions;
            let seq = i / sessions + 1;
            let ack = seq.saturating_sub(window - 1).max(1);
            let key = &keys[i as usize % keys.len()];
            entry(1, &[1000 + i, ids[s as usize], seq, ack], key, &value)
        })
        .collect();
    let (wall0, cpu0) = (Instant::now(), cpu_time::ThreadTime::now());
    for chunk in entries.chunks(64) {
        for e in chunk {
            index += 1;
            machine.apply(index, 1, e);
        }
        machine.flush(index);
    }
    let (wall, cpu) = (wall0.elapsed(), cpu0.elapsed());
    println!(
        "{puts} puts over {} keys, {sessions} sessions: {:.1} ns per put, {:.1} ns CPU per put",
        keys.len(),
        wall.as_nanos() as f64 / puts.max(1) as f64,
        cpu.as_nanos() as f64 / puts.max(1) as f64,
    );
}
