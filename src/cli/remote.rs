//! [`RemoteCluster`]: the dashboard's [`Control`] over a cluster of `zeroraft serve` processes,
//! reached through their client ports (what `zeroraft monitor --connect` shows).
//!
//! One poller thread per node asks it for its status ([`Request::Status`]) every
//! [`RemoteOptions::poll_interval`], over a connection it keeps open, with short timeouts
//! ([`RemoteOptions::timeout`]): a node that does not answer holds up its own poller only. Each
//! poller keeps its node's latest reading in a slot of its own, and [`Control::sample`] reads the
//! slots: it never waits for the network.
//!
//! - A node that cannot be reached (refused, reset, no answer in time) is shown down: its last
//!   status, marked killed (or, if it was never reached, a status with nothing but its id),
//!   and its links down. It is shown up again once it answers: a restarted process counts from
//!   zero, as the dashboard expects of a restarted node.
//! - A node that answers with another id than its place in the list of addresses is shown
//!   failed, the failure naming the mix-up.
//! - A link from node `i` to node `j` is up when `i`'s transport says it is connected to `j`.
//!   The network's totals are the messages and bytes the nodes' transports sent, summed over
//!   the latest reading of each node.
//! - There is no client load: the load sample is empty.
//!
//! Only leadership transfer can be done from here ([`Control::supports`]): the links, the
//! network's faults, the load and the nodes' lives belong to the processes and the machines
//! they run on. The other commands do nothing.
//!
//! # Locks
//!
//! Each slot is a `Mutex`, taken by its poller to store a reading (every 100 ms by default)
//! and by [`Control::sample`] to copy it (an `Arc` and a short vector): a cold path, held for
//! a copy, never across I/O.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use zeroraft_monitor::{ActionKind, Control, LoadSample, NetworkSample, Rate, Sample};

use zeroraft_engine::Status;
use zeroraft_kv::client::call;
use zeroraft_kv::protocol::{NodeStatus, Request, Response};
use zeroraft_kv::stream::Stream;
use zeroraft_kv::{ClientOptions, KvClient};
use zeroraft_transport::tcp::{ClientTls, LinkStats};

/// How a [`RemoteCluster`] reads the nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteOptions {
    /// How often each node is asked for its status. Default 100 ms.
    pub poll_interval: Duration,
    /// How long connecting to a node, or waiting for its answer, may take before it is shown
    /// down. Default 500 ms.
    pub timeout: Duration,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(100),
            timeout: Duration::from_millis(500),
        }
    }
}

/// A cluster of `zeroraft serve` processes, watched over their client ports. See the
/// [module docs](self).
pub struct RemoteCluster {
    /// `addrs[i]`: where node `i` serves clients.
    addrs: Vec<SocketAddr>,
    options: RemoteOptions,
    /// Mutual TLS to the nodes, or `None` for plaintext.
    tls: Option<ClientTls>,
    /// The latest reading of each node, by id.
    slots: Arc<[Mutex<Reading>]>,
    /// Dropped to stop the pollers, which wait on it between polls.
    stop: Option<Sender<()>>,
    pollers: Vec<JoinHandle<()>>,
}

/// What is known of one node.
#[derive(Clone, Debug)]
struct Reading {
    /// Its latest status; marked killed while it cannot be reached.
    status: Arc<Status>,
    /// Its transport's links, by node id, as it last reported them; empty if its server does
    /// not report them.
    links: Vec<LinkStats>,
    /// Whether it answered the latest poll.
    up: bool,
}

