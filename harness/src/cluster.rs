//! [`Cluster`]: N engine nodes on one in-memory network, the fault controls a test needs, and the
//! checks of the 6.824 Raft tester (its `config.go`), with the same steps, timings and limits.
//!
//! Every check that finds a problem panics with the tester's message, as `t.Fatalf` fails a Go
//! test. An apply checker per node verifies that commands arrive in order and that every node
//! applies the same command at the same index; its first error is kept and makes every later
//! check (and [`Cluster::end`]) fail, so it is never lost in a background thread.
//!
//! All methods take `&self` and the type is `Send + Sync`, so a test can drive one cluster from
//! several threads. Bookkeeping (the nodes and their storages, the applied logs, the test's
//! start counters) sits behind mutexes: they are cold paths of the harness, never touched by the
//! engine's hot path.
//!
//! # Crash and restart (2C)
//!
//! Each node keeps its raft state in a storage that outlives it: a [`MemStorage`] (the tester's
//! `Persister`) or a data directory ([`ClusterStorage::Files`]). [`Cluster::crash`] is the
//! tester's `crash1`: it disconnects the node, kills it, and gives the node a copy of its storage,
//! so that nothing the dead incarnation could still do reaches the next one. [`Cluster::restart`]
//! is `start1`: a new incarnation on a fresh endpoint (messages to or from the old one are
//! dropped), recovering from that storage, not yet connected. The apply checker does not forget
//! what a node applied: the new incarnation applies again from index 1 (or from the snapshot it
//! restarted with), in order, and must agree with what it and every other node applied before.
//!
//! # Snapshots (2D)
//!
//! With [`Snapshots::Tester`], each node's applier is the tester's `applierSnap`: after applying
//! an index `i` with `(i + 1) % 10 == 0` it gives its node a snapshot of everything it applied
//! ([`SNAPSHOT_INTERVAL`]; the data encodes `i` and the commands at `1..=i`), and a snapshot
//! delivered on the apply channel replaces what the checker records for that node, after checking
//! it against what the others applied. [`Snapshots::Every`] keeps a long-running cluster's logs
//! bounded instead: snapshots of 8 bytes (the index), whose commands the checker cannot compare.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::Receiver;
use zeroraft_engine::storage::{FileStorage, Identity, WalOptions};
use zeroraft_engine::{ApplyMsg, Config, MemStorage, Network, Raft};
use zeroraft_transport::NetworkConfig;

/// In snapshot mode, an applier snapshots after every this many applied entries.
pub const SNAPSHOT_INTERVAL: u64 = 10;

/// The tester's allowance for an election (`RaftElectionTimeout`).
pub const ELECTION_TIMEOUT: Duration = Duration::from_millis(1000);
/// A test fails if it takes longer than this from [`Cluster::new`] to [`Cluster::end`].
pub const TEST_TIME_LIMIT: Duration = Duration::from_secs(120);

/// Encodes a test integer as a command: 8 bytes, little-endian.
pub fn cmd(x: u64) -> Bytes {
    Bytes::copy_from_slice(&x.to_le_bytes())
}

/// A random command of `len` bytes (the tester's `randstring`, as raw bytes).
pub fn random_cmd(len: usize) -> Bytes {
    let mut rng = fastrand::Rng::new();
    Bytes::from((0..len).map(|_| rng.u8(..)).collect::<Vec<u8>>())
}

/// What the apply checkers have seen.
struct Applied {
    /// `logs[i][k]`: the command node `i` applied at index `base + k`, if any.
    logs: Vec<VecDeque<Option<Bytes>>>,
    /// The index of the first slot kept in `logs`.
    base: u64,
    /// How many indices to keep (`None`: all of them).
    history: Option<usize>,
    /// Highest index each node applied, over all its incarnations.
    last: Vec<u64>,
    /// The index each node's current incarnation must apply next.
    next: Vec<u64>,
    /// Highest index applied by any node.
    max_index: u64,
    /// Entries applied, summed over nodes.
    applied_total: u64,
    /// The first error any checker found.
    error: Option<String>,
}

