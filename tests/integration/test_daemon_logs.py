"""What a real laminad's JSON log says about failed requests: one line each, no frame locals.

Every failed call logs one error line with ``rpc``, ``namespace``, ``code``
and ``message``.  Only a failure nobody foresaw (UNKNOWN from a plain
exception) carries a traceback, and that traceback names files, lines and
functions, never a frame's local variables (request specs, env values).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Daemon, Runner, own_daemon
from tests.integration.test_import_ctr import INDEX_NAME, add_file, archive, raw_layer, write
from tests.integration.test_runtime_support import needs_runc
from tests.waiting import eventually

pytestmark = pytest.mark.timeout(120)

daemon = pytest.fixture(scope="module", name="daemon")(own_daemon)
FAILURE_KEYS = {"event", "level", "timestamp", "rpc", "namespace", "code", "message"}
FRAME_KEYS = {"filename", "lineno", "name"}
SECRET = "hunter2-lamina-log-test"


def _lines(d: Daemon) -> list[dict[str, Any]]:
    with open(d.log_path, errors="replace") as f:
        return [json.loads(line) for line in f if line.startswith("{")]


def _failures(d: Daemon, rpc: str, namespace: str) -> list[dict[str, Any]]:
    return [line for line in _lines(d)
            if line.get("event") == "request failed" and line.get("rpc") == rpc and line.get("namespace") == namespace]


def _one_failure(d: Daemon, rpc: str, namespace: str) -> dict[str, Any]:
    [line] = eventually(lambda: _failures(d, rpc, namespace), what=f"the failure of {rpc} in the log")
    assert set(line) - {"exception"} == FAILURE_KEYS, line
    assert line["level"] == "error"
    return line


@pytest.fixture(autouse=True)
def no_locals_anywhere(daemon: Daemon) -> Iterator[None]:
    yield
    text = open(daemon.log_path, errors="replace").read()
    assert '"locals"' not in text and SECRET not in text


def test_an_expected_failure_is_one_line_without_a_traceback(ctr: Runner, daemon: Daemon, ns: str) -> None:
    ctr("containers", "info", "no-such-container", check=False)
    line = _one_failure(daemon, "/containerd.services.containers.v1.Containers/Get", ns)
    assert (line["code"], line["message"]) == ("NotFound", 'container "no-such-container": not found')
    assert "exception" not in line


def test_a_layer_entry_name_too_long_is_invalid_argument(ctr: Runner, daemon: Daemon, ns: str,
                                                          tmp_path: object) -> None:
    layer = raw_layer(lambda tar: add_file(tar, "d/" + "n" * 300, b"x"))
    result = ctr("images", "import", "--index-name", INDEX_NAME, write(tmp_path, archive([layer])), check=False)
    assert result.returncode != 0 and "file name too long" in result.stderr
    line = _one_failure(daemon, "/containerd.services.diff.v1.Diff/Apply", ns)
    assert line["code"] == "InvalidArgument"
    assert line["message"] == f"layer entry {'d/' + 'n' * 300!r}: file name too long: invalid argument"
    assert "exception" not in line


def test_an_unforeseen_failure_has_frames_but_no_locals(ctr: Runner, daemon: Daemon, ns: str) -> None:
    # A key past LMDB's 511-byte limit fails inside the metadata store with
    # lmdb's own exception: nothing maps it (containerd takes such keys).
    ctr("snapshots", "prepare", "k" * 600, check=False)
    line = _one_failure(daemon, "/containerd.services.snapshots.v1.Snapshots/Prepare", ns)
    assert line["code"] == "Unknown"
    [exception] = line["exception"]
    assert exception["frames"] and all(set(frame) == FRAME_KEYS for frame in exception["frames"])


@needs_runc
def test_a_command_that_does_not_exist_is_a_runc_error_without_a_traceback(
        ctr: Runner, daemon: Daemon, ns: str, busybox_archive: str) -> None:
    ctr("images", "import", busybox_archive)
    id_ = "logs-no-such-command"
    result = ctr("run", "--rm", "--env", f"TOKEN={SECRET}", "docker.io/library/busybox:latest", id_,
                 "/no/such/command", check=False)
    assert result.returncode != 0 and "/no/such/command" in result.stderr
    failed = eventually(lambda: [line for line in _lines(daemon)
                                 if line.get("event") == "request failed" and line.get("namespace") == ns
                                 and "/no/such/command" in line.get("message", "")],
                        what="the runc failure in the log")
    assert all("exception" not in line for line in failed), failed
    assert not any("Traceback" in json.dumps(line) for line in _lines(daemon))
    subprocess.run([*ctr.argv0, "-a", daemon.address, "-n", ns, "containers", "rm", id_], capture_output=True)
