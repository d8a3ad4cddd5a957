//! Mutual TLS on the links between nodes, with rustls (TLS 1.3 only, the `ring` provider).
//!
//! Every node holds a certificate signed by the cluster's CA that names it: its DNS subject
//! alternative name is [`node_name`]`(cluster, id)`, `node-<id>.cluster-<cluster>.zeroraft`. A
//! name of that form, rather than a URI, lets the standard name check of the TLS library do the
//! work on both sides:
//!
//! - the dialer checks the acceptor's certificate against the name of the node it dials, as a
//!   TLS client checks a server's host name;
//! - the acceptor, once the TLS handshake proved that the dialer holds the key of a certificate
//!   of the CA, checks that this certificate names the node the dialer's hello claims to be,
//!   and refuses the connection ([`Verdict::WrongIdentity`](super::handshake::Verdict)) before
//!   any message is read from it.
//!
//! A certificate of another CA, or one outside its validity period, fails the TLS handshake. A
//! node of another cluster has a name with another cluster id, and is refused even with a
//! certificate of the same CA.
//!
//! # Records after the handshakes
//!
//! rustls runs the TLS handshake and carries the zeroraft hello and its answer. Then [`split`]
//! takes the traffic keys out of the session, and the connection's records are protected as
//! TLS 1.3 protects them (RFC 8446, section 5) by a [`Sealer`], the writer's, and an
//! [`Opener`], the reader's, with the AEAD of `ring` that rustls itself uses: into and out of
//! buffers the writer and the reader own and reuse, so that messages cost no allocation, where
//! rustls's own record layer allocates for every record it encrypts and every record it
//! decrypts. The two directions have keys of their own, so the writer and the reader share
//! nothing. The peer at the other end does the same: neither sends key updates, session tickets
//! or anything but data once the hello is answered; the writer drops the connection before its
//! keys reach the cipher suite's confidentiality limit, and the next connection has new keys.

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::Arc;

use bytes::BytesMut;
use ring::aead::{self, Aad, LessSafeKey, MAX_TAG_LEN as TAG_LEN, NONCE_LEN, Nonce, UnboundKey};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    ClientConfig, ClientConnection, ConnectionTrafficSecrets, RootCertStore, ServerConfig,
    ServerConnection,
};

use super::handshake::ReadWrite;
use crate::NodeId;

/// The name node `id` of cluster `cluster` has in its certificate (a DNS subject alternative
/// name): `node-<id>.cluster-<cluster>.zeroraft`.
pub fn node_name(cluster: u64, id: NodeId) -> String {
    format!("node-{id}.cluster-{cluster}.zeroraft")
}

/// The certificates a node proves itself with and checks its peers' against: the cluster's CA,
/// the node's certificate chain (its own certificate first) and the node's private key.
pub struct PeerTls {
    pub(super) ca: Vec<CertificateDer<'static>>,
    pub(super) chain: Vec<CertificateDer<'static>>,
    pub(super) key: PrivateKeyDer<'static>,
}

/// Why TLS settings cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsError(String);

