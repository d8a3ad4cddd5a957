//! The thread that owns one node's [`Core`] and the handle the rest of the program holds.
//!
//! # The hot path
//!
//! [`Raft::start`] runs on the caller's thread. While the node leads, its thread publishes a
//! *claim word*: a leading flag, an epoch that changes whenever leadership starts or ends, and
//! the next free log index. `start` claims an index with one compare-and-swap on that word, pushes
//! `(term, index, command)` on a lock-free queue and wakes the node's thread if it sleeps. The
//! node thread drains the queue (the batch), puts proposals in index order, appends the
//! contiguous run that starts at its log's end with one [`Core::propose`], and sends one
//! AppendEntries per follower. So the index `start` returns is exactly where the command lands
//! for as long as this node stays leader of that term. When it stops leading it retires the
//! claim word first; proposals still queued for the old term are dropped, as Raft allows for
//! commands proposed to a deposed leader.
//!
//! A configuration entry (a membership change, see docs/membership.md) takes a log index too.
//! The node's thread claims one from the same word, as a caller would, and appends the entry
//! when the log reaches it, so the indices callers were given stay exact.
//!
//! # Backpressure
//!
//! The node publishes `appended`, the last index it has put in its log. `start` claims an index
//! only if it lies at most [`Config::max_queued_proposals`] beyond it, and otherwise refuses
//! with [`StartError::Busy`]. Every queued proposal of the current lease has an index between
//! the two, so the queue, an `ArrayQueue` of that capacity allocated once, never holds more of
//! them; a client faster than the cluster, or a leader whose thread is blocked, meets the bound
//! instead of growing memory. Proposals of an older lease, pushed by a caller descheduled
//! between its claim and its push, may still occupy slots: a proposal that finds the queue full
//! goes to a `SegQueue` beside it, which is empty in steady state.
//!
//! # Orderings
//!
//! - The node publishes leadership in this order: `state` (term, leader bit), then `claim`
//!   (leading, new epoch, next index), both `Release`. It retires it in the opposite order:
//!   `claim` (not leading, new epoch), then `state`.
//! - `start` loads `claim` (`Acquire`), then `state` (`Acquire`), then compare-and-swaps `claim`
//!   from the value it loaded to that value + 1. If the CAS succeeds, the term it read is the
//!   term of that claim: a `state` newer than the claim would have been written after a newer
//!   `claim` store, which (being ordered before the `state` store the caller acquired) makes the
//!   CAS fail. The epoch makes every leadership change visible in the word even if the index
//!   happens to repeat.
//! - `appended` is stored (`Release`) before the claim word that starts a lease and after each
//!   batch; `start` loads it (`Acquire`) after the claim word. It only ever lags the log, so
//!   a stale value makes `start` refuse early, never queue more than the bound.
//! - `state` packs `term << 1 | is_leader` in one word, so `get_state` reads a consistent pair
//!   with one `Acquire` load.
//! - `Shared::killed` is `Release`/`Acquire`: after `kill` returns, the node has left its loop.
//! - Waking follows the transport's eventcount protocol (see `zeroraft_transport::Waker`): the
//!   proposal is pushed before the wake, and the node's `has_work` checks the queue.
//! - Status snapshots are published through `ArcSwap`, which orders the snapshot's contents.
//! - Entry buffers move between nodes through [`ENTRY_BUFFERS`], an `ArrayQueue`, whose push/pop
//!   pair orders a buffer's hand-over like any other queued value.
//!
//! The claim word, `state`, `appended` and the proposal queue live in `claim`, which holds the
//! code the points above argue about (the claim, the order of publishing and retiring, the
//! hand-over and wake-up). loom checks it against the interleavings of the node thread and
//! concurrent callers (all of them for two threads, those with at most three preemptions for
//! three): distinct indices, the term of the claimed lease, the backpressure bound and no lost
//! wake-up. Run it with
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release -p zeroraft-engine --lib loom`.
//!
//! # Entry buffers
//!
//! Every AppendEntries carries its entries in a vector; a follower's core keeps the emptied
//! vectors and a leader's core refills them (see `core`'s module docs). Nodes of one process
//! trade them through one process-wide pool, so that under steady load the replication path
//! allocates nothing per message: after each round a node puts back what its core holds beyond
//! [`KEPT_ENTRY_BUFFERS`] and tops its core up to that many from the pool.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use crossbeam_channel::Sender;
use crossbeam_queue::ArrayQueue;
use zeroraft_transport::Waker;

use crate::core::{Entry, Membership};
use crate::{ChangeError, MembershipStatus, NodeFailure, ReadError, Status};
use claim::{Lease, Proposal, Proposals};

mod claim;
mod freer;
mod handle;
mod metrics;
mod node;
mod snapshotter;
mod state_machine;
mod writer;

pub use handle::{Builder, PendingRead, Raft, WeakRaft};
pub use state_machine::{SnapshotView, StateMachine};

/// Most messages handled before the node thread flushes what it has to send.
const MAX_MESSAGES_PER_ROUND: usize = 1024;
/// How long a blocked apply send waits before checking whether the node was killed.
const APPLY_RETRY: Duration = Duration::from_millis(50);
/// How often a [`PendingRead`] being waited for checks whether its node was killed.
const READ_KILL_CHECK: Duration = Duration::from_millis(50);

/// Entry buffers a node's core keeps between rounds: enough for a round of AppendEntries to
/// several followers.
const KEPT_ENTRY_BUFFERS: usize = 16;
/// Capacity of [`ENTRY_BUFFERS`]. With buffers of at most [`crate::core::MAX_BUFFER_CAPACITY`]
/// entries, the pool holds at most a few megabytes.
const POOLED_ENTRY_BUFFERS: usize = 128;

/// The entry buffers nodes of this process trade (see the module docs).
static ENTRY_BUFFERS: std::sync::LazyLock<ArrayQueue<Vec<Entry>>> =
    std::sync::LazyLock::new(|| ArrayQueue::new(POOLED_ENTRY_BUFFERS));

/// A read on its way from [`Raft::read_index`] or [`Raft::read_lease`] to the node thread, with
/// where to answer it.
struct ReadRequest {
    lease: bool,
    /// When it was asked, for its latency.
    asked: std::time::Instant,
    reply: Sender<Result<u64, ReadError>>,
}

/// A membership change on its way from the handle to the node's thread, with where to answer.
struct ChangeRequest {
    change: Change,
    reply: Sender<Result<u64, ChangeError>>,
}

/// The change asked for, which the node's thread turns into a target configuration against
/// the one it has in force (so that shortcuts never work from a stale view).
#[derive(Clone, Copy, Debug)]
enum Change {
    /// Move to this configuration.
    To(Membership),
    /// Add this node as a learner.
    AddLearner(usize),
    /// Make this learner a voter.
    Promote(usize),
    /// Remove this node, voter or learner.
    Remove(usize),
}

/// What the handle and the node thread share.
struct Shared {
    me: usize,
    peers: usize,
    /// The claim word and what is published beside it. See the module's orderings.
    lease: Lease,
    /// Proposals on their way to the node's thread.
    proposals: Proposals,
    /// The latest snapshot the service handed to [`Raft::snapshot`], not yet taken by the node.
    snapshot_requests: ArrayQueue<(u64, Bytes)>,
    /// Reads on their way to the node's thread.
    reads: ArrayQueue<ReadRequest>,
    /// A membership change asked for and not yet taken by the node's thread (one at a time).
    membership_requests: ArrayQueue<ChangeRequest>,
    /// The configuration the node has in force, published when it changes (a cold path).
    membership: ArcSwap<MembershipStatus>,
    /// A leadership transfer asked for and not yet taken by the node: `term << 8 | target + 1`
    /// (the term the caller saw this node lead, and the target's id, below 64), or 0.
    transfer_request: AtomicU64,
    status: ArcSwap<Status>,
    killed: AtomicBool,
    /// Why the node stopped on its own, if it did. Set once, before `killed`.
    failure: std::sync::OnceLock<NodeFailure>,
    waker: Waker,
    max_command_bytes: usize,
    /// [`Config::spin`]: also how long a reader looks for its answer before it sleeps.
    spin: Duration,
    /// Proposals refused, counted by the callers.
    refusals: metrics::Refusals,
}

/// The message of a panic caught with `catch_unwind`.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

impl Shared {
    /// `(term, is_leader)` as last published, with one `Acquire` load.
    fn load_state(&self) -> (u64, bool) {
        self.lease.load_state()
    }

    /// Why a read cannot be answered by a node that stopped.
    fn read_stopped(&self) -> ReadError {
        match self.failure.get() {
            Some(failure) => ReadError::Failed(failure.clone()),
            None => ReadError::Killed,
        }
    }

    fn has_proposals(&self) -> bool {
        !self.proposals.is_empty()
    }

    fn pop_proposal(&self) -> Option<Proposal> {
        self.proposals.pop()
    }
}
