"""The CRI v1 plugin, ``io.containerd.grpc.v1.cri``: Kubernetes' runtime and image services.

As containerd's ``pkg/cri``, it is a gRPC plugin served on the daemon's own
socket, and everything it makes lives in the containerd namespace ``k8s.io``
so that ``ctr -n k8s.io`` shows it.  Servicers (``runtime_service``,
``image_service``) only convert between protobuf and the records of
:mod:`lamina.plugins.cri.images`; the work is done by managers that know
nothing of gRPC.
"""

CRI_PLUGIN_ID = "cri"
K8S_NAMESPACE = "k8s.io"
KIND_LABEL = "io.cri-containerd.kind"  # "sandbox" or "container" on the records the plugin makes
KIND_CONTAINER = "container"
