//! [`Map`]: the service's keys and values, as a copy-on-write map of [`SHARDS`] shards, so that
//! a consistent view of it, for a snapshot, costs the node's thread [`SHARDS`] reference counts
//! rather than a copy of the state.
//!
//! A shard is a hash table the map owns outright until a view is taken ([`Map::view`]): then
//! every shard moves behind an `Arc` that the view shares. A write to a shared shard takes it
//! back, copying its table first if the view still holds it (its slots, not the long keys and
//! values: at most once per shard per view), or without a copy if the view is gone; a write to
//! an owned shard touches no reference count at all. A key or value of up to [`INLINE`] bytes
//! is kept in its slot and copied with it (comparing a short key reads no other cache line); a
//! longer one is an `Arc`, so that copying a table copies it not, and a long value is copied
//! only when written while a view holds it. So a `Put` to a key that has a value allocates
//! nothing (a long value reuses its buffer), as before the map was sharded.
//!
//! Each key is hashed once, with SipHash under a key drawn at random once per process (so
//! clients cannot make keys collide on purpose, and two maps of the process place the same key
//! alike): the top bits of the hash pick the shard, the rest place the key in the shard's table
//! (the table is given the hash rotated, so that the bits it uses are not the ones all keys of
//! the shard share), and each slot keeps its hash for the table's resizing.
//!
//! Invariant: `shards.len() == SHARDS`; every key is in the shard [`Hash::shard`] names, in a
//! slot whose `hash` is its [`Hash`].

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, LazyLock};

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

/// How many shards the map has: a view takes this many reference counts, and a write while a
/// view lives copies at most 1/`SHARDS` of the map's slots.
pub(crate) const SHARDS: usize = 256;

/// The bits of a hash that pick the shard.
const SHARD_BITS: u32 = SHARDS.trailing_zeros();

/// The longest key or value kept in its slot, without an allocation of its own.
pub(crate) const INLINE: usize = 22;

/// The hasher of every map of the process: SipHash-1-3 with a random key.
static HASHER: LazyLock<RandomState> = LazyLock::new(RandomState::new);

/// A key's hash, computed once per operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Hash(u64);

impl Hash {
    fn of(key: &[u8]) -> Self {
        Self(HASHER.hash_one(key))
    }

    /// The key's shard: the top bits.
    fn shard(self) -> usize {
        const _: () = assert!(SHARDS.is_power_of_two() && SHARDS > 1);
        (self.0 >> (64 - SHARD_BITS)) as usize
    }

    /// What the shard's table is given: the hash rotated so that its top bits (the table's tag
    /// bits) and low bits (its bucket) are not the shard's bits, which its keys all share.
    fn in_table(self) -> u64 {
        self.0.rotate_right(SHARD_BITS)
    }
}

/// Up to [`INLINE`] bytes held in place: a short key or value, which reading costs no other
/// cache line.
#[derive(Clone, Copy)]
struct Inline {
    /// Invariant: at most [`INLINE`].
    len: u8,
    bytes: [u8; INLINE],
}

