"""``lamina tasks``: start, watch, signal and remove containers' processes (alias: t)."""

from __future__ import annotations

import signal as signals
from typing import TYPE_CHECKING, Any

import click

from lamina.cli.groups import Group
from lamina.cli.output import format_option, print_json, quiet_option, table, warn
from lamina.cli.session import run

if TYPE_CHECKING:
    from lamina.client import Client
    from lamina.client.tasks import Metric


def _exit(code: int) -> None:
    if code:
        raise click.exceptions.Exit(code)


def parse_signal(text: str) -> int:
    """``SIGKILL``, ``KILL`` or ``9``, as ``ctr tasks kill -s``."""
    if text.isdigit():
        return int(text)
    name = text.upper() if text.upper().startswith("SIG") else f"SIG{text.upper()}"
    try:
        return int(signals.Signals[name])
    except KeyError:
        raise click.BadParameter(f"unknown signal {text!r}", param_hint="--signal") from None


@click.group(short_help="Manage tasks (alias: t), containers' processes.", name="tasks", cls=Group)
def group() -> None:
    """Manage tasks (alias: t), the running processes of containers."""


@group.command(name="ls", epilog="\b\nExample:\n  lamina tasks ls --format json")
@quiet_option
@format_option
def list_(quiet: bool, fmt: str) -> None:
    """List tasks (TASK PID STATUS)."""
    found = run(lambda c: c.tasks.list())
    if quiet:
        for task in found:
            click.echo(task.id or task.container_id)
    elif fmt == "json":
        print_json(found)
    else:
        table(["task", "pid", "status"], [(t.id or t.container_id, t.pid, t.status.value) for t in found])


@group.command(short_help="Start a task for container ID.", epilog="\b\nExample:\n  lamina tasks start -d web")
@click.option("-d", "--detach", is_flag=True, help="Return once the task is started.")
@click.option("--null-io", is_flag=True, help="Send the process's stdio to /dev/null.")
@click.argument("container_id", metavar="ID")
def start(detach: bool, null_io: bool, container_id: str) -> None:
    """Start a task for container ID; without -d wait and exit with its status."""
    from lamina.client.process import default_stdio, run_task

    async def work(client: Client) -> int:
        container = await client.containers.get(container_id)
        return await run_task(client, container, detach=detach, null_io=null_io, stdio=default_stdio())

    _exit(run(work))


@group.command(short_help="Connect to a running task's stdio until it exits.",
               epilog="\b\nExample:\n  lamina tasks attach web")
@click.argument("container_id", metavar="ID")
def attach(container_id: str) -> None:
    """Connect to the running task's stdio until it exits (then delete it); exit with its status."""
    from lamina.client.process import attach as attach_task
    from lamina.client.process import default_stdio

    _exit(run(lambda c: attach_task(c, container_id, stdio=default_stdio())))


@group.command(epilog="\b\nExamples:\n  lamina tasks kill web\n  lamina tasks kill -s SIGKILL -a web")
@click.option("-s", "--signal", "signal_name", default="SIGTERM", show_default=True, help="Signal to send.")
@click.option("-a", "--all", "all_", is_flag=True, help="Send it to every process in the container.")
@click.option("--exec-id", default="", help="Signal this exec process instead of the task.")
@click.argument("container_id", metavar="ID")
def kill(signal_name: str, all_: bool, exec_id: str, container_id: str) -> None:
    """Send a signal to task ID (SIGTERM by default)."""
    number = parse_signal(signal_name)
    if all_ and exec_id:
        raise click.UsageError("specify an exec-id or all; not both")

    async def work(client: Client) -> None:
        await client.containers.get(container_id)
        await client.tasks.get(container_id)
        await client.tasks.kill(container_id, number, exec_id=exec_id, all=all_)

    run(work)


@group.command(short_help="Run ARGS as another process in task ID.",
               name="exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
               epilog="\b\nExamples:\n  lamina tasks exec --exec-id e1 web ps\n"
                      "  lamina tasks exec -t --exec-id sh1 web sh")
