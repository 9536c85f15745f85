"""A forked process's command line, as ``ps`` shows it."""

from __future__ import annotations

import ctypes


def set_title(argv: list[str]) -> None:
    """Overwrite this process's argv area (``/proc/PID/cmdline``) with ``argv``.

    ``prctl(PR_SET_MM_ARG_*)`` would need CAP_SYS_RESOURCE, so the original
    strings are overwritten in place, truncated to their length, and the
    last byte stays NUL (the kernel then reports the area as NUL-separated
    arguments, not as a setproctitle string).
    """
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (stat fields 48, 49)
    room = end - start
    if room <= 1:
        return
    title = b"\0".join(a.encode() for a in argv)[: room - 1]
    ctypes.memmove(start, title.ljust(room, b"\0"), room)
