//! [`Stream`]: a connection of the client protocol, plaintext or TLS, as both the server and
//! the client see it once it is set up.
//!
//! `&Stream` reads and writes, so that one thread can read requests while another writes
//! answers (the server's connections do); with TLS the session underneath is shared as
//! [`TlsStream`] says.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use zeroraft_transport::tcp::{ClientTls, TlsStream};

use crate::protocol::ReadTimeout;

/// A client protocol connection: plaintext, or TLS.
#[derive(Debug)]
pub enum Stream {
    /// Plaintext TCP (a server started without TLS).
    Plain(TcpStream),
    /// Mutual TLS.
    Tls(Box<TlsStream>),
}

impl Stream {
    /// Connects to `addr` within `timeout`, and with `tls` runs the TLS handshake within the
    /// same time, checking that the server is node `node` (or any node of the cluster, with
    /// `None`). Sets `TCP_NODELAY`.
    ///
    /// # Errors
    ///
    /// The connection's or the handshake's.
    pub fn connect(
        addr: &SocketAddr,
        node: Option<usize>,
        tls: Option<&ClientTls>,
        timeout: Duration,
    ) -> io::Result<Self> {
        let deadline = Instant::now() + timeout;
        let tcp = TcpStream::connect_timeout(addr, timeout)?;
        tcp.set_nodelay(true)?;
        match tls {
            None => Ok(Self::Plain(tcp)),
            Some(tls) => Ok(Self::Tls(Box::new(tls.connect(tcp, node, deadline)?))),
        }
    }

    /// The TCP stream underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            Self::Tls(s) => s.tcp(),
        }
    }

    /// The timeout of each read from now on.
    ///
    /// # Errors
    ///
    /// The socket's.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp().set_read_timeout(timeout)
    }

    /// The timeout of each write from now on.
    ///
    /// # Errors
    ///
    /// The socket's.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp().set_write_timeout(timeout)
    }

    /// The address of the other end.
    ///
    /// # Errors
    ///
    /// The socket's.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().peer_addr()
    }

    /// Shuts the connection down.
    ///
    /// # Errors
    ///
    /// The socket's.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.tcp().shutdown(how)
    }
}

impl Read for &Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => (&*s).read(buf),
            Stream::Tls(s) => (&**s).read(buf),
        }
    }
}

impl Write for &Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => (&*s).write(buf),
            Stream::Tls(s) => (&**s).write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => (&*s).flush(),
            Stream::Tls(s) => (&**s).flush(),
        }
    }
}

impl ReadTimeout for &Stream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        Stream::set_read_timeout(self, timeout)
    }
}
