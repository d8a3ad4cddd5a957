//! Membership change through the handle, on real node threads: a cluster of three voters
//! grows to five through learners, loses its leader by removal, and keeps committing; commands
//! proposed meanwhile land exactly at the indices `try_start` claimed for them, and no
//! configuration entry reaches a state machine.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use zeroraft_engine::{ChangeError, Config, Membership, MembershipError, Network, Raft};
use zeroraft_transport::NetworkConfig;

const NODES: usize = 5;

/// Fast timings, PreVote, CheckQuorum and the leader's no-op: a removed node cannot disturb
/// the others, and a new leader commits at once.
fn config(seed: u64) -> Config {
    Config {
        heartbeat_interval: Duration::from_millis(20),
        election_timeout_min: Duration::from_millis(100),
        election_timeout_max: Duration::from_millis(200),
        pre_vote: true,
        check_quorum: true,
        leader_no_op: true,
        seed: Some(seed),
        ..Config::default()
    }
}

/// Polls `done` every 5 ms until it holds, failing with `what` after 10 s. The nodes make
/// progress on their own threads; the test can only watch what they publish.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

type Applied = Arc<Mutex<Vec<(u64, Bytes)>>>;

struct Cluster {
    nodes: Vec<Raft>,
    applied: Vec<Applied>,
    /// Kept for as long as the nodes run.
    _net: Network,
}

impl Cluster {
    /// Five nodes of which `voters` vote at first; the others wait to be added.
    fn new(voters: &[usize]) -> Self {
        let net = Network::new(NetworkConfig::new(NODES)).unwrap();
        let initial = Membership::new(voters.iter().copied(), []).unwrap();
        let mut nodes = Vec::new();
        let mut applied = Vec::new();
        for id in 0..NODES {
            let log: Applied = Arc::default();
            let sink = log.clone();
            let endpoint = net.endpoint(id, 1).unwrap();
            net.connect(id);
            let raft = Raft::builder(config(7 + id as u64), id, NODES, endpoint)
                .initial_membership(initial)
                .start_with_state_machine(move |index, _term, command: &Bytes| {
                    sink.lock().unwrap().push((index, command.clone()));
                })
                .unwrap();
            nodes.push(raft);
            applied.push(log);
        }
        Self {
            nodes,
            applied,
            _net: net,
        }
    }

    fn leader(&self) -> usize {
        let mut leader = None;
        eventually("a leader", || {
            leader = (0..NODES).find(|&i| self.nodes[i].get_state().1);
            leader.is_some()
        });
        leader.unwrap()
    }

    /// Runs `change` on the leader, retrying while it is refused for a reason that passes
    /// (a learner still catching up, a leader just elected or stepping down).
    fn change(&self, what: &str, change: impl Fn(&Raft) -> Result<u64, ChangeError>) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let leader = self.leader();
            match change(&self.nodes[leader]) {
                Ok(index) => return index,
                Err(
                    ChangeError::NotCaughtUp(_)
                    | ChangeError::NotLeader { .. }
                    | ChangeError::LeadershipLost
                    | ChangeError::InProgress
                    | ChangeError::Busy,
                ) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("{what}: {e}"),
            }
        }
    }
}

fn ids(it: impl Iterator<Item = usize>) -> Vec<usize> {
    it.collect()
}

#[test]
fn a_cluster_grows_through_learners_and_replaces_its_leader_under_load() {
    let cluster = Arc::new(Cluster::new(&[0, 1, 2]));
    let first = cluster.leader();
    assert!(first < 3, "only a voter leads");

    // Commands proposed all along, to whichever node leads: each command names itself, and the
    // index it was given is kept.
    let stop = Arc::new(AtomicBool::new(false));
    let proposer = {
        let cluster = cluster.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut claimed = HashMap::new();
            let mut n = 0u64;
            while !stop.load(SeqCst) {
                for raft in &cluster.nodes {
                    let command = Bytes::from(format!("command {n}"));
                    if let Ok((index, _)) = raft.try_start(command.clone()) {
                        claimed.insert(command, index);
                        n += 1;
                    }
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            claimed
        })
    };

    // Errors the caller can act on.
    let leader = &cluster.nodes[first];
    assert_eq!(leader.add_learner(9), Err(ChangeError::UnknownNode(9)));
    assert_eq!(leader.promote(3), Err(ChangeError::NotCaughtUp(3)));
    assert_eq!(
        leader.change_membership(&[], &[1]),
        Err(ChangeError::Invalid(MembershipError::NoVoters))
    );
    let follower = (first + 1) % 3;
    assert!(matches!(
        cluster.nodes[follower].add_learner(3),
        Err(ChangeError::NotLeader { .. })
    ));

    cluster.change("add learner 3", |r| r.add_learner(3));
    cluster.change("add learner 4", |r| r.add_learner(4));
    let learners = cluster.nodes[cluster.leader()].membership();
    assert_eq!(ids(learners.membership.learners()), [3, 4]);
    assert!(learners.committed);
    cluster.change("promote 3", |r| r.promote(3));
    cluster.change("promote 4", |r| r.promote(4));
    let five = cluster.nodes[cluster.leader()].membership();
    assert_eq!(ids(five.membership.voters()), [0, 1, 2, 3, 4]);
    assert!(!five.membership.is_joint() && five.committed);

    // The leader removes itself: it steps down once that commits, and another leads.
    let old = cluster.leader();
    let removed_at = cluster.change("remove the leader", |r| r.remove(r.id()));
    eventually("the removed leader steps down", || {
        !cluster.nodes[old].get_state().1
    });
    let new = cluster.leader();
    assert_ne!(new, old);
    let four = cluster.nodes[new].membership();
    assert!(!four.membership.contains(old) && four.membership.voters().count() == 4);
    // The status the new leader publishes carries the same configuration, once it has
    // published one since (it does every round of its thread).
    eventually("the configuration in the leader's status", || {
        cluster.nodes[new].status().membership == Some(cluster.nodes[new].membership())
    });
    let status = cluster.nodes[new].status().membership.unwrap();
    assert_eq!(status.role_of(new), zeroraft_engine::MemberRole::Voter);
    assert_eq!(status.role_of(old), zeroraft_engine::MemberRole::None);

    // Commands keep committing on the four.
    let (index, _) = {
        let mut started = None;
        eventually("a command accepted", || {
            started = cluster.nodes[cluster.leader()]
                .try_start(Bytes::from_static(b"after"))
                .ok();
            started.is_some()
        });
        started.unwrap()
    };
    assert!(index > removed_at);
    eventually("the last command applied on every remaining voter", || {
        four.membership.voters().all(|v| {
            cluster.applied[v]
                .lock()
                .unwrap()
                .iter()
                .any(|(i, c)| *i == index && c == "after")
        })
    });
    stop.store(true, SeqCst);
    let claimed = proposer.join().unwrap();
    assert!(claimed.len() > 10, "commands were proposed throughout");

    // Every state machine saw its indices in order, no configuration entry (25 bytes opening
    // with version 1), and each command at the index `try_start` claimed for it.
    for (node, applied) in cluster.applied.iter().enumerate() {
        let applied = applied.lock().unwrap();
        assert!(
            applied.windows(2).all(|w| w[0].0 < w[1].0),
            "node {node}: in order"
        );
        for (index, command) in applied.iter() {
            assert!(
                !(command.len() == 25 && command[0] == 1),
                "node {node}: a configuration entry applied at {index}"
            );
            if let Some(&at) = claimed.get(command) {
                assert_eq!(at, *index, "node {node}: {command:?}");
            }
        }
    }
}
