//! The replicated log held in memory: the entries after the last snapshot.
//!
//! Indices start at 1. The log keeps the entries after `offset`, the last index its snapshot
//! covers (0 without a snapshot), behind a sentinel slot for `offset` that holds that entry's
//! term. So `term(offset)` is known (`Some(0)` for index 0), and the consistency check of an
//! AppendEntries right after the snapshot needs no special case; indices below `offset` are
//! compacted away: `term` says `None` for them, as past the end.
//!
//! Invariant: terms never decrease along the log. Every leader appends only entries of its own
//! term, which is higher than any term it holds, and a follower's log is a prefix of some leader's
//! log followed by that leader's entries. This is what lets [`Log::first_index_of_term`] and
//! [`Log::last_index_of_term`] be binary searches (the fast backtracking of §5.3).
//!
//! Memory: compacting drops the covered entries (their payloads are released). A log compacted
//! regularly keeps room for about as many entries as it held at the last compaction: the
//! vector's capacity is given back only once it is more than four times that, so that a log
//! that fills up to the same length between compactions never returns its pages to the system
//! only to fault them in again (with three nodes in one process compacting every 100 000
//! entries, returning and refilling them took a tenth of the process's CPU, and the pause at
//! each compaction was over half a millisecond).
//!
//! Compacting off the caller's thread: a driver that gives the log a spare vector
//! ([`Log::give_spare`], through [`Core::give_log_buffer`](super::Core::give_log_buffer)) lets
//! a compaction that drops many entries move the few kept ones into it instead, and hand back
//! the old vector, the covered entries still in it ([`Log::take_retired`]): dropping them (a
//! pass over every covered entry and its payload) is then the driver's, on whatever thread it
//! likes, and the emptied vector comes back as the next spare. Without a spare the entries are
//! dropped in place, on the caller's thread.

use bytes::Bytes;

use super::invariants::{Violation, ensure};

pub use zeroraft_storage::{Entry, EntryKind};

/// The log: entries `offset + 1 ..= last_index`, behind a sentinel for `offset`.
#[derive(Clone, Debug)]
pub struct Log {
    /// The last index compacted into a snapshot (0 if none).
    offset: u64,
    /// `entries[i]` is the entry at index `offset + i`; `entries[0]` is the sentinel, holding the
    /// term of the entry at `offset` (0 if `offset` is 0) and no command.
    entries: Vec<Entry>,
    /// Invariant: the sum of the entries' command lengths.
    bytes: u64,
    /// An empty vector to move the kept entries into at the next compaction, if a driver gave
    /// one ([`Log::give_spare`]).
    spare: Option<Vec<Entry>>,
    /// The vector a compaction left behind, holding the entries it covered, until the driver
    /// takes it ([`Log::take_retired`]); dropped at the next compaction if it is still here.
    retired: Option<Vec<Entry>>,
}

/// A compaction that drops fewer entries than this drops them in place: moving the kept ones
/// and handing the old vector over would cost about as much.
const RETIRE_AT_LEAST: usize = 4096;

/// The command bytes of `entries`.
fn command_bytes(entries: &[Entry]) -> u64 {
    entries.iter().map(|e| e.command.len() as u64).sum()
}

impl Default for Log {
    fn default() -> Self {
        Self::new()
    }
}

/// The slot for `offset`.
fn sentinel(term: u64) -> Entry {
    Entry::new(term, Bytes::new())
}

impl Log {
    /// An empty log.
    pub fn new() -> Self {
        Self::from_entries(0, 0, Vec::new())
    }

    /// A log holding `entries` at indices `offset + 1`, `offset + 2`, ..., after a snapshot that
    /// covers everything up to `offset`, whose last entry has term `offset_term` (as a storage
    /// recovered them; `0, 0` without a snapshot).
    ///
    /// # Panics
    ///
    /// If a term decreases along `entries`, or the first is below `offset_term`.
    pub fn from_entries(offset: u64, offset_term: u64, mut entries: Vec<Entry>) -> Self {
        entries.insert(0, sentinel(offset_term));
        assert!(
            entries.windows(2).all(|w| w[0].term <= w[1].term),
            "a log whose terms decrease"
        );
        let bytes = command_bytes(&entries);
        Self {
            offset,
            entries,
            bytes,
            spare: None,
            retired: None,
        }
    }

