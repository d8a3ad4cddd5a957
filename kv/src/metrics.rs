//! The metrics of the key-value service and of a node's links to its peers, beside the
//! engine's ([`zeroraft_engine::metrics`]): declared once here ([`METRICS`]), reported through
//! the same `metrics` facade.
//!
//! Client requests are counted by kind and outcome on each connection's answering thread, in
//! a plain table (`RequestTally`) that is handed to the recorder whenever a batch of answers
//! is written: no shared counter is touched per request. The peer links' counters are the TCP
//! transport's own ([`LinkStats`]), copied when metrics are scraped (`LinkMetrics`).

use metrics::{Counter, Gauge, counter, gauge};
use zeroraft_engine::metrics::{Kind, Metric, Unit};
use zeroraft_transport::tcp::LinkStats;

use crate::protocol::{Request, Response};

/// Counter: client requests, by `kind` and `outcome`.
pub const CLIENT_REQUESTS: &str = "zeroraft_client_requests_total";
/// Gauge: client connections open.
pub const CLIENT_CONNECTIONS: &str = "zeroraft_client_connections";
/// Counter: client connections refused.
pub const CLIENT_CONNECTIONS_REFUSED: &str = "zeroraft_client_connections_refused_total";
/// Gauge: whether the link to a peer is up.
pub const PEER_CONNECTED: &str = "zeroraft_peer_connected";
/// Counter: connections established to a peer.
pub const PEER_CONNECTIONS: &str = "zeroraft_peer_connections_total";
/// Counter: messages sent to a peer.
pub const PEER_MESSAGES_SENT: &str = "zeroraft_peer_messages_sent_total";
/// Counter: messages received from a peer.
pub const PEER_MESSAGES_RECEIVED: &str = "zeroraft_peer_messages_received_total";
/// Counter: bytes sent to a peer.
pub const PEER_BYTES_SENT: &str = "zeroraft_peer_sent_bytes_total";
/// Counter: bytes received from a peer.
pub const PEER_BYTES_RECEIVED: &str = "zeroraft_peer_received_bytes_total";
/// Counter: messages dropped on a peer link, by `direction`.
pub const PEER_DROPPED: &str = "zeroraft_peer_messages_dropped_total";

const PEER: &[&str] = &["node", "peer"];

/// The metrics of the service and of the peer links.
pub const METRICS: &[Metric] = &[
    Metric {
        name: CLIENT_REQUESTS,
        kind: Kind::Counter,
        unit: None,
        labels: &["node", "kind", "outcome"],
        help: "Client requests answered, by kind (register, get, put, append, status, transfer, \
               members, malformed) and outcome (ok, wrong_leader, busy, timeout, stale, session_expired, \
               error; error includes a request refused for the connection's certificate).",
    },
    Metric {
        name: CLIENT_CONNECTIONS,
        kind: Kind::Gauge,
        unit: None,
        labels: &["node"],
        help: "Client connections open.",
    },
    Metric {
        name: CLIENT_CONNECTIONS_REFUSED,
        kind: Kind::Counter,
        unit: None,
        labels: &["node"],
        help: "Client connections refused: too many were open (answered Overloaded in plaintext), too many TLS handshakes were under way, or the TLS handshake failed.",
    },
    Metric {
        name: PEER_CONNECTED,
        kind: Kind::Gauge,
        unit: None,
        labels: PEER,
        help: "1 while a connection to peer `peer` is up, else 0.",
    },
    Metric {
        name: PEER_CONNECTIONS,
        kind: Kind::Counter,
        unit: None,
        labels: PEER,
        help: "Connections to peer `peer` established since the node started.",
    },
    Metric {
        name: PEER_MESSAGES_SENT,
        kind: Kind::Counter,
        unit: None,
        labels: PEER,
        help: "Messages written to peer `peer`.",
    },
    Metric {
        name: PEER_MESSAGES_RECEIVED,
        kind: Kind::Counter,
        unit: None,
        labels: PEER,
        help: "Messages received from peer `peer`.",
    },
    Metric {
        name: PEER_BYTES_SENT,
        kind: Kind::Counter,
        unit: Some(Unit::Bytes),
        labels: PEER,
        help: "Bytes written to peer `peer`, framing included.",
    },
    Metric {
        name: PEER_BYTES_RECEIVED,
        kind: Kind::Counter,
        unit: Some(Unit::Bytes),
        labels: PEER,
        help: "Bytes received from peer `peer`, framing included.",
    },
    Metric {
        name: PEER_DROPPED,
        kind: Kind::Counter,
        unit: None,
        labels: &["node", "peer", "direction"],
        help: "Messages dropped on the link to peer `peer`: direction=out (its queue was full or \
               no connection was up), direction=in (this node's inbox was full).",
    },
];

/// What a client asked for, as the `kind` label says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestKind {
    Register,
    Get,
    Put,
    Append,
    Status,
    Transfer,
    /// A membership request: `Members`, `AddMember`, `Promote`, `RemoveMember`.
    Members,
    /// A frame that is not a well-formed request.
    Malformed,
}

