#!/usr/bin/env bash
# Network benchmark, devenv's project bridge against Docker's in the same run (issue 4,
# "Performance").
#
# Throughput: iperf3 (TCP, one stream, host client -> container server) from the host
#   (1) to a devenv published port via 127.0.0.1      (nftables DNAT, output hook)
#   (2) to that port via the host's own address       (same DNAT rule)
#   (3) straight to the devenv container's address    (no NAT: the bridge route)
#   (4) to a `docker run -p` port via 127.0.0.1       (docker-proxy, a userland copy)
#   (5) to that port via the host's own address       (Docker's iptables DNAT)
#   (6) straight to the Docker container's address
#   (7) (8) as (5) and (6), with the container on a Docker network whose MTU is the uplink's,
#       the MTU devenv's bridge takes (docker0 is 1500 whatever the uplink), to separate the
#       MTU from the rest
# each BENCH_SECONDS long (default 5), BENCH_ROUNDS rounds (default 3), interleaved round by
# round; the median of each is reported with the ratios (1)/(3), (2)/(3), (1)/(4), (2)/(5).
#
# Start overhead: one busybox `sleep` service, `network_mode: none` against the default bridge
# (no ports), `up -d` then `down`, BENCH_START_ROUNDS rounds each (default 20, alternating,
# after 2 warm-ups), median wall time of `up -d`. Measured twice: with dockerd's iptables chains
# present (devenv then also opens DOCKER-USER for its bridge at `up`), and again after this
# script has stopped dockerd and removed its chains (a host without Docker).
#
# Both sides run the identical image: a rootfs of this host's busybox-static and iperf3 (with the
# shared libraries ldd names), `docker import`ed, `docker save`d, and that archive loaded into
# devenv with `devenv image load`.
#
#   bench/network.sh                                   # everything
#   BENCH_SECONDS=2 BENCH_ROUNDS=1 BENCH_START_ROUNDS=5 bench/network.sh   # quick
#
# Needs root. Installs iperf3, docker.io and busybox-static if missing. The dockerd is private
# (data root, exec root, socket, pidfile under a temporary directory) but, unlike
# bench/lifecycle.sh, runs WITH Docker's networking (iptables, docker0, docker-proxy), since that
# is what is compared. Docker 20.10 changes the host's firewall (FORWARD policy DROP, DOCKER*
# chains, NAT rules) and does not undo it when it stops: the cleanup does, when they were not
# there before this run (see restore_firewall). Traffic goes only to 127.0.0.1, the host's own
# address, and the bench's own containers' addresses.
#
# Left on the host: nothing of the run, except Docker's rules and DOCKER* chains when some were
# already there at the start (a system Docker, an earlier dockerd): then they are left alone, since
# this dockerd's cannot be told from theirs. docker0 is deleted when it was new.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "bench/network.sh: must run as root (containers, dockerd, firewall)" >&2
    exit 1
fi

seconds="${BENCH_SECONDS:-5}"
rounds="${BENCH_ROUNDS:-3}"
start_rounds="${BENCH_START_ROUNDS:-20}"
project="devenv-netbench"

log() { printf '%s\n' "$*" >&2; }

# --- what the bench needs, installed only if missing ---------------------------------------
missing=()
[ -x /bin/busybox ] || missing+=(busybox-static)
[ -x /usr/bin/iperf3 ] || missing+=(iperf3)
{ [ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker ] && [ -x /usr/sbin/docker-proxy ]; } ||
    missing+=(docker.io)
command -v python3 >/dev/null || missing+=(python3)
command -v iptables >/dev/null || missing+=(iptables)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
docker_bin=/usr/bin/docker # Debian's client, matching the daemon (another may come first on PATH)

# --- build first, so the compile runs neither beside dockerd nor inside the timings ---------
if [ -z "${DEVENV_BIN:-}" ]; then
    cargo build --release --bin devenv
    devenv_bin="$(realpath -m "${CARGO_TARGET_DIR:-target}/release/devenv")"
else
    devenv_bin="$(realpath "$DEVENV_BIN")"
fi

# --- the host's state before, so the cleanup puts back exactly that -------------------------
had_docker0=false
[ -e /sys/class/net/docker0 ] && had_docker0=true
forward_policy="$(iptables -S FORWARD 2>/dev/null | awk '$1 == "-P" { print $3; exit }')"
had_docker_chains=false
if iptables -S 2>/dev/null | grep -q '^-N DOCKER' || iptables -t nat -S 2>/dev/null | grep -q '^-N DOCKER'; then
    had_docker_chains=true
