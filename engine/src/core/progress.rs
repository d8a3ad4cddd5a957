//! The leader's view of one follower: how far its log is known to match, where to send next, and
//! how many AppendEntries are in flight to it.
//!
//! A follower is in one of three states:
//!
//! - **Probe**: the leader does not know where the follower's log diverges. It sends one
//!   AppendEntries and waits for the answer (or the next heartbeat) before sending another.
//! - **Replicate**: the last probe succeeded. The leader streams batches without waiting for
//!   acknowledgements, advancing `next_index` optimistically, until [`Inflights`] is full. Its
//!   heartbeats name `match_index`, which the follower holds, so they are never refused for a
//!   batch they overtook; a batch (or its answer) lost on the way shows as nothing acknowledged
//!   for a whole heartbeat interval ([`Progress::lost_at_heartbeat`]), and the follower is
//!   probed again.
//! - **Snapshot**: the follower needs entries the leader has compacted away. The leader sends its
//!   snapshot in chunks, one at a time ([`SnapshotTransfer`]), and probes again from just after
//!   it once the follower has installed it.
//!
//! Every change of state happens in a method here: the leader reports what happened (a message
//! sent, an acknowledgement ([`Progress::on_ack`]), a rejection, a heartbeat, a snapshot
//! reply) and the [`Progress`] moves itself, so the rules below hold whoever calls.
//!
//! Invariant: `match_index < next_index`. Neither moves backwards on a stale or duplicated
//! reply: a success only raises `match_index`, and a rejection is believed only if it answers
//! the probe currently outstanding (in Probe) or an index above `match_index` (in Replicate).

use super::Inflights;
use super::invariants::{Violation, ensure};

/// Replication state of a follower, seen from the leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// Sending one AppendEntries at a time to find where the logs agree.
    Probe,
    /// Streaming AppendEntries without waiting, within the in-flight window.
    Replicate,
    /// Sending a snapshot, because the follower needs entries compacted away.
    Snapshot,
}

/// A snapshot on its way to one follower: which one, and how far it got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotTransfer {
    /// The last index the snapshot covers.
    pub index: u64,
    /// The term of that entry.
    pub term: u64,
    /// The snapshot's data (shared with the leader's copy).
    pub data: bytes::Bytes,
    /// The configuration the snapshot records ([`Snapshot::config`](super::Snapshot::config)).
    pub config: Option<bytes::Bytes>,
    /// How many bytes the follower has acknowledged: the next chunk starts here.
    /// Invariant: `offset <= data.len()`.
    pub offset: u64,
    /// Whether a chunk is outstanding (no more until its answer or the next heartbeat).
    pub sent: bool,
}

impl SnapshotTransfer {
    /// The next chunk to send, as `(offset, data, whether it ends the snapshot)`: at most
    /// `max_chunk` bytes from where the follower's acknowledgements got to. Marks it outstanding;
    /// `None` while a chunk is (until its answer moves the transfer, or a heartbeat resends it).
    pub fn next_chunk(&mut self, max_chunk: usize) -> Option<(u64, bytes::Bytes, bool)> {
        if self.sent {
            return None;
        }
        let len = self.data.len() as u64;
        let end = len.min(self.offset + max_chunk as u64);
        self.sent = true;
        Some((
            self.offset,
            self.data.slice(self.offset as usize..end as usize),
            end == len,
        ))
    }
}

/// The leader's record of one follower.
#[derive(Clone, Debug)]
pub struct Progress {
    /// Highest index known to be replicated on the follower.
    /// Invariant: `match_index < next_index`.
    pub match_index: u64,
    /// Index of the next entry to send.
    pub next_index: u64,
    /// Probe or Replicate.
    pub state: ProgressState,
    /// In Probe: whether a probe is outstanding (no more sends until its answer or a heartbeat).
    pub probe_sent: bool,
    /// Batches in flight (Replicate only), and the bytes of commands they carry.
    pub inflights: Inflights,
    /// The highest index this follower was told it may commit: of the AppendEntries sent to it,
    /// the largest least of the leader's commit index and the message's last index (a follower
    /// commits no further than what the message shows it holds).
    pub commit_sent: u64,
    /// In Replicate: the last index sent when the leader last sent a heartbeat. If the follower
    /// has not acknowledged it by the next heartbeat, a whole interval later, the batch or its
    /// answer was most likely lost ([`Progress::lost_at_heartbeat`]).
    pub sent_at_heartbeat: u64,
    /// In Snapshot: the snapshot being sent.
    pub snapshot: Option<SnapshotTransfer>,
    /// The highest heartbeat round this follower answered in the leader's term (see
    /// [`AppendEntriesReply::round`](super::AppendEntriesReply::round)).
    pub acked_round: u64,
}

