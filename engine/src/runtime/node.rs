//! The node's thread: it owns the [`Core`], takes what the handle asked for (proposals, reads,
//! snapshots, a leadership transfer) and what the network delivered, steps the core, and drives
//! it with one driver step ([`driver::advance`]), whose [`Io`] here is the network endpoint, the
//! storage writer and the state machine ([`NodeIo`]). Then it answers reads, publishes its
//! status, and sleeps until there is work or a timer is due.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::Sender;

use super::claim::{Proposal, Refused};
use super::freer::Freer;
use super::metrics::{Histograms, IoCounts, NodeMetrics};
use super::panic_message;
use super::snapshotter::Snapshotter;
use super::state_machine::StateMachine;
use super::writer::{Completed, Writer};
use super::{Change, ENTRY_BUFFERS, KEPT_ENTRY_BUFFERS, MAX_MESSAGES_PER_ROUND, Raft, Shared};
use crate::core::{
    Core, EntryKind, Membership, MembershipError, Message, Persist, ReadOutcome, Role, Snapshot,
};
use crate::driver::{self, Io};
use crate::{
    ChangeError, Compaction, Endpoint, MembershipStatus, NodeFailure, PeerStatus, ReadError, Status,
};

/// Everything the node thread owns.
pub(super) struct Node<S> {
    core: Core,
    io: NodeIo<S>,
    shared: Arc<Shared>,
    /// The origin of the core's clock.
    started: Instant,
    spin: Duration,
    /// Proposals taken from the queue that cannot be appended yet (a lower index is still on
    /// its way). Kept sorted by index.
    pending: Vec<Proposal>,
    /// The previously published status, reused when no reader holds it any more.
    spare_status: Option<Arc<Status>>,
    messages_in: u64,
    /// The term this node leads (and has published a claim word for), if any.
    leading_term: Option<u64>,
    /// The term last stored in `Shared::state`.
    published_term: u64,
    /// Leadership epoch: incremented whenever this node starts or stops leading.
    epoch: u64,
    next_read_id: u64,
    metrics: NodeMetrics,
    /// A configuration entry to append at an index claimed for it like a command's (see
    /// [`Node::take_proposals`]). Only while leading the term it was claimed in.
    config_slot: Option<ConfigSlot>,
    /// A membership change asked through the handle: its target, until a configuration equal
    /// to it is in force and committed, and where to answer.
    change: Option<(Membership, Sender<Result<u64, ChangeError>>)>,
    /// What was last published in `Shared::membership`.
    published_membership: MembershipStatus,
}

/// A configuration entry waiting for its claimed index.
#[derive(Clone, Copy, Debug)]
struct ConfigSlot {
    index: u64,
    entry: SlotEntry,
}

/// What a [`ConfigSlot`] appends.
#[derive(Clone, Copy, Debug)]
enum SlotEntry {
    /// The first step towards this target ([`Core::propose_membership`]).
    Towards(Membership),
    /// The configuration that leaves the committed joint one ([`Core::propose_leave_joint`]).
    LeaveJoint,
}

/// A read handed to the core, with where to answer it.
struct AskedRead {
    reply: Sender<Result<u64, ReadError>>,
    /// When it was asked, and whether under the lease: for its latency.
    asked: Instant,
    lease: bool,
}

/// The node's side of a driver step: its endpoint, its storage writer, its state machine, and
/// the reads it was asked for.
struct NodeIo<S> {
    endpoint: Endpoint,
    writer: Writer,
    state_machine: S,
    /// Serializes the state machine's snapshot views, one at a time.
    snapshotter: Snapshotter,
    /// Drops the entries a compaction took out of the log, a slice after each round.
    freer: Freer,
    shared: Arc<Shared>,
    compaction: Compaction,
    /// Whether the storage reported its disk full after its last write (or when it opened).
    disk_full: bool,
    /// The snapshot a compaction is about to replace, held until the step that stores the new
    /// one is over, then retired ([`Snapshotter::retire`]).
    replaced: Option<Bytes>,
    messages_out: u64,
    /// Writes made durable, and the time spent in them.
    syncs: u64,
    sync_time: Duration,
    /// Reads handed to the core and not yet confirmed or refused, by the id given to the core.
    reads_asked: HashMap<u64, AskedRead>,
    /// Reads confirmed with their read index, waiting until it is applied, in the order
    /// confirmed.
    reads_confirmed: VecDeque<(u64, AskedRead)>,
    /// Whether the thread is inside a call to the state machine: a panic there is the state
    /// machine's ([`NodeFailure::StateMachinePanic`]), any other the engine's.
    in_state_machine: bool,
    histograms: Histograms,
    /// When the snapshot being serialized on the snapshot thread was started, if one is.
    snapshot_started: Option<Instant>,
    /// When this round started, on the node's clock (nanoseconds): for the histograms' gates.
    now: u64,
    counts: IoCounts,
}

