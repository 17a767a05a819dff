#!/usr/bin/env bash
# Pull benchmark (issue 5, "Performance"): pull and unpack from a registry on loopback, devenv
# against its baselines in the same run.
#
# Images: the python fixture image (built from this host's python3, as the tests do) and a
# generated image of about 200 MB compressed in 8 gzip layers of mixed, partly compressible files.
# Both are pushed with skopeo to Debian's docker-registry on a loopback port.
#
# Per image, BENCH_ROUNDS rounds (default 5), median wall time of each:
#   devenv     `devenv pull` into an empty DEVENV_HOME (download, verify, decompress and unpack
#              overlapped, layers in parallel)
#   skopeo+tar `skopeo copy docker://... oci:DIR` then `tar -xzf` of every layer into its own
#              directory, one after the other (what a script without devenv would do)
#   docker     `docker pull` into an empty private dockerd (its own data root), when it can run
# and, on the same layers already on disk, unpack alone:
#   tar -xzf   of every layer, sequentially
#   devenv     `devenv image load` of the OCI layout (no network: verify + decompress + unpack)
#
#   bench/pull.sh
#   BENCH_ROUNDS=3 BENCH_ONLY=devenv bench/pull.sh
#
# Needs root (dockerd, and unpacking files owned by other users). Installs skopeo,
# docker-registry and docker.io if missing. Cleans up everything it started on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "bench/pull.sh: must run as root" >&2; exit 1; }
rounds="${BENCH_ROUNDS:-5}"
want_docker=true
[ "${BENCH_ONLY:-}" = devenv ] && want_docker=false

missing=()
[ -x /usr/bin/skopeo ] || missing+=(skopeo)
[ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
if $want_docker; then [ -x /usr/sbin/dockerd ] || missing+=(docker.io); fi
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

log() { printf '%s\n' "$*" >&2; }
now_ns() { date +%s%N; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ms() { echo $(( ($2 - $1) / 1000000 )); }

cargo build --release -q
devenv_bin="$(realpath -m "${CARGO_TARGET_DIR:-target}/release/devenv")"
python_layout=$(cargo test -q --release --test fixtures -- --ignored --exact export_layouts --nocapture 2>/dev/null |
    awk '$2 == "python" { print $3 }')

tmp="$(mktemp -d /tmp/devenv-pullbench.XXXXXX)"
registry_pid="" dockerd_pid=""
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null || true
    if [ -n "$dockerd_pid" ] && kill -0 "$dockerd_pid" 2>/dev/null; then
        kill -TERM "$dockerd_pid" 2>/dev/null || true
        for _ in $(seq 150); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$dockerd_pid" 2>/dev/null || true
    fi
    local pid
    for pid in $(grep -lsF "$tmp" /proc/[0-9]*/cmdline | cut -d/ -f3); do
        [ "$pid" != $$ ] && kill -KILL "$pid" 2>/dev/null || true
    done
    awk -v t="$tmp/" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$tmp"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the generated image: ~200 MB of gzip layers ----------------------------------------------
log "== generating the big image"
python3 - "$tmp/big" <<'EOF'
import gzip, hashlib, io, json, os, random, sys, tarfile
out = sys.argv[1]
os.makedirs(f"{out}/blobs/sha256")
rng = random.Random(42)
def blob(data):
    d = hashlib.sha256(data).hexdigest()
    with open(f"{out}/blobs/sha256/{d}", "wb") as f:
        f.write(data)
    return d, len(data)
layers, diff_ids = [], []
for n in range(8):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        for i in range(60):
            # Mostly random (incompressible) with some text, so the compressed image is ~200 MB.
            size = rng.randint(150_000, 900_000)
            data = os.urandom(size * 3 // 4) + (b"devenv pull bench line %d\n" % i) * (size // 104)
            info = tarfile.TarInfo(f"layer{n}/dir{i % 6}/file{i}.bin")
            info.size, info.mode = len(data), 0o644
            t.addfile(info, io.BytesIO(data))
    diff_ids.append("sha256:" + hashlib.sha256(raw.getvalue()).hexdigest())
    d, size = blob(gzip.compress(raw.getvalue(), compresslevel=6))
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                   "digest": f"sha256:{d}", "size": size})
config = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
          "rootfs": {"type": "layers", "diff_ids": diff_ids}}
cd, cs = blob(json.dumps(config).encode())
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": f"sha256:{cd}", "size": cs}, "layers": layers}
md, ms = blob(json.dumps(manifest).encode())
json.dump({"schemaVersion": 2, "manifests": [{
    "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": f"sha256:{md}",
    "size": ms, "annotations": {"org.opencontainers.image.ref.name": "latest"}}]},
    open(f"{out}/index.json", "w"))
open(f"{out}/oci-layout", "w").write('{"imageLayoutVersion": "1.0.0"}')
EOF

# --- the registry ---------------------------------------------------------------------------
mkdir -p "$tmp/registry"
cat >"$tmp/registry/config.yml" <<EOF
version: 0.1
log: {level: info, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $tmp/registry/data}}
http: {addr: 127.0.0.1:0, secret: devenv-bench}
EOF
/usr/bin/docker-registry serve "$tmp/registry/config.yml" >"$tmp/registry/log" 2>&1 &
registry_pid=$!
addr=""
for _ in $(seq 100); do
    addr=$(grep -o 'listening on [0-9.:]*' "$tmp/registry/log" | head -1 | cut -d' ' -f3) || true
    [ -n "$addr" ] && break
    sleep 0.1
