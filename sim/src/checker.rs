//! The invariant checker, run on a node after every event that reached it (a delivered message,
//! a timer, a proposal, a write that became durable, a restart), and on every crash.
//!
//! It keeps a ledger across the whole run, never forgetting, not even when nodes crash:
//!
//! - `leaders[term]`: who led each term, and in which incarnation (election safety: a node that
//!   led a term and crashed never leads it again);
//! - `entries[(index, term)]`: the command and the previous entry's term of every log entry any
//!   node ever held. Log matching follows by induction on the index: if every `(index, term)` has
//!   one command and one previous term everywhere, two logs holding the same `(index, term)` hold
//!   the same entry before it, whose `(index, term)` again agrees, down to index 1;
//! - `committed[index]`: the entry some node committed there, and the lowest term in which a
//!   node was seen to hold it committed (state machine safety; leader completeness, which Raft
//!   promises for the leaders of higher terms only: a leader of a lower term may take office
//!   later in time, through delayed votes, without it).
//!
//! Per node it keeps a shadow of what it saw last (term, commit, applied, the leader's own last
//! entry and its view of each follower) to check that each moves only forward.
//!
//! # Snapshots
//!
//! The checker is also every node's service: it applies what a node commits, keeping a hash of
//! the commands applied so far, and a node's snapshot data ([`snapshot_data`]) is its applied
//! index with that hash. A snapshot handed to a service, installed from a leader or restarted
//! from, must cover an index committed in the ledger, in the term committed there, and carry the
//! hash of exactly the commands committed up to it (state machine safety across installs); it
//! must not take the service back; and the node applies the entries after it from there. Log
//! entries a node compacted are checked no more: they were checked when written, and its
//! snapshot covers them. Wherever the ledgers compare a log position, a compacted one compares by
//! the snapshot's last term.
//!
//! Log entries are checked where an event can have written them: the entries an AppendEntries
//! carried, the ones a proposal appended, and the whole log a node restarts with. A whole-log
//! check runs at the end of a run.
//!
//! # Crashes
//!
//! A crash wipes what a node kept only in memory: its commit index and last applied index, and
//! its leadership. So the shadows of those restart from 0 with each incarnation (the commit index
//! may go back across a restart; within one it may not), and a restarted node applies its log
//! again from index 1 under the same state machine safety check: the same command at each index
//! as anyone committed before. Its term may go back too, but only to the durable term, which is
//! never below any term it told anyone about: what it told others is what Raft requires it to
//! keep ("updated on stable storage before responding to RPCs", Figure 2). The checker records,
//! from every message a node sends, the highest term it spoke in, the last vote it granted and
//! how far it acknowledged its leader's log, and checks on every crash that the durable state
//! still holds all of it ([`Invariant::Durability`]). The ledgers above span incarnations, so a
//! restarted node that votes again in a term, loses an acknowledged entry or applies something
//! else is still measured against everything anyone did before.
//!
//! A node on the write-ahead log is checked once more when it restarts
//! ([`Checker::recovered`]): the log, opened again after the power cut of its crash, must still
//! hold everything the node told others. It is the same check on what a real storage gave back,
//! rather than on what the writes reported durable should have stored: a log that acknowledged a
//! write it had not synced fails it.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use zeroraft_engine::core::{
    Core, Entry, EntryKind, HardState, Hooks, Membership, Message, Role, Snapshot,
};

