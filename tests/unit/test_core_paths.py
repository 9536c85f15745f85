"""``core.paths``: the host reading of a rootfs's symlinks (``check_inside``), beside the confined one.

The property test takes the kernel as the oracle: whatever ``check_inside``
lets through, ``os.path.realpath`` (the host following every symlink) finds
inside the root.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lamina.core import paths
from lamina.core.errors import FailedPrecondition, InvalidArgument
from lamina.shim import rootfs as shim_rootfs


@pytest.fixture
def root() -> Iterator[str]:
    base = tempfile.mkdtemp(prefix="lamina-paths-", dir="/tmp")
    os.mkdir(os.path.join(base, "rootfs"))
    yield os.path.join(base, "rootfs")
    shutil.rmtree(base)


def _link(root: str, name: str, target: str) -> None:
    os.makedirs(os.path.dirname(os.path.join(root, name)), exist_ok=True)
    os.symlink(target, os.path.join(root, name))


def _refusal(root: str, rel: str) -> str:
    with pytest.raises(FailedPrecondition) as err:
        paths.check_inside(root, rel)
    return str(err.value)


def test_absolute_symlink_to_the_host_is_refused(root: str) -> None:
    _link(root, "dev", "/tmp/host")
    assert _refusal(root, "/dev") == ('rootfs path "/dev" is a symlink to "/tmp/host" outside the rootfs: '
                                      "failed precondition")
    assert _refusal(root, "dev/fd") == _refusal(root, "/dev")
    # the confined reading (layer apply) takes the same link as rooted
    assert paths.root_path(root, "dev/fd") == root + "/tmp/host/fd"


def test_relative_symlinks_that_stay_inside_are_allowed(root: str) -> None:
    os.makedirs(os.path.join(root, "realdev/sub"))
    _link(root, "dev", "./realdev")
    _link(root, "realdev/up", "../realdev/sub")
    _link(root, "a/b", "../realdev")
    for rel in ("/dev", "/dev/fd", "dev/up/x", "/a/b/up", "/missing/deeper", "../../dev"):
        paths.check_inside(root, rel)


def test_relative_symlink_climbing_out_is_refused_even_to_come_back(root: str) -> None:
    _link(root, "dev", "../../../../etc")
    assert '"/dev" is a symlink to "../../../../etc"' in _refusal(root, "/dev")
    _link(root, "sys", "../" + os.path.basename(root) + "/proc")
    assert '"/sys"' in _refusal(root, "/sys")


def test_the_offending_link_is_named_along_a_chain(root: str) -> None:
    _link(root, "mnt", "b")
    _link(root, "b", "c/d")
    _link(root, "c/d", "/etc")
    assert _refusal(root, "/mnt/x") == ('rootfs path "/c/d" is a symlink to "/etc" outside the rootfs: '
                                        "failed precondition")


def test_absolute_symlink_naming_the_root_itself_stays_inside(root: str) -> None:
    os.mkdir(os.path.join(root, "realdev"))
    _link(root, "dev", os.path.join(os.path.realpath(root), "realdev"))
    paths.check_inside(root, "/dev/fd")
    _link(root, "sys", os.path.realpath(root) + "/../elsewhere")
    assert '"/sys"' in _refusal(root, "/sys")
    _link(root, "proc", os.path.realpath(root) + "-not/proc")  # a sibling sharing the prefix
    assert '"/proc"' in _refusal(root, "/proc")


def test_a_symlink_loop_is_invalid(root: str) -> None:
    _link(root, "dev", "dev")
    with pytest.raises(InvalidArgument, match="too many levels of symbolic links"):
        paths.check_inside(root, "/dev")


def _spec(root_path: str, *destinations: str) -> shim_rootfs.Spec:
    return {"root": {"path": root_path}, "mounts": [{"destination": d} for d in destinations]}


def test_spec_check_covers_the_host_joined_paths_only(root: str) -> None:
    bundle = os.path.dirname(root)
    for name in ("dev", "proc", "sys"):
        os.mkdir(os.path.join(root, name))
    _link(root, "mnt", "/tmp")
    # runc resolves mount destinations inside the rootfs itself
    shim_rootfs.check(_spec("rootfs", "/proc", "/dev", "/mnt/x"), bundle)
    os.rmdir(os.path.join(root, "sys"))
    _link(root, "sys", "/sys")
    with pytest.raises(FailedPrecondition, match='"/sys"'):
        shim_rootfs.check(_spec("rootfs"), bundle)
    # Docker's absolute root.path names the same tree
    with pytest.raises(FailedPrecondition, match='"/sys"'):
        shim_rootfs.check(_spec(root), "/nonexistent-bundle")


NAMES = ("a", "b", "c")
TARGETS = st.sampled_from(["a", "./b", "../c", "b/../a", "../../x", "/tmp", "/", "..", "c/a", "@root", "@root/b",
                           "@root/../x", "a/..", "missing/.."])
TREES = st.dictionaries(st.sampled_from(["a", "b", "c", "a/b", "b/c", "c/a"]), st.one_of(st.none(), TARGETS))
RELS = st.lists(st.sampled_from([*NAMES, "..", "."]), min_size=1, max_size=4).map("/".join)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(tree=TREES, rels=st.lists(RELS, min_size=1, max_size=5))
def test_what_is_let_through_the_host_finds_inside(root: str, tree: dict[str, str | None], rels: list[str]) -> None:
    real = os.path.realpath(root)
    for entry in os.listdir(root):
        path = os.path.join(root, entry)
        shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)
    for name, target in sorted(tree.items()):
        path = os.path.join(root, name)
        if not os.path.isdir(os.path.dirname(path)) or os.path.lexists(path):
            continue
        if target is None:
            os.mkdir(path)
        else:
            os.symlink(target.replace("@root", real), path)
    for rel in rels:
        try:
            paths.check_inside(root, rel)
        except (FailedPrecondition, InvalidArgument):
            continue
        host = os.path.realpath(os.path.join(root, paths.clean(rel)))
        assert host == real or host.startswith(real + "/"), (rel, host)
