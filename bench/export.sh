#!/usr/bin/env bash
# Benchmark: one subject's data export of about 1 GB (SQLite, 1.1 million
# rows): Lethe's sealed archive (JSON + CSV per dataset, manifest, deflate,
# XChaCha20-Poly1305) against raw JSON lines of the same query, in the same
# run, each side in its own process; prints throughput and peak memory of
# every round (the baseline, then Lethe) and the median ratio.
#
#   bench/export.sh [MB] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p lethe --features bench
"${CARGO_TARGET_DIR:-target}/release/lethe" bench export --mb "${1:-1024}" --rounds "${2:-3}"
