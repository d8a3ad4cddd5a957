//! The deterministic simulator: many seeds with zero violations, identical traces for identical
//! seeds, crashes that lose what was not yet durable, snapshots taken and installed. With PreVote
//! and CheckQuorum on: zero violations too, leaders cut off from the majority stepping down in
//! time, and nodes cut off from a stable cluster never raising its term when they come back,
//! where plain Raft does. With reads and leadership transfers: every read sees every earlier
//! commit, every transfer ends within an election timeout. (That the checker catches classic
//! bugs switched on in the core is tested inside the crate, in `sim/src/bugs.rs`: only its own
//! test build can switch them on.)
//!
//! The seed counts are sized for `cargo test --release` on two cores: 24 000 seeds in all for
//! the zero-violation tests by default, 240 000 with `ZERORAFT_LONG=1` (the other seed counts
//! scale with it; `ZERORAFT_SIM_SEEDS=N` sets the total). A debug build runs a fiftieth of it.

use std::ops::Range;

use zeroraft_engine::core::Role;
use zeroraft_harness::scale;
use zeroraft_sim::{
    EventKind, MembershipCounts, MsgSummary, Options, PowerLoss, Simulation, UnderWay, run_seed,
};

/// Seeds of the zero-violation tests, in total over both halves, in a release build: by
/// default, and with `ZERORAFT_LONG=1`.
const RELEASE_SEEDS: (u64, u64) = (24_000, 240_000);

fn total_seeds() -> u64 {
    let divisor = if cfg!(debug_assertions) { 50 } else { 1 };
    scale::size(
        "ZERORAFT_SIM_SEEDS",
        RELEASE_SEEDS.0 / divisor,
        RELEASE_SEEDS.1 / divisor,
    )
}

/// Runs `seeds` with `options` and fails with the first violation's report.
fn no_violations(seeds: Range<u64>, options: &Options) {
    let (mut on_the_log, mut power_loss) = (0, PowerLoss::default());
    let (mut changing, mut membership) = (0, MembershipCounts::default());
    for seed in seeds.clone() {
        let report = run_seed(seed, options);
        if let Err(v) = report.outcome {
            panic!("{v}");
        }
        on_the_log += u64::from(report.power_loss.nodes > 0);
        power_loss.add(&report.power_loss);
        changing += u64::from(report.membership != MembershipCounts::default());
        membership.add(&report.membership);
    }
    eprintln!(
        "seeds {seeds:?}: {on_the_log} on the write-ahead log, which went through {power_loss:?}; \
         {changing} changing their members: {membership:?}"
    );
}

// Two tests, so that the harness runs the halves on two threads.
#[test]
fn no_violations_first_half() {
    no_violations(0..total_seeds() / 2, &Options::default());
}

#[test]
fn no_violations_second_half() {
    no_violations(total_seeds() / 2..total_seeds(), &Options::default());
}

/// Seeds that once found a cluster that did not converge after the faults stopped: a learner
/// never told a candidate's term (4 000 421, and 635 with CheckQuorum), a candidate that could
/// not win holding every other timer back (33 873), removed nodes kept running for a
/// configuration no leader would keep (139 538, 1 323).
#[test]
fn seeds_that_once_did_not_converge_do() {
    for seed in [33_873, 139_538, 1_323] {
        no_violations(seed..seed + 1, &Options::default());
    }
    let read_index = Options {
        no_op: true,
        reads: true,
        ..Options::default()
    };
    no_violations(4_000_421..4_000_422, &read_index);
    let check_quorum_with_members = Options {
        members: Some(true),
        check_quorum: true,
        ..Options::default()
    };
    no_violations(635..636, &check_quorum_with_members);
}

#[test]
fn five_nodes_ten_thousand_ticks() {
    let options = Options {
        nodes: Some(5),
        fault_ticks: Some(10_000),
        ..Options::default()
    };
    no_violations(1_000_000..1_000_000 + total_seeds() / 100, &options);
}

#[test]
#[should_panic(expected = "the simulator runs clusters of 2 to 63 nodes, not 1")]
fn a_cluster_size_the_simulator_cannot_run_is_refused() {
    let options = Options {
        nodes: Some(1),
        ..Options::default()
    };
    Simulation::new(0, &options);
}

