//! The dashboard's state: what it last read from the cluster, what it derived from the readings
//! (throughput history, events), and what the person at the keyboard chose (selected node,
//! pause, help). No terminal and no clock in here: samples come with the time they were taken,
//! keys come as values, so every behaviour is testable as a plain function call.
//!
//! Rates that need two readings (storage writes per second, mean sync time) are derived from the
//! latest sample and the one before it, both kept with the time they were taken. A node's
//! counters start from zero again when it restarts: a counter that went down, or a node that was
//! down and is up, counts from zero.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::Duration;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use zeroraft_engine::{MembershipStatus, Role, Status};

use crate::control::{ActionKind, Control, Rate, Sample};

/// How many per-second throughput points are kept (one minute).
pub const HISTORY_SECONDS: usize = 60;
/// How many events the log keeps.
const MAX_EVENTS: usize = 200;

/// What an event is about, which decides its colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A node started an election.
    Election,
    /// A node won an election, or the cluster's leader changed.
    Leader,
    /// A leader stepped down.
    StepDown,
    /// Something the person did.
    Action,
    /// A node stopped on a failure (its storage failed) or could not be restarted.
    Failure,
    /// A restarted node caught up with the leader.
    Recovery,
    /// A node installed a snapshot sent by its leader.
    Snapshot,
}

/// One line of the event log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// When it was seen, from the start of the dashboard.
    pub at: Duration,
    /// What it is about.
    pub kind: EventKind,
    /// What happened.
    pub text: String,
}

/// Something the dashboard asks of the cluster in answer to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Leave the dashboard.
    Quit,
    /// Connect this node.
    Connect(usize),
    /// Disconnect this node.
    Disconnect(usize),
    /// Disconnect whichever node leads now.
    CutLeader,
    /// Split the nodes into a random majority and minority; with `leader_in_minority` the
    /// current leader is put on the minority side (it loses its majority), else on the majority
    /// side (followers fall behind).
    Partition {
        /// Which side the current leader goes to.
        leader_in_minority: bool,
    },
    /// Reconnect every node and clear every fault: reliable network, no long reordering.
    Heal,
    /// Turn the unreliable network on or off.
    SetUnreliable(bool),
    /// Turn long reordering on or off.
    SetLongReordering(bool),
    /// Change the client load.
    SetRate(Rate),
    /// Crash this node: cut it off and kill it, keeping its storage.
    Crash(usize),
    /// Start this node again from its storage, and connect it.
    Restart(usize),
    /// Ask the leader to hand its leadership to this node.
    TransferTo(usize),
}

impl Action {
    /// The commands of [`Control`] this action calls: a cluster that does not support each of
    /// them ([`Control::supports`]) is not offered the action.
    pub fn needs(self) -> &'static [ActionKind] {
        match self {
            Self::Quit => &[],
            Self::Connect(_) => &[ActionKind::Connect],
            Self::Disconnect(_) | Self::CutLeader => &[ActionKind::Disconnect],
            Self::Partition { .. } => &[ActionKind::Partition],
            Self::Heal => &[
                ActionKind::Partition,
                ActionKind::SetUnreliable,
                ActionKind::SetLongReordering,
            ],
            Self::SetUnreliable(_) => &[ActionKind::SetUnreliable],
            Self::SetLongReordering(_) => &[ActionKind::SetLongReordering],
            Self::SetRate(_) => &[ActionKind::SetRate],
            Self::Crash(_) => &[ActionKind::Crash],
            Self::Restart(_) => &[ActionKind::Restart, ActionKind::Connect],
            Self::TransferTo(_) => &[ActionKind::TransferLeadership],
        }
    }

    /// What the action does, for the line that says it is not available.
    fn what(self) -> &'static str {
        match self {
            Self::Quit => "quitting",
            Self::Connect(_) => "reconnecting a node",
            Self::Disconnect(_) => "disconnecting a node",
            Self::CutLeader => "cutting off the leader",
            Self::Partition { .. } => "splitting the network",
            Self::Heal => "healing the network",
            Self::SetUnreliable(_) => "the unreliable network",
            Self::SetLongReordering(_) => "long reordering",
            Self::SetRate(_) => "changing the client load",
            Self::Crash(_) => "crashing a node",
            Self::Restart(_) => "restarting a node",
            Self::TransferTo(_) => "transferring leadership",
        }
    }
}

