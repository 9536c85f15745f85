"""The one client both daemons are driven with: Debian's ``ctr`` (and ``lamina`` where it has the command)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bench.stats import error_reason

CTR = "/usr/bin/ctr"
NAMESPACE = "bench"
DEFAULT_TIMEOUT = 600.0


class CommandFailed(Exception):
    """A client command exited non-zero; ``str()`` is the short reason shown as ``n/a: ...``."""

    def __init__(self, argv: list[str], returncode: int, stderr: str) -> None:
        self.argv, self.returncode, self.stderr = argv, returncode, stderr
        super().__init__(f"{' '.join(argv[5:7])}: {error_reason(stderr)}")


@dataclass(frozen=True, slots=True)
class Client:
    """A command-line client bound to one daemon address and the bench namespace."""

    program: str
    address: str
    namespace: str = NAMESPACE

    def argv(self, *args: str) -> list[str]:
        return [self.program, "--address", self.address, "--namespace", self.namespace, *args]

    def run(self, *args: str, stdin_paths: Sequence[str] = (), timeout: float = DEFAULT_TIMEOUT) -> str:
        """Run to completion; ``stdin_paths`` are concatenated onto stdin by ``cat`` (a pipe, as a shell would)."""
        argv = self.argv(*args)
        cat = subprocess.Popen(["cat", *stdin_paths], stdout=subprocess.PIPE) if stdin_paths else None
        try:
            done = subprocess.run(argv, stdin=cat.stdout if cat else subprocess.DEVNULL, capture_output=True,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise CommandFailed(argv, -1, f"timed out after {timeout:.0f}s") from exc
        finally:
            if cat:
                cat.stdout.close()  # type: ignore[union-attr]
                cat.kill()
                cat.wait()
        if done.returncode != 0:
            raise CommandFailed(argv, done.returncode, done.stderr or done.stdout)
        return done.stdout

    def timed(self, *args: str, stdin_paths: Sequence[str] = (), timeout: float = DEFAULT_TIMEOUT) -> float:
        """Wall seconds of one successful command, client start-up included (the same for both daemons)."""
        start = time.perf_counter()
        self.run(*args, stdin_paths=stdin_paths, timeout=timeout)
        return time.perf_counter() - start

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.argv(*args), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)

    def try_run(self, *args: str, timeout: float = 120.0) -> bool:
        """Best-effort clean-up: run, swallow failure, report success."""
        try:
            self.run(*args, timeout=timeout)
        except CommandFailed:
            return False
        return True


def tasks(client: Client) -> dict[str, tuple[int, str]]:
    """``ctr task ls`` as ``{container id: (pid, status)}``."""
    out: dict[str, tuple[int, str]] = {}
    for line in client.run("tasks", "ls").splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 3:
            out[fields[0]] = (int(fields[1]), fields[2])
    return out


def has_lamina_command(*words: str) -> bool:
    """Whether the ``lamina`` CLI has the subcommand yet (``--help`` succeeds)."""
    try:
        done = subprocess.run(["lamina", *words, "--help"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def ctr(address: str) -> Client:
    return Client(CTR, address)


def lamina_cli(address: str) -> Client:
    return Client("lamina", address)
