//! The map and the de-duplication table: the state every node derives from the log, and its
//! snapshot format.
//!
//! Each client numbers its requests with increasing `seq`s and has one outstanding at a time, so
//! the table keeps only the last `seq` applied per client: a command whose `seq` is at or below
//! it is a retry of a request already applied (through another leader, or twice in the log) and
//! changes nothing.
//!
//! Invariant: for every client in the table, every command of that client with a `seq` at or
//! below its entry has been applied exactly once, and none above it has been applied.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use bytes::Bytes;

use crate::command::{CommandRef, FORMAT_VERSION, Op};
use crate::protocol::{DecodeError, MAX_KEY, expect_end, get_bytes, get_u8, get_u64, put_bytes};

/// What applying one log entry did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The command was applied.
    Applied,
    /// The client's request with this `seq` (or a later one) was applied before: nothing changed.
    Duplicate,
    /// An empty entry (a new leader's no-op): nothing changed.
    NoOp,
    /// The entry is not a command of this service: nothing changed.
    Malformed(DecodeError),
}

/// The map and the de-duplication table: the state every node derives from the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Store {
    map: HashMap<Box<[u8]>, Vec<u8>>,
    /// Each client's highest `seq` applied. Grows with the number of clients ever seen (as in
    /// the 6.824 service, nothing expires).
    last_seq: HashMap<u64, u64>,
}

impl Store {
    /// Applies one committed log entry.
    pub(crate) fn apply(&mut self, entry: &Bytes) -> Outcome {
        if entry.is_empty() {
            return Outcome::NoOp;
        }
        let command = match CommandRef::decode(entry) {
            Ok(command) => command,
            Err(e) => return Outcome::Malformed(e),
        };
        match self.last_seq.entry(command.client) {
            Entry::Occupied(last) if command.seq <= *last.get() => return Outcome::Duplicate,
            Entry::Occupied(mut last) => {
                last.insert(command.seq);
            }
            Entry::Vacant(last) => {
                last.insert(command.seq);
            }
        }
        match command.op {
            Op::Get => {}
            Op::Put => match self.map.get_mut(command.key) {
                Some(value) => {
                    value.clear();
                    value.extend_from_slice(command.value);
                }
                None => {
                    self.map.insert(command.key.into(), command.value.to_vec());
                }
            },
            Op::Append => match self.map.get_mut(command.key) {
                Some(value) => value.extend_from_slice(command.value),
                None => {
                    self.map.insert(command.key.into(), command.value.to_vec());
                }
            },
        }
        Outcome::Applied
    }

    /// The value of `key`, if it has one.
    pub(crate) fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(|v| &v[..])
    }

    /// The highest `seq` of `client` applied, if any.
    pub(crate) fn last_seq(&self, client: u64) -> Option<u64> {
        self.last_seq.get(&client).copied()
    }

    /// Whether `client`'s request `seq` has been applied.
    pub(crate) fn was_applied(&self, client: u64, seq: u64) -> bool {
        self.last_seq(client).is_some_and(|last| last >= seq)
    }

    /// The number of keys with a value.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Serializes the map and the table: `version u8`, the number of keys `u64`, each key
    /// (`u32` length and bytes) and value (`u64` length and bytes: appends can grow a value past
    /// any frame), the number of clients `u64`, each client and its last `seq`.
    pub(crate) fn snapshot(&self) -> Bytes {
        let size = 1
            + 8
            + self
                .map
                .iter()
                .map(|(k, v)| 12 + k.len() + v.len())
                .sum::<usize>()
            + 8
            + 16 * self.last_seq.len();
        let mut out = Vec::with_capacity(size);
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&(self.map.len() as u64).to_le_bytes());
        for (key, value) in &self.map {
            put_bytes(&mut out, key);
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
            out.extend_from_slice(value);
        }
        out.extend_from_slice(&(self.last_seq.len() as u64).to_le_bytes());
        for (client, seq) in &self.last_seq {
            out.extend_from_slice(&client.to_le_bytes());
            out.extend_from_slice(&seq.to_le_bytes());
        }
        Bytes::from(out)
    }

    /// The store a snapshot holds.
    pub(crate) fn restore(mut data: Bytes) -> Result<Self, DecodeError> {
        let version = get_u8(&mut data)?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        // Counts are checked against the bytes left (a key takes at least 12, a client 16)
        // before anything is sized by them.
        let keys = bounded_count(&mut data, 12)?;
        let mut map = HashMap::with_capacity(keys);
        for _ in 0..keys {
            let key = get_bytes(&mut data, "key", MAX_KEY)?;
            let len = usize::try_from(get_u64(&mut data)?).unwrap_or(usize::MAX);
            if data.len() < len {
                return Err(DecodeError::Truncated);
            }
            let value = data.split_to(len).to_vec();
            if map.insert(key[..].into(), value).is_some() {
                return Err(DecodeError::Invalid("snapshot (a key appears twice)"));
            }
        }
        let clients = bounded_count(&mut data, 16)?;
        let mut last_seq = HashMap::with_capacity(clients);
        for _ in 0..clients {
            let client = get_u64(&mut data)?;
            let seq = get_u64(&mut data)?;
            if last_seq.insert(client, seq).is_some() {
                return Err(DecodeError::Invalid("snapshot (a client appears twice)"));
            }
        }
        expect_end(&data)?;
        Ok(Self { map, last_seq })
    }
}

