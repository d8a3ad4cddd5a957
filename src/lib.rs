//! zeroraft: Raft (leader election and log replication, Figure 2 of the extended Raft paper) as a
//! lock-free, allocation-conscious engine, with a replicated key-value service on top of it.
//!
//! This crate gathers the public API of the workspace in one place; each part lives in a crate
//! of its own, re-exported here under a short name:
//!
//! - [`engine`] (`zeroraft-engine`): the [`Raft`] handle, its [`Config`], [`ApplyMsg`],
//!   [`Status`] and [`StateMachine`]; [`engine::core`] is the sans-IO state machine inside it.
//! - [`storage`] (`zeroraft-storage`): where a node keeps its term, vote and log: in memory
//!   ([`MemStorage`]) or in a crash-safe write-ahead log ([`FileStorage`]).
//! - [`transport`] (`zeroraft-transport`): the in-memory [`Network`] with its fault model, and
//!   the TCP transport.
//! - [`kv`] (`zeroraft-kv`): a replicated key-value service on the engine, its client protocol,
//!   server and client, and the node that `zeroraft serve` runs.
//! - [`monitor`] (`zeroraft-monitor`): the live terminal dashboard.
//!
//! The testing tools are crates of their own, not part of this API: `zeroraft-harness` (the
//! 6.824 tester's cluster, load drivers, the linearizability checker) and `zeroraft-sim` (the
//! deterministic simulator). ARCHITECTURE.md at the repository's root is the map.
//!
//! Embedding a three-node cluster and committing one command:
//!
//! ```
//! use bytes::Bytes;
//! use zeroraft::{Config, Network, NetworkConfig, Raft};
//!
//! let n = 3;
//! let network = Network::new(NetworkConfig::new(n)).expect("valid network");
//! let (apply_tx, apply_rx) = crossbeam_channel::unbounded();
//! let nodes: Vec<Raft> = (0..n)
//!     .map(|i| {
//!         let endpoint = network.endpoint(i, 42).expect("id in range");
//!         let config = Config { seed: Some(42), ..Config::default() };
//!         Raft::new(config, i, n, endpoint, apply_tx.clone()).expect("valid config")
//!     })
//!     .collect();
//! (0..n).for_each(|i| network.connect(i));
//!
//! // Propose until some node accepts as leader (the first election takes a few hundred ms).
//! let (index, term) = loop {
//!     if let Some(ok) = nodes.iter().find_map(|r| r.try_start(Bytes::from("x = 1")).ok()) {
//!         break ok;
//!     }
//!     std::thread::sleep(std::time::Duration::from_millis(20));
//! };
//! // Every node applies it, in log order, on the channel given to it.
//! for _ in 0..n {
//!     let msg = apply_rx.recv().expect("applied");
//!     assert_eq!((msg.index(), msg.term()), (index, term));
//!     assert_eq!(msg.command().map(|c| &c[..]), Some(&b"x = 1"[..]));
//! }
//! ```

#![forbid(unsafe_code)]

pub use zeroraft_engine as engine;
pub use zeroraft_engine::{
    ApplyMsg, BuildError, Compaction, Config, ConfigError, Endpoint, Network, NodeFailure,
    PeerStatus, PendingRead, Raft, ReadError, RestoreError, Role, SnapshotView, StartError,
    StateMachine, Status, TransferError, WeakRaft,
};
pub use zeroraft_kv as kv;
pub use zeroraft_monitor as monitor;
pub use zeroraft_storage as storage;
pub use zeroraft_storage::{FileStorage, MemStorage, Storage};
pub use zeroraft_transport as transport;
pub use zeroraft_transport::NetworkConfig;

/// Compiles and runs the Rust examples in README.md as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// Compiles and runs the Rust examples in docs/embedding.md as doctests.
#[doc = include_str!("../docs/embedding.md")]
#[cfg(doctest)]
pub struct DocsEmbedding;

/// Compiles and runs the Rust examples in docs/durability.md as doctests.
#[doc = include_str!("../docs/durability.md")]
#[cfg(doctest)]
pub struct DocsDurability;

/// Compiles and runs the Rust examples in docs/serve.md as doctests.
#[doc = include_str!("../docs/serve.md")]
#[cfg(doctest)]
pub struct DocsServe;

/// Compiles and runs the Rust examples in docs/metrics.md as doctests.
#[doc = include_str!("../docs/metrics.md")]
#[cfg(doctest)]
pub struct DocsMetrics;

/// Compiles and runs the Rust examples in docs/dashboard.md as doctests.
#[doc = include_str!("../docs/dashboard.md")]
#[cfg(doctest)]
pub struct DocsDashboard;

/// Compiles and runs the Rust examples in docs/testing.md as doctests.
#[doc = include_str!("../docs/testing.md")]
#[cfg(doctest)]
pub struct DocsTesting;

/// Compiles and runs the Rust examples in docs/performance.md as doctests.
#[doc = include_str!("../docs/performance.md")]
#[cfg(doctest)]
pub struct DocsPerformance;
