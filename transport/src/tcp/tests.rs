//! The TCP transport between nodes of one test process, on loopback.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

use super::handshake::{HELLO_BYTES, Hello, VERSION, Verdict};
use super::{Authority, PeerTls, TcpConfig, TcpError, TcpNetwork};
use crate::{Codec, DecodeError, Endpoint, Message, NodeId};

/// A test message: a number and a payload.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Msg {
    n: u64,
    payload: Bytes,
}

impl Message for Msg {
    fn wire_size(&self) -> usize {
        8 + self.payload.len()
    }
    fn is_request(&self) -> bool {
        true
    }
}

impl Codec for Msg {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_u64_le(self.n);
        buf.put_slice(&self.payload);
    }
    fn decode(frame: Bytes) -> Result<Self, DecodeError> {
        if frame.len() < 8 {
            return Err(DecodeError::Truncated {
                needed: 8,
                len: frame.len(),
            });
        }
        let n = u64::from_le_bytes(frame[..8].try_into().expect("8 bytes"));
        if n == u64::MAX {
            return Err(DecodeError::Invalid("a number no test sends"));
        }
        Ok(Self {
            n,
            payload: frame.slice(8..),
        })
    }
}

const CLUSTER: u64 = 0x5EED;
/// How long a test waits for something that takes milliseconds on a quiet machine.
const PATIENCE: Duration = Duration::from_secs(20);

fn listeners(n: usize) -> (Vec<TcpListener>, Vec<SocketAddr>) {
    let listeners: Vec<_> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind loopback"))
        .collect();
    let addrs = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    (listeners, addrs)
}

fn start(
    id: NodeId,
    listener: TcpListener,
    addrs: &[SocketAddr],
) -> (TcpNetwork<Msg>, Endpoint<Msg>) {
    TcpNetwork::start(TcpConfig::new(id, CLUSTER, addrs.to_vec()), listener).expect("start")
}

fn cluster(n: usize) -> Vec<(TcpNetwork<Msg>, Endpoint<Msg>)> {
    let (listeners, addrs) = listeners(n);
    listeners
        .into_iter()
        .enumerate()
        .map(|(id, l)| start(id, l, &addrs))
        .collect()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(2)); // polling a condition, not hiding a race
    }
}

fn connected(nodes: &[(TcpNetwork<Msg>, Endpoint<Msg>)]) -> bool {
    nodes
        .iter()
        .enumerate()
        .all(|(i, (net, _))| (0..nodes.len()).all(|j| i == j || net.link(j).connected))
}

/// Receives `count` messages on `endpoint`, in arrival order.
fn receive(endpoint: &Endpoint<Msg>, count: usize) -> Vec<(NodeId, Msg)> {
    let mut got = Vec::with_capacity(count);
    let until = Instant::now() + PATIENCE;
    while got.len() < count {
        match endpoint.try_recv() {
            Some(m) => got.push(m),
            None => {
                assert!(Instant::now() < until, "received {} of {count}", got.len());
                endpoint.wait(
                    Some(Instant::now() + Duration::from_millis(50)),
                    Duration::ZERO,
                    &|| false,
                );
            }
        }
    }
    got
}

#[test]
fn messages_cross_between_every_pair_in_order() {
    let mut nodes = cluster(3);
    wait_until("every link is up", || connected(&nodes));
    const EACH: u64 = 2_000;
    for (i, (_, endpoint)) in nodes.iter_mut().enumerate() {
        for j in 0..3 {
            if i != j {
                for n in 0..EACH {
                    let payload = Bytes::from(vec![i as u8; (n % 100) as usize]);
                    endpoint.send(j, Msg { n, payload });
                }
            }
        }
    }
    for (j, (net, endpoint)) in nodes.iter().enumerate() {
        let got = receive(endpoint, 2 * EACH as usize);
        for from in (0..3).filter(|&i| i != j) {
            let ns: Vec<u64> = got
                .iter()
                .filter(|(f, _)| *f == from)
                .map(|(_, m)| m.n)
                .collect();
            assert_eq!(
                ns,
                (0..EACH).collect::<Vec<_>>(),
                "{from} -> {j}: every message, in order"
            );
            for (_, m) in got.iter().filter(|(f, _)| *f == from) {
                assert!(
                    m.payload.iter().all(|&b| b == from as u8),
                    "{from} -> {j}: payload intact"
                );
            }
            assert_eq!(net.link(from).received, EACH, "{from} -> {j}: counted");
        }
    }
    // A message to oneself needs no connection.
    nodes[1].1.send(
        1,
        Msg {
            n: 7,
            payload: Bytes::new(),
        },
    );
    assert_eq!(receive(&nodes[1].1, 1)[0].1.n, 7);
}

