//! The binary encoding of [`Message`] for real networks ([`zeroraft_transport::Codec`]).
//!
//! See [`WIRE_VERSION`] for the layout. Decoding checks every count and length against the
//! frame before using it: a hostile frame gives a [`DecodeError`], never a panic, and the only
//! memory it allocates (the vector of an AppendEntries' entries) is bounded by the frame's own
//! length. Payloads are returned as slices of the frame, sharing its buffer.

use bytes::{BufMut, Bytes, BytesMut};
use zeroraft_transport::{Codec, DecodeError};

use crate::core::{
    AppendEntries, AppendEntriesReply, Entry, EntryKind, InstallSnapshot, InstallSnapshotReply,
    Message, RequestVote, RequestVoteReply, TimeoutNow,
};

/// The version of the binary encoding of [`Message`] this build writes and reads: the first byte
/// of every encoded message. A frame of another version is refused with
/// [`DecodeError::Version`].
///
/// The layout of version 1: byte 0 is this version, byte 1 the message kind, then the message's
/// fields in declaration order, little-endian and fixed-width: a `u64` as 8 bytes, a `bool` as
/// one byte that is 0 or 1 (any other value is [`DecodeError::Invalid`]). The entries of an
/// AppendEntries are a `u32` count followed, per entry, by its `u64` term, the `u32` length of
/// its command with the entry's kind in the top bit ([`Entry::tagged_len`]: set for a
/// configuration entry, so a frame of a build without entry kinds never sets it) and the
/// command's bytes; the data of an InstallSnapshot is a `u32` length and the bytes. The
/// sender's id is not encoded (the connection names the peer), so a message encodes to exactly `msg.wire_size() - 3` bytes: [`Message::wire_size`] counts a 4-byte id
/// and no version byte.
///
/// | kind | message |
/// |------|---------|
/// | 1 | [`Message::RequestVote`] |
/// | 2 | [`Message::RequestVoteReply`] |
/// | 3 | [`Message::AppendEntries`] |
/// | 4 | [`Message::AppendEntriesReply`] |
/// | 5 | [`Message::InstallSnapshot`] |
/// | 6 | [`Message::InstallSnapshotReply`] |
/// | 7 | [`Message::PreVote`] |
/// | 8 | [`Message::PreVoteReply`] |
/// | 9 | [`Message::TimeoutNow`] |
/// | 10 | [`Message::InstallSnapshot`] carrying a configuration |
///
/// An InstallSnapshot whose snapshot records a configuration ([`InstallSnapshot::config`]) is
/// kind 10: the fields of kind 5, then the configuration as a `u32` length and the bytes. One
/// without is kind 5, as it always was, so frames of builds that predate configurations decode
/// as before, and such a build refuses a kind-10 frame ([`DecodeError::UnknownKind`]) instead of
/// installing a snapshot without its configuration.
pub const WIRE_VERSION: u8 = 1;

const REQUEST_VOTE: u8 = 1;
const REQUEST_VOTE_REPLY: u8 = 2;
const APPEND_ENTRIES: u8 = 3;
const APPEND_ENTRIES_REPLY: u8 = 4;
const INSTALL_SNAPSHOT: u8 = 5;
const INSTALL_SNAPSHOT_REPLY: u8 = 6;
const PRE_VOTE: u8 = 7;
const PRE_VOTE_REPLY: u8 = 8;
const TIMEOUT_NOW: u8 = 9;
const INSTALL_SNAPSHOT_CONFIG: u8 = 10;

/// Version and kind bytes.
const HEADER: usize = 2;
const U64: usize = 8;
const U32: usize = 4;
const BOOL: usize = 1;
/// The fewest bytes one entry of an AppendEntries takes: its term and length, no command.
const MIN_ENTRY: usize = U64 + U32;
/// AppendEntries fields after the entries: `leader_commit`, `round`.
const APPEND_TAIL: usize = 2 * U64;

/// Bytes `msg` encodes to: [`Message::wire_size`] counts a 4-byte sender id that is not encoded
/// and leaves out the version byte.
fn encoded_len(msg: &Message) -> usize {
    msg.wire_size() - 4 + 1
}

