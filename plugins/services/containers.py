"""containerd.services.containers.v1 over the metadata container store.

As containerd's ``services/containers/local.go``: timestamps the client sends
are ignored, ListStream sends one container per message, and each change
publishes ``/containers/create|update|delete`` after it is committed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from google.protobuf import any_pb2, empty_pb2

from lamina.api.events import container_pb2 as events_pb2
from lamina.api.services import containers_pb2 as pb
from lamina.core import namespaces
from lamina.core.errors import InvalidArgument
from lamina.core.events import Exchange
from lamina.core.metadata.containers import AnyValue, Container, ContainerStore, RuntimeInfo
from lamina.core.registry import InitContext, Registration, Registry
from lamina.core.server import Server
from lamina.plugins import hookimpl
from lamina.plugins.metadata import METADATA_PLUGIN
from lamina.plugins.services import GRPC_PLUGIN


def any_to_pb(value: AnyValue | None) -> any_pb2.Any | None:
    return None if value is None else any_pb2.Any(type_url=value.type_url, value=value.value)


def any_from_pb(message: any_pb2.Any) -> AnyValue:
    return AnyValue(type_url=message.type_url, value=message.value)


def _to_pb(c: Container) -> pb.Container:
    message = pb.Container(
        id=c.id,
        labels=dict(c.labels),
        image=c.image,
        runtime=pb.Container.Runtime(name=c.runtime.name, options=any_to_pb(c.runtime.options)),
        spec=any_to_pb(c.spec),
        snapshotter=c.snapshotter,
        snapshot_key=c.snapshot_key,
        extensions={k: any_pb2.Any(type_url=v.type_url, value=v.value) for k, v in c.extensions.items()},
    )
    message.created_at.FromNanoseconds(c.created_at_ns)
    message.updated_at.FromNanoseconds(c.updated_at_ns)
    return message


def _from_pb(message: pb.Container) -> Container:
    runtime = message.runtime
    return Container(
        id=message.id,
        labels=dict(message.labels),
        image=message.image,
        runtime=RuntimeInfo(
            name=runtime.name,
            options=any_from_pb(runtime.options) if runtime.HasField("options") else None,
        ),
        spec=any_from_pb(message.spec) if message.HasField("spec") else None,
        snapshotter=message.snapshotter,
        snapshot_key=message.snapshot_key,
        extensions={k: any_from_pb(v) for k, v in message.extensions.items()},
    )


class ContainersService:
    def __init__(self, store: ContainerStore, exchange: Exchange) -> None:
        self._store = store
        self._exchange = exchange

    def register(self, server: Server) -> None:
        server.add_service(pb.DESCRIPTOR.services_by_name["Containers"], self)

    async def Get(self, request: pb.GetContainerRequest, context: object) -> pb.GetContainerResponse:  # noqa: N802
        container = self._store.get(namespaces.required(), request.id)
        return pb.GetContainerResponse(container=_to_pb(container))

    async def List(self, request: pb.ListContainersRequest, context: object) -> pb.ListContainersResponse:  # noqa: N802
        found = self._store.list(namespaces.required(), list(request.filters))
        return pb.ListContainersResponse(containers=[_to_pb(c) for c in found])

    async def ListStream(  # noqa: N802
        self, request: pb.ListContainersRequest, context: object
    ) -> AsyncIterator[pb.ListContainerMessage]:
        for container in self._store.list(namespaces.required(), list(request.filters)):
            yield pb.ListContainerMessage(container=_to_pb(container))

    async def Create(self, request: pb.CreateContainerRequest, context: object) -> pb.CreateContainerResponse:  # noqa: N802
        namespace = namespaces.required()
        created = await self._store.create(namespace, _from_pb(request.container))
        message = _to_pb(created)
        self._exchange.publish(
            namespace,
            "/containers/create",
            events_pb2.ContainerCreate(
                id=created.id,
                image=created.image,
                runtime=events_pb2.ContainerCreate.Runtime(
                    name=created.runtime.name, options=any_to_pb(created.runtime.options)
                ),
            ),
        )
        return pb.CreateContainerResponse(container=message)

    async def Update(self, request: pb.UpdateContainerRequest, context: object) -> pb.UpdateContainerResponse:  # noqa: N802
        if not request.container.id:
            raise InvalidArgument("Container.ID required")
        namespace = namespaces.required()
        updated = await self._store.update(
            namespace, _from_pb(request.container), list(request.update_mask.paths)
        )
        self._exchange.publish(
            namespace,
            "/containers/update",
            events_pb2.ContainerUpdate(
                id=updated.id, image=updated.image, labels=dict(updated.labels), snapshot_key=updated.snapshot_key
            ),
        )
        return pb.UpdateContainerResponse(container=_to_pb(updated))

    async def Delete(self, request: pb.DeleteContainerRequest, context: object) -> empty_pb2.Empty:  # noqa: N802
        namespace = namespaces.required()
        await self._store.delete(namespace, request.id)
        self._exchange.publish(namespace, "/containers/delete", events_pb2.ContainerDelete(id=request.id))
        return empty_pb2.Empty()


def _init(ic: InitContext) -> ContainersService:
    return ContainersService(ContainerStore(ic.get(METADATA_PLUGIN)), ic.daemon.exchange)


@hookimpl
def lamina_register_plugins(registry: Registry) -> None:
    registry.add(Registration(type=GRPC_PLUGIN, id="containers", requires=(METADATA_PLUGIN,), init=_init))
