//! Load drivers for measuring the engine: a cluster whose nodes apply through a
//! [`StateMachine`] that only records progress, and clients that
//! keep a number of proposals in flight, propose in bursts, or propose one command at a time.
//!
//! Used by the criterion benchmarks in `benches/`, the allocation and idle-cost tests, and the
//! `bench` subcommand of the binary. Nothing here checks agreement (the tester harness in
//! [`crate::cluster`] does that); this is about cost. [`remote`] drives a running key-value
//! service over TCP instead.
//!
//! # Orderings
//!
//! Each node's state machine stores its last applied index after the entries are applied;
//! clients load it. The `waiting` flag and the `Unparker` follow the usual park protocol: the
//! client sets the flag, re-checks the condition, then parks; a node that stores progress and
//! then loads the flag unparks the client if it is set. All four accesses are `SeqCst`, so they
//! fall in one total order and at least one side sees the other's write: no wake-up is lost.
//! (On x86 a `SeqCst` load costs what an `Acquire` load does.) The park's 10 ms timeout is there
//! for a leader change, not for a missed wake-up.

pub mod membership;
pub mod remote;

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_utils::CachePadded;
use crossbeam_utils::sync::{Parker, Unparker};
use zeroraft_engine::storage::{FileStorage, Identity, Snapshot, WalOptions};
use zeroraft_engine::{
    BuildError, Config, MemStorage, Membership, Network, Raft, RestoreError, StartError,
    StateMachine,
};
use zeroraft_transport::NetworkConfig;

/// `len` bytes of 0x5a with a static lifetime (leaked, once per call), so that cloning the payload
/// per proposal touches no shared reference count: what is measured is the engine, not
/// contention on one counter that no real client would share.
pub fn static_payload(len: usize) -> Bytes {
    Bytes::from_static(Box::leak(vec![0x5a; len].into_boxed_slice()))
}

/// Progress of every node, shared between the nodes' state machines and the client.
struct Progress {
    applied: Box<[CachePadded<AtomicU64>]>,
    waiting: CachePadded<AtomicBool>,
    unparker: Unparker,
}

/// The benchmark's state machine: records the last applied index and wakes a waiting client.
/// Its state is that index, so its snapshots are 8 bytes.
struct Recorder {
    id: usize,
    progress: Arc<Progress>,
    /// The last index applied.
    last: u64,
}

impl Recorder {
    fn publish(&mut self, last_index: u64) {
        self.last = last_index;
        self.progress.applied[self.id].store(last_index, SeqCst);
        if self.progress.waiting.load(SeqCst) {
            self.progress.unparker.unpark();
        }
    }
}

impl StateMachine for Recorder {
    fn apply(&mut self, _index: u64, _term: u64, _command: &Bytes) {}

    fn flush(&mut self, last_index: u64) {
        self.publish(last_index);
    }

    fn snapshot(&mut self) -> Option<Bytes> {
        Some(Bytes::copy_from_slice(&self.last.to_le_bytes()))
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), RestoreError> {
        self.publish(snapshot.index);
        Ok(())
    }
}

/// The resident memory of this process, in bytes (from `/proc/self/statm`), if it can be read.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Where the nodes of a [`LoadCluster`] keep their raft state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum LoadStorage {
    /// Nowhere ([`zeroraft_engine::NoStorage`]): the engine alone, as before durability.
    #[default]
    None,
    /// In memory ([`MemStorage`]): what keeping the state costs, without a disk.
    Memory,
    /// A write-ahead log per node in `dir/node-<i>` (created if missing; must not hold another
    /// cluster's logs): one write and one `fdatasync` per round of each node.
    Files(std::path::PathBuf),
}

