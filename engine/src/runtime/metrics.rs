//! How a node's thread reports its metrics ([`crate::metrics`]) and carries its identity in
//! its logs.
//!
//! Handles are registered once, when the node starts, with the recorder installed then (a
//! no-op one if none is). Counts are kept where they arise, in plain fields of the node or in
//! its [`Status`]; [`NodeMetrics`] hands them to the recorder at most every
//! [`PUBLISH_EVERY`] and at once when the node's role, term or leader changes: counters as
//! absolute values (a recorder keeps the largest it was given), gauges as set values.
//!
//! A node's thread runs up to hundreds of thousands of rounds a second under load, each with
//! a write, an apply batch and AppendEntries: recording every one would cost more than the
//! rest of the bookkeeping together. So the batch sizes (apply, AppendEntries) and the time of
//! writes made on the node's own thread pass a [`Gate`]: one event in [`SAMPLE_ONE_IN`], and
//! any event at least [`SAMPLE_EVERY`] after the last recorded, so that a light load records
//! nearly all and a heavy one a fixed share, chosen by count rather than by what the event
//! holds. Writes made on a writer thread, which wait for a disk and are far fewer, are
//! recorded each, and so are snapshots and reads. Commit latency is sampled, one entry at a
//! time. Nothing here allocates after the node started.
//!
//! The node's thread runs inside a `tracing` span named `node` with the fields `node`, `term`
//! and `role`, updated when they change, so that every event it logs carries them.

use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

use crate::metrics as names;
use crate::{MemberRole, MembershipStatus, NodeFailure, Role, Status};

/// Longest time between two hand-overs of the counts to the recorder, in nanoseconds.
const PUBLISH_EVERY: u64 = 5_000_000;
/// A [`Gate`] opens for the first event at least this long after the last it let through,
/// in nanoseconds...
const SAMPLE_EVERY: u64 = 1_000_000;
/// ...and for every this many events.
const SAMPLE_ONE_IN: u32 = 64;

/// The name of a role, as labels and logs show it.
pub(crate) fn role_name(role: Role) -> &'static str {
    match role {
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::Leader => "leader",
    }
}

const ROLES: [Role; 3] = [Role::Follower, Role::Candidate, Role::Leader];

/// What a node can be in a configuration, as `zeroraft_member` labels it (not being a member is
/// every gauge at 0).
const MEMBER_ROLES: [MemberRole; 4] = [
    MemberRole::Voter,
    MemberRole::Joining,
    MemberRole::Leaving,
    MemberRole::Learner,
];

