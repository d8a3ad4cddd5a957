//! Durable nodes through the public API: a node resumes from its storage with its term, vote and
//! log; a storage that fails stops its node with a reason the caller can read, and the rest of the
//! cluster goes on; a storage holding an impossible state is refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::Receiver;
use zeroraft::engine::storage::{Entry, HardState, Recovered, Update};
use zeroraft::engine::{BuildError, MemStorage, RecoveredStateError, Storage, StorageError};
use zeroraft::{ApplyMsg, Config, Network, NetworkConfig, NodeFailure, Raft, StartError};

fn fast() -> Config {
    Config {
        heartbeat_interval: Duration::from_millis(20),
        election_timeout_min: Duration::from_millis(60),
        election_timeout_max: Duration::from_millis(120),
        ..Config::default()
    }
}

/// [`fast`], writing on the node's thread or on a writer thread of its own.
fn fast_with(dedicated_writer: bool) -> Config {
    Config {
        dedicated_writer: Some(dedicated_writer),
        ..fast()
    }
}

/// Polls `done` every 5 ms until it holds, failing with `what` after 10 s: the nodes make
/// progress on their own threads, the test can only watch what they publish.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A [`MemStorage`] that fails every write once `fail` is set, as a full disk would, and
/// reports its disk full while `full` is set.
#[derive(Clone)]
struct Faulty {
    inner: MemStorage,
    fail: Arc<AtomicBool>,
    full: Arc<AtomicBool>,
}

