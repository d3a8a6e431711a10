# Sourced by the measurement scripts: start_standalone BIN ADDR LOG [ENV=VALUE ...] starts
# `webhooks standalone` on a fresh data directory under $work and sets $pid once that very
# process answers /healthz. A server left running on ADDR by an earlier run would otherwise
# take the load while the new one died on "address in use", and the CPU samples would read
# a process that no longer exists.
start_standalone() {
  local bin=$1 addr=$2 log=$3
  shift 3
  if curl -sf -o /dev/null "http://$addr/healthz"; then
    echo "something already serves $addr; stop it first (ss -ltnp | grep ${addr##*:})" >&2
    exit 1
  fi
  env "$@" "$bin" standalone --data-dir "$work/data" --listen "$addr" >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "webhooks standalone exited at start:" >&2
      tail -5 "$log" >&2
      exit 1
    fi
    curl -sf -o /dev/null "http://$addr/healthz" && return 0
    sleep 0.1
  done
  echo "webhooks standalone did not answer /healthz on $addr within 10 s" >&2
  exit 1
}
