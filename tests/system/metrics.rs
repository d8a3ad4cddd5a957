//! `zeroraft serve --metrics`: three real processes, each scraped over HTTP and its exposition
//! parsed with an exposition-format parser. Writes raise the commit, apply and client request
//! counters; a follower stopped with SIGSTOP shows as lag on the leader; killing the leader raises
//! the leader changes on the survivors and the elections won on the new leader. Where
//! `promtool` is installed, `promtool check metrics` accepts the exposition (elsewhere that part
//! says "SKIPPED" on stderr). The health endpoints answer as documented on a node that starts
//! alone, on ready nodes, and on a node cut off from the others (both others stopped with
//! SIGSTOP, then resumed); that node's JSON log lines carry its id, term and role.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::processes::ProcessCluster;
use prometheus_parse::{Scrape, Value};
use zeroraft::engine::metrics as m;
use zeroraft::kv::metrics as kvm;

/// How long one client operation may take: enough for an election on a busy machine.
const OP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long to wait for a leader, or for a metric to show what it should.
const PATIENCE: Duration = Duration::from_secs(15);

/// `GET path` on `addr`: the status code and the body, or `None` if nothing answers.
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    // HTTP/1.0: the answer is the rest of the stream, never chunked.
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let code = answer.split(' ').nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((code, body))
}

/// Node `i`'s exposition, as text.
fn exposition(cluster: &ProcessCluster, i: usize) -> String {
    let (code, body) = get(cluster.metrics_addr(i), "/metrics")
        .unwrap_or_else(|| panic!("node {i} serves no metrics: {}", cluster.log(i)));
    assert_eq!(code, 200, "node {i}: {body}");
    body
}

fn scrape(cluster: &ProcessCluster, i: usize) -> Scrape {
    let text = exposition(cluster, i);
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("a well-formed exposition")
}

/// The sum of the samples of `name` whose labels include `labels`.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => 0.0,
        })
        .sum()
}

/// Waits up to [`PATIENCE`] for `check` to hold, then panics with `what`.
fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let until = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50)); // polling the nodes
    }
}

/// The value of `name` (with `labels`) on node `i` now.
fn on(cluster: &ProcessCluster, i: usize, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(&scrape(cluster, i), name, labels)
}

/// Client `Put`s answered Ok, summed over the running nodes.
fn puts_ok(cluster: &ProcessCluster) -> f64 {
    (0..cluster.len())
        .filter(|&i| cluster.is_running(i))
        .map(|i| {
            on(
                cluster,
                i,
                kvm::CLIENT_REQUESTS,
                &[("kind", "put"), ("outcome", "ok")],
            )
        })
        .sum()
}

