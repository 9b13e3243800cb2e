#!/usr/bin/env bash
# The audit log's sequencer: a backlog of queued events integrated into the
# Merkle tree (sequence numbers, leaf hashes, nodes, a narrow leaf row per
# event, the pending marks deleted) against plain SQL doing the same writes
# in one statement each, same database, same run; on SQLite and on the
# machine's PostgreSQL.
#
#   bench/sequencer.sh [queued events]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p lethe --features bench
for kind in sqlite postgres; do
  "${CARGO_TARGET_DIR:-target}/release/lethe" bench sequencer --kind "$kind" --leaves "${1:-1000000}"
done
