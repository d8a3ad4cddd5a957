//! The command line, as clap parses it: the dashboard (the default, also `zeroraft dashboard`)
//! and `bench` run a cluster in this process; `serve`, `kv` and `monitor --connect` work with a
//! cluster of processes.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use zeroraft_monitor::Rate;

const EXIT_STATUS: &str = "\
SIGINT, SIGTERM and SIGHUP stop a run as its end does: the dashboard restores the terminal,
--headless and bench print their summary, serve stops its node, and a temporary data directory is
removed. A second one ends it at once. Output into a pipe nobody reads any more (`| head -1`)
stops it quietly.

Exit status: 0 on success (also when the output's reader went away, and for serve stopped by a
signal), 1 when running fails, 2 for a bad argument or an unusable data directory (for serve: also
one never initialized, or that lost what it held), 128 + N after signal N for a run with a length
(130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP). serve exits when its node stops on its own:
3 its disk is full, 4 its storage failed otherwise, 5 its state machine failed (a snapshot it
cannot restore, a panic), 6 an internal error (a broken invariant of the engine).";

/// The whole command line.
#[derive(Debug, Parser)]
#[command(
    name = "zeroraft",
    version,
    about = "A Raft cluster under client load in a live terminal dashboard (press ? there for the \
             keys), a benchmark of the engine, or a node of a replicated key-value service",
    args_conflicts_with_subcommands = true,
    after_help = EXIT_STATUS
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    dashboard: DashboardArgs,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Runs a Raft cluster in this process under client load and shows it in a live terminal
    /// dashboard (what `zeroraft` alone does).
    Dashboard(DashboardArgs),
    /// Measures the engine without a terminal: a closed loop of client proposals on the
    /// reliable in-memory network, with a progress line each second and a summary at the end
    /// (commits/s, CPU µs per commit for the whole process, latency percentiles from start to
    /// the leader's apply).
    Bench(BenchArgs),
    /// Initializes the data directory of one node of a new key-value service cluster: run once
    /// per node when the cluster is bootstrapped, each with the same --peers and --cluster and
    /// its own --id (without --cluster, a random cluster id is chosen and printed, to give the
    /// other nodes). Never for a node whose data was lost: see docs/serve.md.
    Init(InitArgs),
    /// Runs one node of a replicated key-value service: its raft state in a write-ahead log in
    /// --data (initialized with `zeroraft init`), its peers reached over TCP, clients served on
    /// --listen. Start one per node, each with the same --peers and its own --id.
    Serve(ServeArgs),
    /// Makes the certificates of a local cluster: a CA (ca.pem, ca.key); for each node, a
    /// certificate naming it and its key (node-I.pem, node-I.key), for `serve --tls-dir`; a
    /// client's (client.pem, client.key) and an operator's (admin.pem, admin.key), for the
    /// client commands' --tls-dir; and the cluster's id in `cluster`. Keep ca.key offline; it
    /// signs new certificates.
    Certs(CertsArgs),
    /// Reads or changes a key of a running key-value service.
    Kv(KvArgs),
    /// Shows or changes the members of a running key-value service (see docs/serve.md):
    /// `members`, `add` (as a learner), `promote`, `remove`.
    Admin(AdminArgs),
    /// Shows a running cluster of `zeroraft serve` processes in the live terminal dashboard,
    /// reached through their client ports: each node's state, the links between the processes
    /// and their traffic. Leadership can be transferred from there; the keys that cut links,
    /// crash nodes or change the load are not offered.
    Monitor(MonitorArgs),
}

/// Options of `zeroraft monitor`.
#[derive(Args, Clone, Debug, PartialEq)]
pub(crate) struct MonitorArgs {
    /// The client addresses of the nodes (their --listen), in node order, separated by commas
    #[arg(long, value_name = "ADDR,ADDR,...", value_parser = addresses)]
    pub(crate) connect: Addresses,
    #[command(flatten)]
    pub(crate) security: ClientSecurity,
}

/// How a client command reaches the nodes' client ports: as `serve` was started.
#[derive(Args, Clone, Debug, Default, PartialEq)]
pub(crate) struct ClientSecurity {
    /// Mutual TLS to the nodes, with the certificates of `zeroraft certs` in DIR: ca.pem, the
    /// cluster's id in `cluster`, and client.pem and client.key (`monitor`: admin.pem and
    /// admin.key if there, for leadership transfer and the nodes' full status)
    #[arg(long = "tls-dir", value_name = "DIR", value_parser = directory,
          required_unless_present = "insecure", conflicts_with = "insecure")]
    pub(crate) tls_dir: Option<PathBuf>,
    /// Plaintext to the nodes, which were started with --insecure: anyone on the network can
    /// read and change what passes
    #[arg(long)]
    pub(crate) insecure: bool,
}

