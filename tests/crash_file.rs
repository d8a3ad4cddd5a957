//! Crash safety of the write-ahead log, by crashing: a child process runs a three-node cluster
//! on file storage under client load and reports, line by line, every entry it saw committed;
//! the parent kills it with SIGKILL at a random moment, then checks the three data directories:
//!
//! - every entry ever reported committed is held, with the same index, term and command, by a
//!   majority of the recovered logs (a committed entry is durable on a majority);
//! - the recovered logs agree (log matching: where two hold the same term at an index, they hold
//!   the same entries up to it), and no log holds an entry of a term above its node's term;
//! - a restarted cluster re-applies from index 1 exactly what was reported before (the child
//!   reports a checksum of what it re-applied up to the highest index the parent knows, then a
//!   line per new entry).
//!
//! Then it starts the child again on the same directories, and so on:
//! `ZERORAFT_CRASH_ROUNDS` rounds (default 25; `ZERORAFT_CRASH_ROUNDS=100` for a long run).
//!
//! This test has its own `main` (`harness = false`): the same binary is the child when
//! `ZERORAFT_CRASH_CHILD` names a data directory.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use zeroraft::engine::storage::{Entry, FileStorage, Identity, Storage, WalOptions};
use zeroraft::{ApplyMsg, Config, Network, NetworkConfig, Raft, StartError};

const NODES: usize = 3;
const CLUSTER: u64 = 0x7e57;
const CHILD_ENV: &str = "ZERORAFT_CRASH_CHILD";
/// The highest index the parent knows committed, for the child.
const KNOWN_ENV: &str = "ZERORAFT_CRASH_KNOWN";

fn main() {
    match std::env::var_os(CHILD_ENV) {
        Some(dir) => {
            let known = std::env::var(KNOWN_ENV)
                .ok()
                .and_then(|k| k.parse().ok())
                .unwrap_or(0);
            child(Path::new(&dir), known)
        }
        None => parent(),
    }
}

/// The checksum of entries `1..=k`, fed one at a time in index order.
fn checksum(crc: u32, index: u64, term: u64, command: &[u8]) -> u32 {
    let crc = crc32c::crc32c_append(crc, &index.to_le_bytes());
    let crc = crc32c::crc32c_append(crc, &term.to_le_bytes());
    crc32c::crc32c_append(crc, command)
}

fn identity(node: usize) -> Identity {
    Identity {
        cluster: CLUSTER,
        node: node as u64,
    }
}

fn node_dir(dir: &Path, node: usize) -> PathBuf {
    dir.join(format!("node-{node}"))
}

// ---- the child: a cluster under load, reporting commits ----------------------------------------

