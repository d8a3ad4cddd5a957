//! [`KvServer`]: serves the client protocol ([`crate::protocol`]) of one node over TCP.
//!
//! One thread accepts connections; each connection gets a thread of its own (at most
//! [`ServerOptions::max_connections`]; beyond, the connection is answered with `Overloaded` and
//! closed, and clients retry), which reads its requests and starts each at once, and a second
//! that answers them in order, one response per request. A client may pipeline: send many
//! requests before reading the answers (up to 1 024 under way per connection; beyond, the
//! server reads no more until it has answered some).
//!
//! - `Register` is proposed to the node ([`Raft::try_start`]), stamped with the server's clock
//!   and carrying [`ServerOptions::sessions`]; once the node applies it, the answer is
//!   `Registered` with its index, the session's id.
//! - `Put`/`Append` are proposed the same way, after checking their `ack` against their `seq`.
//!   The thread waits until the node has applied the index the command was given, then answers
//!   with what applying it came to ([`crate::session`]): `Ok` only if the request was applied,
//!   then or before; `Stale` or `SessionExpired` if its session refused it; `WrongLeader` if
//!   another leader's entry took that index (the client retries elsewhere; a retry of a request
//!   that was applied after all is answered as it was, and not applied twice).
//! - `Get` reads as [`ServerOptions::read_mode`] says; by default through ReadIndex, without its
//!   session. Through the log, it is a request of its session like a write, answered with the
//!   value it read when it was applied.
//! - `Status` answers with the node's full Raft status, and its transport's links once the
//!   server knows where to read them ([`KvServer::set_links`]); to an ordinary client over TLS,
//!   with the compact fields only.
//! - `Transfer` asks the node to hand its leadership over ([`Raft::transfer_leadership`]); over
//!   TLS, only for the operator's certificate ([`ClientRole::Admin`]): others are answered
//!   `Forbidden`.
//! - `Members` answers with the cluster's members as this node knows them; `AddMember`,
//!   `Promote` and `RemoveMember` change them on the leader, blocking the connection's reader
//!   until the change is committed (see [`crate::members`]): `AddMember` commits the node's
//!   addresses, then adds it as a learner; `RemoveMember` removes it from the configuration, then
//!   commits that its id is removed for good. Each may be sent again after a failure: what is
//!   done already is not done twice. Over TLS, all four are the operator's.
//!
//! # TLS
//!
//! With [`ServerOptions::tls`], every connection is mutual TLS: the client proves with a
//! certificate of the cluster's CA that it is a client or the operator
//! ([`zeroraft_transport::tcp::ServiceTls`]); a connection without a certificate, with another
//! CA's, an expired one or one that names no client of this cluster is closed after its
//! handshake fails, before any request is read. The handshake runs on the connection's own
//! thread, never on the accepting one, and must be done within
//! [`ServerOptions::handshake_timeout`] however the client spreads its bytes out; at most
//! [`ServerOptions::max_handshakes`] are under way at once (beyond, a new connection is closed
//! at once), so that connections that never finish a handshake hold a place for one deadline
//! at most. A connection refused for the connection limit is closed without an answer: its
//! client has no session to read `Overloaded` in.
//!
//! A frame that is not a well-formed request (truncated, oversized, garbage) ends its
//! connection, with a `tracing` warning; nothing a client sends can panic the server.
//!
//! [`KvServer::shutdown`] (or dropping the server) closes every connection and joins every
//! thread. Waits inside a request check every few milliseconds whether the server is stopping or
//! the node was killed, so they end promptly too.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::SessionOptions;
use crate::command::{Op, RequestRef, encode_member, encode_register, encode_request_in};
use crate::members::{MAX_NODE_ID, MemberAddrs, MemberChange};
use crate::metrics::{RequestKind, RequestTally, ServerMetrics};
use crate::protocol::{
    self, FrameError, MAX_FRAME, MAX_UNACKNOWLEDGED, MAX_VALUE, MemberInfo, MembersInfo,
    NodeStatus, Request, Response, WriteRef,
};
use crate::session::{Answer, Lookup};
use crate::state::{EntryCheck, KvState, Settled, WaitEnd};
use zeroraft_engine::{ChangeError, PendingRead, Raft, ReadError, Role, StartError, TransferError};
use zeroraft_transport::tcp::{ClientRole, LinkStats, ServiceTls, WarnLimit};

use crate::stream::Stream;

/// How a server answers `Get`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadMode {
    /// Linearizable, without writing to the log: the leader confirms its leadership with a
    /// heartbeat round ([`Raft::read_index`]) and reads once it has applied up to the read
    /// index.
    #[default]
    ReadIndex,
    /// Linearizable under a clock assumption: as `ReadIndex`, but confirmed at once while the
    /// leader holds a lease ([`Raft::read_lease`]).
    Lease,
    /// Linearizable, through the log: a `Get` is a command, committed and applied like a write,
    /// and answered from the state right after it applied.
    Log,
    /// **Not linearizable, on purpose.** Any node, leader or follower, answers from the state it
    /// has applied, without any check: a follower that is behind, or a deposed leader cut off
    /// from the cluster, returns stale values. It exists only so that tests can show that a
    /// linearizability checker catches stale reads; never use it to serve clients.
    UnsafeLocal,
}

