//! An in-memory network for zeroraft that misbehaves on purpose.
//!
//! The network moves values of any message type `M` between `n` nodes without serializing them:
//! a message is handed from the sender's thread to the receiver's inbox (a bounded lock-free
//! queue), either at once or, when the fault model asks for a delay, through one scheduler thread
//! that keeps delayed messages in a timer heap. It never learns what the messages mean; it asks
//! each message only for its wire size and whether it is a request or a reply ([`Message`]).
//!
//! # Fault model
//!
//! The model reproduces the course network (labrpc) that the Raft tester is built on:
//!
//! - **Connectivity.** [`Network::connect`] and [`Network::disconnect`] have the tester's meaning:
//!   connected nodes form one clique and every disconnected node is isolated alone. Underneath is
//!   a directed link matrix ([`Network::set_link`]); a message travels only while the link from its
//!   sender to its receiver is up, checked when it is sent and again when it is delivered.
//! - **Reliable** (the default): no added delay, nothing lost.
//! - **Unreliable** ([`Network::set_reliable`]`(false)`): a request is delayed by U\[0, 26\] ms
//!   and dropped with probability 0.1; a reply is dropped with probability 0.1.
//! - **Long reordering** ([`Network::set_long_reordering`]): two thirds of replies are delayed by
//!   200 + U\[0, U\[0, 1999\]\] ms.
//!
//! # Counters
//!
//! As in the tester: [`Network::rpc_total`] counts every request handed to the network, whatever
//! becomes of it; [`Network::rpc_count`] counts requests delivered to one node;
//! [`Network::bytes_total`] adds the wire size of every request sent and of every reply delivered.
//!
//! # Orderings
//!
//! Counters are statistics read by other threads and use `Relaxed`: nothing is published through
//! them. Link flags are `Relaxed` too: a message racing with a link change may or may not pass,
//! exactly as on a real network; the control calls that change links are serialized by a lock on
//! the cold path. Messages themselves are published by the inbox queue (`crossbeam_queue`), whose
//! push/pop pair is a release/acquire edge, and the receiver's wake-up by `crossbeam_utils`'s
//! `Parker`, whose `unpark` happens-before the `park` it ends.

#![forbid(unsafe_code)]

mod codec;
mod inbox;
mod sync;
#[cfg(not(loom))]
pub mod tcp;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{
    AtomicBool, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use crossbeam_utils::CachePadded;

pub use codec::{Codec, DecodeError};
use inbox::Inbox;
#[cfg(loom)]
pub use inbox::Waiter;
pub use inbox::Waker;

/// Index of a node in the network, from 0 to `nodes - 1`.
pub type NodeId = usize;

/// What the network needs to know of a message.
pub trait Message: Send + 'static {
    /// The size in bytes this message would have in a compact binary encoding: fixed-width
    /// header fields, payload lengths and payload bytes. Used for the byte counters, and by the
    /// TCP transport to choose which messages a sender may write to an idle link itself.
    fn wire_size(&self) -> usize;

    /// Whether this message is a request (counted as an RPC, delayed and dropped as a request)
    /// or a reply (dropped and reordered as a reply).
    fn is_request(&self) -> bool;
}

/// Probability, in thousandths, that an unreliable network drops a request or a reply.
const DROP_PER_MILLE: u32 = 100;
/// Largest artificial delay of a request on an unreliable network, in milliseconds (inclusive).
const UNRELIABLE_MAX_DELAY_MS: u64 = 26;
/// Probability, out of [`LONG_REORDER_OUT_OF`], that a reply is held back under long reordering.
const LONG_REORDER_CHANCE: u32 = 600;
const LONG_REORDER_OUT_OF: u32 = 900;
/// A reply held back under long reordering waits this long, plus a skewed random extra.
const LONG_REORDER_BASE_MS: u64 = 200;
const LONG_REORDER_SPREAD_MS: u64 = 2000;

/// The most nodes a [`Network`] accepts (its link matrix has a flag per ordered pair).
pub const MAX_NODES: usize = 1024;
/// The largest inbox a [`Network`] accepts, in messages: each inbox is allocated whole when its
/// endpoint is created (for zeroraft's messages, about 100 bytes a slot: 6 MiB at this size).
pub const MAX_INBOX_CAPACITY: usize = 1 << 16;

