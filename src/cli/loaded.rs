//! The client load behind the dashboard: client threads proposing to the leader of a
//! [`Cluster`], and the commit latency they see; [`LoadedCluster`] puts the two together behind
//! the monitor's [`Control`] trait.
//!
//! Each command carries the time it was proposed in its first 8 bytes. A cluster-wide apply
//! observer notes the first node to apply each index (the leader, in practice, which commits
//! first) and records `now - proposed` in a lock-free [`Histogram`].
//!
//! Clients find the leader from the `NotLeader` hints and keep a bounded number of proposals
//! in flight. A client whose outstanding proposals have seen no commit for [`STALL`] assumes
//! its leader was cut off or deposed (its uncommitted proposals lost) and asks the next node;
//! so does a client whose node is down (crashed from the dashboard, or stopped on a storage
//! failure), so the load goes on while nodes crash and restart.
//!
//! # Orderings
//!
//! All counters are statistics read by one sampler and may lag by a few entries: `Relaxed`
//! throughout, except `first_applied`, whose `fetch_max` must be a single atomic step (it is,
//! at any ordering) so that exactly one applier sees each index first.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use zeroraft_engine::{ApplyMsg, Config, Raft, StartError};
use zeroraft_harness::cluster::{Cluster, ClusterOptions, ClusterStorage, Snapshots};
use zeroraft_monitor::{Control, Latency, LoadSample, NetworkSample, Rate, Sample};

/// A client that has waited this long for a proposal to commit tries another node.
pub const STALL: Duration = Duration::from_secs(1);
/// Most proposals one client hands over in one go.
const BATCH: u64 = 64;
/// The span of the "recent" latency percentiles.
const RECENT: Duration = Duration::from_secs(5);

/// Sub-buckets per power of two: values are kept to within 1/16 (6%).
const SUB: u32 = 16;
const BUCKETS: usize = ((64 - 4 + 1) * SUB) as usize;

/// A fixed-size log-linear histogram of nanosecond values that threads record into without a
/// lock. Values below 16 ns are exact; above, each power of two is split into 16 buckets.
pub struct Histogram {
    counts: Box<[AtomicU64]>,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Histogram {
    fn bucket(value: u64) -> usize {
        if value < u64::from(SUB) {
            return value as usize;
        }
        let exp = 63 - value.leading_zeros();
        ((exp - 3) * SUB + ((value >> (exp - 4)) as u32 & (SUB - 1))) as usize
    }

    /// The middle of bucket `i`.
    fn value(i: usize) -> u64 {
        let i = i as u32;
        if i < SUB {
            return u64::from(i);
        }
        let exp = i / SUB + 3;
        let low = u64::from(SUB + i % SUB) << (exp - 4);
        low + (1u64 << (exp - 4)) / 2
    }

    /// Counts one value.
    pub fn record(&self, nanos: u64) {
        self.counts[Self::bucket(nanos)].fetch_add(1, Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> Vec<u64> {
        self.counts.iter().map(|c| c.load(Relaxed)).collect()
    }

    /// The `q` quantile (0 to 1) of the values counted in `counts`, `None` if there are none.
    pub fn quantile(counts: &[u64], q: f64) -> Option<Duration> {
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, &c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Duration::from_nanos(Self::value(i)));
            }
        }
        None
    }
}

/// What the clients and the apply observer count.
pub struct Stats {
    epoch: Instant,
    /// Highest index any node applied.
    first_applied: AtomicU64,
    proposed: AtomicU64,
    committed: AtomicU64,
    latency: Histogram,
}