/// A `u64` count of items of at least `min_size` bytes each, refused if the bytes left cannot
/// hold that many.
fn bounded_count(data: &mut Bytes, min_size: usize) -> Result<usize, DecodeError> {
    let count = usize::try_from(get_u64(data)?).unwrap_or(usize::MAX);
    if count > data.len() / min_size {
        return Err(DecodeError::Truncated);
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;

    fn command(op: Op, client: u64, seq: u64, key: &str, value: &str) -> Bytes {
        Command {
            op,
            client,
            seq,
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
        }
        .encode()
    }

    fn value<'a>(store: &'a Store, key: &str) -> Option<&'a [u8]> {
        store.get(key.as_bytes())
    }

    #[test]
    fn commands_round_trip() {
        let cases = [
            (Op::Put, 1, 1, "k", "v"),
            (Op::Append, u64::MAX, u64::MAX, "", ""),
            (Op::Get, 7, 9, "key", ""),
        ];
        for (case, (op, client, seq, key, value)) in cases.into_iter().enumerate() {
            let encoded = command(op, client, seq, key, value);
            let decoded = Command::decode(encoded.clone()).unwrap();
            assert_eq!(
                (decoded.op, decoded.client, decoded.seq),
                (op, client, seq),
                "case {case}"
            );
            assert_eq!(&decoded.key[..], key.as_bytes(), "case {case}");
            assert_eq!(&decoded.value[..], value.as_bytes(), "case {case}");
            for cut in 0..encoded.len() {
                assert!(
                    Command::decode(encoded.slice(..cut)).is_err(),
                    "case {case}: cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn a_request_applies_once_however_often_it_is_committed() {
        let mut store = Store::default();
        let append = command(Op::Append, 1, 1, "k", "x");
        assert_eq!(store.apply(&append), Outcome::Applied);
        assert_eq!(store.apply(&append), Outcome::Duplicate);
        assert_eq!(value(&store, "k"), Some(&b"x"[..]));
        // An older request of the same client, committed late, is a duplicate too.
        assert_eq!(
            store.apply(&command(Op::Append, 1, 3, "k", "y")),
            Outcome::Applied
        );
        assert_eq!(
            store.apply(&command(Op::Put, 1, 2, "k", "lost")),
            Outcome::Duplicate
        );
        assert_eq!(value(&store, "k"), Some(&b"xy"[..]));
        // Another client's numbering is its own.
        assert_eq!(
            store.apply(&command(Op::Append, 2, 1, "k", "z")),
            Outcome::Applied
        );
        assert_eq!(value(&store, "k"), Some(&b"xyz"[..]));
        assert!(store.was_applied(1, 3) && store.was_applied(1, 1) && !store.was_applied(1, 4));
        assert!(!store.was_applied(3, 1));
    }

    #[test]
    fn put_replaces_and_append_extends() {
        let mut store = Store::default();
        store.apply(&command(Op::Append, 1, 1, "a", "1"));
        store.apply(&command(Op::Put, 1, 2, "a", "2"));
        store.apply(&command(Op::Append, 1, 3, "a", "3"));
        store.apply(&command(Op::Put, 1, 4, "b", ""));
        assert_eq!(value(&store, "a"), Some(&b"23"[..]));
        assert_eq!(value(&store, "b"), Some(&b""[..]));
        assert_eq!(value(&store, "c"), None);
        // A Get through the log counts for de-duplication and changes no value.
        assert_eq!(
            store.apply(&command(Op::Get, 1, 5, "a", "")),
            Outcome::Applied
        );
        assert_eq!(value(&store, "a"), Some(&b"23"[..]));
        assert_eq!(store.last_seq(1), Some(5));
    }

    #[test]
    fn empty_and_malformed_entries_change_nothing() {
        let mut store = Store::default();
        store.apply(&command(Op::Put, 1, 1, "k", "v"));
        let before = store.clone();
        assert_eq!(store.apply(&Bytes::new()), Outcome::NoOp);
        let malformed = [
            Bytes::from_static(b"x = 1"),
            Bytes::from_static(&[FORMAT_VERSION]),
            Bytes::from_static(&[FORMAT_VERSION, 9, 0, 0]),
            command(Op::Put, 2, 1, "k", "v").slice(..20),
            {
                let mut long = command(Op::Put, 2, 1, "k", "v").to_vec();
                long.push(0);
                Bytes::from(long)
            },
        ];
        for (case, entry) in malformed.iter().enumerate() {
            assert!(
                matches!(store.apply(entry), Outcome::Malformed(_)),
                "case {case}"
            );
        }
        assert_eq!(store, before);
    }

    #[test]
    fn a_snapshot_restores_the_map_and_the_table() {
        let mut store = Store::default();
        for seq in 1..=50u64 {
            let key = format!("k{}", seq % 7);
            store.apply(&command(Op::Append, seq % 3, seq, &key, &seq.to_string()));
        }
        store.apply(&command(Op::Put, 99, 1, "empty", ""));
        let restored = Store::restore(store.snapshot()).unwrap();
        assert_eq!(restored, store);
        // The restored table still refuses what was applied.
        let mut restored = restored;
        assert_eq!(
            restored.apply(&command(Op::Append, 1, 49, "k0", "again")),
            Outcome::Duplicate
        );
        assert_eq!(
            Store::restore(Store::default().snapshot()).unwrap(),
            Store::default()
        );
    }

    #[test]
    fn a_damaged_snapshot_is_refused() {
        let mut store = Store::default();
        store.apply(&command(Op::Put, 1, 1, "key", "value"));
        let snapshot = store.snapshot();
        for cut in 0..snapshot.len() {
            assert!(
                Store::restore(snapshot.slice(..cut)).is_err(),
                "cut at {cut}"
            );
        }
        let mut huge_count = vec![FORMAT_VERSION];
        huge_count.extend_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            Store::restore(Bytes::from(huge_count)),
            Err(DecodeError::Truncated)
        );
        let mut wrong_version = snapshot.to_vec();
        wrong_version[0] = 0;
        assert!(Store::restore(Bytes::from(wrong_version)).is_err());
    }
}
