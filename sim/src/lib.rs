//! Deterministic simulation: N sans-IO [`Core`]s driven in virtual time on a simulated network,
//! each with a simulated disk that loses what was not yet durable when its node crashes (in a
//! quarter of the seeds the real write-ahead log, power-cut at every crash), by one
//! thread, with every Raft invariant checked after every event. Each run is a pure function of
//! one `u64` seed, so any schedule it finds can be replayed exactly.
//!
//! # A run
//!
//! 1. A [`Scenario`] is drawn from the seed, swarm-style (cluster size, timing, flow control,
//!    how leaders back up over a conflicting term, loss, delays, duplication, which link faults
//!    may happen and how often, disk latency, crashes, snapshots, client load).
//! 2. **Fault phase** (`fault_ticks` ticks of 1 ms of virtual time): clients propose at random
//!    times to the node they believe leads (on a refusal they believe whom that node names, or
//!    try another; they hold back while it has a backlog, see [`CLIENT_BACKLOG`]); messages are
//!    lost, delayed (hence reordered), held back for election timeouts and duplicated; the
//!    cluster is partitioned, single links are cut one way, the leader is isolated, links heal;
//!    in half of the seeds nodes crash and later restart from their durable state (in half of
//!    those, from what their write-ahead log gives back after a power cut).
//! 3. **Heal phase**: every link comes back, every node is up (those down restart) and none
//!    crashes, nothing is lost or duplicated any more, clients stop. Within 100 election timeouts
//!    the cluster must converge: one leader that every node follows in its term, a fresh marker
//!    command committed and applied on every node, and the same commit index everywhere.
//!
//! # Storage and crashes
//!
//! After every step the simulator takes the core's write ([`Core::take_persist`]) and hands it
//! to the node's simulated disk, which makes it durable after a latency drawn from the scenario
//! ([`DiskLatency`]); writes complete in the order they were taken, and a core may have several
//! in progress. A completed write is stored, reported to the core ([`Core::persisted`]), and the
//! messages the core held back for it are sent. A crash drops the node's core, with the messages
//! it held back and its writes in progress: exactly what was not yet durable. What it already
//! sent stays on its way. Messages that arrive while it is down are lost. After a drawn downtime
//! it restarts with [`Core::restore`] from its durable state and a fresh seed.
//!
//! In half of the seeds with crashes ([`Scenario::file_storage`]) what stores a completed write
//! is the real write-ahead log, a [`FileStorage`](zeroraft_storage::FileStorage) on a simulated
//! file system of the node's own (the storage crate's `SimFs`, through its `sim-fs` feature),
//! which keeps what was synced and, at a power cut, drops, tears or reorders what was not. A
//! completed write is persisted to the log (written and synced) before the core hears of it.
//! Every crash of such a node cuts its power; when a write was under way, the process dies in
//! the middle of its persist first, after a drawn number of the persist's file operations (the
//! writes behind it are lost). On restart the log is opened again on the same file system (the
//! process dying in some of those opens, the power going again in some of those) and the core
//! restarts from what it recovered, which is checked twice: what the node told others must be
//! there ([`Invariant::Durability`]), and it must be every write the node was told was durable
//! and, of the write under way, all of it or nothing (or a prefix of its entries, for a write
//! split over records) ([`Invariant::Recovery`]). What the logs went through is in
//! [`Report::power_loss`]. Everything about the logs is drawn from a stream of the seed of its
//! own, so a seed's scenario and schedule are what they are without them, up to what a power
//! cut changes.
//!
//! # Snapshots
//!
//! In two thirds of the seeds every node's service snapshots its state machine every few applied
//! entries and compacts the log ([`Snapshots`]), so leaders often lack the entries a lagging or
//! restarted follower needs and send their snapshot instead, in chunks as small as 8 bytes. The
//! checker plays every node's service: it checks each snapshot handed to one against the
//! commands committed up to its index (see the [`checker`](Invariant)'s docs). In half of those
//! seeds a snapshot takes a while to serialize, as a large one does on the runtime's snapshot
//! thread: the node compacts up to the index it was taken at once it is done, later.
//!
//! # Membership changes
//!
//! In a quarter of the seeds ([`Scenario::members`], drawn from a stream of the seed of its own,
//! so that the other seeds run as they did) the cluster is built with more nodes than vote at
//! first, and an operator asks a leader, through [`Core::propose_membership`], to add a
//! learner, promote one, remove a voter, a learner or the leader itself, replace a voter by a
//! learner, or move to another set of voters at once ([`MemberOp`]), while the faults go on; the
//! leader may refuse ([`MemberOutcome`]). A node that the last committed configuration leaves
//! out is stopped with its disk (as an operator retires a machine), unless a configuration that
//! may still commit holds it, and restarts if a leader adds it again. The heal phase converges on
//! the members of the leader's configuration. [`Report::membership`] counts what the changes
//! came to. The checker's ledgers span every configuration; it also checks the configuration in
//! force on every node against what was proposed and committed ([`Invariant::Configuration`]),
//! every leader's commit index against the voters of each half ([`Invariant::CommitQuorum`]),
//! and every leader's configuration entries against the steps of joint consensus
//! ([`Invariant::ConfigChange`]). With CheckQuorum, a leader counts as cut off when the nodes it
//! can hear from hold no quorum of its own configuration.
//!
//! # PreVote, CheckQuorum and rejoins
//!
//! [`Options::pre_vote`] and [`Options::check_quorum`] turn those on in every core (no seed draws
//! them, so a seed without them runs as it always did). With CheckQuorum the simulator checks
//! that a leader cut off from the majority steps down in time ([`Invariant::CheckQuorum`]).
//! [`Options::rejoin`] replaces the drawn faults with rejoins on a reliable network and counts,
//! in the [`Report`], how often a node cut off from a stable cluster raised its own term or, once
//! back, the cluster's: what PreVote is for. Those counts are measurements, not invariants
//! (plain Raft raises terms on rejoins, correctly); the tests assert them.
//!
//! The next event is always the earliest of: the end of a phase, the next fault change, the next
//! crash, a restart, the next message due, the next write to complete, the earliest core timer
//! ([`Core::next_deadline`]), the next client proposal. Ties go in that order of kinds, then by
//! node id or send order. All randomness comes from one [`fastrand::Rng`] seeded with the run's
//! seed; the cores get seeds drawn from it, a restarted core a new one.
//!
//! # Checking
//!
//! After every delivered message, timer, proposal, completed write and restart, the
//! [`checker`](Invariant) looks at the node concerned: election safety, log matching, leader
//! completeness, state machine safety, monotonic term, commit and applied (per incarnation),
//! progress bounds (including that a leader's `match_index` is true of its follower), leader
//! append-only, and bounded traffic ([`MAX_IN_FLIGHT`]). On every crash it checks that the durable
//! state still holds what the node told others (durability), and for a node on the write-ahead
//! log, again on what the log gave back after the power cut, with the recovery check above. A
//! core that panics (one of its own assertions) is a violation too: while a thread steps a core,
//! a panic is caught and not printed, through a panic hook installed on first use that defers to
//! the previous hook for every other panic. A panic of the simulator itself, outside any core, is
//! no violation: it goes on as a panic. The first violation stops the run; the [`Violation`]
//! names the seed, the invariant, the nodes and the last [`RECENT_EVENTS`] events.

#[cfg(test)]
mod bugs;
mod checker;
mod event;
mod io;
mod network;
mod scenario;
mod storage;

use std::cell::Cell;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Once;

use bytes::Bytes;
use zeroraft_engine::core::{
    Core, CoreConfig, EntryKind, Hooks, Membership, MembershipChangeError, Message, Nanos, NoBugs,
    Role,
};
use zeroraft_engine::driver;

pub use checker::Invariant;
use checker::{Checker, Failure};
use event::EventLog;
pub use event::{
    DropReason, Event, EventKind, MemberOp, MemberOutcome, MsgSummary, RECENT_EVENTS, Refusal,
};
use io::SimIo;
use network::Network;
pub use network::Quality;
pub use scenario::{Crashes, Members, Scenario, Snapshots};
use storage::Disk;
pub use storage::{DiskLatency, PowerLoss, UnderWay};

/// The command a client proposes: `x` as 8 little-endian bytes (every command of a run is
/// unique, and the checker prints it back as a number).
fn cmd(x: u64) -> Bytes {
    Bytes::copy_from_slice(&x.to_le_bytes())
}

