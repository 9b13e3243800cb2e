#!/usr/bin/env bash
# The pages' end-to-end tests in real headless Chromium: installs what they
# need (Debian's chromium and CJK fonts, the npm packages pinned in
# package-lock.json), then runs them against the lethe binary.
#   LETHE_BIN       the binary (default target/debug/lethe, built if missing)
#   SCREENSHOT_DIR  write a screenshot of each main page here
#                   (docs/screenshots is made with this)
set -euo pipefail
CALLER=$PWD
cd "$(dirname "$0")"
ROOT=$(cd ../.. && pwd)

need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
fc-list 2>/dev/null | grep -qi "Noto Sans CJK" || need+=(fonts-noto-cjk)
if [ ${#need[@]} -gt 0 ]; then
  echo "e2e: installing ${need[*]} (Debian)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)'; then
  echo "e2e: Node.js 20 or newer is needed" >&2; exit 1
fi
[ -d node_modules/playwright-core ] && [ -d node_modules/axe-core ] || npm ci --no-audit --no-fund --loglevel=error

LETHE_BIN="${LETHE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/lethe}"
case "$LETHE_BIN" in /*) ;; *) LETHE_BIN="$CALLER/$LETHE_BIN" ;; esac
export LETHE_BIN
[ -z "${SCREENSHOT_DIR:-}" ] || case "$SCREENSHOT_DIR" in /*) ;; *) export SCREENSHOT_DIR="$CALLER/$SCREENSHOT_DIR" ;; esac
if [ ! -x "$LETHE_BIN" ]; then
  (cd "$ROOT" && cargo build --locked -p lethe)
fi
node --test --test-concurrency=1 --test-timeout=300000 pages.test.mjs
