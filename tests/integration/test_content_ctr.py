"""Issue 3's content acceptance, driven by the real ``ctr`` against laminad.

The module runs its own daemon: blobs without an image, lease or
``containerd.io/gc.root`` are collectable (as in containerd), so GC runs
triggered by other modules' deletions must not race these tests.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
from collections.abc import Callable

import grpc
import pytest

from lamina.api.services import content_pb2, content_pb2_grpc
from tests.conftest import CTR, Daemon, Runner, collect_garbage, own_daemon
from tests.waiting import eventually

MiB = 1 << 20


daemon = pytest.fixture(scope="module", name="daemon")(own_daemon)


def _random_file(path: str, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(size // MiB):
            chunk = os.urandom(MiB)
            h.update(chunk)
            f.write(chunk)
    return f"sha256:{h.hexdigest()}"


def _ingest(ctr: Runner, ref: str, path: str, *args: str, check: bool = True,
            timeout: str = "0s") -> subprocess.CompletedProcess[str]:
    argv = [CTR, "--address", ctr.address, "--namespace", ctr.namespace, "--timeout", timeout,
            "content", "ingest", *args, ref]
    with open(path, "rb") as f:
        result = subprocess.run(argv, stdin=f, capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def _get_sha256(ctr: Runner, dgst: str) -> str:
    argv = [CTR, "--address", ctr.address, "--namespace", ctr.namespace, "content", "get", dgst]
    h = hashlib.sha256()
    with subprocess.Popen(argv, stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        while chunk := proc.stdout.read(MiB):
            h.update(chunk)
    assert proc.returncode == 0
    return f"sha256:{h.hexdigest()}"


def _active(ctr: Runner) -> dict[str, str]:
    rows = [line.split() for line in ctr("content", "active").stdout.splitlines()[1:]]
    return {row[0]: row[1] for row in rows if row}


def _feed_then_kill(argv: list[str], data_path: str, upto: int, ctr: Runner, ref: str) -> None:
    """Start an ingest fed from a pipe, send ``upto`` bytes, wait until they landed, kill the client."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None
    with open(data_path, "rb") as f:
        proc.stdin.write(f.read(upto))
        proc.stdin.flush()
    eventually(lambda: ref in _active(ctr) and _active(ctr)[ref] not in ("0B", "0"), what="ingest to show progress")
    proc.kill()
    proc.wait(10)
    proc.stdin.close()


def test_ingest_256mb_get_identical_ls_and_label(ctr: Runner, tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "big")
    dgst = _random_file(path, 256 * MiB)
    _ingest(ctr, "big", path, "--expected-size", str(256 * MiB))
    ctr("content", "label", dgst, "containerd.io/gc.root=test", "a=b")
    assert _get_sha256(ctr, dgst) == dgst
    rows = {r.split()[0]: r.split() for r in ctr("content", "ls").stdout.splitlines()[1:]}
    assert rows[dgst][1] == "268.4MB"
    assert "a=b" in rows[dgst][-1]
    ctr("content", "label", dgst, "a=")
    rows = {r.split()[0]: r.split() for r in ctr("content", "ls").stdout.splitlines()[1:]}
    assert rows[dgst][-1] == "containerd.io/gc.root=test"
    assert _active(ctr) == {}


def test_killed_client_ingest_resumes_at_its_offset(ctr: Runner, tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "data")
    dgst = _random_file(path, 32 * MiB)
    argv = [CTR, "--address", ctr.address, "--namespace", ctr.namespace, "content", "ingest", "resume-me"]
    _feed_then_kill(argv, path, 12 * MiB, ctr, "resume-me")
    eventually(lambda: _active(ctr).get("resume-me") == "12.58MB", what="the offset to settle at 12 MiB")
    # A regular file on stdin is seekable, so ctr continues from the offset.
    _ingest(ctr, "resume-me", path)
    assert dgst in ctr("content", "ls", "-q").stdout.split()
    assert _get_sha256(ctr, dgst) == dgst
    assert "resume-me" not in _active(ctr)


