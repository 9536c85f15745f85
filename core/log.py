"""Process-wide structlog set-up, shared by laminad, the shim and the CLI.

``configure`` runs once per process.  Context such as ``namespace`` and
``rpc`` is bound with ``structlog.contextvars`` by the server's request wrapper, so
every line logged while serving a request carries it.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO


def _import_structlog_without_rich() -> None:
    """Import structlog while ``rich`` looks absent to it.

    structlog imports rich (and through it pygments and attrs) at import time
    when it is installed, only to pretty-print tracebacks: ~100 ms and ~6 MiB
    on laminad's start-up and in every process that logs.  rich is the CLI's
    dependency (its tables and progress bars import it themselves), so
    structlog gets its plain-text tracebacks here.  Later ``import rich`` works
    as usual.
    """
    if "structlog" in sys.modules or "rich" in sys.modules:
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # makes ``import rich`` raise ImportError
    try:
        import structlog  # noqa: F401
    finally:
        del sys.modules["rich"]


_import_structlog_without_rich()
import structlog  # noqa: E402

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
        # Frames without their locals: a request's locals may carry credentials.
        tracebacks = structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        processors += [structlog.processors.ExceptionRenderer(tracebacks), structlog.processors.JSONRenderer()]
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
