"""The garbage collection scheduler plugin (``io.containerd.gc.v1.scheduler``).

Its instance is the ``Scheduler``; services call ``mutated()`` after writes
and ``schedule_and_wait()`` for ``sync`` deletes.  Other plugins add kinds
of their own with ``ic.get(GC_PLUGIN).collector.register(kind)`` (see
``lamina.core.gc``), requiring ``GC_PLUGIN`` so that it exists first.
"""

from __future__ import annotations

from lamina.core.gc import GarbageCollector
from lamina.core.gc_kinds import ContainerKind, ContentKind, ImageKind, IngestKind, LeaseKind
from lamina.core.gc_scheduler import Scheduler, SchedulerConfig
from lamina.core.registry import InitContext, Registration, Registry
from lamina.plugins import hookimpl
from lamina.plugins.content import CONTENT_PLUGIN
from lamina.plugins.metadata import METADATA_PLUGIN

GC_PLUGIN = "io.containerd.gc.v1"


async def _init(ic: InitContext) -> Scheduler:
    config: SchedulerConfig = ic.config
    collector = GarbageCollector(
        ic.get(METADATA_PLUGIN),
        [ImageKind(), ContainerKind(), LeaseKind(), ContentKind(ic.get(CONTENT_PLUGIN)), IngestKind()],
    )
    scheduler = Scheduler(collector, config)
    ic.meta.exports.update(
        {
            "PauseThreshold": str(config.pause_threshold),
            "DeletionThreshold": str(config.deletion_threshold),
            "MutationThreshold": str(config.mutation_threshold),
            "ScheduleDelay": config.schedule_delay,
        }
    )
    scheduler.start()
    return scheduler


@hookimpl
def lamina_register_plugins(registry: Registry) -> None:
    registry.add(
        Registration(
            type=GC_PLUGIN,
            id="scheduler",
            requires=(METADATA_PLUGIN, CONTENT_PLUGIN),
            config=SchedulerConfig,
            init=_init,
        )
    )
