//! zeroraft: Raft (leader election and log replication, Figure 2 of the extended Raft paper) as a
//! lock-free, allocation-conscious engine, an in-memory network that misbehaves on purpose, and a
//! test harness that reproduces the 6.824 Raft tester.
//!
//! - [`engine`]: the [`Raft`] handle, its [`Config`], [`ApplyMsg`] and [`Status`].
//! - [`transport`]: the in-memory [`Network`] and its fault model.
//! - [`cluster`]: [`cluster::Cluster`], N nodes on one network with the tester's checks.
//! - [`kv`]: a replicated key-value service on the engine, its TCP protocol, server and client.
//! - [`serve`]: one node of that service in its own process; [`remote`]: the dashboard's view
//!   of a cluster of such processes.
//! - [`linearizability`]: a linearizability checker for the histories of a key-value service.
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

pub mod bench;
pub mod cluster;
pub mod kv;
pub mod linearizability;
pub mod remote;
pub mod serve;
pub mod sim;

pub use zeroraft_engine as engine;
pub use zeroraft_engine::{
    ApplyMsg, Compaction, Config, ConfigError, Endpoint, Network, PeerStatus, PendingRead, Raft,
    ReadError, Role, StartError, StateMachine, Status, TransferError, WeakRaft,
};
pub use zeroraft_transport as transport;
pub use zeroraft_transport::NetworkConfig;

/// Compiles and runs the Rust examples in README.md as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
