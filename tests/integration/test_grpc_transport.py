"""laminad's own HTTP/2 gRPC server, as gRPC clients (grpcio here, ``ctr`` elsewhere) see it.

Wording and codes are grpc-go's, since containerd serves with grpc-go.
"""

from __future__ import annotations

import asyncio
import hashlib
import signal
import socket
import threading
import time
from collections.abc import Callable

import grpc
import grpc.aio
import pytest
from google.protobuf import empty_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lamina.api.services import (
    content_pb2,
    content_pb2_grpc,
    events_pb2,
    events_pb2_grpc,
    images_pb2,
    images_pb2_grpc,
    version_pb2,
)
from tests.conftest import Daemon, Runner


def _channel(daemon: Daemon) -> grpc.Channel:
    return grpc.insecure_channel(f"unix://{daemon.address}", options=[("grpc.max_receive_message_length", -1),
                                                                       ("grpc.max_send_message_length", -1)])


def _metadata(ns: str) -> tuple[tuple[str, str], ...]:
    return (("containerd-namespace", ns),)


@pytest.mark.parametrize(("path", "details"), [
    ("/containerd.services.nope.v1.Nope/Get", "unknown service containerd.services.nope.v1.Nope"),
    ("/containerd.services.version.v1.Version/Nope",
     "unknown method Nope for service containerd.services.version.v1.Version"),
])
def test_unknown_paths_are_unimplemented(daemon: Daemon, path: str, details: str) -> None:
    with _channel(daemon) as channel:
        call = channel.unary_unary(path, request_serializer=empty_pb2.Empty.SerializeToString,
                                   response_deserializer=empty_pb2.Empty.FromString)
        with pytest.raises(grpc.RpcError) as err:
            call(empty_pb2.Empty(), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert err.value.details() == details


def test_deadline_ends_a_call_that_would_wait(daemon: Daemon, ns: str) -> None:
    with _channel(daemon) as channel:
        events = events_pb2_grpc.EventsStub(channel)
        start = time.monotonic()
        with pytest.raises(grpc.RpcError) as err:
            for _ in events.Subscribe(events_pb2.SubscribeRequest(), timeout=0.5, metadata=_metadata(ns)):
                pass
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - start < 10
        version = channel.unary_unary("/containerd.services.version.v1.Version/Version",
                                      request_serializer=empty_pb2.Empty.SerializeToString,
                                      response_deserializer=version_pb2.VersionResponse.FromString)
        assert version(empty_pb2.Empty(), timeout=10).revision == "lamina"


def test_message_over_the_limit_is_resource_exhausted(daemon: Daemon, ns: str) -> None:
    data = b"x" * (16 * 1024 * 1024 + 1)
    with _channel(daemon) as channel:
        content = content_pb2_grpc.ContentStub(channel)
        request = content_pb2.WriteContentRequest(action=content_pb2.COMMIT, ref="too-big",
                                                  total=len(data), data=data)
        with pytest.raises(grpc.RpcError) as err:
            list(content.Write(iter([request]), timeout=30, metadata=_metadata(ns)))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"grpc: received message larger than max ({len(request.SerializeToString())} vs. 16777216)" \
        == err.value.details()


def test_big_messages_cross_the_flow_control_windows(daemon: Daemon, ns: str, ctr: Runner) -> None:
    """A 3 MiB blob written in one message and a list reply of ~2 MiB, both larger than any window."""
    data = bytes(range(256)) * (3 * 4096)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    names = [f"example.com/flow/{i}:{'t' * 100}" for i in range(300)]
    labels = {f"label-{j}": "v" * 200 for j in range(30)}
    with _channel(daemon) as channel:
        content = content_pb2_grpc.ContentStub(channel)
        images = images_pb2_grpc.ImagesStub(channel)
        ctr("leases", "create", "--id", "hold")
        md = (("containerd-namespace", ns), ("containerd-lease", "hold"))
        replies = list(content.Write(iter([content_pb2.WriteContentRequest(
            action=content_pb2.COMMIT, ref="flow", total=len(data), expected=digest, data=data)]),
            timeout=60, metadata=md))
        assert replies[-1].digest == digest
        read = b"".join(r.data for r in content.Read(content_pb2.ReadContentRequest(digest=digest),
                                                     timeout=60, metadata=md))
        assert read == data
        for name in names:
            image = images_pb2.Image(name=name, labels=labels)
            image.target.media_type = "application/vnd.oci.image.manifest.v1+json"
            image.target.digest = digest
            image.target.size = len(data)
            images.Create(images_pb2.CreateImageRequest(image=image), timeout=30, metadata=md)
        listed = images.List(images_pb2.ListImagesRequest(), timeout=30, metadata=md)
        assert listed.ByteSize() > 1024 * 1024 + 65535
        assert sorted(i.name for i in listed.images) == sorted(names)


def test_many_concurrent_calls_on_one_connection(daemon: Daemon) -> None:
    async def run() -> list[str]:
        async with grpc.aio.insecure_channel(f"unix://{daemon.address}") as channel:
            version = channel.unary_unary("/containerd.services.version.v1.Version/Version",
                                          request_serializer=empty_pb2.Empty.SerializeToString,
                                          response_deserializer=version_pb2.VersionResponse.FromString)
            replies = await asyncio.gather(*(version(empty_pb2.Empty(), timeout=30) for _ in range(300)))
            return [r.revision for r in replies]

    assert asyncio.run(run()) == ["lamina"] * 300


def test_a_client_that_speaks_no_http2_is_sent_away(daemon: Daemon, ctr: Runner) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(daemon.address)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received[3] == 4  # the server's SETTINGS first
    assert bytes([7]) in received and b"not an HTTP/2 client preface" in received  # then GOAWAY
    assert "Revision: lamina" in ctr("version").stdout


def test_health_reports_serving(daemon: Daemon) -> None:
    with _channel(daemon) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == \
            health_pb2.HealthCheckResponse.SERVING
        watch = health.Watch(health_pb2.HealthCheckRequest(), timeout=10)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
        with pytest.raises(grpc.RpcError) as err:
            health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_an_endless_header_block_is_refused(daemon: Daemon, ctr: Runner) -> None:
    def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
        return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream.to_bytes(4, "big") + payload

    chunk = b"\x00" * 16384  # frames of the largest size laminad takes; the last one crosses 1 MiB
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(daemon.address)
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"") + frame(1, 0, 1, chunk)
                     + b"".join(frame(9, 0, 1, chunk) for _ in range(64)))
        received = b""
        while data := sock.recv(65536):
            received += data
    assert b"header block larger than 1048576 bytes" in received
    assert "Revision: lamina" in ctr("version").stdout


