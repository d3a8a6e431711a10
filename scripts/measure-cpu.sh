#!/usr/bin/env bash
# A before/after CPU-per-event measurement: starts BIN as `webhooks standalone` on a fresh data directory, runs loadgen open loop at
# RATE events/s for SECONDS (default 20) against it (scenarios/cpu-sampled.toml.in), and
# samples the system's CPU per applied event over its busy seconds (scripts/cpu-per-event.sh).
# Then prints the CPU milliseconds of each thread name over the whole run (setup and
# verification included), for comparing one thread across builds, and the log's group
# sizes and group write+sync latency histogram.
#
#   scripts/measure-cpu.sh BIN LABEL RATE [SECONDS]
set -euo pipefail
bin=$1 label=$2 rate=$3 seconds=${4:-20}
cd "$(dirname "$0")/.."
work=$(mktemp -d)
pid=
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
source scripts/lib/standalone.sh
start_standalone "$bin" 127.0.0.1:3900 "$work/system.log" WEBHOOK_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
sed -e "s/RATE/$rate/" -e "s/duration_s = 20/duration_s = $seconds/" scenarios/cpu-sampled.toml.in > "$work/scenario.toml"
# Setup before the load and verification after it take about 14 s together.
scripts/cpu-per-event.sh "$pid" http://127.0.0.1:3900 $((seconds + 14)) > "$work/cpu.txt" 2>&1 &
sampler=$!
./target/release/loadgen run "$work/scenario.toml" --out "target/loadgen/cpu-$label" | grep -E "send rate|ack lat|end-to-end|verified"
wait "$sampler"
echo "$label: $(tail -1 "$work/cpu.txt")"
tick=$(getconf CLK_TCK)
for t in /proc/"$pid"/task/*; do echo "$(cat "$t/comm") $(awk '{ print $14 + $15 }' "$t/stat")"; done |
  awk -v t="$tick" '{ ms[$1] += $2 * 1000 / t } END { printf "threads:"; for (k in ms) printf " %s=%d ms", k, ms[k]; print "" }'
curl -s http://127.0.0.1:3900/metrics | grep -E "worker_batch_size_(sum|count)|append_batch_size_(sum|count)|append_latency_seconds_(bucket|sum|count)" | tr '\n' ' '
echo