#[test]
fn same_seed_same_trace() {
    let quiet = Options::default();
    let traced = Options {
        trace: true,
        ..Options::default()
    };
    for seed in [3, 1_234, 987_654_321] {
        let a = run_seed(seed, &quiet);
        let b = run_seed(seed, &traced);
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed}: trace hash");
        assert_eq!(a.events, b.events, "seed {seed}: event count");
        assert_eq!(
            b.trace.len() as u64,
            b.events,
            "seed {seed}: full trace kept"
        );
        assert!(a.events > 100, "seed {seed}: only {} events", a.events);
    }
    assert_ne!(
        run_seed(1, &quiet).trace_hash,
        run_seed(2, &quiet).trace_hash,
        "different seeds, different traces"
    );
}

#[test]
fn the_swarm_crashes_nodes_while_they_write() {
    let traced = Options {
        trace: true,
        ..Options::default()
    };
    let (mut crashing, mut lost_writes, mut restarts) = (0, 0, 0);
    for seed in 0..40 {
        let report = run_seed(seed, &traced);
        assert!(report.outcome.is_ok(), "seed {seed}: {:?}", report.outcome);
        let mut crashed = false;
        for event in &report.trace {
            match event.kind {
                EventKind::Crash { lost_writes: l, .. } => {
                    crashed = true;
                    lost_writes += l;
                }
                EventKind::Restart { .. } => restarts += 1,
                _ => {}
            }
        }
        crashing += u32::from(crashed);
    }
    assert!(crashing >= 10, "only {crashing} of 40 seeds crash a node");
    assert!(lost_writes > 0, "no crash lost a write in progress");
    assert!(restarts > 0, "no crashed node restarted");
}

#[test]
fn the_swarm_power_cuts_nodes_on_the_write_ahead_log() {
    // A quarter of the seeds (half of those with crashes) run every node on the write-ahead
    // log, and every crash of a node cuts its power, in the middle of a persist when one is
    // under way. The zero-violation tests check what the logs give back; this one checks that
    // the cuts do what they are for: writes under way kept whole and lost, files torn and
    // dropped, opens cut short. Without membership changes, which stop removed nodes for good
    // (their last power cut is never followed by a reopen); the zero-violation tests run the
    // logs of those seeds too.
    let traced = Options {
        trace: true,
        members: Some(false),
        ..Options::default()
    };
    let seeds = 0..scale::size("ZERORAFT_SIM_WAL_SEEDS", 200, 2_000);
    let n = seeds.end - seeds.start;
    let (mut on_the_log, mut sum, mut reopens) = (0, PowerLoss::default(), [0u64; 5]);
    for seed in seeds {
        let report = run_seed(seed, &traced);
        if let Err(v) = &report.outcome {
            panic!("{v}");
        }
        let p = report.power_loss;
        on_the_log += u64::from(p.nodes > 0);
        sum.add(&p);
        let mut reopened = 0;
        for event in &report.trace {
            if let EventKind::Reopen { under_way, .. } = event.kind {
                reopens[under_way as usize] += 1;
                reopened += 1;
            }
        }
        // A crashed node restarts by the end of the run (the heal phase restarts every node
        // that is down), on its log reopened.
        assert_eq!(reopened, p.crashes, "seed {seed}: a reopen for every crash");
    }
    eprintln!("{n} seeds: {on_the_log} on the write-ahead log: {sum:#?}");
    assert!(on_the_log * 8 >= n, "{on_the_log} of {n} seeds on the log");
    assert_eq!(reopens[UnderWay::Unexpected as usize], 0);
    assert_eq!(reopens[UnderWay::Kept as usize], sum.kept);
    assert_eq!(reopens[UnderWay::Lost as usize], sum.lost);
    let at_least = n / 20;
    let seen = [
        ("crashes (power cuts)", sum.crashes),
        ("crashes in the middle of a persist", sum.mid_write),
        ("writes under way kept whole", sum.kept),
        ("writes under way lost", sum.lost),
        (
            "persists that finished before the process died",
            sum.finished,
        ),
        ("opens in which the process died", sum.open_crashes),
        ("files torn by a power cut", sum.files_torn),
        (
            "files whose unsynced writes were all dropped",
            sum.files_dropped,
        ),
        ("directory operations lost", sum.dir_ops_lost),
    ];
    for (case, (what, count)) in seen.iter().enumerate() {
        assert!(
            *count >= at_least,
            "case {case}: {what}: {count} in {n} seeds"
        );
    }
    // A seed on the log replays exactly, power cuts and all.
    let on_the_log = Options {
        file_storage: Some(true),
        crash_interval: Some(50_000_000),
        ..Options::default()
    };
    let (a, b) = (run_seed(7, &on_the_log), run_seed(7, &on_the_log));
    assert!(a.power_loss.crashes > 0, "{:?}", a.power_loss);
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.power_loss, b.power_loss);
}

