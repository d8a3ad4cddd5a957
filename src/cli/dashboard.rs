//! The live dashboard: on an in-process cluster under client load ([`run`]), or on a running
//! cluster of `serve` processes (`monitor --connect`, [`run_remote`]).

use std::io::{self, IsTerminal, Write};
use std::time::Duration;

use zeroraft_harness::cluster::ClusterStorage;

use super::args::{DashboardArgs, MonitorArgs, StorageKind};
use super::loaded::{LoadOptions, LoadedCluster};
use super::remote::{RemoteCluster, RemoteOptions};
use super::{DataDir, Failure, Stop};
use zeroraft_transport::tcp::ClientRole;

/// Runs the dashboard (or, with `--headless`, a line a second) on an in-process cluster.
pub fn run(args: &DashboardArgs, stop: &Stop) -> Result<(), Failure> {
    let terminal = io::stdin().is_terminal() && io::stdout().is_terminal();
    if !args.headless && !terminal {
        return Err(Failure::Run(io::Error::other(
            "the dashboard needs a terminal; use --headless --seconds S without one",
        )));
    }
    let data = match args.storage {
        StorageKind::File => {
            let dir = DataDir::prepare(args.data.as_deref(), args.nodes).map_err(Failure::Setup)?;
            dir.announce()?;
            Some(dir)
        }
        StorageKind::None | StorageKind::Memory => None,
    };
    let storage = match &data {
        Some(dir) => ClusterStorage::Files(dir.path.clone()),
        None => ClusterStorage::Memory,
    };
    let cluster = LoadedCluster::start(
        args.nodes,
        args.unreliable,
        storage,
        LoadOptions {
            clients: 4,
            rate: args.rate,
            payload: args.payload,
            window: 1024,
        },
    )
    .map_err(|e| Failure::Setup(format!("cannot start the cluster: {e}")))?;
    if args.headless {
        let seconds = args.seconds.unwrap_or(10);
        zeroraft_monitor::run_headless(
            &cluster,
            seconds,
            &stop.requested,
            &mut io::stdout().lock(),
        )?;
    } else {
        let limit = args.seconds.map(Duration::from_secs);
        let started = std::time::Instant::now();
        let app = zeroraft_monitor::run(&cluster, fastrand::u64(..), limit, &stop.requested)?;
        writeln!(io::stdout(), "{}", app.final_summary(started.elapsed()))?;
    }
    // The nodes stop (and close their logs) before their directory goes.
    drop(cluster);
    drop(data);
    Ok(())
}

/// The dashboard on a running cluster of `serve` processes, until `q` or a stop signal; then
/// the summary.
pub fn run_remote(args: &MonitorArgs, stop: &Stop) -> Result<(), Failure> {
    if !(io::stdin().is_terminal() && io::stdout().is_terminal()) {
        return Err(Failure::Run(io::Error::other(
            "the dashboard needs a terminal",
        )));
    }
    let tls = super::service::client_tls(&args.security, ClientRole::Admin)?;
    let remote = RemoteCluster::connect(args.connect.0.clone(), RemoteOptions::default(), tls)
        .map_err(|e| Failure::Run(io::Error::other(format!("cannot watch the cluster: {e}"))))?;
    let started = std::time::Instant::now();
    let app = zeroraft_monitor::run(&remote, fastrand::u64(..), None, &stop.requested)?;
    writeln!(io::stdout(), "{}", app.final_summary(started.elapsed()))?;
    Ok(())
}
