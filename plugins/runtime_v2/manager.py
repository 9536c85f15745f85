"""The task manager: one shim per task, created, tracked, deleted and recovered.

Follows containerd 1.6 runtime/v2 (manager.go, shim.go, shim_load.go):

- Create makes the bundle, opens the shim log FIFO, runs ``<shim> start``
  (for lamina's own shim, asks the zygote, ``zygote.py``, to fork it),
  connects to the address it prints and sends the task ``Create`` (the shim
  mounts the rootfs from it).  If anything fails the shim is asked to delete
  and shut down and the bundle is removed.
- Delete sends the shim ``Delete``, then ``Shutdown``, closes the connection
  and removes the bundle (unmounting the rootfs).  A running task is refused
  here with FailedPrecondition instead of the shim's unknown error.
- When a shim's connection closes while its task is still tracked, the shim
  died: ``<shim> delete`` cleans up, and ``/tasks/exit`` and
  ``/tasks/delete`` are published on its behalf (status 255 if even that
  fails).  Events of live shims come only from the shims themselves.
- ``load_existing`` walks the bundles at start-up, reconnects to shims that
  answer with a task and cleans up after the others (a shim without a task
  is what a daemon killed during Create leaves).  ``close`` drops the connections
  and leaves every shim running: a daemon restart never stops a container.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence

from lamina.api.events import task_pb2 as events_pb2
from lamina.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    LaminaError,
    NotFound,
    Unavailable,
)
from lamina.core.events import Exchange
from lamina.core.log import get_logger
from lamina.core.metadata.containers import AnyValue, Container, ContainerStore
from lamina.core.mounts import Mount
from lamina.core.ttrpc import Client
from lamina.plugins.runtime_v2.binary import Exit, ShimBinary, resolve
from lamina.plugins.runtime_v2.bundle import Bundle, load_bundle, new_bundle, parse_spec
from lamina.plugins.runtime_v2.shim import IO, ShimTask, Status
from lamina.plugins.runtime_v2.shimlog import ShimLog
from lamina.plugins.runtime_v2.zygote import Zygote, is_lamina_shim

log = get_logger()

LOAD_TIMEOUT = 5.0
CLEANUP_TIMEOUT = 5.0
_NOT_DELETABLE = (Status.RUNNING, Status.PAUSED, Status.PAUSING)


def _check_rootfs(spec: Mapping[str, object], rootfs: Sequence[Mount]) -> None:
    """Without rootfs mounts the spec must name an existing host directory
    (Docker Engine's way); otherwise runc would fail with a far vaguer error."""
    if rootfs:
        return
    root = spec.get("root")
    path = root.get("path", "") if isinstance(root, dict) else ""
    if not path:
        raise InvalidArgument("no rootfs: the task has no rootfs mounts and the spec has no root.path")
    if not os.path.isabs(path):
        raise InvalidArgument(
            f"no rootfs: the task has no rootfs mounts and the spec's root.path {path!r} is not an absolute path"
        )
    if not os.path.isdir(path):
        raise InvalidArgument(f"rootfs {path!r} does not exist or is not a directory")


class TaskManager:
    """Tasks of every namespace, keyed by (namespace, container id)."""

    def __init__(
        self,
        *,
        root: str,
        state: str,
        address: str,
        ttrpc_address: str,
        exchange: Exchange,
        containers: ContainerStore,
        runtimes: Mapping[str, str],
        zygote: Zygote | None = None,
    ) -> None:
        for path in (root, state):
            os.makedirs(path, mode=0o711, exist_ok=True)
        self.root = root
        self.state = state
        self._address = address
        self._ttrpc_address = ttrpc_address
        self._exchange = exchange
        self._containers = containers
        self.runtimes = dict(runtimes)
        self.zygote = zygote
        self._tasks: dict[tuple[str, str], ShimTask] = {}
        self._creating: set[tuple[str, str]] = set()
        self._watchers: set[asyncio.Task[None]] = set()
        self._closing = False

    # -- lookups ---------------------------------------------------------

    def get(self, namespace: str, id_: str) -> ShimTask:
        task = self._tasks.get((namespace, id_))
        if task is None:
            raise NotFound(message=f"task {id_} not found")
        return task

    def list(self, namespace: str) -> list[ShimTask]:
        return [t for (ns, _), t in sorted(self._tasks.items()) if ns == namespace]

    def all(self) -> list[ShimTask]:
        """Every namespace's tasks: one shim each."""
        return list(self._tasks.values())

    def _binary(self, path: str, bundle: Bundle) -> ShimBinary:
        zygote = self.zygote if self.zygote is not None and is_lamina_shim(path) else None
        return ShimBinary(path=path, bundle=bundle, address=self._address, ttrpc_address=self._ttrpc_address,
                          zygote=zygote)

    # -- create ----------------------------------------------------------

    async def create(
        self,
        namespace: str,
        container: Container,
        *,
        rootfs: Sequence[Mount],
        io: IO,
        options: AnyValue | None,
        runtime_path: str = "",
    ) -> tuple[ShimTask, int]:
        """Start a shim for ``container`` and create its task; (task, pid)."""
        key = (namespace, container.id)
        if key in self._tasks or key in self._creating:
            raise AlreadyExists(f"task {container.id}")
        if container.spec is None:
            raise InvalidArgument(f'container "{container.id}" has no spec')
        _check_rootfs(parse_spec(container.spec.value), rootfs)
        runtime = container.runtime.name
        binary_path = resolve(runtime_path or runtime, self.runtimes)
        options = options or container.runtime.options
        self._creating.add(key)
        try:
            task = await self._start_shim(namespace, container, binary_path, options)
            try:
                pid = await task.create(rootfs=rootfs, io=io, options=options)
            except BaseException as exc:
                await self._abandon(task)
                if isinstance(exc, LaminaError):
                    raise type(exc)(f"failed to create shim task: {exc.context}") from None
                raise
            self._track(task)
            log.info("task created", namespace=namespace, id=container.id, runtime=runtime, pid=pid)
            return task, pid
        finally:
            self._creating.discard(key)

    async def _start_shim(
        self, namespace: str, container: Container, binary_path: str, options: AnyValue | None
    ) -> ShimTask:
        assert container.spec is not None
        bundle = await asyncio.to_thread(
            new_bundle, self.root, self.state, namespace, container.id, container.spec.value
        )
        shim_log: ShimLog | None = None
        try:
            shim_log = ShimLog(bundle.file("log"), id_=container.id, namespace=namespace,
                               runtime=container.runtime.name)
            shim_log.start()
            binary = self._binary(binary_path, bundle)
            debug = log.is_enabled_for(logging.DEBUG)
            address = await binary.start(options, debug=debug)
            bundle.write("shim-binary-path", binary_path)
            if bundle.read("address") is None:
                bundle.write("address", address)
            try:
                client = await Client.connect(address, timeout=LOAD_TIMEOUT)
            except Unavailable:
                with contextlib.suppress(Exception):
                    await binary.delete()
                raise
        except BaseException:
            if shim_log is not None:
                await shim_log.close()
            await asyncio.to_thread(bundle.delete)
            raise
        return ShimTask(bundle=bundle, client=client, binary=binary, runtime=container.runtime.name, log=shim_log)

    async def _abandon(self, task: ShimTask) -> None:
        """Undo a shim whose task could not be created (containerd's cleanup)."""
        try:
            async with asyncio.timeout(CLEANUP_TIMEOUT):
                with contextlib.suppress(LaminaError):
                    await task.delete()
                await task.shutdown()
        except (TimeoutError, LaminaError) as exc:
            log.warning("failed to shut down shim", id=task.id, namespace=task.namespace, error=str(exc))
        await task.close()
        # A shim may fail Create after the OCI runtime made the container
        # (containerd-shim-runc-v2 does when a stdio path cannot be opened);
        # the shim's delete action removes whatever is left.
        try:
            await task.binary.delete()
        except (OSError, TimeoutError, LaminaError, ValueError) as exc:
            log.debug("shim delete after failed create", id=task.id, error=str(exc))
        try:
            await asyncio.to_thread(task.bundle.delete)
        except OSError as exc:
            log.error("failed to delete bundle", id=task.id, path=task.bundle.path, error=str(exc))

    # -- delete ----------------------------------------------------------

    async def delete(self, namespace: str, id_: str, *, exec_id: str = "") -> Exit:
        """Delete the task (or, with ``exec_id``, one of its exec processes)."""
        task = self.get(namespace, id_)
        state = await task.state(exec_id)
        if state.status in _NOT_DELETABLE:
            what = f"process {exec_id}" if exec_id else f"task {id_}"
            raise FailedPrecondition(f"{what} must be stopped before deletion: {state.status.name.lower()}")
        if exec_id:
            return await task.delete(exec_id)
        try:
            exit_ = await task.delete()
        except Unavailable:
            if self._tasks.get((namespace, id_)) is not task:
                raise NotFound(message=f"task {id_} not found") from None
            del self._tasks[(namespace, id_)]
            return await self._cleanup_dead(task.bundle, task.binary, task)
        if self._tasks.get((namespace, id_)) is task:
            del self._tasks[(namespace, id_)]
        try:
            await task.shutdown()
        except (TimeoutError, LaminaError) as exc:
            log.error("failed to shutdown shim task", id=id_, namespace=namespace, error=str(exc))
        await task.close()
        try:
            await asyncio.to_thread(task.bundle.delete)
        except OSError as exc:
            log.error("failed to delete bundle", id=id_, path=task.bundle.path, error=str(exc))
        log.info("task deleted", namespace=namespace, id=id_, exit_status=exit_.status)
        return exit_

    # -- dead shims ------------------------------------------------------

    def _track(self, task: ShimTask) -> None:
        self._tasks[(task.namespace, task.id)] = task
        watcher = asyncio.create_task(self._watch(task), context=contextvars.Context())
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _watch(self, task: ShimTask) -> None:
        await task.client.wait_closed()
        key = (task.namespace, task.id)
        if self._closing or self._tasks.get(key) is not task:
            return
        del self._tasks[key]
        log.info("shim disconnected", id=task.id, namespace=task.namespace)
        await self._cleanup_dead(task.bundle, task.binary, task)

    async def _cleanup_dead(self, bundle: Bundle, binary: ShimBinary, task: ShimTask | None) -> Exit:
        """``<shim> delete``, remove the bundle, publish exit and delete."""
        log.warning("cleaning up after shim disconnected", id=bundle.id, namespace=bundle.namespace)
        exit_: Exit | None = None
        try:
            exit_ = await binary.delete()
        except (OSError, TimeoutError, LaminaError, ValueError) as exc:
            log.warning("failed to clean up after shim disconnected", id=bundle.id,
                        namespace=bundle.namespace, error=str(exc))
        if task is not None:
            await task.close()
        try:
            await asyncio.to_thread(bundle.delete)
        except OSError as exc:
            log.error("failed to delete bundle", id=bundle.id, path=bundle.path, error=str(exc))
        if exit_ is None:
            exit_ = Exit(pid=0, status=255, exited_at_ns=time.time_ns())
        exited = exit_.exited_at_ns if exit_.exited_at_ns is not None else time.time_ns()
        event_exit = events_pb2.TaskExit(container_id=bundle.id, id=bundle.id, pid=exit_.pid,
                                         exit_status=exit_.status)
        event_exit.exited_at.FromNanoseconds(exited)
        event_delete = events_pb2.TaskDelete(container_id=bundle.id, pid=exit_.pid, exit_status=exit_.status)
        event_delete.exited_at.FromNanoseconds(exited)
        self._exchange.publish(bundle.namespace, "/tasks/exit", event_exit)
        self._exchange.publish(bundle.namespace, "/tasks/delete", event_delete)
        return exit_

    # -- recovery --------------------------------------------------------

    async def load_existing(self) -> None:
        """Reconnect to the shims of a previous daemon; clean up after dead ones."""
        for namespace in _subdirs(self.state):
            for id_ in _subdirs(os.path.join(self.state, namespace)):
                try:
                    await self._load(load_bundle(self.state, namespace, id_))
                except Exception as exc:  # noqa: BLE001 - one bad bundle must not stop the others
                    log.error("failed to load task", namespace=namespace, id=id_, error=str(exc), exc_info=True)
            self._cleanup_work_dirs(namespace)

    async def _load(self, bundle: Bundle) -> None:
        if not os.listdir(bundle.path):
            await asyncio.to_thread(bundle.delete)
            return
        try:
            runtime = self._containers.get(bundle.namespace, bundle.id).runtime.name
        except NotFound:
            runtime = ""
        binary_path = bundle.read("shim-binary-path") or ""
        if not binary_path:
            try:
                binary_path = resolve(runtime, self.runtimes)
            except LaminaError as exc:
                log.error("cannot find the shim of a task, removing its bundle", id=bundle.id,
                          namespace=bundle.namespace, runtime=runtime, error=str(exc))
                await asyncio.to_thread(bundle.delete)
                return
        binary = self._binary(binary_path, bundle)
        task: ShimTask | None = None
        try:
            address = bundle.read("address")
            if not address:
                raise Unavailable("no shim address in bundle")
            client = await Client.connect(address, timeout=LOAD_TIMEOUT)
            task = ShimTask(bundle=bundle, client=client, binary=binary, runtime=runtime,
                            log=ShimLog(bundle.file("log"), id_=bundle.id, namespace=bundle.namespace,
                                        runtime=runtime))
            task.log.start()
            pid = await task.connect(timeout=LOAD_TIMEOUT)
        except (OSError, TimeoutError, LaminaError) as exc:
            log.info("shim of task is gone", id=bundle.id, namespace=bundle.namespace, error=str(exc))
            await self._cleanup_dead(bundle, binary, task)
            return
        if pid == 0:
            # The previous daemon died between starting the shim and its task
            # Create (or between Delete and Shutdown): nothing ran, nobody was
            # told of a task, so the shim goes as after a failed create.
            log.info("shim has no task, removing it", id=bundle.id, namespace=bundle.namespace)
            await self._abandon(task)
            return
        self._track(task)
        log.info("task reconnected", id=bundle.id, namespace=bundle.namespace, runtime=runtime)

    def _cleanup_work_dirs(self, namespace: str) -> None:
        """Work dirs of tasks that did not come back (state is lost on reboot)."""
        for id_ in _subdirs(os.path.join(self.root, namespace)):
            if (namespace, id_) not in self._tasks:
                shutil.rmtree(os.path.join(self.root, namespace, id_), ignore_errors=True)

    async def close(self) -> None:
        """Disconnect from every shim and leave them running."""
        self._closing = True
        for watcher in list(self._watchers):
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        for task in list(self._tasks.values()):
            await task.close()
        self._tasks.clear()
        if self.zygote is not None:
            await self.zygote.close()


def _subdirs(path: str) -> list[str]:
    try:
        entries = os.scandir(path)
    except FileNotFoundError:
        return []
    with entries:
        return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False) and not e.name.startswith("."))