#[test]
fn a_node_of_another_cluster_is_refused() {
    let (mut listeners, addrs) = listeners(2);
    let l1 = listeners.pop().unwrap();
    let l0 = listeners.pop().unwrap();
    let (net0, mut ep0) = start(0, l0, &addrs);
    let mut other = TcpConfig::new(1, CLUSTER + 1, addrs.clone());
    other.backoff_max = Duration::from_millis(50);
    let (net1, ep1) = TcpNetwork::<Msg>::start(other, l1).expect("start");
    wait_until("node 0 was refused", || net0.link(1).rejected > 0);
    assert!(!net0.link(1).connected && !net1.link(0).connected);
    ep0.send(
        1,
        Msg {
            n: 1,
            payload: Bytes::new(),
        },
    );
    std::thread::sleep(Duration::from_millis(100)); // nothing may arrive: give it the chance to
    assert!(ep1.try_recv().is_none(), "a refused peer's message arrived");
}

/// Opens a raw connection to `addr` as node `from`, shaking hands as a node would.
fn raw_peer(addr: SocketAddr, from: u32, to: u32, nodes: u32) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let hello = Hello {
        version: VERSION,
        cluster: CLUSTER,
        from,
        to,
        nodes,
    };
    let mut bytes = [0u8; HELLO_BYTES];
    bytes.copy_from_slice(&hello_bytes(&hello));
    s.write_all(&bytes).unwrap();
    let mut answer = [0u8; 6];
    s.read_exact(&mut answer).expect("an answer");
    assert_eq!(answer[5], 0, "accepted");
    s
}

fn hello_bytes(h: &Hello) -> Vec<u8> {
    let mut b = b"ZRFT".to_vec();
    b.push(h.version);
    b.extend_from_slice(&h.cluster.to_le_bytes());
    b.extend_from_slice(&h.from.to_le_bytes());
    b.extend_from_slice(&h.to.to_le_bytes());
    b.extend_from_slice(&h.nodes.to_le_bytes());
    b
}

/// Whether the node closed `s`: a read returns end of file or an error.
fn closed_by_node(s: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1024];
    loop {
        match s.read(&mut byte) {
            Ok(0) | Err(_) => return true,
            Ok(_) => {} // keepalives, until the node hangs up
        }
    }
}

#[test]
fn hostile_frames_drop_the_connection_and_nothing_else() {
    // Node 1 of 2; the test plays node 0 with raw bytes.
    let (mut listeners, addrs) = listeners(2);
    let l1 = listeners.pop().unwrap();
    let (net1, ep1) = start(1, l1, &addrs);
    let addr = addrs[1];
    let frames: [(&str, Vec<u8>); 4] = [
        (
            "a length beyond max_frame",
            (u32::MAX).to_le_bytes().to_vec(),
        ),
        ("a frame that does not decode", {
            let mut f = 8u32.to_le_bytes().to_vec();
            f.extend_from_slice(&u64::MAX.to_le_bytes());
            f
        }),
        ("a frame too short for its message", {
            let mut f = 3u32.to_le_bytes().to_vec();
            f.extend_from_slice(&[1, 2, 3]);
            f
        }),
        ("a good frame, then a length beyond max_frame", {
            let mut f = 8u32.to_le_bytes().to_vec();
            f.extend_from_slice(&42u64.to_le_bytes());
            f.extend_from_slice(&(65u32 << 20).to_le_bytes());
            f
        }),
    ];
    for (case, (what, bytes)) in frames.iter().enumerate() {
        let mut s = raw_peer(addr, 0, 1, 2);
        s.write_all(bytes).unwrap();
        assert!(
            closed_by_node(&mut s),
            "case {case} ({what}): connection dropped"
        );
    }
    // The one good frame was delivered; the bad ones were counted.
    assert_eq!(receive(&ep1, 1)[0].1.n, 42);
    assert!(ep1.try_recv().is_none());
    assert_eq!(net1.link(0).rejected, frames.len() as u64);
    // A connection that sends garbage instead of a handshake, or half a frame and then hangs up,
    // changes nothing either.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&[0xAB; 64]).unwrap();
    drop(s);
    let mut s = raw_peer(addr, 0, 1, 2);
    s.write_all(&[100, 0, 0, 0, 1, 2]).unwrap();
    drop(s);
    // And the node still accepts a well-behaved peer.
    let mut s = raw_peer(addr, 0, 1, 2);
    let mut f = 8u32.to_le_bytes().to_vec();
    f.extend_from_slice(&43u64.to_le_bytes());
    s.write_all(&f).unwrap();
    assert_eq!(receive(&ep1, 1)[0].1.n, 43);
}

