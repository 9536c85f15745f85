"""How every ``lamina cri`` command talks to the CRI and prints its messages, as crictl does."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from lamina.cli.session import run

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from lamina.client import Client
    from lamina.client.cri import Cri

T = TypeVar("T")


def call(work: Callable[[Cri], Awaitable[T]], *, images: bool = False) -> T:
    """Run ``work`` after crictl's first calls: Version (a CRI other than v1 is refused), then, for
    image commands, ImageFsInfo."""
    async def checked(client: Client) -> T:
        await client.cri.checked_version()
        if images:
            await client.cri.image_fs_info()
        return await work(client.cri)

    return run(checked)


def message_json(message: Message) -> dict[str, Any]:
    """The message as crictl prints it: the proto's JSON names, fields at their defaults included
    (crictl's ``jsonpb.Marshaler`` with ``EmitDefaults``), so a READY pod shows its state."""
    from google.protobuf.json_format import MessageToDict

    return dict(MessageToDict(message, always_print_fields_with_no_presence=True))


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def verbose_info(info: Any) -> dict[str, Any]:
    """crictl prints each verbose ``info`` value as the JSON it holds, else as the string."""
    parsed = {}
    for key, value in sorted(info.items()):
        try:
            parsed[key] = json.loads(value)
        except ValueError:
            parsed[key] = value
    return parsed


def json_or_ids(output: str, quiet: bool, response: Message, ids: list[str]) -> bool:
    """crictl's ``-o json`` and ``-q`` of a listing; False when the table is still to be printed."""
    if output == "json":
        echo_json(message_json(response))
        return True
    if quiet:
        for item in ids:
            click.echo(item)
        return True
    return False
