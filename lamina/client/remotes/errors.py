"""Registry failures, as lamina errors whose text names the reference.

401 and 403 have no containerd 1.6 status of their own (``ctr`` reports them
as unknown), so they are lamina-only classes; 404 is ``NotFound`` so that
``"<ref>: not found"`` reads as containerd's resolver error does.
"""

from __future__ import annotations

from lamina.core.errors import LaminaError


class Unauthorized(LaminaError):
    """401: missing or rejected credentials."""

    text = "unauthorized"


class Forbidden(LaminaError):
    """403: the credentials do not allow this."""

    text = "denied"


class RegistryFailure(LaminaError):
    """Any other unexpected answer (5xx after retries, odd status codes, a broken connection)."""

    text = "registry error"
