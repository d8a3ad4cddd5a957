//! The messages Raft nodes exchange (Figures 2 and 13 of the extended Raft paper), plus the
//! conflict hint of §5.3 that lets a leader back up over a whole term per round trip.
//!
//! The pre-vote round of the Raft thesis (§9.6) reuses the RequestVote layout: a
//! [`Message::PreVote`] is a [`RequestVote`] whose term is the one its sender would campaign in
//! (its own term + 1), and a [`Message::PreVoteReply`] is a [`RequestVoteReply`] that echoes that
//! term when granted and carries the voter's own term when refused. Neither changes anyone's term
//! or vote: see [`Message::carries_sender_term`].
//!
//! The sender's id is not part of a message: the network tells the receiver who sent it.

use bytes::Bytes;

use super::log::Entry;

/// A message between two nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A candidate asks for a vote.
    RequestVote(RequestVote),
    /// The answer to [`Message::RequestVote`].
    RequestVoteReply(RequestVoteReply),
    /// A leader replicates entries (or just asserts its leadership, with none).
    AppendEntries(AppendEntries),
    /// The answer to [`Message::AppendEntries`].
    AppendEntriesReply(AppendEntriesReply),
    /// A leader sends a follower one chunk of its snapshot (Figure 13).
    InstallSnapshot(InstallSnapshot),
    /// The answer to [`Message::InstallSnapshot`].
    InstallSnapshotReply(InstallSnapshotReply),
    /// A node whose election timeout fired asks whether it could win an election in `term`
    /// (its own term + 1) before it starts one (PreVote, Raft thesis §9.6). Only sent with
    /// [`CoreConfig::pre_vote`](super::CoreConfig::pre_vote).
    PreVote(RequestVote),
    /// The answer to [`Message::PreVote`]: granted, with the term asked about; or refused, with
    /// the voter's current term.
    PreVoteReply(RequestVoteReply),
    /// A leader hands its leadership over: the receiver, a follower of `term` holding the
    /// leader's log up to where the transfer began, starts an election at once (Raft thesis
    /// §3.10). No reply: the leader learns the outcome from the election.
    TimeoutNow(TimeoutNow),
}

/// TimeoutNow arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeoutNow {
    /// The leader's term.
    pub term: u64,
}

/// RequestVote arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestVote {
    /// The candidate's term.
    pub term: u64,
    /// Index of the candidate's last log entry.
    pub last_log_index: u64,
    /// Term of the candidate's last log entry.
    pub last_log_term: u64,
    /// Whether the candidate campaigns because its leader handed it leadership
    /// ([`Message::TimeoutNow`]): voters that still hear from that leader vote anyway.
    pub transfer: bool,
}

/// RequestVote results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestVoteReply {
    /// The voter's current term, for the candidate to update itself.
    pub term: u64,
    /// Whether the candidate received the vote.
    pub granted: bool,
}

/// AppendEntries arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendEntries {
    /// The leader's term.
    pub term: u64,
    /// Index of the entry just before the new ones.
    pub prev_log_index: u64,
    /// Term of the entry at `prev_log_index`.
    pub prev_log_term: u64,
    /// Entries to store (empty for a heartbeat). Payloads are shared with the leader's log.
    pub entries: Vec<Entry>,
    /// The leader's commit index.
    pub leader_commit: u64,
    /// The leader's heartbeat round when it sent this (see [`AppendEntriesReply::round`]).
    pub round: u64,
}

/// AppendEntries results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendEntriesReply {
    /// The follower's current term, for the leader to update itself.
    pub term: u64,
    /// Whether the follower held an entry matching `prev_log_index` and `prev_log_term`.
    pub success: bool,
    /// On success, the index up to which the follower's log now matches the leader's
    /// (`prev_log_index + entries.len()`); on rejection, the `prev_log_index` that was rejected.
    pub index: u64,
    /// On rejection: the term of the follower's entry at `prev_log_index`, or 0 if its log is
    /// shorter than that.
    pub conflict_term: u64,
    /// On rejection: the first index the follower holds for `conflict_term`, or, if its log is too
    /// short, its last index + 1. 0 when the AppendEntries was rejected for its stale term, not
    /// for the follower's log (every real hint is at least 1).
    pub conflict_index: u64,
    /// The `round` of the AppendEntries this answers. A reply in the leader's term to round `r`
    /// shows that the follower still followed the leader after the leader started round `r`:
    /// what linearizable reads and leases count. 0 in a rejection of an earlier term's message,
    /// whose round belongs to another leadership (perhaps of the same node before a restart).
    pub round: u64,
}

