//! The binary end to end without a terminal: `--headless` runs the cluster under load and
//! prints a line a second and a summary; bad arguments exit with status 2.

use std::process::Command;

fn zeroraft(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_zeroraft"))
        .args(args)
        .output()
        .expect("the binary runs")
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
    let committed: u64 = lines[2]
        .split(", ")
        .find_map(|part| part.strip_suffix(" client commands committed"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of committed commands: {stdout}"));
    assert!(committed > 100, "{stdout}");
}

#[test]
fn bad_arguments_exit_with_status_2_and_say_why() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["--nodes", "2"],
            "--nodes must be a whole number from 3 to 9, got `2`",
        ),
        (&["--rate", "lots"], "expected a positive rate"),
        (&["--payload"], "--payload needs a value"),
        (&["--colour"], "unknown argument `--colour`"),
    ];
    for (case, (args, message)) in cases.into_iter().enumerate() {
        let out = zeroraft(args);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "case {case}: {stderr}");
        assert!(stderr.contains(message), "case {case}: {stderr}");
        assert!(stderr.contains("Usage: zeroraft"), "case {case}: {stderr}");
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
