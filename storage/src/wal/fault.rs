//! Fault injection: in this crate's tests, the Nth write or sync of a [`super::FileStorage`]
//! can be made to fail with a chosen [`io::ErrorKind`] (a full disk, an I/O error), a failing
//! write first writing part of its buffer, as a real one may; or the process can be made to
//! "crash" before its Nth file-system operation (a write, a sync, or creating, renaming or
//! removing a file): that one and every later one fail without doing anything, so the directory
//! is left as a crash at that point would leave it. Outside tests [`Faults`] is empty and every
//! check is a no-op.
//!
//! Tests can also switch bugs back on ([`Bugs`]), each undoing one rule the log's durability
//! rests on, to show that the power-loss tests catch it. With the `sim-fs` feature the
//! simulator can too, through the simulated file system (`SimFs::switch_on`): a log opened on
//! a `SimFs` takes its bugs, and only such a log, so that no log on a real disk ever runs
//! with one. Without the feature, and outside tests, the bugs do not exist and every check of
//! one is the constant `false`.

use std::io;

/// The faults planned for one storage, and the operations counted so far.
#[derive(Debug, Default)]
pub(super) struct Faults {
    #[cfg(test)]
    plan: Plan,
    /// Bugs switched on.
    #[cfg(any(test, feature = "sim-fs"))]
    pub(super) bugs: Bugs,
}

/// Bugs a test can switch on in a write-ahead log; each breaks one rule of the module docs of
/// [`super`](crate::wal). A log takes them from the simulated file system it is opened on
/// ([`SimFs::switch_on`](super::fs::sim::SimFs::switch_on)); none is on by default.
#[cfg(any(test, feature = "sim-fs"))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bugs {
    /// A batch record is written but not synced before `persist` returns.
    pub skip_sync: bool,
    /// A snapshot file is renamed into place before its data is synced, and synced only after
    /// the record naming it.
    pub rename_before_data_sync: bool,
    /// The segments a new snapshot covers are handed over to be removed (and the directory
    /// synced) before the record naming the snapshot is written, not after it is durable.
    pub remove_before_snapshot_durable: bool,
    /// A failed sync leaves no marker, so that the log is opened again before a reboot.
    pub no_sync_failed_marker: bool,
    /// A prepared segment is renamed into place and written to without syncing the directory.
    pub rotate_without_dir_sync: bool,
}

#[cfg(test)]
#[derive(Debug, Default)]
struct Plan {
    /// Writes done since the plan was made.
    writes: u64,
    /// Syncs done since the plan was made.
    syncs: u64,
    /// Operations of any kind done (or refused) since the plan was made.
    ops: u64,
    /// Fail the write with this number (1 = the next one).
    fail_write: Option<(u64, io::ErrorKind)>,
    /// Fail the sync with this number (1 = the next one).
    fail_sync: Option<(u64, io::ErrorKind)>,
    /// Fail the operation with this number and every one after it, doing nothing.
    crash_at: Option<u64>,
}

#[cfg(test)]
impl Plan {
    /// Counts one operation; `Err` if the process has "crashed" by then.
    fn op(&mut self) -> io::Result<()> {
        self.ops += 1;
        match self.crash_at {
            Some(nth) if self.ops >= nth => Err(io::Error::other("injected crash")),
            _ => Ok(()),
        }
    }
}

impl Faults {
    /// Called before writing `len` bytes. `Err((prefix, error))`: write only the first `prefix`
    /// bytes, then fail with `error`.
    #[inline]
    pub(super) fn write(&mut self, len: usize) -> Result<(), (usize, io::Error)> {
        #[cfg(test)]
        {
            self.plan.op().map_err(|e| (0, e))?;
            self.plan.writes += 1;
            if let Some((nth, kind)) = self.plan.fail_write
                && nth == self.plan.writes
            {
                return Err((len / 2, io::Error::new(kind, "injected write failure")));
            }
        }
        let _ = len;
        Ok(())
    }

