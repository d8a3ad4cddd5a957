//! Dropping every handle ends every thread: the nodes', the appliers' and the network's.
//! Alone in its binary, so that no other test's threads are counted.

use std::time::{Duration, Instant};

use zeroraft_harness::cluster::{Cluster, cmd};

fn zeroraft_threads() -> usize {
    let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task");
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("zeroraft-") || name.starts_with("applier-"))
        .count()
}

#[test]
fn dropping_a_cluster_ends_its_threads() {
    let before = zeroraft_threads();
    {
        let cfg = Cluster::new(5, true);
        cfg.one(cmd(1), 5, true);
        // A new thread names itself only once it runs, so count after the cluster did real
        // work: every node, applier and (unreliable network) the scheduler have run by now.
        assert!(
            zeroraft_threads() >= before + 11,
            "5 nodes, 5 appliers and the network scheduler run"
        );
    }
    // Joins happen in drop; the kernel may take a moment to reap the task entries.
    let deadline = Instant::now() + Duration::from_secs(5);
    while zeroraft_threads() > before {
        assert!(
            Instant::now() < deadline,
            "{} threads still running",
            zeroraft_threads() - before
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
