"""Issue 6: the registry client's pure parts: references, platforms, hosts.toml, challenges, mounts.

No daemon and no registry; kept beside the registry tests because they share the subject.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from lamina.client import platforms
from lamina.client.remotes import media
from lamina.client.remotes.auth import parse_challenges
from lamina.client.remotes.dockerconfig import docker_config_credentials
from lamina.client.remotes.errors import Unauthorized
from lamina.client.remotes.hosts import HostOptions, hosts_for
from lamina.client.remotes.pusher import mount_candidate
from lamina.client.remotes.reference import parse
from lamina.core.errors import InvalidArgument
from lamina.core.platforms import Platform

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(("ref", "expected"), [
    ("busybox", "docker.io/library/busybox:latest"),
    ("library/busybox:1.36", "docker.io/library/busybox:1.36"),
    ("index.docker.io/foo/bar", "docker.io/foo/bar:latest"),
    ("127.0.0.1:5000/test/busybox:1", "127.0.0.1:5000/test/busybox:1"),
    ("localhost/x", "localhost/x:latest"),
    (f"ghcr.io/a/b@{DIGEST}", f"ghcr.io/a/b@{DIGEST}"),
    (f"ghcr.io/a/b:v1@{DIGEST}", f"ghcr.io/a/b:v1@{DIGEST}"),
])
def test_reference_normalisation(ref: str, expected: str) -> None:
    assert str(parse(ref)) == expected


def test_reference_parts() -> None:
    spec = parse(f"127.0.0.1:5000/test/busybox:1@{DIGEST}")
    assert (spec.host, spec.hostname, spec.repository, spec.object) == ("127.0.0.1:5000", "127.0.0.1",
                                                                       "test/busybox", DIGEST)


@pytest.mark.parametrize("ref", ["Busybox", "a/b@sha256:short", "host:5000/", "a//b"])
def test_reference_invalid(ref: str) -> None:
    with pytest.raises(InvalidArgument):
        parse(ref)


def test_platforms() -> None:
    assert platforms.parse("linux/aarch64") == Platform(os="linux", architecture="arm64", variant="v8")
    assert platforms.parse("arm64") == Platform(os="linux", architecture="arm64", variant="v8")
    assert platforms.only(platforms.parse("linux/arm/v7"))(Platform(os="linux", architecture="arm", variant="v6"))
    assert not platforms.only(platforms.parse("linux/arm/v6"))(Platform(os="linux", architecture="arm",
                                                                        variant="v7"))
    assert not platforms.only(platforms.parse("linux/amd64"))(Platform(os="linux", architecture="arm64"))
    with pytest.raises(InvalidArgument):
        platforms.parse("linux//")


def test_hosts_toml(tmp_path: Path) -> None:
    base = tmp_path / "127.0.0.1:5000"
    base.mkdir()
    (base / "hosts.toml").write_text('''server = "http://127.0.0.1:5000"
[host."http://127.0.0.1:6000"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
  [host."http://127.0.0.1:6000".header]
    x-mirror = "yes"
''')
    found = hosts_for("127.0.0.1:5000", HostOptions(hosts_dir=str(tmp_path)))
    assert [h.base for h in found] == ["http://127.0.0.1:6000/v2", "http://127.0.0.1:5000/v2"]
    assert found[0].capabilities == {"pull", "resolve"} and found[0].skip_verify
    assert dict(found[0].headers) == {"x-mirror": "yes"}
    assert "push" in found[1].capabilities
    assert [h.base for h in hosts_for("docker.io", HostOptions())] == ["https://registry-1.docker.io/v2"]
    assert [h.base for h in hosts_for("h:1", HostOptions(plain_http=True))] == ["http://h:1/v2"]


def test_challenges() -> None:
    (bearer,) = parse_challenges(['Bearer realm="https://auth.example/token",service="registry.example",'
                                  'scope="repository:a/b:pull,push"'])
    assert bearer.scheme == "bearer"
    assert bearer.params == {"realm": "https://auth.example/token", "service": "registry.example",
                             "scope": "repository:a/b:pull,push"}
    (basic,) = parse_challenges(['Basic realm="x"'])
    assert basic.scheme == "basic" and basic.params == {"realm": "x"}


def test_docker_config(tmp_path: object) -> None:
    path = tmp_path / "config.json"  # type: ignore[operator]
    path.write_text('{"auths": {"https://index.docker.io/v1/": {"auth": "dTpw"}, "h:1": {"username": "a", '
                    '"password": "b"}}}')
    lookup = docker_config_credentials(str(path))
    assert lookup("docker.io") == ("u", "p")
    assert lookup("h:1") == ("a", "b")
    assert lookup("other") is None


def test_docker_config_keys_as_docker(tmp_path: Path) -> None:
    """An ``auths`` key matches after dropping scheme and path; an identity token wins over a password
    and comes back with an empty username; a malformed ``auth`` is an error that shows no part of it."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {
        "http://h:5000/v2/": {"auth": base64.b64encode(b"a:b").decode()},
        "index.docker.io": {"identitytoken": "tok", "auth": base64.b64encode(b"u:p").decode()},
        "bad:1": {"auth": "c2VjcmV0LW5vLWNvbG9u"},
    }}))
    lookup = docker_config_credentials(str(path))
    assert lookup("h:5000") == ("a", "b")
    assert lookup("h") is None
    assert lookup("docker.io") == ("", "tok")
    with pytest.raises(Unauthorized) as raised:
        lookup("bad:1")
    assert "c2VjcmV0" not in str(raised.value) and "secret" not in str(raised.value)


def test_mount_candidate_and_ref_keys() -> None:
    spec = parse("127.0.0.1:5000/team/app:1")
    labels = {"containerd.io/distribution.source.127.0.0.1": "other/x,team/app,team/base"}
    assert mount_candidate(spec, labels) == "team/base"
    assert mount_candidate(spec, {}) == ""
    assert media.ref_key(media.OCI_INDEX, DIGEST) == f"index-{DIGEST}"
    assert media.ref_key("application/vnd.docker.image.rootfs.diff.tar.gzip", DIGEST) == f"layer-{DIGEST}"
    assert media.ref_key(media.DOCKER_CONFIG, DIGEST) == f"config-{DIGEST}"


def test_host_directory_order_and_certs_d_layout(tmp_path: Path) -> None:
    """containerd's lookup: ``host_port_``, then ``host:port``, then ``_default``; a directory
    without hosts.toml is read as Docker's certs.d (``*.crt`` CAs, ``*.cert`` with its ``*.key``)."""
    docker_style = tmp_path / "127.0.0.1_5000_"
    docker_style.mkdir()
    for name in ("ca.crt", "client.cert", "client.key", "lone.cert", "notes.txt"):
        (docker_style / name).write_text("")
    (tmp_path / "127.0.0.1:5000").mkdir()
    (tmp_path / "127.0.0.1:5000" / "hosts.toml").write_text('server = "http://mirror.invalid"\n')
    (tmp_path / "_default").mkdir()
    (tmp_path / "_default" / "hosts.toml").write_text('server = "http://default.invalid"\n')

    (host,) = hosts_for("127.0.0.1:5000", HostOptions(hosts_dir=str(tmp_path)))
    assert host.base == "https://127.0.0.1:5000/v2"
    assert host.ca == (str(docker_style / "ca.crt"),)
    assert host.client_cert == ((str(docker_style / "client.cert"), str(docker_style / "client.key")),
                                (str(docker_style / "lone.cert"), ""))
    (other,) = hosts_for("example.com", HostOptions(hosts_dir=str(tmp_path)))
    assert other.base == "http://default.invalid/v2"