impl Applied {
    fn new(n: usize, history: Option<usize>) -> Self {
        Self {
            logs: vec![VecDeque::new(); n],
            base: 0,
            history,
            last: vec![0; n],
            next: vec![1; n],
            max_index: 0,
            applied_total: 0,
            error: None,
        }
    }

    fn get(&self, node: usize, index: u64) -> Option<&Bytes> {
        let slot = usize::try_from(index.checked_sub(self.base)?).ok()?;
        self.logs[node].get(slot)?.as_ref()
    }

    /// Panics with the first error, if there is one.
    fn check_error(&self) {
        if let Some(error) = &self.error {
            panic!("{error}");
        }
    }

    fn fail(&mut self, error: String) {
        if self.error.is_none() {
            self.error = Some(error);
        }
    }

    /// The tester's applier: checks one applied command of node `i`, then records it.
    fn record(&mut self, i: usize, index: u64, command: Bytes) {
        self.check_agreement(i, index, &command);
        // Stricter than the tester's "has the previous index": each incarnation applies 1, 2, 3...
        let in_order = index == self.next[i];
        self.next[i] = index + 1;
        self.store(i, index, command);
        self.applied_total += 1;
        if !in_order {
            self.fail(format!("server {i} apply out of order {index}"));
        }
        self.trim();
    }

    /// Fails if another node applied something else than `command` at `index`.
    fn check_agreement(&mut self, i: usize, index: u64, command: &Bytes) {
        for j in 0..self.logs.len() {
            if let Some(other) = self.get(j, index)
                && other != command
            {
                let error = format!(
                    "commit index={index} server={i} {} != server={j} {}",
                    show(command),
                    show(other)
                );
                self.fail(error);
            }
        }
    }

    /// Records that node `i` holds `command` at `index`.
    fn store(&mut self, i: usize, index: u64, command: Bytes) {
        if index >= self.base {
            let slot = (index - self.base) as usize;
            let log = &mut self.logs[i];
            if log.len() <= slot {
                log.resize(slot + 1, None);
            }
            log[slot] = Some(command);
        }
        self.last[i] = self.last[i].max(index);
        self.max_index = self.max_index.max(index);
    }

    /// The tester's `ingestSnap`: node `i` was given a snapshot up to `index`, of `data` made by
    /// [`Applied::snapshot_data`]. Its commands must agree with everyone's; they replace what the
    /// checker records for the node, which applies from `index + 1` next.
    fn ingest_snapshot(&mut self, i: usize, index: u64, data: &Bytes) {
        if let Ok(bytes) = <[u8; 8]>::try_from(&data[..]) {
            // A snapshot of `Snapshots::Every`: the index alone.
            let last = u64::from_le_bytes(bytes);
            if last != index {
                self.fail(format!(
                    "server {i} snapshot doesn't match m.SnapshotIndex ({last} != {index})"
                ));
            }
            self.next[i] = index + 1;
            self.last[i] = self.last[i].max(index);
            self.max_index = self.max_index.max(index);
            return;
        }
        let Some((last, commands)) = decode_snapshot(data) else {
            self.fail(format!("server {i} snapshot decode error"));
            return;
        };
        if last != index {
            self.fail(format!(
                "server {i} snapshot doesn't match m.SnapshotIndex ({last} != {index})"
            ));
            return;
        }
        for (command, at) in commands.into_iter().zip(1..) {
            self.check_agreement(i, at, &command);
            self.store(i, at, command);
        }
        self.next[i] = index + 1;
        self.trim();
    }

    /// The tester's snapshot of node `i` after applying `index`: `index` and every command the
    /// node applied at `1..=index`, or `None` if the checker no longer holds all of them.
    fn snapshot_data(&self, i: usize, index: u64) -> Option<Bytes> {
        let mut data = Vec::with_capacity(16 + index as usize * 12);
        data.extend_from_slice(&index.to_le_bytes());
        for at in 1..=index {
            let command = self.get(i, at)?;
            data.extend_from_slice(&(command.len() as u32).to_le_bytes());
            data.extend_from_slice(command);
        }
        Some(Bytes::from(data))
    }

