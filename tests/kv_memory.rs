//! What a client connection can make a server hold: connections that announce the largest frame
//! and send it a byte at a time hold little memory, cannot keep their connection past the frame
//! deadline, and count toward the connection limit from the start. A test binary of its own, so
//! that the resident memory it reads is this server's alone.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::thread::{JoinHandle, sleep};
use std::time::{Duration, Instant};

use zeroraft::kv::protocol::{self, MAX_FRAME, Response};
use zeroraft::kv::{ClientOptions, KvClient, KvServer, KvState, ServerOptions};
use zeroraft::{Config, Network, NetworkConfig, Raft};
use zeroraft_harness::scale;

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

/// Connections that each announce a frame of [`MAX_FRAME`] bytes and then send its body one
/// byte every 100 ms, from one thread, until dropped.
struct Trickle {
    stop: Arc<AtomicBool>,
    /// Bytes of body sent on each connection so far.
    rounds: Arc<AtomicUsize>,
    /// How many of the connections the server has closed.
    closed: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Trickle {
    fn start(addr: SocketAddr, count: usize) -> Self {
        let streams: Vec<TcpStream> = (0..count)
            .map(|_| {
                let mut s = TcpStream::connect(addr).expect("connect");
                s.write_all(&(MAX_FRAME as u32).to_le_bytes()).unwrap();
                s.set_nonblocking(true).unwrap();
                s
            })
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, rounds, closed) = (stop.clone(), rounds.clone(), closed.clone());
            let mut open: Vec<Option<TcpStream>> = streams.into_iter().map(Some).collect();
            std::thread::spawn(move || {
                while !stop.load(SeqCst) {
                    for slot in &mut open {
                        let Some(s) = slot else { continue };
                        // The server answers nothing to a partial frame: a read that returns
                        // end of file or an error means it closed the connection.
                        let mut byte = [0u8; 64];
                        let gone = match s.read(&mut byte) {
                            Ok(0) => true,
                            Ok(_) => false,
                            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                        };
                        if gone || s.write(&[7]).is_err() {
                            *slot = None;
                            closed.fetch_add(1, SeqCst);
                        }
                    }
                    rounds.fetch_add(1, SeqCst);
                    sleep(Duration::from_millis(100)); // the trickle's pace
                }
            })
        };
        Self {
            stop,
            rounds,
            closed,
            thread: Some(thread),
        }
    }
}

impl Drop for Trickle {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
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
    let trickle = Trickle::start(addr, hostile);
    wait_for("every hostile connection to be served", || {
        server.connections() >= hostile
    });
    let from = trickle.rounds.load(SeqCst);
    wait_for("a few bytes into every frame", || {
        trickle.rounds.load(SeqCst) >= from + 3
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
    assert_eq!(
        trickle.closed.load(SeqCst),
        0,
        "no hostile connection closed"
    );
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
    let trickle = Trickle::start(addr, 5);
    wait_for("the server to close every trickling connection", || {
        trickle.closed.load(SeqCst) == 5
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
