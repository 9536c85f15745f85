"""``lamina events`` follows a whole ``ctr run --rm`` and decodes what it knows.

``ctr run`` gives the container runc options (``containerd.runc.v1.Options``
in an Any inside the ``/containers/create`` payload); ``lamina events`` once
crashed on it.  Every event must show, in order, as ``ctr events`` shows it.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import threading
from collections.abc import Iterator

import pytest

from tests.conftest import Daemon, Runner, wait_until_live
from tests.integration.test_runtime_support import needs_runc
from tests.waiting import eventually

pytestmark = [needs_runc, pytest.mark.timeout(180)]

IMAGE = "docker.io/library/busybox:latest"
ID = "events-run"
RUN_TOPICS = ["/snapshot/prepare", "/containers/create", "/tasks/create", "/tasks/start", "/tasks/exit",
              "/tasks/delete", "/snapshot/remove", "/containers/delete"]


def _parse(line: str) -> tuple[str, str, str]:
    """``<date> <time> +0000 UTC <namespace> <topic> <payload>`` → (namespace, topic, payload)."""
    _, _, rest = line.partition(" UTC ")
    namespace, topic, payload = rest.rstrip("\n").split(" ", 2)
    return namespace, topic, payload


@pytest.fixture
def shown(daemon: Daemon, ctr: Runner, ns: str) -> Iterator[list[tuple[str, str, str]]]:
    """The events ``lamina events`` prints for the test's namespace, once its subscription is live."""
    events = subprocess.Popen(["lamina", "-a", daemon.address, "events", f"namespace=={ns}"],
                              stdout=subprocess.PIPE, text=True)
    pokes = itertools.count()
    try:
        wait_until_live(events, lambda: ctr("namespaces", "create", f"{ns}-poke-{next(pokes)}"))
        lines: list[tuple[str, str, str]] = []
        assert events.stdout is not None
        reader = threading.Thread(target=lambda: lines.extend(_parse(x) for x in events.stdout), daemon=True)  # type: ignore[union-attr]
        reader.start()
        yield lines
        assert events.poll() is None, "lamina events exited"
    finally:
        events.terminate()
        events.wait(10)
        ctr("namespaces", "rm", *(f"{ns}-poke-{i}" for i in range(next(pokes))), check=False)


def test_events_of_a_whole_run(ctr: Runner, ns: str, busybox_archive: str,
                               shown: list[tuple[str, str, str]]) -> None:
    ctr("images", "import", busybox_archive)
    ctr("run", "--rm", IMAGE, ID, "true")
    eventually(lambda: any(topic == "/containers/delete" for _, topic, _ in shown), timeout=30,
               what="/containers/delete shown")
    # The container's own events (the import before it prepares snapshots too).
    mine = [(topic, json.loads(payload)) for namespace, topic, payload in shown if namespace == ns
            and ID in (json.loads(payload).get(k) for k in ("key", "id", "container_id"))]
    assert [topic for topic, _ in mine] == RUN_TOPICS
    payloads = dict(mine)
    created = payloads["/containers/create"]
    assert created["id"] == ID and created["image"] == IMAGE
    assert created["runtime"]["options"]["@type"].endswith("containerd.runc.v1.Options")
    assert payloads["/tasks/exit"]["container_id"] == ID
    assert payloads["/tasks/exit"].get("exit_status", 0) == 0
