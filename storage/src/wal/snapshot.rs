//! Snapshot files: `snapshot-<index>.snap`, one per snapshot, named after the index it covers
//! (20 decimal digits). See the parent module's docs for the layout and for when a file counts.
//!
//! A file is written whole before anything refers to it: to `snapshot-<index>.snap.tmp`, with
//! the data straight from the caller's buffer (no copy), synced once, renamed into place, and
//! the directory synced. It is read back in one read into one buffer, the data a slice of it.

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::fault::Faults;
use super::format::{SnapshotRef, read_u32, read_u64};
use super::fs::{Fs, FsFile, Open};
use super::{io_error, op, sync_dir_with, write_at};
use crate::{Snapshot, StorageError};

/// The magic that opens every snapshot file.
const MAGIC: &[u8; 8] = b"ZRAFTSNP";
/// The snapshot file format of a snapshot without a configuration (as before snapshots carried
/// one).
pub(super) const FORMAT_VERSION: u32 = 1;
/// The snapshot file format of a snapshot that carries a configuration: its length in the
/// header's bytes 12..16, the configuration between the header and the data.
pub(super) const FORMAT_VERSION_CONFIG: u32 = 2;
/// Bytes of the header before the data.
pub(super) const HEADER_BYTES: usize = 48;
/// The file name's prefix.
const PREFIX: &str = "snapshot-";
/// The file name's suffix.
const SUFFIX: &str = ".snap";
/// The suffix of a file being written.
const TMP_SUFFIX: &str = ".snap.tmp";

/// The file name of the snapshot at `index`.
pub(super) fn file_name(index: u64) -> String {
    format!("{PREFIX}{index:020}{SUFFIX}")
}

/// What a directory entry's name says it is.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Name {
    /// A snapshot file, of the snapshot at this index.
    Snapshot(u64),
    /// A snapshot file being written (or left behind by a crash while it was).
    Temporary,
    /// Something else.
    Other,
}

/// Classifies the file name `name`.
pub(super) fn parse_name(name: &str) -> Name {
    let Some(rest) = name.strip_prefix(PREFIX) else {
        return Name::Other;
    };
    let digits = |stem: &str| stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit());
    if let Some(stem) = rest.strip_suffix(TMP_SUFFIX)
        && digits(stem)
    {
        return Name::Temporary;
    }
    match rest.strip_suffix(SUFFIX) {
        Some(stem) if digits(stem) => stem.parse().map_or(Name::Other, Name::Snapshot),
        _ => Name::Other,
    }
}

/// The header of a snapshot file holding `config` (version 2) or none (version 1) and `data`.
fn header(index: u64, term: u64, config: Option<&[u8]>, data: &[u8]) -> [u8; HEADER_BYTES] {
    let mut header = [0; HEADER_BYTES];
    header[..8].copy_from_slice(MAGIC);
    let (version, config) = match config {
        Some(config) => (FORMAT_VERSION_CONFIG, config),
        None => (FORMAT_VERSION, &[][..]),
    };
    let config_len = u32::try_from(config.len()).expect("a configuration of a few bytes");
    header[8..12].copy_from_slice(&version.to_le_bytes());
    header[12..16].copy_from_slice(&config_len.to_le_bytes());
    header[16..24].copy_from_slice(&index.to_le_bytes());
    header[24..32].copy_from_slice(&term.to_le_bytes());
    header[32..40].copy_from_slice(&(data.len() as u64).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(config), data);
    header[40..44].copy_from_slice(&crc.to_le_bytes());
    let crc = crc32c::crc32c(&header[..44]);
    header[44..].copy_from_slice(&crc.to_le_bytes());
    header
}

/// A snapshot file written by [`write()`].
#[derive(Debug)]
pub(super) struct Written {
    /// The file and its path, if its data sync was put off (only ever by a bug re-injected in
    /// tests: the sync must come before the rename).
    deferred: Option<(Box<dyn FsFile>, PathBuf)>,
}

impl Written {
    /// Syncs the file's data if that was put off.
    pub(super) fn finish(self, faults: &mut Faults) -> Result<(), StorageError> {
        match self.deferred {
            Some((file, path)) => sync_all(faults, &*file, &path),
            None => Ok(()),
        }
    }
}

/// `fsync` of `file`.
fn sync_all(faults: &mut Faults, file: &dyn FsFile, path: &Path) -> Result<(), StorageError> {
    faults
        .sync()
        .and_then(|()| file.sync_all())
        .map_err(io_error(op::SYNC, path))
}

