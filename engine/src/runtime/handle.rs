//! The handle an embedding program holds ([`Raft`], [`WeakRaft`]), how a node is built
//! ([`Builder`]), and a read under way ([`PendingRead`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use crossbeam_queue::ArrayQueue;
use zeroraft_storage::{NoStorage, Storage};

use super::claim::{Lease, Proposal, Proposals, Refused};
use super::node::Node;
use super::state_machine::{ChannelApplier, StateMachine};
use super::writer::Writer;
use super::{Change, ChangeRequest, READ_KILL_CHECK, ReadRequest, Shared};
use crate::core::{Core, Membership};
use crate::{
    ApplyMsg, BuildError, ChangeError, Config, ConfigError, Endpoint, MembershipStatus,
    NodeFailure, ReadError, StartError, Status, TransferError,
};

/// A Raft node: the handle an embedding program holds. Cloning it gives another handle to the
/// same node. When the last handle is dropped, the node is killed and its thread joined.
///
/// A [`StateMachine`] that needs its own node (to compact, or to stop it) holds a [`WeakRaft`]:
/// a `Raft` inside the state machine would keep the node alive after every other handle is gone.
#[derive(Clone)]
pub struct Raft {
    handle: Arc<Handle>,
}

/// A handle to a node that does not keep it alive: see [`Raft::downgrade`].
#[derive(Clone)]
pub struct WeakRaft {
    handle: std::sync::Weak<Handle>,
}

impl WeakRaft {
    /// The node's handle, unless every [`Raft`] handle to it was dropped.
    pub fn upgrade(&self) -> Option<Raft> {
        self.handle.upgrade().map(|handle| Raft { handle })
    }
}

impl std::fmt::Debug for WeakRaft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeakRaft")
            .field("alive", &(self.handle.strong_count() > 0))
            .finish()
    }
}

struct Handle {
    shared: Arc<Shared>,
    /// The node's thread, which must never wait for itself.
    thread_id: std::thread::ThreadId,
    /// Taken and joined once, under the lock, by whoever kills the node first; a concurrent
    /// second killer waits on the lock until the join is done. A cold path (kill and drop only).
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Handle {
    fn kill(&self) {
        self.shared.killed.store(true, Release);
        self.shared.waker.wake();
        if std::thread::current().id() == self.thread_id {
            // The node's own thread (its state machine): it leaves its loop once the state
            // machine returns. It must not take the lock: a killer on another thread holds it
            // while it waits for this very thread to end.
            return;
        }
        // Join while holding the lock, so that a concurrent second `kill` also returns only once
        // the thread has ended.
        let mut slot = self.thread.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(thread) = slot.take() {
            let _ = thread.join();
        }
    }
}

impl Raft {
    /// Creates node `me` of a cluster of `peers` nodes, talking through `endpoint` and delivering
    /// committed commands on `apply`, and starts its thread. The node keeps its state in memory
    /// only ([`NoStorage`]): it starts as a follower in term 0 with an empty log and forgets
    /// everything when it stops, so it must never rejoin its cluster as the same member. A node
    /// that survives restarts is built with [`Raft::builder`] and a [`Storage`].
    ///
    /// If `apply` is bounded and full, the node waits for room (applying is never skipped); if
    /// its receiver is dropped, the node keeps taking part in consensus and stops delivering.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] if `me`, `peers`, the endpoint or a setting cannot work.
    pub fn new(
        config: Config,
        me: usize,
        peers: usize,
        endpoint: Endpoint,
        apply: Sender<ApplyMsg>,
    ) -> Result<Self, ConfigError> {
        Self::builder(config, me, peers, endpoint)
            .start(apply)
            .map_err(BuildError::into_config_error)
    }

