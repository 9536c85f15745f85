"""Pod sandboxes on lamina's own container store, snapshotter and task manager, in namespace ``k8s.io``.

Follows containerd 1.6's ``pkg/cri/server/sandbox_{run,stop,remove,status,list}.go``:

- Run reserves ``<name>_<namespace>_<uid>_<attempt>``; a second pod with the
  same metadata fails with AlreadyExists naming the holder.  The sandbox
  image must be present (nothing is pulled: lamina's nodes are offline); a
  missing one fails before anything is made, naming the image.
- The pause container's record is written first, with the netns path it is
  about to get; then its snapshot, its files, the netns, CNI, and the task.
  If a step after the record fails, what was made is released and the record
  stays, NOTREADY, keeping the name reserved until RemovePodSandbox, as the
  kubelet expects of containerd.  A crash at any step leaves a record whose
  Stop/Remove release whatever exists.
- Stop kills the pause process (SIGKILL), deletes its task, unmounts the
  pod's ``/dev/shm``, runs CNI DEL (on the network recorded before ADD, so
  a half-done ADD is undone too) and removes the netns; a pod stops twice
  without complaint.  Remove stops, then removes the snapshot, the files and
  the record; an unknown id is not an error.
- A pod is READY while its pause task runs; its IP is shown while its netns
  exists.  Nothing is held in memory but the names being reserved, so a
  restarted daemon (its shims reconnected by the task manager) answers the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import secrets
import signal
from collections.abc import Callable, Mapping
from typing import Any

from lamina.core.errors import AlreadyExists, FailedPrecondition, LaminaError, NotFound
from lamina.core.log import get_logger
from lamina.core.metadata.containers import Container, ContainerStore, RuntimeInfo
from lamina.core.metadata.snapshots import SnapshotStore
from lamina.plugins.cri import K8S_NAMESPACE, netns, sandbox_records, truncindex
from lamina.plugins.cri.config import CriConfig
from lamina.plugins.cri.images import CriImage, ImageManager
from lamina.plugins.cri.pod_network import PodNetwork
from lamina.plugins.cri.pods import NamespaceMode, PodConfig, Sandbox, SandboxFilter, SandboxState, sandbox_name
from lamina.plugins.cri.sandbox_records import SandboxMetadata
from lamina.plugins.cri.sandbox_spec import SandboxDirs, cleanup_files, sandbox_spec, setup_files, unmount_shm
from lamina.plugins.runtime_v2.manager import TaskManager
from lamina.plugins.runtime_v2.shim import IO, Status

log = get_logger()

RUNTIME = "io.containerd.runc.v2"
RUNTIME_HANDLERS = ("", "runc")  # containerd's default_runtime_name is "runc"
STOP_TIMEOUT = 10.0
NS = K8S_NAMESPACE


class SandboxManager:
    def __init__(self, *, config: CriConfig, containers: ContainerStore, tasks: TaskManager,
                 snapshots: Mapping[str, SnapshotStore], images: Callable[[], ImageManager],
                 root_dir: str, state_dir: str) -> None:
        self._config = config
        self._containers = containers
        self._tasks = tasks
        self._snapshots = snapshots
        self._images = images
        self._root = root_dir
        self._state = state_dir
        self._network = PodNetwork(config.cni)
        self._reserving: dict[str, str] = {}  # name -> id, while RunPodSandbox works
        self._locks: dict[str, asyncio.Lock] = {}  # per sandbox: run, stop and remove one at a time

    # -- lookups ---------------------------------------------------------

    def _records(self) -> list[Container]:
        return [c for c in self._containers.list(NS) if sandbox_records.is_sandbox(c)]

    def _find(self, sandbox_id: str) -> Container | None:
        return truncindex.find(self._records(), sandbox_id, "sandbox")

    def _get(self, sandbox_id: str) -> Container:
        found = self._find(sandbox_id)
        if found is None:
            raise NotFound(f"an error occurred when try to find sandbox {json.dumps(sandbox_id)}")
        return found

    def record(self, sandbox_id: str) -> Container:
        """The sandbox's container record, for the containers made in it."""
        return self._get(sandbox_id)

    async def pid(self, sandbox_id: str) -> int:
        """The running pause process's pid, whose namespaces the pod's containers join."""
        try:
            state = await self._tasks.get(NS, sandbox_id).state()
        except NotFound:
            state = None
        if state is None or state.status != Status.RUNNING:
            raise FailedPrecondition(f"sandbox container {json.dumps(sandbox_id)} is not running")
        return state.pid

    def dirs(self, sandbox_id: str) -> SandboxDirs:
        return self._dirs(sandbox_id)

    def _dirs(self, sandbox_id: str) -> SandboxDirs:
        return SandboxDirs(files=os.path.join(self._root, "sandboxes", sandbox_id),
                           state=os.path.join(self._state, "sandboxes", sandbox_id))

    def _holder(self, name: str) -> str | None:
        if name in self._reserving:
            return self._reserving[name]
        for record in self._records():
            if sandbox_records.decode(record).name == name:
                return record.id
        return None

    def _lock(self, sandbox_id: str) -> asyncio.Lock:
        return self._locks.setdefault(sandbox_id, asyncio.Lock())

    # -- run -------------------------------------------------------------

    async def run(self, config: PodConfig, runtime_handler: str) -> str:
        if runtime_handler not in RUNTIME_HANDLERS:
            raise NotFound(f"failed to get sandbox runtime: no runtime for {json.dumps(runtime_handler)} is configured")
        name = sandbox_name(config.metadata)
        holder = self._holder(name)
        if holder is not None:
            quoted = json.dumps(name)
            raise AlreadyExists(f"failed to reserve sandbox name {quoted}: name {quoted} is reserved for "
                                f"{json.dumps(holder)}")
        sandbox_id = secrets.token_hex(32)
        self._reserving[name] = sandbox_id
        try:
            async with self._lock(sandbox_id):
                await self._run(sandbox_id, name, config, runtime_handler)
        finally:
            del self._reserving[name]
        log.info("pod sandbox started", id=sandbox_id, pod=name)
        return sandbox_id

    async def _sandbox_image(self) -> tuple[CriImage, SnapshotStore]:
        ref = self._config.sandbox_image
        image = await self._images().status(ref)
        if image is None:
            raise NotFound(f"failed to get sandbox image {json.dumps(ref)}: image {json.dumps(ref)} is not present "
                           f"in namespace {NS} (import or pull it)")
        snapshotter = self._config.containerd.snapshotter
        store = self._snapshots.get(snapshotter)
        if store is None:
            raise FailedPrecondition(f"snapshotter {snapshotter!r} is not loaded")
        if image.chain_id:
            try:
                await store.stat(NS, image.chain_id)
            except NotFound:
                raise NotFound(f"sandbox image {json.dumps(ref)} is not unpacked into snapshotter "
                               f"{snapshotter!r}") from None
        return image, store

    async def _run(self, sandbox_id: str, name: str, config: PodConfig, runtime_handler: str) -> None:
        image, store = await self._sandbox_image()
        dirs = self._dirs(sandbox_id)
        netns_path = netns.new_path(self._state) if config.network != NamespaceMode.NODE else ""
        spec = sandbox_spec(sandbox_id, config, dict(image.config), dirs=dirs, netns_path=netns_path,
                            restrict_oom_score_adj=self._config.restrict_oom_score_adj)
        metadata = SandboxMetadata(id=sandbox_id, name=name, config=config, netns_path=netns_path, ip="",
                                   additional_ips=(), runtime_handler=runtime_handler, cni=None)
        image_labels = (image.config.get("config") or {}).get("Labels") or {}
        container = await self._containers.create(NS, Container(
            id=sandbox_id, runtime=RuntimeInfo(name=RUNTIME),
            spec=sandbox_records.spec(spec),
            labels=sandbox_records.labels(config.labels, image_labels),
            image=(image.repo_tags or image.references)[0], snapshotter=store.name, snapshot_key=sandbox_id,
            extensions={sandbox_records.METADATA_EXTENSION: sandbox_records.encode(metadata)},
        ))
        try:
            rootfs = await store.prepare(NS, sandbox_id, image.chain_id)
            await asyncio.to_thread(setup_files, config, dirs)
            if netns_path:
                network = self._network.choose(sandbox_id)
                await asyncio.to_thread(netns.create, netns_path)
                metadata = dataclasses.replace(metadata, cni={"network": network, "result": None})
                await self._save(container, metadata)
                result, ips = await asyncio.to_thread(self._network.setup, sandbox_id, config, netns_path, network)
                metadata = dataclasses.replace(metadata, ip=ips[0], additional_ips=ips[1:],
                                               cni={"network": network, "result": result})
                await self._save(container, metadata)
            task, _ = await self._tasks.create(NS, container, rootfs=rootfs, io=IO(), options=None)
            await task.start()
        except BaseException as exc:
            log.warning("pod sandbox failed to start, left not ready", id=sandbox_id, error=str(exc))
            try:
                await self._release(sandbox_id)
            except (LaminaError, OSError, TimeoutError) as cleanup:
                log.error("failed to release a pod sandbox that failed to start", id=sandbox_id, error=str(cleanup))
            raise

    async def _save(self, container: Container, metadata: SandboxMetadata) -> None:
        path = f"extensions.{sandbox_records.METADATA_EXTENSION}"
        updated = dataclasses.replace(
            container, extensions={sandbox_records.METADATA_EXTENSION: sandbox_records.encode(metadata)})
        await self._containers.update(NS, updated, [path])

    # -- stop and remove -------------------------------------------------

    async def _stop_task(self, sandbox_id: str) -> None:
        try:
            task = self._tasks.get(NS, sandbox_id)
        except NotFound:
            return
        state = await task.state()
        if state.status in (Status.RUNNING, Status.PAUSED, Status.PAUSING, Status.CREATED):
            with contextlib.suppress(NotFound):
                await task.kill(signal.SIGKILL, all_=True)
            async with asyncio.timeout(STOP_TIMEOUT):
                await task.wait()
        with contextlib.suppress(NotFound):
            await self._tasks.delete(NS, sandbox_id)

    async def _release(self, sandbox_id: str) -> None:
        """Everything a stopped pod no longer holds: its task, /dev/shm, network and netns."""
        container = self._containers.get(NS, sandbox_id)
        metadata = sandbox_records.decode(container)
        await self._stop_task(sandbox_id)
        await asyncio.to_thread(unmount_shm, self._dirs(sandbox_id))
        path = metadata.netns_path
        if metadata.cni is not None:
            await asyncio.to_thread(self._network.teardown, sandbox_id, metadata.config, path,
                                    metadata.cni["network"], metadata.cni.get("result"))
            await self._save(container, dataclasses.replace(metadata, ip="", additional_ips=(), cni=None))
        if path:
            await asyncio.to_thread(netns.remove, path)

    async def stop(self, sandbox_id: str) -> None:
        container = self._get(sandbox_id)
        async with self._lock(container.id):
            await self._release(container.id)
        log.info("pod sandbox stopped", id=container.id)

    async def remove(self, sandbox_id: str) -> None:
        container = self._find(sandbox_id)
        if container is None:
            return
        async with self._lock(container.id):
            with contextlib.suppress(NotFound):  # removed meanwhile
                await self._remove(container)
        self._locks.pop(container.id, None)
        log.info("pod sandbox removed", id=container.id)

    async def _remove(self, container: Container) -> None:
        await self._release(container.id)
        store = self._snapshots.get(container.snapshotter)
        if store is not None and container.snapshot_key:
            with contextlib.suppress(NotFound):
                await store.remove(NS, container.snapshot_key)
        await asyncio.to_thread(cleanup_files, self._dirs(container.id))
        await self._containers.delete(NS, container.id)

    # -- status and list -------------------------------------------------

    async def _sandbox(self, container: Container, verbose: bool) -> Sandbox:
        metadata = sandbox_records.decode(container)
        pid, status = 0, "deleted"
        with contextlib.suppress(NotFound):
            state = await self._tasks.get(NS, container.id).state()
            pid, status = state.pid, state.status.name.lower()
        netns_open = bool(metadata.netns_path) and await asyncio.to_thread(netns.exists, metadata.netns_path)
        info: dict[str, Any] = {}
        if verbose:
            info = {"pid": pid, "processStatus": status, "netNamespaceClosed": not netns_open,
                    "image": container.image, "snapshotKey": container.snapshot_key,
                    "snapshotter": container.snapshotter, "runtimeHandler": metadata.runtime_handler,
                    "runtimeType": container.runtime.name, "config": dict(metadata.config.document),
                    "runtimeSpec": sandbox_records.spec_of(container),
                    "cniResult": (metadata.cni or {}).get("result")}
        return Sandbox(id=container.id, name=metadata.name, config=metadata.config,
                       state=SandboxState.READY if status == "running" else SandboxState.NOTREADY,
                       created_at_ns=container.created_at_ns, ip=metadata.ip if netns_open else "",
                       additional_ips=metadata.additional_ips if netns_open else (),
                       netns_path=metadata.netns_path, runtime_handler=metadata.runtime_handler, info=info)

    async def status(self, sandbox_id: str, verbose: bool) -> Sandbox:
        return await self._sandbox(self._get(sandbox_id), verbose)

    async def list(self, sandbox_filter: SandboxFilter) -> list[Sandbox]:
        records = self._records()
        if sandbox_filter.id:
            found = self._find(sandbox_filter.id)
            records = [found] if found is not None else []
        sandboxes = [await self._sandbox(c, False) for c in records]
        return [s for s in sandboxes
                if (sandbox_filter.state is None or s.state == sandbox_filter.state)
                and all(s.config.labels.get(k) == v for k, v in sandbox_filter.labels.items())]
