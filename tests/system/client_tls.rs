//! The client port with mutual TLS: who is refused (no certificate, another CA's, an expired
//! one, a node's, another cluster's, plaintext), what an ordinary client may not do that the
//! operator may (leadership transfer, the full status), and that connections which never finish
//! their handshake hold nothing up. Also what a thousand connections announcing the largest
//! frame cost a `zeroraft serve` process.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::Range;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use zeroraft::kv::protocol::{MAX_FRAME, Request};
use zeroraft::kv::stream::Stream;
use zeroraft::kv::{ClientOptions, KvClient, KvError, KvServer, KvState, ServerOptions};
use zeroraft::transport::tcp::{Authority, ClientRole, ClientTls, ServiceTls, node_name};
use zeroraft::{Config, Network, NetworkConfig, Raft, Role};
use zeroraft_harness::trickle::Trickle;

/// How long any condition may take to come true on a busy machine.
const PATIENCE: Duration = Duration::from_secs(30);

/// The cluster id of the tests' certificates.
const CLUSTER: u64 = 42;

fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        // Polling interval, not a race cover: the condition is checked again after it.
        sleep(Duration::from_millis(10));
    }
}

/// From an hour ago to a day from now.
fn today() -> Range<SystemTime> {
    let now = SystemTime::now();
    now - Duration::from_secs(3600)..now + Duration::from_secs(86_400)
}

/// `n` nodes on the in-memory network, each serving clients over TLS on a loopback port with
/// its certificate of `ca`.
struct TlsCluster {
    network: Network,
    servers: Vec<KvServer>,
}

impl TlsCluster {
    fn start(ca: &Authority, n: usize, options: ServerOptions) -> Self {
        let network = Network::new(NetworkConfig::new(n)).expect("valid network");
        let servers = (0..n)
            .map(|i| {
                let endpoint = network.endpoint(i, fastrand::u64(..)).expect("endpoint");
                let state = Arc::new(KvState::new());
                let raft = Raft::builder(Config::production(), i, n, endpoint)
                    .start_with_state_machine(state.machine())
                    .expect("node starts");
                let node = ca.peer_tls(CLUSTER, i, today()).expect("node certificate");
                let options = ServerOptions {
                    tls: Some(ServiceTls::new(&node, CLUSTER).expect("server TLS")),
                    ..options.clone()
                };
                let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
                KvServer::start(raft, state, listener, options).expect("server starts")
            })
            .collect();
        for i in 0..n {
            network.connect(i);
        }
        Self { network, servers }
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        self.servers.iter().map(KvServer::local_addr).collect()
    }

    /// The node that leads, once one does.
    fn leader(&self) -> usize {
        let mut leader = None;
        wait_for("a leader", || {
            leader = (0..self.servers.len())
                .find(|&i| self.servers[i].raft().status().role == Role::Leader);
            leader.is_some()
        });
        leader.expect("a leader")
    }
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        for server in &mut self.servers {
            server.shutdown();
            server.raft().kill();
        }
        let _ = self.network.nodes();
    }
}

/// A client of `addrs` with `tls`, giving up on an operation after `timeout`.
fn client(addrs: Vec<SocketAddr>, tls: Option<ClientTls>, timeout: Duration) -> KvClient {
    KvClient::new(
        addrs,
        ClientOptions {
            op_timeout: timeout,
            connect_timeout: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(2),
            tls,
            ..ClientOptions::default()
        },
    )
}

/// Whether a TLS session without any client certificate, trusting `ca`, gets an answer to a
/// `Status` request from node 0 at `addr`.
fn answered_without_a_certificate(ca: &Authority, addr: SocketAddr) -> bool {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.issued().cert_pem.as_bytes()).expect("CA PEM"))
        .expect("CA certificate");
    #[allow(deprecated)] // the ring provider, as the nodes use
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from(node_name(CLUSTER, 0)).expect("a name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("session");
    let mut tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    let mut frame = Vec::new();
    Request::Status.encode(&mut frame).unwrap();
    if tls.write_all(&frame).is_err() {
        return false;
    }
    let mut answer = [0u8; 4];
    tls.read_exact(&mut answer).is_ok()
}

