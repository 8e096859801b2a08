#!/usr/bin/env bash
# Debian's Chromium for the dashboard tests (tests/dashboard), driven by the playwright Python
# package of the `test` extra: no browser download (`playwright install` is never run), so it
# works on a machine that reaches only the package registries. Idempotent; needs root (CI is).
set -euo pipefail
CHROMIUM=${SESSIONIZE_CHROMIUM:-/usr/bin/chromium}
if [ -x "$CHROMIUM" ]; then
  echo "[browser] $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM") already installed"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium >/dev/null
echo "[browser] installed $(/usr/bin/chromium --version 2>/dev/null || echo chromium)"
