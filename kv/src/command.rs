//! The commands the service writes to the Raft log.
//!
//! Format 2, the one written: `version u8 (2), kind u8, stamp u64`, then the kind's fields
//! (integers little-endian, byte strings as a `u32` length and the bytes):
//!
//! | kind | command    | fields                                              |
//! |------|------------|-----------------------------------------------------|
//! | 1    | `Put`      | session `u64`, seq `u64`, ack `u64`, key, value     |
//! | 2    | `Append`   | session `u64`, seq `u64`, ack `u64`, key, value     |
//! | 3    | `Get`      | session `u64`, seq `u64`, ack `u64`, key            |
//! | 4    | `Register` | session timeout in ms `u64`, most sessions `u64`    |
//! | 5    | `Member`   | node id `u64`, then `1`, peer and client address (UTF-8), or `0` (removed) |
//!
//! A `Member` changes the cluster's address book ([`crate::members`]); a build before it skips
//! one as a malformed entry.
//!
//! `stamp` is the proposing server's clock, in milliseconds since the Unix epoch: applying a
//! command moves the store's log time to the highest stamp seen ([`crate::session`]). A
//! `Register` carries the proposer's [`crate::SessionOptions`], so that every node expires and
//! evicts sessions by the same rule whatever its own settings. A `Get` goes through the log only
//! under [`crate::ReadMode::Log`].
//!
//! Format 1 is read, never written: the commands of logs written before sessions existed,
//! `version u8 (1), kind u8 (1 Put, 2 Append, 3 Get), client u64, seq u64, key` and, but for a
//! `Get`, `value`. They are applied as they were then, with a table of the last `seq` per client
//! ([`crate::store`]).

use bytes::Bytes;

use crate::SessionOptions;
use crate::protocol::{DecodeError, MAX_KEY, take_field};

/// The version byte of the commands and snapshots this module and [`crate::store`] write.
pub(crate) const FORMAT_VERSION: u8 = 2;

/// The version byte of the commands and snapshots written before sessions: read, never written.
pub(crate) const LEGACY_VERSION: u8 = 1;

const PUT: u8 = 1;
const APPEND: u8 = 2;
const GET: u8 = 3;
const REGISTER: u8 = 4;
const MEMBER: u8 = 5;

/// What a request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Put,
    Append,
    /// A read through the log ([`crate::ReadMode::Log`]).
    Get,
}

/// One request of a session with its key and value owned: how tests build the entries a
/// server proposes (the server encodes a [`RequestRef`] borrowed from the request's frame).
#[cfg(test)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Command {
    pub(crate) op: Op,
    pub(crate) session: u64,
    pub(crate) seq: u64,
    pub(crate) ack: u64,
    pub(crate) key: Bytes,
    /// Empty for a `Get`.
    pub(crate) value: Bytes,
}

#[cfg(test)]
impl Command {
    /// The command's log encoding, stamped `stamp`, in a buffer of its own.
    pub(crate) fn encode(&self, stamp: u64) -> Bytes {
        self.encode_in(stamp, &mut bytes::BytesMut::new())
    }

    /// The command's log encoding, stamped `stamp`, written at the end of `arena` as
    /// [`encode_request_in`] does.
    pub(crate) fn encode_in(&self, stamp: u64, arena: &mut bytes::BytesMut) -> Bytes {
        let request = RequestRef {
            stamp,
            op: self.op,
            session: self.session,
            seq: self.seq,
            ack: self.ack,
            key: &self.key,
            value: &self.value,
        };
        encode_request_in(&request, arena)
    }

    /// Decodes a format-2 request from the log into owned parts.
    pub(crate) fn decode(data: &Bytes) -> Result<(u64, Self), DecodeError> {
        match CommandRef::decode(data)? {
            CommandRef::Request(r) => Ok((
                r.stamp,
                Self {
                    op: r.op,
                    session: r.session,
                    seq: r.seq,
                    ack: r.ack,
                    key: Bytes::copy_from_slice(r.key),
                    value: Bytes::copy_from_slice(r.value),
                },
            )),
            _ => Err(DecodeError::Invalid("not a request")),
        }
    }
}

