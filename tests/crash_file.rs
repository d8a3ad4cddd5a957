//! Crash safety of the write-ahead log, by crashing: a child process runs a three-node cluster
//! on file storage under client load and reports, line by line, every entry it saw committed;
//! the parent kills it with SIGKILL at a random moment, then checks the three data directories:
//!
//! - every entry ever reported committed is held, with the same index, term and command, by a
//!   majority of the recovered nodes, in their log or in their snapshot (the services snapshot
//!   what they applied every 2000 entries, so logs are compacted and segments removed);
//! - the recovered logs agree (log matching: where two hold the same term at an index, they hold
//!   the same entries up to it), and no log holds an entry of a term above its node's term;
//! - a restarted cluster re-applies from index 1 exactly what was reported before (the child
//!   reports a checksum of what it re-applied up to the highest index the parent knows, then a
//!   line per new entry).
//!
//! Then it starts the child again on the same directories, and so on:
//! 25 rounds by default, 100 with `ZERORAFT_LONG=1` (`ZERORAFT_CRASH_ROUNDS=N` sets it).
//!
//! This test has its own `main` (`harness = false`): the same binary is the child when
//! `ZERORAFT_CRASH_CHILD` names a data directory.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use zeroraft::engine::storage::{FileStorage, Identity, Storage, WalOptions};
use zeroraft::{ApplyMsg, Config, Network, NetworkConfig, Raft, StartError};
use zeroraft_harness::scale;

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

/// Each node's service snapshots its state every this many applied entries: the log is
/// compacted, and the WAL's snapshot files and segment removal are crashed into too.
const SNAPSHOT_EVERY: u64 = 2000;

/// Encodes a service's state, every entry it applied, as a snapshot.
fn encode(log: &[(u64, Bytes)]) -> Bytes {
    let mut data = Vec::with_capacity(8 + log.len() * 24);
    data.extend_from_slice(&(log.len() as u64).to_le_bytes());
    for (term, command) in log {
        data.extend_from_slice(&term.to_le_bytes());
        data.extend_from_slice(&(command.len() as u32).to_le_bytes());
        data.extend_from_slice(command);
    }
    Bytes::from(data)
}

/// Decodes what [`encode`] made.
fn decode(data: &Bytes) -> Vec<(u64, Bytes)> {
    let count = u64::from_le_bytes(data[..8].try_into().expect("a count"));
    let mut log = Vec::with_capacity(count as usize);
    let mut at = 8;
    for _ in 0..count {
        let term = u64::from_le_bytes(data[at..at + 8].try_into().expect("a term"));
        let len = u32::from_le_bytes(data[at + 8..at + 12].try_into().expect("a length")) as usize;
        log.push((term, data.slice(at + 12..at + 12 + len)));
        at += 12 + len;
    }
    assert_eq!(at, data.len(), "a snapshot with trailing bytes");
    log
}

/// What the child prints, shared by the nodes' services: each index once, in order.
struct Reporter {
    out: std::io::Stdout,
    /// The highest index reported (or counted into the checksum).
    reported: u64,
    /// The highest index the parent already knows.
    known: u64,
    /// The checksum of entries `1..=reported`, while `reported <= known`.
    crc: u32,
}

impl Reporter {
    fn report(&mut self, index: u64, term: u64, command: &[u8]) {
        if index <= self.reported {
            return; // another node got there first
        }
        assert_eq!(index, self.reported + 1, "applied indices have no gaps");
        self.reported = index;
        let mut out = self.out.lock();
        if index <= self.known {
            self.crc = checksum(self.crc, index, term, command);
            if index == self.known {
                writeln!(out, "verified {} {}", self.known, self.crc).expect("stdout");
            }
        } else {
            let command = std::str::from_utf8(command).expect("ascii commands");
            writeln!(out, "{index} {term} {command}").expect("stdout");
        }
        out.flush().expect("stdout");
    }
}

