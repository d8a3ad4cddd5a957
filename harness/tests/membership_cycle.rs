//! Three voters to five and back to three under a closed loop of 4096 proposals in flight:
//! the leader is among the two removed, and every proposal acknowledged is applied, at its
//! index and in the same order, on every voter of the final configuration; commits go on after
//! each change.

use std::time::Duration;

use zeroraft_harness::load::membership::{CycleOptions, membership_cycle};

#[test]
fn three_voters_grow_to_five_and_shrink_to_three_under_load_without_losing_a_write() {
    let options = CycleOptions {
        // Long enough that the load settles between changes, short enough for the suite.
        settle: Duration::from_millis(400),
        ..CycleOptions::default()
    };
    let report = membership_cycle(&options).expect("the cycle runs");
    let whats: Vec<&str> = report.changes.iter().map(|c| c.what).collect();
    assert_eq!(
        whats,
        [
            "add learners 3 and 4",
            "promote 3 and 4",
            "remove the leader and another original voter"
        ]
    );
    assert_eq!(report.changes[0].voters, [0, 1, 2]);
    assert_eq!(report.changes[1].voters, [0, 1, 2, 3, 4]);
    let removal = &report.changes[2];
    assert_eq!(report.final_voters.len(), 3, "{report:?}");
    assert_eq!(report.final_voters, removal.voters);
    assert!(report.final_voters.contains(&3) && report.final_voters.contains(&4));
    if removal.leader < 3 {
        assert!(
            !report.final_voters.contains(&removal.leader),
            "the leader that made the last change removed itself"
        );
    }

    assert!(
        report.acknowledged > 10_000,
        "{} acknowledged",
        report.acknowledged
    );
    assert_eq!(
        report.lost, 0,
        "acknowledged writes missing on a final voter"
    );
    assert!(
        report.diverged.is_empty(),
        "journals differ: {:?}",
        report.diverged
    );
    assert!(report.journal_entries >= report.acknowledged);

    // Commits went on after each change: in the settling time after it, some were acknowledged.
    for change in &report.changes {
        let from = (change.done.as_nanos() / report.slice.as_nanos()) as usize + 1;
        let after: u64 = report.slices.iter().skip(from).sum();
        assert!(after > 0, "no commit after {}: {report:?}", change.what);
    }
}
