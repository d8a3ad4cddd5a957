//! The sans-IO Raft state machine: leader election and log replication as in Figure 2 of the
//! extended Raft paper, with batching, pipelining and fast backtracking.
//!
//! The core owns no thread, clock, channel or global RNG. Time (`now`, in nanoseconds from any
//! fixed origin), messages, proposals and a seed go in; messages to send ([`Core::take_messages`]),
//! newly committed entries ([`Core::apply_range`]) and state (term, role, leader, progress) come
//! out. The outbox is a buffer the core reuses, so steady-state steps do not allocate for it. The
//! same inputs give the same outputs, which is what the deterministic simulator relies on.
//!
//! # Entry buffers
//!
//! An AppendEntries owns its entries (`Vec<Entry>`): a follower moves them into its log without
//! touching their payloads' reference counts. The vectors themselves are recycled instead of
//! allocated per message: a follower keeps the emptied vector of every AppendEntries it handled
//! ([`Core::take_entry_buffer`] hands them out), and a leader fills the buffers it is given
//! ([`Core::give_entry_buffer`]) before it allocates a new one. The driver moves buffers from
//! the cores that collect them to the cores that spend them; what a buffer holds never depends
//! on where it came from, so recycling changes no output of the core.
//!
//! # Persist before you speak
//!
//! A node's term, vote and log must be on stable storage before it tells anyone about them: a
//! vote granted and then forgotten in a crash lets the node vote twice in one term; an entry
//! acknowledged and then lost can make a committed entry disappear. So the core keeps what it
//! changed (hard state, appended and truncated entries) as pending work that the driver takes
//! with [`Core::take_persist`], writes, and reports with [`Core::persisted`]. Every message that
//! reports this node's state (votes, AppendEntries replies, RequestVotes, which carry a term and
//! vote the node must not forget) is held back until the state it was produced in is durable;
//! [`Core::take_messages`] hands out only what may go now. A leader's AppendEntries go at once,
//! without waiting for its own write of the entries they carry (Raft thesis §10.2.1): the leader
//! counts itself toward a majority only for entries its storage has made durable
//! ([`Core::durable_index`]).
//!
//! Writes are numbered (generations) and must be reported durable in the order they were taken,
//! but the driver may take the next before the previous one is durable (a pipelined writer).
//! The deterministic simulator does; the node thread writes each one before stepping again.
//!
//! # Snapshots
//!
//! The service compacts the log with [`Core::compact`]: a snapshot of its state machine up to an
//! applied index replaces the log's entries up to there. A leader that no longer holds the
//! entries a follower needs sends it the snapshot instead ([`Message::InstallSnapshot`]), in
//! chunks of [`CoreConfig::max_snapshot_chunk`] bytes, one at a time. A follower installs a
//! snapshot newer than its commit index: it keeps the entries after the snapshot if its log holds
//! the snapshot's last entry, and drops its log otherwise; either way the snapshot is written
//! before the follower says it installed it, and handed to the service
//! ([`Core::snapshot_to_apply`]) before any later entry is applied, so applied indices never go
//! back.
//!
//! # PreVote and CheckQuorum
//!
//! Both are off by default ([`CoreConfig::pre_vote`], [`CoreConfig::check_quorum`]) and on in
//! [`CoreConfig::production`].
//!
//! With PreVote (Raft thesis §9.6) a node whose election timeout fires becomes a pre-candidate:
//! still a follower of its term, it sends [`Message::PreVote`] with `term + 1` and its last log
//! index and term. A receiver grants it as it would grant a RequestVote of that term (log at
//! least as up to date; a higher term, or this term with no vote for another node) unless it
//! leads or heard from its leader within `election_timeout_min`; it changes neither its term
//! nor its vote nor its election timer. Only with a majority of grants does the pre-candidate
//! increment its term and start a real election. Pre-vote messages never make anyone adopt a
//! term, except a refusal, which carries the refuser's real term: a pre-candidate behind
//! learns the cluster's term from it. So a node cut off from the others keeps its term while
//! isolated, and when it comes back its pre-votes are refused by nodes that hear from their
//! leader: it follows the leader without disturbing it.
//!
//! With CheckQuorum a leader checks once per `election_timeout_min` that it heard (any message
//! not of an earlier term) from a majority, itself included, since the last check, and steps
//! down to follower in the same term if not. A leader cut off from the majority so stops
//! within two minimum election timeouts. CheckQuorum also turns on leader stickiness: a leader,
//! or a follower that heard from its leader within `election_timeout_min`, ignores RequestVote
//! whatever its term: no vote, no new term, no reply. Stickiness comes with CheckQuorum, not
//! with PreVote, because it is safe for liveness only when leaders that lost the majority step
//! down: otherwise a leader that can still send to some followers but hear from none would
//! keep them sticky, and the rest of the cluster might never gather a majority of votes.
//! PreVote alone already keeps a node whose log is behind or which is cut off from starting
//! elections; stickiness covers the remaining case of a real candidate (one that won its
//! pre-votes) reaching nodes that still hear from their leader.
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
//! # Invariants asserted here
//!
//! - `commit_index` never decreases, and never passes the last log index.
//! - A committed entry is never truncated.
//! - Entries are applied in order, each once: `last_applied <= commit_index`.
//! - A leader never truncates or overwrites its own log.
//!
//! A broken invariant panics with the node id, term and index involved.

#[cfg(feature = "bug-injection")]
mod bugs;
mod log;
mod message;
mod progress;

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

#[cfg(feature = "bug-injection")]
pub use bugs::Bug;
pub use log::{Entry, Log};
pub use message::{
    AppendEntries, AppendEntriesReply, InstallSnapshot, InstallSnapshotReply, Message, RequestVote,
    RequestVoteReply, TimeoutNow,
};
pub use progress::{Inflights, Progress, ProgressState, SnapshotTransfer};
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
    /// the 6.824 tester's RPC counts were written for plain Raft. See the module docs.
    pub pre_vote: bool,
    /// CheckQuorum: a leader that heard from no majority of the cluster (itself included)
    /// within an `election_timeout_min` steps down, so that a leader cut off from the majority
    /// stops accepting commands within two minimum election timeouts. With it, a node that
    /// heard from its leader within an `election_timeout_min` (or leads) also ignores
    /// RequestVote (leader stickiness). Off by default. See the module docs.
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

