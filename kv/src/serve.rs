//! One node of a replicated key-value service in its own process: what `zeroraft serve` runs.
//!
//! A [`ServeNode`] puts together the pieces the other modules provide: the node's raft state in
//! a write-ahead log ([`FileStorage`]) in its data directory, the TCP transport to the other
//! nodes ([`TcpNetwork`]), the engine ([`Raft`], with [`Config::production`]: PreVote,
//! CheckQuorum and the leader no-op), the key-value state machine ([`KvState`]) and its client
//! server ([`KvServer`]). Stopping it ([`ServeNode::shutdown`]) closes the client server, stops
//! the node (which closes its log) and then the transport. The client server's `Status` answers
//! carry the transport's link counters ([`KvServer::set_links`]), so that a dashboard reached
//! through the client port (`zeroraft monitor --connect`) shows the links between processes.
//!
//! A node listens for its peers on its own entry of [`NodeOptions::peers`] and for clients on
//! [`NodeOptions::listen`]. The data directory belongs to one node of one cluster: its identity
//! file holds the cluster id, the node id and the members the cluster was bootstrapped with, and
//! opening it as another node, or with other members, fails.
//!
//! # Members that change
//!
//! A node is built for every id a cluster may use (`MAX_PEERS`, 64), with the configuration it
//! started with: nodes `0..peers.len()` voting, or, for a node that joined a running cluster
//! ([`ServeNode::initialize_joined`]), the configuration it was added under, in which it does not
//! vote. Its transport knows the addresses of the nodes it started with and learns the others
//! from the replicated address book ([`crate::members`]): each change the node applies is handed
//! to the transport ([`TcpNetwork::set_peer`]), whose link to a node starts when its address is
//! first known and stops when the node is removed. A node removed from the cluster that still
//! runs stays quiet: it does not campaign once it holds a configuration without it (PreVote and
//! CheckQuorum keep it from disturbing the others before that), and the others refuse its
//! connections once its removal is applied.
//!
//! # Bootstrap on purpose
//!
//! A data directory is made only by [`ServeNode::initialize`] (what `zeroraft init` runs), once
//! per node of a new cluster. [`ServeNode::start`] never makes one: a missing or empty directory
//! (a wiped disk, a volume that failed to mount and left an empty mount point) is refused with
//! [`ServeError::NotInitialized`]. A node that lost its state must not come back as a new voter:
//! it may have voted in a term or acknowledged entries, and would vote again or count toward a
//! majority for entries it no longer holds, and an acknowledged write could be lost.

use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use zeroraft_engine::storage::wal::{FileStorage, Identity, WalOptions};
use zeroraft_engine::{BuildError, Compaction, Config, Membership, Message, Raft, StorageError};
use zeroraft_transport::tcp::{PeerTls, TcpConfig, TcpError, TcpNetwork};

use crate::members::MemberChange;
use crate::observe::ObserveServer;
use crate::{KvServer, KvState, ServerOptions};

/// How to start one node of a cluster of processes.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// This node's id: its index in `peers`.
    pub id: usize,
    /// The cluster's id, the same on every node. A node refuses connections from another
    /// cluster, and its data directory remembers which cluster it belongs to.
    pub cluster: u64,
    /// Where each node listens for the other nodes, by id. This node listens on its own entry
    /// (which may be an unspecified address such as `0.0.0.0:7000`).
    pub peers: Vec<SocketAddr>,
    /// Where this node listens for clients.
    pub listen: SocketAddr,
    /// Where this node serves its metrics and health over HTTP, if anywhere
    /// ([`crate::observe`]). The first node of a process to serve them installs the process's
    /// metrics recorder. Default `None`.
    pub metrics: Option<SocketAddr>,
    /// The node's data directory, made by [`ServeNode::initialize`].
    pub data: PathBuf,
    /// Keep the raft state in memory instead of `data` (which is then not used): the node
    /// forgets everything when its process ends, and a restarted node rejoins as a new, empty
    /// one, which breaks Raft's safety if it had voted or acknowledged entries. For measuring
    /// the service without a disk only. Default false.
    pub in_memory: bool,
    /// The client server's settings: how it answers `Get`s, its connection limit and idle
    /// timeout, ...
    pub server: ServerOptions,
    /// The engine's settings (the node's seed is set from its id when `None`).
    pub config: Config,
    /// Mutual TLS on the links between nodes ([`TcpConfig::tls`]); `None` for plaintext.
    /// Default `None`.
    pub peer_tls: Option<PeerTls>,
}

