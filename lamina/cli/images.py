"""``lamina images``: list, tag, remove and check image records.

Sizes, platforms and completeness come from walking the image's manifests
in the content store (``lamina.client.manifests``), for this host's platform.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import click

from lamina.cli import images_archive
from lamina.cli.groups import Group
from lamina.cli.output import format_option, human_bytes, labels_text, print_json, quiet_option, table
from lamina.cli.pull import pull as pull_command
from lamina.cli.push import push as push_command
from lamina.cli.session import remove_each, run

if TYPE_CHECKING:
    from lamina.client import Client, Image


@click.group(name="images", cls=Group)
def group() -> None:
    """Manage images (alias: i)."""


group.add_command(pull_command)
group.add_command(push_command)
for _command in images_archive.COMMANDS:
    group.add_command(_command)


@group.command(short_help="List images (REF TYPE DIGEST SIZE PLATFORMS LABELS).",
               name="ls", epilog="\b\nExamples:\n  lamina images ls\n  lamina images ls -q 'name~=busybox'")
@quiet_option
@format_option
@click.argument("filters", nargs=-1)
def list_(quiet: bool, fmt: str, filters: tuple[str, ...]) -> None:
    """List images (REF TYPE DIGEST SIZE PLATFORMS LABELS), optionally matching FILTERS."""
    from lamina.client import manifests
    from lamina.core.errors import LaminaError
    from lamina.core.platforms import host

    async def work(client: Client) -> list[tuple[Image, int | None, list[str]]]:
        rows = []
        for image in await client.images.list(filters):
            size: int | None = None
            platforms: list[str] = []
            if not quiet:
                try:
                    size = await manifests.size(client.content, image.target, host())
                    platforms = await manifests.platforms(client.content, image.target)
                except (LaminaError, ValueError, KeyError):  # content missing or not a manifest
                    pass
            rows.append((image, size, platforms))
        return rows

    found = run(work)
    if quiet:
        for image, _, _ in found:
            click.echo(image.name)
    elif fmt == "json":
        print_json([{**_record(image), "size": size, "platforms": platforms} for image, size, platforms in found])
    else:
        table(["ref", "type", "digest", "size", "platforms", "labels"],
              [(image.name, image.target.media_type, image.target.digest,
                "-" if size is None else human_bytes(size), ",".join(platforms) or "-",
                labels_text(image.labels) or "-")
               for image, size, platforms in found])


def _record(image: Image) -> dict[str, Any]:
    from lamina.cli.output import jsonable

    return jsonable(image)  # type: ignore[no-any-return]


@group.command(short_help="Remove images; their content goes at the next GC.",
               name="rm", epilog="\b\nExample:\n  lamina images rm docker.io/library/busybox:latest")
@click.option("--sync", is_flag=True, help="Wait for garbage collection of the image's content.")
@click.argument("names", nargs=-1, required=True)
def remove(sync: bool, names: tuple[str, ...]) -> None:
    """Remove the images NAMES (their content goes at the next garbage collection)."""
    remove_each(names, lambda c, x: c.images.delete(x, sync=sync))


@group.command(short_help="Give image SOURCE more names TARGETS.",
               epilog="\b\nExample:\n  lamina images tag docker.io/library/busybox:latest example.com/busybox:1")
@click.option("--force", is_flag=True, help="Replace a TARGET that already exists.")
@click.argument("source")
@click.argument("targets", nargs=-1, required=True)
def tag(force: bool, source: str, targets: tuple[str, ...]) -> None:
    """Give image SOURCE more names TARGETS, pointing at the same content."""
    from lamina.core.errors import AlreadyExists

    async def work(client: Client) -> None:
        image = await client.images.get(source)
        for name in targets:
            copy = dataclasses.replace(image, name=name)
            try:
                await client.images.create(copy)
            except AlreadyExists:
                if not force:
                    raise
                await client.images.update(copy, ["target", "labels"])
            click.echo(name)

    run(work)


@group.command(short_help="Check that images' content is all present.", epilog="\b\nExamples:\n  lamina images check\n"
               "  lamina images check 'name==docker.io/library/busybox:latest'")
@quiet_option
@format_option
@click.argument("filters", nargs=-1)
def check(quiet: bool, fmt: str, filters: tuple[str, ...]) -> None:
    """Check that each image's manifest, config and layers are present for this platform.

    UNPACKED is not checked yet and shows "-".
    """
    from lamina.client import manifests
    from lamina.core.platforms import host

    async def work(client: Client) -> list[tuple[Image, manifests.Check]]:
        return [(image, await manifests.check(client.content, image.target, host()))
                for image in await client.images.list(filters)]

    found = run(work)
    rows = []
    for image, result in found:
        present = sum(d.size for d in result.present)
        required = sum(d.size for d in result.required)
        if result.available:  # worded as ctr 1.6 words it
            status = f"{'incomplete' if result.missing else 'complete'} ({len(result.present)}/{len(result.required)})"
            size = f"{human_bytes(present)}/{human_bytes(required)}"
        else:
            status = f"unavailable ({len(result.present)}/?)"
            size = f"{human_bytes(present)}/?"
        rows.append((image, status, size, present, required))
    if quiet:
        for image, status, *_ in rows:
            click.echo(f"{image.name} {status}")
    elif fmt == "json":
        print_json([{"name": image.name, "digest": image.target.digest, "media_type": image.target.media_type,
                     "status": status, "present_size": present, "required_size": required,
                     "missing": [d.digest for d in result.missing]}
                    for (image, status, _, present, required), (_, result) in zip(rows, found, strict=True)])
    else:
        table(["ref", "type", "digest", "status", "size", "unpacked"],
              [(image.name, image.target.media_type, image.target.digest, status, size, "-")
               for image, status, size, _, _ in rows])


COMMANDS = [group]