/// The bytes a message of `kind` takes with no entries and no snapshot data, header included;
/// `None` if no message has that kind.
fn min_len(kind: u8) -> Option<usize> {
    let body = match kind {
        REQUEST_VOTE | PRE_VOTE => 3 * U64 + BOOL,
        REQUEST_VOTE_REPLY | PRE_VOTE_REPLY => U64 + BOOL,
        APPEND_ENTRIES => 3 * U64 + U32 + APPEND_TAIL,
        APPEND_ENTRIES_REPLY => 5 * U64 + BOOL,
        INSTALL_SNAPSHOT => 4 * U64 + U32 + BOOL + U64,
        INSTALL_SNAPSHOT_CONFIG => 4 * U64 + U32 + BOOL + U64 + U32,
        INSTALL_SNAPSHOT_REPLY => 4 * U64 + BOOL,
        TIMEOUT_NOW => U64,
        _ => return None,
    };
    Some(HEADER + body)
}

/// A `u32` length or count field. Panics on a payload of 4 GiB or more, which the frame's own
/// 4-byte length could not carry either.
fn put_len(buf: &mut BytesMut, len: usize, what: &str) {
    let len = u32::try_from(len)
        .unwrap_or_else(|_| panic!("{what} of {len} does not fit the 4-byte length field"));
    buf.put_u32_le(len);
}

impl Codec for Message {
    /// Appends the encoding described at [`WIRE_VERSION`] to `buf`, reserving its exact size
    /// once.
    ///
    /// # Panics
    ///
    /// If an AppendEntries holds 2³² entries or more, a command is 2 GiB or larger, or a
    /// snapshot chunk 4 GiB or larger: the layout has 4-byte counts and lengths, and an entry's
    /// length gives its top bit to the entry's kind.
    fn encode(&self, buf: &mut BytesMut) {
        buf.reserve(encoded_len(self));
        buf.put_u8(WIRE_VERSION);
        match self {
            Self::RequestVote(m) | Self::PreVote(m) => {
                let kind = if matches!(self, Self::PreVote(_)) {
                    PRE_VOTE
                } else {
                    REQUEST_VOTE
                };
                buf.put_u8(kind);
                buf.put_u64_le(m.term);
                buf.put_u64_le(m.last_log_index);
                buf.put_u64_le(m.last_log_term);
                buf.put_u8(u8::from(m.transfer));
            }
            Self::RequestVoteReply(m) | Self::PreVoteReply(m) => {
                let kind = if matches!(self, Self::PreVoteReply(_)) {
                    PRE_VOTE_REPLY
                } else {
                    REQUEST_VOTE_REPLY
                };
                buf.put_u8(kind);
                buf.put_u64_le(m.term);
                buf.put_u8(u8::from(m.granted));
            }
            Self::AppendEntries(m) => {
                buf.put_u8(APPEND_ENTRIES);
                buf.put_u64_le(m.term);
                buf.put_u64_le(m.prev_log_index);
                buf.put_u64_le(m.prev_log_term);
                put_len(buf, m.entries.len(), "entry count");
                for entry in &m.entries {
                    buf.put_u64_le(entry.term);
                    buf.put_u32_le(entry.tagged_len());
                    buf.put_slice(&entry.command);
                }
                buf.put_u64_le(m.leader_commit);
                buf.put_u64_le(m.round);
            }
            Self::AppendEntriesReply(m) => {
                buf.put_u8(APPEND_ENTRIES_REPLY);
                buf.put_u64_le(m.term);
                buf.put_u8(u8::from(m.success));
                buf.put_u64_le(m.index);
                buf.put_u64_le(m.conflict_term);
                buf.put_u64_le(m.conflict_index);
                buf.put_u64_le(m.round);
            }
            Self::InstallSnapshot(m) => {
                buf.put_u8(if m.config.is_some() {
                    INSTALL_SNAPSHOT_CONFIG
                } else {
                    INSTALL_SNAPSHOT
                });
                buf.put_u64_le(m.term);
                buf.put_u64_le(m.last_included_index);
                buf.put_u64_le(m.last_included_term);
                buf.put_u64_le(m.offset);
                put_len(buf, m.data.len(), "snapshot chunk length");
                buf.put_slice(&m.data);
                buf.put_u8(u8::from(m.done));
                buf.put_u64_le(m.round);
                if let Some(config) = &m.config {
                    put_len(buf, config.len(), "snapshot configuration length");
                    buf.put_slice(config);
                }
            }
            Self::InstallSnapshotReply(m) => {
                buf.put_u8(INSTALL_SNAPSHOT_REPLY);
                buf.put_u64_le(m.term);
                buf.put_u64_le(m.last_included_index);
                buf.put_u64_le(m.next_offset);
                buf.put_u8(u8::from(m.installed));
                buf.put_u64_le(m.round);
            }
            Self::TimeoutNow(m) => {
                buf.put_u8(TIMEOUT_NOW);
                buf.put_u64_le(m.term);
            }
        }
    }

