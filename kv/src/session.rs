//! Client sessions (§6.3 of the Raft dissertation): what lets the service apply each client
//! request at most once, and never answer `Ok` to one it did not apply.
//!
//! # What a session guarantees
//!
//! - Each request `(session, seq)` is applied at most once, however often it is retried.
//! - An answer `Ok` means that this very request was applied (by this attempt or an earlier
//!   one): a retry is answered with the answer recorded when it was applied; a request that
//!   reuses a recorded `(session, seq)` for something else is refused.
//! - `Stale`: `seq` is below the session's `ack`; the client acknowledged that answer already,
//!   so this is a very late copy. Nothing is done.
//! - `SessionExpired`: the session is not open. Nothing is done now, but an earlier attempt of
//!   the request may have been applied: its outcome is unknown.
//! - A session lives for at least [`SessionOptions::timeout`] (1 hour by default) after its last
//!   request through the log, in log time, and until the next `Register` after that; and while
//!   it is not the least recently active of [`SessionOptions::max_sessions`] (10 000) when one
//!   more registers. Reads answered without the log do not keep it open.
//!
//! # How
//!
//! A client opens a session with a `Register` command; the session's id is the log index of
//! that command, so it is unique and the same on every node. Each request of the session
//! carries `(session, seq, ack)`: `seq` numbers the session's requests, and `ack` is the lowest
//! `seq` whose answer the client still needs (it has the answers of every request below). The
//! session keeps the answer of each applied request at or above its `ack`, so applying a
//! request `(session, seq, ack)` is, in order:
//!
//! 1. an unknown session (never opened, expired or evicted): **`SessionExpired`**, nothing
//!    changes;
//! 2. `seq` below the session's `ack`: **`Stale`**, nothing changes (the client had its answer:
//!    this is a very late copy);
//! 3. the session's `ack` rises to `ack` (never above `seq`), and the answers below it are
//!    forgotten;
//! 4. an answer recorded for `seq`: **`Duplicate`**, answered with that answer, nothing changes
//!    (unless the recorded request differs from this one: **`Conflict`**, nothing changes);
//! 5. `seq` at or beyond `ack + MAX_UNACKNOWLEDGED`: **`Refused`**, nothing changes;
//! 6. otherwise the request is applied and its answer recorded.
//!
//! Worked example, a pipelined retry: requests 5 and 6 are sent with `ack = 5`; 5 is answered
//! `Busy` (never proposed), 6 is applied. The retry of 5, still with `ack = 5`, finds no answer
//! recorded for 5 and is applied now. Under a table of the highest `seq` applied per client, as
//! before sessions, it would have been taken for a duplicate of something older than 6 and
//! answered `Ok` without being applied.
//!
//! Every node must reach the same outcome for the same entry, so expiry uses no node's clock:
//! the server that proposes an entry stamps it with its clock, and the table keeps a log time,
//! the highest stamp applied. A session's last activity is the log time of its last request
//! that got past step 2. When a `Register` is applied, the sessions idle for longer than the
//! timeout it carries ([`SessionOptions::timeout`] of the proposing server) are dropped, then,
//! while the table holds its maximum ([`SessionOptions::max_sessions`]), the least recently
//! active one. Sessions are kept in order of last activity, so both cost O(1) per session
//! dropped.
//!
//! Invariants: every recorded answer's `seq` is in `ack..ack + MAX_UNACKNOWLEDGED`, and the
//! answers of a session are sorted by `seq`; the activity order lists every session once, and
//! last activities never decrease along it (log time only grows); no last activity is above the
//! log time.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use bytes::Bytes;

use crate::protocol::{DecodeError, MAX_UNACKNOWLEDGED, get_u8, get_u64};

/// How long sessions live and how many are kept: see the [module docs](self). The values of the
/// server that proposes a `Register` are written into it, and every node applies those, so
/// servers with different settings still agree; give every server the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionOptions {
    /// A session idle for longer than this (in log time, the proposing servers' clocks) is
    /// dropped when a client next registers. Default 1 hour.
    pub timeout: Duration,
    /// The most sessions kept: registering one more drops the least recently active. Default
    /// 10 000; 0 counts as 1.
    pub max_sessions: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(3600),
            max_sessions: 10_000,
        }
    }
}

