"""Pure arithmetic of a benchmark row: summaries, the lamina/containerd ratio, and the target verdict.

Kept free of I/O so that ``tests/unit/test_bench_stats.py`` can pin the rules
the issue states: times and memory are better lower (ratio <= limit),
throughput better higher (ratio >= limit).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class Better(StrEnum):
    LOWER = "lower"
    HIGHER = "higher"


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    median: float
    minimum: float
    maximum: float
    n: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Side:
    """One daemon's samples for a metric, or why there are none (``na``)."""

    samples: tuple[float, ...] = ()
    na: str = ""

    @property
    def summary(self) -> Summary | None:
        return summarize(self.samples) if self.samples and not self.na else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Metric:
    """One row of the table: a measured quantity on both daemons.

    ``limit`` is the target ratio lamina/containerd (``None``: reported, no
    target).  ``by`` names a different lamina client when it is not ``ctr``.
    ``floor`` is what the same work costs a plain tool (GNU ``tar``), measured
    in the same iterations: the bound neither daemon can beat by much.
    """

    workload: str
    name: str
    unit: str
    better: Better
    lamina: Side
    containerd: Side
    limit: float | None = 1.0
    by: str = ""
    floor: Side | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    ratio: float | None
    met: bool | None  # None: no target, or a side has no figure

    @property
    def label(self) -> str:
        if self.met is None:
            return "—" if self.ratio is not None else "n/a"
        return "met" if self.met else "NOT met"


def summarize(samples: Sequence[float]) -> Summary:
    if not samples:
        raise ValueError("no samples")
    return Summary(median=statistics.median(samples), minimum=min(samples), maximum=max(samples), n=len(samples))


def ratio(lamina: Summary | None, containerd: Summary | None) -> float | None:
    """lamina's median over containerd's; ``None`` when either is missing or containerd's is zero."""
    if lamina is None or containerd is None or containerd.median == 0:
        return None
    return lamina.median / containerd.median


def evaluate(metric: Metric) -> Verdict:
    r = ratio(metric.lamina.summary, metric.containerd.summary)
    if r is None or metric.limit is None:
        return Verdict(ratio=r, met=None)
    met = r <= metric.limit if metric.better is Better.LOWER else r >= metric.limit
    return Verdict(ratio=r, met=met)


def error_reason(stderr: str, limit: int = 160) -> str:
    """The useful line of a failed ``ctr``: its last line, from ``desc = `` on when gRPC put one there.

    ``ctr: rpc error: code = Unimplemented desc = unknown service x`` becomes
    ``unknown service x``; without a ``desc`` the last non-empty line is kept.
    """
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    if not lines:
        return "failed without output"
    last = lines[-1]
    if "desc = " in last:
        last = last.split("desc = ", 1)[1]
    for prefix in ("ctr: ", "Error: ", "error: "):
        last = last.removeprefix(prefix)
    return last if len(last) <= limit else last[: limit - 1] + "…"
