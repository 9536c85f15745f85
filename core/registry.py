"""The plugin registry: records, dependency order, init and status.

A plugin is a ``Registration`` record.  The registry orders registrations by
the plugin *types* they require (``"*"`` means after every other type, as in
containerd's plugin graph), initialises each exactly once, and records the
outcome (ok, skip with reason, error) instead of letting one broken plugin take
the daemon down.  Only ``required_plugins`` turn a failure into a fatal one.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from lamina.core.errors import FailedPrecondition, InvalidArgument, NotFound
from lamina.core.events import Exchange
from lamina.core.log import get_logger

log = get_logger()

ALL_TYPES = "*"


class SkipPlugin(Exception):
    """Raised by an init function when the plugin cannot run here.

    The text ends in ``skip plugin`` because ``ctr plugins ls`` shows the
    status ``skip`` exactly when the init error mentions it.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"{reason}: skip plugin")


@dataclass(frozen=True, slots=True, kw_only=True)
class Registration:
    type: str
    id: str
    init: Callable[[InitContext], Any]
    requires: tuple[str, ...] = ()
    config: type | None = None

    @property
    def uri(self) -> str:
        return f"{self.type}.{self.id}"


@dataclass(slots=True, kw_only=True)
class PluginMeta:
    """What a plugin tells introspection about itself while it initialises."""

    platforms: list[str] = field(default_factory=list)
    exports: dict[str, str] = field(default_factory=dict)
    capabilities: list[str] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class Plugin:
    """A registration together with the outcome of its init."""

    registration: Registration
    meta: PluginMeta
    instance: Any = None
    error: BaseException | None = None

    @property
    def failure(self) -> BaseException | None:
        """The init error; for a plugin that depends on something outside laminad
        (a proxy plugin's socket), whatever keeps it from working now.

        Such an instance has ``current_error()``; it stays among the ok
        instances, so that it works again as soon as that comes back.
        """
        if self.error is not None:
            return self.error
        current = getattr(self.instance, "current_error", None)
        return current() if current is not None else None

    @property
    def status(self) -> str:
        failure = self.failure
        if failure is None:
            return "ok"
        return "skip" if isinstance(failure, SkipPlugin) else "error"


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonContext:
    """Daemon-wide facts every plugin may need."""

    root: str
    state: str
    address: str
    ttrpc_address: str
    exchange: Exchange
    # set once the gRPC socket answers: plugins defer work that can wait
    # (the shim zygote) until then, so that it does not slow start-up
    serving: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(slots=True, kw_only=True)
class InitContext:
    """Handed to a plugin's init: its dirs, config, and the plugins before it."""

    registration: Registration
    root_dir: str
    state_dir: str
    config: Any
    meta: PluginMeta
    plugins: PluginSet
    daemon: DaemonContext

    def get(self, type_: str, id_: str = "") -> Any:
        return self.plugins.get(type_, id_)

    def get_all(self, type_: str) -> dict[str, Any]:
        return self.plugins.instances(type_)


class PluginSet:
    """The plugins in init order; lookups return only those that are ok."""

    def __init__(self) -> None:
        self._plugins: list[Plugin] = []

    def __iter__(self) -> Iterator[Plugin]:
        return iter(self._plugins)

    def add(self, plugin: Plugin) -> None:
        self._plugins.append(plugin)

    def instances(self, type_: str) -> dict[str, Any]:
        return {
            p.registration.id: p.instance
            for p in self._plugins
            if p.registration.type == type_ and p.error is None
        }

    def get(self, type_: str, id_: str = "") -> Any:
        """The one ok plugin of a type (or the one with ``id_``)."""
        found = self.instances(type_)
        if id_:
            if id_ not in found:
                raise NotFound(f"plugin {type_}.{id_}")
            return found[id_]
        if not found:
            raise NotFound(f"no plugins registered for {type_}")
        return next(iter(found.values()))


class Registry:
    """Collects registrations (from pluggy hooks) and initialises them."""

    def __init__(self) -> None:
        self._registrations: dict[str, Registration] = {}

    def add(self, registration: Registration) -> None:
        if not registration.type or not registration.id:
            raise InvalidArgument(f"plugin {registration.uri!r}: type and id are required")
        if registration.uri in self._registrations:
            raise InvalidArgument(f"plugin {registration.uri!r} registered twice")
        self._registrations[registration.uri] = registration

    def registrations(self) -> list[Registration]:
        return list(self._registrations.values())

    def ordered(self, disabled: frozenset[str] = frozenset()) -> list[Registration]:
        """Registrations in an order where every plugin follows the types it requires."""
        regs = [r for r in self._registrations.values() if r.uri not in disabled]
        by_type: dict[str, list[Registration]] = {}
        for reg in regs:
            by_type.setdefault(reg.type, []).append(reg)
        order: list[Registration] = []
        state: dict[str, str] = {}

        def visit(reg: Registration, path: tuple[str, ...]) -> None:
            if state.get(reg.uri) == "done":
                return
            if state.get(reg.uri) == "visiting":
                cycle = " -> ".join((*path[path.index(reg.uri):], reg.uri))
                raise InvalidArgument(f"plugin dependency cycle: {cycle}")
            state[reg.uri] = "visiting"
            for req in reg.requires:
                deps = (
                    [r for r in regs if ALL_TYPES not in r.requires]
                    if req == ALL_TYPES
                    else by_type.get(req, [])
                )
                for dep in deps:
                    if dep.uri != reg.uri:
                        visit(dep, (*path, reg.uri))
            state[reg.uri] = "done"
            order.append(reg)

        for reg in regs:
            visit(reg, ())
        return order

    async def init_all(
        self,
        *,
        configs: Mapping[str, Any],
        disabled: frozenset[str],
        daemon: DaemonContext,
    ) -> PluginSet:
        plugins = PluginSet()
        for reg in self.ordered(disabled):
            meta = PluginMeta()
            plugin = Plugin(registration=reg, meta=meta)
            ctx = InitContext(
                registration=reg,
                root_dir=os.path.join(daemon.root, reg.uri),
                state_dir=os.path.join(daemon.state, reg.uri),
                config=configs.get(reg.uri),
                meta=meta,
                plugins=plugins,
                daemon=daemon,
            )
            try:
                result = reg.init(ctx)
                plugin.instance = await result if inspect.isawaitable(result) else result
            except SkipPlugin as exc:
                plugin.error = exc
                log.info("plugin skipped", plugin=reg.uri, reason=str(exc))
            except Exception as exc:  # noqa: BLE001 - one plugin must not stop the others
                plugin.error = exc
                log.warning("plugin failed to load", plugin=reg.uri, error=str(exc), exc_info=True)
            else:
                log.debug("plugin loaded", plugin=reg.uri)
            plugins.add(plugin)
        return plugins


def check_required(plugins: PluginSet, required: list[str]) -> None:
    """Refuse to start when a plugin named in ``required_plugins`` is not ok."""
    status = {p.registration.uri: p for p in plugins}
    for uri in required:
        plugin = status.get(uri)
        if plugin is None:
            raise FailedPrecondition(f"required plugin {uri!r} is not registered or is disabled")
        if plugin.error is not None:
            raise FailedPrecondition(f"required plugin {uri!r} did not load: {plugin.error}")