    /// Reads a message encoded as described at [`WIRE_VERSION`]. Commands and snapshot data are
    /// slices of `frame`.
    fn decode(frame: Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader { frame, pos: 0 };
        let len = r.frame.len();
        let Some(&version) = r.frame.first() else {
            return Err(DecodeError::Truncated {
                needed: HEADER,
                len,
            });
        };
        if version != WIRE_VERSION {
            return Err(DecodeError::Version {
                found: version,
                expected: WIRE_VERSION,
            });
        }
        let Some(&kind) = r.frame.get(1) else {
            return Err(DecodeError::Truncated {
                needed: HEADER,
                len,
            });
        };
        let min = min_len(kind).ok_or(DecodeError::UnknownKind(kind))?;
        r.require(min as u64)?;
        r.pos = HEADER;
        let msg = match kind {
            REQUEST_VOTE | PRE_VOTE => {
                let m = RequestVote {
                    term: r.u64()?,
                    last_log_index: r.u64()?,
                    last_log_term: r.u64()?,
                    transfer: r.bool("RequestVote.transfer is neither 0 nor 1")?,
                };
                if kind == PRE_VOTE {
                    Self::PreVote(m)
                } else {
                    Self::RequestVote(m)
                }
            }
            REQUEST_VOTE_REPLY | PRE_VOTE_REPLY => {
                let m = RequestVoteReply {
                    term: r.u64()?,
                    granted: r.bool("RequestVoteReply.granted is neither 0 nor 1")?,
                };
                if kind == PRE_VOTE_REPLY {
                    Self::PreVoteReply(m)
                } else {
                    Self::RequestVoteReply(m)
                }
            }
            APPEND_ENTRIES => {
                let term = r.u64()?;
                let prev_log_index = r.u64()?;
                let prev_log_term = r.u64()?;
                let count = r.u32()?;
                // Every entry takes at least `MIN_ENTRY` bytes: a count the frame cannot hold is
                // refused before anything is allocated for it, so the vector below is bounded by
                // the frame's length.
                r.require_after(u64::from(count) * MIN_ENTRY as u64 + APPEND_TAIL as u64)?;
                let mut entries = Vec::with_capacity(count as usize);
                for i in 1..=count {
                    let term = r.u64()?;
                    let (kind, len) = EntryKind::split_tagged_len(r.u32()?);
                    let rest = u64::from(count - i) * MIN_ENTRY as u64 + APPEND_TAIL as u64;
                    r.require_after(u64::from(len) + rest)?;
                    entries.push(Entry {
                        term,
                        kind,
                        command: r.payload(len)?,
                    });
                }
                Self::AppendEntries(AppendEntries {
                    term,
                    prev_log_index,
                    prev_log_term,
                    entries,
                    leader_commit: r.u64()?,
                    round: r.u64()?,
                })
            }
            APPEND_ENTRIES_REPLY => Self::AppendEntriesReply(AppendEntriesReply {
                term: r.u64()?,
                success: r.bool("AppendEntriesReply.success is neither 0 nor 1")?,
                index: r.u64()?,
                conflict_term: r.u64()?,
                conflict_index: r.u64()?,
                round: r.u64()?,
            }),
            INSTALL_SNAPSHOT | INSTALL_SNAPSHOT_CONFIG => {
                let with_config = kind == INSTALL_SNAPSHOT_CONFIG;
                let term = r.u64()?;
                let last_included_index = r.u64()?;
                let last_included_term = r.u64()?;
                let offset = r.u64()?;
                let len = r.u32()?;
                let tail = BOOL + U64 + if with_config { U32 } else { 0 };
                r.require_after(u64::from(len) + tail as u64)?;
                let data = r.payload(len)?;
                let done = r.bool("InstallSnapshot.done is neither 0 nor 1")?;
                let round = r.u64()?;
                let config = if with_config {
                    let len = r.u32()?;
                    r.require_after(u64::from(len))?;
                    Some(r.payload(len)?)
                } else {
                    None
                };
                Self::InstallSnapshot(InstallSnapshot {
                    term,
                    last_included_index,
                    last_included_term,
                    offset,
                    data,
                    done,
                    round,
                    config,
                })
            }
            INSTALL_SNAPSHOT_REPLY => Self::InstallSnapshotReply(InstallSnapshotReply {
                term: r.u64()?,
                last_included_index: r.u64()?,
                next_offset: r.u64()?,
                installed: r.bool("InstallSnapshotReply.installed is neither 0 nor 1")?,
                round: r.u64()?,
            }),
            TIMEOUT_NOW => Self::TimeoutNow(TimeoutNow { term: r.u64()? }),
            _ => return Err(DecodeError::UnknownKind(kind)),
        };
        match len - r.pos {
            0 => Ok(msg),
            extra => Err(DecodeError::TrailingBytes(extra)),
        }
    }
}

