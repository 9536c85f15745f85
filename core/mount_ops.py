"""Performing ``Mount`` records on the host, as containerd's mount/mount_linux.go does.

Options are split the way ``parseMountOptions`` splits them: the words the
kernel knows as flags (``ro``, ``nosuid``, ``rbind``, ...) become ``MS_*``
bits, propagation words become a second ``mount(2)`` call, and everything
else is the filesystem's data string.  A read-only bind is a bind followed by
a ``MS_REMOUNT|MS_BIND|MS_RDONLY``, because the kernel ignores ``MS_RDONLY``
on the first bind call.  An overlay data string longer than a page is
shortened by making the lowerdirs relative to their common parent and
mounting from a thread with its own working directory (containerd forks a
child to ``chdir``; ``unshare(CLONE_FS)`` in a throwaway thread does the same
without touching the daemon's cwd).

The calls go straight to libc through ctypes: layer apply and rootfs setup
mount once per request, and a ``mount`` subprocess would cost more than the
syscall itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache

from lamina.core.errors import InvalidArgument, NotFound, NotImplemented_
from lamina.core.mounts import Mount

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000
MNT_DETACH = 0x2
_CLONE_FS = 0x200
_PROPAGATION = MS_SHARED | MS_PRIVATE | MS_SLAVE | MS_UNBINDABLE

# word -> (clear instead of set, flag bits); the table of mount_linux.go.
_FLAGS: dict[str, tuple[bool, int]] = {
    "async": (True, MS_SYNCHRONOUS),
    "atime": (True, MS_NOATIME),
    "bind": (False, MS_BIND),
    "defaults": (False, 0),
    "dev": (True, MS_NODEV),
    "diratime": (True, MS_NODIRATIME),
    "dirsync": (False, MS_DIRSYNC),
    "exec": (True, MS_NOEXEC),
    "mand": (False, MS_MANDLOCK),
    "noatime": (False, MS_NOATIME),
    "nodev": (False, MS_NODEV),
    "nodiratime": (False, MS_NODIRATIME),
    "noexec": (False, MS_NOEXEC),
    "nomand": (True, MS_MANDLOCK),
    "norelatime": (True, MS_RELATIME),
    "nostrictatime": (True, MS_STRICTATIME),
    "nosuid": (False, MS_NOSUID),
    "rbind": (False, MS_BIND | MS_REC),
    "relatime": (False, MS_RELATIME),
    "remount": (False, MS_REMOUNT),
    "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY),
    "strictatime": (False, MS_STRICTATIME),
    "suid": (True, MS_NOSUID),
    "sync": (False, MS_SYNCHRONOUS),
}
_PROPAGATION_FLAGS = {
    "private": MS_PRIVATE,
    "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE,
    "runbindable": MS_UNBINDABLE | MS_REC,
}
# overlayfs data keys (Documentation/filesystems/overlayfs.rst); anything
# else is refused here rather than as a bare EINVAL from the kernel.
_OVERLAY_KEYS = frozenset({
    "lowerdir", "upperdir", "workdir", "default_permissions", "redirect_dir",
    "index", "uuid", "nfs_export", "xino", "metacopy", "volatile", "userxattr",
    "verity",
})
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_BUSY_RETRIES = 50

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                        ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]


@dataclass(frozen=True, slots=True, kw_only=True)
class MountOptions:
    """A mount's options split as ``parseMountOptions`` splits them."""

    flags: int
    propagation: int
    data: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectDirs:
    """Where a layer can be written without mounting (see ``direct_dirs``)."""

    root: str
    lowers: tuple[str, ...] = ()
    overlay: bool = False


def parse_options(options: Sequence[str]) -> MountOptions:
    flags = propagation = 0
    data: list[str] = []
    for opt in options:
        if opt in _FLAGS:
            clear, bits = _FLAGS[opt]
            flags = flags & ~bits if clear else flags | bits
        elif opt in _PROPAGATION_FLAGS:
            propagation |= _PROPAGATION_FLAGS[opt]
        elif opt == "loop":
            raise NotImplemented_(f"mount option {opt!r}")
        else:
            data.append(opt)
    return MountOptions(flags=flags, propagation=propagation, data=tuple(data))


@cache
def _kernel_filesystems() -> frozenset[str]:
    with open("/proc/filesystems") as f:
        return frozenset(line.split()[-1] for line in f if line.strip())


def _validate(m: Mount, opts: MountOptions) -> None:
    if m.type in ("bind", "rbind"):
        if opts.data:
            raise InvalidArgument(f"bind mount of {m.source!r}: unknown options {list(opts.data)}")
        return
    if m.type not in _kernel_filesystems():
        raise InvalidArgument(f"mount type {m.type!r}")
    if m.type == "overlay":
        unknown = [d for d in opts.data if d.split("=", 1)[0] not in _OVERLAY_KEYS]
        if unknown:
            raise InvalidArgument(f"overlay mount: unknown options {unknown}")


def _raise_errno(err: int, what: str) -> None:
    msg = f"{what}: {os.strerror(err)}"
    if err == errno.EINVAL:
        raise InvalidArgument(msg)
    if err == errno.ENOENT:
        raise NotFound(msg)
    raise OSError(err, msg)


def _sys_mount(source: str, target: str, fstype: str, flags: int, data: str) -> int:
    rc = _libc.mount(os.fsencode(source), os.fsencode(target), os.fsencode(fstype),
                     flags, os.fsencode(data) if data else None)
    return ctypes.get_errno() if rc != 0 else 0


