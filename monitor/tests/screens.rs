//! The dashboard's rendering: panels into a `Buffer`, whole screens as snapshots at fixed
//! sizes, all from deterministic readings.

mod common;

use std::sync::Arc;
use std::time::Duration;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier};
use ratatui::widgets::Widget;
use zeroraft_engine::{Membership, MembershipStatus, ProgressState, Role};
use zeroraft_monitor::ui::{
    ClusterTable, EventLog, NetworkPanel, Replication, footer_lines, offered_footer_lines,
};
use zeroraft_monitor::{Action, App, Rate};

use common::{Recorder, follower, isolate, leader, sample, set_log, steady};

/// The characters of each row of `buf`.
fn rows(buf: &Buffer) -> Vec<String> {
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
        })
        .collect()
}

fn render(widget: impl Widget, width: u16, height: u16) -> Buffer {
    let mut buf = Buffer::empty(Rect::new(0, 0, width, height));
    widget.render(buf.area, &mut buf);
    buf
}

/// A dashboard that has watched `steady()` for 75 s, its throughput swinging between about
/// 6 000 and 14 000 commits a second, with a leader change at 40 s. Every node writes to its
/// storage 800 times a second, 40 µs a write; the leader's last 4 entries are not durable yet.
fn watched() -> App {
    let mut app = App::new(5, 42);
    for (at, sample) in watched_samples() {
        app.ingest(sample, at);
    }
    app
}

/// The samples [`watched`] takes in, with the time of each.
fn watched_samples() -> Vec<(Duration, zeroraft_monitor::Sample)> {
    let mut samples = Vec::new();
    let mut s = steady();
    let mut commit = 100_000u64;
    for tick in 0..=300u32 {
        let t = f64::from(tick) * 0.25;
        commit += 2_500 + u64::from(tick % 40) * 100 - 1_000 * u64::from(tick % 80 >= 40);
        // Everyone moves with the leader; node 4 trails by 12 000 entries.
        let last = commit + 10;
        for (i, lag) in [(0, 10), (1, 10), (2, 0), (3, 12), (4, 12_000)] {
            let st = Arc::make_mut(&mut s.statuses[i]);
            st.commit_index = commit.min(last - lag);
            st.last_applied = st.commit_index;
            set_log(st, last - lag);
            st.durable_index = st.last_log_index - if i == 2 { 4 } else { 0 };
            st.syncs += 200;
            st.sync_time += Duration::from_micros(40 * 200);
            st.messages_in = u64::from(tick) * 40;
            st.messages_out = u64::from(tick) * if i == 2 { 160 } else { 40 };
            for p in st.peers.iter_mut() {
                p.match_index = last - [10, 10, 0, 12, 12_000][p.id];
            }
        }
        if tick == 160 {
            // Node 2 loses its leadership for a moment and wins it back in term 4.
            let l = Arc::make_mut(&mut s.statuses[2]);
            l.elections_started += 1;
            l.elections_won += 1;
            l.step_downs += 1;
            l.term = 4;
            for i in [0, 1, 3, 4] {
                Arc::make_mut(&mut s.statuses[i]).term = 4;
            }
        }
        samples.push((Duration::from_secs_f64(t), s.clone()));
    }
    samples
}

fn screen(app: &App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|frame| frame.render_widget(app, frame.area()))
        .unwrap();
    terminal
}

#[test]
fn footer_wraps_to_the_width() {
    let text = |width| -> Vec<String> {
        footer_lines(width)
            .iter()
            .map(|line| line.spans.iter().map(|s| s.content.as_ref()).collect())
            .collect()
    };
    assert_eq!(
        text(80),
        [
            "q quit  ? help  0-9←→ node  d dis/connect  c crash  s start  l cut leader",
            "t transfer  m/M split  h heal  u unreliable  r reorder  +/- load  space pause",
        ]
    );
    assert_eq!(text(200).len(), 1);
    for width in [20, 40, 80, 120] {
        for line in text(width) {
            assert!(
                line.chars().count() <= usize::from(width),
                "{width}: {line}"
            );
        }
    }
}

