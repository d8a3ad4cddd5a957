//! `zeroraft bench`: commits per second, CPU and latency of an in-process cluster ([`run`]), or
//! of running `serve` processes with `--connect` ([`run_remote`]); with `--membership-cycle`,
//! the commit rate of an in-process cluster around each membership change of three voters to
//! five and back to three ([`run_membership_cycle`]).

use std::io::{self, Write};
use std::ops::ControlFlow;
use std::time::Duration;

use zeroraft_harness::load::remote;
use zeroraft_harness::load::{LoadCluster, LoadStorage};

use super::args::{BenchArgs, StorageKind};
use super::{DataDir, Failure, Stop};

/// How many fdatasync calls `bench --storage file` times on the data directory's disk.
const FDATASYNC_SAMPLES: usize = 200;

/// Runs `bench` on an in-process cluster.
pub fn run(args: &BenchArgs, stop: &Stop) -> Result<(), Failure> {
    if args.with_recorder {
        // Before the nodes start: they register their metrics with the recorder installed then.
        zeroraft_kv::observe::recorder().map_err(Failure::Setup)?;
    }
    let data = match args.storage {
        StorageKind::File => {
            Some(DataDir::prepare(args.data.as_deref(), args.nodes).map_err(Failure::Setup)?)
        }
        StorageKind::None | StorageKind::Memory => None,
    };
    // Measured before the nodes start, so that their own syncs do not share the disk with it.
    let fdatasync = match &data {
        Some(dir) => Some(
            zeroraft_harness::load::fdatasync_median(&dir.path, FDATASYNC_SAMPLES).map_err(
                |e| Failure::Setup(format!("cannot sync a file in {}: {e}", dir.path.display())),
            )?,
        ),
        None => None,
    };
    let (storage, shown) = match (&args.storage, &data) {
        (StorageKind::File, Some(dir)) => {
            (LoadStorage::Files(dir.path.clone()), ", write-ahead logs")
        }
        (StorageKind::Memory, _) => (LoadStorage::Memory, ", in memory"),
        _ => (LoadStorage::None, ""),
    };
    let config = zeroraft_engine::Config {
        compaction: zeroraft_engine::Compaction {
            every_entries: (args.compact_every > 0).then_some(args.compact_every),
            above_bytes: None,
        },
        max_inflight_bytes: args.max_inflight_bytes,
        ..zeroraft_engine::Config::default()
    };
    let cluster = LoadCluster::with_storage(args.nodes, config, &storage)
        .map_err(|e| Failure::Setup(format!("cannot start the nodes: {e}")))?;
    // One payload for the whole run.
    let payload = zeroraft_harness::load::static_payload(args.payload);
    let mut before = 0;
    // The error that ended the progress lines, if one did: it ends the run.
    let mut failed = None;
    let report = cluster.closed_loop_for(
        Duration::from_secs(args.seconds),
        args.clients,
        &payload,
        |commits, elapsed| {
            if stop.is_requested() {
                return ControlFlow::Break(());
            }
            let rss = zeroraft_harness::load::resident_bytes()
                .map_or("?".into(), |b| format!("{:.0} MB", b as f64 / 1e6));
            let line = writeln!(
                io::stderr().lock(),
                "t={:>4.0}s  {:>8.3} M commits/s this second  {commits:>11} in all  rss {rss}",
                elapsed.as_secs_f64(),
                (commits - before) as f64 / 1e6
            );
            before = commits;
            match line {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => {
                    failed = Some(e);
                    ControlFlow::Break(())
                }
            }
        },
    );
    if let Some(e) = failed {
        return Err(e.into());
    }
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{} nodes, {} in flight, {} B{shown}: {:.3} M commits/s, {:.3} µs CPU per commit, latency p50 {:.1} µs p99 {:.1} µs p99.9 {:.1} µs ({} commits in {:.1} s)",
        args.nodes,
        args.clients,
        args.payload,
        report.rate() / 1e6,
        report.cpu_per_commit_us(),
        report.latency_us(0.5),
        report.latency_us(0.99),
        report.latency_us(0.999),
        report.commits,
        report.elapsed.as_secs_f64()
    )?;
    if let (Some(median), Some(dir)) = (fdatasync, &data) {
        writeln!(
            out,
            "disk: fdatasync median {:.1} µs ({FDATASYNC_SAMPLES} appends of 4 KiB to {}, each synced, before the run)",
            median.as_secs_f64() * 1e6,
            dir.path.display()
        )?;
    }
    drop(cluster);
    Ok(())
}