impl Stats {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            first_applied: AtomicU64::new(0),
            proposed: AtomicU64::new(0),
            committed: AtomicU64::new(0),
            latency: Histogram::default(),
        }
    }

    fn nanos(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The apply observer: the first node to apply an index times its command.
    fn observe(&self, m: &ApplyMsg) {
        let ApplyMsg::Command { index, command, .. } = m else {
            return; // a snapshot: its commands were timed where they were first applied
        };
        if self.first_applied.fetch_max(*index, Relaxed) >= *index {
            return;
        }
        if let Some(stamp) = command.get(..8) {
            let proposed = u64::from_le_bytes(stamp.try_into().expect("8 bytes"));
            self.latency.record(self.nanos().saturating_sub(proposed));
            self.committed.fetch_add(1, Relaxed);
        }
    }
}

/// Each node's log is compacted every this many applied entries, so the dashboard runs at flat
/// memory for as long as it runs.
const COMPACT_EVERY: u64 = 10_000;

/// How to run the client load.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// Client threads.
    pub clients: usize,
    /// Proposals per second over all clients.
    pub rate: Rate,
    /// Bytes per command, at least 8 (the proposal time).
    pub payload: usize,
    /// Most proposals one client keeps uncommitted.
    pub window: u64,
}

/// State shared by the clients and the control side.
struct Shared {
    cluster: Arc<Cluster>,
    stats: Arc<Stats>,
    /// Proposals per second over all clients; `u64::MAX` for unlimited.
    rate: AtomicU64,
    /// Bumped on every rate change so that clients restart their pacing.
    rate_changes: AtomicU64,
    stop: AtomicBool,
    options: LoadOptions,
}

fn rate_word(rate: Rate) -> u64 {
    match rate {
        Rate::PerSecond(r) => r.min(u64::MAX - 1),
        Rate::Unlimited => u64::MAX,
    }
}