#[test]
fn footer_leaves_out_what_the_cluster_cannot_do() {
    let mut app = App::for_control(&Recorder::remote(steady()), 0);
    app.ingest(steady(), Duration::ZERO);
    let text: Vec<String> = offered_footer_lines(&app, 80)
        .iter()
        .map(|line| line.spans.iter().map(|s| s.content.as_ref()).collect())
        .collect();
    assert_eq!(
        text,
        ["q quit  ? help  0-9←→ node  t transfer  space pause"]
    );
    let everything = App::for_control(&Recorder::new(steady()), 0);
    assert_eq!(offered_footer_lines(&everything, 80), footer_lines(80));
}

/// `steady()` taken in twice, a quarter of a second apart: node `i` wrote `100 * (i + 1)` times
/// in between, `30 * (i + 1)` µs a write.
fn steady_writing() -> App {
    let mut s = steady();
    let mut app = App::new(5, 0);
    app.ingest(s.clone(), Duration::ZERO);
    for (i, status) in s.statuses.iter_mut().enumerate() {
        let st = Arc::make_mut(status);
        let k = i as u32 + 1;
        st.syncs = u64::from(100 * k);
        st.sync_time = Duration::from_micros(u64::from(30 * k)) * 100 * k;
    }
    app.ingest(s, Duration::from_millis(250));
    app
}

#[test]
fn cluster_table_marks_the_leader_and_the_selected_node() {
    let mut app = steady_writing();
    let mut s = app.sample().unwrap().clone();
    isolate(&mut s, 4);
    Arc::make_mut(&mut s.statuses[2]).durable_index = 49_996;
    // In the next quarter of a second, the leader writes 300 times, 1.5 ms a write.
    let leader = Arc::make_mut(&mut s.statuses[2]);
    leader.syncs += 300;
    leader.sync_time += Duration::from_micros(1_500) * 300;
    app.ingest(s, Duration::from_millis(500));
    app.handle_key(KeyEvent::new(KeyCode::Char('4'), KeyModifiers::NONE));
    let buf = render(ClusterTable(&app), 80, 8);
    assert_eq!(
        rows(&buf),
        [
            "┌ cluster ─────────────────────────────────────────────────────────────────────┐",
            "│  node role      term  commit   durable  snap     entries bytes  net   syncs/s│",
            "│  n0   follower  3     49990    49990    40000    9990    160kB  ok    0      │",
            "│  n1   follower  3     49990    49990    40000    9990    160kB  ok    0      │",
            "│  n2   leader    3     50000    49996    40000    10000   160kB  ok    1200   │",
            "│  n3   follower  3     49990    49990    40000    9990    160kB  ok    0      │",
            "│▶ n4   follower  3     38000    38000    30000    8000    128kB  cut   0      │",
            "└──────────────────────────────────────────────────────────────────────────────┘",
        ],
        "at 80 columns the durable index, the snapshot and the log's length stay"
    );
    assert_eq!(buf[(3, 4)].fg, Color::Green, "the leader's row is green");
    assert_eq!(buf[(3, 2)].fg, Color::Reset, "a follower's row is plain");
    assert_eq!(
        buf[(66, 6)].fg,
        Color::Red,
        "a cut-off node's net cell is red"
    );
    let wider = render(ClusterTable(&app), 96, 8);
    assert!(
        rows(&wider)[4].contains(" 1200    1.50ms "),
        "wider, the mean write time is back: {}",
        rows(&wider)[4]
    );
}

