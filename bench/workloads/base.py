"""What every workload gets: the plan (counts), both daemons, A/B ordering, and n/a bookkeeping.

A workload is a function ``Context -> list[Metric]``.  It measures through
``Samples.run``, which turns the first failure of a side into that side's
``n/a: <reason>`` (or ``failed after k samples: <reason>``) and skips the
side from then on, so one missing lamina feature never stops the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc

from bench import images
from bench.ctr import CommandFailed
from bench.daemons import CONTAINERD, LAMINA, Daemon
from bench.stats import Better, Metric, Side

SIDES = (LAMINA, CONTAINERD)


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """Iteration counts; ``quick`` trims them so the whole run fits in 3 minutes."""

    quick: bool
    cold_starts: int
    run_rm: int
    burst: int
    burst_rounds: int
    memory_containers: int
    snapshot_cycles: int
    images: int
    ls_repeats: int
    ingest_runs: int
    import_runs: int
    pull_runs: int
    unpack_runs: int
    rpc_rounds: int
    scale_step: int = 20
    scale_max: int = 100

    @classmethod
    def for_mode(cls, quick: bool) -> Plan:
        if quick:
            return cls(quick=True, cold_starts=2, run_rm=5, burst=10, burst_rounds=1, memory_containers=10,
                       snapshot_cycles=10, images=1000, ls_repeats=3, ingest_runs=1, import_runs=1, pull_runs=1,
                       unpack_runs=1, rpc_rounds=3)
        return cls(quick=False, cold_starts=5, run_rm=20, burst=20, burst_rounds=3, memory_containers=20,
                   snapshot_cycles=40, images=1000, ls_repeats=10, ingest_runs=3, import_runs=3, pull_runs=3,
                   unpack_runs=3, rpc_rounds=10)


class Unavailable(Exception):
    """A prerequisite of this side failed earlier; the message is that failure's reason."""


def reason(exc: BaseException) -> str:
    if isinstance(exc, grpc.RpcError):
        code = exc.code()  # type: ignore[attr-defined]
        return f"{exc.details()} ({code.name if code else 'no code'})"  # type: ignore[attr-defined]
    if isinstance(exc, CommandFailed | Unavailable):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


@dataclass
class Context:
    plan: Plan
    daemons: dict[str, Daemon]
    base: str
    workdir: str
    run_id: str
    extras: dict[str, Any] = field(default_factory=dict)
    cleanups: list[Callable[[], object]] = field(default_factory=list)
    _setups: dict[tuple[str, str], str | None] = field(default_factory=dict)
    _inputs: dict[str, Any] = field(default_factory=dict)
    _seq: int = 0

    def ab(self, n: int) -> Iterator[tuple[int, Daemon]]:
        """Iteration ``i`` runs lamina first when ``i`` is even and containerd first when odd."""
        for i in range(n):
            order = SIDES if i % 2 == 0 else SIDES[::-1]
            for name in order:
                yield i, self.daemons[name]

    def cid(self, tag: str) -> str:
        self._seq += 1
        return f"{self.run_id}-{tag}{self._seq}"

    def setup(self, daemon: Daemon, key: str, fn: Callable[[], object]) -> None:
        """Run a per-daemon prerequisite once; later calls re-raise its failure as ``Unavailable``."""
        slot = (daemon.name, key)
        if slot not in self._setups:
            try:
                fn()
                self._setups[slot] = None
            except Exception as exc:
                self._setups[slot] = f"{key}: {reason(exc)}"
        failure = self._setups[slot]
        if failure is not None:
            raise Unavailable(failure)

    def busybox(self, daemon: Daemon) -> None:
        """Import the busybox image into this daemon (once)."""
        path = self.input("busybox", lambda: images.busybox(self.workdir))
        self.setup(daemon, "busybox import", lambda: daemon.ctr.run("images", "import", path))

    def input(self, key: str, build: Callable[[], Any]) -> Any:
        if key not in self._inputs:
            self._inputs[key] = build()
        return self._inputs[key]


class Samples:
    """Per-side samples of one metric and, once a side fails, why."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {name: [] for name in SIDES}
        self.failures: dict[str, str] = {}

    def run(self, daemon: Daemon | str, measure: Callable[[], float | list[float]]) -> bool:
        name = daemon if isinstance(daemon, str) else daemon.name
        if name in self.failures:
            return False
        try:
            value = measure()
        except Exception as exc:
            self.fail(name, reason(exc))
            return False
        self.values[name].extend(value if isinstance(value, list) else [value])
        return True

    def fail(self, name: str, why: str) -> None:
        if name in self.failures:
            return
        done = len(self.values[name])
        self.failures[name] = f"n/a: {why}" if not done else f"failed after {done} samples: {why}"

    def side(self, name: str) -> Side:
        return Side(samples=tuple(self.values[name]), na=self.failures.get(name, ""))

    def metric(self, workload: str, name: str, unit: str, better: Better = Better.LOWER,
               limit: float | None = 1.0, by: str = "", floor: Side | None = None) -> Metric:
        return Metric(workload=workload, name=name, unit=unit, better=better, limit=limit, by=by,
                      lamina=self.side(LAMINA), containerd=self.side(CONTAINERD), floor=floor)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
