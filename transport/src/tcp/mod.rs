//! The network between processes: the same [`Endpoint`] over TCP.
//!
//! A node started with [`TcpNetwork::start`] gets an [`Endpoint`] that the engine drives exactly
//! as it drives one of the in-memory [`Network`](crate::Network): `send` hands a message over
//! without waiting, received messages wait in the same inbox, and the same
//! [`Waker`](crate::Waker)s wake its owner. What differs is underneath:
//!
//! - **One connection per pair of nodes**, dialed by the node with the lower id, accepted by the
//!   other, and used in both directions. A dialer that loses its connection dials again with
//!   exponential backoff (from [`TcpConfig::backoff_min`] to [`TcpConfig::backoff_max`]); an
//!   acceptor takes the newest connection from a peer and drops the one it replaces, as a
//!   restarted peer's old connection is dead.
//! - **An address book that can change.** [`TcpConfig::peers`] gives an address per id, or
//!   `None` for an id not known yet; [`TcpNetwork::set_peer`] sets or clears one while the node
//!   runs. A peer's link (its writer thread and queue, and the reader of its connection) starts
//!   when its address is first known and stops when it is cleared; a node refuses connections
//!   from a peer it has no address for. The slots of unknown ids cost a pointer each, and
//!   sending does the same work as with a fixed list.
//! - **A handshake** names the cluster, both nodes and the encoding version
//!   before any message passes. A node of another cluster, a node that is not the one dialed, or
//!   an encoding this build does not speak is refused with a `tracing` warning on both sides.
//! - **Mutual TLS, if configured** ([`TcpConfig::tls`], [`PeerTls`]): every node proves with a
//!   certificate of the cluster's CA that it is the node it says it is ([`node_name`]), before
//!   its hello is judged; a certificate of another CA, an expired one, or one naming another node
//!   or cluster is refused before any message is read. Without it, anyone who can reach the peer
//!   port can speak as any node.
//! - **Accepting cannot be blocked.** The acceptor only accepts: each new connection's handshake
//!   runs on a thread of its own, within a deadline for the whole handshake
//!   ([`TcpConfig::handshake_timeout`]), and at most [`TcpConfig::max_handshakes`] run at once;
//!   beyond, a new connection is closed at once. Connections that send nothing, or a byte now and
//!   then, thus hold a handshake slot for one deadline at most and never delay a peer's
//!   connection behind them. The warnings anyone who can reach the port can provoke are
//!   rate-limited ([`WarnLimit`]).
//! - **Frames**: each message is its [`Codec`] encoding behind a 4-byte little-endian length. A
//!   frame longer than [`TcpConfig::max_frame`] or one that does not decode drops the connection
//!   with a warning; nothing a peer sends can make a node panic or allocate more than
//!   `max_frame` for it.
//! - **Per peer, a writer thread and a bounded queue.** `send` pushes into the peer's queue of
//!   [`TcpConfig::queue_capacity`] messages and wakes the writer only if it sleeps. The writer
//!   encodes everything queued into one buffer and writes it with one system call, so a busy
//!   link carries many messages per call. On an idle plaintext link (the queue empty, the
//!   writer not writing) a small message is written by the sender itself, with a write that
//!   never waits: that saves a thread's wake-up per message where latency counts, and whatever
//!   the socket does not take at once is carried over to the writer, ahead of anything queued
//!   after it. A message that finds the queue full, or finds the
//!   peer unreachable, is dropped and counted, as a real network loses packets: Raft resends
//!   what matters, and a slow or cut-off peer costs a bounded amount of memory, never more.
//! - **Per connection, a reader thread** that reads into a buffer it reuses, cuts frames out of
//!   it as [`Bytes`](bytes::Bytes) that share the buffer (payloads are not copied), decodes them
//!   and pushes them into the inbox. A full inbox drops the message and counts it.
//!
//! In steady state nothing is allocated per message by the transport: the queues are allocated
//! when the node starts, the send buffer is reused, and a receive buffer is replaced only when
//! the messages decoded from it are still held (the engine's log keeps the entries' payloads)
//! once it is full, which costs one allocation per [`READ_BUFFER`] bytes received. The same
//! holds with TLS: once the handshakes are done, the writer encrypts into a buffer it reuses and
//! the reader decrypts in place in one (rustls runs the handshakes only).
//!
//! # Orderings
//!
//! A peer's queue is an inbox (the structure behind every [`Endpoint`]), whose eventcount wake-up is model-checked with
//! loom. The flags the threads share (`stop`, a connection's serial number, `broken`, the
//! counters) are read and written with `Relaxed` except where they hand something over: an
//! accepted stream is handed to the writer under a `Mutex` (cold path, once per connection) and
//! announced with the inbox's wake-up, whose fences order it; a connection's TLS session is
//! split into halves its writer and its reader own, which share nothing; `stop` is stored before every
//! thread is woken and joined, and joining orders everything the threads did before the handle
//! returns.

