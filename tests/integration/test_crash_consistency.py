"""laminad killed with SIGKILL at seeded random points of pull, import, ingest, create and start.

Each operation is timed once undisturbed; then, for every kill point, it is
started again and laminad is killed at a time drawn uniformly within that
duration.  After each restart: laminad answers within ``RESTART_LIMIT``;
every blob reads back with its digest; every image listed is complete, and
one reported unpacked runs with its files intact; a container started
before all this is still running; the same command run again succeeds (a
create that had gone through answers "already exists", and its object is
then whole); and once the dead command's leases are removed, garbage
collection leaves nothing but what the test keeps (no ingests, blobs,
snapshots or leases).

An ingest started without a lease (``ctr content ingest``) is, as in
containerd 1.6 (``metadata/content.go``), kept for 24 hours before garbage
collection may take it; here every one is resumed by the rerun instead.

The seed is printed; replay a failure with ``LAMINA_CRASH_SEED=<seed>``.
"""

from __future__ import annotations

import hashlib
import os
import random
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from bench import procs
from bench.ctr import CTR, Client, tasks
from bench.daemons import byte_compile
from tests.conftest import Daemon, finish, make_daemon, shims_of
from tests.fixtures_registry import Registry, drop_registry, make_registry, push_layout
from tests.images import Entry, busybox_entries, oci_archive
from tests.integration.test_runtime_support import needs_runc
from tests.waiting import eventually

pytestmark = [needs_runc, pytest.mark.timeout(240)]

KILLS_PER_OPERATION = 5
RESTART_LIMIT = 2.0
SHIM_EXIT_TIMEOUT = 20.0
DATA_FILES = {"data/a": 3 << 20, "data/b": 2 << 20, "more/c": 3 << 20}
INGEST_BYTES = 24 << 20
CONTENT_DIR = "io.containerd.content.v1.content"
OVERLAY_DIR = "io.containerd.snapshotter.v1.overlayfs"


