//! The `IDENTITY` file: which cluster and node a data directory belongs to, and the members the
//! cluster was bootstrapped with.
//!
//! Text, so that an operator can read it:
//!
//! ```text
//! zeroraft data directory
//! format 2
//! cluster 7
//! node 2
//! members 3
//! member 10.0.0.1:7000
//! member 10.0.0.2:7000
//! member 10.0.0.3:7000
//! crc32c 1a2b3c4d
//! ```
//!
//! The last line is the CRC32C (8 hex digits) of the lines before it, newlines included. It is
//! written once, when the directory is initialized, atomically: to `IDENTITY.tmp`, synced,
//! renamed over `IDENTITY`, and the directory synced. A directory without it was never
//! initialized, or lost what it held: it is refused unless it is being initialized on purpose
//! ([`WalOptions::create`](super::WalOptions::create)).
//!
//! Format 1, written before members were recorded, has no `members` lines and is still read.

use std::io;
use std::path::Path;

#[cfg(doc)]
use super::WalOptions;
use super::fs::{Fs, Open};
use super::{Identity, io_error, op, sync_dir};
use crate::StorageError;

/// The identity file's name.
pub(super) const IDENTITY: &str = "IDENTITY";
/// Where the identity file is written before it is renamed into place.
const IDENTITY_TMP: &str = "IDENTITY.tmp";
/// The first line.
const TITLE: &str = "zeroraft data directory";
/// The identity format this version writes.
const FORMAT: u32 = 2;
/// The most members an identity file lists.
pub(super) const MAX_MEMBERS: usize = 64;
/// The longest member address, in bytes.
pub(super) const MAX_MEMBER_BYTES: usize = 255;
/// An identity file is a few lines; anything much larger is not one.
const MAX_BYTES: u64 = 32 << 10;

/// What a data directory's identity file records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Recorded {
    pub identity: Identity,
    /// The cluster's members when it was bootstrapped (their addresses), if recorded (format 2).
    pub members: Option<Vec<String>>,
    /// Whether the file was written just now, the directory being initialized.
    pub created: bool,
}

/// Reads `dir`'s identity file; `Ok(None)` if there is none.
pub(super) fn read(fs: &dyn Fs, dir: &Path) -> Result<Option<Recorded>, StorageError> {
    let path = dir.join(IDENTITY);
    let text = match fs.read(&path, MAX_BYTES + 1) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("read", &path)(e)),
    };
    parse(&text)
        .map(Some)
        .map_err(|reason| StorageError::Unreadable { path, reason })
}

/// Checks that `dir` belongs to `identity` and returns what its identity file records. A
/// directory with no identity file is initialized with `identity` and `members` if `create`
/// and it holds no segments yet, and refused otherwise.
pub(super) fn check_or_create(
    fs: &dyn Fs,
    dir: &Path,
    identity: Identity,
    has_segments: bool,
    create: bool,
    members: Option<&[String]>,
) -> Result<Recorded, StorageError> {
    let Some(found) = read(fs, dir)? else {
        if has_segments {
            return Err(StorageError::Unreadable {
                path: dir.join(IDENTITY),
                reason: "the directory holds segments but no identity file".to_owned(),
            });
        }
        if !create {
            return Err(StorageError::Uninitialized {
                path: dir.to_path_buf(),
            });
        }
        let recorded = Recorded {
            identity,
            members: members.map(<[String]>::to_vec),
            created: true,
        };
        write(fs, dir, &recorded)?;
        return Ok(recorded);
    };
    if found.identity != identity {
        return Err(StorageError::WrongIdentity {
            path: dir.to_path_buf(),
            expected: identity,
            found: found.identity,
        });
    }
    Ok(found)
}

/// The contents of the identity file for `recorded`.
fn render(recorded: &Recorded) -> String {
    let Identity { cluster, node } = recorded.identity;
    let mut body = format!("{TITLE}\nformat {FORMAT}\ncluster {cluster}\nnode {node}\n");
    let members = recorded.members.as_deref().unwrap_or_default();
    body.push_str(&format!("members {}\n", members.len()));
    for member in members {
        body.push_str(&format!("member {member}\n"));
    }
    let crc = crc32c::crc32c(body.as_bytes());
    format!("{body}crc32c {crc:08x}\n")
}

