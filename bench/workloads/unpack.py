"""The unpack alone, on both daemons and for GNU ``tar``, over the small-files and the big image.

An import is a copy of the blobs and an unpack; users wait on the unpack at
every first run of a new image, so it gets rows of its own.  Each iteration
imports with ``--no-unpack`` (untimed), then times ``ctr images mount``, which
unpacks every layer (Snapshots.Prepare, Diff.Apply, Snapshots.Commit per
layer, containerd's ``image.Unpack``) and then only adds one view and one
mount.  Each timed part starts after a ``sync`` (untimed), so that none
pays for writing back the pages the one before it left dirty.  Then
``images unmount --rm`` and ``images rm --sync`` remove it all,
checked as for import, so the next iteration is cold.

The floor is GNU ``tar -xzf`` of the same layer blobs, each into its own new
directory on the same filesystem as the daemons' roots, followed by ``sync
--file-system`` on it: the writes an unpacker cannot avoid, with the data on
disk.  It runs in every iteration between the two daemons.  Neither daemon
syncs a layer (containerd 1.6's ``archive.Apply`` and overlay snapshotter
make no fsync or syncfs), so their rows leave the writeback to the kernel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable

from bench import images
from bench.daemons import Daemon
from bench.stats import Metric, Side
from bench.workloads.base import Context, Samples, reason
from bench.workloads.content import blob_count, describe, remove_image, snapshot_count

TAR_TIMEOUT = 600.0


def _unpack_once(ctx: Context, d: Daemon, image: images.BigImage) -> float:
    baseline, snaps = blob_count(d), snapshot_count(d)
    d.ctr.run("images", "import", "--no-unpack", image.path)
    target = os.path.join(ctx.workdir, f"mnt-{d.name}")
    os.makedirs(target, exist_ok=True)
    os.sync()
    seconds = d.ctr.timed("images", "mount", image.name, target)
    d.ctr.run("images", "unmount", "--rm", target)
    made = snapshot_count(d) - snaps
    if made < image.layers:
        raise RuntimeError(f"only {made} new snapshot(s) for {image.layers} layers: the image was not unpacked")
    remove_image(d, image.name, baseline)
    return seconds


def _tar_once(ctx: Context, blobs: list[str]) -> float:
    """``tar -xzf`` of each layer into a new dir, then one ``sync --file-system``; wall seconds."""
    dest = os.path.join(ctx.workdir, "tar-floor")
    os.makedirs(dest)
    os.sync()
    try:
        start = time.perf_counter()
        for i, blob in enumerate(blobs):
            layer_dir = os.path.join(dest, str(i))
            os.mkdir(layer_dir)
            subprocess.run(["tar", "-xzf", blob, "-C", layer_dir], check=True, capture_output=True,
                           timeout=TAR_TIMEOUT)
        subprocess.run(["sync", "--file-system", dest], check=True, timeout=TAR_TIMEOUT)
        return time.perf_counter() - start
    finally:
        shutil.rmtree(dest)


def _image(ctx: Context, key: str, build: Callable[[], images.BigImage]) -> Metric:
    image: images.BigImage = ctx.input(key, build)
    blob_dir = os.path.join(ctx.workdir, f"{key}-blobs")
    os.makedirs(blob_dir, exist_ok=True)
    blobs = images.layer_blobs(image, blob_dir)
    s = Samples()
    floor: list[float] = []
    floor_failure = ""
    for i, d in ctx.ab(ctx.plan.unpack_runs):
        s.run(d, lambda d=d: _unpack_once(ctx, d, image))  # type: ignore[misc]
        if len(floor) == i and not floor_failure:  # after the first daemon of each iteration
            try:
                floor.append(_tar_once(ctx, blobs))
            except (OSError, subprocess.SubprocessError) as exc:
                floor_failure = f"n/a: {reason(exc)}"
    shutil.rmtree(blob_dir)
    return s.metric("unpack", f"unpack alone: ctr images mount after import --no-unpack ({describe(image)})",
                    "s", floor=Side(samples=tuple(floor), na=floor_failure))


def unpack(ctx: Context) -> list[Metric]:
    return [_image(ctx, "small", images.small_files_image), _image(ctx, "big", images.big_image)]