#[test]
fn the_swarm_snapshots_and_installs_in_chunks() {
    let traced = Options {
        trace: true,
        ..Options::default()
    };
    let (mut compactions, mut installs, mut chunked, mut seeds_installing) = (0, 0, 0, 0);
    for seed in 0..40 {
        let report = run_seed(seed, &traced);
        assert!(report.outcome.is_ok(), "seed {seed}: {:?}", report.outcome);
        let before = installs;
        for event in &report.trace {
            match &event.kind {
                EventKind::Compact { .. } => compactions += 1,
                EventKind::Install { .. } => installs += 1,
                EventKind::Deliver {
                    msg: MsgSummary::Snapshot { offset, .. },
                    ..
                } if *offset > 0 => chunked += 1,
                _ => {}
            }
        }
        seeds_installing += u32::from(installs > before);
    }
    assert!(
        compactions >= 100,
        "only {compactions} compactions in 40 seeds"
    );
    assert!(
        seeds_installing >= 5,
        "only {seeds_installing} of 40 seeds install a snapshot ({installs} installs)"
    );
    assert!(chunked > 0, "no snapshot arrived in more than one chunk");
}

#[test]
fn no_violations_with_pre_vote_and_check_quorum() {
    // Every invariant, and with CheckQuorum that a leader cut off from the majority steps down
    // within two minimum election timeouts.
    no_violations(
        2_000_000..2_000_000 + total_seeds() / 20,
        &Options::production(),
    );
}

#[test]
fn with_check_quorum_cut_off_leaders_step_down_in_their_term() {
    // Without PreVote or a bug, a leader becomes a follower of its own term only by CheckQuorum.
    let traced = Options {
        trace: true,
        ..Options::production()
    };
    let mut step_downs = 0;
    for seed in 0..40 {
        let report = run_seed(seed, &traced);
        assert!(report.outcome.is_ok(), "seed {seed}: {:?}", report.outcome);
        let mut leading = std::collections::HashMap::new();
        for event in &report.trace {
            if let EventKind::State { node, role, term } = event.kind {
                if leading.get(&node) == Some(&term) && role == Role::Follower {
                    step_downs += 1;
                }
                leading.insert(node, if role == Role::Leader { term } else { 0 });
            }
        }
    }
    assert!(
        step_downs >= 20,
        "only {step_downs} leaders stepped down in their term in 40 seeds"
    );
}

/// Runs `seeds` in rejoin mode with `options`, failing on any violation, and sums what the
/// rejoins did: (rejoins of a stable cluster, those during which the cut-off node raised its
/// term, those after which the cluster's term rose).
fn rejoin_counts(seeds: Range<u64>, options: &Options) -> (u64, u64, u64) {
    let options = Options {
        rejoin: true,
        ..options.clone()
    };
    let mut counts = (0, 0, 0);
    for seed in seeds {
        let report = run_seed(seed, &options);
        if let Err(v) = report.outcome {
            panic!("{v}");
        }
        counts.0 += report.rejoins;
        counts.1 += report.isolated_term_raises;
        counts.2 += report.rejoin_term_raises;
    }
    counts
}

