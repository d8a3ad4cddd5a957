//! The metrics a node reports through the [`metrics`] facade: each one's name, type, unit,
//! labels and meaning, declared once here ([`METRICS`]).
//!
//! A node registers its handles when it starts, with whatever recorder the program installed
//! by then (for example `metrics-exporter-prometheus`'s, which `zeroraft serve --metrics`
//! installs); without one every handle is a no-op and reporting costs nothing. A program that
//! installs a recorder calls [`describe`] once so that the recorder knows each metric's unit and
//! help text. Every metric carries the label `node` (the node's id); the per-follower ones also
//! `peer`.
//!
//! The node's thread keeps its counts in plain fields and hands them to the recorder at most
//! every few milliseconds and whenever its role changes (see `runtime/metrics.rs`), so that the
//! hot path stays as it is; nothing is allocated per entry. docs/metrics.md lists them for
//! operators.

pub use metrics::Unit;

/// What kind of value a metric is, as Prometheus names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A count that only grows (its name ends in `_total`).
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A distribution of observations, in buckets.
    Histogram,
}

/// One metric: see the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metric {
    /// Its name, with the `zeroraft_` prefix and the unit's suffix.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// Its unit, if it has one.
    pub unit: Option<Unit>,
    /// The labels it carries.
    pub labels: &'static [&'static str],
    /// What it means.
    pub help: &'static str,
}