impl TlsError {
    pub(super) fn new(why: String) -> Self {
        Self(why)
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

impl PeerTls {
    /// Settings from PEM text: the CA's certificate(s), the node's certificate chain and its
    /// private key (PKCS#8, PKCS#1 or SEC1).
    ///
    /// # Errors
    ///
    /// [`TlsError`] if a part is not valid PEM or holds no certificate or key.
    pub fn from_pem(ca: &[u8], chain: &[u8], key: &[u8]) -> Result<Self, TlsError> {
        let certs = |pem: &[u8], what: &str| {
            let certs = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| TlsError(format!("{what}: {e}")))?;
            if certs.is_empty() {
                return Err(TlsError(format!("{what}: no certificate in it")));
            }
            Ok(certs)
        };
        Ok(Self {
            ca: certs(ca, "the CA certificate")?,
            chain: certs(chain, "the node certificate")?,
            key: PrivateKeyDer::from_pem_slice(key)
                .map_err(|e| TlsError(format!("the node key: {e}")))?,
        })
    }
}

impl Clone for PeerTls {
    fn clone(&self) -> Self {
        Self {
            ca: self.ca.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl PartialEq for PeerTls {
    fn eq(&self, other: &Self) -> bool {
        self.ca == other.ca
            && self.chain == other.chain
            && self.key.secret_der() == other.key.secret_der()
    }
}

impl Eq for PeerTls {}

impl fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerTls")
            .field("ca", &self.ca.len())
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// The TLS configurations of one node, built once when it starts.
pub(super) struct Tls {
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
    cluster: u64,
}

impl Tls {
    /// Both sides' configurations for node certificates of cluster `cluster`.
    pub(super) fn new(settings: &PeerTls, cluster: u64) -> Result<Self, TlsError> {
        // The ring provider: X25519 and P-256 key exchange, without the post-quantum hybrid
        // (X25519MLKEM768) of the aws-lc-rs provider, whose C library would add minutes to every
        // clean build on a small machine. Choosing that provider here is the whole change.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for ca in &settings.ca {
            roots
                .add(ca.clone())
                .map_err(|e| TlsError(format!("the CA certificate: {e}")))?;
        }
        let roots = Arc::new(roots);
        let versions = &[&rustls::version::TLS13];
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| TlsError(format!("the CA certificate: {e}")))?;
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| TlsError(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(settings.chain.clone(), settings.key.clone_key())
            .map_err(|e| TlsError(format!("the node certificate or key: {e}")))?;
        // Links are long-lived: no resumption, so no tickets to send after the handshake.
        server.send_tls13_tickets = 0;
        // The records after the handshakes are protected by `Sealer` and `Opener`, with the
        // keys taken out of the session.
        server.enable_secret_extraction = true;
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|e| TlsError(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(settings.chain.clone(), settings.key.clone_key())
            .map_err(|e| TlsError(format!("the node certificate or key: {e}")))?;
        client.resumption = rustls::client::Resumption::disabled();
        client.enable_secret_extraction = true;
        Ok(Self {
            client: Arc::new(client),
            server: Arc::new(server),
            cluster,
        })
    }

    /// The dialer's side of a session with node `to`, whose certificate must name it.
    pub(super) fn dialer(&self, to: NodeId) -> io::Result<rustls::Connection> {
        let name = ServerName::try_from(node_name(self.cluster, to))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        ClientConnection::new(self.client.clone(), name)
            .map(rustls::Connection::from)
            .map_err(io::Error::other)
    }

    /// The acceptor's side of a session.
    pub(super) fn acceptor(&self) -> io::Result<rustls::Connection> {
        ServerConnection::new(self.server.clone())
            .map(rustls::Connection::from)
            .map_err(io::Error::other)
    }

    /// Whether `cert` (the dialer's, checked against the CA by the TLS handshake) names node
    /// `id` of this cluster.
    pub(super) fn names(&self, cert: &CertificateDer<'_>, id: NodeId) -> bool {
        let Ok(name) = ServerName::try_from(node_name(self.cluster, id)) else {
            return false;
        };
        webpki::EndEntityCert::try_from(cert)
            .is_ok_and(|ee| ee.verify_is_valid_for_subject_name(&name).is_ok())
    }
}

/// Runs the TLS handshake of `conn` over `io` to its end (with mutual authentication).
pub(super) fn handshake(conn: &mut rustls::Connection, io: &mut impl ReadWrite) -> io::Result<()> {
    while conn.is_handshaking() {
        conn.complete_io(io)?;
    }
    // The last flight (the client's Finished) may still wait to be written.
    while conn.wants_write() {
        conn.write_tls(io)?;
    }
    Ok(())
}

/// A TLS session during the zeroraft handshake: plaintext in and out over a socket.
pub(super) struct TlsIo<'a, S> {
    pub(super) conn: &'a mut rustls::Connection,
    pub(super) io: S,
}

impl<S: Read + Write> Read for TlsIo<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.conn.read_tls(&mut self.io)? == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    self.conn
                        .process_new_packets()
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                }
                other => return other,
            }
        }
    }
}

impl<S: Read + Write> Write for TlsIo<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.conn.writer().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(&mut self.io)?;
        }
        Ok(())
    }
}

/// The largest plaintext of a TLS record (RFC 8446, section 5.1).
const MAX_PLAINTEXT: usize = 1 << 14;
/// The largest length a TLS 1.3 record's header may announce (RFC 8446, section 5.2).
const MAX_CIPHERTEXT: usize = MAX_PLAINTEXT + 256;
/// A record's header: content type, legacy version, length.
const HEADER: usize = 5;
/// The content type of every TLS 1.3 record once the handshake is done.
const APPLICATION_DATA: u8 = 23;
/// The inner content type of an alert.
const ALERT: u8 = 21;
/// The legacy version every TLS 1.3 record announces.
const LEGACY_VERSION: [u8; 2] = [3, 3];

