//! The `IDENTITY` file: which cluster and node a data directory belongs to.
//!
//! Text, so that an operator can read it:
//!
//! ```text
//! zeroraft data directory
//! format 1
//! cluster 7
//! node 2
//! crc32c 1a2b3c4d
//! ```
//!
//! The last line is the CRC32C (8 hex digits) of the lines before it, newlines included. It is
//! written once, atomically: to `IDENTITY.tmp`, synced, renamed over `IDENTITY`, and the
//! directory synced.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use super::{Identity, io_error, sync_dir};
use crate::StorageError;

/// The identity file's name.
pub(super) const IDENTITY: &str = "IDENTITY";
/// Where the identity file is written before it is renamed into place.
const IDENTITY_TMP: &str = "IDENTITY.tmp";
/// The first line.
const TITLE: &str = "zeroraft data directory";
/// The identity format this version writes.
const FORMAT: u32 = 1;
/// An identity file is a few dozen bytes; anything much larger is not one.
const MAX_BYTES: u64 = 1024;

/// Checks that `dir` belongs to `identity`, or writes `identity` there if the directory holds
/// no identity and no segments yet.
pub(super) fn check_or_create(
    dir: &Path,
    identity: Identity,
    has_segments: bool,
) -> Result<(), StorageError> {
    let path = dir.join(IDENTITY);
    let mut text = Vec::new();
    match File::open(&path) {
        Ok(file) => {
            file.take(MAX_BYTES + 1)
                .read_to_end(&mut text)
                .map_err(io_error("read", &path))?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if has_segments {
                return Err(StorageError::Unreadable {
                    path,
                    reason: "the directory holds segments but no identity file".to_owned(),
                });
            }
            return create(dir, identity);
        }
        Err(e) => return Err(io_error("open", &path)(e)),
    }
    let found = parse(&text).map_err(|reason| StorageError::Unreadable {
        path: path.clone(),
        reason,
    })?;
    if found != identity {
        return Err(StorageError::WrongIdentity {
            path: dir.to_path_buf(),
            expected: identity,
            found,
        });
    }
    Ok(())
}

/// The contents of the identity file for `identity`.
fn render(identity: Identity) -> String {
    let body = format!(
        "{TITLE}\nformat {FORMAT}\ncluster {}\nnode {}\n",
        identity.cluster, identity.node
    );
    let crc = crc32c::crc32c(body.as_bytes());
    format!("{body}crc32c {crc:08x}\n")
}

fn create(dir: &Path, identity: Identity) -> Result<(), StorageError> {
    let tmp = dir.join(IDENTITY_TMP);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io_error("create", &tmp))?;
    file.write_all(render(identity).as_bytes())
        .map_err(io_error("write to", &tmp))?;
    file.sync_all().map_err(io_error("sync", &tmp))?;
    drop(file);
    let path = dir.join(IDENTITY);
    fs::rename(&tmp, &path).map_err(io_error("rename into place", &path))?;
    sync_dir(dir)
}

/// Parses an identity file; `Err` says what is wrong with it.
fn parse(text: &[u8]) -> Result<Identity, String> {
    if text.len() as u64 > MAX_BYTES {
        return Err("not an identity file: too large".to_owned());
    }
    let text = std::str::from_utf8(text).map_err(|_| "not an identity file: not text")?;
    let mut lines = text.split_inclusive('\n');
    let mut line = || lines.next().and_then(|l| l.strip_suffix('\n'));
    if line() != Some(TITLE) {
        return Err(format!(
            "not an identity file: the first line is not {TITLE:?}"
        ));
    }
    let format = field(line(), "format")?;
    if format != u64::from(FORMAT) {
        return Err(format!(
            "unknown identity format {format} (this version reads {FORMAT})"
        ));
    }
    let cluster = field(line(), "cluster")?;
    let node = field(line(), "node")?;
    let crc = line()
        .and_then(|l| l.strip_prefix("crc32c "))
        .filter(|hex| hex.len() == 8)
        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
        .ok_or("malformed or missing crc32c line")?;
    let body_len = text.rfind("crc32c ").unwrap_or(0);
    if crc32c::crc32c(&text.as_bytes()[..body_len]) != crc {
        return Err("the identity file fails its checksum".to_owned());
    }
    if line().is_some() || !text.ends_with('\n') {
        return Err("unexpected text after the crc32c line".to_owned());
    }
    Ok(Identity { cluster, node })
}

/// The decimal value of a `name value` line.
fn field(line: Option<&str>, name: &str) -> Result<u64, String> {
    line.and_then(|l| l.strip_prefix(name))
        .and_then(|l| l.strip_prefix(' '))
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("malformed or missing {name} line"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_parses() {
        let identity = Identity {
            cluster: 7,
            node: 2,
        };
        let text = render(identity);
        assert!(text.starts_with("zeroraft data directory\nformat 1\ncluster 7\nnode 2\ncrc32c "));
        assert_eq!(parse(text.as_bytes()), Ok(identity));
    }

    #[test]
    fn rejects_malformed_files() {
        let good = render(Identity {
            cluster: 1,
            node: 0,
        });
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "first line"),
            (good.replace("zeroraft", "zeroraff"), "first line"),
            (
                good.replace("format 1", "format 2"),
                "unknown identity format 2",
            ),
            (good.replace("cluster 1", "cluster x"), "cluster line"),
            (good.replace("node 0", "node -1"), "node line"),
            (good.replace("node 0", "node 9"), "checksum"),
            (good.replace("node 0\n", ""), "node line"),
            (good[..good.len() - 1].to_owned(), "crc32c line"),
            (format!("{good}more\n"), "after the crc32c"),
            (good.replace("crc32c ", "crc "), "crc32c line"),
            (
                String::from_utf8_lossy(&[0xff; 2000]).into_owned(),
                "too large",
            ),
        ];
        for (case, (text, expected)) in cases.iter().enumerate() {
            let err = parse(text.as_bytes()).unwrap_err();
            assert!(err.contains(expected), "case {case}: {err}");
        }
    }
}
