//! The proposal path's shared words and queue: the claim word [`Raft::try_start`] claims log
//! indices from, the `(term, leader)` state and the `appended` watermark published beside it,
//! and the queue that carries claimed proposals to the node's thread.
//!
//! The protocol and why its orderings suffice are the parent module's ("The hot path",
//! "Backpressure", "Orderings"); this module holds the code those paragraphs speak of, small
//! enough for loom to check against every interleaving (`loom_tests` below).
//!
//! [`Raft::try_start`]: super::Raft::try_start

use bytes::Bytes;
use crossbeam_utils::CachePadded;
use zeroraft_transport::Waker;

use crate::sync::{ArrayQueue, AtomicU64, Ordering::*, SegQueue};

/// Claim word bit: the node leads and accepts proposals.
const LEADING: u64 = 1 << 63;
/// Claim word bits 47..=62: the leadership epoch.
const EPOCH_SHIFT: u32 = 47;
/// Claim word bits 0..=46: the next free log index.
const INDEX_MASK: u64 = (1 << EPOCH_SHIFT) - 1;

/// Packs a claim word: the leading bit, `epoch` modulo 2^16 and the next free index.
fn claim_word(leading: bool, epoch: u64, next_index: u64) -> u64 {
    debug_assert!(next_index <= INDEX_MASK);
    let leading = if leading { LEADING } else { 0 };
    leading | (epoch & 0xffff) << EPOCH_SHIFT | next_index
}

/// Why [`Lease::claim`] claimed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// The node does not lead.
    NotLeader,
    /// The index to claim lies more than `max_queued` beyond `appended`.
    Busy,
}

/// The node's leadership as `start` sees it: what the node thread publishes, and the claim
/// word callers claim indices from.
pub(super) struct Lease {
    /// `term << 1 | is_leader`.
    state: AtomicU64,
    /// `LEADING | epoch << EPOCH_SHIFT | next_index` while leading; without the leading bit
    /// otherwise.
    claim: CachePadded<AtomicU64>,
    /// The last index the node has appended to its log, published while it leads: an index is
    /// claimed only while fewer than `max_queued` claimed ones lie beyond it.
    appended: CachePadded<AtomicU64>,
    /// [`Config::max_queued_proposals`](crate::Config::max_queued_proposals).
    max_queued: u64,
}

impl Lease {
    /// A node that does not lead, in `term`.
    pub(super) fn new(term: u64, max_queued: u64) -> Self {
        Self {
            state: AtomicU64::new(term << 1),
            claim: CachePadded::new(AtomicU64::new(0)),
            appended: CachePadded::new(AtomicU64::new(0)),
            max_queued,
        }
    }

    /// How many claimed indices may lie beyond `appended`.
    pub(super) fn max_queued(&self) -> u64 {
        self.max_queued
    }

    /// Publishes `(term, leader)` without touching the claim word: for a change of term that
    /// does not change whether the node leads.
    pub(super) fn publish_state(&self, term: u64, leader: bool) {
        self.state.store(term << 1 | u64::from(leader), Release);
    }

    /// `(term, is_leader)` as last published, with one `Acquire` load.
    #[inline]
    pub(super) fn load_state(&self) -> (u64, bool) {
        let word = self.state.load(Acquire);
        (word >> 1, word & 1 == 1)
    }

    /// Publishes a change of leadership in `term`, in the order [`Lease::claim`] relies on:
    /// first the lease held is retired (`retire`: the epoch that retires it), then the state is
    /// published, then the new lease starts (`lead`: its epoch and the first free index), its
    /// watermark stored before its claim word.
    pub(super) fn change(&self, retire: Option<u64>, term: u64, lead: Option<(u64, u64)>) {
        if let Some(epoch) = retire {
            self.claim.store(claim_word(false, epoch, 0), Release);
        }
        self.publish_state(term, lead.is_some());
        if let Some((epoch, next)) = lead {
            // Before the claim word: a `claim` that sees the new lease sees this watermark.
            self.appended.store(next - 1, Release);
            self.claim.store(claim_word(true, epoch, next), Release);
        }
    }

    /// Retires whatever lease is published, and the leader bit, for a node thread on its way
    /// out.
    pub(super) fn retire_on_exit(&self) {
        // The leading bit, above the epoch, drops out when `claim_word` packs the word.
        let epoch = (self.claim.load(Acquire) >> EPOCH_SHIFT) + 1;
        self.claim.store(claim_word(false, epoch, 0), Release);
        let (term, _) = self.load_state();
        self.publish_state(term, false);
    }

    /// Publishes the last index the node has appended while it leads.
    #[inline]
    pub(super) fn set_appended(&self, last_index: u64) {
        self.appended.store(last_index, Release);
    }