/// Held by the node thread for as long as it runs its loop; on every way out, a kill or an
/// unwind (a broken invariant), it marks the node killed, retires the claim word and publishes the
/// state without the leader bit, so that `start` stops handing the node commands and `get_state`
/// stops reporting it as leader.
struct RetireOnExit<'a>(&'a Shared);

impl Drop for RetireOnExit<'_> {
    fn drop(&mut self) {
        self.0.killed.store(true, Release);
        self.0.lease.retire_on_exit();
    }
}

impl<S: StateMachine> Node<S> {
    /// The node thread's state, for a core restored from storage in `term`.
    pub(super) fn new(
        core: Core,
        endpoint: Endpoint,
        writer: Writer,
        state_machine: S,
        shared: Arc<Shared>,
        spin: Duration,
        compaction: Compaction,
    ) -> Self {
        let mut core = core;
        // A spare for the log's first compaction, which then leaves the dropped entries to the
        // freer (see `Freer`).
        core.give_log_buffer(Vec::new());
        let term = core.term();
        let (id, peers) = (core.id(), core.peers());
        let published_membership = **shared.membership.load();
        Self {
            io: NodeIo {
                snapshotter: Snapshotter::new(core.id(), endpoint.waker()),
                freer: Freer::new(),
                endpoint,
                writer,
                state_machine,
                shared: shared.clone(),
                compaction,
                disk_full: shared.status.load().disk_full,
                replaced: None,
                messages_out: 0,
                syncs: 0,
                sync_time: Duration::ZERO,
                reads_asked: HashMap::new(),
                reads_confirmed: VecDeque::new(),
                in_state_machine: false,
                histograms: Histograms::new(id),
                snapshot_started: None,
                now: 0,
                counts: IoCounts::default(),
            },
            core,
            shared,
            started: Instant::now(),
            spin,
            pending: Vec::new(),
            spare_status: None,
            messages_in: 0,
            leading_term: None,
            published_term: term,
            epoch: 0,
            next_read_id: 0,
            metrics: NodeMetrics::new(id, peers, term),
            config_slot: None,
            change: None,
            published_membership,
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Runs the node until it is killed or stops on a failure.
    pub(super) fn run(mut self) {
        let shared = self.shared.clone();
        let _guard = RetireOnExit(&shared);
        // Every event the node's thread logs carries its id, term and role.
        let span = self.metrics.span().clone();
        let _entered = span.enter();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_loop()));
        if let Err(panic) = outcome {
            let message = panic_message(&*panic);
            self.fail(if self.io.in_state_machine {
                NodeFailure::StateMachinePanic { message }
            } else {
                NodeFailure::Panic { message }
            });
        }
        // Commands still queued will never be appended: free them now rather than with the last
        // handle. Reads still queued end with the node: dropping them tells their waiters.
        while self.shared.pop_proposal().is_some() {}
        while self.shared.reads.pop().is_some() {}
        while self.shared.membership_requests.pop().is_some() {}
        self.change = None;
        self.io.reads_asked.clear();
        self.io.reads_confirmed.clear();
        self.publish_stopped();
    }

    /// Publishes the last status: killed, with the failure if there was one.
    fn publish_stopped(&self) {
        let mut status = Status::clone(&self.shared.status.load());
        status.killed = true;
        status.disk_full = self.io.disk_full;
        status.failure = self.shared.failure.get().map(|f| f.to_string().into());
        self.shared.status.store(Arc::new(status));
    }

