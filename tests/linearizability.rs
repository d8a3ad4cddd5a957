//! A Jepsen-style test of the key-value service: `zeroraft serve` processes, each in a network
//! namespace of its own with a veth link to every other node and one to the test, several
//! concurrent clients on a few keys, and a nemesis that kills nodes with SIGKILL, restarts them
//! from their data directories, and partitions them by taking links down (clients still reach
//! every node, so a cut-off node keeps being asked). The history of invocations and completions
//! is checked for linearizability ([`zeroraft_harness::linearizability::check_kv`]).
//!
//! A deliberately broken read path (`--read-mode unsafe-local`: a Get answered from any node's
//! local state) must be caught by the same checker, which shows the check can fail.
//!
//! Namespaces need root and the `ip` tool. Where they cannot be made, each test says so on
//! stderr ("SKIPPED: ...") and passes without checking anything.
//!
//! By default each test runs one history of 8 s; with `ZERORAFT_LONG=1`, three of 60 s.
//! `ZERORAFT_JEPSEN_SECONDS`, `ZERORAFT_JEPSEN_RUNS` and `ZERORAFT_JEPSEN_SEED` set them for a
//! one-off run, e.g. twenty runs of a minute:
//! `ZERORAFT_JEPSEN_SECONDS=60 ZERORAFT_JEPSEN_RUNS=20 cargo test --release --test linearizability -- --nocapture`.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use support::netns::Topology;
use support::processes::ProcessCluster;
use zeroraft::kv::KvError;
use zeroraft_harness::linearizability::{KvInput, KvOutput, Recorder, Verdict, check_kv};
use zeroraft_harness::scale;

/// Concurrent clients.
const CLIENTS: u64 = 5;
/// Keys the clients share.
const KEYS: usize = 4;
/// How long one client operation may take before its outcome is unknown.
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the checker may search.
const CHECK_BUDGET: Duration = Duration::from_secs(120);

/// The seed of the first run: `ZERORAFT_JEPSEN_SEED`, or a random one (printed with the run).
fn first_seed() -> u64 {
    let random = fastrand::u64(..);
    scale::size("ZERORAFT_JEPSEN_SEED", random, random)
}

/// What one run recorded.
struct Run {
    verdict: Verdict,
    ops: usize,
    completed: usize,
    kills: u64,
    partitions: u64,
}

/// The nemesis: until `stop`, now and then kills a node (the leader half the time) and restarts
/// it, or cuts links between nodes and heals them. At most a minority is down or cut off at any
/// time, so the cluster can make progress in between.
fn nemesis(
    cluster: &mut ProcessCluster,
    topology: &Topology,
    stop: &AtomicBool,
    rng: &mut fastrand::Rng,
) -> (u64, u64) {
    let n = cluster.len();
    let (mut kills, mut partitions) = (0, 0);
    let pause = |rng: &mut fastrand::Rng, lo: u64, hi: u64| {
        // The nemesis acts at human-scale intervals; the clients keep running meanwhile.
        std::thread::sleep(Duration::from_millis(rng.u64(lo..hi)));
    };
    while !stop.load(Relaxed) {
        pause(rng, 300, 1200);
        match rng.u32(0..3) {
            0 => {
                let victim = match cluster.leader(Duration::from_millis(500)) {
                    Some(leader) if rng.bool() => leader,
                    _ => rng.usize(0..n),
                };
                cluster.kill(victim);
                kills += 1;
                pause(rng, 200, 1500);
                cluster.start(victim);
            }
            1 => {
                // One node cut off from the others (the leader half the time).
                let alone = match cluster.leader(Duration::from_millis(500)) {
                    Some(leader) if rng.bool() => leader,
                    _ => rng.usize(0..n),
                };
                let rest: Vec<usize> = (0..n).filter(|&i| i != alone).collect();
                topology.partition(&[rest]);
                partitions += 1;
                pause(rng, 500, 3000);
                topology.heal();
            }
            _ => {
                // A majority and a minority, at random.
                let mut order: Vec<usize> = (0..n).collect();
                rng.shuffle(&mut order);
                let (minority, majority) = order.split_at((n - 1) / 2);
                topology.partition(&[majority.to_vec(), minority.to_vec()]);
                partitions += 1;
                pause(rng, 500, 3000);
                topology.heal();
            }
        }
    }
    topology.heal();
    (kills, partitions)
}