#[test]
fn handshakes_that_name_the_wrong_nodes_are_refused() {
    let (mut listeners, addrs) = listeners(3);
    let l1 = listeners.remove(1);
    let (net1, _ep1) = start(1, l1, &addrs);
    // (from, to, nodes): each refused with the verdict byte shown.
    let cases = [
        (0u32, 2u32, 3u32, 2u8),
        (0, 1, 4, 3),
        (2, 1, 3, 4),
        (1, 1, 3, 4),
    ];
    for (case, (from, to, nodes, verdict)) in cases.into_iter().enumerate() {
        let mut s = TcpStream::connect(addrs[1]).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let hello = Hello {
            version: VERSION,
            cluster: CLUSTER,
            from,
            to,
            nodes,
        };
        s.write_all(&hello_bytes(&hello)).unwrap();
        let mut answer = [0u8; 6];
        s.read_exact(&mut answer).unwrap();
        assert_eq!(answer[5], verdict, "case {case}");
        assert!(closed_by_node(&mut s), "case {case}: closed after refusing");
    }
    assert!(!net1.link(0).connected);
}

#[test]
fn a_restarted_peer_is_reached_again() {
    let (listeners, addrs) = listeners(2);
    let mut it = listeners.into_iter();
    let (l0, l1) = (it.next().unwrap(), it.next().unwrap());
    let (net0, mut ep0) = start(0, l0, &addrs);
    let (net1, ep1) = start(1, l1, &addrs);
    wait_until("connected", || {
        net0.link(1).connected && net1.link(0).connected
    });
    ep0.send(
        1,
        Msg {
            n: 1,
            payload: Bytes::new(),
        },
    );
    assert_eq!(receive(&ep1, 1)[0].1.n, 1);
    // Node 1 stops and starts again on the same address, as a restarted process would.
    net1.shutdown();
    drop(ep1);
    let l1 = TcpListener::bind(addrs[1]).expect("the address is free again");
    let (net1, ep1) = start(1, l1, &addrs);
    wait_until("reconnected", || {
        net0.link(1).connections >= 2 && net0.link(1).connected && net1.link(0).connected
    });
    ep0.send(
        1,
        Msg {
            n: 2,
            payload: Bytes::new(),
        },
    );
    assert_eq!(receive(&ep1, 1)[0].1.n, 2);
    // Node 0 restarts: node 1 takes the new connection in place of the dead one.
    net0.shutdown();
    drop(ep0);
    let l0 = TcpListener::bind(addrs[0]).expect("the address is free again");
    let (net0, _ep0) = start(0, l0, &addrs);
    wait_until("reconnected", || {
        net0.link(1).connected && net1.link(0).connections >= 2
    });
    let mut ep1 = ep1;
    wait_until("node 1 sees the new connection", || net1.link(0).connected);
    ep1.send(
        0,
        Msg {
            n: 3,
            payload: Bytes::new(),
        },
    );
    assert_eq!(receive(&_ep0, 1)[0].1.n, 3);
}

#[test]
fn an_unreachable_peer_costs_a_bounded_queue() {
    let (listeners, addrs) = listeners(2);
    let l0 = listeners.into_iter().next().unwrap();
    // Node 1 never starts (its listener is dropped): node 0 keeps dialing with backoff.
    let mut config = TcpConfig::new(0, CLUSTER, addrs.clone());
    config.queue_capacity = 16;
    let (net0, mut ep0) = TcpNetwork::<Msg>::start(config, l0).unwrap();
    for n in 0..10_000 {
        ep0.send(
            1,
            Msg {
                n,
                payload: Bytes::from_static(b"x"),
            },
        );
    }
    let link = net0.link(1);
    assert!(!link.connected);
    assert_eq!(
        link.dropped, 10_000,
        "every message to an unreachable peer is dropped"
    );
    net0.shutdown();
}

