#!/usr/bin/env bash
# Benchmark: reapply after a backup restore. A restored system holds
# 1,000,000 subject ids (and a row each in a second table); 1,000 of them
# were erased since the backup. Lethe reads the ids, computes their keyed
# pseudonyms and matches them against its tombstones (dry run), then erases
# the 1,000 again and verifies; the baseline is the raw streamed scan of the
# same ids on the same database in the same run. Target: >= 200,000 ids/s.
#
#   bench/reapply.sh [ids] [erased] [kinds...]
set -euo pipefail
cd "$(dirname "$0")/.."
ids=${1:-1000000}
erased=${2:-1000}
shift $(( $# > 2 ? 2 : $# ))
kinds=${*:-postgres sqlite mysql}
cargo build --release -q -p lethe --features bench
target=${CARGO_TARGET_DIR:-target}
for k in $kinds; do
  "$target/release/lethe" bench reapply --kind "$k" --ids "$ids" --erased "$erased"
done
