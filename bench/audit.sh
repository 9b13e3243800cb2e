#!/usr/bin/env bash
# Benchmark: audit appends (batched), offline verification of the log file,
# and raw SHA-256 over the same bytes, in one run.
#
#   bench/audit.sh [events]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p lethe --features bench
"${CARGO_TARGET_DIR:-target}/release/lethe" bench audit --events "${1:-2000000}"
