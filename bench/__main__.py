"""``python -m bench [--quick] [--only NAME ...]``: run the workloads on both daemons and write the report.

Everything the run starts (two daemons, cold-start daemons, shims, the
registry) lives under one ``/tmp/lb-*`` dir and is stopped and removed in
``finally``, on SIGINT and on SIGTERM alike.  A partial run (``--only``)
writes its JSON but leaves docs/benchmarks.md alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
import traceback
from typing import Any, NoReturn

from bench import daemons, machine, procs, report
from bench.ctr import NAMESPACE
from bench.stats import Better, Metric, Side
from bench.workloads import BY_NAME, WORKLOADS, Workload
from bench.workloads.base import SIDES, Context, Plan

REPO = daemons.REPO
RESULTS_DIR = os.path.join(REPO, "bench", "results")
DOC_PATH = os.path.join(REPO, "docs", "benchmarks.md")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0],
                                     epilog="example: python -m bench --quick --only run_rm --only burst")
    parser.add_argument("--quick", action="store_true", help="reduced counts, under 3 minutes; no scale workload")
    parser.add_argument("--only", action="append", choices=sorted(BY_NAME), metavar="NAME",
                        help=f"run only this workload (repeatable): {', '.join(BY_NAME)}")
    return parser


def _on_sigterm(signum: int, _frame: object) -> NoReturn:
    raise SystemExit(128 + signum)


def _crashed(workload: Workload, exc: BaseException) -> Metric:
    why = f"error: harness crashed: {type(exc).__name__}: {exc}"
    return Metric(workload=workload.name, name=workload.title, unit="", better=Better.LOWER,
                  lamina=Side(na=why), containerd=Side(na=why))


def _run_workloads(ctx: Context, selected: list[Workload]) -> list[Metric]:
    metrics: list[Metric] = []
    for workload in selected:
        print(f"\n== {workload.name}: {workload.title}", flush=True)
        start = time.monotonic()
        try:
            found = workload.run(ctx)
        except Exception as exc:
            traceback.print_exc()
            found = [_crashed(workload, exc)]
        finally:
            for name in SIDES:
                daemons.delete_all_containers(ctx.daemons[name])
        print(report.text_table(found), flush=True)
        print(f"   ({time.monotonic() - start:.1f} s)", flush=True)
        metrics += found
    return metrics


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if os.geteuid() != 0:
        print("python -m bench: needs root (runc, overlay mounts)", file=sys.stderr)
        return 2
    # lamina's console scripts from this interpreter's bin dir, never through a
    # wrapper earlier on PATH (pyenv's shims would add up to seconds a command).
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    daemons.byte_compile()
    signal.signal(signal.SIGTERM, _on_sigterm)
    plan = Plan.for_mode(args.quick)
    selected = [w for w in WORKLOADS if (not args.only or w.name in args.only) and not (plan.quick and w.full_only)]
    started = dt.datetime.now(dt.UTC)
    result: dict[str, Any] = {"started": started.isoformat(timespec="seconds"),
                              "mode": "quick" if plan.quick else "full",
                              "workloads": [w.name for w in selected],
                              "machine": machine.machine(), "versions": machine.versions()}
    preexisting = set(procs.namespace_dirs(NAMESPACE))
    base = tempfile.mkdtemp(prefix="lb-", dir="/tmp")
    running: dict[str, daemons.Daemon] = {}
    ctx: Context | None = None
    notes: list[str] = []
    metrics: list[Metric] = []
    try:
        for name in SIDES:
            running[name] = daemons.start(name, base)
        ctx = Context(plan=plan, daemons=running, base=base, workdir=base, run_id=secrets.token_hex(3))
        metrics = _run_workloads(ctx, selected)
    finally:
        for cleanup in reversed(ctx.cleanups if ctx else []):
            try:
                cleanup()
            except Exception as exc:  # noqa: BLE001 - keep cleaning
                notes.append(f"clean-up failed: {exc}")
        for d in running.values():
            notes += daemons.stop(d)
        notes += [f"unmounted leftover {p}" for p in procs.unmount_below(base)]
        shutil.rmtree(base, ignore_errors=True)
        procs.remove_empty_dirs(set(procs.namespace_dirs(NAMESPACE)) - preexisting)
    result.update(duration_s=(dt.datetime.now(dt.UTC) - started).total_seconds(),
                  load_average_end=machine.load_average(), notes=notes,
                  scale=ctx.extras.get("scale", []) if ctx else [])
    os.makedirs(RESULTS_DIR, exist_ok=True)
    json_path = os.path.join(RESULTS_DIR, started.strftime("%Y%m%dT%H%M%SZ") + ".json")
    with open(json_path, "w") as f:
        f.write(report.to_json(result, metrics))
    print("\n" + report.text_table(metrics))
    for note in notes:
        print(f"note: {note}")
    print(f"\nwrote {json_path}")
    if not args.only:
        existing = open(DOC_PATH).read() if os.path.exists(DOC_PATH) else None
        with open(DOC_PATH + ".tmp", "w") as f:
            f.write(report.splice(existing, report.generated_section(result, metrics)))
        os.replace(DOC_PATH + ".tmp", DOC_PATH)
        print(f"wrote {DOC_PATH}")
    print(f"done in {result['duration_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
