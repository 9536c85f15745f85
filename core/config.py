"""laminad's TOML configuration, laid out like containerd's version 2 file.

Every section is a dataclass with defaults; a plugin's section is
``[plugins."<type>.<id>"]`` filled into the dataclass its registration names.

containerd 1.6 ignores sections for plugins it does not have and top-level
keys it does not know, and engines ship files written for it; laminad
accepts those parts too, so such files start it, and lists each one as
``Ignored`` (the daemon logs one warning per part, ``config dump`` shows
them).  Everywhere else an unknown key is refused at start-up, naming the
key, because a typo that is silently ignored costs an operator far more than
a daemon that will not start: inside a plugin's section, and inside the
daemon's own sections except for the containerd keys laminad does not
implement (``CONTAINERD_ONLY_KEYS``).
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lamina.core.errors import InvalidArgument
from lamina.core.registry import Registration

DEFAULT_CONFIG_PATH = "/etc/lamina/config.toml"
MAX_MESSAGE_SIZE = 16 << 20


@dataclass(kw_only=True)
class GrpcConfig:
    address: str = "/run/lamina/lamina.sock"
    uid: int = 0
    gid: int = 0
    max_recv_message_size: int = MAX_MESSAGE_SIZE
    max_send_message_size: int = MAX_MESSAGE_SIZE
    # Seconds a client may take to send its preface or finish a frame it started (core/h2_protocol.py).
    stall_timeout: float = 10.0
    # gRPC on TCP as well ("host:port"): TLS with tcp_tls_cert and tcp_tls_key, and
    # client certificates from tcp_tls_ca; all three are required (core/tls.py).
    tcp_address: str = ""
    tcp_tls_cert: str = ""
    tcp_tls_key: str = ""
    tcp_tls_ca: str = ""
    # lamina's own: serve tcp_address in the clear (a warning at every start).
    tcp_insecure: bool = False


@dataclass(kw_only=True)
class TtrpcConfig:
    address: str = ""  # empty: "<grpc.address>.ttrpc", where shims forward events


@dataclass(kw_only=True)
class DebugConfig:
    level: str = "info"
    format: str = ""  # "text", "json", or empty for json unless stderr is a TTY


@dataclass(kw_only=True)
class MetricsConfig:
    address: str = ""  # "host:port" serving GET /v1/metrics (Prometheus text); empty: off


@dataclass(kw_only=True)
class CgroupConfig:
    path: str = ""  # the cgroup laminad moves itself into at start; empty: stay put


@dataclass(kw_only=True)
class ProxyPluginConfig:
    """One ``[proxy_plugins.NAME]`` table, as containerd's (``plugins/proxy.py`` registers it)."""

    type: str = ""  # "snapshot" or "content" (or the plugin type they stand for)
    address: str = ""  # the unix socket the plugin serves on
    platform: str = ""  # as containerd 1.7: the platform it supports; empty: the host's


# Keys containerd 1.6 reads in sections laminad has too, but which laminad
# does not implement (services/server/config/config.go).
CONTAINERD_ONLY_KEYS = frozenset({
    "metrics.grpc_histogram", "ttrpc.uid", "ttrpc.gid", "debug.address", "debug.uid", "debug.gid",
})


@dataclass(frozen=True, slots=True, kw_only=True)
class Ignored:
    """One part of a config file that laminad accepts and does not use."""

    key: str  # as TOML spells it: ``oom_score``, ``debug.address``, ``plugins."io.containerd.x.v1.y"``
    reason: str