#[test]
fn the_client_port_refuses_whoever_has_no_valid_client_certificate() {
    let ca = Authority::new("test CA", today()).expect("CA");
    let cluster = TlsCluster::start(&ca, 1, ServerOptions::default());
    let addrs = cluster.addrs();
    let addr = addrs[0];
    let tls = |role| Some(ca.client_tls(CLUSTER, role, today()).expect("client"));
    // A client of this CA and cluster is served: what is refused below is refused for its
    // certificate, not for the server.
    let mut good = client(addrs.clone(), tls(ClientRole::Client), PATIENCE);
    good.put("k", "v")
        .expect("a put with the client certificate");
    assert_eq!(good.get("k").expect("a get"), "v");
    assert!(good.status(addr).is_ok(), "the client's status request");

    let other_ca = Authority::new("another CA", today()).expect("CA");
    let now = SystemTime::now();
    let expired = now - Duration::from_secs(10 * 86_400)..now - Duration::from_secs(86_400);
    let own_node = ca.peer_tls(CLUSTER, 0, today()).expect("node certificate");
    let refused: [(&str, Option<ClientTls>); 5] = [
        ("plaintext", None),
        (
            "another CA's client certificate",
            Some(
                other_ca
                    .client_tls(CLUSTER, ClientRole::Admin, today())
                    .unwrap(),
            ),
        ),
        (
            "an expired client certificate",
            Some(ca.client_tls(CLUSTER, ClientRole::Admin, expired).unwrap()),
        ),
        (
            "another cluster's admin certificate",
            Some(
                ca.client_tls(CLUSTER + 1, ClientRole::Admin, today())
                    .unwrap(),
            ),
        ),
        (
            "a node's certificate",
            Some(ClientTls::new(&own_node, CLUSTER).unwrap()),
        ),
    ];
    for (case, (what, tls)) in refused.into_iter().enumerate() {
        let mut c = client(addrs.clone(), tls, Duration::from_millis(1500));
        match c.status(addr) {
            Err(KvError::Io(_)) => {}
            other => panic!("case {case}, {what}: status answered {other:?}"),
        }
        match c.put("k", what) {
            Err(KvError::Timeout) => {}
            other => panic!("case {case}, {what}: put answered {other:?}"),
        }
    }
    assert!(
        !answered_without_a_certificate(&ca, addr),
        "a TLS session without a client certificate was answered"
    );
    // Nothing they sent was applied.
    assert_eq!(good.get("k").expect("a get"), "v");
}

#[test]
fn a_client_checks_that_each_address_serves_the_node_it_names() {
    let ca = Authority::new("test CA", today()).expect("CA");
    let cluster = TlsCluster::start(&ca, 3, ServerOptions::default());
    let mut addrs = cluster.addrs();
    let tls = || Some(ca.client_tls(CLUSTER, ClientRole::Client, today()).unwrap());
    let mut right = client(addrs.clone(), tls(), PATIENCE);
    right.put("k", "v").expect("a put to the nodes in order");
    // Every address at another node's place: each server's certificate names another node
    // than the client expects there, so no operation gets through, whichever node leads.
    addrs.rotate_left(1);
    let mut swapped = client(addrs, tls(), Duration::from_millis(1500));
    match swapped.put("k", "w") {
        Err(KvError::Timeout) => {}
        other => panic!("a put through swapped addresses answered {other:?}"),
    }
    assert_eq!(right.get("k").expect("a get"), "v");
}

