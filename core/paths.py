"""Resolving layer paths inside a root, as continuity's ``fs.RootPath`` does.

Every component is looked up under ``root``: a symlink is followed with its
absolute target taken as relative to ``root`` and ``..`` never climbing above
it, so a layer's own symlinks (``evil -> /``, ``up -> ../../..``) cannot
steer a later entry out of the tree.  Missing components are kept as they
are, for the caller to create as directories.
"""

from __future__ import annotations

import os
import posixpath
import stat

from lamina.core.errors import InvalidArgument

_MAX_SYMLINKS = 255


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
    resolved = list(start)
    todo = [p for p in reversed(rel.split("/")) if p not in ("", ".")]
    links = 0
    missing = False
    while todo:
        part = todo.pop()
        if part == "..":
            if resolved:
                resolved.pop()
            missing = False
            continue
        if part == ".":
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
        if target.startswith("/"):
            resolved = []
        todo.extend(p for p in reversed(target.split("/")) if p not in ("", "."))
    return resolved


def join(root: str, components: list[str]) -> str:
    return root + "/" + "/".join(components) if components else root


def root_path(root: str, rel: str) -> str:
    """The absolute path of ``rel`` inside ``root``, never outside it."""
    return join(root, resolve_components(root, [], rel))
