"""The restart monitor (``io.containerd.internal.v1.restart``): keeps labelled containers' tasks
in the status their label asks for.

As containerd 1.6's ``runtime/restart/monitor``: every ``interval`` (``"10s"``; ``"0"`` means
the default) it looks at the containers of every namespace that carry
``containerd.io/restart.status``, and, all at once:

- ``running`` with no task, or a stopped one: the old task goes (killed, waited for,
  deleted) and a new one is created and started, its stdout and stderr going to
  ``containerd.io/restart.loguri`` (passed to the shim as is, like ``cio.LogURI``), else to
  the deprecated ``containerd.io/restart.logpath`` (made if missing, like ``cio.LogFile``),
  else nowhere (``cio.NullIO``);
- ``stopped`` with a task in any state: it is killed with SIGKILL (all its processes),
  waited for and deleted.

Removing the label ends the monitoring.  containerd 1.6 has no restart policy or count
(``containerd.io/restart.policy`` and ``.count`` came with 1.7), so neither has lamina.

Two departures close races containerd 1.6 has with clients:

- With ``running``, a created, paused or pausing task is left alone: 1.6 kills and
  recreates it, which kills a task between a client's create and start (``ctr run -d``)
  and restarts every paused container (containerd issue #8095, fixed in 1.7 by PR #7951).
- A container is left to its creator for one interval after it was created: a client
  that creates a container and then its task (``ctr run -d --label ...``) would otherwise
  find the monitor's task there first and fail with AlreadyExists.

The monitor is one asyncio task, started once the daemon serves.  It calls the container
store, snapshotters and task manager in-process, as the CRI plugin does; the scan of the
container store runs in a thread, so neither it nor a slow change holds up the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass

from lamina.core.errors import InvalidArgument, LaminaError, NotFound
from lamina.core.gc_scheduler import parse_duration
from lamina.core.log import get_logger
from lamina.core.metadata import Database
from lamina.core.metadata.containers import Container, ContainerStore
from lamina.core.metadata.namespaces import NamespaceStore
from lamina.core.metadata.snapshots import SnapshotStore
from lamina.core.registry import InitContext, Registration, Registry
from lamina.plugins import hookimpl
from lamina.plugins.metadata import METADATA_PLUGIN
from lamina.plugins.runtime_v2.manager import TaskManager
from lamina.plugins.runtime_v2.plugin import RUNTIME_PLUGIN
from lamina.plugins.runtime_v2.shim import IO, Status
from lamina.plugins.snapshotters import SERVICE_PLUGIN, SNAPSHOTS_SERVICE

log = get_logger()

INTERNAL_PLUGIN = "io.containerd.internal.v1"
STATUS_LABEL = "containerd.io/restart.status"
LOG_URI_LABEL = "containerd.io/restart.loguri"
LOG_PATH_LABEL = "containerd.io/restart.logpath"  # deprecated in containerd 1.5 for LOG_URI_LABEL
RUNNING = "running"
STOPPED = "stopped"
DEFAULT_INTERVAL = 10.0
KILL_TIMEOUT = 30.0  # for a task to exit after SIGKILL

# With "running", only these need a new task; see the module docstring.
_RESTARTABLE = frozenset({None, Status.STOPPED, Status.UNKNOWN})


@dataclass(kw_only=True)
class RestartConfig:
    """containerd's ``[plugins."io.containerd.internal.v1.restart"]``."""

    interval: str = "10s"  # a Go duration


