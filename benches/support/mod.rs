//! What the benchmarks share: a criterion [`Measurement`] over the process CPU clock, the two
//! clocks as plain functions for `iter_custom` and a timing loop over either, and the criterion
//! settings that keep a full run within minutes on two cores.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{Criterion, Throughput};

/// CPU time used by the whole process (every thread: clients and all nodes), as criterion's
/// measured value. A benchmark that spins shows its true cost here.
pub struct CpuTime;

impl Measurement for CpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        cpu_now()
    }
    fn end(&self, start: Duration) -> Duration {
        cpu_now().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// Shows CPU nanoseconds as times, and per element (rather than elements per second) when a
/// throughput is set: the CPU cost of one committed entry.
struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, ns: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if ns < 1e3 {
            (1.0, "ns cpu")
        } else if ns < 1e6 {
            (1e-3, "µs cpu")
        } else if ns < 1e9 {
            (1e-6, "ms cpu")
        } else {
            (1e-9, "s cpu")
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }

    fn scale_throughputs(
        &self,
        _typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let per = match *throughput {
            Throughput::Elements(n) | Throughput::ElementsAndBytes { elements: n, .. } => n,
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) | Throughput::Bits(n) => n,
        } as f64;
        values.iter_mut().for_each(|v| *v /= per);
        "ns cpu/elem"
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

/// The process CPU clock.
pub fn cpu_now() -> Duration {
    cpu_time::ProcessTime::now().as_duration()
}

/// The wall clock, as time since the first call.
pub fn wall_now() -> Duration {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed()
}

/// Runs `f` `iters` times and returns the time `clock` advanced meanwhile, for `iter_custom`.
pub fn timed(clock: fn() -> Duration, iters: u64, mut f: impl FnMut()) -> Duration {
    let t0 = clock();
    for _ in 0..iters {
        f();
    }
    clock() - t0
}

/// Criterion settings for cluster benchmarks: few samples, short warm-up, flat sampling (every
/// sample the same number of iterations, so the engine's log grows predictably).
pub fn cluster_criterion<M: Measurement>(measurement: M) -> Criterion<M> {
    Criterion::default()
        .with_measurement(measurement)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args()
}
