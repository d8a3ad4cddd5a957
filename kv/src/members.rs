//! The cluster's address book: where each node that joined the running cluster is reached, and
//! the ids that were removed, as replicated state.
//!
//! A node id is a small integer (below [`MAX_NODE_ID`], the engine's `MAX_PEERS`) chosen by the
//! operator and stable for the life of the node, whatever its address. The nodes a cluster was
//! bootstrapped with are reached at the addresses of `zeroraft init --peers`, which every node's
//! data directory records; a node added later is reached at the addresses of the `Member`
//! command (`crate::command`) committed *before* the configuration change that adds it, so that
//! every node knows where to send to a member before it must. Every node applies the book
//! and hands each change to its transport ([`crate::KvState::on_member`]), and the book is in the
//! service's snapshot (format 3), so that a node that installs a snapshot learns it too.
//!
//! An id once removed is never used again: a blank node under an old id could vote a second
//! time in a term it voted in, or count toward a majority for entries it no longer holds. The
//! book keeps the removed ids, and refuses addresses for one.
//!
//! Invariant: no id is both in `members` and in `removed`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use bytes::Bytes;

use crate::protocol::{DecodeError, get_bytes, get_u8, get_u64, put_bytes};

/// The largest node id, plus one: the engine's `MAX_PEERS`, the ids its quorum bit sets hold.
pub const MAX_NODE_ID: u64 = zeroraft_engine::MAX_PEERS as u64;

/// Where one node is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberAddrs {
    /// Where the other nodes reach it (its peer port).
    pub peer: SocketAddr,
    /// Where clients reach it.
    pub client: SocketAddr,
}

/// A change to the address book, as a committed `Member` command makes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberChange {
    /// Node `id` is reached at these addresses from now on.
    Set {
        /// The node.
        id: u64,
        /// Its addresses.
        addrs: MemberAddrs,
    },
    /// Node `id` was removed from the cluster: its addresses are forgotten and its id is never
    /// used again.
    Retire {
        /// The node.
        id: u64,
    },
}

impl MemberChange {
    /// The node it is about.
    pub fn id(&self) -> u64 {
        match *self {
            Self::Set { id, .. } | Self::Retire { id } => id,
        }
    }
}

/// The address book: the addresses of the nodes added to the running cluster, and the ids
/// removed from it. See the [module docs](self).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressBook {
    members: BTreeMap<u64, MemberAddrs>,
    removed: BTreeSet<u64>,
}

impl AddressBook {
    /// Whether the book holds nothing (a cluster whose members never changed).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.removed.is_empty()
    }

    /// The addresses of node `id`, if the book has them.
    pub fn get(&self, id: u64) -> Option<&MemberAddrs> {
        self.members.get(&id)
    }

    /// Every node with addresses, by id.
    pub fn members(&self) -> impl Iterator<Item = (u64, &MemberAddrs)> {
        self.members.iter().map(|(id, a)| (*id, a))
    }

    /// Whether `id` was removed (and may not be used again).
    pub fn is_removed(&self, id: u64) -> bool {
        self.removed.contains(&id)
    }

    /// The removed ids, in order.
    pub fn removed(&self) -> impl Iterator<Item = u64> + '_ {
        self.removed.iter().copied()
    }

    /// Applies `change`; returns whether it was admitted. Addresses for a removed id, or for an
    /// id at or above [`MAX_NODE_ID`], are refused.
    pub fn apply(&mut self, change: &MemberChange) -> bool {
        match *change {
            MemberChange::Set { id, addrs } => {
                if id >= MAX_NODE_ID || self.removed.contains(&id) {
                    return false;
                }
                self.members.insert(id, addrs);
            }
            MemberChange::Retire { id } => {
                if id >= MAX_NODE_ID {
                    return false;
                }
                self.members.remove(&id);
                self.removed.insert(id);
            }
        }
        true
    }

    /// The size of [`AddressBook::encode`]'s output.
    pub(crate) fn encoded_len(&self) -> usize {
        let text = |a: &SocketAddr| 4 + a.to_string().len();
        8 + self
            .members
            .values()
            .map(|a| 8 + text(&a.peer) + text(&a.client))
            .sum::<usize>()
            + 8
            + 8 * self.removed.len()
    }

    /// Appends the book: the number of members `u64`, each id `u64`, peer and client address
    /// (UTF-8 byte strings), then the number of removed ids `u64` and each id `u64`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.members.len() as u64).to_le_bytes());
        for (id, addrs) in &self.members {
            out.extend_from_slice(&id.to_le_bytes());
            put_bytes(out, addrs.peer.to_string().as_bytes());
            put_bytes(out, addrs.client.to_string().as_bytes());
        }
        out.extend_from_slice(&(self.removed.len() as u64).to_le_bytes());
        for id in &self.removed {
            out.extend_from_slice(&id.to_le_bytes());
        }
    }

    /// Reads what [`AddressBook::encode`] wrote, checking every rule the book keeps.
    pub(crate) fn decode(data: &mut Bytes) -> Result<Self, DecodeError> {
        let mut book = Self::default();
        let members = get_u64(data)?;
        if members > MAX_NODE_ID {
            return Err(DecodeError::Invalid("address book (too many members)"));
        }
        for _ in 0..members {
            let id = get_u64(data)?;
            let addrs = MemberAddrs {
                peer: get_addr(data)?,
                client: get_addr(data)?,
            };
            if id >= MAX_NODE_ID || book.members.insert(id, addrs).is_some() {
                return Err(DecodeError::Invalid("address book (a member id)"));
            }
        }
        let removed = get_u64(data)?;
        if removed > MAX_NODE_ID {
            return Err(DecodeError::Invalid("address book (too many removed ids)"));
        }
        for _ in 0..removed {
            let id = get_u64(data)?;
            if id >= MAX_NODE_ID || book.members.contains_key(&id) || !book.removed.insert(id) {
                return Err(DecodeError::Invalid("address book (a removed id)"));
            }
        }
        Ok(book)
    }
}