#[test]
fn only_the_admin_certificate_transfers_leadership_and_reads_the_full_status() {
    let ca = Authority::new("test CA", today()).expect("CA");
    let cluster = TlsCluster::start(&ca, 3, ServerOptions::default());
    let addrs = cluster.addrs();
    let leader = cluster.leader();
    let target = (leader + 1) % 3;
    let tls = |role| Some(ca.client_tls(CLUSTER, role, today()).expect("client"));
    let ordinary = client(addrs.clone(), tls(ClientRole::Client), PATIENCE);
    let admin = client(addrs.clone(), tls(ClientRole::Admin), PATIENCE);

    let started = cluster.servers[leader].raft().status().transfers_started;
    match ordinary.transfer_leadership(addrs[leader], target) {
        Err(KvError::Forbidden(why)) => assert!(why.contains("admin"), "{why}"),
        other => panic!("an ordinary client's transfer answered {other:?}"),
    }
    let status = ordinary.status(addrs[leader]).expect("the basic status");
    assert_eq!(status.role, Role::Leader);
    assert!(
        status.full.is_none(),
        "an ordinary client read the full status"
    );
    assert!(
        admin.status(addrs[leader]).expect("status").full.is_some(),
        "the operator reads the full status"
    );
    // The refused transfer started nothing; the operator's does.
    assert_eq!(
        cluster.servers[leader].raft().status().transfers_started,
        started,
        "a refused transfer started"
    );
    admin
        .transfer_leadership(addrs[leader], target)
        .expect("the operator's transfer");
    wait_for("the target to lead", || {
        cluster.servers[target].raft().status().role == Role::Leader
    });
}

#[test]
fn silent_and_trickling_connections_do_not_hold_up_a_tls_client() {
    let ca = Authority::new("test CA", today()).expect("CA");
    // A deadline far longer than the client waits: only handshakes run off the accept thread
    // let it through.
    let options = ServerOptions {
        handshake_timeout: 2 * PATIENCE,
        ..ServerOptions::default()
    };
    let cluster = TlsCluster::start(&ca, 1, options);
    let addr = cluster.addrs()[0];
    let _silent: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    // The first bytes of a TLS record header, then a byte every 50 ms.
    let trickle = Trickle::start(addr, 20, &[22, 3], 1, Duration::from_millis(50))
        .expect("trickling connections");
    wait_for("the trickle is under way", || trickle.rounds() >= 3);
    wait_for("the server to take every connection", || {
        cluster.servers[0].connections() >= 40
    });
    let tls = Some(ca.client_tls(CLUSTER, ClientRole::Client, today()).unwrap());
    let mut c = client(vec![addr], tls, PATIENCE);
    let started = Instant::now();
    c.put("k", "v")
        .expect("a put beside 40 unfinished handshakes");
    let took = started.elapsed();
    eprintln!("a TLS client's first put beside 20 silent and 20 trickling connections: {took:?}");
    // Generous for a busy machine, far below the handshake deadline the others hold.
    assert!(took < Duration::from_secs(10), "the put took {took:?}");
    assert_eq!(
        trickle.closed(),
        0,
        "the trickling connections are still open"
    );
}

#[test]
fn handshakes_are_bounded_and_held_to_their_deadline() {
    let ca = Authority::new("test CA", today()).expect("CA");
    let options = ServerOptions {
        handshake_timeout: Duration::from_millis(300),
        max_handshakes: 4,
        ..ServerOptions::default()
    };
    let cluster = TlsCluster::start(&ca, 1, options);
    let addr = cluster.addrs()[0];
    // More silent connections than handshakes may be under way: the ones beyond are closed at
    // once, the others once their deadline passes.
    let mut silent: Vec<TcpStream> = (0..12)
        .map(|_| {
            let s = TcpStream::connect(addr).expect("connect");
            s.set_read_timeout(Some(PATIENCE)).unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    for (i, s) in silent.iter_mut().enumerate() {
        let mut byte = [0u8; 1];
        // End of file, or a reset: closed either way; never a byte of an answer.
        match s.read(&mut byte) {
            Ok(0) | Err(_) => {}
            Ok(_) => panic!("connection {i} was answered without a handshake"),
        }
    }
    let took = started.elapsed();
    assert!(took < PATIENCE, "the silent connections were held {took:?}");
    wait_for("the server to release them", || {
        cluster.servers[0].connections() == 0
    });
    let tls = Some(ca.client_tls(CLUSTER, ClientRole::Client, today()).unwrap());
    let mut c = client(vec![addr], tls, PATIENCE);
    c.put("k", "v")
        .expect("a put once the silent connections are gone");
}

/// A `zeroraft serve` process of a one-node cluster, plaintext, its raft state in memory, and
/// where it serves clients.
fn serve(dir: &Path, extra: &[&str]) -> (Child, SocketAddr) {
    let log = dir.join("serve.log");
    let child = Command::new(env!("CARGO_BIN_EXE_zeroraft"))
        .args(["serve", "--insecure", "--id", "0", "--storage", "memory"])
        .args(["--peers", "127.0.0.1:0", "--listen", "127.0.0.1:0"])
        .args(extra)
        .stderr(std::fs::File::create(&log).expect("a log file"))
        .spawn()
        .expect("start zeroraft serve");
    let mut addr = None;
    wait_for("serve to say where it listens", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        addr = text
            .split("serves clients on ")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .and_then(|a| a.trim().parse().ok());
        addr.is_some()
    });
    (child, addr.expect("an address"))
}

/// The resident memory of process `pid`, in bytes.
fn resident(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("its status");
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in kB");
    kb * 1024
}

/// The most files this process may open.
fn open_files_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(1024)
}

