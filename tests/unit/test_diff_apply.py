"""Layer apply on the real kernel: round trips, whiteouts, digests, hostile layers."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import uuid
from collections.abc import Iterator

import pytest
import structlog
import zstandard

from lamina.core import mount_ops
from lamina.core.errors import InvalidArgument
from lamina.core.mounts import Mount
from lamina.diff.apply import apply_layer

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(os.geteuid() != 0, reason="owners, devices and overlay whiteouts need root"),
]

# A v2 file capability (cap_net_bind_service+ep), as setcap writes it.
CAP = bytes.fromhex("0100000200040000000000000000000000000000")


def snapshot(root: str, *, mtime_round: bool = False) -> dict[str, tuple[object, ...]]:
    """Everything apply must reproduce, keyed by path; hard links as groups."""
    out: dict[str, tuple[object, ...]] = {}
    inodes: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            xattrs = tuple((k, os.getxattr(p, k, follow_symlinks=False))
                           for k in sorted(os.listxattr(p, follow_symlinks=False)))
            content: object = None
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    content = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(p)
            link = inodes.setdefault(st.st_ino, rel) if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode) else None
            mtime = round(st.st_mtime_ns / 1e9) if mtime_round else st.st_mtime_ns
            out[rel] = (st.st_mode, st.st_uid, st.st_gid, st.st_rdev, mtime, xattrs, content, link)
    return out


@pytest.fixture
def tmp() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="lamina-diff-test-", dir="/tmp")
    yield d
    with open("/proc/self/mountinfo") as f:
        mounted = [line.split()[4] for line in f if line.split()[4].startswith(d)]
    for target in reversed(mounted):
        mount_ops.unmount_all(target, detach=True)
    shutil.rmtree(d)


def build_tree(root: str) -> None:
    """Every file type, odd modes and owners, xattrs, hard links, a capability."""
    os.makedirs(f"{root}/dir/sub")
    os.makedirs(f"{root}/empty")
    with open(f"{root}/dir/file", "wb") as f:
        f.write(os.urandom(300_000))
    with open(f"{root}/dir/sub/small", "w") as f:
        f.write("small\n")
    open(f"{root}/zero", "w").close()
    os.link(f"{root}/dir/file", f"{root}/hardlink")
    os.link(f"{root}/dir/file", f"{root}/dir/sub/hardlink2")
    os.symlink("dir/sub/small", f"{root}/rel-link")
    os.symlink("/dir/file", f"{root}/abs-link")
    os.symlink("dangling", f"{root}/dangling-link")
    os.mknod(f"{root}/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(f"{root}/loop", stat.S_IFBLK | 0o660, os.makedev(7, 0))
    os.mkfifo(f"{root}/fifo", 0o644)
    with open(f"{root}/setuid", "w") as f:
        f.write("#!/bin/sh\n")
    os.chown(f"{root}/setuid", 1000, 1001)
    os.chmod(f"{root}/setuid", 0o4755)
    os.chmod(f"{root}/empty", 0o1777)
    os.chown(f"{root}/dir/sub", 123, 456)
    os.setxattr(f"{root}/dir/sub/small", "user.note", b"hello \xff binary")
    os.setxattr(f"{root}/dir", "user.lamina", b"dir-xattr")
    with open(f"{root}/ping", "w") as f:
        f.write("ping")
    os.chmod(f"{root}/ping", 0o755)
    os.setxattr(f"{root}/ping", "security.capability", CAP)
    for i, (dirpath, dirnames, filenames) in enumerate(sorted(os.walk(root, topdown=False))):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), ns=(1_600_000_000_123_456_789 + i, 1_600_000_000_123_456_789 + i),
                     follow_symlinks=False)


def gnu_tar(src: str) -> bytes:
    return subprocess.run(
        ["tar", "--format=posix", "--xattrs", "--xattrs-include=*", "--numeric-owner",
         "-C", src, "-cf", "-", "."], check=True, capture_output=True).stdout


def apply_bytes(data: bytes, root: str, **kw: object) -> str:
    os.makedirs(root, exist_ok=True)
    return apply_layer(io.BytesIO(data), root, **kw).diff_id  # type: ignore[arg-type]


def make_tar(*entries: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in entries:
            if data is not None:
                ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes | None = None, **attrs: object
          ) -> tuple[tarfile.TarInfo, bytes | None]:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    for k, v in attrs.items():
        setattr(ti, k, v)
    return ti, (data if data is not None else (b"" if kind == tarfile.REGTYPE else None))


# -- round trip and digests -------------------------------------------------------


def test_round_trip_every_file_type(tmp: str) -> None:
    build_tree(f"{tmp}/src")
    apply_bytes(gnu_tar(f"{tmp}/src"), f"{tmp}/dst")
    expected, got = snapshot(f"{tmp}/src"), snapshot(f"{tmp}/dst")
    assert got == expected
    assert os.getxattr(f"{tmp}/dst/ping", "security.capability") == CAP
    assert os.lstat(f"{tmp}/dst/setuid").st_mode & 0o7777 == 0o4755


def test_round_trip_python_tarfile(tmp: str) -> None:
    build_tree(f"{tmp}/src")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for dirpath, dirnames, filenames in os.walk(f"{tmp}/src"):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                p = os.path.join(dirpath, name)
                ti = tf.gettarinfo(p, os.path.relpath(p, f"{tmp}/src"))
                ti.pax_headers = {f"SCHILY.xattr.{k}": os.getxattr(p, k, follow_symlinks=False)
                                  .decode("utf-8", "surrogateescape")
                                  for k in os.listxattr(p, follow_symlinks=False)}
                ns = os.lstat(p).st_mtime_ns
                ti.pax_headers["mtime"] = f"{ns // 10**9}.{ns % 10**9:09d}"
                with open(p, "rb") if ti.isreg() else io.BytesIO() as f:
                    tf.addfile(ti, f if ti.isreg() else None)
    apply_bytes(buf.getvalue(), f"{tmp}/dst")
    assert snapshot(f"{tmp}/dst") == snapshot(f"{tmp}/src")


@pytest.mark.parametrize("codec", ["plain", "gzip", "zstd"])
def test_diff_id_is_sha256_of_uncompressed_tar(tmp: str, codec: str) -> None:
    build_tree(f"{tmp}/src")
    plain = gnu_tar(f"{tmp}/src")
    assert plain.endswith(b"\0" * 1024)
    blob = {"plain": plain, "gzip": gzip.compress(plain),
            "zstd": zstandard.ZstdCompressor().compress(plain)}[codec]
    os.makedirs(f"{tmp}/dst")
    result = apply_layer(io.BytesIO(blob), f"{tmp}/dst")
    sha = subprocess.run(["sha256sum"], input=plain, capture_output=True, check=True).stdout.split()[0]
    assert result.diff_id == "sha256:" + sha.decode()
    assert result.size == len(plain)


def test_multi_member_gzip_and_empty_layer(tmp: str) -> None:
    plain = make_tar(entry("a", data=b"a" * 1000), entry("b", data=b"b"))
    blob = gzip.compress(plain[:5000]) + gzip.compress(plain[5000:])
    assert apply_bytes(blob, f"{tmp}/a") == "sha256:" + hashlib.sha256(plain).hexdigest()
    assert sorted(os.listdir(f"{tmp}/a")) == ["a", "b"]
    assert apply_bytes(b"", f"{tmp}/b") == "sha256:" + hashlib.sha256(b"").hexdigest()


def test_truncated_or_corrupt_layer_is_invalid(tmp: str) -> None:
    plain = make_tar(entry("a", data=b"x" * 5000))
    with pytest.raises(InvalidArgument):
        apply_bytes(plain[:1500], f"{tmp}/a")
    bad = bytearray(plain)
    bad[0] ^= 0xFF
    with pytest.raises(InvalidArgument, match="checksum"):
        apply_bytes(bytes(bad), f"{tmp}/b")
    with pytest.raises(InvalidArgument, match="gzip"):
        apply_bytes(gzip.compress(plain)[:-20], f"{tmp}/c")


# -- whiteouts ----------------------------------------------------------------------


def _lower(root: str) -> None:
    os.makedirs(f"{root}/a")
    os.makedirs(f"{root}/opq/deep")
    for p in ("a/gone", "a/keep", "opq/old", "opq/deep/older"):
        with open(f"{root}/{p}", "w") as f:
            f.write(p)


WHITEOUT_LAYER = (
    entry("a/", tarfile.DIRTYPE),
    entry("a/.wh.gone"),
    entry("opq/", tarfile.DIRTYPE),
    entry("opq/new", data=b"new"),
    entry("opq/.wh..wh..opq"),
)


def test_whiteouts_in_plain_directory(tmp: str) -> None:
    _lower(f"{tmp}/root")
    apply_bytes(make_tar(*WHITEOUT_LAYER), f"{tmp}/root")
    assert sorted(os.listdir(f"{tmp}/root/a")) == ["keep"]
    assert sorted(os.listdir(f"{tmp}/root/opq")) == ["new"]


def test_whiteouts_in_overlay_upper(tmp: str) -> None:
    lower, upper, work, merged = (f"{tmp}/{n}" for n in ("lower", "upper", "work", "merged"))
    _lower(lower)
    for d in (upper, work, merged):
        os.makedirs(d)
    layer = make_tar(*WHITEOUT_LAYER, entry("a/link", tarfile.LNKTYPE, linkname="a/keep"))
    apply_bytes(layer, upper, overlay_lowers=[lower])
    st = os.lstat(f"{upper}/a/gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(f"{upper}/opq", "trusted.overlay.opaque") == b"y"
    # The hard link target only existed below: copied up, then linked.
    assert os.lstat(f"{upper}/a/keep").st_ino == os.lstat(f"{upper}/a/link").st_ino
    mount_ops.mount_all([Mount(type="overlay", source="overlay",
                               options=(f"lowerdir={lower}", f"upperdir={upper}",
                                        f"workdir={work}"))], merged)
    try:
        assert sorted(os.listdir(f"{merged}/a")) == ["keep", "link"]
        assert sorted(os.listdir(f"{merged}/opq")) == ["new"]
        with open(f"{merged}/a/link") as f:
            assert f.read() == "a/keep"
    finally:
        mount_ops.unmount_all(merged)
    with open(f"{lower}/a/gone") as f:
        assert f.read() == "a/gone"


def test_replacing_directory_and_file(tmp: str) -> None:
    _lower(f"{tmp}/root")
    apply_bytes(make_tar(entry("a", data=b"now a file"), entry("opq/old/", tarfile.DIRTYPE)),
                f"{tmp}/root")
    assert os.path.isfile(f"{tmp}/root/a")
    assert os.path.isdir(f"{tmp}/root/opq/old")


# -- hostile layers --------------------------------------------------------------------


@pytest.fixture
def hostile(tmp: str) -> Iterator[tuple[str, str]]:
    """(root, host_file): a sentinel outside root that must survive every layer."""
    root, host = f"{tmp}/root", f"{tmp}/host_file"
    os.makedirs(root)
    os.makedirs(f"{tmp}/lower")
    with open(host, "w") as f:
        f.write("host")
    os.chmod(host, 0o600)
    before = _outside(tmp, root)
    yield root, host
    assert _outside(tmp, root) == before
    with open(host) as f:
        assert f.read() == "host"


def _outside(tmp: str, root: str) -> dict[str, tuple[object, ...]]:
    """Everything a followed chmod, chown, utime, setxattr, link, unlink or mkdir would change."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(tmp):
        if dirpath == tmp:
            dirnames.remove("root")
            dirnames.remove("lower")
        for n in dirnames + filenames + ["."]:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            out[p] = (st.st_mode, st.st_uid, st.st_gid, st.st_nlink, st.st_mtime_ns, st.st_ctime_ns,
                      st.st_size, sorted(os.listxattr(p, follow_symlinks=False)))
    return out


