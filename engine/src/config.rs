//! [`Config`]: a node's settings, with the 6.824 tester's timing by default and
//! [`Config::production`] for a cluster that serves clients; [`Compaction`], when a node
//! compacts its log on its own; [`ConfigError`], why settings cannot work.

use std::fmt;
use std::time::Duration;

#[cfg(doc)]
use crate::{Raft, StartError, StateMachine, Storage};

/// When a node whose commands are applied by a [`StateMachine`] compacts its log on its own:
/// it asks the state machine for a snapshot ([`StateMachine::snapshot_view`]) once either bound
/// is reached, and drops the log up to the index the snapshot was taken at. Nodes delivering on
/// a channel compact when their service calls [`Raft::snapshot`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Compaction {
    /// Snapshot once this many entries were applied since the last snapshot.
    pub every_entries: Option<u64>,
    /// Snapshot once the log holds more than this many bytes of commands.
    pub above_bytes: Option<u64>,
}

impl Compaction {
    /// No compaction: the log keeps every entry.
    pub const NEVER: Self = Self {
        every_entries: None,
        above_bytes: None,
    };

    /// Whether a log holding `entries_since` entries applied since the last snapshot and
    /// `log_bytes` bytes of commands should be compacted now.
    pub fn due(&self, entries_since: u64, log_bytes: u64) -> bool {
        self.every_entries.is_some_and(|n| entries_since >= n)
            || self.above_bytes.is_some_and(|b| log_bytes > b)
    }
}

/// Settings of a node. The defaults are the timings the 6.824 tester expects: at most ten
/// heartbeats a second and a new leader well within a second of the old one failing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// How often a leader sends AppendEntries to an idle follower. Default 100 ms; at least
    /// [`Config::MIN_HEARTBEAT`].
    pub heartbeat_interval: Duration,
    /// Lower bound of the randomized election timeout. Default 300 ms.
    pub election_timeout_min: Duration,
    /// Upper bound (exclusive) of the randomized election timeout. Default 600 ms.
    pub election_timeout_max: Duration,
    /// Most entries in one AppendEntries. Default 4096; at most [`Config::MAX_APPEND_ENTRIES`].
    pub max_append_entries: usize,
    /// Most payload bytes in one AppendEntries (one entry is always sent). Default 1 MiB.
    pub max_append_bytes: usize,
    /// Most AppendEntries in flight to one follower. Default 64; at most
    /// [`Config::MAX_INFLIGHT`] (the leader keeps a ring of this many indices per follower).
    pub max_inflight: usize,
    /// Most bytes of commands sent to one follower and not yet acknowledged. The leader sends
    /// no AppendEntries that would go past it while others are in flight; with none in flight
    /// it sends one anyway, so that a command larger than the bound still gets through. So a
    /// slow follower (or a slow link) holds at most this much of the leader's memory in
    /// messages on their way, rather than [`Config::max_inflight`] ×
    /// [`Config::max_append_bytes`]. Below `max_append_bytes` it also caps each AppendEntries.
    /// Default 8 MiB; above zero.
    pub max_inflight_bytes: usize,
    /// After the leader's commit index advances, how long it waits before sending it to
    /// followers that received no AppendEntries since (under load, the next batch carries it).
    /// Bounds how far a follower's applied state trails the leader's when traffic stops.
    /// Default 2 ms; below `election_timeout_min`.
    pub commit_notify_delay: Duration,
    /// Largest command [`Raft::start`] accepts. Default 4 MiB; at most
    /// [`Config::MAX_COMMAND_BYTES`].
    pub max_command_bytes: usize,
    /// Most commands a leader holds that `start` accepted and its thread has not yet appended
    /// to its log: beyond, [`Raft::try_start`] refuses with [`StartError::Busy`] until the
    /// thread catches up. This is the backpressure a client faster than the cluster meets, and
    /// what bounds the memory of a leader whose thread is blocked (by a full apply channel,
    /// say). The queue is allocated whole when the node starts (56 bytes a command). Default
    /// 16 384; at most [`Config::MAX_QUEUED_PROPOSALS`].
    pub max_queued_proposals: usize,
    /// Seed of the node's random choices (election timeouts). `None` picks one at random.
    pub seed: Option<u64>,
    /// How long the node's thread looks for more work (yielding the core between looks) before
    /// it parks, after a round that moved its log or commit index. Waking a parked thread costs
    /// the waker a system call and the wakee up to tens of microseconds; a node under load finds
    /// its next message or proposal within this window and never parks. Idle nodes (heartbeats
    /// only) never spin. Default 50 µs; zero parks at once; at most [`Config::MAX_SPIN`] and
    /// below `heartbeat_interval` (a spinning node sends no heartbeats).
    pub spin: Duration,
    /// Whether the node writes to its storage from a thread of its own, so that it keeps
    /// answering messages and sending heartbeats while a write waits for the disk. `None`, the
    /// default, decides by the storage: a writer thread for one that syncs to a disk
    /// ([`Storage::blocks_on_disk`]), the node's own thread otherwise.
    pub dedicated_writer: Option<bool>,
    /// Most snapshot bytes in one InstallSnapshot message: a larger snapshot travels in chunks
    /// of this size, one at a time. Default 1 MiB.
    pub max_snapshot_chunk: usize,
    /// When a node applying through a [`StateMachine`] compacts its log. Default: never.
    pub compaction: Compaction,
    /// PreVote (Raft thesis §9.6): before starting an election, a node asks the others whether
    /// they would vote for it, and starts one only if a majority would (they would not while
    /// they hear from a leader). A node cut off from the cluster then keeps its term, and does
    /// not depose the leader when it comes back. Default off (the 6.824 tester counts RPCs of
    /// plain Raft); on in [`Config::production`].
    pub pre_vote: bool,
    /// CheckQuorum: a leader that heard from no majority of the cluster within
    /// `election_timeout_min` steps down, so a leader cut off from the majority stops leading
    /// within two of them; and a node that hears from its leader ignores RequestVote from
    /// others (leader stickiness). Default off; on in [`Config::production`]. Lease reads
    /// ([`Raft::read_lease`]) need it.
    pub check_quorum: bool,
    /// A new leader appends an entry with an empty command, so that what earlier leaders left
    /// uncommitted commits at once, and reads ([`Raft::read_index`]) need not wait for a
    /// client's command. The entry is applied like any other: a service that proposes empty
    /// commands of its own cannot tell them apart. Default off (the 6.824 tester expects each
    /// index to hold a command it proposed); on in [`Config::production`].
    pub leader_no_op: bool,
    /// The clock assumption of lease reads ([`Raft::read_lease`]): any two nodes' clocks
    /// advance at rates that differ by at most this many percent. A lease lasts
    /// `election_timeout_min × (100 − 2 × max_clock_drift_percent) / 100` from the start of a
    /// heartbeat round a majority answered. Default 5; at most 49.
    pub max_clock_drift_percent: u8,
}

