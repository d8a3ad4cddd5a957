//! A Jepsen-style test of the key-value service: `zeroraft serve` processes, each in a network
//! namespace of its own with a veth link to every other node and one to the test, several
//! concurrent clients on a few keys, and a nemesis that kills nodes with SIGKILL, restarts them
//! from their data directories, and partitions them by taking links down (clients still reach
//! every node, so a cut-off node keeps being asked). The history of invocations and completions
//! is checked for linearizability ([`zeroraft_harness::linearizability::check_kv`]).
//!
//! One variant's nemesis also changes the members as an operator would with `zeroraft admin`:
//! it replaces voters by new nodes under fresh ids in spare namespaces, grows three voters to
//! five and shrinks them back, and checks at the end that the cluster's voters are those it
//! made.
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
//! `ZERORAFT_JEPSEN_SECONDS=60 ZERORAFT_JEPSEN_RUNS=20 cargo test --release --test system linearizability -- --nocapture`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::support::netns::Topology;
use crate::support::processes::ProcessCluster;
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
    faults: Faults,
}

/// What the nemesis did in one run.
#[derive(Default)]
struct Faults {
    kills: u64,
    partitions: u64,
    /// Voters replaced: a new node added, caught up and promoted, then the old one removed.
    replaced: u64,
    /// Times the cluster grew from three voters to five.
    grown: u64,
    /// Times it shrank from five voters to three.
    shrunk: u64,
    /// Of the replacements, those during which another voter was down or cut off.
    replaced_under_fault: u64,
}

impl Faults {
    /// Membership changes made.
    fn changes(&self) -> u64 {
        self.replaced + self.grown + self.shrunk
    }
}

/// Where clients find the nodes: each node's client address by id (a node's id is its index;
/// the nemesis adds the addresses of the nodes it adds) and the ids of the members that run,
/// published anew after each change. A client picks a new version up between two operations.
/// The clients thus learn the new nodes' addresses from the test, which knows where it started
/// them, not from the cluster.
#[derive(Default)]
struct Directory {
    version: std::sync::atomic::AtomicU64,
    table: std::sync::Mutex<(Vec<SocketAddr>, Vec<usize>)>,
}

impl Directory {
    fn publish(&self, addrs: Vec<SocketAddr>, members: Vec<usize>) {
        *self.table.lock().unwrap() = (addrs, members);
        self.version.fetch_add(1, Relaxed);
    }

    fn read(&self) -> (u64, Vec<SocketAddr>, Vec<usize>) {
        let table = self.table.lock().unwrap();
        // The version read under the lock is that of the table or an older one: at worst the
        // client reads the table again.
        let version = self.version.load(Relaxed);
        (version, table.0.clone(), table.1.clone())
    }
}

/// How long one membership step may take, retries included, before the run fails.
const CHANGE_PATIENCE: Duration = Duration::from_secs(60);

/// The nemesis's view of the members: the voters by id, and which namespace each node runs in.
struct Members<'a> {
    cluster: &'a mut ProcessCluster,
    topology: &'a Topology,
    directory: &'a Directory,
    /// The voters, by id.
    voters: Vec<usize>,
    /// `ns[id]`: the namespace node `id` runs (or ran) in.
    ns: Vec<usize>,
    /// Namespaces where no member runs.
    free: Vec<usize>,
}

