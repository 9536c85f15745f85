"""Workloads on metadata paths: daemon cold start, snapshot cycles, and listing 1,000 images.

The 1,000 images are created over gRPC with lamina's generated stubs, the
same Images.Create call against both daemons (``ctr images tag`` in a loop
would spend minutes in client start-up); only ``ctr images ls -q`` is timed.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc
from google.protobuf import empty_pb2

from bench import daemons, procs
from bench.ctr import NAMESPACE
from bench.daemons import Daemon
from bench.images import BUSYBOX_NAME
from bench.stats import Better, Metric
from bench.workloads.base import SIDES, Context, Samples
from lamina.api.services import images_pb2, images_pb2_grpc, version_pb2_grpc

GRPC_TIMEOUT = 30.0
RPC_CALLS = 1000
RPC_WARMUP = 100


def cold_start(ctx: Context) -> list[Metric]:
    """Spawn a fresh daemon on empty dirs; milliseconds until ``ctr version`` answers."""
    s = Samples()
    for i in range(ctx.plan.cold_starts):
        for name in SIDES if i % 2 == 0 else SIDES[::-1]:
            def once(name: str = name) -> float:
                fresh = daemons.spawn(name, ctx.base)
                try:
                    return 1000 * daemons.wait_ready(fresh)
                finally:
                    daemons.stop(fresh)
            s.run(name, once)
    return [s.metric("cold_start", "daemon start → ctr version answers", "ms")]


def snapshots(ctx: Context) -> list[Metric]:
    s = Samples()
    for i, d in ctx.ab(ctx.plan.snapshot_cycles):
        def once(d: Daemon = d, i: int = i) -> float:
            key, name = f"{ctx.run_id}-snap{i}-active", f"{ctx.run_id}-snap{i}"
            seconds = 0.0
            for args in (("prepare", key), ("commit", name, key), ("rm", name)):
                seconds += d.ctr.timed("snapshots", *args)
            return 3 / seconds
        s.run(d, once)
    return [s.metric("snapshots", "ctr snapshots prepare/commit/rm", "ops/s", better=Better.HIGHER)]


def _images_stub(d: Daemon) -> tuple[grpc.Channel, images_pb2_grpc.ImagesStub]:
    channel = grpc.insecure_channel(f"unix://{d.address}")
    return channel, images_pb2_grpc.ImagesStub(channel)


METADATA = (("containerd-namespace", NAMESPACE),)


def _create_images(d: Daemon, names: list[str]) -> None:
    channel, stub = _images_stub(d)
    with channel:
        target = stub.Get(images_pb2.GetImageRequest(name=BUSYBOX_NAME), metadata=METADATA,
                          timeout=GRPC_TIMEOUT).image.target

        def create(name: str) -> None:
            stub.Create(images_pb2.CreateImageRequest(image=images_pb2.Image(name=name, target=target)),
                        metadata=METADATA, timeout=GRPC_TIMEOUT)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, names))


def _delete_images(d: Daemon, names: list[str]) -> None:
    channel, stub = _images_stub(d)
    with channel:
        def delete(name: str) -> None:
            try:
                stub.Delete(images_pb2.DeleteImageRequest(name=name), metadata=METADATA, timeout=GRPC_TIMEOUT)
            except grpc.RpcError:
                pass
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(delete, names))


def _check_listed(d: Daemon, names: list[str]) -> None:
    missing = set(names) - set(d.ctr.run("images", "ls", "-q").split())
    if missing:
        raise RuntimeError(f"{len(missing)} of the {len(names)} created images are not listed")


def images_ls(ctx: Context) -> list[Metric]:
    n = ctx.plan.images
    names = [f"bench.local/ls/{ctx.run_id}-{k:04d}:latest" for k in range(n)]
    s = Samples()
    try:
        for _i, d in ctx.ab(ctx.plan.ls_repeats):
            def once(d: Daemon = d) -> float:
                ctx.busybox(d)
                ctx.setup(d, f"creating {n} images over gRPC", lambda: _create_images(d, names))
                ctx.setup(d, f"listing {n} images", lambda: _check_listed(d, names))
                seconds = d.ctr.timed("images", "ls", "-q")
                return 1000 * seconds
            s.run(d, once)
    finally:
        for name in SIDES:
            _delete_images(ctx.daemons[name], names)
    return [s.metric("images_ls", f"ctr images ls -q, {n} images", "ms")]


def _version_calls(d: Daemon, n: int) -> float:
    """Daemon CPU milliseconds per ``Version`` call, over ``n`` calls on one connection."""
    channel = grpc.insecure_channel(f"unix://{d.address}")
    with channel:
        call = version_pb2_grpc.VersionStub(channel).Version
        for _ in range(RPC_WARMUP):
            call(empty_pb2.Empty(), timeout=GRPC_TIMEOUT)
        before = procs.cpu_seconds(d.pid)
        for _ in range(n):
            call(empty_pb2.Empty(), timeout=GRPC_TIMEOUT)
        return 1000 * (procs.cpu_seconds(d.pid) - before) / n


def rpc_cpu(ctx: Context) -> list[Metric]:
    """The daemon's CPU per simple call: the gRPC transport's own cost, all but no handler work."""
    s = Samples()
    for _i, d in ctx.ab(ctx.plan.rpc_rounds):
        s.run(d, lambda d=d: _version_calls(d, RPC_CALLS))
    return [s.metric("rpc_cpu", f"daemon CPU per Version call ({RPC_CALLS} calls)", "ms")]
