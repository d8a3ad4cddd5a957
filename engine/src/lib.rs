//! zeroraft-engine: Raft leader election and log replication (Figure 2 of the extended Raft
//! paper) as a sans-IO [`core`] driven by one thread per node.
//!
//! A [`Raft`] handle is what an embedding program holds. [`Raft::start`] proposes a command and
//! returns at once, without taking a lock or waiting for the node's thread; committed commands
//! come back, in log order, as [`ApplyMsg`]s on the channel given to [`Raft::new`].
//! [`Raft::get_state`] and [`Raft::status`] read what the node last published, also without
//! blocking it.
//!
//! ```
//! use bytes::Bytes;
//! use zeroraft_engine::{Config, Network, Raft};
//! use zeroraft_transport::NetworkConfig;
//!
//! // A single-node cluster commits on its own.
//! let network = Network::new(NetworkConfig::new(1)).unwrap();
//! network.connect(0);
//! let endpoint = network.endpoint(0, 7).unwrap();
//! let (apply_tx, apply_rx) = crossbeam_channel::unbounded();
//! let ms = std::time::Duration::from_millis;
//! let config = Config {
//!     heartbeat_interval: ms(5),
//!     election_timeout_min: ms(10),
//!     election_timeout_max: ms(20),
//!     ..Config::default()
//! };
//! let raft = Raft::new(config, 0, 1, endpoint, apply_tx).unwrap();
//! while !raft.get_state().1 {
//!     std::thread::sleep(std::time::Duration::from_millis(5)); // waiting for the election
//! }
//! let (index, _term, is_leader) = raft.start(Bytes::from_static(b"hello"));
//! assert!(is_leader);
//! let applied = apply_rx.recv().unwrap();
//! assert_eq!(applied.index(), index);
//! assert_eq!(applied.command().map(|c| &c[..]), Some(&b"hello"[..]));
//! ```

#![forbid(unsafe_code)]

mod codec;
pub mod core;
pub mod driver;
mod failure;
mod runtime;
mod sync;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use smallvec::SmallVec;

pub use crate::core::{Message, ProgressState, RecoveredStateError, Role};

pub use codec::WIRE_VERSION;
pub use failure::{NodeFailure, RestoreError};

pub use runtime::{Builder, PendingRead, Raft, StateMachine, WeakRaft};
pub use zeroraft_storage as storage;
pub use zeroraft_storage::{MemStorage, NoStorage, Storage, StorageError};

/// The network zeroraft nodes talk over: the in-memory transport carrying engine messages.
pub type Network = zeroraft_transport::Network<Message>;
/// One node's attachment to a [`Network`].
pub type Endpoint = zeroraft_transport::Endpoint<Message>;

impl zeroraft_transport::Message for Message {
    fn wire_size(&self) -> usize {
        Message::wire_size(self)
    }
    fn is_request(&self) -> bool {
        Message::is_request(self)
    }
}

/// What a node delivers on its apply channel, in log order: committed commands, and snapshots
/// that replace the service's state. Indices never go back: after a snapshot up to index `i`,
/// the next command is at `i + 1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyMsg {
    /// A committed command, each index exactly once per run of the node.
    Command {
        /// The command's log index (the first is 1).
        index: u64,
        /// The term in which the command was proposed.
        term: u64,
        /// The command as given to [`Raft::start`].
        command: Bytes,
    },
    /// A snapshot to replace the service's state with: one the leader sent because this node
    /// lacked entries it had compacted away, or the one the node restarted from. It covers every
    /// command up to `index`.
    Snapshot {
        /// The last index it covers.
        index: u64,
        /// The term of that entry.
        term: u64,
        /// The service's state, as some node's service gave it to [`Raft::snapshot`].
        data: Bytes,
    },
}

impl ApplyMsg {
    /// The command's index, or the last index the snapshot covers.
    pub fn index(&self) -> u64 {
        match self {
            Self::Command { index, .. } | Self::Snapshot { index, .. } => *index,
        }
    }

    /// The term of the command, or of the snapshot's last entry.
    pub fn term(&self) -> u64 {
        match self {
            Self::Command { term, .. } | Self::Snapshot { term, .. } => *term,
        }
    }

    /// The command, if this is one.
    pub fn command(&self) -> Option<&Bytes> {
        match self {
            Self::Command { command, .. } => Some(command),
            Self::Snapshot { .. } => None,
        }
    }
}

