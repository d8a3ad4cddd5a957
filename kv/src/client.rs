//! [`KvClient`]: the client library of the key-value service (the 6.824 `Clerk`).
//!
//! Before its first operation a client opens a session ([`crate::session`]: `Register`, through
//! the log), then numbers its operations within it. It sends each to the server it believes
//! leads, follows `WrongLeader` hints, and on a connection error or timeout tries the next server
//! after a short backoff, always with the same `(session, seq)`, so that a request applied by a
//! server whose answer was lost is not applied again, and its retry is answered as it was. A
//! server that is busy (`Busy`) or serves as many connections as it may (`Overloaded`) is asked
//! again after a pause, or another one is. It gives up when the operation's deadline
//! ([`ClientOptions::op_timeout`], registering included) passes: the caller then cannot know
//! whether a `put` or `append` took effect.
//!
//! Each request acknowledges every earlier one (its `ack` is its own `seq`): the client has one
//! operation at a time (the methods take `&mut self`), and once it has moved on it no longer
//! wants an earlier answer, so a late copy of an earlier request is refused as stale rather than
//! applied after a later one.
//!
//! If the session is gone ([`KvError::SessionExpired`]: it expired or was evicted) or was used
//! by another client ([`KvError::Stale`]), a `put` or `append` fails with that error, its
//! outcome unknown: applying it again under a new session could apply it twice. A `get` opens a
//! new session and is asked again. The next operation opens a new session.
//!
//! One connection per server is kept open and reused; a connection on which anything went wrong
//! is dropped, so that a late answer is never taken for the next request's.
//!
//! With [`ClientOptions::tls`] every connection is mutual TLS: the client checks that the
//! server at `addrs[i]` holds node `i`'s certificate, and proves its own role with its
//! certificate (the servers must have been started with TLS, and a client without it cannot
//! talk to them, nor one with it to a plaintext server).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::thread::sleep;
use std::time::{Duration, Instant};

use bytes::Bytes;

use zeroraft_transport::tcp::ClientTls;

use crate::protocol::{self, EncodeError, FrameError, MAX_FRAME, NodeStatus, Request, Response};
use crate::stream::Stream;

/// Settings of a [`KvClient`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// How long one operation may take, retries included, before it fails with
    /// [`KvError::Timeout`]. Default 5 s.
    pub op_timeout: Duration,
    /// How long connecting to one server may take. Default 500 ms.
    pub connect_timeout: Duration,
    /// How long to wait for one server's answer before trying another. Default 3 s: above the
    /// server's own request timeout, after which it answers `Timeout` itself.
    pub attempt_timeout: Duration,
    /// The longest pause between attempts (pauses double from 5 ms up to this). Default 100 ms.
    pub max_backoff: Duration,
    /// Mutual TLS to the servers ([`ClientTls`]: the cluster's CA, this client's certificate
    /// and key), as they were started; `None` for plaintext. Default `None`. Connecting
    /// (`connect_timeout`) includes the TLS handshake.
    pub tls: Option<ClientTls>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            op_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_millis(500),
            attempt_timeout: Duration::from_secs(3),
            max_backoff: Duration::from_millis(100),
            tls: None,
        }
    }
}

/// Why an operation failed.
#[derive(Debug)]
pub enum KvError {
    /// The operation did not complete before its deadline. A `put` or `append` may or may not
    /// have taken effect (and may still take effect later).
    Timeout,
    /// The key or value is too large to send.
    TooLarge(EncodeError),
    /// A server refused the request for a reason retrying does not cure; the text says why.
    Server(String),
    /// The client was given no server addresses.
    NoServers,
    /// A server could not be reached or read ([`KvClient::status`] and
    /// [`KvClient::transfer_leadership`] only: operations retry).
    Io(io::Error),
    /// The node asked does not lead ([`KvClient::transfer_leadership`] only: operations follow
    /// the hint).
    NotLeader {
        /// The node it believes leads, if any.
        leader: Option<u64>,
    },
    /// A server answered something that is not an answer to the request.
    Protocol(String),
    /// The client's session is gone: it was idle for longer than the servers keep sessions
    /// ([`crate::SessionOptions::timeout`]), or was evicted to make room for newer ones
    /// ([`crate::SessionOptions::max_sessions`]). A `put` or `append` failed with this may or may not
    /// have taken effect (an earlier attempt may have been applied); it was not retried, which
    /// could have applied it twice. The client opens a new session for its next operation.
    SessionExpired,
    /// The session has acknowledged this request already: another client is using the same
    /// session. The outcome of the `put` or `append` is unknown, as for
    /// [`KvError::SessionExpired`], and the client opens a new session for its next operation.
    Stale,
    /// The server refused the request for this client's identity (an ordinary client's
    /// certificate asking for a leadership transfer); the text says what would be allowed.
    Forbidden(String),
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => write!(f, "the operation timed out; its outcome is unknown"),
            Self::TooLarge(e) => e.fmt(f),
            Self::Server(why) => write!(f, "the server refused the request: {why}"),
            Self::NoServers => write!(f, "no server addresses"),
            Self::Io(e) => write!(f, "cannot reach the server: {e}"),
            Self::NotLeader { leader: Some(l) } => write!(f, "not the leader; node {l} is"),
            Self::NotLeader { leader: None } => write!(f, "not the leader; no leader known"),
            Self::Protocol(why) => write!(f, "unexpected answer: {why}"),
            Self::SessionExpired => write!(
                f,
                "the client's session expired on the servers; the operation's outcome is unknown"
            ),
            Self::Stale => write!(
                f,
                "another client used this client's session; the operation's outcome is unknown"
            ),
            Self::Forbidden(why) => write!(f, "not allowed: {why}"),
        }
    }
}

