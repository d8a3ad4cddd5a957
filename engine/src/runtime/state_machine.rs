//! [`StateMachine`]: what consumes the committed log, on the node's thread; [`SnapshotView`],
//! a snapshot it takes there and the node serializes on another thread; and the state machine
//! behind [`super::Raft::new`], which sends every entry on a channel.

use std::sync::Arc;
use std::sync::atomic::Ordering::Acquire;

use bytes::Bytes;
use crossbeam_channel::{SendTimeoutError, Sender};
use zeroraft_storage::Snapshot;

use super::{APPLY_RETRY, Shared};
use crate::{ApplyMsg, RestoreError};
#[cfg(doc)]
use crate::{Config, NodeFailure, Raft, StartError, Status, WeakRaft};

/// What consumes the committed log. Called on the node's own thread.
///
/// A state machine that calls its own node (to compact it, or to stop it) holds a [`WeakRaft`]
/// from [`Raft::downgrade`]: a [`Raft`] it held would keep the node alive after every other
/// handle is gone. A panic in any of these methods stops the node with
/// [`NodeFailure::StateMachinePanic`]: [`Raft::failure`] returns it, [`Raft::try_start`] returns
/// it as [`StartError::Failed`], its text becomes [`Status::failure`], and `tracing` logs it.
pub trait StateMachine: Send + 'static {
    /// Applies the committed entry at `index`, proposed in `term`. Called in index order, each
    /// index exactly once, except the indices of configuration entries (membership changes),
    /// which are the engine's own and never handed to the state machine: indices applied may
    /// skip them, and [`StateMachine::flush`] still names the last index of the run.
    fn apply(&mut self, index: u64, term: u64, command: &Bytes);

    /// Called after each run of [`StateMachine::apply`] calls, with the last index applied: the
    /// place to publish progress once per batch rather than once per entry. Does nothing by
    /// default.
    fn flush(&mut self, last_index: u64) {
        let _ = last_index;
    }

    /// Serializes the state, as of the last index applied, for a snapshot that replaces the log
    /// up to there; called on the node's thread by the default [`StateMachine::snapshot_view`].
    /// `None`, the default, declines: the log is then not compacted.
    fn snapshot(&mut self) -> Option<Bytes> {
        None
    }

    /// Takes a snapshot of the state as of the last index applied, for one that replaces the
    /// log up to there; called on the node's thread when [`Config::compaction`] says it is
    /// time. `None` declines: the log is then not compacted.
    ///
    /// A [`SnapshotView::deferred`] is a consistent view of the state (one that later calls
    /// to [`StateMachine::apply`] do not change, such as a copy-on-write map) that the node
    /// serializes on a thread of its own while it goes on applying, sending heartbeats and
    /// answering; once the data is back, the log is compacted up to the index the view was
    /// taken at, and the entries applied meanwhile stay in the log. One view is serialized at
    /// a time: none is asked for while one is. A view overtaken by a snapshot this node
    /// installed from its leader meanwhile is dropped when it is done. A node killed while a
    /// view is serialized waits for the serialization to end.
    ///
    /// The default serializes on the node's thread: it returns
    /// [`StateMachine::snapshot`]'s data as a [`SnapshotView::ready`].
    fn snapshot_view(&mut self) -> Option<SnapshotView> {
        self.snapshot().map(SnapshotView::ready)
    }

    /// Replaces the state with `snapshot`'s: one the leader sent because this node lacked
    /// entries it had compacted away, or the one the node restarted from. Commands after
    /// `snapshot.index` are applied next.
    ///
    /// # Errors
    ///
    /// Why it cannot; the node then stops with [`NodeFailure::RestoreRefused`]. The default
    /// cannot restore anything: a state machine that may be sent snapshots must implement this.
    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), RestoreError> {
        let _ = snapshot;
        Err(RestoreError::new(
            "this state machine cannot restore snapshots",
        ))
    }
}

/// A snapshot a [`StateMachine`] took ([`StateMachine::snapshot_view`]): its serialized state,
/// or a view of the state that the node serializes on another thread.
pub struct SnapshotView(View);

/// What a [`SnapshotView`] holds.
enum View {
    /// Serialized already.
    Ready(Bytes),
    /// To be serialized.
    Deferred(Box<dyn FnOnce() -> Bytes + Send>),
}

impl SnapshotView {
    /// A state serialized already, on the node's thread.
    pub fn ready(data: Bytes) -> Self {
        Self(View::Ready(data))
    }

    /// A view of the state that `serialize` turns into the snapshot's data, on a thread of the
    /// node's own. `serialize` must see the state as it was when the view was taken, whatever
    /// is applied meanwhile. A panic in it stops the node with
    /// [`NodeFailure::StateMachinePanic`].
    pub fn deferred(serialize: impl FnOnce() -> Bytes + Send + 'static) -> Self {
        Self(View::Deferred(Box::new(serialize)))
    }

    /// The snapshot's data: serializes the view, on the caller's thread, if it is not
    /// serialized already.
    pub fn serialize(self) -> Bytes {
        match self.0 {
            View::Ready(data) => data,
            View::Deferred(serialize) => serialize(),
        }
    }

    /// The data if it is serialized already, or the view back.
    pub(super) fn into_ready(self) -> Result<Bytes, Self> {
        match self.0 {
            View::Ready(data) => Ok(data),
            View::Deferred(_) => Err(self),
        }
    }
}

impl std::fmt::Debug for SnapshotView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            View::Ready(data) => write!(f, "SnapshotView::Ready({} bytes)", data.len()),
            View::Deferred(_) => f.write_str("SnapshotView::Deferred"),
        }
    }
}

impl<F: FnMut(u64, u64, &Bytes) + Send + 'static> StateMachine for F {
    fn apply(&mut self, index: u64, term: u64, command: &Bytes) {
        self(index, term, command);
    }
}

/// The state machine behind [`Raft::new`]: sends an [`ApplyMsg`] per entry on a channel. When
/// the channel is bounded and full it waits, checking now and then whether the node was killed;
/// when its receiver is gone it stops sending.
pub(super) struct ChannelApplier {
    tx: Sender<ApplyMsg>,
    open: bool,
    shared: Arc<Shared>,
}

impl StateMachine for ChannelApplier {
    fn apply(&mut self, index: u64, term: u64, command: &Bytes) {
        self.deliver(ApplyMsg::Command {
            index,
            term,
            command: command.clone(),
        });
    }

    /// Passes the snapshot on to the service, ahead of the commands after it.
    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), RestoreError> {
        self.deliver(ApplyMsg::Snapshot {
            index: snapshot.index,
            term: snapshot.term,
            data: snapshot.data.clone(),
        });
        Ok(())
    }
}

impl ChannelApplier {
    /// Sends every committed entry (and every snapshot to restore) on `tx`.
    pub(super) fn new(tx: Sender<ApplyMsg>, shared: Arc<Shared>) -> Self {
        Self {
            tx,
            open: true,
            shared,
        }
    }

    fn deliver(&mut self, mut msg: ApplyMsg) {
        if !self.open {
            return;
        }
        loop {
            match self.tx.send_timeout(msg, APPLY_RETRY) {
                Ok(()) => return,
                Err(SendTimeoutError::Timeout(back)) => {
                    if self.shared.killed.load(Acquire) {
                        self.open = false;
                        return;
                    }
                    msg = back;
                }
                Err(SendTimeoutError::Disconnected(_)) => {
                    tracing::debug!(node = self.shared.me, "apply channel closed");
                    self.open = false;
                    return;
                }
            }
        }
    }
}