def test_dotdot_and_absolute_names_are_confined(hostile: tuple[str, str]) -> None:
    root, host = hostile
    apply_bytes(make_tar(entry("../host_file", data=b"evil"),
                         entry("../../../../../../etc/lamina-x", data=b"evil"),
                         entry(host, data=b"evil")), root)
    assert os.path.isfile(f"{root}/host_file")
    assert os.path.isfile(f"{root}/etc/lamina-x")
    assert os.path.isfile(root + host)
    assert not os.path.exists("/etc/lamina-x")


@pytest.mark.parametrize("target", ["/", "../../..", "../../../../../../../.."])
def test_symlink_parents_stay_inside(hostile: tuple[str, str], target: str) -> None:
    root, host = hostile
    sentinel = f"lamina-sentinel-{uuid.uuid4().hex}"
    rel_host = host.lstrip("/")
    apply_bytes(make_tar(entry("evil", tarfile.SYMTYPE, linkname=target),
                         entry(f"evil/tmp/{sentinel}", data=b"evil"),
                         entry(f"evil/{rel_host}", data=b"evil"),
                         entry(f"evil/{os.path.dirname(rel_host)}/dev0", tarfile.CHRTYPE,
                               devmajor=1, devminor=3),
                         entry(f"evil/{os.path.dirname(rel_host)}/.wh.host_file")), root)
    assert not os.path.exists(f"/tmp/{sentinel}")
    assert os.path.isfile(f"{root}/tmp/{sentinel}")
    assert not os.path.exists(f"{os.path.dirname(host)}/dev0")


