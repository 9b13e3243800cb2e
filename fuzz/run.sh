#!/usr/bin/env bash
# Runs every fuzz target for a while (default 60 s each). Longer runs:
#   fuzz/run.sh 3600            # an hour per target
#   fuzz/run.sh 600 webhook     # one target
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain
# accept them, and "-s none" runs without a sanitizer (safe Rust).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
shift || true
TARGETS=${*:-datamap calendar api_bodies webhook receipt session_token}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
export RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$PWD/target/fuzz"
for t in $TARGETS; do
  echo "fuzz: $t for ${SECS}s"
  log="target/fuzz/$t.log"
  mkdir -p target/fuzz
  if cargo fuzz run -s none --fuzz-dir fuzz "$t" -- -max_total_time="$SECS" -rss_limit_mb=2048 >"$log" 2>&1; then
    grep -E "^Done" "$log" || true
  else
    tail -40 "$log"
    if compgen -G "fuzz/artifacts/$t/*" >/dev/null; then
      echo "fuzz: $t found a crash (see fuzz/artifacts/$t)"
    else
      echo "fuzz: $t did not run: the build or cargo-fuzz failed (the log above, $log)"
    fi
    exit 1
  fi
done
echo "fuzz: all targets ran clean"