/// `bench --membership-cycle`: see [`zeroraft_harness::load::membership`]. Prints each change
/// with the dip it caused, the commits per 100 ms slice around it, and the check of the final
/// voters' journals; fails if an acknowledged write is missing or the journals differ.
pub fn run_membership_cycle(args: &BenchArgs) -> Result<(), Failure> {
    use zeroraft_harness::load::membership::{CycleOptions, membership_cycle};
    let data = match args.storage {
        StorageKind::File => {
            Some(DataDir::prepare(args.data.as_deref(), 5).map_err(Failure::Setup)?)
        }
        StorageKind::None | StorageKind::Memory => None,
    };
    let storage = match (&args.storage, &data) {
        (StorageKind::File, Some(dir)) => LoadStorage::Files(dir.path.clone()),
        (StorageKind::Memory, _) => LoadStorage::Memory,
        _ => LoadStorage::None,
    };
    let mut options = CycleOptions {
        window: args.clients,
        payload: args.payload.max(8),
        settle: Duration::from_secs(args.seconds) / 4,
        storage,
        ..CycleOptions::default()
    };
    options.config.compaction.every_entries =
        (args.compact_every > 0).then_some(args.compact_every);
    options.config.max_inflight_bytes = args.max_inflight_bytes;
    let report = membership_cycle(&options).map_err(|e| Failure::Run(io::Error::other(e)))?;
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "5 nodes, 3 voting at first, {} in flight, {} B: {:.3} M commits/s over the run, {:.3} µs CPU per commit ({} acknowledged in {:.1} s)",
        options.window,
        options.payload,
        report.mean_rate() / 1e6,
        report.cpu_per_commit_us(),
        report.acknowledged,
        report.elapsed.as_secs_f64()
    )?;
    let slice_ms = report.slice.as_secs_f64() * 1e3;
    for (i, change) in report.changes.iter().enumerate() {
        let dip = report.dip(i);
        writeln!(
            out,
            "\n{}: at {:.2} s, committed at index {} after {:.1} ms ({} attempts refused first), on leader n{}; voters now {:?}",
            change.what,
            change.started.as_secs_f64(),
            change.index,
            (change.done - change.started).as_secs_f64() * 1e3,
            change.refused,
            change.leader,
            change.voters
        )?;
        let level = dip.before.min(dip.after);
        writeln!(
            out,
            "  {:.3} M/s before, {:.3} M/s after; dip to {:.3} M/s ({:.0}% of the lower), below 90% of it for {} ms",
            dip.before / 1e6,
            dip.after / 1e6,
            dip.lowest / 1e6,
            if level > 0.0 {
                100.0 * dip.lowest / level
            } else {
                0.0
            },
            dip.duration.as_millis()
        )?;
        let first = (change.started.as_secs_f64() * 1e3 / slice_ms) as usize;
        let last = ((change.started.max(change.done) + dip.duration).as_secs_f64() * 1e3 / slice_ms)
            as usize
            + 3;
        let line: Vec<String> = (first.saturating_sub(3)..=last.min(report.slices.len() - 1))
            .map(|k| {
                format!(
                    "{:.1}s {:.2}",
                    k as f64 * slice_ms / 1e3,
                    report.rate(k) / 1e6
                )
            })
            .collect();
        writeln!(
            out,
            "  M commits/s per {slice_ms:.0} ms slice: {}",
            line.join(" | ")
        )?;
    }
    writeln!(
        out,
        "\nfinal voters {:?}: journals {} ({} entries each), acknowledged writes missing on one of them: {}",
        report.final_voters,
        if report.diverged.is_empty() {
            "identical".to_owned()
        } else {
            format!("differ on {:?}", report.diverged)
        },
        report.journal_entries,
        report.lost
    )?;
    drop(data);
    if report.lost > 0 || !report.diverged.is_empty() {
        return Err(Failure::Run(io::Error::other(
            "an acknowledged write is missing, or the final voters' journals differ",
        )));
    }
    Ok(())
}