mod certs;
mod clients;
mod handshake;
mod limit;
mod link;
mod tls;

pub use certs::{Authority, Issued};
pub use clients::{ClientRole, ClientTls, ServiceTls, TlsStream, admin_name, client_name};
pub use limit::WarnLimit;
pub use tls::{PeerTls, TlsError, node_name};

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::{BufMut, BytesMut};

use crate::inbox::Inbox;
use crate::{Codec, Endpoint, Message, NodeId, Route, sync};

/// Bytes each read asks the kernel for, and the size of a fresh receive buffer.
pub const READ_BUFFER: usize = 64 << 10;

/// The encoded messages a writer puts into one system call, at most (one larger message is
/// written alone).
pub const WRITE_BATCH: usize = 256 << 10;

/// A node's place in a cluster of processes, and the transport's limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpConfig {
    /// This node's id: an index of `peers`.
    pub id: NodeId,
    /// The cluster's id. Nodes of different clusters refuse each other's connections.
    pub cluster: u64,
    /// Where to reach each node, by id, or `None` for an id whose address is not known (yet):
    /// no link to it runs until [`TcpNetwork::set_peer`] gives one. The length is the cluster's
    /// capacity, the ids `0..peers.len()` it may ever use, which every node of the cluster must
    /// agree on (the handshake checks it). This node's own entry is not dialed (it may be its
    /// listening address). At least one entry, at most [`crate::MAX_NODES`].
    pub peers: Vec<Option<SocketAddr>>,
    /// Messages the inbox holds; beyond, received messages are dropped. Default 16 384; at most
    /// [`crate::MAX_INBOX_CAPACITY`].
    pub inbox_capacity: usize,
    /// Messages waiting to be written to one peer; beyond, sent messages are dropped. Default
    /// 4 096.
    pub queue_capacity: usize,
    /// The longest frame accepted from a peer, in bytes; a longer one drops the connection.
    /// Default 64 MiB: above the engine's largest AppendEntries (`max_append_bytes`, 1 MiB by
    /// default) and snapshot chunk.
    pub max_frame: usize,
    /// How long dialing a peer may take. Default 1 s.
    pub connect_timeout: Duration,
    /// The first wait before dialing a peer again, doubled after each failure. Default 10 ms.
    pub backoff_min: Duration,
    /// The longest wait between two dials of a peer. Default 1 s.
    pub backoff_max: Duration,
    /// How long a peer may take for its whole part of the handshake (a deadline, not a timeout
    /// per read). Default 2 s.
    pub handshake_timeout: Duration,
    /// Handshakes of accepted connections under way at once, at most; a connection accepted
    /// beyond is closed at once. Default 64.
    pub max_handshakes: usize,
    /// Mutual TLS on every link ([`PeerTls`]: the cluster's CA, this node's certificate and
    /// key), or `None` for plaintext, which anyone who can reach the peer port can impersonate
    /// a node on. Default `None`.
    pub tls: Option<PeerTls>,
}

