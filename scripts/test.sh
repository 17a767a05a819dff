#!/usr/bin/env bash
# The one command that installs what the tests need and runs them all (as root: the tests start
# real containers, mounts and network links).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast "$@"
else
  cargo test --no-fail-fast "$@"
fi
