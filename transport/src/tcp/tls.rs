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
//! # Threads
//!
//! A connection's TLS session is shared by its reader thread and its peer's writer thread,
//! behind a `Mutex` held only to encrypt or decrypt in memory ([`Session::seal`],
//! [`Session::open`]): the socket is read and written outside the lock. Only the writer writes
//! to the socket, so records leave in the order they were sealed; a record the session wants
//! to send on its own (a key update) leaves with the writer's next write, a keepalive at the
//! latest.

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

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
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|e| TlsError(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(settings.chain.clone(), settings.key.clone_key())
            .map_err(|e| TlsError(format!("the node certificate or key: {e}")))?;
        client.resumption = rustls::client::Resumption::disabled();
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

/// A connection's TLS session once its handshakes are done, shared by its reader and writer.
pub(super) struct Session(Mutex<rustls::Connection>);

impl Session {
    pub(super) fn new(conn: rustls::Connection) -> Self {
        Self(Mutex::new(conn))
    }

    /// Encrypts `plain` into `sealed` (cleared first), for the caller to write to the socket,
    /// with whatever else the session has to send.
    pub(super) fn seal(&self, plain: &[u8], sealed: &mut Vec<u8>) -> io::Result<()> {
        let mut conn = self.0.lock().unwrap_or_else(|e| e.into_inner());
        sealed.clear();
        let mut rest = plain;
        loop {
            // The session takes what fits in its buffer (64 KiB); drained, it takes more.
            let n = conn.writer().write(rest)?;
            rest = &rest[n..];
            while conn.wants_write() {
                conn.write_tls(sealed)?;
            }
            if rest.is_empty() {
                return Ok(());
            }
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
    }

    /// Decrypts `cipher`, bytes just read from the socket, appending the plaintext to `plain`
    /// with any the session held already (what came with the end of the handshake):
    /// `Ok(true)` once the peer closed the session.
    pub(super) fn open(&self, mut cipher: &[u8], plain: &mut BytesMut) -> io::Result<bool> {
        let mut conn = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut closed = false;
        loop {
            if !cipher.is_empty() {
                conn.read_tls(&mut cipher)?;
            }
            let state = conn
                .process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let n = state.plaintext_bytes_to_read();
            if n > 0 {
                let at = plain.len();
                plain.resize(at + n, 0);
                conn.reader().read_exact(&mut plain[at..])?;
            }
            closed |= state.peer_has_closed();
            if cipher.is_empty() {
                return Ok(closed);
            }
        }
    }
}
