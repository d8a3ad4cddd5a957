//! Mutual TLS on a node's client port: the server's side ([`ServiceTls`]), the client's side
//! ([`ClientTls`]) and the stream they share once the handshake is done ([`TlsStream`]).
//!
//! The same CA signs the nodes' certificates and the clients'. A client proves who it is with a
//! certificate whose DNS subject alternative name says its role and its cluster:
//!
//! - [`client_name`]`(cluster)`, `client.cluster-<cluster>.zeroraft`: an ordinary client
//!   ([`ClientRole::Client`]): reads, writes, the basic status;
//! - [`admin_name`]`(cluster)`, `admin.cluster-<cluster>.zeroraft`: an operator
//!   ([`ClientRole::Admin`]): everything a client may, and leadership transfer and the full
//!   status.
//!
//! The role lives in the certificate's name, as the node's id does in a node certificate
//! ([`node_name`]), rather than in an extension of our own: the standard name check of the TLS
//! library reads it, nothing parses certificates here, and any CA tooling that can put a DNS
//! name in a certificate can make one. A certificate that names neither role in this node's
//! cluster (a node's certificate, another cluster's client) is refused once the TLS handshake
//! has proved that its holder has its key. Client and admin certificates carry only the
//! client-authentication key usage, so they cannot serve as a node's on either port.
//!
//! The client checks the server's certificate against the name of the node it meant to reach
//! ([`node_name`]), or, when it does not know which node an address serves, that it is a node of
//! its cluster.
//!
//! # Threads
//!
//! A [`TlsStream`] is read by one thread and written by another (a server's connection reads
//! requests on one thread and answers them on a second). The TLS session is behind a `Mutex`
//! held only to encrypt or decrypt in memory; the socket is read and written outside it, the
//! ciphertext through a buffer of each direction's own, reused.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore,
    ServerConfig, ServerConnection, SignatureScheme,
};

use super::handshake::Timed;
use super::{PeerTls, TlsError, node_name};
use crate::NodeId;

/// The name an ordinary client's certificate carries (a DNS subject alternative name):
/// `client.cluster-<cluster>.zeroraft`.
pub fn client_name(cluster: u64) -> String {
    format!("client.cluster-{cluster}.zeroraft")
}

/// The name an operator's certificate carries: `admin.cluster-<cluster>.zeroraft`.
pub fn admin_name(cluster: u64) -> String {
    format!("admin.cluster-{cluster}.zeroraft")
}

/// What a client connected to a node's client port may do, as its certificate says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientRole {
    /// Reads, writes and the basic status.
    Client,
    /// Everything, leadership transfer and the full status included. A plaintext connection
    /// (a server started without TLS, on a network it trusts) has this role too.
    Admin,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    // As between nodes (see `tls.rs`): the ring provider, TLS 1.3 only.
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(settings: &PeerTls) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in &settings.ca {
        roots
            .add(ca.clone())
            .map_err(|e| TlsError::new(format!("the CA certificate: {e}")))?;
    }
    Ok(Arc::new(roots))
}

/// The server's side of TLS on a node's client port: the node's certificate, and the CA that
/// clients' certificates must be signed by. Cheap to clone.
#[derive(Clone)]
pub struct ServiceTls {
    config: Arc<ServerConfig>,
    cluster: u64,
    /// What the configuration was built from, for equality.
    settings: Arc<PeerTls>,
}

impl ServiceTls {
    /// The client port's TLS for a node of cluster `cluster` holding `settings` (the same as
    /// its links to other nodes use: the CA, its certificate and key).
    ///
    /// # Errors
    ///
    /// [`TlsError`] if the certificates or key cannot be used.
    pub fn new(settings: &PeerTls, cluster: u64) -> Result<Self, TlsError> {
        let provider = provider();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(roots(settings)?, provider.clone())
                .build()
                .map_err(|e| TlsError::new(format!("the CA certificate: {e}")))?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::new(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(settings.chain.clone(), settings.key.clone_key())
            .map_err(|e| TlsError::new(format!("the node certificate or key: {e}")))?;
        // Clients keep their connections: no resumption, so no tickets after the handshake.
        config.send_tls13_tickets = 0;
        Ok(Self {
            config: Arc::new(config),
            cluster,
            settings: Arc::new(settings.clone()),
        })
    }

    /// Runs the server's side of the handshake on `stream`, to be done by `deadline` however
    /// the client spreads its bytes out, and returns the session with the client's role.
    ///
    /// # Errors
    ///
    /// The socket's error; `TimedOut` past the deadline; `InvalidData` if the handshake fails
    /// (no certificate, another CA's, an expired one) or `PermissionDenied` if the certificate
    /// names no client of this cluster.
    pub fn accept(
        &self,
        stream: TcpStream,
        deadline: Instant,
    ) -> io::Result<(TlsStream, ClientRole)> {
        let mut conn = ServerConnection::new(self.config.clone())
            .map(rustls::Connection::from)
            .map_err(io::Error::other)?;
        handshake(&mut conn, &stream, deadline)?;
        let role = {
            let cert = conn.peer_certificates().and_then(|c| c.first());
            let names = |name: String| cert.is_some_and(|cert| names(cert, name));
            if names(admin_name(self.cluster)) {
                ClientRole::Admin
            } else if names(client_name(self.cluster)) {
                ClientRole::Client
            } else {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "the client's certificate names neither {} nor {}",
                        client_name(self.cluster),
                        admin_name(self.cluster)
                    ),
                ));
            }
        };
        Ok((TlsStream::new(stream, conn)?, role))
    }
}

