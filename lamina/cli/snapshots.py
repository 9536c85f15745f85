"""``lamina snapshots``: snapshots in one snapshotter, with ``ctr snapshots``' output shapes.

``prepare`` and ``commit`` label what they make ``containerd.io/gc.root``, as
``ctr`` does, so that garbage collection leaves hand-made snapshots alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from lamina.cli.containers import go_time
from lamina.cli.groups import Group
from lamina.cli.output import format_option, human_bytes, labels_text, print_json, quiet_option, table
from lamina.cli.session import parse_labels, run

if TYPE_CHECKING:
    from lamina.client import Client
    from lamina.client.snapshots import SnapshotInfo
    from lamina.core.mounts import Mount


def _snapshotter() -> str:
    return str(click.get_current_context().find_root().meta.get("lamina.snapshotter", "overlayfs"))


@click.group(name="snapshots", cls=Group)
@click.option("--snapshotter", envvar="LAMINA_SNAPSHOTTER", default="overlayfs", show_default=True,
              help="The snapshotter to work in  [env LAMINA_SNAPSHOTTER]")
def group(snapshotter: str) -> None:
    """Manage snapshots (alias: snapshot) of one snapshotter."""
    click.get_current_context().find_root().meta["lamina.snapshotter"] = snapshotter


def print_mounts(target: str, mounts: Sequence[Mount]) -> None:
    """``mount -t TYPE SOURCE TARGET -o OPTIONS`` per mount, as ``ctr`` prints them."""
    for m in mounts:
        click.echo(f"mount -t {m.type} {m.source} {target} -o {','.join(m.options)}")


def _mounts_json(mounts: Sequence[Mount]) -> str:
    return json.dumps([{"Type": m.type, "Source": m.source, "Options": list(m.options)} for m in mounts], indent=4)


def _make(kind: str) -> None:
    first = "Prepare an active" if kind == "prepare" else "Make a read-only"
    @group.command(name=kind, help=f"{first} snapshot KEY on the committed snapshot PARENT.",
                   short_help=f"{first} snapshot KEY on PARENT.",
                   epilog=f"\b\nExample:\n  lamina snapshots {kind} --target /mnt my-{kind} sha256:…")
    @click.option("-t", "--target", default="", help="Print the mount commands for this target.")
    @click.option("--mounts", "as_json", is_flag=True, help="Print the mounts as JSON.")
    @click.argument("key")
    @click.argument("parent", default="")
    def command(target: str, as_json: bool, key: str, parent: str) -> None:
        snapshotter = _snapshotter()

        async def work(client: Client) -> tuple[Mount, ...]:
            from lamina.client.snapshots import gc_root_label

            if kind == "prepare":
                return await client.snapshots.prepare(key, parent, labels=gc_root_label(), snapshotter=snapshotter)
            return await client.snapshots.view(key, parent, snapshotter=snapshotter)

        mounts = run(work)
        if target:
            print_mounts(target, mounts)
        if as_json:
            click.echo(_mounts_json(mounts))


_make("prepare")
_make("view")


@group.command(epilog="\b\nExample:\n  lamina snapshots commit my-layer my-active")
@click.argument("name")
@click.argument("key")
def commit(name: str, key: str) -> None:
    """Commit the active snapshot KEY as NAME."""
    from lamina.client.snapshots import gc_root_label

    snapshotter = _snapshotter()
    run(lambda c: c.snapshots.commit(name, key, labels=gc_root_label(), snapshotter=snapshotter))


@group.command(short_help="Print the mount commands for snapshot KEY.",
               epilog="\b\nExample:\n  lamina snapshots mounts /mnt my-active")
@click.argument("target")
@click.argument("key")
def mounts(target: str, key: str) -> None:
    """Print the mount commands that would put snapshot KEY on TARGET."""
    snapshotter = _snapshotter()
    print_mounts(target, run(lambda c: c.snapshots.mounts(key, snapshotter=snapshotter)))


@group.command(name="ls", epilog="\b\nExamples:\n  lamina snapshots ls\n  lamina snapshots --snapshotter native ls")
@quiet_option
@format_option
def list_(quiet: bool, fmt: str) -> None:
    """List snapshots (KEY PARENT KIND)."""
    snapshotter = _snapshotter()
    found = run(lambda c: c.snapshots.list(snapshotter=snapshotter))
    if quiet:
        for info in found:
            click.echo(info.name)
    elif fmt == "json":
        print_json(found)
    else:
        table(["key", "parent", "kind"], [(i.name, i.parent, i.kind.value) for i in found])


def info_document(info: SnapshotInfo) -> dict[str, Any]:
    """containerd's ``snapshots.Info`` as Go marshals it (``ctr snapshots info``)."""
    doc: dict[str, Any] = {"Kind": info.kind.value, "Name": info.name}
    if info.parent:
        doc["Parent"] = info.parent
    if info.labels:
        doc["Labels"] = dict(info.labels)
    doc["Created"] = go_time(info.created_at)
    doc["Updated"] = go_time(info.updated_at)
    return doc


