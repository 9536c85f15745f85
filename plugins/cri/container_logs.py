"""A container's stdout and stderr into its CRI log file, in the kubelet's format, from the task's FIFOs.

As containerd 1.6's CRI plugin does (``pkg/cri/io/logger.go``), the daemon
reads the FIFOs the shim writes the container's output to and appends each
line to ``<pod log_directory>/<container log_path>`` as
``<RFC3339Nano time> <stdout|stderr> <F|P> <text>``: a line longer than
``max_container_log_line_size`` goes out as parts tagged ``P`` and its end
``F``; what is left when a stream ends counts as a whole line.  One thread
per container polls both FIFOs and writes the file, so the event loop never
touches the output.  ReopenContainerLog reopens the path (the kubelet
renamed the file to rotate it) in the caller's thread, under the lock the
copier writes under, so the new file exists when the call answers, as
containerd's ``pkg/cri/server/container_log_reopen.go`` has it.

Across a daemon restart: the shim keeps a read end of each FIFO open, so the
container never gets EPIPE while no daemon reads; its output waits in the
FIFO (64 KiB, then the container's writes block) and the restarted daemon's
new reader writes it to the same file.  Only what the stopping daemon had
read of a line whose newline had not come yet is lost with it.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
from datetime import UTC, datetime

from lamina.core.log import get_logger

log = get_logger()

READ_SIZE = 65536
STREAMS = ("stdout", "stderr")


def timestamp(now: datetime | None = None) -> str:
    """Go's ``time.RFC3339Nano``: the fraction without trailing zeros, none at all when zero."""
    now = now or datetime.now(tz=UTC)
    nanos = f"{now.microsecond * 1000:09d}".rstrip("0")
    return now.strftime("%Y-%m-%dT%H:%M:%S") + (f".{nanos}" if nanos else "") + "Z"


class LineSplitter:
    """Bytes of one stream in, CRI log lines out (``max_len`` bytes of text at most per line)."""

    def __init__(self, stream: str, max_len: int) -> None:
        self._stream = stream.encode()
        self._max = max_len
        self._buffer = b""

    def _line(self, text: bytes, tag: bytes) -> bytes:
        return b"%s %s %s %s\n" % (timestamp().encode(), self._stream, tag, text)

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        out = []
        while True:
            end = self._buffer.find(b"\n")
            if 0 <= end <= self._max:
                out.append(self._line(self._buffer[:end], b"F"))
                self._buffer = self._buffer[end + 1:]
            elif len(self._buffer) > self._max or end > self._max:
                out.append(self._line(self._buffer[:self._max], b"P"))
                self._buffer = self._buffer[self._max:]
            else:
                return out

    def flush(self) -> list[bytes]:
        """The end of the stream: what is left is a whole line."""
        rest, self._buffer = self._buffer, b""
        return [self._line(rest, b"F")] if rest else []


def open_fifo(path: str) -> int:
    """A non-blocking read end; it sees EOF only after a writer came and went."""
    return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)


class ContainerLogger:
    """The thread copying a container's FIFOs into its log file; it ends when both streams end."""

    def __init__(self, container_id: str, fifos: dict[str, str], log_path: str, max_len: int) -> None:
        self._id = container_id
        self._log_path = log_path
        self._fds = {open_fifo(path): LineSplitter(stream, max_len) for stream, path in fifos.items()}
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._file_lock = threading.Lock()
        self._closing = threading.Event()
        self.done = threading.Event()
        self._file: int | None = None
        self._thread = threading.Thread(target=self._run, name=f"cri-log-{container_id[:12]}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def reopen(self) -> None:
        """Open the log path anew; blocking (run it off the event loop), done when it returns."""
        with self._file_lock:
            if not self.done.is_set():
                self._open_file()

    def close(self) -> None:
        """Stop reading (the container is being removed); what was read is written."""
        self._closing.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"c")

    def _open_file(self) -> None:
        if self._file is not None:
            os.close(self._file)
            self._file = None
        if self._log_path:
            os.makedirs(os.path.dirname(self._log_path), exist_ok=True)
            self._file = os.open(self._log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)

    def _write(self, lines: list[bytes]) -> None:
        with self._file_lock:
            if self._file is not None and lines:
                os.write(self._file, b"".join(lines))

    def _run(self) -> None:
        try:
            with self._file_lock:
                self._open_file()
            self._copy()
        except OSError as exc:
            log.error("container log copy failed", id=self._id, path=self._log_path, error=str(exc))
        finally:
            for fd in (*self._fds, self._wake_r, self._wake_w):
                os.close(fd)
            with self._file_lock:
                if self._file is not None:
                    os.close(self._file)
                    self._file = None
                self.done.set()

    def _copy(self) -> None:
        poller = select.poll()
        for fd in (*self._fds, self._wake_r):
            poller.register(fd, select.POLLIN)
        open_fds = set(self._fds)
        while open_fds and not self._closing.is_set():
            for fd, events in poller.poll():
                if fd == self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 64)
                    continue
                data = os.read(fd, READ_SIZE) if events & (select.POLLIN | select.POLLHUP) else b""
                if data:
                    self._write(self._fds[fd].feed(data))
                elif events & (select.POLLHUP | select.POLLERR):
                    self._write(self._fds[fd].flush())
                    poller.unregister(fd)
                    open_fds.discard(fd)
        for splitter in self._fds.values():
            self._write(splitter.flush())