/// Options of `zeroraft serve`.
#[derive(Args, Clone, Debug, PartialEq)]
pub(crate) struct ServeArgs {
    /// This node's id: its position in --peers, from 0, or the id it joined under (below 64)
    #[arg(long, value_name = "I", value_parser = number_in(0usize..=63))]
    pub(crate) id: usize,
    /// Where every node the cluster was initialized with listens for the others, in node
    /// order, separated by commas (this node listens on its own entry, which may be
    /// 0.0.0.0:PORT). Not for a node that joined a running cluster (`init --join`): it takes
    /// its peers from its data directory
    #[arg(long, value_name = "ADDR,ADDR,...", value_parser = addresses)]
    pub(crate) peers: Option<Addresses>,
    /// Where this node listens for clients
    #[arg(long, value_name = "ADDR", value_parser = address)]
    pub(crate) listen: std::net::SocketAddr,
    /// This node's data directory, made by `zeroraft init`; a restarted node recovers from it
    /// (needed with --storage file). A missing or empty one is refused
    #[arg(long, value_name = "DIR", value_parser = directory, required_if_eq("storage", "file"))]
    pub(crate) data: Option<PathBuf>,
    /// Mutual TLS between nodes and on the client port, with the certificates of `zeroraft
    /// certs` in DIR: ca.pem, and node-I.pem and node-I.key for this node's --id I. Clients
    /// then need a certificate of the same CA (client.pem, or admin.pem for leadership transfer)
    #[arg(long = "tls-dir", value_name = "DIR", value_parser = directory,
          required_unless_present = "insecure", conflicts_with = "insecure")]
    pub(crate) tls_dir: Option<PathBuf>,
    /// Plaintext links between nodes and to clients: anyone who can reach the peer port can
    /// speak as any node, and anyone who can reach the client port can do anything a client or
    /// an operator can. For a trusted network only
    #[arg(long)]
    pub(crate) insecure: bool,
    /// Where the node keeps its raft state: a write-ahead log in --data, or memory (lost when
    /// the process ends: a restarted node comes back empty, which is unsafe; for measuring the
    /// service without a disk only)
    #[arg(long, value_name = "KIND", default_value = "file",
          value_parser = PossibleValuesParser::new(["file", "memory"]).map(StorageKind::from_name))]
    pub(crate) storage: StorageKind,
    /// The cluster's id, the same on every node: nodes of different clusters refuse each other.
    /// By default the one the data directory records (with --storage memory, 1)
    #[arg(long, value_name = "ID", value_parser = number_in(0u64..=u64::MAX))]
    pub(crate) cluster: Option<u64>,
    /// Most client connections served at once; more are refused (a client then tries another
    /// node, or waits)
    #[arg(long = "max-connections", value_name = "N", default_value = "256",
          value_parser = number_in(1usize..=65536))]
    pub(crate) max_connections: usize,
    /// A client connection that sends nothing for this many seconds is closed
    #[arg(long = "idle-timeout", value_name = "S", default_value = "60",
          value_parser = number_in(1u64..=86400))]
    pub(crate) idle_timeout: u64,
    /// A client connection whose request is not whole this many seconds after its first byte
    /// arrived is closed
    #[arg(long = "frame-timeout", value_name = "S", default_value = "5",
          value_parser = number_in(1u64..=3600))]
    pub(crate) frame_timeout: u64,
    /// A client session idle for this many seconds is dropped when another client registers
    /// (its next write then fails as expired instead of being applied twice)
    #[arg(long = "session-timeout", value_name = "S", default_value = "3600",
          value_parser = number_in(1u64..=30 * 86400))]
    pub(crate) session_timeout: u64,
    /// The most client sessions kept: registering one more drops the least recently active
    #[arg(long = "max-sessions", value_name = "N", default_value = "10000",
          value_parser = number_in(1usize..=10_000_000))]
    pub(crate) max_sessions: usize,
    /// How Gets are answered: `index` (ReadIndex: a heartbeat round confirms the leader), `lease`
    /// (a leader lease, assuming bounded clock drift), `log` (through the log), or
    /// `unsafe-local` (from any node's local state, NOT linearizable: only for testing the
    /// linearizability checker)
    #[arg(long = "read-mode", value_name = "MODE", default_value = "index",
          value_parser = PossibleValuesParser::new(["index", "lease", "log", "unsafe-local"]))]
    pub(crate) read_mode: String,
    /// The node snapshots its state and compacts its log every N applied entries (0: not by
    /// entries)
    #[arg(long = "compact-every", value_name = "N", default_value = "100000",
          value_parser = number_in(0u64..=u64::MAX))]
    pub(crate) compact_every: u64,
    /// ... and whenever its log holds more than this many MiB of commands (0: not by size)
    #[arg(long = "compact-above-mib", value_name = "MIB", default_value = "64",
          value_parser = number_in(0u64..=1 << 40))]
    pub(crate) compact_above_mib: u64,
    /// Most bytes of commands the leader keeps sent to one follower and not yet acknowledged
    /// (a slow follower or link holds at most this much of its memory in messages)
    #[arg(long = "max-inflight-bytes", value_name = "BYTES", default_value = "8388608",
          value_parser = number_in(1usize..=1 << 40))]
    pub(crate) max_inflight_bytes: usize,
    /// Serve Prometheus metrics on http://ADDR/metrics, and the health endpoints /healthz
    /// (alive) and /readyz (knows a leader and has caught up); see docs/metrics.md
    #[arg(long, value_name = "ADDR", value_parser = address)]
    pub(crate) metrics: Option<std::net::SocketAddr>,
    /// How log lines on stderr are written: `text` for people, `json` (one object per line,
    /// with the node's id, term and role) for log shippers
    #[arg(long = "log-format", value_name = "FORMAT", default_value = "text",
          value_parser = PossibleValuesParser::new(["text", "json"]))]
    pub(crate) log_format: String,
    /// The least severe log lines written
    #[arg(long = "log-level", value_name = "LEVEL", default_value = "warn",
          value_parser = PossibleValuesParser::new(["error", "warn", "info", "debug", "trace"]))]
    pub(crate) log_level: String,
}

