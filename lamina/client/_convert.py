"""Small protobuf ⇄ Python conversions shared by the per-noun modules."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any


def when(message: Any, field: str) -> datetime | None:
    """A ``Timestamp`` field as an aware UTC datetime, or None when unset."""
    if not message.HasField(field):
        return None
    return getattr(message, field).ToDatetime(tzinfo=UTC)  # type: ignore[no-any-return]


def frozen(mapping: Mapping[str, str]) -> Mapping[str, str]:
    """A read-only copy, so that records stay immutable."""
    return MappingProxyType(dict(mapping))


def label_paths(labels: Mapping[str, str]) -> list[str]:
    """Field-mask paths that set or (with an empty value) clear each label.

    This is how ``ctr ... label`` updates: ``labels.<key>`` per key, so that
    other labels are left alone.
    """
    return [f"labels.{key}" for key in labels]

