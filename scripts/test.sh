#!/usr/bin/env bash
# The whole test suite: lint, then pytest. Tests that need PostgreSQL, Redis or Kafka get real
# servers from scripts/services.sh, started here and stopped (by PID) when the run ends; the
# dashboard tests get Debian's chromium from scripts/install-browser.sh.
#   SESSIONIZE_NO_SERVICES=1   do not start services (their tests then skip, or fail under CI=1)
#   SESSIONIZE_BENCH_SMOKE=1   also run `python -m bench --quick` (a smoke test, never timed)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

echo "== shared cases and data"  # before any server starts: the suite cannot run without
$BIN/python -c 'from tests.conftest import SHARED; print(SHARED)'

echo "== ruff"
$BIN/ruff check src tests bench

if [ "${SESSIONIZE_NO_SERVICES:-}" != "1" ]; then
  echo "== services"
  started=$(scripts/services.sh status | grep -c running || true)
  scripts/services.sh up
  if [ "$started" = "0" ]; then trap 'scripts/services.sh down' EXIT; fi
  eval "$(scripts/services.sh env)"
  echo "== browser"
  scripts/install-browser.sh
fi

echo "== pytest"
$BIN/pytest "$@"

if [ "${SESSIONIZE_BENCH_SMOKE:-}" = "1" ]; then
  echo "== bench smoke (python -m bench --quick; numbers from CI are not measurements)"
  $BIN/python -m bench --quick --strict --out "${TMPDIR:-/tmp}/sessionize-bench-smoke.json"
fi