/// The log encoding of `request`, written at the end of `arena` and split off it: commands
/// encoded one after another share the arena's allocation instead of one each (the arena
/// allocates anew when it is full; the commands it holds keep the old one alive).
pub(crate) fn encode_request_in(request: &RequestRef<'_>, arena: &mut bytes::BytesMut) -> Bytes {
    use bytes::BufMut;
    let len = 2 + 8 + 24 + 4 + request.key.len() + 4 + request.value.len();
    reserve(arena, len);
    let kind = match request.op {
        Op::Put => PUT,
        Op::Append => APPEND,
        Op::Get => GET,
    };
    arena.put_u8(FORMAT_VERSION);
    arena.put_u8(kind);
    arena.put_u64_le(request.stamp);
    arena.put_u64_le(request.session);
    arena.put_u64_le(request.seq);
    arena.put_u64_le(request.ack);
    arena.put_u32_le(u32::try_from(request.key.len()).unwrap_or(u32::MAX));
    arena.put_slice(request.key);
    if request.op != Op::Get {
        arena.put_u32_le(u32::try_from(request.value.len()).unwrap_or(u32::MAX));
        arena.put_slice(request.value);
    }
    arena.split().freeze()
}

/// The log encoding of a `Register` stamped `stamp`, with the proposer's session `options`,
/// written at the end of `arena` as [`encode_request_in`] does.
pub(crate) fn encode_register(
    stamp: u64,
    options: &SessionOptions,
    arena: &mut bytes::BytesMut,
) -> Bytes {
    use bytes::BufMut;
    reserve(arena, 2 + 24);
    arena.put_u8(FORMAT_VERSION);
    arena.put_u8(REGISTER);
    arena.put_u64_le(stamp);
    arena.put_u64_le(u64::try_from(options.timeout.as_millis()).unwrap_or(u64::MAX));
    arena.put_u64_le(u64::try_from(options.max_sessions).unwrap_or(u64::MAX));
    arena.split().freeze()
}

/// The log encoding of a `Member` command stamped `stamp`: a change to the address book.
pub(crate) fn encode_member(stamp: u64, change: &crate::members::MemberChange) -> Bytes {
    let mut out = vec![FORMAT_VERSION, MEMBER];
    out.extend_from_slice(&stamp.to_le_bytes());
    crate::members::encode_change(change, &mut out);
    Bytes::from(out)
}

/// Makes room for `len` more bytes in `arena`, in blocks of 64 KiB at least.
fn reserve(arena: &mut bytes::BytesMut, len: usize) {
    if arena.capacity() - arena.len() < len {
        arena.reserve(len.max(64 << 10));
    }
}

/// A stable 64-bit digest of a request's operation, key and value: the same on every node and
/// every build (no seeded hasher), so that applying a command gives the same outcome everywhere.
/// Not cryptographic: it tells an honest retry from a different request that reused its
/// `(session, seq)` by mistake, not from one forged to collide.
pub(crate) fn fingerprint(op: Op, key: &[u8], value: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mix = |h: u64, word: u64| (h ^ word).wrapping_mul(K).rotate_left(29);
    let mut h = mix(0, op as u64 + 1);
    for field in [key, value] {
        h = mix(h, field.len() as u64);
        let mut chunks = field.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            h = mix(h, u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            h = mix(h, u64::from_le_bytes(word));
        }
    }
    h ^= h >> 32;
    h = h.wrapping_mul(K);
    h ^ (h >> 29)
}

/// A log entry of this service decoded in place: keys and values borrow the entry's bytes, so
/// applying one costs no allocation (a `Bytes` clone of an entry received whole would allocate
/// to share it).
pub(crate) enum CommandRef<'a> {
    /// A request of a session (format 2).
    Request(RequestRef<'a>),
    /// Opens a session (format 2).
    Register {
        stamp: u64,
        /// How long a session may stay idle, in milliseconds, as the proposer was configured.
        timeout_ms: u64,
        /// The most sessions kept, as the proposer was configured.
        max_sessions: u64,
    },
    /// A command written before sessions (format 1).
    Legacy(LegacyRef<'a>),
    /// A change to the address book (format 2).
    Member {
        stamp: u64,
        change: crate::members::MemberChange,
    },
}

/// A request of a session with its key and value borrowed: an entry decoded in place, or a
/// client's request as the server encodes it ([`encode_request_in`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestRef<'a> {
    pub(crate) stamp: u64,
    pub(crate) op: Op,
    pub(crate) session: u64,
    pub(crate) seq: u64,
    pub(crate) ack: u64,
    pub(crate) key: &'a [u8],
    /// Empty for a `Get` (and not encoded).
    pub(crate) value: &'a [u8],
}

