//! The map and the client sessions: the state every node derives from the log, and its
//! snapshot format.
//!
//! Applying an entry changes the map only for a request its session admits (the rules, and
//! what a session guarantees, are in [`crate::session`]); each outcome is reported, so that the
//! server can answer the request that proposed the entry. Commands written before sessions
//! (format 1, [`crate::command`]) are applied as they were then: a table keeps the last `seq`
//! applied per client, and a command at or below it changes nothing.
//!
//! A view of the store ([`Store::view`]) is a consistent state that later writes do not change,
//! and costs little: the map is copy-on-write ([`crate::map`]); only the sessions and the
//! format-1 table are copied. The node takes one on its thread and serializes it on another
//! ([`crate::KvMachine`]).
//!
//! Invariant: every request applied to the map is recorded in its session (until the client
//! acknowledges it) and was applied exactly once.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use bytes::Bytes;

use crate::command::{CommandRef, FORMAT_VERSION, LEGACY_VERSION, LegacyRef, Op};
use crate::map::Map;
use crate::members::AddressBook;

/// The version byte of a snapshot that carries an address book ([`crate::members`]).
const BOOK_VERSION: u8 = 3;
use crate::protocol::{
    DecodeError, MAX_KEY, MAX_VALUE, expect_end, get_bytes, get_u8, get_u64, put_bytes,
};
use crate::session::{Answer, Lookup, Refusal, Sessions, bounded_count};

/// What applying one log entry did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The request was applied (and its answer recorded).
    Applied,
    /// The request was applied before (its answer is recorded): nothing changed.
    Duplicate,
    /// Another request was applied under the same `(session, seq)`: nothing changed.
    Conflict,
    /// The request's `seq` is below its session's `ack`: nothing changed.
    Stale,
    /// The request's session is not in the table: nothing changed.
    SessionExpired,
    /// The request's `seq` is too far beyond its session's `ack`: nothing changed.
    Refused,
    /// A `Put` or `Append` (or a retry of one) that would make its value longer than
    /// [`MAX_VALUE`]: refused, nothing changed.
    TooLarge,
    /// A session was opened; its id is the entry's index.
    Registered,
    /// A change to the address book, and whether it was admitted (addresses for a removed id
    /// are not).
    Member {
        change: crate::members::MemberChange,
        admitted: bool,
    },
    /// An empty entry (a new leader's no-op): nothing changed.
    NoOp,
    /// The entry is not a command of this service: nothing changed.
    Malformed(DecodeError),
}

/// The map and the sessions: the state every node derives from the log. [`Store::view`] takes a
/// view (see the module docs); `Clone` a copy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Store {
    map: Map,
    sessions: Sessions,
    /// The last `seq` applied per client of the format-1 commands: empty unless the log (or
    /// snapshot) was written before sessions.
    legacy: HashMap<u64, u64>,
    /// The nodes added to the running cluster and the ids removed from it.
    book: AddressBook,
}

impl Store {
    /// A view of the store as it is now, which later applies do not change: the map's shards
    /// are shared with it until written (see the `map` module), the sessions copied.
    pub(crate) fn view(&mut self) -> Self {
        Self {
            map: self.map.view(),
            sessions: self.sessions.clone(),
            legacy: self.legacy.clone(),
            book: self.book.clone(),
        }
    }

    /// The address book.
    pub(crate) fn book(&self) -> &AddressBook {
        &self.book
    }

