//! The sync failure marker, `SYNC-FAILED`: left in the data directory when a sync fails, so
//! that the directory is not opened again before the machine restarts.
//!
//! When `fsync` fails, Linux reports the error once and marks the pages it could not write
//! clean: the page cache goes on holding data the disk may not hold, and a later `fsync`
//! succeeds without writing it. A process started again without a reboot reads the log back
//! from that cache: a vote whose record never reached the disk reads as written, the node acts
//! on it (the open's own sync "succeeds"), and after the next power failure the vote is gone
//! and the node may vote again in the same term. After a reboot the page cache is gone and the
//! log reads what the disk holds, which recovery checks as after any power failure. So the
//! marker records the boot it was written in (`/proc/sys/kernel/random/boot_id`) and refuses
//! an open in that boot only; in a later one it is removed once the log has opened.
//!
//! The marker only has to outlive the process, not the machine, and the page cache outlives the
//! process. It is synced all the same (the file, then the directory), so that a power cut does
//! not leave a marker cut short, which no open could tell from one a crash of the process left
//! in the same boot, and which would be refused. If that sync fails too (the disk is failing),
//! the marker is in the page cache for the opens of this boot, which is what matters. If it
//! cannot be written at all, the failure that was to be recorded is reported all the same.
//!
//! ```text
//! zeroraft sync failed
//! boot 2f1c1d0e-6a9b-4f7e-9d55-0c1e3a4b5c6d
//! failure cannot sync /var/lib/zeroraft/00000000000000000003.wal: Input/output error (os error 5)
//! ```

use std::io;
use std::path::{Path, PathBuf};

use super::fault::Faults;
use super::fs::{Fs, Open};
use super::io_error;
use crate::StorageError;

/// The marker's name.
pub(super) const MARKER: &str = "SYNC-FAILED";
/// Its first line.
const TITLE: &str = "zeroraft sync failed";
/// What the marker says of a boot whose id could not be read: it matches every boot.
const UNKNOWN_BOOT: &str = "unknown";
/// A marker is a few lines; more than this is not one.
const MAX_BYTES: u64 = 16 << 10;

/// Leaves the marker in `dir`, recording `failure` and this boot. `Err` says why it could not.
pub(super) fn record(
    fs: &dyn Fs,
    dir: &Path,
    failure: &str,
    faults: &mut Faults,
) -> Result<(), String> {
    let path = dir.join(MARKER);
    let boot = fs.boot_id().unwrap_or_else(|_| UNKNOWN_BOOT.to_owned());
    let failure: String = failure
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = format!("{TITLE}\nboot {boot}\nfailure {failure}\n");
    let written = faults.change().and_then(|()| {
        let file = fs.open(&path, Open::Truncate)?;
        file.write_all_at(text.as_bytes(), 0)?;
        Ok(file)
    });
    match written {
        Ok(file) => {
            tracing::error!(
                file = %path.display(),
                "a sync failed ({failure}): the data directory will not be opened again until \
                 the machine restarts"
            );
            if let Err(error) = file.sync_all().and_then(|()| fs.sync_dir(dir)) {
                tracing::warn!(
                    file = %path.display(),
                    %error,
                    "cannot sync the sync failure marker: a power cut may leave it cut short, \
                     and the data directory then refused until the marker is removed"
                );
            }
            Ok(())
        }
        Err(error) => {
            tracing::error!(
                file = %path.display(),
                %error,
                "a sync failed ({failure}), and the marker that keeps the data directory from \
                 being opened again before the machine restarts cannot be written"
            );
            Err(format!(
                "and the {MARKER} marker cannot be written: {error}"
            ))
        }
    }
}

/// Checks `dir` for a marker. `Ok(None)`: there is none; `Ok(Some(path))`: there is one from an
/// earlier boot, to remove once the log has opened.
///
/// # Errors
///
/// [`StorageError::SyncFailed`] for a marker of this boot (or one whose boot cannot be told),
/// [`StorageError::Io`] if it cannot be read.
pub(super) fn check(fs: &dyn Fs, dir: &Path) -> Result<Option<PathBuf>, StorageError> {
    let path = dir.join(MARKER);
    let text = match fs.read(&path, MAX_BYTES) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("read", &path)(e)),
    };
    let Some((boot, failure)) = parse(&text) else {
        return Err(StorageError::SyncFailed {
            path,
            failure: "the marker cannot be read, so when the failure happened is unknown"
                .to_owned(),
        });
    };
    match fs.boot_id() {
        Ok(now) if boot != UNKNOWN_BOOT && boot != now => {
            tracing::warn!(
                file = %path.display(),
                "a sync failed in an earlier boot ({failure}); the machine has restarted since, \
                 so the log holds what the disk holds: opening it, and removing the marker"
            );
            Ok(Some(path))
        }
        Ok(_) if boot == UNKNOWN_BOOT => Err(StorageError::SyncFailed {
            path,
            failure: format!("{failure}; the boot it happened in is unknown"),
        }),
        Ok(_) => Err(StorageError::SyncFailed { path, failure }),
        Err(error) => Err(StorageError::SyncFailed {
            path,
            failure: format!("{failure}; whether the machine restarted since is unknown: {error}"),
        }),
    }
}

/// The boot and the failure a marker records.
fn parse(text: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(text).ok()?;
    let mut lines = text.lines();
    if lines.next()? != TITLE {
        return None;
    }
    let boot = lines.next()?.strip_prefix("boot ")?;
    let failure = lines.next()?.strip_prefix("failure ")?;
    if boot.is_empty() || lines.next().is_some() || !text.ends_with('\n') {
        return None;
    }
    Some((boot.to_owned(), failure.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_writes_and_nothing_else() {
        let good = format!("{TITLE}\nboot abc-1\nfailure cannot sync x: EIO\n");
        assert_eq!(
            parse(good.as_bytes()),
            Some(("abc-1".to_owned(), "cannot sync x: EIO".to_owned()))
        );
        let cases = [
            String::new(),
            good[..good.len() - 1].to_owned(),
            good.replace("boot ", "bot "),
            good.replace("boot abc-1", "boot "),
            good.replace(TITLE, "zeroraft"),
            format!("{good}more\n"),
            String::from_utf8_lossy(&[0xff, 0xfe]).into_owned(),
        ];
        for (case, text) in cases.iter().enumerate() {
            assert_eq!(parse(text.as_bytes()), None, "case {case}: {text:?}");
        }
    }
}
