//! The bound on bytes in flight to one follower ([`CoreConfig::max_inflight_bytes`]): a
//! follower that answers slowly is never sent more than the bound before it answers (one entry
//! larger than the bound goes alone), acknowledgements make room and the stream resumes, and a
//! window given up (a rejection, nothing acknowledged for a heartbeat interval) forgets its
//! bytes.

use super::*;

/// `n` commands of `size` bytes each.
fn payloads(n: usize, size: usize) -> Vec<Bytes> {
    (0..n).map(|i| Bytes::from(vec![i as u8; size])).collect()
}

/// The command bytes an AppendEntries carries.
fn carried(a: &AppendEntries) -> u64 {
    a.entries.iter().map(|e| e.command.len() as u64).sum()
}

/// A leader of three nodes whose follower 1 never answers unless told to, and whose follower 2
/// acknowledges everything at once.
fn leader_with_bound(max_inflight_bytes: usize) -> Core {
    let config = CoreConfig {
        max_inflight_bytes,
        ..CoreConfig::default()
    };
    replicating_leader(3, config)
}

/// What a slow follower has been sent and not acknowledged: each batch's last index and bytes,
/// oldest first.
#[derive(Default)]
struct Outstanding(VecDeque<(u64, u64)>);

impl Outstanding {
    fn bytes(&self) -> u64 {
        self.0.iter().map(|&(_, b)| b).sum()
    }

    /// Records the AppendEntries in `sent` to follower 1, and acknowledges at once those to
    /// follower 2, and those its acknowledgements release, until the leader sends it nothing
    /// more. Returns how many batches went to follower 1.
    fn take(&mut self, leader: &mut Core, sent: &[(usize, Message)]) -> usize {
        let mut sent = sent.to_vec();
        let mut batches = 0;
        loop {
            for a in appends_to(&sent, 1) {
                if !a.entries.is_empty() {
                    let last = a.prev_log_index + a.entries.len() as u64;
                    self.0.push_back((last, carried(&a)));
                    batches += 1;
                }
            }
            let fast = appends_to(&sent, 2);
            if fast.iter().all(|a| a.entries.is_empty()) {
                return batches;
            }
            for a in fast {
                let last = a.prev_log_index + a.entries.len() as u64;
                leader.step(0, 2, ack(1, last));
            }
            sent = drain(leader);
        }
    }

    /// Acknowledges for follower 1 the oldest batch outstanding.
    fn ack_oldest(&mut self, leader: &mut Core) {
        let (last, _) = self.0.pop_front().expect("a batch outstanding");
        leader.step(0, 1, ack(1, last));
    }
}

#[test]
fn a_slow_follower_is_never_sent_more_than_the_bound() {
    // (command size, commands per proposal, bound, want at most this many batches in flight
    // once the bound is reached)
    let cases = [
        (1 << 10, 8, 64 << 10, 8),   // 1 KiB commands, 8 KiB batches: 8 fit
        (1 << 10, 5, 64 << 10, 13),  // 5 KiB batches: 12 whole and one cut short
        (64 << 10, 1, 256 << 10, 4), // 64 KiB commands: 4 fit
        (64 << 10, 3, 100 << 10, 1), // batches of 3 cut to 1 entry each: 1 fits
        (64 << 10, 1, 16 << 10, 1),  // a command larger than the bound goes alone
    ];
    for (case, (size, per_proposal, bound, max_batches)) in cases.into_iter().enumerate() {
        let mut leader = leader_with_bound(bound);
        let mut slow = Outstanding::default();
        let mut peak = 0;
        for round in 0..40 {
            leader.propose(0, payloads(per_proposal, size));
            let sent = drain(&mut leader);
            slow.take(&mut leader, &sent);
            let in_flight = leader.progress(1).map(|p| p.inflights.bytes());
            assert_eq!(
                in_flight,
                Some(slow.bytes()),
                "case {case} round {round}: the leader counts what it sent"
            );
            let allowed = (bound as u64).max(size as u64);
            assert!(
                slow.bytes() <= allowed,
                "case {case} round {round}: {} bytes in flight, bound {bound}",
                slow.bytes()
            );
            peak = peak.max(slow.0.len());
        }
        assert_eq!(
            peak, max_batches,
            "case {case}: batches in flight at the bound"
        );
        // The fast follower alone makes a majority: everything commits meanwhile.
        let last = leader.log().last_index();
        assert_eq!(leader.commit_index(), last, "case {case}: committed");
        let behind = leader.progress(1).map(|p| p.next_index);
        assert!(
            behind.is_some_and(|next| next <= last),
            "case {case}: the slow follower has not been sent everything ({behind:?} of {last})"
        );

        // Each acknowledgement makes room; what it frees is refilled, never more.
        let mut acks = 0;
        while !slow.0.is_empty() {
            slow.ack_oldest(&mut leader);
            acks += 1;
            let sent = drain(&mut leader);
            slow.take(&mut leader, &sent);
            assert!(
                slow.bytes() <= (bound as u64).max(size as u64),
                "case {case} ack {acks}: {} bytes in flight, bound {bound}",
                slow.bytes()
            );
            assert_eq!(
                leader.progress(1).map(|p| p.inflights.bytes()),
                Some(slow.bytes()),
                "case {case} ack {acks}"
            );
            assert!(acks < 1000, "case {case}: the stream ends");
        }
        let pr = leader.progress(1).expect("a follower");
        assert_eq!(
            (pr.match_index, pr.next_index, pr.inflights.bytes()),
            (last, last + 1, 0),
            "case {case}: the slow follower got everything, batch after batch"
        );
    }
}