/// A cursor over a frame. Every read is bounds-checked; [`Reader::require`] fails early, with the
/// number of bytes the message needs at least, when a count or length promises more than the
/// frame holds.
struct Reader {
    frame: Bytes,
    pos: usize,
}

impl Reader {
    /// Fails unless the frame holds at least `needed` bytes in all.
    fn require(&self, needed: u64) -> Result<(), DecodeError> {
        let len = self.frame.len();
        if needed <= len as u64 {
            return Ok(());
        }
        match usize::try_from(needed) {
            Ok(needed) => Err(DecodeError::Truncated { needed, len }),
            Err(_) => Err(DecodeError::Invalid(
                "a count or length larger than any frame",
            )),
        }
    }

    /// Fails unless the frame holds at least `more` bytes after the cursor.
    fn require_after(&self, more: u64) -> Result<(), DecodeError> {
        self.require(self.pos as u64 + more)
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.require_after(N as u64)?;
        let mut bytes = [0; N];
        bytes.copy_from_slice(&self.frame[self.pos..self.pos + N]);
        self.pos += N;
        Ok(bytes)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.take().map(u64::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.take().map(u32::from_le_bytes)
    }

    fn bool(&mut self, invalid: &'static str) -> Result<bool, DecodeError> {
        match self.take::<1>()? {
            [0] => Ok(false),
            [1] => Ok(true),
            _ => Err(DecodeError::Invalid(invalid)),
        }
    }

    /// The next `len` bytes as a slice of the frame, sharing its buffer.
    fn payload(&mut self, len: u32) -> Result<Bytes, DecodeError> {
        self.require_after(u64::from(len))?;
        let start = self.pos;
        self.pos += len as usize;
        Ok(self.frame.slice(start..self.pos))
    }
}

#[cfg(test)]
mod tests {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    fn encode(msg: &Message) -> Bytes {
        let mut buf = BytesMut::new();
        msg.encode(&mut buf);
        buf.freeze()
    }

    fn entries(max_entries: usize, max_payload: usize) -> impl Strategy<Value = Vec<Entry>> {
        vec(
            (
                any::<u64>(),
                any::<bool>(),
                vec(any::<u8>(), 0..max_payload),
            )
                .prop_map(|(term, config, command)| Entry {
                    term,
                    kind: if config {
                        EntryKind::Config
                    } else {
                        EntryKind::Command
                    },
                    command: Bytes::from(command),
                }),
            0..max_entries,
        )
    }

