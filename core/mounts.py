"""The Mount record shared by snapshotters, the differ and the runtime.

It mirrors containerd's ``types.Mount``: a description of a mount that the
receiver performs itself (the daemon for diff and rootfs, ``ctr`` for
``snapshots mounts``), never a mount already in place.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Mount:
    type: str
    source: str
    options: tuple[str, ...] = ()
    target: str = ""
