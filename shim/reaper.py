"""Child reaping for a subreaper: every exit is collected here, exactly once.

The shim is the child subreaper (``PR_SET_CHILD_SUBREAPER``, as shim.go's
``subreaper()``), so container processes whose ``runc create``/``runc exec``
parent has gone are re-parented to it.  One SIGCHLD handler on the event loop
reaps with ``waitpid(-1, WNOHANG)`` and hands each exit either to the command
waiting for that pid (runc invocations started by ``spawn``) or to the
``on_exit`` callback (container processes), as containerd's sys/reaper does.

asyncio's own subprocess support cannot be used: its child watcher would
race this handler for the same exits.  Commands are started with
``posix_spawn`` instead, and registered before the loop can run the handler,
so their exit is never mistaken for a container process's.

Exit statuses follow containerd: the exit code, or 128 + signal number.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
from collections.abc import Callable, Mapping, Sequence

PR_SET_CHILD_SUBREAPER = 36

# Python ignores these; commands must start with the default disposition.
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)


def set_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def exit_status(wait_status: int) -> int:
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    if os.WIFEXITED(wait_status):
        return os.WEXITSTATUS(wait_status)
    return 255


class Reaper:
    def __init__(self, on_exit: Callable[[int, int], None]) -> None:
        self._on_exit = on_exit
        self._commands: dict[int, asyncio.Future[int]] = {}

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_signal_handler(signal.SIGCHLD, self.reap)
        self.reap()  # anything that exited before the handler was installed

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = exit_status(status)
            waiter = self._commands.pop(pid, None)
            if waiter is not None:
                if not waiter.done():
                    waiter.set_result(code)
            else:
                self._on_exit(pid, code)

    def spawn(
        self,
        argv: Sequence[str],
        *,
        fds: Mapping[int, int] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> tuple[int, asyncio.Future[int]]:
        """Start ``argv`` with ``fds`` mapped as {child fd: our fd}; unmapped
        stdio is ``/dev/null``.  Returns the pid and a future for its status."""
        actions: list[tuple[int, ...]] = []
        devnull = None
        wanted = dict(fds or {})
        for target in (0, 1, 2):
            if target not in wanted:
                if devnull is None:
                    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                wanted[target] = devnull
        # dup2(fd, fd) would keep O_CLOEXEC; go through fresh descriptors first.
        staged = {target: os.dup(fd) for target, fd in wanted.items()}
        try:
            for target, fd in staged.items():
                actions.append((os.POSIX_SPAWN_DUP2, fd, target))
            pid = os.posix_spawnp(
                argv[0],
                list(argv),
                dict(os.environ if env is None else env),
                file_actions=actions,
                setsigdef=_DEFAULT_SIGNALS,
                setsigmask=(),
            )
        finally:
            for fd in staged.values():
                os.close(fd)
            if devnull is not None:
                os.close(devnull)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._commands[pid] = future
        return pid, future