    /// Called before a sync (of a file or of the directory).
    #[inline]
    pub(super) fn sync(&mut self) -> io::Result<()> {
        #[cfg(test)]
        {
            self.plan.op()?;
            self.plan.syncs += 1;
            if let Some((nth, kind)) = self.plan.fail_sync
                && nth == self.plan.syncs
            {
                return Err(io::Error::new(kind, "injected sync failure"));
            }
        }
        Ok(())
    }

    /// Whether a failure or a crash is planned: then the log removes covered segments itself
    /// rather than on its remover thread (which does not count operations), so that a test
    /// can stop it at each of them.
    #[inline]
    pub(super) fn planned(&self) -> bool {
        #[cfg(test)]
        if self.plan.crash_at.is_some()
            || self.plan.fail_write.is_some()
            || self.plan.fail_sync.is_some()
        {
            return true;
        }
        false
    }

    /// Called before creating, renaming or removing a file.
    #[inline]
    pub(super) fn change(&mut self) -> io::Result<()> {
        #[cfg(test)]
        self.plan.op()?;
        Ok(())
    }

    /// Whether to skip the sync of a batch record (`Bugs::skip_sync`).
    #[inline]
    pub(super) fn skip_sync(&self) -> bool {
        #[cfg(any(test, feature = "sim-fs"))]
        return self.bugs.skip_sync;
        #[cfg(not(any(test, feature = "sim-fs")))]
        false
    }

    /// Whether to rename a snapshot file before syncing it (`Bugs::rename_before_data_sync`).
    #[inline]
    pub(super) fn rename_before_data_sync(&self) -> bool {
        #[cfg(any(test, feature = "sim-fs"))]
        return self.bugs.rename_before_data_sync;
        #[cfg(not(any(test, feature = "sim-fs")))]
        false
    }

    /// Whether to remove covered segments before the snapshot's record is written
    /// (`Bugs::remove_before_snapshot_durable`).
    #[inline]
    pub(super) fn remove_before_snapshot_durable(&self) -> bool {
        #[cfg(any(test, feature = "sim-fs"))]
        return self.bugs.remove_before_snapshot_durable;
        #[cfg(not(any(test, feature = "sim-fs")))]
        false
    }

    /// Whether to skip the directory sync after renaming a prepared segment into place
    /// (`Bugs::rotate_without_dir_sync`).
    #[inline]
    pub(super) fn rotate_without_dir_sync(&self) -> bool {
        #[cfg(any(test, feature = "sim-fs"))]
        return self.bugs.rotate_without_dir_sync;
        #[cfg(not(any(test, feature = "sim-fs")))]
        false
    }

    /// Whether to leave no marker after a failed sync (`Bugs::no_sync_failed_marker`).
    #[inline]
    pub(super) fn no_sync_failed_marker(&self) -> bool {
        #[cfg(any(test, feature = "sim-fs"))]
        return self.bugs.no_sync_failed_marker;
        #[cfg(not(any(test, feature = "sim-fs")))]
        false
    }
}

#[cfg(test)]
impl Faults {
    /// Makes the `nth` write from now (1 = the next) write half its bytes, then fail with `kind`.
    pub(super) fn fail_write(&mut self, nth: u64, kind: io::ErrorKind) {
        self.plan = Plan {
            fail_write: Some((nth, kind)),
            ..Plan::default()
        };
    }

    /// Makes the `nth` sync from now (1 = the next) fail with `kind`.
    pub(super) fn fail_sync(&mut self, nth: u64, kind: io::ErrorKind) {
        self.plan = Plan {
            fail_sync: Some((nth, kind)),
            ..Plan::default()
        };
    }

    /// Makes the `nth` operation from now (1 = the next) and every later one fail without doing
    /// anything.
    pub(super) fn crash_at(&mut self, nth: u64) {
        self.plan = Plan {
            crash_at: Some(nth),
            ..Plan::default()
        };
    }

    /// The operations counted since the plan was made.
    pub(super) fn ops(&self) -> u64 {
        self.plan.ops
    }
}
