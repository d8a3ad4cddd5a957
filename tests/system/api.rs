//! The public API under normal and bad input: clear errors, never a panic or a hang.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use zeroraft::engine::storage::Snapshot;
use zeroraft::transport::EndpointError;
use zeroraft::{
    Config, ConfigError, MemStorage, Network, NetworkConfig, NodeFailure, Raft, RestoreError,
    StartError, WeakRaft,
};
use zeroraft_harness::cluster::{Cluster, cmd};

/// Fast timings so these tests need no more than a few hundred milliseconds per election.
fn fast() -> Config {
    Config {
        heartbeat_interval: Duration::from_millis(20),
        election_timeout_min: Duration::from_millis(60),
        election_timeout_max: Duration::from_millis(120),
        ..Config::default()
    }
}

/// Polls `done` every 5 ms until it holds, failing with `what` after `limit`. The nodes make
/// progress on their own threads; the tests can only watch what they publish.
fn eventually(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn leader_of(cfg: &Cluster) -> usize {
    let mut leader = None;
    eventually(Duration::from_secs(10), "no leader within 10 s", || {
        leader = (0..cfg.n()).find(|&i| cfg.raft(i).get_state().1);
        leader.is_some()
    });
    leader.expect("found")
}

#[test]
fn config_errors_are_reported() {
    let net = Network::new(NetworkConfig::new(3)).unwrap();
    let (tx, _rx) = crossbeam_channel::unbounded();
    let cases: Vec<(Config, usize, usize, usize, ConfigError)> = vec![
        (Config::default(), 0, 0, 0, ConfigError::NoPeers),
        (
            Config::default(),
            3,
            3,
            0,
            ConfigError::NodeOutOfRange { me: 3, peers: 3 },
        ),
        (
            Config::default(),
            1,
            3,
            0,
            ConfigError::EndpointMismatch {
                endpoint_id: 0,
                endpoint_nodes: 3,
            },
        ),
        (
            Config::default(),
            0,
            5,
            0,
            ConfigError::EndpointMismatch {
                endpoint_id: 0,
                endpoint_nodes: 3,
            },
        ),
        (
            Config::default(),
            0,
            100,
            0,
            ConfigError::TooManyPeers {
                peers: 100,
                max: 64,
            },
        ),
        (
            Config {
                election_timeout_min: Duration::from_millis(600),
                ..Config::default()
            },
            0,
            3,
            0,
            ConfigError::Invalid("election_timeout_min must be below election_timeout_max"),
        ),
        (
            Config {
                heartbeat_interval: Duration::ZERO,
                ..Config::default()
            },
            0,
            3,
            0,
            ConfigError::Invalid("heartbeat_interval must be above zero"),
        ),
        (
            Config {
                max_inflight: 0,
                ..Config::default()
            },
            0,
            3,
            0,
            ConfigError::Invalid(
                "max_append_entries, max_append_bytes and max_inflight must be above zero",
            ),
        ),
        (
            Config {
                heartbeat_interval: Duration::from_nanos(1),
                election_timeout_min: Duration::from_nanos(2),
                election_timeout_max: Duration::from_nanos(3),
                spin: Duration::ZERO,
                commit_notify_delay: Duration::ZERO,
                ..Config::default()
            },
            0,
            3,
            0,
            ConfigError::Invalid(
                "heartbeat_interval must be at least 1 ms: more often, heartbeats alone flood the \
                 network with a message per follower per interval",
            ),
        ),
        (
            Config {
                max_append_entries: usize::MAX,
                ..Config::default()
            },
            0,
            3,
            0,
            ConfigError::Invalid(
                "max_append_entries must be at most 2^20 (Config::MAX_APPEND_ENTRIES)",
            ),
        ),
        (
            Config {
                max_inflight: usize::MAX,
                ..Config::default()
            },
            0,
            3,
            0,
            ConfigError::Invalid(
                "max_inflight must be at most 2^16 (Config::MAX_INFLIGHT): the leader keeps a \
                 ring of that many indices per follower",
            ),
        ),
        (
            Config {
                commit_notify_delay: Duration::MAX,
                ..Config::default()
            },
            0,
            3,
            0,
            ConfigError::Invalid("commit_notify_delay must be below election_timeout_min"),
        ),
        (
            Config {
                spin: Duration::MAX,
                ..Config::default()
            },
            0,
            3,
            0,
            ConfigError::Invalid(
                "spin must be at most 10 ms (Config::MAX_SPIN) and below heartbeat_interval: a \
                 spinning node sends no heartbeats",
            ),
        ),
        (
            Config {
                spin: Duration::from_secs(10),
                ..Config::default()
            },
            0,
            3,
            0,
            ConfigError::Invalid(
                "spin must be at most 10 ms (Config::MAX_SPIN) and below heartbeat_interval: a \
                 spinning node sends no heartbeats",
            ),
        ),
    ];
    for (case, (config, me, peers, endpoint, want)) in cases.into_iter().enumerate() {
        let endpoint = net.endpoint(endpoint, 1).unwrap();
        let got = Raft::new(config, me, peers, endpoint, tx.clone())
            .map(|_| ())
            .unwrap_err();
        assert_eq!(got, want, "case {case}");
        assert!(
            !got.to_string().is_empty(),
            "case {case}: the error explains itself"
        );
    }
    assert!(
        Network::new(NetworkConfig::new(0)).is_err(),
        "a network of 0 nodes is refused"
    );
    assert!(
        net.endpoint(3, 0).is_err(),
        "an endpoint out of range is refused"
    );
}

#[test]
fn empty_and_large_commands() {
    let config = Config {
        max_command_bytes: 32 << 20,
        ..fast()
    };
    let cfg = Cluster::with_config(3, false, config);

    // An empty command commits like any other.
    let empty = cfg.one(Bytes::new(), 3, true);
    assert_eq!(cfg.n_committed(empty), (3, Some(Bytes::new())));

    // A 16 MiB command commits when the limit allows it ...
    let big = Bytes::from(vec![7u8; 16 << 20]);
    let index = cfg.one(big.clone(), 3, true);
    assert_eq!(cfg.n_committed(index).1.map(|b| b.len()), Some(16 << 20));

    // ... and is refused with a clear error when it does not.
    let small = Cluster::with_config(1, false, fast());
    let only = leader_of(&small);
    assert_eq!(only, 0);
    let err = small.raft(0).try_start(big).unwrap_err();
    assert_eq!(
        err,
        StartError::TooLarge {
            len: 16 << 20,
            max: 4 << 20
        }
    );
    cfg.check_apply_error();
}

#[test]
fn start_returns_the_index_the_command_lands_at() {
    let cfg = Cluster::with_config(3, false, fast());
    let leader = leader_of(&cfg);
    // Eight threads propose at once; every accepted command must land exactly where start said.
    let results: Vec<(u64, u64, Bytes)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8u64)
            .map(|t| {
                let raft = cfg.raft(leader);
                s.spawn(move || {
                    (0..200u64)
                        .filter_map(|k| {
                            let c = cmd(t * 1000 + k);
                            raft.try_start(c.clone()).ok().map(|(i, term)| (i, term, c))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(!results.is_empty(), "the leader accepted commands");
    let terms: std::collections::HashSet<u64> = results.iter().map(|r| r.1).collect();
    // The node may step down and be elected again: an index is handed out once per term.
    let mut claims: Vec<(u64, u64)> = results.iter().map(|r| (r.1, r.0)).collect();
    claims.sort_unstable();
    claims.dedup();
    assert_eq!(
        claims.len(),
        results.len(),
        "every (term, index) was handed out once"
    );
    if terms.len() == 1 {
        // The leader kept its term, so every command must be where start() said.
        for (index, _, c) in &results {
            assert_eq!(
                cfg.wait(*index, 3, None).as_ref(),
                Some(c),
                "command at index {index}"
            );
        }
    }
}

#[test]
fn killed_node_refuses_and_reports() {
    let cfg = Cluster::with_config(3, false, fast());
    let leader = leader_of(&cfg);
    let raft = cfg.raft(leader).clone();
    raft.kill();
    raft.kill(); // a second kill does nothing
    assert!(raft.is_killed());
    assert_eq!(raft.try_start(cmd(1)), Err(StartError::Killed));
    let (_, _, is_leader) = raft.start(cmd(1));
    assert!(!is_leader, "a killed node never claims leadership");
    assert!(!raft.get_state().1);
    assert!(raft.status().killed);
    // The others elect a new leader and carry on.
    cfg.disconnect(leader);
    let index = cfg.one(cmd(2), 2, true);
    assert!(index >= 1);
}

#[test]
fn not_leader_names_the_leader() {
    let cfg = Cluster::with_config(3, false, fast());
    let leader = leader_of(&cfg);
    let follower = (leader + 1) % 3;
    // Followers learn the leader from its first heartbeat.
    eventually(
        Duration::from_secs(5),
        "the follower never learned the leader",
        || match cfg.raft(follower).try_start(cmd(1)) {
            Err(StartError::NotLeader {
                leader: Some(l), ..
            }) => {
                assert_eq!(l, leader);
                true
            }
            Err(StartError::NotLeader { leader: None, .. }) => false,
            other => panic!("a follower accepted a command: {other:?}"),
        },
    );
}

#[test]
fn dropped_apply_receiver_and_full_apply_channel() {
    // A node whose apply receiver is gone keeps working; one whose bounded channel is full
    // can still be killed.
    let net = Network::new(NetworkConfig::new(1)).unwrap();
    net.connect(0);
    let (tx, rx) = crossbeam_channel::bounded(1);
    let raft = Raft::new(fast(), 0, 1, net.endpoint(0, 3).unwrap(), tx).unwrap();
    eventually(
        Duration::from_secs(10),
        "a single node elects itself",
        || raft.get_state().1,
    );
    for k in 0..10 {
        raft.try_start(cmd(k)).unwrap();
    }
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap().index(), 1);
    // The channel now holds at most one more message and the node waits for room.
    let started = Instant::now();
    raft.kill();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "kill did not return within 2 s while the apply channel was full"
    );
    drop(rx);

    let (tx, rx) = crossbeam_channel::unbounded();
    let raft = Raft::new(
        fast(),
        0,
        1,
        Network::new(NetworkConfig::new(1))
            .unwrap()
            .endpoint(0, 4)
            .unwrap(),
        tx,
    )
    .unwrap();
    drop(rx);
    eventually(
        Duration::from_secs(10),
        "a single node elects itself without a network link to itself",
        || raft.try_start(cmd(1)).is_ok(),
    );
    eventually(
        Duration::from_secs(5),
        "commits continue without an apply receiver",
        || raft.status().commit_index >= 1,
    );
}

#[test]
fn status_reports_replication() {
    let cfg = Cluster::with_config(5, false, fast());
    let leader = leader_of(&cfg);
    let index = cfg.one(cmd(5), 5, true);
    let mut status = cfg.raft(leader).status();
    eventually(
        Duration::from_secs(5),
        "status never showed full replication",
        || {
            status = cfg.raft(leader).status();
            let peers: HashMap<usize, u64> =
                status.peers.iter().map(|p| (p.id, p.match_index)).collect();
            status.commit_index >= index && peers.len() == 4 && peers.values().all(|&m| m >= index)
        },
    );
    assert_eq!(status.role, zeroraft::Role::Leader);
    assert!(status.last_applied >= index);
    assert!(status.messages_out > 0 && status.messages_in > 0);
}

#[test]
fn handles_and_the_harness_can_be_shared_across_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Raft>();
    shareable::<Network>();
    shareable::<Cluster>();
    shareable::<zeroraft::Status>();
}

#[test]
fn concurrent_kills_all_return_after_the_thread_ended() {
    let cfg = Cluster::with_config(3, false, fast());
    let raft = cfg.raft(leader_of(&cfg)).clone();
    std::thread::scope(|s| {
        for _ in 0..4 {
            let raft = raft.clone();
            s.spawn(move || {
                raft.kill();
                // Every caller sees the final, killed status: the thread published it and ended.
                assert!(
                    raft.status().killed,
                    "kill returned before the node's thread ended"
                );
            });
        }
    });
}

/// Runs `f` on a thread of its own and fails if it has not returned within `limit`: a hang is
/// a failure, not a stuck test run. (A hung thread is left behind; the process ends with the run.)
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} did not return within {limit:?}"))
}

/// A single-node cluster, elected, applying with `state_machine`.
fn single_node<S: zeroraft::StateMachine>(config: Config, state_machine: S) -> (Network, Raft) {
    let net = Network::new(NetworkConfig::new(1)).unwrap();
    net.connect(0);
    let endpoint = net.endpoint(0, 5).unwrap();
    let raft = Raft::with_state_machine(config, 0, 1, endpoint, state_machine).unwrap();
    eventually(
        Duration::from_secs(10),
        "a single node elects itself",
        || raft.get_state().1,
    );
    (net, raft)
}

#[test]
fn kill_from_the_state_machine_while_another_thread_kills() {
    // The state machine kills its own node while the test's thread is inside `kill` too, holding
    // the lock under which it waits for the node's thread to end.
    for round in 0..3 {
        let me: Arc<OnceLock<WeakRaft>> = Arc::default();
        let entered = Arc::new(AtomicBool::new(false));
        let (inner, inside) = (me.clone(), entered.clone());
        let (net, raft) = single_node(fast(), move |_: u64, _: u64, _: &Bytes| {
            let Some(raft) = inner.get().and_then(WeakRaft::upgrade) else {
                return;
            };
            inside.store(true, SeqCst);
            while !raft.is_killed() {
                std::thread::yield_now();
            }
            // Let the other killer reach its join (the interleaving that used to deadlock).
            std::thread::sleep(Duration::from_millis(20));
            raft.kill();
        });
        me.set(raft.downgrade()).unwrap();
        raft.try_start(cmd(round)).unwrap();
        let killer = raft.clone();
        within(Duration::from_secs(10), "kill", move || {
            while !entered.load(SeqCst) {
                std::thread::yield_now();
            }
            killer.kill();
        });
        assert!(raft.status().killed, "round {round}: the thread ended");
        drop(net);
    }
}

#[test]
fn a_state_machine_with_a_weak_handle_lets_its_node_go() {
    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, SeqCst);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let me: Arc<OnceLock<WeakRaft>> = Arc::default();
    let (inner, flag) = (me.clone(), Flag(dropped.clone()));
    let applied_through_handle = Arc::new(AtomicBool::new(false));
    let seen = applied_through_handle.clone();
    let (_net, raft) = single_node(fast(), move |_: u64, _: u64, _: &Bytes| {
        let _keep = &flag;
        if let Some(raft) = inner.get().and_then(WeakRaft::upgrade) {
            // The handle works from the node's own thread.
            seen.store(raft.get_state().1, SeqCst);
        }
    });
    me.set(raft.downgrade()).unwrap();
    raft.try_start(cmd(1)).unwrap();
    eventually(Duration::from_secs(5), "the command applied", || {
        applied_through_handle.load(SeqCst)
    });
    let weak = raft.downgrade();
    within(
        Duration::from_secs(10),
        "dropping the last handle",
        move || drop(raft),
    );
    assert!(
        dropped.load(SeqCst),
        "the node's thread ended and dropped its state machine with the last handle"
    );
    assert!(weak.upgrade().is_none());
}

