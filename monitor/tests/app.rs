//! The dashboard's state and key handling, without a terminal: keys in, actions and state out.

mod common;

use std::sync::Arc;
use std::time::Duration;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use zeroraft_engine::Role;
use zeroraft_monitor::{Action, ActionKind, App, EventKind, Rate, Reach, SyncRate};

use common::{Recorder, isolate, restarted, steady};

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn ch(c: char) -> KeyEvent {
    key(KeyCode::Char(c))
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn app_with(sample: zeroraft_monitor::Sample) -> App {
    let mut app = App::new(sample.statuses.len(), 7);
    app.ingest(sample, Duration::ZERO);
    app
}

#[test]
fn keys_map_to_actions_and_view_changes() {
    // (key, action expected, selected node after, paused after, help after)
    let cases: Vec<(KeyEvent, Option<Action>, usize, bool, bool)> = vec![
        (ch('3'), None, 3, false, false),
        (ch('7'), None, 3, false, false), // no node 7: selection unchanged
        (key(KeyCode::Right), None, 4, false, false),
        (key(KeyCode::Right), None, 0, false, false), // wraps around
        (key(KeyCode::Left), None, 4, false, false),
        (key(KeyCode::Up), None, 3, false, false),
        (ch('d'), Some(Action::Disconnect(3)), 3, false, false),
        (ch('c'), Some(Action::Crash(3)), 3, false, false),
        (ch('s'), Some(Action::Restart(3)), 3, false, false),
        (ch('l'), Some(Action::CutLeader), 3, false, false),
        (
            ch('m'),
            Some(Action::Partition {
                leader_in_minority: true,
            }),
            3,
            false,
            false,
        ),
        (
            ch('M'),
            Some(Action::Partition {
                leader_in_minority: false,
            }),
            3,
            false,
            false,
        ),
        (ch('h'), Some(Action::Heal), 3, false, false),
        (ch('u'), Some(Action::SetUnreliable(true)), 3, false, false),
        (
            ch('r'),
            Some(Action::SetLongReordering(true)),
            3,
            false,
            false,
        ),
        (
            ch('+'),
            Some(Action::SetRate(Rate::PerSecond(20_000))),
            3,
            false,
            false,
        ),
        (
            ch('-'),
            Some(Action::SetRate(Rate::PerSecond(5_000))),
            3,
            false,
            false,
        ),
        (ch(' '), None, 3, true, false),
        (ch(' '), None, 3, false, false),
        (ch('?'), None, 3, false, true),
        (ch('l'), None, 3, false, false), // any key closes help, and does nothing else
        (ch('x'), None, 3, false, false), // unknown keys are ignored
        (ch('q'), Some(Action::Quit), 3, false, false),
        (
            KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL),
            Some(Action::Quit),
            3,
            false,
            false,
        ),
    ];
    let mut app = app_with(steady());
    for (case, (k, action, selected, paused, help)) in cases.into_iter().enumerate() {
        assert_eq!(app.handle_key(k), action, "case {case}: action of {k:?}");
        assert_eq!(app.selected(), selected, "case {case}: selected");
        assert_eq!(app.paused(), paused, "case {case}: paused");
        assert_eq!(app.help(), help, "case {case}: help");
    }
}

#[test]
fn toggles_follow_the_cluster_state() {
    let mut sample = steady();
    sample.network.unreliable = true;
    sample.network.long_reordering = true;
    sample.load.rate = Rate::Unlimited;
    isolate(&mut sample, 1);
    let mut app = app_with(sample);
    let cases = [
        (ch('u'), Action::SetUnreliable(false)),
        (ch('r'), Action::SetLongReordering(false)),
        (ch('+'), Action::SetRate(Rate::Unlimited)),
        (ch('-'), Action::SetRate(Rate::PerSecond(1_000_000))),
        (ch('1'), Action::Connect(1)), // selects node 1 first: see below
    ];
    for (case, (k, expected)) in cases.into_iter().enumerate() {
        if k == ch('1') {
            assert_eq!(app.handle_key(k), None, "case {case}: selecting");
            assert_eq!(app.handle_key(ch('d')), Some(expected), "case {case}");
        } else {
            assert_eq!(app.handle_key(k), Some(expected), "case {case}");
        }
    }
}

