"""Mount helper private to the conformance suite.

It performs returned mounts the way ``ctr snapshots mounts`` prints them,
``mount -t TYPE -o OPTS SOURCE TARGET``, and remembers every target so that a
failing test still leaves nothing mounted behind.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence

from lamina.core.mounts import Mount


def _unescape(field: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit() and i + 4 <= len(field):
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts_under(path: str) -> list[str]:
    """Mount points at or below ``path``, deepest last as the kernel lists them."""
    prefix = os.path.realpath(path).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = _unescape(line.split()[4])
            if (point + "/").startswith(prefix):
                found.append(point)
    return found


class Mounter:
    """Mounts ``Mount`` lists on targets and unmounts them, LIFO, at the end."""

    def __init__(self) -> None:
        self._targets: list[str] = []

    def mount(self, mounts: Sequence[Mount], target: str) -> str:
        os.makedirs(target, exist_ok=True)
        for m in mounts:
            cmd = ["mount", "-t", m.type]
            if m.options:
                cmd += ["-o", ",".join(m.options)]
            subprocess.run([*cmd, m.source, target], check=True, capture_output=True, text=True)
            self._targets.append(target)
        return target

    def unmount(self, target: str) -> None:
        while target in self._targets:
            subprocess.run(["umount", target], check=True, capture_output=True, text=True)
            del self._targets[len(self._targets) - 1 - self._targets[::-1].index(target)]

    def unmount_all(self) -> None:
        for target in reversed(self._targets):
            subprocess.run(["umount", "-l", target], check=False, capture_output=True)
        self._targets.clear()
