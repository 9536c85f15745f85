"""The long-lived shim: the event loop, the ttrpc server, and the way out.

As shim.go ``run`` serving mode: child subreaper, SIGCHLD reaping, SIGPIPE
ignored (events and logs outlive the daemon), the Task service on the
inherited listening socket (fd 3), events forwarded to ``$TTRPC_ADDRESS``.
The shim ends on Shutdown once no container is left, or on SIGTERM/SIGINT;
then it stops listening, removes its socket (its path noted at start: the
bundle with the ``address`` file may be gone by then),
sends the events still queued (up to 5 s) and exits.

A shim pre-forked by laminad's zygote (``shim/spare.py``) runs the same
loop before it knows its task: ``run_assigned`` takes a coroutine that
waits for the task and returns the namespace and listening socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Awaitable, Callable

from lamina.core.ttrpc import Server
from lamina.shim.events import Publisher
from lamina.shim.log import log
from lamina.shim.reaper import Reaper, set_subreaper
from lamina.shim.task import TaskService

LISTEN_FD = 3

# Where to serve: a listening socket, or a path to listen on.
Listener = socket.socket | str
# Waits for the task (``done`` is set by SIGTERM/SIGINT meanwhile); returns
# (namespace, listener), or None to exit without serving.
Assign = Callable[[asyncio.Event], Awaitable["tuple[str, Listener] | None"]]


def run(namespace: str, *, listen_path: str = "") -> int:
    """Serve ``namespace`` on ``listen_path``, or on the socket at fd 3."""

    async def fixed(done: asyncio.Event) -> tuple[str, Listener]:
        return namespace, listen_path or socket.socket(fileno=LISTEN_FD)

    return run_assigned(fixed)


def run_assigned(assign: Assign) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    set_subreaper()
    return asyncio.run(_serve(assign))


async def _serve(assign: Assign) -> int:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    assigned = await assign(done)
    if assigned is None:
        return 0
    namespace, listener = assigned
    publisher = Publisher(os.environ.get("TTRPC_ADDRESS", ""), namespace)
    service = TaskService(namespace=namespace, publisher=publisher, reaper_factory=Reaper,
                          on_shutdown=done.set)
    service.reaper.start(loop)
    server = Server()
    service.register(server)
    # The socket's path is taken now: by the time the shim exits, laminad may
    # already have removed the bundle and the address file in it.
    if isinstance(listener, str):
        path = listener
        await server.start(listener)
    else:
        path = listener.getsockname()
        await server.start(sock=listener)
    log.info("shim serving")
    await done.wait()

    await server.shutdown(timeout=2.0)
    if isinstance(path, str) and path:
        with contextlib.suppress(OSError):
            os.unlink(path)
    await publisher.close(timeout=5.0)
    log.info("shim exited")
    return 0
