//! The metrics as declared, against what is published about them: every name follows
//! Prometheus's conventions, docs/metrics.md lists every one, and the Grafana dashboard
//! (docs/grafana/zeroraft.json) is in Grafana's import format and queries only metrics the code
//! declares.

use std::collections::HashSet;

use serde_json::Value;
use zeroraft::engine::metrics::{Kind, Metric, Unit};

const DASHBOARD: &str = include_str!("../../docs/grafana/zeroraft.json");
const DOCS: &str = include_str!("../../docs/metrics.md");

fn declared() -> impl Iterator<Item = &'static Metric> {
    zeroraft::engine::metrics::METRICS
        .iter()
        .chain(zeroraft::kv::metrics::METRICS)
}

#[test]
fn names_follow_the_prometheus_conventions() {
    let mut seen = HashSet::new();
    for (case, m) in declared().enumerate() {
        let name = m.name;
        assert!(seen.insert(name), "case {case}: {name} declared twice");
        assert!(name.starts_with("zeroraft_"), "case {case}: {name}");
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "case {case}: {name} is not snake case"
        );
        assert_eq!(
            m.kind == Kind::Counter,
            name.ends_with("_total"),
            "case {case}: {name}: counters, and only they, end in _total"
        );
        let base = name.trim_end_matches("_total");
        match m.unit {
            Some(Unit::Seconds) => assert!(base.ends_with("_seconds"), "case {case}: {name}"),
            Some(Unit::Bytes) => assert!(base.ends_with("_bytes"), "case {case}: {name}"),
            _ => {}
        }
        assert_eq!(m.labels.first(), Some(&"node"), "case {case}: {name}");
        assert!(!m.help.is_empty(), "case {case}: {name} has no help");
    }
}

#[test]
fn the_docs_list_every_metric() {
    for m in declared() {
        assert!(
            DOCS.contains(&format!("`{}`", m.name)),
            "docs/metrics.md does not list {}",
            m.name
        );
    }
}

/// The metric names an expression refers to, with a histogram's `_bucket`, `_sum` and `_count`
/// series named after the histogram.
fn names_in(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("zeroraft_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.push(name);
    }
    names
}

fn declares(name: &str) -> bool {
    declared().any(|m| {
        m.name == name
            || (m.kind == Kind::Histogram
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| name == format!("{}{suffix}", m.name)))
    })
}

#[test]
fn the_dashboard_is_in_the_import_format_and_queries_declared_metrics() {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    for field in ["title", "uid"] {
        assert!(dashboard[field].is_string(), "dashboard {field}");
    }
    assert!(dashboard["schemaVersion"].is_u64(), "schemaVersion");
    let input = &dashboard["__inputs"][0];
    assert_eq!(input["type"], "datasource");
    assert_eq!(input["pluginId"], "prometheus");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    let mut ids = HashSet::new();
    let mut queried = HashSet::new();
    for (case, panel) in panels.iter().enumerate() {
        assert!(
            ids.insert(panel["id"].as_u64().expect("a numeric id")),
            "case {case}: id used twice"
        );
        assert!(panel["title"].is_string(), "case {case}: title");
        assert!(
            ["stat", "timeseries"].contains(&panel["type"].as_str().unwrap_or("")),
            "case {case}: type {}",
            panel["type"]
        );
        for key in ["x", "y", "w", "h"] {
            assert!(panel["gridPos"][key].is_u64(), "case {case}: gridPos.{key}");
        }
        assert_eq!(
            panel["datasource"]["uid"], "${DS_PROMETHEUS}",
            "case {case}: the datasource is the import's input"
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "case {case}: no query");
        for target in targets {
            assert!(target["refId"].is_string(), "case {case}: refId");
            let expr = target["expr"].as_str().expect("an expr");
            let names = names_in(expr);
            assert!(!names.is_empty(), "case {case}: {expr} queries no metric");
            for name in names {
                assert!(
                    declares(&name),
                    "case {case}: {expr} queries {name}, which no code declares"
                );
                queried.insert(name);
            }
        }
    }
    // What an operator needs first is on it.
    for name in [
        "zeroraft_leader",
        "zeroraft_term",
        "zeroraft_entries_applied_total",
        "zeroraft_commit_latency_seconds_bucket",
        "zeroraft_wal_fdatasync_seconds_bucket",
        "zeroraft_follower_lag_entries",
        "zeroraft_client_requests_total",
    ] {
        assert!(queried.contains(name), "the dashboard does not show {name}");
    }
}

#[test]
fn names_in_finds_every_metric_of_an_expression() {
    let cases = [
        ("max(zeroraft_term)", vec!["zeroraft_term"]),
        (
            "rate(zeroraft_a_total[1m]) / zeroraft_b",
            vec!["zeroraft_a_total", "zeroraft_b"],
        ),
        ("vector(1)", vec![]),
    ];
    for (case, (expr, want)) in cases.iter().enumerate() {
        assert_eq!(&names_in(expr), want, "case {case}");
    }
    assert!(declares("zeroraft_commit_latency_seconds_count"));
    assert!(!declares("zeroraft_term_count"));
    assert!(!declares("zeroraft_no_such_metric"));
}
