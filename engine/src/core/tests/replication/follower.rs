//! The AppendEntries receiver (Figure 2, receiver rules 1 to 5): the consistency check, the
//! conflict hint, truncation only at a conflict, and the follower's commit index.

use super::*;

#[test]
fn append_entries_consistency_check() {
    // The follower holds [1 1 2 2] from node 1, leader of term 2; node 1 now leads term 3.
    // (prev index, prev term, want success, want reply index, want conflict term and index)
    let cases = [
        (4, 2, true, 4, 0, 0),
        (2, 1, true, 2, 0, 0),
        (0, 0, true, 0, 0, 0),
        (5, 2, false, 5, 0, 5), // log too short: continue from our end
        (9, 3, false, 9, 0, 5),
        (3, 3, false, 3, 2, 3), // term 2 at 3, which starts at 3
        (4, 3, false, 4, 2, 3),
        (1, 2, false, 1, 1, 1),
    ];
    for (case, (prev, prev_term, success, index, c_term, c_index)) in cases.into_iter().enumerate()
    {
        let mut follower = new_core(0, 3);
        give_log(&mut follower, 1, &[1, 1, 2, 2]);
        follower.step(0, 1, append(3, (prev, prev_term), &[], 0));
        let reply = the_append_reply(&drain(&mut follower), 1);
        let want = AppendEntriesReply {
            term: 3,
            success,
            index,
            conflict_term: c_term,
            conflict_index: c_index,
            round: 0,
        };
        assert_eq!(
            reply, want,
            "case {case}: reply to prev ({prev}, {prev_term})"
        );
        assert_eq!(
            log_terms(&follower),
            vec![1, 1, 2, 2],
            "case {case}: log kept"
        );
        assert_eq!(
            follower.leader(),
            Some(1),
            "case {case}: leader known either way"
        );
    }
}

#[test]
fn append_entries_truncates_only_at_a_conflict() {
    // The follower holds [1 1 2 2 2] (from leader 1 of term 2); node 1 leads term 3.
    // (prev index, prev term, entries, want log, want reply index)
    type Case = (u64, u64, &'static [u64], &'static [u64], u64);
    let cases: [Case; 8] = [
        // Conflict at 3: everything from 3 goes.
        (2, 1, &[3], &[1, 1, 3], 3),
        // Entry 4 matches, entry 5 conflicts.
        (3, 2, &[2, 3], &[1, 1, 2, 2, 3], 5),
        (4, 2, &[3, 3, 3], &[1, 1, 2, 2, 3, 3, 3], 7),
        // Everything matches: nothing is truncated, whatever follows is kept.
        (1, 1, &[1, 2], &[1, 1, 2, 2, 2], 3),
        (0, 0, &[], &[1, 1, 2, 2, 2], 0),
        (0, 0, &[1, 1, 2, 2, 2], &[1, 1, 2, 2, 2], 5),
        // Matching prefix, then new entries.
        (0, 0, &[1, 1, 2, 2, 2, 3], &[1, 1, 2, 2, 2, 3], 6),
        (5, 2, &[3, 3], &[1, 1, 2, 2, 2, 3, 3], 7),
    ];
    for (case, (prev, prev_term, entries, want_log, want_index)) in cases.into_iter().enumerate() {
        let mut follower = new_core(0, 3);
        give_log(&mut follower, 1, &[1, 1, 2, 2, 2]);
        follower.step(0, 1, append(3, (prev, prev_term), entries, 0));
        let reply = the_append_reply(&drain(&mut follower), 1);
        assert!(reply.success, "case {case}: success");
        assert_eq!(reply.index, want_index, "case {case}: reply index");
        assert_eq!(log_terms(&follower), want_log, "case {case}: log");
        // Every entry now holds what the leader of its term wrote there.
        for (index, command) in (1..).zip(log_commands(&follower)) {
            let term = want_log[index as usize - 1];
            assert_eq!(command, cmd(term, index), "case {case}: command at {index}");
        }
    }
}

#[test]
fn stale_shorter_append_after_a_longer_one_truncates_nothing() {
    let mut follower = new_core(0, 3);
    let long = append(1, (0, 0), &[1, 1, 1, 1], 0);
    let short = append(1, (0, 0), &[1, 1], 0);
    follower.step(0, 1, long);
    assert_eq!(the_append_reply(&drain(&mut follower), 1).index, 4);
    // The network delivers the older, shorter message late.
    follower.step(0, 1, short);
    let reply = the_append_reply(&drain(&mut follower), 1);
    assert!(reply.success);
    assert_eq!(reply.index, 2, "it vouches only for what it carried");
    assert_eq!(log_terms(&follower), vec![1, 1, 1, 1], "nothing lost");
}

