//! Rendering: pure functions of an [`App`] into a ratatui [`Buffer`]. Each panel is its own
//! widget so it can be tested alone; `&App` is the whole screen.
//!
//! Layout, top to bottom: a title line; the cluster table; replication (left) beside
//! throughput (right); network (left) beside the event log (right); a footer with the keys.
//! The footer and the help overlay list only the keys whose commands the cluster supports
//! ([`App::supports`]).
//! At 80x24 with five nodes every panel fits with its borders; the cluster table leaves out its
//! least needed columns (message counters, the applied index, the last index, ...: see
//! [`ClusterTable`]) when they do not fit.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Clear, Paragraph, Row, Sparkline, Table, Widget};
use zeroraft_engine::{MemberRole, MembershipStatus, ProgressState, Role};

use crate::app::{App, EventKind, Reach, show_group, show_latency};
use crate::control::ActionKind;

/// Every key, with what it does, as the help overlay lists them, and the commands of
/// [`Control`](crate::Control) it needs: a key is listed only when the cluster supports all of
/// them ([`App::supports`]).
pub const KEYS: [(&str, &str, &[ActionKind]); 17] = [
    ("0-9", "select a node", &[]),
    ("←/→ ↑/↓", "select the previous / next node", &[]),
    ("d", "disconnect / reconnect the selected node", DISCONNECT),
    (
        "c",
        "crash the selected node, keeping its storage",
        &[ActionKind::Crash],
    ),
    ("s", "restart the crashed node from its storage", RESTART),
    ("l", "cut off the current leader", &[ActionKind::Disconnect]),
    ("t", "transfer leadership to the selected node", TRANSFER),
    (
        "m",
        "random partition, leader in the minority",
        &[ActionKind::Partition],
    ),
    (
        "M",
        "random partition, leader in the majority",
        &[ActionKind::Partition],
    ),
    ("h", "heal: reconnect all, reliable, no reordering", HEAL),
    (
        "u",
        "toggle the unreliable network",
        &[ActionKind::SetUnreliable],
    ),
    (
        "r",
        "toggle long reordering of replies",
        &[ActionKind::SetLongReordering],
    ),
    (
        "+ / -",
        "raise / lower the client load",
        &[ActionKind::SetRate],
    ),
    ("space", "pause / resume the display", &[]),
    ("?", "show / hide this help", &[]),
    ("q", "quit (also Ctrl-C)", &[]),
    ("", "any key closes this help", &[]),
];

/// The footer: the keys, shortest form, with the commands each needs as in [`KEYS`].
const FOOTER: [(&str, &str, &[ActionKind]); 14] = [
    ("q", "quit", &[]),
    ("?", "help", &[]),
    ("0-9←→", "node", &[]),
    ("d", "dis/connect", DISCONNECT),
    ("c", "crash", &[ActionKind::Crash]),
    ("s", "start", RESTART),
    ("l", "cut leader", &[ActionKind::Disconnect]),
    ("t", "transfer", TRANSFER),
    ("m/M", "split", &[ActionKind::Partition]),
    ("h", "heal", HEAL),
    ("u", "unreliable", &[ActionKind::SetUnreliable]),
    ("r", "reorder", &[ActionKind::SetLongReordering]),
    ("+/-", "load", &[ActionKind::SetRate]),
    ("space", "pause", &[]),
];

/// What `d` needs: it disconnects a connected node and reconnects a cut-off one.
const DISCONNECT: &[ActionKind] = &[ActionKind::Disconnect, ActionKind::Connect];
/// What `s` needs: [`Action::Restart`](crate::Action::Restart).
const RESTART: &[ActionKind] = &[ActionKind::Restart, ActionKind::Connect];
/// What `t` needs: [`Action::TransferTo`](crate::Action::TransferTo).
const TRANSFER: &[ActionKind] = &[ActionKind::TransferLeadership];
/// What `h` needs: [`Action::Heal`](crate::Action::Heal).
const HEAL: &[ActionKind] = &[
    ActionKind::Partition,
    ActionKind::SetUnreliable,
    ActionKind::SetLongReordering,
];