def _mount_in_dir(chdir: str, source: str, target: str, fstype: str, flags: int,
                  data: str) -> int:
    """mount(2) with relative data paths resolved from ``chdir``, cwd untouched."""
    result: list[int] = []

    def run() -> None:
        if _libc.unshare(_CLONE_FS) != 0:
            result.append(ctypes.get_errno())
            return
        try:
            os.chdir(chdir)
        except OSError as e:
            result.append(e.errno or errno.EIO)
            return
        result.append(_sys_mount(source, target, fstype, flags, data))

    t = threading.Thread(target=run, name="lamina-mount-chdir")
    t.start()
    t.join()
    return result[0]


def _compact_overlay_data(data: Sequence[str]) -> tuple[str, tuple[str, ...]]:
    """Make lowerdirs relative to their common parent; "" if that cannot help."""
    lowers: list[str] = []
    for d in data:
        if d.startswith("lowerdir="):
            lowers = d[len("lowerdir="):].split(":")
    if len(lowers) < 2:
        return "", tuple(data)
    common = os.path.commonpath(lowers)
    if common in ("", "/"):
        return "", tuple(data)
    # Keep at least one component in each relative path.
    if common in lowers:
        common = os.path.dirname(common)
    rel = ":".join(os.path.relpath(lower, common) for lower in lowers)
    return common, tuple(f"lowerdir={rel}" if d.startswith("lowerdir=") else d for d in data)


def mount_one(m: Mount, target: str) -> None:
    """Mount ``m`` on ``target``, as containerd's ``Mount.Mount``."""
    opts = parse_options(m.options)
    _validate(m, opts)
    flags = opts.flags
    if m.type in ("bind", "rbind") and not flags & MS_BIND:
        flags |= MS_BIND | (MS_REC if m.type == "rbind" else 0)
    data_items = opts.data
    chdir = ""
    if m.type == "overlay" and len(",".join(data_items)) >= _PAGE_SIZE:
        chdir, data_items = _compact_overlay_data(data_items)
    data = ",".join(data_items)
    what = f"mount {m.type} {m.source!r} on {target!r}"
    if not flags & MS_REMOUNT or data:
        if chdir:
            err = _mount_in_dir(chdir, m.source, target, m.type, flags, data)
        else:
            err = _sys_mount(m.source, target, m.type, flags, data)
        if err:
            _raise_errno(err, what)
    if opts.propagation:
        err = _sys_mount("", target, "", opts.propagation | MS_SILENT, "")
        if err:
            _raise_errno(err, f"{what}: set propagation")
    if flags & (MS_BIND | MS_RDONLY) == MS_BIND | MS_RDONLY:
        err = _sys_mount("", target, "", flags | MS_REMOUNT, "")
        if err:
            _libc.umount2(os.fsencode(target), MNT_DETACH)
            _raise_errno(err, f"{what}: remount read-only")


def mount_all(mounts: Sequence[Mount], target: str) -> None:
    """Mount each record in order on ``target`` (or ``target/<m.target>``).

    On failure the mounts already made are undone, so that a caller never
    has to guess what is left on the target.
    """
    target = os.path.abspath(target)
    done: list[str] = []
    try:
        for m in mounts:
            dest = os.path.join(target, m.target.lstrip("/")) if m.target else target
            mount_one(m, dest)
            done.append(dest)
    except BaseException:
        for dest in reversed(done):
            _libc.umount2(os.fsencode(dest), MNT_DETACH)
        raise


def unmount_all(target: str, *, detach: bool = False) -> None:
    """Unmount every mount stacked on ``target`` (containerd's ``UnmountAll``).

    EBUSY is retried for a while, as containerd does, because a process that
    just exited may still pin the mount.  Not being mounted is success.
    """
    path = os.fsencode(os.path.abspath(target))
    flags = MNT_DETACH if detach else 0
    busy = 0
    while True:
        if _libc.umount2(path, flags) == 0:
            continue
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOENT):
            return
        if err == errno.EBUSY and busy < _BUSY_RETRIES:
            busy += 1
            time.sleep(0.05)
            continue
        _raise_errno(err, f"unmount {target!r}")


@contextlib.contextmanager
def mounted(mounts: Sequence[Mount], *, parent: str | None = None) -> Iterator[str]:
    """Mount on a fresh temp dir for the block, then unmount and remove it.

    containerd's ``WithTempMount``; ``parent`` is its temp mount location.
    """
    path = tempfile.mkdtemp(prefix="lamina-mount-", dir=parent)
    try:
        mount_all(mounts, path)
        try:
            yield path
        finally:
            unmount_all(path)
    except BaseException:
        _remove_mountpoint(path)
        raise
    _remove_mountpoint(path)


def _remove_mountpoint(path: str) -> None:
    # rmdir, never a recursive delete: if something is still mounted here
    # it is not ours to empty.
    with contextlib.suppress(OSError):
        os.rmdir(path)


def direct_dirs(mounts: Sequence[Mount]) -> DirectDirs | None:
    """The directory a layer can be applied into without mounting, if any.

    A single overlay mount with an upperdir gives the upperdir and its
    lowerdirs (top-most first), as containerd's ``getOverlayPath``; a single
    writable bind gives its source.  Anything else must be mounted.
    """
    if len(mounts) != 1:
        return None
    m = mounts[0]
    opts = parse_options(m.options)
    if m.type == "overlay":
        upper = ""
        lowers: tuple[str, ...] = ()
        for d in opts.data:
            key, _, value = d.partition("=")
            if key == "upperdir":
                upper = value
            elif key == "lowerdir":
                lowers = tuple(v for v in value.split(":") if v)
        return DirectDirs(root=upper, lowers=lowers, overlay=True) if upper else None
    if m.type in ("bind", "rbind") or opts.flags & MS_BIND:
        if opts.flags & MS_RDONLY:
            return None
        return DirectDirs(root=m.source)
    return None