/// Options of `zeroraft init`.
#[derive(Args, Clone, Debug, PartialEq)]
pub(crate) struct InitArgs {
    /// This node's id: its position in --peers, from 0; with --join, the id it was added under
    /// (`zeroraft admin add --id I`)
    #[arg(long, value_name = "I", value_parser = number_in(0usize..=63))]
    pub(crate) id: usize,
    /// Where every node listens for the others, in node order, separated by commas: the
    /// cluster's members, recorded in the directory
    #[arg(long, value_name = "ADDR,ADDR,...", value_parser = addresses,
          required_unless_present = "join", conflicts_with = "join")]
    pub(crate) peers: Option<Addresses>,
    /// Joins a running cluster instead, through the client port of any of its nodes: takes the
    /// cluster's id, configuration and addresses from it. The node must have been added first
    /// with `zeroraft admin add`
    #[arg(long, value_name = "ADDR", value_parser = address, conflicts_with = "cluster")]
    pub(crate) join: Option<SocketAddr>,
    /// With --join: the certificates of `zeroraft certs` to reach the cluster with (the
    /// operator's, admin.pem); plaintext without
    #[arg(long = "tls-dir", value_name = "DIR", value_parser = directory, requires = "join")]
    pub(crate) tls_dir: Option<PathBuf>,
    /// The data directory to make: it must not exist, or be empty
    #[arg(long, value_name = "DIR", value_parser = directory)]
    pub(crate) data: PathBuf,
    /// The cluster's id: the same for every node (by default a random one, printed)
    #[arg(long, value_name = "ID", value_parser = number_in(1u64..=u64::MAX))]
    pub(crate) cluster: Option<u64>,
}

/// Options of `zeroraft certs`.
#[derive(Args, Clone, Debug, PartialEq)]
pub(crate) struct CertsArgs {
    /// The directory to write them to: it must not exist, or be empty
    #[arg(long, value_name = "DIR", value_parser = directory,
          required_unless_present = "add_node", conflicts_with = "add_node")]
    pub(crate) out: Option<PathBuf>,
    /// Nodes in the cluster: certificates for ids 0 to N-1
    #[arg(long, value_name = "N", value_parser = number_in(1usize..=9),
          required_unless_present = "add_node", conflicts_with = "add_node")]
    pub(crate) nodes: Option<usize>,
    /// The cluster's id (what `zeroraft init` printed or was given): each certificate names it
    #[arg(long, value_name = "ID", value_parser = number_in(0u64..=u64::MAX),
          required_unless_present = "add_node", conflicts_with = "add_node")]
    pub(crate) cluster: Option<u64>,
    /// How many days the certificates are valid
    #[arg(long, value_name = "DAYS", default_value = "365", value_parser = number_in(1u64..=36500))]
    pub(crate) days: u64,
    /// Instead, issues a certificate for node I, added to the running cluster, with the CA in
    /// --dir (ca.pem, ca.key; the cluster's id from its `cluster` file): writes node-I.pem and
    /// node-I.key there
    #[arg(long = "add-node", value_name = "I", value_parser = number_in(0usize..=63), requires = "dir")]
    pub(crate) add_node: Option<usize>,
    /// With --add-node: the directory `zeroraft certs` wrote
    #[arg(long, value_name = "DIR", value_parser = directory, requires = "add_node")]
    pub(crate) dir: Option<PathBuf>,
}