/// `bench --connect`: pipelined puts to a running service, then one client alone beside the
/// loopback round trip and this machine's `fdatasync`.
pub fn run_remote(args: &BenchArgs, stop: &Stop) -> Result<(), Failure> {
    let addrs = &args.connect.as_ref().expect("checked by the caller").0;
    if args.tls_dir.is_none() && !args.insecure {
        return Err(Failure::Setup(
            "bench --connect needs --tls-dir DIR (the servers' CA and a client certificate) or \
             --insecure (servers started with --insecure)"
                .into(),
        ));
    }
    let security = super::args::ClientSecurity {
        tls_dir: args.tls_dir.clone(),
        insecure: args.insecure,
    };
    let tls = super::service::client_tls(&security, zeroraft_transport::tcp::ClientRole::Client)?;
    let options = remote::Options {
        in_flight: args.clients as usize,
        connections: args.connections,
        payload: args.payload,
        duration: Duration::from_secs(args.seconds),
        keys: 1000,
        tls,
    };
    let mut before = 0;
    let mut failed = None;
    let report = remote::run(addrs, &options, |commits, elapsed| {
        if stop.is_requested() {
            return ControlFlow::Break(());
        }
        let line = writeln!(
            io::stderr().lock(),
            "t={:>4.0}s  {:>8.3} M puts/s this second  {commits:>11} in all",
            elapsed.as_secs_f64(),
            (commits - before) as f64 / 1e6
        );
        before = commits;
        match line {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        }
    })
    .map_err(|e| Failure::Run(io::Error::other(e.to_string())))?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{} nodes, {} in flight over {} connections, {} B puts: {:.3} M commits/s, {:.3} µs client CPU per commit, latency p50 {:.1} µs p99 {:.1} µs ({} commits, {} refused, in {:.1} s)",
        addrs.len(),
        args.clients,
        args.connections.min(args.clients as usize),
        args.payload,
        report.rate() / 1e6,
        report.client_cpu.as_secs_f64() * 1e6 / report.commits.max(1) as f64,
        report.latency_us(0.5),
        report.latency_us(0.99),
        report.commits,
        report.refused,
        report.elapsed.as_secs_f64()
    )?;
    if stop.is_requested() {
        return Ok(());
    }
    let one = remote::Options {
        in_flight: 1,
        connections: 1,
        duration: Duration::from_secs(args.seconds.min(5)),
        ..options
    };
    let single = remote::run(addrs, &one, |_, _| {
        if stop.is_requested() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .map_err(|e| Failure::Run(io::Error::other(e.to_string())))?;
    let rtt = remote::loopback_rtt(2000)?;
    writeln!(
        out,
        "one client: latency p50 {:.1} µs p99 {:.1} µs ({} commits); loopback TCP round trip p50 {:.1} µs, measured now",
        single.latency_us(0.5),
        single.latency_us(0.99),
        single.commits,
        rtt.as_secs_f64() * 1e6
    )?;
    // The bound a durable one-client put has beside the round trip, when the servers keep their
    // logs on this machine's disk (as scripts/cluster-bench.sh runs them): measured after the
    // load, so that it does not share the disk with their syncs.
    let dir = std::env::temp_dir();
    match zeroraft_harness::load::fdatasync_median(&dir, FDATASYNC_SAMPLES) {
        Ok(median) => writeln!(
            out,
            "disk here: fdatasync median {:.1} µs ({FDATASYNC_SAMPLES} appends of 4 KiB to {}, each synced, after the run)",
            median.as_secs_f64() * 1e6,
            dir.display()
        )?,
        Err(e) => writeln!(
            out,
            "disk here: cannot sync a file in {}: {e}",
            dir.display()
        )?,
    }
    Ok(())
}