def test_final_symlink_is_replaced_not_followed(hostile: tuple[str, str]) -> None:
    root, host = hostile
    apply_bytes(make_tar(entry("link", tarfile.SYMTYPE, linkname=host),
                         entry("link", data=b"evil")), root)
    assert not os.path.islink(f"{root}/link")


def test_directory_times_are_not_set_through_symlinks(hostile: tuple[str, str]) -> None:
    root, host = hostile
    hostdir = os.path.dirname(host)
    apply_bytes(make_tar(entry("d/", tarfile.DIRTYPE, mtime=1),
                         entry("d/e/", tarfile.DIRTYPE, mtime=1),
                         entry("d", tarfile.SYMTYPE, linkname=hostdir)), root)
    assert os.lstat(hostdir).st_mtime_ns != 1_000_000_000


@pytest.mark.parametrize("linkname", ["/etc/passwd", "../host_file", "../../host_file", "out/etc/passwd"])
def test_hard_links_out_of_root_are_refused(hostile: tuple[str, str], linkname: str) -> None:
    root, _ = hostile
    passwd = os.stat("/etc/passwd")
    with pytest.raises(InvalidArgument, match="evil-link"):
        apply_bytes(make_tar(entry("out", tarfile.SYMTYPE, linkname="/"),
                             entry("evil-link", tarfile.LNKTYPE, linkname=linkname)), root)
    assert os.stat("/etc/passwd").st_nlink == passwd.st_nlink


