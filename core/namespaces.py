"""The request's namespace and lease, carried in context variables.

The gRPC request wrapper (and the ttrpc server) set them from the
``containerd-namespace`` and ``containerd-lease`` metadata keys; stores read
them through ``required()`` and ``lease()`` and never see gRPC.
"""

from __future__ import annotations

from contextvars import ContextVar

from lamina.core.errors import FailedPrecondition, InvalidArgument
from lamina.core.identifiers import validate_identifier

NAMESPACE_KEY = "containerd-namespace"
LEASE_KEY = "containerd-lease"

current_namespace: ContextVar[str] = ContextVar("namespace", default="")
current_lease: ContextVar[str] = ContextVar("lease", default="")


def validate_namespace(namespace: str) -> None:
    try:
        validate_identifier(namespace)
    except InvalidArgument as exc:
        raise InvalidArgument(f"namespace validation: {exc.context}") from None


def required() -> str:
    """The request's namespace, as containerd's ``NamespaceRequired``."""
    namespace = current_namespace.get()
    if not namespace:
        raise FailedPrecondition("namespace is required")
    return namespace


def lease() -> str:
    return current_lease.get()
