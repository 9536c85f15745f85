"""Running a shim binary's ``start`` and ``delete`` actions.

The command line, environment and working directory are containerd's
(runtime/v2/shim/util.go ``Command``): ``-namespace NS -address GRPC
-publish-binary SELF [-id ID [-debug] start | -id ID -bundle PATH delete]``,
``TTRPC_ADDRESS`` pointing at the daemon's ttrpc events socket, cwd the bundle,
its own process group, and the runtime options (a marshalled ``Any``) on
stdin.  ``start`` prints the address of the long-lived shim it launched;
``delete`` cleans up after a dead shim and prints a ``DeleteResponse``.

Runtime names map to binaries through the plugin config; a name that is not
configured resolves as containerd does (``io.containerd.<x>.<v>`` →
``containerd-shim-<x>-<v>``), and an absolute path is used as is.  A name is
looked up first next to the daemon (the interpreter's bin dir, where pip puts
``containerd-shim-lamina-v2`` beside ``laminad``), then on ``PATH``.
containerd 1.6 also looks beside its own binary (runtime/v2/binary.go
``resolveRuntimePath``), though only after ``PATH``; lamina looks there first
because ``PATH`` may hold wrappers of the same name (pyenv's shims run
``pyenv exec``, 0.3–2 s per start) instead of the scripts themselves.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf import any_pb2

from lamina.api.runtime import task_pb2
from lamina.core.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from lamina.core.metadata.containers import AnyValue
from lamina.plugins.runtime_v2.bundle import Bundle
from lamina.plugins.runtime_v2.zygote import Zygote

START_TIMEOUT = 30.0
DELETE_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Exit:
    pid: int
    status: int
    exited_at_ns: int | None


def binary_name(runtime: str) -> str:
    parts = runtime.split(".")
    if len(parts) < 2 or not all(parts[-2:]):
        raise InvalidArgument(
            f"invalid runtime name {runtime!r}: use a name like 'io.containerd.runc.v2' or an absolute path"
        )
    return f"containerd-shim-{parts[-2]}-{parts[-1]}"


def resolve(runtime: str, runtimes: Mapping[str, str]) -> str:
    """The absolute path of the shim binary for ``runtime``."""
    if not runtime:
        raise InvalidArgument("no runtime name")
    name = runtimes.get(runtime) or runtime
    if os.path.isabs(name):
        if not os.access(name, os.X_OK):
            raise NotFound(f"runtime {runtime!r}: shim binary {name!r} is not an executable file")
        return name
    if runtime not in runtimes:
        name = binary_name(runtime)
    if os.sep not in name:
        for directory in daemon_dirs():
            candidate = os.path.join(directory, name)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
    path = shutil.which(name)
    if path is None:
        raise NotFound(f"runtime {runtime!r}: shim binary {name!r} not installed (not on PATH)")
    return os.path.abspath(path)


def daemon_dirs() -> list[str]:
    """The daemon's bin dirs: the interpreter's, and the ``laminad`` script's."""
    dirs = [os.path.dirname(os.path.abspath(sys.executable))]
    if os.path.isabs(sys.argv[0]) and os.path.dirname(sys.argv[0]) not in dirs:
        dirs.append(os.path.dirname(sys.argv[0]))
    return dirs


def publish_binary() -> str:
    """What shims get as ``-publish-binary``: the daemon's own executable.

    Shims of containerd 1.6 publish through ``TTRPC_ADDRESS`` and only pass
    this on; it is here because their flag parser requires it.
    """
    self = sys.argv[0]
    if os.path.isabs(self) and os.path.exists(self):
        return self
    return shutil.which("laminad") or "laminad"


@dataclass(frozen=True, slots=True, kw_only=True)
class ShimBinary:
    path: str
    bundle: Bundle
    address: str
    ttrpc_address: str
    zygote: Zygote | None = None  # set when ``path`` is lamina's own shim

    def _argv(self, *args: str) -> list[str]:
        return [
            self.path,
            "-namespace", self.bundle.namespace,
            "-address", self.address,
            "-publish-binary", publish_binary(),
            *args,
        ]

    def _env(self) -> dict[str, str]:
        return {**os.environ, "GOMAXPROCS": "2", "TTRPC_ADDRESS": self.ttrpc_address}

    async def _run(self, argv: list[str], stdin: bytes, cwd: str, timeout: float) -> tuple[int, bytes, bytes]:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=self._env(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            process_group=0,
        )
        try:
            async with asyncio.timeout(timeout):
                out, err = await proc.communicate(stdin)
        except (TimeoutError, asyncio.CancelledError):
            proc.kill()
            await proc.wait()
            raise
        assert proc.returncode is not None
        return proc.returncode, out, err

    async def start(self, options: AnyValue | None, *, debug: bool) -> str:
        """Launch the shim; return the ttrpc address it printed (or the zygote
        answered: the same ``start``, forked from a pre-imported process)."""
        args = ["-id", self.bundle.id, *(["-debug"] if debug else []), "start"]
        stdin = b""
        if options is not None:
            stdin = any_pb2.Any(type_url=options.type_url, value=options.value).SerializeToString()
        if self.zygote is not None:
            request = {
                "namespace": self.bundle.namespace, "id": self.bundle.id, "bundle": self.bundle.path,
                "address": self.address, "ttrpc_address": self.ttrpc_address,
                "publish_binary": publish_binary(), "binary": self.path, "debug": debug, "options": stdin.hex(),
            }
            try:
                async with asyncio.timeout(START_TIMEOUT):
                    return await self.zygote.spawn(request)
            except TimeoutError:
                raise FailedPrecondition(f"shim {self.path} start: no address after {START_TIMEOUT}s") from None
            except Unavailable:
                pass  # exec the binary instead
        try:
            rc, out, err = await self._run(self._argv(*args), stdin, self.bundle.path, START_TIMEOUT)
        except TimeoutError:
            raise FailedPrecondition(f"shim {self.path} start: no address after {START_TIMEOUT}s") from None
        address = out.decode(errors="replace").strip()
        if rc != 0 or not address:
            detail = (err or out).decode(errors="replace").strip()
            raise FailedPrecondition(f"start shim {self.path}: exit status {rc}: {detail}")
        return address

    async def delete(self) -> Exit:
        """Run ``<shim> delete`` for a shim that is gone, as containerd does."""
        args = ["-id", self.bundle.id, "-bundle", self.bundle.path, "delete"]
        cwd = self.bundle.path if os.path.isdir(self.bundle.path) else "/"
        rc, out, err = await self._run(self._argv(*args), b"", cwd, DELETE_TIMEOUT)
        if rc != 0:
            raise FailedPrecondition(
                f"shim {self.path} delete: exit status {rc}: {err.decode(errors='replace').strip()}"
            )
        resp = task_pb2.DeleteResponse.FromString(out)
        return Exit(
            pid=resp.pid,
            status=resp.exit_status,
            exited_at_ns=resp.exited_at.ToNanoseconds() if resp.HasField("exited_at") else None,
        )
