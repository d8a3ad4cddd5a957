//! The sans-IO Raft state machine: leader election and log replication as in Figure 2 of the
//! extended Raft paper, with batching, pipelining and fast backtracking.
//!
//! The core owns no thread, clock, channel or global RNG. Time (`now`, in nanoseconds from any
//! fixed origin), messages, proposals and a seed go in; messages to send ([`Core::take_messages`]),
//! newly committed entries ([`Core::apply_range`]) and state (term, role, leader, progress) come
//! out. The outbox is a buffer the core reuses, so steady-state steps do not allocate for it. The
//! same inputs give the same outputs, which is what the deterministic simulator relies on.
//!
//! # Where things are
//!
//! [`Core`] is one struct whose `impl` is split by protocol phase, one file each:
//!
//! - this file: the state and settings, construction, what the driver reads, [`Core::tick`],
//!   and [`Core::step`], which handles terms the same way for every role;
//! - `election`: the election timer, becoming follower, candidate or leader, votes, PreVote,
//!   CheckQuorum and leader stickiness;
//! - `replication`: the leader's proposals, AppendEntries, heartbeats, commit rule and
//!   backtracking, and the follower's consistency check and append;
//! - `reads`: ReadIndex, leases and leadership transfer;
//! - `persist`: what the driver must make durable, and the messages that wait for it;
//! - `snapshot`: compaction, and sending and installing snapshots;
//! - `membership_change`: the configuration in force, and how a leader changes it (learners,
//!   joint consensus);
//! - `quorum`: majorities and vote tallies, which every quorum question goes through;
//! - `progress`, `log` and `message`: the leader's record of each follower, the log, the
//!   messages;
//! - `invariants`: the invariants stated on the state, as [`Core::check_invariants`];
//! - `bugs`: the [`Hooks`] that let the simulator's tests switch classic bugs on.
//!
//! # Invariants
//!
//! - `commit_index` never decreases, and never passes the last log index.
//! - A committed entry is never truncated.
//! - Entries are applied in order, each once: `last_applied <= commit_index`.
//! - A leader never truncates or overwrites its own log.
//!
//! These and the others stated on the state are asserted where they could break, at O(1)
//! cost, and checked whole by [`Core::check_invariants`], which debug builds run after every
//! input. A broken invariant panics with the node id, term and index involved.

mod bugs;
mod election;
mod inflights;
mod invariants;
mod log;
mod membership;
mod membership_change;
mod message;
mod persist;
mod progress;
mod quorum;
mod reads;
mod replication;
mod snapshot;

use std::collections::VecDeque;

use bytes::BytesMut;
use quorum::{JointMajority, NodeSet, VoteTally};
use smallvec::SmallVec;

pub use bugs::{Bug, Hooks, NoBugs};
pub use inflights::Inflights;
pub use invariants::InvariantError;
pub use log::{Entry, EntryKind, Log};
pub use membership::{Membership, MembershipError};
pub use membership_change::MembershipChangeError;
pub use message::{
    AppendEntries, AppendEntriesReply, InstallSnapshot, InstallSnapshotReply, Message, RequestVote,
    RequestVoteReply, TimeoutNow,
};
pub use persist::{Persist, RecoveredStateError, check_recovered_state};
pub use progress::{Progress, ProgressState, SnapshotTransfer};
use reads::{PendingRead, Transfer};
pub use reads::{ReadOutcome, TransferError};
pub use replication::{Backtrack, MAX_BUFFER_CAPACITY};
pub use zeroraft_storage::{HardState, Recovered, Snapshot, Update};

/// Time in nanoseconds since an arbitrary origin chosen by whoever drives the core.
pub type Nanos = u64;

/// The role a node plays in its current term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Answers leaders and candidates; starts an election if it hears from no leader. With
    /// [`CoreConfig::pre_vote`] it first runs a pre-vote round, still as a follower
    /// ([`Core::is_pre_candidate`]).
    Follower,
    /// Asking for votes to become leader.
    Candidate,
    /// Accepts proposals and replicates the log.
    Leader,
}

