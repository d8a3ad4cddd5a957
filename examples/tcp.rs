//! The engine alone over the TCP transport: three nodes in this process, on loopback, each with
//! its own `TcpNetwork`, driven as `LoadCluster` drives the in-memory network. It separates what
//! the transport costs from what the key-value service and separate processes add
//! (`scripts/cluster-bench.sh`).
//!
//! ```text
//! cargo run --release --example tcp [-- [--tls] IN_FLIGHT [SECONDS]]
//! ```
//!
//! With `--tls`, the nodes' links speak mutual TLS, with certificates of a CA made for the run.
//!
//! Prints the one-client latency (2 000 commands, one at a time, `start` to the leader's apply),
//! then commits per second and CPU per commit (the whole process) with IN_FLIGHT (default 4096)
//! commands kept in flight, then what the leader's links carried.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Acquire, Ordering::Release};
use std::time::{Duration, Instant};

use bytes::Bytes;
use zeroraft::transport::tcp::{Authority, TcpConfig, TcpNetwork};
use zeroraft::{Config, Raft, StartError};

fn main() {
    let tls = std::env::args().any(|a| a == "--tls");
    let mut args = std::env::args().skip(1).filter(|a| a != "--tls");
    let window: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(4096);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let n = 3;
    let listeners: Vec<_> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind loopback"))
        .collect();
    let addrs: Vec<_> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let valid = {
        let now = std::time::SystemTime::now();
        now - Duration::from_secs(3600)..now + Duration::from_secs(86_400)
    };
    let ca = tls.then(|| Authority::new("zeroraft example CA", valid.clone()).expect("a CA"));
    let applied: Vec<Arc<AtomicU64>> = (0..n).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let mut networks = Vec::new();
    let rafts: Vec<Raft> = listeners
        .into_iter()
        .enumerate()
        .map(|(i, listener)| {
            let mut config = TcpConfig::new(i, 1, addrs.clone());
            config.tls = ca
                .as_ref()
                .map(|ca| ca.peer_tls(1, i, valid.clone()).expect("node certificates"));
            let (network, endpoint) = TcpNetwork::start(config, listener).expect("transport");
            networks.push(network);
            let mark = applied[i].clone();
            let config = Config {
                seed: Some(i as u64 + 1),
                ..Config::default()
            };
            Raft::builder(config, i, n, endpoint)
                .start_with_state_machine(move |index: u64, _: u64, _: &Bytes| {
                    mark.store(index, Release)
                })
                .expect("node")
        })
        .collect();
    let leader = loop {
        if let Some(l) = rafts.iter().position(|r| r.get_state().1) {
            break l;
        }
        std::thread::sleep(Duration::from_millis(10)); // waiting for the election
    };
    let payload = Bytes::from_static(&[7u8; 16]);
    let mut latencies = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let t0 = Instant::now();
        let (index, _) = rafts[leader].try_start(payload.clone()).expect("leader");
        while applied[leader].load(Acquire) < index {
            std::hint::spin_loop();
        }
        latencies.push(t0.elapsed());
    }
    latencies.sort_unstable();
    println!(
        "one client: p50 {:.1} µs, p99 {:.1} µs",
        latencies[latencies.len() / 2].as_secs_f64() * 1e6,
        latencies[latencies.len() * 99 / 100].as_secs_f64() * 1e6
    );
    let started = Instant::now();
    let cpu = cpu_time::ProcessTime::now();
    let base = applied[leader].load(Acquire);
    let mut last = base;
    while started.elapsed() < Duration::from_secs(seconds) {
        while last < window + applied[leader].load(Acquire) {
            match rafts[leader].try_start(payload.clone()) {
                Ok((index, _)) => last = index,
                Err(StartError::Busy { .. }) => std::thread::yield_now(),
                Err(e) => panic!("the leader refused: {e}"),
            }
        }
        std::thread::yield_now();
    }
    let done = applied[leader].load(Acquire) - base;
    let elapsed = started.elapsed();
    println!(
        "{window} in flight: {:.3} M commits/s, {:.3} µs CPU per commit",
        done as f64 / elapsed.as_secs_f64() / 1e6,
        cpu.elapsed().as_secs_f64() * 1e6 / done as f64
    );
    for (j, network) in networks.iter().enumerate() {
        if j == leader {
            for peer in (0..n).filter(|&p| p != leader) {
                let link = network.link(peer);
                println!(
                    "leader -> n{peer}: {} messages in {} writes, {:.1} MB, {} dropped",
                    link.sent,
                    link.writes,
                    link.bytes_sent as f64 / 1e6,
                    link.dropped
                );
            }
        }
    }
    for raft in &rafts {
        raft.kill();
    }
}