const LEADER: Style = Style::new().fg(Color::Green).add_modifier(Modifier::BOLD);
const DIM: Style = Style::new().fg(Color::DarkGray);
const WARN: Style = Style::new().fg(Color::Red);
/// Snapshots: a follower being sent one, a node that installed one.
const SNAPSHOT: Style = Style::new().fg(Color::Magenta);

impl Widget for &App {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let n = self.nodes() as u16;
        let footer_lines = offered_footer_lines(self, area.width);
        let [title, table, middle, bottom, footer] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(n + 3),
            Constraint::Length((n + 1).max(7)),
            Constraint::Min(5),
            Constraint::Length(footer_lines.len() as u16),
        ])
        .areas(area);
        Title(self).render(title, buf);
        ClusterTable(self).render(table, buf);
        let [replication, throughput] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                .areas(middle);
        Replication(self).render(replication, buf);
        Throughput(self).render(throughput, buf);
        let [network, events] =
            Layout::horizontal([Constraint::Length(34), Constraint::Min(20)]).areas(bottom);
        NetworkPanel(self).render(network, buf);
        EventLog(self).render(events, buf);
        Paragraph::new(footer_lines).render(footer, buf);
        if self.help() {
            Help(self).render(area, buf);
        }
    }
}

/// The footer's list of every key, broken into as many lines of `width` columns as it needs.
pub fn footer_lines(width: u16) -> Vec<Line<'static>> {
    footer_lines_where(width, |_| true)
}

/// The footer's list of the keys `app` offers (those whose commands the cluster supports),
/// broken into as many lines of `width` columns as it needs.
pub fn offered_footer_lines(app: &App, width: u16) -> Vec<Line<'static>> {
    footer_lines_where(width, |kind| app.supports(kind))
}

fn footer_lines_where(width: u16, supports: impl Fn(ActionKind) -> bool) -> Vec<Line<'static>> {
    let width = usize::from(width.max(1));
    let mut lines = Vec::new();
    let mut line: Vec<Span<'static>> = Vec::new();
    let mut used = 0;
    for (key, what, needs) in FOOTER {
        if !needs.iter().all(|&kind| supports(kind)) {
            continue;
        }
        let len = key.chars().count() + 1 + what.len();
        if used > 0 && used + 2 + len > width {
            lines.push(Line::from(std::mem::take(&mut line)));
            used = 0;
        }
        if used > 0 {
            line.push(Span::raw("  "));
            used += 2;
        }
        line.push(Span::styled(key, Style::new().bold()));
        line.push(Span::styled(format!(" {what}"), DIM));
        used += len;
    }
    lines.push(Line::from(line));
    lines
}

/// The title line: cluster size, uptime, leader, load (for a cluster whose load the dashboard
/// sets), and whether the display is paused.
pub struct Title<'a>(pub &'a App);

impl Widget for Title<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.0;
        let secs = app.now().as_secs();
        let mut spans = vec![
            Span::styled(" zeroraft ", Style::new().bold().reversed()),
            Span::raw(format!(
                " {} nodes · up {:02}:{:02}:{:02} · ",
                app.nodes(),
                secs / 3600,
                secs / 60 % 60,
                secs % 60
            )),
        ];
        match app.leader() {
            Some((l, term)) => spans.push(Span::styled(format!("leader n{l} term {term}"), LEADER)),
            None => spans.push(Span::styled("no leader", WARN)),
        }
        // A cluster whose load cannot be set has none the dashboard knows of.
        if let Some(sample) = app.sample()
            && app.supports(ActionKind::SetRate)
        {
            spans.push(Span::raw(format!(" · load {}", sample.load.rate)));
        }
        let down = (0..app.nodes()).filter(|&i| app.is_down(i)).count();
        if down > 0 {
            spans.push(Span::raw(" · "));
            spans.push(Span::styled(format!("{down} down"), WARN));
        }
        if app.paused() {
            spans.push(Span::raw(" "));
            spans.push(Span::styled(
                " PAUSED ",
                Style::new().fg(Color::Yellow).reversed(),
            ));
        }
        Line::from(spans).render(area, buf);
    }
}

