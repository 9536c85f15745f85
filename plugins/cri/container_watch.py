"""The CRI containers whose tasks run: each one's log copy and the watcher that records its exit.

As containerd 1.6's exit handler (``pkg/cri/server/events.go``
``handleContainerExit``), the watcher waits for the task's exit, lets the
log copy finish reading (at most ``LOG_DRAIN_TIMEOUT``), deletes the task
and only then records exit code, finish time and reason (``Completed``,
``Error``; ``Unknown`` when the shim went away), so a container reads
RUNNING until its output is all in its log.  The daemon closing is not an
exit: the next daemon watches again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from collections.abc import Mapping
from typing import Any

from lamina.core.errors import LaminaError, NotFound
from lamina.core.log import get_logger
from lamina.core.metadata.containers import ContainerStore
from lamina.plugins.cri import K8S_NAMESPACE, container_records
from lamina.plugins.cri.container_logs import ContainerLogger
from lamina.plugins.cri.container_records import ContainerRecord
from lamina.plugins.cri.containers import ContainerStatus
from lamina.plugins.runtime_v2.manager import TaskManager
from lamina.plugins.runtime_v2.shim import ShimTask

log = get_logger()

NS = K8S_NAMESPACE
LOG_DRAIN_TIMEOUT = 5.0
UNKNOWN_EXIT = 255


def fifos(work_dir: str, config: Mapping[str, Any]) -> dict[str, str]:
    """stream -> FIFO path; a container with a terminal has only stdout."""
    streams = ["stdout"] if config.get("tty") else ["stdout", "stderr"]
    return {s: os.path.join(work_dir, s) for s in streams}


async def save_status(containers: ContainerStore, container_id: str, status: ContainerStatus) -> None:
    current = containers.get(NS, container_id)
    updated = dataclasses.replace(current, extensions={
        **current.extensions, container_records.STATUS_EXTENSION: container_records.encode_status(status)})
    await containers.update(NS, updated, [f"extensions.{container_records.STATUS_EXTENSION}"])


class RunningContainers:
    def __init__(self, *, containers: ContainerStore, tasks: TaskManager, max_log_line: int) -> None:
        self._containers = containers
        self._tasks = tasks
        self._max_log_line = max_log_line
        self._loggers: dict[str, ContainerLogger] = {}
        self._exited: dict[str, asyncio.Event] = {}
        self._watchers: set[asyncio.Task[None]] = set()

    def log_to(self, record: ContainerRecord, work_dir: str) -> None:
        """Start copying the container's FIFOs into its log (before its task opens them)."""
        logger = ContainerLogger(record.id, fifos(work_dir, record.config), record.log_path, self._max_log_line)
        self._loggers[record.id] = logger
        logger.start()

    def stop_logging(self, container_id: str) -> None:
        logger = self._loggers.pop(container_id, None)
        if logger is not None:
            logger.close()

    def reopen_log(self, container_id: str) -> bool:
        logger = self._loggers.get(container_id)
        if logger is not None:
            logger.reopen()
        return logger is not None

    def running(self, container_id: str) -> bool:
        return container_id in self._exited

    def watch(self, container_id: str, task: ShimTask) -> None:
        self._exited[container_id] = asyncio.Event()
        watcher = asyncio.create_task(self._wait_exit(container_id, task))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def wait_exited(self, container_id: str, timeout: float) -> bool:
        """True once the exit is recorded (at once for a container not running), False on timeout."""
        event = self._exited.get(container_id)
        if event is None:
            return True
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            return False
        return True

    async def _wait_exit(self, container_id: str, task: ShimTask) -> None:
        try:
            exit_ = await task.wait()
            code, finished, message = exit_.status, exit_.exited_at_ns or time.time_ns(), ""
        except LaminaError as exc:
            try:
                self._tasks.get(NS, container_id)
                return  # the daemon is closing: the next one watches again
            except NotFound:
                code, finished, message = UNKNOWN_EXIT, time.time_ns(), f"the container's shim went away: {exc}"
        logger = self._loggers.pop(container_id, None)
        if logger is not None and not await asyncio.to_thread(logger.done.wait, LOG_DRAIN_TIMEOUT):
            logger.close()
        with contextlib.suppress(NotFound, LaminaError):
            await self._tasks.delete(NS, container_id)
        with contextlib.suppress(NotFound):
            status = container_records.decode_status(self._containers.get(NS, container_id))
            await save_status(self._containers, container_id, dataclasses.replace(
                status, finished_at_ns=finished, exit_code=code, message=message,
                reason="Unknown" if message else ("Completed" if code == 0 else "Error")))
        self._exited.pop(container_id, asyncio.Event()).set()
        log.info("container exited", id=container_id, exit_status=code)

    async def close(self) -> None:
        """The daemon stops: watchers go (their containers keep running); the log copies end with the process."""
        for watcher in list(self._watchers):
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