/// Tells the installed recorder the unit and help text of each metric of `table` (such as
/// [`METRICS`]). Call it once, after installing a recorder.
pub fn describe(table: &[Metric]) {
    for m in table {
        match (m.kind, m.unit) {
            (Kind::Counter, Some(unit)) => metrics::describe_counter!(m.name, unit, m.help),
            (Kind::Counter, None) => metrics::describe_counter!(m.name, m.help),
            (Kind::Gauge, Some(unit)) => metrics::describe_gauge!(m.name, unit, m.help),
            (Kind::Gauge, None) => metrics::describe_gauge!(m.name, m.help),
            (Kind::Histogram, Some(unit)) => metrics::describe_histogram!(m.name, unit, m.help),
            (Kind::Histogram, None) => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

const NODE: &[&str] = &["node"];
const PEER: &[&str] = &["node", "peer"];

macro_rules! metric_names {
    ($($(#[$doc:meta])* $konst:ident = $name:literal, $kind:ident, $unit:expr, $labels:expr, $help:literal;)*) => {
        $( $(#[$doc])* pub const $konst: &str = $name; )*
        /// Every metric the engine reports.
        pub const METRICS: &[Metric] = &[
            $( Metric { name: $konst, kind: Kind::$kind, unit: $unit, labels: $labels, help: $help }, )*
        ];
    };
}

metric_names! {
    /// Counter: elections started.
    ELECTIONS_STARTED = "zeroraft_elections_started_total", Counter, None, NODE,
        "Elections this node started (times it became candidate).";
    /// Counter: elections won.
    ELECTIONS_WON = "zeroraft_elections_won_total", Counter, None, NODE,
        "Elections this node won (times it became leader).";
    /// Counter: leaders seen.
    LEADER_CHANGES = "zeroraft_leader_changes_total", Counter, None, NODE,
        "Times this node learned of a leader, after knowing none or another.";
    /// Counter: step-downs.
    STEP_DOWNS = "zeroraft_step_downs_total", Counter, None, NODE,
        "Times this node stopped being leader.";
    /// Counter: proposals refused, by `reason` (`busy`, `not_leader`).
    PROPOSALS_REFUSED = "zeroraft_proposals_refused_total", Counter, None, &["node", "reason"],
        "Proposals refused: reason=busy (the leader's queue is full), reason=not_leader.";
    /// Counter: entries applied.
    ENTRIES_APPLIED = "zeroraft_entries_applied_total", Counter, None, NODE,
        "Log entries this node applied to its state machine since it started.";
    /// Counter: reads confirmed, by `mode` (`index`, `lease`).
    READS = "zeroraft_reads_total", Counter, None, &["node", "mode"],
        "Reads this node confirmed as leader: mode=index (a heartbeat round), mode=lease.";
    /// Counter: leadership transfers started.
    TRANSFERS_STARTED = "zeroraft_transfers_started_total", Counter, None, NODE,
        "Leadership transfers this node started as leader.";
    /// Counter: leadership transfers abandoned.
    TRANSFERS_ABANDONED = "zeroraft_transfers_abandoned_total", Counter, None, NODE,
        "Leadership transfers this node gave up (the target was not leader in time).";
    /// Counter: snapshots sent.
    SNAPSHOTS_SENT = "zeroraft_snapshots_sent_total", Counter, None, NODE,
        "Snapshots this node started sending to followers that lacked compacted entries.";
    /// Counter: snapshots installed.
    SNAPSHOTS_INSTALLED = "zeroraft_snapshots_installed_total", Counter, None, NODE,
        "Snapshots this node installed from a leader.";
    /// Counter: messages sent.
    MESSAGES_SENT = "zeroraft_messages_sent_total", Counter, None, NODE,
        "Raft messages this node sent, to all peers.";
    /// Counter: messages received.
    MESSAGES_RECEIVED = "zeroraft_messages_received_total", Counter, None, NODE,
        "Raft messages this node received, from all peers.";
    /// Counter: storage writes.
    WAL_WRITES = "zeroraft_wal_writes_total", Counter, None, NODE,
        "Writes to the node's storage (one per group commit).";
    /// Gauge: the current term.
    TERM = "zeroraft_term", Gauge, None, NODE,
        "The node's current term.";
    /// Gauge: 1 for the node's role, 0 for the others (`role`: follower, candidate, leader).
    ROLE = "zeroraft_role", Gauge, None, &["node", "role"],
        "1 for the role the node plays now, 0 for the others (role=follower, candidate, leader).";
    /// Gauge: the leader's id.
    LEADER = "zeroraft_leader", Gauge, None, NODE,
        "The id of the leader this node knows of in its term, or -1 if it knows none.";
    /// Gauge: commit index.
    COMMIT_INDEX = "zeroraft_commit_index", Gauge, None, NODE,
        "The highest log index this node knows committed.";
    /// Gauge: applied index.
    APPLIED_INDEX = "zeroraft_applied_index", Gauge, None, NODE,
        "The highest log index this node applied.";
    /// Gauge: durable index.
    DURABLE_INDEX = "zeroraft_durable_index", Gauge, None, NODE,
        "The highest log index this node's storage made durable.";
    /// Gauge: snapshot index.
    SNAPSHOT_INDEX = "zeroraft_snapshot_index", Gauge, None, NODE,
        "The last index this node's snapshot covers (0 if none).";
    /// Gauge: last log index.
    LAST_LOG_INDEX = "zeroraft_last_log_index", Gauge, None, NODE,
        "The index of this node's last log entry.";
    /// Gauge: entries in the log.
    LOG_ENTRIES = "zeroraft_log_entries", Gauge, None, NODE,
        "Entries the node's log holds after its snapshot.";
    /// Gauge: bytes of commands in the log.
    LOG_BYTES = "zeroraft_log_bytes", Gauge, Some(Unit::Bytes), NODE,
        "Bytes of commands the node's log holds after its snapshot.";
    /// Gauge: a follower's match index, on the leader.
    FOLLOWER_MATCH_INDEX = "zeroraft_follower_match_index", Gauge, None, PEER,
        "On the leader: the highest index known replicated on follower `peer` (0 elsewhere).";
    /// Gauge: a follower's lag, on the leader.
    FOLLOWER_LAG = "zeroraft_follower_lag_entries", Gauge, None, PEER,
        "On the leader: entries of its log follower `peer` is not known to hold (0 elsewhere).";
    /// Gauge: proposals queued.
    PROPOSALS_QUEUED = "zeroraft_proposals_queued", Gauge, None, NODE,
        "Proposals accepted by the leader and not yet appended to its log.";
    /// Gauge: 1 for what the node is in the configuration it has in force, 0 for the others
    /// (`role`: voter, joining, leaving, learner); all 0 when it is not a member.
    MEMBER = "zeroraft_member", Gauge, None, &["node", "role"],
        "1 for what this node is in the configuration it has in force, 0 for the others (role=voter; while joint, joining: a voter of the incoming half only, leaving: of the outgoing half only; learner); all 0 when it is not a member.";
    /// Gauge: the index of the configuration entry in force.
    CONFIG_INDEX = "zeroraft_config_index", Gauge, None, NODE,
        "The index of the entry holding the configuration this node has in force (the snapshot's index if it came with one, 0 for the configuration the node was built with).";
    /// Gauge: whether that configuration is committed, as the node knows.
    CONFIG_COMMITTED = "zeroraft_config_committed", Gauge, None, NODE,
        "1 once this node knows the entry of the configuration it has in force committed, else 0 (a change under way).";
    /// Gauge: whether the configuration is joint.
    CONFIG_JOINT = "zeroraft_config_joint", Gauge, None, NODE,
        "1 while the configuration this node has in force is joint (old and new voters must both agree), else 0.";
    /// Gauge: voters of the configuration.
    CONFIG_VOTERS = "zeroraft_config_voters", Gauge, None, NODE,
        "Voters of the configuration this node has in force (of the incoming half while joint).";
    /// Gauge: whether the node stopped on a storage failure.
    STORAGE_FAILED = "zeroraft_storage_failed", Gauge, None, NODE,
        "1 once the node stopped because its storage failed (a full disk, an I/O error), else 0.";
    /// Histogram: commit latency on the leader.
    COMMIT_LATENCY = "zeroraft_commit_latency_seconds", Histogram, Some(Unit::Seconds), NODE,
        "On the leader: from appending a proposal to applying it, sampled (one entry at a time).";
    /// Histogram: storage write latency.
    WAL_WRITE = "zeroraft_wal_write_seconds", Histogram, Some(Unit::Seconds), NODE,
        "Time of one storage write (a group commit), its fdatasync included; writes on the node's own thread (storages that do not wait for a disk) sampled: one in 64, and any a millisecond after the last.";
    /// Histogram: fdatasync latency.
    WAL_FDATASYNC = "zeroraft_wal_fdatasync_seconds", Histogram, Some(Unit::Seconds), NODE,
        "Time spent in the fdatasync calls of one storage write (file storage only).";
    /// Histogram: entries applied per batch.
    APPLY_BATCH = "zeroraft_apply_batch_entries", Histogram, Some(Unit::Count), NODE,
        "Entries handed to the state machine in one batch, sampled: one in 64, and any a millisecond after the last.";
    /// Histogram: entries per AppendEntries.
    APPEND_BATCH = "zeroraft_append_entries_batch_entries", Histogram, Some(Unit::Count), NODE,
        "Entries carried by one AppendEntries this node sent (heartbeats without entries left out), sampled: one in 64, and any a millisecond after the last.";
    /// Histogram: snapshot creation time.
    SNAPSHOT_CREATE = "zeroraft_snapshot_create_seconds", Histogram, Some(Unit::Seconds), NODE,
        "Time the state machine took to make a snapshot.";
    /// Histogram: snapshot install time.
    SNAPSHOT_INSTALL = "zeroraft_snapshot_install_seconds", Histogram, Some(Unit::Seconds), NODE,
        "Time the state machine took to restore a snapshot.";
    /// Histogram: read latency, by `mode` (`index`, `lease`).
    READ_LATENCY = "zeroraft_read_latency_seconds", Histogram, Some(Unit::Seconds), &["node", "mode"],
        "From asking the node for a read to its answer (confirmed and applied), by mode.";
}