/// The answer recorded for an applied request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// A `Put` or `Append`: done. No heap value, so recording one allocates nothing.
    Written,
    /// A `Get` through the log: the value it read.
    Value(Bytes),
    /// A `Put` or `Append` refused: the value would have grown past
    /// [`crate::protocol::MAX_VALUE`]. Nothing was written.
    TooLarge,
}

/// An applied request's answer, as a session keeps it until the client acknowledges it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Recorded {
    seq: u64,
    /// The request's [`crate::command::fingerprint`].
    fingerprint: u64,
    answer: Answer,
}

/// One session.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Session {
    /// The lowest `seq` whose answer the client may still ask for.
    ack: u64,
    /// The log time of its last request.
    last_active: u64,
    /// Invariant: sorted by `seq`, each in `ack..ack + MAX_UNACKNOWLEDGED`. Its capacity is
    /// kept as answers come and go, so that in steady state recording allocates nothing.
    answers: VecDeque<Recorded>,
    /// The next less recently active session (0: none, this is the least recently active).
    older: u64,
    /// The next more recently active session (0: none, this is the most recently active).
    newer: u64,
}

/// Why a request is not applied: its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The session is not in the table.
    Expired,
    /// `seq` is below the session's `ack`.
    Stale,
    /// An answer is recorded for `seq`, of this very request.
    Duplicate,
    /// An answer is recorded for `seq`, of another request.
    Conflict,
    /// `seq` is too far beyond the session's `ack`.
    Refused,
}

/// What a server finds when it looks for the answer to a request ([`Sessions::lookup`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Lookup<'a> {
    /// The session is not in the table.
    Expired,
    /// `seq` is below the session's `ack`.
    Stale,
    /// The request was applied; this is its answer.
    Answered(&'a Answer),
    /// Another request was applied under the same `(session, seq)`.
    Conflict,
    /// The request has not been applied.
    NotApplied,
}

/// Where the answer of `seq` is in `answers` (sorted by `seq`), or where it would go. A client
/// numbers its requests one after another, so the answers are usually consecutive: the place
/// `seq` would have among consecutive answers, or the end, is tried before a binary search.
fn find(answers: &VecDeque<Recorded>, seq: u64) -> Result<usize, usize> {
    let (Some(first), Some(last)) = (answers.front(), answers.back()) else {
        return Err(0);
    };
    if seq > last.seq {
        return Err(answers.len());
    }
    if let Some(at) = seq
        .checked_sub(first.seq)
        .and_then(|d| usize::try_from(d).ok())
        && answers.get(at).is_some_and(|r| r.seq == seq)
    {
        return Ok(at);
    }
    answers.binary_search_by_key(&seq, |r| r.seq)
}

/// The sessions of the service: the part of the replicated state that makes requests apply at
/// most once. See the [module docs](self).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sessions {
    table: HashMap<u64, Session, IdHash>,
    /// The least recently active session (0: none).
    oldest: u64,
    /// The most recently active session (0: none).
    newest: u64,
    /// The highest stamp of the entries applied, in milliseconds.
    log_time: u64,
}

impl Sessions {
    /// Moves the log time to `stamp` if it is later.
    pub(crate) fn observe(&mut self, stamp: u64) {
        self.log_time = self.log_time.max(stamp);
    }

    /// The number of sessions.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// The `ack` of `session`, if it is in the table.
    pub(crate) fn ack(&self, session: u64) -> Option<u64> {
        self.table.get(&session).map(|s| s.ack)
    }

    /// Opens session `id` (the index of its `Register`), after dropping the sessions idle for
    /// longer than `timeout_ms` and, while there are `max_sessions` or more, the least recently
    /// active.
    pub(crate) fn register(&mut self, id: u64, timeout_ms: u64, max_sessions: u64) {
        while self.oldest != 0
            && self
                .log_time
                .saturating_sub(self.table[&self.oldest].last_active)
                > timeout_ms
        {
            self.remove(self.oldest);
        }
        let max = usize::try_from(max_sessions.max(1)).unwrap_or(usize::MAX);
        while self.table.len() >= max {
            self.remove(self.oldest);
        }
        // An index is applied once, so `id` is new; should it not be, it starts afresh.
        self.remove(id);
        self.table.insert(
            id,
            Session {
                ack: 0,
                last_active: self.log_time,
                answers: VecDeque::new(),
                older: self.newest,
                newer: 0,
            },
        );
        self.link_newest(id);
    }

