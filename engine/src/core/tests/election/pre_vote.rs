//! PreVote (Raft thesis §9.6): a node asks whether it could win before it raises its term.

use super::*;

fn pre_vote(term: u64, last_log_index: u64, last_log_term: u64) -> Message {
    Message::PreVote(RequestVote {
        term,
        last_log_index,
        last_log_term,
        transfer: false,
    })
}

fn pre_vote_reply(term: u64, granted: bool) -> Message {
    Message::PreVoteReply(RequestVoteReply { term, granted })
}

/// The one reply in `msgs`, which must be a single PreVoteReply to `to`.
fn the_pre_vote_reply(msgs: &[(usize, Message)], to: usize) -> RequestVoteReply {
    match msgs {
        [(t, Message::PreVoteReply(r))] if *t == to => r.clone(),
        other => panic!("expected one PreVoteReply to {to}, got {other:?}"),
    }
}

#[test]
fn the_defaults_have_pre_vote_and_check_quorum_off() {
    let config = CoreConfig::default();
    assert!(!config.pre_vote && !config.check_quorum && !config.leader_no_op);
    let production = CoreConfig {
        leader_no_op: true,
        ..config_with(true, true)
    };
    assert_eq!(CoreConfig::production(), production);
}

#[test]
fn with_pre_vote_a_timeout_asks_for_pre_votes_and_changes_no_term() {
    // (log held before the timeout, term before, want PreVote last index, last term)
    let cases: [(&[u64], u64, u64, u64); 3] =
        [(&[], 0, 0, 0), (&[1, 1, 2], 2, 3, 2), (&[4], 4, 1, 4)];
    for (case, (terms, term_before, last_index, last_term)) in cases.into_iter().enumerate() {
        let mut core = Core::new(0, 3, config_with(true, false), 7, 0);
        give_log(&mut core, 2, terms);
        let vote_before = core.voted_for();
        let deadline = core.next_deadline();
        core.tick(deadline);
        assert_eq!(core.role(), Role::Follower, "case {case}: role");
        assert!(core.is_pre_candidate(), "case {case}: pre-candidate");
        assert_eq!(core.term(), term_before, "case {case}: term kept");
        assert_eq!(core.voted_for(), vote_before, "case {case}: vote kept");
        assert_eq!(core.leader(), None, "case {case}: no leader known");
        assert_eq!(
            core.stats().elections_started,
            0,
            "case {case}: no election"
        );
        assert!(
            core.take_persist().is_none(),
            "case {case}: nothing to write"
        );
        let want = pre_vote(term_before + 1, last_index, last_term);
        assert_eq!(
            core.take_messages().collect::<Vec<_>>(),
            vec![(1, want.clone()), (2, want)],
            "case {case}: PreVote to every other node, at once"
        );
        assert!(
            core.next_deadline() > deadline,
            "case {case}: a new timeout for the next round"
        );
    }
}