/// Timing and flow-control settings of a core. All durations are in nanoseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreConfig {
    /// How often a leader sends AppendEntries to every follower when it has nothing else to say.
    pub heartbeat_interval: Nanos,
    /// Election timeouts are drawn uniformly from `[election_timeout_min, election_timeout_max)`.
    pub election_timeout_min: Nanos,
    /// See `election_timeout_min`.
    pub election_timeout_max: Nanos,
    /// Most entries one AppendEntries carries.
    pub max_append_entries: usize,
    /// Most payload bytes one AppendEntries carries (at least one entry is always sent).
    pub max_append_bytes: usize,
    /// Most AppendEntries in flight to one follower in Replicate state.
    pub max_inflight: usize,
    /// Most bytes of commands in flight to one follower in Replicate state: no AppendEntries
    /// goes out that would take the bytes sent and not yet acknowledged past it, except one
    /// alone when nothing is in flight (so a single larger entry still gets through). Bounds
    /// the memory a slow follower holds in messages on their way, which would otherwise be
    /// `max_inflight × max_append_bytes`.
    pub max_inflight_bytes: usize,
    /// After the commit index advances, how long a leader waits before telling followers that
    /// got no AppendEntries since (an empty one carries the new commit index). Under load the
    /// next batch carries it sooner; when idle this bounds how stale a follower's commit index
    /// gets, instead of the heartbeat interval.
    pub commit_notify_delay: Nanos,
    /// Where a leader resumes after a follower rejects an AppendEntries over a conflicting term.
    pub backtrack: Backtrack,
    /// Most snapshot bytes in one InstallSnapshot.
    pub max_snapshot_chunk: usize,
    /// PreVote (Raft thesis §9.6): a node whose election timeout fires first asks the others
    /// whether they would vote for it ([`Message::PreVote`]), without changing its term, and
    /// starts an election only if a majority would. A node cut off from the cluster then never
    /// raises its term, and cannot depose a healthy leader when it comes back. Off by default:
    /// the 6.824 tester's RPC counts were written for plain Raft. How it works: `core/election.rs`.
    pub pre_vote: bool,
    /// CheckQuorum: a leader that heard from no majority of the cluster (itself included)
    /// within an `election_timeout_min` steps down, so that a leader cut off from the majority
    /// stops accepting commands within two minimum election timeouts. With it, a node that
    /// heard from its leader within an `election_timeout_min` (or leads) also ignores
    /// RequestVote (leader stickiness). Off by default. How it works: `core/election.rs`.
    pub check_quorum: bool,
    /// A new leader appends an entry with an empty command, so that entries of earlier terms
    /// commit (and linearizable reads can be served) without waiting for a client's command.
    /// Off by default: the 6.824 tester expects each index to hold a command it proposed.
    pub leader_no_op: bool,
    /// Lease reads ([`Core::read_lease`], with [`CoreConfig::check_quorum`] only) assume that
    /// any two nodes' clocks advance at rates that differ by at most this many percent. The
    /// lease then lasts `election_timeout_min × (100 − 2 × max_clock_drift_percent) / 100`
    /// from the start of a heartbeat round a majority answered. At most 49; default 5.
    pub max_clock_drift_percent: u8,
}

impl Default for CoreConfig {
    fn default() -> Self {
        const MS: Nanos = 1_000_000;
        Self {
            heartbeat_interval: 100 * MS,
            election_timeout_min: 300 * MS,
            election_timeout_max: 600 * MS,
            max_append_entries: 4096,
            max_append_bytes: 1 << 20,
            max_inflight: 64,
            max_inflight_bytes: 8 << 20,
            commit_notify_delay: 2 * MS,
            backtrack: Backtrack::LeaderTerm,
            max_snapshot_chunk: 1 << 20,
            pre_vote: false,
            check_quorum: false,
            leader_no_op: false,
            max_clock_drift_percent: 5,
        }
    }
}