/// The cluster table's columns, in order: header and least width. A column is wider when a
/// value needs it (an index of more than 8 digits, after a few minutes of unlimited load).
const COLUMNS: [(&str, u16); 18] = [
    ("", 1),
    ("node", 4),
    ("role", 9),
    ("member", 6),
    ("term", 5),
    ("leads", 5),
    ("commit", 8),
    ("applied", 8),
    ("last", 8),
    ("durable", 8),
    ("snap", 8),
    ("entries", 7),
    ("bytes", 6),
    ("net", 5),
    ("syncs/s", 7),
    ("sync", 7),
    ("msg in", 7),
    ("msg out", 7),
];

/// The columns the cluster table leaves out, in this order, while they do not fit: the message
/// counters (the network panel has the totals); the applied index (the commit index's shadow);
/// the last index (the snapshot index plus the entries after it); the leader each node follows
/// (the title names the leader); the mean storage write time; the log's bytes (about its
/// entries times the command size); the log's length. At 80 columns, with indices of up to 8
/// digits, what is left fits: the durable index and the snapshot index stay, and the log's
/// length too unless the member column is shown (it then takes the place of the log's bytes
/// and length).
const OPTIONAL_COLUMNS: [&[usize]; 7] = [&[16, 17], &[7], &[8], &[5], &[15], &[12], &[11]];

/// The member column: what each node is in the cluster's configuration.
const MEMBER_COLUMN: usize = 3;

/// Which of [`COLUMNS`], `widths` wide, fit in `width` columns, with one column of space
/// between each two; the member column only if `members` (some node reports a configuration).
fn shown_columns(
    width: u16,
    widths: &[u16; COLUMNS.len()],
    members: bool,
) -> [bool; COLUMNS.len()] {
    let mut shown = [true; COLUMNS.len()];
    shown[MEMBER_COLUMN] = members;
    let needed = |shown: &[bool; COLUMNS.len()]| {
        let (count, sum) = widths
            .iter()
            .zip(shown)
            .filter(|(_, on)| **on)
            .fold((0u16, 0u16), |(n, w), (width, _)| {
                (n + 1, w.saturating_add(*width))
            });
        sum.saturating_add(count.saturating_sub(1))
    };
    for group in OPTIONAL_COLUMNS {
        if needed(&shown) <= width {
            break;
        }
        for &column in group {
            shown[column] = false;
        }
    }
    shown
}

/// One row per node: role, what it is in the cluster's configuration ([`App::membership`]:
/// `voter`, `learner`, while joint `joining` or `leaving`, or `none` when not a member), term,
/// leader, indices (committed, applied, last, durable), the
/// snapshot index and what the log holds after it (entries and bytes), network reach, storage
/// writes over the last refresh and message counters. The leader's row is green, a node that is
/// down is grey ("down") or red ("failed": it stopped on its own, its storage or state machine
/// failed), a node whose storage reports its disk full is red and says so after its role, and
/// the selected node is marked with `▶`. A node without a snapshot shows `-` as
/// its snapshot index.
///
/// A column is as wide as its widest value. While they do not all fit, the table leaves out,
/// in this order: the message counters, the applied index, the last index, the leader each
/// node follows, the mean storage write time, the log's bytes and the log's length. The member
/// column is left out when no node reports a configuration (servers from before they did).
///
/// The table's title gives the configuration itself ([`config_line`]).
pub struct ClusterTable<'a>(pub &'a App);

