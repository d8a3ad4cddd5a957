//! CheckQuorum (Raft thesis §6.2) and leader stickiness (§4.2.3): a leader that hears from no
//! majority steps down, and a node that hears from its leader ignores RequestVote.

use super::*;

#[test]
fn with_check_quorum_a_leader_cut_off_from_the_majority_steps_down_within_two_timeouts() {
    // (peers, nodes cut off, check_quorum, want a step-down)
    let cases = [
        (3, &[0][..], true, true),
        (5, &[0, 1][..], true, true),
        (5, &[0][..], true, true),
        (5, &[0, 1][..], false, false), // the defaults: it leads on
        (3, &[][..], true, false),      // nobody cut off: it leads on
        (5, &[1, 2][..], true, false),  // a majority still hears it
    ];
    for (case, &(peers, cut, check_quorum, steps_down)) in cases.iter().enumerate() {
        let config = config_with(false, check_quorum);
        let min = config.election_timeout_min;
        let mut sim = Sim::with_config(peers, &config);
        let term = sim.elect_first(0);
        // A while with everyone connected, so the cut lands between two checks.
        sim.run_until(sim.now + 7 * min / 3, &[], |_| {});
        assert_eq!(sim.leaders(), vec![0], "case {case}: leads while connected");

        // Every message to or from a node in `cut` is lost from now on.
        let cut_at = sim.now;
        let mut stepped_down_at = None;
        sim.run_until(cut_at + 4 * min, cut, |sim| {
            if stepped_down_at.is_none() && sim.cores[0].role() != Role::Leader {
                stepped_down_at = Some((sim.now, sim.cores[0].term()));
            }
        });
        match stepped_down_at {
            Some((at, term_then)) => {
                assert!(steps_down, "case {case}: stepped down at {at}");
                assert!(
                    at <= cut_at + 2 * min,
                    "case {case}: stepped down {} ms after the cut",
                    (at - cut_at) / MS
                );
                assert_eq!(sim.cores[0].stats().step_downs, 1, "case {case}");
                assert_eq!(term_then, term, "case {case}: in its term");
            }
            None => assert!(!steps_down, "case {case}: still leads"),
        }
    }
}

#[test]
fn with_check_quorum_a_node_that_hears_its_leader_ignores_request_vote() {
    // Node 0 of 3 follows node 2 of term 1 (heard at time 0), or leads term 1.
    // (check_quorum, leads, at, request term, want answered, want term after)
    let cases = [
        (true, false, 299 * MS, 5, false, 1), // the leader is alive: ignored
        (true, false, 299 * MS, 1, false, 1),
        (true, false, 300 * MS, 5, true, 5), // not heard within the minimum: as usual
        (false, false, 0, 5, true, 5),       // the defaults: as usual
        (true, true, 10 * MS, 5, false, 1),  // a leader ignores it too
        (false, true, 10 * MS, 5, true, 5),
    ];
    for (case, (check_quorum, leads, at, term, answered, want_term)) in
        cases.into_iter().enumerate()
    {
        let mut core = Core::new(0, 3, config_with(false, check_quorum), 7, 0);
        if leads {
            elect(&mut core, 1);
        } else {
            give_log(&mut core, 2, &[1]);
        }
        core.step(at, 1, request_vote(term, 5, 1));
        let sent = drain(&mut core);
        assert_eq!(!sent.is_empty(), answered, "case {case}: answered {sent:?}");
        if answered {
            assert!(the_vote_reply(&sent, 1).granted, "case {case}: granted");
        }
        assert_eq!(core.term(), want_term, "case {case}: term");
        assert_eq!(
            core.role() == Role::Leader,
            leads && !answered,
            "case {case}: role"
        );
    }
}

#[test]
fn production_settings_elect_a_leader_and_replicate() {
    let mut sim = Sim::with_config(5, &CoreConfig::production());
    let term = sim.elect_first(3);
    assert_eq!(term, 1, "one pre-vote round, one election");
    // The leader's no-op entry takes index 1.
    let range = sim.cores[3].propose(sim.now, commands(3));
    assert_eq!(range, Some((2, 4)));
    sim.collect();
    sim.settle(&[]);
    let et = CoreConfig::default().election_timeout_max;
    sim.run_until(sim.now + 5 * et, &[], |sim| {
        assert_eq!(sim.leaders(), vec![3], "a connected leader stays");
    });
    assert!(
        sim.cores
            .iter()
            .all(|c| c.commit_index() == 4 && c.term() == 1)
    );
    assert!(sim.cores[0].log().entry(1).unwrap().command.is_empty());
}

#[test]
fn with_check_quorum_a_restarted_node_ignores_request_vote_for_an_election_timeout() {
    // Its last answer before the restart may be what the leader's lease counts on.
    let et = CoreConfig::default().election_timeout_min;
    // (check_quorum, when the RequestVote arrives, want it answered)
    let cases = [(true, et - 1, false), (true, et, true), (false, 0, true)];
    for (case, (check_quorum, at, answered)) in cases.into_iter().enumerate() {
        let mut core = Core::new(0, 3, config_with(false, check_quorum), 7, 0);
        core.step(at, 1, request_vote(1, 0, 0));
        persist(&mut core);
        assert_eq!(
            !drain(&mut core).is_empty(),
            answered,
            "case {case}: check_quorum {check_quorum}, at {at}"
        );
    }
}

#[test]
fn with_check_quorum_a_node_that_heard_from_its_leader_ignores_votes_whatever_its_term() {
    // A stale reply of a higher term makes it a follower with no leader; the leader it answered
    // may still count on it for its lease.
    let mut core = Core::new(1, 3, CoreConfig::production(), 7, 0);
    let et = CoreConfig::production().election_timeout_min;
    core.step(et, 0, append(1, (0, 0), &[], 0));
    persist(&mut core);
    drain(&mut core);
    core.step(et + MS, 2, vote(2, false));
    assert_eq!((core.term(), core.leader()), (2, None));
    core.step(et + 2 * MS, 2, request_vote(3, 5, 1));
    persist(&mut core);
    assert!(drain(&mut core).is_empty(), "no vote");
    assert_eq!(core.term(), 2, "nor its term");
    // An election timeout after it last heard from its leader, it votes again.
    core.step(2 * et, 2, request_vote(3, 5, 1));
    persist(&mut core);
    assert!(the_vote_reply(&drain(&mut core), 2).granted);
}
