"""Registers ``io.containerd.grpc.v1.cri``: both CRI services, on the daemon's own socket.

Disable it as any plugin (``disabled_plugins = ["io.containerd.grpc.v1.cri"]``).
Images it reaches as a client of the daemon, in namespace ``k8s.io``, as
containerd's CRI plugin does (it reads the snapshotter's root from that
plugin's exports, for ImageFsInfo); pod sandboxes and their containers it makes in-process with
the daemon's own container store, snapshot stores and task manager.  The
managers are imported and built on the first request that needs them, not
at start-up: importing the client (grpcio, httpx, the puller) takes the
daemon a second.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lamina.core.metadata.containers import ContainerStore
from lamina.core.metadata.snapshots import SnapshotStore
from lamina.core.registry import InitContext, Registration, Registry
from lamina.core.server import Server
from lamina.plugins import hookimpl
from lamina.plugins.cri import CRI_PLUGIN_ID, K8S_NAMESPACE, KIND_CONTAINER, KIND_LABEL
from lamina.plugins.cri.config import CriConfig
from lamina.plugins.cri.containers import ContainerManager
from lamina.plugins.cri.image_service import ImageService
from lamina.plugins.cri.images import ImageManager
from lamina.plugins.cri.pods import PodManager
from lamina.plugins.cri.runtime import Runtime
from lamina.plugins.cri.runtime_service import RuntimeService
from lamina.plugins.metadata import METADATA_PLUGIN
from lamina.plugins.runtime_v2.manager import TaskManager
from lamina.plugins.runtime_v2.plugin import RUNTIME_PLUGIN
from lamina.plugins.services import GRPC_PLUGIN
from lamina.plugins.snapshotters import SERVICE_PLUGIN, SNAPSHOTS_SERVICE, SNAPSHOTTER_PLUGIN

if TYPE_CHECKING:
    from lamina.plugins.cri.container_manager import CriContainers
    from lamina.plugins.cri.image_manager import ClientImageManager
    from lamina.plugins.cri.pod_containers import PodsWithContainers


@dataclass(frozen=True, slots=True, kw_only=True)
class Stores:
    """The daemon's own stores a pod sandbox is made with, and the plugin's dirs for its files."""

    containers: ContainerStore
    snapshots: Mapping[str, SnapshotStore]
    tasks: TaskManager
    root_dir: str
    state_dir: str


class CriPlugin:
    def __init__(self, config: CriConfig, *, address: str, snapshotter_root: str, stores: Stores) -> None:
        self._config = config
        self._address = address
        self._snapshotter_root = snapshotter_root
        self._stores = stores
        self._manager: ClientImageManager | None = None
        self._pods: PodsWithContainers | None = None
        self._containers: CriContainers | None = None
        self._recovery: asyncio.Task[None] | None = None
        self._runtime = RuntimeService(Runtime(config), self._pod_manager, self._container_manager)
        self._images = ImageService(self._image_manager)

    def _image_manager(self) -> ImageManager:
        if self._manager is None:
            from lamina.client import Client
            from lamina.plugins.cri.image_manager import ClientImageManager

            self._manager = ClientImageManager(
                Client(self._address, K8S_NAMESPACE), snapshotter=self._config.containerd.snapshotter,
                snapshotter_root=self._snapshotter_root, config_path=self._config.registry.config_path,
            )
        return self._manager

    def _pod_manager(self) -> PodManager:
        self._build_runtime()
        assert self._pods is not None
        return self._pods

    def _container_manager(self) -> ContainerManager:
        self._build_runtime()
        assert self._containers is not None
        return self._containers

    def _build_runtime(self) -> None:
        if self._pods is not None:
            return
        from lamina.plugins.cri.container_manager import CriContainers
        from lamina.plugins.cri.pod_containers import PodsWithContainers
        from lamina.plugins.cri.sandbox_manager import SandboxManager

        s = self._stores
        sandboxes = SandboxManager(config=self._config, containers=s.containers, tasks=s.tasks,
                                   snapshots=s.snapshots, images=self._image_manager,
                                   root_dir=s.root_dir, state_dir=s.state_dir)
        self._containers = CriContainers(config=self._config, containers=s.containers, tasks=s.tasks,
                                         snapshots=s.snapshots, images=self._image_manager, sandboxes=sandboxes,
                                         state_dir=s.state_dir)
        self._pods = PodsWithContainers(sandboxes, self._containers)

    def register(self, server: Server) -> None:
        self._runtime.register(server)
        self._images.register(server)

    def recover_when_serving(self, serving: asyncio.Event) -> None:
        """Once the daemon serves, re-attach log copies and exit watchers to containers that ran
        before it started, if there are any (so their output flows with no CRI call first)."""
        async def recover() -> None:
            await serving.wait()
            if any(c.labels.get(KIND_LABEL) == KIND_CONTAINER for c in self._stores.containers.list(K8S_NAMESPACE)):
                self._build_runtime()
                assert self._containers is not None
                await self._containers.recover()

        self._recovery = asyncio.create_task(recover())

    async def close(self) -> None:
        if self._recovery is not None:
            self._recovery.cancel()
        if self._containers is not None:
            await self._containers.close()
        if self._manager is not None:
            await self._manager.close()


def _snapshotter_root(ic: InitContext, name: str) -> str:
    """The loaded snapshotter's exported root, else where it would be (then ImageFsInfo counts nothing)."""
    for plugin in ic.plugins:
        if (plugin.registration.type, plugin.registration.id) == (SNAPSHOTTER_PLUGIN, name) and plugin.error is None:
            return str(plugin.meta.exports["root"])
    return os.path.join(ic.daemon.root, f"{SNAPSHOTTER_PLUGIN}.{name}")


def _init(ic: InitContext) -> CriPlugin:
    config: CriConfig = ic.config or CriConfig()
    stores = Stores(containers=ContainerStore(ic.get(METADATA_PLUGIN)),
                    snapshots=ic.get(SERVICE_PLUGIN, SNAPSHOTS_SERVICE), tasks=ic.get(RUNTIME_PLUGIN, "task").tasks,
                    root_dir=ic.root_dir, state_dir=ic.state_dir)
    plugin = CriPlugin(config, address=ic.daemon.address,
                       snapshotter_root=_snapshotter_root(ic, config.containerd.snapshotter), stores=stores)
    plugin.recover_when_serving(ic.daemon.serving)
    return plugin


@hookimpl
def lamina_register_plugins(registry: Registry) -> None:
    registry.add(Registration(type=GRPC_PLUGIN, id=CRI_PLUGIN_ID,
                              requires=(SNAPSHOTTER_PLUGIN, SERVICE_PLUGIN, METADATA_PLUGIN, RUNTIME_PLUGIN),
                              config=CriConfig, init=_init))
