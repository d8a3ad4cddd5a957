//! How a message type crosses a real network: [`Codec`] turns a message into bytes and back.
//!
//! The in-memory [`Network`](crate::Network) never encodes anything; the TCP transport
//! ([`crate::tcp`]) frames each encoded message with a 4-byte little-endian length and hands the
//! receiver the frame's body as a [`Bytes`] slice of its receive buffer, so that a decoder can
//! return payloads as slices of it instead of copying them.

use bytes::{Bytes, BytesMut};

/// Why a frame could not be decoded. The TCP transport drops the connection that sent it, with a
/// `tracing` warning naming the peer and this reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The frame was written by an encoding version this build does not speak.
    Version {
        /// The version byte found.
        found: u8,
        /// The version this build speaks.
        expected: u8,
    },
    /// The message kind byte names no message.
    UnknownKind(u8),
    /// The frame ends before the message does.
    Truncated {
        /// Bytes the message needs at least.
        needed: usize,
        /// Bytes the frame holds.
        len: usize,
    },
    /// The message ends before the frame does: bytes would be left over.
    TrailingBytes(usize),
    /// A field holds a value no correct sender writes (a boolean that is neither 0 nor 1, a
    /// count larger than the frame could hold); the text says which.
    Invalid(&'static str),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Version { found, expected } => {
                write!(f, "encoding version {found}, this build speaks {expected}")
            }
            Self::UnknownKind(kind) => write!(f, "unknown message kind {kind}"),
            Self::Truncated { needed, len } => {
                write!(
                    f,
                    "frame of {len} bytes cut short: the message needs {needed}"
                )
            }
            Self::TrailingBytes(n) => write!(f, "{n} bytes after the end of the message"),
            Self::Invalid(what) => write!(f, "invalid field: {what}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// A message that can be written to and read from a byte stream.
///
/// Decoding must hold up against anything a peer sends: a frame of any length and content gives
/// a message or a [`DecodeError`], never a panic, and never an allocation sized by a field of the
/// frame that the frame's own length does not bound.
pub trait Codec: Sized {
    /// Appends this message's encoding to `buf`, without a length prefix (the transport adds
    /// it). [`Codec::decode`] of exactly these bytes gives back an equal message.
    fn encode(&self, buf: &mut BytesMut);

    /// Reads one message from `frame`, which holds exactly one encoding. Payloads may be returned
    /// as slices of `frame` (`Bytes::slice`), which shares its buffer instead of copying.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] if `frame` is not exactly one well-formed message.
    fn decode(frame: Bytes) -> Result<Self, DecodeError>;
}