class RestartMonitor:
    def __init__(self, *, interval: float, db: Database, snapshots: Mapping[str, SnapshotStore],
                 tasks: TaskManager) -> None:
        self._interval = interval
        self._namespaces = NamespaceStore(db)
        self._containers = ContainerStore(db)
        self._snapshots = snapshots
        self._tasks = tasks
        self._task: asyncio.Task[None] | None = None

    def start_when_serving(self, serving: asyncio.Event) -> None:
        self._task = asyncio.create_task(self._run(serving))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self, serving: asyncio.Event) -> None:
        await serving.wait()
        log.info("restart monitor started", interval=self._interval)
        while True:
            try:
                await self.reconcile()
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                log.error("restart monitor reconcile", error=str(exc))
            await asyncio.sleep(self._interval)

    async def reconcile(self) -> None:
        """One round: every namespace's labelled containers towards their status, concurrently."""
        labelled = await asyncio.to_thread(self._labelled, time.time_ns() - int(self._interval * 1e9))
        await asyncio.gather(*(self._apply(ns, c) for ns, c in labelled))

    def _labelled(self, created_before_ns: int) -> list[tuple[str, Container]]:
        return [(ns.name, c) for ns in self._namespaces.list()
                for c in self._containers.list(ns.name, [f'labels."{STATUS_LABEL}"'])
                if c.created_at_ns <= created_before_ns]

    async def _status(self, namespace: str, container_id: str) -> Status | None:
        """The task's status; None without a task, UNKNOWN when its shim does not answer."""
        try:
            task = self._tasks.get(namespace, container_id)
        except NotFound:
            return None
        try:
            return (await task.state()).status
        except LaminaError:
            return Status.UNKNOWN

    async def _apply(self, namespace: str, container: Container) -> None:
        desired = container.labels.get(STATUS_LABEL, "")
        try:
            status = await self._status(namespace, container.id)
            if desired == RUNNING and status in _RESTARTABLE:
                await self._restart(namespace, container)
            elif desired == STOPPED and status is not None:
                await self._kill(namespace, container.id)
                log.info("restart monitor stopped task", namespace=namespace, id=container.id)
        except Exception as exc:  # noqa: BLE001 - one container's failure must not end the round
            log.error("restart monitor apply change", namespace=namespace, id=container.id,
                      desired=desired, error=str(exc))

    async def _kill(self, namespace: str, container_id: str) -> None:
        """containerd's ``killTask``: SIGKILL every process, wait for the exit, delete the task.
        A task that cannot be signalled (it exited already) is deleted; if that fails too,
        the signal's error is the one raised."""
        try:
            task = self._tasks.get(namespace, container_id)
        except NotFound:
            return
        try:
            await task.kill(signal.SIGKILL, all_=True)
        except LaminaError:
            with contextlib.suppress(LaminaError):
                await self._tasks.delete(namespace, container_id)
                return
            raise
        async with asyncio.timeout(KILL_TIMEOUT):
            await task.wait()
        await self._tasks.delete(namespace, container_id)

    async def _restart(self, namespace: str, container: Container) -> None:
        io = await asyncio.to_thread(_log_io, container.labels)
        await self._kill(namespace, container.id)
        rootfs = ()
        if container.snapshot_key:
            store = self._snapshots.get(container.snapshotter)
            if store is None:
                raise NotFound(f"snapshotter {container.snapshotter!r}")
            rootfs = await store.mounts(namespace, container.snapshot_key)
        task, _ = await self._tasks.create(namespace, container, rootfs=rootfs, io=io, options=None)
        pid = await task.start()
        log.info("restart monitor started task", namespace=namespace, id=container.id, pid=pid)


def _log_io(labels: Mapping[str, str]) -> IO:
    """Stdout and stderr as the labels ask: ``cio.LogURI``, ``cio.LogFile`` or ``cio.NullIO``."""
    uri, path = labels.get(LOG_URI_LABEL, ""), labels.get(LOG_PATH_LABEL, "")
    if uri:
        if path:
            log.warning("restart log path label is deprecated, using the log uri", logpath=path, loguri=uri)
        return IO(stdout=uri, stderr=uri)
    if not path:
        return IO()
    if not os.path.isabs(path):
        raise InvalidArgument(f"restart log path {path!r} must be absolute")
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644))
    return IO(stdout=path, stderr=path)


def _init(ic: InitContext) -> RestartMonitor:
    config: RestartConfig = ic.config
    monitor = RestartMonitor(interval=parse_duration(config.interval) or DEFAULT_INTERVAL,
                             db=ic.get(METADATA_PLUGIN), snapshots=ic.get(SERVICE_PLUGIN, SNAPSHOTS_SERVICE),
                             tasks=ic.get(RUNTIME_PLUGIN, "task").tasks)
    monitor.start_when_serving(ic.daemon.serving)
    return monitor


@hookimpl
def lamina_register_plugins(registry: Registry) -> None:
    registry.add(Registration(type=INTERNAL_PLUGIN, id="restart",
                              requires=(METADATA_PLUGIN, SERVICE_PLUGIN, RUNTIME_PLUGIN),
                              config=RestartConfig, init=_init))