/// A property of Raft that a run can violate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Invariant {
    /// At most one leader per term, over the whole run.
    ElectionSafety,
    /// Two logs with an entry of the same index and term agree on every entry up to it.
    LogMatching,
    /// Every committed entry is in the log of every later leader when it takes office.
    LeaderCompleteness,
    /// Every node commits and applies the same command at an index, in order, each index once.
    StateMachineSafety,
    /// Within one incarnation of a node, term, commit index and last applied never decrease, and
    /// commit stays within the log; across a restart the term never falls below the durable term,
    /// and the durable term never decreases.
    Monotonic,
    /// Within a leader's term, `match_index < next_index <= last_index + 1` for every follower,
    /// `match_index` never decreases, and it is true: a follower still in the leader's term holds
    /// the leader's entry at its `match_index` (in that term only the leader writes its log).
    ProgressBounds,
    /// A leader never overwrites or removes its own entries.
    LeaderAppendOnly,
    /// After the faults stop, the cluster converges within 100 election timeouts.
    Convergence,
    /// Traffic stays bounded: at most [`MAX_IN_FLIGHT`](super::MAX_IN_FLIGHT) messages in
    /// flight at once (more means a message storm).
    BoundedTraffic,
    /// A core's own assertion failed (it panicked).
    CoreAssertion,
    /// A core's own invariants ([`Core::check_invariants`]), checked after every event.
    CoreInvariant,
    /// Persist before you speak: when a node crashes, its durable state still holds every term
    /// it sent a message in, the last vote it granted (unless its durable term moved past it) and
    /// the entries it acknowledged (likewise); its durable vote never changes within a term, and
    /// it never grants a vote that contradicts the one its durable state records.
    Durability,
    /// With CheckQuorum: a leader that cannot hear from a majority (the links into it from
    /// enough nodes are cut) steps down within two minimum election timeouts.
    CheckQuorum,
    /// A confirmed read's index is at least the highest index any node had committed when the
    /// read was asked for: the state it is served from is at least as new as every write
    /// committed before it.
    ReadFreshness,
    /// A leadership transfer completes (the leader steps down) or is abandoned within
    /// `election_timeout_min` of its start.
    Transfer,
    /// The configuration in force on a node is one a leader was asked for (or the initial
    /// one), and agrees with what was committed: a node whose commit index is `c` uses the last
    /// configuration committed at or below `c` (held by that entry, or by its snapshot), or a
    /// later one its log holds. A leader is a voter of its configuration when it takes office,
    /// unless that configuration, which removes it, is not committed yet.
    Configuration,
    /// A leader's commit index is held by a majority of each half of its configuration's
    /// voters, as its own progress records them (which [`Invariant::ProgressBounds`] checks are
    /// true): learners count for nothing, nor do nodes outside the configuration.
    CommitQuorum,
    /// A leader's configuration entries follow one another as joint consensus goes: from a
    /// configuration that is not joint, to the same voters with other learners or to the joint
    /// configuration whose outgoing voters are its voters; from a joint one, only to the
    /// configuration that leaves it; and each only once the one before is committed.
    ConfigChange,
    /// A node's write-ahead log, opened again after a crash and a power cut, gives back every
    /// write the node was told was durable, and of the write under way at the crash either all
    /// of it or nothing (or, for a write split over several records, a prefix of its entries);
    /// it opens and reads back.
    Recovery,
}

impl Invariant {
    /// A readable name.
    pub fn name(self) -> &'static str {
        match self {
            Self::ElectionSafety => "election safety",
            Self::LogMatching => "log matching",
            Self::LeaderCompleteness => "leader completeness",
            Self::StateMachineSafety => "state machine safety",
            Self::Monotonic => "monotonic term/commit/applied",
            Self::ProgressBounds => "leader progress bounds",
            Self::LeaderAppendOnly => "leader append-only",
            Self::Convergence => "convergence after heal",
            Self::BoundedTraffic => "bounded traffic",
            Self::CoreAssertion => "core assertion",
            Self::CoreInvariant => "core invariant",
            Self::Durability => "durability of what a node told others",
            Self::CheckQuorum => "check quorum: a cut-off leader steps down",
            Self::ReadFreshness => "read freshness: a read sees every earlier commit",
            Self::Transfer => "leadership transfer ends within an election timeout",
            Self::Recovery => "recovery of the write-ahead log after a power cut",
            Self::Configuration => "configuration in force: proposed, and as committed",
            Self::CommitQuorum => "commit quorum: a majority of each half of the voters",
            Self::ConfigChange => "configuration change: one joint step at a time, each committed",
        }
    }
}

/// A broken invariant, before the simulator adds the seed, time and recent events.
pub(crate) struct Failure {
    pub invariant: Invariant,
    pub nodes: Vec<usize>,
    pub detail: String,
}

fn fail(invariant: Invariant, nodes: Vec<usize>, detail: String) -> Result<(), Failure> {
    Err(Failure {
        invariant,
        nodes,
        detail,
    })
}

/// What the checker saw of one node after its last event.
#[derive(Clone, Default)]
struct Shadow {
    term: u64,
    leading: bool,
    commit: u64,
    applied: u64,
    /// While leading: its last entry when last seen, as (index, term, command).
    leader_last: (u64, u64, Bytes),
    /// The hash of the commands applied up to `applied` ([`fold`]).
    hash: u64,
    /// While leading: `match_index` of each follower when last seen.
    matched: Vec<u64>,
    /// While leading: its commit index when last seen.
    leader_commit: u64,
    /// While leading: the index of its configuration in force when last seen.
    leader_config: u64,
    /// How many times the node crashed.
    incarnation: u32,
}

/// What a node told others, which its storage must keep. Kept across its crashes: the storage
/// outlives them.
#[derive(Clone, Copy, Default)]
struct Promises {
    /// The highest term of any message it sent.
    term: u64,
    /// The last vote it granted, as (term, candidate).
    vote: Option<(u64, usize)>,
    /// How far it acknowledged its leader's log, in the term of its last acknowledgement, as
    /// (term, index): it holds the leader's entries up to there.
    ack: (u64, u64),
}

