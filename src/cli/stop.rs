//! [`Stop`]: the signals that stop a run (see the binary's documentation for the exit status
//! they lead to).

use std::ffi::c_int;
use std::io;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Acquire, Ordering::Relaxed};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// Watches for the signals that stop a run: SIGINT, SIGTERM and SIGHUP.
///
/// Instead of killing the process, the first of them sets [`Stop::requested`], which the
/// dashboard and the headless loop look at every quarter of a second and `bench` every second;
/// they then end as at the end of their time, and the process exits with 128 plus the signal's
/// number once the nodes have stopped and a temporary data directory is gone. A second one
/// exits at once with that status, without cleaning up: the way out of a stop that hangs.
pub struct Stop {
    /// Set by the first stop signal.
    pub requested: Arc<AtomicBool>,
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
    pub fn on_signals() -> io::Result<Self> {
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
    pub fn is_requested(&self) -> bool {
        self.requested.load(Acquire)
    }

    /// The exit status for a run a stop signal ended: 128 plus its number.
    pub fn status(&self) -> Option<ExitCode> {
        match self.signal.load(Relaxed) {
            0 => None,
            number => Some(ExitCode::from(128 + number as u8)),
        }
    }
}