impl Inline {
    /// `data` in place, if it is short enough.
    fn new(data: &[u8]) -> Option<Self> {
        let mut bytes = [0; INLINE];
        bytes.get_mut(..data.len())?.copy_from_slice(data);
        Some(Self {
            len: data.len() as u8,
            bytes,
        })
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// A value: in its slot if short, shared with the views otherwise.
#[derive(Clone)]
enum Value {
    Inline(Inline),
    /// Longer than [`INLINE`] bytes (or was, and kept its buffer).
    Shared(Arc<Vec<u8>>),
}

impl Value {
    fn new(value: &[u8]) -> Self {
        Inline::new(value).map_or_else(|| Self::Shared(Arc::new(value.to_vec())), Self::Inline)
    }

    fn from_vec(value: Vec<u8>) -> Self {
        Inline::new(&value).map_or_else(|| Self::Shared(Arc::new(value)), Self::Inline)
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Self::Inline(inline) => inline.as_slice(),
            Self::Shared(v) => v,
        }
    }

    /// Replaces the value with `value` (`append`: adds `value` at its end), reusing its buffer
    /// unless a view holds it.
    fn write(&mut self, append: bool, value: &[u8]) {
        let kept = if append { self.as_slice().len() } else { 0 };
        match self {
            Self::Inline(inline) if kept + value.len() <= INLINE => {
                inline.bytes[kept..kept + value.len()].copy_from_slice(value);
                inline.len = (kept + value.len()) as u8;
            }
            Self::Shared(shared) => {
                let buffer = Arc::make_mut(shared);
                buffer.truncate(kept);
                buffer.extend_from_slice(value);
            }
            Self::Inline(inline) => {
                let mut buffer = Vec::with_capacity(kept + value.len());
                buffer.extend_from_slice(&inline.as_slice()[..kept]);
                buffer.extend_from_slice(value);
                *self = Self::Shared(Arc::new(buffer));
            }
        }
    }
}

/// A key: in its slot if short (so that comparing it reads no other cache line), shared with
/// the views otherwise.
#[derive(Clone)]
enum Key {
    Inline(Inline),
    /// Longer than [`INLINE`] bytes.
    Shared(Arc<[u8]>),
}

impl Key {
    fn new(key: &[u8]) -> Self {
        Inline::new(key).map_or_else(|| Self::Shared(key.into()), Self::Inline)
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Self::Inline(inline) => inline.as_slice(),
            Self::Shared(k) => k,
        }
    }
}

/// A key and its value, with the key's hash.
#[derive(Clone)]
struct Slot {
    hash: Hash,
    key: Key,
    value: Value,
}

impl Slot {
    /// Whether this is the slot of `key`, whose hash is `hash`.
    fn is(&self, hash: Hash, key: &[u8]) -> bool {
        self.hash == hash && self.key.as_slice() == key
    }
}

type Table = HashTable<Slot>;

/// One shard's table: the map's own, or shared with views.
#[derive(Clone)]
enum Shard {
    Own(Table),
    Shared(Arc<Table>),
}

impl Shard {
    fn table(&self) -> &Table {
        match self {
            Self::Own(table) => table,
            Self::Shared(table) => table,
        }
    }

    /// The table, to change: taken back from the views first (copied if one still holds it).
    #[inline]
    fn own(&mut self) -> &mut Table {
        if let Self::Shared(_) = self {
            let Self::Shared(shared) = std::mem::replace(self, Self::Own(Table::new())) else {
                unreachable!("matched above");
            };
            *self = Self::Own(Arc::unwrap_or_clone(shared));
        }
        match self {
            Self::Own(table) => table,
            Self::Shared(_) => unreachable!("owned above"),
        }
    }

    /// Shares the table (moving it behind an `Arc` if the map owned it) and returns the share.
    fn share(&mut self) -> Arc<Table> {
        if let Self::Own(table) = self {
            *self = Self::Shared(Arc::new(std::mem::take(table)));
        }
        match self {
            Self::Shared(table) => table.clone(),
            Self::Own(_) => unreachable!("shared above"),
        }
    }
}

/// The keys and values: see the module docs. `Clone` copies the tables the map owns and shares
/// the others; [`Map::view`] takes a view, sharing them all.
#[derive(Clone)]
pub(crate) struct Map {
    shards: Box<[Shard]>,
}

impl Default for Map {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Shard::Own(Table::new())).collect(),
        }
    }
}

impl PartialEq for Map {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl Eq for Map {}

impl fmt::Debug for Map {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Map {
    /// A view of the map as it is now, which later writes to the map do not change: every shard
    /// is shared between the two until a write takes it back.
    pub(crate) fn view(&mut self) -> Self {
        Self {
            shards: self
                .shards
                .iter_mut()
                .map(|shard| Shard::Shared(shard.share()))
                .collect(),
        }
    }