    /// Any message, with up to `max_entries - 1` entries and payloads of up to
    /// `max_payload - 1` bytes.
    fn message(max_entries: usize, max_payload: usize) -> impl Strategy<Value = Message> {
        let request_vote = (any::<u64>(), any::<u64>(), any::<u64>(), any::<bool>()).prop_map(
            |(term, last_log_index, last_log_term, transfer)| RequestVote {
                term,
                last_log_index,
                last_log_term,
                transfer,
            },
        );
        let vote_reply = (any::<u64>(), any::<bool>())
            .prop_map(|(term, granted)| RequestVoteReply { term, granted });
        prop_oneof![
            request_vote.clone().prop_map(Message::RequestVote),
            vote_reply.clone().prop_map(Message::RequestVoteReply),
            (
                any::<[u64; 3]>(),
                entries(max_entries, max_payload),
                any::<[u64; 2]>()
            )
                .prop_map(
                    |([term, prev_log_index, prev_log_term], entries, [c, r])| {
                        Message::AppendEntries(AppendEntries {
                            term,
                            prev_log_index,
                            prev_log_term,
                            entries,
                            leader_commit: c,
                            round: r,
                        })
                    }
                ),
            (any::<[u64; 5]>(), any::<bool>()).prop_map(
                |([term, index, conflict_term, conflict_index, round], success)| {
                    Message::AppendEntriesReply(AppendEntriesReply {
                        term,
                        success,
                        index,
                        conflict_term,
                        conflict_index,
                        round,
                    })
                }
            ),
            (
                any::<[u64; 5]>(),
                vec(any::<u8>(), 0..max_payload),
                any::<bool>(),
                proptest::option::of(vec(any::<u8>(), 0..32)),
            )
                .prop_map(|([term, lii, lit, offset, round], data, done, config)| {
                    Message::InstallSnapshot(InstallSnapshot {
                        term,
                        last_included_index: lii,
                        last_included_term: lit,
                        offset,
                        data: Bytes::from(data),
                        done,
                        round,
                        config: config.map(Bytes::from),
                    })
                }),
            (any::<[u64; 4]>(), any::<bool>()).prop_map(
                |([term, last_included_index, next_offset, round], installed)| {
                    Message::InstallSnapshotReply(InstallSnapshotReply {
                        term,
                        last_included_index,
                        next_offset,
                        installed,
                        round,
                    })
                }
            ),
            request_vote.prop_map(Message::PreVote),
            vote_reply.prop_map(Message::PreVoteReply),
            any::<u64>().prop_map(|term| Message::TimeoutNow(TimeoutNow { term })),
        ]
    }

    /// Asserts that every strict prefix of `frame` is refused as truncated, and that one more
    /// byte is refused as trailing.
    fn assert_prefixes_and_trailing(frame: &Bytes) {
        for cut in 0..frame.len() {
            match Message::decode(frame.slice(..cut)) {
                Err(DecodeError::Truncated { needed, len }) => {
                    assert_eq!(len, cut, "prefix of {cut} bytes of {}", frame.len());
                    assert!(
                        needed > cut && needed <= frame.len(),
                        "prefix of {cut} bytes of {}: needed {needed}",
                        frame.len()
                    );
                }
                other => panic!("prefix of {cut} bytes of {}: {other:?}", frame.len()),
            }
        }
        let mut longer = BytesMut::from(&frame[..]);
        longer.put_u8(0);
        assert_eq!(
            Message::decode(longer.freeze()),
            Err(DecodeError::TrailingBytes(1))
        );
    }

    proptest! {
        #[test]
        fn round_trip_with_exact_length(
            msg in message(50, 300),
            prefix in vec(any::<u8>(), 0..8),
        ) {
            // Encoding appends: what the buffer held stays as it was.
            let mut buf = BytesMut::from(&prefix[..]);
            msg.encode(&mut buf);
            prop_assert_eq!(&buf[..prefix.len()], &prefix[..]);
            let frame = buf.freeze().slice(prefix.len()..);
            prop_assert_eq!(frame.len(), msg.wire_size() - 3);
            prop_assert_eq!(frame[0], WIRE_VERSION);
            prop_assert_eq!(Message::decode(frame), Ok(msg));
        }

        #[test]
        fn strict_prefixes_are_truncated_and_an_extra_byte_is_trailing(msg in message(6, 40)) {
            assert_prefixes_and_trailing(&encode(&msg));
        }

        #[test]
        fn random_bytes_never_panic(frame in vec(any::<u8>(), 0..512)) {
            let _ = Message::decode(Bytes::from(frame));
        }

        #[test]
        fn valid_headers_with_garbage_never_panic(
            kind in 0u8..=11,
            body in vec(any::<u8>(), 0..512),
        ) {
            let mut frame = vec![WIRE_VERSION, kind];
            frame.extend_from_slice(&body);
            let _ = Message::decode(Bytes::from(frame));
        }

        /// Flipping bytes of a valid encoding never panics, and whatever still decodes encodes
        /// back to the very same bytes: every message has one encoding.
        #[test]
        fn mutated_encodings_never_panic_and_decode_canonically(
            msg in message(6, 40),
            flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut frame = encode(&msg).to_vec();
            for (at, value) in flips {
                let at = at.index(frame.len());
                frame[at] = value;
            }
            if let Ok(decoded) = Message::decode(Bytes::from(frame.clone())) {
                prop_assert_eq!(&encode(&decoded)[..], &frame[..]);
            }
        }
    }

