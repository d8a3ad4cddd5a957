//! Membership change (Raft thesis §4): which configuration is in force, how a leader proposes a
//! new one, leaves a joint one, and steps down once it is no longer a voter. The design is
//! docs/membership.md; the configuration itself is [`Membership`].
//!
//! # The configuration in force
//!
//! A node uses the configuration of the last configuration entry in its log as soon as the
//! entry is appended, committed or not (thesis §4.1): a leader when it proposes it, a follower
//! when an AppendEntries brings it. With none in the log, the snapshot's; with neither, the
//! initial one the node was built with ([`Core::set_initial_membership`]). A follower whose
//! suffix holding a configuration entry is truncated falls back to the latest one left; a
//! snapshot installed from a leader brings its own. The core keeps the index of the entry in
//! force (`membership_index`), so a truncation above it, compaction, and the hot path of
//! append (one branch on each new entry's kind) never search the log.
//!
//! # A change
//!
//! [`Core::propose_membership`] takes a target configuration (voters and learners). If only
//! learners change, the leader appends the target itself. If voters change, however many, it
//! appends the joint configuration `C_old,new` (thesis §4.3): from then on elections and commits
//! need a majority of both the old and the new voters. Once that entry commits the leader
//! appends `C_new` (the same without the old voters) by itself: nothing the old voters alone
//! decide can then contradict it. A single-voter change could skip the joint phase (§4.2), but
//! only with the extra rule that the leader has committed an entry of its term; going through
//! joint always is as cheap here (one more entry) and needs no such rule.
//!
//! One change at a time: a leader refuses a new one while its log holds a configuration entry
//! above its commit index, or while it is joint. A voter to add must be a learner already that
//! holds the leader's committed log, so that adding it does not stall commits while it catches
//! up.
//!
//! # Who votes, who campaigns, who is sent entries
//!
//! - The leader replicates to every member (voters of both halves and learners), never to a
//!   node outside the configuration; learners' acknowledgements move their progress but no
//!   quorum asks for them ([`super::quorum::JointMajority`] counts voters only).
//! - A node that is not a voter of its configuration (a learner, or a node removed) never
//!   campaigns, PreVote included, and never takes a TimeoutNow; a candidate asks voters only,
//!   and a vote from anyone else counts for nothing.
//! - A leader that is not a voter of `C_new` (it removed itself) goes on replicating and
//!   committing `C_new` without counting itself (§4.2.2), and steps down once `C_new` commits.
//!
//! # Invariants
//!
//! - `membership` is the configuration of the entry at `membership_index`, and no entry after
//!   it in the log is a configuration entry; `quorum` is `membership`'s.
//! - Every member's id is below the node count the core was built with.
//! - A leader's log holds at most one configuration entry above its commit index.

use super::Nanos;
use super::membership::{Membership, MembershipError};
use super::quorum::NodeSet;
use super::{Bug, Core, Entry, EntryKind, Hooks, Progress, Role};

/// Why a leader did not start a membership change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipChangeError {
    /// This node does not lead.
    NotLeader,
    /// A change is under way: a configuration entry is not yet committed, or the configuration
    /// is joint.
    ChangeInProgress,
    /// A leadership transfer is under way: the leader takes no proposal meanwhile.
    TransferInProgress,
    /// The target names a node this node has no place for (its id is not below the node
    /// count it was built with).
    UnknownNode(usize),
    /// A node to become a voter is not a learner holding the leader's committed log.
    NotCaughtUp(usize),
    /// The target is no configuration a cluster can move to from this one.
    Invalid(MembershipError),
}

