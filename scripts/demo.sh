#!/usr/bin/env bash
# Sets lamina up on this machine and runs its main job end to end, as root:
# start laminad on a scratch root, import the bundled busybox image (built
# offline from busybox-static), run a container through lamina's shim and
# runc, and show its output, with the real containerd client and with lamina's.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bin=$PWD/.venv/bin

work=$(mktemp -d /tmp/lamina-demo.XXXXXX)
sock="$work/lamina.sock"
"$bin/laminad" --root "$work/root" --state "$work/state" --address "$sock" --log-format json 2>"$work/laminad.log" &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null; wait $daemon 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done

step() { echo; echo "\$ $*"; "$@"; }
step ctr --address "$sock" version
step ctr --address "$sock" plugins ls
step "$bin/lamina" images build-busybox "$work/busybox.tar"
step ctr --address "$sock" images import "$work/busybox.tar"
step ctr --address "$sock" images ls
step ctr --address "$sock" run --rm docker.io/library/busybox:latest demo1 echo "hello from lamina"
step ctr --address "$sock" snapshots ls
step "$bin/lamina" --address "$sock" run --rm docker.io/library/busybox:latest demo2 echo "hello from lamina run"
step "$bin/lamina" --address "$sock" images ls
