"""``lamina leases``: create, list and remove leases."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import click

from lamina.cli.groups import Group
from lamina.cli.output import format_option, labels_text, print_json, quiet_option, table
from lamina.cli.session import parse_labels, remove_each, run

if TYPE_CHECKING:
    pass

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``24h``, ``2d`` or bare seconds; ``0`` means never."""
    unit = text[-1:] if text[-1:] in _UNITS else "s"
    number = text[:-1] if text[-1:] in _UNITS else text
    try:
        return timedelta(seconds=float(number) * _UNITS[unit])
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a duration such as 30m or 24h", param_hint="--expires") from None


@click.group(short_help="Manage leases (they keep content from GC).", name="leases", cls=Group)
def group() -> None:
    """Manage leases, which keep content and snapshots from garbage collection."""


@group.command(epilog="\b\nExamples:\n  lamina leases create\n"
               "  lamina leases create --id build-1 --expires 2h owner=ci")
@click.option("--id", "lease_id", default="", help="The lease's id (default: random).")
@click.option("-x", "--expires", default="24h", show_default=True, help="Expire after this long (0: never).")
@click.argument("labels", nargs=-1)
def create(lease_id: str, expires: str, labels: tuple[str, ...]) -> None:
    """Create a lease with optional k=v LABELS and print its id."""
    expire = _duration(expires)
    values = parse_labels(labels)
    lease = run(lambda c: c.leases.create(lease_id, labels=values, expire=expire or None))
    click.echo(lease.id)


@group.command(short_help="List leases (ID CREATED AT LABELS).",
               name="ls", epilog="\b\nExamples:\n  lamina leases ls\n  lamina leases ls -q 'id~=build'")
@quiet_option
@format_option
@click.argument("filters", nargs=-1)
def list_(quiet: bool, fmt: str, filters: tuple[str, ...]) -> None:
    """List leases (ID CREATED AT LABELS), optionally matching FILTERS."""
    found = run(lambda c: c.leases.list(filters))
    if quiet:
        for lease in found:
            click.echo(lease.id)
    elif fmt == "json":
        print_json(found)
    else:
        table(["id", "created at", "labels"],
              [(x.id, x.created_at.isoformat(timespec="seconds") if x.created_at else "-", labels_text(x.labels))
               for x in found])


@group.command(name="rm", epilog="\b\nExample:\n  lamina leases rm --sync build-1")
@click.option("--sync", is_flag=True, help="Wait for garbage collection to finish.")
@click.argument("ids", nargs=-1, required=True)
def remove(sync: bool, ids: tuple[str, ...]) -> None:
    """Remove the leases IDS, printing each one removed."""
    remove_each(ids, lambda c, x: c.leases.delete(x, sync=sync))

COMMANDS = [group]
