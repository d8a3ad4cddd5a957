//! Throughput: proposals committed and applied on every node, on a reliable in-memory network.
//!
//! - `closed_loop`: one client keeps up to C proposals in flight (not yet applied on the leader).
//! - `bursts`: the client calls `start` B times back to back, then waits for the leader to apply.
//!
//! Each runs with 3 and 5 nodes and 16 B and 1 KiB payloads, measured in wall time
//! (`throughput/…`, elements per second) and in process CPU time (`throughput_cpu/…`, CPU
//! nanoseconds per committed entry, all threads). The cluster is built outside the timed part.

mod support;

use std::time::Duration;

use bytes::Bytes;
use criterion::measurement::{Measurement, WallTime};
use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use support::{CpuTime, cluster_criterion, cpu_now, wall_now};
use zeroraft::Config;
use zeroraft::bench::BenchCluster;

static PAYLOAD: [u8; 1024] = [0x5a; 1024];

/// Entries per iteration: enough that one iteration takes milliseconds, not microseconds.
fn entries_for(in_flight: u64) -> u64 {
    match in_flight {
        1 => 2_000,
        2..=64 => 50_000,
        _ => 200_000,
    }
}

fn run<M: Measurement<Value = Duration>>(
    c: &mut Criterion<M>,
    group: &str,
    clock: fn() -> Duration,
) {
    for nodes in [3, 5] {
        for payload_len in [16, 1024] {
            // A fresh cluster per group: the log is never compacted, so a cluster reused across
            // groups would make later groups pay for the memory earlier ones filled.
            let cluster = BenchCluster::new(nodes, Config::default());
            let payload = Bytes::from_static(&PAYLOAD[..payload_len]);
            let mut g = c.benchmark_group(format!("{group}/closed_loop/{nodes}n/{payload_len}B"));
            g.sampling_mode(SamplingMode::Flat);
            for window in [1u64, 64, 4096] {
                let count = entries_for(window);
                g.throughput(Throughput::Elements(count));
                g.bench_function(BenchmarkId::from_parameter(format!("C={window}")), |b| {
                    b.iter_custom(|iters| {
                        let t0 = clock();
                        for _ in 0..iters {
                            cluster.closed_loop(count, window, &payload);
                        }
                        clock() - t0
                    })
                });
            }
            g.finish();
            drop(cluster);

            let cluster = BenchCluster::new(nodes, Config::default());
            let mut g = c.benchmark_group(format!("{group}/bursts/{nodes}n/{payload_len}B"));
            g.sampling_mode(SamplingMode::Flat);
            for burst in [1u64, 64, 1024] {
                let count = entries_for(burst);
                g.throughput(Throughput::Elements(count));
                g.bench_function(BenchmarkId::from_parameter(format!("B={burst}")), |b| {
                    b.iter_custom(|iters| {
                        let t0 = clock();
                        for _ in 0..iters {
                            cluster.bursts(count, burst, &payload);
                        }
                        clock() - t0
                    })
                });
            }
            g.finish();
        }
    }
}

fn wall(c: &mut Criterion<WallTime>) {
    run(c, "throughput", wall_now);
}

fn cpu(c: &mut Criterion<CpuTime>) {
    run(c, "throughput_cpu", cpu_now);
}

criterion_group! { name = wall_group; config = cluster_criterion(WallTime); targets = wall }
criterion_group! { name = cpu_group; config = cluster_criterion(CpuTime); targets = cpu }
criterion_main!(wall_group, cpu_group);
