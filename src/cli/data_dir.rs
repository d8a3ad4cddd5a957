//! [`DataDir`]: where the nodes of an in-process cluster keep their write-ahead logs.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The directory nodes keep their write-ahead logs in (node `i` in `node-<i>`): the one given
/// with `--data`, kept, or a fresh one under the system's temporary directory, removed when
/// this is dropped.
pub struct DataDir {
    pub path: PathBuf,
    temporary: bool,
}

impl DataDir {
    /// Makes `given` (or a fresh temporary directory) ready for the logs of `nodes` nodes.
    ///
    /// # Errors
    ///
    /// Why the directory cannot be used: it cannot be created or written in, or a node's
    /// subdirectory already holds a log (of an earlier run: each run is a new cluster, and a
    /// node refuses another cluster's log).
    pub fn prepare(given: Option<&Path>, nodes: usize) -> Result<Self, String> {
        let Some(path) = given else {
            return Self::temporary();
        };
        let unusable =
            |e: io::Error| format!("cannot use {} as the data directory: {e}", path.display());
        std::fs::create_dir_all(path).map_err(unusable)?;
        for i in 0..nodes {
            let node = path.join(format!("node-{i}"));
            let holds_something = std::fs::read_dir(&node)
                .map(|mut entries| entries.next().is_some())
                .unwrap_or(false);
            if holds_something {
                return Err(format!(
                    "{} holds a node's log from an earlier run, which a new cluster cannot use; \
                     give an empty or new directory with --data",
                    node.display()
                ));
            }
        }
        let probe = path.join(format!(".zeroraft-probe-{}", std::process::id()));
        std::fs::write(&probe, b"")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(unusable)?;
        Ok(Self {
            path: path.to_owned(),
            temporary: false,
        })
    }

    /// A new directory under the system's temporary directory.
    fn temporary() -> Result<Self, String> {
        let base = std::env::temp_dir();
        for attempt in 0u32.. {
            let path = base.join(format!("zeroraft-{}-{attempt}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    return Ok(Self {
                        path,
                        temporary: true,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 1000 => {}
                Err(e) => {
                    return Err(format!(
                        "cannot create a data directory in {}: {e}",
                        base.display()
                    ));
                }
            }
        }
        unreachable!("the loop returns")
    }

    /// Tells the person (on stderr) where the logs are and whether they stay.
    ///
    /// # Errors
    ///
    /// The error writing to stderr.
    pub fn announce(&self) -> io::Result<()> {
        let fate = if self.temporary {
            "removed at exit"
        } else {
            "kept"
        };
        writeln!(
            io::stderr().lock(),
            "zeroraft: nodes keep write-ahead logs in {} ({fate})",
            self.path.display()
        )
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
