"""A byte copy between two descriptors on the event loop, for a process's stdio.

The copy reads with non-blocking descriptors and pauses while the destination
is full.  When it ends (the source at EOF or EIO, or ``stop``), it closes the
descriptors it was given to own: a FIFO's reader sees EOF only once every
write end is closed, and containerd closes its FIFO ends as soon as its copy
ends (pkg/process/io.go ``copyPipes``, ``Platform.CopyConsole``).

``flush`` answers "has everything the source holds now reached the
destination?", which is what an exit report waits for: the process is gone,
so all it wrote is in the pipe or pty.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select

from lamina.shim.log import log

_READABLE = select.POLLIN | select.POLLHUP | select.POLLERR


def _pending(fd: int) -> bool:
    """The source has data, or its EOF/EIO, to read now."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return any(events & _READABLE for _, events in poller.poll(0))


class Copy:
    def __init__(self, src: int, dst: int, *, owned: tuple[int, ...] = ()) -> None:
        self.src = src
        self.dst = dst
        self._owned = owned
        self._idle = asyncio.Event()  # set while waiting for the source with nothing in hand
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _wait(self, add: str, remove: str, fd: int) -> None:
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        getattr(loop, add)(fd, ready.set)
        try:
            await ready.wait()
        finally:
            getattr(loop, remove)(fd)

    async def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.dst, view):]
            except BlockingIOError:
                await self._wait("add_writer", "remove_writer", self.dst)

    async def _run(self) -> None:
        try:
            while True:
                try:
                    data = os.read(self.src, 65536)
                except BlockingIOError:
                    self._idle.set()
                    await self._wait("add_reader", "remove_reader", self.src)
                    self._idle.clear()
                    continue
                if not data:
                    return
                await self._write_all(data)
        except OSError as exc:  # EIO: the pty's last slave closed; EPIPE: no reader
            log.debug("stdio copy ended", error=str(exc))
        finally:
            for fd in self._owned:
                with contextlib.suppress(OSError):
                    os.close(fd)

    async def flush(self, timeout: float) -> None:
        """Wait (up to ``timeout``) until what the source holds now is written,
        or the copy ended."""
        if self.task.done():
            return
        if _pending(self.src):
            self._idle.clear()  # set again only after the copy has read it all
        idle = asyncio.ensure_future(self._idle.wait())
        try:
            await asyncio.wait({idle, self.task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            idle.cancel()

    async def stop(self) -> None:
        """End the copy now; its descriptors are closed when this returns."""
        self.task.cancel()
        await asyncio.wait({self.task})
