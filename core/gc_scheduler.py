"""When to collect: after deletions, after many mutations, on demand, within a pause budget.

Follows containerd 1.6's ``gc/scheduler``: with ``deletion_threshold`` 0 the
first deletion after a quiet period schedules a collection ``schedule_delay``
later; ``mutation_threshold`` writes do the same; ``schedule_and_wait`` (a
``sync`` delete) triggers one and waits for it.  After each collection the
next may start no sooner than ``avg/pause_threshold - avg`` later (so the
collector's pauses take at most ``pause_threshold`` of the time), unless
triggered or ``deletion_threshold`` is reached.  Counters are reset when a
collection starts, so changes made during it count towards the next one.
Services report changes with ``mutated(dirty=...)``.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass

from lamina.core.errors import InvalidArgument, Unavailable
from lamina.core.gc import GarbageCollector, Stats
from lamina.core.log import get_logger

log = get_logger()

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """A Go duration string (``"100ms"``, ``"1m30s"``, ``"0"``) in seconds."""
    if text in ("0", ""):
        return 0.0
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text):
        raise InvalidArgument(f"invalid duration {text!r}")
    return total


@dataclass(kw_only=True)
class SchedulerConfig:
    """containerd's ``[plugins."io.containerd.gc.v1.scheduler"]`` keys and defaults."""

    pause_threshold: float = 0.02
    deletion_threshold: int = 0
    mutation_threshold: int = 100
    schedule_delay: str = "0s"
    startup_delay: str = "100ms"


class Scheduler:
    def __init__(self, collector: GarbageCollector, config: SchedulerConfig) -> None:
        self.collector = collector
        self._pause = min(max(config.pause_threshold, 0.0), 0.5)
        self._deletion_threshold = config.deletion_threshold
        self._mutation_threshold = max(config.mutation_threshold, 0)
        self._delay = max(parse_duration(config.schedule_delay), 0.0)
        self._startup = max(parse_duration(config.startup_delay), 0.0)
        self._deletions = 0
        self._mutations = 0
        self._triggered = False
        self._next: float | None = None
        self._waiters: list[asyncio.Future[Stats]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._collections = 0
        self.removed: dict[str, int] = {}  # objects removed since start, by kind (the metrics endpoint reads it)
        self._gc_time = 0.0

    @property
    def collections(self) -> int:
        return self._collections

    def start(self) -> None:
        if self._startup > 0:
            self._next = time.monotonic() + self._startup
        self._task = asyncio.get_running_loop().create_task(self._run(), name="gc-scheduler")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(Unavailable("garbage collector stopped"))
        self._waiters = []

    def mutated(self, dirty: bool = False) -> None:
        """Report a metadata change; ``dirty`` when something was deleted."""
        if dirty:
            self._deletions += 1
        self._mutations += 1
        self._maybe_schedule()

    async def schedule_and_wait(self) -> Stats:
        """Run a collection soon and return its stats (containerd's ``ScheduleAndWait``)."""
        waiter: asyncio.Future[Stats] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._triggered = True
        self._maybe_schedule()
        return await waiter

    def _due(self) -> bool:
        return (
            self._triggered
            or self._deletions > 0
            or (self._mutation_threshold > 0 and self._mutations >= self._mutation_threshold)
        )

    def _maybe_schedule(self) -> None:
        reached = (self._deletion_threshold > 0 and self._deletions >= self._deletion_threshold)
        idle_due = self._next is None and (
            (self._deletion_threshold == 0 and self._deletions > 0)
            or (self._mutation_threshold > 0 and self._mutations >= self._mutation_threshold)
        )
        if not (self._triggered or reached or idle_due):
            return
        due = time.monotonic() + self._delay
        if self._next is None or self._next > due:
            self._next = due
            self._wake.set()

    async def _run(self) -> None:
        first = True
        while True:
            if self._next is None:
                await self._wake.wait()
                self._wake.clear()
                continue
            wait = self._next - time.monotonic()
            if wait > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except TimeoutError:
                    pass
                self._wake.clear()
                continue
            if not first and not self._due():
                self._next = None
                continue
            first = False
            await self._collect_once()

    async def _collect_once(self) -> None:
        waiters, self._waiters = self._waiters, []
        self._triggered = False
        self._deletions = 0
        self._mutations = 0
        self._next = None
        try:
            stats = await self.collector.collect()
        except Exception as exc:  # noqa: BLE001 - the scheduler must survive a failed run
            log.error("garbage collection failed", error=str(exc), exc_info=True)
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(Unavailable(f"garbage collection failed: {exc}"))
            self._next = time.monotonic() + 1.0
            return
        self._collections += 1
        self._gc_time += stats.total_seconds
        for kind, n in stats.removed.items():
            self.removed[kind] = self.removed.get(kind, 0) + n
        interval = 1.0
        if self._pause > 0:
            avg = self._gc_time / self._collections
            interval = avg / self._pause - avg
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(stats)
        if self._triggered or (self._deletion_threshold > 0 and self._deletions >= self._deletion_threshold):
            self._next = time.monotonic() + self._delay
        else:
            self._next = time.monotonic() + interval