#[test]
fn a_panic_in_apply_stops_the_node_with_the_reason() {
    let (_net, raft) = single_node(fast(), |_: u64, _: u64, command: &Bytes| {
        assert!(&command[..] != b"boom", "the state machine refuses boom");
    });
    raft.try_start(Bytes::from_static(b"fine")).unwrap();
    raft.try_start(Bytes::from_static(b"boom")).unwrap();
    eventually(Duration::from_secs(5), "the node stopped", || {
        raft.status().killed
    });
    let status = raft.status();
    let failure = status.failure.as_deref().expect("the status says why");
    assert!(
        failure.contains("panicked") && failure.contains("the state machine refuses boom"),
        "{failure}"
    );
    assert!(raft.is_killed());
    assert!(!raft.get_state().1, "no longer reported as leader");
    match raft.try_start(cmd(3)) {
        Err(StartError::Failed(stopped)) => {
            assert_eq!(stopped.to_string(), failure);
            assert!(
                matches!(&stopped, NodeFailure::StateMachinePanic { message }
                    if message == "the state machine refuses boom"),
                "the state machine's panic, told apart from the engine's: {stopped:?}"
            );
            assert_eq!(raft.failure(), Some(stopped));
        }
        other => panic!("expected StartError::Failed, got {other:?}"),
    }
    within(Duration::from_secs(10), "kill after a panic", move || {
        raft.kill()
    });
}

