#!/usr/bin/env bash
# Benchmark: case creations per second over HTTP, with durable commits,
# measured by wrk in a second process, against a raw baseline (GET /healthz)
# measured in the same run — on the embedded SQLite store (WAL,
# synchronous=FULL, group commit; the target) and on the machine's
# PostgreSQL (a writer connection per lane; reported beside it).
#
#   bench/create-cases.sh [seconds] [connections] [pg-admin-url]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
CONNS=${2:-24}
PG_ADMIN=${3:-postgres://postgres@127.0.0.1:5432/postgres}
THREADS=2
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release -q -p lethe
BIN="${CARGO_TARGET_DIR:-target}/release/lethe"
DIR=$(mktemp -d)
PID=
PGDB=lethe_bench_create
cleanup() {
  [ -n "$PID" ] && { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
  psql "$PG_ADMIN" -q -c "DROP DATABASE IF EXISTS $PGDB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap cleanup EXIT
export WRK_THREADS=$THREADS
run() { wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" --latency -s "$1" "$URL" 2>&1; }

# One store: start a demo on it, measure the baseline and the creations.
measure() { # name, extra demo args...
  local name=$1; shift
  local data="$DIR/$name"; mkdir -p "$data"
  "$BIN" demo --data-dir "$data" --listen 127.0.0.1:0 --users 200000 \
    --ready-file "$data/ready.json" --rate 1000000 "$@" >/dev/null 2>"$data/lethe.log" &
  PID=$!
  for _ in $(seq 1 900); do [ -s "$data/ready.json" ] && break; sleep 0.1; done
  URL=$(python3 -c "import json;print(json.load(open('$data/ready.json'))['url'])")
  export LETHE_KEY=$(python3 -c "import json;print(json.load(open('$data/ready.json'))['api_key'])")
  echo "== $name: raw baseline: GET /healthz (HTTP + routing, no auth, no storage)"
  BASE=$(run bench/health.lua); echo "$BASE" | grep -E "Requests/sec|50%|99%|Non-2xx"
  echo "== $name: POST /v1/cases (case + audit event queued + idempotency record, durable commit)"
  CREATE=$(run bench/create-cases.lua); echo "$CREATE" | grep -E "Requests/sec|50%|99%|Non-2xx"
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
  printf '%s\0%s\0' "$BASE" "$CREATE" > "$DIR/$name.out"
}

measure sqlite
psql "$PG_ADMIN" -q -c "DROP DATABASE IF EXISTS $PGDB WITH (FORCE)" -c "CREATE DATABASE $PGDB" >/dev/null
measure postgres --store-url "${PG_ADMIN%/*}/$PGDB"

python3 - "$DIR" <<'PY'
import re, sys
def rps(t): return float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
def pct(t, p):
    m = re.search(r"\s%s%%\s+([\d.]+)(us|ms|s)" % p, t)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
def errs(t):
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    return int(m.group(1)) if m else 0
ok = True
print()
print(f"{'store':10} {'creations/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'GET/s':>8} {'ratio':>6}")
for name in ["sqlite", "postgres"]:
    base, create = open(f"{sys.argv[1]}/{name}.out").read().split("\0")[:2]
    r = rps(create)
    print(f"{name:10} {r:12.0f} {pct(create, 50):8.2f} {pct(create, 99):8.2f} {errs(create):8d} {rps(base):8.0f} {r / rps(base):6.2f}")
    if name == "sqlite":
        ok = r >= 2000 and pct(create, 99) < 25 and errs(create) == 0
print("target (SQLite): >= 2000 creations/s, p99 < 25 ms, no errors; PostgreSQL reported beside it")
print("RESULT:", "target met" if ok else "target NOT met")
PY
