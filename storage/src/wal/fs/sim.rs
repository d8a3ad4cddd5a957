//! [`SimFs`]: a file system in memory that knows, for every file and directory, what was synced
//! and what was not, and at a power cut keeps what was synced and drops, tears or reorders what
//! was not, in the ways POSIX allows.
//!
//! # The model
//!
//! Every file has the bytes the disk holds (`durable`), the bytes its readers see (`current`,
//! the page cache), and the operations since its last sync (`pending`: writes and length
//! changes, in order). Every directory has its entries as the disk holds them, as readers see
//! them, and the operations since its last sync (a creation, a removal, a rename: each a change
//! of one or two names). A sync of a file applies its pending operations to its durable bytes;
//! a sync of a directory, its pending operations to its durable entries. Syncing a file says
//! nothing of its directory entry, nor the other way round.
//!
//! At a power cut ([`SimFs::power_cut`]), for each file, the disk ends with:
//!
//! - a length the file had at some point since its last sync (before or after any pending
//!   operation), and
//! - for each 512-byte sector, its content at some point since the last sync, chosen sector by
//!   sector: a write can reach the disk in part (a prefix, a suffix, any of its sectors), not at
//!   all, or after a later one; a sector never written reads as zeros. Sectors themselves are
//!   written whole (the assumption the log's tail rule makes: see `tail_damage`).
//!
//! For each directory, each pending operation persists or not, independently of the others (a
//! rename as a whole): an unsynced creation, rename or removal may be lost while a later one
//! persists, and a file whose name persisted may have lost its unsynced data. Files no durable
//! entry names are gone. A quarter of the files (and directories) keep all their pending
//! operations, a quarter none, the rest a random mix, so that both the common and the odd
//! outcomes come up.
//!
//! A failed sync ([`SimFs::fail_sync`]) behaves as Linux does: part of what was pending may
//! have reached the disk, the rest never will (the pages are marked clean), but the page cache
//! goes on showing all of it until the next power cut, and a later sync succeeds without
//! writing it.
//!
//! A crash of the process alone ([`SimFs::crash_at`], [`SimFs::restart`]) stops its operations
//! from some point on and keeps the page cache: what a SIGKILL does.
//!
//! This crate's power-loss tests run the log on it; with the `sim-fs` feature it is public (as
//! `zeroraft_storage::wal::sim`), and the deterministic simulator opens a node's log on one
//! ([`FileStorage::open_on`](crate::FileStorage::open_on)) to power-cut it when the node
//! crashes. A log opened on one runs with the bugs switched on in it ([`SimFs::switch_on`]),
//! none by default.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::TryLockError;
use std::io;
use std::path::{Component, Path};
use std::sync::{Arc, Mutex, MutexGuard};

#[cfg(feature = "sim-fs")]
use super::super::fault::Bugs;
use super::{Fs, FsFile, Metadata, Open};

/// Bytes of a sector: written whole or not at all.
pub const SECTOR: usize = 512;

/// A small deterministic random generator (SplitMix64).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator that `seed` decides.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `per_mille` / 1000.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

type Ino = u64;

/// A change of names in a directory: each name now names this file, or nothing.
type DirOp = Vec<(OsString, Option<Ino>)>;

#[derive(Debug)]
enum FileOp {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

impl FileOp {
    fn apply(&self, bytes: &mut Vec<u8>) {
        match self {
            Self::Write { offset, data } => {
                let offset = *offset as usize;
                let end = offset + data.len();
                if bytes.len() < end {
                    bytes.resize(end, 0);
                }
                bytes[offset..end].copy_from_slice(data);
            }
            Self::SetLen(len) => bytes.resize(*len as usize, 0),
        }
    }
}

#[derive(Debug, Default)]
struct FileNode {
    durable: Vec<u8>,
    current: Vec<u8>,
    pending: Vec<FileOp>,
}

#[derive(Debug, Default)]
struct DirNode {
    durable: BTreeMap<OsString, Ino>,
    current: BTreeMap<OsString, Ino>,
    pending: Vec<DirOp>,
}

#[derive(Debug)]
enum Node {
    File(FileNode),
    Dir(DirNode),
}

/// What power cuts did, for the tests to report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cuts {
    /// Power cuts.
    pub cuts: u64,
    /// Files with unsynced operations at a cut.
    pub files_unsynced: u64,
    /// Of those, files that kept none of them.
    pub files_dropped: u64,
    /// Files that kept some of them only (a write cut short, a sector of zeros, a later write
    /// without an earlier one).
    pub files_torn: u64,
    /// Unsynced directory operations at a cut.
    pub dir_ops_unsynced: u64,
    /// Of those, the ones lost.
    pub dir_ops_lost: u64,
    /// Cuts where a directory kept a later operation and lost an earlier one.
    pub dir_reordered: u64,
}