@dataclass
class World:
    """The daemon under test and what the operations need."""

    daemon: Daemon
    ctr: Client
    registry: Registry
    seed: int
    base_image: str
    payload_archive: str
    payload_files: dict[str, str]  # path in the image -> sha256
    ingest_path: str
    ingest_digest: str
    keeper_pid: int
    kept_blobs: set[str]
    kept_snapshots: set[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation:
    """One command to kill laminad under; ``argv(n)`` is the n-th attempt's command."""

    name: str
    argv: Callable[[int], list[str]]
    stdin: str = ""
    prepare: Callable[[World, int], object] = lambda world, n: None
    verify: Callable[[World, int], object] = lambda world, n: None
    creates: Callable[[World, int], bool] | None = None  # whether "already exists" is the object, whole
    reset: Callable[[World, int], object] = lambda world, n: None


def _seed() -> int:
    seed = int(os.environ.get("LAMINA_CRASH_SEED") or secrets.randbits(32))
    print(f"crash consistency seed: {seed} (replay with LAMINA_CRASH_SEED={seed})")
    return seed


def _payload(rng: random.Random) -> tuple[bytes, dict[str, str]]:
    """busybox plus two layers of incompressible files, so that pull and unpack take a while."""
    data = {path: rng.randbytes(size) for path, size in DATA_FILES.items()}
    first = [Entry(path="data", is_dir=True, mode=0o755)]
    first += [Entry(path=p, data=d) for p, d in data.items() if p.startswith("data/")]
    second = [Entry(path="more", is_dir=True, mode=0o755)]
    second += [Entry(path=p, data=d) for p, d in data.items() if p.startswith("more/")]
    archive = oci_archive([busybox_entries(), first, second], "crash.local/payload:1")
    return archive, {p: hashlib.sha256(d).hexdigest() for p, d in data.items()}


def _ids(out: str) -> set[str]:
    return set(out.split())


def _snapshot_keys(ctr: Client) -> set[str]:
    return {line.split()[0] for line in ctr.run("snapshots", "ls").splitlines()[1:] if line.strip()}


@pytest.fixture
def world(tmp_path: object) -> Iterator[World]:
    if not os.path.exists(CTR):
        pytest.skip("the reference client /usr/bin/ctr (Debian package containerd) is not installed")
    if not os.path.exists("/bin/busybox"):
        pytest.skip("busybox-static is not installed")
    seed = _seed()
    rng = random.Random(seed)
    byte_compile()  # restarts are timed: not the compiler's
    namespace = f"crash-{secrets.token_hex(3)}"
    registry = make_registry()
    daemon = make_daemon()
    try:
        daemon.start()
        ctr = Client(CTR, daemon.address, namespace)
        archive, files = _payload(rng)
        push_layout(registry.host, "crash/payload", "1", [archive])
        payload_archive = f"{daemon.base}/payload.tar"
        base_archive = f"{daemon.base}/base.tar"
        with open(payload_archive, "wb") as f:
            f.write(archive)
        with open(base_archive, "wb") as f:
            f.write(oci_archive([busybox_entries()], "crash.local/base:1"))
        ingest_path = f"{daemon.base}/ingest.bin"
        blob = rng.randbytes(INGEST_BYTES)
        with open(ingest_path, "wb") as f:
            f.write(blob)
        ctr.run("images", "import", base_archive)
        ctr.run("run", "-d", "crash.local/base:1", "keeper", "sleep", "100000")
        keeper_pid, status = tasks(ctr)["keeper"]
        assert status == "RUNNING"
        w = World(daemon=daemon, ctr=ctr, registry=registry, seed=seed, base_image="crash.local/base:1",
                  payload_archive=payload_archive, payload_files=files, ingest_path=ingest_path,
                  ingest_digest="sha256:" + hashlib.sha256(blob).hexdigest(), keeper_pid=keeper_pid,
                  kept_blobs=_ids(ctr.run("content", "ls", "-q")), kept_snapshots=_snapshot_keys(ctr))
        yield w
        ctr.run("tasks", "kill", "-s", "KILL", "keeper")
        eventually(lambda: tasks(ctr)["keeper"][1] == "STOPPED", 30, "the keeper to stop")
        ctr.run("tasks", "rm", "keeper")
        ctr.run("containers", "rm", "keeper")
    finally:
        if daemon.process is None:
            daemon.start()
        finish(daemon)
        drop_registry(registry)
        procs.remove_empty_dirs(procs.namespace_dirs(namespace))  # runc's state root, the cgroup


# -- the operations ---------------------------------------------------------------------------------


def _pull_ref(world: World) -> str:
    return f"{world.registry.host}/crash/payload:1"


def _run_payload(world: World, image: str, n: int) -> None:
    """The image runs, and its files are the layers' (the snapshot chain is complete)."""
    out = world.ctr.run("run", "--rm", image, f"chk-{n}", "sha256sum", *sorted(world.payload_files))
    sums = {line.split()[1]: line.split()[0] for line in out.splitlines()}
    assert sums == {path: digest for path, digest in world.payload_files.items()}, out


def _remove_image(image: str) -> Callable[[World, int], object]:
    return lambda world, n: world.ctr.run("images", "rm", "--sync", image)


def _container_whole(world: World, cid: str) -> bool:
    """A container record exists, and the snapshot it names is there."""
    info = world.ctr.run("containers", "info", cid)
    return f'"SnapshotKey": "{cid}"' in info and cid in _snapshot_keys(world.ctr)


def _remove_task(world: World, cid: str) -> None:
    if cid in tasks(world.ctr):
        world.ctr.try_run("tasks", "kill", "-s", "KILL", cid)
        eventually(lambda: tasks(world.ctr)[cid][1] != "RUNNING", 30, f"task {cid} to stop")
        world.ctr.run("tasks", "rm", "-f", cid)
    world.ctr.run("containers", "rm", cid)


def operations(world: World) -> list[Operation]:
    pulled = _pull_ref(world)
    imported = "crash.local/payload:1"
    return [
        Operation(name="pull", argv=lambda n: ["images", "pull", "--plain-http", pulled],
                  verify=lambda w, n: _run_payload(w, pulled, n), reset=_remove_image(pulled)),
        Operation(name="import", argv=lambda n: ["images", "import", world.payload_archive],
                  verify=lambda w, n: _run_payload(w, imported, n), reset=_remove_image(imported)),
        Operation(name="ingest", stdin=world.ingest_path,
                  argv=lambda n: ["content", "ingest", "--expected-digest", world.ingest_digest,
                                  "--expected-size", str(INGEST_BYTES), "crash-ingest"],
                  verify=lambda w, n: _check_blob(w, w.ingest_digest),
                  reset=lambda w, n: w.ctr.run("content", "rm", w.ingest_digest)),
        Operation(name="create", argv=lambda n: ["containers", "create", world.base_image, f"new-{n}", "true"],
                  creates=lambda w, n: _container_whole(w, f"new-{n}"),
                  reset=lambda w, n: w.ctr.run("containers", "rm", f"new-{n}")),
        Operation(name="start", argv=lambda n: ["tasks", "start", "-d", f"task-{n}"],
                  prepare=lambda w, n: w.ctr.run("containers", "create", w.base_image, f"task-{n}", "sleep", "1000")
                 ,
                  verify=lambda w, n: _task_running(w, f"task-{n}"),
                  creates=lambda w, n: _task_made(w, f"task-{n}"),
                  reset=lambda w, n: _remove_task(w, f"task-{n}")),
    ]


def _task_made(world: World, cid: str) -> bool:
    """The task exists with its process: created (the daemon died before Start) or running."""
    pid, status = tasks(world.ctr).get(cid, (0, "missing"))
    return status in ("CREATED", "RUNNING") and os.path.exists(f"/proc/{pid}")


def _task_running(world: World, cid: str) -> None:
    pid, status = tasks(world.ctr)[cid]
    assert status == "RUNNING" and os.path.exists(f"/proc/{pid}"), (cid, pid, status)


# -- what must hold after a restart -----------------------------------------------------------------


def _check_blob(world: World, digest: str) -> None:
    """The blob reads back as its digest; one gone meanwhile must be gone from the listing too
    (a restarted laminad collects garbage soon after it starts)."""
    data = subprocess.run(world.ctr.argv("content", "get", digest), capture_output=True, timeout=60)
    if data.returncode != 0 and b"not found" in data.stderr:
        assert digest not in _ids(world.ctr.run("content", "ls", "-q")), f"blob {digest} listed but not there"
        return
    assert data.returncode == 0, f"blob {digest} does not read back: {data.stderr.decode(errors='replace')}"
    assert "sha256:" + hashlib.sha256(data.stdout).hexdigest() == digest, f"blob {digest} reads back different bytes"


def _check_blobs_on_disk(world: World) -> None:
    """Every file in blobs/ is whole: half-written bytes may only ever sit in an ingest."""
    blobs = os.path.join(world.daemon.root, CONTENT_DIR, "blobs", "sha256")
    for name in os.listdir(blobs):
        with open(os.path.join(blobs, name), "rb") as f:
            assert hashlib.file_digest(f, "sha256").hexdigest() == name, f"blob file {name} is not its digest"


def check_consistent(world: World, n: int) -> None:
    ctr = world.ctr
    pid, status = tasks(ctr)["keeper"]
    assert (pid, status) == (world.keeper_pid, "RUNNING") and os.path.exists(f"/proc/{pid}"), (pid, status)
    for digest in _ids(ctr.run("content", "ls", "-q")):
        _check_blob(world, digest)
    _check_blobs_on_disk(world)
    checked = ctr.run("images", "check").splitlines()[1:]
    for line in checked:
        assert " complete " in line, f"an image is listed but not fully present: {line}"
    ready = _ids(ctr.run("images", "check", "-q"))
    for image in ready - {world.base_image}:
        _run_payload(world, image, n)


def drop_leases(world: World) -> None:
    """Remove the leases a dead client left (as their expiry would), and collect garbage."""
    ctr = world.ctr
    for lease in _ids(ctr.run("leases", "ls", "-q")):
        ctr.run("leases", "rm", "--sync", lease)
    ctr.run("leases", "create", "--id", "gc-now")
    ctr.run("leases", "rm", "--sync", "gc-now")


def check_collected(world: World) -> None:
    """With no lease left, a collection leaves only what the test keeps."""
    ctr = world.ctr
    drop_leases(world)
    assert ctr.run("content", "active").splitlines()[1:] == []
    assert os.listdir(os.path.join(world.daemon.root, CONTENT_DIR, "ingest")) == []
    assert _ids(ctr.run("content", "ls", "-q")) == world.kept_blobs
    assert _snapshot_keys(ctr) == world.kept_snapshots
    # A shim whose events waited out laminad's death may take a few seconds more to exit: it
    # sends what is queued first (shim/events.py retries with growing pauses).
    keeper_shim = procs.ppid(world.keeper_pid)
    eventually(lambda: shims_of(world.daemon.address) == [keeper_shim], SHIM_EXIT_TIMEOUT,
               what="every shim but the keeper's to exit")
    on_disk = os.listdir(os.path.join(world.daemon.root, OVERLAY_DIR, "snapshots"))
    assert len(on_disk) == len(world.kept_snapshots), f"snapshot dirs {on_disk} for {world.kept_snapshots}"


# -- the test ---------------------------------------------------------------------------------------


def _start(world: World, op: Operation, n: int) -> subprocess.Popen[str]:
    stdin = open(op.stdin, "rb") if op.stdin else subprocess.DEVNULL  # noqa: SIM115 - closed below
    try:
        return subprocess.Popen(world.ctr.argv(*op.argv(n)), stdin=stdin, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
    finally:
        if op.stdin:
            stdin.close()  # type: ignore[union-attr]


def _timed(world: World, op: Operation, n: int) -> float:
    op.prepare(world, n)
    began = time.monotonic()
    client = _start(world, op, n)
    _, err = client.communicate(timeout=120)
    assert client.returncode == 0, f"{op.name} failed undisturbed: {err}"
    took = time.monotonic() - began
    op.verify(world, n)
    op.reset(world, n)
    check_collected(world)
    return took


def _restart(world: World) -> float:
    """SIGKILL laminad, start it again on the same dirs; seconds until it answers."""
    daemon = world.daemon
    assert daemon.process is not None
    daemon.process.kill()
    daemon.process.wait()
    daemon.process = None
    began = time.monotonic()
    daemon.start()
    return time.monotonic() - began


def _rerun(world: World, op: Operation, n: int) -> bool:
    """Run the killed command again: True if it ran, False if what it makes already existed, whole."""
    client = _start(world, op, n)  # a file on stdin: ctr resumes an ingest by seeking its input
    _, err = client.communicate(timeout=120)
    if client.returncode != 0 and op.creates and "already exists" in err:
        assert op.creates(world, n), f"{op.name} #{n}: {err.strip()}, but it is not whole"
        return False
    assert client.returncode == 0, f"{op.name} #{n} rerun failed: {err}"
    return True


def test_sigkill_at_random_points(world: World, tmp_path: str) -> None:
    rng = random.Random(world.seed + 1)
    ops = operations(world)
    durations = {op.name: _timed(world, op, 0) for op in ops}
    plan = [(op, n) for op in ops for n in range(1, KILLS_PER_OPERATION + 1)]
    rng.shuffle(plan)
    restarts = []
    for op, n in plan:
        op.prepare(world, n)
        at = rng.uniform(0, durations[op.name])
        client = _start(world, op, n)
        time.sleep(at)  # the fault injected: when to kill, not a wait for a condition
        took = _restart(world)
        client.communicate(timeout=60)
        restarts.append(took)
        where = f"{op.name} #{n} killed at {at:.3f}s of {durations[op.name]:.3f}s (seed {world.seed})"
        try:
            assert took < RESTART_LIMIT, f"laminad took {took:.2f}s to answer after restart"
            check_consistent(world, n)
            drop_leases(world)  # what the dead client held (a snapshot ctr prepared, say) is reclaimed
            if _rerun(world, op, n):
                op.verify(world, n)
            op.reset(world, n)
            check_collected(world)
        except AssertionError as exc:
            kept = shutil.copy(world.daemon.log_path, os.path.join(tmp_path, "laminad.log"))
            raise AssertionError(f"{where}: {exc}\n(laminad's log: {kept})") from None
    print(f"{len(plan)} kills; restart to answering: max {max(restarts):.2f}s, "
          f"mean {sum(restarts) / len(restarts):.2f}s; operations took {durations}")