#[test]
fn bad_configurations_are_refused() {
    let cases: [(TcpConfig, &str); 4] = [
        (TcpConfig::new(0, 1, vec![]), "a cluster of 0 nodes"),
        (
            TcpConfig::new(3, 1, vec!["127.0.0.1:1".parse().unwrap(); 3]),
            "node id 3 is not one",
        ),
        (
            TcpConfig {
                queue_capacity: 0,
                ..TcpConfig::new(0, 1, vec!["127.0.0.1:1".parse().unwrap()])
            },
            "queue",
        ),
        (
            TcpConfig {
                inbox_capacity: 0,
                ..TcpConfig::new(0, 1, vec!["127.0.0.1:1".parse().unwrap()])
            },
            "inbox",
        ),
    ];
    for (case, (config, expected)) in cases.into_iter().enumerate() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let err: TcpError = TcpNetwork::<Msg>::start(config, listener)
            .err()
            .expect("refused");
        assert!(err.to_string().contains(expected), "case {case}: {err}");
    }
}

#[test]
fn beyond_the_handshakes_under_way_a_connection_is_closed_at_once() {
    let (listeners, addrs) = listeners(2);
    let mut it = listeners.into_iter();
    let (l0, l1) = (it.next().unwrap(), it.next().unwrap());
    let mut config = TcpConfig::new(1, CLUSTER, addrs.clone());
    config.max_handshakes = 2;
    config.handshake_timeout = 2 * PATIENCE; // only the bound can close the third connection
    let (net1, _ep1) = TcpNetwork::<Msg>::start(config, l1).expect("start");
    let silent: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(addrs[1]).expect("connect"))
        .collect();
    let mut third = TcpStream::connect(addrs[1]).expect("connect");
    third.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut byte = [0u8; 1];
    match third.read(&mut byte) {
        Ok(0) => {}
        Err(e) if !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("the third connection was not closed at once: {other:?}"),
    }
    // Once the silent connections go, a peer's handshake goes through.
    drop(silent);
    let (net0, _ep0) = start(0, l0, &addrs);
    wait_until("connected", || {
        net0.link(1).connected && net1.link(0).connected
    });
}

/// From an hour ago to a day from now.
fn today() -> std::ops::Range<std::time::SystemTime> {
    let now = std::time::SystemTime::now();
    now - Duration::from_secs(3600)..now + Duration::from_secs(86_400)
}

/// A certificate authority for tests.
fn authority() -> Authority {
    Authority::new("zeroraft test CA", today()).expect("a CA")
}

/// Node `id` of `cluster`'s settings from `ca`, trusting the CA of `trusted`, its certificate
/// expired long ago if `expired`.
fn node_tls(
    ca: &Authority,
    trusted: &Authority,
    cluster: u64,
    id: NodeId,
    expired: bool,
) -> PeerTls {
    let valid = if expired {
        let now = std::time::SystemTime::now();
        now - Duration::from_secs(2 * 86_400)..now - Duration::from_secs(86_400)
    } else {
        today()
    };
    let node = ca.node(cluster, id, valid).expect("a node certificate");
    PeerTls::from_issued(&trusted.issued().cert_pem, &node).expect("settings")
}

fn start_tls(
    id: NodeId,
    listener: TcpListener,
    addrs: &[SocketAddr],
    tls: PeerTls,
) -> (TcpNetwork<Msg>, Endpoint<Msg>) {
    let mut config = TcpConfig::new(id, CLUSTER, addrs.to_vec());
    config.tls = Some(tls);
    config.backoff_max = Duration::from_millis(50);
    TcpNetwork::start(config, listener).expect("start")
}

