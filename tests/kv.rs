//! The key-value service end to end: three nodes on the in-memory network, each with a
//! `KvServer` on a loopback TCP port, driven by `KvClient`s and by raw connections speaking the
//! wire protocol. Every wait is for a condition, with a deadline generous enough for a busy
//! two-core machine.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use bytes::Bytes;
use zeroraft::engine::MemStorage;
use zeroraft::kv::protocol::{self, MAX_FRAME, Request, Response};
use zeroraft::kv::{ClientOptions, KvClient, KvServer, KvState, ReadMode, ServerOptions};
use zeroraft::{Compaction, Config, Network, NetworkConfig, Raft, Role};

/// How long any condition may take to come true on a busy machine.
const PATIENCE: Duration = Duration::from_secs(30);

/// Client options under which no operation of a healthy cluster times out, even on a loaded
/// machine: a timeout would leave an append's outcome unknown and the checks inexact.
fn patient() -> ClientOptions {
    ClientOptions {
        op_timeout: PATIENCE,
        ..ClientOptions::default()
    }
}

/// Polls `condition` until it holds, panicking with `what` after [`PATIENCE`].
fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        // Polling interval, not a race cover: the condition is checked again after it.
        sleep(Duration::from_millis(5));
    }
}

struct KvCluster {
    network: Network,
    config: Config,
    options: ServerOptions,
    storages: Vec<MemStorage>,
    servers: Vec<KvServer>,
    seed: u64,
}

impl KvCluster {
    fn start(n: usize, config: Config, options: ServerOptions) -> Self {
        let seed = fastrand::u64(..);
        let mut net_config = NetworkConfig::new(n);
        net_config.seed = seed;
        let network = Network::new(net_config).expect("valid network");
        let mut cluster = Self {
            network,
            config,
            options,
            storages: Vec::new(),
            servers: Vec::new(),
            seed,
        };
        for i in 0..n {
            let storage = MemStorage::new();
            cluster.storages.push(storage.clone());
            let server = cluster.start_node(i, storage);
            cluster.servers.push(server);
        }
        for i in 0..n {
            cluster.network.connect(i);
        }
        cluster
    }

    /// Starts node `i` from `storage` on a fresh endpoint, with its server on a new port.
    fn start_node(&self, i: usize, storage: MemStorage) -> KvServer {
        let endpoint = self
            .network
            .endpoint(i, self.seed.wrapping_add(fastrand::u64(..)))
            .expect("endpoint");
        let config = Config {
            seed: Some(self.seed.wrapping_mul(31).wrapping_add(i as u64)),
            ..self.config.clone()
        };
        let state = Arc::new(KvState::new());
        let raft = Raft::builder(config, i, self.n(), endpoint)
            .storage(storage)
            .start_with_state_machine(state.machine())
            .expect("node starts");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        KvServer::start(raft, state, listener, self.options.clone()).expect("server starts")
    }

    fn n(&self) -> usize {
        self.network.nodes()
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        self.servers.iter().map(KvServer::local_addr).collect()
    }

    fn raft(&self, i: usize) -> &Raft {
        self.servers[i].raft()
    }

    /// The one node that believes it leads, once there is exactly one among the live ones.
    fn leader(&self) -> usize {
        let mut leader = None;
        wait_for("a single leader", || {
            let leaders: Vec<usize> = (0..self.servers.len())
                .filter(|&i| !self.raft(i).is_killed() && self.raft(i).get_state().1)
                .collect();
            leader = leaders.first().copied();
            leaders.len() == 1
        });
        leader.expect("a leader")
    }
}

/// Sends one request on `stream` and reads its response.
fn call(stream: &mut TcpStream, request: &Request) -> Response {
    let mut out = Vec::new();
    request.encode(&mut out).expect("encodable");
    protocol::write_frame(stream, &out).expect("request sent");
    let body = protocol::read_frame(stream, MAX_FRAME)
        .expect("response read")
        .expect("a response before the end of the stream");
    Response::decode(body).expect("a well-formed response")
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// Sends `request` to each server in turn until one answers `Ok`, and returns the value.
fn until_ok(cluster: &KvCluster, request: &Request) -> Bytes {
    let mut answer = None;
    let mut i = 0;
    wait_for("a server to serve the request", || {
        let addr = cluster.servers[i % cluster.servers.len()].local_addr();
        i += 1;
        match call(&mut connect(addr), request) {
            Response::Ok { value } => {
                answer = Some(value);
                true
            }
            _ => false,
        }
    });
    answer.expect("answered")
}

/// Reads what the server sends until it closes the connection. Closing with input still unread
/// makes the kernel reset the connection instead of ending it: either way it is closed, but a
/// reset may discard what was sent before, so then nothing is returned.
fn read_until_closed(stream: &mut TcpStream, case: &str) -> Vec<u8> {
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => answer,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Vec::new(),
        Err(e) => panic!("{case}: the server did not close the connection: {e}"),
    }
}

