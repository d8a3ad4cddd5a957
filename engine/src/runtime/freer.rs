//! The freer thread: drops the entries a compaction took out of the log, away from the node's
//! thread, and hands the emptied vector back for the next compaction.
//!
//! A compaction every 100 000 entries drops 100 000 entries at once: a pass over several
//! megabytes, each entry's payload released, which on the node's thread is a pause of a few
//! hundred microseconds in which nothing is sent, acknowledged or applied. With a spare vector
//! ([`crate::core::Core::give_log_buffer`]) the log moves the few entries it keeps into the
//! spare and leaves the old vector to [`crate::core::Core::take_retired_entries`]; the node
//! passes it here ([`Freer::retire`]). The thread empties it, gives back capacity far beyond
//! what it held, and returns it ([`Freer::take_emptied`]), so the two vectors take turns and
//! compaction allocates nothing once both have grown to the log's usual length.
//!
//! The thread is started at the first compaction that hands it entries, and holds at most one
//! vector at a time: one retired while it still drops the previous is dropped on the node's
//! thread, as it would be without it. Dropping the freer (the node's thread ending) waits for
//! the thread to finish the vector it holds.
//!
//! # Orderings
//!
//! Only channels: the vector moves through them, and nothing else is shared. The node takes
//! an emptied vector when it next looks ([`Freer::take_emptied`]), with no wake-up: the
//! vector is needed only at the next compaction.

use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::core::Entry;

/// The freer thread, once started.
struct Running {
    /// Vectors to empty (`None` once shutting down).
    jobs: Option<Sender<Vec<Entry>>>,
    /// Emptied vectors, back for the log.
    emptied: Receiver<Vec<Entry>>,
    thread: Option<JoinHandle<()>>,
}

/// A node's freer thread. See the module docs.
pub(super) struct Freer {
    node: usize,
    running: Option<Running>,
    /// Whether the thread could not be started: vectors are then dropped on the node's thread.
    unavailable: bool,
    /// Whether a vector was handed to the thread and has not come back yet.
    out: bool,
}

impl Freer {
    /// No thread yet: it starts at the first [`Freer::retire`].
    pub fn new(node: usize) -> Self {
        Self {
            node,
            running: None,
            unavailable: false,
            out: false,
        }
    }

    /// Drops `entries` (a vector a compaction left behind) on the freer thread, or here if
    /// the thread is busy with the previous one or cannot be started.
    pub fn retire(&mut self, entries: Vec<Entry>) {
        let Some(running) = self.start() else {
            return; // dropped here
        };
        let Some(jobs) = &running.jobs else { return };
        match jobs.try_send(entries) {
            Ok(()) => self.out = true,
            Err(TrySendError::Full(entries) | TrySendError::Disconnected(entries)) => {
                tracing::debug!(
                    node = self.node,
                    entries = entries.len(),
                    "the freer thread is busy: dropping compacted entries here"
                );
                drop(entries);
            }
        }
    }

    /// A vector the thread emptied, for the log's next compaction, if one came back.
    pub fn take_emptied(&mut self) -> Option<Vec<Entry>> {
        if !self.out {
            return None;
        }
        let emptied = self.running.as_ref()?.emptied.try_recv().ok()?;
        self.out = false;
        Some(emptied)
    }

    /// The thread, started if it was not.
    fn start(&mut self) -> Option<&Running> {
        if self.running.is_none() && !self.unavailable {
            let (jobs, job_rx) = crossbeam_channel::bounded::<Vec<Entry>>(1);
            let (emptied_tx, emptied) = crossbeam_channel::bounded(1);
            let spawned = std::thread::Builder::new()
                .name(format!("zeroraft-free-{}", self.node))
                .spawn(move || {
                    while let Ok(entries) = job_rx.recv() {
                        let emptied = empty(entries);
                        // The node holds one emptied vector at most: another is dropped.
                        let _ = emptied_tx.try_send(emptied);
                    }
                });
            match spawned {
                Ok(thread) => {
                    self.running = Some(Running {
                        jobs: Some(jobs),
                        emptied,
                        thread: Some(thread),
                    });
                }
                Err(error) => {
                    tracing::warn!(
                        node = self.node,
                        %error,
                        "cannot start the freer thread: compacted entries are dropped on the node's thread"
                    );
                    self.unavailable = true;
                }
            }
        }
        self.running.as_ref()
    }
}

/// Drops `entries`' contents and gives back capacity beyond four times the length they had
/// (a log that once grew long and now compacts sooner), keeping twice that.
fn empty(mut entries: Vec<Entry>) -> Vec<Entry> {
    let held = entries.len().max(1024);
    entries.clear();
    if entries.capacity() > 4 * held {
        entries.shrink_to(2 * held);
    }
    entries
}

impl Drop for Running {
    /// Lets the thread finish the vector it holds, and joins it.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn entries(n: usize) -> Vec<Entry> {
        (0..n)
            .map(|i| Entry::new(1, Bytes::from(vec![i as u8; 8])))
            .collect()
    }

    #[test]
    fn a_retired_vector_comes_back_empty_with_its_capacity() {
        let mut freer = Freer::new(7);
        assert!(freer.take_emptied().is_none(), "nothing handed over yet");
        let retired = entries(5000);
        let capacity = retired.capacity();
        freer.retire(retired);
        // The thread empties it in its own time: wait for it (no timing is asserted).
        let emptied = loop {
            if let Some(v) = freer.take_emptied() {
                break v;
            }
            std::thread::yield_now();
        };
        assert!(emptied.is_empty());
        assert_eq!(
            emptied.capacity(),
            capacity,
            "room for the next compaction kept"
        );
        assert!(freer.take_emptied().is_none(), "one vector, returned once");
    }

    #[test]
    fn capacity_far_beyond_what_was_held_is_given_back() {
        let mut v = entries(2000);
        v.reserve(100_000);
        let emptied = empty(v);
        assert!(emptied.is_empty());
        assert!(
            (4000..=8000).contains(&emptied.capacity()),
            "capacity {} after holding 2000 entries",
            emptied.capacity()
        );
    }
}
