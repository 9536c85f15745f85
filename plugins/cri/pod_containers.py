"""Pod sandboxes whose stop and remove take their containers along, as containerd 1.6's do.

``StopPodSandbox`` kills every container of the pod (no grace: the kubelet
stopped them already when it could) before the pause container goes;
``RemovePodSandbox`` removes them (``sandbox_stop.go``, ``sandbox_remove.go``).
Everything else is the sandbox manager's.
"""

from __future__ import annotations

from lamina.plugins.cri.container_manager import CriContainers
from lamina.plugins.cri.pods import PodConfig, Sandbox, SandboxFilter
from lamina.plugins.cri.sandbox_manager import SandboxManager


class PodsWithContainers:
    def __init__(self, sandboxes: SandboxManager, containers: CriContainers) -> None:
        self._sandboxes = sandboxes
        self._containers = containers

    async def run(self, config: PodConfig, runtime_handler: str) -> str:
        return await self._sandboxes.run(config, runtime_handler)

    async def stop(self, sandbox_id: str) -> None:
        sandbox = self._sandboxes.record(sandbox_id)
        for container_id in await self._containers.in_pod(sandbox.id):
            await self._containers.stop(container_id, 0)
        await self._sandboxes.stop(sandbox.id)

    async def remove(self, sandbox_id: str) -> None:
        for sandbox in await self._sandboxes.list(SandboxFilter(id=sandbox_id)):
            for container_id in await self._containers.in_pod(sandbox.id):
                await self._containers.remove(container_id)
        await self._sandboxes.remove(sandbox_id)

    async def status(self, sandbox_id: str, verbose: bool) -> Sandbox:
        return await self._sandboxes.status(sandbox_id, verbose)

    async def list(self, sandbox_filter: SandboxFilter) -> list[Sandbox]:
        return await self._sandboxes.list(sandbox_filter)
