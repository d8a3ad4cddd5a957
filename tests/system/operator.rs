//! What an operator does to `zeroraft serve` processes, and what must hold: a node whose data
//! directory was wiped (or whose volume failed to mount) is refused instead of coming back as a
//! new voter, so an acknowledged write is never lost to it; a node started with other members
//! than its cluster was bootstrapped with is refused; a node whose disk fills up exits with the
//! status that says so, while the others go on serving; and `serve` writes no colour codes into
//! a log file.
//!
//! The full-disk test mounts a small tmpfs, which needs root; where it cannot, it says so on
//! stderr ("SKIPPED: ...") and passes without checking anything.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::processes::ProcessCluster;

/// How long one operation may take: enough for an election after a kill on a busy machine.
const OP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long to wait for a leader.
const PATIENCE: Duration = Duration::from_secs(30);
/// The exit status of `serve` for a bad command line or an unusable data directory.
const SETUP: i32 = 2;
/// The exit status of `serve` whose node stopped because its disk is full.
const DISK_FULL: i32 = 3;

#[test]
fn a_wiped_data_directory_is_refused_and_no_acknowledged_write_is_lost() {
    // A and B up, C down: a write acknowledged by A and B.
    let mut cluster = ProcessCluster::loopback(3, "index");
    cluster.start(0);
    cluster.start(1);
    let mut client = cluster.client(OP_TIMEOUT);
    client
        .put("k", "v")
        .expect("a majority acknowledges the write");

    // B loses its disk: its directory is gone, then an empty mount point is in its place. Either
    // way it must not come back as a new, empty voter.
    cluster.kill(1);
    std::fs::remove_dir_all(cluster.data(1)).unwrap();
    let (status, log) = cluster.start_refused(1, &[]);
    assert_eq!(status.code(), Some(SETUP), "a missing directory: {log}");
    assert!(log.contains("is not the data directory of a node"), "{log}");
    assert!(
        log.contains("zeroraft init"),
        "says how a node is initialized: {log}"
    );
    std::fs::create_dir(cluster.data(1)).unwrap();
    let (status, log) = cluster.start_refused(1, &[]);
    assert_eq!(status.code(), Some(SETUP), "an empty directory: {log}");
    assert!(log.contains("holds no IDENTITY"), "{log}");

    // A goes down and C, whose log lacks the write, comes up: with B refused, C cannot win an
    // election; nothing answers, and above all nothing answers that the key is empty.
    cluster.kill(0);
    cluster.start(2);
    let mut short = cluster.client(Duration::from_secs(3));
    match short.get("k") {
        Ok(value) => assert_eq!(value, "v", "an acknowledged write was lost"),
        Err(e) => eprintln!("without a majority the cluster is unavailable, as it should be: {e}"),
    }
    // A comes back: A and C are a majority, and the write is there.
    cluster.start(0);
    assert!(cluster.leader(PATIENCE).is_some(), "A and C elect a leader");
    assert_eq!(client.get("k").expect("the cluster serves again"), "v");
}

#[test]
fn a_node_started_with_other_members_is_refused() {
    let mut cluster = ProcessCluster::loopback(3, "index");
    cluster.start(0);
    cluster.kill(0);
    // The same node, told it is one of five.
    let mut peers: Vec<String> = cluster.peer_list().split(',').map(str::to_owned).collect();
    peers.push("127.0.0.1:1".to_owned());
    peers.push("127.0.0.1:2".to_owned());
    let out = Command::new(env!("CARGO_BIN_EXE_zeroraft"))
        .args([
            "serve",
            "--insecure",
            "--id",
            "0",
            "--peers",
            &peers.join(","),
        ])
        .args(["--listen", "127.0.0.1:0"])
        .arg("--data")
        .arg(cluster.data(0))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(SETUP), "{stderr}");
    assert!(stderr.contains("records the members"), "{stderr}");
}

#[test]
fn a_data_directory_is_initialized_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let init = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_zeroraft"))
            .args([
                "init",
                "--id",
                "0",
                "--peers",
                "127.0.0.1:7000,127.0.0.1:7001",
            ])
            .arg("--data")
            .arg(&data)
            .args(extra)
            .output()
            .unwrap()
    };
    let first = init(&[]);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(first.status.success(), "{stdout}");
    // Without --cluster a random id is chosen, and the command for the others given.
    assert!(stdout.contains("zeroraft init --cluster "), "{stdout}");
    let identity = std::fs::read_to_string(data.join("IDENTITY")).unwrap();
    assert!(
        identity.contains("members 2\nmember 127.0.0.1:7000\nmember 127.0.0.1:7001\n"),
        "{identity}"
    );
    let again = init(&["--cluster", "5"]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(SETUP), "{stderr}");
    assert!(stderr.contains("is not empty"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(data.join("IDENTITY")).unwrap(),
        identity,
        "a second init changes nothing"
    );
}

