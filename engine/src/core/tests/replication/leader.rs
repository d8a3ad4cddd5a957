//! The leader: commitment by a majority of match indices and only for entries of its term
//! (§5.4.2), heartbeats, commit notices, batching and entry buffers.

use super::*;
use crate::core::replication::MAX_SPARE_BUFFERS;

#[test]
fn propose_on_a_follower_or_candidate_appends_nothing() {
    let mut follower = new_core(0, 3);
    assert_eq!(follower.propose(0, commands(3)), None);
    let mut candidate = new_core(0, 3);
    campaign_to(&mut candidate, 1);
    assert_eq!(candidate.propose(0, commands(3)), None);
    for core in [&mut follower, &mut candidate] {
        assert_eq!(core.log().last_index(), 0);
        assert!(quiet(core));
    }
}

#[test]
fn leader_commits_by_majority_of_match_indices() {
    // Leader 0 of 5 appends entries 1..=5 in term 1; replies come from followers as (from,
    // index); the commit index is the highest index held by three nodes.
    let cases: [(&[(usize, u64)], u64); 6] = [
        (&[(1, 5)], 0),
        (&[(1, 5), (2, 5)], 5),
        (&[(1, 5), (2, 3)], 3),
        (&[(1, 1), (2, 2), (3, 3), (4, 4)], 3),
        (&[(4, 4), (4, 4), (4, 4)], 0), // one follower, however often
        (&[(1, 2), (2, 5), (1, 5)], 5),
    ];
    for (case, (acks, want)) in cases.into_iter().enumerate() {
        let mut leader = replicating_leader(5, CoreConfig::default());
        leader.propose(0, commands(5));
        drain(&mut leader);
        for &(from, index) in acks {
            leader.step(0, from, ack(1, index));
        }
        assert_eq!(leader.commit_index(), want, "case {case}: commit index");
        // The followers hear of it with the next AppendEntries.
        let deadline = leader.next_deadline();
        leader.tick(deadline);
        let sent = drain(&mut leader);
        assert!(!sent.is_empty(), "case {case}: the tick sent nothing");
        for (to, msg) in sent {
            let Message::AppendEntries(a) = msg else {
                panic!("case {case}: a leader sends only AppendEntries, got {msg:?}");
            };
            assert_eq!(a.leader_commit, want, "case {case}: leader commit to {to}");
        }
    }
}

#[test]
fn leader_commits_only_entries_of_its_own_term() {
    // Figure 8: leader 0 of 5 holds [1 2], where entry 2 (term 2) did not commit in term 2.
    let mut leader = new_core(0, 5);
    leader.step(0, 1, append(2, (0, 0), &[1, 2], 1));
    drain(&mut leader);
    assert_eq!(leader.commit_index(), 1);
    elect(&mut leader, 4);

    // Entry 2 reaches a majority (0, 1, 2) in term 4, but is not committed by counting: a
    // leader of term 3 that never saw it could still overwrite it.
    leader.step(0, 1, ack(4, 2));
    leader.step(0, 2, ack(4, 2));
    assert_eq!(leader.progress(1).map(|p| p.match_index), Some(2));
    assert_eq!(leader.progress(2).map(|p| p.match_index), Some(2));
    assert_eq!(
        leader.commit_index(),
        1,
        "entry of term 2 not committed in term 4"
    );

    // An entry of term 4 on a majority commits itself and, with it, entry 2. The leader counts
    // itself only once its own write is durable (thesis §10.2.1).
    assert_eq!(leader.propose(0, commands(1)), Some((3, 3)));
    leader.step(0, 1, ack(4, 3));
    leader.step(0, 2, ack(4, 3));
    assert_eq!(
        leader.commit_index(),
        1,
        "two followers hold entry 3, the leader's write is not durable"
    );
    persist(&mut leader);
    assert_eq!(leader.commit_index(), 3);
    assert_eq!(leader.apply_range(), Some((1, 3)));
}

