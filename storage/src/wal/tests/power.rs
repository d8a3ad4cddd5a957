//! Power cuts, on the simulated file system ([`SimFs`]): each seed runs a [`FileStorage`]
//! through a random sequence of persists (votes, appends, truncations, snapshots that remove
//! segments), power cuts (between persists, in the middle of one, in the middle of the open
//! that follows one), crashes of the process alone (the page cache survives) and failed syncs,
//! and after every restart checks that recovery returns exactly a state that was durable: every
//! update `persist` acknowledged is there, nothing that was never written is, and an update
//! under way when the power went is there whole, not at all, or (split over records) as a
//! prefix of its records. After a failed sync, the directory must not open before a power cut
//! (a reboot).
//!
//! The seeds run are [`seeds`]: 3 000, or 30 000 with `ZERORAFT_LONG` set (to anything but
//! empty or `0`). Bugs switched back on ([`Bugs`]) must each be caught within them.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::super::fault::Bugs;
use super::super::fs::sim::{Cuts, Rng, SimFs};
use super::super::*;
use crate::{MemStorage, Snapshot};

/// The data directory on the simulated file system.
const DIR: &str = "/data";
/// Steps of one seed.
const STEPS: usize = 40;

/// How many seeds the tests run.
fn seeds() -> u64 {
    match std::env::var("ZERORAFT_LONG") {
        Ok(v) if !v.is_empty() && v != "0" => 30_000,
        _ => 3_000,
    }
}

/// What the seeds did, for the report.
#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    /// Updates acknowledged.
    acknowledged: u64,
    /// Power cuts between persists.
    cuts_between: u64,
    /// Power cuts in the middle of a persist.
    cuts_in_persist: u64,
    /// Power cuts in the middle of an open.
    cuts_in_open: u64,
    /// Crashes of the process alone.
    kills: u64,
    /// Failed syncs, after which opening was refused until a power cut.
    refused_until_reboot: u64,
    /// Restarts that found the update under way: whole, in part (a prefix of its records), or
    /// not at all.
    unacknowledged_whole: u64,
    unacknowledged_prefix: u64,
    unacknowledged_lost: u64,
    /// Opens that cut off a torn tail or removed a segment cut short.
    repairs: u64,
    /// Persists that began by removing the segments an earlier snapshot covers, put off as the
    /// remover thread may be (see [`FileStorage::hand_over`]).
    removals_put_off: u64,
    /// Restarts that found such removals still waiting: the process died before its thread
    /// got to them.
    removals_lost: u64,
}

impl Stats {
    fn add(&mut self, other: &Self) {
        self.acknowledged += other.acknowledged;
        self.cuts_between += other.cuts_between;
        self.cuts_in_persist += other.cuts_in_persist;
        self.cuts_in_open += other.cuts_in_open;
        self.kills += other.kills;
        self.refused_until_reboot += other.refused_until_reboot;
        self.unacknowledged_whole += other.unacknowledged_whole;
        self.unacknowledged_prefix += other.unacknowledged_prefix;
        self.unacknowledged_lost += other.unacknowledged_lost;
        self.repairs += other.repairs;
        self.removals_put_off += other.removals_put_off;
        self.removals_lost += other.removals_lost;
    }
}

/// An update that owns what it refers to.
use crate::OwnedUpdate as Op;

/// An update under way when the process died: the states it may have left.
struct InFlight {
    /// The whole update applied.
    after: Recovered,
    /// Each prefix of its records applied, if it was split over records.
    prefixes: Vec<Recovered>,
}

/// One seed's world: the file system, the storage on it, and what it must hold.
struct World {
    seed: u64,
    rng: Rng,
    fs: SimFs,
    options: WalOptions,
    max_record_bytes: u64,
    bugs: Bugs,
    storage: Option<FileStorage>,
    /// What the storage holds: the last state acknowledged (or recovered and synced by an
    /// open).
    model: MemStorage,
    stats: Stats,
    /// What happened, for a failure's message.
    events: Vec<String>,
}

/// The state `model` holds.
fn state(model: &MemStorage) -> Recovered {
    model.copy().recover().expect("a model recovers")
}

