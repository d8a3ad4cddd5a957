//! Tools for testing and measuring zeroraft: the 6.824 tester's cluster, load drivers, and a
//! linearizability checker. Not part of the engine's API: tests, benchmarks, examples and the
//! `zeroraft` command use it.
//!
//! - [`cluster`]: [`cluster::Cluster`], N engine nodes on one in-memory network with the fault
//!   controls and checks of the 6.824 Raft tester (its `config.go`).
//! - [`load`]: load drivers that measure cost: [`load::LoadCluster`] keeps proposals in flight to
//!   an in-process cluster; [`load::remote`] keeps `Put`s in flight to a running key-value
//!   service over its client protocol.
//! - [`linearizability`]: a checker of recorded client histories of a key-value service.
//! - [`scale`]: how large the long test variants run (`ZERORAFT_LONG=1` for the full size).
//! - [`trickle`]: [`trickle::Trickle`], connections that send a byte now and then, to hold a
//!   server's resources.

#![forbid(unsafe_code)]

pub mod cluster;
pub mod linearizability;
pub mod load;
pub mod scale;
pub mod trickle;
