"""The ``lamina`` CLI against a real laminad: issue 2 item 9 and issue 6 item 4.

Every test runs the installed console script, as a user would.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading

import click
import pytest

from lamina.cli.main import cli
from tests.conftest import Daemon, Runner


def _rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines()]


def test_version_shows_client_and_server(lamina: Runner) -> None:
    out = lamina("version").stdout
    server = out.split("Server:")[1]
    assert "Revision: lamina" in server and "UUID:" in server
    assert "Client:" in out


def test_namespaces_create_ls_label_rm(lamina: Runner, ns: str) -> None:
    lamina("namespaces", "create", ns, "a=b", "flag")
    rows = _rows(lamina("namespaces", "ls").stdout)
    assert rows[0] == ["NAME", "LABELS"]
    assert [ns, "a=b,flag=true"] in rows
    lamina("namespaces", "label", ns, "a=c", "flag=")
    assert [ns, "a=c"] in _rows(lamina("ns", "ls").stdout)
    listed = json.loads(lamina("namespaces", "ls", "--format", "json").stdout)
    assert {"name": ns, "labels": {"a": "c"}} in listed
    assert all(set(entry) == {"name", "labels"} for entry in listed)
    assert ns in lamina("namespaces", "ls", "-q").stdout.split()
    assert lamina("namespaces", "rm", ns).stdout.split() == [ns]
    assert ns not in lamina("namespaces", "ls", "-q").stdout.split()


def test_namespace_create_twice_is_one_line_error(lamina: Runner, ns: str) -> None:
    lamina("namespaces", "create", ns)
    again = lamina("namespaces", "create", ns, check=False)
    assert again.returncode == 1
    assert again.stderr == f"lamina: namespace '{ns}': already exists\n"
    lamina("namespaces", "rm", ns)


def test_rm_of_missing_namespace_only_warns_as_ctr_does(lamina: Runner, ns: str) -> None:
    result = lamina("namespaces", "rm", ns, check=False)
    assert result.returncode == 0
    assert result.stderr == f"lamina: warning: namespace '{ns}': not found\n"


def test_plugins_ls(lamina: Runner) -> None:
    rows = _rows(lamina("plugins", "ls").stdout)
    assert rows[0] == ["TYPE", "ID", "PLATFORMS", "STATUS"]
    status = {(r[0], r[1]): r[-1] for r in rows[1:]}
    for plugin in ("version", "namespaces", "introspection", "events"):
        assert status[("io.containerd.grpc.v1", plugin)] == "ok"
    assert lamina("plugins", "ls", "-q", "type==io.containerd.metadata.v1").stdout.split() == [
        "io.containerd.metadata.v1.lmdb"
    ]
    listed = json.loads(lamina("plugins", "ls", "--format", "json", "id==lmdb").stdout)
    assert [(p["type"], p["id"], p["status"], p["error"]) for p in listed] == [
        ("io.containerd.metadata.v1", "lmdb", "ok", "")
    ]
    assert set(listed[0]) == {"type", "id", "requires", "platforms", "exports", "capabilities", "status", "error"}
    assert "Type:          io.containerd.metadata.v1" in lamina("plugins", "ls", "-d", "id==lmdb").stdout


def test_plugins_bad_filter_is_invalid_argument(lamina: Runner) -> None:
    bad = lamina("plugins", "ls", "id~=[", check=False)
    assert bad.returncode == 1
    assert bad.stderr.startswith("lamina: ") and bad.stderr.count("\n") == 1
    assert "invalid argument" in bad.stderr


@pytest.mark.timeout(30)
def test_events_shows_namespace_create(daemon: Daemon, lamina: Runner, ns: str) -> None:
    argv = ["lamina", "-a", daemon.address, "events", 'topic=="/namespaces/create"']
    lines: queue.Queue[str] = queue.Queue()
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as events:
        threading.Thread(target=lambda: [lines.put(x) for x in events.stdout], daemon=True).start()  # type: ignore[union-attr]
        try:
            # Subscribing takes a moment: create namespaces until one shows.
            for attempt in range(5):
                assert events.poll() is None, "lamina events exited"
                lamina("namespaces", "create", f"{ns}-{attempt}", "x=y")
                try:
                    line = lines.get(timeout=1)
                    break
                except queue.Empty:
                    continue
            else:
                pytest.fail("no event shown")
        finally:
            events.terminate()
    _, _, rest = line.partition(" UTC ")
    namespace, topic, payload = rest.rstrip("\n").split(" ", 2)
    assert (namespace, topic) == (ns, "/namespaces/create")
    assert json.loads(payload)["labels"] == {"x": "y"}
    lamina("namespaces", "rm", *(f"{ns}-{i}" for i in range(attempt + 1)))


def _bare(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``lamina`` without the runner's --address/--namespace, with ``env`` added."""
    return subprocess.run(["lamina", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})


def test_env_vars_are_honoured(daemon: Daemon) -> None:
    assert "Revision: lamina" in _bare("version", env={"LAMINA_ADDRESS": daemon.address}).stdout
    bad = _bare("plugins", "ls", env={"LAMINA_ADDRESS": daemon.address, "LAMINA_NAMESPACE": "bad/ns"})
    assert bad.returncode == 1 and "'bad/ns'" in bad.stderr
    # a flag wins over the environment
    good = _bare("-n", "default", "plugins", "ls", env={"LAMINA_ADDRESS": daemon.address,
                                                       "LAMINA_NAMESPACE": "bad/ns"})
    assert good.returncode == 0


def test_bad_namespace_is_one_line_without_traceback(lamina: Runner) -> None:
    result = lamina("namespaces", "ls", namespace="bad/ns", check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("lamina: ") and result.stderr.count("\n") == 1
    assert "'bad/ns'" in result.stderr and "invalid argument" in result.stderr
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(lamina: Runner) -> None:
    result = lamina("--debug", "plugins", "ls", namespace="bad/ns", check=False)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("lamina: ")


def test_unreachable_daemon_is_one_clear_line(daemon: Daemon) -> None:
    result = _bare("-a", f"{daemon.base}/nope.sock", "version", env={})
    assert result.returncode == 1
    assert result.stderr == f"lamina: cannot connect to laminad at {daemon.base}/nope.sock: No such file or directory\n"


def test_completion_script() -> None:
    result = subprocess.run(["lamina", "completion", "bash"], capture_output=True, text=True, timeout=30)
    assert "_LAMINA_COMPLETE=bash_complete" in result.stdout


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    found: list[tuple[tuple[str, ...], click.Command]] = []
    for name, command in group.commands.items():
        found.append(((*path, name), command))
        if isinstance(command, click.Group):
            found.extend(_commands(command, (*path, name)))
    return found


def test_every_command_explains_itself_with_an_example() -> None:
    for path, command in _commands(cli):
        assert command.help, f"lamina {' '.join(path)} has no help"
        if not isinstance(command, click.Group):
            assert command.epilog and "lamina " in command.epilog, f"lamina {' '.join(path)} has no example"
