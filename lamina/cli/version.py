"""``lamina version``."""

from __future__ import annotations

import platform
from typing import TYPE_CHECKING

import click

import lamina
from lamina.cli.session import run

if TYPE_CHECKING:
    from lamina.client import Client, Version


@click.command(short_help="Print the client's and the daemon's versions.",
               epilog="\b\nExample:\n  lamina -a /run/lamina/lamina.sock version")
def version() -> None:
    """Print the client's and the daemon's version, and the daemon's UUID."""

    async def work(client: Client) -> tuple[Version, str]:
        return await client.version(), await client.server()

    server, uuid = run(work)
    click.echo(f"Client:\n  Version:  {lamina.__version__}\n  Python version: {platform.python_version()}\n")
    click.echo(f"Server:\n  Version:  {server.version}\n  Revision: {server.revision}\n  UUID: {uuid}")


COMMANDS = [version]