/// Writes `snapshot` to its file in `dir`, durably.
pub(super) fn write(
    fs: &dyn Fs,
    dir: &Path,
    snapshot: &Snapshot,
    faults: &mut Faults,
) -> Result<Written, StorageError> {
    let name = file_name(snapshot.index);
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    faults.change().map_err(io_error("create", &tmp))?;
    let file = fs
        .open(&tmp, Open::Truncate)
        .map_err(io_error("create", &tmp))?;
    let data = &snapshot.data[..];
    let config = snapshot.config.as_deref();
    write_at(
        faults,
        &*file,
        &header(snapshot.index, snapshot.term, config, data),
        0,
        &tmp,
    )?;
    let config = config.unwrap_or_default();
    if !config.is_empty() {
        write_at(faults, &*file, config, HEADER_BYTES as u64, &tmp)?;
    }
    if !data.is_empty() {
        let at = (HEADER_BYTES + config.len()) as u64;
        write_at(faults, &*file, data, at, &tmp)?;
    }
    let defer = faults.rename_before_data_sync();
    if !defer {
        sync_all(faults, &*file, &tmp)?;
    }
    faults
        .change()
        .and_then(|()| fs.rename(&tmp, &path))
        .map_err(io_error("rename into place", &path))?;
    sync_dir_with(faults, fs, dir)?;
    Ok(Written {
        deferred: defer.then_some((file, path)),
    })
}