impl CoreConfig {
    /// The defaults with [`CoreConfig::pre_vote`], [`CoreConfig::check_quorum`] and
    /// [`CoreConfig::leader_no_op`] on: what a cluster that is not the 6.824 tester should run.
    pub fn production() -> Self {
        Self {
            pre_vote: true,
            check_quorum: true,
            leader_no_op: true,
            ..Self::default()
        }
    }

    /// How long a lease lasts after the start of the heartbeat round that earned it.
    pub fn lease_duration(&self) -> Nanos {
        let drift = u64::from(self.max_clock_drift_percent.min(49));
        self.election_timeout_min / 100 * (100 - 2 * drift)
    }
}

/// Counters of notable events, for monitoring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoreStats {
    /// Elections this node started (times it became candidate).
    pub elections_started: u64,
    /// Elections this node won (times it became leader).
    pub elections_won: u64,
    /// Times this node stopped being leader.
    pub step_downs: u64,
    /// Snapshots this node installed from a leader.
    pub snapshots_installed: u64,
    /// Leadership transfers this node started as leader.
    pub transfers_started: u64,
    /// Of those, the ones it gave up because the target was not leader within
    /// `election_timeout_min`.
    pub transfers_abandoned: u64,
    /// Reads this node confirmed as leader, with a heartbeat round or under its lease.
    pub reads_confirmed: u64,
    /// Of those, the ones served under the lease, without a round of their own.
    pub lease_reads: u64,
}
/// One Raft node's state machine.
///
/// `H` says which deliberately broken rules it follows; the default, [`NoBugs`], follows none
/// and costs nothing (see [`Hooks`]).
pub struct Core<H: Hooks = NoBugs> {
    id: usize,
    peers: usize,
    config: CoreConfig,
    rng: fastrand::Rng,
    now: Nanos,

    /// Latest term this node has seen. Never decreases.
    term: u64,
    /// Whom this node voted for in `term`.
    voted_for: Option<usize>,
    role: Role,
    /// The leader of `term`, once known.
    leader: Option<usize>,
    log: Log,
    /// Invariant: `commit_index <= log.last_index()`; never decreases.
    commit_index: u64,
    /// Invariant: `last_applied <= commit_index`.
    last_applied: u64,

