"""The shim's logger: JSON lines on fd 2, which is the bundle's ``log`` FIFO.

containerd opens ``<bundle>/log`` (``O_RDWR``) before it runs ``start`` and
copies whatever the shim writes there into its own log (runtime/v2
shim_unix.go ``openShimLog``); the Go shim dup2s that FIFO onto stderr
(shim_unix.go ``openLog``).  Writes are non-blocking and errors are dropped:
a shim must never stall or die because nobody reads its log (the daemon may
be dead or restarting).

structlog costs ~0.15 s of imports (it pulls in rich), more than the whole
rest of the shim, so the shim logs with this module instead, and hands
``get_logger()`` to ``lamina.core.ttrpc.log.set_logger`` for the ttrpc code.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40
_NAMES = {DEBUG: "debug", INFO: "info", WARNING: "warning", ERROR: "error"}


class Logger:
    """A bound logger: ``log.info("event", key=value)`` writes one JSON line."""

    level = INFO
    fd = 2

    def __init__(self, fields: dict[str, Any] | None = None) -> None:
        self._fields = dict(fields or {})

    def bind(self, **fields: Any) -> Logger:
        return Logger({**self._fields, **fields})

    def _emit(self, level: int, event: str, fields: dict[str, Any]) -> None:
        if level < Logger.level:
            return
        record = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{time.time_ns() % 10**9:09d}Z",
            "level": _NAMES[level],
            "msg": event,
            **self._fields,
            **fields,
        }
        line = json.dumps(record, default=str, separators=(",", ":")) + "\n"
        try:
            os.write(Logger.fd, line.encode())
        except OSError:
            pass  # nobody reading (EPIPE) or the FIFO is full (EAGAIN): drop it

    def debug(self, event: str, **fields: Any) -> None:
        self._emit(DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit(INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit(WARNING, event, fields)

    warn = warning

    def error(self, event: str, **fields: Any) -> None:
        self._emit(ERROR, event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        exc = sys.exc_info()[1]
        if exc is not None:
            import traceback

            fields["error"] = str(exc) or type(exc).__name__
            fields["exception"] = "".join(traceback.format_exception(exc))
        self._emit(ERROR, event, fields)


log = Logger()


def configure(*, debug: bool, **fields: Any) -> None:
    """Set the level and the fields every line carries (``id``, ``namespace``).

    ``log`` is changed in place: modules bound it at import, and in a shim
    forked from the zygote they were imported long before this call.
    """
    Logger.level = DEBUG if debug else INFO
    log._fields.clear()
    log._fields.update({"runtime": "io.containerd.lamina.v2", **fields})


def get_logger() -> Logger:
    """The process's logger, for ``lamina.core.ttrpc.log.set_logger``."""
    return log