impl NodeOptions {
    /// Node `id` of `peers`, serving clients on `listen` and keeping its state in `data`, with
    /// [`Config::production`], ReadIndex reads, and [`NodeOptions::COMPACTION`].
    pub fn new(
        id: usize,
        cluster: u64,
        peers: Vec<SocketAddr>,
        listen: SocketAddr,
        data: PathBuf,
    ) -> Self {
        Self {
            id,
            cluster,
            peers,
            listen,
            data,
            metrics: None,
            in_memory: false,
            server: ServerOptions::default(),
            config: Config {
                compaction: Self::COMPACTION,
                ..Config::production()
            },
            peer_tls: None,
        }
    }

    /// When a node compacts its log by default: every 100 000 entries applied, and whenever
    /// its log holds more than 64 MiB of commands. Commands may be as large as
    /// [`Config::max_command_bytes`] (4 MiB), so a bound on entries alone lets the log, which
    /// a restart replays and a lagging follower is sent, grow to hundreds of gigabytes; 64 MiB
    /// is a few seconds of replay or of sending, and a snapshot that often costs the node's
    /// thread little (the state is serialized on a thread of its own).
    pub const COMPACTION: Compaction = Compaction {
        every_entries: Some(100_000),
        above_bytes: Some(64 << 20),
    };
}

/// Why a node could not start.
#[derive(Debug)]
pub enum ServeError {
    /// The node's id is not an index of the peer list.
    NoSuchNode {
        /// The id given.
        id: usize,
        /// Nodes in the peer list.
        nodes: usize,
    },
    /// The data directory was never initialized, or lost what it held.
    NotInitialized {
        /// The directory.
        path: PathBuf,
    },
    /// [`ServeNode::initialize`] was given a directory that is not empty.
    NotEmpty {
        /// The directory.
        path: PathBuf,
    },
    /// The members the data directory records are not the peers given.
    OtherMembers {
        /// The members the directory records.
        recorded: Vec<String>,
        /// The peers given.
        given: Vec<String>,
    },
    /// The data directory cannot be used.
    Storage(StorageError),
    /// An address cannot be listened on.
    Listen {
        /// What the address is for.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The system's reason.
        error: std::io::Error,
    },
    /// The transport could not start.
    Transport(TcpError),
    /// The engine could not start.
    Build(BuildError),
    /// The client server could not start.
    Server(std::io::Error),
    /// The metrics endpoint could not start.
    Metrics(String),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchNode { id, nodes } => write!(
                f,
                "--id {id} names no node of the {nodes} in --peers (ids start at 0)"
            ),
            Self::NotInitialized { path } => write!(
                f,
                "{} is not the data directory of a node: it is missing or holds no IDENTITY. A new \
                 cluster's nodes are initialized on purpose with `zeroraft init`. If this node's data \
                 was lost, do not initialize it again: it would come back as a new voter, could vote \
                 twice in a term and count toward majorities for entries it no longer holds, and \
                 acknowledged writes could be lost. Restore the directory from a backup, or rebuild the \
                 cluster (see docs/serve.md, \"When a node's disk is lost\")",
                path.display()
            ),
            Self::NotEmpty { path } => write!(
                f,
                "{} is not empty: a node's data directory is initialized only once, in an empty or new \
                 directory",
                path.display()
            ),
            Self::OtherMembers { recorded, given } => write!(
                f,
                "the data directory records the members {} but --peers gives {}: every node is \
                 started with the peers it was initialized with",
                recorded.join(","),
                given.join(",")
            ),
            Self::Storage(e) => write!(f, "cannot use the data directory: {e}"),
            Self::Listen { what, addr, error } => {
                write!(f, "cannot listen for {what} on {addr}: {error}")
            }
            Self::Transport(e) => e.fmt(f),
            Self::Build(e) => write!(f, "cannot start the node: {e}"),
            Self::Server(e) => write!(f, "cannot start the client server: {e}"),
            Self::Metrics(e) => write!(f, "cannot serve metrics: {e}"),
        }
    }
}

