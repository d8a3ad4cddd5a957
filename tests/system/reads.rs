//! Linearizable reads and leadership transfer through the `Raft` handle, on the tester's
//! threaded cluster with [`Config::production`] (PreVote, CheckQuorum, the leader no-op). The
//! protocol's own checks (every read sees every earlier commit, over thousands of seeds with
//! partitions and crashes; transfers end within an election timeout) are the simulator's, in
//! sim/tests/simulation.rs; these check the handle: what it returns, what it refuses, and that it
//! never confirms a read a cut-off leader cannot vouch for.

use std::thread::sleep;
use std::time::{Duration, Instant};

use zeroraft::{Config, ReadError, TransferError};
use zeroraft_harness::cluster::{Cluster, ELECTION_TIMEOUT, cmd};

/// Long enough for any read a healthy cluster can confirm, on a busy two-core machine.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The node that leads now by its own report (of the highest term, if a deposed leader does
/// not know it yet), without the tester's pause of half a second; the tester's check if none
/// reports it leads.
fn leader_now(cfg: &Cluster) -> usize {
    (0..cfg.n())
        .filter_map(|i| {
            let (term, leads) = cfg.raft(i).get_state();
            leads.then_some((term, i))
        })
        .max()
        .map_or_else(|| cfg.check_one_leader(), |(_, i)| i)
}

#[test]
fn a_read_index_covers_every_write_committed_before_it() {
    let servers = 3;
    let cfg = Cluster::with_config(servers, false, Config::production());
    cfg.begin("Reads: ReadIndex and lease reads after each write");
    for i in 0..40 {
        let written = cfg.one(cmd(i), servers, true);
        let raft = cfg.raft(leader_now(&cfg));
        let pending = if i % 2 == 0 {
            raft.read_index()
        } else {
            raft.read_lease()
        };
        let read = match pending.map(|p| p.wait_timeout(READ_TIMEOUT)) {
            Ok(Ok(index)) => index,
            // A leader may change between check_one_leader and the read; ask again.
            Ok(Err(ReadError::NotLeader { .. })) | Err(ReadError::NotLeader { .. }) => continue,
            other => panic!("read {i}: {other:?}"),
        };
        assert!(
            read >= written,
            "read {i}: read index {read} is below {written}, committed before the read"
        );
        assert!(
            raft.status().last_applied >= read,
            "read {i}: confirmed before the node applied its index"
        );
    }
    let status = cfg.raft(cfg.check_one_leader()).status();
    assert!(status.reads_confirmed > 0, "reads counted in the status");
    cfg.end();
}

#[test]
fn many_reads_at_once_are_all_confirmed() {
    let servers = 3;
    let cfg = Cluster::with_config(servers, false, Config::production());
    cfg.begin("Reads: a burst of concurrent reads");
    let written = cfg.one(cmd(1), servers, true);
    let leader = cfg.check_one_leader();
    let raft = cfg.raft(leader);
    let pending: Vec<_> = (0..1000)
        .map(|i| {
            if i % 2 == 0 {
                raft.read_index()
            } else {
                raft.read_lease()
            }
            .expect("the leader takes the read")
        })
        .collect();
    for (i, p) in pending.into_iter().enumerate() {
        let read = p.wait_timeout(READ_TIMEOUT);
        assert!(
            matches!(read, Ok(index) if index >= written),
            "read {i}: {read:?}, written at {written}"
        );
    }
    cfg.end();
}

#[test]
fn a_follower_refuses_reads_and_names_the_leader() {
    let servers = 3;
    let cfg = Cluster::with_config(servers, false, Config::production());
    cfg.begin("Reads: a follower refuses");
    cfg.one(cmd(1), servers, true);
    let leader = cfg.check_one_leader();
    let follower = (leader + 1) % servers;
    // The follower knows its leader once it heard from it, which one() above ensured.
    match cfg.raft(follower).read_index() {
        Err(ReadError::NotLeader { leader: Some(l) }) => assert_eq!(l, leader),
        other => panic!("a follower answered {other:?}"),
    }
    cfg.end();
}