@click.option("--exec-id", required=True, help="An id for the new process, unique in the task.")
@click.option("-t", "--tty", is_flag=True, help="Allocate a terminal.")
@click.option("-d", "--detach", is_flag=True, help="Return once the process is started (it gets no stdio).")
@click.option("--cwd", default="", help="Working directory of the process.")
@click.option("--env", multiple=True, metavar="K=V", help="Extra environment variable (repeatable).")
@click.argument("container_id", metavar="ID")
@click.argument("args", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(exec_id: str, tty: bool, detach: bool, cwd: str, env: tuple[str, ...], container_id: str,
          args: tuple[str, ...]) -> None:
    """Run ARGS as another process in task ID; exit with its status."""
    from lamina.client.process import default_stdio, exec_process

    _exit(run(lambda c: exec_process(c, container_id, exec_id, list(args), terminal=tty, cwd=cwd, env=list(env),
                                     detach=detach, stdio=default_stdio())))


@group.command(epilog="\b\nExample:\n  lamina tasks ps web")
@format_option
@click.argument("container_id", metavar="ID")
def ps(fmt: str, container_id: str) -> None:
    """List the processes of task ID (PID INFO)."""

    async def work(client: Client) -> Any:
        await client.containers.get(container_id)
        await client.tasks.get(container_id)
        return await client.tasks.pids(container_id)

    found = run(work)
    if fmt == "json":
        print_json(found)
    else:
        table(["pid", "info"], [(p.pid, "-" if p.info is None else p.info) for p in found])


def _simple(name: str, doc: str) -> None:
    @group.command(name=name, help=doc, epilog=f"\b\nExample:\n  lamina tasks {name} web")
    @click.argument("container_id", metavar="ID")
    def command(container_id: str) -> None:
        async def work(client: Client) -> None:
            await client.containers.get(container_id)
            await client.tasks.get(container_id)
            await getattr(client.tasks, name)(container_id)

        run(work)


_simple("pause", "Freeze every process of task ID.")
_simple("resume", "Thaw task ID after a pause.")

_V1_ROWS = (("memory.usage_in_bytes", "memory", "usage", "usage"),
            ("memory.limit_in_bytes", "memory", "usage", "limit"),
            ("memory.stat.cache", "memory", "total_cache"), ("cpuacct.usage", "cpu", "usage", "total"),
            ("cpuacct.usage_percpu", "cpu", "usage", "per_cpu"), ("pids.current", "pids", "current"),
            ("pids.limit", "pids", "limit"))
_V2_ROWS = tuple((f"{section}.{key}", section, key) for section, keys in (
    ("pids", ("current", "limit")),
    ("cpu", ("usage_usec", "user_usec", "system_usec", "nr_periods", "nr_throttled", "throttled_usec")),
    ("memory", ("usage", "usage_limit", "swap_usage", "swap_limit")),
) for key in keys)


def metric_rows(metric: Metric) -> list[tuple[str, str]]:
    """``ctr tasks metrics``' METRIC VALUE rows; absent numbers are 0, lists print as Go's ``[a b]``."""
    rows = []
    for name, section, *path in _V1_ROWS if metric.type_url.endswith("v1.Metrics") else _V2_ROWS:
        if section not in metric.data:
            continue
        value: Any = metric.data[section]
        for key in path:
            value = value.get(key, 0) if isinstance(value, dict) else 0
        if isinstance(value, list):
            text = "[" + " ".join(str(int(v)) for v in value) + "]"
        else:
            text = str(int(value or 0))
        rows.append((name, text))
    return rows


@group.command(epilog="\b\nExample:\n  lamina tasks metrics web --format json")
@format_option
@click.argument("container_id", metavar="ID")
def metrics(fmt: str, container_id: str) -> None:
    """Print task ID's cgroup metrics."""

    async def work(client: Client) -> list[Metric]:
        await client.containers.get(container_id)
        await client.tasks.get(container_id)
        return await client.tasks.metrics(container_id)

    found = run(work)
    if not found:
        raise click.ClickException("no metrics received")
    metric = found[0]
    if fmt == "json":
        print_json([metric])
        return
    table(["id", "timestamp"], [(metric.id, metric.timestamp or "-")])
    click.echo()
    table(["metric", "value"], metric_rows(metric))


@group.command(short_help="Delete stopped tasks (with -f, running ones too).",
               name="rm", epilog="\b\nExamples:\n  lamina tasks rm web\n  lamina tasks rm -f web")
@click.option("-f", "--force", is_flag=True, help="Kill the task (SIGKILL, all processes) first.")
@click.option("--exec-id", default="", help="Delete this stopped exec process instead of the task.")
@click.argument("ids", nargs=-1, required=True)
def remove(force: bool, exec_id: str, ids: tuple[str, ...]) -> None:
    """Delete stopped tasks IDS (with -f, running ones too); a non-zero exit is only a warning."""
    from lamina.client.run import delete_task

    async def work(client: Client) -> None:
        for container_id in ids:
            await client.containers.get(container_id)
            if exec_id:
                await client.tasks.delete_process(container_id, exec_id)
                continue
            if force:
                task = await client.tasks.get(container_id)
                if task.status.value not in ("STOPPED", "CREATED"):
                    await client.tasks.kill(container_id, int(signals.SIGKILL), all=True)
                    await client.tasks.wait(container_id)
            code = await delete_task(client, container_id)
            if code is None:
                from lamina.core.errors import NotFound

                raise NotFound(f"no running task found: task {container_id!r}")
            if code:
                warn(f"task {container_id} exit with non-zero exit code {code}")

    run(work)


@group.command(epilog="\b\nExample:\n  lamina tasks wait web")
@click.option("--exec-id", default="", help="Wait for this exec process instead of the task.")
@click.argument("container_id", metavar="ID")
def wait(exec_id: str, container_id: str) -> None:
    """Wait until task ID exits and print its exit status."""
    status = run(lambda c: c.tasks.wait(container_id, exec_id))
    click.echo(status.exit_status)


COMMANDS = [group]
