//! The write-ahead log gives back what was persisted: hard states, appends, truncations and
//! snapshots, across segments and reopens, compared with the in-memory model ([`MemStorage`]);
//! and it refuses what the model refuses.

use crate::common::{Op, Ops, Pair, entries, entry, len, open, segments, snapshot};
use proptest::prelude::*;
use zeroraft_storage::{HardState, MemStorage, Recovered, Storage, StorageError, Update};

#[test]
fn round_trip_with_truncations_and_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let segment_size = 4096;
    let mut pair = Pair::new(dir.path(), segment_size);
    let steps = [
        Op::vote(1, Some(2)),
        Op::append(0, entries(1, 1, 10, 100)),
        // One record larger than a segment.
        Op::append(10, entries(1, 11, 50, 200)),
        // A conflict: 30.. replaced, explicitly.
        Op {
            hard_state: Some(HardState {
                term: 2,
                voted_for: None,
            }),
            truncate_from: Some(30),
            first_index: 30,
            entries: entries(2, 30, 5, 40),
            ..Op::default()
        },
        // An overwrite without a truncation drops what follows too.
        Op {
            first_index: 25,
            entries: entries(3, 25, 2, 8),
            ..Op::default()
        },
        Op::vote(3, Some(0)),
        // A truncation alone, then one past the end (a no-op).
        Op {
            truncate_from: Some(20),
            ..Op::default()
        },
        Op {
            truncate_from: Some(100),
            ..Op::default()
        },
        // Commands of every small size, the empty one included.
        Op::append(19, (0..40).map(|i| entry(3, &vec![i as u8; i])).collect()),
    ];
    for (i, step) in steps.iter().enumerate() {
        pair.persist(step);
        if i % 3 == 2 {
            pair.reopen(segment_size, &format!("after step {i}"));
        }
    }
    pair.reopen(segment_size, "after all steps");
    for i in 0..60 {
        let last = pair.model.last_index();
        pair.persist(&Op::append(last, entries(4, last + 1, 3, 100)));
        if i % 20 == 19 {
            pair.reopen(segment_size, &format!("after append {i}"));
        }
    }
    let files = segments(dir.path());
    assert!(files.len() >= 6, "{} segments", files.len());
    // Segments end at the first record that reaches the segment size, or are prepared at that
    // size; only the first, made at its first write, may be left early, for a prepared one.
    for file in &files[1..files.len() - 1] {
        assert!(len(file) >= segment_size, "{}", file.display());
    }
    assert_eq!(pair.model.last_index(), 59 + 180);
}

#[test]
fn an_empty_update_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut pair = Pair::new(dir.path(), 1 << 20);
    pair.persist(&Op::append(0, entries(1, 1, 2, 8)));
    let segment = crate::common::last_segment(dir.path());
    let before = len(&segment);
    let empty = Update {
        hard_state: None,
        snapshot: None,
        truncate_from: None,
        first_index: 3,
        entries: &[],
    };
    pair.file().persist(&empty).unwrap();
    assert_eq!(len(&segment), before);
    pair.reopen(1 << 20, "after an empty update");
}

#[test]
fn a_log_across_many_segments_recovers_and_grows() {
    let dir = tempfile::tempdir().unwrap();
    let segment_size = 1024;
    let mut pair = Pair::new(dir.path(), segment_size);
    for i in 0..240u64 {
        if i % 50 == 0 {
            pair.persist(&Op::vote(i / 50 + 1, Some((i % 3) as usize)));
        }
        let last = pair.model.last_index();
        let term = pair.model.hard_state().term;
        pair.persist(&Op::append(last, entries(term, last + 1, 2, 50)));
    }
    let count = segments(dir.path()).len();
    assert!(count >= 30, "{count} segments");
    pair.reopen(segment_size, "240 appends");
    // A different segment size on the next open is fine: it only decides when to rotate.
    for _ in 0..20 {
        let last = pair.model.last_index();
        pair.persist(&Op::append(last, entries(9, last + 1, 1, 500)));
    }
    pair.reopen(4096, "20 more appends");
    assert!(segments(dir.path()).len() > count);
}

