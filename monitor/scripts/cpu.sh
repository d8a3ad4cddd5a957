#!/usr/bin/env bash
# Run from the repository root after `cargo build --release`; needs tmux.
# CPU time of the dashboard's own thread (the main thread: sampling, rendering, input) and of
# the tmux server drawing it, over a 30 s dashboard run at 120x40, from /proc/*/schedstat (ns).
set -u
BIN=${BIN:-$PWD/target/release/zeroraft}
ns() { cut -d' ' -f1 "$1"; }
source "$(dirname "$0")/wait_pid.sh"
tmux new-session -d -s moncpu -x 120 -y 40 "$BIN --rate unlimited --seconds 32; sleep 5"
srv=$(tmux display -p '#{pid}')
pid=$(wait_pid "^$BIN --rate unlimited --seconds") || { tmux kill-session -t moncpu 2>/dev/null; exit 1; }
sleep 1 # past start-up
m0=$(ns /proc/$pid/task/$pid/schedstat); t0=$(ns /proc/$srv/schedstat); p0=$(awk '{print $14+$15}' /proc/$pid/stat)
sleep 30
m1=$(ns /proc/$pid/task/$pid/schedstat); t1=$(ns /proc/$srv/schedstat); p1=$(awk '{print $14+$15}' /proc/$pid/stat)
echo "over 30 s: main thread $(( (m1-m0)/1000000 )) ms, tmux server $(( (t1-t0)/1000000 )) ms, whole process $(( (p1-p0)*1000/$(getconf CLK_TCK) )) ms"
sleep 3
tmux capture-pane -p -J -t moncpu | grep '^summary'
tmux kill-session -t moncpu
