//! The caller's cost of `start` on a leader of a 3-node cluster, and of `get_state`.
//!
//! `start` is timed in runs of 1024 calls; between runs (untimed) the client waits until the
//! cluster has applied them, so the log does not grow without bound and the queue stays short.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use zeroraft_engine::Config;
use zeroraft_harness::load::LoadCluster;

fn api(c: &mut Criterion) {
    let cluster = LoadCluster::new(3, Config::default());
    let leader = cluster.leader();
    let raft = cluster.node(leader).clone();
    let payload = Bytes::from_static(&[1u8; 16]);

    c.bench_function("start/leader/3n", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let run = left.min(1024);
                let mut last = 0;
                let t0 = Instant::now();
                for _ in 0..run {
                    last = black_box(raft.start(payload.clone())).0;
                }
                timed += t0.elapsed();
                left -= run;
                // Untimed: let the cluster apply the run before the next one.
                while cluster.applied_everywhere() < last {
                    std::thread::yield_now();
                }
            }
            timed
        })
    });

    c.bench_function("get_state/3n", |b| b.iter(|| black_box(raft.get_state())));
    c.bench_function("status/3n", |b| b.iter(|| black_box(raft.status())));
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2)).configure_from_args();
    targets = api
}
criterion_main!(benches);
