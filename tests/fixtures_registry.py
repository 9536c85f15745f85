"""Registries on loopback for pull/push tests: Debian's ``docker-registry``, htpasswd, a token server.

Every registry gets a free port on 127.0.0.1 and its own temp config and
storage, and is stopped at teardown.  The token server is a few lines of
``http.server`` that hands out ES256 JWTs the registry trusts (its
``rootcertbundle`` holds the signing key's self-signed certificate; the
token header's ``kid`` is the libtrust key id of that key).  A throttling
TCP proxy lets tests stop a pull half way.  ``push_layout`` uploads OCI
archives (``tests/images.py``) straight over HTTP, independent of lamina's
own registry client, to build multi-platform indexes.

Test modules import the fixtures by their function names (``registry_fixture`` …); pytest
knows them as ``registry``, ``htpasswd_registry`` and ``token_registry``.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.server
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.waiting import eventually

REGISTRY = "/usr/bin/docker-registry"
HTPASSWD = "/usr/bin/htpasswd"
OPENSSL = "/usr/bin/openssl"
SERVICE = "lamina-test-registry"
ISSUER = "lamina-test-token-server"
USER, PASSWORD = "tester", "s3cret-pass"
IDENTITY_TOKEN = "lamina-identity-token-5f1c"  # the refresh token the token server takes in an OAuth POST


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listens(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class Registry:
    """A ``docker-registry`` process; ``host`` is what references start with."""

    base: str
    port: int
    config: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(os.path.join(self.base, "registry.log"), "ab")
        self.process = subprocess.Popen([REGISTRY, "serve", self.config], stdout=log, stderr=log,
                                        start_new_session=True)
        log.close()
        eventually(lambda: _listens(self.port), what=f"the registry to listen on 127.0.0.1:{self.port}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            self.process.send_signal(sig)
            self.process.wait(10)
            self.process = None

    def log(self) -> str:
        with open(os.path.join(self.base, "registry.log"), errors="replace") as f:
            return f.read()[-10000:]


def make_registry(auth: str = "", tls: tuple[str, str] | None = None, client_ca: str = "") -> Registry:
    """A started registry; ``auth`` is ``""``, or a YAML ``auth:`` block (already indented).

    ``tls`` is a (certificate, key) pair of PEM files: the registry then serves HTTPS only, and with
    ``client_ca`` (``http.tls.clientcas``) requires client certificates that CA signed.
    """
    if not os.path.exists(REGISTRY):
        pytest.skip("Debian's docker-registry is not installed (apt-get install docker-registry)")
    base = tempfile.mkdtemp(prefix="lreg-", dir="/tmp")
    port = free_port()
    config = os.path.join(base, "config.yml")
    tls_block = f"  tls:\n    certificate: {tls[0]}\n    key: {tls[1]}\n" if tls else ""
    if tls and client_ca:
        tls_block += f"    clientcas:\n      - {client_ca}\n"
    with open(config, "w") as f:
        f.write(f"""version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {base}/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
{tls_block}{auth}""")
    registry = Registry(base=base, port=port, config=config)
    registry.start()
    return registry


def drop_registry(registry: Registry) -> None:
    registry.stop()
    shutil.rmtree(registry.base, ignore_errors=True)


# -- certificates -----------------------------------------------------------------------------------


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_certificates(where: Path) -> None:
    """``ca.pem``/``ca.key`` and ``server.pem``/``server.key`` (SAN ``IP:127.0.0.1``), EC P-256, 2 days."""
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=lamina test CA", cwd=where)
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=where)
    (where / "server.ext").write_text(
        "subjectAltName = IP:127.0.0.1\nbasicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n"
        "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "2", "-extfile", "server.ext", cwd=where)


def make_client_certificate(where: Path) -> None:
    """``client.pem``/``client.key`` (``clientAuth``), signed by ``make_certificates``' CA in ``where``."""
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", *ec, "-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=lamina test client", cwd=where)
    (where / "client.ext").write_text("basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n"
                                      "extendedKeyUsage = clientAuth\n")
    openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "client.pem", "-days", "2", "-extfile", "client.ext", cwd=where)