fn node_label(node: usize) -> [(&'static str, String); 1] {
    [("node", node.to_string())]
}

/// The counters that callers of [`crate::Raft::try_start`] raise on their own threads (a
/// refusal is not on the hot path).
pub(super) struct Refusals {
    /// The leader's queue was full.
    pub(super) busy: Counter,
    /// This node does not lead.
    pub(super) not_leader: Counter,
}

impl Refusals {
    pub(super) fn new(node: usize) -> Self {
        let refused = |reason: &'static str| counter!(names::PROPOSALS_REFUSED, "node" => node.to_string(), "reason" => reason);
        Self {
            busy: refused("busy"),
            not_leader: refused("not_leader"),
        }
    }
}

/// Which events of a frequent kind are recorded: see the [module docs](self).
#[derive(Debug, Default)]
pub(super) struct Gate {
    /// Events since the last one recorded.
    skipped: u32,
    /// When an event is next recorded whatever the count, on the node's clock (nanoseconds).
    next: u64,
}

impl Gate {
    /// Whether the event happening at `now` is recorded.
    pub(super) fn open(&mut self, now: u64) -> bool {
        self.skipped += 1;
        let open = self.skipped >= SAMPLE_ONE_IN || now >= self.next;
        if open {
            self.skipped = 0;
            self.next = now + SAMPLE_EVERY;
        }
        open
    }
}

/// The histograms the node's I/O feeds as it goes.
pub(super) struct Histograms {
    pub(super) wal_write: Histogram,
    pub(super) wal_fdatasync: Histogram,
    pub(super) apply_batch: Histogram,
    pub(super) append_batch: Histogram,
    pub(super) snapshot_create: Histogram,
    pub(super) snapshot_install: Histogram,
    /// Read latency, for reads asked through ReadIndex (`[0]`) and under the lease (`[1]`).
    pub(super) read: [Histogram; 2],
    /// The gates of the frequent events: in-thread writes, apply batches, AppendEntries.
    pub(super) gates: [Gate; 3],
}

impl Histograms {
    pub(super) fn new(node: usize) -> Self {
        let labels = node_label(node);
        let read = |mode: &'static str| histogram!(names::READ_LATENCY, "node" => node.to_string(), "mode" => mode);
        Self {
            wal_write: histogram!(names::WAL_WRITE, &labels),
            wal_fdatasync: histogram!(names::WAL_FDATASYNC, &labels),
            apply_batch: histogram!(names::APPLY_BATCH, &labels),
            append_batch: histogram!(names::APPEND_BATCH, &labels),
            snapshot_create: histogram!(names::SNAPSHOT_CREATE, &labels),
            snapshot_install: histogram!(names::SNAPSHOT_INSTALL, &labels),
            read: [read("index"), read("lease")],
            gates: Default::default(),
        }
    }

    /// Records a storage write that took `took`, of which `synced` in `fdatasync`.
    pub(super) fn written(&self, took: Duration, synced: Duration) {
        self.wal_write.record(took);
        if !synced.is_zero() {
            self.wal_fdatasync.record(synced);
        }
    }

    /// Records a read asked at `asked` (under the lease if `lease`), answered now.
    pub(super) fn read_answered(&self, asked: Instant, lease: bool) {
        self.read[usize::from(lease)].record(asked.elapsed());
    }
}

/// Counts the node's I/O keeps that are not in its [`Status`].
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct IoCounts {
    /// Entries applied since the node started.
    pub(super) applied: u64,
    /// Snapshots it started sending.
    pub(super) snapshots_sent: u64,
}

/// The leader's gauges for one follower.
struct Follower {
    match_index: Gauge,
    lag: Gauge,
}

/// What the node's thread reports: see the [module docs](self).
pub(super) struct NodeMetrics {
    span: tracing::Span,
    /// When the counts are next handed over at the latest, on the node's clock (nanoseconds).
    next_publish: u64,
    /// Role, term and leader as last handed over (and recorded on the span).
    role: Role,
    term: u64,
    leader: Option<usize>,
    leader_changes: u64,
    /// Whether the per-follower gauges hold a leader's values.
    leading: bool,
    /// The commit latency sample under way: the last index of a batch, and when it was
    /// appended.
    sample: Option<(u64, Instant)>,
    commit_latency: Histogram,
    elections_started: Counter,
    elections_won: Counter,
    leader_changes_total: Counter,
    step_downs: Counter,
    applied: Counter,
    reads: [Counter; 2],
    transfers_started: Counter,
    transfers_abandoned: Counter,
    snapshots_sent: Counter,
    snapshots_installed: Counter,
    messages_sent: Counter,
    messages_received: Counter,
    writes: Counter,
    term_gauge: Gauge,
    roles: [Gauge; 3],
    leader_gauge: Gauge,
    commit_index: Gauge,
    applied_index: Gauge,
    durable_index: Gauge,
    snapshot_index: Gauge,
    last_log_index: Gauge,
    log_entries: Gauge,
    log_bytes: Gauge,
    proposals_queued: Gauge,
    storage_failed: Gauge,
    /// The configuration as last handed over.
    membership: Option<MembershipStatus>,
    members: [Gauge; 4],
    config_index: Gauge,
    config_committed: Gauge,
    config_joint: Gauge,
    config_voters: Gauge,
    /// By peer id; `None` for this node and for a peer never seen as a follower: a gauge is
    /// registered the first time this node leads the peer, so that a node built for many ids
    /// (a cluster that may grow) reports its members only.
    followers: Vec<Option<Follower>>,
    /// This node's id, and as the label of followers' gauges registered later.
    node: usize,
    id: String,
}

impl NodeMetrics {
    /// Node `node` of `peers`, starting in `term` as a follower.
    pub(super) fn new(node: usize, peers: usize, term: u64) -> Self {
        let labels = node_label(node);
        let c = |name: &'static str| counter!(name, &labels);
        let g = |name: &'static str| gauge!(name, &labels);
        let id = node.to_string();
        let span = tracing::info_span!("node", node, term, role = role_name(Role::Follower));
        let metrics = Self {
            span,
            next_publish: 0,
            role: Role::Follower,
            term,
            leader: None,
            leader_changes: 0,
            leading: false,
            sample: None,
            commit_latency: histogram!(names::COMMIT_LATENCY, &labels),
            elections_started: c(names::ELECTIONS_STARTED),
            elections_won: c(names::ELECTIONS_WON),
            leader_changes_total: c(names::LEADER_CHANGES),
            step_downs: c(names::STEP_DOWNS),
            applied: c(names::ENTRIES_APPLIED),
            reads: ["index", "lease"]
                .map(|mode| counter!(names::READS, "node" => id.clone(), "mode" => mode)),
            transfers_started: c(names::TRANSFERS_STARTED),
            transfers_abandoned: c(names::TRANSFERS_ABANDONED),
            snapshots_sent: c(names::SNAPSHOTS_SENT),
            snapshots_installed: c(names::SNAPSHOTS_INSTALLED),
            messages_sent: c(names::MESSAGES_SENT),
            messages_received: c(names::MESSAGES_RECEIVED),
            writes: c(names::WAL_WRITES),
            term_gauge: g(names::TERM),
            roles: ROLES.map(|r| gauge!(names::ROLE, "node" => id.clone(), "role" => role_name(r))),
            leader_gauge: g(names::LEADER),
            commit_index: g(names::COMMIT_INDEX),
            applied_index: g(names::APPLIED_INDEX),
            durable_index: g(names::DURABLE_INDEX),
            snapshot_index: g(names::SNAPSHOT_INDEX),
            last_log_index: g(names::LAST_LOG_INDEX),
            log_entries: g(names::LOG_ENTRIES),
            log_bytes: g(names::LOG_BYTES),
            proposals_queued: g(names::PROPOSALS_QUEUED),
            storage_failed: g(names::STORAGE_FAILED),
            membership: None,
            members: MEMBER_ROLES
                .map(|r| gauge!(names::MEMBER, "node" => id.clone(), "role" => r.name())),
            config_index: g(names::CONFIG_INDEX),
            config_committed: g(names::CONFIG_COMMITTED),
            config_joint: g(names::CONFIG_JOINT),
            config_voters: g(names::CONFIG_VOTERS),
            followers: (0..peers).map(|_| None).collect(),
            node,
            id,
        };
        metrics.storage_failed.set(0.0);
        metrics
    }

    /// The span the node's thread runs in.
    pub(super) fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Starts a commit latency sample for the batch the leader just appended up to `last`,
    /// unless one is under way.
    pub(super) fn appended(&mut self, last: u64) {
        if self.sample.is_none() {
            self.sample = Some((last, Instant::now()));
        }
    }

    /// Whether the counts are due to be handed over at `now` (nanoseconds on the node's clock)
    /// for a node whose fresh status is `status`. Ends the commit latency sample that `status`
    /// shows applied.
    pub(super) fn due(&mut self, now: u64, status: &Status) -> bool {
        if let Some((index, appended)) = self.sample {
            if status.role != Role::Leader {
                self.sample = None;
            } else if status.last_applied >= index {
                self.commit_latency.record(appended.elapsed());
                self.sample = None;
            }
        }
        now >= self.next_publish
            || status.role != self.role
            || status.term != self.term
            || status.leader != self.leader
    }

    /// Hands the counts of `status`, `io` and the proposals queued to the recorder.
    pub(super) fn publish(&mut self, now: u64, status: &Status, io: IoCounts, queued: usize) {
        self.next_publish = now + PUBLISH_EVERY;
        if status.role != self.role || status.term != self.term {
            self.span.record("term", status.term);
            self.span.record("role", role_name(status.role));
            for (gauge, role) in self.roles.iter().zip(ROLES) {
                gauge.set(if role == status.role { 1.0 } else { 0.0 });
            }
            self.role = status.role;
            self.term = status.term;
        }
        if status.leader != self.leader {
            if status.leader.is_some() {
                self.leader_changes += 1;
                self.leader_changes_total.absolute(self.leader_changes);
            }
            self.leader = status.leader;
            self.leader_gauge
                .set(status.leader.map_or(-1.0, |l| l as f64));
        }
        self.elections_started.absolute(status.elections_started);
        self.elections_won.absolute(status.elections_won);
        self.step_downs.absolute(status.step_downs);
        self.applied.absolute(io.applied);
        self.reads[0].absolute(status.reads_confirmed - status.lease_reads);
        self.reads[1].absolute(status.lease_reads);
        self.transfers_started.absolute(status.transfers_started);
        self.transfers_abandoned
            .absolute(status.transfers_abandoned);
        self.snapshots_sent.absolute(io.snapshots_sent);
        self.snapshots_installed
            .absolute(status.snapshots_installed);
        self.messages_sent.absolute(status.messages_out);
        self.messages_received.absolute(status.messages_in);
        self.writes.absolute(status.syncs);
        self.term_gauge.set(status.term as f64);
        self.commit_index.set(status.commit_index as f64);
        self.applied_index.set(status.last_applied as f64);
        self.durable_index.set(status.durable_index as f64);
        self.snapshot_index.set(status.snapshot_index as f64);
        self.last_log_index.set(status.last_log_index as f64);
        self.log_entries.set(status.log_entries as f64);
        self.log_bytes.set(status.log_bytes as f64);
        self.proposals_queued.set(queued as f64);
        if status.membership != self.membership
            && let Some(config) = status.membership
        {
            let role = config.role_of(status.id);
            for (gauge, r) in self.members.iter().zip(MEMBER_ROLES) {
                gauge.set(if r == role { 1.0 } else { 0.0 });
            }
            self.config_index.set(config.index as f64);
            self.config_committed
                .set(f64::from(u8::from(config.committed)));
            self.config_joint
                .set(f64::from(u8::from(config.membership.is_joint())));
            self.config_voters
                .set(config.membership.voters().count() as f64);
            self.membership = Some(config);
        }
        if !status.peers.is_empty() || self.leading {
            // A node that stopped leading shows 0 for every follower.
            self.leading = !status.peers.is_empty();
            for peer in &status.peers {
                if peer.id == self.node || peer.id >= self.followers.len() {
                    continue;
                }
                let node = &self.id;
                self.followers[peer.id].get_or_insert_with(|| {
                    let labels = [("node", node.clone()), ("peer", peer.id.to_string())];
                    Follower {
                        match_index: gauge!(names::FOLLOWER_MATCH_INDEX, &labels),
                        lag: gauge!(names::FOLLOWER_LAG, &labels),
                    }
                });
            }
            for (id, follower) in self.followers.iter().enumerate() {
                let Some(follower) = follower else { continue };
                let matched = status
                    .peers
                    .iter()
                    .find(|p| p.id == id)
                    .map(|p| p.match_index);
                let lag = matched.map_or(0, |m| status.last_log_index.saturating_sub(m));
                follower.match_index.set(matched.unwrap_or(0) as f64);
                follower.lag.set(lag as f64);
            }
        }
    }

    /// Records why the node stopped.
    pub(super) fn failed(&self, failure: &NodeFailure) {
        if matches!(
            failure,
            NodeFailure::Storage(_) | NodeFailure::WriterStopped
        ) {
            self.storage_failed.set(1.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering::Relaxed;

    use metrics::{Key, KeyName, Metadata, Recorder, SharedString, Unit};
    use metrics_util::registry::{AtomicStorage, Registry};

    use super::*;
    use crate::{PeerStatus, ProgressState};

    /// A recorder whose values can be read without resetting them.
    struct Values(Registry<Key, AtomicStorage>);

    impl Recorder for Values {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            self.0
                .get_or_create_counter(key, |c| Counter::from_arc(Arc::clone(c)))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            self.0
                .get_or_create_gauge(key, |g| Gauge::from_arc(Arc::clone(g)))
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            self.0
                .get_or_create_histogram(key, |h| Histogram::from_arc(Arc::clone(h)))
        }
    }

    impl Values {
        fn new() -> Self {
            Self(Registry::atomic())
        }

        /// The value of `name` with `labels` (beside `node`): a counter's or gauge's value, a
        /// histogram's number of observations.
        fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
            let matches = |key: &Key| {
                key.name() == name
                    && key.labels().count() == labels.len() + 1
                    && labels
                        .iter()
                        .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v))
            };
            let counters = self.0.get_counter_handles();
            let gauges = self.0.get_gauge_handles();
            let histograms = self.0.get_histogram_handles();
            counters
                .iter()
                .find(|(k, _)| matches(k))
                .map(|(_, c)| c.load(Relaxed) as f64)
                .or_else(|| {
                    gauges
                        .iter()
                        .find(|(k, _)| matches(k))
                        .map(|(_, g)| f64::from_bits(g.load(Relaxed)))
                })
                .or_else(|| {
                    histograms
                        .iter()
                        .find(|(k, _)| matches(k))
                        .map(|(_, h)| h.data().len() as f64)
                })
        }
    }

    fn follower(id: usize, match_index: u64) -> PeerStatus {
        PeerStatus {
            id,
            match_index,
            next_index: match_index + 1,
            state: ProgressState::Replicate,
            inflight: 0,
        }
    }

    #[test]
    fn roles_leaders_and_followers_are_published_as_they_change() {
        let values = Values::new();
        let mut metrics = metrics::with_local_recorder(&values, || NodeMetrics::new(0, 3, 1));
        let get = |name, labels: &[(&str, &str)]| values.get(name, labels);
        let lag = |peer| get(names::FOLLOWER_LAG, &[("peer", peer)]);
        let mut status = Status::initial(0);
        status.term = 1;

        // Case 1: a follower learns of leader 1.
        status.leader = Some(1);
        assert!(metrics.due(0, &status), "case 1");
        // Followers' gauges are registered as they are first seen, under the same recorder.
        metrics::with_local_recorder(&values, || {
            metrics.publish(0, &status, IoCounts::default(), 0)
        });
        assert_eq!(get(names::LEADER, &[]), Some(1.0), "case 1");
        assert_eq!(get(names::LEADER_CHANGES, &[]), Some(1.0), "case 1");

        // Case 2: nothing changed and the period has not passed: not due.
        assert!(!metrics.due(PUBLISH_EVERY / 2, &status), "case 2");
        assert!(metrics.due(PUBLISH_EVERY, &status), "case 2");

        // Case 3: it leads term 2; follower 1 holds 7 of its 10 entries, follower 2 all.
        status.term = 2;
        status.role = Role::Leader;
        status.leader = Some(0);
        status.last_log_index = 10;
        status.peers.extend([follower(1, 7), follower(2, 10)]);
        assert!(
            metrics.due(PUBLISH_EVERY / 2, &status),
            "case 3: a role change is due"
        );
        // Followers' gauges are registered as they are first seen, under the same recorder.
        metrics::with_local_recorder(&values, || {
            metrics.publish(PUBLISH_EVERY / 2, &status, IoCounts::default(), 5)
        });
        assert_eq!(get(names::ROLE, &[("role", "leader")]), Some(1.0), "case 3");
        assert_eq!(
            get(names::ROLE, &[("role", "follower")]),
            Some(0.0),
            "case 3"
        );
        assert_eq!(get(names::TERM, &[]), Some(2.0), "case 3");
        assert_eq!(get(names::LEADER_CHANGES, &[]), Some(2.0), "case 3");
        assert_eq!((lag("1"), lag("2")), (Some(3.0), Some(0.0)), "case 3");
        assert_eq!(get(names::PROPOSALS_QUEUED, &[]), Some(5.0), "case 3");

        // Case 4: it steps down and knows no leader: the followers' gauges go to 0.
        status.role = Role::Follower;
        status.leader = None;
        status.peers.clear();
        assert!(metrics.due(PUBLISH_EVERY / 2, &status), "case 4");
        // Followers' gauges are registered as they are first seen, under the same recorder.
        metrics::with_local_recorder(&values, || {
            metrics.publish(PUBLISH_EVERY / 2, &status, IoCounts::default(), 0)
        });
        assert_eq!((lag("1"), lag("2")), (Some(0.0), Some(0.0)), "case 4");
        assert_eq!(
            get(names::FOLLOWER_MATCH_INDEX, &[("peer", "1")]),
            Some(0.0),
            "case 4"
        );
        assert_eq!(get(names::LEADER, &[]), Some(-1.0), "case 4");
        assert_eq!(get(names::LEADER_CHANGES, &[]), Some(2.0), "case 4");

        // Case 5: a storage failure shows; another failure does not.
        metrics.failed(&NodeFailure::Panic {
            message: "x".into(),
        });
        assert_eq!(get(names::STORAGE_FAILED, &[]), Some(0.0), "case 5");
        metrics.failed(&NodeFailure::WriterStopped);
        assert_eq!(get(names::STORAGE_FAILED, &[]), Some(1.0), "case 5");
    }

    #[test]
    fn the_configuration_is_published_as_it_changes() {
        use crate::Membership;
        let values = Values::new();
        let mut metrics = metrics::with_local_recorder(&values, || NodeMetrics::new(2, 5, 1));
        let member = |role| values.get(names::MEMBER, &[("role", role)]);
        let roles = || ["voter", "joining", "leaving", "learner"].map(member);
        let config = |voters: &[usize], learners: &[usize], outgoing: Option<&[usize]>| {
            let target = Membership::new(voters.iter().copied(), learners.iter().copied());
            let target = target.unwrap();
            match outgoing {
                None => target,
                Some(old) => Membership::new(old.iter().copied(), [])
                    .unwrap()
                    .enter_joint(&target)
                    .unwrap(),
            }
        };
        let on = |v: bool| Some(f64::from(u8::from(v)));
        // (configuration of node 2, index, committed, its gauges voter/joining/leaving/learner)
        type Case = (Membership, u64, bool, [bool; 4]);
        let cases: [Case; 5] = [
            (
                config(&[0, 1, 2], &[], None),
                0,
                true,
                [true, false, false, false],
            ),
            (
                config(&[0, 1, 2], &[3, 4], None),
                7,
                false,
                [true, false, false, false],
            ),
            (
                config(&[0, 1, 3], &[], Some(&[0, 1, 2])),
                9,
                true,
                [false, false, true, false],
            ),
            (
                config(&[0, 1, 3], &[2], None),
                11,
                true,
                [false, false, false, true],
            ),
            (
                config(&[0, 1, 3], &[], None),
                12,
                false,
                [false, false, false, false],
            ),
        ];
        for (case, (membership, index, committed, want)) in cases.into_iter().enumerate() {
            let mut status = Status::initial(2);
            status.membership = Some(MembershipStatus {
                membership,
                index,
                committed,
            });
            metrics.publish(PUBLISH_EVERY * case as u64, &status, IoCounts::default(), 0);
            assert_eq!(roles(), want.map(on), "case {case}");
            let get = |name| values.get(name, &[]);
            assert_eq!(get(names::CONFIG_INDEX), Some(index as f64), "case {case}");
            assert_eq!(get(names::CONFIG_COMMITTED), on(committed), "case {case}");
            assert_eq!(
                get(names::CONFIG_JOINT),
                on(membership.is_joint()),
                "case {case}"
            );
            assert_eq!(get(names::CONFIG_VOTERS), Some(3.0), "case {case}");
        }
    }

    #[test]
    fn a_gate_lets_through_one_event_in_many_and_any_after_a_pause() {
        let mut gate = Gate::default();
        let events = [
            (0, true),
            (1, false),
            (SAMPLE_EVERY - 1, false),
            (SAMPLE_EVERY, true),
        ];
        for (case, (now, want)) in events.into_iter().enumerate() {
            assert_eq!(gate.open(now), want, "case {case}");
        }
        let busy = (0..2 * SAMPLE_ONE_IN)
            .filter(|_| gate.open(SAMPLE_EVERY + 1))
            .count();
        assert_eq!(busy, 2, "one in {SAMPLE_ONE_IN} without a pause");
    }

    #[test]
    fn a_commit_latency_sample_ends_when_applied_or_when_leadership_ends() {
        let values = Values::new();
        let mut metrics = metrics::with_local_recorder(&values, || NodeMetrics::new(0, 1, 1));
        let samples = || values.get(names::COMMIT_LATENCY, &[]).unwrap_or(0.0);
        let mut status = Status::initial(0);
        status.role = Role::Leader;
        metrics.appended(5);
        metrics.appended(9); // a sample is under way: this batch is not sampled
        status.last_applied = 4;
        metrics.due(0, &status);
        assert_eq!(samples(), 0.0, "not applied yet");
        status.last_applied = 5;
        metrics.due(0, &status);
        assert_eq!(samples(), 1.0, "applied");
        metrics.appended(12);
        status.role = Role::Follower;
        metrics.due(0, &status);
        status.role = Role::Leader;
        status.last_applied = 12;
        metrics.due(0, &status);
        assert_eq!(samples(), 1.0, "a sample of a lost leadership is dropped");
    }
}