    /// Applies the committed log entry at `index`.
    pub(crate) fn apply(&mut self, index: u64, entry: &[u8]) -> Outcome {
        if entry.is_empty() {
            return Outcome::NoOp;
        }
        let request = match CommandRef::decode(entry) {
            Ok(CommandRef::Request(request)) => request,
            Ok(CommandRef::Register {
                stamp,
                timeout_ms,
                max_sessions,
            }) => {
                self.sessions.observe(stamp);
                self.sessions.register(index, timeout_ms, max_sessions);
                return Outcome::Registered;
            }
            Ok(CommandRef::Legacy(command)) => return self.apply_legacy(&command),
            Ok(CommandRef::Member { stamp, change }) => {
                self.sessions.observe(stamp);
                let admitted = self.book.apply(&change);
                return Outcome::Member { change, admitted };
            }
            Err(e) => return Outcome::Malformed(e),
        };
        self.sessions.observe(request.stamp);
        let digest = request.fingerprint();
        let map = &mut self.map;
        let mut too_large = false;
        let admitted = self.sessions.admit(
            request.session,
            request.seq,
            request.ack,
            digest,
            || match request.op {
                Op::Get => Answer::Value(Bytes::copy_from_slice(
                    map.get(request.key).unwrap_or_default(),
                )),
                Op::Put | Op::Append => {
                    if write(map, request.op, request.key, request.value) {
                        Answer::Written
                    } else {
                        too_large = true;
                        Answer::TooLarge
                    }
                }
            },
        );
        match admitted {
            Ok(()) if too_large => Outcome::TooLarge,
            Ok(()) => Outcome::Applied,
            Err(Refusal::Duplicate)
                if self.sessions.lookup(request.session, request.seq, digest)
                    == Lookup::Answered(&Answer::TooLarge) =>
            {
                Outcome::TooLarge
            }
            Err(Refusal::Expired) => Outcome::SessionExpired,
            Err(Refusal::Stale) => Outcome::Stale,
            Err(Refusal::Duplicate) => Outcome::Duplicate,
            Err(Refusal::Conflict) => Outcome::Conflict,
            Err(Refusal::Refused) => Outcome::Refused,
        }
    }

    /// Applies a format-1 command as the service did before sessions.
    fn apply_legacy(&mut self, command: &LegacyRef<'_>) -> Outcome {
        match self.legacy.entry(command.client) {
            Entry::Occupied(last) if command.seq <= *last.get() => return Outcome::Duplicate,
            Entry::Occupied(mut last) => {
                last.insert(command.seq);
            }
            Entry::Vacant(last) => {
                last.insert(command.seq);
            }
        }
        if command.op != Op::Get && !write(&mut self.map, command.op, command.key, command.value) {
            return Outcome::TooLarge;
        }
        Outcome::Applied
    }

    /// The value of `key`, if it has one.
    pub(crate) fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key)
    }

    /// The sessions.
    pub(crate) fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// The number of keys with a value.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Serializes the store: `version u8` (2, or 3 with an address book); the number of keys `u64`, each key (`u32` length
    /// and bytes) and value (`u64` length and bytes: appends can grow a value past any frame);
    /// the number of format-1 clients `u64`, each client `u64` and its last `seq` `u64`; the
    /// sessions in the format of [`Sessions::encode`]; in format 3, the address book in the
    /// format of [`AddressBook::encode`]. A store whose book is empty (a cluster whose members
    /// never changed) is written in format 2, byte for byte as before the book.
    ///
    /// Format 1, read by [`Store::restore`], ends after the clients.
    pub(crate) fn snapshot(&self) -> Bytes {
        let size = 1
            + 8
            + self
                .map
                .iter()
                .map(|(k, v)| 12 + k.len() + v.len())
                .sum::<usize>()
            + 8
            + 16 * self.legacy.len()
            + self.sessions.encoded_len()
            + if self.book.is_empty() {
                0
            } else {
                self.book.encoded_len()
            };
        let mut out = Vec::with_capacity(size);
        out.push(if self.book.is_empty() {
            FORMAT_VERSION
        } else {
            BOOK_VERSION
        });
        out.extend_from_slice(&(self.map.len() as u64).to_le_bytes());
        for (key, value) in self.map.iter() {
            put_bytes(&mut out, key);
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
            out.extend_from_slice(value);
        }
        out.extend_from_slice(&(self.legacy.len() as u64).to_le_bytes());
        for (client, seq) in &self.legacy {
            out.extend_from_slice(&client.to_le_bytes());
            out.extend_from_slice(&seq.to_le_bytes());
        }
        self.sessions.encode(&mut out);
        if !self.book.is_empty() {
            self.book.encode(&mut out);
        }
        debug_assert_eq!(out.len(), size, "snapshot size estimate");
        Bytes::from(out)
    }

    /// The store a snapshot holds, of format 3, 2 or 1.
    pub(crate) fn restore(mut data: Bytes) -> Result<Self, DecodeError> {
        let version = get_u8(&mut data)?;
        if version != FORMAT_VERSION && version != LEGACY_VERSION && version != BOOK_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        // Counts are checked against the bytes left (a key takes at least 12, a client 16)
        // before anything is sized by them.
        let keys = bounded_count(&mut data, 12)?;
        let mut map = Map::default();
        for _ in 0..keys {
            let key = get_bytes(&mut data, "key", MAX_KEY)?;
            let len = usize::try_from(get_u64(&mut data)?).unwrap_or(usize::MAX);
            if data.len() < len {
                return Err(DecodeError::Truncated);
            }
            let value = data.split_to(len).to_vec();
            if map.insert(&key, value) {
                return Err(DecodeError::Invalid("snapshot (a key appears twice)"));
            }
        }
        let clients = bounded_count(&mut data, 16)?;
        let mut legacy = HashMap::with_capacity(clients);
        for _ in 0..clients {
            let client = get_u64(&mut data)?;
            let seq = get_u64(&mut data)?;
            if legacy.insert(client, seq).is_some() {
                return Err(DecodeError::Invalid("snapshot (a client appears twice)"));
            }
        }
        let sessions = if version == LEGACY_VERSION {
            Sessions::default()
        } else {
            Sessions::decode(&mut data)?
        };
        let book = if version == BOOK_VERSION {
            AddressBook::decode(&mut data)?
        } else {
            AddressBook::default()
        };
        expect_end(&data)?;
        Ok(Self {
            map,
            sessions,
            legacy,
            book,
        })
    }
}