#[test]
fn a_snapshot_the_state_machine_refuses_stops_the_node_with_the_reason() {
    struct Refuses;
    impl zeroraft::StateMachine for Refuses {
        fn apply(&mut self, _: u64, _: u64, _: &Bytes) {}
        fn restore(&mut self, snapshot: &Snapshot) -> Result<(), RestoreError> {
            Err(RestoreError::new(format!(
                "cannot read {} bytes",
                snapshot.data.len()
            )))
        }
    }
    // A node compacts its log into a snapshot at index 2, and stops.
    let storage = MemStorage::new();
    let net = Network::new(NetworkConfig::new(1)).unwrap();
    net.connect(0);
    let raft = Raft::builder(fast(), 0, 1, net.endpoint(0, 5).unwrap())
        .storage(storage.clone())
        .start_with_state_machine(|_: u64, _: u64, _: &Bytes| {})
        .unwrap();
    eventually(Duration::from_secs(10), "a leader", || raft.get_state().1);
    raft.try_start(cmd(1)).unwrap();
    raft.try_start(cmd(2)).unwrap();
    eventually(Duration::from_secs(10), "both applied", || {
        raft.status().last_applied >= 2
    });
    raft.snapshot(2, Bytes::from_static(b"state at 2"));
    eventually(Duration::from_secs(10), "the log compacted", || {
        raft.status().snapshot_index == 2
    });
    // The snapshot is stored with the next write: once a later entry is committed (a single
    // node commits what it made durable), so is the snapshot.
    raft.try_start(cmd(3)).unwrap();
    eventually(Duration::from_secs(10), "a later entry applied", || {
        raft.status().last_applied >= 3
    });
    raft.kill();

    // Restarted from that storage with a state machine that cannot take the snapshot.
    let raft = Raft::builder(fast(), 0, 1, net.endpoint(0, 6).unwrap())
        .storage(storage)
        .start_with_state_machine(Refuses)
        .unwrap();
    eventually(Duration::from_secs(10), "the node stopped", || {
        raft.is_killed()
    });
    let expected = NodeFailure::RestoreRefused {
        index: 2,
        error: RestoreError::new("cannot read 10 bytes"),
    };
    assert_eq!(raft.failure(), Some(expected.clone()));
    assert_eq!(raft.try_start(cmd(4)), Err(StartError::Failed(expected)));
    assert_eq!(
        raft.status().failure.as_deref(),
        Some("the state machine cannot restore snapshot 2: cannot read 10 bytes")
    );
}