def test_wrong_expected_digest_fails_and_leaves_no_blob(ctr: Runner, tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "data")
    dgst = _random_file(path, 1 * MiB)
    wrong = "sha256:" + "0" * 64
    result = _ingest(ctr, "wrong", path, "--expected-digest", wrong, check=False)
    assert result.returncode != 0
    assert "failed precondition" in result.stderr and wrong in result.stderr
    assert dgst not in ctr("content", "ls", "-q").stdout.split()
    assert "wrong" in _active(ctr)  # the ingest stays for a retry or an abort


def test_second_writer_on_a_ref_is_refused_as_locked(ctr: Runner, tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "data")
    _random_file(path, 2 * MiB)
    argv = [CTR, "--address", ctr.address, "--namespace", ctr.namespace, "content", "ingest", "busy"]
    first = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert first.stdin is not None
    try:
        first.stdin.write(b"x" * MiB)
        first.stdin.flush()
        eventually(lambda: "busy" in _active(ctr), what="the first ingest")
        # ctr retries a locked ref until its context ends, so it may report the
        # deadline rather than the lock; the daemon's own answer is UNAVAILABLE.
        second = _ingest(ctr, "busy", path, check=False, timeout="3s")
        assert second.returncode != 0
        with grpc.insecure_channel(f"unix:{ctr.address}") as channel:
            stream = content_pb2_grpc.ContentStub(channel).Write(
                iter([content_pb2.WriteContentRequest(ref="busy")]),
                metadata=(("containerd-namespace", ctr.namespace),))
            with pytest.raises(grpc.RpcError) as refused:
                list(stream)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "/busy locked" in refused.value.details()
    finally:
        first.kill()
        first.wait(10)
        first.stdin.close()


def test_blob_in_namespace_a_is_not_visible_in_b(ctr: Runner, tmp_path: os.PathLike[str], ns: str) -> None:
    path = os.path.join(tmp_path, "data")
    dgst = _random_file(path, 1 * MiB)
    _ingest(ctr, "iso", path)
    assert dgst in ctr("content", "ls", "-q").stdout.split()
    other = f"{ns}-b"
    assert dgst not in ctr("content", "ls", "-q", namespace=other).stdout.split()
    missing = ctr("content", "get", dgst, namespace=other, check=False)
    assert missing.returncode != 0 and "not found" in missing.stderr
    # Deleting in a second namespace that committed it too leaves the first one's view
    # (rooted, since the deletion triggers a collection).
    ctr("content", "label", dgst, "containerd.io/gc.root=x")
    ctr_b = Runner(ctr.argv0, ctr.address, other)
    _ingest(ctr_b, "iso", path)
    ctr_b("content", "rm", dgst)
    collect_garbage(ctr)
    assert dgst in ctr("content", "ls", "-q").stdout.split()
    assert _get_sha256(ctr, dgst) == dgst


def test_daemon_killed_during_ingest_resumes_after_restart(
    fresh_daemon: Callable[..., Daemon], tmp_path: os.PathLike[str]
) -> None:
    d = fresh_daemon()
    ctr = Runner([CTR], d.address, "crash")
    path = os.path.join(tmp_path, "data")
    dgst = _random_file(path, 16 * MiB)
    argv = [CTR, "--address", d.address, "--namespace", "crash", "content", "ingest", "crashy"]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None
    with open(path, "rb") as f:
        proc.stdin.write(f.read(6 * MiB))
        proc.stdin.flush()
    eventually(lambda: _active(ctr).get("crashy") == "6.291MB", what="6 MiB to land")
    d.stop(signal.SIGKILL)
    proc.kill()
    proc.wait(10)
    proc.stdin.close()
    d.start()
    # What reached the file survives (the writer's last buffer may not have).
    assert _active(ctr).get("crashy") in ("5.243MB", "6.291MB")
    _ingest(ctr, "crashy", path)
    assert _get_sha256(ctr, dgst) == dgst
