#!/usr/bin/env bash
# Sets lamina up on this machine and runs its main job end to end, as root:
# start laminad on a scratch root, drive it with the real containerd client.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

work=$(mktemp -d /tmp/lamina-demo.XXXXXX)
sock="$work/lamina.sock"
laminad --root "$work/root" --state "$work/state" --address "$sock" --log-format json 2>"$work/laminad.log" &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null; wait $daemon 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done

step() { echo; echo "\$ $*"; "$@"; }
step ctr --address "$sock" version
step ctr --address "$sock" namespaces create demo purpose=readme
step ctr --address "$sock" namespaces ls
step ctr --address "$sock" plugins ls
step lamina --address "$sock" namespaces ls
