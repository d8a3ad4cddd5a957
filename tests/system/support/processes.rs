//! A cluster of `zeroraft serve` processes for tests: bootstrapped (each node's data directory
//! made with `zeroraft init` before its first start), started, killed with SIGKILL and restarted
//! from their data directories, on loopback or in the namespaces of a
//! [`Topology`](super::netns::Topology).

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, Ordering::Relaxed};
use std::time::{Duration, Instant};

use zeroraft::kv::protocol::NodeStatus;
use zeroraft::kv::{ClientOptions, KvClient};
use zeroraft::transport::tcp::{ClientTls, PeerTls};

use super::netns::Topology;

/// The port nodes listen on for peers inside namespaces (each namespace has its own ports).
const NS_PEER_PORT: u16 = 7000;
/// The port nodes listen on for clients inside namespaces.
const NS_CLIENT_PORT: u16 = 8000;

/// Ports handed out on loopback: below the kernel's ephemeral range (32768 and up by default),
/// so that no client connection of the test takes one between a node's kill and its restart.
static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// A loopback port that is free now, from a range no ephemeral port comes from.
fn free_port() -> u16 {
    if NEXT_PORT.load(Relaxed) == 0 {
        let start = 20_000 + (std::process::id() % 400) as u16 * 30;
        let _ = NEXT_PORT.compare_exchange(0, start, Relaxed, Relaxed);
    }
    loop {
        let port = NEXT_PORT.fetch_add(1, Relaxed);
        assert!(port < 32_000, "ran out of test ports");
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
}

/// How a node process is started.
struct NodeSpec {
    /// Runs the program in the node's namespace (empty on loopback).
    prefix: Vec<String>,
    peers: String,
    listen: SocketAddr,
    /// Where the test reaches the node's clients port.
    client: SocketAddr,
    data: PathBuf,
    log: PathBuf,
    /// Where it serves its metrics, if it does ([`ProcessCluster::serve_metrics`]).
    metrics: Option<SocketAddr>,
    /// Arguments it is started with beyond the usual ones.
    extra: Vec<String>,
    /// Where the other nodes reach it, for a node added to the running cluster
    /// ([`ProcessCluster::add_node`]): it joins (`init --join`) and starts without `--peers`.
    joins: Option<SocketAddr>,
}

/// `zeroraft serve` processes, one per node.
pub struct ProcessCluster {
    nodes: Vec<NodeSpec>,
    children: Vec<Option<Child>>,
    read_mode: String,
    /// The cluster's id, given to every node's `init`.
    cluster: u64,
    /// Whether node `i`'s data directory was initialized (before its first start).
    initialized: Vec<bool>,
    /// How node `i`'s process last exited on its own, if it did.
    exits: Vec<Option<ExitStatus>>,
    /// The arguments that choose how nodes speak to each other: `--insecure` unless
    /// [`ProcessCluster::with_tls`].
    links: Vec<String>,
    /// With [`ProcessCluster::with_tls`], how the test's clients speak TLS to the nodes: with
    /// the operator's certificate.
    client_tls: Option<ClientTls>,
    /// Holds the data directories and logs; removed on drop.
    _dir: tempfile::TempDir,
}

impl ProcessCluster {
    /// `n` nodes on loopback, not started.
    pub fn loopback(n: usize, read_mode: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let peer_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let peers = peer_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = (0..n)
            .map(|i| {
                let client = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
                NodeSpec {
                    prefix: Vec::new(),
                    peers: peers.clone(),
                    listen: client,
                    client,
                    data: dir.path().join(format!("node-{i}")),
                    log: dir.path().join(format!("node-{i}.log")),
                    metrics: None,
                    extra: Vec::new(),
                    joins: None,
                }
            })
            .collect();
        Self::new(nodes, read_mode, dir)
    }

    /// One node in each of the first `n` namespaces of `topology`, not started: node `i`
    /// reaches node `j` at `j`'s own address over their link, and the test reaches every node
    /// over its client link. The namespaces beyond `n` are spare, for nodes added later
    /// ([`ProcessCluster::add_node_in`]).
    pub fn in_namespaces(topology: &Topology, n: usize, read_mode: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let peers = (0..n)
            .map(|j| format!("{}:{NS_PEER_PORT}", topology.node_ip(j)))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = (0..n)
            .map(|i| {
                let peers = peers.clone();
                NodeSpec {
                    prefix: topology.exec_in(i),
                    peers,
                    listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, NS_CLIENT_PORT)),
                    client: SocketAddr::from((topology.client_ip(i), NS_CLIENT_PORT)),
                    data: dir.path().join(format!("node-{i}")),
                    log: dir.path().join(format!("node-{i}.log")),
                    metrics: None,
                    extra: Vec::new(),
                    joins: None,
                }
            })
            .collect();
        Self::new(nodes, read_mode, dir)
    }

    fn new(nodes: Vec<NodeSpec>, read_mode: &str, dir: tempfile::TempDir) -> Self {
        Self {
            children: nodes.iter().map(|_| None).collect(),
            initialized: vec![false; nodes.len()],
            exits: vec![None; nodes.len()],
            links: vec!["--insecure".into()],
            client_tls: None,
            nodes,
            read_mode: read_mode.to_owned(),
            cluster: fastrand::u64(1..),
            _dir: dir,
        }
    }

    /// Keeps node `i`'s data in `path` instead (a directory that does not exist yet or is empty,
    /// such as a mount point), for a node not started yet.
    pub fn set_data(&mut self, i: usize, path: PathBuf) {
        assert!(!self.initialized[i], "node {i} was started already");
        self.nodes[i].data = path;
    }

    /// Has every node (on loopback) serve its metrics and health on a port of its own
    /// (`serve --metrics`), from its next start.
    pub fn serve_metrics(&mut self) {
        for node in &mut self.nodes {
            node.metrics = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, free_port())));
        }
    }

    /// Where node `i` serves its metrics and health.
    ///
    /// # Panics
    ///
    /// If [`ProcessCluster::serve_metrics`] was not called.
    pub fn metrics_addr(&self, i: usize) -> SocketAddr {
        self.nodes[i].metrics.expect("the nodes serve metrics")
    }

    /// Starts node `i` with `args` beyond the usual ones, from its next start.
    pub fn set_args(&mut self, i: usize, args: &[&str]) {
        self.nodes[i].extra = args.iter().map(|a| (*a).to_owned()).collect();
    }

    /// Sends node `i`'s process `signal` (a name `kill -s` takes: `STOP`, `CONT`).
    pub fn signal(&self, i: usize, signal: &str) {
        let child = self.children[i]
            .as_ref()
            .unwrap_or_else(|| panic!("node {i} is not running"));
        let status = Command::new("kill")
            .args(["-s", signal, &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {signal} node {i}");
    }

    /// A node for the running cluster (on loopback), with the next id and ports of its own,
    /// not added or started: the test adds it (`zeroraft admin add`, [`ProcessCluster::admin`]
    /// with [`ProcessCluster::peer_addr`] and the client address), then [`ProcessCluster::start`]
    /// initializes it with `zeroraft init --join` through a running node and starts it without
    /// `--peers`. Returns its id.
    pub fn add_node(&mut self) -> usize {
        let i = self.nodes.len();
        let client = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        self.nodes.push(NodeSpec {
            prefix: Vec::new(),
            peers: String::new(),
            listen: client,
            client,
            data: self._dir.path().join(format!("node-{i}")),
            log: self._dir.path().join(format!("node-{i}.log")),
            metrics: None,
            extra: Vec::new(),
            joins: Some(peer),
        });
        self.children.push(None);
        self.initialized.push(false);
        self.exits.push(None);
        i
    }

    /// Where the other nodes reach node `i`, for a node of [`ProcessCluster::add_node`].
    pub fn peer_addr(&self, i: usize) -> SocketAddr {
        self.nodes[i]
            .joins
            .expect("a node added to the running cluster")
    }

    /// Runs `zeroraft admin` with `args` against the running nodes (as the nodes' links are set
    /// up: plaintext, or TLS with the operator's certificate): its exit status, stdout and
    /// stderr.
    pub fn admin(&self, args: &[&str]) -> (ExitStatus, String, String) {
        let connect = (0..self.len())
            .filter(|&i| self.is_running(i))
            .map(|i| self.nodes[i].client.to_string())
            .collect::<Vec<_>>()
            .join(",");
        self.admin_through(&connect, args)
    }

    /// Runs `zeroraft admin --connect CONNECT ARGS` with this cluster's links; returns its exit
    /// status, stdout and stderr.
    fn admin_through(&self, connect: &str, args: &[&str]) -> (ExitStatus, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_zeroraft"))
            .args(["admin", "--connect", connect])
            .args(&self.links)
            .args(args)
            .output()
            .expect("run zeroraft admin");
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Where clients reach each node, in node order.
    pub fn client_addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.client).collect()
    }

    /// A client of the whole cluster whose operations give up after `timeout`.
    pub fn client(&self, timeout: Duration) -> KvClient {
        let options = ClientOptions {
            op_timeout: timeout,
            attempt_timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_millis(200),
            tls: self.client_tls.clone(),
            ..ClientOptions::default()
        };
        KvClient::new(self.client_addrs(), options)
    }

    /// The same cluster with mutual TLS between its nodes and on their client ports, with
    /// certificates `zeroraft certs` makes; the test's clients hold the operator's.
    pub fn with_tls(mut self) -> Self {
        let certs = self._dir.path().join("certs");
        let out = Command::new(env!("CARGO_BIN_EXE_zeroraft"))
            .args(["certs", "--nodes", &self.len().to_string()])
            .args(["--cluster", &self.cluster.to_string()])
            .arg("--out")
            .arg(&certs)
            .output()
            .expect("run zeroraft certs");
        assert!(
            out.status.success(),
            "zeroraft certs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.links = vec!["--tls-dir".into(), certs.display().to_string()];
        let read = |name: &str| std::fs::read(certs.join(name)).expect("a certificate file");
        let settings = PeerTls::from_pem(&read("ca.pem"), &read("admin.pem"), &read("admin.key"))
            .expect("the operator's certificate");
        self.client_tls = Some(ClientTls::new(&settings, self.cluster).expect("client TLS"));
        self
    }

    /// Where [`ProcessCluster::with_tls`] wrote the certificates.
    pub fn certs_dir(&self) -> PathBuf {
        self._dir.path().join("certs")
    }

    /// Starts every node.
    pub fn start_all(&mut self) {
        for i in 0..self.len() {
            self.start(i);
        }
    }

    /// Initializes node `i`'s data directory, as `zeroraft init` does when a cluster is
    /// bootstrapped.
    fn init(&mut self, i: usize) {
        let spec = &self.nodes[i];
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_zeroraft"));
        cmd.args(["init", "--id", &i.to_string()]);
        if spec.joins.is_some() {
            // Through any running node's client port.
            let through = (0..self.len())
                .find(|&j| j != i && self.is_running(j))
                .expect("a running node to join through");
            cmd.args(["--join", &self.nodes[through].client.to_string()]);
            if self.links[0] == "--tls-dir" {
                cmd.args(&self.links);
            }
        } else {
            cmd.args(["--peers", &spec.peers])
                .args(["--cluster", &self.cluster.to_string()]);
        }
        let out = cmd
            .arg("--data")
            .arg(&spec.data)
            .output()
            .expect("run zeroraft init");
        assert!(
            out.status.success(),
            "zeroraft init of node {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.initialized[i] = true;
    }

    /// Starts node `i` (again) from its data directory, initializing it before its first
    /// start, and waits until it serves clients.
    pub fn start(&mut self, i: usize) {
        if !self.initialized[i] {
            self.init(i);
        }
        self.spawn(i, &[]);
        let until = Instant::now() + Duration::from_secs(30);
        while self.status(i).is_none() {
            if let Some(Ok(Some(status))) = self.children[i].as_mut().map(|c| c.try_wait()) {
                panic!("node {i} exited with {status}: {}", self.log(i));
            }
            assert!(
                Instant::now() < until,
                "node {i} does not serve clients: {}",
                self.log(i)
            );
            std::thread::sleep(Duration::from_millis(20)); // polling its port
        }
    }

    /// Starts node `i` from its data directory as it is (never initializing it), with `extra`
    /// arguments, expecting it to refuse: waits for the process to exit and returns its status
    /// and what it wrote to stderr this time.
    pub fn start_refused(&mut self, i: usize, extra: &[&str]) -> (ExitStatus, String) {
        let before = self.log(i).len();
        self.spawn(i, extra);
        let status = self.wait_exit(i, Duration::from_secs(30));
        let status = status.unwrap_or_else(|| panic!("node {i} did not exit: {}", self.log(i)));
        (status, self.log(i)[before..].to_owned())
    }

    /// Waits up to `patience` for node `i`'s process to exit on its own, and reaps it.
    pub fn wait_exit(&mut self, i: usize, patience: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + patience;
        loop {
            let child = self.children[i].as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.children[i] = None;
                self.exits[i] = Some(status);
                return Some(status);
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20)); // polling the process
        }
    }

    /// How node `i`'s process last exited on its own, as [`ProcessCluster::wait_exit`] saw it.
    pub fn last_exit(&self, i: usize) -> Option<ExitStatus> {
        self.exits[i]
    }

    /// The `--peers` every node is given.
    pub fn peer_list(&self) -> &str {
        &self.nodes[0].peers
    }

    /// Runs `zeroraft serve` for node `i`, with `extra` arguments after the usual ones.
    fn spawn(&mut self, i: usize, extra: &[&str]) {
        assert!(self.children[i].is_none(), "node {i} is running");
        let spec = &self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .expect("a log file");
        let exe = env!("CARGO_BIN_EXE_zeroraft");
        let (program, args) = match spec.prefix.split_first() {
            Some((p, rest)) => (p.clone(), rest.to_vec()),
            None => (exe.to_owned(), Vec::new()),
        };
        let mut cmd = Command::new(program);
        cmd.args(args);
        if !spec.prefix.is_empty() {
            cmd.arg(exe);
        }
        cmd.args(["serve", "--id", &i.to_string()]);
        if spec.joins.is_none() {
            cmd.args(["--peers", &spec.peers]);
        }
        cmd.args(&self.links)
            .args(["--listen", &spec.listen.to_string()])
            .arg("--data")
            .arg(&spec.data)
            .args(["--read-mode", &self.read_mode])
            .args(spec.metrics.map(|addr| format!("--metrics={addr}")))
            .args(&spec.extra)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = cmd.spawn().expect("spawn zeroraft serve");
        self.children[i] = Some(child);
    }

    /// Kills node `i` with SIGKILL, as a crash would, and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether node `i`'s process is running.
    pub fn is_running(&self, i: usize) -> bool {
        self.children[i].is_some()
    }

    /// Node `i`'s status, or `None` if it does not answer.
    pub fn status(&self, i: usize) -> Option<NodeStatus> {
        let client = KvClient::new(
            vec![self.nodes[i].client],
            ClientOptions {
                connect_timeout: Duration::from_millis(200),
                attempt_timeout: Duration::from_millis(500),
                tls: self.client_tls.clone(),
                ..ClientOptions::default()
            },
        );
        client.status(self.nodes[i].client).ok()
    }

    /// The node that leads now, by its own account, waiting up to `patience` for one.
    pub fn leader(&self, patience: Duration) -> Option<usize> {
        let until = Instant::now() + patience;
        loop {
            let leader = (0..self.len()).filter(|&i| self.is_running(i)).find(|&i| {
                self.status(i)
                    .is_some_and(|s| s.role == zeroraft::Role::Leader)
            });
            if leader.is_some() || Instant::now() >= until {
                return leader;
            }
            std::thread::sleep(Duration::from_millis(20)); // polling the nodes' statuses
        }
    }

    /// What node `i` wrote to stderr.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// Node `i`'s data directory.
    pub fn data(&self, i: usize) -> &Path {
        &self.nodes[i].data
    }
}

