//! The dashboard's view of a cluster of `serve` nodes through their client ports
//! ([`RemoteCluster`]): three [`ServeNode`]s in this process on loopback, each with its own data
//! directory, watched as `zeroraft monitor --connect` watches processes.
//!
//! Every check waits for its condition with a deadline far above what it needs, sampling as the
//! dashboard does: elections and connections take their time on a loaded machine.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use zeroraft_engine::{Role, Status};
use zeroraft_kv::serve::{NodeOptions, ServeError, ServeNode};
use zeroraft_kv::{ClientOptions, KvClient, KvError};
use zeroraft_monitor::{ActionKind, Control, Sample};

use super::{RemoteCluster, RemoteOptions};

const PATIENCE: Duration = Duration::from_secs(30);

/// `n` nodes of one cluster, node `i` keeping its state in `dir/<attempt>-node-<i>`.
///
/// Every node must know every node's peer address before it starts, so the addresses are
/// chosen first (free ports the system hands out, released again): another program may take
/// one in between, and then the whole cluster is started again on new ones.
fn start_cluster(n: usize, dir: &Path) -> Vec<Option<ServeNode>> {
    for attempt in 0..10 {
        let peers: Vec<SocketAddr> = (0..n)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect::<Vec<_>>()
            .iter()
            .map(|l| l.local_addr().unwrap())
            .collect();
        let mut nodes = Vec::new();
        for i in 0..n {
            let data = dir.join(format!("{attempt}-node-{i}"));
            let options =
                NodeOptions::new(i, 7, peers.clone(), "127.0.0.1:0".parse().unwrap(), data);
            ServeNode::initialize(&options).expect("a new data directory");
            match ServeNode::start(options) {
                Ok(node) => nodes.push(Some(node)),
                Err(ServeError::Listen { .. }) => break,
                Err(e) => panic!("node {i} does not start: {e}"),
            }
        }
        if nodes.len() == n {
            return nodes;
        }
    }
    panic!("no free ports for the cluster in 10 attempts");
}