#[test]
fn a_blocked_leader_pushes_back_on_start() {
    // The apply channel holds one entry and nobody reads it: the node's thread blocks on the
    // second. `start` must then refuse once the queue is full, not grow it without bound.
    let net = Network::new(NetworkConfig::new(1)).unwrap();
    net.connect(0);
    let (tx, rx) = crossbeam_channel::bounded(1);
    let config = Config {
        max_queued_proposals: 1000,
        ..fast()
    };
    let raft = Raft::new(config, 0, 1, net.endpoint(0, 6).unwrap(), tx).unwrap();
    eventually(
        Duration::from_secs(10),
        "a single node elects itself",
        || raft.get_state().1,
    );
    let mut accepted = 0u64;
    let refused = loop {
        match raft.try_start(cmd(accepted)) {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(
            accepted < 1_000_000,
            "a blocked leader accepted a million commands"
        );
    };
    // The refusal is the bound: `start` claims an index at most 1000 beyond the last one the
    // node appended. (The published status cannot show that last index: the node's thread
    // blocked in apply before publishing the batch it had just appended.)
    assert_eq!(refused, StartError::Busy { limit: 1000 });
    assert!(refused.to_string().contains("1000 commands"), "{refused}");
    let (index, _, ok) = raft.start(cmd(0));
    assert_eq!((index, ok), (0, false), "start reports a refusal");
    assert!(raft.get_state().1, "the node still leads");

    // Once the service reads again, the node catches up and accepts commands again.
    let reader = std::thread::spawn(move || while rx.recv().is_ok() {});
    eventually(Duration::from_secs(10), "the leader accepts again", || {
        raft.try_start(cmd(1)).is_ok()
    });
    eventually(
        Duration::from_secs(10),
        "everything accepted is applied",
        || raft.status().last_applied > accepted,
    );
    within(Duration::from_secs(10), "kill", move || raft.kill());
    reader.join().unwrap();
}

#[test]
fn an_endpoint_serves_one_node_at_a_time() {
    let net = Network::new(NetworkConfig::new(1)).unwrap();
    let (tx, _rx) = crossbeam_channel::unbounded();
    let raft = Raft::new(fast(), 0, 1, net.endpoint(0, 1).unwrap(), tx.clone()).unwrap();
    let err = net.endpoint(0, 2).err();
    assert_eq!(err, Some(EndpointError::InUse { id: 0 }), "a second node 0");
    raft.kill();
    let endpoint = net
        .endpoint(0, 3)
        .expect("a killed node's endpoint is free again");
    let again = Raft::new(fast(), 0, 1, endpoint, tx).unwrap();
    again.kill();
}
