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
//! Arguments are parsed by clap ([`cli::args`]) into a [`cli::args::Command`]; each command is
//! carried out by a module of [`cli`].
//!
//! All output goes through `writeln!` and its errors are handled: when the reader of stdout or
//! stderr goes away (a broken pipe: `zeroraft --headless | head -1`), the run stops at the next
//! line it cannot write, the nodes stop, a temporary data directory is removed, and the process
//! exits quietly with status 0, the reader having had all it asked for. (Rust ignores SIGPIPE,
//! which would have killed a C program at that write, so the write returns the error instead.)
//!
//! SIGINT, SIGTERM and SIGHUP stop a run the way its end does ([`cli::Stop`]): the dashboard leaves
//! as on `q` and restores the terminal, `--headless` and `bench` print their summary; then the
//! nodes stop and a temporary data directory is removed.
//!
//! Exit status: 0 on success (and on a broken pipe), 2 for a command line that cannot be
//! carried out (a bad argument, a data directory that cannot be used), 1 when running fails,
//! and 128 plus the signal's number (130, 143, 129) for a run that SIGINT, SIGTERM or SIGHUP
//! stopped, the status a shell reports for a command such a signal killed, so that scripts can
//! tell a run cut short from a full one. `serve` is a service: a stop signal ends it with 0, and
//! when its node stops on its own it exits with a status a supervisor can act on (3 a full disk,
//! 4 another storage failure, 5 a state machine failure, 6 an internal error, 7 the node learned
//! it was removed from the cluster; see
//! [`cli::Failure::status`]).
//!
//! # Orderings
//!
//! A stop signal's handler stores its number in `Stop::signal`, then sets
//! `Stop::requested`, both `SeqCst` (signal-hook runs the actions in the order they were
//! registered). The loops load `requested` with `Acquire`, so a run that ended on it reads the
//! number afterwards, on the same thread, with `Relaxed`.

mod cli;

use std::process::ExitCode;

use crate::cli::args::{self, Command};
use crate::cli::{Failure, Stop, complain};

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
    // A service stopped by a signal has done its job; a run with a length was cut short.
    let signal_status = !matches!(command, Command::Serve(_));
    let result = match command {
        Command::Bench(args) if args.connect.is_some() => cli::bench::run_remote(&args, &stop),
        Command::Bench(args) if args.membership_cycle => cli::bench::run_membership_cycle(&args),
        Command::Bench(args) => cli::bench::run(&args, &stop),
        Command::Dashboard(args) => cli::dashboard::run(&args, &stop),
        Command::Init(args) => cli::service::init(&args),
        Command::Serve(args) => cli::service::serve(&args, &stop),
        Command::Certs(args) => cli::service::certs(&args),
        Command::Kv(args) => cli::service::kv(&args),
        Command::Admin(args) => cli::service::admin(&args),
        Command::Monitor(args) => cli::dashboard::run_remote(&args, &stop),
    };
    match result {
        Ok(()) | Err(Failure::Closed) if signal_status => {
            stop.status().unwrap_or(ExitCode::SUCCESS)
        }
        Ok(()) | Err(Failure::Closed) => ExitCode::SUCCESS,
        Err(failure) => {
            match &failure {
                Failure::Setup(message) => complain(message),
                Failure::Run(e) => complain(e),
                Failure::Node(node) => complain(format_args!("the node stopped: {node}")),
                Failure::Removed => complain(
                    "this node was removed from the cluster; it stops for good (do not start its \
                     data directory again)",
                ),
                Failure::Closed => {}
            }
            failure.status()
        }
    }
}
