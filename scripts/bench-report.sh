#!/usr/bin/env bash
# The figures at the top of BENCHMARKS.md, measured anew: every command below runs ROUNDS times
# (default 3) in turn, and the table gives each figure's median (the lowest and highest run in
# brackets), with the command that produced it. Takes about ten minutes; run it on a quiet
# machine, and paste its table into BENCHMARKS.md.
#
#   bash scripts/bench-report.sh                  # the table on stdout, progress on stderr
#   ROUNDS=5 bash scripts/bench-report.sh         # more rounds
#
# Needs: cargo, python3; `ip` is not needed (the processes run on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3}

echo "building (release) ..." >&2
cargo build -q --release --bins --examples
cargo test -q --release --test idle_cost --test alloc_budget --no-run 2>/dev/null
bin=target/release/zeroraft
ex=target/release/examples
test_bin() { ls -t target/release/deps/"$1"-* | grep -v '\.d$' | head -n 1; }

# RAW=FILE keeps what the commands printed (and, if FILE exists already, only tabulates it).
raw=${RAW:-$(mktemp)}
[ -n "${RAW:-}" ] || trap 'rm -f "$raw"' EXIT

# run KEY COMMAND...: runs the command, keeps what it printed under KEY.
run() {
    local key=$1
    shift
    echo "  $key: $*" >&2
    { "$@" 2>&1 || echo "FAILED: $*"; } | tr '\r' '\n' | sed "s|^|$key\t|" >>"$raw"
}

if [ -s "$raw" ]; then
    echo "tabulating $raw" >&2
    rounds=$(grep -cP '^mem4096\t3 nodes' "$raw" || true)
else
for round in $(seq "$rounds"); do
    echo "round $round of $rounds" >&2
    run mem4096 "$bin" bench --nodes 3 --clients 4096 --seconds 10
    run mem64 "$bin" bench --nodes 3 --clients 64 --seconds 10
    run one "$ex/latency" --commits 100000
    run file4096 "$bin" bench --nodes 3 --clients 4096 --seconds 10 --storage file
    run file1 "$bin" bench --nodes 3 --clients 1 --seconds 5 --storage file
    run tcp "$ex/tcp" 4096 5
    run serve_mem env STORAGE=memory SECONDS_PER_RUN=10 ROUNDS=1 bash scripts/cluster-bench.sh
    run serve_file env STORAGE=file SECONDS_PER_RUN=10 ROUNDS=1 bash scripts/cluster-bench.sh
    run idle "$(test_bin idle_cost)" --nocapture
    run alloc "$(test_bin alloc_budget)" --nocapture --test-threads=1
done
echo "criterion: start() and get_state() ..." >&2
cargo bench -q --bench api -- --noplot 'start|get_state' 2>/dev/null | sed 's|^|api\t|' >>"$raw"
fi

python3 - "$raw" "$rounds" "$(git rev-parse --short HEAD)" <<'PY'
import re, statistics, sys
raw, rounds, commit = sys.argv[1], sys.argv[2], sys.argv[3]
lines = {}
for line in open(raw, encoding="utf-8"):
    key, _, text = line.rstrip("\n").partition("\t")
    lines.setdefault(key, []).append(text)

NUM = r"([\d.]+)"
SUMMARY = r"^\d+ nodes, "

def values(key, pattern, only=None):
    out = []
    for text in lines.get(key, []):
        if only and not re.search(only, text):
            continue
        out.extend(float(v) for v in re.findall(pattern, text))
    return out

def show(key, pattern, unit="", digits=2, only=None):
    vals = values(key, pattern, only)
    if not vals:
        return "n/a"
    f = "{:.%df}" % digits
    med = f.format(statistics.median(vals)) + unit
    if len(vals) == 1:
        return med
    return "%s [%s – %s]" % (med, f.format(min(vals)), f.format(max(vals)))

rows = []

def bench_row(what, key, cmd):
    figures = "; ".join([
        show(key, NUM + " M commits/s", " M/s", 3, SUMMARY),
        show(key, NUM + " µs CPU per commit", " µs CPU", 3, SUMMARY),
        "p50 " + show(key, r"p50 " + NUM + " µs", " µs", 1, SUMMARY)
        + ", p99.9 " + show(key, r"p99\.9 " + NUM + " µs", " µs", 1, SUMMARY),
    ])
    rows.append((what, figures, cmd))

