//! Load on a running key-value service over its client protocol: what `zeroraft bench
//! --connect` measures.
//!
//! [`run`] opens connections to the leader and keeps a fixed number of `Put`s in flight
//! over them, pipelined: each connection opens a session, then writes as many requests as
//! answers it has just read, in one system call, so the window stays full without a thread per
//! request. Requests of a session are numbered in order, and each acknowledges every request
//! answered before it was written (the answers come in order): a connection keeps at most
//! [`MAX_UNACKNOWLEDGED`] in flight, and more connections are opened if the window needs them.
//! It counts the acknowledged puts and times each from its write to its answer. [`loopback_rtt`] measures the
//! round trip of a small message over TCP on loopback, the floor under any one-client latency.
//!
//! With [`Options::tls`] every connection is mutual TLS, as the servers were started with.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;

use zeroraft_engine::Role;
use zeroraft_kv::protocol::{self, MAX_FRAME, MAX_UNACKNOWLEDGED, Request, Response};
use zeroraft_kv::stream::Stream;
use zeroraft_kv::{ClientOptions, KvClient, KvError};
use zeroraft_transport::tcp::ClientTls;

/// How [`run`] loads the service.
#[derive(Clone, Debug)]
pub struct Options {
    /// Puts kept in flight, over all connections. At least 1.
    pub in_flight: usize,
    /// Connections to the leader; the window is split between them. At least 1, and as many
    /// as it takes for each to keep at most [`MAX_UNACKNOWLEDGED`] in flight.
    pub connections: usize,
    /// Bytes of each put's value.
    pub payload: usize,
    /// How long to load.
    pub duration: Duration,
    /// Distinct keys written (key `k<i>` for `i` below this). At least 1.
    pub keys: usize,
    /// Mutual TLS to the servers, or `None` for plaintext: as they were started.
    pub tls: Option<ClientTls>,
}

/// What [`run`] measured.
#[derive(Debug)]
pub struct Report {
    /// Puts acknowledged.
    pub commits: u64,
    /// Puts answered with anything but success (the leader changed, say).
    pub refused: u64,
    /// How long the load ran.
    pub elapsed: Duration,
    /// CPU time of this (the client's) process over the run.
    pub client_cpu: Duration,
    /// Latency from a put's write to its answer, in nanoseconds.
    pub latency: hdrhistogram::Histogram<u64>,
}

impl Report {
    /// Acknowledged puts per second.
    pub fn rate(&self) -> f64 {
        self.commits as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The latency quantile `q` (0 to 1), in microseconds.
    pub fn latency_us(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1e3
    }
}

/// Finds the node that leads, by asking each node's status (over TLS with `tls`).
///
/// # Errors
///
/// [`KvError::Timeout`] if no node says it leads within `patience`.
pub fn find_leader(
    addrs: &[SocketAddr],
    tls: Option<&ClientTls>,
    patience: Duration,
) -> Result<usize, KvError> {
    let options = ClientOptions {
        tls: tls.cloned(),
        ..ClientOptions::default()
    };
    let client = KvClient::new(addrs.to_vec(), options);
    let until = Instant::now() + patience;
    loop {
        for (i, &addr) in addrs.iter().enumerate() {
            if client.status(addr).is_ok_and(|s| s.role == Role::Leader) {
                return Ok(i);
            }
        }
        if Instant::now() >= until {
            return Err(KvError::Timeout);
        }
        std::thread::sleep(Duration::from_millis(50)); // waiting for an election
    }
}

/// Loads the service at `addrs` with puts, as `options` says, calling `progress` about once a
/// second with the puts acknowledged so far and the time elapsed (a `Break` ends the run early).
///
/// # Errors
///
/// [`KvError::Timeout`] if no leader is found, [`KvError::Io`] if the leader cannot be reached,
/// [`KvError::NotLeader`] if it no longer leads when its sessions are opened.
pub fn run(
    addrs: &[SocketAddr],
    options: &Options,
    mut progress: impl FnMut(u64, Duration) -> ControlFlow<()>,
) -> Result<Report, KvError> {
    let leader = find_leader(addrs, options.tls.as_ref(), Duration::from_secs(10))?;
    let most = usize::try_from(MAX_UNACKNOWLEDGED).unwrap_or(usize::MAX);
    let connections = options
        .connections
        .clamp(1, options.in_flight.max(1))
        .max(options.in_flight.div_ceil(most));
    let streams = (0..connections)
        .map(|_| {
            let s = Stream::connect(
                &addrs[leader],
                Some(leader),
                options.tls.as_ref(),
                Duration::from_secs(2),
            )
            .and_then(|s| {
                s.set_read_timeout(Some(Duration::from_secs(10)))?;
                Ok(s)
            })
            .map_err(KvError::Io)?;
            let session = register(&s)?;
            Ok((s, session))
        })
        .collect::<Result<Vec<_>, KvError>>()?;
    let stop = Arc::new(AtomicBool::new(false));
    let commits = Arc::new(AtomicU64::new(0));
    let value = Bytes::from(vec![b'v'; options.payload]);
    let started = Instant::now();
    let cpu0 = cpu_time::ProcessTime::now();
    let workers: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(c, (stream, session))| {
            let window =
                options.in_flight / connections + usize::from(c < options.in_flight % connections);
            let (stop, commits, value, keys) = (
                stop.clone(),
                commits.clone(),
                value.clone(),
                options.keys.max(1),
            );
            std::thread::spawn(move || {
                pipeline(
                    stream,
                    session,
                    window.max(1),
                    keys,
                    &value,
                    &stop,
                    &commits,
                )
            })
        })
        .collect();
    let mut next = started + Duration::from_secs(1);
    while started.elapsed() < options.duration {
        std::thread::sleep(
            next.saturating_duration_since(Instant::now())
                .min(options.duration.saturating_sub(started.elapsed())),
        );
        if Instant::now() >= next {
            if progress(commits.load(Relaxed), started.elapsed()).is_break() {
                break;
            }
            next += Duration::from_secs(1);
        }
    }
    stop.store(true, Relaxed);
    let elapsed = started.elapsed();
    let mut latency = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
        .expect("valid bounds");
    let mut refused = 0;
    for w in workers {
        let (hist, r) = w
            .join()
            .map_err(|_| KvError::Protocol("a load thread panicked".into()))??;
        latency.add(hist).expect("same bounds");
        refused += r;
    }
    Ok(Report {
        commits: commits.load(Relaxed),
        refused,
        elapsed,
        client_cpu: cpu0.elapsed(),
        latency,
    })
}

