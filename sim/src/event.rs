//! What happens in a run, as small copyable records: the readable trace of a replay, the last
//! events of a violation report, and the input of the trace hash that proves a run deterministic.

use std::collections::VecDeque;
use std::fmt;
use std::hash::{Hash, Hasher};

use zeroraft_engine::core::{HardState, Message, Nanos, Role};

use crate::storage::UnderWay;

pub use super::network::DropReason;

/// One message, without its payloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MsgSummary {
    /// RequestVote.
    RequestVote {
        /// Candidate's term.
        term: u64,
        /// Candidate's last log index.
        last_index: u64,
        /// Candidate's last log term.
        last_term: u64,
    },
    /// RequestVote reply.
    VoteReply {
        /// Voter's term.
        term: u64,
        /// Whether the vote was granted.
        granted: bool,
    },
    /// AppendEntries.
    Append {
        /// Leader's term.
        term: u64,
        /// Index before the entries.
        prev_index: u64,
        /// Term at `prev_index`.
        prev_term: u64,
        /// Number of entries carried.
        entries: u64,
        /// Leader's commit index.
        commit: u64,
    },
    /// AppendEntries reply.
    AppendReply {
        /// Follower's term.
        term: u64,
        /// Whether the consistency check passed.
        success: bool,
        /// Matched index (success) or rejected previous index.
        index: u64,
        /// Conflict hint: term.
        conflict_term: u64,
        /// Conflict hint: index.
        conflict_index: u64,
    },
    /// InstallSnapshot: one chunk.
    Snapshot {
        /// Leader's term.
        term: u64,
        /// The snapshot's last index.
        index: u64,
        /// Where the chunk starts.
        offset: u64,
        /// The chunk's length.
        len: u64,
        /// Whether it is the last chunk.
        done: bool,
    },
    /// InstallSnapshot reply.
    SnapshotReply {
        /// Follower's term.
        term: u64,
        /// The snapshot's last index.
        index: u64,
        /// Bytes the follower holds.
        next_offset: u64,
        /// Whether it installed the snapshot.
        installed: bool,
    },
    // Last, so that the trace hashes of runs without them stay what they were.
    /// PreVote.
    PreVote {
        /// The term the pre-candidate would campaign in (its own + 1).
        term: u64,
        /// Pre-candidate's last log index.
        last_index: u64,
        /// Pre-candidate's last log term.
        last_term: u64,
    },
    /// PreVote reply.
    PreVoteReply {
        /// The term asked about if granted, else the voter's term.
        term: u64,
        /// Whether the pre-vote was granted.
        granted: bool,
    },
    /// TimeoutNow: the leader hands its leadership over.
    TimeoutNow {
        /// The leader's term.
        term: u64,
    },
}

impl MsgSummary {
    /// Summarizes `msg`.
    pub fn of(msg: &Message) -> Self {
        match msg {
            Message::RequestVote(m) => Self::RequestVote {
                term: m.term,
                last_index: m.last_log_index,
                last_term: m.last_log_term,
            },
            Message::RequestVoteReply(m) => Self::VoteReply {
                term: m.term,
                granted: m.granted,
            },
            Message::PreVote(m) => Self::PreVote {
                term: m.term,
                last_index: m.last_log_index,
                last_term: m.last_log_term,
            },
            Message::PreVoteReply(m) => Self::PreVoteReply {
                term: m.term,
                granted: m.granted,
            },
            Message::AppendEntries(m) => Self::Append {
                term: m.term,
                prev_index: m.prev_log_index,
                prev_term: m.prev_log_term,
                entries: m.entries.len() as u64,
                commit: m.leader_commit,
            },
            Message::AppendEntriesReply(m) => Self::AppendReply {
                term: m.term,
                success: m.success,
                index: m.index,
                conflict_term: m.conflict_term,
                conflict_index: m.conflict_index,
            },
            Message::InstallSnapshot(m) => Self::Snapshot {
                term: m.term,
                index: m.last_included_index,
                offset: m.offset,
                len: m.data.len() as u64,
                done: m.done,
            },
            Message::InstallSnapshotReply(m) => Self::SnapshotReply {
                term: m.term,
                index: m.last_included_index,
                next_offset: m.next_offset,
                installed: m.installed,
            },
            Message::TimeoutNow(m) => Self::TimeoutNow { term: m.term },
        }
    }
}