/// When a node whose commands are applied by a [`StateMachine`] compacts its log on its own:
/// it asks the state machine for a snapshot ([`StateMachine::snapshot`]) once either bound is
/// reached, and drops the log up to the last applied index. Nodes delivering on a channel
/// compact when their service calls [`Raft::snapshot`].
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
    /// After the leader's commit index advances, how long it waits before sending it to
    /// followers that received no AppendEntries since (under load, the next batch carries it).
    /// Bounds how far a follower's applied state trails the leader's when traffic stops.
    /// Default 2 ms; below `election_timeout_min`.
    pub commit_notify_delay: Duration,
    /// Largest command [`Raft::start`] accepts. Default 4 MiB.
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

/// Why a node could not be built with [`Raft::builder`].
#[derive(Debug)]
pub enum BuildError {
    /// A setting, the cluster or the endpoint cannot work.
    Config(ConfigError),
    /// The storage could not be read back.
    Storage(StorageError),
    /// The storage holds a state no node of this cluster can have written.
    Inconsistent(RecoveredStateError),
    /// The node's thread (or its storage writer's) could not be started.
    Thread(std::io::Error),
}

impl BuildError {
    /// The [`ConfigError`] of a node built without storage, which can fail in no other way but
    /// a thread that cannot start (reported as [`ConfigError::Invalid`]).
    fn into_config_error(self) -> ConfigError {
        match self {
            Self::Config(e) => e,
            Self::Storage(_) | Self::Inconsistent(_) => {
                ConfigError::Invalid("the storage could not be recovered")
            }
            Self::Thread(_) => ConfigError::Invalid("the node's thread could not be started"),
        }
    }
}

impl From<ConfigError> for BuildError {
    fn from(e: ConfigError) -> Self {
        Self::Config(e)
    }
}

impl From<StorageError> for BuildError {
    fn from(e: StorageError) -> Self {
        Self::Storage(e)
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(e) => e.fmt(f),
            Self::Storage(e) => write!(f, "cannot recover the node's state: {e}"),
            Self::Inconsistent(why) => write!(f, "the storage holds an impossible state: {why}"),
            Self::Thread(e) => write!(f, "cannot start the node's thread: {e}"),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Config(e) => Some(e),
            Self::Storage(e) => Some(e),
            Self::Inconsistent(e) => Some(e),
            Self::Thread(e) => Some(e),
        }
    }
}

/// Why [`Raft::try_start`] did not accept a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartError {
    /// This node is not the leader. `leader` is the node it last heard lead, if any.
    NotLeader {
        /// This node's current term.
        term: u64,
        /// The leader this node knows of, if any.
        leader: Option<usize>,
    },
    /// The command is larger than [`Config::max_command_bytes`].
    TooLarge {
        /// The command's size.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The leader already holds [`Config::max_queued_proposals`] commands its thread has not
    /// appended yet: the cluster is behind its clients (or the node's thread is blocked). Try
    /// again once earlier commands are applied.
    Busy {
        /// The configured maximum.
        limit: usize,
    },
    /// The node was killed.
    Killed,
    /// The node stopped on its own after a failure it could not go on from (its storage
    /// failed, its state machine panicked or could not restore a snapshot): what happened.
    Failed(NodeFailure),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotLeader {
                term,
                leader: Some(l),
            } => write!(f, "not the leader in term {term}; node {l} is"),
            Self::NotLeader { term, leader: None } => {
                write!(f, "not the leader in term {term}; no leader known")
            }
            Self::TooLarge { len, max } => {
                write!(f, "command of {len} bytes exceeds the maximum of {max}")
            }
            Self::Busy { limit } => write!(
                f,
                "{limit} commands are already waiting to be appended; try again once the \
                 leader has caught up"
            ),
            Self::Killed => write!(f, "the node was killed"),
            Self::Failed(failure) => write!(f, "the node stopped: {failure}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Failed(failure) => Some(failure),
            _ => None,
        }
    }
}

/// Why a linearizable read ([`Raft::read_index`], [`Raft::read_lease`]) was not confirmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadError {
    /// This node is not the leader, or stopped leading before it could confirm the read.
    /// `leader` is the node it last heard lead, if any: ask it.
    NotLeader {
        /// The leader this node knows of, if any.
        leader: Option<usize>,
    },
    /// [`Raft::MAX_PENDING_READS`] reads are already waiting on this node (a leader that
    /// cannot reach a majority confirms none).
    Busy {
        /// The limit.
        limit: usize,
    },
    /// [`PendingRead::wait_timeout`] gave up; the read may still be confirmed later.
    Timeout,
    /// The node was killed.
    Killed,
    /// The node stopped on its own: what happened.
    Failed(NodeFailure),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotLeader { leader: Some(l) } => write!(f, "not the leader; node {l} is"),
            Self::NotLeader { leader: None } => write!(f, "not the leader; no leader known"),
            Self::Busy { limit } => write!(
                f,
                "{limit} reads are already waiting; try again once the leader confirms them"
            ),
            Self::Timeout => write!(f, "the read was not confirmed in time"),
            Self::Killed => write!(f, "the node was killed"),
            Self::Failed(failure) => write!(f, "the node stopped: {failure}"),
        }
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Failed(failure) => Some(failure),
            _ => None,
        }
    }
}

