"""Registry credentials and challenges: Basic, and Bearer tokens from ``WWW-Authenticate``.

The flow is ``remotes/docker/authorizer.go``'s: a request without
credentials gets a 401 whose ``WWW-Authenticate`` names the scheme.  For
``Basic`` the credentials go on every later request to that host; for
``Bearer`` a token is fetched from ``realm`` with the challenge's ``service``
and the request's ``scope`` (``repository:<path>:pull[,push]``), using the
credentials (if any) as Basic auth on the token request, and cached per host
and scope.  An identity token is instead sent as an OAuth2 ``refresh_token``
grant in a POST to ``realm`` (``auth.FetchTokenWithOAuth``), falling back to
the GET on 400/401/404 as containerd does.  Credentials come from ``--user``
or from Docker's config (:mod:`~lamina.client.remotes.dockerconfig`).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import httpx

from lamina.client.remotes.errors import Unauthorized

#: Maps a registry host ("127.0.0.1:5000") to (username, secret), or None for anonymous; an empty
#: username means the secret is an identity (OAuth refresh) token.
CredentialsFunc = Callable[[str], tuple[str, str] | None]

#: containerd's client_id, and the POST answers after which it retries with a GET (remotes/docker/authorizer.go)
OAUTH_CLIENT_ID = "containerd-client"
OAUTH_FALLBACK = frozenset({400, 401, 404})
_PARAM = re.compile(r'([a-zA-Z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


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
            creds = self._credentials(host)  # an identity token is no Basic credential
            return basic_header(*creds) if creds and creds[0] else None
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
        realm = challenge.params["realm"]
        scopes = [item for item in (scope or challenge.params.get("scope", "")).split(" ") if item]
        service = challenge.params.get("service", "")
        creds = self._credentials(host)
        try:
            if creds and not creds[0]:  # an identity token: containerd's OAuth POST first
                form = {"grant_type": "refresh_token", "refresh_token": creds[1], "service": service,
                        "client_id": OAUTH_CLIENT_ID, **({"scope": " ".join(scopes)} if scopes else {})}
                response = await http.post(realm, data=form)
                if response.status_code not in OAUTH_FALLBACK:
                    return _token(response, realm, what)
            params = ([("service", service)] if service else []) + [("scope", item) for item in scopes]
            headers = {"Authorization": basic_header(*creds)} if creds else {}
            response = await http.get(realm, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise Unauthorized(f"{what}: fetching a token from {realm}: {exc}") from exc
        return _token(response, realm, what)


def _token(response: httpx.Response, realm: str, what: str) -> str:
    """The token of a token server's answer (``token``, or OAuth's ``access_token``)."""
    if response.status_code != 200:
        raise Unauthorized(f"{what}: token server {realm} answered {response.status_code} {response.reason_phrase}")
    try:
        body = response.json()
        token = body.get("token") or body.get("access_token")
    except (ValueError, AttributeError):
        token = None
    if not token:
        raise Unauthorized(f"{what}: token server {realm} sent no token")
    return str(token)
