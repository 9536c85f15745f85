"""Running CNI plugins as the CNI specification says, for one pod's network namespace.

A plugin is an executable in ``CNI_PATH`` named by the config's ``type``,
given ``CNI_COMMAND`` (ADD, DEL), ``CNI_CONTAINERID``, ``CNI_NETNS``,
``CNI_IFNAME``, ``CNI_ARGS`` and ``CNI_PATH`` in its environment and its
network configuration on stdin; it answers a result (ADD) or nothing on
stdout, and on failure exits non-zero with an error document there.  A
conflist's plugins are chained as libcni's ``AddNetworkList`` does: each
gets the network's ``name`` and ``cniVersion``, the previous plugin's result
as ``prevResult``, and the ``runtimeConfig`` entries its ``capabilities``
ask for; DEL runs them in reverse with the ADD's result as ``prevResult``
(from CNI 0.4.0 on).  go-cni always sets up ``lo`` first
with the ``loopback`` plugin, then the network proper on ``eth0``.

These calls block on the plugins: run them in a thread.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lamina.core.errors import FailedPrecondition, InvalidArgument
from lamina.plugins.cri.cni_config import NetworkConfig

TIMEOUT = 60.0
LOOPBACK = NetworkConfig(path="", name="cni-loopback", cni_version="1.0.0",
                         plugins=({"type": "loopback"},))
_NO_PREV_RESULT_DEL = ("0.1.0", "0.2.0", "0.3.0", "0.3.1")  # versions whose DEL takes no prevResult


@dataclass(frozen=True, slots=True, kw_only=True)
class Attachment:
    """One pod's side of a network: who it is, where its namespace is, what it asks for."""

    container_id: str
    netns: str
    ifname: str
    args: Mapping[str, str] = field(default_factory=dict)  # CNI_ARGS, K=V;K=V
    capabilities: Mapping[str, Any] = field(default_factory=dict)  # runtimeConfig, by capability name


def _executable(bin_dir: str, plugin_type: str) -> str:
    if not plugin_type or "/" in plugin_type or plugin_type in (".", ".."):
        raise InvalidArgument(f"CNI plugin type {plugin_type!r}")
    for directory in bin_dir.split(os.pathsep):
        path = os.path.join(directory, plugin_type)
        if os.access(path, os.X_OK) and os.path.isfile(path):
            return path
    raise FailedPrecondition(f'failed to find plugin "{plugin_type}" in path [{bin_dir}]')


def _config(network: NetworkConfig, plugin: Mapping[str, Any], attachment: Attachment,
            prev_result: Mapping[str, Any] | None) -> dict[str, Any]:
    conf = {**plugin, "name": network.name, "cniVersion": network.cni_version}
    if prev_result is not None:
        conf["prevResult"] = dict(prev_result)
    wanted = plugin.get("capabilities") or {}
    runtime_config = {k: v for k, v in attachment.capabilities.items() if isinstance(wanted, dict) and wanted.get(k)}
    if runtime_config:
        conf["runtimeConfig"] = runtime_config
    else:
        conf.pop("runtimeConfig", None)
    return conf


def invoke(command: str, bin_dir: str, network: NetworkConfig, plugin: Mapping[str, Any],
           attachment: Attachment, prev_result: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Run one plugin; its result (ADD), else None.  A failure names the plugin and its error."""
    plugin_type = str(plugin.get("type", ""))
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command, "CNI_CONTAINERID": attachment.container_id, "CNI_NETNS": attachment.netns,
        "CNI_IFNAME": attachment.ifname, "CNI_PATH": bin_dir,
        "CNI_ARGS": ";".join(f"{k}={v}" for k, v in attachment.args.items()),
    }
    stdin = json.dumps(_config(network, plugin, attachment, prev_result))
    what = f"plugin type={plugin_type!r} name={network.name!r} {command}"
    try:
        done = subprocess.run([_executable(bin_dir, plugin_type)], input=stdin, env=env, capture_output=True,
                              text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        raise FailedPrecondition(f"{what}: no answer within {TIMEOUT:.0f}s") from None
    if done.returncode != 0:
        try:
            error = json.loads(done.stdout)
            detail = f"{error.get('msg', '')} {error.get('details', '')}".strip() + f" (code {error.get('code')})"
        except (ValueError, AttributeError):
            detail = (done.stdout + done.stderr).strip() or f"exit status {done.returncode}"
        raise FailedPrecondition(f"{what} failed: {detail}")
    if command != "ADD":
        return None
    try:
        result = json.loads(done.stdout)
    except ValueError:
        raise FailedPrecondition(f"{what} answered no JSON result") from None
    if not isinstance(result, dict):
        raise FailedPrecondition(f"{what} answered a result that is not an object")
    return result


def add(bin_dir: str, network: NetworkConfig, attachment: Attachment) -> dict[str, Any]:
    """ADD through the whole chain; the last plugin's result."""
    result: dict[str, Any] | None = None
    for plugin in network.plugins:
        result = invoke("ADD", bin_dir, network, plugin, attachment, result) or {}
    return result or {}


def delete(bin_dir: str, network: NetworkConfig, attachment: Attachment,
           result: Mapping[str, Any] | None) -> None:
    """DEL through the chain in reverse; every plugin is asked even when one fails, the first error raised."""
    prev = None if network.cni_version in _NO_PREV_RESULT_DEL else result
    first: FailedPrecondition | None = None
    for plugin in reversed(network.plugins):
        try:
            invoke("DEL", bin_dir, network, plugin, attachment, prev)
        except FailedPrecondition as exc:
            first = first or exc
    if first is not None:
        raise first


def interface_ips(result: Mapping[str, Any], ifname: str) -> tuple[str, ...]:
    """The addresses a result gives the interface ``ifname`` inside the namespace, IPv4 first
    (containerd's default ``ip_pref``), without their prefix lengths."""
    interfaces = result.get("interfaces") or []
    found = []
    for ip in result.get("ips") or []:
        index = ip.get("interface")
        if isinstance(index, int) and 0 <= index < len(interfaces):
            iface = interfaces[index]
            if iface.get("name") != ifname or not iface.get("sandbox"):
                continue
        elif ip.get("interface") is not None:
            continue
        found.append(str(ip.get("address", "")).split("/")[0])
    return tuple(sorted(filter(None, found), key=lambda a: ":" in a))
