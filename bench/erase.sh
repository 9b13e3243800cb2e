#!/usr/bin/env bash
# Benchmark: erasure of 10,000 users from 1,000,000 (8 related tables, about
# 20 million rows) by Lethe's SQL connector and by hand-written set-based
# SQL, on the same database in the same run, for PostgreSQL, SQLite and
# MariaDB (the machine's servers on 5432 and 3306; a temporary SQLite file).
#
#   bench/erase.sh [users] [erase] [kinds...]
set -euo pipefail
cd "$(dirname "$0")/.."
users=${1:-1000000}
erase=${2:-10000}
shift $(( $# > 2 ? 2 : $# ))
kinds=${*:-postgres sqlite mysql}
cargo build --release -q -p lethe --features bench
for k in $kinds; do
  "${CARGO_TARGET_DIR:-target}/release/lethe" bench erase --kind "$k" --users "$users" --erase "$erase" 2>/dev/null
done