    /// The last index compacted into a snapshot (0 if none): entries at or below it are gone.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The index of the first entry the log holds (`offset() + 1`).
    pub fn first_index(&self) -> u64 {
        self.offset + 1
    }

    /// Index of the last entry (the snapshot's, or 0, if the log holds none after it).
    pub fn last_index(&self) -> u64 {
        self.offset + (self.entries.len() - 1) as u64
    }

    /// Term of the last entry (the snapshot's, or 0, if the log holds none after it).
    pub fn last_term(&self) -> u64 {
        self.entries[self.entries.len() - 1].term
    }

    /// Number of entries held (after the snapshot).
    pub fn len(&self) -> usize {
        self.entries.len() - 1
    }

    /// Bytes of commands the log holds.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether the log holds no entry after its snapshot.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The position of `index` in `entries`, if the log knows its term (`offset ..= last`).
    fn slot(&self, index: u64) -> Option<usize> {
        let slot = usize::try_from(index.checked_sub(self.offset)?).ok()?;
        (slot < self.entries.len()).then_some(slot)
    }

    /// Term of the entry at `index`: known for the snapshot's last index (`Some(0)` for 0) and
    /// every index after it up to the last; `None` before (compacted) or past the end.
    pub fn term(&self, index: u64) -> Option<u64> {
        self.slot(index).map(|slot| self.entries[slot].term)
    }

    /// The entry at `index`, if the log holds it (not compacted, not past the end).
    pub fn entry(&self, index: u64) -> Option<&Entry> {
        match self.slot(index)? {
            0 => None,
            slot => Some(&self.entries[slot]),
        }
    }

    /// Entries `from..=to`, clamped to what the log holds. Empty if `from > to` or `from` is past
    /// the end.
    pub fn slice(&self, from: u64, to: u64) -> &[Entry] {
        let from = (from.max(self.first_index()) - self.offset) as usize;
        let to = ((to.min(self.last_index()) - self.offset.min(to)) as usize).saturating_add(1);
        if from >= to {
            &[]
        } else {
            &self.entries[from..to]
        }
    }

    /// Appends one entry at `last_index() + 1`.
    ///
    /// # Panics
    ///
    /// If `entry.term` is lower than the last term (terms never decrease along the log).
    pub fn push(&mut self, entry: Entry) {
        self.assert_may_follow(entry.term);
        self.bytes += entry.command.len() as u64;
        self.entries.push(entry);
    }

    /// Appends `entries[skip..]`, moving them out (no payload is copied or reference-counted),
    /// and leaves `entries` empty with its capacity, for reuse.
    ///
    /// # Panics
    ///
    /// If the first appended entry's term is lower than the last term.
    pub fn append(&mut self, entries: &mut Vec<Entry>, skip: usize) {
        if let Some(first) = entries.get(skip) {
            self.assert_may_follow(first.term);
            debug_assert!(
                entries[skip..].windows(2).all(|w| w[0].term <= w[1].term),
                "appending entries whose terms decrease, after index {}",
                self.last_index()
            );
            self.bytes += command_bytes(&entries[skip..]);
            self.entries.extend(entries.drain(skip..));
        }
        entries.clear();
    }

    /// Panics unless an entry of `term` may follow the last entry (terms never decrease).
    #[track_caller]
    fn assert_may_follow(&self, term: u64) {
        assert!(
            term >= self.last_term(),
            "appending an entry of term {} after term {} at index {}",
            term,
            self.last_term(),
            self.last_index()
        );
    }

    /// Removes every entry at `from` and after. Never removes the snapshot's sentinel.
    pub fn truncate_from(&mut self, from: u64) {
        let from = from.max(self.first_index());
        if from <= self.last_index() {
            let keep = (from - self.offset) as usize;
            self.bytes -= command_bytes(&self.entries[keep..]);
            self.entries.truncate(keep);
        }
    }