#[test]
fn cluster_table_shows_indices_snapshot_log_and_storage_writes() {
    let app = steady_writing();
    let buf = render(ClusterTable(&app), 128, 8);
    assert_eq!(
        rows(&buf),
        [
            "┌ cluster ─────────────────────────────────────────────────────────────────────────────────────────────────────────────────────┐",
            "│  node role      term  leads commit   applied  last     durable  snap     entries bytes  net   syncs/s sync    msg in  msg out│",
            "│▶ n0   follower  3     n2    49990    49990    49990    49990    40000    9990    160kB  ok    400     30µs    50990   50990  │",
            "│  n1   follower  3     n2    49990    49990    49990    49990    40000    9990    160kB  ok    800     60µs    50990   50990  │",
            "│  n2   leader    3     n2    50000    50000    50000    50000    40000    10000   160kB  ok    1200    90µs    51000   123.5k │",
            "│  n3   follower  3     n2    49990    49990    49990    49990    40000    9990    160kB  ok    1600    120µs   50990   50990  │",
            "│  n4   follower  3     n2    38000    38000    38000    38000    30000    8000    128kB  ok    2000    150µs   39000   39000  │",
            "└──────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────┘",
        ],
    );
    // Narrower, columns give way in a fixed order.
    let header = |width| rows(&render(ClusterTable(&app), width, 3))[1].clone();
    let cases: [(u16, &str, &str); 7] = [
        (128, " msg out", ""),
        (127, " applied ", " msg "),
        (111, " last ", " applied "),
        (102, " leads ", " last "),
        (93, " sync ", " leads "),
        (87, " bytes ", " sync "),
        (79, " entries ", " bytes "),
    ];
    for (case, (width, shown, left_out)) in cases.into_iter().enumerate() {
        let header = header(width);
        assert!(header.contains(shown), "case {case}: {header}");
        assert!(
            left_out.is_empty() || !header.contains(left_out),
            "case {case}: {header}"
        );
        for always in [" commit ", " durable ", " snap ", " entries "] {
            assert!(header.contains(always), "case {case}: {header}");
        }
    }
}

#[test]
fn cluster_table_widens_a_column_for_a_long_index_and_marks_no_snapshot() {
    // After some minutes of unlimited load, indices have nine digits; a node that has not
    // compacted yet holds no snapshot.
    let mut s = steady();
    for status in &mut s.statuses {
        let st = Arc::make_mut(status);
        st.commit_index += 123_400_000;
        st.last_applied += 123_400_000;
        st.durable_index += 123_400_000;
        let last = st.last_log_index + 123_400_000;
        set_log(st, last);
    }
    let fresh = Arc::make_mut(&mut s.statuses[0]);
    fresh.snapshot_index = 0;
    fresh.log_entries = fresh.last_log_index;
    fresh.log_bytes = 16 * fresh.log_entries;
    let mut app = App::new(5, 0);
    app.ingest(s, Duration::ZERO);
    let buf = render(ClusterTable(&app), 90, 8);
    assert_eq!(
        rows(&buf)[1..4],
        [
            "│  node role      term  commit    durable   snap      entries bytes  net   syncs/s       │",
            "│▶ n0   follower  3     123449990 123449990 -         123.4M  2.0GB  ok    -             │",
            "│  n1   follower  3     123449990 123449990 123440000 9990    160kB  ok    -             │",
        ]
    );
    // At 80 columns the wider indices push out the log's bytes too.
    let buf = render(ClusterTable(&app), 80, 8);
    assert_eq!(
        rows(&buf)[1..3],
        [
            "│  node role      term  commit    durable   snap      entries net   syncs/s    │",
            "│▶ n0   follower  3     123449990 123449990 -         123.4M  ok    -          │",
        ]
    );
}

