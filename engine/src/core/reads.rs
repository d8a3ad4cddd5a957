//! Linearizable reads (ReadIndex and leases, Raft thesis §6.4) and leadership transfer
//! (Raft thesis §3.10).
//!
//! # Linearizable reads and leases
//!
//! Every AppendEntries carries the leader's heartbeat *round*, which the reply echoes; a new
//! round starts with every heartbeat broadcast. A reply in the leader's term to round `r` shows
//! that the follower still followed this leader after round `r` began. [`Core::read_index`]
//! (ReadIndex, Raft thesis §6.4) registers reads with the commit index (once the leader has
//! committed an entry of its own term, which [`CoreConfig::leader_no_op`] makes immediate) and
//! starts a round; a majority answering it or a later one confirms them. [`Core::read_lease`]
//! confirms at once while the leader holds a lease: with CheckQuorum, a node that answered the
//! leader ignores RequestVote for `election_timeout_min` after it heard from it (stickiness),
//! and for `election_timeout_min` after it restarted (it may have answered just before), so
//! once a majority answered a round started at `t`, no other leader can be elected before
//! `t + election_timeout_min`. The lease ends earlier by twice the clock drift allowed
//! ([`CoreConfig::lease_duration`]).
//!
//! # Leadership transfer
//!
//! [`Core::transfer_leadership`] (Raft thesis §3.10) stops the leader's proposals, brings the
//! target's log up to the leader's last index, and sends it [`Message::TimeoutNow`]; the target
//! campaigns at once, and its RequestVote says so, which lets voters grant it despite
//! stickiness. Because that election ignores leases, the leader gives up its lease for the rest
//! of its term when it starts a transfer. If the target is not leader within
//! `election_timeout_min`, the leader abandons the transfer and takes proposals again.
//!
//! # Invariants
//!
//! - A read is confirmed only with the answers of a majority, the leader included, to a round
//!   that started after the read was registered, and with a read index at or past an entry of
//!   the leader's term (before that, its commit index may lag what earlier leaders committed).
//! - Pending reads wait in the order of their rounds, and no round is answered before it starts.
//! - Only a leader holds pending reads or transfers leadership; on stepping down it refuses its
//!   pending reads. A leader that started a transfer has no lease for the rest of its term.

use super::{Bug, Hooks};
use super::{Core, Message, Nanos, ProgressState, Role, TimeoutNow};
#[cfg(doc)]
use super::{CoreConfig, CoreStats};

/// What became of a read request ([`Core::read_index`], [`Core::read_lease`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadOutcome {
    /// The id the driver gave the request.
    pub id: u64,
    /// The read index: once the service has applied every entry up to it, its state reflects
    /// every write committed before the read was requested. `None` if this node was not, or
    /// stopped being, leader before the read could be confirmed: ask the leader.
    pub index: Option<u64>,
}

/// Why a leadership transfer cannot start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferError {
    /// This node does not lead.
    NotLeader,
    /// The target is not another node of the cluster.
    BadTarget,
    /// A transfer is already under way (to the node named).
    InProgress(usize),
}

/// A leadership transfer under way.
#[derive(Clone, Copy, Debug)]
pub(super) struct Transfer {
    pub(super) target: usize,
    /// The leader's last index when the transfer began: the target campaigns once it holds it.
    pub(super) index: u64,
    /// When the leader gives up and resumes leading.
    pub(super) deadline: Nanos,
    /// Whether TimeoutNow went out.
    pub(super) sent: bool,
}

/// A read waiting for its heartbeat round.
#[derive(Clone, Copy, Debug)]
pub(super) struct PendingRead {
    pub(super) id: u64,
    /// The commit index when the read was registered; 0 until the leader has committed an
    /// entry of its own term (before that, its commit index may lag what earlier leaders
    /// committed).
    pub(super) index: u64,
    /// The round a majority must answer: one started after the read was registered.
    pub(super) round: u64,
}

impl<H: Hooks> Core<H> {
    /// Asks for linearizable reads, one per id (ReadIndex, Raft thesis §6.4). A leader takes
    /// its commit index as the read index, once it has committed an entry of its own term
    /// (before that its commit index may lag what earlier leaders committed; see
    /// [`CoreConfig::leader_no_op`]), and starts a heartbeat round: when a majority, itself
    /// included, has answered that round or a later one, no other leader can have committed
    /// anything it does not know of, and the read is confirmed with that index. Outcomes come
    /// out of [`Core::take_read_outcomes`]; a node that does not lead, or stops leading first,
    /// refuses them (index `None`). Reads of one call share one round.
    ///
    /// Reads wait here while the leader cannot reach a majority; without
    /// [`CoreConfig::check_quorum`] such a leader may never step down, so the driver bounds how
    /// many it asks for.
    pub fn read_index<I>(&mut self, now: Nanos, ids: I)
    where
        I: IntoIterator<Item = u64>,
    {
        self.now = self.now.max(now);
        if self.role == Role::Leader {
            self.register_reads(ids);
        } else {
            self.refuse_reads(ids);
        }
        self.debug_check_invariants();
    }