/// A model holding `recovered`.
fn model_of(recovered: &Recovered) -> MemStorage {
    let mut model = MemStorage::new();
    let op = Op {
        hard_state: Some(recovered.hard_state),
        snapshot: recovered.snapshot.clone(),
        truncate_from: None,
        first_index: recovered.first_index(),
        entries: recovered.entries.clone(),
    };
    model
        .persist(&op.update())
        .expect("a recovered state is valid");
    model
}

impl World {
    fn new(seed: u64, bugs: Bugs) -> Self {
        let fs = SimFs::new(seed);
        if std::env::var_os("ZERORAFT_POWER_TRACE").is_some() {
            fs.trace();
        }
        let mut rng = Rng::new(seed);
        let segment_size = [96, 200, 512, 2048][rng.below(4) as usize];
        let ballast_bytes = [0, 0, 700][rng.below(3) as usize];
        let max_record_bytes = if rng.chance(250) {
            100 + rng.below(200)
        } else {
            MAX_RECORD_BYTES
        };
        Self {
            seed,
            rng,
            fs,
            options: WalOptions {
                segment_size,
                create: true,
                members: None,
                ballast_bytes,
            },
            max_record_bytes,
            bugs,
            storage: None,
            model: MemStorage::new(),
            stats: Stats::default(),
            events: Vec::new(),
        }
    }

    /// A failure's message: the seed, `what`, and the last events (all of them with
    /// `ZERORAFT_POWER_TRACE` set).
    fn fail(&self, what: String) -> String {
        let all = std::env::var_os("ZERORAFT_POWER_TRACE").is_some();
        let from = if all {
            0
        } else {
            self.events.len().saturating_sub(6)
        };
        let mut message = format!(
            "seed {} (segments of {} bytes, records of at most {}): {what}\n  after: {}",
            self.seed,
            self.options.segment_size,
            self.max_record_bytes,
            self.events[from..].join("\n  then: ")
        );
        if all {
            message.push_str("\nfile system:\n");
            message.push_str(&self.fs.traced().join("\n"));
        }
        message
    }

    /// Opens the directory, the process dying in the middle of it now and then (then the
    /// machine loses power, or the process starts again) until an open goes through; checks
    /// what it recovered against the model, or against `in_flight`'s states.
    fn open(&mut self, in_flight: Option<&InFlight>) -> Result<(), String> {
        assert!(self.storage.is_none());
        let mut attempts = 0;
        let mut storage = loop {
            attempts += 1;
            self.fs.restart();
            let cut = attempts < 4 && self.rng.chance(100);
            if cut {
                self.fs.crash_at(1 + self.rng.below(8));
            }
            let fs: Arc<dyn Fs> = Arc::new(self.fs.clone());
            let (opened, warnings) = count_warnings(|| {
                FileStorage::open_with(fs, Path::new(DIR), ID, self.options.clone())
            });
            match opened {
                Ok(storage) => {
                    self.stats.repairs += u64::from(warnings > 0);
                    break storage;
                }
                Err(err) if cut && err.to_string().contains("simulated crash") => {
                    self.stats.cuts_in_open += 1;
                    if self.rng.chance(700) {
                        self.fs.power_cut(&mut self.rng);
                    }
                }
                Err(err) => return Err(self.fail(format!("the log does not open: {err}"))),
            }
        };
        self.fs.restart();
        let recovered = storage
            .recover()
            .map_err(|e| self.fail(format!("recover: {e}")))?;
        let acknowledged = state(&self.model);
        if recovered == acknowledged {
            if in_flight.is_some() {
                self.stats.unacknowledged_lost += 1;
            }
        } else if let Some(in_flight) = in_flight
            && recovered == in_flight.after
        {
            self.stats.unacknowledged_whole += 1;
        } else if let Some(in_flight) = in_flight
            && in_flight.prefixes.contains(&recovered)
        {
            self.stats.unacknowledged_prefix += 1;
        } else {
            return Err(self.fail(format!(
                "recovered {} but {} was acknowledged{}",
                describe(&recovered),
                describe(&acknowledged),
                in_flight.map_or(String::new(), |f| format!(
                    ", and the update under way leads to {}",
                    describe(&f.after)
                )),
            )));
        }
        let last = recovered.first_index() - 1 + recovered.entries.len() as u64;
        if (
            storage.hard_state(),
            storage.last_index(),
            storage.snapshot_index(),
        ) != (recovered.hard_state, last, recovered.first_index() - 1)
        {
            return Err(self.fail(format!(
                "the storage says {:?}, last index {}, snapshot {}, but recovered {}",
                storage.hard_state(),
                storage.last_index(),
                storage.snapshot_index(),
                describe(&recovered)
            )));
        }
        // What an open recovered, it made durable: it is the state to keep from now on.
        self.events.push(format!(
            "opened (attempt {attempts}): {}",
            describe(&recovered)
        ));
        self.model = model_of(&recovered);
        storage.max_record_bytes = self.max_record_bytes;
        storage.faults.bugs = self.bugs;
        self.storage = Some(storage);
        Ok(())
    }

