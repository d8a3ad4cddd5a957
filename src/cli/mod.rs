//! The commands of the `zeroraft` binary, one module each, and what they share: how a command
//! fails ([`Failure`]), the stop signals ([`Stop`]) and the data directory of an in-process
//! cluster ([`DataDir`]).
//!
//! - [`args`]: the command line, parsed by clap.
//! - [`dashboard`]: the live dashboard, on an in-process cluster under load ([`loaded`]) or on
//!   `serve` processes ([`remote`]).
//! - [`bench`]: throughput and latency, in process or against running `serve` processes.
//! - [`service`]: `init`, a new cluster's node's data directory; `serve`, one node of the
//!   key-value service; and `kv`, one client operation.

pub mod args;
pub mod bench;
pub mod dashboard;
mod data_dir;
pub mod loaded;
pub mod remote;
pub mod service;
mod stop;

use std::io::{self, Write};
use std::process::ExitCode;

use zeroraft_engine::NodeFailure;

pub use data_dir::DataDir;
pub use stop::Stop;

/// Why a command stopped, which decides the exit status.
#[derive(Debug)]
pub enum Failure {
    /// What the command line asks for cannot be set up (status 2): a data directory that
    /// cannot be used, storage that cannot be opened.
    Setup(String),
    /// Running failed (status 1).
    Run(io::Error),
    /// The node `serve` runs stopped on its own: the status tells why ([`Failure::status`]).
    Node(NodeFailure),
    /// The node `serve` runs applied its own removal from the cluster (status 7): it no longer
    /// belongs to it; its data directory must not be started again.
    Removed,
    /// The reader of stdout or stderr went away (status 0, and nothing said): see the module
    /// documentation.
    Closed,
}

impl Failure {
    /// The exit status this failure ends the process with (see the binary's documentation).
    pub fn status(&self) -> ExitCode {
        ExitCode::from(match self {
            Self::Closed => 0,
            Self::Run(_) => 1,
            Self::Setup(_) => 2,
            Self::Node(failure) if failure.is_storage_full() => 3,
            Self::Node(NodeFailure::Storage(_) | NodeFailure::WriterStopped) => 4,
            Self::Node(
                NodeFailure::RestoreRefused { .. } | NodeFailure::StateMachinePanic { .. },
            ) => 5,
            Self::Node(NodeFailure::Panic { .. }) => 6,
            Self::Removed => 7,
            Self::Node(_) => 1,
        })
    }
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

/// Writes an error message to stderr. If stderr is gone too, the exit status is all that is
/// left to tell.
pub fn complain(message: impl std::fmt::Display) {
    let _ = writeln!(io::stderr().lock(), "zeroraft: {message}");
}
