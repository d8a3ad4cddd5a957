//! The thread that owns one node's [`Core`] and the handle the rest of the program holds.
//!
//! # The hot path
//!
//! [`Raft::start`] runs on the caller's thread. While the node leads, its thread publishes a
//! *claim word*: a leading flag, an epoch that changes whenever leadership starts or ends, and
//! the next free log index. `start` claims an index with one compare-and-swap on that word, pushes
//! `(term, index, command)` on a lock-free queue and wakes the node's thread if it sleeps. The
//! node thread drains the queue (the batch), puts proposals in index order, appends the
//! contiguous run that starts at its log's end with one [`Core::propose`], and sends one
//! AppendEntries per follower. So the index `start` returns is exactly where the command lands
//! for as long as this node stays leader of that term. When it stops leading it retires the
//! claim word first; proposals still queued for the old term are dropped, as Raft allows for
//! commands proposed to a deposed leader.
//!
//! # Backpressure
//!
//! The node publishes `appended`, the last index it has put in its log. `start` claims an index
//! only if it lies at most [`Config::max_queued_proposals`] beyond it, and otherwise refuses
//! with [`StartError::Busy`]. Every queued proposal of the current lease has an index between
//! the two, so the queue, an `ArrayQueue` of that capacity allocated once, never holds more of
//! them; a client faster than the cluster, or a leader whose thread is blocked, meets the bound
//! instead of growing memory. Proposals of an older lease, pushed by a caller descheduled
//! between its claim and its push, may still occupy slots: a proposal that finds the queue full
//! goes to a `SegQueue` beside it, which is empty in steady state.
//!
//! # Orderings
//!
//! - The node publishes leadership in this order: `state` (term, leader bit), then `claim`
//!   (leading, new epoch, next index), both `Release`. It retires it in the opposite order:
//!   `claim` (not leading, new epoch), then `state`.
//! - `start` loads `claim` (`Acquire`), then `state` (`Acquire`), then compare-and-swaps `claim`
//!   from the value it loaded to that value + 1. If the CAS succeeds, the term it read is the
//!   term of that claim: a `state` newer than the claim would have been written after a newer
//!   `claim` store, which (being ordered before the `state` store the caller acquired) makes the
//!   CAS fail. The epoch makes every leadership change visible in the word even if the index
//!   happens to repeat.
//! - `appended` is stored (`Release`) before the claim word that starts a lease and after each
//!   batch; `start` loads it (`Acquire`) after the claim word. It only ever lags the log, so
//!   a stale value makes `start` refuse early, never queue more than the bound.
//! - `state` packs `term << 1 | is_leader` in one word, so `get_state` reads a consistent pair
//!   with one `Acquire` load.
//! - `Shared::killed` is `Release`/`Acquire`: after `kill` returns, the node has left its loop.
//! - Waking follows the transport's eventcount protocol (see `zeroraft_transport::Waker`): the
//!   proposal is pushed before the wake, and the node's `has_work` checks the queue.
//! - Status snapshots are published through `ArcSwap`, which orders the snapshot's contents.
//! - Entry buffers move between nodes through [`ENTRY_BUFFERS`], an `ArrayQueue`, whose push/pop
//!   pair orders a buffer's hand-over like any other queued value.
//!
//! The claim word, `state`, `appended` and the proposal queue live in `claim`, which holds the
//! code the points above argue about (the claim, the order of publishing and retiring, the
//! hand-over and wake-up). loom checks it against the interleavings of the node thread and
//! concurrent callers (all of them for two threads, those with at most three preemptions for
//! three): distinct indices, the term of the claimed lease, the backpressure bound and no lost
//! wake-up. Run it with
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release -p zeroraft-engine --lib loom`.
//!
//! # Entry buffers
//!
//! Every AppendEntries carries its entries in a vector; a follower's core keeps the emptied
//! vectors and a leader's core refills them (see `core`'s module docs). Nodes of one process
//! trade them through one process-wide pool, so that under steady load the replication path
//! allocates nothing per message: after each round a node puts back what its core holds beyond
//! [`KEPT_ENTRY_BUFFERS`] and tops its core up to that many from the pool.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender, TryRecvError};
use crossbeam_queue::ArrayQueue;
use zeroraft_transport::Waker;

use zeroraft_storage::{NoStorage, Snapshot, Storage};

use crate::core::{Core, Entry, Message, Role};
use crate::{
    ApplyMsg, BuildError, Compaction, Config, ConfigError, Endpoint, NodeFailure, PeerStatus,
    ReadError, RestoreError, StartError, Status, TransferError,
};
use claim::{Lease, Proposal, Proposals, Refused};
use writer::{Completed, Writer};

mod claim;
mod writer;

/// Most messages handled before the node thread flushes what it has to send.
const MAX_MESSAGES_PER_ROUND: usize = 1024;
/// How long a blocked apply send waits before checking whether the node was killed.
const APPLY_RETRY: Duration = Duration::from_millis(50);
/// How often a [`PendingRead`] being waited for checks whether its node was killed.
const READ_KILL_CHECK: Duration = Duration::from_millis(50);

/// Entry buffers a node's core keeps between rounds: enough for a round of AppendEntries to
/// several followers.
const KEPT_ENTRY_BUFFERS: usize = 16;
/// Capacity of [`ENTRY_BUFFERS`]. With buffers of at most [`crate::core::MAX_BUFFER_CAPACITY`]
/// entries, the pool holds at most a few megabytes.
const POOLED_ENTRY_BUFFERS: usize = 128;

/// The entry buffers nodes of this process trade (see the module docs).
static ENTRY_BUFFERS: std::sync::LazyLock<ArrayQueue<Vec<Entry>>> =
    std::sync::LazyLock::new(|| ArrayQueue::new(POOLED_ENTRY_BUFFERS));

/// A read on its way from [`Raft::read_index`] or [`Raft::read_lease`] to the node thread, with
/// where to answer it.
struct ReadRequest {
    lease: bool,
    reply: Sender<Result<u64, ReadError>>,
}

/// What the handle and the node thread share.
struct Shared {
    me: usize,
    peers: usize,
    /// The claim word and what is published beside it. See the module's orderings.
    lease: Lease,
    /// Proposals on their way to the node's thread.
    proposals: Proposals,
    /// The latest snapshot the service handed to [`Raft::snapshot`], not yet taken by the node.
    snapshot_requests: ArrayQueue<(u64, Bytes)>,
    /// Reads on their way to the node's thread.
    reads: ArrayQueue<ReadRequest>,
    /// A leadership transfer asked for and not yet taken by the node: `term << 8 | target + 1`
    /// (the term the caller saw this node lead, and the target's id, below 64), or 0.
    transfer_request: AtomicU64,
    status: ArcSwap<Status>,
    killed: AtomicBool,
    /// Why the node stopped on its own, if it did. Set once, before `killed`.
    failure: std::sync::OnceLock<NodeFailure>,
    waker: Waker,
    max_command_bytes: usize,
    /// [`Config::spin`]: also how long a reader looks for its answer before it sleeps.
    spin: Duration,
}

impl Shared {
    /// `(term, is_leader)` as last published, with one `Acquire` load.
    fn load_state(&self) -> (u64, bool) {
        self.lease.load_state()
    }

    /// Why a read cannot be answered by a node that stopped.
    fn read_stopped(&self) -> ReadError {
        match self.failure.get() {
            Some(failure) => ReadError::Failed(failure.clone()),
            None => ReadError::Killed,
        }
    }

    fn has_proposals(&self) -> bool {
        !self.proposals.is_empty()
    }

    fn pop_proposal(&self) -> Option<Proposal> {
        self.proposals.pop()
    }
}

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
        } = builder;
        config.validate(me, peers)?;
        if endpoint.id() != me || endpoint.nodes() != peers {
            return Err(ConfigError::EndpointMismatch {
                endpoint_id: endpoint.id(),
                endpoint_nodes: endpoint.nodes(),
            }
            .into());
        }
        let recovered = storage.recover()?;
        if let Err(problem) = crate::core::check_recovered_state(peers, &recovered) {
            return Err(BuildError::Inconsistent(problem.to_string()));
        }
        let seed = config.seed.unwrap_or_else(|| fastrand::u64(..));
        let seed = seed ^ (me as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F);
        let term = recovered.hard_state.term;
        let dedicated = config
            .dedicated_writer
            .unwrap_or_else(|| storage.blocks_on_disk());
        let writer = Writer::new(storage, dedicated, me, endpoint.waker())
            .map_err(|e| BuildError::Thread(e.to_string()))?;
        let core = Core::restore(me, peers, config.core_config(), seed, 0, recovered);
        let mut status = Status::initial(me);
        status.term = term;
        status.last_log_index = core.log().last_index();
        status.last_log_term = core.log().last_term();
        status.durable_index = core.durable_index();
        status.snapshot_index = core.log().offset();
        status.log_entries = core.log().len() as u64;
        status.log_bytes = core.log().bytes();
        let shared = Arc::new(Shared {
            me,
            peers,
            lease: Lease::new(term, config.max_queued_proposals as u64),
            proposals: Proposals::new(config.max_queued_proposals),
            snapshot_requests: ArrayQueue::new(1),
            reads: ArrayQueue::new(Raft::MAX_PENDING_READS),
            transfer_request: AtomicU64::new(0),
            status: ArcSwap::from_pointee(status),
            killed: AtomicBool::new(false),
            failure: std::sync::OnceLock::new(),
            waker: endpoint.waker(),
            max_command_bytes: config.max_command_bytes,
            spin: config.spin,
        });
        let node = Node {
            core,
            endpoint,
            writer,
            state_machine: make_state_machine(shared.clone()),
            shared: shared.clone(),
            started: Instant::now(),
            spin: config.spin,
            compaction: config.compaction,
            pending: Vec::new(),
            spare_status: None,
            messages_in: 0,
            messages_out: 0,
            syncs: 0,
            sync_time: Duration::ZERO,
            leading_term: None,
            published_term: term,
            epoch: 0,
            reads_asked: std::collections::HashMap::new(),
            reads_confirmed: std::collections::VecDeque::new(),
            next_read_id: 0,
            in_state_machine: false,
        };
        let thread = std::thread::Builder::new()
            .name(format!("zeroraft-node-{me}"))
            .spawn(move || node.run())
            .map_err(|e| BuildError::Thread(e.to_string()))?;
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
                let status = shared.status.load();
                return Err(StartError::NotLeader {
                    term: shared.load_state().0,
                    leader: status.leader,
                });
            }
            Err(Refused::Busy) => {
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

    /// `(current term, is_leader)`, as last published by the node. The tester's `GetState`.
    pub fn get_state(&self) -> (u64, bool) {
        self.handle.shared.load_state()
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
        if shared.reads.push(ReadRequest { lease, reply: tx }).is_err() {
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
    /// [`TransferError::BadTarget`] if `target` is this node or not in the cluster,
    /// [`TransferError::NotLeader`] if this node does not lead, [`TransferError::Killed`] once
    /// it stopped.
    pub fn transfer_leadership(&self, target: usize) -> Result<(), TransferError> {
        let shared = &self.handle.shared;
        if target == shared.me || target >= shared.peers {
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
}

impl Builder {
    /// Where the node keeps its term, vote and log. The node resumes from what `storage`
    /// recovers, and from then on makes every change durable there before it sends a message
    /// that reports it. Without this, the node keeps nothing ([`NoStorage`]).
    pub fn storage(mut self, storage: impl Storage) -> Self {
        self.storage = Box::new(storage);
        self
    }

    /// Starts the node, delivering committed commands on `apply` (see [`Raft::new`]).
    ///
    /// # Errors
    ///
    /// [`BuildError`] if a setting cannot work, the storage cannot be read back, or what it holds
    /// cannot be a node's state.
    pub fn start(self, apply: Sender<ApplyMsg>) -> Result<Raft, BuildError> {
        Raft::spawn(self, |shared| ChannelApplier {
            tx: apply,
            open: true,
            shared,
        })
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

/// Everything the node thread owns.
struct Node<S> {
    core: Core,
    endpoint: Endpoint,
    writer: Writer,
    state_machine: S,
    shared: Arc<Shared>,
    /// The origin of the core's clock.
    started: Instant,
    spin: Duration,
    compaction: Compaction,
    /// Proposals taken from the queue that cannot be appended yet (a lower index is still on
    /// its way). Kept sorted by index.
    pending: Vec<Proposal>,
    /// The previously published status, reused when no reader holds it any more.
    spare_status: Option<Arc<Status>>,
    messages_in: u64,
    messages_out: u64,
    /// Writes made durable, and the time spent in them.
    syncs: u64,
    sync_time: Duration,
    /// The term this node leads (and has published a claim word for), if any.
    leading_term: Option<u64>,
    /// The term last stored in `Shared::state`.
    published_term: u64,
    /// Leadership epoch: incremented whenever this node starts or stops leading.
    epoch: u64,
    /// Reads handed to the core and not yet confirmed or refused, by the id given to the core.
    reads_asked: std::collections::HashMap<u64, Sender<Result<u64, ReadError>>>,
    /// Reads confirmed with their read index, waiting until it is applied, in the order
    /// confirmed.
    reads_confirmed: std::collections::VecDeque<(u64, Sender<Result<u64, ReadError>>)>,
    next_read_id: u64,
    /// Whether the thread is inside a call to the state machine: a panic there is the state
    /// machine's ([`NodeFailure::StateMachinePanic`]), any other the engine's.
    in_state_machine: bool,
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
    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn run(mut self) {
        let shared = self.shared.clone();
        let _guard = RetireOnExit(&shared);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_loop()));
        if let Err(panic) = outcome {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned());
            self.fail(if self.in_state_machine {
                NodeFailure::StateMachinePanic { message }
            } else {
                NodeFailure::Panic { message }
            });
        }
        // Commands still queued will never be appended: free them now rather than with the last
        // handle. Reads still queued end with the node: dropping them tells their waiters.
        while self.shared.pop_proposal().is_some() {}
        while self.shared.reads.pop().is_some() {}
        self.reads_asked.clear();
        self.reads_confirmed.clear();
        let mut status = Status::clone(&self.shared.status.load());
        status.killed = true;
        status.failure = self.shared.failure.get().map(|f| f.to_string().into());
        self.shared.status.store(Arc::new(status));
    }

    fn run_loop(&mut self) {
        while !self.shared.killed.load(Acquire) {
            let now = self.now();
            let before = (self.core.log().last_index(), self.core.commit_index());
            let mut handled = 0;
            while handled < MAX_MESSAGES_PER_ROUND {
                let Some((from, msg)) = self.endpoint.try_recv() else {
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
            self.take_proposals(now);
            self.take_reads();
            // The leader's AppendEntries go out before its own write; the rest after it.
            self.flush();
            if let Err(failure) = self.write() {
                self.fail(failure);
                break;
            }
            self.flush();
            self.trade_entry_buffers();
            if let Err(failure) = self.apply() {
                self.fail(failure);
                break;
            }
            self.answer_reads();
            self.compact();
            self.publish_status();
            if handled < MAX_MESSAGES_PER_ROUND && !self.shared.has_proposals() {
                let deadline = self.started + Duration::from_nanos(self.core.next_deadline());
                // Spin only while the log is moving, or reads wait for their round: more work
                // (the answers) is likely to follow within microseconds. Heartbeats alone never
                // make a node spin.
                let busy = before != (self.core.log().last_index(), self.core.commit_index())
                    || self.core.pending_reads() > 0;
                let spin = if busy { self.spin } else { Duration::ZERO };
                let (shared, writer) = (&self.shared, &self.writer);
                let has_work = || {
                    shared.has_proposals()
                        || !shared.snapshot_requests.is_empty()
                        || !shared.reads.is_empty()
                        || shared.transfer_request.load(Relaxed) != 0
                        || shared.killed.load(Acquire)
                        || writer.has_completion()
                };
                self.endpoint.wait(Some(deadline), spin, &has_work);
            }
        }
    }

    /// Collects the write that completed, if one did, then starts the next if the core changed
    /// anything and no write is under way: one write (and, for a file, one `fdatasync`) at a
    /// time, carrying everything that changed since the last (group commit). A completed write
    /// lets the core release the messages that waited for it.
    fn write(&mut self) -> Result<(), NodeFailure> {
        if let Some(completed) = self.writer.poll() {
            self.completed(completed)?;
        }
        if !self.writer.busy()
            && let Some(persist) = self.core.take_persist()
            && let Some(completed) = self.writer.submit(persist, &self.core)
        {
            self.completed(completed)?;
        }
        Ok(())
    }

    fn completed(&mut self, completed: Completed) -> Result<(), NodeFailure> {
        completed.result?;
        self.sync_time += completed.took;
        self.syncs += 1;
        self.core.persisted(completed.generation);
        Ok(())
    }

    /// Stops the node after a failure it cannot go on from: nothing it has not made durable is
    /// sent, `start` reports the reason, and so does the status.
    fn fail(&mut self, failure: NodeFailure) {
        tracing::error!(node = self.core.id(), %failure, "node stopped");
        let _ = self.shared.failure.set(failure);
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
        if self.pending.is_empty() {
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
        let first = self.core.log().last_index() + 1;
        let run = self
            .pending
            .iter()
            .enumerate()
            .take_while(|(i, p)| p.index == first + *i as u64)
            .count();
        if run > 0 {
            let appended = self
                .core
                .propose(now, self.pending.drain(..run).map(|p| p.command));
            debug_assert_eq!(appended, Some((first, first + run as u64 - 1)));
            self.shared.lease.set_appended(self.core.log().last_index());
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
            if self.reads_asked.len() + self.reads_confirmed.len() >= Raft::MAX_PENDING_READS {
                let _ = request.reply.send(Err(ReadError::Busy {
                    limit: Raft::MAX_PENDING_READS,
                }));
                continue;
            }
            let id = self.next_read_id;
            self.next_read_id += 1;
            self.reads_asked.insert(id, request.reply);
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

    /// Answers the reads the core refused, and the confirmed ones whose index is applied.
    fn answer_reads(&mut self) {
        let leader = self.core.leader();
        for outcome in self.core.take_read_outcomes() {
            let Some(reply) = self.reads_asked.remove(&outcome.id) else {
                continue;
            };
            match outcome.index {
                Some(index) => self.reads_confirmed.push_back((index, reply)),
                None => {
                    let _ = reply.send(Err(ReadError::NotLeader { leader }));
                }
            }
        }
        if self.shared.killed.load(Acquire) {
            // The apply channel may have given up delivering: what counts as applied may not
            // have reached the service. The waiters learn the node was killed.
            return;
        }
        let applied = self.core.last_applied();
        while let Some((index, _)) = self.reads_confirmed.front()
            && *index <= applied
        {
            let (index, reply) = self.reads_confirmed.pop_front().expect("front exists");
            let _ = reply.send(Ok(index));
        }
    }

    fn flush(&mut self) {
        for (to, msg) in self.core.take_messages() {
            self.endpoint.send(to, msg);
            self.messages_out += 1;
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

    /// Hands the state machine a snapshot it must restore first, if there is one, then newly
    /// committed entries, in order.
    ///
    /// # Errors
    ///
    /// If the state machine cannot restore the snapshot.
    fn apply(&mut self) -> Result<(), NodeFailure> {
        self.in_state_machine = true;
        if let Some(snapshot) = self.core.snapshot_to_apply() {
            self.state_machine
                .restore(snapshot)
                .map_err(|error| NodeFailure::RestoreRefused {
                    index: snapshot.index,
                    error,
                })?;
            self.core.snapshot_applied();
        }
        if let Some((from, to)) = self.core.apply_range() {
            for (entry, index) in self.core.log().slice(from, to).iter().zip(from..) {
                self.state_machine.apply(index, entry.term, &entry.command);
            }
            self.state_machine.flush(to);
            self.core.advance_applied(to);
        }
        self.in_state_machine = false;
        Ok(())
    }

    /// Compacts the log with the service's snapshot if it gave one ([`Raft::snapshot`]), or, when
    /// the compaction policy says it is time, with one the state machine makes.
    fn compact(&mut self) {
        if let Some((index, data)) = self.shared.snapshot_requests.pop() {
            self.core.compact(index, data);
        }
        let log = self.core.log();
        let applied = self.core.last_applied();
        if self
            .compaction
            .due(applied.saturating_sub(log.offset()), log.bytes())
            && applied > log.offset()
        {
            self.in_state_machine = true;
            let data = self.state_machine.snapshot();
            self.in_state_machine = false;
            if let Some(data) = data {
                self.core.compact(applied, data);
            }
        }
    }

    /// Publishes a fresh status snapshot, reusing the previous one's allocation when no reader
    /// still holds it.
    fn publish_status(&mut self) {
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
        status.peers.extend((0..core.peers()).filter_map(|peer| {
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
        status.messages_out = self.messages_out;
        status.durable_index = core.durable_index();
        status.snapshot_index = core.log().offset();
        status.log_entries = core.log().len() as u64;
        status.log_bytes = core.log().bytes();
        status.snapshots_installed = stats.snapshots_installed;
        status.syncs = self.syncs;
        status.sync_time = self.sync_time;
        status.transfer_target = core.transfer_target();
        status.lease = core.has_lease();
        status.reads_confirmed = stats.reads_confirmed;
        status.lease_reads = stats.lease_reads;
        status.transfers_started = stats.transfers_started;
        status.transfers_abandoned = stats.transfers_abandoned;
        self.spare_status = Some(self.shared.status.swap(next));
    }
}

/// What consumes the committed log. Called on the node's own thread.
///
/// A state machine that calls its own node (to compact it, or to stop it) holds a [`WeakRaft`]
/// from [`Raft::downgrade`]: a [`Raft`] it held would keep the node alive after every other
/// handle is gone. A panic in any of these methods stops the node with
/// [`NodeFailure::StateMachinePanic`]: [`Raft::failure`] returns it, [`Raft::try_start`] returns
/// it as [`StartError::Failed`], its text becomes [`Status::failure`], and `tracing` logs it.
pub trait StateMachine: Send + 'static {
    /// Applies the committed entry at `index`, proposed in `term`. Called in index order, each
    /// index exactly once.
    fn apply(&mut self, index: u64, term: u64, command: &Bytes);

    /// Called after each run of [`StateMachine::apply`] calls, with the last index applied: the
    /// place to publish progress once per batch rather than once per entry. Does nothing by
    /// default.
    fn flush(&mut self, last_index: u64) {
        let _ = last_index;
    }

    /// Serializes the state, as of the last index applied, for a snapshot that replaces the log
    /// up to there; called on the node's thread when [`Config::compaction`] says it is time.
    /// `None`, the default, declines: the log is then not compacted.
    fn snapshot(&mut self) -> Option<Bytes> {
        None
    }

    /// Replaces the state with `snapshot`'s: one the leader sent because this node lacked
    /// entries it had compacted away, or the one the node restarted from. Commands after
    /// `snapshot.index` are applied next.
    ///
    /// # Errors
    ///
    /// Why it cannot; the node then stops with [`NodeFailure::RestoreRefused`]. The default
    /// cannot restore anything: a state machine that may be sent snapshots must implement this.
    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), RestoreError> {
        let _ = snapshot;
        Err(RestoreError::new(
            "this state machine cannot restore snapshots",
        ))
    }
}

impl<F: FnMut(u64, u64, &Bytes) + Send + 'static> StateMachine for F {
    fn apply(&mut self, index: u64, term: u64, command: &Bytes) {
        self(index, term, command);
    }
}

/// The state machine behind [`Raft::new`]: sends an [`ApplyMsg`] per entry on a channel. When
/// the channel is bounded and full it waits, checking now and then whether the node was killed;
/// when its receiver is gone it stops sending.
struct ChannelApplier {
    tx: Sender<ApplyMsg>,
    open: bool,
    shared: Arc<Shared>,
}

impl StateMachine for ChannelApplier {
    fn apply(&mut self, index: u64, term: u64, command: &Bytes) {
        self.deliver(ApplyMsg::Command {
            index,
            term,
            command: command.clone(),
        });
    }

    /// Passes the snapshot on to the service, ahead of the commands after it.
    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), RestoreError> {
        self.deliver(ApplyMsg::Snapshot {
            index: snapshot.index,
            term: snapshot.term,
            data: snapshot.data.clone(),
        });
        Ok(())
    }
}

impl ChannelApplier {
    fn deliver(&mut self, mut msg: ApplyMsg) {
        if !self.open {
            return;
        }
        loop {
            match self.tx.send_timeout(msg, APPLY_RETRY) {
                Ok(()) => return,
                Err(SendTimeoutError::Timeout(back)) => {
                    if self.shared.killed.load(Acquire) {
                        self.open = false;
                        return;
                    }
                    msg = back;
                }
                Err(SendTimeoutError::Disconnected(_)) => {
                    tracing::debug!(node = self.shared.me, "apply channel closed");
                    self.open = false;
                    return;
                }
            }
        }
    }
}