    /// When a follower or candidate starts the next election.
    election_deadline: Nanos,
    /// When a leader next sends heartbeats.
    heartbeat_deadline: Nanos,
    /// When a leader tells lagging followers about its commit index, if it has news.
    commit_notify_deadline: Option<Nanos>,
    /// Who decides: every quorum question goes to this configuration (see `quorum.rs`).
    /// Invariant: `membership`'s quorum.
    quorum: JointMajority,
    /// The configuration in force: the last configuration entry's in the log, else the
    /// snapshot's, else `initial_membership` (see `membership_change.rs`).
    membership: Membership,
    /// The index of the entry holding `membership`: the snapshot's index if it came with the
    /// snapshot, 0 for the initial configuration. Invariant: no configuration entry after it in
    /// the log.
    membership_index: u64,
    /// The configuration this node was built with.
    initial_membership: Membership,
    /// Leader: whether it appends the configuration leaving a committed joint one by itself.
    leave_joint_automatically: bool,
    /// Candidate: the answers to its RequestVote of `term`. Pre-candidate: the answers to its
    /// PreVote for `term + 1`.
    votes: VoteTally,
    /// Whether this follower runs a pre-vote round for `term + 1` (a pre-candidate).
    /// Invariant: only set on a follower, with `leader` unknown.
    pre_voting: bool,
    /// When this node last heard from `leader` (an AppendEntries or InstallSnapshot of `term`);
    /// until it has, when the core was created or restored. Never decreases. With CheckQuorum
    /// the node ignores RequestVote until `election_timeout_min` after it
    /// (`ignores_request_vote`): the start counts because the node may have answered a
    /// leader's heartbeat just before it restarted, and that leader's lease counts on it.
    leader_contact: Nanos,
    /// Leader with CheckQuorum: the nodes heard from since the last quorum check; this node is
    /// always in it.
    recent_active: NodeSet,
    /// Leader with CheckQuorum: when it next checks that it heard from a majority.
    quorum_deadline: Nanos,
    /// Leader: the heartbeat round, which every AppendEntries carries; a new one starts with
    /// every heartbeat broadcast.
    round: u64,
    /// Leader: a round not yet answered by a majority and when it started; when a majority
    /// answers it (or a later one), the lease runs from that start.
    lease_round: Option<(u64, Nanos)>,
    /// Leader: lease reads may be served before this time.
    lease_until: Nanos,
    /// Leader: whether it gave up lease reads for the rest of its term (it started a
    /// leadership transfer, whose election does not respect leases).
    lease_forfeited: bool,
    /// Leader: reads waiting for a round, in the order of their rounds.
    pending_reads: VecDeque<PendingRead>,
    /// Reads confirmed or refused, for the driver to take.
    read_outcomes: Vec<ReadOutcome>,
    /// Leader: a leadership transfer under way.
    transfer: Option<Transfer>,
    /// Leader: one entry per node, indexed by node id. Of the leader's own slot only
    /// `match_index` is used: `maybe_commit` sets it to the last index before counting a majority.
    progress: SmallVec<[Progress; 8]>,
    /// Messages that may be sent now, reused across steps.
    outbox: Vec<(usize, Message)>,
    /// Messages waiting for a write: `(generation, to, message)`, in the order they were made.
    /// Invariant: generations never decrease along the queue, and each is above `durable_gen`.
    held: VecDeque<(u64, usize, Message)>,
    /// Whether term or vote changed since the last [`Core::take_persist`].
    hard_state_dirty: bool,
    /// The lowest log index changed (appended, or truncated away) since the last
    /// [`Core::take_persist`]; `u64::MAX` if none.
    log_dirty_from: u64,
    /// The last index of the log as handed to storage by the last [`Core::take_persist`].
    stored_last: u64,
    /// The generation of the last [`Persist`] taken, and of the last reported durable.
    /// Invariant: `durable_gen <= taken_gen`.
    taken_gen: u64,
    durable_gen: u64,
    /// Writes taken but not yet durable: `(generation, last index it makes durable)`, the index
    /// lowered if the log is truncated below it meanwhile.
    writing: VecDeque<(u64, u64)>,
    /// Entries up to here are on stable storage, as they are in the log now.
    /// Invariant: `durable_index <= log.last_index()`.
    durable_index: u64,
    /// The latest snapshot: taken by the service, installed from a leader, or recovered.
    /// Invariant: present, with index `log.offset()`, whenever `log.offset() > 0`.
    snapshot: Option<Snapshot>,
    /// Whether `snapshot` changed since the last [`Core::take_persist`].
    snapshot_dirty: bool,
    /// Whether the service has yet to be given `snapshot` (installed or recovered); no entry is
    /// applied until it has. Invariant: when set, `last_applied < snapshot index` or the node
    /// just restarted from it.
    snapshot_to_apply: bool,
    /// A snapshot being received in chunks: (the sending leader's term, the snapshot's last
    /// index and its term, the bytes so far). Chunks of another leader's snapshot never mix with
    /// these: two leaders' services may serialize the same state differently.
    incoming: Option<(u64, u64, u64, BytesMut)>,
    /// Empty vectors for the entries of the next AppendEntries (see `core/replication.rs`).
    /// Invariant: each is empty, with a capacity in `1..=MAX_BUFFER_CAPACITY`; at most
    /// `MAX_SPARE_BUFFERS` of them.
    spare_buffers: Vec<Vec<Entry>>,
    stats: CoreStats,
    /// Which deliberately broken rules to follow ([`NoBugs`]: none), for testing the simulator's
    /// checker.
    hooks: H,
}