impl std::error::Error for ServeError {}

/// A running node: its client server, engine and transport.
pub struct ServeNode {
    server: KvServer,
    /// The metrics and health endpoint, if the node serves one.
    observe: Option<ObserveServer>,
    /// The transport. The client server reads its links through a weak handle: the last
    /// handle dropped (this one, unless a status request is reading it) stops it.
    network: Option<Arc<TcpNetwork<Message>>>,
    peer_addr: SocketAddr,
    /// Set once the node applies its own removal from the cluster.
    removed: Arc<AtomicBool>,
}

/// The members of a cluster as its data directories record them: the peers' addresses.
fn members(peers: &[SocketAddr]) -> Vec<String> {
    peers.iter().map(SocketAddr::to_string).collect()
}

/// Makes the data directory of node `options.id`, which must be empty or missing, recording the
/// cluster's id, the node's id and `members` (as the directory's identity and members files).
fn create_data_dir(options: &NodeOptions, members: Vec<String>) -> Result<(), ServeError> {
    let holds_something = std::fs::read_dir(&options.data)
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false);
    if holds_something {
        return Err(ServeError::NotEmpty {
            path: options.data.clone(),
        });
    }
    let identity = Identity {
        cluster: options.cluster,
        node: options.id as u64,
    };
    let wal = WalOptions {
        create: true,
        members: Some(members),
        ..WalOptions::default()
    };
    FileStorage::open(&options.data, identity, wal).map_err(ServeError::Storage)?;
    Ok(())
}

/// What a node that joined a running cluster started from, as `zeroraft init --join` learned it
/// from the cluster and its data directory records it: the configuration it was added under
/// (in which it is a learner) and the peer addresses of the nodes of that configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joined {
    /// The voters.
    pub voters: Vec<usize>,
    /// The learners (this node among them).
    pub learners: Vec<usize>,
    /// Where each node is reached, by id (this node's own entry is where it listens).
    pub peers: Vec<(usize, SocketAddr)>,
}

/// The peer addresses the `Member` commands among `entries` set, in log order (later ones
/// win); removals are left to the applied book.
fn logged_addresses(entries: &[zeroraft_engine::storage::Entry]) -> Vec<(usize, SocketAddr)> {
    entries
        .iter()
        .filter(|e| e.kind == zeroraft_engine::storage::EntryKind::Command)
        .filter_map(|e| match crate::command::CommandRef::decode(&e.command) {
            Ok(crate::command::CommandRef::Member {
                change: MemberChange::Set { id, addrs },
                ..
            }) => Some((usize::try_from(id).ok()?, addrs.peer)),
            _ => None,
        })
        .collect()
}

/// The first member line of a joined node's identity file.
const JOINED: &str = "joined";

