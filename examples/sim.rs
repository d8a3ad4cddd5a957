//! Runs the deterministic simulator by hand.
//!
//! ```text
//! cargo run --release --example sim -- --seeds 10000            # many seeds, progress on stderr
//! cargo run --release --example sim -- --replay 1234            # one seed, every event on stdout
//! ```
//!
//! Options: `--start S` (first seed, default 0), `--jobs J` (threads, default 1), `--nodes N`
//! and `--ticks T` (fix the cluster size, 2 to 63, and the fault phase length instead of drawing
//! them), `--crash-every MS` (fix the mean time between crashes, 0 for none),
//! `--snapshot-every N` (fix the entries applied between two snapshots, 0 for none),
//! `--file-storage on|off` (run every node on the write-ahead log, power-cut at every crash, or
//! none, instead of drawing it), `--members on|off` (an operator changes the members of every
//! cluster in the fault phase, or of none, instead of a quarter of the seeds; the counts of the
//! changes are printed),
//! `--pre-vote`, `--check-quorum` and `--no-op` (run
//! every core with PreVote, CheckQuorum, a leader no-op), `--reads` (clients also read, checked),
//! `--transfers` (clients ask leaders to transfer leadership, checked and counted), `--rejoin`
//! (only rejoin faults, counted), `--keep-going` (do not stop at the first violation).
//!
//! It runs the core as every node runs it. The classic bugs the checker must catch are
//! switched on only by the simulator's own tests (`sim/src/bugs.rs`): no example, benchmark or
//! binary can build a core with them.

use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use zeroraft_sim::{MAX_NODES, MIN_NODES, MembershipCounts, Options, PowerLoss, Simulation};

struct Args {
    seeds: u64,
    start: u64,
    jobs: usize,
    replay: Option<u64>,
    keep_going: bool,
    options: Options,
}

const USAGE: &str = "\
Usage: sim [--seeds N] [--start S] [--jobs J] [--nodes N] [--ticks T] [--crash-every MS]
           [--snapshot-every N] [--file-storage on|off] [--members on|off] [--pre-vote]
           [--check-quorum] [--no-op] [--reads] [--transfers] [--rejoin] [--keep-going]
       sim --replay SEED [--nodes N] [--ticks T] [--crash-every MS] [--snapshot-every N]
           [--file-storage on|off] [--members on|off] [--pre-vote] [--check-quorum] [--no-op]
           [--reads] [--transfers] [--rejoin]

  --seeds N       how many seeds to run (default 1000), with a progress line on stderr
  --start S       first seed (default 0)
  --jobs J        threads (default 1)
  --nodes N       fix the cluster size (2 to 63) instead of drawing it (3, 5 or 7) from the seed;
                  outside 3 to 7, split votes may outlast the heal phase's 100 election timeouts
  --ticks T       fix the fault phase's length in ticks instead of drawing it
  --crash-every MS
                  fix the mean time between crashes in milliseconds (0: no crashes) instead of
                  drawing it (no crashes in half of the seeds)
  --snapshot-every N
                  fix how many entries each node applies between two snapshots (0: none)
                  instead of drawing it (none in a third of the seeds)
  --file-storage on|off
                  run every node on the write-ahead log on a simulated file system, whose
                  power each crash cuts, or none, instead of drawing it (in half of the seeds
                  with crashes); prints what the logs went through
  --members on|off
                  an operator adds, promotes and removes nodes (the leader too) of every
                  cluster in the fault phase, built with more nodes than vote at first, or of
                  none, instead of drawing it (in a quarter of the seeds); prints the counts
  --pre-vote      run every core with PreVote
  --check-quorum  run every core with CheckQuorum, and check that cut-off leaders step down
  --no-op         run every core with a leader no-op entry
  --reads         clients also ask for linearizable reads (lease reads too with
                  --check-quorum); every confirmed read is checked; prints the counts
  --transfers     clients now and then ask the leader to transfer its leadership; every
                  transfer must end within an election timeout; prints the counts
  --rejoin        only rejoin faults (a follower cut off, then healed) on a reliable network;
                  prints how often a rejoin raised a term
  --keep-going    do not stop at the first violation
  --replay SEED   run one seed and print every event";