/// A socket read one TLS record at a time during the handshakes: never past the end of the
/// record the reader is in, so that once the zeroraft hello is answered, the TLS session holds
/// no bytes of the records that follow it (the peer's first frames), which
/// [`split`] could not take out of it. Without TLS, the socket itself.
pub(super) struct Records<S> {
    io: S,
    tls: bool,
    header: [u8; HEADER],
    /// Bytes of `header` read so far, while between records.
    got: usize,
    /// Bytes of the current record's body still to read.
    left: usize,
}

impl<S> Records<S> {
    /// `io`, read a record at a time if `tls`.
    pub(super) fn new(io: S, tls: bool) -> Self {
        Self {
            io,
            tls,
            header: [0; HEADER],
            got: 0,
            left: 0,
        }
    }
}

impl<S: Read> Read for Records<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.tls {
            return self.io.read(buf);
        }
        if self.left == 0 {
            let want = buf.len().min(HEADER - self.got);
            let n = self.io.read(&mut buf[..want])?;
            self.header[self.got..self.got + n].copy_from_slice(&buf[..n]);
            self.got += n;
            if self.got == HEADER {
                self.got = 0;
                self.left = usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
            }
            return Ok(n);
        }
        let want = buf.len().min(self.left);
        let n = self.io.read(&mut buf[..want])?;
        self.left -= n;
        Ok(n)
    }
}

impl<S: Write> Write for Records<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.io.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.io.flush()
    }
}

/// One direction of a session: its AEAD key, its IV and the sequence number of its next
/// record.
struct Keys {
    key: LessSafeKey,
    iv: [u8; NONCE_LEN],
    seq: u64,
}

impl Keys {
    fn new((seq, secrets): (u64, ConnectionTrafficSecrets)) -> io::Result<Self> {
        let (algorithm, key, iv) = match &secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&aead::AES_128_GCM, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&aead::AES_256_GCM, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&aead::CHACHA20_POLY1305, key, iv)
            }
            _ => return Err(io::Error::other("a cipher suite the peer links do not use")),
        };
        let key = UnboundKey::new(algorithm, key.as_ref())
            .map_err(|_| io::Error::other("an AEAD key of the wrong length"))?;
        let iv = iv
            .as_ref()
            .try_into()
            .map_err(|_| io::Error::other("an IV of the wrong length"))?;
        Ok(Self {
            key: LessSafeKey::new(key),
            iv,
            seq,
        })
    }

    /// The nonce of the next record (RFC 8446, section 5.3), which it then uses up.
    fn next_nonce(&mut self) -> io::Result<Nonce> {
        let mut nonce = self.iv;
        for (n, s) in nonce[NONCE_LEN - 8..]
            .iter_mut()
            .zip(self.seq.to_be_bytes())
        {
            *n ^= s;
        }
        self.seq = self
            .seq
            .checked_add(1)
            .ok_or_else(|| io::Error::other("record sequence numbers used up"))?;
        Ok(Nonce::assume_unique_for_key(nonce))
    }
}

/// The sending half of a connection's TLS session once its handshakes are done: encrypts into
/// a buffer the caller owns and reuses, so sending allocates nothing (see the
/// [module's documentation](self)).
pub(super) struct Sealer {
    keys: Keys,
    /// The records the keys may protect.
    limit: u64,
}

impl Sealer {
    /// Whether the keys have protected seven eighths of the records the cipher suite allows:
    /// the writer then replaces the connection before sealing more, rather than meet the limit
    /// in the middle of a batch.
    pub(super) fn worn(&self) -> bool {
        self.keys.seq >= self.limit - self.limit / 8
    }

