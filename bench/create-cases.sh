#!/usr/bin/env bash
# Benchmark: case creations per second over HTTP, with durable commits
# (SQLite WAL, synchronous=FULL, group commit), measured by wrk in a second
# process, against a raw baseline (GET /healthz) measured in the same run.
#
#   bench/create-cases.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
CONNS=${2:-24}
THREADS=2
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release -q -p lethe
DIR=$(mktemp -d)
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$DIR"' EXIT
./target/release/lethe demo --data-dir "$DIR" --listen 127.0.0.1:0 --users 200000 \
  --ready-file "$DIR/ready.json" --rate 1000000 >/dev/null 2>"$DIR/lethe.log" &
PID=$!
for _ in $(seq 1 600); do [ -s "$DIR/ready.json" ] && break; sleep 0.1; done
URL=$(python3 -c "import json;print(json.load(open('$DIR/ready.json'))['url'])")
export LETHE_KEY=$(python3 -c "import json;print(json.load(open('$DIR/ready.json'))['api_key'])")
export WRK_THREADS=$THREADS

run() { wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" --latency -s "$1" "$URL" 2>&1; }
echo "== raw baseline: GET /healthz (HTTP + routing, no auth, no storage)"
BASE=$(run bench/health.lua); echo "$BASE" | grep -E "Requests/sec|50%|99%|Non-2xx"
echo "== POST /v1/cases (case + audit event + idempotency record, durable commit)"
CREATE=$(run bench/create-cases.lua); echo "$CREATE" | grep -E "Requests/sec|50%|99%|Non-2xx"

python3 - "$BASE" "$CREATE" <<'PY'
import re, sys
def rps(t): return float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
def pct(t, p):
    m = re.search(r"\s%s%%\s+([\d.]+)(us|ms|s)" % p, t)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
base, create = sys.argv[1], sys.argv[2]
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", create)
errors = int(errors.group(1)) if errors else 0
r = rps(create)
print()
print(f"case creations/s : {r:10.0f}   (target >= 2000)")
print(f"p50 latency      : {pct(create, 50):10.2f} ms")
print(f"p99 latency      : {pct(create, 99):10.2f} ms (target < 25)")
print(f"non-2xx          : {errors:10d}")
print(f"baseline GET/s   : {rps(base):10.0f}   ratio create/baseline = {r / rps(base):.2f}")
ok = r >= 2000 and pct(create, 99) < 25 and errors == 0
print("RESULT:", "target met" if ok else "target NOT met")
PY
