#!/usr/bin/env bash
# Instruction-count gate (benches/benches/instructions.rs, Valgrind's Callgrind via gungraun).
#
#   scripts/instructions.sh check    compare with the checked-in baseline; exit 3 when any
#                                    count rose more than INSTRUCTIONS_LIMIT_PCT (default 3 %)
#   scripts/instructions.sh update   run the benches and save their counts as the new baseline
#   scripts/instructions.sh install  only install valgrind and the pinned runner
#
# The baseline is gungraun's own summary files under benches/instructions/, committed with
# the change that moved the counts. Installs valgrind and the pinned runner when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Must equal the gungraun version pinned in benches/Cargo.toml: the runner refuses another.
RUNNER_VERSION=0.20.0
BASELINE=checked_in
LIMIT="${INSTRUCTIONS_LIMIT_PCT:-3}"
export GUNGRAUN_HOME="$PWD/benches/instructions"

install() {
  if ! command -v valgrind >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind
  fi
  if [ "$(gungraun-runner --version 2>/dev/null | awk '{print $2}')" != "$RUNNER_VERSION" ]; then
    cargo install --locked --version "$RUNNER_VERSION" gungraun-runner
  fi
}

bench() { cargo bench -p benches --bench instructions -- "$@"; }

case "${1:-}" in
  check)
    # gungraun would quietly create a missing baseline instead of comparing with it.
    if ! find "$GUNGRAUN_HOME" -name "*.base@$BASELINE*" 2>/dev/null | grep -q .; then
      echo "no instruction baseline in $GUNGRAUN_HOME: run scripts/instructions.sh update" >&2
      exit 1
    fi
    install
    bench --baseline="$BASELINE" --callgrind-limits="ir=${LIMIT}%"
    ;;
  update)
    install
    find "$GUNGRAUN_HOME" -type f -name "*.base@$BASELINE" -delete 2>/dev/null || true
    bench --save-baseline="$BASELINE"
    ;;
  install)
    install
    ;;
  *)
    echo "usage: $0 check|update|install" >&2
    exit 2
    ;;
esac