#[test]
fn an_acknowledgement_resumes_a_stream_held_by_the_bound() {
    let mut leader = leader_with_bound(4 << 10);
    let mut slow = Outstanding::default();
    // Four 1 KiB commands fill the bound in one batch; the next proposal waits.
    leader.propose(0, payloads(4, 1 << 10));
    let sent = drain(&mut leader);
    assert_eq!(slow.take(&mut leader, &sent), 1);
    leader.propose(0, payloads(2, 1 << 10));
    let sent = drain(&mut leader);
    assert_eq!(
        slow.take(&mut leader, &sent),
        0,
        "held: the bound is reached"
    );
    let pr = leader.progress(1).expect("a follower");
    assert!(!pr.is_paused(), "the window of messages is not full");
    assert_eq!((pr.next_index, pr.inflights.bytes()), (5, 4 << 10));

    // The acknowledgement frees the whole bound: the two waiting commands go in one batch.
    slow.ack_oldest(&mut leader);
    let sent = drain(&mut leader);
    let appends = appends_to(&sent, 1);
    assert_eq!(appends.len(), 1, "{sent:?}");
    assert_eq!(
        (appends[0].prev_log_index, appends[0].entries.len()),
        (4, 2)
    );
    slow.take(&mut leader, &sent);
    assert_eq!(
        leader.progress(1).map(|p| p.inflights.bytes()),
        Some(2 << 10)
    );
}

#[test]
fn a_window_given_up_forgets_its_bytes() {
    // (how the window is given up)
    let cases = ["rejection", "nothing acknowledged for a heartbeat interval"];
    for (case, how) in cases.into_iter().enumerate() {
        let mut leader = leader_with_bound(8 << 10);
        let mut slow = Outstanding::default();
        for _ in 0..4 {
            leader.propose(0, payloads(4, 1 << 10));
            let sent = drain(&mut leader);
            slow.take(&mut leader, &sent);
        }
        assert_eq!(
            leader.progress(1).map(|p| p.inflights.bytes()),
            Some(8 << 10),
            "case {case}: the bound is reached"
        );
        let sent = if case == 0 {
            // The follower lost the first batch: it refuses the second, its log ending at 4.
            leader.step(0, 1, reject(1, 4, 0, 5));
            drain(&mut leader)
        } else {
            // At the second heartbeat, nothing was acknowledged since the first. (The deadlines
            // between are commit notices to the fast follower.)
            let mut sent = Vec::new();
            for _ in 0..20 {
                let now = leader.next_deadline();
                leader.tick(now);
                sent = drain(&mut leader);
                slow.take(&mut leader, &sent);
                if leader.progress(1).map(|p| p.state) == Some(ProgressState::Probe) {
                    break;
                }
            }
            sent
        };
        let pr = leader.progress(1).expect("a follower");
        assert_eq!(pr.state, ProgressState::Probe, "case {case} ({how})");
        assert_eq!(
            (pr.inflights.len(), pr.inflights.bytes()),
            (0, 0),
            "case {case} ({how}): nothing counted in flight"
        );
        // The probe that follows is as large as the bound allows: nothing is in flight.
        let probe = appends_to(&sent, 1);
        assert_eq!(probe.len(), 1, "case {case} ({how}): {sent:?}");
        assert_eq!(carried(&probe[0]), 8 << 10, "case {case} ({how})");
        // Its acknowledgement puts the follower back to streaming, from an empty count.
        let end = probe[0].prev_log_index + probe[0].entries.len() as u64;
        leader.step(0, 1, ack(1, end));
        let sent = drain(&mut leader);
        let pr = leader.progress(1).expect("a follower");
        assert_eq!(pr.state, ProgressState::Replicate, "case {case} ({how})");
        let streamed: u64 = appends_to(&sent, 1).iter().map(carried).sum();
        assert_eq!(
            pr.inflights.bytes(),
            streamed,
            "case {case} ({how}): counts only what was sent since"
        );
        assert!(streamed <= 8 << 10, "case {case} ({how})");
    }
}
