"""The ``delete`` action: clean up after a dead shim (runc/manager ``Stop``).

containerd runs it after every task (``cleanupAfterDeadShim``) and waits for
it: ``runtime delete --force``, unmount the rootfs, print a DeleteResponse
(the init pid, exit status 137, now) on stdout.  It loads no protobuf
(``delete_response`` says why).
"""

from __future__ import annotations

import json
import os
import sys

from lamina.shim.flags import Flags

RUNC_ROOT = "/run/containerd/runc"


def _run_quietly(argv: list[str]) -> tuple[int, bytes]:
    """Run a command with stdio on /dev/null except stderr, which is returned."""
    read, write = os.pipe()
    null = os.open(os.devnull, os.O_RDWR)
    try:
        pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=[
            (os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, null, 1), (os.POSIX_SPAWN_DUP2, write, 2)])
    finally:
        os.close(write)
        os.close(null)
    with os.fdopen(read, "rb") as f:
        err = f.read()
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), err


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def delete_response(pid: int, exit_status: int, exited_at_ns: int) -> bytes:
    """``containerd.task.v2.DeleteResponse`` {pid=1, exit_status=2, exited_at=3},
    encoded by hand: loading protobuf would double the cost of ``delete``, which
    containerd waits for after every task (``cleanupAfterDeadShim``)."""
    seconds, nanos = divmod(exited_at_ns, 10**9)
    ts = b"\x08" + _encode_varint(seconds) + (b"\x10" + _encode_varint(nanos) if nanos else b"")
    out = b""
    if pid:
        out += b"\x08" + _encode_varint(pid)
    if exit_status:
        out += b"\x10" + _encode_varint(exit_status)
    return out + b"\x1a" + _encode_varint(len(ts)) + ts


def delete(flags: Flags) -> int:
    """runc/manager ``Stop``: the shim is gone; remove what it left."""
    import time

    from lamina.shim import log as shimlog

    shimlog.configure(debug=flags.debug, id=flags.id, namespace=flags.namespace)
    log = shimlog.log
    bundle = flags.bundle or os.path.join(os.path.dirname(os.getcwd()), flags.id)
    try:
        with open(os.path.join(bundle, "runtime")) as f:
            binary = f.read().strip()
    except OSError:
        binary = ""
    root = RUNC_ROOT
    try:
        with open(os.path.join(bundle, "options.json"), "rb") as f:
            root = json.load(f).get("root") or RUNC_ROOT
    except (OSError, ValueError):
        pass
    argv = [binary or "runc", "--root", os.path.join(root, flags.namespace),
            "--log", os.path.join(bundle, "log.json"), "--log-format", "json", "delete", "--force", flags.id]
    code, err = _run_quietly(argv)
    if code != 0:
        log.warning("failed to remove runc container", error=err.decode(errors="replace").strip())
    rootfs = os.path.join(bundle, "rootfs")
    if os.path.ismount(rootfs):
        from lamina.core.mount_ops import unmount_all

        try:
            unmount_all(rootfs)
        except OSError as exc:
            log.warning("failed to cleanup rootfs mount", error=str(exc))
    pid = 0
    try:
        with open(os.path.join(bundle, "init.pid")) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError) as exc:
        log.warning("failed to read init pid file", error=str(exc))
    sys.stdout.buffer.write(delete_response(pid, 128 + 9, time.time_ns()))
    sys.stdout.flush()
    return 0
