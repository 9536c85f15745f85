"""Workloads that move bytes: content ingest, image import+unpack, and pull from a loopback registry.

Each iteration removes what it wrote (``content rm``, ``images rm --sync``)
and that removal must succeed: a blob or layer left behind would turn the
next iteration into a no-op and flatter the side that failed to delete.
"""

from __future__ import annotations

import os
from functools import partial

from bench import images
from bench import registry as registrymod
from bench.ctr import has_lamina_command, lamina_cli
from bench.daemons import CONTAINERD, LAMINA, Daemon
from bench.stats import Better, Metric
from bench.workloads.base import Context, Samples, reason

MIB = 1024 * 1024
REPOSITORY, TAG = "bench/big", "1"


def _salted(ctx: Context, blob: images.Blob, i: int) -> tuple[str, str, int]:
    """A per-iteration suffix for the blob, and the digest and size of blob + suffix.

    Deleted content stays on disk until the daemon's garbage collector runs,
    and an ingest whose digest is already on disk is committed without
    reading a byte, in containerd as in lamina.  A fresh suffix per
    iteration makes every ingest new; the suffix's digest comes from a copy
    of the blob's hash state, so nothing is re-read.
    """
    state = ctx.input("blob-hash", lambda: images.hash_state(blob.path))
    salt = f"{ctx.run_id}-{i}\n".encode()
    path = os.path.join(ctx.workdir, f"salt-{i}")
    with open(path, "wb") as f:
        f.write(salt)
    h = state.copy()
    h.update(salt)
    return path, "sha256:" + h.hexdigest(), blob.size + len(salt)


def ingest(ctx: Context) -> list[Metric]:
    blob = ctx.input("blob", images.ingest_blob)
    s = Samples()
    for i, d in ctx.ab(ctx.plan.ingest_runs):
        salt, digest, size = _salted(ctx, blob, i)

        def once(d: Daemon = d, i: int = i, salt: str = salt, digest: str = digest, size: int = size) -> float:
            seconds = d.ctr.timed("content", "ingest", "--expected-size", str(size), "--expected-digest", digest,
                                  f"{ctx.run_id}-ingest-{i}", stdin_paths=(blob.path, salt))
            d.ctr.run("content", "rm", digest)
            return size / MIB / seconds
        s.run(d, once)
    return [s.metric("ingest", f"ctr content ingest {blob.size // MIB} MiB", "MiB/s", better=Better.HIGHER)]


def _big(ctx: Context) -> images.BigImage:
    return ctx.input("big", images.big_image)  # type: ignore[no-any-return]


def describe(big: images.BigImage) -> str:
    return f"{big.raw_bytes / MIB:.0f} MiB, {big.files} files, {big.layers} layers"


def blob_count(d: Daemon) -> int:
    """Blobs on disk, not in the metadata: a blob deleted from the metadata but not yet collected
    would let the next import or pull skip its download and write."""
    blobs = os.path.join(d.base, "root", "io.containerd.content.v1.content", "blobs", "sha256")
    return len(os.listdir(blobs)) if os.path.isdir(blobs) else 0


def snapshot_count(d: Daemon) -> int:
    return len(d.ctr.run("snapshots", "ls").splitlines()[1:])


def _check_unpacked(d: Daemon, big: images.BigImage, before: int) -> None:
    """An import or pull that skipped the unpack would win unfairly: insist on one snapshot per layer."""
    made = snapshot_count(d) - before
    if made < big.layers:
        raise RuntimeError(f"only {made} new snapshot(s) for {big.layers} layers: the image was not unpacked")


def remove_image(d: Daemon, name: str, baseline: int) -> None:
    """``images rm --sync`` and check that garbage collection took the blobs with it."""
    d.ctr.run("images", "rm", "--sync", name)
    left = blob_count(d) - baseline
    if left > 0:
        raise RuntimeError(f"images rm --sync left {left} blob(s) behind, so the next iteration would be warm")


def import_unpack(ctx: Context) -> list[Metric]:
    big = _big(ctx)
    s = Samples()
    for _i, d in ctx.ab(ctx.plan.import_runs):
        def once(d: Daemon = d) -> float:
            baseline, snaps = blob_count(d), snapshot_count(d)
            seconds = d.ctr.timed("images", "import", big.path)
            _check_unpacked(d, big, snaps)
            remove_image(d, big.name, baseline)
            return seconds
        s.run(d, once)
    return [s.metric("import", f"ctr images import+unpack ({describe(big)})", "s")]


def _publish(ctx: Context) -> str:
    """Start the registry and, unless its cached store has it, push the big image there from containerd.

    The store is cached beside the image, keyed by the same content key, so
    the push (an import plus an upload) is paid once per image, not per run.
    """
    big = _big(ctx)
    store = os.path.splitext(big.path)[0] + ".registry"
    reg = registrymod.start(ctx.base, store)
    ctx.cleanups.append(lambda: registrymod.stop(reg))
    ref = f"{reg.host}/{REPOSITORY}:{TAG}"
    if not registrymod.has_manifest(reg, REPOSITORY, TAG):
        client = ctx.daemons[CONTAINERD].ctr
        client.run("images", "import", big.path)
        client.run("images", "tag", big.name, ref)
        client.run("images", "push", "--plain-http", ref)
        client.run("images", "rm", "--sync", ref, big.name)
    return ref


def pull(ctx: Context) -> list[Metric]:
    big = _big(ctx)
    name = f"ctr images pull --plain-http ({describe(big)})"
    by_cli = f"lamina images pull vs ctr ({describe(big)})"
    try:
        ref = _publish(ctx)
    except Exception as exc:
        s = Samples()
        s.fail(CONTAINERD, f"publishing to the registry: {reason(exc)}")
        s.fail(LAMINA, "needs the registry, which could not be set up")
        return [s.metric("pull", name, "s"), s.metric("pull", by_cli, "s", by="lamina CLI")]

    def pull_once(d: Daemon, tool: str = "ctr") -> float:
        client = lamina_cli(d.address) if tool == "lamina" else d.ctr
        baseline, snaps = blob_count(d), snapshot_count(d)
        seconds = client.timed("images", "pull", "--plain-http", ref)
        _check_unpacked(d, big, snaps)
        remove_image(d, ref, baseline)
        return seconds

    # One containerd pull per iteration serves both rows: lamina via ctr and via its own CLI.
    use_cli = has_lamina_command("images", "pull")
    by_ctr, cli = Samples(), Samples()
    if not use_cli:
        cli.fail(LAMINA, "`lamina images pull` is not in the CLI yet")
        cli.fail(CONTAINERD, "compared only when `lamina images pull` exists")
    for _i, d in ctx.ab(ctx.plan.pull_runs):
        if d.name == CONTAINERD:
            if by_ctr.run(d, partial(pull_once, d)) and use_cli:
                cli.values[CONTAINERD].append(by_ctr.values[CONTAINERD][-1])
            continue
        by_ctr.run(d, partial(pull_once, d))
        if use_cli:
            cli.run(d, partial(pull_once, d, "lamina"))
    if CONTAINERD in by_ctr.failures:
        cli.fail(CONTAINERD, by_ctr.failures[CONTAINERD].split(": ", 1)[1])
    return [by_ctr.metric("pull", name, "s"), cli.metric("pull", by_cli, "s", by="lamina CLI")]