    fn run_loop(&mut self) {
        while !self.shared.killed.load(Acquire) {
            let now = self.now();
            let before = (self.core.log().last_index(), self.core.commit_index());
            let mut handled = 0;
            while handled < MAX_MESSAGES_PER_ROUND {
                let Some((from, msg)) = self.io.endpoint.try_recv() else {
                    break;
                };
                // A leader's message may have arrived after `now` was read: its receipt time,
                // from which this node ignores other candidates (and which a lease counts on),
                // must not be earlier than that.
                let at = match msg {
                    Message::AppendEntries(_) | Message::InstallSnapshot(_) => self.now(),
                    _ => now,
                };
                self.core.step(at, from, msg);
                handled += 1;
            }
            self.messages_in += handled as u64;
            self.core.tick(now);
            self.sync_claim();
            self.take_transfer(now);
            self.take_change();
            self.maybe_claim_leave_joint();
            self.take_proposals(now);
            self.take_reads();
            self.io.now = now;
            if let Err(failure) = driver::advance(&mut self.core, &mut self.io) {
                self.fail(failure);
                break;
            }
            if let Some(replaced) = self.io.replaced.take() {
                self.io.snapshotter.retire(replaced);
            }
            if let Some(retired) = self.core.take_retired_entries() {
                self.io.freer.retire(retired);
            }
            // A slice of the last compaction's entries, in proportion to the round's own work.
            let added = self.core.log().last_index().saturating_sub(before.0);
            if let Some(emptied) = self.io.freer.free(added) {
                self.core.give_log_buffer(emptied);
            }
            self.sync_membership();
            self.trade_entry_buffers();
            self.answer_reads();
            self.publish_status(now);
            if handled < MAX_MESSAGES_PER_ROUND && !self.shared.has_proposals() {
                let deadline = self.started + Duration::from_nanos(self.core.next_deadline());
                // Spin only while the log is moving, or reads wait for their round: more work
                // (the answers) is likely to follow within microseconds. Heartbeats alone never
                // make a node spin.
                let busy = before != (self.core.log().last_index(), self.core.commit_index())
                    || self.core.pending_reads() > 0;
                let spin = if busy { self.spin } else { Duration::ZERO };
                let (shared, writer) = (&self.shared, &self.io.writer);
                let snapshotter = &self.io.snapshotter;
                let has_work = || {
                    shared.has_proposals()
                        || !shared.snapshot_requests.is_empty()
                        || !shared.reads.is_empty()
                        || !shared.membership_requests.is_empty()
                        || shared.transfer_request.load(Relaxed) != 0
                        || shared.killed.load(Acquire)
                        || writer.has_completion()
                        || snapshotter.has_completion()
                };
                self.io.endpoint.wait(Some(deadline), spin, &has_work);
            }
        }
    }

    /// Stops the node after a failure it cannot go on from: nothing it has not made durable is
    /// sent, `start` reports the reason, and so does the status, published before the node
    /// counts as killed: whoever sees `is_killed` sees the failure in the status too.
    fn fail(&mut self, failure: NodeFailure) {
        tracing::error!(node = self.core.id(), %failure, "node stopped");
        self.metrics.failed(&failure);
        let _ = self.shared.failure.set(failure);
        self.publish_stopped();
        self.shared.killed.store(true, Release);
    }

    /// Publishes or retires the claim word after the core's role or term changed.
    fn sync_claim(&mut self) {
        let term = self.core.term();
        let leading = (self.core.role() == Role::Leader).then_some(term);
        if leading == self.leading_term {
            if term != self.published_term {
                self.published_term = term;
                self.shared.lease.publish_state(term, leading.is_some());
            }
            return;
        }
        let retire = self.leading_term.map(|_| {
            self.epoch += 1;
            self.pending.clear();
            self.epoch
        });
        if retire.is_some() {
            // A change may have completed in the very step that ended the leadership (a leader
            // that removed itself steps down as the change commits).
            self.config_slot = None;
            self.sync_membership();
            if let Some((_, reply)) = self.change.take() {
                let _ = reply.send(Err(ChangeError::LeadershipLost));
            }
        }
        let lead = leading.map(|_| {
            self.epoch += 1;
            (self.epoch, self.core.log().last_index() + 1)
        });
        self.published_term = term;
        self.shared.lease.change(retire, term, lead);
        self.leading_term = leading;
    }

