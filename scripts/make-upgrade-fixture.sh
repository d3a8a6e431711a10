#!/usr/bin/env bash
# Writes system/tests/fixtures/upgrade-previous-release.tar.gz: the data directory an earlier
# release leaves behind, for system/tests/upgrade.rs. That release runs as a server and a worker
# on the embedded log and SQLite; the worker applies some events, then stops, and more events
# are acknowledged while it is down, so the directory holds applied events, queued ones and a
# redelivery of an applied one. manifest.json beside it says which, and what the store recorded.
#
# Usage: scripts/make-upgrade-fixture.sh [COMMIT]   (default: the release named below)
# Builds COMMIT's `webhooks` from `git archive` in a scratch directory under /tmp with its own
# target directory (a whole release build: long), unless WEBHOOKS_BIN names one already built.
# Regenerate it when a release changes what it writes (the schema, the log's records), and
# keep the older fixture's lesson: the test must pass on what real users have on disk.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COMMIT="$(git -C "$ROOT" rev-parse "${1:-83bf90a}")"
SCRATCH="${SCRATCH:-/tmp/webhooks-upgrade-fixture}"
OUT="$ROOT/system/tests/fixtures/upgrade-previous-release.tar.gz"
PORT="${FIXTURE_PORT:-3290}"
BASE="http://127.0.0.1:$PORT"

if [ -z "${WEBHOOKS_BIN:-}" ]; then
  rm -rf "$SCRATCH/src"; mkdir -p "$SCRATCH/src"
  git -C "$ROOT" archive "$COMMIT" | tar -x -C "$SCRATCH/src"
  (cd "$SCRATCH/src" && CARGO_TARGET_DIR="$SCRATCH/target" cargo build --release --locked -p system --bin webhooks)
  WEBHOOKS_BIN="$SCRATCH/target/release/webhooks"
fi

work="$(mktemp -d)"
data="$work/data"
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT

started=
start() { # role args...: its pid in $started
  local role="$1"; shift
  "$WEBHOOKS_BIN" "$role" --data-dir "$data" "$@" >>"$work/$role.log" 2>&1 &
  started=$!
  pids+=("$started")
}

stop() { # pid: SIGTERM, then wait for a clean exit
  kill -TERM "$1"
  for _ in $(seq 300); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  echo "pid $1 did not stop" >&2; tail -n 20 "$work"/*.log >&2; exit 1
}

post() { # path json
  local code; code=$(curl -s -o "$work/last" -w '%{http_code}' -H 'Content-Type: application/json' -d "$2" "$BASE$1")
  case "$code" in 200|201) ;; *) echo "POST $1 got $code: $(cat "$work/last")" >&2; exit 1 ;; esac
}

payment() { # type payment order amount event_id
  post /api/webhooks/payment "{\"event_type\":\"$1\",\"payment_id\":\"$2\",\"order_id\":\"$3\",\"amount\":$4,\"currency\":\"USD\",\"event_id\":\"$5\"}"
}

applied_events() { # payment: how many events the store applied to it
  curl -s "$BASE/api/payments/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("applied_events", 0))' 2>/dev/null || echo 0
}

# Small segments, so that the worker deletes some and the queued events span several.
start server --listen "127.0.0.1:$PORT" --queue-segment-bytes 1024; server=$started
start worker; worker=$started
for _ in $(seq 300); do curl -sf -o /dev/null "$BASE/healthz" && break; sleep 0.1; done

for i in 1 2 3 4 5 6; do
  post /api/orders "{\"id\":\"up_o$i\",\"user_id\":\"user_up\",\"items\":[\"item$i\"],\"total_amount\":${i}00}"
done
for i in 1 2 3; do
  payment payment.pending "up_p$i" "up_o$i" "${i}00" "up_e${i}a"
  payment payment.success "up_p$i" "up_o$i" "${i}00" "up_e${i}b"
done
for i in 1 2 3; do
  for _ in $(seq 300); do [ "$(applied_events "up_p$i")" = 2 ] && break; sleep 0.1; done
  [ "$(applied_events "up_p$i")" = 2 ] || { echo "up_p$i was not applied" >&2; tail -n 20 "$work"/*.log >&2; exit 1; }
done

stop "$worker"
for i in 4 5 6; do
  payment payment.pending "up_p$i" "up_o$i" "${i}00" "up_e${i}a"
  payment payment.success "up_p$i" "up_o$i" "${i}00" "up_e${i}b"
done
# A provider's redelivery of an event the worker applied already.
payment payment.success up_p1 up_o1 100 up_e1b
stop "$server"

python3 - "$data" "$COMMIT" >"$work/manifest.json" <<'PY'
import json, sqlite3, sys
data, commit = sys.argv[1], sys.argv[2]
db = sqlite3.connect(f"file:{data}/store.db?mode=ro", uri=True)
version = db.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
position = db.execute("SELECT MAX(position) FROM consumer_positions").fetchone()[0]
ids = lambda r: {f"up_p{i}": [f"up_e{i}a", f"up_e{i}b"] for i in r}
print(json.dumps({
    "commit": commit,
    "schema_version": version,
    # The store's position in the log: every event after it was acknowledged and not applied.
    "position": position,
    "applied": ids(range(1, 4)),
    "queued": ids(range(4, 7)),
    "redelivered": ["up_e1b"],
    "orders": {f"up_o{i}": f"up_p{i}" for i in range(1, 7)},
}, indent=2))
PY

rm -f "$data/server.url"
mkdir -p "$(dirname "$OUT")"
tar -czf "$OUT" -C "$work" data manifest.json
echo "wrote $OUT ($(du -h "$OUT" | cut -f1)) from $COMMIT: schema $(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m["schema_version"], "position", m["position"])' "$work/manifest.json")"
