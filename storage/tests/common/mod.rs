//! Helpers shared by the write-ahead log's integration tests: owned updates, a model to compare
//! with ([`MemStorage`]), and a `tracing` subscriber that keeps the warnings.

#![allow(dead_code)] // Each test binary uses its own part of this.

use std::fmt::{self, Write as _};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tracing::field::{Field, Visit};
use tracing::span;
use tracing::subscriber::{Interest, Subscriber};
use tracing::{Event, Level, Metadata};
use zeroraft_storage::{
    Entry, FileStorage, HardState, Identity, MemStorage, Recovered, Snapshot, Storage,
    StorageError, WalOptions,
};

/// The identity every test directory is opened with.
pub const ID: Identity = Identity {
    cluster: 7,
    node: 2,
};

/// An entry with a copy of `command`.
pub fn entry(term: u64, command: &[u8]) -> Entry {
    Entry::new(term, Bytes::copy_from_slice(command))
}

/// `n` entries of `term` whose commands say which they are, `size` bytes each (at least 8).
pub fn entries(term: u64, first: u64, n: usize, size: usize) -> Vec<Entry> {
    (0..n as u64)
        .map(|i| {
            let mut command = vec![b'.'; size.max(8)];
            command[..8].copy_from_slice(&(first + i).to_le_bytes());
            entry(term, &command)
        })
        .collect()
}

/// An update that owns its entries and its snapshot.
pub use zeroraft_storage::OwnedUpdate as Op;

/// The updates the tests write, each in a line.
pub trait Ops {
    /// Appends `entries` after `last_index`.
    fn append(last_index: u64, entries: Vec<Entry>) -> Self;
    /// A new hard state alone.
    fn vote(term: u64, voted_for: Option<usize>) -> Self;
    /// A snapshot alone, at `index`, of `size` bytes of data.
    fn snapshot(index: u64, term: u64, size: usize) -> Self;
}

impl Ops for Op {
    fn append(last_index: u64, entries: Vec<Entry>) -> Self {
        Self {
            first_index: last_index + 1,
            entries,
            ..Self::default()
        }
    }

    fn vote(term: u64, voted_for: Option<usize>) -> Self {
        Self {
            hard_state: Some(HardState { term, voted_for }),
            ..Self::default()
        }
    }

    fn snapshot(index: u64, term: u64, size: usize) -> Self {
        Self {
            snapshot: Some(snapshot(index, term, size)),
            ..Self::default()
        }
    }
}

/// A snapshot at `index` whose `size` bytes of data say which it is.
pub fn snapshot(index: u64, term: u64, size: usize) -> Snapshot {
    let data: Vec<u8> = (0..size as u64).map(|i| (index * 7 + i) as u8).collect();
    Snapshot {
        index,
        term,
        data: Bytes::from(data),
        // Every other snapshot carries a configuration: both file versions go through every
        // test that stores snapshots.
        config: index
            .is_multiple_of(2)
            .then(|| Bytes::from(format!("configuration at {index}"))),
    }
}

/// Options with a segment size of `segment_size` bytes, and no ballast file (its tests set
/// one).
pub fn options(segment_size: u64) -> WalOptions {
    WalOptions {
        segment_size,
        create: true,
        members: None,
        ballast_bytes: 0,
    }
}

/// Opens `dir` as [`ID`] with segments of `segment_size` bytes.
pub fn open(dir: &Path, segment_size: u64) -> Result<FileStorage, StorageError> {
    FileStorage::open(dir, ID, options(segment_size))
}

/// A file storage and the model it must agree with.
pub struct Pair {
    dir: PathBuf,
    file: Option<FileStorage>,
    pub model: MemStorage,
}

impl Pair {
    pub fn new(dir: &Path, segment_size: u64) -> Self {
        let mut file = open(dir, segment_size).unwrap();
        assert_eq!(file.recover().unwrap(), Recovered::default());
        Self {
            dir: dir.to_path_buf(),
            file: Some(file),
            model: MemStorage::new(),
        }
    }

    pub fn file(&mut self) -> &mut FileStorage {
        self.file.as_mut().expect("open")
    }

    pub fn persist(&mut self, op: &Op) {
        self.model.persist(&op.update()).unwrap();
        self.file().persist(&op.update()).unwrap();
    }

    /// Closes the file storage, opens the directory again and checks that it holds what the
    /// model holds.
    pub fn reopen(&mut self, segment_size: u64, case: &str) {
        self.file = None;
        self.file = Some(open(&self.dir, segment_size).unwrap());
        let expected = self.model.recover().unwrap();
        assert_recovers(self.file(), &expected, case);
        assert_eq!(self.file().hard_state(), expected.hard_state, "{case}");
        assert_eq!(self.file().last_index(), self.model.last_index(), "{case}");
        let snapshot_index = expected.first_index() - 1;
        assert_eq!(self.file().snapshot_index(), snapshot_index, "{case}");
        // Opening removed every other snapshot file.
        let expected_files: Vec<PathBuf> = expected
            .snapshot
            .iter()
            .map(|s| snapshot_path(&self.dir, s.index))
            .collect();
        assert_eq!(snapshot_files(&self.dir), expected_files, "{case}");
    }
}

/// The path of the file of the snapshot at `index` in `dir`.
pub fn snapshot_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("snapshot-{index:020}.snap"))
}

/// The snapshot files of `dir`, temporary ones included, in order.
pub fn snapshot_files(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("snapshot-"))
        })
        .collect();
    paths.sort();
    paths
}

/// The segment files of `dir`, in order.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    paths.sort();
    paths
}

/// Whether `path` is a segment prepared ahead (`<seq>.wal.tmp`), not part of the log, which a
/// thread of an open log may be writing or removing.
pub fn is_prepared(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".wal.tmp"))
}

/// A new temporary directory holding a copy of the files of `dir` (but its lock, and a
/// prepared segment).
pub fn copy_dir(dir: &Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n != "LOCK") && !is_prepared(&path) {
            fs::copy(&path, copy.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    copy
}

/// The last segment file of `dir`.
pub fn last_segment(dir: &Path) -> PathBuf {
    segments(dir).pop().expect("a segment")
}

/// The length of the file at `path`.
pub fn len(path: &Path) -> u64 {
    fs::metadata(path).unwrap().len()
}

/// What `storage` recovered, checked against `expected`.
pub fn assert_recovers(storage: &mut FileStorage, expected: &Recovered, case: &str) {
    let recovered = storage.recover().unwrap();
    assert_eq!(recovered.hard_state, expected.hard_state, "{case}");
    assert_eq!(
        recovered.entries.len(),
        expected.entries.len(),
        "{case}: entry count"
    );
    assert_eq!(recovered, *expected, "{case}");
}

/// Runs `f` with a subscriber that keeps every event at `WARN` or above, and returns them,
/// each as `LEVEL field=value ...`.
pub fn capture_warnings<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let subscriber = Capture {
        events: Arc::clone(&events),
    };
    let result = tracing::subscriber::with_default(subscriber, f);
    let events = events.lock().unwrap().clone();
    (result, events)
}

struct Capture {
    events: Arc<Mutex<Vec<String>>>,
}

impl Subscriber for Capture {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= Level::WARN
    }

    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut line = event.metadata().level().to_string();
        event.record(&mut Fields(&mut line));
        self.events.lock().unwrap().push(line);
    }

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}