#[test]
fn recover_gives_the_state_persisted_so_far_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut pair = Pair::new(dir.path(), 1 << 20);
    let ops = [Op::vote(2, Some(1)), Op::append(0, entries(2, 1, 4, 16))];
    for op in &ops {
        pair.persist(op);
    }
    pair.reopen(1 << 20, "reopened");
    let expected = pair.model.recover().unwrap();
    assert_eq!(pair.file().recover().unwrap(), expected, "second call");
    pair.persist(&Op::append(4, entries(2, 5, 1, 16)));
    let expected = pair.model.recover().unwrap();
    assert_eq!(pair.file().recover().unwrap(), expected, "after a persist");

    // A persist before the first recover: recover still gives the state persisted so far.
    drop(pair);
    let mut file = open(dir.path(), 1 << 20).unwrap();
    let op = Op::append(5, entries(3, 6, 2, 16));
    file.persist(&op.update()).unwrap();
    assert_eq!(file.recover().unwrap().entries.len(), 7);
}

#[test]
fn a_gap_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut pair = Pair::new(dir.path(), 1 << 20);
    pair.persist(&Op::append(0, entries(1, 1, 3, 16)));
    let segment = crate::common::last_segment(dir.path());
    let before = len(&segment);
    let cases = [
        // Entries at 5 after index 3.
        Op::append(4, entries(1, 5, 1, 16)),
        // Entries at 3 after a truncation from 2.
        Op {
            truncate_from: Some(2),
            first_index: 3,
            entries: entries(1, 3, 1, 16),
            ..Op::default()
        },
        // Entries at index 0.
        Op {
            first_index: 0,
            entries: entries(1, 0, 1, 16),
            ..Op::default()
        },
    ];
    for (case, op) in cases.iter().enumerate() {
        let copy = crate::common::copy_dir(dir.path());
        let mut file = open(copy.path(), 1 << 20).unwrap();
        let err = file.persist(&op.update()).unwrap_err();
        assert!(err.to_string().contains("gap"), "case {case}: {err}");
        // Refused, and the storage stops like after any failure.
        let again = file.persist(&Op::vote(5, None).update()).unwrap_err();
        assert!(
            matches!(again, zeroraft_storage::StorageError::Poisoned { .. }),
            "case {case}: {again}"
        );
        assert_eq!(
            len(&crate::common::last_segment(file.dir())),
            before,
            "case {case}"
        );
    }
    pair.reopen(1 << 20, "the original is untouched");
}

#[test]
fn round_trip_with_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let segment_size = 1024;
    let mut pair = Pair::new(dir.path(), segment_size);
    pair.persist(&Op::vote(1, Some(0)));
    pair.persist(&Op::append(0, entries(1, 1, 40, 60)));
    let steps = [
        // Within the log: the entries after it stay.
        Op::snapshot(10, 1, 500),
        // Empty data, at the last entry.
        Op::snapshot(40, 1, 0),
        // Entries right after a snapshot.
        Op::append(40, entries(2, 41, 5, 60)),
        // A snapshot with a truncation after it and entries replacing the rest, and a new term.
        Op {
            hard_state: Some(HardState {
                term: 3,
                voted_for: None,
            }),
            truncate_from: Some(44),
            first_index: 44,
            entries: entries(3, 44, 3, 60),
            ..Op::snapshot(42, 2, 3000)
        },
        // A truncation at or below the snapshot drops every entry after it.
        Op {
            truncate_from: Some(30),
            ..Op::default()
        },
        Op::append(42, entries(3, 43, 30, 60)),
        // Installed beyond the end of the log, which is discarded.
        Op {
            truncate_from: Some(101),
            ..Op::snapshot(100, 4, 70_000)
        },
        // Beyond the end without a truncation: there is nothing after it anyway.
        Op::snapshot(105, 4, 10),
        Op::append(105, entries(4, 106, 20, 60)),
    ];
    for (i, step) in steps.iter().enumerate() {
        pair.persist(step);
        // Read again from the directory while open, then opened again.
        let expected = pair.model.recover().unwrap();
        assert_eq!(pair.file().recover().unwrap(), expected, "step {i}");
        pair.reopen(segment_size, &format!("after step {i}"));
    }
    assert_eq!(pair.model.last_index(), 125);
    // Only the segments holding entries after the snapshot are left (the last can be empty).
    let files = segments(dir.path());
    assert!(files.len() <= 3, "{files:?}");
}

