"""A process's stdio: the client's FIFOs, wired to the process or to its pty.

Without a terminal, stdin and stdout FIFOs themselves become the process's
stdio (runc passes its own stdio through to the container), so its output
reaches the client with no copy in the shim and is all in the FIFO by the
time the exit is reaped.  Stderr goes through a pipe that the shim copies
once the runtime succeeded (``PipeIO`` says why).  As containerd's shim does
(pkg/process/io.go), the shim keeps its own read end on stdout/stderr, so
the process never gets EPIPE after the client goes away (``run -d``, a later
``task attach``), and its own write end on stdin, so stdin reaches EOF only
after ``CloseIO`` *and* the client closing.

With a terminal, runc hands the pty master over the console socket
(SCM_RIGHTS) and the shim copies stdin FIFO -> master -> stdout FIFO
(containerd's ``Platform.CopyConsole``), with ``shim/copy.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
import stat
import struct
import tempfile
import termios

from lamina.shim.copy import Copy


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
    """A FIFO as above, or a regular file/device: plain paths to files are opened
    directly, and a ``file://`` URI's file is made with its directories, as
    containerd's shim does (pkg/process/io.go); ``binary://`` is not supported."""
    if path.startswith("file://"):
        path = path[len("file://"):]
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    try:
        is_fifo = stat.S_ISFIFO(os.stat(path).st_mode)
    except FileNotFoundError:
        is_fifo = False
    if is_fifo:
        return _open_fifo_pair_for_write(path) if for_write else _open_fifo_pair_for_read(path)
    flags = (os.O_WRONLY | os.O_CREAT | os.O_APPEND) if for_write else os.O_RDONLY
    return -1, os.open(path, flags | os.O_CLOEXEC, 0o600)


class PipeIO:
    """Stdio FIFOs handed to the process: stdin and stdout as they are,
    stderr through a pipe the shim copies to the FIFO.

    The runtime passes its own stdio through to the process, so whatever
    ``runc create``/``runc exec`` prints about its own failure lands on the
    process's stderr.  containerd gives the runtime pipes and starts copying
    them only once the runtime succeeded (pkg/process/init.go ``Create``), so
    that text never reaches the client (``docker logs``); the runtime's error
    comes back from Create through ``log.json`` instead.  The runtime prints
    nothing on stdout, so stdout needs no copy.
    """

    def __init__(self, stdin: str, stdout: str, stderr: str) -> None:
        self._child: dict[int, int] = {}
        self._keep: list[int] = []
        self._stdin_keep = -1
        self._stderr: tuple[int, int, int] | None = None  # (pipe read end, FIFO keep, FIFO write) until copied
        self._stderr_copy: Copy | None = None
        try:
            if stdin:
                read, self._stdin_keep = _open_target(stdin, for_write=False)
                self._child[0] = read
            if stdout:
                keep, self._child[1] = _open_target(stdout, for_write=True)
                if keep >= 0:
                    self._keep.append(keep)
            if stderr:
                keep, write = _open_target(stderr, for_write=True)
                self._stderr = (-1, keep, write)
                read, self._child[2] = os.pipe2(os.O_CLOEXEC)
                self._stderr = (read, keep, write)
        except BaseException:
            self._close_fds()
            raise

    def child_fds(self) -> dict[int, int]:
        return dict(self._child)

    def started(self) -> None:
        """The runtime ran: the process holds its stdio now; drop our copies of its ends."""
        for fd in self._child.values():
            os.close(fd)
        self._child.clear()

    def copy(self) -> None:
        """The runtime succeeded: from now on, the process's stderr goes to the client."""
        if self._stderr is not None:
            read, keep, write = self._stderr
            self._stderr = None
            os.set_blocking(read, False)
            os.set_blocking(write, False)
            self._stderr_copy = Copy(read, write, owned=tuple(fd for fd in (read, keep, write) if fd >= 0))

    def close_stdin(self) -> None:
        if self._stdin_keep >= 0:
            os.close(self._stdin_keep)
            self._stdin_keep = -1

    async def drain(self, timeout: float = 2.0) -> None:
        """The process exited: what it wrote to stdout is in the FIFO; wait
        for the copy to move its stderr there too."""
        if self._stderr_copy is not None:
            await self._stderr_copy.flush(timeout)

    def _close_fds(self) -> None:
        self.started()
        self.close_stdin()
        for fd in self._keep:
            os.close(fd)
        self._keep.clear()
        if self._stderr is not None:  # the runtime failed: its words stay out of the FIFO
            for fd in self._stderr:
                if fd >= 0:
                    os.close(fd)
            self._stderr = None

    async def close(self) -> None:
        if self._stderr_copy is not None:
            await self._stderr_copy.stop()
        self._close_fds()


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


class ConsoleIO:
    """A pty master wired to the stdin/stdout FIFOs."""

    def __init__(self, stdin: str, stdout: str) -> None:
        self.master = -1
        self._in = -1
        self._stdin_keep = -1
        self._out: tuple[int, int] | None = None  # (FIFO keep, FIFO write) until the copy owns them
        self._in_copy: Copy | None = None
        self._out_copy: Copy | None = None
        try:
            if stdin:
                self._in, self._stdin_keep = _open_fifo_pair_for_read(stdin)
                os.set_blocking(self._in, False)
            if stdout:
                self._out = _open_fifo_pair_for_write(stdout)
                os.set_blocking(self._out[1], False)
        except BaseException:
            self._close_fds()
            raise

    def child_fds(self) -> dict[int, int]:
        return {}

    def started(self) -> None:
        pass

    def attach(self, master: int) -> None:
        self.master = master
        os.set_blocking(master, False)
        if self._in >= 0:
            self._in_copy = Copy(self._in, master, owned=(self._in,))
            self._in = -1
        if self._out is not None:
            self._out_copy = Copy(master, self._out[1], owned=self._out)
            self._out = None

    def resize(self, width: int, height: int) -> None:
        if self.master >= 0:
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def close_stdin(self) -> None:
        if self._stdin_keep >= 0:
            os.close(self._stdin_keep)
            self._stdin_keep = -1

    async def drain(self, timeout: float = 2.0) -> None:
        """The process exited: copy what is still in the pty to stdout, then
        close stdout, before the exit is reported.

        containerd shuts the console down when a process exits
        (pkg/process ``setExited`` -> ``ShutdownConsole``), which ends
        ``CopyConsole``'s copy, which closes its stdout FIFO ends.  The
        client then reads the last output and EOF: dockerd, after
        /tasks/exit, waits up to 2 s for that EOF and then closes the FIFO
        under its own reader ("stream copy error: ... file already closed").
        """
        if self._out_copy is not None:
            await self._out_copy.flush(timeout)
            await self._out_copy.stop()

    def _close_fds(self) -> None:
        self.close_stdin()
        for fd in (self._in, *(self._out or ())):
            if fd >= 0:
                os.close(fd)
        self._in = -1
        self._out = None
        if self.master >= 0:
            os.close(self.master)
            self.master = -1

    async def close(self) -> None:
        for copy in (self._in_copy, self._out_copy):
            if copy is not None:
                await copy.stop()
        self._close_fds()