impl Default for Config {
    /// The core's defaults ([`crate::core::CoreConfig::default`]) and those of the node thread.
    fn default() -> Self {
        let core = crate::core::CoreConfig::default();
        Self {
            heartbeat_interval: Duration::from_nanos(core.heartbeat_interval),
            election_timeout_min: Duration::from_nanos(core.election_timeout_min),
            election_timeout_max: Duration::from_nanos(core.election_timeout_max),
            max_append_entries: core.max_append_entries,
            max_append_bytes: core.max_append_bytes,
            max_inflight: core.max_inflight,
            max_inflight_bytes: core.max_inflight_bytes,
            commit_notify_delay: Duration::from_nanos(core.commit_notify_delay),
            max_command_bytes: 4 << 20,
            max_queued_proposals: 1 << 14,
            seed: None,
            spin: Duration::from_micros(50),
            dedicated_writer: None,
            max_snapshot_chunk: core.max_snapshot_chunk,
            compaction: Compaction::NEVER,
            pre_vote: core.pre_vote,
            check_quorum: core.check_quorum,
            leader_no_op: core.leader_no_op,
            max_clock_drift_percent: core.max_clock_drift_percent,
        }
    }
}

impl Config {
    /// The defaults with [`Config::pre_vote`], [`Config::check_quorum`] and
    /// [`Config::leader_no_op`] on: the settings for a cluster that serves clients, where a
    /// flaky node must not depose a healthy leader, a leader cut off from the majority must stop
    /// leading, and a new leader serves reads at once. The defaults leave them off only because
    /// the 6.824 tester's message counts and indices assume plain Raft.
    ///
    /// ```
    /// let config = zeroraft_engine::Config::production();
    /// assert!(config.pre_vote && config.check_quorum && config.leader_no_op);
    /// ```
    pub fn production() -> Self {
        Self {
            pre_vote: true,
            check_quorum: true,
            leader_no_op: true,
            ..Self::default()
        }
    }

    /// How long a lease lasts ([`Raft::read_lease`]) after the start of a heartbeat round a
    /// majority answered: `election_timeout_min × (100 − 2 × max_clock_drift_percent) / 100`.
    pub fn lease_duration(&self) -> Duration {
        Duration::from_nanos(self.core_config().lease_duration())
    }

