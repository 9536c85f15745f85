"""laminad's JSON log lines: tracebacks without frame locals."""

from __future__ import annotations

import io
import json

import structlog

from lamina.core.log import configure, get_logger


def test_json_tracebacks_carry_no_locals() -> None:
    out = io.StringIO()
    configure("info", "json", out)
    try:
        password = "s3cret-in-a-local"
        try:
            raise ValueError("boom")
        except ValueError as exc:
            get_logger().error("request failed", exc_info=exc)
    finally:
        structlog.reset_defaults()
    line = json.loads(out.getvalue())
    assert line["exception"][0]["exc_type"] == "ValueError"
    assert line["exception"][0]["frames"], "the frames are still there"
    assert password not in out.getvalue()
