//! The system as its users run it: the public API, the CLI, `serve` processes killed, cut off,
//! restarted and changing members (checked by the linearizability checker), TLS, metrics and
//! the dashboard's definitions, and clusters over TCP. One test binary: most tests wait on
//! processes and timers rather than the CPU, so four of them run at once whatever their module
//! (`cargo test --release --test system linearizability` runs one module).
//!
//! Tests that measure their own process (its allocations, threads, CPU time or resident memory)
//! have test binaries of their own, beside this directory.

mod support;

mod api;
mod cli;
mod client_tls;
mod durability;
mod grafana;
mod headless;
mod kv;
mod linearizability;
mod membership;
mod membership_restart;
mod metrics;
mod operator;
mod processes;
mod production;
mod reads;
mod snapshot_view;
mod tcp;
