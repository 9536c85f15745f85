"""Workloads that run containers: serial ``run --rm``, concurrent bursts, memory, and scale.

Detached containers run ``sleep 3600`` from the busybox image and are force
deleted at the end of each measurement, so every workload starts from an
empty namespace.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from functools import partial

from bench import procs
from bench.ctr import CommandFailed, tasks
from bench.daemons import Daemon, delete_all_containers, note_shims
from bench.images import BUSYBOX_NAME
from bench.stats import Metric
from bench.workloads.base import SIDES, Context, Samples, reason

RUNNING_TIMEOUT = 180.0


def start_detached(daemon: Daemon, ids: list[str], timeout: float = RUNNING_TIMEOUT) -> float:
    """Launch one ``ctr run -d`` per id at once; seconds until ``ctr task ls`` shows all RUNNING."""
    start = time.perf_counter()
    launched = [daemon.ctr.popen("run", "-d", BUSYBOX_NAME, cid, "sleep", "3600") for cid in ids]
    try:
        while True:
            for proc in launched:
                if proc.poll() not in (None, 0):
                    raise CommandFailed(list(proc.args), proc.returncode,  # type: ignore[arg-type]
                                        proc.stderr.read() if proc.stderr else "")
            running = {cid for cid, (_pid, status) in tasks(daemon.ctr).items() if status == "RUNNING"}
            if running.issuperset(ids):
                elapsed = time.perf_counter() - start
                break
            if time.perf_counter() - start > timeout:
                raise TimeoutError(f"{len(set(ids) - running)} of {len(ids)} not RUNNING after {timeout:.0f}s")
            time.sleep(0.02)
    finally:
        for proc in launched:
            if proc.poll() is None:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stderr:
                proc.stderr.close()
    return elapsed


def remove(daemon: Daemon, ids: list[str]) -> None:
    """Force-delete the tasks and containers; clean-up, so failures are tolerated and swept later."""
    note_shims(daemon)
    daemon.ctr.try_run("tasks", "delete", "--force", *ids, timeout=300)
    daemon.ctr.try_run("containers", "delete", *ids, timeout=300)
    delete_all_containers(daemon)


def run_rm(ctx: Context) -> list[Metric]:
    s = Samples()
    for _i, d in ctx.ab(ctx.plan.run_rm):
        def once(d: Daemon = d) -> float:
            ctx.busybox(d)
            return 1000 * d.ctr.timed("run", "--rm", BUSYBOX_NAME, ctx.cid("r"), "/bin/true")
        s.run(d, once)
    return [s.metric("run_rm", f"ctr run --rm /bin/true, serial ×{ctx.plan.run_rm}", "ms")]


def _burst(ctx: Context, n: int, rounds: int, tag: str) -> Samples:
    s = Samples()
    for _i, d in ctx.ab(rounds):
        ids = [ctx.cid(tag) for _ in range(n)]

        def once(d: Daemon = d, ids: list[str] = ids) -> float:
            ctx.busybox(d)
            try:
                return start_detached(d, ids)
            finally:
                remove(d, ids)
        s.run(d, once)
    return s


def burst(ctx: Context) -> list[Metric]:
    n = ctx.plan.burst
    s = _burst(ctx, n, ctx.plan.burst_rounds, "b")
    return [s.metric("burst", f"{n} concurrent ctr run -d → all RUNNING", "s")]


def shim_pss(daemon: Daemon) -> list[float]:
    """PSS per running container: its shim's PSS divided by the containers that shim serves."""
    shim_of = note_shims(daemon)
    served: dict[int, int] = {}
    for shim in shim_of.values():
        served[shim] = served.get(shim, 0) + 1
    return [procs.pss_mib(shim) / served[shim] for shim in shim_of.values()]


def _rss_samples(daemon: Daemon, n: int = 5, gap: float = 0.2) -> list[float]:
    out = []
    for _ in range(n):
        out.append(procs.rss_mib(daemon.pid))
        time.sleep(gap)
    return out


def memory(ctx: Context) -> list[Metric]:
    """Idle RSS (busybox imported if it can be, nothing running), then RSS and shim PSS with ``n`` running."""
    n = ctx.plan.memory_containers
    idle, loaded, pss = Samples(), Samples(), Samples()
    for name in SIDES:
        d = ctx.daemons[name]
        ids = [ctx.cid("m") for _ in range(n)]
        try:
            ctx.busybox(d)
        except Exception as exc:
            loaded.fail(name, reason(exc))
            pss.fail(name, reason(exc))
        time.sleep(1.0)
        idle.run(d, partial(_rss_samples, d))
        if name in loaded.failures:
            continue
        try:
            start_detached(d, ids)
            time.sleep(1.0)
            loaded.run(d, partial(_rss_samples, d))
            pss.run(d, partial(shim_pss, d))
        except Exception as exc:
            loaded.fail(name, reason(exc))
            pss.fail(name, reason(exc))
        finally:
            remove(d, ids)
    return [
        idle.metric("memory", "daemon RSS, idle", "MiB", limit=1.5),
        loaded.metric("memory", f"daemon RSS, {n} running", "MiB", limit=None),
        pss.metric("memory", "shim PSS per container", "MiB"),
    ]


def scale(ctx: Context) -> list[Metric]:
    """Grow to ``scale_max`` running containers in bursts of ``scale_step``; then one burst of ``scale_max``.

    At each level: the burst's time, a ``run --rm`` latency (median of 3),
    daemon RSS and total shim PSS, for the table in docs/benchmarks.md.
    """
    step, top = ctx.plan.scale_step, ctx.plan.scale_max
    rows: list[dict[str, object]] = []
    alive: dict[str, list[str]] = {name: [] for name in SIDES}
    failed: dict[str, str] = {}
    try:
        for level in range(step, top + 1, step):
            row: dict[str, object] = {"running": level}
            for name in SIDES if level // step % 2 else SIDES[::-1]:
                d = ctx.daemons[name]
                if name in failed:
                    row[name] = failed[name]
                    continue
                ids = [ctx.cid("s") for _ in range(step)]
                alive[name] += ids
                try:
                    ctx.busybox(d)
                    burst_s = start_detached(d, ids)
                    lat = [1000 * d.ctr.timed("run", "--rm", BUSYBOX_NAME, ctx.cid("sr"), "/bin/true")
                           for _ in range(3)]
                    row[name] = {"burst_s": burst_s, "run_rm_ms": statistics.median(lat),
                                 "daemon_rss_mib": procs.rss_mib(d.pid), "shim_pss_total_mib": sum(shim_pss(d))}
                except Exception as exc:
                    failed[name] = row[name] = f"n/a: {reason(exc)}"
            rows.append(row)
    finally:
        for name, ids in alive.items():
            if ids:
                remove(ctx.daemons[name], ids)
    ctx.extras["scale"] = rows
    s = _burst(ctx, top, 1, "B")
    return [s.metric("scale", f"{top} concurrent ctr run -d → all RUNNING", "s")]

