//! The synchronization primitives of the proposal path (`runtime::claim`), in one place so that
//! the path can be model-checked.
//!
//! A normal build re-exports `std`'s atomics and crossbeam's queues. Built with `--cfg loom`,
//! the atomics are loom's and the queues are small stand-ins on loom's primitives, so that loom
//! sees every step the proposal path takes and explores their interleavings (see the
//! `loom_tests` module of `runtime::claim`).
//!
//! The stand-ins are sound for that purpose because the path relies on the queues only through
//! their contract: a push is a release that the pop or emptiness check which sees it acquires.
//! The stand-ins keep exactly that contract and add no ordering of their own to the emptiness
//! check the node's wait depends on. That crossbeam's queues keep their contract is crossbeam's
//! to check, not ours.

#[cfg(not(loom))]
pub(crate) use crossbeam_queue::{ArrayQueue, SegQueue};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use model::{ArrayQueue, SegQueue};

#[cfg(loom)]
mod model {
    use std::collections::VecDeque;

    use loom::sync::Mutex;
    use loom::sync::atomic::AtomicUsize;
    use loom::sync::atomic::Ordering::{Acquire, Release};

    /// A queue whose items sit behind a lock, but whose `is_empty` reads only `len`, stored
    /// with `Release` under the lock and loaded with `Acquire`: like crossbeam's queues, an
    /// emptiness check synchronizes with the push it sees and with nothing else. (Checking
    /// emptiness under the lock would order the check after every earlier push and hide the
    /// very reorderings the model is there to find.)
    struct Queue<T> {
        items: Mutex<VecDeque<T>>,
        len: AtomicUsize,
        capacity: usize,
    }

    impl<T> Queue<T> {
        fn new(capacity: usize) -> Self {
            Self {
                items: Mutex::new(VecDeque::new()),
                len: AtomicUsize::new(0),
                capacity,
            }
        }

        fn push(&self, value: T) -> Result<(), T> {
            let mut items = self.items.lock().expect("a model thread panicked");
            if items.len() == self.capacity {
                return Err(value);
            }
            items.push_back(value);
            self.len.store(items.len(), Release);
            Ok(())
        }

        fn pop(&self) -> Option<T> {
            let mut items = self.items.lock().expect("a model thread panicked");
            let value = items.pop_front();
            self.len.store(items.len(), Release);
            value
        }

        fn is_empty(&self) -> bool {
            self.len.load(Acquire) == 0
        }

        fn len(&self) -> usize {
            self.len.load(Acquire)
        }
    }

    /// The surface of `crossbeam_queue::ArrayQueue` the proposal path uses.
    pub(crate) struct ArrayQueue<T>(Queue<T>);

    impl<T> ArrayQueue<T> {
        pub(crate) fn new(capacity: usize) -> Self {
            Self(Queue::new(capacity))
        }

        pub(crate) fn push(&self, value: T) -> Result<(), T> {
            self.0.push(value)
        }

        pub(crate) fn pop(&self) -> Option<T> {
            self.0.pop()
        }

        pub(crate) fn is_empty(&self) -> bool {
            self.0.is_empty()
        }

        pub(crate) fn len(&self) -> usize {
            self.0.len()
        }
    }

    /// The surface of `crossbeam_queue::SegQueue` the proposal path uses.
    pub(crate) struct SegQueue<T>(Queue<T>);

    impl<T> SegQueue<T> {
        pub(crate) fn new() -> Self {
            Self(Queue::new(usize::MAX))
        }

        pub(crate) fn push(&self, value: T) {
            if self.0.push(value).is_err() {
                unreachable!("an unbounded queue is never full");
            }
        }

        pub(crate) fn pop(&self) -> Option<T> {
            self.0.pop()
        }

        pub(crate) fn is_empty(&self) -> bool {
            self.0.is_empty()
        }

        pub(crate) fn len(&self) -> usize {
            self.0.len()
        }
    }
}
