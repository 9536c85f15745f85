"""``lamina images pull``: fetch an image from a registry, record it and unpack it.

Registry options are shared with ``push``.  On a TTY each blob gets a
progress bar (state, bytes, speed); otherwise one line per change of state.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import click

from lamina.cli.output import human_bytes

if TYPE_CHECKING:
    from lamina.client import Client
    from lamina.client.remotes import Session
    from lamina.client.remotes.progress import Reporter, Status

F = TypeVar("F", bound=Callable[..., Any])


def registry_options(command: F) -> F:
    """``ctr``'s registry flags: ``--plain-http``, ``--skip-verify``, ``--tlscacert``, ``--tlscert``, ``--tlskey``,
    ``--user``, ``--hosts-dir``, ``--platform``."""
    for option in reversed([
        click.option("--plain-http", is_flag=True, help="Talk HTTP, not HTTPS, to the registry."),
        click.option("--skip-verify", "-k", is_flag=True, help="Do not verify the registry's TLS certificate."),
        click.option("--tlscacert", metavar="FILE", type=click.Path(exists=True, dir_okay=False),
                     help="Also trust this CA certificate (PEM) for the registry's TLS certificate."),
        click.option("--tlscert", metavar="FILE", type=click.Path(exists=True, dir_okay=False),
                     help="Client certificate (PEM) to show registries that ask for one; needs --tlskey."),
        click.option("--tlskey", metavar="FILE", type=click.Path(exists=True, dir_okay=False),
                     help="Private key (PEM) of the --tlscert client certificate."),
        click.option("--user", "-u", metavar="USER[:PASSWORD]",
                     help="Registry credentials (asks for the password on a TTY when left out). "
                          "Default: Docker's, from $DOCKER_CONFIG/config.json (~/.docker/config.json) "
                          "and its credential helpers."),
        click.option("--hosts-dir", metavar="DIR", default="",
                     help="containerd-style hosts directory for mirrors and TLS: DIR/<host>/hosts.toml, "
                          "or Docker's certs.d files (ca.crt, client.cert/client.key)."),
        click.option("--platform", "platform_specs", multiple=True, metavar="OS/ARCH[/VARIANT]",
                     help="Only this platform's manifest (repeatable); default: this host's."),
    ]):
        command = option(command)
    return command


def user_and_secret(user: str) -> tuple[str, str]:
    """``USER[:PASSWORD]``; the password is asked for on a TTY when left out."""
    name, sep, secret = user.partition(":")
    if not sep and sys.stdin.isatty():
        secret = getpass.getpass("Password: ")
    return name, secret


def make_session(plain_http: bool, skip_verify: bool, user: str | None, hosts_dir: str,
                 tlscacert: str | None = None, tlscert: str | None = None, tlskey: str | None = None) -> Session:
    from lamina.client.remotes import Authorizer, HostOptions, Session, docker_config_credentials, static_credentials

    if bool(tlscert) != bool(tlskey):  # as ctr: a certificate is no use without its key
        raise click.UsageError("--tlscert and --tlskey must be given together")
    if user:
        credentials = static_credentials(*user_and_secret(user))
    else:
        credentials = docker_config_credentials()
    options = HostOptions(plain_http=plain_http, skip_verify=skip_verify, hosts_dir=hosts_dir,
                          ca=(tlscacert,) if tlscacert else (),
                          client_cert=((tlscert, tlskey),) if tlscert and tlskey else ())
    return Session(options, Authorizer(credentials))


def _label(status: Status) -> str:
    kind, _, digest = status.ref.partition("-sha256:")
    return f"{kind}-sha256:{digest[:12]}" if digest else status.ref


@contextmanager
def progress_reporter() -> Iterator[Reporter]:
    """Bars on a TTY (rich), else one line per state change on stdout."""
    from rich.console import Console

    console = Console(stderr=False, highlight=False)
    if not console.is_terminal:
        seen: dict[str, str] = {}

        def plain(status: Status) -> None:
            if seen.get(status.ref) == status.state:
                return
            seen[status.ref] = status.state
            size = f" {human_bytes(status.total)}" if status.total and status.state not in ("resolving",) else ""
            click.echo(f"{_label(status)}: {status.state}{size}")

        yield plain
        return

    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    bars = Progress(TextColumn("{task.description}"), TextColumn("{task.fields[state]:<11}"), BarColumn(),
                    DownloadColumn(), TransferSpeedColumn(), console=console, transient=False)
    tasks: dict[str, Any] = {}

    def rich_report(status: Status) -> None:
        if status.ref not in tasks:
            tasks[status.ref] = bars.add_task(_label(status), total=status.total or None, state=status.state)
        bars.update(tasks[status.ref], completed=status.offset, total=status.total or None, state=status.state)

    with bars:
        yield rich_report


@click.command(short_help="Pull image REF from its registry and unpack it.",
               name="pull", epilog="\b\nExamples:\n  lamina images pull docker.io/library/busybox:latest\n"
               "  lamina images pull --plain-http --platform linux/arm64 127.0.0.1:5000/test/busybox:1")
@registry_options
@click.option("--all-platforms", is_flag=True, help="Fetch every platform's manifest (and unpack each).")
@click.option("--snapshotter", default="", help="Unpack into this snapshotter (default: the namespace's, "
              "else overlayfs).")
@click.option("--no-unpack", is_flag=True, help="Only fetch and record the image.")
@click.argument("ref")
def pull(plain_http: bool, skip_verify: bool, tlscacert: str | None, tlscert: str | None, tlskey: str | None,
         user: str | None, hosts_dir: str,
         platform_specs: tuple[str, ...], all_platforms: bool, snapshotter: str, no_unpack: bool, ref: str) -> None:
    """Pull image REF from its registry into the content store, record it, and unpack it."""
    from lamina.cli.session import run
    from lamina.client import platforms
    from lamina.client.pull import PullOptions
    from lamina.client.pull import pull as do_pull

    if all_platforms and platform_specs:
        raise click.UsageError("--platform and --all-platforms exclude each other")
    options = PullOptions(platforms=tuple(platforms.parse(p) for p in platform_specs), all_platforms=all_platforms,
                          unpack=not no_unpack, snapshotter=snapshotter)

    async def work(client: Client) -> str:
        async with make_session(plain_http, skip_verify, user, hosts_dir, tlscacert, tlscert, tlskey) as session:
            with progress_reporter() as report:
                image = await do_pull(client, session, ref, options, report)
        return f"{image.name} {image.target.digest}"

    click.echo(run(work))


COMMANDS = [pull]