@pytest.mark.parametrize("name", ["a/.wh...", ".wh..", ".wh."])
def test_bad_whiteouts_are_refused(hostile: tuple[str, str], name: str) -> None:
    root, _ = hostile
    with pytest.raises(InvalidArgument, match="whiteout"):
        apply_bytes(make_tar(entry(name)), root)


def test_whiteouts_cannot_reach_outside(hostile: tuple[str, str]) -> None:
    root, _ = hostile
    apply_bytes(make_tar(entry("../.wh.host_file"), entry("../../.wh.root")), root)
    apply_bytes(make_tar(entry("../.wh.host_file")), root, overlay_lowers=[])
    st = os.lstat(f"{root}/host_file")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def test_device_nodes_only_inside_root(hostile: tuple[str, str]) -> None:
    root, host = hostile
    apply_bytes(make_tar(entry("../../dev-evil", tarfile.BLKTYPE, devmajor=7, devminor=0),
                         entry(os.path.dirname(host) + "/null-evil", tarfile.CHRTYPE,
                               devmajor=1, devminor=3)), root)
    assert stat.S_ISBLK(os.lstat(f"{root}/dev-evil").st_mode)
    assert stat.S_ISCHR(os.lstat(root + os.path.dirname(host) + "/null-evil").st_mode)