/// Settings of a [`KvServer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerOptions {
    /// How `Get`s are answered. Default [`ReadMode::ReadIndex`].
    pub read_mode: ReadMode,
    /// How long a request waits for its command to be applied (or its read to be confirmed)
    /// before it is answered with `Timeout`. Default 2 s.
    pub request_timeout: Duration,
    /// Most connections served at once; more are answered with [`Response::Overloaded`] and
    /// closed (a [`crate::KvClient`] then tries again, or another node, until its operation's
    /// timeout). Each connection costs two threads. Default 256.
    pub max_connections: usize,
    /// Largest request frame body accepted: a longer length prefix closes the connection.
    /// Default [`MAX_FRAME`].
    pub max_frame: usize,
    /// A connection that sends nothing for this long is closed, freeing its place among
    /// [`ServerOptions::max_connections`]. Default 60 s.
    pub idle_timeout: Duration,
    /// A connection whose request frame is not whole this long after its first byte arrived is
    /// closed, however its bytes are spread out: a client cannot hold a connection, and what it
    /// buffered, by sending a byte now and then. Default 5 s.
    pub frame_timeout: Duration,
    /// A connection whose client does not take a response within this long is closed. Default
    /// 5 s.
    pub write_timeout: Duration,
    /// How long client sessions live and how many are kept, written into each `Register` this
    /// server proposes ([`SessionOptions`]). Default [`SessionOptions::default`].
    pub sessions: SessionOptions,
    /// Mutual TLS on every connection ([`ServiceTls`]: the cluster's CA, the node's certificate
    /// and key), clients' roles read from their certificates; `None` for plaintext, where every
    /// connection may do everything (a trusted network only). Default `None`.
    pub tls: Option<ServiceTls>,
    /// How long a client may take for its whole TLS handshake. Default 5 s.
    pub handshake_timeout: Duration,
    /// TLS handshakes under way at once, at most; a connection accepted beyond is closed at
    /// once. Default 64.
    pub max_handshakes: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            read_mode: ReadMode::ReadIndex,
            request_timeout: Duration::from_secs(2),
            max_connections: 256,
            max_frame: MAX_FRAME,
            idle_timeout: Duration::from_secs(60),
            frame_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            sessions: SessionOptions::default(),
            tls: None,
            handshake_timeout: Duration::from_secs(5),
            max_handshakes: 64,
        }
    }
}

/// The key-value service of one node, on a TCP listener. See the [module docs](self).
pub struct KvServer {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    /// The accept thread; taken by [`KvServer::shutdown`].
    accept: Option<JoinHandle<()>>,
}

/// What the accept thread and the connection threads share.
struct Shared {
    raft: Raft,
    state: Arc<KvState>,
    options: ServerOptions,
    stopping: AtomicBool,
    /// A clone of each open connection's stream, by connection number, so that shutdown can
    /// close them. A cold path (taken on connect, disconnect and shutdown): a `Mutex` is fine.
    connections: Mutex<HashMap<u64, TcpStream>>,
    /// Where `Status` answers read the node's transport links, once set.
    links: OnceLock<LinkSource>,
    /// The request counters and the connections gauge ([`crate::metrics`]).
    metrics: ServerMetrics,
    /// The wall clock when the server started, read once: stamps are reckoned from it and the
    /// monotonic clock each request reads anyway, so that a request reads one clock, not two.
    started: (Instant, u64),
    /// Refused connections and failed accepts: warnings anyone who can connect can provoke,
    /// written at most once a second.
    refusals: WarnLimit,
    /// Connections closed for what their client sent: written at most once a second.
    closings: WarnLimit,
    /// TLS handshakes under way.
    handshakes: AtomicUsize,
    /// Failed TLS handshakes: written at most once a second.
    handshake_failures: WarnLimit,
    /// The cluster's id and the peer addresses of the nodes it started with, once set.
    cluster: OnceLock<ClusterInfo>,
}

/// What [`KvServer::set_cluster`] gives.
#[derive(Debug)]
struct ClusterInfo {
    cluster: u64,
    /// The peer addresses of the nodes the cluster (or, for a node that joined, this node)
    /// started with, by id.
    initial: Vec<(u64, SocketAddr)>,
}

/// The number of nodes, and the counters of the link to node `j` read with `.1(j)`.
type LinkSource = (usize, Box<dyn Fn(usize) -> LinkStats + Send + Sync>);

impl KvServer {
    /// Serves node `raft`, whose applied state is `state` (the node was started with
    /// [`KvState::machine`] of the same state), on `listener`.
    ///
    /// # Errors
    ///
    /// If the listener's address cannot be read or the accept thread cannot be started.
    pub fn start(
        raft: Raft,
        state: Arc<KvState>,
        listener: TcpListener,
        options: ServerOptions,
    ) -> io::Result<Self> {
        let local_addr = listener.local_addr()?;
        listener.set_nonblocking(false)?;
        let raft_id = raft.id();
        let shared = Arc::new(Shared {
            raft,
            state,
            options,
            stopping: AtomicBool::new(false),
            connections: Mutex::new(HashMap::new()),
            links: OnceLock::new(),
            metrics: ServerMetrics::new(raft_id),
            started: (Instant::now(), now_ms()),
            refusals: WarnLimit::per_second(),
            closings: WarnLimit::per_second(),
            handshakes: AtomicUsize::new(0),
            handshake_failures: WarnLimit::per_second(),
            cluster: OnceLock::new(),
        });
        let accept = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("kv-accept-{}", shared.raft.id()))
                .spawn(move || accept_loop(&shared, &listener))?
        };
        Ok(Self {
            shared,
            local_addr,
            accept: Some(accept),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The node the server serves.
    pub fn raft(&self) -> &Raft {
        &self.shared.raft
    }

    /// The node's applied state.
    pub fn state(&self) -> &Arc<KvState> {
        &self.shared.state
    }

    /// Has `Status` answers carry the node's transport links: one for each of the `nodes`
    /// nodes, the one to node `j` read with `link(j)` (which should be quick: it is called while
    /// a request waits). The server does not know the transport otherwise; without this its
    /// answers carry no links. Only the first call takes effect; returns whether this one did.
    pub fn set_links(
        &self,
        nodes: usize,
        link: impl Fn(usize) -> LinkStats + Send + Sync + 'static,
    ) -> bool {
        self.shared.links.set((nodes, Box::new(link))).is_ok()
    }

    /// Has `Members` answers name cluster `cluster` and the peer addresses `initial` (by id) of
    /// the nodes it started with, which the replicated address book does not hold. Only the
    /// first call takes effect; returns whether this one did.
    pub fn set_cluster(&self, cluster: u64, initial: Vec<(u64, SocketAddr)>) -> bool {
        self.shared
            .cluster
            .set(ClusterInfo { cluster, initial })
            .is_ok()
    }

    /// The number of connections open now.
    pub fn connections(&self) -> usize {
        lock(&self.shared.connections).len()
    }

    /// Stops accepting, closes every connection and joins the server's threads. Requests under
    /// way end without an answer. Calling it again does nothing. The node itself keeps running
    /// while other handles to it exist.
    pub fn shutdown(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::SeqCst);
        for (_, stream) in lock(&self.shared.connections).drain() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        // The accept thread is blocked in `accept`: a connection of our own wakes it.
        let wake = match self.local_addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => {
                SocketAddr::new(Ipv4Addr::LOCALHOST.into(), self.local_addr.port())
            }
            IpAddr::V6(ip) if ip.is_unspecified() => {
                SocketAddr::new(Ipv6Addr::LOCALHOST.into(), self.local_addr.port())
            }
            _ => self.local_addr,
        };
        match TcpStream::connect_timeout(&wake, Duration::from_secs(5)) {
            Ok(_) => {
                if accept.join().is_err() {
                    tracing::warn!(addr = %self.local_addr, "the accept thread panicked");
                }
            }
            Err(e) => tracing::warn!(
                addr = %self.local_addr,
                error = %e,
                "cannot wake the accept thread; it ends with the next connection"
            ),
        }
    }
}