/// One client thread: paces itself, proposes to the node it believes leads, follows hints.
fn run_client(id: usize, shared: &Shared) {
    let cluster = &shared.cluster;
    let stats = &shared.stats;
    let n = cluster.n();
    let clients = shared.options.clients.max(1) as u64;
    let mut leader = id % n;
    // The node proposed to, held rather than looked up per proposal (the harness locks its
    // nodes to hand one out). A restarted node is a new handle: the old one answers `Killed`.
    let mut node: Raft = cluster.raft(leader);
    let mut buf = BytesMut::new();
    let mut pace_from = Instant::now();
    let mut sent: u64 = 0;
    let mut seen_change = u64::MAX;
    let mut last_index = 0;
    // The oldest proposal not yet seen committed, and when it was made.
    let mut oldest: Option<(u64, Instant)> = None;
    while !shared.stop.load(Relaxed) {
        let change = shared.rate_changes.load(Relaxed);
        let rate = shared.rate.load(Relaxed);
        if change != seen_change {
            seen_change = change;
            pace_from = Instant::now();
            sent = 0;
        }
        let allowed = if rate == u64::MAX {
            BATCH
        } else {
            let per_client = (rate / clients).max(1);
            let due = (pace_from.elapsed().as_secs_f64() * per_client as f64) as u64;
            // After a stall, resume at the rate rather than in one burst: forget what is more
            // than a tenth of a second behind.
            sent = sent.max(due.saturating_sub(per_client / 10 + 1));
            due.saturating_sub(sent).min(BATCH)
        };
        let committed = stats.first_applied.load(Relaxed);
        if let Some((index, at)) = oldest {
            if committed >= index {
                // Proposals still outstanding are timed from now, from the next index on:
                // a client held back by its window proposes nothing more that could start
                // the clock, and its proposals may be lost with a deposed leader.
                oldest = (last_index > committed).then(|| (committed + 1, Instant::now()));
            } else if at.elapsed() > STALL {
                leader = (leader + 1) % n;
                node = cluster.raft(leader);
                oldest = None;
                last_index = 0;
            }
        }
        if allowed == 0 || last_index > committed + shared.options.window {
            // Between two paced proposals, or too many in flight: wait a little.
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        // One allocation for the whole batch: each command is split off the front of it.
        buf.reserve(allowed as usize * shared.options.payload);
        for _ in 0..allowed {
            buf.put_u64_le(stats.nanos());
            buf.put_bytes(0, shared.options.payload - 8);
            let command: Bytes = buf.split().freeze();
            match node.try_start(command) {
                Ok((index, _)) => {
                    sent += 1;
                    last_index = index;
                    oldest.get_or_insert_with(|| (index, Instant::now()));
                    stats.proposed.fetch_add(1, Relaxed);
                }
                Err(StartError::NotLeader { leader: hint, .. }) => {
                    leader = match hint {
                        Some(l) if l != leader => l,
                        _ => (leader + 1) % n,
                    };
                    node = cluster.raft(leader);
                    oldest = None;
                    last_index = 0;
                    if hint.is_none() {
                        // No leader known (an election is on): ask again shortly.
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    break;
                }
                Err(StartError::Killed | StartError::Failed(_)) => {
                    // A crashed or failed node: ask the next one (the dashboard restarts nodes).
                    leader = (leader + 1) % n;
                    node = cluster.raft(leader);
                    oldest = None;
                    last_index = 0;
                    std::thread::sleep(Duration::from_millis(10));
                    break;
                }
                Err(StartError::Busy { .. }) => {
                    // The leader's queue is full: let its thread catch up.
                    std::thread::sleep(Duration::from_micros(200));
                    break;
                }
                Err(StartError::TooLarge { .. }) => return,
            }
        }
    }
}

/// A cluster under client load, as the dashboard sees it.
pub struct LoadedCluster {
    shared: Arc<Shared>,
    clients: Vec<JoinHandle<()>>,
    /// Latency counts of the last few seconds, oldest first, for the recent percentiles. Only
    /// the sampling thread touches it: a cold-path lock.
    windows: Mutex<VecDeque<(Instant, Vec<u64>)>>,
}

impl LoadedCluster {
    /// Starts `nodes` nodes with [`Config::production`] (PreVote and CheckQuorum on; `unreliable`
    /// picks the network) keeping their state in `storage`, and the clients.
    ///
    /// # Errors
    ///
    /// Why the cluster could not be built: a node's storage could not be opened or recovered.
    ///
    /// # Panics
    ///
    /// If the node count is out of the engine's range, the payload is under 8 bytes, or a
    /// thread cannot be spawned.
    pub fn start(
        nodes: usize,
        unreliable: bool,
        storage: ClusterStorage,
        options: LoadOptions,
    ) -> Result<Self, String> {
        assert!(
            options.payload >= 8,
            "a command carries an 8-byte timestamp"
        );
        let stats = Arc::new(Stats::new());
        let observer = {
            let stats = stats.clone();
            Arc::new(move |_node: usize, m: &ApplyMsg| stats.observe(m))
        };
        let cluster_options = ClusterOptions {
            nodes,
            unreliable,
            config: Config::production(),
            history: Some(1024),
            storage,
            snapshots: Snapshots::Every(COMPACT_EVERY),
        };
        let cluster = Cluster::try_with_observer(cluster_options, observer)?;
        let shared = Arc::new(Shared {
            cluster: Arc::new(cluster),
            stats,
            rate: AtomicU64::new(rate_word(options.rate)),
            rate_changes: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            options,
        });
        let clients = (0..options.clients)
            .map(|id| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("client-{id}"))
                    .spawn(move || run_client(id, &shared))
                    .expect("failed to spawn a client thread")
            })
            .collect();
        Ok(Self {
            shared,
            clients,
            windows: Mutex::new(VecDeque::new()),
        })
    }

    /// The cluster.
    pub fn cluster(&self) -> &Cluster {
        &self.shared.cluster
    }

    fn latency(&self) -> (Latency, Latency) {
        let now = Instant::now();
        let counts = self.shared.stats.latency.snapshot();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        while windows.len() > 1 && now.duration_since(windows[1].0) >= RECENT {
            windows.pop_front();
        }
        let recent: Vec<u64> = match windows.front() {
            Some((_, old)) => counts.iter().zip(old).map(|(c, o)| c - o).collect(),
            None => counts.clone(),
        };
        windows.push_back((now, counts.clone()));
        let latency = |counts: &[u64]| Latency {
            p50: Histogram::quantile(counts, 0.50),
            p99: Histogram::quantile(counts, 0.99),
        };
        (latency(&recent), latency(&counts))
    }
}