    /// Claims the next free index of the current lease: `(index, term)`, the term being that of
    /// the lease the index was claimed in.
    ///
    /// # Errors
    ///
    /// [`Refused::NotLeader`] if no lease is published, [`Refused::Busy`] if the index lies more
    /// than `max_queued` beyond `appended`.
    #[inline]
    pub(super) fn claim(&self) -> Result<(u64, u64), Refused> {
        let mut claim = self.claim.load(Acquire);
        loop {
            if claim & LEADING == 0 {
                return Err(Refused::NotLeader);
            }
            let term = self.load_state().0;
            let index = claim & INDEX_MASK;
            if index.saturating_sub(self.appended.load(Acquire)) > self.max_queued {
                return Err(Refused::Busy);
            }
            match self
                .claim
                .compare_exchange_weak(claim, claim + 1, AcqRel, Acquire)
            {
                Ok(_) => return Ok((index, term)),
                Err(now) => claim = now,
            }
        }
    }
}

/// A command on its way from `start` to the node thread.
pub(super) struct Proposal {
    pub(super) term: u64,
    pub(super) index: u64,
    pub(super) command: Bytes,
}

/// Proposals on their way to the node's thread.
pub(super) struct Proposals {
    /// Holds `max_queued` proposals; a proposal that finds it full (possible only while
    /// proposals of an older lease still occupy it) goes to `overflow`.
    queue: ArrayQueue<Proposal>,
    overflow: SegQueue<Proposal>,
}

impl Proposals {
    /// An empty queue for `max_queued` proposals of one lease.
    pub(super) fn new(max_queued: usize) -> Self {
        Self {
            queue: ArrayQueue::new(max_queued),
            overflow: SegQueue::new(),
        }
    }

    /// Queues a claimed proposal, then wakes the node's thread through `waker`: in this order,
    /// so that the node either finds the proposal when it checks [`Proposals::is_empty`] before
    /// parking or is woken (the transport's eventcount).
    #[inline]
    pub(super) fn push(&self, proposal: Proposal, waker: &Waker) {
        if let Err(proposal) = self.queue.push(proposal) {
            self.overflow.push(proposal);
        }
        waker.wake();
    }

    /// Whether no proposal is queued.
    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.overflow.is_empty()
    }

    /// How many proposals are queued (a moment's reading, for monitoring).
    pub(super) fn len(&self) -> usize {
        self.queue.len() + self.overflow.len()
    }

    /// Takes a queued proposal, if there is one.
    #[inline]
    pub(super) fn pop(&self) -> Option<Proposal> {
        self.queue.pop().or_else(|| self.overflow.pop())
    }
}

/// The proposal path, model-checked: loom runs the real [`Lease`] and [`Proposals`] (on loom's
/// atomics and the queue stand-ins of `crate::sync`) through the interleavings of the node
/// thread and concurrent callers of `start`.
///
/// Each model was seen to fail when the protocol was weakened on purpose (the failure noted on
/// each), and passes with the code as it is. Models of three threads are too large to explore
/// exhaustively in CI time; they check every execution with at most three preemptions (loom's
/// own advice: two or three catch most bugs).
#[cfg(all(test, loom))]
mod loom_tests {
    use bytes::Bytes;
    use loom::sync::Arc;
    use loom::thread;
    use zeroraft_transport::Waiter;

    use super::{Lease, Proposal, Proposals, Refused, claim_word};
    use crate::sync::Ordering::Relaxed;

    /// A lease of `term` (epoch `epoch`) from index `next` on, as the node thread publishes it.
    fn leading(term: u64, epoch: u64, next: u64, max_queued: u64) -> Arc<Lease> {
        let lease = Arc::new(Lease::new(term, max_queued));
        lease.change(None, term, Some((epoch, next)));
        lease
    }

    /// Three threads: every execution with at most three preemptions.
    fn check_bounded(model: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(model);
    }

    /// (a) Two callers claiming at once get distinct indices of the same lease.
    ///
    /// Fails ("assertion `left != right` failed: two claims got index 1") when the claim's
    /// compare-and-swap is replaced by a load and a store.
    #[test]
    fn loom_concurrent_claims_get_distinct_indices() {
        loom::model(|| {
            let lease = leading(1, 1, 1, 2);
            let other = {
                let lease = lease.clone();
                thread::spawn(move || lease.claim())
            };
            let (mine, _) = lease.claim().expect("a lease with room");
            let (theirs, _) = other.join().unwrap().expect("a lease with room");
            assert_ne!(mine, theirs, "two claims got index {mine}");
            assert_eq!(lease.claim.load(Relaxed), claim_word(true, 1, 3));
        });
    }

