//! The replicated log held in memory.
//!
//! Indices start at 1. Slot 0 holds a sentinel of term 0, so that `term(0) == Some(0)` and the
//! consistency check of an AppendEntries at the very start of the log needs no special case.
//!
//! Invariant: terms never decrease along the log. Every leader appends only entries of its own
//! term, which is higher than any term it holds, and a follower's log is a prefix of some leader's
//! log followed by that leader's entries. This is what lets [`Log::first_index_of_term`] and
//! [`Log::last_index_of_term`] be binary searches (the fast backtracking of §5.3).

use bytes::Bytes;

pub use zeroraft_storage::Entry;

/// The log: entries 1..=last_index, behind a term-0 sentinel at index 0.
#[derive(Clone, Debug)]
pub struct Log {
    /// `entries[i]` is the entry at index `i`; `entries[0]` is the sentinel.
    entries: Vec<Entry>,
}

impl Default for Log {
    fn default() -> Self {
        Self::new()
    }
}

impl Log {
    /// An empty log.
    pub fn new() -> Self {
        Self::from_entries(Vec::new())
    }

    /// A log holding `entries` at indices 1, 2, ... (as a storage recovered them).
    ///
    /// # Panics
    ///
    /// If a term decreases along `entries`.
    pub fn from_entries(mut entries: Vec<Entry>) -> Self {
        assert!(
            entries.windows(2).all(|w| w[0].term <= w[1].term),
            "a log whose terms decrease"
        );
        entries.insert(
            0,
            Entry {
                term: 0,
                command: Bytes::new(),
            },
        );
        Self { entries }
    }

    /// Index of the last entry (0 if the log is empty).
    pub fn last_index(&self) -> u64 {
        (self.entries.len() - 1) as u64
    }

    /// Term of the last entry (0 if the log is empty).
    pub fn last_term(&self) -> u64 {
        self.entries[self.entries.len() - 1].term
    }

    /// Term of the entry at `index`, `Some(0)` for index 0, `None` past the end.
    pub fn term(&self, index: u64) -> Option<u64> {
        self.entries
            .get(usize::try_from(index).ok()?)
            .map(|e| e.term)
    }

    /// The entry at `index` (1-based), if present.
    pub fn entry(&self, index: u64) -> Option<&Entry> {
        if index == 0 {
            return None;
        }
        self.entries.get(usize::try_from(index).ok()?)
    }

    /// Entries `from..=to`, clamped to the log. Empty if `from > to` or `from` is past the end.
    pub fn slice(&self, from: u64, to: u64) -> &[Entry] {
        let from = from.max(1) as usize;
        let to = (to.min(self.last_index()) as usize).saturating_add(1);
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

    /// Removes every entry at `from` and after. Keeps at least the sentinel.
    pub fn truncate_from(&mut self, from: u64) {
        let from = from.max(1);
        if from <= self.last_index() {
            self.entries.truncate(from as usize);
        }
    }

    /// Whether a log ending at (`last_index`, `last_term`) is at least as up to date as this one
    /// (§5.4.1): a later last term wins; with equal last terms, the longer log wins.
    pub fn is_up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// The first index holding an entry of `term`, or, if there is none, the first index holding
    /// a later term (or `last_index() + 1`).
    pub fn first_index_of_term(&self, term: u64) -> u64 {
        self.entries.partition_point(|e| e.term < term) as u64
    }

    /// The last index holding an entry of `term`, if the log holds any.
    pub fn last_index_of_term(&self, term: u64) -> Option<u64> {
        let after = self.entries.partition_point(|e| e.term <= term);
        (after > 0 && self.entries[after - 1].term == term && term > 0).then(|| (after - 1) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(terms: &[u64]) -> Log {
        let mut log = Log::new();
        for &t in terms {
            log.push(Entry {
                term: t,
                command: Bytes::new(),
            });
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
        log.push(Entry {
            term: 1,
            command: Bytes::new(),
        });
    }
}
