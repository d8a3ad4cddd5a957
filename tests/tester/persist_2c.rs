//! The 6.824 lab 2C tests (persistence), step for step, with the tester's constants: nodes are
//! crashed and restarted from what they persisted (the harness's in-memory persisters).

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::thread::sleep;
use std::time::Duration;

use zeroraft_harness::cluster::{Cluster, ELECTION_TIMEOUT, cmd};

/// A random test command.
fn rand_cmd() -> bytes::Bytes {
    cmd(fastrand::u64(..))
}

/// The Figure 8 tests' pause between rounds: usually up to 12 ms, one time in ten up to half an
/// election timeout, so that leaders sometimes crash before and sometimes after replicating.
fn figure_8_pause() {
    let ms = if fastrand::u32(0..1000) < 100 {
        fastrand::u64(0..ELECTION_TIMEOUT.as_millis() as u64 / 2)
    } else {
        fastrand::u64(0..13)
    };
    sleep(Duration::from_millis(ms));
}

pub(crate) fn persist1_2c() {
    let servers = 3;
    let cfg = Cluster::new(servers, false);
    cfg.begin("Test (2C): basic persistence");

    cfg.one(cmd(11), servers, true);

    // Crash and re-start all.
    for i in 0..servers {
        cfg.restart(i);
    }
    for i in 0..servers {
        cfg.disconnect(i);
        cfg.connect(i);
    }

    cfg.one(cmd(12), servers, true);

    let leader1 = cfg.check_one_leader();
    cfg.disconnect(leader1);
    cfg.restart(leader1);
    cfg.connect(leader1);

    cfg.one(cmd(13), servers, true);

    let leader2 = cfg.check_one_leader();
    cfg.disconnect(leader2);
    cfg.one(cmd(14), servers - 1, true);
    cfg.restart(leader2);
    cfg.connect(leader2);

    cfg.wait(4, servers, None); // wait for leader2 to join before killing i3

    let i3 = (cfg.check_one_leader() + 1) % servers;
    cfg.disconnect(i3);
    cfg.one(cmd(15), servers - 1, true);
    cfg.restart(i3);
    cfg.connect(i3);

    cfg.one(cmd(16), servers, true);
    cfg.end();
}

pub(crate) fn figure8_2c() {
    let servers = 5;
    let cfg = Cluster::new(servers, false);
    cfg.begin("Test (2C): Figure 8");

    cfg.one(rand_cmd(), 1, true);

    let mut nup = servers;
    for _ in 0..1000 {
        let mut leader = None;
        for i in 0..servers {
            if cfg.is_alive(i) {
                let (_, _, ok) = cfg.raft(i).start(rand_cmd());
                if ok {
                    leader = Some(i);
                }
            }
        }
        figure_8_pause();
        if let Some(leader) = leader {
            cfg.crash(leader);
            nup -= 1;
        }
        if nup < 3 {
            let s = fastrand::usize(0..servers);
            if !cfg.is_alive(s) {
                cfg.restart(s);
                cfg.connect(s);
                nup += 1;
            }
        }
    }

    for i in 0..servers {
        if !cfg.is_alive(i) {
            cfg.restart(i);
            cfg.connect(i);
        }
    }

    cfg.one(rand_cmd(), servers, true);
    cfg.end();
}

pub(crate) fn unreliable_agree_2c() {
    let servers = 5;
    let cfg = Cluster::new(servers, true);
    cfg.begin("Test (2C): unreliable agreement");

    std::thread::scope(|s| {
        let mut clients = Vec::new();
        for iters in 1..50u64 {
            for j in 0..4 {
                let cfg = &cfg;
                clients.push(s.spawn(move || cfg.one(cmd(100 * iters + j), 1, true)));
            }
            cfg.one(cmd(iters), 1, true);
        }
        cfg.set_unreliable(false);
        for client in clients {
            client.join().expect("a client failed");
        }
    });

    cfg.one(cmd(100), servers, true);
    cfg.end();
}

