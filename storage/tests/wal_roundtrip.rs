//! The write-ahead log gives back what was persisted: hard states, appends and truncations,
//! across segments and reopens, compared with the in-memory model ([`MemStorage`]).

mod common;

use common::{Op, Pair, entries, entry, len, open, segments};
use proptest::prelude::*;
use zeroraft_storage::{HardState, MemStorage, Recovered, Storage, Update};

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
    // Segments end at the first record that reaches the segment size.
    for file in &files[..files.len() - 1] {
        assert!(len(file) >= segment_size, "{}", file.display());
    }
    assert_eq!(pair.model.last_index(), 59 + 180);
}

#[test]
fn an_empty_update_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut pair = Pair::new(dir.path(), 1 << 20);
    pair.persist(&Op::append(0, entries(1, 1, 2, 8)));
    let segment = common::last_segment(dir.path());
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
    let segment = common::last_segment(dir.path());
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
        let copy = common::copy_dir(dir.path());
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
            len(&common::last_segment(file.dir())),
            before,
            "case {case}"
        );
    }
    pair.reopen(1 << 20, "the original is untouched");
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
                let first = (last + 1).saturating_sub(back).max(1);
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
                }
            }
            Step::Truncate { back } => Op {
                truncate_from: Some((last as i64 + 1 - back).max(0) as u64),
                ..Op::default()
            },
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
        prop_assert_eq!(recovered.entries.len() as u64, pair.model.last_index());
    }
}