    /// (b) A claim racing a change of leadership returns the term of the lease it claimed in.
    ///
    /// The node leads term 1 from index 1 on, then moves to leading term 3 from the same index
    /// (it was deposed and re-elected before any proposal was appended): only the epoch tells
    /// the two claim words apart. Which lease a successful claim came from shows in the word
    /// the node is left with: it moved past index 1 only if the claim was in the new lease.
    ///
    /// Fails ("assertion `left == right` failed: index 1 of the lease of term 1 claimed as
    /// term 3", or the mirror image) when `change` publishes the new state before retiring the
    /// old lease, when `claim` loads the state before the claim word, when `claim` loads the
    /// claim word `Relaxed`, or when the epoch is left out of the word. (Loading the state
    /// `Relaxed` is a bug loom cannot show: it lets the compare-and-swap read a value older than
    /// the state implies, and loom's read-modify-writes always read the latest value.)
    #[test]
    fn loom_claim_returns_the_term_of_its_lease() {
        loom::model(|| {
            let lease = leading(1, 1, 1, 4);
            let node = {
                let lease = lease.clone();
                thread::spawn(move || lease.change(Some(2), 3, Some((3, 1))))
            };
            let claimed = lease.claim();
            node.join().unwrap();
            let word = lease.claim.load(Relaxed);
            let lease_term = if word == claim_word(true, 3, 2) { 3 } else { 1 };
            match claimed {
                Ok((index, term)) => {
                    assert_eq!(index, 1);
                    assert_eq!(
                        term, lease_term,
                        "index 1 of the lease of term {lease_term} claimed as term {term}"
                    );
                }
                Err(refused) => {
                    assert_eq!(refused, Refused::NotLeader);
                    assert_eq!(word, claim_word(true, 3, 1), "a refusal claimed nothing");
                }
            }
            assert_eq!(lease.load_state(), (3, true));
        });
    }

    /// (c) No index is claimed more than `max_queued` beyond the `appended` of its lease, even
    /// when a new lease starts with a shorter log than the old one appended.
    ///
    /// The node leads term 1 having appended up to 10, then term 3 having appended up to 5
    /// (its log was cut back while it followed); `max_queued` is 1. Two callers claim at once.
    ///
    /// Fails ("index 7 claimed in term 3, beyond appended 5 + max_queued 1") when `change`
    /// stores the watermark after the claim word, when `claim` loads the watermark before the
    /// claim word, or when the bound is off by one. (Loading the watermark `Relaxed` passes, and
    /// rightly: the claim word's `Acquire` already orders it after the new lease's watermark.)
    #[test]
    fn loom_claims_stay_within_the_backpressure_bound() {
        check_bounded(|| {
            let lease = leading(1, 1, 11, 1);
            let claimers: Vec<_> = (0..2)
                .map(|_| {
                    let lease = lease.clone();
                    thread::spawn(move || lease.claim())
                })
                .collect();
            lease.change(Some(2), 3, Some((3, 6)));
            for claimer in claimers {
                if let Ok((index, term)) = claimer.join().unwrap() {
                    let appended = if term == 1 { 10 } else { 5 };
                    assert!(
                        index <= appended + 1,
                        "index {index} claimed in term {term}, beyond appended {appended} + \
                         max_queued 1"
                    );
                }
            }
        });
    }

    /// (d) A proposal handed over while the node thread waits (or is about to) reaches it: the
    /// node, waiting as its loop does until [`Proposals::is_empty`] turns false, takes every
    /// proposal claimed. The queue holds one, so the second goes to the overflow queue.
    ///
    /// Fails ("deadlock; threads = [(Id(0), Blocked(..)), (Id(1), Terminated), (Id(2),
    /// Terminated)]") when `Proposals::push` wakes the node before queueing the proposal, when
    /// `Proposals::is_empty` overlooks the overflow queue, or without the `SeqCst` fence in the
    /// transport's `wake`.
    #[test]
    fn loom_handed_over_proposals_reach_the_waiting_node() {
        check_bounded(|| {
            let lease = leading(1, 1, 1, 2);
            let proposals = Arc::new(Proposals::new(1));
            let waiter = Waiter::new();
            let claimers: Vec<_> = (0..2)
                .map(|_| {
                    let (lease, proposals, waker) =
                        (lease.clone(), proposals.clone(), waiter.waker());
                    thread::spawn(move || {
                        let (index, term) = lease.claim().expect("a lease with room");
                        let command = Bytes::new();
                        proposals.push(
                            Proposal {
                                term,
                                index,
                                command,
                            },
                            &waker,
                        );
                    })
                })
                .collect();
            let mut taken = Vec::new();
            while taken.len() < 2 {
                match proposals.pop() {
                    Some(proposal) => taken.push(proposal.index),
                    None => waiter.wait(&|| !proposals.is_empty()),
                }
            }
            taken.sort_unstable();
            assert_eq!(taken, [1, 2]);
            for claimer in claimers {
                claimer.join().unwrap();
            }
        });
    }
}
