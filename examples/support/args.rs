//! The tiny argument parsing the examples share: `--name value` pairs of whole numbers.

use std::time::Duration;

/// The value of `--name` as a whole number, or `default` when absent. Exits with status 2 and a
/// message when the value is missing or not a whole number.
pub fn number(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        None => default,
        Some(i) => match args.get(i + 1).map(|v| v.parse::<u64>()) {
            Some(Ok(v)) => v,
            _ => {
                eprintln!("{name} needs a non-negative integer");
                std::process::exit(2);
            }
        },
    }
}

/// The value of `--spin-us` (microseconds) as a duration, or `default` when absent; exits as
/// [`number`] does.
pub fn spin_us(default: Duration) -> Duration {
    Duration::from_micros(number("--spin-us", default.as_micros() as u64))
}
