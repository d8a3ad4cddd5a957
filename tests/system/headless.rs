//! The binary end to end without a terminal: `--headless` runs the cluster under load and
//! prints a line a second and a summary, with nodes keeping their state in memory or in
//! write-ahead logs; bad arguments and unusable data directories exit with status 2.

use std::path::{Path, PathBuf};
use std::process::Command;

fn zeroraft(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_zeroraft"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// A directory of its own under the system's temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("zeroraft-headless-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The client commands the summary line says committed.
fn committed(stdout: &str) -> u64 {
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("summary: "))
        .unwrap_or_else(|| panic!("no summary: {stdout}"));
    summary
        .split(", ")
        .find_map(|part| part.strip_suffix(" client commands committed"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of committed commands: {stdout}"))
}

/// The storage writes the summary line counts.
fn storage_writes(stdout: &str) -> u64 {
    stdout
        .split(", ")
        .find_map(|part| part.split_once(" storage writes (mean "))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of storage writes: {stdout}"))
}

/// Write-ahead log segments in `dir`.
fn segments(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "wal"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn headless_prints_a_line_a_second_and_a_summary() {
    let out = zeroraft(&[
        "--headless",
        "--seconds",
        "2",
        "--nodes",
        "3",
        "--rate",
        "2000",
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "exit {:?}: {stdout}", out.status);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "two seconds and a summary: {stdout}");
    assert!(lines[0].starts_with("t=   1s "), "{stdout}");
    assert!(lines[1].starts_with("t=   2s "), "{stdout}");
    assert!(lines[2].starts_with("summary: "), "{stdout}");
    assert!(lines[2].contains(" 3 nodes, "), "{stdout}");
    // The first election takes well under a second with the default timeouts, so by the end
    // there is a leader and commands have committed.
    assert!(lines[1].contains(" leader=n"), "{stdout}");
    assert!(lines[1].contains(" syncs/s="), "{stdout}");
    assert!(committed(&stdout) > 100, "{stdout}");
    // Nodes keep their state in memory by default: they write to it as they go.
    assert!(storage_writes(&stdout) > 0, "{stdout}");
    assert!(out.stderr.is_empty(), "no data directory to speak of");
}

#[test]
fn headless_with_file_storage_commits_and_keeps_the_directory_given() {
    let tmp = TempDir::new("given");
    let data = tmp.0.join("data");
    let data_arg = data.to_str().unwrap();
    // Three seconds: a busy machine's disk can take tens of milliseconds a sync, which slows
    // the first election and the first commits.
    let args = [
        "--headless",
        "--seconds",
        "3",
        "--nodes",
        "3",
        "--rate",
        "2000",
        "--storage",
        "file",
        "--data",
        data_arg,
    ];
    let out = zeroraft(&args);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        out.status.success(),
        "exit {:?}: {stdout}{stderr}",
        out.status
    );
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
    assert!(committed(&stdout) > 0, "{stdout}");
    assert!(storage_writes(&stdout) > 0, "{stdout}");
    assert!(
        stderr.contains(&format!("in {data_arg} (kept)")),
        "{stderr}"
    );
    for node in 0..3 {
        let dir = data.join(format!("node-{node}"));
        assert!(segments(&dir) > 0, "{} holds no log", dir.display());
    }

    // A new run is a new cluster, which the logs of the last one would refuse: said, not a panic.
    let out = zeroraft(&args);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("holds a node's log from an earlier run"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn headless_with_file_storage_and_no_directory_uses_a_temporary_one_and_removes_it() {
    let out = zeroraft(&[
        "--headless",
        "--seconds",
        "1",
        "--nodes",
        "3",
        "--storage",
        "file",
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        out.status.success(),
        "exit {:?}: {stdout}{stderr}",
        out.status
    );
    // Whether anything committed in one second depends on the machine; the other test checks
    // that file storage commits.
    assert!(stdout.contains("summary: "), "{stdout}");
    let dir = stderr
        .split_once("nodes keep write-ahead logs in ")
        .and_then(|(_, rest)| rest.split_once(" (removed at exit)"))
        .map(|(dir, _)| PathBuf::from(dir))
        .unwrap_or_else(|| panic!("where the logs are: {stderr}"));
    assert!(dir.starts_with(std::env::temp_dir()), "{}", dir.display());
    assert!(!dir.exists(), "{} is still there", dir.display());
}

#[test]
fn unusable_data_directories_exit_with_status_2_and_say_why() {
    let tmp = TempDir::new("unusable");
    let file = tmp.0.join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let old_log = tmp.0.join("old");
    std::fs::create_dir_all(old_log.join("node-1")).unwrap();
    std::fs::write(old_log.join("node-1").join("IDENTITY"), b"x").unwrap();
    let cases = [
        (file.clone(), "cannot use"),
        (file.join("below"), "cannot use"),
        (
            old_log.clone(),
            "node-1 holds a node's log from an earlier run",
        ),
    ];
    for (case, (dir, message)) in cases.into_iter().enumerate() {
        let dir = dir.to_str().unwrap();
        let out = zeroraft(&["--headless", "--storage", "file", "--data", dir]);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "case {case}: {stderr}");
        assert!(stderr.contains(message), "case {case}: {stderr}");
        assert!(!stderr.contains("panicked"), "case {case}: {stderr}");
        assert!(out.stdout.is_empty(), "case {case}");
    }
}

#[test]
fn bad_arguments_exit_with_status_2_and_say_why() {
    let cases: [(&[&str], &str); 6] = [
        (
            &["--nodes", "2"],
            "invalid value '2' for '--nodes <N>': must be a whole number from 3 to 9",
        ),
        (&["--rate", "lots"], "expected a positive rate"),
        (
            &["--payload"],
            "a value is required for '--payload <BYTES>'",
        ),
        (&["--colour"], "unexpected argument '--colour' found"),
        (
            &["--storage", "disk"],
            "invalid value 'disk' for '--storage <KIND>'",
        ),
        (
            &["--data", "/tmp"],
            "--data is where --storage file keeps the logs",
        ),
    ];
    for (case, (args, message)) in cases.into_iter().enumerate() {
        let out = zeroraft(args);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "case {case}: {stderr}");
        assert!(stderr.contains(message), "case {case}: {stderr}");
        assert!(stderr.contains("try '--help'"), "case {case}: {stderr}");
        assert!(out.stdout.is_empty(), "case {case}");
    }
}

#[test]
fn the_dashboard_refuses_to_start_without_a_terminal() {
    // Test runners give no terminal on stdout: the dashboard must say so, not garble output.
    let out = zeroraft(&["--seconds", "1"]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("needs a terminal"), "{stderr}");
}