impl Drop for KvServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl fmt::Debug for KvServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KvServer")
            .field("node", &self.shared.raft.id())
            .field("local_addr", &self.local_addr)
            .field("read_mode", &self.shared.options.read_mode)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Accepts connections until the server stops, then joins the connection threads.
fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    let mut next_id = 0u64;
    for incoming in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        // Join the threads of connections that ended.
        let (done, running) = workers.into_iter().partition(|w| w.is_finished());
        workers = running;
        join_all(done);
        let stream = match incoming {
            Ok(stream) => stream,
            Err(e) => {
                if let Some(suppressed) = shared.refusals.allow() {
                    tracing::warn!(error = %e, suppressed, "cannot accept a connection");
                }
                // Out of file descriptors, say: wait a little rather than spin on the error.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let id = next_id;
        next_id += 1;
        let registered = {
            let mut connections = lock(&shared.connections);
            if shared.stopping.load(Ordering::SeqCst) {
                break;
            }
            if connections.len() >= shared.options.max_connections {
                Err("too many connections")
            } else if shared.options.tls.is_some()
                && shared.handshakes.load(Ordering::SeqCst) >= shared.options.max_handshakes
            {
                Err("too many TLS handshakes under way")
            } else {
                match stream.try_clone() {
                    Ok(clone) => {
                        connections.insert(id, clone);
                        shared.metrics.connections.set(connections.len() as f64);
                        Ok(())
                    }
                    Err(_) => Err("cannot serve the connection"),
                }
            }
        };
        if let Err(why) = registered {
            shared.metrics.refused.increment(1);
            shared.refuse(stream, why);
            continue;
        }
        if shared.options.tls.is_some() {
            // Released by the connection's thread when its handshake ends, or below.
            shared.handshakes.fetch_add(1, Ordering::SeqCst);
        }
        let worker = {
            let shared = shared.clone();
            let stream = match stream.try_clone() {
                Ok(s) => s,
                Err(_) => {
                    shared.forget_connection(id);
                    shared.end_handshake();
                    shared.refuse(stream, "cannot serve the connection");
                    continue;
                }
            };
            std::thread::Builder::new()
                .name(format!("kv-conn-{}-{id}", shared.raft.id()))
                .spawn(move || {
                    Connection {
                        shared: &shared,
                        id,
                    }
                    .serve(stream)
                })
        };
        match worker {
            Ok(worker) => workers.push(worker),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a connection thread");
                shared.forget_connection(id);
                shared.end_handshake();
                shared.refuse(stream, "cannot serve the connection");
            }
        }
    }
    join_all(workers);
}

impl Shared {
    /// Counts a TLS handshake as ended (for a server with TLS).
    fn end_handshake(&self) {
        if self.options.tls.is_some() {
            self.handshakes.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Refuses a connection the server will not serve: plaintext, answers `Overloaded` (see
    /// [`refuse`]); with TLS, closes it at once, as there is no session to answer in.
    fn refuse(&self, stream: TcpStream, why: &str) {
        if self.options.tls.is_some() {
            if let Some(suppressed) = self.refusals.allow() {
                tracing::warn!(peer = ?stream.peer_addr().ok(), why, suppressed, "refusing a connection");
            }
            let _ = stream.shutdown(Shutdown::Both);
        } else {
            refuse(stream, why, &self.refusals);
        }
    }

    /// Removes connection `id` from those open.
    fn forget_connection(&self, id: u64) {
        let mut connections = lock(&self.connections);
        connections.remove(&id);
        self.metrics.connections.set(connections.len() as f64);
    }
}

fn join_all(workers: Vec<JoinHandle<()>>) {
    for worker in workers {
        if worker.join().is_err() {
            tracing::warn!("a connection thread panicked");
        }
    }
}

/// Answers a connection the server will not serve with `Overloaded`, and closes it; warns within
/// `limit`.
fn refuse(stream: TcpStream, why: &str, limit: &WarnLimit) {
    if let Some(suppressed) = limit.allow() {
        tracing::warn!(peer = ?stream.peer_addr().ok(), why, suppressed, "refusing a connection");
    }
    let mut out = Vec::new();
    if Response::Overloaded.encode(&mut out).is_ok() {
        let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
        let _ = protocol::write_frame(&mut &stream, &out);
    }
    let _ = stream.shutdown(Shutdown::Both);
}

/// One client connection, served on its own thread.
struct Connection<'a> {
    shared: &'a Shared,
    id: u64,
}

/// Releases a TLS handshake's place when dropped (on every path out of the handshake).
struct HandshakeSlot<'a>(&'a Shared);

impl Drop for HandshakeSlot<'_> {
    fn drop(&mut self) {
        self.0.end_handshake();
    }
}