fi
if [ -S /run/docker.sock ] || pgrep -x dockerd >/dev/null; then
    log "note: another dockerd runs on this host; its rules are left alone, and Docker's figures"
    log "      share the kernel's nat table with it"
fi

tmp="$(mktemp -d /tmp/devenv-netbench.XXXXXX)"
export DEVENV_HOME="$tmp/home"
dockerd_pid=""
docker_stopped=false
firewall_restored=false

# devenv's progress lines go to a file, shown when the command fails.
dv() {
    if ! "$devenv_bin" "$@" 2>"$tmp/devenv.err"; then
        log "devenv $* failed:"
        cat "$tmp/devenv.err" >&2
        return 1
    fi
}
dk() { "$docker_bin" "$@"; }

stop_dockerd() {
    $docker_stopped && return 0
    docker_stopped=true
    if [ -n "$dockerd_pid" ] && kill -0 "$dockerd_pid" 2>/dev/null; then
        # Our containers first (dockerd would stop them anyway; --rm'd or not, they go), then
        # our network, whose bridge and rules dockerd would otherwise leave on the host.
        dk ps -aq 2>/dev/null | xargs -r "$docker_bin" rm -f >/dev/null 2>&1 || true
        dk network rm devenv-netbench >/dev/null 2>&1 || true
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
    # Whatever dockerd left running (containerd, shims, docker-proxy after a SIGKILL) names our
    # directory on its command line; those processes, and only those, are stopped, by pid.
    local pid
    # shellcheck disable=SC2013 # pids are words
    for pid in $(grep -lsF "$tmp" /proc/[0-9]*/cmdline | cut -d/ -f3); do
        if [ "$pid" != $$ ] && grep -qsF "$tmp/docker" "/proc/$pid/cmdline"; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
}

# Undo what dockerd did to the host's network, if it was not there before this run: docker0,
# the FORWARD policy, Docker's rules in the built-in chains (those jumping to a DOCKER* chain or
# naming docker0, nothing else) and the DOCKER* chains themselves. With a Docker that was
# already set up on the host, all of it is left as it is. Only for the `iptables` backend
# dockerd used (Debian's default: iptables-nft).
restore_firewall() {
    $firewall_restored && return 0
    firewall_restored=true
    if ! $had_docker0 && [ -e /sys/class/net/docker0 ]; then
        ip link del docker0 || log "could not delete docker0"
    fi
    if $had_docker_chains; then
        return 0
    fi
    local table chain rule
    for table in filter nat; do
        for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-P" { print $2 }'); do
            # -S prints rules as their -A arguments; -D with the same arguments deletes one.
            iptables -t "$table" -S "$chain" 2>/dev/null |
                grep -E '^-A .*(-j DOCKER|docker0)' |
                while read -r rule; do
                    eval "iptables -t $table -D ${rule#-A }" || log "could not delete: $rule"
                done
        done
        for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^DOCKER/ { print $2 }'); do
            iptables -t "$table" -F "$chain" || true
        done
        for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^DOCKER/ { print $2 }'); do
            iptables -t "$table" -X "$chain" || log "could not delete chain $table $chain"
        done
    done
    if [ -n "$forward_policy" ]; then
        iptables -P FORWARD "$forward_policy" || log "could not restore the FORWARD policy"
    fi
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    # The bench project, whatever state a failure left it in.
    local p
    for p in "$DEVENV_HOME"/projects/*; do
        [ -d "$p" ] || continue
        (cd "$tmp" && dv -p "$(basename "$p")" down >/dev/null) || log "devenv down of $(basename "$p") failed"
    done
    stop_dockerd
    restore_firewall
    awk -v t="$tmp/" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$tmp"
    exit "$status"
}

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the image: busybox-static + iperf3 and its libraries ------------------------------------
rootfs="$tmp/rootfs"
mkdir -p "$rootfs"/{bin,usr/bin,etc,tmp,root}
chmod 1777 "$rootfs/tmp"
cp /bin/busybox "$rootfs/bin/busybox"
for applet in sh sleep true; do ln -s busybox "$rootfs/bin/$applet"; done
cp /usr/bin/iperf3 "$rootfs/usr/bin/iperf3"
for lib in $(ldd /usr/bin/iperf3 | grep -o '/[^ ]*'); do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"

# --- a private dockerd, with Docker's networking --------------------------------------------
mkdir "$tmp/docker"
echo '{}' >"$tmp/docker/daemon.json"
dockerd \
    --config-file "$tmp/docker/daemon.json" \
    --data-root "$tmp/docker/data" \
    --exec-root "$tmp/docker/exec" \
    -H "unix://$tmp/docker/docker.sock" \
    --pidfile "$tmp/docker/dockerd.pid" \
    >"$tmp/docker/dockerd.log" 2>&1 &
dockerd_pid=$!
export DOCKER_HOST="unix://$tmp/docker/docker.sock"
ready=false
for _ in $(seq 150); do
    kill -0 "$dockerd_pid" 2>/dev/null || break
    if dk version --format '{{.Server.Version}}' >/dev/null 2>&1; then
        ready=true
        break
    fi
    sleep 0.2
done
if ! $ready; then
    log "dockerd did not come up. Its log ends:"
    tail -n 20 "$tmp/docker/dockerd.log" >&2
    exit 1
fi
docker_version="$(dk version --format '{{.Server.Version}}')"
log "dockerd $docker_version ready, pid $dockerd_pid"

image=devenv-bench/iperf3
tar -C "$rootfs" -c . | dk import - "$image:latest" >/dev/null
dk save -o "$tmp/iperf3.tar" "$image:latest"
dv image load "$tmp/iperf3.tar" --tag "$image" >/dev/null
log "image $image: $(du -sh "$tmp/iperf3.tar" | cut -f1) archive, loaded into dockerd and devenv"

# --- helpers ---------------------------------------------------------------------------------
now_ns() { date +%s%N; }

median() { # numbers as arguments ("failed" ignored) -> their median
    python3 -c 'import statistics, sys
print(statistics.median(float(x) for x in sys.argv[1:] if x != "failed"))' "$@"
}
failures() { # how many arguments are "failed"
    local n=0 x
    for x in "$@"; do [ "$x" != failed ] || n=$((n + 1)); done
    echo "$n"
}

free_port() { # a TCP port the kernel says is free now, never one in $1 (space separated)
    python3 - "$1" <<'EOF'
import socket, sys
avoid = set(sys.argv[1].split())
while True:
    s = socket.socket()
    s.bind(("0.0.0.0", 0))
    p = s.getsockname()[1]
    s.close()
    if str(p) not in avoid:
        print(p)
        break
EOF
}

host_address() { # the host's first global IPv4 address not on a dv*/docker0/veth link
    ip -4 -o addr show scope global |
        awk '$2 !~ /^(dv|docker0|veth)/ { split($4, a, "/"); print a[1]; exit }'
}