#[test]
fn a_crashed_node_is_down_everywhere() {
    let control = Recorder::new(steady());
    let mut app = steady_writing();
    app.perform(Action::Crash(4), &control);
    let mut s = control.sample.borrow().clone();
    let failed = Arc::make_mut(&mut s.statuses[1]);
    failed.killed = true;
    failed.failure = Some("storage failed: disk full".into());
    app.ingest(s, Duration::from_millis(500));
    let table = render(ClusterTable(&app), 80, 8);
    assert_eq!(
        rows(&table)[3],
        "│  n1   failed    3     49990    49990    40000    9990    160kB  ok    -      │"
    );
    assert_eq!(
        rows(&table)[6],
        "│  n4   down      3     38000    38000    30000    8000    128kB  cut   -      │"
    );
    assert_eq!(table[(8, 3)].fg, Color::Red, "a failed node's row is red");
    assert_eq!(
        table[(8, 6)].fg,
        Color::DarkGray,
        "a crashed node's row is grey"
    );
    let replication = render(Replication(&app), 40, 6);
    assert_eq!(
        rows(&replication),
        [
            "┌ replication ─────────────────────────┐",
            "│n0 ███████████████████ lag 0      R0  │",
            "│n1 ▒▒▒▒▒▒▒▒▒▒▒▒▒▒▒▒▒▒▒ down           │",
            "│n3 ███████████████████ lag 2      R3  │",
            "│n4 ▒▒▒▒▒▒▒▒▒▒▒▒▒▒░░░░░ down           │",
            "└──────────────────────────────────────┘",
        ]
    );
    let events = render(EventLog(&app), 60, 5);
    assert_eq!(
        rows(&events)[1..4],
        [
            "│00:00 leader is n2 (term 3)                               │",
            "│00:00 n4 crashed                                          │",
            "│00:00 n1 stopped: storage failed: disk full               │",
        ]
    );
}

#[test]
fn a_full_disk_shows_in_the_table_and_the_event_log() {
    let mut app = steady_writing();
    let mut s = steady();
    Arc::make_mut(&mut s.statuses[1]).disk_full = true;
    app.ingest(s.clone(), Duration::from_millis(500));
    let table = render(ClusterTable(&app), 100, 8);
    let row = &rows(&table)[3];
    assert!(row.contains("n1   follower, disk full "), "{row}");
    assert_eq!(table[(8, 3)].fg, Color::Red, "its row is red");
    assert!(
        !rows(&table)[4].contains("disk full"),
        "only n1's disk is full"
    );
    Arc::make_mut(&mut s.statuses[1]).disk_full = false;
    app.ingest(s, Duration::from_millis(750));
    let table = render(ClusterTable(&app), 100, 8);
    assert!(!rows(&table)[3].contains("disk full"), "room again");
    let events = render(EventLog(&app), 60, 5);
    assert_eq!(
        rows(&events)[2..4],
        [
            "│00:00 n1's disk is full                                   │",
            "│00:00 n1's disk has room again                            │",
        ]
    );
}

#[test]
fn replication_bars_show_each_followers_lag() {
    let mut app = App::new(5, 0);
    app.ingest(steady(), Duration::ZERO);
    let buf = render(Replication(&app), 40, 6);
    assert_eq!(
        rows(&buf),
        [
            "┌ replication ─────────────────────────┐",
            "│n0 ███████████████████ lag 0      R0  │",
            "│n1 ███████████████████ lag 0      R0  │",
            "│n3 ███████████████████ lag 2      R3  │",
            "│n4 ██████████████░░░░░ lag 12000  P3  │",
            "└──────────────────────────────────────┘",
        ]
    );
    assert_eq!(buf[(4, 1)].fg, Color::Green, "caught up");
    assert_eq!(buf[(4, 3)].fg, Color::Yellow, "behind, replicating");
    assert_eq!(buf[(4, 4)].fg, Color::Red, "far behind, probing");

    let mut leaderless = App::new(3, 0);
    leaderless.ingest(
        sample(vec![
            follower(0, 5, None, 10),
            follower(1, 5, None, 10),
            follower(2, 5, None, 10),
        ]),
        Duration::ZERO,
    );
    let buf = render(Replication(&leaderless), 40, 4);
    assert_eq!(rows(&buf)[1], "│no leader                             │");
}

