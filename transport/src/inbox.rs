//! A node's inbox: a bounded lock-free queue of delivered messages plus the means to wake the
//! thread that owns it, paying for a wake-up only when that thread is really asleep.
//!
//! # Orderings
//!
//! The queue (`ArrayQueue`) publishes each message with its own release/acquire pair. Waking
//! follows the eventcount pattern (a Dekker handshake):
//!
//! - the owner, before parking, stores `sleeping = true`, issues a `SeqCst` fence, and checks
//!   once more for work (the inbox and the caller's own `has_work`);
//! - a producer publishes its work, issues a `SeqCst` fence, and loads `sleeping`; only if it is
//!   set does it unpark the owner.
//!
//! The two fences are totally ordered. If the owner's fence comes first, the producer's load sees
//! `sleeping == true` and unparks; if the producer's fence comes first, the owner's re-check sees
//! the work and it does not park. Either way no wake-up is lost, and a busy owner costs producers
//! one fence and one load of a line that rarely changes instead of a write to a shared line.
//! `Parker` keeps an unpark token, so an unpark that lands just before `park` is not lost either.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed, Ordering::SeqCst, fence};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;
use crossbeam_utils::sync::{Parker, Unparker};

use crate::NodeId;

pub(crate) struct Inbox<M> {
    queue: ArrayQueue<(NodeId, M)>,
    /// Set by the owner while it is parked (or about to park).
    sleeping: CachePadded<AtomicBool>,
    unparker: Unparker,
}

impl<M> Inbox<M> {
    pub(crate) fn new(capacity: usize, unparker: Unparker) -> Self {
        Self {
            queue: ArrayQueue::new(capacity),
            sleeping: CachePadded::new(AtomicBool::new(false)),
            unparker,
        }
    }

    /// Queues a message and wakes the owner if it sleeps; gives the message back if the inbox is
    /// full.
    pub(crate) fn push(&self, from: NodeId, msg: M) -> Result<(), (NodeId, M)> {
        self.queue.push((from, msg))?;
        self.wake();
        Ok(())
    }

    pub(crate) fn pop(&self) -> Option<(NodeId, M)> {
        self.queue.pop()
    }

    pub(crate) fn has_messages(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Unparks the owner if it is asleep. Call after publishing work.
    pub(crate) fn wake(&self) {
        fence(SeqCst);
        if self.sleeping.load(Relaxed) {
            self.unparker.unpark();
        }
    }

    /// Blocks the owner until there is a message, `has_work` holds, a producer wakes it, or the
    /// deadline passes; spins for up to `spin` first. May return spuriously.
    pub(crate) fn wait(
        &self,
        parker: &Parker,
        deadline: Option<Instant>,
        spin: Duration,
        has_work: &dyn Fn() -> bool,
    ) {
        let ready = || !self.queue.is_empty() || has_work();
        if ready() {
            return;
        }
        if !spin.is_zero() {
            // Yield between checks: on a machine with fewer cores than busy threads, the thread
            // this one waits for may need the core it is spinning on.
            let until = Instant::now() + spin;
            while Instant::now() < until {
                for _ in 0..16 {
                    if ready() {
                        return;
                    }
                    std::hint::spin_loop();
                }
                std::thread::yield_now();
            }
        }
        self.sleeping.store(true, Relaxed);
        fence(SeqCst);
        if !ready() {
            match deadline {
                Some(at) => parker.park_deadline(at),
                None => parker.park(),
            }
        }
        self.sleeping.store(false, Relaxed);
    }
}

/// Something a [`Waker`] can wake.
trait Wake: Send + Sync {
    fn wake(&self);
}

impl<M: Send> Wake for Inbox<M> {
    fn wake(&self) {
        Inbox::wake(self);
    }
}

/// Wakes the thread that owns an [`Endpoint`](crate::Endpoint) from
/// [`Endpoint::wait`](crate::Endpoint::wait) after work arrived by another path.
///
/// The contract: publish the work first (in memory the owner's `has_work` reads), then call
/// [`Waker::wake`]. A `wait` that is in progress or starts later either sees the work or is woken.
/// Waking an owner that is not asleep costs one fence and one load.
#[derive(Clone)]
pub struct Waker {
    target: Arc<dyn Wake>,
}

impl Waker {
    pub(crate) fn new<M: Send + 'static>(inbox: Arc<Inbox<M>>) -> Self {
        Self { target: inbox }
    }

    /// Wakes the owner if it is waiting.
    pub fn wake(&self) {
        self.target.wake();
    }
}

impl std::fmt::Debug for Waker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Waker")
    }
}
