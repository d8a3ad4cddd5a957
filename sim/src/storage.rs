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
//! # On the write-ahead log
//!
//! In the seeds that ask for it ([`Scenario::file_storage`](crate::Scenario::file_storage)) a
//! node's storage is also the real write-ahead log, a [`FileStorage`] on a simulated file system
//! of its own ([`SimFs`]), and the [`MemStorage`] is the model of what the log must give back:
//! a completed write is persisted to the log (written and synced) before the model takes it and
//! the core hears of it. A crash kills the process and cuts the power:
//!
//! - with no write under way, the cut finds nothing unsynced (every persist syncs), and the log
//!   must reopen to exactly the model;
//! - with writes under way, the oldest was reaching the disk: the file system is told to stop the
//!   process after a few of that persist's operations ([`SimFs::crash_at`]), the persist runs and
//!   fails there (or finishes first, if it needed fewer), and the power cut keeps what was synced
//!   and drops, tears or reorders what was not, as its own seed decides. The writes behind it are
//!   lost.
//!
//! On restart the log is opened again on the same file system, the process now and then dying in
//! the middle of the open, the machine sometimes losing power again (as the storage crate's
//! power-loss tests do), until an open goes through; the node restarts from what it recovered.
//! The simulator checks that state twice ([`Restarted`]): what the node told others is there
//! ([`Durability`](crate::Invariant::Durability), the checker's Raft-level check), and it is the
//! model, or the model with the write under way applied whole or, for a write split over
//! several records, a prefix of its entries ([`Recovery`](crate::Invariant::Recovery)). The
//! state an open recovered is durable from then on: it becomes the model.
//!
//! Every draw for the log (which nodes use it, its options, where a persist or an open dies, what
//! a power cut keeps) comes from a stream of the run's seed of its own, so that every other draw
//! of a seed is what it is without the log.
//!
//! [`Core::take_persist`]: zeroraft_engine::core::Core::take_persist
//! [`Core::persisted`]: zeroraft_engine::core::Core::persisted

use std::collections::VecDeque;

use zeroraft_engine::core::{HardState, Nanos, Update};
use zeroraft_engine::storage::{MemStorage, Recovered, Storage};
use zeroraft_storage::wal::MAX_RECORD_BYTES;
#[cfg(test)]
use zeroraft_storage::wal::sim::Bugs;
use zeroraft_storage::wal::sim::{Rng as PowerRng, SimFs};
use zeroraft_storage::{FileStorage, Identity, OwnedUpdate, WalOptions, encoded_size};

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
    /// What it writes.
    write: OwnedUpdate,
}

/// A write that just became durable, for the trace and the checker.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Completed {
    pub generation: u64,
    /// The hard state it stored, if it carried one.
    pub hard_state: Option<HardState>,
}

/// What a reopened write-ahead log gave back, against what it had to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnderWay {
    /// No write was under way when the node crashed (or the one under way finished before the
    /// process died), and the log gave back exactly what was durable.
    None,
    /// The write under way was kept whole.
    Kept,
    /// A prefix of the write under way's entries was kept (it was split over records).
    Prefix,
    /// The write under way was lost; everything durable before it was kept.
    Lost,
    /// The log gave back a state that is none of those: a violation.
    Unexpected,
}

/// What the write-ahead logs of a run went through (all zero when no node runs on one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PowerLoss {
    /// Nodes whose storage is the write-ahead log.
    pub nodes: u64,
    /// Writes persisted to a log (written and synced) and reported to the core.
    pub persisted: u64,
    /// Crashes of a node on a log: each cuts its power.
    pub crashes: u64,
    /// Of those, crashes with a write under way, whose persist the process died in.
    pub mid_write: u64,
    /// Of those, persists that finished before the point the process died at: durable, though
    /// the core never heard of them.
    pub finished: u64,
    /// Reopens after a crash that found the write under way whole, a prefix of it, or nothing
    /// of it (see [`UnderWay`]).
    pub kept: u64,
    /// See `kept`.
    pub prefix: u64,
    /// See `kept`.
    pub lost: u64,
    /// Opens in which the process died, and of those the ones followed by a power cut.
    pub open_crashes: u64,
    /// See `open_crashes`.
    pub open_power_cuts: u64,
    /// Files that had unsynced writes at a power cut, and of those the ones that kept none of
    /// them or only some ([`Cuts`](zeroraft_storage::wal::sim::Cuts)).
    pub files_unsynced: u64,
    /// See `files_unsynced`.
    pub files_dropped: u64,
    /// See `files_unsynced`.
    pub files_torn: u64,
    /// Unsynced directory operations (creations, renames, removals) a power cut lost.
    pub dir_ops_lost: u64,
}

