"""How listing commands print: aligned tables (rich), JSON, or ids only.

Tables look like ``ctr``'s tabwriter output: upper-case headers, no borders,
columns padded to their widest cell.  Colour and wrapping only on a TTY; when
piped, lines are never wrapped so that ``awk``/``cut`` see whole rows.
JSON is a list of objects whose keys are the record's field names; a field
marked ``metadata={"omitempty": True}`` is left out when empty, as Go's
``json:",omitempty"``, rather than printed as an empty stand-in.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

format_option: Callable[[F], F] = click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
    help="Print a table, or a JSON list of objects.",
)
quiet_option: Callable[[F], F] = click.option("-q", "--quiet", is_flag=True, help="Print only the ids.")


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False)
    piped = not console.is_terminal
    if piped:
        console = Console(highlight=False, color_system=None, width=1 << 16)
    grid = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 4, 0, 0), header_style="bold")
    for header in headers:
        grid.add_column(header.upper(), no_wrap=piped)
    for row in rows:
        grid.add_row(*(Text(str(cell)) for cell in row))  # never markup
    if not piped:
        console.print(grid)
        return
    with console.capture() as captured:
        console.print(grid)
    click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))


def jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)
                if getattr(value, f.name) or not f.metadata.get("omitempty")}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


def print_json(records: Iterable[Any]) -> None:
    click.echo(json.dumps([jsonable(r) for r in records], indent=2))


def labels_text(labels: Mapping[str, str]) -> str:
    """Labels as ``ctr`` prints them: sorted ``k=v`` joined by commas."""
    return ",".join(sorted(f"{k}={v}" for k, v in labels.items()))


def _scaled(size: float, base: int, units: tuple[str, ...]) -> tuple[float, str]:
    i = 0
    while size >= base and i < len(units) - 1:
        size /= base
        i += 1
    return size, units[i]


def human_size(size: float, precision: int = 4) -> str:
    """docker/go-units ``HumanSizeWithPrecision``: decimal units, 4 significant digits as ``ctr content ls``
    prints them (``crictl images`` uses 3)."""
    value, unit = _scaled(size, 1000, ("B", "kB", "MB", "GB", "TB", "PB"))
    return f"{value:.{precision}g}{unit}"


def human_bytes(size: float) -> str:
    """containerd's ``progress.Bytes``: binary units, one decimal (``ctr images ls``)."""
    value, unit = _scaled(size, 1024, ("B", "KiB", "MiB", "GiB", "TiB", "PiB"))
    return f"{value:.1f} {unit}"


def human_duration(delta: timedelta) -> str:
    """docker/go-units ``HumanDuration``, as ``ctr`` prints ages."""
    seconds = int(delta.total_seconds())
    if seconds < 1:
        return "Less than a second"
    if seconds == 1:
        return "1 second"
    if seconds < 60:
        return f"{seconds} seconds"
    minutes = seconds // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def warn(message: str) -> None:
    click.echo(f"lamina: {message}", err=True)