#[test]
fn leader_sends_heartbeats_at_the_interval() {
    let mut leader = replicating_leader(3, CoreConfig::default());
    let interval = CoreConfig::default().heartbeat_interval;
    let mut due = leader.next_deadline();
    for round in 0..5 {
        leader.tick(due - 1);
        assert!(
            quiet(&mut leader),
            "round {round}: nothing before the interval"
        );
        leader.tick(due);
        let sent = drain(&mut leader);
        assert_eq!(sent.len(), 2, "round {round}: one per follower: {sent:?}");
        for peer in [1, 2] {
            let heartbeat = &appends_to(&sent, peer)[0];
            assert!(heartbeat.entries.is_empty(), "round {round}: empty");
            assert_eq!(heartbeat.term, 1, "round {round}: term");
        }
        assert_eq!(
            leader.next_deadline(),
            due + interval,
            "round {round}: next"
        );
        due += interval;
    }
    assert_eq!(leader.role(), Role::Leader, "a leader never times out");
    assert_eq!(leader.term(), 1);
}

#[test]
fn leader_tells_followers_its_new_commit_index_after_the_delay() {
    let config = CoreConfig::default();
    let delay = config.commit_notify_delay;
    let mut leader = replicating_leader(3, config);
    let heartbeat_due = leader.next_deadline();
    let t0 = heartbeat_due - 90 * MS;
    leader.propose(t0, commands(2));
    let sent = drain(&mut leader);
    assert_eq!(
        appends_to(&sent, 1)[0].leader_commit,
        0,
        "the batch goes out before it commits"
    );
    // Node 1 acknowledges: a majority holds the batch, so it commits at once.
    leader.step(t0, 1, ack(1, 2));
    assert_eq!(leader.commit_index(), 2);
    drain(&mut leader);
    assert_eq!(
        leader.next_deadline(),
        t0 + delay,
        "the notification is due after the delay"
    );
    leader.tick(t0 + delay - 1);
    assert!(quiet(&mut leader), "nothing before the delay");
    // Node 2 acknowledges too; both now hold entries they cannot yet know are committed.
    leader.step(t0 + delay - 1, 2, ack(1, 2));
    leader.tick(t0 + delay);
    let sent = drain(&mut leader);
    for peer in [1, 2] {
        let notice = appends_to(&sent, peer);
        assert_eq!(notice.len(), 1, "one notice to node {peer}: {sent:?}");
        assert!(
            notice[0].entries.is_empty(),
            "node {peer}: carries no entries"
        );
        assert_eq!(
            notice[0].leader_commit, 2,
            "node {peer}: carries the commit index"
        );
        assert_eq!(
            notice[0].prev_log_index, 2,
            "node {peer}: vouches for what it acknowledged"
        );
    }
    // Nothing new: no further notice, only the heartbeat at its usual time.
    assert_eq!(
        leader.next_deadline(),
        heartbeat_due,
        "only the heartbeat is due"
    );
    leader.tick(t0 + 2 * delay);
    assert!(quiet(&mut leader), "no notice without news");

    // A follower already sent the commit index with a later batch is not told again.
    leader.propose(t0 + 3 * delay, commands(1));
    drain(&mut leader);
    leader.step(t0 + 3 * delay, 1, ack(1, 3));
    assert_eq!(leader.commit_index(), 3);
    leader.propose(t0 + 3 * delay, commands(1));
    let sent = drain(&mut leader);
    assert_eq!(
        appends_to(&sent, 1)[0].leader_commit,
        3,
        "the next batch carries the commit index"
    );
    leader.tick(t0 + 4 * delay);
    let sent = drain(&mut leader);
    assert!(
        appends_to(&sent, 1).is_empty(),
        "node 1 already has it: {sent:?}"
    );
    assert!(
        appends_to(&sent, 2).is_empty(),
        "node 2 got the same batch: {sent:?}"
    );
}

