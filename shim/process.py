"""A container's processes: its init and the processes exec'd into it.

The state rules are containerd's pkg/process (init_state.go, exec_state.go):
created -> running <-> paused -> stopped -> deleted.  Starting twice, pausing
a created task, deleting a running or paused one, exec into a paused one are
refused (FailedPrecondition here; containerd answers those with UNKNOWN and
the same words).  Killing a finished process is NotFound "process already
finished".  An exec'd process is signalled directly, its init through the
runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from lamina.core.errors import FailedPrecondition, NotFound
from lamina.shim.io import ConsoleIO, ConsoleSocket, PipeIO
from lamina.shim.runc import Runtime, RuntimeError_, check_kill_error

# Runs the runtime with (console socket path or "", {child fd: our fd}).
RuntimeCall = Callable[[str, dict[int, int]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Stdio:
    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False


class Process:
    def __init__(self, id: str, stdio: Stdio) -> None:
        self.id = id
        self.stdio = stdio
        self.pid = 0
        self.state = "created"
        self.exit_status = 0
        self.exited_at_ns = 0
        self.exited = asyncio.Event()
        self.exit_claimed = False  # an exit is being reported (exactly once)
        self.spawn_seq = 0  # reaper sequence number when the runtime was run
        self.io: PipeIO | ConsoleIO | None = None

    def status(self) -> str:
        return self.state

    def set_exited(self, status: int) -> None:
        self.exit_status = status
        self.exited_at_ns = time.time_ns()
        if self.state != "deleted":
            self.state = "stopped"
        self.exited.set()

    def resize(self, width: int, height: int) -> None:
        if isinstance(self.io, ConsoleIO):
            self.io.resize(width, height)

    def close_stdin(self) -> None:
        if self.io is not None:
            self.io.close_stdin()

    async def close_io(self) -> None:
        if self.io is not None:
            await self.io.close()

    async def _start_io(self, runtime_call: RuntimeCall) -> None:
        """Open stdio, run the runtime command, hand over the pty if any."""
        console = None
        try:
            if self.stdio.terminal:
                self.io = ConsoleIO(self.stdio.stdin, self.stdio.stdout)
                console = ConsoleSocket()
                await runtime_call(console.path, {})
                self.io.attach(await console.receive_master())
            else:
                self.io = PipeIO(self.stdio.stdin, self.stdio.stdout, self.stdio.stderr)
                try:
                    await runtime_call("", self.io.child_fds())
                finally:
                    self.io.started()
                self.io.copy()
        except BaseException:
            await self.close_io()
            raise
        finally:
            if console is not None:
                console.close()


def _read_pid(path: str) -> int:
    with open(path) as f:
        return int(f.read().strip())


class Init(Process):
    def __init__(self, id: str, bundle: str, runtime: Runtime, stdio: Stdio, *,
                 rootfs: str = "", no_pivot: bool = False, no_new_keyring: bool = False) -> None:
        super().__init__(id, stdio)
        self.bundle = bundle
        self.runtime = runtime
        self.rootfs = rootfs
        self.no_pivot = no_pivot
        self.no_new_keyring = no_new_keyring
        self.pausing = False

    def status(self) -> str:
        return "pausing" if self.pausing else self.state

    async def create(self) -> None:
        pid_file = os.path.join(self.bundle, "init.pid")

        async def call(console_socket: str, stdio: dict[int, int]) -> None:
            try:
                await self.runtime.create(self.id, pid_file=pid_file, console_socket=console_socket,
                                          stdio=stdio or None, no_pivot=self.no_pivot,
                                          no_new_keyring=self.no_new_keyring)
            except RuntimeError_ as exc:
                raise RuntimeError_(f"OCI runtime create failed: {exc}") from None

        await self._start_io(call)
        self.pid = _read_pid(pid_file)

    async def start(self) -> None:
        if self.state != "created":
            raise FailedPrecondition(f"cannot start a {self.state} process")
        try:
            await self.runtime.start(self.id)
        except RuntimeError_ as exc:
            raise RuntimeError_(f"OCI runtime start failed: {exc}") from None
        if self.state == "created":
            self.state = "running"

    async def delete(self) -> None:
        if self.state in ("running", "paused"):
            raise FailedPrecondition(f"cannot delete a {self.state} process")
        if self.state == "deleted":
            raise NotFound(f"process {self.id}")
        error: Exception | None = None
        try:
            await self.runtime.delete(self.id, force=self.state == "created")
        except RuntimeError_ as exc:
            if "does not exist" not in str(exc):
                error = RuntimeError_(f"failed to delete task: {exc}")
        self.state = "deleted"
        await self.close_io()
        if self.rootfs:
            from lamina.core.mount_ops import unmount_all

            try:
                unmount_all(self.rootfs)
            except OSError as exc:
                error = error or RuntimeError_(f"failed rootfs umount: {exc}")
        if error is not None:
            raise error

    async def kill(self, signal: int, all: bool) -> None:
        try:
            await self.runtime.kill(self.id, signal, all=all)
        except RuntimeError_ as exc:
            raise check_kill_error(str(exc)) from None

    async def pause(self) -> None:
        if self.state != "running":
            raise FailedPrecondition(f"cannot pause a {self.state} container")
        self.pausing = True
        try:
            await self.runtime.pause(self.id)
        except RuntimeError_ as exc:
            raise RuntimeError_(f"OCI runtime pause failed: {exc}") from None
        finally:
            self.pausing = False
        if self.state == "running":
            self.state = "paused"

    async def resume(self) -> None:
        if self.state != "paused":
            raise FailedPrecondition(f"cannot resume a {self.state} container")
        try:
            await self.runtime.resume(self.id)
        except RuntimeError_ as exc:
            raise RuntimeError_(f"OCI runtime resume failed: {exc}") from None
        if self.state == "paused":
            self.state = "running"

    async def update(self, resources_json: bytes) -> None:
        if self.state in ("stopped", "deleted"):
            raise FailedPrecondition("cannot update a stopped container")
        await self.runtime.update(self.id, resources_json)

    async def checkpoint(self, args: list[str]) -> None:
        if self.state not in ("running", "paused"):
            raise FailedPrecondition(f"cannot checkpoint a task in {self.state} state")
        await self.runtime.checkpoint(self.id, args)

    def set_exited(self, status: int) -> None:
        was_paused = self.state == "paused"
        super().set_exited(status)
        if was_paused:  # as pausedState.SetExited: thaw what is left
            asyncio.get_running_loop().create_task(self._resume_quietly())

    async def _resume_quietly(self) -> None:
        with contextlib.suppress(RuntimeError_):
            await self.runtime.resume(self.id)


class Exec(Process):
    def __init__(self, id: str, parent: Init, stdio: Stdio, spec: bytes) -> None:
        super().__init__(id, stdio)
        self.parent = parent
        self.spec = spec
        self.pid_file = os.path.join(parent.bundle, f"{id}.pid")

    def status(self) -> str:
        parent = self.parent.status()
        if parent in ("paused", "pausing"):
            return parent
        return self.state

    async def start(self) -> None:
        if self.state != "created":
            raise FailedPrecondition(f"cannot start a {self.state} process")
        if self.parent.status() in ("paused", "pausing"):
            raise FailedPrecondition("cannot exec in a paused state")
        spec = json.loads(self.spec)
        spec["terminal"] = self.stdio.terminal
        fd, spec_path = tempfile.mkstemp(prefix=".exec-", suffix=".json", dir=self.parent.bundle)
        with os.fdopen(fd, "w") as f:
            json.dump(spec, f)

        async def call(console_socket: str, stdio: dict[int, int]) -> None:
            try:
                await self.parent.runtime.exec(self.parent.id, spec_path, pid_file=self.pid_file,
                                               console_socket=console_socket, stdio=stdio or None)
            except RuntimeError_ as exc:
                self.state = "stopped"
                self.exited.set()
                raise RuntimeError_(f"OCI runtime exec failed: {exc}") from None

        try:
            await self._start_io(call)
        finally:
            os.unlink(spec_path)
        self.pid = _read_pid(self.pid_file)
        if self.state == "created":
            self.state = "running"

    async def delete(self) -> None:
        if self.state == "running":
            raise FailedPrecondition("cannot delete a running process")
        self.state = "deleted"
        await self.close_io()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.pid_file)

    async def kill(self, signal: int, all: bool) -> None:
        if self.pid == 0:
            raise FailedPrecondition("process not created")
        if self.exited.is_set() or self.exit_claimed:
            raise NotFound("process already finished")
        try:
            os.kill(self.pid, signal)
        except ProcessLookupError:
            raise NotFound("exec kill error: process already finished") from None