impl Faulty {
    fn new() -> Self {
        Self {
            inner: MemStorage::new(),
            fail: Arc::new(AtomicBool::new(false)),
            full: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Storage for Faulty {
    fn recover(&mut self) -> Result<Recovered, StorageError> {
        self.inner.recover()
    }

    fn persist(&mut self, update: &Update<'_>) -> Result<(), StorageError> {
        if self.fail.load(SeqCst) {
            return Err(StorageError::Io {
                op: "write to",
                path: "/data/node/00000000000000000001.wal".into(),
                source: std::io::ErrorKind::StorageFull.into(),
            });
        }
        self.inner.persist(update)
    }

    fn disk_full(&self) -> bool {
        self.full.load(SeqCst)
    }
}

struct Node {
    raft: Raft,
    applied: Receiver<ApplyMsg>,
}

fn start(network: &Network, i: usize, n: usize, storage: impl Storage, config: &Config) -> Node {
    let (tx, rx) = crossbeam_channel::unbounded();
    let endpoint = network.endpoint(i, i as u64).expect("id");
    let raft = Raft::builder(config.clone(), i, n, endpoint)
        .storage(storage)
        .start(tx)
        .expect("a node");
    Node { raft, applied: rx }
}

fn leader(nodes: &[Option<Node>]) -> usize {
    let mut leader = None;
    eventually("a leader", || {
        leader = nodes
            .iter()
            .position(|n| n.as_ref().is_some_and(|n| n.raft.get_state().1));
        leader.is_some()
    });
    leader.expect("found")
}

/// Proposes `command` on whichever node leads until one accepts it; returns its index.
fn propose(nodes: &[Option<Node>], command: &'static str) -> u64 {
    let mut index = None;
    eventually("a leader accepting the command", || {
        index = nodes.iter().flatten().find_map(|n| {
            n.raft
                .try_start(Bytes::from_static(command.as_bytes()))
                .ok()
        });
        index.is_some()
    });
    index.expect("accepted").0
}

/// Waits until `node` applied `index`, and returns the command there.
fn applied(node: &Node, index: u64) -> Bytes {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = node
            .applied
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("node {} never applied index {index}", node.raft.id()));
        if let ApplyMsg::Command {
            index: at, command, ..
        } = m
            && at == index
        {
            return command;
        }
    }
}

#[test]
fn a_restarted_node_resumes_from_its_storage() {
    for dedicated_writer in [false, true] {
        restart_resumes(&fast_with(dedicated_writer));
    }
}

fn restart_resumes(config: &Config) {
    let n = 3;
    let network = Network::new(NetworkConfig::new(n)).expect("a network");
    let storages: Vec<MemStorage> = (0..n).map(|_| MemStorage::new()).collect();
    let mut nodes: Vec<Option<Node>> = (0..n)
        .map(|i| Some(start(&network, i, n, storages[i].clone(), config)))
        .collect();
    (0..n).for_each(|i| network.connect(i));
    let first = propose(&nodes, "one");
    let second = propose(&nodes, "two");
    for node in nodes.iter().flatten() {
        assert_eq!(applied(node, second), "two");
    }

    // Every node persisted the two entries and its term and vote before acknowledging them.
    let victim = (leader(&nodes) + 1) % n;
    let term = nodes[victim].as_ref().expect("up").raft.get_state().0;
    nodes[victim].take().expect("up").raft.kill();
    let saved = storages[victim].copy();
    assert!(saved.last_index() >= second, "the log was durable");
    assert_eq!(saved.hard_state().term, term, "the term was durable");

    let restarted = start(&network, victim, n, saved, config);
    let status = restarted.raft.status();
    assert_eq!(status.term, term, "resumes in its term");
    assert!(status.last_log_index >= second, "with its log");
    assert_eq!(status.durable_index, status.last_log_index);
    // It applies its log again from index 1, once it learns the commit index.
    network.connect(victim);
    assert_eq!(applied(&restarted, first), "one");
    nodes[victim] = Some(restarted);
    let third = propose(&nodes, "three");
    for node in nodes.iter().flatten() {
        assert_eq!(applied(node, third), "three");
    }
}

#[test]
fn a_failing_storage_stops_its_node_and_says_why() {
    for dedicated_writer in [false, true] {
        failing_storage_stops(&fast_with(dedicated_writer));
    }
}

fn failing_storage_stops(config: &Config) {
    let n = 3;
    let network = Network::new(NetworkConfig::new(n)).expect("a network");
    let storages: Vec<Faulty> = (0..n).map(|_| Faulty::new()).collect();
    let mut nodes: Vec<Option<Node>> = (0..n)
        .map(|i| Some(start(&network, i, n, storages[i].clone(), config)))
        .collect();
    (0..n).for_each(|i| network.connect(i));
    let first = propose(&nodes, "before");
    let old_leader = leader(&nodes);
    for node in nodes.iter().flatten() {
        assert_eq!(applied(node, first), "before");
        assert!(!node.raft.status().disk_full);
    }

    // The leader's disk fills up: its next write fails (as leader it writes what it is
    // proposed; had it lost the lead meanwhile, it would write what the new leader sends it),
    // and it stops.
    storages[old_leader].fail.store(true, SeqCst);
    storages[old_leader].full.store(true, SeqCst);
    let raft = nodes[old_leader].as_ref().expect("up").raft.clone();
    eventually("the node with the full disk stops", || {
        let _ = nodes
            .iter()
            .flatten()
            .find_map(|n| n.raft.try_start(Bytes::from_static(b"filler")).ok());
        raft.is_killed()
    });
    let err = raft
        .try_start(Bytes::from_static(b"after"))
        .expect_err("a stopped node takes no command");
    let StartError::Failed(failure) = &err else {
        panic!("expected StartError::Failed, got {err:?}");
    };
    assert!(
        matches!(failure, NodeFailure::Storage(_)),
        "a storage failure: {failure:?}"
    );
    assert_eq!(raft.failure().as_ref(), Some(failure));
    let reason = failure.to_string();
    assert!(reason.contains("storage failed"), "{reason}");
    assert!(
        reason.contains("00000000000000000001.wal"),
        "names the file: {reason}"
    );
    let status = raft.status();
    assert!(status.killed);
    assert!(status.disk_full, "the status tells the disk is full");
    assert_eq!(status.failure.as_deref(), Some(reason.as_str()));
    assert!(!raft.get_state().1, "no longer reports itself leader");

    // The other two go on without it.
    nodes[old_leader] = None;
    let next = propose(&nodes, "after");
    for node in nodes.iter().flatten() {
        assert_eq!(applied(node, next), "after");
    }
}

/// A storage that opened on a full disk (without the room it keeps in reserve) says so in the
/// node's status from the start, while the node runs on; when a later write finds room again,
/// the status says that too.
#[test]
fn a_full_disk_shows_in_the_status_while_the_node_runs() {
    for dedicated_writer in [false, true] {
        let config = fast_with(dedicated_writer);
        let network = Network::new(NetworkConfig::new(1)).expect("a network");
        let storage = Faulty::new();
        storage.full.store(true, SeqCst);
        let nodes = vec![Some(start(&network, 0, 1, storage.clone(), &config))];
        network.connect(0);
        let raft = &nodes[0].as_ref().expect("up").raft;
        assert!(raft.status().disk_full, "from the start");
        let first = propose(&nodes, "on a full disk");
        assert_eq!(
            applied(nodes[0].as_ref().expect("up"), first),
            "on a full disk"
        );
        assert!(raft.status().disk_full, "still full");
        storage.full.store(false, SeqCst);
        let next = propose(&nodes, "room again");
        assert_eq!(applied(nodes[0].as_ref().expect("up"), next), "room again");
        eventually("the status tells there is room again", || {
            !raft.status().disk_full
        });
        assert!(!raft.is_killed());
    }
}

/// A storage that recovers whatever state it was given.
struct Given(Recovered);

impl Storage for Given {
    fn recover(&mut self) -> Result<Recovered, StorageError> {
        Ok(self.0.clone())
    }

