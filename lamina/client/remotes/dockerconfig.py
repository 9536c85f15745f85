"""Registry credentials where ``docker login`` keeps them: ``$DOCKER_CONFIG/config.json``.

Docker's lookup (``cli/config/configfile``): a ``credHelpers`` entry for the
host wins, else ``credsStore``, else the file's own ``auths``.  A helper is
run as ``docker-credential-<name> get`` with the server address on stdin and
answers ``{"ServerURL", "Username", "Secret"}`` (docker-credential-helpers'
protocol); the username ``<token>`` marks the secret as an identity token.
Docker Hub's key is ``https://index.docker.io/v1/``; other hosts are keyed by
``host[:port]``, and an ``auths`` key is also matched after stripping its
scheme and path, as Docker's ``ConvertToHostname`` does.

Credentials are ``(username, secret)``; an empty username means the secret is
an identity (refresh) token.  No secret is ever logged or put in an error.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import subprocess
from collections.abc import Mapping
from typing import Any

from lamina.client.remotes.auth import CredentialsFunc
from lamina.client.remotes.errors import Unauthorized
from lamina.client.remotes.reference import DOCKER_HUB, DOCKER_HUB_API

DOCKER_HUB_SERVER = "https://index.docker.io/v1/"
TOKEN_USERNAME = "<token>"
HELPER_TIMEOUT = 60.0
#: docker-credential-helpers' ``credentials.errCredentialsNotFoundMessage``.
NOT_FOUND = "credentials not found in native keychain"


def config_path() -> str:
    return os.path.join(os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker"), "config.json")


def _hostname(key: str) -> str:
    """Docker's ``ConvertToHostname``: drop ``http(s)://`` and anything after the host."""
    for prefix in ("http://", "https://"):
        if key.startswith(prefix):
            key = key[len(prefix):]
            break
    return key.partition("/")[0]


def server_address(host: str) -> str:
    """The key Docker stores ``host``'s credentials under (and hands to helpers)."""
    return DOCKER_HUB_SERVER if host in (DOCKER_HUB, DOCKER_HUB_API, "index.docker.io") else host


def _from_entry(entry: Mapping[str, Any], where: str) -> tuple[str, str] | None:
    """An ``auths`` entry: ``identitytoken`` first (as Docker), then ``auth`` or ``username``/``password``."""
    if entry.get("identitytoken"):
        return "", str(entry["identitytoken"])
    if entry.get("auth"):
        try:
            user, sep, secret = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, TypeError) as exc:
            raise Unauthorized(f"{where}: the auth value is not base64 of user:password") from exc
        if not sep:
            raise Unauthorized(f"{where}: the auth value is not base64 of user:password")
        return user, secret
    if entry.get("username"):
        return str(entry["username"]), str(entry.get("password", ""))
    return None


def _from_file(auths: Mapping[str, Any], address: str, path: str) -> tuple[str, str] | None:
    entry = auths.get(address)
    if not isinstance(entry, Mapping):
        wanted = _hostname(address)
        entry = next((v for k, v in auths.items() if isinstance(v, Mapping) and _hostname(k) == wanted), None)
    return _from_entry(entry, f"{path}: auths entry for {address}") if entry else None


def run_helper(name: str, address: str) -> tuple[str, str] | None:
    """``docker-credential-<name> get`` for ``address``; None when it has nothing stored."""
    program = f"docker-credential-{name}"
    try:
        done = subprocess.run([program, "get"], input=address.encode(), capture_output=True,
                              timeout=HELPER_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unauthorized(f"credential helper {program} for {address}: {exc.__class__.__name__}: "
                           f"{getattr(exc, 'strerror', None) or 'did not answer'}") from None
    said = done.stdout.decode(errors="replace").strip()
    if done.returncode != 0:
        if NOT_FOUND in said:
            return None
        # the helper's own message (never the secret: a failing helper prints none)
        raise Unauthorized(f"credential helper {program} for {address} failed "
                           f"(exit {done.returncode}): {said.splitlines()[0][:200] if said else 'no message'}")
    try:
        answer = json.loads(said)
        user, secret = str(answer.get("Username") or ""), str(answer.get("Secret") or "")
    except (ValueError, AttributeError):
        raise Unauthorized(f"credential helper {program} for {address} did not answer JSON") from None
    if not secret:
        return None
    return ("", secret) if user == TOKEN_USERNAME else (user, secret)


def docker_config_credentials(path: str | None = None) -> CredentialsFunc:
    """Credentials for a host from Docker's config file (missing or unreadable file: none).

    Each host is looked up once per session: a helper may ask the user or a keyring.
    """
    path = path or config_path()
    try:
        with open(path) as f:
            config = json.load(f)
    except (OSError, ValueError):
        config = {}
    if not isinstance(config, Mapping):
        config = {}
    auths = config.get("auths") if isinstance(config.get("auths"), Mapping) else {}
    helpers = config.get("credHelpers") if isinstance(config.get("credHelpers"), Mapping) else {}
    store = str(config.get("credsStore") or "")
    known: dict[str, tuple[str, str] | None] = {}

    def lookup(host: str) -> tuple[str, str] | None:
        if host not in known:
            address = server_address(host)
            helper = helpers.get(_hostname(address)) or helpers.get(address) or store
            known[host] = run_helper(str(helper), address) if helper else _from_file(auths, address, path)
        return known[host]

    return lookup
