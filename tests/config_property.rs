//! Properties of construction under any settings: for random `Config` and `NetworkConfig` values,
//! many of them hostile (zero, one, just past a limit, the type's maximum), building a node or a
//! network returns `Ok` or an error, never a panic or an abort; and whatever is accepted runs a
//! cluster for a second under a client proposing as fast as it can, with bounded memory, commits
//! a proposal when its election timeouts allow one within the test, and stops when killed.
//!
//! Each case runs under a watchdog that ends the process with the case's settings if it hangs.
//! The two properties share one lock so that each measures the memory of its own clusters only.
//! Each property runs 12 cases by default, 96 with `ZERORAFT_LONG=1`
//! (`ZERORAFT_PROPERTY_CASES=N` sets it).

use std::cell::Cell;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
use zeroraft::transport::{MAX_INBOX_CAPACITY, MAX_NODES};
use zeroraft::{Compaction, Config, Network, NetworkConfig, Raft, StartError};
use zeroraft_harness::scale;

/// Serializes the properties: each reads the process's resident memory.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Most the process's resident memory may grow while an accepted cluster runs: the largest
/// queues a config can ask for (2^20 proposals of 56 bytes on each of 3 nodes) and inboxes, with
/// room to spare. A leader that loops in its send path grows by gigabytes a second.
const MEMORY_BOUND: u64 = 512 << 20;
/// Most commands the client proposes in a case.
const MAX_PROPOSALS: u64 = 50_000;
/// How long an accepted cluster runs.
const RUN: Duration = Duration::from_secs(1);
/// How long a case may take before the watchdog ends the process.
const WATCHDOG: Duration = Duration::from_secs(90);

fn cases() -> u32 {
    scale::size("ZERORAFT_PROPERTY_CASES", 12, 96) as u32
}

fn runner() -> TestRunner {
    TestRunner::new(RunnerConfig {
        cases: cases(),
        // A case takes a second or more: shrink a little, not for hours.
        max_shrink_iters: 16,
        failure_persistence: None,
        ..RunnerConfig::default()
    })
}

/// The process's resident memory, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Ends the process, naming the case, if `f` runs longer than [`WATCHDOG`].
fn watched<T>(case: &str, f: impl FnOnce() -> T) -> T {
    let (done, wait) = crossbeam_channel::bounded::<()>(0);
    let name = case.to_owned();
    let watchdog = std::thread::spawn(move || {
        if let Err(crossbeam_channel::RecvTimeoutError::Timeout) = wait.recv_timeout(WATCHDOG) {
            eprintln!("hung for {WATCHDOG:?}: {name}");
            std::process::exit(101);
        }
    });
    let out = f();
    drop(done);
    watchdog.join().expect("the watchdog ends");
    out
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A hostile duration: zero, a nanosecond or two, the limits the docs state and just past them,
/// and the type's maximum.
fn hostile_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_nanos(3)),
        Just(Duration::from_micros(999)),
        Just(ms(10)),
        Just(ms(10) + Duration::from_nanos(1)),
        Just(Duration::from_secs(3600)),
        Just(Duration::from_secs(3600) + Duration::from_nanos(1)),
        Just(Duration::MAX),
        any::<u64>().prop_map(Duration::from_nanos),
    ]
}

/// A hostile size: zero, one, the limits `Config` documents and just past them, huge values.
fn hostile_size() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(2),
        Just(Config::MAX_INFLIGHT),
        Just(Config::MAX_INFLIGHT + 1),
        Just(Config::MAX_APPEND_ENTRIES),
        Just(Config::MAX_APPEND_ENTRIES + 1),
        Just(Config::MAX_QUEUED_PROPOSALS + 1),
        Just(Config::MAX_COMMAND_BYTES + 1),
        Just(1 << 40),
        Just(usize::MAX),
        any::<usize>(),
    ]
}