#[test]
fn tls_links_carry_messages_both_ways_in_order() {
    let ca = authority();
    let (listeners, addrs) = listeners(2);
    let mut nodes: Vec<_> = listeners
        .into_iter()
        .enumerate()
        .map(|(id, l)| start_tls(id, l, &addrs, node_tls(&ca, &ca, CLUSTER, id, false)))
        .collect();
    wait_until("every link is up", || connected(&nodes));
    const EACH: u64 = 3_000;
    for (i, (_, endpoint)) in nodes.iter_mut().enumerate() {
        for n in 0..EACH {
            // Payloads up to 40 KiB: frames that span TLS records.
            let payload = Bytes::from(vec![i as u8; (n as usize * 97) % (40 << 10)]);
            endpoint.send(1 - i, Msg { n, payload });
        }
    }
    for (j, (_, endpoint)) in nodes.iter().enumerate() {
        let got = receive(endpoint, EACH as usize);
        let ns: Vec<u64> = got.iter().map(|(_, m)| m.n).collect();
        assert_eq!(
            ns,
            (0..EACH).collect::<Vec<_>>(),
            "to {j}: every message, in order"
        );
        assert!(
            got.iter()
                .all(|(from, m)| *from == 1 - j && m.payload.iter().all(|&b| b == *from as u8)),
            "to {j}: payloads intact"
        );
    }
}

/// The test plays a node holding `tls` that dials `addr` (a TLS node) and says it is `from`:
/// the verdict byte it gets, with the stream to write frames into.
fn tls_dial(
    addr: SocketAddr,
    tls: &PeerTls,
    to: NodeId,
    hello: Hello,
) -> (u8, rustls::StreamOwned<rustls::ClientConnection, TcpStream>) {
    let settings = super::tls::Tls::new(tls, CLUSTER).expect("settings");
    let rustls::Connection::Client(conn) = settings.dialer(to).expect("a session") else {
        panic!("a client session")
    };
    let sock = TcpStream::connect(addr).expect("connect");
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut stream = rustls::StreamOwned::new(conn, sock);
    stream.write_all(&hello_bytes(&hello)).expect("hello");
    let mut answer = [0u8; 6];
    stream.read_exact(&mut answer).expect("an answer");
    (answer[5], stream)
}

#[test]
fn a_certificate_of_one_node_cannot_claim_to_be_another() {
    let ca = authority();
    let (mut listeners, addrs) = listeners(3);
    let l2 = listeners.pop().unwrap();
    let (net2, ep2) = start_tls(2, l2, &addrs, node_tls(&ca, &ca, CLUSTER, 2, false));
    let node1 = node_tls(&ca, &ca, CLUSTER, 1, false);
    let hello = |from| Hello {
        version: VERSION,
        cluster: CLUSTER,
        from,
        to: 2,
        nodes: 3,
    };
    // Node 1's certificate claiming to be node 0: refused, and its frame never delivered.
    let (verdict, mut forged) = tls_dial(addrs[2], &node1, 2, hello(0));
    assert_eq!(
        verdict,
        Verdict::WrongIdentity as u8,
        "refused as another node"
    );
    let mut frame = 8u32.to_le_bytes().to_vec();
    frame.extend_from_slice(&666u64.to_le_bytes());
    let _ = forged.write_all(&frame);
    let mut rest = Vec::new();
    assert!(
        forged.read_to_end(&mut rest).is_err() || rest.is_empty(),
        "closed after refusing"
    );
    assert_eq!(
        net2.link(0).rejected,
        1,
        "counted against the node it claimed"
    );
    assert!(!net2.link(0).connected);
    // The same certificate as what it names is accepted: its frames do arrive.
    let (verdict, mut honest) = tls_dial(addrs[2], &node1, 2, hello(1));
    assert_eq!(verdict, Verdict::Accepted as u8);
    let mut frame = 8u32.to_le_bytes().to_vec();
    frame.extend_from_slice(&7u64.to_le_bytes());
    honest.write_all(&frame).unwrap();
    let got = receive(&ep2, 1);
    assert_eq!(
        (got[0].0, got[0].1.n),
        (1, 7),
        "only the honest frame arrived"
    );
    assert!(ep2.try_recv().is_none());
}