impl Joined {
    /// The members lines of the identity file: `joined`, `voters=0,1,2`, `learners=3`, then
    /// `ID=ADDRESS` for each peer.
    fn record(&self) -> Vec<String> {
        let list = |ids: &[usize]| {
            ids.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut lines = vec![
            JOINED.to_owned(),
            format!("voters={}", list(&self.voters)),
            format!("learners={}", list(&self.learners)),
        ];
        lines.extend(self.peers.iter().map(|(id, addr)| format!("{id}={addr}")));
        lines
    }

    /// Reads what [`Joined::record`] wrote; `None` for the members of a node the cluster was
    /// bootstrapped with (or anything else).
    fn parse(lines: &[String]) -> Option<Self> {
        let (first, rest) = lines.split_first()?;
        if first != JOINED || rest.len() < 2 {
            return None;
        }
        let ids = |line: &str, name: &str| -> Option<Vec<usize>> {
            let list = line.strip_prefix(name)?.strip_prefix('=')?;
            if list.is_empty() {
                return Some(Vec::new());
            }
            list.split(',').map(|id| id.parse().ok()).collect()
        };
        let voters = ids(&rest[0], "voters")?;
        let learners = ids(&rest[1], "learners")?;
        let peers = rest[2..]
            .iter()
            .map(|line| {
                let (id, addr) = line.split_once('=')?;
                Some((id.parse().ok()?, addr.parse().ok()?))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            voters,
            learners,
            peers,
        })
    }
}

/// The ids a node is built for: every id a cluster may use.
pub const CAPACITY: usize = zeroraft_engine::MAX_PEERS;

impl ServeNode {
    /// Initializes the data directory of node `options.id` of a new cluster: makes
    /// `options.data` (it must not exist, or be empty) and records there the cluster's id, the
    /// node's id and the members (`options.peers`). Run once per node, when the cluster is
    /// bootstrapped; [`ServeNode::start`] then starts from it, as often as the node restarts.
    ///
    /// # Errors
    ///
    /// [`ServeError::NoSuchNode`] for an id that is not a position in the peers,
    /// [`ServeError::NotEmpty`] for a directory that holds anything, [`ServeError::Storage`]
    /// if it cannot be made.
    pub fn initialize(options: &NodeOptions) -> Result<(), ServeError> {
        if options.id >= options.peers.len() {
            return Err(ServeError::NoSuchNode {
                id: options.id,
                nodes: options.peers.len(),
            });
        }
        create_data_dir(options, members(&options.peers))
    }

    /// Initializes the data directory of node `options.id`, which joins the running cluster
    /// `options.cluster` as `joined` says (what `zeroraft init --join` runs once it has asked
    /// the cluster): records the cluster's id, the node's id and `joined`. `options.peers` is
    /// not used. The node must have been added to the cluster as a learner first, so that it
    /// starts without a vote.
    ///
    /// # Errors
    ///
    /// [`ServeError::NoSuchNode`] if `joined` does not make the node a learner with an address,
    /// [`ServeError::NotEmpty`] and [`ServeError::Storage`] as for [`ServeNode::initialize`].
    pub fn initialize_joined(options: &NodeOptions, joined: &Joined) -> Result<(), ServeError> {
        if !joined.learners.contains(&options.id)
            || !joined.peers.iter().any(|(id, _)| *id == options.id)
        {
            return Err(ServeError::NoSuchNode {
                id: options.id,
                nodes: joined.peers.len(),
            });
        }
        create_data_dir(options, joined.record())
    }

