"""core/log.py renders exceptions without frame locals, in JSON and on a console."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
import structlog

from lamina.core import log as logmod

SECRET = "hunter2-in-a-local"


@pytest.fixture(autouse=True)
def restore_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def _fail_with_a_secret_local() -> None:
    token = SECRET  # noqa: F841 - the local that must not be logged
    raise ValueError("boom")


def _log_failure(fmt: str) -> str:
    out = io.StringIO()
    logmod.configure("info", fmt, out)
    try:
        _fail_with_a_secret_local()
    except ValueError as exc:
        structlog.get_logger().error("request failed", exc_info=exc)
    return out.getvalue()


def test_json_exception_has_frames_and_no_locals() -> None:
    text = _log_failure("json")
    assert SECRET not in text
    [exception] = json.loads(text)["exception"]
    assert exception["exc_type"] == "ValueError" and exception["exc_value"] == "boom"
    assert exception["frames"][-1]["name"] == "_fail_with_a_secret_local"
    assert all(set(frame) == {"filename", "lineno", "name"} for frame in exception["frames"])


_CONSOLE = """
import io, rich, structlog  # rich first: structlog then defaults to rich's tracebacks, which show locals
from lamina.core import log
out = io.StringIO()
log.configure("info", "text", out)
def fail():
    token = %r
    raise ValueError("boom")
try:
    fail()
except ValueError as exc:
    structlog.get_logger().error("request failed", exc_info=exc)
print(out.getvalue())
"""


def test_console_traceback_has_no_locals_even_with_rich_imported_first() -> None:
    pytest.importorskip("rich")
    text = subprocess.run([sys.executable, "-c", _CONSOLE % SECRET], capture_output=True, text=True,
                          check=True, timeout=60).stdout
    assert "ValueError: boom" in text and SECRET not in text
