//! Start → apply latency with many proposing threads: what a thread descheduled between claiming
//! its log index and queueing its command costs the proposals behind it.
//!
//! ```text
//! cargo run --release --example contention -- [--threads 64] [--rate 20000] [--seconds 10] \
//!     [--spin-us 50]
//! ```
//!
//! A 3-node cluster on the reliable in-memory network. `--threads` client threads share an offered
//! load of `--rate` proposals a second, each proposing at its share of the rate and sleeping in
//! between. Every proposal's latency runs from just before its `try_start` to the leader's
//! `apply` of its index; the p50, p99, p99.9 and max are printed. Index claims are ordered, so a
//! proposer preempted after its claim holds back the append of every later index until it runs
//! again; the tail percentiles show how often and how long that is.

#[path = "support/args.rs"]
mod args;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use zeroraft::{Config, Network, NetworkConfig, Raft, StartError};

const NODES: usize = 3;

/// One timestamp slot per log index (nanoseconds since the run's epoch; 0 = none).
fn slots(n: usize) -> Arc<Vec<AtomicU64>> {
    Arc::new((0..n).map(|_| AtomicU64::new(0)).collect())
}

fn main() {
    let threads = args::number("--threads", 64).max(1);
    let rate = args::number("--rate", 20_000).max(1);
    let seconds = args::number("--seconds", 10).max(1);
    let defaults = Config::default();
    let config = Config {
        spin: args::spin_us(defaults.spin),
        ..defaults
    };
    // Room for every proposal of the run and the warm-up, with margin for a faster rate.
    let capacity = (rate * (seconds + 2) * 2) as usize;

    let epoch = Instant::now();
    let network = Network::new(NetworkConfig::new(NODES)).expect("a valid network");
    let applied: Vec<Arc<Vec<AtomicU64>>> = (0..NODES).map(|_| slots(capacity)).collect();
    let nodes: Vec<Raft> = (0..NODES)
        .map(|i| {
            let endpoint = network.endpoint(i, 7).expect("id in range");
            let applied = applied[i].clone();
            let record = move |index: u64, _term: u64, _command: &Bytes| {
                if let Some(slot) = applied.get(index as usize) {
                    slot.store(epoch.elapsed().as_nanos() as u64, Relaxed);
                }
            };
            Raft::builder(config.clone(), i, NODES, endpoint)
                .start_with_state_machine(record)
                .expect("the node starts")
        })
        .collect();
    for i in 0..NODES {
        network.connect(i);
    }
    let leader = loop {
        if let Some(i) = (0..NODES).find(|&i| nodes[i].get_state().1) {
            break i;
        }
        // Polling the published state while the first election runs.
        std::thread::sleep(Duration::from_millis(5));
    };

    let started = slots(capacity);
    let stop = Arc::new(AtomicBool::new(false));
    let period = Duration::from_nanos(1_000_000_000 * threads / rate);
    let measure_from = Instant::now() + Duration::from_secs(1); // a second of warm-up
    let clients: Vec<_> = (0..threads)
        .map(|t| {
            let raft = nodes[leader].clone();
            let started = started.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("client-{t}"))
                .spawn(move || {
                    let payload = Bytes::from_static(&[7u8; 16]);
                    // Spread the threads' first proposals over one period.
                    let mut next = Instant::now() + period * t as u32 / threads as u32;
                    while !stop.load(Relaxed) {
                        let now = Instant::now();
                        if next > now {
                            std::thread::sleep(next - now);
                        }
                        next += period;
                        let at = epoch.elapsed().as_nanos() as u64;
                        match raft.try_start(payload.clone()) {
                            Ok((index, _)) if Instant::now() >= measure_from => {
                                if let Some(slot) = started.get(index as usize) {
                                    slot.store(at, Relaxed);
                                }
                            }
                            Ok(_) | Err(StartError::Busy { .. }) => {}
                            Err(e) => {
                                eprintln!("client {t}: {e}");
                                return;
                            }
                        }
                    }
                })
                .expect("a client thread")
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds + 1));
    stop.store(true, Relaxed);
    for client in clients {
        client.join().expect("a client ends");
    }
    // Let the last proposals apply.
    std::thread::sleep(Duration::from_millis(200));

    let mut histogram =
        Histogram::<u64>::new_with_bounds(1, 100_000_000_000, 3).expect("valid bounds");
    let mut missing = 0u64;
    for (start, apply) in started.iter().zip(applied[leader].iter()) {
        let (start, apply) = (start.load(Relaxed), apply.load(Relaxed));
        match (start, apply) {
            (0, _) => {}
            (_, 0) => missing += 1,
            _ => histogram
                .record(apply.saturating_sub(start).max(1))
                .expect("in range"),
        }
    }
    for node in &nodes {
        node.kill();
    }
    let us = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{threads} threads, {rate}/s offered, {seconds} s: {} proposals, start → leader's apply \
         p50 {:.1} µs p99 {:.1} µs p99.9 {:.1} µs max {:.1} µs ({missing} not applied)",
        histogram.len(),
        us(0.5),
        us(0.99),
        us(0.999),
        histogram.max() as f64 / 1000.0
    );
}