/// One step of a random history, interpreted against the model's state when it runs.
#[derive(Clone, Debug)]
enum Step {
    /// A new hard state.
    Vote { bump: u64, vote: Option<usize> },
    /// Entries from `back` before the end (0: append), with an explicit truncation or not,
    /// maybe with a new term.
    Write {
        back: u64,
        explicit: bool,
        bump: bool,
        sizes: Vec<usize>,
    },
    /// A truncation alone, from `back` before the end (possibly past it).
    Truncate { back: i64 },
    /// A snapshot at an index chosen by `at` among those after the stored snapshot, up to
    /// `beyond` past the end of the log; with a truncation from `truncate` after it (or before
    /// it, if negative) or none; entries `back` before the end once both apply; `data` bytes.
    Snapshot {
        at: u64,
        beyond: u64,
        truncate: Option<i64>,
        back: u64,
        sizes: Vec<usize>,
        data: usize,
        bump: bool,
    },
    /// Close and open the storage again.
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => (0..3u64, proptest::option::of(0..5usize))
            .prop_map(|(bump, vote)| Step::Vote { bump, vote }),
        6 => (
            prop_oneof![3 => Just(0u64), 1 => 1..20u64],
            any::<bool>(),
            any::<bool>(),
            proptest::collection::vec(0..400usize, 0..12),
        )
            .prop_map(|(back, explicit, bump, sizes)| Step::Write { back, explicit, bump, sizes }),
        1 => (-3..15i64).prop_map(|back| Step::Truncate { back }),
        2 => (
            any::<u64>(),
            prop_oneof![2 => Just(0u64), 1 => 1..30u64],
            proptest::option::of(-3..6i64),
            prop_oneof![2 => Just(0u64), 1 => 1..4u64],
            proptest::collection::vec(0..200usize, 0..6),
            prop_oneof![Just(0usize), 1..300usize, 4000..70_000usize],
            any::<bool>(),
        )
            .prop_map(|(at, beyond, truncate, back, sizes, data, bump)| Step::Snapshot {
                at,
                beyond,
                truncate,
                back,
                sizes,
                data,
                bump,
            }),
        1 => Just(Step::Reopen),
    ]
}

