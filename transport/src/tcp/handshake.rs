//! The first bytes on a connection between two nodes, before any message.
//!
//! The dialer (the node with the lower id) sends a hello of [`HELLO_BYTES`]:
//!
//! | bytes | field |
//! | --- | --- |
//! | 4 | magic `ZRFT` |
//! | 1 | transport version ([`VERSION`]) |
//! | 8 | cluster id, little-endian |
//! | 4 | dialer's node id |
//! | 4 | the node id it meant to reach |
//! | 4 | nodes in the cluster, as the dialer knows it |
//!
//! The acceptor answers with the magic, its version and a [`Verdict`] byte, and closes the
//! connection unless the verdict is [`Verdict::Accepted`]. Messages follow, in both directions.
//!
//! Each side gives the other a deadline for its whole part of the handshake, not a timeout per
//! read: a peer that sends a byte now and then cannot stretch it ([`Timed`]).
//!
//! With TLS ([`super::tls`]), the TLS handshake comes first and the hello travels inside the
//! session; the acceptor then also checks that the dialer's certificate names the node its hello
//! claims ([`Verdict::WrongIdentity`]).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The transport's version: the handshake's and the framing's. Each message carries the
/// encoding version of its own codec besides.
pub(crate) const VERSION: u8 = 1;
const MAGIC: [u8; 4] = *b"ZRFT";
/// Bytes of a dialer's hello.
pub(crate) const HELLO_BYTES: usize = 25;
const ANSWER_BYTES: usize = 6;

/// What a dialer says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hello {
    pub(crate) version: u8,
    pub(crate) cluster: u64,
    pub(crate) from: u32,
    pub(crate) to: u32,
    pub(crate) nodes: u32,
}

/// The acceptor's answer to a [`Hello`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The connection is open for messages.
    Accepted = 0,
    /// The dialer belongs to another cluster.
    WrongCluster = 1,
    /// The dialer meant to reach another node (its peer list names this address for another id).
    WrongNode = 2,
    /// The two nodes disagree on the number of nodes in the cluster.
    WrongSize = 3,
    /// The dialer's id is not one that dials this node (out of range, or not lower).
    WrongPeer = 4,
    /// The dialer speaks another transport version.
    Version = 5,
    /// The dialer's certificate does not name the node it says it is.
    WrongIdentity = 6,
}

impl Verdict {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0 => Self::Accepted,
            1 => Self::WrongCluster,
            2 => Self::WrongNode,
            3 => Self::WrongSize,
            4 => Self::WrongPeer,
            5 => Self::Version,
            6 => Self::WrongIdentity,
            _ => return None,
        })
    }

    /// Why the connection was refused, for a log line.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::WrongCluster => "the peer belongs to another cluster",
            Self::WrongNode => "the peer was dialed under another node's id",
            Self::WrongSize => "the two nodes disagree on the cluster's size",
            Self::WrongPeer => "the peer's id is not one that dials this node",
            Self::Version => "the peer speaks another transport version",
            Self::WrongIdentity => "the peer's certificate does not name the node it says it is",
        }
    }
}

impl Hello {
    fn encode(&self) -> [u8; HELLO_BYTES] {
        let mut b = [0u8; HELLO_BYTES];
        b[..4].copy_from_slice(&MAGIC);
        b[4] = self.version;
        b[5..13].copy_from_slice(&self.cluster.to_le_bytes());
        b[13..17].copy_from_slice(&self.from.to_le_bytes());
        b[17..21].copy_from_slice(&self.to.to_le_bytes());
        b[21..25].copy_from_slice(&self.nodes.to_le_bytes());
        b
    }