container_ip() { # devenv's state: .containers.<service>.endpoint.ip_address
    python3 -c 'import json, sys
s = json.load(open(sys.argv[1]))
print(s["containers"][sys.argv[2]]["endpoint"]["ip_address"])' \
        "$DEVENV_HOME/projects/$1/state.json" "$2"
}

# iperf3 -c HOST -p PORT for $seconds; prints Gbit/s received by the server.
iperf() {
    local out
    out="$tmp/iperf.json"
    if ! timeout $((seconds + 20)) iperf3 -c "$1" -p "$2" -t "$seconds" -J >"$out" 2>&1; then
        log "iperf3 -c $1 -p $2 failed:"
        head -c 2000 "$out" >&2
        return 1
    fi
    python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))
print("%.3f" % (r["end"]["sum_received"]["bits_per_second"] / 1e9))' "$out"
}

wait_listening() { # until an iperf3 server answers on $1:$2 (a TCP connect), at most 10 s
    local i
    for i in $(seq 100); do
        if timeout 1 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    log "nothing answers on $1:$2"
    return 1
}

# --- start overhead --------------------------------------------------------------------------
write_sleep_project() { # $1 dir, $2 network_mode line or empty
    mkdir -p "$1"
    {
        echo "services:"
        echo "  s:"
        echo "    image: $image"
        echo "    command: [sleep, \"1000\"]"
        if [ -n "$2" ]; then echo "    $2"; fi
    } >"$1/devenv.yaml"
}
write_sleep_project "$tmp/start-none" "network_mode: none"
write_sleep_project "$tmp/start-bridge" ""

# $1 dir, $2 project name: the `up -d` wall time in ms, then `down`. A failed `up` prints
# "failed" (the round is left out of the median and counted in the report) rather than a time.
up_time_ms() {
    local t0 t1 ok=true
    t0=$(now_ns)
    dv -p "$2" --project-directory "$1" -f "$1/devenv.yaml" up -d >/dev/null || ok=false
    t1=$(now_ns)
    dv -p "$2" --project-directory "$1" -f "$1/devenv.yaml" down >/dev/null
    if $ok; then
        awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.3f\n", ns / 1e6 }'
    else
        echo failed
    fi
}

