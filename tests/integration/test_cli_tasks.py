"""``lamina tasks``: the detached-container life cycle of ``ctr task``, plus start, attach and exec."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import Daemon, Runner
from tests.integration.test_cli_run import fifos_of, image
from tests.integration.test_runtime_support import needs_runc
from tests.waiting import eventually

pytestmark = [needs_runc, pytest.mark.timeout(180)]
__all__ = ["image"]


def _rows(lamina: Runner) -> dict[str, list[str]]:
    return {row[0]: row[1:] for row in (line.split() for line in lamina("tasks", "ls").stdout.splitlines()[1:])}


def test_detached_task_life_cycle(lamina: Runner, image: str) -> None:
    lamina("run", "-d", image, "t3", "sleep", "1000")
    try:
        pid, status = _rows(lamina)["t3"]
        assert status == "RUNNING" and int(pid) > 0
        [listed] = json.loads(lamina("tasks", "ls", "--format", "json").stdout)
        assert listed["status"] == "RUNNING" and listed["pid"] == int(pid)
        assert listed["id"] == "t3" and "container_id" not in listed  # Tasks.List leaves it empty
        ps = lamina("tasks", "exec", "--exec-id", "e1", "t3", "ps").stdout
        assert "sleep 1000" in ps and "ps" in ps
        assert pid in lamina("tasks", "ps", "t3").stdout
        lamina("tasks", "pause", "t3")
        assert _rows(lamina)["t3"][1] == "PAUSED"
        lamina("tasks", "resume", "t3")
        assert _rows(lamina)["t3"][1] == "RUNNING"
        metrics = lamina("tasks", "metrics", "t3").stdout
        assert "pids.current" in metrics and "METRIC" in metrics
        assert json.loads(lamina("tasks", "metrics", "--format", "json", "t3").stdout)[0]["id"] == "t3"
        refused = lamina("tasks", "rm", "t3", check=False)
        assert refused.returncode == 1 and "must be stopped" in refused.stderr
        refused = lamina("containers", "rm", "t3", check=False)
        assert "cannot delete a non stopped container" in refused.stderr
        lamina("tasks", "kill", "-s", "SIGKILL", "t3")
        assert lamina("tasks", "wait", "t3").stdout == "137\n"
        assert _rows(lamina)["t3"][1] == "STOPPED"
        removed = lamina("tasks", "rm", "t3")
        assert "non-zero exit code 137" in removed.stderr
        assert "t3" not in _rows(lamina)
        lamina("containers", "rm", "t3")
    finally:
        lamina("tasks", "rm", "-f", "t3", check=False)
        lamina("containers", "rm", "t3", check=False)
    assert fifos_of("t3", "e1") == []


def test_exec_exit_status_and_duplicate_id(lamina: Runner, image: str) -> None:
    lamina("run", "-d", image, "x1", "sleep", "1000")
    try:
        assert lamina("tasks", "exec", "--exec-id", "e2", "x1", "sh", "-c", "exit 5", check=False).returncode == 5
        assert lamina("tasks", "exec", "--exec-id", "e3", "--cwd", "/etc", "--env", "A=1", "x1",
                      "sh", "-c", "echo $A $(pwd)").stdout == "1 /etc\n"
        lamina("tasks", "exec", "-d", "--exec-id", "long", "x1", "sleep", "1000")
        dup = lamina("tasks", "exec", "--exec-id", "long", "x1", "true", check=False)
        assert dup.returncode == 1 and "already exists" in dup.stderr
    finally:
        lamina("tasks", "rm", "-f", "x1")
        lamina("containers", "rm", "x1")
    assert fifos_of("x1", "e2", "e3", "long") == []


def test_create_start_and_attach(lamina: Runner, image: str, daemon: Daemon, ns: str) -> None:
    lamina("containers", "create", image, "s1", "sh", "-c", "echo started; exit 2")
    assert lamina("tasks", "start", "s1", check=False).returncode == 2
    lamina("containers", "rm", "s1")

    lamina("containers", "create", image, "a1", "sh", "-c", "read line; echo got $line; exit 6")
    lamina("tasks", "start", "-d", "a1")
    attached = subprocess.run(["lamina", "-a", daemon.address, "-n", ns, "tasks", "attach", "a1"],
                              input="hello\n", capture_output=True, text=True, timeout=60)
    assert attached.returncode == 6 and attached.stdout == "got hello\n"
    eventually(lambda: "a1" not in _rows(lamina), what="attach to delete the task")
    lamina("containers", "rm", "a1")
    assert fifos_of("s1", "a1") == []


def test_missing_task_errors(lamina: Runner, image: str) -> None:
    for args in (["kill", "nope"], ["pause", "nope"], ["metrics", "nope"], ["rm", "nope"]):
        failed = lamina("tasks", *args, check=False)
        assert failed.returncode == 1 and "not found" in failed.stderr, args
