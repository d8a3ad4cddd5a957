//! The client wire protocol of the key-value service: framing, requests and responses.
//!
//! A connection carries frames in both directions: a `u32` little-endian body length, then the
//! body. A body starts with the protocol version ([`VERSION`]) and a kind byte; the kind's fields
//! follow, integers little-endian, byte strings as a `u32` length and the bytes:
//!
//! | kind | request    | fields                                                |
//! |------|------------|-------------------------------------------------------|
//! | 1    | `Get`      | session `u64`, seq `u64`, ack `u64`, key              |
//! | 2    | `Put`      | session `u64`, seq `u64`, ack `u64`, key, value       |
//! | 3    | `Append`   | session `u64`, seq `u64`, ack `u64`, key, value       |
//! | 4    | `Status`   | none                                                  |
//! | 5    | `Transfer` | target node id `u64`                                  |
//! | 6    | `Register` | none                                                  |
//! | 7    | `Members`  | none                                                  |
//! | 8    | `AddMember`| node id `u64`, peer address, client address (UTF-8)  |
//! | 9    | `Promote`  | node id `u64`                                         |
//! | 10   | `RemoveMember` | node id `u64`                                     |
//!
//! | kind | response         | fields                                                        |
//! |------|------------------|---------------------------------------------------------------|
//! | 0x81 | `Ok`             | value (empty for `Put` and `Append`)                          |
//! | 0x82 | `WrongLeader`    | hint flag `u8` (0 or 1), leader id `u64` (0 without a hint)   |
//! | 0x83 | `Timeout`        | none                                                          |
//! | 0x84 | `Busy`           | none                                                          |
//! | 0x85 | `Error`          | message (UTF-8)                                               |
//! | 0x86 | `Status`         | id, role `u8`, term, hint flag + leader, commit, applied, last |
//! | 0x87 | `Registered`     | session `u64`                                                 |
//! | 0x88 | `Stale`          | none                                                          |
//! | 0x89 | `SessionExpired` | none                                                          |
//! | 0x8a | `Overloaded`     | none                                                          |
//! | 0x8b | `Forbidden`      | message (UTF-8)                                               |
//! | 0x8c | `Members`        | see [`MembersInfo`]                                           |
//!
//! `Members` asks any node for the cluster's members as it knows them ([`MembersInfo`]);
//! `AddMember`, `Promote` and `RemoveMember` ask the leader to change them (answered `Ok` once
//! the change is committed, `WrongLeader`, or `Error` saying why not). Over TLS all four are the
//! operator's ([`zeroraft_transport::tcp::ClientRole::Admin`]); others are answered `Forbidden`.
//! They came after the other kinds without a new protocol version: a server before them
//! answers them as unknown kinds, by closing the connection.
//!
//! A client opens a session with `Register`, answered `Registered` with the session's id, and
//! sends every `Get`, `Put` and `Append` under it: `seq` numbers its requests (increasing), and
//! `ack` is the lowest `seq` whose answer it still needs (it has every answer below), at most
//! `seq` and less than [`MAX_UNACKNOWLEDGED`] below it. What a session guarantees, and what
//! `Stale` and `SessionExpired` mean, is in [`crate::session`]. A server refuses with `Error`,
//! before proposing anything, a request whose `ack` is above its `seq` or too far below it;
//! it answers `SessionExpired` at once for session 0, which no session has. `Get`s are read
//! without the log (unless the server reads through it, [`crate::ReadMode::Log`]), and their
//! session is then not checked.
//!
//! `Transfer` is answered with `Ok` (the leader has started handing over its leadership),
//! `WrongLeader` (the node does not lead) or `Error` (the target is no other node, the node
//! stopped). `Forbidden` refuses a request the connection's identity may not make: on a TLS
//! connection whose client certificate is not the operator's ([`zeroraft_transport::tcp::ClientRole`]),
//! `Transfer`. Such a connection's `Status` is answered with the compact fields only, without
//! the full status. A plaintext connection may do everything. `Forbidden` came after the other
//! kinds without a new protocol version: a server sends it only on TLS connections, which no
//! client older than it can open. `Overloaded` is the only thing a server sends on a connection it will not serve
//! (it serves as many as it may, [`crate::ServerOptions::max_connections`]) before it closes it.
//!
//! A server answers requests on one connection in order, one response per request. Decoding is
//! strict: a body that ends inside a field, carries bytes after its last field, names an unknown
//! version or kind, or a key longer than [`MAX_KEY`], is an error, and a server closes the
//! connection. The one exception is the `Status` response, whose decoder ignores bytes after the
//! fields it knows, so that a later server can report more without breaking older dashboards.
//!
//! That is how a `Status` response carries the node's full status ([`FullStatus`]): after the
//! fields above come a tag byte, 1, and then, integers `u64` unless said otherwise:
//!
//! - last log term, durable index, snapshot index, log entries, log bytes, snapshots
//!   installed, storage writes, their time in nanoseconds, elections started, elections won,
//!   step-downs, messages in, messages out;
//! - flags `u8` (bit 0 killed, bit 1 lease), hint flag `u8` + transfer target;
//! - reads confirmed, lease reads, transfers started, transfers abandoned;
//! - failure: flag `u8` (0 or 1), then, with 1, the message (UTF-8, at most [`MAX_FAILURE`]
//!   bytes);
//! - peers: count `u8`, then for each: id, match index, next index, state `u8` (0 probe,
//!   1 replicate, 2 snapshot), AppendEntries in flight;
//! - links: count `u8`, then for each: connected `u8` (0 or 1), connections, messages sent,
//!   bytes sent, writes, messages received, bytes received, dropped, inbox overflows, rejected.
//! - storage flags `u8` (bit 0 disk full, bit 1 snapshotting): absent from servers before
//!   they were added, which then decode as 0.
//! - the configuration in force ([`Status::membership`]): flag `u8` (0 none, 1 one follows),
//!   then, with 1, the configuration as a configuration entry holds it (25 bytes:
//!   [`Membership::encode`]), the index of its entry `u64`, and committed `u8` (0 or 1). Absent
//!   from servers before it was added (the body ends after the storage flags), which then
//!   decode as `None`.
//!
//! An older decoder stops before the tag; a body without the tag decodes to a [`NodeStatus`]
//! without [`NodeStatus::full`], and one with an unknown tag too (a later layout). After the
//! tag, decoding is strict up to the last field of the layout above: a status cut inside it is
//! an error. Bytes after it are ignored, again so that a later server can add fields.
//!
//! Nothing is allocated by a length read off the wire before it is checked: a frame's length
//! against the reader's maximum ([`read_frame`]), a field's, or a count of peers or links times
//! the size of one, against the bytes left in its body.
//! Decoded byte strings are [`Bytes`] slices of the frame, not copies.

use std::fmt;
use std::io::{self, Read, Write};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};

use zeroraft_engine::ProgressState;
use zeroraft_engine::{Membership, MembershipStatus, PeerStatus, Role, Status};
use zeroraft_transport::tcp::LinkStats;

/// The protocol version this module speaks; the first byte of every body. Version 2 brought
/// sessions: `Register`, `(session, seq, ack)` in requests, and the responses after `Status`.
pub const VERSION: u8 = 2;

/// The most requests of one session whose answers its client has not acknowledged: a request
/// whose `seq` is this far or further above its `ack` is refused. It bounds the answers a
/// session keeps, and so a client's pipelining window.
pub const MAX_UNACKNOWLEDGED: u64 = 4096;

/// The largest frame body read or written: 8 MiB. It bounds a value too, less the few bytes of
/// the other fields. (A node also refuses commands above [`zeroraft_engine::Config::max_command_bytes`],
/// 4 MiB by default: a larger `Put` is answered with [`Response::Error`].)
pub const MAX_FRAME: usize = 8 << 20;

/// The longest value a response can carry (an `Ok` is a frame of the version, its kind, the
/// value's length `u32` and the value): a `Put` or `Append` that would make a value longer is
/// refused when it is applied, with [`Response::Error`], and changes nothing.
pub const MAX_VALUE: usize = MAX_FRAME - 6;

/// The longest key: 64 KiB.
pub const MAX_KEY: usize = 64 << 10;

const GET: u8 = 1;
const PUT: u8 = 2;
const APPEND: u8 = 3;
const STATUS: u8 = 4;
const TRANSFER: u8 = 5;
const REGISTER: u8 = 6;
const MEMBERS: u8 = 7;
const ADD_MEMBER: u8 = 8;
const PROMOTE: u8 = 9;
const REMOVE_MEMBER: u8 = 10;

const OK: u8 = 0x81;
const WRONG_LEADER: u8 = 0x82;
const TIMEOUT: u8 = 0x83;
const BUSY: u8 = 0x84;
const ERROR: u8 = 0x85;
const STATUS_REPLY: u8 = 0x86;
const REGISTERED: u8 = 0x87;
const STALE: u8 = 0x88;
const SESSION_EXPIRED: u8 = 0x89;
const OVERLOADED: u8 = 0x8a;
const FORBIDDEN: u8 = 0x8b;
const MEMBERS_REPLY: u8 = 0x8c;

/// The tag of the full status after a `Status` response's fields.
const FULL_STATUS: u8 = 1;

/// The longest failure message a full status carries: a longer one is cut (at a character
/// boundary) when encoded, and refused when decoded.
pub const MAX_FAILURE: usize = 4 << 10;

/// The most peers, and the most links, a full status carries: the ones after are left out when
/// encoded. (A cluster has at most 9 nodes on the command line.)
pub const MAX_STATUS_NODES: usize = u8::MAX as usize;

/// Bytes of one peer of a full status on the wire.
const PEER_BYTES: usize = 8 * 4 + 1;
/// Bytes of one link of a full status on the wire.
const LINK_BYTES: usize = 1 + 8 * 9;
/// Bytes of an encoded configuration ([`Membership::encode`]) in a full status.
const MEMBERSHIP_BYTES: usize = 25;