    /// Moves queued proposals of the current lease into the log, as one batch.
    fn take_proposals(&mut self, now: u64) {
        let Some(term) = self.leading_term else {
            // Not leading: whatever is queued was proposed to a lease that is gone.
            while self.shared.pop_proposal().is_some() {}
            return;
        };
        let mut sorted = true;
        while let Some(p) = self.shared.pop_proposal() {
            if p.term != term {
                continue;
            }
            sorted &= self.pending.last().is_none_or(|last| last.index < p.index);
            self.pending.push(p);
        }
        if self.pending.is_empty() && self.config_slot.is_none() {
            return;
        }
        if !sorted {
            self.pending.sort_unstable_by_key(|p| p.index);
        }
        if self.core.transfer_target().is_some() {
            // While handing leadership over, commands wait (sorted, as `pending` always is
            // between calls): they are appended if the transfer fails, and dropped with the
            // rest of the lease if it succeeds.
            return;
        }
        loop {
            let first = self.core.log().last_index() + 1;
            if self.config_slot.is_some_and(|slot| slot.index == first) {
                self.append_config_slot(now);
                continue;
            }
            let run = self
                .pending
                .iter()
                .enumerate()
                .take_while(|(i, p)| p.index == first + *i as u64)
                .count();
            if run == 0 {
                return;
            }
            let appended = self
                .core
                .propose(now, self.pending.drain(..run).map(|p| p.command));
            debug_assert_eq!(appended, Some((first, first + run as u64 - 1)));
            self.metrics.appended(first + run as u64 - 1);
            self.shared.lease.set_appended(self.core.log().last_index());
        }
    }

    /// Appends the configuration entry whose claimed index is next. If it can no longer be
    /// appended (the state changed since it was claimed), an empty command takes the index, so
    /// that the proposals claimed after it are not held up.
    fn append_config_slot(&mut self, now: u64) {
        let slot = self.config_slot.take().expect("a slot at the next index");
        let appended = match slot.entry {
            SlotEntry::Towards(target) => match self.core.propose_membership(now, &target) {
                Ok(index) => index == slot.index,
                Err(e) => {
                    if let Some((_, reply)) = self.change.take() {
                        let _ = reply.send(Err(e.into()));
                    }
                    false
                }
            },
            SlotEntry::LeaveJoint => self.core.propose_leave_joint(now).is_some(),
        };
        if !appended {
            let filled = self.core.propose(now, [Bytes::new()]);
            debug_assert_eq!(filled, Some((slot.index, slot.index)));
        }
        self.shared.lease.set_appended(self.core.log().last_index());
    }

    /// Takes the membership change the handle asked for, if any: works out its target against
    /// the configuration in force, and claims an index for its first entry (or answers at once).
    fn take_change(&mut self) {
        let Some(request) = self.shared.membership_requests.pop() else {
            return;
        };
        match self.start_change(request.change) {
            Ok(Some(target)) => self.change = Some((target, request.reply)),
            Ok(None) => {
                // In force and committed already.
                let _ = request.reply.send(Ok(self.core.membership_index()));
            }
            Err(e) => {
                let _ = request.reply.send(Err(e));
            }
        }
    }

    /// [`Node::take_change`]: the target, if an entry was claimed for it; `None` if it is in
    /// force and committed.
    fn start_change(&mut self, change: Change) -> Result<Option<Membership>, ChangeError> {
        if self.leading_term.is_none() {
            return Err(ChangeError::NotLeader {
                leader: self.core.leader(),
            });
        }
        if self.change.is_some() || self.config_slot.is_some() {
            return Err(ChangeError::InProgress);
        }
        let current = *self.core.membership();
        if current.is_joint() {
            return Err(ChangeError::InProgress);
        }
        let is_learner = |id| current.learners().any(|l| l == id);
        let target = match change {
            Change::To(target) => Ok(target),
            Change::AddLearner(id) if current.is_voter(id) => {
                Err(MembershipError::LearnerIsVoter(id))
            }
            Change::AddLearner(id) => {
                Membership::new(current.voters(), current.learners().chain([id]))
            }
            Change::Promote(id) if current.is_voter(id) => Ok(current),
            Change::Promote(id) if !is_learner(id) => return Err(ChangeError::NotCaughtUp(id)),
            Change::Promote(id) => Membership::new(
                current.voters().chain([id]),
                current.learners().filter(|&l| l != id),
            ),
            Change::Remove(id) => Membership::new(
                current.voters().filter(|&v| v != id),
                current.learners().filter(|&l| l != id),
            ),
        }
        .map_err(ChangeError::Invalid)?;
        if self.core.membership_step(&target)?.is_none() {
            return Ok(None);
        }
        match self.shared.lease.claim() {
            Ok((index, _)) => {
                self.config_slot = Some(ConfigSlot {
                    index,
                    entry: SlotEntry::Towards(target),
                });
                Ok(Some(target))
            }
            Err(Refused::Busy) => Err(ChangeError::Busy),
            Err(Refused::NotLeader) => Err(ChangeError::NotLeader { leader: None }),
        }
    }