    /// The process dies; with `power`, the machine loses power too. Then it starts again.
    fn restart(&mut self, power: bool, in_flight: Option<&InFlight>) -> Result<(), String> {
        if self
            .storage
            .as_ref()
            .is_some_and(|storage| !storage.put_off.is_empty())
        {
            self.stats.removals_lost += 1;
        }
        self.storage = None;
        if power {
            self.fs.power_cut(&mut self.rng);
        }
        self.events
            .push(if power { "power cut" } else { "process crash" }.to_owned());
        self.open(in_flight)
    }

    /// A random update that the model accepts.
    fn random_op(&mut self) -> Op {
        let rng = &mut self.rng;
        let hard_state = self.model.hard_state();
        let last = self.model.last_index();
        let snapshot = self.model.snapshot().map_or(0, |s| s.index);
        let term = hard_state.term.max(1);
        // The largest command a record holds, with all else a batch may carry.
        let fits = self.max_record_bytes
            - format::batch_payload_bytes(true, true, true, 0)
            - ENTRY_HEADER_BYTES;
        let entries = |rng: &mut Rng, first: u64, n: u64, term: u64| -> Vec<Entry> {
            (first..first + n)
                .map(|i| {
                    let largest = if rng.chance(100) { 900 } else { 120 };
                    let size = rng.below(largest).min(fits) as usize;
                    let mut command = vec![(i % 251) as u8 + 1; size.max(8)];
                    command[..8].copy_from_slice(&i.to_le_bytes());
                    Entry::new(term, Bytes::from(command))
                })
                .collect()
        };
        match rng.below(100) {
            // A vote in a new term.
            0..=14 => Op {
                hard_state: Some(HardState {
                    term: term + 1,
                    voted_for: (!rng.chance(200)).then(|| rng.below(5) as usize),
                }),
                ..Op::default()
            },
            // A new leader's first entries replace part of the log.
            15..=24 if last > snapshot => {
                let from = snapshot + 1 + rng.below(last - snapshot);
                let n = 1 + rng.below(3);
                Op {
                    hard_state: Some(HardState {
                        term: term + 1,
                        voted_for: None,
                    }),
                    truncate_from: Some(from),
                    first_index: from,
                    entries: entries(rng, from, n, term + 1),
                    ..Op::default()
                }
            }
            // A snapshot within the log, with entries after it now and then.
            25..=39 if last > snapshot => {
                let index = snapshot + 1 + rng.below(last - snapshot);
                let data = vec![(index % 200) as u8; rng.below(600) as usize];
                let more = if rng.chance(300) { 1 + rng.below(3) } else { 0 };
                Op {
                    snapshot: Some(Snapshot {
                        index,
                        term,
                        data: Bytes::from(data),
                        config: None,
                    }),
                    first_index: last + 1,
                    entries: entries(rng, last + 1, more, term),
                    ..Op::default()
                }
            }
            // A snapshot beyond the end of the log (installed from a leader).
            40..=43 => {
                let index = last + 1 + rng.below(3);
                Op {
                    hard_state: Some(HardState {
                        term: term + 1,
                        voted_for: None,
                    }),
                    snapshot: Some(Snapshot {
                        index,
                        term: term + 1,
                        data: Bytes::from(vec![7; rng.below(300) as usize]),
                        config: None,
                    }),
                    truncate_from: Some(index + 1),
                    first_index: index + 1,
                    entries: Vec::new(),
                }
            }
            // Entries appended.
            _ => {
                let n = 1 + rng.below(4);
                Op {
                    first_index: last + 1,
                    entries: entries(rng, last + 1, n, term),
                    ..Op::default()
                }
            }
        }
    }

