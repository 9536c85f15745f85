"""``lamina plugins ls``: every plugin the daemon registered, with its status."""

from __future__ import annotations

import click

from lamina.cli.groups import Group
from lamina.cli.output import format_option, print_json, quiet_option, table


@click.group(name="plugins", cls=Group)
def group() -> None:
    """Inspect the daemon's plugins (alias: plugin)."""


@group.command(short_help="List plugins (TYPE ID PLATFORMS STATUS).",
               name="ls", epilog="\b\nExamples:\n  lamina plugins ls\n  lamina plugins ls -d id==overlayfs\n"
               "  lamina plugins ls 'type==io.containerd.grpc.v1' --format json")
@click.option("-d", "--detailed", is_flag=True, help="Show requires, exports, capabilities and errors.")
@quiet_option
@format_option
@click.argument("filters", nargs=-1)
def list_(detailed: bool, quiet: bool, fmt: str, filters: tuple[str, ...]) -> None:
    """List plugins (TYPE ID PLATFORMS STATUS), optionally matching FILTERS (or'ed)."""
    from lamina.cli.session import run

    found = run(lambda c: c.plugins(filters))
    if quiet:
        for p in found:
            click.echo(p.uri)
    elif fmt == "json":
        print_json(found)
    elif detailed:
        for p in found:
            click.echo(f"Type:          {p.type}\nID:            {p.id}")
            for title, values in (("Requires", p.requires), ("Platforms", p.platforms),
                                  ("Capabilities", p.capabilities)):
                if values:
                    click.echo(f"{title}:\n" + "".join(f"               {v}\n" for v in values), nl=False)
            if p.exports:
                click.echo("Exports:\n" + "".join(f"               {k}    {v}\n" for k, v in sorted(p.exports.items())),
                           nl=False)
            if p.error:
                click.echo(f"Error:\n               {p.error}")
            click.echo()
    else:
        table(["type", "id", "platforms", "status"],
              [(p.type, p.id, ",".join(p.platforms) or "-", p.status) for p in found])


COMMANDS = [group]