/// `steady()` with n4 cut off and the leader sending it its snapshot: it compacted away the
/// entries n4 needs.
fn snapshot_to_n4() -> zeroraft_monitor::Sample {
    let mut s = steady();
    isolate(&mut s, 4);
    let leader = Arc::make_mut(&mut s.statuses[2]);
    let peer = leader.peers.iter_mut().find(|p| p.id == 4).unwrap();
    peer.state = ProgressState::Snapshot;
    peer.inflight = 0;
    s
}

#[test]
fn a_follower_being_sent_a_snapshot_says_so_in_magenta() {
    let mut app = App::new(5, 0);
    app.ingest(snapshot_to_n4(), Duration::ZERO);
    let buf = render(Replication(&app), 40, 6);
    assert_eq!(
        rows(&buf),
        [
            "┌ replication ─────────────────────────┐",
            "│n0 ███████████████ lag 0      R0      │",
            "│n1 ███████████████ lag 0      R0      │",
            "│n3 ███████████████ lag 2      R3      │",
            "│n4 ███████████░░░░ lag 12000  snapshot│",
            "└──────────────────────────────────────┘",
        ],
        "the bars give the label room"
    );
    assert_eq!(buf[(4, 4)].fg, Color::Magenta, "the bar");
    assert_eq!(buf[(31, 4)].fg, Color::Magenta, "the label");
    assert!(buf[(31, 4)].modifier.contains(Modifier::BOLD), "the label");
    assert_eq!(
        buf[(4, 3)].fg,
        Color::Yellow,
        "the others keep their colours"
    );

    // Down, it is down, whatever the leader's progress says: the bars take their room back.
    let mut s = snapshot_to_n4();
    Arc::make_mut(&mut s.statuses[4]).killed = true;
    app.ingest(s, Duration::from_millis(250));
    let buf = render(Replication(&app), 40, 6);
    assert_eq!(rows(&buf)[4], "│n4 ▒▒▒▒▒▒▒▒▒▒▒▒▒▒░░░░░ down           │");
}

#[test]
fn a_snapshot_installed_shows_in_magenta_in_the_event_log() {
    let mut app = App::new(5, 0);
    let mut s = steady();
    app.ingest(s.clone(), Duration::ZERO);
    let node = Arc::make_mut(&mut s.statuses[4]);
    node.snapshots_installed = 1;
    node.snapshot_index = 50_000;
    app.ingest(s, Duration::from_secs(61));
    let buf = render(EventLog(&app), 60, 4);
    assert_eq!(
        rows(&buf)[1..3],
        [
            "│00:00 leader is n2 (term 3)                               │",
            "│01:01 n4 installed a snapshot, snapshot index now 50000   │",
        ]
    );
    assert_eq!(buf[(7, 2)].fg, Color::Magenta);
}

#[test]
fn network_panel_shows_faults_and_groups() {
    let mut s = steady();
    s.network.unreliable = true;
    let n = 5;
    for (a, b) in [(0, 3), (0, 4), (1, 3), (1, 4), (2, 3), (2, 4)] {
        s.links[a * n + b] = false;
        s.links[b * n + a] = false;
    }
    let mut app = App::new(5, 0);
    app.ingest(s, Duration::ZERO);
    let buf = render(NetworkPanel(&app), 34, 6);
    assert_eq!(
        rows(&buf),
        [
            "┌ network ───────────────────────┐",
            "│mode    unreliable · reorder off│",
            "│groups  {0,1,2} {3,4}           │",
            "│cut off n3 n4                   │",
            "│RPCs    987.7k  bytes 123.5 MB  │",
            "└────────────────────────────────┘",
        ]
    );
    assert_eq!(buf[(9, 1)].fg, Color::Red, "unreliable is a fault");
}

