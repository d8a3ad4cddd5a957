//! The threaded runtime with [`Config::production`] (PreVote and CheckQuorum on), on the tester's
//! cluster: what the two options promise, end to end. Not part of the 2A/2B suite, whose RPC
//! counts assume plain Raft. The unreliable-network churn with these settings is in
//! tests/tester/unreliable.rs.

use std::thread::sleep;
use std::time::{Duration, Instant};

use zeroraft::Config;
use zeroraft_harness::cluster::{Cluster, ELECTION_TIMEOUT, cmd};

#[test]
fn a_follower_cut_off_keeps_its_term_and_rejoins_without_deposing_the_leader() {
    let servers = 5;
    let cfg = Cluster::with_config(servers, false, Config::production());
    cfg.begin("Production: a follower cut off and back leaves the leader alone");
    let leader = cfg.check_one_leader();
    cfg.one(cmd(1), servers, true);
    let term = cfg.check_terms();

    let follower = (leader + 1) % servers;
    cfg.disconnect(follower);
    // The scenario itself: several election timeouts cut off, in which a follower without
    // PreVote would campaign about once per timeout, raising its term each time.
    sleep(3 * ELECTION_TIMEOUT);
    let (cut_off_term, _) = cfg.raft(follower).get_state();
    assert_eq!(cut_off_term, term, "the cut-off follower kept its term");
    cfg.one(cmd(2), servers - 1, true);

    cfg.connect(follower);
    // Committed on all five: the follower is back and caught up.
    cfg.one(cmd(3), servers, true);
    assert_eq!(cfg.check_terms(), term, "nobody raised the term");
    assert_eq!(cfg.check_one_leader(), leader, "the same leader");
    cfg.end();
}

#[test]
fn a_leader_cut_off_from_the_majority_steps_down_within_two_election_timeouts() {
    let servers = 5;
    let config = Config::production();
    let bound = 2 * config.election_timeout_min;
    let cfg = Cluster::with_config(servers, false, config);
    cfg.begin("Production: a cut-off leader steps down");
    let leader = cfg.check_one_leader();
    cfg.one(cmd(1), servers, true);

    cfg.disconnect(leader);
    let cut = Instant::now();
    // Polls rather than sleeps for the bound: the leader's thread publishes the step-down when
    // its timer fires, and this sees when that is. The exact bound is the simulator's check
    // (tests/simulation.rs); here thread wake-ups on a busy machine come on top, so the slack
    // is generous, and still far below what a leader that never steps down would show.
    let slack = Duration::from_secs(1);
    while cfg.raft(leader).get_state().1 {
        assert!(
            cut.elapsed() < bound + slack,
            "still leading {} ms after it was cut off, beyond two minimum election timeouts \
             ({} ms) and {} ms of slack",
            cut.elapsed().as_millis(),
            bound.as_millis(),
            slack.as_millis()
        );
        sleep(Duration::from_millis(5));
    }

    // The majority goes on with a new leader, and the old one rejoins as a follower.
    let new_leader = cfg.check_one_leader();
    assert_ne!(new_leader, leader);
    cfg.one(cmd(2), servers - 1, true);
    cfg.connect(leader);
    cfg.one(cmd(3), servers, true);
    cfg.end();
}

#[test]
fn elections_after_network_failures() {
    // re_election_2a's steps with production settings: PreVote must not keep a leaderless
    // majority from electing one, nor a node rejoining from disturbing it.
    let servers = 3;
    let cfg = Cluster::with_config(servers, false, Config::production());
    cfg.begin("Production: election after network failure");
    let leader1 = cfg.check_one_leader();

    // If the leader disconnects, a new one should be elected.
    cfg.disconnect(leader1);
    let leader2 = cfg.check_one_leader();
    let term2 = cfg.check_terms();

    // The old leader rejoins (it stepped down, for want of a quorum) without disturbing the
    // new one.
    cfg.connect(leader1);
    cfg.one(cmd(1), servers, true);
    assert_eq!(cfg.check_one_leader(), leader2);
    assert_eq!(cfg.check_terms(), term2);

    // Without a quorum no leader is elected, and the cut-off leader steps down: the tester
    // checks connected nodes only, this checks the other two as well.
    cfg.disconnect(leader2);
    cfg.disconnect((leader2 + 1) % servers);
    sleep(2 * ELECTION_TIMEOUT);
    cfg.check_no_leader();
    for i in [leader2, (leader2 + 1) % servers] {
        assert!(!cfg.raft(i).get_state().1, "node {i} leads alone");
    }

    // If a quorum arises, it should elect a leader; the last node's return does not prevent it.
    cfg.connect((leader2 + 1) % servers);
    cfg.check_one_leader();
    cfg.connect(leader2);
    cfg.check_one_leader();
    cfg.one(cmd(2), servers, true);
    cfg.end();
}