/// Largest cluster a core supports (votes are a bit set in a `u64`).
pub const MAX_PEERS: usize = 64;

impl Core<NoBugs> {
    /// A follower in term 0 with an empty log, node `id` of `peers`, whose random choices derive
    /// from `seed`.
    ///
    /// # Panics
    ///
    /// If `id >= peers`, `peers` is 0 or above [`MAX_PEERS`], or the election timeout range is
    /// empty. The public API validates these before building a core.
    pub fn new(id: usize, peers: usize, config: CoreConfig, seed: u64, now: Nanos) -> Self {
        Self::with_hooks(id, peers, config, seed, now, NoBugs)
    }

    /// A follower resuming from what its storage recovered: `hard_state`, the `snapshot` if there
    /// is one, and the log `entries` after it (from index 1 without a snapshot), all of it
    /// durable. Its commit index and last applied index start at the snapshot's index (0 without
    /// one): it hands the snapshot to the service first ([`Core::snapshot_to_apply`]), learns
    /// the commit index from the leader, and applies the log from there.
    ///
    /// # Panics
    ///
    /// As [`Core::new`]; and if the recovered state cannot be one a core wrote: a vote for a
    /// node outside the cluster, terms decreasing along the log, or an entry of a term above
    /// `hard_state.term`. The public API checks these before building a core.
    pub fn restore(
        id: usize,
        peers: usize,
        config: CoreConfig,
        seed: u64,
        now: Nanos,
        state: Recovered,
    ) -> Self {
        Self::restore_with_hooks(id, peers, config, seed, now, state, NoBugs)
    }
}

impl<H: Hooks> Core<H> {
    /// As [`Core::new`], following `hooks` (see [`Hooks`]).
    ///
    /// # Panics
    ///
    /// As [`Core::new`].
    pub fn with_hooks(
        id: usize,
        peers: usize,
        config: CoreConfig,
        seed: u64,
        now: Nanos,
        hooks: H,
    ) -> Self {
        assert!(
            peers > 0 && peers <= MAX_PEERS,
            "a cluster has 1 to {MAX_PEERS} nodes, not {peers}"
        );
        assert!(id < peers, "node {id} is not in a cluster of {peers}");
        assert!(
            config.election_timeout_min < config.election_timeout_max,
            "empty election timeout range"
        );
        let mut core = Self {
            id,
            peers,
            rng: fastrand::Rng::with_seed(seed),
            now,
            term: 0,
            voted_for: None,
            role: Role::Follower,
            leader: None,
            log: Log::new(),
            commit_index: 0,
            last_applied: 0,
            election_deadline: now,
            heartbeat_deadline: now,
            commit_notify_deadline: None,
            quorum: Membership::initial(peers).quorum(),
            membership: Membership::initial(peers),
            membership_index: 0,
            initial_membership: Membership::initial(peers),
            leave_joint_automatically: true,
            votes: VoteTally::default(),
            pre_voting: false,
            leader_contact: now,
            recent_active: NodeSet::EMPTY,
            quorum_deadline: now,
            round: 0,
            lease_round: None,
            lease_until: 0,
            lease_forfeited: false,
            pending_reads: VecDeque::new(),
            read_outcomes: Vec::new(),
            transfer: None,
            progress: (0..peers)
                .map(|_| Progress::new(1, config.max_inflight))
                .collect(),
            outbox: Vec::new(),
            held: VecDeque::new(),
            hard_state_dirty: false,
            log_dirty_from: u64::MAX,
            stored_last: 0,
            taken_gen: 0,
            durable_gen: 0,
            writing: VecDeque::new(),
            durable_index: 0,
            snapshot: None,
            snapshot_dirty: false,
            snapshot_to_apply: false,
            incoming: None,
            spare_buffers: Vec::new(),
            stats: CoreStats::default(),
            config,
            hooks,
        };
        core.reset_election_timer();
        core.debug_check_invariants();
        core
    }

