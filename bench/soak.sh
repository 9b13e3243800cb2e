#!/usr/bin/env bash
# Soak test: mixed traffic for N minutes from this process against three
# Lethe instances on the machine's PostgreSQL; errors (target 0),
# throughput and each instance's memory every 30 s, then a check that every
# confirmed case was erased and the audit log has no gap.
#
#   bench/soak.sh [minutes] [instances] [clients] [pg-url]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p lethe --features bench
"${CARGO_TARGET_DIR:-target}/release/lethe" bench soak --minutes "${1:-10}" \
  --instances "${2:-3}" --concurrency "${3:-8}" \
  --pg-url "${4:-postgres://postgres@127.0.0.1:5432/postgres}"