/// Runs until killed: three nodes on file storage and a client proposing. On stdout, once the
/// first node has applied index `known` again: `verified <known> <checksum of 1..=known>`; then
/// a line `index term command` for every later index, the first time a node applies it.
fn child(dir: &Path, known: u64) {
    let ms = Duration::from_millis;
    let config = Config {
        heartbeat_interval: ms(10),
        election_timeout_min: ms(50),
        election_timeout_max: ms(100),
        ..Config::default()
    };
    let network = Network::new(NetworkConfig::new(NODES)).expect("a network");
    let (tx, rx) = crossbeam_channel::unbounded();
    let nodes: Vec<Raft> = (0..NODES)
        .map(|i| {
            let options = WalOptions {
                create: true,
                // Small segments, so that crashes also land around rotations.
                segment_size: 256 << 10,
            };
            let storage = FileStorage::open(node_dir(dir, i), identity(i), options)
                .unwrap_or_else(|e| panic!("node {i}: {e}"));
            let endpoint = network.endpoint(i, i as u64).expect("id");
            Raft::builder(config.clone(), i, NODES, endpoint)
                .storage(storage)
                .start(tx.clone())
                .unwrap_or_else(|e| panic!("node {i}: {e}"))
        })
        .collect();
    for i in 0..NODES {
        network.connect(i);
    }
    // Commands are unique across incarnations of the child: its pid and a sequence number.
    let pid = std::process::id();
    std::thread::spawn(move || {
        let mut seq = 0u64;
        let mut leader = 0;
        loop {
            for _ in 0..16 {
                let command = Bytes::from(format!("p{pid}-{seq}"));
                match nodes[leader].try_start(command) {
                    Ok(_) => seq += 1,
                    Err(StartError::NotLeader { leader: hint, .. }) => {
                        leader = hint.unwrap_or((leader + 1) % NODES);
                        std::thread::sleep(Duration::from_millis(5));
                        break;
                    }
                    Err(e) => panic!("proposing: {e}"),
                }
            }
            // A moderate load, some thousands of entries a second, so that the log, which every
            // restart applies again, stays small enough for a hundred rounds.
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    let mut out = std::io::stdout().lock();
    let mut reported = 0;
    let mut crc = 0;
    if known == 0 {
        writeln!(out, "verified 0 0").expect("stdout");
    }
    while let Ok(m) = rx.recv() {
        // The nodes never compact their logs: only commands are applied.
        let ApplyMsg::Command {
            index,
            term,
            command,
        } = m
        else {
            panic!("a snapshot from nodes that take none");
        };
        if index <= reported {
            continue; // another node got there first
        }
        reported = index;
        if index <= known {
            crc = checksum(crc, index, term, &command);
            if index == known {
                writeln!(out, "verified {known} {crc}").expect("stdout");
            }
        } else {
            let command = std::str::from_utf8(&command).expect("ascii commands");
            writeln!(out, "{index} {term} {command}").expect("stdout");
        }
        if rx.is_empty() {
            out.flush().expect("stdout");
        }
    }
}

// ---- the parent: kill, recover, check ------------------------------------------------------------

/// An entry as reported by the child or recovered from a log.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    term: u64,
    command: String,
}

fn parent() {
    let rounds: usize = std::env::var("ZERORAFT_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(25);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let exe = std::env::current_exe().expect("this test's binary");
    let mut committed: BTreeMap<u64, Seen> = BTreeMap::new();
    let started = Instant::now();
    let mut rounds_with_progress = 0;
    let mut verified_rounds = 0;
    for round in 1..=rounds {
        let before = committed.len();
        let known = committed.len() as u64;
        let lines = run_child_until_killed(&exe, dir.path(), round, known);
        for line in lines {
            if let Some(rest) = line.strip_prefix("verified ") {
                let (k, crc) = rest.split_once(' ').expect("verified K CRC");
                assert_eq!(k.parse::<u64>().ok(), Some(known), "round {round}: {line}");
                let want = committed.iter().fold(0, |crc, (&i, e)| {
                    checksum(crc, i, e.term, e.command.as_bytes())
                });
                assert_eq!(
                    crc.parse::<u32>().ok(),
                    Some(want),
                    "round {round}: the restarted cluster applied something else at indices 1..={known}"
                );
                verified_rounds += 1;
                continue;
            }
            let (index, seen) = parse(&line);
            assert!(
                index > known,
                "round {round}: index {index} reported again after verification"
            );
            assert_eq!(
                index,
                committed.len() as u64 + 1,
                "round {round}: indices are reported in order"
            );
            match committed.get(&index) {
                Some(earlier) => assert_eq!(
                    earlier, &seen,
                    "round {round}: index {index} was reported committed as {earlier:?}, now {seen:?}"
                ),
                None => {
                    committed.insert(index, seen);
                }
            }
        }
        check_directories(dir.path(), &committed, round);
        if committed.len() > before {
            rounds_with_progress += 1;
        }
    }
    // Kill times are random, some before the first election: most rounds must still commit.
    assert!(
        rounds_with_progress * 2 >= rounds,
        "only {rounds_with_progress} of {rounds} rounds committed anything"
    );
    println!(
        "crash_file: {rounds} SIGKILLs in {:.1} s; {} entries reported committed, all recovered; \
         {rounds_with_progress} rounds committed new entries, {verified_rounds} re-applied the \
         whole known log and matched it",
        started.elapsed().as_secs_f64(),
        committed.len()
    );
}

/// Starts the child on `dir`, kills it with SIGKILL after a random 20 to 800 ms, and returns
/// the complete lines it printed.
fn run_child_until_killed(exe: &Path, dir: &Path, round: usize, known: u64) -> Vec<String> {
    let mut child = Command::new(exe)
        .env(CHILD_ENV, dir)
        .env(KNOWN_ENV, known.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the child process");
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        // Only whole lines: the last one may be cut short by the kill.
        let mut stdout = BufReader::new(stdout);
        let mut line = Vec::new();
        while matches!(stdout.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            if line.pop() != Some(b'\n') {
                break;
            }
            let _ = tx.send(String::from_utf8(std::mem::take(&mut line)).expect("ascii"));
        }
    });
    std::thread::sleep(Duration::from_millis(fastrand::u64(20..800)));
    child.kill().expect("SIGKILL"); // std sends SIGKILL on Unix
    let status = child.wait().expect("the child's exit");
    assert!(
        !status.success(),
        "round {round}: the child ended by itself ({status}) instead of being killed"
    );
    reader.join().expect("the reader thread");
    rx.try_iter().collect()
}

fn try_parse(line: &str) -> Option<(u64, Seen)> {
    let mut parts = line.split(' ');
    let index = parts.next()?.parse().ok()?;
    let term = parts.next()?.parse().ok()?;
    let command = parts.next()?;
    Some((
        index,
        Seen {
            term,
            command: command.to_owned(),
        },
    ))
}

fn parse(line: &str) -> (u64, Seen) {
    try_parse(line).unwrap_or_else(|| panic!("a malformed line from the child: {line:?}"))
}

/// Recovers the three logs and checks them against each other and against what was reported.
fn check_directories(dir: &Path, committed: &BTreeMap<u64, Seen>, round: usize) {
    let mut logs: Vec<Vec<Entry>> = Vec::new();
    for i in 0..NODES {
        let path = node_dir(dir, i);
        if !path.exists() {
            logs.push(Vec::new()); // killed before the node created its directory
            continue;
        }
        let mut storage = FileStorage::open(&path, identity(i), WalOptions::default())
            .unwrap_or_else(|e| panic!("round {round}: node {i} does not recover: {e}"));
        let recovered = storage
            .recover()
            .unwrap_or_else(|e| panic!("round {round}: node {i}: {e}"));
        if let Some(last) = recovered.entries.last() {
            assert!(
                last.term <= recovered.hard_state.term,
                "round {round}: node {i} holds an entry of term {} above its term {}",
                last.term,
                recovered.hard_state.term
            );
        }
        logs.push(recovered.entries);
    }
    for (&index, seen) in committed {
        let holders = logs
            .iter()
            .filter(|log| {
                log.get(index as usize - 1).is_some_and(|e| {
                    e.term == seen.term && e.command[..] == *seen.command.as_bytes()
                })
            })
            .count();
        assert!(
            holders * 2 > NODES,
            "round {round}: committed index {index} ({seen:?}) survives on {holders} of {NODES} nodes"
        );
    }
    for a in 0..NODES {
        for b in a + 1..NODES {
            let (x, y) = (&logs[a], &logs[b]);
            let shared = x.len().min(y.len());
            if let Some(last_same) = (0..shared).rev().find(|&k| x[k].term == y[k].term) {
                assert!(
                    x[..=last_same] == y[..=last_same],
                    "round {round}: nodes {a} and {b} hold term {} at index {} but differ before it",
                    x[last_same].term,
                    last_same + 1
                );
            }
        }
    }
}