impl Widget for ClusterTable<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.0;
        let leader = app.leader().map(|l| l.0);
        let membership = app.membership();
        // Each row's cells as text first, so that the columns can be as wide as their values.
        let rows: Vec<(Style, [(String, Style); COLUMNS.len()])> =
            app.sample().map_or_else(Vec::new, |sample| {
                sample
                    .statuses
                    .iter()
                    .map(|s| {
                        let mark = if s.id == app.selected() { "▶" } else { "" };
                        let role = match (s.killed, &s.failure, s.role) {
                            (true, Some(_), _) => "failed",
                            (true, None, _) => "down",
                            (false, _, Role::Leader) => "leader",
                            (false, _, Role::Candidate) => "candidate",
                            (false, _, Role::Follower) => "follower",
                        };
                        let role = if s.disk_full {
                            format!("{role}, disk full")
                        } else {
                            role.to_owned()
                        };
                        let (net, net_style) = match app.reach(s.id) {
                            Reach::Majority => ("ok", Style::new()),
                            Reach::Minority => ("minor", Style::new().fg(Color::Yellow)),
                            Reach::Isolated => ("cut", WARN),
                        };
                        let style = if s.failure.is_some() || s.disk_full {
                            WARN
                        } else if s.killed {
                            DIM
                        } else if Some(s.id) == leader {
                            LEADER
                        } else if s.role == Role::Candidate {
                            Style::new().fg(Color::Yellow)
                        } else {
                            Style::new()
                        };
                        let syncs = app.sync_rate(s.id);
                        let plain = |text: String| (text, Style::new());
                        let member = match membership.map(|m| m.role_of(s.id)) {
                            None => ("-".to_owned(), Style::new()),
                            Some(MemberRole::None) => ("none".to_owned(), DIM),
                            Some(role @ (MemberRole::Joining | MemberRole::Leaving)) => {
                                (role.name().to_owned(), Style::new().fg(Color::Yellow))
                            }
                            Some(role) => plain(role.name().to_owned()),
                        };
                        let cells = [
                            plain(mark.to_owned()),
                            plain(format!("n{}", s.id)),
                            plain(role),
                            member,
                            plain(s.term.to_string()),
                            plain(s.leader.map_or_else(|| "-".to_owned(), |l| format!("n{l}"))),
                            plain(s.commit_index.to_string()),
                            plain(s.last_applied.to_string()),
                            plain(s.last_log_index.to_string()),
                            plain(s.durable_index.to_string()),
                            plain(if s.snapshot_index == 0 {
                                "-".to_owned()
                            } else {
                                s.snapshot_index.to_string()
                            }),
                            plain(compact(s.log_entries)),
                            plain(short_bytes(s.log_bytes)),
                            (net.to_owned(), net_style),
                            plain(
                                syncs.map_or_else(|| "-".to_owned(), |r| per_second(r.per_second)),
                            ),
                            plain(show_latency(syncs.and_then(|r| r.mean))),
                            plain(compact(s.messages_in)),
                            plain(compact(s.messages_out)),
                        ];
                        (style, cells)
                    })
                    .collect()
            });
        let mut widths = COLUMNS.map(|(_, width)| width);
        for (_, cells) in &rows {
            for (width, (text, _)) in widths.iter_mut().zip(cells) {
                let len = u16::try_from(text.chars().count()).unwrap_or(u16::MAX);
                *width = (*width).max(len);
            }
        }
        let shown = shown_columns(area.width.saturating_sub(2), &widths, membership.is_some());
        let keep = |cells: [Cell<'static>; COLUMNS.len()]| {
            cells
                .into_iter()
                .zip(shown)
                .filter_map(|(cell, on)| on.then_some(cell))
                .collect::<Vec<_>>()
        };
        let header =
            Row::new(keep(COLUMNS.map(|(name, _)| Cell::from(name)))).style(Style::new().bold());
        let rows: Vec<Row<'static>> = rows
            .into_iter()
            .map(|(style, cells)| {
                Row::new(keep(
                    cells.map(|(text, style)| Cell::from(Span::styled(text, style))),
                ))
                .style(style)
            })
            .collect();
        let widths: Vec<Constraint> = widths
            .iter()
            .zip(shown)
            .filter(|(_, on)| *on)
            .map(|(width, _)| Constraint::Length(*width))
            .collect();
        let title = match membership {
            Some(m) => format!(" cluster · {} ", config_line(&m)),
            None => " cluster ".to_owned(),
        };
        Table::new(rows, widths)
            .header(header)
            .column_spacing(1)
            .block(Block::bordered().title(title))
            .render(area, buf);
    }
}