/// Options of `zeroraft kv`.
#[derive(Args, Clone, Debug, PartialEq)]
pub(crate) struct KvArgs {
    /// The client addresses of the nodes (their --listen), in node order, separated by commas
    #[arg(long, value_name = "ADDR,ADDR,...", value_parser = addresses)]
    pub(crate) connect: Addresses,
    /// How long the operation may take, in seconds, retries included
    #[arg(long, value_name = "S", default_value = "5", value_parser = number_in(1u64..=3600))]
    pub(crate) timeout: u64,
    #[command(flatten)]
    pub(crate) security: ClientSecurity,
    #[command(subcommand)]
    pub(crate) op: KvOp,
}

/// One key-value operation.
#[derive(Clone, Debug, PartialEq, Subcommand)]
pub(crate) enum KvOp {
    /// Prints the value of KEY (an empty line for a key never written)
    Get {
        /// The key
        key: String,
    },
    /// Sets KEY to VALUE
    Put {
        /// The key
        key: String,
        /// The value
        #[arg(allow_hyphen_values = true)]
        value: String,
    },
    /// Appends VALUE to the value of KEY
    Append {
        /// The key
        key: String,
        /// The value appended
        #[arg(allow_hyphen_values = true)]
        value: String,
    },
    /// Prints each node's status, one line per address of --connect: role, term, indices, and
    /// the configuration it has in force (what it is in it, the voters, learners, and the
    /// outgoing voters while joint). With --tls-dir, it connects as admin.pem if there: a node
    /// reports its configuration only with its full status, which it gives the operator.
    Status,
}

/// Options of `zeroraft admin`.
#[derive(Args, Clone, Debug, PartialEq)]
pub(crate) struct AdminArgs {
    /// The client address of one or more nodes (their --listen), separated by commas: the
    /// request goes to the leader among them, or the one they name
    #[arg(long, value_name = "ADDR,ADDR,...", value_parser = addresses)]
    pub(crate) connect: Addresses,
    /// How long a change may take, in seconds, retries included
    #[arg(long, value_name = "S", default_value = "30", value_parser = number_in(1u64..=3600))]
    pub(crate) timeout: u64,
    #[command(flatten)]
    pub(crate) security: ClientSecurity,
    #[command(subcommand)]
    pub(crate) op: AdminOp,
}

/// One membership operation.
#[derive(Clone, Debug, PartialEq, Subcommand)]
pub(crate) enum AdminOp {
    /// Prints the members: id, addresses, voter or learner (and joint), match index and lag
    Members,
    /// Adds a node as a learner: its addresses are committed first, then the configuration.
    /// Then initialize it with `zeroraft init --join` and start it
    Add {
        /// The new node's id: below 64, never used in this cluster before
        #[arg(long, value_name = "I", value_parser = number_in(0u64..=63))]
        id: u64,
        /// Where the other nodes will reach it (its peer port)
        #[arg(long, value_name = "ADDR", value_parser = address)]
        peer: SocketAddr,
        /// Where clients will reach it (its --listen)
        #[arg(long, value_name = "ADDR", value_parser = address)]
        client: SocketAddr,
    },
    /// Makes a learner that holds the committed log a voter
    Promote {
        /// The learner's id
        id: u64,
    },
    /// Removes a node from the cluster for good: its id is never used again
    Remove {
        /// The node's id
        id: u64,
    },
}

/// A list of socket addresses (a type of its own, so that clap takes the whole list as one
/// value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Addresses(pub(crate) Vec<SocketAddr>);

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Command {
    /// The cluster under load, in the dashboard or headless.
    Dashboard(DashboardArgs),
    /// Measure throughput, CPU and latency without a terminal.
    Bench(BenchArgs),
    /// Initialize one node's data directory for a new cluster.
    Init(InitArgs),
    /// Run one node of the key-value service.
    Serve(ServeArgs),
    /// Make the certificates of a local cluster's links.
    Certs(CertsArgs),
    /// One key-value operation against a running service.
    Kv(KvArgs),
    /// Show or change the members of a running service.
    Admin(AdminArgs),
    /// The dashboard on a running cluster of processes.
    Monitor(MonitorArgs),
}

/// Where nodes keep their raft state, as the command line says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StorageKind {
    /// Nowhere: the engine alone (`bench` only).
    None,
    /// In memory.
    Memory,
    /// A write-ahead log per node in a data directory.
    File,
}

impl StorageKind {
    fn from_name(name: String) -> Self {
        match name.as_str() {
            "none" => Self::None,
            "memory" => Self::Memory,
            _ => Self::File,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Memory => "memory",
            Self::File => "file",
        }
    }
}

/// A whole number in `range`, with a message that names the range.
fn number_in<T>(range: std::ops::RangeInclusive<T>) -> impl Fn(&str) -> Result<T, String> + Clone
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Clone + Send + Sync + 'static,
{
    move |text: &str| match text.parse::<T>() {
        Ok(v) if range.contains(&v) => Ok(v),
        _ => Err(format!(
            "must be a whole number from {} to {}",
            range.start(),
            range.end()
        )),
    }
}

