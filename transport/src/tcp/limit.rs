//! Warnings an outsider can provoke, rate-limited: whoever can open connections to a port can
//! make it refuse them as fast as it likes, and a log line per refusal would let them fill the
//! disk and drown what matters.
//!
//! A [`WarnLimit`] lets one warning of its kind through per interval and counts the ones it holds
//! back; the next warning let through reports that count, so nothing goes unreported, only
//! unrepeated.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One kind of warning, let through at most once per interval. Cold path: a `Mutex` is fine.
#[derive(Debug)]
pub struct WarnLimit {
    interval: Duration,
    /// When a warning was last let through (`None`: never), and how many were held back since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl WarnLimit {
    /// At most one warning per `interval`.
    pub const fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// At most one warning a second.
    pub const fn per_second() -> Self {
        Self::new(Duration::from_secs(1))
    }

    /// Whether a warning of this kind may be written now: `Some(n)` with the number of warnings
    /// held back since the last one written, or `None` if this one is held back (and counted).
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    /// [`WarnLimit::allow`] at time `now`.
    pub fn allow_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (last, held) = &mut *state;
        match *last {
            Some(at) if now.saturating_duration_since(at) < self.interval => {
                *held += 1;
                None
            }
            _ => {
                *last = Some(now);
                Some(std::mem::take(held))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_interval_with_the_count_of_those_held_back() {
        let limit = WarnLimit::new(Duration::from_secs(1));
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // (time in ms, expected)
        let cases = [
            (0, Some(0)),
            (1, None),
            (500, None),
            (999, None),
            (1000, Some(3)),
            (1500, None),
            (5000, Some(1)),
            (5001, None),
        ];
        for (case, (at, expected)) in cases.into_iter().enumerate() {
            assert_eq!(limit.allow_at(ms(at)), expected, "case {case}");
        }
    }
}