/// Reads a socket address written as a UTF-8 byte string.
pub(crate) fn get_addr(data: &mut Bytes) -> Result<SocketAddr, DecodeError> {
    let text = get_bytes(data, "address", 64)?;
    std::str::from_utf8(&text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or(DecodeError::Invalid("address"))
}

/// Encodes a [`MemberChange`]'s fields after a command's header: id `u64`, then `1`, peer and
/// client address for `Set`, or `0` for `Retire`.
pub(crate) fn encode_change(change: &MemberChange, out: &mut Vec<u8>) {
    out.extend_from_slice(&change.id().to_le_bytes());
    match change {
        MemberChange::Set { addrs, .. } => {
            out.push(1);
            put_bytes(out, addrs.peer.to_string().as_bytes());
            put_bytes(out, addrs.client.to_string().as_bytes());
        }
        MemberChange::Retire { .. } => out.push(0),
    }
}

/// Decodes what [`encode_change`] wrote.
pub(crate) fn decode_change(data: &mut Bytes) -> Result<MemberChange, DecodeError> {
    let id = get_u64(data)?;
    match get_u8(data)? {
        1 => Ok(MemberChange::Set {
            id,
            addrs: MemberAddrs {
                peer: get_addr(data)?,
                client: get_addr(data)?,
            },
        }),
        0 => Ok(MemberChange::Retire { id }),
        _ => Err(DecodeError::Invalid("member change")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(port: u16) -> MemberAddrs {
        MemberAddrs {
            peer: ([127, 0, 0, 1], port).into(),
            client: ([10, 0, 0, 1], port + 1000).into(),
        }
    }

    #[test]
    fn a_removed_id_is_never_given_addresses_again() {
        let mut book = AddressBook::default();
        assert!(book.is_empty());
        let cases = [
            // (change, admitted, members after, removed after)
            (
                MemberChange::Set {
                    id: 3,
                    addrs: addrs(7003),
                },
                true,
                vec![3],
                vec![],
            ),
            (
                MemberChange::Set {
                    id: 4,
                    addrs: addrs(7004),
                },
                true,
                vec![3, 4],
                vec![],
            ),
            (MemberChange::Retire { id: 0 }, true, vec![3, 4], vec![0]),
            (MemberChange::Retire { id: 3 }, true, vec![4], vec![0, 3]),
            (
                MemberChange::Set {
                    id: 3,
                    addrs: addrs(7005),
                },
                false,
                vec![4],
                vec![0, 3],
            ),
            (
                MemberChange::Set {
                    id: MAX_NODE_ID,
                    addrs: addrs(7006),
                },
                false,
                vec![4],
                vec![0, 3],
            ),
        ];
        for (case, (change, admitted, members, removed)) in cases.into_iter().enumerate() {
            assert_eq!(book.apply(&change), admitted, "case {case}");
            assert_eq!(
                book.members().map(|(id, _)| id).collect::<Vec<_>>(),
                members,
                "case {case}"
            );
            assert_eq!(book.removed().collect::<Vec<_>>(), removed, "case {case}");
            let mut out = Vec::new();
            book.encode(&mut out);
            assert_eq!(out.len(), book.encoded_len(), "case {case}");
            let mut data = Bytes::from(out);
            assert_eq!(AddressBook::decode(&mut data).unwrap(), book, "case {case}");
            assert!(data.is_empty(), "case {case}");
        }
        assert_eq!(book.get(4), Some(&addrs(7004)));
    }

    #[test]
    fn changes_survive_their_encoding_and_bad_ones_are_refused() {
        for change in [
            MemberChange::Set {
                id: 9,
                addrs: MemberAddrs {
                    peer: "[::1]:7000".parse().unwrap(),
                    client: "127.0.0.1:8000".parse().unwrap(),
                },
            },
            MemberChange::Retire { id: 2 },
        ] {
            let mut out = Vec::new();
            encode_change(&change, &mut out);
            let mut data = Bytes::from(out);
            assert_eq!(decode_change(&mut data).unwrap(), change);
            assert!(data.is_empty());
        }
        let mut bad = Vec::new();
        bad.extend_from_slice(&3u64.to_le_bytes());
        bad.push(1);
        put_bytes(&mut bad, b"not an address");
        put_bytes(&mut bad, b"127.0.0.1:1");
        assert!(decode_change(&mut Bytes::from(bad)).is_err());
        // A book that names an id both as a member and removed.
        let mut both = Vec::new();
        both.extend_from_slice(&1u64.to_le_bytes());
        both.extend_from_slice(&5u64.to_le_bytes());
        put_bytes(&mut both, b"127.0.0.1:1");
        put_bytes(&mut both, b"127.0.0.1:2");
        both.extend_from_slice(&1u64.to_le_bytes());
        both.extend_from_slice(&5u64.to_le_bytes());
        assert!(AddressBook::decode(&mut Bytes::from(both)).is_err());
    }
}
