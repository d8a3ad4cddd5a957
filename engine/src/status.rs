//! [`Status`]: a node's state as its thread last published it, [`PeerStatus`], the leader's
//! view of one follower, and [`MembershipStatus`], the configuration the node has in force.

use std::sync::Arc;
use std::time::Duration;

use smallvec::SmallVec;

use crate::{Membership, ProgressState, Role};
#[cfg(doc)]
use crate::{Raft, StateMachine};

/// The leader's view of one follower, as published in [`Status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    /// The follower's node id.
    pub id: usize,
    /// Highest index known replicated on it.
    pub match_index: u64,
    /// Next index to send it.
    pub next_index: u64,
    /// Probe or Replicate.
    pub state: ProgressState,
    /// AppendEntries in flight to it.
    pub inflight: usize,
}

/// A node's state as last published by its thread. Snapshots are immutable and cheap to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The node's id.
    pub id: usize,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: u64,
    /// The leader it knows of in that term.
    pub leader: Option<usize>,
    /// Highest committed index it knows.
    pub commit_index: u64,
    /// Highest index it has applied (sent on the apply channel).
    pub last_applied: u64,
    /// Index of its last log entry.
    pub last_log_index: u64,
    /// Highest index its storage has made durable (equal to `last_log_index` once a write
    /// completes; behind it while one is under way).
    pub durable_index: u64,
    /// The last index its snapshot covers (0 if it has none): the log holds the entries after it.
    pub snapshot_index: u64,
    /// Entries its log holds (after the snapshot).
    pub log_entries: u64,
    /// Bytes of commands its log holds.
    pub log_bytes: u64,
    /// Snapshots it installed from a leader.
    pub snapshots_installed: u64,
    /// Writes to its storage (one per round in which its state changed: group commit).
    pub syncs: u64,
    /// Time spent in those writes, in all.
    pub sync_time: Duration,
    /// Whether its storage reports its disk full ([`crate::Storage::disk_full`]): a write
    /// failed for lack of room (the node then stops), or the storage opened without the room it
    /// keeps in reserve. An operator frees room, or moves the node.
    pub disk_full: bool,
    /// Whether a snapshot of its state machine is being serialized on the node's snapshot
    /// thread ([`StateMachine::snapshot_view`]).
    pub snapshotting: bool,
    /// Why the node stopped on its own, if it did (a storage failure, a panic on its thread),
    /// as an operator reads it: the `Display` of [`Raft::failure`], or what a remote node said.
    pub failure: Option<Arc<str>>,
    /// Term of its last log entry.
    pub last_log_term: u64,
    /// When leader: one entry per follower. Empty otherwise.
    pub peers: SmallVec<[PeerStatus; 8]>,
    /// Elections it started.
    pub elections_started: u64,
    /// Elections it won.
    pub elections_won: u64,
    /// Times it stopped being leader.
    pub step_downs: u64,
    /// Messages it received.
    pub messages_in: u64,
    /// Messages it sent.
    pub messages_out: u64,
    /// Whether the node was killed (its thread has ended or is ending).
    pub killed: bool,
    /// When leader: the node it is handing its leadership to, while it is
    /// ([`Raft::transfer_leadership`]).
    pub transfer_target: Option<usize>,
    /// When leader: whether it holds a lease for reads ([`Raft::read_lease`]).
    pub lease: bool,
    /// Reads it confirmed as leader.
    pub reads_confirmed: u64,
    /// Of those, the ones confirmed under its lease.
    pub lease_reads: u64,
    /// Leadership transfers it started, and of those the ones it gave up.
    pub transfers_started: u64,
    /// See `transfers_started`.
    pub transfers_abandoned: u64,
    /// The cluster configuration the node has in force (voters, learners, outgoing voters
    /// while joint), the index of its entry and whether the node knows it committed: what
    /// [`Raft::membership`] returns, as of this snapshot. `None` when not known: a node not
    /// heard from yet ([`Status::initial`]), or one whose server does not report it.
    pub membership: Option<MembershipStatus>,
}

