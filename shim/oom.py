"""OOM kills in a container's cgroup, as /tasks/oom events: one per kill.

cgroup v1 only (containerd pkg/oom/v1): an eventfd armed through
``cgroup.event_control`` on ``memory.oom_control``.  The eventfd also fires
when the cgroup is removed; that ends the watch quietly.

The kernel signals the eventfd each time a charge enters the OOM path, which
happens more than once per kill when several tasks allocate (or one retries)
while the victim dies, and before it has chosen (or killed) anyone.  So the
signal only says "look": ``notify`` runs once per kill the ``oom_kill``
counter shows.  The counter grows after the signal, with no signal of its
own, so it is read again shortly after each signal, and ``check`` lets the
task service read it before it reports the init's exit (the victim dies
after the counter grew, so the kill is published before that exit, as
containerd's signal-driven event is).  containerd's cgroup v2 watcher goes
by the same counter (it publishes when ``memory.events`` ``oom_kill`` grew,
pkg/oom/v2), so with the OOM killer disabled nothing is published there
either.  A kernel without the counter (before 4.13) gets one call per signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

from lamina.shim.cgroups import Cgroup, read_kv

# When to read the counter again after a signal (seconds): the kill follows
# the signal once the kernel has picked a victim and logged the OOM report.
_RECHECKS = (0.01, 0.1, 1.0)


class OOMWatcher:
    def __init__(self, efd: int, control: int, memory_dir: str, notify: Callable[[], None]) -> None:
        self._efd = efd
        self._control = control
        self._dir = memory_dir
        self._notify = notify
        self._kills = 0
        asyncio.get_running_loop().add_reader(efd, self._ready)

    @classmethod
    def start(cls, cgroup: Cgroup, notify: Callable[[], None]) -> OOMWatcher | None:
        memory_dir = cgroup.controller_dir("memory")
        try:
            control = os.open(f"{memory_dir}/memory.oom_control", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        try:
            with open(f"{memory_dir}/cgroup.event_control", "w") as f:
                f.write(f"{efd} {control}")
        except OSError:
            os.close(efd)
            os.close(control)
            return None
        return cls(efd, control, memory_dir, notify)

    def _ready(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._efd)
        control = read_kv(f"{self._dir}/memory.oom_control")
        if not control:  # the cgroup is gone
            self.stop()
        elif "oom_kill" not in control:
            self._notify()
        else:
            self._killed(control["oom_kill"])
            loop = asyncio.get_running_loop()
            for delay in _RECHECKS:
                loop.call_later(delay, self.check)

    def check(self) -> None:
        """Notify once for each kill the counter shows that was not notified yet."""
        if self._efd >= 0:
            self._killed(read_kv(f"{self._dir}/memory.oom_control").get("oom_kill", 0))

    def _killed(self, kills: int) -> None:
        for _ in range(kills - self._kills):
            self._notify()
        self._kills = max(kills, self._kills)

    def stop(self) -> None:
        if self._efd < 0:
            return
        asyncio.get_running_loop().remove_reader(self._efd)
        os.close(self._efd)
        os.close(self._control)
        self._efd = -1
