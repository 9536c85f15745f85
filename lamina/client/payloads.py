"""Protobuf ``Any`` payloads as plain dicts, as far as lamina knows their types.

Event payloads, process info and metrics travel as ``Any``.  Every message
type in lamina's ``api/`` that travels so (the ``containerd.events.*``
payloads, runc's ``containerd.runc.v1`` options and process details, the
cgroups metrics) is registered here, and ``decode`` turns a payload into a
dict with ``json_format``, keeping the proto field names as ``ctr`` prints
them.  An ``Any`` nested inside (a container's runtime options, an event
inside an event) is decoded too when its type is known; when it is not, it
shows as ``{"@type": <type URL>, "value": <base64>}`` rather than failing
the whole payload, which is how a daemon with more plugins than lamina
knows stays readable.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

from google.protobuf import any_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError, Message

# Importing these modules registers their messages in the default pool.
from lamina.api.events import container_pb2, content_pb2, image_pb2, namespace_pb2, snapshot_pb2, task_pb2  # noqa: F401
from lamina.api.runtime import runc_options_pb2  # noqa: F401
from lamina.api.types import cgroups_v1_pb2, cgroups_v2_pb2  # noqa: F401

_ANY = any_pb2.Any.DESCRIPTOR.full_name
Path = tuple[str | int, ...]


def _message_type(type_url: str) -> type[Message] | None:
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(type_url.rsplit("/", 1)[-1])
    except KeyError:
        return None
    return message_factory.GetMessageClass(descriptor)


def decode(type_url: str, value: bytes) -> dict[str, Any] | None:
    """The payload as a dict, or None when its type is unknown here or its bytes do not parse."""
    shown = _decode(type_url, value)
    return shown if isinstance(shown, dict) else None


def to_dict(message: Message) -> dict[str, Any]:
    """``json_format``'s dict of ``message`` (proto field names), each nested ``Any`` shown by ``_shown``."""
    return _json(message)  # type: ignore[no-any-return]


def _decode(type_url: str, value: bytes) -> Any:
    kind = _message_type(type_url)
    if kind is None:
        return None
    try:
        return _json(kind.FromString(value))
    except DecodeError:
        return None


def _json(message: Message) -> Any:
    """``json_format`` does the printing; the ``Any``s inside are taken out first (it would
    raise on a type it cannot find) and put back as ``_shown`` renders them."""
    if message.DESCRIPTOR.full_name == _ANY:
        return _shown(message) if message.ListFields() else {}
    if not any(True for _ in _anys(message, ())):
        return json_format.MessageToDict(message, preserving_proto_field_name=True)
    message = type(message).FromString(message.SerializeToString())
    found = list(_anys(message, ()))
    shown = [(path, _shown(any_)) for path, any_ in found]
    for _, any_ in found:
        any_.Clear()
    result = json_format.MessageToDict(message, preserving_proto_field_name=True)
    for path, value in shown:
        node: Any = result
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value
    return result


def _shown(any_: Any) -> dict[str, Any]:
    """As ``json_format`` prints an ``Any`` (``@type`` beside the fields, or beside ``value``
    for a well-known type), and raw (base64 ``value``) when the type is unknown here."""
    inner = _decode(any_.type_url, any_.value)
    if inner is None:
        return {"@type": any_.type_url, "value": base64.b64encode(any_.value).decode()}
    if isinstance(inner, dict):
        return {"@type": any_.type_url, **inner}
    return {"@type": any_.type_url, "value": inner}


def _anys(message: Message, path: Path) -> Iterator[tuple[Path, Any]]:
    """The outermost non-empty ``Any``s in ``message``, with their paths in ``json_format``'s dict."""
    if message.DESCRIPTOR.full_name == _ANY:
        if message.ListFields():
            yield path, message
        return
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].message_type is not None:
                for key, item in value.items():
                    yield from _anys(item, (*path, field.name, _json_key(key)))
        elif field.is_repeated:
            for index, item in enumerate(value):
                yield from _anys(item, (*path, field.name, index))
        else:
            yield from _anys(value, (*path, field.name))


def _json_key(key: object) -> str:
    return str(key).lower() if isinstance(key, bool) else str(key)