    /// A leader registers reads `ids` with its read index and starts a round for them.
    fn register_reads(&mut self, ids: impl IntoIterator<Item = u64>) {
        self.assert_role(Role::Leader);
        let index = if self.committed_in_term() {
            self.commit_index
        } else {
            0
        };
        let round = self.round + 1;
        let before = self.pending_reads.len();
        self.pending_reads
            .extend(ids.into_iter().map(|id| PendingRead { id, index, round }));
        if self.pending_reads.len() == before {
            return;
        }
        if self.hooks.has(Bug::ReadWithoutRound) {
            for read in self.pending_reads.iter_mut() {
                read.round = 0;
            }
            self.confirm_rounds();
            return;
        }
        self.start_read_round();
        // A cluster of one is its own majority.
        self.confirm_rounds();
    }

    /// Asks for reads that the leader confirms at once while it holds a lease, and otherwise
    /// as [`Core::read_index`] does.
    ///
    /// The lease: with [`CoreConfig::check_quorum`], a node that answered the leader ignores
    /// RequestVote for `election_timeout_min` after it heard from it (leader stickiness, and the
    /// same after a restart). So once a majority has answered a heartbeat round the leader
    /// started at time `t`, no other leader can be elected before `t + election_timeout_min` by
    /// the voters' clocks, and the leader may confirm reads with its commit index until
    /// `t` + [`CoreConfig::lease_duration`] by its own clock, with no round of their own. This
    /// rests on the clocks' rates differing by at most
    /// [`CoreConfig::max_clock_drift_percent`], and on the driver serving the read promptly
    /// (a process paused for longer than the margin between confirming and reading its state
    /// may return a stale value). Without CheckQuorum there is no lease. A leader that started
    /// a leadership transfer gives up its lease for the rest of its term.
    pub fn read_lease<I>(&mut self, now: Nanos, ids: I)
    where
        I: IntoIterator<Item = u64>,
    {
        self.now = self.now.max(now);
        if !self.has_lease() {
            self.read_index(now, ids);
            return;
        }
        debug_assert!(self.role == Role::Leader && self.committed_in_term());
        let index = self.commit_index;
        let before = self.read_outcomes.len();
        self.read_outcomes
            .extend(ids.into_iter().map(|id| ReadOutcome {
                id,
                index: Some(index),
            }));
        let served = (self.read_outcomes.len() - before) as u64;
        self.stats.reads_confirmed += served;
        self.stats.lease_reads += served;
        self.debug_check_invariants();
    }

    /// Whether this node leads under a lease it may serve reads with now (see
    /// [`Core::read_lease`]).
    pub fn has_lease(&self) -> bool {
        let valid = self.now < self.lease_until;
        let valid = valid || (self.hooks.has(Bug::LeaseAfterExpiry) && self.lease_until > 0);
        self.role == Role::Leader
            && self.config.check_quorum
            && !self.lease_forfeited
            && self.committed_in_term()
            && valid
    }

