//! How a node's writes reach its storage: on the node's own thread, or on a writer thread.
//!
//! Writing on the node's thread is the cheapest way for a storage that does not wait for a disk
//! ([`zeroraft_storage::MemStorage`]): no hand-over, no second thread to wake. For a storage that
//! does ([`zeroraft_storage::FileStorage`], whose every write ends in an `fdatasync`), a writer
//! thread keeps the node answering while the disk is slow: it goes on receiving messages, sending
//! heartbeats and appending to its log in memory, and the next write carries everything that
//! arrived meanwhile (group commit sized by the disk's own latency). On a shared machine an
//! `fdatasync` can take a hundred milliseconds or more; a leader blocked that long stops sending
//! heartbeats and its followers start elections.
//!
//! At most one write is under way: the next is taken from the core once the previous one is
//! durable, so writes become durable in the order they were taken, as the core requires.
//!
//! # Orderings
//!
//! The writer thread sends each completion on a channel, then wakes the node through its
//! [`Waker`]; the node's wait checks that channel (the waker's contract: publish, then wake).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use zeroraft_storage::{Entry, Snapshot, Storage, Update};
use zeroraft_transport::Waker;

use crate::NodeFailure;
use crate::core::{Core, Persist};

/// A write that finished.
pub(super) struct Completed {
    /// The core's number for the write.
    pub generation: u64,
    /// Whether it is durable, or why not.
    pub result: Result<(), NodeFailure>,
    /// How long it took.
    pub took: Duration,
    /// Of that, how long the storage waited for the disk ([`Storage::sync_time`]).
    pub synced: Duration,
    /// Whether the storage reported its disk full after it ([`Storage::disk_full`]).
    pub disk_full: bool,
}

/// Where writes go: see the module docs.
pub(super) enum Writer {
    /// Written on the node's thread, in [`Writer::submit`].
    Inline(Box<dyn Storage>),
    /// Written on a writer thread.
    Thread(ThreadWriter),
}

pub(super) struct ThreadWriter {
    /// Jobs for the writer thread (`None` once shutting down).
    jobs: Option<Sender<Job>>,
    done: Receiver<(Completed, Vec<Entry>)>,
    thread: Option<JoinHandle<()>>,
    /// Whether a write is under way.
    busy: bool,
    /// The entries vector of the last write, back from the writer thread, for the next one.
    buffer: Vec<Entry>,
}

/// One write for the writer thread: the core's [`Persist`] with its entries copied out of the log
/// (payloads are shared, not copied).
struct Job {
    persist: Persist,
    /// The snapshot to store, if the write has one (its data is shared, not copied).
    snapshot: Option<Snapshot>,
    entries: Vec<Entry>,
}

impl Writer {
    /// Writes to `storage` on the node's thread, or, if `dedicated`, starts a writer thread named
    /// after node `node` that wakes the node through `waker` when a write completes.
    ///
    /// # Errors
    ///
    /// If the thread cannot be started.
    pub fn new(
        storage: Box<dyn Storage>,
        dedicated: bool,
        node: usize,
        waker: Waker,
    ) -> std::io::Result<Self> {
        if !dedicated {
            return Ok(Self::Inline(storage));
        }
        let (jobs, job_rx) = crossbeam_channel::bounded::<Job>(1);
        let (done_tx, done) = crossbeam_channel::bounded(1);
        let thread = std::thread::Builder::new()
            .name(format!("zeroraft-writer-{node}"))
            .spawn(move || run_writer(storage, job_rx, done_tx, waker))?;
        Ok(Self::Thread(ThreadWriter {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
            busy: false,
            buffer: Vec::new(),
        }))
    }

    /// Whether a write is under way; the next must wait for it.
    pub fn busy(&self) -> bool {
        matches!(self, Self::Thread(t) if t.busy)
    }

    /// Whether a completed write is waiting to be collected with [`Writer::poll`].
    pub fn has_completion(&self) -> bool {
        matches!(self, Self::Thread(t) if !t.done.is_empty())
    }

    /// Starts `persist`, reading its entries and snapshot from `core` now. Written on the node's
    /// thread, it is
    /// complete when this returns, and so returned; on a writer thread it completes later, and
    /// [`Writer::poll`] returns it.
    ///
    /// # Panics
    ///
    /// If a write is already under way.
    pub fn submit(&mut self, persist: Persist, core: &Core) -> Option<Completed> {
        match self {
            Self::Inline(storage) => Some(timed_persist(
                &mut **storage,
                &core.update(&persist),
                persist.generation,
            )),
            Self::Thread(t) => {
                assert!(!t.busy, "a write is already under way");
                let update = core.update(&persist);
                let mut entries = std::mem::take(&mut t.buffer);
                entries.extend_from_slice(update.entries);
                let snapshot = update.snapshot.cloned();
                let job = Job {
                    persist,
                    snapshot,
                    entries,
                };
                let sent = t.jobs.as_ref().is_some_and(|jobs| jobs.send(job).is_ok());
                if !sent {
                    return Some(Completed {
                        generation: persist.generation,
                        result: Err(NodeFailure::WriterStopped),
                        took: Duration::ZERO,
                        synced: Duration::ZERO,
                        disk_full: false,
                    });
                }
                t.busy = true;
                None
            }
        }
    }

    /// The write that completed on the writer thread, if one did since the last call.
    pub fn poll(&mut self) -> Option<Completed> {
        let Self::Thread(t) = self else {
            return None;
        };
        let (completed, buffer) = t.done.try_recv().ok()?;
        t.busy = false;
        t.buffer = buffer;
        Some(completed)
    }
}

impl Drop for ThreadWriter {
    /// Lets the writer thread finish the write under way, if any, and joins it.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The writer thread: writes each job, hands back the completion and the emptied entries
/// vector, and wakes the node.
fn run_writer(
    mut storage: Box<dyn Storage>,
    jobs: Receiver<Job>,
    done: Sender<(Completed, Vec<Entry>)>,
    waker: Waker,
) {
    while let Ok(Job {
        persist,
        snapshot,
        mut entries,
    }) = jobs.recv()
    {
        let update = Update {
            hard_state: persist.hard_state,
            snapshot: snapshot.as_ref(),
            truncate_from: persist.truncate_from,
            first_index: persist.first_index,
            entries: &entries,
        };
        let completed = timed_persist(&mut *storage, &update, persist.generation);
        entries.clear();
        if done.send((completed, entries)).is_err() {
            return; // the node is gone
        }
        waker.wake();
    }
}

/// Persists `update` (the core's write `generation`) to `storage`, timing it.
fn timed_persist(storage: &mut dyn Storage, update: &Update<'_>, generation: u64) -> Completed {
    let started = Instant::now();
    let synced_before = storage.sync_time();
    let result = storage
        .persist(update)
        .map_err(|e| NodeFailure::Storage(Arc::new(e)));
    Completed {
        generation,
        result,
        took: started.elapsed(),
        synced: storage.sync_time().saturating_sub(synced_before),
        disk_full: storage.disk_full(),
    }
}