    /// The steps of the [module docs](self) for request `seq` of `session`, acknowledging
    /// everything below `ack`: if the session admits the request, runs `apply` and records the
    /// answer it returns; otherwise says why not. In steady state it allocates nothing for an
    /// [`Answer::Written`], and looks up one session, or four when the session was not the most
    /// recently active.
    pub(crate) fn admit(
        &mut self,
        session: u64,
        seq: u64,
        ack: u64,
        fingerprint: u64,
        apply: impl FnOnce() -> Answer,
    ) -> Result<(), Refusal> {
        let newest = self.newest;
        let Some(s) = self.table.get_mut(&session) else {
            return Err(Refusal::Expired);
        };
        if seq < s.ack {
            return Err(Refusal::Stale);
        }
        // A request still needs its own answer: an `ack` above `seq` counts as `seq`.
        let ack = ack.min(seq);
        if ack > s.ack {
            s.ack = ack;
            while s.answers.front().is_some_and(|r| r.seq < ack) {
                s.answers.pop_front();
            }
        }
        s.last_active = self.log_time;
        let outcome = match find(&s.answers, seq) {
            Ok(at) if s.answers[at].fingerprint == fingerprint => Err(Refusal::Duplicate),
            Ok(_) => Err(Refusal::Conflict),
            Err(_) if seq - s.ack >= MAX_UNACKNOWLEDGED => Err(Refusal::Refused),
            Err(at) => {
                let recorded = Recorded {
                    seq,
                    fingerprint,
                    answer: apply(),
                };
                // A client's requests mostly arrive in order: the answer goes last.
                if at == s.answers.len() {
                    s.answers.push_back(recorded);
                } else {
                    s.answers.insert(at, recorded);
                }
                Ok(())
            }
        };
        if newest != session {
            let (older, newer) = (s.older, s.newer);
            (s.older, s.newer) = (newest, 0);
            self.move_to_newest(session, older, newer);
        }
        outcome
    }

