//! Pipelining: the Replicate state's window of batches in flight, heartbeats that overtake
//! batches, and batches lost on the way.

use super::*;

#[test]
fn a_heartbeat_that_overtakes_a_batch_keeps_the_follower_replicating() {
    let mut leader = replicating_leader(3, CoreConfig::default());
    let mut follower = new_core(1, 3);
    follower.step(0, 0, append(1, (0, 0), &[], 0));
    drain(&mut follower);
    let due = leader.next_deadline();

    // A batch goes out; the heartbeat after it reaches the follower first.
    leader.propose(due - MS, commands(2));
    let batch = appends_to(&drain(&mut leader), 1).remove(0);
    leader.tick(due);
    let heartbeat = appends_to(&drain(&mut leader), 1).remove(0);
    assert!(heartbeat.entries.is_empty());
    assert_eq!(
        (heartbeat.prev_log_index, heartbeat.prev_log_term),
        (0, 0),
        "the heartbeat names the follower's match index, not the end of the batch"
    );
    follower.step(due, 0, Message::AppendEntries(heartbeat));
    let reply = the_append_reply(&drain(&mut follower), 0);
    assert!(reply.success, "the follower holds what it names: {reply:?}");
    leader.step(due, 1, Message::AppendEntriesReply(reply));
    let sent = drain(&mut leader);
    assert!(
        appends_to(&sent, 1).is_empty(),
        "nothing sent again: {sent:?}"
    );
    let pr = leader.progress(1).expect("follower");
    assert_eq!(
        (pr.state, pr.next_index, pr.inflights.len()),
        (ProgressState::Replicate, 3, 1),
        "still streaming, the batch still in flight"
    );

    // The batch arrives after all and is acknowledged as usual.
    follower.step(due, 0, Message::AppendEntries(batch));
    let reply = the_append_reply(&drain(&mut follower), 0);
    leader.step(due, 1, Message::AppendEntriesReply(reply));
    assert_eq!(leader.progress(1).map(|p| p.match_index), Some(2));
}

#[test]
fn heartbeats_let_a_follower_commit_no_further_than_its_match() {
    let mut leader = replicating_leader(3, CoreConfig::default());
    let due = leader.next_deadline();
    leader.propose(0, commands(3));
    drain(&mut leader);
    // Node 2 holds all three, node 1 (as far as the leader knows) only the first.
    leader.step(0, 2, ack(1, 3));
    leader.step(0, 1, ack(1, 1));
    assert_eq!(leader.commit_index(), 3);
    leader.tick(due);
    let sent = drain(&mut leader);
    // (follower, want previous index, which bounds what it commits)
    for (peer, want_prev) in [(1, 1), (2, 3)] {
        let heartbeat = &appends_to(&sent, peer)[0];
        assert!(heartbeat.entries.is_empty(), "node {peer}");
        assert_eq!(heartbeat.prev_log_index, want_prev, "node {peer}");
        assert_eq!(heartbeat.leader_commit, 3, "node {peer}");
        assert_eq!(
            leader.progress(peer).map(|p| p.commit_sent),
            Some(want_prev),
            "node {peer}: what it was told it may commit"
        );
    }
    // A follower holding more than the leader knows still commits only up to the heartbeat's
    // previous index (Figure 2: the index of the last new entry).
    let mut follower = new_core(1, 3);
    follower.step(0, 0, append(1, (0, 0), &[1, 1, 1], 0));
    follower.step(
        0,
        0,
        Message::AppendEntries(appends_to(&sent, 1)[0].clone()),
    );
    assert_eq!(follower.commit_index(), 1);
}