/// One connection's share of the load: keeps `window` puts of `session` in flight until `stop`,
/// then drains what is still under way. Returns the latencies and the number of refused puts.
fn pipeline(
    stream: Stream,
    session: u64,
    window: usize,
    keys: usize,
    value: &Bytes,
    stop: &AtomicBool,
    commits: &AtomicU64,
) -> Result<(hdrhistogram::Histogram<u64>, u64), KvError> {
    let mut latency = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
        .expect("valid bounds");
    let keys: Vec<Bytes> = (0..keys).map(|k| Bytes::from(format!("k{k}"))).collect();
    let mut sent_at = std::collections::VecDeque::with_capacity(window);
    let mut seq = 0u64;
    // Every request up to `answered` has its answer: the next ones acknowledge them.
    let mut answered = 0u64;
    let mut out = Vec::new();
    let mut reader = protocol::FrameReader::new(&stream, MAX_FRAME);
    let mut writer = &stream;
    let mut refused = 0;
    let mut to_send = window;
    loop {
        if stop.load(Relaxed) {
            to_send = 0;
        }
        out.clear();
        for _ in 0..to_send {
            seq += 1;
            Request::Put {
                session,
                seq,
                ack: answered + 1,
                key: keys[(seq % keys.len() as u64) as usize].clone(),
                value: value.clone(),
            }
            .encode(&mut out)
            .map_err(KvError::TooLarge)?;
        }
        if !out.is_empty() {
            let now = Instant::now();
            sent_at.extend(std::iter::repeat_n(now, to_send));
            writer.write_all(&out).map_err(KvError::Io)?;
        }
        if sent_at.is_empty() {
            return Ok((latency, refused));
        }
        // Read one answer, then every answer already buffered: as many new puts go out.
        to_send = 0;
        loop {
            let body = reader
                .next_frame()
                .map_err(|e| KvError::Protocol(e.to_string()))?
                .ok_or_else(|| KvError::Io(io::ErrorKind::UnexpectedEof.into()))?;
            let t0 = sent_at.pop_front().expect("an answer to a request sent");
            answered += 1;
            // From the write that sent it to the read that brought its answer (one clock
            // reading per read, not per answer).
            let took = reader.read_at().saturating_duration_since(t0);
            latency.saturating_record(took.as_nanos() as u64);
            match Response::decode(body).map_err(|e| KvError::Protocol(e.to_string()))? {
                Response::Ok { .. } => {
                    commits.fetch_add(1, Relaxed);
                }
                _ => refused += 1,
            }
            to_send += 1;
            if reader.buffered() < 4 {
                break;
            }
        }
    }
}

/// Opens a session over `stream`, before any other request on it.
fn register(stream: &Stream) -> Result<u64, KvError> {
    let mut frame = Vec::new();
    Request::Register
        .encode(&mut frame)
        .map_err(KvError::TooLarge)?;
    match zeroraft_kv::client::call(stream, &frame).map_err(KvError::Io)? {
        Response::Registered { session } => Ok(session),
        Response::WrongLeader { leader } => Err(KvError::NotLeader { leader }),
        other => Err(KvError::Protocol(format!(
            "{other:?} to a register request"
        ))),
    }
}

/// The median round trip of a 16-byte message over TCP on loopback, over `samples` round
/// trips between this thread and an echoing one.
///
/// # Errors
///
/// If loopback cannot be listened on or connected to.
pub fn loopback_rtt(samples: usize) -> io::Result<Duration> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = [0u8; 16];
        while s.read_exact(&mut buf).is_ok() {
            s.write_all(&buf)?;
        }
        Ok(())
    });
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let mut times = Vec::with_capacity(samples);
    let mut buf = [7u8; 16];
    for _ in 0..samples.max(1) {
        let t0 = Instant::now();
        s.write_all(&buf)?;
        s.read_exact(&mut buf)?;
        times.push(t0.elapsed());
    }
    drop(s);
    let _ = echo.join();
    times.sort_unstable();
    Ok(times[times.len() / 2])
}
