"""``python -m bench.soak --containers N``: churn N containers through a laminad, then look for leaks.

It starts its own laminad (``bench/daemons.py``) and imports the busybox test
image into a namespace of its own.  Containers go four at a time (by
default), cycling through four shapes: ``ctr run --rm``; ``ctr run -d`` then
``task exec``, ``task kill``, ``task rm`` and ``containers rm``; and both
again with a terminal (``-t``, the client on a pty).  After a warm-up of the
first few containers it collects garbage and takes a baseline of laminad's
open fds, RSS and LMDB file size; it does so again half way and after the
last container, and compares.  Then it looks for anything left: mounts under the daemon's dirs,
shim processes, shim sockets, FIFOs, bundle and work dirs, cgroups, runc
state, task, container and active snapshot records.

Limits: fds, RSS and the metadata LMDB holds (its B-tree pages, read through
a short read-only handle) back within ``TOLERANCE`` of the baseline, and the
LMDB file within ``TOLERANCE`` of its size half way.  (The file grows to the
most pages ever in use at once plus those freed while a reader still saw
them: a high-water mark that four containers at a time push up a page or two
now and then.  What it must not do is grow with the number of containers;
the pages in use say whether records leak.)
"""

from __future__ import annotations

import argparse
import glob
import os
import pty
import secrets
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from bench import daemons, images, procs
from bench.ctr import CTR, Client, CommandFailed, tasks
from bench.report import markdown_table
from lamina.shim.start import socket_address