    #[test]
    fn every_prefix_of_a_large_append_entries_is_truncated() {
        let msg = Message::AppendEntries(AppendEntries {
            term: 7,
            prev_log_index: 100,
            prev_log_term: 6,
            entries: (0..50)
                .map(|i| Entry::new(7, Bytes::from(vec![i as u8; i * 6])))
                .collect(),
            leader_commit: 99,
            round: 12,
        });
        let frame = encode(&msg);
        assert_eq!(frame.len(), msg.wire_size() - 3);
        assert_prefixes_and_trailing(&frame);
    }

    /// `Truncated` when the frame would need `needed` bytes, or `Invalid` where that is more than
    /// a `usize` counts (32-bit targets).
    fn truncated(needed: u64, len: usize) -> DecodeError {
        match usize::try_from(needed) {
            Ok(needed) => DecodeError::Truncated { needed, len },
            Err(_) => DecodeError::Invalid("a count or length larger than any frame"),
        }
    }

    fn with_byte(msg: Message, at: usize, value: u8) -> Vec<u8> {
        let mut frame = encode(&msg).to_vec();
        frame[at] = value;
        frame
    }

    #[test]
    fn hostile_frames_are_refused() {
        let vote = RequestVote {
            term: 3,
            last_log_index: 4,
            last_log_term: 2,
            transfer: false,
        };
        let vote_reply = RequestVoteReply {
            term: 3,
            granted: true,
        };
        let append_reply = AppendEntriesReply {
            term: 1,
            success: true,
            index: 2,
            conflict_term: 0,
            conflict_index: 0,
            round: 5,
        };
        let snapshot = InstallSnapshot {
            term: 2,
            last_included_index: 10,
            last_included_term: 2,
            offset: 0,
            data: Bytes::new(),
            done: true,
            round: 1,
            config: None,
        };
        let snapshot_reply = InstallSnapshotReply {
            term: 2,
            last_included_index: 10,
            next_offset: 0,
            installed: true,
            round: 1,
        };
        // An AppendEntries with no entries: header, three u64, the count at 26, two u64.
        let mut empty_append = vec![WIRE_VERSION, APPEND_ENTRIES];
        empty_append.resize(46, 0);
        let with_count = |count: u32| {
            let mut f = empty_append.clone();
            f[26..30].copy_from_slice(&count.to_le_bytes());
            f
        };
        // `count` entries with no payload, the first one's length field (at 38) set to `len`.
        let with_entry_len = |count: u32, len: u32| {
            let mut f = with_count(count);
            f.splice(30..30, vec![0u8; 12 * count as usize]);
            f[38..42].copy_from_slice(&len.to_le_bytes());
            f
        };
        // An InstallSnapshot with no data: its length is at 34, `done` at 38.
        let mut snapshot_len_max = encode(&Message::InstallSnapshot(snapshot.clone())).to_vec();
        snapshot_len_max[34..38].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut timeout_now = encode(&Message::TimeoutNow(TimeoutNow { term: 1 })).to_vec();
        timeout_now.extend_from_slice(&[0; 100]);

        let max = u64::from(u32::MAX);
        let cases: Vec<(Vec<u8>, DecodeError)> = vec![
            // 0: empty frame.
            (vec![], truncated(2, 0)),
            // 1: a version byte alone.
            (vec![WIRE_VERSION], truncated(2, 1)),
            // 2-4: other versions, whatever follows.
            (
                vec![2, REQUEST_VOTE],
                DecodeError::Version {
                    found: 2,
                    expected: 1,
                },
            ),
            (
                vec![0],
                DecodeError::Version {
                    found: 0,
                    expected: 1,
                },
            ),
            (
                vec![255; 64],
                DecodeError::Version {
                    found: 255,
                    expected: 1,
                },
            ),
            // 5-7: unknown kinds.
            (vec![WIRE_VERSION, 0], DecodeError::UnknownKind(0)),
            (vec![WIRE_VERSION, 11, 0, 0], DecodeError::UnknownKind(11)),
            (
                [WIRE_VERSION].into_iter().chain([255; 40]).collect(),
                DecodeError::UnknownKind(255),
            ),
            // 8: an AppendEntries in 20 bytes.
            (empty_append[..20].to_vec(), truncated(46, 20)),
            // 9: 2^32 - 1 entries in 46 bytes.
            (with_count(u32::MAX), truncated(30 + 12 * max + 16, 46)),
            // 10: 2 entries in room for none.
            (with_count(2), truncated(30 + 24 + 16, 46)),
            // 11: a configuration entry (the length's top bit) of 2^31 - 1 bytes in 58.
            (
                with_entry_len(1, u32::MAX),
                truncated(42 + (max >> 1) + 16, 58),
            ),
            // 12: an entry whose payload eats the room of the next one's header.
            (with_entry_len(2, 4), truncated(42 + 4 + 12 + 16, 70)),
            // 13: snapshot data of 2^32 - 1 bytes in 47.
            (snapshot_len_max, truncated(38 + max + 9, 47)),
            // 14-20: booleans that are neither 0 nor 1.
            (
                with_byte(Message::RequestVote(vote.clone()), 26, 2),
                DecodeError::Invalid("RequestVote.transfer is neither 0 nor 1"),
            ),
            (
                with_byte(Message::PreVote(vote), 26, 255),
                DecodeError::Invalid("RequestVote.transfer is neither 0 nor 1"),
            ),
            (
                with_byte(Message::RequestVoteReply(vote_reply.clone()), 10, 2),
                DecodeError::Invalid("RequestVoteReply.granted is neither 0 nor 1"),
            ),
            (
                with_byte(Message::PreVoteReply(vote_reply), 10, 128),
                DecodeError::Invalid("RequestVoteReply.granted is neither 0 nor 1"),
            ),
            (
                with_byte(Message::AppendEntriesReply(append_reply), 10, 2),
                DecodeError::Invalid("AppendEntriesReply.success is neither 0 nor 1"),
            ),
            (
                with_byte(Message::InstallSnapshot(snapshot), 38, 2),
                DecodeError::Invalid("InstallSnapshot.done is neither 0 nor 1"),
            ),
            (
                with_byte(Message::InstallSnapshotReply(snapshot_reply), 26, 3),
                DecodeError::Invalid("InstallSnapshotReply.installed is neither 0 nor 1"),
            ),
            // 21: bytes after a whole message.
            (timeout_now.clone(), DecodeError::TrailingBytes(100)),
            // 22: a TimeoutNow cut short.
            (timeout_now[..5].to_vec(), truncated(10, 5)),
        ];
        for (case, (frame, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                Message::decode(Bytes::from(frame)),
                Err(want),
                "case {case}"
            );
        }
    }

