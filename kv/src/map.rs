//! [`Map`]: the service's keys and values, as a copy-on-write map of [`SHARDS`] shards, so that
//! a consistent view of it, for a snapshot, costs the node's thread [`SHARDS`] reference counts
//! rather than a copy of the state.
//!
//! Each shard is a `HashMap` behind an `Arc`, and so is each key and value. Cloning the map
//! clones the shards' `Arc`s: the clone is a view that later writes do not change. A write goes
//! through [`Arc::make_mut`], twice: on its shard and on its value. Each changes in place what
//! nothing else holds (the steady state: a `Put` to a key that has a value allocates nothing,
//! as before the map was sharded), and copies first what a view holds: the shard (its table of
//! reference counts, not the keys and values) at most once per view, by the first write to it,
//! and the one value written. A key's shard is picked by a fast hash seeded at random once per
//! process, so that keys spread over the shards whatever they are, and the same in every map
//! of the process, so that two maps with the same keys and values compare equal shard by
//! shard.
//!
//! Invariant: `shards.len() == SHARDS`, and every key is in the shard [`shard_of`] names.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, LazyLock};

use foldhash::fast::RandomState;

/// How many shards the map has: a view takes this many reference counts, and a write while a
/// view lives copies at most 1/`SHARDS` of the map.
pub(crate) const SHARDS: usize = 256;

/// One shard: keys and their values, each shared with the views that hold the shard.
type Shard = HashMap<Arc<[u8]>, Arc<Vec<u8>>>;

/// Picks a key's shard: random per process, the same for every map in it. A fast hash, not a
/// HashDoS-resistant one: keys that all land in one shard only make the copies of that shard
/// larger; each shard's `HashMap` keeps std's SipHash with keys of its own.
static SHARD_HASHER: LazyLock<RandomState> = LazyLock::new(RandomState::default);

/// The shard of `key`: the top bits of its hash (the shard's own `HashMap` hashes it again with
/// its own keys, so the bits it uses are not all alike within a shard).
fn shard_of(key: &[u8]) -> usize {
    const _: () = assert!(SHARDS.is_power_of_two() && SHARDS > 1);
    (SHARD_HASHER.hash_one(key) >> (64 - SHARDS.trailing_zeros())) as usize
}

/// The keys and values: see the module docs. `Clone` takes a view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Map {
    shards: Box<[Arc<Shard>]>,
}

impl Default for Map {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Arc::default()).collect(),
        }
    }
}

impl Map {
    /// The value of `key`, if it has one.
    pub(crate) fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.shards[shard_of(key)].get(key).map(|v| &v[..])
    }

    /// The shard of `key`, to change: copied first if a view holds it.
    fn shard_mut(&mut self, key: &[u8]) -> &mut Shard {
        Arc::make_mut(&mut self.shards[shard_of(key)])
    }

    /// The value of `key` to change in place (copied first if a view holds it), if it has one.
    pub(crate) fn get_mut(&mut self, key: &[u8]) -> Option<&mut Vec<u8>> {
        self.shard_mut(key).get_mut(key).map(Arc::make_mut)
    }

    /// Sets `key`'s value; returns whether it had one.
    pub(crate) fn insert(&mut self, key: &[u8], value: Vec<u8>) -> bool {
        self.shard_mut(key)
            .insert(key.into(), Arc::new(value))
            .is_some()
    }

    /// The number of keys with a value.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len()).sum()
    }

    /// Every key and its value, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.shards
            .iter()
            .flat_map(|s| s.iter().map(|(k, v)| (&k[..], &v[..])))
    }

    /// Drops every key.
    #[cfg(test)]
    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }

    /// How many shards this map shares with `other` (the ones no write copied since one was
    /// taken from the other).
    #[cfg(test)]
    pub(crate) fn shared_shards(&self, other: &Self) -> usize {
        self.shards
            .iter()
            .zip(other.shards.iter())
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count()
    }

    /// How many values this map shares with `other`.
    #[cfg(test)]
    pub(crate) fn shared_values(&self, other: &Self) -> usize {
        self.shards
            .iter()
            .flat_map(|s| s.iter())
            .filter(|(k, v)| {
                other.shards[shard_of(k)]
                    .get(&k[..])
                    .is_some_and(|o| Arc::ptr_eq(v, o))
            })
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_keeps_its_state_while_the_map_changes_and_copies_only_written_shards() {
        let mut map = Map::default();
        for i in 0..1000u32 {
            map.insert(&i.to_le_bytes(), i.to_string().into_bytes());
        }
        let view = map.clone();
        assert_eq!(map.shared_shards(&view), SHARDS, "a view copies nothing");
        // One write copies one shard's table, and the value it writes.
        map.get_mut(&7u32.to_le_bytes())
            .unwrap()
            .extend_from_slice(b"+");
        assert_eq!(map.shared_shards(&view), SHARDS - 1);
        assert_eq!(map.shared_values(&view), 999);
        // A second write to the same value copies nothing more.
        map.get_mut(&7u32.to_le_bytes()).unwrap().push(b'!');
        assert_eq!(map.shared_shards(&view), SHARDS - 1);
        assert_eq!(map.shared_values(&view), 999);
        assert!(!map.insert(&5000u32.to_le_bytes(), b"new".to_vec()));
        assert!(map.insert(&3u32.to_le_bytes(), b"changed".to_vec()));
        // The view is the state when it was taken.
        assert_eq!(view.len(), 1000);
        for i in 0..1000u32 {
            assert_eq!(
                view.get(&i.to_le_bytes()),
                Some(i.to_string().as_bytes()),
                "key {i}"
            );
        }
        assert_eq!(view.get(&5000u32.to_le_bytes()), None);
        assert_eq!(map.get(&7u32.to_le_bytes()), Some(&b"7+!"[..]));
        assert_eq!(map.get(&3u32.to_le_bytes()), Some(&b"changed"[..]));
        assert_eq!(map.len(), 1001);
        assert_eq!(map.iter().count(), 1001);
        // Without a view, writes copy nothing.
        drop(view);
        let pointers: Vec<*const Shard> = map.shards.iter().map(Arc::as_ptr).collect();
        for i in 0..1000u32 {
            map.get_mut(&i.to_le_bytes()).unwrap().push(b'.');
        }
        let after: Vec<*const Shard> = map.shards.iter().map(Arc::as_ptr).collect();
        assert_eq!(pointers, after);
    }
}