    /// Drops the entries up to and including `index`, which a snapshot now covers; the entries
    /// after it stay. Does nothing unless `offset() < index <= last_index()`.
    ///
    /// With a spare vector ([`Log::give_spare`]) and at least a few thousand entries to drop,
    /// the kept entries move into the spare and the old vector, holding the dropped ones, waits
    /// for [`Log::take_retired`]; otherwise they are dropped here.
    pub fn compact_to(&mut self, index: u64) {
        let Some(slot) = self.slot(index).filter(|&slot| slot > 0) else {
            return;
        };
        let term = self.entries[slot].term;
        // The room the next interval between compactions is likely to need.
        let peak = self.entries.len();
        let kept = peak - slot - 1;
        self.offset = index;
        self.retired = None; // not taken since the last compaction: dropped here after all
        if slot >= RETIRE_AT_LEAST
            && kept <= slot
            && let Some(mut fresh) = self.spare.take()
        {
            fresh.clear();
            fresh.reserve(peak);
            fresh.push(sentinel(term));
            fresh.extend(self.entries.drain(slot + 1..));
            self.bytes = command_bytes(&fresh);
            self.retired = Some(std::mem::replace(&mut self.entries, fresh));
            return;
        }
        if kept <= slot {
            self.bytes = command_bytes(&self.entries[slot + 1..]);
        } else {
            self.bytes -= command_bytes(&self.entries[..=slot]);
        }
        self.entries.drain(..slot);
        self.entries[0] = sentinel(term);
        if self.entries.capacity() > 4 * peak.max(1024) {
            self.entries.shrink_to(2 * peak.max(1024));
        }
    }

    /// Gives the log an empty vector (its contents are dropped) for a later compaction to move
    /// the kept entries into (see [`Log::compact_to`]). The log keeps one; another is dropped.
    pub fn give_spare(&mut self, mut spare: Vec<Entry>) {
        if self.spare.is_none() {
            spare.clear();
            self.spare = Some(spare);
        }
    }

    /// The vector the last compaction left behind, holding the entries it dropped from the log,
    /// if it moved the kept ones out (see [`Log::compact_to`]). Dropping it, and giving it back
    /// emptied ([`Log::give_spare`]), is the caller's.
    pub fn take_retired(&mut self) -> Option<Vec<Entry>> {
        self.retired.take()
    }

    /// Replaces the whole log with an empty one after a snapshot up to `index`, of `term` (a
    /// follower installing a snapshot that its log does not match).
    pub fn reset(&mut self, index: u64, term: u64) {
        self.bytes = 0;
        self.entries.clear();
        self.entries.push(sentinel(term));
        self.offset = index;
        if self.entries.capacity() > 4096 {
            self.entries.shrink_to(1024);
        }
    }

    /// The invariants that cost O(1): the sentinel holds no command, and the last term is not
    /// below the sentinel's (a consequence of terms never decreasing, which
    /// [`Log::check_entries`] checks whole).
    pub(super) fn check_invariants(&self) -> Result<(), Violation> {
        let sentinel = &self.entries[0];
        ensure!(
            sentinel.command.is_empty(),
            "the log's sentinel holds no command",
            offset = self.offset,
            len = sentinel.command.len(),
        );
        ensure!(
            self.last_term() >= sentinel.term,
            "terms never decrease along the log",
            offset = self.offset,
            offset_term = sentinel.term,
            last_index = self.last_index(),
            last_term = self.last_term(),
        );
        Ok(())
    }

    /// The invariants that take a pass over the log: terms never decrease along it, and
    /// `bytes` is the sum of the commands' lengths.
    pub(super) fn check_entries(&self) -> Result<(), Violation> {
        if let Some(i) = self.entries.windows(2).position(|w| w[1].term < w[0].term) {
            ensure!(
                false,
                "terms never decrease along the log",
                index = self.offset + i as u64 + 1,
                term = self.entries[i + 1].term,
                previous_term = self.entries[i].term,
            );
        }
        let sum = command_bytes(&self.entries);
        ensure!(
            self.bytes == sum,
            "the log's byte count is the sum of its commands' lengths",
            bytes = self.bytes,
            sum = sum,
        );
        Ok(())
    }

    /// Whether a log ending at (`last_index`, `last_term`) is at least as up to date as this one
    /// (§5.4.1): a later last term wins; with equal last terms, the longer log wins.
    pub fn is_up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// The first index holding an entry of `term`, or, if there is none, the first index holding
    /// a later term (or `last_index() + 1`). Never below `offset()`.
    pub fn first_index_of_term(&self, term: u64) -> u64 {
        self.offset + self.entries.partition_point(|e| e.term < term) as u64
    }