    /// The shortest heartbeat interval accepted: more often, heartbeats alone are a message
    /// storm (a message per follower per interval) and the node's thread does little else.
    pub const MIN_HEARTBEAT: Duration = Duration::from_millis(1);
    /// The largest command accepted ([`Config::max_command_bytes`]): below 2 GiB, since the
    /// write-ahead log and the wire keep an entry's kind in the top bit of its 32-bit length.
    pub const MAX_COMMAND_BYTES: usize = (1 << 31) - 1;
    /// The most entries accepted in one AppendEntries.
    pub const MAX_APPEND_ENTRIES: usize = 1 << 20;
    /// The most AppendEntries accepted in flight to one follower.
    pub const MAX_INFLIGHT: usize = 1 << 16;
    /// The longest spin accepted before a node's thread parks.
    pub const MAX_SPIN: Duration = Duration::from_millis(10);
    /// The most proposals accepted in a leader's queue ([`Config::max_queued_proposals`]).
    pub const MAX_QUEUED_PROPOSALS: usize = 1 << 20;

    /// Checks the settings for node `me` of a cluster of `peers` nodes.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first setting that cannot work.
    pub fn validate(&self, me: usize, peers: usize) -> Result<(), ConfigError> {
        if peers == 0 {
            return Err(ConfigError::NoPeers);
        }
        if peers > crate::core::MAX_PEERS {
            return Err(ConfigError::TooManyPeers {
                peers,
                max: crate::core::MAX_PEERS,
            });
        }
        if me >= peers {
            return Err(ConfigError::NodeOutOfRange { me, peers });
        }
        if self.heartbeat_interval.is_zero() {
            return Err(ConfigError::Invalid(
                "heartbeat_interval must be above zero",
            ));
        }
        if self.heartbeat_interval < Self::MIN_HEARTBEAT {
            return Err(ConfigError::Invalid(
                "heartbeat_interval must be at least 1 ms: more often, heartbeats alone flood the \
                 network with a message per follower per interval",
            ));
        }
        if self.election_timeout_min >= self.election_timeout_max {
            return Err(ConfigError::Invalid(
                "election_timeout_min must be below election_timeout_max",
            ));
        }
        if self.heartbeat_interval >= self.election_timeout_min {
            return Err(ConfigError::Invalid(
                "heartbeat_interval must be below election_timeout_min",
            ));
        }
        if self.election_timeout_max > Duration::from_secs(3600) {
            return Err(ConfigError::Invalid(
                "election_timeout_max must be at most an hour",
            ));
        }
        if self.max_snapshot_chunk == 0 {
            return Err(ConfigError::Invalid(
                "max_snapshot_chunk must be above zero",
            ));
        }
        if self.compaction.every_entries == Some(0) {
            return Err(ConfigError::Invalid(
                "compaction.every_entries must be above zero (None for never)",
            ));
        }
        if self.max_append_entries == 0 || self.max_append_bytes == 0 || self.max_inflight == 0 {
            return Err(ConfigError::Invalid(
                "max_append_entries, max_append_bytes and max_inflight must be above zero",
            ));
        }
        if self.max_inflight_bytes == 0 {
            return Err(ConfigError::Invalid(
                "max_inflight_bytes must be above zero",
            ));
        }
        if self.max_command_bytes > Self::MAX_COMMAND_BYTES {
            return Err(ConfigError::Invalid(
                "max_command_bytes must be below 2 GiB (Config::MAX_COMMAND_BYTES): an entry's \
                 length gives its top bit to the entry's kind",
            ));
        }
        if self.max_append_entries > Self::MAX_APPEND_ENTRIES {
            return Err(ConfigError::Invalid(
                "max_append_entries must be at most 2^20 (Config::MAX_APPEND_ENTRIES)",
            ));
        }
        if self.max_inflight > Self::MAX_INFLIGHT {
            return Err(ConfigError::Invalid(
                "max_inflight must be at most 2^16 (Config::MAX_INFLIGHT): the leader keeps a \
                 ring of that many indices per follower",
            ));
        }
        if self.max_queued_proposals == 0 || self.max_queued_proposals > Self::MAX_QUEUED_PROPOSALS
        {
            return Err(ConfigError::Invalid(
                "max_queued_proposals must be above zero and at most 2^20 \
                 (Config::MAX_QUEUED_PROPOSALS)",
            ));
        }
        if self.commit_notify_delay >= self.election_timeout_min {
            return Err(ConfigError::Invalid(
                "commit_notify_delay must be below election_timeout_min",
            ));
        }
        if self.max_clock_drift_percent > 49 {
            return Err(ConfigError::Invalid(
                "max_clock_drift_percent must be at most 49: a lease shrinks by twice the drift",
            ));
        }
        if self.spin > Self::MAX_SPIN || self.spin >= self.heartbeat_interval {
            return Err(ConfigError::Invalid(
                "spin must be at most 10 ms (Config::MAX_SPIN) and below heartbeat_interval: a \
                 spinning node sends no heartbeats",
            ));
        }
        Ok(())
    }