#[test]
fn ctrl_c_quits_even_in_help() {
    let mut app = app_with(steady());
    app.handle_key(ch('?'));
    assert!(app.help());
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(app.handle_key(ctrl_c), Some(Action::Quit));
}

#[test]
fn throughput_is_commits_per_second_over_the_last_minute() {
    let mut app = App::new(5, 1);
    let mut sample = steady();
    // 4 samples a second, the commit index growing by 2 500 a sample: 10 000/s.
    for tick in 0..4 * 70u32 {
        let commit = 1_000 + u64::from(tick) * 2_500;
        let leader = Arc::make_mut(&mut sample.statuses[2]);
        leader.commit_index = commit;
        app.ingest(sample.clone(), secs(f64::from(tick) * 0.25));
        if tick == 3 {
            assert_eq!(app.commits_per_second(), None, "no full second yet");
        }
    }
    assert_eq!(app.history().len(), 60, "a minute of points");
    assert!(
        app.history().iter().all(|&r| r == 10_000),
        "{:?}",
        app.history()
    );
    assert_eq!(app.commits_per_second(), Some(10_000));
    assert_eq!(app.commit_index(), 1_000 + 279 * 2_500);
}

#[test]
fn pause_freezes_the_display_and_restarts_the_rate_bucket() {
    let mut app = App::new(5, 1);
    let mut sample = steady();
    app.ingest(sample.clone(), secs(0.0));
    Arc::make_mut(&mut sample.statuses[2]).commit_index = 60_000;
    app.ingest(sample.clone(), secs(1.0));
    assert_eq!(app.commits_per_second(), Some(10_000));
    app.handle_key(ch(' '));
    Arc::make_mut(&mut sample.statuses[2]).commit_index = 500_000;
    app.ingest(sample.clone(), secs(2.0));
    assert_eq!(
        app.commit_index(),
        60_000,
        "paused: the sample is not taken in"
    );
    assert_eq!(app.now(), secs(1.0));
    app.handle_key(ch(' '));
    app.ingest(sample.clone(), secs(30.0));
    Arc::make_mut(&mut sample.statuses[2]).commit_index = 505_000;
    app.ingest(sample.clone(), secs(31.0));
    // The pause does not show up as one huge second.
    assert_eq!(
        app.history().iter().copied().collect::<Vec<_>>(),
        [10_000, 5_000]
    );
}

#[test]
fn elections_wins_step_downs_and_leader_changes_are_logged() {
    let mut app = app_with(steady());
    let mut sample = steady();
    // Node 2 steps down; node 0 starts an election for term 4.
    let old = Arc::make_mut(&mut sample.statuses[2]);
    old.role = Role::Follower;
    old.term = 4;
    old.step_downs = 1;
    old.leader = None;
    let candidate = Arc::make_mut(&mut sample.statuses[0]);
    candidate.role = Role::Candidate;
    candidate.term = 4;
    candidate.elections_started = 2;
    app.ingest(sample.clone(), secs(5.0));
    let winner = Arc::make_mut(&mut sample.statuses[0]);
    winner.role = Role::Leader;
    winner.elections_won = 1;
    app.ingest(sample, secs(5.5));
    let log: Vec<(u64, EventKind, &str)> = app
        .events()
        .iter()
        .map(|e| (e.at.as_millis() as u64, e.kind, e.text.as_str()))
        .collect();
    assert_eq!(
        log,
        [
            (0, EventKind::Leader, "leader is n2 (term 3)"),
            (
                5_000,
                EventKind::Election,
                "n0 started an election, term 4 (2 in a row)"
            ),
            (5_000, EventKind::StepDown, "n2 stepped down, now term 4"),
            (5_000, EventKind::Leader, "no leader (n2 lost it)"),
            (5_500, EventKind::Leader, "n0 won the election for term 4"),
            (5_500, EventKind::Leader, "leader is n0 (term 4)"),
        ]
    );
    // The first sample already counted node 2's election; these are the later two.
    assert_eq!(app.elections(), 3);
    assert_eq!(app.leader_changes(), 1);
    assert_eq!(app.leader(), Some((0, 4)));
}