bench_row("in process, 3 nodes, 16 B, 4096 in flight", "mem4096",
          "`zeroraft bench --nodes 3 --clients 4096 --seconds 10`")
bench_row("in process, 3 nodes, 16 B, 64 in flight", "mem64",
          "`zeroraft bench --nodes 3 --clients 64 --seconds 10`")
rows.append(("in process, 3 nodes, one client: start to the leader's apply",
    "p50 " + show("one", r"p50 " + NUM + " µs", " µs", 1)
    + ", p99 " + show("one", r"p99 " + NUM + " µs", " µs", 1)
    + "; " + show("one", NUM + " µs CPU per commit", " µs CPU", 1),
    "`examples/latency --commits 100000`"))
bench_row("in process, 3 nodes, write-ahead logs, 4096 in flight", "file4096",
          "`zeroraft bench --nodes 3 --clients 4096 --seconds 10 --storage file`")
rows.append(("in process, 3 nodes, write-ahead logs, one client",
    "p50 " + show("file1", r"p50 " + NUM + " µs", " µs", 1, SUMMARY)
    + "; fdatasync " + show("file1", r"fdatasync median " + NUM + " µs", " µs", 1),
    "`zeroraft bench --nodes 3 --clients 1 --seconds 5 --storage file`"))
rows.append(("engine over TCP, 3 nodes in one process, 4096 in flight",
    show("tcp", NUM + " M commits/s", " M/s", 3)
    + "; " + show("tcp", NUM + " µs CPU per commit", " µs CPU", 3)
    + "; one client p50 " + show("tcp", r"one client: p50 " + NUM + " µs", " µs", 1),
    "`examples/tcp 4096 5`"))
for key, what, storage in (("serve_mem", "memory storage", "memory"),
                           ("serve_file", "write-ahead logs", "file")):
    rows.append(("3 `serve` processes on loopback, %s, 4096 puts in flight" % what,
        show(key, NUM + " M commits/s", " M puts/s", 3)
        + "; servers " + show(key, r"servers: [\d.]+ s of CPU, " + NUM + " µs per commit", " µs CPU", 2)
        + "; one client p50 " + show(key, r"one client: latency p50 " + NUM + " µs", " µs", 1)
        + " (loopback round trip " + show(key, r"round trip p50 " + NUM + " µs", " µs", 1)
        + (", fdatasync " + show(key, r"fdatasync median " + NUM + " µs", " µs", 1)
           if storage == "file" else "") + ")",
        "`STORAGE=%s scripts/cluster-bench.sh`" % storage))
rows.append(("idle 5-node cluster, CPU",
    show("idle", r"= " + NUM + "% of one core", "% of a core", 3),
    "`cargo test --release --test idle_cost -- --nocapture`"))
rows.append(("allocations per committed entry, bursts of 64 / 1024",
    show("alloc", r"bursts of 64: " + NUM, "", 4) + " / " + show("alloc", r"bursts of 1024: " + NUM, "", 4),
    "`cargo test --release --test alloc_budget -- --nocapture --test-threads=1`"))
for name in ("start", "get_state"):
    found = []
    grab = False
    for text in lines.get("api", []):
        if re.match(r"^%s\b" % name, text):
            grab = True
        m = re.search(r"time:\s+\[[\d.]+ \S+ ([\d.]+) (ns|µs)", text)
        if grab and m:
            found.append(float(m.group(1)) * (1000 if m.group(2) == "µs" else 1))
            grab = False
    figure = "%.1f ns" % found[0] if found else "n/a"
    rows.append(("`%s()` on a leader under load (criterion's estimate)" % name, figure,
                 "`cargo bench --bench api -- %s`" % name))

print("Measured at %s, %s rounds: the median, the lowest and highest round in brackets.\n" % (commit, rounds))
print("| what | figures | command |")
print("| --- | --- | --- |")
for what, figures, cmd in rows:
    print("| %s | %s | %s |" % (what, figures, cmd))
failed = [t for ts in lines.values() for t in ts if t.startswith("FAILED")]
if failed:
    print("\nFailed runs:\n" + "\n".join(failed), file=sys.stderr)
    sys.exit(1)
PY