def test_an_error_longer_than_a_frame_reaches_the_client_whole(ctr: Runner) -> None:
    """The status message goes out in HEADERS and CONTINUATION frames, within the client's 16 KiB frames."""
    name = "A" * 20000
    result = ctr("namespaces", "ls", namespace=name, check=False)
    assert result.returncode != 0
    assert name in result.stderr and "invalid argument" in result.stderr
    assert "Revision: lamina" in ctr("version").stdout


@pytest.mark.parametrize("bad", [
    (8, 0, 0, b"\x00\x00\x01"),  # WINDOW_UPDATE of 3 bytes
    (0, 0x8, 1, b""),  # PADDED DATA with no pad length
    (9, 0x4, 0, b"\x82"),  # CONTINUATION with no header block open
], ids=["short-window-update", "empty-padded-data", "stray-continuation"])
def test_malformed_frames_end_the_connection_with_goaway(daemon: Daemon, ctr: Runner,
                                                          bad: tuple[int, int, int, bytes]) -> None:
    kind, flags, stream, payload = bad
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(daemon.address)
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + len(payload).to_bytes(3, "big")
                     + bytes((kind, flags)) + stream.to_bytes(4, "big") + payload)
        received = b""
        while data := sock.recv(65536):
            received += data
    frames = []
    while received:
        length = int.from_bytes(received[:3], "big")
        frames.append(received[3])
        received = received[9 + length:]
    assert frames[-1] == 7  # GOAWAY, then the connection closes
    assert "Revision: lamina" in ctr("version").stdout


def test_stopping_daemon_cuts_open_calls_off_as_unavailable(
        fresh_daemon: Callable[..., Daemon]) -> None:
    """SIGTERM: a call left open is ended after the grace period as containerd's are (UNAVAILABLE,
    never CANCELLED, which dockerd takes for its own shutdown), and the daemon exits 0."""
    d = fresh_daemon()
    outcome: list[grpc.StatusCode] = []
    answered = threading.Event()  # the daemon holds the call: it answered the first message
    done = threading.Event()  # the client's side never ends the call before the test does

    def requests() -> object:
        yield content_pb2.WriteContentRequest(action=content_pb2.STAT, ref="left-open")
        done.wait(60)

    def write() -> None:
        with _channel(d) as channel:
            try:
                for _ in content_pb2_grpc.ContentStub(channel).Write(requests(), timeout=60,
                                                                     metadata=_metadata("stop")):
                    answered.set()
            except grpc.RpcError as err:
                outcome.append(err.code())

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        assert answered.wait(10), "the daemon never answered the STAT"
        d.process.send_signal(signal.SIGTERM)
        assert d.process.wait(30) == 0
        writer.join(30)
    finally:
        done.set()
    assert outcome == [grpc.StatusCode.UNAVAILABLE]
