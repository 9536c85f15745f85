"""Which endpoints serve a registry host: defaults, ``--plain-http``, and ``hosts.toml`` mirrors.

The directory layout is containerd's ``remotes/docker/config`` one: the
host's directory is the first of ``<hosts-dir>/<host>_<port>_``,
``<hosts-dir>/<host[:port]>`` and ``<hosts-dir>/_default`` that exists.  Its
``hosts.toml`` has an optional ``server`` and ``[host."<url>"]`` tables
carrying ``capabilities``, ``ca``, ``skip_verify``, ``client`` certificates,
``header`` and ``override_path``; mirrors are tried in file order, the
server last, and relative ``ca`` and ``client`` paths are relative to the
host's directory.  A directory without ``hosts.toml`` is read in Docker's
``certs.d`` layout instead: ``*.crt`` files are CAs, and each ``*.cert`` is a
client certificate whose key is the ``*.key`` of the same name.  Several
hosts roots may be given, ``:``-separated, as the CRI's ``[registry]
config_path``; the first holding a directory for the host wins.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from lamina.client.remotes.reference import DOCKER_HUB, DOCKER_HUB_API
from lamina.core.errors import InvalidArgument

PULL, RESOLVE, PUSH = "pull", "resolve", "push"
ALL_CAPABILITIES = frozenset({PULL, RESOLVE, PUSH})


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryHost:
    scheme: str  # "https" or "http"
    host: str  # "127.0.0.1:5000"
    path: str = "/v2"
    capabilities: frozenset[str] = ALL_CAPABILITIES
    ca: tuple[str, ...] = ()
    client_cert: tuple[tuple[str, str], ...] = ()
    skip_verify: bool = False
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}{self.path}"


@dataclass(frozen=True, slots=True, kw_only=True)
class HostOptions:
    """The command line's say: ``--plain-http``, ``--skip-verify``, ``--hosts-dir``, ``--tlscacert``,
    ``--tlscert``/``--tlskey``."""

    plain_http: bool = False
    skip_verify: bool = False
    hosts_dir: str = ""
    ca: tuple[str, ...] = ()  # CA files trusted for every host, besides the system's and hosts.toml's
    client_cert: tuple[tuple[str, str], ...] = ()  # (cert, key) offered to every host, besides hosts.toml's
    # containerd's ConfigureHosts with no DefaultScheme, as the CRI resolver uses it: a loopback
    # registry without a hosts.toml is spoken to over plain HTTP (remotes/docker/config/hosts.go)
    localhost_plain_http: bool = False


def _list(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _client_certs(value: Any, base: str) -> tuple[tuple[str, str], ...]:
    """``client`` is a cert path, a list of them, or a list of ``[cert, key]`` pairs."""
    items = [value] if isinstance(value, str) else list(value or [])
    pairs = [(item, "") if isinstance(item, str) else (item[0], item[1] if len(item) > 1 else "") for item in items]
    return tuple((os.path.join(base, cert), os.path.join(base, key) if key else "") for cert, key in pairs)


def _entry(url: str, table: Mapping[str, Any], default_caps: frozenset[str], options: HostOptions,
           where: str, base: str = "") -> RegistryHost:
    """One endpoint; ``base`` is the directory that relative certificate paths are in."""
    if "://" not in url:
        url = ("http://" if options.plain_http else "https://") + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidArgument(f"{where}: bad host URL {url!r}")
    path = parts.path.rstrip("/")
    if not table.get("override_path", False):
        path = path if path.endswith("/v2") else f"{path}/v2"
    caps = frozenset(table["capabilities"]) if "capabilities" in table else default_caps
    unknown = caps - ALL_CAPABILITIES
    if unknown:
        raise InvalidArgument(f"{where}: unknown capabilities {sorted(unknown)}")
    headers = {k: ",".join(_list(v)) for k, v in (table.get("header") or {}).items()}
    return RegistryHost(
        scheme=parts.scheme, host=parts.netloc, path=path, capabilities=caps,
        ca=options.ca + tuple(os.path.join(base, ca) for ca in _list(table.get("ca"))),
        client_cert=options.client_cert + _client_certs(table.get("client"), base),
        skip_verify=bool(table.get("skip_verify", False)) or options.skip_verify,
        headers=MappingProxyType(headers),
    )


def _host_dir(hosts_dir: str, host: str) -> str | None:
    """containerd's ``HostDirFromRoot`` per root: ``host_port_`` first for a host with a port."""
    names = [host, "_default"]
    port = host.rfind(":")
    if port > 0:
        names.insert(0, f"{host[:port]}_{host[port + 1:]}_")
    for root in filter(None, hosts_dir.split(os.pathsep)):
        for name in names:
            path = os.path.join(root, name)
            if os.path.isdir(path):
                return path
    return None


def is_localhost(host: str) -> bool:
    """``docker.IsLocalhost``: ``localhost`` or a loopback address, with or without a port."""
    name = host
    if host.startswith("["):
        name = host[1:host.find("]")]
    elif host.count(":") == 1:
        name = host.partition(":")[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _cert_files(directory: str) -> dict[str, Any]:
    """A host table from Docker's ``certs.d`` files (containerd's ``loadCertFiles``)."""
    names = sorted(os.listdir(directory))
    client = []
    for name in names:
        if name.endswith(".cert"):
            key = name[: -len(".cert")] + ".key"
            client.append([name, key if key in names else ""])
    return {"ca": [n for n in names if n.endswith(".crt")], "client": client}


def hosts_for(host: str, options: HostOptions) -> list[RegistryHost]:
    """The endpoints for registry ``host``, in the order to try them."""
    plain = options.plain_http or (options.localhost_plain_http and is_localhost(host))
    default_scheme = "http" if plain else "https"
    server_url = f"{default_scheme}://{DOCKER_HUB_API if host == DOCKER_HUB else host}"
    base = _host_dir(options.hosts_dir, host) if options.hosts_dir else None
    if base is None:
        return [_entry(server_url, {}, ALL_CAPABILITIES, options, host)]
    path = os.path.join(base, "hosts.toml")
    try:
        with open(path, "rb") as f:
            text = f.read()
        config = tomllib.loads(text.decode())
    except FileNotFoundError:
        text = b""
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidArgument(f"{path}: {exc}") from exc
    if not text:
        return [_entry(server_url, _cert_files(base), ALL_CAPABILITIES, options, base, base)]
    found = [_entry(url, table, frozenset({PULL, RESOLVE}), options, path, base)
             for url, table in (config.get("host") or {}).items()]
    server = config.get("server", server_url)
    top = {k: v for k, v in config.items() if k not in ("server", "host")}
    found.append(_entry(server, top, ALL_CAPABILITIES, options, path, base))
    return found