/// A config: plausible timings and sizes, with up to three fields replaced by hostile values.
fn config() -> impl Strategy<Value = Config> {
    let base = (
        1u64..=30,
        1u64..=100,
        1u64..=100,
        0u64..=100,
        0u64..=5,
        any::<u64>(),
        proptest::option::of(any::<bool>()),
        prop_oneof![
            Just(Compaction::NEVER),
            (1u64..=100).prop_map(|n| Compaction {
                every_entries: Some(n),
                above_bytes: None,
            }),
            (0u64..=4096).prop_map(|b| Compaction {
                every_entries: None,
                above_bytes: Some(b),
            }),
        ],
    )
        .prop_map(
            |(heartbeat, gap, spread, spin, notify, seed, dedicated_writer, compaction)| Config {
                heartbeat_interval: ms(heartbeat),
                election_timeout_min: ms(heartbeat + gap),
                election_timeout_max: ms(heartbeat + gap + spread),
                spin: Duration::from_micros(spin).min(ms(heartbeat) / 2),
                commit_notify_delay: ms(notify).min(ms(heartbeat + gap) / 2),
                seed: Some(seed),
                dedicated_writer,
                compaction,
                ..Config::default()
            },
        );
    let mutation = (0usize..16, hostile_duration(), hostile_size());
    (base, proptest::collection::vec(mutation, 0..=3)).prop_map(|(mut config, mutations)| {
        for (field, d, n) in mutations {
            match field {
                0 => config.heartbeat_interval = d,
                1 => config.election_timeout_min = d,
                2 => config.election_timeout_max = d,
                3 => config.commit_notify_delay = d,
                4 => config.spin = d,
                5 => config.max_append_entries = n,
                6 => config.max_append_bytes = n,
                7 => config.max_inflight = n,
                8 => config.max_command_bytes = n,
                9 => config.max_queued_proposals = n,
                10 => config.max_snapshot_chunk = n,
                11 => config.compaction.every_entries = Some(n as u64),
                12 => config.compaction.above_bytes = Some(n as u64),
                // Leave the rest plausible: most cases should be accepted and run.
                _ => {}
            }
        }
        config
    })
}

/// What one accepted cluster did.
struct Run {
    committed: bool,
    grew: u64,
}

/// Runs a cluster of `nodes` nodes with `config` on `network` for [`RUN`] (longer, up to
/// `commit_within`, while nothing has committed), with a client proposing on whichever node
/// leads; then kills every node.
fn run_cluster(network: Network, nodes: usize, config: &Config, commit_within: Duration) -> Run {
    let before = rss();
    let (tx, rx) = crossbeam_channel::unbounded();
    let rafts: Vec<Raft> = (0..nodes)
        .map(|i| {
            let endpoint = network.endpoint(i, i as u64).expect("a fresh endpoint");
            Raft::new(config.clone(), i, nodes, endpoint, tx.clone()).expect("validated")
        })
        .collect();
    drop(tx);
    (0..nodes).for_each(|i| network.connect(i));
    let command = Bytes::from(vec![7u8; config.max_command_bytes.min(8)]);
    let started = Instant::now();
    let (mut proposed, mut committed, mut grew) = (0u64, false, 0u64);
    let mut leader = 0;
    let mut sampled = Instant::now();
    loop {
        let elapsed = started.elapsed();
        if elapsed >= RUN && (committed || elapsed >= commit_within) {
            break;
        }
        if proposed < MAX_PROPOSALS {
            match rafts[leader].try_start(command.clone()) {
                Ok(_) => proposed += 1,
                Err(StartError::NotLeader { leader: hint, .. }) => {
                    leader = hint.unwrap_or((leader + 1) % nodes);
                    std::thread::sleep(ms(1));
                }
                Err(StartError::Busy { .. }) => std::thread::yield_now(),
                Err(e) => panic!("an accepted config refused a command: {e}"),
            }
        } else {
            std::thread::sleep(ms(1));
        }
        while rx.try_recv().is_ok() {
            committed = true;
        }
        if sampled.elapsed() >= ms(5) {
            sampled = Instant::now();
            grew = grew.max(rss().saturating_sub(before));
        }
    }
    grew = grew.max(rss().saturating_sub(before));
    for raft in &rafts {
        raft.kill();
        assert!(
            raft.status().killed,
            "kill returned before the thread ended"
        );
    }
    drop(rafts);
    drop(network);
    Run { committed, grew }
}

/// What the accepted cases of one property did, checked case by case and summed up at the end.
#[derive(Default)]
struct Tally {
    accepted: Cell<usize>,
    committed: Cell<usize>,
    max_grew: Cell<u64>,
}

impl Tally {
    /// Checks one accepted cluster's run: memory within [`MEMORY_BOUND`], and a commit if
    /// `must_commit`.
    fn record(&self, run: &Run, must_commit: bool, case: &str) -> Result<(), TestCaseError> {
        self.accepted.set(self.accepted.get() + 1);
        self.max_grew.set(self.max_grew.get().max(run.grew));
        prop_assert!(
            run.grew <= MEMORY_BOUND,
            "memory grew by {} MiB: {}",
            run.grew >> 20,
            case
        );
        if must_commit {
            prop_assert!(run.committed, "nothing committed within 20 s: {}", case);
        }
        self.committed
            .set(self.committed.get() + usize::from(run.committed));
        Ok(())
    }

