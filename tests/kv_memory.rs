//! What a client connection can make a server hold: connections that announce the largest frame
//! and send it a byte at a time hold little memory, cannot keep their connection past the frame
//! deadline, and count toward the connection limit from the start. A test binary of its own, so
//! that the resident memory it reads is this server's alone.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use zeroraft::kv::protocol::{self, MAX_FRAME, Response};
use zeroraft::kv::{ClientOptions, KvClient, KvServer, KvState, ServerOptions};
use zeroraft::{Config, Network, NetworkConfig, Raft};
use zeroraft_harness::scale;
use zeroraft_harness::trickle::Trickle;

/// How long any condition may take to come true on a busy machine.
const PATIENCE: Duration = Duration::from_secs(30);

fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        // Polling interval, not a race cover: the condition is checked again after it.
        sleep(Duration::from_millis(5));
    }
}

/// A one-node cluster on the in-memory network, serving on a loopback port.
fn one_node(options: ServerOptions) -> (Network, KvServer) {
    let network = Network::new(NetworkConfig::new(1)).expect("valid network");
    let endpoint = network.endpoint(0, fastrand::u64(..)).expect("endpoint");
    let state = Arc::new(KvState::new());
    let raft = Raft::builder(Config::production(), 0, 1, endpoint)
        .start_with_state_machine(state.machine())
        .expect("node starts");
    network.connect(0);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let server = KvServer::start(raft, state, listener, options).expect("server starts");
    (network, server)
}

/// This process's resident memory, in bytes.
fn resident() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("a VmRSS line");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in kB");
    kb * 1024
}

/// `count` connections to `addr` that each announce a frame of [`MAX_FRAME`] bytes and then
/// send its body one byte every 100 ms.
fn trickle(addr: SocketAddr, count: usize) -> Trickle {
    let prefix = (MAX_FRAME as u32).to_le_bytes();
    Trickle::start(addr, count, &prefix, 7, Duration::from_millis(100)).expect("connections")
}

#[test]
fn connections_announcing_large_frames_hold_little_memory() {
    let hostile = scale::size("ZERORAFT_HOSTILE_CONNECTIONS", 200, 1000) as usize;
    let options = ServerOptions {
        max_connections: hostile + 8,
        // Long enough that none of them is closed while the memory is read.
        frame_timeout: 2 * PATIENCE,
        ..ServerOptions::default()
    };
    let (_network, server) = one_node(options);
    let addr = server.local_addr();
    let mut client = KvClient::new(vec![addr], ClientOptions::default());
    client.put("k", "before").expect("a put before");
    let before = resident();
    let trickle = trickle(addr, hostile);
    wait_for("every hostile connection to be served", || {
        server.connections() >= hostile
    });
    let from = trickle.rounds();
    wait_for("a few bytes into every frame", || {
        trickle.rounds() >= from + 3
    });
    let during = resident();
    let grown = during.saturating_sub(before);
    eprintln!(
        "{hostile} connections announcing {MAX_FRAME} bytes each: resident memory grew by {} KiB \
         ({} KiB per connection), to {} MiB",
        grown / 1024,
        grown / 1024 / hostile as u64,
        during >> 20
    );
    // Two threads and a read buffer each; nothing near the frames they announced.
    let bound = hostile as u64 * (512 << 10);
    assert!(
        grown < bound,
        "{hostile} connections grew resident memory by {grown} bytes (bound {bound})"
    );
    assert_eq!(trickle.closed(), 0, "no hostile connection closed");
    // A client's operations go through meanwhile, within their timeout.
    client.put("k", "during").expect("a put during");
    assert_eq!(client.get("k").expect("a get during"), "during");
    drop(trickle);
}

#[test]
fn a_frame_trickling_past_its_deadline_closes_its_connection() {
    let options = ServerOptions {
        frame_timeout: Duration::from_millis(500),
        ..ServerOptions::default()
    };
    let (_network, server) = one_node(options);
    let addr = server.local_addr();
    // Each connection sends a byte every 100 ms, far more often than the idle timeout: only the
    // frame's deadline can close it.
    let trickle = trickle(addr, 5);
    wait_for("the server to close every trickling connection", || {
        trickle.closed() == 5
    });
    wait_for("the server to release them", || server.connections() == 0);
    let mut client = KvClient::new(vec![addr], ClientOptions::default());
    client.put("k", "v").expect("a put");
}

#[test]
fn connections_count_toward_the_limit_before_their_first_frame() {
    let options = ServerOptions {
        max_connections: 2,
        ..ServerOptions::default()
    };
    let (_network, server) = one_node(options);
    let addr = server.local_addr();
    let _silent: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    wait_for("both silent connections to be served", || {
        server.connections() == 2
    });
    let mut third = TcpStream::connect(addr).expect("connect");
    third.set_read_timeout(Some(PATIENCE)).unwrap();
    let body = protocol::read_frame(&mut third, MAX_FRAME)
        .expect("an answer")
        .expect("a frame");
    assert_eq!(Response::decode(body).unwrap(), Response::Overloaded);
}
