"""Issue 6: registries over HTTPS with a private CA, ``--skip-verify`` and ``hosts.toml``.

A throwaway CA and a server certificate for ``IP:127.0.0.1`` are made with
``openssl`` in a temp dir, and Debian's ``docker-registry`` serves HTTPS with
them.  Lamina pushes and pulls trusting the CA through ``--tlscacert`` (as
``ctr``) and through a containerd hosts directory; without the CA a pull is
refused with one line naming the registry; ``--skip-verify`` and the
``skip_verify`` key get through.  The real ``ctr`` pulls into laminad with
the same hosts directory, and with ``--tlscacert``.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Runner, own_daemon
from tests.fixtures_registry import OPENSSL, Registry, drop_registry, make_certificates, make_registry

BUSYBOX = "docker.io/library/busybox:latest"


@dataclass
class TLSRegistry:
    registry: Registry
    ca: str  # the CA certificate (PEM) that signed the registry's certificate
    certs: Path  # where the CA and server files live

    @property
    def host(self) -> str:
        return self.registry.host


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSRegistry]:
    """An HTTPS-only registry on 127.0.0.1 whose certificate only the module's own CA vouches for."""
    if not os.path.exists(OPENSSL):
        pytest.skip("openssl is not installed (apt-get install openssl)")
    certs = tmp_path_factory.mktemp("tls")
    make_certificates(certs)
    registry = make_registry(tls=(str(certs / "server.pem"), str(certs / "server.key")))
    yield TLSRegistry(registry=registry, ca=str(certs / "ca.pem"), certs=certs)
    drop_registry(registry)


daemon = pytest.fixture(scope="module", name="daemon")(own_daemon)


def _hosts_dir(root: Path, host: str, toml: str) -> str:
    """A containerd hosts directory with ``<host>/hosts.toml``."""
    (root / host).mkdir(parents=True)
    (root / host / "hosts.toml").write_text(toml)
    return str(root)


def _pushed(lamina: Runner, ctr: Runner, archive: str, tls: TLSRegistry, ref: str) -> None:
    ctr("images", "import", "--no-unpack", archive)
    lamina("images", "push", "--tlscacert", tls.ca, ref, BUSYBOX)


def _pulled_and_runs(lamina: Runner, ctr: Runner, ref: str, ns: str, *args: str) -> None:
    out = lamina("images", "pull", *args, ref, namespace=ns)
    assert out.stdout.splitlines()[-1].startswith(f"{ref} sha256:"), out.stdout
    assert ctr("images", "ls", "-q", namespace=ns).stdout.split() == [ref]
    ran = lamina("run", "--rm", ref, f"{ns}-run", "echo", "pulled over TLS", namespace=ns)
    assert ran.stdout == "pulled over TLS\n"


def test_push_and_pull_with_tlscacert(lamina: Runner, ctr: Runner, tls_registry: TLSRegistry,
                                      busybox_archive: str, ns: str) -> None:
    ref = f"{tls_registry.host}/{ns}/busybox:1"
    _pushed(lamina, ctr, busybox_archive, tls_registry, ref)
    _pulled_and_runs(lamina, ctr, ref, f"{ns}-pull", "--tlscacert", tls_registry.ca)


def test_hosts_dir_ca(lamina: Runner, ctr: Runner, tls_registry: TLSRegistry, busybox_archive: str,
                      ns: str, tmp_path: Path) -> None:
    host = tls_registry.host
    ref = f"{host}/{ns}/busybox:1"
    # the server form: CA at the top level, push goes to the server
    server = _hosts_dir(tmp_path / "server", host, f'server = "https://{host}"\nca = "{tls_registry.ca}"\n')
    ctr("images", "import", "--no-unpack", busybox_archive)
    lamina("images", "push", "--hosts-dir", server, ref, BUSYBOX)
    # the host form, as in containerd's docs, with the CA path relative to the host's directory
    hosts = tmp_path / "hosts"
    _hosts_dir(hosts, host, f'[host."https://{host}"]\n  capabilities = ["pull", "resolve"]\n  ca = "ca.crt"\n')
    shutil.copy(tls_registry.ca, hosts / host / "ca.crt")
    _pulled_and_runs(lamina, ctr, ref, f"{ns}-pull", "--hosts-dir", str(hosts))


def test_docker_certs_d_layout(lamina: Runner, ctr: Runner, tls_registry: TLSRegistry, busybox_archive: str,
                               ns: str, tmp_path: Path) -> None:
    """Docker's ``certs.d/<host>_<port>_/ca.crt``, with no hosts.toml, is trusted as containerd trusts it."""
    host = tls_registry.host
    ref = f"{host}/{ns}/busybox:1"
    certs_d = tmp_path / "certs.d"
    docker_dir = certs_d / (host.replace(":", "_") + "_")
    docker_dir.mkdir(parents=True)
    shutil.copy(tls_registry.ca, docker_dir / "ca.crt")
    ctr("images", "import", "--no-unpack", busybox_archive)
    lamina("images", "push", "--hosts-dir", str(certs_d), ref, BUSYBOX)
    _pulled_and_runs(lamina, ctr, ref, f"{ns}-pull", "--hosts-dir", str(certs_d))