#[test]
fn counters_follow_writes_a_lagging_follower_and_a_leader_change() {
    let mut cluster = ProcessCluster::loopback(3, "index");
    cluster.serve_metrics();
    cluster.start_all();
    let leader = cluster.leader(PATIENCE).expect("a leader");
    let mut client = cluster.client(OP_TIMEOUT);
    client.put("warm", "up").expect("a write");

    // Writes raise the commit and apply counters and the client request counters.
    let before = scrape(&cluster, leader);
    let (applied, commit) = (
        value(&before, m::ENTRIES_APPLIED, &[]),
        value(&before, m::COMMIT_INDEX, &[]),
    );
    let puts = puts_ok(&cluster);
    for i in 0..50 {
        client.put(&format!("k{i}"), "v").expect("a write");
    }
    wait_for("50 more entries applied and puts counted", || {
        let now = scrape(&cluster, leader);
        value(&now, m::ENTRIES_APPLIED, &[]) >= applied + 50.0
            && value(&now, m::COMMIT_INDEX, &[]) >= commit + 50.0
            && puts_ok(&cluster) >= puts + 50.0
    });
    let after = scrape(&cluster, leader);
    for histogram in [
        m::COMMIT_LATENCY,
        m::WAL_WRITE,
        m::WAL_FDATASYNC,
        m::APPLY_BATCH,
    ] {
        assert!(
            value(&after, histogram, &[]) > 0.0,
            "{histogram} has observations on the leader"
        );
    }
    let role = |role| value(&after, m::ROLE, &[("role", role)]);
    assert_eq!((role("leader"), role("follower")), (1.0, 0.0));

    // A follower that stops answering lags on the leader, and catches up once resumed.
    let follower = (leader + 1) % cluster.len();
    let peer = follower.to_string();
    let lag =
        |cluster: &ProcessCluster| on(cluster, leader, m::FOLLOWER_LAG, &[("peer", peer.as_str())]);
    cluster.signal(follower, "STOP");
    for i in 0..20 {
        client
            .put(&format!("lag{i}"), "v")
            .expect("a majority writes");
    }
    wait_for("the stopped follower's lag", || lag(&cluster) >= 20.0);
    cluster.signal(follower, "CONT");
    wait_for("the follower to catch up", || lag(&cluster) == 0.0);

    check_with_promtool(&exposition(&cluster, leader));

    // Killing the leader: the survivors see a new leader, and one of them won an election.
    let survivors: Vec<usize> = (0..cluster.len()).filter(|&i| i != leader).collect();
    let seen = |cluster: &ProcessCluster, name| -> Vec<f64> {
        survivors
            .iter()
            .map(|&i| on(cluster, i, name, &[]))
            .collect()
    };
    let (changes, won) = (
        seen(&cluster, m::LEADER_CHANGES),
        seen(&cluster, m::ELECTIONS_WON),
    );
    cluster.kill(leader);
    let new_leader = cluster.leader(PATIENCE).expect("a new leader");
    assert_ne!(new_leader, leader);
    wait_for("leader changes on every survivor", || {
        let now = seen(&cluster, m::LEADER_CHANGES);
        now.iter().zip(&changes).all(|(now, then)| now > then)
    });
    let now_won = seen(&cluster, m::ELECTIONS_WON);
    assert!(
        now_won.iter().zip(&won).any(|(now, then)| now > then),
        "an election won: {won:?} then {now_won:?}"
    );
}

/// Runs `promtool check metrics` on `text`, if `promtool` is installed.
fn check_with_promtool(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            eprintln!("SKIPPED: promtool check metrics (promtool cannot run: {e})");
            return;
        }
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool ends");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn health_endpoints_on_a_starting_a_ready_and_a_cut_off_node() {
    let mut cluster = ProcessCluster::loopback(3, "index");
    cluster.serve_metrics();
    cluster.set_args(0, &["--log-format", "json", "--log-level", "debug"]);
    let code = |cluster: &ProcessCluster, i, path| get(cluster.metrics_addr(i), path).map(|a| a.0);

    // Alone, node 0 runs but knows no leader.
    cluster.start(0);
    assert_eq!(code(&cluster, 0, "/healthz"), Some(200));
    assert_eq!(code(&cluster, 0, "/readyz"), Some(503));
    assert_eq!(code(&cluster, 0, "/nothing"), Some(404));

    cluster.start(1);
    cluster.start(2);
    wait_for("every node ready", || {
        (0..3).all(|i| code(&cluster, i, "/readyz") == Some(200))
    });

    // Cut off from both others, node 0 loses its leader: alive, not ready.
    cluster.signal(1, "STOP");
    cluster.signal(2, "STOP");
    wait_for("node 0 not ready while cut off", || {
        code(&cluster, 0, "/readyz") == Some(503)
    });
    assert_eq!(code(&cluster, 0, "/healthz"), Some(200));
    cluster.signal(1, "CONT");
    cluster.signal(2, "CONT");
    wait_for("node 0 ready again", || {
        code(&cluster, 0, "/readyz") == Some(200)
    });

    // Its log lines are JSON objects, and those of its thread carry its id, term and role.
    let log = cluster.log(0);
    let events: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let in_span = events
        .iter()
        .filter_map(|e| e.get("span"))
        .filter(|span| span["node"] == 0 && span["term"].is_u64() && span["role"].is_string())
        .count();
    assert!(in_span > 0, "no event carries the node's span: {log}");
}
