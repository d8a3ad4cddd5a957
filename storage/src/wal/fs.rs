//! The file-system operations the write-ahead log makes, behind a small interface: [`Fs`] for
//! the directory, [`FsFile`] for an open file. [`RealFs`] makes the system calls; in this
//! crate's tests, and in the simulator's through the `sim-fs` feature, `sim::SimFs` keeps
//! everything in memory and models what a power cut does to what was not synced.
//!
//! Each call is one system call (a few for [`Fs::read`] and [`Fs::boot_id`]) through a virtual
//! table, which is noise beside the call itself. Nothing here retries, buffers or syncs on its
//! own: the order of writes, syncs and renames is the caller's, and it is what the log's
//! durability rests on.

#[cfg(any(test, feature = "sim-fs"))]
pub(super) mod sim;

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// How [`Fs::open`] opens a file, always for reading and writing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Open {
    /// An existing file, as it is.
    Existing,
    /// A new file; an existing one is an error ([`io::ErrorKind::AlreadyExists`]).
    CreateNew,
    /// A new file, or an existing one as it is.
    Create,
    /// A new file, or an existing one cut to nothing.
    Truncate,
}

/// What [`Fs::metadata`] says of a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Metadata {
    /// Whether it is a directory.
    pub(crate) is_dir: bool,
    /// Its length in bytes (a file's).
    pub(crate) len: u64,
}

/// A file system, as the log uses it.
pub(crate) trait Fs: fmt::Debug + Send + Sync {
    /// What is at `path`, following symbolic links.
    fn metadata(&self, path: &Path) -> io::Result<Metadata>;

    /// Creates the directory `path` (not its parents).
    fn create_dir(&self, path: &Path) -> io::Result<()>;

    /// The names in the directory `dir`.
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<OsString>>;

    /// Opens the file at `path` for reading and writing.
    fn open(&self, path: &Path, how: Open) -> io::Result<Box<dyn FsFile>>;

    /// The first `limit` bytes of the file at `path` (all of them if it is shorter), in a buffer
    /// of exactly that size.
    fn read(&self, path: &Path, limit: u64) -> io::Result<Vec<u8>>;

    /// Renames `from` to `to`, replacing any file at `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes the file at `path`.
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Syncs the directory `dir`: the files created, renamed and removed in it stay so.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// An identifier of this boot of the machine, which changes whenever it restarts (and its
    /// page cache is lost).
    fn boot_id(&self) -> io::Result<String>;

    /// Whether the log may work on this file system from a thread of its own (preparing its
    /// next segment). False by default: the simulated file system is driven from one thread,
    /// in an order its seed decides, so the log does that work inline there.
    fn threads(&self) -> bool {
        false
    }

    /// On a file system that allows no threads: whether work the log would hand to a thread of
    /// its own (removing the segments a snapshot covers) is done now, or put off to the log's
    /// next write, as a thread might get to it late. The simulated file system lets its seed
    /// choose; never asked where [`Fs::threads`] is true.
    fn run_now(&self) -> bool {
        true
    }
}

/// An open file, as the log uses it.
pub(crate) trait FsFile: fmt::Debug + Send {
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;

    /// `fdatasync`: the file's data, and its length, are on the disk.
    fn sync_data(&self) -> io::Result<()>;

    /// `fsync`: as [`FsFile::sync_data`], and the rest of its metadata.
    fn sync_all(&self) -> io::Result<()>;

    /// Cuts or extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// Takes an exclusive lock on the file, held until it is closed.
    fn try_lock(&self) -> Result<(), TryLockError>;
}

/// The machine's file system: every call is the system call its name says.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RealFs;

/// Where Linux publishes the boot id.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

impl Fs for RealFs {
    fn metadata(&self, path: &Path) -> io::Result<Metadata> {
        let meta = fs::metadata(path)?;
        Ok(Metadata {
            is_dir: meta.is_dir(),
            len: meta.len(),
        })
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        fs::create_dir(path)
    }

    fn read_dir(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        fs::read_dir(dir)?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect()
    }

    fn open(&self, path: &Path, how: Open) -> io::Result<Box<dyn FsFile>> {
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        match how {
            Open::Existing => {}
            Open::CreateNew => {
                options.create_new(true);
            }
            Open::Create => {
                options.create(true).truncate(false);
            }
            Open::Truncate => {
                options.create(true).truncate(true);
            }
        }
        Ok(Box::new(RealFile(options.open(path)?)))
    }

    fn read(&self, path: &Path, limit: u64) -> io::Result<Vec<u8>> {
        let file = File::open(path)?;
        let len = file.metadata()?.len().min(limit);
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::FileTooLarge, "file larger than memory"))?;
        let mut buf = Vec::new();
        buf.try_reserve_exact(len)
            .map_err(|e| io::Error::new(io::ErrorKind::OutOfMemory, e))?;
        file.take(limit).read_to_end(&mut buf)?;
        Ok(buf)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn boot_id(&self) -> io::Result<String> {
        let id = fs::read_to_string(BOOT_ID)?;
        let id = id.trim();
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{BOOT_ID} holds no boot id"),
            ));
        }
        Ok(id.to_owned())
    }

    fn threads(&self) -> bool {
        true
    }
}

/// A file of the machine's file system.
#[derive(Debug)]
struct RealFile(File);

impl FsFile for RealFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.0.sync_all()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn try_lock(&self) -> Result<(), TryLockError> {
        self.0.try_lock()
    }
}