const KINDS: [&str; 8] = [
    "register",
    "get",
    "put",
    "append",
    "status",
    "transfer",
    "members",
    "malformed",
];
const OUTCOMES: [&str; 7] = [
    "ok",
    "wrong_leader",
    "busy",
    "timeout",
    "stale",
    "session_expired",
    "error",
];

impl RequestKind {
    pub(crate) fn of(request: &Request) -> Self {
        match request {
            Request::Register => Self::Register,
            Request::Get { .. } => Self::Get,
            Request::Put { .. } => Self::Put,
            Request::Append { .. } => Self::Append,
            Request::Status => Self::Status,
            Request::Transfer { .. } => Self::Transfer,
            Request::Members
            | Request::AddMember { .. }
            | Request::Promote { .. }
            | Request::RemoveMember { .. } => Self::Members,
        }
    }
}

/// The `outcome` label of an answer.
fn outcome(response: &Response) -> usize {
    match response {
        Response::Ok { .. }
        | Response::Registered { .. }
        | Response::Status(_)
        | Response::Members(_) => 0,
        Response::WrongLeader { .. } => 1,
        Response::Busy | Response::Overloaded => 2,
        Response::Timeout => 3,
        Response::Stale => 4,
        Response::SessionExpired => 5,
        // A refusal for the connection's identity is an error the client cannot retry away.
        Response::Error(_) | Response::Forbidden(_) => 6,
    }
}

/// A server's handles: the request counters by kind and outcome, the connections gauge.
pub(crate) struct ServerMetrics {
    requests: Vec<Counter>,
    pub(crate) connections: Gauge,
    pub(crate) refused: Counter,
}

impl ServerMetrics {
    pub(crate) fn new(node: usize) -> Self {
        let id = node.to_string();
        let requests = KINDS
            .iter()
            .flat_map(|kind| {
                OUTCOMES.iter().map(|outcome| {
                    counter!(CLIENT_REQUESTS, "node" => id.clone(), "kind" => *kind, "outcome" => *outcome)
                })
            })
            .collect();
        Self {
            requests,
            connections: gauge!(CLIENT_CONNECTIONS, "node" => id.clone()),
            refused: counter!(CLIENT_CONNECTIONS_REFUSED, "node" => id),
        }
    }
}

/// One connection's counts of answers not yet handed to the recorder.
pub(crate) struct RequestTally {
    counts: [u64; KINDS.len() * OUTCOMES.len()],
    dirty: bool,
}

impl RequestTally {
    pub(crate) fn new() -> Self {
        Self {
            counts: [0; KINDS.len() * OUTCOMES.len()],
            dirty: false,
        }
    }

    /// Counts an answer to a request of `kind`.
    pub(crate) fn count(&mut self, kind: RequestKind, response: &Response) {
        self.counts[kind as usize * OUTCOMES.len() + outcome(response)] += 1;
        self.dirty = true;
    }

    /// Hands the counts to `metrics`' counters.
    pub(crate) fn flush(&mut self, metrics: &ServerMetrics) {
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        for (count, counter) in self.counts.iter_mut().zip(&metrics.requests) {
            if *count > 0 {
                counter.increment(std::mem::take(count));
            }
        }
    }
}

/// The handles of one peer link.
struct Link {
    peer: usize,
    connected: Gauge,
    connections: Counter,
    sent: Counter,
    received: Counter,
    bytes_sent: Counter,
    bytes_received: Counter,
    dropped_out: Counter,
    dropped_in: Counter,
}

/// The handles of a node's links to its peers, set from the transport's counters.
pub(crate) struct LinkMetrics {
    links: Vec<Link>,
}

impl LinkMetrics {
    /// The links of node `node` to the other `nodes - 1`.
    pub(crate) fn new(node: usize, nodes: usize) -> Self {
        let links = (0..nodes)
            .filter(|&peer| peer != node)
            .map(|peer| {
                let labels = [("node", node.to_string()), ("peer", peer.to_string())];
                let dropped = |direction: &'static str| {
                    counter!(PEER_DROPPED, "node" => node.to_string(), "peer" => peer.to_string(), "direction" => direction)
                };
                Link {
                    peer,
                    connected: gauge!(PEER_CONNECTED, &labels),
                    connections: counter!(PEER_CONNECTIONS, &labels),
                    sent: counter!(PEER_MESSAGES_SENT, &labels),
                    received: counter!(PEER_MESSAGES_RECEIVED, &labels),
                    bytes_sent: counter!(PEER_BYTES_SENT, &labels),
                    bytes_received: counter!(PEER_BYTES_RECEIVED, &labels),
                    dropped_out: dropped("out"),
                    dropped_in: dropped("in"),
                }
            })
            .collect();
        Self { links }
    }

    /// Sets every link's metrics from `stats(peer)`.
    pub(crate) fn update(&self, stats: impl Fn(usize) -> LinkStats) {
        for link in &self.links {
            let s = stats(link.peer);
            link.connected.set(if s.connected { 1.0 } else { 0.0 });
            link.connections.absolute(s.connections);
            link.sent.absolute(s.sent);
            link.received.absolute(s.received);
            link.bytes_sent.absolute(s.bytes_sent);
            link.bytes_received.absolute(s.bytes_received);
            link.dropped_out.absolute(s.dropped);
            link.dropped_in.absolute(s.inbox_overflow);
        }
    }
}