    /// As [`Core::restore`], following `hooks` (see [`Hooks`]).
    ///
    /// # Panics
    ///
    /// As [`Core::restore`].
    pub fn restore_with_hooks(
        id: usize,
        peers: usize,
        config: CoreConfig,
        seed: u64,
        now: Nanos,
        state: Recovered,
        hooks: H,
    ) -> Self {
        if let Err(problem) = check_recovered_state(peers, &state) {
            panic!("node {id}: cannot resume: {problem}");
        }
        let mut core = Self::with_hooks(id, peers, config, seed, now, hooks);
        core.term = state.hard_state.term;
        core.voted_for = state.hard_state.voted_for;
        let (offset, offset_term) = state
            .snapshot
            .as_ref()
            .map_or((0, 0), |s| (s.index, s.term));
        core.log = Log::from_entries(offset, offset_term, state.entries);
        core.commit_index = offset;
        core.last_applied = offset;
        core.snapshot_to_apply = state.snapshot.is_some();
        core.snapshot = state.snapshot;
        core.refresh_membership();
        core.stored_last = core.log.last_index();
        core.durable_index = core.log.last_index();
        core.debug_check_invariants();
        core
    }

    // ---- state read by the driver ---------------------------------------------------------------

    /// This node's id.
    pub fn id(&self) -> usize {
        self.id
    }
    /// Number of nodes in the cluster.
    pub fn peers(&self) -> usize {
        self.peers
    }
    /// Current term.
    pub fn term(&self) -> u64 {
        self.term
    }
    /// Current role.
    pub fn role(&self) -> Role {
        self.role
    }
    /// The leader of the current term, if known (this node, when it leads).
    pub fn leader(&self) -> Option<usize> {
        self.leader
    }
    /// Whether this node is a pre-candidate: a follower asking for pre-votes for `term + 1`
    /// (see [`CoreConfig::pre_vote`]). Its role stays [`Role::Follower`] meanwhile.
    pub fn is_pre_candidate(&self) -> bool {
        self.pre_voting
    }
    /// Whom this node voted for in the current term.
    pub fn voted_for(&self) -> Option<usize> {
        self.voted_for
    }
    /// Highest index known to be committed.
    pub fn commit_index(&self) -> u64 {
        self.commit_index
    }
    /// Highest index handed to the state machine.
    pub fn last_applied(&self) -> u64 {
        self.last_applied
    }
    /// The log.
    pub fn log(&self) -> &Log {
        &self.log
    }
    /// Event counters.
    pub fn stats(&self) -> CoreStats {
        self.stats
    }
    /// The settings this core runs with.
    pub fn config(&self) -> &CoreConfig {
        &self.config
    }
    /// The leader's record of follower `peer`, if this node leads and `peer` is another member
    /// of the configuration in force.
    pub fn progress(&self, peer: usize) -> Option<&Progress> {
        (self.role == Role::Leader && peer != self.id && self.membership.contains(peer))
            .then(|| self.progress.get(peer))
            .flatten()
    }

    /// The next time [`Core::tick`] has something to do.
    pub fn next_deadline(&self) -> Nanos {
        match self.role {
            Role::Leader => {
                let next = self
                    .commit_notify_deadline
                    .map_or(self.heartbeat_deadline, |at| {
                        at.min(self.heartbeat_deadline)
                    });
                let next = self.transfer.map_or(next, |t| next.min(t.deadline));
                if self.config.check_quorum {
                    next.min(self.quorum_deadline)
                } else {
                    next
                }
            }
            Role::Follower | Role::Candidate => self.election_deadline,
        }
    }

    /// The committed entries not yet applied, as an inclusive index range, if any.
    pub fn apply_range(&self) -> Option<(u64, u64)> {
        (self.last_applied < self.commit_index && !self.snapshot_to_apply)
            .then_some((self.last_applied + 1, self.commit_index))
    }

