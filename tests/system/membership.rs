//! `zeroraft serve` processes change their members while clients write: a node is added as a
//! learner (`zeroraft admin add`, then `zeroraft init --join` and `serve` without `--peers`),
//! promoted once it has caught up, a node is removed, and a node whose disk died is replaced
//! (SIGKILL, its data directory wiped, a new node added under a new id and promoted, the dead id
//! removed). Every write acknowledged during all that is read back afterwards, and the history
//! of every operation is checked by the linearizability checker. The commands are those
//! docs/serve.md gives.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::support::processes::ProcessCluster;
use zeroraft::kv::{ClientOptions, KvClient, KvError};
use zeroraft_harness::linearizability::{KvInput, KvOutput, Outcome, Recorder, Verdict, check_kv};

/// How long one client operation may take before its outcome is unknown.
const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a membership step may take, retries included.
const PATIENCE: Duration = Duration::from_secs(30);
/// Writing clients.
const CLIENTS: u64 = 3;
/// How long the checker may take.
const CHECK_BUDGET: Duration = Duration::from_secs(30);
/// The exit status of `zeroraft admin` when the change could not be made.
const RUN_FAILED: i32 = 1;

/// One client: appends of unique tokens to a key of its own (each acknowledged one must be read
/// back at the end), puts and gets of shared keys, every operation recorded, until `stop`.
fn client(
    addrs: Vec<std::net::SocketAddr>,
    id: u64,
    recorder: &Recorder,
    stop: &AtomicBool,
    acknowledged: &AtomicU64,
) -> Vec<String> {
    let options = ClientOptions {
        op_timeout: OP_TIMEOUT,
        attempt_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(200),
        ..ClientOptions::default()
    };
    let mut kv = KvClient::new(addrs, options);
    let mut rng = fastrand::Rng::with_seed(id);
    let mut appended = Vec::new();
    let mut n = 0u64;
    while !stop.load(Relaxed) {
        n += 1;
        let input = match rng.u32(0..10) {
            0..6 => KvInput::Append {
                key: format!("own{id}"),
                value: format!("c{id}.{n};"),
            },
            6..8 => KvInput::Put {
                key: format!("shared{}", rng.u32(0..3)),
                value: format!("c{id}.{n}"),
            },
            _ => KvInput::Get {
                key: format!("shared{}", rng.u32(0..3)),
            },
        };
        let op = recorder.invoke(id, input.clone());
        let result = match &input {
            KvInput::Get { key } => kv.get(key).map(KvOutput::Value),
            KvInput::Put { key, value } => kv.put(key, value).map(|()| KvOutput::Done),
            KvInput::Append { key, value } => kv.append(key, value).map(|()| KvOutput::Done),
        };
        match result {
            Ok(output) => {
                if let KvInput::Append { value, .. } = &input {
                    appended.push(value.clone());
                }
                acknowledged.fetch_add(1, Relaxed);
                recorder.complete(op, output);
            }
            // Whether it took effect is not known: the checker allows both.
            Err(KvError::Timeout) => recorder.unknown(op),
            Err(e) => panic!("client {id}: {e}"),
        }
    }
    appended
}

/// Runs `zeroraft admin ARGS`, expecting success; returns what it printed.
fn admin(cluster: &ProcessCluster, args: &[&str]) -> String {
    let (status, out, err) = cluster.admin(args);
    assert!(
        status.success(),
        "zeroraft admin {args:?}: {status}: {out}{err}"
    );
    out
}

/// Promotes learner `id` as soon as it has caught up: `zeroraft admin promote` says clearly
/// when it has not, and is tried again.
fn promote_once_caught_up(cluster: &ProcessCluster, id: usize) {
    let until = Instant::now() + PATIENCE;
    loop {
        let (status, out, err) = cluster.admin(&["promote", &id.to_string()]);
        if status.success() {
            return;
        }
        assert!(
            err.contains("has not caught up") || err.contains("under way"),
            "promote {id}: {out}{err}"
        );
        assert!(Instant::now() < until, "node {id} never caught up: {err}");
        std::thread::sleep(Duration::from_millis(100)); // the learner catching up
    }
}