/// The configuration in one line: `voters n0 n1 n2 · learners n3 · entry 12`, while joint
/// `joint n0 n1 n2 → n0 n3 n4 · entry 14` (the outgoing voters, then the incoming), with
/// `, uncommitted` after the entry's index while it is not committed. Without learners, their
/// part is left out.
pub fn config_line(config: &MembershipStatus) -> String {
    let names = |ids: &mut dyn Iterator<Item = usize>| {
        ids.map(|id| format!("n{id}")).collect::<Vec<_>>().join(" ")
    };
    let m = &config.membership;
    let mut line = if m.is_joint() {
        format!(
            "joint {} → {}",
            names(&mut m.outgoing()),
            names(&mut m.voters())
        )
    } else {
        format!("voters {}", names(&mut m.voters()))
    };
    if m.learners().next().is_some() {
        line.push_str(&format!(" · learners {}", names(&mut m.learners())));
    }
    line.push_str(&format!(" · entry {}", config.index));
    if !config.committed {
        line.push_str(", uncommitted");
    }
    line
}

/// For the leader, one bar per follower: its match index against the leader's last index, its
/// lag, and how the leader replicates to it: `R` streaming (with the AppendEntries in flight),
/// `P` probing (red while behind), or `snapshot` (magenta): the follower needs entries the leader
/// has compacted away, and the leader is sending it its snapshot. How much of the snapshot got
/// through is not published, so the bar still shows the match index. A follower that is down
/// shows the match index the leader last knew, greyed, and `down`.
pub struct Replication<'a>(pub &'a App);

/// Columns right of a follower's bar: ` lag 123.4k ` and the state, `R12`; or `snapshot`,
/// which takes four more columns from the bars while some follower is in that state.
const REPLICATION_TEXT: u16 = 12 + 4;

impl Widget for Replication<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.0;
        let inner = framed(" replication ", area, buf);
        let leader = app
            .leader()
            .and_then(|(l, _)| app.sample().map(|s| s.statuses[l].clone()));
        let Some(leader) = leader else {
            Paragraph::new("no leader").style(DIM).render(inner, buf);
            return;
        };
        let last = leader.last_log_index;
        let snapshot = leader
            .peers
            .iter()
            .any(|p| p.state == ProgressState::Snapshot && !app.is_down(p.id));
        let text = REPLICATION_TEXT + if snapshot { 4 } else { 0 };
        // "n1 " + bar + the text: the bar takes what the text leaves.
        let bar_width = usize::from(inner.width.saturating_sub(3 + text));
        let lines: Vec<Line<'_>> = leader
            .peers
            .iter()
            .map(|p| {
                let lag = last.saturating_sub(p.match_index);
                let ratio = if last == 0 {
                    1.0
                } else {
                    p.match_index as f64 / last as f64
                };
                let filled = ((ratio * bar_width as f64).round() as usize).min(bar_width);
                if app.is_down(p.id) {
                    return Line::from(vec![
                        Span::raw(format!("n{} ", p.id)),
                        Span::styled("▒".repeat(filled), DIM),
                        Span::styled("░".repeat(bar_width - filled), DIM),
                        Span::styled(
                            format!(" {:<width$}", "down", width = usize::from(text - 1)),
                            WARN,
                        ),
                    ]);
                }
                let bar_style = match p.state {
                    ProgressState::Snapshot => SNAPSHOT,
                    _ if lag == 0 => Style::new().fg(Color::Green),
                    ProgressState::Probe => Style::new().fg(Color::Red),
                    ProgressState::Replicate => Style::new().fg(Color::Yellow),
                };
                let state = match p.state {
                    ProgressState::Snapshot => Span::styled("snapshot", SNAPSHOT.bold()),
                    ProgressState::Probe => Span::raw(format!("P{}", p.inflight.min(99))),
                    ProgressState::Replicate => Span::raw(format!("R{}", p.inflight.min(99))),
                };
                Line::from(vec![
                    Span::raw(format!("n{} ", p.id)),
                    Span::styled("█".repeat(filled), bar_style),
                    Span::styled("░".repeat(bar_width - filled), DIM),
                    Span::raw(format!(" lag {:<7}", compact(lag))),
                    state,
                ])
            })
            .collect();
        Paragraph::new(lines).render(inner, buf);
    }
}