/// The scheduler thread's stack: it runs one loop over a heap and a channel, whatever the
/// process's default for new threads.
const SCHEDULER_STACK: usize = 256 << 10;

/// Settings of a new [`Network`].
#[derive(Clone, Debug)]
pub struct NetworkConfig {
    /// Number of nodes; node ids are `0..nodes`. At most [`MAX_NODES`].
    pub nodes: usize,
    /// Seed of the random choices (delays and drops). Each endpoint derives its own generator
    /// from it, so one seed gives the same choices for the same sequence of sends.
    pub seed: u64,
    /// Capacity of each node's inbox, in messages. A message that finds the inbox full is
    /// dropped and counted in [`Network::overflow_drops`], as a full queue on a real link would.
    /// At least 1 and at most [`MAX_INBOX_CAPACITY`].
    pub inbox_capacity: usize,
}

impl NetworkConfig {
    /// A configuration for `nodes` nodes with seed 0 and an inbox of 16 384 messages.
    pub fn new(nodes: usize) -> Self {
        Self {
            nodes,
            seed: 0,
            inbox_capacity: 1 << 14,
        }
    }
}

/// Why a [`Network`] could not be created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetworkError {
    /// A network needs at least one node.
    NoNodes,
    /// An inbox must hold at least one message.
    ZeroInboxCapacity,
    /// More nodes than [`MAX_NODES`].
    TooManyNodes {
        /// Nodes asked for.
        nodes: usize,
        /// Most accepted.
        max: usize,
    },
    /// An inbox larger than [`MAX_INBOX_CAPACITY`].
    InboxTooLarge {
        /// The capacity asked for.
        capacity: usize,
        /// Most accepted.
        max: usize,
    },
    /// The scheduler thread could not be started; the text is the system's reason.
    Thread(String),
}

impl std::fmt::Display for NetworkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoNodes => write!(f, "a network needs at least one node"),
            Self::ZeroInboxCapacity => write!(f, "an inbox capacity of 0 cannot hold any message"),
            Self::TooManyNodes { nodes, max } => {
                write!(f, "{nodes} nodes asked for, at most {max} supported")
            }
            Self::InboxTooLarge { capacity, max } => write!(
                f,
                "an inbox of {capacity} messages asked for, at most {max} supported"
            ),
            Self::Thread(e) => write!(f, "cannot start the network's scheduler thread: {e}"),
        }
    }
}

impl std::error::Error for NetworkError {}

/// Why [`Network::endpoint`] gave no endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndpointError {
    /// The id is not a node of this network.
    NoSuchNode {
        /// The id asked for.
        id: NodeId,
        /// Nodes in the network.
        nodes: usize,
    },
    /// The node already has an endpoint that has not been dropped: one node, one endpoint.
    InUse {
        /// The id asked for.
        id: NodeId,
    },
}

impl std::fmt::Display for EndpointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoSuchNode { id, nodes } => {
                write!(f, "node {id} is not in a network of {nodes} nodes")
            }
            Self::InUse { id } => write!(
                f,
                "node {id} already has an endpoint; drop it before creating another"
            ),
        }
    }
}

impl std::error::Error for EndpointError {}

/// Traffic counters of one node, split by who writes them: the node's own sends update one
/// cache line, deliveries to it by other nodes another, so neither side's writes evict the
/// other's.
#[derive(Default)]
struct NodeStats {
    sent: CachePadded<SentStats>,
    delivered: CachePadded<DeliveredStats>,
}

/// The counters updated as a node sends: by its own thread, or by the scheduler thread for its
/// delayed replies.
#[derive(Default)]
struct SentStats {
    /// Requests this node handed to the network.
    requests: AtomicU64,
    /// Messages of any kind this node handed to the network.
    messages: AtomicU64,
    /// Bytes charged to this node as a sender: its requests at send, its replies at delivery.
    bytes: AtomicU64,
}

