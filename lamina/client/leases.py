"""Leases (``containerd.services.leases.v1``): keep content and snapshots from GC while in use."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from lamina.api.services import leases_pb2 as pb
from lamina.api.services import leases_pb2_grpc as pb_grpc
from lamina.client._convert import frozen, when
from lamina.client._transport import Connection, current_lease
from lamina.core.identifiers import random_id
from lamina.core.timeutil import format_rfc3339, now

EXPIRE_LABEL = "containerd.io/gc.expire"
DEFAULT_EXPIRE = timedelta(hours=24)  # containerd's client WithLease default


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    id: str
    created_at: datetime | None
    labels: Mapping[str, str]


def expire_label(after: timedelta) -> dict[str, str]:
    """The ``containerd.io/gc.expire`` label (RFC 3339) for a lease ending ``after`` from now."""
    return {EXPIRE_LABEL: format_rfc3339(now() + after, timespec="seconds")}


def _from_pb(message: pb.Lease) -> Lease:
    return Lease(id=message.id, created_at=when(message, "created_at"), labels=frozen(message.labels))


class Leases:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    @property
    def _stub(self) -> pb_grpc.LeasesStub:
        return self._connection.stub(pb_grpc.LeasesStub)  # type: ignore[return-value]

    async def create(self, id: str = "", *, labels: Mapping[str, str] | None = None,
                     expire: timedelta | None = None) -> Lease:
        """Create a lease (a random id when none is given), expiring after ``expire`` if set."""
        all_labels = dict(labels or {})
        if expire is not None:
            all_labels.update(expire_label(expire))
        response = await self._stub.Create(pb.CreateRequest(id=id or random_id(), labels=all_labels))
        return _from_pb(response.lease)

    async def list(self, filters: Iterable[str] = ()) -> list[Lease]:
        response = await self._stub.List(pb.ListRequest(filters=list(filters)))
        return [_from_pb(lease) for lease in response.leases]

    async def delete(self, id: str, *, sync: bool = False) -> None:
        """Delete a lease; with ``sync`` the daemon collects garbage before answering."""
        await self._stub.Delete(pb.DeleteRequest(id=id, sync=sync))

    @asynccontextmanager
    async def lease(self, *, expire: timedelta = DEFAULT_EXPIRE,
                    labels: Mapping[str, str] | None = None) -> AsyncIterator[str]:
        """Run the body under a lease, as containerd's client ``WithLease`` does.

        Calls made inside carry ``containerd-lease``, so what they create is
        held until the lease is deleted on exit (or expires, should this
        process die first).  Inside an enclosing lease the body reuses it.
        """
        existing = current_lease.get()
        if existing:
            yield existing
            return
        created = await self.create(labels=labels, expire=expire)
        token = current_lease.set(created.id)
        try:
            yield created.id
        finally:
            current_lease.reset(token)
            await self.delete(created.id)