    /// Prints the totals, and fails if too few cases ran a cluster for the property to say much.
    fn finish(&self, what: &str) {
        let (accepted, committed) = (self.accepted.get(), self.committed.get());
        println!(
            "{} cases: {accepted} {what} accepted and run, {committed} committed, memory grew by \
             at most {} MiB",
            cases(),
            self.max_grew.get() >> 20
        );
        assert!(
            accepted >= cases() as usize / 8 && committed >= 1,
            "too few accepted {what} ran ({accepted} accepted, {committed} committed): the \
             property says little"
        );
    }
}

#[test]
fn any_config_is_refused_or_runs() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tally = Tally::default();
    runner()
        .run(&(config(), 1usize..=5), |(config, nodes)| {
            let case = format!("{nodes} nodes, {config:?}");
            let validated = config.validate(0, nodes);
            let network = Network::new(NetworkConfig::new(nodes)).expect("a valid network");
            let (tx, _rx) = crossbeam_channel::unbounded();
            let endpoint = network.endpoint(0, 0).expect("free");
            let built = watched(&case, || Raft::new(config.clone(), 0, nodes, endpoint, tx));
            prop_assert_eq!(
                built.as_ref().err(),
                validated.as_ref().err(),
                "construction agrees with validate: {}",
                case
            );
            let Ok(raft) = built else {
                let err = validated.unwrap_err();
                prop_assert!(!err.to_string().is_empty(), "the error explains itself");
                return Ok(());
            };
            watched(&case, || raft.kill());
            drop(raft);
            // Elections within a couple of hundred milliseconds: a commit is due within the test.
            let fast = config.election_timeout_max <= ms(250);
            let commit_within = if fast { Duration::from_secs(20) } else { RUN };
            let run = watched(&case, || {
                run_cluster(network, nodes, &config, commit_within)
            });
            tally.record(&run, fast, &case)
        })
        .unwrap();
    tally.finish("configs");
}

fn network_config() -> impl Strategy<Value = NetworkConfig> {
    let nodes = prop_oneof![
        10 => 1usize..=5,
        1 => Just(0usize),
        1 => Just(MAX_NODES),
        1 => Just(MAX_NODES + 1),
        1 => Just(1usize << 40),
        1 => Just(usize::MAX),
    ];
    let capacity = prop_oneof![
        8 => Just(1usize << 14),
        1 => Just(0usize),
        1 => Just(1usize),
        1 => 2usize..=64,
        1 => Just(MAX_INBOX_CAPACITY),
        1 => Just(MAX_INBOX_CAPACITY + 1),
        1 => Just(1usize << 40),
        1 => Just(usize::MAX),
    ];
    (nodes, capacity, any::<u64>()).prop_map(|(nodes, inbox_capacity, seed)| NetworkConfig {
        nodes,
        seed,
        inbox_capacity,
    })
}

#[test]
fn any_network_config_is_refused_or_runs() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let config = Config {
        heartbeat_interval: ms(20),
        election_timeout_min: ms(60),
        election_timeout_max: ms(120),
        ..Config::default()
    };
    let tally = Tally::default();
    runner()
        .run(&network_config(), |net_config| {
            let case = format!("{net_config:?}");
            let (nodes, capacity) = (net_config.nodes, net_config.inbox_capacity);
            let network = match watched(&case, || Network::new(net_config.clone())) {
                Ok(network) => network,
                Err(e) => {
                    let expected = nodes == 0
                        || nodes > MAX_NODES
                        || capacity == 0
                        || capacity > MAX_INBOX_CAPACITY;
                    prop_assert!(expected, "refused a usable network ({e}): {}", case);
                    return Ok(());
                }
            };
            if nodes > 5 {
                // More nodes than a cluster here runs: a few endpoints come and go.
                for id in [0, nodes / 2, nodes - 1] {
                    drop(network.endpoint(id, 1).expect("in range and free"));
                }
                prop_assert!(network.endpoint(nodes, 1).is_err());
                return Ok(());
            }
            // Every reply of a round fits in an inbox: a commit is due within the test.
            let roomy = capacity >= 2 * nodes;
            let commit_within = if roomy { Duration::from_secs(20) } else { RUN };
            let run = watched(&case, || {
                run_cluster(network, nodes, &config, commit_within)
            });
            tally.record(&run, roomy, &case)
        })
        .unwrap();
    tally.finish("networks");
}
