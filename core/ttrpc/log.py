"""The ttrpc package's logger, resolved on first use.

laminad logs through structlog (``core/log.py``); the shim must not import it
(structlog pulls in rich: ~0.15 s and ~2 MiB per shim).  So this package never
imports structlog at module load: ``log`` forwards each call to the logger
given to ``set_logger`` (the shim passes its own, ``shim/log.py``), or, in a
process that set none, to ``structlog.get_logger`` imported at that moment.
"""

from __future__ import annotations

from typing import Any

_logger: Any = None


def set_logger(logger: Any) -> None:
    """Use ``logger`` (``debug``/``info``/``warning``/``error``/``exception``
    with structlog's ``event, **fields`` signature) for this process."""
    global _logger
    _logger = logger


class _Forward:
    def __getattr__(self, name: str) -> Any:
        global _logger
        if _logger is None:
            import structlog

            _logger = structlog.get_logger("lamina.core.ttrpc")
        return getattr(_logger, name)


log: Any = _Forward()