/// Reads the snapshot the log refers to as `reference`, from its file in `dir`. `referrer`
/// says where the log refers to it, for errors.
pub(super) fn read(
    fs: &dyn Fs,
    dir: &Path,
    reference: SnapshotRef,
    referrer: &dyn Fn() -> String,
) -> Result<Snapshot, StorageError> {
    let path = dir.join(file_name(reference.index));
    let buf = match fs.read(&path, u64::MAX) {
        Ok(buf) => buf,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(StorageError::Corrupt {
                reason: format!(
                    "the snapshot file is missing, but the log refers to the snapshot at index \
                     {}, term {} ({})",
                    reference.index,
                    reference.term,
                    referrer()
                ),
                path,
                offset: 0,
            });
        }
        Err(e) => return Err(io_error("read", &path)(e)),
    };
    let corrupt = |offset: usize, reason: String| StorageError::Corrupt {
        path: path.clone(),
        offset: offset as u64,
        reason,
    };
    let Some(header) = buf.get(..HEADER_BYTES) else {
        return Err(corrupt(0, "the snapshot header is cut short".to_owned()));
    };
    if crc32c::crc32c(&header[..44]) != read_u32(header, 44) {
        return Err(corrupt(0, "the snapshot header is damaged".to_owned()));
    }
    if &header[..8] != MAGIC {
        return Err(corrupt(0, "not a snapshot file".to_owned()));
    }
    let version = read_u32(header, 8);
    if version != FORMAT_VERSION && version != FORMAT_VERSION_CONFIG {
        return Err(StorageError::Unreadable {
            path,
            reason: format!(
                "snapshot format version {version} (this version reads {FORMAT_VERSION} and \
                 {FORMAT_VERSION_CONFIG})"
            ),
        });
    }
    let config_len = read_u32(header, 12) as usize;
    if version == FORMAT_VERSION && config_len != 0 {
        return Err(StorageError::Unreadable {
            path,
            reason: "snapshot header with reserved bytes set".to_owned(),
        });
    }
    let (index, term) = (read_u64(header, 16), read_u64(header, 24));
    if (index, term) != (reference.index, reference.term) {
        return Err(corrupt(
            0,
            format!(
                "the file holds the snapshot at index {index}, term {term}, but the log refers \
                 to the one at index {}, term {} ({})",
                reference.index,
                reference.term,
                referrer()
            ),
        ));
    }
    let len = read_u64(header, 32);
    let found = (buf.len() - HEADER_BYTES) as u64;
    if len.checked_add(config_len as u64) != Some(found) {
        return Err(corrupt(
            HEADER_BYTES,
            format!(
                "the header gives {len} bytes of data after {config_len} of configuration, \
                 the file holds {found}"
            ),
        ));
    }
    let crc = read_u32(header, 40);
    let buf = Bytes::from(buf);
    let data_at = HEADER_BYTES + config_len;
    let data = buf.slice(data_at..);
    let config = (version == FORMAT_VERSION_CONFIG).then(|| buf.slice(HEADER_BYTES..data_at));
    let config_crc = crc32c::crc32c(config.as_deref().unwrap_or_default());
    if crc32c::crc32c_append(config_crc, &data) != crc {
        return Err(corrupt(
            HEADER_BYTES,
            "the snapshot data fails its checksum".to_owned(),
        ));
    }
    Ok(Snapshot {
        index,
        term,
        data,
        config,
    })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::fs::RealFs;
    use super::*;

    #[test]
    fn names() {
        assert_eq!(file_name(42), "snapshot-00000000000000000042.snap");
        let cases = [
            ("snapshot-00000000000000000042.snap", Name::Snapshot(42)),
            ("snapshot-00000000000000000042.snap.tmp", Name::Temporary),
            ("snapshot-0000000000000000042.snap", Name::Other),
            ("snapshot-0000000000000000004x.snap", Name::Other),
            ("snapshot-00000000000000000042.snapx", Name::Other),
            ("snapshot-99999999999999999999.snap", Name::Other),
            ("00000000000000000001.wal", Name::Other),
        ];
        for (case, (name, expected)) in cases.into_iter().enumerate() {
            assert_eq!(parse_name(name), expected, "case {case}: {name}");
        }
    }

    #[test]
    fn a_file_round_trips_and_every_damage_is_seen() {
        let without = Snapshot {
            index: 12,
            term: 3,
            data: Bytes::from_static(b"the state machine at 12"),
            config: None,
        };
        let with = Snapshot {
            config: Some(Bytes::from_static(b"a configuration")),
            ..without.clone()
        };
        for snapshot in [without, with] {
            round_trip_and_damage(&snapshot);
        }
    }

    /// Without a configuration the file is version 1, exactly as before snapshots carried one;
    /// with one, version 2, the configuration before the data.
    #[test]
    fn the_version_says_whether_a_configuration_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let fs = &RealFs;
        let data = Bytes::from_static(b"state");
        for (case, config) in [None, Some(Bytes::from_static(b"conf"))]
            .into_iter()
            .enumerate()
        {
            let snapshot = Snapshot {
                index: 7,
                term: 2,
                data: data.clone(),
                config: config.clone(),
            };
            write(fs, dir.path(), &snapshot, &mut Faults::default())
                .unwrap()
                .finish(&mut Faults::default())
                .unwrap();
            let bytes = fs::read(dir.path().join(file_name(7))).unwrap();
            let config_len = config.as_ref().map_or(0, Bytes::len);
            assert_eq!(
                read_u32(&bytes, 8),
                if config.is_some() { 2 } else { 1 },
                "case {case}"
            );
            assert_eq!(read_u32(&bytes, 12) as usize, config_len, "case {case}");
            assert_eq!(
                bytes.len(),
                HEADER_BYTES + config_len + data.len(),
                "case {case}"
            );
            assert_eq!(
                &bytes[HEADER_BYTES + config_len..],
                &data[..],
                "case {case}"
            );
            if config.is_none() {
                // The data's checksum is the data's alone, as version 1 always had it.
                assert_eq!(read_u32(&bytes, 40), crc32c::crc32c(&data), "case {case}");
            }
        }
    }

    fn round_trip_and_damage(snapshot: &Snapshot) {
        let dir = tempfile::tempdir().unwrap();
        let fs = &RealFs;
        let written = write(fs, dir.path(), snapshot, &mut Faults::default()).unwrap();
        written.finish(&mut Faults::default()).unwrap();
        let path = dir.path().join(file_name(12));
        let reference = SnapshotRef { index: 12, term: 3 };
        let referrer = || "test".to_owned();
        assert_eq!(
            &read(fs, dir.path(), reference, &referrer).unwrap(),
            snapshot
        );
        let good = fs::read(&path).unwrap();
        let config_len = snapshot.config.as_ref().map_or(0, Bytes::len);
        assert_eq!(good.len(), HEADER_BYTES + config_len + snapshot.data.len());
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            fs::write(&path, &bad).unwrap();
            match read(fs, dir.path(), reference, &referrer).unwrap_err() {
                StorageError::Corrupt { path: p, .. } => assert_eq!(p, path, "byte {at}"),
                other => panic!("byte {at}: {other}"),
            }
        }
        for cut in 0..good.len() {
            fs::write(&path, &good[..cut]).unwrap();
            assert!(
                matches!(
                    read(fs, dir.path(), reference, &referrer),
                    Err(StorageError::Corrupt { .. })
                ),
                "cut at {cut}"
            );
        }
        fs::write(&path, &good).unwrap();
        let other = SnapshotRef { index: 12, term: 4 };
        let err = read(fs, dir.path(), other, &referrer).unwrap_err();
        assert!(err.to_string().contains("term 3"), "{err}");
    }
}
