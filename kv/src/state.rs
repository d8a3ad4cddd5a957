//! [`KvState`]: the service's state as one node has applied it, shared between the node's thread,
//! which applies committed commands ([`crate::KvMachine`]), and the server's connection threads,
//! which read it for `Get`s and wait in it for their commands to be applied.
//!
//! It is a `Mutex` and a `Condvar`: the engine's hot paths take no lock, but this is the service
//! layer above it, where a client request costs a network round trip and a lock held for one
//! map operation is not what limits throughput. The node's thread takes the lock once per
//! applied entry and once per batch to publish how far it applied (and wake the waiters);
//! connection threads take it to read a value or to check whether their request was applied.
//!
//! For a snapshot ([`zeroraft_engine::Config::compaction`]) the node's thread holds the lock only
//! while it takes a copy-on-write view of the store ([`crate::map`]): a few hundred reference
//! counts and a copy of the sessions. The view is serialized on the node's snapshot thread,
//! without the lock.
//!
//! Invariant: `applied` is the last index whose entry the store reflects; it only grows (a
//! snapshot restored by the node lies beyond what it had applied).

use std::sync::atomic::{AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::members::{AddressBook, MemberChange};
use crate::store::{Outcome, Store};

/// How often a waiter checks whether it should give up early (the node was killed, the server
/// is shutting down) while it waits for an index to be applied.
const POLL: Duration = Duration::from_millis(20);

/// How many of the last applied indices [`KvState`] remembers the term of.
const RECENT: usize = 1 << 16;

/// The key-value state one node has applied, shared by its [`crate::KvMachine`] and its
/// [`crate::KvServer`]. Create it, start the node with [`KvState::machine`], and hand the same
/// `Arc` to the server.
///
/// Besides the locked store, it publishes without a lock how far it applied and, for each of
/// the last 65 536 entries applied, its term and what applying it came to, so
/// that a request can learn its outcome without taking the lock the node's thread applies
/// under: the entry at the index a command was proposed at is that command exactly when its
/// term is the one it was proposed in (Log Matching, §5.3 of the Raft paper).
///
/// # Orderings
///
/// Each slot is one word: the outcome, the entry's generation (its index divided by 65 536,
/// modulo 2^16) and its term (below 2^40; an entry of a later term is not recorded, and its
/// request is answered from the locked store). The node's thread stores each entry's word
/// (`Relaxed`), then, once per batch, the applied index (`Release`). A reader that loads the
/// applied index (`Acquire`) and sees `i` also sees the words stored for every index up to
/// `i`. A slot is overwritten only by the entry 65 536 indices later, which may be stored but
/// not yet published while a reader looks: its generation differs, and the reader falls back to
/// the locked store, as it does for an index older than the last 65 536 applied. A restored
/// snapshot clears the slots of the indices it skipped.
pub struct KvState {
    inner: Mutex<Inner>,
    /// Told of every change to the address book this node applies, and of the whole book when
    /// a snapshot is restored: the node's transport ([`KvState::on_member`]).
    member_hook: OnceLock<MemberHook>,
    /// Notified whenever `applied` moves, if someone waits.
    applied_changed: Condvar,
    /// The last index applied, published after the slots.
    applied: AtomicU64,
    /// `slots[i % RECENT]`: the term and outcome of entry `i`, for the last [`RECENT`] entries
    /// applied (see [`slot`]; 0 for none).
    slots: Box<[AtomicU64]>,
}

/// What [`KvState::on_member`] is given.
type MemberHook = Box<dyn Fn(&MemberChange) + Send + Sync>;

impl std::fmt::Debug for KvState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvState")
            .field("applied", &self.applied)
            .finish_non_exhaustive()
    }
}

