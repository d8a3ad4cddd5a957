//! The write-ahead log on this machine's disk: the raw cost of a 4 KiB append and its
//! `fdatasync`, `FileStorage::persist` of batches of 16-byte entries (one write and one
//! `fdatasync` each) and of a 64 MiB snapshot, and `FileStorage::open` of a log of a million
//! entries, without and with a snapshot.
//!
//! The log lives in a temporary directory (`TMPDIR`, else `/tmp`): point `TMPDIR` at the disk
//! to measure.

use std::fs::File;
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use zeroraft_storage::{
    Entry, FileStorage, HardState, Identity, Snapshot, Storage, Update, WalOptions,
};

const ID: Identity = Identity {
    cluster: 1,
    node: 0,
};

fn open(dir: &Path) -> FileStorage {
    FileStorage::open(
        dir,
        ID,
        WalOptions {
            create: true,
            ..WalOptions::default()
        },
    )
    .expect("open the log")
}

fn batch(n: usize) -> Vec<Entry> {
    (0..n)
        .map(|_| Entry::new(1, Bytes::from_static(&[3u8; 16])))
        .collect()
}

/// Appends of 4 KiB to a file, each followed by `fdatasync`: what one group commit costs at
/// least on this disk.
fn write_fdatasync(c: &mut Criterion) {
    let mut g = c.benchmark_group("storage/write_fdatasync");
    g.throughput(Throughput::Bytes(4096));
    g.bench_function("4096", |b| {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("probe")).unwrap();
        let block = [7u8; 4096];
        let mut end = 0;
        b.iter(|| {
            file.write_all_at(&block, end).unwrap();
            file.sync_data().unwrap();
            end += 4096;
        });
    });
    g.finish();
}

/// `persist` of one batch of `n` entries of 16 bytes, appended to a growing log.
fn persist(c: &mut Criterion) {
    let mut g = c.benchmark_group("storage/persist");
    for n in [1usize, 64, 1024] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            let dir = tempfile::tempdir().unwrap();
            let mut storage = open(dir.path());
            let entries = batch(n);
            let mut next = 1;
            b.iter(|| {
                let update = Update {
                    hard_state: None,
                    snapshot: None,
                    truncate_from: None,
                    first_index: next,
                    entries: &entries,
                };
                storage.persist(&update).unwrap();
                next += n as u64;
            });
        });
    }
    g.finish();
}

/// Bytes of the snapshots in these benchmarks.
const SNAPSHOT_BYTES: usize = 64 << 20;

/// `persist` of an update carrying a snapshot of 64 MiB, after 1024 entries were appended (not
/// timed): the snapshot file (one write of the data, one `fsync`, a rename, a directory sync),
/// the record naming it (one write, one `fdatasync`), and removing the previous snapshot's
/// file.
fn snapshot(c: &mut Criterion) {
    let mut g = c.benchmark_group("storage/snapshot");
    g.throughput(Throughput::Bytes(SNAPSHOT_BYTES as u64));
    g.sample_size(10);
    g.bench_function("64MiB", |b| {
        let dir = tempfile::tempdir().unwrap();
        let mut storage = open(dir.path());
        let entries = batch(1024);
        let data = Bytes::from(vec![9u8; SNAPSHOT_BYTES]);
        let mut next = 1;
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                storage.persist(&append(next, &entries)).unwrap();
                next += entries.len() as u64;
                let snapshot = Snapshot {
                    index: next - 1,
                    term: 1,
                    data: data.clone(),
                    config: None,
                };
                let update = Update {
                    snapshot: Some(&snapshot),
                    ..append(next, &[])
                };
                let start = Instant::now();
                storage.persist(&update).unwrap();
                total += start.elapsed();
            }
            total
        })
    });
    g.finish();
}

fn append(first_index: u64, entries: &[Entry]) -> Update<'_> {
    Update {
        hard_state: None,
        snapshot: None,
        truncate_from: None,
        first_index,
        entries,
    }
}

/// Entries in the recovery benchmark's log.
const RECOVERED: usize = 1 << 20;

/// `open` (and `recover`) of a log of 2^20 entries of 16 bytes. The log is written in batches of
/// 4096 entries, 256 records, so that building it costs 256 `fdatasync`s; recovery does not
/// depend much on the batch size, it reads the same bytes. Dropping what was recovered is not
/// timed. Then the same log after a snapshot of 64 MiB at index 2^19 and 2^20 more entries: its
/// one segment holds 2^21 entries, of which the 1.5 * 2^20 after the snapshot are recovered.
fn recovery(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut storage = open(dir.path());
        let entries = batch(4096);
        storage
            .persist(&Update {
                hard_state: Some(HardState {
                    term: 1,
                    voted_for: Some(0),
                }),
                snapshot: None,
                truncate_from: None,
                first_index: 1,
                entries: &entries,
            })
            .unwrap();
        for first in (1 + 4096..=RECOVERED as u64).step_by(4096) {
            storage
                .persist(&Update {
                    hard_state: None,
                    snapshot: None,
                    truncate_from: None,
                    first_index: first,
                    entries: &entries,
                })
                .unwrap();
        }
    }
    let mut g = c.benchmark_group("storage/recover");
    g.throughput(Throughput::Elements(RECOVERED as u64));
    g.sample_size(10);
    g.bench_function("1M_entries_16B", |b| time_open(b, dir.path(), RECOVERED));

    {
        let mut storage = open(dir.path());
        let snapshot = Snapshot {
            index: RECOVERED as u64 / 2,
            term: 1,
            data: Bytes::from(vec![9u8; SNAPSHOT_BYTES]),
            config: None,
        };
        storage
            .persist(&Update {
                snapshot: Some(&snapshot),
                ..append(0, &[])
            })
            .unwrap();
        let entries = batch(4096);
        for first in (RECOVERED as u64 + 1..=2 * RECOVERED as u64).step_by(4096) {
            storage.persist(&append(first, &entries)).unwrap();
        }
    }
    g.bench_function("1M_entries_16B_after_a_64MiB_snapshot", |b| {
        time_open(b, dir.path(), RECOVERED * 3 / 2)
    });
    g.finish();
}

/// Times `open` and `recover` of the log in `dir`, which holds `entries` after its snapshot.
fn time_open(b: &mut criterion::Bencher<'_>, dir: &Path, entries: usize) {
    b.iter_custom(|iters| {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let start = Instant::now();
            let mut storage = open(dir);
            let recovered = storage.recover().unwrap();
            total += start.elapsed();
            assert_eq!(recovered.entries.len(), entries);
            black_box(recovered);
        }
        total
    })
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3)).configure_from_args();
    targets = write_fdatasync, persist, snapshot, recovery
}
criterion_main!(benches);
