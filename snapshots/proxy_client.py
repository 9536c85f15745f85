"""A snapshotter served by another process: containerd's ``snapshots/proxy``.

``ProxySnapshotter`` is a ``Snapshotter`` whose every method is one call of
``containerd.services.snapshots.v1.Snapshots`` on a unix socket, with the
proxy's name in each request's ``snapshotter`` field, as containerd 1.6 sends
it.  The metadata layer wraps it like a built-in backend, so the remote sees
only backend keys (``<ns>/<id>/<key>``) and the labels a backend keeps.

It uses grpcio's synchronous client: the methods already run in a worker
thread (the ``Snapshotter`` contract), and laminad imports this module only
when a ``[proxy_plugins]`` entry asks for it, so a daemon without proxies
never pays for grpcio (nor for ``lamina.client``, which this module
avoids importing: about 80 ms more at start-up).  The channel reconnects by itself with at most one
second between attempts, so a proxy whose socket appears (or comes back)
is used again within a second; until then every call fails ``Unavailable``
naming the proxy and its address, and ``current_error`` reports the same
for ``plugins ls``.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from google.protobuf import field_mask_pb2

from lamina.api.services import snapshots_pb2 as pb
from lamina.api.services import snapshots_pb2_grpc as pb_grpc
from lamina.core.config import MAX_MESSAGE_SIZE
from lamina.core.errors import NotImplemented_, Unavailable, from_status
from lamina.core.log import get_logger
from lamina.core.mount_messages import mounts_from_pb
from lamina.core.mounts import Mount
from lamina.snapshots.base import Info, Match, Usage, WalkFunc
from lamina.snapshots.messages import info_from_pb, info_to_pb

log = get_logger()

_CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_SIZE),
    ("grpc.max_send_message_length", MAX_MESSAGE_SIZE),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


class ProxySnapshotter:
    """The ``Snapshotter`` Protocol over a remote Snapshots service."""

    def __init__(self, name: str, address: str) -> None:
        self.name = name
        self.address = address
        self._channel = grpc.insecure_channel(f"unix:{address}", options=_CHANNEL_OPTIONS)
        self._stub = pb_grpc.SnapshotsStub(self._channel)
        self._lock = threading.Lock()
        self._failing = False

    # -- health ----------------------------------------------------------------

    def current_error(self) -> Unavailable | None:
        """Whether the socket takes connections now (``plugins ls`` asks on every listing).

        A connect to a unix socket answers at once, listening or not, so the
        listing stays fast; a transition is logged once each way.
        """
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            try:
                probe.connect(self.address)
            except OSError as exc:
                error = self._unavailable(exc.strerror or str(exc))
                self._note(error)
                return error
        self._note(None)
        return None

    def _unavailable(self, why: str) -> Unavailable:
        return Unavailable(f"proxy snapshotter {self.name!r} at {self.address!r}: {why}; "
                           "retrying until it answers")

    def _note(self, error: Unavailable | None) -> None:
        with self._lock:
            was, self._failing = self._failing, error is not None
        if error is not None and not was:
            log.warning("proxy plugin unavailable", plugin=self.name, address=self.address, error=str(error))
        elif error is None and was:
            log.info("proxy plugin available again", plugin=self.name, address=self.address)

    def _call(self, method: str, request: Any) -> Any:
        try:
            response = getattr(self._stub, method)(request)
        except grpc.RpcError as err:
            raise self._mapped(err) from None
        self._note(None)
        return response

    def _mapped(self, err: Any) -> BaseException:
        if err.code() == grpc.StatusCode.UNAVAILABLE:
            error = self._unavailable(err.details() or "unavailable")
            self._note(error)
            return error
        return from_status(err.code().value[0], err.details() or "")

    # -- Snapshotter -----------------------------------------------------------

    def stat(self, key: str) -> Info:
        return info_from_pb(self._call("Stat", pb.StatSnapshotRequest(snapshotter=self.name, key=key)).info)

    def update(self, info: Info, fieldpaths: Sequence[str] = ()) -> Info:
        request = pb.UpdateSnapshotRequest(snapshotter=self.name, info=info_to_pb(info),
                                           update_mask=field_mask_pb2.FieldMask(paths=list(fieldpaths)))
        return info_from_pb(self._call("Update", request).info)

    def usage(self, key: str) -> Usage:
        reply = self._call("Usage", pb.UsageRequest(snapshotter=self.name, key=key))
        return Usage(size=reply.size, inodes=reply.inodes)

    def mounts(self, key: str) -> tuple[Mount, ...]:
        return mounts_from_pb(self._call("Mounts", pb.MountsRequest(snapshotter=self.name, key=key)).mounts)

    def prepare(self, key: str, parent: str = "", labels: Mapping[str, str] | None = None) -> tuple[Mount, ...]:
        request = pb.PrepareSnapshotRequest(snapshotter=self.name, key=key, parent=parent, labels=labels or {})
        return mounts_from_pb(self._call("Prepare", request).mounts)

    def view(self, key: str, parent: str = "", labels: Mapping[str, str] | None = None) -> tuple[Mount, ...]:
        request = pb.ViewSnapshotRequest(snapshotter=self.name, key=key, parent=parent, labels=labels or {})
        return mounts_from_pb(self._call("View", request).mounts)

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        self._call("Commit", pb.CommitSnapshotRequest(snapshotter=self.name, name=name, key=key,
                                                      labels=labels or {}))

    def remove(self, key: str) -> None:
        self._call("Remove", pb.RemoveSnapshotRequest(snapshotter=self.name, key=key))

    def walk(self, fn: WalkFunc, match: Match | None = None) -> None:
        """Everything is listed and ``match`` applied here: lamina's compiled filters
        have no wire form, and the remote's answers are checked against them anyway."""
        try:
            infos = [info_from_pb(m) for reply in self._stub.List(pb.ListSnapshotsRequest(snapshotter=self.name))
                     for m in reply.info]
        except grpc.RpcError as err:
            raise self._mapped(err) from None
        for info in infos:
            if match is None or match(info):
                fn(info)

    def cleanup(self) -> None:
        """A remote without Cleanup (containerd's ``snapshotservice`` over a
        snapshotter that is not a ``Cleaner``) has nothing to clean."""
        try:
            self._call("Cleanup", pb.CleanupRequest(snapshotter=self.name))
        except NotImplemented_:
            pass

    def close(self) -> None:
        self._channel.close()
