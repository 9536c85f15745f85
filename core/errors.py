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
import os
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

# OS errors that a request's own content causes (a layer entry's name longer
# than NAME_MAX, a value the kernel rejects): the caller's fault, so reported
# as containerd reports bad input, not as UNKNOWN.
_OS_CODES = {errno.ENAMETOOLONG: 3, errno.EINVAL: 3}

# grpc-go's names of the codes (codes.Code.String()), for log lines.
_CODE_NAMES = (
    "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists",
    "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange",
    "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated",
)


def status_code(exc: BaseException) -> int:
    """The gRPC status code (as an int) that ``exc`` is reported with."""
    if isinstance(exc, TimeoutError):
        return CODE_DEADLINE_EXCEEDED
    if isinstance(exc, asyncio.CancelledError):
        return CODE_CANCELLED
    if isinstance(exc, OSError):
        return _OS_CODES.get(exc.errno or 0, CODE_UNKNOWN)
    for cls in type(exc).__mro__:
        if cls in _CODES:
            return _CODES[cls]  # type: ignore[index]
    return CODE_UNKNOWN


def code_name(code: int) -> str:
    """``NotFound`` for 5: how containerd's logs and Go clients name a code."""
    return _CODE_NAMES[code] if 0 <= code < len(_CODE_NAMES) else f"Code({code})"


def expected(exc: BaseException) -> bool:
    """Whether a failure is one lamina reports by design (its own errors, OS errors
    with a known cause, deadlines, cancellation): logged without a traceback.
    Anything else is a bug or an unforeseen case, logged with one."""
    if isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
        return exc.errno in _OS_CODES or exc.errno == errno.ENOSPC
    if _lmdb_out_of_space(exc):
        return True
    return isinstance(exc, LaminaError | TimeoutError | asyncio.CancelledError)


def _lmdb_out_of_space(exc: BaseException) -> bool:
    """LMDB's ``DiskError`` is its ENOSPC (looked up only if loaded, so that the
    shim does not import lmdb)."""
    lmdb = sys.modules.get("lmdb")
    return lmdb is not None and isinstance(exc, lmdb.DiskError)


def status_message(exc: BaseException) -> str:
    """The status message: the error's text, or Go's words for deadlines, cancellation
    and a full disk (``syscall.ENOSPC``'s text, as containerd's messages end)."""
    if isinstance(exc, TimeoutError):
        return str(exc) or "context deadline exceeded"
    if isinstance(exc, asyncio.CancelledError):
        return str(exc) or "context canceled"
    if isinstance(exc, OSError) and exc.errno:
        return _os_message(exc)
    if _lmdb_out_of_space(exc):
        return "no space left on device"
    return str(exc) or type(exc).__name__


def _os_message(exc: OSError) -> str:
    """Go's words for a failed system call: ``<path>: no space left on device``.

    Python's ``[Errno 28] No space left on device: '/x'`` would reach clients
    as it is; Go clients and people expect the syscall error's own text.
    """
    text = os.strerror(exc.errno or 0)
    text = text[:1].lower() + text[1:]
    paths = " ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
    return f"{paths}: {text}" if paths else text


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