#[test]
fn a_node_failing_elections_updates_one_line() {
    let mut app = app_with(steady());
    let mut sample = steady();
    for (k, term) in (4..8u64).enumerate() {
        let cut_off = Arc::make_mut(&mut sample.statuses[4]);
        cut_off.role = Role::Candidate;
        cut_off.term = term;
        cut_off.elections_started += 1;
        app.ingest(sample.clone(), secs(1.0 + k as f64));
    }
    let texts: Vec<&str> = app.events().iter().map(|e| e.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "leader is n2 (term 3)",
            "n4 started an election, term 7 (4 in a row)"
        ]
    );
    assert_eq!(app.elections(), 5, "every election still counts");
}

#[test]
fn actions_reach_the_cluster_and_the_log() {
    let control = Recorder::new(steady());
    let mut app = app_with(steady());
    let actions = [
        (
            Action::TransferTo(1),
            "transfer 2 -> 1",
            "n2 (term 3) hands its leadership to n1",
        ),
        (
            Action::CutLeader,
            "disconnect 2",
            "cut off leader n2 (term 3)",
        ),
        (Action::Disconnect(4), "disconnect 4", "disconnected n4"),
        (Action::Connect(4), "connect 4", "reconnected n4"),
        (
            Action::SetUnreliable(true),
            "unreliable true",
            "network unreliable",
        ),
        (
            Action::SetLongReordering(true),
            "long reordering true",
            "long reordering on",
        ),
        (
            Action::SetRate(Rate::PerSecond(20_000)),
            "rate 20k/s",
            "client load 20k/s",
        ),
    ];
    for (case, (action, call, text)) in actions.into_iter().enumerate() {
        app.perform(action, &control);
        assert_eq!(control.calls.borrow().last().unwrap(), call, "case {case}");
        let event = app.events().back().unwrap();
        assert_eq!(
            (event.kind, event.text.as_str()),
            (EventKind::Action, text),
            "case {case}"
        );
    }
    // The new settings show at once, without waiting for the next sample.
    let shown = app.sample().unwrap();
    assert!(shown.network.unreliable && shown.network.long_reordering);
    assert_eq!(shown.load.rate, Rate::PerSecond(20_000));

    control.calls.borrow_mut().clear();
    app.perform(Action::Heal, &control);
    assert_eq!(
        *control.calls.borrow(),
        [
            "partition [[0, 1, 2, 3, 4]]",
            "unreliable false",
            "long reordering false"
        ]
    );
    app.perform(Action::Quit, &control);
    assert_eq!(
        control.calls.borrow().len(),
        3,
        "quitting asks nothing of the cluster"
    );
}

