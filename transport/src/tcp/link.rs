//! The threads of the TCP transport: the acceptor, a writer per peer, a reader per connection.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};

use rustls::pki_types::CertificateDer;

use super::handshake::{self, HELLO_BYTES, Hello, ReadWrite, Timed, Verdict};
use super::tls::{self, Opener, Records, Sealer, TlsIo};
use super::{Peer, READ_BUFFER, Shared, WRITE_BATCH, WarnLimit};
use crate::{Codec, Message, NodeId, sync};

/// A writer with nothing to send writes an empty frame this often, so that its peer's reader
/// can tell a quiet connection from a dead one.
pub(super) const KEEPALIVE: Duration = Duration::from_millis(250);
/// A reader that receives nothing, not even a keepalive, for this long drops the connection: a
/// partition or a peer that died without closing it. Its writer then dials again (or waits for
/// the peer to), instead of trusting a connection TCP might retransmit into for minutes.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(2);
/// The smallest read a reader asks for; it asks for twice what its last read got, up to
/// [`READ_BUFFER`], so a quiet link does not clear a large buffer for every small message.
const MIN_READ: usize = 4 << 10;

/// The warnings an outsider can provoke on the peer port, one limit per kind.
#[derive(Debug)]
pub(super) struct Warnings {
    /// `accept` itself failed (out of file descriptors, say).
    accept: WarnLimit,
    /// A connection closed at once: too many handshakes under way.
    busy: WarnLimit,
    /// A connection that did not complete a zeroraft hello in time.
    handshake: WarnLimit,
    /// A hello refused (another cluster, the wrong node, ...).
    refused: WarnLimit,
}

impl Default for Warnings {
    fn default() -> Self {
        Self {
            accept: WarnLimit::per_second(),
            busy: WarnLimit::per_second(),
            handshake: WarnLimit::per_second(),
            refused: WarnLimit::per_second(),
        }
    }
}

/// A handshake under way on a thread of its own, with a handle on its stream so that a stopping
/// node can cut it short.
struct Handshake {
    thread: JoinHandle<()>,
    stream: TcpStream,
}

/// Accepts peers' connections until the node stops, and starts a handshake thread for each (at
/// most [`TcpConfig::max_handshakes`](super::TcpConfig::max_handshakes) at once); then cuts the
/// handshakes under way short and joins their threads.
pub(super) fn accept<M: Message + Codec>(shared: &Arc<Shared<M>>, listener: &TcpListener) {
    let config = &shared.config;
    let warnings = &shared.warnings;
    let mut handshakes: Vec<Handshake> = Vec::new();
    let mut accepted = 0u64;
    for stream in listener.incoming() {
        if shared.stop.load(Relaxed) {
            break;
        }
        let (done, running) = handshakes.into_iter().partition(|h| h.thread.is_finished());
        handshakes = running;
        for h in done {
            let _ = h.thread.join();
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                if let Some(suppressed) = warnings.accept.allow() {
                    tracing::warn!(node = config.id, error = %e, suppressed, "accepting a connection failed");
                }
                // Out of file descriptors, say: do not spin on the error.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if handshakes.len() >= config.max_handshakes {
            if let Some(suppressed) = warnings.busy.allow() {
                tracing::warn!(
                    node = config.id,
                    remote = ?stream.peer_addr().ok(),
                    under_way = handshakes.len(),
                    suppressed,
                    "too many handshakes under way; closed a new connection"
                );
            }
            continue;
        }
        accepted += 1;
        let serial = accepted;
        let started = stream.try_clone().and_then(|handle| {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("zeroraft-tcp-hello-{}", config.id))
                .stack_size(128 << 10)
                .spawn(move || shake_hands(&shared, stream, serial))
                .map(|thread| Handshake {
                    thread,
                    stream: handle,
                })
        });
        match started {
            Ok(handshake) => handshakes.push(handshake),
            Err(e) => {
                if let Some(suppressed) = warnings.accept.allow() {
                    tracing::warn!(node = config.id, error = %e, suppressed, "cannot start a handshake");
                }
            }
        }
    }
    for h in &handshakes {
        let _ = h.stream.shutdown(Shutdown::Both);
    }
    for h in handshakes {
        let _ = h.thread.join();
    }
}