/// Runs until killed: three nodes on file storage and a client proposing. Each node's service
/// keeps what it applied and snapshots it every [`SNAPSHOT_EVERY`] entries. On stdout, once a
/// node has applied index `known` again (from its snapshot and its log): `verified <known>
/// <checksum of 1..=known>`; then a line `index term command` for every later index, the first
/// time a node applies it.
fn child(dir: &Path, known: u64) {
    let ms = Duration::from_millis;
    let config = Config {
        heartbeat_interval: ms(10),
        election_timeout_min: ms(50),
        election_timeout_max: ms(100),
        ..Config::default()
    };
    let network = Network::new(NetworkConfig::new(NODES)).expect("a network");
    let reporter = Arc::new(Mutex::new(Reporter {
        out: std::io::stdout(),
        reported: 0,
        known,
        crc: 0,
    }));
    if known == 0 {
        println!("verified 0 0");
    }
    let nodes: Vec<Raft> = (0..NODES)
        .map(|i| {
            let options = WalOptions {
                create: true,
                // Small segments, so that crashes also land around rotations and removals.
                segment_size: 64 << 10,
                ..WalOptions::default()
            };
            let storage = FileStorage::open(node_dir(dir, i), identity(i), options)
                .unwrap_or_else(|e| panic!("node {i}: {e}"));
            let endpoint = network.endpoint(i, i as u64).expect("id");
            let (tx, rx) = crossbeam_channel::unbounded();
            let raft = Raft::builder(config.clone(), i, NODES, endpoint)
                .storage(storage)
                .start(tx)
                .unwrap_or_else(|e| panic!("node {i}: {e}"));
            let (service, reporter) = (raft.clone(), reporter.clone());
            std::thread::spawn(move || serve(&service, &rx, &reporter));
            raft
        })
        .collect();
    for i in 0..NODES {
        network.connect(i);
    }
    // Commands are unique across incarnations of the child: its pid and a sequence number.
    let pid = std::process::id();
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
        // A moderate load, some thousands of entries a second.
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// One node's service: applies commands and snapshots into its log of applied entries, reports
/// them, and snapshots every [`SNAPSHOT_EVERY`] entries.
fn serve(raft: &Raft, applied: &crossbeam_channel::Receiver<ApplyMsg>, reporter: &Mutex<Reporter>) {
    let mut log: Vec<(u64, Bytes)> = Vec::new();
    while let Ok(m) = applied.recv() {
        match m {
            ApplyMsg::Command {
                index,
                term,
                command,
            } => {
                assert_eq!(index, log.len() as u64 + 1, "node {}: in order", raft.id());
                reporter
                    .lock()
                    .expect("reporter")
                    .report(index, term, &command);
                log.push((term, command));
                if index % SNAPSHOT_EVERY == 0 {
                    raft.snapshot(index, encode(&log));
                }
            }
            ApplyMsg::Snapshot { index, data, .. } => {
                log = decode(&data);
                assert_eq!(log.len() as u64, index, "node {}: snapshot", raft.id());
                let mut reporter = reporter.lock().expect("reporter");
                for (at, (term, command)) in (1..).zip(&log) {
                    reporter.report(at, *term, command);
                }
            }
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
    let rounds = scale::size("ZERORAFT_CRASH_ROUNDS", 25, 100) as usize;
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
    let (snapshots, segments) = files_left(dir.path());
    println!(
        "crash_file: {rounds} SIGKILLs in {:.1} s; {} entries reported committed, all recovered; \
         {rounds_with_progress} rounds committed new entries, {verified_rounds} re-applied the \
         whole known log and matched it; left on disk: {snapshots} snapshot files, {segments} \
         log segments",
        started.elapsed().as_secs_f64(),
        committed.len()
    );
    assert!(
        committed.len() as u64 <= 2 * SNAPSHOT_EVERY || snapshots > 0,
        "the services took snapshots"
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

/// The snapshot files and log segments in the nodes' directories.
fn files_left(dir: &Path) -> (usize, usize) {
    let mut counts = (0, 0);
    for i in 0..NODES {
        let Ok(entries) = std::fs::read_dir(node_dir(dir, i)) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            match entry.path().extension().and_then(|x| x.to_str()) {
                Some("snap") => counts.0 += 1,
                Some("wal") => counts.1 += 1,
                _ => {}
            }
        }
    }
    counts
}

/// Recovers the three nodes and checks them against each other and against what was reported.
fn check_directories(dir: &Path, committed: &BTreeMap<u64, Seen>, round: usize) {
    // Each node's whole log: what its snapshot holds, then its log's entries.
    let mut logs: Vec<Vec<(u64, Bytes)>> = Vec::new();
    for i in 0..NODES {
        let path = node_dir(dir, i);
        if !path.join("IDENTITY").exists() {
            // Killed before the node created its directory, or before it wrote its identity
            // (then nothing else is in it either).
            logs.push(Vec::new());
            continue;
        }
        let mut storage = FileStorage::open(&path, identity(i), WalOptions::default())
            .unwrap_or_else(|e| panic!("round {round}: node {i} does not recover: {e}"));
        let recovered = storage
            .recover()
            .unwrap_or_else(|e| panic!("round {round}: node {i}: {e}"));
        let mut log = match &recovered.snapshot {
            Some(snapshot) => {
                let log = decode(&snapshot.data);
                assert_eq!(
                    log.len() as u64,
                    snapshot.index,
                    "round {round}: node {i}'s snapshot covers its index"
                );
                assert_eq!(
                    log.last().map(|(term, _)| *term),
                    Some(snapshot.term),
                    "round {round}: node {i}'s snapshot ends in its term"
                );
                log
            }
            None => Vec::new(),
        };
        log.extend(
            recovered
                .entries
                .iter()
                .map(|e| (e.term, e.command.clone())),
        );
        if let Some((last_term, _)) = log.last() {
            assert!(
                *last_term <= recovered.hard_state.term,
                "round {round}: node {i} holds an entry of term {last_term} above its term {}",
                recovered.hard_state.term
            );
        }
        logs.push(log);
    }
    for (&index, seen) in committed {
        let holders = logs
            .iter()
            .filter(|log| {
                log.get(index as usize - 1).is_some_and(|(term, command)| {
                    *term == seen.term && command[..] == *seen.command.as_bytes()
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
            if let Some(last_same) = (0..shared).rev().find(|&k| x[k].0 == y[k].0) {
                assert!(
                    x[..=last_same] == y[..=last_same],
                    "round {round}: nodes {a} and {b} hold term {} at index {} but differ before it",
                    x[last_same].0,
                    last_same + 1
                );
            }
        }
    }
}