/// A node's (or the cluster's) storage writes over the last sample interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncRate {
    /// Writes per second (each one round's changes, made durable: a group commit).
    pub per_second: u64,
    /// Mean time per write; `None` when there was none.
    pub mean: Option<Duration>,
}

/// Which side of the network a node is on, as derived from the links.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// In a group that holds a majority of the nodes.
    Majority,
    /// In a group of two or more that is not a majority.
    Minority,
    /// Alone.
    Isolated,
}

/// The dashboard state. See the module docs.
#[derive(Debug)]
pub struct App {
    nodes: usize,
    /// The latest sample ingested. `None` before the first.
    sample: Option<Sample>,
    /// When `sample` was taken.
    now: Duration,
    /// The sample before `sample`, with the time it was taken: the start of the interval that
    /// rates such as [`App::sync_rate`] cover.
    previous: Option<(Duration, Sample)>,
    /// Committed entries per second, one point per elapsed second, oldest first.
    /// Invariant: at most [`HISTORY_SECONDS`] points.
    history: VecDeque<u64>,
    /// The start of the current one-second bucket and the highest commit index then.
    bucket: Option<(Duration, u64)>,
    events: VecDeque<Event>,
    /// The node keys act on. Invariant: `selected < nodes`.
    selected: usize,
    paused: bool,
    help: bool,
    /// Elections each node started since it last won one. Invariant: one entry per node.
    streaks: Vec<u64>,
    /// The last node seen leading, to count changes across leaderless spells.
    last_leader: Option<usize>,
    /// For each node restarted from the dashboard and not yet caught up with the leader, when
    /// it was restarted. Invariant: one entry per node.
    catching_up: Vec<Option<Duration>>,
    elections: u64,
    leader_changes: u64,
    /// Snapshots installed from a leader, summed over nodes and their incarnations, since the
    /// dashboard started (the first sample's counts included).
    snapshots_installed: u64,
    /// Which commands the cluster supports, by [`ActionKind`] (in [`ActionKind::ALL`] order).
    supported: [bool; ActionKind::ALL.len()],
    rng: fastrand::Rng,
}

