//! Snapshots serialized off the node's thread ([`StateMachine::snapshot_view`]): while a view is
//! being serialized the node goes on committing, applying and leading; once it is done the log
//! is compacted up to the view's index and no further; a view overtaken by a snapshot installed
//! from the leader is dropped; a panic while serializing stops the node; a node killed while
//! serializing waits for it, and restarts from what it had stored.
//!
//! Each node's state machine sums the commands applied (each a `u64`), and its views wait at a
//! [`Gate`] the test opens one serialization at a time, so that what the node does meanwhile is
//! seen deterministically.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use zeroraft::engine::storage::Snapshot;
use zeroraft::{
    Compaction, Config, MemStorage, Network, NetworkConfig, NodeFailure, Raft, RestoreError,
    SnapshotView, StateMachine,
};

/// Fast timings, and a snapshot every 5 entries applied.
fn config() -> Config {
    Config {
        heartbeat_interval: Duration::from_millis(20),
        election_timeout_min: Duration::from_millis(60),
        election_timeout_max: Duration::from_millis(120),
        compaction: Compaction {
            every_entries: Some(5),
            above_bytes: None,
        },
        ..Config::default()
    }
}

/// Polls `done` every 2 ms until it holds, failing with `what` after 10 s.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn command(n: u64) -> Bytes {
    Bytes::copy_from_slice(&n.to_le_bytes())
}

/// The sum of the commands `1..=n`.
fn sum_to(n: u64) -> u64 {
    n * (n + 1) / 2
}

/// How many serializations of one node may run: the `k`-th (from 0) waits while `permits <= k`.
#[derive(Default)]
struct Gate {
    permits: Mutex<u64>,
    changed: Condvar,
}

impl Gate {
    fn allow(&self, permits: u64) {
        *self.permits.lock().unwrap() = permits;
        self.changed.notify_all();
    }

    fn pass(&self, k: u64) {
        let mut permits = self.permits.lock().unwrap();
        while *permits <= k {
            permits = self.changed.wait(permits).unwrap();
        }
    }
}

/// What a test sees of one node's state machine.
#[derive(Default)]
struct Watch {
    gate: Gate,
    /// The index each view was taken at, in order.
    views: Mutex<Vec<u64>>,
    /// Each serialization's output, in the order they ended.
    serialized: Mutex<Vec<Bytes>>,
    /// The index of each snapshot restored.
    restored: Mutex<Vec<u64>>,
    /// `(last index applied, sum)`, as of the last batch.
    state: Mutex<(u64, u64)>,
    /// Views panic when serialized.
    panics: AtomicBool,
}

impl Watch {
    fn views(&self) -> Vec<u64> {
        self.views.lock().unwrap().clone()
    }

    fn state(&self) -> (u64, u64) {
        *self.state.lock().unwrap()
    }
}

/// Sums the commands it applies.
struct Summer {
    last: u64,
    sum: u64,
    watch: Arc<Watch>,
}

fn encode(last: u64, sum: u64) -> Bytes {
    let mut data = last.to_le_bytes().to_vec();
    data.extend_from_slice(&sum.to_le_bytes());
    Bytes::from(data)
}

fn decode(data: &[u8]) -> (u64, u64) {
    let word = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().unwrap());
    (word(0), word(8))
}

impl StateMachine for Summer {
    fn apply(&mut self, index: u64, _term: u64, command: &Bytes) {
        assert_eq!(index, self.last + 1, "applied in order");
        self.last = index;
        self.sum += u64::from_le_bytes(command[..].try_into().unwrap());
    }

    fn flush(&mut self, _last_index: u64) {
        *self.watch.state.lock().unwrap() = (self.last, self.sum);
    }

    fn snapshot_view(&mut self) -> Option<SnapshotView> {
        let (last, sum, watch) = (self.last, self.sum, self.watch.clone());
        let k = {
            let mut views = watch.views.lock().unwrap();
            views.push(last);
            views.len() as u64 - 1
        };
        Some(SnapshotView::deferred(move || {
            watch.gate.pass(k);
            assert!(!watch.panics.load(SeqCst), "the serializer broke");
            let data = encode(last, sum);
            watch.serialized.lock().unwrap().push(data.clone());
            data
        }))
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), RestoreError> {
        (self.last, self.sum) = decode(&snapshot.data);
        assert_eq!(self.last, snapshot.index);
        self.watch.restored.lock().unwrap().push(snapshot.index);
        *self.watch.state.lock().unwrap() = (self.last, self.sum);
        Ok(())
    }
}

/// `n` nodes on a reliable in-memory network, each with its own storage and watch.
struct Nodes {
    net: Network,
    rafts: Vec<Raft>,
    watches: Vec<Arc<Watch>>,
    storages: Vec<MemStorage>,
}