def test_hard_link_to_symlink_links_the_symlink(hostile: tuple[str, str]) -> None:
    """A symlink out of root, a hard link to it, then a file of the link's name: nothing reaches the host file."""
    root, host = hostile
    apply_bytes(make_tar(entry("sl", tarfile.SYMTYPE, linkname=host),
                         entry("hs", tarfile.LNKTYPE, linkname="sl", mode=0o777, uid=1234, gid=1234,
                               pax_headers={"SCHILY.xattr.user.evil": "x"}),
                         entry("hs2", tarfile.LNKTYPE, linkname="sl", mode=0o4755, uid=1234, gid=1234)), root)
    assert os.lstat(f"{root}/hs").st_ino == os.lstat(f"{root}/sl").st_ino == os.lstat(f"{root}/hs2").st_ino
    assert os.readlink(f"{root}/hs") == host
    assert (os.lstat(f"{root}/hs").st_uid, os.lstat(f"{root}/hs").st_gid) == (1234, 1234)
    apply_bytes(make_tar(entry("hs", data=b"evil", mode=0o777)), root)
    assert stat.S_ISREG(os.lstat(f"{root}/hs").st_mode)
    assert stat.S_ISLNK(os.lstat(f"{root}/sl").st_mode)


def test_hard_link_to_symlink_in_upperdir(hostile: tuple[str, str]) -> None:
    root, host = hostile
    apply_bytes(make_tar(entry("sl", tarfile.SYMTYPE, linkname=host),
                         entry("hs", tarfile.LNKTYPE, linkname="sl", mode=0o777, uid=1234),
                         entry("hs", data=b"evil", mode=0o777)), root, overlay_lowers=[])
    assert stat.S_ISREG(os.lstat(f"{root}/hs").st_mode)


def _symlinked_lower(root: str, host: str) -> None:
    """What a parent layer left: symlinks out of the root, absolute and relative."""
    os.symlink("/", f"{root}/abs")
    os.symlink("../../../../../../..", f"{root}/rel")
    os.symlink(os.path.dirname(host), f"{root}/hostdir")
    os.symlink(host, f"{root}/hostfile")


# Entries that would chmod, chown, utime, setxattr, link, unlink or mkdir on the host if a symlink were followed.
THROUGH_LINKS = {
    "chmod-chown-utime": [entry("hl", tarfile.LNKTYPE, linkname="hostfile", mode=0o777, uid=7, mtime=1)],
    "setxattr": [entry("hl", tarfile.LNKTYPE, linkname="hostfile",
                       pax_headers={"SCHILY.xattr.user.evil": "x",
                                    "SCHILY.xattr.security.capability": CAP.decode("latin-1")})],
    "dir-over-symlink": [entry("hostdir/", tarfile.DIRTYPE, mode=0o777, uid=7, mtime=1,
                               pax_headers={"SCHILY.xattr.user.evil": "x"})],
    "mkdir": [entry("hostdir/newdir/", tarfile.DIRTYPE), entry("abs/tmp/x/y/", tarfile.DIRTYPE),
              entry("rel/tmp/z/", tarfile.DIRTYPE)],
    "create": [entry("hostdir/host_file", data=b"evil", mode=0o777), entry("hostfile", data=b"evil"),
               entry("rel/tmp/lamina-evil", data=b"evil")],
    "link": [entry("hostdir/new-link", tarfile.LNKTYPE, linkname="hostfile"),
             entry("abs/tmp/lamina-evil-link", tarfile.LNKTYPE, linkname="hostfile")],
    "unlink": [entry("hostdir/.wh.host_file"), entry("rel/tmp/.wh.host_file"), entry(".wh.hostfile")],
    "devices": [entry("hostdir/dev", tarfile.CHRTYPE, devmajor=1, devminor=3), entry("hostdir/fifo", tarfile.FIFOTYPE)],
}