impl App {
    /// A dashboard for `nodes` nodes of a cluster that supports every command. `seed` drives
    /// the random partitions.
    ///
    /// # Panics
    ///
    /// If `nodes` is 0.
    pub fn new(nodes: usize, seed: u64) -> Self {
        assert!(nodes > 0, "a dashboard needs at least one node");
        Self {
            nodes,
            sample: None,
            now: Duration::ZERO,
            previous: None,
            history: VecDeque::with_capacity(HISTORY_SECONDS),
            bucket: None,
            events: VecDeque::new(),
            selected: 0,
            paused: false,
            help: false,
            last_leader: None,
            streaks: vec![0; nodes],
            catching_up: vec![None; nodes],
            elections: 0,
            leader_changes: 0,
            snapshots_installed: 0,
            supported: [true; ActionKind::ALL.len()],
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// A dashboard for the cluster `control` runs: its nodes, and the commands it supports.
    ///
    /// # Panics
    ///
    /// If the cluster has no node.
    pub fn for_control(control: &dyn Control, seed: u64) -> Self {
        let mut app = Self::new(control.nodes(), seed);
        app.supported = ActionKind::ALL.map(|kind| control.supports(kind));
        app
    }

    /// Whether the cluster supports the command `kind` (as [`Control::supports`] said when the
    /// dashboard was made with [`App::for_control`]).
    pub fn supports(&self, kind: ActionKind) -> bool {
        ActionKind::ALL
            .iter()
            .position(|&k| k == kind)
            .is_some_and(|i| self.supported[i])
    }

    /// Whether the dashboard offers `action`: the cluster supports every command it needs.
    pub fn offers(&self, action: Action) -> bool {
        action.needs().iter().all(|&kind| self.supports(kind))
    }

    /// Says in the log that `action` is not available, instead of carrying it out.
    fn log_unavailable(&mut self, action: Action) {
        let text = format!("{}: not available on this cluster", action.what());
        self.push_event(self.now, EventKind::Action, text);
    }

    /// Number of nodes.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// The latest sample shown, if any.
    pub fn sample(&self) -> Option<&Sample> {
        self.sample.as_ref()
    }

    /// Time of the latest sample, from the start of the dashboard.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Committed entries per second over the last minute, oldest first.
    pub fn history(&self) -> &VecDeque<u64> {
        &self.history
    }

    /// Committed entries per second over the last full second, if one has passed.
    pub fn commits_per_second(&self) -> Option<u64> {
        self.history.back().copied()
    }

    /// The event log, oldest first.
    pub fn events(&self) -> &VecDeque<Event> {
        &self.events
    }

    /// The node keys act on.
    pub fn selected(&self) -> usize {
        self.selected
    }

    /// Whether the display is frozen.
    pub fn paused(&self) -> bool {
        self.paused
    }

    /// Whether the help overlay is shown.
    pub fn help(&self) -> bool {
        self.help
    }

    /// Elections started, summed over nodes, since the dashboard started.
    pub fn elections(&self) -> u64 {
        self.elections
    }

    /// Times the cluster's leader changed since the dashboard started.
    pub fn leader_changes(&self) -> u64 {
        self.leader_changes
    }

    /// Snapshots nodes installed from a leader, summed over nodes, since the dashboard started.
    pub fn snapshots_installed(&self) -> u64 {
        self.snapshots_installed
    }

    /// The node that leads in the highest term any live node leads, with that term.
    pub fn leader(&self) -> Option<(usize, u64)> {
        leader_of(self.sample.as_ref()?)
    }

    /// The cluster's configuration as the dashboard shows it: the leader's, or without a
    /// leader the latest (highest entry index) any running node reports; `None` when no node
    /// reports one (a server from before configurations were reported).
    pub fn membership(&self) -> Option<MembershipStatus> {
        let sample = self.sample.as_ref()?;
        let leader = leader_of(sample).map(|(l, _)| l);
        leader
            .and_then(|l| sample.statuses.get(l)?.membership)
            .or_else(|| {
                sample
                    .statuses
                    .iter()
                    .filter(|s| !s.killed)
                    .filter_map(|s| s.membership)
                    .max_by_key(|m| m.index)
            })
    }

    /// The highest commit index any node knows.
    pub fn commit_index(&self) -> u64 {
        self.sample.as_ref().map_or(0, max_commit)
    }

    /// Whether node `i` is down (crashed, or stopped on a failure) as of the latest sample.
    pub fn is_down(&self, i: usize) -> bool {
        self.sample
            .as_ref()
            .and_then(|s| s.statuses.get(i))
            .is_some_and(|s| s.killed)
    }

    /// Whether node `i` was restarted from the dashboard and has not caught up with the leader
    /// yet.
    pub fn is_catching_up(&self, i: usize) -> bool {
        self.catching_up.get(i).is_some_and(Option::is_some)
    }

    /// Node `i`'s storage writes between the previous sample and the latest; `None` before two
    /// samples were taken, or while the node is down.
    pub fn sync_rate(&self, i: usize) -> Option<SyncRate> {
        let (then, previous) = self.previous.as_ref()?;
        let new = self.sample.as_ref()?.statuses.get(i)?;
        let old = previous.statuses.get(i)?;
        if new.killed {
            return None;
        }
        let (writes, time) = writes_since(old, new);
        sync_rate(writes, time, self.now.saturating_sub(*then))
    }

    /// The storage writes of every node that is up, between the previous sample and the
    /// latest: their sum per second, and the mean time per write over all of them.
    pub fn cluster_sync_rate(&self) -> Option<SyncRate> {
        let (then, previous) = self.previous.as_ref()?;
        let latest = self.sample.as_ref()?;
        let (mut writes, mut time) = (0, Duration::ZERO);
        for (old, new) in previous.statuses.iter().zip(&latest.statuses) {
            if !new.killed {
                let (w, t) = writes_since(old, new);
                writes += w;
                time += t;
            }
        }
        sync_rate(writes, time, self.now.saturating_sub(*then))
    }

    /// Where node `i` stands in the network as of the latest sample.
    pub fn reach(&self, i: usize) -> Reach {
        let Some(sample) = &self.sample else {
            return Reach::Majority;
        };
        let group = group_of(sample, i).len();
        if group * 2 > self.nodes {
            Reach::Majority
        } else if group > 1 {
            Reach::Minority
        } else {
            Reach::Isolated
        }
    }

    /// The network's groups (nodes that reach each other both ways), largest first, when the
    /// network is split; empty when every node reaches every other.
    pub fn groups(&self) -> Vec<Vec<usize>> {
        let Some(sample) = &self.sample else {
            return Vec::new();
        };
        let mut seen = vec![false; self.nodes];
        let mut groups = Vec::new();
        for i in 0..self.nodes {
            if !seen[i] {
                let group = group_of(sample, i);
                for &j in &group {
                    seen[j] = true;
                }
                groups.push(group);
            }
        }
        if groups.len() == 1 {
            return Vec::new();
        }
        groups.sort_by_key(|g| std::cmp::Reverse(g.len()));
        groups
    }

    /// Takes in a sample read at `at` (from the start of the dashboard): updates the throughput
    /// history and logs what changed. While paused, samples are ignored; the first one after
    /// the pause starts a fresh throughput bucket.
    pub fn ingest(&mut self, sample: Sample, at: Duration) {
        if self.paused {
            return;
        }
        let commit = max_commit(&sample);
        match self.bucket {
            None => self.bucket = Some((at, commit)),
            Some((start, base)) => {
                let elapsed = at.saturating_sub(start);
                if elapsed >= Duration::from_millis(950) {
                    let per_second =
                        (commit.saturating_sub(base) as f64 / elapsed.as_secs_f64()).round() as u64;
                    if self.history.len() == HISTORY_SECONDS {
                        self.history.pop_front();
                    }
                    self.history.push_back(per_second);
                    self.bucket = Some((at, commit));
                }
            }
        }
        let before = self.now;
        self.now = at;
        self.log_changes(&sample);
        self.previous = self.sample.replace(sample).map(|s| (before, s));
    }

    /// Compares `next` with the previous sample and logs elections, wins, step-downs, leader
    /// changes, failures, and restarted nodes catching up.
    fn log_changes(&mut self, next: &Sample) {
        let at = self.now;
        let mut found = Vec::new();
        if let Some(prev) = &self.sample {
            for (old, new) in prev.statuses.iter().zip(&next.statuses) {
                let started = since(old, new, |s| s.elections_started);
                if started > 0 {
                    self.elections += started;
                    // A node that keeps failing (cut off, say) updates one line, not many.
                    let prefix = format!("n{} started an election", new.id);
                    let streak = &mut self.streaks[new.id];
                    if *streak > 0
                        && let Some(k) = self.events.iter().rposition(|e| {
                            e.kind == EventKind::Election && e.text.starts_with(&prefix)
                        })
                    {
                        self.events.remove(k);
                    }
                    *streak += started;
                    let times = if *streak == 1 {
                        String::new()
                    } else {
                        format!(" ({streak} in a row)")
                    };
                    found.push((
                        EventKind::Election,
                        format!("{prefix}, term {}{times}", new.term),
                    ));
                }
                if since(old, new, |s| s.elections_won) > 0 {
                    self.streaks[new.id] = 0;
                    found.push((
                        EventKind::Leader,
                        format!("n{} won the election for term {}", new.id, new.term),
                    ));
                }
                if since(old, new, |s| s.step_downs) > 0 {
                    found.push((
                        EventKind::StepDown,
                        format!("n{} stepped down, now term {}", new.id, new.term),
                    ));
                }
                let installed = since(old, new, |s| s.snapshots_installed);
                if installed > 0 {
                    self.snapshots_installed += installed;
                    found.push((EventKind::Snapshot, installed_text(new, installed)));
                }
            }
        } else {
            self.elections = next.statuses.iter().map(|s| s.elections_started).sum();
            self.snapshots_installed = next.statuses.iter().map(|s| s.snapshots_installed).sum();
        }
        for (i, new) in next.statuses.iter().enumerate() {
            let old = self.sample.as_ref().and_then(|prev| prev.statuses.get(i));
            if let Some(reason) = &new.failure
                && old.is_none_or(|old| old.failure.is_none())
            {
                found.push((EventKind::Failure, format!("n{i} stopped: {reason}")));
            }
            match (old.is_some_and(|old| old.disk_full), new.disk_full) {
                (false, true) => found.push((EventKind::Failure, format!("n{i}'s disk is full"))),
                (true, false) => {
                    found.push((EventKind::Recovery, format!("n{i}'s disk has room again")))
                }
                _ => {}
            }
        }
        found.extend(self.caught_up(next));
        // `self.sample` is still the previous sample here.
        let (before, leader) = (self.leader(), leader_of(next));
        if leader.map(|l| l.0) != before.map(|l| l.0) {
            let text = match (before, leader) {
                (_, Some((l, term))) => {
                    if self.last_leader.is_some_and(|last| last != l) {
                        self.leader_changes += 1;
                    }
                    self.last_leader = Some(l);
                    format!("leader is n{l} (term {term})")
                }
                (Some((l, _)), None) => format!("no leader (n{l} lost it)"),
                (None, None) => unreachable!("equal leaders are not a change"),
            };
            found.push((EventKind::Leader, text));
        }
        for (kind, text) in found {
            self.push_event(at, kind, text);
        }
    }

    /// The restarted nodes that `next` shows caught up with the leader (the leader knows they
    /// hold every entry it has committed), each as an event; they are no longer catching up.
    fn caught_up(&mut self, next: &Sample) -> Vec<(EventKind, String)> {
        let mut found = Vec::new();
        let leader = leader_of(next).map(|(l, _)| &next.statuses[l]);
        for (i, since) in self.catching_up.iter_mut().enumerate() {
            let Some(restarted) = *since else { continue };
            let Some(status) = next.statuses.get(i) else {
                continue;
            };
            if status.killed {
                *since = None;
                continue;
            }
            let Some(leader) = leader else { continue };
            let holds_committed = leader.id == i
                || leader
                    .peers
                    .iter()
                    .any(|p| p.id == i && p.match_index >= leader.commit_index);
            if holds_committed {
                *since = None;
                let after = self.now.saturating_sub(restarted).as_secs_f64();
                let text = if leader.id == i {
                    format!("n{i} caught up: it leads term {}", leader.term)
                } else {
                    format!(
                        "n{i} caught up with leader n{} after {after:.1} s, log {}",
                        leader.id, status.last_log_index
                    )
                };
                found.push((EventKind::Recovery, text));
            }
        }
        found
    }

    fn push_event(&mut self, at: Duration, kind: EventKind, text: String) {
        if self.events.len() == MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(Event { at, kind, text });
    }

    /// Logs something the person did.
    pub fn log_action(&mut self, text: String) {
        self.push_event(self.now, EventKind::Action, text);
    }

    /// Interprets a key. Keys that only change the view (selection, pause, help) take effect
    /// here and give `None`; keys that ask something of the cluster give the [`Action`] to
    /// [`perform`](App::perform). A key for an action the dashboard does not
    /// [offer](App::offers) gives `None` and a line in the log that says so.
    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Action> {
        let action = self.interpret(key)?;
        if self.offers(action) {
            Some(action)
        } else {
            self.log_unavailable(action);
            None
        }
    }

    /// [`App::handle_key`], whether or not the action is offered.
    fn interpret(&mut self, key: KeyEvent) -> Option<Action> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c' | 'C')) {
            return Some(Action::Quit);
        }
        if self.help {
            // Any key closes the help overlay; `q` still quits.
            self.help = false;
            return (key.code == KeyCode::Char('q')).then_some(Action::Quit);
        }
        let sample = self.sample.as_ref();
        let unreliable = sample.is_some_and(|s| s.network.unreliable);
        let reordering = sample.is_some_and(|s| s.network.long_reordering);
        let rate = sample.map_or(Rate::default(), |s| s.load.rate);
        match key.code {
            KeyCode::Char('q') => Some(Action::Quit),
            KeyCode::Char('?') => {
                self.help = true;
                None
            }
            KeyCode::Char(c @ '0'..='9') => {
                let i = usize::from(c as u8 - b'0');
                if i < self.nodes {
                    self.selected = i;
                }
                None
            }
            KeyCode::Left | KeyCode::Up | KeyCode::Char('k') | KeyCode::BackTab => {
                self.selected = (self.selected + self.nodes - 1) % self.nodes;
                None
            }
            KeyCode::Right | KeyCode::Down | KeyCode::Char('j') | KeyCode::Tab => {
                self.selected = (self.selected + 1) % self.nodes;
                None
            }
            KeyCode::Char(' ' | 'p') => {
                self.paused = !self.paused;
                if !self.paused {
                    self.bucket = None;
                }
                None
            }
            KeyCode::Char('d') => {
                let connected = self.reach(self.selected) != Reach::Isolated;
                Some(if connected {
                    Action::Disconnect(self.selected)
                } else {
                    Action::Connect(self.selected)
                })
            }
            KeyCode::Char('c') => Some(Action::Crash(self.selected)),
            KeyCode::Char('s') => Some(Action::Restart(self.selected)),
            KeyCode::Char('t') => Some(Action::TransferTo(self.selected)),
            KeyCode::Char('l') => Some(Action::CutLeader),
            KeyCode::Char('m') => Some(Action::Partition {
                leader_in_minority: true,
            }),
            KeyCode::Char('M') => Some(Action::Partition {
                leader_in_minority: false,
            }),
            KeyCode::Char('h') => Some(Action::Heal),
            KeyCode::Char('u') => Some(Action::SetUnreliable(!unreliable)),
            KeyCode::Char('r') => Some(Action::SetLongReordering(!reordering)),
            KeyCode::Char('+' | '=') => Some(Action::SetRate(rate.raised())),
            KeyCode::Char('-' | '_') => Some(Action::SetRate(rate.lowered())),
            _ => None,
        }
    }

