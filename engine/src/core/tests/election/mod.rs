//! Elections (§5.2 of the extended Raft paper): election timeouts, votes, one vote per term,
//! votes only for an up-to-date log (§5.4.1), and terms carried by every message.

use super::*;

mod check_quorum;
mod pre_vote;

#[test]
fn election_timeouts_are_seeded_and_within_range() {
    let config = CoreConfig::default();
    let mut seen = std::collections::HashSet::new();
    for seed in 0..50 {
        let a = Core::new(0, 3, config.clone(), seed, 5 * MS);
        let b = Core::new(0, 3, config.clone(), seed, 5 * MS);
        assert_eq!(a.next_deadline(), b.next_deadline(), "seed {seed}: replay");
        let timeout = a.next_deadline() - 5 * MS;
        assert!(
            (config.election_timeout_min..config.election_timeout_max).contains(&timeout),
            "seed {seed}: timeout {timeout}"
        );
        seen.insert(timeout);
    }
    assert!(
        seen.len() > 40,
        "timeouts are randomized: {} distinct",
        seen.len()
    );
}

#[test]
fn timeout_starts_an_election() {
    // (log held before the timeout, term before, want RequestVote last index, last term)
    let cases: [(&[u64], u64, u64, u64); 3] =
        [(&[], 0, 0, 0), (&[1, 1, 2], 2, 3, 2), (&[4], 4, 1, 4)];
    for (case, (terms, term_before, last_index, last_term)) in cases.into_iter().enumerate() {
        let mut core = new_core(0, 3);
        give_log(&mut core, 2, terms);
        assert_eq!(core.term(), term_before, "case {case}: term before");
        let deadline = core.next_deadline();

        core.tick(deadline - 1);
        assert_eq!(
            core.role(),
            Role::Follower,
            "case {case}: before the timeout"
        );
        assert!(
            quiet(&mut core),
            "case {case}: nothing sent before the timeout"
        );

        core.tick(deadline);
        assert_eq!(core.role(), Role::Candidate, "case {case}: role");
        assert_eq!(core.term(), term_before + 1, "case {case}: term + 1");
        assert_eq!(core.voted_for(), Some(0), "case {case}: votes for itself");
        assert_eq!(core.leader(), None, "case {case}: no leader known");
        assert_eq!(core.stats().elections_started, 1, "case {case}: counted");
        let timeout = core.next_deadline() - deadline;
        assert!(
            (300 * MS..600 * MS).contains(&timeout),
            "case {case}: a new randomized timeout, got {timeout}"
        );
        let want = request_vote(term_before + 1, last_index, last_term);
        assert_eq!(
            drain(&mut core),
            vec![(1, want.clone()), (2, want)],
            "case {case}: RequestVote to every other node"
        );
    }
}

#[test]
fn candidate_times_out_into_the_next_term() {
    let mut core = new_core(1, 3);
    campaign_to(&mut core, 1);
    core.step(0, 0, vote(1, false));
    let deadline = core.next_deadline();
    core.tick(deadline);
    assert_eq!(core.role(), Role::Candidate);
    assert_eq!(core.term(), 2);
    assert_eq!(core.voted_for(), Some(1));
    let sent = drain(&mut core);
    assert_eq!(sent.len(), 2, "a fresh RequestVote to each peer: {sent:?}");
    assert!(sent.iter().all(|(_, m)| *m == request_vote(2, 0, 0)));
}

