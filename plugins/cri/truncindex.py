"""An id or a unique prefix of one, as containerd's CRI looks up sandboxes and containers (``truncindex``)."""

from __future__ import annotations

from collections.abc import Sequence

from lamina.core.errors import InvalidArgument
from lamina.core.metadata.containers import Container


def find(records: Sequence[Container], wanted: str, kind: str) -> Container | None:
    """The record ``wanted`` names; None when none does, InvalidArgument when it is empty or ambiguous."""
    if not wanted:
        raise InvalidArgument(f"{kind} id must not be empty")
    matches = [c for c in records if c.id == wanted] or [c for c in records if c.id.startswith(wanted)]
    if len(matches) > 1:
        raise InvalidArgument(f"{kind} id prefix {wanted!r} is ambiguous")
    return matches[0] if matches else None
