//! Persist before you speak: messages wait until the state they report is durable; writes are
//! pipelined and become durable in order; a restarted node keeps its vote and log.

use super::*;

#[test]
fn a_vote_goes_out_only_once_it_is_durable() {
    let mut voter = new_core(1, 3);
    voter.step(0, 0, request_vote(3, 0, 0));
    assert_eq!(voter.voted_for(), Some(0));
    assert!(!voter.has_messages(), "the grant waits for the write");
    assert!(voter.has_held_messages());
    let write = voter.take_persist().expect("term and vote to write");
    assert_eq!(
        write.hard_state,
        Some(HardState {
            term: 3,
            voted_for: Some(0)
        })
    );
    assert_eq!(
        (write.truncate_from, write.first_index > write.last_index),
        (None, true)
    );
    assert!(!voter.has_messages(), "taken is not durable");
    voter.persisted(write.generation);
    let reply = the_vote_reply(&voter.take_messages().collect::<Vec<_>>(), 0);
    assert!(reply.granted);
    assert!(voter.take_persist().is_none(), "nothing else changed");
}

#[test]
fn a_candidate_asks_for_votes_only_once_its_term_and_vote_are_durable() {
    let mut core = new_core(0, 3);
    let deadline = core.next_deadline();
    core.tick(deadline);
    assert_eq!(core.role(), Role::Candidate);
    assert!(!core.has_messages());
    let write = core
        .take_persist()
        .expect("a campaign writes term and vote");
    assert_eq!(
        write.hard_state,
        Some(HardState {
            term: 1,
            voted_for: Some(0)
        })
    );
    core.persisted(write.generation);
    let sent: Vec<_> = core.take_messages().collect();
    assert_eq!(sent.len(), 2, "a RequestVote to each peer: {sent:?}");
}

#[test]
fn an_append_is_acknowledged_only_once_its_entries_are_durable() {
    let mut follower = new_core(1, 3);
    give_log(&mut follower, 0, &[1, 1, 2]);
    // A leader of term 3 replaces entry 3 and appends two more: storage must drop 3 first.
    follower.step(0, 0, append(3, (2, 1), &[3, 3], 0));
    assert!(!follower.has_messages());
    let write = follower.take_persist().expect("entries to write");
    assert_eq!(
        (write.truncate_from, write.first_index, write.last_index),
        (Some(3), 3, 4)
    );
    assert_eq!(
        write.hard_state,
        Some(HardState {
            term: 3,
            voted_for: None
        })
    );
    let update = follower.update(&write);
    assert_eq!(entry_terms(update.entries), [3, 3]);
    assert_eq!(follower.durable_index(), 2, "entry 3 was replaced");
    follower.persisted(write.generation);
    assert_eq!(follower.durable_index(), 4);
    let reply = the_append_reply(&follower.take_messages().collect::<Vec<_>>(), 0);
    assert_eq!((reply.success, reply.index), (true, 4));
}

#[test]
fn a_leader_ships_entries_before_its_own_write_and_counts_itself_after() {
    let mut leader = replicating_leader(3, CoreConfig::default());
    leader.propose(0, commands(2));
    let sent: Vec<_> = leader.take_messages().collect();
    assert_eq!(sent.len(), 2, "AppendEntries to both followers at once");
    let write = leader.take_persist().expect("the leader's own write");
    assert_eq!((write.first_index, write.last_index), (1, 2));
    leader.step(0, 1, ack(1, 2));
    assert_eq!(
        leader.commit_index(),
        0,
        "one follower holds them; the leader's own copy is not durable yet"
    );
    leader.persisted(write.generation);
    assert_eq!(
        leader.commit_index(),
        2,
        "follower 1 and the leader: a majority"
    );
}

#[test]
fn pipelined_writes_release_messages_in_order() {
    let mut follower = new_core(1, 2);
    follower.step(0, 0, append(1, (0, 0), &[1, 1], 0));
    let first = follower.take_persist().expect("first write");
    // A second AppendEntries arrives while the first write is under way.
    follower.step(0, 0, append(1, (2, 1), &[1], 0));
    let second = follower.take_persist().expect("second write");
    assert_eq!((second.first_index, second.last_index), (3, 3));
    assert!(!follower.has_messages());
    follower.persisted(first.generation);
    let replies: Vec<_> = follower.take_messages().collect();
    assert_eq!(
        the_append_reply(&replies, 0).index,
        2,
        "only the first answer"
    );
    assert_eq!(follower.durable_index(), 2);
    follower.persisted(second.generation);
    let replies: Vec<_> = follower.take_messages().collect();
    assert_eq!(the_append_reply(&replies, 0).index, 3);
    assert_eq!(follower.durable_index(), 3);
}

