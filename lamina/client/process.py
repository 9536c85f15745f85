"""Running a container's task or an exec process with the caller's stdio, as ``ctr`` does.

The order is ``ctr``'s (``cmd/ctr/commands/run``, ``tasks/exec.go``): FIFOs
and our read ends first; Tasks.Create (rootfs = Snapshots.Mounts of the
container's key) or Tasks.Exec; then Wait and Start issued together, so that
an exit right after Start is never missed.  With a terminal the caller's
terminal goes raw and its size follows SIGWINCH (ResizePty); without one the
signals the caller gets are forwarded with Tasks.Kill.  When Wait returns,
the output still in flight is drained, then the process is deleted and its
FIFOs removed.  ``detach`` returns right after Start and leaves the FIFOs for
the ``task delete`` / ``containers rm`` that follows, as ``ctr run -d``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import termios
import tty
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lamina.client import cio

if TYPE_CHECKING:
    from lamina.client.client import Client
    from lamina.client.containers import Container

FORWARDED_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


@dataclass(frozen=True, slots=True, kw_only=True)
class Stdio:
    """The caller's side: file descriptors to copy from and to; ``stdin`` None for none."""

    stdin: int | None = 0
    stdout: int = 1
    stderr: int = 2


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """The caller's terminal in raw mode for the block (``console.SetRaw``), if it is one."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _size(fd: int) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return 0, 0
    return size.columns, size.lines


class _Session:
    """Signal handlers and pty resizing for one process, removed on exit."""

    def __init__(self, client: Client, container_id: str, exec_id: str, terminal: bool, console: int) -> None:
        self._client, self._id, self._exec_id = client, container_id, exec_id
        self._terminal, self._console = terminal, console
        self._installed: list[int] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _quiet(self, coroutine: Any) -> None:
        with contextlib.suppress(Exception):
            await coroutine

    def _resize(self) -> None:
        width, height = _size(self._console)
        self._spawn(self._quiet(self._client.tasks.resize_pty(self._id, width, height, exec_id=self._exec_id)))

    def _forward(self, signum: int) -> None:
        self._spawn(self._quiet(self._client.tasks.kill(self._id, signum, exec_id=self._exec_id)))

    async def started(self) -> None:
        """The first ResizePty, once the process runs (ctr's ``HandleConsoleResize``)."""
        if self._terminal:
            await self._quiet(self._client.tasks.resize_pty(self._id, *_size(self._console), exec_id=self._exec_id))

    async def __aenter__(self) -> _Session:
        """Handlers go in before Start: a signal that comes once output flows must not kill us."""
        loop = asyncio.get_running_loop()
        if self._terminal:
            loop.add_signal_handler(signal.SIGWINCH, self._resize)
            self._installed.append(signal.SIGWINCH)
        else:
            for signum in FORWARDED_SIGNALS:
                loop.add_signal_handler(signum, self._forward, signum)
                self._installed.append(signum)
        return self

    async def __aexit__(self, *exc: object) -> None:
        loop = asyncio.get_running_loop()
        for signum in self._installed:
            loop.remove_signal_handler(signum)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=1)


async def _wait_and_start(client: Client, container_id: str, exec_id: str) -> asyncio.Task[Any]:
    """Issue Wait and Start together (Wait first, as containerd's client); Start errors raise."""
    waiting = asyncio.ensure_future(client.tasks.wait(container_id, exec_id))
    await asyncio.sleep(0)  # let Wait go out first
    try:
        await client.tasks.start(container_id, exec_id)
    except BaseException:
        waiting.cancel()
        raise
    return waiting


async def run_task(client: Client, container: Container, *, detach: bool = False, null_io: bool = False,
                   stdio: Stdio = Stdio()) -> int:
    """Create and start ``container``'s task; unless detached, wait, delete it and return its exit status."""
    terminal = bool((container.spec.get("process") or {}).get("terminal"))
    fifos = None if null_io else cio.new_fifos(container.id, terminal=terminal, stdin=stdio.stdin is not None)
    attachment = None if fifos is None else cio.Attachment(fifos, stdin=stdio.stdin, stdout=stdio.stdout,
                                                           stderr=stdio.stderr)
    try:
        with raw_terminal(stdio.stdin) if terminal and stdio.stdin is not None and not detach \
                else contextlib.nullcontext():
            rootfs = await client.snapshots.mounts(container.snapshot_key, snapshotter=container.snapshotter) \
                if container.snapshot_key else ()
            paths = fifos or cio.FIFOSet(dir="")
            await client.tasks.create(container.id, rootfs=rootfs, terminal=terminal, stdin=paths.stdin,
                                      stdout=paths.stdout, stderr=paths.stderr)
            if detach:
                await client.tasks.start(container.id)
                return 0
            return await _follow(client, container.id, "", attachment, terminal, stdio)
    finally:
        if attachment is not None:
            attachment.close()
        if not detach:
            cio.remove(fifos)


