//! Deterministic cluster readings and a recording [`Control`] for the dashboard's tests.

#![allow(dead_code)]

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use zeroraft_engine::{PeerStatus, ProgressState, Role, Status};
use zeroraft_monitor::{ActionKind, Control, Latency, LoadSample, NetworkSample, Rate, Sample};

/// Entries between two snapshots, as in the dashboard's cluster.
pub const COMPACT_EVERY: u64 = 10_000;
/// Bytes per command, as in the dashboard's default load.
pub const PAYLOAD: u64 = 16;

/// Sets the node's last log index to `last`, and its snapshot and log as a node compacting every
/// [`COMPACT_EVERY`] applied entries holds them: the snapshot at the last multiple of it below
/// the applied index, the entries after it, [`PAYLOAD`] bytes each.
pub fn set_log(status: &mut Status, last: u64) {
    status.last_log_index = last;
    status.snapshot_index = status.last_applied.saturating_sub(1) / COMPACT_EVERY * COMPACT_EVERY;
    status.log_entries = last - status.snapshot_index;
    status.log_bytes = PAYLOAD * status.log_entries;
}

/// A follower of `leader` in `term` with everything applied up to `commit`.
pub fn follower(id: usize, term: u64, leader: Option<usize>, commit: u64) -> Status {
    let mut status = Status {
        term,
        leader,
        commit_index: commit,
        last_applied: commit,
        last_log_index: commit,
        durable_index: commit,
        log_entries: commit,
        log_bytes: 16 * commit,
        last_log_term: term,
        messages_in: 1_000 + commit,
        messages_out: 1_000 + commit,
        ..Status::initial(id)
    };
    set_log(&mut status, commit);
    status
}

/// The leader of `term` with log `last`, and `matches[k]` replicated on follower `followers[k]`.
pub fn leader(id: usize, term: u64, last: u64, followers: &[(usize, u64)]) -> Status {
    let mut s = follower(id, term, Some(id), last);
    s.role = Role::Leader;
    s.elections_started = 1;
    s.elections_won = 1;
    s.messages_out = 123_456;
    s.peers = followers
        .iter()
        .map(|&(p, m)| PeerStatus {
            id: p,
            match_index: m,
            next_index: m + 1,
            state: if m + 1_000 < last {
                ProgressState::Probe
            } else {
                ProgressState::Replicate
            },
            inflight: usize::from(m < last) * 3,
        })
        .collect();
    s
}

/// A sample of `statuses` with every link up, a reliable network and a steady load.
pub fn sample(statuses: Vec<Status>) -> Sample {
    let n = statuses.len();
    Sample {
        statuses: statuses.into_iter().map(Arc::new).collect(),
        links: vec![true; n * n],
        network: NetworkSample {
            unreliable: false,
            long_reordering: false,
            rpc_total: 987_654,
            bytes_total: 123_456_789,
        },
        load: LoadSample {
            rate: Rate::PerSecond(10_000),
            proposed: 50_000,
            committed: 49_990,
            recent: Latency {
                p50: Some(Duration::from_micros(62)),
                p99: Some(Duration::from_micros(480)),
            },
            overall: Latency {
                p50: Some(Duration::from_micros(60)),
                p99: Some(Duration::from_micros(510)),
            },
        },
    }
}

/// Five nodes in term 3, node 2 leading with log 50 000, node 4 a little behind.
pub fn steady() -> Sample {
    sample(vec![
        follower(0, 3, Some(2), 49_990),
        follower(1, 3, Some(2), 49_990),
        leader(
            2,
            3,
            50_000,
            &[(0, 50_000), (1, 50_000), (3, 49_998), (4, 38_000)],
        ),
        follower(3, 3, Some(2), 49_990),
        follower(4, 3, Some(2), 38_000),
    ])
}

/// Cuts every link to and from `node`.
pub fn isolate(sample: &mut Sample, node: usize) {
    let n = sample.statuses.len();
    for other in 0..n {
        if other != node {
            sample.links[node * n + other] = false;
            sample.links[other * n + node] = false;
        }
    }
}

