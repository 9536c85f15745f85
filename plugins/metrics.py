"""What laminad's metrics endpoint (``core/metrics.py``) reads at every scrape, from the loaded plugins.

Task cgroup metrics are asked of each task's shim (its Stats call, the one
``ctr task metrics`` goes through) with containerd's names; the daemon's own
state is under ``lamina_``: events published, garbage collections and what
they removed, content blobs and their bytes, snapshots per snapshotter, and
shims running.  Counts that need the disk walk off the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from lamina.core.errors import LaminaError
from lamina.core.events import Exchange
from lamina.core.gc_scheduler import Scheduler
from lamina.core.metrics import Source
from lamina.core.metrics_cgroups import Families, add_task
from lamina.core.registry import PluginSet
from lamina.plugins.content import CONTENT_PLUGIN
from lamina.plugins.gc import GC_PLUGIN
from lamina.plugins.runtime_v2.manager import TaskManager
from lamina.plugins.runtime_v2.plugin import RUNTIME_PLUGIN
from lamina.plugins.runtime_v2.shim import ShimTask
from lamina.plugins.snapshotters import SNAPSHOTTER_PLUGIN
from lamina.snapshots.base import Snapshotter

STATS_TIMEOUT = 5.0  # a hung shim costs its own samples, not the scrape


async def _stats(task: ShimTask) -> tuple[ShimTask, str, bytes] | None:
    try:
        stats = await asyncio.wait_for(task.stats(), STATS_TIMEOUT)
    except (LaminaError, TimeoutError):
        return None  # the task went meanwhile, or its shim does not answer
    return None if stats is None else (task, stats.type_url, stats.value)


def _tasks(manager: TaskManager) -> Source:
    async def collect() -> Iterable[Metric]:
        tasks = manager.all()
        families = Families()
        for answer in await asyncio.gather(*(_stats(t) for t in tasks)):
            if answer is not None:
                task, type_url, value = answer
                add_task(families, task.id, task.namespace, type_url, value)
        shims = GaugeMetricFamily("lamina_shims_running", "Shims laminad is connected to (one per task)")
        shims.add_metric([], len(tasks))
        return [*families, shims]
    return collect


def _events(exchange: Exchange) -> Source:
    async def collect() -> Iterable[Metric]:
        return [CounterMetricFamily("lamina_events_published", "Events published on the exchange",
                                    value=exchange.published)]
    return collect


def _gc(scheduler: Scheduler) -> Source:
    async def collect() -> Iterable[Metric]:
        removed = CounterMetricFamily("lamina_gc_removed", "Objects the garbage collector removed",
                                      labels=["kind"])
        for kind, n in sorted(scheduler.removed.items()):
            removed.add_metric([kind], n)
        return [CounterMetricFamily("lamina_gc_runs", "Garbage collections run", value=scheduler.collections),
                removed]
    return collect


def _content(store: object) -> Source:
    async def collect() -> Iterable[Metric]:
        sizes = await asyncio.to_thread(lambda: [info.size for info in store.local.walk()])  # type: ignore[attr-defined]
        return [GaugeMetricFamily("lamina_content_blobs", "Blobs in the content store", value=len(sizes)),
                GaugeMetricFamily("lamina_content_bytes", "Bytes of the blobs in the content store",
                                  value=sum(sizes))]
    return collect


def _snapshots(snapshotters: dict[str, Snapshotter]) -> Source:
    async def collect() -> Iterable[Metric]:
        family = GaugeMetricFamily("lamina_snapshots", "Snapshots per snapshotter", labels=["snapshotter"])
        for name, backend in sorted(snapshotters.items()):
            found: list[object] = []
            await asyncio.to_thread(backend.walk, found.append)
            family.add_metric([name], len(found))
        return [family]
    return collect


def sources(plugins: PluginSet, exchange: Exchange) -> list[Source]:
    """A source for each loaded plugin the metrics cover (a disabled one is left out)."""
    found = [_events(exchange), _snapshots(plugins.instances(SNAPSHOTTER_PLUGIN))]
    for type_, make in ((RUNTIME_PLUGIN, lambda p: _tasks(p.tasks)), (GC_PLUGIN, _gc), (CONTENT_PLUGIN, _content)):
        instances = plugins.instances(type_)
        if instances:
            found.append(make(next(iter(instances.values()))))
    return found