impl Default for KvState {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            member_hook: OnceLock::new(),
            applied_changed: Condvar::new(),
            applied: AtomicU64::new(0),
            slots: (0..RECENT).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// What the lock protects.
#[derive(Debug, Default)]
pub(crate) struct Inner {
    pub(crate) store: Store,
    /// The last index applied to `store`.
    pub(crate) applied: u64,
    /// Threads waiting on `applied_changed`.
    waiters: usize,
}

/// What applying an entry came to, as far as answering the request that proposed it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Applied, or a retry of a write applied before, or a session registered.
    Done = 1,
    /// [`Outcome::Stale`].
    Stale = 2,
    /// [`Outcome::SessionExpired`].
    SessionExpired = 3,
    /// [`Outcome::Refused`].
    Refused = 4,
    /// [`Outcome::Conflict`].
    Conflict = 5,
    /// Not a request: a no-op or a malformed entry.
    NotARequest = 6,
    /// [`Outcome::TooLarge`].
    TooLarge = 7,
}

impl Settled {
    fn of(outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Applied | Outcome::Duplicate | Outcome::Registered => Self::Done,
            Outcome::Stale => Self::Stale,
            Outcome::SessionExpired => Self::SessionExpired,
            Outcome::Refused => Self::Refused,
            Outcome::Conflict => Self::Conflict,
            Outcome::TooLarge => Self::TooLarge,
            Outcome::Member { admitted: true, .. } => Self::Done,
            Outcome::Member {
                admitted: false, ..
            } => Self::Refused,
            Outcome::NoOp | Outcome::Malformed(_) => Self::NotARequest,
        }
    }

    fn from_code(code: u64) -> Self {
        match code {
            1 => Self::Done,
            2 => Self::Stale,
            3 => Self::SessionExpired,
            4 => Self::Refused,
            5 => Self::Conflict,
            7 => Self::TooLarge,
            _ => Self::NotARequest,
        }
    }
}

/// What the lock-free record says of the entry at the index a request was proposed at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EntryCheck {
    /// Not known without the lock.
    Unknown,
    /// Another proposal's entry (another leader's) took the index.
    Replaced,
    /// The request's own entry, applied with this outcome.
    Ours(Settled),
}

/// Bits of a slot holding the term.
const TERM_BITS: u32 = 40;
/// Bits of a slot holding the generation, above the term.
const GENERATION_BITS: u32 = 16;

/// The slot word of the entry at `index` of `term` that came to `settled`: 0 (nothing
/// recorded) for a term too large to pack.
fn slot(index: u64, term: u64, settled: Settled) -> u64 {
    if term >> TERM_BITS != 0 {
        return 0;
    }
    (settled as u64) << (TERM_BITS + GENERATION_BITS) | generation(index) << TERM_BITS | term
}

fn generation(index: u64) -> u64 {
    (index / RECENT as u64) & ((1 << GENERATION_BITS) - 1)
}

/// Why [`KvState::wait_until`] returned without the index applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WaitEnd {
    TimedOut,
    Stopped,
}

impl KvState {
    /// An empty state: no keys, no sessions, nothing applied.
    pub fn new() -> Self {
        Self::default()
    }

    /// Has `hook` told, on the node's thread, of every change to the address book
    /// ([`crate::members`]) applied from now on, and of every entry of the book when a snapshot
    /// is restored. Only the first call takes effect; returns whether this one did. Set it
    /// before the node starts, so that changes replayed from its log are told too.
    pub fn on_member(&self, hook: impl Fn(&MemberChange) + Send + Sync + 'static) -> bool {
        self.member_hook.set(Box::new(hook)).is_ok()
    }

    /// Tells the hook of `change`, if there is one.
    pub(crate) fn member_changed(&self, change: &MemberChange) {
        if let Some(hook) = self.member_hook.get() {
            hook(change);
        }
    }

    /// The address book as this node has applied it.
    pub fn address_book(&self) -> AddressBook {
        self.lock().store.book().clone()
    }

    /// The last log index applied to this state.
    pub fn applied_index(&self) -> u64 {
        self.lock().applied
    }

