"""The CRI plugin's pure parts: AuthConfig → credentials, reference normalisation, CNI config loading."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lamina.client.remotes.hosts import HostOptions, hosts_for, is_localhost
from lamina.core.config import from_table
from lamina.core.errors import FailedPrecondition, InvalidArgument
from lamina.plugins.cri import cni_config, references
from lamina.plugins.cri.config import CriConfig, to_json
from lamina.plugins.cri.image_manager import user_of
from lamina.plugins.cri.images import Auth
from lamina.plugins.cri.registry_auth import credentials

HOST = "127.0.0.1:5000"


@pytest.mark.parametrize(("auth", "expected"), [
    (Auth(), None),
    (Auth(username="u", password="p", identity_token="t"), ("u", "p")),
    (Auth(identity_token="t", auth=base64.b64encode(b"u:p").decode()), ("", "t")),
    (Auth(auth=base64.b64encode(b"u:p:q\x00\x00").decode()), ("u", "p:q")),
    (Auth(username="u", password="p", server_address=HOST), ("u", "p")),
    (Auth(username="u", password="p", server_address=f"https://{HOST}/v2/"), ("u", "p")),
    (Auth(username="u", password="p", server_address="other:5000"), None),
])
def test_credentials_follow_parse_auth(auth: Auth, expected: tuple[str, str] | None) -> None:
    assert credentials(auth)(HOST) == expected


@pytest.mark.parametrize("encoded", ["not base64!", base64.b64encode(b"no-colon").decode()])
def test_bad_auth_is_refused_up_front(encoded: str) -> None:
    with pytest.raises(InvalidArgument):
        credentials(Auth(auth=encoded))


def test_references() -> None:
    digest = "sha256:" + "a" * 64
    assert str(references.normalise("busybox")) == "docker.io/library/busybox:latest"
    assert str(references.normalise(f"r.io/x:1@{digest}")) == f"r.io/x@{digest}"
    assert references.is_image_id(digest) and not references.is_image_id("sha256:abc")
    assert references.is_id_prefix("abc123") and references.is_id_prefix("sha256:ab")
    assert not references.is_id_prefix("busybox")
    tags, digests = references.split([digest, "busybox", "busybox:1", f"r.io/x@{digest}",
                                      "docker.io/library/busybox:latest", "Bad Name:1"])
    assert tags == ("docker.io/library/busybox:1", "docker.io/library/busybox:latest")
    assert digests == (f"r.io/x@{digest}",)


def test_loopback_registries_are_plain_http_only_when_asked() -> None:
    assert is_localhost(HOST) and is_localhost("localhost") and is_localhost("[::1]:5000")
    assert not is_localhost("example.com:5000") and not is_localhost("10.0.0.1")
    assert [h.base for h in hosts_for(HOST, HostOptions())] == [f"https://{HOST}/v2"]
    assert [h.base for h in hosts_for(HOST, HostOptions(localhost_plain_http=True))] == [f"http://{HOST}/v2"]
    assert [h.base for h in hosts_for("r.io", HostOptions(localhost_plain_http=True))] == ["https://r.io/v2"]


def test_hosts_roots_are_searched_in_order(tmp_path: Path) -> None:
    for root, port in (("a", 1), ("b", 2)):
        (tmp_path / root / "_default").mkdir(parents=True)
        (tmp_path / root / "_default" / "hosts.toml").write_text(f'server = "http://mirror:{port}"\n')
    roots = f"{tmp_path}/missing:{tmp_path}/b:{tmp_path}/a"
    assert [h.base for h in hosts_for("r.io", HostOptions(hosts_dir=roots))] == ["http://mirror:2/v2"]


def test_cni_config_loads_as_go_cni(tmp_path: Path) -> None:
    with pytest.raises(FailedPrecondition, match="cni plugin not initialized"):
        cni_config.load(str(tmp_path / "absent"), 1)
    (tmp_path / "README").write_text("not a config")
    with pytest.raises(FailedPrecondition, match="no network config found"):
        cni_config.load(str(tmp_path), 1)
    (tmp_path / "20-single.conf").write_text(json.dumps({"cniVersion": "0.4.0", "name": "one", "type": "bridge"}))
    (tmp_path / "10-list.conflist").write_text(json.dumps({"cniVersion": "1.0.0", "name": "two",
                                                           "plugins": [{"type": "bridge"}, {"type": "portmap"}]}))
    (first,) = cni_config.load(str(tmp_path), 1)
    assert (first.name, [p["type"] for p in first.plugins]) == ("two", ["bridge", "portmap"])
    assert [n.name for n in cni_config.load(str(tmp_path), 0)] == ["two", "one"]
    (tmp_path / "05-typeless.json").write_text(json.dumps({"name": "broken"}))
    with pytest.raises(FailedPrecondition, match="network type not found"):
        cni_config.load(str(tmp_path), 1)


def test_config_takes_containerd_key_names() -> None:
    config = from_table(CriConfig, {"sandbox_image": "pause:offline", "restrict_oom_score_adj": True,
                                    "stream_server_port": "10010", "cni": {"bin_dir": "/usr/lib/cni"},
                                    "registry": {"config_path": "/etc/lamina/certs.d"}})
    assert (config.sandbox_image, config.cni.bin_dir, config.cni.conf_dir) == ("pause:offline", "/usr/lib/cni",
                                                                               "/etc/cni/net.d")
    assert config.registry.config_path == "/etc/lamina/certs.d" and config.containerd.snapshotter == "overlayfs"
    shown = to_json(config)
    assert shown["restrictOOMScoreAdj"] is True and shown["sandboxImage"] == "pause:offline"
    assert shown["cni"]["binDir"] == "/usr/lib/cni" and shown["registry"]["configPath"] == "/etc/lamina/certs.d"
    with pytest.raises(InvalidArgument, match="cni.confdir"):
        from_table(CriConfig, {"cni": {"confdir": "/x"}})


@pytest.mark.parametrize(("user", "expected"), [
    (None, (None, "")), ("", (None, "")), ("1000", (1000, "")), ("1000:50", (1000, "")),
    ("nobody", (None, "nobody")), ("nobody:nogroup", (None, "nobody")),
])
def test_image_user_as_get_user_from_image(user: str | None, expected: tuple[int | None, str]) -> None:
    assert user_of({"config": {"User": user}} if user is not None else {}) == expected


def test_loading_the_builtin_plugins_leaves_the_client_unimported() -> None:
    """The CRI plugin reaches the daemon through lamina's client, but only once asked for images."""
    code = ("import importlib, sys\n"
            "from lamina.plugins.builtins import BUILTIN_MODULES\n"
            "for m in BUILTIN_MODULES: importlib.import_module(m)\n"
            "leaked = [m for m in ('grpc', 'httpx', 'lamina.client') if m in sys.modules]\n"
            "assert not leaked, leaked\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/tmp", timeout=60)