#[test]
fn a_batch_unacknowledged_for_a_heartbeat_interval_is_probed_again() {
    let mut leader = replicating_leader(3, CoreConfig::default());
    let interval = CoreConfig::default().heartbeat_interval;
    let first = leader.next_deadline();
    // Index 1 goes out before the first heartbeat: node 2 acknowledges it, node 1's copy is
    // lost.
    leader.propose(first - 10 * MS, commands(1));
    drain(&mut leader);
    leader.step(first - 9 * MS, 2, ack(1, 1));
    leader.tick(first);
    let sent = drain(&mut leader);
    for peer in [1, 2] {
        let heartbeat = &appends_to(&sent, peer)[0];
        assert!(
            heartbeat.entries.is_empty(),
            "node {peer}: just a heartbeat"
        );
        assert_eq!(
            leader.progress(peer).map(|p| p.state),
            Some(ProgressState::Replicate),
            "node {peer}: index 1 was sent less than an interval ago"
        );
    }
    // Index 2 goes out just before the second heartbeat and is not acknowledged by then.
    leader.propose(first + interval - MS, commands(1));
    drain(&mut leader);
    leader.tick(first + interval);
    let sent = drain(&mut leader);

    // Node 1 acknowledged nothing sent before the first heartbeat: it is probed from index 1.
    let probe = appends_to(&sent, 1);
    assert_eq!(probe.len(), 1, "{sent:?}");
    assert_eq!(probe[0].prev_log_index, 0);
    assert_eq!(entry_terms(&probe[0].entries), vec![1, 1]);
    let pr = leader.progress(1).expect("follower");
    assert_eq!(pr.state, ProgressState::Probe);
    assert!(
        pr.probe_sent,
        "one probe until its answer or the next heartbeat"
    );
    // Node 2 acknowledged what it had by then; index 2 is younger than an interval.
    let heartbeat = &appends_to(&sent, 2)[0];
    assert!(heartbeat.entries.is_empty());
    assert_eq!(heartbeat.prev_log_index, 1);
    assert_eq!(
        leader.progress(2).map(|p| p.state),
        Some(ProgressState::Replicate)
    );

    // The probe's answer puts node 1 back to streaming.
    leader.step(first + interval, 1, ack(1, 2));
    let pr = leader.progress(1).expect("follower");
    assert_eq!(
        (pr.state, pr.match_index, pr.next_index),
        (ProgressState::Replicate, 2, 3)
    );
}

#[test]
fn a_follower_acknowledging_after_the_commit_notice_gets_its_own() {
    let config = CoreConfig::default();
    let delay = config.commit_notify_delay;
    let mut leader = replicating_leader(3, config);
    let heartbeat_due = leader.next_deadline();
    let t0 = heartbeat_due - 90 * MS;
    leader.propose(t0, commands(1));
    drain(&mut leader);
    // Node 1's acknowledgement commits index 1, and node 1 is told after the delay.
    leader.step(t0, 1, ack(1, 1));
    leader.tick(t0 + delay);
    let sent = drain(&mut leader);
    assert_eq!(appends_to(&sent, 1)[0].leader_commit, 1);
    assert!(appends_to(&sent, 2).is_empty(), "node 2 holds nothing yet");

    // Node 2's acknowledgement comes later: it gets a notice after the delay, not at the
    // heartbeat 80 ms on.
    let t1 = t0 + 10 * MS;
    leader.step(t1, 2, ack(1, 1));
    assert!(quiet(&mut leader), "nothing at once");
    assert_eq!(leader.next_deadline(), t1 + delay);
    leader.tick(t1 + delay);
    let sent = drain(&mut leader);
    let notice = appends_to(&sent, 2);
    assert_eq!(notice.len(), 1, "{sent:?}");
    assert_eq!((notice[0].prev_log_index, notice[0].leader_commit), (1, 1));
    assert!(appends_to(&sent, 1).is_empty(), "node 1 was told already");
    assert_eq!(leader.next_deadline(), heartbeat_due);
}