impl Nodes {
    /// `n` nodes whose serializations wait until the test lets them.
    fn start(n: usize) -> Self {
        let net = Network::new(NetworkConfig::new(n)).unwrap();
        let mut nodes = Self {
            net,
            rafts: Vec::new(),
            watches: Vec::new(),
            storages: Vec::new(),
        };
        for i in 0..n {
            nodes.net.connect(i);
            nodes.watches.push(Arc::default());
            nodes.storages.push(MemStorage::new());
            let raft = nodes.restart(i, 1);
            nodes.rafts.push(raft);
        }
        nodes
    }

    /// Node `i` from its storage, with a fresh state machine reporting to its watch.
    fn restart(&self, i: usize, generation: u64) -> Raft {
        let n = self.net.nodes();
        let machine = Summer {
            last: 0,
            sum: 0,
            watch: self.watches[i].clone(),
        };
        Raft::builder(config(), i, n, self.net.endpoint(i, generation).unwrap())
            .storage(self.storages[i].clone())
            .start_with_state_machine(machine)
            .unwrap()
    }

    fn leader(&self) -> usize {
        let mut leader = None;
        eventually("a leader", || {
            leader = (0..self.rafts.len()).find(|&i| self.rafts[i].get_state().1);
            leader.is_some()
        });
        leader.unwrap()
    }

    /// Proposes the commands `from..=to` to `leader`.
    fn propose(&self, leader: usize, from: u64, to: u64) {
        for n in from..=to {
            let (index, _) = self.rafts[leader].try_start(command(n)).unwrap();
            assert_eq!(index, n, "one command per index");
        }
    }

    /// Waits until every node in `which` applied `index`.
    fn applied(&self, which: &[usize], index: u64) {
        for &i in which {
            eventually(&format!("node {i} applies {index}"), || {
                self.watches[i].state().0 >= index
            });
        }
    }

    fn all(&self) -> Vec<usize> {
        (0..self.rafts.len()).collect()
    }
}

impl Drop for Nodes {
    /// Lets every serialization end, so that the nodes can be killed.
    fn drop(&mut self) {
        for watch in &self.watches {
            watch.gate.allow(u64::MAX);
        }
    }
}

