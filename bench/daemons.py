"""Start laminad and Debian's containerd on their own short temp dirs, and stop them leaving nothing.

Both live under one ``/tmp/lb-*`` base (AF_UNIX paths are limited to 108
bytes).  containerd gets a version 2 config with its CRI plugin disabled, so
that it serves what laminad serves and stays quiet.  Stopping deletes the
bench namespace's tasks through the daemon first, then SIGTERMs it, then
kills any shim still carrying the daemon's address, unmounts what is left
under its dirs and removes them.
"""

from __future__ import annotations

import compileall
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

from bench import procs
from bench.ctr import Client, CommandFailed, ctr, tasks

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
LAMINA, CONTAINERD = "lamina", "containerd"

CONTAINERD_CONFIG = """version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{address}"

[ttrpc]
  address = "{address}.ttrpc"

[debug]
  level = "warn"

[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"
"""


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def byte_compile() -> None:
    """Byte-compile lamina as an install would.

    With PYTHONDONTWRITEBYTECODE in the environment an editable checkout is
    otherwise compiled from source by every laminad, zygote and shim start
    (~0.4 s of laminad's cold start).
    """
    compileall.compile_dir(REPO, quiet=2, rx=re.compile(r"/(tests|bench|scripts|\.[^/]*)(/|$)"))


class DaemonFailed(Exception):
    pass


@dataclass
class Daemon:
    """One running daemon: its process, its dirs, and the shims seen serving it."""

    name: str
    base: str
    process: subprocess.Popen[bytes]
    started: float
    shims: set[int] = field(default_factory=set)

    @property
    def address(self) -> str:
        return f"{self.base}/d.sock"

    @property
    def log_path(self) -> str:
        return f"{self.base}/daemon.log"

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def ctr(self) -> Client:
        return ctr(self.address)

    def log_tail(self, lines: int = 15) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""


def _argv(name: str, base: str) -> list[str]:
    root, state, address = f"{base}/root", f"{base}/state", f"{base}/d.sock"
    if name == LAMINA:
        return ["laminad", "--root", root, "--state", state, "--address", address, "--log-level", "warn"]
    config = f"{base}/config.toml"
    with open(config, "w") as f:
        f.write(CONTAINERD_CONFIG.format(root=root, state=state, address=address))
    return ["containerd", "--config", config]


def spawn(name: str, parent: str) -> Daemon:
    """Start a daemon in a new dir under ``parent``; returns at once (see ``wait_ready``)."""
    base = tempfile.mkdtemp(prefix=name[0], dir=parent)
    argv = _argv(name, base)
    with open(f"{base}/daemon.log", "wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    return Daemon(name=name, base=base, process=process, started=started)


def _socket_accepts(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
        except OSError:
            return False
    return True


def wait_ready(daemon: Daemon, timeout: float = START_TIMEOUT) -> float:
    """Seconds from spawn until ``ctr version`` answers.

    The socket is probed with a plain connect first: ``ctr`` dialling a
    missing socket backs off for up to seconds, which would measure gRPC's
    back-off rather than the daemon.
    """
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if daemon.process.poll() is not None:
            raise DaemonFailed(f"{daemon.name} exited {daemon.process.returncode}:\n{daemon.log_tail()}")
        if _socket_accepts(daemon.address):
            try:
                daemon.ctr.run("version", timeout=timeout)
                return time.perf_counter() - daemon.started
            except CommandFailed:
                pass
        time.sleep(0.005)
    raise DaemonFailed(f"{daemon.name} did not answer within {timeout:.0f}s:\n{daemon.log_tail()}")


def start(name: str, parent: str) -> Daemon:
    daemon = spawn(name, parent)
    try:
        wait_ready(daemon)
    except BaseException:
        stop(daemon)
        raise
    return daemon


def note_shims(daemon: Daemon) -> dict[str, int]:
    """Map each running task of the bench namespace to its shim's PID, remembering the shims for clean-up."""
    found = {}
    for cid, (pid, _status) in tasks(daemon.ctr).items():
        try:
            found[cid] = procs.ppid(pid)
        except (OSError, KeyError, ValueError):
            continue
    daemon.shims.update(found.values())
    return found


def delete_all_containers(daemon: Daemon) -> None:
    """Best effort: force-delete every task and container of the bench namespace."""
    client = daemon.ctr
    try:
        ids = list(tasks(client))
        if ids:
            client.try_run("tasks", "delete", "--force", *ids)
        cids = client.run("containers", "ls", "-q").split()
        if cids:
            client.try_run("containers", "delete", *cids)
    except CommandFailed:
        pass


def stop(daemon: Daemon, remove: bool = True) -> list[str]:
    """Stop the daemon and everything it started; return a note per leftover that had to be forced."""
    notes: list[str] = []
    if daemon.process.poll() is None:
        delete_all_containers(daemon)
        daemon.process.send_signal(signal.SIGTERM)
        try:
            daemon.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            notes.append(f"{daemon.name}: did not exit {STOP_TIMEOUT:.0f}s after SIGTERM, killed")
            daemon.process.kill()
            daemon.process.wait()
    leftovers = {p for p in daemon.shims if os.path.exists(f"/proc/{p}")}
    leftovers |= set(procs.pids_mentioning(daemon.address, exclude=[daemon.pid]))
    if leftovers:
        what = "; ".join(f"{pid}: {' '.join(procs.cmdline(pid))[:150]}" for pid in sorted(leftovers)[:3])
        killed = procs.kill_trees(sorted(leftovers))
        procs.wait_gone(killed)
        notes.append(f"{daemon.name}: killed {len(leftovers)} leftover shim(s) and their processes ({what})")
    unmounted = procs.unmount_below(daemon.base)
    if unmounted:
        notes.append(f"{daemon.name}: unmounted {len(unmounted)} leftover mount(s)")
    if remove:
        shutil.rmtree(daemon.base, ignore_errors=True)
    return notes
