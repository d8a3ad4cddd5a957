//! The simulated storage of one node: what is durable, and the writes still on their way to the
//! disk.
//!
//! After every step the simulator takes the core's write ([`Core::take_persist`]), copies the
//! entries and the snapshot it names (cheap: an [`Entry`] or snapshot clone is a
//! [`Bytes`](bytes::Bytes) clone) and gives it
//! a completion time drawn from the scenario's [`DiskLatency`]. Writes complete in the order they
//! were taken, each no earlier than the one before it, so a core may have several outstanding (a
//! pipelined writer). A completed write is applied to a [`MemStorage`], the storage the cluster's
//! nodes use, and only then reported to the core ([`Core::persisted`]). A crash drops every write
//! that has not completed: the node restarts from exactly what was durable.
//!
//! [`Core::take_persist`]: zeroraft_engine::core::Core::take_persist
//! [`Core::persisted`]: zeroraft_engine::core::Core::persisted

use std::collections::VecDeque;

use zeroraft_engine::core::{Entry, HardState, Nanos, Update};
use zeroraft_engine::storage::{MemStorage, Recovered, Snapshot, Storage};

/// How long a simulated disk takes to make a write durable.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DiskLatency {
    /// Every write takes a time drawn uniformly from `[min, max]`.
    pub min: Nanos,
    /// See `min`.
    pub max: Nanos,
    /// Probability that a write stalls, taking up to `stall_max` longer (a long tail).
    pub stall: f64,
    /// See `stall`.
    pub stall_max: Nanos,
}

impl DiskLatency {
    fn draw(&self, rng: &mut fastrand::Rng) -> Nanos {
        let mut d = rng.u64(self.min..=self.max);
        if self.stall > 0.0 && rng.f64() < self.stall {
            d += rng.u64(0..=self.stall_max);
        }
        d
    }
}

/// A write the core handed over, with its entries copied when it was taken.
struct Write {
    generation: u64,
    /// When it becomes durable. Invariant: no earlier than the write before it in the queue.
    done_at: Nanos,
    hard_state: Option<HardState>,
    snapshot: Option<Snapshot>,
    truncate_from: Option<u64>,
    first_index: u64,
    entries: Vec<Entry>,
}

/// A write that just became durable, for the trace and the checker.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Completed {
    pub generation: u64,
    /// The hard state it stored, if it carried one.
    pub hard_state: Option<HardState>,
}

/// One node's storage: durable state, and the writes in progress in the order they were taken.
pub(crate) struct Disk {
    durable: MemStorage,
    /// The hard state `durable` holds, read after every step without taking its lock.
    hard_state: HardState,
    writing: VecDeque<Write>,
}

impl Disk {
    pub fn new() -> Self {
        Self {
            durable: MemStorage::new(),
            hard_state: HardState::default(),
            writing: VecDeque::new(),
        }
    }

    /// Starts write `generation`, `update` (which the core described just now), to complete
    /// after a latency drawn from `latency` (and not before the write ahead of it).
    pub fn start(
        &mut self,
        generation: u64,
        update: &Update<'_>,
        now: Nanos,
        latency: &DiskLatency,
        rng: &mut fastrand::Rng,
    ) {
        let after = self.writing.back().map_or(0, |w| w.done_at);
        self.writing.push_back(Write {
            generation,
            done_at: (now + latency.draw(rng)).max(after),
            hard_state: update.hard_state,
            snapshot: update.snapshot.cloned(),
            truncate_from: update.truncate_from,
            first_index: update.first_index,
            entries: update.entries.to_vec(),
        });
    }

    /// When the oldest write in progress completes, if there is one.
    pub fn next_done(&self) -> Option<Nanos> {
        self.writing.front().map(|w| w.done_at)
    }

    /// Makes the oldest write in progress durable.
    ///
    /// # Errors
    ///
    /// What the storage refused, if the write does not fit what is durable (entries that would
    /// leave a gap).
    ///
    /// # Panics
    ///
    /// If no write is in progress.
    pub fn complete(&mut self) -> Result<Completed, String> {
        let w = self.writing.pop_front().expect("a write is in progress");
        let update = Update {
            hard_state: w.hard_state,
            snapshot: w.snapshot.as_ref(),
            truncate_from: w.truncate_from,
            first_index: w.first_index,
            entries: &w.entries,
        };
        self.durable
            .persist(&update)
            .map_err(|e| format!("write {} cannot be stored: {e}", w.generation))?;
        self.hard_state = w.hard_state.unwrap_or(self.hard_state);
        Ok(Completed {
            generation: w.generation,
            hard_state: w.hard_state,
        })
    }

    /// Drops every write in progress, as a crash does. Returns how many there were.
    pub fn crash(&mut self) -> usize {
        let lost = self.writing.len();
        self.writing.clear();
        lost
    }

    /// The durable term and vote.
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// The index of the last durable entry (the durable snapshot's if no entry follows it).
    pub fn last_index(&self) -> u64 {
        self.durable.last_index()
    }

    /// What a restarting node recovers: the durable state only.
    pub fn recover(&mut self) -> Recovered {
        self.durable
            .recover()
            .expect("a memory storage always reads back")
    }
}