    /// Opens the data directory (which [`ServeNode::initialize`] made), binds both addresses
    /// and starts the node.
    ///
    /// # Errors
    ///
    /// [`ServeError`] naming the step that failed; nothing is left running.
    /// [`ServeError::NotInitialized`] for a missing or empty data directory, which is never made
    /// here, and [`ServeError::OtherMembers`] if it records other members than the peers given.
    pub fn start(options: NodeOptions) -> Result<Self, ServeError> {
        let mut joined = None;
        let storage =
            if options.in_memory {
                None
            } else {
                let identity = Identity {
                    cluster: options.cluster,
                    node: options.id as u64,
                };
                let files = FileStorage::open(&options.data, identity, WalOptions::default())
                    .map_err(|e| match e {
                        StorageError::Missing { path } | StorageError::Uninitialized { path } => {
                            ServeError::NotInitialized { path }
                        }
                        other => ServeError::Storage(other),
                    })?;
                let given = members(&options.peers);
                joined = files.members().and_then(Joined::parse);
                if let Some(recorded) = files.members()
                    && joined.is_none()
                    && recorded != given.as_slice()
                {
                    return Err(ServeError::OtherMembers {
                        recorded: recorded.to_vec(),
                        given,
                    });
                }
                if joined.is_some() && !options.peers.is_empty() {
                    return Err(ServeError::OtherMembers {
                        recorded: files.members().unwrap_or_default().to_vec(),
                        given,
                    });
                }
                Some(files)
            };
        // The nodes the node starts with, and the configuration.
        let (initial, membership) = match &joined {
            Some(j) => (
                j.peers.clone(),
                Membership::new(j.voters.iter().copied(), j.learners.iter().copied()),
            ),
            None => (
                options.peers.iter().copied().enumerate().collect(),
                Membership::new(0..options.peers.len(), []),
            ),
        };
        let nodes = initial.iter().map(|(id, _)| id + 1).max().unwrap_or(0);
        let book_ok = initial.iter().all(|(id, _)| *id < CAPACITY);
        let (Some(&(_, peer_addr)), true, Ok(membership)) = (
            initial.iter().find(|(id, _)| *id == options.id),
            book_ok,
            membership,
        ) else {
            return Err(ServeError::NoSuchNode {
                id: options.id,
                nodes,
            });
        };
        let listen = |what, addr| {
            TcpListener::bind(addr).map_err(|error| ServeError::Listen { what, addr, error })
        };
        let peer_listener = listen("peers", peer_addr)?;
        let peer_addr = peer_listener.local_addr().unwrap_or(peer_addr);
        let client_listener = listen("clients", options.listen)?;
        // The recorder must be installed before the node and its server register their
        // metrics.
        let metrics = match options.metrics {
            Some(addr) => Some((
                listen("metrics", addr)?,
                crate::observe::recorder().map_err(ServeError::Metrics)?,
            )),
            None => None,
        };
        let mut book = vec![None; CAPACITY];
        for &(id, addr) in &initial {
            book[id] = Some(addr);
        }
        // The addresses its log names, applied or not: a node restarting knows the members
        // added since it joined before a leader tells it what is committed (only the lower id
        // of two dials, so a node that did not know a newer member's address would never be
        // reached). Knowing an address early is harmless; the applied book has the last word.
        for (id, addr) in storage
            .as_ref()
            .and_then(FileStorage::recovered)
            .map(|r| logged_addresses(&r.entries))
            .unwrap_or_default()
        {
            if id != options.id && id < CAPACITY {
                book[id] = Some(addr);
            }
        }
        let mut tcp = TcpConfig::with_book(options.id, options.cluster, book);
        tcp.tls = options.peer_tls.clone();
        let (network, endpoint) =
            TcpNetwork::start(tcp, peer_listener).map_err(ServeError::Transport)?;
        let network = Arc::new(network);
        let state = Arc::new(KvState::new());
        let removed = Arc::new(AtomicBool::new(false));
        {
            // The address book reaches the transport as the node applies it, on its thread.
            let network = Arc::downgrade(&network);
            let removed = removed.clone();
            let me = options.id as u64;
            state.on_member(move |change| {
                let Some(network) = network.upgrade() else {
                    return;
                };
                let (id, addr) = match *change {
                    MemberChange::Set { id, addrs } => (id, Some(addrs.peer)),
                    MemberChange::Retire { id } => (id, None),
                };
                if id == me && addr.is_none() {
                    tracing::error!(node = me, "this node was removed from the cluster");
                    removed.store(true, Relaxed);
                }
                if let Err(e) = network.set_peer(id as usize, addr) {
                    tracing::warn!(node = me, peer = id, error = %e, "cannot start a peer's link");
                }
            });
        }
        let config = Config {
            seed: options.config.seed.or(Some(fastrand::u64(..))),
            ..options.config
        };
        let builder =
            Raft::builder(config, options.id, CAPACITY, endpoint).initial_membership(membership);
        // Without a data directory the node keeps its raft state in the engine's own memory
        // only: what it would keep in a `MemStorage` beside it dies with the process all the
        // same, and copying every entry there costs the node's thread a quarter of its time
        // under load.
        let builder = match storage {
            Some(files) => builder.storage(files),
            None => builder,
        };
        let raft = builder
            .start_with_state_machine(state.machine())
            .map_err(ServeError::Build)?;
        let server = match KvServer::start(raft.clone(), state, client_listener, options.server) {
            Ok(server) => server,
            Err(e) => {
                raft.kill();
                return Err(ServeError::Server(e));
            }
        };
        server.set_cluster(
            options.cluster,
            initial
                .iter()
                .map(|&(id, addr)| (id as u64, addr))
                .collect(),
        );
        let link = {
            let network = Arc::downgrade(&network);
            move |peer| {
                network
                    .upgrade()
                    .map(|network| network.link(peer))
                    .unwrap_or_default()
            }
        };
        server.set_links(nodes, link.clone());
        let observe = match metrics {
            Some((listener, handle)) => {
                let raft = server.raft().clone();
                match ObserveServer::start(listener, handle, raft, nodes, link) {
                    Ok(observe) => Some(observe),
                    Err(e) => {
                        server.raft().kill();
                        return Err(ServeError::Metrics(e.to_string()));
                    }
                }
            }
            None => None,
        };
        Ok(Self {
            server,
            observe,
            network: Some(network),
            peer_addr,
            removed,
        })
    }