impl std::fmt::Display for MembershipChangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotLeader => write!(f, "this node does not lead"),
            Self::ChangeInProgress => write!(f, "a membership change is under way"),
            Self::TransferInProgress => write!(f, "a leadership transfer is under way"),
            Self::UnknownNode(id) => write!(f, "node {id} is not one this node can reach"),
            Self::NotCaughtUp(id) => write!(
                f,
                "node {id} is to vote but is not a learner holding the committed log"
            ),
            Self::Invalid(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for MembershipChangeError {}

impl<H: Hooks> Core<H> {
    /// The configuration in force (see the module docs).
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The index of the configuration entry in force: the snapshot's index if the configuration
    /// came with the snapshot, 0 if it is the initial one.
    pub fn membership_index(&self) -> u64 {
        self.membership_index
    }

    /// Sets the configuration this node starts with, in force until its log or snapshot holds
    /// one (by default every node `0..peers` votes). Every node of a cluster must be given the
    /// same one, as they are given the same node count; a node not in it (one to be added
    /// later) waits for a leader to send it the log.
    ///
    /// # Panics
    ///
    /// If `initial` names a node at or above the node count.
    pub fn set_initial_membership(&mut self, initial: Membership) {
        self.assert_known(&initial);
        self.initial_membership = initial;
        if self.membership_index == 0 && self.snapshot.as_ref().is_none_or(|s| s.config.is_none()) {
            self.set_membership(initial, 0);
        }
        self.debug_check_invariants();
    }

    /// Whether a leader appends the configuration that leaves a joint one by itself, once the
    /// joint one commits (the default), or leaves that to its driver, which then watches
    /// [`Core::leave_joint_due`] and calls [`Core::propose_leave_joint`] (the runtime does: its
    /// callers claim log indices ahead of the node's thread).
    pub fn set_leave_joint_automatically(&mut self, automatically: bool) {
        self.leave_joint_automatically = automatically;
    }

    /// Whether this node campaigns when its election timer fires. A voter of the configuration
    /// in force does. So does a node that the configuration in force removes, while that
    /// configuration is not known to be committed, if it voted in the one before (thesis
    /// §4.2.2): until the configuration without it commits, it may be needed, for it may be the
    /// only node holding that configuration (a leader that removed itself and lost its
    /// leadership before the entry committed: the others, still joint, need its vote, which it
    /// refuses to a log behind its own). Its own vote does not count. A learner never
    /// campaigns, nor a node whose removal is committed.
    pub(super) fn may_campaign(&self) -> bool {
        if self.membership.is_voter(self.id) {
            return true;
        }
        self.membership_index > self.commit_index
            && self
                .find_membership(self.membership_index - 1)
                .0
                .is_voter(self.id)
    }

    /// Whether a leader just elected appends an empty entry of its term although
    /// [`CoreConfig::leader_no_op`](super::CoreConfig::leader_no_op) is off: when a
    /// configuration entry of an earlier term is not known to be committed, which only an entry
    /// of its own term can commit (§5.4.2). Without it, a change its predecessor started stays
    /// uncommitted (the cluster joint, a removed node still needed) until a client's command
    /// commits. Only when the core leaves joint by itself
    /// ([`Core::set_leave_joint_automatically`]): the runtime, whose callers claim log indices,
    /// appends no entry it was not asked for.
    pub(super) fn config_no_op_due(&self) -> bool {
        self.leave_joint_automatically && self.membership_index > self.commit_index
    }

    /// Whether this leader's configuration is joint and committed: it should append the
    /// configuration that leaves it.
    pub fn leave_joint_due(&self) -> bool {
        self.role == Role::Leader
            && self.membership.is_joint()
            && self.membership_index <= self.commit_index
    }

    /// Appends the configuration that leaves the joint one in force, if that is due
    /// ([`Core::leave_joint_due`]). Returns its index.
    pub fn propose_leave_joint(&mut self, now: Nanos) -> Option<u64> {
        self.now = self.now.max(now);
        let index = self
            .leave_joint_due()
            .then(|| self.append_config(self.membership.leave_joint()));
        self.debug_check_invariants();
        index
    }

    /// What [`Core::propose_membership`] would append to move towards `target`: the joint
    /// configuration if voters change, `target` itself if only learners do; `None` if `target`
    /// is in force already.
    ///
    /// # Errors
    ///
    /// As [`Core::propose_membership`].
    pub fn membership_step(
        &self,
        target: &Membership,
    ) -> Result<Option<Membership>, MembershipChangeError> {
        if self.role != Role::Leader {
            return Err(MembershipChangeError::NotLeader);
        }
        if self.transfer.is_some() {
            return Err(MembershipChangeError::TransferInProgress);
        }
        let overlapping = self.hooks.has(Bug::OverlappingSingleSteps);
        if self.membership.is_joint() || (self.membership_index > self.commit_index && !overlapping)
        {
            return Err(MembershipChangeError::ChangeInProgress);
        }
        if let Some(id) = target.members().iter().find(|&id| id >= self.peers) {
            return Err(MembershipChangeError::UnknownNode(id));
        }
        for id in target.voters() {
            let promoted = !self.membership.is_voter(id);
            if promoted
                && (!self.membership.learners().any(|l| l == id)
                    || self.progress[id].match_index < self.commit_index)
            {
                return Err(MembershipChangeError::NotCaughtUp(id));
            }
        }
        let mut next = self
            .membership
            .enter_joint(target)
            .map_err(MembershipChangeError::Invalid)?;
        if overlapping
            && (self.membership.voter_set().bits() ^ target.voter_set().bits()).count_ones() == 1
        {
            next = next.leave_joint();
        }
        Ok((next != self.membership).then_some(next))
    }

    /// Starts moving the cluster to `target` (voters and learners; see the module docs): appends
    /// the joint configuration, or `target` itself if only learners change, and sends it.
    /// Returns the index of the entry appended, or of the one in force if `target` is in force
    /// already. The change is done once a non-joint configuration equal to `target` is in force
    /// and committed ([`Core::membership_index`] at or below [`Core::commit_index`]).
    ///
    /// # Errors
    ///
    /// [`MembershipChangeError`]: this node does not lead, a change or a leadership transfer is
    /// under way, `target` names a node this core has no place for, a new voter is not a
    /// caught-up learner, or a voter would become a learner in the same change.
    pub fn propose_membership(
        &mut self,
        now: Nanos,
        target: &Membership,
    ) -> Result<u64, MembershipChangeError> {
        self.now = self.now.max(now);
        let index = match self.membership_step(target)? {
            Some(next) if next.is_joint() && self.hooks.has(Bug::LeaveJointEarly) => {
                self.append_config(next);
                self.append_config(next.leave_joint())
            }
            Some(next) => self.append_config(next),
            None => self.membership_index,
        };
        self.debug_check_invariants();
        Ok(index)
    }

    /// A leader appends a configuration entry holding `next`, puts it in force and sends it.
    fn append_config(&mut self, next: Membership) -> u64 {
        self.assert_role(Role::Leader);
        let index = self.log.last_index() + 1;
        self.log.push(Entry {
            term: self.term,
            kind: EntryKind::Config,
            command: next.encode(),
        });
        self.log_dirty_from = self.log_dirty_from.min(index);
        self.set_membership(next, index);
        tracing::debug!(
            node = self.id,
            term = self.term,
            index,
            membership = ?next,
            "proposed a configuration"
        );
        self.broadcast_append();
        index
    }

    /// A leader whose commit index moved: leaves a joint configuration that is now committed,
    /// and steps down if a committed configuration no longer counts it as a voter.
    pub(super) fn after_commit_membership(&mut self) {
        if self.role != Role::Leader || self.membership_index > self.commit_index {
            return;
        }
        if self.membership.is_joint() {
            if self.leave_joint_automatically {
                self.append_config(self.membership.leave_joint());
            }
        } else if !self.membership.is_voter(self.id) {
            tracing::debug!(
                node = self.id,
                term = self.term,
                index = self.membership_index,
                "stepping down: no longer a voter of the committed configuration"
            );
            self.become_follower(self.term, None);
        }
    }

    /// Puts `next`, held by the entry at `index` (the snapshot's index, or 0 for the initial
    /// one), in force. A leader starts probing members new to it at its last entry.
    pub(super) fn set_membership(&mut self, next: Membership, index: u64) {
        self.assert_known(&next);
        let added = NodeSet::from_bits(next.members().bits() & !self.membership.members().bits());
        if next != self.membership {
            tracing::debug!(
                node = self.id,
                term = self.term,
                index,
                membership = ?next,
                "configuration in force"
            );
        }
        self.membership = next;
        self.membership_index = index;
        self.quorum = next.quorum();
        if self.role == Role::Leader {
            // From the last entry (the configuration that added them, when a leader appends
            // one): they are sent it at once, and a rejection's hint takes the leader back to
            // where their logs end.
            let probe_from = self.log.last_index().max(1);
            for id in added.iter().filter(|&id| id != self.id) {
                self.progress[id] = Progress::new(probe_from, self.config.max_inflight);
            }
        }
    }

    /// The configuration in force at `index` and the index of the entry holding it (see
    /// [`Core::membership_index`]), searching the log from `index` down, then the snapshot.
    pub(super) fn find_membership(&self, index: u64) -> (Membership, u64) {
        let mut at = index.min(self.log.last_index());
        while at > self.log.offset() {
            let entry = self.log.entry(at).expect("an index within the log");
            if entry.kind == EntryKind::Config {
                return (self.decode_config(at, &entry.command), at);
            }
            at -= 1;
        }
        match self.snapshot.as_ref() {
            Some(s) if s.index <= index => match &s.config {
                Some(config) => (self.decode_config(s.index, config), s.index),
                None => (self.initial_membership, 0),
            },
            _ => (self.initial_membership, 0),
        }
    }

    /// The configuration in force at `index` (at most the last index), without searching the log
    /// when the entry in force is at or below it.
    pub(super) fn membership_at(&self, index: u64) -> (Membership, u64) {
        if self.membership_index <= index {
            (self.membership, self.membership_index)
        } else {
            self.find_membership(index)
        }
    }

    /// The configuration to record in a snapshot up to `index`: `None` if the initial one is in
    /// force there (as a snapshot taken before configurations existed records it).
    pub(super) fn snapshot_config(&self, index: u64) -> Option<bytes::Bytes> {
        let (membership, at) = self.membership_at(index);
        (at > 0).then(|| membership.encode())
    }

    /// Recomputes the configuration in force from the log and the snapshot: after a truncation
    /// or a snapshot changed what the log holds.
    pub(super) fn refresh_membership(&mut self) {
        let (membership, index) = self.find_membership(self.log.last_index());
        self.set_membership(membership, index);
    }

    /// The configuration the entry at `index` holds.
    ///
    /// # Panics
    ///
    /// If it is no valid configuration: a leader appends only valid ones, and recovery checks
    /// them ([`super::check_recovered_state`]).
    fn decode_config(&self, index: u64, bytes: &[u8]) -> Membership {
        Membership::decode(bytes).unwrap_or_else(|e| {
            panic!(
                "node {} term {}: the configuration at index {index} is unreadable: {e}",
                self.id, self.term
            )
        })
    }

    /// Asserts that every member of `membership` is a node this core knows.
    fn assert_known(&self, membership: &Membership) {
        let members = membership.members();
        assert!(
            members.iter().all(|id| id < self.peers),
            "node {} term {}: configuration {:?} names a node beyond the {} this node knows",
            self.id,
            self.term,
            membership,
            self.peers
        );
    }
}
