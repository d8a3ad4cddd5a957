//! Raft nodes over the TCP transport, in one process on loopback: the engine drives a TCP
//! endpoint exactly as it drives an in-memory one. (Separate processes, kills and restarts are in
//! tests/system/processes.rs.)

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::Receiver;
use zeroraft::transport::tcp::{TcpConfig, TcpNetwork};
use zeroraft::{ApplyMsg, Config, Raft};
use zeroraft_harness::trickle::Trickle;

const PATIENCE: Duration = Duration::from_secs(30);

struct Node {
    raft: Raft,
    applied: Receiver<ApplyMsg>,
    net: TcpNetwork<zeroraft::engine::Message>,
}

fn start(id: usize, listener: TcpListener, addrs: &[SocketAddr]) -> Node {
    let (net, endpoint) =
        TcpNetwork::start(TcpConfig::new(id, 77, addrs.to_vec()), listener).expect("transport");
    let (tx, applied) = crossbeam_channel::unbounded();
    let config = Config {
        seed: Some(id as u64 + 1),
        ..Config::production()
    };
    let raft = Raft::new(config, id, addrs.len(), endpoint, tx).expect("node");
    Node { raft, applied, net }
}

fn cluster(n: usize) -> (Vec<Node>, Vec<SocketAddr>) {
    let listeners: Vec<_> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let addrs: Vec<_> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let nodes = listeners
        .into_iter()
        .enumerate()
        .map(|(i, l)| start(i, l, &addrs))
        .collect();
    (nodes, addrs)
}

/// Proposes `command` until a leader takes it; returns its index.
fn propose(nodes: &[Node], command: &Bytes) -> u64 {
    let until = Instant::now() + PATIENCE;
    loop {
        if let Some((index, _)) = nodes
            .iter()
            .find_map(|n| n.raft.try_start(command.clone()).ok())
        {
            return index;
        }
        assert!(Instant::now() < until, "no leader took the command");
        std::thread::sleep(Duration::from_millis(10)); // waiting for an election
    }
}

/// The commands node `node` applies up to `index` (skipping the leader's no-ops).
fn applied_until(node: &Node, index: u64) -> Vec<Bytes> {
    let mut out = Vec::new();
    loop {
        let msg = node
            .applied
            .recv_timeout(PATIENCE)
            .expect("applied in time");
        if let ApplyMsg::Command { command, .. } = &msg
            && !command.is_empty()
        {
            out.push(command.clone());
        }
        if msg.index() >= index {
            return out;
        }
    }
}

#[test]
fn three_nodes_over_tcp_agree_on_every_command() {
    let (nodes, _) = cluster(3);
    let mut last = 0;
    let mut sent = Vec::new();
    for i in 0..2_000u32 {
        // Small commands, and now and then one larger than a read buffer.
        let len = if i % 500 == 0 { 200_000 } else { 16 };
        let command = Bytes::from(vec![(i % 251) as u8; len]);
        last = propose(&nodes, &command);
        sent.push(command);
    }
    for (i, node) in nodes.iter().enumerate() {
        let got = applied_until(node, last);
        assert_eq!(got.len(), sent.len(), "node {i} applied every command");
        assert!(got == sent, "node {i} applied the commands in order");
        assert!(
            (0..3).all(|j| j == i || node.net.link(j).connected),
            "node {i} is connected to everyone"
        );
    }
}

#[test]
fn a_leader_cut_off_by_its_transport_is_replaced() {
    let (mut nodes, _) = cluster(3);
    let first = propose(&nodes, &Bytes::from_static(b"one"));
    let leader = nodes
        .iter()
        .position(|n| n.raft.get_state().1)
        .expect("a leader");
    for node in &nodes {
        applied_until(node, first);
    }
    // The leader's transport stops, as if its process lost the network.
    let old = nodes.remove(leader);
    old.net.shutdown();
    let second = propose(&nodes, &Bytes::from_static(b"two"));
    for node in &nodes {
        assert_eq!(applied_until(node, second), [Bytes::from_static(b"two")]);
    }
    // CheckQuorum: the old leader, hearing from nobody, steps down.
    let until = Instant::now() + PATIENCE;
    while old.raft.get_state().1 {
        assert!(Instant::now() < until, "the cut-off leader still leads");
        std::thread::sleep(Duration::from_millis(10)); // polling its state
    }
}

/// Polls `done` until it holds, panicking with `what` after [`PATIENCE`].
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(2)); // polling a condition, not hiding a race
    }
}

/// 20 connections that send nothing and 20 that send a byte every 100 ms, held on a node's peer
/// port, do not delay a restarted peer's link: each handshake runs on a thread of its own within
/// one deadline, instead of one after another on the accept thread.
#[test]
fn silent_and_trickling_connections_do_not_delay_a_restarted_peer() {
    type Net = TcpNetwork<zeroraft::engine::Message>;
    let listeners: Vec<_> = (0..2)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let addrs: Vec<_> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let start = |id: usize, l: TcpListener| {
        Net::start(TcpConfig::new(id, 77, addrs.clone()), l).expect("transport")
    };
    let mut it = listeners.into_iter();
    let (l0, l1) = (it.next().unwrap(), it.next().unwrap());
    let (net0, ep0) = start(0, l0);
    let (net1, _ep1) = start(1, l1);
    wait_until("connected", || {
        net0.link(1).connected && net1.link(0).connected
    });
    net0.shutdown();
    drop(ep0);
    wait_until("node 1 saw node 0 go", || !net1.link(0).connected);
    // 20 connections that send nothing and 20 that send a byte every 100 ms (too slowly to
    // finish a 25-byte hello within the 2 s handshake deadline), held on node 1's peer port.
    let _silent: Vec<std::net::TcpStream> = (0..20)
        .map(|_| std::net::TcpStream::connect(addrs[1]).expect("connect"))
        .collect();
    let trickle =
        Trickle::start(addrs[1], 20, &[], b'Z', Duration::from_millis(100)).expect("connections");
    wait_until("the trickle is under way", || trickle.rounds() >= 3);
    // Node 0 restarts: its connection must not wait behind theirs.
    let restarted = Instant::now();
    let l0 = TcpListener::bind(addrs[0]).expect("the address is free again");
    let (net0, _ep0) = start(0, l0);
    wait_until("reconnected", || {
        net0.link(1).connected && net1.link(0).connected
    });
    let took = restarted.elapsed();
    eprintln!("a restarted peer's link was up after {took:?}, with 40 hostile connections held");
    assert!(
        took < Duration::from_secs(1),
        "the link took {took:?}: it waited behind hostile handshakes"
    );
}
