//! `zeroraft`: an embedded cluster under client load, watched in the live terminal monitor.
//!
//! ```text
//! cargo run --release                                  # the dashboard, 5 nodes, 10k proposals/s
//! cargo run --release -- --nodes 3 --rate unlimited    # as fast as it commits
//! cargo run --release -- --headless --seconds 10       # no terminal: a line a second
//! cargo run --release -- --storage file --data DIR     # nodes keep write-ahead logs in DIR
//! cargo run --release -- monitor --connect A,B,C       # the dashboard on `serve` processes
//! ```
//!
//! Arguments are parsed by clap ([`args`]) into a [`Command`].
//!
//! All output goes through `writeln!` and its errors are handled: when the reader of stdout or
//! stderr goes away (a broken pipe: `zeroraft --headless | head -1`), the run stops at the next
//! line it cannot write, the nodes stop, a temporary data directory is removed, and the process
//! exits quietly with status 0, the reader having had all it asked for. (Rust ignores SIGPIPE,
//! which would have killed a C program at that write, so the write returns the error instead.)
//!
//! SIGINT, SIGTERM and SIGHUP stop a run the way its end does ([`Stop`]): the dashboard leaves
//! as on `q` and restores the terminal, `--headless` and `bench` print their summary; then the
//! nodes stop and a temporary data directory is removed.
//!
//! Exit status: 0 on success (and on a broken pipe), 2 for a command line that cannot be
//! carried out (a bad argument, a data directory that cannot be used), 1 when running fails,
//! and 128 plus the signal's number (130, 143, 129) for a run that SIGINT, SIGTERM or SIGHUP
//! stopped, the status a shell reports for a command such a signal killed, so that scripts can
//! tell a run cut short from a full one.
//!
//! # Orderings
//!
//! A stop signal's handler stores its number in [`Stop::signal`], then sets
//! [`Stop::requested`], both `SeqCst` (signal-hook runs the actions in the order they were
//! registered). The loops load `requested` with `Acquire`, so a run that ended on it reads the
//! number afterwards, on the same thread, with `Relaxed`.

mod args;
mod load;

use std::ffi::c_int;
use std::io::{self, IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Acquire, Ordering::Relaxed};
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use zeroraft::bench::BenchStorage;
use zeroraft::cluster::ClusterStorage;

use crate::args::{
    BenchArgs, Command, DashboardArgs, KvArgs, KvOp, MonitorArgs, ServeArgs, StorageKind,
};
use crate::load::{LoadOptions, LoadedCluster};

/// Why a command stopped, which decides the exit status.
#[derive(Debug)]
enum Failure {
    /// What the command line asks for cannot be set up (status 2): a data directory that
    /// cannot be used, storage that cannot be opened.
    Setup(String),
    /// Running failed (status 1).
    Run(io::Error),
    /// The reader of stdout or stderr went away (status 0, and nothing said): see the module
    /// documentation.
    Closed,
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Self::Closed
        } else {
            Self::Run(e)
        }
    }
}

/// Watches for the signals that stop a run: SIGINT, SIGTERM and SIGHUP.
///
/// Instead of killing the process, the first of them sets [`Stop::requested`], which the
/// dashboard and the headless loop look at every quarter of a second and `bench` every second;
/// they then end as at the end of their time, and the process exits with 128 plus the signal's
/// number once the nodes have stopped and a temporary data directory is gone. A second one
/// exits at once with that status, without cleaning up: the way out of a stop that hangs.
struct Stop {
    /// Set by the first stop signal.
    requested: Arc<AtomicBool>,
    /// The number of the last stop signal received, 0 before any.
    signal: Arc<AtomicUsize>,
}

impl Stop {
    /// The signals that stop a run.
    const SIGNALS: [c_int; 3] = [SIGINT, SIGTERM, SIGHUP];

