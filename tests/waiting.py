"""The one way tests wait: for a condition, with a deadline, never for a fixed time.

A fixed sleep is either too short on a loaded machine (the test flakes) or
too long everywhere else (the suite crawls); polling a predicate is neither.
A blocking call without a deadline (``waitpid``, ``readline``) turns a bug into
a hang that only pytest-timeout ends, without saying what was awaited.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import IO, AnyStr, TypeVar

T = TypeVar("T")

POLL_INTERVAL = 0.05


def eventually(predicate: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    Raises ``AssertionError`` naming ``what`` when ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(POLL_INTERVAL)


def reap(pid: int, timeout: float = 30.0) -> int:
    """Wait for our child ``pid`` to exit and return its exit code (``-N`` for signal N)."""

    def exited() -> tuple[int, int] | None:
        found, status = os.waitpid(pid, os.WNOHANG)
        return (found, status) if found else None

    _, status = eventually(exited, timeout, what=f"process {pid} to exit")
    return os.waitstatus_to_exitcode(status)


def readline(stream: IO[AnyStr], timeout: float = 30.0, what: str = "a line") -> AnyStr:
    """``stream.readline()`` with a deadline.

    A buffered pipe may hold a line that ``select`` on its descriptor cannot
    see, so the read happens on a thread; on timeout that thread stays blocked
    until the test's teardown closes the other end.
    """
    got: list[AnyStr] = []
    reader = threading.Thread(target=lambda: got.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
    return got[0]