fn write(fs: &dyn Fs, dir: &Path, recorded: &Recorded) -> Result<(), StorageError> {
    let tmp = dir.join(IDENTITY_TMP);
    let file = fs
        .open(&tmp, Open::Truncate)
        .map_err(io_error("create", &tmp))?;
    file.write_all_at(render(recorded).as_bytes(), 0)
        .map_err(io_error("write to", &tmp))?;
    file.sync_all().map_err(io_error(op::SYNC, &tmp))?;
    drop(file);
    let path = dir.join(IDENTITY);
    fs.rename(&tmp, &path)
        .map_err(io_error("rename into place", &path))?;
    sync_dir(fs, dir)
}

/// Parses an identity file; `Err` says what is wrong with it.
fn parse(text: &[u8]) -> Result<Recorded, String> {
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
    if format != 1 && format != u64::from(FORMAT) {
        return Err(format!(
            "unknown identity format {format} (this version reads 1 and {FORMAT})"
        ));
    }
    let cluster = field(line(), "cluster")?;
    let node = field(line(), "node")?;
    let members = if format == 1 {
        None
    } else {
        let count = field(line(), "members")?;
        if count > MAX_MEMBERS as u64 {
            return Err(format!("{count} members, more than {MAX_MEMBERS}"));
        }
        let members = (0..count)
            .map(|_| {
                line()
                    .and_then(|l| l.strip_prefix("member "))
                    .filter(|m| valid_member(m))
                    .map(str::to_owned)
                    .ok_or_else(|| "malformed or missing member line".to_owned())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Some(members)
    };
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
    Ok(Recorded {
        identity: Identity { cluster, node },
        members,
        created: false,
    })
}

/// Whether `member` can be recorded as a member's address: printable, without spaces, short.
pub(super) fn valid_member(member: &str) -> bool {
    !member.is_empty()
        && member.len() <= MAX_MEMBER_BYTES
        && member.bytes().all(|b| b.is_ascii_graphic())
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

    fn recorded(members: Option<&[&str]>) -> Recorded {
        Recorded {
            identity: Identity {
                cluster: 7,
                node: 2,
            },
            members: members.map(|m| m.iter().map(|s| (*s).to_owned()).collect()),
            created: false,
        }
    }

    #[test]
    fn renders_and_parses() {
        let with = recorded(Some(&[
            "10.0.0.1:7000",
            "[::1]:7001",
            "node-c.example:7002",
        ]));
        let text = render(&with);
        assert!(
            text.starts_with(
                "zeroraft data directory\nformat 2\ncluster 7\nnode 2\nmembers 3\n\
                 member 10.0.0.1:7000\nmember [::1]:7001\nmember node-c.example:7002\ncrc32c "
            ),
            "{text}"
        );
        assert_eq!(parse(text.as_bytes()), Ok(with));
        // Without members, format 2 records none.
        let empty = recorded(Some(&[]));
        assert_eq!(parse(render(&recorded(None)).as_bytes()), Ok(empty));
    }

    #[test]
    fn reads_format_1_without_members() {
        let body = "zeroraft data directory\nformat 1\ncluster 7\nnode 2\n";
        let text = format!("{body}crc32c {:08x}\n", crc32c::crc32c(body.as_bytes()));
        assert_eq!(parse(text.as_bytes()), Ok(recorded(None)));
    }

    #[test]
    fn rejects_malformed_files() {
        let good = render(&Recorded {
            identity: Identity {
                cluster: 1,
                node: 0,
            },
            members: Some(vec!["a:1".to_owned(), "b:2".to_owned()]),
            created: false,
        });
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "first line"),
            (good.replace("zeroraft", "zeroraff"), "first line"),
            (
                good.replace("format 2", "format 3"),
                "unknown identity format 3",
            ),
            (good.replace("cluster 1", "cluster x"), "cluster line"),
            (good.replace("node 0", "node -1"), "node line"),
            (good.replace("node 0", "node 9"), "checksum"),
            (good.replace("node 0\n", ""), "node line"),
            (good.replace("members 2", "members 3"), "member line"),
            (good.replace("members 2", "members 65"), "more than 64"),
            (good.replace("member a:1", "member a 1"), "member line"),
            (good.replace("member a:1\n", ""), "member line"),
            (good[..good.len() - 1].to_owned(), "crc32c line"),
            (format!("{good}more\n"), "after the crc32c"),
            (good.replace("crc32c ", "crc "), "crc32c line"),
            (
                String::from_utf8_lossy(&[0xff; 12 << 10]).into_owned(),
                "too large",
            ),
        ];
        for (case, (text, expected)) in cases.iter().enumerate() {
            let err = parse(text.as_bytes()).unwrap_err();
            assert!(err.contains(expected), "case {case}: {err}");
        }
    }
}
