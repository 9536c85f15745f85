"""Content digests as the plain ``"<alg>:<hex>"`` strings the API carries.

Validation follows go-digest's ``Digest.Validate`` (containerd 1.6 vendors it):
a registered algorithm, lowercase hex only, and the exact hex length of that
algorithm.  The error names the offending digest first, as containerd's
content service does (``"%v: %v", req.Digest, err``).
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

from lamina.core.errors import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Callable
    from hashlib import _Hash

CANONICAL = "sha256"

_HEX_LENGTHS = {"sha256": 64, "sha512": 128}
_HASHERS: dict[str, Callable[[], _Hash]] = {
    "sha256": hashlib.sha256,
    "sha512": hashlib.sha512,
}
_ALG_RE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*")
_HEX_RE = re.compile(r"[a-f0-9]+")


def parse(digest: str) -> tuple[str, str]:
    """Split and validate ``digest``; raise ``InvalidArgument`` naming it."""
    alg, sep, hex_ = digest.partition(":")
    if not sep or not hex_ or not _ALG_RE.fullmatch(alg):
        raise InvalidArgument(f"{digest!r}: invalid checksum digest format")
    if alg not in _HEX_LENGTHS:
        raise InvalidArgument(f"{digest!r}: unsupported digest algorithm")
    if len(hex_) != _HEX_LENGTHS[alg]:
        raise InvalidArgument(f"{digest!r}: invalid checksum digest length")
    if not _HEX_RE.fullmatch(hex_):
        raise InvalidArgument(f"{digest!r}: invalid checksum digest format")
    return alg, hex_


def hasher(alg: str = CANONICAL) -> _Hash:
    """A fresh hash object for a supported algorithm (already validated)."""
    return _HASHERS[alg]()


def is_valid_encoding(alg: str, hex_: str) -> bool:
    """Whether a blob file name ``hex_`` is a well-formed ``alg`` digest."""
    return (
        len(hex_) == _HEX_LENGTHS.get(alg, -1) and _HEX_RE.fullmatch(hex_) is not None
    )


def algorithms() -> tuple[str, ...]:
    return tuple(_HEX_LENGTHS)