    fn persist(&mut self, _update: &Update<'_>) -> Result<(), StorageError> {
        Ok(())
    }
}

#[test]
fn an_impossible_recovered_state_is_refused() {
    let network = Network::new(NetworkConfig::new(3)).expect("a network");
    let entry = |term| Entry::new(term, Bytes::new());
    let cases = [
        (
            HardState {
                term: 2,
                voted_for: Some(7),
            },
            vec![],
            RecoveredStateError::VoteOutsideCluster {
                voted_for: 7,
                peers: 3,
            },
        ),
        (
            HardState {
                term: 1,
                voted_for: None,
            },
            vec![entry(1), entry(3)],
            RecoveredStateError::EntryTermAboveCurrent {
                entry_term: 3,
                current_term: 1,
            },
        ),
    ];
    for (case, (hard_state, entries, want)) in cases.into_iter().enumerate() {
        let (tx, _rx) = crossbeam_channel::unbounded();
        let endpoint = network.endpoint(0, 0).expect("id");
        let err = Raft::builder(fast(), 0, 3, endpoint)
            .storage(Given(Recovered {
                hard_state,
                snapshot: None,
                entries,
            }))
            .start(tx)
            .expect_err("refused");
        assert!(
            matches!(&err, BuildError::Inconsistent(why) if *why == want),
            "case {case}: {err}"
        );
    }
}

/// A [`MemStorage`] whose writes take `delay` once `slow` is set, as a disk stalled by other
/// traffic does.
#[derive(Clone)]
struct Slow {
    inner: MemStorage,
    slow: Arc<AtomicBool>,
    delay: Duration,
}

impl Storage for Slow {
    fn recover(&mut self) -> Result<Recovered, StorageError> {
        self.inner.recover()
    }

    fn persist(&mut self, update: &Update<'_>) -> Result<(), StorageError> {
        if self.slow.load(SeqCst) {
            std::thread::sleep(self.delay);
        }
        self.inner.persist(update)
    }
}

#[test]
fn a_leader_with_a_writer_thread_keeps_leading_through_a_slow_write() {
    let n = 3;
    let delay = Duration::from_millis(1500);
    let network = Network::new(NetworkConfig::new(n)).expect("a network");
    let storages: Vec<Slow> = (0..n)
        .map(|_| Slow {
            inner: MemStorage::new(),
            slow: Arc::new(AtomicBool::new(false)),
            delay,
        })
        .collect();
    // The tester's timings: heartbeats every 100 ms, elections after 300 to 600 ms.
    let config = Config {
        dedicated_writer: Some(true),
        ..Config::default()
    };
    let nodes: Vec<Option<Node>> = (0..n)
        .map(|i| Some(start(&network, i, n, storages[i].clone(), &config)))
        .collect();
    (0..n).for_each(|i| network.connect(i));
    propose(&nodes, "warm-up");
    let leader = leader(&nodes);
    let raft = nodes[leader].as_ref().expect("up").raft.clone();

    storages[leader].slow.store(true, SeqCst);
    let (index, term) = raft
        .try_start(Bytes::from_static(b"slow"))
        .expect("the leader takes it");
    let sent_before = raft.status().messages_out;
    let started = Instant::now();
    // The followers' writes are quick: they commit without the leader's own (thesis 10.2.1).
    let follower = nodes
        .iter()
        .flatten()
        .find(|node| node.raft.id() != leader)
        .expect("a follower");
    assert_eq!(applied(follower, index), "slow");
    let status = raft.status();
    assert!(
        started.elapsed() < delay && status.durable_index < index,
        "committed while the leader's own write was under way"
    );
    // Half an election timeout later, still within the write: the leader went on sending.
    std::thread::sleep(Duration::from_millis(300));
    assert!(started.elapsed() < delay, "the check ran within the write");
    let sent = raft.status().messages_out - sent_before;
    assert!(
        sent >= 2 * (n as u64 - 1),
        "the leader sent {sent} messages during its write; heartbeats must go on"
    );
    assert_eq!(raft.get_state(), (term, true), "still leading its term");
}