    /// Encrypts `plain` into `sealed` (cleared first) as records of at most 16 KiB of
    /// plaintext each, for the caller to write to the socket.
    ///
    /// # Errors
    ///
    /// The keys have protected as many records as the cipher suite allows: the connection must
    /// be dropped.
    pub(super) fn seal(&mut self, plain: &[u8], sealed: &mut Vec<u8>) -> io::Result<()> {
        sealed.clear();
        for chunk in plain.chunks(MAX_PLAINTEXT) {
            if self.keys.seq >= self.limit {
                return Err(io::Error::other(
                    "the session's keys reached their limit; a new connection has new ones",
                ));
            }
            let len = chunk.len() + 1 + TAG_LEN;
            let [hi, lo] = (len as u16).to_be_bytes();
            let header = [
                APPLICATION_DATA,
                LEGACY_VERSION[0],
                LEGACY_VERSION[1],
                hi,
                lo,
            ];
            let at = sealed.len();
            sealed.extend_from_slice(&header);
            sealed.extend_from_slice(chunk);
            sealed.push(APPLICATION_DATA);
            let nonce = self.keys.next_nonce()?;
            let tag = self
                .keys
                .key
                .seal_in_place_separate_tag(nonce, Aad::from(header), &mut sealed[at + HEADER..])
                .map_err(|_| io::Error::other("encryption failed"))?;
            sealed.extend_from_slice(tag.as_ref());
        }
        Ok(())
    }
}

/// The receiving half of a connection's TLS session once its handshakes are done: decrypts
/// records in place in a buffer of its own, so receiving allocates nothing.
pub(super) struct Opener {
    keys: Keys,
    /// Bytes read from the socket: `cipher[..filled]` is the start of a record not yet whole.
    cipher: Vec<u8>,
    filled: usize,
    /// Plaintext the session received with the end of the handshakes, delivered first.
    early: Vec<u8>,
}

impl Opener {
    /// Where to read at most `want` bytes from the socket (fewer if the buffer is short of
    /// room), to pass their count to [`Opener::open`] next.
    pub(super) fn space(&mut self, want: usize) -> &mut [u8] {
        let end = self.cipher.len().min(self.filled + want.max(1));
        &mut self.cipher[self.filled..end]
    }

    /// Bytes read before and not decrypted yet, the start of a record: decrypting the next
    /// `n` bytes read may yield up to `pending() + n` bytes of plaintext.
    pub(super) fn pending(&self) -> usize {
        self.filled + self.early.len()
    }

    /// Decrypts the records completed by the `n` bytes just read into [`Opener::space`],
    /// appending their plaintext to `plain`: `Ok(true)` once the peer closed the session.
    ///
    /// # Errors
    ///
    /// A record that is not an application data record of TLS 1.3, fails authentication or
    /// holds anything but data or a `close_notify` alert (the peer links send neither key
    /// updates nor session tickets).
    pub(super) fn open(&mut self, n: usize, plain: &mut BytesMut) -> io::Result<bool> {
        if !self.early.is_empty() {
            plain.extend_from_slice(&self.early);
            self.early = Vec::new();
        }
        self.filled += n;
        let mut at = 0;
        let mut closed = false;
        while self.filled - at >= HEADER {
            let header: [u8; HEADER] = self.cipher[at..at + HEADER]
                .try_into()
                .expect("a header's length");
            let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
            if header[0] != APPLICATION_DATA
                || header[1..3] != LEGACY_VERSION
                || !(TAG_LEN + 1..=MAX_CIPHERTEXT).contains(&len)
            {
                return Err(invalid("a record that is not TLS 1.3 application data"));
            }
            if self.filled - at < HEADER + len {
                break;
            }
            let nonce = self.keys.next_nonce()?;
            let record = &mut self.cipher[at + HEADER..at + HEADER + len];
            let inner = self
                .keys
                .key
                .open_in_place(nonce, Aad::from(header), record)
                .map_err(|_| invalid("a record that fails authentication"))?;
            // The inner plaintext: content, content type, zeros of padding.
            let Some(end) = inner.iter().rposition(|&b| b != 0) else {
                return Err(invalid("a record without content type"));
            };
            match (inner[end], &inner[..end]) {
                (APPLICATION_DATA, data) => plain.extend_from_slice(data),
                // A close_notify alert: warning level, description 0.
                (ALERT, [1, 0]) => closed = true,
                (ALERT, _) => return Err(invalid("the peer sent a TLS alert")),
                _ => return Err(invalid("an unexpected TLS message after the handshake")),
            }
            at += HEADER + len;
        }
        self.cipher.copy_within(at..self.filled, 0);
        self.filled -= at;
        Ok(closed)
    }
}

