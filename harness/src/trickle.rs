//! Connections that send a few bytes and then one byte at a time, slowly: what a client or peer
//! that means to hold a server's resources does. For tests of accept paths and frame deadlines.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::thread::JoinHandle;
use std::time::Duration;

/// `count` connections to one address, each sending `prefix` and then `byte` once every
/// `pace`, all from one thread, until dropped. A connection the server closes (a read returns
/// end of file or an error, or a write fails) is counted and left alone.
#[derive(Debug)]
pub struct Trickle {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Trickle {
    /// Opens the connections and starts trickling.
    ///
    /// # Errors
    ///
    /// If a connection cannot be opened or set up, or the thread cannot start.
    pub fn start(
        addr: SocketAddr,
        count: usize,
        prefix: &[u8],
        byte: u8,
        pace: Duration,
    ) -> io::Result<Self> {
        let mut open = Vec::with_capacity(count);
        for _ in 0..count {
            let mut s = TcpStream::connect(addr)?;
            s.write_all(prefix)?;
            s.set_nonblocking(true)?;
            open.push(Some(s));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, rounds, closed) = (stop.clone(), rounds.clone(), closed.clone());
            std::thread::Builder::new()
                .name("trickle".into())
                .spawn(move || {
                    while !stop.load(SeqCst) {
                        for slot in &mut open {
                            let Some(s) = slot else { continue };
                            let mut answer = [0u8; 64];
                            let gone = match s.read(&mut answer) {
                                Ok(0) => true,
                                Ok(_) => false,
                                Err(e) => e.kind() != io::ErrorKind::WouldBlock,
                            };
                            if gone || s.write(&[byte]).is_err() {
                                *slot = None;
                                closed.fetch_add(1, SeqCst);
                            }
                        }
                        rounds.fetch_add(1, SeqCst);
                        std::thread::sleep(pace); // the trickle's pace
                    }
                })?
        };
        Ok(Self {
            stop,
            rounds,
            closed,
            thread: Some(thread),
        })
    }

    /// Rounds done: bytes sent on each connection still open, after the prefix.
    pub fn rounds(&self) -> usize {
        self.rounds.load(SeqCst)
    }

    /// Connections the server closed.
    pub fn closed(&self) -> usize {
        self.closed.load(SeqCst)
    }
}

impl Drop for Trickle {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
