//! The snapshot thread: serializes a state machine's [`SnapshotView`] away from the node's
//! thread, so that a large state does not silence the node for as long as serializing it takes.
//!
//! One serialization at a time: [`Snapshotter::start`] is only called while none is under way.
//! Each runs on a thread of its own, spawned for it (snapshots are rare); it sends its outcome
//! on a channel, then wakes the node. The node takes the data with [`Snapshotter::poll`] and
//! compacts its log up to the index the view was taken at ([`crate::core::Core::compact`]
//! ignores it if a snapshot the node installed from its leader meanwhile covers that index).
//! Dropping the snapshotter (the node's thread ending) waits for a serialization under way,
//! so no thread outlives its node.
//!
//! A large snapshot that a newer one replaced is freed on such a thread too
//! ([`Snapshotter::retire`]): returning a gigabyte's pages to the system takes the better part
//! of a heartbeat interval.
//!
//! # Orderings
//!
//! The thread sends its outcome on a channel before it wakes the node through its [`Waker`];
//! the node's wait checks that channel ([`Snapshotter::has_completion`]), the waker's contract
//! (publish, then wake).

use std::thread::JoinHandle;

use bytes::Bytes;
use crossbeam_channel::Receiver;
use zeroraft_transport::Waker;

use super::panic_message;
use super::state_machine::SnapshotView;
use crate::NodeFailure;

/// A serialization under way.
struct Running {
    /// The last index applied when the view was taken: what the snapshot covers.
    index: u64,
    /// The serialized data, or the panic's message.
    done: Receiver<Result<Bytes, String>>,
    thread: JoinHandle<()>,
}

/// Snapshot data at least this large is freed on a thread of its own ([`Snapshotter::retire`]).
const RETIRE_ON_THREAD: usize = 16 << 20;

/// The node's snapshot thread, when one runs. See the module docs.
pub(super) struct Snapshotter {
    node: usize,
    waker: Waker,
    running: Option<Running>,
    /// The thread freeing the last snapshot retired, if one was started.
    freeing: Option<JoinHandle<()>>,
}

impl Snapshotter {
    /// No serialization under way; threads it starts wake the node through `waker`.
    pub fn new(node: usize, waker: Waker) -> Self {
        Self {
            node,
            waker,
            running: None,
            freeing: None,
        }
    }

    /// Lets go of `data`, a snapshot that a newer one replaced: if this was its last reference
    /// and it is large, it is freed on a thread of its own rather than the node's.
    pub fn retire(&mut self, data: Bytes) {
        if data.len() < RETIRE_ON_THREAD {
            return;
        }
        if let Some(previous) = self.freeing.take() {
            let _ = previous.join();
        }
        // Should the thread not start, `data` is dropped here.
        self.freeing = std::thread::Builder::new()
            .name(format!("zeroraft-snapshot-{}", self.node))
            .spawn(move || drop(data))
            .ok();
    }

    /// Whether a serialization is under way (or done and not yet taken by [`Snapshotter::poll`]).
    pub fn busy(&self) -> bool {
        self.running.is_some()
    }

    /// Whether a serialization finished and [`Snapshotter::poll`] has its outcome.
    pub fn has_completion(&self) -> bool {
        self.running.as_ref().is_some_and(|r| !r.done.is_empty())
    }

    /// Starts serializing `view`, taken when `index` was the last index applied, unless it is
    /// serialized already: then it is returned, with its index, for the node to compact with now.
    /// If no thread can be started, the view is dropped (with a warning): the log is not
    /// compacted this time.
    ///
    /// # Panics
    ///
    /// If a serialization is under way.
    pub fn start(&mut self, index: u64, view: SnapshotView) -> Option<(u64, Bytes)> {
        assert!(
            self.running.is_none(),
            "node {}: a snapshot is already being serialized",
            self.node
        );
        let view = match view.into_ready() {
            Ok(data) => return Some((index, data)),
            Err(view) => view,
        };
        let (tx, done) = crossbeam_channel::bounded(1);
        let waker = self.waker.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("zeroraft-snapshot-{}", self.node))
            .spawn(move || {
                let serialize = std::panic::AssertUnwindSafe(|| view.serialize());
                let outcome =
                    std::panic::catch_unwind(serialize).map_err(|panic| panic_message(&*panic));
                if tx.send(outcome).is_ok() {
                    waker.wake();
                }
            });
        match spawned {
            Ok(thread) => {
                tracing::debug!(node = self.node, index, "serializing a snapshot");
                self.running = Some(Running {
                    index,
                    done,
                    thread,
                });
            }
            Err(error) => {
                tracing::warn!(node = self.node, %error, "cannot start the snapshot thread");
            }
        }
        None
    }

    /// The snapshot serialized since the last call, with the index its view was taken at, if
    /// one was.
    ///
    /// # Errors
    ///
    /// The serialization panicked.
    pub fn poll(&mut self) -> Result<Option<(u64, Bytes)>, NodeFailure> {
        let Some(running) = &self.running else {
            return Ok(None);
        };
        let Ok(outcome) = running.done.try_recv() else {
            return Ok(None);
        };
        let running = self.running.take().expect("checked above");
        // It has sent its outcome: it is ending.
        let _ = running.thread.join();
        match outcome {
            Ok(data) => {
                tracing::debug!(
                    node = self.node,
                    index = running.index,
                    bytes = data.len(),
                    "snapshot serialized"
                );
                Ok(Some((running.index, data)))
            }
            Err(message) => Err(NodeFailure::StateMachinePanic { message }),
        }
    }
}

impl Drop for Snapshotter {
    /// Waits for the serialization under way, if any (its data is dropped), and for the
    /// freeing of a retired snapshot.
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.thread.join();
        }
        if let Some(freeing) = self.freeing.take() {
            let _ = freeing.join();
        }
    }
}