pub(crate) struct Checker {
    nodes: Vec<Shadow>,
    promises: Vec<Promises>,
    /// Each node's durable term and vote, as the writes that became durable stored them.
    durable: Vec<HardState>,
    /// `leaders[term]`: the node that led `term`, and its incarnation then.
    leaders: Vec<Option<(usize, u32)>>,
    /// `(index, term)` -> (term at `index - 1`, command).
    entries: HashMap<(u64, u64), (u64, Bytes)>,
    /// `committed[index - 1]`: (term, command) committed at `index`, and the lowest term of a
    /// node seen holding it committed.
    committed: Vec<(u64, Bytes, u64)>,
    /// `hashes[index - 1]`: the hash of the commands committed up to `index` ([`fold`]).
    hashes: Vec<u64>,
    /// The configuration every node starts with.
    initial: Membership,
    /// Every configuration a leader appended when asked for a change, and the one that leaves
    /// each joint one.
    proposed: HashSet<Membership>,
    /// The committed configuration entries, as (index, configuration), in the order of their
    /// indices.
    configs: Vec<(u64, Membership)>,
}

impl Checker {
    /// The highest index any node has been seen to commit.
    pub fn committed_len(&self) -> u64 {
        self.committed.len() as u64
    }

    pub fn new(n: usize) -> Self {
        Self {
            nodes: vec![
                Shadow {
                    matched: vec![0; n],
                    ..Shadow::default()
                };
                n
            ],
            promises: vec![Promises::default(); n],
            durable: vec![HardState::default(); n],
            leaders: Vec::new(),
            entries: HashMap::new(),
            committed: Vec::new(),
            hashes: Vec::new(),
            initial: Membership::initial(n),
            proposed: HashSet::new(),
            configs: Vec::new(),
        }
    }

    /// Sets the configuration every node starts with (by default every node votes).
    pub fn set_initial(&mut self, initial: Membership) {
        self.initial = initial;
    }

    /// Records a configuration a leader appended when asked for a change (and, if it is joint,
    /// the one that leaves it, which the leader appends by itself).
    pub fn proposed(&mut self, membership: Membership) {
        self.proposed.insert(membership);
        self.proposed.insert(membership.leave_joint());
    }

    /// The last configuration committed anywhere and the index of its entry (the initial one
    /// and 0 if none).
    pub fn last_committed_config(&self) -> (u64, Membership) {
        self.configs.last().copied().unwrap_or((0, self.initial))
    }

    /// How many configuration entries were committed.
    pub fn configs_committed(&self) -> u64 {
        self.configs.len() as u64
    }

    /// The last configuration committed at or below `index`, and the index of its entry (0 and
    /// the initial configuration if none).
    fn committed_config(&self, index: u64) -> (u64, Membership) {
        let k = self.configs.partition_point(|&(at, _)| at <= index);
        k.checked_sub(1)
            .map_or((0, self.initial), |k| self.configs[k])
    }

    /// Checks node `i`'s configuration in force (see [`Invariant::Configuration`]).
    fn check_configuration<H: Hooks>(&self, i: usize, core: &Core<H>) -> Result<(), Failure> {
        let membership = *core.membership();
        let at = core.membership_index();
        if membership != self.initial && !self.proposed.contains(&membership) {
            return fail(
                Invariant::Configuration,
                vec![i],
                format!(
                    "node {i} term {} has {membership:?} (entry {at}) in force, which no leader \
                     was asked for",
                    core.term()
                ),
            );
        }
        let commit = core.commit_index();
        if at > commit {
            // Appended and not committed yet, after every configuration committed up to there:
            // its entry is checked against the other logs like any entry.
            return Ok(());
        }
        let (committed_at, committed) = self.committed_config(commit);
        // Held by the entry committed at `committed_at`, or carried by a snapshot taken at or
        // after it (the index of the configuration in force is then the snapshot's, which may
        // be a snapshot compacted since).
        let held = if at > core.log().offset() {
            at == committed_at
        } else {
            at >= committed_at
        };
        if membership != committed || !held {
            return fail(
                Invariant::Configuration,
                vec![i],
                format!(
                    "node {i} term {} has {membership:?} (entry {at}) in force with its commit \
                     index at {commit}, but {committed:?} was committed at {committed_at}",
                    core.term()
                ),
            );
        }
        Ok(())
    }

