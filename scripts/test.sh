#!/usr/bin/env bash
# The one command that installs what the tests need and runs them all (as root: the tests start
# real containers, mounts and network links). Afterwards it checks that the run left no devenv
# link, nftables chain or network namespace behind on the host.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh

# What devenv-named state the host had before (a developer's own projects may be up).
host_state() {
  { ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep '^dv' || true
    nft list chains inet 2>/dev/null | grep -o 'chain [a-z]*-[0-9a-f]\{8\}' || true
    ls /run/netns 2>/dev/null | grep '^dv' || true; } | sort
}
before="$(host_state)"

status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast "$@" || status=$?
  # Starts dockerd, which changes host-wide forwarding: alone, after the parallel run.
  cargo nextest run --no-fail-fast --test docker_coexist --run-ignored only || status=$?
else
  cargo test --no-fail-fast "$@" || status=$?
  cargo test --no-fail-fast --test docker_coexist -- --ignored || status=$?
fi

after="$(host_state)"
left="$(comm -13 <(echo "$before") <(echo "$after"))"
if [ -n "$left" ]; then
  echo "the tests left devenv state on the host:" >&2
  echo "$left" >&2
  status=1
fi
exit $status