    /// `None` if the bytes do not start with the magic: not a zeroraft node at all.
    pub(crate) fn decode(b: &[u8; HELLO_BYTES]) -> Option<Self> {
        if b[..4] != MAGIC {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut cluster = [0u8; 8];
        cluster.copy_from_slice(&b[5..13]);
        Some(Self {
            version: b[4],
            cluster: u64::from_le_bytes(cluster),
            from: u32_at(13),
            to: u32_at(17),
            nodes: u32_at(21),
        })
    }
}

/// The acceptor's judgement of `hello`, for node `me` of a cluster of `nodes`.
pub(crate) fn judge(hello: &Hello, cluster: u64, me: usize, nodes: usize) -> Verdict {
    if hello.version != VERSION {
        Verdict::Version
    } else if hello.cluster != cluster {
        Verdict::WrongCluster
    } else if hello.to as usize != me {
        Verdict::WrongNode
    } else if hello.nodes as usize != nodes {
        Verdict::WrongSize
    } else if hello.from as usize >= me {
        Verdict::WrongPeer
    } else {
        Verdict::Accepted
    }
}

/// A socket whose every read and write must finish by one deadline: each sets the socket's
/// timeout to the time left, so however the peer spreads its bytes out, the exchange ends by the
/// deadline.
pub(crate) struct Timed<'a> {
    pub(crate) stream: &'a TcpStream,
    pub(crate) deadline: Instant,
}

impl Timed<'_> {
    /// The time left, as a socket timeout (which cannot be zero); `TimedOut` once it is up.
    fn time_left(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the handshake's deadline passed",
            ));
        }
        Ok(left)
    }
}

impl Read for Timed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.time_left()?))?;
        let mut stream = self.stream;
        stream.read(buf)
    }
}

impl Write for Timed<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.time_left()?))?;
        let mut stream = self.stream;
        stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a handshake is spoken over: a [`Timed`] socket, or a TLS session on one.
pub(crate) trait ReadWrite: Read + Write {}

impl<T: Read + Write> ReadWrite for T {}

/// The dialer's side: sends `hello`, reads the verdict.
pub(crate) fn dial(io: &mut impl ReadWrite, hello: &Hello) -> io::Result<Verdict> {
    io.write_all(&hello.encode())?;
    io.flush()?;
    let mut answer = [0u8; ANSWER_BYTES];
    io.read_exact(&mut answer)?;
    if answer[..4] != MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the peer answered the handshake with something else than a zeroraft node would",
        ));
    }
    Verdict::from_byte(answer[5]).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unknown handshake verdict {}", answer[5]),
        )
    })
}

/// The acceptor's side, after it read the hello: sends its verdict.
pub(crate) fn answer(io: &mut impl ReadWrite, verdict: Verdict) -> io::Result<()> {
    let mut b = [0u8; ANSWER_BYTES];
    b[..4].copy_from_slice(&MAGIC);
    b[4] = VERSION;
    b[5] = verdict as u8;
    io.write_all(&b)?;
    io.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(version: u8, cluster: u64, from: u32, to: u32, nodes: u32) -> Hello {
        Hello {
            version,
            cluster,
            from,
            to,
            nodes,
        }
    }

    #[test]
    fn a_hello_survives_its_encoding() {
        let h = hello(VERSION, 0xDEAD_BEEF_0102, 3, 4, 5);
        assert_eq!(Hello::decode(&h.encode()), Some(h));
        let mut bad = h.encode();
        bad[0] = b'X';
        assert_eq!(Hello::decode(&bad), None);
    }

    #[test]
    fn the_acceptor_judges_every_field() {
        // (hello, acceptor id, expected): the acceptor is node `me` of cluster 9 of 3 nodes.
        let cases = [
            (hello(VERSION, 9, 0, 2, 3), 2, Verdict::Accepted),
            (hello(VERSION, 9, 1, 2, 3), 2, Verdict::Accepted),
            (hello(VERSION + 1, 9, 0, 2, 3), 2, Verdict::Version),
            (hello(VERSION, 8, 0, 2, 3), 2, Verdict::WrongCluster),
            (hello(VERSION, 9, 0, 1, 3), 2, Verdict::WrongNode),
            (hello(VERSION, 9, 0, 2, 5), 2, Verdict::WrongSize),
            (hello(VERSION, 9, 2, 2, 3), 2, Verdict::WrongPeer),
            (hello(VERSION, 9, 1, 0, 3), 0, Verdict::WrongPeer),
            (hello(VERSION, 9, u32::MAX, 2, 3), 2, Verdict::WrongPeer),
        ];
        for (case, (h, me, expected)) in cases.into_iter().enumerate() {
            assert_eq!(judge(&h, 9, me, 3), expected, "case {case}");
        }
    }
}