    /// A snapshot chunk without a configuration is kind 5, its layout unchanged (a frame of an
    /// earlier build decodes the same); one with a configuration is kind 10, the configuration
    /// last.
    #[test]
    fn a_snapshot_chunk_is_kind_10_only_with_a_configuration() {
        let without = InstallSnapshot {
            term: 2,
            last_included_index: 10,
            last_included_term: 2,
            offset: 0,
            data: Bytes::from_static(b"data"),
            done: true,
            round: 1,
            config: None,
        };
        let old = encode(&Message::InstallSnapshot(without.clone()));
        assert_eq!(old[1], INSTALL_SNAPSHOT);
        assert_eq!(old.len(), HEADER + 4 * U64 + U32 + 4 + BOOL + U64);
        let with = InstallSnapshot {
            config: Some(Bytes::from_static(b"configuration")),
            ..without.clone()
        };
        let new = encode(&Message::InstallSnapshot(with.clone()));
        assert_eq!(new[1], INSTALL_SNAPSHOT_CONFIG);
        assert_eq!(&new[2..old.len()], &old[2..], "kind 5's fields come first");
        assert_eq!(&new[old.len()..old.len() + U32], &13u32.to_le_bytes());
        assert_eq!(&new[old.len() + U32..], b"configuration");
        assert_eq!(Message::decode(old), Ok(Message::InstallSnapshot(without)));
        assert_eq!(Message::decode(new), Ok(Message::InstallSnapshot(with)));
    }