    /// Forgets the oldest indices once twice the kept history has accumulated.
    fn trim(&mut self) {
        let Some(keep) = self.history else { return };
        if self.max_index.saturating_sub(self.base) < 2 * keep as u64 {
            return;
        }
        let drop = (self.max_index - self.base) as usize - keep;
        for log in &mut self.logs {
            log.drain(..drop.min(log.len()));
        }
        self.base += drop as u64;
    }
}

/// Shows a command the way the tester's messages do: as the integer it encodes when it is one.
fn show(command: &Bytes) -> String {
    match <[u8; 8]>::try_from(&command[..]) {
        Ok(bytes) => u64::from_le_bytes(bytes).to_string(),
        Err(_) => format!("<{} bytes>", command.len()),
    }
}

/// Counters at [`Cluster::begin`], for the `Passed` line.
struct Begin {
    description: String,
    at: Instant,
    rpcs: u64,
    bytes: u64,
    max_index: u64,
}

/// Called with `(node, message)` for every message a node applies; see
/// [`Cluster::with_observer`].
pub type ApplyObserver = Arc<dyn Fn(usize, &ApplyMsg) + Send + Sync>;

/// How to build a [`Cluster`].
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Number of nodes.
    pub nodes: usize,
    /// Whether the network starts unreliable.
    pub unreliable: bool,
    /// Settings of every node.
    pub config: Config,
    /// How many recent log indices the apply checkers remember for agreement checks. `None`
    /// (what the tester does) keeps everything; a long-running cluster under load wants a bound.
    /// Order is checked for every entry either way.
    pub history: Option<usize>,
    /// Where nodes keep their raft state.
    pub storage: ClusterStorage,
    /// Whether and how appliers give their nodes snapshots (see the module docs).
    pub snapshots: Snapshots,
}

/// How the appliers of a [`Cluster`] give their nodes snapshots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Snapshots {
    /// Never: logs are not compacted.
    #[default]
    Off,
    /// The tester's `applierSnap`: every [`SNAPSHOT_INTERVAL`] entries, with every command
    /// applied so far. Needs the whole history ([`ClusterOptions::history`] `None`).
    Tester,
    /// Every this many entries, with only the index, so that memory stays flat under load.
    Every(u64),
}

/// Where the nodes of a [`Cluster`] keep their raft state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ClusterStorage {
    /// In memory ([`MemStorage`]): the tester's persisters.
    #[default]
    Memory,
    /// Write-ahead logs in `dir/node-<i>`, created if missing.
    Files(PathBuf),
}

/// One node's slot: its current incarnation and where it keeps its state.
struct Slot {
    raft: Raft,
    alive: bool,
    storage: SlotStorage,
    applier: Option<JoinHandle<()>>,
}

enum SlotStorage {
    Memory(MemStorage),
    File(PathBuf),
}

/// N Raft nodes on an in-memory network, with the tester's controls and checks.
pub struct Cluster {
    n: usize,
    network: Network,
    /// Every node's current incarnation. A cold-path lock: the harness's bookkeeping.
    slots: Mutex<Vec<Slot>>,
    config: Config,
    observer: Option<ApplyObserver>,
    /// How appliers give their nodes snapshots.
    snapshots: Snapshots,
    /// The cluster id written in data directories.
    cluster_id: u64,
    applied: Arc<Mutex<Applied>>,
    created: Instant,
    begin: Mutex<Option<Begin>>,
    /// The round-robin cursor of [`Cluster::one`].
    next_one: AtomicUsize,
    finished: AtomicBool,
}