    /// The slot of `key` in `table`, if it has one.
    fn find<'t>(table: &'t Table, hash: Hash, key: &[u8]) -> Option<&'t Slot> {
        table.find(hash.in_table(), |s| s.is(hash, key))
    }

    /// The value of `key`, if it has one.
    pub(crate) fn get(&self, key: &[u8]) -> Option<&[u8]> {
        let hash = Hash::of(key);
        Self::find(self.shards[hash.shard()].table(), hash, key).map(|s| s.value.as_slice())
    }

    /// Sets `key`'s value to `value`, or, if `append`, adds `value` at the end of the value it
    /// has (a key without one has the empty value): unless the result would be longer than
    /// `max_len`. Returns whether it wrote.
    pub(crate) fn write(&mut self, key: &[u8], append: bool, value: &[u8], max_len: usize) -> bool {
        let hash = Hash::of(key);
        let table = self.shards[hash.shard()].own();
        match table.entry(hash.in_table(), |s| s.is(hash, key), |s| s.hash.in_table()) {
            Entry::Occupied(mut slot) => {
                let value_now = &mut slot.get_mut().value;
                let kept = if append {
                    value_now.as_slice().len()
                } else {
                    0
                };
                if kept + value.len() > max_len {
                    return false;
                }
                value_now.write(append, value);
            }
            Entry::Vacant(vacant) => {
                if value.len() > max_len {
                    return false;
                }
                vacant.insert(Slot {
                    hash,
                    key: Key::new(key),
                    value: Value::new(value),
                });
            }
        }
        true
    }

    /// Sets `key`'s value; returns whether it had one.
    pub(crate) fn insert(&mut self, key: &[u8], value: Vec<u8>) -> bool {
        let hash = Hash::of(key);
        let table = self.shards[hash.shard()].own();
        match table.entry(hash.in_table(), |s| s.is(hash, key), |s| s.hash.in_table()) {
            Entry::Occupied(mut slot) => {
                slot.get_mut().value = Value::from_vec(value);
                true
            }
            Entry::Vacant(vacant) => {
                vacant.insert(Slot {
                    hash,
                    key: Key::new(key),
                    value: Value::from_vec(value),
                });
                false
            }
        }
    }