@pytest.mark.parametrize("case", sorted(THROUGH_LINKS))
@pytest.mark.parametrize("mode", ["plain", "upperdir"])
def test_nothing_is_followed_out_of_root(hostile: tuple[str, str], tmp: str, case: str, mode: str) -> None:
    """Symlinks a parent left behind: in a plain directory they are in the root; in an upperdir, in a lower."""
    root, host = hostile
    host_st = os.stat(host)
    if mode == "plain":
        _symlinked_lower(root, host)
        apply_bytes(make_tar(*THROUGH_LINKS[case]), root)
    else:
        _symlinked_lower(f"{tmp}/lower", host)
        try:
            apply_bytes(make_tar(*THROUGH_LINKS[case]), root, overlay_lowers=[f"{tmp}/lower"])
        except InvalidArgument as e:
            assert "not in the layer" in str(e)  # a hard link through a lower's symlink: not copied up
    after = os.stat(host)
    assert (after.st_mode, after.st_uid, after.st_ctime_ns, after.st_nlink) == \
        (host_st.st_mode, host_st.st_uid, host_st.st_ctime_ns, host_st.st_nlink)
    assert os.listxattr(host) == []


def test_layer_symlink_parent_then_chmod_chown_utime(hostile: tuple[str, str]) -> None:
    root, host = hostile
    hostdir = os.path.dirname(host)
    apply_bytes(make_tar(entry("d", tarfile.SYMTYPE, linkname=hostdir),
                         entry("e", tarfile.SYMTYPE, linkname=host),
                         entry("d/host_file", data=b"evil", mode=0o777, uid=9, mtime=1),
                         entry("d/", tarfile.DIRTYPE, mode=0o777, uid=9, mtime=1),
                         entry("e/", tarfile.DIRTYPE, mode=0o777, uid=9, mtime=1)), root)
    assert stat.S_ISDIR(os.lstat(f"{root}/d").st_mode)
    assert os.lstat(f"{root}/d").st_mode & 0o777 == 0o777
    assert os.path.isfile(root + host)


def _xattr_layer() -> bytes:
    return make_tar(entry("./", tarfile.DIRTYPE, pax_headers={"SCHILY.xattr.trusted.overlay.opaque": "y"}),
                    entry("bin/", tarfile.DIRTYPE, pax_headers={"SCHILY.xattr.trusted.overlay.opaque": "y",
                                                                "SCHILY.xattr.user.kept": "u"}),
                    entry("bin/ping", data=b"ping", mode=0o755,
                          pax_headers={"SCHILY.xattr.security.capability": CAP.decode("latin-1"),
                                       "SCHILY.xattr.security.selinux": "system_u:object_r:bin_t:s0",
                                       "SCHILY.xattr.trusted.overlay.redirect": "/etc"}))


def test_trusted_and_security_xattrs_are_dropped(tmp: str) -> None:
    lower, upper, work, merged = (f"{tmp}/{n}" for n in ("lower", "upper", "work", "merged"))
    os.makedirs(f"{lower}/bin")
    with open(f"{lower}/bin/sh", "w") as f:
        f.write("sh")
    for d in (upper, work, merged):
        os.makedirs(d)
    layer = _xattr_layer()
    with structlog.testing.capture_logs() as logs:
        apply_bytes(layer, upper, overlay_lowers=[lower])
    dropped = [e for e in logs if e["log_level"] == "warning"]
    assert dropped == [{"event": dropped[0]["event"], "log_level": "warning", "count": 4,
                        "digest": "sha256:" + hashlib.sha256(layer).hexdigest()}]
    assert os.listxattr(upper) == []
    assert os.listxattr(f"{upper}/bin") == ["user.kept"]
    assert sorted(os.listxattr(f"{upper}/bin/ping")) == ["security.capability"]
    assert os.getxattr(f"{upper}/bin/ping", "security.capability") == CAP
    mount_ops.mount_all([Mount(type="overlay", source="overlay",
                               options=(f"lowerdir={lower}", f"upperdir={upper}", f"workdir={work}"))], merged)
    try:
        assert sorted(os.listdir(f"{merged}/bin")) == ["ping", "sh"]
    finally:
        mount_ops.unmount_all(merged)


