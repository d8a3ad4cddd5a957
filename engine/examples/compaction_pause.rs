//! What a compaction costs the thread that steps the core: a log filled with `--entries`
//! entries (16-byte commands, each its own allocation, as a service's are; with `--shared 1`
//! all one static payload, as `zeroraft bench`'s are), compacted up to all
//! but the last 64, again and again, as a node compacting every `--entries` applied entries
//! does. Prints, over `--cycles` cycles, the time `Log::compact_to` took (median, 99th
//! percentile, largest) and the time the pushes between two compactions took (the log growing
//! back, page faults included).
//!
//! ```text
//! cargo run --release -p zeroraft-engine --example compaction_pause -- [--entries 100000] [--cycles 60] [--shared 0]
//! ```
//!
//! As the node does, the log is given a spare vector, and the vector it leaves behind with the
//! dropped entries is emptied and given back for the next compaction: here on another thread,
//! outside the timed part (the node drops them a slice per round of its loop).

use std::time::{Duration, Instant};

use bytes::Bytes;
use zeroraft_engine::core::{Entry, Log};

fn number(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

fn main() {
    let entries = number("--entries", 100_000);
    let cycles = number("--cycles", 60);
    let shared = number("--shared", 0) == 1;
    let command = || {
        if shared {
            Bytes::from_static(&[7u8; 16])
        } else {
            Bytes::copy_from_slice(&[7u8; 16])
        }
    };
    let mut log = Log::new();
    let (to_free, freeing) = crossbeam_channel::bounded::<Vec<Entry>>(1);
    let (emptied_tx, emptied) = crossbeam_channel::bounded::<Vec<Entry>>(1);
    let freer = std::thread::spawn(move || {
        while let Ok(mut v) = freeing.recv() {
            v.clear();
            let _ = emptied_tx.send(v);
        }
    });
    log.give_spare(Vec::new());
    let (mut pauses, mut fills) = (Vec::new(), Vec::new());
    for cycle in 0..cycles + 2 {
        let started = Instant::now();
        while log.len() < entries {
            log.push(Entry::new(1, command()));
        }
        let fill = started.elapsed();
        let started = Instant::now();
        log.compact_to(log.last_index() - 64);
        let pause = started.elapsed();
        if let Some(retired) = log.take_retired() {
            let _ = to_free.send(retired);
        }
        if let Ok(v) = emptied.recv_timeout(Duration::from_secs(1)) {
            log.give_spare(v);
        }
        if cycle >= 2 {
            // The first two grow the vectors.
            pauses.push(pause);
            fills.push(fill);
        }
    }
    drop(to_free);
    let _ = freer.join();
    pauses.sort();
    fills.sort();
    println!(
        "{entries} entries per compaction ({}), {cycles} compactions: compact_to p50 {:.1} µs p99 {:.1} µs max {:.1} µs; refilling p50 {:.1} µs",
        if shared {
            "one static payload"
        } else {
            "a payload each"
        },
        percentile(&pauses, 0.5),
        percentile(&pauses, 0.99),
        percentile(&pauses, 1.0),
        percentile(&fills, 0.5)
    );
}
