#!/usr/bin/env bash
# The whole test suite: lint, then pytest. Tests that need PostgreSQL, Redis or Kafka get real
# servers from scripts/services.sh, started here and stopped (by PID) when the run ends.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

echo "== ruff"
$BIN/ruff check src tests

if [ "${SESSIONIZE_NO_SERVICES:-}" != "1" ]; then
  echo "== services"
  started=$(scripts/services.sh status | grep -c running || true)
  scripts/services.sh up
  if [ "$started" = "0" ]; then trap 'scripts/services.sh down' EXIT; fi
  eval "$(scripts/services.sh env)"
fi

echo "== pytest"
$BIN/pytest "$@"