start_none=()
start_bridge=()
start_overhead() { # fills start_none and start_bridge
    start_none=()
    start_bridge=()
    local i
    for i in 1 2; do
        up_time_ms "$tmp/start-none" netbench-none >/dev/null
        up_time_ms "$tmp/start-bridge" netbench-bridge >/dev/null
    done
    for i in $(seq "$start_rounds"); do
        start_none+=("$(up_time_ms "$tmp/start-none" netbench-none)")
        start_bridge+=("$(up_time_ms "$tmp/start-bridge" netbench-bridge)")
    done
}

log "== start overhead, dockerd's chains present: $start_rounds rounds after 2 warm-ups"
start_overhead
so_docker_none=$(median "${start_none[@]}")
so_docker_bridge=$(median "${start_bridge[@]}")
so_docker_failed=$(failures "${start_none[@]}" "${start_bridge[@]}")
log "   none ${start_none[*]}"
log "   bridge ${start_bridge[*]}"

# --- throughput ----------------------------------------------------------------------------
host_ip="$(host_address)"
if [ -z "$host_ip" ]; then
    log "no global IPv4 address on this host: (2) and (5) are skipped"
fi
dv_port=$(free_port "")
dk_port=$(free_port "$dv_port")
mkdir -p "$tmp/iperf"
cat >"$tmp/iperf/devenv.yaml" <<EOF
services:
  iperf:
    image: $image
    command: [iperf3, -s]
    ports: ["$dv_port:5201"]
EOF
dv -p "$project" --project-directory "$tmp/iperf" -f "$tmp/iperf/devenv.yaml" up -d >/dev/null
dv_ip="$(container_ip "$project" iperf)"
dk run -d --rm --init --name devenv-netbench-iperf -p "$dk_port:5201" "$image" iperf3 -s >/dev/null
dk_ip="$(dk inspect --format '{{.NetworkSettings.IPAddress}}' devenv-netbench-iperf)"
uplink_mtu="$(ip -o link show "$(ip -4 route show default | awk '{print $5; exit}')" 2>/dev/null | grep -o 'mtu [0-9]*' | cut -d' ' -f2)"
uplink_mtu="${uplink_mtu:-1500}"
dk2_port=$(free_port "$dv_port $dk_port")
dk network create -o "com.docker.network.driver.mtu=$uplink_mtu" devenv-netbench >/dev/null
dk run -d --rm --init --name devenv-netbench-iperf-mtu --network devenv-netbench -p "$dk2_port:5201" "$image" iperf3 -s >/dev/null
dk2_ip="$(dk inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' devenv-netbench-iperf-mtu)"
log "devenv: container $dv_ip, published on $dv_port; Docker: container $dk_ip, published on $dk_port; host address ${host_ip:-none}"
wait_listening "$dv_ip" 5201
wait_listening "$dk_ip" 5201
wait_listening 127.0.0.1 "$dv_port"
wait_listening 127.0.0.1 "$dk_port"
wait_listening "$dk2_ip" 5201

labels=(
    "devenv, published port via 127.0.0.1"
    "devenv, published port via the host address"
    "devenv, container address"
    "Docker -p via 127.0.0.1 (docker-proxy)"
    "Docker -p via the host address (DNAT)"
    "Docker, container address"
    "Docker -p via the host address, network MTU $uplink_mtu"
    "Docker, container address, network MTU $uplink_mtu"
)
targets=(
    "127.0.0.1 $dv_port"
    "${host_ip:--} $dv_port"
    "$dv_ip 5201"
    "127.0.0.1 $dk_port"
    "${host_ip:--} $dk_port"
    "$dk_ip 5201"
    "${host_ip:--} $dk2_port"
    "$dk2_ip 5201"
)
declare -a samples=("" "" "" "" "" "" "" "")
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
log "== throughput: iperf3 -t $seconds, $rounds rounds, the eight paths in turn each round"
for r in $(seq "$rounds"); do
    for i in "${!targets[@]}"; do
        read -r addr port <<<"${targets[$i]}"
        [ "$addr" != - ] || continue
        g=$(iperf "$addr" "$port")
        samples[i]="${samples[i]} $g"
        log "   round $r: ($((i + 1))) ${labels[$i]}: $g Gbit/s"
    done
done