impl fmt::Display for MsgSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::RequestVote {
                term,
                last_index,
                last_term,
            } => write!(f, "RequestVote t{term} last {last_index}/t{last_term}"),
            Self::VoteReply { term, granted } => {
                let answer = if granted { "granted" } else { "refused" };
                write!(f, "VoteReply t{term} {answer}")
            }
            Self::PreVote {
                term,
                last_index,
                last_term,
            } => write!(f, "PreVote t{term} last {last_index}/t{last_term}"),
            Self::PreVoteReply { term, granted } => {
                let answer = if granted { "granted" } else { "refused" };
                write!(f, "PreVoteReply t{term} {answer}")
            }
            Self::TimeoutNow { term } => write!(f, "TimeoutNow t{term}"),
            Self::Append {
                term,
                prev_index,
                prev_term,
                entries,
                commit,
            } => write!(
                f,
                "AppendEntries t{term} prev {prev_index}/t{prev_term} +{entries} commit {commit}"
            ),
            Self::AppendReply {
                term,
                success: true,
                index,
                ..
            } => write!(f, "AppendReply t{term} ok up to {index}"),
            Self::AppendReply {
                term,
                index,
                conflict_term,
                conflict_index,
                ..
            } => write!(
                f,
                "AppendReply t{term} reject prev {index} hint t{conflict_term}@{conflict_index}"
            ),
            Self::Snapshot {
                term,
                index,
                offset,
                len,
                done,
            } => {
                let last = if done { " (last)" } else { "" };
                write!(
                    f,
                    "InstallSnapshot t{term} up to {index} bytes {offset}+{len}{last}"
                )
            }
            Self::SnapshotReply {
                term,
                index,
                next_offset,
                installed,
            } => {
                let answer = if installed { "installed" } else { "has" };
                write!(
                    f,
                    "SnapshotReply t{term} up to {index} {answer} {next_offset} bytes"
                )
            }
        }
    }
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A message arrived and was stepped into its receiver.
    Deliver {
        /// Sender.
        from: usize,
        /// Receiver.
        to: usize,
        /// The message.
        msg: MsgSummary,
    },
    /// A message was lost.
    Drop {
        /// Sender.
        from: usize,
        /// Intended receiver.
        to: usize,
        /// The message.
        msg: MsgSummary,
        /// Why.
        reason: DropReason,
    },
    /// A node's timer fired (election timeout or heartbeat).
    Timer {
        /// The node.
        node: usize,
    },
    /// A client proposed commands to the node it believes leads.
    Propose {
        /// The client.
        client: usize,
        /// The node asked.
        node: usize,
        /// The indices the commands took, if the node accepted them as leader.
        accepted: Option<(u64, u64)>,
    },
    /// A client found the node it believes leads down, and will ask another.
    Unreachable {
        /// The client.
        client: usize,
        /// The node, down.
        node: usize,
    },
    /// A client held back: the node it asks has too many uncommitted entries.
    Backoff {
        /// The client.
        client: usize,
        /// The node.
        node: usize,
    },
    /// The fault phase split the cluster: nodes whose bit is set on one side, the rest on the
    /// other. Earlier link faults are healed first.
    Partition {
        /// Bit set of one side.
        side: u64,
    },
    /// The fault phase cut the link from one node to another, in that direction only.
    Cut {
        /// Sender side of the link.
        from: usize,
        /// Receiver side of the link.
        to: usize,
    },
    /// The fault phase isolated a node (the leader, when there was one). Earlier link faults
    /// are healed first.
    Isolate {
        /// The node.
        node: usize,
    },
    /// The fault phase restored every link.
    HealLinks,
    /// The fault phase crashed a node: its core is gone with the messages it held and its writes
    /// in progress. What it already sent stays on its way.
    Crash {
        /// The node.
        node: usize,
        /// How many of its writes were in progress, and are lost.
        lost_writes: usize,
        /// Whether it held messages back, waiting for a write, that are lost.
        lost_messages: bool,
        /// When it restarts.
        restart_at: Nanos,
    },
    /// A crashed node restarted from its durable state, as a follower.
    Restart {
        /// The node.
        node: usize,
        /// The durable term and vote it resumes with.
        hard_state: HardState,
        /// The last index of its durable log.
        last_index: u64,
    },
    /// A crashed node's write-ahead log was opened again, after its power cut, before it
    /// restarted (in the seeds that run nodes on one).
    Reopen {
        /// The node.
        node: usize,
        /// How many opens it took: the process died in the ones before the last.
        attempts: u32,
        /// What became of the write under way at the crash.
        under_way: UnderWay,
    },
    /// A write of a node became durable and was reported to its core.
    Durable {
        /// The node.
        node: usize,
        /// The write's number (see `Persist::generation`).
        generation: u64,
        /// The term and vote it stored, if it carried them.
        hard_state: Option<HardState>,
        /// The last index of the durable log after it.
        last_index: u64,
    },
    /// A node's service snapshotted its state machine, and the node compacted its log.
    Compact {
        /// The node.
        node: usize,
        /// The last index the snapshot covers.
        index: u64,
    },
    /// A node handed a snapshot to its service (installed from a leader, or restarted from):
    /// the service's state is now the snapshot's.
    Install {
        /// The node.
        node: usize,
        /// The last index the snapshot covers.
        index: u64,
    },
    /// The fault phase ended: every link is up, and nothing is lost or duplicated any more.
    HealPhase,
    /// The heal phase proposed a fresh command that must commit everywhere.
    Marker {
        /// The leader it was proposed to.
        node: usize,
        /// Its index.
        index: u64,
    },
    /// A node's role or term changed.
    State {
        /// The node.
        node: usize,
        /// Its new role.
        role: Role,
        /// Its new term.
        term: u64,
    },
    /// A node's commit index advanced.
    Commit {
        /// The node.
        node: usize,
        /// Its new commit index.
        index: u64,
    },
    /// A client asked the node it believes leads for a linearizable read.
    Read {
        /// The client.
        client: usize,
        /// The node asked.
        node: usize,
        /// The read's id.
        id: u64,
        /// Whether it asked for a lease read.
        lease: bool,
        /// The highest index any node had committed when the read was asked for.
        committed: u64,
    },
    /// A node confirmed (with its read index) or refused a read.
    ReadDone {
        /// The node.
        node: usize,
        /// The read's id.
        id: u64,
        /// The read index, if confirmed.
        index: Option<u64>,
    },
    /// The leader was asked to hand its leadership to `target`.
    Transfer {
        /// The leader.
        node: usize,
        /// The node to hand it to.
        target: usize,
    },
    /// The operator asked a leader to change the members (see
    /// [`Members`](crate::scenario::Members)).
    MemberChange {
        /// The leader asked.
        node: usize,
        /// The change.
        op: MemberOp,
        /// The target's voters, a bit per node.
        voters: u64,
        /// The target's learners, a bit per node.
        learners: u64,
        /// What the leader did.
        outcome: MemberOutcome,
    },
    /// The operator would have changed the members, but no node that is up leads.
    NoLeaderForChange,
    /// A node that a committed configuration left out was stopped, its disk kept: it restarts
    /// if a leader adds it again.
    Retire {
        /// The node.
        node: usize,
    },
}

