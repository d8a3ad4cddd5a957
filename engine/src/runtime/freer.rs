//! The freer: drops the entries a compaction took out of the log a slice at a time, between the
//! node's rounds, and hands the emptied vector back for the next compaction.
//!
//! A compaction every 100 000 entries drops 100 000 entries at once: a pass over several
//! megabytes, each entry's payload released, which in one piece is a pause of a few hundred
//! microseconds in which nothing is sent, acknowledged or applied. With a spare vector
//! ([`crate::core::Core::give_log_buffer`]) the log moves the few entries it keeps into the
//! spare and leaves the old vector to [`crate::core::Core::take_retired_entries`]; the node
//! passes it here ([`Freer::retire`]) and, after each round, drops a slice of it
//! ([`Freer::free`]): at least [`MIN_SLICE`] entries, and twice as many as the round added to
//! the log, so that the old vector is empty well before the log holds enough for the next
//! compaction. Once empty, with capacity far beyond what it held given back, it is returned for
//! the log's next compaction, so the two vectors take turns and compaction allocates nothing
//! once both have grown to the log's usual length.
//!
//! The slices are dropped on the node's own thread, in the rounds it runs anyway, on purpose.
//! Handed to a thread of its own, the whole vector was dropped at once all the same: on a
//! machine whose cores the nodes keep busy, waking that thread let the scheduler run it in the
//! node's place for as long as the drop took (200 – 500 µs at 100 000 entries, measured around
//! the hand-over), so the pause stayed, only moved; sliced, no round carries more than its own
//! share (BENCHMARKS.md, "Compacted entries dropped a slice a round"). A node that falls idle
//! right after a compaction keeps the rest until its next rounds (a tick, a message): at most
//! one compaction's entries, a hundred rounds at the least slice.

use crate::core::Entry;

/// The fewest entries [`Freer::free`] drops in a round, however little the round added: a
/// node with little to do still empties the vector of a compaction of 100 000 entries in a
/// hundred rounds.
pub(super) const MIN_SLICE: usize = 1024;

/// A node's freer. See the module docs.
#[derive(Debug, Default)]
pub(super) struct Freer {
    /// The entries of the last compaction still to drop, if any.
    retired: Option<Vec<Entry>>,
    /// How many entries it held when retired.
    held: usize,
}

impl Freer {
    /// Nothing to drop yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes `entries` (a vector a compaction left behind), to drop a slice at a time. One
    /// retired while the previous still holds entries makes that one's rest be dropped at once
    /// (the log retires a vector only with the spare the previous one became, so this does
    /// not happen while the node keeps to the protocol of the module docs).
    pub fn retire(&mut self, entries: Vec<Entry>) {
        self.held = entries.len();
        self.retired = Some(entries);
    }

    /// Drops the last `added * 2` entries of the retired vector, at least [`MIN_SLICE`]; `added`
    /// is how many entries the round added to the log. Returns the vector once it is empty,
    /// with capacity far beyond the length it had given back (see [`empty`]).
    pub fn free(&mut self, added: u64) -> Option<Vec<Entry>> {
        let entries = self.retired.as_mut()?;
        let slice = usize::try_from(added)
            .unwrap_or(usize::MAX)
            .saturating_mul(2)
            .max(MIN_SLICE);
        entries.truncate(entries.len().saturating_sub(slice));
        if !entries.is_empty() {
            return None;
        }
        let held = self.held;
        self.retired.take().map(|entries| empty(entries, held))
    }
}

/// `entries`, empty, with capacity beyond four times `held` (what it held when retired, at
/// least 1024) given back, twice that kept: a log that once grew long and now compacts sooner
/// does not keep the room it no longer needs.
fn empty(mut entries: Vec<Entry>, held: usize) -> Vec<Entry> {
    let held = held.max(1024);
    entries.clear();
    if entries.capacity() > 4 * held {
        entries.shrink_to(2 * held);
    }
    entries
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn entries(n: usize) -> Vec<Entry> {
        (0..n)
            .map(|i| Entry::new(1, Bytes::from(vec![i as u8; 8])))
            .collect()
    }

    #[test]
    fn a_retired_vector_is_dropped_a_slice_a_round_and_comes_back_empty_with_its_capacity() {
        let mut freer = Freer::new();
        assert!(freer.free(0).is_none(), "nothing retired yet");
        let retired = entries(5000);
        let capacity = retired.capacity();
        freer.retire(retired);
        // Rounds that added nothing drop MIN_SLICE each; one that added 1500 drops 3000.
        assert!(freer.free(0).is_none());
        assert!(freer.free(1500).is_none());
        assert_eq!(
            freer.retired.as_ref().map(Vec::len),
            Some(5000 - MIN_SLICE - 3000)
        );
        let emptied = freer.free(0).expect("the last slice empties it");
        assert!(emptied.is_empty());
        assert_eq!(
            emptied.capacity(),
            capacity,
            "room for the next compaction kept"
        );
        assert!(freer.retired.is_none());
        assert!(freer.free(u64::MAX).is_none(), "one vector, returned once");
    }

    #[test]
    fn capacity_far_beyond_what_was_held_is_given_back() {
        let mut freer = Freer::new();
        let mut v = entries(2000);
        v.reserve(100_000);
        freer.retire(v);
        let emptied = freer.free(u64::MAX).expect("one slice empties it");
        assert!(emptied.is_empty());
        assert!(
            (4000..=8000).contains(&emptied.capacity()),
            "capacity {} after holding 2000 entries",
            emptied.capacity()
        );
    }

    #[test]
    fn the_payloads_are_released_by_the_time_the_vector_comes_back() {
        let payload = Bytes::from(vec![7u8; 64]);
        let mut freer = Freer::new();
        freer.retire((0..3000).map(|_| Entry::new(1, payload.clone())).collect());
        assert!(freer.free(100).is_none());
        assert!(freer.free(600).is_none());
        assert_eq!(
            freer.retired.as_ref().map(Vec::len),
            Some(3000 - MIN_SLICE - 1200)
        );
        // Still shared with the entries not yet dropped.
        let payload = payload.try_into_mut().expect_err("entries still hold it");
        assert!(freer.free(0).expect("the last slice").is_empty());
        assert!(
            payload.try_into_mut().is_ok(),
            "every retired entry released its payload"
        );
    }
}