/// Committed entries per second over the last minute, and the client load's commit latency.
pub struct Throughput<'a>(pub &'a App);

impl Widget for Throughput<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.0;
        let inner = framed(" throughput (last 60 s) ", area, buf);
        let history = app.history();
        let avg = if history.is_empty() {
            0
        } else {
            history.iter().sum::<u64>() / history.len() as u64
        };
        let peak = history.iter().copied().max().unwrap_or(0);
        let now = app
            .commits_per_second()
            .map_or_else(|| "-".to_owned(), per_second);
        let (p50, p99) = app
            .sample()
            .map_or((None, None), |s| (s.load.recent.p50, s.load.recent.p99));
        let text = vec![
            Line::from(vec![
                Span::styled(format!("{now}/s"), Style::new().bold()),
                Span::raw(format!(
                    " now · avg {}/s · max {}/s",
                    per_second(avg),
                    per_second(peak)
                )),
            ]),
            Line::from(format!(
                "commit latency p50 {} · p99 {}",
                show_latency(p50),
                show_latency(p99)
            )),
        ];
        let [numbers, chart] =
            Layout::vertical([Constraint::Length(2), Constraint::Min(1)]).areas(inner);
        Paragraph::new(text).render(numbers, buf);
        // The newest points that fit, right-aligned so time runs towards the right edge.
        let width = usize::from(chart.width);
        let shown = history.len().min(width);
        let offset = (width - shown) as u16;
        let chart = Rect {
            x: chart.x + offset,
            width: chart.width - offset,
            ..chart
        };
        Sparkline::default()
            .data(history.range(history.len() - shown..))
            .max(peak.max(1))
            .style(Style::new().fg(Color::Cyan))
            .render(chart, buf);
    }
}

/// The network's mode, its split, and its traffic totals.
pub struct NetworkPanel<'a>(pub &'a App);

impl Widget for NetworkPanel<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.0;
        let inner = framed(" network ", area, buf);
        let Some(sample) = app.sample() else {
            return;
        };
        let net = sample.network;
        let on_off = |on: bool, yes: &'static str, no: &'static str| {
            if on {
                Span::styled(yes, WARN)
            } else {
                Span::raw(no)
            }
        };
        let groups = app.groups();
        let split = if groups.is_empty() {
            Span::raw("all connected")
        } else {
            let shown: Vec<String> = groups.iter().map(|g| show_group(g)).collect();
            Span::styled(shown.join(" "), Style::new().fg(Color::Yellow))
        };
        let cut: Vec<String> = (0..app.nodes())
            .filter(|&i| app.reach(i) != Reach::Majority)
            .map(|i| format!("n{i}"))
            .collect();
        let cut = if cut.is_empty() {
            Span::raw("none")
        } else {
            Span::styled(cut.join(" "), WARN)
        };
        let label = |s: &'static str| Span::styled(format!("{s:<8}"), DIM);
        let lines = vec![
            Line::from(vec![
                label("mode"),
                on_off(net.unreliable, "unreliable", "reliable"),
                Span::styled(" · reorder ", DIM),
                on_off(net.long_reordering, "on", "off"),
            ]),
            Line::from(vec![label("groups"), split]),
            Line::from(vec![label("cut off"), cut]),
            Line::from(vec![
                label("RPCs"),
                Span::raw(compact(net.rpc_total)),
                Span::styled("  bytes ", DIM),
                Span::raw(bytes(net.bytes_total)),
            ]),
        ];
        Paragraph::new(lines).render(inner, buf);
    }
}

