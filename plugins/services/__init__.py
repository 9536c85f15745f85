"""One gRPC servicer per containerd API service: thin proto ⇄ dataclass layers.

Each module registers an ``io.containerd.grpc.v1`` plugin whose instance has
``register(server)``, called by the daemon once every plugin is initialised.
"""

GRPC_PLUGIN = "io.containerd.grpc.v1"
