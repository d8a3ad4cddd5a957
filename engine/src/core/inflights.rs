//! The AppendEntries in flight to one follower in Replicate state: a fixed ring of their last
//! indices (raft-rs and etcd keep the same window in `tracker/inflights`).
//!
//! A leader streaming to a follower sends batch after batch without waiting for answers, and
//! records each batch's last index here. A full ring pauses the stream
//! ([`Progress::is_paused`]); an acknowledgement up to index `i` frees every batch ending at or
//! before `i` ([`Inflights::free_to`]), so a lost or reordered acknowledgement is made up for by
//! any later one. The ring's capacity is [`CoreConfig::max_inflight`]; it never grows, so
//! streaming allocates nothing.
//!
//! Each batch also records the payload bytes it carried, and the ring keeps their sum: the
//! leader sends no batch that would take the bytes in flight to a follower past
//! [`CoreConfig::max_inflight_bytes`] while another is outstanding (see
//! [`Core::send_append`](super::Core)), so a slow follower holds at most that much of the
//! leader's memory in messages on their way, whatever the commands' size.
//!
//! Invariants: the indices in the ring increase from oldest to newest, since batches are sent in
//! log order; `bytes` is the sum of the bytes of the batches in the ring.

#[cfg(doc)]
use super::{CoreConfig, Progress};

/// A fixed-capacity ring of the last indices of AppendEntries in flight to one follower.
///
/// Invariant: the indices in the ring increase from oldest to newest.
#[derive(Clone, Debug)]
pub struct Inflights {
    /// Each batch's last index and the payload bytes it carried.
    ring: Box<[(u64, u64)]>,
    start: usize,
    len: usize,
    /// Invariant: the sum of the bytes of the batches in the ring.
    bytes: u64,
}

impl Inflights {
    /// An empty ring with room for `capacity` messages (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            ring: vec![(0, 0); capacity.max(1)].into_boxed_slice(),
            start: 0,
            len: 0,
            bytes: 0,
        }
    }

    /// Whether no more messages may be sent.
    pub fn full(&self) -> bool {
        self.len == self.ring.len()
    }

    /// Number of messages in flight.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Payload bytes of the messages in flight.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Records a message whose last entry is `last_index`, carrying `bytes` of payload.
    ///
    /// # Panics
    ///
    /// If the ring is full or `last_index` does not exceed the newest recorded index.
    pub fn add(&mut self, last_index: u64, bytes: u64) {
        assert!(
            !self.full(),
            "in-flight window overflow at index {last_index}"
        );
        if self.len > 0 {
            let (newest, _) = self.ring[(self.start + self.len - 1) % self.ring.len()];
            assert!(
                last_index > newest,
                "in-flight index {last_index} after {newest}"
            );
        }
        let slot = (self.start + self.len) % self.ring.len();
        self.ring[slot] = (last_index, bytes);
        self.len += 1;
        self.bytes += bytes;
    }

    /// Forgets every message whose last index is at most `index` (they are acknowledged), and
    /// the bytes they carried.
    pub fn free_to(&mut self, index: u64) {
        while self.len > 0 && self.ring[self.start].0 <= index {
            self.bytes -= self.ring[self.start].1;
            self.start = (self.start + 1) % self.ring.len();
            self.len -= 1;
        }
    }

    /// The last indices in flight, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.len).map(|i| self.ring[(self.start + i) % self.ring.len()].0)
    }

    /// The bytes of the messages in flight, summed over the ring: what `bytes` must equal.
    pub(super) fn sum_bytes(&self) -> u64 {
        (0..self.len)
            .map(|i| self.ring[(self.start + i) % self.ring.len()].1)
            .sum()
    }

    /// Forgets everything.
    pub fn reset(&mut self) {
        self.start = 0;
        self.len = 0;
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflights_ring() {
        let mut inf = Inflights::new(3);
        inf.add(5, 100);
        inf.add(9, 40);
        inf.add(12, 1);
        assert!(inf.full());
        assert_eq!(inf.bytes(), 141);
        inf.free_to(8);
        assert_eq!(inf.len(), 2);
        assert_eq!(
            inf.bytes(),
            41,
            "the batch ending at 5 is freed with its bytes"
        );
        inf.add(20, 7);
        inf.free_to(4);
        assert_eq!(inf.len(), 3, "freeing below the oldest frees nothing");
        assert_eq!(inf.bytes(), 48);
        assert_eq!(inf.bytes(), inf.sum_bytes());
        inf.free_to(20);
        assert!(inf.is_empty());
        assert_eq!(inf.bytes(), 0);
        inf.add(21, 9);
        inf.reset();
        assert_eq!(
            (inf.len(), inf.bytes()),
            (0, 0),
            "a reset forgets the bytes too"
        );
    }
}
