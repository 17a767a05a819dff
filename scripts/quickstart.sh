#!/usr/bin/env bash
# devenv's main job on a bundled example, on a fresh machine (as root): build devenv, build
# small OCI images from this machine's Debian binaries (no registry needed), load them, bring up
# examples/web-redis-python (nginx publishing host port 8080, a python app with its source
# bind-mounted, redis; all on the project's bridge, reaching each other by name), check a request
# goes nginx -> app -> redis, show `ps`, `inspect` and `logs`, and take it down.
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
"${dv[@]}" image load "$(layout python)" --tag python:3.11
"${dv[@]}" image load "$(layout redis)" --tag redis:7
"${dv[@]}" images

example=(-f examples/web-redis-python/devenv.yaml)
trap '"${dv[@]}" "${example[@]}" down' EXIT
echo "== devenv up -d"
time "${dv[@]}" "${example[@]}" up -d
"${dv[@]}" "${example[@]}" ps
echo "== curl http://127.0.0.1:8080/ (nginx) and /visits (nginx -> app -> redis, by name)"
for _ in $(seq 50); do curl -fsS http://127.0.0.1:8080/ && break; sleep 0.1; done
for _ in $(seq 50); do curl -fsS http://127.0.0.1:8080/visits 2>/dev/null && break; sleep 0.1; done
curl -fsS http://127.0.0.1:8080/visits | grep -q "visit 2"
echo "== devenv inspect --format '{{.ip_address}}' redis"
"${dv[@]}" "${example[@]}" inspect --format '{{.ip_address}}' redis
"${dv[@]}" "${example[@]}" logs --tail 3
echo "== devenv down"