#[test]
fn a_peer_without_a_valid_certificate_of_the_cluster_is_refused() {
    let ca = authority();
    let other = authority();
    // (node 0's settings, node 1's settings, what is wrong): node 0 dials node 1.
    let cases: [(Option<PeerTls>, Option<PeerTls>, &str); 6] = [
        (
            Some(node_tls(&other, &ca, CLUSTER, 0, false)),
            Some(node_tls(&ca, &ca, CLUSTER, 1, false)),
            "the dialer's certificate is of another CA",
        ),
        (
            Some(node_tls(&ca, &ca, CLUSTER, 0, false)),
            Some(node_tls(&other, &ca, CLUSTER, 1, false)),
            "the acceptor's certificate is of another CA",
        ),
        (
            Some(node_tls(&ca, &ca, CLUSTER, 0, true)),
            Some(node_tls(&ca, &ca, CLUSTER, 1, false)),
            "the dialer's certificate expired",
        ),
        (
            Some(node_tls(&ca, &ca, CLUSTER, 0, false)),
            Some(node_tls(&ca, &ca, CLUSTER, 1, true)),
            "the acceptor's certificate expired",
        ),
        (
            Some(node_tls(&ca, &ca, CLUSTER + 1, 0, false)),
            Some(node_tls(&ca, &ca, CLUSTER, 1, false)),
            "the dialer's certificate names another cluster",
        ),
        (
            None,
            Some(node_tls(&ca, &ca, CLUSTER, 1, false)),
            "the dialer speaks plaintext",
        ),
    ];
    for (case, (tls0, tls1, what)) in cases.into_iter().enumerate() {
        let (listeners, addrs) = listeners(2);
        let mut it = listeners.into_iter();
        let (l0, l1) = (it.next().unwrap(), it.next().unwrap());
        let mut config = TcpConfig::new(0, CLUSTER, addrs.clone());
        config.tls = tls0;
        config.backoff_max = Duration::from_millis(50);
        let (net0, mut ep0) = TcpNetwork::<Msg>::start(config, l0).expect("start");
        let (net1, ep1) = start_tls(1, l1, &addrs, tls1.expect("a TLS acceptor"));
        wait_until(&format!("case {case} ({what}): refused"), || {
            net0.link(1).rejected > 0 || net0.link(1).connections > 0
        });
        assert_eq!(net0.link(1).connections, 0, "case {case} ({what}): refused");
        assert!(!net1.link(0).connected, "case {case} ({what})");
        ep0.send(
            1,
            Msg {
                n: 1,
                payload: Bytes::new(),
            },
        );
        std::thread::sleep(Duration::from_millis(50)); // nothing may arrive: give it the chance to
        assert!(
            ep1.try_recv().is_none(),
            "case {case} ({what}): a message arrived"
        );
    }
}

/// A node's transport and endpoint.
type Node = (TcpNetwork<Msg>, Endpoint<Msg>);

/// Starts nodes `0..n` of a cluster of capacity `capacity`, each knowing only the addresses in
/// `known` (ids below `n`); `tls` gives each node's settings if the links use TLS.
fn address_book_cluster(
    n: usize,
    capacity: usize,
    known: &[NodeId],
    tls: Option<&dyn Fn(NodeId) -> PeerTls>,
) -> (Vec<Node>, Vec<SocketAddr>) {
    let (listeners, addrs) = listeners(n);
    let book: Vec<Option<SocketAddr>> = (0..capacity)
        .map(|id| known.contains(&id).then(|| addrs[id]))
        .collect();
    let nodes = listeners
        .into_iter()
        .enumerate()
        .map(|(id, l)| {
            let mut book = book.clone();
            // A node knows its own address, as serve's nodes do.
            book[id] = Some(addrs[id]);
            let mut config = TcpConfig::with_book(id, CLUSTER, book);
            config.backoff_max = Duration::from_millis(50);
            config.tls = tls.map(|t| t(id));
            TcpNetwork::start(config, l).expect("start")
        })
        .collect();
    (nodes, addrs)
}

/// Sends `count` numbered messages from `from` to `to` and checks they all arrive, in order.
fn carries(nodes: &mut [Node], from: NodeId, to: NodeId, count: u64) {
    for n in 0..count {
        nodes[from].1.send(
            to,
            Msg {
                n,
                payload: Bytes::from_static(b"late"),
            },
        );
    }
    let got = receive(&nodes[to].1, count as usize);
    assert_eq!(
        got.iter().map(|(f, m)| (*f, m.n)).collect::<Vec<_>>(),
        (0..count).map(|n| (from, n)).collect::<Vec<_>>(),
        "{from} -> {to}: every message, in order"
    );
}

