"""``lamina run``: create a container from an image and run it, as ``ctr run`` does.

The container flags are shared with ``lamina containers create``.  Arguments
after the container id are the command, flags and all
(``lamina run IMAGE ID sh -c 'exit 3'``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from lamina.cli.session import parse_labels, run

if TYPE_CHECKING:
    from lamina.client import Client
    from lamina.client.run import ContainerOptions

F = TypeVar("F", bound=Callable[..., Any])

_FLAGS = [
    click.option("--env", multiple=True, metavar="K=V", help="Set an environment variable (repeatable)."),
    click.option("--mount", "mounts", multiple=True, metavar="SPEC",
                 help="Add a mount: type=bind,src=/a,dst=/b,options=rbind:ro (repeatable)."),
    click.option("--net-host", is_flag=True, help="Use the host's network namespace."),
    click.option("--runtime", default="io.containerd.runc.v2", show_default=True, help="The runtime (shim)."),
    click.option("--snapshotter", default="", help="Snapshotter for the rootfs  [default: the namespace's, "
                 "else overlayfs]"),
    click.option("-u", "--user", default="", help="Run as uid[:gid] or name[:group] (looked up in the image)."),
    click.option("--cwd", default="", help="Working directory inside the container."),
    click.option("--memory-limit", type=int, default=0, metavar="BYTES", help="Memory limit in bytes."),
    click.option("--cpus", type=float, default=0.0, help="CPUs the container may use (a CFS quota)."),
    click.option("--label", "labels", multiple=True, metavar="K=V", help="Container label and annotation."),
    click.option("-t", "--tty", is_flag=True, help="Allocate a terminal for the process."),
]


def container_flags(command: F) -> F:
    """The flags that shape a new container, for ``run`` and ``containers create``."""
    for flag in reversed(_FLAGS):
        command = flag(command)
    return command


def container_options(args: tuple[str, ...], **flags: Any) -> ContainerOptions:
    from lamina.client.run import ContainerOptions
    from lamina.client.spec import parse_mount

    try:
        mounts = [parse_mount(m) for m in flags["mounts"]]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--mount") from None
    return ContainerOptions(
        args=list(args), env=list(flags["env"]), mounts=mounts, tty=flags["tty"], net_host=flags["net_host"],
        runtime=flags["runtime"], snapshotter=flags["snapshotter"], user=flags["user"], cwd=flags["cwd"],
        memory_limit=flags["memory_limit"], cpus=flags["cpus"], labels=parse_labels(flags["labels"]),
    )


@click.command(
    short_help="Run a command in a new container ID made from IMAGE.",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    epilog="\b\nExamples:\n  lamina run --rm docker.io/library/busybox:latest hello echo hi\n"
           "  lamina run -d docker.io/library/busybox:latest web sleep 1000\n"
           "  lamina run --rm -t docker.io/library/busybox:latest shell sh",
)
@click.option("--rm", "remove", is_flag=True, help="Remove the container when it exits.")
@click.option("-d", "--detach", is_flag=True, help="Start the task and return.")
@click.option("--null-io", is_flag=True, help="Send the process's stdio to /dev/null.")
@container_flags
@click.argument("image")
@click.argument("container_id", metavar="ID")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run_command(remove: bool, detach: bool, null_io: bool, image: str, container_id: str,
                args: tuple[str, ...], **flags: Any) -> None:
    """Run a command in a new container ID made from IMAGE; exit with its exit status."""
    if remove and detach:
        raise click.UsageError("flags --detach and --rm cannot be specified together")
    options = container_options(args, **flags)

    async def work(client: Client) -> int:
        from lamina.client.process import default_stdio, run_task
        from lamina.client.run import delete_container, new_container

        container = await new_container(client, container_id, image, options)
        try:
            return await run_task(client, container, detach=detach, null_io=null_io, stdio=default_stdio())
        finally:
            if remove:
                await delete_container(client, container_id)

    code = run(work)
    if code:
        raise click.exceptions.Exit(code)


run_command.name = "run"
COMMANDS = [run_command]
