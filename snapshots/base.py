"""The snapshotter contract: records and the ``Snapshotter`` Protocol.

It follows containerd 1.6's ``snapshots/snapshotter.go``: a snapshot is
*active* (writable, from ``prepare``), a *view* (read-only, from ``view``) or
*committed* (immutable, from ``commit``); only committed snapshots can be
parents.  The methods are synchronous because they touch disk and the kernel;
the daemon runs them in a worker thread.  Backends are not namespaced: the
metadata layer wraps them and keeps the namespaced names.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Protocol

from lamina.core.mounts import Mount
from lamina.core.timeutil import EPOCH


class Kind(enum.IntEnum):
    """containerd's numbering, which is also the wire value in ``snapshots.proto``."""

    UNKNOWN = 0
    VIEW = 1
    ACTIVE = 2
    COMMITTED = 3

    @property
    def text(self) -> str:
        """The word containerd's filters and ``ctr snapshots ls`` use."""
        return self.name.lower()


def _frozen(labels: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(labels))


@dataclass(frozen=True, slots=True, kw_only=True)
class Info:
    """A snapshot as ``stat``/``walk`` report it; ``key`` is containerd's ``Name``."""

    key: str
    parent: str = ""
    kind: Kind = Kind.UNKNOWN
    labels: Mapping[str, str] = field(default_factory=lambda: _frozen({}))
    created_at: datetime = EPOCH
    updated_at: datetime = EPOCH

    def __post_init__(self) -> None:
        # A private read-only copy: the caller's dict can change afterwards.
        object.__setattr__(self, "labels", _frozen(self.labels))


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """Disk usage: ``size`` in bytes of allocated blocks, ``inodes`` counted once each."""

    size: int = 0
    inodes: int = 0


WalkFunc = Callable[[Info], None]
Match = Callable[[Info], bool]


class Snapshotter(Protocol):
    """What every snapshotter offers (containerd's ``snapshots.Snapshotter``).

    Errors are ``lamina.core.errors`` classes:

    - ``NotFound``: the key (or a parent) does not exist;
    - ``AlreadyExists``: ``prepare``/``view``/``commit`` to a key already in use;
    - ``FailedPrecondition``: ``remove`` of a snapshot with children, ``commit``
      of a snapshot that is not active, ``mounts`` of a committed snapshot;
    - ``InvalidArgument``: a parent that is not committed, an empty key, an
      update of a field other than labels.
    """

    def stat(self, key: str) -> Info: ...

    def update(self, info: Info, fieldpaths: Sequence[str] = ()) -> Info:
        """Change labels only: no paths replaces them all, ``labels`` too,
        ``labels.<k>`` sets one (an absent or empty value deletes it)."""
        ...

    def usage(self, key: str) -> Usage:
        """Stored at commit for committed snapshots, measured now for active ones."""
        ...

    def mounts(self, key: str) -> tuple[Mount, ...]: ...

    def prepare(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> tuple[Mount, ...]: ...

    def view(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> tuple[Mount, ...]: ...

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        """Turn the active ``key`` into the committed ``name``; labels are replaced, not inherited."""
        ...

    def remove(self, key: str) -> None: ...

    def walk(self, fn: WalkFunc, match: Match | None = None) -> None:
        """Call ``fn`` for every snapshot that ``match`` accepts (all when None).

        ``match`` is containerd's filter list already compiled by the caller;
        ``fn`` runs outside any storage transaction, so it may call ``stat``.
        """
        ...

    def cleanup(self) -> None:
        """Delete directories no snapshot refers to (left behind by a crash)."""
        ...

    def close(self) -> None:
        """Release the metadata store; calling it twice is harmless."""
        ...