/// Reads and judges the hello of the `serial`th connection accepted, answers it, and hands the
/// stream to the writer of the peer it comes from if it is accepted; all within one
/// [`TcpConfig::handshake_timeout`](super::TcpConfig::handshake_timeout). A connection not handed
/// over is shut down (the acceptor holds a handle on it too, so dropping it would not close it).
fn shake_hands<M: Message + Codec>(shared: &Shared<M>, stream: TcpStream, serial: u64) {
    let deadline = Instant::now() + shared.config.handshake_timeout;
    let remote = stream.peer_addr().ok();
    let mut io = Timed {
        stream: &stream,
        deadline,
    };
    // With TLS, the socket is read a record at a time until the hello is answered (see
    // `Records`).
    let mut io = Records::new(&mut io, shared.tls.is_some());
    let mut session = match &shared.tls {
        None => None,
        Some(tls) => {
            let shaken = tls
                .acceptor()
                .and_then(|mut conn| tls::handshake(&mut conn, &mut io).map(|()| conn));
            match shaken {
                Ok(conn) => Some(conn),
                Err(e) => {
                    if let Some(suppressed) = shared.warnings.handshake.allow() {
                        tracing::warn!(node = shared.config.id, ?remote, error = %e, suppressed, "TLS handshake failed");
                    }
                    let _ = stream.shutdown(Shutdown::Both);
                    return;
                }
            }
        }
    };
    let peer = match session.as_mut() {
        None => judge_connection(shared, &mut io, remote, None),
        Some(conn) => {
            let cert = conn.peer_certificates().and_then(|c| c.first()).cloned();
            let mut io = TlsIo { conn, io: &mut io };
            judge_connection(shared, &mut io, remote, cert.as_ref())
        }
    };
    let Some(peer) = peer else {
        let _ = stream.shutdown(Shutdown::Both);
        return;
    };
    let mut slot = peer.accepted.lock().unwrap_or_else(|e| e.into_inner());
    if serial < slot.0 {
        // A newer connection from this peer finished its handshake first.
        drop(slot);
        let _ = stream.shutdown(Shutdown::Both);
        return;
    }
    tracing::debug!(
        node = shared.config.id,
        peer = peer.id,
        remote = ?stream.peer_addr().ok(),
        "accepted a peer's connection"
    );
    // A stream the writer has not adopted yet is older than this one: drop it.
    *slot = (serial, Some(Link { stream, session }));
    peer.has_accepted.store(true, Relaxed);
    drop(slot);
    peer.queue.wake();
}

/// Reads the hello on `io` and answers it: the peer it comes from if it was accepted. With TLS,
/// `cert` is the dialer's certificate, which must name the node its hello claims.
fn judge_connection<'a, M: Message + Codec>(
    shared: &'a Shared<M>,
    io: &mut impl ReadWrite,
    remote: Option<SocketAddr>,
    cert: Option<&CertificateDer<'_>>,
) -> Option<&'a Peer<M>> {
    let config = &shared.config;
    let warnings = &shared.warnings;
    let mut hello = [0u8; HELLO_BYTES];
    if let Err(e) = io.read_exact(&mut hello) {
        if let Some(suppressed) = warnings.handshake.allow() {
            tracing::warn!(node = config.id, ?remote, error = %e, suppressed, "no handshake from a connection");
        }
        return None;
    }
    let Some(hello) = Hello::decode(&hello) else {
        if let Some(suppressed) = warnings.handshake.allow() {
            tracing::warn!(
                node = config.id,
                ?remote,
                suppressed,
                "a connection that does not speak the zeroraft handshake"
            );
        }
        return None;
    };
    let mut verdict = handshake::judge(&hello, config.cluster, config.id, config.peers.len());
    // A peer whose address this node does not know (yet, or any more) has no link here.
    let known = shared
        .peers
        .get(hello.from as usize)
        .and_then(std::sync::OnceLock::get)
        .filter(|p| p.active.load(Relaxed));
    if verdict == Verdict::Accepted && known.is_none() {
        verdict = Verdict::WrongPeer;
    }
    if let Some(tls) = &shared.tls
        && verdict == Verdict::Accepted
        && !cert.is_some_and(|c| tls.names(c, hello.from as usize))
    {
        verdict = Verdict::WrongIdentity;
    }
    let answered = handshake::answer(io, verdict);
    if verdict != Verdict::Accepted {
        if let Some(suppressed) = warnings.refused.allow() {
            tracing::warn!(
                node = config.id,
                ?remote,
                from = hello.from,
                cluster = hello.cluster,
                reason = verdict.reason(),
                suppressed,
                "refused a peer's connection"
            );
        }
        if let Some(peer) = shared
            .peers
            .get(hello.from as usize)
            .and_then(std::sync::OnceLock::get)
        {
            peer.counters.rejected.fetch_add(1, Relaxed);
        }
        return None;
    }
    if let Err(e) = answered {
        if let Some(suppressed) = warnings.handshake.allow() {
            tracing::warn!(node = config.id, ?remote, error = %e, suppressed, "handshake answer failed");
        }
        return None;
    }
    known
}

