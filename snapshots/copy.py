"""A faithful tree copy for the native snapshotter (continuity's ``fs.CopyDir``).

A layer copy must be indistinguishable from its source for everything an
image can carry: owners, modes (set-id bits included), nanosecond times,
xattrs, hard links inside the tree, symlinks, device nodes, FIFOs and
sockets.  Per entry the order matters: ``lchown`` clears set-id bits and
``security.capability``, so ownership comes first, then mode, then xattrs,
then times; a directory's times are set after its children are written.
Regular files keep their holes (``SEEK_DATA``/``SEEK_HOLE``) and use
``copy_file_range``, which reflinks on filesystems that can.

It is written with ``os`` calls rather than ``cp -a`` so that failures are
Python exceptions with the failing path, and the behaviour does not depend on
which ``cp`` (coreutils, busybox) the host happens to have.
"""

from __future__ import annotations

import errno
import os
import stat

from lamina.core.log import get_logger

log = get_logger()

_CHUNK = 1 << 24
# setxattr failures that containerd's native snapshotter also ignores: most
# security.* and trusted.* names need privileges or support the target lacks.
_XATTR_IGNORED = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES}
_NO_SEEK_DATA = {errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP}
_NO_COPY_RANGE = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP}


def copy_tree(src: str, dst: str) -> None:
    """Copy the contents and attributes of directory ``src`` onto existing directory ``dst``."""
    links: dict[tuple[int, int], str] = {}
    _copy_children(src, dst, links)
    _copy_attrs(os.lstat(src), src, dst)


def _copy_children(src: str, dst: str, links: dict[tuple[int, int], str]) -> None:
    with os.scandir(src) as it:
        entries = list(it)
    for entry in entries:
        source, target = entry.path, os.path.join(dst, entry.name)
        st = entry.stat(follow_symlinks=False)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(target, 0o700)
            _copy_children(source, target, links)
            _copy_attrs(st, source, target)
            continue
        if st.st_nlink > 1:
            ino = (st.st_dev, st.st_ino)
            first = links.get(ino)
            if first is not None:
                os.link(first, target)
                continue
            links[ino] = target
        if stat.S_ISREG(mode):
            _copy_file(source, target, st.st_size)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(source), target)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            os.mknod(target, stat.S_IFMT(mode) | 0o600, st.st_rdev)
        else:
            raise OSError(errno.EINVAL, f"unsupported file type {stat.S_IFMT(mode):o}", source)
        _copy_attrs(st, source, target)


def _copy_attrs(st: os.stat_result, src: str, dst: str) -> None:
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    _copy_xattrs(src, dst)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy_xattrs(src: str, dst: str) -> None:
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return
        raise
    for name in names:
        try:
            value = os.getxattr(src, name, follow_symlinks=False)
            os.setxattr(dst, name, value, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in _XATTR_IGNORED:
                raise
            log.debug("xattr not copied", path=dst, xattr=name, error=exc.strerror)


def _copy_file(src: str, dst: str, size: int) -> None:
    sfd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        dfd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(dfd, size)
            for start, end in _data_ranges(sfd, size):
                _copy_range(sfd, dfd, start, end - start)
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


def _data_ranges(fd: int, size: int) -> list[tuple[int, int]]:
    """The non-hole extents of ``fd``; the whole file where holes cannot be asked for."""
    ranges: list[tuple[int, int]] = []
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                break  # only a hole remains
            if exc.errno in _NO_SEEK_DATA and offset == 0:
                return [(0, size)]
            raise
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        ranges.append((start, end))
        offset = end
    return ranges


def _copy_range(sfd: int, dfd: int, offset: int, length: int) -> None:
    use_copy_range = True
    while length > 0:
        n = 0
        if use_copy_range:
            try:
                n = os.copy_file_range(sfd, dfd, min(length, _CHUNK), offset, offset)
            except OSError as exc:
                if exc.errno not in _NO_COPY_RANGE:
                    raise
                use_copy_range = False
                continue
        else:
            data = os.pread(sfd, min(length, 1 << 20), offset)
            n = os.pwrite(dfd, data, offset) if data else 0
        if n == 0:
            break  # the source shrank while we copied
        offset += n
        length -= n