fn parse() -> Result<Args, String> {
    let mut args = Args {
        seeds: 1000,
        start: 0,
        jobs: 1,
        replay: None,
        keep_going: false,
        options: Options::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--seeds" => args.seeds = number(value()?)?,
            "--start" => args.start = number(value()?)?,
            "--jobs" => args.jobs = number(value()?)?.max(1) as usize,
            "--replay" => args.replay = Some(number(value()?)?),
            "--nodes" => args.options.nodes = Some(number(value()?)? as usize),
            "--ticks" => args.options.fault_ticks = Some(number(value()?)?),
            "--crash-every" => {
                args.options.crash_interval = Some(number(value()?)?.saturating_mul(1_000_000));
            }
            "--snapshot-every" => args.options.snapshot_every = Some(number(value()?)?),
            "--file-storage" => {
                args.options.file_storage = match value()?.as_str() {
                    "on" => Some(true),
                    "off" => Some(false),
                    other => return Err(format!("--file-storage {other}: on or off")),
                };
            }
            "--members" => {
                args.options.members = match value()?.as_str() {
                    "on" => Some(true),
                    "off" => Some(false),
                    other => return Err(format!("--members {other}: on or off")),
                };
            }
            "--pre-vote" => args.options.pre_vote = true,
            "--check-quorum" => args.options.check_quorum = true,
            "--rejoin" => args.options.rejoin = true,
            "--no-op" => args.options.no_op = true,
            "--reads" => args.options.reads = true,
            "--transfers" => args.options.transfers = true,
            "--keep-going" => args.keep_going = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown option {flag}\n\n{USAGE}")),
        }
    }
    if let Some(n) = args.options.nodes
        && !(MIN_NODES..=MAX_NODES).contains(&n)
    {
        return Err(format!(
            "--nodes {n}: the simulator runs clusters of {MIN_NODES} to {MAX_NODES} nodes"
        ));
    }
    Ok(args)
}

/// The progress line, without its leading carriage return.
fn progress(done: u64, seeds: u64, violations: u64, secs: f64) -> String {
    format!(
        "seeds done {done}/{seeds}  {:.1} seeds/s  violations {violations}",
        done as f64 / secs
    )
}

fn replay(seed: u64, args: &Args) -> ExitCode {
    let options = Options {
        trace: true,
        ..args.options.clone()
    };
    let sim = Simulation::new(seed, &options);
    println!("seed {seed}: {}", sim.scenario());
    let report = sim.run();
    for event in &report.trace {
        println!("{event}");
    }
    println!(
        "{} events, trace hash {:016x}",
        report.events, report.trace_hash
    );
    if options.rejoin {
        println!(
            "{} rejoins of a stable cluster: {} raised the cut-off node's term, {} the cluster's",
            report.rejoins, report.isolated_term_raises, report.rejoin_term_raises
        );
    }
    print_counts(&options, report.reads, report.transfers);
    print_power_loss(1, &report.power_loss);
    print_membership(
        u64::from(sim_members(&report.membership)),
        &report.membership,
    );
    match report.outcome {
        Ok(c) => {
            println!(
                "converged {} ms after the faults stopped: leader {} in term {}, commit index {}",
                c.heal_took / 1_000_000,
                c.leader,
                c.term,
                c.commit_index
            );
            ExitCode::SUCCESS
        }
        Err(v) => {
            println!("{v}");
            ExitCode::FAILURE
        }
    }
}

/// The read and transfer counts, for the options that produce them.
fn print_counts(options: &Options, reads: [u64; 3], transfers: [u64; 3]) {
    if options.reads {
        let [asked, confirmed, lease] = reads;
        println!("{asked} reads asked for: {confirmed} confirmed, {lease} of them under a lease");
    }
    if options.transfers {
        let [started, completed, abandoned] = transfers;
        println!(
            "{started} leadership transfers: {completed} made their target leader, {abandoned} \
             abandoned"
        );
    }
}

/// Whether a run changed its members (asked for a change at least once, or found no leader to
/// ask).
fn sim_members(m: &MembershipCounts) -> bool {
    m.asked + m.no_leader > 0
}

/// What became of the membership changes, if `seeds` of the seeds run had them.
fn print_membership(seeds: u64, m: &MembershipCounts) {
    if seeds == 0 {
        return;
    }
    let [not_leader, in_progress, transfer, not_caught_up, invalid] = m.refused;
    println!(
        "{seeds} seed(s) with membership changes: {} asked of a leader ({} with no leader to \
         ask): {} started ({} removing the leader asked), {} in force already, refused: {} not \
         leader, {} change under way, {} transfer under way, {} learner not caught up, {} \
         invalid; {} configuration entries committed; {} nodes stopped after their removal, {} \
         added again",
        m.asked,
        m.no_leader,
        m.started,
        m.leader_removals,
        m.in_force,
        not_leader,
        in_progress,
        transfer,
        not_caught_up,
        invalid,
        m.configs_committed,
        m.retired,
        m.readded
    );
}

