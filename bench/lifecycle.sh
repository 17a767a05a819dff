#!/usr/bin/env bash
# Container lifecycle benchmark, devenv against Docker in the same run (issue 3, "Performance").
#
# Installs what the comparison needs (Debian's docker.io, docker-compose, skopeo, and
# busybox-static for the fixture image) if missing, builds the bench and the devenv binary,
# starts a private dockerd, runs `cargo bench --bench lifecycle` against it, and always stops
# that dockerd and deletes its data afterwards. Needs root. Takes about 1.5 minutes once built
# (the first build, of everything with release settings, about 4 more on this 2-core machine).
#
#   bench/lifecycle.sh                    # both halves, 20 rounds each
#   BENCH_ROUNDS=5 bench/lifecycle.sh     # quicker
#   BENCH_ONLY=devenv bench/lifecycle.sh  # no dockerd at all
#
# The dockerd is its own: data root, exec root (state, containerd), socket, pidfile and config
# file all under one temporary directory, so it neither touches nor is confused by a system
# Docker. Started as Docker normally is, dockerd sets the iptables FORWARD policy to DROP and adds
# its DOCKER chains and NAT rules, which outlive it and break forwarding for everything else on
# the host (other containers, VMs, devenv's own bridge later). This bench uses no Docker networking
# (both sides run `network_mode: none`, and `docker run --network none`), so dockerd runs with
# `--iptables=false --ip6tables=false --bridge=none`: no rules, no docker0. Checked on the
# project's machine (Docker 20.10): the daemon starts and runs the bench with them, and iptables
# is unchanged afterwards. Without a bridge, docker-compose creates no network either, since every
# service has `network_mode: none`.
#
# Note: on a host with systemd, `apt-get install docker.io` also enables and starts the system's
# dockerd, with its default (iptables-changing) settings; `systemctl disable --now docker
# docker.socket` undoes that. In a container with a policy-rc.d denying starts, nothing starts.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "bench/lifecycle.sh: must run as root (containers, dockerd)" >&2
    exit 1
fi

only="${BENCH_ONLY:-}"
want_docker=true
[ "$only" = devenv ] && want_docker=false

# --- what the bench needs, installed only if missing ---------------------------------------
missing=()
[ -x /bin/busybox ] || missing+=(busybox-static)
if $want_docker; then
    [ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker ] || missing+=(docker.io)
    [ -x /usr/bin/docker-compose ] || missing+=(docker-compose)
    [ -x /usr/bin/skopeo ] || missing+=(skopeo)
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}" >&2
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# --- build first, so that the compile neither runs beside dockerd nor inside the timings ------
# This also builds the devenv binary, with the bench profile (the release settings), at
# <target dir>/release/devenv; the bench finds it there through CARGO_BIN_EXE_devenv. A separate
# `cargo build --release` would compile everything a second time (other profile name, other
# artifacts) for nothing.
cargo bench --bench lifecycle --no-run
devenv_bin="$(realpath -m "${CARGO_TARGET_DIR:-target}/release/devenv")"

# --- a private dockerd, and a directory for everything this run makes -----------------------
tmp="$(mktemp -d /tmp/devenv-bench.XXXXXX)"
dockerd_pid=""
bench_pid=""

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [ -n "$bench_pid" ] && kill -0 "$bench_pid" 2>/dev/null; then
        echo "interrupted: stopping the bench, then cleaning up" >&2
        # `timeout` passes the signal on to cargo and the bench.
        kill -TERM "$bench_pid" 2>/dev/null || true
        wait "$bench_pid" 2>/dev/null || true
    fi
    # A bench killed before its own cleanup leaves devenv projects up in its DEVENV_HOMEs.
    local home project
    for home in "$tmp"/bench/devenv-bench-home*; do
        for project in "$home"/projects/*; do
            [ -d "$project" ] && [ -x "$devenv_bin" ] || continue
            DEVENV_HOME="$home" "$devenv_bin" -p "$(basename "$project")" down >&2 || true
        done
    done
    if [ -n "$dockerd_pid" ] && kill -0 "$dockerd_pid" 2>/dev/null; then
        # SIGTERM: dockerd stops its containers (init makes that quick) and its containerd.
        kill -TERM "$dockerd_pid" 2>/dev/null || true
        for _ in $(seq 150); do
            kill -0 "$dockerd_pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$dockerd_pid" 2>/dev/null; then
            echo "dockerd did not stop within 30 s; killing it" >&2
            kill -KILL "$dockerd_pid" 2>/dev/null || true
        fi
    fi
    # Whatever dockerd left running (containerd, shims, after a SIGKILL) names our directory on
    # its command line; those processes, and only those, are stopped, by pid.
    local pid
    for pid in $(grep -lsF "$tmp" /proc/[0-9]*/cmdline | cut -d/ -f3); do
        if [ "$pid" != $$ ] && grep -qsF "$tmp" "/proc/$pid/cmdline"; then
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

if $want_docker; then
    if [ -S /run/containerd/containerd.sock ]; then
        # dockerd then uses that containerd instead of starting its own, and the memory figure
        # would count a shared daemon.
        echo "warning: a system containerd runs; Docker's memory figure will lack containerd" >&2
    fi
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
        echo "dockerd $(/usr/bin/docker version --format '{{.Server.Version}}') ready, pid $dockerd_pid" >&2
        export DOCKERD_PID="$dockerd_pid"
        # Debian's client, matching the daemon (another docker may come first on PATH).
        export DOCKER_BIN=/usr/bin/docker DOCKER_COMPOSE_BIN=/usr/bin/docker-compose
    else
        echo "dockerd did not come up; measuring devenv only. Its log ends:" >&2
        tail -n 20 "$tmp/docker/dockerd.log" >&2
        unset DOCKER_HOST
    fi
fi

# --- the bench: its temporary files (DEVENV_HOMEs, project dirs) under $tmp/bench; bounded in
# time even if something hangs past the bench's own per-command timeouts ---------------------
mkdir "$tmp/bench"
status=0
TMPDIR="$tmp/bench" timeout --kill-after=15 600 cargo bench --bench lifecycle &
bench_pid=$!
wait "$bench_pid" || status=$?
bench_pid=""
if [ "$status" != 0 ]; then
    echo "bench/lifecycle.sh: the bench exited with status $status (see the lines above)" >&2
fi
exit "$status"