/// A change of members the operator asks a leader for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemberOp {
    /// Add a node (never added, or stopped after it was removed) as a learner.
    AddLearner,
    /// Make a learner a voter.
    Promote,
    /// Remove a voter other than the leader.
    RemoveVoter,
    /// Remove the leader itself.
    RemoveLeader,
    /// Remove a learner.
    RemoveLearner,
    /// Replace a voter by a learner in one change.
    Replace,
    /// Move to another set of voters at once: some voters removed, some learners promoted.
    Reshape,
}

/// Why a leader refused a change of members (its
/// [`MembershipChangeError`](zeroraft_engine::core::MembershipChangeError)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// It no longer leads.
    NotLeader,
    /// A change is under way.
    InProgress,
    /// A leadership transfer is under way.
    Transfer,
    /// A node to promote is not a caught-up learner.
    NotCaughtUp,
    /// The target names a node it does not know, or is no configuration it can move to.
    Invalid,
}

/// What a leader did with a change of members.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemberOutcome {
    /// It appended configuration entries up to `index` (the joint configuration, or the target
    /// itself when only learners change).
    Started {
        /// The index of the last entry it appended.
        index: u64,
    },
    /// The target is the configuration in force already.
    InForce,
    /// It refused.
    Refused(Refusal),
}

