"""Containers from images, and their removal, with ``ctr``'s call sequence (``cmd/ctr/commands/run``).

:func:`new_container` is ``ctr containers create`` / the first half of ``ctr
run``: Images.Get; the image's config from the content store; Snapshots.Stat
of its top chain id (unpacking first when missing); then, under a lease,
Snapshots.Prepare(key = id, parent = top chain), the spec (``lamina.client.spec``;
users and groups read from the snapshot, mounted read-only on a temp dir as
``mount.WithTempMount``) and Containers.Create.  A duplicate id fails at
Prepare with ``AlreadyExists``, before any container is created.

:func:`delete_container` is ``ctr containers rm``: a stopped task is deleted
first (and the FIFOs it reported removed), a live one refused; then the
snapshot and the record.  Running processes is :mod:`lamina.client.process`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lamina.client import cio, manifests, spec
from lamina.client.containers import DEFAULT_RUNTIME, RUNC_OPTIONS_TYPE_URL, Container, Runtime
from lamina.client.tasks import Status
from lamina.client.unpack import chain_ids, default_snapshotter, unpack
from lamina.core.errors import FailedPrecondition, NotFound
from lamina.core.mount_ops import mounted
from lamina.core.mounts import Mount
from lamina.core.platforms import host

if TYPE_CHECKING:
    from lamina.client.client import Client
    from lamina.client.descriptors import Descriptor
    from lamina.client.images import Image

STOP_SIGNAL_LABEL = "io.containerd.image.config.stop-signal"
RUNC_RUNTIMES = frozenset({"io.containerd.runc.v2"})  # ctr sends empty runc Options only for these


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerOptions:
    """What ``ctr run`` / ``ctr containers create`` take besides IMAGE and ID."""

    args: Sequence[str] = ()
    env: Sequence[str] = ()
    mounts: Sequence[Mapping[str, Any]] = ()  # OCI mounts; see spec.parse_mount
    tty: bool = False
    net_host: bool = False
    runtime: str = DEFAULT_RUNTIME
    snapshotter: str = ""  # empty: the namespace's default, else overlayfs
    user: str = ""  # uid, name, uid:gid or name:group, resolved in the image's /etc files
    cwd: str = ""
    memory_limit: int = 0
    cpus: float = 0.0
    labels: Mapping[str, str] = field(default_factory=dict)


def _readonly(mounts: Sequence[Mount]) -> list[Mount]:
    """containerd's ``tryReadonlyMounts``: look, do not touch."""
    out = []
    for m in mounts:
        options = tuple(o for o in m.options if o not in ("rw", "ro"))
        out.append(dataclasses.replace(m, options=(*options, "ro")))
    return out


def build_spec(namespace: str, id: str, config: Mapping[str, Any], options: ContainerOptions,
               root: str) -> spec.Spec:
    """The spec ``ctr run`` would send, in the order its ``SpecOpts`` apply; ``root`` is the rootfs."""
    s = spec.default_spec(namespace, id)
    spec.with_env(s, options.env)
    spec.with_mounts(s, options.mounts)
    spec.with_image_config(s, config, ())
    image_user = (config.get("config") or {}).get("User") or ""
    user = options.user or image_user
    if user:
        uid, gid = spec.resolve_user(root, user)
        spec.with_user(s, uid, gid, spec.supplementary_gids(root, str(uid)))
    else:
        spec.with_user(s, 0, 0, spec.supplementary_gids(root, "root"))
    if options.args:
        spec.with_process_args(s, options.args)
    if options.cwd:
        spec.with_cwd(s, options.cwd)
    if options.tty:
        spec.with_tty(s)
    if options.net_host:
        spec.with_host_network(s)
    if options.cpus > 0:
        spec.with_cpus(s, options.cpus)
    if options.memory_limit:
        spec.with_memory_limit(s, options.memory_limit)
    spec.with_annotations(s, options.labels)
    if not s["process"].get("args"):
        raise FailedPrecondition(f"no command specified for container {id!r}: give one after the id")
    return spec.ordered(s)  # type: ignore[no-any-return]


