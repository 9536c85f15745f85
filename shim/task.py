"""``containerd.task.v2.Task``: protobuf in, processes and events out.

Behaviour is containerd 1.6's runtime/v2/runc/task/service.go and
container.go: the same events in the same order (/tasks/create, start,
exec-added, exec-started, exit, delete, paused, resumed, oom), the same
bundle files (``options.json``, ``runtime``, ``init.pid``, ``<exec>.pid``) that
the ``delete`` action reads back, and Shutdown that only ends the shim once
its last container is deleted.

Exits come from the reaper.  Each is matched to a process by pid and reported
exactly once (Wait result + /tasks/exit).  Two races are handled as
containerd does with its locks: an exec'd process may exit before ``runc
exec`` returns its pid (the exit is parked until the pid is known, ignoring
exits reaped before the runtime was run, in case of pid reuse), and a process
may exit while Start is still answering (its exit waits for the start event).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from google.protobuf import empty_pb2
from google.protobuf.any_pb2 import Any
from google.protobuf.timestamp_pb2 import Timestamp

from lamina.api.events import task_pb2 as events
from lamina.api.runtime import runc_options_pb2, task_pb2
from lamina.api.types import mount_pb2
from lamina.api.types import task_pb2 as types
from lamina.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, NotImplemented_
from lamina.core.fsutil import atomic_write
from lamina.core.mounts import Mount
from lamina.core.ttrpc import Context, Method, Server
from lamina.shim import cgroups
from lamina.shim import rootfs as shim_rootfs
from lamina.shim.events import Publisher, pack
from lamina.shim.log import log
from lamina.shim.oom import OOMWatcher
from lamina.shim.process import Exec, Init, Process, Stdio
from lamina.shim.reaper import Reaper
from lamina.shim.runc import DEFAULT_ROOT, Runtime

SERVICE = "containerd.task.v2.Task"
OPTIONS_TYPE = "containerd.runc.v1.Options"
GO_ZERO_TIME = -62135596800  # time.Time{} as containerd's gogo Timestamp
_STATUS = {"created": types.CREATED, "running": types.RUNNING, "stopped": types.STOPPED,
           "paused": types.PAUSED, "pausing": types.PAUSING}
_PARKED_EXITS = 1024

EMPTY = empty_pb2.Empty()


def timestamp(ns: int) -> Timestamp:
    ts = Timestamp()
    if ns:
        ts.FromNanoseconds(ns)
    else:
        ts.seconds = GO_ZERO_TIME
    return ts


def should_kill_all_on_exit(spec: shim_rootfs.Spec) -> bool:
    """Without its own pid namespace, a container's other processes outlive
    init; containerd kills them when init exits (runc/util.go)."""
    for ns in (spec.get("linux") or {}).get("namespaces") or []:
        if ns.get("type") == "pid" and not ns.get("path"):
            return False
    return True


class Container:
    def __init__(self, id: str, bundle: str, init: Init, kill_all: bool) -> None:
        self.id = id
        self.bundle = bundle
        self.init = init
        self.kill_all = kill_all
        self.execs: dict[str, Exec] = {}
        self.cgroup: cgroups.Cgroup | None = None
        self.oom: OOMWatcher | None = None

    def processes(self) -> list[Process]:
        return [self.init, *self.execs.values()]

    def process(self, exec_id: str) -> Process:
        if not exec_id:
            return self.init
        found = self.execs.get(exec_id)
        if found is None:
            raise NotFound(f"process does not exist {exec_id}")
        return found


class TaskService:
    def __init__(self, *, namespace: str, publisher: Publisher, reaper_factory: Callable[..., Reaper],
                 on_shutdown: Callable[[], None]) -> None:
        self.namespace = namespace
        self.publisher = publisher
        self.reaper = reaper_factory(self.on_exit)
        self.containers: dict[str, Container] = {}
        self._on_shutdown = on_shutdown
        self._seq = 0
        self._parked: OrderedDict[int, tuple[int, int]] = OrderedDict()
        self._starting: dict[int, int | None] = {}  # id(process) -> exit held back
        self._creating: dict[str, asyncio.Future[task_pb2.CreateTaskResponse]] = {}  # container id -> its Create

    def register(self, server: Server) -> None:
        handlers: dict[str, tuple[type, Callable[..., Awaitable[object]]]] = {
            "State": (task_pb2.StateRequest, self.state),
            "Create": (task_pb2.CreateTaskRequest, self.create),
            "Start": (task_pb2.StartRequest, self.start),
            "Delete": (task_pb2.DeleteRequest, self.delete),
            "Pids": (task_pb2.PidsRequest, self.pids),
            "Pause": (task_pb2.PauseRequest, self.pause),
            "Resume": (task_pb2.ResumeRequest, self.resume),
            "Checkpoint": (task_pb2.CheckpointTaskRequest, self.checkpoint),
            "Kill": (task_pb2.KillRequest, self.kill),
            "Exec": (task_pb2.ExecProcessRequest, self.exec),
            "ResizePty": (task_pb2.ResizePtyRequest, self.resize_pty),
            "CloseIO": (task_pb2.CloseIORequest, self.close_io),
            "Update": (task_pb2.UpdateTaskRequest, self.update),
            "Wait": (task_pb2.WaitRequest, self.wait),
            "Stats": (task_pb2.StatsRequest, self.stats),
            "Connect": (task_pb2.ConnectRequest, self.connect),
            "Shutdown": (task_pb2.ShutdownRequest, self.shutdown),
        }
        server.register(SERVICE, {name: Method(t, h) for name, (t, h) in handlers.items()})  # type: ignore[arg-type]

    def _container(self, id: str) -> Container:
        found = self.containers.get(id)
        if found is None:
            raise NotFound("container not created")
        return found

    # -- exits ---------------------------------------------------------------

    def on_exit(self, pid: int, status: int) -> None:
        self._seq += 1
        for c in self.containers.values():
            for p in c.processes():
                if p.pid == pid and not p.exit_claimed:
                    self._exited(c, p, status)
                    return
        self._parked[pid] = (status, self._seq)
        while len(self._parked) > _PARKED_EXITS:
            self._parked.popitem(last=False)

    def _claim_parked(self, c: Container, p: Process) -> None:
        parked = self._parked.pop(p.pid, None)
        if parked is not None and parked[1] > p.spawn_seq and not p.exit_claimed:
            self._exited(c, p, parked[0])

    def _exited(self, c: Container, p: Process, status: int) -> None:
        p.exit_claimed = True
        if id(p) in self._starting:
            self._starting[id(p)] = status
            return
        asyncio.get_running_loop().create_task(self._report_exit(c, p, status))

    async def _report_exit(self, c: Container, p: Process, status: int) -> None:
        if p is c.init and c.kill_all:
            with contextlib.suppress(Exception):
                await c.init.runtime.kill(c.id, signal.SIGKILL, all=True)
        if p.io is not None:
            await p.io.drain()
        if p is c.init and c.oom is not None:
            c.oom.check()  # a kill of the init is published before its exit
        p.set_exited(status)
        self.publisher.publish("/tasks/exit", events.TaskExit(
            container_id=c.id, id=p.id, pid=p.pid, exit_status=status, exited_at=timestamp(p.exited_at_ns)))

    # -- lifecycle -----------------------------------------------------------

    async def create(self, r: task_pb2.CreateTaskRequest, ctx: Context) -> task_pb2.CreateTaskResponse:
        """Runs to its end even when the daemon that sent it goes away (the ttrpc server cancels
        such requests): cancelled half way, the rootfs would be unmounted under a runc create that
        goes on, and runc would make its mount points in the bare bundle directory."""
        if r.id in self.containers or r.id in self._creating:
            raise AlreadyExists(f"container {r.id}")
        job = asyncio.ensure_future(self._create(r))
        self._creating[r.id] = job
        job.add_done_callback(lambda _: self._creating.pop(r.id, None))
        return await asyncio.shield(job)

    async def _create(self, r: task_pb2.CreateTaskRequest) -> task_pb2.CreateTaskResponse:
        if r.checkpoint:
            raise NotImplemented_("restoring a checkpoint")
        opts = runc_options_pb2.Options()
        if r.options.type_url:
            if r.options.type_url.rsplit("/", 1)[-1] != OPTIONS_TYPE:
                raise InvalidArgument(f"runtime options type {r.options.type_url!r}")
            opts.ParseFromString(r.options.value)
        # State-dir files, written without fsync as containerd-shim-runc-v2 does.
        saved = {k: v for k, v in (("no_pivot_root", opts.no_pivot_root), ("no_new_keyring", opts.no_new_keyring),
                                   ("shim_cgroup", opts.shim_cgroup), ("binary_name", opts.binary_name),
                                   ("root", opts.root), ("systemd_cgroup", opts.systemd_cgroup)) if v}
        atomic_write(os.path.join(r.bundle, "options.json"), json.dumps(saved).encode(), 0o600, sync=False)
        atomic_write(os.path.join(r.bundle, "runtime"), opts.binary_name.encode(), 0o600, sync=False)

        spec = shim_rootfs.load_spec(r.bundle)
        rootfs = shim_rootfs.prepare(
            r.bundle, spec, [Mount(type=m.type, source=m.source, options=tuple(m.options)) for m in r.rootfs])
        runtime = Runtime(self.reaper, binary=opts.binary_name, bundle=r.bundle,
                          root=os.path.join(opts.root or DEFAULT_ROOT, self.namespace),
                          systemd_cgroup=opts.systemd_cgroup)
        init = Init(r.id, r.bundle, runtime, Stdio(r.stdin, r.stdout, r.stderr, r.terminal),
                    rootfs=rootfs, no_pivot=opts.no_pivot_root, no_new_keyring=opts.no_new_keyring)
        init.spawn_seq = self._seq
        try:
            await init.create()
        except BaseException:
            shim_rootfs.release(rootfs)
            raise
        c = Container(r.id, r.bundle, init, should_kill_all_on_exit(spec))
        with contextlib.suppress(OSError, ValueError):
            c.cgroup = cgroups.Cgroup(init.pid)
        self.containers[r.id] = c
        log.info("task created", id=r.id, pid=init.pid)
        self.publisher.publish("/tasks/create", events.TaskCreate(
            container_id=r.id, bundle=r.bundle,
            rootfs=[mount_pb2.Mount(type=m.type, source=m.source, target=m.target, options=m.options)
                    for m in r.rootfs],
            io=events.TaskIO(stdin=r.stdin, stdout=r.stdout, stderr=r.stderr, terminal=r.terminal),
            checkpoint=r.checkpoint, pid=init.pid))
        self._claim_parked(c, init)
        return task_pb2.CreateTaskResponse(pid=init.pid)

    async def start(self, r: task_pb2.StartRequest, ctx: Context) -> task_pb2.StartResponse:
        c = self._container(r.id)
        p = c.process(r.exec_id)
        self._starting[id(p)] = None
        try:
            if isinstance(p, Exec):
                p.spawn_seq = self._seq
            await p.start()  # type: ignore[attr-defined]
            if p is c.init:
                if c.cgroup is not None and not c.cgroup.v2:
                    c.oom = OOMWatcher.start(c.cgroup, lambda: self.publisher.publish(
                        "/tasks/oom", events.TaskOOM(container_id=c.id)))
                self.publisher.publish("/tasks/start", events.TaskStart(container_id=c.id, pid=p.pid))
            else:
                self.publisher.publish("/tasks/exec-started", events.TaskExecStarted(
                    container_id=c.id, exec_id=r.exec_id, pid=p.pid))
        finally:
            held = self._starting.pop(id(p), None)
            if held is not None:
                asyncio.get_running_loop().create_task(self._report_exit(c, p, held))
        if not p.exit_claimed:
            self._claim_parked(c, p)
        return task_pb2.StartResponse(pid=p.pid)

    async def delete(self, r: task_pb2.DeleteRequest, ctx: Context) -> task_pb2.DeleteResponse:
        c = self._container(r.id)
        p = c.process(r.exec_id)
        await p.delete()  # type: ignore[attr-defined]
        if r.exec_id:
            del c.execs[r.exec_id]
        else:
            for e in list(c.execs.values()):
                await e.close_io()
            if c.oom is not None:
                c.oom.stop()
            del self.containers[r.id]
            self.publisher.publish("/tasks/delete", events.TaskDelete(
                container_id=c.id, pid=p.pid, exit_status=p.exit_status, exited_at=timestamp(p.exited_at_ns)))
            log.info("task deleted", id=r.id)
        return task_pb2.DeleteResponse(pid=p.pid, exit_status=p.exit_status, exited_at=timestamp(p.exited_at_ns))

    async def exec(self, r: task_pb2.ExecProcessRequest, ctx: Context) -> empty_pb2.Empty:
        c = self._container(r.id)
        if r.exec_id in c.execs:
            raise AlreadyExists(f"id {r.exec_id}")
        if not r.exec_id:
            raise InvalidArgument("exec id must not be empty")
        if c.init.status() in ("stopped", "deleted"):
            raise FailedPrecondition("cannot exec in a stopped state")
        try:
            json.loads(r.spec.value)
        except ValueError as exc:
            raise InvalidArgument(f"exec process spec: {exc}") from None
        c.execs[r.exec_id] = Exec(r.exec_id, c.init, Stdio(r.stdin, r.stdout, r.stderr, r.terminal),
                                  r.spec.value)
        self.publisher.publish("/tasks/exec-added", events.TaskExecAdded(container_id=c.id, exec_id=r.exec_id))
        return EMPTY

    async def state(self, r: task_pb2.StateRequest, ctx: Context) -> task_pb2.StateResponse:
        c = self._container(r.id)
        p = c.process(r.exec_id)
        s = p.stdio
        return task_pb2.StateResponse(
            id=p.id, bundle=c.bundle, pid=p.pid, status=_STATUS.get(p.status(), types.UNKNOWN),
            stdin=s.stdin, stdout=s.stdout, stderr=s.stderr, terminal=s.terminal,
            exit_status=p.exit_status, exited_at=timestamp(p.exited_at_ns))

    async def wait(self, r: task_pb2.WaitRequest, ctx: Context) -> task_pb2.WaitResponse:
        p = self._container(r.id).process(r.exec_id)
        await p.exited.wait()
        return task_pb2.WaitResponse(exit_status=p.exit_status, exited_at=timestamp(p.exited_at_ns))

    async def kill(self, r: task_pb2.KillRequest, ctx: Context) -> empty_pb2.Empty:
        p = self._container(r.id).process(r.exec_id)
        await p.kill(r.signal, r.all)  # type: ignore[attr-defined]
        return EMPTY

    async def pause(self, r: task_pb2.PauseRequest, ctx: Context) -> empty_pb2.Empty:
        c = self._container(r.id)
        await c.init.pause()
        self.publisher.publish("/tasks/paused", events.TaskPaused(container_id=c.id))
        return EMPTY

    async def resume(self, r: task_pb2.ResumeRequest, ctx: Context) -> empty_pb2.Empty:
        c = self._container(r.id)
        await c.init.resume()
        self.publisher.publish("/tasks/resumed", events.TaskResumed(container_id=c.id))
        return EMPTY

    async def pids(self, r: task_pb2.PidsRequest, ctx: Context) -> task_pb2.PidsResponse:
        c = self._container(r.id)
        by_pid = {e.pid: e.id for e in c.execs.values() if e.pid}
        resp = task_pb2.PidsResponse()
        for pid in await c.init.runtime.ps(c.id):
            info = resp.processes.add(pid=pid)
            if pid in by_pid:
                info.info.CopyFrom(pack(runc_options_pb2.ProcessDetails(exec_id=by_pid[pid])))
        return resp

    async def resize_pty(self, r: task_pb2.ResizePtyRequest, ctx: Context) -> empty_pb2.Empty:
        self._container(r.id).process(r.exec_id).resize(r.width, r.height)
        return EMPTY

    async def close_io(self, r: task_pb2.CloseIORequest, ctx: Context) -> empty_pb2.Empty:
        p = self._container(r.id).process(r.exec_id)
        if r.stdin:
            p.close_stdin()
        return EMPTY

    async def update(self, r: task_pb2.UpdateTaskRequest, ctx: Context) -> empty_pb2.Empty:
        c = self._container(r.id)
        try:
            json.loads(r.resources.value or b"null")
        except ValueError as exc:
            raise InvalidArgument(f"resources: {exc}") from None
        await c.init.update(r.resources.value)
        return EMPTY

    async def checkpoint(self, r: task_pb2.CheckpointTaskRequest, ctx: Context) -> empty_pb2.Empty:
        c = self._container(r.id)
        if shutil.which("criu") is None:
            raise NotImplemented_("checkpoint needs CRIU, which is not installed")
        opts = runc_options_pb2.CheckpointOptions()
        if r.options.type_url:
            opts.ParseFromString(r.options.value)
        args = ["--image-path", r.path, "--work-path", opts.work_path or os.path.join(c.bundle, "criu-work")]
        if not opts.exit:
            args.append("--leave-running")
        for flag, on in (("--tcp-established", opts.open_tcp), ("--ext-unix-sk", opts.external_unix_sockets),
                         ("--shell-job", opts.terminal), ("--file-locks", opts.file_locks)):
            if on:
                args.append(flag)
        for ns in opts.empty_namespaces:
            args += ["--empty-ns", ns]
        await c.init.checkpoint(args)
        return EMPTY

    async def stats(self, r: task_pb2.StatsRequest, ctx: Context) -> task_pb2.StatsResponse:
        c = self._container(r.id)
        if c.cgroup is None:
            raise NotFound("cgroup does not exist")
        metrics = c.cgroup.stats()
        return task_pb2.StatsResponse(stats=Any(type_url=metrics.DESCRIPTOR.full_name,
                                                value=metrics.SerializeToString()))

    async def connect(self, r: task_pb2.ConnectRequest, ctx: Context) -> task_pb2.ConnectResponse:
        """The task's pid, 0 if there is none; a Create under way is waited for first, so that a
        restarted daemon (which connects to decide whether the shim has a task) never sees a task
        come into being after it was told there was none."""
        creating = self._creating.get(r.id)
        if creating is not None:
            await asyncio.wait([creating])
        c = self.containers.get(r.id)
        return task_pb2.ConnectResponse(shim_pid=os.getpid(), task_pid=c.init.pid if c else 0)

    async def shutdown(self, r: task_pb2.ShutdownRequest, ctx: Context) -> empty_pb2.Empty:
        if not self.containers:
            log.info("shutting down: no containers left")
            self._on_shutdown()
        return EMPTY
