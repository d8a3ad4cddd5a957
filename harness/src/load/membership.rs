//! Three voters to five and back to three, live, under a closed loop of proposals: the
//! measurement of what a membership change costs a loaded cluster, and the check that no
//! acknowledged write is lost across it ([`membership_cycle`]).
//!
//! Five nodes start with nodes 0, 1 and 2 voting; 3 and 4 wait outside the configuration. A
//! client keeps `window` proposals in flight on the leader, following it when it changes, while
//! another thread changes the membership on the leader, one step after another:
//!
//! 1. nodes 3 and 4 join as learners (one configuration entry);
//! 2. both are promoted in one change (through the joint configuration: two entries);
//! 3. two of the original voters, the leader among them, are removed (joint again); the removed
//!    leader steps down once the final configuration commits, and the three left elect another.
//!
//! Every command carries a number of its own (its tag, the first 8 bytes). Each node's state
//! machine keeps its journal: which tag it applied at which index, as runs of consecutive
//! indices holding consecutive tags, so a journal of millions of entries is a handful of runs;
//! the journal is the state machine's snapshot, so a node that catches up from a snapshot has
//! the journal of the entries it replaced. A proposal is acknowledged when the client sees the
//! leader that took it apply its index. At the end every node of the final configuration must
//! hold the same journal, and every acknowledged tag must be in it at the index it was given.
//!
//! The client counts acknowledged commits per slice of time ([`CycleOptions::slice`]); around
//! each change, [`CycleReport::dip`] reads from those slices how deep and how long the rate
//! fell.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use zeroraft_engine::storage::Snapshot;
use zeroraft_engine::{ChangeError, Config, Membership, Raft, RestoreError, StateMachine};

use super::{LoadCluster, LoadStorage, Recorder};

/// The nodes of the cycle: three voters at first, two more added and promoted.
pub const NODES: usize = 5;

/// A tag that no proposal of the client carries: a command the node did not get from it (a new
/// leader's empty entry).
pub const FOREIGN: u64 = u64::MAX;

/// Consecutive indices holding consecutive tags: `len` entries from `index`, the first with
/// `tag` (or `len` foreign entries, each a run of its own, if `tag` is [`FOREIGN`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// The first index.
    pub index: u64,
    /// The tag at that index.
    pub tag: u64,
    /// Entries in the run.
    pub len: u64,
}

/// Runs of `(index, tag)` pairs, appended in increasing index order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Journal {
    runs: Vec<Run>,
}

impl Journal {
    /// Records `tag` at `index`, above every index recorded so far.
    pub fn push(&mut self, index: u64, tag: u64) {
        if let Some(last) = self.runs.last_mut()
            && last.tag != FOREIGN
            && tag != FOREIGN
            && last.index + last.len == index
            && last.tag + last.len == tag
        {
            last.len += 1;
            return;
        }
        self.runs.push(Run { index, tag, len: 1 });
    }

    /// The runs, lowest index first.
    pub fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// Entries recorded.
    pub fn entries(&self) -> u64 {
        self.runs.iter().map(|r| r.len).sum()
    }

    /// The entries of `other` this journal does not hold at the same index with the same tag.
    pub fn missing(&self, other: &Self) -> u64 {
        let mut missing = 0;
        for run in &other.runs {
            for k in 0..run.len {
                let (index, tag) = (run.index + k, run.tag.saturating_add(k));
                if self.tag_at(index) != Some(tag) {
                    missing += 1;
                }
            }
        }
        missing
    }

    /// The tag recorded at `index`, if any.
    pub fn tag_at(&self, index: u64) -> Option<u64> {
        let at = self.runs.partition_point(|r| r.index + r.len <= index);
        let run = self.runs.get(at)?;
        (run.index <= index).then(|| run.tag.saturating_add(index - run.index))
    }

    fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.runs.len() * 24);
        for r in &self.runs {
            for v in [r.index, r.tag, r.len] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        Bytes::from(out)
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        if !bytes.len().is_multiple_of(24) {
            return None;
        }
        let word = |c: &[u8]| u64::from_le_bytes(c.try_into().expect("8 bytes"));
        let runs = bytes
            .chunks_exact(24)
            .map(|c| Run {
                index: word(&c[..8]),
                tag: word(&c[8..16]),
                len: word(&c[16..]),
            })
            .collect();
        Some(Self { runs })
    }
}

