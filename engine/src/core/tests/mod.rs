//! Scenario tests of the core, one file per protocol phase. Each test steps one or more cores
//! message by message and pins down one rule: Figure 2 of the extended Raft paper (elections,
//! the AppendEntries receiver, the leader's commit rule), then batching, pipelining, fast
//! backtracking, stale replies, persistence, snapshots, PreVote, CheckQuorum, reads and
//! leadership transfer.
//!
//! This file holds the building blocks the others share and [`Sim`], a few cores wired
//! together by hand. Messages from nodes that exist only in a test are written by hand.
//! Table-driven tests name their case in every assertion.

// Entries are built as `Vec<Entry>` and converted with `.into()`, so these tests keep compiling
// whichever owned or shared sequence type `AppendEntries::entries` uses.
#![allow(clippy::useless_conversion)]

use std::collections::VecDeque;

use bytes::Bytes;

use super::*;

mod election;
mod hooks;
mod invariants;
mod membership;
mod persist;
mod reads;
mod replication;
mod snapshot;

const MS: Nanos = 1_000_000;

fn new_core(id: usize, peers: usize) -> Core {
    Core::new(id, peers, CoreConfig::default(), 100 + id as u64, 0)
}

/// A command that names the slot it was written for, so overwritten entries are told apart.
fn cmd(term: u64, index: u64) -> Bytes {
    Bytes::from(format!("t{term}i{index}"))
}

fn append(term: u64, prev: (u64, u64), entry_terms: &[u64], leader_commit: u64) -> Message {
    let entries: Vec<Entry> = entry_terms
        .iter()
        .zip(prev.0 + 1..)
        .map(|(&term, index)| Entry::new(term, cmd(term, index)))
        .collect();
    Message::AppendEntries(AppendEntries {
        term,
        prev_log_index: prev.0,
        prev_log_term: prev.1,
        entries: entries.into(),
        leader_commit,
        round: 0,
    })
}

fn request_vote(term: u64, last_log_index: u64, last_log_term: u64) -> Message {
    Message::RequestVote(RequestVote {
        term,
        last_log_index,
        last_log_term,
        transfer: false,
    })
}

fn vote(term: u64, granted: bool) -> Message {
    Message::RequestVoteReply(RequestVoteReply { term, granted })
}

fn ack(term: u64, index: u64) -> Message {
    Message::AppendEntriesReply(AppendEntriesReply {
        term,
        success: true,
        index,
        conflict_term: 0,
        conflict_index: 0,
        round: 0,
    })
}

fn reject(term: u64, index: u64, conflict_term: u64, conflict_index: u64) -> Message {
    Message::AppendEntriesReply(AppendEntriesReply {
        term,
        success: false,
        index,
        conflict_term,
        conflict_index,
        round: 0,
    })
}

/// Makes everything `core` changed durable at once, as a driver with instant storage would.
/// Also checks the invariants that take a pass over the log, which the core's own debug checks
/// leave out.
fn persist<H: Hooks>(core: &mut Core<H>) {
    check_log_invariants(core);
    while let Some(p) = core.take_persist() {
        core.persisted(p.generation);
    }
    check_log_invariants(core);
}

/// Panics with the broken invariant if [`Core::check_log_invariants`] finds one.
fn check_log_invariants<H: Hooks>(core: &Core<H>) {
    if let Err(broken) = core.check_log_invariants() {
        panic!("{broken}");
    }
}

/// What `core` sends once its changes are durable.
fn drain<H: Hooks>(core: &mut Core<H>) -> Vec<(usize, Message)> {
    persist(core);
    core.take_messages().collect()
}

/// Whether `core` has nothing to send, even once its changes are durable.
fn quiet(core: &mut Core) -> bool {
    persist(core);
    !core.has_messages()
}

/// The AppendEntries in `msgs` addressed to `to`, in order.
fn appends_to(msgs: &[(usize, Message)], to: usize) -> Vec<AppendEntries> {
    msgs.iter()
        .filter_map(|(t, m)| match m {
            Message::AppendEntries(a) if *t == to => Some(a.clone()),
            _ => None,
        })
        .collect()
}

/// The one reply in `msgs`, which must be a single AppendEntriesReply to `to`.
fn the_append_reply(msgs: &[(usize, Message)], to: usize) -> AppendEntriesReply {
    match msgs {
        [(t, Message::AppendEntriesReply(r))] if *t == to => r.clone(),
        other => panic!("expected one AppendEntriesReply to {to}, got {other:?}"),
    }
}

/// The one reply in `msgs`, which must be a single RequestVoteReply to `to`.
fn the_vote_reply(msgs: &[(usize, Message)], to: usize) -> RequestVoteReply {
    match msgs {
        [(t, Message::RequestVoteReply(r))] if *t == to => r.clone(),
        other => panic!("expected one RequestVoteReply to {to}, got {other:?}"),
    }
}

fn entry_terms(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.term).collect()
}

fn log_terms(core: &Core) -> Vec<u64> {
    let log = core.log();
    (1..=log.last_index())
        .map(|i| log.term(i).expect("index within the log"))
        .collect()
}

fn log_commands(core: &Core) -> Vec<Bytes> {
    let log = core.log();
    (1..=log.last_index())
        .map(|i| log.entry(i).expect("index within the log").command.clone())
        .collect()
}

