//! Linearizable reads (ReadIndex and leases, Raft thesis §6.4) and leadership transfer (§3.10).

use super::*;

/// The outcomes `core` has for the driver.
fn outcomes(core: &mut Core) -> Vec<ReadOutcome> {
    core.take_read_outcomes().collect()
}

/// A 3-node cluster with production settings, node 0 elected and its no-op committed everywhere.
fn production_cluster() -> Sim {
    let mut sim = Sim::with_config(3, &CoreConfig::production());
    sim.elect_first(0);
    sim.settle(&[]);
    assert_eq!(sim.cores[0].commit_index(), 1, "the no-op committed");
    sim
}

#[test]
fn a_read_is_confirmed_only_by_answers_to_a_round_started_after_it() {
    let mut sim = production_cluster();
    let now = sim.now;
    // Messages sent before the read, answered after it: they prove nothing about the read.
    sim.cores[0].propose(now, commands(1));
    sim.collect();
    let before: Vec<_> = sim.queue.drain(..).collect();
    sim.cores[0].read_index(now, [7]);
    assert!(outcomes(&mut sim.cores[0]).is_empty(), "not at once");
    sim.collect();
    let round: Vec<_> = sim.queue.drain(..).collect();
    assert!(
        round
            .iter()
            .filter(|(_, _, m)| matches!(m, Message::AppendEntries(_)))
            .count()
            == 2,
        "the read starts a round to both followers: {round:?}"
    );
    sim.queue.extend(before);
    sim.settle(&[]);
    assert!(
        outcomes(&mut sim.cores[0]).is_empty(),
        "answers to earlier messages do not confirm the read"
    );
    // Only node 1 answers the round: with the leader, a majority of three.
    sim.queue.extend(round);
    sim.settle(&[2]);
    assert_eq!(
        outcomes(&mut sim.cores[0]),
        vec![ReadOutcome {
            id: 7,
            index: Some(1)
        }],
        "confirmed with the commit index when it was asked for"
    );
    assert_eq!(sim.cores[0].stats().reads_confirmed, 1);
}

#[test]
fn reads_wait_for_the_leader_to_commit_an_entry_of_its_term() {
    // Without the no-op, a new leader's commit index may lag what earlier leaders committed.
    let mut sim = Sim::with_config(3, &config_with(false, true));
    sim.elect_first(0);
    sim.settle(&[]);
    assert_eq!(sim.cores[0].commit_index(), 0);
    let now = sim.now;
    sim.cores[0].read_index(now, [1, 2]);
    sim.collect();
    sim.settle(&[]);
    assert!(
        outcomes(&mut sim.cores[0]).is_empty(),
        "the round is answered, but nothing of term 1 is committed"
    );
    sim.cores[0].propose(now, commands(2));
    sim.collect();
    sim.settle(&[]);
    let want = |id| ReadOutcome { id, index: Some(2) };
    assert_eq!(outcomes(&mut sim.cores[0]), vec![want(1), want(2)]);
}

#[test]
fn reads_are_refused_by_followers_and_by_a_leader_that_steps_down() {
    let mut sim = production_cluster();
    let now = sim.now;
    sim.cores[1].read_index(now, [3]);
    sim.cores[1].read_lease(now, [4]);
    assert_eq!(
        outcomes(&mut sim.cores[1]),
        vec![
            ReadOutcome { id: 3, index: None },
            ReadOutcome { id: 4, index: None }
        ]
    );
    // The leader, cut off, cannot confirm; when it steps down (CheckQuorum) it refuses.
    sim.cores[0].read_index(now, [5]);
    sim.collect();
    let et = CoreConfig::default().election_timeout_min;
    sim.run_until(now + 2 * et + 1, &[0], |_| {});
    assert_ne!(sim.cores[0].role(), Role::Leader);
    assert_eq!(
        outcomes(&mut sim.cores[0]),
        vec![ReadOutcome { id: 5, index: None }]
    );
    assert_eq!(sim.cores[0].pending_reads(), 0);
}