    /// Records that entries up to `index` were handed to the state machine.
    ///
    /// # Panics
    ///
    /// If `index` is beyond the commit index or before the last applied index.
    pub fn advance_applied(&mut self, index: u64) {
        assert!(
            index >= self.last_applied && index <= self.commit_index,
            "node {} term {}: applying up to {} with last_applied {} and commit_index {}",
            self.id,
            self.term,
            index,
            self.last_applied,
            self.commit_index
        );
        self.last_applied = index;
        self.debug_check_invariants();
    }

    // ---- inputs ---------------------------------------------------------------------------------

    /// Advances time: starts an election (or, with [`CoreConfig::pre_vote`], a pre-vote round)
    /// if the election timeout passed; if this node leads, steps down if CheckQuorum finds it
    /// heard from no majority, sends heartbeats when the heartbeat interval passed, and the
    /// commit index to followers that lack it when the commit notification delay passed.
    pub fn tick(&mut self, now: Nanos) {
        self.now = self.now.max(now);
        match self.role {
            Role::Leader => self.tick_leader(),
            Role::Follower | Role::Candidate => {
                if self.now >= self.election_deadline {
                    if !self.may_campaign() {
                        // A learner, or a node removed by a committed configuration.
                        self.reset_election_timer();
                    } else if self.config.pre_vote {
                        self.pre_campaign();
                    } else {
                        self.campaign(false);
                    }
                }
            }
        }
        self.debug_check_invariants();
    }

    /// A leader's timers: CheckQuorum, the end of a leadership transfer, heartbeats and commit
    /// notices.
    fn tick_leader(&mut self) {
        if self.config.check_quorum && self.now >= self.quorum_deadline && self.maybe_step_down() {
            return;
        }
        if self.transfer.is_some_and(|t| self.now >= t.deadline) {
            self.abandon_transfer();
        }
        if self.now >= self.heartbeat_deadline {
            self.broadcast_heartbeat();
        } else if self.commit_notify_deadline.is_some_and(|at| self.now >= at) {
            self.broadcast_commit();
        }
    }

    /// Handles one message from node `from`.
    pub fn step(&mut self, now: Nanos, from: usize, msg: Message) {
        self.now = self.now.max(now);
        if self.accepts(from, &msg) {
            // Rules for all servers: a higher term makes this node a follower of that term. If
            // `from` leads it, handle_append_entries records that. Pre-votes move no term.
            if msg.carries_sender_term() && msg.term() > self.term {
                self.adopt_term(msg.term());
            }
            if self.role == Role::Leader && msg.term() >= self.term {
                self.recent_active.insert(from);
            }
            let msg = self.stale_reply_as_current(msg);
            match self.role {
                Role::Leader => self.step_leader(from, msg),
                Role::Candidate => self.step_candidate(from, msg),
                Role::Follower => self.step_follower(from, msg),
            }
        }
        self.debug_check_invariants();
    }

    /// Whether to handle `msg` from `from` at all: not from an unknown sender or this node, nor,
    /// with CheckQuorum, a RequestVote while this node's leader is alive (stickiness).
    fn accepts(&self, from: usize, msg: &Message) -> bool {
        if from >= self.peers || from == self.id {
            tracing::debug!(
                node = self.id,
                from,
                "ignoring a message from an unknown sender"
            );
            return false;
        }
        !self.ignores_request_vote(from, msg)
    }

