//! Agreement on the unreliable network (requests delayed and dropped, replies dropped), with and
//! without long reordering of replies, while nodes are cut off and reconnected. Not part of the
//! 2A/2B suite: these check that batching, pipelining and backtracking recover from lost and
//! reordered messages in the threaded runtime.

use zeroraft::Config;
use zeroraft_harness::cluster::{Cluster, cmd};

/// Cuts off a different node each round (the leader every other round) while 10 commands commit
/// on the other four, brings it back, then commits one more on all five.
fn agreement_with_churn(config: Config) {
    let servers = 5;
    let cfg = Cluster::with_config(servers, true, config);
    let mut x = 0;
    for round in 0..6 {
        let victim = if round % 2 == 0 {
            cfg.check_one_leader()
        } else {
            round % servers
        };
        cfg.disconnect(victim);
        for _ in 0..10 {
            x += 1;
            cfg.one(cmd(x), servers - 1, true);
        }
        cfg.connect(victim);
    }
    x += 1;
    cfg.one(cmd(x), servers, true);
    cfg.check_apply_error();
}

pub(crate) fn agreement_despite_unreliable_network_and_churn() {
    agreement_with_churn(Config::default());
}

pub(crate) fn agreement_despite_unreliable_network_and_churn_with_production_settings() {
    // PreVote and CheckQuorum must not keep the majority from electing a leader and committing
    // while requests are delayed and dropped and replies dropped.
    agreement_with_churn(Config::production());
}

pub(crate) fn agreement_with_long_reordering_of_replies() {
    let servers = 3;
    let cfg = Cluster::new(servers, true);
    cfg.set_long_reordering(true);
    for x in 1..=30 {
        cfg.one(cmd(x), servers, true);
    }
    // Concurrent proposals while replies arrive seconds late and out of order.
    let leader = cfg.check_one_leader();
    for x in 100..200 {
        cfg.raft(leader).start(cmd(x));
    }
    cfg.set_long_reordering(false);
    cfg.set_unreliable(false);
    let last = cfg.one(cmd(1000), servers, true);
    // Every index up to the last is decided identically on every node.
    for index in 1..=last {
        assert_eq!(
            cfg.n_committed(index).0,
            servers,
            "index {index} applied everywhere"
        );
    }
}