    pub(crate) fn core_config(&self) -> crate::core::CoreConfig {
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        crate::core::CoreConfig {
            heartbeat_interval: nanos(self.heartbeat_interval),
            election_timeout_min: nanos(self.election_timeout_min),
            election_timeout_max: nanos(self.election_timeout_max),
            max_append_entries: self.max_append_entries,
            max_append_bytes: self.max_append_bytes,
            max_inflight: self.max_inflight,
            max_inflight_bytes: self.max_inflight_bytes,
            commit_notify_delay: nanos(self.commit_notify_delay),
            backtrack: crate::core::Backtrack::default(),
            max_snapshot_chunk: self.max_snapshot_chunk,
            pre_vote: self.pre_vote,
            check_quorum: self.check_quorum,
            leader_no_op: self.leader_no_op,
            max_clock_drift_percent: self.max_clock_drift_percent,
        }
    }
}

/// Why a node could not be created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A cluster needs at least one node.
    NoPeers,
    /// More nodes than the engine supports.
    TooManyPeers {
        /// Nodes asked for.
        peers: usize,
        /// Most supported.
        max: usize,
    },
    /// `me` is not a node of the cluster.
    NodeOutOfRange {
        /// The node id given.
        me: usize,
        /// Nodes in the cluster.
        peers: usize,
    },
    /// The endpoint belongs to another node or to a network of another size.
    EndpointMismatch {
        /// The endpoint's node id.
        endpoint_id: usize,
        /// The endpoint network's size.
        endpoint_nodes: usize,
    },
    /// A setting is out of range; the text says which.
    Invalid(&'static str),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoPeers => write!(f, "a cluster needs at least one node"),
            Self::TooManyPeers { peers, max } => {
                write!(f, "{peers} nodes asked for, at most {max} supported")
            }
            Self::NodeOutOfRange { me, peers } => write!(
                f,
                "node {me} is not in a cluster of {peers} nodes (ids 0..{peers})"
            ),
            Self::EndpointMismatch {
                endpoint_id,
                endpoint_nodes,
            } => write!(
                f,
                "the endpoint is node {endpoint_id} of a {endpoint_nodes}-node network, not the node being created"
            ),
            Self::Invalid(what) => write!(f, "invalid configuration: {what}"),
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_as_documented() {
        let ms = Duration::from_millis;
        let config = Config::default();
        let want = Config {
            heartbeat_interval: ms(100),
            election_timeout_min: ms(300),
            election_timeout_max: ms(600),
            max_append_entries: 4096,
            max_append_bytes: 1 << 20,
            max_inflight: 64,
            max_inflight_bytes: 8 << 20,
            commit_notify_delay: ms(2),
            max_command_bytes: 4 << 20,
            max_queued_proposals: 1 << 14,
            seed: None,
            spin: Duration::from_micros(50),
            dedicated_writer: None,
            max_snapshot_chunk: 1 << 20,
            compaction: Compaction::NEVER,
            pre_vote: false,
            check_quorum: false,
            leader_no_op: false,
            max_clock_drift_percent: 5,
        };
        assert_eq!(config, want);
        assert_eq!(config.core_config(), crate::core::CoreConfig::default());
    }

    #[test]
    fn production_config_is_the_default_with_pre_vote_check_quorum_and_no_op() {
        let production = Config::production();
        let want = Config {
            pre_vote: true,
            check_quorum: true,
            leader_no_op: true,
            ..Config::default()
        };
        assert_eq!(production, want);
        assert!(production.validate(0, 3).is_ok());
        assert_eq!(
            production.core_config(),
            crate::core::CoreConfig::production()
        );
    }

    #[test]
    fn a_command_limit_that_reaches_the_kind_bit_is_refused() {
        // (max_command_bytes, accepted)
        let cases = [
            (Config::MAX_COMMAND_BYTES, true),
            (Config::MAX_COMMAND_BYTES + 1, false),
            (usize::MAX, false),
        ];
        for (case, (max_command_bytes, accepted)) in cases.into_iter().enumerate() {
            let config = Config {
                max_command_bytes,
                ..Config::default()
            };
            assert_eq!(config.validate(0, 3).is_ok(), accepted, "case {case}");
        }
    }
}