/// What a client asks of a server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// The value of `key` (empty if it has none).
    Get {
        /// The client's session ([`Response::Registered`]).
        session: u64,
        /// The session's number for this request: increasing, one per request.
        seq: u64,
        /// The lowest `seq` whose answer the client still needs (at most `seq`).
        ack: u64,
        /// The key.
        key: Bytes,
    },
    /// Sets `key` to `value`.
    Put {
        /// The client's session.
        session: u64,
        /// The session's number for this request. A request whose `(session, seq)` was applied
        /// already is not applied again: a retry is answered as the request was.
        seq: u64,
        /// The lowest `seq` whose answer the client still needs (at most `seq`).
        ack: u64,
        /// The key.
        key: Bytes,
        /// The new value.
        value: Bytes,
    },
    /// Appends `value` to the value of `key` (to the empty value if it has none).
    Append {
        /// The client's session.
        session: u64,
        /// The session's number for this request, as for `Put`.
        seq: u64,
        /// The lowest `seq` whose answer the client still needs (at most `seq`).
        ack: u64,
        /// The key.
        key: Bytes,
        /// What to append.
        value: Bytes,
    },
    /// The node's Raft status, for a monitor.
    Status,
    /// Asks the node, which should lead, to hand its leadership to node `target`
    /// ([`zeroraft_engine::Raft::transfer_leadership`]).
    Transfer {
        /// The node to lead next.
        target: u64,
    },
    /// Opens a session: answered with [`Response::Registered`] once committed and applied.
    Register,
    /// The cluster's members as the node knows them: answered with [`Response::Members`].
    Members,
    /// Asks the leader to add node `id`, reached at `peer` by the other nodes and at `client`
    /// by clients, as a learner: its addresses are committed first, then the configuration.
    AddMember {
        /// The new node's id: below 64, never used before.
        id: u64,
        /// Where the other nodes reach it.
        peer: SocketAddr,
        /// Where clients reach it.
        client: SocketAddr,
    },
    /// Asks the leader to make learner `id`, which must hold the committed log, a voter.
    Promote {
        /// The learner.
        id: u64,
    },
    /// Asks the leader to remove node `id` from the cluster for good (its id is never used
    /// again).
    RemoveMember {
        /// The node.
        id: u64,
    },
}

/// What a server answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// Done: the value read by a `Get`, empty for `Put` and `Append`.
    Ok {
        /// The value (empty if the key has none).
        value: Bytes,
    },
    /// This server cannot serve the request now (it does not lead, or lost its leadership
    /// before the request was applied): try another, `leader` if it names one.
    WrongLeader {
        /// The node this server believes leads, if any.
        leader: Option<u64>,
    },
    /// The request was not done in time; it may still be applied later. Retrying with the same
    /// `(session, seq)` applies it at most once.
    Timeout,
    /// The server has too much work queued; try again shortly.
    Busy,
    /// The request cannot be served (too large, say); retrying will not help.
    Error(String),
    /// The node's Raft status: the answer to [`Request::Status`].
    Status(NodeStatus),
    /// The connection's identity may not make this request (an ordinary client's certificate
    /// asking for a leadership transfer); the text says what would. Nothing was done.
    Forbidden(String),
    /// The session opened: the answer to [`Request::Register`].
    Registered {
        /// The session's id: the log index of its `Register`.
        session: u64,
    },
    /// The request's `seq` is below its session's `ack`: the client acknowledged its answer
    /// already, so this is a very late copy, and nothing was done. Its outcome is whatever the
    /// first copy's was; the server no longer knows it.
    Stale,
    /// The request's session is not open (it expired, was evicted, or never was): nothing was
    /// done now, and whether an earlier copy of the request was applied is unknown.
    SessionExpired,
    /// The server does not serve this connection now (it serves as many as it may) and closes
    /// it: connect again later, or to another node.
    Overloaded,
    /// The cluster's members as the node knows them: the answer to [`Request::Members`].
    Members(MembersInfo),
}

/// The cluster's members as one node knows them: its configuration in force, the address book
/// and, from the leader, each member's match index.
///
/// Encoded as: cluster `u64`, node `u64`, leader (hint flag `u8` + id `u64`), configuration
/// index `u64`, committed `u8`, commit index `u64`, last log index `u64`, voters, learners,
/// outgoing voters and removed ids as `u64` bit sets (bit `i` for node `i`), then the count of
/// nodes `u8` and for each: id `u64`, peer address, client address (UTF-8, empty if unknown),
/// match index (hint flag `u8` + `u64`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembersInfo {
    /// The cluster's id.
    pub cluster: u64,
    /// The node that answered.
    pub node: u64,
    /// The leader it knows of.
    pub leader: Option<u64>,
    /// The index of the configuration's entry (0 for the one the cluster started with).
    pub config_index: u64,
    /// Whether the node knows the configuration committed.
    pub committed: bool,
    /// The node's commit index.
    pub commit_index: u64,
    /// The node's last log index.
    pub last_log_index: u64,
    /// The voters (while joint, of the configuration being entered).
    pub voters: Vec<u64>,
    /// The learners.
    pub learners: Vec<u64>,
    /// While joint, the voters of the configuration being left; empty otherwise.
    pub outgoing: Vec<u64>,
    /// The ids removed from the cluster, never used again.
    pub removed: Vec<u64>,
    /// Every node with an address or in the configuration, by id.
    pub nodes: Vec<MemberInfo>,
}

/// One node of [`MembersInfo`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    /// The node's id.
    pub id: u64,
    /// Where the other nodes reach it, if known.
    pub peer: Option<SocketAddr>,
    /// Where clients reach it, if known (nodes the cluster started with are known by their
    /// peer address only).
    pub client: Option<SocketAddr>,
    /// Its match index, as the leader tracks it (from the leader only; the leader's own is its
    /// last log index).
    pub match_index: Option<u64>,
}

impl MembersInfo {
    fn encode(&self, out: &mut Vec<u8>) {
        let mask = |ids: &[u64]| {
            ids.iter()
                .filter(|&&id| id < 64)
                .fold(0u64, |m, &id| m | (1 << id))
        };
        out.extend_from_slice(&self.cluster.to_le_bytes());
        out.extend_from_slice(&self.node.to_le_bytes());
        put_option(out, self.leader);
        out.extend_from_slice(&self.config_index.to_le_bytes());
        out.push(u8::from(self.committed));
        out.extend_from_slice(&self.commit_index.to_le_bytes());
        out.extend_from_slice(&self.last_log_index.to_le_bytes());
        for set in [&self.voters, &self.learners, &self.outgoing, &self.removed] {
            out.extend_from_slice(&mask(set).to_le_bytes());
        }
        let nodes = &self.nodes[..self.nodes.len().min(u8::MAX as usize)];
        out.push(nodes.len() as u8);
        for node in nodes {
            out.extend_from_slice(&node.id.to_le_bytes());
            for addr in [node.peer, node.client] {
                put_bytes(
                    out,
                    addr.map(|a| a.to_string()).unwrap_or_default().as_bytes(),
                );
            }
            put_option(out, node.match_index);
        }
    }

    fn decode(body: &mut Bytes) -> Result<Self, DecodeError> {
        let ids = |mask: u64| {
            (0..64)
                .filter(|i| mask & (1 << i) != 0)
                .collect::<Vec<u64>>()
        };
        let mut info = Self {
            cluster: get_u64(body)?,
            node: get_u64(body)?,
            leader: get_option(body)?,
            config_index: get_u64(body)?,
            committed: match get_u8(body)? {
                0 => false,
                1 => true,
                _ => return Err(DecodeError::Invalid("committed flag")),
            },
            commit_index: get_u64(body)?,
            last_log_index: get_u64(body)?,
            ..Self::default()
        };
        info.voters = ids(get_u64(body)?);
        info.learners = ids(get_u64(body)?);
        info.outgoing = ids(get_u64(body)?);
        info.removed = ids(get_u64(body)?);
        let count = get_u8(body)?;
        for _ in 0..count {
            let id = get_u64(body)?;
            let mut addr = || -> Result<Option<SocketAddr>, DecodeError> {
                let text = get_bytes(body, "address", 64)?;
                if text.is_empty() {
                    return Ok(None);
                }
                std::str::from_utf8(&text)
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .map(Some)
                    .ok_or(DecodeError::Invalid("address"))
            };
            let peer = addr()?;
            let client = addr()?;
            info.nodes.push(MemberInfo {
                id,
                peer,
                client,
                match_index: get_option(body)?,
            });
        }
        Ok(info)
    }
}

/// One node's Raft status as the `Status` request reports it: the fields every server sends,
/// and, from servers that send it, the full status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// The node's id.
    pub id: u64,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: u64,
    /// The leader it knows of, if any.
    pub leader: Option<u64>,
    /// Its commit index.
    pub commit_index: u64,
    /// The last index it applied.
    pub last_applied: u64,
    /// The index of its last log entry.
    pub last_log_index: u64,
    /// Everything else, from a server that sends it (see the module docs). Its status holds the
    /// fields above too: they travel once, in the fields above.
    pub full: Option<Box<FullStatus>>,
}

/// One node's full status, as a `Status` response carries it after the fields every server
/// sends: what a dashboard shows of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FullStatus {
    /// The engine's status.
    pub status: Status,
    /// The node's transport link to each node, by node id (the entry of the node itself all
    /// zero); empty if the server does not know the node's transport.
    pub links: Vec<LinkStats>,
}

impl NodeStatus {
    /// The fields of an engine status every server sends, without the full status.
    pub fn from_status(status: &Status) -> Self {
        Self {
            id: status.id as u64,
            role: status.role,
            term: status.term,
            leader: status.leader.map(|l| l as u64),
            commit_index: status.commit_index,
            last_applied: status.last_applied,
            last_log_index: status.last_log_index,
            full: None,
        }
    }

    /// An engine status in full, with the node's transport `links` (see [`FullStatus::links`]).
    pub fn with_full(status: &Status, links: Vec<LinkStats>) -> Self {
        Self {
            full: Some(Box::new(FullStatus {
                status: status.clone(),
                links,
            })),
            ..Self::from_status(status)
        }
    }
}