fn directory(text: &str) -> Result<PathBuf, String> {
    if text.is_empty() {
        Err("needs a directory, got an empty path".into())
    } else {
        Ok(PathBuf::from(text))
    }
}

/// Options of the dashboard (the default command).
#[derive(Args, Clone, Debug, PartialEq)]
pub(crate) struct DashboardArgs {
    /// Nodes in the cluster, 3 to 9
    #[arg(long, value_name = "N", default_value = "5", value_parser = number_in(3usize..=9))]
    pub(crate) nodes: usize,
    /// Proposals per second over all clients: a number such as 5000, 20k or 1M, or `unlimited`
    #[arg(long, value_name = "R", default_value = "10k", value_parser = Rate::parse)]
    pub(crate) rate: Rate,
    /// Bytes per command, 8 to 1048576
    #[arg(long, value_name = "BYTES", default_value = "16", value_parser = number_in(8usize..=1 << 20))]
    pub(crate) payload: usize,
    /// Start with the unreliable network (delays and drops)
    #[arg(long)]
    pub(crate) unreliable: bool,
    /// No terminal: print one summary line per second, then a final summary
    #[arg(long)]
    pub(crate) headless: bool,
    /// Stop after S seconds (default with --headless: 10; without: run until q)
    #[arg(long, value_name = "S", value_parser = number_in(1u64..=u64::MAX / 2))]
    pub(crate) seconds: Option<u64>,
    /// Where nodes keep their raft state: in memory, or a write-ahead log per node, synced to
    /// disk
    #[arg(long, value_name = "KIND", default_value = "memory",
          value_parser = PossibleValuesParser::new(["memory", "file"]).map(StorageKind::from_name))]
    pub(crate) storage: StorageKind,
    /// With --storage file: the directory for the logs, created if missing and kept (default: a
    /// fresh directory under the system's temporary directory, removed at exit)
    #[arg(long, value_name = "DIR", value_parser = directory)]
    pub(crate) data: Option<PathBuf>,
}

impl Default for DashboardArgs {
    fn default() -> Self {
        Self {
            nodes: 5,
            rate: Rate::default(),
            payload: 16,
            unreliable: false,
            headless: false,
            seconds: None,
            storage: StorageKind::Memory,
            data: None,
        }
    }
}

/// Options of `zeroraft bench`.
#[derive(Args, Clone, Debug, PartialEq)]
pub(crate) struct BenchArgs {
    /// Nodes in the cluster, 1 to 9
    #[arg(long, value_name = "N", default_value = "3", value_parser = number_in(1usize..=9))]
    pub(crate) nodes: usize,
    /// Proposals kept in flight, 1 to 1048576
    #[arg(long, value_name = "C", default_value = "64", value_parser = number_in(1u64..=1 << 20))]
    pub(crate) clients: u64,
    /// Bytes per command, 0 to 1048576
    #[arg(long, value_name = "BYTES", default_value = "16", value_parser = number_in(0usize..=1 << 20))]
    pub(crate) payload: usize,
    /// How long to propose, 1 to 3600
    #[arg(long, value_name = "S", default_value = "10", value_parser = number_in(1u64..=3600))]
    pub(crate) seconds: u64,
    /// Where nodes keep their raft state: nowhere (the engine alone, as BENCHMARKS.md's
    /// in-process figures are measured), in memory, or a write-ahead log per node, synced
    /// to disk (the disk's fdatasync median is measured and printed too)
    #[arg(long, value_name = "KIND", default_value = "none",
          value_parser = PossibleValuesParser::new(["none", "memory", "file"]).map(StorageKind::from_name))]
    pub(crate) storage: StorageKind,
    /// With --storage file: as for the dashboard (default: a fresh temporary directory, removed
    /// at exit)
    #[arg(long, value_name = "DIR", value_parser = directory)]
    pub(crate) data: Option<PathBuf>,
    /// Load a running key-value service instead (the client addresses of its nodes, in node
    /// order): pipelined puts to its leader, --clients of them in flight over --connections
    /// connections; then one client alone, beside the loopback round trip and this machine's
    /// fdatasync
    #[arg(long, value_name = "ADDR,ADDR,...", value_parser = addresses,
          conflicts_with_all = ["nodes", "storage", "data", "compact_every", "max_inflight_bytes"])]
    pub(crate) connect: Option<Addresses>,
    /// With --connect: connections to the leader the puts in flight are spread over
    #[arg(long, value_name = "N", default_value = "4", value_parser = number_in(1usize..=256),
          requires = "connect")]
    pub(crate) connections: usize,
    /// With --connect: mutual TLS to the nodes, with client.pem, client.key, ca.pem and
    /// `cluster` from `zeroraft certs` in DIR (one of --tls-dir and --insecure is needed)
    #[arg(long = "tls-dir", value_name = "DIR", value_parser = directory,
          requires = "connect", conflicts_with = "insecure")]
    pub(crate) tls_dir: Option<PathBuf>,
    /// With --connect: plaintext to the nodes, started with --insecure
    #[arg(long, requires = "connect")]
    pub(crate) insecure: bool,
    /// Each node snapshots its state machine and compacts its log every N applied entries; 0
    /// never compacts
    #[arg(long = "compact-every", value_name = "N", default_value = "100000",
          value_parser = number_in(0u64..=u64::MAX))]
    pub(crate) compact_every: u64,
    /// Most bytes of commands a leader keeps sent to one follower and not yet acknowledged
    #[arg(long = "max-inflight-bytes", value_name = "BYTES", default_value = "8388608",
          value_parser = number_in(1usize..=1 << 40))]
    pub(crate) max_inflight_bytes: usize,
    /// Install the Prometheus metrics recorder of `serve --metrics` before the nodes start, so
    /// that the cost of recording can be measured
    #[arg(long = "with-recorder", hide = true, conflicts_with = "connect")]
    pub(crate) with_recorder: bool,
    /// Change the membership under load instead: five nodes, three voting at first; a quarter
    /// of --seconds in, nodes 3 and 4 join as learners, a quarter later both are promoted, a
    /// quarter later two of the original voters, the leader among them, are removed. Prints
    /// the commits acknowledged per 100 ms around each change (how deep and how long the rate
    /// fell), and checks that every acknowledged write is on every final voter at its index
    #[arg(long = "membership-cycle", conflicts_with_all = ["connect", "nodes"])]
    pub(crate) membership_cycle: bool,
}

