//! The core's invariants as code.
//!
//! Every `Invariant:` stated on the core's fields, on [`Progress`] and [`Inflights`], and on
//! [`Log`] is checked here, together with what the roles imply (a leader leads its own term and
//! voted for itself, a candidate's election is still open, a pre-candidate is a follower with
//! no leader). [`Core::check_invariants`] takes time in proportion to the number of nodes and
//! the in-flight windows, never to the length of the log, so that the deterministic simulator
//! can run it after every event of every run. What needs a pass over the log or a queue
//! ([`Core::check_log_invariants`]: terms never decrease along the log, its byte count, the
//! order of held messages and writes) is for tests, and is otherwise asserted where it could
//! break, at the cost of O(1): an appended entry's term is not below the last one.
//!
//! Debug builds run [`Core::check_invariants`] after every input the driver gives a core
//! (`step`, `tick`, `propose`, `persisted`, reads, transfers, compaction, applying, and on
//! construction) and panic with the broken invariant; release builds do not, and keep only
//! the O(1) asserts on their paths. While a bug is switched on ([`Hooks`]) the check is
//! skipped: a broken rule may break a local invariant on purpose, and it is the simulator's
//! checker that must catch it.

use super::quorum::{NodeSet, VoteResult};
use super::replication::{MAX_BUFFER_CAPACITY, MAX_SPARE_BUFFERS};
use super::{Core, Hooks, Role};
#[cfg(doc)]
use super::{Inflights, Log, Progress};

/// A broken invariant of a core: which one, on which node and in which term, and the values
/// involved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvariantError {
    /// The node whose state is broken.
    pub node: usize,
    /// Its term.
    pub term: u64,
    /// For an invariant of the leader's record of one follower, that follower.
    pub peer: Option<usize>,
    /// The invariant, as stated where it lives (`commit_index <= last index`, say).
    pub invariant: &'static str,
    /// The values involved, by name.
    pub values: Vec<(&'static str, u64)>,
}

impl std::fmt::Display for InvariantError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node {} term {}", self.node, self.term)?;
        if let Some(peer) = self.peer {
            write!(f, ", follower {peer}")?;
        }
        write!(f, ": broken invariant `{}`", self.invariant)?;
        for (i, (name, value)) in self.values.iter().enumerate() {
            let sep = if i == 0 { " (" } else { ", " };
            write!(f, "{sep}{name} {value}")?;
        }
        if !self.values.is_empty() {
            write!(f, ")")?;
        }
        Ok(())
    }
}

impl std::error::Error for InvariantError {}

/// A broken invariant of a part of the core (the log, one follower's progress), before the
/// core adds who and when.
#[derive(Debug)]
pub(super) struct Violation {
    pub(super) invariant: &'static str,
    pub(super) values: Vec<(&'static str, u64)>,
}

/// A value an invariant involves, as the number it is reported as.
pub(super) trait Value {
    fn value(self) -> u64;
}

impl Value for u64 {
    fn value(self) -> u64 {
        self
    }
}

impl Value for usize {
    fn value(self) -> u64 {
        self as u64
    }
}

impl Value for bool {
    fn value(self) -> u64 {
        u64::from(self)
    }
}

/// `ensure!(condition, "invariant", name = value, ...)`: returns a [`Violation`] naming the
/// invariant and the values if the condition does not hold. The values are only gathered then.
macro_rules! ensure {
    ($cond:expr, $invariant:literal $(, $name:ident = $value:expr)* $(,)?) => {
        if !$cond {
            return Err($crate::core::invariants::Violation {
                invariant: $invariant,
                values: vec![
                    $((stringify!($name), $crate::core::invariants::Value::value($value))),*
                ],
            });
        }
    };
}
pub(super) use ensure;

impl<H: Hooks> Core<H> {
    /// Checks the invariants of this core's state, in time proportional to the number of nodes
    /// and the leader's in-flight windows (not to the log's length): the ones stated on its
    /// fields, on the leader's [`Progress`] of each follower and on the [`Log`], and those the
    /// roles imply. See [`Core::check_log_invariants`] for the rest.
    ///
    /// # Errors
    ///
    /// The first broken invariant found, naming this node, its term, the invariant and the
    /// values involved.
    pub fn check_invariants(&self) -> Result<(), InvariantError> {
        self.check_state().map_err(|v| self.broken(None, v))?;
        self.check_membership().map_err(|v| self.broken(None, v))?;
        self.log
            .check_invariants()
            .map_err(|v| self.broken(None, v))?;
        if self.role == Role::Leader {
            for peer in self.others() {
                self.progress[peer]
                    .check_invariants(self.log.last_index(), self.commit_index, self.round)
                    .map_err(|v| self.broken(Some(peer), v))?;
            }
        }
        Ok(())
    }

