"""``[grpc] tcp_address``: the API on TCP with mutual TLS, or not at all without an explicit opt-out.

A throwaway CA signs laminad's certificate (``IP:127.0.0.1``) and a client's;
the lamina CLI reaches the daemon with ``--address tcp://…`` and the TLS
flags.  A client without a certificate, or trusting another CA, is refused;
a config with a TCP address and no TLS does not start laminad.
"""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.conftest import Daemon, make_daemon
from tests.fixtures_registry import free_port

pytestmark = pytest.mark.timeout(120)


@dataclass(frozen=True)
class Pair:
    cert: str
    key: str


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(where: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Pair:
    (where / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (where / f"{stem}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    return Pair(cert=str(where / f"{stem}.pem"), key=str(where / f"{stem}.key"))


class CA:
    """A self-signed CA that issues server and client certificates into ``where``."""

    def __init__(self, where: Path, name: str) -> None:
        self.where = where
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.now = datetime.datetime.now(datetime.UTC)
        self.name = _name(name)
        self.cert = (self._builder(self.name, self.key.public_key())
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.pem = _write(where, name, self.cert, self.key).cert

    def _builder(self, subject: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(self.name).public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(self.now - datetime.timedelta(days=1))
                .not_valid_after(self.now + datetime.timedelta(days=1)))

    def issue(self, stem: str, usage: x509.ObjectIdentifier) -> Pair:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (self._builder(_name(stem), key.public_key())
                .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                               critical=False)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .sign(self.key, hashes.SHA256()))
        return _write(self.where, stem, cert, key)


@dataclass(frozen=True)
class Setup:
    address: str  # tcp://127.0.0.1:port
    ca: str
    client: Pair
    other_ca: str  # trusts nothing laminad has
    stranger: Pair  # a client certificate from the other CA


def _start(fresh_daemon: Callable[..., Daemon], grpc_table: str) -> Daemon:
    d: Daemon = fresh_daemon(start=False)
    config = f"{d.base}/tcp.toml"
    Path(config).write_text(f"version = 2\n[grpc]\n{grpc_table}")
    d.extra_args += ["--config", config]
    d.start()
    return d


@pytest.fixture
def mtls(fresh_daemon: Callable[..., Daemon], tmp_path: Path) -> Setup:
    ca, other = CA(tmp_path, "ca"), CA(tmp_path, "other-ca")
    server = ca.issue("server", ExtendedKeyUsageOID.SERVER_AUTH)
    address = f"127.0.0.1:{free_port()}"
    _start(fresh_daemon, f'tcp_address = "{address}"\ntcp_tls_cert = "{server.cert}"\n'
                         f'tcp_tls_key = "{server.key}"\ntcp_tls_ca = "{ca.pem}"\n')
    return Setup(address=f"tcp://{address}", ca=ca.pem, client=ca.issue("client", ExtendedKeyUsageOID.CLIENT_AUTH),
                 other_ca=other.pem, stranger=other.issue("stranger", ExtendedKeyUsageOID.CLIENT_AUTH))


def _lamina(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["lamina", "--address", address, *args, "version"],
                          capture_output=True, text=True, timeout=60)


def test_mutual_tls_is_accepted(mtls: Setup) -> None:
    result = _lamina(mtls.address, "--tlscacert", mtls.ca, "--tlscert", mtls.client.cert, "--tlskey", mtls.client.key)
    assert result.returncode == 0, result.stderr
    assert "Server:" in result.stdout and "Version:" in result.stdout, result.stdout


def test_client_without_certificate_is_refused(mtls: Setup) -> None:
    result = _lamina(mtls.address, "--tlscacert", mtls.ca)
    assert result.returncode == 1
    assert result.stderr.startswith("lamina: "), result.stderr


def test_wrong_ca_is_refused(mtls: Setup) -> None:
    """Either way round: the client does not trust laminad, or laminad does not trust the client."""
    distrusting = _lamina(mtls.address, "--tlscacert", mtls.other_ca,
                          "--tlscert", mtls.client.cert, "--tlskey", mtls.client.key)
    assert distrusting.returncode == 1, distrusting.stdout
    distrusted = _lamina(mtls.address, "--tlscacert", mtls.ca,
                         "--tlscert", mtls.stranger.cert, "--tlskey", mtls.stranger.key)
    assert distrusted.returncode == 1, distrusted.stdout


def test_tcp_without_tls_is_refused_at_start(tmp_path: Path) -> None:
    d = make_daemon()
    config = tmp_path / "tcp-plain.toml"
    config.write_text(f'version = 2\n[grpc]\n  tcp_address = "127.0.0.1:{free_port()}"\n')
    result = subprocess.run(["laminad", "--root", d.root, "--state", d.state, "--address", d.address,
                             "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "tcp_tls_cert" in result.stderr and "tcp_insecure" in result.stderr, result.stderr
    assert not Path(d.address).exists()


def test_tcp_insecure_serves_in_the_clear_with_a_warning(fresh_daemon: Callable[..., Daemon]) -> None:
    address = f"127.0.0.1:{free_port()}"
    d = _start(fresh_daemon, f'tcp_address = "{address}"\ntcp_insecure = true\n')
    assert '"gRPC on TCP without mutual TLS' in d.log()
    result = _lamina(f"tcp://{address}")
    assert result.returncode == 0, result.stderr