#[test]
fn a_cluster_that_cannot_do_something_is_not_asked_to() {
    let control = Recorder::remote(steady());
    let mut app = App::for_control(&control, 7);
    app.ingest(steady(), Duration::ZERO);
    assert!(app.supports(ActionKind::TransferLeadership));
    assert!(!app.supports(ActionKind::Crash));
    // (key, what the event log says)
    let cases = [
        ('d', "disconnecting a node: not available on this cluster"),
        ('c', "crashing a node: not available on this cluster"),
        ('s', "restarting a node: not available on this cluster"),
        ('l', "cutting off the leader: not available on this cluster"),
        ('m', "splitting the network: not available on this cluster"),
        ('M', "splitting the network: not available on this cluster"),
        ('h', "healing the network: not available on this cluster"),
        ('u', "the unreliable network: not available on this cluster"),
        ('r', "long reordering: not available on this cluster"),
        (
            '+',
            "changing the client load: not available on this cluster",
        ),
        (
            '-',
            "changing the client load: not available on this cluster",
        ),
    ];
    for (case, (c, text)) in cases.into_iter().enumerate() {
        let before = app.events().len();
        assert_eq!(app.handle_key(ch(c)), None, "case {case}: `{c}`");
        assert_eq!(app.events().len(), before + 1, "case {case}: one line");
        let event = app.events().back().unwrap();
        assert_eq!(
            (event.kind, event.text.as_str()),
            (EventKind::Action, text),
            "case {case}: `{c}`"
        );
    }
    // An action handed over directly is refused the same way.
    app.perform(Action::Crash(1), &control);
    assert_eq!(
        app.events().back().unwrap().text,
        "crashing a node: not available on this cluster"
    );
    assert!(control.calls.borrow().is_empty(), "{:?}", control.calls);
    // What it supports still works, and the view keys too.
    assert_eq!(app.handle_key(ch('1')), None);
    assert_eq!(app.handle_key(ch('t')), Some(Action::TransferTo(1)));
    app.perform(Action::TransferTo(1), &control);
    assert_eq!(*control.calls.borrow(), ["transfer 2 -> 1"]);
    assert_eq!(app.handle_key(ch('q')), Some(Action::Quit));
    // A cluster that supports everything is offered everything.
    let all = App::for_control(&Recorder::new(steady()), 7);
    for action in [
        Action::Crash(0),
        Action::Heal,
        Action::Restart(0),
        Action::TransferTo(1),
    ] {
        assert!(all.offers(action), "{action:?}");
    }
}

#[test]
fn transferring_to_the_leader_itself_asks_nothing_of_the_cluster() {
    let control = Recorder::new(steady());
    let mut app = app_with(steady());
    app.perform(Action::TransferTo(2), &control);
    assert!(control.calls.borrow().is_empty());
    assert_eq!(app.events().back().unwrap().text, "n2 already leads");
}

#[test]
fn partitions_put_the_leader_on_the_side_asked_for() {
    let control = Recorder::new(steady());
    for seed in 0..20 {
        for leader_in_minority in [true, false] {
            let mut app = App::new(5, seed);
            app.ingest(steady(), Duration::ZERO);
            control.partitions.borrow_mut().clear();
            app.perform(Action::Partition { leader_in_minority }, &control);
            let groups = control.partitions.borrow()[0].clone();
            let (majority, minority) = (&groups[0], &groups[1]);
            assert_eq!(
                (majority.len(), minority.len()),
                (3, 2),
                "seed {seed}: {groups:?}"
            );
            assert_eq!(
                minority.contains(&2),
                leader_in_minority,
                "seed {seed}: {groups:?}"
            );
            let text = &app.events().back().unwrap().text;
            let side = if leader_in_minority {
                "minority"
            } else {
                "majority"
            };
            assert!(
                text.ends_with(&format!(", n2 in {side}")),
                "seed {seed}: {text}"
            );
        }
    }
}

#[test]
fn reach_and_groups_come_from_the_links() {
    let mut sample = steady();
    isolate(&mut sample, 4);
    let n = 5;
    // Split {0,1,2} from {3}; 4 is alone.
    for a in [0, 1, 2] {
        sample.links[a * n + 3] = false;
        sample.links[3 * n + a] = false;
    }
    let app = app_with(sample);
    let reach: Vec<Reach> = (0..n).map(|i| app.reach(i)).collect();
    assert_eq!(
        reach,
        [
            Reach::Majority,
            Reach::Majority,
            Reach::Majority,
            Reach::Isolated,
            Reach::Isolated
        ]
    );
    assert_eq!(app.groups(), [vec![0, 1, 2], vec![3], vec![4]]);
    assert!(
        app_with(steady()).groups().is_empty(),
        "all connected: no groups"
    );
}

