"""A click group that answers to ``ctr``'s aliases (``ns``, ``list``, ``remove`` …) and never cuts a summary."""

from __future__ import annotations

import sys

import click

ALIASES = {
    "namespace": "namespaces", "ns": "namespaces",
    "plugin": "plugins",
    "event": "events",
    "image": "images", "i": "images",
    "lease": "leases",
    "container": "containers", "c": "containers", "task": "tasks", "t": "tasks", "snapshot": "snapshots",
    "list": "ls",
    "remove": "rm", "delete": "rm", "del": "rm",
}


class Group(click.Group):
    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name) or super().get_command(ctx, ALIASES.get(cmd_name, ""))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List each command with its whole summary (``short_help``, else the docstring's first sentence).

        click cuts summaries to the terminal's width with "..." mid-sentence;
        here a summary too long for the line wraps instead.  Commands give a
        ``short_help`` where the first sentence is long, so that at 80
        columns each fits on one line.
        """
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=sys.maxsize)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
