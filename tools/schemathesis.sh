#!/usr/bin/env bash
# Property-based API testing with schemathesis against /openapi.json of a
# fresh demo. Not part of .ci/run yet: the remaining findings are listed in
# the closing note (idempotency-key reuse with generated keys, value
# constraints the schema does not state yet).
# Usage: tools/schemathesis.sh [max-examples]
set -euo pipefail
cd "$(dirname "$0")/.."
examples="${1:-20}"
command -v st >/dev/null || python3 -m pip install --quiet 'schemathesis>=4,<5'
cargo build --release --locked -p lethe
dir="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
./target/release/lethe demo --data-dir "$dir/demo" --listen 127.0.0.1:0 --users 100 \
  --ready-file "$dir/ready.json" >"$dir/demo.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do [ -s "$dir/ready.json" ] && break; sleep 0.2; done
url=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["url"])' "$dir/ready.json")
key=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["api_key"])' "$dir/ready.json")
st run "$url/openapi.json" -H "Authorization: Bearer $key" \
  --max-examples "$examples" --checks all --workers 1
