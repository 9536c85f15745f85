"""Directory fds inside a layer root, found without the kernel following a symlink.

Layer apply changes the tree only relative to directory fds opened here.
Each component is opened with ``O_NOFOLLOW|O_DIRECTORY`` relative to its
parent's fd; a symlink met on the way (made by this layer or by a parent
layer) is read and followed in user space, its absolute target taken from
the root and ``..`` never climbing above it: continuity's ``fs.RootPath``,
which containerd's ``archive.Apply`` resolves parents with.  The final
component of an entry is then handled by ``*at`` calls that do not follow
it, so no write can land outside the root.

Open directories are kept by their resolved components, so consecutive
entries that share a parent cost no lookup.  At most ``_MAX_OPEN`` stay
open between entries (a layer may hold thousands of directories; the daemon
has a limited number of fds).  Removing a directory or adding or removing a
symlink changes what names resolve to; the caller says so
(``forget_under``, ``forget_links``) and the stale answers are dropped.

Per directory, ``plain`` records that a file created in it gets exactly the
creator's owner and ``mode & ~umask`` (no set-gid bit, no default ACL), which
lets apply skip the chown and chmod that would change nothing.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable

from lamina.core.errors import InvalidArgument

Comps = tuple[str, ...]

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_SYMLINKS = 255
_MAX_OPEN = 256
_MAX_DEPTH = 2048  # components of at least one byte and a slash: PATH_MAX
_DEFAULT_ACL = "system.posix_acl_default"


def at(dir_fd: int, name: str) -> str:
    """A path naming ``name`` in the open directory ``dir_fd``, for calls without an ``*at`` form.

    Only the ``/proc`` link to ``dir_fd`` is followed; pass it with
    ``follow_symlinks=False`` so that ``name`` itself is not.
    """
    return f"/proc/self/fd/{dir_fd}/{name}"


def _plain(fd: int) -> bool:
    if os.fstat(fd).st_mode & stat.S_ISGID:
        return False
    try:
        os.getxattr(fd, _DEFAULT_ACL)
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            return True
        raise
    return False


class Dirs:
    """The directories of one apply's root, as open fds keyed by resolved components.

    ``made(comps, fd)`` runs for each parent directory this class creates
    (containerd's ``mkparent``: overlay apply copies the lower directory's
    metadata onto it).
    """

    def __init__(self, root: str, made: Callable[[Comps, int], None]) -> None:
        self.root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._made = made
        self._fds: dict[Comps, int] = {(): self.root_fd}
        self._plain: dict[Comps, bool] = {(): _plain(self.root_fd)}
        self._memo: dict[str, Comps] = {"": ()}

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def trim(self) -> None:
        """Close cached fds beyond the limit; only between entries, when none is in use."""
        if len(self._fds) > _MAX_OPEN:
            for comps, fd in list(self._fds.items()):
                if comps:
                    os.close(fd)
                    del self._fds[comps]
                    self._plain.pop(comps, None)

    def forget_links(self) -> None:
        """A symlink was made or removed: names may resolve differently now."""
        if len(self._memo) > 1:
            self._memo = {"": ()}

    def forget_under(self, comps: Comps) -> None:
        """The directory ``comps`` was removed: its fds and everything resolved through it are stale."""
        n = len(comps)
        for key in [k for k in self._fds if k[:n] == comps and k]:
            os.close(self._fds.pop(key))
            self._plain.pop(key, None)
        self._memo = {"": ()}

    def is_plain(self, comps: Comps) -> bool:
        return self._plain[comps]

    def refresh(self, comps: Comps) -> None:
        """The directory's mode or xattrs changed: look again at what it passes on to new files."""
        fd = self._fds.get(comps)
        if fd is not None:
            self._plain[comps] = _plain(fd)

    def cached(self, comps: Comps) -> int | None:
        return self._fds.get(comps)

    def child(self, parent_fd: int, comps: Comps) -> int:
        """The fd of directory ``comps``, whose parent is open as ``parent_fd``; ``OSError`` if not a directory."""
        fd = self._fds.get(comps)
        if fd is None:
            fd = os.open(comps[-1], DIR_FLAGS, dir_fd=parent_fd)
            self._fds[comps] = fd
            self._plain[comps] = _plain(fd)
        return fd

    def _fd(self, comps: Comps) -> int:
        """The fd of the (already resolved) directory ``comps``, reopened below the nearest cached one."""
        n = len(comps)
        while (fd := self._fds.get(comps[:n])) is None:
            n -= 1
        for i in range(n + 1, len(comps) + 1):
            fd = self.child(fd, comps[:i])
        return fd

    def resolve(self, rel: str, name: str, *, create: bool) -> tuple[int | None, Comps]:
        """The fd and resolved components of directory ``rel`` (clean, relative to the root).

        With ``create``, missing directories are made and a component that is
        not a directory is an ``InvalidArgument`` naming ``name``; without it,
        either yields ``(None, components)``.
        """
        comps = self._memo.get(rel)
        if comps is not None:
            return self._fd(comps), comps
        fd, comps = self._walk(rel, name, create)
        if fd is not None:
            self._memo[rel] = comps
        return fd, comps

    def _walk(self, rel: str, name: str, create: bool) -> tuple[int | None, Comps]:
        comps: list[str] = []
        fd = self.root_fd
        missing: list[str] = []
        todo = rel.split("/")[::-1]
        links = 0
        while todo:
            part = todo.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if missing:
                    missing.pop()
                elif comps:
                    comps.pop()
                    fd = self._fd(tuple(comps))
                continue
            if len(comps) + len(missing) >= _MAX_DEPTH:
                raise InvalidArgument(f"layer entry {name!r}: file name too long")
            if missing:
                missing.append(part)
                continue
            key = (*comps, part)
            try:
                fd = self.child(fd, key)
            except FileNotFoundError:
                missing.append(part)
                continue
            except OSError as e:
                if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                if not stat.S_ISLNK(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode):
                    if not create:
                        missing.append(part)
                        continue
                    raise InvalidArgument(f"layer entry {name!r}: parent {'/'.join(key)!r} "
                                          "is not a directory") from None
                links += 1
                if links > _MAX_SYMLINKS:
                    raise InvalidArgument(f"layer entry {name!r}: too many levels of symbolic links") from None
                target = os.readlink(part, dir_fd=fd)
                if target.startswith("/"):
                    comps, fd = [], self.root_fd
                todo.extend(target.split("/")[::-1])
                continue
            comps.append(part)
        if missing:
            if not create:
                return None, (*comps, *missing)
            for part in missing:
                os.mkdir(part, 0o755, dir_fd=fd)
                comps.append(part)
                key = tuple(comps)
                fd = self.child(fd, key)
                self._made(key, fd)
                self.refresh(key)
        return fd, tuple(comps)