/// A tmpfs of `size` mounted on a directory of its own, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Self(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_node_whose_disk_fills_up_exits_with_its_status_and_the_others_go_on() {
    let mut cluster = ProcessCluster::loopback(3, "index");
    let mount = cluster.data(2).with_extension("tmpfs");
    let tmpfs = match Tmpfs::mount(&mount, "2m") {
        Ok(tmpfs) => tmpfs,
        Err(why) => {
            eprintln!("SKIPPED: cannot mount a tmpfs here: {why}");
            return;
        }
    };
    cluster.set_data(2, tmpfs.0.clone());
    cluster.start_all();
    let mut client = cluster.client(OP_TIMEOUT);
    // 64 KiB values: the logs grow past 2 MB within a few dozen writes.
    let value = "x".repeat(64 << 10);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut written = 0;
    while cluster.is_running(2) && cluster.wait_exit(2, Duration::ZERO).is_none() {
        assert!(
            Instant::now() < deadline,
            "node 2 still runs after {written} writes of 64 KiB: {}",
            cluster.log(2)
        );
        // Node 2 may lead when its disk fills: the write may then time out or be refused.
        if client.put(&format!("k{written}"), &value).is_ok() {
            written += 1;
        }
    }
    let status = cluster.last_exit(2).expect("node 2 exited");
    let log = cluster.log(2);
    assert_eq!(status.code(), Some(DISK_FULL), "{log}");
    assert!(log.contains("No space left on device"), "{log}");
    // The other two go on serving.
    client
        .put("after", "the disk filled")
        .expect("the others commit");
    assert_eq!(client.get("after").unwrap(), "the disk filled");
    assert_eq!(client.get("k0").unwrap(), value);
    drop(cluster);
}

#[test]
fn serve_writes_no_colour_codes_into_a_log_file() {
    let mut cluster = ProcessCluster::loopback(3, "index");
    cluster.start(0);
    // A connection to node 0's peer port that speaks no handshake: the transport warns.
    let peer = cluster.peer_list().split(',').next().unwrap().to_owned();
    let mut garbage = TcpStream::connect(&peer).unwrap();
    std::io::Write::write_all(&mut garbage, &[0xff; 64]).unwrap();
    drop(garbage);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cluster.log(0).contains("WARN") {
        assert!(Instant::now() < deadline, "no warning: {}", cluster.log(0));
        std::thread::sleep(Duration::from_millis(20)); // polling the log file
    }
    let log = cluster.log(0);
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log file: {log:?}"
    );
}

#[test]
fn nodes_speak_tls_to_each_other_and_plaintext_only_when_asked_for() {
    let mut cluster = ProcessCluster::loopback(3, "index").with_tls();
    cluster.start_all();
    let mut client = cluster.client(OP_TIMEOUT);
    client.put("k", "v").expect("a TLS cluster commits a write");
    assert_eq!(client.get("k").expect("and reads it"), "v");
    // The command-line client speaks TLS with the client certificate of the same directory,
    // and plaintext to these nodes gets nowhere.
    let connect = cluster
        .client_addrs()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let kv = |security: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_zeroraft"))
            .args(["kv", "--connect", &connect, "--timeout", "2"])
            .args(security)
            .args(["get", "k"])
            .output()
            .unwrap()
    };
    let certs = cluster.certs_dir();
    let tls = kv(&["--tls-dir", certs.to_str().unwrap()]);
    assert!(tls.status.success(), "{tls:?}");
    assert_eq!(String::from_utf8_lossy(&tls.stdout), "v\n");
    let plain = kv(&["--insecure"]);
    assert!(!plain.status.success(), "plaintext was answered: {plain:?}");
    for i in 0..3 {
        let log = cluster.log(i);
        assert!(
            !log.contains("plaintext"),
            "node {i} warned of plaintext: {log}"
        );
    }
    // Without --tls-dir or --insecure, `serve` refuses to start.
    let out = Command::new(env!("CARGO_BIN_EXE_zeroraft"))
        .args(["serve", "--id", "0", "--peers", cluster.peer_list()])
        .args(["--listen", "127.0.0.1:0", "--storage", "memory"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(SETUP), "{stderr}");
    assert!(stderr.contains("--tls-dir"), "{stderr}");
    // `certs` writes into a new directory only, and keeps the keys to their owner.
    let dir = tempfile::tempdir().unwrap();
    let certs = |out: &Path| {
        Command::new(env!("CARGO_BIN_EXE_zeroraft"))
            .args(["certs", "--nodes", "2", "--cluster", "7", "--out"])
            .arg(out)
            .output()
            .unwrap()
    };
    let first = certs(&dir.path().join("certs"));
    assert!(first.status.success(), "{first:?}");
    for name in [
        "ca.pem",
        "ca.key",
        "node-0.pem",
        "node-0.key",
        "node-1.pem",
        "node-1.key",
    ] {
        let meta = std::fs::metadata(dir.path().join("certs").join(name)).unwrap();
        if name.ends_with(".key") {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(meta.permissions().mode() & 0o077, 0, "{name} is private");
        }
    }
    let again = certs(&dir.path().join("certs"));
    assert_eq!(again.status.code(), Some(SETUP), "{again:?}");
}