#[test]
fn headless_lines_sum_up_the_state() {
    let mut app = App::new(5, 1);
    let mut sample = steady();
    // Node 3 installed two snapshots before the dashboard started; node 1 holds the longest log
    // of the nodes that are up, node 4, which is down, a longer one.
    Arc::make_mut(&mut sample.statuses[3]).snapshots_installed = 2;
    let long = Arc::make_mut(&mut sample.statuses[1]);
    long.log_entries = 12_345;
    long.log_bytes = 197_520;
    let down = Arc::make_mut(&mut sample.statuses[4]);
    down.killed = true;
    down.log_entries = 20_000;
    down.log_bytes = 320_000;
    app.ingest(sample.clone(), secs(0.0));
    Arc::make_mut(&mut sample.statuses[2]).commit_index = 60_000;
    app.ingest(sample, secs(1.0));
    assert_eq!(
        app.summary_line(),
        "t=   1s leader=n2 term=3 commit=60000 commits/s=10000 p50=62µs p99=480µs \
         syncs/s=0 sync=- rpcs=987654 bytes=123456789 elections=1 \
         log_entries=12345 log_bytes=197520 snapshots_installed=2"
    );
    assert_eq!(
        app.final_summary(secs(2.0)),
        "summary: 2.0 s, 5 nodes, commit index 60000 (30000/s), 49990 client commands committed, \
         latency p50 60µs p99 510µs, 1 elections, 0 leader changes, 987654 RPCs, 123456789 bytes, \
         0 storage writes (mean -), 2 snapshots installed"
    );
    // With storage writes: the line has the last interval's, the summary everything written.
    let mut sample = app.sample().unwrap().clone();
    // Node 4 is back, a new incarnation: its writes all count.
    Arc::make_mut(&mut sample.statuses[4]).killed = false;
    for (i, status) in sample.statuses.iter_mut().enumerate() {
        let st = Arc::make_mut(status);
        st.syncs = 1_000 * (i as u64 + 1);
        st.sync_time = Duration::from_micros(50) * 1_000 * (i as u32 + 1);
    }
    app.ingest(sample, secs(2.0));
    assert!(
        app.summary_line()
            .contains(" syncs/s=15000 sync=50µs rpcs="),
        "{}",
        app.summary_line()
    );
    assert!(
        app.final_summary(secs(2.0))
            .contains(", 15000 storage writes (mean 50µs), "),
        "{}",
        app.final_summary(secs(2.0))
    );
}

#[test]
fn crash_and_start_keys_act_on_the_selected_node() {
    let control = Recorder::new(steady());
    let mut app = app_with(steady());
    app.handle_key(ch('4'));
    let crash = app.handle_key(ch('c')).expect("c is an action");
    assert_eq!(crash, Action::Crash(4));
    app.perform(crash, &control);
    assert_eq!(*control.calls.borrow(), ["crash 4"]);
    assert!(app.is_down(4), "shown down at once, before the next sample");
    assert_eq!(app.events().back().unwrap().text, "n4 crashed");

    // Crashing it again asks nothing of the cluster.
    app.perform(Action::Crash(4), &control);
    assert_eq!(control.calls.borrow().len(), 1);
    assert_eq!(app.events().back().unwrap().text, "n4 is already down");

    let start = app.handle_key(ch('s')).expect("s is an action");
    assert_eq!(start, Action::Restart(4));
    app.perform(start, &control);
    assert_eq!(
        *control.calls.borrow(),
        ["crash 4", "restart 4", "connect 4"],
        "restarted, then connected"
    );
    assert!(!app.is_down(4));
    assert!(app.is_catching_up(4));
    let event = app.events().back().unwrap();
    assert_eq!(
        (event.kind, event.text.as_str()),
        (
            EventKind::Action,
            "n4 restarted from its storage at term 3, log 38000"
        )
    );

    // Starting a node that is up asks nothing of the cluster either.
    control.calls.borrow_mut().clear();
    app.perform(Action::Restart(1), &control);
    assert!(control.calls.borrow().is_empty());
    assert_eq!(
        app.events().back().unwrap().text,
        "n1 is up: crash it first (c)"
    );
}