#[derive(Debug)]
struct State {
    nodes: HashMap<Ino, Node>,
    next_ino: Ino,
    /// Counts power cuts: handles of an earlier boot fail.
    boot: u64,
    /// The handle holding each lock.
    locks: HashMap<Ino, u64>,
    next_handle: u64,
    /// Operations done (or refused) since the process started.
    ops: u64,
    /// The process dies at this operation: it and every later one fail, doing nothing.
    crash_at: Option<u64>,
    /// Syncs done since the process started.
    syncs: u64,
    /// This sync fails, as Linux fails one.
    fail_sync_at: Option<u64>,
    /// Most bytes the files may hold, if limited.
    capacity: Option<u64>,
    rng: Rng,
    cuts: Cuts,
    /// Every operation, if traced.
    trace: Option<Vec<String>>,
    /// The bugs a log opened on this file system runs with.
    #[cfg(feature = "sim-fs")]
    bugs: Bugs,
}

/// The file system. Clones share it.
#[derive(Clone)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for SimFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFs").finish_non_exhaustive()
    }
}

const ROOT: Ino = 0;

fn crashed() -> io::Error {
    io::Error::other("simulated crash: the process is dead")
}

fn sync_failure() -> io::Error {
    io::Error::other("simulated sync failure (EIO)")
}

fn not_found() -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, "no such file or directory")
}

