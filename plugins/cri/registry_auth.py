"""The kubelet's ``AuthConfig`` and ``[registry] config_path`` as a registry :class:`Session`.

Credentials follow containerd 1.6's ``ParseAuth`` (``pkg/cri/server/image_pull.go``):
nothing when ``server_address`` names another host; else username and
password, else the identity token (as the secret of an empty user, which a
token server takes as a refresh token), else ``auth`` decoded from base64
``user:password``.  containerd leaves ``registry_token`` unsupported; lamina
sends it as the bearer token it is, to the hosts the credentials are for.
Loopback registries without a hosts directory are spoken to over HTTP, as
containerd's CRI resolver does.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import urlsplit

from lamina.client.remotes import Authorizer, HostOptions, Session
from lamina.client.remotes.auth import CredentialsFunc
from lamina.core.errors import InvalidArgument
from lamina.plugins.cri.images import Auth


def _for_host(auth: Auth, host: str) -> bool:
    if not auth.server_address:
        return True
    address = auth.server_address if "://" in auth.server_address else f"//{auth.server_address}"
    return urlsplit(address).netloc == host


def credentials(auth: Auth) -> CredentialsFunc:
    """``ParseAuth`` per host; an undecodable ``auth`` is refused before any request is made."""
    found: tuple[str, str] | None = None
    if auth.username:
        found = (auth.username, auth.password)
    elif auth.identity_token:
        found = ("", auth.identity_token)
    elif auth.auth:
        try:
            decoded = base64.b64decode(auth.auth, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidArgument("AuthConfig.auth is not base64") from None
        user, sep, secret = decoded.partition(":")
        if not sep:
            raise InvalidArgument("AuthConfig.auth does not decode to user:password")
        found = (user, secret.strip("\x00"))
    return lambda host: found if found and _for_host(auth, host) else None


class _TokenAuthorizer(Authorizer):
    """Sends a registry token as ``Bearer`` until a challenge teaches something better."""

    def __init__(self, auth: Auth) -> None:
        super().__init__(credentials(auth))
        self._auth = auth

    def header(self, host: str, scope: str) -> str | None:
        learned = super().header(host, scope)
        if learned is None and _for_host(self._auth, host):
            return f"Bearer {self._auth.registry_token}"
        return learned


def session(auth: Auth | None, config_path: str) -> Session:
    options = HostOptions(hosts_dir=config_path, localhost_plain_http=True)
    if auth is None:
        return Session(options, Authorizer())
    if auth.registry_token:
        return Session(options, _TokenAuthorizer(auth))
    return Session(options, Authorizer(credentials(auth)))