/// Mixed into the run's seed for the stream that draws everything about the write-ahead logs.
const DISK_STREAM: u64 = 0x5753_414c_5f44_4953;

/// Mixed into the run's seed for the stream that draws everything about membership changes.
const MEMBER_STREAM: u64 = 0x4d45_4d42_4552_5321;

/// One tick of virtual time: 1 ms. A scenario's fault phase is counted in ticks.
pub const TICK: Nanos = 1_000_000;

/// A client holds back while the node it asks has this many uncommitted entries, or 16 round
/// trips' worth of its flow control (`max_append_entries * max_inflight` entries per round trip),
/// whichever is less: offered load must not outrun what a scenario can replicate, or no heal
/// phase could catch up within its 100 election timeouts.
pub const CLIENT_BACKLOG: u64 = 256;

/// Most messages that may be in flight at once: beyond it, replies are breeding requests faster
/// than they are answered (a message storm). Heavy but bounded traffic stays well below it,
/// measured as the most messages in flight after any step: seeds 0..2000 as drawn peak at 42 274
/// (99th percentile 5 831); seeds 0..600 forced to 7 nodes re-sending windows of 64 single-entry
/// AppendEntries with half of the replies held back for one to three election timeouts peak at
/// 403 165 (seed 182; median 221, 99th percentile 67 403).
pub const MAX_IN_FLIGHT: usize = 1_000_000;

/// The fewest nodes the simulator runs: a link fault needs two nodes, a partition two sides.
pub const MIN_NODES: usize = 2;
/// The most nodes the simulator runs: a partition is drawn as a bit mask below `1 << nodes` in a
/// `u64`.
pub const MAX_NODES: usize = 63;

/// Overrides of what a seed would draw, and output options.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Cluster size, from [`MIN_NODES`] to [`MAX_NODES`] (otherwise 3, 5 or 7, drawn from the
    /// seed). The heal phase's bound of 100 election timeouts is sized for 3 to 7 nodes: with 2,
    /// or with a few dozen, split votes under the narrow timeout ranges some seeds draw can
    /// outlast it, a convergence failure that is no safety bug.
    pub nodes: Option<usize>,
    /// Length of the fault phase in ticks (otherwise 2 000 to 10 000, drawn from the seed).
    pub fault_ticks: Option<u64>,
    /// Mean time between two crashes in the fault phase, 0 for none (otherwise drawn from the
    /// seed: none in half of the seeds, one every quarter to every two election timeouts in the
    /// others).
    pub crash_interval: Option<Nanos>,
    /// Entries each node applies between two snapshots, 0 for none (otherwise drawn from the
    /// seed: none in a third of the seeds, every 2 to 50 entries in the others).
    pub snapshot_every: Option<u64>,
    /// Run every core with PreVote ([`CoreConfig::pre_vote`]); off by default.
    pub pre_vote: bool,
    /// Run every core with CheckQuorum ([`CoreConfig::check_quorum`]); off by default. The
    /// simulator then also checks that a leader cut off from the majority steps down in time
    /// ([`Invariant::CheckQuorum`]).
    pub check_quorum: bool,
    /// Replace the drawn faults with rejoins: a follower (never the leader) is cut off from
    /// every other node, then every link heals, in turn, at the drawn fault interval; the
    /// fault phase's network is reliable (as the heal phase's: no loss, duplication or held-back
    /// messages, delays of at most 30 ms) and nothing crashes. The [`Report`] counts what the
    /// rejoins did to terms ([`Report::rejoins`]).
    pub rejoin: bool,
    /// Run every core with a leader no-op entry ([`CoreConfig::leader_no_op`]); off by
    /// default.
    pub no_op: bool,
    /// Clients also ask for linearizable reads: one event in four is a read instead of a
    /// proposal, a ReadIndex read, or with CheckQuorum a lease read half of the time. The
    /// simulator checks every confirmed read ([`Invariant::ReadFreshness`]).
    pub reads: bool,
    /// Clients now and then ask the node they believe leads to hand its leadership to another
    /// node (one client event in 32 while it leads). The simulator checks that each transfer
    /// ends within an election timeout ([`Invariant::Transfer`]) and counts the transfers that
    /// made their target leader ([`Report::transfers`]).
    pub transfers: bool,
    /// Whether every node's storage is the write-ahead log on a simulated file system that
    /// each crash power-cuts ([`Scenario::file_storage`]); otherwise drawn from the seed: in
    /// half of the seeds with crashes.
    pub file_storage: Option<bool>,
    /// Whether an operator changes the members of the cluster in the fault phase
    /// ([`Scenario::members`]); otherwise drawn from the seed: in a quarter of the seeds.
    pub members: Option<bool>,
    /// Keep every event, for a readable trace in [`Report::trace`].
    pub trace: bool,
}

impl Options {
    /// PreVote and CheckQuorum on in every core, as `Config::production` has them (the leader
    /// no-op stays off: [`Options::no_op`] turns it on).
    pub fn production() -> Self {
        Self {
            pre_vote: true,
            check_quorum: true,
            ..Self::default()
        }
    }
}

/// How a run ended well: the heal phase converged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Converged {
    /// How long the heal phase took to converge.
    pub heal_took: Nanos,
    /// The leader everyone follows.
    pub leader: usize,
    /// Its term.
    pub term: u64,
    /// The commit index every node reached.
    pub commit_index: u64,
}

/// A broken invariant and how to reproduce it.
#[derive(Clone, Debug)]
pub struct Violation {
    /// The run's seed.
    pub seed: u64,
    /// The scenario the seed drew.
    pub scenario: Scenario,
    /// What broke.
    pub invariant: Invariant,
    /// The nodes involved.
    pub nodes: Vec<usize>,
    /// What exactly was seen.
    pub detail: String,
    /// When, in virtual time.
    pub at: Nanos,
    /// The last events before it, oldest first.
    pub recent: Vec<Event>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {}: {} violated at {}.{:03} ms, nodes {:?}",
            self.seed,
            self.invariant.name(),
            self.at / 1_000_000,
            self.at / 1_000 % 1_000,
            self.nodes
        )?;
        writeln!(f, "  {}", self.detail)?;
        writeln!(f, "  scenario: {}", self.scenario)?;
        writeln!(f, "  last {} events:", self.recent.len())?;
        for event in &self.recent {
            writeln!(f, "    {event}")?;
        }
        write!(
            f,
            "  replay: cargo run --release --example sim -- --replay {}",
            self.seed
        )
    }
}

/// The result of one run.
#[derive(Clone, Debug)]
pub struct Report {
    /// The run's seed.
    pub seed: u64,
    /// Convergence, or the first violation.
    pub outcome: Result<Converged, Box<Violation>>,
    /// A hash of every event in order: equal for two runs of the same seed.
    pub trace_hash: u64,
    /// Number of events.
    pub events: u64,
    /// Virtual time at the end.
    pub end_time: Nanos,
    /// Every event, if [`Options::trace`] was set.
    pub trace: Vec<Event>,
    /// With [`Options::rejoin`]: how many times a follower was cut off from a cluster whose
    /// leader was still leading the same term when the follower came back (a stable cluster).
    pub rejoins: u64,
    /// Of those, how many times the cut-off follower raised its term while it was cut off.
    pub isolated_term_raises: u64,
    /// Of those, how many times some node's term rose above the stable leader's after the
    /// follower came back, before the next fault (or the heal phase).
    pub rejoin_term_raises: u64,
    /// With [`Options::reads`]: reads asked for, confirmed, and of those confirmed under a
    /// lease.
    pub reads: [u64; 3],
    /// With [`Options::transfers`]: transfers that started, and of those the ones that made
    /// their target leader of the next term, and the ones abandoned.
    pub transfers: [u64; 3],
    /// With [`Scenario::file_storage`]: what the nodes' write-ahead logs went through, summed
    /// over the nodes (all zero otherwise).
    pub power_loss: PowerLoss,
    /// With [`Scenario::members`]: what became of the changes of members asked for (all zero
    /// otherwise).
    pub membership: MembershipCounts,
}

