//! zeroraft-monitor: a live terminal dashboard for a zeroraft cluster.
//!
//! It shows each node's role, what it is in the cluster's configuration (voter, learner,
//! joining or leaving while joint, or not a member) and the configuration itself, term, indices (committed, last and durable), snapshot index and
//! log length, storage writes and traffic; the leader's replication progress, including the
//! followers it is sending a snapshot to; committed entries per second and commit latency; the
//! network's faults; and an event log of elections, leader changes, crashes, restarts, failures
//! and snapshots installed. From the keyboard one can cut nodes off, split the network, make it
//! unreliable, crash a node and start it again from its storage, and change the client load,
//! then watch the cluster react. A cluster that cannot do some of this (one of processes
//! watched over the network, say) says so ([`Control::supports`]), and the dashboard offers only
//! the rest.
//!
//! The crate is state + pure rendering + an event loop:
//! - [`Control`] is what the dashboard asks of a cluster; the embedding program implements it.
//! - [`App`] holds what the dashboard knows and interprets keys, without a terminal or a clock.
//! - [`ui`] renders an [`App`] into a ratatui buffer (`impl Widget for &App`).
//! - [`run`] drives all of it in a terminal; [`run_headless`] prints summary lines instead.

#![forbid(unsafe_code)]

pub mod app;
pub mod control;
mod run;
pub mod ui;

pub use app::{Action, App, Event, EventKind, Reach, SyncRate};
pub use control::{ActionKind, Control, Latency, LoadSample, NetworkSample, Rate, Sample};
pub use run::{REFRESH, run, run_headless};
