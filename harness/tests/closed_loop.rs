//! `LoadCluster::closed_loop_for` across a change of leader: it must go on with the new leader
//! and return, not wait for ever on the old one.

use std::ops::ControlFlow;
use std::sync::mpsc;
use std::time::Duration;

use zeroraft_engine::Config;
use zeroraft_harness::load::{LoadCluster, LoadReport, static_payload};

/// How long the loop may take beyond its own duration before the test calls it hung: a new
/// leader is elected within a second or so, even with the other core busy.
const HUNG_AFTER: Duration = Duration::from_secs(30);

/// Runs a 3-node closed loop for `seconds`, calling `disturb` with the cluster at its first
/// progress report (about a second in), on a thread of its own; returns the report, the
/// commits reported after the disturbance, and the leader then, or panics if the loop does not
/// return in time.
fn run_disturbed(
    seconds: u64,
    disturb: impl FnOnce(&LoadCluster, usize) + Send + 'static,
) -> (LoadReport, u64, usize) {
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let cluster = LoadCluster::new(3, Config::default());
        let payload = static_payload(16);
        let mut disturb = Some(disturb);
        let mut at_disturbance = None;
        let mut last_reported = 0;
        let report =
            cluster.closed_loop_for(Duration::from_secs(seconds), 64, &payload, |commits, _| {
                last_reported = commits;
                if let Some(disturb) = disturb.take() {
                    disturb(&cluster, cluster.leader());
                    at_disturbance = Some(commits);
                }
                ControlFlow::Continue(())
            });
        let after = last_reported - at_disturbance.expect("disturbed at the first report");
        let leader = cluster.leader();
        let _ = done_tx.send((report, after, leader));
    });
    done_rx
        .recv_timeout(Duration::from_secs(seconds) + HUNG_AFTER)
        .expect("closed_loop_for returned after the leader changed")
}

#[test]
fn goes_on_after_the_leader_is_killed() {
    let killed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(usize::MAX));
    let k = killed.clone();
    let (report, after, leader) = run_disturbed(4, move |cluster, leader| {
        cluster.node(leader).kill();
        k.store(leader, std::sync::atomic::Ordering::SeqCst);
    });
    let killed = killed.load(std::sync::atomic::Ordering::SeqCst);
    assert_ne!(leader, killed, "a new leader took over");
    assert!(after > 0, "commits went on under the new leader");
    assert!(report.commits >= after);
    assert!(report.latency.len() <= report.commits);
}

#[test]
fn goes_on_after_leadership_is_transferred() {
    let (report, after, _) = run_disturbed(4, |cluster, leader| {
        let target = (leader + 1) % cluster.len();
        cluster
            .node(leader)
            .transfer_leadership(target)
            .expect("the leader accepts the transfer");
    });
    assert!(after > 0, "commits went on after the transfer");
    assert!(report.commits >= after);
    assert!(report.latency.len() <= report.commits);
}