    /// Like [`Raft::new`], but committed entries go to `state_machine`, called on the node's own
    /// thread, instead of through a channel. This is the fastest way to consume the log: no
    /// message per entry, no wake-up of another thread. The state machine must not block for
    /// long: while it runs, the node does nothing else.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] if `me`, `peers`, the endpoint or a setting cannot work.
    pub fn with_state_machine<S: StateMachine>(
        config: Config,
        me: usize,
        peers: usize,
        endpoint: Endpoint,
        state_machine: S,
    ) -> Result<Self, ConfigError> {
        Self::builder(config, me, peers, endpoint)
            .start_with_state_machine(state_machine)
            .map_err(BuildError::into_config_error)
    }

    /// A builder for node `me` of a cluster of `peers` nodes talking through `endpoint`: choose
    /// its [`Storage`], then start it with an apply channel or a [`StateMachine`].
    pub fn builder(config: Config, me: usize, peers: usize, endpoint: Endpoint) -> Builder {
        Builder {
            config,
            me,
            peers,
            endpoint,
            storage: Box::new(NoStorage),
            initial_membership: None,
        }
    }

    fn spawn<S: StateMachine>(
        builder: Builder,
        make_state_machine: impl FnOnce(Arc<Shared>) -> S,
    ) -> Result<Self, BuildError> {
        let Builder {
            config,
            me,
            peers,
            endpoint,
            mut storage,
            initial_membership,
        } = builder;
        config.validate(me, peers)?;
        let initial_membership = initial_membership.unwrap_or_else(|| Membership::initial(peers));
        if initial_membership
            .voters()
            .chain(initial_membership.learners())
            .any(|id| id >= peers)
        {
            return Err(ConfigError::Invalid(
                "the initial membership names a node at or above the node count",
            )
            .into());
        }
        if endpoint.id() != me || endpoint.nodes() != peers {
            return Err(ConfigError::EndpointMismatch {
                endpoint_id: endpoint.id(),
                endpoint_nodes: endpoint.nodes(),
            }
            .into());
        }
        let recovered = storage.recover()?;
        crate::core::check_recovered_state(peers, &recovered).map_err(BuildError::Inconsistent)?;
        let seed = config.seed.unwrap_or_else(|| fastrand::u64(..));
        let seed = seed ^ (me as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F);
        let term = recovered.hard_state.term;
        let dedicated = config
            .dedicated_writer
            .unwrap_or_else(|| storage.blocks_on_disk());
        let disk_full = storage.disk_full();
        let writer =
            Writer::new(storage, dedicated, me, endpoint.waker()).map_err(BuildError::Thread)?;
        let mut core = Core::restore(me, peers, config.core_config(), seed, 0, recovered);
        core.set_initial_membership(initial_membership);
        // Callers claim log indices ahead of the node's thread: the thread appends the entry
        // that leaves a joint configuration at an index it claims like them.
        core.set_leave_joint_automatically(false);
        let membership = MembershipStatus {
            membership: *core.membership(),
            index: core.membership_index(),
            committed: core.membership_index() <= core.commit_index(),
        };
        let mut status = Status::initial(me);
        status.term = term;
        status.last_log_index = core.log().last_index();
        status.last_log_term = core.log().last_term();
        status.durable_index = core.durable_index();
        status.snapshot_index = core.log().offset();
        status.disk_full = disk_full;
        status.log_entries = core.log().len() as u64;
        status.log_bytes = core.log().bytes();
        status.membership = Some(membership);
        let shared = Arc::new(Shared {
            me,
            peers,
            lease: Lease::new(term, config.max_queued_proposals as u64),
            proposals: Proposals::new(config.max_queued_proposals),
            snapshot_requests: ArrayQueue::new(1),
            reads: ArrayQueue::new(Raft::MAX_PENDING_READS),
            membership_requests: ArrayQueue::new(1),
            membership: ArcSwap::from_pointee(membership),
            transfer_request: AtomicU64::new(0),
            status: ArcSwap::from_pointee(status),
            killed: AtomicBool::new(false),
            failure: std::sync::OnceLock::new(),
            waker: endpoint.waker(),
            max_command_bytes: config.max_command_bytes,
            spin: config.spin,
            refusals: super::metrics::Refusals::new(me),
        });
        let node = Node::new(
            core,
            endpoint,
            writer,
            make_state_machine(shared.clone()),
            shared.clone(),
            config.spin,
            config.compaction,
        );
        let thread = std::thread::Builder::new()
            .name(format!("zeroraft-node-{me}"))
            .spawn(move || node.run())
            .map_err(BuildError::Thread)?;
        Ok(Self {
            handle: Arc::new(Handle {
                shared,
                thread_id: thread.thread().id(),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// Proposes `command`. Returns `(index, term, is_leader)` at once: if this node leads and
    /// accepts the command, the index it will occupy if the node stays leader of `term`, and
    /// `true`; otherwise `(0, current term, false)`. The tester's `Start`. See
    /// [`Raft::try_start`] for the reasons a command is refused, which it tells apart.
    pub fn start(&self, command: Bytes) -> (u64, u64, bool) {
        match self.try_start(command) {
            Ok((index, term)) => (index, term, true),
            Err(StartError::NotLeader { term, .. }) => (0, term, false),
            Err(
                StartError::TooLarge { .. }
                | StartError::Busy { .. }
                | StartError::Killed
                | StartError::Failed(_),
            ) => (0, self.get_state().0, false),
        }
    }

    /// Proposes `command`, returning the `(index, term)` it will occupy if this node stays leader
    /// of `term`. Takes no lock and does not wait for the node's thread.
    ///
    /// # Errors
    ///
    /// [`StartError::NotLeader`] if this node does not lead, [`StartError::TooLarge`] if the
    /// command exceeds [`Config::max_command_bytes`], [`StartError::Busy`] while the leader
    /// already holds [`Config::max_queued_proposals`] commands it has not appended,
    /// [`StartError::Killed`] after [`Raft::kill`], [`StartError::Failed`] after the node stopped
    /// on its own.
    pub fn try_start(&self, command: Bytes) -> Result<(u64, u64), StartError> {
        let shared = &self.handle.shared;
        if command.len() > shared.max_command_bytes {
            return Err(StartError::TooLarge {
                len: command.len(),
                max: shared.max_command_bytes,
            });
        }
        if shared.killed.load(Acquire) {
            return Err(match shared.failure.get() {
                Some(failure) => StartError::Failed(failure.clone()),
                None => StartError::Killed,
            });
        }
        let (index, term) = match shared.lease.claim() {
            Ok(claimed) => claimed,
            Err(Refused::NotLeader) => {
                shared.refusals.not_leader.increment(1);
                let status = shared.status.load();
                return Err(StartError::NotLeader {
                    term: shared.load_state().0,
                    leader: status.leader,
                });
            }
            Err(Refused::Busy) => {
                shared.refusals.busy.increment(1);
                return Err(StartError::Busy {
                    limit: shared.lease.max_queued() as usize,
                });
            }
        };
        let proposal = Proposal {
            term,
            index,
            command,
        };
        shared.proposals.push(proposal, &shared.waker);
        Ok((index, term))
    }

    /// `(current term, is_leader)`, as last published by the node. The tester's `GetState`. A
    /// node that [`Raft::is_killed`] says stopped is not leader, even before its thread ends.
    pub fn get_state(&self) -> (u64, bool) {
        let shared = &self.handle.shared;
        let (term, leading) = shared.load_state();
        (term, leading && !shared.killed.load(Acquire))
    }

    /// The node's latest published status.
    pub fn status(&self) -> Arc<Status> {
        self.handle.shared.status.load_full()
    }

    /// This node's id.
    pub fn id(&self) -> usize {
        self.handle.shared.me
    }

    /// Stops the node: its thread ends (this call waits for it), [`Raft::start`] refuses every
    /// command and [`Raft::get_state`] reports it as not leader. Calling it again does nothing.
    pub fn kill(&self) {
        self.handle.kill();
    }

    /// The 6.824 `Snapshot(index, snapshot)`: the service's state machine, serialized as `data`,
    /// covers every command up to `index`, which it has applied. The node drops its log up to
    /// there and keeps the snapshot with its raft state (in its storage, with its next write).
    /// Takes no lock and does not wait: the node's thread does the work. A snapshot at or below
    /// the one the node has, or beyond what it delivered, is ignored; of several given before the
    /// node gets to them, only the last counts.
    pub fn snapshot(&self, index: u64, data: Bytes) {
        let shared = &self.handle.shared;
        let _ = shared.snapshot_requests.force_push((index, data));
        shared.waker.wake();
    }

    /// Whether [`Raft::kill`] was called or the node stopped on its own ([`Raft::failure`]).
    pub fn is_killed(&self) -> bool {
        self.handle.shared.killed.load(Acquire)
    }

    /// Why the node stopped on its own, if it did: its storage failed, its state machine
    /// panicked or refused a snapshot, or an invariant of the engine broke.
    pub fn failure(&self) -> Option<NodeFailure> {
        self.handle.shared.failure.get().cloned()
    }

    /// A handle that does not keep the node alive, for a [`StateMachine`] that calls its own
    /// node: [`WeakRaft::upgrade`] gives the node back while some `Raft` handle to it exists.
    pub fn downgrade(&self) -> WeakRaft {
        WeakRaft {
            handle: Arc::downgrade(&self.handle),
        }
    }

    /// The most reads a node holds that it has not answered yet: beyond, [`Raft::read_index`]
    /// and [`Raft::read_lease`] refuse with [`ReadError::Busy`].
    pub const MAX_PENDING_READS: usize = 4096;

    /// Asks for a linearizable read (ReadIndex, Raft thesis §6.4), without writing to the log.
    /// Takes no lock and does not wait: the returned [`PendingRead`] gives the read index once
    /// the node has confirmed it. The leader takes its commit index (once it has committed an
    /// entry of its own term: see [`Config::leader_no_op`]), checks that a majority still
    /// follows it with a heartbeat round started after the read was asked for, and waits until
    /// it has applied up to that index. When [`PendingRead::wait`] returns `Ok(index)`, every
    /// write committed before this call has been applied: read the service's state now. (With
    /// an apply channel, "applied" means sent on the channel: read once the service has taken
    /// every command up to `index` from it.) Reads asked for together share one round.
    ///
    /// # Errors
    ///
    /// [`ReadError::NotLeader`] if this node does not lead, [`ReadError::Busy`] while
    /// [`Raft::MAX_PENDING_READS`] reads wait, [`ReadError::Killed`] or [`ReadError::Failed`]
    /// once the node stopped. The same, except `Busy`, can come from [`PendingRead::wait`].
    pub fn read_index(&self) -> Result<PendingRead, ReadError> {
        self.ask_read(false)
    }

    /// As [`Raft::read_index`], but confirmed at once, with no heartbeat round, while the
    /// leader holds a lease: a majority answered a heartbeat round it started less than a
    /// lease ago, and those nodes ignore other candidates for an election timeout
    /// (CheckQuorum's leader stickiness). The clock assumption: the nodes' clocks run at rates
    /// that differ by at most [`Config::max_clock_drift_percent`], which shortens the lease
    /// to `election_timeout_min × (100 − 2 × drift) / 100`; and the caller reads its state
    /// promptly (a process paused for longer than that margin between confirmation and its
    /// read may see a stale state). Without [`Config::check_quorum`], or when the lease has
    /// expired, or after the leader started a leadership transfer, it is a
    /// [`Raft::read_index`].
    ///
    /// # Errors
    ///
    /// As [`Raft::read_index`].
    pub fn read_lease(&self) -> Result<PendingRead, ReadError> {
        self.ask_read(true)
    }

    fn ask_read(&self, lease: bool) -> Result<PendingRead, ReadError> {
        let shared = &self.handle.shared;
        if shared.killed.load(Acquire) {
            return Err(shared.read_stopped());
        }
        if !shared.load_state().1 {
            return Err(ReadError::NotLeader {
                leader: shared.status.load().leader,
            });
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        if shared
            .reads
            .push(ReadRequest {
                lease,
                asked: Instant::now(),
                reply: tx,
            })
            .is_err()
        {
            return Err(ReadError::Busy {
                limit: Self::MAX_PENDING_READS,
            });
        }
        shared.waker.wake();
        Ok(PendingRead {
            rx,
            shared: shared.clone(),
        })
    }

    /// The cluster configuration this node has in force: voters, learners, and the outgoing
    /// voters while joint (see docs/membership.md). Every node `0..peers` votes unless the node
    /// was built with [`Builder::initial_membership`] or the membership changed since.
    pub fn membership(&self) -> MembershipStatus {
        **self.handle.shared.membership.load()
    }

    /// Moves the cluster to `voters` voting and `learners` learning, and returns once that
    /// configuration is committed: the index of the entry that holds it. Call it on the leader.
    /// A change of voters goes through a joint configuration (Raft thesis §4.3), which the
    /// leader leaves by itself once it commits; a change of learners alone takes one entry. A
    /// leader that removes itself steps down once the change commits (the call still returns
    /// the index). Configuration entries take log indices but are never applied to the state
    /// machine.
    ///
    /// Node ids are those this node has links to (below `peers`, as given at build): the
    /// cluster's size can shrink and grow within them, and a node outside the configuration
    /// (built with [`Builder::initial_membership`] leaving it out) waits until a leader adds it.
    /// A node removed keeps running until it is killed: it takes no part, and with
    /// [`Config::pre_vote`] or [`Config::check_quorum`] it cannot disturb the others.
    ///
    /// # Errors
    ///
    /// [`ChangeError`]: this node does not lead, a change (or another call here) or a leadership
    /// transfer is under way, a node id is not one this node has a link to, a new voter is not a
    /// learner holding the leader's committed log, the target leaves no voter or makes a voter
    /// a learner, the node lost its leadership before the change was done, or it stopped.
    pub fn change_membership(
        &self,
        voters: &[usize],
        learners: &[usize],
    ) -> Result<u64, ChangeError> {
        let target = Membership::new(voters.iter().copied(), learners.iter().copied())
            .map_err(ChangeError::Invalid)?;
        self.request_change(Change::To(target))
    }

    /// Adds node `id` as a learner: it is sent the log and snapshots, and never votes. Returns
    /// once the configuration holding it is committed. See [`Raft::change_membership`].
    ///
    /// # Errors
    ///
    /// As [`Raft::change_membership`].
    pub fn add_learner(&self, id: usize) -> Result<u64, ChangeError> {
        self.request_change(Change::AddLearner(id))
    }

    /// Makes learner `id` a voter once it holds the leader's committed log (else
    /// [`ChangeError::NotCaughtUp`]: try again later). Returns once the configuration where it
    /// votes is committed. See [`Raft::change_membership`].
    ///
    /// # Errors
    ///
    /// As [`Raft::change_membership`].
    pub fn promote(&self, id: usize) -> Result<u64, ChangeError> {
        self.request_change(Change::Promote(id))
    }

    /// Removes node `id`, voter or learner. Returns once the configuration without it is
    /// committed. See [`Raft::change_membership`].
    ///
    /// # Errors
    ///
    /// As [`Raft::change_membership`].
    pub fn remove(&self, id: usize) -> Result<u64, ChangeError> {
        self.request_change(Change::Remove(id))
    }

    /// Hands `change` to the node's thread and waits for its answer.
    fn request_change(&self, change: Change) -> Result<u64, ChangeError> {
        let shared = &self.handle.shared;
        let stopped = || match shared.failure.get() {
            Some(failure) => ChangeError::Failed(failure.clone()),
            None => ChangeError::Killed,
        };
        if shared.killed.load(Acquire) {
            return Err(stopped());
        }
        if !shared.load_state().1 {
            return Err(ChangeError::NotLeader {
                leader: shared.status.load().leader,
            });
        }
        let (reply, rx) = crossbeam_channel::bounded(1);
        if shared
            .membership_requests
            .push(ChangeRequest { change, reply })
            .is_err()
        {
            return Err(ChangeError::InProgress);
        }
        shared.waker.wake();
        loop {
            match rx.recv_timeout(READ_KILL_CHECK) {
                Ok(outcome) => return outcome,
                Err(RecvTimeoutError::Disconnected) => return Err(stopped()),
                Err(RecvTimeoutError::Timeout) => {
                    if shared.killed.load(Acquire) {
                        return rx.try_recv().unwrap_or_else(|_| Err(stopped()));
                    }
                }
            }
        }
    }

    /// Hands this node's leadership to node `target` (Raft thesis §3.10). The leader stops
    /// appending new commands (they wait, and are appended if the transfer fails), brings
    /// `target`'s log up to its own, and tells it to start an election at once, which the other
    /// nodes let it win even though they still hear from this leader. If `target` is not
    /// leader within `election_timeout_min`, the leader gives up and goes on leading. Returns
    /// once the request is handed to the node's thread; [`Status::transfer_target`] shows the
    /// transfer under way and [`Status::leader`] its outcome. A transfer asked for while one is
    /// under way is ignored.
    ///
    /// # Errors
    ///
    /// [`TransferError::BadTarget`] if `target` is this node or not a voter of the
    /// configuration in force (as this node last published it), [`TransferError::NotLeader`] if this node does not lead, [`TransferError::Killed`] once
    /// it stopped.
    pub fn transfer_leadership(&self, target: usize) -> Result<(), TransferError> {
        let shared = &self.handle.shared;
        if target == shared.me
            || target >= shared.peers
            || !shared.membership.load().membership.is_voter(target)
        {
            return Err(TransferError::BadTarget { target });
        }
        if shared.killed.load(Acquire) {
            return Err(TransferError::Killed);
        }
        if !shared.load_state().1 {
            return Err(TransferError::NotLeader {
                leader: shared.status.load().leader,
            });
        }
        let term = shared.load_state().0;
        shared
            .transfer_request
            .store(term << 8 | (target as u64 + 1), Release);
        shared.waker.wake();
        Ok(())
    }
}

/// A read asked for with [`Raft::read_index`] or [`Raft::read_lease`], until the node confirms
/// or refuses it.
pub struct PendingRead {
    rx: Receiver<Result<u64, ReadError>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PendingRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingRead")
            .field("node", &self.shared.me)
            .field("answered", &!self.rx.is_empty())
            .finish()
    }
}

impl PendingRead {
    /// Waits for the read index: once this returns `Ok(index)`, the node has applied every
    /// entry up to `index`, which covers every write committed before the read was asked for.
    ///
    /// # Errors
    ///
    /// [`ReadError::NotLeader`] if the node stopped leading first; [`ReadError::Killed`] or
    /// [`ReadError::Failed`] if it stopped.
    pub fn wait(self) -> Result<u64, ReadError> {
        self.wait_until(None)
    }

    /// As [`PendingRead::wait`], for at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`PendingRead::wait`], and [`ReadError::Timeout`] if the read was not answered in
    /// time: a leader cut off from the majority confirms nothing until it steps down (with
    /// [`Config::check_quorum`], within two election timeouts) or the partition heals.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u64, ReadError> {
        // A timeout beyond what the clock can count is no timeout.
        self.wait_until(Instant::now().checked_add(timeout))
    }

    /// Waits for the answer until `deadline` (`None`: for as long as it takes).
    fn wait_until(&self, deadline: Option<Instant>) -> Result<u64, ReadError> {
        // The answer usually comes within a round trip: look for it for up to the node's spin
        // ([`Config::spin`]) before sleeping, which would cost a wake-up on the answer.
        let spin_until = Instant::now() + self.shared.spin;
        let spin_until = deadline.map_or(spin_until, |d| d.min(spin_until));
        while Instant::now() < spin_until {
            for _ in 0..16 {
                if let Some(outcome) = self.try_wait() {
                    return outcome;
                }
                std::hint::spin_loop();
            }
            std::thread::yield_now();
        }
        loop {
            // A read queued just as the node stopped may never reach its thread: look at the
            // node now and then rather than only at the channel.
            let wait = deadline.map_or(READ_KILL_CHECK, |d| {
                d.saturating_duration_since(Instant::now())
                    .min(READ_KILL_CHECK)
            });
            match self.rx.recv_timeout(wait) {
                Ok(outcome) => return outcome,
                Err(RecvTimeoutError::Disconnected) => return Err(self.shared.read_stopped()),
                Err(RecvTimeoutError::Timeout) => {
                    if self.shared.killed.load(Acquire) {
                        return self.try_wait().unwrap_or(Err(self.shared.read_stopped()));
                    }
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(ReadError::Timeout);
                    }
                }
            }
        }
    }

    /// The outcome if the node has answered, without waiting.
    pub fn try_wait(&self) -> Option<Result<u64, ReadError>> {
        match self.rx.try_recv() {
            Ok(outcome) => Some(outcome),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(Err(self.shared.read_stopped())),
        }
    }
}

/// Builds a [`Raft`] node: see [`Raft::builder`].
pub struct Builder {
    config: Config,
    me: usize,
    peers: usize,
    endpoint: Endpoint,
    storage: Box<dyn Storage>,
    initial_membership: Option<Membership>,
}

impl Builder {
    /// Where the node keeps its term, vote and log. The node resumes from what `storage`
    /// recovers, and from then on makes every change durable there before it sends a message
    /// that reports it. Without this, the node keeps nothing ([`NoStorage`]).
    pub fn storage(mut self, storage: impl Storage) -> Self {
        self.storage = Box::new(storage);
        self
    }

    /// The configuration the cluster starts with, until a membership change replaces it (by
    /// default every node `0..peers` votes). Every node of the cluster must be built with the
    /// same one. A node it leaves out (one to add later, [`Raft::add_learner`]) takes no part
    /// until a leader adds it; ids are below `peers`. Ignored once the node's storage holds a
    /// configuration of its own.
    pub fn initial_membership(mut self, membership: Membership) -> Self {
        self.initial_membership = Some(membership);
        self
    }

    /// Starts the node, delivering committed commands on `apply` (see [`Raft::new`]).
    ///
    /// # Errors
    ///
    /// [`BuildError`] if a setting cannot work, the storage cannot be read back, or what it holds
    /// cannot be a node's state.
    pub fn start(self, apply: Sender<ApplyMsg>) -> Result<Raft, BuildError> {
        Raft::spawn(self, |shared| ChannelApplier::new(apply, shared))
    }

    /// Starts the node, applying committed commands with `state_machine` on the node's own
    /// thread (see [`Raft::with_state_machine`]).
    ///
    /// # Errors
    ///
    /// As [`Builder::start`].
    pub fn start_with_state_machine<S: StateMachine>(
        self,
        state_machine: S,
    ) -> Result<Raft, BuildError> {
        Raft::spawn(self, |_| state_machine)
    }
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .field("me", &self.me)
            .field("peers", &self.peers)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Raft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (term, leader) = self.get_state();
        f.debug_struct("Raft")
            .field("id", &self.id())
            .field("term", &term)
            .field("leader", &leader)
            .finish()
    }
}
