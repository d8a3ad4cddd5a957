//! Scenario parameters drawn from a run's seed, swarm-style: every seed picks its own cluster
//! size, timing, network quality, which kinds of fault may happen and how often, and how hard the
//! clients push, so that different seeds stress different mixes rather than one average.

use std::fmt;

use zeroraft_engine::core::{Backtrack, CoreConfig, Nanos};

use super::{Options, Quality, TICK};

const MS: Nanos = 1_000_000;

/// The parameters of one run.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Cluster size: 3, 5 or 7, unless [`Options::nodes`] fixed it.
    pub nodes: usize,
    /// Timing and flow control of every core.
    pub core: CoreConfig,
    /// Length of the fault phase, in ticks of [`TICK`].
    pub fault_ticks: u64,
    /// Loss, delay and duplication of the fault phase.
    pub net: Quality,
    /// Whether faults may split the cluster in two (symmetric partitions).
    pub partitions: bool,
    /// Whether faults may cut single links in one direction.
    pub one_way_cuts: bool,
    /// Whether faults may isolate the current leader.
    pub isolate_leader: bool,
    /// Mean time between two fault changes.
    pub fault_interval: Nanos,
    /// Number of clients.
    pub clients: usize,
    /// Mean time between two proposals of one client.
    pub propose_interval: Nanos,
    /// Most commands a client proposes at once.
    pub batch_max: usize,
}

impl Scenario {
    /// Draws a scenario from `rng`, honouring the overrides in `options`.
    pub fn draw(rng: &mut fastrand::Rng, options: &Options) -> Self {
        let nodes = options.nodes.unwrap_or_else(|| [3, 5, 7][rng.usize(..3)]);
        let election_timeout_min = rng.u64(100..=300) * MS;
        let core = CoreConfig {
            heartbeat_interval: election_timeout_min / rng.u64(3..=6),
            election_timeout_min,
            // A third of the seeds randomize timeouts over a narrow range: candidates often
            // campaign together and split the vote, so elections are many and contested.
            election_timeout_max: if rng.u8(..3) == 0 {
                election_timeout_min + election_timeout_min / rng.u64(5..=10)
            } else {
                election_timeout_min * 2
            },
            // Small limits half of the time, so that batching and the in-flight window are
            // exercised, not just one message per proposal.
            max_append_entries: if rng.bool() { rng.usize(1..=8) } else { 64 },
            max_append_bytes: 1 << 20,
            max_inflight: if rng.bool() { rng.usize(1..=4) } else { 64 },
            commit_notify_delay: MS * rng.u64(0..=5),
            // A third of the seeds check followers against the other correct way to back up
            // over a conflicting term, which re-sends entries they hold.
            backtrack: if rng.u8(..3) == 0 {
                Backtrack::FollowerTerm
            } else {
                Backtrack::LeaderTerm
            },
            max_snapshot_chunk: 1 << 20,
        };
        let fault_ticks = options
            .fault_ticks
            .unwrap_or_else(|| rng.u64(2_000..=10_000));
        let drop = if rng.u8(..3) == 0 {
            0.0
        } else {
            rng.f64() * 0.3
        };
        let duplicate = if rng.bool() { 0.0 } else { rng.f64() * 0.1 };
        let delay_min = rng.u64(0..=2) * MS;
        // Mostly short delays; sometimes as long as two heartbeat intervals, or a round trip as
        // long as an election timeout (then votes and acknowledgements often arrive after the
        // next election began).
        let delay_max = delay_min
            + match rng.u8(..4) {
                0 => rng.u64(0..=core.election_timeout_min / 2),
                1 => rng.u64(0..=core.heartbeat_interval * 2),
                _ => rng.u64(0..=30 * MS),
            };
        // A tail of messages held back for up to a few election timeouts: they arrive terms
        // later, when their sender may lead again.
        let long_delay = if rng.bool() { 0.0 } else { rng.f64() * 0.2 };
        let long_delay_max = rng.u64(1..=4) * core.election_timeout_max;
        let late_reply = if rng.bool() { 0.0 } else { rng.f64() * 0.5 };
        // From a fault every quarter election timeout (leaders flap) to one every two.
        let fault_interval = core.election_timeout_max * rng.u64(1..=8) / 4;
        Self {
            nodes,
            fault_ticks,
            net: Quality {
                drop,
                duplicate,
                delay_min,
                delay_max,
                long_delay,
                long_delay_max,
                late_reply,
            },
            partitions: rng.bool(),
            one_way_cuts: rng.bool(),
            isolate_leader: rng.bool(),
            fault_interval,
            clients: rng.usize(1..=3),
            propose_interval: rng.u64(5..=200) * MS,
            batch_max: rng.usize(1..=3),
            core,
        }
    }

    /// Whether any kind of link fault may happen.
    pub fn has_link_faults(&self) -> bool {
        self.partitions || self.one_way_cuts || self.isolate_leader
    }

    /// When the heal phase must have converged, counted from its start: 50 election timeouts.
    pub fn convergence_limit(&self) -> Nanos {
        50 * self.core.election_timeout_max
    }

    /// The fault phase's length in nanoseconds.
    pub fn fault_phase(&self) -> Nanos {
        self.fault_ticks * TICK
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |t: Nanos| (t as f64 / MS as f64 * 10.0).round() / 10.0;
        write!(
            f,
            "{} nodes, {} fault ticks; heartbeat {} ms, election {}..{} ms, \
             append {} entries, window {}, backtrack {:?}; drop {:.3}, dup {:.3}, delay {}..{} ms, \
             long delay p {:.3} up to {} ms, late replies {:.3}; faults:{}{}{}{} every ~{} ms; \
             {} clients every ~{} ms, batches up to {}",
            self.nodes,
            self.fault_ticks,
            ms(self.core.heartbeat_interval),
            ms(self.core.election_timeout_min),
            ms(self.core.election_timeout_max),
            self.core.max_append_entries,
            self.core.max_inflight,
            self.core.backtrack,
            self.net.drop,
            self.net.duplicate,
            ms(self.net.delay_min),
            ms(self.net.delay_max),
            self.net.long_delay,
            ms(self.net.long_delay_max),
            self.net.late_reply,
            if self.partitions { " partitions" } else { "" },
            if self.one_way_cuts { " one-way" } else { "" },
            if self.isolate_leader {
                " isolate-leader"
            } else {
                ""
            },
            if self.has_link_faults() { "" } else { " none" },
            ms(self.fault_interval),
            self.clients,
            ms(self.propose_interval),
            self.batch_max,
        )
    }
}
