#!/usr/bin/env bash
# Installs the Debian packages devenv's tests use. Idempotent: does nothing when all are there.
set -euo pipefail

packages=(
  # fixture images are built from these binaries
  busybox-static redis-server redis-tools nginx-light python3
  # the local registry the tests pull from, and the tool that pushes to it
  docker-registry skopeo
  # registry auth in tests: htpasswd (bcrypt) files, the token server's key, certificate and
  # signatures
  apache2-utils openssl
  # real clients the tests use
  curl iproute2 nftables tmux util-linux
  # libcontainer's seccomp support
  libseccomp-dev pkg-config
  # the second OCI runtime the runtime tests compare libcontainer with
  runc
  # Docker beside devenv: tests/docker_coexist.rs starts a private dockerd; iptables for its
  # DOCKER-USER chain
  docker.io iptables
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts these services on install; the tests run their own instances.
for svc in redis-server nginx docker-registry docker docker.socket containerd; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" || true
  fi
done
exit 0