#[test]
fn long_events_wrap_and_only_whole_events_show() {
    let control = Recorder::new(steady());
    let mut app = App::new(5, 0);
    app.ingest(steady(), Duration::ZERO);
    *control.restart_error.borrow_mut() =
        Some("cannot open node 0's storage: /tmp/zeroraft-7/node-0 is locked".into());
    app.perform(Action::Crash(0), &control);
    app.perform(Action::Restart(0), &control);
    let buf = render(EventLog(&app), 44, 6);
    assert_eq!(
        rows(&buf),
        [
            "┌ events ──────────────────────────────────┐",
            "│00:00 n0 crashed                          │",
            "│00:00 n0 did not restart: cannot open node│",
            "│      0's storage: /tmp/zeroraft-7/node-0 │",
            "│      is locked                           │",
            "└──────────────────────────────────────────┘",
        ],
        "the first event does not fit with the others and is left out"
    );
    let buf = render(EventLog(&app), 44, 4);
    assert_eq!(
        rows(&buf)[1..3],
        [
            "│00:00 n0 did not restart: cannot open node│",
            "│      0's storage: /tmp/zeroraft-7/node-0 │",
        ],
        "the newest event alone does not fit: its start shows"
    );
}

#[test]
fn screen_steady_state() {
    insta::assert_snapshot!(screen(&watched(), 80, 24).backend());
}

#[test]
fn screen_help_overlay() {
    let mut app = watched();
    app.handle_key(KeyEvent::new(KeyCode::Char('?'), KeyModifiers::NONE));
    insta::assert_snapshot!(screen(&app, 80, 24).backend());
}

/// [`watched`] as a dashboard of a cluster that supports leadership transfers only and runs no
/// load of its own (one of processes, watched over their client ports).
fn watched_remotely() -> App {
    let control = Recorder::remote(steady());
    let mut app = App::for_control(&control, 42);
    for (at, mut sample) in watched_samples() {
        sample.load = zeroraft_monitor::LoadSample::default();
        app.ingest(sample, at);
    }
    app
}

#[test]
fn screen_remote_steady_state() {
    let mut app = watched_remotely();
    // A key for what the cluster cannot do says so in the log.
    app.handle_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::NONE));
    insta::assert_snapshot!(screen(&app, 80, 24).backend());
}

#[test]
fn screen_remote_help_overlay() {
    let mut app = watched_remotely();
    app.handle_key(KeyEvent::new(KeyCode::Char('?'), KeyModifiers::NONE));
    insta::assert_snapshot!(screen(&app, 80, 24).backend());
}

#[test]
fn screen_split_unreliable_paused_without_leader() {
    let mut app = watched();
    let mut s = app.sample().unwrap().clone();
    let control = Recorder::new(s.clone());
    app.perform(
        Action::Partition {
            leader_in_minority: true,
        },
        &control,
    );
    app.perform(Action::SetUnreliable(true), &control);
    app.perform(Action::SetRate(Rate::Unlimited), &control);
    // The minority the app chose: cut it off in the reading, and let the old leader lose.
    let minority: Vec<usize> = control.partitions.borrow()[0].last().unwrap().clone();
    let n = 5;
    for &a in &minority {
        for b in (0..n).filter(|b| !minority.contains(b)) {
            s.links[a * n + b] = false;
            s.links[b * n + a] = false;
        }
    }
    s.network.unreliable = true;
    s.load.rate = Rate::Unlimited;
    for i in 0..n {
        let st = Arc::make_mut(&mut s.statuses[i]);
        if !minority.contains(&i) {
            st.term = 5;
            st.leader = None;
            let candidate = (0..n).find(|j| !minority.contains(j)) == Some(i);
            st.role = if candidate {
                Role::Candidate
            } else {
                Role::Follower
            };
            st.elections_started += u64::from(candidate);
        }
        if i == 2 {
            st.role = Role::Follower;
            st.step_downs += 1;
            st.peers.clear();
        }
    }
    app.ingest(s, Duration::from_secs(76));
    app.handle_key(KeyEvent::new(KeyCode::Char(' '), KeyModifiers::NONE));
    insta::assert_snapshot!(screen(&app, 80, 24).backend());
}