    /// Checks a message node `i` sends to `to` while its durable term and vote are `durable`,
    /// and records what the message promises.
    pub fn sent(
        &mut self,
        i: usize,
        to: usize,
        msg: &Message,
        durable: HardState,
    ) -> Result<(), Failure> {
        let p = &mut self.promises[i];
        if msg.carries_sender_term() {
            // A PreVote's term is one its sender has not entered: nothing to keep.
            p.term = p.term.max(msg.term());
        }
        match msg {
            Message::RequestVoteReply(m) if m.granted => {
                if durable.term == m.term
                    && let Some(v) = durable.voted_for
                    && v != to
                {
                    return fail(
                        Invariant::Durability,
                        vec![i, to, v],
                        format!(
                            "node {i} grants its vote in term {} to node {to}, while its durable \
                             state records a vote for node {v} in that term",
                            m.term
                        ),
                    );
                }
                p.vote = Some((m.term, to));
            }
            Message::AppendEntriesReply(m) if m.success => {
                if m.term > p.ack.0 {
                    p.ack = (m.term, m.index);
                } else if m.term == p.ack.0 {
                    p.ack.1 = p.ack.1.max(m.index);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Checks a write of node `i` that just became durable, which stored `hard_state` if it
    /// carried one.
    pub fn durable(&mut self, i: usize, hard_state: Option<HardState>) -> Result<(), Failure> {
        let Some(hs) = hard_state else {
            return Ok(());
        };
        let before = self.durable[i];
        if hs.term < before.term {
            return fail(
                Invariant::Monotonic,
                vec![i],
                format!(
                    "node {i}: durable term went back from {} to {}",
                    before.term, hs.term
                ),
            );
        }
        if hs.term == before.term
            && let Some(v) = before.voted_for
            && hs.voted_for != Some(v)
        {
            return fail(
                Invariant::Durability,
                vec![i],
                format!(
                    "node {i}: durable vote in term {} changed from node {v} to {:?}",
                    hs.term, hs.voted_for
                ),
            );
        }
        self.durable[i] = hs;
        Ok(())
    }

    /// Node `i` crashed, its storage holding `durable` and log entries up to `durable_last`:
    /// checks that the storage keeps what the node told others, and forgets what the crash
    /// wiped (commit index, last applied index, leadership).
    pub fn crash(
        &mut self,
        i: usize,
        durable: HardState,
        durable_last: u64,
    ) -> Result<(), Failure> {
        self.check_promises(i, durable, durable_last, "crashed")?;
        let n = self.nodes.len();
        self.nodes[i] = Shadow {
            term: self.nodes[i].term,
            matched: vec![0; n],
            incarnation: self.nodes[i].incarnation + 1,
            ..Shadow::default()
        };
        Ok(())
    }

    /// Node `i`'s write-ahead log, opened again after a crash and a power cut, gave back
    /// `hard_state` and log entries up to `last`: checks that what the node told others
    /// survived the power cut, as it survived the crash ([`Checker::crash`]).
    pub fn recovered(&self, i: usize, hard_state: HardState, last: u64) -> Result<(), Failure> {
        self.check_promises(i, hard_state, last, "restarted after a power cut")
    }

    /// Checks that node `i`'s storage, holding `durable` and log entries up to `durable_last`
    /// when it `did` (crashed, restarted), keeps what the node told others.
    fn check_promises(
        &self,
        i: usize,
        durable: HardState,
        durable_last: u64,
        did: &str,
    ) -> Result<(), Failure> {
        let p = self.promises[i];
        if p.term > durable.term {
            return fail(
                Invariant::Durability,
                vec![i],
                format!(
                    "node {i} {did} in term {} with a durable term of {}, but it sent \
                     messages of term {}",
                    self.nodes[i].term, durable.term, p.term
                ),
            );
        }
        if let Some((term, candidate)) = p.vote
            && durable.term == term
            && durable.voted_for != Some(candidate)
        {
            return fail(
                Invariant::Durability,
                vec![i, candidate],
                format!(
                    "node {i} granted its vote in term {term} to node {candidate}, but {did} \
                     with a durable vote for {:?} in that term",
                    durable.voted_for
                ),
            );
        }
        let (term, index) = p.ack;
        if durable.term == term && durable_last < index {
            return fail(
                Invariant::Durability,
                vec![i],
                format!(
                    "node {i} acknowledged its leader's entries up to {index} in term {term}, \
                     but {did} in that term with entries up to {durable_last} durable"
                ),
            );
        }
        Ok(())
    }

    /// Node `i` restarted as `core`, from its durable state: checks that it resumes with the
    /// durable term and vote, and takes its term as the new shadow's.
    pub fn restart<H: Hooks>(&mut self, i: usize, core: &Core<H>) -> Result<(), Failure> {
        let durable = self.durable[i];
        if core.term() < durable.term {
            return fail(
                Invariant::Monotonic,
                vec![i],
                format!(
                    "node {i}: term went back across a restart, below its durable term {}, to {}",
                    durable.term,
                    core.term()
                ),
            );
        }
        if core.hard_state() != durable {
            return fail(
                Invariant::Durability,
                vec![i],
                format!(
                    "node {i} restarted with {:?}, while its durable state was {durable:?}",
                    core.hard_state()
                ),
            );
        }
        let shadow = &mut self.nodes[i];
        shadow.term = core.term();
        // A node restarting from a snapshot starts its commit and applied indices there; its
        // service is given the snapshot before anything else.
        shadow.commit = core.commit_index();
        shadow.applied = core.last_applied();
        Ok(())
    }

    /// The hash of what node `i`'s service applied so far, for its next snapshot.
    pub fn applied_hash(&self, i: usize) -> u64 {
        self.nodes[i].hash
    }

    /// Checks node `i` after an event that may have written its log entries `written` (an
    /// inclusive range), then applies what it committed, checking that too.
    pub fn observe<H: Hooks>(
        &mut self,
        i: usize,
        core: &Core<H>,
        written: Option<(u64, u64)>,
    ) -> Result<(), Failure> {
        let term = core.term();
        let commit = core.commit_index();
        let last = core.log().last_index();
        let prev = &self.nodes[i];
        let prev_commit = prev.commit;
        if term < prev.term {
            return fail(
                Invariant::Monotonic,
                vec![i],
                format!("node {i}: term went back from {} to {term}", prev.term),
            );
        }
        if commit < prev.commit {
            return fail(
                Invariant::Monotonic,
                vec![i],
                format!(
                    "node {i} term {term}: commit index went back from {} to {commit}",
                    prev.commit
                ),
            );
        }
        if core.last_applied() != prev.applied {
            return fail(
                Invariant::Monotonic,
                vec![i],
                format!(
                    "node {i} term {term}: last applied moved from {} to {} on its own",
                    prev.applied,
                    core.last_applied()
                ),
            );
        }
        if commit > last {
            return fail(
                Invariant::StateMachineSafety,
                vec![i],
                format!("node {i} term {term}: commit index {commit} beyond its last index {last}"),
            );
        }
        if let Some((from, to)) = written {
            self.check_entries(i, core, from, to.min(last))?;
        }
        self.check_commit(i, core, prev_commit, commit)?;
        self.check_configuration(i, core)?;
        if core.role() == Role::Leader {
            self.check_leader(i, core)?;
        } else {
            self.nodes[i].leading = false;
        }
        let shadow = &mut self.nodes[i];
        shadow.term = term;
        shadow.commit = commit;
        Ok(())
    }

    /// Records or compares entries `from..=to` of node `i`'s log in the entry ledger.
    fn check_entries<H: Hooks>(
        &mut self,
        i: usize,
        core: &Core<H>,
        from: u64,
        to: u64,
    ) -> Result<(), Failure> {
        let log = core.log();
        for index in from.max(log.first_index())..=to {
            let entry = log.entry(index).expect("index within the log");
            let prev_term = log.term(index - 1).expect("index within the log");
            match self.entries.get(&(index, entry.term)) {
                Some((p, command)) if *p != prev_term || *command != entry.command => {
                    return fail(
                        Invariant::LogMatching,
                        vec![i],
                        format!(
                            "node {i} holds at index {index} term {} {} after term {prev_term}, \
                             but another log holds {} after term {p} there",
                            entry.term,
                            show(&entry.command),
                            show(command),
                        ),
                    );
                }
                Some(_) => {}
                None => {
                    self.entries
                        .insert((index, entry.term), (prev_term, entry.command.clone()));
                }
            }
        }
        Ok(())
    }

    fn check_commit<H: Hooks>(
        &mut self,
        i: usize,
        core: &Core<H>,
        from: u64,
        to: u64,
    ) -> Result<(), Failure> {
        let observer_term = core.term();
        let offset = core.log().offset();
        for index in from + 1..=to {
            if index <= offset {
                // Committed by installing a snapshot: the service checks it when given it.
                continue;
            }
            let entry = core.log().entry(index).expect("commit within the log");
            let known = self.committed.len();
            match self.committed.get_mut(index as usize - 1) {
                Some((term, command, _)) if !same_entry(entry, *term, command) => {
                    return fail(
                        Invariant::StateMachineSafety,
                        vec![i],
                        format!(
                            "node {i} commits {} (term {}) at index {index}, \
                             where {} (term {term}) was committed",
                            show(&entry.command),
                            entry.term,
                            show(command),
                        ),
                    );
                }
                Some((_, _, commit_term)) => *commit_term = (*commit_term).min(observer_term),
                None if known + 1 == index as usize => {
                    if entry.kind == EntryKind::Config {
                        let Ok(membership) = Membership::decode(&entry.command) else {
                            return fail(
                                Invariant::Configuration,
                                vec![i],
                                format!("node {i} commits an unreadable configuration at {index}"),
                            );
                        };
                        self.configs.push((index, membership));
                    }
                    let hash = fold(self.hashes.last().copied().unwrap_or(0), &entry.command);
                    self.hashes.push(hash);
                    self.committed
                        .push((entry.term, entry.command.clone(), observer_term));
                }
                None => {
                    return fail(
                        Invariant::StateMachineSafety,
                        vec![i],
                        format!(
                            "node {i} commits index {index}, while no node committed {}",
                            known + 1
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    /// Gives node `i`'s service the snapshot its core hands over, if there is one, checking
    /// it against the ledger.
    pub fn restore(&mut self, i: usize, snapshot: &Snapshot) -> Result<(), Failure> {
        let (index, term) = (snapshot.index, snapshot.term);
        let applied = self.nodes[i].applied;
        if index < applied {
            return fail(
                Invariant::StateMachineSafety,
                vec![i],
                format!(
                    "node {i} hands its service a snapshot up to {index} after applying up to \
                     {applied}"
                ),
            );
        }
        let committed = self.committed.get(index as usize - 1);
        if committed.is_none_or(|(t, _, _)| *t != term) {
            return fail(
                Invariant::StateMachineSafety,
                vec![i],
                format!(
                    "node {i} installs a snapshot up to {index} of term {term}, where {}",
                    committed.map_or("nothing was committed".into(), |(t, c, _)| format!(
                        "{} of term {t} was committed",
                        show(c)
                    ))
                ),
            );
        }
        let expected = self.hashes[index as usize - 1];
        let hash = read_snapshot_data(&snapshot.data).filter(|&(at, _)| at == index);
        if hash.is_none_or(|(_, h)| h != expected) {
            return fail(
                Invariant::StateMachineSafety,
                vec![i],
                format!(
                    "node {i} installs a snapshot up to {index} whose state is not that of the \
                     commands committed up to there"
                ),
            );
        }
        let shadow = &mut self.nodes[i];
        shadow.applied = index;
        shadow.hash = expected;
        Ok(())
    }

    pub fn apply<H: Hooks>(
        &mut self,
        i: usize,
        core: &Core<H>,
        from: u64,
        to: u64,
    ) -> Result<(), Failure> {
        // What node `i` applies must be in the ledger of commits first: a write that completed
        // in this step may have let it (a leader) commit it.
        let prev_commit = self.nodes[i].commit;
        self.check_commit(i, core, prev_commit, core.commit_index())?;
        self.nodes[i].commit = core.commit_index();
        let applied = self.nodes[i].applied;
        if from != applied + 1 {
            return fail(
                Invariant::StateMachineSafety,
                vec![i],
                format!("node {i} would apply from {from} after applying up to {applied}"),
            );
        }
        for index in from..=to {
            let entry = core.log().entry(index);
            let committed = self.committed.get(index as usize - 1);
            let same = entry
                .zip(committed)
                .is_some_and(|(e, (term, command, _))| same_entry(e, *term, command));
            if !same {
                return fail(
                    Invariant::StateMachineSafety,
                    vec![i],
                    format!(
                        "node {i} applies {} at index {index}, where {} was committed",
                        entry.map_or("nothing".into(), |e| show(&e.command)),
                        committed.map_or("nothing".into(), |(_, c, _)| show(c)),
                    ),
                );
            }
        }
        let shadow = &mut self.nodes[i];
        shadow.applied = to;
        shadow.hash = self.hashes[to as usize - 1];
        Ok(())
    }

    fn check_leader<H: Hooks>(&mut self, i: usize, core: &Core<H>) -> Result<(), Failure> {
        let term = core.term();
        let log = core.log();
        let last = log.last_index();
        let slot = term as usize;
        if self.leaders.len() <= slot {
            self.leaders.resize(slot + 1, None);
        }
        let incarnation = self.nodes[i].incarnation;
        match self.leaders[slot] {
            Some((other, _)) if other != i => {
                return fail(
                    Invariant::ElectionSafety,
                    vec![other, i],
                    format!("node {i} leads term {term}, which node {other} already led"),
                );
            }
            Some((_, before)) if before != incarnation => {
                return fail(
                    Invariant::ElectionSafety,
                    vec![i],
                    format!("node {i} leads term {term} again, after a crash ended its leadership"),
                );
            }
            _ => self.leaders[slot] = Some((i, incarnation)),
        }
        let shadow = &self.nodes[i];
        let taking_office = !shadow.leading || shadow.term != term;
        // A node the configuration in force removes may be elected while that configuration is
        // not committed: it may be the only one holding it (thesis §4.2.2).
        let removal_pending = core.membership_index() > core.commit_index();
        if taking_office && !core.membership().is_voter(i) && !removal_pending {
            return fail(
                Invariant::Configuration,
                vec![i],
                format!(
                    "node {i} takes office in term {term} without being a voter of its \
                     configuration {:?}",
                    core.membership()
                ),
            );
        }
        if taking_office {
            for (k, (cterm, command, commit_term)) in self.committed.iter().enumerate() {
                if *commit_term >= term {
                    continue;
                }
                let index = k as u64 + 1;
                if index < log.offset()
                    || (index == log.offset() && log.term(index) == Some(*cterm))
                {
                    // In its snapshot, which holds every committed entry up to its index.
                    continue;
                }
                let held = log.entry(index);
                if held.is_none_or(|e| !same_entry(e, *cterm, command)) {
                    return fail(
                        Invariant::LeaderCompleteness,
                        vec![i],
                        format!(
                            "node {i} leads term {term} without committed entry {index} \
                             ({} of term {cterm}); it holds {}",
                            show(command),
                            held.map_or("nothing".into(), |e| format!(
                                "{} of term {}",
                                show(&e.command),
                                e.term
                            )),
                        ),
                    );
                }
            }
        } else {
            let (index, lterm, ref command) = shadow.leader_last;
            let kept = log
                .entry(index)
                .is_some_and(|e| same_entry(e, lterm, command))
                || index <= log.offset() && log.term(index).is_none_or(|t| t == lterm);
            if last < index || !kept {
                return fail(
                    Invariant::LeaderAppendOnly,
                    vec![i],
                    format!(
                        "leader {i} term {term}: its entry {index} of term {lterm} was \
                         removed or overwritten (last index now {last})"
                    ),
                );
            }
        }
        let shadow = &mut self.nodes[i];
        for (peer, before) in shadow.matched.iter_mut().enumerate() {
            let Some(pr) = core.progress(peer) else {
                // Not a member: tracked afresh if the leader adds it again.
                *before = 0;
                continue;
            };
            if taking_office {
                *before = 0;
            }
            if !(pr.match_index < pr.next_index && pr.next_index <= last + 1)
                || pr.match_index < *before
            {
                return fail(
                    Invariant::ProgressBounds,
                    vec![i, peer],
                    format!(
                        "leader {i} term {term}: follower {peer} has match {} (was {}), \
                         next {}, with last index {last}",
                        pr.match_index, *before, pr.next_index
                    ),
                );
            }
            *before = pr.match_index;
        }
        if taking_office {
            shadow.leader_commit = core.commit_index();
            shadow.leader_config = core.membership_index();
        }
        let leader_config = shadow.leader_config;
        let leader_commit = shadow.leader_commit;
        let last_entry = log.entry(last);
        shadow.leading = true;
        shadow.leader_last = (
            last,
            log.last_term(),
            last_entry.map(|e| e.command.clone()).unwrap_or_default(),
        );
        shadow.leader_commit = core.commit_index();
        shadow.leader_config = core.membership_index();
        if core.commit_index() > leader_commit {
            check_commit_quorum(i, core)?;
        }
        if core.membership_index() > leader_config {
            check_config_changes(i, core, leader_config)?;
        }
        Ok(())
    }

    /// Checks that what leaders believe of node `i`'s log, or what node `i` believes of its
    /// followers' logs if it leads, is true of every follower still in the leader's term.
    ///
    /// `cores[j]` is `None` while node `j` is down: a down leader believes nothing any more,
    /// and a down follower is checked when it restarts.
    pub fn check_match<H: Hooks>(
        &self,
        cores: &[Option<Core<H>>],
        i: usize,
    ) -> Result<(), Failure> {
        let Some(core) = &cores[i] else {
            return Ok(());
        };
        let term = core.term();
        let leader = match self.leaders.get(term as usize) {
            Some(&Some((l, _))) => match &cores[l] {
                Some(c) if c.role() == Role::Leader && c.term() == term => c,
                _ => return Ok(()),
            },
            _ => return Ok(()),
        };
        let l = leader.id();
        let check = |f: usize| -> Result<(), Failure> {
            let Some(pr) = leader.progress(f) else {
                return Ok(());
            };
            let m = pr.match_index;
            let Some(follower) = &cores[f] else {
                return Ok(());
            };
            if follower.term() != term || m == 0 {
                return Ok(());
            }
            if m < follower.log().offset() || m < leader.log().offset() {
                // Committed, and in a snapshot: not comparable by term, nor needing it.
                return Ok(());
            }
            let held = follower.log().term(m);
            if held != leader.log().term(m) {
                return fail(
                    Invariant::ProgressBounds,
                    vec![l, f],
                    format!(
                        "leader {l} term {term} records follower {f} as matching up to {m}, \
                         but {f} holds {} there (the leader holds term {:?})",
                        held.map_or("nothing".into(), |t| format!("term {t}")),
                        leader.log().term(m)
                    ),
                );
            }
            Ok(())
        };
        if i == l {
            (0..cores.len()).filter(|&f| f != l).try_for_each(check)
        } else {
            check(i)
        }
    }

    /// Checks every entry of every log against the ledgers: the whole-log check at the end of a
    /// run, which also catches a change an event made outside the entries it was expected to
    /// write.
    pub fn check_all<H: Hooks>(&mut self, cores: &[Option<Core<H>>]) -> Result<(), Failure> {
        for (i, core) in cores.iter().enumerate() {
            let Some(core) = core else {
                continue;
            };
            self.check_entries(i, core, 1, core.log().last_index())?;
            for index in core.log().first_index()..=core.commit_index() {
                let entry = core.log().entry(index).expect("commit within the log");
                let (term, command, _) = &self.committed[index as usize - 1];
                if !same_entry(entry, *term, command) {
                    return fail(
                        Invariant::StateMachineSafety,
                        vec![i],
                        format!("node {i}: committed entry {index} changed"),
                    );
                }
            }
        }
        Ok(())
    }
}

/// Checks that leader `i`'s commit index, which it advanced, is held by a majority of each half
/// of its configuration's voters, by its progress records (its own log for itself).
fn check_commit_quorum<H: Hooks>(i: usize, core: &Core<H>) -> Result<(), Failure> {
    let m = core.membership();
    let held = |j: usize| {
        if j == i {
            core.log().last_index()
        } else {
            core.progress(j).map_or(0, |p| p.match_index)
        }
    };
    let majority = |voters: Vec<usize>| {
        if voters.is_empty() {
            return u64::MAX;
        }
        let mut values: Vec<u64> = voters.iter().map(|&j| held(j)).collect();
        values.sort_unstable_by(|a, b| b.cmp(a));
        values[values.len() / 2]
    };
    let quorum = majority(m.voters().collect()).min(majority(m.outgoing().collect()));
    if core.commit_index() > quorum {
        return fail(
            Invariant::CommitQuorum,
            vec![i],
            format!(
                "leader {i} term {} commits up to {} while a majority of each half of the voters \
                 of {m:?} holds only up to {quorum}",
                core.term(),
                core.commit_index()
            ),
        );
    }
    Ok(())
}

/// Checks the configuration entries leader `i` appended after the one at `from`, in force when
/// it was last seen (see [`Invariant::ConfigChange`]).
fn check_config_changes<H: Hooks>(i: usize, core: &Core<H>, from: u64) -> Result<(), Failure> {
    let log = core.log();
    let decode = |index: u64| {
        log.entry(index)
            .filter(|e| e.kind == EntryKind::Config)
            .and_then(|e| Membership::decode(&e.command).ok())
    };
    // The configuration at `from`: its entry, or (at or below the snapshot) nothing to check.
    let Some(mut prev) = decode(from) else {
        return Ok(());
    };
    let mut prev_at = from;
    for at in from + 1..=core.membership_index() {
        let Some(next) = decode(at) else {
            continue;
        };
        let voters = |m: &Membership| m.voters().collect::<Vec<_>>();
        let legal = if prev.is_joint() {
            next == prev.leave_joint()
        } else if next.is_joint() {
            next.outgoing().eq(prev.voters())
        } else {
            voters(&next) == voters(&prev)
        };
        if !legal || prev_at > core.commit_index() {
            return fail(
                Invariant::ConfigChange,
                vec![i],
                format!(
                    "leader {i} term {} appends {next:?} at {at} after {prev:?} at {prev_at}{}",
                    core.term(),
                    if legal {
                        format!(
                            ", which is not committed (commit index {})",
                            core.commit_index()
                        )
                    } else {
                        ", which is no step of joint consensus".into()
                    }
                ),
            );
        }
        prev = next;
        prev_at = at;
    }
    Ok(())
}

/// The hash of the commands applied up to some index, extended by the next one: 64-bit FNV-1a
/// over each command's length and bytes.
fn fold(hash: u64, command: &Bytes) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = if hash == 0 {
        0xcbf2_9ce4_8422_2325
    } else {
        hash
    };
    for &b in (command.len() as u64)
        .to_le_bytes()
        .iter()
        .chain(command.iter())
    {
        h = (h ^ u64::from(b)).wrapping_mul(PRIME);
    }
    h
}

/// A service's snapshot data: its applied `index` and the `hash` of what it applied, then
/// `padding` bytes derived from both (to make the snapshot travel in several chunks).
pub(crate) fn snapshot_data(index: u64, hash: u64, padding: usize) -> Bytes {
    let mut data = Vec::with_capacity(16 + padding);
    data.extend_from_slice(&index.to_le_bytes());
    data.extend_from_slice(&hash.to_le_bytes());
    data.extend((0..padding).map(|k| pad_byte(index, hash, k)));
    Bytes::from(data)
}

/// Byte `k` of a snapshot's padding.
fn pad_byte(index: u64, hash: u64, k: usize) -> u8 {
    (hash.rotate_left(k as u32 % 64) ^ index ^ k as u64) as u8
}

/// The (index, hash) a snapshot's data carries, if it is intact: the right length is unknown
/// here, but every padding byte must be the one [`snapshot_data`] wrote.
fn read_snapshot_data(data: &[u8]) -> Option<(u64, u64)> {
    let index = u64::from_le_bytes(data.get(..8)?.try_into().ok()?);
    let hash = u64::from_le_bytes(data.get(8..16)?.try_into().ok()?);
    let padding = &data[16..];
    padding
        .iter()
        .enumerate()
        .all(|(k, &b)| b == pad_byte(index, hash, k))
        .then_some((index, hash))
}

/// Whether `entry` is the entry of `term` carrying `command`.
fn same_entry(entry: &Entry, term: u64, command: &Bytes) -> bool {
    entry.term == term && entry.command == *command
}

/// A command for reports: clients' commands are 8-byte integers.
pub(crate) fn show(command: &Bytes) -> String {
    match <[u8; 8]>::try_from(&command[..]) {
        Ok(bytes) => format!("cmd {:#x}", u64::from_le_bytes(bytes)),
        Err(_) => match Membership::decode(command) {
            Ok(membership) => format!("config {membership:?}"),
            Err(_) => format!("cmd {:?}", &command[..]),
        },
    }
}
