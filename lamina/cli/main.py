"""``lamina``: the admin CLI, with ``ctr``'s command tree, built on ``lamina.client``.

Errors end the command with one line on stderr, ``lamina: <message>``, and
exit status 1 (2 for usage errors); ``--debug`` adds the traceback.
Commands import grpc and rich only when they run, to keep start-up fast.
"""

from __future__ import annotations

import os
import sys
import traceback

import click

from lamina.cli import (
    containers,
    content,
    cri,
    events,
    images,
    leases,
    namespaces,
    plugins,
    run,
    snapshots,
    tasks,
    version,
)
from lamina.cli.groups import Group
from lamina.cli.session import settings

EPILOG = """\b
Examples:
  lamina -a /run/lamina/lamina.sock version
  lamina namespaces create team-a owner=ops
  lamina -n team-a content ls --format json

Shell completion: eval "$(lamina completion bash)"
"""


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.option("-a", "--address", envvar="LAMINA_ADDRESS", metavar="PATH",
              help="laminad's socket, or tcp://HOST:PORT  [env LAMINA_ADDRESS; default /run/lamina/lamina.sock]")
@click.option("-n", "--namespace", envvar="LAMINA_NAMESPACE", metavar="NAME",
              help="Namespace to work in  [env LAMINA_NAMESPACE; default 'default']")
@click.option("--tlscacert", metavar="FILE", default="", help="CA that signed a tcp:// daemon's certificate (PEM).")
@click.option("--tlscert", metavar="FILE", default="", help="Client certificate for a tcp:// daemon (PEM).")
@click.option("--tlskey", metavar="FILE", default="", help="Key of the client certificate (PEM).")
@click.option("--debug", is_flag=True, help="Show the full traceback of an error.")
def cli(address: str | None, namespace: str | None, tlscacert: str, tlscert: str, tlskey: str,
        debug: bool) -> None:
    """Drive laminad (or containerd) over containerd's gRPC API."""
    settings.address = address or None
    settings.namespace = namespace or None
    settings.tlscacert, settings.tlscert, settings.tlskey = tlscacert, tlscert, tlskey
    settings.debug = debug


@cli.command(epilog="\b\nExample:\n  eval \"$(lamina completion bash)\"   # or add it to ~/.bashrc")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]), default="bash")
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL."""
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)
    assert completer is not None
    click.echo(completer(cli, {}, "lamina", "_LAMINA_COMPLETE").source())


for _module in (version, namespaces, plugins, events, content, images, leases, containers, tasks, snapshots, run,
                cri):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def _message(exc: BaseException) -> str:
    from lamina.core.errors import LaminaError, Unavailable

    if isinstance(exc, Unavailable) and "failed to connect" in exc.context:
        from lamina.client import DEFAULT_ADDRESS

        reason = exc.context.rsplit("error: ", 1)[-1]
        return f"cannot connect to laminad at {settings.address or DEFAULT_ADDRESS}: {reason}"
    if isinstance(exc, LaminaError | OSError):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return f"deadline exceeded {exc}".strip()
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def main(argv: list[str] | None = None) -> None:
    try:
        code = cli.main(args=argv, prog_name="lamina", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # A reader such as `head` left: silence the final flush, as `ctr | head` is quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except BaseException as exc:  # noqa: BLE001 - the one place errors become a message
        if isinstance(exc, SystemExit):
            raise
        if settings.debug:
            traceback.print_exc()
        click.echo(f"lamina: {_message(exc)}", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