/// The latest events that fit, newest at the bottom, each with its time. A long event wraps
/// onto lines indented under its text; only whole events are shown, unless the newest alone
/// does not fit.
pub struct EventLog<'a>(pub &'a App);

/// Columns of an event's time (`mm:ss `).
const EVENT_TIME: usize = 6;

impl Widget for EventLog<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.0;
        let inner = framed(" events ", area, buf);
        let rows = usize::from(inner.height);
        let text_width = usize::from(inner.width).saturating_sub(EVENT_TIME).max(1);
        // Newest first, until the area is full.
        let mut lines: Vec<Line<'_>> = Vec::with_capacity(rows);
        for e in app.events().iter().rev() {
            let style = match e.kind {
                EventKind::Election => Style::new().fg(Color::Yellow),
                EventKind::Leader => Style::new().fg(Color::Green),
                EventKind::StepDown => WARN,
                EventKind::Action => Style::new().fg(Color::Cyan),
                EventKind::Failure => WARN.add_modifier(Modifier::BOLD),
                EventKind::Recovery => Style::new().fg(Color::Green),
                EventKind::Snapshot => SNAPSHOT,
            };
            let mut wrapped = wrap(&e.text, text_width);
            if lines.is_empty() {
                wrapped.truncate(rows);
            } else if lines.len() + wrapped.len() > rows {
                break;
            }
            let secs = e.at.as_secs();
            let time = format!("{:02}:{:02} ", secs / 60, secs % 60);
            let event: Vec<Line<'_>> = wrapped
                .into_iter()
                .enumerate()
                .map(|(k, part)| {
                    let lead = if k == 0 {
                        Span::styled(time.clone(), DIM)
                    } else {
                        Span::raw(" ".repeat(EVENT_TIME))
                    };
                    Line::from(vec![lead, Span::styled(part, style)])
                })
                .collect();
            lines.extend(event.into_iter().rev());
            if lines.len() >= rows {
                break;
            }
        }
        lines.reverse();
        Paragraph::new(lines).render(inner, buf);
    }
}

/// `text` in lines of at most `width` characters, broken at spaces where it can be and inside
/// words longer than a line.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut used = 0;
    for word in text.split(' ') {
        let mut word = word;
        let mut len = word.chars().count();
        if used > 0 && used + 1 + len > width {
            lines.push(std::mem::take(&mut line));
            used = 0;
        }
        if used > 0 {
            line.push(' ');
            used += 1;
        }
        while used + len > width {
            let split = word
                .char_indices()
                .nth(width - used)
                .map_or(word.len(), |(at, _)| at);
            line.push_str(&word[..split]);
            lines.push(std::mem::take(&mut line));
            word = &word[split..];
            len = word.chars().count();
            used = 0;
        }
        line.push_str(word);
        used += len;
    }
    lines.push(line);
    lines
}

/// The help overlay: every key the dashboard offers, in a box in the middle of the screen.
pub struct Help<'a>(pub &'a App);