/// The members as `zeroraft admin members` prints them: (id, role) of each.
fn roles(cluster: &ProcessCluster) -> Vec<(usize, String)> {
    admin(cluster, &["members"])
        .lines()
        .skip(2)
        .filter(|l| !l.starts_with("removed"))
        .map(|l| {
            let mut fields = l.split_whitespace();
            let id = fields.next().unwrap().parse().unwrap();
            (id, fields.next().unwrap().to_owned())
        })
        .collect()
}

#[test]
fn members_are_added_promoted_removed_and_a_dead_disk_replaced_without_losing_a_write() {
    let mut cluster = ProcessCluster::loopback(3, "index");
    // The nodes to come: 3 (added), 4 (the replacement of a dead node).
    let three = cluster.add_node();
    let four = cluster.add_node();
    for i in 0..3 {
        cluster.start(i);
    }
    assert!(
        cluster.leader(PATIENCE).is_some(),
        "three nodes elect a leader"
    );

    let recorder = Arc::new(Recorder::new());
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (recorder, stop, acked) = (recorder.clone(), stop.clone(), acknowledged.clone());
            // Every node's client address, by id, those to come included.
            let addrs = cluster.client_addrs();
            std::thread::spawn(move || client(addrs, id, &recorder, &stop, &acked))
        })
        .collect();
    let progress = |what: &str| {
        // Writes go on through each step: wait for a few more to be acknowledged.
        let from = acknowledged.load(Relaxed);
        let until = Instant::now() + PATIENCE;
        while acknowledged.load(Relaxed) < from + 20 {
            assert!(
                Instant::now() < until,
                "no writes acknowledged after {what}"
            );
            std::thread::sleep(Duration::from_millis(10)); // polling a counter
        }
    };
    progress("the start");

    // Add node 3 as a learner; before it runs it cannot be promoted, and says why.
    let peer3 = cluster.peer_addr(three).to_string();
    let client3 = cluster.client_addrs()[three].to_string();
    let added = admin(
        &cluster,
        &["add", "--id", "3", "--peer", &peer3, "--client", &client3],
    );
    assert!(added.contains("added as a learner"), "{added}");
    let (status, _, err) = cluster.admin(&["promote", "3"]);
    assert_eq!(status.code(), Some(RUN_FAILED), "{err}");
    assert!(err.contains("has not caught up"), "{err}");
    assert!(
        roles(&cluster).contains(&(3, "learner".to_owned())),
        "node 3 is a learner"
    );
    cluster.start(three);
    promote_once_caught_up(&cluster, three);
    progress("adding node 3");
    let now = roles(&cluster);
    assert!(
        [0, 1, 2, 3]
            .iter()
            .all(|id| now.contains(&(*id, "voter".to_owned()))),
        "four voters: {now:?}"
    );

    // Remove node 0; its id is never used again.
    admin(&cluster, &["remove", "0"]);
    progress("removing node 0");
    let (status, _, err) = cluster.admin(&[
        "add",
        "--id",
        "0",
        "--peer",
        "127.0.0.1:1",
        "--client",
        "127.0.0.1:2",
    ]);
    assert_eq!(status.code(), Some(RUN_FAILED), "{err}");
    assert!(err.contains("never used again"), "{err}");
    // A removed node that still runs is no member; stop it.
    cluster.kill(0);

    // Replace a dead disk: node 1 crashes and its data is lost; a new node takes its place
    // under a new id, and the dead id is removed.
    cluster.kill(1);
    std::fs::remove_dir_all(cluster.data(1)).unwrap();
    progress("losing node 1");
    let peer4 = cluster.peer_addr(four).to_string();
    let client4 = cluster.client_addrs()[four].to_string();
    admin(
        &cluster,
        &["add", "--id", "4", "--peer", &peer4, "--client", &client4],
    );
    cluster.start(four);
    promote_once_caught_up(&cluster, four);
    admin(&cluster, &["remove", "1"]);
    progress("replacing node 1 by node 4");
    let now = roles(&cluster);
    assert_eq!(
        now,
        vec![
            (2, "voter".to_owned()),
            (3, "voter".to_owned()),
            (4, "voter".to_owned())
        ],
        "voters 2, 3 and 4 only"
    );

    stop.store(true, Relaxed);
    let appended: Vec<Vec<String>> = clients
        .into_iter()
        .map(|c| c.join().expect("client thread"))
        .collect();

    // Every acknowledged append is in its key, in order, read through the new members.
    let mut reader = cluster.client(OP_TIMEOUT);
    for (id, tokens) in appended.iter().enumerate() {
        let value = reader.get(&format!("own{id}")).expect("a read");
        let mut rest = value.as_str();
        for token in tokens {
            let at = rest
                .find(token.as_str())
                .unwrap_or_else(|| panic!("acknowledged append {token} lost (or out of order)"));
            rest = &rest[at + token.len()..];
        }
    }
    drop(cluster);

    let history = Arc::try_unwrap(recorder)
        .ok()
        .expect("clients are done")
        .into_history();
    let completed = history
        .iter()
        .filter(|op| matches!(op.outcome, Outcome::Returned { .. }))
        .count();
    let verdict = check_kv(&history, CHECK_BUDGET);
    eprintln!(
        "{} operations, {completed} completed, {} appends acknowledged: {}",
        history.len(),
        appended.iter().map(Vec::len).sum::<usize>(),
        match &verdict {
            Verdict::Linearizable => "linearizable".to_owned(),
            Verdict::NotLinearizable(a) => format!("NOT linearizable\n{a}"),
            Verdict::Unknown => "unknown: the checker ran out of time".to_owned(),
        }
    );
    assert!(
        matches!(verdict, Verdict::Linearizable),
        "the history is linearizable"
    );
}