impl SimFs {
    /// An empty file system (its root directory only); `seed` decides how failed syncs tear.
    pub fn new(seed: u64) -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, Node::Dir(DirNode::default()));
        Self {
            state: Arc::new(Mutex::new(State {
                nodes,
                next_ino: 1,
                boot: 0,
                locks: HashMap::new(),
                next_handle: 0,
                ops: 0,
                crash_at: None,
                syncs: 0,
                fail_sync_at: None,
                capacity: None,
                rng: Rng::new(seed),
                cuts: Cuts::default(),
                trace: None,
                #[cfg(feature = "sim-fs")]
                bugs: Bugs::default(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("the simulated file system")
    }

    /// Makes the process die at its `nth` operation from now (1 = the next): that one and every
    /// later one fail, doing nothing.
    pub fn crash_at(&self, nth: u64) {
        let mut state = self.lock();
        state.crash_at = Some(state.ops + nth);
    }

    /// Makes the `nth` sync from now (1 = the next) fail, as Linux fails one.
    pub fn fail_sync(&self, nth: u64) {
        let mut state = self.lock();
        state.fail_sync_at = Some(state.syncs + nth);
    }

    /// Limits the bytes the files hold (`None`: no limit).
    pub fn set_capacity(&self, capacity: Option<u64>) {
        self.lock().capacity = capacity;
    }

    /// The bytes the files hold, as readers see them.
    pub fn used(&self) -> u64 {
        self.lock().used()
    }

    /// Switches `bugs` on in every log opened on this file system from now on (and off, for
    /// those `bugs` leaves off): for a test that shows a checker catches them.
    #[cfg(feature = "sim-fs")]
    pub fn switch_on(&self, bugs: Bugs) {
        self.lock().bugs = bugs;
    }

    /// The bugs a log opened on this file system runs with ([`SimFs::switch_on`]).
    #[cfg(feature = "sim-fs")]
    pub fn bugs(&self) -> Bugs {
        self.lock().bugs
    }

    /// A new process: the planned crash and sync failure are forgotten (the page cache stays).
    pub fn restart(&self) {
        let mut state = self.lock();
        state.crash_at = None;
        state.fail_sync_at = None;
    }

    /// What power cuts did so far.
    pub fn cuts(&self) -> Cuts {
        self.lock().cuts
    }

    /// Starts keeping a line for every operation and power cut.
    pub fn trace(&self) {
        self.lock().trace = Some(Vec::new());
    }

    /// The lines kept since [`SimFs::trace`].
    pub fn traced(&self) -> Vec<String> {
        self.lock().trace.clone().unwrap_or_default()
    }

    /// Cuts the power: every file and directory keeps what was synced and some of what was not
    /// (see the module docs), `rng` choosing. Then the machine starts again: a new boot, no
    /// process, no lock.
    pub fn power_cut(&self, rng: &mut Rng) {
        let mut state = self.lock();
        let state = &mut *state;
        state.cuts.cuts += 1;
        state.note(|| "power cut".to_owned());
        let mut inos: Vec<Ino> = state.nodes.keys().copied().collect();
        inos.sort_unstable();
        for ino in inos {
            match state.nodes.get_mut(&ino) {
                Some(Node::File(file)) => {
                    let image = file_image(&file.durable, &file.pending, rng, &mut state.cuts);
                    file.durable = image.clone();
                    file.current = image;
                    file.pending.clear();
                }
                Some(Node::Dir(dir)) => {
                    let image = dir_image(&dir.durable, &dir.pending, rng, &mut state.cuts);
                    dir.durable = image.clone();
                    dir.current = image;
                    dir.pending.clear();
                }
                None => {}
            }
        }
        // Files and directories no durable entry leads to are gone.
        let mut reachable = HashSet::from([ROOT]);
        let mut stack = vec![ROOT];
        while let Some(ino) = stack.pop() {
            if let Some(Node::Dir(dir)) = state.nodes.get(&ino) {
                for &child in dir.durable.values() {
                    if reachable.insert(child) {
                        stack.push(child);
                    }
                }
            }
        }
        state.nodes.retain(|ino, _| reachable.contains(ino));
        if state.trace.is_some() {
            let listing = state.listing();
            state.note(|| format!("after the power cut: {listing}"));
        }
        state.boot += 1;
        state.locks.clear();
        state.crash_at = None;
        state.fail_sync_at = None;
    }

    /// The current bytes of the file at `path` (for tests that look at what was written).
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.lock();
        match state.nodes.get(&state.resolve(path)?) {
            Some(Node::File(file)) => Some(file.current.clone()),
            _ => None,
        }
    }
}

/// What a file holds after a power cut: see the module docs.
fn file_image(durable: &[u8], pending: &[FileOp], rng: &mut Rng, cuts: &mut Cuts) -> Vec<u8> {
    if pending.is_empty() {
        return durable.to_vec();
    }
    cuts.files_unsynced += 1;
    let mut states = vec![durable.to_vec()];
    for op in pending {
        let mut next = states.last().expect("one state").clone();
        op.apply(&mut next);
        states.push(next);
    }
    let n = pending.len() as u64 + 1;
    let image = match rng.below(4) {
        0 => states[0].clone(),
        1 => states[states.len() - 1].clone(),
        _ => {
            let len = states[rng.below(n) as usize].len();
            let mut image = vec![0; len];
            for (i, sector) in image.chunks_mut(SECTOR).enumerate() {
                let version = &states[rng.below(n) as usize];
                let from = i * SECTOR;
                for (j, byte) in sector.iter_mut().enumerate() {
                    *byte = version.get(from + j).copied().unwrap_or(0);
                }
            }
            image
        }
    };
    if image == states[0] && image != states[states.len() - 1] {
        cuts.files_dropped += 1;
    } else if image != states[states.len() - 1] {
        cuts.files_torn += 1;
    }
    image
}

/// What a directory holds after a power cut: see the module docs.
fn dir_image(
    durable: &BTreeMap<OsString, Ino>,
    pending: &[DirOp],
    rng: &mut Rng,
    cuts: &mut Cuts,
) -> BTreeMap<OsString, Ino> {
    let mut image = durable.clone();
    if pending.is_empty() {
        return image;
    }
    cuts.dir_ops_unsynced += pending.len() as u64;
    let mode = rng.below(4);
    let mut lost_one = false;
    let mut reordered = false;
    for op in pending {
        let keep = match mode {
            0 => false,
            1 => true,
            _ => rng.below(2) == 0,
        };
        if !keep {
            cuts.dir_ops_lost += 1;
            lost_one = true;
            continue;
        }
        reordered |= lost_one;
        for (name, target) in op {
            match target {
                Some(ino) => image.insert(name.clone(), *ino),
                None => image.remove(name),
            };
        }
    }
    cuts.dir_reordered += u64::from(reordered);
    image
}

impl State {
    /// Keeps a line, if traced.
    fn note(&mut self, line: impl FnOnce() -> String) {
        if let Some(trace) = &mut self.trace {
            trace.push(line());
        }
    }

    /// Every path and its length, as readers see the tree.
    fn listing(&self) -> String {
        let mut out = Vec::new();
        let mut stack = vec![(ROOT, String::new())];
        while let Some((ino, path)) = stack.pop() {
            match self.nodes.get(&ino) {
                Some(Node::Dir(dir)) => {
                    for (name, &child) in &dir.current {
                        stack.push((child, format!("{path}/{}", name.to_string_lossy())));
                    }
                }
                Some(Node::File(file)) => out.push(format!("{path} ({})", file.current.len())),
                None => {}
            }
        }
        out.sort();
        out.join(", ")
    }

    /// Counts one operation of the process; `Err` once it has died.
    fn op(&mut self) -> io::Result<()> {
        self.ops += 1;
        match self.crash_at {
            Some(nth) if self.ops >= nth => {
                let ops = self.ops;
                self.note(|| format!("op {ops}: refused, the process is dead"));
                Err(crashed())
            }
            _ => Ok(()),
        }
    }

    /// Counts one sync: `Ok(true)` if it is the one to fail, `Err` if the process has died.
    fn sync(&mut self) -> io::Result<bool> {
        self.op()?;
        self.syncs += 1;
        Ok(self.fail_sync_at == Some(self.syncs))
    }

    /// The node `path` leads to, as readers see the tree.
    fn resolve(&self, path: &Path) -> Option<Ino> {
        let mut ino = ROOT;
        for component in path.components() {
            match component {
                Component::RootDir => ino = ROOT,
                Component::Normal(name) => match self.nodes.get(&ino)? {
                    Node::Dir(dir) => ino = *dir.current.get(name)?,
                    Node::File(_) => return None,
                },
                _ => return None,
            }
        }
        Some(ino)
    }

    /// The directory holding `path`, and the name in it.
    fn parent(&self, path: &Path) -> io::Result<(Ino, OsString)> {
        let name = path.file_name().ok_or_else(not_found)?.to_owned();
        let parent = path.parent().ok_or_else(not_found)?;
        let ino = self.resolve(parent).ok_or_else(not_found)?;
        match self.nodes.get(&ino) {
            Some(Node::Dir(_)) => Ok((ino, name)),
            _ => Err(not_found()),
        }
    }

    fn dir_mut(&mut self, ino: Ino) -> &mut DirNode {
        match self.nodes.get_mut(&ino) {
            Some(Node::Dir(dir)) => dir,
            _ => panic!("inode {ino} is not a directory"),
        }
    }

    fn file_mut(&mut self, ino: Ino) -> io::Result<&mut FileNode> {
        match self.nodes.get_mut(&ino) {
            Some(Node::File(file)) => Ok(file),
            _ => Err(not_found()),
        }
    }

    /// Changes names in the directory `dir`.
    fn change(&mut self, dir: Ino, op: DirOp) {
        let ops = self.ops;
        self.note(|| format!("op {ops}: in directory {dir}: {op:?}"));
        let dir = self.dir_mut(dir);
        for (name, target) in &op {
            match target {
                Some(ino) => dir.current.insert(name.clone(), *ino),
                None => dir.current.remove(name),
            };
        }
        dir.pending.push(op);
    }

    /// A new node named `name` in the directory `parent`.
    fn create(&mut self, parent: Ino, name: &OsStr, node: Node) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(ino, node);
        self.change(parent, vec![(name.to_owned(), Some(ino))]);
        ino
    }

    /// The bytes readers see in files that a name leads to or a handle holds.
    fn used(&self) -> u64 {
        let mut seen = HashSet::new();
        let mut stack = vec![ROOT];
        let mut used = 0;
        while let Some(ino) = stack.pop() {
            if !seen.insert(ino) {
                continue;
            }
            match self.nodes.get(&ino) {
                Some(Node::Dir(dir)) => stack.extend(dir.current.values()),
                Some(Node::File(file)) => used += file.current.len() as u64,
                None => {}
            }
        }
        used
    }
}

impl Fs for SimFs {
    fn metadata(&self, path: &Path) -> io::Result<Metadata> {
        let state = self.lock();
        let ino = state.resolve(path).ok_or_else(not_found)?;
        Ok(match &state.nodes[&ino] {
            Node::Dir(_) => Metadata {
                is_dir: true,
                len: 0,
            },
            Node::File(file) => Metadata {
                is_dir: false,
                len: file.current.len() as u64,
            },
        })
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.op()?;
        let (parent, name) = state.parent(path)?;
        if state.resolve(path).is_some() {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists"));
        }
        state.create(parent, &name, Node::Dir(DirNode::default()));
        Ok(())
    }

    fn read_dir(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        let state = self.lock();
        let ino = state.resolve(dir).ok_or_else(not_found)?;
        match &state.nodes[&ino] {
            Node::Dir(dir) => Ok(dir.current.keys().cloned().collect()),
            Node::File(_) => Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            )),
        }
    }

    fn open(&self, path: &Path, how: Open) -> io::Result<Box<dyn FsFile>> {
        let mut state = self.lock();
        let existing = state.resolve(path);
        if how != Open::Existing {
            state.op()?;
        }
        let ino = match (existing, how) {
            (None, Open::Existing) => return Err(not_found()),
            (Some(_), Open::CreateNew) => {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists"));
            }
            (Some(ino), Open::Truncate) => {
                let file = state.file_mut(ino)?;
                file.current.clear();
                file.pending.push(FileOp::SetLen(0));
                ino
            }
            (Some(ino), _) => {
                state.file_mut(ino)?;
                ino
            }
            (None, _) => {
                let (parent, name) = state.parent(path)?;
                state.create(parent, &name, Node::File(FileNode::default()))
            }
        };
        let handle = state.next_handle;
        state.next_handle += 1;
        Ok(Box::new(SimFile {
            state: Arc::clone(&self.state),
            ino,
            boot: state.boot,
            handle,
        }))
    }

    fn read(&self, path: &Path, limit: u64) -> io::Result<Vec<u8>> {
        let state = self.lock();
        let ino = state.resolve(path).ok_or_else(not_found)?;
        match &state.nodes[&ino] {
            Node::File(file) => {
                let len = file
                    .current
                    .len()
                    .min(usize::try_from(limit).unwrap_or(usize::MAX));
                Ok(file.current[..len].to_vec())
            }
            Node::Dir(_) => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "is a directory",
            )),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.op()?;
        let (dir, from_name) = state.parent(from)?;
        let (to_dir, to_name) = state.parent(to)?;
        assert_eq!(dir, to_dir, "renames stay in one directory");
        let ino = state.resolve(from).ok_or_else(not_found)?;
        if from_name != to_name {
            state.change(dir, vec![(from_name, None), (to_name, Some(ino))]);
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.op()?;
        let (dir, name) = state.parent(path)?;
        let ino = state.resolve(path).ok_or_else(not_found)?;
        state.file_mut(ino)?;
        state.change(dir, vec![(name, None)]);
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        let ino = state.resolve(path).ok_or_else(not_found)?;
        let fails = state.sync()?;
        let ops = state.ops;
        state.note(|| {
            format!(
                "op {ops}: sync directory {} (fails: {fails})",
                path.display()
            )
        });
        let state = &mut *state;
        let Some(Node::Dir(dir)) = state.nodes.get_mut(&ino) else {
            return Err(not_found());
        };
        if fails {
            // Some of it reached the disk; the rest never will.
            let cuts = &mut Cuts::default();
            dir.durable = dir_image(&dir.durable, &dir.pending, &mut state.rng, cuts);
            dir.pending.clear();
            return Err(sync_failure());
        }
        for op in dir.pending.drain(..) {
            for (name, target) in op {
                match target {
                    Some(ino) => dir.durable.insert(name, ino),
                    None => dir.durable.remove(&name),
                };
            }
        }
        Ok(())
    }

    fn boot_id(&self) -> io::Result<String> {
        Ok(format!("simulated-boot-{}", self.lock().boot))
    }

    /// Half the time, as the seed decides.
    fn run_now(&self) -> bool {
        self.lock().rng.chance(500)
    }
}

