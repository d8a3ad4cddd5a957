//! The latency of one durable append to the write-ahead log on this machine's disk.
//!
//! ```text
//! cargo run --release -p zeroraft-storage --example wal_append -- \
//!     [--dir DIR] [--appends N] [--payload BYTES] [--batches 1,16,256] [--raw]
//! ```
//!
//! Opens a fresh [`FileStorage`] in a temporary directory under `--dir` (default: `TMPDIR`, so
//! point it at the disk to measure), persists `--appends` updates of `B` entries of `--payload`
//! bytes each (after a warm-up of a tenth as many, and once the log has its next segment
//! ready: `FileStorage::prepare_next_segment`), for each `B` in `--batches`, and prints the median, p99
//! and maximum time of one `persist` (one record, one `fdatasync`) and the time per entry.
//!
//! `--raw` first measures the file system alone, without the log: `--appends` 4 KiB writes,
//! each followed by `fdatasync`, to a file that grows with each write, to one whose blocks
//! were written (zeros) and synced beforehand, and to one whose blocks were only allocated
//! with `fallocate` (unwritten extents); then the same without `fdatasync`, the file opened
//! with `O_DSYNC`, growing and over written zeros.
#![forbid(unsafe_code)]

use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use zeroraft_storage::{Entry, EntryKind, FileStorage, Identity, Storage, Update, WalOptions};

struct Args {
    dir: Option<PathBuf>,
    appends: usize,
    payload: usize,
    batches: Vec<usize>,
    raw: bool,
}

fn parse() -> Args {
    let mut args = Args {
        dir: None,
        appends: 2000,
        payload: 100,
        batches: vec![1, 16, 256],
        raw: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--dir" => args.dir = Some(PathBuf::from(value())),
            "--appends" => args.appends = value().parse().expect("--appends N"),
            "--payload" => args.payload = value().parse().expect("--payload BYTES"),
            "--batches" => {
                args.batches = value()
                    .split(',')
                    .map(|b| b.parse().expect("--batches 1,16,256"))
                    .collect();
            }
            "--raw" => args.raw = true,
            other => panic!("unknown option {other}"),
        }
    }
    args
}

/// Median, p99 and maximum of `times`, in microseconds.
fn summary(times: &mut [Duration]) -> (f64, f64, f64) {
    times.sort_unstable();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6;
    (at(0.5), at(0.99), at(1.0))
}

fn tempdir(args: &Args) -> tempfile::TempDir {
    match &args.dir {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .expect("a temporary directory")
}

/// 4 KiB appends with an `fdatasync` each to `path`, prepared by `prepare`; with `dsync`, each
/// write is made durable by the file's `O_DSYNC` instead.
fn raw(
    path: &Path,
    appends: usize,
    prepare: impl FnOnce(&std::fs::File),
    dsync: bool,
) -> Vec<Duration> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .expect("a new file");
    prepare(&file);
    file.sync_all().expect("sync");
    let file = if dsync {
        drop(file);
        OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::DSYNC.bits() as i32)
            .open(path)
            .expect("the file, with O_DSYNC")
    } else {
        file
    };
    let block = [7u8; 4096];
    let mut times = Vec::with_capacity(appends);
    for i in 0..appends {
        let started = Instant::now();
        file.write_all_at(&block, (i * block.len()) as u64)
            .expect("write");
        if !dsync {
            file.sync_data().expect("fdatasync");
        }
        times.push(started.elapsed());
    }
    times
}

fn main() {
    let args = parse();
    let dir = tempdir(&args);
    if args.raw {
        let size = (args.appends * 4096) as u64;
        type Prepare = Box<dyn Fn(&std::fs::File)>;
        let zeros = move |f: &std::fs::File| {
            let zeros = vec![0u8; 1 << 20];
            let mut at = 0;
            while at < size {
                f.write_all_at(&zeros, at).expect("write zeros");
                at += zeros.len() as u64;
            }
        };
        let cases: [(&str, Prepare, bool); 5] = [
            ("fdatasync, grows", Box::new(|_| {}), false),
            ("fdatasync, over zeros", Box::new(zeros), false),
            (
                "fdatasync, over fallocate",
                Box::new(move |f| {
                    rustix::fs::fallocate(f, rustix::fs::FallocateFlags::empty(), 0, size)
                        .expect("fallocate");
                }),
                false,
            ),
            ("O_DSYNC, grows", Box::new(|_| {}), true),
            ("O_DSYNC, over zeros", Box::new(zeros), true),
        ];
        for (round, (name, prepare, dsync)) in cases.iter().enumerate() {
            let path = dir.path().join(format!("raw-{round}"));
            let mut times = raw(&path, args.appends, prepare, *dsync);
            let (p50, p99, max) = summary(&mut times);
            println!(
                "raw 4 KiB write, {name:<26}: p50 {p50:7.1} us  p99 {p99:7.1} us  \
                 max {max:8.1} us  ({} appends)",
                args.appends
            );
            std::fs::remove_file(&path).expect("remove");
        }
    }
    let identity = Identity {
        cluster: 1,
        node: 1,
    };
    for &batch in &args.batches {
        let path = dir.path().join(format!("log-{batch}"));
        let options = WalOptions {
            create: true,
            ..WalOptions::default()
        };
        let mut log = FileStorage::open(&path, identity, options).expect("the log opens");
        let entries: Vec<Entry> = (0..batch)
            .map(|_| Entry {
                term: 1,
                kind: EntryKind::Command,
                command: Bytes::from(vec![42u8; args.payload]),
            })
            .collect();
        let mut next = 1;
        let mut append = |log: &mut FileStorage| {
            let update = Update {
                hard_state: None,
                snapshot: None,
                truncate_from: None,
                first_index: next,
                entries: &entries,
            };
            let started = Instant::now();
            log.persist(&update).expect("persisted");
            next += batch as u64;
            started.elapsed()
        };
        for _ in 0..args.appends / 10 {
            append(&mut log);
        }
        // The next segment ready (a log that prepares none ignores this), and moved to.
        log.prepare_next_segment();
        append(&mut log);
        let mut times: Vec<Duration> = (0..args.appends).map(|_| append(&mut log)).collect();
        let total: Duration = times.iter().sum();
        let (p50, p99, max) = summary(&mut times);
        println!(
            "log persist, {batch:>4} x {} B entries: p50 {p50:7.1} us  p99 {p99:7.1} us  max \
             {max:8.1} us  per entry {:6.2} us  ({} appends)",
            args.payload,
            total.as_secs_f64() * 1e6 / (args.appends * batch) as f64,
            args.appends
        );
        drop(log);
    }
}