#[test]
fn majority_of_votes_makes_a_leader() {
    // (peers, replies in order as (from, granted), after how many replies it leads (Leader) or
    // has lost (Follower), or None if it is still a candidate after all of them)
    type Case = (usize, &'static [(usize, bool)], Option<(usize, Role)>);
    let cases: [Case; 6] = [
        (3, &[(1, true)], Some((1, Role::Leader))),
        (3, &[(1, false), (2, true)], Some((2, Role::Leader))),
        // Both refuse: lost, and it knows at once (see also
        // `a_candidate_that_cannot_win_steps_back_to_follower_at_once`).
        (3, &[(1, false), (2, false)], Some((2, Role::Follower))),
        // A duplicated grant counts once.
        (
            5,
            &[(1, true), (1, true), (2, false), (3, true)],
            Some((4, Role::Leader)),
        ),
        (5, &[(1, true), (1, true), (1, true)], None),
        (4, &[(1, true), (2, true)], Some((2, Role::Leader))),
    ];
    for (case, (peers, replies, decided)) in cases.into_iter().enumerate() {
        let mut core = new_core(0, peers);
        campaign_to(&mut core, 1);
        for (n, &(from, granted)) in replies.iter().enumerate() {
            core.step(0, from, vote(1, granted));
            let want = match decided {
                Some((k, role)) if n + 1 >= k => role,
                _ => Role::Candidate,
            };
            assert_eq!(core.role(), want, "case {case}: role after reply {n}");
        }
        assert_eq!(core.term(), 1, "case {case}: term unchanged");
        if decided.is_some_and(|(_, role)| role == Role::Leader) {
            assert_eq!(core.leader(), Some(0), "case {case}: knows it leads");
            assert_eq!(core.stats().elections_won, 1, "case {case}: counted");
            let sent = drain(&mut core);
            for peer in 1..peers {
                let heartbeats = appends_to(&sent, peer);
                assert_eq!(
                    heartbeats.len(),
                    1,
                    "case {case}: announces itself to {peer}"
                );
                assert_eq!(heartbeats[0].term, 1, "case {case}: in its term");
            }
            assert_eq!(sent.len(), peers - 1, "case {case}: nothing else: {sent:?}");
        }
    }
}

#[test]
fn a_candidate_that_cannot_win_steps_back_to_follower_at_once() {
    // Node 0 of `peers` campaigns in term 1 and gets these replies, in order.
    // (peers, replies as (from, granted), want it lost: a follower after the last reply)
    type Case = (usize, &'static [(usize, bool)], bool);
    let cases: [Case; 7] = [
        (5, &[(1, false), (2, false), (3, false)], true), // two left cannot make three
        (5, &[(1, true), (2, false), (3, false)], false), // node 4 can still make it three
        (5, &[(1, false), (2, false)], false),
        (5, &[(1, false), (1, false), (1, false)], false), // one refusal, however often
        (4, &[(1, true), (2, false), (3, false)], true),   // a tie loses
        (3, &[(1, false), (2, false)], true),
        (2, &[(1, false)], true),
    ];
    for (case, (peers, replies, lost)) in cases.into_iter().enumerate() {
        let mut core = new_core(0, peers);
        campaign_to(&mut core, 1);
        let deadline = core.next_deadline();
        let at = core.now + 10 * MS;
        for &(from, granted) in replies {
            core.step(at, from, vote(1, granted));
        }
        assert!(quiet(&mut core), "case {case}: nothing to send");
        assert_eq!(core.term(), 1, "case {case}: term kept");
        assert_eq!(core.voted_for(), Some(0), "case {case}: its vote stands");
        assert_eq!(core.leader(), None, "case {case}: no leader known");
        if !lost {
            assert_eq!(core.role(), Role::Candidate, "case {case}: may still win");
            assert_eq!(core.next_deadline(), deadline, "case {case}: timer kept");
            continue;
        }
        assert_eq!(core.role(), Role::Follower, "case {case}: back to follower");
        let timeout = core.next_deadline() - at;
        assert!(
            (300 * MS..600 * MS).contains(&timeout),
            "case {case}: a new random timeout from now, got {timeout}"
        );
        // A rival of term 1 still gets no vote, up to date or not.
        let rival = peers - 1;
        core.step(at, rival, request_vote(1, 9, 9));
        assert!(
            !the_vote_reply(&drain(&mut core), rival).granted,
            "case {case}: no second vote in term 1"
        );
        // Its next timeout starts the next election.
        core.tick(core.next_deadline());
        assert_eq!(
            (core.role(), core.term()),
            (Role::Candidate, 2),
            "case {case}: campaigns again"
        );
    }
}

#[test]
fn single_node_elects_itself() {
    let mut core = new_core(0, 1);
    let deadline = core.next_deadline();
    core.tick(deadline);
    assert_eq!(core.role(), Role::Leader);
    assert_eq!(core.term(), 1);
    assert!(quiet(&mut core));
    assert_eq!(core.propose(deadline, commands(2)), Some((1, 2)));
    assert_eq!(
        core.commit_index(),
        0,
        "not before its own write is durable"
    );
    persist(&mut core);
    assert_eq!(
        core.commit_index(),
        2,
        "a cluster of one commits once durable"
    );
    assert_eq!(core.apply_range(), Some((1, 2)));
}

#[test]
fn split_vote_elects_nobody_and_retries_in_a_later_term() {
    let mut sim = Sim::new(4);
    // Nodes 0 and 1 time out together; each wins one voter, which is not a majority of four.
    sim.now = sim.cores[0]
        .next_deadline()
        .max(sim.cores[1].next_deadline());
    let now = sim.now;
    sim.cores[0].tick(now);
    sim.cores[1].tick(now);
    sim.collect();
    let order = [(0, 2), (1, 3), (0, 3), (1, 2), (0, 1), (1, 0)];
    let mut requests: Vec<_> = sim.queue.drain(..).collect();
    for (from, to) in order {
        let at = requests
            .iter()
            .position(|(f, t, _)| (*f, *t) == (from, to))
            .expect("a RequestVote for every pair");
        let (from, to, msg) = requests.remove(at);
        sim.cores[to].step(now, from, msg);
    }
    assert_eq!(
        sim.cores[2].voted_for(),
        Some(0),
        "first come, first served"
    );
    assert_eq!(
        sim.cores[3].voted_for(),
        Some(1),
        "first come, first served"
    );
    sim.collect();
    sim.settle(&[]);
    assert!(sim.leaders().is_empty(), "nobody has three votes");
    for id in [0, 1] {
        // Two grants and two refusals of four: neither can win, and each knows it at once.
        assert_eq!(sim.cores[id].role(), Role::Follower, "node {id} lost");
        assert_eq!(sim.cores[id].term(), 1, "node {id}");
        assert_eq!(
            sim.cores[id].voted_for(),
            Some(id),
            "node {id}: its vote stands"
        );
    }

    // The next timeout starts term 2, and with no competitor node 0 now wins.
    sim.fire(0);
    assert_eq!(sim.cores[0].term(), 2);
    sim.settle(&[]);
    assert_eq!(sim.leaders(), vec![0]);
    assert!(sim.cores.iter().all(|c| c.term() == 2));
}

#[test]
fn one_vote_per_term() {
    let mut core = new_core(0, 3);
    // (from, request term, want granted, want term, want voted_for)
    let script = [
        (1, 1, true, 1, Some(1)),
        (2, 1, false, 1, Some(1)), // already voted in term 1
        (1, 1, true, 1, Some(1)),  // the same candidate asking again
        (2, 2, true, 2, Some(2)),  // a new term, a new vote
        (1, 2, false, 2, Some(2)),
    ];
    for (step, (from, term, granted, want_term, want_vote)) in script.into_iter().enumerate() {
        core.step(0, from, request_vote(term, 0, 0));
        let reply = the_vote_reply(&drain(&mut core), from);
        assert_eq!(reply.granted, granted, "step {step}: granted");
        assert_eq!(reply.term, want_term, "step {step}: reply term");
        assert_eq!(core.term(), want_term, "step {step}: term");
        assert_eq!(core.voted_for(), want_vote, "step {step}: voted_for");
    }
}

#[test]
fn candidates_and_leaders_do_not_vote_for_others_in_their_term() {
    let mut candidate = new_core(0, 3);
    campaign_to(&mut candidate, 1);
    candidate.step(0, 1, request_vote(1, 5, 1));
    assert!(!the_vote_reply(&drain(&mut candidate), 1).granted);
    assert_eq!(candidate.voted_for(), Some(0));

    let mut leader = new_core(0, 3);
    elect(&mut leader, 1);
    leader.step(0, 2, request_vote(1, 5, 1));
    assert!(!the_vote_reply(&drain(&mut leader), 2).granted);
    assert_eq!(leader.role(), Role::Leader);
}

#[test]
fn vote_only_for_an_up_to_date_log() {
    // The voter holds [1 1 2]. (candidate's last index, last term, want granted)
    let cases = [
        (3, 2, true),  // same last entry
        (4, 2, true),  // same last term, longer
        (2, 2, false), // same last term, shorter
        (1, 3, true),  // later last term wins even if shorter
        (9, 1, false), // earlier last term loses even if longer
        (0, 0, false), // empty
    ];
    for (case, (last_index, last_term, granted)) in cases.into_iter().enumerate() {
        let mut voter = new_core(0, 3);
        give_log(&mut voter, 2, &[1, 1, 2]);
        voter.step(0, 1, request_vote(3, last_index, last_term));
        let reply = the_vote_reply(&drain(&mut voter), 1);
        assert_eq!(reply.granted, granted, "case {case}: granted");
        assert_eq!(reply.term, 3, "case {case}: reply term");
        assert_eq!(voter.term(), 3, "case {case}: adopts the term either way");
        let want_vote = granted.then_some(1);
        assert_eq!(voter.voted_for(), want_vote, "case {case}: voted_for");
    }
}

#[test]
fn stale_log_cannot_win_against_up_to_date_voters() {
    let mut sim = Sim::new(3);
    sim.fire(0);
    sim.settle(&[]);
    assert_eq!(sim.leaders(), vec![0]);
    // Node 2 misses an entry that nodes 0 and 1 commit.
    sim.cores[0].propose(sim.now, commands(1));
    sim.collect();
    sim.settle(&[2]);
    assert_eq!(sim.cores[0].commit_index(), 1);

    // Node 2 campaigns: both others refuse it (its log is behind), though they adopt its term.
    sim.fire(2);
    sim.settle(&[]);
    assert_eq!(
        sim.cores[2].role(),
        Role::Follower,
        "node 2 lost, and steps back at once"
    );
    assert!(sim.leaders().is_empty(), "node 0 stepped down to term 2");
    assert!(sim.cores.iter().all(|c| c.term() == 2));
    assert_eq!(sim.cores[0].voted_for(), None);
    assert_eq!(sim.cores[1].voted_for(), None);

    // Node 1 holds the entry and wins term 3; node 2 votes for it.
    sim.fire(1);
    sim.settle(&[]);
    assert_eq!(sim.leaders(), vec![1]);
    assert_eq!(sim.cores[2].voted_for(), Some(1));
}

#[test]
fn higher_term_in_any_message_makes_a_follower() {
    // Every node starts holding [1] from node 2 as leader of term 1, then is put in `role`.
    // A message of term 5 from node 1 arrives; a RequestVote from an out-of-date log, so that
    // the vote it clears is not given again.
    let messages = [
        ("RequestVote", request_vote(5, 0, 0), None),
        ("RequestVoteReply", vote(5, false), None),
        ("AppendEntries", append(5, (0, 0), &[], 0), Some(1)),
        ("AppendEntriesReply", reject(5, 0, 0, 1), None),
    ];
    let roles = [Role::Follower, Role::Candidate, Role::Leader];
    let mut case = 0;
    for role in roles {
        for (kind, msg, want_leader) in messages.iter().cloned() {
            let mut core = new_core(0, 3);
            give_log(&mut core, 2, &[1]);
            match role {
                Role::Follower => {
                    core.step(0, 1, request_vote(1, 1, 1));
                    assert_eq!(core.voted_for(), Some(1), "case {case}: set up a vote");
                }
                Role::Candidate => campaign_to(&mut core, 2),
                Role::Leader => {
                    elect(&mut core, 2);
                }
            }
            drain(&mut core);
            let step_downs = core.stats().step_downs;

            core.step(0, 1, msg);
            assert_eq!(
                core.role(),
                Role::Follower,
                "case {case} ({role:?}, {kind}): role"
            );
            assert_eq!(core.term(), 5, "case {case} ({role:?}, {kind}): term");
            assert_eq!(
                core.voted_for(),
                None,
                "case {case} ({role:?}, {kind}): vote cleared"
            );
            assert_eq!(
                core.leader(),
                want_leader,
                "case {case} ({role:?}, {kind}): leader"
            );
            let want_step_downs = step_downs + u64::from(role == Role::Leader);
            assert_eq!(
                core.stats().step_downs,
                want_step_downs,
                "case {case} ({role:?}, {kind}): step-downs counted"
            );
            case += 1;
        }
    }
}

#[test]
fn lower_term_messages_are_rejected_or_ignored() {
    // A follower of term 3 holding [1 2 3], whose leader is node 2.
    let mut follower = new_core(0, 3);
    give_log(&mut follower, 2, &[1, 2, 3]);
    let deadline = follower.next_deadline();

    // A RequestVote of term 2 is refused, with the current term for the candidate to catch up.
    follower.step(0, 1, request_vote(2, 9, 3));
    let reply = the_vote_reply(&drain(&mut follower), 1);
    assert_eq!(
        reply,
        RequestVoteReply {
            term: 3,
            granted: false
        }
    );
    assert_eq!(follower.voted_for(), None);

    // An AppendEntries of term 2 is refused and changes nothing, not even the election timer.
    follower.step(0, 1, append(2, (3, 3), &[2], 3));
    let reply = the_append_reply(&drain(&mut follower), 1);
    assert!(!reply.success, "stale AppendEntries refused");
    assert_eq!(reply.term, 3);
    assert_eq!(log_terms(&follower), vec![1, 2, 3]);
    assert_eq!(follower.commit_index(), 0);
    assert_eq!(follower.leader(), Some(2));
    assert_eq!(follower.next_deadline(), deadline, "timer not reset");
    assert_eq!(follower.term(), 3);

    // A candidate of term 4 ignores a grant from term 3 (which would have made it leader).
    let mut candidate = new_core(0, 3);
    campaign_to(&mut candidate, 4);
    candidate.step(0, 1, vote(3, true));
    assert_eq!(candidate.role(), Role::Candidate, "old grant ignored");
    assert!(quiet(&mut candidate));

    // A leader of term 4 ignores AppendEntriesReply of term 3 (see also
    // `replies_from_an_older_term_are_ignored`).
    let mut leader = new_core(0, 3);
    elect(&mut leader, 4);
    leader.step(0, 1, reject(3, 0, 0, 1));
    assert!(quiet(&mut leader));
    assert_eq!(leader.role(), Role::Leader);
    assert_eq!(leader.term(), 4);
}

#[test]
fn only_a_granted_vote_resets_the_election_timer() {
    // (voter's log, request term, candidate's last index and term, want granted)
    let cases: [(&[u64], u64, u64, u64, bool); 5] = [
        (&[], 1, 0, 0, true),
        (&[1, 1], 1, 2, 1, true),
        // Same term, but the candidate's log is behind: no vote, no reset.
        (&[1, 1], 1, 1, 1, false),
        // A later term, which the voter adopts, but the candidate's log is behind: no vote, no
        // reset either (a candidate that cannot win must not hold every other timer back).
        (&[1, 1], 7, 1, 1, false),
        (&[1, 1], 7, 2, 1, true),
    ];
    for (case, (terms, term, last_index, last_term, granted)) in cases.into_iter().enumerate() {
        let mut voter = new_core(0, 3);
        give_log(&mut voter, 2, terms);
        let deadline = voter.next_deadline();
        let now = deadline - MS;

        voter.step(now, 1, request_vote(term, last_index, last_term));
        let reply = the_vote_reply(&drain(&mut voter), 1);
        assert_eq!(reply.granted, granted, "case {case}: granted");
        if granted {
            assert!(
                voter.next_deadline() >= now + 300 * MS,
                "case {case}: timer restarted at the vote"
            );
        } else {
            assert_eq!(voter.next_deadline(), deadline, "case {case}: timer kept");
        }
        voter.tick(deadline);
        let want = if granted {
            Role::Follower
        } else {
            Role::Candidate
        };
        assert_eq!(voter.role(), want, "case {case}: role at the old deadline");
    }
}

/// A later term adopted from a refused candidate leaves a candidate's timer where its campaign
/// set it; a leader, whose timer did not run while it led, starts one afresh.
#[test]
fn a_later_term_restarts_the_timer_of_a_leader_only() {
    let mut candidate = new_core(0, 3);
    give_log(&mut candidate, 2, &[1, 1]);
    campaign_to(&mut candidate, 2);
    let deadline = candidate.next_deadline();
    let now = deadline - MS;
    candidate.step(now, 1, request_vote(9, 1, 1));
    assert!(!the_vote_reply(&drain(&mut candidate), 1).granted);
    assert_eq!((candidate.term(), candidate.role()), (9, Role::Follower));
    assert_eq!(
        candidate.next_deadline(),
        deadline,
        "candidate's timer kept"
    );
    candidate.tick(deadline);
    assert_eq!((candidate.term(), candidate.role()), (10, Role::Candidate));

    let mut leader = new_core(0, 3);
    give_log(&mut leader, 2, &[1, 1]);
    elect(&mut leader, 2);
    let now = 10_000 * MS;
    leader.step(now, 1, request_vote(9, 1, 1));
    assert!(!the_vote_reply(&drain(&mut leader), 1).granted);
    assert_eq!((leader.term(), leader.role()), (9, Role::Follower));
    assert!(
        leader.next_deadline() >= now + 300 * MS,
        "a former leader's timer starts at the step-down"
    );
}
