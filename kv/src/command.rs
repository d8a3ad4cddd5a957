//! The commands the service writes to the Raft log.
//!
//! A command is `version u8, kind u8, client u64, seq u64, key, value` (integers little-endian,
//! byte strings as a `u32` length and the bytes; no value for a `Get`). A `Get` goes through the
//! log only under [`crate::ReadMode::Log`]; it changes nothing but the de-duplication table
//! ([`crate::store`]).

use bytes::Bytes;

use crate::protocol::{DecodeError, MAX_KEY};

/// The version byte of commands and snapshots written by this module.
pub(crate) const FORMAT_VERSION: u8 = 1;

const PUT: u8 = 1;
const APPEND: u8 = 2;
const GET: u8 = 3;

/// What a command does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Put,
    Append,
    /// A read through the log ([`crate::ReadMode::Log`]).
    Get,
}

/// One client request as written to the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Command {
    pub(crate) op: Op,
    pub(crate) client: u64,
    pub(crate) seq: u64,
    pub(crate) key: Bytes,
    /// Empty for a `Get`.
    pub(crate) value: Bytes,
}

impl Command {
    /// The command's log encoding, in a buffer of its own.
    #[cfg(test)]
    pub(crate) fn encode(&self) -> Bytes {
        self.encode_in(&mut bytes::BytesMut::new())
    }

    /// The command's log encoding, written at the end of `arena` and split off it: commands
    /// encoded one after another share the arena's allocation instead of one each (the arena
    /// allocates anew when it is full; the commands it holds keep the old one alive).
    pub(crate) fn encode_in(&self, arena: &mut bytes::BytesMut) -> Bytes {
        use bytes::BufMut;
        let len = 2 + 16 + 4 + self.key.len() + 4 + self.value.len();
        if arena.capacity() - arena.len() < len {
            arena.reserve(len.max(64 << 10));
        }
        let kind = match self.op {
            Op::Put => PUT,
            Op::Append => APPEND,
            Op::Get => GET,
        };
        arena.put_u8(FORMAT_VERSION);
        arena.put_u8(kind);
        arena.put_u64_le(self.client);
        arena.put_u64_le(self.seq);
        arena.put_u32_le(u32::try_from(self.key.len()).unwrap_or(u32::MAX));
        arena.put_slice(&self.key);
        if self.op != Op::Get {
            arena.put_u32_le(u32::try_from(self.value.len()).unwrap_or(u32::MAX));
            arena.put_slice(&self.value);
        }
        arena.split().freeze()
    }

    /// Decodes a command from the log, as the state machine does, into owned parts.
    #[cfg(test)]
    pub(crate) fn decode(data: Bytes) -> Result<Self, DecodeError> {
        let c = CommandRef::decode(&data)?;
        Ok(Self {
            op: c.op,
            client: c.client,
            seq: c.seq,
            key: Bytes::copy_from_slice(c.key),
            value: Bytes::copy_from_slice(c.value),
        })
    }
}

/// A command decoded in place: its key and value borrow the log entry's bytes, so applying
/// one costs no allocation (a `Bytes` clone of an entry received whole would allocate to
/// share it).
pub(crate) struct CommandRef<'a> {
    pub(crate) op: Op,
    pub(crate) client: u64,
    pub(crate) seq: u64,
    pub(crate) key: &'a [u8],
    pub(crate) value: &'a [u8],
}

impl<'a> CommandRef<'a> {
    /// Decodes as [`Command::decode`] does, borrowing instead of slicing.
    pub(crate) fn decode(mut data: &'a [u8]) -> Result<Self, DecodeError> {
        use bytes::Buf;
        let version = data.try_get_u8().map_err(|_| DecodeError::Truncated)?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let op = match data.try_get_u8().map_err(|_| DecodeError::Truncated)? {
            PUT => Op::Put,
            APPEND => Op::Append,
            GET => Op::Get,
            other => return Err(DecodeError::UnknownKind(other)),
        };
        let client = data.try_get_u64_le().map_err(|_| DecodeError::Truncated)?;
        let seq = data.try_get_u64_le().map_err(|_| DecodeError::Truncated)?;
        let mut field = |name: &'static str, max: usize| -> Result<&'a [u8], DecodeError> {
            let len = data.try_get_u32_le().map_err(|_| DecodeError::Truncated)?;
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            if len > max {
                return Err(DecodeError::TooLong {
                    field: name,
                    len,
                    max,
                });
            }
            if data.len() < len {
                return Err(DecodeError::Truncated);
            }
            let (taken, rest) = data.split_at(len);
            data = rest;
            Ok(taken)
        };
        let key = field("key", MAX_KEY)?;
        let value = match op {
            Op::Get => &[][..],
            Op::Put | Op::Append => field("value", usize::MAX)?,
        };
        if !data.is_empty() {
            return Err(DecodeError::TrailingBytes(data.len()));
        }
        Ok(Self {
            op,
            client,
            seq,
            key,
            value,
        })
    }
}