    /// Takes over [`Stop::SIGNALS`] from their default action (killing the process).
    ///
    /// # Errors
    ///
    /// The error of installing a handler.
    fn on_signals() -> io::Result<Self> {
        let requested = Arc::new(AtomicBool::new(false));
        let signal = Arc::new(AtomicUsize::new(0));
        for number in Self::SIGNALS {
            // The actions run in this order on each signal, so the shutdown only fires on a
            // signal that finds `requested` set by an earlier one.
            signal_hook::flag::register_conditional_shutdown(
                number,
                128 + number,
                Arc::clone(&requested),
            )?;
            signal_hook::flag::register_usize(number, Arc::clone(&signal), number as usize)?;
            signal_hook::flag::register(number, Arc::clone(&requested))?;
        }
        Ok(Self { requested, signal })
    }

    /// Whether a stop signal has arrived.
    fn is_requested(&self) -> bool {
        self.requested.load(Acquire)
    }

    /// The exit status for a run a stop signal ended: 128 plus its number.
    fn status(&self) -> Option<ExitCode> {
        match self.signal.load(Relaxed) {
            0 => None,
            number => Some(ExitCode::from(128 + number as u8)),
        }
    }
}

/// Writes an error message to stderr. If stderr is gone too, the exit status is all that is
/// left to tell.
fn complain(message: impl std::fmt::Display) {
    let _ = writeln!(io::stderr().lock(), "zeroraft: {message}");
}