/// Fills `core`'s log with entries of `terms`, sent by `from` as leader of the highest of them.
fn give_log(core: &mut Core, from: usize, terms: &[u64]) {
    let Some(&term) = terms.iter().max() else {
        return;
    };
    core.step(0, from, append(term, (0, 0), terms, 0));
    let reply = the_append_reply(&drain(core), from);
    assert!(reply.success, "node {} took the log {terms:?}", core.id());
    assert_eq!(log_terms(core), terms);
}

/// Lets `core`'s election timer fire until it is a candidate in `term`.
fn campaign_to(core: &mut Core, term: u64) {
    while core.term() < term {
        let deadline = core.next_deadline();
        core.tick(deadline);
    }
    assert_eq!(core.term(), term, "node {} campaigning", core.id());
    assert_eq!(
        core.role(),
        Role::Candidate,
        "node {} campaigning",
        core.id()
    );
    drain(core);
}

/// Makes `core` a candidate in `term` and gives it the votes of a bare majority. Returns what it
/// sent on becoming leader.
fn elect(core: &mut Core, term: u64) -> Vec<(usize, Message)> {
    campaign_to(core, term);
    let voters: Vec<usize> = (0..core.peers())
        .filter(|&p| p != core.id())
        .take(core.peers() / 2)
        .collect();
    for voter in voters {
        core.step(0, voter, vote(term, true));
    }
    assert_eq!(core.role(), Role::Leader, "node {} elected", core.id());
    drain(core)
}

/// Node 0 of `peers`, leader of term 1 with an empty log, every follower acknowledged and so in
/// Replicate state.
fn replicating_leader(peers: usize, config: CoreConfig) -> Core {
    let mut leader = Core::new(0, peers, config, 1, 0);
    elect(&mut leader, 1);
    for peer in 1..peers {
        leader.step(0, peer, ack(1, 0));
        let pr = leader.progress(peer).expect("a follower");
        assert_eq!(pr.state, ProgressState::Replicate, "follower {peer}");
    }
    drain(&mut leader);
    leader
}

fn commands(n: usize) -> Vec<Bytes> {
    (0..n).map(|i| Bytes::from(format!("c{i}"))).collect()
}

/// Several cores wired together by hand: sent messages wait in one FIFO queue until delivered.
struct Sim {
    cores: Vec<Core>,
    now: Nanos,
    queue: VecDeque<(usize, usize, Message)>,
}

impl Sim {
    fn new(peers: usize) -> Self {
        Self {
            cores: (0..peers).map(|id| new_core(id, peers)).collect(),
            now: 0,
            queue: VecDeque::new(),
        }
    }

    fn collect(&mut self) {
        for core in &mut self.cores {
            let from = core.id();
            persist(core);
            for (to, msg) in core.take_messages() {
                self.queue.push_back((from, to, msg));
            }
        }
    }

    /// Fires node `id`'s next timer.
    fn fire(&mut self, id: usize) {
        self.now = self.now.max(self.cores[id].next_deadline());
        self.cores[id].tick(self.now);
        self.collect();
    }

    /// Delivers queued messages, and those they cause, until none are left. Messages to or from
    /// a node in `isolated` are lost.
    fn settle(&mut self, isolated: &[usize]) {
        while let Some((from, to, msg)) = self.queue.pop_front() {
            if isolated.contains(&from) || isolated.contains(&to) {
                continue;
            }
            self.cores[to].step(self.now, from, msg);
            self.collect();
        }
    }

    fn leaders(&self) -> Vec<usize> {
        self.cores
            .iter()
            .filter(|c| c.role() == Role::Leader)
            .map(Core::id)
            .collect()
    }
}

/// The defaults with `pre_vote` and `check_quorum` as given.
fn config_with(pre_vote: bool, check_quorum: bool) -> CoreConfig {
    CoreConfig {
        pre_vote,
        check_quorum,
        ..CoreConfig::default()
    }
}

impl Sim {
    fn with_config(peers: usize, config: &CoreConfig) -> Self {
        Self {
            cores: (0..peers)
                .map(|id| Core::new(id, peers, config.clone(), 100 + id as u64, 0))
                .collect(),
            now: 0,
            queue: VecDeque::new(),
        }
    }

    /// Fires timers in deadline order until `until`, delivering what each causes; messages to
    /// or from a node in `isolated` are lost. Calls `watch` after every timer.
    fn run_until(&mut self, until: Nanos, isolated: &[usize], mut watch: impl FnMut(&Self)) {
        loop {
            let next = (0..self.cores.len())
                .min_by_key(|&i| self.cores[i].next_deadline())
                .expect("nodes");
            if self.cores[next].next_deadline() > until {
                self.now = until;
                return;
            }
            self.fire(next);
            self.settle(isolated);
            watch(self);
        }
    }

    /// Elects node `id` (its timer fires first) and delivers everything. Returns the term.
    fn elect_first(&mut self, id: usize) -> u64 {
        self.now = self.cores[id].next_deadline();
        let now = self.now;
        self.cores[id].tick(now);
        self.collect();
        self.settle(&[]);
        assert_eq!(self.leaders(), vec![id], "node {id} elected");
        self.cores[id].term()
    }
}