/// Why a body could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The body ends inside a field.
    Truncated,
    /// The body is of a protocol version this module does not speak.
    UnknownVersion(u8),
    /// The kind byte names no request (or response) kind.
    UnknownKind(u8),
    /// A field is longer than allowed.
    TooLong {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// Bytes follow the last field.
    TrailingBytes(usize),
    /// A field holds a value it cannot hold; the text names it.
    Invalid(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => write!(f, "the body ends inside a field"),
            Self::UnknownVersion(v) => write!(f, "unknown protocol version {v}"),
            Self::UnknownKind(k) => write!(f, "unknown kind {k:#04x}"),
            Self::TooLong { field, len, max } => {
                write!(f, "{field} of {len} bytes exceeds the maximum of {max}")
            }
            Self::TrailingBytes(n) => write!(f, "{n} bytes after the last field"),
            Self::Invalid(what) => write!(f, "invalid {what}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why a request or response could not be encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The key is longer than [`MAX_KEY`].
    KeyTooLarge {
        /// The key's length.
        len: usize,
        /// [`MAX_KEY`].
        max: usize,
    },
    /// The body would be larger than [`MAX_FRAME`].
    FrameTooLarge {
        /// The body's length.
        len: usize,
        /// [`MAX_FRAME`].
        max: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KeyTooLarge { len, max } => {
                write!(f, "a key of {len} bytes exceeds the maximum of {max}")
            }
            Self::FrameTooLarge { len, max } => {
                write!(f, "a frame of {len} bytes exceeds the maximum of {max}")
            }
        }
    }
}

impl std::error::Error for EncodeError {}

/// Why a frame could not be read.
#[derive(Debug)]
pub enum FrameError {
    /// The connection failed, timed out, or closed inside a frame
    /// ([`io::ErrorKind::UnexpectedEof`]).
    Io(io::Error),
    /// The length prefix announces a body larger than the reader accepts.
    TooLarge {
        /// The announced length.
        len: u64,
        /// The most the reader accepts.
        max: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "cannot read a frame: {e}"),
            Self::TooLarge { len, max } => {
                write!(f, "a frame of {len} bytes exceeds the maximum of {max}")
            }
        }
    }
}

impl std::error::Error for FrameError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::TooLarge { .. } => None,
        }
    }
}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// Reads one frame's body from `reader`: `Ok(None)` if the stream ends cleanly before the frame
/// starts. A length above `max` is refused before anything is read past the prefix; below it,
/// the buffer grows with the bytes that actually arrive, so a peer that announces a large frame
/// and sends little holds little memory.
///
/// # Errors
///
/// [`FrameError::TooLarge`] for a length above `max`; [`FrameError::Io`] if reading fails or the
/// stream ends inside the frame.
pub fn read_frame(reader: &mut impl Read, max: usize) -> Result<Option<Bytes>, FrameError> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < prefix.len() {
        match reader.read(&mut prefix[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_le_bytes(prefix);
    let len_usize = usize::try_from(len).unwrap_or(usize::MAX);
    if len_usize > max {
        return Err(FrameError::TooLarge {
            len: u64::from(len),
            max,
        });
    }
    // Start small and let `read_to_end` grow the buffer as bytes arrive.
    let mut body = Vec::with_capacity(len_usize.min(64 << 10));
    reader.take(u64::from(len)).read_to_end(&mut body)?;
    if body.len() < len_usize {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
    }
    Ok(Some(Bytes::from(body)))
}

/// Reads frames from a stream into a buffer it reuses, and hands out each frame's body as a
/// [`Bytes`] slice of that buffer: no allocation per frame (a new buffer only when the old one
/// is full while bodies cut from it are still held), and several frames per `read` call when
/// a client pipelines. Otherwise as [`read_frame`].
///
/// The buffer grows with the bytes that arrive, never with what a length prefix announces: a
/// peer that announces a large frame and sends little holds little memory. On a stream with
/// read timeouts ([`ReadTimeout`]), [`FrameReader::next_frame_by`] also holds a frame to a
/// deadline once its first byte arrived, so that a byte now and then cannot keep a connection
/// (and what it buffered) forever.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    buf: bytes::BytesMut,
    max: usize,
    /// What the last `read` call returned: the next one asks for about twice as much.
    last_read: usize,
    /// When the first byte of the frame under way arrived (`None` between frames: the buffer is
    /// empty). Invariant: `Some` exactly when `buf` holds bytes.
    frame_started: Option<Instant>,
    /// When the last read returned bytes.
    read_at: Instant,
    /// The read timeout last set on the stream, if [`FrameReader::next_frame_by`] set one.
    timeout_set: Option<Duration>,
}

/// A stream whose reads can be given a timeout, as a [`FrameReader`] needs to hold a frame to
/// its deadline.
pub trait ReadTimeout {
    /// Sets the timeout of each read from now on (`None`: none).
    ///
    /// # Errors
    ///
    /// If the stream cannot take it.
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
}

impl ReadTimeout for std::net::TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        std::net::TcpStream::set_read_timeout(self, timeout)
    }
}

impl ReadTimeout for &std::net::TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        std::net::TcpStream::set_read_timeout(self, timeout)
    }
}

/// The error of a frame not whole by its deadline: kind [`io::ErrorKind::TimedOut`], and this
/// text.
pub const FRAME_DEADLINE: &str = "a frame was not whole within its deadline";

/// The smallest and largest reads a [`FrameReader`] asks for.
const MIN_READ: usize = 4 << 10;
const MAX_READ: usize = 64 << 10;

impl<R: Read> FrameReader<R> {
    /// A reader of frames of at most `max` bytes from `inner`.
    pub fn new(inner: R, max: usize) -> Self {
        Self {
            inner,
            buf: bytes::BytesMut::with_capacity(MAX_READ),
            max,
            last_read: MIN_READ,
            frame_started: None,
            read_at: Instant::now(),
            timeout_set: None,
        }
    }

    /// Bytes read from the stream and not yet handed out: at least 4 when another frame may be
    /// ready without reading.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// When the last read from the stream returned bytes: when the frames it is handing out
    /// arrived, as far as this reader can tell without asking the clock per frame.
    pub fn read_at(&self) -> Instant {
        self.read_at
    }

    /// The next frame's body; `None` when the stream ends between frames.
    ///
    /// # Errors
    ///
    /// [`FrameError::TooLarge`] for a length prefix above the maximum (nothing after it is
    /// read), [`FrameError::Io`] if reading fails or the stream ends inside a frame.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        self.next_frame_with(|_, _| Ok(()))
    }

    /// [`FrameReader::next_frame`], calling `before_read` with the stream and when the frame
    /// under way started (`None` between frames) before each read.
    fn next_frame_with(
        &mut self,
        mut before_read: impl FnMut(&R, Option<Instant>) -> io::Result<()>,
    ) -> Result<Option<Bytes>, FrameError> {
        loop {
            if self.buf.len() >= 4 {
                let prefix = [self.buf[0], self.buf[1], self.buf[2], self.buf[3]];
                let len = u32::from_le_bytes(prefix);
                let len_usize = usize::try_from(len).unwrap_or(usize::MAX);
                if len_usize > self.max {
                    return Err(FrameError::TooLarge {
                        len: u64::from(len),
                        max: self.max,
                    });
                }
                if self.buf.len() >= 4 + len_usize {
                    bytes::Buf::advance(&mut self.buf, 4);
                    let body = self.buf.split_to(len_usize).freeze();
                    // The next frame's first bytes, if any, came with the last read.
                    self.frame_started = (!self.buf.is_empty()).then_some(self.read_at);
                    return Ok(Some(body));
                }
            }
            if self.buf.capacity() - self.buf.len() < MIN_READ {
                // Grow with what arrived, by doubling (a frame of n bytes costs O(n) copies),
                // never by what a prefix announces.
                self.buf.reserve(self.buf.len().max(MAX_READ));
            }
            if let Err(e) = before_read(&self.inner, self.frame_started) {
                return Err(e.into());
            }
            let start = self.buf.len();
            let want = (self.last_read * 2)
                .clamp(MIN_READ, MAX_READ)
                .min(self.buf.capacity() - start);
            // Reading into the buffer without `unsafe` needs initialized bytes: clear only as
            // many as this read may fill.
            self.buf.resize(start + want, 0);
            match self.inner.read(&mut self.buf[start..]) {
                Ok(0) => {
                    self.buf.truncate(start);
                    return if start == 0 {
                        Ok(None)
                    } else {
                        Err(io::Error::from(io::ErrorKind::UnexpectedEof).into())
                    };
                }
                Ok(n) => {
                    self.buf.truncate(start + n);
                    self.last_read = n;
                    self.read_at = Instant::now();
                    if start == 0 {
                        self.frame_started = Some(self.read_at);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.buf.truncate(start),
                Err(e) => {
                    self.buf.truncate(start);
                    return Err(e.into());
                }
            }
        }
    }
}

impl<R: Read + ReadTimeout> FrameReader<R> {
    /// [`FrameReader::next_frame`], waiting at most `idle` for a frame to start and at most
    /// `whole` for a frame to end once its first byte arrived, however its bytes are spread out.
    /// Sets the stream's read timeout as it goes (only when it changes: one system call per
    /// frame that does not arrive in one read).
    ///
    /// # Errors
    ///
    /// As [`FrameReader::next_frame`]; a frame not whole by its deadline is
    /// [`FrameError::Io`] of kind [`io::ErrorKind::TimedOut`] with the text [`FRAME_DEADLINE`];
    /// no frame started within `idle` is [`FrameError::Io`] with the kind the stream gives
    /// (`WouldBlock` on Unix).
    pub fn next_frame_by(
        &mut self,
        idle: Duration,
        whole: Duration,
    ) -> Result<Option<Bytes>, FrameError> {
        let mut timeout_set = self.timeout_set;
        let result = self.next_frame_with(|inner, started| {
            let timeout = match started {
                None => idle,
                Some(at) => {
                    let left = whole.saturating_sub(at.elapsed());
                    if left.is_zero() {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, FRAME_DEADLINE));
                    }
                    // Whole milliseconds, rounded up: a frame that comes in fast finds the
                    // timeout set already.
                    let ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
                    Duration::from_millis(ms.saturating_add(1)).min(idle)
                }
            };
            let timeout = timeout.max(Duration::from_millis(1));
            if timeout_set != Some(timeout) {
                inner.set_read_timeout(Some(timeout))?;
                timeout_set = Some(timeout);
            }
            Ok(())
        });
        self.timeout_set = timeout_set;
        result
    }
}

/// Writes `frame`, an encoded frame (prefix included), to `writer` and flushes it.
///
/// # Errors
///
/// If writing fails.
pub fn write_frame(writer: &mut impl Write, frame: &[u8]) -> io::Result<()> {
    writer.write_all(frame)?;
    writer.flush()
}

