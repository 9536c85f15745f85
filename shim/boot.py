"""How a process becomes a serving shim: its log, then the serving loop.

Three paths lead here: ``start``'s forked child, the shim run with no action
(``-socket`` or fd 3), and the zygote's spare once it has its task.  This
runs before ``shim/serve.py`` is imported, because logging must be on the
bundle's ``log`` FIFO, and ``ssl`` blocked, before asyncio and the task
service load; so it stays apart from that module.
"""

from __future__ import annotations

import os
import sys

from lamina.shim.flags import Flags


def _open_log() -> None:
    """Point fd 2 at the bundle's ``log`` FIFO (non-blocking), or /dev/null."""
    try:
        fd = os.open("log", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        fd = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    os.dup2(fd, 2)
    os.close(fd)
    os.set_blocking(2, False)


def start_logging(flags: Flags) -> None:
    """A serving shim's logging: fd 2 on the bundle's ``log`` FIFO (cwd), the
    flags' fields on every line, and the ttrpc package logging through it."""
    _open_log()
    # The shim never speaks TLS; asyncio imports ssl only if it can (its
    # "except ImportError: ssl = None"), and libssl costs ~1.4 MiB PSS per shim.
    sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]
    from lamina.core.ttrpc.log import set_logger
    from lamina.shim import log as shimlog

    shimlog.configure(debug=flags.debug, id=flags.id, namespace=flags.namespace, pid=os.getpid())
    set_logger(shimlog.get_logger())


def serve(flags: Flags) -> int:
    """Serve ``containerd.task.v2.Task`` on fd 3 (or ``-socket``), forwarding
    events to ``$TTRPC_ADDRESS``, until the shim is told to end."""
    start_logging(flags)
    from lamina.shim.serve import run

    return run(flags.namespace, listen_path=flags.socket)