    /// Carries out `action` on the cluster and logs it. [`Action::Quit`] does nothing here.
    ///
    /// Crashing a node that is down, or restarting one that is up, asks nothing of the cluster
    /// and only says so in the log. A restarted node is connected at once, and the log says
    /// when it has caught up with the leader. An action the dashboard does not
    /// [offer](App::offers) asks nothing of the cluster and only says so in the log.
    pub fn perform(&mut self, action: Action, control: &dyn Control) {
        if !self.offers(action) {
            self.log_unavailable(action);
            return;
        }
        let mut kind = EventKind::Action;
        // A reading taken after the action, where the action needs one.
        let mut fresh = None;
        let text = match action {
            Action::Quit => return,
            Action::Connect(i) => {
                control.connect(i);
                format!("reconnected n{i}")
            }
            Action::Disconnect(i) => {
                control.disconnect(i);
                format!("disconnected n{i}")
            }
            Action::CutLeader => match self.leader() {
                Some((l, term)) => {
                    control.disconnect(l);
                    format!("cut off leader n{l} (term {term})")
                }
                None => "no leader to cut off".to_owned(),
            },
            Action::Partition { leader_in_minority } => {
                let groups = self.random_partition(leader_in_minority);
                control.partition(&groups);
                let mut text = format!(
                    "split {}/{}",
                    show_group(&groups[0]),
                    show_group(&groups[1])
                );
                match self.leader() {
                    Some((l, _)) if leader_in_minority => {
                        let _ = write!(text, ", n{l} in minority");
                    }
                    Some((l, _)) => {
                        let _ = write!(text, ", n{l} in majority");
                    }
                    None => {}
                }
                text
            }
            Action::Heal => {
                let all: Vec<usize> = (0..self.nodes).collect();
                control.partition(&[all]);
                control.set_unreliable(false);
                control.set_long_reordering(false);
                "healed: all links up, faults off".to_owned()
            }
            Action::SetUnreliable(on) => {
                control.set_unreliable(on);
                format!("network {}", if on { "unreliable" } else { "reliable" })
            }
            Action::SetLongReordering(on) => {
                control.set_long_reordering(on);
                format!("long reordering {}", if on { "on" } else { "off" })
            }
            Action::SetRate(rate) => {
                control.set_rate(rate);
                format!("client load {rate}")
            }
            Action::Crash(i) if self.is_down(i) => format!("n{i} is already down"),
            Action::Crash(i) => {
                control.crash(i);
                self.catching_up[i] = None;
                format!("n{i} crashed")
            }
            Action::Restart(i) if self.sample.is_some() && !self.is_down(i) => {
                format!("n{i} is up: crash it first (c)")
            }
            Action::TransferTo(i) => match self.leader() {
                None => "no leader to transfer from".to_owned(),
                Some((l, _)) if l == i => format!("n{i} already leads"),
                Some(_) if self.is_down(i) => format!("n{i} is down"),
                Some((l, term)) => match control.transfer_leadership(l, i) {
                    Ok(()) => format!("n{l} (term {term}) hands its leadership to n{i}"),
                    Err(why) => {
                        kind = EventKind::Failure;
                        format!("n{l} did not transfer its leadership: {why}")
                    }
                },
            },
            Action::Restart(i) => match control.restart(i) {
                Ok(()) => {
                    control.connect(i);
                    let sample = fresh.insert(control.sample());
                    let status = &sample.statuses[i];
                    self.catching_up[i] = Some(self.now);
                    format!(
                        "n{i} restarted from its storage at term {}, log {}",
                        status.term, status.last_log_index
                    )
                }
                Err(why) => {
                    kind = EventKind::Failure;
                    format!("n{i} did not restart: {why}")
                }
            },
        };
        self.push_event(self.now, kind, text);
        // Show the new network state, and the node crashed or restarted, at once rather than at
        // the next refresh.
        let mut failure = None;
        if let Some(sample) = &mut self.sample {
            let fresh = fresh.unwrap_or_else(|| control.sample());
            sample.links = fresh.links;
            sample.network = fresh.network;
            sample.load.rate = fresh.load.rate;
            if let Action::Crash(i) | Action::Restart(i) = action
                && let (Some(shown), Some(now)) =
                    (sample.statuses.get_mut(i), fresh.statuses.get(i))
            {
                // The next sample will not see this status change: say here if the node had
                // stopped on a failure first.
                if shown.failure.is_none()
                    && let Some(reason) = &now.failure
                {
                    failure = Some(format!("n{i} stopped: {reason}"));
                }
                *shown = now.clone();
            }
        }
        if let Some(text) = failure {
            self.push_event(self.now, EventKind::Failure, text);
        }
    }

