//! `zeroraft`: an embedded cluster under client load, watched in the live terminal monitor.
//!
//! ```text
//! cargo run --release                                  # the dashboard, 5 nodes, 10k proposals/s
//! cargo run --release -- --nodes 3 --rate unlimited    # as fast as it commits
//! cargo run --release -- --headless --seconds 10       # no terminal: a line a second
//! cargo run --release -- --storage file --data DIR     # nodes keep write-ahead logs in DIR
//! ```
//!
//! Arguments are parsed by hand into a [`Command`]; a subcommand is one more variant, chosen by
//! the first argument in [`parse`], with its own option parser over the same [`Args`].
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

mod load;

use std::ffi::c_int;
use std::io::{self, IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Acquire, Ordering::Relaxed};
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use zeroraft::bench::BenchStorage;
use zeroraft::cluster::ClusterStorage;
use zeroraft_monitor::Rate;

use crate::load::{LoadOptions, LoadedCluster};

const USAGE: &str = "\
Usage: zeroraft [OPTIONS]

Runs a Raft cluster in this process under client load and shows it in a live terminal
dashboard (press ? there for the keys).

Options:
  --nodes N          nodes in the cluster, 3 to 9 (default 5)
  --rate R           proposals per second over all clients: a number such as 5000, 20k or 1M,
                     or `unlimited` (default 10k)
  --payload BYTES    bytes per command, 8 to 1048576 (default 16)
  --unreliable       start with the unreliable network (delays and drops)
  --storage KIND     where nodes keep their raft state: `memory` (default) or `file`
                     (a write-ahead log per node, synced to disk)
  --data DIR         with --storage file: the directory for the logs, created if missing
                     and kept (default: a fresh directory under the system's temporary
                     directory, removed at exit)
  --headless         no terminal: print one summary line per second, then a final summary
  --seconds S        stop after S seconds (default with --headless: 10; without: run until q)
  -h, --help         print this help

Usage: zeroraft bench [OPTIONS]

Measures the engine without a terminal: a closed loop of client proposals on the reliable
in-memory network, with a progress line each second and a summary at the end (commits/s,
CPU µs per commit for the whole process, latency percentiles from start to the leader's apply).

Options:
  --nodes N          nodes in the cluster, 1 to 9 (default 3)
  --clients C        proposals kept in flight, 1 to 1048576 (default 64)
  --payload BYTES    bytes per command, 0 to 1048576 (default 16)
  --seconds S        how long to propose, 1 to 3600 (default 10)
  --storage KIND     where nodes keep their raft state: `none` (default: the engine alone, as
                     the README's and BENCHMARKS.md's figures are measured), `memory`, or
                     `file` (a write-ahead log per node, synced to disk; the disk's fdatasync
                     median is measured and printed too)
  --data DIR         with --storage file: as for the dashboard (default: a fresh temporary
                     directory, removed at exit)
  --compact-every N  each node snapshots its state machine and compacts its log every N
                     applied entries; 0 never compacts (default 100000)

SIGINT, SIGTERM and SIGHUP stop a run as its end does: the dashboard restores the terminal,
--headless and bench print their summary, and a temporary data directory is removed. A second
one ends it at once. Output into a pipe nobody reads any more (`| head -1`) stops it quietly.

Exit status: 0 on success (also when the output's reader went away), 1 when running fails,
2 for a bad argument or an unusable data directory, 128 + N after signal N (130 for SIGINT,
143 for SIGTERM, 129 for SIGHUP).";

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq)]
enum Command {
    /// The cluster under load, in the dashboard or headless.
    Monitor(MonitorArgs),
    /// Measure throughput, CPU and latency without a terminal.
    Bench(BenchArgs),
    /// Print the usage.
    Help,
}

/// Where nodes keep their raft state, as the command line says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StorageKind {
    /// Nowhere: the engine alone (`bench` only).
    None,
    /// In memory.
    Memory,
    /// A write-ahead log per node in a data directory.
    File,
}

impl StorageKind {
    /// Parses the value of `--storage`, one of `allowed`.
    fn parse(text: &str, allowed: &[Self]) -> Result<Self, String> {
        let kind = match text {
            "none" => Some(Self::None),
            "memory" => Some(Self::Memory),
            "file" => Some(Self::File),
            _ => None,
        };
        match kind {
            Some(kind) if allowed.contains(&kind) => Ok(kind),
            _ => {
                let names: Vec<String> =
                    allowed.iter().map(|k| format!("`{}`", k.name())).collect();
                let (last, rest) = names.split_last().expect("some kind is allowed");
                let choices = if rest.is_empty() {
                    last.clone()
                } else {
                    format!("{} or {last}", rest.join(", "))
                };
                Err(format!("--storage must be {choices}, got `{text}`"))
            }
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

/// Checks that `--data` comes only with `--storage file`.
fn check_data(storage: StorageKind, data: Option<&Path>) -> Result<(), String> {
    match (storage, data) {
        (StorageKind::None | StorageKind::Memory, Some(_)) => Err(format!(
            "--data is where --storage file keeps the logs; with --storage {} there are none",
            storage.name()
        )),
        _ => Ok(()),
    }
}

/// Options of `zeroraft bench`.
#[derive(Clone, Debug, PartialEq)]
struct BenchArgs {
    nodes: usize,
    clients: u64,
    payload: usize,
    seconds: u64,
    storage: StorageKind,
    data: Option<PathBuf>,
    /// Compact every this many applied entries (`None`: never).
    compact_every: Option<u64>,
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
            compact_every: Some(100_000),
        }
    }
}

/// Options of the monitor (the default command).
#[derive(Clone, Debug, PartialEq)]
struct MonitorArgs {
    nodes: usize,
    rate: Rate,
    payload: usize,
    unreliable: bool,
    headless: bool,
    seconds: Option<u64>,
    storage: StorageKind,
    data: Option<PathBuf>,
}

impl Default for MonitorArgs {
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

/// The arguments still to parse, with helpers for `--flag value` and `--flag=value`.
struct Args {
    rest: std::vec::IntoIter<String>,
}

impl Args {
    fn new(args: Vec<String>) -> Self {
        Self {
            rest: args.into_iter(),
        }
    }

