//! The binary toward the programs around it: output into a pipe whose reader went away ends a
//! run quietly (status 0, no panic) and at once, and SIGINT, SIGTERM and SIGHUP end it the way
//! its time limit does (the summary printed, the terminal restored, a temporary data directory
//! removed), with status 128 plus the signal's number.
//!
//! Every run here is given far more `--seconds` than the test waits for it, so a run that
//! ignored the pipe or the signal would fail the test instead of ending on its own.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How long a run gets for its first line: a loaded machine may take a while to start it.
const START: Duration = Duration::from_secs(30);
/// How long a run gets to end once its reader went away or it was signalled: far less than
/// its `--seconds`, far more than it needs.
const END: Duration = Duration::from_secs(30);

fn zeroraft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_zeroraft"))
}

/// A directory of its own under the system's temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("zeroraft-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    /// What the directory holds.
    fn entries(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Reads `pipe` on a thread of its own and sends each line down the returned channel, so that
/// the test can wait for a line with a timeout. With `close_after`, the thread stops after
/// that many lines and closes the pipe's read end, as `head -n` does.
fn lines(pipe: impl Read + Send + 'static, close_after: Option<usize>) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let reader = BufReader::new(pipe);
        for (n, line) in reader.lines().enumerate() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() || close_after == Some(n + 1) {
                return;
            }
        }
    });
    rx
}

/// The next line from `lines`, which must come within `limit`.
fn next_line(lines: &Receiver<String>, limit: Duration, what: &str) -> String {
    match lines.recv_timeout(limit) {
        Ok(line) => line,
        Err(RecvTimeoutError::Timeout) => panic!("{what}: no line within {limit:?}"),
        Err(RecvTimeoutError::Disconnected) => panic!("{what}: the output ended"),
    }
}

/// Every line still to come from `lines`, until the pipe closes.
fn rest(lines: &Receiver<String>, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    let mut text = String::new();
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                text.push_str(&line);
                text.push('\n');
            }
            Err(RecvTimeoutError::Disconnected) => return text,
            Err(RecvTimeoutError::Timeout) => panic!("the output did not end: {text}"),
        }
    }
}

/// Waits up to `limit` for `child` to exit; kills it and fails the test if it does not.
fn wait_for_exit(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running {limit:?} later");
        }
        // Polling for the exit itself, which is the outcome waited for.
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut text).unwrap();
    }
    text
}

/// Sends `signal` (a name such as `TERM`) to process `pid`.
fn kill(signal: &str, pid: u32) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{signal} {pid}: {status}");
}

/// Exits quietly: status 0, and stderr says nothing of a panic or of the pipe.
fn assert_quiet(status: ExitStatus, stderr: &str, what: &str) {
    assert_eq!(status.code(), Some(0), "{what}: {status}: {stderr}");
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    assert!(!stderr.contains("Broken pipe"), "{what}: {stderr}");
}

/// Runs the binary with `args` and its stdout a pipe whose read end is closed before it starts,
/// so that its first write meets a broken pipe; it must end quietly.
fn into_a_closed_pipe(args: &[&str], what: &str) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = zeroraft()
        .args(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_for_exit(&mut child, END, what);
    assert_quiet(status, &stderr_of(&mut child), what);
}

