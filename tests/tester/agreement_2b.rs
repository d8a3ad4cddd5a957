//! The 6.824 lab 2B tests (log agreement), step for step, with the tester's constants.

use std::thread::sleep;
use std::time::Duration;

use zeroraft_harness::cluster::{Cluster, ELECTION_TIMEOUT, cmd, random_cmd};

pub(crate) fn basic_agree_2b() {
    let servers = 3;
    let cfg = Cluster::new(servers, false);
    cfg.begin("Test (2B): basic agreement");

    for index in 1..=3u64 {
        let (nd, _) = cfg.n_committed(index);
        assert!(nd == 0, "some have committed before Start()");
        let xindex = cfg.one(cmd(index * 100), servers, false);
        assert_eq!(xindex, index, "got index {xindex} but expected {index}");
    }
    cfg.end();
}

pub(crate) fn rpc_bytes_2b() {
    let servers = 3;
    let cfg = Cluster::new(servers, false);
    cfg.begin("Test (2B): RPC byte count");

    cfg.one(cmd(99), servers, false);
    let bytes0 = cfg.bytes_total();

    let iters = 10;
    let mut sent = 0u64;
    for index in 2..iters + 2 {
        let command = random_cmd(5000);
        let xindex = cfg.one(command.clone(), servers, false);
        assert_eq!(xindex, index, "got index {xindex} but expected {index}");
        sent += command.len() as u64;
    }

    let got = cfg.bytes_total() - bytes0;
    let expected = servers as u64 * sent;
    assert!(
        got <= expected + 50_000,
        "too many RPC bytes; got {got}, expected {expected}"
    );
    cfg.end();
}

pub(crate) fn fail_agree_2b() {
    let servers = 3;
    let cfg = Cluster::new(servers, false);
    cfg.begin("Test (2B): agreement after follower reconnects");

    cfg.one(cmd(101), servers, false);

    // Disconnect one follower from the network.
    let leader = cfg.check_one_leader();
    cfg.disconnect((leader + 1) % servers);

    // The leader and remaining follower should be able to agree despite the disconnected one.
    cfg.one(cmd(102), servers - 1, false);
    cfg.one(cmd(103), servers - 1, false);
    sleep(ELECTION_TIMEOUT);
    cfg.one(cmd(104), servers - 1, false);
    cfg.one(cmd(105), servers - 1, false);

    // Re-connect.
    cfg.connect((leader + 1) % servers);

    // The full set of servers should preserve previous agreements, and be able to agree on new
    // commands.
    cfg.one(cmd(106), servers, true);
    sleep(ELECTION_TIMEOUT);
    cfg.one(cmd(107), servers, true);
    cfg.end();
}

pub(crate) fn fail_no_agree_2b() {
    let servers = 5;
    let cfg = Cluster::new(servers, false);
    cfg.begin("Test (2B): no agreement if too many followers disconnect");

    cfg.one(cmd(10), servers, false);

    // 3 of 5 followers disconnect.
    let leader = cfg.check_one_leader();
    cfg.disconnect((leader + 1) % servers);
    cfg.disconnect((leader + 2) % servers);
    cfg.disconnect((leader + 3) % servers);

    let (index, _, ok) = cfg.raft(leader).start(cmd(20));
    assert!(ok, "leader rejected Start()");
    assert_eq!(index, 2, "expected index 2, got {index}");

    sleep(2 * ELECTION_TIMEOUT);

    let (n, _) = cfg.n_committed(index);
    assert!(n == 0, "{n} committed but no majority");

    // Repair.
    cfg.connect((leader + 1) % servers);
    cfg.connect((leader + 2) % servers);
    cfg.connect((leader + 3) % servers);

    // The disconnected majority may have chosen a leader from among their own ranks, forgetting
    // index 2.
    let leader2 = cfg.check_one_leader();
    let (index2, _, ok2) = cfg.raft(leader2).start(cmd(30));
    assert!(ok2, "leader2 rejected Start()");
    assert!((2..=3).contains(&index2), "unexpected index {index2}");

    cfg.one(cmd(1000), servers, true);
    cfg.end();
}

pub(crate) fn concurrent_starts_2b() {
    let servers = 3;
    let cfg = Cluster::new(servers, false);
    cfg.begin("Test (2B): concurrent Start()s");

    let mut success = false;
    'tries: for attempt in 0..5 {
        if attempt > 0 {
            // Give the cluster time to settle, as the tester does between tries.
            sleep(Duration::from_secs(3));
        }

        let leader = cfg.check_one_leader();
        let (_, term, ok) = cfg.raft(leader).start(cmd(1));
        if !ok {
            // Leader moved on really quickly.
            continue;
        }

        let iters = 5u64;
        let indices: Vec<u64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..iters)
                .map(|ii| {
                    let cfg = &cfg;
                    s.spawn(move || {
                        let (i, term1, ok) = cfg.raft(leader).start(cmd(100 + ii));
                        (term1 == term && ok).then_some(i)
                    })
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().expect("start thread"))
                .collect()
        });

        for j in 0..servers {
            let (t, _) = cfg.raft(j).get_state();
            if t != term {
                // Term changed: we can't expect low RPC counts.
                continue 'tries;
            }
        }

        let mut failed = false;
        let mut cmds = Vec::new();
        for &index in &indices {
            match cfg.wait(index, servers, Some(term)) {
                Some(c) => cmds.push(c),
                None => {
                    // Peers have moved on to later terms, so we can't expect all Start()s to
                    // have succeeded.
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            continue;
        }

        for ii in 0..iters {
            let want = cmd(100 + ii);
            assert!(cmds.contains(&want), "cmd {} missing in {cmds:?}", 100 + ii);
        }
        success = true;
        break;
    }
    assert!(success, "term changed too often");
    cfg.end();
}