#[test]
fn follower_commit_is_min_of_leader_commit_and_last_new_entry() {
    // The follower starts with [1 1 1] from leader 1 of term 1, commit 0. Steps are cumulative.
    // (prev index, entries, leader commit, want commit)
    let script: [(u64, &[u64], u64, u64); 7] = [
        (3, &[], 2, 2),
        (1, &[], 3, 2),     // vouches only up to 1: min(3, 1), and never backwards
        (2, &[1], 10, 3),   // last new entry is 3 (entry 3 matched, nothing appended)
        (3, &[1, 1], 4, 4), // leader commit below the last new entry
        (5, &[], 10, 5),
        (5, &[1], 5, 5),
        (0, &[], 9, 5), // a heartbeat at the start of the log vouches for nothing
    ];
    let mut follower = new_core(0, 3);
    give_log(&mut follower, 1, &[1, 1, 1]);
    for (step, (prev, entries, leader_commit, want)) in script.into_iter().enumerate() {
        follower.step(0, 1, append(1, (prev, 1.min(prev)), entries, leader_commit));
        assert!(
            the_append_reply(&drain(&mut follower), 1).success,
            "step {step}"
        );
        assert_eq!(follower.commit_index(), want, "step {step}: commit index");
    }
    assert_eq!(follower.apply_range(), Some((1, 5)));
    follower.advance_applied(3);
    assert_eq!(follower.apply_range(), Some((4, 5)));
    follower.advance_applied(5);
    assert_eq!(follower.apply_range(), None);
    assert_eq!(follower.last_applied(), 5);

    // A rejected AppendEntries moves nothing.
    follower.step(0, 1, append(1, (9, 1), &[], 9));
    assert!(!the_append_reply(&drain(&mut follower), 1).success);
    assert_eq!(follower.commit_index(), 5);
}

#[test]
fn follower_never_commits_an_entry_the_leader_has_not_vouched_for() {
    // The follower holds [1 1 2], where entry 3 is from a deposed leader of term 2. The leader
    // of term 3 has committed its own entry 3, but its heartbeat only checks up to index 2: the
    // follower's entry 3 is not the committed one and must not be committed.
    let mut follower = new_core(0, 3);
    give_log(&mut follower, 2, &[1, 1, 2]);
    follower.step(0, 1, append(3, (2, 1), &[], 3));
    let reply = the_append_reply(&drain(&mut follower), 1);
    assert!(reply.success);
    assert_eq!(
        follower.commit_index(),
        2,
        "commit = min(leader commit 3, last new entry 2)"
    );
    assert_eq!(
        log_terms(&follower),
        vec![1, 1, 2],
        "no conflict seen, nothing truncated"
    );

    // The entry that replaces it is the one committed.
    follower.step(0, 1, append(3, (2, 1), &[3], 3));
    assert!(the_append_reply(&drain(&mut follower), 1).success);
    assert_eq!(log_terms(&follower), vec![1, 1, 3]);
    assert_eq!(follower.commit_index(), 3);
}

#[test]
fn candidate_steps_down_on_append_entries_of_its_term() {
    let mut core = new_core(0, 3);
    campaign_to(&mut core, 2);
    let deadline = core.next_deadline();
    let now = deadline - MS;
    core.step(now, 1, append(2, (0, 0), &[2], 0));
    assert_eq!(core.role(), Role::Follower);
    assert_eq!(core.term(), 2, "same term");
    assert_eq!(core.leader(), Some(1));
    assert_eq!(core.voted_for(), Some(0), "its vote in term 2 stands");
    assert!(core.next_deadline() >= now + 300 * MS, "timer restarted");
    let reply = the_append_reply(&drain(&mut core), 1);
    assert!(reply.success);
    assert_eq!(log_terms(&core), vec![2]);
}

#[test]
fn append_entries_from_the_leader_resets_the_election_timer() {
    let mut core = new_core(0, 3);
    let mut now = 0;
    for round in 0..10 {
        now = core.next_deadline() - MS;
        core.step(now, 1, append(1, (0, 0), &[], 0));
        drain(&mut core);
        assert!(core.next_deadline() > now + MS, "round {round}");
    }
    core.tick(now + 299 * MS);
    assert_eq!(
        core.role(),
        Role::Follower,
        "no election while the leader is heard"
    );
    assert!(quiet(&mut core));
}