    /// The states `op` may leave if the process dies while persisting it.
    fn in_flight(&self, op: &Op) -> InFlight {
        let mut after = self.model.copy();
        after.persist(&op.update()).expect("the model takes it");
        let mut prefixes = Vec::new();
        if self.max_record_bytes < MAX_RECORD_BYTES {
            for k in 1..op.entries.len() {
                let mut prefix = self.model.copy();
                let part = Op {
                    entries: op.entries[..k].to_vec(),
                    ..op.clone()
                };
                prefix.persist(&part.update()).expect("the model takes it");
                prefixes.push(state(&prefix));
            }
        }
        InFlight {
            after: state(&after),
            prefixes,
        }
    }

    /// Persists a random update; the process dies in the middle of it now and then, and the
    /// machine with it, or a sync fails.
    fn step_persist(&mut self, fail_sync: bool) -> Result<(), String> {
        let op = self.random_op();
        let in_flight = self.in_flight(&op);
        let crash = !fail_sync && self.rng.chance(120);
        if crash {
            self.fs.crash_at(1 + self.rng.below(12));
        }
        if fail_sync {
            self.fs.fail_sync(1 + self.rng.below(3));
        }
        let storage = self.storage.as_mut().expect("open");
        if !storage.put_off.is_empty() {
            self.stats.removals_put_off += 1;
        }
        let result = storage.persist(&op.update());
        self.fs.restart();
        self.events.push(format!(
            "persist {} -> {}: {}",
            describe_op(&op),
            describe(&in_flight.after),
            match &result {
                Ok(()) => "ok".to_owned(),
                Err(e) => e.to_string(),
            }
        ));
        match result {
            Ok(()) => {
                self.model
                    .persist(&op.update())
                    .expect("the model takes it");
                self.stats.acknowledged += 1;
                Ok(())
            }
            Err(err) if crash => {
                if !err.to_string().contains("simulated crash") {
                    return Err(self.fail(format!("persist failed: {err}")));
                }
                self.stats.cuts_in_persist += 1;
                let power = self.rng.chance(700);
                self.restart(power, Some(&in_flight))
            }
            Err(err) => {
                if !err.to_string().contains("simulated sync failure") {
                    return Err(self.fail(format!("persist failed: {err}")));
                }
                // The page cache may hold what the disk does not: no open before a reboot.
                self.storage = None;
                let fs: Arc<dyn Fs> = Arc::new(self.fs.clone());
                match FileStorage::open_with(fs, Path::new(DIR), ID, self.options.clone()) {
                    Err(StorageError::SyncFailed { .. }) => self.stats.refused_until_reboot += 1,
                    Err(other) => return Err(self.fail(format!("after a failed sync: {other}"))),
                    Ok(mut storage) => {
                        // Opened: what it recovered, it acts on, as durable.
                        let recovered = storage.recover().map_err(|e| e.to_string())?;
                        let acknowledged = state(&self.model);
                        if recovered != acknowledged && recovered != in_flight.after {
                            return Err(self.fail(format!(
                                "after a failed sync, recovered {}",
                                describe(&recovered)
                            )));
                        }
                        self.model = model_of(&recovered);
                    }
                }
                self.restart(true, Some(&in_flight))
            }
        }
    }

    fn run(mut self) -> Result<Stats, String> {
        // The directory is initialized; the power may go while it is.
        if self.rng.chance(200) {
            self.fs.crash_at(1 + self.rng.below(10));
            let fs: Arc<dyn Fs> = Arc::new(self.fs.clone());
            if FileStorage::open_with(fs, Path::new(DIR), ID, self.options.clone()).is_ok() {
                // Initialized before the crash: it must be there, and empty.
                self.fs.power_cut(&mut self.rng);
                self.stats.cuts_between += 1;
            } else {
                self.fs.power_cut(&mut self.rng);
                self.stats.cuts_in_open += 1;
            }
        }
        self.open(None)?;
        for _ in 0..STEPS {
            match self.rng.below(100) {
                0..=9 => {
                    self.stats.cuts_between += 1;
                    self.restart(true, None)?;
                }
                10..=15 => {
                    self.stats.kills += 1;
                    self.restart(false, None)?;
                }
                16..=19 => self.step_persist(true)?,
                _ => self.step_persist(false)?,
            }
        }
        self.stats.cuts_between += 1;
        self.restart(true, None)?;
        Ok(self.stats)
    }
}