pub(crate) fn rejoin_2b() {
    let servers = 3;
    let cfg = Cluster::new(servers, false);
    cfg.begin("Test (2B): rejoin of partitioned leader");

    cfg.one(cmd(101), servers, true);

    // Leader network failure.
    let leader1 = cfg.check_one_leader();
    cfg.disconnect(leader1);

    // Make old leader try to agree on some entries.
    cfg.raft(leader1).start(cmd(102));
    cfg.raft(leader1).start(cmd(103));
    cfg.raft(leader1).start(cmd(104));

    // New leader commits, also for index=2.
    cfg.one(cmd(103), 2, true);

    // New leader network failure.
    let leader2 = cfg.check_one_leader();
    cfg.disconnect(leader2);

    // Old leader connected again.
    cfg.connect(leader1);

    cfg.one(cmd(104), 2, true);

    // All together now.
    cfg.connect(leader2);

    cfg.one(cmd(105), servers, true);
    cfg.end();
}

pub(crate) fn backup_2b() {
    let servers = 5;
    let cfg = Cluster::new(servers, false);
    cfg.begin("Test (2B): leader backs up quickly over incorrect follower logs");

    let rand_cmd = || cmd(fastrand::u64(..));

    cfg.one(rand_cmd(), servers, true);

    // Put leader and one follower in a partition.
    let leader1 = cfg.check_one_leader();
    cfg.disconnect((leader1 + 2) % servers);
    cfg.disconnect((leader1 + 3) % servers);
    cfg.disconnect((leader1 + 4) % servers);

    // Submit lots of commands that won't commit.
    for _ in 0..50 {
        cfg.raft(leader1).start(rand_cmd());
    }

    sleep(ELECTION_TIMEOUT / 2);

    cfg.disconnect(leader1 % servers);
    cfg.disconnect((leader1 + 1) % servers);

    // Allow other partition to recover.
    cfg.connect((leader1 + 2) % servers);
    cfg.connect((leader1 + 3) % servers);
    cfg.connect((leader1 + 4) % servers);

    // Lots of successful commands to new group.
    for _ in 0..50 {
        cfg.one(rand_cmd(), 3, true);
    }

    // Now another partitioned leader and one follower.
    let leader2 = cfg.check_one_leader();
    let mut other = (leader1 + 2) % servers;
    if leader2 == other {
        other = (leader2 + 1) % servers;
    }
    cfg.disconnect(other);

    // Lots more commands that won't commit.
    for _ in 0..50 {
        cfg.raft(leader2).start(rand_cmd());
    }

    sleep(ELECTION_TIMEOUT / 2);

    // Bring original leader back to life.
    for i in 0..servers {
        cfg.disconnect(i);
    }
    cfg.connect(leader1 % servers);
    cfg.connect((leader1 + 1) % servers);
    cfg.connect(other);

    // Lots of successful commands to new group.
    for _ in 0..50 {
        cfg.one(rand_cmd(), 3, true);
    }

    // Now everyone.
    for i in 0..servers {
        cfg.connect(i);
    }
    cfg.one(rand_cmd(), servers, true);
    cfg.end();
}

pub(crate) fn count_2b() {
    let servers = 3;
    let cfg = Cluster::new(servers, false);
    cfg.begin("Test (2B): RPC counts aren't too high");

    let rpcs = || (0..servers).map(|j| cfg.rpc_count(j)).sum::<u64>();

    cfg.check_one_leader();

    let mut total1 = rpcs();
    assert!(
        (1..=30).contains(&total1),
        "too many or few RPCs ({total1}) to elect initial leader"
    );

    let mut total2 = 0;
    let mut success = false;
    'tries: for attempt in 0..5 {
        if attempt > 0 {
            // Give the cluster time to settle, as the tester does between tries.
            sleep(Duration::from_secs(3));
        }

        let leader = cfg.check_one_leader();
        total1 = rpcs();

        let iters = 10u64;
        let (starti, term, ok) = cfg.raft(leader).start(cmd(1));
        if !ok {
            // Leader moved on really quickly.
            continue;
        }
        let mut cmds = Vec::new();
        for i in 1..iters + 2 {
            let x = cmd(fastrand::u64(..1 << 31));
            cmds.push(x.clone());
            let (index1, term1, ok) = cfg.raft(leader).start(x);
            if term1 != term || !ok {
                // Term changed while starting, or no longer leader.
                continue 'tries;
            }
            assert_eq!(starti + i, index1, "Start() failed");
        }

        for i in 1..iters + 1 {
            match cfg.wait(starti + i, servers, Some(term)) {
                None => continue 'tries, // term changed -- try again
                Some(c) => assert_eq!(
                    c,
                    cmds[i as usize - 1],
                    "wrong value {c:?} committed for index {}; expected {:?}",
                    starti + i,
                    cmds
                ),
            }
        }

        for j in 0..servers {
            let (t, _) = cfg.raft(j).get_state();
            if t != term {
                // Term changed -- can't expect low RPC counts; need to keep going to update
                // total2.
                continue 'tries;
            }
        }
        total2 = rpcs();
        assert!(
            total2 - total1 <= (iters + 1 + 3) * 3,
            "too many RPCs ({}) for {iters} entries",
            total2 - total1
        );
        success = true;
        break;
    }
    assert!(success, "term changed too often");

    sleep(ELECTION_TIMEOUT);
    let total3 = rpcs();
    assert!(
        total3 - total2 <= 3 * 20,
        "too many RPCs ({}) for 1 second of idleness",
        total3 - total2
    );
    cfg.end();
}
