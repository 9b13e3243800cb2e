#!/usr/bin/env bash
# Benchmark: the vault library against the raw AEAD (same run), then the
# HTTP batch API of a running demo from a second process.
#
#   bench/vault.sh [ops] [http-seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
OPS=${1:-200000}
SECS=${2:-5}
cargo build --release -q -p lethe --features bench
"${CARGO_TARGET_DIR:-target}/release/lethe" bench vault --ops "$OPS" --subjects 1000
DIR=$(mktemp -d)
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$DIR"' EXIT
"${CARGO_TARGET_DIR:-target}/release/lethe" demo --data-dir "$DIR" --listen 127.0.0.1:0 --users 1000 \
  --ready-file "$DIR/ready.json" --rate 1000000 >/dev/null 2>"$DIR/lethe.log" &
PID=$!
for _ in $(seq 1 600); do [ -s "$DIR/ready.json" ] && break; sleep 0.1; done
URL=$(python3 -c "import json;print(json.load(open('$DIR/ready.json'))['url'])")
echo "vault HTTP batch API at $URL (client: lethe-client in a second process)"
"${CARGO_TARGET_DIR:-target}/release/lethe" bench vault-http --url "$URL" --key-file "$DIR/demo-api-key" --seconds "$SECS" --batch 100 --concurrency 4