/// One client: random Gets, Puts and Appends of unique values on the shared keys until `stop`,
/// each Get starting at a random node, every operation recorded.
fn client(
    cluster_addrs: Vec<std::net::SocketAddr>,
    id: u64,
    recorder: &Recorder,
    stop: &AtomicBool,
    seed: u64,
) {
    let options = zeroraft::kv::ClientOptions {
        op_timeout: OP_TIMEOUT,
        attempt_timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let nodes = cluster_addrs.len();
    let mut kv = zeroraft::kv::KvClient::new(cluster_addrs, options);
    let mut rng = fastrand::Rng::with_seed(seed ^ id);
    let mut n = 0u64;
    while !stop.load(Relaxed) {
        n += 1;
        let key = format!("k{}", rng.usize(0..KEYS));
        let value = format!("c{id}.{n}");
        let input = match rng.u32(0..10) {
            0..5 => KvInput::Get { key },
            5..8 => KvInput::Put { key, value },
            _ => KvInput::Append {
                key,
                value: format!("{value};"),
            },
        };
        let op = recorder.invoke(id, input.clone());
        let result = match &input {
            KvInput::Get { key } => {
                kv.prefer(rng.usize(0..nodes));
                kv.get(key).map(KvOutput::Value)
            }
            KvInput::Put { key, value } => kv.put(key, value).map(|()| KvOutput::Done),
            KvInput::Append { key, value } => kv.append(key, value).map(|()| KvOutput::Done),
        };
        match result {
            Ok(output) => recorder.complete(op, output),
            Err(KvError::Timeout) => recorder.unknown(op),
            Err(e) => panic!("client {id}: {e}"),
        }
    }
}

/// Runs `seconds` of clients and nemesis against `nodes` processes answering Gets with
/// `read_mode`, and checks the history. `None` if namespaces cannot be made here.
fn run(nodes: usize, read_mode: &str, seconds: u64, seed: u64) -> Option<Run> {
    let topology = match Topology::create(nodes) {
        Ok(t) => t,
        Err(why) => {
            eprintln!("SKIPPED: cannot make network namespaces ({why}); nothing was checked");
            return None;
        }
    };
    let mut cluster = ProcessCluster::in_namespaces(&topology, nodes, read_mode);
    cluster.start_all();
    let recorder = Arc::new(Recorder::new());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (recorder, stop, addrs) = (recorder.clone(), stop.clone(), cluster.client_addrs());
            std::thread::spawn(move || client(addrs, id, &recorder, &stop, seed))
        })
        .collect();
    let nemesis_stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (kills, partitions) = std::thread::scope(|s| {
        let nemesis_stop2 = nemesis_stop.clone();
        let timer = s.spawn(move || {
            while Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50)); // the run's clock
            }
            nemesis_stop2.store(true, Relaxed);
        });
        let mut rng = fastrand::Rng::with_seed(seed);
        let counts = nemesis(&mut cluster, &topology, &nemesis_stop, &mut rng);
        timer.join().expect("timer");
        counts
    });
    // The network healed and every node runs: the clients' last operations can complete.
    std::thread::sleep(Duration::from_millis(500)); // let the last operations land on a whole cluster
    stop.store(true, Relaxed);
    for c in clients {
        c.join().expect("client thread");
    }
    drop(cluster);
    drop(topology);
    let history = Arc::try_unwrap(recorder)
        .ok()
        .expect("clients are done")
        .into_history();
    let completed = history
        .iter()
        .filter(|op| {
            matches!(
                op.outcome,
                zeroraft_harness::linearizability::Outcome::Returned { .. }
            )
        })
        .count();
    let verdict = check_kv(&history, CHECK_BUDGET);
    Some(Run {
        verdict,
        ops: history.len(),
        completed,
        kills,
        partitions,
    })
}

fn linearizable_under_nemesis(nodes: usize, read_mode: &str) {
    let seconds = scale::size("ZERORAFT_JEPSEN_SECONDS", 8, 60);
    let runs = scale::size("ZERORAFT_JEPSEN_RUNS", 1, 3);
    let base = first_seed();
    for r in 0..runs {
        let seed = base.wrapping_add(r);
        let Some(run) = run(nodes, read_mode, seconds, seed) else {
            return;
        };
        eprintln!(
            "{nodes} nodes, reads {read_mode}, seed {seed}, {seconds} s: {} operations ({} completed), {} kills, {} partitions: {:?}",
            run.ops,
            run.completed,
            run.kills,
            run.partitions,
            match &run.verdict {
                Verdict::Linearizable => "linearizable".to_owned(),
                Verdict::NotLinearizable(a) => format!("NOT linearizable\n{a}"),
                Verdict::Unknown => "unknown: the checker ran out of time".to_owned(),
            }
        );
        assert!(
            run.completed >= 50,
            "seed {seed}: only {} operations completed",
            run.completed
        );
        assert!(
            run.kills + run.partitions > 0,
            "seed {seed}: the nemesis did nothing"
        );
        match run.verdict {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable(anomaly) => {
                panic!("seed {seed}: not linearizable:\n{anomaly}")
            }
            Verdict::Unknown => {
                panic!("seed {seed}: the checker could not decide in {CHECK_BUDGET:?}")
            }
        }
    }
}

#[test]
fn three_nodes_with_read_index_are_linearizable_under_kills_and_partitions() {
    linearizable_under_nemesis(3, "index");
}

#[test]
fn five_nodes_with_lease_reads_are_linearizable_under_kills_and_partitions() {
    linearizable_under_nemesis(5, "lease");
}

#[test]
fn reads_from_local_state_are_caught_by_the_checker() {
    // The same test against the broken read path: the checker must find a stale read. Each run
    // is short; a few are allowed, since a run's partitions may all fall where no client read.
    let seed = first_seed();
    for attempt in 0..4 {
        let Some(run) = run(3, "unsafe-local", 10, seed.wrapping_add(attempt)) else {
            return;
        };
        match run.verdict {
            Verdict::NotLinearizable(anomaly) => {
                eprintln!(
                    "caught on attempt {attempt} (seed {}):\n{anomaly}",
                    seed.wrapping_add(attempt)
                );
                return;
            }
            other => eprintln!("attempt {attempt}: {other:?}"),
        }
    }
    panic!(
        "four runs with reads from local state, and the checker found no stale read (seed {seed})"
    );
}