impl RemoteCluster {
    /// Starts watching the nodes whose client addresses are `addrs`, node `i` at `addrs[i]`,
    /// over TLS with `tls` (the full status and leadership transfer need the operator's
    /// certificate). Returns once every node was asked once (and answered, or did not in time),
    /// so that the first sample shows what could be read.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] without addresses; the error of starting a poller
    /// thread.
    pub fn connect(
        addrs: Vec<SocketAddr>,
        options: RemoteOptions,
        tls: Option<ClientTls>,
    ) -> io::Result<Self> {
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a cluster needs at least one node address",
            ));
        }
        let slots: Arc<[Mutex<Reading>]> = (0..addrs.len())
            .map(|i| {
                Mutex::new(Reading {
                    status: Arc::new(initial_status(i)),
                    links: Vec::new(),
                    up: false,
                })
            })
            .collect();
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let (polled, first_polls) = crossbeam_channel::bounded::<()>(addrs.len());
        let mut cluster = Self {
            addrs,
            options,
            tls,
            slots,
            stop: Some(stop),
            pollers: Vec::new(),
        };
        for (i, &addr) in cluster.addrs.iter().enumerate() {
            let poller = Poller {
                id: i,
                addr,
                options,
                tls: cluster.tls.clone(),
                slots: Arc::clone(&cluster.slots),
                stopped: stopped.clone(),
                polled: Some(polled.clone()),
            };
            let handle = std::thread::Builder::new()
                .name(format!("remote-poll-{i}"))
                .spawn(move || poller.run())?;
            cluster.pollers.push(handle);
        }
        // Every poller's first poll ends within two timeouts (connecting, then the answer).
        let deadline = Instant::now() + options.timeout * 2 + Duration::from_secs(1);
        for _ in 0..cluster.addrs.len() {
            if first_polls.recv_deadline(deadline).is_err() {
                break;
            }
        }
        Ok(cluster)
    }

    /// Whether node `node` answered its latest poll.
    #[cfg(test)]
    pub fn is_reachable(&self, node: usize) -> bool {
        self.slots.get(node).is_some_and(|slot| lock(slot).up)
    }
}

impl Drop for RemoteCluster {
    fn drop(&mut self) {
        drop(self.stop.take());
        for poller in self.pollers.drain(..) {
            if poller.join().is_err() {
                tracing::warn!("a status poller panicked");
            }
        }
    }
}

impl std::fmt::Debug for RemoteCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteCluster")
            .field("addrs", &self.addrs)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One node's poller: asks the node for its status on a fixed tick and keeps the answer.
struct Poller {
    id: usize,
    addr: SocketAddr,
    options: RemoteOptions,
    tls: Option<ClientTls>,
    slots: Arc<[Mutex<Reading>]>,
    /// Disconnected when the cluster is dropped.
    stopped: Receiver<()>,
    /// Told once, after the first poll.
    polled: Option<Sender<()>>,
}

