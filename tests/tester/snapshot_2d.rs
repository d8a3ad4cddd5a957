//! The 6.824 lab 2D tests (log compaction), step for step, with the tester's constants: every
//! node's applier snapshots every 10 applied entries (the harness's snapshot mode), and the
//! persisted raft state must stay under 2000 bytes.

use zeroraft::Config;
use zeroraft_harness::cluster::{
    Cluster, ClusterOptions, ClusterStorage, SNAPSHOT_INTERVAL, Snapshots, cmd,
};

/// The tester's bound on the raft state's size (`MAXLOGSIZE`).
const MAX_LOG_SIZE: u64 = 2000;

fn rand_cmd() -> bytes::Bytes {
    cmd(fastrand::u64(..))
}

/// The tester's `make_config(n, unreliable, snapshot = true)`.
fn snapshot_cluster(servers: usize, reliable: bool) -> Cluster {
    Cluster::with_options(ClusterOptions {
        nodes: servers,
        unreliable: !reliable,
        config: Config::default(),
        history: None,
        storage: ClusterStorage::Memory,
        snapshots: Snapshots::Tester,
    })
}

fn snapcommon(name: &str, disconnect: bool, reliable: bool, crash: bool) {
    let iters = 30;
    let servers = 3;
    let cfg = snapshot_cluster(servers, reliable);
    cfg.begin(name);

    cfg.one(rand_cmd(), servers, true);
    let mut leader1 = cfg.check_one_leader();

    for i in 0..iters {
        let (mut victim, mut sender) = ((leader1 + 1) % servers, leader1);
        if i % 3 == 1 {
            sender = (leader1 + 1) % servers;
            victim = leader1;
        }

        if disconnect {
            cfg.disconnect(victim);
            cfg.one(rand_cmd(), servers - 1, true);
        }
        if crash {
            cfg.crash(victim);
            cfg.one(rand_cmd(), servers - 1, true);
        }

        // Perhaps send enough to get a snapshot.
        let nn = SNAPSHOT_INTERVAL / 2 + fastrand::u64(0..SNAPSHOT_INTERVAL);
        for _ in 0..nn {
            cfg.raft(sender).start(rand_cmd());
        }

        // Let the appliers catch up with the Start()s.
        if !disconnect && !crash {
            // Make sure all followers have caught up, so that an InstallSnapshot RPC isn't
            // required for TestSnapshotBasic2D().
            cfg.one(rand_cmd(), servers, true);
        } else {
            cfg.one(rand_cmd(), servers - 1, true);
        }

        let size = cfg.log_size();
        assert!(size < MAX_LOG_SIZE, "Log size too large: {size} bytes");

        if disconnect {
            // Reconnect a follower, who may be behind and need to receive a snapshot to catch up.
            cfg.connect(victim);
            cfg.one(rand_cmd(), servers, true);
            leader1 = cfg.check_one_leader();
        }
        if crash {
            cfg.restart(victim);
            cfg.connect(victim);
            cfg.one(rand_cmd(), servers, true);
            leader1 = cfg.check_one_leader();
        }
    }
    cfg.end();
}

pub(crate) fn snapshot_basic_2d() {
    snapcommon("Test (2D): snapshots basic", false, true, false);
}

pub(crate) fn snapshot_install_2d() {
    snapcommon(
        "Test (2D): install snapshots (disconnect)",
        true,
        true,
        false,
    );
}

pub(crate) fn snapshot_install_unreliable_2d() {
    snapcommon(
        "Test (2D): install snapshots (disconnect+unreliable)",
        true,
        false,
        false,
    );
}

pub(crate) fn snapshot_install_crash_2d() {
    snapcommon("Test (2D): install snapshots (crash)", false, true, true);
}

pub(crate) fn snapshot_install_unreliable_crash_2d() {
    snapcommon(
        "Test (2D): install snapshots (unreliable+crash)",
        false,
        false,
        true,
    );
}

pub(crate) fn snapshot_all_crash_2d() {
    let servers = 3;
    let iters = 5;
    let cfg = snapshot_cluster(servers, true);
    cfg.begin("Test (2D): crash and restart all servers");

    cfg.one(rand_cmd(), servers, true);

    for _ in 0..iters {
        // Perhaps enough to get a snapshot.
        let nn = SNAPSHOT_INTERVAL / 2 + fastrand::u64(0..SNAPSHOT_INTERVAL);
        for _ in 0..nn {
            cfg.one(rand_cmd(), servers, true);
        }

        let index1 = cfg.one(rand_cmd(), servers, true);

        // Crash all, then revive all.
        for i in 0..servers {
            cfg.crash(i);
        }
        for i in 0..servers {
            cfg.restart(i);
            cfg.connect(i);
        }

        let index2 = cfg.one(rand_cmd(), servers, true);
        assert!(index2 > index1, "index decreased from {index1} to {index2}");
    }
    cfg.end();
}

pub(crate) fn snapshot_init_2d() {
    let servers = 3;
    let cfg = snapshot_cluster(servers, true);
    cfg.begin("Test (2D): snapshot initialization");

    cfg.one(rand_cmd(), servers, true);

    // Enough ops to make a snapshot.
    let nn = SNAPSHOT_INTERVAL + 1;
    for _ in 0..nn {
        cfg.one(rand_cmd(), servers, true);
    }

    // Crash all, then revive all.
    for i in 0..servers {
        cfg.crash(i);
    }
    for i in 0..servers {
        cfg.restart(i);
        cfg.connect(i);
    }

    // A single op, to get something to be written back to the persistent storage.
    cfg.one(rand_cmd(), servers, true);

    // Crash and revive all again: the nodes must start from the snapshot they persisted.
    for i in 0..servers {
        cfg.crash(i);
    }
    for i in 0..servers {
        cfg.restart(i);
        cfg.connect(i);
    }

    // Does the service start up correctly?
    cfg.one(rand_cmd(), servers, true);
    cfg.end();
}