/// Makes a blocked `accept` return, so the acceptor sees that the node stops.
pub(super) fn unblock_accept(listen: SocketAddr) {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
}

/// A connection whose handshake is done, with its TLS session if the links use TLS.
pub(super) struct Link {
    stream: TcpStream,
    session: Option<rustls::Connection>,
}

/// The connection a writer uses, with the reader thread that reads it.
struct Connection {
    stream: TcpStream,
    /// The sending half of the TLS session, if the links use TLS (the reader thread has the
    /// other).
    sealer: Option<Sealer>,
    serial: u64,
    reader: JoinHandle<()>,
}

impl Connection {
    fn close(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        let _ = self.reader.join();
    }
}

/// Peer `id`'s writer: keeps a connection to it (dialing it if this node has the lower id,
/// adopting the ones the acceptor hands over otherwise), and writes what is queued for it.
///
/// It ends when the node stops, or when the peer's address is cleared (`Peer::active`), then
/// closing its connection and dropping what is queued.
pub(super) fn write<M: Message + Codec>(shared: &Arc<Shared<M>>, id: NodeId) {
    let Some(peer) = shared.peers.get(id).and_then(std::sync::OnceLock::get) else {
        return;
    };
    let taken = peer
        .writer
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .parker
        .take();
    let Some(parker) = taken else {
        return;
    };
    loop {
        write_while_active(shared, peer, &parker);
        let mut state = peer.writer.lock().unwrap_or_else(|e| e.into_inner());
        if shared.stop.load(Relaxed) || !peer.active.load(Relaxed) {
            while peer.queue.pop().is_some() {
                peer.counters.dropped.fetch_add(1, Relaxed);
            }
            state.parker = Some(parker);
            state.running = false;
            return;
        }
        // Started again before this writer could end.
    }
}

