#!/usr/bin/env bash
# The seed design's stack (peers/seed/: Express server, Kafka, better-sqlite3 worker) on the
# local broker, for loadgen to measure against. Not part of the product.
#
# Usage: scripts/seed.sh <command>
#   install          npm ci, unless installed already (up does it too)
#   up               install (npm ci) if needed, create its topic, start the worker and the
#                    server, wait until the server answers; a fresh database each time
#   down             stop both (SIGTERM)
#   restart-worker   SIGKILL the worker mid-work and start it again (the crash rule)
#   pids             the server's and the worker's process ids, one a line
#   logs             the last lines of both logs
#
# Environment (all optional):
#   SEED_PORT     the server's port, default 3100
#   SEED_HOME     database, logs and pids, default target/seed
#   SEED_TOPIC    its Kafka topic, default seed-payment-webhooks (ours is payment-events)
#   KAFKA_PORT    the local broker of scripts/services.sh, default 9092
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
APP="$ROOT/peers/seed"
SEED_HOME="${SEED_HOME:-$ROOT/target/seed}"
export SEED_TOPIC="${SEED_TOPIC:-seed-payment-webhooks}"
export PORT="${SEED_PORT:-3100}"
export KAFKA_BROKERS="127.0.0.1:${KAFKA_PORT:-9092}"
export SEED_DB="$SEED_HOME/db.sqlite"

log() { printf '[seed] %s\n' "$*" >&2; }

install() {
  # better-sqlite3 is compiled here (a minute or two): its prebuilt binaries are downloaded
  # from outside the npm registry, which these machines cannot reach.
  [ -d "$APP/node_modules/better-sqlite3/build/Release" ] || (cd "$APP" && npm ci --no-audit --no-fund --build-from-source >&2)
}

start() { # name
  (cd "$APP" && exec node "src/$1.js" >>"$SEED_HOME/$1.log" 2>&1 9>&-) &
  echo $! >"$SEED_HOME/$1.pid"
}

stop() { # name signal
  local pid
  pid=$(cat "$SEED_HOME/$1.pid" 2>/dev/null) || return 0
  kill "-$2" "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$SEED_HOME/$1.pid"
}

wait_worker() {
  for _ in $(seq 300); do
    grep -q 'worker consuming' "$SEED_HOME/worker.log" 2>/dev/null && return 0
    kill -0 "$(cat "$SEED_HOME/worker.pid")" 2>/dev/null || { tail -20 "$SEED_HOME/worker.log" >&2; exit 1; }
    sleep 0.1
  done
  log "the worker did not join its group within 30 s"; exit 1
}

case "${1:-}" in
  install) install ;;
  up)
    install
    stop server TERM; stop worker TERM
    mkdir -p "$SEED_HOME"; rm -f "$SEED_DB" "$SEED_DB"-wal "$SEED_DB"-shm "$SEED_HOME"/*.log
    "$ROOT/scripts/services.sh" kafka-topics --create --if-not-exists --topic "$SEED_TOPIC" \
      --partitions 1 --replication-factor 1 >/dev/null
    start worker; wait_worker
    start server
    for _ in $(seq 300); do
      curl -s -o /dev/null "http://127.0.0.1:$PORT/api/orders/-" && { log "up on http://127.0.0.1:$PORT"; exit 0; }
      sleep 0.1
    done
    tail -20 "$SEED_HOME/server.log" >&2; exit 1
    ;;
  down) stop server TERM; stop worker TERM ;;
  restart-worker)
    stop worker KILL
    : >"$SEED_HOME/worker.log"
    start worker; wait_worker
    ;;
  pids) cat "$SEED_HOME/server.pid" "$SEED_HOME/worker.pid" ;;
  logs) tail -n 50 "$SEED_HOME/server.log" "$SEED_HOME/worker.log" ;;
  *) sed -n '2,/^set -e/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