/// An open file of a [`SimFs`].
struct SimFile {
    state: Arc<Mutex<State>>,
    ino: Ino,
    /// The boot it was opened in: after a power cut it is dead.
    boot: u64,
    handle: u64,
}

impl fmt::Debug for SimFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFile")
            .field("ino", &self.ino)
            .finish_non_exhaustive()
    }
}

impl SimFile {
    /// The state, if this handle is of the current boot.
    fn state(&self) -> io::Result<MutexGuard<'_, State>> {
        let state = self.state.lock().expect("the simulated file system");
        if state.boot != self.boot {
            return Err(io::Error::other("a handle from before a power cut"));
        }
        Ok(state)
    }

    fn sync(&self) -> io::Result<()> {
        let mut state = self.state()?;
        let fails = state.sync()?;
        let (ops, ino) = (state.ops, self.ino);
        state.note(|| format!("op {ops}: sync file {ino} (fails: {fails})"));
        let state = &mut *state;
        let Some(Node::File(file)) = state.nodes.get_mut(&self.ino) else {
            return Err(not_found());
        };
        if fails {
            // Some of it reached the disk; the rest never will, though the page cache goes on
            // showing it.
            let cuts = &mut Cuts::default();
            file.durable = file_image(&file.durable, &file.pending, &mut state.rng, cuts);
            file.pending.clear();
            return Err(sync_failure());
        }
        for op in file.pending.drain(..) {
            op.apply(&mut file.durable);
        }
        Ok(())
    }
}

