//! How long a follower hears nothing while a large key-value state is snapshotted under load:
//! three nodes of the key-value service in this process (each a `KvState` behind a `KvServer` on
//! loopback, on the reliable in-memory network, `Config::production()`, storage in memory),
//! filled through the client protocol with `--mib` MiB of values of `--value-kib` KiB, then
//! loaded for `--seconds` with writes of the same size (so that the log passes its byte bound
//! and every node snapshots its whole state again and again).
//!
//! ```text
//! cargo run --release --example large_state -- [--mib 1024] [--value-kib 64] [--seconds 20] [--compact-mib 64] [--spin-us 50]
//! ```
//!
//! While loaded, a watcher reads every node's published status every millisecond and reports
//! the longest time a follower's count of messages received stood still (the leader sends each
//! follower AppendEntries under load, heartbeats otherwise, so this is the longest silence a
//! follower saw), the snapshots the leader took, the term changes and the write rate.

#[path = "support/args.rs"]
mod args;

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use zeroraft::kv::{ClientOptions, KvClient, KvServer, KvState, ServerOptions};
use zeroraft::{Compaction, Config, MemStorage, Network, NetworkConfig, Raft, Role};

const NODES: usize = 3;
const WRITERS: usize = 4;

fn main() {
    let mib = args::number("--mib", 1024);
    let value_kib = args::number("--value-kib", 64).max(1);
    let seconds = args::number("--seconds", 20);
    let compact_mib = args::number("--compact-mib", 64);
    let config = Config {
        compaction: Compaction {
            every_entries: None,
            above_bytes: Some(compact_mib << 20),
        },
        spin: args::spin_us(Config::production().spin),
        ..Config::production()
    };
    let net = Network::new(NetworkConfig::new(NODES)).expect("network");
    let mut rafts = Vec::new();
    let mut servers = Vec::new();
    for i in 0..NODES {
        net.connect(i);
        let state = Arc::new(KvState::new());
        let raft = Raft::builder(
            config.clone(),
            i,
            NODES,
            net.endpoint(i, 1).expect("endpoint"),
        )
        .storage(MemStorage::new())
        .start_with_state_machine(state.machine())
        .expect("node");
        let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
        rafts.push(raft.clone());
        servers.push(
            KvServer::start(raft, state, listener, ServerOptions::default()).expect("server"),
        );
    }
    let addrs: Vec<_> = servers.iter().map(KvServer::local_addr).collect();
    let value = "v".repeat((value_kib << 10) as usize);
    let keys = ((mib << 10) / value_kib).max(1);

    // Fill: WRITERS clients, each its share of the keys.
    let started = Instant::now();
    std::thread::scope(|s| {
        for w in 0..WRITERS as u64 {
            let (addrs, value) = (addrs.clone(), &value);
            s.spawn(move || {
                let mut client = KvClient::new(addrs, ClientOptions::default());
                for k in (w..keys).step_by(WRITERS) {
                    client.put(&format!("k{k}"), value).expect("put");
                }
            });
        }
    });
    println!(
        "filled {} keys of {value_kib} KiB ({} MiB) in {:.1} s",
        keys,
        (keys * value_kib) >> 10,
        started.elapsed().as_secs_f64()
    );

    // Load, and watch.
    let stop = AtomicBool::new(false);
    let writes = AtomicU64::new(0);
    let before: Vec<_> = rafts.iter().map(Raft::status).collect();
    let started = Instant::now();
    let ((gap, gap_node), snapshots, own_pause) = std::thread::scope(|s| {
        for w in 0..WRITERS as u64 {
            let (addrs, value, stop, writes) = (addrs.clone(), &value, &stop, &writes);
            s.spawn(move || {
                let mut client = KvClient::new(addrs, ClientOptions::default());
                let mut k = w;
                while !stop.load(Relaxed) {
                    client.put(&format!("k{}", k % keys), value).expect("put");
                    writes.fetch_add(1, Relaxed);
                    k += WRITERS as u64;
                }
            });
        }
        let watcher = s.spawn(|| {
            // Per node: the count last seen, and since when.
            let mut seen: Vec<(u64, Instant)> = rafts
                .iter()
                .map(|r| (r.status().messages_in, Instant::now()))
                .collect();
            let mut longest = (Duration::ZERO, 0);
            // The watcher's own longest pause between two readings: no silence shorter than
            // that can be told apart from the watcher waiting for a core.
            let (mut last_round, mut own_pause) = (Instant::now(), Duration::ZERO);
            // Per node: its snapshot index, and how often it moved while the node led.
            let mut compactions: Vec<(u64, u64)> = rafts
                .iter()
                .map(|r| (r.status().snapshot_index, 0))
                .collect();
            while started.elapsed() < Duration::from_secs(seconds) {
                own_pause = own_pause.max(last_round.elapsed());
                last_round = Instant::now();
                for (i, raft) in rafts.iter().enumerate() {
                    let status = raft.status();
                    let now = Instant::now();
                    if status.snapshot_index != compactions[i].0 {
                        compactions[i].0 = status.snapshot_index;
                        compactions[i].1 += u64::from(status.role == Role::Leader);
                    }
                    if status.messages_in != seen[i].0 {
                        if status.role == Role::Follower {
                            longest = longest.max((now - seen[i].1, i));
                        }
                        seen[i] = (status.messages_in, now);
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            stop.store(true, Relaxed);
            (
                longest,
                compactions.iter().map(|c| c.1).sum::<u64>(),
                own_pause,
            )
        });
        watcher.join().expect("watcher")
    });
    let elapsed = started.elapsed().as_secs_f64();
    let after: Vec<_> = rafts.iter().map(Raft::status).collect();
    let leader = after.iter().position(|s| s.role == Role::Leader);
    let term_changes: u64 = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.term - b.term)
        .max()
        .unwrap_or(0);
    let elections: u64 = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.elections_started - b.elections_started)
        .sum();
    let installed: u64 = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.snapshots_installed - b.snapshots_installed)
        .sum();
    let writes = writes.load(Relaxed);
    println!(
        "loaded {elapsed:.1} s: {:.0} writes/s ({:.0} MiB/s); longest silence a follower saw: \
         {:.1} ms (node {gap_node}; the watcher's own longest pause {:.1} ms); leader's \
         compactions: {snapshots}; term changes: {term_changes}; \
         elections started: {elections}; snapshots sent to followers: {installed}; leader's log \
         from index {} to {}",
        writes as f64 / elapsed,
        (writes * value_kib) as f64 / 1024.0 / elapsed,
        gap.as_secs_f64() * 1e3,
        own_pause.as_secs_f64() * 1e3,
        leader.map_or(0, |l| after[l].snapshot_index),
        leader.map_or(0, |l| after[l].last_log_index),
    );
    drop(servers);
}