impl Request {
    /// Appends this request as a frame (length prefix and body) to `out`.
    ///
    /// # Errors
    ///
    /// [`EncodeError::KeyTooLarge`] for a key above [`MAX_KEY`], [`EncodeError::FrameTooLarge`]
    /// for a body above [`MAX_FRAME`]. `out` is left as it was.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let frame = FrameWriter::start(out);
        let (kind, ids, key, value) = match self {
            Self::Get {
                session,
                seq,
                ack,
                key,
            } => (GET, [*session, *seq, *ack], key, None),
            Self::Put {
                session,
                seq,
                ack,
                key,
                value,
            } => (PUT, [*session, *seq, *ack], key, Some(value)),
            Self::Append {
                session,
                seq,
                ack,
                key,
                value,
            } => (APPEND, [*session, *seq, *ack], key, Some(value)),
            Self::Status => {
                frame.out.extend_from_slice(&[VERSION, STATUS]);
                return frame.finish();
            }
            Self::Register => {
                frame.out.extend_from_slice(&[VERSION, REGISTER]);
                return frame.finish();
            }
            Self::Transfer { target } => {
                frame.out.extend_from_slice(&[VERSION, TRANSFER]);
                frame.out.extend_from_slice(&target.to_le_bytes());
                return frame.finish();
            }
            Self::Members => {
                frame.out.extend_from_slice(&[VERSION, MEMBERS]);
                return frame.finish();
            }
            Self::AddMember { id, peer, client } => {
                frame.out.extend_from_slice(&[VERSION, ADD_MEMBER]);
                frame.out.extend_from_slice(&id.to_le_bytes());
                put_bytes(frame.out, peer.to_string().as_bytes());
                put_bytes(frame.out, client.to_string().as_bytes());
                return frame.finish();
            }
            Self::Promote { id } | Self::RemoveMember { id } => {
                let kind = if matches!(self, Self::Promote { .. }) {
                    PROMOTE
                } else {
                    REMOVE_MEMBER
                };
                frame.out.extend_from_slice(&[VERSION, kind]);
                frame.out.extend_from_slice(&id.to_le_bytes());
                return frame.finish();
            }
        };
        if key.len() > MAX_KEY {
            let len = key.len();
            return frame.abort(EncodeError::KeyTooLarge { len, max: MAX_KEY });
        }
        let size = 2 + 24 + 4 + key.len() + value.map_or(0, |v| 4 + v.len());
        if size > MAX_FRAME {
            let max = MAX_FRAME;
            return frame.abort(EncodeError::FrameTooLarge { len: size, max });
        }
        frame.out.reserve(size);
        frame.out.extend_from_slice(&[VERSION, kind]);
        for id in ids {
            frame.out.extend_from_slice(&id.to_le_bytes());
        }
        put_bytes(frame.out, key);
        if let Some(value) = value {
            put_bytes(frame.out, value);
        }
        frame.finish()
    }

    /// Decodes a request from a frame's body.
    ///
    /// # Errors
    ///
    /// A [`DecodeError`] if the body is not a well-formed request.
    pub fn decode(mut body: Bytes) -> Result<Self, DecodeError> {
        let kind = get_header(&mut body)?;
        let request = match kind {
            STATUS => Self::Status,
            REGISTER => Self::Register,
            TRANSFER => Self::Transfer {
                target: get_u64(&mut body)?,
            },
            MEMBERS => Self::Members,
            ADD_MEMBER => Self::AddMember {
                id: get_u64(&mut body)?,
                peer: crate::members::get_addr(&mut body)?,
                client: crate::members::get_addr(&mut body)?,
            },
            PROMOTE => Self::Promote {
                id: get_u64(&mut body)?,
            },
            REMOVE_MEMBER => Self::RemoveMember {
                id: get_u64(&mut body)?,
            },
            GET | PUT | APPEND => {
                let session = get_u64(&mut body)?;
                let seq = get_u64(&mut body)?;
                let ack = get_u64(&mut body)?;
                let key = get_bytes(&mut body, "key", MAX_KEY)?;
                match kind {
                    GET => Self::Get {
                        session,
                        seq,
                        ack,
                        key,
                    },
                    PUT => Self::Put {
                        session,
                        seq,
                        ack,
                        key,
                        value: get_bytes(&mut body, "value", MAX_FRAME)?,
                    },
                    _ => Self::Append {
                        session,
                        seq,
                        ack,
                        key,
                        value: get_bytes(&mut body, "value", MAX_FRAME)?,
                    },
                }
            }
            other => return Err(DecodeError::UnknownKind(other)),
        };
        expect_end(&body)?;
        Ok(request)
    }
}

/// A `Put` or `Append` decoded in place: its key and value borrow the frame's body. The server
/// decodes writes this way and copies them straight into the command it proposes, touching no
/// reference count per request; every other request goes through [`Request::decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WriteRef<'a> {
    /// An `Append` (a `Put` otherwise).
    pub(crate) append: bool,
    pub(crate) session: u64,
    pub(crate) seq: u64,
    pub(crate) ack: u64,
    pub(crate) key: &'a [u8],
    pub(crate) value: &'a [u8],
}

impl<'a> WriteRef<'a> {
    /// `body` decoded as a `Put` or an `Append`, with exactly the checks and errors of
    /// [`Request::decode`]; `None` if it is not one (another kind, another version, or too
    /// short to tell: [`Request::decode`] then says what it is).
    pub(crate) fn decode(body: &'a [u8]) -> Option<Result<Self, DecodeError>> {
        match *body {
            [VERSION, kind @ (PUT | APPEND), ..] => {
                Some(Self::decode_fields(kind == APPEND, &body[2..]))
            }
            _ => None,
        }
    }

    fn decode_fields(append: bool, mut rest: &'a [u8]) -> Result<Self, DecodeError> {
        fn u64_le(rest: &mut &[u8]) -> Result<u64, DecodeError> {
            rest.try_get_u64_le().map_err(|_| DecodeError::Truncated)
        }
        let session = u64_le(&mut rest)?;
        let seq = u64_le(&mut rest)?;
        let ack = u64_le(&mut rest)?;
        let key = take_field(&mut rest, "key", MAX_KEY)?;
        let value = take_field(&mut rest, "value", MAX_FRAME)?;
        match rest.len() {
            0 => Ok(Self {
                append,
                session,
                seq,
                ack,
                key,
                value,
            }),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

impl Response {
    /// Appends this response as a frame (length prefix and body) to `out`.
    ///
    /// # Errors
    ///
    /// [`EncodeError::FrameTooLarge`] for a body above [`MAX_FRAME`] (a value grown by appends
    /// beyond what one frame carries). `out` is left as it was.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let frame = FrameWriter::start(out);
        let size = match self {
            Self::Ok { value } => 2 + 4 + value.len(),
            Self::Error(message) | Self::Forbidden(message) => 2 + 4 + message.len(),
            _ => 0,
        };
        if size > MAX_FRAME {
            let max = MAX_FRAME;
            return frame.abort(EncodeError::FrameTooLarge { len: size, max });
        }
        let out = &mut *frame.out;
        match self {
            Self::Ok { value } => {
                out.extend_from_slice(&[VERSION, OK]);
                put_bytes(out, value);
            }
            Self::WrongLeader { leader } => {
                out.extend_from_slice(&[VERSION, WRONG_LEADER]);
                put_option(out, *leader);
            }
            Self::Timeout => out.extend_from_slice(&[VERSION, TIMEOUT]),
            Self::Busy => out.extend_from_slice(&[VERSION, BUSY]),
            Self::Registered { session } => {
                out.extend_from_slice(&[VERSION, REGISTERED]);
                out.extend_from_slice(&session.to_le_bytes());
            }
            Self::Stale => out.extend_from_slice(&[VERSION, STALE]),
            Self::SessionExpired => out.extend_from_slice(&[VERSION, SESSION_EXPIRED]),
            Self::Overloaded => out.extend_from_slice(&[VERSION, OVERLOADED]),
            Self::Error(message) => {
                out.extend_from_slice(&[VERSION, ERROR]);
                put_bytes(out, message.as_bytes());
            }
            Self::Forbidden(message) => {
                out.extend_from_slice(&[VERSION, FORBIDDEN]);
                put_bytes(out, message.as_bytes());
            }
            Self::Members(info) => {
                out.extend_from_slice(&[VERSION, MEMBERS_REPLY]);
                info.encode(out);
            }
            Self::Status(s) => {
                out.extend_from_slice(&[VERSION, STATUS_REPLY]);
                out.extend_from_slice(&s.id.to_le_bytes());
                out.push(match s.role {
                    Role::Follower => 0,
                    Role::Candidate => 1,
                    Role::Leader => 2,
                });
                out.extend_from_slice(&s.term.to_le_bytes());
                put_option(out, s.leader);
                out.extend_from_slice(&s.commit_index.to_le_bytes());
                out.extend_from_slice(&s.last_applied.to_le_bytes());
                out.extend_from_slice(&s.last_log_index.to_le_bytes());
                if let Some(full) = &s.full {
                    put_full_status(out, full);
                }
            }
        }
        frame.finish()
    }

    /// Decodes a response from a frame's body.
    ///
    /// # Errors
    ///
    /// A [`DecodeError`] if the body is not a well-formed response.
    pub fn decode(mut body: Bytes) -> Result<Self, DecodeError> {
        let response = match get_header(&mut body)? {
            OK => Self::Ok {
                value: get_bytes(&mut body, "value", MAX_FRAME)?,
            },
            WRONG_LEADER => Self::WrongLeader {
                leader: get_option(&mut body)?,
            },
            TIMEOUT => Self::Timeout,
            BUSY => Self::Busy,
            REGISTERED => Self::Registered {
                session: get_u64(&mut body)?,
            },
            STALE => Self::Stale,
            SESSION_EXPIRED => Self::SessionExpired,
            OVERLOADED => Self::Overloaded,
            ERROR => {
                let message = get_bytes(&mut body, "message", MAX_FRAME)?;
                let message = std::str::from_utf8(&message)
                    .map_err(|_| DecodeError::Invalid("error message (not UTF-8)"))?;
                Self::Error(message.to_owned())
            }
            MEMBERS_REPLY => Self::Members(MembersInfo::decode(&mut body)?),
            FORBIDDEN => {
                let message = get_bytes(&mut body, "message", MAX_FRAME)?;
                let message = std::str::from_utf8(&message)
                    .map_err(|_| DecodeError::Invalid("refusal message (not UTF-8)"))?;
                Self::Forbidden(message.to_owned())
            }
            STATUS_REPLY => {
                let id = get_u64(&mut body)?;
                let role = match get_u8(&mut body)? {
                    0 => Role::Follower,
                    1 => Role::Candidate,
                    2 => Role::Leader,
                    _ => return Err(DecodeError::Invalid("role")),
                };
                let mut status = NodeStatus {
                    id,
                    role,
                    term: get_u64(&mut body)?,
                    leader: get_option(&mut body)?,
                    commit_index: get_u64(&mut body)?,
                    last_applied: get_u64(&mut body)?,
                    last_log_index: get_u64(&mut body)?,
                    full: None,
                };
                // Later versions may append fields: see the module docs.
                if body.first() == Some(&FULL_STATUS) {
                    body.advance(1);
                    status.full = Some(Box::new(get_full_status(&mut body, &status)?));
                }
                return Ok(Self::Status(status));
            }
            other => return Err(DecodeError::UnknownKind(other)),
        };
        expect_end(&body)?;
        Ok(response)
    }
}

/// A frame being appended to a buffer: reserves the length prefix, then fills it in.
struct FrameWriter<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
}

impl<'a> FrameWriter<'a> {
    fn start(out: &'a mut Vec<u8>) -> Self {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        Self { out, start }
    }