def test_untrusted_certificate_is_refused(lamina: Runner, ctr: Runner, tls_registry: TLSRegistry,
                                          busybox_archive: str, ns: str, tmp_path: Path) -> None:
    host = tls_registry.host
    ref = f"{host}/{ns}/busybox:1"
    ctr("images", "import", "--no-unpack", busybox_archive)
    refused_push = lamina("images", "push", ref, BUSYBOX, check=False)
    assert refused_push.returncode == 1
    (line,) = refused_push.stderr.strip().splitlines()
    assert "certificate verify failed" in line and host in line, line

    started = time.monotonic()
    refused = lamina("images", "pull", ref, check=False, namespace=f"{ns}-none")
    took = time.monotonic() - started
    assert refused.returncode == 1
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith(f"lamina: {ref}: ") and "certificate verify failed" in line and host in line, line
    assert took < 3, f"a certificate that does not verify is not worth retrying ({took:.1f}s)"
    assert ctr("images", "ls", "-q", namespace=f"{ns}-none").stdout.split() == []
    assert ctr("leases", "ls", "-q", namespace=f"{ns}-none").stdout.split() == []

    # a hosts.toml that does not give the CA verifies against the system's CAs only: refused too
    plain = _hosts_dir(tmp_path / "plain", host, f'server = "https://{host}"\n')
    refused = lamina("images", "pull", "--hosts-dir", plain, ref, check=False, namespace=f"{ns}-none")
    assert refused.returncode == 1 and "certificate verify failed" in refused.stderr, refused.stderr


def test_skip_verify(lamina: Runner, ctr: Runner, tls_registry: TLSRegistry, busybox_archive: str,
                     ns: str, tmp_path: Path) -> None:
    host = tls_registry.host
    ref = f"{host}/{ns}/busybox:1"
    ctr("images", "import", "--no-unpack", busybox_archive)
    lamina("images", "push", "--skip-verify", ref, BUSYBOX)
    _pulled_and_runs(lamina, ctr, ref, f"{ns}-k", "--skip-verify")

    skip = _hosts_dir(tmp_path / "skip", host, f'[host."https://{host}"]\n  skip_verify = true\n')
    lamina("images", "pull", "--no-unpack", "--hosts-dir", skip, ref, namespace=f"{ns}-toml")
    assert ctr("images", "ls", "-q", namespace=f"{ns}-toml").stdout.split() == [ref]


def test_real_ctr_pulls_with_the_same_hosts_dir(lamina: Runner, ctr: Runner, tls_registry: TLSRegistry,
                                               busybox_archive: str, ns: str, tmp_path: Path) -> None:
    """ctr fetches by itself and laminad stores and unpacks; ctr reads the hosts directory lamina reads.

    ctr 1.6 talks plain HTTP to a loopback host unless told ``https://``, so
    ``--tlscacert`` alone is not enough; a hosts.toml naming the endpoint is
    (in a ``[host]`` table: ctr 1.6 ignores a file without one).
    """
    host = tls_registry.host
    ref = f"{host}/{ns}/ctr:1"
    _pushed(lamina, ctr, busybox_archive, tls_registry, ref)

    hosts = tmp_path / "hosts"
    _hosts_dir(hosts, host, f'[host."https://{host}"]\n  capabilities = ["pull", "resolve"]\n  ca = "ca.crt"\n')
    shutil.copy(tls_registry.ca, hosts / host / "ca.crt")
    https = _hosts_dir(tmp_path / "https", host, f'[host."https://{host}"]\n')
    for pull_ns, args in ((f"{ns}-dir", ("--hosts-dir", str(hosts))),
                          (f"{ns}-ca", ("--hosts-dir", https, "--tlscacert", tls_registry.ca))):
        ctr("images", "pull", *args, ref, namespace=pull_ns)
        assert ctr("images", "ls", "-q", namespace=pull_ns).stdout.split() == [ref]
        assert "true" in ctr("images", "check", namespace=pull_ns).stdout.splitlines()[1]
        ran = lamina("run", "--rm", ref, f"{ns}-run", "echo", "ctr pulled over TLS", namespace=pull_ns)
        assert ran.stdout == "ctr pulled over TLS\n"
    refused = ctr("images", "pull", "--hosts-dir", https, ref, check=False, namespace=f"{ns}-none")
    assert refused.returncode != 0 and "certificate" in refused.stderr, refused.stderr