impl PowerLoss {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Self) {
        self.nodes += other.nodes;
        self.persisted += other.persisted;
        self.crashes += other.crashes;
        self.mid_write += other.mid_write;
        self.finished += other.finished;
        self.kept += other.kept;
        self.prefix += other.prefix;
        self.lost += other.lost;
        self.open_crashes += other.open_crashes;
        self.open_power_cuts += other.open_power_cuts;
        self.files_unsynced += other.files_unsynced;
        self.files_dropped += other.files_dropped;
        self.files_torn += other.files_torn;
        self.dir_ops_lost += other.dir_ops_lost;
    }
}

/// Where a node's log lives on its file system.
const DIR: &str = "/data";

/// A node's write-ahead log on a simulated file system of its own.
struct Wal {
    fs: SimFs,
    identity: Identity,
    options: WalOptions,
    /// Open while the process runs: from the start, or an open after a crash, to the next crash.
    storage: Option<FileStorage>,
    /// The states the write under way at the last crash may have left, if one was.
    under_way: Option<Vec<Recovered>>,
}

impl Wal {
    fn open(&self) -> Result<FileStorage, String> {
        FileStorage::open_on(&self.fs, DIR, self.identity, self.options.clone())
            .map_err(|e| e.to_string())
    }

    /// Cuts the power, `rng` drawing what the cut keeps of what was not synced.
    fn power_cut(&self, rng: &mut fastrand::Rng) {
        self.fs.power_cut(&mut PowerRng::new(rng.u64(..)));
    }
}

/// What a restarting node recovers from its storage.
pub(crate) struct Restarted {
    pub recovered: Recovered,
    /// On a write-ahead log: how many opens it took, and whether what it recovered is what it
    /// had to ([`UnderWay::Unexpected`] with a description if not).
    pub wal: Option<(u32, UnderWay, Option<String>)>,
}

/// One node's storage: durable state, and the writes in progress in the order they were taken.
pub(crate) struct Disk {
    /// What the writes reported durable hold: the node's storage, or with a write-ahead log the
    /// model of what the log must give back.
    durable: MemStorage,
    /// The hard state `durable` holds, read after every step without taking its lock.
    hard_state: HardState,
    writing: VecDeque<Write>,
    /// The write-ahead log, if the node runs on one.
    wal: Option<Wal>,
    stats: PowerLoss,
}

impl Disk {
    pub fn new() -> Self {
        Self {
            durable: MemStorage::new(),
            hard_state: HardState::default(),
            writing: VecDeque::new(),
            wal: None,
            stats: PowerLoss::default(),
        }
    }

    /// Node `node`'s storage on a write-ahead log of cluster `cluster`, on a simulated file
    /// system of its own, initialized now; `rng` draws the log's options and the file system's
    /// seed.
    pub fn on_wal(cluster: u64, node: usize, rng: &mut fastrand::Rng) -> Result<Self, String> {
        let options = WalOptions {
            // Small segments, so that logs start new ones and snapshots remove old ones.
            segment_size: [1 << 10, 8 << 10, 64 << 10][rng.usize(..3)],
            create: true,
            members: None,
            ballast_bytes: [0, 0, 4 << 10][rng.usize(..3)],
        };
        let mut wal = Wal {
            fs: SimFs::new(rng.u64(..)),
            identity: Identity {
                cluster,
                node: node as u64,
            },
            options,
            storage: None,
            under_way: None,
        };
        wal.storage = Some(wal.open()?);
        Ok(Self {
            wal: Some(wal),
            stats: PowerLoss {
                nodes: 1,
                ..PowerLoss::default()
            },
            ..Self::new()
        })
    }

    /// Switches `bugs` on in the write-ahead log, if the node runs on one: it is opened again
    /// with them (before anything was written to it).
    #[cfg(test)]
    pub fn switch_on(&mut self, bugs: Bugs) -> Result<(), String> {
        if let Some(wal) = &mut self.wal {
            wal.fs.switch_on(bugs);
            wal.storage = None;
            wal.storage = Some(wal.open()?);
        }
        Ok(())
    }

