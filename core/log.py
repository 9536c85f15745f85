"""Process-wide structlog set-up, shared by laminad, the shim and the CLI.

``configure`` runs once per process.  Context such as ``namespace`` and
``rpc`` is bound with ``structlog.contextvars`` by the server's request wrapper, so
every line logged while serving a request carries it.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

LEVELS = ("trace", "debug", "info", "warn", "warning", "error", "fatal", "panic")
FORMATS = ("text", "json")


def _level_number(level: str) -> int:
    """containerd's level names (logrus) mapped onto the stdlib's numbers."""
    aliases = {"trace": "debug", "warn": "warning", "fatal": "critical", "panic": "critical"}
    return logging.getLevelName(aliases.get(level, level).upper())


def configure(level: str = "info", fmt: str = "", stream: TextIO | None = None) -> None:
    """Set up structlog: JSON when asked or when stderr is not a TTY."""
    out = stream or sys.stderr
    as_json = fmt == "json" or (fmt != "text" and not out.isatty())
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if as_json:
        processors += [structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer()]
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=out.isatty()))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_level_number(level)),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=True,
    )


def get_logger(**bound: object) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(**bound)  # type: ignore[no-any-return]