    /// A random split into a majority and a minority (of `(n - 1) / 2` nodes, at least one),
    /// majority first, each sorted. The leader, if any, goes where asked.
    fn random_partition(&mut self, leader_in_minority: bool) -> Vec<Vec<usize>> {
        let n = self.nodes;
        let minority_len = ((n - 1) / 2).max(1).min(n);
        let mut others: Vec<usize> = (0..n).collect();
        let leader = self.leader().map(|l| l.0);
        if let Some(l) = leader {
            others.retain(|&i| i != l);
        }
        self.rng.shuffle(&mut others);
        let mut minority = Vec::with_capacity(minority_len);
        let mut majority = Vec::with_capacity(n);
        if let Some(l) = leader {
            if leader_in_minority {
                minority.push(l);
            } else {
                majority.push(l);
            }
        }
        for i in others {
            if minority.len() < minority_len {
                minority.push(i);
            } else {
                majority.push(i);
            }
        }
        minority.sort_unstable();
        majority.sort_unstable();
        vec![majority, minority]
    }

    /// One line summing up the latest sample, for the headless mode.
    pub fn summary_line(&self) -> String {
        let mut line = format!("t={:>4}s", self.now.as_secs());
        let Some(sample) = &self.sample else {
            return line;
        };
        match self.leader() {
            Some((l, term)) => {
                let _ = write!(line, " leader=n{l} term={term}");
            }
            None => line.push_str(" leader=none"),
        }
        let syncs = self.cluster_sync_rate();
        let _ = write!(
            line,
            " commit={} commits/s={} p50={} p99={} syncs/s={} sync={} rpcs={} bytes={} elections={}",
            self.commit_index(),
            self.commits_per_second()
                .map_or_else(|| "-".to_owned(), |c| c.to_string()),
            show_latency(sample.load.recent.p50),
            show_latency(sample.load.recent.p99),
            syncs.map_or_else(|| "-".to_owned(), |s| s.per_second.to_string()),
            show_latency(syncs.and_then(|s| s.mean)),
            sample.network.rpc_total,
            sample.network.bytes_total,
            self.elections,
        );
        // The longest log of a node that is up: what compaction keeps bounded.
        let up = || sample.statuses.iter().filter(|s| !s.killed);
        let _ = write!(
            line,
            " log_entries={} log_bytes={} snapshots_installed={}",
            up().map(|s| s.log_entries).max().unwrap_or(0),
            up().map(|s| s.log_bytes).max().unwrap_or(0),
            self.snapshots_installed,
        );
        line
    }