    /// A leader takes replies to its AppendEntries and snapshot chunks, and answers requests:
    /// of its own term only a (pre-)candidate's, which it refuses, and any of an earlier term
    /// (one of a later term has made it a follower already). Vote replies come after it won;
    /// TimeoutNow is for a follower.
    fn step_leader(&mut self, from: usize, msg: Message) {
        let reply = matches!(
            msg,
            Message::AppendEntriesReply(_) | Message::InstallSnapshotReply(_)
        );
        if reply && !self.membership.contains(from) {
            // From a node removed since: nothing it says moves the leader any more.
            return;
        }
        match msg {
            Message::AppendEntriesReply(m) => self.handle_append_reply(from, m),
            Message::InstallSnapshotReply(m) => self.handle_snapshot_reply(from, m),
            Message::RequestVote(m) => self.handle_request_vote(from, m),
            Message::PreVote(m) => self.handle_pre_vote(from, m),
            Message::AppendEntries(m) => self.handle_append_entries(from, m),
            Message::InstallSnapshot(m) => self.handle_install_snapshot(from, m),
            Message::RequestVoteReply(_) | Message::PreVoteReply(_) | Message::TimeoutNow(_) => {}
        }
    }

    /// A candidate counts votes, answers other candidates, and follows a leader of its term.
    /// Replies to a leader's messages are of an earlier term, when it led; pre-vote replies
    /// answer a pre-vote round it left; TimeoutNow is for a follower.
    fn step_candidate(&mut self, from: usize, msg: Message) {
        match msg {
            Message::RequestVoteReply(m) => self.handle_vote_reply(from, m),
            Message::RequestVote(m) => self.handle_request_vote(from, m),
            Message::PreVote(m) => self.handle_pre_vote(from, m),
            Message::AppendEntries(m) => self.handle_append_entries(from, m),
            Message::InstallSnapshot(m) => self.handle_install_snapshot(from, m),
            Message::AppendEntriesReply(_)
            | Message::InstallSnapshotReply(_)
            | Message::PreVoteReply(_)
            | Message::TimeoutNow(_) => {}
        }
    }

    /// A follower takes the leader's AppendEntries, snapshot chunks and TimeoutNow, answers
    /// (pre-)candidates, and, as a pre-candidate, counts pre-votes. Vote replies and replies to
    /// a leader's messages are of an earlier term, when it campaigned or led.
    fn step_follower(&mut self, from: usize, msg: Message) {
        match msg {
            Message::AppendEntries(m) => self.handle_append_entries(from, m),
            Message::InstallSnapshot(m) => self.handle_install_snapshot(from, m),
            Message::TimeoutNow(m) => self.handle_timeout_now(from, m),
            Message::RequestVote(m) => self.handle_request_vote(from, m),
            Message::PreVote(m) => self.handle_pre_vote(from, m),
            Message::PreVoteReply(m) => self.handle_pre_vote_reply(from, m),
            Message::RequestVoteReply(_)
            | Message::AppendEntriesReply(_)
            | Message::InstallSnapshotReply(_) => {}
        }
    }

    /// Every member of the configuration in force but this one: the nodes a leader sends to.
    /// Borrows nothing, so loops over it may change `self`.
    pub(super) fn others(&self) -> impl Iterator<Item = usize> + use<H> {
        let mut members = self.membership.members();
        members.remove(self.id);
        members.iter()
    }

    /// Every voter of the configuration in force but this one: the nodes a pre-candidate asks.
    pub(super) fn other_voters(&self) -> impl Iterator<Item = usize> + use<H> {
        let mut voters = self.membership.voter_set();
        voters.remove(self.id);
        voters.iter()
    }

    /// Every member of the configuration in force but this one, learners included: the nodes a
    /// candidate asks. A learner's answer counts for nothing, but the request carries the new
    /// term to it: a learner of this node's configuration may be a voter of a later one it
    /// holds, and one that never heard of the term would campaign in it, against a vote this
    /// node already cast for itself, every time.
    pub(super) fn other_members(&self) -> impl Iterator<Item = usize> + use<H> {
        let mut members = self.membership.members();
        members.remove(self.id);
        members.iter()
    }
}

impl<H: Hooks> std::fmt::Debug for Core<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("id", &self.id)
            .field("term", &self.term)
            .field("role", &self.role)
            .field("leader", &self.leader)
            .field("last_index", &self.log.last_index())
            .field("commit_index", &self.commit_index)
            .field("last_applied", &self.last_applied)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
