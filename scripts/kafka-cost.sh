#!/usr/bin/env bash
# Kafka mode against the embedded log, side by side in one run, pair by pair.
#
#   scripts/kafka-cost.sh BIN [open|closed|pg|all] [SECONDS]
#
# open (default part of all): for each RATE in $RATES (default "5000 15000") and each of
# $PAIRS rounds (default 2), the same open-loop load (loadgen, scenarios/cpu-sampled.toml.in,
# signed) goes first to `webhooks server` + `webhooks worker` on the embedded log, then to the
# same two processes over the local broker ($KAFKA_BROKERS, default 127.0.0.1:9092, a fresh
# topic per run). Each process is its own: the embedded server's CPU is the ingress share of
# the standalone pipeline (HTTP, verification, durable append), the embedded worker's the
# apply share. CPU per event is user+system CPU (/proc/PID/stat) sampled once a second,
# over the seconds in which the server accepted (or the worker applied) at least half the
# rate, divided by the events of those seconds: set-up and verification are left out.
#
# closed: wrk -t1 -c64 for SECONDS posting unique events (scripts/wrk/unique-success.lua),
# first to `webhooks standalone`, then to server + worker over the broker; accepted/s of
# each, their ratio, and how many of the Kafka run's accepted events the worker had applied
# when wrk stopped and after a drain.
#
# pg (not part of all): for each RATE and each of $PAIRS rounds, the HTTP floor
# (scripts/http-floor.sh: the same binary answering the same load on a path that does no
# work), then Kafka + PostgreSQL: one server and two workers on $DATABASE_URL (default the
# services' database). CPU per event of the server and of the broker's JVM over the seconds
# the server accepted half the rate, of the two workers together and of PostgreSQL's
# processes over the seconds they applied half the rate. PostgreSQL and the broker may
# serve others meanwhile (the figures are then upper bounds).
#
# THREADS=1 adds each server and worker thread's CPU over the run; PROFILE=DIR records
# `perf record -e cpu-clock` of the server and the first worker for 8 s in each pg run. Prints one line per run; LOADGEN (default ./target/release/loadgen). The machine may be
# shared: compare within a pair, not across runs.
set -euo pipefail
bin=$(realpath "$1") part=${2:-all} seconds=${3:-20}
cd "$(dirname "$0")/.."
rates=${RATES:-5000 15000} pairs=${PAIRS:-2}
brokers=${KAFKA_BROKERS:-127.0.0.1:9092}
loadgen=$(realpath "${LOADGEN:-./target/release/loadgen}")
secret=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
database=${DATABASE_URL:-postgres://webhooks:webhooks@127.0.0.1:5432/webhooks}
addr=127.0.0.1:3904 metrics=127.0.0.1:3905 metrics2=127.0.0.1:3906
work=$(mktemp -d)
pids=()
stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap 'stop_all; rm -rf "$work"' EXIT
tick=$(getconf CLK_TCK)

cpu() { awk -v t="$tick" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat" 2>/dev/null || echo 0; }
counter() { curl -sf "http://$1/metrics" | awk -v m="$2" 'index($0, m) == 1 { n += $NF } END { printf "%d", n }'; }
accepted() { counter "$addr" webhooks_accepted_total; }
applied() {
  local n=0 m
  for m in "$metrics" ${worker2:+"$metrics2"}; do n=$((n + $(counter "$m" webhooks_worker_events_total))); done
  echo "$n"
}
# CPU seconds of every process named $1 (PostgreSQL's backends) or matching $2 (a broker).
cpu_of() {
  for p in $(pgrep "$@"); do cat "/proc/$p/stat" 2>/dev/null; done | awk -v t="$tick" '{ n += $14 + $15 } END { printf "%.2f", n / t }'
}
postgres_cpu() { cpu_of -x postgres; }
broker_cpu() { cpu_of -f 'kafka\.Kafka .*/kafka/server\.properties'; }  # the single broker, not the cluster's

wait_up() {
  for _ in $(seq 150); do
    curl -sf -o /dev/null "http://$1/healthz" && return 0
    sleep 0.1
  done
  echo "nothing answers http://$1/healthz; logs in $work" >&2
  tail -5 "$work"/*.log >&2
  exit 1
}

# start MODE RUN [SECRET]: MODE embedded|kafka|kafka-pg|standalone; sets server and worker
# pids (worker2 for kafka-pg's second worker).
start() {
  local mode=$1 run=$2 secret=${3:-} dir="$work/data-$2" args=()
  worker2=
  [[ $mode == kafka* ]] && args=(--kafka-brokers "$brokers" --kafka-topic "kafka-cost-$$-$run")
  [[ $mode == kafka-pg ]] && args+=(--database "$database")
  if curl -sf -o /dev/null "http://$addr/healthz"; then
    echo "something already serves $addr; stop it first" >&2
    exit 1
  fi
  if [[ $mode == standalone ]]; then
    "$bin" standalone --data-dir "$dir" --listen "$addr" >"$work/$run-standalone.log" 2>&1 &
    server=$! worker=$!
    pids+=("$server")
    wait_up "$addr"
    return
  fi
  WEBHOOK_SECRET=$secret "$bin" server --data-dir "$dir" --listen "$addr" "${args[@]}" >"$work/$run-server.log" 2>&1 &
  server=$!
  pids+=("$server")
  wait_up "$addr"
  "$bin" worker --data-dir "$dir" --metrics-listen "$metrics" "${args[@]}" >"$work/$run-worker.log" 2>&1 &
  worker=$!
  pids+=("$worker")
  wait_up "$metrics"
  if [[ $mode == kafka-pg ]]; then
    "$bin" worker --data-dir "$dir-2" --metrics-listen "$metrics2" "${args[@]}" >"$work/$run-worker2.log" 2>&1 &
    worker2=$!
    pids+=("$worker2")
    wait_up "$metrics2"
  fi
}

# sample SECONDS: one line a second: server CPU, workers' CPU, accepted, applied,
# PostgreSQL's CPU, the broker's CPU.
sample() {
  for ((t = 0; t <= $1; t++)); do
    [[ -d /proc/$server ]] || break
    local w
    w=$(awk -v a="$(cpu "$worker")" -v b="$(if [[ -n $worker2 ]]; then cpu "$worker2"; else echo 0; fi)" 'BEGIN { printf "%.2f", a + b }')
    echo "$(cpu "$server") $w $(accepted) $(applied) $(postgres_cpu) $(broker_cpu)"
    sleep 1
  done
}

# CPU milliseconds of each thread name of process $1 over its life.
threads() {
  for t in /proc/"$1"/task/*; do echo "$(tr ' ' _ <"$t/comm") $(awk '{ print $14 + $15 }' "$t/stat")"; done |
    awk -v t="$tick" '{ ms[$1] += $2 * 1000 / t } END { for (k in ms) printf "%s=%d ", k, ms[k] }'
}

# busy MIN [PG]: per-second deltas; a second counts for a process when its own count moved by >= MIN.
busy() {
  awk -v min="$1" -v pg="${2:-0}" 'NR > 1 {
      ds = $1 - s; dw = $2 - w; da = $3 - a; dp = $4 - p; dg = $5 - g; dk = $6 - k
      if (da >= min) { sc += ds; sa += da; kc += dk }
      if (dp >= min) { wc += dw; wp += dp; gc += dg }
    }
    { s = $1; w = $2; a = $3; p = $4; g = $5; k = $6 }
    END {
      printf "server %.1f us/accepted (%d events), worker %.1f us/applied (%d events)", sa ? 1e6 * sc / sa : 0, sa, wp ? 1e6 * wc / wp : 0, wp
      if (pg) printf ", postgresql %.1f us/applied, broker %.1f us/accepted", wp ? 1e6 * gc / wp : 0, sa ? 1e6 * kc / sa : 0
    }'
}

open_run() {
  local mode=$1 rate=$2 run=$3
  start "$mode" "$run" "$secret"
  sed -e "s/RATE/$rate/" -e "s/duration_s = 20/duration_s = $seconds/" scenarios/cpu-sampled.toml.in >"$work/$run.toml"
  sample $((seconds + 30)) >"$work/$run.samples" &
  local sampler=$! profiler=
  if [[ -n ${PROFILE:-} && $mode == kafka-pg ]]; then
    mkdir -p "$PROFILE"
    { profile "$server" "$run-server" & profile "$worker" "$run-worker" & wait; } &
    profiler=$!
  fi
  "$loadgen" run "$work/$run.toml" --url "http://$addr" --out "$work/$run-report" >"$work/$run-loadgen.txt" 2>&1 || true
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  [[ -n $profiler ]] && wait "$profiler"
  local ack verified
  ack=$(grep -m1 -E "^ *ack lat" "$work/$run-loadgen.txt" | sed 's/  */ /g' || true)
  verified=$(grep -m1 -E "verified" "$work/$run-loadgen.txt" | sed 's/  */ /g' || true)
  echo "open $rate/s $mode: $(busy $((rate / 2)) "$([[ $mode == kafka-pg ]] && echo 1)" <"$work/$run.samples"); $ack;$verified"
  if [[ -n ${THREADS:-} ]]; then
    echo "  server threads, CPU ms over the run: $(threads "$server")"
    echo "  worker threads, CPU ms over the run: $(threads "$worker")"
  fi
  stop_all
}

# perf's cpu-clock samples of PID for 8 s, 5 s into the load: which thread and library.
profile() {
  sleep 5
  perf record -q -e cpu-clock -F 999 -p "$1" -o "$PROFILE/$2.data" -- sleep 8 >/dev/null 2>&1 || return 0
  perf report -i "$PROFILE/$2.data" --stdio --sort comm,dso 2>/dev/null | grep -v '^#' | grep -v '^$' | head -15 >"$PROFILE/$2.txt"
}

closed_run() {
  local mode=$1 run=$2
  start "$mode" "$run"
  curl -sf -H 'content-type: application/json' "http://$addr/api/orders" \
    -d '{"id":"ord_closed_loop","user_id":"u","items":["i"],"total_amount":1000000000000}' >/dev/null
  local c0 w0
  c0=$(cpu "$server") w0=$(cpu "$worker")
  RUN_ID="$$$run" wrk -t1 -c64 -d"${seconds}s" -s scripts/wrk/unique-success.lua "http://$addr" >"$work/$run-wrk.txt"
  local acc at_end=
  acc=$(accepted)
  [[ $mode == kafka ]] && at_end=$(applied)
  for _ in $(seq 300); do
    [[ $mode != kafka || $(applied) -ge $(accepted) ]] && break
    sleep 0.1
  done
  local rate non2xx
  rate=$(awk '/Requests\/sec/ { print $2 }' "$work/$run-wrk.txt")
  non2xx=$(awk '/Non-2xx/ { print $NF }' "$work/$run-wrk.txt")
  if [[ $mode == kafka ]]; then
    echo "closed $mode: $rate/s (non-2xx ${non2xx:-0}), applied $at_end of $acc accepted when wrk stopped, $(applied) after the drain; CPU server $(awk -v a="$c0" -v b="$(cpu "$server")" -v n="$acc" 'BEGIN { printf "%.1f", 1e6 * (b - a) / n }') + worker $(awk -v a="$w0" -v b="$(cpu "$worker")" -v n="$acc" 'BEGIN { printf "%.1f", 1e6 * (b - a) / n }') us/accepted"
  else
    echo "closed $mode: $rate/s (non-2xx ${non2xx:-0}); CPU $(awk -v a="$c0" -v b="$(cpu "$server")" -v n="$acc" 'BEGIN { printf "%.1f", 1e6 * (b - a) / n }') us/accepted"
  fi
  echo "$rate" >"$work/$run.rate"
  stop_all
}

echo "kafka-cost: $(date -u +%FT%TZ), $(git rev-parse --short HEAD 2>/dev/null), load average $(cut -d' ' -f1-3 /proc/loadavg)"
n=0
if [[ $part == open || $part == all ]]; then
  for rate in $rates; do
    for ((i = 1; i <= pairs; i++)); do
      for mode in embedded kafka; do
        n=$((n + 1))
        open_run "$mode" "$rate" "$n"
      done
    done
  done
fi
if [[ $part == pg ]]; then
  for rate in $rates; do
    for ((i = 1; i <= pairs; i++)); do
      echo "$(scripts/http-floor.sh "$bin" "$rate" | tail -1)"
      n=$((n + 1))
      open_run kafka-pg "$rate" "$n"
    done
  done
fi
if [[ $part == closed || $part == all ]]; then
  for ((i = 1; i <= pairs; i++)); do
    n=$((n + 1)) && closed_run standalone "$n" && s=$(cat "$work/$n.rate")
    n=$((n + 1)) && closed_run kafka "$n" && k=$(cat "$work/$n.rate")
    awk -v s="$s" -v k="$k" 'BEGIN { printf "closed pair: kafka / standalone = %.2f\n", k / s }'
  done
fi
echo "load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