/// One event at a virtual time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Event {
    /// Virtual time, in nanoseconds since the run started.
    pub at: Nanos,
    /// What happened.
    pub kind: EventKind,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>9}.{:03} ms  ",
            self.at / 1_000_000,
            self.at / 1_000 % 1_000
        )?;
        match self.kind {
            EventKind::Deliver { from, to, msg } => write!(f, "{from} -> {to}  {msg}"),
            EventKind::Drop {
                from,
                to,
                msg,
                reason,
            } => {
                let why = match reason {
                    DropReason::Cut => "link cut",
                    DropReason::Lost => "lost",
                    DropReason::CutInFlight => "link cut in flight",
                    DropReason::Down => "receiver down",
                };
                write!(f, "{from} -x {to}  {msg}  ({why})")
            }
            EventKind::Timer { node } => write!(f, "timer  node {node}"),
            EventKind::Read {
                client,
                node,
                id,
                lease,
                committed,
            } => write!(
                f,
                "client {client} -> node {node}: {} read #{id} (committed anywhere: {committed})",
                if lease { "lease" } else { "ReadIndex" }
            ),
            EventKind::ReadDone {
                node,
                id,
                index: Some(index),
            } => write!(f, "node {node} confirms read #{id} at index {index}"),
            EventKind::ReadDone {
                node,
                id,
                index: None,
            } => write!(f, "node {node} refuses read #{id}: not leader"),
            EventKind::Transfer { node, target } => {
                write!(f, "leader {node} asked to transfer leadership to {target}")
            }
            EventKind::Propose {
                client,
                node,
                accepted: Some((a, b)),
            } => write!(f, "client {client} -> node {node}: accepted at {a}..={b}"),
            EventKind::Propose {
                client,
                node,
                accepted: None,
            } => write!(f, "client {client} -> node {node}: not leader"),
            EventKind::Unreachable { client, node } => {
                write!(f, "client {client} -> node {node}: down")
            }
            EventKind::Backoff { client, node } => {
                write!(f, "client {client} holds back: node {node} has a backlog")
            }
            EventKind::Partition { side } => {
                let members: Vec<usize> = (0..64).filter(|i| side & (1 << i) != 0).collect();
                write!(f, "FAULT  partition {members:?} | rest")
            }
            EventKind::Cut { from, to } => write!(f, "FAULT  cut link {from} -> {to}"),
            EventKind::Isolate { node } => write!(f, "FAULT  isolate node {node}"),
            EventKind::HealLinks => write!(f, "FAULT  heal all links"),
            EventKind::Crash {
                node,
                lost_writes,
                lost_messages,
                restart_at,
            } => write!(
                f,
                "FAULT  crash node {node}: {lost_writes} write(s) in progress lost{}, \
                 restarts at {}.{:03} ms",
                if lost_messages {
                    ", held messages lost"
                } else {
                    ""
                },
                restart_at / 1_000_000,
                restart_at / 1_000 % 1_000
            ),
            EventKind::Restart {
                node,
                hard_state,
                last_index,
            } => write!(
                f,
                "RESTART node {node} from t{} {}, log up to {last_index}",
                hard_state.term,
                vote(hard_state.voted_for)
            ),
            EventKind::Reopen {
                node,
                attempts,
                under_way,
            } => write!(
                f,
                "REOPEN node {node}'s write-ahead log after a power cut ({attempts} open(s)): {}",
                match under_way {
                    UnderWay::None => "nothing was under way, all durable kept",
                    UnderWay::Kept => "the write under way kept whole",
                    UnderWay::Prefix => "a prefix of the write under way kept",
                    UnderWay::Lost => "the write under way lost",
                    UnderWay::Unexpected => "a state no write led to",
                }
            ),
            EventKind::Durable {
                node,
                generation,
                hard_state,
                last_index,
            } => {
                write!(f, "node {node} write {generation} durable: ")?;
                if let Some(hs) = hard_state {
                    write!(f, "t{} {}, ", hs.term, vote(hs.voted_for))?;
                }
                write!(f, "log up to {last_index}")
            }
            EventKind::Compact { node, index } => {
                write!(
                    f,
                    "node {node} snapshots up to {index} and compacts its log"
                )
            }
            EventKind::Install { node, index } => {
                write!(f, "node {node}'s service takes the snapshot up to {index}")
            }
            EventKind::HealPhase => write!(f, "HEAL PHASE: faults stop"),
            EventKind::Marker { node, index } => {
                write!(f, "marker proposed to node {node} at index {index}")
            }
            EventKind::State { node, role, term } => {
                write!(f, "node {node} is {role:?} in term {term}")
            }
            EventKind::Commit { node, index } => write!(f, "node {node} commits up to {index}"),
            EventKind::MemberChange {
                node,
                op,
                voters,
                learners,
                outcome,
            } => {
                write!(
                    f,
                    "MEMBERS node {node} asked to {op:?}: voters {:?} learners {:?}: ",
                    bits(voters),
                    bits(learners)
                )?;
                match outcome {
                    MemberOutcome::Started { index } => write!(f, "appended up to {index}"),
                    MemberOutcome::InForce => write!(f, "in force already"),
                    MemberOutcome::Refused(why) => write!(f, "refused ({why:?})"),
                }
            }
            EventKind::NoLeaderForChange => write!(f, "MEMBERS no leader to ask for a change"),
            EventKind::Retire { node } => {
                write!(
                    f,
                    "MEMBERS node {node} stopped: removed by a committed configuration"
                )
            }
        }
    }
}

