#!/usr/bin/env bash
# Validates the OpenAPI document against the OpenAPI 3.1 specification with
# openapi-spec-validator (from PyPI, pinned), as code generators and API
# gateways read it. Run by .ci/run.
# Usage: tools/openapi-validate.sh   (LETHE_BIN: an already built binary)
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import openapi_spec_validator, sys; sys.exit(0 if openapi_spec_validator.__version__ == "0.7.2" else 1)' 2>/dev/null ||
  python3 -m pip install --quiet --root-user-action=ignore 'openapi-spec-validator==0.7.2'
bin="${LETHE_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --locked -p lethe
  bin=./target/release/lethe
fi
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
for variant in "" "--demo"; do
  # shellcheck disable=SC2086
  "$bin" openapi $variant >"$dir/openapi.json"
  python3 -m openapi_spec_validator "$dir/openapi.json"
done
echo "openapi: the document is valid OpenAPI 3.1 (with and without the demo's routes)"