impl Default for BenchArgs {
    fn default() -> Self {
        Self {
            nodes: 3,
            clients: 64,
            payload: 16,
            seconds: 10,
            storage: StorageKind::None,
            data: None,
            compact_every: 100_000,
            max_inflight_bytes: 8 << 20,
            with_recorder: false,
            membership_cycle: false,
            connect: None,
            connections: 4,
            tls_dir: None,
            insecure: false,
        }
    }
}

/// Checks that `--data` comes only with `--storage file`.
fn check_data(storage: StorageKind, data: Option<&PathBuf>) -> Result<(), String> {
    match (storage, data) {
        (StorageKind::None | StorageKind::Memory, Some(_)) => Err(format!(
            "--data is where --storage file keeps the logs; with --storage {} there are none",
            storage.name()
        )),
        _ => Ok(()),
    }
}

/// Parses the command line (the program's name first). `--help` and `--version` come back as
/// errors too, which [`clap::Error::exit`] prints to stdout with status 0.
pub(crate) fn parse<I, T>(args: I) -> Result<Command, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = Cli::command().try_get_matches_from(args)?;
    let cli = Cli::from_arg_matches(&matches)?;
    let conflict =
        |message: String| Cli::command().error(clap::error::ErrorKind::ArgumentConflict, message);
    let command = match cli.command {
        None => Command::Dashboard(cli.dashboard),
        Some(Sub::Dashboard(args)) => Command::Dashboard(args),
        Some(Sub::Bench(args)) => Command::Bench(args),
        Some(Sub::Init(args)) => Command::Init(args),
        Some(Sub::Serve(args)) => Command::Serve(args),
        Some(Sub::Certs(args)) => Command::Certs(args),
        Some(Sub::Kv(args)) => Command::Kv(args),
        Some(Sub::Admin(args)) => Command::Admin(args),
        Some(Sub::Monitor(args)) => Command::Monitor(args),
    };
    match &command {
        Command::Dashboard(a) => check_data(a.storage, a.data.as_ref()).map_err(conflict)?,
        Command::Bench(a) => check_data(a.storage, a.data.as_ref()).map_err(conflict)?,
        Command::Serve(ServeArgs {
            id,
            peers: Some(peers),
            ..
        }) if *id >= peers.0.len() => {
            return Err(conflict(format!(
                "--id {id} names no node: --peers lists {} (ids start at 0)",
                peers.0.len()
            )));
        }
        Command::Serve(a) if a.peers.is_none() && a.storage == StorageKind::Memory => {
            return Err(conflict(
                "--storage memory needs --peers: only a data directory records how a node joined"
                    .to_owned(),
            ));
        }
        Command::Serve(a) => check_data(a.storage, a.data.as_ref()).map_err(conflict)?,
        Command::Init(InitArgs {
            id,
            peers: Some(peers),
            ..
        }) if *id >= peers.0.len() => {
            return Err(conflict(format!(
                "--id {id} names no node: --peers lists {} (ids start at 0)",
                peers.0.len()
            )));
        }
        Command::Init(_)
        | Command::Certs(_)
        | Command::Kv(_)
        | Command::Admin(_)
        | Command::Monitor(_) => {}
    }
    Ok(command)
}

/// One `host:port` address.
fn address(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    text.trim()
        .to_socket_addrs()
        .map_err(|e| format!("`{text}` is not a host:port address: {e}"))?
        .next()
        .ok_or_else(|| format!("`{text}` names no address"))
}