    /// What the write-ahead log went through so far.
    pub fn power_loss(&self) -> PowerLoss {
        let mut stats = self.stats;
        if let Some(wal) = &self.wal {
            let cuts = wal.fs.cuts();
            stats.files_unsynced = cuts.files_unsynced;
            stats.files_dropped = cuts.files_dropped;
            stats.files_torn = cuts.files_torn;
            stats.dir_ops_lost = cuts.dir_ops_lost;
        }
        stats
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
            write: update.into(),
        });
    }

    /// When the oldest write in progress completes, if there is one.
    pub fn next_done(&self) -> Option<Nanos> {
        self.writing.front().map(|w| w.done_at)
    }

    /// Makes the oldest write in progress durable: on the write-ahead log, if the node runs on
    /// one (written and synced), then in `durable`.
    ///
    /// # Errors
    ///
    /// What the storage refused, if the write does not fit what is durable (entries that would
    /// leave a gap), or the write-ahead log's failure.
    ///
    /// # Panics
    ///
    /// If no write is in progress.
    pub fn complete(&mut self) -> Result<Completed, String> {
        let w = self.writing.pop_front().expect("a write is in progress");
        let update = w.write.update();
        if let Some(wal) = &mut self.wal {
            wal.storage
                .as_mut()
                .expect("the log is open while the node is up")
                .persist(&update)
                .map_err(|e| {
                    format!("write {} failed in the write-ahead log: {e}", w.generation)
                })?;
            self.stats.persisted += 1;
        }
        self.durable
            .persist(&update)
            .map_err(|e| format!("write {} cannot be stored: {e}", w.generation))?;
        self.hard_state = w.write.hard_state.unwrap_or(self.hard_state);
        Ok(Completed {
            generation: w.generation,
            hard_state: w.write.hard_state,
        })
    }

    /// Drops every write in progress, as a crash does, and returns how many there were. On a
    /// write-ahead log the process dies in the middle of the oldest one's persist, if there is
    /// one, then the power goes (see the module docs); `rng` draws where and what it keeps.
    ///
    /// # Errors
    ///
    /// If the persist under way failed other than by the process dying, or the write that
    /// finished does not fit what is durable.
    pub fn crash(&mut self, rng: &mut fastrand::Rng) -> Result<usize, String> {
        let lost = self.writing.len();
        if let Some(wal) = &mut self.wal {
            self.stats.crashes += 1;
            let mut storage = wal
                .storage
                .take()
                .expect("the log is open while the node is up");
            wal.under_way = None;
            if let Some(w) = self.writing.front() {
                self.stats.mid_write += 1;
                let update = w.write.update();
                // A persist is a write and a sync; more with a new segment, and a snapshot's file
                // (written, synced, renamed, the directory synced) before, its removals after.
                let ops = if update.snapshot.is_some() { 12 } else { 4 };
                wal.fs.crash_at(1 + rng.u64(..ops));
                match storage.persist(&update) {
                    Ok(()) => {
                        self.stats.finished += 1;
                        self.durable
                            .persist(&update)
                            .map_err(|e| format!("write {} cannot be stored: {e}", w.generation))?;
                        self.hard_state = w.write.hard_state.unwrap_or(self.hard_state);
                    }
                    Err(e) if e.to_string().contains("simulated crash") => {
                        wal.under_way = Some(states_after(&self.durable, &update));
                    }
                    Err(e) => {
                        return Err(format!(
                            "write {} under way failed otherwise than by the crash: {e}",
                            w.generation
                        ));
                    }
                }
            }
            drop(storage);
            wal.power_cut(rng);
        }
        self.writing.clear();
        Ok(lost)
    }

    /// The durable term and vote.
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// The index of the last durable entry (the durable snapshot's if no entry follows it).
    pub fn last_index(&self) -> u64 {
        self.durable.last_index()
    }

    /// What a restarting node recovers: the durable state, or what the write-ahead log gives
    /// back when it is opened again (the process dying in some opens, as `rng` draws), with
    /// the verdict on it. The caller checks it, then makes it durable with
    /// [`Disk::adopt`].
    ///
    /// # Errors
    ///
    /// If the log does not open or does not read back.
    pub fn restart(&mut self, rng: &mut fastrand::Rng) -> Result<Restarted, String> {
        let Some(wal) = &mut self.wal else {
            let recovered = self
                .durable
                .recover()
                .expect("a memory storage always reads back");
            return Ok(Restarted {
                recovered,
                wal: None,
            });
        };
        let mut attempts = 0;
        let mut storage = loop {
            attempts += 1;
            wal.fs.restart();
            let cut = attempts < 4 && rng.u8(..10) == 0;
            if cut {
                wal.fs.crash_at(1 + rng.u64(..8));
            }
            match wal.open() {
                Ok(storage) => break storage,
                Err(e) if cut && e.contains("simulated crash") => {
                    self.stats.open_crashes += 1;
                    if rng.u8(..10) < 7 {
                        self.stats.open_power_cuts += 1;
                        wal.power_cut(rng);
                    }
                }
                Err(e) => return Err(format!("the write-ahead log does not open: {e}")),
            }
        };
        wal.fs.restart();
        let recovered = storage
            .recover()
            .map_err(|e| format!("the write-ahead log does not read back: {e}"))?;
        wal.storage = Some(storage);
        let acknowledged = self
            .durable
            .recover()
            .expect("a memory storage always reads back");
        let under_way = wal.under_way.take();
        let (verdict, wrong) = match &under_way {
            _ if recovered == acknowledged => match under_way {
                Some(_) => (UnderWay::Lost, None),
                None => (UnderWay::None, None),
            },
            Some(states) if states[0] == recovered => (UnderWay::Kept, None),
            Some(states) if states[1..].contains(&recovered) => (UnderWay::Prefix, None),
            _ => (
                UnderWay::Unexpected,
                Some(format!(
                    "its write-ahead log recovered {}, but the writes reported durable hold {}{}",
                    describe(&recovered),
                    describe(&acknowledged),
                    under_way.as_ref().map_or(String::new(), |states| format!(
                        ", and the write under way leads to {}",
                        describe(&states[0])
                    ))
                )),
            ),
        };
        match verdict {
            UnderWay::Kept => self.stats.kept += 1,
            UnderWay::Prefix => self.stats.prefix += 1,
            UnderWay::Lost => self.stats.lost += 1,
            UnderWay::None | UnderWay::Unexpected => {}
        }
        Ok(Restarted {
            recovered,
            wal: Some((attempts, verdict, wrong)),
        })
    }

    /// Takes `recovered`, which a write-ahead log gave back on a restart, as the durable state:
    /// the open that recovered it made it durable.
    pub fn adopt(&mut self, recovered: &Recovered) {
        if self.wal.is_some() {
            self.durable = holding(recovered);
            self.hard_state = recovered.hard_state;
        }
    }
}

