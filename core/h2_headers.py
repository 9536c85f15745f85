"""Whether a request's header fields make a well-formed HTTP/2 request (RFC 9113 §8.2, §8.3).

A malformed request is answered with RST_STREAM PROTOCOL_ERROR by the
connection (``h2.py``) and never reaches a gRPC handler: a client that
sends uppercase names or connection-specific fields is not speaking
HTTP/2, and answering it with a gRPC status would pretend it was.

Checked: names are lowercase tokens; values carry no NUL, CR or LF and no
whitespace at either end; only request pseudo-fields, each once, all before
the regular fields, with ``:method``, ``:scheme`` and a non-empty ``:path``
present; no connection-specific fields; ``te`` only as ``trailers``; a
``content-length`` that is a number.  Trailers carry no pseudo-fields.
Clients repeat the same fields call after call, so fields found valid are
remembered (a bounded set) and not scanned again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_REQUEST_PSEUDO = frozenset({":method", ":scheme", ":path", ":authority"})
_CONNECTION_SPECIFIC = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"})
_BAD_NAME = re.compile(r"[^!#$%&'*+\-.^_`|~0-9a-z]")  # RFC 9110 token characters, lowercase
_BAD_VALUE = re.compile(r"[\0\r\n]|^[ \t]|[ \t]$")
_VALID_REMEMBERED = 4096
_valid: set[tuple[str, str]] = set()  # fields that passed ``_check_field`` or a pseudo-field's value check


def _remember(field: tuple[str, str]) -> None:
    if len(_valid) >= _VALID_REMEMBERED:
        _valid.clear()
    _valid.add(field)


class Malformed(Exception):
    """The fields do not make a well-formed request; the stream is reset with PROTOCOL_ERROR."""


def _check_field(name: str, value: str) -> None:
    if not name or _BAD_NAME.search(name):
        raise Malformed(f"invalid field name {name!r}")
    if _BAD_VALUE.search(value):
        raise Malformed(f"invalid value of field {name!r}")
    if name in _CONNECTION_SPECIFIC:
        raise Malformed(f"connection-specific field {name!r}")
    if name == "te" and value != "trailers":
        raise Malformed(f"te: {value!r} is not 'trailers'")


def request_headers(fields: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The request's fields by name (repeated ones joined with ","), or ``Malformed``."""
    headers: dict[str, str] = {}
    regular = False
    for field in fields:
        name, value = field
        if name[:1] == ":":
            if regular:
                raise Malformed(f"pseudo-field {name!r} after a regular field")
            if name not in _REQUEST_PSEUDO:
                raise Malformed(f"pseudo-field {name!r} in a request")
            if name in headers:
                raise Malformed(f"pseudo-field {name!r} repeated")
            if field not in _valid:
                if _BAD_VALUE.search(value):
                    raise Malformed(f"invalid value of field {name!r}")
                _remember(field)
            headers[name] = value
            continue
        regular = True
        if field not in _valid:
            _check_field(name, value)
            _remember(field)
        known = headers.get(name)
        headers[name] = value if known is None else f"{known},{value}"
    if ":method" not in headers or ":scheme" not in headers or not headers.get(":path"):
        raise Malformed("a request needs :method, :scheme and :path")
    return headers


def content_length(headers: dict[str, str]) -> int | None:
    """The announced body length, None if not announced, or ``Malformed``."""
    value = headers.get("content-length")
    if value is None:
        return None
    if not value.isdigit() or not value.isascii():
        raise Malformed(f"content-length {value!r}")
    return int(value)


def check_trailers(fields: Iterable[tuple[str, str]]) -> None:
    """Trailers are regular fields only (RFC 9113 §8.1)."""
    for name, value in fields:
        if name[:1] == ":":
            raise Malformed(f"pseudo-field {name!r} in trailers")
        _check_field(name, value)
