"""The kubelet's CRI log format as containerd's ``pkg/cri/io/logger.go`` writes it."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from lamina.plugins.cri.container_logs import LineSplitter, timestamp

LINE = re.compile(rb"^\S+ (stdout|stderr) ([PF]) (.*)\n$", re.S)


def _parts(lines: list[bytes]) -> list[tuple[bytes, bytes]]:
    found = []
    for line in lines:
        match = LINE.match(line)
        assert match, line
        found.append((match.group(2), match.group(3)))
    return found


def test_rfc3339nano_drops_trailing_zeros() -> None:
    assert timestamp(datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=UTC)) == "2026-01-02T03:04:05.12Z"
    assert timestamp(datetime(2026, 1, 2, 3, 4, 5, 0, tzinfo=UTC)) == "2026-01-02T03:04:05Z"


def test_whole_lines_across_reads() -> None:
    s = LineSplitter("stdout", 16)
    assert s.feed(b"hel") == []
    assert _parts(s.feed(b"lo\nworld\n")) == [(b"F", b"hello"), (b"F", b"world")]
    assert _parts(s.feed(b"\n")) == [(b"F", b"")]


def test_a_long_line_goes_out_in_parts_then_its_end() -> None:
    s = LineSplitter("stderr", 4)
    assert _parts(s.feed(b"abcdefghij\n")) == [(b"P", b"abcd"), (b"P", b"efgh"), (b"F", b"ij")]
    assert _parts(s.feed(b"abcdefg")) == [(b"P", b"abcd")]
    assert _parts(s.flush()) == [(b"F", b"efg")]
    assert s.flush() == []


def test_the_stream_name_is_in_each_line() -> None:
    assert LineSplitter("stderr", 8).feed(b"x\n")[0].split(b" ")[1:] == [b"stderr", b"F", b"x\n"]
