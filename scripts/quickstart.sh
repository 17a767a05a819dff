#!/usr/bin/env bash
# devenv's main job on a bundled example, on a fresh machine (as root): build devenv, build
# small OCI images from this machine's Debian binaries (no registry needed), load them, bring up
# examples/host-network (nginx on the host's network stack), check it answers, show `ps` and
# `logs`, and take it down.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
echo "== building devenv and the fixture images (first run: a few minutes)"
cargo build --release -q
layouts=$(cargo test -q --test fixtures -- --ignored --exact export_layouts --nocapture 2>/dev/null | grep '^fixture-layout')
layout() { awk -v n="$1" '$2 == n { print $3 }' <<<"$layouts"; }

export DEVENV_HOME="${DEVENV_HOME:-$PWD/target/quickstart-home}"
dv=(target/release/devenv)
"${dv[@]}" image load "$(layout nginx)" --tag nginx:1.22
"${dv[@]}" image load "$(layout busybox)" --tag busybox:1.35
"${dv[@]}" images

example=(-f examples/host-network/devenv.yaml)
trap '"${dv[@]}" "${example[@]}" down' EXIT
echo "== devenv up -d"
time "${dv[@]}" "${example[@]}" up -d
"${dv[@]}" "${example[@]}" ps
echo "== curl http://127.0.0.1/"
for _ in $(seq 50); do curl -fsS http://127.0.0.1/ && break; sleep 0.1; done
"${dv[@]}" "${example[@]}" logs --tail 5
echo "== devenv down"
