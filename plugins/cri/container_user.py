"""A container's user from its image's ``/etc/passwd`` and ``/etc/group``, read without trusting the image.

containerd mounts the container's snapshot and reads those files through
``fs.RootPath`` (``WithUser``, ``WithAdditionalGIDs``).  Here the snapshot's
mounts go read-only on a private temp dir and each file is opened one
component at a time with ``O_NOFOLLOW`` relative to the root's fd: a
symlinked ``/etc`` or ``/etc/passwd`` counts as absent rather than leading
out of the image.  The two files (at most 1 MiB each) are copied into a
fresh dir, where :func:`lamina.client.spec.resolve_user` reads them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence

from lamina.client import spec as oci
from lamina.core.errors import InvalidArgument
from lamina.core.mount_ops import mount_all, unmount_all
from lamina.core.mounts import Mount
from lamina.plugins.cri.container_spec import User

MAX_FILE = 1 << 20


def _read_inside(root_fd: int, *names: str) -> bytes | None:
    fd = os.dup(root_fd)
    try:
        for name in names[:-1]:
            next_fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        leaf = os.open(names[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    with os.fdopen(leaf, "rb") as f:
        return f.read(MAX_FILE)


def _copy_user_files(root: str, to: str) -> None:
    os.makedirs(os.path.join(to, "etc"))
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in ("passwd", "group"):
            data = _read_inside(root_fd, "etc", name)
            if data is not None:
                with open(os.path.join(to, "etc", name), "wb") as f:
                    f.write(data)
    finally:
        os.close(root_fd)


def resolve(mounts: Sequence[Mount], work_dir: str, user: str, supplemental: Sequence[int]) -> User:
    """The numeric user ``user`` names in the image, root when empty (blocking: run in a thread)."""
    os.makedirs(work_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        files, rootfs = os.path.join(tmp, "files"), os.path.join(tmp, "rootfs")
        os.mkdir(rootfs)
        mount_all([Mount(type=m.type, source=m.source, options=(*m.options, "ro"), target=m.target)
                   for m in mounts], rootfs)
        try:
            _copy_user_files(rootfs, files)
        finally:
            unmount_all(rootfs, detach=True)
        try:
            uid, gid = oci.resolve_user(files, user) if user else (0, 0)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        extra = oci.supplementary_gids(files, user.partition(":")[0] or "0")
        return User(uid=uid, gid=gid, additional_gids=tuple(dict.fromkeys([*extra, *supplemental])))