/// The body of [`write`]: runs until the node stops or the peer's address is cleared.
fn write_while_active<M: Message + Codec>(
    shared: &Arc<Shared<M>>,
    peer: &Peer<M>,
    parker: &sync::Parker,
) {
    let config = &shared.config;
    let id = peer.id;
    let dialer = config.id < id;
    let mut conn: Option<Connection> = None;
    let mut backoff = config.backoff_min;
    let mut next_dial = Instant::now();
    let mut failures = 0u32;
    let mut out = BytesMut::with_capacity(WRITE_BATCH + 64);
    // What TLS made of `out`, when the links use it.
    let mut sealed = Vec::with_capacity(if shared.tls.is_some() {
        WRITE_BATCH + (WRITE_BATCH >> 6)
    } else {
        0
    });
    let mut last_write = Instant::now();
    let broken = |conn: &Option<Connection>| {
        conn.as_ref()
            .is_some_and(|c| peer.broken.load(Relaxed) == c.serial)
    };
    let running = || !shared.stop.load(Relaxed) && peer.active.load(Relaxed);
    while running() {
        if peer.has_accepted.swap(false, Relaxed) {
            let link = peer
                .accepted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .1
                .take();
            if let Some(link) = link {
                if let Some(old) = conn.take() {
                    close(peer, old);
                }
                conn = open(shared, peer, link);
            }
        }
        if broken(&conn) {
            close(peer, conn.take().expect("checked"));
            if dialer {
                next_dial = Instant::now() + backoff;
            }
        }
        if conn.is_none() && dialer && Instant::now() >= next_dial {
            match dial(shared, peer) {
                Ok(link) => {
                    conn = open(shared, peer, link);
                    backoff = config.backoff_min;
                    failures = 0;
                }
                Err(reason) => {
                    // The first failure of a streak is worth a warning; the retries are not.
                    if failures == 0 {
                        tracing::warn!(node = config.id, peer = id, addr = ?peer.addr.lock().ok().and_then(|a| *a), %reason, "cannot reach peer; retrying with backoff");
                    } else {
                        tracing::debug!(node = config.id, peer = id, %reason, "cannot reach peer");
                    }
                    failures += 1;
                    next_dial = Instant::now() + backoff;
                    backoff = (backoff * 2).min(config.backoff_max);
                }
            }
        }
        let Some(c) = conn.as_mut() else {
            // Nowhere to send: what was queued is lost, as on a cut link.
            while peer.queue.pop().is_some() {
                peer.counters.dropped.fetch_add(1, Relaxed);
            }
            let deadline = dialer.then_some(next_dial);
            peer.queue.wait(parker, deadline, Duration::ZERO, &|| {
                !running() || peer.has_accepted.load(Relaxed)
            });
            continue;
        };
        if c.sealer.as_ref().is_some_and(Sealer::worn) {
            // New keys need a new connection (the links send no key updates): before the next
            // batch, so that none is lost to the limit.
            tracing::info!(
                node = config.id,
                peer = id,
                "TLS keys nearly used up; replacing the connection"
            );
            close(peer, conn.take().expect("in use"));
            if dialer {
                next_dial = Instant::now();
            }
            continue;
        }
        out.clear();
        // Held until the batch is written: a sender writes to the connection itself only while
        // it can take this lock, and so never ahead of what this batch takes off the queue.
        let mut direct = peer.direct.lock().unwrap_or_else(|e| e.into_inner());
        // What a sender began first (counted as sent when it began).
        let carried = if peer.carried.swap(false, Relaxed) {
            out.extend_from_slice(&direct.carry);
            direct.carry.clear();
            out.len()
        } else {
            0
        };
        let mut messages = 0u64;
        while out.len() < WRITE_BATCH {
            let Some((_, msg)) = peer.queue.pop() else {
                break;
            };
            let at = out.len();
            out.put_u32_le(0);
            msg.encode(&mut out);
            let len = out.len() - at - 4;
            if len > config.max_frame || len > u32::MAX as usize {
                tracing::warn!(
                    node = config.id,
                    peer = id,
                    len,
                    "a message larger than the largest frame; dropped"
                );
                out.truncate(at);
                peer.counters.dropped.fetch_add(1, Relaxed);
                continue;
            }
            out[at..at + 4].copy_from_slice(&(len as u32).to_le_bytes());
            messages += 1;
        }
        let now = Instant::now();
        if messages == 0 && now >= last_write + KEEPALIVE {
            out.put_u32_le(0);
        }
        let written = (!out.is_empty()).then(|| match &mut c.sealer {
            None => c.stream.write_all(&out),
            Some(sealer) => sealer
                .seal(&out, &mut sealed)
                .and_then(|()| c.stream.write_all(&sealed)),
        });
        drop(direct);
        if let Some(written) = written {
            match written {
                Ok(()) => {
                    last_write = now;
                    let counters = &peer.counters;
                    counters.sent.fetch_add(messages, Relaxed);
                    counters
                        .bytes_sent
                        .fetch_add((out.len() - carried) as u64, Relaxed);
                    counters.writes.fetch_add(1, Relaxed);
                }
                Err(e) => {
                    tracing::info!(node = config.id, peer = id, error = %e, "connection to peer lost");
                    peer.counters.dropped.fetch_add(messages, Relaxed);
                    close(peer, conn.take().expect("in use"));
                    if dialer {
                        next_dial = Instant::now() + backoff;
                    }
                    continue;
                }
            }
        }
        if messages == 0 {
            let serial = c.serial;
            peer.queue.wait(
                parker,
                Some(last_write + KEEPALIVE),
                Duration::ZERO,
                &|| {
                    !running()
                        || peer.has_accepted.load(Relaxed)
                        || peer.broken.load(Relaxed) == serial
                        || peer.carried.load(Relaxed)
                },
            );
        }
    }
    if let Some(c) = conn.take() {
        close(peer, c);
    }
}