    /// The closing summary of a run of `elapsed`, for the headless mode.
    pub fn final_summary(&self, elapsed: Duration) -> String {
        let secs = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
        let commit = self.commit_index();
        let (rpcs, bytes, latency, committed) =
            self.sample
                .as_ref()
                .map_or((0, 0, Default::default(), 0), |s: &Sample| {
                    (
                        s.network.rpc_total,
                        s.network.bytes_total,
                        s.load.overall,
                        s.load.committed,
                    )
                });
        // What the nodes' current incarnations wrote.
        let (writes, write_time) = self.sample.as_ref().map_or((0, Duration::ZERO), |s| {
            s.statuses.iter().fold((0, Duration::ZERO), |(w, t), st| {
                (w + st.syncs, t + st.sync_time)
            })
        });
        format!(
            "summary: {secs:.1} s, {} nodes, commit index {commit} ({:.0}/s), {committed} client commands committed, \
             latency p50 {} p99 {}, {} elections, {} leader changes, {rpcs} RPCs, {bytes} bytes, \
             {writes} storage writes (mean {}), {} snapshots installed",
            self.nodes,
            commit as f64 / secs,
            show_latency(latency.p50),
            show_latency(latency.p99),
            self.elections,
            self.leader_changes,
            show_latency(mean_write(writes, write_time)),
            self.snapshots_installed,
        )
    }
}