/// What the write-ahead logs went through, if `seeds` of the seeds run ran on one.
fn print_power_loss(seeds: u64, p: &PowerLoss) {
    if seeds == 0 {
        return;
    }
    println!(
        "{seeds} seed(s) on the write-ahead log, {} nodes: {} writes persisted; {} crashes \
         (power cuts), {} in the middle of a persist ({} finished first); the write under way \
         kept whole {}, in part {}, lost {}; {} opens cut short ({} by a power cut); files \
         torn {}, dropped {}; directory operations lost {}",
        p.nodes,
        p.persisted,
        p.crashes,
        p.mid_write,
        p.finished,
        p.kept,
        p.prefix,
        p.lost,
        p.open_crashes,
        p.open_power_cuts,
        p.files_torn,
        p.files_dropped,
        p.dir_ops_lost
    );
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("sim: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(seed) = args.replay {
        return replay(seed, &args);
    }
    let next = AtomicU64::new(args.start);
    let end = args.start + args.seeds;
    let done = AtomicU64::new(0);
    let violations = AtomicU64::new(0);
    // With --rejoin: rejoins of a stable cluster, and those that raised a term (see replay).
    let rejoins = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
    // With --reads and --transfers: their counts (see `Report::reads`, `Report::transfers`).
    let reads = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
    let transfers = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
    // Seeds on the write-ahead log, and what their logs went through; cold: once per seed.
    let power_loss = Mutex::new((0, PowerLoss::default()));
    // Seeds with membership changes, and what became of the changes; cold: once per seed.
    let membership = Mutex::new((0, MembershipCounts::default()));
    let stop = AtomicBool::new(false);
    let first: Mutex<Option<String>> = Mutex::new(None); // cold: written once per violation
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..args.jobs {
            s.spawn(|| {
                while !stop.load(Relaxed) {
                    let seed = next.fetch_add(1, Relaxed);
                    if seed >= end {
                        break;
                    }
                    let report = Simulation::new(seed, &args.options).run();
                    let counts = [
                        report.rejoins,
                        report.isolated_term_raises,
                        report.rejoin_term_raises,
                    ];
                    for (sum, count) in rejoins.iter().zip(counts) {
                        sum.fetch_add(count, Relaxed);
                    }
                    for (sum, count) in reads.iter().zip(report.reads) {
                        sum.fetch_add(count, Relaxed);
                    }
                    for (sum, count) in transfers.iter().zip(report.transfers) {
                        sum.fetch_add(count, Relaxed);
                    }
                    if report.power_loss.nodes > 0 {
                        let mut power_loss = power_loss.lock().expect("not poisoned");
                        power_loss.0 += 1;
                        power_loss.1.add(&report.power_loss);
                    }
                    if sim_members(&report.membership) {
                        let mut membership = membership.lock().expect("not poisoned");
                        membership.0 += 1;
                        membership.1.add(&report.membership);
                    }
                    if let Err(v) = report.outcome {
                        violations.fetch_add(1, Relaxed);
                        let mut first = first.lock().expect("not poisoned");
                        if args.keep_going {
                            eprintln!("\nseed {seed}: {} violated", v.invariant.name());
                        }
                        if first.is_none() {
                            *first = Some(v.to_string());
                        }
                        if !args.keep_going {
                            stop.store(true, Relaxed);
                        }
                    }
                    done.fetch_add(1, Relaxed);
                }
            });
        }
        let mut last_print = Instant::now();
        while done.load(Relaxed) < args.seeds && !stop.load(Relaxed) {
            if last_print.elapsed() >= Duration::from_millis(500) {
                last_print = Instant::now();
                let secs = started.elapsed().as_secs_f64();
                let line = progress(
                    done.load(Relaxed),
                    args.seeds,
                    violations.load(Relaxed),
                    secs,
                );
                eprint!("\r{line}   ");
            }
            std::thread::sleep(Duration::from_millis(50)); // progress-line refresh period
        }
    });
    let n = done.load(Relaxed);
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "\r{}  ({secs:.1} s, {} job(s), {:.0} seed-runs/min/core)",
        progress(n, args.seeds, violations.load(Relaxed), secs),
        args.jobs,
        n as f64 / secs * 60.0 / args.jobs as f64
    );
    if args.options.rejoin {
        let [rejoins, isolated, raised] = rejoins.map(AtomicU64::into_inner);
        println!(
            "{rejoins} rejoins of a stable cluster: {isolated} raised the cut-off node's term, \
             {raised} the cluster's"
        );
    }
    print_counts(
        &args.options,
        reads.map(AtomicU64::into_inner),
        transfers.map(AtomicU64::into_inner),
    );
    let (on_the_log, power_loss) = power_loss.into_inner().expect("not poisoned");
    print_power_loss(on_the_log, &power_loss);
    let (with_members, membership) = membership.into_inner().expect("not poisoned");
    print_membership(with_members, &membership);
    match first.into_inner().expect("not poisoned") {
        Some(report) => {
            println!("{report}");
            ExitCode::FAILURE
        }
        None => ExitCode::SUCCESS,
    }
}
