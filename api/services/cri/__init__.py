"""The Kubernetes CRI v1 API (package runtime.v1), served by io.containerd.grpc.v1.cri."""