/// Samples `remote` until `done` holds for a sample, and returns that sample.
fn wait_for(remote: &RemoteCluster, what: &str, done: impl Fn(&Sample) -> bool) -> Sample {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let sample = remote.sample();
        if done(&sample) {
            return sample;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {PATIENCE:?}; last sample {:#?}",
            sample.statuses
        );
        // The pollers read the nodes every 100 ms: look again after a few of their readings.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The live nodes leading, by id.
fn leaders(sample: &Sample) -> Vec<usize> {
    sample
        .statuses
        .iter()
        .filter(|s| s.role == Role::Leader && !s.killed)
        .map(|s| s.id)
        .collect()
}

fn link(sample: &Sample, from: usize, to: usize) -> bool {
    let n = sample.statuses.len();
    sample.links[from * n + to]
}

fn all_up(sample: &Sample) -> bool {
    sample.statuses.iter().all(|s| !s.killed) && sample.links.iter().all(|&up| up)
}

#[test]
fn a_cluster_of_serve_nodes_is_watched_through_its_client_ports() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(3, dir.path());
    let addrs: Vec<SocketAddr> = nodes
        .iter()
        .map(|n| n.as_ref().unwrap().client_addr())
        .collect();
    let remote = RemoteCluster::connect(addrs.clone(), RemoteOptions::default(), None).unwrap();
    assert_eq!(remote.nodes(), 3);
    assert!(remote.supports(ActionKind::TransferLeadership));
    for kind in [
        ActionKind::Crash,
        ActionKind::Restart,
        ActionKind::Connect,
        ActionKind::Disconnect,
        ActionKind::Partition,
        ActionKind::SetRate,
    ] {
        assert!(!remote.supports(kind), "{kind:?}");
    }
    assert!(remote.restart(0).is_err());

    // One leader, every link up, and the full status of each node: ids in place, the
    // leader's view of its followers, traffic counted.
    let sample = wait_for(&remote, "one leader and every link up", |s| {
        leaders(s).len() == 1
            && all_up(s)
            && s.statuses.iter().all(|st| st.leader == Some(leaders(s)[0]))
    });
    let leader = leaders(&sample)[0];
    for (i, status) in sample.statuses.iter().enumerate() {
        assert_eq!(status.id, i);
        assert!(status.last_applied <= status.commit_index, "node {i}");
    }
    let mut followers: Vec<usize> = sample.statuses[leader].peers.iter().map(|p| p.id).collect();
    followers.sort_unstable();
    assert_eq!(
        followers,
        (0..3).filter(|&j| j != leader).collect::<Vec<_>>()
    );
    assert!(sample.statuses[leader].elections_won >= 1);
    assert!(sample.network.rpc_total > 0 && sample.network.bytes_total > 0);
    assert_eq!(sample.load.proposed, 0, "no load remotely");
    // What the server reports is what the engine publishes.
    let client = KvClient::new(Vec::new(), ClientOptions::default());
    let full = client.status(addrs[leader]).unwrap().full.unwrap();
    assert_eq!(full.status.id, leader);
    assert_eq!(full.links.len(), 3);
    assert!(
        full.links[leader] == Default::default(),
        "no link to itself"
    );

    // Leadership moves where it is asked to. A transfer that the target does not win in time
    // is given up by the leader: ask again until it leads.
    let target = (leader + 1) % 3;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let sample = remote.sample();
        if leaders(&sample) == [target] {
            break;
        }
        assert!(Instant::now() < deadline, "n{target} does not lead");
        if let [l] = leaders(&sample)[..]
            && let Err(why) = remote.transfer_leadership(l, target)
        {
            // It lost its leadership in between: the next sample shows who leads.
            assert!(why.contains("not the leader"), "{why}");
        }
        wait_for_change(&remote, &sample);
    }
    // A node that does not lead refuses, naming the leader; a target that is no node is an error.
    let follower = (target + 1) % 3;
    match client.transfer_leadership(addrs[follower], target) {
        Err(KvError::NotLeader { leader }) => {
            assert!(
                leader.is_none() || leader == Some(target as u64),
                "{leader:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    match client.transfer_leadership(addrs[target], 7) {
        Err(KvError::Server(why)) => assert!(why.contains("node 7"), "{why}"),
        other => panic!("{other:?}"),
    }

    // A node shut down is shown down, its links cut; the others carry on.
    let gone = (target + 2) % 3;
    nodes[gone].take().unwrap().shutdown();
    let sample = wait_for(&remote, "the stopped node to be down", |s| {
        s.statuses[gone].killed && !remote.is_reachable(gone)
    });
    assert_eq!(sample.statuses[gone].id, gone);
    for j in (0..3).filter(|&j| j != gone) {
        assert!(!link(&sample, gone, j), "n{gone} -> n{j}");
    }
    let sample = wait_for(&remote, "the others up, linked, with a leader", |s| {
        let others: Vec<usize> = (0..3).filter(|&j| j != gone).collect();
        others.iter().all(|&j| !s.statuses[j].killed)
            && link(s, others[0], others[1])
            && link(s, others[1], others[0])
            && !link(s, others[0], gone)
            && leaders(s).len() == 1
    });
    assert!(!leaders(&sample).contains(&gone));

    // The remaining nodes still serve.
    let mut kv = KvClient::new(addrs.clone(), ClientOptions::default());
    kv.put("k", "v").unwrap();
    assert_eq!(kv.get("k").unwrap(), "v");
}

/// Waits until `remote` shows a sample other than `before` (some node moved on), or a second.
fn wait_for_change(remote: &RemoteCluster, before: &Sample) {
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline && remote.sample().statuses == before.statuses {
        std::thread::sleep(Duration::from_millis(20)); // the pollers read every 100 ms
    }
}

#[test]
fn a_silent_or_misplaced_node_does_not_hold_up_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(3, dir.path());
    let addrs: Vec<SocketAddr> = nodes
        .iter()
        .map(|n| n.as_ref().unwrap().client_addr())
        .collect();
    // A listener that takes connections (the system does, in its backlog) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut with_silent = addrs.clone();
    with_silent.push(silent.local_addr().unwrap());
    let remote = RemoteCluster::connect(with_silent, RemoteOptions::default(), None).unwrap();
    let sample = wait_for(&remote, "the three nodes up and linked", |s| {
        (0..3).all(|i| !s.statuses[i].killed && (0..3).all(|j| link(s, i, j)))
    });
    assert!(sample.statuses[3].killed, "the silent one is down");
    assert_eq!(sample.statuses[3].id, 3);
    assert!((0..3).all(|j| !link(&sample, 3, j)));
    // Sampling never waits for the silent node's poller, which waits for an answer.
    let started = Instant::now();
    for _ in 0..20 {
        remote.sample();
    }
    assert!(
        started.elapsed() < RemoteOptions::default().timeout,
        "20 samples took {:?}",
        started.elapsed()
    );
    drop(remote);

    // Addresses out of order: each node is shown under its place, failed, saying why.
    let swapped = vec![addrs[1], addrs[0], addrs[2]];
    let remote = RemoteCluster::connect(swapped, RemoteOptions::default(), None).unwrap();
    let sample = wait_for(&remote, "node 2 up", |s| !s.statuses[2].killed);
    for i in [0, 1] {
        let status: &Status = &sample.statuses[i];
        assert_eq!(status.id, i);
        assert!(status.killed);
        let failure = status.failure.as_deref().unwrap_or_default();
        assert!(failure.contains("in id order"), "{failure}");
    }
}