fn invalid(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// Takes the traffic keys out of `conn`, whose handshakes are done and which has nothing left
/// to send: the halves of the session for the writer and for the reader of the connection, the
/// latter with room to read `read_buffer` bytes at a time and with the plaintext `conn` had
/// received and not handed out.
///
/// `conn` must not hold part of a record read from the socket, as it would be lost:
/// the handshakes read the socket through [`Records`].
pub(super) fn split(
    mut conn: rustls::Connection,
    read_buffer: usize,
) -> io::Result<(Sealer, Opener)> {
    let limit = match conn.negotiated_cipher_suite() {
        Some(rustls::SupportedCipherSuite::Tls13(suite)) => suite.common.confidentiality_limit,
        _ => return Err(io::Error::other("not a TLS 1.3 session")),
    };
    let mut early = Vec::new();
    match conn.reader().read_to_end(&mut early) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    let secrets = conn.dangerous_extract_secrets().map_err(io::Error::other)?;
    Ok((
        Sealer {
            keys: Keys::new(secrets.tx)?,
            limit,
        },
        Opener {
            keys: Keys::new(secrets.rx)?,
            cipher: vec![0; read_buffer + HEADER + MAX_CIPHERTEXT],
            filled: 0,
            early,
        },
    ))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::tcp::Authority;

    const CLUSTER: u64 = 7;

    fn today() -> std::ops::Range<SystemTime> {
        let now = SystemTime::now();
        now - Duration::from_secs(3600)..now + Duration::from_secs(86_400)
    }

    /// Moves what `from` has to send into `to`.
    fn transfer(from: &mut rustls::Connection, to: &mut rustls::Connection) {
        let mut wire = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut wire).unwrap();
        }
        let mut wire = &wire[..];
        while !wire.is_empty() {
            to.read_tls(&mut wire).unwrap();
            to.process_new_packets().expect("valid records");
        }
    }

    /// Node 0 (the dialer) and node 1 (the acceptor) of one cluster, their handshake done in
    /// memory.
    fn pair() -> (rustls::Connection, rustls::Connection) {
        let ca = Authority::new("test CA", today()).unwrap();
        let settings = |id| {
            let node = ca.node(CLUSTER, id, today()).unwrap();
            Tls::new(
                &PeerTls::from_issued(&ca.issued().cert_pem, &node).unwrap(),
                CLUSTER,
            )
            .unwrap()
        };
        let mut dialer = settings(0).dialer(1).unwrap();
        let mut acceptor = settings(1).acceptor().unwrap();
        while dialer.is_handshaking() || acceptor.is_handshaking() || dialer.wants_write() {
            transfer(&mut dialer, &mut acceptor);
            transfer(&mut acceptor, &mut dialer);
        }
        (dialer, acceptor)
    }

    fn text(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    /// Opens `wire` `step` bytes at a time (records split anywhere), as the reader does.
    fn open_all(opener: &mut Opener, wire: &[u8], step: usize) -> io::Result<(BytesMut, bool)> {
        let mut plain = BytesMut::new();
        let mut closed = false;
        for chunk in wire.chunks(step) {
            let space = opener.space(chunk.len());
            assert_eq!(space.len(), chunk.len(), "room for a read");
            space.copy_from_slice(chunk);
            closed |= opener.open(chunk.len(), &mut plain)?;
        }
        Ok((plain, closed))
    }

    // What a `Sealer` writes, rustls reads; what rustls writes, an `Opener` reads: the records
    // are TLS 1.3's, not merely understood by the same code on both sides.
    #[test]
    fn records_of_the_split_session_are_those_of_tls() {
        let (mut dialer, acceptor) = pair();
        let (mut sealer, mut opener) = split(acceptor, 1 << 16).unwrap();
        let sent = text(40_000); // three records
        let mut sealed = Vec::new();
        sealer.seal(&sent, &mut sealed).unwrap();
        assert_eq!(sealed.len(), sent.len() + 3 * (HEADER + 1 + TAG_LEN));
        let mut wire = &sealed[..];
        let mut got = Vec::new();
        while !wire.is_empty() {
            dialer.read_tls(&mut wire).unwrap();
            dialer
                .process_new_packets()
                .expect("rustls accepts the records");
            let _ = dialer.reader().read_to_end(&mut got); // until WouldBlock
        }
        assert_eq!(got, sent, "rustls decrypts what the sealer encrypted");

        // Read a few bytes at a time: records cut anywhere, headers included.
        let sent = text(50_000);
        dialer.writer().write_all(&sent).unwrap();
        dialer.send_close_notify();
        let mut wire = Vec::new();
        while dialer.wants_write() {
            dialer.write_tls(&mut wire).unwrap();
        }
        let (plain, closed) = open_all(&mut opener, &wire, 7).unwrap();
        assert_eq!(
            &plain[..],
            &sent[..],
            "the opener decrypts what rustls encrypted"
        );
        assert!(closed, "and sees its close_notify");
        assert_eq!(opener.pending(), 0, "nothing left over");
    }

    #[test]
    fn both_halves_of_split_sessions_talk_in_both_directions() {
        let (dialer, acceptor) = pair();
        let (mut seal_0, mut open_0) = split(dialer, 1 << 16).unwrap();
        let (mut seal_1, mut open_1) = split(acceptor, 1 << 16).unwrap();
        let mut sealed = Vec::new();
        for (round, len) in [1, 4, 16_384, 16_385, 70_000, 3].into_iter().enumerate() {
            let sent = text(len);
            seal_0.seal(&sent, &mut sealed).unwrap();
            let step = [1, 4096, sealed.len()][round % 3];
            let (plain, closed) = open_all(&mut open_1, &sealed, step).unwrap();
            assert_eq!(
                (&plain[..], closed),
                (&sent[..], false),
                "0 to 1, {len} bytes"
            );
            seal_1.seal(&sent, &mut sealed).unwrap();
            let (plain, closed) = open_all(&mut open_0, &sealed, step).unwrap();
            assert_eq!(
                (&plain[..], closed),
                (&sent[..], false),
                "1 to 0, {len} bytes"
            );
        }
    }

    /// Two records node 0 sealed, and node 1's opener for them.
    fn two_records() -> (Vec<u8>, Vec<u8>, Opener) {
        let (dialer, acceptor) = pair();
        let (mut sealer, _) = split(dialer, 1 << 16).unwrap();
        let (_, opener) = split(acceptor, 1 << 16).unwrap();
        let mut first = Vec::new();
        sealer.seal(b"first", &mut first).unwrap();
        let mut second = Vec::new();
        sealer.seal(b"second", &mut second).unwrap();
        (first, second, opener)
    }

    #[test]
    fn a_record_altered_replayed_or_out_of_order_is_refused() {
        let refused = |opener: &mut Opener, wire: &[u8]| {
            open_all(opener, wire, wire.len())
                .expect_err("refused")
                .kind()
        };
        let (first, _, mut opener) = two_records();
        let (plain, _) = open_all(&mut opener, &first, first.len()).unwrap();
        assert_eq!(&plain[..], b"first", "in order, accepted");
        assert_eq!(
            refused(&mut opener, &first),
            io::ErrorKind::InvalidData,
            "replayed"
        );
        let (_, second_too, mut opener) = two_records();
        assert_eq!(
            refused(&mut opener, &second_too),
            io::ErrorKind::InvalidData,
            "reordered"
        );
        let (mut first, _, mut opener) = two_records();
        first[HEADER + 2] ^= 1;
        assert_eq!(
            refused(&mut opener, &first),
            io::ErrorKind::InvalidData,
            "altered"
        );
        let (mut first, _, mut opener) = two_records();
        first[0] = 22;
        assert_eq!(
            refused(&mut opener, &first),
            io::ErrorKind::InvalidData,
            "not data"
        );
    }

    #[test]
    fn a_sealer_stops_at_the_limit_of_its_keys() {
        let (dialer, _) = pair();
        let (mut sealer, _) = split(dialer, 1 << 16).unwrap();
        sealer.limit = 16;
        let mut sealed = Vec::new();
        sealer.seal(&text(13 * MAX_PLAINTEXT), &mut sealed).unwrap();
        assert!(!sealer.worn(), "13 of 16 records used");
        sealer.seal(b"14th", &mut sealed).unwrap();
        assert!(sealer.worn(), "14 of 16 records used: time for new keys");
        sealer.seal(&text(2 * MAX_PLAINTEXT), &mut sealed).unwrap();
        assert!(sealer.seal(b"17th", &mut sealed).is_err(), "no 17th record");
    }

    // Plaintext the session received beyond the hello, before it was split, comes out first.
    #[test]
    fn plaintext_received_before_the_split_is_delivered_first() {
        let (mut dialer, mut acceptor) = pair();
        dialer.writer().write_all(b"hello, and more").unwrap();
        transfer(&mut dialer, &mut acceptor);
        let mut hello = [0; 7];
        acceptor.reader().read_exact(&mut hello).unwrap();
        let (mut sealer, _) = split(dialer, 1 << 16).unwrap();
        let (_, mut opener) = split(acceptor, 1 << 16).unwrap();
        assert_eq!(opener.pending(), 8);
        let mut sealed = Vec::new();
        sealer.seal(b" and after", &mut sealed).unwrap();
        let (plain, _) = open_all(&mut opener, &sealed, 3).unwrap();
        assert_eq!(&plain[..], b"and more and after");
    }

    // Reading through `Records`, no read ends past a record's end, whatever the buffer.
    #[test]
    fn records_reads_stop_at_the_end_of_each_record() {
        let mut wire = vec![23, 3, 3, 0, 3, b'a', b'b', b'c', 23, 3, 3, 0, 1, b'd'];
        wire.extend_from_slice(&[23, 3, 3]);
        let mut records = Records::new(&wire[..], true);
        let mut buf = [0; 64];
        let mut reads = Vec::new();
        loop {
            let n = records.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            reads.push(buf[..n].to_vec());
        }
        let expected: [&[u8]; 5] = [&wire[..5], b"abc", &wire[8..13], b"d", &wire[14..]];
        assert_eq!(reads, expected);
        let mut plain = Records::new(&wire[..], false);
        assert_eq!(
            plain.read(&mut buf).unwrap(),
            wire.len(),
            "without TLS, as it comes"
        );
    }

    /// The CPU time this thread has used, in nanoseconds (Linux).
    fn cpu_ns() -> u64 {
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// A measurement, run by hand: CPU time per byte to seal and open 512 MiB in batches of
    /// 256 KiB and of 512 bytes, through a split session and through rustls's buffered API.
    /// `cargo test --release -p zeroraft-transport --lib cost_of_records -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement; prints CPU time per byte"]
    fn cost_of_records() {
        const BATCH: usize = 256 << 10;
        const TOTAL: usize = 512 << 20;
        for batch in [BATCH, 512] {
            for _ in 0..3 {
                let (d, a) = pair();
                let (mut sealer, _) = split(d, 1 << 16).unwrap();
                let (_, mut opener) = split(a, 1 << 16).unwrap();
                let data = vec![5u8; batch];
                let mut sealed = Vec::with_capacity(BATCH + 8192);
                let mut plain = BytesMut::with_capacity(4 << 20);
                let t = cpu_ns();
                for _ in 0..TOTAL / batch {
                    sealer.seal(&data, &mut sealed).unwrap();
                    for chunk in sealed.chunks(1 << 16) {
                        let s = opener.space(chunk.len());
                        s.copy_from_slice(chunk);
                        opener.open(chunk.len(), &mut plain).unwrap();
                    }
                    assert_eq!(plain.len(), batch);
                    plain.clear();
                }
                let split_ns = cpu_ns() - t;
                let (mut d, mut a) = pair();
                let mut buf = vec![0u8; batch];
                let t = cpu_ns();
                for _ in 0..TOTAL / batch {
                    sealed.clear();
                    let mut rest = &data[..];
                    while !rest.is_empty() {
                        let n = d.writer().write(rest).unwrap();
                        rest = &rest[n..];
                        while d.wants_write() {
                            d.write_tls(&mut sealed).unwrap();
                        }
                    }
                    let mut got = 0;
                    for chunk in sealed.chunks(1 << 16) {
                        let mut c = chunk;
                        while !c.is_empty() {
                            a.read_tls(&mut c).unwrap();
                            let st = a.process_new_packets().unwrap();
                            let n = st.plaintext_bytes_to_read();
                            a.reader().read_exact(&mut buf[got..got + n]).unwrap();
                            got += n;
                        }
                    }
                    assert_eq!(got, batch);
                }
                let rustls_ns = cpu_ns() - t;
                eprintln!(
                    "batch {batch}: split session {:.3} ns/byte, rustls buffered {:.3} ns/byte",
                    split_ns as f64 / TOTAL as f64,
                    rustls_ns as f64 / TOTAL as f64
                );
            }
        }
    }
}