impl PartialEq for ServiceTls {
    fn eq(&self, other: &Self) -> bool {
        self.cluster == other.cluster && self.settings == other.settings
    }
}

impl Eq for ServiceTls {}

impl fmt::Debug for ServiceTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceTls")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

/// Whether `cert` is valid for the DNS name `name`.
fn names(cert: &CertificateDer<'_>, name: String) -> bool {
    let Ok(name) = ServerName::try_from(name) else {
        return false;
    };
    webpki::EndEntityCert::try_from(cert)
        .is_ok_and(|ee| ee.verify_is_valid_for_subject_name(&name).is_ok())
}

/// A client's side of TLS on the nodes' client ports: the CA, and the client's (or operator's)
/// certificate and key. Cheap to clone.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
    cluster: u64,
    settings: Arc<PeerTls>,
}

/// The server name a client gives when it does not know which node an address serves: its
/// verifier then takes the certificate of any node of its cluster.
fn any_node(cluster: u64) -> String {
    format!("any-node.cluster-{cluster}.zeroraft")
}

impl ClientTls {
    /// A client of cluster `cluster` holding `settings`: the CA's certificate and the client's
    /// own certificate chain and key (one of [`client_name`] or [`admin_name`]).
    ///
    /// # Errors
    ///
    /// [`TlsError`] if the certificates or key cannot be used.
    pub fn new(settings: &PeerTls, cluster: u64) -> Result<Self, TlsError> {
        let provider = provider();
        let inner = WebPkiServerVerifier::builder_with_provider(roots(settings)?, provider.clone())
            .build()
            .map_err(|e| TlsError::new(format!("the CA certificate: {e}")))?;
        let verifier = Arc::new(NodeVerifier { inner, cluster });
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::new(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(settings.chain.clone(), settings.key.clone_key())
            .map_err(|e| TlsError::new(format!("the client certificate or key: {e}")))?;
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Self {
            config: Arc::new(config),
            cluster,
            settings: Arc::new(settings.clone()),
        })
    }

    /// The cluster whose nodes this client trusts.
    pub fn cluster(&self) -> u64 {
        self.cluster
    }

