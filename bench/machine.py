"""The machine and software versions a run was taken on, for the report's header."""

from __future__ import annotations

import os
import platform
import subprocess


def _first(path: str, key: str) -> str:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    return out.splitlines()[0].strip() if out else "unknown"


def _debian() -> str:
    try:
        with open("/etc/debian_version") as f:
            return f.read().strip()
    except OSError:
        return "not Debian"


def machine() -> dict[str, str]:
    mem_kib = _first("/proc/meminfo", "MemTotal").split()[0]
    return {
        "cpu": _first("/proc/cpuinfo", "model name"),
        "cores": str(os.cpu_count()),
        "memory": f"{int(mem_kib) / 1024 / 1024:.1f} GiB" if mem_kib.isdigit() else mem_kib,
        "kernel": platform.release(),
        "debian": _debian(),
        "load average at start": load_average(),
    }


def _git() -> str:
    """The work tree's commit, with ``+changes`` when it has uncommitted edits."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "no git"
    return f"git {head or 'unknown'}{' +changes' if dirty else ''}"


def versions() -> dict[str, str]:
    from lamina import __version__

    return {
        "lamina": f"{__version__} ({_git()})",
        "containerd": _version(["containerd", "--version"]),
        "ctr": _version(["ctr", "--version"]),
        "runc": _version(["runc", "--version"]),
        "python": platform.python_version(),
    }


def load_average() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])
