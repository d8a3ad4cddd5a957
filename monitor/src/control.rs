//! What the dashboard can ask of a cluster: the [`Control`] trait, the [`Sample`] it reads each
//! refresh, and the client load [`Rate`].
//!
//! The dashboard never holds a node, a network or a load generator itself: whoever embeds it
//! implements [`Control`] over whatever runs the cluster. A sample must be cheap and must not
//! block the nodes: engine statuses are published snapshots (`Arc<Status>`), the rest are
//! counters.
//!
//! A node is *down* when its status says it was killed: crashed from the dashboard
//! ([`Control::crash`]) or stopped on its own after a storage failure (`Status::failure`). Its
//! status stays the last one its incarnation published until [`Control::restart`] starts a new
//! incarnation, whose counters (messages, elections, storage writes) count from zero again.
//!
//! Not every cluster can do everything: one whose nodes run in other processes cannot cut their
//! links or crash them from here. [`Control::supports`] says which commands a cluster carries
//! out ([`ActionKind`]); the dashboard offers only those.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use zeroraft_engine::Status;

/// The commands a dashboard sends to a running cluster, and the one way it reads it.
pub trait Control {
    /// Number of nodes; node ids are `0..nodes()`.
    fn nodes(&self) -> usize;
    /// Everything the dashboard shows, read now.
    fn sample(&self) -> Sample;
    /// Connects node `node` to every connected node.
    fn connect(&self, node: usize);
    /// Cuts node `node` off from every other node.
    fn disconnect(&self, node: usize);
    /// Splits the network into `groups`: links inside a group up, links across groups down.
    fn partition(&self, groups: &[Vec<usize>]);
    /// Switches between the reliable and the unreliable network.
    fn set_unreliable(&self, on: bool);
    /// Turns long reordering of replies on or off.
    fn set_long_reordering(&self, on: bool);
    /// Sets the client load's proposal rate.
    fn set_rate(&self, rate: Rate);
    /// Crashes node `node`: cuts it off and kills it, keeping what it persisted. Does nothing
    /// more to a node that is down.
    fn crash(&self, node: usize);
    /// Starts a new incarnation of node `node` from what it persisted (crashing it first if it
    /// is up), **not connected**: the dashboard connects it next.
    ///
    /// # Errors
    ///
    /// Why the node could not be started from its storage; it stays down.
    fn restart(&self, node: usize) -> Result<(), String>;
    /// Asks node `leader`, which leads, to hand its leadership to node `target`.
    ///
    /// # Errors
    ///
    /// Why the leader did not take the request (it no longer leads, say).
    fn transfer_leadership(&self, leader: usize, target: usize) -> Result<(), String>;
    /// Whether this cluster carries out the command `action` names. The dashboard does not offer
    /// what a cluster does not support: it leaves it out of its help and footer, answers its key
    /// with a line in the event log, and never calls it. Every command, unless overridden.
    fn supports(&self, action: ActionKind) -> bool {
        let _ = action;
        true
    }
}

/// One of the commands of [`Control`] that change a cluster, to ask whether a cluster supports
/// it ([`Control::supports`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActionKind {
    /// [`Control::connect`].
    Connect,
    /// [`Control::disconnect`].
    Disconnect,
    /// [`Control::partition`].
    Partition,
    /// [`Control::set_unreliable`].
    SetUnreliable,
    /// [`Control::set_long_reordering`].
    SetLongReordering,
    /// [`Control::set_rate`].
    SetRate,
    /// [`Control::crash`].
    Crash,
    /// [`Control::restart`].
    Restart,
    /// [`Control::transfer_leadership`].
    TransferLeadership,
}

impl ActionKind {
    /// Every kind, in declaration order.
    pub const ALL: [Self; 9] = [
        Self::Connect,
        Self::Disconnect,
        Self::Partition,
        Self::SetUnreliable,
        Self::SetLongReordering,
        Self::SetRate,
        Self::Crash,
        Self::Restart,
        Self::TransferLeadership,
    ];
}

/// One reading of a cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The latest published status of each node, indexed by node id.
    pub statuses: Vec<Arc<Status>>,
    /// `links[from * n + to]`: whether a message from `from` to `to` can pass, for the `n` nodes
    /// of `statuses`.
    pub links: Vec<bool>,
    /// The network's fault settings and counters.
    pub network: NetworkSample,
    /// The client load's settings and measurements.
    pub load: LoadSample,
}

/// The network part of a [`Sample`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetworkSample {
    /// Whether requests are delayed and messages dropped.
    pub unreliable: bool,
    /// Whether replies may be held back for a long time.
    pub long_reordering: bool,
    /// Requests handed to the network since it was created.
    pub rpc_total: u64,
    /// Wire bytes of requests sent and replies delivered since the network was created.
    pub bytes_total: u64,
}

/// The client load part of a [`Sample`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadSample {
    /// The proposal rate the clients aim at.
    pub rate: Rate,
    /// Commands the clients proposed and a leader accepted.
    pub proposed: u64,
    /// Of those, commands seen committed (applied by a first node).
    pub committed: u64,
    /// Commit latency (proposal to first apply) over the last few seconds.
    pub recent: Latency,
    /// Commit latency since the load started.
    pub overall: Latency,
}

