//! Fast backtracking (§5.3): one round trip per conflicting term; and stale or duplicated
//! replies, which never move a follower's progress backwards.

use super::*;

#[test]
fn backtracking_skips_a_term_per_round_trip() {
    // The leader (node 0 of 3) holds the log below and leads term 8; node 1 holds each case's
    // log. Each case lists the prev_log_index of every AppendEntries until one succeeds, first
    // with `Backtrack::LeaderTerm`, then with `Backtrack::FollowerTerm`.
    const LEADER: &[u64] = &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    type Indices = &'static [u64];
    // (name, follower's log, probes with LeaderTerm, probes with FollowerTerm)
    let cases: [(&str, Indices, Indices, Indices); 9] = [
        ("empty", &[], &[10, 0], &[10, 0]),
        (
            "shorter by one",
            &[1, 1, 1, 4, 4, 5, 5, 6, 6],
            &[10, 9],
            &[10, 9],
        ),
        ("much shorter", &[1, 1, 1, 4], &[10, 4], &[10, 4]),
        (
            "longer, same last term",
            &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
            &[10],
            &[10],
        ),
        (
            "longer, later term",
            &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
            &[10],
            &[10],
        ),
        // Too short, then its term 4 runs past the leader's: skip to the leader's last 4, or
        // to the follower's first 4 (re-sending the two 4s they share).
        (
            "shorter, conflicting",
            &[1, 1, 1, 4, 4, 4, 4],
            &[10, 7, 5],
            &[10, 7, 3],
        ),
        // Terms 3 and 2 the leader never had: one round trip each.
        (
            "conflicting by two terms",
            &[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
            &[10, 6, 3],
            &[10, 6, 3],
        ),
        (
            "longer, conflicting",
            &[1, 1, 1, 4, 4, 4, 4, 4, 4, 4, 4, 4],
            &[10, 5],
            &[10, 3],
        ),
        (
            "no common entry",
            &[2, 2, 2, 3, 3],
            &[10, 5, 3, 0],
            &[10, 5, 3, 0],
        ),
    ];
    let cases = cases
        .into_iter()
        .flat_map(|(name, log, leader_term, follower_term)| {
            [
                (name, log, Backtrack::LeaderTerm, leader_term),
                (name, log, Backtrack::FollowerTerm, follower_term),
            ]
        });
    for (case, (name, follower_log, backtrack, want_probes)) in cases.enumerate() {
        let name = format!("{name}, {backtrack:?}");
        let config = CoreConfig {
            backtrack,
            ..CoreConfig::default()
        };
        let mut leader = Core::new(0, 3, config, 100, 0);
        give_log(&mut leader, 2, LEADER);
        let mut follower = new_core(1, 3);
        give_log(&mut follower, 2, follower_log);
        let mut sent = elect(&mut leader, 8);

        let mut probes = Vec::new();
        loop {
            let appends = appends_to(&sent, 1);
            assert_eq!(
                appends.len(),
                1,
                "case {case} ({name}): one probe per round trip"
            );
            let probe = appends[0].clone();
            probes.push(probe.prev_log_index);
            assert!(
                probes.len() <= 10,
                "case {case} ({name}): no progress: {probes:?}"
            );
            follower.step(0, 0, Message::AppendEntries(probe));
            let reply = the_append_reply(&drain(&mut follower), 0);
            leader.step(0, 1, Message::AppendEntriesReply(reply.clone()));
            sent = drain(&mut leader);
            if reply.success {
                break;
            }
        }
        assert_eq!(probes, want_probes, "case {case} ({name}): probes");
        let pr = leader.progress(1).expect("follower");
        assert_eq!(pr.match_index, 10, "case {case} ({name}): match");
        assert_eq!(pr.state, ProgressState::Replicate, "case {case} ({name})");
        assert_eq!(
            log_terms(&follower)[..10],
            *LEADER,
            "case {case} ({name}): follower holds the leader's log"
        );
        // Entries past the match survive unless they conflicted with what the probe carried.
        let want_last = if follower_log.starts_with(LEADER) {
            follower_log.len()
        } else {
            LEADER.len()
        };
        assert_eq!(
            follower.log().last_index(),
            want_last as u64,
            "case {case} ({name}): nothing truncated without a conflict"
        );

        // The leader's next entry replaces whatever the follower held beyond the match.
        leader.propose(0, commands(1));
        for (_, msg) in drain(&mut leader).into_iter().filter(|(to, _)| *to == 1) {
            follower.step(0, 0, msg);
        }
        assert_eq!(
            log_terms(&follower),
            log_terms(&leader),
            "case {case} ({name})"
        );
        assert_eq!(
            log_commands(&follower),
            log_commands(&leader),
            "case {case} ({name})"
        );
    }
}

#[test]
fn follower_cut_off_for_several_terms_catches_up_in_one_rejection() {
    // Node 2 is cut off while nodes 0 and 1 take turns leading terms 1 to 4, each appending 20
    // entries in the first three.
    let mut sim = Sim::new(3);
    sim.fire(0);
    sim.settle(&[]);
    for round in 0..3 {
        let leader = sim.leaders()[0];
        sim.cores[leader].propose(sim.now, commands(20));
        sim.collect();
        sim.settle(&[2]);
        let next = 1 - leader;
        sim.fire(next);
        sim.settle(&[2]);
        assert_eq!(sim.leaders(), vec![next], "round {round}");
    }
    let leader = sim.leaders()[0];
    assert_eq!(sim.cores[leader].term(), 4);
    assert_eq!(sim.cores[leader].log().last_index(), 60);
    assert_eq!(sim.cores[2].log().last_index(), 0);

    // Back in touch: the probe at 60 is rejected with "my log ends at 0", and the next one
    // carries all 60 entries.
    sim.fire(leader);
    let mut to_node_2 = Vec::new();
    while let Some((from, to, msg)) = sim.queue.pop_front() {
        if let (2, Message::AppendEntries(a)) = (to, &msg) {
            to_node_2.push((a.prev_log_index, a.entries.len()));
        }
        sim.cores[to].step(sim.now, from, msg);
        sim.collect();
    }
    assert_eq!(to_node_2, vec![(60, 0), (0, 60)]);
    assert_eq!(log_terms(&sim.cores[2]), log_terms(&sim.cores[leader]));
    assert_eq!(sim.cores[2].term(), 4);
}

// ---- stale replies -----------------------------------------------------------------------------

#[test]
fn stale_or_duplicated_success_never_moves_progress_backwards() {
    let mut leader = replicating_leader(3, CoreConfig::default());
    for _ in 0..5 {
        leader.propose(0, commands(1));
    }
    drain(&mut leader);
    // (reply index from follower 1, want match, want next, want commit)
    let script = [
        (2, 2, 6, 2),
        (1, 2, 6, 2), // older
        (2, 2, 6, 2), // duplicated
        (5, 5, 6, 5),
        (3, 5, 6, 5),
        (0, 5, 6, 5),
    ];
    for (step, (index, want_match, want_next, want_commit)) in script.into_iter().enumerate() {
        leader.step(0, 1, ack(1, index));
        let pr = leader.progress(1).expect("follower");
        assert_eq!(pr.match_index, want_match, "step {step}: match");
        assert_eq!(pr.next_index, want_next, "step {step}: next");
        assert_eq!(pr.state, ProgressState::Replicate, "step {step}: state");
        assert_eq!(leader.commit_index(), want_commit, "step {step}: commit");
        assert!(quiet(&mut leader), "step {step}: nothing to resend");
    }
}

#[test]
fn rejection_of_an_old_probe_is_ignored() {
    // The leader holds five entries of term 1 and leads term 2; follower 1 holds two.
    let mut leader = new_core(0, 3);
    give_log(&mut leader, 2, &[1, 1, 1, 1, 1]);
    let sent = elect(&mut leader, 2);
    assert_eq!(appends_to(&sent, 1)[0].prev_log_index, 5);
    // A heartbeat re-sends the same probe.
    let deadline = leader.next_deadline();
    leader.tick(deadline);
    assert_eq!(appends_to(&drain(&mut leader), 1)[0].prev_log_index, 5);

    // The first rejection moves the probe to the follower's end.
    leader.step(0, 1, reject(2, 5, 0, 3));
    let sent = drain(&mut leader);
    assert_eq!(appends_to(&sent, 1)[0].prev_log_index, 2);
    assert_eq!(leader.progress(1).map(|p| p.next_index), Some(3));

    // (rejected index, hint) of replies that answer no outstanding probe
    let stale = [(5, 1), (5, 3), (4, 1), (9, 1)];
    for (case, (index, hint)) in stale.into_iter().enumerate() {
        leader.step(0, 1, reject(2, index, 0, hint));
        assert!(quiet(&mut leader), "case {case}: nothing sent");
        let pr = leader.progress(1).expect("follower");
        assert_eq!(pr.next_index, 3, "case {case}: next kept");
        assert_eq!(pr.state, ProgressState::Probe, "case {case}");
    }

    // The answer to the outstanding probe is believed.
    leader.step(0, 1, ack(2, 5));
    let pr = leader.progress(1).expect("follower");
    assert_eq!((pr.match_index, pr.next_index), (5, 6));
    assert_eq!(pr.state, ProgressState::Replicate);

    // In Replicate, a rejection at or below the match index is stale too.
    drain(&mut leader);
    leader.step(0, 1, reject(2, 4, 0, 1));
    let pr = leader.progress(1).expect("follower");
    assert_eq!((pr.match_index, pr.next_index), (5, 6));
    assert_eq!(pr.state, ProgressState::Replicate);
    assert!(quiet(&mut leader));
}

#[test]
fn rejection_of_a_request_from_an_earlier_leadership_is_ignored() {
    // Node 0 led term 2 holding [1 1 1 1 1] and sent node 1 a heartbeat at prev 5. Node 1 gets it
    // only in term 4, and rejects it with term 4: the term in which node 0 leads again.
    let old_heartbeat = append(2, (5, 1), &[], 5);
    let mut follower = new_core(1, 3);
    give_log(&mut follower, 2, &[1, 1, 1, 1, 1]);
    follower.step(0, 2, request_vote(4, 5, 1));
    drain(&mut follower);
    follower.step(0, 0, old_heartbeat);
    let stale = the_append_reply(&drain(&mut follower), 0);
    assert!(!stale.success);
    assert_eq!((stale.term, stale.index, stale.conflict_index), (4, 5, 0));

    // Probe: the stale rejection answers the probe's index but says nothing about the log.
    let mut leader = new_core(0, 3);
    give_log(&mut leader, 2, &[1, 1, 1, 1, 1]);
    elect(&mut leader, 4);
    leader.step(0, 1, Message::AppendEntriesReply(stale.clone()));
    assert!(quiet(&mut leader), "probe: nothing re-sent");
    let pr = leader.progress(1).expect("follower");
    assert_eq!(
        (pr.state, pr.match_index, pr.next_index),
        (ProgressState::Probe, 0, 6)
    );

    // Replicate, with a batch in flight past the match index: the window is kept.
    leader.step(0, 1, ack(4, 5));
    leader.propose(0, commands(3));
    drain(&mut leader);
    let rejected_above_match = AppendEntriesReply { index: 7, ..stale };
    leader.step(0, 1, Message::AppendEntriesReply(rejected_above_match));
    assert!(quiet(&mut leader), "replicate: nothing re-sent");
    let pr = leader.progress(1).expect("follower");
    assert_eq!(
        (pr.state, pr.match_index, pr.next_index),
        (ProgressState::Replicate, 5, 9)
    );
}

#[test]
fn replies_from_an_older_term_are_ignored() {
    // The leader of term 3 holds [1 1 1]; its probes to both followers are outstanding.
    // (reply from an earlier term)
    let cases = [
        ack(2, 3),
        ack(1, 2),
        reject(2, 3, 0, 1),
        reject(2, 3, 1, 1),
        vote(2, true),
        vote(2, false),
    ];
    for (case, reply) in cases.into_iter().enumerate() {
        let mut leader = new_core(0, 3);
        give_log(&mut leader, 2, &[1, 1, 1]);
        elect(&mut leader, 3);
        leader.step(0, 1, reply);
        assert_eq!(leader.role(), Role::Leader, "case {case}");
        assert_eq!(leader.term(), 3, "case {case}");
        assert!(quiet(&mut leader), "case {case}: nothing sent");
        let pr = leader.progress(1).expect("follower");
        assert_eq!(
            (pr.match_index, pr.next_index),
            (0, 4),
            "case {case}: progress"
        );
        assert_eq!(pr.state, ProgressState::Probe, "case {case}: state");
        assert_eq!(leader.commit_index(), 0, "case {case}: commit");
    }
}