impl Members<'_> {
    fn publish(&self) {
        self.directory
            .publish(self.cluster.client_addrs(), self.voters.clone());
    }

    /// Runs `zeroraft admin ARGS` until it succeeds (a change under way, a leader changing, a
    /// learner catching up all pass), for up to [`CHANGE_PATIENCE`].
    fn admin(&self, args: &[&str]) {
        let until = Instant::now() + CHANGE_PATIENCE;
        loop {
            let (status, out, err) = self.cluster.admin(args);
            if status.success() {
                return;
            }
            assert!(
                Instant::now() < until,
                "zeroraft admin {args:?} did not succeed in {CHANGE_PATIENCE:?}: {out}{err}\n{}",
                self.report()
            );
            std::thread::sleep(Duration::from_millis(100)); // the cluster settling
        }
    }

    /// Adds a node in a free namespace as a learner, starts it, and promotes it once it has
    /// caught up. Returns its id.
    fn add_voter(&mut self, rng: &mut fastrand::Rng) -> usize {
        let ns = self.free.swap_remove(rng.usize(0..self.free.len()));
        let id = self.cluster.add_node_in(self.topology, ns);
        self.ns.push(ns);
        let peer = self.cluster.peer_addr(id).to_string();
        let client = self.cluster.client_addrs()[id].to_string();
        self.admin(&[
            "add",
            "--id",
            &id.to_string(),
            "--peer",
            &peer,
            "--client",
            &client,
        ]);
        self.publish();
        self.cluster.join_and_start(id, CHANGE_PATIENCE);
        self.admin(&["promote", &id.to_string()]);
        self.voters.push(id);
        self.publish();
        id
    }

    /// Removes voter `id` and stops its process; its namespace is free again.
    fn remove_voter(&mut self, id: usize) {
        self.admin(&["remove", &id.to_string()]);
        self.voters.retain(|&v| v != id);
        self.publish();
        self.cluster.kill(id);
        self.free.push(self.ns[id]);
    }

    /// A voter to remove: the leader half the time.
    fn pick(&self, rng: &mut fastrand::Rng) -> usize {
        match self.cluster.leader(Duration::from_millis(500)) {
            Some(leader) if rng.bool() && self.voters.contains(&leader) => leader,
            _ => self.voters[rng.usize(0..self.voters.len())],
        }
    }

    /// What each node that ran says of itself now, and the end of its log, for a failure's
    /// message (the nodes' logs go with the run's directory).
    fn report(&self) -> String {
        let mut report = String::new();
        for id in 0..self.cluster.len() {
            // A stopped node's client address may be that of a node now in its namespace.
            let status = self
                .cluster
                .is_running(id)
                .then(|| self.cluster.status(id))
                .flatten()
                .map(|s| {
                    format!(
                        "{:?} term {} leader {:?} commit {} applied {} last {}",
                        s.role, s.term, s.leader, s.commit_index, s.last_applied, s.last_log_index
                    )
                });
            let log = self.cluster.log(id);
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            report += &format!(
                "node {id} in namespace {}, voter {}, running {}: {}\n{}\n",
                self.ns[id],
                self.voters.contains(&id),
                self.cluster.is_running(id),
                status.unwrap_or_else(|| "no answer or stopped".to_owned()),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        report
    }

    /// Checks that the cluster's voters are the nemesis's, with no learner and no joint
    /// configuration, as `zeroraft admin members` prints them at the leader, once its
    /// configuration is committed. (Whether every member caught up is not asked: a node
    /// restarted among members added after it may stay cut off, as
    /// tests/system/membership_restart.rs shows.)
    fn check(&self) {
        let until = Instant::now() + CHANGE_PATIENCE;
        let mut expected: Vec<String> = self.voters.iter().map(|v| format!("{v} voter")).collect();
        expected.sort();
        loop {
            // The leader's view: a member cut off (see tests/system/membership_restart.rs) may not
            // know the leader.
            let (status, out, err) = match self.cluster.leader(Duration::from_secs(1)) {
                Some(leader) => self.cluster.admin_at(leader, &["members"]),
                None => self.cluster.admin(&["members"]),
            };
            let mut seen: Vec<String> = out
                .lines()
                .skip(2)
                .filter(|l| !l.starts_with("removed"))
                .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
                .collect();
            seen.sort();
            let settled = out
                .lines()
                .next()
                .is_some_and(|l| !l.contains("leader unknown") && l.contains("(committed)"));
            if status.success() && settled && seen == expected {
                return;
            }
            assert!(
                Instant::now() < until,
                "the members are not the voters {:?}: {out}{err}\n{}",
                self.voters,
                self.report()
            );
            std::thread::sleep(Duration::from_millis(100)); // the cluster settling
        }
    }
}

/// The nemesis: until `stop`, now and then kills a member (the leader half the time) and
/// restarts it, or cuts links between members and heals them, or (with `changes`) changes the
/// members: replaces a voter (a new node under a fresh id in a free namespace, added as a
/// learner, promoted once caught up, then the old voter removed and stopped; the leader half
/// the time), grows three voters to five or shrinks five to three. A replacement among five
/// voters is made half the time while another voter is killed or cut off. At most a minority
/// of the voters is down or cut off at any time, counting the one being replaced.
fn nemesis(
    members: &mut Members<'_>,
    stop: &AtomicBool,
    rng: &mut fastrand::Rng,
    changes: bool,
) -> Faults {
    let mut faults = Faults::default();
    let pause = |rng: &mut fastrand::Rng, lo: u64, hi: u64| {
        // The nemesis acts at human-scale intervals; the clients keep running meanwhile.
        std::thread::sleep(Duration::from_millis(rng.u64(lo..hi)));
    };
    let all_ns: Vec<usize> = (0..members.topology.len()).collect();
    let mut first = true;
    while !stop.load(Relaxed) {
        pause(rng, 300, 1200);
        // Each run changes its members at least once, first; ids stay below 64.
        let change = changes
            && (first || rng.u32(0..3) == 0)
            && members.cluster.len() + 2 < zeroraft::kv::members::MAX_NODE_ID as usize;
        first = false;
        if change {
            let n = members.voters.len();
            if n == 3 && rng.bool() {
                members.add_voter(rng);
                members.add_voter(rng);
                faults.grown += 1;
            } else if n == 5 && rng.bool() {
                for _ in 0..2 {
                    let old = members.pick(rng);
                    members.remove_voter(old);
                }
                faults.shrunk += 1;
            } else {
                let old = members.pick(rng);
                // Among five voters, another one may be down or cut off meanwhile.
                let held = (n >= 5 && rng.bool()).then(|| {
                    let others: Vec<usize> = members
                        .voters
                        .iter()
                        .copied()
                        .filter(|&v| v != old)
                        .collect();
                    others[rng.usize(0..others.len())]
                });
                let kill = rng.bool();
                if let Some(v) = held {
                    if kill {
                        members.cluster.kill(v);
                        faults.kills += 1;
                    } else {
                        let alone = members.ns[v];
                        let rest: Vec<usize> =
                            all_ns.iter().copied().filter(|&i| i != alone).collect();
                        members.topology.partition(&[rest]);
                        faults.partitions += 1;
                    }
                    faults.replaced_under_fault += 1;
                }
                members.add_voter(rng);
                members.remove_voter(old);
                match held {
                    Some(v) if kill => members.cluster.start(v),
                    Some(_) => members.topology.heal(),
                    None => {}
                }
                faults.replaced += 1;
            }
            continue;
        }
        let voters = members.voters.clone();
        let n = voters.len();
        match rng.u32(0..3) {
            0 => {
                let victim = members.pick(rng);
                members.cluster.kill(victim);
                faults.kills += 1;
                pause(rng, 200, 1500);
                members.cluster.start(victim);
            }
            1 => {
                // One node cut off from the others (the leader half the time).
                let alone = members.ns[members.pick(rng)];
                let rest: Vec<usize> = all_ns.iter().copied().filter(|&i| i != alone).collect();
                members.topology.partition(&[rest]);
                faults.partitions += 1;
                pause(rng, 500, 3000);
                members.topology.heal();
            }
            _ => {
                // A majority and a minority of the voters, at random (free namespaces go with
                // the majority).
                let mut order = voters;
                rng.shuffle(&mut order);
                let minority: Vec<usize> = order[..(n - 1) / 2]
                    .iter()
                    .map(|&v| members.ns[v])
                    .collect();
                let majority: Vec<usize> = all_ns
                    .iter()
                    .copied()
                    .filter(|i| !minority.contains(i))
                    .collect();
                members.topology.partition(&[majority, minority]);
                faults.partitions += 1;
                pause(rng, 500, 3000);
                members.topology.heal();
            }
        }
    }
    members.topology.heal();
    if changes {
        members.check();
    }
    faults
}

/// One client: random Gets, Puts and Appends of unique values on the shared keys until `stop`,
/// each Get starting at a random member, every operation recorded. It reconnects to the nodes
/// of the directory whenever that changes.
fn client(directory: &Directory, id: u64, recorder: &Recorder, stop: &AtomicBool, seed: u64) {
    let options = zeroraft::kv::ClientOptions {
        op_timeout: OP_TIMEOUT,
        attempt_timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let (mut version, addrs, mut members) = directory.read();
    let mut kv = zeroraft::kv::KvClient::new(addrs, options.clone());
    let mut rng = fastrand::Rng::with_seed(seed ^ id);
    let mut n = 0u64;
    while !stop.load(Relaxed) {
        if directory.version.load(Relaxed) != version {
            let addrs;
            (version, addrs, members) = directory.read();
            kv = zeroraft::kv::KvClient::new(addrs, options.clone());
        }
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
                kv.prefer(members[rng.usize(0..members.len())]);
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
/// `read_mode`, and checks the history. With `changes`, the nemesis changes the members too,
/// with three spare namespaces. `None` if namespaces cannot be made here.
fn run(nodes: usize, read_mode: &str, seconds: u64, seed: u64, changes: bool) -> Option<Run> {
    // Room for five voters and one more being added.
    let places = if changes { nodes.max(3) + 3 } else { nodes };
    let topology = match Topology::create(places) {
        Ok(t) => t,
        Err(why) => {
            eprintln!("SKIPPED: cannot make network namespaces ({why}); nothing was checked");
            return None;
        }
    };
    let mut cluster = ProcessCluster::in_namespaces(&topology, nodes, read_mode);
    cluster.start_all();
    let directory = Arc::new(Directory::default());
    directory.publish(cluster.client_addrs(), (0..nodes).collect());
    let recorder = Arc::new(Recorder::new());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (recorder, stop, directory) = (recorder.clone(), stop.clone(), directory.clone());
            std::thread::spawn(move || client(&directory, id, &recorder, &stop, seed))
        })
        .collect();
    let nemesis_stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let faults = std::thread::scope(|s| {
        let nemesis_stop2 = nemesis_stop.clone();
        let timer = s.spawn(move || {
            while Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50)); // the run's clock
            }
            nemesis_stop2.store(true, Relaxed);
        });
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut members = Members {
            cluster: &mut cluster,
            topology: &topology,
            directory: &directory,
            voters: (0..nodes).collect(),
            ns: (0..nodes).collect(),
            free: (nodes..places).collect(),
        };
        let faults = nemesis(&mut members, &nemesis_stop, &mut rng, changes);
        timer.join().expect("timer");
        faults
    });
    // The network healed and every member runs: the clients' last operations can complete.
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
        faults,
    })
}