const ID: Identity = Identity {
    cluster: 3,
    node: 1,
};

/// A short description of a state, for messages.
fn describe(state: &Recovered) -> String {
    let snapshot = state.snapshot.as_ref().map_or(0, |s| s.index);
    format!(
        "{{{:?}, snapshot {snapshot}, entries {}..={}}}",
        state.hard_state,
        snapshot + 1,
        snapshot + state.entries.len() as u64
    )
}

/// A short description of an update, for messages.
fn describe_op(op: &Op) -> String {
    let mut parts = Vec::new();
    if let Some(hard_state) = op.hard_state {
        parts.push(format!("{hard_state:?}"));
    }
    if let Some(snapshot) = &op.snapshot {
        parts.push(format!("snapshot {}", snapshot.index));
    }
    if let Some(from) = op.truncate_from {
        parts.push(format!("truncate from {from}"));
    }
    if !op.entries.is_empty() {
        let last = op.first_index + op.entries.len() as u64 - 1;
        parts.push(format!("entries {}..={last}", op.first_index));
    }
    parts.join(", ")
}

/// Runs `f`, counting the warnings it logs.
fn count_warnings<T>(f: impl FnOnce() -> T) -> (T, usize) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tracing::subscriber::Interest;
    use tracing::{Event, Level, Metadata, span};

    struct Count(Arc<AtomicUsize>);
    impl tracing::Subscriber for Count {
        fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
            Interest::sometimes()
        }
        fn enabled(&self, metadata: &Metadata<'_>) -> bool {
            *metadata.level() <= Level::WARN
        }
        fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
            span::Id::from_u64(1)
        }
        fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
        fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
        fn event(&self, _: &Event<'_>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        fn enter(&self, _: &span::Id) {}
        fn exit(&self, _: &span::Id) {}
    }
    let count = Arc::new(AtomicUsize::new(0));
    let result = tracing::subscriber::with_default(Count(Arc::clone(&count)), f);
    (result, count.load(Ordering::Relaxed))
}

#[test]
fn power_cuts_leave_a_state_that_was_durable() {
    let seeds = seeds();
    let mut stats = Stats::default();
    let mut cuts = Cuts::default();
    for seed in 0..seeds {
        let world = World::new(seed, Bugs::default());
        let fs = world.fs.clone();
        match world.run() {
            Ok(seed_stats) => stats.add(&seed_stats),
            Err(failure) => panic!("{failure}"),
        }
        let c = fs.cuts();
        cuts.cuts += c.cuts;
        cuts.files_unsynced += c.files_unsynced;
        cuts.files_dropped += c.files_dropped;
        cuts.files_torn += c.files_torn;
        cuts.dir_ops_unsynced += c.dir_ops_unsynced;
        cuts.dir_ops_lost += c.dir_ops_lost;
        cuts.dir_reordered += c.dir_reordered;
    }
    eprintln!("{seeds} seeds: {stats:#?}\n{cuts:#?}");
    // Every kind of event came up, many times over.
    let at_least = seeds / 50;
    let seen = [
        ("acknowledged updates", stats.acknowledged),
        ("cuts between persists", stats.cuts_between),
        ("cuts in a persist", stats.cuts_in_persist),
        ("cuts in an open", stats.cuts_in_open),
        ("process crashes", stats.kills),
        ("refused until a reboot", stats.refused_until_reboot),
        ("updates under way kept", stats.unacknowledged_whole),
        (
            "updates under way kept in part",
            stats.unacknowledged_prefix,
        ),
        ("updates under way lost", stats.unacknowledged_lost),
        ("repairs", stats.repairs),
        ("removals put off to the next write", stats.removals_put_off),
        ("removals lost with the process", stats.removals_lost),
        ("files with unsynced writes dropped", cuts.files_dropped),
        ("files torn", cuts.files_torn),
        ("directory operations lost", cuts.dir_ops_lost),
        ("directory operations reordered", cuts.dir_reordered),
    ];
    for (case, (what, count)) in seen.iter().enumerate() {
        assert!(
            *count >= at_least,
            "case {case}: {what}: {count} in {seeds} seeds"
        );
    }
}

