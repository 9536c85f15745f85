"""``lamina cri runp|pods|inspectp|stopp|rmp``: crictl's pod sandbox commands.

Pod config files are crictl's: JSON or YAML with the proto's field names
(``metadata: {name, namespace, uid, attempt}``, ``hostname``,
``log_directory``, ``dns_config``, ``port_mappings``, ``labels``,
``annotations``, ``linux: {...}``); fields crictl would not know are
ignored, as Go's JSON decoding ignores them.  Output follows crictl 1.26:
``runp`` prints the pod id, ``pods`` a POD-ID CREATED STATE NAME NAMESPACE
ATTEMPT RUNTIME table newest first (ids cut to 13 characters), ``inspectp``
the status and verbose info as JSON, ``stopp``/``rmp`` one line per pod.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

import click

from lamina.cli.cri_calls import call, echo_json, json_or_ids, message_json, verbose_info
from lamina.cli.output import human_duration, quiet_option, table
from lamina.cli.session import parse_labels

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from lamina.api.services.cri import api_pb2 as pb
    from lamina.client.cri import Cri

M = TypeVar("M", bound="Message")
TRUNCATED_ID = 13
STATES = {"ready": "SANDBOX_READY", "notready": "SANDBOX_NOTREADY"}


def load_config(path: str, message: type[M], param_hint: str) -> M:
    """crictl's ``loadPodSandboxConfig``/``loadContainerConfig``: a JSON or YAML file as ``message``."""
    import yaml
    from google.protobuf.json_format import ParseDict, ParseError

    try:
        with open(path) as f:
            document = yaml.safe_load(f)
    except OSError as exc:
        raise click.FileError(path, exc.strerror) from None
    except yaml.YAMLError as exc:
        raise click.BadParameter(f"{path} is neither JSON nor YAML: {exc}", param_hint=param_hint) from None
    if not isinstance(document, dict):
        raise click.BadParameter(f"{path} does not hold a config object", param_hint=param_hint)
    try:
        return ParseDict(document, message(), ignore_unknown_fields=True)
    except ParseError as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint=param_hint) from None


def load_pod_config(path: str) -> pb.PodSandboxConfig:
    from lamina.api.services.cri import api_pb2 as pb

    return load_config(path, pb.PodSandboxConfig, "POD_CONFIG")


@click.command(short_help="Run a pod sandbox from a crictl pod config file.",
               epilog="\b\nExample:\n  POD=$(lamina cri runp pod.json)")
@click.option("-r", "--runtime", default="", help="The runtime handler  [default: the runtime's default]")
@click.argument("pod_config", metavar="POD_CONFIG")
def runp(runtime: str, pod_config: str) -> None:
    """Run a pod sandbox from a crictl pod config file (JSON or YAML); print its id."""
    config = load_pod_config(pod_config)
    click.echo(call(lambda cri: cri.run_pod(config, runtime)))


def age(created_at_ns: int) -> str:
    created = datetime.fromtimestamp(created_at_ns / 1e9, tz=UTC)
    return f"{human_duration(datetime.now(tz=UTC) - created)} ago"


def _state(value: int) -> str:
    """crictl's state column: ``Ready`` / ``NotReady``."""
    return "Ready" if value == 0 else "NotReady"


@click.command(epilog="\b\nExamples:\n  lamina cri pods\n  lamina cri pods --state ready --label app=web -q")
@click.option("--id", "pod_id", default="", help="Only the pod with this id (or unique id prefix).")
@click.option("--name", default="", help="Only pods whose name matches this regular expression.")
@click.option("--namespace", default="", help="Only pods whose namespace matches this regular expression.")
@click.option("--state", type=click.Choice(sorted(STATES), case_sensitive=False), help="Only pods in this state.")
@click.option("--label", "labels", multiple=True, metavar="K=V", help="Only pods with this label (repeatable).")
@click.option("--no-trunc", is_flag=True, help="Show whole ids.")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@quiet_option
def pods(pod_id: str, name: str, namespace: str, state: str | None, labels: tuple[str, ...], no_trunc: bool,
         output: str, quiet: bool) -> None:
    """List pod sandboxes, newest first."""
    from lamina.api.services.cri import api_pb2 as pb

    pod_filter = pb.PodSandboxFilter(id=pod_id, label_selector=parse_labels(labels))
    if state:
        pod_filter.state.state = pb.PodSandboxState.Value(STATES[state.lower()])
    found = call(lambda cri: cri.pods(pod_filter))
    found = [p for p in found if re.search(name, p.metadata.name) and re.search(namespace, p.metadata.namespace)]
    found.sort(key=lambda p: p.created_at, reverse=True)
    if json_or_ids(output, quiet, pb.ListPodSandboxResponse(items=found), [p.id for p in found]):
        return
    rows = [(p.id if no_trunc else p.id[:TRUNCATED_ID], age(p.created_at), _state(p.state), p.metadata.name,
             p.metadata.namespace, p.metadata.attempt, p.runtime_handler or "(default)") for p in found]
    table(["POD ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT", "RUNTIME"], rows)


@click.command(epilog="\b\nExample:\n  lamina cri inspectp $POD | jq .status.network.ip")
@click.argument("pod_ids", metavar="POD_ID...", nargs=-1, required=True)
def inspectp(pod_ids: tuple[str, ...]) -> None:
    """Print each pod's status and verbose info as JSON."""
    async def work(cri: Cri) -> list[pb.PodSandboxStatusResponse]:
        return [await cri.pod_status(p, verbose=True) for p in pod_ids]

    for status in call(work):
        echo_json({"status": message_json(status.status), "info": verbose_info(status.info)})


@click.command(short_help="Stop pod sandboxes and release their network.",
               epilog="\b\nExample:\n  lamina cri stopp $POD")
@click.argument("pod_ids", metavar="POD_ID...", nargs=-1, required=True)
def stopp(pod_ids: tuple[str, ...]) -> None:
    """Stop pod sandboxes: their processes end and their network is released."""
    async def work(cri: Cri) -> None:
        for pod_id in pod_ids:
            await cri.stop_pod(pod_id)
            click.echo(f"Stopped sandbox {pod_id}")

    call(work)


@click.command(epilog="\b\nExamples:\n  lamina cri rmp $POD\n  lamina cri rmp -f -a")
@click.option("-f", "--force", is_flag=True, help="Remove pods that are still ready (they are stopped first).")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove every pod sandbox.")
@click.argument("pod_ids", metavar="[POD_ID...]", nargs=-1)
def rmp(force: bool, all_: bool, pod_ids: tuple[str, ...]) -> None:
    """Remove pod sandboxes; a ready one only with --force, as crictl."""
    from lamina.core.errors import FailedPrecondition

    if not pod_ids and not all_:
        raise click.UsageError("give the ids of the pods to remove, or --all")

    async def work(cri: Cri) -> None:
        ids = [p.id for p in await cri.pods()] if all_ else list(pod_ids)
        for pod_id in ids:
            status = await cri.pod_status(pod_id)
            if status.status.state == 0 and not force:
                raise FailedPrecondition(f"pod sandbox {pod_id!r} is running, please use -f to force removal")
            await cri.remove_pod(pod_id)
            click.echo(f"Removed sandbox {pod_id}")

    call(work)


COMMANDS = [runp, pods, inspectp, stopp, rmp]