/// The state machine of the cycle: a [`Journal`] of what it applied, shared with the client
/// after each batch, beside the progress every load driver reads.
struct Journaling {
    recorder: Recorder,
    journal: Journal,
    /// What the client reads: the journal as of the last batch. Invariant: its runs are those
    /// of `journal`, the last one possibly shorter.
    shared: Arc<Mutex<Journal>>,
}

impl StateMachine for Journaling {
    fn apply(&mut self, index: u64, _term: u64, command: &Bytes) {
        let tag = match command.get(..8) {
            Some(word) => u64::from_le_bytes(word.try_into().expect("8 bytes")),
            None => FOREIGN,
        };
        self.journal.push(index, tag);
    }

    fn flush(&mut self, last_index: u64) {
        {
            let mut shared = self.shared.lock().expect("no panic holding it");
            let n = shared.runs.len();
            if n > 0 {
                shared.runs[n - 1] = self.journal.runs[n - 1];
            }
            shared.runs.extend_from_slice(&self.journal.runs[n..]);
        }
        self.recorder.publish(last_index);
    }

    fn snapshot(&mut self) -> Option<Bytes> {
        Some(self.journal.encode())
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), RestoreError> {
        self.journal = Journal::decode(&snapshot.data)
            .ok_or_else(|| RestoreError::new("not a journal: its length is no multiple of 24"))?;
        *self.shared.lock().expect("no panic holding it") = self.journal.clone();
        self.recorder.publish(snapshot.index);
        Ok(())
    }
}

/// How the cycle runs.
#[derive(Clone, Debug)]
pub struct CycleOptions {
    /// Proposals kept in flight.
    pub window: u64,
    /// Bytes per command, 8 at least (the tag).
    pub payload: usize,
    /// Time before the first change, and between the end of one change and the start of the
    /// next; the run ends this long after the last.
    pub settle: Duration,
    /// Width of the slices commits are counted in.
    pub slice: Duration,
    /// The nodes' configuration ([`Config::production`] by default: PreVote and CheckQuorum,
    /// without which a removed node that did not learn it was removed can depose the leader).
    pub config: Config,
    /// Where the nodes keep their state.
    pub storage: LoadStorage,
}

impl Default for CycleOptions {
    fn default() -> Self {
        Self {
            window: 4096,
            payload: 16,
            settle: Duration::from_secs(1),
            slice: Duration::from_millis(100),
            config: Config {
                compaction: zeroraft_engine::Compaction {
                    every_entries: Some(100_000),
                    above_bytes: None,
                },
                ..Config::production()
            },
            storage: LoadStorage::None,
        }
    }
}

/// One membership change of the cycle, as the changing thread saw it.
#[derive(Clone, Debug)]
pub struct ChangeRecord {
    /// What it did.
    pub what: &'static str,
    /// When the first attempt started, from the start of the run.
    pub started: Duration,
    /// When the leader answered that it was committed.
    pub done: Duration,
    /// The index of its final configuration entry.
    pub index: u64,
    /// Attempts refused before it was taken (a learner not caught up yet, mostly).
    pub refused: u32,
    /// The leader that made it.
    pub leader: usize,
    /// The voters after it.
    pub voters: Vec<usize>,
}

/// How deep and how long the commit rate fell around a change ([`CycleReport::dip`]).
///
/// A change can move the rate for good (five voters commit fewer entries a second than three
/// on the same cores): the dip is measured against the lower of the rates before and after,
/// so that what is counted is the transient, not the new level.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dip {
    /// Commits per second before the change: the median of the slices of the second before it.
    pub before: f64,
    /// Commits per second after it: the median of the slices from 300 ms to 1 s after it was
    /// committed (fewer if the run or the next change comes first).
    pub after: f64,
    /// The lowest slice of the dip, per second (if none fell, the lowest from the slice the
    /// change started in to two slices after the one it was committed in).
    pub lowest: f64,
    /// Time the rate stayed below 90% of the lower of `before` and `after`: consecutive slices
    /// from the first below it (the slice the change started in, or one up to two slices after
    /// the one it was committed in: a removed leader steps down once it is) up to the first back
    /// above it.
    pub duration: Duration,
}