/// How much counter `count` of a node grew from `old` to `new`. A counter that went down, or a
/// node that was down and is up, belongs to a new incarnation that counted from zero.
fn since(old: &Status, new: &Status, count: impl Fn(&Status) -> u64) -> u64 {
    let (before, after) = (count(old), count(new));
    if after < before || (old.killed && !new.killed) {
        after
    } else {
        after - before
    }
}

/// The event of node `new` having installed `count` snapshots since the last sample.
///
/// The status does not say up to which index the installed snapshot went, only the node's
/// snapshot index when it was read: the installed one's, or a later one's if the node compacted
/// its log again between installing and the sample (as a node of the dashboard's cluster does
/// every 10 000 applied entries). The text says "now" for that.
fn installed_text(new: &Status, count: u64) -> String {
    let what = if count == 1 {
        "a snapshot".to_owned()
    } else {
        format!("{count} snapshots")
    };
    format!(
        "n{} installed {what}, snapshot index now {}",
        new.id, new.snapshot_index
    )
}

/// Storage writes, and the time spent in them, from `old` to `new` (see [`since`]).
fn writes_since(old: &Status, new: &Status) -> (u64, Duration) {
    let writes = since(old, new, |s| s.syncs);
    let fresh = new.syncs < old.syncs || (old.killed && !new.killed);
    let time = if fresh {
        new.sync_time
    } else {
        new.sync_time.saturating_sub(old.sync_time)
    };
    (writes, time)
}