/// A [`Control`] that records what it is asked and answers with a fixed sample.
pub struct Recorder {
    pub sample: RefCell<Sample>,
    /// Every call, as text.
    pub calls: RefCell<Vec<String>>,
    /// The groups of every `partition` call, in order.
    pub partitions: RefCell<Vec<Vec<Vec<usize>>>>,
    /// What `restart` answers with: `Err` of this text when set.
    pub restart_error: RefCell<Option<String>>,
    /// The commands it says it does not support.
    pub unsupported: Vec<ActionKind>,
}

impl Recorder {
    pub fn new(sample: Sample) -> Self {
        Self {
            sample: RefCell::new(sample),
            calls: RefCell::new(Vec::new()),
            partitions: RefCell::new(Vec::new()),
            restart_error: RefCell::new(None),
            unsupported: Vec::new(),
        }
    }

    /// A recorder that, as a cluster of processes watched over their client ports, supports
    /// leadership transfers and nothing else.
    pub fn remote(sample: Sample) -> Self {
        let mut recorder = Self::new(sample);
        recorder.unsupported = ActionKind::ALL
            .into_iter()
            .filter(|&k| k != ActionKind::TransferLeadership)
            .collect();
        recorder
    }

    fn record(&self, call: String) {
        self.calls.borrow_mut().push(call);
    }
}

impl Control for Recorder {
    fn nodes(&self) -> usize {
        self.sample.borrow().statuses.len()
    }
    fn sample(&self) -> Sample {
        self.sample.borrow().clone()
    }
    fn connect(&self, node: usize) {
        self.record(format!("connect {node}"));
        let mut sample = self.sample.borrow_mut();
        let n = sample.statuses.len();
        for other in 0..n {
            sample.links[node * n + other] = true;
            sample.links[other * n + node] = true;
        }
    }
    fn disconnect(&self, node: usize) {
        self.record(format!("disconnect {node}"));
        isolate(&mut self.sample.borrow_mut(), node);
    }
    fn partition(&self, groups: &[Vec<usize>]) {
        self.record(format!("partition {groups:?}"));
        self.partitions.borrow_mut().push(groups.to_vec());
    }
    fn set_unreliable(&self, on: bool) {
        self.record(format!("unreliable {on}"));
        self.sample.borrow_mut().network.unreliable = on;
    }
    fn set_long_reordering(&self, on: bool) {
        self.record(format!("long reordering {on}"));
        self.sample.borrow_mut().network.long_reordering = on;
    }
    fn set_rate(&self, rate: Rate) {
        self.record(format!("rate {rate}"));
        self.sample.borrow_mut().load.rate = rate;
    }
    fn crash(&self, node: usize) {
        self.record(format!("crash {node}"));
        let mut sample = self.sample.borrow_mut();
        isolate(&mut sample, node);
        Arc::make_mut(&mut sample.statuses[node]).killed = true;
    }
    fn restart(&self, node: usize) -> Result<(), String> {
        self.record(format!("restart {node}"));
        if let Some(why) = self.restart_error.borrow().clone() {
            return Err(why);
        }
        let mut sample = self.sample.borrow_mut();
        let old = &sample.statuses[node];
        sample.statuses[node] = Arc::new(restarted(old));
        Ok(())
    }
    fn transfer_leadership(&self, leader: usize, target: usize) -> Result<(), String> {
        self.record(format!("transfer {leader} -> {target}"));
        Ok(())
    }
    fn supports(&self, action: ActionKind) -> bool {
        !self.unsupported.contains(&action)
    }
}

/// A new incarnation of the node `old` was: what it persisted (term, snapshot, log), nothing
/// else; its snapshot counts as committed and applied.
pub fn restarted(old: &Status) -> Status {
    let mut new = follower(old.id, old.term, None, old.snapshot_index);
    new.snapshot_index = old.snapshot_index;
    new.last_log_index = old.durable_index;
    new.log_entries = old.durable_index - old.snapshot_index;
    new.log_bytes = PAYLOAD * new.log_entries;
    new.durable_index = old.durable_index;
    new.messages_in = 0;
    new.messages_out = 0;
    new
}
