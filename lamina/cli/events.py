"""``lamina events``: follow the daemon's events, one line each, as ``ctr events`` prints them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from lamina.cli.session import run

if TYPE_CHECKING:
    from lamina.client import Client, Event


def line(event: Event) -> str:
    """``<timestamp> <namespace> <topic> <json payload>``; the timestamp as Go prints a time."""
    when = event.timestamp.strftime("%Y-%m-%d %H:%M:%S.%f +0000 UTC")
    payload = json.dumps(event.payload, separators=(",", ":")) if event.payload is not None else event.type_url
    return f"{when} {event.namespace} {event.topic} {payload}"


@click.command(short_help="Print events as they happen, until interrupted.",
               epilog="\b\nExamples:\n  lamina events\n  lamina events 'topic~=/namespaces/' 'namespace==team-a'")
@click.argument("filters", nargs=-1)
def events(filters: tuple[str, ...]) -> None:
    """Print events of every namespace as they happen, until interrupted; FILTERS are or'ed."""

    async def work(client: Client) -> None:
        async for event in client.events(filters):
            click.echo(line(event))

    run(work)


COMMANDS = [events]
