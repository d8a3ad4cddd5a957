//! `zeroraft`: an embedded cluster under client load, watched in the live terminal monitor.
//!
//! ```text
//! cargo run --release                                  # the dashboard, 5 nodes, 10k proposals/s
//! cargo run --release -- --nodes 3 --rate unlimited    # as fast as it commits
//! cargo run --release -- --headless --seconds 10       # no terminal: a line a second
//! ```
//!
//! Arguments are parsed by hand into a [`Command`]; a subcommand is one more variant, chosen by
//! the first argument in [`parse`], with its own option parser over the same [`Args`].

mod load;

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

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
  --seconds S        how long to propose, 1 to 3600 (default 10)";

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

/// Options of `zeroraft bench`.
#[derive(Clone, Debug, PartialEq)]
struct BenchArgs {
    nodes: usize,
    clients: u64,
    payload: usize,
    seconds: u64,
}

impl Default for BenchArgs {
    fn default() -> Self {
        Self {
            nodes: 3,
            clients: 64,
            payload: 16,
            seconds: 10,
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
            "-h" | "--help" => return Ok(Command::Help),
            other => return Err(format!("unknown argument `{other}` for bench")),
        }
    }
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
            "--unreliable" | "--headless" if inline.is_some() => {
                return Err(format!("{flag} takes no value"));
            }
            "--unreliable" => m.unreliable = true,
            "--headless" => m.headless = true,
            "-h" | "--help" => return Ok(Command::Help),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(Command::Monitor(m))
}

fn main() -> ExitCode {
    let command = match parse(std::env::args().skip(1).collect()) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("zeroraft: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::Bench(args) => {
            run_bench(&args);
            ExitCode::SUCCESS
        }
        Command::Monitor(args) => match run_monitor(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("zeroraft: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run_bench(args: &BenchArgs) {
    let cluster = zeroraft::bench::BenchCluster::new(args.nodes, zeroraft::Config::default());
    // One payload for the whole run.
    let payload = zeroraft::bench::static_payload(args.payload);
    let report = cluster.closed_loop_for(
        Duration::from_secs(args.seconds),
        args.clients,
        &payload,
        |commits, elapsed| {
            eprint!(
                "\r{:>4.0} s  {commits:>11} commits  {:>8.3} M/s",
                elapsed.as_secs_f64(),
                commits as f64 / elapsed.as_secs_f64() / 1e6
            );
        },
    );
    eprint!("\r{:60}\r", "");
    println!(
        "{} nodes, {} in flight, {} B: {:.3} M commits/s, {:.3} µs CPU per commit, latency p50 {:.1} µs p99 {:.1} µs p99.9 {:.1} µs ({} commits in {:.1} s)",
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
    );
}

fn run_monitor(args: &MonitorArgs) -> io::Result<()> {
    let terminal = io::stdin().is_terminal() && io::stdout().is_terminal();
    if !args.headless && !terminal {
        return Err(io::Error::other(
            "the dashboard needs a terminal; use --headless --seconds S without one",
        ));
    }
    let cluster = LoadedCluster::start(
        args.nodes,
        args.unreliable,
        ClusterStorage::Memory,
        LoadOptions {
            clients: 4,
            rate: args.rate,
            payload: args.payload,
            window: 1024,
        },
    )
    .map_err(io::Error::other)?;
    if args.headless {
        let seconds = args.seconds.unwrap_or(10);
        zeroraft_monitor::run_headless(&cluster, seconds, &mut io::stdout().lock())?;
    } else {
        let limit = args.seconds.map(Duration::from_secs);
        let started = std::time::Instant::now();
        let app = zeroraft_monitor::run(&cluster, fastrand::u64(..), limit)?;
        writeln!(io::stdout(), "{}", app.final_summary(started.elapsed()))?;
    }
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
                })),
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
