//! Commit latency percentiles: one client, one proposal at a time, from `start` to the
//! leader's apply, over a 3-node (or `--nodes N`) cluster on the reliable in-memory network.
//!
//! ```text
//! cargo run --release --example latency -- [--nodes 3] [--commits 100000] [--spin-us 0]
//! ```
//!
//! Prints p50, p90, p99, p99.9 and max from an HDR histogram, with the CPU time each commit cost
//! the whole process (client and every node thread).

#[path = "support/args.rs"]
mod args;

use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use zeroraft::Config;
use zeroraft_harness::load::LoadCluster;

fn main() {
    let nodes = args::number("--nodes", 3) as usize;
    let commits = args::number("--commits", 100_000);
    let defaults = Config::default();
    let spin = args::spin_us(defaults.spin);
    if !(1..=9).contains(&nodes) {
        eprintln!("--nodes must be between 1 and 9");
        std::process::exit(2);
    }
    let cluster = LoadCluster::new(nodes, Config { spin, ..defaults });
    let payload = Bytes::from_static(&[7u8; 16]);
    // Warm-up, not recorded.
    for _ in 0..commits / 10 {
        cluster.one(&payload);
    }
    let mut histogram =
        Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).expect("valid bounds");
    let (wall0, cpu0) = (Instant::now(), cpu_time::ProcessTime::now());
    let mut last_report = Instant::now();
    for i in 0..commits {
        let latency = cluster.one(&payload);
        histogram.saturating_record(latency.as_nanos() as u64);
        if last_report.elapsed() >= Duration::from_secs(1) {
            eprint!("\r{i}/{commits} commits");
            last_report = Instant::now();
        }
    }
    let (wall, cpu) = (wall0.elapsed(), cpu0.elapsed());
    eprint!("\r{:40}\r", "");
    let us = |q: f64| histogram.value_at_quantile(q) as f64 / 1e3;
    println!(
        "{nodes} nodes, {commits} commits, spin {} µs: p50 {:.1} µs  p90 {:.1} µs  p99 {:.1} µs  p99.9 {:.1} µs  max {:.1} µs",
        spin.as_micros(),
        us(0.5),
        us(0.9),
        us(0.99),
        us(0.999),
        histogram.max() as f64 / 1e3
    );
    println!(
        "mean {:.1} µs wall, {:.1} µs CPU per commit (all threads)",
        wall.as_secs_f64() * 1e6 / commits as f64,
        cpu.as_secs_f64() * 1e6 / commits as f64
    );
}