async def _follow(client: Client, container_id: str, exec_id: str, attachment: cio.Attachment | None,
                  terminal: bool, stdio: Stdio) -> int:
    if attachment is not None:
        attachment.start(lambda: client.tasks.close_io(container_id, exec_id=exec_id))
    async with _Session(client, container_id, exec_id, terminal, stdio.stdout) as session:
        waiting = await _wait_and_start(client, container_id, exec_id)
        await session.started()
        status = await waiting
    if attachment is not None:
        await attachment.drain()
        attachment.close()
    if exec_id:
        await client.tasks.delete_process(container_id, exec_id)
    else:
        await client.tasks.get(container_id)
        await client.tasks.delete(container_id)
    return status.exit_status


async def exec_process(client: Client, container_id: str, exec_id: str, args: list[str], *,
                       terminal: bool = False, cwd: str = "", env: list[str] | None = None,
                       detach: bool = False, stdio: Stdio = Stdio()) -> int:
    """``ctr tasks exec``: the container's process spec with ``args``; returns the exit status.

    Unlike ``ctr``, a detached exec gets no stdio at all rather than FIFOs that nobody removes.
    """
    container = await client.containers.get(container_id)
    await client.tasks.get(container_id)
    process = dict(container.spec.get("process") or {})
    process["terminal"] = terminal
    process["args"] = list(args)
    if cwd:
        process["cwd"] = cwd
    if env:
        from lamina.client.spec import replace_or_append_env

        process["env"] = replace_or_append_env(process.get("env", []), env)
    if detach:  # no stdio: FIFOs would outlive us with nobody left to remove them
        await client.tasks.exec(container_id, exec_id, process, terminal=terminal)
        await client.tasks.start(container_id, exec_id)
        return 0
    fifos = cio.new_fifos(exec_id, terminal=terminal, stdin=stdio.stdin is not None)
    attachment = cio.Attachment(fifos, stdin=stdio.stdin, stdout=stdio.stdout, stderr=stdio.stderr)
    try:
        with raw_terminal(stdio.stdin) if terminal and stdio.stdin is not None else contextlib.nullcontext():
            await client.tasks.exec(container_id, exec_id, process, stdin=fifos.stdin, stdout=fifos.stdout,
                                    stderr=fifos.stderr, terminal=terminal)
            return await _follow(client, container_id, exec_id, attachment, terminal, stdio)
    finally:
        attachment.close()
        cio.remove(fifos)


async def attach(client: Client, container_id: str, *, stdio: Stdio = Stdio()) -> int:
    """``ctr tasks attach``: copy the running task's FIFOs to the caller until it exits, then delete it."""
    container = await client.containers.get(container_id)
    task = await client.tasks.get(container_id)
    terminal = bool((container.spec.get("process") or {}).get("terminal"))
    fifos = cio.FIFOSet(dir="", stdin=task.stdin, stdout=task.stdout, stderr=task.stderr, terminal=terminal)
    attachment = cio.Attachment(fifos, stdin=stdio.stdin, stdout=stdio.stdout, stderr=stdio.stderr)
    try:
        with raw_terminal(stdio.stdin) if terminal and stdio.stdin is not None else contextlib.nullcontext():
            attachment.start()  # no CloseIO: other clients may still write to the task's stdin
            async with _Session(client, container_id, "", terminal, stdio.stdout) as session:
                await session.started()
                status = await client.tasks.wait(container_id)
            await attachment.drain()
    finally:
        attachment.close()
    from lamina.client.run import delete_task

    await delete_task(client, container_id)
    return status.exit_status


def default_stdio() -> Stdio:
    """The process's own stdin, stdout and stderr; no stdin when it is closed."""
    try:
        os.fstat(sys.stdin.fileno())
    except (OSError, ValueError, AttributeError):
        return Stdio(stdin=None)
    return Stdio()