/// Starts `--headless` for 60 s, 3 nodes on write-ahead logs in a temporary directory under
/// `tmp` (its TMPDIR), with stdout and stderr piped.
fn headless_on_files(tmp: &TempDir) -> Child {
    zeroraft()
        .args(["--headless", "--seconds", "60", "--nodes", "3"])
        .args(["--rate", "2000", "--storage", "file"])
        .env("TMPDIR", &tmp.0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn help_into_a_pipe_nobody_reads_exits_quietly() {
    into_a_closed_pipe(&["--help"], "--help");
}

#[test]
fn headless_stops_quietly_and_cleans_up_when_its_reader_goes_away() {
    let tmp = TempDir::new("headless-pipe");
    let mut child = headless_on_files(&tmp);
    // Like `| head -1`: one line, then the read end closes.
    let out = lines(child.stdout.take().unwrap(), Some(1));
    let first = next_line(&out, START, "headless");
    assert!(first.starts_with("t=   1s "), "{first}");
    // The next line, a second later, meets the broken pipe: the run must end there.
    let status = wait_for_exit(&mut child, END, "headless after its reader went away");
    let stderr = stderr_of(&mut child);
    assert_quiet(status, &stderr, "headless");
    assert!(
        stderr.contains("(removed at exit)"),
        "the temporary data directory is announced: {stderr}"
    );
    assert_eq!(
        tmp.entries(),
        Vec::<PathBuf>::new(),
        "left behind in TMPDIR"
    );
}

#[test]
fn bench_summary_into_a_pipe_nobody_reads_exits_quietly() {
    into_a_closed_pipe(
        &["bench", "--seconds", "1", "--nodes", "1", "--clients", "8"],
        "bench",
    );
}

#[test]
fn bench_stops_quietly_when_the_reader_of_its_progress_goes_away() {
    let mut child = zeroraft()
        .args(["bench", "--seconds", "60", "--nodes", "1", "--clients", "8"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let progress = lines(child.stderr.take().unwrap(), Some(1));
    let first = next_line(&progress, START, "bench progress");
    assert!(first.starts_with("t=   1s "), "{first}");
    // Stderr is closed now, so only the status can tell: 101 after a panic, 0 when quiet.
    let status = wait_for_exit(&mut child, END, "bench after its reader went away");
    assert_eq!(status.code(), Some(0), "{status}");
}

/// Runs `--headless` with file storage in a temporary directory of its own, sends it `signal`
/// after the first line, and checks that it stops at once with status `128 + number`, prints
/// its summary, and leaves nothing behind.
fn headless_stops_on(signal: &str, number: i32) {
    let tmp = TempDir::new(&format!("headless-{signal}"));
    let mut child = headless_on_files(&tmp);
    let out = lines(child.stdout.take().unwrap(), None);
    let first = next_line(&out, START, signal);
    assert!(first.starts_with("t=   1s "), "{signal}: {first}");
    kill(signal, child.id());
    let status = wait_for_exit(&mut child, END, signal);
    let stdout = rest(&out, END);
    let stderr = stderr_of(&mut child);
    assert_eq!(
        status.code(),
        Some(128 + number),
        "{signal}: {status}: {stdout}{stderr}"
    );
    // Whether anything committed by then depends on the disk; that the run ended through its
    // summary does not.
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("summary: "))
        .unwrap_or_else(|| panic!("{signal}: no summary: {stdout}"));
    assert!(
        summary.contains(" client commands committed"),
        "{signal}: {summary}"
    );
    assert!(!stderr.contains("panicked"), "{signal}: {stderr}");
    assert_eq!(
        tmp.entries(),
        Vec::<PathBuf>::new(),
        "{signal}: left behind in TMPDIR"
    );
}

#[test]
fn headless_stops_on_sigterm_with_its_summary_and_removes_its_data() {
    headless_stops_on("TERM", 15);
}

#[test]
fn headless_stops_on_sighup_with_its_summary_and_removes_its_data() {
    headless_stops_on("HUP", 1);
}

#[test]
fn headless_stops_on_sigint_with_its_summary_and_removes_its_data() {
    headless_stops_on("INT", 2);
}

#[test]
fn bench_stops_on_sigint_with_its_summary() {
    let mut child = zeroraft()
        .args(["bench", "--seconds", "60", "--nodes", "1", "--clients", "8"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let progress = lines(child.stderr.take().unwrap(), None);
    next_line(&progress, START, "bench progress");
    kill("INT", child.id());
    let status = wait_for_exit(&mut child, END, "bench after SIGINT");
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert_eq!(status.code(), Some(130), "{status}: {stdout}");
    assert!(stdout.contains(" M commits/s, "), "{stdout}");
}

/// The dashboard needs a terminal: util-linux's `script` gives it one (a pseudo-terminal) and
/// copies everything written to it to a pipe. Starts the dashboard, sends it `signal` once it
/// has drawn, and checks that it leaves the alternate screen, shows the cursor again, prints
/// its summary and exits with status `128 + number`.
#[cfg(target_os = "linux")]
fn dashboard_restores_the_terminal_on(signal: &str, number: i32) {
    /// Entering and leaving the alternate screen, hiding and showing the cursor.
    const ENTER: &[u8] = b"\x1b[?1049h";
    const LEAVE: &[u8] = b"\x1b[?1049l";
    const HIDE_CURSOR: &[u8] = b"\x1b[?25l";
    const SHOW_CURSOR: &[u8] = b"\x1b[?25h";

    fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        haystack.windows(needle.len()).position(|w| w == needle)
    }

    fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        haystack.windows(needle.len()).rposition(|w| w == needle)
    }

    // `exec` keeps the shell's pid, which it prints first, for the dashboard. A fresh
    // pseudo-terminal has no size, so the shell gives it one.
    let shell = format!(
        "stty rows 30 cols 100; echo pid=$$; exec '{}' --seconds 60 --nodes 3 --rate 2000",
        env!("CARGO_BIN_EXE_zeroraft")
    );
    let mut child = Command::new("script")
        .args(["-qec", &shell, "/dev/null"])
        .env("SHELL", "/bin/sh")
        // Kept open until the end: `script` copies its input to the terminal.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux's script(1) gives the dashboard a terminal");
    let (tx, chunks) = mpsc::channel();
    let mut pipe = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = pipe.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    let mut screen = Vec::new();
    let deadline = Instant::now() + START;
    while find(&screen, ENTER).is_none() {
        match chunks.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(chunk) => screen.extend_from_slice(&chunk),
            Err(e) => panic!(
                "{signal}: the dashboard did not start ({e}): {}",
                String::from_utf8_lossy(&screen)
            ),
        }
    }
    let text = String::from_utf8_lossy(&screen);
    let pid: u32 = text
        .split_once("pid=")
        .and_then(|(_, rest)| rest.split_once('\r'))
        .and_then(|(pid, _)| pid.trim().parse().ok())
        .unwrap_or_else(|| panic!("{signal}: no pid: {text}"));
    let before = screen.len();
    kill(signal, pid);
    let status = wait_for_exit(&mut child, END, signal);
    let deadline = Instant::now() + END;
    loop {
        match chunks.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(chunk) => screen.extend_from_slice(&chunk),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => panic!("{signal}: the terminal stayed open"),
        }
    }
    drop(child.stdin.take());
    let after = &screen[before..];
    // What the terminal got last, enough to see how the dashboard ended.
    let shown = String::from_utf8_lossy(&after[after.len().saturating_sub(600)..]);
    let leave = find(after, LEAVE)
        .unwrap_or_else(|| panic!("{signal}: still in the alternate screen: {shown:?}"));
    assert!(
        rfind(&screen, SHOW_CURSOR) > rfind(&screen, HIDE_CURSOR),
        "{signal}: the cursor stays hidden: {shown:?}"
    );
    assert!(
        find(&after[leave..], b"summary: ").is_some(),
        "{signal}: no summary after the dashboard: {shown:?}"
    );
    assert_eq!(status.code(), Some(128 + number), "{signal}: {status}");
}

#[cfg(target_os = "linux")]
#[test]
fn the_dashboard_restores_the_terminal_on_sigterm() {
    dashboard_restores_the_terminal_on("TERM", 15);
}

#[cfg(target_os = "linux")]
#[test]
fn the_dashboard_restores_the_terminal_on_sighup() {
    dashboard_restores_the_terminal_on("HUP", 1);
}

#[test]
fn the_remote_dashboard_needs_a_terminal() {
    // Test runners give no terminal on stdout: the dashboard must say so, not garble output.
    let out = zeroraft()
        .args(["monitor", "--connect", "127.0.0.1:1", "--insecure"])
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("needs a terminal"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn a_bound_on_bytes_in_flight_of_zero_or_nonsense_is_refused() {
    for (case, args) in [
        &["bench", "--max-inflight-bytes", "0"][..],
        &["bench", "--max-inflight-bytes", "8MiB"],
        &["bench", "--max-inflight-bytes=-1"],
        &["serve", "--max-inflight-bytes", "0"],
        &["serve", "--max-inflight-bytes", "2000000000000"],
    ]
    .into_iter()
    .enumerate()
    {
        let out = zeroraft().args(args).output().unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "case {case} {args:?}: {stderr}");
        assert!(
            stderr.contains("'--max-inflight-bytes <BYTES>'")
                && stderr.contains("must be a whole number from 1 to 1099511627776"),
            "case {case} {args:?}: {stderr}"
        );
        assert!(
            !stderr.contains("panicked"),
            "case {case} {args:?}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "case {case} {args:?}");
    }
}

#[test]
fn bench_commits_with_a_bound_on_bytes_in_flight_below_one_command() {
    // Commands of 256 bytes against a bound of 100: the leader still sends one AppendEntries
    // at a time to each follower, so the run commits.
    let out = zeroraft()
        .args([
            "bench",
            "--seconds",
            "1",
            "--clients",
            "64",
            "--payload",
            "256",
            "--max-inflight-bytes",
            "100",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let summary = stdout.lines().next().unwrap_or_default();
    assert!(
        summary.starts_with("3 nodes, 64 in flight, 256 B: "),
        "{stdout}"
    );
    let commits: u64 = summary
        .rsplit_once(" µs (")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of commits in {summary:?}"));
    assert!(commits > 0, "{summary}");
}
