"""``lamina namespaces``: create, list, label and remove namespaces."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from lamina.cli.groups import Group
from lamina.cli.output import format_option, labels_text, print_json, quiet_option, table
from lamina.cli.session import parse_labels, remove_each, run

if TYPE_CHECKING:
    pass


@click.group(short_help="Manage namespaces (alias: ns).", name="namespaces", cls=Group)
def group() -> None:
    """Manage namespaces (alias: ns); namespaces are global, -n does not apply."""


@group.command(epilog="\b\nExample:\n  lamina namespaces create team-a owner=ops tier=prod")
@click.argument("name")
@click.argument("labels", nargs=-1)
def create(name: str, labels: tuple[str, ...]) -> None:
    """Create namespace NAME with optional k=v LABELS."""
    values = parse_labels(labels)
    run(lambda c: c.namespaces.create(name, values))


@group.command(name="ls", epilog="\b\nExamples:\n  lamina namespaces ls\n  lamina namespaces ls -q\n"
               "  lamina namespaces ls --format json")
@quiet_option
@format_option
def list_(quiet: bool, fmt: str) -> None:
    """List namespaces and their labels."""
    found = run(lambda c: c.namespaces.list())
    if quiet:
        for ns in found:
            click.echo(ns.name)
    elif fmt == "json":
        print_json(found)
    else:
        table(["name", "labels"], [(ns.name, labels_text(ns.labels)) for ns in found])


@group.command(short_help="Set or remove labels on namespace NAME.",
               epilog="\b\nExample:\n  lamina namespaces label team-a owner=dev old=   # sets owner, removes old")
@click.argument("name")
@click.argument("labels", nargs=-1, required=True)
def label(name: str, labels: tuple[str, ...]) -> None:
    """Set k=v LABELS on namespace NAME; an empty value removes the label."""
    values = parse_labels(labels)
    run(lambda c: c.namespaces.set_labels(name, values))


@group.command(short_help="Remove empty namespaces.",
               name="rm", epilog="\b\nExample:\n  lamina namespaces rm team-a team-b")
@click.argument("names", nargs=-1, required=True)
def remove(names: tuple[str, ...]) -> None:
    """Remove the (empty) namespaces NAMES, printing each one removed."""
    remove_each(names, lambda c, x: c.namespaces.delete(x))

COMMANDS = [group]