impl Progress {
    /// A follower about which nothing is known yet: probe from `next_index`.
    pub fn new(next_index: u64, max_inflight: usize) -> Self {
        Self {
            match_index: 0,
            next_index: next_index.max(1),
            state: ProgressState::Probe,
            probe_sent: false,
            inflights: Inflights::new(max_inflight),
            commit_sent: 0,
            sent_at_heartbeat: 0,
            snapshot: None,
            acked_round: 0,
        }
    }

    /// Whether the leader should hold back new AppendEntries to this follower.
    pub fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.full(),
            ProgressState::Snapshot => self.snapshot.as_ref().is_none_or(|s| s.sent),
        }
    }

    /// Switches to probing from just after the matched prefix.
    pub fn become_probe(&mut self) {
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.next_index = self.next_index.max(self.match_index + 1);
        self.inflights.reset();
        self.snapshot = None;
    }

    /// At a heartbeat: whether this follower, in Replicate, has not acknowledged what was sent to
    /// it by the previous heartbeat, a whole heartbeat interval ago. Then it switches to probing
    /// from just after its matched prefix: the batch or its answer was most likely lost, and one
    /// probe a heartbeat finds out where to resume without flooding a follower that is gone.
    /// Either way it notes what is sent by now for the next heartbeat.
    ///
    /// Heartbeats name the matched prefix ([`Progress::match_index`]), which the follower always
    /// accepts, so that a heartbeat overtaking a batch on the network is not mistaken for a
    /// gap; this is what finds lost batches instead.
    pub fn lost_at_heartbeat(&mut self) -> bool {
        if self.state != ProgressState::Replicate {
            return false;
        }
        let lost = self.match_index < self.sent_at_heartbeat;
        if lost {
            self.become_probe();
            self.next_index = self.match_index + 1;
        }
        self.sent_at_heartbeat = self.next_index - 1;
        lost
    }

    /// Switches to streaming from just after the matched prefix.
    pub fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.probe_sent = false;
        self.next_index = self.match_index + 1;
        self.sent_at_heartbeat = self.match_index;
        self.inflights.reset();
        self.snapshot = None;
    }

    /// Switches to sending the snapshot of `data` (recording `config`) that covers everything up
    /// to `index`, of `term`, from its first byte.
    pub fn become_snapshot(
        &mut self,
        index: u64,
        term: u64,
        data: bytes::Bytes,
        config: Option<bytes::Bytes>,
    ) {
        self.state = ProgressState::Snapshot;
        self.probe_sent = false;
        self.inflights.reset();
        self.snapshot = Some(SnapshotTransfer {
            index,
            term,
            data,
            config,
            offset: 0,
            sent: false,
        });
    }

    /// Applies a follower's answer to a chunk of the snapshot covering up to `index`: it holds
    /// `next_offset` bytes of it, or, if `installed`, everything up to `index`. Returns whether
    /// the transfer is over (the follower then probes from just after `index`). An answer about
    /// another snapshot, or in another state, changes nothing.
    pub fn snapshot_reply(&mut self, index: u64, next_offset: u64, installed: bool) -> bool {
        let Some(transfer) = self.snapshot.as_mut().filter(|t| t.index == index) else {
            return false;
        };
        if installed {
            self.match_index = self.match_index.max(index);
            self.next_index = self.next_index.max(index + 1);
            self.become_probe();
            return true;
        }
        // Only a reply that moves the transfer answers the outstanding chunk. If a duplicated
        // reply, or the answer to a chunk sent again at a heartbeat, also sent the next chunk,
        // each copy would send one more whose answer, duplicated in turn, sends more: a message
        // storm. A reply that rewinds (the follower lost what it had) moves it too.
        let next_offset = next_offset.min(transfer.data.len() as u64);
        if next_offset != transfer.offset {
            transfer.offset = next_offset;
            transfer.sent = false;
        }
        false
    }

    /// Records that an AppendEntries ending at `last_index` (the last entry it carried, or its
    /// previous index if it carried none), carrying `bytes` of commands, was sent.
    pub fn sent(&mut self, last_index: u64, carried_entries: bool, bytes: u64) {
        match self.state {
            ProgressState::Probe | ProgressState::Snapshot => self.probe_sent = true,
            ProgressState::Replicate => {
                if carried_entries {
                    self.next_index = last_index + 1;
                    self.inflights.add(last_index, bytes);
                }
            }
        }
    }

    /// Applies a success reply saying the follower matches up to `index`. Returns whether
    /// `match_index` advanced; a stale or duplicated reply changes nothing but the in-flight
    /// window.
    pub fn maybe_update(&mut self, index: u64) -> bool {
        let advanced = index > self.match_index;
        if advanced {
            self.match_index = index;
            // Only a reply that moves `match_index` answers the outstanding probe. If a stale or
            // duplicated one also unpaused probing, each copy would send another probe whose
            // reply, duplicated in turn, sends more: a message storm. (A probe answered without
            // advancing means `match_index + 1 == next_index`, and the caller switches to
            // Replicate, which unpauses.)
            self.probe_sent = false;
        }
        self.next_index = self.next_index.max(index + 1);
        self.inflights.free_to(index);
        advanced
    }

    /// Applies a success reply saying the follower matches up to `index`, and moves to the
    /// state that follows: a probe answered at `next_index - 1` switches to Replicate (streaming
    /// from there); a follower being sent a snapshot that turns out to hold the snapshot's last
    /// index (an AppendEntries sent before the transfer began got there) goes back to probing,
    /// and the transfer is dropped. Returns whether `match_index` advanced; a stale or
    /// duplicated reply moves nothing backwards (see [`Progress::maybe_update`]).
    pub fn on_ack(&mut self, index: u64) -> bool {
        let advanced = self.maybe_update(index);
        if self.state == ProgressState::Probe && self.match_index + 1 >= self.next_index {
            self.become_replicate();
        }
        if self
            .snapshot
            .as_ref()
            .is_some_and(|t| self.match_index >= t.index)
        {
            self.become_probe();
        }
        advanced
    }

    /// Notes that the follower answered heartbeat round `round`. Returns whether that is a
    /// later round than it had answered; an earlier one changes nothing.
    pub fn maybe_ack_round(&mut self, round: u64) -> bool {
        let later = round > self.acked_round;
        if later {
            self.acked_round = round;
        }
        later
    }

    /// At a heartbeat, in Probe or Snapshot: lets the outstanding probe or snapshot chunk be
    /// sent again, since it or its answer may have been lost. Replicate is left alone: its lost
    /// batches are found by [`Progress::lost_at_heartbeat`].
    pub fn retry_at_heartbeat(&mut self) {
        match self.state {
            ProgressState::Probe => self.probe_sent = false,
            ProgressState::Snapshot => {
                if let Some(transfer) = self.snapshot.as_mut() {
                    transfer.sent = false;
                }
            }
            ProgressState::Replicate => {}
        }
    }

    /// Records that an AppendEntries told the follower it may commit up to `index` (the least
    /// of the leader's commit index and the last index the message vouches for). Never lowers
    /// [`Progress::commit_sent`].
    pub fn note_commit_sent(&mut self, index: u64) {
        self.commit_sent = self.commit_sent.max(index);
    }

    /// Checks this record against the leader's log (which ends at `last_index`), commit index
    /// and heartbeat round, in time proportional to the in-flight window: `match_index <
    /// next_index <= last_index + 1`; nothing told or answered that the leader has not reached;
    /// in Replicate, no probe outstanding and the batches in flight between `match_index` and
    /// `next_index`, their last indices increasing; in Probe and Snapshot, nothing in flight;
    /// a snapshot transfer exactly in Snapshot, its offset within its data.
    pub(super) fn check_invariants(
        &self,
        last_index: u64,
        commit_index: u64,
        round: u64,
    ) -> Result<(), Violation> {
        ensure!(
            self.match_index < self.next_index && self.next_index <= last_index + 1,
            "match_index < next_index <= last index + 1",
            match_index = self.match_index,
            next_index = self.next_index,
            last_index = last_index,
        );
        ensure!(
            self.commit_sent <= commit_index && self.acked_round <= round,
            "a follower was told no more than committed and answered no round not yet started",
            commit_sent = self.commit_sent,
            commit_index = commit_index,
            acked_round = self.acked_round,
            round = round,
        );
        ensure!(
            (self.state == ProgressState::Snapshot) == self.snapshot.is_some(),
            "a snapshot transfer exactly in Snapshot state",
            snapshot_state = self.state == ProgressState::Snapshot,
            transfer = self.snapshot.is_some(),
        );
        if let Some(t) = &self.snapshot {
            ensure!(
                t.offset <= t.data.len() as u64,
                "a snapshot transfer's offset <= its data's length",
                offset = t.offset,
                len = t.data.len(),
            );
        }
        if self.state != ProgressState::Replicate {
            ensure!(
                self.inflights.is_empty(),
                "nothing in flight outside Replicate",
                inflight = self.inflights.len(),
            );
            return Ok(());
        }
        ensure!(
            !self.probe_sent,
            "no probe outstanding in Replicate",
            probe_sent = self.probe_sent,
        );
        ensure!(
            self.inflights.bytes() == self.inflights.sum_bytes(),
            "the bytes in flight are the sum of the batches' bytes",
            bytes = self.inflights.bytes(),
            sum = self.inflights.sum_bytes(),
        );
        let mut previous = self.match_index;
        for last in self.inflights.iter() {
            ensure!(
                previous < last && last < self.next_index,
                "batches in flight end after match_index, increasing, before next_index",
                last = last,
                previous = previous,
                match_index = self.match_index,
                next_index = self.next_index,
            );
            previous = last;
        }
        Ok(())
    }

    /// Applies a rejection of the AppendEntries whose previous index was `rejected`, stepping
    /// `next_index` back to `hint` (the leader's reading of the follower's conflict hint).
    /// Returns false, changing nothing, when the rejection is stale: in Replicate, it concerns an
    /// index already known to match; in Probe, it does not answer the outstanding probe.
    pub fn maybe_decr_to(&mut self, rejected: u64, hint: u64) -> bool {
        let stale = match self.state {
            ProgressState::Replicate => rejected <= self.match_index,
            ProgressState::Probe => rejected + 1 != self.next_index,
            // A rejection of an AppendEntries sent before the transfer began: the transfer goes
            // on.
            ProgressState::Snapshot => true,
        };
        if stale {
            return false;
        }
        self.next_index = hint.min(rejected).max(self.match_index + 1);
        // In Probe this only clears `probe_sent`: `next_index` is already above `match_index`
        // and nothing is in flight.
        self.become_probe();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_success_never_moves_backwards() {
        let mut pr = Progress::new(11, 4);
        pr.become_replicate();
        // (reply index, want match, want next)
        let cases = [
            (10, 10, 11),
            (5, 10, 11),
            (12, 12, 13),
            (10, 12, 13),
            (12, 12, 13),
        ];
        for (case, (index, want_match, want_next)) in cases.into_iter().enumerate() {
            pr.maybe_update(index);
            assert_eq!(
                pr.match_index, want_match,
                "case {case}: match after reply {index}"
            );
            assert_eq!(
                pr.next_index, want_next,
                "case {case}: next after reply {index}"
            );
        }
    }

    #[test]
    fn rejections() {
        // (state, match, next, rejected, hint, want accepted, want next)
        let cases = [
            (ProgressState::Probe, 0, 10, 9, 4, true, 4),
            (ProgressState::Probe, 0, 10, 7, 4, false, 10), // answers an older probe
            (ProgressState::Probe, 3, 10, 9, 1, true, 4),   // never at or below match
            (ProgressState::Probe, 0, 10, 9, 50, true, 9),  // never forward past the probe
            (ProgressState::Replicate, 5, 20, 5, 2, false, 20), // already matched: stale
            (ProgressState::Replicate, 5, 20, 12, 8, true, 8),
            (ProgressState::Replicate, 5, 20, 12, 1, true, 6),
        ];
        for (case, (state, m, next, rejected, hint, accepted, want_next)) in
            cases.into_iter().enumerate()
        {
            let mut pr = Progress::new(next, 4);
            pr.match_index = m;
            pr.state = state;
            pr.probe_sent = true;
            assert_eq!(
                pr.maybe_decr_to(rejected, hint),
                accepted,
                "case {case}: accepted"
            );
            assert_eq!(pr.next_index, want_next, "case {case}: next");
            assert!(pr.match_index < pr.next_index, "case {case}: match < next");
            if accepted {
                assert_eq!(
                    pr.state,
                    ProgressState::Probe,
                    "case {case}: probing after a rejection"
                );
                assert!(!pr.probe_sent, "case {case}: free to send the next probe");
            }
        }
    }

    #[test]
    fn only_an_advancing_success_unpauses_a_probe() {
        // A stale or duplicated success must leave the outstanding probe outstanding: if it
        // released another probe, every duplicated reply would send one more AppendEntries,
        // whose reply, duplicated in turn, sends more (a message storm the simulator found).
        // (reply index, want paused after it)
        let cases = [(3, true), (5, true), (7, false), (10, false)];
        for (case, (index, paused)) in cases.into_iter().enumerate() {
            let mut pr = Progress::new(11, 4);
            pr.match_index = 5;
            pr.sent(10, true, 0);
            assert!(pr.is_paused(), "case {case}: probe outstanding");
            pr.maybe_update(index);
            assert_eq!(
                pr.is_paused(),
                paused,
                "case {case}: after a success up to {index}"
            );
        }
    }

    #[test]
    fn replicate_pauses_when_window_full() {
        let mut pr = Progress::new(1, 2);
        pr.become_replicate();
        pr.sent(3, true, 0);
        assert!(!pr.is_paused());
        pr.sent(6, true, 0);
        assert!(pr.is_paused());
        assert_eq!(pr.next_index, 7);
        pr.maybe_update(3);
        assert!(!pr.is_paused());
    }

    /// A follower in `state` with `match_index` and `next_index` as given, its probe outstanding
    /// in Probe; in Snapshot, being sent a snapshot up to index 8; in Replicate, streaming from
    /// just after `match_index` with batches ending at 5 and 9 in flight (so `next_index` 10).
    fn progress_in(state: ProgressState, match_index: u64, next_index: u64) -> Progress {
        let mut pr = Progress::new(next_index, 4);
        pr.match_index = match_index;
        match state {
            ProgressState::Probe => pr.sent(next_index - 1, true, 0),
            ProgressState::Replicate => {
                pr.become_replicate();
                pr.sent(5, true, 0);
                pr.sent(9, true, 0);
            }
            ProgressState::Snapshot => {
                pr.become_snapshot(8, 2, bytes::Bytes::from_static(b"snapshot"), None)
            }
        }
        pr
    }

    #[test]
    fn acks_move_a_probe_to_replicate_and_leave_a_snapshot_made_needless() {
        use ProgressState::{Probe, Replicate, Snapshot};
        // (state, match, next, ack index, want advanced, want state, want match, want next)
        let cases = [
            (Probe, 0, 5, 4, true, Replicate, 4, 5), // the probe matched: stream from 5
            (Probe, 0, 5, 2, true, Probe, 2, 5),     // an earlier probe's answer: keep probing
            (Probe, 4, 5, 4, false, Replicate, 4, 5), // a duplicate of the probe's answer
            (Replicate, 3, 10, 5, true, Replicate, 5, 10),
            (Replicate, 3, 10, 2, false, Replicate, 3, 10), // stale
            (Replicate, 3, 10, 9, true, Replicate, 9, 10),
            (Snapshot, 3, 4, 5, true, Snapshot, 5, 6), // not yet past the snapshot
            (Snapshot, 3, 4, 8, true, Probe, 8, 9),    // holds the snapshot's last entry
            (Snapshot, 3, 4, 12, true, Probe, 12, 13),
        ];
        for (case, (state, m, next, index, advanced, want_state, want_match, want_next)) in
            cases.into_iter().enumerate()
        {
            let mut pr = progress_in(state, m, next);
            assert_eq!(pr.state, state, "case {case}: set up");
            assert_eq!(pr.on_ack(index), advanced, "case {case}: advanced");
            assert_eq!(pr.state, want_state, "case {case}: state");
            assert_eq!(
                (pr.match_index, pr.next_index),
                (want_match, want_next),
                "case {case}: match and next"
            );
            assert!(pr.match_index < pr.next_index, "case {case}: match < next");
            assert_eq!(
                pr.snapshot.is_some(),
                want_state == Snapshot,
                "case {case}: a transfer only in Snapshot"
            );
            if want_state != Replicate {
                assert!(pr.inflights.is_empty(), "case {case}: nothing in flight");
            }
        }
        let mut pr = progress_in(Replicate, 3, 10);
        pr.on_ack(5);
        assert_eq!(
            pr.inflights.len(),
            1,
            "the batch ending at 5 is acknowledged"
        );
    }

    #[test]
    fn rounds_and_commit_notices_only_go_up() {
        let mut pr = Progress::new(1, 4);
        // (round answered, want later, want acked_round)
        let rounds = [(3, true, 3), (2, false, 3), (3, false, 3), (7, true, 7)];
        for (case, (round, later, want)) in rounds.into_iter().enumerate() {
            assert_eq!(pr.maybe_ack_round(round), later, "case {case}: later");
            assert_eq!(pr.acked_round, want, "case {case}: acked_round");
        }
        for (case, (index, want)) in [(4, 4), (2, 4), (9, 9)].into_iter().enumerate() {
            pr.note_commit_sent(index);
            assert_eq!(
                pr.commit_sent, want,
                "case {case}: commit_sent after {index}"
            );
        }
    }

    #[test]
    fn a_heartbeat_retries_what_is_outstanding_in_probe_and_snapshot_only() {
        use ProgressState::{Probe, Replicate, Snapshot};
        // (state, sent before the heartbeat, want paused after it)
        let cases = [
            (Probe, true, false),
            (Snapshot, true, false),
            (Replicate, true, true),
        ];
        for (case, (state, sent, paused)) in cases.into_iter().enumerate() {
            let mut pr = progress_in(state, 3, 4);
            if state == Snapshot && sent {
                pr.snapshot.as_mut().expect("a transfer").next_chunk(4);
            }
            if state == Replicate {
                pr.sent(11, true, 0);
                pr.sent(12, true, 0); // the window of 4 is full
            }
            assert!(pr.is_paused(), "case {case}: paused before the heartbeat");
            pr.retry_at_heartbeat();
            assert_eq!(pr.is_paused(), paused, "case {case}: paused after it");
        }
    }

    #[test]
    fn snapshot_chunks_go_one_at_a_time() {
        let mut pr = Progress::new(1, 4);
        pr.become_snapshot(8, 2, bytes::Bytes::from_static(b"0123456789"), None);
        let transfer = pr.snapshot.as_mut().expect("a transfer");
        let chunk = |c: Option<(u64, bytes::Bytes, bool)>| c.map(|(o, d, done)| (o, d.len(), done));
        assert_eq!(chunk(transfer.next_chunk(4)), Some((0, 4, false)));
        assert_eq!(chunk(transfer.next_chunk(4)), None, "one outstanding");
        assert!(
            !pr.snapshot_reply(8, 0, false),
            "an answer that moves nothing"
        );
        assert!(pr.is_paused(), "still outstanding");
        assert!(!pr.snapshot_reply(8, 4, false));
        let transfer = pr.snapshot.as_mut().expect("a transfer");
        assert_eq!(chunk(transfer.next_chunk(4)), Some((4, 4, false)));
        assert!(!pr.snapshot_reply(8, 8, false));
        let transfer = pr.snapshot.as_mut().expect("a transfer");
        assert_eq!(chunk(transfer.next_chunk(4)), Some((8, 2, true)));
        assert!(pr.snapshot_reply(8, 10, true), "installed");
        assert_eq!(
            (pr.state, pr.match_index, pr.next_index),
            (ProgressState::Probe, 8, 9)
        );
    }
}
