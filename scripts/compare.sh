#!/usr/bin/env bash
# Compares two builds of zeroraft on the same machine in one session, alternating runs so that
# both see the same noise. Each argument is a checkout whose release binaries are built
# (`cargo build --release --bins --examples` and `cargo test --release --test alloc_budget
# --no-run`; the script builds them if missing).
#
#   ROUNDS=5 SECONDS_PER_RUN=5 bash scripts/compare.sh /path/to/before /path/to/after
#
# SERVE=1 adds, per build and round, the engine over TCP (examples/tcp: 4096 in flight, then one
# client) and three `serve` processes with memory storage and with the write-ahead log
# (scripts/cluster-bench.sh: 4096 puts in flight, then one client); ONLY_SERVE=1 runs those alone.
#
# Prints one line per run: variant, what was measured, and the figures the binary reported.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rounds=${ROUNDS:-5}
secs=${SECONDS_PER_RUN:-5}
[ $# -ge 2 ] || { echo "usage: $0 DIR_A DIR_B [...]" >&2; exit 2; }

for dir in "$@"; do
  (cd "$dir" && cargo build -q --release --bins --examples \
     && cargo test -q --release --test alloc_budget --no-run 2>/dev/null)
done

alloc_test() { ls -t "$1"/target/release/deps/alloc_budget-* | grep -v '\.d$' | head -n 1; }

raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
for round in $(seq "$rounds"); do
  for dir in "$@"; do
    name=$(basename "$dir")
    bin="$dir/target/release/zeroraft"
    if [ "${SERVE:-0}" = 1 ] || [ "${ONLY_SERVE:-0}" = 1 ]; then
      line=$("$dir/target/release/examples/tcp" 4096 "$secs" 2>&1 | grep -E '^(one client|4096 in flight)' \
        | tr '\n' ' ')
      echo "round $round $name tcp: $line"
      for storage in memory file; do
        line=$(BIN="$bin" STORAGE=$storage SECONDS_PER_RUN="$secs" ROUNDS=1 bash "$here/cluster-bench.sh" 2>&1 \
          | grep -E '^(3 nodes|servers|one client|disk)' | tr '\n' ' ')
        echo "round $round $name serve $storage: $line"
      done
      if [ "${ONLY_SERVE:-0}" = 1 ]; then
        continue
      fi
    fi
    for clients in 4096 64; do
      line=$("$bin" bench --nodes 3 --clients "$clients" --payload 16 --seconds "$secs" 2>&1 \
        | tr '\r' '\n' | grep -E '^3 nodes' | tail -n 1)
      echo "round $round $name bench C=$clients: $line"
    done
    line=$("$dir/target/release/examples/latency" --commits 100000 | tr '\r' '\n' \
      | grep -E '^(3 nodes|mean)' | tr '\n' ' ')
    echo "round $round $name latency: $line"
    line=$("$(alloc_test "$dir")" cluster_allocations --nocapture --test-threads=1 2>&1 \
      | grep -E 'bursts of' | grep -v panicked | tr '\n' ' ')
    echo "round $round $name allocations: $line"
  done
done | tee "$raw"

echo "== medians over $rounds rounds (min - max)"
python3 - "$raw" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.search(r'round \d+ (\S+) (bench C=\d+|latency|allocations|tcp|serve \w+):(.*)', line)
    if not m:
        continue
    variant, kind, text = m.groups()
    figures = rows.setdefault((kind, variant), {})
    def add(name, pattern):
        for value in re.findall(pattern, text):
            figures.setdefault(name, []).append(float(value))
    if kind == 'tcp':
        add('M commits/s', r'([\d.]+) M commits/s')
        add('µs CPU/commit', r'([\d.]+) µs CPU')
        add('one client p50 µs', r'one client: p50 ([\d.]+)')
        continue
    if kind.startswith('serve'):
        add('M puts/s', r'([\d.]+) M commits/s')
        add('servers µs CPU/put', r'([\d.]+) µs per commit')
        add('p50 µs', r'commits/s, [^,]*, latency p50 ([\d.]+)')
        add('p99 µs', r'commits/s, [^,]*, latency p50 [\d.]+ µs p99 ([\d.]+)')
        add('one client p50 µs', r'one client: latency p50 ([\d.]+)')
        add('loopback RTT µs', r'round trip p50 ([\d.]+)')
        add('fdatasync µs', r'fdatasync median ([\d.]+)')
        continue
    if kind == 'allocations':
        for burst, value in re.findall(r'bursts of (\d+): ([\d.]+)', text):
            figures.setdefault(f'allocs/entry B={burst}', []).append(float(value))
    else:
        add('M commits/s', r'([\d.]+) M commits/s')
        add('µs CPU/commit', r'([\d.]+) µs CPU')
        add('p50 µs', r'p50 ([\d.]+)')
        add('p99 µs', r'p99 ([\d.]+)')
for (kind, variant), figures in sorted(rows.items()):
    shown = ', '.join(f'{name} {statistics.median(v):g} ({min(v):g} - {max(v):g})'
                      for name, v in figures.items())
    print(f'{kind:14} {variant:10} {shown}')
PY
