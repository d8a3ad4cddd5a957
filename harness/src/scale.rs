//! How large the long test variants run: smaller by default, so that `cargo test --workspace
//! --release` finishes in minutes, and in full with `ZERORAFT_LONG=1`, which CI sets for a
//! second pass.
//!
//! Each long variant (simulation seeds, crash rounds, Jepsen-style durations, property cases)
//! asks [`size`] for its count with two values: the default one and the full one. A variable of
//! its own, if set to a number, overrides both, for a one-off run of any size.

/// The variable that asks for every long variant in full: set to anything but empty or `0`.
pub const LONG: &str = "ZERORAFT_LONG";

/// Whether [`LONG`] asks for the long variants in full.
pub fn long() -> bool {
    std::env::var_os(LONG).is_some_and(|v| !v.is_empty() && v != "0")
}

/// How many (seeds, rounds, seconds, cases) a long variant runs: the number in the variable
/// `name` if it holds one; otherwise `full` with [`LONG`] set, `default` without.
///
/// ```
/// use zeroraft_harness::scale;
///
/// // Neither variable is set in a plain test run.
/// let seeds = scale::size("ZERORAFT_EXAMPLE_SEEDS", 1_000, 10_000);
/// assert!(seeds == 1_000 || scale::long());
/// ```
pub fn size(name: &str, default: u64, full: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(if long() { full } else { default })
}