    /// Checks the invariants that take a pass over the log or over a queue: terms never
    /// decrease along the log and its byte count is the sum of its commands' lengths; held
    /// messages wait for generations that never decrease; writes under way make durable last
    /// indices that never decrease; pending reads are in the order of their rounds. Meant for
    /// tests: it takes time in proportion to the log.
    ///
    /// # Errors
    ///
    /// As [`Core::check_invariants`].
    pub fn check_log_invariants(&self) -> Result<(), InvariantError> {
        self.log.check_entries().map_err(|v| self.broken(None, v))?;
        self.check_membership_in_log()
            .map_err(|v| self.broken(None, v))?;
        self.check_queues().map_err(|v| self.broken(None, v))
    }

    /// In debug builds, panics with the broken invariant if [`Core::check_invariants`] finds
    /// one, unless a bug is switched on (see the module docs). Nothing in release builds.
    #[inline]
    pub(super) fn debug_check_invariants(&self) {
        #[cfg(debug_assertions)]
        if !super::Bug::ALL.into_iter().any(|bug| self.hooks.has(bug))
            && let Err(broken) = self.check_invariants()
        {
            panic!("{broken}");
        }
    }

    /// Panics unless `peer` is another node of the cluster: a message to or about this node
    /// itself, or an unknown one, is a bug in the core.
    #[track_caller]
    pub(super) fn assert_peer(&self, peer: usize) {
        assert!(
            peer < self.peers && peer != self.id,
            "node {} term {}: {} is not another node of {}",
            self.id,
            self.term,
            peer,
            self.peers
        );
    }

    /// Panics unless this node plays `role`: a handler reached from the wrong role's dispatch.
    #[track_caller]
    pub(super) fn assert_role(&self, role: Role) {
        assert!(
            self.role == role,
            "node {} term {}: a {:?} handler run as {:?}",
            self.id,
            self.term,
            role,
            self.role
        );
    }

    fn broken(&self, peer: Option<usize>, violation: Violation) -> InvariantError {
        InvariantError {
            node: self.id,
            term: self.term,
            peer,
            invariant: violation.invariant,
            values: violation.values,
        }
    }

    /// The configuration in force: its quorum is the one asked, its members are nodes this core
    /// knows, and the entry it names holds it.
    fn check_membership(&self) -> Result<(), Violation> {
        let members = self.membership.members();
        ensure!(
            self.quorum == self.membership.quorum() && members.iter().all(|id| id < self.peers),
            "the quorum is the configuration's, whose members are nodes of the cluster",
            members = members.bits(),
            peers = self.peers,
        );
        let index = self.membership_index;
        ensure!(
            index <= self.log.last_index(),
            "the configuration in force is held by an entry of the log or the snapshot",
            membership_index = index,
            last_index = self.log.last_index(),
        );
        if index > self.log.offset() {
            let entry = self.log.entry(index).expect("within the log");
            let holds = entry.kind == super::EntryKind::Config
                && super::Membership::decode(&entry.command).ok() == Some(self.membership);
            ensure!(
                holds,
                "the entry at membership_index holds the configuration in force",
                membership_index = index,
            );
        }
        Ok(())
    }

    /// No configuration entry follows the one in force, and a search of the log finds the
    /// configuration in force.
    fn check_membership_in_log(&self) -> Result<(), Violation> {
        let (found, at) = self.find_membership(self.log.last_index());
        ensure!(
            (found, at) == (self.membership, self.membership_index),
            "the configuration in force is the latest in the log (or the snapshot's, or the \
             initial one)",
            membership_index = self.membership_index,
            found_at = at,
        );
        Ok(())
    }