    /// The number of keys with a value.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.table().len()).sum()
    }

    /// Every key and its value, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.shards.iter().flat_map(|s| {
            s.table()
                .iter()
                .map(|s| (s.key.as_slice(), s.value.as_slice()))
        })
    }

    /// Drops every key.
    #[cfg(test)]
    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }

    /// How many shards this map shares with `other` (the ones no write took back since one was
    /// taken from the other).
    #[cfg(test)]
    pub(crate) fn shared_shards(&self, other: &Self) -> usize {
        self.shards
            .iter()
            .zip(other.shards.iter())
            .filter(|(a, b)| matches!((a, b), (Shard::Shared(a), Shard::Shared(b)) if Arc::ptr_eq(a, b)))
            .count()
    }

    /// How many shards with keys this map shares (with a view, or with none any more).
    #[cfg(test)]
    pub(crate) fn shared_shards_with_keys(&self) -> usize {
        self.shards
            .iter()
            .filter(|s| matches!(s, Shard::Shared(t) if !t.is_empty()))
            .count()
    }

    /// How many long values this map shares with `other`.
    #[cfg(test)]
    pub(crate) fn shared_values(&self, other: &Self) -> usize {
        self.shards
            .iter()
            .flat_map(|s| s.table().iter())
            .filter(|slot| {
                let Value::Shared(mine) = &slot.value else {
                    return false;
                };
                Self::find(
                    other.shards[slot.hash.shard()].table(),
                    slot.hash,
                    slot.key.as_slice(),
                )
                .is_some_and(
                    |o| matches!(&o.value, Value::Shared(theirs) if Arc::ptr_eq(mine, theirs)),
                )
            })
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value longer than [`INLINE`], so that it is shared rather than copied.
    fn long(i: u32) -> Vec<u8> {
        format!("{i:0>40}").into_bytes()
    }

    #[test]
    fn a_view_keeps_its_state_while_the_map_changes_and_copies_only_written_shards() {
        let mut map = Map::default();
        for i in 0..1000u32 {
            map.insert(&i.to_le_bytes(), long(i));
        }
        let view = map.view();
        assert_eq!(map.shared_shards(&view), SHARDS, "a view copies nothing");
        // One write copies one shard's table, and the value it writes.
        assert!(map.write(&7u32.to_le_bytes(), true, b"+", usize::MAX));
        assert_eq!(map.shared_shards(&view), SHARDS - 1);
        assert_eq!(map.shared_values(&view), 999);
        // A second write to the same value copies nothing more.
        assert!(map.write(&7u32.to_le_bytes(), true, b"!", usize::MAX));
        assert_eq!(map.shared_shards(&view), SHARDS - 1);
        assert_eq!(map.shared_values(&view), 999);
        assert!(!map.insert(&5000u32.to_le_bytes(), b"new".to_vec()));
        assert!(map.insert(&3u32.to_le_bytes(), b"changed".to_vec()));
        // The view is the state when it was taken.
        assert_eq!(view.len(), 1000);
        for i in 0..1000u32 {
            assert_eq!(view.get(&i.to_le_bytes()), Some(&long(i)[..]), "key {i}");
        }
        assert_eq!(view.get(&5000u32.to_le_bytes()), None);
        let mut seven = long(7);
        seven.extend_from_slice(b"+!");
        assert_eq!(map.get(&7u32.to_le_bytes()), Some(&seven[..]));
        assert_eq!(map.get(&3u32.to_le_bytes()), Some(&b"changed"[..]));
        assert_eq!(map.len(), 1001);
        assert_eq!(map.iter().count(), 1001);
        // Once the view is gone, a write takes its shard back (without a copy: no one else
        // holds it), and the map owns every shard it wrote to.
        drop(view);
        assert!(map.shared_shards_with_keys() > 0);
        for i in 0..1000u32 {
            assert!(map.write(&i.to_le_bytes(), true, b".", usize::MAX));
        }
        assert_eq!(map.shared_shards_with_keys(), 0);
    }

    #[test]
    fn short_values_live_in_their_slots_and_grow_out_of_them() {
        let mut map = Map::default();
        let view_before = map.view();
        assert!(map.write(b"k", false, b"0123456789", usize::MAX));
        assert!(map.write(b"k", true, b"0123456789ab", usize::MAX));
        assert_eq!(map.get(b"k").map(<[u8]>::len), Some(INLINE));
        let view = map.view();
        assert_eq!(map.shared_values(&view), 0, "a short value is in its slot");
        // Growing past INLINE moves it out; the view keeps the short one.
        assert!(map.write(b"k", true, b"!", usize::MAX));
        assert_eq!(map.get(b"k").unwrap(), b"01234567890123456789ab!");
        assert_eq!(view.get(b"k").unwrap(), b"01234567890123456789ab");
        // A put of a short value brings it back in.
        assert!(map.write(b"k", false, b"short", usize::MAX));
        assert_eq!(map.get(b"k").unwrap(), b"short");
        // The limit holds for puts, appends and new keys, and a refused write changes nothing.
        assert!(!map.write(b"k", true, b"123456", 10));
        assert!(map.write(b"k", true, b"12345", 10));
        assert!(!map.write(b"new", false, b"12345678901", 10));
        assert_eq!(map.get(b"k").unwrap(), b"short12345");
        assert_eq!(map.get(b"new"), None);
        assert_eq!(view_before.len(), 0);
        assert_eq!(view.len(), 1);
        // Maps with the same keys and values are equal, however they were built.
        let mut other = Map::default();
        other.insert(b"k", b"short12345".to_vec());
        assert_eq!(map, other);
        other.insert(b"k", b"other".to_vec());
        assert_ne!(map, other);
    }
}
