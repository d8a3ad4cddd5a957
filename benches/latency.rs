//! Latency: one client, one proposal at a time, from `start` to the leader's apply, with 3 and
//! 5 nodes. Wall time gives the mean latency; CPU time shows what each commit costs the process
//! (including any spinning). Percentiles: `cargo run --release --example latency`.

mod support;

use std::time::Duration;

use bytes::Bytes;
use criterion::measurement::{Measurement, WallTime};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use support::{CpuTime, cluster_criterion, cpu_now, timed, wall_now};
use zeroraft_engine::Config;
use zeroraft_harness::load::LoadCluster;

fn run<M: Measurement<Value = Duration>>(
    c: &mut Criterion<M>,
    group: &str,
    clock: fn() -> Duration,
) {
    let payload = Bytes::from_static(&[7u8; 16]);
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(1));
    for nodes in [3, 5] {
        let cluster = LoadCluster::new(nodes, Config::default());
        g.bench_function(BenchmarkId::new("one_client", format!("{nodes}n")), |b| {
            b.iter_custom(|iters| {
                timed(clock, iters, || {
                    cluster.one(&payload);
                })
            })
        });
    }
    g.finish();
}

fn wall(c: &mut Criterion<WallTime>) {
    run(c, "latency", wall_now);
}

fn cpu(c: &mut Criterion<CpuTime>) {
    run(c, "latency_cpu", cpu_now);
}

criterion_group! { name = wall_group; config = cluster_criterion(WallTime); targets = wall }
criterion_group! { name = cpu_group; config = cluster_criterion(CpuTime); targets = cpu }
criterion_main!(wall_group, cpu_group);