    fn check_state(&self) -> Result<(), Violation> {
        let last = self.log.last_index();
        let offset = self.log.offset();
        ensure!(
            self.commit_index <= last,
            "commit_index <= last index",
            commit_index = self.commit_index,
            last_index = last,
        );
        ensure!(
            self.last_applied <= self.commit_index,
            "last_applied <= commit_index",
            last_applied = self.last_applied,
            commit_index = self.commit_index,
        );
        ensure!(
            offset <= self.commit_index,
            "a snapshot holds only committed entries: log offset <= commit_index",
            offset = offset,
            commit_index = self.commit_index,
        );
        ensure!(
            self.snapshot_to_apply || offset <= self.last_applied,
            "the entries a snapshot replaced were applied, or the snapshot is yet to be",
            offset = offset,
            last_applied = self.last_applied,
        );
        ensure!(
            self.log.last_term() <= self.term,
            "no entry of a term above the current term",
            last_term = self.log.last_term(),
        );
        ensure!(
            self.durable_index <= last,
            "durable_index <= last index",
            durable_index = self.durable_index,
            last_index = last,
        );
        self.check_snapshot()?;
        self.check_writes()?;
        self.check_buffers()?;
        self.check_role()
    }

    fn check_snapshot(&self) -> Result<(), Violation> {
        let offset = self.log.offset();
        let (index, term) = self.snapshot.as_ref().map_or((0, 0), |s| (s.index, s.term));
        ensure!(
            self.snapshot.is_some() || offset == 0,
            "a snapshot whenever log offset > 0",
            offset = offset,
        );
        ensure!(
            index == offset && Some(term) == self.log.term(offset),
            "the snapshot ends at the log's offset, with its term",
            snapshot_index = index,
            snapshot_term = term,
            offset = offset,
            offset_term = self.log.term(offset).unwrap_or(u64::MAX),
        );
        ensure!(
            !self.snapshot_to_apply || (self.snapshot.is_some() && self.last_applied <= index),
            "a snapshot to apply is present and not behind last_applied",
            snapshot_index = index,
            last_applied = self.last_applied,
        );
        if let Some((term, index, last_term, data)) = &self.incoming {
            ensure!(
                *term <= self.term && *index > 0 && *last_term <= *term,
                "a snapshot being received is of this or an earlier leadership",
                leader_term = *term,
                index = *index,
                last_term = *last_term,
                received = data.len(),
            );
        }
        Ok(())
    }

    /// Writes under way are the generations `durable_gen + 1 ..= taken_gen`, in order; held
    /// messages wait for generations above `durable_gen` and at most one past `taken_gen` (the
    /// write not yet taken). The first and last of each queue are enough for these; the order
    /// in between is [`Core::check_log_invariants`]'s.
    fn check_writes(&self) -> Result<(), Violation> {
        ensure!(
            self.durable_gen <= self.taken_gen,
            "durable_gen <= taken_gen",
            durable_gen = self.durable_gen,
            taken_gen = self.taken_gen,
        );
        let outstanding = self.taken_gen - self.durable_gen;
        let first = self.writing.front().map_or(0, |w| w.0);
        let (newest, newest_last) = self.writing.back().copied().unwrap_or_default();
        ensure!(
            self.writing.len() as u64 == outstanding
                && (outstanding == 0
                    || (first == self.durable_gen + 1 && newest == self.taken_gen)),
            "the writes under way are durable_gen + 1 ..= taken_gen",
            writes = self.writing.len(),
            first = first,
            last = newest,
            durable_gen = self.durable_gen,
            taken_gen = self.taken_gen,
        );
        ensure!(
            newest_last <= self.log.last_index(),
            "a write under way makes durable no index past the log's end",
            write_last_index = newest_last,
            last_index = self.log.last_index(),
        );
        let first_held = self.held.front().map_or(u64::MAX, |h| h.0);
        let last_held = self.held.back().map_or(0, |h| h.0);
        ensure!(
            self.held.is_empty()
                || (first_held > self.durable_gen
                    && first_held <= last_held
                    && last_held <= self.taken_gen + 1),
            "held messages wait for generations above durable_gen, in order",
            first = first_held,
            last = last_held,
            durable_gen = self.durable_gen,
            taken_gen = self.taken_gen,
        );
        Ok(())
    }