#[test]
fn a_cluster_of_one_confirms_reads_at_once() {
    let mut core = Core::new(0, 1, CoreConfig::production(), 1, 0);
    core.tick(core.next_deadline());
    assert_eq!(core.role(), Role::Leader);
    persist(&mut core);
    assert_eq!(core.commit_index(), 1);
    core.read_index(core.next_deadline() - 1, [9]);
    assert_eq!(
        outcomes(&mut core),
        vec![ReadOutcome {
            id: 9,
            index: Some(1)
        }]
    );
}

#[test]
fn a_lease_serves_reads_without_a_round_until_it_expires() {
    let mut sim = production_cluster();
    let config = CoreConfig::production();
    assert!(
        sim.cores[0].has_lease(),
        "a majority answered the first round"
    );
    let start = sim.now;
    sim.cores[0].read_lease(start, [1]);
    assert_eq!(
        outcomes(&mut sim.cores[0]),
        vec![ReadOutcome {
            id: 1,
            index: Some(1)
        }]
    );
    assert!(quiet(&mut sim.cores[0]), "no round for a lease read");
    assert_eq!(sim.cores[0].stats().lease_reads, 1);
    // Cut off: heartbeats go unanswered, and the lease runs out within its duration.
    sim.run_until(start + config.lease_duration(), &[0], |_| {});
    assert_eq!(sim.cores[0].role(), Role::Leader, "not yet stepped down");
    let now = sim.now;
    sim.cores[0].read_lease(now, [2]);
    assert!(!sim.cores[0].has_lease());
    assert!(outcomes(&mut sim.cores[0]).is_empty(), "a ReadIndex now");
    assert_eq!(sim.cores[0].pending_reads(), 1);
    assert!(!quiet(&mut sim.cores[0]), "with a round of its own");
}

#[test]
fn there_is_no_lease_without_check_quorum() {
    let config = CoreConfig {
        leader_no_op: true,
        ..config_with(true, false)
    };
    let mut sim = Sim::with_config(3, &config);
    sim.elect_first(0);
    sim.settle(&[]);
    assert!(!sim.cores[0].has_lease());
    let now = sim.now;
    sim.cores[0].read_lease(now, [1]);
    assert!(outcomes(&mut sim.cores[0]).is_empty());
    sim.collect();
    sim.settle(&[]);
    assert_eq!(
        outcomes(&mut sim.cores[0]),
        vec![ReadOutcome {
            id: 1,
            index: Some(1)
        }]
    );
    assert_eq!(sim.cores[0].stats().lease_reads, 0);
}

#[test]
fn a_transfer_makes_a_caught_up_target_leader_though_the_others_hear_from_the_leader() {
    let mut sim = production_cluster();
    let now = sim.now;
    assert_eq!(
        sim.cores[0].transfer_leadership(now, 0),
        Err(TransferError::BadTarget)
    );
    assert_eq!(
        sim.cores[1].transfer_leadership(now, 2),
        Err(TransferError::NotLeader)
    );
    sim.cores[0].transfer_leadership(now, 1).unwrap();
    assert_eq!(sim.cores[0].transfer_target(), Some(1));
    assert_eq!(
        sim.cores[0].transfer_leadership(now, 2),
        Err(TransferError::InProgress(1))
    );
    assert_eq!(sim.cores[0].propose(now, commands(1)), None, "no proposals");
    assert!(!sim.cores[0].has_lease(), "the lease is given up");
    let sent = drain(&mut sim.cores[0]);
    assert!(
        matches!(
            sent.as_slice(),
            [(1, Message::TimeoutNow(TimeoutNow { term: 1 }))]
        ),
        "the target holds the log: TimeoutNow at once, got {sent:?}"
    );
    sim.queue.extend(sent.into_iter().map(|(to, m)| (0, to, m)));
    sim.settle(&[]);
    assert_eq!(
        sim.leaders(),
        vec![1],
        "node 2 voted though it heard from 0"
    );
    assert_eq!(sim.cores[1].term(), 2);
    assert_eq!(sim.cores[0].transfer_target(), None);
    assert_eq!(sim.cores[0].stats().transfers_abandoned, 0);
}