impl Control for LoadedCluster {
    fn nodes(&self) -> usize {
        self.cluster().n()
    }

    fn sample(&self) -> Sample {
        let cluster = self.cluster();
        let network = cluster.network();
        let n = cluster.n();
        let rate = match self.shared.rate.load(Relaxed) {
            u64::MAX => Rate::Unlimited,
            r => Rate::PerSecond(r),
        };
        let (recent, overall) = self.latency();
        let stats = &self.shared.stats;
        Sample {
            statuses: (0..n).map(|i| cluster.raft(i).status()).collect(),
            links: (0..n * n).map(|k| network.link_up(k / n, k % n)).collect(),
            network: NetworkSample {
                unreliable: !network.is_reliable(),
                long_reordering: network.is_long_reordering(),
                rpc_total: network.rpc_total(),
                bytes_total: network.bytes_total(),
            },
            load: LoadSample {
                rate,
                proposed: stats.proposed.load(Relaxed),
                committed: stats.committed.load(Relaxed),
                recent,
                overall,
            },
        }
    }

    fn connect(&self, node: usize) {
        self.cluster().connect(node);
    }

    fn disconnect(&self, node: usize) {
        self.cluster().disconnect(node);
    }

    fn partition(&self, groups: &[Vec<usize>]) {
        self.cluster().network().partition(groups);
    }

    fn set_unreliable(&self, on: bool) {
        self.cluster().set_unreliable(on);
    }

    fn set_long_reordering(&self, on: bool) {
        self.cluster().set_long_reordering(on);
    }

    fn set_rate(&self, rate: Rate) {
        self.shared.rate.store(rate_word(rate), Relaxed);
        self.shared.rate_changes.fetch_add(1, Relaxed);
    }

    fn crash(&self, node: usize) {
        self.cluster().crash(node);
    }

    fn restart(&self, node: usize) -> Result<(), String> {
        self.cluster().try_restart(node)
    }

    fn transfer_leadership(&self, leader: usize, target: usize) -> Result<(), String> {
        self.cluster()
            .raft(leader)
            .transfer_leadership(target)
            .map_err(|e| e.to_string())
    }
}

impl Drop for LoadedCluster {
    fn drop(&mut self) {
        self.shared.stop.store(true, Relaxed);
        for client in self.clients.drain(..) {
            let _ = client.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_round_trip_within_a_sixteenth() {
        for (case, value) in [0u64, 1, 15, 16, 17, 31, 32, 1_000, 123_456, 10_000_000_000]
            .into_iter()
            .enumerate()
        {
            let middle = Histogram::value(Histogram::bucket(value));
            let error = middle.abs_diff(value) as f64 / value.max(1) as f64;
            assert!(
                error <= 1.0 / 16.0,
                "case {case}: {value} shown as {middle}"
            );
        }
        assert!(Histogram::bucket(u64::MAX) < BUCKETS);
    }

    #[test]
    fn histogram_quantiles() {
        let h = Histogram::default();
        for v in 1..=100u64 {
            h.record(v * 1_000);
        }
        let counts = h.snapshot();
        let p50 = Histogram::quantile(&counts, 0.5).unwrap().as_nanos() as f64;
        let p99 = Histogram::quantile(&counts, 0.99).unwrap().as_nanos() as f64;
        assert!((p50 / 50_000.0 - 1.0).abs() < 0.07, "p50 {p50}");
        assert!((p99 / 99_000.0 - 1.0).abs() < 0.07, "p99 {p99}");
        assert_eq!(Histogram::quantile(&vec![0; BUCKETS], 0.5), None);
    }
}
