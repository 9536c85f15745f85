"""``lamina containers``: create, list, inspect, label and remove container records (alias: c)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from lamina.cli.groups import Group
from lamina.cli.output import format_option, labels_text, print_json, quiet_option, table
from lamina.cli.run import container_flags, container_options
from lamina.cli.session import parse_labels, remove_each, run

if TYPE_CHECKING:
    from lamina.client.containers import Container


def go_time(value: datetime | None) -> str:
    """A time as Go's ``encoding/json`` writes it (RFC 3339, nanoseconds, ``Z``)."""
    if value is None:
        return "0001-01-01T00:00:00Z"
    text = value.isoformat()
    return text.replace("+00:00", "Z")


def info_document(container: Container) -> dict[str, Any]:
    """``ctr containers info``: containerd's ``containers.Container`` JSON, with the spec decoded."""
    import base64

    options: dict[str, Any] | None = None
    if container.runtime.options_type:
        options = {"type_url": container.runtime.options_type}
        if container.runtime.options:
            options["value"] = base64.b64encode(container.runtime.options).decode()
    doc: dict[str, Any] = {
        "ID": container.id, "Labels": dict(container.labels) or None, "Image": container.image,
        "Runtime": {"Name": container.runtime.name, "Options": options},
        "SnapshotKey": container.snapshot_key, "Snapshotter": container.snapshotter,
        "CreatedAt": go_time(container.created_at), "UpdatedAt": go_time(container.updated_at),
        "Extensions": None,
    }
    if container.spec:
        doc["Spec"] = container.spec
    return doc


@click.group(short_help="Manage containers (alias: c); processes are tasks.", name="containers", cls=Group)
def group() -> None:
    """Manage containers (alias: c): metadata only; processes are tasks."""


@group.command(short_help="Create container ID from IMAGE, with its own snapshot.",
               context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
               epilog="\b\nExample:\n  lamina containers create docker.io/library/busybox:latest web sleep 1000")
@container_flags
@click.argument("image")
@click.argument("container_id", metavar="ID")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def create(image: str, container_id: str, args: tuple[str, ...], **flags: Any) -> None:
    """Create container ID from IMAGE (with its own snapshot); start it with 'lamina tasks start'."""
    from lamina.client.run import new_container

    options = container_options(args, **flags)
    run(lambda c: new_container(c, container_id, image, options))


@group.command(short_help="List containers (CONTAINER IMAGE RUNTIME).",
               name="ls", epilog="\b\nExamples:\n  lamina containers ls\n"
               "  lamina containers ls -q 'image==docker.io/library/busybox:latest'")
@quiet_option
@format_option
@click.argument("filters", nargs=-1)
def list_(quiet: bool, fmt: str, filters: tuple[str, ...]) -> None:
    """List containers (CONTAINER IMAGE RUNTIME), optionally matching FILTERS."""
    found = run(lambda c: c.containers.list(filters))
    if quiet:
        for container in found:
            click.echo(container.id)
    elif fmt == "json":
        print_json(found)
    else:
        table(["container", "image", "runtime"], [(c.id, c.image or "-", c.runtime.name) for c in found])


@group.command(epilog="\b\nExample:\n  lamina containers info web")
@click.option("--spec", "spec_only", is_flag=True, help="Print only the OCI spec.")
@click.argument("container_id", metavar="ID")
def info(spec_only: bool, container_id: str) -> None:
    """Print container ID as JSON (its OCI spec decoded)."""
    container = run(lambda c: c.containers.get(container_id))
    doc = dict(container.spec) if spec_only else info_document(container)
    click.echo(json.dumps(doc, indent=4))


@group.command(short_help="Set or remove labels on container ID.",
               epilog="\b\nExamples:\n  lamina containers label web owner=ops\n  lamina containers label web owner=")
@click.argument("container_id", metavar="ID")
@click.argument("labels", nargs=-1)
def label(container_id: str, labels: tuple[str, ...]) -> None:
    """Set k=v LABELS on container ID (k= removes k); prints the labels it then has."""
    values = parse_labels(labels)

    async def work(client: Any) -> Container:
        await client.containers.get(container_id)
        return await client.containers.set_labels(container_id, values)  # type: ignore[no-any-return]

    click.echo(labels_text(run(work).labels))


@group.command(short_help="Remove containers with their snapshots.",
               name="rm", epilog="\b\nExample:\n  lamina containers rm web")
@click.argument("ids", nargs=-1, required=True)
def remove(ids: tuple[str, ...]) -> None:
    """Remove containers IDS with their snapshots (and stopped tasks; running ones are refused)."""
    from lamina.client.run import delete_container

    remove_each(ids, delete_container)


COMMANDS = [group]