#[test]
fn each_bug_switched_back_on_is_caught() {
    let seeds = seeds();
    let cases = [
        (
            "sync skipped",
            Bugs {
                skip_sync: true,
                ..Bugs::default()
            },
        ),
        (
            "rename before the data sync",
            Bugs {
                rename_before_data_sync: true,
                ..Bugs::default()
            },
        ),
        (
            "segments removed before the snapshot is durable",
            Bugs {
                remove_before_snapshot_durable: true,
                ..Bugs::default()
            },
        ),
        (
            "no marker after a failed sync",
            Bugs {
                no_sync_failed_marker: true,
                ..Bugs::default()
            },
        ),
        (
            "a prepared segment written to before the directory is synced",
            Bugs {
                rotate_without_dir_sync: true,
                ..Bugs::default()
            },
        ),
    ];
    for (case, (name, bugs)) in cases.into_iter().enumerate() {
        let failures: Vec<String> = (0..seeds)
            .filter_map(|seed| World::new(seed, bugs).run().err())
            .collect();
        let Some(first) = failures.first() else {
            panic!("case {case}: {name}: not caught in {seeds} seeds");
        };
        eprintln!(
            "case {case}: {name}: caught by {} of {seeds} seeds, first at {first}",
            failures.len()
        );
        // Caught by what recovery found, not by the test going wrong.
        for failure in &failures {
            assert!(
                failure.contains("recovered") || failure.contains("does not open"),
                "case {case}: {name}: {failure}"
            );
        }
    }
}

/// Opens the directory of `fs` with `options`.
fn open_on(fs: &SimFs, options: &WalOptions) -> Result<FileStorage, StorageError> {
    FileStorage::open_with(Arc::new(fs.clone()), Path::new(DIR), ID, options.clone())
}

/// `n` entries of `size` bytes from `first` on.
fn entries(first: u64, n: u64, size: usize) -> Vec<Entry> {
    (first..first + n)
        .map(|i| Entry::new(1, Bytes::from(vec![i as u8; size])))
        .collect()
}

#[test]
fn a_full_disk_leaves_the_ballast_room_for_the_next_snapshot() {
    let fs = SimFs::new(1);
    let options = WalOptions {
        segment_size: 256,
        create: true,
        members: None,
        ballast_bytes: 4096,
    };
    let ballast = Path::new(DIR).join(ballast::BALLAST);
    let mut storage = open_on(&fs, &options).unwrap();
    assert!(!storage.disk_full());
    assert_eq!(fs.contents(&ballast).map(|b| b.len()), Some(4096));
    fs.set_capacity(Some(fs.used() + 12_000));
    let mut model = MemStorage::new();
    let err = loop {
        let op = Op {
            first_index: model.last_index() + 1,
            entries: entries(model.last_index() + 1, 2, 100),
            ..Op::default()
        };
        match storage.persist(&op.update()) {
            Ok(()) => model.persist(&op.update()).unwrap(),
            Err(err) => break err,
        }
    };
    assert!(err.is_storage_full(), "{err}");
    assert!(storage.disk_full());
    assert_eq!(fs.contents(&ballast), None, "the ballast made room");
    drop(storage);

    // Started again: the ballast's room is all there is, not enough to make it again.
    let mut storage = open_on(&fs, &options).unwrap();
    assert!(storage.disk_full());
    assert_eq!(fs.contents(&ballast), None);
    assert_eq!(storage.recover().unwrap(), state(&model));
    // It takes a snapshot, which removes the segments it covers.
    let last = model.last_index();
    let op = Op {
        snapshot: Some(Snapshot {
            index: last,
            term: 1,
            data: Bytes::from(vec![1; 1000]),
            config: None,
        }),
        first_index: last + 1,
        ..Op::default()
    };
    storage.persist(&op.update()).unwrap();
    model.persist(&op.update()).unwrap();
    assert!(!storage.disk_full(), "room again");
    assert_eq!(fs.contents(&ballast).map(|b| b.len()), Some(4096));
    drop(storage);
    let mut storage = open_on(&fs, &options).unwrap();
    assert!(!storage.disk_full());
    assert_eq!(storage.recover().unwrap(), state(&model));
}

