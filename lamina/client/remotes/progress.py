"""What pull and push tell a progress display, one :class:`Status` per change of a blob's state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

RESOLVING = "resolving"
RESOLVED = "resolved"
WAITING = "waiting"
DOWNLOADING = "downloading"
UPLOADING = "uploading"
EXISTS = "exists"  # already in the content store, or already on the registry
MOUNTED = "mounted"  # cross-repository mount on the registry
DONE = "done"
UNPACKING = "unpacking"
UNPACKED = "unpacked"


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    ref: str  # the reference while resolving, then containerd's ingest ref ("layer-sha256:...")
    state: str
    offset: int = 0
    total: int = 0


Reporter = Callable[[Status], None]


def ignore(_: Status) -> None:
    """The reporter of callers that do not watch progress."""
