//! Closed-loop throughput: one client keeps `--window` proposals in flight on a cluster on the
//! reliable in-memory network; prints committed entries per second and CPU per entry.
//!
//! ```text
//! cargo run --release --example throughput -- [--nodes 3] [--window 4096] [--count 2000000] [--payload 16] [--rounds 5] [--spin-us N]
//! ```

#[path = "support/args.rs"]
mod args;

use std::time::Instant;

use zeroraft::Config;
use zeroraft_harness::load::{LoadCluster, static_payload};

fn main() {
    let nodes = args::number("--nodes", 3) as usize;
    let window = args::number("--window", 4096).max(1);
    let count = args::number("--count", 2_000_000).max(1);
    let rounds = args::number("--rounds", 5).max(1);
    let payload_len = args::number("--payload", 16) as usize;
    let defaults = Config::default();
    let spin = args::spin_us(defaults.spin);
    if !(1..=9).contains(&nodes) || payload_len > 1 << 20 {
        eprintln!("--nodes must be 1 to 9 and --payload at most 1 MiB");
        std::process::exit(2);
    }
    let cluster = LoadCluster::new(nodes, Config { spin, ..defaults });
    let payload = static_payload(payload_len);
    let mut rates = Vec::new();
    let mut cpus = Vec::new();
    for round in 1..=rounds {
        let (wall0, cpu0) = (Instant::now(), cpu_time::ProcessTime::now());
        cluster.closed_loop(count, window, &payload);
        let (wall, cpu) = (wall0.elapsed(), cpu0.elapsed());
        let rate = count as f64 / wall.as_secs_f64();
        let cpu_per = cpu.as_secs_f64() * 1e6 / count as f64;
        println!(
            "round {round}: {:.2} M entries/s, {cpu_per:.3} µs CPU per entry",
            rate / 1e6
        );
        rates.push(rate);
        cpus.push(cpu_per);
    }
    rates.sort_by(f64::total_cmp);
    cpus.sort_by(f64::total_cmp);
    println!(
        "median of {rounds}: {:.2} M entries/s, {:.3} µs CPU per entry ({nodes} nodes, {payload_len} B, window {window})",
        rates[rates.len() / 2] / 1e6,
        cpus[cpus.len() / 2]
    );
}