#[test]
fn a_sync_that_fails_while_opening_leaves_the_marker_too() {
    let fs = SimFs::new(2);
    let options = WalOptions {
        create: true,
        ballast_bytes: 0,
        ..WalOptions::default()
    };
    let mut storage = open_on(&fs, &options).unwrap();
    let op = Op {
        first_index: 1,
        entries: entries(1, 3, 10),
        ..Op::default()
    };
    storage.persist(&op.update()).unwrap();
    // The process dies after writing the next record, before syncing it.
    fs.crash_at(2);
    let more = Op {
        first_index: 4,
        entries: entries(4, 1, 10),
        ..Op::default()
    };
    assert!(storage.persist(&more.update()).is_err());
    drop(storage);
    fs.restart();
    // The open's first sync fails.
    fs.fail_sync(1);
    let err = open_on(&fs, &options).unwrap_err();
    assert!(err.to_string().contains("simulated sync failure"), "{err}");
    fs.restart();
    match open_on(&fs, &options).unwrap_err() {
        StorageError::SyncFailed { failure, .. } => {
            assert!(failure.contains("simulated sync failure"), "{failure}");
        }
        other => panic!("{other}"),
    }
    // After a reboot, what the disk holds: the acknowledged record, and the other or not.
    fs.power_cut(&mut Rng::new(3));
    let mut storage = open_on(&fs, &options).unwrap();
    let entries = storage.recover().unwrap().entries.len();
    assert!(entries == 3 || entries == 4, "{entries} entries");
    let marker = Path::new(DIR).join(sync_failed::MARKER);
    assert_eq!(fs.contents(&marker), None, "removed");
}

#[test]
fn a_full_disk_while_preparing_fails_the_rotation_that_needs_it_and_frees_the_ballast() {
    let fs = SimFs::new(3);
    let options = WalOptions {
        segment_size: 2048,
        create: true,
        members: None,
        ballast_bytes: 4096,
    };
    let ballast = Path::new(DIR).join(ballast::BALLAST);
    let mut storage = open_on(&fs, &options).unwrap();
    let mut model = MemStorage::new();
    let persist = |storage: &mut FileStorage, model: &mut MemStorage| {
        let op = Op {
            first_index: model.last_index() + 1,
            entries: entries(model.last_index() + 1, 1, 50),
            ..Op::default()
        };
        let result = storage.persist(&op.update());
        if result.is_ok() {
            model.persist(&op.update()).unwrap();
        }
        result
    };
    // Room on the disk: the log moves to its second segment, prepared at its full size.
    while storage.seq < 2 {
        persist(&mut storage, &mut model).unwrap();
    }
    assert!(storage.preallocated);
    // Now too little room for the next segment, enough for the records that fill this one
    // (they overwrite its zeros) and the one that crosses its end.
    fs.set_capacity(Some(fs.used() + 400));
    let err = loop {
        let end = storage.end;
        match persist(&mut storage, &mut model) {
            Ok(()) => assert!(
                end < options.segment_size,
                "a write past the segment's size"
            ),
            Err(err) => break err,
        }
    };
    assert!(err.is_storage_full(), "{err}");
    assert_eq!(storage.seq, 2, "failed when the third segment was needed");
    assert!(storage.disk_full());
    assert_eq!(fs.contents(&ballast), None, "the ballast made room");
    let tmp = Path::new(DIR).join(prepare::file_name(3));
    assert_eq!(
        fs.contents(&tmp),
        None,
        "the failed preparation left no file"
    );
    drop(storage);

    // Started again: what was acknowledged is there.
    let mut storage = open_on(&fs, &options).unwrap();
    assert_eq!(storage.recover().unwrap(), state(&model));
}