    /// A leader whose joint configuration has committed claims an index for the one that
    /// leaves it.
    fn maybe_claim_leave_joint(&mut self) {
        if self.config_slot.is_none()
            && self.leading_term.is_some()
            && self.core.leave_joint_due()
            && let Ok((index, _)) = self.shared.lease.claim()
        {
            self.config_slot = Some(ConfigSlot {
                index,
                entry: SlotEntry::LeaveJoint,
            });
        }
    }

    /// Publishes the configuration in force when it (or whether it is committed) changed, and
    /// answers the change under way once its target is in force and committed.
    fn sync_membership(&mut self) {
        let index = self.core.membership_index();
        let now = MembershipStatus {
            membership: *self.core.membership(),
            index,
            committed: index <= self.core.commit_index(),
        };
        if now == self.published_membership {
            return;
        }
        self.published_membership = now;
        self.shared.membership.store(Arc::new(now));
        if now.committed
            && let Some((target, _)) = &self.change
            && *target == now.membership
        {
            let (_, reply) = self.change.take().expect("a change under way");
            let _ = reply.send(Ok(index));
        }
    }

    /// Starts the leadership transfer the handle asked for, if any.
    fn take_transfer(&mut self, now: u64) {
        let request = self.shared.transfer_request.swap(0, Acquire);
        if request == 0 {
            return;
        }
        let (term, target) = (request >> 8, (request & 0xff) as usize - 1);
        if term != self.core.term() {
            return; // asked of a leadership that has ended
        }
        if let Err(e) = self.core.transfer_leadership(now, target) {
            tracing::debug!(
                node = self.core.id(),
                target,
                ?e,
                "leadership transfer not started"
            );
        }
    }

    /// Hands the reads the handle queued to the core: the lease reads and the others, each as
    /// one batch (the others share one heartbeat round).
    fn take_reads(&mut self) {
        if self.shared.reads.is_empty() {
            return;
        }
        // A fresh reading: whether a lease still holds is a question about now.
        let now = self.now();
        let mut lease = smallvec::SmallVec::<[u64; 16]>::new();
        let mut index = smallvec::SmallVec::<[u64; 16]>::new();
        while let Some(request) = self.shared.reads.pop() {
            if self.io.reads_asked.len() + self.io.reads_confirmed.len() >= Raft::MAX_PENDING_READS
            {
                let _ = request.reply.send(Err(ReadError::Busy {
                    limit: Raft::MAX_PENDING_READS,
                }));
                continue;
            }
            let id = self.next_read_id;
            self.next_read_id += 1;
            let asked = AskedRead {
                reply: request.reply,
                asked: request.asked,
                lease: request.lease,
            };
            self.io.reads_asked.insert(id, asked);
            if request.lease {
                lease.push(id);
            } else {
                index.push(id);
            }
        }
        if !lease.is_empty() {
            self.core.read_lease(now, lease);
        }
        if !index.is_empty() {
            self.core.read_index(now, index);
        }
    }

    /// Puts the entry buffers the core collected beyond [`KEPT_ENTRY_BUFFERS`] in the shared
    /// pool, or tops the core up from it.
    fn trade_entry_buffers(&mut self) {
        let pool = &*ENTRY_BUFFERS;
        while self.core.entry_buffers() > KEPT_ENTRY_BUFFERS {
            let Some(buffer) = self.core.take_entry_buffer() else {
                break;
            };
            if pool.push(buffer).is_err() {
                break; // the pool is full: the buffer is dropped
            }
        }
        while self.core.entry_buffers() < KEPT_ENTRY_BUFFERS {
            let Some(buffer) = pool.pop() else { break };
            self.core.give_entry_buffer(buffer);
        }
    }

    /// Answers the confirmed reads whose index is applied.
    fn answer_reads(&mut self) {
        if self.shared.killed.load(Acquire) {
            // The apply channel may have given up delivering: what counts as applied may not
            // have reached the service. The waiters learn the node was killed.
            return;
        }
        let applied = self.core.last_applied();
        let confirmed = &mut self.io.reads_confirmed;
        while let Some((index, _)) = confirmed.front()
            && *index <= applied
        {
            let (index, read) = confirmed.pop_front().expect("front exists");
            let _ = read.reply.send(Ok(index));
            self.io.histograms.read_answered(read.asked, read.lease);
        }
    }