/// Dials `peer` and shakes hands (TLS first, if the links use it); the text says why it failed.
fn dial<M: Message + Codec>(shared: &Shared<M>, peer: &Peer<M>) -> Result<Link, String> {
    let config = &shared.config;
    let addr = (*peer.addr.lock().unwrap_or_else(|e| e.into_inner()))
        .ok_or_else(|| "no address known".to_string())?;
    let stream =
        TcpStream::connect_timeout(&addr, config.connect_timeout).map_err(|e| e.to_string())?;
    let mut io = Timed {
        stream: &stream,
        deadline: Instant::now() + config.handshake_timeout,
    };
    // With TLS, the socket is read a record at a time until the hello is answered (see
    // `Records`).
    let mut io = Records::new(&mut io, shared.tls.is_some());
    let mut session = match &shared.tls {
        None => None,
        Some(tls) => {
            let mut conn = tls.dialer(peer.id).map_err(|e| e.to_string())?;
            if let Err(e) = tls::handshake(&mut conn, &mut io) {
                peer.counters.rejected.fetch_add(1, Relaxed);
                return Err(format!("TLS handshake failed: {e}"));
            }
            Some(conn)
        }
    };
    let hello = Hello {
        version: handshake::VERSION,
        cluster: config.cluster,
        from: config.id as u32,
        to: peer.id as u32,
        nodes: config.peers.len() as u32,
    };
    let verdict = match session.as_mut() {
        None => handshake::dial(&mut io, &hello),
        Some(conn) => handshake::dial(&mut TlsIo { conn, io: &mut io }, &hello),
    };
    match verdict {
        Ok(Verdict::Accepted) => Ok(Link { stream, session }),
        Ok(verdict) => {
            peer.counters.rejected.fetch_add(1, Relaxed);
            Err(format!(
                "the peer refused the connection: {}",
                verdict.reason()
            ))
        }
        Err(e) => {
            peer.counters.rejected.fetch_add(1, Relaxed);
            Err(format!("handshake failed: {e}"))
        }
    }
}

/// Starts using `stream` (handshake done) as the connection to `peer`: a reader thread for it,
/// and the timeouts that tell a dead connection from a quiet one.
fn open<M: Message + Codec>(
    shared: &Arc<Shared<M>>,
    peer: &Peer<M>,
    link: Link,
) -> Option<Connection> {
    let Link { stream, session } = link;
    let config = &shared.config;
    let (sealer, opener) = match session.map(|conn| tls::split(conn, READ_BUFFER)) {
        None => (None, None),
        Some(Ok((sealer, opener))) => (Some(sealer), Some(opener)),
        Some(Err(e)) => {
            tracing::warn!(node = config.id, peer = peer.id, error = %e, "cannot set up a connection's TLS session");
            let _ = stream.shutdown(Shutdown::Both);
            return None;
        }
    };
    let setup = stream
        .set_nodelay(true)
        .and_then(|()| stream.set_read_timeout(Some(IDLE_TIMEOUT)))
        .and_then(|()| stream.set_write_timeout(Some(IDLE_TIMEOUT)))
        .and_then(|()| stream.try_clone());
    let read_half = match setup {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(node = config.id, peer = peer.id, error = %e, "cannot set up a connection");
            return None;
        }
    };
    let serial = peer.serial.fetch_add(1, Relaxed) + 1;
    let for_reader = shared.clone();
    let id = peer.id;
    let reader = std::thread::Builder::new()
        .name(format!("zeroraft-tcp-read-{}-{}", config.id, id))
        .stack_size(256 << 10)
        .spawn(move || read(&for_reader, id, read_half, serial, opener));
    match reader {
        Ok(reader) => {
            if sealer.is_none() {
                // Senders may write to an idle plaintext link themselves (`Peer::send_direct`);
                // without a handle of their own they queue everything, as with TLS.
                peer.direct.lock().unwrap_or_else(|e| e.into_inner()).stream =
                    stream.try_clone().ok();
            }
            peer.counters.connections.fetch_add(1, Relaxed);
            peer.counters.connected.store(true, Relaxed);
            tracing::debug!(node = config.id, peer = id, "connected");
            Some(Connection {
                stream,
                sealer,
                serial,
                reader,
            })
        }
        Err(e) => {
            tracing::warn!(node = config.id, peer = id, error = %e, "cannot start a reader thread");
            None
        }
    }
}

fn close<M>(peer: &Peer<M>, conn: Connection) {
    peer.counters.connected.store(false, Relaxed);
    let mut direct = peer.direct.lock().unwrap_or_else(|e| e.into_inner());
    direct.stream = None;
    if !direct.carry.is_empty() {
        // The rest of a message a sender began: lost with the connection, as what is queued.
        direct.carry.clear();
        peer.counters.dropped.fetch_add(1, Relaxed);
    }
    peer.carried.store(false, Relaxed);
    drop(direct);
    conn.close();
}