done
[ -n "$addr" ] || { log "the registry did not start"; cat "$tmp/registry/log" >&2; exit 1; }
log "registry on $addr"
push() { skopeo copy -q --dest-tls-verify=false "oci:$1" "docker://$addr/$2"; }
push "$python_layout" bench/python:1
push "$tmp/big" bench/big:1

if $want_docker; then
    mkdir "$tmp/docker"
    echo '{}' >"$tmp/docker/daemon.json"
    dockerd --config-file "$tmp/docker/daemon.json" --data-root "$tmp/docker/data" \
        --exec-root "$tmp/docker/exec" -H "unix://$tmp/docker/docker.sock" \
        --pidfile "$tmp/docker/dockerd.pid" --iptables=false --ip6tables=false --bridge=none \
        >"$tmp/docker/dockerd.log" 2>&1 &
    dockerd_pid=$!
    export DOCKER_HOST="unix://$tmp/docker/docker.sock"
    for _ in $(seq 150); do /usr/bin/docker version >/dev/null 2>&1 && break; sleep 0.2; done
    /usr/bin/docker version >/dev/null 2>&1 || { log "dockerd did not start; no docker column"; want_docker=false; }
fi

# --- measurements ---------------------------------------------------------------------------
report=()
for image in python big; do
    ref="$addr/bench/$image:1"
    dv=() sk=() dk=() tr=() ld=()
    for r in $(seq "$rounds"); do
        home="$tmp/home-$image-$r"
        a=$(now_ns); DEVENV_HOME="$home" "$devenv_bin" image pull -q "$ref" >/dev/null 2>"$tmp/err" ||
            { cat "$tmp/err" >&2; exit 1; }; b=$(now_ns)
        dv+=("$(ms "$a" "$b")")
        rm -rf --one-file-system "$home"

        dir="$tmp/skopeo-$image-$r"
        mkdir -p "$dir"
        a=$(now_ns)
        skopeo copy -q --src-tls-verify=false "docker://$ref" "oci:$dir/layout:x"
        i=0
        layers=$(python3 -c 'import json,sys; d=sys.argv[1]; ix=json.load(open(d+"/index.json")); m=json.load(open(d+"/blobs/sha256/"+ix["manifests"][0]["digest"][7:])); print(" ".join(l["digest"][7:] for l in m["layers"]))' "$dir/layout")
        for layer in $layers; do
            mkdir -p "$dir/rootfs/$i"; tar -xzf "$dir/layout/blobs/sha256/$layer" -C "$dir/rootfs/$i"; i=$((i + 1))
        done
        b=$(now_ns)
        sk+=("$(ms "$a" "$b")")

        # Unpack alone, on these layers, already on disk.
        rm -rf "$dir/rootfs"
        a=$(now_ns); i=0
        for layer in $layers; do
            mkdir -p "$dir/rootfs/$i"; tar -xzf "$dir/layout/blobs/sha256/$layer" -C "$dir/rootfs/$i"; i=$((i + 1))
        done
        b=$(now_ns)
        tr+=("$(ms "$a" "$b")")
        a=$(now_ns); DEVENV_HOME="$tmp/load-$image-$r" "$devenv_bin" image load "$dir/layout" --tag "bench/$image:1" >/dev/null; b=$(now_ns)
        ld+=("$(ms "$a" "$b")")
        rm -rf --one-file-system "$dir" "$tmp/load-$image-$r"

        if $want_docker; then
            a=$(now_ns); /usr/bin/docker pull -q "$ref" >/dev/null; b=$(now_ns)
            dk+=("$(ms "$a" "$b")")
            /usr/bin/docker rmi -f "$ref" >/dev/null
            /usr/bin/docker image prune -f >/dev/null
        fi
        log "   $image round $r: devenv ${dv[-1]} ms, skopeo+tar ${sk[-1]} ms${dk:+, docker ${dk[-1]} ms}; unpack: tar ${tr[-1]} ms, devenv load ${ld[-1]} ms"
    done
    size=$(du -sb "$tmp/registry/data" | cut -f1)
    report+=("| $image | $(median "${dv[@]}") | $(median "${sk[@]}") | $( $want_docker && median "${dk[@]}" || echo —) | $(median "${tr[@]}") | $(median "${ld[@]}") |")
done

cat <<EOF

Run $(date -u '+%Y-%m-%d %H:%M') UTC, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); devenv $(git rev-parse --short HEAD); $(skopeo --version); $($want_docker && /usr/bin/docker version --format 'dockerd {{.Server.Version}}' || echo 'no dockerd'). Medians of $rounds rounds, ms; registry data ${size} bytes.

| image | devenv pull | skopeo copy + tar -xzf | docker pull | unpack: tar -xzf | unpack: devenv image load |
|---|---|---|---|---|---|
EOF
printf '%s\n' "${report[@]}"