@group.command(epilog="\b\nExample:\n  lamina snapshots info my-active")
@click.argument("key")
def info(key: str) -> None:
    """Print snapshot KEY as JSON."""
    snapshotter = _snapshotter()
    click.echo(json.dumps(info_document(run(lambda c: c.snapshots.stat(key, snapshotter=snapshotter))), indent=4))


@group.command(short_help="Print disk usage (KEY SIZE INODES) of snapshots.",
               epilog="\b\nExamples:\n  lamina snapshots usage\n  lamina snapshots usage -b my-active")
@click.option("-b", "in_bytes", is_flag=True, help="Sizes in bytes.")
@format_option
@click.argument("keys", nargs=-1)
def usage(in_bytes: bool, fmt: str, keys: tuple[str, ...]) -> None:
    """Disk usage (KEY SIZE INODES) of KEYS, or of every snapshot."""
    snapshotter = _snapshotter()

    async def work(client: Client) -> list[tuple[str, Any]]:
        names = list(keys) or [i.name for i in await client.snapshots.list(snapshotter=snapshotter)]
        return [(name, await client.snapshots.usage(name, snapshotter=snapshotter)) for name in names]

    found = run(work)
    if fmt == "json":
        print_json([{"key": k, "size": u.size, "inodes": u.inodes} for k, u in found])
        return
    table(["key", "size", "inodes"],
          [(k, str(u.size) if in_bytes else human_bytes(u.size), u.inodes) for k, u in found])


@group.command(epilog="\b\nExample:\n  lamina snapshots tree")
def tree() -> None:
    """Print the snapshots as a tree of parents and children."""
    snapshotter = _snapshotter()
    found = run(lambda c: c.snapshots.list(snapshotter=snapshotter))
    order: list[str] = []
    parents: dict[str, str] = {}
    children: dict[str, list[str]] = {}
    for info in found:  # snapshotTree.add: a parent not listed yet gets a placeholder node
        if info.name not in parents:
            order.append(info.name)
        parents[info.name] = info.parent
        if info.parent:
            if info.parent not in parents:
                order.append(info.parent)
                parents[info.parent] = ""
            children.setdefault(info.parent, []).append(info.name)

    def show(name: str, level: int) -> None:
        prefix = "  " * level + ("\\_" if level else "")
        click.echo(f"{prefix} {name}")
        for child in children.get(name, []):
            show(child, level + 1)

    for name in order:
        if not parents[name]:
            show(name, 0)


@group.command(short_help="Set or remove labels on snapshot KEY.",
               epilog="\b\nExamples:\n  lamina snapshots label my-active owner=ops\n"
               "  lamina snapshots label my-active owner=")
@click.argument("key")
@click.argument("labels", nargs=-1)
def label(key: str, labels: tuple[str, ...]) -> None:
    """Set k=v LABELS on snapshot KEY (k= removes k); prints the labels it then has."""
    snapshotter = _snapshotter()
    values = parse_labels(labels)

    async def work(client: Client) -> SnapshotInfo:
        if not values:
            return await client.snapshots.stat(key, snapshotter=snapshotter)
        return await client.snapshots.set_labels(key, values, snapshotter=snapshotter)

    click.echo(labels_text(run(work).labels))


@group.command(short_help="Remove snapshots KEYS.",
               name="rm", epilog="\b\nExample:\n  lamina snapshots rm my-active my-view")
@click.argument("keys", nargs=-1, required=True)
def remove(keys: tuple[str, ...]) -> None:
    """Remove snapshots KEYS; one with children, or missing, is an error."""
    from lamina.core.errors import LaminaError

    snapshotter = _snapshotter()

    async def work(client: Client) -> None:
        for key in keys:
            try:
                await client.snapshots.remove(key, snapshotter=snapshotter)
            except LaminaError as exc:
                raise type(exc)(f"failed to remove {key!r}: {exc.context}") from exc

    run(work)


COMMANDS = [group]
