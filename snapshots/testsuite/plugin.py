"""pytest plugin: run the snapshotter conformance suite against a named snapshotter.

``pytest --lamina-snapshotter=NAME`` collects ``suite.py`` (alone, unless
paths are given too) with the snapshotter NAME resolves to:

- ``overlayfs`` or ``native``: the built-in snapshotters;
- the id of any other registered snapshotter plugin (the ``lamina`` entry
  points), started by its own init as laminad starts it;
- ``package.module:factory``: any callable taking a root directory and
  returning a ``Snapshotter``, for out-of-tree authors.

``pytest --pyargs lamina.snapshots.testsuite --snapshotter-address=SOCK``
runs it against a snapshotter served on a unix socket as a containerd proxy
plugin (``containerd.services.snapshots.v1``), in any language: each test
starts by removing every snapshot the socket serves, so point it at a
scratch instance.  Tests that read the snapshotter's directory are skipped:
its disk is the server's.

A test module may instead import the suite's tests and override the
``snapshotter_name`` fixture (that is how lamina runs it for both built-ins).
The suite needs root and real mounts; it skips without them.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from lamina.core.errors import InvalidArgument
from lamina.core.registry import SkipPlugin
from lamina.snapshots.base import Info, Snapshotter
from lamina.snapshots.testsuite.mounting import Mounter, mounts_under

Factory = Callable[[str], Snapshotter]
SUITE = Path(__file__).with_name("suite.py")
PACKAGE = "lamina.snapshots.testsuite"
SUITE_MODULE = f"{PACKAGE}.suite"


def _overlay(root: str) -> Snapshotter:
    from lamina.snapshots.overlay import OverlaySnapshotter, check_supported

    check_supported(root)
    return OverlaySnapshotter(root)


def _native(root: str) -> Snapshotter:
    from lamina.snapshots.native import NativeSnapshotter

    return NativeSnapshotter(root)


BUILTINS: dict[str, Factory] = {"overlayfs": _overlay, "native": _native}


def _registered(name: str) -> Factory:
    from lamina.snapshots.registered import registration, start

    try:
        reg = registration(name)
    except InvalidArgument as exc:
        raise pytest.UsageError(f"--lamina-snapshotter={name!r}: {exc}; or give 'module:factory'") from None
    return lambda root: asyncio.run(start(reg, root))


def resolve(name: str) -> Factory:
    """A built-in name, the id of a registered snapshotter plugin, or ``module:callable``."""
    if name in BUILTINS:
        return BUILTINS[name]
    module, sep, attr = name.partition(":")
    if not sep:
        return _registered(name)
    if not module or not attr:
        raise pytest.UsageError(f"--lamina-snapshotter={name!r}: use a snapshotter id or 'module:factory'")
    factory = getattr(importlib.import_module(module), attr)
    if not callable(factory):
        raise pytest.UsageError(f"--lamina-snapshotter={name!r} is not callable")
    return factory  # type: ignore[no-any-return]


def _proxy(address: str) -> Factory:
    """The snapshotter at ``address``, emptied: the suite expects a fresh one per test."""
    def factory(root: str) -> Snapshotter:
        from lamina.snapshots.proxy_client import ProxySnapshotter

        sn = ProxySnapshotter("testsuite", address)
        while True:  # leaves first, a round per level
            infos: list[Info] = []
            sn.walk(infos.append)
            if not infos:
                return sn
            parents = {info.parent for info in infos}
            for info in infos:
                if info.key not in parents:
                    sn.remove(info.key)

    return factory


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("lamina").addoption(
        "--snapshotter-address",
        default=None,
        metavar="SOCK",
        help="run the snapshotter conformance suite against the proxy snapshotter served on unix socket SOCK",
    )
    parser.getgroup("lamina").addoption(
        "--lamina-snapshotter",
        default=None,
        metavar="NAME",
        help="run the snapshotter conformance suite against NAME "
        f"({', '.join(BUILTINS)}, a registered snapshotter id, or module:factory taking a root path)",
    )


def pytest_configure(config: pytest.Config) -> None:
    name = config.getoption("lamina_snapshotter")
    address = config.getoption("snapshotter_address")
    if name and address:
        raise pytest.UsageError("give --lamina-snapshotter or --snapshotter-address, not both")
    if not name and not address:
        return
    if name:
        resolve(name)  # fail early on a bad name
    if config.args_source is not pytest.Config.ArgsSource.ARGS:
        config.args[:] = [str(SUITE)]
        return
    # The package itself (``--pyargs lamina.snapshots.testsuite``) would subsume
    # the suite's path, and collect nothing from it: suite.py is no test_*.py.
    config.args[:] = [a for a in config.args if a != PACKAGE and Path(a).resolve() != SUITE.parent]
    if str(SUITE) not in config.args:
        config.args.append(str(SUITE))


class _SuiteModule(pytest.Module):
    """Collects the already importable suite module instead of importing it by path,
    which would give it a second identity in editable installs."""

    def _getobj(self) -> ModuleType:
        return importlib.import_module(SUITE_MODULE)


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    if module_path == SUITE:
        return _SuiteModule.from_parent(parent, path=module_path)
    return None


@pytest.fixture
def snapshotter_name(request: pytest.FixtureRequest) -> str:
    name = request.config.getoption("lamina_snapshotter")
    if not name and not request.config.getoption("snapshotter_address"):
        pytest.skip("no --lamina-snapshotter or --snapshotter-address given")
    return str(name or "")


@pytest.fixture
def snapshotter_factory(request: pytest.FixtureRequest, snapshotter_name: str) -> Factory:
    address = request.config.getoption("snapshotter_address")
    return _proxy(address) if address and not snapshotter_name else resolve(snapshotter_name)


@pytest.fixture
def snapshot_tmp() -> Iterator[str]:
    """A short directory under /tmp (overlay options are limited to a page).

    Teardown fails the test if anything is still mounted below it.
    """
    if os.geteuid() != 0:
        pytest.skip("the snapshotter suite needs root to mount")
    td = tempfile.mkdtemp(prefix="lss-", dir="/tmp")
    try:
        yield td
        left = mounts_under(td)
        for point in reversed(left):
            subprocess.run(["umount", "-l", point], check=False, capture_output=True)
        assert not left, f"mounts left behind: {left}"
    finally:
        if not mounts_under(td):
            shutil.rmtree(td, ignore_errors=True)


@pytest.fixture
def snapshot_mounter(snapshot_tmp: str) -> Iterator[Mounter]:
    m = Mounter()
    try:
        yield m
    finally:
        m.unmount_all()


@pytest.fixture
def snapshot_work(snapshot_tmp: str) -> str:
    """Scratch space for mount points and expected trees."""
    path = os.path.join(snapshot_tmp, "w")
    os.mkdir(path)
    return path


@pytest.fixture
def snapshot_root(snapshot_tmp: str) -> str:
    return os.path.join(snapshot_tmp, "r")


@pytest.fixture
def snapshot_disk(snapshotter_name: str, snapshot_root: str) -> str:
    """The snapshotter's own directory, for tests that look at its disk (not a proxy's)."""
    if not snapshotter_name:
        pytest.skip("a proxy snapshotter's disk is its server's")
    return snapshot_root


@pytest.fixture
def snapshotter(snapshotter_factory: Factory, snapshot_root: str, snapshot_mounter: Mounter) -> Iterator[Snapshotter]:
    """A fresh snapshotter; the umask is cleared as containerd's suite does.

    It depends on ``snapshot_mounter`` so that mounts are gone before it closes.
    """
    old = os.umask(0)
    try:
        try:
            sn = snapshotter_factory(snapshot_root)
        except SkipPlugin as exc:
            pytest.skip(str(exc))
        try:
            yield sn
        finally:
            sn.close()
    finally:
        os.umask(old)
