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
use zeroraft::kv::protocol::{self, MAX_FRAME, MAX_UNACKNOWLEDGED, Request, Response};
use zeroraft::kv::{
    ClientOptions, KvClient, KvError, KvServer, KvState, ReadMode, ServerOptions, SessionOptions,
};
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

/// `Config::production()`, each node snapshotting every `entries` entries applied.
fn compacting_every(entries: u64) -> Config {
    Config {
        compaction: Compaction {
            every_entries: Some(entries),
            above_bytes: None,
        },
        ..Config::production()
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

/// Sends `request` to each server in turn until one gives an answer that says what became of
/// it (not `WrongLeader`, `Timeout`, `Busy` or `Overloaded`), and returns that answer.
fn until_answered(cluster: &KvCluster, request: &Request) -> Response {
    let mut answer = None;
    let mut i = 0;
    wait_for("a server to serve the request", || {
        let addr = cluster.servers[i % cluster.servers.len()].local_addr();
        i += 1;
        match call(&mut connect(addr), request) {
            Response::WrongLeader { .. }
            | Response::Timeout
            | Response::Busy
            | Response::Overloaded => false,
            other => {
                answer = Some(other);
                true
            }
        }
    });
    answer.expect("answered")
}

/// Sends `request` as [`until_answered`] does, expecting `Ok`, and returns the value.
fn until_ok(cluster: &KvCluster, request: &Request) -> Bytes {
    match until_answered(cluster, request) {
        Response::Ok { value } => value,
        other => panic!("{request:?} answered {other:?}"),
    }
}

/// Opens a session, as a client does before its first request.
fn register(cluster: &KvCluster) -> u64 {
    match until_answered(cluster, &Request::Register) {
        Response::Registered { session } => session,
        other => panic!("a register answered {other:?}"),
    }
}

fn put(session: u64, seq: u64, ack: u64, key: &str, value: &str) -> Request {
    Request::Put {
        session,
        seq,
        ack,
        key: bytes(key),
        value: bytes(value),
    }
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
    assert_eq!(other.get("a").unwrap(), "3");
    assert_ne!(other.session(), client.session(), "a session of its own");
    for i in 0..50 {
        other.append("many", &format!("{i},")).unwrap();
    }
    let want: String = (0..50).map(|i| format!("{i},")).collect();
    assert_eq!(client.get("many").unwrap(), want);
    // Unicode and an empty key travel intact.
    client.put("", "ключ → värde").unwrap();
    assert_eq!(other.get("").unwrap(), "ключ → värde");
}

/// Appends that would grow a value past what a response carries are refused with an error, and
/// the value stays readable (the nodes snapshot it every few entries meanwhile).
#[test]
fn a_value_is_never_grown_past_what_a_response_carries() {
    let cluster = KvCluster::start(3, compacting_every(3), ServerOptions::default());
    let mut client = KvClient::new(cluster.addrs(), patient());
    let chunk = "x".repeat(3 << 20);
    client.put("big", &chunk).unwrap();
    client.append("big", &chunk).unwrap();
    // 9 MiB would not fit in a response.
    match client.append("big", &chunk) {
        Err(KvError::Server(message)) => {
            assert!(message.contains("nothing was written"), "{message}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let value = client.get("big").unwrap();
    assert_eq!(value.len(), 6 << 20, "the value as it was");
    // What still fits is appended.
    client.append("big", "tail").unwrap();
    assert_eq!(client.get("big").unwrap().len(), (6 << 20) + 4);
    let leader = cluster.leader();
    wait_for("the leader compacts", || {
        cluster.raft(leader).status().snapshot_index > 0
    });
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
            session: 9,
            seq: 1,
            ack: 1,
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
            session: 1,
            seq: 1,
            ack: 1,
            key: bytes("log"),
        },
    );
    assert_eq!(answer, Response::WrongLeader { leader: None });
}

#[test]
fn a_retried_request_is_applied_once_and_a_late_copy_is_stale() {
    let cluster = KvCluster::start(3, Config::production(), ServerOptions::default());
    let session = register(&cluster);
    let append = Request::Append {
        session,
        seq: 1,
        ack: 1,
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
        session,
        seq: 2,
        ack: 2,
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
    // The first request again, arriving late, after the second acknowledged its answer: it is
    // stale, neither applied nor answered Ok.
    assert_eq!(until_answered(&cluster, &append), Response::Stale);
    assert_eq!(client.get("r").unwrap(), "xy");
}

/// What once made an unapplied write look applied: a client id reused by a new client that
/// numbers its requests from 1 again. Here a second client reuses the first one's session.
/// Whatever it sends, an answer `Ok` is only ever given for a write that `get` shows.
#[test]
fn a_reused_session_never_acknowledges_an_unapplied_write() {
    let cluster = KvCluster::start(3, Config::production(), ServerOptions::default());
    let mut first = KvClient::new(cluster.addrs(), patient());
    for _ in 0..3 {
        first.put("k", "1").unwrap();
    }
    let session = first.session().expect("the first client's session");
    let mut reader = KvClient::new(cluster.addrs(), patient());
    let shares = |answer: &Response| matches!(answer, Response::Error(why) if why.contains("two clients share the session"));
    let ok = |answer: &Response| matches!(answer, Response::Ok { .. });
    let stale = |answer: &Response| *answer == Response::Stale;
    type Expect = fn(&Response) -> bool;
    let cases: [(u64, u64, &str, Expect, &str); 5] = [
        // (seq, ack, value) the second client puts, what it must be answered, and `k` after.
        // Requests 1 and 2 of the first client are acknowledged (by the next ones): stale.
        (1, 1, "2", stale, "1"),
        (2, 2, "2", stale, "1"),
        // Request 3 is the first client's last: another put under its number is no retry.
        (3, 3, "2", shares, "1"),
        // The very same put as the first client's request 3: its retry, answered as it was.
        (3, 3, "1", ok, "1"),
        // A number the session has not used yet: applied, and answered Ok.
        (4, 4, "2", ok, "2"),
    ];
    for (case, (seq, ack, value, expect, after)) in cases.into_iter().enumerate() {
        let answer = until_answered(&cluster, &put(session, seq, ack, "k", value));
        assert!(expect(&answer), "case {case}: answered {answer:?}");
        let shown = reader.get("k").unwrap();
        if ok(&answer) {
            assert_eq!(shown, value, "case {case}: answered Ok, yet not applied");
        }
        assert_eq!(shown, after, "case {case}");
    }
}

/// A frame that names another client's session, with `seq = u64::MAX`, written raw: it used to
/// be applied and make every later write of that client be answered Ok without being applied.
#[test]
fn a_forged_frame_never_makes_a_write_look_applied() {
    let cluster = KvCluster::start(3, Config::production(), ServerOptions::default());
    let mut reader = KvClient::new(cluster.addrs(), patient());
    let cases: [(u64, bool, bool); 3] = [
        // The forged ack, whether the forged write is applied, whether the client's next is.
        (0, false, true),
        (u64::MAX - (MAX_UNACKNOWLEDGED - 1), true, false),
        (u64::MAX, true, false),
    ];
    for (case, (ack, forged_applied, next_applied)) in cases.into_iter().enumerate() {
        let (key, forged_key) = (format!("k{case}"), format!("f{case}"));
        let mut client = KvClient::new(cluster.addrs(), patient());
        client.put(&key, "before").unwrap();
        let session = client.session().expect("a session");
        let forged = put(session, u64::MAX, ack, &forged_key, "forged");
        let answer = until_answered(&cluster, &forged);
        let shown = reader.get(&forged_key).unwrap() == "forged";
        assert_eq!(
            shown, forged_applied,
            "case {case}: forged write {answer:?}"
        );
        assert_eq!(
            matches!(answer, Response::Ok { .. }),
            shown,
            "case {case}: {answer:?}"
        );
        let next = client.put(&key, "after");
        let shown = reader.get(&key).unwrap();
        match &next {
            Ok(()) => assert_eq!(shown, "after", "case {case}: answered Ok, yet not applied"),
            Err(KvError::Stale) => assert_eq!(shown, "before", "case {case}"),
            Err(e) => panic!("case {case}: {e}"),
        }
        assert_eq!(next.is_ok(), next_applied, "case {case}: {next:?}");
        // The client goes on, under a new session if it had to leave this one.
        client.put(&key, "again").unwrap();
        assert_eq!(reader.get(&key).unwrap(), "again", "case {case}");
    }
}

/// With room for two sessions, each new client evicts the least recently active one: a write
/// under an evicted session fails as `SessionExpired` (not retried, not applied), a read is
/// asked again under a new session.
#[test]
fn an_evicted_session_fails_a_write_and_renews_for_a_read() {
    let options = ServerOptions {
        read_mode: ReadMode::Log,
        sessions: SessionOptions {
            max_sessions: 2,
            ..SessionOptions::default()
        },
        ..ServerOptions::default()
    };
    let cluster = KvCluster::start(1, Config::production(), options);
    let state = cluster.servers[0].state().clone();
    let client = || KvClient::new(cluster.addrs(), patient());
    let (mut a, mut b, mut c) = (client(), client(), client());
    a.put("k", "a").unwrap();
    b.put("k", "b").unwrap();
    // c's session evicts a's, the least recently active.
    c.put("k", "c").unwrap();
    assert_eq!(state.session_count(), 2);
    assert!(matches!(a.put("k", "lost"), Err(KvError::SessionExpired)));
    assert_eq!(
        c.get("k").unwrap(),
        "c",
        "the write under the evicted session"
    );
    // a's new session evicts b's; b's read is asked again under a new one, which evicts c's.
    assert_eq!(a.get("k").unwrap(), "c");
    let old = b.session();
    assert_eq!(b.get("k").unwrap(), "c");
    assert_ne!(b.session(), old, "b opened a new session");
    assert!(matches!(c.append("k", "x"), Err(KvError::SessionExpired)));
    assert_eq!(a.get("k").unwrap(), "c");
    assert_eq!(state.session_count(), 2);
}

#[test]
fn a_follower_answers_wrong_leader_naming_the_leader() {
    let cluster = KvCluster::start(3, Config::production(), ServerOptions::default());
    let mut client = KvClient::new(cluster.addrs(), patient());
    client.put("k", "v").unwrap();
    let put = put(5, 1, 1, "k", "w");
    let get = Request::Get {
        session: 5,
        seq: 2,
        ack: 2,
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
    assert_eq!(Response::decode(body).unwrap(), Response::Overloaded);
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

/// A client that finds the server's connections all taken waits for one to free, within its
/// operation's timeout, instead of failing at once.
#[test]
fn a_client_waits_for_a_free_connection() {
    let options = ServerOptions {
        max_connections: 2,
        ..ServerOptions::default()
    };
    let cluster = KvCluster::start(1, Config::production(), options);
    let addr = cluster.servers[0].local_addr();
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = connect(addr);
            // Served: it answers a status request.
            assert!(matches!(
                call(&mut stream, &Request::Status),
                Response::Status(_)
            ));
            stream
        })
        .collect();
    let hold = Duration::from_millis(1_500);
    let started = Instant::now();
    let freer = std::thread::spawn(move || {
        // The point of the test: the slot frees only once the client is already waiting.
        sleep(hold);
        drop(held.pop());
        held
    });
    let mut client = KvClient::new(vec![addr], patient());
    client.put("k", "v").unwrap();
    assert!(
        started.elapsed() >= hold,
        "served before a connection was free"
    );
    assert_eq!(client.get("k").unwrap(), "v");
    drop(freer.join().unwrap());
}

#[test]
fn a_node_restarted_from_its_snapshot_keeps_deduplicating() {
    let mut cluster = KvCluster::start(3, compacting_every(10), ServerOptions::default());
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
    let session = client.session().expect("a session");
    assert_eq!(state.session_ack(session), Some(60));
    // A late copy of an early request is refused as stale.
    let late = Request::Append {
        session,
        seq: 3,
        ack: 3,
        key: bytes("k"),
        value: bytes("again"),
    };
    assert_eq!(until_answered(&cluster, &late), Response::Stale);
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