    /// What became of request `seq` of `session` whose digest is `fingerprint`, as far as the
    /// table can tell.
    pub(crate) fn lookup(&self, session: u64, seq: u64, fingerprint: u64) -> Lookup<'_> {
        let Some(s) = self.table.get(&session) else {
            return Lookup::Expired;
        };
        if seq < s.ack {
            return Lookup::Stale;
        }
        match find(&s.answers, seq) {
            Ok(at) if s.answers[at].fingerprint == fingerprint => {
                Lookup::Answered(&s.answers[at].answer)
            }
            Ok(_) => Lookup::Conflict,
            Err(_) => Lookup::NotApplied,
        }
    }

    /// Makes `id`, which was between `older` and `newer` in the activity order and whose own
    /// links already point at the current newest and at nothing, the most recently active.
    fn move_to_newest(&mut self, id: u64, older: u64, newer: u64) {
        debug_assert!(newer != 0, "session {id} is not the newest");
        match older {
            0 => self.oldest = newer,
            o => self.table.get_mut(&o).expect("older exists").newer = newer,
        }
        self.table.get_mut(&newer).expect("newer exists").older = older;
        self.link_newest(id);
    }

    /// Links `id`, whose `older` is the current newest, at the newest end.
    fn link_newest(&mut self, id: u64) {
        match self.newest {
            0 => self.oldest = id,
            newest => self.table.get_mut(&newest).expect("newest exists").newer = id,
        }
        self.newest = id;
    }

    /// Takes `id` out of the activity order (it stays in the table).
    fn unlink(&mut self, id: u64) {
        let (older, newer) = {
            let s = &self.table[&id];
            (s.older, s.newer)
        };
        match older {
            0 => self.oldest = newer,
            o => self.table.get_mut(&o).expect("older exists").newer = newer,
        }
        match newer {
            0 => self.newest = older,
            n => self.table.get_mut(&n).expect("newer exists").older = older,
        }
    }

    /// Drops session `id`, if it exists.
    fn remove(&mut self, id: u64) {
        if self.table.contains_key(&id) {
            self.unlink(id);
            self.table.remove(&id);
        }
    }

    /// Bytes [`Sessions::encode`] writes, for sizing its buffer.
    pub(crate) fn encoded_len(&self) -> usize {
        16 + self
            .table
            .values()
            .map(|s| {
                32 + s
                    .answers
                    .iter()
                    .map(|r| match &r.answer {
                        Answer::Written | Answer::TooLarge => 17,
                        Answer::Value(v) => 25 + v.len(),
                    })
                    .sum::<usize>()
            })
            .sum::<usize>()
    }

    /// Appends the table in its snapshot format: the log time `u64`, the number of sessions
    /// `u64`, then each session from the least to the most recently active: id `u64`, ack
    /// `u64`, last activity `u64`, the number of answers `u64`, and each answer by increasing
    /// `seq`: seq `u64`, kind `u8` (1 written, 2 value, 3 too large), fingerprint `u64` and,
    /// for a value, its length `u64` and bytes.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.log_time.to_le_bytes());
        out.extend_from_slice(&(self.table.len() as u64).to_le_bytes());
        let mut id = self.oldest;
        while id != 0 {
            let s = &self.table[&id];
            for value in [id, s.ack, s.last_active, s.answers.len() as u64] {
                out.extend_from_slice(&value.to_le_bytes());
            }
            for r in &s.answers {
                out.extend_from_slice(&r.seq.to_le_bytes());
                out.push(match r.answer {
                    Answer::Written => WRITTEN,
                    Answer::Value(_) => VALUE,
                    Answer::TooLarge => TOO_LARGE,
                });
                out.extend_from_slice(&r.fingerprint.to_le_bytes());
                if let Answer::Value(v) = &r.answer {
                    out.extend_from_slice(&(v.len() as u64).to_le_bytes());
                    out.extend_from_slice(v);
                }
            }
            id = s.newer;
        }
    }

    /// Reads a table in the format of [`Sessions::encode`], checking every invariant of the
    /// [module docs](self): a snapshot that breaks one is refused, not restored.
    pub(crate) fn decode(data: &mut Bytes) -> Result<Self, DecodeError> {
        let invalid = |what| Err(DecodeError::Invalid(what));
        let log_time = get_u64(data)?;
        let count = bounded_count(data, 32)?;
        let mut sessions = Self {
            table: HashMap::with_capacity_and_hasher(count, IdHash),
            oldest: 0,
            newest: 0,
            log_time,
        };
        for _ in 0..count {
            let id = get_u64(data)?;
            let ack = get_u64(data)?;
            let last_active = get_u64(data)?;
            let answers = bounded_count(data, 17)?;
            if id == 0 {
                return invalid("snapshot (session 0)");
            }
            let previous = match sessions.newest {
                0 => 0,
                newest => sessions.table[&newest].last_active,
            };
            if last_active > log_time || last_active < previous {
                return invalid("snapshot (session activity out of order)");
            }
            if answers as u64 > MAX_UNACKNOWLEDGED {
                return invalid("snapshot (too many answers in a session)");
            }
            let mut s = Session {
                ack,
                last_active,
                answers: VecDeque::with_capacity(answers),
                older: sessions.newest,
                newer: 0,
            };
            for _ in 0..answers {
                let seq = get_u64(data)?;
                let kind = get_u8(data)?;
                let fingerprint = get_u64(data)?;
                let answer = match kind {
                    WRITTEN => Answer::Written,
                    TOO_LARGE => Answer::TooLarge,
                    VALUE => {
                        let len = usize::try_from(get_u64(data)?).unwrap_or(usize::MAX);
                        if data.len() < len {
                            return Err(DecodeError::Truncated);
                        }
                        Answer::Value(data.split_to(len))
                    }
                    _ => return invalid("snapshot (answer kind)"),
                };
                let after_last = s.answers.back().is_none_or(|last| last.seq < seq);
                if seq < ack || seq - ack >= MAX_UNACKNOWLEDGED || !after_last {
                    return invalid("snapshot (answer outside its session's window)");
                }
                s.answers.push_back(Recorded {
                    seq,
                    fingerprint,
                    answer,
                });
            }
            match sessions.table.entry(id) {
                Entry::Occupied(_) => return invalid("snapshot (a session appears twice)"),
                Entry::Vacant(v) => {
                    v.insert(s);
                }
            }
            sessions.link_newest(id);
        }
        Ok(sessions)
    }

    /// Checks every invariant of the [module docs](self): O(sessions + answers), for tests.
    #[cfg(test)]
    pub(crate) fn check(&self) {
        let mut seen = 0;
        let mut id = self.oldest;
        let mut older = 0;
        let mut last_active = 0;
        while id != 0 {
            let s = &self.table[&id];
            assert_eq!(s.older, older, "session {id}: its older neighbour");
            assert!(s.last_active >= last_active, "session {id}: activity order");
            assert!(
                s.last_active <= self.log_time,
                "session {id}: after log time"
            );
            let mut seq = None;
            for r in &s.answers {
                assert!(r.seq >= s.ack && r.seq - s.ack < MAX_UNACKNOWLEDGED);
                assert!(seq < Some(r.seq), "session {id}: answers sorted");
                seq = Some(r.seq);
            }
            (older, last_active, id) = (id, s.last_active, s.newer);
            seen += 1;
        }
        assert_eq!(self.newest, older, "the newest session");
        assert_eq!(
            seen,
            self.table.len(),
            "every session in the activity order"
        );
    }

    /// The sessions from the least to the most recently active, for tests.
    #[cfg(test)]
    pub(crate) fn by_activity(&self) -> Vec<u64> {
        let mut order = Vec::new();
        let mut id = self.oldest;
        while id != 0 {
            order.push(id);
            id = self.table[&id].newer;
        }
        order
    }

    /// The `seq`s with a recorded answer in `session`, for tests.
    #[cfg(test)]
    pub(crate) fn answered(&self, session: u64) -> Vec<u64> {
        self.table
            .get(&session)
            .map(|s| s.answers.iter().map(|r| r.seq).collect())
            .unwrap_or_default()
    }
}