/// A request the connection's reader has started and its responder will finish, in order.
enum Pending {
    /// Answered already. Boxed: a `Response` is large (a status carries a node's whole view),
    /// and every request's `Pending` is moved through the channel to the answering thread, which
    /// for a write would otherwise copy the size of the largest response twice.
    Ready(Box<Response>),
    /// A value read at once (with [`ReadMode::UnsafeLocal`]), its answer unboxed.
    Value(Bytes),
    /// A command proposed at `index`: answered once applied.
    Applied {
        asked: Asked,
        index: u64,
        term: u64,
        deadline: Instant,
    },
    /// A `Register` proposed at `index`: answered once applied.
    Registered {
        index: u64,
        term: u64,
        deadline: Instant,
    },
    /// A read waiting for its confirmation, then for its index to apply.
    Read {
        read: Result<PendingRead, ReadError>,
        key: Bytes,
        deadline: Instant,
    },
}

impl Pending {
    /// Answered already with `response`.
    fn ready(response: Response) -> Self {
        Self::Ready(Box::new(response))
    }
}

/// What answering a proposed command needs of it: which request of which session it was and
/// its fingerprint, not its key and value. Those are slices of the connection's read buffer,
/// released on the reading thread as soon as the command is encoded for the log: released on
/// the answering thread instead, they would bounce the buffer's reference count between the
/// two threads' cores for every request.
#[derive(Debug, Clone, Copy)]
struct Asked {
    op: Op,
    session: u64,
    seq: u64,
    ack: u64,
    /// The request's [`RequestRef::fingerprint`].
    fingerprint: u64,
}

impl Asked {
    fn of(request: &RequestRef<'_>) -> Self {
        Self {
            op: request.op,
            session: request.session,
            seq: request.seq,
            ack: request.ack,
            fingerprint: request.fingerprint(),
        }
    }
}

/// Requests a connection may have under way at once: beyond, its reader waits for answers to be
/// written before it reads more (the client's pipelining meets backpressure, not an unbounded
/// queue).
const PIPELINE: usize = 1024;
/// Answers written in one system call, at most (in bytes; one larger answer goes alone).
const WRITE_BATCH: usize = 64 << 10;