/// What [`membership_cycle`] measured and checked.
#[derive(Clone, Debug)]
pub struct CycleReport {
    /// Acknowledged commits in each slice from the start of the run.
    pub slices: Vec<u64>,
    /// The width of a slice.
    pub slice: Duration,
    /// The changes, in order.
    pub changes: Vec<ChangeRecord>,
    /// Proposals acknowledged.
    pub acknowledged: u64,
    /// The voters at the end.
    pub final_voters: Vec<usize>,
    /// The entries of the final voters' journals (all the same).
    pub journal_entries: u64,
    /// Acknowledged proposals not in some final voter's journal at their index (0, or the
    /// check failed).
    pub lost: u64,
    /// Final voters whose journal differs from the first final voter's.
    pub diverged: Vec<usize>,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// CPU time of the process during the run.
    pub cpu: Duration,
}

impl CycleReport {
    /// Commits per second in slice `k`.
    pub fn rate(&self, k: usize) -> f64 {
        self.slices.get(k).copied().unwrap_or(0) as f64 / self.slice.as_secs_f64()
    }

    /// The slices of `range` of the run.
    fn slices_in(&self, range: Range<Duration>) -> Range<usize> {
        let k = |d: Duration| (d.as_nanos() / self.slice.as_nanos()) as usize;
        k(range.start)..k(range.end).min(self.slices.len())
    }

    /// The median commits per second of the slices of `range`, 0 if there are none.
    fn median_rate(&self, range: Range<Duration>) -> f64 {
        let mut rates: Vec<f64> = self.slices_in(range).map(|k| self.rate(k)).collect();
        rates.sort_by(f64::total_cmp);
        rates.get(rates.len() / 2).copied().unwrap_or(0.0)
    }

    /// How the commit rate fell around change `i`: see [`Dip`].
    pub fn dip(&self, i: usize) -> Dip {
        let change = &self.changes[i];
        let before =
            self.median_rate(change.started.saturating_sub(Duration::from_secs(1))..change.started);
        let mut until = change.done + Duration::from_secs(1);
        if let Some(next) = self.changes.get(i + 1) {
            until = until.min(next.started);
        }
        let after = self.median_rate((change.done + Duration::from_millis(300)).min(until)..until);
        let threshold = 0.9 * before.min(after);
        // The dip starts in the slice the change started in, or in one of the two after the
        // slice it was committed in (a removed leader steps down once it is).
        let start = self.slices_in(change.started..change.started).start;
        let latest = self.slices_in(change.done..change.done).start + 2;
        let scanned = start..(latest + 1).min(self.slices.len());
        let first = scanned.clone().find(|&k| self.rate(k) < threshold);
        let mut lowest = scanned.map(|k| self.rate(k)).fold(f64::INFINITY, f64::min);
        let mut below = 0;
        for k in first.into_iter().flat_map(|k| k..self.slices.len()) {
            let rate = self.rate(k);
            if rate >= threshold {
                break;
            }
            below += 1;
            lowest = lowest.min(rate);
        }
        if !lowest.is_finite() {
            lowest = 0.0;
        }
        Dip {
            before,
            after,
            lowest,
            duration: self.slice * below,
        }
    }

    /// Acknowledged commits per second over the whole run.
    pub fn mean_rate(&self) -> f64 {
        self.acknowledged as f64 / self.elapsed.as_secs_f64()
    }

    /// CPU microseconds per acknowledged commit.
    pub fn cpu_per_commit_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.acknowledged.max(1) as f64
    }
}

