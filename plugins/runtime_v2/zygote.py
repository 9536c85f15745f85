"""laminad's side of the shim zygote (``shim/zygote.py``).

The runtime plugin starts one zygote once laminad serves (its imports would
otherwise compete with laminad's start-up); the process imports the shim in
the background.  For a task whose shim is
lamina's own, ``ShimBinary.start`` asks the zygote for the shim instead of
running ``containerd-shim-lamina-v2 start``: the same socket, ``address``
file, cgroup and oom score, without two interpreter start-ups per task.  The
request is read, and answered, by the spare shim the zygote keeps forked
ahead of time (``shim/spare.py``), whose socket listens before the answer is
sent.  The daemon then connects to the address over ttrpc as for any shim.

Failure is never fatal: if the zygote cannot be reached, or dies, the request
falls back to exec'ing the shim binary, and the next request starts a new
zygote.  A zygote that never becomes ready (it failed to import) is not
started again.  Shims outlive the zygote; the zygote exits with laminad (end
of file on its socket), whether laminad exits or is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys

from lamina.core.errors import FailedPrecondition, Unavailable
from lamina.core.log import get_logger
from lamina.shim.zygote import MAX_MESSAGE, READY, TITLE_ROOM

log = get_logger()

READY_TIMEOUT = 30.0


class Zygote:
    """One zygote process and the socket to it."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._ready: asyncio.Future[bool] | None = None
        self._broken = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Spawn the zygote; its imports run while laminad carries on."""
        if self._broken or self._process is not None:
            return
        control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = [sys.executable, "-m", "lamina.shim.zygote", str(theirs.fileno())]
        argv.append(" " * max(1, TITLE_ROOM - sum(len(a) + 1 for a in argv)))  # room for shim titles
        try:
            self._process = subprocess.Popen(
                argv, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            control.close()
            self._broken = True
            log.warning("shim zygote not started", error=str(exc))
            return
        finally:
            theirs.close()
        control.setblocking(False)
        self._control = control
        self._ready = asyncio.get_running_loop().create_task(self._wait_ready())
        log.debug("shim zygote started", pid=self._process.pid)

    async def _wait_ready(self) -> bool:
        assert self._control is not None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                ready = await loop.sock_recv(self._control, len(READY)) == READY
        except (OSError, TimeoutError):
            ready = False
        if not ready:
            log.warning("shim zygote failed to start; shims are exec'ed", pid=self.pid)
            self._broken = True
            await self._stop()
        return ready

    async def spawn(self, request: dict[str, object]) -> str:
        """The address of a new serving shim; ``Unavailable`` if the zygote
        cannot serve (the caller then execs the shim), ``FailedPrecondition``
        if ``start`` itself failed."""
        if self._process is None:
            self.start()
        if self._ready is None or not await asyncio.shield(self._ready):
            raise Unavailable("no shim zygote")
        assert self._control is not None
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with ours:
            try:
                with theirs:
                    socket.send_fds(self._control, [json.dumps(request).encode()], [theirs.fileno()])
                ours.setblocking(False)
                data = await loop.sock_recv(ours, MAX_MESSAGE)
            except OSError as exc:
                data = b""
                log.warning("shim zygote failed", pid=self.pid, error=str(exc))
            if not data:
                await self._stop()  # the next request starts another
                raise Unavailable("shim zygote gone")
        answer = json.loads(data)
        if "error" in answer:
            raise FailedPrecondition(f"start shim (zygote): {answer['error']}")
        log.debug("shim forked by zygote", id=request["id"], namespace=request["namespace"],
                  pid=answer["pid"], zygote=self.pid)
        return str(answer["address"])

    async def _stop(self) -> None:
        control, process, ready = self._control, self._process, self._ready
        self._control = self._process = self._ready = None
        serving = ready is not None and ready.done() and not ready.cancelled() and ready.result()
        if ready is not None and ready is not asyncio.current_task():
            ready.cancel()
        if control is not None:
            control.close()  # end of file: the zygote exits
        if process is not None and not serving:
            # Still importing (or failed): it has forked no shim, and would see
            # the end of file only once ready, holding laminad's stop for that long.
            process.kill()
        if process is not None:
            try:
                await asyncio.to_thread(process.wait, 5.0)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)

    async def close(self) -> None:
        with contextlib.suppress(OSError):
            await self._stop()


def is_lamina_shim(path: str) -> bool:
    """Whether ``path`` is this installation's ``containerd-shim-lamina-v2``
    (the zygote runs this installation's shim code, and only that)."""
    own = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "containerd-shim-lamina-v2")
    try:
        return os.path.samefile(path, own)
    except OSError:
        return False