    fn check_buffers(&self) -> Result<(), Violation> {
        ensure!(
            self.spare_buffers.len() <= MAX_SPARE_BUFFERS,
            "at most MAX_SPARE_BUFFERS spare entry buffers",
            buffers = self.spare_buffers.len(),
        );
        for buffer in &self.spare_buffers {
            ensure!(
                buffer.is_empty() && (1..=MAX_BUFFER_CAPACITY).contains(&buffer.capacity()),
                "a spare entry buffer is empty, with a capacity in 1..=MAX_BUFFER_CAPACITY",
                len = buffer.len(),
                capacity = buffer.capacity(),
            );
        }
        Ok(())
    }

    fn check_role(&self) -> Result<(), Violation> {
        let me = self.id;
        let leader = self.leader.map_or(u64::MAX, |l| l as u64);
        let voted_for = self.voted_for.map_or(u64::MAX, |v| v as u64);
        ensure!(
            self.leader.is_none_or(|l| l < self.peers)
                && self.voted_for.is_none_or(|v| v < self.peers)
                && self.progress.len() == self.peers,
            "leader, vote and progress name nodes of the cluster",
            leader = leader,
            voted_for = voted_for,
            peers = self.peers,
            progress = self.progress.len(),
        );
        ensure!(
            !self.pre_voting || (self.role == Role::Follower && self.leader.is_none()),
            "a pre-candidate is a follower with no known leader",
            leader = leader,
            leader_role = self.role == Role::Leader,
        );
        ensure!(
            (self.role == Role::Leader) == (self.leader == Some(me)),
            "a node names itself leader exactly when it leads",
            leader = leader,
            leads = self.role == Role::Leader,
        );
        ensure!(
            self.role == Role::Follower || self.voted_for == Some(me),
            "a candidate or leader voted for itself",
            voted_for = voted_for,
        );
        ensure!(
            self.votes.granted().intersection(self.votes.rejected()) == NodeSet::EMPTY,
            "no node both granted and refused a vote",
        );
        let result = self.quorum.vote_result(&self.votes);
        let open = self.role == Role::Candidate || self.pre_voting;
        ensure!(
            !open || (result == VoteResult::Pending && self.votes.granted().contains(me)),
            "an election under way counts its own vote and is neither won nor lost",
            won = result == VoteResult::Won,
            lost = result == VoteResult::Lost,
        );
        if self.role != Role::Leader {
            ensure!(
                self.transfer.is_none() && self.pending_reads.is_empty(),
                "only a leader transfers leadership or holds reads waiting for a round",
                transfer = self.transfer.is_some(),
                pending_reads = self.pending_reads.len(),
            );
            return Ok(());
        }
        // The tally is of the configuration the leader was elected in: one it appended since (or
        // compacted into a snapshot since) may count other voters.
        let changed_since = self.membership_index > 0
            && self
                .log
                .term(self.membership_index)
                .is_none_or(|term| term == self.term);
        ensure!(
            (result == VoteResult::Won || changed_since) && self.recent_active.contains(me),
            "a leader won its election (in the configuration of then) and counts itself heard \
             from",
            won = result == VoteResult::Won,
        );
        if let Some(t) = self.transfer {
            ensure!(
                t.target != me && t.target < self.peers && t.index <= self.log.last_index(),
                "a transfer goes to another node of the cluster, to an index the log holds",
                target = t.target,
                index = t.index,
            );
        }
        if let Some((round, started)) = self.lease_round {
            ensure!(
                round <= self.round && started <= self.now,
                "a lease round has started",
                lease_round = round,
                round = self.round,
            );
        }
        let newest_read = self.pending_reads.back().map_or(0, |r| r.round);
        ensure!(
            newest_read <= self.round,
            "a pending read waits for a round already started",
            read_round = newest_read,
            round = self.round,
        );
        Ok(())
    }

    fn check_queues(&self) -> Result<(), Violation> {
        let mut previous = 0;
        for &(generation, ..) in &self.held {
            ensure!(
                generation >= previous,
                "held messages' generations never decrease",
                generation = generation,
                previous = previous,
            );
            previous = generation;
        }
        let mut previous = 0;
        for &(generation, last) in &self.writing {
            ensure!(
                last >= previous,
                "writes under way make durable last indices that never decrease",
                generation = generation,
                last_index = last,
                previous = previous,
            );
            previous = last;
        }
        let mut previous = 0;
        for read in &self.pending_reads {
            ensure!(
                read.round >= previous,
                "pending reads are in the order of their rounds",
                round = read.round,
                previous = previous,
            );
            previous = read.round;
        }
        Ok(())
    }
}