async def image_config(client: Client, ref: str) -> tuple[Image, dict[str, Any], Descriptor]:
    """The image record, its config document for this host, and the manifest's descriptor."""
    image = await client.images.get(ref)
    walked, doc = await manifests.manifest(client.content, image.target, host())
    config = json.loads(await client.content.read_all(doc["config"]["digest"]))
    return image, config, walked[-1]


async def ensure_unpacked(client: Client, ref: str, snapshotter: str) -> tuple[Image, dict[str, Any], str]:
    """The image record, its config and top chain id, unpacked into ``snapshotter`` if it was not."""
    image, config, manifest = await image_config(client, ref)
    diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
    top = chain_ids(diff_ids)[-1] if diff_ids else ""
    if top:
        try:
            await client.snapshots.stat(top, snapshotter=snapshotter)
        except NotFound:
            async with client.lease():
                await unpack(client, manifest, snapshotter=snapshotter)
    return image, config, top


async def new_container(client: Client, id: str, ref: str, options: ContainerOptions = ContainerOptions()) -> Container:
    """Create container ``id`` from image ``ref`` with its own writable snapshot (key = ``id``)."""
    snapshotter = options.snapshotter or await default_snapshotter(client)
    image, config, top = await ensure_unpacked(client, ref, snapshotter)
    labels = dict((config.get("config") or {}).get("Labels") or {})
    labels.update(image.labels)
    labels.update(options.labels)
    labels[STOP_SIGNAL_LABEL] = (config.get("config") or {}).get("StopSignal") or "SIGTERM"
    runtime = Runtime(name=options.runtime,
                      options_type=RUNC_OPTIONS_TYPE_URL if options.runtime in RUNC_RUNTIMES else "")
    async with client.lease():
        await client.snapshots.prepare(id, top, snapshotter=snapshotter)
        try:
            mounts = await client.snapshots.mounts(id, snapshotter=snapshotter)
            with mounted(_readonly(mounts)) as root:
                oci = build_spec(client.namespace, id, config, options, root)
            container = Container(id=id, image=image.name, runtime=runtime, spec=oci, snapshotter=snapshotter,
                                  snapshot_key=id, labels=labels)
            return await client.containers.create(container)
        except BaseException:
            await client.snapshots.remove(id, snapshotter=snapshotter)
            raise


async def delete_task(client: Client, id: str) -> int | None:
    """Delete the stopped task of ``id`` and the FIFOs it reported; None when there is none.

    A running task is refused here, as ``ctr`` refuses it client-side.
    """
    try:
        task = await client.tasks.get(id)
    except NotFound:
        return None
    if task.status not in (Status.STOPPED, Status.UNKNOWN) and not (task.status is Status.CREATED and not task.pid):
        raise FailedPrecondition(f"task {id!r} must be stopped before deletion: {task.status.value.lower()}")
    deleted = await client.tasks.delete(id)
    cio.remove_paths(task.stdin, task.stdout, task.stderr)
    return deleted.exit_status


async def delete_container(client: Client, id: str) -> None:
    """``ctr containers rm``: a stopped task, the snapshot (``snapshot_key``), then the record."""
    try:
        task = await client.tasks.get(id)
    except NotFound:
        task = None
    if task is not None:
        if task.status not in (Status.STOPPED, Status.UNKNOWN) and not (task.status is Status.CREATED
                                                                          and not task.pid):
            raise FailedPrecondition(f"cannot delete a non stopped container: {task.status.value.lower()}")
        await delete_task(client, id)
    container = await client.containers.get(id)
    if container.snapshot_key and container.snapshotter:
        try:
            await client.snapshots.remove(container.snapshot_key, snapshotter=container.snapshotter)
        except NotFound:
            pass
    await client.containers.delete(id)