#[test]
fn propose_ships_one_append_entries_per_follower_per_batch() {
    let small = CoreConfig {
        max_append_entries: 4,
        ..CoreConfig::default()
    };
    let few_bytes = CoreConfig {
        max_append_bytes: 250,
        ..CoreConfig::default()
    };
    // (peers, config, commands, command size, want entries per AppendEntries to each follower)
    let cases: [(usize, CoreConfig, usize, usize, &[usize]); 6] = [
        (3, CoreConfig::default(), 1, 8, &[1]),
        (3, CoreConfig::default(), 10, 8, &[10]),
        (5, CoreConfig::default(), 100, 8, &[100]),
        (5, CoreConfig::default(), 3, 1 << 20, &[1, 1, 1]), // each alone reaches the byte cap
        (3, small, 10, 8, &[4, 4, 2]),
        (3, few_bytes, 5, 100, &[2, 2, 1]),
    ];
    for (case, (peers, config, n, size, want)) in cases.into_iter().enumerate() {
        let mut leader = replicating_leader(peers, config);
        let batch: Vec<Bytes> = (0..n).map(|_| Bytes::from(vec![7u8; size])).collect();
        assert_eq!(
            leader.propose(0, batch),
            Some((1, n as u64)),
            "case {case}: indices"
        );
        let sent = drain(&mut leader);
        for peer in 1..peers {
            let appends = appends_to(&sent, peer);
            let sizes: Vec<usize> = appends.iter().map(|a| a.entries.len()).collect();
            assert_eq!(sizes, want, "case {case}: batches to {peer}");
            let mut prev = 0;
            for a in &appends {
                assert_eq!(a.prev_log_index, prev, "case {case}: contiguous to {peer}");
                assert!(a.entries.iter().all(|e| e.term == 1), "case {case}: term");
                prev += a.entries.len() as u64;
            }
        }
        assert_eq!(
            sent.len(),
            (peers - 1) * want.len(),
            "case {case}: nothing else"
        );
    }
}

#[test]
fn entry_buffers_travel_from_follower_to_leader_and_back() {
    // The leader fills the buffer it was given; the follower keeps the buffer it received, empty;
    // oversized, capacity-less and surplus buffers are not kept.
    let mut leader = replicating_leader(2, CoreConfig::default());
    let mut follower = new_core(1, 2);
    let given: Vec<Entry> = Vec::with_capacity(8);
    let given_at = given.as_ptr();
    leader.give_entry_buffer(given);
    assert_eq!(leader.entry_buffers(), 1);
    leader.propose(0, [cmd(1, 1), cmd(1, 2)]);
    assert_eq!(leader.entry_buffers(), 0, "the leader spent its buffer");
    let mut sent = drain(&mut leader);
    let (to, msg) = sent.pop().expect("one AppendEntries");
    let Message::AppendEntries(a) = &msg else {
        panic!("expected an AppendEntries, got {msg:?}");
    };
    assert_eq!((to, a.entries.len()), (1, 2));
    assert_eq!(a.entries.as_ptr(), given_at, "sent in the given buffer");

    follower.step(0, 0, msg);
    assert!(the_append_reply(&drain(&mut follower), 0).success);
    assert_eq!(log_commands(&follower), [cmd(1, 1), cmd(1, 2)]);
    let kept = follower
        .take_entry_buffer()
        .expect("the follower kept the buffer");
    assert_eq!(
        (kept.as_ptr(), kept.len(), kept.capacity()),
        (given_at, 0, 8)
    );

    // A stale AppendEntries, rejected, leaves its buffer (emptied) behind too.
    let mut newer = new_core(1, 2);
    campaign_to(&mut newer, 5);
    newer.step(0, 0, append(1, (0, 0), &[1, 1], 0));
    let reply = the_append_reply(&drain(&mut newer), 0);
    assert!(!reply.success);
    assert_eq!(newer.take_entry_buffer().map(|b| b.len()), Some(0));

    let mut core = new_core(0, 3);
    core.give_entry_buffer(Vec::new());
    core.give_entry_buffer(Vec::with_capacity(MAX_BUFFER_CAPACITY + 1));
    assert_eq!(core.entry_buffers(), 0, "no capacity or too large: dropped");
    for _ in 0..2 * MAX_SPARE_BUFFERS {
        core.give_entry_buffer(Vec::with_capacity(1));
    }
    assert_eq!(core.entry_buffers(), MAX_SPARE_BUFFERS, "surplus dropped");
}

#[test]
fn empty_proposal_sends_nothing() {
    let mut leader = replicating_leader(3, CoreConfig::default());
    assert_eq!(leader.propose(0, Vec::new()), Some((1, 0)));
    assert!(quiet(&mut leader));
    assert_eq!(leader.log().last_index(), 0);
}