#[test]
fn replicate_state_pipelines_up_to_the_window() {
    let config = CoreConfig {
        max_inflight: 3,
        ..CoreConfig::default()
    };
    let mut leader = replicating_leader(3, config);

    // Five proposals, one command each, with no acks: three AppendEntries go out to each
    // follower, then the window is full.
    // (proposal, want AppendEntries per follower, want next_index, want in flight)
    let script = [
        (1, 1, 2, 1),
        (2, 1, 3, 2),
        (3, 1, 4, 3),
        (4, 0, 4, 3),
        (5, 0, 4, 3),
    ];
    for (index, sends, next, inflight) in script {
        assert_eq!(leader.propose(0, commands(1)), Some((index, index)));
        let sent = drain(&mut leader);
        for peer in [1, 2] {
            let appends = appends_to(&sent, peer);
            assert_eq!(appends.len(), sends, "proposal {index}: sends to {peer}");
            if let Some(a) = appends.first() {
                assert_eq!(a.prev_log_index, index - 1, "proposal {index}: prev");
                assert_eq!(a.entries.len(), 1, "proposal {index}: entries");
            }
            let pr = leader.progress(peer).expect("follower");
            assert_eq!(pr.state, ProgressState::Replicate, "proposal {index}");
            assert_eq!(pr.next_index, next, "proposal {index}: next to {peer}");
            assert_eq!(pr.inflights.len(), inflight, "proposal {index}: in flight");
            assert_eq!(pr.is_paused(), inflight == 3, "proposal {index}: paused");
        }
    }

    // A heartbeat still goes out while paused, and does not take a slot.
    let deadline = leader.next_deadline();
    leader.tick(deadline);
    let sent = drain(&mut leader);
    assert_eq!(sent.len(), 2);
    for peer in [1, 2] {
        let hb = &appends_to(&sent, peer)[0];
        assert!(hb.entries.is_empty());
        assert_eq!(
            (hb.prev_log_index, hb.prev_log_term),
            (0, 0),
            "at the match index, which the follower holds"
        );
        assert_eq!(leader.progress(peer).map(|p| p.inflights.len()), Some(3));
    }

    // The first ack frees one slot: everything pending goes in one AppendEntries.
    leader.step(0, 1, ack(1, 1));
    let sent = drain(&mut leader);
    let appends = appends_to(&sent, 1);
    assert_eq!(appends.len(), 1, "resumed: {sent:?}");
    assert_eq!(appends[0].prev_log_index, 3);
    assert_eq!(entry_terms(&appends[0].entries), vec![1, 1]);
    assert!(
        appends_to(&sent, 2).is_empty(),
        "follower 2 is still paused"
    );
    let pr = leader.progress(1).expect("follower");
    assert_eq!((pr.match_index, pr.next_index), (1, 6));
    assert!(pr.is_paused(), "window full again: 2, 3 and 5 in flight");
    assert_eq!(leader.commit_index(), 1);

    // Acks for the rest empty the window; nothing is left to send.
    leader.step(0, 1, ack(1, 5));
    assert!(quiet(&mut leader));
    let pr = leader.progress(1).expect("follower");
    assert_eq!((pr.match_index, pr.next_index), (5, 6));
    assert!(pr.inflights.is_empty());
    assert_eq!(leader.commit_index(), 5);
}

#[test]
fn new_leader_probes_before_streaming() {
    let mut leader = new_core(0, 3);
    elect(&mut leader, 1);
    // The probe from the election is outstanding: a proposal does not stream past it.
    assert_eq!(leader.propose(0, commands(2)), Some((1, 2)));
    assert!(quiet(&mut leader), "paused while probing");
    assert_eq!(
        leader.progress(1).map(|p| p.state),
        Some(ProgressState::Probe)
    );
    // The probe's answer switches to Replicate and sends what waited.
    leader.step(0, 1, ack(1, 0));
    let sent = drain(&mut leader);
    let appends = appends_to(&sent, 1);
    assert_eq!(appends.len(), 1);
    assert_eq!(appends[0].prev_log_index, 0);
    assert_eq!(appends[0].entries.len(), 2);
    assert_eq!(
        leader.progress(1).map(|p| p.state),
        Some(ProgressState::Replicate)
    );
}

#[test]
fn rejection_in_replicate_falls_back_to_probing() {
    let mut leader = replicating_leader(3, CoreConfig::default());
    for _ in 0..3 {
        leader.propose(0, commands(2));
    }
    drain(&mut leader);
    leader.step(0, 1, ack(1, 2));
    drain(&mut leader);
    // The batch after index 2 was lost: the follower rejects the next one (prev 4), holding 2.
    leader.step(0, 1, reject(1, 4, 0, 3));
    let pr = leader.progress(1).expect("follower");
    assert_eq!(pr.state, ProgressState::Probe);
    assert_eq!((pr.match_index, pr.next_index), (2, 3));
    let sent = drain(&mut leader);
    let appends = appends_to(&sent, 1);
    assert_eq!(appends.len(), 1, "one probe");
    assert_eq!(appends[0].prev_log_index, 2);
    assert_eq!(entry_terms(&appends[0].entries), vec![1, 1, 1, 1]);
    // The rejection of the batch after it (prev 6) is stale: the probe is outstanding.
    leader.step(0, 1, reject(1, 6, 0, 3));
    assert!(quiet(&mut leader));
}
