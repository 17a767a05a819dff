#!/usr/bin/env bash
# Readiness benchmark (issue 7, "Performance"): healthchecks and `depends_on: {condition:
# service_healthy}`, devenv against docker-compose in the same run.
#
# Installs what the comparison needs (Debian's docker.io, docker-compose, skopeo, and the
# packages the fixture images are built from) if missing, builds devenv (release) and the fixture
# images (OCI layouts of this host's busybox-static and redis), starts a private dockerd, loads
# the images into devenv and into that dockerd, runs bench/readiness.py (the scenarios and the
# method are described there and in BENCHMARKS.md), and always takes the projects down, stops
# that dockerd and deletes everything it made. Needs root. About 5 minutes with 20 rounds once
# built.
#
#   bench/readiness.sh                     # 20 rounds after 1 warm-up
#   BENCH_ROUNDS=10 bench/readiness.sh     # quicker
#   BENCH_ONLY=devenv bench/readiness.sh   # no dockerd at all
#
# The dockerd is private (data root, exec root, socket, pidfile and config under one temporary
# directory) and runs with `--iptables=false --ip6tables=false --bridge=none`, as in
# bench/lifecycle.sh: every service of this bench is `network_mode: none`, so no Docker
# networking is needed, and the host's firewall is left alone. The Markdown table goes to
# stdout, the raw samples to <target dir>/bench/readiness.json.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "bench/readiness.sh: must run as root (containers, dockerd)" >&2
    exit 1
fi

log() { printf '%s\n' "$*" >&2; }
want_docker=true
[ "${BENCH_ONLY:-}" = devenv ] && want_docker=false

# --- what the bench needs, installed only if missing ---------------------------------------
missing=()
[ -x /bin/busybox ] || missing+=(busybox-static)
[ -x /usr/bin/redis-server ] || missing+=(redis-server)
[ -x /usr/bin/redis-cli ] || missing+=(redis-tools)
command -v python3 >/dev/null || missing+=(python3)
if $want_docker; then
    { [ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker ]; } || missing+=(docker.io)
    [ -x /usr/bin/docker-compose ] || missing+=(docker-compose)
    [ -x /usr/bin/skopeo ] || missing+=(skopeo)
fi
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# --- build first, so the compile runs neither beside dockerd nor inside the timings ---------
cargo build --release --bin devenv
devenv_bin="$(realpath -m "${CARGO_TARGET_DIR:-target}/release/devenv")"
layouts=$(cargo test -q --test fixtures -- --ignored --exact export_layouts --nocapture 2>/dev/null |
    grep '^fixture-layout' || true)
layout() { awk -v n="$1" '$2 == n { print $3 }' <<<"$layouts"; }
redis_layout="$(layout redis)"
busybox_layout="$(layout busybox)"
if [ -z "$redis_layout" ] || [ -z "$busybox_layout" ]; then
    log "the fixture images were not built; run: cargo test --test fixtures -- --ignored --exact export_layouts --nocapture"
    exit 1
fi

# --- a private dockerd, and a directory for everything this run makes -----------------------
tmp="$(mktemp -d /tmp/devenv-readybench.XXXXXX)"
export DEVENV_HOME="$tmp/home"
dockerd_pid=""
bench_pid=""

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [ -n "$bench_pid" ] && kill -0 "$bench_pid" 2>/dev/null; then
        log "interrupted: stopping the bench, then cleaning up"
        kill -TERM "$bench_pid" 2>/dev/null || true
        wait "$bench_pid" 2>/dev/null || true
    fi
    # Whatever devenv projects a failure left up.
    local p
    for p in "$DEVENV_HOME"/projects/*; do
        [ -d "$p" ] && [ -x "$devenv_bin" ] || continue
        (cd "$tmp" && "$devenv_bin" -p "$(basename "$p")" down >/dev/null 2>&1) ||
            log "devenv down of $(basename "$p") failed"
    done
    if [ -n "$dockerd_pid" ] && kill -0 "$dockerd_pid" 2>/dev/null; then
        # SIGTERM: dockerd stops its containers (init makes that quick) and its containerd.
        kill -TERM "$dockerd_pid" 2>/dev/null || true
        for _ in $(seq 150); do
            kill -0 "$dockerd_pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$dockerd_pid" 2>/dev/null; then
            log "dockerd did not stop within 30 s; killing it"
            kill -KILL "$dockerd_pid" 2>/dev/null || true
        fi
    fi
    # Whatever dockerd left running (containerd, shims, after a SIGKILL) names our directory on
    # its command line; those processes, and only those, are stopped, by pid.
    local pid
    # shellcheck disable=SC2013 # pids are words
    for pid in $(grep -lsF "$tmp/docker" /proc/[0-9]*/cmdline | cut -d/ -f3); do
        if [ "$pid" != $$ ] && grep -qsF "$tmp/docker" "/proc/$pid/cmdline"; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    # Mounts left under it (overlay2 layers, netns files), innermost first; then the files,
    # never crossing into a mount that would not go.
    awk -v t="$tmp/" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$tmp"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