fn main() -> ExitCode {
    let command = match args::parse(std::env::args_os()) {
        Ok(command) => command,
        // Help and version go to stdout with status 0; mistakes to stderr with status 2. A
        // reader that went away before the help was printed is no failure either.
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
    };
    let stop = match Stop::on_signals() {
        Ok(stop) => stop,
        Err(e) => {
            complain(format_args!("cannot handle signals: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let result = match command {
        Command::Bench(args) if args.connect.is_some() => run_remote_bench(&args, &stop),
        Command::Bench(args) => run_bench(&args, &stop),
        Command::Dashboard(args) => run_dashboard(&args, &stop),
        Command::Serve(args) => run_serve(&args, &stop),
        Command::Kv(args) => run_kv(&args),
        Command::Monitor(args) => run_remote_monitor(&args, &stop),
    };
    match result {
        Ok(()) | Err(Failure::Closed) => stop.status().unwrap_or(ExitCode::SUCCESS),
        Err(Failure::Setup(message)) => {
            complain(message);
            ExitCode::from(2)
        }
        Err(Failure::Run(e)) => {
            complain(e);
            ExitCode::FAILURE
        }
    }
}

/// The directory nodes keep their write-ahead logs in (node `i` in `node-<i>`): the one given
/// with `--data`, kept, or a fresh one under the system's temporary directory, removed when
/// this is dropped.
struct DataDir {
    path: PathBuf,
    temporary: bool,
}

impl DataDir {
    /// Makes `given` (or a fresh temporary directory) ready for the logs of `nodes` nodes.
    ///
    /// # Errors
    ///
    /// Why the directory cannot be used: it cannot be created or written in, or a node's
    /// subdirectory already holds a log (of an earlier run: each run is a new cluster, and a
    /// node refuses another cluster's log).
    fn prepare(given: Option<&Path>, nodes: usize) -> Result<Self, String> {
        let Some(path) = given else {
            return Self::temporary();
        };
        let unusable =
            |e: io::Error| format!("cannot use {} as the data directory: {e}", path.display());
        std::fs::create_dir_all(path).map_err(unusable)?;
        for i in 0..nodes {
            let node = path.join(format!("node-{i}"));
            let holds_something = std::fs::read_dir(&node)
                .map(|mut entries| entries.next().is_some())
                .unwrap_or(false);
            if holds_something {
                return Err(format!(
                    "{} holds a node's log from an earlier run, which a new cluster cannot use; \
                     give an empty or new directory with --data",
                    node.display()
                ));
            }
        }
        let probe = path.join(format!(".zeroraft-probe-{}", std::process::id()));
        std::fs::write(&probe, b"")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(unusable)?;
        Ok(Self {
            path: path.to_owned(),
            temporary: false,
        })
    }

    /// A new directory under the system's temporary directory.
    fn temporary() -> Result<Self, String> {
        let base = std::env::temp_dir();
        for attempt in 0u32.. {
            let path = base.join(format!("zeroraft-{}-{attempt}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    return Ok(Self {
                        path,
                        temporary: true,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 1000 => {}
                Err(e) => {
                    return Err(format!(
                        "cannot create a data directory in {}: {e}",
                        base.display()
                    ));
                }
            }
        }
        unreachable!("the loop returns")
    }

    /// Tells the person (on stderr) where the logs are and whether they stay.
    ///
    /// # Errors
    ///
    /// The error writing to stderr.
    fn announce(&self) -> io::Result<()> {
        let fate = if self.temporary {
            "removed at exit"
        } else {
            "kept"
        };
        writeln!(
            io::stderr().lock(),
            "zeroraft: nodes keep write-ahead logs in {} ({fate})",
            self.path.display()
        )
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// How many fdatasync calls `bench --storage file` times on the data directory's disk.
const FDATASYNC_SAMPLES: usize = 200;

fn run_bench(args: &BenchArgs, stop: &Stop) -> Result<(), Failure> {
    let data = match args.storage {
        StorageKind::File => {
            Some(DataDir::prepare(args.data.as_deref(), args.nodes).map_err(Failure::Setup)?)
        }
        StorageKind::None | StorageKind::Memory => None,
    };
    // Measured before the nodes start, so that their own syncs do not share the disk with it.
    let fdatasync = match &data {
        Some(dir) => Some(
            zeroraft::bench::fdatasync_median(&dir.path, FDATASYNC_SAMPLES).map_err(|e| {
                Failure::Setup(format!("cannot sync a file in {}: {e}", dir.path.display()))
            })?,
        ),
        None => None,
    };
    let (storage, shown) = match (&args.storage, &data) {
        (StorageKind::File, Some(dir)) => {
            (BenchStorage::Files(dir.path.clone()), ", write-ahead logs")
        }
        (StorageKind::Memory, _) => (BenchStorage::Memory, ", in memory"),
        _ => (BenchStorage::None, ""),
    };
    let config = zeroraft::Config {
        compaction: zeroraft::engine::Compaction {
            every_entries: (args.compact_every > 0).then_some(args.compact_every),
            above_bytes: None,
        },
        ..zeroraft::Config::default()
    };
    let cluster = zeroraft::bench::BenchCluster::with_storage(args.nodes, config, &storage)
        .map_err(|e| Failure::Setup(format!("cannot start the nodes: {e}")))?;
    // One payload for the whole run.
    let payload = zeroraft::bench::static_payload(args.payload);
    let mut before = 0;
    // The error that ended the progress lines, if one did: it ends the run.
    let mut failed = None;
    let report = cluster.closed_loop_for(
        Duration::from_secs(args.seconds),
        args.clients,
        &payload,
        |commits, elapsed| {
            if stop.is_requested() {
                return ControlFlow::Break(());
            }
            let rss = zeroraft::bench::resident_bytes()
                .map_or("?".into(), |b| format!("{:.0} MB", b as f64 / 1e6));
            let line = writeln!(
                io::stderr().lock(),
                "t={:>4.0}s  {:>8.3} M commits/s this second  {commits:>11} in all  rss {rss}",
                elapsed.as_secs_f64(),
                (commits - before) as f64 / 1e6
            );
            before = commits;
            match line {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => {
                    failed = Some(e);
                    ControlFlow::Break(())
                }
            }
        },
    );
    if let Some(e) = failed {
        return Err(e.into());
    }
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{} nodes, {} in flight, {} B{shown}: {:.3} M commits/s, {:.3} µs CPU per commit, latency p50 {:.1} µs p99 {:.1} µs p99.9 {:.1} µs ({} commits in {:.1} s)",
        args.nodes,
        args.clients,
        args.payload,
        report.rate() / 1e6,
        report.cpu_per_commit_us(),
        report.latency_us(0.5),
        report.latency_us(0.99),
        report.latency_us(0.999),
        report.commits,
        report.elapsed.as_secs_f64()
    )?;
    if let (Some(median), Some(dir)) = (fdatasync, &data) {
        writeln!(
            out,
            "disk: fdatasync median {:.1} µs ({FDATASYNC_SAMPLES} appends of 4 KiB to {}, each synced, before the run)",
            median.as_secs_f64() * 1e6,
            dir.path.display()
        )?;
    }
    drop(cluster);
    Ok(())
}

fn run_dashboard(args: &DashboardArgs, stop: &Stop) -> Result<(), Failure> {
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

/// Runs one node of the key-value service until a stop signal.
fn run_serve(args: &ServeArgs, stop: &Stop) -> Result<(), Failure> {
    use zeroraft::kv::ReadMode;
    use zeroraft::serve::{NodeOptions, ServeNode};
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

/// The dashboard on a running cluster of `serve` processes, until `q` or a stop signal; then
/// the summary.
fn run_remote_monitor(args: &MonitorArgs, stop: &Stop) -> Result<(), Failure> {
    use zeroraft::remote::{RemoteCluster, RemoteOptions};
    if !(io::stdin().is_terminal() && io::stdout().is_terminal()) {
        return Err(Failure::Run(io::Error::other(
            "the dashboard needs a terminal",
        )));
    }
    let remote = RemoteCluster::connect(args.connect.0.clone(), RemoteOptions::default())
        .map_err(|e| Failure::Run(io::Error::other(format!("cannot watch the cluster: {e}"))))?;
    let started = std::time::Instant::now();
    let app = zeroraft_monitor::run(&remote, fastrand::u64(..), None, &stop.requested)?;
    writeln!(io::stdout(), "{}", app.final_summary(started.elapsed()))?;
    Ok(())
}

/// One operation against a running service; a get prints the value.
fn run_kv(args: &KvArgs) -> Result<(), Failure> {
    use zeroraft::kv::{ClientOptions, KvClient};
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

/// `bench --connect`: pipelined puts to a running service, then one client alone beside the
/// loopback round trip.
fn run_remote_bench(args: &BenchArgs, stop: &Stop) -> Result<(), Failure> {
    use zeroraft::kv::bench::{LoadOptions, loopback_rtt, remote_load};
    let addrs = &args.connect.as_ref().expect("checked by the caller").0;
    let options = LoadOptions {
        in_flight: args.clients as usize,
        connections: args.connections,
        payload: args.payload,
        duration: Duration::from_secs(args.seconds),
        keys: 1000,
    };
    let mut before = 0;
    let mut failed = None;
    let report = remote_load(addrs, &options, |commits, elapsed| {
        if stop.is_requested() {
            return ControlFlow::Break(());
        }
        let line = writeln!(
            io::stderr().lock(),
            "t={:>4.0}s  {:>8.3} M puts/s this second  {commits:>11} in all",
            elapsed.as_secs_f64(),
            (commits - before) as f64 / 1e6
        );
        before = commits;
        match line {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        }
    })
    .map_err(|e| Failure::Run(io::Error::other(e.to_string())))?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{} nodes, {} in flight over {} connections, {} B puts: {:.3} M commits/s, {:.3} µs client CPU per commit, latency p50 {:.1} µs p99 {:.1} µs ({} commits, {} refused, in {:.1} s)",
        addrs.len(),
        args.clients,
        args.connections.min(args.clients as usize),
        args.payload,
        report.rate() / 1e6,
        report.client_cpu.as_secs_f64() * 1e6 / report.commits.max(1) as f64,
        report.latency_us(0.5),
        report.latency_us(0.99),
        report.commits,
        report.refused,
        report.elapsed.as_secs_f64()
    )?;
    if stop.is_requested() {
        return Ok(());
    }
    let one = LoadOptions {
        in_flight: 1,
        connections: 1,
        duration: Duration::from_secs(args.seconds.min(5)),
        ..options
    };
    let single = remote_load(addrs, &one, |_, _| {
        if stop.is_requested() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .map_err(|e| Failure::Run(io::Error::other(e.to_string())))?;
    let rtt = loopback_rtt(2000)?;
    writeln!(
        out,
        "one client: latency p50 {:.1} µs p99 {:.1} µs ({} commits); loopback TCP round trip p50 {:.1} µs, measured now",
        single.latency_us(0.5),
        single.latency_us(0.99),
        single.commits,
        rtt.as_secs_f64() * 1e6
    )?;
    Ok(())
}