#[test]
fn a_truncation_while_a_write_is_under_way_lowers_what_it_makes_durable() {
    let mut follower = new_core(1, 3);
    follower.step(0, 0, append(1, (0, 0), &[1, 1, 1], 0));
    let first = follower.take_persist().expect("first write");
    // Leader 2 of term 2 replaces entries 2 and 3 before the first write is durable.
    follower.step(0, 2, append(2, (1, 1), &[2], 0));
    let second = follower.take_persist().expect("second write");
    assert_eq!(
        (second.truncate_from, second.first_index, second.last_index),
        (Some(2), 2, 2)
    );
    follower.persisted(first.generation);
    assert_eq!(
        follower.durable_index(),
        1,
        "entries 2 and 3 written were replaced"
    );
    follower.persisted(second.generation);
    assert_eq!(follower.durable_index(), 2);
}

#[test]
#[should_panic(expected = "writes must become durable in order")]
fn writes_become_durable_in_order() {
    let mut core = new_core(0, 3);
    core.step(0, 1, request_vote(1, 0, 0));
    let first = core.take_persist().expect("a vote");
    core.step(0, 2, request_vote(2, 0, 0));
    let second = core.take_persist().expect("another vote");
    assert_ne!(first.generation, second.generation);
    core.persisted(second.generation);
}

#[test]
fn a_restored_node_keeps_its_vote_and_log() {
    let hard_state = HardState {
        term: 4,
        voted_for: Some(2),
    };
    let entries: Vec<Entry> = [1, 1, 3]
        .iter()
        .zip(1..)
        .map(|(&term, index)| Entry::new(term, cmd(term, index)))
        .collect();
    let recovered = Recovered {
        hard_state,
        snapshot: None,
        entries,
    };
    let mut core = Core::restore(0, 3, CoreConfig::default(), 9, 0, recovered);
    assert_eq!((core.term(), core.voted_for()), (4, Some(2)));
    assert_eq!(log_terms(&core), [1, 1, 3]);
    assert_eq!((core.durable_index(), core.commit_index()), (3, 0));
    assert!(
        core.take_persist().is_none(),
        "nothing to write: all of it is durable"
    );
    // Another candidate of term 4 with a longer log still gets no vote.
    core.step(0, 1, request_vote(4, 9, 3));
    assert!(!the_vote_reply(&drain(&mut core), 1).granted);
    // The candidate it voted for does.
    core.step(0, 2, request_vote(4, 3, 3));
    assert!(the_vote_reply(&drain(&mut core), 2).granted);
}

#[test]
fn impossible_recovered_states_are_named() {
    use RecoveredStateError::*;
    let entry = |term| Entry::new(term, Bytes::new());
    let hs = |term, voted_for| HardState { term, voted_for };
    let snap = |term| {
        Some(Snapshot {
            index: 4,
            term,
            data: Bytes::new(),
            config: None,
        })
    };
    // (hard state, snapshot, entries, want problem, want its text)
    let cases = [
        (
            hs(2, Some(3)),
            None,
            vec![],
            VoteOutsideCluster {
                voted_for: 3,
                peers: 3,
            },
            "it voted for node 3, which is not in a cluster of 3",
        ),
        (
            hs(5, None),
            None,
            vec![entry(2), entry(1)],
            LogTermGoesDown {
                index: 2,
                term: 1,
                previous_term: 2,
            },
            "the term of its log goes down at index 2 (1 after 2)",
        ),
        (
            hs(5, None),
            snap(1),
            vec![entry(2), entry(2), entry(1)],
            LogTermGoesDown {
                index: 7,
                term: 1,
                previous_term: 2,
            },
            "the term of its log goes down at index 7 (1 after 2)",
        ),
        (
            hs(1, None),
            None,
            vec![entry(2)],
            EntryTermAboveCurrent {
                entry_term: 2,
                current_term: 1,
            },
            "its log holds an entry of term 2 above its current term 1",
        ),
        (
            hs(2, None),
            snap(3),
            vec![],
            SnapshotTermAboveCurrent {
                snapshot_term: 3,
                current_term: 2,
            },
            "its snapshot is of term 3 above its current term 2",
        ),
        (
            hs(3, None),
            snap(3),
            vec![entry(2)],
            LogTermBelowSnapshot {
                first_term: 2,
                snapshot_term: 3,
            },
            "the term of its log goes down after its snapshot (2 after 3)",
        ),
    ];
    for (case, (hard_state, snapshot, entries, want, text)) in cases.into_iter().enumerate() {
        let state = Recovered {
            hard_state,
            snapshot,
            entries,
        };
        let problem = check_recovered_state(3, &state);
        assert_eq!(problem, Err(want), "case {case}");
        assert_eq!(want.to_string(), text, "case {case}: text");
    }
    let fine = Recovered {
        hard_state: hs(2, Some(2)),
        snapshot: snap(1),
        entries: vec![entry(1), entry(2)],
    };
    assert_eq!(check_recovered_state(3, &fine), Ok(()));
}
