"""The shim's ``log`` FIFO, read by the daemon and re-emitted through structlog.

As containerd's ``openShimLog``, the daemon creates the FIFO and opens it
read-write and non-blocking before the shim starts, so the shim's write-only
open never blocks and the FIFO never reports end-of-file while the daemon
holds it.  lamina's shim writes JSON lines; containerd's shims write logrus
text (``time=… level=info msg="…" k=v``); both become one log record each,
with ``id``, ``namespace`` and ``runtime`` bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import os
import re
from typing import Any

from lamina.core.log import get_logger

_LOGFMT = re.compile(r'(\w[\w.-]*)=("(?:[^"\\]|\\.)*"|\S*)')
_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
    "panic": logging.CRITICAL,
    "critical": logging.CRITICAL,
}
_DROPPED = frozenset({"time", "timestamp", "level", "msg", "event"})


def parse_line(line: str) -> tuple[int, str, dict[str, Any]]:
    """(level, message, other fields) of one shim log line."""
    fields: dict[str, Any]
    try:
        doc = json.loads(line)
    except json.JSONDecodeError:
        doc = None
    if isinstance(doc, dict):
        fields = doc
    else:
        pairs = _LOGFMT.findall(line)
        if not pairs or not any(k in ("level", "msg") for k, _ in pairs):
            return logging.INFO, line, {}
        fields = {}
        for key, value in pairs:
            if value.startswith('"'):
                with contextlib.suppress(json.JSONDecodeError):
                    value = json.loads(value)
            fields[key] = value
    level = _LEVELS.get(str(fields.get("level", "info")).lower(), logging.INFO)
    message = str(fields.get("event", fields.get("msg", "")))
    rest = {f"shim_{k}" if k in ("id", "namespace", "runtime") else k: v
            for k, v in fields.items() if k not in _DROPPED}
    return level, message, rest


class ShimLog:
    """Copies one shim's log FIFO into the daemon's log until closed."""

    def __init__(self, path: str, *, id_: str, namespace: str, runtime: str) -> None:
        if not os.path.exists(path):
            os.mkfifo(path, 0o700)
        self._fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        self._log = get_logger().bind(id=id_, namespace=namespace, runtime=runtime)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        # A fresh context: the copy outlives the request that started the shim.
        self._task = asyncio.create_task(self._copy(), context=contextvars.Context())

    async def _copy(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 20)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(self._fd, "rb", buffering=0, closefd=False)
        )
        try:
            while line := await reader.readline():
                text = line.decode(errors="replace").strip()
                if text:
                    level, message, fields = parse_line(text)
                    self._log.log(level, message or "shim log", **fields)
        except (ValueError, asyncio.LimitOverrunError):
            self._log.warning("shim log line too long, log copy stopped")
        finally:
            transport.close()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
