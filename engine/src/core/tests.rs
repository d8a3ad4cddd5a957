//! Scenario tests of the core. Each test steps one or more cores message by message and pins down
//! one rule: Figure 2 of the extended Raft paper (elections, the AppendEntries receiver, the
//! leader's commit rule), then batching, pipelining, fast backtracking and stale replies.
//!
//! Messages from nodes that exist only in a test are written by hand. Table-driven tests name
//! their case in every assertion.

// Entries are built as `Vec<Entry>` and converted with `.into()`, so these tests keep compiling
// whichever owned or shared sequence type `AppendEntries::entries` uses.
#![allow(clippy::useless_conversion)]

use std::collections::VecDeque;

use bytes::Bytes;

use super::*;

const MS: Nanos = 1_000_000;

// ---- building blocks ---------------------------------------------------------------------------

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
        .map(|(&term, index)| Entry {
            term,
            command: cmd(term, index),
        })
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
fn persist(core: &mut Core) {
    while let Some(p) = core.take_persist() {
        core.persisted(p.generation);
    }
}

/// What `core` sends once its changes are durable.
fn drain(core: &mut Core) -> Vec<(usize, Message)> {
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

// ---- elections ---------------------------------------------------------------------------------

#[test]
fn election_timeouts_are_seeded_and_within_range() {
    let config = CoreConfig::default();
    let mut seen = std::collections::HashSet::new();
    for seed in 0..50 {
        let a = Core::new(0, 3, config.clone(), seed, 5 * MS);
        let b = Core::new(0, 3, config.clone(), seed, 5 * MS);
        assert_eq!(a.next_deadline(), b.next_deadline(), "seed {seed}: replay");
        let timeout = a.next_deadline() - 5 * MS;
        assert!(
            (config.election_timeout_min..config.election_timeout_max).contains(&timeout),
            "seed {seed}: timeout {timeout}"
        );
        seen.insert(timeout);
    }
    assert!(
        seen.len() > 40,
        "timeouts are randomized: {} distinct",
        seen.len()
    );
}

#[test]
fn timeout_starts_an_election() {
    // (log held before the timeout, term before, want RequestVote last index, last term)
    let cases: [(&[u64], u64, u64, u64); 3] =
        [(&[], 0, 0, 0), (&[1, 1, 2], 2, 3, 2), (&[4], 4, 1, 4)];
    for (case, (terms, term_before, last_index, last_term)) in cases.into_iter().enumerate() {
        let mut core = new_core(0, 3);
        give_log(&mut core, 2, terms);
        assert_eq!(core.term(), term_before, "case {case}: term before");
        let deadline = core.next_deadline();

        core.tick(deadline - 1);
        assert_eq!(
            core.role(),
            Role::Follower,
            "case {case}: before the timeout"
        );
        assert!(
            quiet(&mut core),
            "case {case}: nothing sent before the timeout"
        );

        core.tick(deadline);
        assert_eq!(core.role(), Role::Candidate, "case {case}: role");
        assert_eq!(core.term(), term_before + 1, "case {case}: term + 1");
        assert_eq!(core.voted_for(), Some(0), "case {case}: votes for itself");
        assert_eq!(core.leader(), None, "case {case}: no leader known");
        assert_eq!(core.stats().elections_started, 1, "case {case}: counted");
        let timeout = core.next_deadline() - deadline;
        assert!(
            (300 * MS..600 * MS).contains(&timeout),
            "case {case}: a new randomized timeout, got {timeout}"
        );
        let want = request_vote(term_before + 1, last_index, last_term);
        assert_eq!(
            drain(&mut core),
            vec![(1, want.clone()), (2, want)],
            "case {case}: RequestVote to every other node"
        );
    }
}

#[test]
fn candidate_times_out_into_the_next_term() {
    let mut core = new_core(1, 3);
    campaign_to(&mut core, 1);
    core.step(0, 0, vote(1, false));
    let deadline = core.next_deadline();
    core.tick(deadline);
    assert_eq!(core.role(), Role::Candidate);
    assert_eq!(core.term(), 2);
    assert_eq!(core.voted_for(), Some(1));
    let sent = drain(&mut core);
    assert_eq!(sent.len(), 2, "a fresh RequestVote to each peer: {sent:?}");
    assert!(sent.iter().all(|(_, m)| *m == request_vote(2, 0, 0)));
}

#[test]
fn majority_of_votes_makes_a_leader() {
    // (peers, replies in order as (from, granted), how many replies until leader or None)
    type Case = (usize, &'static [(usize, bool)], Option<usize>);
    let cases: [Case; 6] = [
        (3, &[(1, true)], Some(1)),
        (3, &[(1, false), (2, true)], Some(2)),
        (3, &[(1, false), (2, false)], None),
        // A duplicated grant counts once.
        (5, &[(1, true), (1, true), (2, false), (3, true)], Some(4)),
        (5, &[(1, true), (1, true), (1, true)], None),
        (4, &[(1, true), (2, true)], Some(2)),
    ];
    for (case, (peers, replies, leader_after)) in cases.into_iter().enumerate() {
        let mut core = new_core(0, peers);
        campaign_to(&mut core, 1);
        for (n, &(from, granted)) in replies.iter().enumerate() {
            core.step(0, from, vote(1, granted));
            let want = if leader_after.is_some_and(|k| n + 1 >= k) {
                Role::Leader
            } else {
                Role::Candidate
            };
            assert_eq!(core.role(), want, "case {case}: role after reply {n}");
        }
        assert_eq!(core.term(), 1, "case {case}: term unchanged");
        if leader_after.is_some() {
            assert_eq!(core.leader(), Some(0), "case {case}: knows it leads");
            assert_eq!(core.stats().elections_won, 1, "case {case}: counted");
            let sent = drain(&mut core);
            for peer in 1..peers {
                let heartbeats = appends_to(&sent, peer);
                assert_eq!(
                    heartbeats.len(),
                    1,
                    "case {case}: announces itself to {peer}"
                );
                assert_eq!(heartbeats[0].term, 1, "case {case}: in its term");
            }
            assert_eq!(sent.len(), peers - 1, "case {case}: nothing else: {sent:?}");
        }
    }
}

#[test]
fn single_node_elects_itself() {
    let mut core = new_core(0, 1);
    let deadline = core.next_deadline();
    core.tick(deadline);
    assert_eq!(core.role(), Role::Leader);
    assert_eq!(core.term(), 1);
    assert!(quiet(&mut core));
    assert_eq!(core.propose(deadline, commands(2)), Some((1, 2)));
    assert_eq!(
        core.commit_index(),
        0,
        "not before its own write is durable"
    );
    persist(&mut core);
    assert_eq!(
        core.commit_index(),
        2,
        "a cluster of one commits once durable"
    );
    assert_eq!(core.apply_range(), Some((1, 2)));
}

#[test]
fn split_vote_elects_nobody_and_retries_in_a_later_term() {
    let mut sim = Sim::new(4);
    // Nodes 0 and 1 time out together; each wins one voter, which is not a majority of four.
    sim.now = sim.cores[0]
        .next_deadline()
        .max(sim.cores[1].next_deadline());
    let now = sim.now;
    sim.cores[0].tick(now);
    sim.cores[1].tick(now);
    sim.collect();
    let order = [(0, 2), (1, 3), (0, 3), (1, 2), (0, 1), (1, 0)];
    let mut requests: Vec<_> = sim.queue.drain(..).collect();
    for (from, to) in order {
        let at = requests
            .iter()
            .position(|(f, t, _)| (*f, *t) == (from, to))
            .expect("a RequestVote for every pair");
        let (from, to, msg) = requests.remove(at);
        sim.cores[to].step(now, from, msg);
    }
    assert_eq!(
        sim.cores[2].voted_for(),
        Some(0),
        "first come, first served"
    );
    assert_eq!(
        sim.cores[3].voted_for(),
        Some(1),
        "first come, first served"
    );
    sim.collect();
    sim.settle(&[]);
    assert!(sim.leaders().is_empty(), "nobody has three votes");
    for id in [0, 1] {
        assert_eq!(sim.cores[id].role(), Role::Candidate, "node {id}");
        assert_eq!(sim.cores[id].term(), 1, "node {id}");
    }

    // The next timeout starts term 2, and with no competitor node 0 now wins.
    sim.fire(0);
    assert_eq!(sim.cores[0].term(), 2);
    sim.settle(&[]);
    assert_eq!(sim.leaders(), vec![0]);
    assert!(sim.cores.iter().all(|c| c.term() == 2));
}

#[test]
fn one_vote_per_term() {
    let mut core = new_core(0, 3);
    // (from, request term, want granted, want term, want voted_for)
    let script = [
        (1, 1, true, 1, Some(1)),
        (2, 1, false, 1, Some(1)), // already voted in term 1
        (1, 1, true, 1, Some(1)),  // the same candidate asking again
        (2, 2, true, 2, Some(2)),  // a new term, a new vote
        (1, 2, false, 2, Some(2)),
    ];
    for (step, (from, term, granted, want_term, want_vote)) in script.into_iter().enumerate() {
        core.step(0, from, request_vote(term, 0, 0));
        let reply = the_vote_reply(&drain(&mut core), from);
        assert_eq!(reply.granted, granted, "step {step}: granted");
        assert_eq!(reply.term, want_term, "step {step}: reply term");
        assert_eq!(core.term(), want_term, "step {step}: term");
        assert_eq!(core.voted_for(), want_vote, "step {step}: voted_for");
    }
}

#[test]
fn candidates_and_leaders_do_not_vote_for_others_in_their_term() {
    let mut candidate = new_core(0, 3);
    campaign_to(&mut candidate, 1);
    candidate.step(0, 1, request_vote(1, 5, 1));
    assert!(!the_vote_reply(&drain(&mut candidate), 1).granted);
    assert_eq!(candidate.voted_for(), Some(0));

    let mut leader = new_core(0, 3);
    elect(&mut leader, 1);
    leader.step(0, 2, request_vote(1, 5, 1));
    assert!(!the_vote_reply(&drain(&mut leader), 2).granted);
    assert_eq!(leader.role(), Role::Leader);
}

#[test]
fn vote_only_for_an_up_to_date_log() {
    // The voter holds [1 1 2]. (candidate's last index, last term, want granted)
    let cases = [
        (3, 2, true),  // same last entry
        (4, 2, true),  // same last term, longer
        (2, 2, false), // same last term, shorter
        (1, 3, true),  // later last term wins even if shorter
        (9, 1, false), // earlier last term loses even if longer
        (0, 0, false), // empty
    ];
    for (case, (last_index, last_term, granted)) in cases.into_iter().enumerate() {
        let mut voter = new_core(0, 3);
        give_log(&mut voter, 2, &[1, 1, 2]);
        voter.step(0, 1, request_vote(3, last_index, last_term));
        let reply = the_vote_reply(&drain(&mut voter), 1);
        assert_eq!(reply.granted, granted, "case {case}: granted");
        assert_eq!(reply.term, 3, "case {case}: reply term");
        assert_eq!(voter.term(), 3, "case {case}: adopts the term either way");
        let want_vote = granted.then_some(1);
        assert_eq!(voter.voted_for(), want_vote, "case {case}: voted_for");
    }
}

#[test]
fn stale_log_cannot_win_against_up_to_date_voters() {
    let mut sim = Sim::new(3);
    sim.fire(0);
    sim.settle(&[]);
    assert_eq!(sim.leaders(), vec![0]);
    // Node 2 misses an entry that nodes 0 and 1 commit.
    sim.cores[0].propose(sim.now, commands(1));
    sim.collect();
    sim.settle(&[2]);
    assert_eq!(sim.cores[0].commit_index(), 1);

    // Node 2 campaigns: both others refuse it (its log is behind), though they adopt its term.
    sim.fire(2);
    sim.settle(&[]);
    assert_eq!(sim.cores[2].role(), Role::Candidate, "node 2 lost");
    assert!(sim.leaders().is_empty(), "node 0 stepped down to term 2");
    assert!(sim.cores.iter().all(|c| c.term() == 2));
    assert_eq!(sim.cores[0].voted_for(), None);
    assert_eq!(sim.cores[1].voted_for(), None);

    // Node 1 holds the entry and wins term 3; node 2 votes for it.
    sim.fire(1);
    sim.settle(&[]);
    assert_eq!(sim.leaders(), vec![1]);
    assert_eq!(sim.cores[2].voted_for(), Some(1));
}

#[test]
fn higher_term_in_any_message_makes_a_follower() {
    // Every node starts holding [1] from node 2 as leader of term 1, then is put in `role`.
    // A message of term 5 from node 1 arrives; a RequestVote from an out-of-date log, so that
    // the vote it clears is not given again.
    let messages = [
        ("RequestVote", request_vote(5, 0, 0), None),
        ("RequestVoteReply", vote(5, false), None),
        ("AppendEntries", append(5, (0, 0), &[], 0), Some(1)),
        ("AppendEntriesReply", reject(5, 0, 0, 1), None),
    ];
    let roles = [Role::Follower, Role::Candidate, Role::Leader];
    let mut case = 0;
    for role in roles {
        for (kind, msg, want_leader) in messages.iter().cloned() {
            let mut core = new_core(0, 3);
            give_log(&mut core, 2, &[1]);
            match role {
                Role::Follower => {
                    core.step(0, 1, request_vote(1, 1, 1));
                    assert_eq!(core.voted_for(), Some(1), "case {case}: set up a vote");
                }
                Role::Candidate => campaign_to(&mut core, 2),
                Role::Leader => {
                    elect(&mut core, 2);
                }
            }
            drain(&mut core);
            let step_downs = core.stats().step_downs;

            core.step(0, 1, msg);
            assert_eq!(
                core.role(),
                Role::Follower,
                "case {case} ({role:?}, {kind}): role"
            );
            assert_eq!(core.term(), 5, "case {case} ({role:?}, {kind}): term");
            assert_eq!(
                core.voted_for(),
                None,
                "case {case} ({role:?}, {kind}): vote cleared"
            );
            assert_eq!(
                core.leader(),
                want_leader,
                "case {case} ({role:?}, {kind}): leader"
            );
            let want_step_downs = step_downs + u64::from(role == Role::Leader);
            assert_eq!(
                core.stats().step_downs,
                want_step_downs,
                "case {case} ({role:?}, {kind}): step-downs counted"
            );
            case += 1;
        }
    }
}

#[test]
fn lower_term_messages_are_rejected_or_ignored() {
    // A follower of term 3 holding [1 2 3], whose leader is node 2.
    let mut follower = new_core(0, 3);
    give_log(&mut follower, 2, &[1, 2, 3]);
    let deadline = follower.next_deadline();

    // A RequestVote of term 2 is refused, with the current term for the candidate to catch up.
    follower.step(0, 1, request_vote(2, 9, 3));
    let reply = the_vote_reply(&drain(&mut follower), 1);
    assert_eq!(
        reply,
        RequestVoteReply {
            term: 3,
            granted: false
        }
    );
    assert_eq!(follower.voted_for(), None);

    // An AppendEntries of term 2 is refused and changes nothing, not even the election timer.
    follower.step(0, 1, append(2, (3, 3), &[2], 3));
    let reply = the_append_reply(&drain(&mut follower), 1);
    assert!(!reply.success, "stale AppendEntries refused");
    assert_eq!(reply.term, 3);
    assert_eq!(log_terms(&follower), vec![1, 2, 3]);
    assert_eq!(follower.commit_index(), 0);
    assert_eq!(follower.leader(), Some(2));
    assert_eq!(follower.next_deadline(), deadline, "timer not reset");
    assert_eq!(follower.term(), 3);

    // A candidate of term 4 ignores a grant from term 3 (which would have made it leader).
    let mut candidate = new_core(0, 3);
    campaign_to(&mut candidate, 4);
    candidate.step(0, 1, vote(3, true));
    assert_eq!(candidate.role(), Role::Candidate, "old grant ignored");
    assert!(quiet(&mut candidate));

    // A leader of term 4 ignores AppendEntriesReply of term 3 (see also `replies_from_an_older_term_are_ignored`).
    let mut leader = new_core(0, 3);
    elect(&mut leader, 4);
    leader.step(0, 1, reject(3, 0, 0, 1));
    assert!(quiet(&mut leader));
    assert_eq!(leader.role(), Role::Leader);
    assert_eq!(leader.term(), 4);
}

#[test]
fn only_a_granted_vote_resets_the_election_timer() {
    // (voter's log, request term, candidate's last index and term, want granted)
    let cases: [(&[u64], u64, u64, u64, bool); 3] = [
        (&[], 1, 0, 0, true),
        (&[1, 1], 1, 2, 1, true),
        // Same term, but the candidate's log is behind: no vote, no reset.
        (&[1, 1], 1, 1, 1, false),
    ];
    for (case, (terms, term, last_index, last_term, granted)) in cases.into_iter().enumerate() {
        let mut voter = new_core(0, 3);
        give_log(&mut voter, 2, terms);
        let deadline = voter.next_deadline();
        let now = deadline - MS;

        voter.step(now, 1, request_vote(term, last_index, last_term));
        let reply = the_vote_reply(&drain(&mut voter), 1);
        assert_eq!(reply.granted, granted, "case {case}: granted");
        if granted {
            assert!(
                voter.next_deadline() >= now + 300 * MS,
                "case {case}: timer restarted at the vote"
            );
        } else {
            assert_eq!(voter.next_deadline(), deadline, "case {case}: timer kept");
        }
        voter.tick(deadline);
        let want = if granted {
            Role::Follower
        } else {
            Role::Candidate
        };
        assert_eq!(voter.role(), want, "case {case}: role at the old deadline");
    }
}

// ---- AppendEntries receiver --------------------------------------------------------------------

#[test]
fn append_entries_consistency_check() {
    // The follower holds [1 1 2 2] from node 1, leader of term 2; node 1 now leads term 3.
    // (prev index, prev term, want success, want reply index, want conflict term and index)
    let cases = [
        (4, 2, true, 4, 0, 0),
        (2, 1, true, 2, 0, 0),
        (0, 0, true, 0, 0, 0),
        (5, 2, false, 5, 0, 5), // log too short: continue from our end
        (9, 3, false, 9, 0, 5),
        (3, 3, false, 3, 2, 3), // term 2 at 3, which starts at 3
        (4, 3, false, 4, 2, 3),
        (1, 2, false, 1, 1, 1),
    ];
    for (case, (prev, prev_term, success, index, c_term, c_index)) in cases.into_iter().enumerate()
    {
        let mut follower = new_core(0, 3);
        give_log(&mut follower, 1, &[1, 1, 2, 2]);
        follower.step(0, 1, append(3, (prev, prev_term), &[], 0));
        let reply = the_append_reply(&drain(&mut follower), 1);
        let want = AppendEntriesReply {
            term: 3,
            success,
            index,
            conflict_term: c_term,
            conflict_index: c_index,
            round: 0,
        };
        assert_eq!(
            reply, want,
            "case {case}: reply to prev ({prev}, {prev_term})"
        );
        assert_eq!(
            log_terms(&follower),
            vec![1, 1, 2, 2],
            "case {case}: log kept"
        );
        assert_eq!(
            follower.leader(),
            Some(1),
            "case {case}: leader known either way"
        );
    }
}

#[test]
fn append_entries_truncates_only_at_a_conflict() {
    // The follower holds [1 1 2 2 2] (from leader 1 of term 2); node 1 leads term 3.
    // (prev index, prev term, entries, want log, want reply index)
    type Case = (u64, u64, &'static [u64], &'static [u64], u64);
    let cases: [Case; 8] = [
        // Conflict at 3: everything from 3 goes.
        (2, 1, &[3], &[1, 1, 3], 3),
        // Entry 4 matches, entry 5 conflicts.
        (3, 2, &[2, 3], &[1, 1, 2, 2, 3], 5),
        (4, 2, &[3, 3, 3], &[1, 1, 2, 2, 3, 3, 3], 7),
        // Everything matches: nothing is truncated, whatever follows is kept.
        (1, 1, &[1, 2], &[1, 1, 2, 2, 2], 3),
        (0, 0, &[], &[1, 1, 2, 2, 2], 0),
        (0, 0, &[1, 1, 2, 2, 2], &[1, 1, 2, 2, 2], 5),
        // Matching prefix, then new entries.
        (0, 0, &[1, 1, 2, 2, 2, 3], &[1, 1, 2, 2, 2, 3], 6),
        (5, 2, &[3, 3], &[1, 1, 2, 2, 2, 3, 3], 7),
    ];
    for (case, (prev, prev_term, entries, want_log, want_index)) in cases.into_iter().enumerate() {
        let mut follower = new_core(0, 3);
        give_log(&mut follower, 1, &[1, 1, 2, 2, 2]);
        follower.step(0, 1, append(3, (prev, prev_term), entries, 0));
        let reply = the_append_reply(&drain(&mut follower), 1);
        assert!(reply.success, "case {case}: success");
        assert_eq!(reply.index, want_index, "case {case}: reply index");
        assert_eq!(log_terms(&follower), want_log, "case {case}: log");
        // Every entry now holds what the leader of its term wrote there.
        for (index, command) in (1..).zip(log_commands(&follower)) {
            let term = want_log[index as usize - 1];
            assert_eq!(command, cmd(term, index), "case {case}: command at {index}");
        }
    }
}

#[test]
fn stale_shorter_append_after_a_longer_one_truncates_nothing() {
    let mut follower = new_core(0, 3);
    let long = append(1, (0, 0), &[1, 1, 1, 1], 0);
    let short = append(1, (0, 0), &[1, 1], 0);
    follower.step(0, 1, long);
    assert_eq!(the_append_reply(&drain(&mut follower), 1).index, 4);
    // The network delivers the older, shorter message late.
    follower.step(0, 1, short);
    let reply = the_append_reply(&drain(&mut follower), 1);
    assert!(reply.success);
    assert_eq!(reply.index, 2, "it vouches only for what it carried");
    assert_eq!(log_terms(&follower), vec![1, 1, 1, 1], "nothing lost");
}

#[test]
fn follower_commit_is_min_of_leader_commit_and_last_new_entry() {
    // The follower starts with [1 1 1] from leader 1 of term 1, commit 0. Steps are cumulative.
    // (prev index, entries, leader commit, want commit)
    let script: [(u64, &[u64], u64, u64); 7] = [
        (3, &[], 2, 2),
        (1, &[], 3, 2),     // vouches only up to 1: min(3, 1), and never backwards
        (2, &[1], 10, 3),   // last new entry is 3 (entry 3 matched, nothing appended)
        (3, &[1, 1], 4, 4), // leader commit below the last new entry
        (5, &[], 10, 5),
        (5, &[1], 5, 5),
        (0, &[], 9, 5), // a heartbeat at the start of the log vouches for nothing
    ];
    let mut follower = new_core(0, 3);
    give_log(&mut follower, 1, &[1, 1, 1]);
    for (step, (prev, entries, leader_commit, want)) in script.into_iter().enumerate() {
        follower.step(0, 1, append(1, (prev, 1.min(prev)), entries, leader_commit));
        assert!(
            the_append_reply(&drain(&mut follower), 1).success,
            "step {step}"
        );
        assert_eq!(follower.commit_index(), want, "step {step}: commit index");
    }
    assert_eq!(follower.apply_range(), Some((1, 5)));
    follower.advance_applied(3);
    assert_eq!(follower.apply_range(), Some((4, 5)));
    follower.advance_applied(5);
    assert_eq!(follower.apply_range(), None);
    assert_eq!(follower.last_applied(), 5);

    // A rejected AppendEntries moves nothing.
    follower.step(0, 1, append(1, (9, 1), &[], 9));
    assert!(!the_append_reply(&drain(&mut follower), 1).success);
    assert_eq!(follower.commit_index(), 5);
}

#[test]
fn follower_never_commits_an_entry_the_leader_has_not_vouched_for() {
    // The follower holds [1 1 2], where entry 3 is from a deposed leader of term 2. The leader
    // of term 3 has committed its own entry 3, but its heartbeat only checks up to index 2: the
    // follower's entry 3 is not the committed one and must not be committed.
    let mut follower = new_core(0, 3);
    give_log(&mut follower, 2, &[1, 1, 2]);
    follower.step(0, 1, append(3, (2, 1), &[], 3));
    let reply = the_append_reply(&drain(&mut follower), 1);
    assert!(reply.success);
    assert_eq!(
        follower.commit_index(),
        2,
        "commit = min(leader commit 3, last new entry 2)"
    );
    assert_eq!(
        log_terms(&follower),
        vec![1, 1, 2],
        "no conflict seen, nothing truncated"
    );

    // The entry that replaces it is the one committed.
    follower.step(0, 1, append(3, (2, 1), &[3], 3));
    assert!(the_append_reply(&drain(&mut follower), 1).success);
    assert_eq!(log_terms(&follower), vec![1, 1, 3]);
    assert_eq!(follower.commit_index(), 3);
}

#[test]
fn candidate_steps_down_on_append_entries_of_its_term() {
    let mut core = new_core(0, 3);
    campaign_to(&mut core, 2);
    let deadline = core.next_deadline();
    let now = deadline - MS;
    core.step(now, 1, append(2, (0, 0), &[2], 0));
    assert_eq!(core.role(), Role::Follower);
    assert_eq!(core.term(), 2, "same term");
    assert_eq!(core.leader(), Some(1));
    assert_eq!(core.voted_for(), Some(0), "its vote in term 2 stands");
    assert!(core.next_deadline() >= now + 300 * MS, "timer restarted");
    let reply = the_append_reply(&drain(&mut core), 1);
    assert!(reply.success);
    assert_eq!(log_terms(&core), vec![2]);
}

#[test]
fn append_entries_from_the_leader_resets_the_election_timer() {
    let mut core = new_core(0, 3);
    let mut now = 0;
    for round in 0..10 {
        now = core.next_deadline() - MS;
        core.step(now, 1, append(1, (0, 0), &[], 0));
        drain(&mut core);
        assert!(core.next_deadline() > now + MS, "round {round}");
    }
    core.tick(now + 299 * MS);
    assert_eq!(
        core.role(),
        Role::Follower,
        "no election while the leader is heard"
    );
    assert!(quiet(&mut core));
}

// ---- leader ------------------------------------------------------------------------------------

#[test]
fn propose_on_a_follower_or_candidate_appends_nothing() {
    let mut follower = new_core(0, 3);
    assert_eq!(follower.propose(0, commands(3)), None);
    let mut candidate = new_core(0, 3);
    campaign_to(&mut candidate, 1);
    assert_eq!(candidate.propose(0, commands(3)), None);
    for core in [&mut follower, &mut candidate] {
        assert_eq!(core.log().last_index(), 0);
        assert!(quiet(core));
    }
}

#[test]
fn leader_commits_by_majority_of_match_indices() {
    // Leader 0 of 5 appends entries 1..=5 in term 1; replies come from followers as (from,
    // index); the commit index is the highest index held by three nodes.
    let cases: [(&[(usize, u64)], u64); 6] = [
        (&[(1, 5)], 0),
        (&[(1, 5), (2, 5)], 5),
        (&[(1, 5), (2, 3)], 3),
        (&[(1, 1), (2, 2), (3, 3), (4, 4)], 3),
        (&[(4, 4), (4, 4), (4, 4)], 0), // one follower, however often
        (&[(1, 2), (2, 5), (1, 5)], 5),
    ];
    for (case, (acks, want)) in cases.into_iter().enumerate() {
        let mut leader = replicating_leader(5, CoreConfig::default());
        leader.propose(0, commands(5));
        drain(&mut leader);
        for &(from, index) in acks {
            leader.step(0, from, ack(1, index));
        }
        assert_eq!(leader.commit_index(), want, "case {case}: commit index");
        // The followers hear of it with the next AppendEntries.
        let deadline = leader.next_deadline();
        leader.tick(deadline);
        let sent = drain(&mut leader);
        assert!(!sent.is_empty(), "case {case}: the tick sent nothing");
        for (to, msg) in sent {
            let Message::AppendEntries(a) = msg else {
                panic!("case {case}: a leader sends only AppendEntries, got {msg:?}");
            };
            assert_eq!(a.leader_commit, want, "case {case}: leader commit to {to}");
        }
    }
}

#[test]
fn leader_commits_only_entries_of_its_own_term() {
    // Figure 8: leader 0 of 5 holds [1 2], where entry 2 (term 2) did not commit in term 2.
    let mut leader = new_core(0, 5);
    leader.step(0, 1, append(2, (0, 0), &[1, 2], 1));
    drain(&mut leader);
    assert_eq!(leader.commit_index(), 1);
    elect(&mut leader, 4);

    // Entry 2 reaches a majority (0, 1, 2) in term 4, but is not committed by counting: a
    // leader of term 3 that never saw it could still overwrite it.
    leader.step(0, 1, ack(4, 2));
    leader.step(0, 2, ack(4, 2));
    assert_eq!(leader.progress(1).map(|p| p.match_index), Some(2));
    assert_eq!(leader.progress(2).map(|p| p.match_index), Some(2));
    assert_eq!(
        leader.commit_index(),
        1,
        "entry of term 2 not committed in term 4"
    );

    // An entry of term 4 on a majority commits itself and, with it, entry 2. The leader counts
    // itself only once its own write is durable (thesis §10.2.1).
    assert_eq!(leader.propose(0, commands(1)), Some((3, 3)));
    leader.step(0, 1, ack(4, 3));
    leader.step(0, 2, ack(4, 3));
    assert_eq!(
        leader.commit_index(),
        1,
        "two followers hold entry 3, the leader's write is not durable"
    );
    persist(&mut leader);
    assert_eq!(leader.commit_index(), 3);
    assert_eq!(leader.apply_range(), Some((1, 3)));
}

#[test]
fn leader_sends_heartbeats_at_the_interval() {
    let mut leader = replicating_leader(3, CoreConfig::default());
    let interval = CoreConfig::default().heartbeat_interval;
    let mut due = leader.next_deadline();
    for round in 0..5 {
        leader.tick(due - 1);
        assert!(
            quiet(&mut leader),
            "round {round}: nothing before the interval"
        );
        leader.tick(due);
        let sent = drain(&mut leader);
        assert_eq!(sent.len(), 2, "round {round}: one per follower: {sent:?}");
        for peer in [1, 2] {
            let heartbeat = &appends_to(&sent, peer)[0];
            assert!(heartbeat.entries.is_empty(), "round {round}: empty");
            assert_eq!(heartbeat.term, 1, "round {round}: term");
        }
        assert_eq!(
            leader.next_deadline(),
            due + interval,
            "round {round}: next"
        );
        due += interval;
    }
    assert_eq!(leader.role(), Role::Leader, "a leader never times out");
    assert_eq!(leader.term(), 1);
}

#[test]
fn leader_tells_followers_its_new_commit_index_after_the_delay() {
    let config = CoreConfig::default();
    let delay = config.commit_notify_delay;
    let mut leader = replicating_leader(3, config);
    let heartbeat_due = leader.next_deadline();
    let t0 = heartbeat_due - 90 * MS;
    leader.propose(t0, commands(2));
    let sent = drain(&mut leader);
    assert_eq!(
        appends_to(&sent, 1)[0].leader_commit,
        0,
        "the batch goes out before it commits"
    );
    // Node 1 acknowledges: a majority holds the batch, so it commits at once.
    leader.step(t0, 1, ack(1, 2));
    assert_eq!(leader.commit_index(), 2);
    drain(&mut leader);
    assert_eq!(
        leader.next_deadline(),
        t0 + delay,
        "the notification is due after the delay"
    );
    leader.tick(t0 + delay - 1);
    assert!(quiet(&mut leader), "nothing before the delay");
    // Node 2 acknowledges too; both now hold entries they cannot yet know are committed.
    leader.step(t0 + delay - 1, 2, ack(1, 2));
    leader.tick(t0 + delay);
    let sent = drain(&mut leader);
    for peer in [1, 2] {
        let notice = appends_to(&sent, peer);
        assert_eq!(notice.len(), 1, "one notice to node {peer}: {sent:?}");
        assert!(
            notice[0].entries.is_empty(),
            "node {peer}: carries no entries"
        );
        assert_eq!(
            notice[0].leader_commit, 2,
            "node {peer}: carries the commit index"
        );
        assert_eq!(
            notice[0].prev_log_index, 2,
            "node {peer}: vouches for what it acknowledged"
        );
    }
    // Nothing new: no further notice, only the heartbeat at its usual time.
    assert_eq!(
        leader.next_deadline(),
        heartbeat_due,
        "only the heartbeat is due"
    );
    leader.tick(t0 + 2 * delay);
    assert!(quiet(&mut leader), "no notice without news");

    // A follower already sent the commit index with a later batch is not told again.
    leader.propose(t0 + 3 * delay, commands(1));
    drain(&mut leader);
    leader.step(t0 + 3 * delay, 1, ack(1, 3));
    assert_eq!(leader.commit_index(), 3);
    leader.propose(t0 + 3 * delay, commands(1));
    let sent = drain(&mut leader);
    assert_eq!(
        appends_to(&sent, 1)[0].leader_commit,
        3,
        "the next batch carries the commit index"
    );
    leader.tick(t0 + 4 * delay);
    let sent = drain(&mut leader);
    assert!(
        appends_to(&sent, 1).is_empty(),
        "node 1 already has it: {sent:?}"
    );
    assert!(
        appends_to(&sent, 2).is_empty(),
        "node 2 got the same batch: {sent:?}"
    );
}

#[test]
fn propose_ships_one_append_entries_per_follower_per_batch() {
    let small = CoreConfig {
        max_append_entries: 4,
        ..CoreConfig::default()
    };
    let few_bytes = CoreConfig {
        max_append_bytes: 250,
        ..CoreConfig::default()
    };
    // (peers, config, commands, command size, want entries per AppendEntries to each follower)
    let cases: [(usize, CoreConfig, usize, usize, &[usize]); 6] = [
        (3, CoreConfig::default(), 1, 8, &[1]),
        (3, CoreConfig::default(), 10, 8, &[10]),
        (5, CoreConfig::default(), 100, 8, &[100]),
        (5, CoreConfig::default(), 3, 1 << 20, &[1, 1, 1]), // each alone reaches the byte cap
        (3, small, 10, 8, &[4, 4, 2]),
        (3, few_bytes, 5, 100, &[2, 2, 1]),
    ];
    for (case, (peers, config, n, size, want)) in cases.into_iter().enumerate() {
        let mut leader = replicating_leader(peers, config);
        let batch: Vec<Bytes> = (0..n).map(|_| Bytes::from(vec![7u8; size])).collect();
        assert_eq!(
            leader.propose(0, batch),
            Some((1, n as u64)),
            "case {case}: indices"
        );
        let sent = drain(&mut leader);
        for peer in 1..peers {
            let appends = appends_to(&sent, peer);
            let sizes: Vec<usize> = appends.iter().map(|a| a.entries.len()).collect();
            assert_eq!(sizes, want, "case {case}: batches to {peer}");
            let mut prev = 0;
            for a in &appends {
                assert_eq!(a.prev_log_index, prev, "case {case}: contiguous to {peer}");
                assert!(a.entries.iter().all(|e| e.term == 1), "case {case}: term");
                prev += a.entries.len() as u64;
            }
        }
        assert_eq!(
            sent.len(),
            (peers - 1) * want.len(),
            "case {case}: nothing else"
        );
    }
}

#[test]
fn entry_buffers_travel_from_follower_to_leader_and_back() {
    // The leader fills the buffer it was given; the follower keeps the buffer it received, empty;
    // oversized, capacity-less and surplus buffers are not kept.
    let mut leader = replicating_leader(2, CoreConfig::default());
    let mut follower = new_core(1, 2);
    let given: Vec<Entry> = Vec::with_capacity(8);
    let given_at = given.as_ptr();
    leader.give_entry_buffer(given);
    assert_eq!(leader.entry_buffers(), 1);
    leader.propose(0, [cmd(1, 1), cmd(1, 2)]);
    assert_eq!(leader.entry_buffers(), 0, "the leader spent its buffer");
    let mut sent = drain(&mut leader);
    let (to, msg) = sent.pop().expect("one AppendEntries");
    let Message::AppendEntries(a) = &msg else {
        panic!("expected an AppendEntries, got {msg:?}");
    };
    assert_eq!((to, a.entries.len()), (1, 2));
    assert_eq!(a.entries.as_ptr(), given_at, "sent in the given buffer");

    follower.step(0, 0, msg);
    assert!(the_append_reply(&drain(&mut follower), 0).success);
    assert_eq!(log_commands(&follower), [cmd(1, 1), cmd(1, 2)]);
    let kept = follower
        .take_entry_buffer()
        .expect("the follower kept the buffer");
    assert_eq!(
        (kept.as_ptr(), kept.len(), kept.capacity()),
        (given_at, 0, 8)
    );

    // A stale AppendEntries, rejected, leaves its buffer (emptied) behind too.
    let mut newer = new_core(1, 2);
    campaign_to(&mut newer, 5);
    newer.step(0, 0, append(1, (0, 0), &[1, 1], 0));
    let reply = the_append_reply(&drain(&mut newer), 0);
    assert!(!reply.success);
    assert_eq!(newer.take_entry_buffer().map(|b| b.len()), Some(0));

    let mut core = new_core(0, 3);
    core.give_entry_buffer(Vec::new());
    core.give_entry_buffer(Vec::with_capacity(MAX_BUFFER_CAPACITY + 1));
    assert_eq!(core.entry_buffers(), 0, "no capacity or too large: dropped");
    for _ in 0..2 * MAX_SPARE_BUFFERS {
        core.give_entry_buffer(Vec::with_capacity(1));
    }
    assert_eq!(core.entry_buffers(), MAX_SPARE_BUFFERS, "surplus dropped");
}

#[test]
fn empty_proposal_sends_nothing() {
    let mut leader = replicating_leader(3, CoreConfig::default());
    assert_eq!(leader.propose(0, Vec::new()), Some((1, 0)));
    assert!(quiet(&mut leader));
    assert_eq!(leader.log().last_index(), 0);
}

// ---- pipelining --------------------------------------------------------------------------------

#[test]
fn a_heartbeat_that_overtakes_a_batch_keeps_the_follower_replicating() {
    let mut leader = replicating_leader(3, CoreConfig::default());
    let mut follower = new_core(1, 3);
    follower.step(0, 0, append(1, (0, 0), &[], 0));
    drain(&mut follower);
    let due = leader.next_deadline();

    // A batch goes out; the heartbeat after it reaches the follower first.
    leader.propose(due - MS, commands(2));
    let batch = appends_to(&drain(&mut leader), 1).remove(0);
    leader.tick(due);
    let heartbeat = appends_to(&drain(&mut leader), 1).remove(0);
    assert!(heartbeat.entries.is_empty());
    assert_eq!(
        (heartbeat.prev_log_index, heartbeat.prev_log_term),
        (0, 0),
        "the heartbeat names the follower's match index, not the end of the batch"
    );
    follower.step(due, 0, Message::AppendEntries(heartbeat));
    let reply = the_append_reply(&drain(&mut follower), 0);
    assert!(reply.success, "the follower holds what it names: {reply:?}");
    leader.step(due, 1, Message::AppendEntriesReply(reply));
    let sent = drain(&mut leader);
    assert!(
        appends_to(&sent, 1).is_empty(),
        "nothing sent again: {sent:?}"
    );
    let pr = leader.progress(1).expect("follower");
    assert_eq!(
        (pr.state, pr.next_index, pr.inflights.len()),
        (ProgressState::Replicate, 3, 1),
        "still streaming, the batch still in flight"
    );

    // The batch arrives after all and is acknowledged as usual.
    follower.step(due, 0, Message::AppendEntries(batch));
    let reply = the_append_reply(&drain(&mut follower), 0);
    leader.step(due, 1, Message::AppendEntriesReply(reply));
    assert_eq!(leader.progress(1).map(|p| p.match_index), Some(2));
}

#[test]
fn heartbeats_let_a_follower_commit_no_further_than_its_match() {
    let mut leader = replicating_leader(3, CoreConfig::default());
    let due = leader.next_deadline();
    leader.propose(0, commands(3));
    drain(&mut leader);
    // Node 2 holds all three, node 1 (as far as the leader knows) only the first.
    leader.step(0, 2, ack(1, 3));
    leader.step(0, 1, ack(1, 1));
    assert_eq!(leader.commit_index(), 3);
    leader.tick(due);
    let sent = drain(&mut leader);
    // (follower, want previous index, which bounds what it commits)
    for (peer, want_prev) in [(1, 1), (2, 3)] {
        let heartbeat = &appends_to(&sent, peer)[0];
        assert!(heartbeat.entries.is_empty(), "node {peer}");
        assert_eq!(heartbeat.prev_log_index, want_prev, "node {peer}");
        assert_eq!(heartbeat.leader_commit, 3, "node {peer}");
        assert_eq!(
            leader.progress(peer).map(|p| p.commit_sent),
            Some(want_prev),
            "node {peer}: what it was told it may commit"
        );
    }
    // A follower holding more than the leader knows still commits only up to the heartbeat's
    // previous index (Figure 2: the index of the last new entry).
    let mut follower = new_core(1, 3);
    follower.step(0, 0, append(1, (0, 0), &[1, 1, 1], 0));
    follower.step(
        0,
        0,
        Message::AppendEntries(appends_to(&sent, 1)[0].clone()),
    );
    assert_eq!(follower.commit_index(), 1);
}

#[test]
fn a_batch_unacknowledged_for_a_heartbeat_interval_is_probed_again() {
    let mut leader = replicating_leader(3, CoreConfig::default());
    let interval = CoreConfig::default().heartbeat_interval;
    let first = leader.next_deadline();
    // Index 1 goes out before the first heartbeat: node 2 acknowledges it, node 1's copy is
    // lost.
    leader.propose(first - 10 * MS, commands(1));
    drain(&mut leader);
    leader.step(first - 9 * MS, 2, ack(1, 1));
    leader.tick(first);
    let sent = drain(&mut leader);
    for peer in [1, 2] {
        let heartbeat = &appends_to(&sent, peer)[0];
        assert!(
            heartbeat.entries.is_empty(),
            "node {peer}: just a heartbeat"
        );
        assert_eq!(
            leader.progress(peer).map(|p| p.state),
            Some(ProgressState::Replicate),
            "node {peer}: index 1 was sent less than an interval ago"
        );
    }
    // Index 2 goes out just before the second heartbeat and is not acknowledged by then.
    leader.propose(first + interval - MS, commands(1));
    drain(&mut leader);
    leader.tick(first + interval);
    let sent = drain(&mut leader);

    // Node 1 acknowledged nothing sent before the first heartbeat: it is probed from index 1.
    let probe = appends_to(&sent, 1);
    assert_eq!(probe.len(), 1, "{sent:?}");
    assert_eq!(probe[0].prev_log_index, 0);
    assert_eq!(entry_terms(&probe[0].entries), vec![1, 1]);
    let pr = leader.progress(1).expect("follower");
    assert_eq!(pr.state, ProgressState::Probe);
    assert!(
        pr.probe_sent,
        "one probe until its answer or the next heartbeat"
    );
    // Node 2 acknowledged what it had by then; index 2 is younger than an interval.
    let heartbeat = &appends_to(&sent, 2)[0];
    assert!(heartbeat.entries.is_empty());
    assert_eq!(heartbeat.prev_log_index, 1);
    assert_eq!(
        leader.progress(2).map(|p| p.state),
        Some(ProgressState::Replicate)
    );

    // The probe's answer puts node 1 back to streaming.
    leader.step(first + interval, 1, ack(1, 2));
    let pr = leader.progress(1).expect("follower");
    assert_eq!(
        (pr.state, pr.match_index, pr.next_index),
        (ProgressState::Replicate, 2, 3)
    );
}

#[test]
fn a_follower_acknowledging_after_the_commit_notice_gets_its_own() {
    let config = CoreConfig::default();
    let delay = config.commit_notify_delay;
    let mut leader = replicating_leader(3, config);
    let heartbeat_due = leader.next_deadline();
    let t0 = heartbeat_due - 90 * MS;
    leader.propose(t0, commands(1));
    drain(&mut leader);
    // Node 1's acknowledgement commits index 1, and node 1 is told after the delay.
    leader.step(t0, 1, ack(1, 1));
    leader.tick(t0 + delay);
    let sent = drain(&mut leader);
    assert_eq!(appends_to(&sent, 1)[0].leader_commit, 1);
    assert!(appends_to(&sent, 2).is_empty(), "node 2 holds nothing yet");

    // Node 2's acknowledgement comes later: it gets a notice after the delay, not at the
    // heartbeat 80 ms on.
    let t1 = t0 + 10 * MS;
    leader.step(t1, 2, ack(1, 1));
    assert!(quiet(&mut leader), "nothing at once");
    assert_eq!(leader.next_deadline(), t1 + delay);
    leader.tick(t1 + delay);
    let sent = drain(&mut leader);
    let notice = appends_to(&sent, 2);
    assert_eq!(notice.len(), 1, "{sent:?}");
    assert_eq!((notice[0].prev_log_index, notice[0].leader_commit), (1, 1));
    assert!(appends_to(&sent, 1).is_empty(), "node 1 was told already");
    assert_eq!(leader.next_deadline(), heartbeat_due);
}

#[test]
fn replicate_state_pipelines_up_to_the_window() {
    let config = CoreConfig {
        max_inflight: 3,
        ..CoreConfig::default()
    };
    let mut leader = replicating_leader(3, config);

    // Five proposals, one command each, with no acks: three AppendEntries go out to each
    // follower, then the window is full.
    // (proposal, want AppendEntries per follower, want next_index, want in flight)
    let script = [
        (1, 1, 2, 1),
        (2, 1, 3, 2),
        (3, 1, 4, 3),
        (4, 0, 4, 3),
        (5, 0, 4, 3),
    ];
    for (index, sends, next, inflight) in script {
        assert_eq!(leader.propose(0, commands(1)), Some((index, index)));
        let sent = drain(&mut leader);
        for peer in [1, 2] {
            let appends = appends_to(&sent, peer);
            assert_eq!(appends.len(), sends, "proposal {index}: sends to {peer}");
            if let Some(a) = appends.first() {
                assert_eq!(a.prev_log_index, index - 1, "proposal {index}: prev");
                assert_eq!(a.entries.len(), 1, "proposal {index}: entries");
            }
            let pr = leader.progress(peer).expect("follower");
            assert_eq!(pr.state, ProgressState::Replicate, "proposal {index}");
            assert_eq!(pr.next_index, next, "proposal {index}: next to {peer}");
            assert_eq!(pr.inflights.len(), inflight, "proposal {index}: in flight");
            assert_eq!(pr.is_paused(), inflight == 3, "proposal {index}: paused");
        }
    }

    // A heartbeat still goes out while paused, and does not take a slot.
    let deadline = leader.next_deadline();
    leader.tick(deadline);
    let sent = drain(&mut leader);
    assert_eq!(sent.len(), 2);
    for peer in [1, 2] {
        let hb = &appends_to(&sent, peer)[0];
        assert!(hb.entries.is_empty());
        assert_eq!(
            (hb.prev_log_index, hb.prev_log_term),
            (0, 0),
            "at the match index, which the follower holds"
        );
        assert_eq!(leader.progress(peer).map(|p| p.inflights.len()), Some(3));
    }

    // The first ack frees one slot: everything pending goes in one AppendEntries.
    leader.step(0, 1, ack(1, 1));
    let sent = drain(&mut leader);
    let appends = appends_to(&sent, 1);
    assert_eq!(appends.len(), 1, "resumed: {sent:?}");
    assert_eq!(appends[0].prev_log_index, 3);
    assert_eq!(entry_terms(&appends[0].entries), vec![1, 1]);
    assert!(
        appends_to(&sent, 2).is_empty(),
        "follower 2 is still paused"
    );
    let pr = leader.progress(1).expect("follower");
    assert_eq!((pr.match_index, pr.next_index), (1, 6));
    assert!(pr.is_paused(), "window full again: 2, 3 and 5 in flight");
    assert_eq!(leader.commit_index(), 1);

    // Acks for the rest empty the window; nothing is left to send.
    leader.step(0, 1, ack(1, 5));
    assert!(quiet(&mut leader));
    let pr = leader.progress(1).expect("follower");
    assert_eq!((pr.match_index, pr.next_index), (5, 6));
    assert!(pr.inflights.is_empty());
    assert_eq!(leader.commit_index(), 5);
}

#[test]
fn new_leader_probes_before_streaming() {
    let mut leader = new_core(0, 3);
    elect(&mut leader, 1);
    // The probe from the election is outstanding: a proposal does not stream past it.
    assert_eq!(leader.propose(0, commands(2)), Some((1, 2)));
    assert!(quiet(&mut leader), "paused while probing");
    assert_eq!(
        leader.progress(1).map(|p| p.state),
        Some(ProgressState::Probe)
    );
    // The probe's answer switches to Replicate and sends what waited.
    leader.step(0, 1, ack(1, 0));
    let sent = drain(&mut leader);
    let appends = appends_to(&sent, 1);
    assert_eq!(appends.len(), 1);
    assert_eq!(appends[0].prev_log_index, 0);
    assert_eq!(appends[0].entries.len(), 2);
    assert_eq!(
        leader.progress(1).map(|p| p.state),
        Some(ProgressState::Replicate)
    );
}

#[test]
fn rejection_in_replicate_falls_back_to_probing() {
    let mut leader = replicating_leader(3, CoreConfig::default());
    for _ in 0..3 {
        leader.propose(0, commands(2));
    }
    drain(&mut leader);
    leader.step(0, 1, ack(1, 2));
    drain(&mut leader);
    // The batch after index 2 was lost: the follower rejects the next one (prev 4), holding 2.
    leader.step(0, 1, reject(1, 4, 0, 3));
    let pr = leader.progress(1).expect("follower");
    assert_eq!(pr.state, ProgressState::Probe);
    assert_eq!((pr.match_index, pr.next_index), (2, 3));
    let sent = drain(&mut leader);
    let appends = appends_to(&sent, 1);
    assert_eq!(appends.len(), 1, "one probe");
    assert_eq!(appends[0].prev_log_index, 2);
    assert_eq!(entry_terms(&appends[0].entries), vec![1, 1, 1, 1]);
    // The rejection of the batch after it (prev 6) is stale: the probe is outstanding.
    leader.step(0, 1, reject(1, 6, 0, 3));
    assert!(quiet(&mut leader));
}

// ---- fast backtracking -------------------------------------------------------------------------

#[test]
fn backtracking_skips_a_term_per_round_trip() {
    // The leader (node 0 of 3) holds the log below and leads term 8; node 1 holds each case's
    // log. Each case lists the prev_log_index of every AppendEntries until one succeeds, first
    // with `Backtrack::LeaderTerm`, then with `Backtrack::FollowerTerm`.
    const LEADER: &[u64] = &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    type Indices = &'static [u64];
    // (name, follower's log, probes with LeaderTerm, probes with FollowerTerm)
    let cases: [(&str, Indices, Indices, Indices); 9] = [
        ("empty", &[], &[10, 0], &[10, 0]),
        (
            "shorter by one",
            &[1, 1, 1, 4, 4, 5, 5, 6, 6],
            &[10, 9],
            &[10, 9],
        ),
        ("much shorter", &[1, 1, 1, 4], &[10, 4], &[10, 4]),
        (
            "longer, same last term",
            &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
            &[10],
            &[10],
        ),
        (
            "longer, later term",
            &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
            &[10],
            &[10],
        ),
        // Too short, then its term 4 runs past the leader's: skip to the leader's last 4, or
        // to the follower's first 4 (re-sending the two 4s they share).
        (
            "shorter, conflicting",
            &[1, 1, 1, 4, 4, 4, 4],
            &[10, 7, 5],
            &[10, 7, 3],
        ),
        // Terms 3 and 2 the leader never had: one round trip each.
        (
            "conflicting by two terms",
            &[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
            &[10, 6, 3],
            &[10, 6, 3],
        ),
        (
            "longer, conflicting",
            &[1, 1, 1, 4, 4, 4, 4, 4, 4, 4, 4, 4],
            &[10, 5],
            &[10, 3],
        ),
        (
            "no common entry",
            &[2, 2, 2, 3, 3],
            &[10, 5, 3, 0],
            &[10, 5, 3, 0],
        ),
    ];
    let cases = cases
        .into_iter()
        .flat_map(|(name, log, leader_term, follower_term)| {
            [
                (name, log, Backtrack::LeaderTerm, leader_term),
                (name, log, Backtrack::FollowerTerm, follower_term),
            ]
        });
    for (case, (name, follower_log, backtrack, want_probes)) in cases.enumerate() {
        let name = format!("{name}, {backtrack:?}");
        let config = CoreConfig {
            backtrack,
            ..CoreConfig::default()
        };
        let mut leader = Core::new(0, 3, config, 100, 0);
        give_log(&mut leader, 2, LEADER);
        let mut follower = new_core(1, 3);
        give_log(&mut follower, 2, follower_log);
        let mut sent = elect(&mut leader, 8);

        let mut probes = Vec::new();
        loop {
            let appends = appends_to(&sent, 1);
            assert_eq!(
                appends.len(),
                1,
                "case {case} ({name}): one probe per round trip"
            );
            let probe = appends[0].clone();
            probes.push(probe.prev_log_index);
            assert!(
                probes.len() <= 10,
                "case {case} ({name}): no progress: {probes:?}"
            );
            follower.step(0, 0, Message::AppendEntries(probe));
            let reply = the_append_reply(&drain(&mut follower), 0);
            leader.step(0, 1, Message::AppendEntriesReply(reply.clone()));
            sent = drain(&mut leader);
            if reply.success {
                break;
            }
        }
        assert_eq!(probes, want_probes, "case {case} ({name}): probes");
        let pr = leader.progress(1).expect("follower");
        assert_eq!(pr.match_index, 10, "case {case} ({name}): match");
        assert_eq!(pr.state, ProgressState::Replicate, "case {case} ({name})");
        assert_eq!(
            log_terms(&follower)[..10],
            *LEADER,
            "case {case} ({name}): follower holds the leader's log"
        );
        // Entries past the match survive unless they conflicted with what the probe carried.
        let want_last = if follower_log.starts_with(LEADER) {
            follower_log.len()
        } else {
            LEADER.len()
        };
        assert_eq!(
            follower.log().last_index(),
            want_last as u64,
            "case {case} ({name}): nothing truncated without a conflict"
        );

        // The leader's next entry replaces whatever the follower held beyond the match.
        leader.propose(0, commands(1));
        for (_, msg) in drain(&mut leader).into_iter().filter(|(to, _)| *to == 1) {
            follower.step(0, 0, msg);
        }
        assert_eq!(
            log_terms(&follower),
            log_terms(&leader),
            "case {case} ({name})"
        );
        assert_eq!(
            log_commands(&follower),
            log_commands(&leader),
            "case {case} ({name})"
        );
    }
}

#[test]
fn follower_cut_off_for_several_terms_catches_up_in_one_rejection() {
    // Node 2 is cut off while nodes 0 and 1 take turns leading terms 1 to 4, each appending 20
    // entries in the first three.
    let mut sim = Sim::new(3);
    sim.fire(0);
    sim.settle(&[]);
    for round in 0..3 {
        let leader = sim.leaders()[0];
        sim.cores[leader].propose(sim.now, commands(20));
        sim.collect();
        sim.settle(&[2]);
        let next = 1 - leader;
        sim.fire(next);
        sim.settle(&[2]);
        assert_eq!(sim.leaders(), vec![next], "round {round}");
    }
    let leader = sim.leaders()[0];
    assert_eq!(sim.cores[leader].term(), 4);
    assert_eq!(sim.cores[leader].log().last_index(), 60);
    assert_eq!(sim.cores[2].log().last_index(), 0);

    // Back in touch: the probe at 60 is rejected with "my log ends at 0", and the next one
    // carries all 60 entries.
    sim.fire(leader);
    let mut to_node_2 = Vec::new();
    while let Some((from, to, msg)) = sim.queue.pop_front() {
        if let (2, Message::AppendEntries(a)) = (to, &msg) {
            to_node_2.push((a.prev_log_index, a.entries.len()));
        }
        sim.cores[to].step(sim.now, from, msg);
        sim.collect();
    }
    assert_eq!(to_node_2, vec![(60, 0), (0, 60)]);
    assert_eq!(log_terms(&sim.cores[2]), log_terms(&sim.cores[leader]));
    assert_eq!(sim.cores[2].term(), 4);
}

// ---- stale replies -----------------------------------------------------------------------------

#[test]
fn stale_or_duplicated_success_never_moves_progress_backwards() {
    let mut leader = replicating_leader(3, CoreConfig::default());
    for _ in 0..5 {
        leader.propose(0, commands(1));
    }
    drain(&mut leader);
    // (reply index from follower 1, want match, want next, want commit)
    let script = [
        (2, 2, 6, 2),
        (1, 2, 6, 2), // older
        (2, 2, 6, 2), // duplicated
        (5, 5, 6, 5),
        (3, 5, 6, 5),
        (0, 5, 6, 5),
    ];
    for (step, (index, want_match, want_next, want_commit)) in script.into_iter().enumerate() {
        leader.step(0, 1, ack(1, index));
        let pr = leader.progress(1).expect("follower");
        assert_eq!(pr.match_index, want_match, "step {step}: match");
        assert_eq!(pr.next_index, want_next, "step {step}: next");
        assert_eq!(pr.state, ProgressState::Replicate, "step {step}: state");
        assert_eq!(leader.commit_index(), want_commit, "step {step}: commit");
        assert!(quiet(&mut leader), "step {step}: nothing to resend");
    }
}

#[test]
fn rejection_of_an_old_probe_is_ignored() {
    // The leader holds five entries of term 1 and leads term 2; follower 1 holds two.
    let mut leader = new_core(0, 3);
    give_log(&mut leader, 2, &[1, 1, 1, 1, 1]);
    let sent = elect(&mut leader, 2);
    assert_eq!(appends_to(&sent, 1)[0].prev_log_index, 5);
    // A heartbeat re-sends the same probe.
    let deadline = leader.next_deadline();
    leader.tick(deadline);
    assert_eq!(appends_to(&drain(&mut leader), 1)[0].prev_log_index, 5);

    // The first rejection moves the probe to the follower's end.
    leader.step(0, 1, reject(2, 5, 0, 3));
    let sent = drain(&mut leader);
    assert_eq!(appends_to(&sent, 1)[0].prev_log_index, 2);
    assert_eq!(leader.progress(1).map(|p| p.next_index), Some(3));

    // (rejected index, hint) of replies that answer no outstanding probe
    let stale = [(5, 1), (5, 3), (4, 1), (9, 1)];
    for (case, (index, hint)) in stale.into_iter().enumerate() {
        leader.step(0, 1, reject(2, index, 0, hint));
        assert!(quiet(&mut leader), "case {case}: nothing sent");
        let pr = leader.progress(1).expect("follower");
        assert_eq!(pr.next_index, 3, "case {case}: next kept");
        assert_eq!(pr.state, ProgressState::Probe, "case {case}");
    }

    // The answer to the outstanding probe is believed.
    leader.step(0, 1, ack(2, 5));
    let pr = leader.progress(1).expect("follower");
    assert_eq!((pr.match_index, pr.next_index), (5, 6));
    assert_eq!(pr.state, ProgressState::Replicate);

    // In Replicate, a rejection at or below the match index is stale too.
    drain(&mut leader);
    leader.step(0, 1, reject(2, 4, 0, 1));
    let pr = leader.progress(1).expect("follower");
    assert_eq!((pr.match_index, pr.next_index), (5, 6));
    assert_eq!(pr.state, ProgressState::Replicate);
    assert!(quiet(&mut leader));
}

#[test]
fn rejection_of_a_request_from_an_earlier_leadership_is_ignored() {
    // Node 0 led term 2 holding [1 1 1 1 1] and sent node 1 a heartbeat at prev 5. Node 1 gets it
    // only in term 4, and rejects it with term 4: the term in which node 0 leads again.
    let old_heartbeat = append(2, (5, 1), &[], 5);
    let mut follower = new_core(1, 3);
    give_log(&mut follower, 2, &[1, 1, 1, 1, 1]);
    follower.step(0, 2, request_vote(4, 5, 1));
    drain(&mut follower);
    follower.step(0, 0, old_heartbeat);
    let stale = the_append_reply(&drain(&mut follower), 0);
    assert!(!stale.success);
    assert_eq!((stale.term, stale.index, stale.conflict_index), (4, 5, 0));

    // Probe: the stale rejection answers the probe's index but says nothing about the log.
    let mut leader = new_core(0, 3);
    give_log(&mut leader, 2, &[1, 1, 1, 1, 1]);
    elect(&mut leader, 4);
    leader.step(0, 1, Message::AppendEntriesReply(stale.clone()));
    assert!(quiet(&mut leader), "probe: nothing re-sent");
    let pr = leader.progress(1).expect("follower");
    assert_eq!(
        (pr.state, pr.match_index, pr.next_index),
        (ProgressState::Probe, 0, 6)
    );

    // Replicate, with a batch in flight past the match index: the window is kept.
    leader.step(0, 1, ack(4, 5));
    leader.propose(0, commands(3));
    drain(&mut leader);
    let rejected_above_match = AppendEntriesReply { index: 7, ..stale };
    leader.step(0, 1, Message::AppendEntriesReply(rejected_above_match));
    assert!(quiet(&mut leader), "replicate: nothing re-sent");
    let pr = leader.progress(1).expect("follower");
    assert_eq!(
        (pr.state, pr.match_index, pr.next_index),
        (ProgressState::Replicate, 5, 9)
    );
}

#[test]
fn replies_from_an_older_term_are_ignored() {
    // The leader of term 3 holds [1 1 1]; its probes to both followers are outstanding.
    // (reply from an earlier term)
    let cases = [
        ack(2, 3),
        ack(1, 2),
        reject(2, 3, 0, 1),
        reject(2, 3, 1, 1),
        vote(2, true),
        vote(2, false),
    ];
    for (case, reply) in cases.into_iter().enumerate() {
        let mut leader = new_core(0, 3);
        give_log(&mut leader, 2, &[1, 1, 1]);
        elect(&mut leader, 3);
        leader.step(0, 1, reply);
        assert_eq!(leader.role(), Role::Leader, "case {case}");
        assert_eq!(leader.term(), 3, "case {case}");
        assert!(quiet(&mut leader), "case {case}: nothing sent");
        let pr = leader.progress(1).expect("follower");
        assert_eq!(
            (pr.match_index, pr.next_index),
            (0, 4),
            "case {case}: progress"
        );
        assert_eq!(pr.state, ProgressState::Probe, "case {case}: state");
        assert_eq!(leader.commit_index(), 0, "case {case}: commit");
    }
}

// ---- a whole cluster ---------------------------------------------------------------------------

#[test]
fn three_nodes_elect_replicate_commit_and_apply() {
    let mut sim = Sim::new(3);
    sim.fire(1);
    sim.settle(&[]);
    assert_eq!(sim.leaders(), vec![1]);
    assert!(
        sim.cores
            .iter()
            .all(|c| c.term() == 1 && c.leader() == Some(1))
    );

    let batch = commands(3);
    assert_eq!(sim.cores[1].propose(sim.now, batch.clone()), Some((1, 3)));
    sim.collect();
    sim.settle(&[]);
    assert_eq!(sim.cores[1].commit_index(), 3, "leader commits");
    // Followers learn the commit index from the next AppendEntries.
    sim.fire(1);
    sim.settle(&[]);
    for core in &mut sim.cores {
        assert_eq!(core.commit_index(), 3, "node {}", core.id());
        assert_eq!(core.apply_range(), Some((1, 3)), "node {}", core.id());
        assert_eq!(log_commands(core), batch, "node {}", core.id());
        core.advance_applied(3);
    }
}

#[test]
fn the_same_inputs_give_the_same_outputs() {
    let run = || {
        let mut sim = Sim::new(5);
        let mut transcript = Vec::new();
        for round in 0..4 {
            let next = (0..5)
                .min_by_key(|&i| sim.cores[i].next_deadline())
                .expect("nodes");
            sim.fire(next);
            if let Some(&leader) = sim.leaders().first() {
                sim.cores[leader].propose(sim.now, commands(round + 1));
                sim.collect();
            }
            while let Some((from, to, msg)) = sim.queue.pop_front() {
                transcript.push((sim.now, from, to, msg.clone()));
                sim.cores[to].step(sim.now, from, msg);
                sim.collect();
            }
        }
        transcript
    };
    let first = run();
    assert!(
        first.len() > 10,
        "something happened: {} messages",
        first.len()
    );
    assert_eq!(first, run());
}

// ---- persist before you speak -------------------------------------------------------------------

#[test]
fn a_vote_goes_out_only_once_it_is_durable() {
    let mut voter = new_core(1, 3);
    voter.step(0, 0, request_vote(3, 0, 0));
    assert_eq!(voter.voted_for(), Some(0));
    assert!(!voter.has_messages(), "the grant waits for the write");
    assert!(voter.has_held_messages());
    let write = voter.take_persist().expect("term and vote to write");
    assert_eq!(
        write.hard_state,
        Some(HardState {
            term: 3,
            voted_for: Some(0)
        })
    );
    assert_eq!(
        (write.truncate_from, write.first_index > write.last_index),
        (None, true)
    );
    assert!(!voter.has_messages(), "taken is not durable");
    voter.persisted(write.generation);
    let reply = the_vote_reply(&voter.take_messages().collect::<Vec<_>>(), 0);
    assert!(reply.granted);
    assert!(voter.take_persist().is_none(), "nothing else changed");
}

#[test]
fn a_candidate_asks_for_votes_only_once_its_term_and_vote_are_durable() {
    let mut core = new_core(0, 3);
    let deadline = core.next_deadline();
    core.tick(deadline);
    assert_eq!(core.role(), Role::Candidate);
    assert!(!core.has_messages());
    let write = core
        .take_persist()
        .expect("a campaign writes term and vote");
    assert_eq!(
        write.hard_state,
        Some(HardState {
            term: 1,
            voted_for: Some(0)
        })
    );
    core.persisted(write.generation);
    let sent: Vec<_> = core.take_messages().collect();
    assert_eq!(sent.len(), 2, "a RequestVote to each peer: {sent:?}");
}

#[test]
fn an_append_is_acknowledged_only_once_its_entries_are_durable() {
    let mut follower = new_core(1, 3);
    give_log(&mut follower, 0, &[1, 1, 2]);
    // A leader of term 3 replaces entry 3 and appends two more: storage must drop 3 first.
    follower.step(0, 0, append(3, (2, 1), &[3, 3], 0));
    assert!(!follower.has_messages());
    let write = follower.take_persist().expect("entries to write");
    assert_eq!(
        (write.truncate_from, write.first_index, write.last_index),
        (Some(3), 3, 4)
    );
    assert_eq!(
        write.hard_state,
        Some(HardState {
            term: 3,
            voted_for: None
        })
    );
    let update = follower.update(&write);
    assert_eq!(entry_terms(update.entries), [3, 3]);
    assert_eq!(follower.durable_index(), 2, "entry 3 was replaced");
    follower.persisted(write.generation);
    assert_eq!(follower.durable_index(), 4);
    let reply = the_append_reply(&follower.take_messages().collect::<Vec<_>>(), 0);
    assert_eq!((reply.success, reply.index), (true, 4));
}

#[test]
fn a_leader_ships_entries_before_its_own_write_and_counts_itself_after() {
    let mut leader = replicating_leader(3, CoreConfig::default());
    leader.propose(0, commands(2));
    let sent: Vec<_> = leader.take_messages().collect();
    assert_eq!(sent.len(), 2, "AppendEntries to both followers at once");
    let write = leader.take_persist().expect("the leader's own write");
    assert_eq!((write.first_index, write.last_index), (1, 2));
    leader.step(0, 1, ack(1, 2));
    assert_eq!(
        leader.commit_index(),
        0,
        "one follower holds them; the leader's own copy is not durable yet"
    );
    leader.persisted(write.generation);
    assert_eq!(
        leader.commit_index(),
        2,
        "follower 1 and the leader: a majority"
    );
}

#[test]
fn pipelined_writes_release_messages_in_order() {
    let mut follower = new_core(1, 2);
    follower.step(0, 0, append(1, (0, 0), &[1, 1], 0));
    let first = follower.take_persist().expect("first write");
    // A second AppendEntries arrives while the first write is under way.
    follower.step(0, 0, append(1, (2, 1), &[1], 0));
    let second = follower.take_persist().expect("second write");
    assert_eq!((second.first_index, second.last_index), (3, 3));
    assert!(!follower.has_messages());
    follower.persisted(first.generation);
    let replies: Vec<_> = follower.take_messages().collect();
    assert_eq!(
        the_append_reply(&replies, 0).index,
        2,
        "only the first answer"
    );
    assert_eq!(follower.durable_index(), 2);
    follower.persisted(second.generation);
    let replies: Vec<_> = follower.take_messages().collect();
    assert_eq!(the_append_reply(&replies, 0).index, 3);
    assert_eq!(follower.durable_index(), 3);
}

#[test]
fn a_truncation_while_a_write_is_under_way_lowers_what_it_makes_durable() {
    let mut follower = new_core(1, 3);
    follower.step(0, 0, append(1, (0, 0), &[1, 1, 1], 0));
    let first = follower.take_persist().expect("first write");
    // Leader 2 of term 2 replaces entries 2 and 3 before the first write is durable.
    follower.step(0, 2, append(2, (1, 1), &[2], 0));
    let second = follower.take_persist().expect("second write");
    assert_eq!(
        (second.truncate_from, second.first_index, second.last_index),
        (Some(2), 2, 2)
    );
    follower.persisted(first.generation);
    assert_eq!(
        follower.durable_index(),
        1,
        "entries 2 and 3 written were replaced"
    );
    follower.persisted(second.generation);
    assert_eq!(follower.durable_index(), 2);
}

#[test]
#[should_panic(expected = "writes must become durable in order")]
fn writes_become_durable_in_order() {
    let mut core = new_core(0, 3);
    core.step(0, 1, request_vote(1, 0, 0));
    let first = core.take_persist().expect("a vote");
    core.step(0, 2, request_vote(2, 0, 0));
    let second = core.take_persist().expect("another vote");
    assert_ne!(first.generation, second.generation);
    core.persisted(second.generation);
}

#[test]
fn a_restored_node_keeps_its_vote_and_log() {
    let hard_state = HardState {
        term: 4,
        voted_for: Some(2),
    };
    let entries: Vec<Entry> = [1, 1, 3]
        .iter()
        .zip(1..)
        .map(|(&term, index)| Entry {
            term,
            command: cmd(term, index),
        })
        .collect();
    let recovered = Recovered {
        hard_state,
        snapshot: None,
        entries,
    };
    let mut core = Core::restore(0, 3, CoreConfig::default(), 9, 0, recovered);
    assert_eq!((core.term(), core.voted_for()), (4, Some(2)));
    assert_eq!(log_terms(&core), [1, 1, 3]);
    assert_eq!((core.durable_index(), core.commit_index()), (3, 0));
    assert!(
        core.take_persist().is_none(),
        "nothing to write: all of it is durable"
    );
    // Another candidate of term 4 with a longer log still gets no vote.
    core.step(0, 1, request_vote(4, 9, 3));
    assert!(!the_vote_reply(&drain(&mut core), 1).granted);
    // The candidate it voted for does.
    core.step(0, 2, request_vote(4, 3, 3));
    assert!(the_vote_reply(&drain(&mut core), 2).granted);
}

#[test]
fn impossible_recovered_states_are_named() {
    let entry = |term| Entry {
        term,
        command: Bytes::new(),
    };
    let hs = |term, voted_for| HardState { term, voted_for };
    let cases = [
        (hs(2, Some(3)), vec![], "voted for node 3"),
        (
            hs(5, None),
            vec![entry(2), entry(1)],
            "goes down at index 2",
        ),
        (
            hs(1, None),
            vec![entry(2)],
            "entry of term 2 above its current term 1",
        ),
    ];
    for (case, (hard_state, entries, want)) in cases.into_iter().enumerate() {
        let state = Recovered {
            hard_state,
            snapshot: None,
            entries,
        };
        let problem = recovered_state_problem(3, &state);
        assert!(
            problem.as_deref().is_some_and(|p| p.contains(want)),
            "case {case}: {problem:?}"
        );
    }
    let fine = Recovered {
        hard_state: hs(2, Some(2)),
        snapshot: None,
        entries: vec![entry(1), entry(2)],
    };
    assert_eq!(recovered_state_problem(3, &fine), None);
}

// ---- snapshots -----------------------------------------------------------------------------------

/// Applies everything `core` committed, as a driver does, after handing it any snapshot first.
fn apply_all(core: &mut Core) {
    core.snapshot_applied();
    if let Some((_, to)) = core.apply_range() {
        core.advance_applied(to);
    }
}

/// The InstallSnapshot messages in `msgs` addressed to `to`, in order.
fn snapshots_to(msgs: &[(usize, Message)], to: usize) -> Vec<InstallSnapshot> {
    msgs.iter()
        .filter_map(|(t, m)| match m {
            Message::InstallSnapshot(s) if *t == to => Some(s.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn compaction_drops_the_log_up_to_an_applied_index_and_stores_the_snapshot() {
    let mut leader = replicating_leader(3, CoreConfig::default());
    leader.propose(0, commands(10));
    persist(&mut leader);
    leader.step(0, 1, ack(1, 10));
    assert_eq!(leader.commit_index(), 10);
    apply_all(&mut leader);
    assert!(
        !leader.compact(11, Bytes::from_static(b"s")),
        "not beyond what was applied"
    );
    assert!(leader.compact(6, Bytes::from_static(b"state at 6")));
    assert!(
        !leader.compact(6, Bytes::from_static(b"again")),
        "not the same index twice"
    );
    assert!(
        !leader.compact(4, Bytes::from_static(b"older")),
        "nor an older one"
    );
    assert_eq!((leader.log().offset(), leader.log().len()), (6, 4));
    let write = leader.take_persist().expect("the snapshot to store");
    assert!(write.snapshot);
    let update = leader.update(&write);
    assert_eq!(update.snapshot.map(|s| (s.index, s.term)), Some((6, 1)));
    assert!(update.entries.is_empty(), "entries unchanged");
    leader.persisted(write.generation);
    assert_eq!(
        leader.snapshot_to_apply(),
        None,
        "its own snapshot is not applied again"
    );
}

#[test]
fn a_heartbeat_after_compaction_past_the_match_index_sends_no_snapshot() {
    // Follower 2 has acknowledged index 2 of the 8 streamed to it when the leader compacts to 5
    // (follower 1 holds everything): its heartbeat names index 8, the end of what was sent,
    // rather than sending the snapshot it does not need.
    let mut leader = replicating_leader(3, CoreConfig::default());
    let due = leader.next_deadline();
    leader.propose(0, commands(8));
    persist(&mut leader);
    leader.step(0, 1, ack(1, 8));
    leader.step(0, 2, ack(1, 2));
    apply_all(&mut leader);
    assert!(leader.compact(5, Bytes::from_static(b"state at 5")));
    drain(&mut leader);
    leader.tick(due);
    let sent = drain(&mut leader);
    assert!(snapshots_to(&sent, 2).is_empty(), "{sent:?}");
    let heartbeat = appends_to(&sent, 2);
    assert_eq!(heartbeat.len(), 1, "{sent:?}");
    assert!(heartbeat[0].entries.is_empty());
    assert_eq!(heartbeat[0].prev_log_index, 8);
    assert_eq!(
        leader.progress(2).map(|p| p.state),
        Some(ProgressState::Replicate)
    );
}

#[test]
fn a_follower_behind_the_snapshot_gets_it_in_chunks_one_at_a_time() {
    let config = CoreConfig {
        max_snapshot_chunk: 4,
        ..CoreConfig::default()
    };
    let mut leader = replicating_leader(3, config);
    leader.propose(0, commands(8));
    persist(&mut leader);
    leader.step(0, 1, ack(1, 8));
    apply_all(&mut leader);
    assert!(leader.compact(5, Bytes::from_static(b"0123456789")));
    drain(&mut leader);

    // Follower 2 knew nothing: its rejection sends it back before the snapshot.
    let mut follower = new_core(2, 3);
    leader.step(0, 2, reject(1, 8, 0, 1));
    let sent = drain(&mut leader);
    let chunks = snapshots_to(&sent, 2);
    assert_eq!(chunks.len(), 1, "one chunk at a time: {sent:?}");
    assert_eq!(
        leader.progress(2).map(|p| p.state),
        Some(ProgressState::Snapshot)
    );
    let mut offsets = Vec::new();
    let mut chunk = chunks[0].clone();
    loop {
        offsets.push((chunk.offset, chunk.data.len(), chunk.done));
        assert_eq!(
            (chunk.last_included_index, chunk.last_included_term),
            (5, 1)
        );
        follower.step(0, 0, Message::InstallSnapshot(chunk.clone()));
        let replies = drain(&mut follower);
        let [(0, Message::InstallSnapshotReply(reply))] = replies.as_slice() else {
            panic!("expected one InstallSnapshotReply: {replies:?}");
        };
        assert_eq!(reply.installed, chunk.done);
        leader.step(0, 2, Message::InstallSnapshotReply(reply.clone()));
        let sent = drain(&mut leader);
        if chunk.done {
            // Installed: the leader probes from just after the snapshot.
            let appends = appends_to(&sent, 2);
            assert_eq!(appends.len(), 1, "{sent:?}");
            assert_eq!(
                (appends[0].prev_log_index, appends[0].prev_log_term),
                (5, 1)
            );
            assert_eq!(entry_terms(&appends[0].entries), [1, 1, 1]);
            break;
        }
        chunk = snapshots_to(&sent, 2).pop().expect("the next chunk");
    }
    assert_eq!(offsets, [(0, 4, false), (4, 4, false), (8, 2, true)]);
    assert_eq!(follower.commit_index(), 5);
    let snapshot = follower.snapshot_to_apply().expect("for the service");
    assert_eq!(
        (snapshot.index, &snapshot.data[..]),
        (5, &b"0123456789"[..])
    );
    assert_eq!(
        follower.apply_range(),
        None,
        "nothing applied before the snapshot"
    );
    follower.snapshot_applied();
    assert_eq!(follower.last_applied(), 5);
}

#[test]
fn install_keeps_a_matching_suffix_and_drops_a_conflicting_log() {
    let snapshot = |term| {
        Message::InstallSnapshot(InstallSnapshot {
            term: 3,
            last_included_index: 3,
            last_included_term: term,
            offset: 0,
            data: Bytes::from_static(b"s"),
            done: true,
            round: 0,
        })
    };
    // (follower log, snapshot's last term, want log after, want a truncation stored)
    type Case<'a> = (&'a [u64], u64, &'a [u64], Option<u64>);
    let cases: [Case<'_>; 3] = [
        (&[1, 1, 1, 2, 2], 1, &[2, 2], None),
        (&[1, 1, 2, 2, 2], 1, &[], Some(4)),
        (&[1], 1, &[], None),
    ];
    for (case, (log, snapshot_term, want, truncation)) in cases.into_iter().enumerate() {
        let mut follower = new_core(1, 3);
        give_log(&mut follower, 2, log);
        follower.step(0, 0, snapshot(snapshot_term));
        let write = follower.take_persist().expect("the snapshot to store");
        assert!(write.snapshot, "case {case}");
        assert_eq!(write.truncate_from, truncation, "case {case}: truncation");
        assert!(
            !follower.has_messages(),
            "case {case}: no answer before it is durable"
        );
        follower.persisted(write.generation);
        let replies: Vec<_> = follower.take_messages().collect();
        assert!(
            matches!(replies.as_slice(), [(0, Message::InstallSnapshotReply(r))] if r.installed),
            "case {case}: {replies:?}"
        );
        assert_eq!(follower.log().offset(), 3, "case {case}");
        let kept: Vec<u64> = (4..=follower.log().last_index())
            .map(|i| follower.log().term(i).expect("held"))
            .collect();
        assert_eq!(kept, want, "case {case}: log after the snapshot");
    }
}

#[test]
fn a_snapshot_a_follower_has_committed_past_is_not_installed() {
    let mut follower = new_core(1, 2);
    give_log(&mut follower, 0, &[1, 1, 1, 1]);
    follower.step(0, 0, append(1, (4, 1), &[], 4));
    drain(&mut follower);
    follower.step(
        0,
        0,
        Message::InstallSnapshot(InstallSnapshot {
            term: 1,
            last_included_index: 3,
            last_included_term: 1,
            offset: 0,
            data: Bytes::from_static(b"old"),
            done: true,
            round: 0,
        }),
    );
    let replies = drain(&mut follower);
    assert!(
        matches!(replies.as_slice(), [(0, Message::InstallSnapshotReply(r))] if r.installed),
        "{replies:?}"
    );
    assert_eq!(
        (follower.log().offset(), follower.log().last_index()),
        (0, 4)
    );
    assert_eq!(follower.snapshot_to_apply(), None);
}

#[test]
fn a_chunk_out_of_order_asks_for_the_one_needed() {
    let chunk = |offset, data: &'static [u8], done| {
        Message::InstallSnapshot(InstallSnapshot {
            term: 1,
            last_included_index: 9,
            last_included_term: 1,
            offset,
            data: Bytes::from_static(data),
            done,
            round: 0,
        })
    };
    let next_offset = |follower: &mut Core| match drain(follower).as_slice() {
        [(0, Message::InstallSnapshotReply(r))] => (r.next_offset, r.installed),
        other => panic!("expected one InstallSnapshotReply: {other:?}"),
    };
    let mut follower = new_core(1, 2);
    follower.step(0, 0, chunk(4, b"4567", false));
    assert_eq!(
        next_offset(&mut follower),
        (0, false),
        "a transfer starts at 0"
    );
    follower.step(0, 0, chunk(0, b"0123", false));
    assert_eq!(next_offset(&mut follower), (4, false));
    follower.step(0, 0, chunk(0, b"0123", false));
    assert_eq!(
        next_offset(&mut follower),
        (4, false),
        "a duplicate changes nothing"
    );
    follower.step(0, 0, chunk(8, b"89", true));
    assert_eq!(next_offset(&mut follower), (4, false), "a gap asks again");
    follower.step(0, 0, chunk(4, b"4567", false));
    follower.step(0, 0, chunk(8, b"89", true));
    let replies = drain(&mut follower);
    assert_eq!(replies.len(), 2);
    let data = follower
        .snapshot_to_apply()
        .expect("installed")
        .data
        .clone();
    assert_eq!(&data[..], b"0123456789");
}

#[test]
fn chunks_of_another_leaders_snapshot_do_not_mix() {
    let chunk = |term, offset, data: &'static [u8], done| {
        Message::InstallSnapshot(InstallSnapshot {
            term,
            last_included_index: 9,
            last_included_term: 1,
            offset,
            data: Bytes::from_static(data),
            done,
            round: 0,
        })
    };
    let mut follower = new_core(2, 3);
    follower.step(0, 0, chunk(1, 0, b"abcd", false));
    drain(&mut follower);
    // Leader 1 of term 2 sends the same snapshot (index and term), serialized otherwise: its
    // second chunk must not complete leader 0's first.
    follower.step(0, 1, chunk(2, 4, b"WXYZ", true));
    let replies = drain(&mut follower);
    assert!(
        matches!(
            replies.as_slice(),
            [(1, Message::InstallSnapshotReply(r))] if r.next_offset == 0 && !r.installed
        ),
        "{replies:?}"
    );
    follower.step(0, 1, chunk(2, 0, b"STUV", false));
    follower.step(0, 1, chunk(2, 4, b"WXYZ", true));
    drain(&mut follower);
    let data = follower
        .snapshot_to_apply()
        .expect("installed")
        .data
        .clone();
    assert_eq!(&data[..], b"STUVWXYZ");
}

#[test]
fn an_append_reaching_back_before_the_snapshot_checks_from_it() {
    let mut follower = new_core(1, 2);
    give_log(&mut follower, 0, &[1, 1, 1, 1]);
    follower.step(0, 0, append(1, (4, 1), &[], 4));
    drain(&mut follower);
    apply_all(&mut follower);
    assert!(follower.compact(3, Bytes::from_static(b"s")));
    drain(&mut follower);
    // A late AppendEntries from index 1 carrying entries 2 to 6.
    follower.step(0, 0, append(1, (1, 1), &[1, 1, 1, 1, 1], 4));
    let reply = the_append_reply(&drain(&mut follower), 0);
    assert_eq!((reply.success, reply.index), (true, 6));
    assert_eq!(follower.log().last_index(), 6);
    // One entirely below the snapshot.
    follower.step(0, 0, append(1, (0, 0), &[1, 1], 4));
    let reply = the_append_reply(&drain(&mut follower), 0);
    assert_eq!((reply.success, reply.index), (true, 2));
}

/// A leader of 3 with 4 entries, compacted into a snapshot holding `data`, which it sends in
/// chunks of 4 bytes to follower 2, who holds nothing: its first chunk is sent and drained.
fn leader_sending_snapshot_to_2(data: &'static [u8]) -> Core {
    let config = CoreConfig {
        max_snapshot_chunk: 4,
        ..CoreConfig::default()
    };
    let mut leader = replicating_leader(3, config);
    leader.propose(0, commands(4));
    persist(&mut leader);
    leader.step(0, 1, ack(1, 4));
    apply_all(&mut leader);
    assert!(leader.compact(4, Bytes::from_static(data)));
    drain(&mut leader);
    leader.step(0, 2, reject(1, 4, 0, 1));
    assert_eq!(snapshots_to(&drain(&mut leader), 2).len(), 1);
    leader
}

#[test]
fn a_heartbeat_sends_the_outstanding_chunk_again() {
    let mut leader = leader_sending_snapshot_to_2(b"abcdefgh");
    assert!(quiet(&mut leader), "one chunk outstanding: nothing more");
    // Well past the heartbeat deadline.
    leader.tick(60_000 * MS);
    let again = snapshots_to(&drain(&mut leader), 2);
    assert_eq!(again.len(), 1, "the chunk again, as a heartbeat");
    assert_eq!(again[0].offset, 0);
}

#[test]
fn duplicated_chunk_replies_send_no_extra_chunks() {
    let mut leader = leader_sending_snapshot_to_2(b"abcdefghij");
    let has = |next_offset| {
        Message::InstallSnapshotReply(InstallSnapshotReply {
            term: 1,
            last_included_index: 4,
            next_offset,
            installed: false,
            round: 0,
        })
    };
    // The first chunk's answer, three times over (the network duplicated it): one next chunk.
    let mut sent = Vec::new();
    for _ in 0..3 {
        leader.step(0, 2, has(4));
        sent.extend(snapshots_to(&drain(&mut leader), 2));
    }
    let offsets: Vec<u64> = sent.iter().map(|c| c.offset).collect();
    assert_eq!(offsets, [4], "one chunk per answer that moves the transfer");
    // The follower restarted and lost the chunks: it asks from the start again.
    leader.step(0, 2, has(0));
    let again = snapshots_to(&drain(&mut leader), 2);
    assert_eq!(again.iter().map(|c| c.offset).collect::<Vec<_>>(), [0]);
}

#[test]
fn a_node_restarts_from_its_snapshot() {
    let recovered = Recovered {
        hard_state: HardState {
            term: 3,
            voted_for: None,
        },
        snapshot: Some(Snapshot {
            index: 10,
            term: 2,
            data: Bytes::from_static(b"state at 10"),
        }),
        entries: vec![
            Entry {
                term: 3,
                command: cmd(3, 11),
            };
            2
        ],
    };
    let mut core = Core::restore(1, 3, CoreConfig::default(), 5, 0, recovered);
    assert_eq!((core.log().offset(), core.log().last_index()), (10, 12));
    assert_eq!((core.commit_index(), core.last_applied()), (10, 10));
    assert_eq!(
        core.snapshot_to_apply().map(|s| &s.data[..]),
        Some(&b"state at 10"[..])
    );
    core.snapshot_applied();
    assert_eq!(core.snapshot_to_apply(), None);
    // The leader's AppendEntries right after the snapshot matches its last term.
    core.step(0, 0, append(3, (10, 2), &[3, 3, 3], 12));
    let reply = the_append_reply(&drain(&mut core), 0);
    assert_eq!((reply.success, reply.index), (true, 13));
    assert_eq!(core.apply_range(), Some((11, 12)));
}

// ---- PreVote and CheckQuorum -------------------------------------------------------------------

fn pre_vote(term: u64, last_log_index: u64, last_log_term: u64) -> Message {
    Message::PreVote(RequestVote {
        term,
        last_log_index,
        last_log_term,
        transfer: false,
    })
}

fn pre_vote_reply(term: u64, granted: bool) -> Message {
    Message::PreVoteReply(RequestVoteReply { term, granted })
}

/// The defaults with `pre_vote` and `check_quorum` as given.
fn config_with(pre_vote: bool, check_quorum: bool) -> CoreConfig {
    CoreConfig {
        pre_vote,
        check_quorum,
        ..CoreConfig::default()
    }
}

/// The one reply in `msgs`, which must be a single PreVoteReply to `to`.
fn the_pre_vote_reply(msgs: &[(usize, Message)], to: usize) -> RequestVoteReply {
    match msgs {
        [(t, Message::PreVoteReply(r))] if *t == to => r.clone(),
        other => panic!("expected one PreVoteReply to {to}, got {other:?}"),
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

#[test]
fn the_defaults_have_pre_vote_and_check_quorum_off() {
    let config = CoreConfig::default();
    assert!(!config.pre_vote && !config.check_quorum && !config.leader_no_op);
    let production = CoreConfig {
        leader_no_op: true,
        ..config_with(true, true)
    };
    assert_eq!(CoreConfig::production(), production);
}

#[test]
fn with_pre_vote_a_timeout_asks_for_pre_votes_and_changes_no_term() {
    // (log held before the timeout, term before, want PreVote last index, last term)
    let cases: [(&[u64], u64, u64, u64); 3] =
        [(&[], 0, 0, 0), (&[1, 1, 2], 2, 3, 2), (&[4], 4, 1, 4)];
    for (case, (terms, term_before, last_index, last_term)) in cases.into_iter().enumerate() {
        let mut core = Core::new(0, 3, config_with(true, false), 7, 0);
        give_log(&mut core, 2, terms);
        let vote_before = core.voted_for();
        let deadline = core.next_deadline();
        core.tick(deadline);
        assert_eq!(core.role(), Role::Follower, "case {case}: role");
        assert!(core.is_pre_candidate(), "case {case}: pre-candidate");
        assert_eq!(core.term(), term_before, "case {case}: term kept");
        assert_eq!(core.voted_for(), vote_before, "case {case}: vote kept");
        assert_eq!(core.leader(), None, "case {case}: no leader known");
        assert_eq!(
            core.stats().elections_started,
            0,
            "case {case}: no election"
        );
        assert!(
            core.take_persist().is_none(),
            "case {case}: nothing to write"
        );
        let want = pre_vote(term_before + 1, last_index, last_term);
        assert_eq!(
            core.take_messages().collect::<Vec<_>>(),
            vec![(1, want.clone()), (2, want)],
            "case {case}: PreVote to every other node, at once"
        );
        assert!(
            core.next_deadline() > deadline,
            "case {case}: a new timeout for the next round"
        );
    }
}

#[test]
fn a_majority_of_pre_votes_starts_the_real_election() {
    // (peers, replies in order as (from, reply), how many replies until a candidate or None)
    type Case = (usize, &'static [(usize, (u64, bool))], Option<usize>);
    let cases: [Case; 5] = [
        (3, &[(1, (1, true))], Some(1)),
        (3, &[(1, (0, false)), (2, (1, true))], Some(2)),
        (
            5,
            &[(1, (1, true)), (1, (1, true)), (2, (1, true))],
            Some(3),
        ),
        // A grant for another term than the one asked about counts for nothing.
        (3, &[(1, (2, true)), (2, (0, true))], None),
        (5, &[(1, (1, true)), (2, (0, false)), (3, (0, false))], None),
    ];
    for (case, (peers, replies, want)) in cases.into_iter().enumerate() {
        let mut core = Core::new(0, peers, config_with(true, false), 7, 0);
        let deadline = core.next_deadline();
        core.tick(deadline);
        drain(&mut core);
        let mut became = None;
        for (k, &(from, (term, granted))) in replies.iter().enumerate() {
            core.step(deadline, from, pre_vote_reply(term, granted));
            if became.is_none() && core.role() == Role::Candidate {
                became = Some(k + 1);
            }
        }
        assert_eq!(became, want, "case {case}: replies until candidate");
        if want.is_some() {
            assert_eq!(core.term(), 1, "case {case}: term + 1");
            assert_eq!(core.voted_for(), Some(0), "case {case}: votes for itself");
            assert!(!core.is_pre_candidate(), "case {case}");
            let sent = drain(&mut core);
            assert_eq!(sent.len(), peers - 1, "case {case}: {sent:?}");
            assert!(
                sent.iter().all(|(_, m)| *m == request_vote(1, 0, 0)),
                "case {case}: RequestVote to every other node: {sent:?}"
            );
        } else {
            assert_eq!(core.term(), 0, "case {case}: term kept");
            assert!(core.is_pre_candidate(), "case {case}: still asking");
        }
    }
}

#[test]
fn a_single_node_with_pre_vote_elects_itself() {
    let mut core = Core::new(0, 1, config_with(true, true), 7, 0);
    let deadline = core.next_deadline();
    core.tick(deadline);
    assert_eq!((core.role(), core.term()), (Role::Leader, 1));
}

#[test]
fn pre_votes_are_granted_as_votes_would_be_unless_the_leader_is_alive() {
    // The receiver, node 0 of 3, holds [1 1 2]; it is set up as `setup` says, at time 0.
    // Node 1 then asks at time `at` for a pre-vote for `term` with its last entry `last`.
    #[derive(Clone, Copy, Debug)]
    enum Setup {
        /// A follower of term 2 whose leader, node 2, it last heard at time 0.
        Follower,
        /// The same, having voted for node 2 in term 2 before hearing from it.
        VotedFor2,
        /// A follower of term 2 that never knew a leader of term 2.
        Leaderless,
        /// Leader of term 3.
        Leader,
    }
    // (setup, at, term, last (index, term), want granted, want reply term)
    let cases = [
        (Setup::Leaderless, 0, 3, (3, 2), true, 3),
        (Setup::Leaderless, 0, 3, (9, 2), true, 3),
        (Setup::Leaderless, 0, 3, (1, 3), true, 3),
        (Setup::Leaderless, 0, 3, (2, 2), false, 2), // log behind
        (Setup::Leaderless, 0, 3, (9, 1), false, 2), // log behind
        (Setup::Leaderless, 0, 2, (3, 2), true, 2),  // this term, no vote yet
        (Setup::Leaderless, 0, 1, (3, 2), false, 2), // an earlier term
        (Setup::Follower, 299 * MS, 3, (3, 2), false, 2), // the leader is alive
        (Setup::Follower, 300 * MS, 3, (3, 2), true, 3), // not heard within the minimum
        (Setup::VotedFor2, 300 * MS, 2, (3, 2), false, 2), // voted for another in term 2
        (Setup::VotedFor2, 300 * MS, 3, (3, 2), true, 3),
        (Setup::Leader, 10 * MS, 4, (3, 2), false, 3), // a leader never grants
        (Setup::Leader, 900 * MS, 9, (9, 3), false, 3),
    ];
    for (case, (setup, at, term, last, granted, reply_term)) in cases.into_iter().enumerate() {
        let mut core = Core::new(0, 3, config_with(true, false), 7, 0);
        give_log(&mut core, 2, &[1, 1, 2]);
        let restored = |voted_for| {
            let recovered = Recovered {
                hard_state: HardState { term: 2, voted_for },
                snapshot: None,
                entries: [1, 1, 2]
                    .iter()
                    .zip(1..)
                    .map(|(&term, index)| Entry {
                        term,
                        command: cmd(term, index),
                    })
                    .collect(),
            };
            Core::restore(0, 3, config_with(true, false), 7, 0, recovered)
        };
        match setup {
            Setup::Follower => {}
            Setup::VotedFor2 => {
                core = restored(Some(2));
                core.step(0, 2, append(2, (3, 2), &[], 0));
                drain(&mut core);
            }
            Setup::Leaderless => core = restored(None),
            Setup::Leader => {
                let deadline = core.next_deadline();
                core.tick(deadline);
                core.step(0, 1, pre_vote_reply(3, true));
                core.step(0, 1, vote(3, true));
                assert_eq!(core.role(), Role::Leader, "case {case}: set up a leader");
                drain(&mut core);
            }
        }
        let before = (core.term(), core.voted_for(), core.role());
        let deadline = core.next_deadline();
        core.step(at, 1, pre_vote(term, last.0, last.1));
        assert!(
            core.take_persist().is_none(),
            "case {case} ({setup:?}): nothing to write"
        );
        let reply = the_pre_vote_reply(&core.take_messages().collect::<Vec<_>>(), 1);
        assert_eq!(reply.granted, granted, "case {case} ({setup:?}): granted");
        assert_eq!(
            reply.term, reply_term,
            "case {case} ({setup:?}): reply term"
        );
        assert_eq!(
            (core.term(), core.voted_for(), core.role()),
            before,
            "case {case} ({setup:?}): term, vote and role unchanged"
        );
        assert_eq!(
            core.next_deadline(),
            deadline,
            "case {case} ({setup:?}): timer unchanged"
        );
    }
}

#[test]
fn pre_vote_replies_move_a_pre_candidate_only_to_a_real_term() {
    // A pre-candidate of term 2 (asking about term 3) gets one reply from node 1.
    // (reply, want term, want still pre-candidate)
    let cases = [
        (pre_vote_reply(3, true), 2, true), // a grant echoes the term asked about
        (pre_vote_reply(9, true), 2, true), // a grant of a term never asked about: ignored
        (pre_vote_reply(2, false), 2, true),
        (pre_vote_reply(5, false), 5, false), // a refusal of term 5: that term exists
    ];
    for (case, (reply, want_term, want_pre)) in cases.into_iter().enumerate() {
        let mut core = Core::new(0, 5, config_with(true, false), 7, 0);
        give_log(&mut core, 2, &[2]);
        let deadline = core.next_deadline();
        core.tick(deadline);
        drain(&mut core);
        assert!(core.is_pre_candidate(), "case {case}: set up");
        core.step(deadline, 1, reply);
        assert_eq!(core.term(), want_term, "case {case}: term");
        assert_eq!(core.role(), Role::Follower, "case {case}: role");
        assert_eq!(
            core.is_pre_candidate(),
            want_pre,
            "case {case}: pre-candidate"
        );
    }
}

#[test]
fn pre_votes_of_any_term_never_make_a_node_step_down() {
    for role in [Role::Follower, Role::Candidate, Role::Leader] {
        let mut core = Core::new(0, 3, config_with(true, false), 7, 0);
        match role {
            Role::Follower => give_log(&mut core, 2, &[1]),
            Role::Candidate => {
                // With PreVote a candidate comes from winning pre-votes.
                let deadline = core.next_deadline();
                core.tick(deadline);
                core.step(deadline, 1, pre_vote_reply(1, true));
            }
            Role::Leader => {
                let deadline = core.next_deadline();
                core.tick(deadline);
                core.step(deadline, 1, pre_vote_reply(1, true));
                core.step(deadline, 1, vote(1, true));
            }
        }
        assert_eq!(core.role(), role, "{role:?}: set up");
        drain(&mut core);
        let term = core.term();
        for (from, msg) in [
            (1, pre_vote(term + 5, 100, term + 4)),
            (2, pre_vote_reply(term + 5, true)),
        ] {
            core.step(core.now, from, msg);
            drain(&mut core);
            assert_eq!(core.role(), role, "{role:?}: role kept");
            assert_eq!(core.term(), term, "{role:?}: term kept");
        }
    }
}

#[test]
fn an_isolated_node_with_pre_vote_keeps_its_term_and_rejoins_without_deposing_the_leader() {
    // (pre_vote, want the isolated node's term to stay put)
    for (case, (pre_vote, stays)) in [(true, true), (false, false)].into_iter().enumerate() {
        let mut sim = Sim::with_config(3, &config_with(pre_vote, false));
        let term = sim.elect_first(0);
        let et = CoreConfig::default().election_timeout_max;

        // Node 2 is cut off for ten election timeouts; the others go on without it.
        sim.run_until(sim.now + 10 * et, &[2], |sim| {
            assert_eq!(sim.leaders(), vec![0], "case {case}: the leader stays");
        });
        let isolated_term = sim.cores[2].term();
        assert_eq!(
            isolated_term == term,
            stays,
            "case {case}: term {isolated_term} while isolated (leader's {term})"
        );
        if !stays {
            continue; // plain Raft: on rejoin the higher term deposes the leader
        }

        // It comes back: the leader keeps its term, and node 2 follows it.
        sim.run_until(sim.now + 10 * et, &[], |sim| {
            assert_eq!(sim.leaders(), vec![0], "case {case}: the leader stays");
            assert!(
                sim.cores.iter().all(|c| c.term() == term),
                "case {case}: no node raises the term"
            );
        });
        assert_eq!(sim.cores[2].leader(), Some(0), "case {case}: follows again");
        assert_eq!(sim.cores[0].stats().step_downs, 0, "case {case}");
    }
}

#[test]
fn without_pre_vote_an_isolated_node_deposes_the_leader_when_it_rejoins() {
    // The counterpart of the test above, so that it shows what PreVote prevents.
    let mut sim = Sim::with_config(3, &CoreConfig::default());
    let term = sim.elect_first(0);
    let et = CoreConfig::default().election_timeout_max;
    sim.run_until(sim.now + 10 * et, &[2], |_| {});
    assert!(sim.cores[2].term() > term);
    sim.run_until(sim.now + 10 * et, &[], |_| {});
    assert_eq!(sim.cores[0].stats().step_downs, 1, "deposed");
    assert!(sim.cores.iter().all(|c| c.term() > term));
}

#[test]
fn with_check_quorum_a_leader_cut_off_from_the_majority_steps_down_within_two_timeouts() {
    // (peers, nodes cut off, check_quorum, want a step-down)
    let cases = [
        (3, &[0][..], true, true),
        (5, &[0, 1][..], true, true),
        (5, &[0][..], true, true),
        (5, &[0, 1][..], false, false), // the defaults: it leads on
        (3, &[][..], true, false),      // nobody cut off: it leads on
        (5, &[1, 2][..], true, false),  // a majority still hears it
    ];
    for (case, &(peers, cut, check_quorum, steps_down)) in cases.iter().enumerate() {
        let config = config_with(false, check_quorum);
        let min = config.election_timeout_min;
        let mut sim = Sim::with_config(peers, &config);
        let term = sim.elect_first(0);
        // A while with everyone connected, so the cut lands between two checks.
        sim.run_until(sim.now + 7 * min / 3, &[], |_| {});
        assert_eq!(sim.leaders(), vec![0], "case {case}: leads while connected");

        // Every message to or from a node in `cut` is lost from now on.
        let cut_at = sim.now;
        let mut stepped_down_at = None;
        sim.run_until(cut_at + 4 * min, cut, |sim| {
            if stepped_down_at.is_none() && sim.cores[0].role() != Role::Leader {
                stepped_down_at = Some((sim.now, sim.cores[0].term()));
            }
        });
        match stepped_down_at {
            Some((at, term_then)) => {
                assert!(steps_down, "case {case}: stepped down at {at}");
                assert!(
                    at <= cut_at + 2 * min,
                    "case {case}: stepped down {} ms after the cut",
                    (at - cut_at) / MS
                );
                assert_eq!(sim.cores[0].stats().step_downs, 1, "case {case}");
                assert_eq!(term_then, term, "case {case}: in its term");
            }
            None => assert!(!steps_down, "case {case}: still leads"),
        }
    }
}

#[test]
fn with_check_quorum_a_node_that_hears_its_leader_ignores_request_vote() {
    // Node 0 of 3 follows node 2 of term 1 (heard at time 0), or leads term 1.
    // (check_quorum, leads, at, request term, want answered, want term after)
    let cases = [
        (true, false, 299 * MS, 5, false, 1), // the leader is alive: ignored
        (true, false, 299 * MS, 1, false, 1),
        (true, false, 300 * MS, 5, true, 5), // not heard within the minimum: as usual
        (false, false, 0, 5, true, 5),       // the defaults: as usual
        (true, true, 10 * MS, 5, false, 1),  // a leader ignores it too
        (false, true, 10 * MS, 5, true, 5),
    ];
    for (case, (check_quorum, leads, at, term, answered, want_term)) in
        cases.into_iter().enumerate()
    {
        let mut core = Core::new(0, 3, config_with(false, check_quorum), 7, 0);
        if leads {
            elect(&mut core, 1);
        } else {
            give_log(&mut core, 2, &[1]);
        }
        core.step(at, 1, request_vote(term, 5, 1));
        let sent = drain(&mut core);
        assert_eq!(!sent.is_empty(), answered, "case {case}: answered {sent:?}");
        if answered {
            assert!(the_vote_reply(&sent, 1).granted, "case {case}: granted");
        }
        assert_eq!(core.term(), want_term, "case {case}: term");
        assert_eq!(
            core.role() == Role::Leader,
            leads && !answered,
            "case {case}: role"
        );
    }
}

#[test]
fn production_settings_elect_a_leader_and_replicate() {
    let mut sim = Sim::with_config(5, &CoreConfig::production());
    let term = sim.elect_first(3);
    assert_eq!(term, 1, "one pre-vote round, one election");
    // The leader's no-op entry takes index 1.
    let range = sim.cores[3].propose(sim.now, commands(3));
    assert_eq!(range, Some((2, 4)));
    sim.collect();
    sim.settle(&[]);
    let et = CoreConfig::default().election_timeout_max;
    sim.run_until(sim.now + 5 * et, &[], |sim| {
        assert_eq!(sim.leaders(), vec![3], "a connected leader stays");
    });
    assert!(
        sim.cores
            .iter()
            .all(|c| c.commit_index() == 4 && c.term() == 1)
    );
    assert!(sim.cores[0].log().entry(1).unwrap().command.is_empty());
}

// ---- linearizable reads, leases and leadership transfer ----------------------------------------

/// The outcomes `core` has for the driver.
fn outcomes(core: &mut Core) -> Vec<ReadOutcome> {
    core.take_read_outcomes().collect()
}

/// A 3-node cluster with production settings, node 0 elected and its no-op committed everywhere.
fn production_cluster() -> Sim {
    let mut sim = Sim::with_config(3, &CoreConfig::production());
    sim.elect_first(0);
    sim.settle(&[]);
    assert_eq!(sim.cores[0].commit_index(), 1, "the no-op committed");
    sim
}

#[test]
fn a_read_is_confirmed_only_by_answers_to_a_round_started_after_it() {
    let mut sim = production_cluster();
    let now = sim.now;
    // Messages sent before the read, answered after it: they prove nothing about the read.
    sim.cores[0].propose(now, commands(1));
    sim.collect();
    let before: Vec<_> = sim.queue.drain(..).collect();
    sim.cores[0].read_index(now, [7]);
    assert!(outcomes(&mut sim.cores[0]).is_empty(), "not at once");
    sim.collect();
    let round: Vec<_> = sim.queue.drain(..).collect();
    assert!(
        round
            .iter()
            .filter(|(_, _, m)| matches!(m, Message::AppendEntries(_)))
            .count()
            == 2,
        "the read starts a round to both followers: {round:?}"
    );
    sim.queue.extend(before);
    sim.settle(&[]);
    assert!(
        outcomes(&mut sim.cores[0]).is_empty(),
        "answers to earlier messages do not confirm the read"
    );
    // Only node 1 answers the round: with the leader, a majority of three.
    sim.queue.extend(round);
    sim.settle(&[2]);
    assert_eq!(
        outcomes(&mut sim.cores[0]),
        vec![ReadOutcome {
            id: 7,
            index: Some(1)
        }],
        "confirmed with the commit index when it was asked for"
    );
    assert_eq!(sim.cores[0].stats().reads_confirmed, 1);
}

#[test]
fn reads_wait_for_the_leader_to_commit_an_entry_of_its_term() {
    // Without the no-op, a new leader's commit index may lag what earlier leaders committed.
    let mut sim = Sim::with_config(3, &config_with(false, true));
    sim.elect_first(0);
    sim.settle(&[]);
    assert_eq!(sim.cores[0].commit_index(), 0);
    let now = sim.now;
    sim.cores[0].read_index(now, [1, 2]);
    sim.collect();
    sim.settle(&[]);
    assert!(
        outcomes(&mut sim.cores[0]).is_empty(),
        "the round is answered, but nothing of term 1 is committed"
    );
    sim.cores[0].propose(now, commands(2));
    sim.collect();
    sim.settle(&[]);
    let want = |id| ReadOutcome { id, index: Some(2) };
    assert_eq!(outcomes(&mut sim.cores[0]), vec![want(1), want(2)]);
}

#[test]
fn reads_are_refused_by_followers_and_by_a_leader_that_steps_down() {
    let mut sim = production_cluster();
    let now = sim.now;
    sim.cores[1].read_index(now, [3]);
    sim.cores[1].read_lease(now, [4]);
    assert_eq!(
        outcomes(&mut sim.cores[1]),
        vec![
            ReadOutcome { id: 3, index: None },
            ReadOutcome { id: 4, index: None }
        ]
    );
    // The leader, cut off, cannot confirm; when it steps down (CheckQuorum) it refuses.
    sim.cores[0].read_index(now, [5]);
    sim.collect();
    let et = CoreConfig::default().election_timeout_min;
    sim.run_until(now + 2 * et + 1, &[0], |_| {});
    assert_ne!(sim.cores[0].role(), Role::Leader);
    assert_eq!(
        outcomes(&mut sim.cores[0]),
        vec![ReadOutcome { id: 5, index: None }]
    );
    assert_eq!(sim.cores[0].pending_reads(), 0);
}

#[test]
fn a_cluster_of_one_confirms_reads_at_once() {
    let mut core = Core::new(0, 1, CoreConfig::production(), 1, 0);
    core.tick(core.next_deadline());
    assert_eq!(core.role(), Role::Leader);
    persist(&mut core);
    assert_eq!(core.commit_index(), 1);
    core.read_index(core.next_deadline() - 1, [9]);
    assert_eq!(
        outcomes(&mut core),
        vec![ReadOutcome {
            id: 9,
            index: Some(1)
        }]
    );
}

#[test]
fn a_lease_serves_reads_without_a_round_until_it_expires() {
    let mut sim = production_cluster();
    let config = CoreConfig::production();
    assert!(
        sim.cores[0].has_lease(),
        "a majority answered the first round"
    );
    let start = sim.now;
    sim.cores[0].read_lease(start, [1]);
    assert_eq!(
        outcomes(&mut sim.cores[0]),
        vec![ReadOutcome {
            id: 1,
            index: Some(1)
        }]
    );
    assert!(quiet(&mut sim.cores[0]), "no round for a lease read");
    assert_eq!(sim.cores[0].stats().lease_reads, 1);
    // Cut off: heartbeats go unanswered, and the lease runs out within its duration.
    sim.run_until(start + config.lease_duration(), &[0], |_| {});
    assert_eq!(sim.cores[0].role(), Role::Leader, "not yet stepped down");
    let now = sim.now;
    sim.cores[0].read_lease(now, [2]);
    assert!(!sim.cores[0].has_lease());
    assert!(outcomes(&mut sim.cores[0]).is_empty(), "a ReadIndex now");
    assert_eq!(sim.cores[0].pending_reads(), 1);
    assert!(!quiet(&mut sim.cores[0]), "with a round of its own");
}

#[test]
fn there_is_no_lease_without_check_quorum() {
    let config = CoreConfig {
        leader_no_op: true,
        ..config_with(true, false)
    };
    let mut sim = Sim::with_config(3, &config);
    sim.elect_first(0);
    sim.settle(&[]);
    assert!(!sim.cores[0].has_lease());
    let now = sim.now;
    sim.cores[0].read_lease(now, [1]);
    assert!(outcomes(&mut sim.cores[0]).is_empty());
    sim.collect();
    sim.settle(&[]);
    assert_eq!(
        outcomes(&mut sim.cores[0]),
        vec![ReadOutcome {
            id: 1,
            index: Some(1)
        }]
    );
    assert_eq!(sim.cores[0].stats().lease_reads, 0);
}

#[test]
fn with_check_quorum_a_restarted_node_ignores_request_vote_for_an_election_timeout() {
    // Its last answer before the restart may be what the leader's lease counts on.
    let et = CoreConfig::default().election_timeout_min;
    for (check_quorum, at, answered) in [(true, et - 1, false), (true, et, true), (false, 0, true)]
    {
        let mut core = Core::new(0, 3, config_with(false, check_quorum), 7, 0);
        core.step(at, 1, request_vote(1, 0, 0));
        persist(&mut core);
        assert_eq!(
            !drain(&mut core).is_empty(),
            answered,
            "check_quorum {check_quorum}, at {at}"
        );
    }
}

#[test]
fn a_transfer_makes_a_caught_up_target_leader_though_the_others_hear_from_the_leader() {
    let mut sim = production_cluster();
    let now = sim.now;
    assert_eq!(
        sim.cores[0].transfer_leadership(now, 0),
        Err(TransferError::BadTarget)
    );
    assert_eq!(
        sim.cores[1].transfer_leadership(now, 2),
        Err(TransferError::NotLeader)
    );
    sim.cores[0].transfer_leadership(now, 1).unwrap();
    assert_eq!(sim.cores[0].transfer_target(), Some(1));
    assert_eq!(
        sim.cores[0].transfer_leadership(now, 2),
        Err(TransferError::InProgress(1))
    );
    assert_eq!(sim.cores[0].propose(now, commands(1)), None, "no proposals");
    assert!(!sim.cores[0].has_lease(), "the lease is given up");
    let sent = drain(&mut sim.cores[0]);
    assert!(
        matches!(
            sent.as_slice(),
            [(1, Message::TimeoutNow(TimeoutNow { term: 1 }))]
        ),
        "the target holds the log: TimeoutNow at once, got {sent:?}"
    );
    sim.queue.extend(sent.into_iter().map(|(to, m)| (0, to, m)));
    sim.settle(&[]);
    assert_eq!(
        sim.leaders(),
        vec![1],
        "node 2 voted though it heard from 0"
    );
    assert_eq!(sim.cores[1].term(), 2);
    assert_eq!(sim.cores[0].transfer_target(), None);
    assert_eq!(sim.cores[0].stats().transfers_abandoned, 0);
}

#[test]
fn a_transfer_waits_for_a_lagging_target_and_is_abandoned_after_an_election_timeout() {
    let mut sim = production_cluster();
    let now = sim.now;
    sim.cores[0].propose(now, commands(3));
    sim.collect();
    sim.settle(&[2]);
    sim.cores[0].transfer_leadership(now, 2).unwrap();
    sim.collect();
    assert!(
        !sim.queue
            .iter()
            .any(|(_, _, m)| matches!(m, Message::TimeoutNow(_))),
        "the target lacks entries: no TimeoutNow yet"
    );
    // The target stays cut off: the leader gives up after an election timeout.
    let et = CoreConfig::default().election_timeout_min;
    sim.run_until(now + et - 1, &[2], |_| {});
    assert_eq!(sim.cores[0].transfer_target(), Some(2));
    sim.run_until(now + et, &[2], |_| {});
    assert_eq!(sim.cores[0].transfer_target(), None);
    assert_eq!(sim.cores[0].role(), Role::Leader);
    assert_eq!(sim.cores[0].stats().transfers_abandoned, 1);
    assert!(
        sim.cores[0].propose(sim.now, commands(1)).is_some(),
        "proposals again"
    );
    assert!(
        !sim.cores[0].has_lease(),
        "no lease for the rest of the term"
    );
    // Once the target answers, a new transfer sends TimeoutNow when it has caught up.
    sim.queue.clear();
    sim.cores[0].transfer_leadership(sim.now, 2).unwrap();
    sim.collect();
    let hb = CoreConfig::default().heartbeat_interval;
    sim.run_until(sim.now + 2 * hb, &[], |_| {});
    assert_eq!(sim.leaders(), vec![2]);
    assert_eq!(sim.cores[2].term(), 2);
}

#[test]
fn timeout_now_is_obeyed_only_from_the_leader_of_the_current_term() {
    let mut sim = production_cluster();
    let now = sim.now;
    let stale = Message::TimeoutNow(TimeoutNow { term: 0 });
    sim.cores[1].step(now, 0, stale);
    let not_leader = Message::TimeoutNow(TimeoutNow { term: 1 });
    sim.cores[1].step(now, 2, not_leader);
    assert_eq!(sim.cores[1].role(), Role::Follower);
    assert_eq!(sim.cores[1].term(), 1);
}

#[test]
fn a_rejection_of_an_earlier_term_carries_no_round() {
    // Its round belongs to another leadership, maybe of the same node before a restart: counted
    // for the current one it would confirm reads and leases nobody vouched for.
    let mut follower = new_core(1, 3);
    follower.step(0, 2, append(2, (0, 0), &[], 0));
    drain(&mut follower);
    let mut old = match append(1, (0, 0), &[], 0) {
        Message::AppendEntries(m) => m,
        _ => unreachable!(),
    };
    old.round = 1000;
    follower.step(0, 0, Message::AppendEntries(old));
    let reply = the_append_reply(&drain(&mut follower), 0);
    assert_eq!((reply.term, reply.success, reply.round), (2, false, 0));
}

#[test]
fn with_check_quorum_a_node_that_heard_from_its_leader_ignores_votes_whatever_its_term() {
    // A stale reply of a higher term makes it a follower with no leader; the leader it answered
    // may still count on it for its lease.
    let mut core = Core::new(1, 3, CoreConfig::production(), 7, 0);
    let et = CoreConfig::production().election_timeout_min;
    core.step(et, 0, append(1, (0, 0), &[], 0));
    persist(&mut core);
    drain(&mut core);
    core.step(et + MS, 2, vote(2, false));
    assert_eq!((core.term(), core.leader()), (2, None));
    core.step(et + 2 * MS, 2, request_vote(3, 5, 1));
    persist(&mut core);
    assert!(drain(&mut core).is_empty(), "no vote");
    assert_eq!(core.term(), 2, "nor its term");
    // An election timeout after it last heard from its leader, it votes again.
    core.step(2 * et, 2, request_vote(3, 5, 1));
    persist(&mut core);
    assert!(the_vote_reply(&drain(&mut core), 2).granted);
}

#[test]
fn rounds_started_for_reads_do_not_take_batches_in_flight_for_lost() {
    let mut leader = replicating_leader(3, CoreConfig::default());
    leader.propose(0, commands(4));
    persist(&mut leader);
    drain(&mut leader);
    for id in 0..10 {
        leader.read_index(MS, [id]);
        let sent = drain(&mut leader);
        assert!(
            sent.iter()
                .all(|(_, m)| matches!(m, Message::AppendEntries(a) if a.entries.is_empty())),
            "read {id}: only empty AppendEntries, got {sent:?}"
        );
        for peer in [1, 2] {
            let pr = leader.progress(peer).unwrap();
            assert_eq!(pr.state, ProgressState::Replicate, "read {id}: peer {peer}");
        }
    }
}
