"""HTTP to registries: one httpx client per TLS setup, auth on 401, retries on 5xx and resets.

As ``remotes/docker/resolver.go``'s ``doWithRetries``: a 401 is answered once
by the :class:`~lamina.client.remotes.auth.Authorizer`; 429 and 5xx answers
and broken connections are retried with exponential back-off (100 ms
doubling, 5 tries), as long as the request body can be replayed; a TLS
certificate that does not verify, or a TLS alert from the registry, fails at once.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable, Mapping

import httpx

from lamina.client.remotes.auth import Authorizer
from lamina.client.remotes.errors import Forbidden, RegistryFailure, Unauthorized
from lamina.client.remotes.hosts import HostOptions, RegistryHost, hosts_for
from lamina.core.errors import InvalidArgument, NotFound

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
TIMEOUT = httpx.Timeout(30.0, connect=10.0)
USER_AGENT = "lamina/0 (containerd/1.6 compatible)"

#: A request body: bytes, or a factory of fresh async byte streams (so a retry can replay it).
Body = bytes | Callable[[], AsyncIterator[bytes]] | None


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def push_scope(repository: str) -> str:
    return f"repository:{repository}:pull,push"


def _bad_certificate(exc: BaseException) -> bool:
    """Whether a transport error is a TLS refusal (a certificate that did not verify, or the registry's
    alert, such as a missing client certificate): retrying will not change it.  An abrupt EOF may."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError) and not isinstance(seen, ssl.SSLEOFError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _registry_message(response: httpx.Response) -> str:
    """The first ``errors[].message`` of a distribution-spec error body, if any."""
    try:
        errors = response.json().get("errors") or []
        return "; ".join(str(e.get("message") or e.get("code")) for e in errors[:1])
    except (ValueError, AttributeError, httpx.ResponseNotRead):
        return ""


def error_for(response: httpx.Response, what: str) -> Exception:
    """The lamina error for an unexpected answer about ``what`` (a reference or blob)."""
    status = f"{response.status_code} {response.reason_phrase}"
    said = _registry_message(response)
    detail = f"{status}: {said}" if said else status
    if response.status_code == 401:
        return Unauthorized(f"{what}: access denied, check the credentials ({detail})")
    if response.status_code == 403:
        return Forbidden(f"{what}: {detail}")
    if response.status_code == 404:
        return NotFound(what)
    return RegistryFailure(f"{what}: {response.request.method} {response.request.url} answered {detail}")


class Session:
    """Registry HTTP for one pull or push; close it (``async with``) to drop connections."""

    def __init__(self, options: HostOptions | None = None, authorizer: Authorizer | None = None, *,
                 retries: int = 5, backoff: float = 0.1) -> None:
        self.options = options or HostOptions()
        self.authorizer = authorizer or Authorizer()
        self._retries = retries
        self._backoff = backoff
        self._clients: dict[tuple[object, ...], httpx.AsyncClient] = {}

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    def hosts(self, host: str, capability: str) -> list[RegistryHost]:
        found = [h for h in hosts_for(host, self.options) if capability in h.capabilities]
        if not found:
            raise NotFound(f"no {capability} hosts for {host}")
        return found

    def client(self, host: RegistryHost) -> httpx.AsyncClient:
        key = (host.scheme, host.ca, host.client_cert, host.skip_verify)
        if key not in self._clients:
            verify: ssl.SSLContext | bool = True
            if host.scheme == "https":
                verify = ssl.create_default_context()
                try:
                    for ca in host.ca:
                        verify.load_verify_locations(cafile=ca)
                    for cert, keyfile in host.client_cert:
                        verify.load_cert_chain(cert, keyfile or None)
                except (OSError, ssl.SSLError) as exc:
                    raise InvalidArgument(f"TLS files for {host.host} (CAs {list(host.ca)}, client "
                                          f"certificates {list(host.client_cert)}): {exc}") from None
                if host.skip_verify:
                    verify.check_hostname = False
                    verify.verify_mode = ssl.CERT_NONE
            self._clients[key] = httpx.AsyncClient(
                verify=verify, timeout=TIMEOUT, follow_redirects=True, headers={"User-Agent": USER_AGENT},
                limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
            )
        return self._clients[key]

    async def request(self, host: RegistryHost, method: str, url: str, *, scope: str, what: str,
                      headers: Mapping[str, str] | None = None, body: Body = None,
                      stream: bool = False) -> httpx.Response:
        """Send with auth and retries; the response is read unless ``stream`` (then close it)."""
        client = self.client(host)
        if not url.startswith(("http://", "https://")):
            url = host.base + url
        auth_tried = False
        attempt = 0
        while True:
            all_headers = {**host.headers, **(headers or {})}
            authorization = self.authorizer.header(host.host, scope)
            if authorization:
                all_headers["Authorization"] = authorization
            content = body() if callable(body) else body
            request = client.build_request(method, url, headers=all_headers, content=content)
            try:
                response = await client.send(request, stream=True)
            except (httpx.TransportError, ssl.SSLError) as exc:  # httpcore lets a TLS alert on read through as is
                replayable = body is None or callable(body) or isinstance(body, bytes)
                if attempt < self._retries and replayable and not _bad_certificate(exc):
                    attempt += 1
                    await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
                    continue
                raise RegistryFailure(f"{what}: {method} {url}: {exc or type(exc).__name__}") from exc
            if response.status_code == 401 and not auth_tried:
                await response.aread()
                await response.aclose()
                auth_tried = True
                if await self.authorizer.challenged(client, host.host, scope, response, what):
                    continue
                return response
            if response.status_code in RETRY_STATUS and attempt < self._retries:
                await response.aclose()
                attempt += 1
                await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
                continue
            if not stream:
                try:
                    await response.aread()
                finally:
                    await response.aclose()
            return response