    /// The next argument as `(flag, inline value)`: `--rate=5k` gives `("--rate", Some("5k"))`.
    fn next_flag(&mut self) -> Option<(String, Option<String>)> {
        let arg = self.rest.next()?;
        match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                Some((flag.to_owned(), Some(value.to_owned())))
            }
            _ => Some((arg, None)),
        }
    }

    /// The value of `flag`: inline, or the next argument.
    fn value(&mut self, flag: &str, inline: Option<String>) -> Result<String, String> {
        inline
            .or_else(|| self.rest.next())
            .ok_or_else(|| format!("{flag} needs a value"))
    }

    /// The value of `flag` as a path, which must not be empty.
    fn path(&mut self, flag: &str, inline: Option<String>) -> Result<PathBuf, String> {
        match self.value(flag, inline)? {
            text if text.is_empty() => Err(format!("{flag} needs a directory, got an empty path")),
            text => Ok(PathBuf::from(text)),
        }
    }

    /// The value of `flag` as a number within `range`.
    fn number<T>(
        &mut self,
        flag: &str,
        inline: Option<String>,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, String>
    where
        T: FromStr + PartialOrd + std::fmt::Display,
    {
        let text = self.value(flag, inline)?;
        match text.parse::<T>() {
            Ok(v) if range.contains(&v) => Ok(v),
            _ => Err(format!(
                "{flag} must be a whole number from {} to {}, got `{text}`",
                range.start(),
                range.end()
            )),
        }
    }
}

/// Parses the arguments after the program name.
fn parse(args: Vec<String>) -> Result<Command, String> {
    if args
        .first()
        .is_some_and(|a| matches!(a.as_str(), "help" | "-h" | "--help"))
    {
        return Ok(Command::Help);
    }
    if args.first().is_some_and(|a| a == "bench") {
        return parse_bench(Args::new(args.into_iter().skip(1).collect()));
    }
    parse_monitor(Args::new(args))
}

fn parse_bench(mut args: Args) -> Result<Command, String> {
    let mut b = BenchArgs::default();
    while let Some((flag, inline)) = args.next_flag() {
        match flag.as_str() {
            "--nodes" => b.nodes = args.number(&flag, inline, 1..=9)?,
            "--clients" => b.clients = args.number(&flag, inline, 1..=1 << 20)?,
            "--payload" => b.payload = args.number(&flag, inline, 0..=1 << 20)?,
            "--seconds" => b.seconds = args.number(&flag, inline, 1..=3600)?,
            "--storage" => {
                let all = [StorageKind::None, StorageKind::Memory, StorageKind::File];
                b.storage = StorageKind::parse(&args.value(&flag, inline)?, &all)?;
            }
            "--data" => b.data = Some(args.path(&flag, inline)?),
            "--compact-every" => {
                let every: u64 = args.number(&flag, inline, 0..=u64::MAX)?;
                b.compact_every = (every > 0).then_some(every);
            }
            "-h" | "--help" => return Ok(Command::Help),
            other => return Err(format!("unknown argument `{other}` for bench")),
        }
    }
    check_data(b.storage, b.data.as_deref())?;
    Ok(Command::Bench(b))
}

fn parse_monitor(mut args: Args) -> Result<Command, String> {
    let mut m = MonitorArgs::default();
    while let Some((flag, inline)) = args.next_flag() {
        match flag.as_str() {
            "--nodes" => m.nodes = args.number(&flag, inline, 3..=9)?,
            "--rate" => m.rate = Rate::parse(&args.value(&flag, inline)?)?,
            "--payload" => m.payload = args.number(&flag, inline, 8..=1 << 20)?,
            "--seconds" => m.seconds = Some(args.number(&flag, inline, 1..=u64::MAX / 2)?),
            "--storage" => {
                let kinds = [StorageKind::Memory, StorageKind::File];
                m.storage = StorageKind::parse(&args.value(&flag, inline)?, &kinds)?;
            }
            "--data" => m.data = Some(args.path(&flag, inline)?),
            "--unreliable" | "--headless" if inline.is_some() => {
                return Err(format!("{flag} takes no value"));
            }
            "--unreliable" => m.unreliable = true,
            "--headless" => m.headless = true,
            "-h" | "--help" => return Ok(Command::Help),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    check_data(m.storage, m.data.as_deref())?;
    Ok(Command::Monitor(m))
}

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
    let command = match parse(std::env::args().skip(1).collect()) {
        Ok(command) => command,
        Err(message) => {
            complain(format_args!("{message}\n\n{USAGE}"));
            return ExitCode::from(2);
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
        Command::Help => writeln!(io::stdout().lock(), "{USAGE}").map_err(Failure::from),
        Command::Bench(args) => run_bench(&args, &stop),
        Command::Monitor(args) => run_monitor(&args, &stop),
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
            every_entries: args.compact_every,
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

fn run_monitor(args: &MonitorArgs, stop: &Stop) -> Result<(), Failure> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(line: &str) -> Result<Command, String> {
        parse(line.split_whitespace().map(str::to_owned).collect())
    }

    #[test]
    fn parses_options() {
        let ok = |m: MonitorArgs| Ok(Command::Monitor(m));
        let cases = [
            ("", ok(MonitorArgs::default())),
            (
                "--nodes 3 --rate 20k --payload 64",
                ok(MonitorArgs {
                    nodes: 3,
                    rate: Rate::PerSecond(20_000),
                    payload: 64,
                    ..MonitorArgs::default()
                }),
            ),
            (
                "--headless --seconds=2 --unreliable --rate=unlimited",
                ok(MonitorArgs {
                    headless: true,
                    seconds: Some(2),
                    unreliable: true,
                    rate: Rate::Unlimited,
                    ..MonitorArgs::default()
                }),
            ),
            ("--help", Ok(Command::Help)),
            ("--nodes 5 -h", Ok(Command::Help)),
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
                "--storage file",
                ok(MonitorArgs {
                    storage: StorageKind::File,
                    ..MonitorArgs::default()
                }),
            ),
            (
                "--headless --storage=file --data /var/tmp/raft",
                ok(MonitorArgs {
                    headless: true,
                    storage: StorageKind::File,
                    data: Some("/var/tmp/raft".into()),
                    ..MonitorArgs::default()
                }),
            ),
            (
                "--data=/var/tmp/raft --storage file",
                ok(MonitorArgs {
                    storage: StorageKind::File,
                    data: Some("/var/tmp/raft".into()),
                    ..MonitorArgs::default()
                }),
            ),
            (
                "--storage memory",
                ok(MonitorArgs {
                    storage: StorageKind::Memory,
                    ..MonitorArgs::default()
                }),
            ),
            (
                "bench --storage memory",
                Ok(Command::Bench(BenchArgs {
                    storage: StorageKind::Memory,
                    ..BenchArgs::default()
                })),
            ),
            (
                "bench --clients 1 --storage file --data=disk",
                Ok(Command::Bench(BenchArgs {
                    clients: 1,
                    storage: StorageKind::File,
                    data: Some("disk".into()),
                    ..BenchArgs::default()
                })),
            ),
            (
                "bench --storage=none",
                Ok(Command::Bench(BenchArgs::default())),
            ),
        ];
        for (case, (line, expected)) in cases.into_iter().enumerate() {
            assert_eq!(parse_str(line), expected, "case {case}: `{line}`");
        }
    }

    #[test]
    fn rejects_bad_arguments_with_a_message() {
        let cases = [
            (
                "--nodes 2",
                "--nodes must be a whole number from 3 to 9, got `2`",
            ),
            (
                "--nodes 10",
                "--nodes must be a whole number from 3 to 9, got `10`",
            ),
            ("--nodes", "--nodes needs a value"),
            (
                "--payload 4",
                "--payload must be a whole number from 8 to 1048576, got `4`",
            ),
            ("--seconds 0", "--seconds must be a whole number from 1 to"),
            ("--rate fast", "expected a positive rate"),
            ("--headless=yes", "--headless takes no value"),
            ("--frobnicate", "unknown argument `--frobnicate`"),
            (
                "bench --clients 0",
                "--clients must be a whole number from 1 to 1048576, got `0`",
            ),
            (
                "bench --nodes 10",
                "--nodes must be a whole number from 1 to 9, got `10`",
            ),
            ("bench --rate 5", "unknown argument `--rate` for bench"),
            (
                "--storage disk",
                "--storage must be `memory` or `file`, got `disk`",
            ),
            (
                "--storage none",
                "--storage must be `memory` or `file`, got `none`",
            ),
            ("--storage", "--storage needs a value"),
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
                "--data needs a directory, got an empty path",
            ),
            (
                "bench --storage wal",
                "--storage must be `none`, `memory` or `file`, got `wal`",
            ),
            ("bench --data /tmp/x", "with --storage none there are none"),
        ];
        for (case, (line, message)) in cases.into_iter().enumerate() {
            let error = parse_str(line).expect_err(line);
            assert!(
                error.contains(message),
                "case {case}: `{line}` gave `{error}`"
            );
        }
    }
}
