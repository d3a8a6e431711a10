#!/usr/bin/env bash
# The closed-loop figure: accepted webhooks/s against the same binary's GET /healthz
# rate, in one run. Starts BIN as `webhooks standalone` (no secret: unsigned) on a fresh data
# directory, drives it with `wrk -t1 -c64` for SECONDS posting unique payment.success events
# (scripts/wrk/unique-success.lua), waits until the worker has an outcome for each, then runs
# the same wrk against /healthz. Prints both rates, their ratio, how many accepted events
# were processed, and the system's CPU per accepted event from the first POST until the
# last one was processed (the drain polls /api/stats every 100 ms, a little CPU of its own).
#
#   scripts/closed-loop.sh BIN [SECONDS]
set -euo pipefail
bin=$1 seconds=${2:-10}
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 2; }
work=$(mktemp -d)
addr=127.0.0.1:3901
pid=
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
source scripts/lib/standalone.sh
start_standalone "$bin" "$addr" "$work/system.log"
curl -sf -H 'content-type: application/json' "http://$addr/api/orders" \
  -d '{"id":"ord_closed_loop","user_id":"u","items":["i"],"total_amount":1000000000000}' >/dev/null

tick=$(getconf CLK_TCK)
cpu() { awk -v t="$tick" '{ print ($14 + $15) / t }' "/proc/$pid/stat"; }
stat() { curl -sf "http://$addr/api/stats" | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"; }
rate() { awk '/Requests\/sec/ { print $2 }'; }

before=$(cpu)
RUN_ID=$$ wrk -t1 -c64 -d"${seconds}s" -s scripts/wrk/unique-success.lua "http://$addr" >"$work/post.txt"
# Requests still in flight when wrk stops are answered after it, so `accepted` is read again,
# after the outcomes, until every event accepted by then had an outcome before it.
for _ in $(seq 600); do
  done_n=$(( $(stat processed) + $(stat duplicates) ))
  accepted=$(stat accepted)
  [ "$done_n" -ge "$accepted" ] && break
  sleep 0.1
done
post_cpu=$(awk -v a="$before" -v b="$(cpu)" 'BEGIN { print b - a }')
wrk -t1 -c64 -d"${seconds}s" "http://$addr/healthz" >"$work/healthz.txt"

post_rate=$(rate <"$work/post.txt")
healthz_rate=$(rate <"$work/healthz.txt")
non2xx=$(awk '/Non-2xx/ { print $NF }' "$work/post.txt")
awk -v p="$post_rate" -v h="$healthz_rate" -v a="$accepted" -v d="$done_n" -v c="$post_cpu" -v bad="${non2xx:-0}" 'BEGIN {
  printf "webhooks %.0f/s (non-2xx %d), healthz %.0f/s, ratio %.2f; processed %d of %d accepted (%.1f %%); system CPU %.1f us per accepted event (until all processed)\n",
    p, bad, h, p / h, d, a, 100 * d / a, 1e6 * c / a }'
