#!/usr/bin/env bash
# loadgen's conformance suite (scenarios/conformance, docs/conformance.md) against our system
# and against the seed design's stack (peers/seed), each as server + Kafka + worker on the
# local broker, with the crash rule's worker restart. Needs `scripts/services.sh up kafka`
# and release builds of webhooks and loadgen.
#
# Usage: scripts/conform.sh <command> [OUT]
#   webhooks    our system: every rule must pass
#   seed        the seed's stack: exactly the rules in scenarios/conformance/seed-known-failures.txt
#               must fail, so that a change either way shows
#   restart-webhooks-worker   SIGKILL our worker and start it again (the crash rule's command)
#   webhooks-up / webhooks-down   start or stop our server + worker alone (scripts/peer-load.sh)
# OUT (default target/conform/<command>) receives report.json, report.md and report.html.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${WEBHOOKS_BIN:-$ROOT/target/release/webhooks}"
LOADGEN="${LOADGEN_BIN:-$ROOT/target/release/loadgen}"
STATE="$ROOT/target/conform/state"
PORT="${CONFORM_PORT:-3200}"
BROKERS="127.0.0.1:${KAFKA_PORT:-9092}"
# A test key; the system on loopback checks signatures only when it has one.
export CONFORM_SECRET="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SUITE="$ROOT/scenarios/conformance"

start() { # role
  local topic; topic=$(cat "$STATE/topic")
  # One data directory, so the server reads what the worker wrote; a consumer group of its
  # own, so that no other test's consumers rebalance it.
  local args=("$1" --data-dir "$STATE/data" --kafka-brokers "$BROKERS" --kafka-topic "$topic" --kafka-partitions 1)
  if [ "$1" = server ]; then args+=(--listen "127.0.0.1:$PORT"); else args+=(--consumer "$topic"); fi
  WEBHOOK_SECRET="$CONFORM_SECRET" "$BIN" "${args[@]}" >>"$STATE/$1.log" 2>&1 9>&- &
  echo $! >"$STATE/$1.pid"
  disown
}

stop() { # role signal
  local pid; pid=$(cat "$STATE/$1.pid" 2>/dev/null) || return 0
  kill "-$2" "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$STATE/$1.pid"
}

up() {
  rm -rf "$STATE"; mkdir -p "$STATE"
  echo "conform-$(date +%s)-$$" >"$STATE/topic"
  start worker; start server
  for _ in $(seq 300); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/healthz" && return 0; sleep 0.1; done
  tail -n 20 "$STATE"/*.log >&2; return 1
}

case "${1:-}" in
  webhooks)
    out="${2:-$ROOT/target/conform/webhooks}"
    trap 'stop server TERM; stop worker TERM' EXIT
    up
    "$LOADGEN" conform "http://127.0.0.1:$PORT" --suite "$SUITE" --receiver "$SUITE/receivers/webhooks.toml" \
      --restart "$0 restart-webhooks-worker" --out "$out" || { tail -n 20 "$STATE"/*.log >&2; exit 1; }
    ;;
  seed)
    out="${2:-$ROOT/target/conform/seed}"
    trap '"$ROOT/scripts/seed.sh" down' EXIT
    "$ROOT/scripts/seed.sh" up
    "$LOADGEN" conform "http://127.0.0.1:${SEED_PORT:-3100}" --suite "$SUITE" --receiver "$SUITE/receivers/seed.toml" \
      --restart "$ROOT/scripts/seed.sh restart-worker" --expect-failures "$SUITE/seed-known-failures.txt" --out "$out"
    ;;
  restart-webhooks-worker) stop worker KILL; start worker ;;
  webhooks-up) up ;;
  webhooks-down) stop server TERM; stop worker TERM ;;
  webhooks-pids) cat "$STATE/server.pid" "$STATE/worker.pid" ;;
  *) sed -n '2,/^set -e/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
