"""Issue 15: registry credentials where Docker keeps them, and client certificates (``--tlscert``).

Without ``--user``, ``lamina images pull/push`` read ``$DOCKER_CONFIG/config.json``:
``auths`` entries (keyed as Docker keys them), and ``credHelpers``/``credsStore`` through
the docker-credential-helpers protocol, here a tiny ``docker-credential-lamtest`` shell script
on ``PATH`` that records the server address it was asked about.  An identity token from a
helper is traded for a registry token by OAuth POST.  A registry with ``http.tls.clientcas``
takes pushes and pulls with ``--tlscert/--tlskey`` and refuses them without.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Runner, own_daemon
from tests.fixtures_registry import (  # noqa: F401 - fixtures
    IDENTITY_TOKEN,
    OPENSSL,
    PASSWORD,
    USER,
    Registry,
    TokenServer,
    drop_registry,
    htpasswd_registry_fixture,
    make_certificates,
    make_client_certificate,
    make_registry,
    token_registry_fixture,
)

BUSYBOX = "docker.io/library/busybox:latest"

daemon = pytest.fixture(scope="module", name="daemon")(own_daemon)


def _images(ctr: Runner, ns: str) -> list[str]:
    return ctr("images", "ls", "-q", namespace=ns).stdout.split()


def _docker_config(where: Path, monkeypatch: pytest.MonkeyPatch, config: dict[str, object]) -> None:
    where.mkdir(exist_ok=True)
    (where / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("DOCKER_CONFIG", str(where))


def _helper(where: Path, monkeypatch: pytest.MonkeyPatch, answers: dict[str, tuple[str, str]]) -> Path:
    """``docker-credential-lamtest`` on PATH answering ``answers`` (server → user, secret); the
    addresses it is asked about are appended to the returned log file."""
    bin_dir = where / "bin"
    bin_dir.mkdir(parents=True)
    log = where / "asked"
    cases = "".join(
        f"  '{server}') printf '%s' '{json.dumps({'ServerURL': server, 'Username': u, 'Secret': s})}' ;;\n"
        for server, (u, s) in answers.items())
    script = bin_dir / "docker-credential-lamtest"
    script.write_text(f"""#!/bin/sh
[ "$1" = get ] || exit 2
read -r server
echo "$server" >> {log}
case "$server" in
{cases}  *) echo 'credentials not found in native keychain'; exit 1 ;;
esac
""")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def _push(ctr: Runner, lamina: Runner, archive: str, ref: str, *args: str) -> None:
    ctr("images", "import", "--no-unpack", archive)
    lamina("images", "push", *args, ref, BUSYBOX)


def test_auths_key_with_scheme_and_path(lamina: Runner, ctr: Runner, htpasswd_registry: Registry,
                                        busybox_archive: str, ns: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Docker matches an ``auths`` key after dropping its scheme and path (``ConvertToHostname``),
    and push reads the file too."""
    ref = f"{htpasswd_registry.host}/{ns}/busybox:1"
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    _docker_config(tmp_path / "docker", monkeypatch,
                   {"auths": {f"https://{htpasswd_registry.host}/v1/": {"auth": auth}}})
    _push(ctr, lamina, busybox_archive, ref, "--plain-http")
    lamina("images", "pull", "--plain-http", ref, namespace=f"{ns}-cfg")
    assert _images(ctr, f"{ns}-cfg") == [ref]


