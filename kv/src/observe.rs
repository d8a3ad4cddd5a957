//! What `zeroraft serve --metrics ADDR` serves over HTTP: `/metrics` in the Prometheus text
//! exposition format, and the health endpoints `/healthz` and `/readyz`.
//!
//! The metrics are those of the engine ([`zeroraft_engine::metrics`]) and of the service
//! ([`crate::metrics`]), recorded by `metrics-exporter-prometheus`'s recorder, which
//! [`recorder`] installs once per process, before any node starts (a node registers its
//! handles when it starts). The exposition is the exporter's own rendering.
//!
//! - `/healthz` (liveness): 200 while the node runs, 503 once it stopped (a failed disk, a
//!   panic): the process should be restarted.
//! - `/readyz` (readiness): 200 once the node knows a leader and has applied every entry that
//!   was committed when it first learned of one, and for as long as it knows a leader; 503
//!   otherwise: while it starts and catches up, and when it is cut off from a majority (it
//!   then loses its leader within an election timeout).
//!
//! One thread serves the requests, one at a time (they are cheap), and keeps the readiness
//! state current between them.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use zeroraft_engine::Raft;
use zeroraft_transport::tcp::LinkStats;

use crate::metrics::LinkMetrics;

/// Bucket bounds of the latency histograms (`_seconds`): 50 µs to 10 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];
/// Bucket bounds of the batch size histograms (`_entries`): powers of 4 up to 65 536.
const ENTRIES_BUCKETS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0,
];
/// How often the recorder's histograms are folded into their buckets when nobody scrapes.
const UPKEEP: Duration = Duration::from_secs(5);
/// How often the endpoint's thread looks at the node between requests.
const POLL: Duration = Duration::from_millis(50);

/// The process's Prometheus recorder: installed on the first call (with the metrics'
/// descriptions and a thread that keeps its histograms compact), the same handle after.
///
/// # Errors
///
/// If another recorder was installed in this process first.
pub fn recorder() -> Result<PrometheusHandle, String> {
    static RECORDER: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    RECORDER.get_or_init(install).clone()
}

fn install() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_entries".into()), ENTRIES_BUCKETS))
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    zeroraft_engine::metrics::describe(zeroraft_engine::metrics::METRICS);
    zeroraft_engine::metrics::describe(crate::metrics::METRICS);
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("zeroraft-metrics".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP); // the recorder's upkeep is periodic by nature
                upkeep.run_upkeep();
            }
        })
        .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
    Ok(handle)
}

/// Whether a node is ready for clients: see the [module docs](self).
#[derive(Debug, Default)]
struct Readiness {
    /// The commit index the node knew when it first learned of a leader.
    caught_up_to: Option<u64>,
}

impl Readiness {
    fn ready(&mut self, raft: &Raft) -> bool {
        let status = raft.status();
        if status.killed || status.leader.is_none() {
            return false;
        }
        let target = *self.caught_up_to.get_or_insert(status.commit_index);
        status.last_applied >= target
    }
}

/// The node's metrics and health endpoints over HTTP: see the [module docs](self).
pub struct ObserveServer {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ObserveServer {
    /// Serves the metrics (rendered by `handle`) and health of node `raft`, one of `nodes`, on
    /// `listener`; the counters of its link to node `peer` are read with `link(peer)` at each
    /// scrape.
    ///
    /// # Errors
    ///
    /// If the listener's address cannot be read or the thread cannot be started.
    pub fn start(
        listener: TcpListener,
        handle: PrometheusHandle,
        raft: Raft,
        nodes: usize,
        link: impl Fn(usize) -> LinkStats + Send + 'static,
    ) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let server = tiny_http::Server::from_listener(listener, None).map_err(io::Error::other)?;
        let stopping = Arc::new(AtomicBool::new(false));
        let links = LinkMetrics::new(raft.id(), nodes);
        let thread = {
            let stopping = stopping.clone();
            std::thread::Builder::new()
                .name(format!("zeroraft-observe-{}", raft.id()))
                .spawn(move || {
                    let mut readiness = Readiness::default();
                    while !stopping.load(Ordering::Acquire) {
                        let ready = readiness.ready(&raft);
                        let request = match server.recv_timeout(POLL) {
                            Ok(Some(request)) => request,
                            Ok(None) => continue,
                            Err(e) => {
                                tracing::warn!(error = %e, "the metrics endpoint stopped");
                                return;
                            }
                        };
                        let (code, body, content_type) = match request.url() {
                            "/metrics" => {
                                links.update(&link);
                                (200, handle.render(), "text/plain; version=0.0.4")
                            }
                            "/healthz" if raft.is_killed() => (503, "stopped\n".into(), TEXT),
                            "/healthz" => (200, "ok\n".into(), TEXT),
                            "/readyz" if ready => (200, "ready\n".into(), TEXT),
                            "/readyz" => (503, "not ready\n".into(), TEXT),
                            _ => (
                                404,
                                "not found: try /metrics, /healthz, /readyz\n".into(),
                                TEXT,
                            ),
                        };
                        let header = tiny_http::Header::from_bytes("Content-Type", content_type)
                            .expect("a valid header");
                        let response = tiny_http::Response::from_string(body)
                            .with_status_code(code)
                            .with_header(header);
                        if let Err(e) = request.respond(response) {
                            tracing::debug!(error = %e, "cannot answer a metrics request");
                        }
                    }
                })?
        };
        Ok(Self {
            addr,
            stopping,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and joins the thread.
    pub fn shutdown(&mut self) {
        self.stopping.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::warn!("the metrics endpoint's thread panicked");
        }
    }
}

impl Drop for ObserveServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

const TEXT: &str = "text/plain; charset=utf-8";