impl Status {
    /// What node `id` reports before it has done anything: a follower at term 0 that knows no
    /// leader, with an empty log and every counter at zero. A monitor that has not heard from
    /// a node yet shows it with this (and `killed` set).
    pub fn initial(id: usize) -> Self {
        Self {
            id,
            role: Role::Follower,
            term: 0,
            leader: None,
            commit_index: 0,
            last_applied: 0,
            last_log_index: 0,
            durable_index: 0,
            snapshot_index: 0,
            log_entries: 0,
            log_bytes: 0,
            snapshots_installed: 0,
            syncs: 0,
            sync_time: Duration::ZERO,
            disk_full: false,
            snapshotting: false,
            failure: None,
            last_log_term: 0,
            peers: SmallVec::new(),
            elections_started: 0,
            elections_won: 0,
            step_downs: 0,
            messages_in: 0,
            messages_out: 0,
            killed: false,
            transfer_target: None,
            lease: false,
            reads_confirmed: 0,
            lease_reads: 0,
            transfers_started: 0,
            transfers_abandoned: 0,
            membership: None,
        }
    }
}

/// The cluster configuration a node has in force, as its thread last published it
/// ([`Raft::membership`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MembershipStatus {
    /// The configuration: voters, learners, and the outgoing voters while joint.
    pub membership: Membership,
    /// The index of the log entry that holds it (the snapshot's index if it came with a
    /// snapshot, 0 for the configuration the node was built with).
    pub index: u64,
    /// Whether the node knows that entry committed.
    pub committed: bool,
}

/// What node `id` is in a configuration, as a dashboard or a metric shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemberRole {
    /// It votes, and (while joint) in both halves, or the configuration is not joint.
    Voter,
    /// While joint: it votes in the incoming half only (it is being added).
    Joining,
    /// While joint: it votes in the outgoing half only (it is being removed).
    Leaving,
    /// It receives the log but does not vote.
    Learner,
    /// It is not in the configuration.
    None,
}

impl MemberRole {
    /// Its name, as labels and screens show it: `voter`, `joining`, `leaving`, `learner`,
    /// `none`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Voter => "voter",
            Self::Joining => "joining",
            Self::Leaving => "leaving",
            Self::Learner => "learner",
            Self::None => "none",
        }
    }
}

impl MembershipStatus {
    /// What node `id` is in this configuration.
    pub fn role_of(&self, id: usize) -> MemberRole {
        let m = &self.membership;
        let incoming = m.voters().any(|v| v == id);
        let outgoing = m.outgoing().any(|v| v == id);
        match (incoming, outgoing, m.is_joint()) {
            (true, _, false) | (true, true, true) => MemberRole::Voter,
            (true, false, true) => MemberRole::Joining,
            (false, true, _) => MemberRole::Leaving,
            (false, false, _) if m.learners().any(|l| l == id) => MemberRole::Learner,
            (false, false, _) => MemberRole::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_what_the_configuration_makes_it() {
        let old = Membership::new([0, 1, 2], []).unwrap();
        let target = Membership::new([1, 2, 3], [4]).unwrap();
        let joint = MembershipStatus {
            membership: old.enter_joint(&target).unwrap(),
            index: 5,
            committed: false,
        };
        let settled = MembershipStatus {
            membership: target,
            ..joint
        };
        // (node, role while joint, role after)
        let cases = [
            (0, MemberRole::Leaving, MemberRole::None),
            (1, MemberRole::Voter, MemberRole::Voter),
            (3, MemberRole::Joining, MemberRole::Voter),
            (4, MemberRole::Learner, MemberRole::Learner),
            (5, MemberRole::None, MemberRole::None),
        ];
        for (case, (node, in_joint, after)) in cases.into_iter().enumerate() {
            assert_eq!(joint.role_of(node), in_joint, "case {case}");
            assert_eq!(settled.role_of(node), after, "case {case}");
        }
    }
}