export REDIS_IMAGE=devenv-bench/redis BUSYBOX_IMAGE=devenv-bench/busybox
docker_version="" compose_version=""
if $want_docker; then
    mkdir "$tmp/docker"
    echo '{}' >"$tmp/docker/daemon.json"
    dockerd \
        --config-file "$tmp/docker/daemon.json" \
        --data-root "$tmp/docker/data" \
        --exec-root "$tmp/docker/exec" \
        -H "unix://$tmp/docker/docker.sock" \
        --pidfile "$tmp/docker/dockerd.pid" \
        --iptables=false --ip6tables=false --bridge=none \
        >"$tmp/docker/dockerd.log" 2>&1 &
    dockerd_pid=$!
    export DOCKER_HOST="unix://$tmp/docker/docker.sock"
    ready=false
    for _ in $(seq 150); do
        kill -0 "$dockerd_pid" 2>/dev/null || break
        if /usr/bin/docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
            ready=true
            break
        fi
        sleep 0.2
    done
    if $ready; then
        docker_version="$(/usr/bin/docker version --format '{{.Server.Version}}')"
        compose_version="$(/usr/bin/docker-compose version --short 2>/dev/null || echo '?')"
        log "dockerd $docker_version ready, pid $dockerd_pid"
        # Debian's client, matching the daemon (another docker may come first on PATH).
        export DOCKER_BIN=/usr/bin/docker DOCKER_COMPOSE_BIN=/usr/bin/docker-compose
        for pair in "$redis_layout:$REDIS_IMAGE" "$busybox_layout:$BUSYBOX_IMAGE"; do
            # skopeo talks to the daemon itself and ignores DOCKER_HOST unless told.
            skopeo copy --quiet --dest-daemon-host "$DOCKER_HOST" \
                "oci:${pair%%:*}:latest" "docker-daemon:${pair#*:}:latest"
        done
        /usr/bin/docker image inspect "$REDIS_IMAGE" "$BUSYBOX_IMAGE" >/dev/null
    else
        log "dockerd did not come up; measuring devenv only. Its log ends:"
        tail -n 20 "$tmp/docker/dockerd.log" >&2
        unset DOCKER_HOST
    fi
fi
"$devenv_bin" image load "$redis_layout" --tag "$REDIS_IMAGE" >/dev/null
"$devenv_bin" image load "$busybox_layout" --tag "$BUSYBOX_IMAGE" >/dev/null

# --- the bench, bounded in time even if something hangs past its own per-command timeouts --
mkdir "$tmp/work"
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
started="$(date -u '+%Y-%m-%d %H:%M')"
results="$tmp/results.md"
status=0
BENCH_WORK="$tmp/work" DEVENV_BIN="$devenv_bin" \
    BENCH_JSON="$(realpath -m "${CARGO_TARGET_DIR:-target}/bench/readiness.json")" \
    timeout --kill-after=15 900 python3 bench/readiness.py >"$results" &
bench_pid=$!
wait "$bench_pid" || status=$?
bench_pid=""
load_end="$(cut -d' ' -f1-3 /proc/loadavg)"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo
echo "Run $started UTC: ${BENCH_ROUNDS:-20} rounds after ${BENCH_WARMUPS:-1} warm-up, $(nproc) CPUs, Linux $(uname -r), load average $load_start at the start, $load_end at the end. devenv $("$devenv_bin" --version 2>/dev/null | awk '{print $2}') ($commit)${docker_version:+; dockerd $docker_version, docker-compose $compose_version}."
echo
cat "$results"
if [ "$status" != 0 ]; then
    log "bench/readiness.sh: the bench exited with status $status (see the lines above)"
fi
exit "$status"