/// The median time of `samples` appends of 4 KiB to a file in `dir`, each followed by
/// `fdatasync`: what one group commit costs at least on that disk. The file is removed after.
///
/// # Errors
///
/// An I/O error if the file cannot be created, written or synced.
pub fn fdatasync_median(dir: &std::path::Path, samples: usize) -> std::io::Result<Duration> {
    use std::io::Write;
    let path = dir.join(format!("fdatasync-probe-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&path)?;
    let block = [0x5au8; 4096];
    let mut times = Vec::with_capacity(samples.max(1));
    let result = (|| -> std::io::Result<()> {
        for _ in 0..samples.max(1) {
            let started = Instant::now();
            file.write_all(&block)?;
            file.sync_data()?;
            times.push(started.elapsed());
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&path);
    result?;
    times.sort_unstable();
    Ok(times[times.len() / 2])
}

/// A cluster of engine nodes on a reliable in-memory network, built for measuring.
pub struct LoadCluster {
    network: Network,
    nodes: Vec<Raft>,
    progress: Arc<Progress>,
    parker: Parker,
    /// How long a client spins on progress before parking.
    client_spin: Duration,
}

impl LoadCluster {
    /// Builds `nodes` nodes with `config`, connects them and waits for a leader.
    ///
    /// # Panics
    ///
    /// If the configuration is invalid or no leader is elected within 10 s.
    pub fn new(nodes: usize, config: Config) -> Self {
        Self::with_storage(nodes, config, &LoadStorage::None).expect("no storage to fail")
    }

    /// Like [`LoadCluster::new`], with nodes keeping their state in `storage`.
    ///
    /// # Errors
    ///
    /// [`BuildError`] if a node's storage cannot be opened or recovered.
    ///
    /// # Panics
    ///
    /// If the configuration is invalid or no leader is elected within 10 s.
    pub fn with_storage(
        nodes: usize,
        config: Config,
        storage: &LoadStorage,
    ) -> Result<Self, BuildError> {
        Self::build(nodes, config, storage, None, |recorder| recorder)
    }

    /// Builds the nodes with `initial` as their first configuration (every node voting if
    /// `None`), each applying through the state machine `machine` makes of its [`Recorder`].
    fn build<M: StateMachine + Send + 'static>(
        nodes: usize,
        config: Config,
        storage: &LoadStorage,
        initial: Option<Membership>,
        mut machine: impl FnMut(Recorder) -> M,
    ) -> Result<Self, BuildError> {
        let network = Network::new(NetworkConfig::new(nodes)).expect("a valid network");
        let parker = Parker::new();
        let progress = Arc::new(Progress {
            applied: (0..nodes)
                .map(|_| CachePadded::new(AtomicU64::new(0)))
                .collect(),
            waiting: CachePadded::new(AtomicBool::new(false)),
            unparker: parker.unparker().clone(),
        });
        let cluster_id = fastrand::u64(..);
        let rafts = (0..nodes)
            .map(|i| {
                let endpoint = network.endpoint(i, 7).expect("id in range");
                let recorder = Recorder {
                    id: i,
                    progress: progress.clone(),
                    last: 0,
                };
                let builder = Raft::builder(config.clone(), i, nodes, endpoint);
                let builder = match initial {
                    Some(membership) => builder.initial_membership(membership),
                    None => builder,
                };
                let builder = match storage {
                    LoadStorage::None => builder,
                    LoadStorage::Memory => builder.storage(MemStorage::new()),
                    LoadStorage::Files(dir) => {
                        let identity = Identity {
                            cluster: cluster_id,
                            node: i as u64,
                        };
                        let options = WalOptions {
                            create: true,
                            ..WalOptions::default()
                        };
                        let dir = dir.join(format!("node-{i}"));
                        builder.storage(FileStorage::open(dir, identity, options)?)
                    }
                };
                builder.start_with_state_machine(machine(recorder))
            })
            .collect::<Result<_, BuildError>>()?;
        for i in 0..nodes {
            network.connect(i);
        }
        let cluster = Self {
            network,
            nodes: rafts,
            progress,
            parker,
            client_spin: config.spin,
        };
        cluster.leader();
        Ok(cluster)
    }

    /// The network, for its counters.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &Raft {
        &self.nodes[i]
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: a cluster has at least one node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The current leader, waiting up to 10 s for one.
    ///
    /// # Panics
    ///
    /// If there is no leader within 10 s.
    pub fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(i) = (0..self.nodes.len()).find(|&i| self.nodes[i].get_state().1) {
                return i;
            }
            assert!(Instant::now() < deadline, "no leader within 10 s");
            // Polling the published state while the election runs.
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The last index node `i` applied.
    pub fn applied(&self, i: usize) -> u64 {
        // SeqCst: the re-check of the park protocol (see the module docs).
        self.progress.applied[i].load(SeqCst)
    }

    /// The last index every node still running applied (a killed node applies nothing more,
    /// so it is left out).
    pub fn applied_everywhere(&self) -> u64 {
        (0..self.nodes.len())
            .filter(|&i| !self.nodes[i].is_killed())
            .map(|i| self.applied(i))
            .min()
            .unwrap_or(0)
    }

    /// Whether node `i` still leads, as it last published.
    fn leads(&self, i: usize) -> bool {
        self.nodes[i].get_state().1
    }

    /// Waits until `done()` holds: spins for up to the nodes' spin time, then parks until a node
    /// reports progress (or 10 ms pass, in case the leader changed).
    fn wait_until(&self, done: impl FnMut() -> bool) {
        self.wait_until_or(done, || false);
    }

    /// Like [`LoadCluster::wait_until`], but gives up once parked if `give_up()` holds. Returns
    /// whether `done()` held. `give_up` is not asked while spinning: a question about the
    /// leader reads a word its node writes, and asking it in the spin would take that cache
    /// line from the node on every turn.
    fn wait_until_or(
        &self,
        mut done: impl FnMut() -> bool,
        mut give_up: impl FnMut() -> bool,
    ) -> bool {
        if done() {
            return true;
        }
        // Spin, then yield between checks, as `Inbox::wait` does in transport/src/inbox.rs (see
        // the reasoning there): with fewer cores than busy threads, the node this client waits
        // for may need the core it is spinning on.
        let spin_until = Instant::now() + self.client_spin;
        while Instant::now() < spin_until {
            for _ in 0..16 {
                if done() {
                    return true;
                }
                std::hint::spin_loop();
            }
            std::thread::yield_now();
        }
        loop {
            self.progress.waiting.store(true, SeqCst);
            if done() {
                self.progress.waiting.store(false, SeqCst);
                return true;
            }
            if give_up() {
                self.progress.waiting.store(false, SeqCst);
                return false;
            }
            self.parker.park_timeout(Duration::from_millis(10));
        }
    }

    /// Proposes a payload from `payload()` on the leader until it accepts, returning the index.
    /// Each attempt takes a new payload: a refused command is gone.
    fn propose(&self, leader: &mut usize, mut payload: impl FnMut() -> Bytes) -> u64 {
        loop {
            match self.nodes[*leader].try_start(payload()) {
                Ok((index, _)) => return index,
                // The leader's queue is full: its thread catches up within microseconds.
                Err(StartError::Busy { .. }) => std::thread::yield_now(),
                Err(_) => *leader = self.leader(),
            }
        }
    }

    /// Commits `count` proposals of `payload`, keeping up to `window` of them in flight (not yet
    /// applied on the leader), and returns once every node applied them all.
    pub fn closed_loop(&self, count: u64, window: u64, payload: &Bytes) {
        let mut leader = self.leader();
        let mut last = 0;
        for _ in 0..count {
            let leader_now = leader;
            self.wait_until(|| last < window + self.applied(leader_now));
            last = self.propose(&mut leader, || payload.clone());
        }
        self.wait_until(|| self.applied_everywhere() >= last);
    }

    /// Commits `count` proposals of `payload` in bursts of `burst` back-to-back `start` calls,
    /// waiting after each burst until the leader applied it; returns once every node applied
    /// them all.
    pub fn bursts(&self, count: u64, burst: u64, payload: &Bytes) {
        self.bursts_with(count, burst, || payload.clone());
    }

    /// Like [`LoadCluster::bursts`], with a fresh payload from `payload()` per proposal, as a
    /// client that builds each command (`Bytes::copy_from_slice`, say) does.
    pub fn bursts_with(&self, count: u64, burst: u64, mut payload: impl FnMut() -> Bytes) {
        let mut leader = self.leader();
        let mut last = 0;
        let mut sent = 0;
        while sent < count {
            for _ in 0..burst.min(count - sent) {
                last = self.propose(&mut leader, &mut payload);
                sent += 1;
            }
            let leader_now = leader;
            self.wait_until(|| self.applied(leader_now) >= last);
        }
        self.wait_until(|| self.applied_everywhere() >= last);
    }

    /// Proposes one command and waits until the leader applied it. Returns the time from the
    /// `start` call to the leader's apply being visible to the client.
    pub fn one(&self, payload: &Bytes) -> Duration {
        let mut leader = self.leader();
        let t0 = Instant::now();
        let index = self.propose(&mut leader, || payload.clone());
        self.wait_until(|| self.applied(leader) >= index);
        t0.elapsed()
    }
}

/// What [`LoadCluster::closed_loop_for`] measured.
pub struct LoadReport {
    /// Proposals committed and applied on every node.
    pub commits: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// CPU time of the whole process (client and every node) during the run.
    pub cpu: Duration,
    /// Latency of each proposal, in nanoseconds, from `start` until the client saw the leader
    /// apply it.
    pub latency: hdrhistogram::Histogram<u64>,
}

impl LoadReport {
    /// Commits per second.
    pub fn rate(&self) -> f64 {
        self.commits as f64 / self.elapsed.as_secs_f64()
    }

    /// CPU microseconds per commit.
    pub fn cpu_per_commit_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.commits.max(1) as f64
    }

    /// Latency at quantile `q` in microseconds.
    pub fn latency_us(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1e3
    }
}

impl LoadCluster {
    /// Runs a closed loop of `window` proposals in flight for `duration`, calling `progress`
    /// about once a second with the commits so far and the time elapsed, then waits until every
    /// running node applied everything proposed. The loop ends early when `progress` returns
    /// [`ControlFlow::Break`]; the report then covers the shorter run.
    ///
    /// The leader may change during the run (a transfer, a killed or partitioned leader): the
    /// loop then goes on with the new leader. Proposals the old leader had not been seen to
    /// apply are not counted, nor given a latency, even if the new leader commits them.
    ///
    /// # Panics
    ///
    /// If the cluster is without a leader for 10 s.
    pub fn closed_loop_for(
        &self,
        duration: Duration,
        window: u64,
        payload: &Bytes,
        mut progress: impl FnMut(u64, Duration) -> ControlFlow<()>,
    ) -> LoadReport {
        let window = window.max(1);
        let ring = window.next_power_of_two() as usize;
        let mut sent_at = vec![Instant::now(); ring];
        let mut latency = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
            .expect("valid bounds");
        let mut leader = self.leader();
        // Invariant: this loop proposed, on `leader`, every index in `seen + 1..=last` (when
        // `fresh` is false), and counted every index up to `seen`.
        let mut last = self.applied(leader);
        let mut seen = last;
        let mut fresh = false;
        let mut commits = 0;
        let (started, cpu0) = (Instant::now(), cpu_time::ProcessTime::now());
        let mut next_report = started + Duration::from_secs(1);
        while started.elapsed() < duration {
            let leader_now = leader;
            let led = self.wait_until_or(
                || last < window + self.applied(leader_now),
                || !self.leads(leader_now),
            );
            let now = Instant::now();
            if led {
                let applied = self.applied(leader_now).min(last);
                for index in seen + 1..=applied {
                    latency.saturating_record(
                        now.duration_since(sent_at[index as usize % ring])
                            .as_nanos() as u64,
                    );
                }
                commits += applied.saturating_sub(seen);
                seen = seen.max(applied);
            } else {
                // The leader changed or stopped: what it was given and was not seen applied
                // may be lost. Go on with the new one at once: a leader commits the entries of
                // earlier terms it holds only with one of its own (it appends no entry when
                // elected), so waiting for it to apply them first could wait for ever.
                leader = self.leader();
                last = self.applied(leader);
                (seen, fresh) = (last, true);
            }
            while last < window + self.applied(leader) {
                let before = leader;
                let index = self.propose(&mut leader, || payload.clone());
                if fresh || leader != before {
                    // The first proposal on a new leader: the indices before it are not ours.
                    (seen, fresh) = (index - 1, false);
                }
                last = index;
                sent_at[last as usize % ring] = Instant::now();
            }
            if now >= next_report {
                if progress(commits, started.elapsed()).is_break() {
                    break;
                }
                next_report += Duration::from_secs(1);
            }
        }
        // Until every running node applied the last proposal; if the leader changes meanwhile,
        // one more, on the new leader, which commits with it whatever that leader holds.
        loop {
            let leader_now = leader;
            if self.wait_until_or(
                || self.applied_everywhere() >= last,
                || !self.leads(leader_now),
            ) {
                break;
            }
            leader = self.leader();
            last = self.propose(&mut leader, || payload.clone());
            // Ours up to `seen` were counted; later ones may have been lost with the old leader,
            // and this one is not counted.
            fresh = true;
        }
        if !fresh {
            commits += last.saturating_sub(seen);
        }
        LoadReport {
            commits,
            elapsed: started.elapsed(),
            cpu: cpu0.elapsed(),
            latency,
        }
    }
}
