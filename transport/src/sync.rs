//! The synchronization primitives the inbox's wake-up protocol is built from, in one place so
//! that the protocol can be model-checked.
//!
//! A normal build re-exports `std`'s atomics and crossbeam's queue and parker. Built with
//! `--cfg loom`, the atomics are loom's, and the queue and parker are small stand-ins built on
//! loom's primitives, so that loom sees every step the protocol takes and explores their
//! interleavings (see the `loom_tests` module of `inbox`).
//!
//! The stand-ins are sound for that purpose because the protocol relies on the queue and the
//! parker only through their contracts: a push is a release that the pop or emptiness check
//! which sees it acquires, and an unpark happens-before the park it ends, leaves a token if no
//! park is under way, and a park may return spuriously. The stand-ins keep exactly those
//! contracts and add no ordering of their own to the emptiness check the protocol's Dekker
//! handshake depends on. That crossbeam's types keep their contracts is crossbeam's to check,
//! not ours.

#[cfg(not(loom))]
pub(crate) use crossbeam_queue::ArrayQueue;
#[cfg(not(loom))]
pub(crate) use crossbeam_utils::sync::{Parker, Unparker};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, Ordering, fence};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, Ordering, fence};
#[cfg(loom)]
pub(crate) use model::{ArrayQueue, Parker, Unparker};

#[cfg(loom)]
mod model {
    use std::collections::VecDeque;
    use std::time::Instant;

    use loom::sync::atomic::AtomicUsize;
    use loom::sync::atomic::Ordering::{Acquire, Release};
    use loom::sync::{Arc, Mutex, Notify};

    /// A bounded queue with the surface of `crossbeam_queue::ArrayQueue` the inbox uses.
    ///
    /// The items sit behind a lock, but `is_empty` reads only `len`, stored with `Release`
    /// under the lock and loaded with `Acquire`: like crossbeam's queue, an emptiness check
    /// synchronizes with the push it sees and with nothing else. (Checking emptiness under the
    /// lock would order the check after every earlier push and hide the very reorderings the
    /// model is there to find.)
    pub(crate) struct ArrayQueue<T> {
        items: Mutex<VecDeque<T>>,
        len: AtomicUsize,
        capacity: usize,
    }

    impl<T> ArrayQueue<T> {
        pub(crate) fn new(capacity: usize) -> Self {
            Self {
                items: Mutex::new(VecDeque::with_capacity(capacity)),
                len: AtomicUsize::new(0),
                capacity,
            }
        }

        pub(crate) fn push(&self, value: T) -> Result<(), T> {
            let mut items = self.items.lock().expect("a model thread panicked");
            if items.len() == self.capacity {
                return Err(value);
            }
            items.push_back(value);
            self.len.store(items.len(), Release);
            Ok(())
        }

        pub(crate) fn pop(&self) -> Option<T> {
            let mut items = self.items.lock().expect("a model thread panicked");
            let value = items.pop_front();
            self.len.store(items.len(), Release);
            value
        }

        pub(crate) fn is_empty(&self) -> bool {
            self.len.load(Acquire) == 0
        }
    }

    /// A parker with crossbeam's contract, on loom's `Notify`: an unpark leaves a token that
    /// the next park consumes, and a park may return spuriously (loom explores that too).
    pub(crate) struct Parker {
        unparker: Unparker,
    }

    /// Unparks a [`Parker`].
    #[derive(Clone)]
    pub(crate) struct Unparker {
        notify: Arc<Notify>,
    }

    impl Parker {
        pub(crate) fn new() -> Self {
            Self {
                unparker: Unparker {
                    notify: Arc::new(Notify::new()),
                },
            }
        }

        pub(crate) fn park(&self) {
            self.unparker.notify.wait();
        }

        /// Time does not pass in the model: a deadline is never reached, so waiting on one
        /// waits for an unpark, and a lost wake-up still shows up as a deadlock.
        pub(crate) fn park_deadline(&self, _deadline: Instant) {
            self.park();
        }

        pub(crate) fn unparker(&self) -> &Unparker {
            &self.unparker
        }
    }

    impl Unparker {
        pub(crate) fn unpark(&self) {
            self.notify.notify();
        }
    }
}
