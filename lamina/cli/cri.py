"""``lamina cri``: crictl's everyday image and runtime commands, against the CRI on laminad's socket.

As crictl 1.26 does, every command first asks ``RuntimeService/Version``
and refuses a runtime whose CRI is not v1, and the image commands ask
``ImageService/ImageFsInfo`` next.  Output follows crictl's: ``version`` as
``Key:  value`` lines, ``images`` as an IMAGE TAG IMAGE-ID SIZE table (ids
cut to 13 hex digits, sizes in 3 significant digits), ``info``,
``inspecti`` and ``imagefsinfo`` as JSON with the proto's camelCase names.
The pod commands live in :mod:`lamina.cli.cri_pods`, the container
commands in :mod:`lamina.cli.cri_containers`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from lamina.cli import cri_containers, cri_pods
from lamina.cli.cri_calls import call, echo_json, message_json, verbose_info
from lamina.cli.groups import Group
from lamina.cli.output import human_size, quiet_option, table

if TYPE_CHECKING:
    from lamina.api.services.cri import api_pb2 as pb
    from lamina.client.cri import Cri


@click.group(short_help="Talk to the Kubernetes CRI on the same socket, as crictl.", name="cri", cls=Group)
def group() -> None:
    """Talk to the Kubernetes CRI (runtime.v1) on the same socket, as crictl."""


@group.command(epilog="\b\nExample:\n  lamina -a /run/lamina/lamina.sock cri version")
def version() -> None:
    """Print the runtime's name and version, and its CRI version."""
    v = call(lambda cri: cri.version())
    click.echo(f"Version:  {v.version}\nRuntimeName:  {v.runtime_name}\nRuntimeVersion:  {v.runtime_version}\n"
               f"RuntimeApiVersion:  {v.runtime_api_version}")


@group.command(short_help="Print the runtime's conditions and config as JSON.",
               epilog="\b\nExample:\n  lamina cri info | jq .status")
def info() -> None:
    """Print the runtime's conditions (RuntimeReady, NetworkReady) and configuration, as JSON."""
    status = call(lambda cri: cri.status(verbose=True))
    echo_json({"status": message_json(status.status), **verbose_info(status.info)})


@group.command(short_help="Pull IMAGE into the CRI's namespace (k8s.io).",
               epilog="\b\nExamples:\n  lamina cri pull 127.0.0.1:5000/busybox:latest\n"
                      "  lamina cri pull --creds user:secret registry.example/app:1")
@click.option("--creds", metavar="USER[:PASSWORD]", help="Registry credentials (asked for on a TTY when left out).")
@click.option("--auth", "auth_", metavar="BASE64", help="Registry credentials as base64 'user:password'.")
@click.argument("image")
def pull(creds: str | None, auth_: str | None, image: str) -> None:
    """Pull IMAGE into the CRI's namespace (k8s.io) and unpack it."""
    from lamina.api.services.cri import api_pb2 as pb
    from lamina.cli.pull import user_and_secret

    if creds and auth_:
        raise click.UsageError("--creds and --auth cannot be used together")
    auth = None
    if creds:
        user, secret = user_and_secret(creds)
        auth = pb.AuthConfig(username=user, password=secret)
    elif auth_:
        auth = pb.AuthConfig(auth=auth_)
    image_id = call(lambda cri: cri.pull(image, auth), images=True)
    click.echo(f"Image is up to date for {image_id}")


def _rows(image: pb.Image) -> list[tuple[str, str, str, str]]:
    """One row per repo tag; an untagged image shows its repo digests' repository and <none>."""
    short = image.id.removeprefix("sha256:")[:13]
    size = human_size(image.size, 3)
    rows = []
    for tag in image.repo_tags:
        repo, _, name = tag.rpartition(":")
        rows.append((repo, name, short, size))
    if not rows:
        repos = sorted({d.partition("@")[0] for d in image.repo_digests}) or ["<none>"]
        rows = [(repo, "<none>", short, size) for repo in repos]
    return rows


@group.command(short_help="List images (IMAGE TAG IMAGE-ID SIZE).",
               epilog="\b\nExamples:\n  lamina cri images\n  lamina cri images -q busybox")
@quiet_option
@click.argument("image", required=False, default="")
def images(quiet: bool, image: str) -> None:
    """List images (IMAGE TAG IMAGE-ID SIZE), or only the one IMAGE names."""
    found = call(lambda cri: cri.images(image), images=True)
    if quiet:
        for i in found:
            click.echo(i.id)
        return
    table(["IMAGE", "TAG", "IMAGE ID", "SIZE"], sorted(row for i in found for row in _rows(i)))


@group.command(short_help="Remove images by reference or id.",
               epilog="\b\nExample:\n  lamina cri rmi 127.0.0.1:5000/busybox:latest")
@click.argument("refs", nargs=-1, required=True)
def rmi(refs: tuple[str, ...]) -> None:
    """Remove images by reference or id; prints each repo tag removed."""
    from lamina.core.errors import NotFound

    async def work(cri: Cri) -> list[str]:
        deleted = []
        for ref in refs:
            status = await cri.image_status(ref)
            if not status.HasField("image"):
                raise NotFound(f"no such image {ref}", message=f"no such image {ref}")
            await cri.remove_image(status.image.id)
            deleted += list(status.image.repo_tags) or [status.image.id]
        return deleted

    for name in call(work, images=True):
        click.echo(f"Deleted: {name}")


@group.command(epilog="\b\nExample:\n  lamina cri inspecti busybox")
@click.argument("ref")
def inspecti(ref: str) -> None:
    """Print an image's status and verbose info as JSON."""
    from lamina.core.errors import NotFound

    status = call(lambda cri: cri.image_status(ref, verbose=True), images=True)
    if not status.HasField("image"):
        raise NotFound(f"no such image {ref}", message=f"no such image {ref} present")
    echo_json({"status": message_json(status.image), "info": verbose_info(status.info)})


@group.command(short_help="Print the image filesystem's usage as JSON.",
               epilog="\b\nExample:\n  lamina cri imagefsinfo")
def imagefsinfo() -> None:
    """Print what the image filesystem (the snapshotter's root) uses, as JSON."""
    for usage in call(lambda cri: cri.image_fs_info(), images=True):
        echo_json({"status": message_json(usage)})


for _command in cri_pods.COMMANDS + cri_containers.COMMANDS:
    group.add_command(_command)

COMMANDS = [group]