def test_credential_helper(lamina: Runner, ctr: Runner, htpasswd_registry: Registry, busybox_archive: str,
                           ns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``credHelpers`` for the host, then ``credsStore`` for every host; the helper gets the host."""
    host = htpasswd_registry.host
    ref = f"{host}/{ns}/busybox:1"
    asked = _helper(tmp_path, monkeypatch, {host: (USER, PASSWORD)})
    stale = base64.b64encode(f"{USER}:stale".encode()).decode()
    # the helper wins over a stale auths entry for the same host, as in Docker
    _docker_config(tmp_path / "docker", monkeypatch,
                   {"credHelpers": {host: "lamtest"}, "auths": {host: {"auth": stale}}})
    _push(ctr, lamina, busybox_archive, ref, "--plain-http")
    lamina("images", "pull", "--plain-http", ref, namespace=f"{ns}-helper")
    assert _images(ctr, f"{ns}-helper") == [ref]
    assert set(asked.read_text().split()) == {host}

    _docker_config(tmp_path / "docker", monkeypatch, {"credsStore": "lamtest"})
    lamina("images", "pull", "--plain-http", ref, namespace=f"{ns}-store")
    assert _images(ctr, f"{ns}-store") == [ref]


def test_wrong_credentials_refused(lamina: Runner, ctr: Runner, htpasswd_registry: Registry,
                                   busybox_archive: str, ns: str, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Rejected credentials, from the file or a helper: one line saying unauthorized, no secret in it;
    a helper that has nothing stored means anonymous, refused the same way."""
    host = htpasswd_registry.host
    ref = f"{host}/{ns}/busybox:1"
    _push(ctr, lamina, busybox_archive, ref, "--plain-http", "--user", f"{USER}:{PASSWORD}")
    secret = "not-the-pass-7731"
    wrong = base64.b64encode(f"{USER}:{secret}".encode()).decode()
    _helper(tmp_path / "wrong", monkeypatch, {host: (USER, secret)})
    for config in [{"auths": {host: {"auth": wrong}}}, {"credsStore": "lamtest"}]:
        _docker_config(tmp_path / "docker", monkeypatch, config)
        denied = lamina("images", "pull", "--plain-http", ref, check=False, namespace=f"{ns}-wrong")
        assert denied.returncode == 1
        (line,) = denied.stderr.strip().splitlines()
        assert ref in line and "401" in line and "unauthorized" in line, line
        assert secret not in denied.stderr + denied.stdout and wrong not in denied.stderr
    _helper(tmp_path / "empty", monkeypatch, {"elsewhere.example": (USER, secret)})  # nothing for host
    anonymous = lamina("images", "pull", "--plain-http", ref, check=False, namespace=f"{ns}-wrong")
    assert anonymous.returncode == 1 and "401" in anonymous.stderr
    assert _images(ctr, f"{ns}-wrong") == []


def test_broken_helper_named(lamina: Runner, htpasswd_registry: Registry, ns: str, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A helper that is not installed fails the pull with a line naming it."""
    _docker_config(tmp_path / "docker", monkeypatch, {"credsStore": "lamina-missing-helper"})
    ref = f"{htpasswd_registry.host}/{ns}/busybox:1"
    failed = lamina("images", "pull", "--plain-http", ref, check=False)
    assert failed.returncode == 1
    (line,) = failed.stderr.strip().splitlines()
    assert "docker-credential-lamina-missing-helper" in line and "unauthorized" in line, line


def test_identity_token_from_helper(lamina: Runner, ctr: Runner, token_registry: tuple[Registry, TokenServer],
                                    busybox_archive: str, ns: str, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Username ``<token>``: the secret is an identity token, traded by OAuth POST (refresh_token grant)."""
    registry, tokens = token_registry
    ref = f"{registry.host}/{ns}/busybox:1"
    _push(ctr, lamina, busybox_archive, ref, "--plain-http", "--user", f"{USER}:{PASSWORD}")
    _helper(tmp_path, monkeypatch, {registry.host: ("<token>", IDENTITY_TOKEN)})
    _docker_config(tmp_path / "docker", monkeypatch, {"credHelpers": {registry.host: "lamtest"}})
    lamina("images", "pull", "--plain-http", ref, namespace=f"{ns}-idtoken")
    assert f"repository:{ns}/busybox:pull" in tokens.oauth
    assert _images(ctr, f"{ns}-idtoken") == [ref]


@pytest.fixture(scope="module")
def mtls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Path]]:
    """An HTTPS registry requiring a client certificate signed by the module's CA, and that CA's files
    plus ``client.pem``/``client.key`` it signed."""
    if not os.path.exists(OPENSSL):
        pytest.skip("openssl is not installed (apt-get install openssl)")
    certs = tmp_path_factory.mktemp("mtls")
    make_certificates(certs)
    make_client_certificate(certs)
    registry = make_registry(tls=(str(certs / "server.pem"), str(certs / "server.key")),
                             client_ca=str(certs / "ca.pem"))
    yield registry, certs
    drop_registry(registry)


def test_client_certificate(lamina: Runner, ctr: Runner, mtls: tuple[Registry, Path], busybox_archive: str,
                            ns: str) -> None:
    registry, certs = mtls
    ref = f"{registry.host}/{ns}/busybox:1"
    ca = ("--tlscacert", str(certs / "ca.pem"))
    client = ("--tlscert", str(certs / "client.pem"), "--tlskey", str(certs / "client.key"))
    _push(ctr, lamina, busybox_archive, ref, *ca, *client)
    lamina("images", "pull", *ca, *client, ref, namespace=f"{ns}-mtls")
    assert _images(ctr, f"{ns}-mtls") == [ref]

    refused = lamina("images", "pull", *ca, ref, check=False, namespace=f"{ns}-nocert")
    assert refused.returncode == 1
    (line,) = refused.stderr.strip().splitlines()
    assert registry.host in line and "certificate" in line, line
    assert _images(ctr, f"{ns}-nocert") == []

    half = lamina("images", "pull", *ca, "--tlscert", str(certs / "client.pem"), ref, check=False)
    assert half.returncode == 2 and "--tlscert and --tlskey must be given together" in half.stderr