impl Poller {
    fn run(mut self) {
        let mut frame = Vec::new();
        if let Err(e) = Request::Status.encode(&mut frame) {
            tracing::warn!(error = %e, "cannot encode a status request");
            return;
        }
        let mut connection = None;
        loop {
            let started = Instant::now();
            let answer = self.ask(&mut connection, &frame);
            self.store(answer);
            if let Some(polled) = self.polled.take() {
                let _ = polled.send(());
            }
            let wait = self.options.poll_interval.saturating_sub(started.elapsed());
            match self.stopped.recv_timeout(wait) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// The node's status, over `connection` if one is open, else (or if it was closed since:
    /// the node restarted, say) over a new one, which is kept for the next poll.
    fn ask(&self, connection: &mut Option<Stream>, frame: &[u8]) -> Result<NodeStatus, String> {
        if let Some(stream) = connection.take() {
            match call(&stream, frame) {
                Ok(Response::Status(status)) => {
                    *connection = Some(stream);
                    return Ok(status);
                }
                Ok(other) => return Err(format!("answered {other:?} to a status request")),
                // A node that does not answer in time is not asked again at once.
                Err(e) if is_timeout(&e) => return Err(e.to_string()),
                Err(_) => {}
            }
        }
        let timeout = self.options.timeout.max(Duration::from_millis(1));
        // Any node of the cluster: one at another place in the list is shown as the mix-up it
        // is, below, rather than as unreachable.
        let stream = Stream::connect(&self.addr, None, self.tls.as_ref(), timeout)
            .map_err(|e| e.to_string())?;
        let answer = stream
            .set_read_timeout(Some(timeout))
            .and_then(|()| stream.set_write_timeout(Some(timeout)))
            .and_then(|()| call(&stream, frame))
            .map_err(|e| e.to_string())?;
        match answer {
            Response::Status(status) => {
                *connection = Some(stream);
                Ok(status)
            }
            other => Err(format!("answered {other:?} to a status request")),
        }
    }

    /// Keeps what the poll found in the node's slot.
    fn store(&self, answer: Result<NodeStatus, String>) {
        let slot = &self.slots[self.id];
        let status = match answer {
            Ok(status) => status,
            Err(why) => {
                tracing::debug!(node = self.id, addr = %self.addr, why, "node unreachable");
                let mut reading = lock(slot);
                if !reading.status.killed {
                    let mut down = (*reading.status).clone();
                    down.killed = true;
                    reading.status = Arc::new(down);
                }
                reading.up = false;
                return;
            }
        };
        let (mut status, links) = match status.full {
            Some(full) => (full.status, full.links),
            // A server that sends the compact fields only (an older version).
            None => (
                Status {
                    role: status.role,
                    term: status.term,
                    leader: status.leader.and_then(|l| usize::try_from(l).ok()),
                    commit_index: status.commit_index,
                    last_applied: status.last_applied,
                    last_log_index: status.last_log_index,
                    durable_index: status.last_log_index,
                    ..initial_status(self.id)
                },
                Vec::new(),
            ),
        };
        let mut up = true;
        if status.id != self.id {
            // The dashboard indexes nodes by id: show the mix-up on this node, under its place.
            status.failure = Some(
                format!(
                    "{} is the client address of node {}, not of node {}: --connect lists the \
                     nodes' client addresses in id order",
                    self.addr, status.id, self.id
                )
                .into(),
            );
            status.id = self.id;
            status.killed = true;
            status.peers.clear();
            up = false;
        }
        *lock(slot) = Reading {
            status: Arc::new(status),
            links,
            up,
        };
    }
}

/// What is known of node `id` before it answered: its id, and that it is not up.
fn initial_status(id: usize) -> Status {
    Status {
        killed: true,
        ..Status::initial(id)
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

impl Control for RemoteCluster {
    fn nodes(&self) -> usize {
        self.addrs.len()
    }

    fn sample(&self) -> Sample {
        let readings: Vec<Reading> = self.slots.iter().map(|slot| lock(slot).clone()).collect();
        let n = readings.len();
        let mut links = vec![false; n * n];
        let mut network = NetworkSample::default();
        for (from, reading) in readings.iter().enumerate() {
            for to in 0..n {
                // A server that does not report its links has them taken as up while it
                // answers: nothing says otherwise.
                links[from * n + to] = from == to
                    || (reading.up
                        && (reading.links.is_empty()
                            || reading.links.get(to).is_some_and(|l| l.connected)));
            }
            for link in &reading.links {
                network.rpc_total += link.sent;
                network.bytes_total += link.bytes_sent;
            }
        }
        Sample {
            statuses: readings.into_iter().map(|r| r.status).collect(),
            links,
            network,
            load: LoadSample {
                rate: Rate::PerSecond(0),
                ..LoadSample::default()
            },
        }
    }

    fn connect(&self, node: usize) {
        tracing::debug!(node, "cannot connect a node of a remote cluster");
    }

    fn disconnect(&self, node: usize) {
        tracing::debug!(node, "cannot disconnect a node of a remote cluster");
    }

    fn partition(&self, _groups: &[Vec<usize>]) {
        tracing::debug!("cannot split the network of a remote cluster");
    }

    fn set_unreliable(&self, _on: bool) {
        tracing::debug!("cannot change the network of a remote cluster");
    }

    fn set_long_reordering(&self, _on: bool) {
        tracing::debug!("cannot change the network of a remote cluster");
    }

    fn set_rate(&self, _rate: Rate) {
        tracing::debug!("a remote cluster has no load to set");
    }

    fn crash(&self, node: usize) {
        tracing::debug!(node, "cannot crash a node of a remote cluster");
    }

    fn restart(&self, _node: usize) -> Result<(), String> {
        Err("not available on a remote cluster".to_owned())
    }

    fn transfer_leadership(&self, leader: usize, target: usize) -> Result<(), String> {
        let addr = *self
            .addrs
            .get(leader)
            .ok_or_else(|| format!("no node {leader}"))?;
        let client = KvClient::new(
            self.addrs.clone(),
            ClientOptions {
                connect_timeout: self.options.timeout,
                attempt_timeout: self.options.timeout * 2,
                tls: self.tls.clone(),
                ..ClientOptions::default()
            },
        );
        client
            .transfer_leadership(addr, target)
            .map_err(|e| e.to_string())
    }

    fn supports(&self, action: ActionKind) -> bool {
        action == ActionKind::TransferLeadership
    }
}

#[cfg(test)]
mod tests;
