//! What a linearizable read costs next to a write, on a 3-node (or `--nodes N`) cluster on the
//! reliable in-memory network running `Config::production()`: one client, one operation at a
//! time, from the call to its answer, for writes (`start` to the leader's apply), ReadIndex reads
//! (`read_index` to `PendingRead::wait`) and lease reads (`read_lease`); then reads in bursts of
//! `--burst` outstanding (default 256), to show how reads asked for together share a heartbeat
//! round. The kinds take turns in blocks of 1 000, so that all see the same machine.
//!
//! ```text
//! cargo run --release --example reads -- [--nodes 3] [--ops 100000] [--burst 256] [--spin-us 50]
//! ```
//!
//! Prints p50, p99 and p99.9 per kind, with the CPU time each operation cost the whole process
//! (client and every node thread).

#[path = "support/args.rs"]
mod args;

use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use zeroraft::Config;
use zeroraft_harness::load::LoadCluster;

const BLOCK: u64 = 1_000;

#[derive(Clone, Copy)]
enum Kind {
    Write,
    ReadIndex,
    Lease,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Write, Kind::ReadIndex, Kind::Lease];

    fn name(self) -> &'static str {
        match self {
            Kind::Write => "write",
            Kind::ReadIndex => "ReadIndex read",
            Kind::Lease => "lease read",
        }
    }
}

struct Tally {
    histogram: Histogram<u64>,
    cpu: Duration,
    ops: u64,
}

fn main() {
    let nodes = args::number("--nodes", 3) as usize;
    let ops = args::number("--ops", 100_000).max(BLOCK);
    let burst = args::number("--burst", 256).clamp(1, zeroraft::Raft::MAX_PENDING_READS as u64);
    if !(1..=9).contains(&nodes) {
        eprintln!("--nodes must be between 1 and 9");
        std::process::exit(2);
    }
    let production = Config::production();
    let spin = args::spin_us(production.spin);
    let cluster = LoadCluster::new(nodes, Config { spin, ..production });
    let payload = Bytes::from_static(&[7u8; 16]);
    let one = |kind: Kind| -> Duration {
        let leader = cluster.node(cluster.leader());
        match kind {
            Kind::Write => cluster.one(&payload),
            Kind::ReadIndex | Kind::Lease => {
                let t0 = Instant::now();
                let pending = match kind {
                    Kind::Lease => leader.read_lease(),
                    _ => leader.read_index(),
                };
                pending
                    .and_then(|p| p.wait_timeout(Duration::from_secs(10)))
                    .expect("a stable cluster confirms every read");
                t0.elapsed()
            }
        }
    };
    // Warm-up, not recorded.
    for kind in Kind::ALL {
        for _ in 0..BLOCK {
            one(kind);
        }
    }
    let mut tallies: Vec<Tally> = Kind::ALL
        .iter()
        .map(|_| Tally {
            histogram: Histogram::new_with_bounds(1, 10_000_000_000, 3).expect("valid bounds"),
            cpu: Duration::ZERO,
            ops: 0,
        })
        .collect();
    let mut last_report = Instant::now();
    for block in 0..ops / BLOCK {
        for (kind, tally) in Kind::ALL.into_iter().zip(&mut tallies) {
            let cpu0 = cpu_time::ProcessTime::now();
            for _ in 0..BLOCK {
                let latency = one(kind);
                tally.histogram.saturating_record(latency.as_nanos() as u64);
            }
            tally.cpu += cpu0.elapsed();
            tally.ops += BLOCK;
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            eprint!("\r{}/{ops} of each", (block + 1) * BLOCK);
            last_report = Instant::now();
        }
    }
    eprint!("\r{:40}\r", "");
    println!(
        "{nodes} nodes, Config::production(), spin {} µs, one client, {ops} of each:",
        spin.as_micros()
    );
    for (kind, tally) in Kind::ALL.into_iter().zip(&tallies) {
        let us = |q: f64| tally.histogram.value_at_quantile(q) as f64 / 1e3;
        println!(
            "  {:15} p50 {:6.1} µs  p99 {:6.1} µs  p99.9 {:7.1} µs  CPU {:5.1} µs per op",
            kind.name(),
            us(0.5),
            us(0.99),
            us(0.999),
            tally.cpu.as_secs_f64() * 1e6 / tally.ops as f64
        );
    }

    // Bursts: `burst` reads outstanding at once, waited for together.
    for kind in [Kind::ReadIndex, Kind::Lease] {
        let leader = cluster.node(cluster.leader());
        let (wall0, cpu0) = (Instant::now(), cpu_time::ProcessTime::now());
        let mut done = 0;
        while done < ops {
            let pending: Vec<_> = (0..burst)
                .map(|_| match kind {
                    Kind::Lease => leader.read_lease(),
                    _ => leader.read_index(),
                })
                .collect();
            for p in pending {
                p.and_then(|p| p.wait_timeout(Duration::from_secs(10)))
                    .expect("a stable cluster confirms every read");
            }
            done += burst;
        }
        let (wall, cpu) = (wall0.elapsed(), cpu0.elapsed());
        println!(
            "  {:15} in bursts of {burst}: {:.0} k reads/s, CPU {:.2} µs per read",
            kind.name(),
            done as f64 / wall.as_secs_f64() / 1e3,
            cpu.as_secs_f64() * 1e6 / done as f64
        );
    }
}