    /// Publishes a fresh status snapshot, reusing the previous one's allocation when no reader
    /// still holds it, and hands the metrics to the recorder when they are due.
    fn publish_status(&mut self, now: u64) {
        if self.shared.killed.load(Acquire) {
            // The last status is out (or will be, as the thread ends): it says killed.
            return;
        }
        let mut next = match self.spare_status.take() {
            Some(spare) if Arc::strong_count(&spare) == 1 && Arc::weak_count(&spare) == 0 => spare,
            _ => Arc::new(Status::initial(self.core.id())),
        };
        let status = Arc::get_mut(&mut next).expect("a fresh or unshared snapshot");
        let core = &self.core;
        status.role = core.role();
        status.term = core.term();
        status.leader = core.leader();
        status.commit_index = core.commit_index();
        status.last_applied = core.last_applied();
        status.last_log_index = core.log().last_index();
        status.last_log_term = core.log().last_term();
        status.peers.clear();
        // The members of the configuration in force only: a node built for many ids (a
        // cluster that may grow) does not look at the others.
        let membership = core.membership();
        let mut members = 0u64;
        for id in membership
            .voters()
            .chain(membership.learners())
            .chain(membership.outgoing())
        {
            members |= 1 << id;
        }
        let ids = (0..core.peers()).filter(|&id| members & (1 << id) != 0);
        status.peers.extend(ids.filter_map(|peer| {
            core.progress(peer).map(|p| PeerStatus {
                id: peer,
                match_index: p.match_index,
                next_index: p.next_index,
                state: p.state,
                inflight: p.inflights.len(),
            })
        }));
        let stats = core.stats();
        status.elections_started = stats.elections_started;
        status.elections_won = stats.elections_won;
        status.step_downs = stats.step_downs;
        status.messages_in = self.messages_in;
        status.messages_out = self.io.messages_out;
        status.durable_index = core.durable_index();
        status.snapshot_index = core.log().offset();
        status.log_entries = core.log().len() as u64;
        status.log_bytes = core.log().bytes();
        status.snapshots_installed = stats.snapshots_installed;
        status.syncs = self.io.syncs;
        status.disk_full = self.io.disk_full;
        status.snapshotting = self.io.snapshotter.busy();
        status.sync_time = self.io.sync_time;
        status.transfer_target = core.transfer_target();
        status.lease = core.has_lease();
        status.reads_confirmed = stats.reads_confirmed;
        status.lease_reads = stats.lease_reads;
        status.transfers_started = stats.transfers_started;
        status.transfers_abandoned = stats.transfers_abandoned;
        // A copy of what `sync_membership` published this round: no allocation.
        status.membership = Some(self.published_membership);
        if self.metrics.due(now, status) {
            let queued = self.shared.proposals.len() + self.pending.len();
            self.metrics.publish(now, status, self.io.counts, queued);
        }
        self.spare_status = Some(self.shared.status.swap(next));
    }
}

impl<S: StateMachine> NodeIo<S> {
    /// Counts a write that completed, or returns its failure. Its time feeds the histograms if
    /// `record`.
    fn completed(&mut self, completed: Completed, record: bool) -> Result<(), NodeFailure> {
        self.disk_full = completed.disk_full;
        completed.result?;
        if record {
            self.histograms.written(completed.took, completed.synced);
        }
        self.sync_time += completed.took;
        self.syncs += 1;
        Ok(())
    }
}

impl<S: StateMachine> Io for NodeIo<S> {
    type Error = NodeFailure;

    fn send(&mut self, to: usize, msg: Message) -> Result<(), NodeFailure> {
        match &msg {
            Message::AppendEntries(m)
                if !m.entries.is_empty() && self.histograms.gates[2].open(self.now) =>
            {
                self.histograms.append_batch.record(m.entries.len() as f64);
            }
            Message::InstallSnapshot(m) if m.offset == 0 => self.counts.snapshots_sent += 1,
            _ => {}
        }
        self.endpoint.send(to, msg);
        self.messages_out += 1;
        Ok(())
    }

