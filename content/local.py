"""The local, non-namespaced blob store (containerd 1.6's ``content/local``).

Blobs live at ``<root>/blobs/<alg>/<hex>``, read-only once committed; ingests
under ``<root>/ingest/`` (see ``lamina.content.ingest``).  A blob appears
only by an atomic rename of fully written, fsynced and verified data, so
``blobs/`` never holds a partial file.  No labels are kept here: as with
containerd's ``NewStore``, the metadata layer above owns them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

from lamina.content import digest as digests
from lamina.content import ingest, locks
from lamina.content.base import Info, Status
from lamina.content.reader import BlobReader
from lamina.content.writer import LocalWriter, open_writer
from lamina.core.errors import AlreadyExists, InvalidArgument, NotFound
from lamina.core.log import get_logger
from lamina.core.timeutil import from_ns

log = get_logger()


def _info(dgst: str, st: os.stat_result) -> Info:
    """containerd reports the blob's mtime as created and its atime as updated."""
    return Info(
        digest=dgst,
        size=st.st_size,
        created_at=from_ns(st.st_mtime_ns),
        updated_at=from_ns(st.st_atime_ns),
    )


class LocalStore:
    """Implements ``lamina.content.base.ContentStore``; safe to share between threads."""

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)
        os.makedirs(os.path.join(self.root, "ingest"), exist_ok=True)
        os.makedirs(os.path.join(self.root, "blobs"), exist_ok=True)

    def blob_path(self, digest: str) -> str:
        alg, hex_ = digests.parse(digest)
        return os.path.join(self.root, "blobs", alg, hex_)

    def _ingest_path(self, ref: str) -> str:
        return os.path.join(self.root, "ingest", ingest.dir_name(ref))

    # Blobs.

    def info(self, digest: str) -> Info:
        try:
            st = os.stat(self.blob_path(digest))
        except FileNotFoundError:
            raise NotFound(f"content digest {digest}") from None
        return _info(digest, st)

    def reader(self, digest: str) -> BlobReader:
        """An open reader; close it (or use ``with``) when done."""
        try:
            fd = os.open(self.blob_path(digest), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"content digest {digest}") from None
        return BlobReader(fd)

    def delete(self, digest: str) -> None:
        try:
            os.unlink(self.blob_path(digest))
        except FileNotFoundError:
            raise NotFound(f"content digest {digest}") from None

    def walk(self) -> Iterator[Info]:
        """Every blob of a supported algorithm; other files are logged and skipped.

        Blobs deleted while the walk runs are skipped silently.
        """
        for alg in digests.algorithms():
            try:
                entries = list(os.scandir(os.path.join(self.root, "blobs", alg)))
            except FileNotFoundError:
                continue
            for entry in entries:
                if not digests.is_valid_encoding(alg, entry.name):
                    log.error("invalid digest for blob path", path=entry.path)
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                yield _info(f"{alg}:{entry.name}", st)

    # Ingests.

    def writer(self, ref: str, total: int = 0, expected: str = "") -> LocalWriter:
        """Open or resume the ingest ``ref``; one writer per ref at a time.

        ``Unavailable`` if another writer holds ``ref``, ``AlreadyExists``
        if ``expected`` is already a blob.  A resumed writer starts at the
        stored offset with the stored bytes already hashed.
        """
        if not ref:
            raise InvalidArgument("ref must not be empty")
        if total < 0:
            raise InvalidArgument(f"ref {ref}: negative total {total}")
        if expected and os.path.exists(self.blob_path(expected)):
            raise AlreadyExists(f"content {expected}")
        lock = locks.acquire(self.root, ref)
        try:
            return open_writer(self.root, ref, lock, total, expected)
        except BaseException:
            locks.release(lock)
            raise

    def status(self, ref: str) -> Status:
        live = locks.holder(self.root, ref)
        if live is not None:
            return live.status()
        try:
            disk = ingest.load(self._ingest_path(ref))
        except NotFound:
            raise NotFound(f"ingest ref {ref!r}") from None
        if disk.ref != ref:
            raise NotFound(f"ingest ref {ref!r}")
        return disk.status()

    def list_statuses(self) -> list[Status]:
        """All ingests; open writers report their in-memory progress."""
        live = {s.ref: s for s in (w.status() for w in locks.holders(self.root))}
        out: list[Status] = []
        for entry in os.scandir(os.path.join(self.root, "ingest")):
            try:
                disk = ingest.load(entry.path)
            except NotFound:
                continue
            out.append(live.get(disk.ref) or disk.status())
        return out

    def abort(self, ref: str) -> None:
        """Remove the ingest, even while a writer holds it (containerd does too).

        That writer's later ``commit`` then fails with ``NotFound``.
        """
        path = self._ingest_path(ref)
        if not os.path.isdir(path):
            raise NotFound(f"ingest ref {ref!r}")
        shutil.rmtree(path, ignore_errors=True)