#[test]
fn with_tls_a_node_added_gets_its_certificate_from_the_cluster_ca_and_joins() {
    let mut cluster = ProcessCluster::loopback(3, "index").with_tls();
    let three = cluster.add_node();
    for i in 0..3 {
        cluster.start(i);
    }
    let mut client = cluster.client(OP_TIMEOUT);
    client.put("before", "1").expect("a write");

    // Its certificate, from the CA the cluster's were made with.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zeroraft"))
        .args(["certs", "--add-node", "3", "--dir"])
        .arg(cluster.certs_dir())
        .output()
        .expect("run zeroraft certs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peer3 = cluster.peer_addr(three).to_string();
    let client3 = cluster.client_addrs()[three].to_string();
    admin(
        &cluster,
        &["add", "--id", "3", "--peer", &peer3, "--client", &client3],
    );
    cluster.start(three);
    promote_once_caught_up(&cluster, three);
    admin(&cluster, &["remove", "0"]);
    cluster.kill(0);
    client.put("after", "2").expect("a write without node 0");
    // Node 3 applies what the others committed, over its TLS links.
    let target = cluster.status(2).expect("node 2 answers").commit_index;
    let until = Instant::now() + PATIENCE;
    while cluster
        .status(three)
        .is_none_or(|s| s.last_applied < target)
    {
        assert!(Instant::now() < until, "node 3 does not keep up");
        std::thread::sleep(Duration::from_millis(20)); // polling its status
    }
    assert_eq!(client.get("before").expect("a read"), "1");
    assert_eq!(client.get("after").expect("a read"), "2");
    let now = roles(&cluster);
    assert_eq!(
        now.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![1, 2, 3],
        "{now:?}"
    );
}
