"""A config file written for containerd 1.6 starts laminad, and ``[cgroup] path`` is honoured.

The file carries what engines ship: sections of plugins laminad does not have
(a CRI-like one with nested tables), top-level keys it does not know, and
``[cgroup] path``, which laminad joins as containerd's server_linux.go
``apply`` does, in every v1 hierarchy or in the unified one.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Iterator

import pytest

from lamina.core import daemon_cgroup
from tests.conftest import Daemon

pytestmark = pytest.mark.timeout(120)

CONTAINERD_STYLE = """\
version = 2
oom_score = -999
plugin_dir = ""

[cgroup]
  path = "{cgroup}"

[debug]
  address = ""
  level = "debug"

[timeouts]
  "io.containerd.timeout.shim.cleanup" = "5s"

[plugins."io.containerd.grpc.v1.cri-like"]
  sandbox_image = "registry.k8s.io/pause:3.6"
  [plugins."io.containerd.grpc.v1.cri-like".containerd]
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri-like".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.internal.v1.opt"]
  path = "/opt/containerd"

[plugins."io.containerd.internal.v1.restart"]
  interval = "10s"
"""
IGNORED = ("oom_score", "plugin_dir", "debug.address", "timeouts",
           'plugins."io.containerd.grpc.v1.cri-like"', 'plugins."io.containerd.internal.v1.opt"')


def _cgroup_dirs(path: str) -> list[str]:
    return [mount + path for mount in daemon_cgroup.hierarchies()]


@pytest.fixture
def cgroup_path() -> Iterator[str]:
    """A cgroup path of the test's own; removed (in every hierarchy) once laminad has left it."""
    if os.geteuid() != 0:
        pytest.skip("joining a cgroup needs root")
    path = f"/lamina-test-{secrets.token_hex(4)}"
    yield path
    for directory in _cgroup_dirs(path):
        if os.path.isdir(directory):
            os.rmdir(directory)
    assert not any(os.path.exists(d) for d in _cgroup_dirs(path)), "cgroup left behind"


@pytest.mark.parametrize("spelling", ["absolute", "relative"])
def test_containerd_style_config_starts_with_one_warning_per_ignored_part(
        spelling: str, cgroup_path: str, fresh_daemon: Callable[..., Daemon]) -> None:
    """A relative path (containerd's TestDaemonCustomCgroup writes ``path = "<digits>"``) is under each v1 root."""
    if spelling == "relative" and daemon_cgroup.unified():
        pytest.skip("containerd takes a relative cgroup path on cgroup v1 only")
    d = fresh_daemon(start=False)
    config = f"{d.base}/containerd.toml"
    with open(config, "w") as f:
        f.write(CONTAINERD_STYLE.format(cgroup=cgroup_path if spelling == "absolute" else cgroup_path.lstrip("/")))
    d.extra_args += ["--config", config]
    d.start()
    assert d.process is not None
    with open(f"/proc/{d.process.pid}/cgroup") as f:
        memberships = [line.rstrip("\n").split(":", 2) for line in f]
    joined = [path for _, controllers, path in memberships if (controllers == "") == daemon_cgroup.unified()]
    assert joined and set(joined) == {cgroup_path}, memberships

    warnings = [json.loads(line) for line in d.log().splitlines()
                if line.startswith("{") and '"config ignored"' in line]
    assert sorted(w["key"] for w in warnings) == sorted(IGNORED)
    assert all(w["level"] == "warning" for w in warnings)
    assert d.stop() == 0
