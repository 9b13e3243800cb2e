#!/usr/bin/env bash
# Benchmark: cases per second with 1, 2 and 3 Lethe instances sharing the
# machine's PostgreSQL, driven over HTTP from this process (a second
# process); ratios against one instance, measured in the same run.
#
#   bench/instances.sh [cases] [clients] [pg-url]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p lethe --features bench
"${CARGO_TARGET_DIR:-target}/release/lethe" bench instances --instances 1,2,3 \
  --cases "${1:-1000}" --concurrency "${2:-16}" \
  --pg-url "${3:-postgres://postgres@127.0.0.1:5432/postgres}"
