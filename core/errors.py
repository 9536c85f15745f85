"""The one error hierarchy of lamina.

Stores, managers and plugins raise these; only the gRPC request wrapper and the
ttrpc server turn them into status codes (``status_code`` and ``status_message`` below).  The
message puts the context first and the class text last, as containerd's
errdefs do (``container "x": not found``), because Go clients strip that
suffix when they wrap errors again.
"""

from __future__ import annotations

import asyncio
import errno
import sys


class LaminaError(Exception):
    """Base class: ``str(err)`` is ``"<context>: <kind text>"``."""

    text = "unknown"

    def __init__(self, context: str = "", *, message: str = "") -> None:
        """``message`` replaces the whole text, for the few replies where containerd's
        words carry no kind suffix (``task x not found``)."""
        self.context = context or message
        super().__init__(message or (f"{context}: {self.text}" if context else self.text))


class InvalidArgument(LaminaError):
    text = "invalid argument"


class NotFound(LaminaError):
    text = "not found"


class AlreadyExists(LaminaError):
    text = "already exists"


class FailedPrecondition(LaminaError):
    text = "failed precondition"


class Conflict(FailedPrecondition):
    """An object is in a state that forbids the change (e.g. still in use)."""


class NotModified(FailedPrecondition):
    text = "not modified"


class Unavailable(LaminaError):
    text = "unavailable"


class NotImplemented_(LaminaError):  # noqa: N801 - avoid shadowing the builtin
    text = "not implemented"


class OutOfRange(LaminaError):
    """containerd 1.6 answers OUT_OF_RANGE for content offsets past the end."""

    text = "out of range"


# gRPC status codes as plain integers, so that the shim (which must not
# import grpcio) and the ttrpc server share this table with the gRPC edge.
CODE_OK = 0
CODE_CANCELLED = 1
CODE_UNKNOWN = 2
CODE_DEADLINE_EXCEEDED = 4
# The gRPC transport's own failures (core/server.py), as grpc-go reports them.
CODE_RESOURCE_EXHAUSTED = 8
CODE_UNIMPLEMENTED = 12
CODE_INTERNAL = 13

_CODES: dict[type[LaminaError], int] = {
    InvalidArgument: 3,
    NotFound: 5,
    AlreadyExists: 6,
    FailedPrecondition: 9,
    OutOfRange: 11,
    NotImplemented_: CODE_UNIMPLEMENTED,
    Unavailable: 14,
}
_CLASSES: dict[int, type[LaminaError]] = {code: cls for cls, code in _CODES.items()}


def status_code(exc: BaseException) -> int:
    """The gRPC status code (as an int) that ``exc`` is reported with."""
    if isinstance(exc, TimeoutError):
        return CODE_DEADLINE_EXCEEDED
    if isinstance(exc, asyncio.CancelledError):
        return CODE_CANCELLED
    for cls in type(exc).__mro__:
        if cls in _CODES:
            return _CODES[cls]  # type: ignore[index]
    return CODE_UNKNOWN


def _out_of_space(exc: BaseException) -> bool:
    """ENOSPC from the OS, or from LMDB (its ``DiskError`` is ENOSPC; looked up only
    if loaded, so that the shim does not import it)."""
    if isinstance(exc, OSError):
        return exc.errno == errno.ENOSPC
    lmdb = sys.modules.get("lmdb")
    return lmdb is not None and isinstance(exc, lmdb.DiskError)


def status_message(exc: BaseException) -> str:
    """The status message: the error's text, or Go's words for deadlines, cancellation
    and a full disk (``syscall.ENOSPC``'s text, as containerd's messages end)."""
    if isinstance(exc, TimeoutError):
        return str(exc) or "context deadline exceeded"
    if isinstance(exc, asyncio.CancelledError):
        return str(exc) or "context canceled"
    if _out_of_space(exc):
        return "no space left on device"
    return str(exc) or type(exc).__name__


def from_status(code: int, message: str) -> LaminaError:
    """Rebuild a lamina error from a status received over gRPC or ttrpc.

    The kind's suffix is stripped so that the error renders as it was raised.
    """
    cls = _CLASSES.get(code, LaminaError)
    suffix = f": {cls.text}"
    context = message[: -len(suffix)] if message.endswith(suffix) else message
    if message == cls.text:
        context = ""
    return cls(context)