/// Commit latency percentiles of a set of commands; `None` when there were none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Latency {
    /// Median.
    pub p50: Option<Duration>,
    /// 99th percentile.
    pub p99: Option<Duration>,
}

/// How fast the client load proposes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rate {
    /// About this many proposals per second, over all clients.
    PerSecond(u64),
    /// As fast as the cluster commits, within the clients' in-flight window.
    Unlimited,
}

impl Default for Rate {
    fn default() -> Self {
        Self::PerSecond(10_000)
    }
}

/// The rates `+` and `-` step through, below [`Rate::Unlimited`].
const LADDER: [u64; 13] = [
    100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000,
    1_000_000,
];

impl Rate {
    /// The next step up: 1-2-5 steps from 100/s to 1 M/s, then unlimited.
    pub fn raised(self) -> Self {
        match self {
            Self::PerSecond(r) => LADDER
                .iter()
                .find(|&&step| step > r)
                .map_or(Self::Unlimited, |&step| Self::PerSecond(step)),
            Self::Unlimited => Self::Unlimited,
        }
    }

    /// The next step down: from unlimited to 1 M/s, then 1-2-5 steps down to 100/s, the floor.
    pub fn lowered(self) -> Self {
        let below = |r: u64| LADDER.iter().rev().find(|&&step| step < r).copied();
        match self {
            Self::Unlimited => Self::PerSecond(LADDER[LADDER.len() - 1]),
            Self::PerSecond(r) => Self::PerSecond(below(r).unwrap_or(LADDER[0].min(r))),
        }
    }

    /// Parses `unlimited` or a positive number of proposals per second (`20000`, `20k`, `1M`).
    ///
    /// # Errors
    ///
    /// A message saying what was expected.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "expected a positive rate such as 5000, 20k or 1M, or `unlimited`, got `{text}`"
            )
        };
        if text.eq_ignore_ascii_case("unlimited") || text == "max" {
            return Ok(Self::Unlimited);
        }
        let (digits, scale) = match text.as_bytes().last() {
            Some(b'k' | b'K') => (&text[..text.len() - 1], 1_000),
            Some(b'm' | b'M') => (&text[..text.len() - 1], 1_000_000),
            _ => (text, 1),
        };
        let value: u64 = digits.parse().map_err(|_| bad())?;
        match value.checked_mul(scale) {
            Some(rate) if rate > 0 => Ok(Self::PerSecond(rate)),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Unlimited => write!(f, "unlimited"),
            Self::PerSecond(r) if r >= 1_000_000 && r % 1_000_000 == 0 => {
                write!(f, "{}M/s", r / 1_000_000)
            }
            Self::PerSecond(r) if r >= 1_000 && r % 1_000 == 0 => write!(f, "{}k/s", r / 1_000),
            Self::PerSecond(r) => write!(f, "{r}/s"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_steps_up_and_down_the_ladder() {
        let cases = [
            (
                Rate::PerSecond(100),
                Rate::PerSecond(200),
                Rate::PerSecond(100),
            ),
            (
                Rate::PerSecond(10_000),
                Rate::PerSecond(20_000),
                Rate::PerSecond(5_000),
            ),
            (
                Rate::PerSecond(7_000),
                Rate::PerSecond(10_000),
                Rate::PerSecond(5_000),
            ),
            (
                Rate::PerSecond(1_000_000),
                Rate::Unlimited,
                Rate::PerSecond(500_000),
            ),
            (
                Rate::PerSecond(50),
                Rate::PerSecond(100),
                Rate::PerSecond(50),
            ),
            (Rate::Unlimited, Rate::Unlimited, Rate::PerSecond(1_000_000)),
        ];
        for (case, (rate, up, down)) in cases.into_iter().enumerate() {
            assert_eq!(rate.raised(), up, "case {case}: raised");
            assert_eq!(rate.lowered(), down, "case {case}: lowered");
        }
    }

    #[test]
    fn rate_parses_and_shows() {
        let cases = [
            ("5000", Ok(Rate::PerSecond(5_000)), "5k/s"),
            ("20k", Ok(Rate::PerSecond(20_000)), "20k/s"),
            ("1M", Ok(Rate::PerSecond(1_000_000)), "1M/s"),
            ("750", Ok(Rate::PerSecond(750)), "750/s"),
            ("unlimited", Ok(Rate::Unlimited), "unlimited"),
        ];
        for (case, (text, parsed, shown)) in cases.into_iter().enumerate() {
            let rate = Rate::parse(text);
            assert_eq!(rate, parsed, "case {case}");
            assert_eq!(rate.unwrap().to_string(), shown, "case {case}");
        }
        for text in ["", "0", "-5", "fast", "k", "99999999999999999999M"] {
            assert!(Rate::parse(text).is_err(), "`{text}` should not parse");
        }
    }
}
