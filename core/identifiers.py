"""containerd's rules for identifiers (namespaces, containers, leases) and labels.

Matching them matters: engines rely on the same names being accepted or
refused by lamina as by containerd (``identifiers/validate.go``,
``labels/validate.go``), with the same wording in the error.
"""

from __future__ import annotations

import base64
import os
import re
import time
from collections.abc import Mapping

from lamina.core.errors import InvalidArgument

MAX_IDENTIFIER_LENGTH = 76
MAX_LABEL_SIZE = 4096
_IDENTIFIER = re.compile(r"^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$")


def validate_identifier(value: str) -> None:
    if not value:
        raise InvalidArgument("identifier must not be empty")
    if len(value) > MAX_IDENTIFIER_LENGTH:
        raise InvalidArgument(
            f"identifier {value!r} greater than maximum length ({MAX_IDENTIFIER_LENGTH} characters)"
        )
    if not _IDENTIFIER.match(value):
        raise InvalidArgument(f"identifier {value!r} must match {_IDENTIFIER.pattern}")


def checked_labels(labels: Mapping[str, str], field: str) -> dict[str, str]:
    """Validate labels and drop the empty ones (an empty value deletes a label).

    ``field`` prefixes the error as containerd's stores do (``info.Labels``).
    """
    try:
        validate_labels(labels)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{field}: {exc.context}") from None
    return {k: v for k, v in labels.items() if v}


def validate_labels(labels: Mapping[str, str]) -> None:
    for key, value in labels.items():
        if len(key.encode()) + len(value.encode()) > MAX_LABEL_SIZE:
            raise InvalidArgument(
                f"label key and value greater than maximum size ({MAX_LABEL_SIZE} bytes), key: {key[:10]}"
            )


def random_id() -> str:
    """containerd's ``leases.WithRandomID``: ``<nanoseconds>-<4 url-safe base64 chars>``."""
    return f"{time.time_ns() % 1_000_000_000}-{base64.urlsafe_b64encode(os.urandom(3)).decode()}"
