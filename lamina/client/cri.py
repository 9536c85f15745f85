"""The Kubernetes CRI v1 services (``runtime.v1``) on the daemon's socket, as ``crictl`` calls them.

Unlike the containerd services, the CRI's messages *are* its client
contract (kubelet and ``crictl`` print them), so these calls hand back the
``runtime.v1`` messages themselves; failures are lamina errors, as for every
call of the client.  :meth:`Cri.checked_version` is crictl's first call: a
runtime whose CRI is not ``v1`` is refused before anything else is asked.
"""

from __future__ import annotations

from lamina.api.services.cri import api_pb2 as pb
from lamina.api.services.cri import api_pb2_grpc as pb_grpc
from lamina.client._transport import Connection, Stub
from lamina.core.errors import FailedPrecondition

API_VERSION = "v1"


class Cri:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    @property
    def _runtime(self) -> Stub:
        return self._connection.stub(pb_grpc.RuntimeServiceStub)

    @property
    def _images(self) -> Stub:
        return self._connection.stub(pb_grpc.ImageServiceStub)

    async def version(self) -> pb.VersionResponse:
        return await self._runtime.Version(pb.VersionRequest(version=API_VERSION))

    async def checked_version(self) -> pb.VersionResponse:
        """``Version``, refusing a runtime that does not speak CRI v1 (as crictl 1.26 does)."""
        version = await self.version()
        if version.runtime_api_version != API_VERSION:
            raise FailedPrecondition(f"runtime API version {version.runtime_api_version!r} is not supported, "
                                     f"only {API_VERSION!r}")
        return version

    async def status(self, verbose: bool = False) -> pb.StatusResponse:
        return await self._runtime.Status(pb.StatusRequest(verbose=verbose))

    async def pull(self, image: str, auth: pb.AuthConfig | None = None) -> str:
        """Pull ``image``; returns the image id."""
        response = await self._images.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=image), auth=auth))
        return str(response.image_ref)

    async def images(self, image_filter: str = "") -> list[pb.Image]:
        request = pb.ListImagesRequest(filter=pb.ImageFilter(image=pb.ImageSpec(image=image_filter)))
        return list((await self._images.ListImages(request)).images)

    async def image_status(self, image: str, verbose: bool = False) -> pb.ImageStatusResponse:
        request = pb.ImageStatusRequest(image=pb.ImageSpec(image=image), verbose=verbose)
        return await self._images.ImageStatus(request)

    async def remove_image(self, image: str) -> None:
        await self._images.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=image)))

    async def image_fs_info(self) -> list[pb.FilesystemUsage]:
        return list((await self._images.ImageFsInfo(pb.ImageFsInfoRequest())).image_filesystems)

    async def run_pod(self, config: pb.PodSandboxConfig, runtime_handler: str = "") -> str:
        """Start a pod sandbox; its id."""
        request = pb.RunPodSandboxRequest(config=config, runtime_handler=runtime_handler)
        return str((await self._runtime.RunPodSandbox(request)).pod_sandbox_id)

    async def stop_pod(self, pod_id: str) -> None:
        await self._runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id))

    async def remove_pod(self, pod_id: str) -> None:
        await self._runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id))

    async def pod_status(self, pod_id: str, verbose: bool = False) -> pb.PodSandboxStatusResponse:
        return await self._runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=verbose))

    async def pods(self, pod_filter: pb.PodSandboxFilter | None = None) -> list[pb.PodSandbox]:
        return list((await self._runtime.ListPodSandbox(pb.ListPodSandboxRequest(filter=pod_filter))).items)

    async def create_container(self, pod_id: str, config: pb.ContainerConfig,
                               pod_config: pb.PodSandboxConfig) -> str:
        """Create a container in a ready pod; its id."""
        request = pb.CreateContainerRequest(pod_sandbox_id=pod_id, config=config, sandbox_config=pod_config)
        return str((await self._runtime.CreateContainer(request)).container_id)

    async def start_container(self, container_id: str) -> None:
        await self._runtime.StartContainer(pb.StartContainerRequest(container_id=container_id))

    async def stop_container(self, container_id: str, timeout: int = 0) -> None:
        await self._runtime.StopContainer(pb.StopContainerRequest(container_id=container_id, timeout=timeout))

    async def remove_container(self, container_id: str) -> None:
        await self._runtime.RemoveContainer(pb.RemoveContainerRequest(container_id=container_id))

    async def container_status(self, container_id: str, verbose: bool = False) -> pb.ContainerStatusResponse:
        request = pb.ContainerStatusRequest(container_id=container_id, verbose=verbose)
        return await self._runtime.ContainerStatus(request)

    async def containers(self, container_filter: pb.ContainerFilter | None = None) -> list[pb.Container]:
        request = pb.ListContainersRequest(filter=container_filter)
        return list((await self._runtime.ListContainers(request)).containers)

    async def exec_sync(self, container_id: str, cmd: list[str], timeout: int = 0) -> pb.ExecSyncResponse:
        return await self._runtime.ExecSync(pb.ExecSyncRequest(container_id=container_id, cmd=cmd, timeout=timeout))
