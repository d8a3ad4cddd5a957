#!/usr/bin/env bash
# Runs a command and prints its resident set size once per interval (default 1 s; INTERVAL=10
# for every 10 s) on stderr, as "rss t=SECONDS MB", until it exits; then its exit status is
# this script's. For memory series of programs that do not print their own, e.g.
#
#   bash scripts/rss-series.sh target/release/zeroraft --headless --rate unlimited --seconds 600
set -uo pipefail
interval=${INTERVAL:-1}
"$@" &
pid=$!
start=$(date +%s)
while kill -0 "$pid" 2>/dev/null; do
    sleep "$interval"
    kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) || break
    [ -n "$kb" ] && echo "rss t=$(( $(date +%s) - start )) $(( kb / 1024 )) MB" >&2
done
wait "$pid"
