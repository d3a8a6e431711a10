#!/usr/bin/env bash
# The before/after CPU-per-event measurement of REPORT.md ("The store half of issue 11"):
# starts BIN as `webhooks standalone` on a fresh data directory, runs loadgen open loop at
# RATE events/s for 20 s against it (scenarios/cpu-sampled.toml.in), and samples the
# system's CPU per applied event over its busy seconds (scripts/cpu-per-event.sh).
#
#   scripts/measure-cpu.sh BIN LABEL RATE
set -euo pipefail
bin=$1 label=$2 rate=$3
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
WEBHOOK_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw "$bin" standalone --data-dir "$work/data" --listen 127.0.0.1:3900 > "$work/system.log" 2>&1 &
pid=$!
sleep 1
sed "s/RATE/$rate/" scenarios/cpu-sampled.toml.in > "$work/scenario.toml"
scripts/cpu-per-event.sh "$pid" http://127.0.0.1:3900 34 > "$work/cpu.txt" 2>&1 &
sampler=$!
./target/release/loadgen run "$work/scenario.toml" --out "target/loadgen/cpu-$label" | grep -E "send rate|ack lat|end-to-end|verified"
wait "$sampler"
echo "$label: $(tail -1 "$work/cpu.txt")"
curl -s http://127.0.0.1:3900/metrics | grep -E "worker_batch_size_(sum|count)|append_batch_size_(sum|count)" | tr '\n' ' '
echo