const WRITTEN: u8 = 1;
const VALUE: u8 = 2;
const TOO_LARGE: u8 = 3;

/// Hashes session ids for the table with one multiplication instead of SipHash: the apply
/// path looks sessions up several times per entry. The table's keys are log indexes, chosen by
/// the log and not by a client, so a client naming any id it likes in a request costs one
/// lookup, not a crafted chain of collisions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct IdHash;

impl BuildHasher for IdHash {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

/// The hasher of [`IdHash`].
struct IdHasher(u64);

const ID_MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(ID_MULTIPLIER);
        }
    }

    fn write_u64(&mut self, id: u64) {
        let h = (self.0 ^ id).wrapping_mul(ID_MULTIPLIER);
        self.0 = h ^ (h >> 32);
    }
}

/// A `u64` count of items of at least `min_size` bytes each, refused if the bytes left cannot
/// hold that many.
pub(crate) fn bounded_count(data: &mut Bytes, min_size: usize) -> Result<usize, DecodeError> {
    let count = usize::try_from(get_u64(data)?).unwrap_or(usize::MAX);
    if count > data.len() / min_size {
        return Err(DecodeError::Truncated);
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// `find` agrees with a binary search on any sorted run of answers, consecutive or
        /// with gaps, for sequence numbers inside, between, before and after them.
        #[test]
        fn find_agrees_with_binary_search(
            start in 0u64..1_000,
            gaps in prop::collection::vec(1u64..4, 0..40),
            probes in prop::collection::vec(0u64..1_200, 1..20),
        ) {
            let mut answers = VecDeque::new();
            let mut seq = start;
            for gap in gaps {
                answers.push_back(Recorded { seq, fingerprint: seq, answer: Answer::Written });
                seq += gap;
            }
            for probe in probes.into_iter().chain([start, seq, start.saturating_sub(1)]) {
                prop_assert_eq!(
                    find(&answers, probe),
                    answers.binary_search_by_key(&probe, |r| r.seq),
                    "probe {}", probe
                );
            }
        }
    }
}