#[test]
fn with_pre_vote_a_rejoining_node_never_raises_the_term_of_a_stable_cluster() {
    let seeds = 3_000_000..3_000_000 + total_seeds() / 200;
    let want_rejoins = 5 * (seeds.end - seeds.start);
    // PreVote alone, and with CheckQuorum.
    for check_quorum in [false, true] {
        let options = Options {
            check_quorum,
            ..Options::production()
        };
        let (rejoins, isolated, raised) = rejoin_counts(seeds.clone(), &options);
        assert!(
            rejoins >= want_rejoins,
            "check_quorum {check_quorum}: only {rejoins} rejoins of a stable cluster"
        );
        assert_eq!(
            isolated, 0,
            "check_quorum {check_quorum}: cut-off nodes that raised their term, of {rejoins}"
        );
        assert_eq!(
            raised, 0,
            "check_quorum {check_quorum}: rejoins that raised the cluster's term, of {rejoins}"
        );
    }
}

#[test]
fn without_pre_vote_rejoining_nodes_raise_the_term_of_a_stable_cluster() {
    // The counterpart of the test above: what it counts does happen in plain Raft.
    let (rejoins, isolated, raised) = rejoin_counts(3_000_000..3_000_040, &Options::default());
    assert!(
        isolated > rejoins / 10 && raised > rejoins / 10,
        "of {rejoins} rejoins, {isolated} raised the cut-off node's term, {raised} the cluster's"
    );
}

/// Production settings (PreVote, CheckQuorum, the leader no-op) with clients that also read
/// (ReadIndex and lease reads) and ask leaders to hand their leadership over.
fn reads_and_transfers() -> Options {
    Options {
        no_op: true,
        reads: true,
        transfers: true,
        ..Options::production()
    }
}

#[test]
fn no_violations_with_reads_leases_and_transfers() {
    // Every invariant, and: every confirmed read's index covers every index committed before
    // the read was asked for; every transfer ends within an election timeout.
    let seeds = 3_000_000..3_000_000 + total_seeds() / 40;
    let mut reads = [0; 3];
    let mut transfers = [0; 3];
    for seed in seeds.clone() {
        let report = run_seed(seed, &reads_and_transfers());
        if let Err(v) = report.outcome {
            panic!("{v}");
        }
        for (sum, n) in reads.iter_mut().zip(report.reads) {
            *sum += n;
        }
        for (sum, n) in transfers.iter_mut().zip(report.transfers) {
            *sum += n;
        }
    }
    // The checks above checked something: many reads confirmed, by round and by lease, and
    // transfers that made their target leader.
    let [asked, confirmed, lease] = reads;
    let [started, completed, abandoned] = transfers;
    let n = seeds.end - seeds.start;
    assert!(
        confirmed >= 10 * n,
        "{confirmed} of {asked} reads confirmed"
    );
    assert!(
        lease >= confirmed / 10,
        "{lease} of {confirmed} under a lease"
    );
    assert!(
        completed >= started / 5 && completed + abandoned <= started,
        "{started} transfers: {completed} completed, {abandoned} abandoned"
    );
}

#[test]
fn no_violations_with_leases_without_pre_vote() {
    // Without PreVote, real elections start from any node whose timer fires, and stale votes
    // and replies of higher terms reach nodes that a lease counts on.
    let options = Options {
        no_op: true,
        reads: true,
        check_quorum: true,
        ..Options::default()
    };
    no_violations(5_000_000..5_000_000 + total_seeds() / 80, &options);
}

#[test]
fn no_violations_with_read_index_alone() {
    // Without CheckQuorum there is no lease and a cut-off leader never steps down: its reads
    // must wait, never be confirmed stale.
    let options = Options {
        no_op: true,
        reads: true,
        ..Options::default()
    };
    no_violations(4_000_000..4_000_000 + total_seeds() / 80, &options);
}

#[test]
fn on_a_reliable_network_most_transfers_make_their_target_leader() {
    let options = Options {
        rejoin: true,
        ..reads_and_transfers()
    };
    let mut transfers = [0; 3];
    for seed in 0..200 {
        let report = run_seed(seed, &options);
        if let Err(v) = report.outcome {
            panic!("{v}");
        }
        for (sum, n) in transfers.iter_mut().zip(report.transfers) {
            *sum += n;
        }
    }
    let [started, completed, abandoned] = transfers;
    // Those abandoned had the cut-off follower as their target.
    assert!(
        completed * 10 >= started * 7,
        "{started} transfers: {completed} completed, {abandoned} abandoned"
    );
}