# -- token server -----------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenServer:
    """Issues registry tokens at ``realm``: by GET to ``USER``/``PASSWORD``, by OAuth POST for ``IDENTITY_TOKEN``."""

    port: int
    key: object
    kid: str
    issued: list[str] = field(default_factory=list)
    oauth: list[str] = field(default_factory=list)  # scopes of tokens issued for an identity token
    server: http.server.ThreadingHTTPServer | None = None

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def token(self, scopes: Sequence[str]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": [a for a in actions.split(",") if a]})
        now = int(time.time())
        header = {"alg": "ES256", "typ": "JWT", "kid": self.kid}
        claims = {"iss": ISSUER, "sub": USER, "aud": SERVICE, "exp": now + 600, "nbf": now - 10, "iat": now,
                  "jti": _b64(os.urandom(12)), "access": access}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        der = self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))  # type: ignore[attr-defined]
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _libtrust_kid(public_der: bytes) -> str:
    """docker/libtrust's key id: base32 of the first 240 bits of sha256(DER), in groups of 4."""
    encoded = base64.b32encode(hashlib.sha256(public_der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i:i + 4] for i in range(0, len(encoded), 4))


def start_token_server(cert_path: str) -> TokenServer:
    """Make a signing key, write its certificate to ``cert_path``, and serve tokens."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        pytest.skip("python3-cryptography is needed to sign registry tokens")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    public_der = key.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    tokens = TokenServer(port=free_port(), key=key, kid=_libtrust_kid(public_der))
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            if url.path != "/token" or query.get("service") != [SERVICE]:
                self.send_error(404)
                return
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"details":"invalid credentials"}')
                return
            self._issue(query.get("scope", []))

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            """OAuth2 (``distribution``'s token spec): only the ``refresh_token`` grant, for ``IDENTITY_TOKEN``."""
            length = int(self.headers.get("Content-Length") or 0)
            form = urllib.parse.parse_qs(self.rfile.read(length).decode())
            if urllib.parse.urlsplit(self.path).path != "/token" or form.get("service") != [SERVICE]:
                self.send_error(404)
                return
            if form.get("grant_type") != ["refresh_token"] or form.get("refresh_token") != [IDENTITY_TOKEN]:
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            tokens.oauth.append(form.get("scope", [""])[0])
            self._issue(form.get("scope", [""])[0].split())

        def _issue(self, scopes: list[str]) -> None:
            token = tokens.token(scopes)
            tokens.issued.append(" ".join(scopes))
            body = json.dumps({"token": token, "access_token": token, "expires_in": 600}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    tokens.server = http.server.ThreadingHTTPServer(("127.0.0.1", tokens.port), Handler)
    threading.Thread(target=tokens.server.serve_forever, daemon=True).start()
    return tokens


# -- throttling proxy -------------------------------------------------------------------------------


@dataclass
class Proxy:
    """TCP 127.0.0.1:port → upstream, answers slowed to ``rate`` bytes/s (0: full speed)."""

    upstream: int
    port: int = 0
    rate: int = 0
    down: int = 0  # bytes sent to clients so far
    _listener: socket.socket | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", self.port))
        self.port = self._listener.getsockname()[1]
        self._listener.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _accept(self) -> None:
        assert self._listener is not None
        listener = self._listener
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:  # upstream down: the client sees its connection reset
                client.close()
                continue
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, downstream: bool) -> None:
        try:
            while data := src.recv(64 << 10 if not (downstream and self.rate) else 16 << 10):
                if downstream:
                    self.down += len(data)
                    if self.rate:  # the throttling itself, not a wait for anything
                        time.sleep(len(data) / self.rate)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


# -- pushing OCI archives without lamina ------------------------------------------------------------


def read_archive(archive: bytes) -> tuple[dict[str, Any], dict[str, bytes]]:
    """An OCI archive's index.json and its blobs by digest."""
    blobs: dict[str, bytes] = {}
    index: dict[str, Any] = {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            data = tar.extractfile(member).read() if member.isfile() else b""  # type: ignore[union-attr]
            if member.name == "index.json":
                index = json.loads(data)
            elif member.name.startswith("blobs/sha256/"):
                blobs["sha256:" + member.name.rsplit("/", 1)[1]] = data
    return index, blobs


def with_digest(location: str, digest: str) -> str:
    """The upload ``Location`` (which carries the registry's ``_state``) plus ``digest=``."""
    return location + ("&" if "?" in location else "?") + urllib.parse.urlencode({"digest": digest})


def push_layout(host: str, repository: str, tag: str, archives: Sequence[bytes],
                headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Upload each archive's image and an OCI index of all of them under ``tag``; returns the index."""
    import httpx

    manifests = []
    with httpx.Client(base_url=f"http://{host}/v2/{repository}", headers=dict(headers or {})) as http:
        for archive in archives:
            index, blobs = read_archive(archive)
            (entry,) = index["manifests"]
            manifest_data = blobs[entry["digest"]]
            manifest = json.loads(manifest_data)
            for blob in [manifest["config"], *manifest["layers"]]:
                location = http.post("/blobs/uploads/").raise_for_status().headers["location"]
                http.put(with_digest(location, blob["digest"]), content=blobs[blob["digest"]]).raise_for_status()
            http.put(f"/manifests/{entry['digest']}", content=manifest_data,
                     headers={"Content-Type": manifest["mediaType"]}).raise_for_status()
            manifests.append({"mediaType": manifest["mediaType"], "digest": entry["digest"],
                              "size": len(manifest_data), "platform": entry["platform"]})
        top: dict[str, Any] = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                               "manifests": manifests}
        http.put(f"/manifests/{tag}", content=json.dumps(top).encode(),
                 headers={"Content-Type": top["mediaType"]}).raise_for_status()
    return top


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session", name="registry")
def registry_fixture() -> Iterator[Registry]:
    """An open registry on loopback (``--plain-http``)."""
    r = make_registry()
    yield r
    drop_registry(r)


@pytest.fixture(scope="session", name="htpasswd_registry")
def htpasswd_registry_fixture() -> Iterator[Registry]:
    """A registry behind Basic auth: ``USER``/``PASSWORD``."""
    if not os.path.exists(HTPASSWD):
        pytest.skip("htpasswd (apache2-utils) is needed for the bcrypt password file")
    path = tempfile.mkstemp(prefix="lreg-htpasswd-", dir="/tmp")[1]
    entry = subprocess.run([HTPASSWD, "-Bbn", USER, PASSWORD], capture_output=True, text=True, check=True).stdout
    with open(path, "w") as f:
        f.write(entry)
    r = make_registry(f"auth:\n  htpasswd:\n    realm: lamina-test\n    path: {path}\n")
    yield r
    drop_registry(r)
    os.unlink(path)


@pytest.fixture(scope="session", name="token_registry")
def token_registry_fixture() -> Iterator[tuple[Registry, TokenServer]]:
    """A registry that accepts only bearer tokens from a token server on loopback."""
    cert = tempfile.mkstemp(prefix="lreg-token-", suffix=".pem", dir="/tmp")[1]
    tokens = start_token_server(cert)
    r = make_registry(f"auth:\n  token:\n    realm: {tokens.realm}\n    service: {SERVICE}\n"
                      f"    issuer: {ISSUER}\n    rootcertbundle: {cert}\n")
    yield r, tokens
    drop_registry(r)
    assert tokens.server is not None
    tokens.server.shutdown()
    tokens.server.server_close()
    os.unlink(cert)
