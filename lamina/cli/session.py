"""The CLI's global settings, and running one command's work on a client.

Only :func:`run` imports the client library (and with it grpc), so that
``lamina --help`` and usage errors never pay for it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import click

if TYPE_CHECKING:
    from lamina.client import Client

T = TypeVar("T")


@dataclass
class Settings:
    """Set by the root group from ``--address``, ``--namespace``, ``--debug`` and the TLS files."""

    address: str | None = None  # None: the client's default (env, then /run/lamina/lamina.sock)
    namespace: str | None = None
    debug: bool = False
    tlscacert: str = ""
    tlscert: str = ""
    tlskey: str = ""


#: The one Settings of this process, also read by ``main`` when reporting an error.
settings = Settings()


def run(work: Callable[[Client], Awaitable[T]]) -> T:
    """Open a client with the global settings, run ``work`` on it, and close it."""
    import asyncio

    from lamina.client import Client, TLSFiles

    tls = None
    if settings.tlscacert or settings.tlscert or settings.tlskey:
        tls = TLSFiles(ca=settings.tlscacert, cert=settings.tlscert, key=settings.tlskey)

    async def session() -> T:
        async with Client(settings.address, settings.namespace, tls=tls) as client:
            return await work(client)

    return asyncio.run(session())


def parse_labels(args: Iterable[str]) -> dict[str, str]:
    """``k=v`` arguments as ``ctr``'s ``LabelArgs`` reads them: a bare ``k`` means ``k=true``."""
    labels = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not key:
            raise click.BadParameter(f"label {arg!r} has no key", param_hint="LABELS")
        labels[key] = value if sep else "true"
    return labels


def remove_each(items: Iterable[str], delete: Callable[[Client, str], Awaitable[object]]) -> None:
    """Delete each item, printing it when gone; report each failure and exit 1 after all.

    As in ``ctr ... rm``, an item that is not there only earns a warning.
    """
    from lamina.cli.output import warn
    from lamina.core.errors import NotFound

    async def work(client: Client) -> bool:
        failed = False
        for item in items:
            try:
                await delete(client, item)
            except NotFound as exc:
                warn(f"warning: {exc}")
                continue
            except Exception as exc:  # noqa: BLE001 - one line per failure, then go on
                warn(f"unable to delete {item}: {exc}")
                failed = True
                continue
            click.echo(item)
        return failed

    if run(work):
        raise click.exceptions.Exit(1)