#[test]
fn a_restart_that_fails_is_logged_and_the_node_stays_down() {
    let control = Recorder::new(steady());
    let mut app = app_with(steady());
    app.perform(Action::Crash(0), &control);
    *control.restart_error.borrow_mut() = Some("cannot open node 0's storage: locked".into());
    app.perform(Action::Restart(0), &control);
    assert_eq!(
        *control.calls.borrow(),
        ["crash 0", "restart 0"],
        "not connected"
    );
    let event = app.events().back().unwrap();
    assert_eq!(
        (event.kind, event.text.as_str()),
        (
            EventKind::Failure,
            "n0 did not restart: cannot open node 0's storage: locked"
        )
    );
    assert!(app.is_down(0));
    assert!(!app.is_catching_up(0));
}

#[test]
fn a_restarted_node_is_logged_when_it_catches_up_with_the_leader() {
    let control = Recorder::new(steady());
    let mut app = app_with(steady());
    app.perform(Action::Crash(4), &control);
    app.ingest(control.sample.borrow().clone(), secs(1.0));
    app.perform(Action::Restart(4), &control);
    // The leader moves on to 52 000 and has not heard from the new incarnation yet: its match
    // index is what it knew before the crash.
    let mut sample = control.sample.borrow().clone();
    let leader = Arc::make_mut(&mut sample.statuses[2]);
    leader.commit_index = 52_000;
    leader.last_log_index = 52_000;
    app.ingest(sample.clone(), secs(1.25));
    assert!(app.is_catching_up(4), "still behind");
    let leader = Arc::make_mut(&mut sample.statuses[2]);
    leader
        .peers
        .iter_mut()
        .find(|p| p.id == 4)
        .unwrap()
        .match_index = 52_000;
    let node = Arc::make_mut(&mut sample.statuses[4]);
    node.last_log_index = 52_000;
    app.ingest(sample, secs(3.5));
    assert!(!app.is_catching_up(4));
    let event = app.events().back().unwrap();
    assert_eq!(
        (event.at, event.kind, event.text.as_str()),
        (
            secs(3.5),
            EventKind::Recovery,
            "n4 caught up with leader n2 after 2.5 s, log 52000"
        )
    );
}

#[test]
fn a_node_that_stops_on_a_storage_failure_is_down_and_the_log_says_why() {
    let mut app = app_with(steady());
    let mut sample = steady();
    let failed = Arc::make_mut(&mut sample.statuses[3]);
    failed.killed = true;
    failed.failure = Some("storage failed: No space left on device (os error 28)".into());
    app.ingest(sample.clone(), secs(1.0));
    app.ingest(sample, secs(1.25));
    assert!(app.is_down(3));
    let failures: Vec<&str> = app
        .events()
        .iter()
        .filter(|e| e.kind == EventKind::Failure)
        .map(|e| e.text.as_str())
        .collect();
    assert_eq!(
        failures,
        ["n3 stopped: storage failed: No space left on device (os error 28)"],
        "logged once"
    );
    assert_eq!(app.sync_rate(3), None, "a node that is down writes nothing");
}

#[test]
fn sync_rates_come_from_the_last_two_samples() {
    let mut app = App::new(5, 1);
    let mut sample = steady();
    assert_eq!(app.sync_rate(0), None, "no sample yet");
    app.ingest(sample.clone(), secs(0.0));
    assert_eq!(app.sync_rate(0), None, "one sample is no interval");
    // Node 0 writes 50 times in a quarter of a second, 2 ms each; node 1 not at all.
    let node = Arc::make_mut(&mut sample.statuses[0]);
    node.syncs = 50;
    node.sync_time = Duration::from_millis(100);
    app.ingest(sample.clone(), secs(0.25));
    assert_eq!(
        app.sync_rate(0),
        Some(SyncRate {
            per_second: 200,
            mean: Some(Duration::from_millis(2)),
        })
    );
    assert_eq!(
        app.sync_rate(1),
        Some(SyncRate {
            per_second: 0,
            mean: None,
        })
    );
    assert_eq!(
        app.cluster_sync_rate(),
        Some(SyncRate {
            per_second: 200,
            mean: Some(Duration::from_millis(2)),
        })
    );
    // The next interval only counts what is new.
    let node = Arc::make_mut(&mut sample.statuses[0]);
    node.syncs = 60;
    node.sync_time = Duration::from_millis(110);
    app.ingest(sample.clone(), secs(0.5));
    assert_eq!(
        app.sync_rate(0),
        Some(SyncRate {
            per_second: 40,
            mean: Some(Duration::from_millis(1)),
        })
    );
    // A new incarnation counts from zero: its 5 writes are the interval's, not -55.
    let mut next = restarted(&sample.statuses[0]);
    next.syncs = 5;
    next.sync_time = Duration::from_micros(500);
    sample.statuses[0] = Arc::new(next);
    app.ingest(sample, secs(0.75));
    assert_eq!(
        app.sync_rate(0),
        Some(SyncRate {
            per_second: 20,
            mean: Some(Duration::from_micros(100)),
        })
    );
}

