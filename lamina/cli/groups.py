"""A click group that also answers to ``ctr``'s aliases (``ns``, ``list``, ``remove`` …)."""

from __future__ import annotations

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