    /// Reads confirmed or refused since the last call (see [`Core::read_index`]).
    pub fn take_read_outcomes(&mut self) -> std::vec::Drain<'_, ReadOutcome> {
        self.read_outcomes.drain(..)
    }

    /// Whether [`Core::take_read_outcomes`] has anything.
    pub fn has_read_outcomes(&self) -> bool {
        !self.read_outcomes.is_empty()
    }

    /// Reads waiting for their round (leader only).
    pub fn pending_reads(&self) -> usize {
        self.pending_reads.len()
    }

    /// Hands leadership to `target` (Raft thesis §3.10): the leader stops taking proposals,
    /// brings `target`'s log up to its own last index, then tells it to start an election at
    /// once ([`Message::TimeoutNow`]); voters grant it even while they hear from this leader.
    /// If `target` is not leader within `election_timeout_min`, the leader gives up and takes
    /// proposals again ([`CoreStats::transfers_abandoned`]).
    ///
    /// # Errors
    ///
    /// [`TransferError`] if this node does not lead, `target` is this node or not in the
    /// cluster, or a transfer is already under way.
    pub fn transfer_leadership(&mut self, now: Nanos, target: usize) -> Result<(), TransferError> {
        self.now = self.now.max(now);
        let started = self.start_transfer(target);
        self.debug_check_invariants();
        started
    }

    /// [`Core::transfer_leadership`], once the time is updated.
    fn start_transfer(&mut self, target: usize) -> Result<(), TransferError> {
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader);
        }
        if target >= self.peers || target == self.id || !self.membership.is_voter(target) {
            return Err(TransferError::BadTarget);
        }
        if let Some(t) = self.transfer {
            return Err(TransferError::InProgress(t.target));
        }
        self.assert_peer(target);
        tracing::debug!(
            node = self.id,
            term = self.term,
            target,
            "transferring leadership"
        );
        self.transfer = Some(Transfer {
            target,
            index: self.log.last_index(),
            deadline: self.now + self.config.election_timeout_min,
            sent: false,
        });
        self.lease_forfeited = true;
        self.stats.transfers_started += 1;
        self.send_appends_to(target);
        self.maybe_send_timeout_now(target);
        Ok(())
    }

    /// The node this leader is handing its leadership to, while it is.
    pub fn transfer_target(&self) -> Option<usize> {
        self.transfer.map(|t| t.target)
    }

    /// Whether the commit index has reached an entry of this node's term.
    pub(super) fn committed_in_term(&self) -> bool {
        self.log.term(self.commit_index) == Some(self.term)
    }

    fn refuse_reads<I: IntoIterator<Item = u64>>(&mut self, ids: I) {
        self.read_outcomes
            .extend(ids.into_iter().map(|id| ReadOutcome { id, index: None }));
    }

    /// Notes that follower `from` answered round `round` in this term, and confirms what that
    /// lets the leader confirm.
    pub(super) fn note_round(&mut self, from: usize, round: u64) {
        self.assert_peer(from);
        if self.progress[from].maybe_ack_round(round) {
            self.confirm_rounds();
        }
    }

    /// The latest round a majority (this leader included) has answered.
    fn quorum_round(&self) -> u64 {
        let me = self.id;
        self.quorum.quorum_value(|id| {
            if id == me {
                self.round
            } else {
                self.progress[id].acked_round
            }
        })
    }

    /// Extends the lease and confirms the reads whose round a majority has answered.
    pub(super) fn confirm_rounds(&mut self) {
        self.assert_role(Role::Leader);
        let acked = self.quorum_round();
        if let Some((round, started)) = self.lease_round
            && round <= acked
        {
            self.lease_until = self.lease_until.max(started + self.config.lease_duration());
            self.lease_round = None;
        }
        while let Some(read) = self.pending_reads.front()
            && read.index > 0
            && read.round <= acked
        {
            self.read_outcomes.push(ReadOutcome {
                id: read.id,
                index: Some(read.index),
            });
            self.stats.reads_confirmed += 1;
            self.pending_reads.pop_front();
        }
    }

    /// Sends TimeoutNow to the transfer's target once it holds the leader's log up to where the
    /// transfer began.
    pub(super) fn maybe_send_timeout_now(&mut self, peer: usize) {
        let Some(t) = self.transfer.as_mut() else {
            return;
        };
        if t.target != peer || t.sent || self.progress[peer].match_index < t.index {
            return;
        }
        assert!(
            self.role == Role::Leader && peer != self.id,
            "node {} term {}: TimeoutNow to {} as {:?}",
            self.id,
            self.term,
            peer,
            self.role
        );
        t.sent = true;
        let msg = TimeoutNow { term: self.term };
        self.outbox.push((peer, Message::TimeoutNow(msg)));
    }

    pub(super) fn abandon_transfer(&mut self) {
        if let Some(t) = self.transfer.take() {
            tracing::debug!(
                node = self.id,
                term = self.term,
                target = t.target,
                "leadership transfer abandoned"
            );
            self.stats.transfers_abandoned += 1;
        }
    }

    /// The leader of this term hands over its leadership: campaign now, skipping the pre-vote.
    pub(super) fn handle_timeout_now(&mut self, from: usize, m: TimeoutNow) {
        if m.term != self.term || self.leader != Some(from) || !self.membership.is_voter(self.id) {
            return;
        }
        self.assert_role(Role::Follower);
        debug_assert!(
            !self.pre_voting,
            "a follower with a leader is no pre-candidate"
        );
        tracing::debug!(
            node = self.id,
            term = self.term,
            "leadership handed over: campaigning"
        );
        self.campaign(true);
    }

    /// Starts a new round for reads: an empty AppendEntries to every follower in Replicate or
    /// Probe state, at its match index, which it holds. Unlike the periodic heartbeat, it
    /// neither re-probes nor takes unacknowledged batches for lost: reads may start rounds
    /// microseconds apart. Followers receiving a snapshot answer the next chunk's round.
    fn start_read_round(&mut self) {
        self.assert_role(Role::Leader);
        self.round += 1;
        if self.lease_round.is_none() {
            self.lease_round = Some((self.round, self.now));
        }
        for peer in self.others() {
            if self.progress[peer].state != ProgressState::Snapshot {
                self.send_heartbeat(peer);
            }
        }
    }
}