    fn abort(self, error: EncodeError) -> Result<(), EncodeError> {
        self.out.truncate(self.start);
        Err(error)
    }

    fn finish(self) -> Result<(), EncodeError> {
        let len = self.out.len() - self.start - 4;
        match u32::try_from(len) {
            Ok(len32) if len <= MAX_FRAME => {
                self.out[self.start..self.start + 4].copy_from_slice(&len32.to_le_bytes());
                Ok(())
            }
            _ => self.abort(EncodeError::FrameTooLarge {
                len,
                max: MAX_FRAME,
            }),
        }
    }
}

/// Appends `data` with its `u32` length. The caller has checked that it fits in a frame.
pub(crate) fn put_bytes(out: &mut Vec<u8>, data: &[u8]) {
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(data);
}

fn put_option(out: &mut Vec<u8>, value: Option<u64>) {
    out.push(u8::from(value.is_some()));
    out.extend_from_slice(&value.unwrap_or(0).to_le_bytes());
}

/// Appends the full status after a `Status` response's fields: see the module docs.
fn put_full_status(out: &mut Vec<u8>, full: &FullStatus) {
    let s = &full.status;
    out.push(FULL_STATUS);
    let sync_nanos = u64::try_from(s.sync_time.as_nanos()).unwrap_or(u64::MAX);
    for value in [
        s.last_log_term,
        s.durable_index,
        s.snapshot_index,
        s.log_entries,
        s.log_bytes,
        s.snapshots_installed,
        s.syncs,
        sync_nanos,
        s.elections_started,
        s.elections_won,
        s.step_downs,
        s.messages_in,
        s.messages_out,
    ] {
        out.extend_from_slice(&value.to_le_bytes());
    }
    out.push(u8::from(s.killed) | u8::from(s.lease) << 1);
    put_option(out, s.transfer_target.map(|t| t as u64));
    for value in [
        s.reads_confirmed,
        s.lease_reads,
        s.transfers_started,
        s.transfers_abandoned,
    ] {
        out.extend_from_slice(&value.to_le_bytes());
    }
    match &s.failure {
        None => out.push(0),
        Some(reason) => {
            out.push(1);
            let mut end = reason.len().min(MAX_FAILURE);
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            put_bytes(out, &reason.as_bytes()[..end]);
        }
    }
    let peers = &s.peers[..s.peers.len().min(MAX_STATUS_NODES)];
    out.push(peers.len() as u8);
    for p in peers {
        out.extend_from_slice(&(p.id as u64).to_le_bytes());
        out.extend_from_slice(&p.match_index.to_le_bytes());
        out.extend_from_slice(&p.next_index.to_le_bytes());
        out.push(match p.state {
            ProgressState::Probe => 0,
            ProgressState::Replicate => 1,
            ProgressState::Snapshot => 2,
        });
        out.extend_from_slice(&(p.inflight as u64).to_le_bytes());
    }
    let links = &full.links[..full.links.len().min(MAX_STATUS_NODES)];
    out.push(links.len() as u8);
    for l in links {
        out.push(u8::from(l.connected));
        for value in [
            l.connections,
            l.sent,
            l.bytes_sent,
            l.writes,
            l.received,
            l.bytes_received,
            l.dropped,
            l.inbox_overflow,
            l.rejected,
        ] {
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
    out.push(u8::from(s.disk_full) | u8::from(s.snapshotting) << 1);
    match &s.membership {
        None => out.push(0),
        Some(config) => {
            out.push(1);
            let encoded = config.membership.encode();
            debug_assert_eq!(encoded.len(), MEMBERSHIP_BYTES);
            out.extend_from_slice(&encoded);
            out.extend_from_slice(&config.index.to_le_bytes());
            out.push(u8::from(config.committed));
        }
    }
}

/// Decodes the configuration at the end of a full status (see the module docs): `None` from a
/// server that sends none, or one from before it was added (nothing left in `body`).
fn get_membership(body: &mut Bytes) -> Result<Option<MembershipStatus>, DecodeError> {
    if body.is_empty() {
        return Ok(None);
    }
    match get_u8(body)? {
        0 => return Ok(None),
        1 => {}
        _ => return Err(DecodeError::Invalid("configuration flag")),
    }
    if body.len() < MEMBERSHIP_BYTES {
        return Err(DecodeError::Truncated);
    }
    let membership = Membership::decode(&body[..MEMBERSHIP_BYTES])
        .map_err(|_| DecodeError::Invalid("configuration"))?;
    body.advance(MEMBERSHIP_BYTES);
    let index = get_u64(body)?;
    let committed = match get_u8(body)? {
        0 => false,
        1 => true,
        _ => return Err(DecodeError::Invalid("configuration committed flag")),
    };
    Ok(Some(MembershipStatus {
        membership,
        index,
        committed,
    }))
}

/// Decodes the full status after its tag, the fields every server sends being `base`: see the
/// module docs. Bytes after it are left in `body`.
fn get_full_status(body: &mut Bytes, base: &NodeStatus) -> Result<FullStatus, DecodeError> {
    let id = usize::try_from(base.id).map_err(|_| DecodeError::Invalid("node id"))?;
    let leader = match base.leader {
        None => None,
        Some(l) => Some(usize::try_from(l).map_err(|_| DecodeError::Invalid("leader id"))?),
    };
    let mut counters = [0u64; 13];
    for value in &mut counters {
        *value = get_u64(body)?;
    }
    let [
        last_log_term,
        durable_index,
        snapshot_index,
        log_entries,
        log_bytes,
        snapshots_installed,
        syncs,
        sync_nanos,
        elections_started,
        elections_won,
        step_downs,
        messages_in,
        messages_out,
    ] = counters;
    let flags = get_u8(body)?;
    if flags & !0b11 != 0 {
        return Err(DecodeError::Invalid("status flags"));
    }
    let transfer_target = match get_option(body)? {
        None => None,
        Some(t) => Some(usize::try_from(t).map_err(|_| DecodeError::Invalid("transfer target"))?),
    };
    let mut reads = [0u64; 4];
    for value in &mut reads {
        *value = get_u64(body)?;
    }
    let [
        reads_confirmed,
        lease_reads,
        transfers_started,
        transfers_abandoned,
    ] = reads;
    let failure = match get_u8(body)? {
        0 => None,
        1 => {
            let reason = get_bytes(body, "failure", MAX_FAILURE)?;
            let reason = std::str::from_utf8(&reason)
                .map_err(|_| DecodeError::Invalid("failure (not UTF-8)"))?;
            Some(Arc::from(reason))
        }
        _ => return Err(DecodeError::Invalid("failure flag")),
    };
    let count = get_count(body, PEER_BYTES)?;
    let mut peers = Vec::with_capacity(count);
    for _ in 0..count {
        let id = usize::try_from(get_u64(body)?).map_err(|_| DecodeError::Invalid("peer id"))?;
        let match_index = get_u64(body)?;
        let next_index = get_u64(body)?;
        let state = match get_u8(body)? {
            0 => ProgressState::Probe,
            1 => ProgressState::Replicate,
            2 => ProgressState::Snapshot,
            _ => return Err(DecodeError::Invalid("progress state")),
        };
        let inflight =
            usize::try_from(get_u64(body)?).map_err(|_| DecodeError::Invalid("in flight"))?;
        peers.push(PeerStatus {
            id,
            match_index,
            next_index,
            state,
            inflight,
        });
    }
    let count = get_count(body, LINK_BYTES)?;
    let mut links = Vec::with_capacity(count);
    for _ in 0..count {
        let connected = match get_u8(body)? {
            0 => false,
            1 => true,
            _ => return Err(DecodeError::Invalid("link flag")),
        };
        let mut counters = [0u64; 9];
        for value in &mut counters {
            *value = get_u64(body)?;
        }
        let [
            connections,
            sent,
            bytes_sent,
            writes,
            received,
            bytes_received,
            dropped,
            inbox_overflow,
            rejected,
        ] = counters;
        links.push(LinkStats {
            connected,
            connections,
            sent,
            bytes_sent,
            writes,
            received,
            bytes_received,
            dropped,
            inbox_overflow,
            rejected,
        });
    }
    // Added after the rest: a server from before sends none.
    let storage_flags = if body.is_empty() { 0 } else { get_u8(body)? };
    if storage_flags & !0b11 != 0 {
        return Err(DecodeError::Invalid("storage flags"));
    }
    let membership = get_membership(body)?;
    let status = Status {
        id,
        role: base.role,
        term: base.term,
        leader,
        commit_index: base.commit_index,
        last_applied: base.last_applied,
        last_log_index: base.last_log_index,
        durable_index,
        snapshot_index,
        log_entries,
        log_bytes,
        snapshots_installed,
        syncs,
        sync_time: Duration::from_nanos(sync_nanos),
        disk_full: storage_flags & 1 != 0,
        snapshotting: storage_flags & 2 != 0,
        failure,
        last_log_term,
        peers: peers.into_iter().collect(),
        elections_started,
        elections_won,
        step_downs,
        messages_in,
        messages_out,
        killed: flags & 1 != 0,
        transfer_target,
        lease: flags & 2 != 0,
        reads_confirmed,
        lease_reads,
        transfers_started,
        transfers_abandoned,
        membership,
    };
    Ok(FullStatus { status, links })
}

/// A `u8` count of records of `size` bytes each, checked against the bytes left in `body`
/// before anything is allocated for them.
fn get_count(body: &mut Bytes, size: usize) -> Result<usize, DecodeError> {
    let count = usize::from(get_u8(body)?);
    if count * size > body.len() {
        return Err(DecodeError::Truncated);
    }
    Ok(count)
}

fn get_header(body: &mut Bytes) -> Result<u8, DecodeError> {
    let version = get_u8(body)?;
    if version != VERSION {
        return Err(DecodeError::UnknownVersion(version));
    }
    get_u8(body)
}

pub(crate) fn get_u8(body: &mut Bytes) -> Result<u8, DecodeError> {
    body.try_get_u8().map_err(|_| DecodeError::Truncated)
}

pub(crate) fn get_u64(body: &mut Bytes) -> Result<u64, DecodeError> {
    body.try_get_u64_le().map_err(|_| DecodeError::Truncated)
}

/// A byte string with its `u32` length, at most `max` bytes long, as a slice of `body`.
pub(crate) fn get_bytes(
    body: &mut Bytes,
    field: &'static str,
    max: usize,
) -> Result<Bytes, DecodeError> {
    let len = take_field(&mut &body[..], field, max)?.len();
    body.advance(4);
    Ok(body.split_to(len))
}

/// A byte string with its `u32` length, at most `max` bytes long, borrowed from `data`, which
/// is advanced past it.
pub(crate) fn take_field<'a>(
    data: &mut &'a [u8],
    field: &'static str,
    max: usize,
) -> Result<&'a [u8], DecodeError> {
    let len = data.try_get_u32_le().map_err(|_| DecodeError::Truncated)?;
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > max {
        return Err(DecodeError::TooLong { field, len, max });
    }
    if data.len() < len {
        return Err(DecodeError::Truncated);
    }
    let (taken, rest) = data.split_at(len);
    *data = rest;
    Ok(taken)
}

fn get_option(body: &mut Bytes) -> Result<Option<u64>, DecodeError> {
    let present = get_u8(body)?;
    let value = get_u64(body)?;
    match present {
        0 => Ok(None),
        1 => Ok(Some(value)),
        _ => Err(DecodeError::Invalid("option flag")),
    }
}

pub(crate) fn expect_end(body: &Bytes) -> Result<(), DecodeError> {
    match body.len() {
        0 => Ok(()),
        n => Err(DecodeError::TrailingBytes(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
    }

    fn request() -> impl Strategy<Value = Request> {
        prop_oneof![
            (any::<[u64; 3]>(), bytes(40)).prop_map(|([session, seq, ack], key)| Request::Get {
                session,
                seq,
                ack,
                key
            }),
            (any::<[u64; 3]>(), bytes(40), bytes(200)).prop_map(
                |([session, seq, ack], key, value)| Request::Put {
                    session,
                    seq,
                    ack,
                    key,
                    value
                }
            ),
            (any::<[u64; 3]>(), bytes(40), bytes(200)).prop_map(
                |([session, seq, ack], key, value)| Request::Append {
                    session,
                    seq,
                    ack,
                    key,
                    value
                }
            ),
            Just(Request::Status),
            Just(Request::Register),
            any::<u64>().prop_map(|target| Request::Transfer { target }),
            Just(Request::Members),
            (any::<u64>(), addr(), addr()).prop_map(|(id, peer, client)| Request::AddMember {
                id,
                peer,
                client
            }),
            any::<u64>().prop_map(|id| Request::Promote { id }),
            any::<u64>().prop_map(|id| Request::RemoveMember { id }),
        ]
    }

    fn addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
            (any::<[u16; 8]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        ]
    }

    /// Node ids as the configuration's bit sets carry them: below 64, in order, once each.
    fn ids() -> impl Strategy<Value = Vec<u64>> {
        any::<u64>().prop_map(|mask| (0..64).filter(|i| mask & (1 << i) != 0).collect())
    }

    fn members_info() -> impl Strategy<Value = MembersInfo> {
        let node = (
            any::<u64>(),
            proptest::option::of(addr()),
            proptest::option::of(addr()),
            any::<Option<u64>>(),
        )
            .prop_map(|(id, peer, client, match_index)| MemberInfo {
                id,
                peer,
                client,
                match_index,
            });
        (
            any::<[u64; 5]>(),
            any::<Option<u64>>(),
            any::<bool>(),
            [ids(), ids(), ids(), ids()],
            proptest::collection::vec(node, 0..8),
        )
            .prop_map(
                |(
                    [cluster, node, config_index, commit_index, last_log_index],
                    leader,
                    committed,
                    [voters, learners, outgoing, removed],
                    nodes,
                )| MembersInfo {
                    cluster,
                    node,
                    leader,
                    config_index,
                    committed,
                    commit_index,
                    last_log_index,
                    voters,
                    learners,
                    outgoing,
                    removed,
                    nodes,
                },
            )
    }

    fn role() -> impl Strategy<Value = Role> {
        prop_oneof![
            Just(Role::Follower),
            Just(Role::Candidate),
            Just(Role::Leader)
        ]
    }

    fn progress_state() -> impl Strategy<Value = ProgressState> {
        prop_oneof![
            Just(ProgressState::Probe),
            Just(ProgressState::Replicate),
            Just(ProgressState::Snapshot)
        ]
    }

    fn peer() -> impl Strategy<Value = PeerStatus> {
        (
            0..16usize,
            any::<u64>(),
            any::<u64>(),
            progress_state(),
            any::<u32>(),
        )
            .prop_map(
                |(id, match_index, next_index, state, inflight)| PeerStatus {
                    id,
                    match_index,
                    next_index,
                    state,
                    inflight: inflight as usize,
                },
            )
    }

    fn link() -> impl Strategy<Value = LinkStats> {
        (any::<bool>(), any::<[u64; 9]>()).prop_map(|(connected, c)| LinkStats {
            connected,
            connections: c[0],
            sent: c[1],
            bytes_sent: c[2],
            writes: c[3],
            received: c[4],
            bytes_received: c[5],
            dropped: c[6],
            inbox_overflow: c[7],
            rejected: c[8],
        })
    }

    /// Any configuration a node can have in force: voters, learners, outgoing voters (joint
    /// when any), with the index of its entry.
    fn membership() -> impl Strategy<Value = MembershipStatus> {
        (any::<[u64; 4]>(), any::<bool>()).prop_filter_map(
            "at least one voter",
            |([voters, learners, outgoing, index], committed)| {
                let ids = |bits: u64| (0..64).filter(move |i| bits >> i & 1 == 1);
                let learners = learners & !voters & !outgoing;
                let target = Membership::new(ids(voters), ids(learners)).ok()?;
                let membership = match outgoing {
                    0 => target,
                    _ => Membership::new(ids(outgoing), [])
                        .ok()?
                        .enter_joint(&target)
                        .ok()?,
                };
                Some(MembershipStatus {
                    membership,
                    index,
                    committed,
                })
            },
        )
    }

    /// An engine status with any value in every field (ids small enough for any `usize`).
    fn engine_status() -> impl Strategy<Value = Status> {
        let head = (
            any::<u32>(),
            role(),
            any::<u64>(),
            any::<Option<u32>>(),
            any::<[u64; 7]>(),
            proptest::option::of(membership()),
        );
        let counters = (
            any::<[u64; 7]>(),
            any::<u64>(),
            proptest::option::of(".{0,40}"),
            proptest::collection::vec(peer(), 0..9),
            any::<(bool, bool, bool, bool)>(),
            any::<Option<u32>>(),
            any::<[u64; 4]>(),
        );
        (head, counters).prop_map(
            |(
                (id, role, term, leader, indices, membership),
                (
                    counts,
                    sync_nanos,
                    failure,
                    peers,
                    (killed, lease, disk_full, snapshotting),
                    transfer,
                    reads,
                ),
            )| Status {
                id: id as usize,
                role,
                term,
                leader: leader.map(|l| l as usize),
                commit_index: indices[0],
                last_applied: indices[1],
                last_log_index: indices[2],
                durable_index: indices[3],
                snapshot_index: indices[4],
                log_entries: indices[5],
                log_bytes: indices[6],
                snapshots_installed: counts[0],
                syncs: counts[1],
                sync_time: Duration::from_nanos(sync_nanos),
                disk_full,
                snapshotting,
                failure: failure.map(Arc::from),
                last_log_term: counts[2],
                peers: peers.into_iter().collect(),
                elections_started: counts[3],
                elections_won: counts[4],
                step_downs: counts[5],
                messages_in: counts[6],
                messages_out: reads[0] ^ counts[0],
                killed,
                transfer_target: transfer.map(|t| t as usize),
                lease,
                reads_confirmed: reads[0],
                lease_reads: reads[1],
                transfers_started: reads[2],
                transfers_abandoned: reads[3],
                membership,
            },
        )
    }

    /// Bytes at the end of a full status's body that hold its configuration.
    fn membership_bytes(status: &Status) -> usize {
        1 + status.membership.map_or(0, |_| MEMBERSHIP_BYTES + 8 + 1)
    }

    /// A status response: the compact fields alone, or in full.
    fn node_status() -> impl Strategy<Value = NodeStatus> {
        let compact = (
            any::<u64>(),
            role(),
            any::<u64>(),
            any::<Option<u64>>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
        )
            .prop_map(
                |(id, role, term, leader, commit_index, last_applied, last_log_index)| NodeStatus {
                    id,
                    role,
                    term,
                    leader,
                    commit_index,
                    last_applied,
                    last_log_index,
                    full: None,
                },
            );
        let full = (engine_status(), proptest::collection::vec(link(), 0..9))
            .prop_map(|(status, links)| NodeStatus::with_full(&status, links));
        prop_oneof![compact, full]
    }

    fn response() -> impl Strategy<Value = Response> {
        prop_oneof![
            bytes(200).prop_map(|value| Response::Ok { value }),
            any::<Option<u64>>().prop_map(|leader| Response::WrongLeader { leader }),
            Just(Response::Timeout),
            Just(Response::Busy),
            ".{0,40}".prop_map(Response::Error),
            node_status().prop_map(Response::Status),
            any::<u64>().prop_map(|session| Response::Registered { session }),
            Just(Response::Stale),
            Just(Response::SessionExpired),
            Just(Response::Overloaded),
            ".{0,40}".prop_map(Response::Forbidden),
            members_info().prop_map(Response::Members),
        ]
    }

    /// The length of a `Status` response's body up to the end of its compact fields.
    const COMPACT_STATUS: usize = 2 + 8 + 1 + 8 + 9 + 3 * 8;

    /// The body of an encoded frame, after checking that its prefix is its length.
    fn frame_body(frame: &[u8]) -> Bytes {
        let len = u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - 4, "the prefix is the body's length");
        Bytes::copy_from_slice(&frame[4..])
    }

    proptest! {
        #[test]
        fn requests_round_trip(request in request()) {
            let mut out = Vec::new();
            request.encode(&mut out).unwrap();
            let mut reader = &out[..];
            let frame = read_frame(&mut reader, MAX_FRAME).unwrap().unwrap();
            prop_assert_eq!(&frame, &frame_body(&out));
            prop_assert_eq!(Request::decode(frame).unwrap(), request);
        }

        #[test]
        fn writes_decode_in_place_as_they_decode_whole(
            request in request(),
            cut in any::<prop::sample::Index>(),
            flip in any::<(prop::sample::Index, u8)>(),
        ) {
            let mut out = Vec::new();
            request.encode(&mut out).unwrap();
            let whole = frame_body(&out);
            let mut flipped = whole.to_vec();
            let at = flip.0.index(flipped.len());
            flipped[at] ^= flip.1;
            let cut = whole.slice(..cut.index(whole.len() + 1));
            for body in [whole, cut, Bytes::from(flipped)] {
                let in_place = WriteRef::decode(&body);
                match Request::decode(body.clone()) {
                    Ok(Request::Put { session, seq, ack, key, value }) => prop_assert_eq!(
                        in_place,
                        Some(Ok(WriteRef { append: false, session, seq, ack, key: &key, value: &value }))
                    ),
                    Ok(Request::Append { session, seq, ack, key, value }) => prop_assert_eq!(
                        in_place,
                        Some(Ok(WriteRef { append: true, session, seq, ack, key: &key, value: &value }))
                    ),
                    Ok(_) => prop_assert_eq!(in_place, None),
                    Err(e) => match in_place {
                        None => {}
                        Some(in_place) => prop_assert_eq!(in_place, Err(e)),
                    },
                }
            }
        }

        #[test]
        fn responses_round_trip(response in response()) {
            let mut out = Vec::new();
            response.encode(&mut out).unwrap();
            prop_assert_eq!(Response::decode(frame_body(&out)).unwrap(), response);
        }

        #[test]
        fn every_truncated_request_is_an_error(request in request()) {
            let mut out = Vec::new();
            request.encode(&mut out).unwrap();
            let whole = frame_body(&out);
            for len in 0..whole.len() {
                prop_assert!(Request::decode(whole.slice(..len)).is_err(), "cut at {}", len);
            }
            // A frame cut anywhere errors too (or reads as nothing, when cut before it starts).
            for len in 1..out.len() {
                let mut reader = &out[..len];
                prop_assert!(read_frame(&mut reader, MAX_FRAME).is_err(), "frame cut at {}", len);
            }
        }

        #[test]
        fn every_truncated_response_is_an_error(response in response()) {
            let mut out = Vec::new();
            response.encode(&mut out).unwrap();
            let whole = frame_body(&out);
            for len in 0..whole.len() {
                let decoded = Response::decode(whole.slice(..len));
                match &response {
                    // Cut right after its compact fields, a full status reads as an older
                    // server's answer: what an older dashboard reads of it.
                    Response::Status(status) if len == COMPACT_STATUS => {
                        let compact = NodeStatus { full: None, ..status.clone() };
                        prop_assert_eq!(decoded, Ok(Response::Status(compact)));
                    }
                    // Cut before its configuration, a full status reads as the answer of a
                    // server from before it; cut before its storage flags too, of a server
                    // from before them.
                    Response::Status(NodeStatus { full: Some(full), .. })
                        if len + membership_bytes(&full.status) == whole.len() =>
                    {
                        let mut older = response.clone();
                        let Response::Status(s) = &mut older else { unreachable!() };
                        s.full.as_mut().expect("a full status").status.membership = None;
                        prop_assert_eq!(decoded, Ok(older));
                    }
                    Response::Status(NodeStatus { full: Some(full), .. })
                        if len + membership_bytes(&full.status) + 1 == whole.len() =>
                    {
                        let mut older = response.clone();
                        let Response::Status(s) = &mut older else { unreachable!() };
                        let status = &mut s.full.as_mut().expect("a full status").status;
                        (status.disk_full, status.snapshotting) = (false, false);
                        status.membership = None;
                        prop_assert_eq!(decoded, Ok(older));
                    }
                    _ => prop_assert!(decoded.is_err(), "cut at {}", len),
                }
            }
        }

        #[test]
        fn a_full_status_is_read_whole_past_bytes_it_does_not_know(
            status in node_status(),
            extra in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let response = Response::Status(status);
            let mut out = Vec::new();
            response.encode(&mut out).unwrap();
            let mut body = frame_body(&out).to_vec();
            let compact = matches!(&response, Response::Status(s) if s.full.is_none());
            // After the compact fields alone, bytes that do not start with the tag.
            if compact && extra.first() == Some(&FULL_STATUS) {
                return Ok(());
            }
            body.extend_from_slice(&extra);
            prop_assert_eq!(Response::decode(Bytes::from(body)), Ok(response));
        }

        #[test]
        fn garbage_never_panics(garbage in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Request::decode(Bytes::from(garbage.clone()));
            let _ = Response::decode(Bytes::from(garbage.clone()));
            let mut reader = &garbage[..];
            while let Ok(Some(body)) = read_frame(&mut reader, 1 << 10) {
                let _ = Request::decode(body);
            }
        }

        #[test]
        fn garbage_after_a_valid_header_never_panics(
            kind in any::<u8>(),
            garbage in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let mut body = vec![VERSION, kind];
            body.extend_from_slice(&garbage);
            let _ = Request::decode(Bytes::from(body.clone()));
            let _ = Response::decode(Bytes::from(body));
        }

        #[test]
        fn garbage_after_a_full_status_tag_never_panics(
            garbage in proptest::collection::vec(any::<u8>(), 0..1_000),
        ) {
            let mut body = vec![VERSION, STATUS_REPLY];
            body.resize(COMPACT_STATUS, 0);
            body.push(FULL_STATUS);
            body.extend_from_slice(&garbage);
            let _ = Response::decode(Bytes::from(body));
        }
    }

    #[test]
    fn trailing_bytes_are_refused_except_after_a_status() {
        let mut out = Vec::new();
        Request::Get {
            session: 1,
            seq: 2,
            ack: 2,
            key: Bytes::from_static(b"k"),
        }
        .encode(&mut out)
        .unwrap();
        let mut body = frame_body(&out).to_vec();
        body.push(0);
        assert_eq!(
            Request::decode(Bytes::from(body)),
            Err(DecodeError::TrailingBytes(1))
        );

        let status = Response::Status(NodeStatus {
            id: 1,
            role: Role::Leader,
            term: 3,
            leader: Some(1),
            commit_index: 4,
            last_applied: 4,
            last_log_index: 5,
            full: None,
        });
        let mut out = Vec::new();
        status.encode(&mut out).unwrap();
        let mut extended = frame_body(&out).to_vec();
        extended.extend_from_slice(&[9; 16]);
        assert_eq!(Response::decode(Bytes::from(extended)), Ok(status));
    }

    #[test]
    fn unknown_versions_and_kinds_are_refused() {
        // Version 1, before sessions, is refused: its requests carry no session.
        assert_eq!(
            Request::decode(Bytes::from_static(&[1, GET])),
            Err(DecodeError::UnknownVersion(1))
        );
        assert_eq!(
            Request::decode(Bytes::from_static(&[VERSION, 0x7f])),
            Err(DecodeError::UnknownKind(0x7f))
        );
        assert_eq!(
            Response::decode(Bytes::from_static(&[VERSION, GET])),
            Err(DecodeError::UnknownKind(GET))
        );
        assert_eq!(
            Response::decode(Bytes::from_static(&[
                VERSION,
                WRONG_LEADER,
                2,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0
            ])),
            Err(DecodeError::Invalid("option flag"))
        );
    }

    #[test]
    fn an_oversized_key_is_refused_both_ways() {
        let key = Bytes::from(vec![b'k'; MAX_KEY + 1]);
        let request = Request::Get {
            session: 1,
            seq: 1,
            ack: 1,
            key: key.clone(),
        };
        let mut out = vec![7];
        assert_eq!(
            request.encode(&mut out),
            Err(EncodeError::KeyTooLarge {
                len: MAX_KEY + 1,
                max: MAX_KEY
            })
        );
        assert_eq!(out, [7], "a failed encoding leaves the buffer as it was");
        // Hand-built, as a hostile client would send it.
        let mut body = vec![VERSION, GET];
        body.extend_from_slice(&[0; 24]);
        put_bytes(&mut body, &key);
        assert_eq!(
            Request::decode(Bytes::from(body)),
            Err(DecodeError::TooLong {
                field: "key",
                len: MAX_KEY + 1,
                max: MAX_KEY
            })
        );
    }

    #[test]
    fn an_oversized_length_prefix_is_refused_without_reading_on() {
        // Announces 4 GiB - 1 and sends 3 bytes: refused at the prefix, before any allocation
        // of that size; the reader is left just after the prefix.
        let wire = [0xff, 0xff, 0xff, 0xff, 1, 2, 3];
        let mut reader = &wire[..];
        match read_frame(&mut reader, MAX_FRAME) {
            Err(FrameError::TooLarge { len, max }) => {
                assert_eq!((len, max), (u64::from(u32::MAX), MAX_FRAME));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(reader, [1, 2, 3]);
        // Within the limit but longer than what follows: the stream ends inside the frame.
        let wire = [100, 0, 0, 0, 1, 2, 3];
        match read_frame(&mut &wire[..], MAX_FRAME) {
            Err(FrameError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof),
            other => panic!("{other:?}"),
        }
        // An empty stream is a clean end.
        assert!(matches!(read_frame(&mut &[][..], MAX_FRAME), Ok(None)));
    }

    #[test]
    fn a_value_too_large_for_a_frame_is_refused() {
        let response = Response::Ok {
            value: Bytes::from(vec![0; MAX_FRAME]),
        };
        let mut out = Vec::new();
        assert!(matches!(
            response.encode(&mut out),
            Err(EncodeError::FrameTooLarge { .. })
        ));
        assert!(out.is_empty());
    }

    /// A full status of node 1 leading term 3, with one peer and three links.
    fn leader_status() -> NodeStatus {
        let mut status = Status {
            id: 1,
            role: Role::Leader,
            term: 3,
            leader: Some(1),
            commit_index: 4,
            last_applied: 4,
            last_log_index: 5,
            durable_index: 5,
            snapshot_index: 0,
            log_entries: 5,
            log_bytes: 80,
            snapshots_installed: 0,
            syncs: 7,
            sync_time: Duration::from_micros(300),
            disk_full: true,
            snapshotting: false,
            failure: None,
            last_log_term: 3,
            peers: Default::default(),
            elections_started: 1,
            elections_won: 1,
            step_downs: 0,
            messages_in: 10,
            messages_out: 12,
            killed: false,
            transfer_target: Some(2),
            lease: true,
            reads_confirmed: 0,
            lease_reads: 0,
            transfers_started: 1,
            transfers_abandoned: 0,
            membership: Some(MembershipStatus {
                membership: Membership::new([0, 1], [])
                    .unwrap()
                    .enter_joint(&Membership::new([1, 2], [3]).unwrap())
                    .unwrap(),
                index: 4,
                committed: true,
            }),
        };
        status.peers.push(PeerStatus {
            id: 0,
            match_index: 5,
            next_index: 6,
            state: ProgressState::Replicate,
            inflight: 0,
        });
        let link = LinkStats {
            connected: true,
            sent: 12,
            ..LinkStats::default()
        };
        NodeStatus::with_full(&status, vec![link, LinkStats::default(), link])
    }

    fn encoded_body(response: &Response) -> Vec<u8> {
        let mut out = Vec::new();
        response.encode(&mut out).unwrap();
        frame_body(&out).to_vec()
    }

    #[test]
    fn a_full_status_is_refused_where_a_field_cannot_hold_its_value() {
        let body = encoded_body(&Response::Status(leader_status()));
        let tag = COMPACT_STATUS;
        // Offsets in the full status, from its tag.
        let flags = tag + 1 + 13 * 8;
        let failure = flags + 1 + 9 + 4 * 8;
        let peers = failure + 1;
        let links = peers + 1 + PEER_BYTES;
        let config = body.len() - (1 + MEMBERSHIP_BYTES + 8 + 1);
        let storage = config - 1;
        let cases: [(usize, u8, DecodeError); 11] = [
            (flags, 0b100, DecodeError::Invalid("status flags")),
            (storage, 0b100, DecodeError::Invalid("storage flags")),
            (config, 2, DecodeError::Invalid("configuration flag")),
            // The configuration's version byte, then its voters: none is no configuration.
            (config + 1, 9, DecodeError::Invalid("configuration")),
            (config + 2, 0, DecodeError::Invalid("configuration")),
            (
                body.len() - 1,
                2,
                DecodeError::Invalid("configuration committed flag"),
            ),
            (flags + 1, 2, DecodeError::Invalid("option flag")),
            (failure, 2, DecodeError::Invalid("failure flag")),
            (peers + 1 + 3 * 8, 3, DecodeError::Invalid("progress state")),
            (links + 1, 2, DecodeError::Invalid("link flag")),
            // More links than the bytes left could hold: refused before allocating for them.
            (links, 255, DecodeError::Truncated),
        ];
        for (case, (at, value, error)) in cases.into_iter().enumerate() {
            let mut bad = body.clone();
            bad[at] = value;
            assert_eq!(
                Response::decode(Bytes::from(bad)),
                Err(error),
                "case {case}"
            );
        }
        // A tag this decoder does not know: a later layout, left alone.
        let mut later = body.clone();
        later[tag] = 2;
        let compact = NodeStatus {
            full: None,
            ..leader_status()
        };
        assert_eq!(
            Response::decode(Bytes::from(later)),
            Ok(Response::Status(compact))
        );
        // From a server before the configuration: none.
        let before = body[..config].to_vec();
        let Ok(Response::Status(decoded)) = Response::decode(Bytes::from(before)) else {
            panic!("a status without its configuration");
        };
        assert_eq!(decoded.full.unwrap().status.membership, None);
        // A configuration cut short is refused.
        assert_eq!(
            Response::decode(Bytes::copy_from_slice(&body[..config + 10])),
            Err(DecodeError::Truncated)
        );
        // From a server before the storage flags: none set.
        let older = body[..storage].to_vec();
        let Ok(Response::Status(decoded)) = Response::decode(Bytes::from(older)) else {
            panic!("a status without its storage flags");
        };
        let full = decoded.full.unwrap();
        assert!(!full.status.disk_full, "no storage flags: not full");
        let Ok(Response::Status(round_trip)) = Response::decode(Bytes::from(body)) else {
            panic!("a status");
        };
        assert!(
            round_trip.full.unwrap().status.disk_full,
            "the flag travels"
        );
    }

    #[test]
    fn a_long_failure_is_cut_at_a_character_boundary() {
        let mut status = leader_status();
        let full = status.full.as_mut().unwrap();
        // 'é' is two bytes: MAX_FAILURE falls inside the last one that fits.
        full.status.failure = Some(Arc::from(format!("x{}", "é".repeat(MAX_FAILURE)).as_str()));
        let body = encoded_body(&Response::Status(status));
        let Ok(Response::Status(decoded)) = Response::decode(Bytes::from(body)) else {
            panic!("a status");
        };
        let failure = decoded.full.unwrap().status.failure.unwrap();
        assert_eq!(failure.len(), MAX_FAILURE - 1);
        assert!(failure.starts_with("xé") && failure.ends_with('é'));
    }

    #[test]
    fn a_transfer_names_its_target() {
        let mut out = Vec::new();
        Request::Transfer { target: 2 }.encode(&mut out).unwrap();
        assert_eq!(&out[4..], [VERSION, TRANSFER, 2, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            Request::decode(Bytes::from_static(&[VERSION, TRANSFER, 2])),
            Err(DecodeError::Truncated)
        );
    }

    #[test]
    fn session_requests_and_answers_have_their_layout() {
        let le = |v: u64| v.to_le_bytes();
        let mut put = vec![VERSION, PUT];
        for id in [1, 2, 3] {
            put.extend_from_slice(&le(id));
        }
        put.extend_from_slice(&[1, 0, 0, 0, b'k', 1, 0, 0, 0, b'v']);
        let mut registered = vec![VERSION, REGISTERED];
        registered.extend_from_slice(&le(5));
        let requests: [(Request, Vec<u8>); 2] = [
            (
                Request::Put {
                    session: 1,
                    seq: 2,
                    ack: 3,
                    key: Bytes::from_static(b"k"),
                    value: Bytes::from_static(b"v"),
                },
                put,
            ),
            (Request::Register, vec![VERSION, REGISTER]),
        ];
        for (case, (request, body)) in requests.into_iter().enumerate() {
            let mut out = Vec::new();
            request.encode(&mut out).unwrap();
            assert_eq!(&out[4..], body, "request {case}");
        }
        let responses: [(Response, Vec<u8>); 5] = [
            (Response::Registered { session: 5 }, registered),
            (Response::Stale, vec![VERSION, STALE]),
            (Response::SessionExpired, vec![VERSION, SESSION_EXPIRED]),
            (Response::Overloaded, vec![VERSION, OVERLOADED]),
            (
                Response::Forbidden("no".into()),
                vec![VERSION, FORBIDDEN, 2, 0, 0, 0, b'n', b'o'],
            ),
        ];
        for (case, (response, body)) in responses.into_iter().enumerate() {
            assert_eq!(encoded_body(&response), body, "response {case}");
        }
        let cases: [&[u8]; 3] = [
            &[VERSION, REGISTERED, 5, 0, 0],
            &[VERSION, STALE, 0],
            &[VERSION, REGISTER, 0],
        ];
        for (case, body) in cases.into_iter().enumerate() {
            let body = Bytes::copy_from_slice(body);
            assert!(Response::decode(body.clone()).is_err(), "case {case}");
            assert!(Request::decode(body).is_err(), "case {case}");
        }
    }

    /// A reader that returns at most `chunk` bytes per call.
    struct Trickle<'a> {
        data: &'a [u8],
        chunk: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.chunk.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn framed(bodies: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for b in bodies {
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(b);
        }
        out
    }

    #[test]
    fn frame_reader_cuts_frames_whatever_the_reads_return() {
        let big = vec![7u8; 100_000];
        let bodies: [&[u8]; 4] = [b"one", b"", &big, b"four"];
        let stream = framed(&bodies);
        for (case, chunk) in [1usize, 3, 4096, 1 << 20].into_iter().enumerate() {
            let mut reader = FrameReader::new(
                Trickle {
                    data: &stream,
                    chunk,
                },
                1 << 20,
            );
            for (i, body) in bodies.iter().enumerate() {
                let got = reader.next_frame().expect("a frame").expect("not the end");
                assert_eq!(&got[..], *body, "case {case}: frame {i}");
            }
            assert!(
                reader.next_frame().expect("clean end").is_none(),
                "case {case}"
            );
        }
    }

    #[test]
    fn frame_reader_refuses_what_read_frame_refuses() {
        // A prefix above the maximum.
        let stream = framed(&[&[0u8; 100]]);
        let mut reader = FrameReader::new(&stream[..], 99);
        assert!(matches!(
            reader.next_frame(),
            Err(FrameError::TooLarge { len: 100, max: 99 })
        ));
        // The stream ends inside a prefix, and inside a body.
        for (case, cut) in [2usize, 10].into_iter().enumerate() {
            let mut reader = FrameReader::new(&stream[..cut], 1 << 20);
            match reader.next_frame() {
                Err(FrameError::Io(e)) => {
                    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "case {case}")
                }
                other => panic!("case {case}: {other:?}"),
            }
        }
    }
}