    #[test]
    fn payloads_are_slices_of_the_frame() {
        let msg = Message::AppendEntries(AppendEntries {
            term: 1,
            prev_log_index: 0,
            prev_log_term: 0,
            entries: (1..=4)
                .map(|i| Entry::new(1, Bytes::from(vec![i; 10 * usize::from(i)])))
                .collect(),
            leader_commit: 0,
            round: 1,
        });
        let snapshot = Message::InstallSnapshot(InstallSnapshot {
            term: 1,
            last_included_index: 5,
            last_included_term: 1,
            offset: 0,
            data: Bytes::from(vec![9; 1000]),
            done: false,
            round: 2,
            config: None,
        });
        // As the TCP transport hands it over: a slice of a larger receive buffer.
        let mut buf = BytesMut::from(&[0xAA; 4][..]);
        msg.encode(&mut buf);
        let split = buf.len();
        snapshot.encode(&mut buf);
        let received = buf.freeze();
        let frames = [received.slice(4..split), received.slice(split..)];
        let inside = |frame: &Bytes, payload: &Bytes| {
            let frame = frame.as_ptr_range();
            let payload = payload.as_ptr_range();
            frame.start <= payload.start && payload.end <= frame.end
        };

        let decoded = Message::decode(frames[0].clone()).unwrap();
        assert_eq!(decoded, msg);
        let Message::AppendEntries(m) = decoded else {
            unreachable!()
        };
        for (i, entry) in m.entries.iter().enumerate() {
            assert!(inside(&frames[0], &entry.command), "entry {i}");
        }
        let decoded = Message::decode(frames[1].clone()).unwrap();
        assert_eq!(decoded, snapshot);
        let Message::InstallSnapshot(m) = decoded else {
            unreachable!()
        };
        assert!(inside(&frames[1], &m.data));
    }

    #[test]
    fn kinds_are_as_documented() {
        let vote = RequestVote {
            term: 0,
            last_log_index: 0,
            last_log_term: 0,
            transfer: false,
        };
        let reply = RequestVoteReply {
            term: 0,
            granted: false,
        };
        let kinds = [
            Message::RequestVote(vote.clone()),
            Message::RequestVoteReply(reply.clone()),
            Message::AppendEntries(AppendEntries {
                term: 0,
                prev_log_index: 0,
                prev_log_term: 0,
                entries: Vec::new(),
                leader_commit: 0,
                round: 0,
            }),
            Message::AppendEntriesReply(AppendEntriesReply {
                term: 0,
                success: false,
                index: 0,
                conflict_term: 0,
                conflict_index: 0,
                round: 0,
            }),
            Message::InstallSnapshot(InstallSnapshot {
                term: 0,
                last_included_index: 0,
                last_included_term: 0,
                offset: 0,
                data: Bytes::new(),
                done: false,
                round: 0,
                config: None,
            }),
            Message::InstallSnapshotReply(InstallSnapshotReply {
                term: 0,
                last_included_index: 0,
                next_offset: 0,
                installed: false,
                round: 0,
            }),
            Message::PreVote(vote),
            Message::PreVoteReply(reply),
            Message::TimeoutNow(TimeoutNow { term: 0 }),
        ];
        for (i, msg) in kinds.iter().enumerate() {
            let frame = encode(msg);
            assert_eq!(frame[..2], [WIRE_VERSION, i as u8 + 1], "{msg:?}");
            assert_eq!(Some(frame.len()), min_len(frame[1]), "{msg:?}");
        }
    }
}
