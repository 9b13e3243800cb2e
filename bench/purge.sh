#!/usr/bin/env bash
# Benchmark: a purge of 100,000 accounts on PostgreSQL (the machine's server
# on 5432), end to end: POST /v1/purges to a `lethe serve` of its own (its
# store on PostgreSQL too) until every account is checked (a blocker and an
# asset rule each), erased from 8 tables (20 rows per account), verified,
# audited one event each, and the report signed. Against the erasure engine
# alone on as many other accounts of the same database in the same run.
# Targets: >= 1,000 accounts/s end to end, within 2x the engine's time.
#
#   bench/purge.sh [subjects]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p lethe --features bench
target=${CARGO_TARGET_DIR:-target}
"$target/release/lethe" bench purge --subjects "${1:-100000}"
