"""A process's stdio: the client's FIFOs, wired to the process or to its pty.

Without a terminal the FIFOs themselves become the process's stdio (runc
passes its own stdio through to the container), so output reaches the client
with no copy in the shim and is all in the FIFO by the time the exit is
reaped.  As containerd's shim does (pkg/process/io.go), the shim keeps its own
read end on stdout/stderr, so the process never gets EPIPE after the client
goes away (``run -d``, a later ``task attach``), and its own write end on
stdin, so stdin reaches EOF only after ``CloseIO`` *and* the client closing.

With a terminal, runc hands the pty master over the console socket
(SCM_RIGHTS) and the shim copies stdin FIFO -> master -> stdout FIFO
(containerd's ``Platform.CopyConsole``).  The copies use non-blocking
descriptors on the event loop, pausing while the destination is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import select
import socket
import stat
import struct
import tempfile
import termios

from lamina.shim.log import log


def _open_fifo_pair_for_write(path: str) -> tuple[int, int]:
    """(our never-read read end, a blocking write end) of an existing FIFO."""
    keep = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        write = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except BaseException:
        os.close(keep)
        raise
    return keep, write


def _open_fifo_pair_for_read(path: str) -> tuple[int, int]:
    """(a blocking read end, our write end that holds off EOF) of a FIFO."""
    read = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        keep = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except BaseException:
        os.close(read)
        raise
    os.set_blocking(read, True)
    return read, keep


def _open_target(path: str, *, for_write: bool) -> tuple[int, int]:
    """A FIFO as above, or a regular file/device (``binary://`` and ``file://``
    are not supported; plain paths to files are opened directly)."""
    if path.startswith("file://"):
        path = path[len("file://"):]
    try:
        is_fifo = stat.S_ISFIFO(os.stat(path).st_mode)
    except FileNotFoundError:
        is_fifo = False
    if is_fifo:
        return _open_fifo_pair_for_write(path) if for_write else _open_fifo_pair_for_read(path)
    flags = (os.O_WRONLY | os.O_CREAT | os.O_APPEND) if for_write else os.O_RDONLY
    return -1, os.open(path, flags | os.O_CLOEXEC, 0o600)


class PipeIO:
    """Stdio FIFOs handed straight to the process."""

    def __init__(self, stdin: str, stdout: str, stderr: str) -> None:
        self._child: dict[int, int] = {}
        self._keep: list[int] = []
        self._stdin_keep = -1
        try:
            if stdin:
                read, self._stdin_keep = _open_target(stdin, for_write=False)
                self._child[0] = read
            for target, path in ((1, stdout), (2, stderr)):
                if path:
                    keep, write = _open_target(path, for_write=True)
                    if keep >= 0:
                        self._keep.append(keep)
                    self._child[target] = write
        except BaseException:
            self.close()
            raise

    def child_fds(self) -> dict[int, int]:
        return dict(self._child)

    def started(self) -> None:
        """The process holds its stdio now; drop our copies of its ends."""
        for fd in self._child.values():
            os.close(fd)
        self._child.clear()

    def close_stdin(self) -> None:
        if self._stdin_keep >= 0:
            os.close(self._stdin_keep)
            self._stdin_keep = -1

    async def drain(self) -> None:
        """Nothing to flush: the process wrote into the FIFOs itself."""

    def close(self) -> None:
        self.started()
        self.close_stdin()
        for fd in self._keep:
            os.close(fd)
        self._keep.clear()


class ConsoleSocket:
    """runc's ``--console-socket``: a unix socket that receives the pty master."""

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="pty", dir=os.environ.get("XDG_RUNTIME_DIR") or "/tmp")
        self.path = os.path.join(self._dir, "pty.sock")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(self.path)
        self._sock.listen(1)
        self._sock.setblocking(False)

    async def receive_master(self, timeout: float = 30.0) -> int:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            conn, _ = await loop.sock_accept(self._sock)
            with conn:
                ready = asyncio.Event()
                loop.add_reader(conn.fileno(), ready.set)
                try:
                    await ready.wait()
                finally:
                    loop.remove_reader(conn.fileno())
                _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
        if not fds:
            raise OSError("console socket: no pty master received")
        os.set_inheritable(fds[0], False)
        return fds[0]

    def close(self) -> None:
        self._sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.rmdir(self._dir)


class _Copy:
    """One direction of a non-blocking copy on the loop."""

    def __init__(self, src: int, dst: int, *, on_eof: bool = False) -> None:
        self.src = src
        self.dst = dst
        self.close_dst_on_eof = on_eof
        self.task: asyncio.Task[None] | None = None

    async def _wait(self, add: str, remove: str, fd: int) -> None:
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        getattr(loop, add)(fd, ready.set)
        try:
            await ready.wait()
        finally:
            getattr(loop, remove)(fd)

    async def write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.dst, view):]
            except BlockingIOError:
                await self._wait("add_writer", "remove_writer", self.dst)

    async def run(self) -> None:
        try:
            while True:
                try:
                    data = os.read(self.src, 65536)
                except BlockingIOError:
                    await self._wait("add_reader", "remove_reader", self.src)
                    continue
                if not data:
                    return
                await self.write_all(data)
        except OSError as exc:  # EIO: the pty's last slave closed
            log.debug("console copy ended", error=str(exc))


class ConsoleIO:
    """A pty master wired to the stdin/stdout FIFOs."""

    def __init__(self, stdin: str, stdout: str) -> None:
        self.master = -1
        self._fds: list[int] = []
        self._in = -1
        self._out = -1
        self._stdin_keep = -1
        try:
            if stdin:
                self._in, self._stdin_keep = _open_fifo_pair_for_read(stdin)
                os.set_blocking(self._in, False)
                self._fds.append(self._in)
            if stdout:
                keep, self._out = _open_fifo_pair_for_write(stdout)
                os.set_blocking(self._out, False)
                self._fds += [keep, self._out]
        except BaseException:
            self.close()
            raise
        self._copies: list[_Copy] = []

    def child_fds(self) -> dict[int, int]:
        return {}

    def started(self) -> None:
        pass

    def attach(self, master: int) -> None:
        self.master = master
        os.set_blocking(master, False)
        if self._in >= 0:
            self._copies.append(_Copy(self._in, master))
        if self._out >= 0:
            self._copies.append(_Copy(master, self._out))
        for copy in self._copies:
            copy.task = asyncio.get_running_loop().create_task(copy.run())

    def resize(self, width: int, height: int) -> None:
        if self.master >= 0:
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def close_stdin(self) -> None:
        if self._stdin_keep >= 0:
            os.close(self._stdin_keep)
            self._stdin_keep = -1

    async def drain(self, timeout: float = 2.0) -> None:
        """Let the copy move what is still in the pty to stdout, so that an
        exit is reported after the process's last output (a client stops
        reading once Wait answers)."""
        if self.master < 0 or self._out < 0:
            return
        out = next(c for c in self._copies if c.src == self.master)
        poller = select.poll()
        poller.register(self.master, select.POLLIN)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while out.task is not None and not out.task.done():
                    events = poller.poll(0)
                    if not events or not events[0][1] & select.POLLIN:
                        return
                    await asyncio.sleep(0.002)

    def close(self) -> None:
        for copy in self._copies:
            if copy.task is not None:
                copy.task.cancel()
        self._copies.clear()
        self.close_stdin()
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        if self.master >= 0:
            os.close(self.master)
            self.master = -1