/// Reads frames from peer `id` on `stream` (through `opener`, if the links use TLS) until it
/// fails or closes, putting each message in the node's inbox; then marks connection `serial`
/// broken for the writer.
fn read<M: Message + Codec>(
    shared: &Shared<M>,
    id: NodeId,
    mut stream: TcpStream,
    serial: u64,
    mut opener: Option<Opener>,
) {
    let config = &shared.config;
    let Some(peer) = shared.peers.get(id).and_then(std::sync::OnceLock::get) else {
        return;
    };
    let mut buf = BytesMut::with_capacity(READ_BUFFER);
    let mut last_read = MIN_READ;
    // Whether the peer closed its TLS session: the frames decrypted before are still delivered.
    let mut closed = match &mut opener {
        // Plaintext that came with the end of the handshake.
        Some(opener) => match opener.open(0, &mut buf) {
            Ok(closed) => closed,
            Err(e) => {
                tracing::warn!(node = config.id, peer = id, error = %e, "dropping the connection to a peer");
                true
            }
        },
        None => false,
    };
    let outcome: Result<(), String> = 'conn: loop {
        // Cut out and deliver every whole frame in the buffer.
        while buf.len() >= 4 {
            let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            if len > config.max_frame {
                peer.counters.rejected.fetch_add(1, Relaxed);
                break 'conn Err(format!(
                    "a frame of {len} bytes, more than the largest accepted ({})",
                    config.max_frame
                ));
            }
            if buf.len() < 4 + len {
                break;
            }
            buf.advance(4);
            if len == 0 {
                continue; // a keepalive
            }
            let frame = buf.split_to(len).freeze();
            match M::decode(frame) {
                Ok(msg) => {
                    peer.counters.received.fetch_add(1, Relaxed);
                    if shared.inbox.push(id, msg).is_err() {
                        peer.counters.inbox_overflow.fetch_add(1, Relaxed);
                    }
                }
                Err(e) => {
                    peer.counters.rejected.fetch_add(1, Relaxed);
                    break 'conn Err(format!("a frame that does not decode: {e}"));
                }
            }
        }
        if closed || shared.stop.load(Relaxed) || peer.serial.load(Relaxed) != serial {
            break Ok(());
        }
        // With TLS, decrypting the next read may also yield the plaintext of bytes read before.
        let pending = opener.as_ref().map_or(0, Opener::pending);
        if buf.capacity() - buf.len() < MIN_READ + pending {
            // Grow with what arrived, by doubling (a frame of n bytes costs O(n) copies), never
            // by what a length prefix announces: a peer that announces a large frame and sends
            // little holds little memory.
            buf.reserve(buf.len().max(READ_BUFFER).max(MIN_READ + pending));
        }
        let start = buf.len();
        // No more than the buffer has room for, so that it never grows as plaintext is added.
        let want = (last_read * 2)
            .clamp(MIN_READ, READ_BUFFER)
            .min((buf.capacity() - start).saturating_sub(pending));
        let got = match &mut opener {
            None => {
                // Reading into a `BytesMut` without `unsafe` needs initialized bytes: clear only
                // as many as this read may fill.
                buf.resize(start + want, 0);
                let got = stream.read(&mut buf[start..]);
                buf.truncate(start + *got.as_ref().unwrap_or(&0));
                got
            }
            Some(opener) => stream.read(opener.space(want)),
        };
        match got {
            Ok(0) => break Ok(()),
            Ok(n) => {
                last_read = n;
                peer.counters.bytes_received.fetch_add(n as u64, Relaxed);
                if let Some(opener) = &mut opener {
                    match opener.open(n, &mut buf) {
                        Ok(c) => closed = c,
                        Err(e) => break Err(format!("TLS: {e}")),
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break Err(format!("nothing received for {IDLE_TIMEOUT:?}"));
            }
            Err(e) => break Err(e.to_string()),
        }
    };
    match outcome {
        Ok(()) => tracing::debug!(node = config.id, peer = id, "connection closed"),
        Err(reason) => {
            tracing::warn!(node = config.id, peer = id, %reason, "dropping the connection to a peer");
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    peer.broken.store(serial, Relaxed);
    peer.queue.wake();
}