dk rm -f devenv-netbench-iperf-mtu >/dev/null 2>&1 || true
dk network rm devenv-netbench >/dev/null 2>&1 || true
stop_dockerd
restore_firewall
log "dockerd stopped, its firewall changes undone"

log "== start overhead, host without Docker's chains: $start_rounds rounds after 2 warm-ups"
start_overhead
so_clean_none=$(median "${start_none[@]}")
so_clean_bridge=$(median "${start_bridge[@]}")
so_clean_failed=$(failures "${start_none[@]}" "${start_bridge[@]}")
log "   none ${start_none[*]}"
log "   bridge ${start_bridge[*]}"

# --- report ----------------------------------------------------------------------------------
med=()
for i in "${!samples[@]}"; do
    # shellcheck disable=SC2086 # the samples are words
    if [ -n "${samples[i]// /}" ]; then med[i]=$(median ${samples[i]}); else med[i]=""; fi
done
ratio() { # $1 / $2 with 3 decimals, or "—"
    if [ -n "$1" ] && [ -n "$2" ]; then
        python3 -c 'import sys; print("%.3f" % (float(sys.argv[1]) / float(sys.argv[2])))' "$1" "$2"
    else
        echo "—"
    fi
}
verdict() { # $1 ratio, $2 threshold: at least
    if [ "$1" = "—" ]; then echo "not measured"; elif python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= float(sys.argv[2]) else 1)' "$1" "$2"; then echo "**met**"; else echo "**not met**"; fi
}

commit="$(git rev-parse --short HEAD 2>/dev/null || echo '?')"
cat <<EOF

Run $(date -u '+%Y-%m-%d %H:%M') UTC: $(nproc) CPUs, Linux $(uname -r), load average $load_start at the start of the throughput part. devenv $("$devenv_bin" --version 2>/dev/null | awk '{print $2}') ($commit); dockerd $docker_version; $(iperf3 --version | head -1 | cut -d' ' -f1-2). iperf3 TCP, one stream, host -> container, -t $seconds, $rounds rounds.

| path | Gbit/s (median) | samples |
|---|---|---|
EOF
for i in "${!labels[@]}"; do
    printf '| (%d) %s | %s | %s |\n' $((i + 1)) "${labels[$i]}" "${med[i]:-—}" "$(echo "${samples[i]}" | xargs | sed 's/ /, /g')"
done
r13=$(ratio "${med[0]}" "${med[2]}")
r23=$(ratio "${med[1]}" "${med[2]}")
r14=$(ratio "${med[0]}" "${med[3]}")
r25=$(ratio "${med[1]}" "${med[4]}")
r27=$(ratio "${med[1]}" "${med[6]}")
cat <<EOF

| ratio | value | target |
|---|---|---|
| (1)/(3) devenv 127.0.0.1 ÷ direct | $r13 | ≥ 0.95: $(verdict "$r13" 0.95) |
| (2)/(3) devenv host address ÷ direct | $r23 | ≥ 0.95: $(verdict "$r23" 0.95) |
| (1)/(4) devenv ÷ Docker, via 127.0.0.1 | $r14 | > 1: $(verdict "$r14" 1.0001) |
| (2)/(5) devenv ÷ Docker, via the host address | $r25 | > 1: $(verdict "$r25" 1.0001) |
| (2)/(7) devenv ÷ Docker at the same MTU, via the host address | $r27 | > 1: $(verdict "$r27" 1.0001) |

Start overhead: \`up -d\` of one busybox \`sleep\` service, $start_rounds rounds after 2 warm-ups, medians.

| host state | \`network_mode: none\` | bridge (no ports) | difference | target < 10 ms | failed \`up\` (left out) |
|---|---|---|---|---|---|
EOF
diff_ms() { python3 -c 'import sys; print("%.1f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$1" "$2"; }
under() { python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)' "$1" "$2" && echo "**met**" || echo "**not met**"; }
d1=$(diff_ms "$so_docker_none" "$so_docker_bridge")
d2=$(diff_ms "$so_clean_none" "$so_clean_bridge")
printf '| dockerd'"'"'s chains present | %.1f ms | %.1f ms | %s ms | %s | %s |\n' "$so_docker_none" "$so_docker_bridge" "$d1" "$(under "$d1" 10)" "$so_docker_failed"
printf '| no Docker chains | %.1f ms | %.1f ms | %s ms | %s | %s |\n' "$so_clean_none" "$so_clean_bridge" "$d2" "$(under "$d2" 10)" "$so_clean_failed"
