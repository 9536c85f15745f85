#!/usr/bin/env bash
# Installs everything lamina and its tests need on a Debian 12 machine, as root:
# Debian packages with apt, and lamina with its Python dependencies in a venv
# at .venv (Debian's own python3 refuses system-wide pip installs, PEP 668).
# Idempotent: what is already there is not fetched again.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(containerd runc crun busybox-static docker-registry skopeo apache2-utils
      golang-github-containerd-containerd-dev tmux util-linux python3-venv python3-pip docker.io
      catatonit containernetworking-plugins iproute2 prometheus)
missing=()
for pkg in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# Debian starts these services on install; lamina's tests run their own
# (dockerd only as a client of laminad, in tests/compat).
systemctl disable --now docker.socket docker containerd docker-registry prometheus >/dev/null 2>&1 || true

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test,dev]'
