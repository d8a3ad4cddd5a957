//! Why a call on a node did not do what it asked: building it ([`BuildError`]), proposing
//! ([`StartError`]), reading ([`ReadError`]), transferring leadership ([`TransferError`]),
//! changing the membership ([`ChangeError`]).

use std::fmt;

use zeroraft_storage::StorageError;

use crate::core::{MembershipChangeError, MembershipError, RecoveredStateError};
#[cfg(doc)]
use crate::{Config, PendingRead, Raft};
use crate::{ConfigError, NodeFailure};

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
    pub(crate) fn into_config_error(self) -> ConfigError {
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

/// Why a membership change ([`Raft::change_membership`] and its shortcuts) did not complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeError {
    /// This node is not the leader.
    NotLeader {
        /// The leader this node knows of, if any.
        leader: Option<usize>,
    },
    /// Another change is under way (its configuration is not committed yet, or the cluster is
    /// joint), or another call on this node is waiting for one.
    InProgress,
    /// A leadership transfer is under way.
    TransferInProgress,
    /// The change names a node this node has no link to (its id is not below `peers`).
    UnknownNode(usize),
    /// A node to become a voter is not a learner holding the leader's committed log: add it as
    /// a learner first, and promote it once it has caught up.
    NotCaughtUp(usize),
    /// The target is no configuration the cluster can move to: no voter left, or a voter made a
    /// learner in one change (remove it first, add it back as a learner after).
    Invalid(MembershipError),
    /// The node stopped leading before the change was done. The change may still be completed
    /// by the next leader, or not: look at [`Raft::membership`] of the cluster's nodes.
    LeadershipLost,
    /// The leader holds as many proposals as it queues ([`Config::max_queued_proposals`]).
    Busy,
    /// The node was killed.
    Killed,
    /// The node stopped on its own after a failure it could not go on from.
    Failed(NodeFailure),
}

impl From<MembershipChangeError> for ChangeError {
    fn from(e: MembershipChangeError) -> Self {
        match e {
            MembershipChangeError::NotLeader => Self::NotLeader { leader: None },
            MembershipChangeError::ChangeInProgress => Self::InProgress,
            MembershipChangeError::TransferInProgress => Self::TransferInProgress,
            MembershipChangeError::UnknownNode(id) => Self::UnknownNode(id),
            MembershipChangeError::NotCaughtUp(id) => Self::NotCaughtUp(id),
            MembershipChangeError::Invalid(e) => Self::Invalid(e),
        }
    }
}

impl fmt::Display for ChangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotLeader { leader: Some(l) } => write!(f, "not the leader; node {l} is"),
            Self::NotLeader { leader: None } => write!(f, "not the leader; no leader known"),
            Self::InProgress => write!(f, "a membership change is under way"),
            Self::TransferInProgress => write!(f, "a leadership transfer is under way"),
            Self::UnknownNode(id) => write!(f, "node {id} is not a node this one has a link to"),
            Self::NotCaughtUp(id) => write!(
                f,
                "node {id} is not a learner holding the committed log; add it as a learner \
                 first"
            ),
            Self::Invalid(e) => write!(f, "{e}"),
            Self::LeadershipLost => write!(
                f,
                "the node stopped leading before the change was done; it may or may not complete"
            ),
            Self::Busy => write!(f, "the leader's proposal queue is full; try again"),
            Self::Killed => write!(f, "the node was killed"),
            Self::Failed(failure) => write!(f, "the node stopped: {failure}"),
        }
    }
}

impl std::error::Error for ChangeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Failed(failure) => Some(failure),
            Self::Invalid(e) => Some(e),
            _ => None,
        }
    }
}
