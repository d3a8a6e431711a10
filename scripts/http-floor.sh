#!/usr/bin/env bash
# The HTTP floor under the CPU-per-event targets: the same binary's CPU per request when the
# open-loop load goes to a path that does no work. Starts BIN as `webhooks standalone` on a
# fresh data directory, runs loadgen at RATE requests/s for 20 s with its load sent to
# `POST /healthz` (answered 405 at once: the connection handling, parsing and response of a
# webhook without its verification, append or apply), and samples the process's CPU and
# its request count once a second; CPU per request over the seconds that served at least
# half the rate. Compare with scripts/measure-cpu.sh BIN LABEL RATE at the same rate.
#
#   scripts/http-floor.sh BIN RATE
set -euo pipefail
bin=$1 rate=$2
cd "$(dirname "$0")/.."
work=$(mktemp -d)
addr=127.0.0.1:3903
pid=
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
source scripts/lib/standalone.sh
start_standalone "$bin" "$addr" "$work/system.log" WEBHOOK_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
sed -e "s/RATE/$rate/" scenarios/cpu-sampled.toml.in >"$work/scenario.toml"

COUNT=requests MIN_PER_SECOND=$((rate / 2)) scripts/cpu-per-event.sh "$pid" "http://$addr" 40 >"$work/cpu.txt" 2>&1 &
sampler=$!
./target/release/loadgen run "$work/scenario.toml" --url "http://$addr" --webhook-path /healthz >"$work/loadgen.txt" 2>&1 || true
grep -E "send rate" "$work/loadgen.txt" || true
wait "$sampler"
echo "http floor at $rate/s: $(tail -1 "$work/cpu.txt")"