#[test]
fn screen_follower_restarted_and_catching_up() {
    let mut app = watched();
    let control = Recorder::new(app.sample().unwrap().clone());
    app.handle_key(KeyEvent::new(KeyCode::Char('3'), KeyModifiers::NONE));
    app.perform(Action::Crash(3), &control);
    app.ingest(control.sample.borrow().clone(), Duration::from_secs(76));
    app.perform(Action::Restart(3), &control);
    // A second later the others have committed 8 000 more entries, writing 800 times, and the
    // leader has reached n3 and is sending it what it missed.
    let mut s = control.sample.borrow().clone();
    for i in [0, 1, 2, 4] {
        let st = Arc::make_mut(&mut s.statuses[i]);
        st.commit_index += 8_000;
        st.last_applied += 8_000;
        set_log(st, st.last_log_index + 8_000);
        st.durable_index += 8_000;
        st.syncs += 800;
        st.sync_time += Duration::from_micros(40 * 800);
        for p in st.peers.iter_mut().filter(|p| p.id != 3) {
            p.match_index += 8_000;
        }
    }
    let leader = Arc::make_mut(&mut s.statuses[2]);
    let last = leader.last_log_index;
    leader
        .peers
        .iter_mut()
        .find(|p| p.id == 3)
        .unwrap()
        .match_index = last - 4_000;
    let node = Arc::make_mut(&mut s.statuses[3]);
    node.durable_index = last - 4_000;
    node.commit_index = last - 4_100;
    node.last_applied = last - 4_100;
    set_log(node, last - 4_000);
    node.leader = Some(2);
    node.syncs = 120;
    node.sync_time = Duration::from_micros(40 * 120);
    app.ingest(s, Duration::from_secs(77));
    insta::assert_snapshot!(screen(&app, 80, 24).backend());
}

#[test]
fn screen_cut_off_follower_is_sent_a_snapshot() {
    let mut app = watched();
    let control = Recorder::new(app.sample().unwrap().clone());
    app.handle_key(KeyEvent::new(KeyCode::Char('4'), KeyModifiers::NONE));
    app.perform(Action::Disconnect(4), &control);
    // Two seconds later the leader has compacted past what n4 holds and sends it its snapshot;
    // n3 has installed one too.
    let mut s = control.sample.borrow().clone();
    let leader = Arc::make_mut(&mut s.statuses[2]);
    let peer = leader.peers.iter_mut().find(|p| p.id == 4).unwrap();
    peer.state = ProgressState::Snapshot;
    peer.inflight = 0;
    Arc::make_mut(&mut s.statuses[3]).snapshots_installed += 1;
    app.ingest(s, Duration::from_secs(77));
    insta::assert_snapshot!(screen(&app, 80, 24).backend());
}

#[test]
fn screen_nine_nodes_wide() {
    let statuses = (0..9)
        .map(|i| {
            if i == 5 {
                leader(
                    5,
                    12,
                    1_234_567,
                    &[
                        (0, 1_234_567),
                        (1, 1_234_560),
                        (2, 1_234_567),
                        (3, 1_100_000),
                        (4, 1_234_567),
                        (6, 1_234_567),
                        (7, 1_234_500),
                        (8, 1_234_567),
                    ],
                )
            } else {
                follower(i, 12, Some(5), 1_234_500)
            }
        })
        .collect();
    let mut app = App::new(9, 0);
    app.ingest(sample(statuses), Duration::from_secs(3_725));
    insta::assert_snapshot!(screen(&app, 120, 32).backend());
}

