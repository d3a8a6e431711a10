#!/usr/bin/env bash
# The HTTP floor under issue 11's CPU targets: the same binary's CPU per request when the
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
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
WEBHOOK_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw "$bin" standalone --data-dir "$work/data" --listen "$addr" >"$work/system.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf "http://$addr/healthz" >/dev/null && break; sleep 0.1; done
sed -e "s/RATE/$rate/" scenarios/cpu-sampled.toml.in >"$work/scenario.toml"

tick=$(getconf CLK_TCK)
cpu() { awk -v t="$tick" '{ print ($14 + $15) / t }' "/proc/$pid/stat"; }
requests() { curl -sf "http://$addr/metrics" | awk '/^webhooks_http_requests_total/ { n += $2 } END { printf "%d", n }'; }
(
  busy_cpu=0 busy_n=0 prev_cpu=$(cpu) prev_n=$(requests)
  for _ in $(seq 40); do
    sleep 1
    now_cpu=$(cpu) now_n=$(requests)
    if (( now_n - prev_n >= rate / 2 )); then
      busy_cpu=$(awk -v a="$busy_cpu" -v b="$now_cpu" -v c="$prev_cpu" 'BEGIN { print a + b - c }')
      busy_n=$((busy_n + now_n - prev_n))
    fi
    prev_cpu=$now_cpu prev_n=$now_n
  done
  awk -v c="$busy_cpu" -v n="$busy_n" -v r="$rate" 'BEGIN { printf "http floor at %d/s: %.2f CPU-s for %d requests = %.1f us/request\n", r, c, n, c / n * 1e6 }'
) &
sampler=$!
./target/release/loadgen run "$work/scenario.toml" --url "http://$addr" --webhook-path /healthz >"$work/loadgen.txt" 2>&1 || true
grep -E "send rate" "$work/loadgen.txt" || true
wait "$sampler"