#[test]
fn a_transfer_waits_for_a_lagging_target_and_is_abandoned_after_an_election_timeout() {
    let mut sim = production_cluster();
    let now = sim.now;
    sim.cores[0].propose(now, commands(3));
    sim.collect();
    sim.settle(&[2]);
    sim.cores[0].transfer_leadership(now, 2).unwrap();
    sim.collect();
    assert!(
        !sim.queue
            .iter()
            .any(|(_, _, m)| matches!(m, Message::TimeoutNow(_))),
        "the target lacks entries: no TimeoutNow yet"
    );
    // The target stays cut off: the leader gives up after an election timeout.
    let et = CoreConfig::default().election_timeout_min;
    sim.run_until(now + et - 1, &[2], |_| {});
    assert_eq!(sim.cores[0].transfer_target(), Some(2));
    sim.run_until(now + et, &[2], |_| {});
    assert_eq!(sim.cores[0].transfer_target(), None);
    assert_eq!(sim.cores[0].role(), Role::Leader);
    assert_eq!(sim.cores[0].stats().transfers_abandoned, 1);
    assert!(
        sim.cores[0].propose(sim.now, commands(1)).is_some(),
        "proposals again"
    );
    assert!(
        !sim.cores[0].has_lease(),
        "no lease for the rest of the term"
    );
    // Once the target answers, a new transfer sends TimeoutNow when it has caught up.
    sim.queue.clear();
    sim.cores[0].transfer_leadership(sim.now, 2).unwrap();
    sim.collect();
    let hb = CoreConfig::default().heartbeat_interval;
    sim.run_until(sim.now + 2 * hb, &[], |_| {});
    assert_eq!(sim.leaders(), vec![2]);
    assert_eq!(sim.cores[2].term(), 2);
}

#[test]
fn timeout_now_is_obeyed_only_from_the_leader_of_the_current_term() {
    let mut sim = production_cluster();
    let now = sim.now;
    let stale = Message::TimeoutNow(TimeoutNow { term: 0 });
    sim.cores[1].step(now, 0, stale);
    let not_leader = Message::TimeoutNow(TimeoutNow { term: 1 });
    sim.cores[1].step(now, 2, not_leader);
    assert_eq!(sim.cores[1].role(), Role::Follower);
    assert_eq!(sim.cores[1].term(), 1);
}

#[test]
fn a_rejection_of_an_earlier_term_carries_no_round() {
    // Its round belongs to another leadership, maybe of the same node before a restart: counted
    // for the current one it would confirm reads and leases nobody vouched for.
    let mut follower = new_core(1, 3);
    follower.step(0, 2, append(2, (0, 0), &[], 0));
    drain(&mut follower);
    let mut old = match append(1, (0, 0), &[], 0) {
        Message::AppendEntries(m) => m,
        _ => unreachable!(),
    };
    old.round = 1000;
    follower.step(0, 0, Message::AppendEntries(old));
    let reply = the_append_reply(&drain(&mut follower), 0);
    assert_eq!((reply.term, reply.success, reply.round), (2, false, 0));
}

#[test]
fn rounds_started_for_reads_do_not_take_batches_in_flight_for_lost() {
    let mut leader = replicating_leader(3, CoreConfig::default());
    leader.propose(0, commands(4));
    persist(&mut leader);
    drain(&mut leader);
    for id in 0..10 {
        leader.read_index(MS, [id]);
        let sent = drain(&mut leader);
        assert!(
            sent.iter()
                .all(|(_, m)| matches!(m, Message::AppendEntries(a) if a.entries.is_empty())),
            "read {id}: only empty AppendEntries, got {sent:?}"
        );
        for peer in [1, 2] {
            let pr = leader.progress(peer).unwrap();
            assert_eq!(pr.state, ProgressState::Replicate, "read {id}: peer {peer}");
        }
    }
}
