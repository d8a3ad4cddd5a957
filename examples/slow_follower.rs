//! The memory a slow follower costs: three nodes in this process on the reliable in-memory
//! network, the leader loaded with commands of `--payload-kib` KiB (each its own allocation, as a
//! service's commands are; at most `--window` of them proposed and not yet committed), and one
//! follower whose state machine stalls for `--stall-ms` after
//! each batch it applies, so that its thread reads its inbox only now and then and AppendEntries
//! wait there. Every node compacts its log above `--compact-mib` MiB.
//!
//! ```text
//! cargo run --release --example slow_follower -- [--payload-kib 64] [--seconds 10] [--stall-ms 50] [--compact-mib 16] [--inflight-kib 8192] [--window 64]
//! ```
//!
//! `--inflight-kib` is `Config::max_inflight_bytes` in KiB; 0 lifts the bound (the leader may
//! then send the slow follower `max_inflight × max_append_bytes`, 64 MiB by default, before it
//! answers). Prints the peak resident size sampled every 10 ms, the commit rate, and how far
//! the slow follower got.

#[path = "support/args.rs"]
mod args;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;
use zeroraft::storage::Snapshot;
use zeroraft::{Compaction, Config, Network, NetworkConfig, Raft, RestoreError, StateMachine};

const NODES: usize = 3;

/// Applies nothing; stalls after each batch if it is the slow node's.
struct Machine {
    id: usize,
    slow: Arc<AtomicUsize>,
    stall: Duration,
    applied: u64,
}

impl StateMachine for Machine {
    fn apply(&mut self, index: u64, _term: u64, _command: &Bytes) {
        self.applied = index;
    }

    fn flush(&mut self, _last_index: u64) {
        if self.slow.load(Relaxed) == self.id {
            std::thread::sleep(self.stall);
        }
    }

    fn snapshot(&mut self) -> Option<Bytes> {
        Some(Bytes::copy_from_slice(&self.applied.to_le_bytes()))
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), RestoreError> {
        self.applied = snapshot.index;
        Ok(())
    }
}

/// This process's resident size in bytes.
fn resident() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn main() {
    let payload = (args::number("--payload-kib", 64).max(1) << 10) as usize;
    let seconds = args::number("--seconds", 10);
    let stall = Duration::from_millis(args::number("--stall-ms", 50));
    let compact = args::number("--compact-mib", 16) << 20;
    let inflight = args::number("--inflight-kib", 8192) << 10;
    let window = args::number("--window", 64).max(1);
    let config = Config {
        compaction: Compaction {
            every_entries: None,
            above_bytes: Some(compact),
        },
        max_inflight_bytes: if inflight == 0 {
            usize::MAX
        } else {
            inflight as usize
        },
        spin: args::spin_us(Config::production().spin),
        ..Config::production()
    };
    let slow = Arc::new(AtomicUsize::new(usize::MAX));
    let net = Network::new(NetworkConfig::new(NODES)).expect("network");
    let rafts: Vec<Raft> = (0..NODES)
        .map(|i| {
            net.connect(i);
            let machine = Machine {
                id: i,
                slow: slow.clone(),
                stall,
                applied: 0,
            };
            Raft::builder(
                config.clone(),
                i,
                NODES,
                net.endpoint(i, 1).expect("endpoint"),
            )
            .start_with_state_machine(machine)
            .expect("node")
        })
        .collect();
    let leader = loop {
        if let Some(r) = rafts.iter().find(|r| r.get_state().1) {
            break r.clone();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let slow_id = (leader.id() + 1) % NODES;
    slow.store(slow_id, Relaxed);
    let baseline = resident();

    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let (mut peak, mut proposed) = (baseline, 0u64);
    std::thread::scope(|s| {
        let (leader, stop) = (&leader, &stop);
        let client = s.spawn(move || {
            let mut sent = 0u64;
            while !stop.load(Relaxed) {
                if sent >= leader.status().commit_index + window {
                    // The window is full: wait for commits (no timing depends on this).
                    std::thread::sleep(Duration::from_micros(100));
                    continue;
                }
                // A fresh allocation per command, as a service's commands are.
                match leader.try_start(Bytes::from(vec![0x5a; payload])) {
                    Ok(_) => sent += 1,
                    Err(e) => panic!("the leader refused a command: {e}"),
                }
            }
            sent
        });
        while started.elapsed() < Duration::from_secs(seconds) {
            peak = peak.max(resident());
            std::thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Relaxed);
        proposed = client.join().expect("client");
    });
    let elapsed = started.elapsed().as_secs_f64();
    let status = leader.status();
    let behind = rafts[slow_id].status();
    println!(
        "{} KiB commands, bound {}: peak resident {:.1} MB ({:.1} MB before the load), {:.0} commits/s ({:.1} MB/s), {proposed} proposed; slow follower applied {} of {} ({} snapshots installed)",
        payload >> 10,
        if inflight == 0 {
            "none".to_string()
        } else {
            format!("{} KiB", inflight >> 10)
        },
        peak as f64 / 1e6,
        baseline as f64 / 1e6,
        status.commit_index as f64 / elapsed,
        status.commit_index as f64 * payload as f64 / elapsed / 1e6,
        behind.last_applied,
        status.commit_index,
        behind.snapshots_installed
    );
    for r in &rafts {
        r.kill();
    }
}