/// The test for both plaintext and TLS: node 2's address reaches nodes 0 and 1 only after they
/// started; until then no link to it runs and messages to it are dropped; once given, the links
/// carry messages both ways; cleared, the link stops on both sides; given again, it carries
/// messages again.
fn late_address_then_cleared(tls: Option<&dyn Fn(NodeId) -> PeerTls>) {
    // A capacity of 8 ids, 3 nodes running, node 2 unknown to 0 and 1 at first.
    let (mut nodes, addrs) = address_book_cluster(3, 8, &[0, 1], tls);
    wait_until("0 and 1 are linked", || {
        nodes[0].0.link(1).connected && nodes[1].0.link(0).connected
    });
    assert_eq!(nodes[0].0.capacity(), 8);
    assert_eq!(nodes[0].0.peer_addr(2), None, "node 2 unknown to 0");
    assert_eq!(nodes[0].0.peer_addr(1), Some(addrs[1]));
    nodes[0].1.send(
        2,
        Msg {
            n: 99,
            payload: Bytes::new(),
        },
    );
    assert_eq!(
        nodes[0].0.link(2),
        super::LinkStats::default(),
        "no link to an unknown node, nothing counted"
    );
    // Node 2 knows 0 and 1, but they, the lower ids, are the ones to dial it: nothing connects.
    assert!(!nodes[2].0.link(0).connected && !nodes[2].0.link(1).connected);

    for net in [&nodes[0].0, &nodes[1].0] {
        net.set_peer(2, Some(addrs[2])).expect("set");
    }
    wait_until("links to the late node are up", || {
        nodes[0].0.link(2).connected
            && nodes[1].0.link(2).connected
            && nodes[2].0.link(0).connected
            && nodes[2].0.link(1).connected
    });
    carries(&mut nodes, 0, 2, 500);
    carries(&mut nodes, 2, 1, 500);
    carries(&mut nodes, 1, 0, 10);

    // Cleared on node 0: its link to 2 stops, and 2 sees the connection go.
    nodes[0].0.set_peer(2, None).expect("clear");
    assert_eq!(nodes[0].0.peer_addr(2), None);
    wait_until("the cleared link is down on both sides", || {
        !nodes[0].0.link(2).connected && !nodes[2].0.link(0).connected
    });
    let dropped = nodes[0].0.link(2).dropped;
    nodes[0].1.send(
        2,
        Msg {
            n: 7,
            payload: Bytes::new(),
        },
    );
    assert_eq!(
        nodes[0].0.link(2).dropped,
        dropped + 1,
        "a message to a cleared peer is dropped"
    );
    // The link stays down: 0 does not dial 2 again, and 2 does not dial 0 (lower ids dial).
    let connections = nodes[2].0.link(0).connections;
    std::thread::sleep(Duration::from_millis(300)); // several backoffs: a redial would show
    assert!(
        !nodes[2].0.link(0).connected,
        "no link comes back by itself"
    );
    assert_eq!(nodes[2].0.link(0).connections, connections);
    // The link between 1 and 2 is untouched.
    carries(&mut nodes, 1, 2, 10);

    // Given again, the link starts again.
    nodes[0].0.set_peer(2, Some(addrs[2])).expect("set again");
    wait_until("the link is back", || {
        nodes[0].0.link(2).connected && nodes[2].0.link(0).connected
    });
    carries(&mut nodes, 0, 2, 100);
    carries(&mut nodes, 2, 0, 100);
}

#[test]
fn a_link_to_a_node_whose_address_arrives_late_carries_messages_and_stops_when_cleared() {
    late_address_then_cleared(None);
}

#[test]
fn with_tls_a_late_address_links_and_clearing_it_stops_the_link() {
    let ca = authority();
    let settings = move |id| node_tls(&ca, &ca, CLUSTER, id, false);
    late_address_then_cleared(Some(&settings));
}

#[test]
fn clearing_and_setting_at_once_leaves_one_running_link() {
    let (mut nodes, addrs) = address_book_cluster(2, 4, &[0, 1], None);
    wait_until("linked", || nodes[0].0.link(1).connected);
    // Clear and set again faster than the writer can notice: the link must end up running.
    for _ in 0..50 {
        nodes[0].0.set_peer(1, None).expect("clear");
        nodes[0].0.set_peer(1, Some(addrs[1])).expect("set");
    }
    wait_until("linked again", || {
        nodes[0].0.link(1).connected && nodes[1].0.link(0).connected
    });
    carries(&mut nodes, 0, 1, 100);
    carries(&mut nodes, 1, 0, 100);
}