/// What became of the membership changes of a run ([`Scenario::members`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MembershipCounts {
    /// Changes asked of a node that led.
    pub asked: u64,
    /// Of those, the ones it started (appended a configuration entry for).
    pub started: u64,
    /// Of those asked, the ones it refused, by reason: not leader, a change under way, a
    /// transfer under way, a learner not caught up, an invalid target.
    pub refused: [u64; 5],
    /// Of those asked, the ones whose target was in force already.
    pub in_force: u64,
    /// Times no node led when the operator wanted a change.
    pub no_leader: u64,
    /// Of those started, the ones that removed the leader asked.
    pub leader_removals: u64,
    /// Configuration entries committed (joint ones, the ones leaving them, learner changes).
    pub configs_committed: u64,
    /// Nodes stopped because a committed configuration left them out.
    pub retired: u64,
    /// Stopped nodes restarted because a leader added them again.
    pub readded: u64,
}

impl MembershipCounts {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Self) {
        self.asked += other.asked;
        self.started += other.started;
        for (a, b) in self.refused.iter_mut().zip(other.refused) {
            *a += b;
        }
        self.in_force += other.in_force;
        self.no_leader += other.no_leader;
        self.leader_removals += other.leader_removals;
        self.configs_committed += other.configs_committed;
        self.retired += other.retired;
        self.readded += other.readded;
    }
}

/// The operator of [`Scenario::members`]: when it asks for the next change, and the nodes it
/// added or stopped.
struct Operator {
    /// Draws everything the operator does, from a stream of the seed of its own.
    rng: fastrand::Rng,
    /// The initial configuration.
    initial: Membership,
    next_at: Nanos,
    /// Nodes a leader was ever asked to make members of (beyond the initial voters), a bit
    /// per node; with the initial voters.
    joined: u64,
    /// Nodes stopped because a committed configuration left them out.
    retired: u64,
    counts: MembershipCounts,
}

/// A follower cut off in [`Options::rejoin`] mode, and the leader of the cluster it left.
struct Rejoin {
    node: usize,
    /// The leader of the highest term when the follower was cut off, and that term.
    leader: Option<(usize, u64)>,
    /// Once the links healed with that leader still leading that term: the term to watch.
    watching: Option<u64>,
}

/// One client: whom it believes leads, when it proposes next, how many commands it sent.
struct Client {
    believed: usize,
    next_at: Nanos,
    sent: u64,
}

/// The fresh command of the heal phase.
struct Marker {
    node: usize,
    term: u64,
    index: u64,
    command: Bytes,
}

enum Phase {
    Fault,
    Heal {
        since: Nanos,
        marker: Option<Marker>,
        markers_sent: u64,
    },
}

/// The kinds of event, in tie-breaking order.
enum Next {
    PhaseEnd,
    Fault,
    Crash,
    Restart(usize),
    Message,
    Durable(usize),
    Timer(usize),
    Client(usize),
    Member,
}

thread_local! {
    /// Whether this thread is stepping a core, so that a core's panic is a report, not noise.
    static STEPPING: Cell<bool> = const { Cell::new(false) };
}

fn install_panic_filter() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !STEPPING.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Notes in `stepping` which core, if any, this thread is about to step: the report blames it if
/// it panics, and the panic hook keeps quiet.
fn set_stepping(stepping: &mut Option<usize>, node: Option<usize>) {
    *stepping = node;
    STEPPING.with(|s| s.set(node.is_some()));
}

/// Adjusts a core as it is built: every core at the start, every restarted one later.
type Adjust<H> = Box<dyn Fn(&mut Core<H>) + Send>;

/// N cores with their disks, a network, clients and the checker, in virtual time. The cores
/// follow hooks of type `H` ([`Hooks`]): [`NoBugs`], as every node runs, unless the
/// simulator's own tests switch a classic bug on to see the checker catch it.
pub struct Simulation<H: Hooks + Default = NoBugs> {
    seed: u64,
    scenario: Scenario,
    rng: fastrand::Rng,
    now: Nanos,
    /// Each node's core, `None` while it is down.
    cores: Vec<Option<Core<H>>>,
    /// Each node's storage. It outlives the node's crashes.
    disks: Vec<Disk>,
    /// Draws everything about the write-ahead logs, from a stream of the seed of its own, so
    /// that `rng` draws what it would without them.
    disk_rng: fastrand::Rng,
    /// When each down node restarts; `Nanos::MAX` for a node that is up.
    restart_at: Vec<Nanos>,
    /// The node to crash just after its next step that starts a write, if any.
    armed: Option<usize>,
    adjust: Option<Adjust<H>>,
    /// (role, term, commit index) of each core when last looked at, for the trace.
    seen: Vec<(Role, u64, u64)>,
    net: Network,
    clients: Vec<Client>,
    next_fault: Nanos,
    next_crash: Nanos,
    phase: Phase,
    checker: Checker,
    log: EventLog,
    /// The node being stepped, to blame if it panics. Set through `set_stepping`.
    stepping: Option<usize>,
    /// For each node cut off from the majority: since when, and the set of nodes whose link into
    /// it was up at some moment since then (a bit per node), too few with it for a majority.
    cut_off_since: Vec<Option<(Nanos, u64)>>,
    /// For each node: when it last became leader.
    lead_since: Vec<Nanos>,
    /// The rejoin under way, with [`Options::rejoin`].
    rejoin: Option<Rejoin>,
    /// The counts reported in [`Report::rejoins`] and after.
    rejoins: u64,
    isolated_term_raises: u64,
    rejoin_term_raises: u64,
    reads_on: bool,
    transfers_on: bool,
    /// Reads asked for and not yet answered: id -> (node asked, highest index committed
    /// anywhere when asked).
    reads: std::collections::HashMap<u64, (usize, u64)>,
    next_read: u64,
    /// See [`Report::reads`].
    read_counts: [u64; 3],
    /// For each node: the transfer it is making as leader, as (since, target, term).
    transferring: Vec<Option<(Nanos, usize, u64)>>,
    /// For each node: the snapshot its service is serializing, as (done at, index, data).
    serializing: Vec<Option<(Nanos, u64, Bytes)>>,
    /// See [`Report::transfers`].
    transfer_counts: [u64; 3],
    /// Transfers whose leader stepped down: the target and the term it would lead.
    handed_over: Vec<(usize, u64)>,
    /// With [`Scenario::members`]: the operator that changes the members.
    operator: Option<Operator>,
    /// For each node: the configuration in force when last looked at, and since when.
    config_seen: Vec<(Membership, Nanos)>,
}

/// Runs one seed to the end.
pub fn run_seed(seed: u64, options: &Options) -> Report {
    Simulation::new(seed, options).run()
}

impl Simulation {
    /// A cluster at time 0, every core a follower in term 0, built from `seed`.
    ///
    /// # Panics
    ///
    /// If `options.nodes` is outside [`MIN_NODES`]`..=`[`MAX_NODES`].
    pub fn new(seed: u64, options: &Options) -> Self {
        Self::with_hooks(seed, options)
    }
}

