"""Resolving untrusted paths under a root without following symlinks out of it.

Every component is looked up under ``root`` with ``lstat``, and a symlink's
target is pushed back as components to walk, so no symlink is ever followed
by the kernel.  Two callers need two readings of a symlink:

- Layer apply resolves as continuity's ``fs.RootPath`` does: an absolute
  target is taken as relative to ``root`` and ``..`` never climbs above it,
  so a layer's own symlinks (``evil -> /``, ``up -> ../../..``) cannot steer
  a later entry out of the tree (``root_path``, ``resolve_components``).
- The shim checks a rootfs as the host will follow it (``check_inside``):
  runc 1.1.5 joins ``rootfs + "/dev/fd"`` and the like on the host, before
  ``pivot_root``, so an absolute target is read from the host's ``/`` and
  ``..`` above ``root`` leaves it.  Such a symlink is refused.

Missing components are kept as they are, for the caller to create as
directories: whatever is created below a missing component is inside.
Only ``os``-level modules are imported: the shim uses this module.
"""

from __future__ import annotations

import json
import os
import posixpath
import stat
from collections.abc import Sequence

from lamina.core.errors import FailedPrecondition, InvalidArgument

_MAX_SYMLINKS = 255

# The in-root path of a symlink and its target, as read: where a part came from.
_Link = tuple[str, str]


def clean(name: str) -> str:
    """``name`` cleaned as if rooted at "/", without the leading slash.

    ``../../etc/x`` and ``/etc/x`` both become ``etc/x``; the root is "".
    """
    return posixpath.normpath("/" + name).lstrip("/")


def resolve_components(root: str, start: list[str], rel: str) -> list[str]:
    """Resolve ``rel`` under ``root/start`` to symlink-free components.

    ``start`` must itself be resolved (no symlinks).  The last component of
    ``rel`` is followed too when it is a symlink.
    """
    return _walk(root, start, rel, None)


def join(root: str, components: list[str]) -> str:
    return root + "/" + "/".join(components) if components else root


def root_path(root: str, rel: str) -> str:
    """The absolute path of ``rel`` inside ``root``, never outside it."""
    return join(root, resolve_components(root, [], rel))


def check_inside(root: str, rel: str) -> None:
    """Refuse ``rel`` when a symlink on its way, followed as the host follows it, leaves ``root``.

    ``rel`` itself is taken as rooted (a leading ``..`` stays at ``root``);
    only symlinks are read the host's way.  A relative symlink that stays
    inside (``dev -> ./realdev``) is fine; one that climbs above ``root``,
    even to come back, is not, nor is an absolute one unless it names a path
    under ``root`` itself (as the host spells it, without symlinks).
    """
    host_root = [p for p in os.path.realpath(root).split("/") if p]
    _walk(root, [], rel, host_root)


def _outside(link: _Link) -> FailedPrecondition:
    path, target = link
    return FailedPrecondition(
        f"rootfs path {json.dumps(path)} is a symlink to {json.dumps(target)} outside the rootfs")


def _walk(root: str, start: list[str], rel: str, host_root: Sequence[str] | None) -> list[str]:
    """The walk of both readings; ``host_root`` (``root``'s real path as components) selects the host's."""
    resolved = list(start)
    todo: list[tuple[str, _Link | None]] = [(p, None) for p in reversed(rel.split("/")) if p not in ("", ".")]
    links = 0
    missing = False
    while todo:
        part, origin = todo.pop()
        if part == "..":
            if resolved:
                resolved.pop()
            elif host_root is not None and origin is not None:
                raise _outside(origin)
            missing = False
            continue
        if missing:
            resolved.append(part)
            continue
        candidate = root + "/" + "/".join([*resolved, part])
        try:
            st = os.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            missing = True
            resolved.append(part)
            continue
        if not stat.S_ISLNK(st.st_mode):
            resolved.append(part)
            continue
        links += 1
        if links > _MAX_SYMLINKS:
            raise InvalidArgument(f"path {rel!r}: too many levels of symbolic links")
        target = os.readlink(candidate)
        link = ("/" + "/".join([*resolved, part]), target)
        parts = [p for p in target.split("/") if p not in ("", ".")]
        if target.startswith("/"):
            if host_root is not None:
                if parts[:len(host_root)] != list(host_root):
                    raise _outside(link)
                parts = parts[len(host_root):]
            resolved = []
        todo.extend((p, link) for p in reversed(parts))
    return resolved