fn linearizable_under_nemesis(nodes: usize, read_mode: &str, changes: bool) {
    let seconds = scale::size("ZERORAFT_JEPSEN_SECONDS", 8, 60);
    let runs = scale::size("ZERORAFT_JEPSEN_RUNS", 1, 3);
    let base = first_seed();
    for r in 0..runs {
        let seed = base.wrapping_add(r);
        let Some(run) = run(nodes, read_mode, seconds, seed, changes) else {
            return;
        };
        let f = &run.faults;
        eprintln!(
            "{nodes} nodes, reads {read_mode}, seed {seed}, {seconds} s: {} operations ({} completed), {} kills, {} partitions, {} membership changes ({} replaced, {} of them while another voter was down or cut off; {} grown 3 to 5; {} shrunk 5 to 3): {}",
            run.ops,
            run.completed,
            f.kills,
            f.partitions,
            f.changes(),
            f.replaced,
            f.replaced_under_fault,
            f.grown,
            f.shrunk,
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
            f.kills + f.partitions + f.changes() > 0,
            "seed {seed}: the nemesis did nothing"
        );
        assert!(
            !changes || f.changes() > 0,
            "seed {seed}: the nemesis changed no member"
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
    linearizable_under_nemesis(3, "index", false);
}

#[test]
fn five_nodes_with_lease_reads_are_linearizable_under_kills_and_partitions() {
    linearizable_under_nemesis(5, "lease", false);
}

#[test]
fn three_nodes_changing_members_are_linearizable_under_kills_and_partitions() {
    linearizable_under_nemesis(3, "index", true);
}

#[test]
fn reads_from_local_state_are_caught_by_the_checker() {
    // The same test against the broken read path: the checker must find a stale read. Each run
    // is short; a few are allowed, since a run's partitions may all fall where no client read.
    // Every other run, the first included, changes the members too.
    let seed = first_seed();
    for attempt in 0..4 {
        let changes = attempt % 2 == 0;
        let Some(run) = run(3, "unsafe-local", 10, seed.wrapping_add(attempt), changes) else {
            return;
        };
        match run.verdict {
            Verdict::NotLinearizable(anomaly) => {
                eprintln!(
                    "caught on attempt {attempt} (seed {}, membership changes: {changes}):\n{anomaly}",
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