/// The counters updated as messages are delivered to a node, by the threads delivering them.
#[derive(Default)]
struct DeliveredStats {
    /// Requests delivered to this node.
    requests: AtomicU64,
    /// Messages of any kind delivered to this node.
    messages: AtomicU64,
}

/// A snapshot of one node's traffic counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Messages this node handed to the network.
    pub sent: u64,
    /// Messages delivered to this node.
    pub delivered: u64,
}

/// A message waiting in the scheduler's timer heap.
struct Delayed<M> {
    at: Instant,
    seq: u64,
    from: NodeId,
    to: NodeId,
    /// The incarnations of sender and receiver when it was sent: if either has been replaced
    /// by a new endpoint since, the message is dropped at delivery.
    incarnations: (u64, u64),
    msg: M,
}

impl<M> PartialEq for Delayed<M> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<M> Eq for Delayed<M> {}
impl<M> PartialOrd for Delayed<M> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<M> Ord for Delayed<M> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

enum Command<M> {
    Deliver(Delayed<M>),
    Stop,
}

/// The fault model's verdict on one message that found its link up: `None` to drop it, or the
/// delay before delivery. A pure function of its inputs and the sender's generator, so the same
/// seed gives the same verdicts.
fn fault_delay(
    rng: &mut fastrand::Rng,
    request: bool,
    reliable: bool,
    long_reordering: bool,
) -> Option<Duration> {
    let mut delay = Duration::ZERO;
    if !reliable {
        if rng.u32(0..1000) < DROP_PER_MILLE {
            return None;
        }
        if request {
            delay = Duration::from_millis(rng.u64(0..=UNRELIABLE_MAX_DELAY_MS));
        }
    }
    if !request && long_reordering && rng.u32(0..LONG_REORDER_OUT_OF) < LONG_REORDER_CHANCE {
        let spread = rng.u64(0..LONG_REORDER_SPREAD_MS);
        delay = Duration::from_millis(LONG_REORDER_BASE_MS + rng.u64(0..=spread));
    }
    Some(delay)
}

