//! Allocation budget of the TCP transport at steady state: messages without payload (a
//! heartbeat's AppendEntries and its reply) cross a loopback connection in both directions, and
//! the whole process, writer and reader threads included, allocates at most 0.01 times per
//! message.
//!
//! Why that holds whatever the scheduling: a peer's queue and the inbox are allocated when the
//! node starts; the writer encodes into a buffer it reuses; the reader cuts frames out of its
//! receive buffer without copying, and replaces that buffer (one allocation) only when it is
//! full while messages decoded from it are still held, at most once per 64 KiB received, which
//! is more than 700 of these messages. An allocation per message, or per write or read call,
//! would break the budget by far.
//!
//! With TLS between the nodes the budget is the same: once the handshakes are done, the writer
//! encrypts into a buffer it reuses and the reader decrypts in place in one, records as well as
//! messages allocating nothing (rustls's own record layer, used before, allocated for each
//! record, about 0.03 times per message here).
//!
//! Alone in its binary: the counting allocator sees every thread of the process.

use std::alloc::System;
use std::net::TcpListener;
use std::time::{Duration, Instant, SystemTime};

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use zeroraft::engine::Message;
use zeroraft::engine::core::{AppendEntries, AppendEntriesReply};
use zeroraft::transport::tcp::{Authority, TcpConfig, TcpNetwork};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const BUDGET_PER_MESSAGE: f64 = 0.01;

fn heartbeat(i: u64) -> Message {
    Message::AppendEntries(AppendEntries {
        term: 3,
        prev_log_index: i,
        prev_log_term: 3,
        entries: Vec::new(),
        leader_commit: i,
        round: i,
    })
}

fn reply(i: u64) -> Message {
    Message::AppendEntriesReply(AppendEntriesReply {
        term: 3,
        success: true,
        index: i,
        conflict_term: 0,
        conflict_index: 0,
        round: i,
    })
}

/// Allocations per message at steady state between two nodes, with TLS from `ca` if given.
fn allocations_per_message(ca: Option<&Authority>) -> f64 {
    let listeners: Vec<_> = (0..2)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let addrs: Vec<_> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let mut nodes: Vec<_> = listeners
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let mut config = TcpConfig::new(i, 9, addrs.clone());
            config.tls = ca.map(|ca| ca.peer_tls(9, i, today()).unwrap());
            TcpNetwork::<Message>::start(config, l).unwrap()
        })
        .collect();
    let until = Instant::now() + Duration::from_secs(20);
    while !(nodes[0].0.link(1).connected && nodes[1].0.link(0).connected) {
        assert!(Instant::now() < until, "connected in time");
        std::thread::sleep(Duration::from_millis(5)); // polling the link state
    }
    // Node 0 sends heartbeats, node 1 answers each; in windows of 256 so no queue overflows.
    let exchange = |nodes: &mut Vec<(TcpNetwork<Message>, zeroraft::Endpoint)>, rounds: u64| {
        let mut received = 0u64;
        for round in 0..rounds {
            for k in 0..256 {
                nodes[0].1.send(1, heartbeat(round * 256 + k));
            }
            let mut got = (0, 0);
            let until = Instant::now() + Duration::from_secs(20);
            while got != (256, 256) {
                assert!(
                    Instant::now() < until,
                    "round {round}: {got:?} of 256 each way"
                );
                if let Some((_, m)) = nodes[1].1.try_recv() {
                    let Message::AppendEntries(a) = m else {
                        panic!("a heartbeat")
                    };
                    nodes[1].1.send(0, reply(a.round));
                    got.0 += 1;
                } else if nodes[0].1.try_recv().is_some() {
                    got.1 += 1;
                } else {
                    std::thread::yield_now();
                }
            }
            received += 512;
        }
        received
    };
    exchange(&mut nodes, 20); // warm up: buffers and queues at their steady sizes
    let region = Region::new(GLOBAL);
    let messages = exchange(&mut nodes, 200);
    let allocations = region.change().allocations;
    let per_message = allocations as f64 / messages as f64;
    eprintln!(
        "{}: {allocations} allocations for {messages} messages: {per_message:.4} per message",
        if ca.is_some() { "TLS" } else { "plaintext" }
    );
    per_message
}

/// From an hour ago to a day from now.
fn today() -> std::ops::Range<SystemTime> {
    let now = SystemTime::now();
    now - Duration::from_secs(3600)..now + Duration::from_secs(86_400)
}

// One test, plaintext then TLS: the counting allocator sees every thread of the process, so the
// two must not run at once.
#[test]
fn messages_over_tcp_allocate_nothing_at_steady_state() {
    let plain = allocations_per_message(None);
    assert!(
        plain <= BUDGET_PER_MESSAGE,
        "plaintext: {plain:.4} allocations per message"
    );
    let ca = Authority::new("zeroraft test CA", today()).unwrap();
    let tls = allocations_per_message(Some(&ca));
    assert!(
        tls <= BUDGET_PER_MESSAGE,
        "TLS: {tls:.4} allocations per message"
    );
}
