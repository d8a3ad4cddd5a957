//! A replicated key-value service on the engine, in the shape of the 6.824 lab 3 service: a map
//! of byte strings changed by `Put` and `Append`, read by `Get`, each client request applied
//! at most once however often it is retried, answered `Ok` only if it was applied, and reads
//! that are linearizable.
//!
//! - [`session`]: client sessions, opened through the log, which make each request apply at
//!   most once and tell the client what became of it ([`SessionOptions`]).
//! - [`machine`]: the [`KvMachine`] that applies the commands committed in the log to the map
//!   and the sessions (and snapshots and restores them).
//! - [`KvState`]: what one node has applied, shared between its thread and its server.
//! - [`protocol`]: the client wire protocol (length-prefixed binary frames).
//! - [`KvServer`]: the protocol over TCP for one node; [`KvClient`]: the client library.
//! - [`serve`]: one node of the service in its own process, as `zeroraft serve` runs it.
//! - [`metrics`] and [`observe`]: the service's metrics, and the HTTP endpoint that serves
//!   them with the engine's in the Prometheus format, beside the health endpoints.
//!
//! One node with its server and a client:
//!
//! ```
//! use std::net::TcpListener;
//! use std::sync::Arc;
//! use zeroraft_engine::{Config, Network, Raft};
//! use zeroraft_kv::{ClientOptions, KvClient, KvServer, KvState, ServerOptions};
//! use zeroraft_transport::NetworkConfig;
//!
//! let network = Network::new(NetworkConfig::new(1)).unwrap();
//! network.connect(0);
//! let endpoint = network.endpoint(0, 1).unwrap();
//! let state = Arc::new(KvState::new());
//! let raft = Raft::builder(Config::production(), 0, 1, endpoint)
//!     .start_with_state_machine(state.machine())
//!     .unwrap();
//! let listener = TcpListener::bind("127.0.0.1:0").unwrap();
//! let server = KvServer::start(raft, state, listener, ServerOptions::default()).unwrap();
//!
//! // The client retries until the node has elected itself.
//! let mut client = KvClient::new(vec![server.local_addr()], ClientOptions::default());
//! client.put("greeting", "hello").unwrap();
//! client.append("greeting", ", world").unwrap();
//! assert_eq!(client.get("greeting").unwrap(), "hello, world");
//! assert_eq!(client.get("nothing").unwrap(), "");
//! ```

pub mod client;
mod command;
pub mod machine;
mod map;
pub mod members;
pub mod metrics;
pub mod observe;
pub mod protocol;
pub mod serve;
pub mod server;
pub mod session;
mod state;
mod store;
pub mod stream;

pub use client::{ClientOptions, KvClient, KvError};
pub use machine::KvMachine;
pub use server::{KvServer, ReadMode, ServerOptions};
pub use session::SessionOptions;
pub use state::KvState;
