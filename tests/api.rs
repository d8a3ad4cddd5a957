//! The public API under normal and bad input: clear errors, never a panic or a hang.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use zeroraft::cluster::{Cluster, cmd};
use zeroraft::{Config, ConfigError, Network, NetworkConfig, Raft, StartError};

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
        net.endpoint(3, 0).is_none(),
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
    let mut indices: Vec<u64> = results.iter().map(|r| r.0).collect();
    indices.sort_unstable();
    indices.dedup();
    assert_eq!(
        indices.len(),
        results.len(),
        "every index was handed out once"
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