    /// The last index holding an entry of `term`, if the log knows one (at `offset()` or after).
    pub fn last_index_of_term(&self, term: u64) -> Option<u64> {
        let after = self.entries.partition_point(|e| e.term <= term);
        (after > 0 && self.entries[after - 1].term == term && term > 0)
            .then(|| self.offset + (after - 1) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(terms: &[u64]) -> Log {
        let mut log = Log::new();
        for &t in terms {
            log.push(Entry::new(t, Bytes::new()));
        }
        log
    }

    #[test]
    fn term_lookups() {
        let log = log_of(&[1, 1, 2, 4, 4, 4, 5]);
        let cases = [
            // (term, first_index_of_term, last_index_of_term)
            (1, 1, Some(2)),
            (2, 3, Some(3)),
            (3, 4, None),
            (4, 4, Some(6)),
            (5, 7, Some(7)),
            (6, 8, None),
            (0, 0, None),
        ];
        for (case, (term, first, last)) in cases.into_iter().enumerate() {
            assert_eq!(
                log.first_index_of_term(term),
                first,
                "case {case}: first index of term {term}"
            );
            assert_eq!(
                log.last_index_of_term(term),
                last,
                "case {case}: last index of term {term}"
            );
        }
    }

    #[test]
    fn slice_clamps() {
        let log = log_of(&[1, 1, 2]);
        let cases = [
            (1, 3, 3),
            (0, 3, 3),
            (2, 2, 1),
            (3, 9, 1),
            (4, 9, 0),
            (3, 2, 0),
        ];
        for (case, (from, to, len)) in cases.into_iter().enumerate() {
            assert_eq!(
                log.slice(from, to).len(),
                len,
                "case {case}: slice({from}, {to})"
            );
        }
    }

    #[test]
    fn up_to_date() {
        let log = log_of(&[1, 2, 2]);
        let cases = [
            ((3, 2), true),
            ((4, 2), true),
            ((2, 2), false),
            ((1, 3), true),
            ((9, 1), false),
        ];
        for (case, ((index, term), want)) in cases.into_iter().enumerate() {
            assert_eq!(
                log.is_up_to_date(index, term),
                want,
                "case {case}: ({index}, {term})"
            );
        }
    }

    #[test]
    fn truncate_keeps_sentinel() {
        let mut log = log_of(&[1, 2, 3]);
        log.truncate_from(2);
        assert_eq!(log.last_index(), 1);
        log.truncate_from(0);
        assert_eq!(log.last_index(), 0);
        assert_eq!(log.term(0), Some(0));
    }

    #[test]
    #[should_panic(expected = "appending an entry of term 1 after term 2")]
    fn terms_never_decrease() {
        let mut log = log_of(&[2]);
        log.push(Entry::new(1, Bytes::new()));
    }

    #[test]
    fn compaction_keeps_the_suffix_and_the_term_at_the_offset() {
        let mut log = log_of(&[1, 1, 2, 2, 3, 3]);
        log.compact_to(4);
        assert_eq!(
            (log.offset(), log.first_index(), log.last_index()),
            (4, 5, 6)
        );
        assert_eq!(log.len(), 2);
        let cases = [
            // (index, term, entry held)
            (3, None, false),
            (4, Some(2), false),
            (5, Some(3), true),
            (6, Some(3), true),
            (7, None, false),
        ];
        for (case, (index, term, held)) in cases.into_iter().enumerate() {
            assert_eq!(log.term(index), term, "case {case}: term({index})");
            assert_eq!(
                log.entry(index).is_some(),
                held,
                "case {case}: entry({index})"
            );
        }
        assert_eq!(log.slice(1, 9).len(), 2, "clamped to what is held");
        assert_eq!(log.slice(6, 6).len(), 1);
        assert_eq!(log.slice(2, 4).len(), 0);
        assert_eq!(log.first_index_of_term(2), 4, "never below the offset");
        assert_eq!(log.first_index_of_term(3), 5);
        assert_eq!(log.last_index_of_term(2), Some(4));
        assert_eq!(log.last_index_of_term(1), None, "compacted away");
        log.truncate_from(2);
        assert_eq!(log.last_index(), 4, "the snapshot's index stays");
        log.push(Entry::new(4, Bytes::new()));
        assert_eq!((log.last_index(), log.last_term()), (5, 4));
        log.compact_to(4); // not above the offset: nothing
        log.compact_to(9); // past the end: nothing
        assert_eq!((log.offset(), log.last_index()), (4, 5));
    }

    #[test]
    fn a_compaction_with_a_spare_moves_the_kept_entries_and_retires_the_rest() {
        let bytes = |n: usize| Bytes::from(vec![1u8; n]);
        let fill = |log: &mut Log, from: u64, to: u64| {
            for i in from..=to {
                log.push(Entry::new(1 + i / 5000, bytes(i as usize % 7)));
            }
        };
        let mut log = Log::new();
        fill(&mut log, 1, 10_000);
        // (case, spare given, compact to, want retired entries)
        let cases = [
            (0, false, 9_990, None),        // no spare: dropped in place
            (1, true, 12_000, None),        // fewer than RETIRE_AT_LEAST: in place
            (2, true, 19_990, Some(7_991)), // 7 990 dropped, and the old sentinel
            (3, false, 29_000, None),       // the spare was used, and none given since
        ];
        let mut next = 10_001;
        for (case, spare, to, retired) in cases {
            fill(&mut log, next, to + 10);
            next = to + 11;
            if spare {
                log.give_spare(Vec::with_capacity(16));
            }
            let want_bytes = command_bytes(log.slice(to + 1, log.last_index()));
            let want_term = log.term(to);
            let peak = log.entries.len();
            log.compact_to(to);
            assert_eq!(
                (log.offset(), log.len(), log.term(to)),
                (to, 10, want_term),
                "case {case}"
            );
            assert_eq!(
                log.bytes(),
                want_bytes,
                "case {case}: bytes of what is kept"
            );
            assert!(log.check_invariants().is_ok() && log.check_entries().is_ok());
            let taken = log.take_retired();
            assert_eq!(
                taken.as_ref().map(Vec::len),
                retired,
                "case {case}: retired"
            );
            assert!(
                log.entries.capacity() >= peak,
                "case {case}: room kept for the {peak} slots the log held, capacity {}",
                log.entries.capacity()
            );
            assert!(log.take_retired().is_none(), "case {case}: taken once");
        }
    }

    #[test]
    fn reset_leaves_an_empty_log_after_the_snapshot() {
        let mut log = log_of(&[1, 1, 2]);
        log.reset(10, 5);
        assert_eq!(
            (log.offset(), log.last_index(), log.last_term()),
            (10, 10, 5)
        );
        assert!(log.is_empty());
        assert_eq!(log.term(10), Some(5));
        assert_eq!(log.term(3), None);
        assert!(log.is_up_to_date(10, 5));
        assert!(!log.is_up_to_date(11, 4));
    }

    #[test]
    fn a_recovered_log_starts_after_its_snapshot() {
        let entries = vec![Entry::new(3, Bytes::from_static(b"a")); 3];
        let log = Log::from_entries(7, 2, entries);
        assert_eq!(
            (log.first_index(), log.last_index(), log.term(7)),
            (8, 10, Some(2))
        );
        assert_eq!(log.entry(8).map(|e| &e.command[..]), Some(&b"a"[..]));
    }

    #[test]
    fn the_invariant_checks_find_a_broken_log() {
        let mut log = log_of(&[1, 2, 2]);
        assert!(log.check_invariants().is_ok() && log.check_entries().is_ok());
        log.entries[2].term = 0;
        let broken = log.check_entries().expect_err("a term goes down");
        assert_eq!(broken.invariant, "terms never decrease along the log");
        assert_eq!(
            broken.values,
            [("index", 2), ("term", 0), ("previous_term", 1)]
        );
        log.entries[2].term = 2;
        log.entries[0].term = 3;
        assert!(
            log.check_invariants().is_err(),
            "the last term below the offset's"
        );

        let mut log = log_of(&[1]);
        log.bytes += 1;
        let broken = log.check_entries().expect_err("a wrong byte count");
        assert_eq!(broken.values, [("bytes", 1), ("sum", 0)]);

        let mut log = log_of(&[1]);
        log.entries[0].command = Bytes::from_static(b"x");
        assert!(log.check_invariants().is_err(), "a command in the sentinel");
    }
}