    /// Runs the client's side of the handshake on `stream`, connected to node `node` (whose
    /// certificate must name it) or, with `None`, to some node of the cluster, by `deadline`.
    ///
    /// # Errors
    ///
    /// The socket's error; `TimedOut` past the deadline; `InvalidData` if the handshake fails
    /// (the server's certificate is not a node's of this cluster and CA, or the server refused
    /// this client's).
    pub fn connect(
        &self,
        stream: TcpStream,
        node: Option<NodeId>,
        deadline: Instant,
    ) -> io::Result<TlsStream> {
        let name = match node {
            Some(id) => node_name(self.cluster, id),
            None => any_node(self.cluster),
        };
        let name = ServerName::try_from(name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut conn = ClientConnection::new(self.config.clone(), name)
            .map(rustls::Connection::from)
            .map_err(io::Error::other)?;
        handshake(&mut conn, &stream, deadline)?;
        TlsStream::new(stream, conn)
    }
}

impl PartialEq for ClientTls {
    fn eq(&self, other: &Self) -> bool {
        self.cluster == other.cluster && self.settings == other.settings
    }
}

impl Eq for ClientTls {}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

/// Checks a server's certificate as the standard verifier does, against the name of the node
/// dialed; for [`any_node`], against the name of each node of the cluster in turn.
#[derive(Debug)]
struct NodeVerifier {
    inner: Arc<WebPkiServerVerifier>,
    cluster: u64,
}

impl ServerCertVerifier for NodeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let wanted = ServerName::try_from(any_node(self.cluster))
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        if *server_name != wanted {
            return self.inner.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp,
                now,
            );
        }
        // The chain, validity and key usage, checked against node 0's name: a failure for the
        // name alone means all else passed.
        let first = ServerName::try_from(node_name(self.cluster, 0))
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, &first, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => {
                if (1..crate::MAX_NODES).any(|id| names(end_entity, node_name(self.cluster, id))) {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(rustls::Error::InvalidCertificate(
                        CertificateError::NotValidForName,
                    ))
                }
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Runs the TLS handshake of `conn` on `stream` to its end by `deadline`, then clears the
/// socket's timeouts (the caller sets its own).
fn handshake(
    conn: &mut rustls::Connection,
    stream: &TcpStream,
    deadline: Instant,
) -> io::Result<()> {
    let mut timed = Timed { stream, deadline };
    let done = super::tls::handshake(conn, &mut timed).map_err(|e| {
        if e.kind() == io::ErrorKind::WouldBlock {
            io::Error::new(
                io::ErrorKind::TimedOut,
                "the TLS handshake's deadline passed",
            )
        } else {
            e
        }
    });
    if done.is_err() {
        // Tell the other side why, if the session has an alert for it (best effort).
        let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
        let mut out = Vec::new();
        while conn.wants_write() && conn.write_tls(&mut out).is_ok_and(|n| n > 0) {}
        let _ = (&mut &*stream).write_all(&out);
    }
    done?;
    stream.set_read_timeout(None)?;
    stream.set_write_timeout(None)?;
    Ok(())
}

/// Ciphertext read from the socket that the session has not taken yet.
struct Incoming {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

/// A TLS session over a TCP stream, after its handshake: plaintext in (`Read` on `&TlsStream`)
/// and out (`Write` on `&TlsStream`), by one reading thread and one writing thread at once.
/// The session is behind a `Mutex` held only to encrypt or decrypt in memory; the socket is
/// read and written outside it, through a ciphertext buffer of each direction, reused.
pub struct TlsStream {
    tcp: TcpStream,
    conn: Mutex<rustls::Connection>,
    /// The reader's: ciphertext read and not yet decrypted.
    incoming: Mutex<Incoming>,
    /// The writer's: ciphertext sealed, to be written (cleared and reused).
    outgoing: Mutex<Vec<u8>>,
}

/// Bytes of ciphertext one read of the socket asks for.
const CIPHER_READ: usize = 64 << 10;

impl TlsStream {
    fn new(tcp: TcpStream, conn: rustls::Connection) -> io::Result<Self> {
        Ok(Self {
            tcp,
            conn: Mutex::new(conn),
            incoming: Mutex::new(Incoming {
                buf: vec![0; CIPHER_READ].into_boxed_slice(),
                start: 0,
                end: 0,
            }),
            outgoing: Mutex::new(Vec::new()),
        })
    }

    /// The TCP stream underneath (to set options, or to shut it down from another thread).
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// The timeout of each read of the socket from now on.
    ///
    /// # Errors
    ///
    /// The socket's.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp.set_read_timeout(timeout)
    }

    /// The timeout of each write to the socket from now on.
    ///
    /// # Errors
    ///
    /// The socket's.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp.set_write_timeout(timeout)
    }

    /// The address of the other end.
    ///
    /// # Errors
    ///
    /// The socket's.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.peer_addr()
    }

    /// Shuts the socket down (the session's close is not sent: the other side sees the stream
    /// end).
    ///
    /// # Errors
    ///
    /// The socket's.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.tcp.shutdown(how)
    }
}

impl fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsStream")
            .field("tcp", &self.tcp)
            .finish_non_exhaustive()
    }
}

fn invalid(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl Read for &TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut incoming = lock(&self.incoming);
        loop {
            {
                let mut conn = lock(&self.conn);
                match conn.reader().read(buf) {
                    // 0: the other side closed the session.
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // The stream ended without the session's close: the end of the stream for
                    // the protocol above, whose frames carry their length, so that one cut
                    // short is still an error there (a client that exits between requests
                    // need not close its session first).
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(e),
                }
                if incoming.start < incoming.end {
                    let Incoming { buf, start, end } = &mut *incoming;
                    let mut cipher = &buf[*start..*end];
                    let n = conn.read_tls(&mut cipher)?;
                    *start += n;
                    conn.process_new_packets().map_err(invalid)?;
                    continue;
                }
            }
            // Outside the session's lock: the writer may seal meanwhile.
            let n = (&self.tcp).read(&mut incoming.buf)?;
            (incoming.start, incoming.end) = (0, n);
            if n == 0 {
                // End of stream: the session says whether it was closed properly.
                let mut conn = lock(&self.conn);
                conn.read_tls(&mut &[][..])?;
                conn.process_new_packets().map_err(invalid)?;
            }
        }
    }
}

impl Write for &TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut outgoing = lock(&self.outgoing);
        outgoing.clear();
        let n = {
            let mut conn = lock(&self.conn);
            let n = conn.writer().write(buf)?;
            while conn.wants_write() {
                conn.write_tls(&mut *outgoing)?;
            }
            n
        };
        (&self.tcp).write_all(&outgoing)?;
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WriteZero.into());
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Each write sends everything it sealed.
        Ok(())
    }
}
