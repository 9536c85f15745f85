"""The on-disk layout of one ingest, as containerd's ``content/local`` keeps it.

``<root>/ingest/<hex sha256 of ref>/`` holds ``ref`` (the ref itself),
``data`` (the bytes so far; its size is the offset), ``startedat`` and
``updatedat`` (RFC 3339 text, as Go's ``time.MarshalText``) and, when known,
``total``.  ``updatedat`` is written only when a writer closes, which first sets
the data file's mtime to the last write; after a crash the mtime wins when
it is newer.  Small files are replaced atomically.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import datetime

from lamina.content.base import Status
from lamina.core.errors import NotFound
from lamina.core.fsutil import atomic_write
from lamina.core.timeutil import format_rfc3339, from_ns, now, parse_rfc3339


def dir_name(ref: str) -> str:
    return hashlib.sha256(ref.encode()).hexdigest()


def read_text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


@dataclass(frozen=True, slots=True, kw_only=True)
class OnDisk:
    """What a stopped ingest directory says about itself."""

    ref: str
    size: int
    total: int
    started_at: datetime
    updated_at: datetime

    def status(self) -> Status:
        return Status(
            ref=self.ref,
            offset=self.size,
            total=self.total,
            expected="",
            started_at=self.started_at,
            updated_at=self.updated_at,
        )


def create(path: str, ref: str, total: int) -> datetime:
    """(Re)write the metadata files of a fresh ingest; returns its start time."""
    started = now()
    atomic_write(os.path.join(path, "ref"), ref.encode())
    atomic_write(os.path.join(path, "startedat"), format_rfc3339(started).encode())
    atomic_write(os.path.join(path, "updatedat"), format_rfc3339(started).encode())
    set_total(path, total)
    return started


def set_total(path: str, total: int) -> None:
    p = os.path.join(path, "total")
    if total > 0:
        atomic_write(p, str(total).encode())
    elif os.path.exists(p):
        os.unlink(p)


def load(path: str) -> OnDisk:
    """Read an ingest directory; ``NotFound`` if it is missing or incomplete.

    Incomplete directories are what a crash during creation or removal
    leaves; listing skips them and a new writer on the ref starts over.
    """
    try:
        st = os.stat(os.path.join(path, "data"))
        ref = read_text(os.path.join(path, "ref"))
        started = parse_rfc3339(read_text(os.path.join(path, "startedat")))
        updated = parse_rfc3339(read_text(os.path.join(path, "updatedat")))
    except (FileNotFoundError, NotADirectoryError, ValueError) as e:
        raise NotFound(f"ingest {os.path.basename(path)}") from e
    try:
        total = int(read_text(os.path.join(path, "total")))
    except (FileNotFoundError, ValueError):
        total = 0
    return OnDisk(
        ref=ref,
        size=st.st_size,
        total=total,
        started_at=started,
        updated_at=max(updated, from_ns(st.st_mtime_ns)),
    )