#[test]
fn a_restarted_nodes_counters_are_not_taken_for_new_elections() {
    let mut app = app_with(steady());
    let mut sample = steady();
    // Node 2 led after winning one election; crashed, then back with fresh counters, it
    // starts one election: that is one, not a negative count or a win.
    Arc::make_mut(&mut sample.statuses[2]).killed = true;
    app.ingest(sample.clone(), secs(1.0));
    let mut back = restarted(&sample.statuses[2]);
    back.role = Role::Candidate;
    back.term = 4;
    back.elections_started = 1;
    sample.statuses[2] = Arc::new(back);
    app.ingest(sample, secs(2.0));
    let texts: Vec<&str> = app.events().iter().map(|e| e.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "leader is n2 (term 3)",
            "no leader (n2 lost it)",
            "n2 started an election, term 4",
        ]
    );
    assert_eq!(app.elections(), 2);
}

#[test]
fn snapshots_installed_are_logged_and_compaction_is_not() {
    let mut app = app_with(steady());
    let mut sample = steady();
    // n4 was cut off while the leader compacted past it; back, it installs the leader's
    // snapshot.
    let behind = Arc::make_mut(&mut sample.statuses[4]);
    behind.snapshots_installed = 1;
    behind.snapshot_index = 50_000;
    behind.commit_index = 50_000;
    behind.last_applied = 50_000;
    behind.last_log_index = 50_000;
    behind.log_entries = 0;
    behind.log_bytes = 0;
    app.ingest(sample.clone(), secs(1.0));
    // Every node compacts on its own: no event.
    for status in &mut sample.statuses {
        Arc::make_mut(status).snapshot_index += 10_000;
    }
    app.ingest(sample.clone(), secs(1.25));
    // Two more in one interval, and the node compacted again since.
    let behind = Arc::make_mut(&mut sample.statuses[4]);
    behind.snapshots_installed = 3;
    behind.snapshot_index = 80_000;
    app.ingest(sample.clone(), secs(1.5));
    // Crashed, and back with counters from zero: its new incarnation's install counts.
    Arc::make_mut(&mut sample.statuses[4]).killed = true;
    app.ingest(sample.clone(), secs(2.0));
    let mut back = restarted(&sample.statuses[4]);
    back.snapshots_installed = 1;
    back.snapshot_index = 90_000;
    sample.statuses[4] = Arc::new(back);
    app.ingest(sample, secs(3.0));
    let log: Vec<(u64, &str)> = app
        .events()
        .iter()
        .filter(|e| e.kind == EventKind::Snapshot)
        .map(|e| (e.at.as_millis() as u64, e.text.as_str()))
        .collect();
    assert_eq!(
        log,
        [
            (1_000, "n4 installed a snapshot, snapshot index now 50000"),
            (1_500, "n4 installed 2 snapshots, snapshot index now 80000"),
            (3_000, "n4 installed a snapshot, snapshot index now 90000"),
        ]
    );
    assert_eq!(app.snapshots_installed(), 4);
}
