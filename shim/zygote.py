"""The shim zygote: a pre-imported process that forks lamina's shims for laminad.

Every ``containerd-shim-lamina-v2 start`` pays an interpreter start-up
(~0.3 s with ``site``), and the serving shim then imports asyncio, protobuf
and the task service (~0.3 s more).  laminad instead runs this module once
(``python -m lamina.shim.zygote FD``) and asks it, over the SOCK_SEQPACKET
socket on ``FD``, for one shim per task.  The zygote has imported everything
the serving shim runs, has frozen those objects out of the cyclic GC (so that
collections do not dirty the pages it shares with its children), has no
threads and no event loop, and does nothing but fork; so a fork of it is a
safe and ready shim.

Protocol (``plugins/runtime_v2/zygote.py`` is the other end):

- the zygote sends ``READY`` once its imports are done;
- each request is one JSON message (``namespace``, ``id``, ``bundle``,
  ``address``, ``ttrpc_address``, ``publish_binary``, ``binary``, ``debug``,
  ``options`` in hex) carrying one descriptor: the write end of a per-request
  SOCK_SEQPACKET pair, on which the answer comes back as one JSON message,
  ``{"address": ..., "pid": ...}`` or ``{"error": ...}``;
- end of file on ``FD`` (laminad exited, or died) ends the zygote.  The
  shims do not depend on it: they are never its children.

The zygote does not read the requests itself.  It keeps one spare shim
forked ahead of time (``shim/spare.py``), which reads the next request from
``FD``, does exactly what ``start`` does in the bundle (socket, ``address``
file, cgroup, oom score), answers and serves; when the spare has answered,
the zygote forks the next one.  So a request costs no fork and no start-up
of the serving shim's event loop.  Each spare is the zygote's grandchild
(double fork), orphaned to init, so it is neither the zygote's zombie nor
killed with it; it writes the command line containerd gives a serving shim
(``<shim> -namespace NS -id ID -address ADDR``) over the zygote's own, so
``ps`` and tools that find shims by their argv see the same thing as for an
exec'ed shim.  If a spare dies before it answered a request, or cannot be
forked, the zygote exits: laminad then execs its shims and starts another
zygote for the next task.
"""

from __future__ import annotations

import gc
import os
import select
import socket
import sys

READY = b"READY"
MAX_MESSAGE = 1 << 16
# The zygote's argv is padded to this many bytes, the room a shim's command
# line has (namespace and id up to 76 bytes each, an address up to 108).
TITLE_ROOM = 640


def _preload() -> None:
    """Import all the serving shim runs; ``ssl`` stays out as in ``serve``."""
    sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]
    import lamina.core.mount_ops  # noqa: F401
    import lamina.shim.serve  # noqa: F401
    import lamina.shim.spare  # noqa: F401


def _fork_spare(control: socket.socket) -> socket.socket:
    """Fork the next spare (a grandchild); the zygote's end of its link."""
    from lamina.shim.spare import become_spare

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    zygote = os.getpid()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            ours.close()
            if os.fork() == 0:
                become_spare(control, theirs, zygote, [sys.executable, "-m", "lamina.shim.zygote", "spare"])
        except BaseException:  # noqa: BLE001 - the intermediate child only exits
            code = 1
        os._exit(code)
    theirs.close()
    if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0:
        ours.close()
        raise OSError("cannot fork a spare shim")
    return ours


def _taken(control: socket.socket, link: socket.socket) -> bool:
    """Wait until the spare took a request (True) or laminad is gone (False);
    raise if the spare died without taking one."""
    from lamina.shim.spare import TAKEN

    poller = select.poll()
    poller.register(control, select.POLLRDHUP)  # never POLLIN: the requests are the spare's
    poller.register(link, select.POLLIN)
    while True:
        for fd, _ in poller.poll():
            if fd == control.fileno():
                return False
            if link.recv(len(TAKEN)) != TAKEN:
                raise OSError("the spare shim died")
            return True


def serve(control: socket.socket) -> int:
    control.send(READY)
    while True:
        with _fork_spare(control) as link:
            if not _taken(control, link):
                return 0  # laminad is gone; the spare sees the same end of file


def main(argv: list[str]) -> int:
    control = socket.socket(fileno=int(argv[0]))
    os.set_inheritable(control.fileno(), False)
    _preload()
    gc.collect()
    gc.freeze()
    return serve(control)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