/// How far a leader steps `next_index` back when a follower rejects an AppendEntries because
/// its entry at `prev_log_index` has another term (the conflicting term). Both ways skip a whole
/// term per round trip and both are correct: they differ in what the next AppendEntries
/// re-sends.
///
/// Example: the follower holds terms `[1 1 2 2 2 2]` and the leader `[1 1 2 2 3 3]`. A probe at
/// prev 6 is rejected with conflicting term 2, whose first entry on the follower is at 3.
/// [`Backtrack::LeaderTerm`] probes next at prev 4, the leader's last entry of term 2;
/// [`Backtrack::FollowerTerm`] at prev 2, and re-sends entries 3 and 4, which the follower holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Backtrack {
    /// Just past the leader's last entry of the conflicting term if the leader holds that term,
    /// else the follower's first entry of it: nothing the follower holds is re-sent.
    #[default]
    LeaderTerm,
    /// The follower's first entry of the conflicting term, as §5.3 of the extended Raft paper
    /// describes it. Re-sends that term's entries the follower already holds. It exists so that
    /// followers can be checked against another correct leader than this one, as in a cluster
    /// running two versions of an engine: the deterministic simulator runs some seeds with it.
    FollowerTerm,
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
struct Transfer {
    target: usize,
    /// The leader's last index when the transfer began: the target campaigns once it holds it.
    index: u64,
    /// When the leader gives up and resumes leading.
    deadline: Nanos,
    /// Whether TimeoutNow went out.
    sent: bool,
}

/// A read waiting for its heartbeat round.
#[derive(Clone, Copy, Debug)]
struct PendingRead {
    id: u64,
    /// The commit index when the read was registered; 0 until the leader has committed an
    /// entry of its own term (before that, its commit index may lag what earlier leaders
    /// committed).
    index: u64,
    /// The round a majority must answer: one started after the read was registered.
    round: u64,
}

/// A write the driver must make durable: what changed in the core since the previous one.
/// See [`Core::take_persist`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Persist {
    /// Numbers the writes of one core, from 1; report it to [`Core::persisted`].
    pub generation: u64,
    /// The new term and vote, if they changed.
    pub hard_state: Option<HardState>,
    /// Whether the core's snapshot ([`Core::snapshot`]) is new and to be stored.
    pub snapshot: bool,
    /// Stored entries from this index on are to be dropped, if the log was truncated.
    pub truncate_from: Option<u64>,
    /// The log's entries `first_index..=last_index` are to be stored (none if `first_index >
    /// last_index`).
    pub first_index: u64,
    /// See `first_index`. Also the log's last index when the write was taken.
    pub last_index: u64,
}

/// One Raft node's state machine.
pub struct Core {
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
    /// Candidate: bit `i` set if node `i` granted its vote in `term`. Pre-candidate: bit `i` set
    /// if node `i` granted its pre-vote for `term + 1`.
    votes: u64,
    /// Whether this follower runs a pre-vote round for `term + 1` (a pre-candidate).
    /// Invariant: only set on a follower, with `leader` unknown.
    pre_voting: bool,
    /// When this node last heard from `leader` (an AppendEntries or InstallSnapshot of `term`);
    /// until it has, when the core was created or restored. Never decreases. With CheckQuorum
    /// the node ignores RequestVote until `election_timeout_min` after it (`sticky`):
    /// the start counts because the node may have answered a leader's heartbeat just before it
    /// restarted, and that leader's lease counts on it.
    leader_contact: Nanos,
    /// Leader with CheckQuorum: bit `i` set if node `i` was heard from since the last quorum
    /// check; this node's own bit is always set.
    recent_active: u64,
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
    /// Empty vectors for the entries of the next AppendEntries (see the module docs).
    /// Invariant: each is empty, with a capacity in `1..=MAX_BUFFER_CAPACITY`; at most
    /// `MAX_SPARE_BUFFERS` of them.
    spare_buffers: Vec<Vec<Entry>>,
    stats: CoreStats,
    /// A deliberately broken rule to follow, for testing the simulator's checker.
    #[cfg(feature = "bug-injection")]
    bug: Option<Bug>,
}

/// Largest cluster a core supports (votes are a bit set in a `u64`).
pub const MAX_PEERS: usize = 64;

/// Why a recovered state cannot be one a core of a `peers`-node cluster wrote, if it cannot.
pub fn recovered_state_problem(peers: usize, state: &Recovered) -> Option<String> {
    let (hard_state, entries) = (&state.hard_state, &state.entries);
    if let Some(snapshot) = &state.snapshot {
        if snapshot.term > hard_state.term {
            return Some(format!(
                "its snapshot is of term {} above its current term {}",
                snapshot.term, hard_state.term
            ));
        }
        if let Some(first) = entries.first()
            && first.term < snapshot.term
        {
            return Some(format!(
                "the term of its log goes down after its snapshot ({} after {})",
                first.term, snapshot.term
            ));
        }
    }
    if let Some(v) = hard_state.voted_for
        && v >= peers
    {
        return Some(format!(
            "it voted for node {v}, which is not in a cluster of {peers}"
        ));
    }
    if let Some(i) = entries.windows(2).position(|w| w[1].term < w[0].term) {
        return Some(format!(
            "the term of its log goes down at index {} ({} after {})",
            state.first_index() + i as u64 + 1,
            entries[i + 1].term,
            entries[i].term
        ));
    }
    if let Some(last) = entries.last()
        && last.term > hard_state.term
    {
        return Some(format!(
            "its log holds an entry of term {} above its current term {}",
            last.term, hard_state.term
        ));
    }
    None
}

/// Most entry buffers a core keeps for reuse; more are dropped.
const MAX_SPARE_BUFFERS: usize = 64;
/// Largest buffer, in entries, a core keeps for reuse. Larger ones carried a big batch, which
/// allocating for costs little per entry, and would hold memory long after it.
pub const MAX_BUFFER_CAPACITY: usize = 1024;

