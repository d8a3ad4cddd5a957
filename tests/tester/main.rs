//! The 6.824 tester's suites, step for step with its constants (2A leader election, 2B
//! agreement, 2C persistence, 2D log compaction), and agreement on an unreliable network beyond
//! them, on in-process clusters of the harness.
//!
//! One test binary with a harness of its own (`libtest-mimic`, which takes the built-in
//! harness's arguments: filters, `--exact`, `--list`, `--test-threads`): these tests wait on
//! election timeouts and the tester's polling, hardly on the CPU (the longest, 53 s of wall
//! time, uses 0.3 s of CPU), so by default it runs six at a time, longest first, and the binary
//! takes about as long as its longest test. `--test-threads 1` runs them one by one.
//! `cargo test --release --test tester snapshot_2d` runs one suite.
//!
//! Every test is a function listed below; a function of a suite that is not listed is dead code,
//! which the lints refuse; the test attribute would not run here (`.ci/run` checks none is used).

use libtest_mimic::{Arguments, Trial};

mod agreement_2b;
mod election_2a;
mod persist_2c;
mod snapshot_2d;
mod unreliable;

/// How many tests run at once unless `--test-threads` says otherwise.
const THREADS: usize = 6;

/// The trials named `module::test`, in the order given.
macro_rules! trials {
    ($($module:ident :: $test:ident),* $(,)?) => {
        vec![$(Trial::test(concat!(stringify!($module), "::", stringify!($test)), || {
            $module::$test();
            Ok(())
        })),*]
    };
}

fn main() {
    let mut args = Arguments::from_args();
    args.test_threads = args.test_threads.or(Some(THREADS));
    // Longest first (as measured alone on a two-core machine), so that the long ones overlap.
    let trials = trials![
        snapshot_2d::snapshot_install_unreliable_2d,
        snapshot_2d::snapshot_install_2d,
        persist_2c::figure8_2c,
        snapshot_2d::snapshot_install_unreliable_crash_2d,
        persist_2c::figure8_unreliable_2c,
        snapshot_2d::snapshot_install_crash_2d,
        unreliable::agreement_despite_unreliable_network_and_churn,
        persist_2c::reliable_churn_2c,
        unreliable::agreement_despite_unreliable_network_and_churn_with_production_settings,
        agreement_2b::backup_2b,
        unreliable::agreement_with_long_reordering_of_replies,
        agreement_2b::rejoin_2b,
        election_2a::re_election_2a,
        snapshot_2d::snapshot_all_crash_2d,
        agreement_2b::fail_agree_2b,
        agreement_2b::fail_no_agree_2b,
        persist_2c::persist1_2c,
        election_2a::initial_election_2a,
        agreement_2b::count_2b,
        persist_2c::unreliable_agree_2c,
        snapshot_2d::snapshot_init_2d,
        snapshot_2d::snapshot_basic_2d,
        agreement_2b::rpc_bytes_2b,
        agreement_2b::concurrent_starts_2b,
        agreement_2b::basic_agree_2b,
    ];
    libtest_mimic::run(&args, trials).exit();
}