impl TcpConfig {
    /// Node `id` of cluster `cluster`, whose nodes are reached at `peers`, with the default
    /// limits.
    pub fn new(id: NodeId, cluster: u64, peers: Vec<SocketAddr>) -> Self {
        Self::with_book(id, cluster, peers.into_iter().map(Some).collect())
    }

    /// Node `id` of cluster `cluster` whose ids are `0..book.len()`, reached at the addresses
    /// `book` knows (`None` for the others), with the default limits.
    pub fn with_book(id: NodeId, cluster: u64, book: Vec<Option<SocketAddr>>) -> Self {
        Self {
            id,
            cluster,
            peers: book,
            inbox_capacity: 1 << 14,
            queue_capacity: 1 << 12,
            max_frame: 64 << 20,
            connect_timeout: Duration::from_secs(1),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(2),
            max_handshakes: 64,
            tls: None,
        }
    }
}

/// Why a [`TcpNetwork`] could not start.
#[derive(Debug)]
pub enum TcpError {
    /// No peers, or more than [`crate::MAX_NODES`].
    Nodes(usize),
    /// `id` is not an index of `peers`.
    NoSuchNode {
        /// The id given.
        id: NodeId,
        /// Nodes in `peers`.
        nodes: usize,
    },
    /// A capacity of 0, or an inbox above [`crate::MAX_INBOX_CAPACITY`]; the text says which.
    Limit(&'static str),
    /// The listener could not be set up, or a thread could not be started.
    Io(std::io::Error),
    /// The TLS settings cannot be used.
    Tls(TlsError),
}

impl std::fmt::Display for TcpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Nodes(n) => write!(
                f,
                "a cluster of {n} nodes: 1 to {} are supported",
                crate::MAX_NODES
            ),
            Self::NoSuchNode { id, nodes } => {
                write!(f, "node id {id} is not one of the {nodes} peers")
            }
            Self::Limit(what) => write!(f, "{what}"),
            Self::Io(e) => write!(f, "cannot start the TCP transport: {e}"),
            Self::Tls(e) => write!(f, "cannot set up TLS between nodes: {e}"),
        }
    }
}

impl std::error::Error for TcpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::Tls(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for TcpError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// What an [`Endpoint`] over TCP sends through.
pub(crate) trait Outbound<M>: Send + Sync {
    fn send(&self, to: NodeId, msg: M);
}

/// Counters of one peer link, as seen from this node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Whether a connection to the peer is up (its handshake done).
    pub connected: bool,
    /// Connections to the peer established since the node started.
    pub connections: u64,
    /// Messages written to the peer.
    pub sent: u64,
    /// Bytes written to the peer, framing included.
    pub bytes_sent: u64,
    /// System calls that wrote them: `sent / writes` is how many messages one call carried.
    pub writes: u64,
    /// Messages received from the peer and put in the inbox.
    pub received: u64,
    /// Bytes received from the peer, framing included.
    pub bytes_received: u64,
    /// Messages to the peer dropped: its queue was full, or no connection was up.
    pub dropped: u64,
    /// Messages from the peer dropped because the inbox was full.
    pub inbox_overflow: u64,
    /// Connections dropped for a bad frame, or refused or failed in their handshake (TLS
    /// included).
    pub rejected: u64,
}

#[derive(Default)]
struct Counters {
    connected: AtomicBool,
    connections: AtomicU64,
    sent: AtomicU64,
    bytes_sent: AtomicU64,
    writes: AtomicU64,
    received: AtomicU64,
    bytes_received: AtomicU64,
    dropped: AtomicU64,
    inbox_overflow: AtomicU64,
    rejected: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> LinkStats {
        LinkStats {
            connected: self.connected.load(Relaxed),
            connections: self.connections.load(Relaxed),
            sent: self.sent.load(Relaxed),
            bytes_sent: self.bytes_sent.load(Relaxed),
            writes: self.writes.load(Relaxed),
            received: self.received.load(Relaxed),
            bytes_received: self.bytes_received.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            inbox_overflow: self.inbox_overflow.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
        }
    }
}

