#!/usr/bin/env bash
# Three `zeroraft serve` processes on loopback, loaded by `zeroraft bench --connect`: the
# figures of BENCHMARKS.md's "A cluster of processes". STORAGE=file (default) or memory;
# TLS=1 for mutual TLS between the nodes and to the client (certificates from `zeroraft certs`),
# plaintext (--insecure) otherwise; CLIENTS (default 4096), SECONDS_PER_RUN (default 10), ROUNDS
# (default 1); METRICS=1 has each node serve its metrics (`--metrics`), scraped once a second
# as Prometheus would. Builds first, unless BIN names the binary to run (to compare builds).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${BIN:-}" ]; then
    cargo build --release --quiet
fi
bin=${BIN:-target/release/zeroraft}
storage=${STORAGE:-file}
clients=${CLIENTS:-4096}
seconds=${SECONDS_PER_RUN:-10}
rounds=${ROUNDS:-1}
base=$((20000 + RANDOM % 5000))
peers="127.0.0.1:$base,127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2))"
clients_at="127.0.0.1:$((base + 10)),127.0.0.1:$((base + 11)),127.0.0.1:$((base + 12))"
dir=$(mktemp -d)
pids=()
scraper=
cleanup() {
    kill "${pids[@]}" $scraper 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
cluster=$((1 + RANDOM))
links=(--insecure)
if [ "${TLS:-0}" = 1 ]; then
    "$bin" certs --out "$dir/certs" --nodes 3 --cluster "$cluster" >/dev/null
    links=(--tls-dir "$dir/certs")
fi
for i in 0 1 2; do
    data=()
    if [ "$storage" = file ]; then
        "$bin" init --id "$i" --peers "$peers" --cluster "$cluster" --data "$dir/node-$i" >/dev/null
        data=(--data "$dir/node-$i")
    fi
    metrics=()
    if [ "${METRICS:-0}" = 1 ]; then
        metrics=(--metrics "127.0.0.1:$((base + 20 + i))")
    fi
    "$bin" serve --id "$i" --peers "$peers" --listen "127.0.0.1:$((base + 10 + i))" \
        --storage "$storage" --cluster "$cluster" "${links[@]}" "${data[@]}" "${metrics[@]}" 2>>"$dir/node-$i.log" &
    pids+=($!)
done
# CPU time (user + system, in clock ticks) of the three server processes so far.
server_ticks() {
    local total=0 pid
    for pid in "${pids[@]}"; do
        # Fields 14 and 15 of /proc/PID/stat, counted after the command name's closing paren.
        total=$((total + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')))
    done
    echo "$total"
}
hz=$(getconf CLK_TCK)
if [ "${METRICS:-0}" = 1 ]; then
    # Scrape every node once a second for as long as the script runs.
    (
        while true; do
            for i in 0 1 2; do
                curl -s -o /dev/null "http://127.0.0.1:$((base + 20 + i))/metrics" || true
            done
            sleep 1
        done
    ) &
    scraper=$!
fi
for round in $(seq "$rounds"); do
    echo "== round $round: 3 processes, storage $storage, links ${links[0]}, $clients in flight, ${seconds}s"
    before=$(server_ticks)
    first=1
    "$bin" bench --connect "$clients_at" "${links[@]}" --clients "$clients" --seconds "$seconds" 2>/dev/null |
        while IFS= read -r line; do
            echo "$line"
            if [ "$first" = 1 ]; then
                first=0
                after=$(server_ticks)
                commits=$(echo "$line" | sed -n 's/.*(\([0-9]*\) commits,.*/\1/p')
                awk -v t=$((after - before)) -v hz="$hz" -v c="$commits" \
                    'BEGIN { printf "servers: %.1f s of CPU, %.2f µs per commit\n", t / hz, t / hz * 1e6 / c }'
            fi
        done
done
