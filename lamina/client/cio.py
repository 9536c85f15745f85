"""A process's stdio as FIFOs, and the copy loops to the caller's streams (containerd's ``cio``).

The client makes ``<root>/<random>/<id>-stdin|-stdout|-stderr`` (directory
0700; ``ctr`` uses ``/run/containerd/fifo``, lamina ``/run/lamina/fifo``) and
passes the paths in Tasks.Create or Tasks.Exec.  The runtime side opens stdin
for reading and stdout/stderr for writing, and holds its own read end so that
the process never gets EPIPE once the client leaves.  With a terminal there is
no stderr: the pty's output comes on stdout.

The client's read ends are opened non-blocking *before* the task is created,
because containerd's shim opens the write ends blocking and would wait for a
reader.  A non-blocking FIFO read returns EOF while no writer is connected, so
the copy loops start only once Create (or Exec) has returned, and EOF then
means the runtime closed its end: the process is gone.  Stdin is opened
read-write so the open never fails for want of a reader; the caller's stdin is
read by a daemon thread (it may be a file, a pipe or a terminal, and a thread
blocked on it must not hold up the exit), and its EOF closes our end and
calls ``on_stdin_eof`` (Tasks.CloseIO).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import shutil
import tempfile
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

FIFO_ROOT = "/run/lamina/fifo"
DRAIN_TIMEOUT = 2.0  # how long output may keep coming after the process was reported exited
_CHUNK = 32 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class FIFOSet:
    dir: str
    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False


def new_fifos(id: str, *, terminal: bool = False, stdin: bool = True, root: str = FIFO_ROOT) -> FIFOSet:
    """``cio.NewFIFOSetInDir``: fresh FIFOs for process ``id`` in a new private directory."""
    os.makedirs(root, mode=0o700, exist_ok=True)
    directory = tempfile.mkdtemp(dir=root)
    os.chmod(directory, 0o700)
    paths = {
        "stdin": os.path.join(directory, f"{id}-stdin") if stdin else "",
        "stdout": os.path.join(directory, f"{id}-stdout"),
        "stderr": "" if terminal else os.path.join(directory, f"{id}-stderr"),
    }
    for path in paths.values():
        if path:
            os.mkfifo(path, 0o700)
    return FIFOSet(dir=directory, terminal=terminal, **paths)


def remove(fifos: FIFOSet | None) -> None:
    """Remove the FIFOs and their directory (what ``ctr`` does after ``task delete`` of a ``run -d``)."""
    if fifos is not None and fifos.dir:
        shutil.rmtree(fifos.dir, ignore_errors=True)


def remove_paths(*paths: str) -> None:
    """Remove the FIFOs a task reported, and their directory when it is then empty."""
    directories = set()
    for path in paths:
        if path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            directories.add(os.path.dirname(path))
    for directory in directories:
        with contextlib.suppress(OSError):
            os.rmdir(directory)


def _write_all(fd: int, data: bytes) -> None:
    """Write everything to ``fd``, waiting for room when it is non-blocking."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            select.select([], [fd], [])


class Attachment:
    """The client's ends of one FIFO set, copied to and from the caller's file descriptors."""

    def __init__(self, fifos: FIFOSet, *, stdin: int | None = 0, stdout: int = 1, stderr: int = 2) -> None:
        self.fifos = fifos
        self._targets = {"stdout": stdout, "stderr": stderr}
        self._source = stdin if fifos.stdin else None
        self._ends: dict[str, int] = {}
        for name in ("stdout", "stderr"):
            path = getattr(fifos, name)
            if path:
                self._ends[name] = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        if fifos.stdin:
            self._ends["stdin"] = os.open(fifos.stdin, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        self._done: list[asyncio.Future[None]] = []

    def start(self, on_stdin_eof: Callable[[], Awaitable[object]] | None = None) -> None:
        """Start copying; call once the runtime has opened its ends (Create or Exec returned)."""
        loop = asyncio.get_running_loop()
        for name in ("stdout", "stderr"):
            if name in self._ends:
                self._done.append(self._copy_out(loop, self._ends[name], self._targets[name]))
        if self._source is not None and "stdin" in self._ends:
            thread = threading.Thread(target=self._copy_in, args=(loop, on_stdin_eof), name="lamina-stdin",
                                      daemon=True)
            thread.start()

    def _copy_out(self, loop: asyncio.AbstractEventLoop, fd: int, target: int) -> asyncio.Future[None]:
        done: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            try:
                data = os.read(fd, _CHUNK)
            except BlockingIOError:
                return
            except OSError:
                data = b""  # EIO: a pty whose other side went away
            if not data:
                loop.remove_reader(fd)
                if not done.done():
                    done.set_result(None)
                return
            with contextlib.suppress(BrokenPipeError):
                _write_all(target, data)

        loop.add_reader(fd, readable)
        return done

    def _copy_in(self, loop: asyncio.AbstractEventLoop,
                 on_eof: Callable[[], Awaitable[object]] | None) -> None:
        fd = self._ends.get("stdin")
        assert self._source is not None and fd is not None
        try:
            while True:
                data = os.read(self._source, _CHUNK)
                if not data:
                    break
                _write_all(fd, data)
        except OSError:
            pass
        if self._ends.pop("stdin", None) is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        if on_eof is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop stopped meanwhile
                asyncio.run_coroutine_threadsafe(_quietly(on_eof), loop)

    async def drain(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """Wait (a bounded time) until the runtime closed stdout and stderr and all was copied."""
        if self._done:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*self._done), timeout)

    def close(self) -> None:
        """Stop copying and close the client's ends (the FIFOs themselves stay)."""
        with contextlib.suppress(RuntimeError):
            loop = asyncio.get_running_loop()
            for name in ("stdout", "stderr"):
                if name in self._ends:
                    loop.remove_reader(self._ends[name])
        for future in self._done:
            if not future.done():
                future.cancel()
        for name in list(self._ends):
            fd = self._ends.pop(name, None)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)


async def _quietly(call: Callable[[], Awaitable[object]]) -> None:
    with contextlib.suppress(Exception):
        await call()