/// One peer, as the threads of this node share it: made when its address is first known.
struct Peer<M> {
    id: NodeId,
    /// Where to dial the peer; `None` once the address is cleared (cold path: read at each dial).
    addr: Mutex<Option<SocketAddr>>,
    /// Whether the peer's link is to run: its address is known. Cleared, the writer closes its
    /// connection and ends; its acceptor refuses the peer's connections.
    active: AtomicBool,
    /// Whether a writer runs for the peer, and the parker writers sleep on (the running writer
    /// holds it and gives it back when it ends). A writer ends only under this lock and only if
    /// `active` is clear, so a link started again is never left without a writer.
    writer: Mutex<WriterState>,
    /// Messages for the peer, waiting for its writer; the writer sleeps on it.
    queue: Arc<Inbox<M>>,
    /// A connection the acceptor took from this peer, for the writer to adopt (cold path: once
    /// per connection), with the acceptance number of the newest connection handed over.
    /// Invariant: a stream is only put here if it was accepted after every one put before, so a
    /// slow handshake never replaces a newer connection with an older one.
    accepted: Mutex<(u64, Option<link::Link>)>,
    /// Whether `accepted` holds a stream (so the writer need not lock to find out).
    has_accepted: AtomicBool,
    /// The serial number of the connection the writer uses; a reader whose connection fails
    /// stores its serial in `broken`.
    serial: AtomicU64,
    broken: AtomicU64,
    counters: Counters,
    /// The connection as a sender may write to it itself while the writer is idle.
    direct: Mutex<Direct>,
    /// Whether `direct.carry` holds bytes (so the writer need not lock to find out).
    carried: AtomicBool,
}

/// What a sender needs to write a message to a peer's connection itself, instead of waking the
/// writer thread: on an idle link that saves a thread's wake-up per message, and the writer
/// stays asleep. The writer holds the lock from taking messages off the queue to writing them,
/// and a sender only tries the lock and writes only if the queue is empty and nothing is
/// carried over, so messages leave in the order they were sent.
#[derive(Default)]
pub(super) struct Direct {
    /// A handle on the writer's stream while it has a plaintext connection (`None` with TLS: a
    /// session's sending half is the writer's alone).
    pub(super) stream: Option<std::net::TcpStream>,
    /// What a sender could not write without waiting (the socket's buffer was full): the
    /// writer sends it before anything else. At most one message.
    pub(super) carry: BytesMut,
    /// Where a sender encodes its message, reused.
    scratch: BytesMut,
    /// When a sender last found the link idle and tried to write itself.
    last_try: Option<std::time::Instant>,
}

/// A sender writes itself only if the last time it found the link idle was at least this long
/// ago: messages that follow each other faster than that go through the writer, which puts
/// them into one system call (written one by one they would cost a call each, and the
/// node's thread the time of each).
const DIRECT_GAP: Duration = Duration::from_micros(50);

/// The largest message (by [`Message::wire_size`]) a sender writes itself: larger ones, which
/// a busy leader sends, go through the writer thread, so that their system call's copying is
/// not the node's to do.
const DIRECT_MAX: usize = 16 << 10;