impl Widget for Help<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.0;
        let lines: Vec<Line<'_>> = KEYS
            .iter()
            .filter(|(_, _, needs)| needs.iter().all(|&kind| app.supports(kind)))
            .map(|(key, what, _)| {
                Line::from(vec![
                    Span::styled(format!(" {key:<8}"), Style::new().bold()),
                    Span::raw(*what),
                ])
            })
            .collect();
        let width = 56.min(area.width);
        let height = (lines.len() as u16 + 2).min(area.height);
        let popup = Rect {
            x: area.x + (area.width - width) / 2,
            y: area.y + (area.height - height) / 2,
            width,
            height,
        };
        Clear.render(popup, buf);
        Paragraph::new(lines)
            .block(Block::bordered().title(" keys "))
            .render(popup, buf);
    }
}

/// Draws a bordered block titled `title` over `area` and returns the area inside it.
fn framed(title: &str, area: Rect, buf: &mut Buffer) -> Rect {
    let block = Block::bordered().title(title);
    let inner = block.inner(area);
    block.render(area, buf);
    inner
}

/// A count in at most six characters: `12345`, `123.4k`, `12.3M`, `1.2G`.
pub(crate) fn compact(n: u64) -> String {
    match n {
        0..100_000 => n.to_string(),
        100_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.1}G", n as f64 / 1e9),
    }
}

/// A rate in at most five characters: `9876`, `12.3k`, `987k`, `1.23M`.
pub(crate) fn per_second(n: u64) -> String {
    match n {
        0..10_000 => n.to_string(),
        10_000..100_000 => format!("{:.1}k", n as f64 / 1e3),
        100_000..1_000_000 => format!("{}k", n / 1_000),
        _ => format!("{:.2}M", n as f64 / 1e6),
    }
}

/// A byte count in at most six characters, decimal units: `512B`, `9.8kB`, `160kB`, `1.6MB`,
/// `16MB`, `1.6GB`.
pub(crate) fn short_bytes(n: u64) -> String {
    let (value, unit) = match n {
        0..1_000 => return format!("{n}B"),
        1_000..1_000_000 => (n as f64 / 1e3, "kB"),
        1_000_000..1_000_000_000 => (n as f64 / 1e6, "MB"),
        _ => (n as f64 / 1e9, "GB"),
    };
    if value < 10.0 {
        format!("{value:.1}{unit}")
    } else {
        format!("{value:.0}{unit}")
    }
}

/// A byte count with a binary-free decimal unit: `512 B`, `12.3 kB`, `4.5 MB`, `1.2 GB`.
pub(crate) fn bytes(n: u64) -> String {
    match n {
        0..1_000 => format!("{n} B"),
        1_000..1_000_000 => format!("{:.1} kB", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        _ => format!("{:.1} GB", n as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_bytes_fit_six_columns() {
        let cases = [
            (0, "0B"),
            (999, "999B"),
            (1_000, "1.0kB"),
            (9_940, "9.9kB"),
            (9_960, "10.0kB"),
            (160_000, "160kB"),
            (999_400, "999kB"),
            (1_600_000, "1.6MB"),
            (16_000_000, "16MB"),
            (2_000_000_000, "2.0GB"),
            (123_000_000_000, "123GB"),
        ];
        for (case, (n, shown)) in cases.into_iter().enumerate() {
            assert_eq!(short_bytes(n), shown, "case {case}");
            assert!(shown.chars().count() <= 6, "case {case}");
        }
    }

    #[test]
    fn wrap_breaks_at_spaces_and_inside_long_words() {
        let cases: [(&str, usize, &[&str]); 6] = [
            ("n2 crashed", 20, &["n2 crashed"]),
            ("n2 crashed", 10, &["n2 crashed"]),
            ("n2 crashed", 9, &["n2", "crashed"]),
            (
                "n3 stopped: storage failed: disk full",
                16,
                &["n3 stopped:", "storage failed:", "disk full"],
            ),
            (
                "/tmp/zeroraft-1234/node-3",
                10,
                &["/tmp/zeror", "aft-1234/n", "ode-3"],
            ),
            ("", 5, &[""]),
        ];
        for (case, (text, width, lines)) in cases.into_iter().enumerate() {
            assert_eq!(wrap(text, width), lines, "case {case}");
        }
    }
}
