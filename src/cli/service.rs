//! The key-value service's commands: `init` makes a new cluster's node's data directory
//! ([`init`]), `serve` runs one node ([`serve`]), `kv` carries out one client operation ([`kv`]).

use std::io::{self, IsTerminal, Write};
use std::time::Duration;

use zeroraft_kv::serve::{NodeOptions, ServeNode};
use zeroraft_kv::{ClientOptions, KvClient, ReadMode};
use zeroraft_storage::FileStorage;

use super::args::{InitArgs, KvArgs, KvOp, ServeArgs, StorageKind};
use super::{Failure, Stop};

/// How often `serve` looks for a stop signal and for its node having stopped on its own.
const POLL: Duration = Duration::from_millis(50);

/// Initializes one node's data directory for a new cluster, with a random cluster id unless
/// one is given (then printed, for the other nodes' `init`).
pub fn init(args: &InitArgs) -> Result<(), Failure> {
    let cluster = args.cluster.unwrap_or_else(|| fastrand::u64(1..));
    let options = NodeOptions::new(
        args.id,
        cluster,
        args.peers.0.clone(),
        // Not used to initialize: where the node will listen for clients is `serve`'s choice.
        ([127, 0, 0, 1], 0).into(),
        args.data.clone(),
    );
    ServeNode::initialize(&options).map_err(|e| Failure::Setup(e.to_string()))?;
    let peers = args
        .peers
        .0
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "initialized node {} of cluster {cluster} ({} members) in {}",
        args.id,
        args.peers.0.len(),
        args.data.display()
    )?;
    if args.cluster.is_none() {
        writeln!(
            out,
            "initialize the other nodes with: zeroraft init --cluster {cluster} --peers {peers} --id I --data DIR"
        )?;
    }
    writeln!(
        out,
        "start it with: zeroraft serve --id {} --peers {peers} --data {} --listen ADDR",
        args.id,
        args.data.display()
    )?;
    Ok(())
}

/// Runs one node of the key-value service until a stop signal, or until its node stops on its
/// own (then with the failure, which decides the exit status).
pub fn serve(args: &ServeArgs, stop: &Stop) -> Result<(), Failure> {
    // The engine and transport report through `tracing`: a node's operator sees warnings
    // (refused peers, dropped connections, a failed disk) on stderr, in colour only on a
    // terminal.
    let _ = tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .with_max_level(tracing::Level::WARN)
        .try_init();
    let in_memory = args.storage == StorageKind::Memory;
    let data = args.data.clone().unwrap_or_default();
    let cluster = match args.cluster {
        Some(cluster) => cluster,
        None if in_memory => 1,
        None => match FileStorage::read_identity(&data) {
            Ok((identity, _)) => identity.cluster,
            // Starting reports why the directory cannot be used, in full.
            Err(_) => 0,
        },
    };
    let mut options = NodeOptions::new(args.id, cluster, args.peers.0.clone(), args.listen, data);
    options.in_memory = in_memory;
    options.server.read_mode = match args.read_mode.as_str() {
        "lease" => ReadMode::Lease,
        "log" => ReadMode::Log,
        "unsafe-local" => ReadMode::UnsafeLocal,
        _ => ReadMode::ReadIndex,
    };
    options.server.max_connections = args.max_connections;
    options.server.idle_timeout = Duration::from_secs(args.idle_timeout);
    options.server.sessions.timeout = Duration::from_secs(args.session_timeout);
    options.server.sessions.max_sessions = args.max_sessions;
    options.config.compaction = zeroraft_engine::Compaction {
        every_entries: (args.compact_every > 0).then_some(args.compact_every),
        above_bytes: (args.compact_above_mib > 0).then_some(args.compact_above_mib << 20),
    };
    let node = ServeNode::start(options).map_err(|e| Failure::Setup(e.to_string()))?;
    writeln!(
        io::stderr().lock(),
        "zeroraft: node {} of cluster {cluster} ({} nodes) serves clients on {}, peers on {}, {}",
        args.id,
        args.peers.0.len(),
        node.client_addr(),
        node.peer_addr(),
        match &args.data {
            Some(dir) if !in_memory => format!("data in {}", dir.display()),
            _ => "raft state in memory only (lost when the process ends)".to_owned(),
        }
    )?;
    let failure = loop {
        if let Some(failure) = node.raft().failure() {
            break Some(failure);
        }
        if stop.is_requested() {
            break None;
        }
        std::thread::sleep(POLL);
    };
    node.shutdown();
    match failure {
        Some(failure) => Err(Failure::Node(failure)),
        None => Ok(()),
    }
}

/// One operation against a running service; a get prints the value.
pub fn kv(args: &KvArgs) -> Result<(), Failure> {
    let options = ClientOptions {
        op_timeout: Duration::from_secs(args.timeout),
        ..ClientOptions::default()
    };
    let mut client = KvClient::new(args.connect.0.clone(), options);
    let done = match &args.op {
        KvOp::Get { key } => client
            .get(key)
            .map(|value| writeln!(io::stdout().lock(), "{value}")),
        KvOp::Put { key, value } => client.put(key, value).map(|()| Ok(())),
        KvOp::Append { key, value } => client.append(key, value).map(|()| Ok(())),
    };
    match done {
        Ok(written) => Ok(written?),
        Err(e) => Err(Failure::Run(io::Error::other(e.to_string()))),
    }
}