    /// Where clients reach this node.
    pub fn client_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Where this node serves its metrics and health, if it does.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.observe.as_ref().map(ObserveServer::local_addr)
    }

    /// Where the other nodes reach this node.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// Whether this node has applied its own removal from the cluster: it no longer belongs to
    /// it, and should be stopped. A node removed while it was cut off may never learn it.
    pub fn removed(&self) -> bool {
        self.removed.load(Relaxed)
    }

    /// The engine.
    pub fn raft(&self) -> &Raft {
        self.server.raft()
    }

    /// The transport's counters of the link to node `peer`.
    pub fn link(&self, peer: usize) -> zeroraft_transport::tcp::LinkStats {
        self.network
            .as_ref()
            .map(|n| n.link(peer))
            .unwrap_or_default()
    }

    /// Stops serving clients, stops the node (its log is closed) and closes its connections.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(mut observe) = self.observe.take() {
            observe.shutdown();
        }
        self.server.shutdown();
        self.server.raft().kill();
        if let Some(network) = self.network.take() {
            // With the client server's threads joined this is the last handle. Should a status
            // request still hold one, the transport stops when that one is dropped.
            match Arc::try_unwrap(network) {
                Ok(network) => network.shutdown(),
                Err(network) => drop(network),
            }
        }
    }
}

impl Drop for ServeNode {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log of a few large commands is compacted as surely as one of many small ones.
    #[test]
    fn a_node_compacts_by_bytes_as_well_as_entries() {
        let options = NodeOptions::new(
            0,
            1,
            vec![([127, 0, 0, 1], 7000).into()],
            ([127, 0, 0, 1], 8000).into(),
            PathBuf::from("unused"),
        );
        let compaction = options.config.compaction;
        assert_eq!(compaction, NodeOptions::COMPACTION);
        let cases = [
            // (entries since the last snapshot, bytes the log holds, due)
            (99_999, 64 << 20, false),
            (100_000, 0, true),
            // Sixteen commands of 4 MiB and one more byte.
            (17, (64 << 20) + 1, true),
        ];
        for (case, (entries, bytes, due)) in cases.into_iter().enumerate() {
            assert_eq!(compaction.due(entries, bytes), due, "case {case}");
        }
    }
}