impl Step {
    fn op(&self, model: &MemStorage) -> Option<Op> {
        let last = model.last_index();
        let hard_state = model.hard_state();
        Some(match *self {
            Step::Vote { bump, vote } => Op::vote(hard_state.term + bump, vote),
            Step::Write {
                back,
                explicit,
                bump,
                ref sizes,
            } => {
                // Above the snapshot: entries at or below it are refused.
                let stored = model.snapshot().map_or(0, |s| s.index);
                let first = (last + 1).saturating_sub(back).max(stored + 1);
                let term = hard_state.term + u64::from(bump);
                Op {
                    hard_state: bump.then_some(HardState {
                        term,
                        voted_for: None,
                    }),
                    truncate_from: explicit.then_some(first),
                    first_index: first,
                    entries: sizes
                        .iter()
                        .enumerate()
                        .map(|(i, &size)| entry(term, &vec![(first as usize + i) as u8; size]))
                        .collect(),
                    ..Op::default()
                }
            }
            Step::Truncate { back } => Op {
                truncate_from: Some((last as i64 + 1 - back).max(0) as u64),
                ..Op::default()
            },
            Step::Snapshot {
                at,
                beyond,
                truncate,
                back,
                ref sizes,
                data,
                bump,
            } => {
                let stored = model.snapshot().map_or(0, |s| s.index);
                let span = (last + beyond - stored).max(1);
                let index = stored + 1 + at % span;
                let truncate_from = truncate.map(|t| (index as i64 + 1 + t).max(0) as u64);
                // The last index once the snapshot and the truncation apply.
                let mut after = last.max(index);
                if let Some(from) = truncate_from {
                    after = after.min(from.saturating_sub(1)).max(index);
                }
                let first = (after + 1).saturating_sub(back).max(index + 1);
                let term = hard_state.term + u64::from(bump);
                Op {
                    hard_state: bump.then_some(HardState {
                        term,
                        voted_for: None,
                    }),
                    snapshot: Some(snapshot(index, hard_state.term, data)),
                    truncate_from,
                    first_index: first,
                    entries: sizes
                        .iter()
                        .enumerate()
                        .map(|(i, &size)| entry(term, &vec![(first as usize + i) as u8; size]))
                        .collect(),
                }
            }
            Step::Reopen => return None,
        })
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn random_histories_recover_as_the_model(
        segment_size in prop_oneof![Just(0u64), 16..512u64, 512..8192u64],
        steps in proptest::collection::vec(step(), 1..24),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut pair = Pair::new(dir.path(), segment_size);
        for (i, step) in steps.iter().enumerate() {
            match step.op(&pair.model) {
                Some(op) if op.update().is_empty() => {}
                Some(op) => pair.persist(&op),
                None => pair.reopen(segment_size, &format!("reopen at step {i}")),
            }
        }
        pair.reopen(segment_size, "at the end");
        let recovered: Recovered = pair.file().recover().unwrap();
        prop_assert_eq!(
            recovered.first_index() - 1 + recovered.entries.len() as u64,
            pair.model.last_index()
        );
    }
}

/// An update of any shape, valid or not, relative to the model's state when it runs.
#[derive(Clone, Debug)]
struct AnyUpdate {
    /// A snapshot this far from the stored one (0 or less: not newer).
    snapshot: Option<i64>,
    /// A truncation this far from the end.
    truncate: Option<i64>,
    /// Entries from this far from the end.
    first: i64,
    count: usize,
}

fn any_update() -> impl Strategy<Value = AnyUpdate> {
    (
        proptest::option::of(-2..12i64),
        proptest::option::of(-12..4i64),
        -12..4i64,
        prop_oneof![Just(0usize), 1..4usize],
    )
        .prop_map(|(snapshot, truncate, first, count)| AnyUpdate {
            snapshot,
            truncate,
            first,
            count,
        })
}

impl AnyUpdate {
    fn op(&self, model: &MemStorage) -> Op {
        let last = model.last_index() as i64;
        let stored = model.snapshot().map_or(0, |s| s.index) as i64;
        let first = (last + 1 + self.first).max(0) as u64;
        Op {
            hard_state: None,
            snapshot: self
                .snapshot
                .map(|d| snapshot((stored + d).max(0) as u64, 1, 8)),
            truncate_from: self.truncate.map(|t| (last + 1 + t).max(0) as u64),
            first_index: first,
            entries: entries(1, first, self.count, 8),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever the model refuses, the log refuses (and stops, until it is opened again);
    /// whatever the model takes, the log takes.
    #[test]
    fn the_log_refuses_what_the_model_refuses(
        updates in proptest::collection::vec(any_update(), 1..16),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut pair = Pair::new(dir.path(), 256);
        pair.persist(&Op::append(0, entries(1, 1, 10, 8)));
        let mut refused = 0;
        for (i, update) in updates.iter().enumerate() {
            let op = update.op(&pair.model);
            let case = format!("update {i}: {op:?}");
            let model = pair.model.persist(&op.update());
            let file = pair.file().persist(&op.update());
            match (&model, &file) {
                (Ok(()), Ok(())) => {}
                (Err(_), Err(StorageError::Poisoned { reason })) => {
                    prop_assert!(reason.contains("refused"), "{}: {}", case, reason);
                    refused += 1;
                    let again = pair.file().persist(&Op::vote(9, None).update());
                    prop_assert!(
                        matches!(again, Err(StorageError::Poisoned { .. })),
                        "{}: {:?}", case, again
                    );
                    pair.reopen(256, &case);
                }
                _ => prop_assert!(false, "{}: the model says {:?}, the log {:?}", case, model, file),
            }
        }
        pair.reopen(256, &format!("{refused} refused"));
    }
}