pub(crate) fn figure8_unreliable_2c() {
    let servers = 5;
    let cfg = Cluster::new(servers, true);
    cfg.begin("Test (2C): Figure 8 (unreliable)");

    let small_cmd = || cmd(fastrand::u64(0..10_000));
    cfg.one(small_cmd(), 1, true);

    let mut nup = servers;
    for iters in 0..1000 {
        if iters == 200 {
            cfg.set_long_reordering(true);
        }
        let mut leader = None;
        for i in 0..servers {
            let (_, _, ok) = cfg.raft(i).start(small_cmd());
            if ok && cfg.is_connected(i) {
                leader = Some(i);
            }
        }
        figure_8_pause();
        if let Some(leader) = leader
            && fastrand::u32(0..1000) < ELECTION_TIMEOUT.as_millis() as u32 / 2
        {
            cfg.disconnect(leader);
            nup -= 1;
        }
        while nup < 3 {
            let s = fastrand::usize(0..servers);
            if !cfg.is_connected(s) {
                cfg.connect(s);
                nup += 1;
            }
        }
    }

    for i in 0..servers {
        if !cfg.is_connected(i) {
            cfg.connect(i);
        }
    }

    cfg.one(small_cmd(), servers, true);
    cfg.end();
}

pub(crate) fn reliable_churn_2c() {
    let servers = 5;
    let cfg = Cluster::new(servers, false);
    cfg.begin("Test (2C): churn");

    let stop = AtomicBool::new(false);
    let values: Vec<u64> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..3u64)
            .map(|me| {
                let (cfg, stop) = (&cfg, &stop);
                s.spawn(move || churn_client(cfg, stop, me))
            })
            .collect();

        for _ in 0..20 {
            if fastrand::u32(0..1000) < 200 {
                cfg.disconnect(fastrand::usize(0..servers));
            }
            if fastrand::u32(0..1000) < 500 {
                let i = fastrand::usize(0..servers);
                if !cfg.is_alive(i) {
                    cfg.restart(i);
                }
                cfg.connect(i);
            }
            if fastrand::u32(0..1000) < 200 {
                let i = fastrand::usize(0..servers);
                if cfg.is_alive(i) {
                    cfg.crash(i);
                }
            }
            // Churn slower than an election, so the cluster can make progress in between.
            sleep(ELECTION_TIMEOUT * 7 / 10);
        }

        sleep(ELECTION_TIMEOUT);
        cfg.set_unreliable(false);
        for i in 0..servers {
            if !cfg.is_alive(i) {
                cfg.restart(i);
            }
            cfg.connect(i);
        }

        stop.store(true, Relaxed);
        clients
            .into_iter()
            .flat_map(|c| c.join().expect("a client failed"))
            .collect()
    });

    sleep(ELECTION_TIMEOUT);

    let last_index = cfg.one(rand_cmd(), servers, true);

    let mut really_agreed = Vec::new();
    for index in 1..=last_index {
        let v = cfg.wait(index, servers, None).expect("a value");
        really_agreed.push(v);
    }
    for v in values {
        assert!(
            really_agreed.contains(&cmd(v)),
            "didn't find a value {v} in the agreed log"
        );
    }
    cfg.end();
}

/// One of the churn test's clients: proposes random values to every live node and records those
/// it saw committed where they were accepted, until `stop`.
fn churn_client(cfg: &Cluster, stop: &AtomicBool, me: u64) -> Vec<u64> {
    let mut values = Vec::new();
    while !stop.load(Relaxed) {
        let x = fastrand::u64(..);
        let mut accepted = None;
        for i in 0..cfg.n() {
            let (index, _, ok) = cfg.raft(i).start(cmd(x));
            if ok {
                accepted = Some(index);
            }
        }
        if let Some(index) = accepted {
            for to in [10, 20, 50, 100, 200] {
                // The tester's polls, increasingly far apart.
                sleep(Duration::from_millis(to));
                let (nd, value) = cfg.n_committed(index);
                if nd > 0 {
                    if value == Some(cmd(x)) {
                        values.push(x);
                    }
                    break;
                }
            }
        } else {
            // No leader: the tester's client waits a little before trying again.
            sleep(Duration::from_millis(79 + me * 17));
        }
    }
    values
}