impl<M: Message + Codec> Peer<M> {
    /// Writes `msg` to the peer's connection from the calling thread, if it is small
    /// ([`DIRECT_MAX`]) and the link plaintext and idle (the queue empty, nothing carried over,
    /// the writer not writing, and the last try [`DIRECT_GAP`] ago at least); what the socket
    /// does not take at once is carried over to the writer, which is woken for it. False if the
    /// message is still to be queued.
    fn send_direct(&self, msg: &M, max_frame: usize) -> bool {
        // A busy link's queue is seen without the lock; it is looked at again under it.
        if msg.wire_size() > DIRECT_MAX || self.queue.has_messages() {
            return false;
        }
        let Ok(mut direct) = self.direct.try_lock() else {
            return false;
        };
        let Direct {
            stream: Some(stream),
            carry,
            scratch,
            last_try,
        } = &mut *direct
        else {
            return false;
        };
        if !carry.is_empty() || self.queue.has_messages() {
            return false;
        }
        let now = std::time::Instant::now();
        if last_try
            .replace(now)
            .is_some_and(|last| now < last + DIRECT_GAP)
        {
            return false;
        }
        scratch.clear();
        scratch.put_u32_le(0);
        msg.encode(scratch);
        let len = scratch.len() - 4;
        if len > max_frame || len > u32::MAX as usize {
            // The writer drops it, and says so.
            return false;
        }
        scratch[..4].copy_from_slice(&(len as u32).to_le_bytes());
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        let sent = match socket2::SockRef::from(&*stream).send_with_flags(scratch, flags) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            // A broken connection: the writer finds out and handles the message as it handles
            // every other.
            Err(_) => return false,
        };
        if sent < scratch.len() {
            carry.extend_from_slice(&scratch[sent..]);
            self.carried.store(true, Relaxed);
            self.queue.wake();
        }
        let counters = &self.counters;
        counters.sent.fetch_add(1, Relaxed);
        counters.bytes_sent.fetch_add(scratch.len() as u64, Relaxed);
        counters.writes.fetch_add(1, Relaxed);
        true
    }
}

/// Whether a peer's writer runs; see [`Peer::writer`].
struct WriterState {
    running: bool,
    parker: Option<sync::Parker>,
}

/// What the threads of one node share.
struct Shared<M> {
    config: TcpConfig,
    /// The node's own inbox, where readers put what they receive.
    inbox: Arc<Inbox<M>>,
    /// By id, up to the cluster's capacity; empty at this node's own id and until an address of
    /// the peer is first known. Invariant: a slot, once set, stays (its link stops and starts
    /// with [`Peer::active`]), so a reference to a peer lives as long as `Shared`.
    peers: Box<[OnceLock<Peer<M>>]>,
    stop: AtomicBool,
    warnings: link::Warnings,
    /// The TLS configurations, if the links use TLS.
    tls: Option<tls::Tls>,
}

impl<M: Message + Codec> Outbound<M> for Shared<M> {
    fn send(&self, to: NodeId, msg: M) {
        if to == self.config.id {
            // A node's message to itself needs no network.
            let _ = self.inbox.push(to, msg);
            return;
        }
        let Some(peer) = self.peers.get(to).and_then(OnceLock::get) else {
            return;
        };
        if !peer.counters.connected.load(Relaxed) {
            peer.counters.dropped.fetch_add(1, Relaxed);
        } else if peer.send_direct(&msg, self.config.max_frame) {
            // Written.
        } else if peer.queue.push(self.config.id, msg).is_err() {
            peer.counters.dropped.fetch_add(1, Relaxed);
        }
    }
}

/// A node's transport over TCP: the owner's handle on its threads and counters. Dropping it (or
/// [`TcpNetwork::shutdown`]) closes every connection and joins every thread; the [`Endpoint`]
/// then sends nothing and receives nothing.
///
/// Its address book can change while it runs ([`TcpNetwork::set_peer`]): a peer's link (its
/// writer thread, and its connection's reader) starts when the peer's address is first known
/// and stops when the address is cleared. A cluster whose addresses never change does exactly
/// what it did with a fixed list.
pub struct TcpNetwork<M: Message + Codec> {
    shared: Arc<Shared<M>>,
    listen: SocketAddr,
    /// The acceptor's thread.
    threads: Vec<JoinHandle<()>>,
    /// Each peer's writer thread, by id, while one runs or until it is joined.
    writers: Mutex<Vec<Option<JoinHandle<()>>>>,
    stopped: AtomicBool,
}

