"""``lamina images import|export|build-busybox|build-pause|mount|unmount``: image archives and root filesystems.

``build-busybox`` and ``build-pause`` write an archive offline, without a daemon.  The other
flags and output follow ``ctr``: import prints ``unpacking NAME (DIGEST)...done``
per image, mount prints the chain id and the target, unmount the target.
Progress goes to stdout as bars on a TTY and one line per change otherwise
(never when the archive itself is written to stdout).
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from lamina.client import Client


@click.command(short_help="Import images from an OCI or Docker archive.",
               name="import", epilog="\b\nExamples:\n  lamina images import busybox.tar\n"
               "  lamina images import --base-name example.com/app --digests app.tar\n"
               "  skopeo copy docker://busybox docker-archive:/dev/stdout | lamina images import -")
@click.option("--base-name", default="", help="Name prefix for tag-only names; when given, only images "
              "under it are imported (default: import-YYYY-MM-DD).")
@click.option("--index-name", default="", help="Also record the whole index under this name.")
@click.option("--digests", is_flag=True, help="Also record each manifest as BASE@DIGEST.")
@click.option("--skip-digest-for-named", is_flag=True, help="With --digests, only for manifests without a name.")
@click.option("--platform", "platform_spec", default="", metavar="OS/ARCH[/VARIANT]",
              help="Import and unpack only this platform (strict match).")
@click.option("--all-platforms", is_flag=True, help="Import the content of every platform.")
@click.option("--no-unpack", is_flag=True, help="Do not unpack the images into snapshots.")
@click.option("--snapshotter", default="", help="Unpack into this snapshotter (default: the namespace's, "
              "else overlayfs).")
@click.argument("source", metavar="FILE|-")
def import_(base_name: str, index_name: str, digests: bool, skip_digest_for_named: bool, platform_spec: str,
            all_platforms: bool, no_unpack: bool, snapshotter: str, source: str) -> None:
    """Import the images of an OCI image-layout or Docker archive (FILE, or - for stdin)."""
    from lamina.cli.pull import progress_reporter
    from lamina.cli.session import run
    from lamina.client import archive, platforms

    if skip_digest_for_named and not digests:
        raise click.UsageError("--skip-digest-for-named must be specified with --digests option")
    platform = platforms.parse(platform_spec) if platform_spec else None
    options = archive.ImportOptions(base_name=base_name, index_name=index_name, digests=digests,
                                    skip_digest_for_named=skip_digest_for_named, platform=platform,
                                    all_platforms=all_platforms, unpack=not no_unpack, snapshotter=snapshotter)

    async def work(client: Client) -> None:
        stream = sys.stdin.buffer if source == "-" else open(source, "rb")  # noqa: SIM115 - closed below
        try:
            with progress_reporter() as report:
                images = await archive.import_images(client, stream, options, report)
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()
        if no_unpack:
            return
        for image in images:
            click.echo(f"unpacking {image.name} ({image.target.digest})...", nl=False)
            await archive.unpack_image(client, image, snapshotter=snapshotter, platform=platform,
                                       strict=platform is not None)
            click.echo("done")

    run(work)


@click.command(short_help="Write images to an OCI archive.",
               epilog="\b\nExamples:\n  lamina images export busybox.tar docker.io/library/busybox:latest\n"
               "  lamina images export --all-platforms - example.com/app:1 > app.tar")
@click.option("--platform", "platform_specs", multiple=True, metavar="OS/ARCH[/VARIANT]",
              help="Export this platform's manifests (repeatable; default: this host's).")
@click.option("--all-platforms", is_flag=True, help="Export every platform's manifests (all must be present).")
@click.option("--skip-manifest-json", is_flag=True, help="Leave out Docker's manifest.json.")
@click.argument("out", metavar="OUT|-")
@click.argument("refs", nargs=-1, required=True)
def export(platform_specs: tuple[str, ...], all_platforms: bool, skip_manifest_json: bool, out: str,
           refs: tuple[str, ...]) -> None:
    """Write the images REFS to OUT (or - for stdout) as an OCI archive."""
    from lamina.cli.pull import progress_reporter
    from lamina.cli.session import run
    from lamina.client import platforms
    from lamina.client.archive_export import export as do_export
    from lamina.client.remotes.progress import ignore

    wanted = tuple(platforms.parse(p) for p in platform_specs)

    async def work(client: Client) -> None:
        if out == "-":
            await do_export(client, sys.stdout.buffer, refs, platform_specs=wanted, all_platforms=all_platforms,
                            skip_manifest_json=skip_manifest_json, report=ignore)
            return
        directory, base = os.path.split(os.path.abspath(out))
        fd, partial = tempfile.mkstemp(prefix=f".{base}.", dir=directory)
        try:
            with os.fdopen(fd, "wb") as stream, progress_reporter() as report:
                await do_export(client, stream, refs, platform_specs=wanted, all_platforms=all_platforms,
                                skip_manifest_json=skip_manifest_json, report=report)
                os.fchmod(stream.fileno(), 0o644)
            os.replace(partial, out)
        except BaseException:
            os.unlink(partial)
            raise

    run(work)


@click.command(short_help="Mount image REF's root filesystem on TARGET.",
               epilog="\b\nExample:\n  lamina images mount docker.io/library/busybox:latest /mnt/busybox")
@click.option("--rw", is_flag=True, help="Mount a writable snapshot instead of a read-only view.")
@click.option("--snapshotter", default="", help="Snapshotter (default: the namespace's, else overlayfs).")
@click.option("--platform", "platform_spec", default="", metavar="OS/ARCH[/VARIANT]",
              help="Mount this platform's image (default: this host's).")
@click.argument("ref")
@click.argument("target", type=click.Path(file_okay=False))
def mount(rw: bool, snapshotter: str, platform_spec: str, ref: str, target: str) -> None:
    """Mount the root filesystem of image REF on the directory TARGET (unpacking it if needed)."""
    from lamina.cli.session import run
    from lamina.client import platforms
    from lamina.client.mount import mount as do_mount

    platform = platforms.parse(platform_spec) if platform_spec else None
    path = os.path.abspath(target)

    async def work(client: Client) -> str:
        return await do_mount(client, ref, path, rw=rw, snapshotter=snapshotter, platform=platform)

    click.echo(run(work))
    click.echo(path)


@click.command(short_help="Unmount TARGET (with --rm, remove its snapshot).",
               epilog="\b\nExample:\n  lamina images unmount --rm /mnt/busybox")
@click.option("--rm", "remove", is_flag=True, help="Also remove the snapshot and its lease.")
@click.option("--snapshotter", default="", help="Snapshotter of the snapshot (default: the one it was "
              "mounted from).")
@click.argument("target", type=click.Path(file_okay=False))
def unmount(remove: bool, snapshotter: str, target: str) -> None:
    """Unmount TARGET; with --rm also remove the snapshot and lease that 'images mount' made for it."""
    from lamina.cli.session import run
    from lamina.client.mount import unmount as do_unmount

    path = os.path.abspath(target)

    async def work(client: Client) -> None:
        await do_unmount(client, path, remove=remove, snapshotter=snapshotter)

    run(work)
    click.echo(path)


def _check_out(out: str, source: str, package: str) -> None:
    """Refuse an archive path that cannot be what the user meant, before writing anything."""
    if out.startswith("-"):
        raise click.BadParameter(f"{out!r} looks like an option; write ./{out} to mean a file", param_hint="OUT.tar")
    if os.path.isdir(out):
        raise click.BadParameter(f"{out!r} is a directory", param_hint="OUT.tar")
    if not os.path.isdir(os.path.dirname(os.path.abspath(out))):
        raise click.BadParameter(f"the directory of {out!r} does not exist", param_hint="OUT.tar")
    if not os.path.isfile(source):
        raise click.ClickException(f"{source} not found: install Debian's {package}")


@click.command(short_help="Write a busybox image archive, offline.",
               name="build-busybox", epilog="\b\nExample:\n  lamina images build-busybox /tmp/busybox.tar\n"
               "  ctr images import /tmp/busybox.tar")
@click.argument("out", metavar="OUT.tar")
def build_busybox(out: str) -> None:
    """Write a busybox image archive, offline, from Debian's busybox-static.

    OUT.tar is an OCI archive of docker.io/library/busybox:latest (this
    host's platform; /bin/busybox and its applets) for 'images import' or
    'ctr images import'.
    It is written whole or not at all, replacing any file of that name.
    """
    from lamina.images_offline import BUSYBOX, DEFAULT_NAME, write_busybox_archive

    _check_out(out, BUSYBOX, "busybox-static")
    write_busybox_archive(out)
    click.echo(f"{out}: {DEFAULT_NAME}")


@click.command(short_help="Write a pod pause image archive, offline.",
               name="build-pause", epilog="\b\nExample:\n  lamina images build-pause /tmp/pause.tar\n"
               "  ctr -n k8s.io images import /tmp/pause.tar")
@click.argument("out", metavar="OUT.tar")
def build_pause(out: str) -> None:
    """Write a pod sandbox (pause) image archive, offline, from Debian's catatonit.

    OUT.tar is an OCI archive of localhost/lamina/pause:catatonit, the image
    the CRI plugin's sandbox_image names; import it into namespace k8s.io.
    It is written whole or not at all, replacing any file of that name.
    """
    from lamina.images_offline import CATATONIT, PAUSE_NAME, write_pause_archive

    _check_out(out, CATATONIT, "catatonit")
    write_pause_archive(out)
    click.echo(f"{out}: {PAUSE_NAME}")


COMMANDS = [import_, export, build_busybox, build_pause, mount, unmount]