impl Connection<'_> {
    /// Serves one connection: this thread reads requests and starts each at once (a command is
    /// proposed, a read asks for its confirmation), a second one finishes them in order and
    /// writes the answers, several per system call when several are ready. A client may thus
    /// send many requests without waiting for the answers (pipelining), and they are under way
    /// together.
    fn serve(&self, stream: TcpStream) {
        let peer = stream.peer_addr().ok();
        if let Some((stream, role)) = self.secure(stream, peer) {
            self.serve_requests(&stream, role, peer);
        }
        self.shared.forget_connection(self.id);
    }

    /// The connection as it will be served, with its client's role: plaintext (every client
    /// an operator), or after a TLS handshake done within its deadline. `None` if the
    /// handshake failed (the connection is closed).
    fn secure(&self, stream: TcpStream, peer: Option<SocketAddr>) -> Option<(Stream, ClientRole)> {
        let Some(tls) = &self.shared.options.tls else {
            return Some((Stream::Plain(stream), ClientRole::Admin));
        };
        let _slot = HandshakeSlot(self.shared);
        let deadline = Instant::now() + self.shared.options.handshake_timeout;
        let clone = stream.try_clone();
        match tls.accept(stream, deadline) {
            Ok((stream, role)) => Some((Stream::Tls(Box::new(stream)), role)),
            Err(e) => {
                self.shared.metrics.refused.increment(1);
                if !self.stopping()
                    && let Some(suppressed) = self.shared.handshake_failures.allow()
                {
                    tracing::warn!(?peer, error = %e, suppressed, "refusing a client: its TLS handshake failed");
                }
                if let Ok(s) = clone {
                    let _ = s.shutdown(Shutdown::Both);
                }
                None
            }
        }
    }

    /// Serves the connection's requests, as [`Connection::serve`] says.
    fn serve_requests(&self, stream: &Stream, role: ClientRole, peer: Option<SocketAddr>) {
        let options = &self.shared.options;
        let setup = stream
            .tcp()
            .set_nodelay(true)
            .and_then(|()| stream.set_write_timeout(Some(options.write_timeout.max(MIN_TIMEOUT))));
        if let Err(e) = setup {
            tracing::debug!(?peer, error = %e, "cannot set up a connection");
        } else {
            let (tx, rx) = crossbeam_channel::bounded::<(RequestKind, Pending)>(PIPELINE);
            std::thread::scope(|scope| {
                let responder = std::thread::Builder::new()
                    .name(format!("kv-answer-{}-{}", self.shared.raft.id(), self.id))
                    .spawn_scoped(scope, || self.respond(stream, rx));
                if let Err(e) = responder {
                    tracing::warn!(error = %e, "cannot start a connection's answering thread");
                    return;
                }
                self.read_requests(stream, role, peer, &tx);
                drop(tx);
            });
        }
        let _ = stream.shutdown(Shutdown::Both);
    }

    /// Reads requests and starts each, until the connection ends or sends something that is not
    /// a request.
    fn read_requests(
        &self,
        stream: &Stream,
        role: ClientRole,
        peer: Option<SocketAddr>,
        tx: &crossbeam_channel::Sender<(RequestKind, Pending)>,
    ) {
        let options = &self.shared.options;
        let mut reader = protocol::FrameReader::new(stream, options.max_frame);
        // Where this connection's commands are encoded for the log, many per allocation.
        let mut arena = bytes::BytesMut::new();
        let idle = options.idle_timeout.max(MIN_TIMEOUT);
        let whole = options.frame_timeout.max(MIN_TIMEOUT);
        loop {
            let body = match reader.next_frame_by(idle, whole) {
                Ok(Some(body)) => body,
                Ok(None) => return,
                Err(FrameError::Io(e)) => {
                    // The stream ended inside a frame, or the frame was not whole by its
                    // deadline: a client that sent part of one.
                    let partial = matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof | io::ErrorKind::TimedOut
                    );
                    if partial && !self.stopping() {
                        if let Some(suppressed) = self.shared.closings.allow() {
                            tracing::warn!(?peer, error = %e, suppressed, "closing a connection: a partial frame");
                        }
                    } else {
                        // Shutdown, an idle timeout, a reset: nothing the client sent.
                        tracing::debug!(?peer, error = %e, "closing a connection");
                    }
                    return;
                }
                Err(e @ FrameError::TooLarge { .. }) => {
                    if let Some(suppressed) = self.shared.closings.allow() {
                        tracing::warn!(?peer, error = %e, suppressed, "closing a connection");
                    }
                    let answer = Pending::ready(Response::Error(e.to_string()));
                    let _ = tx.send((RequestKind::Malformed, answer));
                    return;
                }
            };
            let now = reader.read_at();
            let started = match WriteRef::decode(&body) {
                Some(write) => write.map(|write| {
                    let kind = if write.append {
                        RequestKind::Append
                    } else {
                        RequestKind::Put
                    };
                    (kind, self.begin_write(&write, now, &mut arena))
                }),
                None => Request::decode(body).map(|request| {
                    (
                        RequestKind::of(&request),
                        self.begin(request, role, now, &mut arena),
                    )
                }),
            };
            let pending = match started {
                Ok(pending) => pending,
                Err(e) => {
                    if let Some(suppressed) = self.shared.closings.allow() {
                        tracing::warn!(?peer, error = %e, suppressed, "closing a connection: malformed request");
                    }
                    let why = format!("malformed request: {e}");
                    let _ = tx.send((RequestKind::Malformed, Pending::ready(Response::Error(why))));
                    return;
                }
            };
            if tx.send(pending).is_err() {
                return; // the answering side stopped: the connection is gone
            }
        }
    }

    /// Finishes the requests in order and writes their answers, batching those that are ready
    /// together, and counts them by kind and outcome (handed to the recorder with each batch).
    /// When the connection fails, shuts it down so that the reader stops too.
    fn respond(&self, stream: &Stream, rx: crossbeam_channel::Receiver<(RequestKind, Pending)>) {
        let mut out = Vec::new();
        let mut tally = RequestTally::new();
        for (kind, pending) in rx.iter() {
            let response = self.finish(pending);
            tally.count(kind, &response);
            let at = out.len();
            if let Err(e) = response.encode(&mut out) {
                // A value grown by appends beyond what a frame carries.
                out.truncate(at);
                if Response::Error(e.to_string()).encode(&mut out).is_err() {
                    out.truncate(at);
                }
            }
            if rx.is_empty() || out.len() >= WRITE_BATCH {
                tally.flush(&self.shared.metrics);
                if let Err(e) = protocol::write_frame(&mut &*stream, &out) {
                    tracing::debug!(error = %e, "cannot answer; closing the connection");
                    let _ = stream.shutdown(Shutdown::Both);
                    return;
                }
                out.clear();
            }
        }
        tally.flush(&self.shared.metrics);
        if !out.is_empty() {
            let _ = protocol::write_frame(&mut &*stream, &out);
        }
    }

    fn stopping(&self) -> bool {
        self.shared.stopping.load(Ordering::SeqCst)
    }

    /// Whether a request under way should give up: the server is stopping or the node stopped.
    fn should_stop(&self) -> bool {
        self.stopping() || self.shared.raft.is_killed()
    }

    /// Starts `request`, which arrived at `now`: proposes a command, asks for a read's
    /// confirmation, or answers at once. Its deadline and its command's stamp count from `now`
    /// (the time of the read that brought it: no clock read per request).
    fn begin(
        &self,
        request: Request,
        role: ClientRole,
        now: Instant,
        arena: &mut bytes::BytesMut,
    ) -> Pending {
        let raft = &self.shared.raft;
        let (deadline, stamp) = self.times(now);
        let read = |read, key| Pending::Read {
            read,
            key,
            deadline,
        };
        match request {
            Request::Status if role != ClientRole::Admin => {
                Pending::ready(Response::Status(NodeStatus::from_status(&raft.status())))
            }
            Request::Transfer { .. } if role != ClientRole::Admin => {
                Pending::ready(Response::Forbidden(
                    "leadership transfer is for the operator: connect with the admin \
                     certificate"
                        .to_owned(),
                ))
            }
            Request::Members
            | Request::AddMember { .. }
            | Request::Promote { .. }
            | Request::RemoveMember { .. }
                if role != ClientRole::Admin =>
            {
                Pending::ready(Response::Forbidden(
                    "membership is for the operator: connect with the admin certificate".to_owned(),
                ))
            }
            Request::Members => Pending::ready(Response::Members(self.members_info())),
            Request::AddMember { id, peer, client } => {
                Pending::ready(self.add_member(id, MemberAddrs { peer, client }, stamp, deadline))
            }
            Request::Promote { id } => Pending::ready(self.promote(id)),
            Request::RemoveMember { id } => Pending::ready(self.remove_member(id, stamp, deadline)),
            Request::Status => {
                let links = self
                    .shared
                    .links
                    .get()
                    .map_or_else(Vec::new, |(nodes, link)| (0..*nodes).map(link).collect());
                Pending::ready(Response::Status(NodeStatus::with_full(
                    &raft.status(),
                    links,
                )))
            }
            Request::Transfer { target } => {
                let target = usize::try_from(target).unwrap_or(usize::MAX);
                Pending::ready(match raft.transfer_leadership(target) {
                    Ok(()) => Response::Ok {
                        value: Bytes::new(),
                    },
                    Err(TransferError::NotLeader { leader }) => Response::WrongLeader {
                        leader: leader.map(|l| l as u64),
                    },
                    Err(e @ (TransferError::BadTarget { .. } | TransferError::Killed)) => {
                        Response::Error(e.to_string())
                    }
                })
            }
            Request::Register => {
                let entry = encode_register(stamp, &self.shared.options.sessions, arena);
                match raft.try_start(entry) {
                    Ok((index, term)) => Pending::Registered {
                        index,
                        term,
                        deadline,
                    },
                    Err(e) => Pending::ready(refused(e)),
                }
            }
            Request::Put {
                session,
                seq,
                ack,
                key,
                value,
            } => self.propose(
                arena,
                RequestRef {
                    stamp,
                    op: Op::Put,
                    session,
                    seq,
                    ack,
                    key: &key,
                    value: &value,
                },
                deadline,
            ),
            Request::Append {
                session,
                seq,
                ack,
                key,
                value,
            } => self.propose(
                arena,
                RequestRef {
                    stamp,
                    op: Op::Append,
                    session,
                    seq,
                    ack,
                    key: &key,
                    value: &value,
                },
                deadline,
            ),
            Request::Get {
                session,
                seq,
                ack,
                key,
            } => match self.shared.options.read_mode {
                ReadMode::ReadIndex => read(raft.read_index(), key),
                ReadMode::Lease => read(raft.read_lease(), key),
                ReadMode::Log => self.propose(
                    arena,
                    RequestRef {
                        stamp,
                        op: Op::Get,
                        session,
                        seq,
                        ack,
                        key: &key,
                        value: &[],
                    },
                    deadline,
                ),
                ReadMode::UnsafeLocal => {
                    Pending::Value(self.shared.state.get(&key).unwrap_or_default())
                }
            },
        }
    }

    /// The deadline of a request that arrived at `now`, and the stamp of its command.
    fn times(&self, now: Instant) -> (Instant, u64) {
        let deadline = now + self.shared.options.request_timeout;
        let (started, started_ms) = self.shared.started;
        let elapsed_ms = u64::try_from(now.duration_since(started).as_millis()).unwrap_or(u64::MAX);
        (deadline, started_ms.saturating_add(elapsed_ms))
    }

    /// Starts `write`, a `Put` or `Append` that arrived at `now`, as [`Connection::begin`]
    /// would, its key and value copied from the frame straight into the command.
    fn begin_write(
        &self,
        write: &WriteRef<'_>,
        now: Instant,
        arena: &mut bytes::BytesMut,
    ) -> Pending {
        let (deadline, stamp) = self.times(now);
        let request = RequestRef {
            stamp,
            op: if write.append { Op::Append } else { Op::Put },
            session: write.session,
            seq: write.seq,
            ack: write.ack,
            key: write.key,
            value: write.value,
        };
        self.propose(arena, request, deadline)
    }

    /// Proposes `request` unless no session can admit it; its answer waits
    /// for it to be applied.
    fn propose(
        &self,
        arena: &mut bytes::BytesMut,
        request: RequestRef<'_>,
        deadline: Instant,
    ) -> Pending {
        let asked = Asked::of(&request);
        if let Some(refusal) = refuse_at_once(&asked) {
            return Pending::ready(refusal);
        }
        match self
            .shared
            .raft
            .try_start(encode_request_in(&request, arena))
        {
            Ok((index, term)) => Pending::Applied {
                asked,
                index,
                term,
                deadline,
            },
            Err(e) => Pending::ready(refused(e)),
        }
    }

    /// Waits for a started request to end, and gives its answer.
    fn finish(&self, pending: Pending) -> Response {
        match pending {
            Pending::Ready(response) => *response,
            Pending::Value(value) => Response::Ok { value },
            Pending::Applied {
                asked,
                index,
                term,
                deadline,
            } => self.applied(&asked, index, term, deadline),
            Pending::Registered {
                index,
                term,
                deadline,
            } => self.registered(index, term, deadline),
            Pending::Read {
                read,
                key,
                deadline,
            } => self.read(read, &key, deadline),
        }
    }

    /// Answers a command proposed at `index` in `term` once it is applied, with what applying
    /// it came to. A write learns that from the record of the entry at its index, without the
    /// state's lock; a `Get` (which answers with the value it read), or a write whose index is
    /// too old for that record, looks in its session.
    fn applied(&self, command: &Asked, index: u64, term: u64, deadline: Instant) -> Response {
        let state = &self.shared.state;
        if command.op != Op::Get {
            match state.wait_applied_until(index, deadline, || self.should_stop()) {
                Ok(()) => {}
                Err(WaitEnd::TimedOut) => return Response::Timeout,
                Err(WaitEnd::Stopped) => return Response::WrongLeader { leader: None },
            }
            match state.check_entry(index, term) {
                EntryCheck::Ours(Settled::Done) => {
                    return Response::Ok {
                        value: Bytes::new(),
                    };
                }
                EntryCheck::Ours(Settled::Stale) => return Response::Stale,
                EntryCheck::Ours(Settled::SessionExpired) => return Response::SessionExpired,
                EntryCheck::Ours(Settled::Refused) => return window_exceeded(command),
                EntryCheck::Ours(Settled::Conflict) => return conflict(command),
                EntryCheck::Ours(Settled::TooLarge) => return too_large(),
                EntryCheck::Replaced => return self.wrong_leader(),
                EntryCheck::Ours(Settled::NotARequest) | EntryCheck::Unknown => {}
            }
        }
        let inner = match state.wait_until(index, Some(deadline), || self.should_stop()) {
            Ok(inner) => inner,
            Err(WaitEnd::TimedOut) => return Response::Timeout,
            Err(WaitEnd::Stopped) => return Response::WrongLeader { leader: None },
        };
        let sessions = inner.store.sessions();
        match sessions.lookup(command.session, command.seq, command.fingerprint) {
            Lookup::Answered(Answer::Written) => Response::Ok {
                value: Bytes::new(),
            },
            Lookup::Answered(Answer::Value(value)) => Response::Ok {
                value: value.clone(),
            },
            Lookup::Answered(Answer::TooLarge) => too_large(),
            Lookup::Stale => Response::Stale,
            Lookup::Expired => Response::SessionExpired,
            Lookup::Conflict => conflict(command),
            Lookup::NotApplied => {
                // Another leader's entry took the index: this node lost its leadership.
                drop(inner);
                self.wrong_leader()
            }
        }
    }

    /// Answers a `Register` proposed at `index` in `term` once it is applied: the session's id
    /// is that index. If the entry there cannot be told apart from another leader's without the
    /// lock (the index is too old), the client is told to try again.
    fn registered(&self, index: u64, term: u64, deadline: Instant) -> Response {
        let state = &self.shared.state;
        match state.wait_applied_until(index, deadline, || self.should_stop()) {
            Ok(()) => {}
            Err(WaitEnd::TimedOut) => return Response::Timeout,
            Err(WaitEnd::Stopped) => return Response::WrongLeader { leader: None },
        }
        match state.check_entry(index, term) {
            EntryCheck::Ours(Settled::Done) => Response::Registered { session: index },
            EntryCheck::Replaced => self.wrong_leader(),
            EntryCheck::Ours(_) | EntryCheck::Unknown => Response::Timeout,
        }
    }

    /// The cluster's members as this node knows them.
    fn members_info(&self) -> MembersInfo {
        let raft = &self.shared.raft;
        let status = raft.status();
        let config = raft.membership();
        let book = self.shared.state.address_book();
        let (cluster, initial) = match self.shared.cluster.get() {
            Some(info) => (info.cluster, info.initial.as_slice()),
            None => (0, &[][..]),
        };
        let m = &config.membership;
        let ids = |it: &mut dyn Iterator<Item = usize>| it.map(|id| id as u64).collect::<Vec<_>>();
        let voters = ids(&mut m.voters());
        let learners = ids(&mut m.learners());
        let outgoing = ids(&mut m.outgoing());
        let mut known: Vec<u64> = voters
            .iter()
            .chain(&learners)
            .chain(&outgoing)
            .copied()
            .chain(book.members().map(|(id, _)| id))
            .chain(initial.iter().map(|(id, _)| *id))
            .filter(|&id| !book.is_removed(id) || m.contains(id as usize))
            .collect();
        known.sort_unstable();
        known.dedup();
        let leading = status.role == Role::Leader;
        let nodes = known
            .into_iter()
            .map(|id| {
                let addrs = book.get(id);
                let initial_peer = initial.iter().find(|(i, _)| *i == id).map(|(_, a)| *a);
                let match_index = if !leading {
                    None
                } else if id == status.id as u64 {
                    Some(status.last_log_index)
                } else {
                    status
                        .peers
                        .iter()
                        .find(|p| p.id as u64 == id)
                        .map(|p| p.match_index)
                };
                MemberInfo {
                    id,
                    peer: addrs.map(|a| a.peer).or(initial_peer),
                    client: addrs.map(|a| a.client),
                    match_index,
                }
            })
            .collect();
        MembersInfo {
            cluster,
            node: status.id as u64,
            leader: status.leader.map(|l| l as u64),
            config_index: config.index,
            committed: config.committed,
            commit_index: status.commit_index,
            last_log_index: status.last_log_index,
            voters,
            learners,
            outgoing,
            removed: book.removed().collect(),
            nodes,
        }
    }

    /// Proposes a change to the address book, stamped `stamp`, and waits until it is applied:
    /// `None` if it was admitted, else the answer to give.
    fn commit_member(
        &self,
        change: &MemberChange,
        stamp: u64,
        deadline: Instant,
    ) -> Option<Response> {
        let state = &self.shared.state;
        let (index, term) = match self.shared.raft.try_start(encode_member(stamp, change)) {
            Ok(claimed) => claimed,
            Err(e) => return Some(refused(e)),
        };
        match state.wait_applied_until(index, deadline, || self.should_stop()) {
            Ok(()) => {}
            Err(WaitEnd::TimedOut) => return Some(Response::Timeout),
            Err(WaitEnd::Stopped) => return Some(Response::WrongLeader { leader: None }),
        }
        match state.check_entry(index, term) {
            EntryCheck::Ours(Settled::Done) => None,
            EntryCheck::Ours(Settled::Refused) => Some(Response::Error(format!(
                "node id {} was removed from the cluster and is never used again: choose a new id",
                change.id()
            ))),
            EntryCheck::Replaced => Some(self.wrong_leader()),
            EntryCheck::Ours(_) | EntryCheck::Unknown => Some(Response::Timeout),
        }
    }

    /// `AddMember`: commits node `id`'s addresses, then adds it as a learner.
    fn add_member(&self, id: u64, addrs: MemberAddrs, stamp: u64, deadline: Instant) -> Response {
        let raft = &self.shared.raft;
        if raft.status().role != Role::Leader {
            return self.wrong_leader();
        }
        if id >= MAX_NODE_ID {
            return Response::Error(format!("node ids are below {MAX_NODE_ID}"));
        }
        let book = self.shared.state.address_book();
        if book.is_removed(id) {
            return Response::Error(format!(
                "node id {id} was removed from the cluster and is never used again: choose a new id"
            ));
        }
        let config = raft.membership().membership;
        if config.contains(id as usize) {
            return if book.get(id) == Some(&addrs) {
                // Sent again after a lost answer: done already.
                ok()
            } else {
                Response::Error(format!(
                    "node {id} is a member already; remove it first, and add the new machine under a new id"
                ))
            };
        }
        if let Some(info) = self.shared.cluster.get()
            && info.initial.iter().any(|(i, _)| *i == id)
        {
            return Response::Error(format!(
                "node id {id} is one the cluster started with: choose a new id"
            ));
        }
        if book.get(id) != Some(&addrs)
            && let Some(answer) =
                self.commit_member(&MemberChange::Set { id, addrs }, stamp, deadline)
        {
            return answer;
        }
        match raft.add_learner(id as usize) {
            Ok(_) => ok(),
            Err(e) => change_refused(e),
        }
    }

    /// `Promote`: makes learner `id` a voter, if it holds the committed log.
    fn promote(&self, id: u64) -> Response {
        let raft = &self.shared.raft;
        let Ok(node) = usize::try_from(id) else {
            return Response::Error(format!("no node {id}"));
        };
        if raft.membership().membership.is_voter(node) && raft.status().role == Role::Leader {
            return ok();
        }
        match raft.promote(node) {
            Ok(_) => ok(),
            Err(ChangeError::NotCaughtUp(_)) => {
                let status = raft.status();
                let matched = status
                    .peers
                    .iter()
                    .find(|p| p.id == node)
                    .map_or(0, |p| p.match_index);
                Response::Error(format!(
                    "node {id} has not caught up: it holds the log up to {matched}, the leader has                      committed {}; promote it once it has (zeroraft admin members shows its lag)",
                    status.commit_index
                ))
            }
            Err(e) => change_refused(e),
        }
    }

    /// `RemoveMember`: removes node `id` from the configuration, then commits that its id is
    /// removed for good.
    fn remove_member(&self, id: u64, stamp: u64, deadline: Instant) -> Response {
        let raft = &self.shared.raft;
        if raft.status().role != Role::Leader {
            return self.wrong_leader();
        }
        let Some(node) = usize::try_from(id)
            .ok()
            .filter(|&n| n < MAX_NODE_ID as usize)
        else {
            return Response::Error(format!("no node {id}"));
        };
        let book = self.shared.state.address_book();
        let member = raft.membership().membership.contains(node);
        let known = book.get(id).is_some()
            || self
                .shared
                .cluster
                .get()
                .is_some_and(|info| info.initial.iter().any(|(i, _)| *i == id));
        if !member && book.is_removed(id) {
            return ok();
        }
        if !member && !known {
            return Response::Error(format!("no node {id} in the cluster"));
        }
        if member && let Err(e) = raft.remove(node) {
            return change_refused(e);
        }
        match self.commit_member(&MemberChange::Retire { id }, stamp, deadline) {
            None => ok(),
            Some(answer) => answer,
        }
    }

    /// `WrongLeader`, naming the leader this node knows of.
    fn wrong_leader(&self) -> Response {
        Response::WrongLeader {
            leader: self.shared.raft.status().leader.map(|l| l as u64),
        }
    }

    /// Waits for a read to be confirmed and applied, then reads `key`.
    fn read(
        &self,
        pending: Result<PendingRead, ReadError>,
        key: &[u8],
        deadline: Instant,
    ) -> Response {
        let confirmed = pending.and_then(|pending| {
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match pending.wait_timeout(left.min(STOP_POLL)) {
                    Err(ReadError::Timeout) if !left.is_zero() && !self.should_stop() => {}
                    outcome => return outcome,
                }
            }
        });
        let index = match confirmed {
            Ok(index) => index,
            Err(ReadError::NotLeader { leader }) => {
                return Response::WrongLeader {
                    leader: leader.map(|l| l as u64),
                };
            }
            Err(ReadError::Busy { .. }) => return Response::Busy,
            Err(ReadError::Timeout) if !self.should_stop() => return Response::Timeout,
            Err(ReadError::Timeout | ReadError::Killed | ReadError::Failed(_)) => {
                return Response::WrongLeader { leader: None };
            }
        };
        match self
            .shared
            .state
            .wait_until(index, Some(deadline), || self.should_stop())
        {
            Ok(state) => Response::Ok {
                value: state
                    .store
                    .get(key)
                    .map(Bytes::copy_from_slice)
                    .unwrap_or_default(),
            },
            Err(WaitEnd::TimedOut) => Response::Timeout,
            Err(WaitEnd::Stopped) => Response::WrongLeader { leader: None },
        }
    }
}

