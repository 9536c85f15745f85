"""Any payloads decode as far as lamina knows their types, and never fail on the rest."""

from __future__ import annotations

import base64

from google.protobuf import timestamp_pb2

from lamina.api.events import container_pb2
from lamina.api.runtime import runc_options_pb2
from lamina.api.services import events_pb2
from lamina.client.payloads import decode


def _create(options_type: str, options: bytes) -> bytes:
    event = container_pb2.ContainerCreate(id="c", image="img")
    event.runtime.name = "io.containerd.runc.v2"
    event.runtime.options.type_url = options_type
    event.runtime.options.value = options
    return event.SerializeToString()


def test_runtime_options_inside_an_event_are_decoded() -> None:
    options = runc_options_pb2.Options(binary_name="crun", systemd_cgroup=True).SerializeToString()
    assert decode("containerd.events.ContainerCreate", _create("containerd.runc.v1.Options", options)) == {
        "id": "c", "image": "img",
        "runtime": {"name": "io.containerd.runc.v2",
                    "options": {"@type": "containerd.runc.v1.Options", "binary_name": "crun", "systemd_cgroup": True}},
    }


def test_an_unknown_type_inside_shows_its_url_and_bytes() -> None:
    payload = decode("containerd.events.ContainerCreate", _create("example.com/vendor.Options", b"\x08\x01"))
    assert payload is not None
    assert payload["runtime"]["options"] == {"@type": "example.com/vendor.Options",
                                             "value": base64.b64encode(b"\x08\x01").decode()}


def test_events_nested_in_events_and_well_known_types() -> None:
    envelope = events_pb2.Envelope(namespace="n", topic="/containers/delete")
    envelope.event.type_url = "containerd.events.ContainerDelete"
    envelope.event.value = container_pb2.ContainerDelete(id="c").SerializeToString()
    assert decode("containerd.services.events.v1.Envelope", envelope.SerializeToString()) == {
        "namespace": "n", "topic": "/containers/delete",
        "event": {"@type": "containerd.events.ContainerDelete", "id": "c"},
    }
    envelope.event.Pack(timestamp_pb2.Timestamp(seconds=1))
    assert decode("containerd.services.events.v1.Envelope", envelope.SerializeToString())["event"] == {  # type: ignore[index]
        "@type": "type.googleapis.com/google.protobuf.Timestamp", "value": "1970-01-01T00:00:01Z"}


def test_unknown_or_garbled_payloads_are_none() -> None:
    assert decode("example.com/vendor.Event", b"\x08\x01") is None
    assert decode("containerd.events.ContainerDelete", b"\xff\xff") is None
