#!/usr/bin/env bash
# Benchmark: cases per second with 1, 2 and 3 Lethe instances sharing the
# machine's PostgreSQL, driven over HTTP from this process (a second
# process); ratios against one instance, measured in the same run. Two
# rounds by default, in the order 1,2,3,3,2,1, so that the machine's drift
# during the run weighs on every count alike; ratios of each count's median.
#
#   bench/instances.sh [cases] [clients] [pg-url] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p lethe --features bench
"${CARGO_TARGET_DIR:-target}/release/lethe" bench instances --instances 1,2,3 \
  --cases "${1:-1000}" --concurrency "${2:-16}" \
  --pg-url "${3:-postgres://postgres@127.0.0.1:5432/postgres}" \
  --rounds "${4:-2}"
