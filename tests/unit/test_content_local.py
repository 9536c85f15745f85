"""The local content store on a real temp dir (containerd's content/local behaviour)."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lamina.content.local import LocalStore
from lamina.core import timeutil
from lamina.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    Unavailable,
)
from tests.waiting import eventually

pytestmark = pytest.mark.timeout(60)

MiB = 1 << 20


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(str(tmp_path / "content"))


def put(store: LocalStore, data: bytes, ref: str = "r") -> str:
    with store.writer(ref, total=len(data)) as w:
        w.write(data, 0)
        return w.commit(len(data), sha256(data)).digest


def test_round_trip_and_read_at_offset(store: LocalStore) -> None:
    data = os.urandom(3 * MiB + 17)
    with store.writer("layer", total=len(data), expected=sha256(data)) as w:
        off = 0
        for i in range(0, len(data), 100_000):
            off = w.write(data[i : i + 100_000], off)
        assert w.status().offset == len(data) and w.status().total == len(data)
        assert w.digest() == sha256(data)
        info = w.commit(len(data), sha256(data))
    assert (
        info.digest == sha256(data)
        and info.size == len(data)
        and dict(info.labels) == {}
    )
    assert store.info(info.digest).size == len(data)
    blob = Path(store.root, "blobs", "sha256", info.digest.split(":")[1])
    assert blob.stat().st_mode & 0o222 == 0
    assert os.listdir(Path(store.root, "ingest")) == []
    with store.reader(info.digest) as r:
        assert r.size == len(data)
        assert r.read_at(MiB + 5, 10) == data[MiB + 5 : MiB + 15]
        assert b"".join(r.chunks()) == data
        assert b"".join(r.chunks(offset=len(data) - 100)) == data[-100:]
        assert b"".join(r.chunks(offset=10, size=2 * MiB)) == data[10 : 10 + 2 * MiB]
        assert b"".join(r.chunks(offset=len(data) - 5, size=50)) == data[-5:]
        assert list(r.chunks(offset=len(data))) == []
        assert all(len(c) <= MiB for c in r.chunks())
        with pytest.raises(OutOfRange, match="read past object length"):
            next(r.chunks(offset=len(data) + 1))
        r.seek(7)
        assert io.BufferedReader(r).read(5) == data[7:12]
    assert [i.digest for i in store.walk()] == [info.digest]


def test_reader_is_a_file_for_tarfile(store: LocalStore) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("hello")
        ti.size = 5
        tf.addfile(ti, io.BytesIO(b"world"))
    d = put(store, buf.getvalue())
    with store.reader(d) as r, tarfile.open(fileobj=io.BufferedReader(r)) as tf:
        member = tf.extractfile("hello")
        assert member is not None and member.read() == b"world"


def test_streams_64mib_without_holding_it(store: LocalStore) -> None:
    chunk = os.urandom(MiB)
    h = hashlib.sha256()
    tracemalloc.start()
    try:
        with store.writer("big") as w:
            for i in range(64):
                w.write(chunk, i * MiB)
                h.update(chunk)
            info = w.commit(64 * MiB, "sha256:" + h.hexdigest())
        rh = hashlib.sha256()
        with store.reader(info.digest) as r:
            for part in r.chunks():
                rh.update(part)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rh.hexdigest() == h.hexdigest() and info.size == 64 * MiB
    assert peak < 8 * MiB, f"peak {peak} bytes"


def test_wrong_size_or_digest_keeps_the_ingest(store: LocalStore) -> None:
    data = b"hello world"
    with store.writer("r") as w:
        w.write(data, 0)
        with pytest.raises(FailedPrecondition, match=r"size 11, expected 12"):
            w.commit(12, sha256(data))
    wrong = sha256(b"other")
    with store.writer("r") as w:
        assert w.status().offset == len(data)
        with pytest.raises(FailedPrecondition) as e:
            w.commit(len(data), wrong)
        assert sha256(data) in str(e.value) and wrong in str(e.value)
    assert [s.ref for s in store.list_statuses()] == ["r"]
    with store.writer("r") as w:
        assert w.commit(len(data), sha256(data)).digest == sha256(data)
    assert store.list_statuses() == []


def test_wrong_write_offset_and_restart_at_zero(store: LocalStore) -> None:
    with store.writer("r") as w:
        w.write(b"abc", 0)
        with pytest.raises(OutOfRange, match="write @5 must occur at current offset 3"):
            w.write(b"x", 5)
        assert w.write(b"xy", 0) == 2  # offset 0 restarts, as containerd's service does
        assert w.digest() == sha256(b"xy")
        w.truncate(0)
        assert w.status().offset == 0 and w.digest() == sha256(b"")


def test_second_writer_is_locked_until_close(store: LocalStore) -> None:
    w = store.writer("r")
    t0 = time.monotonic()
    with pytest.raises(Unavailable, match="ref r locked"):
        store.writer("r")
    assert time.monotonic() - t0 < 5
    with pytest.raises(Unavailable):
        LocalStore(store.root).writer("r")  # same root, same process
    other = store.writer("other")  # refs are independent
    other.close()
    w.close()
    store.writer("r").close()


def test_dropped_writer_releases_its_lock(store: LocalStore) -> None:
    w = store.writer("r")
    w.write(b"abc", 0)
    del w  # a forgotten stream must not wedge the ref
    with store.writer("r") as w2:
        assert w2.status().offset == 3


def test_resume_after_close(store: LocalStore) -> None:
    data = os.urandom(300_000)
    with store.writer("r", total=len(data)) as w:
        w.write(data[:100_000], 0)
        started = w.status().started_at
    st = store.status("r")
    assert (st.ref, st.offset, st.total, st.started_at) == (
        "r",
        100_000,
        len(data),
        started,
    )
    with store.writer("r") as w:
        assert w.status().offset == 100_000 and w.status().total == len(data)
        assert store.status("r").offset == 100_000  # live writer
        w.write(data[100_000:], 100_000)
        assert w.commit(len(data), sha256(data)).size == len(data)
    with pytest.raises(NotFound):
        store.status("r")


_CRASH = """
import os, sys
from lamina.content.local import LocalStore
w = LocalStore(sys.argv[1]).writer("crashy", total=int(sys.argv[2]))
w.write(sys.stdin.buffer.read(), 0)
w._file.flush()  # the bytes reach the kernel; then the process dies uncleanly
os._exit(9)
"""


def test_resume_after_crash(tmp_path: Path) -> None:
    root = str(tmp_path / "content")
    data = os.urandom(2 * MiB + 3)
    half = MiB + 1
    proc = subprocess.run(
        [sys.executable, "-c", _CRASH, root, str(len(data))],
        input=data[:half],
        check=False,
    )
    assert proc.returncode == 9
    store = LocalStore(root)  # the "restarted daemon"
    [st] = store.list_statuses()
    assert (st.ref, st.offset, st.total) == ("crashy", half, len(data))
    with store.writer("crashy") as w:
        assert w.digest() == sha256(data[:half])  # re-hashed from disk
        w.write(data[half:], half)
        assert w.commit(len(data), sha256(data)).digest == sha256(data)


def test_incomplete_ingest_restarts(store: LocalStore) -> None:
    with store.writer("r") as w:
        w.write(b"stale", 0)
    [d] = os.listdir(Path(store.root, "ingest"))
    os.unlink(Path(store.root, "ingest", d, "startedat"))
    assert store.list_statuses() == []
    with store.writer("r") as w:
        assert w.status().offset == 0
        w.write(b"fresh", 0)
        assert w.commit(5, sha256(b"fresh")).size == 5


def test_sha512(store: LocalStore) -> None:
    data = b"sha512 content" * 1000
    with store.writer("a", expected=sha512(data)) as w:
        w.write(data, 0)
        assert w.digest() == sha512(data)
        assert w.commit(len(data), sha512(data)).digest == sha512(data)
    # expected only at commit: the data is re-hashed with the other algorithm
    with store.writer("b") as w:
        w.write(data + b"!", 0)
        assert w.commit(0, sha512(data + b"!")).digest == sha512(data + b"!")
    assert Path(store.root, "blobs", "sha512", sha512(data).split(":")[1]).is_file()
    assert sorted(i.digest for i in store.walk()) == sorted(
        [sha512(data), sha512(data + b"!")]
    )
    with store.reader(sha512(data)) as r:
        assert b"".join(r.chunks()) == data


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "sha256",
        "sha256:",
        "md5:" + "0" * 32,
        "sha256:" + "0" * 63,
        "sha256:" + "A" * 64,
        "sha256:" + "g" * 64,
        "sha512:" + "0" * 64,
        "SHA256:" + "0" * 64,
    ],
)
def test_bad_digests(store: LocalStore, bad: str) -> None:
    for call in (store.info, store.reader, store.delete):
        with pytest.raises(InvalidArgument) as e:
            call(bad)
        assert str(e.value).startswith(repr(bad))
    with pytest.raises(InvalidArgument):
        store.writer("r", expected=bad) if bad else store.writer("", expected="")
    with store.writer("r") as w:
        w.write(b"x", 0)
        if bad:
            with pytest.raises(InvalidArgument):
                w.commit(1, bad)


def test_abort(store: LocalStore) -> None:
    with pytest.raises(NotFound, match="ingest ref 'r'"):
        store.abort("r")
    with store.writer("r") as w:
        w.write(b"data", 0)
    store.abort("r")
    assert store.list_statuses() == []
    with store.writer("r") as w:
        assert w.status().offset == 0
        w.write(b"data", 0)
        store.abort("r")  # while held, as the service's ABORT action does
        with pytest.raises(NotFound):
            w.commit(4, sha256(b"data"))
    with pytest.raises(NotFound):
        store.info(sha256(b"data"))


def test_delete_and_not_found(store: LocalStore) -> None:
    d = put(store, b"bye")
    store.delete(d)
    assert list(store.walk()) == []
    for call in (store.info, store.reader, store.delete):
        with pytest.raises(NotFound) as e:
            call(d)
        assert str(e.value) == f"content digest {d}: not found"


def test_already_exists(store: LocalStore) -> None:
    d = put(store, b"same")
    with pytest.raises(AlreadyExists, match=f"content {d}"):
        store.writer("x", expected=d)
    with store.writer("y") as w:
        w.write(b"same", 0)
        with pytest.raises(AlreadyExists, match=f"content {d}: already exists"):
            w.commit(4, d)
        assert w.digest() == d and w.status().offset == 4  # still readable after
    assert store.list_statuses() == []
    assert [i.digest for i in store.walk()] == [d]


def test_closed_writer_refuses_work(store: LocalStore) -> None:
    w = store.writer("r")
    w.close()
    w.close()
    with pytest.raises(FailedPrecondition):
        w.write(b"x", 0)
    with pytest.raises(FailedPrecondition):
        w.commit()


def test_concurrent_writers_on_distinct_refs(store: LocalStore) -> None:
    blobs = [os.urandom(512 * 1024 + i) for i in range(6)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        digests = list(
            pool.map(lambda i: put(store, blobs[i], ref=f"ref-{i}"), range(6))
        )
    assert digests == [sha256(b) for b in blobs]
    assert sorted(i.digest for i in store.walk()) == sorted(digests)


def test_resumed_ingest_reports_its_last_write_not_its_reopening(store: LocalStore) -> None:
    """containerd's content testsuite checkResumeWriter: updated_at stays within the first write."""
    data = os.urandom(256)
    pre_start = timeutil.now()
    with store.writer("resume", total=len(data)) as w:
        post_start = pre_update = timeutil.now()
        w.write(data[:128], 0)
        post_update = timeutil.now()
        # Let the clock pass the write: the buffered bytes reach the file only at close.
        eventually(lambda: timeutil.now() > post_update, what="the clock to move on")
    with store.writer("resume", total=len(data)) as w:
        st = w.status()
        assert pre_start <= st.started_at <= post_start
        assert pre_update <= st.updated_at <= post_update, (st.updated_at, pre_update, post_update)
        pre_update = timeutil.now()
        w.write(data[128:], 128)
        post_update = timeutil.now()
        assert pre_update <= w.status().updated_at <= post_update
        w.commit(len(data), sha256(data))
