//! The simulated network: messages in flight in a timer heap keyed by virtual delivery time,
//! per-message loss, delay and duplication, and a matrix of directed links that faults cut.
//!
//! A link is checked when a message is sent and again when it is due, so a partition also
//! swallows messages that were already on their way. Ties in delivery time are broken by send
//! order, which keeps every run a pure function of its seed.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use zeroraft_engine::core::{Message, Nanos};

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
    /// The receiver was down (crashed, not yet restarted) when it arrived.
    Down,
}

/// What happened to a message handed to the network.
pub(crate) enum Sent {
    /// On its way (twice if duplicated).
    Queued,
    /// Dropped at once.
    Dropped(DropReason),
}

/// Loss, delay and duplication of one phase of a run. A [`Scenario`](super::Scenario) draws the
/// fault phase's; the heal phase's has no loss, duplication or held-back messages, and short
/// delays.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quality {
    /// Probability that a message is lost.
    pub drop: f64,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// Every message is delayed uniformly within `[delay_min, delay_max]`, which reorders them.
    pub delay_min: Nanos,
    /// See `delay_min`.
    pub delay_max: Nanos,
    /// Probability that a message is held back much longer.
    pub long_delay: f64,
    /// The longest extra delay of a held-back message.
    pub long_delay_max: Nanos,
    /// Probability that a reply is held back for one to three election timeouts, like the
    /// tester's long reordering: it answers a request of a term long gone.
    pub late_reply: f64,
}

impl Quality {
    /// This quality without loss, duplication or held-back messages, and with delays of at most
    /// 30 ms (or `delay_min`): short next to any election timeout, as Raft's liveness needs.
    pub fn reliable(self) -> Self {
        Self {
            drop: 0.0,
            duplicate: 0.0,
            delay_max: self.delay_max.min(30 * 1_000_000).max(self.delay_min),
            long_delay: 0.0,
            late_reply: 0.0,
            ..self
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
    /// The unit of a late reply's delay: the longest election timeout.
    election_timeout: Nanos,
}

impl Network {
    pub fn new(n: usize, quality: Quality, election_timeout: Nanos) -> Self {
        Self {
            n,
            heap: BinaryHeap::new(),
            seq: 0,
            blocked: vec![false; n * n],
            quality,
            election_timeout,
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
            d += rng.u64(self.election_timeout..=3 * self.election_timeout);
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