/// The node that leads among `nodes`, waiting up to 10 s.
fn leader_of(nodes: &[Raft]) -> Option<usize> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(i) = (0..nodes.len()).find(|&i| nodes[i].get_state().1) {
            return Some(i);
        }
        if Instant::now() >= deadline {
            return None;
        }
        // Polling the published state while an election runs.
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs `change` on the leader until it is taken, retrying (every millisecond) while it is
/// refused for a reason that passes: a learner still catching up, a leader just elected or
/// stepping down, another change still under way. Gives up after 20 s.
fn change_on_leader(
    nodes: &[Raft],
    what: &'static str,
    t0: Instant,
    change: impl Fn(&Raft, usize) -> Result<u64, ChangeError>,
) -> Result<ChangeRecord, String> {
    let started = t0.elapsed();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut refused = 0;
    loop {
        let leader = leader_of(nodes).ok_or_else(|| format!("{what}: no leader for 10 s"))?;
        match change(&nodes[leader], leader) {
            Ok(index) => {
                let voters = nodes[leader].membership().membership.voters().collect();
                return Ok(ChangeRecord {
                    what,
                    started,
                    done: t0.elapsed(),
                    index,
                    refused,
                    leader,
                    voters,
                });
            }
            Err(
                ChangeError::NotCaughtUp(_)
                | ChangeError::NotLeader { .. }
                | ChangeError::LeadershipLost
                | ChangeError::InProgress
                | ChangeError::TransferInProgress
                | ChangeError::Busy,
            ) if Instant::now() < deadline => {
                refused += 1;
                // The learner catches up, or the leader settles, on the nodes' threads.
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(format!("{what}: {e}")),
        }
    }
}

/// The three changes of the cycle, one after another, `settle` apart.
fn change_members(
    nodes: &[Raft],
    settle: Duration,
    t0: Instant,
    stop: &AtomicBool,
) -> Result<Vec<ChangeRecord>, String> {
    let pause = |d: Duration| {
        // The load runs on undisturbed between two changes: this is the time it is measured.
        let until = Instant::now() + d;
        while Instant::now() < until && !stop.load(SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let mut changes = Vec::new();
    pause(settle);
    changes.push(change_on_leader(
        nodes,
        "add learners 3 and 4",
        t0,
        |r, _| r.change_membership(&[0, 1, 2], &[3, 4]),
    )?);
    pause(settle);
    changes.push(change_on_leader(nodes, "promote 3 and 4", t0, |r, _| {
        r.change_membership(&[0, 1, 2, 3, 4], &[])
    })?);
    pause(settle);
    changes.push(change_on_leader(
        nodes,
        "remove the leader and another original voter",
        t0,
        |r, leader| {
            // The leader, if it is one of the original three, and the lowest other original.
            let first = if leader < 3 { leader } else { 0 };
            let second = (0..3).find(|&v| v != first).expect("three originals");
            let voters: Vec<usize> = (0..NODES).filter(|&v| v != first && v != second).collect();
            r.change_membership(&voters, &[])
        },
    )?);
    pause(settle);
    Ok(changes)
}

/// Runs the cycle: see the [module docs](self).
///
/// # Errors
///
/// A description of what went wrong if the cluster cannot be built, a change fails for a
/// reason that does not pass, or the cluster has no leader for 10 s. A lost write or a
/// divergence is not an error: the report says so ([`CycleReport::lost`],
/// [`CycleReport::diverged`]).
pub fn membership_cycle(options: &CycleOptions) -> Result<CycleReport, String> {
    let initial = Membership::new([0, 1, 2], []).expect("a valid configuration");
    let journals: Vec<Arc<Mutex<Journal>>> = (0..NODES).map(|_| Arc::default()).collect();
    let mut next = 0;
    let cluster = LoadCluster::build(
        NODES,
        options.config.clone(),
        &options.storage,
        Some(initial),
        |recorder| {
            let shared = journals[next].clone();
            next += 1;
            Journaling {
                recorder,
                journal: Journal::default(),
                shared,
            }
        },
    )
    .map_err(|e| format!("cannot start the nodes: {e}"))?;
    let nodes: Vec<Raft> = (0..NODES).map(|i| cluster.node(i).clone()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let changer = {
        let stop = stop.clone();
        let settle = options.settle;
        std::thread::Builder::new()
            .name("membership-cycle".into())
            .spawn(move || {
                let changes = change_members(&nodes, settle, t0, &stop);
                stop.store(true, SeqCst);
                changes
            })
            .map_err(|e| format!("cannot start the changing thread: {e}"))?
    };
    let load = cluster.tagged_closed_loop(options, t0, &stop);
    stop.store(true, SeqCst);
    let changes = changer
        .join()
        .map_err(|_| "the changing thread panicked".to_owned())??;
    let (acknowledged, slices, elapsed, cpu) = load;

    // Every node of the final configuration holds the same journal, with every acknowledged
    // proposal at its index.
    let leader = cluster.leader();
    let final_voters: Vec<usize> = cluster
        .node(leader)
        .membership()
        .membership
        .voters()
        .collect();
    let last = cluster.applied(leader);
    let deadline = Instant::now() + Duration::from_secs(10);
    while final_voters.iter().any(|&v| cluster.applied(v) < last) {
        if Instant::now() > deadline {
            return Err(format!(
                "the final voters did not all apply up to {last} within 10 s"
            ));
        }
        // Followers apply what the leader committed within a heartbeat or two.
        std::thread::sleep(Duration::from_millis(1));
    }
    let read = |v: usize| journals[v].lock().expect("no panic holding it").clone();
    let reference = read(final_voters[0]);
    let diverged = final_voters[1..]
        .iter()
        .copied()
        .filter(|&v| read(v) != reference)
        .collect();
    let lost = final_voters
        .iter()
        .map(|&v| read(v).missing(&acknowledged))
        .max()
        .unwrap_or(0);
    Ok(CycleReport {
        slices,
        slice: options.slice,
        changes,
        acknowledged: acknowledged.entries(),
        final_voters,
        journal_entries: reference.entries(),
        lost,
        diverged,
        elapsed,
        cpu,
    })
}

impl LoadCluster {
    /// The closed loop of the cycle: `options.window` proposals of tagged commands in flight on
    /// the leader until `stop`, following the leader when it changes, then until every node
    /// applied the last one. Returns the journal of acknowledged proposals, the commits
    /// acknowledged per slice, the wall time and the CPU time.
    ///
    /// As in [`LoadCluster::closed_loop_for`], a proposal is acknowledged when its leader is
    /// seen to apply its index; what a leader took and was not seen to apply is not.
    fn tagged_closed_loop(
        &self,
        options: &CycleOptions,
        t0: Instant,
        stop: &AtomicBool,
    ) -> (Journal, Vec<u64>, Duration, Duration) {
        let window = options.window.max(1);
        // The indices in flight on one leader span at most the window and the configuration
        // entries between them: twice the window is room enough, and each slot says its index.
        let ring = (2 * window).next_power_of_two() as usize;
        let mut sent: Vec<(u64, u64)> = vec![(0, FOREIGN); ring];
        let mut acknowledged = Journal::default();
        let mut slices: Vec<u64> = Vec::new();
        let slice_nanos = options.slice.as_nanos().max(1);
        let mut tag = 0u64;
        let payload = options.payload.max(8);
        let mut command = || {
            let mut bytes = vec![0x5a; payload];
            bytes[..8].copy_from_slice(&tag.to_le_bytes());
            tag += 1;
            Bytes::from(bytes)
        };
        let cpu0 = cpu_time::ProcessTime::now();
        let mut leader = self.leader();
        // Invariant: the indices in `seen + 1..=last` on `leader` were proposed by this loop
        // (those in `sent`) or by the node itself (configuration entries), and every index up
        // to `seen` was acknowledged or given up.
        let mut last = self.applied(leader);
        let mut seen = last;
        let mut acknowledge = |seen: u64, upto: u64, sent: &[(u64, u64)], now: Instant| {
            let k = (now.duration_since(t0).as_nanos() / slice_nanos) as usize;
            if slices.len() <= k {
                slices.resize(k + 1, 0);
            }
            for index in seen + 1..=upto {
                let (at, tag) = sent[index as usize % ring];
                if at == index {
                    acknowledged.push(index, tag);
                    slices[k] += 1;
                }
            }
        };
        let mut fresh = false;
        let mut propose = |leader: &mut usize, sent: &mut [(u64, u64)]| {
            let mut tagged = None;
            let index = self.propose(leader, || {
                let c = command();
                tagged = Some(u64::from_le_bytes(c[..8].try_into().expect("8 bytes")));
                c
            });
            sent[index as usize % ring] = (index, tagged.expect("a command was made"));
            index
        };
        while !stop.load(SeqCst) {
            let leader_now = leader;
            let led = self.wait_until_or(
                || last < window + self.applied(leader_now),
                || !self.leads(leader_now),
            );
            if led {
                let applied = self.applied(leader_now).min(last);
                if applied > seen {
                    acknowledge(seen, applied, &sent, Instant::now());
                    seen = applied;
                }
            } else {
                // The leader changed or stopped: what it took and was not seen to apply may be
                // lost. Go on with the new one at once (see `closed_loop_for`).
                leader = self.leader();
                last = self.applied(leader);
                (seen, fresh) = (last, true);
                // What the old leader was given must not be taken for what the new one holds
                // at the same index (an entry it appended on its own, say).
                sent.fill((0, FOREIGN));
            }
            while last < window + self.applied(leader) {
                let before = leader;
                let index = propose(&mut leader, &mut sent);
                if fresh || leader != before {
                    // The first proposal on a new leader: the indices before it are not ours.
                    (seen, fresh) = (index - 1, false);
                }
                last = index;
            }
        }
        // Until the leader applied the last proposal; if it changes meanwhile, one more on the
        // new leader, which commits with it whatever that leader holds.
        loop {
            let leader_now = leader;
            if self.wait_until_or(
                || self.applied(leader_now) >= last,
                || !self.leads(leader_now),
            ) {
                if !fresh && last > seen {
                    acknowledge(seen, last, &sent, Instant::now());
                }
                break;
            }
            leader = self.leader();
            sent.fill((0, FOREIGN));
            last = propose(&mut leader, &mut sent);
            (seen, fresh) = (last - 1, false);
        }
        (acknowledged, slices, t0.elapsed(), cpu0.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_keeps_runs_and_finds_what_it_misses() {
        let mut journal = Journal::default();
        for (index, tag) in [
            (1, 10),
            (2, 11),
            (3, 12),
            (5, 13),
            (6, FOREIGN),
            (7, 14),
            (8, 15),
        ] {
            journal.push(index, tag);
        }
        let runs: Vec<(u64, u64, u64)> = journal
            .runs()
            .iter()
            .map(|r| (r.index, r.tag, r.len))
            .collect();
        assert_eq!(runs, [(1, 10, 3), (5, 13, 1), (6, FOREIGN, 1), (7, 14, 2)]);
        assert_eq!(journal.entries(), 7);
        // (index, tag there)
        let cases = [
            (0, None),
            (2, Some(11)),
            (4, None),
            (6, Some(FOREIGN)),
            (8, Some(15)),
            (9, None),
        ];
        for (case, (index, want)) in cases.into_iter().enumerate() {
            assert_eq!(journal.tag_at(index), want, "case {case}");
        }
        let mut acknowledged = Journal::default();
        for (index, tag) in [(2, 11), (3, 12), (4, 13), (8, 15), (9, 16)] {
            acknowledged.push(index, tag);
        }
        assert_eq!(journal.missing(&acknowledged), 2, "index 4 and index 9");
        assert_eq!(Journal::decode(&journal.encode()), Some(journal));
        assert_eq!(Journal::decode(&[0; 23]), None);
    }

    #[test]
    fn a_dip_is_read_from_the_slices_around_a_change() {
        let change = ChangeRecord {
            what: "x",
            started: Duration::from_millis(1_000),
            done: Duration::from_millis(1_150),
            index: 1,
            refused: 0,
            leader: 0,
            voters: vec![0],
        };
        // 1 000/s before, 40 and 20 in the change's slices, then 800/s for good.
        let mut slices = vec![100; 10];
        slices.extend([40, 20, 75, 80, 80, 80, 80, 80, 80, 80, 80]);
        let report = CycleReport {
            slices,
            slice: Duration::from_millis(100),
            changes: vec![change],
            acknowledged: 0,
            final_voters: vec![0],
            journal_entries: 0,
            lost: 0,
            diverged: Vec::new(),
            elapsed: Duration::from_secs(2),
            cpu: Duration::ZERO,
        };
        let dip = report.dip(0);
        assert_eq!((dip.before, dip.after), (1_000.0, 800.0));
        assert_eq!(dip.lowest, 200.0);
        assert_eq!(
            dip.duration,
            Duration::from_millis(200),
            "750/s is above 90% of the new level"
        );

        // A leader that steps down once the change commits: the rate falls a slice later.
        let mut late = report.clone();
        late.slices = vec![100; 11];
        late.slices
            .extend([0, 0, 0, 100, 100, 100, 100, 100, 100, 100]);
        let dip = late.dip(0);
        assert_eq!((dip.before, dip.after, dip.lowest), (1_000.0, 1_000.0, 0.0));
        assert_eq!(dip.duration, Duration::from_millis(300));
    }
}