#[test]
fn a_node_goes_on_while_its_snapshot_is_serialized_and_compacts_to_the_views_index() {
    let nodes = Nodes::start(3);
    let leader = nodes.leader();
    let term = nodes.rafts[leader].get_state().0;
    nodes.propose(leader, 1, 5);
    nodes.applied(&nodes.all(), 5);
    for (i, watch) in nodes.watches.iter().enumerate() {
        eventually(&format!("node {i} takes a view"), || {
            !watch.views().is_empty()
        });
        assert_eq!(
            watch.views(),
            [5],
            "node {i}: one view, at the index applied"
        );
    }
    // Every serialization waits: the nodes still commit and apply, and the leader leads on
    // through many election timeouts.
    nodes.propose(leader, 6, 25);
    nodes.applied(&nodes.all(), 25);
    let quiet_until = Instant::now() + 5 * config().election_timeout_max;
    while Instant::now() < quiet_until {
        for (i, raft) in nodes.rafts.iter().enumerate() {
            let status = raft.status();
            assert_eq!(
                (status.term, status.leader),
                (term, Some(leader)),
                "node {i}"
            );
            assert_eq!(status.snapshot_index, 0, "node {i}: nothing compacted yet");
            assert!(status.snapshotting, "node {i} is serializing");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for (i, watch) in nodes.watches.iter().enumerate() {
        assert_eq!(
            watch.views(),
            [5],
            "node {i}: no second view while one is serialized"
        );
    }

    // The first serialization ends: the log is compacted up to its view's index, not further;
    // the entries applied meanwhile stay. (The next view, at 25, waits.)
    for watch in &nodes.watches {
        watch.gate.allow(1);
    }
    for (i, raft) in nodes.rafts.iter().enumerate() {
        eventually(&format!("node {i} compacts"), || {
            raft.status().snapshot_index == 5
        });
        eventually(&format!("node {i} takes its next view"), || {
            nodes.watches[i].views().len() == 2
        });
        let status = raft.status();
        assert_eq!(status.snapshot_index, 5, "node {i}: up to the first view");
        assert_eq!(status.last_log_index, 25, "node {i}");
        assert_eq!(
            status.log_entries, 20,
            "node {i}: the entries after the view stay"
        );
        assert_eq!(nodes.watches[i].views(), [5, 25], "node {i}");
        let serialized = nodes.watches[i].serialized.lock().unwrap().clone();
        assert_eq!(serialized.len(), 1, "node {i}");
        assert_eq!(
            decode(&serialized[0]),
            (5, sum_to(5)),
            "node {i}: the state at the view's index"
        );
        assert_eq!(raft.get_state(), (term, i == leader), "node {i}");
    }
}

#[test]
fn a_view_overtaken_by_a_snapshot_from_the_leader_is_dropped() {
    let nodes = Nodes::start(3);
    let leader = nodes.leader();
    let lagging = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    for i in [leader, other] {
        nodes.watches[i].gate.allow(u64::MAX);
    }
    nodes.propose(leader, 1, 5);
    nodes.applied(&nodes.all(), 5);
    eventually("the lagging node takes a view", || {
        nodes.watches[lagging].views() == [5]
    });
    // Cut off while its view waits, it falls behind the leader's snapshots.
    nodes.net.disconnect(lagging);
    nodes.propose(leader, 6, 30);
    nodes.applied(&[leader, other], 30);
    eventually(
        "the leader compacts past what the lagging node holds",
        || nodes.rafts[leader].status().snapshot_index >= 10,
    );
    nodes.net.connect(lagging);
    let lagging_raft = &nodes.rafts[lagging];
    eventually("the leader's snapshot is installed", || {
        lagging_raft.status().snapshots_installed >= 1
    });
    nodes.applied(&[lagging], 30);
    let installed = nodes.watches[lagging].restored.lock().unwrap().clone();
    assert_eq!(installed.len(), 1, "one snapshot restored");
    assert!(installed[0] >= 10, "restored {installed:?}");
    assert!(
        lagging_raft.status().snapshotting,
        "its own view still waits"
    );

    // Its own view, at 5, ends after the install: it is dropped, the log not touched.
    nodes.watches[lagging].gate.allow(1);
    eventually("the view at 5 is serialized", || {
        !nodes.watches[lagging].serialized.lock().unwrap().is_empty()
    });
    eventually("the node takes the serialized view", || {
        !lagging_raft.status().snapshotting || nodes.watches[lagging].views().len() == 2
    });
    let status = lagging_raft.status();
    assert!(
        status.snapshot_index >= installed[0],
        "the compaction to 5 was dropped: snapshot index {}",
        status.snapshot_index
    );
    assert_eq!(nodes.watches[lagging].state(), (30, sum_to(30)));
    // It goes on as a follower: later entries reach it.
    nodes.propose(leader, 31, 31);
    nodes.applied(&nodes.all(), 31);
    assert_eq!(nodes.watches[lagging].state(), (31, sum_to(31)));
}

#[test]
fn a_panic_while_serializing_stops_the_node() {
    let nodes = Nodes::start(1);
    nodes.watches[0].panics.store(true, SeqCst);
    nodes.watches[0].gate.allow(u64::MAX);
    let leader = nodes.leader();
    nodes.propose(leader, 1, 5);
    let raft = &nodes.rafts[0];
    eventually("the node stops", || raft.failure().is_some());
    match raft.failure() {
        Some(NodeFailure::StateMachinePanic { message }) => {
            assert!(message.contains("the serializer broke"), "{message}");
        }
        other => panic!("expected a state machine panic, got {other:?}"),
    }
    assert_eq!(raft.status().snapshot_index, 0);
}

#[test]
fn a_node_killed_while_serializing_waits_for_it_and_restarts_from_its_log() {
    let mut nodes = Nodes::start(1);
    let leader = nodes.leader();
    nodes.propose(leader, 1, 7);
    nodes.applied(&[0], 7);
    eventually("a view", || !nodes.watches[0].views().is_empty());
    let view = nodes.watches[0].views()[0];
    let raft = nodes.rafts.pop().unwrap();
    let killer = std::thread::spawn(move || raft.kill());
    nodes.watches[0].gate.allow(u64::MAX);
    killer.join().unwrap();
    assert_eq!(
        decode(&nodes.watches[0].serialized.lock().unwrap()[0]),
        (view, sum_to(view)),
        "the serialization ended before the kill returned"
    );

    // Its storage holds the whole log, and the view's snapshot only if the node took it before
    // it saw the kill: a restart rebuilds the state either way.
    *nodes.watches[0].state.lock().unwrap() = (0, 0);
    let raft = nodes.restart(0, 2);
    let status = raft.status();
    assert!(
        [0, view].contains(&status.snapshot_index),
        "snapshot index {}",
        status.snapshot_index
    );
    assert_eq!(status.last_log_index, 7);
    nodes.rafts.push(raft);
    let leader = nodes.leader();
    nodes.propose(leader, 8, 8);
    nodes.applied(&[0], 8);
    assert_eq!(nodes.watches[0].state(), (8, sum_to(8)));
}