#[test]
fn a_node_certificate_issued_later_by_the_same_ca_links_with_the_others() {
    let ca = authority();
    // The CA as `zeroraft certs --add-node` reads it back from its files.
    let reloaded =
        Authority::from_pem(&ca.issued().cert_pem, &ca.issued().key_pem).expect("the CA");
    let (listeners, addrs) = listeners(2);
    let mut it = listeners.into_iter();
    let first = start_tls(
        0,
        it.next().unwrap(),
        &addrs,
        node_tls(&ca, &ca, CLUSTER, 0, false),
    );
    let later = start_tls(
        1,
        it.next().unwrap(),
        &addrs,
        node_tls(&reloaded, &ca, CLUSTER, 1, false),
    );
    let mut nodes = vec![first, later];
    wait_until("the link is up", || connected(&nodes));
    carries(&mut nodes, 0, 1, 10);
    carries(&mut nodes, 1, 0, 10);
    assert!(Authority::from_pem(&ca.issued().cert_pem, "not a key").is_err());
}

/// Small messages may be written by the sender itself while the link is idle, large ones go
/// through the writer thread: mixed, in bursts and with pauses that let the link fall idle,
/// they still arrive in the order sent.
#[test]
fn small_and_large_messages_mixed_arrive_in_order() {
    let mut nodes = cluster(2);
    wait_until("the link is up", || connected(&nodes));
    const COUNT: u64 = 4_000;
    let mut rng = fastrand::Rng::with_seed(7);
    for n in 0..COUNT {
        // One in five above the size a sender writes itself.
        let len = if rng.u8(..5) == 0 {
            super::DIRECT_MAX + 1
        } else {
            rng.usize(..200)
        };
        nodes[0].1.send(
            1,
            Msg {
                n,
                payload: Bytes::from(vec![(n % 251) as u8; len]),
            },
        );
        if rng.u8(..50) == 0 {
            std::thread::sleep(Duration::from_micros(200)); // lets the writer finish: the link idles
        }
    }
    let got = receive(&nodes[1].1, COUNT as usize);
    let ns: Vec<u64> = got.iter().map(|(_, m)| m.n).collect();
    assert_eq!(
        ns,
        (0..COUNT).collect::<Vec<_>>(),
        "every message, in order"
    );
    assert!(
        got.iter()
            .all(|(_, m)| m.payload.iter().all(|&b| u64::from(b) == m.n % 251)),
        "payloads intact"
    );
    let link = nodes[0].0.link(1);
    assert_eq!((link.sent, link.dropped), (COUNT, 0));
}

/// A peer that stops reading fills its connection's buffers; a sender that writes to an idle
/// link itself must still never wait for it (the node's own thread sends).
#[test]
fn a_peer_that_stops_reading_never_blocks_the_sender() {
    // Node 1 of 2; the test plays node 0, which dials and then reads nothing.
    let (mut listeners, addrs) = listeners(2);
    let l1 = listeners.pop().unwrap();
    let (net1, mut ep1) = start(1, l1, &addrs);
    let _silent = raw_peer(addrs[1], 0, 1, 2);
    wait_until("node 1 adopts the connection", || net1.link(0).connected);
    let payload = Bytes::from(vec![1u8; 4096]);
    let mut slowest = Duration::ZERO;
    // Spaced out, so that the sender finds the link idle and writes itself, until the
    // connection's buffers are full (a few MB on loopback); 80 MB in all.
    for n in 0..20_000 {
        let start = Instant::now();
        ep1.send(
            0,
            Msg {
                n,
                payload: payload.clone(),
            },
        );
        slowest = slowest.max(start.elapsed());
        std::thread::sleep(Duration::from_micros(60));
        if !net1.link(0).connected {
            break;
        }
    }
    // A sender that waited for the socket would wait for the write timeout (2 s) at least.
    assert!(
        slowest < Duration::from_secs(1),
        "a send took {slowest:?}: the sender waited for a peer that does not read"
    );
    // The buffers were full: the writer, blocked on them, gives the connection up.
    wait_until(
        "node 1 drops the connection to a peer that reads nothing",
        || !net1.link(0).connected,
    );
    net1.shutdown();
}
