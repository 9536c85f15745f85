"""Issue 2's acceptance, driven by the real containerd client ``ctr``."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time

from tests.conftest import CTR, Daemon, Runner, wait_until_live
from tests.waiting import readline


def test_version_shows_lamina(ctr: Runner) -> None:
    out = ctr("version").stdout
    server = out.split("Server:")[1]
    assert "Revision: lamina" in server
    assert "UUID:" in server


def test_namespaces_create_label_rm(ctr: Runner, ns: str) -> None:
    ctr("namespaces", "create", ns, "a=b")
    assert [ns, "a=b"] in [line.split() for line in ctr("namespaces", "ls").stdout.splitlines()]
    ctr("namespaces", "label", ns, "a=c")
    assert [ns, "a=c"] in [line.split() for line in ctr("namespaces", "ls").stdout.splitlines()]
    ctr("namespaces", "label", ns, "a=")
    assert [ns] in [line.split() for line in ctr("namespaces", "ls").stdout.splitlines()]
    ctr("namespaces", "rm", ns)
    assert ns not in ctr("namespaces", "ls", "-q").stdout.split()


def test_namespace_create_twice_is_already_exists(ctr: Runner, ns: str) -> None:
    ctr("namespaces", "create", ns)
    again = ctr("namespaces", "create", ns, check=False)
    assert again.returncode != 0
    assert f"namespace '{ns}': already exists" in again.stderr
    ctr("namespaces", "rm", ns)


def test_invalid_namespace_is_invalid_argument(ctr: Runner) -> None:
    result = ctr("namespaces", "ls", namespace="bad/ns", check=False)
    assert result.returncode != 0
    assert "'bad/ns'" in result.stderr and "invalid argument" in result.stderr


def test_invalid_namespace_name_on_create(ctr: Runner) -> None:
    result = ctr("namespaces", "create", "Bad_Name!", check=False)
    assert result.returncode != 0
    assert "'Bad_Name!'" in result.stderr and "invalid argument" in result.stderr


def test_oversized_label_is_refused(ctr: Runner, ns: str) -> None:
    result = ctr("namespaces", "create", ns, "k=" + "v" * 5000, check=False)
    assert result.returncode != 0
    assert "greater than maximum size (4096 bytes)" in result.stderr
    assert ns not in ctr("namespaces", "ls", "-q").stdout.split()


def test_plugins_ls_lists_every_plugin_with_status(ctr: Runner) -> None:
    rows = [line.split() for line in ctr("plugins", "ls").stdout.splitlines()[1:]]
    found = {(r[0], r[1]): r[-1] for r in rows}
    for plugin in ("version", "namespaces", "introspection", "events", "healthcheck"):
        assert found[("io.containerd.grpc.v1", plugin)] == "ok"
    assert found[("io.containerd.metadata.v1", "lmdb")] == "ok"


def test_plugins_ls_filters(ctr: Runner) -> None:
    rows = ctr("plugins", "ls", "type==io.containerd.metadata.v1").stdout.splitlines()[1:]
    assert [r.split()[1] for r in rows] == ["lmdb"]
    bad = ctr("plugins", "ls", "type==", "id~=[", check=False)
    assert bad.returncode != 0 and "invalid argument" in bad.stderr


def test_events_show_namespace_create(daemon: Daemon, ctr: Runner, ns: str) -> None:
    pokes = itertools.count()
    with subprocess.Popen([CTR, "-a", daemon.address, "events", 'topic=="/namespaces/create"'],
                          stdout=subprocess.PIPE, text=True) as events:
        try:
            # every poke a new namespace: only a create publishes, and the first may come too early
            wait_until_live(events, lambda: ctr("namespaces", "create", f"{ns}-probe-{next(pokes)}"))
            ctr("namespaces", "create", ns, "x=y")
            assert events.stdout is not None
            while True:  # probes published after the subscription went live come first
                line = readline(events.stdout, what="the /namespaces/create event")
                _, _, rest = line.partition(" UTC ")
                namespace, topic, payload = rest.split(" ", 2)
                if namespace == ns:
                    break
        finally:
            events.send_signal(signal.SIGINT)
            ctr("namespaces", "rm", *(f"{ns}-probe-{i}" for i in range(next(pokes))))
    assert topic == "/namespaces/create"
    assert json.loads(payload) == {"name": ns, "labels": {"x": "y"}}
    ctr("namespaces", "rm", ns)


def test_sigterm_exits_zero_and_restart_keeps_state(fresh_daemon) -> None:  # type: ignore[no-untyped-def]
    d = fresh_daemon()
    run = Runner([CTR], d.address, "default")
    run("namespaces", "create", "kept", "a=b")
    uuid = run("version").stdout.split("UUID:")[1].split()[0]
    started = time.monotonic()
    assert d.stop() == 0
    assert time.monotonic() - started < 2
    assert not os.path.exists(d.address)
    d.start()
    assert [["kept", "a=b"]] == [line.split() for line in run("namespaces", "ls").stdout.splitlines()
                                 if line.startswith("kept")]
    assert run("version").stdout.split("UUID:")[1].split()[0] == uuid


def test_namespace_with_content_cannot_be_deleted_while_empty_one_can(ctr: Runner, ns: str) -> None:
    ctr("namespaces", "create", ns)
    ctr("namespaces", "rm", ns)
    missing = ctr("namespaces", "rm", ns, check=False)
    # ctr treats NOT_FOUND on delete as success, as against containerd
    assert missing.returncode == 0
