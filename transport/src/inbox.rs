//! A node's inbox: a bounded lock-free queue of delivered messages plus the means to wake the
//! thread that owns it.
//!
//! # Orderings
//!
//! The queue (`ArrayQueue`) publishes each message with its own release/acquire pair. The
//! `notified` flag carries no data: a [`Waker`] sets it before unparking so that an owner that is
//! spinning (not parked) sees the ring too; `Relaxed` would do for the flag itself, and the
//! `Parker`'s unpark/park pair orders everything the waker wrote before ringing with what the
//! woken owner reads after. `SeqCst` is used on the flag only to keep the argument short.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

use crossbeam_queue::ArrayQueue;
use crossbeam_utils::sync::Unparker;

use crate::NodeId;

pub(crate) struct Inbox<M> {
    queue: ArrayQueue<(NodeId, M)>,
    notified: AtomicBool,
    unparker: Unparker,
}

impl<M> Inbox<M> {
    pub(crate) fn new(capacity: usize, unparker: Unparker) -> Self {
        Self {
            queue: ArrayQueue::new(capacity),
            notified: AtomicBool::new(false),
            unparker,
        }
    }

    /// Queues a message and wakes the owner; gives the message back if the inbox is full.
    pub(crate) fn push(&self, from: NodeId, msg: M) -> Result<(), (NodeId, M)> {
        self.queue.push((from, msg))?;
        self.unparker.unpark();
        Ok(())
    }

    pub(crate) fn pop(&self) -> Option<(NodeId, M)> {
        self.queue.pop()
    }

    pub(crate) fn has_messages(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Whether there is something to do: a message or a ring.
    pub(crate) fn peek_ready(&self) -> bool {
        self.notified.load(SeqCst) || !self.queue.is_empty()
    }

    /// Like [`Inbox::peek_ready`], and clears the ring.
    pub(crate) fn take_ready(&self) -> bool {
        self.notified.swap(false, SeqCst) | !self.queue.is_empty()
    }
}

/// Something a [`Waker`] can ring.
trait Ring: Send + Sync {
    fn ring(&self);
}

impl<M: Send> Ring for Inbox<M> {
    fn ring(&self) {
        self.notified.store(true, SeqCst);
        self.unparker.unpark();
    }
}

/// Wakes the thread that owns an [`Endpoint`](crate::Endpoint) from
/// [`Endpoint::wait`](crate::Endpoint::wait), for example because work arrived by another path.
/// Cheap to clone; ringing a thread that is not waiting makes its next wait return at once.
#[derive(Clone)]
pub struct Waker {
    target: Arc<dyn Ring>,
}

impl Waker {
    pub(crate) fn new<M: Send + 'static>(inbox: Arc<Inbox<M>>) -> Self {
        Self { target: inbox }
    }

    /// Wakes the owner.
    pub fn wake(&self) {
        self.target.ring();
    }
}

impl std::fmt::Debug for Waker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Waker")
    }
}
