#!/usr/bin/env bash
# Runs the tester suites (2A, 2B, 2C and 2D; TESTS="election_2a agreement_2b" for fewer) RUNS
# times in a row with the default parallel test threads, then RUNS times with --test-threads=1
# (MODES="sequential" for one of the two), and prints how long each run took. With BUSY=1 a busy
# loop keeps one more core occupied for the whole time, as on a machine doing other work.
#
#   RUNS=20 BUSY=1 bash scripts/suite-repeat.sh
#   RUNS=20 BUSY=1 TESTS=snapshot_2d MODES=sequential OUT=target/suite-2d bash scripts/suite-repeat.sh
#
# Stops at the first failing run and leaves its output in $OUT/failed.txt (OUT defaults to
# target/suite-repeat).
# This is how the robustness figures in docs/testing.md were taken.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-20}
out=${OUT:-target/suite-repeat}
mkdir -p "$out"
: > "$out/passed.txt"

# The suites are modules of one test binary, `tester`; each name in TESTS filters by module.
tests=${TESTS:-election_2a agreement_2b persist_2c snapshot_2d}
filters=()
for t in $tests; do filters+=("$t::"); done
bins=$(cargo test --release --no-run --test tester 2>&1 |
    sed -n 's/.*Executable tests\/tester\/main\.rs (\(.*\))/\1/p')
[ -n "$bins" ] || { echo "could not find the tester's test binary" >&2; exit 1; }

busy_pid=
if [ "${BUSY:-0}" = 1 ]; then
    ( while :; do :; done ) &
    busy_pid=$!
    trap 'kill $busy_pid 2>/dev/null' EXIT
fi

modes=${MODES:-parallel sequential}
for mode in $modes; do
    args=("${filters[@]}" --nocapture)
    [ "$mode" = sequential ] && args+=(--test-threads=1)
    for i in $(seq 1 "$runs"); do
        start=$(date +%s%N)
        for bin in $bins; do
            if ! "$bin" "${args[@]}" > "$out/last.txt" 2>&1; then
                cp "$out/last.txt" "$out/failed.txt"
                echo "$mode run $i FAILED: see $out/failed.txt" >&2
                exit 1
            fi
            passed=$(grep 'Passed' "$out/last.txt") || {
                cp "$out/last.txt" "$out/failed.txt"
                echo "$mode run $i: $bin printed no Passed line: see $out/failed.txt" >&2
                exit 1
            }
            printf '%s\n' "$passed" | sed "s/^/$mode $i /" >> "$out/passed.txt"
        done
        ms=$(( ($(date +%s%N) - start) / 1000000 ))
        printf '%s run %d passed in %d.%d s\n' "$mode" "$i" $((ms / 1000)) $((ms % 1000 / 100))
    done
done
echo "all $runs runs of each of: $modes passed; Passed lines in $out/passed.txt"
