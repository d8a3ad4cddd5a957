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
mod config;
pub mod core;
pub mod driver;
mod error;
mod failure;
pub mod metrics;
mod runtime;
mod status;
mod sync;

use bytes::Bytes;

pub use crate::core::{
    MAX_PEERS, Membership, MembershipError, Message, ProgressState, RecoveredStateError, Role,
};

pub use codec::WIRE_VERSION;
pub use config::{Compaction, Config, ConfigError};
pub use error::{BuildError, ChangeError, ReadError, StartError, TransferError};
pub use failure::{NodeFailure, RestoreError};

pub use runtime::{Builder, PendingRead, Raft, SnapshotView, StateMachine, WeakRaft};
pub use status::{MemberRole, MembershipStatus, PeerStatus, Status};
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