impl<M: Message + Codec> TcpNetwork<M> {
    /// Starts node `config.id`'s transport: accepts peers' connections on `listener`, dials the
    /// known peers with higher ids, and returns the handle with the node's [`Endpoint`].
    ///
    /// # Errors
    ///
    /// [`TcpError`] if the configuration cannot work, or the listener or a thread cannot be set
    /// up.
    pub fn start(
        config: TcpConfig,
        listener: TcpListener,
    ) -> Result<(Self, Endpoint<M>), TcpError> {
        let nodes = config.peers.len();
        if nodes == 0 || nodes > crate::MAX_NODES {
            return Err(TcpError::Nodes(nodes));
        }
        if config.id >= nodes {
            return Err(TcpError::NoSuchNode {
                id: config.id,
                nodes,
            });
        }
        if config.inbox_capacity == 0 || config.inbox_capacity > crate::MAX_INBOX_CAPACITY {
            return Err(TcpError::Limit(
                "the inbox capacity must be between 1 and MAX_INBOX_CAPACITY",
            ));
        }
        if config.queue_capacity == 0 {
            return Err(TcpError::Limit(
                "a peer's queue must hold at least one message",
            ));
        }
        if config.max_handshakes == 0 {
            return Err(TcpError::Limit(
                "at least one handshake must be allowed under way",
            ));
        }
        if config.max_frame < 64 {
            return Err(TcpError::Limit(
                "the largest frame must be at least 64 bytes",
            ));
        }
        let tls = match &config.tls {
            Some(settings) => Some(tls::Tls::new(settings, config.cluster).map_err(TcpError::Tls)?),
            None => None,
        };
        let listen = listener.local_addr()?;
        let parker = sync::Parker::new();
        let inbox = Arc::new(Inbox::new(config.inbox_capacity, parker.unparker().clone()));
        let shared = Arc::new(Shared {
            config: config.clone(),
            inbox: inbox.clone(),
            peers: (0..nodes).map(|_| OnceLock::new()).collect(),
            stop: AtomicBool::new(false),
            warnings: link::Warnings::default(),
            tls,
        });
        let mut network = Self {
            shared: shared.clone(),
            listen,
            threads: Vec::new(),
            writers: Mutex::new((0..nodes).map(|_| None).collect()),
            stopped: AtomicBool::new(false),
        };
        {
            let shared = shared.clone();
            let handle = spawn(
                format!("zeroraft-tcp-accept-{}", config.id),
                Box::new(move || link::accept(&shared, &listener)),
            )?;
            network.threads.push(handle);
        }
        for (id, addr) in config.peers.iter().enumerate() {
            if let Some(addr) = *addr
                && id != config.id
            {
                network.start_link(id, addr)?;
            }
        }
        let endpoint = Endpoint {
            id: config.id,
            nodes,
            route: Route::Tcp(shared),
            inbox,
            parker,
        };
        Ok((network, endpoint))
    }

