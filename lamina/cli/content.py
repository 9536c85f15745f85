"""``lamina content``: blobs and ingests in the content store."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TYPE_CHECKING

import click

from lamina.cli.groups import Group
from lamina.cli.output import (
    format_option,
    human_duration,
    human_size,
    labels_text,
    print_json,
    quiet_option,
    table,
)
from lamina.cli.session import parse_labels, remove_each, run
from lamina.core.timeutil import now

if TYPE_CHECKING:
    from lamina.client import Client


def _age(when: datetime | None) -> str:
    return human_duration(now() - when) if when else "-"


@click.group(name="content", cls=Group)
def group() -> None:
    """Manage blobs and ingests in the content store."""


@group.command(short_help="List blobs (DIGEST SIZE AGE LABELS).",
               name="ls", epilog="\b\nExamples:\n  lamina content ls\n  lamina content ls -q 'labels.\"x\"==y'")
@quiet_option
@format_option
@click.argument("filters", nargs=-1)
def list_(quiet: bool, fmt: str, filters: tuple[str, ...]) -> None:
    """List blobs (DIGEST SIZE AGE LABELS), optionally matching FILTERS (or'ed)."""
    found = run(lambda c: c.content.list(filters))
    if quiet:
        for info in found:
            click.echo(info.digest)
    elif fmt == "json":
        print_json(found)
    else:
        table(["digest", "size", "age", "labels"],
              [(i.digest, human_size(i.size), _age(i.created_at), labels_text(i.labels) or "-") for i in found])


@group.command(short_help="Write stdin into the content store under REF.",
               epilog="\b\nExample:\n  lamina content ingest my-upload --expected-size 4 \\\n"
               "      --expected-digest sha256:… < blob")
@click.argument("ref")
@click.option("--expected-size", type=int, default=0, help="Refuse to commit unless this many bytes arrived.")
@click.option("--expected-digest", default="", help="Refuse to commit unless the content has this digest.")
@click.option("--label", "labels", multiple=True, metavar="K=V", help="Label the committed blob (repeatable).")
def ingest(ref: str, expected_size: int, expected_digest: str, labels: tuple[str, ...]) -> None:
    """Write stdin into the content store under REF and print its digest.

    An interrupted ingest of the same REF resumes where the daemon left off.
    Unless it is labelled containerd.io/gc.root or referenced, the blob is
    garbage-collected once the command's lease ends, as with ctr.
    """
    values = parse_labels(labels)

    async def work(client: Client) -> str:
        async with client.lease():  # as ctr does: the blob is safe until labelled or referenced
            return await client.content.write(
                ref, sys.stdin.buffer, expected=expected_digest, size=expected_size, labels=values,
            )

    digest = run(work)
    click.echo(digest)


@group.command(epilog="\b\nExample:\n  lamina content get sha256:… > blob")
@click.argument("digest")
def get(digest: str) -> None:
    """Write the blob DIGEST to stdout."""
    out = sys.stdout.buffer

    async def work(client: Client) -> None:
        async for chunk in client.content.read(digest):
            out.write(chunk)
        out.flush()

    run(work)


@group.command(short_help="Remove blobs from this namespace.",
               name="rm", epilog="\b\nExample:\n  lamina content rm sha256:… sha256:…")
@click.argument("digests", nargs=-1, required=True)
def remove(digests: tuple[str, ...]) -> None:
    """Remove the blobs DIGESTS from this namespace, printing each one removed."""
    remove_each(digests, lambda c, x: c.content.delete(x))


@group.command(short_help="Set or remove labels on blob DIGEST.",
               epilog="\b\nExample:\n  lamina content label sha256:… containerd.io/gc.root=x old=")
@click.argument("digest")
@click.argument("labels", nargs=-1, required=True)
def label(digest: str, labels: tuple[str, ...]) -> None:
    """Set k=v LABELS on blob DIGEST; an empty value removes the label."""
    values = parse_labels(labels)
    run(lambda c: c.content.set_labels(digest, values))


@group.command(short_help="List ingests in progress (REF SIZE AGE).",
               epilog="\b\nExamples:\n  lamina content active\n  lamina content active 'ref~=upload'")
@quiet_option
@format_option
@click.argument("filters", nargs=-1)
def active(quiet: bool, fmt: str, filters: tuple[str, ...]) -> None:
    """List ingests in progress (REF SIZE AGE), optionally matching FILTERS."""
    found = run(lambda c: c.content.statuses(filters))
    if quiet:
        for status in found:
            click.echo(status.ref)
    elif fmt == "json":
        print_json(found)
    else:
        table(["ref", "size", "age"], [(s.ref, human_size(s.offset), _age(s.started_at)) for s in found])


@group.command(epilog="\b\nExample:\n  lamina content abort my-upload")
@click.argument("refs", nargs=-1, required=True)
def abort(refs: tuple[str, ...]) -> None:
    """Abort the ingests REFS and discard what they wrote."""

    async def work(client: Client) -> None:
        for ref in refs:
            await client.content.abort(ref)

    run(work)


COMMANDS = [group]