fn bytes(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[test]
fn puts_appends_and_gets_return_what_was_written() {
    let cluster = KvCluster::start(3, Config::production(), ServerOptions::default());
    let mut client = KvClient::new(cluster.addrs(), patient());
    assert_eq!(
        client.get("a").unwrap(),
        "",
        "a key never written reads empty"
    );
    client.put("a", "1").unwrap();
    client.append("a", "2").unwrap();
    client.append("b", "x").unwrap();
    client.put("c", "").unwrap();
    assert_eq!(client.get("a").unwrap(), "12");
    assert_eq!(client.get("b").unwrap(), "x");
    assert_eq!(client.get("c").unwrap(), "");
    client.put("a", "3").unwrap();
    // Another client, starting from no leader knowledge, reads the latest write.
    let mut other = KvClient::new(cluster.addrs(), patient());
    assert_ne!(other.id(), client.id());
    assert_eq!(other.get("a").unwrap(), "3");
    for i in 0..50 {
        other.append("many", &format!("{i},")).unwrap();
    }
    let want: String = (0..50).map(|i| format!("{i},")).collect();
    assert_eq!(client.get("many").unwrap(), want);
    // Unicode and an empty key travel intact.
    client.put("", "ключ → värde").unwrap();
    assert_eq!(other.get("").unwrap(), "ключ → värde");
}

#[test]
fn every_read_mode_reads_what_was_written() {
    for mode in [
        ReadMode::ReadIndex,
        ReadMode::Lease,
        ReadMode::Log,
        ReadMode::UnsafeLocal,
    ] {
        let options = ServerOptions {
            read_mode: mode,
            ..ServerOptions::default()
        };
        let cluster = KvCluster::start(3, Config::production(), options);
        let mut client = KvClient::new(cluster.addrs(), patient());
        for i in 0..10 {
            client.append("k", &i.to_string()).unwrap();
            // The client asks the node that took its write, which has applied it: even the
            // unchecked local read sees it there.
            assert_eq!(
                client.get("k").unwrap(),
                (0..=i).map(|j| j.to_string()).collect::<String>(),
                "{mode:?}, read {i}"
            );
        }
        // Only the unchecked mode answers a read on a follower.
        let leader = cluster.leader();
        let follower = (leader + 1) % 3;
        let term = cluster.raft(leader).get_state().0;
        let get = Request::Get {
            client: 9,
            seq: 1,
            key: bytes("k"),
        };
        let answer = call(&mut connect(cluster.servers[follower].local_addr()), &get);
        match mode {
            ReadMode::UnsafeLocal => {
                assert!(
                    matches!(answer, Response::Ok { .. }),
                    "{mode:?}: {answer:?}"
                );
            }
            // Unless the follower was elected meanwhile, in a later term.
            _ => assert!(
                matches!(answer, Response::WrongLeader { .. })
                    || cluster.raft(follower).get_state().0 > term,
                "{mode:?}: {answer:?}"
            ),
        }
    }
}

#[test]
fn shutdown_closes_connections_and_stops_listening() {
    let mut cluster = KvCluster::start(1, Config::production(), ServerOptions::default());
    let addr = cluster.servers[0].local_addr();
    let mut stream = connect(addr);
    assert!(matches!(
        call(&mut stream, &Request::Status),
        Response::Status(_)
    ));
    cluster.servers[0].shutdown();
    assert_eq!(cluster.servers[0].connections(), 0);
    // The open connection ends, and nothing listens any more.
    assert!(read_until_closed(&mut stream, "open connection").is_empty());
    assert!(TcpStream::connect(addr).is_err(), "still listening");
    cluster.servers[0].shutdown();
}

#[test]
fn killing_the_leader_loses_nothing_acknowledged() {
    let cluster = KvCluster::start(3, Config::production(), ServerOptions::default());
    let mut client = KvClient::new(cluster.addrs(), patient());
    let mut want = String::new();
    for i in 0..20 {
        client.append("log", &format!("{i};")).unwrap();
        want.push_str(&format!("{i};"));
    }
    client.put("fixed", "before").unwrap();
    let old = cluster.leader();
    cluster.raft(old).kill();
    for i in 20..40 {
        client.append("log", &format!("{i};")).unwrap();
        want.push_str(&format!("{i};"));
    }
    assert_ne!(client.leader(), old, "the client moved to the new leader");
    assert_eq!(client.get("log").unwrap(), want);
    assert_eq!(client.get("fixed").unwrap(), "before");
    let new = cluster.leader();
    assert_ne!(new, old);
    // The killed node's server sends clients on: it names no leader.
    let answer = call(
        &mut connect(cluster.servers[old].local_addr()),
        &Request::Get {
            client: 1,
            seq: 1,
            key: bytes("log"),
        },
    );
    assert_eq!(answer, Response::WrongLeader { leader: None });
}

#[test]
fn a_retried_request_is_applied_once() {
    let cluster = KvCluster::start(3, Config::production(), ServerOptions::default());
    let append = Request::Append {
        client: 77,
        seq: 1,
        key: bytes("r"),
        value: bytes("x"),
    };
    // The same request twice, as a client whose first answer was lost would send it.
    until_ok(&cluster, &append);
    until_ok(&cluster, &append);
    let mut client = KvClient::new(cluster.addrs(), patient());
    assert_eq!(client.get("r").unwrap(), "x");
    // Twice on one connection, back to back, to the leader.
    let leader = cluster.leader();
    let mut stream = connect(cluster.servers[leader].local_addr());
    let next = Request::Append {
        client: 77,
        seq: 2,
        key: bytes("r"),
        value: bytes("y"),
    };
    let first = call(&mut stream, &next);
    let second = call(&mut stream, &next);
    if first
        == (Response::Ok {
            value: Bytes::new(),
        })
    {
        assert_eq!(second, first);
        assert_eq!(client.get("r").unwrap(), "xy");
    } else {
        // Leadership moved between `leader()` and the call: send it where it is served.
        until_ok(&cluster, &next);
        until_ok(&cluster, &next);
        assert_eq!(client.get("r").unwrap(), "xy");
    }
    // An older request of the same client, arriving late, changes nothing either.
    until_ok(&cluster, &append);
    assert_eq!(client.get("r").unwrap(), "xy");
}

#[test]
fn a_follower_answers_wrong_leader_naming_the_leader() {
    let cluster = KvCluster::start(3, Config::production(), ServerOptions::default());
    let mut client = KvClient::new(cluster.addrs(), patient());
    client.put("k", "v").unwrap();
    let put = Request::Put {
        client: 5,
        seq: 1,
        key: bytes("k"),
        value: bytes("w"),
    };
    let get = Request::Get {
        client: 5,
        seq: 2,
        key: bytes("k"),
    };
    // A follower names its leader once it has heard from it: wait for that, then ask it.
    wait_for("a follower to name the leader", || {
        let leader = cluster.leader();
        let follower = (leader + 1) % 3;
        if cluster.raft(follower).status().leader != Some(leader) {
            return false;
        }
        let mut stream = connect(cluster.servers[follower].local_addr());
        let want = Response::WrongLeader {
            leader: Some(leader as u64),
        };
        let answers = (call(&mut stream, &put), call(&mut stream, &get));
        // Leadership may move meanwhile on a very slow machine; then look again.
        if answers != (want.clone(), want) {
            assert_ne!(cluster.leader(), leader, "unexpected answers {answers:?}");
            return false;
        }
        true
    });
    assert_eq!(
        client.get("k").unwrap(),
        "v",
        "the follower applied nothing"
    );
}

#[test]
fn status_reports_each_node() {
    let cluster = KvCluster::start(3, Config::production(), ServerOptions::default());
    let mut client = KvClient::new(cluster.addrs(), patient());
    client.put("k", "v").unwrap();
    let leader = cluster.leader();
    wait_for("every node to know the leader", || {
        (0..3).all(|i| {
            let status = client.status(cluster.servers[i].local_addr()).unwrap();
            assert_eq!(status.id, i as u64);
            assert!(status.last_applied <= status.commit_index);
            assert!(status.commit_index <= status.last_log_index);
            status.leader == Some(leader as u64)
                && (status.role == Role::Leader) == (i == leader)
                && status.last_applied >= 2
        })
    });
}

#[test]
fn garbage_closes_its_connection_and_the_server_serves_others() {
    let cluster = KvCluster::start(3, Config::production(), ServerOptions::default());
    let mut client = KvClient::new(cluster.addrs(), patient());
    client.put("k", "v").unwrap();
    let addr = cluster.servers[0].local_addr();
    let mut oversized = u32::MAX.to_le_bytes().to_vec();
    oversized.extend_from_slice(b"more");
    let mut unknown_kind = 2u32.to_le_bytes().to_vec();
    unknown_kind.extend_from_slice(&[protocol::VERSION, 0x7f]);
    let mut short_field = 6u32.to_le_bytes().to_vec();
    short_field.extend_from_slice(&[protocol::VERSION, 1, 0, 0, 0, 0]);
    let hostile: [(&str, Vec<u8>); 5] = [
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        ("an oversized length prefix", oversized),
        ("an unknown kind", unknown_kind),
        ("a field cut short", short_field),
        ("a frame cut short", {
            let mut v = 100u32.to_le_bytes().to_vec();
            v.extend_from_slice(&[protocol::VERSION, 1, 2, 3]);
            v
        }),
    ];
    for (case, bytes) in &hostile {
        let mut stream = connect(addr);
        stream.write_all(bytes).unwrap();
        // The frame cut short ends only when the stream does.
        stream.shutdown(Shutdown::Write).unwrap();
        // The server answers with at most an error, then closes: reading reaches the end.
        let answer = read_until_closed(&mut stream, case);
        if !answer.is_empty() {
            let body = protocol::read_frame(&mut &answer[..], MAX_FRAME)
                .unwrap()
                .unwrap();
            assert!(
                matches!(Response::decode(body), Ok(Response::Error(_))),
                "{case}"
            );
        }
    }
    // Random garbage, many times over.
    for round in 0..20 {
        let garbage: Vec<u8> = (0..fastrand::usize(1..200))
            .map(|_| fastrand::u8(..))
            .collect();
        let mut stream = connect(addr);
        stream.write_all(&garbage).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        read_until_closed(&mut stream, &format!("garbage round {round}"));
    }
    // The server still serves, and the hostile connections are gone.
    let fresh = KvClient::new(vec![addr], patient());
    let status = fresh.status(addr).unwrap();
    assert_eq!(status.id, 0);
    assert_eq!(client.get("k").unwrap(), "v");
    client.append("k", "w").unwrap();
    assert_eq!(client.get("k").unwrap(), "vw");
    wait_for("the hostile connections to be closed", || {
        cluster.servers[0].connections() <= 1
    });
}

#[test]
fn connections_beyond_the_limit_are_refused() {
    let options = ServerOptions {
        max_connections: 2,
        ..ServerOptions::default()
    };
    let cluster = KvCluster::start(1, Config::production(), options);
    let addr = cluster.servers[0].local_addr();
    let mut held: Vec<TcpStream> = Vec::new();
    for _ in 0..2 {
        let mut stream = connect(addr);
        // Served: it answers a status request.
        assert!(matches!(
            call(&mut stream, &Request::Status),
            Response::Status(_)
        ));
        held.push(stream);
    }
    let mut third = connect(addr);
    let body = protocol::read_frame(&mut third, MAX_FRAME)
        .unwrap()
        .unwrap();
    assert_eq!(
        Response::decode(body).unwrap(),
        Response::Error("too many connections".into())
    );
    // Once one closes, a new connection is served.
    drop(held.pop());
    wait_for("the closed connection to be released", || {
        cluster.servers[0].connections() == 1
    });
    let mut stream = connect(addr);
    assert!(matches!(
        call(&mut stream, &Request::Status),
        Response::Status(_)
    ));
}

#[test]
fn a_node_restarted_from_its_snapshot_keeps_deduplicating() {
    let config = Config {
        compaction: Compaction {
            every_entries: Some(10),
            above_bytes: None,
        },
        ..Config::production()
    };
    let mut cluster = KvCluster::start(3, config, ServerOptions::default());
    let mut client = KvClient::new(cluster.addrs(), patient());
    let mut want = String::new();
    for i in 0..60 {
        client.append("k", &format!("{i},")).unwrap();
        want.push_str(&format!("{i},"));
    }
    // The node that acknowledged the last append had applied it: everything acknowledged is at
    // or below its applied index. (Its published status may still trail what it applied.)
    let acked = client.leader();
    let follower = (acked + 1) % 3;
    let applied = cluster.servers[acked].state().applied_index();
    wait_for("the follower to apply everything and compact", || {
        let status = cluster.raft(follower).status();
        cluster.servers[follower].state().applied_index() >= applied && status.snapshot_index > 0
    });
    // Stop the follower and start it again from what it stored.
    cluster.servers[follower].raft().kill();
    // Its server goes too (with the last handle to the old node), freeing the node's endpoint.
    drop(cluster.servers.remove(follower));
    let storage = cluster.storages[follower].copy();
    let restarted = cluster.start_node(follower, storage);
    cluster.servers.insert(follower, restarted);
    let state = cluster.servers[follower].state().clone();
    wait_for("the restarted follower to catch up", || {
        state.applied_index() >= applied
    });
    assert_eq!(state.get(b"k"), Some(Bytes::from(want.clone())));
    assert_eq!(state.last_seq(client.id()), Some(60));
    // Every node refuses a late copy of an early request, the restarted one included.
    let late = Request::Append {
        client: client.id(),
        seq: 3,
        key: bytes("k"),
        value: bytes("again"),
    };
    until_ok(&cluster, &late);
    let mut client = KvClient::new(cluster.addrs(), patient());
    client.append("k", "end").unwrap();
    want.push_str("end");
    assert_eq!(client.get("k").unwrap(), want);
    let applied = cluster.servers[client.leader()].state().applied_index();
    wait_for("the restarted follower to apply the last append", || {
        state.applied_index() >= applied
    });
    assert_eq!(state.get(b"k"), Some(Bytes::from(want)));
}
