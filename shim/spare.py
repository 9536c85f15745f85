"""A pre-forked shim: a serving shim, forked by laminad's zygote, waiting for its task.

The zygote (``shim/zygote.py``) keeps one spare ready.  A spare is already
what ``start`` would fork: the zygote's grandchild (so init adopts it), in a
session of its own, a child subreaper, its event loop running.  It reads the
next request straight from the zygote's socket to laminad, so laminad's
request wakes the process that will serve the task, with no fork and no
interpreter set-up in between.  Then it does ``start``'s work for itself, in
the bundle: the listening socket and ``address`` file
(``shim/start.py:listen``), the cgroup and the oom score (``shim/settle.py``, based
on the zygote's score, as the exec'ed ``start`` bases it on its parent's);
it answers with its address and pid, and serves.

The spare tells the zygote that it is no longer a spare by closing its
``link`` socket, once it serves (it writes ``TAKEN`` first when it took a
request; without it the spare died, and the zygote stops).  It exits
without serving when laminad closes the zygote's socket, when the zygote
dies (so that laminad sees a closed socket, and execs its shims, instead of
waiting on a zygote that forks no more spares), or on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
from typing import Any, NoReturn

from lamina.shim.boot import start_logging
from lamina.shim.flags import Flags
from lamina.shim.serve import Listener, run_assigned
from lamina.shim.settle import settle
from lamina.shim.start import MAX_FD, listen
from lamina.shim.title import set_title
from lamina.shim.zygote import MAX_MESSAGE

TAKEN = b"T"


def become_spare(control: socket.socket, link: socket.socket, zygote: int, title: list[str]) -> NoReturn:
    """In the zygote's grandchild: wait for a task and serve it; never returns.

    Only stdio, ``control`` (laminad's requests) and ``link`` (to the zygote)
    stay open: a shim must not hold the zygote's other descriptors.
    """
    code = 1
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.close(null)
        low = 3
        for fd in sorted((control.fileno(), link.fileno())):
            os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, MAX_FD)
        set_title(title)
        code = run_assigned(_Spare(control, link, zygote).assign)
    except BaseException as exc:  # noqa: BLE001 - a spare must never return into the zygote's code
        sys.stderr.write(f"lamina shim spare: {type(exc).__name__}: {exc}\n")
    finally:
        os._exit(code)


class _Spare:
    def __init__(self, control: socket.socket, link: socket.socket, zygote: int) -> None:
        self.control = control
        self.link = link
        self.zygote = zygote

    async def assign(self, done: asyncio.Event) -> tuple[str, Listener] | None:
        """Wait for a request; do ``start`` for it; (namespace, socket) to serve."""
        received = await self._receive(done)
        self.control.close()
        if received is None:
            self.link.close()
            return None
        request, reply = received
        with reply:
            flags, listener, answer = _start(request, self.zygote)
            with contextlib.suppress(OSError):  # laminad gave up; the shim serves anyway, as a forked one would
                reply.send(json.dumps(answer).encode())
        if listener is None:
            self._taken()
            return None
        # The zygote forks the next spare when told; not before this shim's
        # loop next waits (its server then listens), so that the fork does not
        # compete for the CPU with the set-up laminad is waiting for.
        asyncio.get_running_loop().call_soon(self._taken)
        start_logging(flags)
        return flags.namespace, listener

    def _taken(self) -> None:
        with contextlib.suppress(OSError):
            self.link.send(TAKEN)
        self.link.close()

    async def _receive(self, done: asyncio.Event) -> tuple[dict[str, Any], socket.socket] | None:
        """The next well-formed request and its reply socket; None when
        laminad or the zygote is gone, or ``done`` is set."""
        self.control.setblocking(False)
        while await self._readable(done) and not _eof(self.link):
            try:
                data, fds, _, _ = socket.recv_fds(self.control, MAX_MESSAGE, 1)
            except BlockingIOError:
                continue
            if not data:
                return None  # laminad is gone
            if len(fds) != 1:
                for fd in fds:
                    os.close(fd)
                continue
            reply = socket.socket(fileno=fds[0])
            try:
                return json.loads(data), reply
            except ValueError:
                reply.close()
        return None

    async def _readable(self, done: asyncio.Event) -> bool:
        """Wait until ``control`` or ``link`` is readable (True) or ``done`` is set (False)."""
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        for sock in (self.control, self.link):
            loop.add_reader(sock.fileno(), ready.set)
        waiters = [loop.create_task(ready.wait()), loop.create_task(done.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            for sock in (self.control, self.link):
                loop.remove_reader(sock.fileno())
        return not done.is_set()


def _eof(link: socket.socket) -> bool:
    """Whether the zygote closed its end (it never writes to a spare)."""
    try:
        return link.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False


def _start(request: dict[str, Any], zygote: int) -> tuple[Flags, Listener | None, dict[str, Any]]:
    """``start`` for this process, in the request's bundle: the flags, the
    listening socket (None if another shim serves the group, or on failure)
    and laminad's answer."""
    flags = Flags()
    listener = None
    try:
        flags.namespace = request["namespace"]
        flags.id = request["id"]
        flags.address = request["address"]
        flags.publish_binary = request["publish_binary"]
        flags.debug = bool(request["debug"])
        set_title([request["binary"], "-namespace", flags.namespace, "-id", flags.id,
                        "-address", flags.address])
        os.chdir(request["bundle"])
        os.environ["TTRPC_ADDRESS"] = request["ttrpc_address"]
        address, listener = listen(flags)
        if listener is None:
            return flags, None, {"address": address, "pid": 0}
        settle(os.getpid(), bytes.fromhex(request["options"]), zygote)
        return flags, listener, {"address": address, "pid": os.getpid()}
    except BaseException as exc:  # noqa: BLE001 - every failure is answered
        if listener is not None:
            path = listener.getsockname()
            listener.close()
            with contextlib.suppress(OSError):
                os.unlink(path)
        return flags, None, {"error": f"{type(exc).__name__}: {exc}"}