def test_xattrs_dropped_in_plain_directory(tmp: str) -> None:
    apply_bytes(_xattr_layer(), f"{tmp}/root")
    assert os.listxattr(f"{tmp}/root/bin") == ["user.kept"]
    assert os.listxattr(f"{tmp}/root/bin/ping") == ["security.capability"]


def test_zero_char_device_is_refused_in_upperdir_only(tmp: str) -> None:
    layer = make_tar(entry("dev/", tarfile.DIRTYPE), entry("dev/wh", tarfile.CHRTYPE, devmajor=0, devminor=0))
    with pytest.raises(InvalidArgument, match="'dev/wh'.*whiteout"):
        apply_bytes(layer, f"{tmp}/upper", overlay_lowers=[])
    apply_bytes(layer, f"{tmp}/plain")
    st = os.lstat(f"{tmp}/plain/dev/wh")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


@pytest.mark.parametrize("name", ["d/" + "x" * 256, "y" * 300 + "/f", "z/" * 2100 + "f"])
def test_name_too_long_is_invalid_argument_naming_it(tmp: str, name: str) -> None:
    with pytest.raises(InvalidArgument, match="file name too long") as e:
        apply_bytes(make_tar(entry(name, data=b"x")), f"{tmp}/root")
    assert str(e.value).startswith("layer entry " + repr(name)[:100])


def test_hard_link_name_too_long(tmp: str) -> None:
    with pytest.raises(InvalidArgument, match="'hl'"):
        apply_bytes(make_tar(entry("hl", tarfile.LNKTYPE, linkname="a/" * 2100)), f"{tmp}/root")


def test_user_xattr_on_symlink_is_skipped_with_warning(tmp: str) -> None:
    """As containerd: the kernel allows no user.* xattr on a symlink or device."""
    with structlog.testing.capture_logs() as logs:
        apply_bytes(make_tar(entry("l", tarfile.SYMTYPE, linkname="x", pax_headers={"SCHILY.xattr.user.a": "b"})),
                    f"{tmp}/root")
    assert [e["xattr"] for e in logs if e["event"] == "ignored xattr in layer"] == ["user.a"]


def test_symlinks_cannot_build_a_path_deeper_than_path_max(tmp: str) -> None:
    with pytest.raises(InvalidArgument, match="'c/x'.*file name too long"):
        apply_bytes(make_tar(entry("a", tarfile.SYMTYPE, linkname="/".join(["d"] * 1100)),
                             entry("c", tarfile.SYMTYPE, linkname="a/" + "/".join(["e"] * 1000)),
                             entry("c/x", data=b"x")), f"{tmp}/root")
    assert sorted(os.listdir(f"{tmp}/root")) == ["a", "c"]


def test_deep_tree_after_the_fd_cache_is_trimmed(tmp: str) -> None:
    """More open directories than the cache keeps: later entries reopen them from the root."""
    deep = "/".join(["d"] * 600)
    apply_bytes(make_tar(entry(f"{deep}/f", data=b"1"), *(entry(f"w{i}/f", data=b"2") for i in range(300)),
                         entry(f"{deep}/g", data=b"3"), entry(f"{deep}/.wh.f")), f"{tmp}/root")
    fd = os.open(f"{tmp}/root", os.O_RDONLY)
    try:
        for _ in range(600):
            fd, old = os.open("d", os.O_RDONLY, dir_fd=fd), fd
            os.close(old)
        assert os.listdir(fd) == ["g"]
    finally:
        os.close(fd)


def test_deep_directories_are_removed_by_whiteouts(tmp: str) -> None:
    """Deeper than Python's recursion limit, as a layer may nest (up to PATH_MAX)."""
    deep = "/".join(["d"] * 1500)
    try:
        apply_bytes(make_tar(entry(f"a/{deep}/f", data=b"1"), entry(f"b/{deep}/f", data=b"1")), f"{tmp}/root")
        apply_bytes(make_tar(entry(".wh.a"), entry("b/.wh..wh..opq")), f"{tmp}/root")
        assert os.listdir(f"{tmp}/root") == ["b"]
        assert os.listdir(f"{tmp}/root/b") == []
    finally:
        subprocess.run(["rm", "-rf", f"{tmp}/root"], check=True)