impl<H: Hooks + Default> Simulation<H> {
    /// As [`Simulation::new`], with every core (restarted ones included) built with
    /// `H::default()` hooks.
    ///
    /// # Panics
    ///
    /// As [`Simulation::new`].
    pub fn with_hooks(seed: u64, options: &Options) -> Self {
        if let Some(n) = options.nodes {
            assert!(
                (MIN_NODES..=MAX_NODES).contains(&n),
                "the simulator runs clusters of {MIN_NODES} to {MAX_NODES} nodes, not {n}"
            );
        }
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut scenario = Scenario::draw(&mut rng, options);
        let mut disk_rng = fastrand::Rng::with_seed(seed ^ DISK_STREAM);
        if options.file_storage.is_none() {
            scenario.file_storage = scenario.crashes.is_some() && disk_rng.bool();
        }
        let mut member_rng = fastrand::Rng::with_seed(seed ^ MEMBER_STREAM);
        scenario.draw_members(&mut member_rng, options);
        let n = scenario.nodes;
        let initial = match scenario.members {
            Some(m) => Membership::new(0..m.voters, []).expect("at least one voter"),
            None => Membership::initial(n),
        };
        let disks = (0..n)
            .map(|i| {
                if scenario.file_storage {
                    Disk::on_wal(seed, i, &mut disk_rng)
                        .unwrap_or_else(|e| panic!("node {i}'s new write-ahead log: {e}"))
                } else {
                    Disk::new()
                }
            })
            .collect();
        let cores = (0..n)
            .map(|i| {
                let seed = rng.u64(..);
                let config = scenario.core.clone();
                let mut core = Core::with_hooks(i, n, config, seed, 0, H::default());
                if scenario.members.is_some() {
                    core.set_initial_membership(initial);
                }
                Some(core)
            })
            .collect();
        let clients = (0..scenario.clients)
            .map(|_| Client {
                believed: rng.usize(..n),
                next_at: rng.u64(0..=2 * scenario.propose_interval),
                sent: 0,
            })
            .collect();
        let next_fault = if scenario.has_link_faults() {
            rng.u64(0..=2 * scenario.fault_interval)
        } else {
            Nanos::MAX
        };
        let next_crash = scenario
            .crashes
            .map_or(Nanos::MAX, |c| rng.u64(1..=2 * c.interval));
        let operator = scenario.members.map(|m| Operator {
            next_at: member_rng.u64(1..=2 * m.interval),
            rng: member_rng,
            initial,
            joined: (1 << m.voters) - 1,
            retired: 0,
            counts: MembershipCounts::default(),
        });
        let mut checker = Checker::new(n);
        checker.set_initial(initial);
        Self {
            seed,
            rng,
            now: 0,
            cores,
            disks,
            disk_rng,
            restart_at: vec![Nanos::MAX; n],
            armed: None,
            adjust: None,
            seen: vec![(Role::Follower, 0, 0); n],
            net: Network::new(n, scenario.net, scenario.core.election_timeout_max),
            clients,
            next_fault,
            next_crash,
            phase: Phase::Fault,
            checker,
            log: EventLog::new(options.trace),
            stepping: None,
            cut_off_since: vec![None; n],
            lead_since: vec![0; n],
            rejoin: None,
            rejoins: 0,
            isolated_term_raises: 0,
            rejoin_term_raises: 0,
            reads_on: options.reads,
            transfers_on: options.transfers,
            reads: std::collections::HashMap::new(),
            next_read: 0,
            read_counts: [0; 3],
            transferring: vec![None; n],
            serializing: vec![None; n],
            transfer_counts: [0; 3],
            handed_over: Vec::new(),
            operator,
            config_seen: vec![(initial, 0); n],
            scenario,
        }
    }

    /// The scenario this run's seed drew.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// Applies `adjust` to every core now, and to every core a restart builds later (for
    /// example to inject a bug: a restarted node runs the same code). Replaces any earlier one.
    pub fn adjust_cores(&mut self, adjust: impl Fn(&mut Core<H>) + Send + 'static) {
        for core in self.cores.iter_mut().flatten() {
            adjust(core);
        }
        self.adjust = Some(Box::new(adjust));
    }

    /// Switches `bugs` on in every node's write-ahead log, in a seed whose nodes run on one
    /// (before the run: the logs are opened again with them).
    #[cfg(test)]
    pub(crate) fn switch_on_storage_bugs(&mut self, bugs: zeroraft_storage::wal::sim::Bugs) {
        for disk in &mut self.disks {
            disk.switch_on(bugs).expect("a new log opens again");
        }
    }

    /// Node `i`'s core.
    ///
    /// # Panics
    ///
    /// If node `i` is down.
    fn core(&self, i: usize) -> &Core<H> {
        self.cores[i].as_ref().expect("the node is up")
    }

    /// See [`Simulation::core`].
    fn core_mut(&mut self, i: usize) -> &mut Core<H> {
        self.cores[i].as_mut().expect("the node is up")
    }