impl FsFile for SimFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut state = self.state()?;
        state.op()?;
        let mut buf = buf;
        let mut full = None;
        if let Some(capacity) = state.capacity {
            let len = state.file_mut(self.ino)?.current.len() as u64;
            let growth = (offset + buf.len() as u64).saturating_sub(len);
            let free = capacity.saturating_sub(state.used());
            if growth > free {
                // As much as fits, then the error.
                let fits = (len + free).saturating_sub(offset).min(buf.len() as u64);
                buf = &buf[..fits as usize];
                full = Some(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "simulated full disk",
                ));
            }
        }
        let (ops, ino, len) = (state.ops, self.ino, buf.len());
        state.note(|| format!("op {ops}: write {len} bytes at {offset} to file {ino}"));
        let file = state.file_mut(self.ino)?;
        let op = FileOp::Write {
            offset,
            data: buf.to_vec(),
        };
        op.apply(&mut file.current);
        file.pending.push(op);
        match full {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        self.sync()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = self.state()?;
        state.op()?;
        let (ops, ino) = (state.ops, self.ino);
        state.note(|| format!("op {ops}: cut file {ino} to {len}"));
        let file = state.file_mut(self.ino)?;
        let op = FileOp::SetLen(len);
        op.apply(&mut file.current);
        file.pending.push(op);
        Ok(())
    }

    fn try_lock(&self) -> Result<(), TryLockError> {
        let mut state = self.state().map_err(TryLockError::Error)?;
        match state.locks.get(&self.ino) {
            Some(&holder) if holder != self.handle => Err(TryLockError::WouldBlock),
            _ => {
                state.locks.insert(self.ino, self.handle);
                Ok(())
            }
        }
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        if let Ok(mut state) = self.state.lock()
            && state.boot == self.boot
            && state.locks.get(&self.ino) == Some(&self.handle)
        {
            state.locks.remove(&self.ino);
        }
    }
}
