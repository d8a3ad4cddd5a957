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

raw=$(mktemp)
trap 'rm -f "$raw"' EXIT

# run KEY COMMAND...: runs the command, keeps what it printed under KEY.
run() {
    local key=$1
    shift
    echo "  $key: $*" >&2
    { "$@" 2>&1 || echo "FAILED: $*"; } | tr '\r' '\n' | sed "s|^|$key\t|" >>"$raw"
}

for round in $(seq "$rounds"); do
    echo "round $round of $rounds" >&2
    run mem4096 "$bin" bench --nodes 3 --clients 4096 --seconds 10
    run mem64 "$bin" bench --nodes 3 --clients 64 --seconds 10
    run one "$ex/latency" --commits 100000
    run file4096 "$bin" bench --nodes 3 --clients 4096 --seconds 10 --storage file
    run file1 "$bin" bench --nodes 3 --clients 1 --seconds 5 --storage file
    run tcp "$ex/tcp" 4096 5
    run serve_mem env STORAGE=memory SECONDS_PER_RUN=10 bash scripts/cluster-bench.sh
    run serve_file env STORAGE=file SECONDS_PER_RUN=10 bash scripts/cluster-bench.sh
    run idle "$(test_bin idle_cost)" --nocapture
    run alloc "$(test_bin alloc_budget)" --nocapture --test-threads=1
done
echo "criterion: start() and get_state() ..." >&2
cargo bench -q --bench api -- --noplot 'start|get_state' 2>/dev/null | sed 's|^|api\t|' >>"$raw"

python3 - "$raw" "$rounds" "$(git rev-parse --short HEAD)" <<'PY'
import re, statistics, sys
raw, rounds, commit = sys.argv[1], sys.argv[2], sys.argv[3]
lines = {}
for line in open(raw, encoding="utf-8"):
    key, _, text = line.rstrip("\n").partition("\t")
    lines.setdefault(key, []).append(text)

def values(key, pattern, line_filter=None):
    out = []
    for text in lines.get(key, []):
        if line_filter and not re.search(line_filter, text):
            continue
        for v in re.findall(pattern, text):
            out.append(float(v))
    return out

def fig(vals, unit="", digits=2):
    if not vals:
        return "n/a"
    med = statistics.median(vals)
    f = f"{{:.{digits}f}}"
    if len(vals) == 1:
        return f.format(med) + unit
    return f"{f.format(med)}{unit} [{f.format(min(vals))} – {f.format(max(vals))}]"

summary = r"^3 nodes"
rows = []
def bench_row(what, key, cmd, line=summary):
    rows.append((what,
        f"{fig(values(key, r'([\d.]+) M commits/s', line), ' M/s', 3)}; "
        f"{fig(values(key, r'([\d.]+) µs CPU per commit', line), ' µs CPU', 3)}; "
        f"p50 {fig(values(key, r'p50 ([\d.]+) µs', line), ' µs', 1)}, "
        f"p99.9 {fig(values(key, r'p99\.9 ([\d.]+) µs', line), ' µs', 1)}",
        cmd))

bench_row("in process, 3 nodes, 16 B, 4096 in flight", "mem4096",
          "`zeroraft bench --nodes 3 --clients 4096 --seconds 10`")
bench_row("in process, 3 nodes, 16 B, 64 in flight", "mem64",
          "`zeroraft bench --nodes 3 --clients 64 --seconds 10`")
rows.append(("in process, 3 nodes, one client: start → leader's apply",
    f"p50 {fig(values('one', r'p50 ([\d.]+) µs'), ' µs', 1)}, "
    f"p99 {fig(values('one', r'p99 ([\d.]+) µs'), ' µs', 1)}; "
    f"{fig(values('one', r'([\d.]+) µs CPU per commit'), ' µs CPU', 1)}",
    "`examples/latency --commits 100000`"))
bench_row("in process, 3 nodes, write-ahead logs, 4096 in flight", "file4096",
          "`zeroraft bench --nodes 3 --clients 4096 --seconds 10 --storage file`")
rows.append(("in process, 3 nodes, write-ahead logs, one client",
    f"p50 {fig(values('file1', r'p50 ([\d.]+) µs', summary), ' µs', 1)}; "
    f"fdatasync {fig(values('file1', r'fdatasync median ([\d.]+) µs'), ' µs', 1)}",
    "`zeroraft bench --nodes 3 --clients 1 --seconds 5 --storage file`"))
rows.append(("engine over TCP, 3 nodes in one process",
    f"{fig(values('tcp', r'([\d.]+) M commits/s'), ' M/s', 3)}; "
    f"{fig(values('tcp', r'([\d.]+) µs CPU per commit'), ' µs CPU', 3)}; "
    f"one client p50 {fig(values('tcp', r'one client: p50 ([\d.]+) µs'), ' µs', 1)}",
    "`examples/tcp 4096 5` (4096 in flight, 5 s)"))
for key, what in (("serve_mem", "memory storage"), ("serve_file", "write-ahead logs")):
    rows.append((f"3 `serve` processes on loopback, {what}, 4096 puts in flight",
        f"{fig(values(key, r'([\d.]+) M commits/s'), ' M puts/s', 3)}; "
        f"servers {fig(values(key, r'servers: [\d.]+ s of CPU, ([\d.]+) µs per commit'), ' µs CPU', 2)}; "
        f"one client p50 {fig(values(key, r'one client: latency p50 ([\d.]+) µs'), ' µs', 1)} "
        f"(loopback round trip {fig(values(key, r'round trip p50 ([\d.]+) µs'), ' µs', 1)})",
        f"`STORAGE={'memory' if key == 'serve_mem' else 'file'} scripts/cluster-bench.sh`"))
rows.append(("idle 5-node cluster",
    f"{fig(values('idle', r'= ([\d.]+)% of one core'), '% of a core', 3)}",
    "`cargo test --release --test idle_cost -- --nocapture`"))
rows.append(("allocations per committed entry, bursts of 64 / 1024",
    f"{fig(values('alloc', r'bursts of 64: ([\d.]+)'), '', 4)} / "
    f"{fig(values('alloc', r'bursts of 1024: ([\d.]+)'), '', 4)}",
    "`cargo test --release --test alloc_budget -- --nocapture --test-threads=1`"))
for name in ("start", "get_state"):
    v = [float(x) for x in values('api', r'time:\s+\[[\d.]+ \w+ ([\d.]+) ns', rf'^{name}\b')]
    if not v:
        v = []
        grab = False
        for text in lines.get('api', []):
            if re.match(rf'^{name}\b', text):
                grab = True
            m = re.search(r'time:\s+\[[\d.]+ \w+ ([\d.]+) (ns|µs)', text)
            if grab and m:
                v.append(float(m.group(1)) * (1000 if m.group(2) == 'µs' else 1))
                grab = False
    rows.append((f"`{name}()` on a leader under load (criterion median)", fig(v, ' ns', 1),
                 f"`cargo bench --bench api -- {name}`"))

print(f"Measured at {commit}, {rounds} rounds: the median, the lowest and highest round in brackets.\n")
print("| what | figures | command |")
print("| --- | --- | --- |")
for what, figures, cmd in rows:
    print(f"| {what} | {figures} | {cmd} |")
failed = [t for ts in lines.values() for t in ts if t.startswith("FAILED")]
if failed:
    print("\nFailed runs:\n" + "\n".join(failed), file=sys.stderr)
    sys.exit(1)
PY
