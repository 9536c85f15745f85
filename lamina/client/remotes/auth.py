"""Registry credentials and challenges: Basic, and Bearer tokens from ``WWW-Authenticate``.

The flow is ``remotes/docker/authorizer.go``'s: a request without
credentials gets a 401 whose ``WWW-Authenticate`` names the scheme.  For
``Basic`` the credentials go on every later request to that host; for
``Bearer`` a token is fetched from ``realm`` with the challenge's ``service``
and the request's ``scope`` (``repository:<path>:pull[,push]``), using the
credentials (if any) as Basic auth on the token request, and cached per host
and scope.  Credentials come from ``--user`` or, as Docker stores them, from
``$DOCKER_CONFIG/config.json`` (``~/.docker/config.json``).
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import httpx

from lamina.client.remotes.errors import Unauthorized
from lamina.client.remotes.reference import DOCKER_HUB, DOCKER_HUB_API

#: Maps a registry host ("127.0.0.1:5000") to (username, secret), or None for anonymous.
CredentialsFunc = Callable[[str], tuple[str, str] | None]

_PARAM = re.compile(r'([a-zA-Z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')
_DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", DOCKER_HUB, DOCKER_HUB_API)


@dataclass(frozen=True, slots=True, kw_only=True)
class Challenge:
    scheme: str  # "basic" or "bearer"
    params: dict[str, str]


def parse_challenges(headers: Iterable[str]) -> list[Challenge]:
    """Every challenge in the ``WWW-Authenticate`` header values."""
    found = []
    for header in headers:
        for part in re.split(r",\s*(?=[A-Za-z]+\s+[a-zA-Z_]+=)", header.strip()):
            scheme, _, rest = part.strip().partition(" ")
            if not scheme:
                continue
            params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
                      for m in _PARAM.finditer(rest)}
            found.append(Challenge(scheme=scheme.lower(), params=params))
    return found


def static_credentials(user: str, secret: str) -> CredentialsFunc:
    """``--user U:P``: the same credentials for every host, as ``ctr`` uses them."""
    return lambda _host: (user, secret)


def docker_config_credentials(path: str | None = None) -> CredentialsFunc:
    """Credentials stored by ``docker login`` (inline ``auth`` or ``username``/``password``).

    Credential helpers (``credsStore``, ``credHelpers``) are not run.
    """
    if path is None:
        path = os.path.join(os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker"), "config.json")
    try:
        with open(path) as f:
            auths = json.load(f).get("auths") or {}
    except (OSError, ValueError):
        auths = {}

    def lookup(host: str) -> tuple[str, str] | None:
        keys = _DOCKER_HUB_KEYS if host in (DOCKER_HUB, DOCKER_HUB_API) else (host, f"https://{host}",
                                                                                f"http://{host}")
        for key in keys:
            entry = auths.get(key)
            if not entry:
                continue
            if entry.get("auth"):
                user, _, secret = base64.b64decode(entry["auth"]).decode().partition(":")
                return user, secret
            if entry.get("username"):
                return entry["username"], entry.get("password", "")
            if entry.get("identitytoken"):
                return "", entry["identitytoken"]
        return None

    return lookup


def basic_header(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


class Authorizer:
    """Keeps what a 401 taught us per host, and answers with the right ``Authorization``."""

    def __init__(self, credentials: CredentialsFunc | None = None) -> None:
        self._credentials = credentials or (lambda _host: None)
        self._challenges: dict[str, Challenge] = {}
        self._tokens: dict[tuple[str, str], str] = {}

    def header(self, host: str, scope: str) -> str | None:
        """The ``Authorization`` value for a request to ``host`` needing ``scope``, if known yet."""
        challenge = self._challenges.get(host)
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            creds = self._credentials(host)
            return basic_header(*creds) if creds else None
        token = self._tokens.get((host, scope))
        return f"Bearer {token}" if token else None

    async def challenged(self, http: httpx.AsyncClient, host: str, scope: str, response: httpx.Response,
                         what: str) -> bool:
        """Learn from a 401; True when a retry could now succeed (it would carry new credentials)."""
        challenges = parse_challenges(response.headers.get_list("www-authenticate"))
        previous = response.request.headers.get("authorization")
        for challenge in challenges:
            if challenge.scheme == "bearer" and challenge.params.get("realm"):
                self._challenges[host] = challenge
                cached = self._tokens.get((host, scope))
                if cached and f"Bearer {cached}" != previous:  # another request fetched one meanwhile
                    return True
                token = await self._fetch_token(http, host, challenge, scope, what)
                self._tokens[(host, scope)] = token
                return f"Bearer {token}" != previous
            if challenge.scheme == "basic":
                self._challenges[host] = challenge
                header = self.header(host, scope)
                return header is not None and header != previous
        return False

    async def _fetch_token(self, http: httpx.AsyncClient, host: str, challenge: Challenge, scope: str,
                           what: str) -> str:
        params: list[tuple[str, str | int | float | bool | None]] = []
        if challenge.params.get("service"):
            params.append(("service", challenge.params["service"]))
        for item in scope.split(" ") if scope else challenge.params.get("scope", "").split(" "):
            if item:
                params.append(("scope", item))
        headers = {}
        creds = self._credentials(host)
        if creds:
            headers["Authorization"] = basic_header(*creds)
        try:
            response = await http.get(challenge.params["realm"], params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise Unauthorized(f"{what}: fetching a token from {challenge.params['realm']}: {exc}") from exc
        if response.status_code != 200:
            raise Unauthorized(f"{what}: token server {challenge.params['realm']} answered "
                               f"{response.status_code} {response.reason_phrase}")
        try:
            body = response.json()
            token = body.get("token") or body.get("access_token")
        except ValueError:
            token = None
        if not token:
            raise Unauthorized(f"{what}: token server {challenge.params['realm']} sent no token")
        return str(token)
