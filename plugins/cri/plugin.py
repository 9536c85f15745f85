"""Registers ``io.containerd.grpc.v1.cri``: both CRI services, on the daemon's own socket.

Disable it as any plugin (``disabled_plugins = ["io.containerd.grpc.v1.cri"]``).
It needs no other plugin's instance: it reaches images, content, snapshots
and leases as a client of the daemon, in namespace ``k8s.io``; it only reads
the snapshotter's root from that plugin's exports, for ImageFsInfo.  That
client (grpcio, httpx and the puller) is imported and built on the first
image request, not at start-up: importing it takes the daemon a second.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from lamina.core.registry import InitContext, Registration, Registry
from lamina.core.server import Server
from lamina.plugins import hookimpl
from lamina.plugins.cri import CRI_PLUGIN_ID, K8S_NAMESPACE
from lamina.plugins.cri.config import CriConfig
from lamina.plugins.cri.image_service import ImageService
from lamina.plugins.cri.images import ImageManager
from lamina.plugins.cri.runtime import Runtime
from lamina.plugins.cri.runtime_service import RuntimeService
from lamina.plugins.services import GRPC_PLUGIN
from lamina.plugins.snapshotters import SNAPSHOTTER_PLUGIN

if TYPE_CHECKING:
    from lamina.plugins.cri.image_manager import ClientImageManager


class CriPlugin:
    def __init__(self, config: CriConfig, *, address: str, snapshotter_root: str) -> None:
        self._config = config
        self._address = address
        self._snapshotter_root = snapshotter_root
        self._manager: ClientImageManager | None = None
        self._runtime = RuntimeService(Runtime(config))
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

    def register(self, server: Server) -> None:
        self._runtime.register(server)
        self._images.register(server)

    async def close(self) -> None:
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
    return CriPlugin(config, address=ic.daemon.address,
                     snapshotter_root=_snapshotter_root(ic, config.containerd.snapshotter))


@hookimpl
def lamina_register_plugins(registry: Registry) -> None:
    registry.add(Registration(type=GRPC_PLUGIN, id=CRI_PLUGIN_ID, requires=(SNAPSHOTTER_PLUGIN,),
                              config=CriConfig, init=_init))