#[test]
fn a_cut_off_leader_confirms_no_read_and_refuses_it_once_it_steps_down() {
    let servers = 5;
    let config = Config::production();
    let step_down = 2 * config.election_timeout_min;
    let cfg = Cluster::with_config(servers, false, config);
    cfg.begin("Reads: a cut-off leader cannot confirm a read");
    cfg.one(cmd(1), servers, true);
    let leader = cfg.check_one_leader();
    let raft = cfg.raft(leader);
    cfg.disconnect(leader);
    // Let any lease it holds run out, so that the reads need a round it cannot complete.
    sleep(Config::production().lease_duration());
    let (index, lease) = (raft.read_index(), raft.read_lease());
    // It may have stepped down already on a very slow machine; then it refuses at once.
    for pending in [index, lease] {
        match pending {
            Ok(p) => match p.wait_timeout(step_down + ELECTION_TIMEOUT) {
                Err(ReadError::NotLeader { .. }) => {}
                other => panic!("a cut-off leader answered {other:?}"),
            },
            Err(ReadError::NotLeader { .. }) => {}
            Err(e) => panic!("refused with {e:?}"),
        }
    }
    // The majority elects a leader that reads what the old one could not know.
    let written = cfg.one(cmd(2), servers - 1, true);
    let new_leader = cfg.check_one_leader();
    let read = cfg
        .raft(new_leader)
        .read_index()
        .unwrap()
        .wait_timeout(READ_TIMEOUT);
    assert!(matches!(read, Ok(i) if i >= written), "{read:?}");
    cfg.connect(leader);
    cfg.end();
}

#[test]
fn reads_of_a_killed_node_end_with_killed() {
    let servers = 3;
    let cfg = Cluster::with_config(servers, false, Config::production());
    cfg.begin("Reads: a killed node");
    cfg.one(cmd(1), servers, true);
    let leader = cfg.check_one_leader();
    let raft = cfg.raft(leader);
    // Reads asked for just before the kill end, one way or another, rather than hang.
    let pending: Vec<_> = (0..100).map(|_| raft.read_index().unwrap()).collect();
    cfg.crash(leader);
    for p in pending {
        let outcome = p.wait_timeout(READ_TIMEOUT);
        assert!(
            matches!(outcome, Ok(_) | Err(ReadError::Killed)),
            "{outcome:?}"
        );
    }
    assert_eq!(raft.read_index().unwrap_err(), ReadError::Killed);
    assert_eq!(
        raft.transfer_leadership((leader + 1) % servers),
        Err(TransferError::Killed)
    );
    cfg.end();
}

#[test]
fn leadership_moves_to_the_node_asked_for() {
    let servers = 5;
    let cfg = Cluster::with_config(servers, false, Config::production());
    cfg.begin("Transfer: leadership moves to each node in turn");
    cfg.one(cmd(0), servers, true);
    for round in 1..=4u64 {
        let leader = cfg.check_one_leader();
        let target = (leader + 1) % servers;
        let raft = cfg.raft(leader);
        assert_eq!(
            raft.transfer_leadership(leader),
            Err(TransferError::BadTarget { target: leader })
        );
        assert_eq!(
            raft.transfer_leadership(servers),
            Err(TransferError::BadTarget { target: servers })
        );
        assert!(matches!(
            cfg.raft(target).transfer_leadership(leader),
            Err(TransferError::NotLeader { .. })
        ));
        raft.transfer_leadership(target).unwrap();
        // A transfer completes or is given up within an election timeout. On a busy machine a
        // late thread can make the target miss it; the leader then gives up, and is asked again.
        let asked = Instant::now();
        let mut abandoned = raft.status().transfers_abandoned;
        while !cfg.raft(target).get_state().1 {
            assert!(
                asked.elapsed() < Duration::from_secs(10),
                "round {round}: node {target} is not leader after {} ms: {:?}",
                asked.elapsed().as_millis(),
                cfg.raft(target).status()
            );
            let status = raft.status();
            if status.transfers_abandoned > abandoned && status.leader == Some(leader) {
                abandoned = status.transfers_abandoned;
                raft.transfer_leadership(target).unwrap();
            }
            sleep(Duration::from_millis(2));
        }
        // Nothing committed is lost, and the new leader takes commands.
        cfg.one(cmd(round), servers, true);
    }
    let status = cfg.raft(cfg.check_one_leader()).status();
    assert_eq!(status.transfer_target, None);
    cfg.end();
}