TOLERANCE = 0.10
# A B-tree may keep a page or two that a split made after the records in them
# are gone; one leaked record per container would be tens of pages.
PAGE_SLACK = 2
WARM_UP = 8
COMMAND_TIMEOUT = 60.0
RUNTIME_DIR = "io.containerd.runtime.v2.task"
LMDB_FILE = "io.containerd.metadata.v1.lmdb/data.mdb"
FIFO_GLOB = "/run/containerd/fifo/*/{id}-*"


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """laminad's footprint at one moment, after a collection."""

    fds: int
    rss_mib: float
    lmdb_bytes: int
    lmdb_pages: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    containers: int
    wall_s: float
    before: Sample
    middle: Sample
    after: Sample
    leftovers: tuple[str, ...]
    failures: tuple[str, ...]

    def problems(self) -> list[str]:
        found = [*self.failures, *self.leftovers]
        if self.after.fds > self.before.fds * (1 + TOLERANCE):
            found.append(f"open fds grew from {self.before.fds} to {self.after.fds}")
        if self.after.rss_mib > self.before.rss_mib * (1 + TOLERANCE):
            found.append(f"RSS grew from {self.before.rss_mib:.1f} to {self.after.rss_mib:.1f} MiB")
        if self.after.lmdb_pages > self.before.lmdb_pages * (1 + TOLERANCE) + PAGE_SLACK:
            found.append(f"LMDB pages in use grew from {self.before.lmdb_pages} to {self.after.lmdb_pages}")
        if self.after.lmdb_bytes > self.middle.lmdb_bytes * (1 + TOLERANCE):
            found.append(f"LMDB file grew from {self.middle.lmdb_bytes} bytes half way to {self.after.lmdb_bytes}")
        return found

    def table(self) -> str:
        per = self.wall_s / self.containers if self.containers else 0.0
        samples = (self.before, self.middle, self.after)
        body = [
            ["containers", "", "", str(self.containers)],
            ["wall time (s)", "", "", f"{self.wall_s:.1f}"],
            ["per container (s)", "", "", f"{per:.3f}"],
            ["laminad open fds", *(str(x.fds) for x in samples)],
            ["laminad RSS (MiB)", *(f"{x.rss_mib:.1f}" for x in samples)],
            ["LMDB pages in use", *(str(x.lmdb_pages) for x in samples)],
            ["LMDB file (KiB)", *(str(x.lmdb_bytes // 1024) for x in samples)],
            ["leftovers", "", "", str(len(self.leftovers))],
            ["failed containers", "", "", str(len(self.failures))],
        ]
        return markdown_table(["", "before", "half way", "after"], body)


def run_in_pty(argv: list[str], timeout: float = COMMAND_TIMEOUT) -> None:
    """Run a client whose stdin, stdout and stderr are a fresh pty, reading it until the client exits."""
    master, slave = pty.openpty()
    try:
        process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    finally:
        os.close(slave)
    seen = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while process.poll() is None or select.select([master], [], [], 0)[0]:
            if time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise CommandFailed(argv, -1, f"timed out after {timeout:.0f}s")
            if select.select([master], [], [], 0.1)[0]:
                try:
                    seen += os.read(master, 4096)
                except OSError:  # EIO: every slave end is closed
                    break
    finally:
        os.close(master)
    if process.wait() != 0:
        raise CommandFailed(argv, process.returncode, seen.decode(errors="replace"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Churn:
    """Runs one container's life in one of the four shapes."""

    client: Client
    image: str

    def __call__(self, index: int, cid: str) -> None:
        tty = index % 4 >= 2
        if index % 2 == 0:
            self._run(["run", "--rm", *(["-t"] if tty else []), self.image, cid, "true"], tty)
            return
        self._run(["run", "-d", *(["-t"] if tty else []), self.image, cid, "sleep", "1000"], tty)
        self._run(["tasks", "exec", *(["-t"] if tty else []), "--exec-id", "e", cid, "true"], tty)
        self.client.run("tasks", "kill", "-s", "KILL", cid, timeout=COMMAND_TIMEOUT)
        _until(lambda: self.client.try_run("tasks", "rm", cid), f"task {cid} to stop")
        self.client.run("containers", "rm", cid, timeout=COMMAND_TIMEOUT)

    def _run(self, args: list[str], tty: bool) -> None:
        if tty:
            run_in_pty(self.client.argv(*args))
        else:
            self.client.run(*args, timeout=COMMAND_TIMEOUT)


def _until(predicate: Callable[[], bool], what: str, timeout: float = COMMAND_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise CommandFailed([], -1, f"timed out waiting for {what}")
        time.sleep(0.05)


def collect_garbage(client: Client) -> None:
    client.run("leases", "create", "--id", "soak-gc")
    client.run("leases", "rm", "--sync", "soak-gc")


def sample(daemon: daemons.Daemon, client: Client) -> Sample:
    """laminad's figures right after a collection, so that garbage not yet collected is not counted."""
    collect_garbage(client)
    db_file = os.path.join(daemon.base, "root", LMDB_FILE)
    return Sample(fds=len(os.listdir(f"/proc/{daemon.pid}/fd")), rss_mib=procs.rss_mib(daemon.pid),
                  lmdb_bytes=os.path.getsize(db_file), lmdb_pages=lmdb_pages_in_use(os.path.dirname(db_file)))


def lmdb_pages_in_use(path: str) -> int:
    """The B-tree pages laminad's metadata occupies: what grows if records leak, whatever the file's size.

    LMDB lets another process read while laminad writes; the handle is read-only
    and closed at once, so it holds no snapshot that would keep pages from reuse.
    """
    import lmdb

    env = lmdb.open(path, readonly=True, lock=True, subdir=True, max_dbs=0)
    try:
        st = env.stat()
    finally:
        env.close()
    return int(st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"])


def leftovers(daemon: daemons.Daemon, client: Client, ids: list[str]) -> list[str]:
    """Everything the churned containers should not have left behind, one line each."""
    ns = client.namespace
    found = [f"mount {p}" for p in procs.mounts_below(daemon.base)]
    found += [f"shim process {pid}: {' '.join(procs.cmdline(pid))[:120]}"
              for pid in procs.pids_mentioning(f"-namespace {ns} ", exclude=[daemon.pid])]
    found += [f"task record {cid}" for cid in tasks(client)]
    found += [f"container record {cid}" for cid in client.run("containers", "ls", "-q").split()]
    found += [f"active snapshot {line.split()[0]}" for line in client.run("snapshots", "ls").splitlines()[1:]
              if line.split()[-1:] == ["Active"]]
    runtime_dirs = [os.path.join(daemon.base, top, RUNTIME_DIR, ns) for top in ("state", "root")]
    for where in [*runtime_dirs, f"/run/containerd/runc/{ns}"]:
        found += [f"directory {where}/{name}" for name in (os.listdir(where) if os.path.isdir(where) else [])]
    for cgroup_dir in procs.namespace_dirs(ns):
        found += [f"cgroup {e.path}" for e in os.scandir(cgroup_dir) if e.is_dir()]
    for cid in ids:
        socket = socket_address(daemon.address, ns, cid).removeprefix("unix://")
        if os.path.exists(socket):
            found.append(f"shim socket {socket} ({cid})")
        found += [f"FIFO {p}" for p in glob.glob(FIFO_GLOB.format(id=cid))]
    return found


def _churn_all(churn: Churn, ids: list[str], start: int, concurrency: int) -> list[str]:
    def one(index: int) -> str:
        try:
            churn(index, ids[index])
        except CommandFailed as exc:
            return f"{ids[index]}: {exc} {exc.stderr.strip()[:200]}"
        return ""

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return [failure for failure in pool.map(one, range(start, len(ids))) if failure]


def soak(containers: int, concurrency: int = 4) -> Result:
    """Start laminad, churn ``containers`` containers through it, measure and look for leftovers."""
    daemons.byte_compile()
    base = tempfile.mkdtemp(prefix="lb-", dir="/tmp")
    ns = f"soak-{secrets.token_hex(3)}"
    daemon = daemons.start(daemons.LAMINA, base)
    client = Client(CTR, daemon.address, ns)
    try:
        client.run("images", "import", images.busybox(base))
        churn = Churn(client=client, image=images.BUSYBOX_NAME)
        ids = [f"{ns}-{i}" for i in range(containers)]
        warm = min(WARM_UP, containers)
        half = (warm + containers) // 2
        started = time.perf_counter()
        failures = _churn_all(churn, ids[:warm], 0, concurrency)
        before = sample(daemon, client)
        failures += _churn_all(churn, ids[:half], warm, concurrency)
        middle = sample(daemon, client)
        failures += _churn_all(churn, ids, half, concurrency)
        wall = time.perf_counter() - started
        after = sample(daemon, client)
        return Result(containers=containers, wall_s=wall, before=before, middle=middle, after=after,
                      leftovers=tuple(leftovers(daemon, client, ids)), failures=tuple(failures))
    finally:
        for cid in tasks(client) if daemon.process.poll() is None else {}:
            client.try_run("tasks", "rm", "-f", cid)
        daemons.stop(daemon)
        procs.remove_empty_dirs(procs.namespace_dirs(ns))
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=200, help="how many containers to churn (default 200)")
    parser.add_argument("--concurrency", type=int, default=4, help="containers at a time (default 4)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("python -m bench.soak: needs root (runc, overlay mounts)", file=sys.stderr)
        return 2
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    result = soak(args.containers, args.concurrency)
    print(result.table())
    for problem in result.problems():
        print(f"problem: {problem}")
    return 1 if result.problems() else 0


if __name__ == "__main__":
    sys.exit(main())