/// Why [`Raft::transfer_leadership`] did not start a transfer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferError {
    /// This node is not the leader.
    NotLeader {
        /// The leader this node knows of, if any.
        leader: Option<usize>,
    },
    /// The target is this node, or not a node of the cluster.
    BadTarget {
        /// The target asked for.
        target: usize,
    },
    /// The node was killed or stopped.
    Killed,
}

impl fmt::Display for TransferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotLeader { leader: Some(l) } => write!(f, "not the leader; node {l} is"),
            Self::NotLeader { leader: None } => write!(f, "not the leader; no leader known"),
            Self::BadTarget { target } => {
                write!(f, "node {target} is not another node of the cluster")
            }
            Self::Killed => write!(f, "the node was killed or stopped"),
        }
    }
}

impl std::error::Error for TransferError {}

/// The leader's view of one follower, as published in [`Status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    /// The follower's node id.
    pub id: usize,
    /// Highest index known replicated on it.
    pub match_index: u64,
    /// Next index to send it.
    pub next_index: u64,
    /// Probe or Replicate.
    pub state: ProgressState,
    /// AppendEntries in flight to it.
    pub inflight: usize,
}

/// A node's state as last published by its thread. Snapshots are immutable and cheap to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The node's id.
    pub id: usize,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: u64,
    /// The leader it knows of in that term.
    pub leader: Option<usize>,
    /// Highest committed index it knows.
    pub commit_index: u64,
    /// Highest index it has applied (sent on the apply channel).
    pub last_applied: u64,
    /// Index of its last log entry.
    pub last_log_index: u64,
    /// Highest index its storage has made durable (equal to `last_log_index` once a write
    /// completes; behind it while one is under way).
    pub durable_index: u64,
    /// The last index its snapshot covers (0 if it has none): the log holds the entries after it.
    pub snapshot_index: u64,
    /// Entries its log holds (after the snapshot).
    pub log_entries: u64,
    /// Bytes of commands its log holds.
    pub log_bytes: u64,
    /// Snapshots it installed from a leader.
    pub snapshots_installed: u64,
    /// Writes to its storage (one per round in which its state changed: group commit).
    pub syncs: u64,
    /// Time spent in those writes, in all.
    pub sync_time: Duration,
    /// Why the node stopped on its own, if it did (a storage failure, a panic on its thread),
    /// as an operator reads it: the `Display` of [`Raft::failure`], or what a remote node said.
    pub failure: Option<Arc<str>>,
    /// Term of its last log entry.
    pub last_log_term: u64,
    /// When leader: one entry per follower. Empty otherwise.
    pub peers: SmallVec<[PeerStatus; 8]>,
    /// Elections it started.
    pub elections_started: u64,
    /// Elections it won.
    pub elections_won: u64,
    /// Times it stopped being leader.
    pub step_downs: u64,
    /// Messages it received.
    pub messages_in: u64,
    /// Messages it sent.
    pub messages_out: u64,
    /// Whether the node was killed (its thread has ended or is ending).
    pub killed: bool,
    /// When leader: the node it is handing its leadership to, while it is
    /// ([`Raft::transfer_leadership`]).
    pub transfer_target: Option<usize>,
    /// When leader: whether it holds a lease for reads ([`Raft::read_lease`]).
    pub lease: bool,
    /// Reads it confirmed as leader.
    pub reads_confirmed: u64,
    /// Of those, the ones confirmed under its lease.
    pub lease_reads: u64,
    /// Leadership transfers it started, and of those the ones it gave up.
    pub transfers_started: u64,
    /// See `transfers_started`.
    pub transfers_abandoned: u64,
}

impl Status {
    fn initial(id: usize) -> Self {
        Self {
            id,
            role: Role::Follower,
            term: 0,
            leader: None,
            commit_index: 0,
            last_applied: 0,
            last_log_index: 0,
            durable_index: 0,
            snapshot_index: 0,
            log_entries: 0,
            log_bytes: 0,
            snapshots_installed: 0,
            syncs: 0,
            sync_time: Duration::ZERO,
            failure: None,
            last_log_term: 0,
            peers: SmallVec::new(),
            elections_started: 0,
            elections_won: 0,
            step_downs: 0,
            messages_in: 0,
            messages_out: 0,
            killed: false,
            transfer_target: None,
            lease: false,
            reads_confirmed: 0,
            lease_reads: 0,
            transfers_started: 0,
            transfers_abandoned: 0,
        }
    }
}

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
}
