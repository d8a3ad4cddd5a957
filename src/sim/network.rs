//! The simulated network: messages in flight in a timer heap keyed by virtual delivery time,
//! per-message loss, delay and duplication, and a matrix of directed links that faults cut.
//!
//! A link is checked when a message is sent and again when it is due, so a partition also
//! swallows messages that were already on their way. Ties in delivery time are broken by send
//! order, which keeps every run a pure function of its seed.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use zeroraft_engine::core::{Message, Nanos};

use super::scenario::Scenario;

/// One message on its way.
pub(crate) struct InFlight {
    pub at: Nanos,
    seq: u64,
    pub from: usize,
    pub to: usize,
    pub msg: Message,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    /// Reversed, so that the max-heap pops the earliest message first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Why a message never arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The link was cut when it was sent.
    Cut,
    /// Lost at random.
    Lost,
    /// The link was cut while it was on its way.
    CutInFlight,
}

/// What happened to a message handed to the network.
pub(crate) enum Sent {
    /// On its way (twice if duplicated).
    Queued,
    /// Dropped at once.
    Dropped(DropReason),
}

/// Loss, delay and duplication of one phase of a run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Quality {
    pub drop: f64,
    pub duplicate: f64,
    pub delay_min: Nanos,
    pub delay_max: Nanos,
    pub long_delay: f64,
    pub long_delay_max: Nanos,
    pub late_reply: f64,
    /// Election timeout, the unit of a late reply's delay.
    pub election_timeout: Nanos,
}

impl Quality {
    /// The faulty network a scenario describes.
    pub fn faulty(s: &Scenario) -> Self {
        Self {
            drop: s.drop,
            duplicate: s.duplicate,
            delay_min: s.delay_min,
            delay_max: s.delay_max,
            long_delay: s.long_delay,
            long_delay_max: s.long_delay_max,
            late_reply: s.late_reply,
            election_timeout: s.core.election_timeout_max,
        }
    }

    /// The heal phase: no loss, duplication or long tail, and delays short next to the election
    /// timeout (at most 30 ms each way), as Raft's liveness needs.
    pub fn healed(s: &Scenario) -> Self {
        let delay_max = s.delay_max.min(30 * 1_000_000).max(s.delay_min);
        Self {
            drop: 0.0,
            duplicate: 0.0,
            long_delay: 0.0,
            late_reply: 0.0,
            delay_max,
            ..Self::faulty(s)
        }
    }
}

pub(crate) struct Network {
    n: usize,
    heap: BinaryHeap<InFlight>,
    seq: u64,
    /// `blocked[from * n + to]`: the directed link from `from` to `to` is cut.
    blocked: Vec<bool>,
    pub quality: Quality,
}

impl Network {
    pub fn new(n: usize, quality: Quality) -> Self {
        Self {
            n,
            heap: BinaryHeap::new(),
            seq: 0,
            blocked: vec![false; n * n],
            quality,
        }
    }

    pub fn is_blocked(&self, from: usize, to: usize) -> bool {
        self.blocked[from * self.n + to]
    }

    pub fn block(&mut self, from: usize, to: usize) {
        self.blocked[from * self.n + to] = true;
    }

    pub fn heal(&mut self) {
        self.blocked.fill(false);
    }

    /// Number of messages on their way.
    pub fn in_flight(&self) -> usize {
        self.heap.len()
    }

    /// When the next message is due.
    pub fn next_time(&self) -> Option<Nanos> {
        self.heap.peek().map(|m| m.at)
    }

    /// The next message due, whether or not its link is still up.
    pub fn pop(&mut self) -> Option<InFlight> {
        self.heap.pop()
    }

    fn delay(&self, rng: &mut fastrand::Rng, is_request: bool) -> Nanos {
        let q = &self.quality;
        let mut d = rng.u64(q.delay_min..=q.delay_max);
        if q.long_delay > 0.0 && rng.f64() < q.long_delay {
            d += rng.u64(0..=q.long_delay_max);
        }
        if !is_request && q.late_reply > 0.0 && rng.f64() < q.late_reply {
            d += rng.u64(q.election_timeout..=3 * q.election_timeout);
        }
        d
    }

    pub fn send(
        &mut self,
        rng: &mut fastrand::Rng,
        now: Nanos,
        from: usize,
        to: usize,
        msg: Message,
    ) -> Sent {
        if self.is_blocked(from, to) {
            return Sent::Dropped(DropReason::Cut);
        }
        if self.quality.drop > 0.0 && rng.f64() < self.quality.drop {
            return Sent::Dropped(DropReason::Lost);
        }
        let is_request = msg.is_request();
        if self.quality.duplicate > 0.0 && rng.f64() < self.quality.duplicate {
            let at = now + self.delay(rng, is_request);
            self.push(at, from, to, msg.clone());
        }
        let at = now + self.delay(rng, is_request);
        self.push(at, from, to, msg);
        Sent::Queued
    }

    fn push(&mut self, at: Nanos, from: usize, to: usize, msg: Message) {
        self.seq += 1;
        self.heap.push(InFlight {
            at,
            seq: self.seq,
            from,
            to,
            msg,
        });
    }
}
