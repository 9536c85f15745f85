"""One open ingest: append, hash as we go, and commit into ``blobs/``.

Follows containerd 1.6's ``content/local/writer.go`` plus the offset rules of
``services/content/service.go`` (so the servicer stays thin): a write at an
offset other than the current one is ``OutOfRange``, and offset 0 on a
non-empty ingest restarts it.  Bytes are hashed as they are written; only a
resumed ingest is re-read, once, when its writer opens.  Every ``commit``
releases the ref, as containerd's does; a failed commit keeps the ingest on
disk so the client can resume or abort it.
"""

from __future__ import annotations

import os
import shutil
import threading
import weakref
from typing import TYPE_CHECKING, BinaryIO, Self

from lamina.content import digest as digests
from lamina.content import ingest, locks
from lamina.content.base import Info, Status
from lamina.content.reader import CHUNK_SIZE
from lamina.core import timeutil
from lamina.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
)
from lamina.core.fsutil import atomic_write, fsync_dir
from lamina.core.log import get_logger

if TYPE_CHECKING:
    from datetime import datetime
    from hashlib import _Hash

log = get_logger()


def hash_file(fd: int, h: _Hash, start: int = 0) -> int:
    """Feed the file's bytes from ``start`` to its end into ``h``; return the count."""
    buf = bytearray(CHUNK_SIZE)
    view = memoryview(buf)
    pos = start
    while n := os.preadv(fd, [view], pos):
        h.update(view[:n])
        pos += n
    return pos - start


class LocalWriter:
    """Holds the ref's lock from creation until ``commit`` or ``close``."""

    def __init__(
        self,
        *,
        root: str,
        ref: str,
        lock: locks.RefLock,
        fd: int,
        alg: str,
        hasher: _Hash,
        offset: int,
        total: int,
        expected: str,
        started_at: datetime,
        updated_at: datetime,
    ) -> None:
        self._root = root
        self._ref = ref
        self._path = os.path.join(root, "ingest", ingest.dir_name(ref))
        self._lock = lock
        self._fd = fd
        self._file: BinaryIO | None = open(fd, "wb", buffering=CHUNK_SIZE)  # noqa: SIM115
        self._alg = alg
        self._hash = hasher
        self._offset = offset
        self._total = total
        self._expected = expected
        self._started_at = started_at
        self._updated_at = updated_at
        self._mu = threading.Lock()
        lock.writer = weakref.ref(self)

    def write(self, data: bytes | memoryview, offset: int) -> int:
        """Append ``data`` at ``offset``; return the new offset."""
        with self._mu:
            f = self._open_file()
            if offset != 0 and offset != self._offset:
                raise OutOfRange(
                    f"write @{offset} must occur at current offset {self._offset}"
                )
            if offset == 0 and self._offset > 0:
                self._truncate_locked(f)
            if data:
                view = memoryview(data)
                try:
                    f.write(view)
                except OSError:
                    # What reached the file is unknown now; the next writer
                    # re-hashes whatever is on disk, so give the ref up.
                    self._close_locked()
                    raise
                self._hash.update(view)
                self._offset += view.nbytes
                self._updated_at = timeutil.now()
            return self._offset

    def truncate(self, size: int) -> None:
        """Only ``truncate(0)``, restarting the ingest, as containerd supports."""
        if size != 0:
            raise InvalidArgument(f"truncate to {size}: only 0 is supported")
        with self._mu:
            self._truncate_locked(self._open_file())

    def status(self) -> Status:
        with self._mu:
            return Status(
                ref=self._ref,
                offset=self._offset,
                total=self._total,
                expected=self._expected,
                started_at=self._started_at,
                updated_at=self._updated_at,
            )

    def digest(self) -> str:
        """The digest of the bytes written so far; valid after commit or close."""
        with self._mu:
            return f"{self._alg}:{self._hash.hexdigest()}"

    def commit(self, size: int = 0, expected: str = "") -> Info:
        """Verify size and digest, then move the data into ``blobs/`` atomically.

        ``size`` 0 and ``expected`` "" skip their checks.  A mismatch is
        ``FailedPrecondition`` naming both values, and the ingest stays.  A
        blob that already exists is ``AlreadyExists`` and the ingest is removed.
        """
        with self._mu:
            f = self._open_file()
            try:
                return self._commit_locked(f, size, expected)
            finally:
                self._close_locked()

    def close(self) -> None:
        """Release the ref and keep the ingest for a later writer to resume."""
        with self._mu:
            self._close_locked()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open_file(self) -> BinaryIO:
        if self._file is None:
            raise FailedPrecondition(f"ref {self._ref}: writer is closed")
        return self._file

    def _truncate_locked(self, f: BinaryIO) -> None:
        f.flush()
        os.ftruncate(self._fd, 0)
        f.seek(0)
        self._hash = digests.hasher(self._alg)
        self._offset = 0
        self._updated_at = timeutil.now()

    def _commit_locked(self, f: BinaryIO, size: int, expected: str) -> Info:
        alg = digests.parse(expected)[0] if expected else self._alg
        f.flush()
        os.fsync(self._fd)
        if size > 0 and size != self._offset:
            raise FailedPrecondition(
                f"unexpected commit size {self._offset}, expected {size}"
            )
        if alg == self._alg:
            actual = f"{alg}:{self._hash.hexdigest()}"
        else:
            h = digests.hasher(alg)
            hash_file(self._fd, h)
            actual = f"{alg}:{h.hexdigest()}"
        if expected and actual != expected:
            raise FailedPrecondition(
                f"unexpected commit digest {actual}, expected {expected}"
            )

        blob_dir = os.path.join(self._root, "blobs", alg)
        target = os.path.join(blob_dir, actual.partition(":")[2])
        if not os.path.isdir(blob_dir):
            os.makedirs(blob_dir, exist_ok=True)
            fsync_dir(os.path.dirname(blob_dir))
        if os.path.exists(target):
            shutil.rmtree(self._path, ignore_errors=True)
            raise AlreadyExists(f"content {actual}")

        committed = timeutil.now()
        stamp = timeutil.to_ns(committed)
        os.utime(self._fd, ns=(stamp, stamp))
        os.fchmod(self._fd, os.fstat(self._fd).st_mode & 0o444)
        try:
            os.rename(os.path.join(self._path, "data"), target)
        except FileNotFoundError:
            raise NotFound(f"ingest ref {self._ref!r}") from None
        fsync_dir(blob_dir)
        shutil.rmtree(self._path, ignore_errors=True)
        log.debug("content committed", ref=self._ref, digest=actual, size=self._offset)
        return Info(
            digest=actual, size=self._offset, created_at=committed, updated_at=committed
        )

    def _close_locked(self) -> None:
        f, self._file = self._file, None
        if f is None:
            return
        try:
            try:
                f.flush()
                # The buffered bytes reached the file just now: give it the time of
                # the last write back, or a reopened ingest would report the close
                # as its update (containerd's content testsuite checkResumeWriter).
                stamp = timeutil.to_ns(self._updated_at)
                os.utime(self._fd, ns=(stamp, stamp))
                os.fsync(self._fd)
            finally:
                f.close()  # closes the descriptor even when the flush failed
            atomic_write(os.path.join(self._path, "updatedat"), timeutil.format_rfc3339(self._updated_at).encode())
        except FileNotFoundError:
            pass  # aborted or committed meanwhile: nothing left to update
        finally:
            locks.release(self._lock)