impl Cluster {
    /// The tester's `make_config`: `n` nodes with default settings, all connected, on a reliable
    /// or unreliable network.
    ///
    /// # Panics
    ///
    /// If `n` is 0 or above the engine's limit.
    pub fn new(n: usize, unreliable: bool) -> Self {
        Self::with_config(n, unreliable, Config::default())
    }

    /// Like [`Cluster::new`] with node settings of your choice (each node gets its own seed unless
    /// `config.seed` is set).
    ///
    /// # Panics
    ///
    /// If `n` is 0 or above the engine's limit, or `config` is invalid.
    pub fn with_config(n: usize, unreliable: bool, config: Config) -> Self {
        Self::with_options(ClusterOptions {
            nodes: n,
            unreliable,
            config,
            history: None,
            storage: ClusterStorage::Memory,
            snapshots: Snapshots::Off,
        })
    }

    /// A cluster built from [`ClusterOptions`].
    ///
    /// # Panics
    ///
    /// If the node count is 0 or above the engine's limit, or the node config is invalid.
    pub fn with_options(options: ClusterOptions) -> Self {
        Self::build(options, None)
    }

    /// Like [`Cluster::with_options`], and `observer` sees every applied message, on the
    /// applying node's applier thread, before the apply checker does. For measurements such as
    /// commit latency; it should be quick, as it delays that node's apply checking.
    ///
    /// # Panics
    ///
    /// As [`Cluster::with_options`].
    pub fn with_observer(options: ClusterOptions, observer: ApplyObserver) -> Self {
        Self::build(options, Some(observer))
    }

    /// Like [`Cluster::with_observer`], returning an error instead of panicking when a node's
    /// storage cannot be opened or recovered (for programs that show the cluster, such as the
    /// dashboard).
    ///
    /// # Errors
    ///
    /// What stopped the first node that could not start.
    ///
    /// # Panics
    ///
    /// If the node count is 0 or above the engine's limit.
    pub fn try_with_observer(
        options: ClusterOptions,
        observer: ApplyObserver,
    ) -> Result<Self, String> {
        Self::try_build(options, Some(observer))
    }