/// The states a crash in the middle of persisting `update` on top of `durable` may leave: the
/// update applied whole first, then, for an update split over several records (larger than
/// [`MAX_RECORD_BYTES`]), each prefix of its entries.
fn states_after(durable: &MemStorage, update: &Update<'_>) -> Vec<Recovered> {
    let state = |update: &Update<'_>| {
        let mut after = durable.copy();
        after
            .persist(update)
            .expect("the write fits what is durable: it was checked when it was taken");
        after.recover().expect("a memory storage always reads back")
    };
    let mut states = vec![state(update)];
    if encoded_size(update.entries) > MAX_RECORD_BYTES {
        for k in 1..update.entries.len() {
            states.push(state(&Update {
                entries: &update.entries[..k],
                ..*update
            }));
        }
    }
    states
}

/// A memory storage holding `recovered`.
fn holding(recovered: &Recovered) -> MemStorage {
    let mut storage = MemStorage::new();
    storage
        .persist(&Update {
            hard_state: Some(recovered.hard_state),
            snapshot: recovered.snapshot.as_ref(),
            truncate_from: None,
            first_index: recovered.first_index(),
            entries: &recovered.entries,
        })
        .expect("a recovered state is valid");
    storage
}

/// A short description of a state, for messages.
fn describe(state: &Recovered) -> String {
    let snapshot = state.snapshot.as_ref().map_or(0, |s| s.index);
    let last = snapshot + state.entries.len() as u64;
    format!(
        "term {} {}, snapshot {snapshot}, log up to {last}",
        state.hard_state.term,
        state
            .hard_state
            .voted_for
            .map_or("no vote".to_owned(), |v| format!("vote for {v}"))
    )
}
