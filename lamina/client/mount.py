"""Mount an image's root filesystem on a host path, as ``ctr images mount|unmount`` do.

The target path is also the lease id and the snapshot key: the lease
(``containerd.io/gc.ref.snapshot.<snapshotter>`` = target, expiring after
24 h) keeps the view from the collector, and ``unmount --rm`` finds both by
the path alone.  A lease that already exists is taken as a re-mount and the
work continues without one; a snapshot that already exists is reused
(``Snapshots.Mounts``).  The mounts the daemon returns are performed here,
in the client's mount namespace, with ``mount(8)``; unmounting repeats
``umount2`` until the path is no longer a mount point, as containerd's
``mount.UnmountAll``.  The client library stays free of the daemon's mount
code, which needs more than a client should import.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import subprocess
import time
from collections.abc import Sequence
from contextlib import suppress
from datetime import timedelta
from typing import TYPE_CHECKING

from lamina.client import archive, unpack
from lamina.client._transport import current_lease
from lamina.core.errors import AlreadyExists, NotFound
from lamina.core.mounts import Mount
from lamina.core.platforms import Platform

if TYPE_CHECKING:
    from lamina.client.client import Client

LEASE_EXPIRE = timedelta(hours=24)
SNAPSHOT_LABEL = "containerd.io/gc.ref.snapshot."
UNMOUNT_ATTEMPTS = 50  # containerd's unmount retries EBUSY 50 times, 50 ms apart


def mount_all(mounts: Sequence[Mount], target: str) -> None:
    """``mount.All``: each mount on ``target`` in order, with ``mount(8)``."""
    for m in mounts:
        argv = ["mount"]
        if m.type and m.type != "bind":
            argv += ["-t", m.type]
        if m.options:
            argv += ["-o", ",".join(m.options)]
        result = subprocess.run([*argv, m.source, target], capture_output=True, text=True)
        if result.returncode != 0:
            raise OSError(f"mount {m.type} {m.source} on {target}: {result.stderr.strip() or result.returncode}")


def unmount_all(target: str) -> None:
    """``mount.UnmountAll``: unmount ``target`` until it is no longer a mount point (EINVAL)."""
    libc = ctypes.CDLL(None, use_errno=True)
    path = os.fsencode(target)
    attempts = 0
    while True:
        if libc.umount2(path, 0) == 0:
            attempts = 0
            continue
        err = ctypes.get_errno()
        if err == errno.EINVAL:
            return
        attempts += 1
        if err != errno.EBUSY or attempts >= UNMOUNT_ATTEMPTS:
            raise OSError(err, f"unmount {target}: {os.strerror(err)}")
        time.sleep(0.05)


async def mount(client: Client, ref: str, target: str, *, rw: bool = False, snapshotter: str = "",
                platform: Platform | None = None) -> str:
    """Unpack image ``ref`` if needed and mount its top snapshot on ``target``; returns the chain id."""
    snapshotter = snapshotter or await unpack.default_snapshotter(client)
    try:
        await client.leases.create(target, labels={SNAPSHOT_LABEL + snapshotter: target}, expire=LEASE_EXPIRE)
        lease = target
    except AlreadyExists:
        lease = None
    token = current_lease.set(lease)
    try:
        image = await client.images.get(ref)
        chain_id = await archive.unpack_image(client, image, snapshotter=snapshotter, platform=platform)
        create = client.snapshots.prepare if rw else client.snapshots.view
        try:
            mounts = await create(target, chain_id, snapshotter=snapshotter)
        except AlreadyExists:
            mounts = await client.snapshots.mounts(target, snapshotter=snapshotter)
        try:
            await asyncio.to_thread(mount_all, mounts, target)
        except BaseException:
            with suppress(NotFound):
                await client.snapshots.remove(target, snapshotter=snapshotter)
            raise
        return chain_id
    except BaseException:
        if lease:
            await client.leases.delete(lease)
        raise
    finally:
        current_lease.reset(token)


async def mounted_snapshotter(client: Client, target: str) -> str:
    """The snapshotter the mount lease of ``target`` names, else the namespace's default."""
    for lease in await client.leases.list():
        if lease.id == target:
            for key, value in lease.labels.items():
                if key.startswith(SNAPSHOT_LABEL) and value == target:
                    return key.removeprefix(SNAPSHOT_LABEL)
    return await unpack.default_snapshotter(client)


async def unmount(client: Client, target: str, *, remove: bool = False, snapshotter: str = "") -> None:
    """Unmount ``target``; with ``remove`` also drop its lease and snapshot (either missing is fine)."""
    await asyncio.to_thread(unmount_all, target)
    if not remove:
        return
    snapshotter = snapshotter or await mounted_snapshotter(client, target)
    with suppress(NotFound):
        await client.leases.delete(target)
    with suppress(NotFound):
        await client.snapshots.remove(target, snapshotter=snapshotter)