#[test]
fn a_majority_of_pre_votes_starts_the_real_election() {
    // (peers, replies in order as (from, reply), how many replies until a candidate or None)
    type Case = (usize, &'static [(usize, (u64, bool))], Option<usize>);
    let cases: [Case; 5] = [
        (3, &[(1, (1, true))], Some(1)),
        (3, &[(1, (0, false)), (2, (1, true))], Some(2)),
        (
            5,
            &[(1, (1, true)), (1, (1, true)), (2, (1, true))],
            Some(3),
        ),
        // A grant for another term than the one asked about counts for nothing.
        (3, &[(1, (2, true)), (2, (0, true))], None),
        (5, &[(1, (1, true)), (2, (0, false)), (3, (0, false))], None),
    ];
    for (case, (peers, replies, want)) in cases.into_iter().enumerate() {
        let mut core = Core::new(0, peers, config_with(true, false), 7, 0);
        let deadline = core.next_deadline();
        core.tick(deadline);
        drain(&mut core);
        let mut became = None;
        for (k, &(from, (term, granted))) in replies.iter().enumerate() {
            core.step(deadline, from, pre_vote_reply(term, granted));
            if became.is_none() && core.role() == Role::Candidate {
                became = Some(k + 1);
            }
        }
        assert_eq!(became, want, "case {case}: replies until candidate");
        if want.is_some() {
            assert_eq!(core.term(), 1, "case {case}: term + 1");
            assert_eq!(core.voted_for(), Some(0), "case {case}: votes for itself");
            assert!(!core.is_pre_candidate(), "case {case}");
            let sent = drain(&mut core);
            assert_eq!(sent.len(), peers - 1, "case {case}: {sent:?}");
            assert!(
                sent.iter().all(|(_, m)| *m == request_vote(1, 0, 0)),
                "case {case}: RequestVote to every other node: {sent:?}"
            );
        } else {
            assert_eq!(core.term(), 0, "case {case}: term kept");
            assert!(core.is_pre_candidate(), "case {case}: still asking");
        }
    }
}

#[test]
fn a_pre_candidate_that_cannot_win_steps_back_at_once() {
    // Node 0 of 5, holding `log` (which sets its term), asks for pre-votes for the next term
    // and gets these replies, in order.
    // (log, replies as (from, (term, granted)), want it still a pre-candidate after the last)
    type Case = (&'static [u64], &'static [(usize, (u64, bool))], bool);
    let cases: [Case; 5] = [
        (
            &[],
            &[(1, (0, false)), (2, (0, false)), (3, (0, false))],
            false,
        ),
        (
            &[],
            &[(1, (1, true)), (2, (0, false)), (3, (0, false))],
            true,
        ), // node 4 may grant
        (&[], &[(1, (0, false)), (2, (0, false))], true),
        (
            &[2],
            &[(1, (2, false)), (2, (2, false)), (3, (2, false))],
            false,
        ),
        // Refusals from voters behind its term may answer a round of an earlier term: not
        // counted.
        (
            &[2],
            &[(1, (1, false)), (2, (1, false)), (3, (1, false))],
            true,
        ),
    ];
    for (case, (log, replies, still_asking)) in cases.into_iter().enumerate() {
        let mut core = Core::new(0, 5, config_with(true, false), 7, 0);
        give_log(&mut core, 4, log);
        let term = core.term();
        let deadline = core.next_deadline();
        core.tick(deadline);
        drain(&mut core);
        assert!(core.is_pre_candidate(), "case {case}: set up");
        let next_round = core.next_deadline();
        let at = deadline + 10 * MS;
        for &(from, (reply_term, granted)) in replies {
            core.step(at, from, pre_vote_reply(reply_term, granted));
        }
        assert!(quiet(&mut core), "case {case}: nothing to send");
        assert_eq!(core.role(), Role::Follower, "case {case}: role");
        assert_eq!(core.term(), term, "case {case}: term kept");
        assert_eq!(
            core.is_pre_candidate(),
            still_asking,
            "case {case}: pre-candidate"
        );
        if still_asking {
            assert_eq!(core.next_deadline(), next_round, "case {case}: timer kept");
            continue;
        }
        let timeout = core.next_deadline() - at;
        assert!(
            (300 * MS..600 * MS).contains(&timeout),
            "case {case}: a new random timeout from now, got {timeout}"
        );
        core.tick(core.next_deadline());
        assert!(core.is_pre_candidate(), "case {case}: asks again");
        assert_eq!(
            core.term(),
            term,
            "case {case}: still without raising its term"
        );
    }
}

#[test]
fn a_single_node_with_pre_vote_elects_itself() {
    let mut core = Core::new(0, 1, config_with(true, true), 7, 0);
    let deadline = core.next_deadline();
    core.tick(deadline);
    assert_eq!((core.role(), core.term()), (Role::Leader, 1));
}

#[test]
fn pre_votes_are_granted_as_votes_would_be_unless_the_leader_is_alive() {
    // The receiver, node 0 of 3, holds [1 1 2]; it is set up as `setup` says, at time 0.
    // Node 1 then asks at time `at` for a pre-vote for `term` with its last entry `last`.
    #[derive(Clone, Copy, Debug)]
    enum Setup {
        /// A follower of term 2 whose leader, node 2, it last heard at time 0.
        Follower,
        /// The same, having voted for node 2 in term 2 before hearing from it.
        VotedFor2,
        /// A follower of term 2 that never knew a leader of term 2.
        Leaderless,
        /// Leader of term 3.
        Leader,
    }
    // (setup, at, term, last (index, term), want granted, want reply term)
    let cases = [
        (Setup::Leaderless, 0, 3, (3, 2), true, 3),
        (Setup::Leaderless, 0, 3, (9, 2), true, 3),
        (Setup::Leaderless, 0, 3, (1, 3), true, 3),
        (Setup::Leaderless, 0, 3, (2, 2), false, 2), // log behind
        (Setup::Leaderless, 0, 3, (9, 1), false, 2), // log behind
        (Setup::Leaderless, 0, 2, (3, 2), true, 2),  // this term, no vote yet
        (Setup::Leaderless, 0, 1, (3, 2), false, 2), // an earlier term
        (Setup::Follower, 299 * MS, 3, (3, 2), false, 2), // the leader is alive
        (Setup::Follower, 300 * MS, 3, (3, 2), true, 3), // not heard within the minimum
        (Setup::VotedFor2, 300 * MS, 2, (3, 2), false, 2), // voted for another in term 2
        (Setup::VotedFor2, 300 * MS, 3, (3, 2), true, 3),
        (Setup::Leader, 10 * MS, 4, (3, 2), false, 3), // a leader never grants
        (Setup::Leader, 900 * MS, 9, (9, 3), false, 3),
    ];
    for (case, (setup, at, term, last, granted, reply_term)) in cases.into_iter().enumerate() {
        let mut core = Core::new(0, 3, config_with(true, false), 7, 0);
        give_log(&mut core, 2, &[1, 1, 2]);
        let restored = |voted_for| {
            let recovered = Recovered {
                hard_state: HardState { term: 2, voted_for },
                snapshot: None,
                entries: [1, 1, 2]
                    .iter()
                    .zip(1..)
                    .map(|(&term, index)| Entry::new(term, cmd(term, index)))
                    .collect(),
            };
            Core::restore(0, 3, config_with(true, false), 7, 0, recovered)
        };
        match setup {
            Setup::Follower => {}
            Setup::VotedFor2 => {
                core = restored(Some(2));
                core.step(0, 2, append(2, (3, 2), &[], 0));
                drain(&mut core);
            }
            Setup::Leaderless => core = restored(None),
            Setup::Leader => {
                let deadline = core.next_deadline();
                core.tick(deadline);
                core.step(0, 1, pre_vote_reply(3, true));
                core.step(0, 1, vote(3, true));
                assert_eq!(core.role(), Role::Leader, "case {case}: set up a leader");
                drain(&mut core);
            }
        }
        let before = (core.term(), core.voted_for(), core.role());
        let deadline = core.next_deadline();
        core.step(at, 1, pre_vote(term, last.0, last.1));
        assert!(
            core.take_persist().is_none(),
            "case {case} ({setup:?}): nothing to write"
        );
        let reply = the_pre_vote_reply(&core.take_messages().collect::<Vec<_>>(), 1);
        assert_eq!(reply.granted, granted, "case {case} ({setup:?}): granted");
        assert_eq!(
            reply.term, reply_term,
            "case {case} ({setup:?}): reply term"
        );
        assert_eq!(
            (core.term(), core.voted_for(), core.role()),
            before,
            "case {case} ({setup:?}): term, vote and role unchanged"
        );
        assert_eq!(
            core.next_deadline(),
            deadline,
            "case {case} ({setup:?}): timer unchanged"
        );
    }
}

#[test]
fn pre_vote_replies_move_a_pre_candidate_only_to_a_real_term() {
    // A pre-candidate of term 2 (asking about term 3) gets one reply from node 1.
    // (reply, want term, want still pre-candidate)
    let cases = [
        (pre_vote_reply(3, true), 2, true), // a grant echoes the term asked about
        (pre_vote_reply(9, true), 2, true), // a grant of a term never asked about: ignored
        (pre_vote_reply(2, false), 2, true),
        (pre_vote_reply(5, false), 5, false), // a refusal of term 5: that term exists
    ];
    for (case, (reply, want_term, want_pre)) in cases.into_iter().enumerate() {
        let mut core = Core::new(0, 5, config_with(true, false), 7, 0);
        give_log(&mut core, 2, &[2]);
        let deadline = core.next_deadline();
        core.tick(deadline);
        drain(&mut core);
        assert!(core.is_pre_candidate(), "case {case}: set up");
        core.step(deadline, 1, reply);
        assert_eq!(core.term(), want_term, "case {case}: term");
        assert_eq!(core.role(), Role::Follower, "case {case}: role");
        assert_eq!(
            core.is_pre_candidate(),
            want_pre,
            "case {case}: pre-candidate"
        );
    }
}

#[test]
fn pre_votes_of_any_term_never_make_a_node_step_down() {
    for role in [Role::Follower, Role::Candidate, Role::Leader] {
        let mut core = Core::new(0, 3, config_with(true, false), 7, 0);
        match role {
            Role::Follower => give_log(&mut core, 2, &[1]),
            Role::Candidate => {
                // With PreVote a candidate comes from winning pre-votes.
                let deadline = core.next_deadline();
                core.tick(deadline);
                core.step(deadline, 1, pre_vote_reply(1, true));
            }
            Role::Leader => {
                let deadline = core.next_deadline();
                core.tick(deadline);
                core.step(deadline, 1, pre_vote_reply(1, true));
                core.step(deadline, 1, vote(1, true));
            }
        }
        assert_eq!(core.role(), role, "{role:?}: set up");
        drain(&mut core);
        let term = core.term();
        for (from, msg) in [
            (1, pre_vote(term + 5, 100, term + 4)),
            (2, pre_vote_reply(term + 5, true)),
        ] {
            core.step(core.now, from, msg);
            drain(&mut core);
            assert_eq!(core.role(), role, "{role:?}: role kept");
            assert_eq!(core.term(), term, "{role:?}: term kept");
        }
    }
}

#[test]
fn an_isolated_node_with_pre_vote_keeps_its_term_and_rejoins_without_deposing_the_leader() {
    // (pre_vote, want the isolated node's term to stay put)
    for (case, (pre_vote, stays)) in [(true, true), (false, false)].into_iter().enumerate() {
        let mut sim = Sim::with_config(3, &config_with(pre_vote, false));
        let term = sim.elect_first(0);
        let et = CoreConfig::default().election_timeout_max;

        // Node 2 is cut off for ten election timeouts; the others go on without it.
        sim.run_until(sim.now + 10 * et, &[2], |sim| {
            assert_eq!(sim.leaders(), vec![0], "case {case}: the leader stays");
        });
        let isolated_term = sim.cores[2].term();
        assert_eq!(
            isolated_term == term,
            stays,
            "case {case}: term {isolated_term} while isolated (leader's {term})"
        );
        if !stays {
            continue; // plain Raft: on rejoin the higher term deposes the leader
        }

        // It comes back: the leader keeps its term, and node 2 follows it.
        sim.run_until(sim.now + 10 * et, &[], |sim| {
            assert_eq!(sim.leaders(), vec![0], "case {case}: the leader stays");
            assert!(
                sim.cores.iter().all(|c| c.term() == term),
                "case {case}: no node raises the term"
            );
        });
        assert_eq!(sim.cores[2].leader(), Some(0), "case {case}: follows again");
        assert_eq!(sim.cores[0].stats().step_downs, 0, "case {case}");
    }
}

#[test]
fn without_pre_vote_an_isolated_node_deposes_the_leader_when_it_rejoins() {
    // The counterpart of the test above, so that it shows what PreVote prevents.
    let mut sim = Sim::with_config(3, &CoreConfig::default());
    let term = sim.elect_first(0);
    let et = CoreConfig::default().election_timeout_max;
    sim.run_until(sim.now + 10 * et, &[2], |_| {});
    assert!(sim.cores[2].term() > term);
    sim.run_until(sim.now + 10 * et, &[], |_| {});
    assert_eq!(sim.cores[0].stats().step_downs, 1, "deposed");
    assert!(sim.cores.iter().all(|c| c.term() > term));
}
