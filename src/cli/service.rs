//! The key-value service's commands: `serve` runs one node of it ([`serve`]), `kv` carries out
//! one client operation ([`kv`]).

use std::io::{self, Write};
use std::time::Duration;

use zeroraft_kv::serve::{NodeOptions, ServeNode};
use zeroraft_kv::{ClientOptions, KvClient, ReadMode};

use super::args::{KvArgs, KvOp, ServeArgs, StorageKind};
use super::{Failure, Stop};

/// Runs one node of the key-value service until a stop signal.
pub fn serve(args: &ServeArgs, stop: &Stop) -> Result<(), Failure> {
    // The engine and transport report through `tracing`: a node's operator sees warnings
    // (refused peers, dropped connections, a failed disk) on stderr.
    let _ = tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_max_level(tracing::Level::WARN)
        .try_init();
    let mut options = NodeOptions::new(
        args.id,
        args.cluster,
        args.peers.0.clone(),
        args.listen,
        args.data.clone().unwrap_or_default(),
    );
    options.in_memory = args.storage == StorageKind::Memory;
    options.read_mode = match args.read_mode.as_str() {
        "lease" => ReadMode::Lease,
        "log" => ReadMode::Log,
        "unsafe-local" => ReadMode::UnsafeLocal,
        _ => ReadMode::ReadIndex,
    };
    let node = ServeNode::start(options).map_err(|e| Failure::Setup(e.to_string()))?;
    writeln!(
        io::stderr().lock(),
        "zeroraft: node {} of cluster {} ({} nodes) serves clients on {}, peers on {}, {}",
        args.id,
        args.cluster,
        args.peers.0.len(),
        node.client_addr(),
        node.peer_addr(),
        match &args.data {
            Some(dir) if args.storage == StorageKind::File => format!("data in {}", dir.display()),
            _ => "raft state in memory only (lost when the process ends)".to_owned(),
        }
    )?;
    while !stop.is_requested() {
        // Checking for a stop signal; the node runs on its own threads.
        std::thread::sleep(Duration::from_millis(50));
    }
    node.shutdown();
    Ok(())
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