/// Applies a `Put` or `Append` of `value` to `key`, unless the value would be longer than
/// [`MAX_VALUE`]: returns whether it did. Replacing a value reuses its buffer.
fn write(map: &mut Map, op: Op, key: &[u8], value: &[u8]) -> bool {
    map.write(key, op == Op::Append, value, MAX_VALUE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SessionOptions;
    use crate::command::{Command, encode_register, fingerprint, tests::legacy};
    use crate::protocol::MAX_UNACKNOWLEDGED;
    use std::time::Duration;

    /// A stamp: the proposing server's clock, in milliseconds.
    const T: u64 = 1_000_000;

    fn request(op: Op, session: u64, seq: u64, ack: u64, key: &str, value: &str) -> Bytes {
        request_at(T, op, session, seq, ack, key, value)
    }

    fn request_at(
        stamp: u64,
        op: Op,
        session: u64,
        seq: u64,
        ack: u64,
        key: &str,
        value: &str,
    ) -> Bytes {
        Command {
            op,
            session,
            seq,
            ack,
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
        }
        .encode(stamp)
    }

    fn register_at(stamp: u64, timeout_ms: u64, max_sessions: usize) -> Bytes {
        let options = SessionOptions {
            timeout: Duration::from_millis(timeout_ms),
            max_sessions,
        };
        encode_register(stamp, &options, &mut bytes::BytesMut::new())
    }

    fn register() -> Bytes {
        register_at(T, 3_600_000, 10_000)
    }

    fn value<'a>(store: &'a Store, key: &str) -> Option<&'a [u8]> {
        store.get(key.as_bytes())
    }

    /// A store and the index of the next entry it applies, as a node's log feeds it.
    struct Log {
        store: Store,
        next: u64,
    }

    impl Log {
        fn new() -> Self {
            Self {
                store: Store::default(),
                next: 1,
            }
        }

        fn apply(&mut self, entry: &Bytes) -> Outcome {
            let outcome = self.store.apply(self.next, entry);
            self.next += 1;
            self.store.sessions.check();
            outcome
        }

        /// Registers a session; returns its id.
        fn register(&mut self, entry: &Bytes) -> u64 {
            let id = self.next;
            assert_eq!(self.apply(entry), Outcome::Registered);
            id
        }
    }

    #[test]
    fn a_session_applies_each_request_once_and_answers_only_what_it_applied() {
        let mut log = Log::new();
        let s = log.register(&register());
        let far = 3 + MAX_UNACKNOWLEDGED;
        let cases: [(Bytes, Outcome, &str); 11] = [
            (request(Op::Put, s, 1, 1, "k", "a"), Outcome::Applied, "a"),
            // A retry: the recorded answer, nothing applied again.
            (request(Op::Put, s, 1, 1, "k", "a"), Outcome::Duplicate, "a"),
            (
                request(Op::Append, s, 2, 1, "k", "b"),
                Outcome::Applied,
                "ab",
            ),
            // Another request under a recorded (session, seq): not taken for a retry.
            (request(Op::Put, s, 1, 1, "k", "x"), Outcome::Conflict, "ab"),
            // Acknowledges 1 and 2.
            (
                request(Op::Append, s, 3, 3, "k", "c"),
                Outcome::Applied,
                "abc",
            ),
            // Below the ack: the client had its answer; a very late copy changes nothing.
            (
                request(Op::Append, s, 2, 2, "k", "b"),
                Outcome::Stale,
                "abc",
            ),
            (
                request(Op::Append, s, 1, 1, "k", "a"),
                Outcome::Stale,
                "abc",
            ),
            // A session that was never opened.
            (
                request(Op::Put, s + 99, 1, 1, "k", "z"),
                Outcome::SessionExpired,
                "abc",
            ),
            // Beyond the window of unacknowledged requests.
            (
                request(Op::Put, s, far, 3, "k", "far"),
                Outcome::Refused,
                "abc",
            ),
            // A read through the log records the value it read...
            (request(Op::Get, s, 4, 3, "k", ""), Outcome::Applied, "abc"),
            // ...and a retry is answered with it, not with the value now.
            (
                request(Op::Get, s, 4, 3, "k", ""),
                Outcome::Duplicate,
                "abc",
            ),
        ];
        for (case, (entry, outcome, after)) in cases.iter().enumerate() {
            assert_eq!(&log.apply(entry), outcome, "case {case}");
            assert_eq!(
                value(&log.store, "k"),
                Some(after.as_bytes()),
                "case {case}"
            );
        }
        log.apply(&request(Op::Put, s, 5, 3, "k", "later"));
        let sessions = log.store.sessions();
        assert_eq!(sessions.answered(s), [3, 4, 5]);
        let fp = |op, key: &str, value: &str| fingerprint(op, key.as_bytes(), value.as_bytes());
        let lookups = [
            (
                (3, fp(Op::Append, "k", "c")),
                Lookup::Answered(&Answer::Written),
            ),
            (
                (4, fp(Op::Get, "k", "")),
                Lookup::Answered(&Answer::Value(Bytes::from_static(b"abc"))),
            ),
            ((4, fp(Op::Put, "k", "abc")), Lookup::Conflict),
            ((2, fp(Op::Append, "k", "b")), Lookup::Stale),
            ((6, fp(Op::Put, "k", "v")), Lookup::NotApplied),
        ];
        for (case, ((seq, digest), want)) in lookups.into_iter().enumerate() {
            assert_eq!(sessions.lookup(s, seq, digest), want, "lookup {case}");
        }
        assert_eq!(sessions.lookup(s + 99, 1, 0), Lookup::Expired);
    }

    #[test]
    fn acknowledging_forgets_the_answers_below_the_ack() {
        let mut log = Log::new();
        let s = log.register(&register());
        for seq in 1..=5 {
            log.apply(&request(Op::Append, s, seq, 1, "k", "x"));
        }
        let cases: [(u64, u64, &[u64], u64); 4] = [
            // (seq, ack) of the next request, then the answers kept and the session's ack.
            (6, 1, &[1, 2, 3, 4, 5, 6], 1),
            (7, 4, &[4, 5, 6, 7], 4),
            // An older ack does not move it back.
            (8, 2, &[4, 5, 6, 7, 8], 4),
            // An ack above its own seq counts as the seq: the request keeps its answer.
            (9, 100, &[9], 9),
        ];
        for (case, (seq, ack, kept, session_ack)) in cases.into_iter().enumerate() {
            let outcome = log.apply(&request(Op::Append, s, seq, ack, "k", "x"));
            assert_eq!(outcome, Outcome::Applied, "case {case}");
            assert_eq!(log.store.sessions().answered(s), kept, "case {case}");
            assert_eq!(
                log.store.sessions().ack(s),
                Some(session_ack),
                "case {case}"
            );
        }
        assert_eq!(value(&log.store, "k"), Some(&b"xxxxxxxxx"[..]));
    }

    /// Requests 5 and 6 pipelined with ack 5; 5 is answered Busy (never proposed) and 6 is
    /// applied; the retry of 5 must be applied, not taken for a duplicate of something older
    /// than 6 (what a table of the highest seq per client did).
    #[test]
    fn a_pipelined_retry_of_a_request_that_was_refused_is_applied() {
        let mut log = Log::new();
        let s = log.register(&register());
        for seq in 1..=4 {
            log.apply(&request(Op::Append, s, seq, seq, "k", &seq.to_string()));
        }
        assert_eq!(
            log.apply(&request(Op::Append, s, 6, 5, "k", "6")),
            Outcome::Applied
        );
        assert_eq!(
            log.apply(&request(Op::Append, s, 5, 5, "k", "5")),
            Outcome::Applied,
            "the retry of 5"
        );
        assert_eq!(value(&log.store, "k"), Some(&b"123465"[..]));
        // Its own retry is a duplicate, and once acknowledged, stale.
        assert_eq!(
            log.apply(&request(Op::Append, s, 5, 5, "k", "5")),
            Outcome::Duplicate
        );
        log.apply(&request(Op::Append, s, 7, 7, "k", "7"));
        assert_eq!(
            log.apply(&request(Op::Append, s, 5, 5, "k", "5")),
            Outcome::Stale
        );
        assert_eq!(value(&log.store, "k"), Some(&b"1234657"[..]));
    }

    /// A party that knows another client's session id writes under it: whatever it sends, the
    /// client's next write is either applied or answered with something other than success.
    #[test]
    fn a_forged_request_never_makes_a_later_write_look_applied() {
        let max = u64::MAX;
        let cases: [((u64, u64), Outcome, Outcome); 5] = [
            // (seq, ack) forged, what becomes of the forged write, then of the client's write.
            ((max, 0), Outcome::Refused, Outcome::Applied),
            ((max, 1), Outcome::Refused, Outcome::Applied),
            ((max, max), Outcome::Applied, Outcome::Stale),
            (
                (max, max - MAX_UNACKNOWLEDGED + 1),
                Outcome::Applied,
                Outcome::Stale,
            ),
            // A forged ack alone.
            ((10, 10), Outcome::Applied, Outcome::Stale),
        ];
        for (case, ((seq, ack), forged, then)) in cases.into_iter().enumerate() {
            let mut log = Log::new();
            let s = log.register(&register());
            log.apply(&request(Op::Put, s, 1, 1, "k", "1"));
            let outcome = log.apply(&request(Op::Put, s, seq, ack, "f", "forged"));
            assert_eq!(outcome, forged, "case {case}: the forged write");
            let applied = value(&log.store, "f").is_some();
            assert_eq!(applied, forged == Outcome::Applied, "case {case}");
            let outcome = log.apply(&request(Op::Put, s, 2, 2, "k", "2"));
            assert_eq!(outcome, then, "case {case}: the client's next write");
            let applied = value(&log.store, "k") == Some(&b"2"[..]);
            assert_eq!(applied, then == Outcome::Applied, "case {case}");
        }
    }

    #[test]
    fn sessions_expire_by_log_time() {
        let mut log = Log::new();
        let timeout = 1_000;
        let a = log.register(&register_at(T, timeout, 100));
        let cases: [(Bytes, Outcome); 7] = [
            // a's last activity: T + 500.
            (
                request_at(T + 500, Op::Put, a, 1, 1, "k", "1"),
                Outcome::Applied,
            ),
            // Idle for 900 ms when b registers: a stays.
            (register_at(T + 1_400, timeout, 100), Outcome::Registered),
            (
                request_at(T + 1_450, Op::Put, a, 2, 2, "k", "2"),
                Outcome::Applied,
            ),
            // A stamp from a slower clock does not move log time back: a's last activity is
            // T + 1 450, not T + 100.
            (
                request_at(T + 100, Op::Put, a, 3, 3, "k", "3"),
                Outcome::Applied,
            ),
            // a idle for exactly the timeout: it stays; b, idle for 1 050 ms, is dropped.
            (register_at(T + 2_450, timeout, 100), Outcome::Registered),
            // a idle for longer: dropped by the next register.
            (register_at(T + 2_451, timeout, 100), Outcome::Registered),
            (
                request_at(T + 2_452, Op::Put, a, 4, 4, "k", "4"),
                Outcome::SessionExpired,
            ),
        ];
        for (case, (entry, outcome)) in cases.iter().enumerate() {
            assert_eq!(&log.apply(entry), outcome, "case {case}");
        }
        assert_eq!(value(&log.store, "k"), Some(&b"3"[..]));
        // The two registered last remain.
        assert_eq!(log.store.sessions().by_activity(), [6, 7]);
        // The timeout is the one each register carries: a longer one keeps both, a shorter
        // one drops them.
        log.apply(&register_at(T + 1_000_000, 1_000_000, 100));
        assert_eq!(log.store.sessions().by_activity(), [6, 7, 9]);
        log.apply(&register_at(T + 1_000_001, 1_000, 100));
        assert_eq!(log.store.sessions().by_activity(), [9, 10]);
    }

    #[test]
    fn registering_into_a_full_table_drops_the_least_recently_active() {
        let mut log = Log::new();
        let full = |log: &mut Log| log.register(&register_at(T, 3_600_000, 3));
        let (a, b, c) = (full(&mut log), full(&mut log), full(&mut log));
        // a active again: b is now the least recently active.
        log.apply(&request(Op::Put, a, 1, 1, "k", "a"));
        assert_eq!(log.store.sessions().by_activity(), [b, c, a]);
        let d = full(&mut log);
        assert_eq!(log.store.sessions().by_activity(), [c, a, d]);
        let cases = [
            (b, Outcome::SessionExpired),
            (c, Outcome::Applied),
            (a, Outcome::Applied),
            (d, Outcome::Applied),
        ];
        for (case, (session, outcome)) in cases.into_iter().enumerate() {
            let entry = request(Op::Append, session, 2, 2, "k", "+");
            assert_eq!(log.apply(&entry), outcome, "case {case}");
        }
        // A stale request is no activity; a refused one is.
        log.apply(&request(Op::Append, c, 1, 1, "k", "+"));
        assert_eq!(log.store.sessions().by_activity(), [c, a, d]);
        log.apply(&request(Op::Append, c, 2 + MAX_UNACKNOWLEDGED, 2, "k", "+"));
        assert_eq!(log.store.sessions().by_activity(), [a, d, c]);
        // A maximum of 0 counts as 1.
        let e = log.register(&register_at(T, 3_600_000, 0));
        assert_eq!(log.store.sessions().by_activity(), [e]);
    }

    /// A write that would make a value longer than a response can carry is refused, on every
    /// replica alike, and recorded so that its retry is refused too; the key stays readable.
    #[test]
    fn a_value_never_grows_past_what_a_response_carries() {
        let mut log = Log::new();
        let s = log.register(&register());
        let near = "x".repeat(MAX_VALUE - 10);
        let cases: [(Op, u64, String, Outcome, usize); 7] = [
            (Op::Put, 1, near.clone(), Outcome::Applied, MAX_VALUE - 10),
            // 11 more bytes: one too many.
            (
                Op::Append,
                2,
                "y".repeat(11),
                Outcome::TooLarge,
                MAX_VALUE - 10,
            ),
            // Its retry: the same answer, nothing applied.
            (
                Op::Append,
                2,
                "y".repeat(11),
                Outcome::TooLarge,
                MAX_VALUE - 10,
            ),
            (Op::Append, 3, "y".repeat(10), Outcome::Applied, MAX_VALUE),
            (Op::Append, 4, "z".to_owned(), Outcome::TooLarge, MAX_VALUE),
            (
                Op::Put,
                5,
                "w".repeat(MAX_VALUE + 1),
                Outcome::TooLarge,
                MAX_VALUE,
            ),
            (Op::Put, 6, "short".to_owned(), Outcome::Applied, 5),
        ];
        for (case, (op, seq, v, outcome, len)) in cases.into_iter().enumerate() {
            let entry = request(op, s, seq, 1, "k", &v);
            assert_eq!(log.apply(&entry), outcome, "case {case}");
            assert_eq!(value(&log.store, "k").unwrap().len(), len, "case {case}");
        }
        // A new key too.
        let entry = request(Op::Put, s, 7, 1, "new", &"n".repeat(MAX_VALUE + 1));
        assert_eq!(log.apply(&entry), Outcome::TooLarge);
        assert_eq!(value(&log.store, "new"), None);
        // The refusals are kept in the session, through a snapshot.
        let refused = fingerprint(Op::Append, b"k", "y".repeat(11).as_bytes());
        let restored = Store::restore(log.store.snapshot()).unwrap();
        assert_eq!(restored, log.store);
        assert_eq!(
            restored.sessions().lookup(s, 2, refused),
            Lookup::Answered(&Answer::TooLarge)
        );
        // A format-1 command is refused alike.
        let mut old = Log::new();
        old.apply(&legacy(Op::Put, 1, 1, "k", &near));
        let grow = legacy(Op::Append, 1, 2, "k", &"y".repeat(11));
        assert_eq!(old.apply(&grow), Outcome::TooLarge);
        assert_eq!(value(&old.store, "k").unwrap().len(), MAX_VALUE - 10);
    }

    #[test]
    fn put_replaces_and_append_extends() {
        let mut log = Log::new();
        let s = log.register(&register());
        let steps = [
            (Op::Append, "a", "1"),
            (Op::Put, "a", "2"),
            (Op::Append, "a", "3"),
            (Op::Put, "b", ""),
            (Op::Get, "a", ""),
        ];
        for (seq, (op, key, v)) in steps.into_iter().enumerate() {
            let seq = seq as u64 + 1;
            assert_eq!(
                log.apply(&request(op, s, seq, seq, key, v)),
                Outcome::Applied
            );
        }
        assert_eq!(value(&log.store, "a"), Some(&b"23"[..]));
        assert_eq!(value(&log.store, "b"), Some(&b""[..]));
        assert_eq!(value(&log.store, "c"), None);
        assert_eq!(log.store.len(), 2);
    }

    #[test]
    fn empty_and_malformed_entries_change_nothing() {
        let mut log = Log::new();
        let s = log.register(&register());
        log.apply(&request(Op::Put, s, 1, 1, "k", "v"));
        let before = log.store.clone();
        assert_eq!(log.apply(&Bytes::new()), Outcome::NoOp);
        let malformed = [
            Bytes::from_static(b"x = 1"),
            Bytes::from_static(&[FORMAT_VERSION]),
            Bytes::from_static(&[FORMAT_VERSION, 9, 0, 0]),
            request(Op::Put, s, 2, 2, "k", "v").slice(..20),
            {
                let mut long = request(Op::Put, s, 2, 2, "k", "v").to_vec();
                long.push(0);
                Bytes::from(long)
            },
        ];
        for (case, entry) in malformed.iter().enumerate() {
            assert!(
                matches!(log.apply(entry), Outcome::Malformed(_)),
                "case {case}"
            );
        }
        assert_eq!(log.store, before);
    }

    /// A store with a map, format-1 clients and sessions with answers of both kinds.
    fn busy_store() -> Log {
        let mut log = Log::new();
        log.apply(&legacy(Op::Append, 7, 1, "old", "x"));
        let sessions: Vec<u64> = (0..4)
            .map(|i| log.register(&register_at(T + i, 3_600_000, 4)))
            .collect();
        for seq in 1..=20u64 {
            let s = sessions[(seq % 3) as usize];
            let key = format!("k{}", seq % 7);
            log.apply(&request_at(
                T + seq,
                Op::Append,
                s,
                seq,
                1,
                &key,
                &seq.to_string(),
            ));
            log.apply(&request_at(T + seq, Op::Get, s, 100 + seq, 1, &key, ""));
        }
        log.apply(&request(Op::Put, sessions[3], 1, 1, "empty", ""));
        log
    }

    #[test]
    fn a_snapshot_restores_the_map_and_the_sessions() {
        let mut log = busy_store();
        let restored = Store::restore(log.store.snapshot()).unwrap();
        assert_eq!(restored, log.store);
        restored.sessions.check();
        assert_eq!(
            restored.sessions.by_activity(),
            log.store.sessions.by_activity(),
            "the activity order survives"
        );
        // Both go on alike: the same duplicates, stale requests, evictions and format-1 table.
        let mut copy = Log {
            store: restored,
            next: log.next,
        };
        let order = log.store.sessions.by_activity();
        let next: [Bytes; 5] = [
            request(Op::Get, order[1], 101, 1, "k1", ""),
            request(Op::Append, order[1], 0, 0, "k1", "x"),
            register_at(T + 100, 3_600_000, 4),
            request(Op::Append, order[0], 30, 30, "k1", "x"),
            legacy(Op::Append, 7, 1, "old", "again"),
        ];
        for (case, entry) in next.iter().enumerate() {
            assert_eq!(copy.apply(entry), log.apply(entry), "case {case}");
        }
        assert_eq!(copy.store, log.store);
        assert_eq!(
            Store::restore(Store::default().snapshot()).unwrap(),
            Store::default()
        );
    }

    #[test]
    fn a_damaged_snapshot_is_refused() {
        let snapshot = busy_store().store.snapshot();
        for cut in 0..snapshot.len() {
            assert!(
                Store::restore(snapshot.slice(..cut)).is_err(),
                "cut at {cut}"
            );
        }
        let mut long = snapshot.to_vec();
        long.push(0);
        assert_eq!(
            Store::restore(Bytes::from(long)),
            Err(DecodeError::TrailingBytes(1))
        );
        let mut huge_count = vec![FORMAT_VERSION];
        huge_count.extend_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            Store::restore(Bytes::from(huge_count)),
            Err(DecodeError::Truncated)
        );
        let mut wrong_version = snapshot.to_vec();
        wrong_version[0] = 4;
        assert_eq!(
            Store::restore(Bytes::from(wrong_version)),
            Err(DecodeError::UnknownVersion(4))
        );
        // Format 3 without its address book.
        let mut no_book = snapshot.to_vec();
        no_book[0] = BOOK_VERSION;
        assert_eq!(
            Store::restore(Bytes::from(no_book)),
            Err(DecodeError::Truncated)
        );

        // Sessions that break an invariant. Two sessions, a (older) with two answers, then b:
        // no keys, no format-1 clients.
        let mut log = Log::new();
        let a = log.register(&register());
        let b = log.register(&register());
        log.apply(&request_at(T + 1, Op::Put, a, 1, 1, "k", "v"));
        log.apply(&request_at(T + 1, Op::Get, a, 2, 1, "k", ""));
        log.apply(&request_at(T + 2, Op::Put, b, 1, 1, "k", "w"));
        let mut store = log.store.clone();
        store.map.clear();
        let good = store.snapshot();
        assert_eq!(Store::restore(good.clone()).unwrap(), store);
        // Offsets: version, 0 keys, 0 clients, log time, 2 sessions; then session a.
        let log_time = 1 + 8 + 8;
        let a_at = log_time + 16;
        let (a_ack, a_active, a_answers) = (a_at + 8, a_at + 16, a_at + 32);
        let second_answer = a_answers + 17;
        let b_at = second_answer + 17 + 8 + 1;
        let invalid = DecodeError::Invalid;
        let patches: [(usize, u64, DecodeError); 8] = [
            (a_at, 0, invalid("snapshot (session 0)")),
            (b_at, a, invalid("snapshot (a session appears twice)")),
            (
                a_active,
                T + 3,
                invalid("snapshot (session activity out of order)"),
            ),
            (
                b_at + 16,
                T,
                invalid("snapshot (session activity out of order)"),
            ),
            (
                a_ack,
                2,
                invalid("snapshot (answer outside its session's window)"),
            ),
            (
                second_answer,
                1,
                invalid("snapshot (answer outside its session's window)"),
            ),
            (
                second_answer,
                1 + MAX_UNACKNOWLEDGED,
                invalid("snapshot (answer outside its session's window)"),
            ),
            (a_at + 24, MAX_UNACKNOWLEDGED + 1, DecodeError::Truncated),
        ];
        for (case, (at, value, error)) in patches.into_iter().enumerate() {
            let mut bad = good.to_vec();
            bad[at..at + 8].copy_from_slice(&value.to_le_bytes());
            assert_eq!(Store::restore(Bytes::from(bad)), Err(error), "case {case}");
        }
        let mut bad = good.to_vec();
        bad[a_answers + 8] = 4;
        assert_eq!(
            Store::restore(Bytes::from(bad)),
            Err(invalid("snapshot (answer kind)"))
        );
    }

    #[test]
    fn format_1_logs_and_snapshots_still_apply() {
        let mut log = Log::new();
        let cases = [
            (legacy(Op::Put, 1, 1, "k", "x"), Outcome::Applied, "x"),
            (legacy(Op::Append, 1, 2, "k", "y"), Outcome::Applied, "xy"),
            (legacy(Op::Append, 1, 2, "k", "y"), Outcome::Duplicate, "xy"),
            (legacy(Op::Put, 1, 1, "k", "lost"), Outcome::Duplicate, "xy"),
            (legacy(Op::Get, 1, 3, "k", ""), Outcome::Applied, "xy"),
            (legacy(Op::Append, 2, 1, "k", "z"), Outcome::Applied, "xyz"),
        ];
        for (case, (entry, outcome, after)) in cases.iter().enumerate() {
            assert_eq!(&log.apply(entry), outcome, "case {case}");
            assert_eq!(
                value(&log.store, "k"),
                Some(after.as_bytes()),
                "case {case}"
            );
        }
        // A format-1 snapshot: the map, then the clients, and nothing after.
        let mut old = vec![LEGACY_VERSION];
        old.extend_from_slice(&1u64.to_le_bytes());
        put_bytes(&mut old, b"k");
        old.extend_from_slice(&3u64.to_le_bytes());
        old.extend_from_slice(b"xyz");
        old.extend_from_slice(&2u64.to_le_bytes());
        for (client, seq) in [(1u64, 3u64), (2, 1)] {
            old.extend_from_slice(&client.to_le_bytes());
            old.extend_from_slice(&seq.to_le_bytes());
        }
        let restored = Store::restore(Bytes::from(old)).unwrap();
        assert_eq!(restored, log.store);
        // Written again, it is of format 2 and restores the same.
        let again = restored.snapshot();
        assert_eq!(again[0], FORMAT_VERSION);
        assert_eq!(Store::restore(again).unwrap(), log.store);
    }
}
