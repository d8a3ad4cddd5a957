//! A node that joined a running cluster and restarts must reach the members added after it.
//!
//! Between two nodes, the one with the lower id dials. A restarted node's transport knows the
//! addresses of its data directory's identity (the nodes there when it joined), those of the
//! address book it has applied, and those its log names: the book's entries after its snapshot
//! are applied only once it learns the commit index from a leader. Without the addresses of
//! its log, node 3, restarted among voters {3, 4, 5} added after it, did not know where 4 and 5
//! are and could not dial them, and they waited for it to dial: it never heard from a leader
//! again, although every member ran.

use std::time::{Duration, Instant};

use crate::support::processes::ProcessCluster;

/// How long a membership step or a catch-up may take.
const PATIENCE: Duration = Duration::from_secs(30);

/// Runs `zeroraft admin ARGS` until it succeeds (a learner catching up, a change under way).
fn admin(cluster: &ProcessCluster, args: &[&str]) {
    let until = Instant::now() + PATIENCE;
    loop {
        let (status, out, err) = cluster.admin(args);
        if status.success() {
            return;
        }
        assert!(
            Instant::now() < until,
            "zeroraft admin {args:?}: {out}{err}"
        );
        std::thread::sleep(Duration::from_millis(100)); // the cluster settling
    }
}

#[test]
fn a_restarted_node_reaches_the_members_added_after_it() {
    let mut cluster = ProcessCluster::loopback(3, "index");
    let added: Vec<usize> = (0..3).map(|_| cluster.add_node()).collect();
    for i in 0..3 {
        cluster.start(i);
    }
    assert!(cluster.leader(PATIENCE).is_some(), "a leader");
    // Voters 0, 1, 2 become 3, 4, 5.
    for &id in &added {
        let (peer, client) = (
            cluster.peer_addr(id).to_string(),
            cluster.client_addrs()[id].to_string(),
        );
        let id = id.to_string();
        admin(
            &cluster,
            &["add", "--id", &id, "--peer", &peer, "--client", &client],
        );
        cluster.start(id.parse().unwrap());
        admin(&cluster, &["promote", &id]);
    }
    for old in 0..3 {
        admin(&cluster, &["remove", &old.to_string()]);
        cluster.kill(old);
    }
    let mut kv = cluster.client(PATIENCE);
    kv.put("k", "before").expect("a write among 3, 4, 5");

    // Node 3 restarts; the others run and lead.
    cluster.kill(3);
    cluster.start(3);
    kv.put("k", "after").expect("a write among 4 and 5");
    let leader = cluster.leader(PATIENCE).expect("a leader");
    let commit = cluster
        .status(leader)
        .expect("the leader's status")
        .commit_index;
    let until = Instant::now() + PATIENCE;
    loop {
        let status = cluster.status(3).expect("node 3 answers");
        if status.commit_index >= commit {
            return;
        }
        assert!(
            Instant::now() < until,
            "node 3 did not catch up in {PATIENCE:?}: its commit index is {} (the leader's {commit}), leader {:?}",
            status.commit_index,
            status.leader
        );
        std::thread::sleep(Duration::from_millis(100)); // node 3 catching up
    }
}
