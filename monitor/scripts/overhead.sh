#!/usr/bin/env bash
# Run from the repository root after `cargo build --release`; needs tmux.
# Alternates headless and dashboard runs of the same cluster and load. For each run prints the
# final summary, the whole process's CPU seconds and the main thread's (the sampler/renderer),
# both read from /proc just before the run ends, and the tmux server's CPU during the run.
set -u
BIN=${BIN:-$PWD/target/release/zeroraft}
SECS=${SECS:-10}
RUNS=${RUNS:-6}
ARGS=${ARGS:---rate unlimited}
TCK=$(getconf CLK_TCK)
cpu() { awk -v t="$TCK" '{printf "%.2f", ($14+$15)/t}' "$1" 2>/dev/null; }
source "$(dirname "$0")/wait_pid.sh"
for i in $(seq 1 "$RUNS"); do
  $BIN $ARGS --headless --seconds "$SECS" > /tmp/mon-h.out &
  pid=$!
  sleep $((SECS - 1))
  echo "headless  $i load $(cut -d' ' -f1 /proc/loadavg) cpu $(cpu /proc/$pid/stat) main $(cpu /proc/$pid/task/$pid/stat)"
  wait $pid
  tail -1 /tmp/mon-h.out
  tmux new-session -d -s monbench -x 120 -y 40 "$BIN $ARGS --seconds $SECS; sleep 5"
  srv=$(tmux display -p '#{pid}')
  s0=$(cpu /proc/$srv/stat)
  pid=$(wait_pid "^$BIN $ARGS --seconds") || { tmux kill-session -t monbench 2>/dev/null; exit 1; }
  # Read 1.5 s before the run ends.
  sleep "$(echo "$SECS - 1.5" | bc)"
  echo "dashboard $i load $(cut -d' ' -f1 /proc/loadavg) cpu $(cpu /proc/$pid/stat) main $(cpu /proc/$pid/task/$pid/stat) tmux $(echo "$(cpu /proc/$srv/stat) - $s0" | bc)"
  sleep 2
  tmux capture-pane -p -J -t monbench | grep '^summary'
  tmux kill-session -t monbench
done
