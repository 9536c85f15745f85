"""``lamina images push``: upload a local image to a registry, by tag or by digest."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from lamina.cli.pull import make_session, progress_reporter, registry_options

if TYPE_CHECKING:
    from lamina.client import Client


@click.command(short_help="Push a local image to a registry as REF.",
               name="push", epilog="\b\nExamples:\n  lamina images push --plain-http 127.0.0.1:5000/test/busybox:1\n"
               "  lamina images push --plain-http 127.0.0.1:5000/test/busybox:1 docker.io/library/busybox:latest")
@registry_options
@click.argument("ref")
@click.argument("local", required=False, default="")
def push(plain_http: bool, skip_verify: bool, tlscacert: str | None, tlscert: str | None, tlskey: str | None,
         user: str | None, hosts_dir: str,
         platform_specs: tuple[str, ...], ref: str, local: str) -> None:
    """Push the local image LOCAL (default: REF) to the registry as REF."""
    from lamina.cli.session import run
    from lamina.client import platforms
    from lamina.client.push import push as do_push

    wanted = tuple(platforms.parse(p) for p in platform_specs) or None

    async def work(client: Client) -> str:
        async with make_session(plain_http, skip_verify, user, hosts_dir, tlscacert, tlscert, tlskey) as session:
            with progress_reporter() as report:
                root = await do_push(client, session, ref, local, wanted=wanted, report=report)
        return f"{ref} {root.digest}"

    click.echo(run(work))


COMMANDS = [push]