def open_writer(
    root: str, ref: str, lock: locks.RefLock, total: int, expected: str
) -> LocalWriter:
    """Start or resume the ingest of ``ref``; the caller holds ``lock``.

    An unreadable ingest (a crash mid-creation, a ref-hash collision, a
    conflicting total) starts over, as containerd recreates it.
    """
    alg = digests.parse(expected)[0] if expected else digests.CANONICAL
    path = os.path.join(root, "ingest", ingest.dir_name(ref))
    data = os.path.join(path, "data")
    disk: ingest.OnDisk | None = None
    try:
        os.mkdir(path)
    except FileExistsError:
        try:
            disk = ingest.load(path)
        except NotFound:
            log.warning("ingest incomplete, restarting it", ref=ref)
        if disk is not None and disk.ref != ref:
            log.warning("ingest ref mismatch, restarting it", ref=ref, found=disk.ref)
            disk = None
        if disk is not None and total > 0 and disk.total > 0 and total != disk.total:
            log.warning(
                "ingest total changed, restarting it",
                ref=ref,
                total=total,
                was=disk.total,
            )
            disk = None

    h = digests.hasher(alg)
    if disk is None:
        started = ingest.create(path, ref, total)
        updated, offset = started, 0
        fd = os.open(data, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    else:
        if total > 0 and disk.total == 0:
            ingest.set_total(path, total)
        total = total or disk.total
        started, updated = disk.started_at, disk.updated_at
        fd = os.open(data, os.O_RDWR | os.O_CLOEXEC)
        try:
            offset = hash_file(fd, h)
            os.lseek(fd, offset, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        log.debug("ingest resumed", ref=ref, offset=offset)
    return LocalWriter(
        root=root,
        ref=ref,
        lock=lock,
        fd=fd,
        alg=alg,
        hasher=h,
        offset=offset,
        total=total,
        expected=expected,
        started_at=started,
        updated_at=updated,
    )
