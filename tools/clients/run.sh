#!/usr/bin/env bash
# Generates a TypeScript client (openapi-typescript + openapi-fetch) and a
# Python client (openapi-python-client) from Lethe's OpenAPI document, and
# runs a whole cancellation with each against a fresh demo, verifying the
# webhooks with each language's Standard Webhooks library. Nothing generated
# is kept. Run by .ci/run.
# Usage: tools/clients/run.sh   (LETHE_BIN: an already built binary)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
bin="${LETHE_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --locked -p lethe
  bin=./target/release/lethe
fi
bin="$(realpath "$bin")"
work="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
"$bin" openapi --demo >"$work/openapi.json"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# A fresh demo whose notifications go to the client's webhook receiver.
start_demo() { # name hook-port secret
  local d="$work/$1"
  mkdir -p "$d"
  LETHE_WEBHOOK_SECRET="$3" "$bin" demo --data-dir "$d/demo" --listen 127.0.0.1:0 --users 50 \
    --webhook-url "http://127.0.0.1:$2/hook" --ready-file "$d/ready.json" >"$d/demo.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do [ -s "$d/ready.json" ] && break; sleep 0.2; done
  [ -s "$d/ready.json" ] || { cat "$d/demo.log"; echo "clients: the demo did not start" >&2; exit 1; }
  LETHE_URL=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["url"])' "$d/ready.json")
  LETHE_KEY=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["api_key"])' "$d/ready.json")
  export LETHE_URL LETHE_KEY
}
stop_demo() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""; }
secret="whsec_$(python3 -c 'import base64,os;print(base64.b64encode(os.urandom(24)).decode())')"
export HOOK_SECRET="$secret" SUBJECT=1

# TypeScript: generate the types, type-check the driver against them, run it.
(
  cd "$here/ts"
  npm ci --no-audit --no-fund --loglevel=error
  rm -rf gen dist
  npx openapi-typescript "$work/openapi.json" -o gen/schema.d.ts
  npx tsc -p .
)
port=$(free_port)
start_demo ts "$port" "$secret"
HOOK_PORT=$port node "$here/ts/dist/drive.js"
stop_demo

# Python: generate the client package, run the driver with it.
python3 -c 'import openapi_python_client' 2>/dev/null && python3 -c 'import standardwebhooks' 2>/dev/null ||
  python3 -m pip install --quiet --root-user-action=ignore 'openapi-python-client==0.29.1' 'standardwebhooks==1.3.0'
openapi-python-client generate --path "$work/openapi.json" --output-path "$work/py" --overwrite \
  --config "$here/python/generator.yaml" >"$work/py-gen.log" 2>&1 || { cat "$work/py-gen.log"; exit 1; }
port=$(free_port)
start_demo py "$port" "$secret"
HOOK_PORT=$port PYTHONPATH="$work/py" python3 "$here/python/drive.py"
stop_demo
echo "clients: the generated TypeScript and Python clients each completed a case and verified webhooks"
