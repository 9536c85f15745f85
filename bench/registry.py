"""A loopback ``docker-registry`` (Debian's distribution 2.x) on a free 127.0.0.1 port.

Its config and log live in a temp dir; its blob store may be a cache dir
that outlives the run, so a pushed image need not be pushed again.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass

CONFIG = """version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
"""


@dataclass
class Registry:
    base: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(parent: str, store: str, timeout: float = 20.0) -> Registry:
    base = tempfile.mkdtemp(prefix="r", dir=parent)
    port = _free_port()
    config = os.path.join(base, "config.yml")
    with open(config, "w") as f:
        f.write(CONFIG.format(root=store, port=port))
    with open(os.path.join(base, "registry.log"), "wb") as log:
        process = subprocess.Popen(["docker-registry", "serve", config], stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=log, start_new_session=True)
    registry = Registry(base=base, port=port, process=process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"http://{registry.host}/v2/", timeout=2) as reply:
                if reply.status == 200:
                    return registry
        except OSError:
            time.sleep(0.1)
    with open(os.path.join(base, "registry.log"), errors="replace") as f:
        tail = f.read()[-2000:]
    stop(registry)
    raise RuntimeError(f"docker-registry did not come up on {registry.host}: {tail}")


def has_manifest(registry: Registry, repository: str, tag: str) -> bool:
    request = urllib.request.Request(f"http://{registry.host}/v2/{repository}/manifests/{tag}", method="HEAD",
                                     headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status == 200
    except OSError:
        return False


def stop(registry: Registry) -> None:
    if registry.process.poll() is None:
        registry.process.terminate()
        try:
            registry.process.wait(10)
        except subprocess.TimeoutExpired:
            registry.process.kill()
            registry.process.wait()
    shutil.rmtree(registry.base, ignore_errors=True)