/// The generator of node `id`'s endpoint, from `seed` (the network's and the endpoint's seeds
/// combined).
fn endpoint_rng(seed: u64, id: NodeId) -> fastrand::Rng {
    fastrand::Rng::with_seed(seed ^ (id as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// State shared by the network handle, its endpoints and the scheduler thread.
struct Shared<M> {
    nodes: usize,
    /// `links[from * nodes + to]`: whether a message from `from` to `to` can pass.
    links: Box<[AtomicBool]>,
    /// The tester's notion of a connected node (see [`Network::connect`]).
    connected: Box<[AtomicBool]>,
    reliable: AtomicBool,
    long_reordering: AtomicBool,
    inboxes: Box<[ArcSwapOption<Inbox<M>>]>,
    /// `incarnations[i]`: how many endpoints node `i` has had. An endpoint sends only while it
    /// is its node's latest; a delayed message is delivered only if neither end was replaced.
    incarnations: Box<[AtomicU64]>,
    /// `claimed[i]`: whether node `i` has an endpoint that has not been dropped.
    claimed: Box<[AtomicBool]>,
    stats: Box<[NodeStats]>,
    overflow_drops: AtomicU64,
    delayed_seq: AtomicU64,
    scheduler: Sender<Command<M>>,
    inbox_capacity: usize,
    /// [`NetworkConfig::seed`], mixed into every endpoint's generator.
    seed: u64,
}

impl<M: Message> Shared<M> {
    fn link_up(&self, from: NodeId, to: NodeId) -> bool {
        self.links[from * self.nodes + to].load(Relaxed)
    }

    fn incarnation(&self, node: NodeId) -> u64 {
        self.incarnations[node].load(Relaxed)
    }

    /// Hands `msg` to the network on behalf of incarnation `incarnation` of `from`: counts it,
    /// applies the fault model, and delivers it now, later, or never. An endpoint that is no
    /// longer its node's latest sends nothing.
    fn send(&self, rng: &mut fastrand::Rng, from: NodeId, incarnation: u64, to: NodeId, msg: M) {
        if to >= self.nodes {
            return;
        }
        let request = msg.is_request();
        let sent = &self.stats[from].sent;
        sent.messages.fetch_add(1, Relaxed);
        if request {
            sent.requests.fetch_add(1, Relaxed);
            sent.bytes.fetch_add(msg.wire_size() as u64, Relaxed);
        }
        if !self.link_up(from, to) || self.incarnation(from) != incarnation {
            return;
        }
        let reliable = self.reliable.load(Relaxed);
        let long_reordering = self.long_reordering.load(Relaxed);
        let Some(delay) = fault_delay(rng, request, reliable, long_reordering) else {
            return;
        };
        if reliable && delay.is_zero() {
            self.deliver(from, to, msg);
        } else {
            let delayed = Delayed {
                at: Instant::now() + delay,
                seq: self.delayed_seq.fetch_add(1, Relaxed),
                from,
                to,
                incarnations: (incarnation, self.incarnation(to)),
                msg,
            };
            // After shutdown the scheduler is gone and the message is lost, as on a dead network.
            let _ = self.scheduler.send(Command::Deliver(delayed));
        }
    }

    /// Puts `msg` in `to`'s inbox if the link is (still) up, and counts it.
    fn deliver(&self, from: NodeId, to: NodeId, msg: M) {
        if !self.link_up(from, to) {
            return;
        }
        let guard = self.inboxes[to].load();
        let Some(inbox) = guard.as_ref() else { return };
        let request = msg.is_request();
        // Requests were charged their bytes at send; only a reply is charged at delivery. (An
        // AppendEntries' size walks its entries, so it is not computed twice.)
        let reply_size = if request { 0 } else { msg.wire_size() as u64 };
        if inbox.push(from, msg).is_err() {
            self.overflow_drops.fetch_add(1, Relaxed);
            return;
        }
        let delivered = &self.stats[to].delivered;
        delivered.messages.fetch_add(1, Relaxed);
        if request {
            delivered.requests.fetch_add(1, Relaxed);
        } else {
            self.stats[from].sent.bytes.fetch_add(reply_size, Relaxed);
        }
    }
}

/// The in-memory network: the owner's handle for creating endpoints, breaking links and reading
/// counters. Dropping it stops the scheduler thread; messages still delayed are then lost.
pub struct Network<M: Message> {
    shared: Arc<Shared<M>>,
    /// Serializes the control calls that change several links at once (cold path).
    control: Mutex<()>,
    scheduler: Option<JoinHandle<()>>,
}

impl<M: Message> Network<M> {
    /// Creates a network of `config.nodes` nodes, all disconnected, in reliable mode.
    ///
    /// # Errors
    ///
    /// [`NetworkError`] if the number of nodes or the inbox capacity is out of range, or the
    /// scheduler thread cannot be started.
    pub fn new(config: NetworkConfig) -> Result<Self, NetworkError> {
        if config.nodes == 0 {
            return Err(NetworkError::NoNodes);
        }
        if config.nodes > MAX_NODES {
            return Err(NetworkError::TooManyNodes {
                nodes: config.nodes,
                max: MAX_NODES,
            });
        }
        if config.inbox_capacity == 0 {
            return Err(NetworkError::ZeroInboxCapacity);
        }
        if config.inbox_capacity > MAX_INBOX_CAPACITY {
            return Err(NetworkError::InboxTooLarge {
                capacity: config.inbox_capacity,
                max: MAX_INBOX_CAPACITY,
            });
        }
        let n = config.nodes;
        let (tx, rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            nodes: n,
            links: (0..n * n).map(|_| AtomicBool::new(false)).collect(),
            connected: (0..n).map(|_| AtomicBool::new(false)).collect(),
            reliable: AtomicBool::new(true),
            long_reordering: AtomicBool::new(false),
            inboxes: (0..n).map(|_| ArcSwapOption::empty()).collect(),
            incarnations: (0..n).map(|_| AtomicU64::new(0)).collect(),
            claimed: (0..n).map(|_| AtomicBool::new(false)).collect(),
            stats: (0..n).map(|_| NodeStats::default()).collect(),
            overflow_drops: AtomicU64::new(0),
            delayed_seq: AtomicU64::new(0),
            scheduler: tx,
            inbox_capacity: config.inbox_capacity,
            seed: config.seed,
        });
        let for_thread = Arc::downgrade(&shared);
        let scheduler = std::thread::Builder::new()
            .name("zeroraft-net".into())
            .stack_size(SCHEDULER_STACK)
            .spawn(move || run_scheduler(rx, for_thread))
            .map_err(|e| NetworkError::Thread(e.to_string()))?;
        Ok(Self {
            shared,
            control: Mutex::new(()),
            scheduler: Some(scheduler),
        })
    }

    /// Number of nodes.
    pub fn nodes(&self) -> usize {
        self.shared.nodes
    }

    /// Creates node `id`'s endpoint with a fresh, empty inbox: a new incarnation of the node.
    /// A node has one endpoint at a time; once the previous one is dropped, messages still on
    /// their way to or from it are dropped too, as a restarted server's old connections are
    /// gone. The node's delivered-request count ([`Network::rpc_count`]) restarts at 0, as a
    /// restarted server's does in the tester. The endpoint's random generator (delays and drops
    /// of what it sends) is derived from the network's seed ([`NetworkConfig::seed`]), `seed`
    /// and `id`.
    ///
    /// # Errors
    ///
    /// [`EndpointError::NoSuchNode`] if `id` is not a node of this network,
    /// [`EndpointError::InUse`] while an endpoint created for `id` before is not dropped.
    pub fn endpoint(&self, id: NodeId, seed: u64) -> Result<Endpoint<M>, EndpointError> {
        let nodes = self.shared.nodes;
        let claimed = self
            .shared
            .claimed
            .get(id)
            .ok_or(EndpointError::NoSuchNode { id, nodes })?;
        if claimed
            .compare_exchange(false, true, Acquire, Relaxed)
            .is_err()
        {
            return Err(EndpointError::InUse { id });
        }
        let parker = sync::Parker::new();
        let inbox = Arc::new(Inbox::new(
            self.shared.inbox_capacity,
            parker.unparker().clone(),
        ));
        let incarnation = self.shared.incarnations[id].fetch_add(1, Relaxed) + 1;
        self.shared.inboxes[id].store(Some(inbox.clone()));
        self.shared.stats[id].delivered.requests.store(0, Relaxed);
        let rng = endpoint_rng(self.shared.seed ^ seed, id);
        Ok(Endpoint {
            id,
            nodes,
            route: Route::Memory {
                incarnation,
                shared: self.shared.clone(),
                rng,
            },
            inbox,
            parker,
        })
    }

    /// Connects node `i` as the tester does: marks it connected and brings up the links between
    /// it and every connected node (itself included), in both directions.
    pub fn connect(&self, i: NodeId) {
        if i >= self.shared.nodes {
            return;
        }
        let _cold = self.control.lock().unwrap_or_else(|e| e.into_inner());
        self.shared.connected[i].store(true, Relaxed);
        for j in 0..self.shared.nodes {
            if self.shared.connected[j].load(Relaxed) {
                self.set_link_unlocked(i, j, true);
                self.set_link_unlocked(j, i, true);
            }
        }
    }

    /// Disconnects node `i` as the tester does: marks it disconnected and cuts every link to and
    /// from it, whatever the other side's state. Two disconnected nodes cannot talk to each other.
    pub fn disconnect(&self, i: NodeId) {
        if i >= self.shared.nodes {
            return;
        }
        let _cold = self.control.lock().unwrap_or_else(|e| e.into_inner());
        self.shared.connected[i].store(false, Relaxed);
        for j in 0..self.shared.nodes {
            self.set_link_unlocked(i, j, false);
            self.set_link_unlocked(j, i, false);
        }
    }

    /// Whether node `i` is connected in the sense of [`Network::connect`].
    pub fn is_connected(&self, i: NodeId) -> bool {
        i < self.shared.nodes && self.shared.connected[i].load(Relaxed)
    }

    /// Splits the network into groups: links within a group come up, links across groups go
    /// down. Nodes in no group are cut off alone. Every node in a group of two or more, or in the
    /// only group, counts as connected; the others as disconnected. Ids out of range are ignored.
    pub fn partition(&self, groups: &[Vec<NodeId>]) {
        let n = self.shared.nodes;
        let mut group_of = vec![usize::MAX; n];
        for (g, members) in groups.iter().enumerate() {
            for &i in members.iter().filter(|&&i| i < n) {
                group_of[i] = g;
            }
        }
        let _cold = self.control.lock().unwrap_or_else(|e| e.into_inner());
        for i in 0..n {
            for j in 0..n {
                let same = group_of[i] != usize::MAX && group_of[i] == group_of[j];
                self.set_link_unlocked(i, j, same);
            }
            let size = group_of.iter().filter(|&&g| g == group_of[i]).count();
            let connected = group_of[i] != usize::MAX && (size > 1 || groups.len() == 1);
            self.shared.connected[i].store(connected, Relaxed);
        }
    }

    /// Brings the directed link `from -> to` up or down, leaving everything else as it is. Ids out
    /// of range are ignored.
    pub fn set_link(&self, from: NodeId, to: NodeId, up: bool) {
        if from < self.shared.nodes && to < self.shared.nodes {
            let _cold = self.control.lock().unwrap_or_else(|e| e.into_inner());
            self.set_link_unlocked(from, to, up);
        }
    }

    /// Whether the directed link `from -> to` is up.
    pub fn link_up(&self, from: NodeId, to: NodeId) -> bool {
        from < self.shared.nodes && to < self.shared.nodes && self.shared.link_up(from, to)
    }

    fn set_link_unlocked(&self, from: NodeId, to: NodeId, up: bool) {
        self.shared.links[from * self.shared.nodes + to].store(up, Relaxed);
    }

    /// Chooses between the reliable network (no delay, no loss) and the unreliable one.
    pub fn set_reliable(&self, reliable: bool) {
        self.shared.reliable.store(reliable, Relaxed);
    }

    /// Whether the network is reliable.
    pub fn is_reliable(&self) -> bool {
        self.shared.reliable.load(Relaxed)
    }

    /// Turns long reordering of replies on or off.
    pub fn set_long_reordering(&self, on: bool) {
        self.shared.long_reordering.store(on, Relaxed);
    }

    /// Whether long reordering of replies is on.
    pub fn is_long_reordering(&self) -> bool {
        self.shared.long_reordering.load(Relaxed)
    }

    /// Requests handed to the network by all nodes since it was created, whatever became of them.
    pub fn rpc_total(&self) -> u64 {
        self.shared
            .stats
            .iter()
            .map(|s| s.sent.requests.load(Relaxed))
            .sum()
    }

    /// Requests delivered to node `i` since its current endpoint was created (0 for an id out of
    /// range).
    pub fn rpc_count(&self, i: NodeId) -> u64 {
        self.shared
            .stats
            .get(i)
            .map_or(0, |s| s.delivered.requests.load(Relaxed))
    }

    /// Wire bytes of every request sent plus every reply delivered, since the network was created.
    pub fn bytes_total(&self) -> u64 {
        self.shared
            .stats
            .iter()
            .map(|s| s.sent.bytes.load(Relaxed))
            .sum()
    }

    /// Messages node `i` has sent and received (zero for an id out of range).
    pub fn traffic(&self, i: NodeId) -> Traffic {
        self.shared
            .stats
            .get(i)
            .map_or(Traffic::default(), |s| Traffic {
                sent: s.sent.messages.load(Relaxed),
                delivered: s.delivered.messages.load(Relaxed),
            })
    }

    /// Messages lost because the receiver's inbox was full.
    pub fn overflow_drops(&self) -> u64 {
        self.shared.overflow_drops.load(Relaxed)
    }
}

impl<M: Message> Drop for Network<M> {
    fn drop(&mut self) {
        let _ = self.shared.scheduler.send(Command::Stop);
        if let Some(handle) = self.scheduler.take() {
            let _ = handle.join();
        }
        for inbox in self.shared.inboxes.iter() {
            inbox.store(None);
        }
    }
}

/// The scheduler thread: holds delayed messages in a timer heap and delivers each when due.
fn run_scheduler<M: Message>(rx: Receiver<Command<M>>, shared: std::sync::Weak<Shared<M>>) {
    let mut heap: BinaryHeap<Reverse<Delayed<M>>> = BinaryHeap::new();
    loop {
        let received = match heap.peek() {
            Some(Reverse(next)) => rx.recv_deadline(next.at),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match received {
            Ok(Command::Deliver(d)) => heap.push(Reverse(d)),
            Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
        let now = Instant::now();
        let Some(shared) = shared.upgrade() else {
            return;
        };
        while heap.peek().is_some_and(|Reverse(d)| d.at <= now) {
            let Reverse(d) = heap.pop().expect("peeked");
            if d.incarnations == (shared.incarnation(d.from), shared.incarnation(d.to)) {
                shared.deliver(d.from, d.to, d.msg);
            }
        }
    }
}

/// One node's attachment to the network: it sends through it and receives from its inbox.
///
/// An endpoint is owned by one thread (it is `Send`, not `Sync`); other threads can wake that
/// thread from [`Endpoint::wait`] through a [`Waker`].
pub struct Endpoint<M: Message> {
    id: NodeId,
    nodes: usize,
    route: Route<M>,
    inbox: Arc<Inbox<M>>,
    parker: sync::Parker,
}

/// Where an [`Endpoint`]'s messages go.
enum Route<M: Message> {
    /// Into the in-memory network's inboxes, through its fault model.
    Memory {
        /// Which of its node's endpoints this is (see [`Network::endpoint`]).
        incarnation: u64,
        shared: Arc<Shared<M>>,
        rng: fastrand::Rng,
    },
    /// Onto connections to other processes ([`tcp::TcpNetwork`]).
    #[cfg(not(loom))]
    Tcp(Arc<dyn tcp::Outbound<M>>),
}

impl<M: Message> Drop for Endpoint<M> {
    /// Frees the node's id for a new endpoint ([`Network::endpoint`]).
    fn drop(&mut self) {
        #[cfg_attr(loom, allow(irrefutable_let_patterns))]
        if let Route::Memory { shared, .. } = &self.route {
            shared.claimed[self.id].store(false, Release);
        }
    }
}

impl<M: Message> Endpoint<M> {
    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Number of nodes in the network.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// Hands `msg` to the network for node `to`. It arrives later, or never: as the fault model
    /// decides on the in-memory network, as the connection to `to` allows over TCP. A message to
    /// an id out of range is discarded.
    pub fn send(&mut self, to: NodeId, msg: M) {
        match &mut self.route {
            Route::Memory {
                incarnation,
                shared,
                rng,
            } => shared.send(rng, self.id, *incarnation, to, msg),
            #[cfg(not(loom))]
            Route::Tcp(out) => out.send(to, msg),
        }
    }

    /// Takes the oldest message waiting in the inbox, with its sender, without waiting.
    pub fn try_recv(&self) -> Option<(NodeId, M)> {
        self.inbox.pop()
    }

    /// Whether a message is waiting in the inbox.
    pub fn has_messages(&self) -> bool {
        self.inbox.has_messages()
    }

    /// A handle other threads use to wake this endpoint's owner from [`Endpoint::wait`].
    pub fn waker(&self) -> Waker {
        Waker::new(self.inbox.clone())
    }

    /// Blocks until a message arrives, `has_work()` holds, a [`Waker`] rings, or `deadline`
    /// passes (never, if `None`). It first spins for up to `spin`, which costs CPU but saves the
    /// price of waking a parked thread when work is about to arrive. `has_work` is how the owner
    /// tells the endpoint about work that arrives by other paths (announced with a [`Waker`]);
    /// it is called several times and must be cheap. Returns early, possibly spuriously;
    /// callers loop.
    pub fn wait(&self, deadline: Option<Instant>, spin: Duration, has_work: &dyn Fn() -> bool) {
        self.inbox.wait(&self.parker, deadline, spin, has_work);
    }
}
