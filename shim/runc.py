"""The OCI runtime's command line (runc, crun, or any runc-compatible binary).

Arguments follow go-runc as containerd 1.6 drives it (pkg/process/init.go,
go-runc runc.go): global ``--root <root>/<namespace> --log <bundle>/log.json
--log-format json [--systemd-cgroup]``, then the command.  A failure is
reported with the runtime's last ``error`` line from ``log.json`` when there is
one (pkg/process/utils.go ``getLastRuntimeError``), else its stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Mapping, Sequence

from lamina.core.errors import LaminaError, NotFound
from lamina.shim.reaper import Reaper

DEFAULT_ROOT = "/run/containerd/runc"


class RuntimeError_(LaminaError):  # noqa: N801 - not the builtin
    """The runtime command failed; ``str()`` is its own explanation.

    Reported UNKNOWN, as containerd reports runc's failures, but as a lamina
    error: the user's command or spec caused it, so it is logged without a
    traceback.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message=message)


class Runtime:
    def __init__(self, reaper: Reaper, *, binary: str, root: str, bundle: str,
                 systemd_cgroup: bool = False) -> None:
        self.reaper = reaper
        self.binary = binary or "runc"
        self.root = root
        self.bundle = bundle
        self.log_path = os.path.join(bundle, "log.json")
        self.systemd_cgroup = systemd_cgroup

    def _argv(self, *args: str) -> list[str]:
        argv = [self.binary, "--root", self.root, "--log", self.log_path, "--log-format", "json"]
        if self.systemd_cgroup:
            argv.append("--systemd-cgroup")
        return [*argv, *args]

    async def run(self, *args: str, stdio: Mapping[int, int] | None = None,
                  input: bytes | None = None) -> bytes:
        """Run one command and return its stdout (when ``stdio`` does not
        route stdout elsewhere).  Raises ``RuntimeError_`` on failure."""
        loop = asyncio.get_running_loop()
        fds = dict(stdio or {})
        closers: list[int] = []
        out_r = err_r = in_w = -1
        try:
            if 1 not in fds:
                out_r, out_w = os.pipe()
                fds[1] = out_w
                closers.append(out_w)
            if 2 not in fds:
                err_r, err_w = os.pipe()
                fds[2] = err_w
                closers.append(err_w)
            if input is not None:
                in_r, in_w = os.pipe()
                fds[0] = in_r
                closers.append(in_r)
            _, done = self.reaper.spawn(self._argv(*args), fds=fds)
        finally:
            for fd in closers:
                os.close(fd)
        if input is not None:
            await loop.run_in_executor(None, _write_all, in_w, input)
        out, err = await asyncio.gather(_read_all(out_r), _read_all(err_r))
        status = await done
        if status != 0:
            raise RuntimeError_(self.last_error() or err.decode(errors="replace").strip()
                                or f"{self.binary} {args[0]}: exit status {status}")
        return out

    def last_error(self) -> str:
        """The last ``error`` message the runtime wrote to ``log.json``."""
        message = ""
        with contextlib.suppress(OSError), open(self.log_path, "rb") as f:
            for line in f:
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if entry.get("level") == "error":
                        message = str(entry.get("msg", ""))
        return message

    async def create(self, id: str, *, pid_file: str, console_socket: str = "",
                     stdio: Mapping[int, int] | None = None, no_pivot: bool = False,
                     no_new_keyring: bool = False) -> None:
        args = ["create", "--bundle", self.bundle, "--pid-file", pid_file]
        if console_socket:
            args += ["--console-socket", console_socket]
        if no_pivot:
            args.append("--no-pivot")
        if no_new_keyring:
            args.append("--no-new-keyring")
        await self.run(*args, id, stdio=stdio or {0: _null(), 1: _null(), 2: _null()})

    async def exec(self, id: str, process_json: str, *, pid_file: str, console_socket: str = "",
                   stdio: Mapping[int, int] | None = None) -> None:
        args = ["exec", "--process", process_json, "--detach", "--pid-file", pid_file]
        if console_socket:
            args += ["--console-socket", console_socket]
        await self.run(*args, id, stdio=stdio or {0: _null(), 1: _null(), 2: _null()})

    async def start(self, id: str) -> None:
        await self.run("start", id)

    async def delete(self, id: str, *, force: bool = False) -> None:
        await self.run("delete", *(["--force"] if force else []), id)

    async def kill(self, id: str, signal: int, *, all: bool = False) -> None:
        await self.run("kill", *(["--all"] if all else []), id, str(signal))

    async def pause(self, id: str) -> None:
        await self.run("pause", id)

    async def resume(self, id: str) -> None:
        await self.run("resume", id)

    async def ps(self, id: str) -> list[int]:
        out = await self.run("ps", "--format", "json", id)
        return [int(p) for p in json.loads(out or b"[]") or []]

    async def update(self, id: str, resources_json: bytes) -> None:
        await self.run("update", "--resources", "-", id, input=resources_json)

    async def checkpoint(self, id: str, args: Sequence[str]) -> None:
        await self.run("checkpoint", *args, id)


_NULL_FD = -1


def _null() -> int:
    """A shared ``/dev/null`` descriptor for commands with no stdio."""
    global _NULL_FD
    if _NULL_FD < 0:
        _NULL_FD = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    return _NULL_FD


def _write_all(fd: int, data: bytes) -> None:
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BrokenPipeError:
        pass
    finally:
        os.close(fd)


async def _read_all(fd: int) -> bytes:
    """Read a pipe to EOF without blocking the loop."""
    if fd < 0:
        return b""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    chunks: list[bytes] = []
    ready = asyncio.Event()
    loop.add_reader(fd, ready.set)
    try:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                ready.clear()
                await ready.wait()
                continue
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def check_kill_error(message: str) -> Exception:
    """Map a kill failure as pkg/process/utils.go ``checkKillError`` does."""
    lowered = message.lower()
    if "process already finished" in lowered or "container not running" in lowered \
            or "no such process" in lowered or "not running" in lowered:
        return NotFound("process already finished")
    if "does not exist" in lowered:
        return NotFound("no such container")
    return RuntimeError_(f"unknown error after kill: {message}")