impl std::error::Error for KvError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::TooLarge(e) => Some(e),
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// What a client reports when a server it asks once refuses the connection.
const OVERLOADED: &str = "the server serves as many connections as it may";

/// What a client operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Get,
    Put,
    Append,
}

/// The error for `answer`, which is no answer to `what`.
fn unexpected(answer: &Response, what: &str) -> KvError {
    KvError::Protocol(format!("{answer:?} to {what}"))
}

/// The shortest pause between attempts.
const MIN_BACKOFF: Duration = Duration::from_millis(5);

/// The shortest socket timeout set (a zero timeout is an error for the socket calls).
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// A client of the key-value service. See the [module docs](self).
#[derive(Debug)]
pub struct KvClient {
    /// `addrs[i]` is the address of node `i`'s server: leader hints are node ids.
    addrs: Vec<SocketAddr>,
    /// The open connection to each server, if any.
    connections: Vec<Option<Stream>>,
    /// The server that answered last: tried first.
    leader: usize,
    /// The session, once one is open.
    session: Option<u64>,
    /// The number of the last request of the session.
    seq: u64,
    options: ClientOptions,
    /// The encoded request being sent.
    frame: Vec<u8>,
}

impl KvClient {
    /// A client of the servers at `addrs`, where `addrs[i]` serves node `i` (the servers name
    /// leaders by node id). Connects lazily, on the first operation.
    pub fn new(addrs: Vec<SocketAddr>, options: ClientOptions) -> Self {
        Self {
            connections: addrs.iter().map(|_| None).collect(),
            addrs,
            leader: 0,
            session: None,
            seq: 0,
            options,
            frame: Vec::new(),
        }
    }

    /// The client's session, once it has opened one (its first operation does).
    pub fn session(&self) -> Option<u64> {
        self.session
    }

    /// The node the client will try first: the one that answered last.
    pub fn leader(&self) -> usize {
        self.leader
    }

    /// Makes the next operation try node `node` first (a node out of range is ignored). A node
    /// that does not lead sends the client on to the leader, so this changes where a request
    /// starts, not what it returns (unless the servers answer Gets with
    /// [`ReadMode::UnsafeLocal`](crate::ReadMode::UnsafeLocal), where any node does).
    pub fn prefer(&mut self, node: usize) {
        if node < self.addrs.len() {
            self.leader = node;
        }
    }

    /// The value of `key`, or the empty string if it has none. A value that is not UTF-8 (one
    /// written by another client library) has its invalid bytes replaced by U+FFFD.
    ///
    /// # Errors
    ///
    /// [`KvError::Timeout`] after [`ClientOptions::op_timeout`]; [`KvError::TooLarge`] for a
    /// key above [`protocol::MAX_KEY`]; [`KvError::Server`] if a server refuses the request;
    /// [`KvError::NoServers`]. A session that is gone is replaced and the read asked again.
    pub fn get(&mut self, key: &str) -> Result<String, KvError> {
        let value = self.operation(Op::Get, key, "")?;
        Ok(String::from_utf8_lossy(&value).into_owned())
    }

    /// Sets `key` to `value`.
    ///
    /// # Errors
    ///
    /// As [`KvClient::get`], and [`KvError::TooLarge`] for a value that does not fit in a frame
    /// ([`protocol::MAX_FRAME`]). After [`KvError::Timeout`], [`KvError::SessionExpired`] or
    /// [`KvError::Stale`] the put may or may not have taken effect.
    pub fn put(&mut self, key: &str, value: &str) -> Result<(), KvError> {
        self.operation(Op::Put, key, value).map(drop)
    }