    /// Runs the fault phase and the heal phase, stopping at the first violation.
    pub fn run(mut self) -> Report {
        install_panic_filter();
        let result = catch_unwind(AssertUnwindSafe(|| self.run_phases()));
        STEPPING.with(|s| s.set(false));
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(payload) => {
                // Outside a core, the simulator itself failed: that is no finding about Raft.
                let Some(node) = self.stepping else {
                    resume_unwind(payload)
                };
                let message = payload
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| payload.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)");
                Err(self.violation(Failure {
                    invariant: Invariant::CoreAssertion,
                    nodes: vec![node],
                    detail: format!("panicked: {message}"),
                }))
            }
        };
        Report {
            seed: self.seed,
            outcome,
            trace_hash: self.log.hash(),
            events: self.log.count(),
            end_time: self.now,
            trace: self.log.take_trace(),
            rejoins: self.rejoins,
            isolated_term_raises: self.isolated_term_raises,
            rejoin_term_raises: self.rejoin_term_raises,
            reads: self.read_counts,
            transfers: self.transfer_counts,
            power_loss: self
                .disks
                .iter()
                .fold(PowerLoss::default(), |mut sum, disk| {
                    sum.add(&disk.power_loss());
                    sum
                }),
            membership: self.operator.as_ref().map_or_else(Default::default, |o| {
                MembershipCounts {
                    configs_committed: self.checker.configs_committed(),
                    ..o.counts
                }
            }),
        }
    }

    fn violation(&self, failure: Failure) -> Box<Violation> {
        Box::new(Violation {
            seed: self.seed,
            scenario: self.scenario.clone(),
            invariant: failure.invariant,
            nodes: failure.nodes,
            detail: failure.detail,
            at: self.now,
            recent: self.log.recent(),
        })
    }

    fn run_phases(&mut self) -> Result<Converged, Box<Violation>> {
        let fault_end = self.scenario.fault_phase();
        loop {
            let phase_end = match self.phase {
                Phase::Fault => fault_end,
                Phase::Heal { since, .. } => since + self.scenario.convergence_limit(),
            };
            let (at, next) = self.next_event(phase_end);
            self.now = at;
            let step = match next {
                Next::PhaseEnd => match self.phase {
                    Phase::Fault => self.start_heal(),
                    Phase::Heal { since, .. } => Err(Failure {
                        invariant: Invariant::Convergence,
                        nodes: (0..self.cores.len()).collect(),
                        detail: format!(
                            "no convergence {} ms after the faults stopped: {}",
                            (self.now - since) / 1_000_000,
                            self.describe_nodes()
                        ),
                    }),
                },
                Next::Fault => {
                    self.fault();
                    Ok(())
                }
                Next::Crash => self.crash(),
                Next::Restart(i) => self.restart(i),
                Next::Message => self.deliver(),
                Next::Durable(i) => self.complete_write(i),
                Next::Timer(i) => {
                    self.log.push(at, EventKind::Timer { node: i });
                    set_stepping(&mut self.stepping, Some(i));
                    self.core_mut(i).tick(at);
                    self.after_step(i, None, None)
                }
                Next::Client(c) => self.client_propose(c),
                Next::Member => self.member_change(),
            };
            step.map_err(|f| self.violation(f))?;
            if self.operator.is_some() {
                self.tend_members().map_err(|f| self.violation(f))?;
            }
            self.check_quorum_step_down()
                .map_err(|f| self.violation(f))?;
            self.check_transfers().map_err(|f| self.violation(f))?;
            self.watch_rejoin();
            if let Some(done) = self.heal_progress().map_err(|f| self.violation(f))? {
                self.checker
                    .check_all(&self.cores)
                    .map_err(|f| self.violation(f))?;
                return Ok(done);
            }
        }
    }

    fn next_event(&self, phase_end: Nanos) -> (Nanos, Next) {
        let mut best = (phase_end, Next::PhaseEnd);
        if self.next_fault < best.0 {
            best = (self.next_fault, Next::Fault);
        }
        if self.next_crash < best.0 {
            best = (self.next_crash, Next::Crash);
        }
        for (i, &at) in self.restart_at.iter().enumerate() {
            if at < best.0 {
                best = (at, Next::Restart(i));
            }
        }
        if let Some(at) = self.net.next_time()
            && at < best.0
        {
            best = (at, Next::Message);
        }
        for (i, disk) in self.disks.iter().enumerate() {
            if let Some(at) = disk.next_done()
                && at < best.0
            {
                best = (at, Next::Durable(i));
            }
        }
        for (i, core) in self.cores.iter().enumerate() {
            let Some(core) = core else {
                continue;
            };
            let at = core.next_deadline();
            if at < best.0 {
                best = (at, Next::Timer(i));
            }
        }
        if let Phase::Fault = self.phase {
            for (c, client) in self.clients.iter().enumerate() {
                if client.next_at < best.0 {
                    best = (client.next_at, Next::Client(c));
                }
            }
            if let Some(operator) = &self.operator
                && operator.next_at < best.0
            {
                best = (operator.next_at, Next::Member);
            }
        }
        (best.0.max(self.now), best.1)
    }

    /// After node `i` took an input that may have written its entries `written` (or, for a
    /// write that completed, with its generation in `completed`): drives the core through one
    /// driver step ([`driver::advance`], as the node's thread does) with this node's [`SimIo`],
    /// then notes role and commit changes in the trace and runs the checker.
    fn after_step(
        &mut self,
        i: usize,
        written: Option<(u64, u64)>,
        completed: Option<u64>,
    ) -> Result<(), Failure> {
        let now = self.now;
        let core = self.cores[i].as_mut().expect("the node is up");
        let offset = core.log().offset();
        let mut io = SimIo {
            i,
            now,
            term: core.term(),
            role: core.role(),
            completed,
            wrote: false,
            disk: &mut self.disks[i],
            latency: &self.scenario.disk,
            snapshots: self.scenario.snapshots,
            serializing: &mut self.serializing[i],
            rng: &mut self.rng,
            net: &mut self.net,
            checker: &mut self.checker,
            log: &mut self.log,
            reads: &mut self.reads,
            read_counts: &mut self.read_counts,
        };
        set_stepping(&mut self.stepping, Some(i));
        driver::advance(core, &mut io)?;
        set_stepping(&mut self.stepping, None);
        let wrote = io.wrote;
        if core.log().offset() > offset {
            let index = core.log().offset();
            self.log.push(now, EventKind::Compact { node: i, index });
        }
        let state = (core.role(), core.term(), core.commit_index());
        if (state.0, state.1) != (self.seen[i].0, self.seen[i].1) {
            if state.0 == Role::Leader {
                self.lead_since[i] = now;
                if let Some(k) = self.handed_over.iter().position(|&h| h == (i, state.1)) {
                    self.transfer_counts[1] += 1;
                    self.handed_over.swap_remove(k);
                }
                // A leader of this term ends every hand-over to it or an earlier one.
                let term = state.1;
                self.handed_over.retain(|&(_, t)| t > term);
            }
            self.log.push(
                now,
                EventKind::State {
                    node: i,
                    role: state.0,
                    term: state.1,
                },
            );
        }
        if state.2 != self.seen[i].2 {
            self.log.push(
                now,
                EventKind::Commit {
                    node: i,
                    index: state.2,
                },
            );
        }
        self.seen[i] = state;
        let membership = *core.membership();
        if membership != self.config_seen[i].0 {
            self.config_seen[i] = (membership, now);
        }
        if self.net.in_flight() > MAX_IN_FLIGHT {
            return Err(Failure {
                invariant: Invariant::BoundedTraffic,
                nodes: vec![i],
                detail: format!(
                    "{} messages in flight after node {i} sent; last sender's state: {}",
                    self.net.in_flight(),
                    self.describe_nodes()
                ),
            });
        }
        let core = self.cores[i].as_ref().expect("the node is up");
        core.check_invariants().map_err(|e| Failure {
            invariant: Invariant::CoreInvariant,
            nodes: vec![i],
            detail: e.to_string(),
        })?;
        self.checker.observe(i, core, written)?;
        self.note_transfer(i);
        self.checker.check_match(&self.cores, i)?;
        if wrote && self.armed == Some(i) {
            return self.crash_node(i);
        }
        Ok(())
    }

    /// Completes the oldest write in progress of node `i`: stores it, and reports it to the core
    /// in a driver step (which sends what that released).
    fn complete_write(&mut self, i: usize) -> Result<(), Failure> {
        let done = self.disks[i].complete().map_err(|e| Failure {
            invariant: Invariant::Durability,
            nodes: vec![i],
            detail: format!("node {i}: {e}"),
        })?;
        self.log.push(
            self.now,
            EventKind::Durable {
                node: i,
                generation: done.generation,
                hard_state: done.hard_state,
                last_index: self.disks[i].last_index(),
            },
        );
        self.checker.durable(i, done.hard_state)?;
        self.after_step(i, None, Some(done.generation))
    }

    /// Crashes a node that is up, drawn at random, if any is: now, or (see
    /// [`Crashes::mid_write`]) just after its next step that starts a write.
    fn crash(&mut self) -> Result<(), Failure> {
        let crashes = self.scenario.crashes.expect("crashes are on");
        self.next_crash = self.now + self.rng.u64(1..=2 * crashes.interval);
        let up = self.cores.iter().filter(|c| c.is_some()).count();
        if up == 0 {
            return Ok(());
        }
        let k = self.rng.usize(..up);
        let i = (0..self.cores.len())
            .filter(|&j| self.cores[j].is_some())
            .nth(k)
            .expect("k < up");
        let mid_write = crashes.mid_write > 0.0 && self.rng.f64() < crashes.mid_write;
        if mid_write && self.disks[i].next_done().is_none() {
            self.armed = Some(i);
            return Ok(());
        }
        self.crash_node(i)
    }

    /// Crashes node `i`, which is up.
    fn crash_node(&mut self, i: usize) -> Result<(), Failure> {
        if self.armed == Some(i) {
            self.armed = None;
        }
        let core = self.cores[i].take().expect("the node is up");
        self.transferring[i] = None;
        self.serializing[i] = None;
        let lost_writes = self.disks[i]
            .crash(&mut self.disk_rng)
            .map_err(|e| Failure {
                invariant: Invariant::Recovery,
                nodes: vec![i],
                detail: format!("node {i}: {e}"),
            })?;
        let restart_at = self.now + self.scenario.draw_downtime(&mut self.rng);
        self.restart_at[i] = restart_at;
        self.log.push(
            self.now,
            EventKind::Crash {
                node: i,
                lost_writes,
                lost_messages: core.has_held_messages(),
                restart_at,
            },
        );
        drop(core);
        let disk = &self.disks[i];
        self.checker.crash(i, disk.hard_state(), disk.last_index())
    }

    /// Restarts node `i` from its durable state.
    fn restart(&mut self, i: usize) -> Result<(), Failure> {
        self.restart_at[i] = Nanos::MAX;
        let recovery = |detail: String| Failure {
            invariant: Invariant::Recovery,
            nodes: vec![i],
            detail: format!("node {i}: {detail}"),
        };
        let restarted = self.disks[i]
            .restart(&mut self.disk_rng)
            .map_err(recovery)?;
        let recovered = restarted.recovered;
        let hard_state = recovered.hard_state;
        let first_index = recovered.first_index();
        let last_index = first_index - 1 + recovered.entries.len() as u64;
        if let Some((attempts, under_way, wrong)) = restarted.wal {
            self.log.push(
                self.now,
                EventKind::Reopen {
                    node: i,
                    attempts,
                    under_way,
                },
            );
            // What the node told others first, as Raft needs it; then the log against every
            // write it reported durable.
            self.checker.recovered(i, hard_state, last_index)?;
            if let Some(wrong) = wrong {
                return Err(recovery(wrong));
            }
            self.disks[i].adopt(&recovered);
            self.checker.durable(i, Some(hard_state))?;
        }
        self.log.push(
            self.now,
            EventKind::Restart {
                node: i,
                hard_state,
                last_index,
            },
        );
        let n = self.cores.len();
        let seed = self.rng.u64(..);
        set_stepping(&mut self.stepping, Some(i));
        let config = self.scenario.core.clone();
        let mut core =
            Core::restore_with_hooks(i, n, config, seed, self.now, recovered, H::default());
        if let Some(operator) = &self.operator {
            core.set_initial_membership(operator.initial);
        }
        if let Some(adjust) = &self.adjust {
            adjust(&mut core);
        }
        set_stepping(&mut self.stepping, None);
        self.checker.restart(i, &core)?;
        self.seen[i] = (core.role(), core.term(), core.commit_index());
        self.cores[i] = Some(core);
        self.after_step(i, Some((first_index, last_index)), None)
    }

    fn deliver(&mut self) -> Result<(), Failure> {
        let m = self.net.pop().expect("a message is due");
        let summary = MsgSummary::of(&m.msg);
        let lost = if self.net.is_blocked(m.from, m.to) {
            Some(DropReason::CutInFlight)
        } else if self.cores[m.to].is_none() {
            Some(DropReason::Down)
        } else {
            None
        };
        if let Some(reason) = lost {
            self.log.push(
                m.at,
                EventKind::Drop {
                    from: m.from,
                    to: m.to,
                    msg: summary,
                    reason,
                },
            );
            return Ok(());
        }
        self.log.push(
            m.at,
            EventKind::Deliver {
                from: m.from,
                to: m.to,
                msg: summary,
            },
        );
        let written = match &m.msg {
            Message::AppendEntries(a) if !a.entries.is_empty() => Some((
                a.prev_log_index + 1,
                a.prev_log_index + a.entries.len() as u64,
            )),
            _ => None,
        };
        set_stepping(&mut self.stepping, Some(m.to));
        let now = self.now;
        self.core_mut(m.to).step(now, m.from, m.msg);
        self.after_step(m.to, written, None)
    }

    fn client_propose(&mut self, c: usize) -> Result<(), Failure> {
        let n = self.cores.len();
        let batch = self.rng.usize(1..=self.scenario.batch_max);
        let client = &mut self.clients[c];
        let node = client.believed;
        let per_round_trip =
            self.scenario.core.max_append_entries * self.scenario.core.max_inflight;
        let limit = CLIENT_BACKLOG.min(16 * per_round_trip as u64);
        client.next_at = self.now + self.rng.u64(0..=2 * self.scenario.propose_interval);
        let Some(core) = &self.cores[node] else {
            client.believed = self.rng.usize(..n);
            self.log
                .push(self.now, EventKind::Unreachable { client: c, node });
            return Ok(());
        };
        if self.reads_on && self.rng.u8(..4) == 0 {
            return self.client_read(c, node);
        }
        if self.transfers_on && core.role() == Role::Leader && self.rng.u8(..32) == 0 {
            let target = (node + self.rng.usize(1..n)) % n;
            self.log
                .push(self.now, EventKind::Transfer { node, target });
            set_stepping(&mut self.stepping, Some(node));
            let now = self.now;
            let _ = self.core_mut(node).transfer_leadership(now, target);
            return self.after_step(node, None, None);
        }
        if core.log().last_index() - core.commit_index() >= limit {
            self.log
                .push(self.now, EventKind::Backoff { client: c, node });
            return Ok(());
        }
        let first_seq = client.sent;
        client.sent += batch as u64;
        // Commands are unique in a run: the client in the top byte, its sequence number below.
        let commands = (first_seq..first_seq + batch as u64).map(|s| cmd(((c as u64) << 56) | s));
        set_stepping(&mut self.stepping, Some(node));
        let now = self.now;
        let accepted = self.core_mut(node).propose(now, commands);
        self.log.push(
            self.now,
            EventKind::Propose {
                client: c,
                node,
                accepted,
            },
        );
        if accepted.is_none() {
            let told = self.core(node).leader().filter(|&l| l != node);
            self.clients[c].believed = told.unwrap_or_else(|| self.rng.usize(..n));
        }
        self.after_step(node, accepted, None)
    }

    /// Client `c` asks `node`, which is up, for a read: a lease read half of the time with
    /// CheckQuorum, a ReadIndex read otherwise.
    fn client_read(&mut self, c: usize, node: usize) -> Result<(), Failure> {
        let lease = self.scenario.core.check_quorum && self.rng.bool();
        let id = self.next_read;
        self.next_read += 1;
        let committed = self.checker.committed_len();
        self.reads.insert(id, (node, committed));
        self.read_counts[0] += 1;
        self.log.push(
            self.now,
            EventKind::Read {
                client: c,
                node,
                id,
                lease,
                committed,
            },
        );
        set_stepping(&mut self.stepping, Some(node));
        let now = self.now;
        let core = self.core_mut(node);
        let lease_reads = core.stats().lease_reads;
        if lease {
            core.read_lease(now, [id]);
        } else {
            core.read_index(now, [id]);
        }
        self.read_counts[2] += core.stats().lease_reads - lease_reads;
        if self.core(node).role() != Role::Leader {
            let told = self.core(node).leader().filter(|&l| l != node);
            let n = self.cores.len();
            self.clients[c].believed = told.unwrap_or_else(|| self.rng.usize(..n));
        }
        self.after_step(node, None, None)
    }

    /// The operator asks a node that leads for a change of members (see [`Members`]): the
    /// leader of the highest term, or one time in four any node that believes it leads (a
    /// deposed one, cut off, included).
    fn member_change(&mut self) -> Result<(), Failure> {
        let members = self.scenario.members.expect("membership changes are on");
        let n = self.cores.len();
        let now = self.now;
        let current = self.current_leader();
        let leaders: Vec<usize> = (0..n)
            .filter(|&i| {
                self.cores[i]
                    .as_ref()
                    .is_some_and(|c| c.role() == Role::Leader)
            })
            .collect();
        let operator = self.operator.as_mut().expect("an operator");
        let rng = &mut operator.rng;
        operator.next_at = now
            + if members.burst > 0.0 && rng.f64() < members.burst {
                rng.u64(1..=5) * 1_000_000
            } else {
                rng.u64(1..=2 * members.interval)
            };
        let node = match current {
            Some((l, _)) if rng.u8(..4) != 0 => l,
            _ if !leaders.is_empty() => leaders[rng.usize(..leaders.len())],
            _ => {
                operator.counts.no_leader += 1;
                self.log.push(now, EventKind::NoLeaderForChange);
                return Ok(());
            }
        };
        let core = self.cores[node].as_ref().expect("a leader is up");
        let m = *core.membership();
        let voters = node_bits(m.voters());
        let learners = node_bits(m.learners());
        let outsiders = !(voters | learners | node_bits(m.outgoing())) & ((1 << n) - 1);
        let others = voters & !(1 << node);
        let can_remove = voters.count_ones() >= 3;
        let mut ops = Vec::with_capacity(7);
        for (possible, op) in [
            (outsiders != 0, MemberOp::AddLearner),
            (learners != 0, MemberOp::Promote),
            (can_remove && others != 0, MemberOp::RemoveVoter),
            (
                can_remove && voters & (1 << node) != 0,
                MemberOp::RemoveLeader,
            ),
            (learners != 0, MemberOp::RemoveLearner),
            (learners != 0 && others != 0, MemberOp::Replace),
            (learners != 0, MemberOp::Reshape),
        ] {
            if possible {
                ops.push(op);
            }
        }
        let Some(&op) = (!ops.is_empty()).then(|| &ops[rng.usize(..ops.len())]) else {
            return Ok(());
        };
        let (v, l) = match op {
            MemberOp::AddLearner => (voters, learners | 1 << pick(rng, outsiders)),
            MemberOp::Promote => {
                let x = 1 << pick(rng, learners);
                (voters | x, learners & !x)
            }
            MemberOp::RemoveVoter => (voters & !(1 << pick(rng, others)), learners),
            MemberOp::RemoveLeader => (voters & !(1 << node), learners),
            MemberOp::RemoveLearner => (voters, learners & !(1 << pick(rng, learners))),
            MemberOp::Replace => {
                let x = 1 << pick(rng, learners);
                (voters & !(1 << pick(rng, others)) | x, learners & !x)
            }
            MemberOp::Reshape => {
                let promoted = (rng.u64(..) & learners) | 1 << pick(rng, learners);
                let kept = rng.u64(..) & voters;
                let kept = if (kept | promoted).count_ones() < 2 {
                    voters
                } else {
                    kept
                };
                (kept | promoted, learners & !promoted)
            }
        };
        let target = Membership::new(bit_nodes(v), bit_nodes(l)).expect("a valid target");
        let before = core.log().last_index();
        set_stepping(&mut self.stepping, Some(node));
        let result = self.core_mut(node).propose_membership(now, &target);
        set_stepping(&mut self.stepping, None);
        let core = self.cores[node].as_ref().expect("the node is up");
        let last = core.log().last_index();
        let operator = self.operator.as_mut().expect("an operator");
        operator.counts.asked += 1;
        let outcome = match result {
            Ok(_) if last > before => {
                for index in before + 1..=last {
                    let entry = core.log().entry(index).expect("just appended");
                    if entry.kind == EntryKind::Config {
                        let appended = Membership::decode(&entry.command).expect("just appended");
                        self.checker.proposed(appended);
                    }
                }
                operator.joined |= v | l;
                operator.counts.started += 1;
                if op == MemberOp::RemoveLeader {
                    operator.counts.leader_removals += 1;
                }
                MemberOutcome::Started { index: last }
            }
            Ok(_) => {
                operator.counts.in_force += 1;
                MemberOutcome::InForce
            }
            Err(e) => {
                let why = match e {
                    MembershipChangeError::NotLeader => Refusal::NotLeader,
                    MembershipChangeError::ChangeInProgress => Refusal::InProgress,
                    MembershipChangeError::TransferInProgress => Refusal::Transfer,
                    MembershipChangeError::NotCaughtUp(_) => Refusal::NotCaughtUp,
                    MembershipChangeError::UnknownNode(_) | MembershipChangeError::Invalid(_) => {
                        Refusal::Invalid
                    }
                };
                operator.counts.refused[why as usize] += 1;
                MemberOutcome::Refused(why)
            }
        };
        self.log.push(
            now,
            EventKind::MemberChange {
                node,
                op,
                voters: v,
                learners: l,
                outcome,
            },
        );
        let written = (last > before).then_some((before + 1, last));
        self.after_step(node, written, None)
    }

    /// With [`Scenario::members`], after every event: stops every node that the last
    /// configuration committed anywhere leaves out, as an operator retires a machine once its
    /// removal is committed, unless a configuration that may still commit holds it: the one in
    /// force on a member of the committed configuration, if it is the committed one or one whose
    /// entry lies beyond what is committed (another configuration at a committed index is one of
    /// a log no leader will keep, or an earlier one). A node is stopped only if a
    /// leader was asked to make it a member once (the nodes never added wait). A stopped node
    /// that such a configuration holds again restarts.
    fn tend_members(&mut self) -> Result<(), Failure> {
        let (_, committed) = self.checker.last_committed_config();
        let committed_len = self.checker.committed_len();
        let mut wanted = 0u64;
        for core in self.cores.iter().flatten() {
            let index = core.membership_index();
            let may_commit = *core.membership() == committed || index > committed_len;
            if committed.contains(core.id()) && may_commit {
                let m = core.membership();
                wanted |= node_bits(m.voters()) | node_bits(m.outgoing()) | node_bits(m.learners());
            }
        }
        for x in 0..self.cores.len() {
            let operator = self.operator.as_mut().expect("an operator");
            let bit = 1 << x;
            if operator.retired & bit != 0 {
                if wanted & bit != 0 {
                    operator.retired &= !bit;
                    operator.counts.readded += 1;
                    self.restart_at[x] = self.now;
                }
            } else if operator.joined & bit != 0 && wanted & bit == 0 && !committed.contains(x) {
                operator.retired |= bit;
                operator.counts.retired += 1;
                self.retire(x)?;
            }
        }
        Ok(())
    }

    /// Stops node `x`, which a committed configuration left out: it crashes (if it is up) and
    /// does not restart unless a leader adds it again.
    fn retire(&mut self, x: usize) -> Result<(), Failure> {
        self.restart_at[x] = Nanos::MAX;
        if self.armed == Some(x) {
            self.armed = None;
        }
        self.log.push(self.now, EventKind::Retire { node: x });
        let Some(core) = self.cores[x].take() else {
            return Ok(());
        };
        self.transferring[x] = None;
        self.serializing[x] = None;
        self.disks[x]
            .crash(&mut self.disk_rng)
            .map_err(|e| Failure {
                invariant: Invariant::Recovery,
                nodes: vec![x],
                detail: format!("node {x}: {e}"),
            })?;
        drop(core);
        let disk = &self.disks[x];
        self.checker.crash(x, disk.hard_state(), disk.last_index())
    }

    /// Notes transfers that started and ended on node `i`, and what became of them.
    fn note_transfer(&mut self, i: usize) {
        let core = self.cores[i].as_ref().expect("the node is up");
        match (self.transferring[i], core.transfer_target()) {
            (None, Some(target)) => {
                self.transferring[i] = Some((self.now, target, core.term()));
                self.transfer_counts[0] += 1;
            }
            (Some(_), None) if core.role() == Role::Leader => {
                self.transferring[i] = None;
                self.transfer_counts[2] += 1;
            }
            (Some((_, target, term)), None) => {
                // It stepped down: most likely for its target's election, which may still be
                // under way.
                self.transferring[i] = None;
                self.handed_over.push((target, term + 1));
            }
            _ => {}
        }
    }

    /// A leader's transfer ends within `election_timeout_min` of its start.
    fn check_transfers(&self) -> Result<(), Failure> {
        let limit = self.scenario.core.election_timeout_min;
        for (i, t) in self.transferring.iter().enumerate() {
            if let Some((since, target, term)) = *t
                && self.now > since + limit
            {
                return Err(Failure {
                    invariant: Invariant::Transfer,
                    nodes: vec![i, target],
                    detail: format!(
                        "leader {i} of term {term} is still transferring to {target} {} ms after \
                         it started, beyond the election timeout of {} ms",
                        (self.now - since) / 1_000_000,
                        limit / 1_000_000
                    ),
                });
            }
        }
        Ok(())
    }

    fn fault(&mut self) {
        let n = self.cores.len();
        let s = &self.scenario;
        let mut kinds = [Fault::Heal; 4];
        let mut count = 1;
        for (enabled, kind) in [
            (s.partitions, Fault::Partition),
            (s.one_way_cuts, Fault::Cut),
            (s.isolate_leader, Fault::Isolate),
        ] {
            if enabled {
                kinds[count] = kind;
                count += 1;
            }
        }
        self.next_fault = self.now + self.rng.u64(1..=2 * s.fault_interval);
        if s.rejoin {
            let kind = self.rejoin_fault();
            self.log.push(self.now, kind);
            self.note_cut_offs();
            return;
        }
        let kind = match kinds[self.rng.usize(..count)] {
            Fault::Heal => {
                self.net.heal();
                EventKind::HealLinks
            }
            Fault::Partition => {
                let mut side = 0u64;
                while side == 0 || side == (1 << n) - 1 {
                    side = self.rng.u64(..1 << n);
                }
                self.net.heal();
                for a in 0..n {
                    for b in 0..n {
                        if ((side >> a) & 1) != ((side >> b) & 1) {
                            self.net.block(a, b);
                        }
                    }
                }
                EventKind::Partition { side }
            }
            Fault::Cut => {
                let from = self.rng.usize(..n);
                let to = (from + self.rng.usize(1..n)) % n;
                self.net.block(from, to);
                EventKind::Cut { from, to }
            }
            Fault::Isolate => {
                let leader = self
                    .cores
                    .iter()
                    .flatten()
                    .filter(|c| c.role() == Role::Leader)
                    .max_by_key(|c| c.term())
                    .map(|c| c.id());
                let node = leader.unwrap_or_else(|| self.rng.usize(..n));
                self.net.heal();
                for other in (0..n).filter(|&o| o != node) {
                    self.net.block(node, other);
                    self.net.block(other, node);
                }
                EventKind::Isolate { node }
            }
        };
        self.log.push(self.now, kind);
        self.note_cut_offs();
    }

    /// The leader of the highest term among the nodes that are up, if it is the only leader.
    fn current_leader(&self) -> Option<(usize, u64)> {
        let max_term = self.cores.iter().flatten().map(|c| c.term()).max()?;
        let mut leaders = self
            .cores
            .iter()
            .flatten()
            .filter(|c| c.role() == Role::Leader);
        match (leaders.next(), leaders.next()) {
            (Some(l), None) if l.term() == max_term => Some((l.id(), max_term)),
            _ => None,
        }
    }

    /// The next fault of [`Options::rejoin`] mode: heals the cut-off follower's links if there
    /// is one (noting whether the cluster it comes back to is stable), or else cuts off a
    /// follower drawn at random.
    fn rejoin_fault(&mut self) -> EventKind {
        let n = self.cores.len();
        if let Some(Rejoin {
            node,
            leader,
            watching: None,
        }) = self.rejoin
        {
            self.net.heal();
            self.rejoin = None;
            if let Some((l, term)) = leader
                && self.cores[l]
                    .as_ref()
                    .is_some_and(|c| c.role() == Role::Leader && c.term() == term)
            {
                self.rejoins += 1;
                if self.core(node).term() > term {
                    self.isolated_term_raises += 1;
                }
                self.rejoin = Some(Rejoin {
                    node,
                    leader,
                    watching: Some(term),
                });
            }
            return EventKind::HealLinks;
        }
        let leader = self.current_leader();
        let node = (leader.map_or(0, |(l, _)| l) + self.rng.usize(1..n)) % n;
        self.net.heal();
        for other in (0..n).filter(|&o| o != node) {
            self.net.block(node, other);
            self.net.block(other, node);
        }
        self.rejoin = Some(Rejoin {
            node,
            leader,
            watching: None,
        });
        EventKind::Isolate { node }
    }

    /// After every event of [`Options::rejoin`] mode: counts a rejoin that raised the term of
    /// the stable cluster it came back to (once per rejoin).
    fn watch_rejoin(&mut self) {
        let Some(Rejoin {
            watching: Some(term),
            ..
        }) = self.rejoin
        else {
            return;
        };
        if self.cores.iter().flatten().any(|c| c.term() > term) {
            self.rejoin_term_raises += 1;
            self.rejoin = None;
        }
    }

    /// Notes, after the links changed, which nodes have been unable to hear from a majority
    /// since when: all the nodes whose link into one was up at any moment since then, with it,
    /// are fewer than a majority. A leader whose links change can hear from different nodes in
    /// turn, and count a majority over a quorum check's window without ever having one at once.
    fn note_cut_offs(&mut self) {
        let n = self.cores.len();
        for i in 0..n {
            let minority = |set: u64| !self.holds_quorum(i, set);
            let open = (0..n)
                .filter(|&j| j == i || !self.net.is_blocked(j, i))
                .fold(0u64, |set, j| set | (1 << j));
            self.cut_off_since[i] = match self.cut_off_since[i] {
                Some((since, heard)) if minority(heard | open) => Some((since, heard | open)),
                _ if minority(open) => Some((self.now, open)),
                _ => None,
            };
        }
    }

    /// Whether the nodes of `set` (a bit per node) hold a quorum of node `i`'s configuration in
    /// force (the last one seen while it is down): a majority of its voters, and of the outgoing
    /// ones too while joint. With fixed membership: a majority of the cluster.
    fn holds_quorum(&self, i: usize, set: u64) -> bool {
        let m = self.cores[i]
            .as_ref()
            .map_or(self.config_seen[i].0, |c| *c.membership());
        let majority =
            |voters: u64| voters == 0 || (set & voters).count_ones() > voters.count_ones() / 2;
        majority(node_bits(m.voters())) && majority(node_bits(m.outgoing()))
    }

    /// With CheckQuorum: fails if a leader has been cut off from the majority (see
    /// `note_cut_offs`) for more than two minimum election timeouts, counted from when it was
    /// cut off or became leader, whichever is later. Its first quorum check after the cut may
    /// count messages from before the cut; the one after that cannot: a message is delivered
    /// only while its link is up.
    fn check_quorum_step_down(&self) -> Result<(), Failure> {
        let config: &CoreConfig = &self.scenario.core;
        if !config.check_quorum {
            return Ok(());
        }
        for core in self.cores.iter().flatten() {
            let i = core.id();
            let Some((since, heard)) = self.cut_off_since[i] else {
                continue;
            };
            if self.holds_quorum(i, heard) {
                // Its configuration changed since: it needs no other nodes than those.
                continue;
            }
            // A change of configuration restarts its quorum checks' count.
            let from = since.max(self.lead_since[i]).max(self.config_seen[i].1);
            if core.role() == Role::Leader && self.now > from + 2 * config.election_timeout_min {
                return Err(Failure {
                    invariant: Invariant::CheckQuorum,
                    nodes: vec![i],
                    detail: format!(
                        "leader {i} term {} still leads {} ms after it was cut off from the \
                         majority (at {} ms; leading since {} ms), beyond two minimum election \
                         timeouts of {} ms",
                        core.term(),
                        (self.now - from) / 1_000_000,
                        since / 1_000_000,
                        self.lead_since[i] / 1_000_000,
                        config.election_timeout_min / 1_000_000
                    ),
                });
            }
        }
        Ok(())
    }

    fn start_heal(&mut self) -> Result<(), Failure> {
        self.net.heal();
        self.net.quality = self.net.quality.reliable();
        self.rejoin = None;
        self.cut_off_since.fill(None);
        self.next_fault = Nanos::MAX;
        self.next_crash = Nanos::MAX;
        self.armed = None;
        self.phase = Phase::Heal {
            since: self.now,
            marker: None,
            markers_sent: 0,
        };
        self.log.push(self.now, EventKind::HealPhase);
        let retired = self.operator.as_ref().map_or(0, |o| o.retired);
        for i in 0..self.cores.len() {
            if self.cores[i].is_none() && retired & (1 << i) == 0 {
                self.restart(i)?;
            }
        }
        Ok(())
    }

    /// In the heal phase: proposes a marker once a leader stands, re-proposes it if that leader
    /// falls before the cluster converged, and says when it converged. Nothing in the fault phase.
    fn heal_progress(&mut self) -> Result<Option<Converged>, Failure> {
        let Phase::Heal {
            since,
            marker,
            markers_sent,
        } = &mut self.phase
        else {
            return Ok(None);
        };
        let since = *since;
        // Every node is up but those stopped after their removal (and a node added again, for
        // the moment before it restarts).
        let cores = || self.cores.iter().flatten();
        let max_term = cores().map(|c| c.term()).max().unwrap_or(0);
        let mut leaders = cores().filter(|c| c.role() == Role::Leader);
        let leader = match (leaders.next(), leaders.next()) {
            (Some(l), None) if l.term() == max_term => Some(l.id()),
            _ => None,
        };
        if marker
            .as_ref()
            .is_some_and(|m| Some(m.node) != leader || m.term != max_term)
        {
            *marker = None;
        }
        let Some(l) = leader else {
            return Ok(None);
        };
        let Some(m) = marker else {
            if self.cores[l]
                .as_ref()
                .is_some_and(|c| c.transfer_target().is_some())
            {
                // It takes no proposals while it hands its leadership over; the transfer ends
                // within an election timeout.
                return Ok(None);
            }
            *markers_sent += 1;
            let command = cmd(u64::MAX - *markers_sent);
            set_stepping(&mut self.stepping, Some(l));
            let (index, _) = self.cores[l]
                .as_mut()
                .expect("all up when healing")
                .propose(self.now, [command.clone()])
                .expect("a leader accepts proposals");
            *marker = Some(Marker {
                node: l,
                term: max_term,
                index,
                command,
            });
            self.log
                .push(self.now, EventKind::Marker { node: l, index });
            self.after_step(l, Some((index, index)), None)?;
            return Ok(None);
        };
        let leader = self.cores[l].as_ref().expect("all up when healing");
        let commit = leader.commit_index();
        // The members of its configuration: the nodes it replicates to.
        let members = *leader.membership();
        let converged = commit >= m.index
            && commit == leader.log().last_index()
            && (0..self.cores.len()).all(|x| {
                if x != l && !members.contains(x) {
                    return true;
                }
                let Some(c) = &self.cores[x] else {
                    return false;
                };
                c.term() == max_term
                    && c.leader() == Some(l)
                    && c.commit_index() == commit
                    && c.last_applied() == commit
                    && c.log()
                        .entry(m.index)
                        // Compacted: applied, as the checker saw, where the marker committed.
                        .map_or(m.index <= c.log().offset(), |e| e.command == m.command)
            });
        Ok(converged.then(|| Converged {
            heal_took: self.now - since,
            leader: l,
            term: max_term,
            commit_index: commit,
        }))
    }

    fn describe_nodes(&self) -> String {
        let parts: Vec<String> = self
            .cores
            .iter()
            .enumerate()
            .map(|(i, c)| match c {
                Some(c) if self.operator.is_some() => format!(
                    "node {i} {:?} t{} leader {:?} last {} commit {} config {:?} at {}",
                    c.role(),
                    c.term(),
                    c.leader(),
                    c.log().last_index(),
                    c.commit_index(),
                    c.membership(),
                    c.membership_index()
                ),
                Some(c) => format!(
                    "node {i} {:?} t{} leader {:?} last {} commit {}",
                    c.role(),
                    c.term(),
                    c.leader(),
                    c.log().last_index(),
                    c.commit_index()
                ),
                None => format!("node {i} down"),
            })
            .collect();
        parts.join("; ")
    }
}

/// The nodes of `ids` as a bit set.
fn node_bits(ids: impl Iterator<Item = usize>) -> u64 {
    ids.fold(0, |set, id| set | 1 << id)
}

/// The nodes of the bit set `set`, lowest first.
fn bit_nodes(set: u64) -> impl Iterator<Item = usize> {
    (0..64).filter(move |i| set & (1 << i) != 0)
}

/// A node of the bit set `set` (not empty), drawn at random.
fn pick(rng: &mut fastrand::Rng, set: u64) -> usize {
    bit_nodes(set)
        .nth(rng.usize(..set.count_ones() as usize))
        .expect("a node of a set that is not empty")
}

#[derive(Clone, Copy)]
enum Fault {
    Heal,
    Partition,
    Cut,
    Isolate,
}