    /// The address this node accepts connections on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listen
    }

    /// The ids this transport can link to: `0..capacity`.
    pub fn capacity(&self) -> usize {
        self.shared.peers.len()
    }

    /// Sets (or, with `None`, clears) where to reach node `peer`. An address for a peer without
    /// a running link starts its link (a writer thread, which dials the peer if this node has
    /// the lower id, and accepts its connections otherwise); a new address for a running link
    /// is used from its next dial on; clearing stops the link (its connection is closed, what is
    /// queued for the peer dropped) and this node then refuses the peer's connections. This
    /// node's own id and ids beyond the capacity are ignored, as is any call once the transport
    /// stopped.
    ///
    /// # Errors
    ///
    /// The writer thread could not be started.
    pub fn set_peer(&self, peer: NodeId, addr: Option<SocketAddr>) -> Result<(), TcpError> {
        if peer == self.shared.config.id
            || peer >= self.shared.peers.len()
            || self.stopped.load(Relaxed)
        {
            return Ok(());
        }
        match addr {
            Some(addr) => self.start_link(peer, addr),
            None => {
                if let Some(p) = self.shared.peers[peer].get() {
                    *p.addr.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    if p.active.swap(false, Relaxed) {
                        tracing::info!(
                            node = self.shared.config.id,
                            peer,
                            "peer's address cleared; its link stops"
                        );
                    }
                    p.queue.wake();
                }
                Ok(())
            }
        }
    }

    /// Where node `peer` is reached, if its address is known.
    pub fn peer_addr(&self, peer: NodeId) -> Option<SocketAddr> {
        let p = self.shared.peers.get(peer)?.get()?;
        *p.addr.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn start_link(&self, id: NodeId, addr: SocketAddr) -> Result<(), TcpError> {
        let config = &self.shared.config;
        let peer = self.shared.peers[id].get_or_init(|| {
            let parker = sync::Parker::new();
            let queue = Arc::new(Inbox::new(config.queue_capacity, parker.unparker().clone()));
            Peer {
                id,
                addr: Mutex::new(None),
                active: AtomicBool::new(false),
                writer: Mutex::new(WriterState {
                    running: false,
                    parker: Some(parker),
                }),
                queue,
                accepted: Mutex::new((0, None)),
                has_accepted: AtomicBool::new(false),
                serial: AtomicU64::new(0),
                broken: AtomicU64::new(0),
                counters: Counters::default(),
                direct: Mutex::new(Direct::default()),
                carried: AtomicBool::new(false),
            }
        });
        *peer.addr.lock().unwrap_or_else(|e| e.into_inner()) = Some(addr);
        peer.active.store(true, Relaxed);
        let mut writers = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        let mut state = peer.writer.lock().unwrap_or_else(|e| e.into_inner());
        if state.running {
            // The writer runs on (it sees `active` set before it may end); its next dial takes
            // the new address.
            return Ok(());
        }
        state.running = true;
        drop(state);
        if let Some(old) = writers[id].take() {
            // It has ended, or is about to return.
            let _ = old.join();
        }
        tracing::debug!(node = config.id, peer = id, %addr, "starting the link to a peer");
        let shared = self.shared.clone();
        let handle = spawn(
            format!("zeroraft-tcp-{}-{}", config.id, id),
            Box::new(move || link::write(&shared, id)),
        );
        match handle {
            Ok(handle) => {
                writers[id] = Some(handle);
                Ok(())
            }
            Err(e) => {
                peer.writer
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .running = false;
                Err(e.into())
            }
        }
    }

    /// Counters of the link to node `peer` (all zero for this node itself, an id out of range or
    /// a peer whose address was never known).
    pub fn link(&self, peer: NodeId) -> LinkStats {
        match self.shared.peers.get(peer).and_then(OnceLock::get) {
            Some(p) => p.counters.snapshot(),
            None => LinkStats::default(),
        }
    }

    /// Closes every connection and joins every thread of this node's transport.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if self.stopped.swap(true, Relaxed) {
            return;
        }
        self.shared.stop.store(true, Relaxed);
        for peer in self.shared.peers.iter().filter_map(OnceLock::get) {
            peer.queue.wake();
        }
        link::unblock_accept(self.listen);
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
        let writers = std::mem::take(self.writers.get_mut().unwrap_or_else(|e| e.into_inner()));
        for handle in writers.into_iter().flatten() {
            let _ = handle.join();
        }
    }
}

fn spawn(name: String, f: Box<dyn FnOnce() + Send>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name)
        .stack_size(256 << 10)
        .spawn(f)
}

impl<M: Message + Codec> Drop for TcpNetwork<M> {
    fn drop(&mut self) {
        self.stop();
    }
}

impl<M: Message + Codec> std::fmt::Debug for TcpNetwork<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpNetwork")
            .field("id", &self.shared.config.id)
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