    /// Appends `value` to the value of `key`.
    ///
    /// # Errors
    ///
    /// As [`KvClient::put`].
    pub fn append(&mut self, key: &str, value: &str) -> Result<(), KvError> {
        self.operation(Op::Append, key, value).map(drop)
    }

    /// Carries out one operation under the client's session, opening one first if needed, and
    /// returns the value answered.
    fn operation(&mut self, op: Op, key: &str, value: &str) -> Result<Bytes, KvError> {
        if self.addrs.is_empty() {
            return Err(KvError::NoServers);
        }
        let deadline = Instant::now() + self.options.op_timeout;
        let key = Bytes::copy_from_slice(key.as_bytes());
        let value = Bytes::copy_from_slice(value.as_bytes());
        loop {
            let session = match self.session {
                Some(session) => session,
                None => {
                    let session = self.register(deadline)?;
                    (self.session, self.seq) = (Some(session), 0);
                    session
                }
            };
            self.seq += 1;
            let (seq, ack) = (self.seq, self.seq);
            let (key, value) = (key.clone(), value.clone());
            let request = match op {
                Op::Get => Request::Get {
                    session,
                    seq,
                    ack,
                    key,
                },
                Op::Put => Request::Put {
                    session,
                    seq,
                    ack,
                    key,
                    value,
                },
                Op::Append => Request::Append {
                    session,
                    seq,
                    ack,
                    key,
                    value,
                },
            };
            match self.execute(&request, deadline) {
                Ok(Response::Ok { value }) => return Ok(value),
                Ok(other) => return Err(unexpected(&other, "an operation")),
                Err(e @ (KvError::SessionExpired | KvError::Stale)) => {
                    self.session = None;
                    // A read changes nothing: under a new session it is simply asked again.
                    if op != Op::Get {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Opens a session before `deadline`; returns its id.
    fn register(&mut self, deadline: Instant) -> Result<u64, KvError> {
        match self.execute(&Request::Register, deadline)? {
            Response::Registered { session } => Ok(session),
            other => Err(unexpected(&other, "a register request")),
        }
    }

    /// The Raft status of the node served at `addr`, over a connection of its own: in full
    /// ([`NodeStatus::full`](protocol::NodeStatus::full)) from a server that sends it.
    ///
    /// # Errors
    ///
    /// [`KvError::Io`] if the server cannot be reached or does not answer within
    /// [`ClientOptions::attempt_timeout`]; [`KvError::Protocol`] if it answers something else.
    pub fn status(&self, addr: SocketAddr) -> Result<NodeStatus, KvError> {
        match self.call_once(addr, &Request::Status)? {
            Response::Status(status) => Ok(status),
            Response::Error(why) => Err(KvError::Server(why)),
            Response::Forbidden(why) => Err(KvError::Forbidden(why)),
            Response::Overloaded => Err(KvError::Server(OVERLOADED.to_owned())),
            other => Err(KvError::Protocol(format!("{other:?} to a status request"))),
        }
    }

    /// Asks the node served at `addr`, which should lead, to hand its leadership to node
    /// `target`, over a connection of its own. `Ok` means the leader has started the transfer,
    /// not that it is done: the target's status shows when it leads.
    ///
    /// # Errors
    ///
    /// [`KvError::NotLeader`] if that node does not lead; [`KvError::Server`] if it cannot
    /// transfer to `target` (no other node of the cluster) or stopped; [`KvError::Io`] and
    /// [`KvError::Protocol`] as for [`KvClient::status`].
    pub fn transfer_leadership(&self, addr: SocketAddr, target: usize) -> Result<(), KvError> {
        let request = Request::Transfer {
            target: target as u64,
        };
        match self.call_once(addr, &request)? {
            Response::Ok { .. } => Ok(()),
            Response::WrongLeader { leader } => Err(KvError::NotLeader { leader }),
            Response::Error(why) => Err(KvError::Server(why)),
            Response::Forbidden(why) => Err(KvError::Forbidden(why)),
            Response::Overloaded => Err(KvError::Server(OVERLOADED.to_owned())),
            other => Err(KvError::Protocol(format!(
                "{other:?} to a transfer request"
            ))),
        }
    }

    /// Sends `request` to the server at `addr` over a new connection and reads its answer,
    /// whatever it is: for requests this client has no method of its own for (the membership
    /// requests of `zeroraft admin`).
    ///
    /// # Errors
    ///
    /// [`KvError::TooLarge`] for a request that does not fit a frame, [`KvError::Io`] if the
    /// server cannot be reached or does not answer within [`ClientOptions::attempt_timeout`].
    pub fn call(&self, addr: SocketAddr, request: &Request) -> Result<Response, KvError> {
        self.call_once(addr, request)
    }

    /// Sends `request` to the server at `addr` over a new connection and reads its answer.
    fn call_once(&self, addr: SocketAddr, request: &Request) -> Result<Response, KvError> {
        let mut frame = Vec::new();
        request.encode(&mut frame).map_err(KvError::TooLarge)?;
        // Whichever node serves `addr`, as long as it is one of the cluster's: the caller
        // names an address, not a node.
        let stream = Stream::connect(
            &addr,
            None,
            self.options.tls.as_ref(),
            self.options.connect_timeout.max(MIN_TIMEOUT),
        )
        .map_err(KvError::Io)?;
        let timeout = Some(self.options.attempt_timeout.max(MIN_TIMEOUT));
        stream
            .set_read_timeout(timeout)
            .and_then(|()| stream.set_write_timeout(timeout))
            .and_then(|()| call(&stream, &frame))
            .map_err(KvError::Io)
    }

    /// Sends `request` until a server answers it or `deadline` passes, and returns the answer:
    /// `Ok` or `Registered`.
    fn execute(&mut self, request: &Request, deadline: Instant) -> Result<Response, KvError> {
        self.frame.clear();
        request.encode(&mut self.frame).map_err(KvError::TooLarge)?;
        let servers = self.addrs.len();
        let mut server = self.leader;
        let mut backoff = MIN_BACKOFF;
        // Hints followed in a row without a pause: bounded, in case servers point at each other.
        let mut hops = 0;
        loop {
            if Instant::now() >= deadline {
                return Err(KvError::Timeout);
            }
            let pause = match self.attempt(server, deadline) {
                Ok(answer @ (Response::Ok { .. } | Response::Registered { .. })) => {
                    self.leader = server;
                    return Ok(answer);
                }
                Ok(Response::Error(why)) => return Err(KvError::Server(why)),
                Ok(Response::Forbidden(why)) => return Err(KvError::Forbidden(why)),
                Ok(Response::Stale) => return Err(KvError::Stale),
                Ok(Response::SessionExpired) => return Err(KvError::SessionExpired),
                Ok(Response::WrongLeader { leader: Some(l) })
                    if usize::try_from(l).is_ok_and(|l| l < servers && l != server)
                        && hops < servers =>
                {
                    hops += 1;
                    server = l as usize;
                    false
                }
                Ok(Response::Busy) => true,
                Ok(Response::Overloaded) => {
                    // The server closes the connection: wait for a free place, or try another.
                    self.connections[server] = None;
                    server = (server + 1) % servers;
                    true
                }
                Ok(Response::Timeout) => {
                    server = (server + 1) % servers;
                    false
                }
                Ok(Response::WrongLeader { .. }) | Err(_) => {
                    server = (server + 1) % servers;
                    true
                }
                Ok(Response::Status(_) | Response::Members(_)) => {
                    // Not an answer to this request: the connection is out of step.
                    self.connections[server] = None;
                    server = (server + 1) % servers;
                    true
                }
            };
            if pause {
                hops = 0;
                let left = deadline.saturating_duration_since(Instant::now());
                sleep(backoff.min(left));
                backoff = (backoff * 2).min(self.options.max_backoff.max(MIN_BACKOFF));
            }
        }
    }

    /// Sends the encoded request to `server` and reads its answer, connecting first if needed.
    /// Any failure drops the connection.
    fn attempt(&mut self, server: usize, deadline: Instant) -> io::Result<Response> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let stream = match self.connections[server].take() {
            Some(stream) => stream,
            None => {
                let timeout = self.options.connect_timeout.min(left).max(MIN_TIMEOUT);
                Stream::connect(
                    &self.addrs[server],
                    Some(server),
                    self.options.tls.as_ref(),
                    timeout,
                )?
            }
        };
        let timeout = Some(self.options.attempt_timeout.min(left).max(MIN_TIMEOUT));
        stream.set_read_timeout(timeout)?;
        stream.set_write_timeout(timeout)?;
        let answer = call(&stream, &self.frame)?;
        self.connections[server] = Some(stream);
        Ok(answer)
    }
}

/// Writes an encoded request frame on `stream` and reads one response: one exchange on a
/// connection the caller keeps (a poller asking one node for its status, say).
///
/// # Errors
///
/// The stream's error, or `InvalidData` for an answer too large or that does not decode.
pub fn call(stream: &Stream, frame: &[u8]) -> io::Result<Response> {
    protocol::write_frame(&mut &*stream, frame)?;
    let body = match protocol::read_frame(&mut &*stream, MAX_FRAME) {
        Ok(Some(body)) => body,
        Ok(None) => return Err(io::ErrorKind::UnexpectedEof.into()),
        Err(FrameError::Io(e)) => return Err(e),
        Err(e @ FrameError::TooLarge { .. }) => {
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
    };
    Response::decode(body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}