/// `writes` taking `time` in all over an `interval`, as a rate; `None` for an empty interval.
fn sync_rate(writes: u64, time: Duration, interval: Duration) -> Option<SyncRate> {
    if interval.is_zero() {
        return None;
    }
    Some(SyncRate {
        per_second: (writes as f64 / interval.as_secs_f64()).round() as u64,
        mean: mean_write(writes, time),
    })
}

/// The mean of `writes` taking `time` in all; `None` without writes.
fn mean_write(writes: u64, time: Duration) -> Option<Duration> {
    let nanos = time.as_nanos().checked_div(u128::from(writes))?;
    Some(Duration::from_nanos(
        u64::try_from(nanos).unwrap_or(u64::MAX),
    ))
}

/// The highest commit index in a sample.
fn max_commit(sample: &Sample) -> u64 {
    sample
        .statuses
        .iter()
        .map(|s| s.commit_index)
        .max()
        .unwrap_or(0)
}

/// The live node leading in the highest term, with that term.
fn leader_of(sample: &Sample) -> Option<(usize, u64)> {
    sample
        .statuses
        .iter()
        .filter(|s| s.role == Role::Leader && !s.killed)
        .max_by_key(|s| s.term)
        .map(|s| (s.id, s.term))
}

/// The nodes that reach `i` and are reached by it, directly or through others, sorted.
fn group_of(sample: &Sample, i: usize) -> Vec<usize> {
    let n = sample.statuses.len();
    let both = |a: usize, b: usize| {
        a == b
            || (sample.links.get(a * n + b) == Some(&true)
                && sample.links.get(b * n + a) == Some(&true))
    };
    let mut group = vec![i];
    let mut k = 0;
    while k < group.len() {
        let a = group[k];
        for b in 0..n {
            if !group.contains(&b) && both(a, b) {
                group.push(b);
            }
        }
        k += 1;
    }
    group.sort_unstable();
    group
}

/// `{0,3,4}`.
pub(crate) fn show_group(group: &[usize]) -> String {
    let ids: Vec<String> = group.iter().map(|i| i.to_string()).collect();
    format!("{{{}}}", ids.join(","))
}

/// A latency in the unit that suits it: `420ns`, `850µs`, `1.25ms`, `3.4s`; `-` when unknown.
pub(crate) fn show_latency(latency: Option<Duration>) -> String {
    match latency {
        None => "-".to_owned(),
        Some(d) if d < Duration::from_micros(1) => format!("{}ns", d.as_nanos()),
        Some(d) if d < Duration::from_millis(1) => format!("{}µs", d.as_micros()),
        Some(d) if d < Duration::from_secs(1) => format!("{:.2}ms", d.as_secs_f64() * 1e3),
        Some(d) => format!("{:.1}s", d.as_secs_f64()),
    }
}
