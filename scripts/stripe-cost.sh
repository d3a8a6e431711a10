#!/usr/bin/env bash
# CPU per applied event of Stripe's event envelope against the seed's flat body, in one
# system process: starts BIN as `webhooks standalone` with a Stripe signing secret, then runs
# ROUNDS pairs of loadgen windows, flat then Stripe, at RATE events/s for SECONDS each (the
# same stories, duplicates and shuffles, both signed with Stripe-Signature), sampling the
# system's CPU per applied event over each window's busy seconds (scripts/cpu-per-event.sh).
# Interleaved in one process, so that the machine's drift and the store's growth fall on
# both formats alike. Prints each window, each pair's ratio and the median ratio.
#
#   scripts/stripe-cost.sh [BIN] [RATE] [SECONDS] [ROUNDS]
set -euo pipefail
bin=${1:-target/release/webhooks} rate=${2:-3000} seconds=${3:-15} rounds=${4:-3}
cd "$(dirname "$0")/.."
work=$(mktemp -d)
pid=
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
source scripts/lib/standalone.sh
secret=whsec_loadgen_stripe_cost
start_standalone "$bin" 127.0.0.1:3901 "$work/system.log" STRIPE_WEBHOOK_SECRET=$secret
for format in flat stripe; do
  cat >"$work/$format.toml" <<TOML
name = "stripe-cost-$format"
seed = 31
[target]
url = "http://127.0.0.1:3901"
[signing]
scheme = "stripe"
secret = "$secret"
[workload]
format = "$format"
orders = 2000
duplicate_fraction = 0.05
out_of_order_fraction = 0.1
[load]
max_in_flight = 256
[[load.phases]]
kind = "constant"
rate = $rate
duration_s = $seconds
[drain]
timeout_s = 60
TOML
done
for ((r = 1; r <= rounds; r++)); do
  for format in flat stripe; do
    # Setup before the load and verification after it take several seconds more.
    scripts/cpu-per-event.sh "$pid" http://127.0.0.1:3901 $((seconds + 12)) >"$work/cpu.txt" 2>&1 &
    sampler=$!
    ./target/release/loadgen run "$work/$format.toml" --out "target/loadgen/stripe-cost-$format-$r" | grep -E "verified" | sed "s/^/$format $r:/"
    wait "$sampler"
    us=$(tail -1 "$work/cpu.txt" | sed -n 's/.* = \([0-9.]*\) us\/event/\1/p')
    echo "$format $r: ${us:-?} us/event ($(tail -1 "$work/cpu.txt"))"
    echo "$format $us" >>"$work/all.txt"
  done
done
# Each pair's ratio (its two windows ran back to back), then the median of the pairs.
paste -d' ' <(awk '$1 == "flat" { print $2 }' "$work/all.txt") <(awk '$1 == "stripe" { print $2 }' "$work/all.txt") |
  awk '{ r = $2 / $1; printf "pair %d: flat %.1f, stripe %.1f us/event, stripe/flat %.2f\n", NR, $1, $2, r; print r > "/dev/stderr" }' 2>"$work/ratios.txt"
sort -n "$work/ratios.txt" | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "median stripe/flat over %d pairs: %.2f\n", NR, m }'
