"""The plugin registry: dependency order, cycles, skip/error status, required plugins."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lamina.core.errors import FailedPrecondition, InvalidArgument
from lamina.core.events import Exchange
from lamina.core.registry import DaemonContext, InitContext, Registration, Registry, SkipPlugin, check_required


def _ctx(tmp_path: Any) -> DaemonContext:
    return DaemonContext(root=str(tmp_path / "root"), state=str(tmp_path / "state"), address="a",
                         ttrpc_address="a.ttrpc", exchange=Exchange())


def _reg(type_: str, id_: str, requires: tuple[str, ...] = (), init: Any = None) -> Registration:
    return Registration(type=type_, id=id_, requires=requires, init=init or (lambda ic: f"{type_}.{id_}"))


def test_order_follows_requires_and_star_goes_last() -> None:
    registry = Registry()
    registry.add(_reg("t.grpc", "intro", ("*",)))
    registry.add(_reg("t.service", "svc", ("t.meta",)))
    registry.add(_reg("t.meta", "db", ("t.content",)))
    registry.add(_reg("t.content", "local"))
    order = [r.uri for r in registry.ordered()]
    assert order.index("t.content.local") < order.index("t.meta.db") < order.index("t.service.svc")
    assert order[-1] == "t.grpc.intro"


def test_cycle_is_rejected_and_named() -> None:
    registry = Registry()
    registry.add(_reg("a", "1", ("b",)))
    registry.add(_reg("b", "1", ("a",)))
    with pytest.raises(InvalidArgument, match="cycle: a.1 -> b.1 -> a.1"):
        registry.ordered()


def test_duplicate_registration_is_rejected() -> None:
    registry = Registry()
    registry.add(_reg("a", "1"))
    with pytest.raises(InvalidArgument, match="registered twice"):
        registry.add(_reg("a", "1"))


def test_init_records_ok_skip_and_error_and_inits_once(tmp_path: Any) -> None:
    calls: list[str] = []

    def ok(ic: InitContext) -> str:
        calls.append(ic.registration.uri)
        return "instance"

    def skip(ic: InitContext) -> None:
        raise SkipPlugin("no overlay here")

    def boom(ic: InitContext) -> None:
        raise RuntimeError("disk on fire")

    def needs(ic: InitContext) -> str:
        return ic.get("t.ok")  # type: ignore[no-any-return]

    registry = Registry()
    registry.add(_reg("t.ok", "a", init=ok))
    registry.add(_reg("t.skip", "b", init=skip))
    registry.add(_reg("t.err", "c", init=boom))
    registry.add(_reg("t.user", "d", ("t.ok",), init=needs))
    registry.add(_reg("t.off", "e", init=ok))
    plugins = asyncio.run(registry.init_all(configs={}, disabled=frozenset({"t.off.e"}), daemon=_ctx(tmp_path)))
    status = {p.registration.uri: (p.status, str(p.error or "")) for p in plugins}
    assert status == {
        "t.ok.a": ("ok", ""),
        "t.skip.b": ("skip", "no overlay here: skip plugin"),
        "t.err.c": ("error", "disk on fire"),
        "t.user.d": ("ok", ""),
    }
    assert calls == ["t.ok.a"]
    assert plugins.get("t.user") == "instance"
    check_required(plugins, ["t.ok.a"])
    with pytest.raises(FailedPrecondition, match="required plugin 't.err.c' did not load: disk on fire"):
        check_required(plugins, ["t.err.c"])
    with pytest.raises(FailedPrecondition, match="'t.off.e' is not registered or is disabled"):
        check_required(plugins, ["t.off.e"])


def test_async_init_is_awaited(tmp_path: Any) -> None:
    async def init(ic: InitContext) -> str:
        await asyncio.sleep(0)
        return "done"

    registry = Registry()
    registry.add(_reg("t.async", "a", init=init))
    plugins = asyncio.run(registry.init_all(configs={}, disabled=frozenset(), daemon=_ctx(tmp_path)))
    assert plugins.get("t.async") == "done"
