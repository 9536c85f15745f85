"""CRI containers on lamina's container store, snapshotter and task manager, in namespace ``k8s.io``.

Follows containerd 1.6's ``pkg/cri/server/container_{create,start,stop,remove,status,list}.go``:

- Create needs a ready pod and the image present; it reserves
  ``<name>_<pod name>_<pod namespace>_<pod uid>_<attempt>`` (a second one
  fails with AlreadyExists naming the holder), prepares the writable
  snapshot, resolves the user in the image and writes the record with the
  spec, the config and an empty status.  No task exists yet: CREATED.
- Start makes the FIFOs under ``<state>/containers/<id>``, starts the log
  copy (:mod:`container_logs`), then creates and starts the task; a failed
  start leaves the container EXITED with reason ``StartError``.  From then
  on :mod:`container_watch` records its exit.
- Stop sends the image's ``StopSignal`` (SIGTERM without one), and SIGKILL
  when the timeout passes (at once for a timeout of 0); stopping a stopped
  container is not an error.  Remove stops a running container first, then
  drops task, snapshot, FIFOs and record; an unknown id is not an error.
- Everything is in the record, so after a restart (even kill -9) the plugin
  re-attaches log copies and watchers to the tasks the task manager
  reconnected, as soon as the daemon serves (or on the first call, whichever
  comes first); a container whose task vanished meanwhile is recorded
  exited with code 255 and reason ``Unknown``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import signal
import time
from collections.abc import Callable, Mapping
from typing import Any

from lamina.client.tasks import RESOURCES_TYPE_URL
from lamina.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, LaminaError, NotFound
from lamina.core.log import get_logger
from lamina.core.metadata.containers import AnyValue, Container, ContainerStore, RuntimeInfo
from lamina.core.metadata.snapshots import SnapshotStore
from lamina.plugins.cri import K8S_NAMESPACE, container_records, container_user, sandbox_records, truncindex
from lamina.plugins.cri.config import CriConfig
from lamina.plugins.cri.container_exec import exec_sync
from lamina.plugins.cri.container_records import ContainerRecord
from lamina.plugins.cri.container_spec import (
    SpecInput,
    container_spec,
    linux_resources,
    pid_mode,
    process_user,
)
from lamina.plugins.cri.container_stats import usage
from lamina.plugins.cri.container_watch import UNKNOWN_EXIT, RunningContainers, fifos, save_status
from lamina.plugins.cri.containers import (
    ContainerFilter,
    ContainerState,
    ContainerStats,
    ContainerStatus,
    CriContainer,
    ExecResult,
    container_metadata,
    container_name,
)
from lamina.plugins.cri.images import ImageManager
from lamina.plugins.cri.pods import NamespaceMode
from lamina.plugins.cri.sandbox_manager import RUNTIME, SandboxManager
from lamina.plugins.runtime_v2.manager import TaskManager
from lamina.plugins.runtime_v2.shim import IO

log = get_logger()

NS = K8S_NAMESPACE
KILL_TIMEOUT = 30.0


def _signal(name: str) -> int:
    """An image's ``StopSignal``: ``SIGTERM``, ``TERM`` or a number; SIGTERM when empty."""
    if not name:
        return signal.SIGTERM
    if name.isdigit():
        return int(name)
    try:
        return int(signal.Signals[name.upper() if name.upper().startswith("SIG") else f"SIG{name.upper()}"])
    except KeyError:
        raise InvalidArgument(f"unknown stop signal {name!r}") from None


