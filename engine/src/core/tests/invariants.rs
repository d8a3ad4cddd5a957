//! The invariant checks catch what they claim to: each case breaks one invariant of an
//! otherwise sound core and expects [`Core::check_invariants`] (or, for the log,
//! [`Core::check_log_invariants`]) to name it.

use super::*;

/// A leader of 3 in term 1 holding entries 1 to 4, of which follower 1 acknowledged all and
/// follower 2 none; everything durable and applied up to the commit index 4.
fn sound_leader() -> Core {
    let mut leader = replicating_leader(3, CoreConfig::default());
    leader.propose(0, commands(4));
    persist(&mut leader);
    leader.step(0, 1, ack(1, 4));
    drain(&mut leader);
    leader.advance_applied(4);
    leader
}

#[test]
fn a_sound_core_passes_every_check() {
    let leader = sound_leader();
    assert_eq!(leader.check_invariants(), Ok(()));
    assert_eq!(leader.check_log_invariants(), Ok(()));
    let follower = new_core(1, 3);
    assert_eq!(follower.check_invariants(), Ok(()));
}

#[test]
fn broken_invariants_are_named_with_node_term_and_values() {
    type Break = fn(&mut Core);
    // (what to break, want the invariant's text in the report, want a follower named)
    let cases: [(Break, &str, Option<usize>); 14] = [
        (|c| c.commit_index = 9, "commit_index <= last index", None),
        (|c| c.last_applied = 5, "last_applied <= commit_index", None),
        (|c| c.durable_index = 7, "durable_index <= last index", None),
        (
            |c| c.durable_gen = c.taken_gen + 1,
            "durable_gen <= taken_gen",
            None,
        ),
        (
            |c| c.role = Role::Candidate,
            "a node names itself leader exactly when it leads",
            None,
        ),
        (
            |c| c.voted_for = Some(2),
            "a candidate or leader voted for itself",
            None,
        ),
        (
            |c| c.pre_voting = true,
            "a pre-candidate is a follower with no known leader",
            None,
        ),
        (
            |c| c.votes = quorum::VoteTally::new(0),
            "a leader won its election",
            None,
        ),
        (
            |c| c.spare_buffers.push(Vec::new()),
            "a spare entry buffer is empty",
            None,
        ),
        (
            |c| c.progress[2].match_index = c.progress[2].next_index,
            "match_index < next_index",
            Some(2),
        ),
        (
            |c| c.progress[1].next_index = 9,
            "next_index <= last index + 1",
            Some(1),
        ),
        (
            |c| c.progress[1].probe_sent = true,
            "no probe outstanding in Replicate",
            Some(1),
        ),
        (
            |c| c.progress[2].match_index = 4,
            "batches in flight end after match_index",
            Some(2),
        ),
        (
            |c| c.held.push_back((c.durable_gen, 1, vote(1, true))),
            "held messages wait for generations above durable_gen",
            None,
        ),
    ];
    for (case, (brk, want, peer)) in cases.into_iter().enumerate() {
        let mut leader = sound_leader();
        brk(&mut leader);
        let broken = leader
            .check_invariants()
            .expect_err(&format!("case {case}: {want} broken"));
        let text = broken.to_string();
        assert!(text.contains(want), "case {case}: {text}");
        assert!(
            text.starts_with("node 0 term 1"),
            "case {case}: names node and term: {text}"
        );
        assert_eq!(broken.peer, peer, "case {case}: follower");
        assert!(!broken.values.is_empty(), "case {case}: values");
    }
}

#[test]
fn the_snapshot_must_end_at_the_log_offset() {
    let mut leader = sound_leader();
    assert!(leader.compact(2, Bytes::from_static(b"s")));
    assert_eq!(leader.check_invariants(), Ok(()));
    leader.snapshot = None;
    let broken = leader.check_invariants().expect_err("no snapshot");
    assert_eq!(broken.invariant, "a snapshot whenever log offset > 0");
    assert_eq!(broken.values, [("offset", 2)]);
}

#[test]
fn the_log_checks_find_queues_out_of_order() {
    let mut follower = new_core(1, 3);
    follower.step(0, 0, append(1, (0, 0), &[1], 0));
    follower.step(0, 0, append(1, (1, 1), &[1], 0));
    assert_eq!(follower.held.len(), 2, "two replies wait for their writes");
    assert_eq!(follower.check_log_invariants(), Ok(()));
    follower.held.swap(0, 1);
    follower.held[0].0 += 1;
    let broken = follower
        .check_log_invariants()
        .expect_err("generations out of order");
    assert_eq!(
        broken.invariant,
        "held messages' generations never decrease"
    );
    assert_eq!((broken.node, broken.term), (1, 1));
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(
    expected = "node 0 term 1: broken invariant `commit_index <= last index` \
                           (commit_index 9, last_index 4)"
)]
fn in_debug_builds_every_input_checks_the_invariants() {
    let mut leader = sound_leader();
    leader.commit_index = 9;
    leader.tick(0);
}
