"""The long-lived shim: the event loop, the ttrpc server, and the way out.

As shim.go ``run`` serving mode: child subreaper, SIGCHLD reaping, SIGPIPE
ignored (events and logs outlive the daemon), the Task service on the
inherited listening socket (fd 3), events forwarded to ``$TTRPC_ADDRESS``.
The shim ends on Shutdown once no container is left, or on SIGTERM/SIGINT;
then it stops listening, removes its socket (the ``address`` file names it),
sends the events still queued (up to 5 s) and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket

from lamina.core.ttrpc import Server
from lamina.shim.events import Publisher
from lamina.shim.log import log
from lamina.shim.reaper import Reaper, set_subreaper
from lamina.shim.task import TaskService

LISTEN_FD = 3


def run(namespace: str, *, listen_path: str = "") -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    set_subreaper()
    return asyncio.run(_serve(namespace, listen_path))


async def _serve(namespace: str, listen_path: str) -> int:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    publisher = Publisher(os.environ.get("TTRPC_ADDRESS", ""), namespace)
    service = TaskService(namespace=namespace, publisher=publisher, reaper_factory=Reaper,
                          on_shutdown=done.set)
    service.reaper.start(loop)
    server = Server()
    service.register(server)
    if listen_path:
        await server.start(listen_path)
    else:
        await server.start(sock=socket.socket(fileno=LISTEN_FD))
    log.info("shim serving")
    await done.wait()

    await server.shutdown(timeout=2.0)
    with contextlib.suppress(OSError):
        with open("address") as f:
            address = f.read().strip()
        if address.startswith("unix://"):
            os.unlink(address.removeprefix("unix://"))
    await publisher.close(timeout=5.0)
    log.info("shim exited")
    return 0
