"""The ``io.containerd.runtime.v2.task`` plugin: shim manager and events endpoint.

Config (``[plugins."io.containerd.runtime.v2.task"]``) maps runtime names to
shim binaries.  Entries given in the file are laid over the defaults, so that
setting ``runtimes = {"io.containerd.runc.v2" = "containerd-shim-runc-v2"}``
makes lamina drive containerd's shim while ``io.containerd.lamina.v2`` still
resolves to lamina's.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from lamina.core.errors import LaminaError
from lamina.core.metadata.containers import ContainerStore
from lamina.core.registry import InitContext, Registration, Registry
from lamina.plugins import hookimpl
from lamina.plugins.metadata import METADATA_PLUGIN
from lamina.plugins.runtime_v2.binary import resolve
from lamina.plugins.runtime_v2.events import EventsEndpoint
from lamina.plugins.runtime_v2.manager import TaskManager
from lamina.plugins.runtime_v2.zygote import Zygote, is_lamina_shim

RUNTIME_PLUGIN = "io.containerd.runtime.v2"
LAMINA_SHIM = "containerd-shim-lamina-v2"
DEFAULT_RUNTIME = "io.containerd.runc.v2"  # what ctr asks for
DEFAULT_RUNTIMES: dict[str, str] = {
    "io.containerd.runc.v2": LAMINA_SHIM,
    "io.containerd.lamina.v2": LAMINA_SHIM,
}


@dataclass(kw_only=True)
class RuntimeConfig:
    # runtime name -> shim binary (a name looked up on PATH, or an absolute path)
    runtimes: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_RUNTIMES))
    # fork lamina's own shims from a pre-imported zygote process instead of
    # exec'ing `containerd-shim-lamina-v2 start` (false: always exec)
    zygote: bool = True


class RuntimeV2:
    """What the plugin exports: the task manager, plus the events endpoint it owns."""

    def __init__(self, manager: TaskManager, endpoint: EventsEndpoint,
                 deferred: asyncio.Task[None] | None = None) -> None:
        self.tasks = manager
        self._endpoint = endpoint
        self._deferred = deferred

    async def close(self) -> None:
        if self._deferred is not None:
            self._deferred.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._deferred
        await self.tasks.close()
        await self._endpoint.close()


def _default_is_lamina_shim(runtimes: dict[str, str]) -> bool:
    """Whether ``ctr``'s default runtime runs lamina's shim: then the zygote
    starts with the daemon; otherwise on the first task that needs it."""
    try:
        return is_lamina_shim(resolve(DEFAULT_RUNTIME, runtimes))
    except LaminaError:
        return False


async def _init(ic: InitContext) -> RuntimeV2:
    config: RuntimeConfig = ic.config
    endpoint = EventsEndpoint(ic.daemon.exchange)
    await endpoint.start(ic.daemon.ttrpc_address)
    runtimes = {**DEFAULT_RUNTIMES, **config.runtimes}
    zygote = Zygote() if config.zygote else None
    deferred = None
    if zygote is not None and _default_is_lamina_shim(runtimes):
        # Once laminad serves: the zygote's imports would take the CPU from
        # laminad's own start-up.  A task created before then starts it itself.
        deferred = asyncio.get_running_loop().create_task(_start_when_serving(ic.daemon.serving, zygote))
    manager = TaskManager(
        root=ic.root_dir,
        state=ic.state_dir,
        address=ic.daemon.address,
        ttrpc_address=ic.daemon.ttrpc_address,
        exchange=ic.daemon.exchange,
        containers=ContainerStore(ic.get(METADATA_PLUGIN)),
        runtimes=runtimes,
        zygote=zygote,
    )
    try:
        await manager.load_existing()
    except BaseException:
        if deferred is not None:
            deferred.cancel()
        if zygote is not None:
            await zygote.close()
        await endpoint.close()
        raise
    return RuntimeV2(manager, endpoint, deferred)


async def _start_when_serving(serving: asyncio.Event, zygote: Zygote) -> None:
    await serving.wait()
    zygote.start()


@hookimpl
def lamina_register_plugins(registry: Registry) -> None:
    registry.add(
        Registration(type=RUNTIME_PLUGIN, id="task", requires=(METADATA_PLUGIN,), config=RuntimeConfig, init=_init)
    )