/// The answer to a `Put` or `Append` refused when it was applied: the value would have grown
/// past what a response can carry.
/// `Ok` with no value.
fn ok() -> Response {
    Response::Ok {
        value: Bytes::new(),
    }
}

/// The answer to a membership change the node refused.
fn change_refused(e: ChangeError) -> Response {
    match e {
        ChangeError::NotLeader { leader } => Response::WrongLeader {
            leader: leader.map(|l| l as u64),
        },
        ChangeError::Busy => Response::Busy,
        e => Response::Error(e.to_string()),
    }
}

fn too_large() -> Response {
    Response::Error(format!(
        "refused: the value would be longer than {MAX_VALUE} bytes, the most a response can \
         carry; nothing was written"
    ))
}

/// The answer to a proposal the node refused.
fn refused(e: StartError) -> Response {
    match e {
        StartError::NotLeader { leader, .. } => Response::WrongLeader {
            leader: leader.map(|l| l as u64),
        },
        StartError::Busy { .. } => Response::Busy,
        e @ StartError::TooLarge { .. } => Response::Error(e.to_string()),
        StartError::Killed | StartError::Failed(_) => Response::WrongLeader { leader: None },
    }
}

/// The answer to a request that no session can admit, given without proposing it: session 0,
/// which none has, an `ack` above the `seq`, or a `seq` too far beyond the `ack`.
fn refuse_at_once(command: &Asked) -> Option<Response> {
    if command.session == 0 {
        Some(Response::SessionExpired)
    } else if command.ack > command.seq {
        Some(Response::Error(format!(
            "request {} acknowledges up to {}: an ack is at most the request's own seq",
            command.seq, command.ack
        )))
    } else if command.seq - command.ack >= MAX_UNACKNOWLEDGED {
        Some(window_exceeded(command))
    } else {
        None
    }
}

fn window_exceeded(command: &Asked) -> Response {
    Response::Error(format!(
        "request {} of session {} leaves requests from {} unacknowledged: at most \
         {MAX_UNACKNOWLEDGED} may be",
        command.seq, command.session, command.ack
    ))
}

fn conflict(command: &Asked) -> Response {
    Response::Error(format!(
        "session {} applied another request numbered {}: two clients share the session",
        command.session, command.seq
    ))
}

/// This server's wall clock, in milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How often a read being confirmed checks whether it should give up early.
const STOP_POLL: Duration = Duration::from_millis(20);

/// The shortest socket timeout set (a zero timeout is an error for the socket calls).
const MIN_TIMEOUT: Duration = Duration::from_millis(1);