/// Nodes added to a running cluster in namespaces.
impl ProcessCluster {
    /// A node for the running cluster in namespace `ns` of `topology` (a spare one, or one whose
    /// node was removed and stopped), with the next id, not added or started: as
    /// [`ProcessCluster::add_node`], with the namespace's own address for its peers and its
    /// client link for clients. Returns its id.
    pub fn add_node_in(&mut self, topology: &Topology, ns: usize) -> usize {
        let i = self.nodes.len();
        self.nodes.push(NodeSpec {
            prefix: topology.exec_in(ns),
            peers: String::new(),
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, NS_CLIENT_PORT)),
            client: SocketAddr::from((topology.client_ip(ns), NS_CLIENT_PORT)),
            data: self._dir.path().join(format!("node-{i}")),
            log: self._dir.path().join(format!("node-{i}.log")),
            metrics: None,
            extra: Vec::new(),
            joins: Some(SocketAddr::from((topology.node_ip(ns), NS_PEER_PORT))),
        });
        self.children.push(None);
        self.initialized.push(false);
        self.exits.push(None);
        i
    }

    /// Runs `zeroraft admin` with `args` against node `i` only: its exit status, stdout and
    /// stderr.
    pub fn admin_at(&self, i: usize, args: &[&str]) -> (ExitStatus, String, String) {
        self.admin_through(&self.nodes[i].client.to_string(), args)
    }

    /// Initializes added node `i` with `zeroraft init --join` through the running nodes in
    /// turn (one cut off or behind may not know the node yet), trying again for up to
    /// `patience`, then starts it as [`ProcessCluster::start`] does.
    ///
    /// # Panics
    ///
    /// If no node lets it join within `patience`.
    pub fn join_and_start(&mut self, i: usize, patience: Duration) {
        let until = Instant::now() + patience;
        let mut why = Vec::new();
        while !self.initialized[i] {
            for through in (0..self.len()).filter(|&j| j != i && self.is_running(j)) {
                let out = Command::new(env!("CARGO_BIN_EXE_zeroraft"))
                    .args(["init", "--id", &i.to_string()])
                    .args(["--join", &self.nodes[through].client.to_string()])
                    .args(self.links.iter().filter(|_| self.links[0] == "--tls-dir"))
                    .arg("--data")
                    .arg(&self.nodes[i].data)
                    .output()
                    .expect("run zeroraft init");
                if out.status.success() {
                    self.initialized[i] = true;
                    break;
                }
                why.push(format!(
                    "through node {through}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
                // A failed attempt may have left a partial directory: start afresh.
                let _ = std::fs::remove_dir_all(&self.nodes[i].data);
            }
            assert!(
                self.initialized[i] || Instant::now() < until,
                "node {i} could not join: {why:#?}"
            );
            if !self.initialized[i] {
                std::thread::sleep(Duration::from_millis(200)); // the cluster settling
            }
        }
        self.start(i);
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for i in 0..self.len() {
            self.kill(i);
        }
    }
}
