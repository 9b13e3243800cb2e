#!/usr/bin/env bash
# Flat cost as history grows: one instance's case intake (POST /v1/cases)
# and whole-case throughput (API steps to cooling-off, then the erasure) on
# an empty store, then on a store preloaded by bulk SQL with 1,000,000
# erased cases and their audit events (about ten each, cloned from a real
# erased case; sequenced into the Merkle tree by the instance itself);
# ratios preloaded / empty, measured in the same run, on SQLite and on the
# machine's PostgreSQL. Target: each ratio >= 0.85.
#
#   bench/history.sh [preloaded cases] [cases per measure] [pg-url]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p lethe --features bench
for kind in sqlite postgres; do
  "${CARGO_TARGET_DIR:-target}/release/lethe" bench history --kind "$kind" \
    --preload "${1:-1000000}" --cases "${2:-300}" \
    --pg-url "${3:-postgres://postgres@127.0.0.1:5432/postgres}"
done