    /// The value of `key` as this node has applied it, if it has one. Not linearizable on its
    /// own: the server reads through [`zeroraft_engine::Raft::read_index`] first.
    pub fn get(&self, key: &[u8]) -> Option<Bytes> {
        self.lock().store.get(key).map(Bytes::copy_from_slice)
    }

    /// The `ack` of session `session` as this node has applied it (the lowest request number
    /// whose answer its client may still ask for), or `None` if the session is not open here.
    pub fn session_ack(&self, session: u64) -> Option<u64> {
        self.lock().store.sessions().ack(session)
    }

    /// The number of sessions open as this node has applied them.
    pub fn session_count(&self) -> usize {
        self.lock().store.sessions().len()
    }

    /// The number of keys with a value.
    pub fn len(&self) -> usize {
        self.lock().store.len()
    }

    /// Whether no key has a value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until `index` is applied, for at most `timeout`; returns whether it is.
    pub fn wait_applied(&self, index: u64, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        self.wait_until(index, deadline, || false).is_ok()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the term of the entry applied at `index` and what applying it came to
    /// (published by the next [`KvState::set_applied`]).
    pub(crate) fn record_entry(&self, index: u64, term: u64, outcome: &Outcome) {
        let word = slot(index, term, Settled::of(outcome));
        self.slots[index as usize % RECENT].store(word, Relaxed);
    }

    /// Whether the entry applied at `index` is the one proposed at `index` in `term`, and if so
    /// what it came to: [`EntryCheck::Unknown`] if that is no longer (or was never) known
    /// without the lock.
    pub(crate) fn check_entry(&self, index: u64, term: u64) -> EntryCheck {
        let applied = self.applied.load(Acquire);
        if index > applied || applied - index >= RECENT as u64 || term >> TERM_BITS != 0 {
            return EntryCheck::Unknown;
        }
        let word = self.slots[index as usize % RECENT].load(Relaxed);
        let found_term = word & ((1 << TERM_BITS) - 1);
        let found_generation = (word >> TERM_BITS) & ((1 << GENERATION_BITS) - 1);
        if word == 0 || found_generation != generation(index) {
            EntryCheck::Unknown
        } else if found_term != term {
            EntryCheck::Replaced
        } else {
            EntryCheck::Ours(Settled::from_code(word >> (TERM_BITS + GENERATION_BITS)))
        }
    }

    /// Records that everything up to `index` is applied, with `store` replacing the state if it
    /// is given (a restored snapshot), and wakes the waiters.
    pub(crate) fn set_applied(&self, index: u64, store: Option<Store>) {
        let mut inner = self.lock();
        if let Some(store) = store {
            // The snapshot skipped entries that were never recorded: forget their slots.
            for skipped in inner.applied + 1..=index.min(inner.applied + RECENT as u64) {
                self.slots[skipped as usize % RECENT].store(0, Relaxed);
            }
            inner.store = store;
        }
        inner.applied = index;
        self.applied.store(index, Release);
        let waiters = inner.waiters;
        drop(inner);
        if waiters > 0 {
            self.applied_changed.notify_all();
        }
    }

    /// Waits until `index` is applied, or gives up at `deadline` or when `stop` says so, without
    /// taking the lock if it is applied already. It does not spin: on a machine with few cores
    /// the node's thread, which it waits for, may need the core.
    pub(crate) fn wait_applied_until(
        &self,
        index: u64,
        deadline: Instant,
        stop: impl Fn() -> bool,
    ) -> Result<(), WaitEnd> {
        if self.applied.load(Acquire) >= index {
            return Ok(());
        }
        self.wait_until(index, Some(deadline), stop).map(drop)
    }

    /// Waits until `index` is applied and returns the locked state, or gives up at `deadline`
    /// (`None`: never), or as soon as `stop` says so (checked every [`POLL`], under the lock: it
    /// must not block).
    pub(crate) fn wait_until(
        &self,
        index: u64,
        deadline: Option<Instant>,
        stop: impl Fn() -> bool,
    ) -> Result<MutexGuard<'_, Inner>, WaitEnd> {
        let mut inner = self.lock();
        loop {
            if inner.applied >= index {
                return Ok(inner);
            }
            if stop() {
                return Err(WaitEnd::Stopped);
            }
            let left = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => POLL,
            };
            if left.is_zero() {
                return Err(WaitEnd::TimedOut);
            }
            inner.waiters += 1;
            inner = self
                .applied_changed
                .wait_timeout(inner, left.min(POLL))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            inner.waiters -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_waiter_wakes_when_its_index_is_applied() {
        let state = Arc::new(KvState::new());
        let waiter = {
            let state = state.clone();
            std::thread::spawn(move || state.wait_applied(5, Duration::from_secs(30)))
        };
        state.set_applied(4, None);
        state.set_applied(5, None);
        assert!(waiter.join().unwrap());
        assert!(!state.wait_applied(6, Duration::from_millis(1)));
        let stopped = state.wait_until(6, None, || true);
        assert_eq!(stopped.err(), Some(WaitEnd::Stopped));
    }

    #[test]
    fn the_slot_of_an_applied_index_tells_whose_entry_it_was_and_its_outcome() {
        let state = KvState::new();
        state.record_entry(1, 2, &Outcome::Applied);
        state.record_entry(2, 3, &Outcome::Stale);
        // Not published before the batch's applied index.
        assert_eq!(
            state.check_entry(1, 2),
            EntryCheck::Unknown,
            "before set_applied"
        );
        state.set_applied(2, None);
        let cases = [
            ((1, 2), EntryCheck::Ours(Settled::Done)),
            ((1, 1), EntryCheck::Replaced),
            ((2, 3), EntryCheck::Ours(Settled::Stale)),
            ((3, 3), EntryCheck::Unknown),
            // A term too large to pack is never taken for another's entry.
            ((2, 3 | 1 << TERM_BITS), EntryCheck::Unknown),
        ];
        for (case, ((index, term), expected)) in cases.into_iter().enumerate() {
            assert_eq!(state.check_entry(index, term), expected, "case {case}");
        }
        // A snapshot up to 10 skips indices 3..=10: their slots hold nothing.
        state.record_entry(9, 3, &Outcome::Applied); // as if left by a restore's race
        state.set_applied(10, Some(Store::default()));
        assert_eq!(state.check_entry(9, 3), EntryCheck::Unknown, "skipped");
        assert_eq!(
            state.check_entry(2, 3),
            EntryCheck::Ours(Settled::Stale),
            "applied before the snapshot"
        );
        // The entry RECENT indices later, stored but not yet published, takes the slot: its
        // generation tells it apart.
        state.record_entry(2 + RECENT as u64, 3, &Outcome::Applied);
        assert_eq!(state.check_entry(2, 3), EntryCheck::Unknown, "overwritten");
        // An index too old to be remembered.
        state.set_applied(10 + RECENT as u64, None);
        assert_eq!(
            state.check_entry(3, 3),
            EntryCheck::Unknown,
            "older than RECENT"
        );
        // Every outcome survives the packing.
        let outcomes = [
            (Outcome::Duplicate, Settled::Done),
            (Outcome::Registered, Settled::Done),
            (Outcome::SessionExpired, Settled::SessionExpired),
            (Outcome::Refused, Settled::Refused),
            (Outcome::Conflict, Settled::Conflict),
            (Outcome::TooLarge, Settled::TooLarge),
            (Outcome::NoOp, Settled::NotARequest),
        ];
        let index = 11 + RECENT as u64;
        for (case, (outcome, settled)) in outcomes.into_iter().enumerate() {
            state.record_entry(index, (1 << TERM_BITS) - 1, &outcome);
            state.set_applied(index, None);
            assert_eq!(
                state.check_entry(index, (1 << TERM_BITS) - 1),
                EntryCheck::Ours(settled),
                "outcome {case}"
            );
        }
    }
}