impl RequestRef<'_> {
    /// What [`crate::store::Store`] compares to tell a retry of this request from another
    /// request under the same `(session, seq)`.
    pub(crate) fn fingerprint(&self) -> u64 {
        fingerprint(self.op, self.key, self.value)
    }
}

/// A format-1 command, decoded in place.
pub(crate) struct LegacyRef<'a> {
    pub(crate) op: Op,
    pub(crate) client: u64,
    pub(crate) seq: u64,
    pub(crate) key: &'a [u8],
    pub(crate) value: &'a [u8],
}

impl<'a> CommandRef<'a> {
    /// Decodes a log entry. Strict: a field cut short, bytes after the last field, an unknown
    /// version or kind, or a key above [`MAX_KEY`] is an error.
    pub(crate) fn decode(mut data: &'a [u8]) -> Result<Self, DecodeError> {
        use bytes::Buf;
        let version = data.try_get_u8().map_err(|_| DecodeError::Truncated)?;
        if version != FORMAT_VERSION && version != LEGACY_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let kind = data.try_get_u8().map_err(|_| DecodeError::Truncated)?;
        let op = match kind {
            PUT => Op::Put,
            APPEND => Op::Append,
            GET => Op::Get,
            REGISTER if version == FORMAT_VERSION => {
                let mut u64s = [0u64; 3];
                for value in &mut u64s {
                    *value = data.try_get_u64_le().map_err(|_| DecodeError::Truncated)?;
                }
                if !data.is_empty() {
                    return Err(DecodeError::TrailingBytes(data.len()));
                }
                let [stamp, timeout_ms, max_sessions] = u64s;
                return Ok(Self::Register {
                    stamp,
                    timeout_ms,
                    max_sessions,
                });
            }
            MEMBER if version == FORMAT_VERSION => {
                let stamp = data.try_get_u64_le().map_err(|_| DecodeError::Truncated)?;
                // A rare command: decoded from a copy.
                let mut rest = Bytes::copy_from_slice(data);
                let change = crate::members::decode_change(&mut rest)?;
                if !rest.is_empty() {
                    return Err(DecodeError::TrailingBytes(rest.len()));
                }
                return Ok(Self::Member { stamp, change });
            }
            other => return Err(DecodeError::UnknownKind(other)),
        };
        let count = if version == FORMAT_VERSION { 4 } else { 2 };
        let mut u64s = [0u64; 4];
        for value in &mut u64s[..count] {
            *value = data.try_get_u64_le().map_err(|_| DecodeError::Truncated)?;
        }
        let key = take_field(&mut data, "key", MAX_KEY)?;
        let value = match op {
            Op::Get => &[][..],
            Op::Put | Op::Append => take_field(&mut data, "value", usize::MAX)?,
        };
        if !data.is_empty() {
            return Err(DecodeError::TrailingBytes(data.len()));
        }
        Ok(if version == FORMAT_VERSION {
            let [stamp, session, seq, ack] = u64s;
            Self::Request(RequestRef {
                stamp,
                op,
                session,
                seq,
                ack,
                key,
                value,
            })
        } else {
            let [client, seq, ..] = u64s;
            Self::Legacy(LegacyRef {
                op,
                client,
                seq,
                key,
                value,
            })
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    /// A format-1 command, as the service wrote them before sessions.
    pub(crate) fn legacy(op: Op, client: u64, seq: u64, key: &str, value: &str) -> Bytes {
        let mut out = vec![LEGACY_VERSION];
        out.push(match op {
            Op::Put => PUT,
            Op::Append => APPEND,
            Op::Get => GET,
        });
        out.extend_from_slice(&client.to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
        crate::protocol::put_bytes(&mut out, key.as_bytes());
        if op != Op::Get {
            crate::protocol::put_bytes(&mut out, value.as_bytes());
        }
        Bytes::from(out)
    }

    #[test]
    fn requests_round_trip() {
        let cases = [
            (Op::Put, 1, 1, 1, "k", "v"),
            (Op::Append, u64::MAX, u64::MAX, u64::MAX, "", ""),
            (Op::Get, 7, 9, 3, "key", ""),
        ];
        for (case, (op, session, seq, ack, key, value)) in cases.into_iter().enumerate() {
            let command = Command {
                op,
                session,
                seq,
                ack,
                key: Bytes::copy_from_slice(key.as_bytes()),
                value: Bytes::copy_from_slice(value.as_bytes()),
            };
            let encoded = command.encode(case as u64 * 1000);
            assert_eq!(
                Command::decode(&encoded),
                Ok((case as u64 * 1000, command.clone())),
                "case {case}"
            );
            // Cut anywhere, it is refused.
            for cut in 0..encoded.len() {
                assert!(
                    CommandRef::decode(&encoded[..cut]).is_err(),
                    "case {case}: cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn a_register_carries_its_stamp_and_the_session_options() {
        let options = SessionOptions {
            timeout: Duration::from_secs(90),
            max_sessions: 12,
        };
        let encoded = encode_register(5_000, &options, &mut bytes::BytesMut::new());
        match CommandRef::decode(&encoded) {
            Ok(CommandRef::Register {
                stamp,
                timeout_ms,
                max_sessions,
            }) => assert_eq!((stamp, timeout_ms, max_sessions), (5_000, 90_000, 12)),
            _ => panic!("a register"),
        }
        let mut long = encoded.to_vec();
        long.push(0);
        assert_eq!(
            CommandRef::decode(&long).err(),
            Some(DecodeError::TrailingBytes(1))
        );
        // Format 1 had no register.
        let mut old = encoded.to_vec();
        old[0] = LEGACY_VERSION;
        assert_eq!(
            CommandRef::decode(&old).err(),
            Some(DecodeError::UnknownKind(REGISTER))
        );
    }

    #[test]
    fn format_1_commands_still_decode() {
        let cases = [
            (Op::Put, 1, 1, "k", "v"),
            (Op::Append, u64::MAX, 3, "", "x"),
            (Op::Get, 7, 9, "key", ""),
        ];
        for (case, (op, client, seq, key, value)) in cases.into_iter().enumerate() {
            let encoded = legacy(op, client, seq, key, value);
            let Ok(CommandRef::Legacy(c)) = CommandRef::decode(&encoded) else {
                panic!("case {case}: a format-1 command");
            };
            assert_eq!(
                (c.op, c.client, c.seq, c.key, c.value),
                (op, client, seq, key.as_bytes(), value.as_bytes()),
                "case {case}"
            );
        }
        assert_eq!(
            CommandRef::decode(&[3, PUT]).err(),
            Some(DecodeError::UnknownVersion(3))
        );
    }

    #[test]
    fn fingerprints_tell_requests_apart() {
        type Parts = (Op, &'static [u8], &'static [u8]);
        let cases: [(Parts, Parts); 5] = [
            ((Op::Put, b"k", b"v"), (Op::Append, b"k", b"v")),
            ((Op::Put, b"k", b"v"), (Op::Put, b"k", b"w")),
            // The boundary between key and value counts.
            ((Op::Put, b"ab", b"c"), (Op::Put, b"a", b"bc")),
            // So do trailing zero bytes.
            ((Op::Put, b"k", b"12345678"), (Op::Put, b"k", b"12345678\0")),
            ((Op::Get, b"", b""), (Op::Put, b"", b"")),
        ];
        for (case, (a, b)) in cases.into_iter().enumerate() {
            assert_ne!(
                fingerprint(a.0, a.1, a.2),
                fingerprint(b.0, b.1, b.2),
                "case {case}"
            );
        }
        // Pinned: a change to the function would make nodes of different builds disagree on
        // what a retry is.
        assert_eq!(
            fingerprint(Op::Put, b"key", b"value"),
            11_253_178_269_982_798_397
        );
    }
}
