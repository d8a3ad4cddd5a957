//! The 6.824 tester's suites, step for step with its constants (2A leader election, 2B
//! agreement, 2C persistence, 2D log compaction), and agreement on an unreliable network beyond
//! them, on in-process clusters of the harness. One test binary: the tests wait on election
//! timeouts and the tester's polling far more than on the CPU, so four of them run at once
//! whatever their suite (`cargo test --release --test tester snapshot_2d` runs one suite).

mod agreement_2b;
mod election_2a;
mod persist_2c;
mod snapshot_2d;
mod unreliable;