    fn build(options: ClusterOptions, observer: Option<ApplyObserver>) -> Self {
        Self::try_build(options, observer).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_build(options: ClusterOptions, observer: Option<ApplyObserver>) -> Result<Self, String> {
        let ClusterOptions {
            nodes: n,
            unreliable,
            config,
            history,
            storage,
            snapshots,
        } = options;
        if snapshots == Snapshots::Tester && history.is_some() {
            return Err(
                "the tester's snapshots hold every applied command: they need the whole history"
                    .into(),
            );
        }
        if snapshots == Snapshots::Every(0) {
            return Err("snapshots every 0 entries".into());
        }
        let mut net_config = NetworkConfig::new(n);
        net_config.seed = fastrand::u64(..);
        let network =
            Network::new(net_config).map_err(|e| format!("cannot build the network: {e}"))?;
        network.set_reliable(!unreliable);
        let cluster = Self {
            n,
            network,
            slots: Mutex::new(Vec::with_capacity(n)),
            config,
            observer,
            snapshots,
            cluster_id: fastrand::u64(..),
            applied: Arc::new(Mutex::new(Applied::new(n, history))),
            created: Instant::now(),
            begin: Mutex::new(None),
            next_one: AtomicUsize::new(0),
            finished: AtomicBool::new(false),
        };
        for i in 0..n {
            let storage = match &storage {
                ClusterStorage::Memory => SlotStorage::Memory(MemStorage::new()),
                ClusterStorage::Files(dir) => SlotStorage::File(dir.join(format!("node-{i}"))),
            };
            let (raft, applier) = cluster.start_incarnation(i, &storage)?;
            lock(&cluster.slots).push(Slot {
                raft,
                alive: true,
                storage,
                applier: Some(applier),
            });
        }
        for i in 0..n {
            cluster.network.connect(i);
        }
        Ok(cluster)
    }

    /// Starts a new incarnation of node `i` on a fresh endpoint, from `storage`, with its own
    /// applier thread.
    ///
    /// # Errors
    ///
    /// If the storage cannot be opened or recovered, or the node cannot start.
    fn start_incarnation(
        &self,
        i: usize,
        storage: &SlotStorage,
    ) -> Result<(Raft, JoinHandle<()>), String> {
        let endpoint = self
            .network
            .endpoint(i, fastrand::u64(..))
            .map_err(|e| format!("cannot attach node {i}: {e}"))?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let builder = Raft::builder(self.config.clone(), i, self.n, endpoint);
        let builder = match storage {
            SlotStorage::Memory(m) => builder.storage(m.clone()),
            SlotStorage::File(dir) => {
                let identity = Identity {
                    cluster: self.cluster_id,
                    node: i as u64,
                };
                let options = WalOptions {
                    create: true,
                    ..WalOptions::default()
                };
                let storage = FileStorage::open(dir, identity, options)
                    .map_err(|e| format!("cannot open node {i}'s storage: {e}"))?;
                builder.storage(storage)
            }
        };
        // The new incarnation applies from index 1 again.
        self.applied().next[i] = 1;
        let raft = builder
            .start(tx)
            .map_err(|e| format!("cannot start node {i}: {e}"))?;
        let applier = Applier {
            i,
            applied: self.applied.clone(),
            observer: self.observer.clone(),
            snapshots: self.snapshots,
            raft: (self.snapshots != Snapshots::Off).then(|| raft.clone()),
        };
        let applier = std::thread::Builder::new()
            .name(format!("applier-{i}"))
            .spawn(move || applier.run(rx))
            .map_err(|e| format!("cannot start node {i}'s applier thread: {e}"))?;
        Ok((raft, applier))
    }

    /// The tester's `crash1(i)`: disconnects node `i`, kills it, waits until its applier has
    /// checked everything it applied, and gives the node a copy of its storage. Does nothing more
    /// to a node that is down.
    pub fn crash(&self, i: usize) {
        self.disconnect(i);
        let mut slots = lock(&self.slots);
        let slot = &mut slots[i];
        if !slot.alive {
            return;
        }
        slot.alive = false;
        slot.raft.kill();
        if let Some(applier) = slot.applier.take() {
            // The node's thread has ended and dropped its end of the apply channel, so the
            // applier ends once it has checked what is left in it.
            let _ = applier.join();
        }
        if let SlotStorage::Memory(m) = &slot.storage {
            slot.storage = SlotStorage::Memory(m.copy());
        }
    }

    /// The tester's `start1(i)`: crashes node `i` if it is up, then starts a new incarnation of
    /// it from what it persisted, on a fresh endpoint, **not connected**.
    ///
    /// # Panics
    ///
    /// If the node's storage cannot be recovered.
    pub fn restart(&self, i: usize) {
        self.try_restart(i).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Like [`Cluster::restart`], returning an error instead of panicking if the node cannot
    /// start again (it then stays down).
    ///
    /// # Errors
    ///
    /// What stopped the node: its storage could not be opened or recovered.
    pub fn try_restart(&self, i: usize) -> Result<(), String> {
        self.crash(i);
        let mut slots = lock(&self.slots);
        let (raft, applier) = self.start_incarnation(i, &slots[i].storage)?;
        let slot = &mut slots[i];
        slot.raft = raft;
        slot.alive = true;
        slot.applier = Some(applier);
        Ok(())
    }

    /// Whether node `i` is up (not crashed).
    pub fn is_alive(&self, i: usize) -> bool {
        lock(&self.slots).get(i).is_some_and(|s| s.alive)
    }

    /// The tester's `LogSize`: the largest persisted raft state of any node, in bytes (for data
    /// directories, the size of their log segments).
    pub fn log_size(&self) -> u64 {
        lock(&self.slots)
            .iter()
            .map(|slot| match &slot.storage {
                SlotStorage::Memory(m) => m.size_bytes(),
                SlotStorage::File(dir) => directory_log_bytes(dir),
            })
            .max()
            .unwrap_or(0)
    }

    /// Number of nodes.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Node `i`'s current incarnation (a handle to a killed node after [`Cluster::crash`]).
    ///
    /// # Panics
    ///
    /// If `i` is out of range.
    pub fn raft(&self, i: usize) -> Raft {
        lock(&self.slots)[i].raft.clone()
    }

    /// Every node's current incarnation, by id.
    fn rafts(&self) -> Vec<Raft> {
        lock(&self.slots).iter().map(|s| s.raft.clone()).collect()
    }

    /// The network, for finer control than the tester's.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// Connects node `i` to every connected node.
    pub fn connect(&self, i: usize) {
        self.network.connect(i);
    }

    /// Cuts node `i` off from every other node.
    pub fn disconnect(&self, i: usize) {
        self.network.disconnect(i);
    }

    /// Whether node `i` is connected.
    pub fn is_connected(&self, i: usize) -> bool {
        self.network.is_connected(i)
    }

    /// Switches between the reliable and the unreliable network.
    pub fn set_unreliable(&self, unreliable: bool) {
        self.network.set_reliable(!unreliable);
    }

    /// Turns long reordering of replies on or off.
    pub fn set_long_reordering(&self, on: bool) {
        self.network.set_long_reordering(on);
    }

    /// Requests delivered to node `i`.
    pub fn rpc_count(&self, i: usize) -> u64 {
        self.network.rpc_count(i)
    }

    /// Requests handed to the network by all nodes.
    pub fn rpc_total(&self) -> u64 {
        self.network.rpc_total()
    }

    /// Wire bytes of all requests sent and replies delivered.
    pub fn bytes_total(&self) -> u64 {
        self.network.bytes_total()
    }

    fn applied(&self) -> MutexGuard<'_, Applied> {
        lock(&self.applied)
    }

    /// Entries applied so far, summed over all nodes, and the highest index any node applied.
    pub fn applied_totals(&self) -> (u64, u64) {
        let applied = self.applied();
        (applied.applied_total, applied.max_index)
    }

    /// The highest index node `i` has applied.
    pub fn last_applied(&self, i: usize) -> u64 {
        self.applied().last.get(i).copied().unwrap_or(0)
    }

    /// Panics with the apply checkers' first error, if there is one.
    pub fn check_apply_error(&self) {
        self.applied().check_error();
    }

    /// Starts a test: records the time and counters the `Passed` line reports against.
    pub fn begin(&self, description: &str) {
        let max_index = self.applied().max_index;
        *lock(&self.begin) = Some(Begin {
            description: description.to_owned(),
            at: Instant::now(),
            rpcs: self.rpc_total(),
            bytes: self.bytes_total(),
            max_index,
        });
    }

    /// Ends a test: fails it if it ran over [`TEST_TIME_LIMIT`] or an apply error was seen, then
    /// prints the description and the tester's `Passed` line (seconds, peers, RPCs, bytes,
    /// commits) as one block, so parallel tests do not interleave their lines.
    pub fn end(&self) {
        self.check_timeout();
        self.check_apply_error();
        self.finished.store(true, Relaxed);
        let begin = lock(&self.begin).take();
        let Some(begin) = begin else {
            panic!("end() without begin()")
        };
        let commits = self.applied().max_index - begin.max_index;
        println!(
            "{} ...\n  ... Passed --  {:4.1}  {} {:4} {:7} {:4}",
            begin.description,
            begin.at.elapsed().as_secs_f64(),
            self.n,
            self.rpc_total() - begin.rpcs,
            self.bytes_total() - begin.bytes,
            commits
        );
    }

    fn check_timeout(&self) {
        let took = self.created.elapsed();
        assert!(
            took <= TEST_TIME_LIMIT,
            "test took longer than 120 seconds ({:.1} s)",
            took.as_secs_f64()
        );
    }

    /// Checks that exactly one connected node leads in the highest term any connected leader has,
    /// and returns it. Polls up to 10 times, 450–549 ms apart.
    ///
    /// # Panics
    ///
    /// "term T has k (>1) leaders", or "expected one leader, got none" after about 5 s.
    pub fn check_one_leader(&self) -> usize {
        for _ in 0..10 {
            // The tester's poll interval: elections take a few hundred milliseconds.
            std::thread::sleep(Duration::from_millis(450 + fastrand::u64(0..100)));
            let mut leaders: Vec<(u64, usize)> = Vec::new();
            for i in (0..self.n).filter(|&i| self.is_connected(i)) {
                let (term, is_leader) = self.raft(i).get_state();
                if is_leader {
                    leaders.push((term, i));
                }
            }
            leaders.sort_unstable();
            for pair in leaders.windows(2) {
                if pair[0].0 == pair[1].0 {
                    let k = leaders.iter().filter(|l| l.0 == pair[0].0).count();
                    panic!("term {} has {k} (>1) leaders", pair[0].0);
                }
            }
            if let Some(&(_, leader)) = leaders.last() {
                return leader;
            }
        }
        panic!("expected one leader, got none");
    }

    /// Checks that every connected node is in the same term and returns it (0 if none is
    /// connected).
    ///
    /// # Panics
    ///
    /// "servers disagree on term".
    pub fn check_terms(&self) -> u64 {
        let mut term = None;
        for i in (0..self.n).filter(|&i| self.is_connected(i)) {
            let t = self.raft(i).get_state().0;
            match term {
                None => term = Some(t),
                Some(seen) => assert_eq!(seen, t, "servers disagree on term"),
            }
        }
        term.unwrap_or(0)
    }

    /// Checks that no connected node claims to lead.
    ///
    /// # Panics
    ///
    /// "expected no leader among connected servers, but N claims to be leader".
    pub fn check_no_leader(&self) {
        for i in (0..self.n).filter(|&i| self.is_connected(i)) {
            let (_, is_leader) = self.raft(i).get_state();
            assert!(
                !is_leader,
                "expected no leader among connected servers, but {i} claims to be leader"
            );
        }
    }

    /// How many nodes (connected or not) have applied `index`, and the command they agree on.
    ///
    /// # Panics
    ///
    /// On an apply error, or "committed values do not match" if two nodes differ.
    pub fn n_committed(&self, index: u64) -> (usize, Option<Bytes>) {
        let applied = self.applied();
        applied.check_error();
        let mut count = 0;
        let mut value: Option<&Bytes> = None;
        for i in 0..self.n {
            if let Some(cmd) = applied.get(i, index) {
                if let Some(v) = value {
                    assert_eq!(
                        v,
                        cmd,
                        "committed values do not match: index {index}, {} vs {}",
                        show(v),
                        show(cmd)
                    );
                }
                count += 1;
                value = Some(cmd);
            }
        }
        (count, value.cloned())
    }

    /// Waits for at least `n` nodes to apply `index` and returns the command. Gives up with
    /// `None` if `start_term` is given and some node moved past it.
    ///
    /// # Panics
    ///
    /// "only X decided for index I; wanted N" after about 30 s.
    pub fn wait(&self, index: u64, n: usize, start_term: Option<u64>) -> Option<Bytes> {
        let mut pause = Duration::from_millis(10);
        for _ in 0..30 {
            if self.n_committed(index).0 >= n {
                break;
            }
            // The tester's polling back-off: 10 ms doubling up to about a second.
            std::thread::sleep(pause);
            if pause < Duration::from_secs(1) {
                pause *= 2;
            }
            if let Some(term) = start_term
                && self.rafts().iter().any(|r| r.get_state().0 > term)
            {
                return None;
            }
        }
        let (count, value) = self.n_committed(index);
        assert!(
            count >= n,
            "only {count} decided for index {index}; wanted {n}"
        );
        value
    }

    /// Submits `command` to whichever node leads, retrying for up to 10 s, and waits until at
    /// least `expected` nodes applied it. Returns its index. With `retry`, a command that does not
    /// commit within 2 s is submitted again.
    ///
    /// # Panics
    ///
    /// "one(cmd) failed to reach agreement".
    pub fn one(&self, command: Bytes, expected: usize, retry: bool) -> u64 {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) && !self.finished.load(Relaxed) {
            let mut index = None;
            for _ in 0..self.n {
                let s = (self.next_one.fetch_add(1, Relaxed) + 1) % self.n;
                if self.is_connected(s) {
                    let (i, _, ok) = self.raft(s).start(command.clone());
                    if ok {
                        index = Some(i);
                        break;
                    }
                }
            }
            if let Some(index) = index {
                let t1 = Instant::now();
                while t1.elapsed() < Duration::from_secs(2) {
                    let (nd, value) = self.n_committed(index);
                    if nd > 0 && nd >= expected && value.as_ref() == Some(&command) {
                        return index;
                    }
                    // The tester's poll interval while waiting for agreement.
                    std::thread::sleep(Duration::from_millis(20));
                }
                assert!(retry, "one({}) failed to reach agreement", show(&command));
            } else {
                // No leader yet: the tester waits a little before asking again.
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.check_apply_error();
        panic!("one({}) failed to reach agreement", show(&command));
    }
}

/// Locks `mutex`, whether or not a panic poisoned it: a failed check panics while holding a
/// lock, and the cluster must still report and shut down.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The tester's applier of node `i`: checks every message the node applies, until its channel
/// closes, and gives the node snapshots as `snapshots` says (through `raft`).
struct Applier {
    i: usize,
    applied: Arc<Mutex<Applied>>,
    observer: Option<ApplyObserver>,
    snapshots: Snapshots,
    /// The node, unless snapshots are off.
    raft: Option<Raft>,
}

impl Applier {
    fn run(self, rx: Receiver<ApplyMsg>) {
        while let Ok(m) = rx.recv() {
            if let Some(observe) = &self.observer {
                observe(self.i, &m);
            }
            match m {
                ApplyMsg::Command { index, command, .. } => {
                    let snapshot = {
                        let mut applied = lock(&self.applied);
                        applied.record(self.i, index, command);
                        match self.snapshots {
                            Snapshots::Off => None,
                            Snapshots::Tester if (index + 1) % SNAPSHOT_INTERVAL == 0 => {
                                applied.snapshot_data(self.i, index)
                            }
                            Snapshots::Tester => None,
                            Snapshots::Every(n) => (index % n == 0)
                                .then(|| Bytes::copy_from_slice(&index.to_le_bytes())),
                        }
                    };
                    if let (Some(raft), Some(data)) = (&self.raft, snapshot) {
                        raft.snapshot(index, data);
                    }
                }
                ApplyMsg::Snapshot { index, data, .. } => {
                    lock(&self.applied).ingest_snapshot(self.i, index, &data);
                }
            }
        }
    }
}

/// The index and commands of a snapshot made by [`Applied::snapshot_data`].
fn decode_snapshot(data: &Bytes) -> Option<(u64, Vec<Bytes>)> {
    let index = u64::from_le_bytes(data.get(..8)?.try_into().ok()?);
    let mut commands = Vec::with_capacity(usize::try_from(index).ok()?.min(1 << 20));
    let mut at = 8;
    while at < data.len() {
        let len = u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?) as usize;
        at += 4;
        commands.push(data.slice(at..at.checked_add(len).filter(|&end| end <= data.len())?));
        at += len;
    }
    (commands.len() as u64 == index).then_some((index, commands))
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.finished.store(true, Relaxed);
        let mut slots = std::mem::take(&mut *lock(&self.slots));
        for slot in &slots {
            slot.raft.kill();
        }
        for slot in &mut slots {
            if let Some(applier) = slot.applier.take() {
                let _ = applier.join();
            }
        }
    }
}

/// Bytes in the write-ahead log segments of a data directory (0 if it cannot be read).
fn directory_log_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "wal"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
