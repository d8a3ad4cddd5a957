//! Removing the segments a durable snapshot covers on a thread of its own, so that the write
//! that stored the snapshot is acknowledged without waiting for the file system to free them.
//!
//! Removing a segment of a full size frees its blocks, and the directory sync that follows
//! waits for the file system's journal: on a busy disk the two take tens of milliseconds, which
//! the write that carried the snapshot, and every write queued behind it, would otherwise wait
//! for.
//!
//! The rule of the [Snapshots](super#snapshots) section is kept: a segment is handed over only
//! once the batch record naming the snapshot that covers it is durable, so whatever part of the
//! removal a crash leaves undone (files still there, a later one gone and an earlier one not)
//! is what recovery already tolerates. Only covered segments are handed over: their sequence
//! numbers are below the last segment's and are never used again, so no file the log makes
//! later can have the name of one waiting here. Segments left by an earlier run and snapshot
//! files, whose names a later file may take, are still removed by the log itself.
//!
//! One removal runs at a time, in the order they were handed over, oldest segment first, then
//! the directory is synced. A segment that cannot be removed is handed back (see
//! [`Remover::failed`]) to be tried again after the next snapshot.
//!
//! The simulated file system allows no threads: there the log keeps the segments it hands
//! over in a queue of its own and removes them at once or at the start of its next write, as
//! the simulator's seed decides (`FileStorage::hand_over`), and a process that dies first
//! leaves them to the next open, as one whose thread had not got to them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use super::fault::Faults;
use super::fs::Fs;

/// The thread that removes covered segments, and what it reports.
pub(super) struct Remover {
    /// Segments to remove, one batch per snapshot (`None` once dropped).
    jobs: Option<Sender<Vec<PathBuf>>>,
    /// For each batch done, the segments it could not remove.
    done: Receiver<Vec<PathBuf>>,
    thread: Option<JoinHandle<()>>,
    /// Batches handed over and not yet reported done.
    ///
    /// Invariant: at most the number of batches sent on `jobs` and not yet received on `done`.
    pending: usize,
}

impl Remover {
    /// Starts the thread, on `fs` in `dir`; `None` if it cannot be started (the log then
    /// removes segments itself).
    pub(super) fn start(fs: Arc<dyn Fs>, dir: PathBuf) -> Option<Self> {
        let (jobs, queue) = mpsc::channel::<Vec<PathBuf>>();
        let (report, done) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("zeroraft-wal-remove".to_owned())
            .spawn(move || {
                for paths in queue {
                    let failed = remove_and_sync(&*fs, &dir, paths, &mut Faults::default());
                    if report.send(failed).is_err() {
                        return;
                    }
                }
            });
        match spawned {
            Ok(thread) => Some(Self {
                jobs: Some(jobs),
                done,
                thread: Some(thread),
                pending: 0,
            }),
            Err(error) => {
                tracing::warn!(
                    %error,
                    "cannot start a thread to remove the segments a snapshot covers: the log \
                     removes them itself"
                );
                None
            }
        }
    }

    /// Hands `paths` over, to remove oldest first and then sync the directory. Call it only
    /// once the snapshot that covers them is durable. Returns them if the thread is gone.
    pub(super) fn hand_over(&mut self, paths: Vec<PathBuf>) -> Result<(), Vec<PathBuf>> {
        match &self.jobs {
            Some(jobs) => match jobs.send(paths) {
                Ok(()) => {
                    self.pending += 1;
                    Ok(())
                }
                Err(mpsc::SendError(paths)) => Err(paths),
            },
            None => Err(paths),
        }
    }

    /// The segments that removals done so far could not remove, without waiting.
    pub(super) fn failed(&mut self) -> Vec<PathBuf> {
        let mut failed = Vec::new();
        while let Ok(paths) = self.done.try_recv() {
            self.pending -= 1;
            failed.extend(paths);
        }
        failed
    }

    /// Waits until every removal handed over is done; returns the segments they could not
    /// remove.
    pub(super) fn wait(&mut self) -> Vec<PathBuf> {
        let mut failed = self.failed();
        while self.pending > 0 {
            match self.done.recv() {
                Ok(paths) => {
                    self.pending -= 1;
                    failed.extend(paths);
                }
                Err(_) => {
                    self.pending = 0;
                }
            }
        }
        failed
    }
}

impl Drop for Remover {
    /// Finishes the removals handed over and waits for the thread: nothing of the storage
    /// works on the directory once it is dropped.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Removes `paths` in order (one already gone counts as removed), then, if any was removed,
/// syncs `dir`. Returns the paths it could not remove. Failures are logged, not returned.
pub(super) fn remove_and_sync(
    fs: &dyn Fs,
    dir: &Path,
    paths: Vec<PathBuf>,
    faults: &mut Faults,
) -> Vec<PathBuf> {
    let mut failed = Vec::new();
    let mut removed = 0;
    for path in paths {
        match super::remove(faults, fs, &path) {
            Ok(()) => removed += 1,
            Err(error) => {
                tracing::warn!(
                    file = %path.display(),
                    %error,
                    "cannot remove a segment the log's snapshot covers; trying again after the \
                     next snapshot"
                );
                failed.push(path);
            }
        }
    }
    if removed > 0 {
        match super::sync_dir_with(faults, fs, dir) {
            Ok(()) => tracing::debug!(removed, "removed the segments the snapshot covers"),
            Err(error) => tracing::warn!(
                %error,
                "removed the segments the snapshot covers, but cannot sync the directory; \
                 they may come back after a crash and be removed then"
            ),
        }
    }
    failed
}
