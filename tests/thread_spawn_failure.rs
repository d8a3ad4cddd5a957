//! A node whose thread cannot be started is an error from `Raft::new` and `Builder::start`, not a
//! panic. The test runs itself again as a child process in which no thread of the default stack
//! size can start (`RUST_MIN_STACK` far beyond the address space), and checks what the child
//! reports. The network's scheduler thread asks for a stack size of its own, so the child can
//! still build a network and hand the node an endpoint.

use std::process::Command;
use std::time::Duration;

use zeroraft::engine::BuildError;
use zeroraft::engine::storage::{FileStorage, Identity, WalOptions};
use zeroraft::{Config, ConfigError, Network, NetworkConfig, Raft};

const CHILD: &str = "ZERORAFT_SPAWN_FAILURE_CHILD";

fn main() {
    if std::env::var_os(CHILD).is_some() {
        child();
        return;
    }
    let data = tempfile::tempdir().expect("a temporary directory");
    let output = Command::new(std::env::current_exe().expect("the test binary"))
        .env(CHILD, data.path())
        .env("RUST_MIN_STACK", (1u64 << 60).to_string())
        .output()
        .expect("the child runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the child failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    for want in [
        "Raft::new: invalid configuration: the node's thread could not be started",
        "Builder::start with a file storage: cannot start the node's thread",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(want)),
            "missing {want:?} in the child's report:\n{stdout}\n{stderr}"
        );
    }
    println!("thread spawn failure: 2 cases reported as errors");
}

/// Runs with threads of the default stack size unable to start.
fn child() {
    let dir = std::path::PathBuf::from(std::env::var_os(CHILD).expect("set"));
    assert!(
        std::thread::Builder::new().spawn(|| ()).is_err(),
        "threads of the default stack size still start: the test cannot provoke the failure"
    );
    let network = Network::new(NetworkConfig::new(1)).expect("the network's thread starts");
    let config = Config {
        heartbeat_interval: Duration::from_millis(20),
        election_timeout_min: Duration::from_millis(60),
        election_timeout_max: Duration::from_millis(120),
        ..Config::default()
    };

    let (tx, _rx) = crossbeam_channel::unbounded();
    let endpoint = network.endpoint(0, 1).expect("free");
    match Raft::new(config.clone(), 0, 1, endpoint, tx.clone()) {
        Err(e @ ConfigError::Invalid(_)) => println!("Raft::new: {e}"),
        Err(e) => panic!("Raft::new: the wrong error: {e}"),
        Ok(_) => panic!("Raft::new started a node without a thread"),
    }

    // With a file storage the node also starts a writer thread (the first to fail here).
    let storage = FileStorage::open(
        dir.join("node-0"),
        Identity {
            cluster: 1,
            node: 0,
        },
        WalOptions {
            create: true,
            ..WalOptions::default()
        },
    )
    .expect("a data directory");
    let endpoint = network.endpoint(0, 2).expect("free again");
    match Raft::builder(config, 0, 1, endpoint)
        .storage(storage)
        .start(tx)
    {
        Err(e @ BuildError::Thread(_)) => println!("Builder::start with a file storage: {e}"),
        Err(e) => panic!("Builder::start: the wrong error: {e}"),
        Ok(_) => panic!("Builder::start started a node without a thread"),
    }
}