    fn poll_write(&mut self) -> Result<Option<u64>, NodeFailure> {
        let Some(completed) = self.writer.poll() else {
            return Ok(None);
        };
        let generation = completed.generation;
        // A writer thread's writes wait for the disk: few enough to record each.
        self.completed(completed, true)?;
        Ok(Some(generation))
    }

    /// One write at a time, carrying everything that changed since the last (group commit):
    /// for a file, one `fdatasync` per write.
    fn can_write(&self) -> bool {
        !self.writer.busy()
    }

    fn write(&mut self, core: &Core, persist: Persist) -> Result<bool, NodeFailure> {
        match self.writer.submit(persist, core) {
            Some(completed) => {
                let record = self.histograms.gates[0].open(self.now);
                self.completed(completed, record).map(|()| true)
            }
            None => Ok(false),
        }
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), NodeFailure> {
        self.in_state_machine = true;
        let started = Instant::now();
        self.state_machine
            .restore(snapshot)
            .map_err(|error| NodeFailure::RestoreRefused {
                index: snapshot.index,
                error,
            })?;
        self.histograms.snapshot_install.record(started.elapsed());
        self.in_state_machine = false;
        Ok(())
    }

    fn apply(&mut self, core: &Core, from: u64, to: u64) -> Result<(), NodeFailure> {
        self.in_state_machine = true;
        for (entry, index) in core.log().slice(from, to).iter().zip(from..) {
            // A configuration is the engine's: in force since it was appended, it is no command.
            if entry.kind == EntryKind::Config {
                continue;
            }
            self.state_machine.apply(index, entry.term, &entry.command);
        }
        self.state_machine.flush(to);
        self.in_state_machine = false;
        let applied = to + 1 - from;
        self.counts.applied += applied;
        if self.histograms.gates[1].open(self.now) {
            self.histograms.apply_batch.record(applied as f64);
        }
        Ok(())
    }

    /// A refused read is answered at once, naming the leader this node knows of; a confirmed
    /// one waits until its index is applied ([`Node::answer_reads`]).
    fn read_outcome(
        &mut self,
        outcome: ReadOutcome,
        leader: Option<usize>,
    ) -> Result<(), NodeFailure> {
        let Some(read) = self.reads_asked.remove(&outcome.id) else {
            return Ok(());
        };
        match outcome.index {
            Some(index) => self.reads_confirmed.push_back((index, read)),
            None => {
                let _ = read.reply.send(Err(ReadError::NotLeader { leader }));
            }
        }
        Ok(())
    }

    /// The service's snapshot if it gave one ([`Raft::snapshot`]), or the one the snapshot
    /// thread finished serializing; otherwise, when the compaction policy says it is time and
    /// no serialization is under way, takes the state machine's view (and returns it at once
    /// if it is serialized already). Holds on to the snapshot it is to replace, so that the
    /// node can free it off its thread once the step is over.
    fn snapshot(&mut self, core: &Core) -> Result<Option<(u64, Bytes)>, NodeFailure> {
        let snapshot = self.take_snapshot(core)?;
        if snapshot.is_some() {
            self.replaced = core.snapshot().map(|s| s.data.clone());
        }
        Ok(snapshot)
    }
}

impl<S: StateMachine> NodeIo<S> {
    /// The snapshot [`Io::snapshot`] returns, if any: see there.
    fn take_snapshot(&mut self, core: &Core) -> Result<Option<(u64, Bytes)>, NodeFailure> {
        if let Some(given) = self.shared.snapshot_requests.pop() {
            return Ok(Some(given));
        }
        if let Some(serialized) = self.snapshotter.poll()? {
            if let Some(started) = self.snapshot_started.take() {
                self.histograms.snapshot_create.record(started.elapsed());
            }
            return Ok(Some(serialized));
        }
        let log = core.log();
        let applied = core.last_applied();
        if self.snapshotter.busy()
            || !self
                .compaction
                .due(applied.saturating_sub(log.offset()), log.bytes())
            || applied <= log.offset()
        {
            return Ok(None);
        }
        let started = Instant::now();
        self.in_state_machine = true;
        let view = self.state_machine.snapshot_view();
        self.in_state_machine = false;
        let ready = view.and_then(|view| self.snapshotter.start(applied, view));
        if ready.is_some() {
            self.histograms.snapshot_create.record(started.elapsed());
        } else if self.snapshotter.busy() {
            self.snapshot_started = Some(started);
        }
        Ok(ready)
    }
}