#[test]
fn a_thousand_connections_announcing_large_frames_keep_a_serve_process_small() {
    // Each connection costs the server about three descriptors: fewer where the limit is low.
    let hostile = 1000.min(open_files_limit().saturating_sub(200) / 3) as usize;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let most = (hostile + 64).to_string();
    let (mut child, addr) = serve(
        dir.path(),
        &["--max-connections", &most, "--frame-timeout", "600"],
    );
    let mut c = client(vec![addr], None, Duration::from_secs(5));
    wait_for("the node to serve a put", || c.put("k", "before").is_ok());
    let before = resident(child.id());
    let prefix = (MAX_FRAME as u32).to_le_bytes();
    let trickle =
        Trickle::start(addr, hostile, &prefix, 7, Duration::from_millis(100)).expect("connections");
    let from = trickle.rounds();
    wait_for("a few bytes into every frame", || {
        trickle.rounds() >= from + 5
    });
    // A normal client's operations go through meanwhile, within their timeout.
    let started = Instant::now();
    c.put("k", "during").expect("a put during");
    assert_eq!(c.get("k").expect("a get during"), "during");
    let took = started.elapsed();
    let during = resident(child.id());
    eprintln!(
        "{hostile} connections announcing {MAX_FRAME} bytes each: the serve process's resident \
         memory went from {} MiB to {} MiB; a put and a get took {took:?}",
        before >> 20,
        during >> 20
    );
    assert_eq!(trickle.closed(), 0, "no hostile connection was closed");
    assert!(
        during < 256 << 20,
        "{hostile} connections made serve resident at {during} bytes"
    );
    drop(trickle);
    let _ = child.kill();
    let _ = child.wait();
}

/// A TLS stream carries what a `KvClient` would over it both ways, across the 16 KiB records
/// and the 64 KiB socket reads: a value near the frame limit goes and comes back whole.
#[test]
fn a_large_value_crosses_a_tls_connection_whole() {
    let ca = Authority::new("test CA", today()).expect("CA");
    let cluster = TlsCluster::start(&ca, 1, ServerOptions::default());
    let addr = cluster.addrs()[0];
    let tls = ca.client_tls(CLUSTER, ClientRole::Client, today()).unwrap();
    let mut c = client(vec![addr], Some(tls.clone()), PATIENCE);
    let value: String = (0..3 << 20)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    c.put("big", &value).expect("a 3 MiB put");
    assert_eq!(c.get("big").expect("a 3 MiB get"), value);
    // And a raw stream answers a status request, as the dashboard's poller asks it.
    let stream = Stream::connect(&addr, Some(0), Some(&tls), Duration::from_secs(5)).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut frame = Vec::new();
    Request::Status.encode(&mut frame).unwrap();
    let answer = zeroraft::kv::client::call(&stream, &frame).expect("an answer");
    assert!(
        matches!(answer, zeroraft::kv::protocol::Response::Status(_)),
        "{answer:?}"
    );
}
