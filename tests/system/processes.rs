//! The key-value service as separate `zeroraft serve` processes on loopback: elections, writes,
//! the leader killed with SIGKILL and restarted from its data directory, and nothing a client was
//! told is done ever lost. (The same under partitions, checked for linearizability, is
//! tests/system/linearizability.rs.)

use std::collections::HashMap;
use std::time::Duration;

use crate::support::processes::ProcessCluster;
use zeroraft::kv::KvError;

/// How long one operation may take: enough for an election after a kill on a busy machine.
const OP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long to wait for a leader.
const PATIENCE: Duration = Duration::from_secs(30);

/// What one client appended to one key, and what became of each append.
#[derive(Default)]
struct Appends {
    /// Tokens a server acknowledged, in the order they were acknowledged.
    acknowledged: Vec<String>,
    /// Tokens whose append timed out: applied once or not at all.
    unknown: Vec<String>,
}

impl Appends {
    fn append(&mut self, client: &mut zeroraft::kv::KvClient, key: &str, token: String) {
        match client.append(key, &format!("{token};")) {
            Ok(()) => self.acknowledged.push(token),
            Err(KvError::Timeout) => self.unknown.push(token),
            Err(e) => panic!("append {token}: {e}"),
        }
    }

    /// Checks the key's final value: every acknowledged token once, in order; every token whose
    /// outcome was unknown at most once; nothing else.
    fn check(&self, value: &str, what: &str) {
        let tokens: Vec<&str> = value.split(';').filter(|t| !t.is_empty()).collect();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for t in &tokens {
            *seen.entry(t).or_default() += 1;
        }
        for t in &self.acknowledged {
            assert_eq!(
                seen.get(t.as_str()),
                Some(&1),
                "{what}: acknowledged {t} must appear once in {value}"
            );
        }
        for t in &self.unknown {
            assert!(
                seen.get(t.as_str()).copied().unwrap_or(0) <= 1,
                "{what}: {t} applied twice"
            );
        }
        let known: Vec<&str> = tokens
            .iter()
            .copied()
            .filter(|t| self.acknowledged.iter().any(|a| a == t))
            .collect();
        let expected: Vec<&str> = self.acknowledged.iter().map(String::as_str).collect();
        assert_eq!(
            known, expected,
            "{what}: acknowledged appends in the order they were made"
        );
        assert!(
            tokens.iter().all(|t| self
                .acknowledged
                .iter()
                .chain(&self.unknown)
                .any(|a| a == t)),
            "{what}: {value} holds a token nobody appended"
        );
    }
}

/// Appends on `n` processes while the leader is killed (and, with `victims` > 1, others with it)
/// and restarted, `rounds` times; then checks that nothing acknowledged was lost and that every
/// node, restarted ones included, converges on the same applied state.
fn leader_kills(n: usize, victims: usize, rounds: usize) {
    let mut cluster = ProcessCluster::loopback(n, "index");
    cluster.start_all();
    let mut client = cluster.client(OP_TIMEOUT);
    let mut appends = Appends::default();
    client.put("x", "").expect("first put");
    for round in 0..rounds {
        for k in 0..30 {
            appends.append(&mut client, "x", format!("r{round}a{k}"));
        }
        let leader = cluster.leader(PATIENCE).expect("a leader");
        let dead: Vec<usize> = (0..victims).map(|v| (leader + v) % n).collect();
        for &i in &dead {
            cluster.kill(i);
        }
        for k in 0..30 {
            appends.append(&mut client, "x", format!("r{round}b{k}"));
        }
        for &i in &dead {
            cluster.start(i);
        }
    }
    assert!(
        appends.acknowledged.len() >= rounds * 30,
        "most appends were acknowledged: {} of {}",
        appends.acknowledged.len(),
        rounds * 60
    );
    let value = client.get("x").expect("final read");
    appends.check(&value, &format!("{n} processes"));
    // Every node, the restarted ones included, applies everything the leader applied.
    let leader = cluster.leader(PATIENCE).expect("a leader");
    let target = cluster.status(leader).expect("leader status").last_applied;
    let until = std::time::Instant::now() + PATIENCE;
    for i in 0..n {
        while cluster.status(i).is_none_or(|s| s.last_applied < target) {
            assert!(
                std::time::Instant::now() < until,
                "node {i} did not catch up: {:?}",
                cluster.status(i)
            );
            std::thread::sleep(Duration::from_millis(20)); // polling its status
        }
    }
}

#[test]
fn three_processes_lose_nothing_when_the_leader_is_killed() {
    leader_kills(3, 1, 3);
}

#[test]
fn five_processes_lose_nothing_when_the_leader_and_another_are_killed() {
    leader_kills(5, 2, 2);
}

#[test]
fn a_node_refuses_a_data_directory_of_another_node() {
    let mut cluster = ProcessCluster::loopback(3, "index");
    cluster.start_all();
    let mut client = cluster.client(OP_TIMEOUT);
    client.put("k", "v").expect("put");
    cluster.kill(1);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zeroraft"))
        .args([
            "serve",
            "--insecure",
            "--id",
            "2",
            "--peers",
            "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3",
        ])
        .args(["--listen", "127.0.0.1:0", "--data"])
        .arg(cluster.data(1))
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot use the data directory"), "{stderr}");
}
