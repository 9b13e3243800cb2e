#!/usr/bin/env bash
# Property-based API testing with schemathesis against /openapi.json of a
# fresh demo (run by .ci/run): every operation, no 5xx, and responses that
# match the schema (status codes, content types, headers, bodies), plus the
# negative-data, authentication and method checks. Excluded:
# positive_data_acceptance — schema-valid requests are still refused when a
# business rule says so (no such account, an ID number whose checksum fails,
# a case in another state), which no JSON schema can express.
# tools/st_hooks.py gives every POST a fresh Idempotency-Key.
# Usage: tools/schemathesis.sh [max-examples]
set -euo pipefail
cd "$(dirname "$0")/.."
examples="${1:-20}"
# The version is pinned so a run is repeatable.
st --version 2>/dev/null | grep -q '4.32.5' ||
  python3 -m pip install --quiet --root-user-action=ignore 'schemathesis==4.32.5'
# LETHE_BIN: an already built binary (.ci/run passes the one its tests built).
bin="${LETHE_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --locked -p lethe
  bin=./target/release/lethe
fi
dir="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
"$bin" demo --data-dir "$dir/demo" --listen 127.0.0.1:0 --users 100 \
  --ready-file "$dir/ready.json" >"$dir/demo.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do [ -s "$dir/ready.json" ] && break; sleep 0.2; done
[ -s "$dir/ready.json" ] || { cat "$dir/demo.log"; echo "schemathesis: the demo did not start" >&2; exit 1; }
url=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["url"])' "$dir/ready.json")
key=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["api_key"])' "$dir/ready.json")
LETHE_ST_KEY="$key" SCHEMATHESIS_HOOKS=st_hooks PYTHONPATH="$PWD/tools" \
  st --config-file tools/schemathesis.toml run "$url/openapi.json" \
  --max-examples "$examples" --checks all --exclude-checks positive_data_acceptance \
  --workers 1 --seed 1 --report junit --report-dir "$dir/report"
