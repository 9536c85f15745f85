"""``lamina cri create|start|ps|inspect|stop|rm|logs|exec``: crictl's container commands.

Container config files are crictl's, JSON or YAML with the proto's field
names (``metadata: {name}``, ``image: {image}``, ``command``, ``args``,
``envs``, ``mounts``, ``log_path``, ``linux: {...}``).  Output follows
crictl 1.26: ``create`` prints the id, ``start``/``stop``/``rm`` one id per
line, ``ps`` a CONTAINER IMAGE CREATED STATE NAME ATTEMPT POD-ID POD table
of running containers (all of them with ``-a``) newest first, ``inspect``
the status and verbose info as JSON.  ``logs`` reads the CRI log file the
status names straight from disk, as crictl does, and prints each line's
text (``P`` parts joined) to stdout or stderr as it was written; ``exec
-s`` runs ExecSync and exits with the command's code.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from lamina.cli.cri_calls import call, echo_json, json_or_ids, message_json, verbose_info
from lamina.cli.cri_pods import TRUNCATED_ID, age, load_config, load_pod_config
from lamina.cli.output import quiet_option, table
from lamina.cli.session import parse_labels

if TYPE_CHECKING:
    from lamina.api.services.cri import api_pb2 as pb
    from lamina.client.cri import Cri

STATES = {"created": "CONTAINER_CREATED", "running": "CONTAINER_RUNNING", "exited": "CONTAINER_EXITED",
          "unknown": "CONTAINER_UNKNOWN"}
STATE_COLUMN = ("Created", "Running", "Exited", "Unknown")


@click.command(short_help="Create a container in a pod from crictl config files.",
               epilog="\b\nExample:\n  CTR=$(lamina cri create $POD ctr.json pod.json)")
@click.argument("pod_id")
@click.argument("container_config", metavar="CONTAINER_CONFIG")
@click.argument("pod_config", metavar="POD_CONFIG")
def create(pod_id: str, container_config: str, pod_config: str) -> None:
    """Create a container in pod POD_ID from a crictl container config and the pod's config; print its id."""
    from lamina.api.services.cri import api_pb2 as pb

    config = load_config(container_config, pb.ContainerConfig, "CONTAINER_CONFIG")
    pod = load_pod_config(pod_config)
    click.echo(call(lambda cri: cri.create_container(pod_id, config, pod)))


def _each(ids: tuple[str, ...], act: str) -> None:
    async def work(cri: Cri) -> None:
        for container_id in ids:
            await getattr(cri, act)(container_id)
            click.echo(container_id)

    call(work)


@click.command(epilog="\b\nExample:\n  lamina cri start $CTR")
@click.argument("ids", metavar="CONTAINER_ID...", nargs=-1, required=True)
def start(ids: tuple[str, ...]) -> None:
    """Start created containers."""
    _each(ids, "start_container")


@click.command(short_help="Stop containers: stop signal, then SIGKILL after -t.",
               epilog="\b\nExample:\n  lamina cri stop -t 30 $CTR")
@click.option("-t", "--timeout", default=0, show_default=True, help="Seconds to wait before SIGKILL.")
@click.argument("ids", metavar="CONTAINER_ID...", nargs=-1, required=True)
def stop(timeout: int, ids: tuple[str, ...]) -> None:
    """Stop running containers: their stop signal, then SIGKILL after the timeout."""
    async def work(cri: Cri) -> None:
        for container_id in ids:
            await cri.stop_container(container_id, timeout)
            click.echo(container_id)

    call(work)


@click.command(epilog="\b\nExamples:\n  lamina cri rm $CTR\n  lamina cri rm -f $CTR")
@click.option("-f", "--force", is_flag=True, help="Remove running containers too (they are stopped first).")
@click.argument("ids", metavar="CONTAINER_ID...", nargs=-1, required=True)
def rm(force: bool, ids: tuple[str, ...]) -> None:
    """Remove containers; a running one only with --force, as crictl."""
    from lamina.core.errors import FailedPrecondition

    async def work(cri: Cri) -> None:
        for container_id in ids:
            status = await cri.container_status(container_id)
            if status.status.state == 1 and not force:
                raise FailedPrecondition(f"container {container_id!r} is running, please stop it first "
                                         "or use -f to force removal")
            await cri.remove_container(container_id)
            click.echo(container_id)

    call(work)