/// The nodes of a bit set, lowest first.
fn bits(set: u64) -> Vec<usize> {
    (0..64).filter(|i| set & (1 << i) != 0).collect()
}

/// A vote for a trace line.
fn vote(voted_for: Option<usize>) -> String {
    voted_for.map_or("no vote".into(), |v| format!("voted {v}"))
}

/// 64-bit FNV-1a: small and unkeyed, so the trace hash depends on nothing but the events (the
/// standard library's hasher makes no promise of stability).
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// How many events a violation report shows.
pub const RECENT_EVENTS: usize = 40;

/// Everything that happened in a run: a running hash, the last events, and optionally all.
pub(crate) struct EventLog {
    hasher: Fnv,
    count: u64,
    recent: VecDeque<Event>,
    trace: Option<Vec<Event>>,
}

impl EventLog {
    pub fn new(keep_all: bool) -> Self {
        Self {
            hasher: Fnv(0xcbf2_9ce4_8422_2325),
            count: 0,
            recent: VecDeque::with_capacity(RECENT_EVENTS),
            trace: keep_all.then(Vec::new),
        }
    }

    pub fn push(&mut self, at: Nanos, kind: EventKind) {
        let event = Event { at, kind };
        event.hash(&mut self.hasher);
        self.count += 1;
        if self.recent.len() == RECENT_EVENTS {
            self.recent.pop_front();
        }
        self.recent.push_back(event);
        if let Some(trace) = &mut self.trace {
            trace.push(event);
        }
    }

    pub fn hash(&self) -> u64 {
        self.hasher.finish()
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn recent(&self) -> Vec<Event> {
        self.recent.iter().copied().collect()
    }

    pub fn take_trace(&mut self) -> Vec<Event> {
        self.trace.take().unwrap_or_default()
    }
}