@dataclass(kw_only=True)
class DaemonConfig:
    version: int = 2
    root: str = "/var/lib/lamina"
    state: str = "/run/lamina"
    disabled_plugins: list[str] = field(default_factory=list)
    required_plugins: list[str] = field(default_factory=list)
    grpc: GrpcConfig = field(default_factory=GrpcConfig)
    ttrpc: TtrpcConfig = field(default_factory=TtrpcConfig)
    debug: DebugConfig = field(default_factory=DebugConfig)
    cgroup: CgroupConfig = field(default_factory=CgroupConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    plugins: dict[str, Any] = field(default_factory=dict)
    proxy_plugins: dict[str, ProxyPluginConfig] = field(default_factory=dict)
    # Filled by ``load`` from the file, never from a key of its own.
    ignored: list[Ignored] = field(default_factory=list, init=False)

    @property
    def ttrpc_address(self) -> str:
        return self.ttrpc.address or f"{self.grpc.address}.ttrpc"


def _convert(hint: Any, value: Any, where: str) -> Any:
    """Check and convert one TOML value against a dataclass field's type hint."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise InvalidArgument(f"config {where!r} must be a table")
        return from_table(hint, value, where)  # type: ignore[arg-type]
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise InvalidArgument(f"config {where!r} must be an array")
        return [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, item = typing.get_args(hint)
        if not isinstance(value, dict):
            raise InvalidArgument(f"config {where!r} must be a table")
        return {k: _convert(item, v, f"{where}.{k}") for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        return value
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise InvalidArgument(f"config {where!r} must be of type {hint.__name__}, not {value!r}")
    return value


def from_table(cls: type, table: Mapping[str, Any], where: str = "") -> Any:
    """Build dataclass ``cls`` from a TOML table, refusing unknown keys."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            raise InvalidArgument(f"unknown config key {path!r}")
        kwargs[key] = _convert(hints[key], value, path)
    return cls(**kwargs)


def load(path: str | None) -> DaemonConfig:
    """Read the config file; a missing default file means all defaults."""
    target = path or DEFAULT_CONFIG_PATH
    try:
        with open(target, "rb") as f:
            table = tomllib.load(f)
    except FileNotFoundError:
        if path:
            raise InvalidArgument(f"config file {path!r} does not exist") from None
        table = {}
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgument(f"config file {target!r}: {exc}") from None
    kept, ignored = _set_aside(table)
    config = from_table(DaemonConfig, kept)
    if config.version != 2:
        raise InvalidArgument(f"config version {config.version} is not supported (want 2)")
    config.ignored = ignored
    return config


def _set_aside(table: Mapping[str, Any]) -> tuple[dict[str, Any], list[Ignored]]:
    """Split off the top-level keys laminad does not know and ``CONTAINERD_ONLY_KEYS``."""
    known = {f.name for f in dataclasses.fields(DaemonConfig) if f.init}
    kept: dict[str, Any] = {}
    ignored: list[Ignored] = []
    for key, value in table.items():
        if key not in known:
            ignored.append(Ignored(key=_toml_key(key), reason="not a laminad setting"))
            continue
        if isinstance(value, dict) and key != "plugins":
            value = dict(value)
            for inner in sorted(k for k in value if f"{key}.{k}" in CONTAINERD_ONLY_KEYS):
                del value[inner]
                ignored.append(Ignored(key=f"{key}.{inner}", reason="containerd setting laminad does not implement"))
        kept[key] = value
    return kept, ignored


def ignored_parts(config: DaemonConfig, registrations: Iterable[Registration]) -> list[Ignored]:
    """Everything the file set that laminad will not use: ``config.ignored`` and unknown plugins."""
    uris = {r.uri for r in registrations}
    plugins = [Ignored(key=f'plugins."{uri}"', reason="no such plugin") for uri in config.plugins if uri not in uris]
    return [*config.ignored, *plugins]


def plugin_configs(config: DaemonConfig, registrations: Iterable[Registration]) -> dict[str, Any]:
    """Each plugin's config dataclass, filled from its ``[plugins."uri"]`` table.

    Tables of plugins laminad does not have are left out (``ignored_parts`` names them).
    """
    regs = {r.uri: r for r in registrations}
    built: dict[str, Any] = {}
    for uri, reg in regs.items():
        if reg.config is None:
            if config.plugins.get(uri):
                raise InvalidArgument(f"plugin {uri!r} takes no configuration")
            continue
        built[uri] = from_table(reg.config, config.plugins.get(uri, {}), f'plugins."{uri}"')
    return built


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else _toml_value(key)


def _emit(table: Mapping[str, Any], prefix: str, lines: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in table.items() if isinstance(v, dict)}
    if prefix and (scalars or not tables):
        lines.append(f"\n[{prefix}]")
    for key, value in scalars.items():
        lines.append(f"{'  ' if prefix else ''}{_toml_key(key)} = {_toml_value(value)}")
    for key, value in tables.items():
        _emit(value, f"{prefix}.{_toml_key(key)}" if prefix else _toml_key(key), lines)


def to_toml(config: DaemonConfig, plugin_configs_: Mapping[str, Any], ignored: Iterable[Ignored] = ()) -> str:
    """The effective config as TOML (the plugins' tables filled in).

    The ignored parts lead as comments, so the output still loads as a config.
    """
    table = dataclasses.asdict(config)
    del table["ignored"]
    table["plugins"] = {uri: dataclasses.asdict(c) for uri, c in sorted(plugin_configs_.items())}
    lines = [f"# ignored: {part.key} ({part.reason})" for part in ignored]
    _emit(table, "", lines)
    return "\n".join(lines).lstrip("\n") + "\n"