@click.command(epilog="\b\nExamples:\n  lamina cri ps\n  lamina cri ps -a -q --pod $POD")
@click.option("-a", "--all", "all_", is_flag=True, help="Show containers in every state, not only running ones.")
@click.option("--id", "container_id", default="", help="Only the container with this id (or unique prefix).")
@click.option("-p", "--pod", default="", help="Only the containers of this pod.")
@click.option("--state", type=click.Choice(sorted(STATES), case_sensitive=False), help="Only this state.")
@click.option("--label", "labels", multiple=True, metavar="K=V", help="Only with this label (repeatable).")
@click.option("--no-trunc", is_flag=True, help="Show whole ids.")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@quiet_option
def ps(all_: bool, container_id: str, pod: str, state: str | None, labels: tuple[str, ...], no_trunc: bool,
       output: str, quiet: bool) -> None:
    """List containers, newest first: running ones, or all with -a."""
    from lamina.api.services.cri import api_pb2 as pb

    wanted = pb.ContainerFilter(id=container_id, pod_sandbox_id=pod, label_selector=parse_labels(labels))
    if state:
        wanted.state.state = pb.ContainerState.Value(STATES[state.lower()])
    elif not all_:
        wanted.state.state = pb.CONTAINER_RUNNING

    async def work(cri: Cri) -> tuple[list[pb.Container], dict[str, str]]:
        found = await cri.containers(wanted)
        return found, {p.id: p.metadata.name for p in await cri.pods()}

    found, pod_names = call(work)
    found.sort(key=lambda c: c.created_at, reverse=True)
    if json_or_ids(output, quiet, pb.ListContainersResponse(containers=found), [c.id for c in found]):
        return

    def cut(value: str) -> str:
        return value if no_trunc else value.removeprefix("sha256:")[:TRUNCATED_ID]

    rows = [(cut(c.id), cut(c.image_ref), age(c.created_at), STATE_COLUMN[c.state], c.metadata.name,
             c.metadata.attempt, cut(c.pod_sandbox_id), pod_names.get(c.pod_sandbox_id, "unknown")) for c in found]
    table(["CONTAINER", "IMAGE", "CREATED", "STATE", "NAME", "ATTEMPT", "POD ID", "POD"], rows)


@click.command(epilog="\b\nExample:\n  lamina cri inspect $CTR | jq .info.pid")
@click.argument("ids", metavar="CONTAINER_ID...", nargs=-1, required=True)
def inspect(ids: tuple[str, ...]) -> None:
    """Print each container's status and verbose info as JSON."""
    async def work(cri: Cri) -> list[pb.ContainerStatusResponse]:
        return [await cri.container_status(c, verbose=True) for c in ids]

    for status in call(work):
        echo_json({"status": message_json(status.status), **verbose_info(status.info)})


@click.command(short_help="Print a container's output from its CRI log file.",
               epilog="\b\nExample:\n  lamina cri logs $CTR")
@click.argument("container_id")
def logs(container_id: str) -> None:
    """Print what the container wrote to stdout and stderr, from its CRI log file."""
    from lamina.core.errors import FailedPrecondition

    path = call(lambda cri: cri.container_status(container_id)).status.log_path
    if not path:
        raise FailedPrecondition(f"container {container_id!r} has no log path")
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise click.FileError(path, exc.strerror) from None
    with f:
        for line in f:
            _, stream, tag, text = (line.rstrip(b"\n").split(b" ", 3) + [b""] * 4)[:4]
            out = sys.stderr.buffer if stream == b"stderr" else sys.stdout.buffer
            out.write(text + (b"\n" if tag == b"F" else b""))
    sys.stdout.flush()


@click.command(name="exec", short_help="Run a command in a running container (ExecSync: -s).",
               epilog="\b\nExample:\n  lamina cri exec -s $CTR ip addr",
               context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("-s", "--sync", is_flag=True, required=True, help="Run the command synchronously (ExecSync).")
@click.option("--timeout", default=0, show_default=True, help="Seconds before the command is killed; 0: none.")
@click.argument("container_id")
@click.argument("cmd", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(sync: bool, timeout: int, container_id: str, cmd: tuple[str, ...]) -> None:
    """Run CMD in a running container and print its output; exit with its exit code."""
    result = call(lambda cri: cri.exec_sync(container_id, list(cmd), timeout))
    sys.stdout.buffer.write(result.stdout)
    sys.stdout.flush()
    sys.stderr.buffer.write(result.stderr)
    sys.stderr.flush()
    sys.exit(result.exit_code)


COMMANDS = [create, start, ps, inspect, stop, rm, logs, exec_]
