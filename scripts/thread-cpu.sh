#!/usr/bin/env bash
# CPU per thread of `webhooks standalone` over one open-loop run: starts BIN on a fresh data
# directory, runs loadgen at RATE events/s for 20 s (scenarios/cpu-sampled.toml.in), then
# prints the ack latency line, the CPU milliseconds of each thread name (setup and
# verification included), and the log's group count and group write+sync histogram.
# For comparing one thread across builds (REPORT.md, preallocated segments).
#
#   scripts/thread-cpu.sh BIN RATE
set -euo pipefail
bin=$1 rate=$2
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
WEBHOOK_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw "$bin" standalone --data-dir "$work/data" --listen 127.0.0.1:3900 > "$work/system.log" 2>&1 &
pid=$!
sleep 1
sed "s/RATE/$rate/" scenarios/cpu-sampled.toml.in > "$work/scenario.toml"
./target/release/loadgen run "$work/scenario.toml" --out target/loadgen/thread-cpu | grep -E "ack lat" | sed 's/^ *//'
tick=$(getconf CLK_TCK)
for t in /proc/"$pid"/task/*; do echo "$(cat "$t/comm") $(awk '{ print $14 + $15 }' "$t/stat")"; done |
  awk -v t="$tick" '{ ms[$1] += $2 * 1000 / t } END { for (k in ms) printf "%s=%d ms ", k, ms[k]; print "" }'
curl -s http://127.0.0.1:3900/metrics | grep -E "append_batch_size_count|append_latency_seconds_(bucket|sum|count)"
