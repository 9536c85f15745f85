"""ExecSync: a command run in a running container through the task's Exec, its output collected whole.

containerd 1.6's ``execInternal`` (``pkg/cri/server/container_execsync.go``):
the container's own process spec with the command's args and no terminal,
stdout and stderr through FIFOs, then wait for the exit.  When the timeout
passes first the process is killed and the call fails with "timeout ...
exceeded" (DEADLINE_EXCEEDED).  Output past ``MAX_OUTPUT`` per stream is
dropped, as containerd caps it, so a chatty command cannot fill the
daemon's memory.  The FIFOs are read in worker threads, off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import select
import shutil
import signal
from collections.abc import Mapping
from typing import Any

from lamina.client.tasks import PROCESS_TYPE_URL
from lamina.core.errors import LaminaError, NotFound
from lamina.core.metadata.containers import AnyValue
from lamina.plugins.cri.container_logs import open_fifo
from lamina.plugins.cri.containers import ExecResult
from lamina.plugins.runtime_v2.manager import TaskManager
from lamina.plugins.runtime_v2.shim import IO

MAX_OUTPUT = 16 << 20
KILL_WAIT = 10.0


def _collect(fd: int, wake: int) -> bytes:
    """A FIFO's bytes up to its EOF (a writer came and went) or until ``wake`` is readable."""
    out = bytearray()
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    poller.register(wake, select.POLLIN)
    while True:
        events = dict(poller.poll())
        if wake in events and fd not in events:
            return bytes(out)
        data = os.read(fd, 65536) if fd in events else b""
        if not data:
            return bytes(out)
        if len(out) < MAX_OUTPUT:
            out += data[:MAX_OUTPUT - len(out)]


async def exec_sync(tasks: TaskManager, namespace: str, container_id: str, *, process: Mapping[str, Any],
                    cmd: list[str], timeout: float, work_dir: str) -> ExecResult:
    task = tasks.get(namespace, container_id)
    exec_id = secrets.token_hex(8)
    fifo_dir = os.path.join(work_dir, f"exec-{exec_id}")
    os.makedirs(fifo_dir, mode=0o700)
    paths = {name: os.path.join(fifo_dir, name) for name in ("stdout", "stderr")}
    for path in paths.values():
        os.mkfifo(path, 0o600)
    fds = {name: open_fifo(path) for name, path in paths.items()}
    wake_r, wake_w = os.pipe2(os.O_CLOEXEC)
    readers = {name: asyncio.ensure_future(asyncio.to_thread(_collect, fd, wake_r)) for name, fd in fds.items()}
    spec = {**process, "args": list(cmd), "terminal": False}
    started = False
    try:
        await task.exec(exec_id, spec=AnyValue(type_url=PROCESS_TYPE_URL, value=json.dumps(spec).encode()),
                        io=IO(stdout=paths["stdout"], stderr=paths["stderr"]))
        await task.start(exec_id)
        started = True
        try:
            async with asyncio.timeout(timeout or None):
                exit_ = await task.wait(exec_id)
        except TimeoutError:
            with contextlib.suppress(LaminaError):
                await task.kill(signal.SIGKILL, exec_id=exec_id)
                async with asyncio.timeout(KILL_WAIT):
                    await task.wait(exec_id)
            raise TimeoutError(f"failed to exec in container: timeout {timeout:g}s exceeded: "
                               "context deadline exceeded") from None
        async with asyncio.timeout(KILL_WAIT):
            stdout, stderr = await readers["stdout"], await readers["stderr"]
        return ExecResult(stdout=stdout, stderr=stderr, exit_code=exit_.status)
    finally:
        os.write(wake_w, b"x")
        await asyncio.gather(*readers.values(), return_exceptions=True)
        for fd in (*fds.values(), wake_r, wake_w):
            os.close(fd)
        if started:
            with contextlib.suppress(NotFound, LaminaError):
                await tasks.delete(namespace, container_id, exec_id=exec_id)
        shutil.rmtree(fifo_dir, ignore_errors=True)
