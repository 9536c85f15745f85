"""Every ``lamina ... --help``: summaries listed whole, one line each at 80 columns, and no markup.

click cuts a summary to the terminal's width with "..." mid-sentence; the
listing shows each command's ``short_help`` (or its first sentence) whole.
Help text is read in a terminal, so reST/markdown markup (````x````,
``:param:``, backticks) must not reach it.
"""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from lamina.cli.main import cli

COLUMNS = 80


def _commands(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))


COMMANDS = dict(_commands(cli))


@pytest.mark.parametrize("path", list(COMMANDS), ids=lambda p: " ".join(("lamina", *p)))
def test_help_is_whole_and_plain(path: tuple[str, ...]) -> None:
    result = CliRunner(env={"COLUMNS": str(COLUMNS)}).invoke(cli, [*path, "--help"], prog_name="lamina")
    assert result.exit_code == 0, result.output
    text = result.output
    cut = [line for line in text.splitlines() if line.rstrip().endswith("...") and not line.startswith("Usage:")]
    assert not cut, text
    for markup in ("`", ":param", ":return"):
        assert markup not in text, f"{markup!r} in:\n{text}"
    command = COMMANDS[path]
    if isinstance(command, click.Group):
        listing = text.split("\nCommands:\n", 1)[1].split("\n\n", 1)[0].splitlines()
        assert len(listing) == len(command.commands), f"a summary wraps at {COLUMNS} columns:\n{text}"
        for name, sub in command.commands.items():
            summary = sub.get_short_help_str(limit=1 << 30)
            assert summary and summary[-1] in ".)", (name, summary)
            assert any(line.split() == [name, *summary.split()] for line in listing), (name, listing)