impl Core {
    /// A follower in term 0 with an empty log, node `id` of `peers`, whose random choices derive
    /// from `seed`.
    ///
    /// # Panics
    ///
    /// If `id >= peers`, `peers` is 0 or above [`MAX_PEERS`], or the election timeout range is
    /// empty. The public API validates these before building a core.
    pub fn new(id: usize, peers: usize, config: CoreConfig, seed: u64, now: Nanos) -> Self {
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
            votes: 0,
            pre_voting: false,
            leader_contact: now,
            recent_active: 0,
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
            #[cfg(feature = "bug-injection")]
            bug: None,
        };
        core.reset_election_timer();
        core
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
        if let Some(problem) = recovered_state_problem(peers, &state) {
            panic!("node {id}: cannot resume: {problem}");
        }
        let mut core = Self::new(id, peers, config, seed, now);
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
        core.stored_last = core.log.last_index();
        core.durable_index = core.log.last_index();
        core
    }

    // ---- state read by the driver -------------------------------------------------------------

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
    /// The leader's record of follower `peer`, if this node leads and `peer` is another node.
    pub fn progress(&self, peer: usize) -> Option<&Progress> {
        (self.role == Role::Leader && peer != self.id)
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

    /// Messages produced since the last call, as `(to, message)`. The buffer is reused: drain it.
    pub fn take_messages(&mut self) -> std::vec::Drain<'_, (usize, Message)> {
        self.outbox.drain(..)
    }

    /// Whether there are messages to send.
    pub fn has_messages(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// The highest index whose entry is on stable storage (as [`Core::persisted`] reported).
    pub fn durable_index(&self) -> u64 {
        self.durable_index
    }

    /// The term and vote to keep on stable storage.
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            voted_for: self.voted_for,
        }
    }

    /// The latest snapshot (taken, installed or recovered), if any.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    /// The snapshot the service must be given before any further entry is applied (one a leader
    /// installed here, or the one this node restarted from), if there is one. Report it with
    /// [`Core::snapshot_applied`].
    pub fn snapshot_to_apply(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref().filter(|_| self.snapshot_to_apply)
    }

    /// Records that the service was given [`Core::snapshot_to_apply`]: entries after it are
    /// applied next.
    pub fn snapshot_applied(&mut self) {
        if let Some(snapshot) = self.snapshot.as_ref().filter(|_| self.snapshot_to_apply) {
            self.last_applied = self.last_applied.max(snapshot.index);
            self.snapshot_to_apply = false;
        }
    }

    /// Compacts the log: the service's snapshot `data` of its state machine up to `index`
    /// replaces the log's entries up to there, and is stored with the next write. Returns
    /// whether it did; it does nothing for an index not above the current snapshot's or beyond
    /// what was applied.
    pub fn compact(&mut self, index: u64, data: Bytes) -> bool {
        if index <= self.log.offset() || index > self.last_applied || self.snapshot_to_apply {
            return false;
        }
        let term = self
            .log
            .term(index)
            .expect("an applied index after the offset is in the log");
        self.log.compact_to(index);
        self.snapshot = Some(Snapshot { index, term, data });
        self.snapshot_dirty = true;
        true
    }

    /// The write `persist` describes, as a storage takes it: entries read from the log, the
    /// snapshot from [`Core::snapshot`]. Call it before stepping the core again.
    pub fn update(&self, persist: &Persist) -> Update<'_> {
        Update {
            hard_state: persist.hard_state,
            snapshot: self.snapshot.as_ref().filter(|_| persist.snapshot),
            truncate_from: persist.truncate_from,
            first_index: persist.first_index,
            entries: self.log.slice(persist.first_index, persist.last_index),
        }
    }

    /// Whether messages are waiting for a write to become durable.
    pub fn has_held_messages(&self) -> bool {
        !self.held.is_empty()
    }

    /// Takes what changed since the last call and must now be made durable, if anything did.
    /// The driver writes [`Core::update`] of it (before stepping the core again: the entries it
    /// names are the log's as they are now) and reports it with [`Core::persisted`].
    pub fn take_persist(&mut self) -> Option<Persist> {
        if !self.is_dirty() {
            return None;
        }
        self.taken_gen += 1;
        let last = self.log.last_index();
        let first = self
            .log_dirty_from
            .max(self.log.first_index())
            .min(last + 1);
        let persist = Persist {
            generation: self.taken_gen,
            hard_state: self.hard_state_dirty.then(|| self.hard_state()),
            snapshot: self.snapshot_dirty,
            truncate_from: (self.log_dirty_from <= self.stored_last).then_some(self.log_dirty_from),
            first_index: first,
            last_index: last,
        };
        self.hard_state_dirty = false;
        self.snapshot_dirty = false;
        self.log_dirty_from = u64::MAX;
        self.stored_last = last;
        self.writing.push_back((self.taken_gen, last));
        Some(persist)
    }

    /// Records that the write of `generation` (and every earlier one) is durable: releases the
    /// messages that waited for it and, on a leader, counts the entries toward commitment.
    ///
    /// # Panics
    ///
    /// If `generation` was not taken, or an earlier write is still outstanding.
    pub fn persisted(&mut self, generation: u64) {
        let Some(&(next, last)) = self.writing.front() else {
            panic!(
                "node {}: write {generation} reported durable, none outstanding",
                self.id
            );
        };
        assert_eq!(
            next, generation,
            "node {}: writes must become durable in order",
            self.id
        );
        self.writing.pop_front();
        self.durable_gen = generation;
        self.durable_index = last;
        while self.held.front().is_some_and(|&(g, ..)| g <= generation) {
            let (_, to, msg) = self.held.pop_front().expect("checked");
            self.outbox.push((to, msg));
        }
        if self.role == Role::Leader {
            self.maybe_commit();
        }
    }

    /// How many entry buffers this core holds for reuse (see the module docs).
    pub fn entry_buffers(&self) -> usize {
        self.spare_buffers.len()
    }

    /// Takes one of the empty entry buffers this core holds, to hand to a core that sends entries.
    pub fn take_entry_buffer(&mut self) -> Option<Vec<Entry>> {
        self.spare_buffers.pop()
    }

    /// Gives this core a buffer for the entries of a future AppendEntries. Its contents are
    /// dropped; a buffer without capacity, larger than [`MAX_BUFFER_CAPACITY`] or beyond the
    /// number of buffers a core keeps is dropped whole.
    pub fn give_entry_buffer(&mut self, mut buffer: Vec<Entry>) {
        if (1..=MAX_BUFFER_CAPACITY).contains(&buffer.capacity())
            && self.spare_buffers.len() < MAX_SPARE_BUFFERS
        {
            buffer.clear();
            self.spare_buffers.push(buffer);
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
    }

    // ---- inputs ----------------------------------------------------------------------------------

    /// Advances time: starts an election (or, with [`CoreConfig::pre_vote`], a pre-vote round)
    /// if the election timeout passed; if this node leads, steps down if CheckQuorum finds it
    /// heard from no majority, sends heartbeats when the heartbeat interval passed, and the
    /// commit index to followers that lack it when the commit notification delay passed.
    pub fn tick(&mut self, now: Nanos) {
        self.now = self.now.max(now);
        match self.role {
            Role::Leader => {
                if self.config.check_quorum
                    && self.now >= self.quorum_deadline
                    && self.maybe_step_down()
                {
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
            Role::Follower | Role::Candidate => {
                if self.now >= self.election_deadline {
                    if self.config.pre_vote {
                        self.pre_campaign();
                    } else {
                        self.campaign(false);
                    }
                }
            }
        }
    }

    /// Appends commands to the log as one batch and sends them to the followers that can take
    /// them now. Returns the inclusive index range they occupy, or `None` (appending nothing) if
    /// this node is not leader.
    pub fn propose<I>(&mut self, now: Nanos, commands: I) -> Option<(u64, u64)>
    where
        I: IntoIterator<Item = Bytes>,
    {
        self.now = self.now.max(now);
        if self.role != Role::Leader || self.transfer.is_some() {
            return None;
        }
        let first = self.log.last_index() + 1;
        for command in commands {
            self.log.push(Entry {
                term: self.term,
                command,
            });
        }
        let last = self.log.last_index();
        if last < first {
            return Some((first, last));
        }
        self.log_dirty_from = self.log_dirty_from.min(first);
        // A single node commits once its own write is durable (`persisted`).
        self.broadcast_append();
        Some((first, last))
    }

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
        if self.role != Role::Leader {
            self.refuse_reads(ids);
            return;
        }
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
        #[cfg(feature = "bug-injection")]
        if self.has_bug(Bug::ReadWithoutRound) {
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
    }

    /// Whether this node leads under a lease it may serve reads with now (see
    /// [`Core::read_lease`]).
    pub fn has_lease(&self) -> bool {
        let valid = self.now < self.lease_until;
        #[cfg(feature = "bug-injection")]
        let valid = valid || (self.has_bug(Bug::LeaseAfterExpiry) && self.lease_until > 0);
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
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader);
        }
        if target >= self.peers || target == self.id {
            return Err(TransferError::BadTarget);
        }
        if let Some(t) = self.transfer {
            return Err(TransferError::InProgress(t.target));
        }
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

    /// Handles one message from node `from`.
    pub fn step(&mut self, now: Nanos, from: usize, msg: Message) {
        self.now = self.now.max(now);
        if from >= self.peers || from == self.id {
            tracing::debug!(
                node = self.id,
                from,
                "ignoring a message from an unknown sender"
            );
            return;
        }
        if self.config.check_quorum
            && matches!(&msg, Message::RequestVote(m) if !m.transfer)
            && self.sticky()
        {
            // Leader stickiness: this node's leader is alive, so a candidate is either cut off
            // from it or impatient. Neither grant nor adopt its term (see the module docs).
            // Likewise just after a restart: the leader may still count on this node's last
            // answer for its lease.
            tracing::trace!(
                node = self.id,
                term = self.term,
                from,
                "ignoring a RequestVote: the leader is alive"
            );
            return;
        }
        // Rules for all servers: a higher term makes this node a follower of that term. If `from`
        // leads it, handle_append_entries records that. Pre-votes move no term.
        if msg.carries_sender_term() && msg.term() > self.term {
            self.become_follower(msg.term(), None);
        }
        if self.role == Role::Leader && msg.term() >= self.term {
            self.recent_active |= 1 << from;
        }
        #[cfg(feature = "bug-injection")]
        let msg = self.stale_reply_as_current(msg);
        match msg {
            Message::RequestVote(m) => self.handle_request_vote(from, m),
            Message::RequestVoteReply(m) => self.handle_vote_reply(from, m),
            Message::PreVote(m) => self.handle_pre_vote(from, m),
            Message::PreVoteReply(m) => self.handle_pre_vote_reply(from, m),
            Message::AppendEntries(m) => self.handle_append_entries(from, m),
            Message::AppendEntriesReply(m) => self.handle_append_reply(from, m),
            Message::InstallSnapshot(m) => self.handle_install_snapshot(from, m),
            Message::InstallSnapshotReply(m) => self.handle_snapshot_reply(from, m),
            Message::TimeoutNow(m) => self.handle_timeout_now(from, m),
        }
    }

    // ---- roles -----------------------------------------------------------------------------------

    fn reset_election_timer(&mut self) {
        let timeout = self
            .rng
            .u64(self.config.election_timeout_min..self.config.election_timeout_max);
        self.election_deadline = self.now + timeout;
    }

    fn become_follower(&mut self, term: u64, leader: Option<usize>) {
        assert!(
            term >= self.term,
            "node {}: term going back from {} to {}",
            self.id,
            self.term,
            term
        );
        if term > self.term {
            self.term = term;
            self.voted_for = None;
            self.hard_state_dirty = true;
        }
        if self.role == Role::Leader {
            self.stats.step_downs += 1;
            self.transfer = None;
            let refused = self.pending_reads.drain(..).map(|read| ReadOutcome {
                id: read.id,
                index: None,
            });
            self.read_outcomes.extend(refused);
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.pre_voting = false;
        self.reset_election_timer();
    }

    /// Starts a pre-vote round (§9.6): asks every other node whether it would vote for this one
    /// in `term + 1`, changing neither term nor vote. A candidate whose election failed runs one
    /// too, as a follower of its term. A majority of grants starts the real election.
    fn pre_campaign(&mut self) {
        self.become_follower(self.term, None);
        self.pre_voting = true;
        self.votes = 1 << self.id;
        tracing::debug!(node = self.id, term = self.term, "starting a pre-vote");
        if self.has_quorum(self.votes) {
            self.campaign(false);
            return;
        }
        let request = RequestVote {
            term: self.term + 1,
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
            transfer: false,
        };
        for peer in self.others() {
            // Promises nothing and reports no state to keep: it need not wait for a write.
            self.outbox.push((peer, Message::PreVote(request.clone())));
        }
    }

    /// Starts an election in the next term. `transfer`: this node's leader handed it
    /// leadership, so voters that still hear from that leader vote anyway.
    fn campaign(&mut self, transfer: bool) {
        self.pre_voting = false;
        self.term += 1;
        self.role = Role::Candidate;
        self.leader = None;
        self.voted_for = Some(self.id);
        self.hard_state_dirty = true;
        self.votes = 1 << self.id;
        self.stats.elections_started += 1;
        self.reset_election_timer();
        tracing::debug!(node = self.id, term = self.term, "starting an election");
        if self.has_quorum(self.votes) {
            self.become_leader();
            return;
        }
        let request = RequestVote {
            term: self.term,
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
            transfer,
        };
        for peer in self.others() {
            self.send(peer, Message::RequestVote(request.clone()));
        }
    }

    /// Every node but this one. Borrows nothing, so loops over it may change `self`.
    fn others(&self) -> impl Iterator<Item = usize> + use<> {
        let me = self.id;
        (0..self.peers).filter(move |&p| p != me)
    }

    fn has_quorum(&self, votes: u64) -> bool {
        votes.count_ones() as usize > self.peers / 2
    }

    fn become_leader(&mut self) {
        tracing::debug!(node = self.id, term = self.term, "became leader");
        self.role = Role::Leader;
        self.leader = Some(self.id);
        self.recent_active = 1 << self.id;
        self.quorum_deadline = self.now + self.config.election_timeout_min;
        self.stats.elections_won += 1;
        self.lease_round = None;
        self.lease_until = 0;
        self.lease_forfeited = false;
        let next = self.log.last_index() + 1;
        let max_inflight = self.config.max_inflight;
        for pr in self.progress.iter_mut() {
            *pr = Progress::new(next, max_inflight);
        }
        if self.config.leader_no_op {
            self.log.push(Entry {
                term: self.term,
                command: Bytes::new(),
            });
            self.log_dirty_from = self.log_dirty_from.min(next);
        }
        self.broadcast_heartbeat();
    }

    /// CheckQuorum: a leader that heard from no majority since the last check (one
    /// `election_timeout_min` ago) steps down, staying in its term; otherwise it starts counting
    /// again. Returns whether it stepped down.
    ///
    /// A leader cut off at time `t` may still count messages that arrived between the last check
    /// and `t`, so it keeps leading past the next check, but not past the one after: it steps
    /// down within two minimum election timeouts of `t`.
    fn maybe_step_down(&mut self) -> bool {
        let quorum = self.has_quorum(self.recent_active | (1 << self.id));
        #[cfg(feature = "bug-injection")]
        let quorum = quorum || self.has_bug(Bug::LeadWithoutQuorum);
        if quorum {
            self.recent_active = 1 << self.id;
            self.quorum_deadline = self.now + self.config.election_timeout_min;
            return false;
        }
        tracing::debug!(
            node = self.id,
            term = self.term,
            "stepping down: no majority heard from within an election timeout"
        );
        self.become_follower(self.term, None);
        true
    }

    /// With CheckQuorum, whether this node ignores RequestVote: it leads, or heard from a
    /// leader (or started, or restarted) within the minimum election timeout. By time alone,
    /// whatever its term, leader or role since: a stale reply of a higher term, say, may have
    /// made it a follower with no known leader, and the leader it answered may still count on
    /// it for its lease.
    fn sticky(&self) -> bool {
        self.role == Role::Leader
            || self.now
                < self
                    .leader_contact
                    .saturating_add(self.config.election_timeout_min)
    }

    /// Whether this node leads, or heard from the leader of its term within the minimum election
    /// timeout: then no election is needed, and it refuses pre-votes (and, with CheckQuorum,
    /// ignores RequestVote).
    fn hears_from_leader(&self) -> bool {
        match self.role {
            Role::Leader => true,
            Role::Candidate => false,
            Role::Follower => {
                self.leader.is_some()
                    && self.now < self.leader_contact + self.config.election_timeout_min
            }
        }
    }

    // ---- elections -------------------------------------------------------------------------------

    fn handle_request_vote(&mut self, from: usize, m: RequestVote) {
        let granted = m.term == self.term
            && self.voted_for.is_none_or(|v| v == from)
            && self.log.is_up_to_date(m.last_log_index, m.last_log_term);
        #[cfg(feature = "bug-injection")]
        let granted = granted
            || (self.has_bug(Bug::DoubleVote)
                && m.term == self.term
                && self.log.is_up_to_date(m.last_log_index, m.last_log_term));
        if granted {
            self.hard_state_dirty |= self.voted_for != Some(from);
            self.voted_for = Some(from);
            self.reset_election_timer();
        }
        let reply = RequestVoteReply {
            term: self.term,
            granted,
        };
        #[cfg(feature = "bug-injection")]
        if granted && self.has_bug(Bug::VoteBeforeDurable) {
            self.outbox.push((from, Message::RequestVoteReply(reply)));
            return;
        }
        self.send(from, Message::RequestVoteReply(reply));
    }

    fn handle_vote_reply(&mut self, from: usize, m: RequestVoteReply) {
        if self.role != Role::Candidate || m.term != self.term || !m.granted {
            return;
        }
        self.votes |= 1 << from;
        if self.has_quorum(self.votes) {
            self.become_leader();
        }
    }

    /// Answers a pre-vote (§9.6) as this node would answer a RequestVote of `m.term`, and
    /// refuses it if its leader is alive; changes nothing here, not even the election timer.
    ///
    /// It grants if `m.term` is above its term (it would adopt that term, with no vote yet) or
    /// equal to it with no vote for another node, the candidate's log is at least as up to date
    /// as its own, and it neither leads nor heard from its leader within the minimum election
    /// timeout. A grant carries `m.term` (the candidate matches it against the term it asks
    /// about); a refusal carries this node's term, which a pre-candidate behind adopts.
    fn handle_pre_vote(&mut self, from: usize, m: RequestVote) {
        let granted = (m.term > self.term
            || (m.term == self.term && self.voted_for.is_none_or(|v| v == from)))
            && !self.hears_from_leader()
            && self.log.is_up_to_date(m.last_log_index, m.last_log_term);
        let reply = RequestVoteReply {
            term: if granted { m.term } else { self.term },
            granted,
        };
        // A refusal carries this node's term, which must be durable before it is told.
        self.send(from, Message::PreVoteReply(reply));
    }

    fn handle_pre_vote_reply(&mut self, from: usize, m: RequestVoteReply) {
        if !self.pre_voting || !m.granted || m.term != self.term + 1 {
            return;
        }
        self.votes |= 1 << from;
        if self.has_quorum(self.votes) {
            self.campaign(false);
        }
    }

    // ---- reads and leadership transfer ------------------------------------------------------

    /// Whether the commit index has reached an entry of this node's term.
    fn committed_in_term(&self) -> bool {
        self.log.term(self.commit_index) == Some(self.term)
    }

    fn refuse_reads<I: IntoIterator<Item = u64>>(&mut self, ids: I) {
        self.read_outcomes
            .extend(ids.into_iter().map(|id| ReadOutcome { id, index: None }));
    }

    /// Notes that follower `from` answered round `round` in this term, and confirms what that
    /// lets the leader confirm.
    fn note_round(&mut self, from: usize, round: u64) {
        if round > self.progress[from].acked_round {
            self.progress[from].acked_round = round;
            self.confirm_rounds();
        }
    }

    /// The highest value a majority of nodes has reached: `value(node, its progress)` for each,
    /// sorted, the median from the top.
    fn quorum_value(&self, value: impl Fn(usize, &Progress) -> u64) -> u64 {
        let mut values: SmallVec<[u64; 8]> = self
            .progress
            .iter()
            .enumerate()
            .map(|(i, p)| value(i, p))
            .collect();
        values.sort_unstable_by(|a, b| b.cmp(a));
        values[self.peers / 2]
    }

    /// The latest round a majority (this leader included) has answered.
    fn quorum_round(&self) -> u64 {
        let me = self.id;
        self.quorum_value(|i, p| if i == me { self.round } else { p.acked_round })
    }

    /// Extends the lease and confirms the reads whose round a majority has answered.
    fn confirm_rounds(&mut self) {
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
    fn maybe_send_timeout_now(&mut self, peer: usize) {
        let Some(t) = self.transfer.as_mut() else {
            return;
        };
        if t.target != peer || t.sent || self.progress[peer].match_index < t.index {
            return;
        }
        t.sent = true;
        let msg = TimeoutNow { term: self.term };
        self.outbox.push((peer, Message::TimeoutNow(msg)));
    }

    fn abandon_transfer(&mut self) {
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
    fn handle_timeout_now(&mut self, from: usize, m: TimeoutNow) {
        if m.term != self.term || self.role != Role::Follower || self.leader != Some(from) {
            return;
        }
        tracing::debug!(
            node = self.id,
            term = self.term,
            "leadership handed over: campaigning"
        );
        self.campaign(true);
    }

    // ---- replication: follower side --------------------------------------------------------------

    fn handle_append_entries(&mut self, from: usize, m: AppendEntries) {
        if m.term < self.term {
            // Its round is not one of this term's leader: the rejection carries none.
            let reply = self.rejection(m.prev_log_index);
            self.send(from, Message::AppendEntriesReply(reply));
            self.give_entry_buffer(m.entries);
            return;
        }
        self.follow_leader(from);
        let round = m.round;
        let mut reply = self.maybe_append(m);
        reply.round = round;
        #[cfg(feature = "bug-injection")]
        if reply.success && self.has_bug(Bug::AckBeforeDurable) {
            self.outbox.push((from, Message::AppendEntriesReply(reply)));
            return;
        }
        self.send(from, Message::AppendEntriesReply(reply));
    }

    /// Follows `from`, which sent a leader's message of this node's term: it leads this term.
    fn follow_leader(&mut self, from: usize) {
        assert!(
            self.role != Role::Leader,
            "node {} term {}: two leaders in one term",
            self.id,
            self.term
        );
        self.become_follower(self.term, Some(from));
        self.leader_contact = self.now;
    }

    /// Receives one chunk of a leader's snapshot (Figure 13), and installs the snapshot when it
    /// is whole.
    fn handle_install_snapshot(&mut self, from: usize, m: InstallSnapshot) {
        let reply = |term, next_offset, installed| {
            Message::InstallSnapshotReply(InstallSnapshotReply {
                term,
                last_included_index: m.last_included_index,
                next_offset,
                installed,
                round: if term == m.term { m.round } else { 0 },
            })
        };
        if m.term < self.term {
            self.send(from, reply(self.term, 0, false));
            return;
        }
        self.follow_leader(from);
        let chunk_end = m.offset + m.data.len() as u64;
        if m.last_included_index <= self.commit_index {
            // Older than what is committed here: this node holds all of it already.
            self.incoming = None;
            self.send(from, reply(self.term, chunk_end, true));
            return;
        }
        let key = (m.term, m.last_included_index, m.last_included_term);
        if self
            .incoming
            .as_ref()
            .is_none_or(|&(term, index, last_term, _)| (term, index, last_term) != key)
        {
            if m.offset != 0 {
                self.send(from, reply(self.term, 0, false)); // start again
                return;
            }
            self.incoming = Some((key.0, key.1, key.2, BytesMut::new()));
        }
        let received = self
            .incoming
            .as_ref()
            .map_or(0, |(.., data)| data.len() as u64);
        if m.offset != received {
            // A chunk out of order (duplicated, or after a lost one): ask for the next one needed.
            self.send(from, reply(self.term, received, false));
            return;
        }
        let (.., mut data) = self.incoming.take().expect("set above");
        if !m.done {
            data.extend_from_slice(&m.data);
            self.incoming = Some((key.0, key.1, key.2, data));
            self.send(from, reply(self.term, chunk_end, false));
            return;
        }
        let data = if data.is_empty() {
            m.data // the whole snapshot in one chunk: no copy
        } else {
            data.extend_from_slice(&m.data);
            data.freeze()
        };
        self.install(m.last_included_index, m.last_included_term, data);
        // Goes out once the snapshot is durable, like an AppendEntries acknowledgement.
        self.send(from, reply(self.term, chunk_end, true));
    }

    /// Installs a snapshot up to `index` (of `term`) newer than the commit index: keeps the log's
    /// entries after it if the log holds its last entry, drops the log otherwise; the service gets
    /// it before any later entry.
    fn install(&mut self, index: u64, term: u64, data: Bytes) {
        let keep_suffix = self.log.term(index) == Some(term);
        #[cfg(feature = "bug-injection")]
        let keep_suffix = keep_suffix && !self.has_bug(Bug::DiscardSuffixOnInstall);
        if keep_suffix {
            self.log.compact_to(index);
        } else {
            self.log.reset(index, term);
            self.log_dirty_from = self.log_dirty_from.min(index + 1);
            self.durable_index = self.durable_index.min(index);
            for (_, last) in &mut self.writing {
                *last = (*last).min(index);
            }
        }
        tracing::debug!(
            node = self.id,
            term = self.term,
            index,
            kept = self.log.len(),
            "installed a snapshot"
        );
        self.snapshot = Some(Snapshot { index, term, data });
        self.snapshot_dirty = true;
        self.snapshot_to_apply = true;
        self.stats.snapshots_installed += 1;
        self.commit_index = self.commit_index.max(index);
    }

    /// The consistency check and append of Figure 2, receiver rules 2 to 5. Keeps the message's
    /// entry buffer for reuse.
    fn maybe_append(&mut self, mut m: AppendEntries) -> AppendEntriesReply {
        let reply = self.check_and_append(&mut m);
        self.give_entry_buffer(m.entries);
        reply
    }

    /// [`Core::maybe_append`], leaving `m.entries` empty if they were appended.
    fn check_and_append(&mut self, m: &mut AppendEntries) -> AppendEntriesReply {
        let mut reply = self.rejection(m.prev_log_index);
        let offset = self.log.offset();
        if m.prev_log_index < offset {
            // The entries up to the snapshot are committed, so they match the leader's: skip them
            // and check from the snapshot's last entry on.
            let covered = (offset - m.prev_log_index) as usize;
            if covered >= m.entries.len() {
                reply.success = true;
                reply.index = m.prev_log_index + m.entries.len() as u64;
                return reply;
            }
            m.entries.drain(..covered);
            m.prev_log_index = offset;
            m.prev_log_term = self.log.term(offset).expect("the snapshot's last term");
        }
        match self.log.term(m.prev_log_index) {
            None => {
                // Our log is too short: the leader should continue from our end.
                reply.conflict_index = self.log.last_index() + 1;
                return reply;
            }
            Some(term) if term != m.prev_log_term => {
                // Hint the whole conflicting term, so the leader skips it in one round trip.
                reply.conflict_term = term;
                reply.conflict_index = self.log.first_index_of_term(term);
                return reply;
            }
            Some(_) => {}
        }
        #[cfg(feature = "bug-injection")]
        if self.has_bug(Bug::TruncateWithoutConflict) {
            self.truncate_log_from(m.prev_log_index + 1);
        }
        // Skip entries we already hold; truncate only at a real conflict (rule 3), then append
        // the rest, moving them out of the message rather than cloning them.
        let mut index = m.prev_log_index;
        let mut held = 0;
        for entry in &m.entries {
            match self.log.term(index + 1) {
                Some(term) if term == entry.term => {
                    index += 1;
                    held += 1;
                }
                Some(_) => {
                    assert!(
                        index + 1 > self.commit_index,
                        "node {} term {}: truncating committed index {} (commit_index {})",
                        self.id,
                        self.term,
                        index + 1,
                        self.commit_index
                    );
                    self.truncate_log_from(index + 1);
                    break;
                }
                None => break,
            }
        }
        let last_new = m.prev_log_index + m.entries.len() as u64;
        if m.entries.len() > held {
            self.log_dirty_from = self.log_dirty_from.min(index + 1);
        }
        self.log.append(&mut m.entries, held);
        #[cfg(feature = "bug-injection")]
        if self.has_bug(Bug::CommitBeyondNewEntries) && m.leader_commit > self.commit_index {
            self.set_commit(m.leader_commit.min(self.log.last_index()));
        }
        if m.leader_commit > self.commit_index {
            self.set_commit(m.leader_commit.min(last_new));
        }
        reply.success = true;
        reply.index = last_new;
        reply
    }

    /// Removes the log's entries from `from` on, noting that storage must drop them too and that
    /// they are no longer durable.
    fn truncate_log_from(&mut self, from: u64) {
        if from > self.log.last_index() {
            return;
        }
        self.log.truncate_from(from);
        self.log_dirty_from = self.log_dirty_from.min(from);
        self.durable_index = self.durable_index.min(from - 1);
        for (_, last) in &mut self.writing {
            *last = (*last).min(from - 1);
        }
    }

    /// Whether anything changed since the last [`Core::take_persist`].
    fn is_dirty(&self) -> bool {
        self.hard_state_dirty || self.snapshot_dirty || self.log_dirty_from != u64::MAX
    }

    /// Queues a message that reports this node's state: it goes out once every change made so
    /// far is durable (see the module docs).
    fn send(&mut self, to: usize, msg: Message) {
        let needed = self.taken_gen + u64::from(self.is_dirty());
        if needed <= self.durable_gen {
            self.outbox.push((to, msg));
        } else {
            self.held.push_back((needed, to, msg));
        }
    }

    /// A rejection of the AppendEntries at `prev_log_index`, with no conflict hint (yet).
    fn rejection(&self, prev_log_index: u64) -> AppendEntriesReply {
        AppendEntriesReply {
            term: self.term,
            success: false,
            index: prev_log_index,
            conflict_term: 0,
            conflict_index: 0,
            round: 0,
        }
    }

    fn set_commit(&mut self, index: u64) {
        if index <= self.commit_index {
            return;
        }
        assert!(
            index <= self.log.last_index(),
            "node {} term {}: committing index {} beyond the last index {}",
            self.id,
            self.term,
            index,
            self.log.last_index()
        );
        self.commit_index = index;
    }

    // ---- replication: leader side ----------------------------------------------------------------

    fn handle_append_reply(&mut self, from: usize, m: AppendEntriesReply) {
        if self.role != Role::Leader || m.term != self.term {
            return; // a stale reply from an earlier term
        }
        self.note_round(from, m.round);
        if m.success {
            let pr = &mut self.progress[from];
            let advanced = pr.maybe_update(m.index);
            if pr.state == ProgressState::Probe && pr.match_index + 1 >= pr.next_index {
                pr.become_replicate();
            }
            if pr
                .snapshot
                .as_ref()
                .is_some_and(|t| pr.match_index >= t.index)
            {
                // It got that far without the snapshot (an earlier AppendEntries arrived).
                pr.become_probe();
            }
            if advanced {
                self.maybe_commit();
                // An acknowledgement that arrives after the commit notice it could have used
                // (this follower was not needed for the majority) would otherwise wait for the
                // next heartbeat to learn what it may commit.
                let pr = &self.progress[from];
                if self.commit_notify_deadline.is_none()
                    && pr.commit_sent < self.commit_index.min(pr.match_index)
                {
                    self.commit_notify_deadline = Some(self.now + self.config.commit_notify_delay);
                }
            }
            self.send_appends_to(from);
            self.maybe_send_timeout_now(from);
        } else if m.conflict_index == 0 {
            // Rejected for its term, not for the follower's log: the request came from this
            // node's leadership of an earlier term, and the follower, now in ours, answered with
            // our term. It says nothing about where the logs diverge; believing it would step
            // `next_index` back to `match_index + 1` and re-send entries the follower holds.
        } else {
            let hint = self.next_from_hint(&m);
            if self.progress[from].maybe_decr_to(m.index, hint) {
                tracing::trace!(
                    node = self.id,
                    term = self.term,
                    peer = from,
                    next = hint,
                    "backing up"
                );
                self.send_appends_to(from);
            }
        }
    }

    /// Where to probe next after a rejection: past the leader's last entry of the follower's
    /// conflicting term if the leader holds that term, else the first index of that term on the
    /// follower (only the latter with [`Backtrack::FollowerTerm`]). Either way one round trip
    /// skips a whole term (§5.3).
    ///
    /// Example: the follower holds terms `[1 1 4 4 4]` and the leader `[1 1 5 5 5 5]`. A probe at
    /// prev 5 is rejected with (conflict_term 4, conflict_index 3); the leader holds no term 4,
    /// so the next probe is at prev 2, which matches.
    fn next_from_hint(&self, m: &AppendEntriesReply) -> u64 {
        // Conflict term 0: the follower's log is too short and ends at `conflict_index - 1`.
        // No leader holds term 0, so both ways resume there.
        if m.conflict_term == 0 || self.config.backtrack == Backtrack::FollowerTerm {
            return m.conflict_index;
        }
        match self.log.last_index_of_term(m.conflict_term) {
            Some(last) => last + 1,
            None => m.conflict_index,
        }
    }

    /// Commits the highest index held by a majority, if it belongs to the current term. Entries
    /// of earlier terms are never committed by counting replicas (Figure 8, §5.4.2): such an
    /// entry can still be overwritten by a leader of a term in between. They become committed
    /// with the first current-term entry after them.
    fn maybe_commit(&mut self) {
        self.progress[self.id].match_index = self.durable_index;
        let candidate = self.quorum_value(|_, p| p.match_index);
        #[cfg(feature = "bug-injection")]
        if self.has_bug(Bug::CommitPreviousTerm) && candidate > self.commit_index {
            self.set_commit(candidate);
        }
        if candidate > self.commit_index && self.log.term(candidate) == Some(self.term) {
            let first_of_term = !self.committed_in_term();
            self.set_commit(candidate);
            if self.commit_notify_deadline.is_none() {
                self.commit_notify_deadline = Some(self.now + self.config.commit_notify_delay);
            }
            if first_of_term && !self.pending_reads.is_empty() {
                // Reads registered before now can take their index: the commit index now
                // covers everything earlier leaders committed.
                for read in self.pending_reads.iter_mut() {
                    read.index = self.commit_index;
                }
                self.confirm_rounds();
            }
        }
    }

    /// Sends an empty AppendEntries, carrying the commit index, to each follower in Replicate
    /// state that has not been sent the current commit index and holds entries it could commit.
    fn broadcast_commit(&mut self) {
        self.commit_notify_deadline = None;
        for peer in self.others() {
            let pr = &self.progress[peer];
            if pr.state == ProgressState::Replicate
                && pr.next_index > self.log.offset()
                && pr.commit_sent < self.commit_index
                && pr.commit_sent < pr.match_index
            {
                self.send_heartbeat(peer);
            }
        }
    }

    /// Starts a new round for reads: an empty AppendEntries to every follower in Replicate or
    /// Probe state, at its match index, which it holds. Unlike the periodic heartbeat, it
    /// neither re-probes nor takes unacknowledged batches for lost: reads may start rounds
    /// microseconds apart. Followers receiving a snapshot answer the next chunk's round.
    fn start_read_round(&mut self) {
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

    /// Starts a new heartbeat round and sends every follower an AppendEntries (or snapshot
    /// chunk) that carries it.
    fn broadcast_heartbeat(&mut self) {
        self.heartbeat_deadline = self.now + self.config.heartbeat_interval;
        self.commit_notify_deadline = None;
        self.round += 1;
        if self.lease_round.is_none() {
            self.lease_round = Some((self.round, self.now));
        }
        for peer in self.others() {
            let pr = &mut self.progress[peer];
            match pr.state {
                ProgressState::Probe => {
                    // Re-probe: the last probe or its answer may have been lost.
                    pr.probe_sent = false;
                    self.send_append(peer);
                }
                ProgressState::Snapshot => {
                    // Send the chunk again: it or its answer may have been lost.
                    if let Some(transfer) = pr.snapshot.as_mut() {
                        transfer.sent = false;
                    }
                    self.send_snapshot(peer);
                }
                ProgressState::Replicate => {
                    if pr.lost_at_heartbeat() {
                        tracing::trace!(
                            node = self.id,
                            term = self.term,
                            peer,
                            next = pr.next_index,
                            "nothing acknowledged for a heartbeat interval: probing"
                        );
                        self.send_append(peer);
                    } else {
                        self.send_heartbeat(peer);
                    }
                }
            }
        }
    }

    fn broadcast_append(&mut self) {
        for peer in self.others() {
            self.send_appends_to(peer);
        }
    }

    /// Sends `peer` everything it lacks, as far as its state and window allow.
    fn send_appends_to(&mut self, peer: usize) {
        while !self.progress[peer].is_paused()
            && self.progress[peer].next_index <= self.log.last_index()
        {
            self.send_append(peer);
        }
    }

    /// Sends one AppendEntries from `next_index`, with as many entries as the limits allow, or
    /// the next chunk of the snapshot if the follower needs entries compacted away.
    fn send_append(&mut self, peer: usize) {
        let next = self.progress[peer].next_index;
        if next <= self.log.offset() || self.progress[peer].state == ProgressState::Snapshot {
            self.send_snapshot(peer);
            return;
        }
        let last = self
            .log
            .last_index()
            .min(next + self.config.max_append_entries as u64 - 1);
        let mut entries = self.log.slice(next, last);
        let mut bytes = 0;
        if let Some(cut) = entries.iter().position(|e| {
            bytes += e.command.len();
            bytes > self.config.max_append_bytes
        }) {
            entries = &entries[..cut.max(1)];
        }
        let carried = !entries.is_empty();
        let sent_to = next - 1 + entries.len() as u64;
        let mut buffer = if carried {
            self.spare_buffers.pop().unwrap_or_default()
        } else {
            Vec::new()
        };
        buffer.extend_from_slice(entries);
        let prev_term = self
            .log
            .term(next - 1)
            .expect("next_index is within log + 1");
        // Before `sent`, which may advance `next_index`.
        self.push_append(peer, next - 1, prev_term, buffer);
        self.progress[peer].sent(sent_to, carried);
    }

    /// Sends `peer` the next chunk of the snapshot, starting the transfer if it is not under way,
    /// unless a chunk is outstanding.
    fn send_snapshot(&mut self, peer: usize) {
        let pr = &mut self.progress[peer];
        if pr.state != ProgressState::Snapshot {
            let snapshot = self
                .snapshot
                .as_ref()
                .expect("a compacted log has a snapshot");
            pr.become_snapshot(snapshot.index, snapshot.term, snapshot.data.clone());
        }
        let transfer = pr.snapshot.as_mut().expect("in Snapshot state");
        if transfer.sent {
            return;
        }
        let len = transfer.data.len() as u64;
        let end = len.min(transfer.offset + self.config.max_snapshot_chunk as u64);
        let msg = InstallSnapshot {
            term: self.term,
            last_included_index: transfer.index,
            last_included_term: transfer.term,
            offset: transfer.offset,
            data: transfer.data.slice(transfer.offset as usize..end as usize),
            done: end == len,
            round: self.round,
        };
        transfer.sent = true;
        self.outbox.push((peer, Message::InstallSnapshot(msg)));
    }

    fn handle_snapshot_reply(&mut self, from: usize, m: InstallSnapshotReply) {
        if self.role != Role::Leader || m.term != self.term {
            return; // a stale reply from an earlier term
        }
        self.note_round(from, m.round);
        let pr = &mut self.progress[from];
        let done = pr.snapshot_reply(m.last_included_index, m.next_offset, m.installed);
        if done {
            tracing::debug!(
                node = self.id,
                term = self.term,
                peer = from,
                index = m.last_included_index,
                "follower installed the snapshot"
            );
            self.maybe_commit();
        }
        self.send_appends_to(from);
    }

    /// A heartbeat (or commit notice) to a follower in Replicate state: no entries, previous
    /// index its `match_index`, which it holds, so the follower accepts it even when it overtook
    /// batches still on their way, and commits up to the least of the commit index and its match
    /// (as etcd's heartbeats carry min(match, commit)). Lost batches are found by
    /// [`Progress::lost_at_heartbeat`] instead.
    ///
    /// If the leader compacted its log past the match index since, the heartbeat names the
    /// index just before `next_index` instead (the follower may refuse it if the batches before
    /// it are still on their way, and is then probed); only a follower whose `next_index` is
    /// itself compacted away is sent the snapshot.
    fn send_heartbeat(&mut self, peer: usize) {
        let pr = &self.progress[peer];
        let prev = match self.log.term(pr.match_index) {
            Some(term) => (pr.match_index, term),
            None => match self.log.term(pr.next_index - 1) {
                Some(term) => (pr.next_index - 1, term),
                None => {
                    self.send_snapshot(peer);
                    return;
                }
            },
        };
        self.push_append(peer, prev.0, prev.1, Vec::new());
    }

    /// Queues an AppendEntries to `peer` carrying `entries` after `prev` (of term `prev_term`)
    /// and the commit index, and records what it lets the follower commit. Leaves `next_index`
    /// alone.
    fn push_append(&mut self, peer: usize, prev: u64, prev_term: u64, entries: Vec<Entry>) {
        let last = prev + entries.len() as u64;
        let msg = AppendEntries {
            term: self.term,
            prev_log_index: prev,
            prev_log_term: prev_term,
            entries,
            leader_commit: self.commit_index,
            round: self.round,
        };
        let pr = &mut self.progress[peer];
        pr.commit_sent = pr.commit_sent.max(self.commit_index.min(last));
        self.outbox.push((peer, Message::AppendEntries(msg)));
    }
}

impl std::fmt::Debug for Core {
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