class CriContainers:
    def __init__(self, *, config: CriConfig, containers: ContainerStore, tasks: TaskManager,
                 snapshots: Mapping[str, SnapshotStore], images: Callable[[], ImageManager],
                 sandboxes: SandboxManager, state_dir: str) -> None:
        self._config = config
        self._containers = containers
        self._tasks = tasks
        self._snapshots = snapshots
        self._images = images
        self._sandboxes = sandboxes
        self._state = state_dir
        self._reserving: dict[str, str] = {}
        self._running = RunningContainers(containers=containers, tasks=tasks,
                                          max_log_line=config.max_container_log_line_size)
        self._recovered = False
        self._recovering = asyncio.Lock()

    # -- lookups ---------------------------------------------------------

    def _records(self) -> list[Container]:
        return [c for c in self._containers.list(NS) if container_records.is_container(c)]

    def _find(self, container_id: str) -> Container | None:
        return truncindex.find(self._records(), container_id, "container")

    async def _get(self, container_id: str) -> Container:
        await self.recover()
        found = self._find(container_id)
        if found is None:
            raise NotFound(f"an error occurred when try to find container {json.dumps(container_id)}")
        return found

    def _work_dir(self, container_id: str) -> str:
        return os.path.join(self._state, "containers", container_id)

    def _store(self, name: str) -> SnapshotStore:
        store = self._snapshots.get(name)
        if store is None:
            raise FailedPrecondition(f"snapshotter {name!r} is not loaded")
        return store

    # -- create ----------------------------------------------------------

    async def create(self, sandbox_id: str, config: Mapping[str, Any]) -> str:
        await self.recover()
        sandbox = self._sandboxes.record(sandbox_id)
        pod = sandbox_records.decode(sandbox)
        pid = await self._sandboxes.pid(sandbox.id)
        name = container_name(container_metadata(config), pod.config.document)
        holder = self._reserving.get(name) or next(
            (c.id for c in self._records() if container_records.decode(c).name == name), None)
        if holder is not None:
            quoted = json.dumps(name)
            raise AlreadyExists(f"failed to reserve container name {quoted}: name {quoted} is reserved for "
                                f"{json.dumps(holder)}")
        container_id = secrets.token_hex(32)
        self._reserving[name] = container_id
        try:
            await self._create(container_id, name, sandbox.id, pid, config, pod)
        finally:
            del self._reserving[name]
        log.info("container created", id=container_id, sandbox=sandbox.id, name=name)
        return container_id

    async def _create(self, container_id: str, name: str, sandbox_id: str, sandbox_pid: int,
                      config: Mapping[str, Any], pod: sandbox_records.SandboxMetadata) -> None:
        ref = str((config.get("image") or {}).get("image", ""))
        image = await self._images().status(ref) if ref else None
        if image is None:
            raise NotFound(f"failed to resolve image {json.dumps(ref)}: not found")
        image_config = (image.config.get("config") or {})
        store = self._store(self._config.containerd.snapshotter)
        user_spec, supplemental = process_user(config, str(image_config.get("User") or ""))
        view = f"{container_id}-user"  # the image's files, to look the user up in
        mounts = await store.view(NS, view, image.chain_id)
        try:
            user = await asyncio.to_thread(container_user.resolve, mounts, self._work_dir(container_id),
                                           user_spec, supplemental)
        finally:
            with contextlib.suppress(NotFound):
                await store.remove(NS, view)
        spec = await asyncio.to_thread(container_spec, SpecInput(
            container_id=container_id, config=config, pod=pod.config, sandbox_id=sandbox_id,
            sandbox_pid=sandbox_pid, target_pid=await self._target_pid(config),
            sandbox_dirs=self._sandboxes.dirs(sandbox_id),
            image_name=(image.repo_tags or image.references or (ref,))[0], image_config=image_config,
            user=user, restrict_oom_score_adj=self._config.restrict_oom_score_adj))
        log_dir, log_file = pod.config.log_directory, str(config.get("log_path") or "")
        if os.path.isabs(log_file) or os.path.normpath(log_file).startswith(".."):
            raise InvalidArgument(f"log path {log_file!r} must stay inside the pod's log directory")
        record = ContainerRecord(id=container_id, name=name, sandbox_id=sandbox_id, config=config,
                                 image_ref=image.id, stop_signal=str(image_config.get("StopSignal") or ""),
                                 log_path=os.path.join(log_dir, log_file) if log_dir and log_file else "")
        # The record first, then its snapshot: a snapshot no record names is the garbage collector's.
        await self._containers.create(NS, Container(
            id=container_id, runtime=RuntimeInfo(name=RUNTIME), spec=sandbox_records.spec(spec),
            labels=container_records.labels(config.get("labels") or {}, image_config.get("Labels") or {}),
            image=(image.repo_tags or image.references)[0], snapshotter=store.name, snapshot_key=container_id,
            extensions={container_records.METADATA_EXTENSION: container_records.encode(record),
                        container_records.STATUS_EXTENSION: container_records.encode_status(ContainerStatus())},
        ))
        try:
            await store.prepare(NS, container_id, image.chain_id)
        except BaseException:
            with contextlib.suppress(NotFound):
                await self._containers.delete(NS, container_id)
            raise
        finally:
            await asyncio.to_thread(shutil.rmtree, self._work_dir(container_id), True)

    async def _target_pid(self, config: Mapping[str, Any]) -> int:
        """The running target's pid when the container asks for its PID namespace (TARGET)."""
        mode, target = pid_mode(config)
        if mode != NamespaceMode.TARGET:
            return 0
        found = self._find(target)
        if found is None or not self._running.running(found.id):
            raise FailedPrecondition(f"target container {target!r} of the PID namespace is not running")
        return (await self._tasks.get(NS, found.id).state()).pid

    # -- start and the exit watcher ----------------------------------------

    async def start(self, container_id: str) -> None:
        container = await self._get(container_id)
        record = container_records.decode(container)
        status = container_records.decode_status(container)
        if status.started_at_ns or status.finished_at_ns:
            raise FailedPrecondition(f"container {container.id!r} is not in created state")
        await self._sandboxes.pid(record.sandbox_id)
        work = self._work_dir(container.id)
        streams = fifos(work, record.config)
        stdin = os.path.join(work, "stdin") if record.config.get("stdin") else ""
        try:
            os.makedirs(work, mode=0o700, exist_ok=True)
            for path in [*streams.values(), *([stdin] if stdin else [])]:
                if not os.path.exists(path):
                    os.mkfifo(path, 0o600)
            self._running.log_to(record, work)
            rootfs = await self._store(container.snapshotter).mounts(NS, container.snapshot_key)
            io = IO(stdin=stdin, stdout=streams["stdout"], stderr=streams.get("stderr", ""),
                    terminal=bool(record.config.get("tty")))
            task, pid = await self._tasks.create(NS, container, rootfs=rootfs, io=io, options=None)
            await task.start()
        except BaseException as exc:
            self._running.stop_logging(container.id)
            with contextlib.suppress(NotFound, LaminaError):
                await self._tasks.delete(NS, container.id)
            now = time.time_ns()
            await save_status(self._containers, container.id, ContainerStatus(
                started_at_ns=now, finished_at_ns=now, exit_code=128, reason="StartError", message=str(exc)))
            raise
        await save_status(self._containers, container.id, ContainerStatus(pid=pid, started_at_ns=time.time_ns()))
        self._running.watch(container.id, task)
        log.info("container started", id=container.id, pid=pid)

    async def recover(self) -> None:
        """Once per daemon, before anything else is answered: watch again what ran before it started."""
        if self._recovered:
            return
        async with self._recovering:
            if self._recovered:
                return
            for container in self._records():
                status = container_records.decode_status(container)
                if not status.started_at_ns or status.finished_at_ns:
                    continue
                try:
                    task = self._tasks.get(NS, container.id)
                except NotFound:
                    await save_status(self._containers, container.id, dataclasses.replace(
                        status, finished_at_ns=time.time_ns(), exit_code=UNKNOWN_EXIT, reason="Unknown",
                        message="the container's task was gone when the daemon started"))
                    continue
                self._running.log_to(container_records.decode(container), self._work_dir(container.id))
                self._running.watch(container.id, task)
            self._recovered = True
        log.info("cri containers recovered")

    # -- stop and remove ---------------------------------------------------

    async def _kill(self, container_id: str, sig: int) -> None:
        """Signal the task if it is still there: one that exits on its own meanwhile (its PID namespace's
        init went, say) is being deleted by its watcher, whose recorded exit the caller waits for."""
        with contextlib.suppress(LaminaError):
            await self._tasks.get(NS, container_id).kill(sig, all_=sig == signal.SIGKILL)

    async def stop(self, container_id: str, timeout: float) -> None:
        container = await self._get(container_id)
        if not self._running.running(container.id):
            return
        if timeout > 0:
            await self._kill(container.id, _signal(container_records.decode(container).stop_signal))
            if await self._running.wait_exited(container.id, timeout):
                log.info("container stopped", id=container.id)
                return
        await self._kill(container.id, signal.SIGKILL)
        if not await self._running.wait_exited(container.id, KILL_TIMEOUT):
            raise TimeoutError(f"container {container.id!r} did not exit {KILL_TIMEOUT:g}s after SIGKILL")
        log.info("container stopped", id=container.id)

    async def remove(self, container_id: str) -> None:
        await self.recover()
        container = self._find(container_id)
        if container is None:
            return
        await self.stop(container.id, 0)
        self._running.stop_logging(container.id)
        with contextlib.suppress(NotFound):
            await self._tasks.delete(NS, container.id)
        with contextlib.suppress(NotFound):
            await self._store(container.snapshotter).remove(NS, container.snapshot_key)
        await asyncio.to_thread(shutil.rmtree, self._work_dir(container.id), True)
        with contextlib.suppress(NotFound):
            await self._containers.delete(NS, container.id)
        log.info("container removed", id=container.id)

    async def close(self) -> None:
        await self._running.close()

    async def in_pod(self, sandbox_id: str) -> list[str]:
        """The ids of the pod's containers (to stop and remove with it)."""
        await self.recover()
        return [c.id for c in self._records() if container_records.decode(c).sandbox_id == sandbox_id]

    # -- status and list ---------------------------------------------------

    async def status(self, container_id: str, verbose: bool) -> CriContainer:
        container = await self._get(container_id)
        return container_records.cri_container(container, self._running.running(container.id), verbose)

    async def list(self, container_filter: ContainerFilter) -> list[CriContainer]:
        await self.recover()
        records = self._records()
        if container_filter.id:
            found = self._find(container_filter.id)
            records = [found] if found is not None else []
        if container_filter.sandbox_id:
            records = [c for c in records if container_records.decode(c).sandbox_id.startswith(
                container_filter.sandbox_id)]
        listed = [container_records.cri_container(c, self._running.running(c.id), False) for c in records]
        return [c for c in listed
                if (container_filter.state is None or c.state == container_filter.state)
                and all(c.labels.get(k) == v for k, v in container_filter.labels.items())]

    # -- update, logs, exec ------------------------------------------------

    async def update_resources(self, container_id: str, resources: Mapping[str, Any]) -> None:
        container = await self._get(container_id)
        new, adj = linux_resources(resources, self._config.restrict_oom_score_adj)
        spec = sandbox_records.spec_of(container)
        current = spec["linux"].setdefault("resources", {})
        current.update(new)
        if adj is not None:
            spec["process"]["oomScoreAdj"] = adj
        if self._running.running(container.id):
            await self._tasks.get(NS, container.id).update(
                AnyValue(type_url=RESOURCES_TYPE_URL, value=json.dumps(current).encode()), {})
        await self._containers.update(NS, dataclasses.replace(container, spec=sandbox_records.spec(spec)), ["spec"])

    async def reopen_log(self, container_id: str) -> None:
        container = await self._get(container_id)
        if not await asyncio.to_thread(self._running.reopen_log, container.id):
            raise FailedPrecondition("container is not running")

    async def exec_sync(self, container_id: str, cmd: list[str], timeout: float) -> ExecResult:
        container = await self._get(container_id)
        if not self._running.running(container.id):
            raise FailedPrecondition(f"container {container.id!r} is not running")
        if not cmd:
            raise InvalidArgument("exec command must not be empty")
        process = sandbox_records.spec_of(container)["process"]
        return await exec_sync(self._tasks, NS, container.id, process=process, cmd=cmd, timeout=timeout,
                               work_dir=self._work_dir(container.id))

    async def stats(self, container_filter: ContainerFilter) -> list[ContainerStats]:
        found = []
        for c in await self.list(dataclasses.replace(container_filter, state=None)):
            record = self._containers.get(NS, c.id)
            metrics = None
            if c.state == ContainerState.RUNNING:
                with contextlib.suppress(NotFound, LaminaError):
                    metrics = await self._tasks.get(NS, c.id).stats()
            layer = None
            with contextlib.suppress(NotFound, FailedPrecondition):
                layer = await self._store(record.snapshotter).usage(NS, record.snapshot_key)
            found.append(ContainerStats(container=c, usage=usage(metrics, time.time_ns()) if metrics else None,
                                        layer_bytes=layer.size if layer else 0,
                                        layer_inodes=layer.inodes if layer else 0))
        return found