/// InstallSnapshot arguments: one chunk of the leader's snapshot. A large snapshot travels as
/// several, one at a time, so that no message is larger than a chunk and other messages to the
/// follower are never stuck behind a whole snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallSnapshot {
    /// The leader's term.
    pub term: u64,
    /// The last index the snapshot covers.
    pub last_included_index: u64,
    /// The term of that entry.
    pub last_included_term: u64,
    /// Where this chunk starts in the snapshot's data.
    pub offset: u64,
    /// The chunk: a slice of the leader's snapshot (shared, not copied).
    pub data: Bytes,
    /// Whether this chunk ends the snapshot.
    pub done: bool,
    /// The leader's heartbeat round when it sent this (see [`AppendEntriesReply::round`]).
    pub round: u64,
    /// The configuration in force at `last_included_index`, encoded
    /// ([`Snapshot::config`](super::Snapshot::config)); `None` if the snapshot records none.
    pub config: Option<Bytes>,
}

/// InstallSnapshot results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallSnapshotReply {
    /// The follower's current term, for the leader to update itself.
    pub term: u64,
    /// The `last_included_index` of the snapshot this answers.
    pub last_included_index: u64,
    /// How many bytes of that snapshot the follower holds: where the next chunk should start.
    pub next_offset: u64,
    /// Whether the follower holds everything up to `last_included_index`: it installed the
    /// snapshot (and made it durable), or had committed that far already.
    pub installed: bool,
    /// The `round` of the InstallSnapshot this answers (0 if it was of an earlier term).
    pub round: u64,
}

impl Message {
    /// The term the message carries: the sender's term when it sent it, except for a PreVote
    /// and a granted PreVoteReply (see [`Message::carries_sender_term`]).
    pub fn term(&self) -> u64 {
        match self {
            Self::RequestVote(m) | Self::PreVote(m) => m.term,
            Self::RequestVoteReply(m) | Self::PreVoteReply(m) => m.term,
            Self::AppendEntries(m) => m.term,
            Self::AppendEntriesReply(m) => m.term,
            Self::InstallSnapshot(m) => m.term,
            Self::InstallSnapshotReply(m) => m.term,
            Self::TimeoutNow(m) => m.term,
        }
    }

    /// Whether [`Message::term`] is the sender's current term, which a receiver in a lower term
    /// adopts (Figure 2, rules for all servers). Not so for a PreVote, whose term is one its
    /// sender has not entered (and may never enter), nor for a granted PreVoteReply, which echoes
    /// that term back. A refused PreVoteReply carries the voter's term and does count: the
    /// pre-candidate learns a term that really exists.
    pub fn carries_sender_term(&self) -> bool {
        match self {
            Self::PreVote(_) => false,
            Self::PreVoteReply(m) => !m.granted,
            _ => true,
        }
    }

    /// Whether this is a request (RequestVote, PreVote, AppendEntries, InstallSnapshot) rather
    /// than a reply.
    pub fn is_request(&self) -> bool {
        matches!(
            self,
            Self::RequestVote(_)
                | Self::PreVote(_)
                | Self::AppendEntries(_)
                | Self::InstallSnapshot(_)
                | Self::TimeoutNow(_)
        )
    }

    /// The size of this message in a compact binary encoding: a 1-byte kind, 8-byte integers,
    /// a 4-byte sender id, 1-byte booleans, a 4-byte entry count and per entry an 8-byte term, a
    /// 4-byte length and the payload, a 4-byte length before snapshot data. Nothing is encoded;
    /// the network uses this to count bytes.
    ///
    /// The engine's real encoding ([`Codec`](zeroraft_transport::Codec) for `Message`, see
    /// [`WIRE_VERSION`](crate::WIRE_VERSION)) leaves out the sender id and adds a 1-byte
    /// version, so it is exactly `wire_size() - 3` bytes long.
    pub fn wire_size(&self) -> usize {
        const KIND: usize = 1;
        const U64: usize = 8;
        const ID: usize = 4;
        const BOOL: usize = 1;
        match self {
            Self::RequestVote(_) | Self::PreVote(_) => KIND + ID + 3 * U64 + BOOL,
            Self::RequestVoteReply(_) | Self::PreVoteReply(_) => KIND + ID + U64 + BOOL,
            Self::AppendEntries(m) => {
                KIND + ID
                    + 5 * U64
                    + 4
                    + m.entries
                        .iter()
                        .map(|e| U64 + 4 + e.command.len())
                        .sum::<usize>()
            }
            Self::AppendEntriesReply(_) => KIND + ID + 5 * U64 + BOOL,
            Self::InstallSnapshot(m) => {
                KIND + ID
                    + 5 * U64
                    + 4
                    + m.data.len()
                    + BOOL
                    + m.config.as_ref().map_or(0, |c| 4 + c.len())
            }
            Self::InstallSnapshotReply(_) => KIND + ID + 4 * U64 + BOOL,
            Self::TimeoutNow(_) => KIND + ID + U64,
        }
    }
}
