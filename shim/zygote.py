"""The shim zygote: a pre-imported process that forks lamina's shims for laminad.

Every ``containerd-shim-lamina-v2 start`` pays an interpreter start-up
(~0.3 s with ``site``), and the serving shim then imports asyncio, protobuf
and the task service (~0.3 s more).  laminad instead runs this module once
(``python -m lamina.shim.zygote FD``) and asks it, over the SOCK_SEQPACKET
socket on ``FD``, for one shim per task.  The zygote has imported everything
the serving shim runs, has frozen those objects out of the cyclic GC (so that
collections do not dirty the pages it shares with its children), has no
threads and no event loop, and does nothing but wait for requests; so a fork
of it is a safe and ready shim.

Protocol (``plugins/runtime_v2/zygote.py`` is the other end):

- the zygote sends ``READY`` once its imports are done;
- each request is one JSON message (``namespace``, ``id``, ``bundle``,
  ``address``, ``ttrpc_address``, ``publish_binary``, ``binary``, ``debug``,
  ``options`` in hex) carrying one descriptor: the write end of a per-request
  SOCK_SEQPACKET pair, on which the answer comes back as one JSON message,
  ``{"address": ..., "pid": ...}`` or ``{"error": ...}``;
- end of file on ``FD`` (laminad exited, or died) ends the zygote.  The
  shims do not depend on it: they are never its children.

Per request the zygote forks a child that does exactly what ``start`` does
in the bundle (``shim/main.py``: socket, ``address`` file, fork of the
serving shim, cgroup, oom score), answers, and exits; the zygote reaps it
at once.  The serving shim, the child's child, is orphaned to init (double
fork), so it is neither the zygote's zombie nor killed with it.  The child
also writes the command line containerd gives a serving shim
(``<shim> -namespace NS -id ID -address ADDR``) over the zygote's own, so
``ps`` and tools that find shims by their argv see the same thing as for an
exec'ed shim.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import socket
import sys
from typing import Any

READY = b"READY"
MAX_MESSAGE = 1 << 16
# The zygote's argv is padded to this many bytes, the room a shim's command
# line has (namespace and id up to 76 bytes each, an address up to 108).
TITLE_ROOM = 640


def _preload() -> None:
    """Import all the serving shim runs; ``ssl`` stays out as in ``serve``."""
    sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]
    import lamina.core.mount_ops  # noqa: F401
    import lamina.shim.main  # noqa: F401
    import lamina.shim.serve  # noqa: F401


def set_title(argv: list[str]) -> None:
    """Overwrite this process's argv area (``/proc/PID/cmdline``) with ``argv``.

    ``prctl(PR_SET_MM_ARG_*)`` would need CAP_SYS_RESOURCE, so the original
    strings are overwritten in place, truncated to their length, and the
    last byte stays NUL (the kernel then reports the area as NUL-separated
    arguments, not as a setproctitle string).
    """
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (stat fields 48, 49)
    room = end - start
    if room <= 1:
        return
    title = b"\0".join(a.encode() for a in argv)[: room - 1]
    ctypes.memmove(start, title.ljust(room, b"\0"), room)


def _child(control: socket.socket, reply: socket.socket, request: dict[str, Any]) -> None:
    """The forked ``start``; never returns."""
    code = 1
    try:
        control.close()
        from lamina.shim import main as shim

        flags = shim.Flags()
        flags.namespace = request["namespace"]
        flags.id = request["id"]
        flags.address = request["address"]
        flags.publish_binary = request["publish_binary"]
        flags.debug = bool(request["debug"])
        flags.action = "start"
        set_title([request["binary"], "-namespace", flags.namespace, "-id", flags.id, "-address", flags.address])
        os.chdir(request["bundle"])
        os.environ["TTRPC_ADDRESS"] = request["ttrpc_address"]
        address, pid = shim.start(flags, bytes.fromhex(request["options"]))
        answer = {"address": address, "pid": pid}
        code = 0
    except BaseException as exc:  # noqa: BLE001 - every failure is answered
        answer = {"error": f"{type(exc).__name__}: {exc}"}
    try:
        reply.send(json.dumps(answer).encode())
    finally:
        os._exit(code)


def serve(control: socket.socket) -> int:
    control.send(READY)
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(control, MAX_MESSAGE, 1)
        except OSError:
            return 1
        if not data:
            return 0  # laminad is gone
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            continue
        reply = socket.socket(fileno=fds[0])
        try:
            request = json.loads(data)
        except ValueError:
            reply.close()
            continue
        pid = os.fork()
        if pid == 0:
            _child(control, reply, request)
        reply.close()
        os.waitpid(pid, 0)


def main(argv: list[str]) -> int:
    control = socket.socket(fileno=int(argv[0]))
    os.set_inheritable(control.fileno(), False)
    _preload()
    gc.collect()
    gc.freeze()
    return serve(control)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