#[test]
fn tiny_terminals_do_not_break_rendering() {
    let app = watched();
    let mut with_help = watched();
    with_help.handle_key(KeyEvent::new(KeyCode::Char('?'), KeyModifiers::NONE));
    for (width, height) in [(1, 1), (20, 5), (40, 10), (80, 12), (200, 60)] {
        screen(&app, width, height);
        screen(&with_help, width, height);
    }
    // Before the first sample.
    screen(&App::new(5, 0), 80, 24);
}

/// `steady()` (n2 leads, five nodes) in the middle of a change from voters n0 n1 n2 to voters
/// n0 n1 n3 with learner n4: every node has the joint configuration in force, at entry 50 000,
/// not yet committed.
fn changing_members() -> App {
    let old = Membership::new([0, 1, 2], []).unwrap();
    let target = Membership::new([0, 1, 3], [4]).unwrap();
    let joint = MembershipStatus {
        membership: old.enter_joint(&target).unwrap(),
        index: 50_000,
        committed: false,
    };
    let mut s = steady();
    for status in &mut s.statuses {
        Arc::make_mut(status).membership = Some(joint);
    }
    let mut app = App::new(5, 42);
    app.ingest(s, Duration::from_millis(250));
    app
}

#[test]
fn cluster_table_shows_what_each_node_is_in_the_configuration() {
    let mut app = changing_members();
    let buf = render(ClusterTable(&app), 80, 8);
    assert_eq!(
        rows(&buf),
        [
            "┌ cluster · joint n0 n1 n2 → n0 n1 n3 · learners n4 · entry 50000, uncommitted ┐",
            "│  node role      member  term  commit   durable  snap     net   syncs/s       │",
            "│▶ n0   follower  voter   3     49990    49990    40000    ok    -             │",
            "│  n1   follower  voter   3     49990    49990    40000    ok    -             │",
            "│  n2   leader    leaving 3     50000    50000    40000    ok    -             │",
            "│  n3   follower  joining 3     49990    49990    40000    ok    -             │",
            "│  n4   follower  learner 3     38000    38000    30000    ok    -             │",
            "└──────────────────────────────────────────────────────────────────────────────┘",
        ],
        "at 80 columns the member column takes the place of the log's bytes and length"
    );
    assert_eq!(buf[(18, 5)].fg, Color::Yellow, "a joining voter is yellow");

    // The joint configuration commits and the leader leaves it: n2 is no member any more, and
    // the leader's configuration is the one shown even while a follower lags behind.
    let mut s = app.sample().unwrap().clone();
    let settled = MembershipStatus {
        membership: Membership::new([0, 1, 3], [4]).unwrap(),
        index: 50_001,
        committed: true,
    };
    Arc::make_mut(&mut s.statuses[2]).membership = Some(settled);
    app.ingest(s, Duration::from_millis(500));
    let rows = rows(&render(ClusterTable(&app), 80, 8));
    assert!(
        rows[0].starts_with("┌ cluster · voters n0 n1 n3 · learners n4 · entry 50001 ─"),
        "{}",
        rows[0]
    );
    let member = |row: &str| row.split_whitespace().nth(3).unwrap_or("").to_owned();
    let shown: Vec<String> = rows[2..7].iter().map(|r| member(r)).collect();
    assert_eq!(shown, ["voter", "voter", "none", "voter", "learner"]);
}

#[test]
fn cluster_table_leaves_out_the_member_column_when_no_node_reports_a_configuration() {
    let mut app = App::new(5, 42);
    app.ingest(steady(), Duration::from_millis(250));
    assert_eq!(app.membership(), None);
    let rows = rows(&render(ClusterTable(&app), 120, 8));
    assert!(rows[0].starts_with("┌ cluster ─"), "{}", rows[0]);
    assert!(!rows[1].contains("member"), "{}", rows[1]);
}

#[test]
fn screen_membership_change_joint() {
    insta::assert_snapshot!(screen(&changing_members(), 80, 24).backend());
}
