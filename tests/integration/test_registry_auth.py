"""Issue 6: pulls and pushes through Basic auth (htpasswd) and bearer tokens from a token server."""

from __future__ import annotations

import base64
import json

import pytest

from tests.conftest import Runner, own_daemon
from tests.fixtures_registry import (  # noqa: F401 - fixtures
    PASSWORD,
    USER,
    Registry,
    TokenServer,
    htpasswd_registry_fixture,
    token_registry_fixture,
)

BUSYBOX = "docker.io/library/busybox:latest"


daemon = pytest.fixture(scope="module", name="daemon")(own_daemon)


def _push(ctr: Runner, lamina: Runner, archive: str, ref: str) -> None:
    ctr("images", "import", "--no-unpack", archive)
    lamina("images", "push", "--plain-http", "--user", f"{USER}:{PASSWORD}", ref, BUSYBOX)


def _pull(lamina: Runner, ref: str, *args: str, check: bool = True, ns: str = ""):  # type: ignore[no-untyped-def]
    return lamina("images", "pull", "--plain-http", *args, ref, check=check, namespace=ns or None)


def test_htpasswd(lamina: Runner, ctr: Runner, htpasswd_registry: Registry, busybox_archive: str,
                  ns: str, tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = f"{htpasswd_registry.host}/{ns}/busybox:1"
    _push(ctr, lamina, busybox_archive, ref)

    denied = _pull(lamina, ref, check=False, ns=f"{ns}-anon")
    assert denied.returncode == 1
    (line,) = denied.stderr.strip().splitlines()
    assert ref in line and "401" in line and "unauthorized" in line, line
    assert ctr("images", "ls", "-q", namespace=f"{ns}-anon").stdout.split() == []

    wrong = _pull(lamina, ref, "--user", f"{USER}:wrong", check=False, ns=f"{ns}-anon")
    assert wrong.returncode == 1 and "401" in wrong.stderr

    _pull(lamina, ref, "--user", f"{USER}:{PASSWORD}", ns=f"{ns}-user")
    assert ctr("images", "ls", "-q", namespace=f"{ns}-user").stdout.split() == [ref]

    config = tmp_path / "docker"  # type: ignore[operator]
    config.mkdir()
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {htpasswd_registry.host: {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    _pull(lamina, ref, ns=f"{ns}-cfg")
    assert ctr("images", "ls", "-q", namespace=f"{ns}-cfg").stdout.split() == [ref]


def test_bearer_token(lamina: Runner, ctr: Runner, token_registry: tuple[Registry, TokenServer],
                      busybox_archive: str, ns: str) -> None:
    registry, tokens = token_registry
    ref = f"{registry.host}/{ns}/busybox:1"
    _push(ctr, lamina, busybox_archive, ref)
    assert f"repository:{ns}/busybox:pull,push" in tokens.issued

    denied = _pull(lamina, ref, check=False, ns=f"{ns}-anon")
    assert denied.returncode == 1
    (line,) = denied.stderr.strip().splitlines()
    assert ref in line and "401" in line and "unauthorized" in line, line

    _pull(lamina, ref, "--user", f"{USER}:{PASSWORD}", ns=f"{ns}-user")
    assert f"repository:{ns}/busybox:pull" in tokens.issued
    assert ctr("images", "ls", "-q", namespace=f"{ns}-user").stdout.split() == [ref]
    check = ctr("images", "check", namespace=f"{ns}-user").stdout.splitlines()[1]
    assert "complete" in check and "true" in check