/// Addresses separated by commas, each `host:port`: 1 to 9 of them.
fn addresses(text: &str) -> Result<Addresses, String> {
    let list = text
        .split(',')
        .map(address)
        .collect::<Result<Vec<_>, _>>()?;
    if list.len() > 9 {
        return Err(format!(
            "{} addresses: a cluster has 1 to 9 nodes",
            list.len()
        ));
    }
    Ok(Addresses(list))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(line: &str) -> Result<Command, String> {
        parse(std::iter::once("zeroraft").chain(line.split_whitespace()))
            .map_err(|e| e.render().to_string())
    }

    #[test]
    fn parses_options() {
        let ok = |m: DashboardArgs| Ok(Command::Dashboard(m));
        let cases = [
            ("", ok(DashboardArgs::default())),
            ("dashboard", ok(DashboardArgs::default())),
            (
                "--nodes 3 --rate 20k --payload 64",
                ok(DashboardArgs {
                    nodes: 3,
                    rate: Rate::PerSecond(20_000),
                    payload: 64,
                    ..DashboardArgs::default()
                }),
            ),
            (
                "dashboard --headless --seconds=2 --unreliable --rate=unlimited",
                ok(DashboardArgs {
                    headless: true,
                    seconds: Some(2),
                    unreliable: true,
                    rate: Rate::Unlimited,
                    ..DashboardArgs::default()
                }),
            ),
            ("bench", Ok(Command::Bench(BenchArgs::default()))),
            (
                "bench --nodes 5 --clients=4096 --payload 1024 --seconds 3",
                Ok(Command::Bench(BenchArgs {
                    nodes: 5,
                    clients: 4096,
                    payload: 1024,
                    seconds: 3,
                    ..BenchArgs::default()
                })),
            ),
            (
                "--headless --storage=file --data /var/tmp/raft",
                ok(DashboardArgs {
                    headless: true,
                    storage: StorageKind::File,
                    data: Some("/var/tmp/raft".into()),
                    ..DashboardArgs::default()
                }),
            ),
            (
                "--data=/var/tmp/raft --storage file",
                ok(DashboardArgs {
                    storage: StorageKind::File,
                    data: Some("/var/tmp/raft".into()),
                    ..DashboardArgs::default()
                }),
            ),
            (
                "bench --clients 1 --storage file --data=disk --compact-every 0 --max-inflight-bytes 65536",
                Ok(Command::Bench(BenchArgs {
                    clients: 1,
                    storage: StorageKind::File,
                    data: Some("disk".into()),
                    compact_every: 0,
                    max_inflight_bytes: 65536,
                    ..BenchArgs::default()
                })),
            ),
            (
                "serve --id 1 --peers 127.0.0.1:7000,127.0.0.1:7001 --listen=0.0.0.0:8001 --data /tmp/n1 --tls-dir /tmp/certs",
                Ok(Command::Serve(ServeArgs {
                    id: 1,
                    peers: Some(Addresses(vec![
                        "127.0.0.1:7000".parse().unwrap(),
                        "127.0.0.1:7001".parse().unwrap(),
                    ])),
                    listen: "0.0.0.0:8001".parse().unwrap(),
                    data: Some("/tmp/n1".into()),
                    tls_dir: Some("/tmp/certs".into()),
                    insecure: false,
                    storage: StorageKind::File,
                    cluster: None,
                    max_connections: 256,
                    idle_timeout: 60,
                    frame_timeout: 5,
                    session_timeout: 3600,
                    max_sessions: 10_000,
                    read_mode: "index".into(),
                    compact_every: 100_000,
                    compact_above_mib: 64,
                    max_inflight_bytes: 8 << 20,
                    metrics: None,
                    log_format: "text".into(),
                    log_level: "warn".into(),
                })),
            ),
            (
                "init --id 2 --peers 127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002 --data /tmp/n2 --cluster 99",
                Ok(Command::Init(InitArgs {
                    id: 2,
                    peers: Some(Addresses(vec![
                        "127.0.0.1:7000".parse().unwrap(),
                        "127.0.0.1:7001".parse().unwrap(),
                        "127.0.0.1:7002".parse().unwrap(),
                    ])),
                    join: None,
                    tls_dir: None,
                    data: "/tmp/n2".into(),
                    cluster: Some(99),
                })),
            ),
            (
                "init --id 3 --join 127.0.0.1:8000 --data /tmp/n3",
                Ok(Command::Init(InitArgs {
                    id: 3,
                    peers: None,
                    join: Some("127.0.0.1:8000".parse().unwrap()),
                    tls_dir: None,
                    data: "/tmp/n3".into(),
                    cluster: None,
                })),
            ),
            (
                "admin --connect 127.0.0.1:8000 --insecure add --id 3 --peer 127.0.0.1:7003 --client 127.0.0.1:8003",
                Ok(Command::Admin(AdminArgs {
                    connect: Addresses(vec!["127.0.0.1:8000".parse().unwrap()]),
                    timeout: 30,
                    security: ClientSecurity {
                        tls_dir: None,
                        insecure: true,
                    },
                    op: AdminOp::Add {
                        id: 3,
                        peer: "127.0.0.1:7003".parse().unwrap(),
                        client: "127.0.0.1:8003".parse().unwrap(),
                    },
                })),
            ),
            (
                "kv --connect 127.0.0.1:8000 --insecure append k v",
                Ok(Command::Kv(KvArgs {
                    connect: Addresses(vec!["127.0.0.1:8000".parse().unwrap()]),
                    timeout: 5,
                    security: ClientSecurity {
                        tls_dir: None,
                        insecure: true,
                    },
                    op: KvOp::Append {
                        key: "k".into(),
                        value: "v".into(),
                    },
                })),
            ),
            (
                "bench --storage=memory",
                Ok(Command::Bench(BenchArgs {
                    storage: StorageKind::Memory,
                    ..BenchArgs::default()
                })),
            ),
            (
                "monitor --connect 127.0.0.1:8000,127.0.0.1:8001,127.0.0.1:8002 --tls-dir /tmp/certs",
                Ok(Command::Monitor(MonitorArgs {
                    connect: Addresses(vec![
                        "127.0.0.1:8000".parse().unwrap(),
                        "127.0.0.1:8001".parse().unwrap(),
                        "127.0.0.1:8002".parse().unwrap(),
                    ]),
                    security: ClientSecurity {
                        tls_dir: Some("/tmp/certs".into()),
                        insecure: false,
                    },
                })),
            ),
            (
                "monitor --connect=[::1]:8000 --insecure",
                Ok(Command::Monitor(MonitorArgs {
                    connect: Addresses(vec!["[::1]:8000".parse().unwrap()]),
                    security: ClientSecurity {
                        tls_dir: None,
                        insecure: true,
                    },
                })),
            ),
        ];
        for (case, (line, expected)) in cases.into_iter().enumerate() {
            assert_eq!(parse_str(line), expected, "case {case}: `{line}`");
        }
    }

    #[test]
    fn help_and_version_are_not_commands() {
        for (case, line) in ["--help", "--nodes 5 -h", "bench --help", "--version"]
            .into_iter()
            .enumerate()
        {
            let e =
                parse(std::iter::once("zeroraft").chain(line.split_whitespace())).expect_err(line);
            assert_eq!(e.exit_code(), 0, "case {case}: `{line}`");
        }
    }

    #[test]
    fn rejects_bad_arguments_with_a_message() {
        let cases = [
            (
                "--nodes 2",
                "'--nodes <N>': must be a whole number from 3 to 9",
            ),
            ("--nodes 10", "must be a whole number from 3 to 9"),
            ("--nodes", "a value is required for '--nodes <N>'"),
            ("--payload 4", "must be a whole number from 8 to 1048576"),
            ("--seconds 0", "must be a whole number from 1 to"),
            ("--rate fast", "expected a positive rate"),
            ("--headless=yes", "unexpected value 'yes' for '--headless'"),
            ("--frobnicate", "unexpected argument '--frobnicate'"),
            (
                "bench --clients 0",
                "must be a whole number from 1 to 1048576",
            ),
            ("bench --nodes 10", "must be a whole number from 1 to 9"),
            ("bench --rate 5", "unexpected argument '--rate'"),
            (
                "--storage disk",
                "invalid value 'disk' for '--storage <KIND>'",
            ),
            ("--storage none", "[possible values: memory, file]"),
            ("--storage", "a value is required for '--storage <KIND>'"),
            (
                "--data /tmp/x",
                "--data is where --storage file keeps the logs; with --storage memory there are none",
            ),
            (
                "--storage memory --data /tmp/x",
                "with --storage memory there are none",
            ),
            (
                "--storage file --data=",
                "needs a directory, got an empty path",
            ),
            (
                "bench --storage wal",
                "[possible values: none, memory, file]",
            ),
            ("bench --data /tmp/x", "with --storage none there are none"),
            (
                "bench --nodes 3 dashboard",
                "unexpected argument 'dashboard'",
            ),
            (
                "monitor",
                "the following required arguments were not provided",
            ),
            (
                "monitor --connect 127.0.0.1",
                "`127.0.0.1` is not a host:port address",
            ),
            (
                "monitor --connect 127.0.0.1:8000 --rate 5",
                "unexpected argument '--rate'",
            ),
        ];
        for (case, (line, message)) in cases.into_iter().enumerate() {
            let error = parse_str(line).expect_err(line);
            assert!(
                error.contains(message),
                "case {case}: `{line}` gave `{error}`"
            );
            assert!(
                error.contains("try '--help'"),
                "case {case}: `{line}` gave `{error}`"
            );
        }
    }
}
