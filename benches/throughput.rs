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
use support::{CpuTime, cluster_criterion, cpu_now, timed, wall_now};
use zeroraft_engine::Config;
use zeroraft_harness::load::LoadCluster;

static PAYLOAD: [u8; 1024] = [0x5a; 1024];

/// How a client drives the cluster: `(cluster, entries, parameter, payload)`.
type Drive = fn(&LoadCluster, u64, u64, &Bytes);

/// The groups per cluster shape, in order: name, parameter label, parameters, driver.
const DRIVERS: [(&str, &str, [u64; 3], Drive); 2] = [
    ("closed_loop", "C", [1, 64, 4096], LoadCluster::closed_loop),
    ("bursts", "B", [1, 64, 1024], LoadCluster::bursts),
];

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
            let payload = Bytes::from_static(&PAYLOAD[..payload_len]);
            for (driver, label, params, drive) in DRIVERS {
                // A fresh cluster per group: the log is never compacted, so a cluster reused across
                // groups would make later groups pay for the memory earlier ones filled.
                let cluster = LoadCluster::new(nodes, Config::default());
                let mut g = c.benchmark_group(format!("{group}/{driver}/{nodes}n/{payload_len}B"));
                g.sampling_mode(SamplingMode::Flat);
                for param in params {
                    let count = entries_for(param);
                    g.throughput(Throughput::Elements(count));
                    let id = BenchmarkId::from_parameter(format!("{label}={param}"));
                    g.bench_function(id, |b| {
                        b.iter_custom(|iters| {
                            timed(clock, iters, || drive(&cluster, count, param, &payload))
                        })
                    });
                }
                g.finish();
            }
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
